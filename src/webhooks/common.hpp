// Pieces every provider's reader shares: header look-up, times, addresses,
// diagnostic codes and event assembly.
#pragma once

#include <simdjson.h>

#include <mailers/webhook.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailers::webhooks {

/// The first header named `name` (any case), or nullopt.
std::optional<std::string_view> find_header(std::span<const http_header> headers,
                                            std::string_view name) noexcept;

/// The media type of a Content-Type value, lower-cased, parameters dropped.
std::string media_type(std::string_view content_type);

/// "2012-04-26T20:45:04.751Z" or with a "+hh:mm" offset; any number of
/// fraction digits (Postmark writes seven).
/// `s` without leading and trailing spaces, tabs, CRs and LFs.
std::string_view trim(std::string_view s) noexcept;

std::optional<time_point> parse_iso8601(std::string_view s) noexcept;

time_point from_unix_seconds(double s) noexcept;

/// The normalised address in `text` ("Name <a@b>" or "a@b"); the bare
/// address as written when it does not normalise; "" for "".
std::string recipient_of(std::string_view text);

/// The enhanced status code ("5.1.1") in a reply text, else its leading
/// three-digit reply code, else "".
std::string diagnostic_code_in(std::string_view text);

std::string sha256_hex(std::string_view data);

/// Decodes an application/x-www-form-urlencoded body; nullopt when an
/// escape is malformed.
std::optional<std::vector<std::pair<std::string, std::string>>> decode_form(std::string_view body);

// JSON helpers that tolerate absent or differently-typed members.
std::string_view str(simdjson::dom::element e, std::string_view key) noexcept;
std::string_view str(simdjson::dom::object o, std::string_view key) noexcept;
/// A string, or an integer written in decimal.
std::string str_or_int(simdjson::dom::object o, std::string_view key);
std::optional<double> number(simdjson::dom::object o, std::string_view key) noexcept;

struct outcome_builder {
    const webhook_params& params;
    webhook_result& result;

    void reject(int status, std::string reason) {
        result = webhook_result{};
        result.outcome = webhook_outcome::rejected;
        result.http_status = status;
        result.reason = std::move(reason);
    }
    void accept() {
        result.outcome = webhook_outcome::events;
        result.http_status = 200;
    }
    void ignore(std::string reason) {
        result.events.clear();
        result.outcome = webhook_outcome::ignored;
        result.http_status = 200;
        result.reason = std::move(reason);
    }
};

/// What every event parse_webhook() returns satisfies: keyed, attributed,
/// and with a bounce class exactly when it is a bounce.
inline bool well_formed(const event& e) {
    return !e.dedup_key.empty() && !e.provider.empty() &&
           ((e.type == event_type::bounced) == (e.bounce != bounce_class::none));
}

time_point now_of(const webhook_params& p);

void parse_ses(const webhook_request& req, const webhook_params& params, webhook_result& out);
void parse_mailgun(const webhook_request& req, const webhook_params& params, webhook_result& out);
void parse_sendgrid(const webhook_request& req, const webhook_params& params, webhook_result& out);
void parse_postmark(const webhook_request& req, const webhook_params& params, webhook_result& out);

}  // namespace mailers::webhooks
