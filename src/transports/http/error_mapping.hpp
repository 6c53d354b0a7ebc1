// HTTP API error replies -> transport_errc, as data.
//
// Each row matches a provider, an HTTP status pattern, the provider's own
// error code and, when needed, a phrase of its error message; the first row
// that matches decides. Provider rows come first and the generic HTTP rows
// ("*") last, so a provider's quirk is one line near the top.
//
// The code and message are read from each provider's error format by
// extract_http_error (SES: x-amzn-ErrorType / __type and message; Postmark:
// ErrorCode and Message; Gmail: error.errors[0].reason and error.message;
// Graph: error.code and error.message; SendGrid: errors[].message; Mailgun:
// message or the plain body; OAuth token endpoints: error and
// error_description).
#pragma once

#include <chrono>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "http/client.hpp"

namespace mailers::detail {

/// One row of the table.
///
/// `provider` is "ses", "mailgun", "sendgrid", "postmark", "gmail", "graph",
/// "oauth" (token endpoints) or "*" for any. `status` is three characters
/// where 'x' matches any digit ("429", "4xx", "xxx"). `code` is compared
/// with the provider's error code without case ("" matches any). `text` is
/// a phrase the message must contain, without case ("" for none).
struct http_error_rule {
    std::string_view provider;
    std::string_view status;
    std::string_view code;
    std::string_view text;
    transport_errc result;
    std::string_view why;  ///< the reply this row is for, as documentation
};

/// The table, first match wins.
std::span<const http_error_rule> http_error_rules() noexcept;

/// Index of the row that classifies the reply, or -1.
int match_http_error_rule(std::string_view provider, unsigned status, std::string_view code,
                          std::string_view text) noexcept;

/// Classifies a reply that is not a 2xx. Every status matches some generic row.
transport_errc classify_http_error(std::string_view provider, unsigned status,
                                   std::string_view code, std::string_view text) noexcept;

/// What decides a reply's class, read from the provider's error format.
struct http_error_fields {
    std::string code;
    std::string message;
    std::string request_id;
    std::optional<std::chrono::seconds> retry_after;
};

/// Reads code, message, request id and retry-after from an error reply.
/// Retry-After (seconds or an HTTP date) wins; a 429 without it falls back
/// to X-RateLimit-Reset (Unix time, SendGrid) and Gmail's "Retry after
/// <RFC 3339 time>" in the message. Never fails: unknown formats give an
/// empty code and the body as message.
http_error_fields extract_http_error(std::string_view provider, const http::response& r,
                                     std::chrono::system_clock::time_point now);

/// Classifies a non-2xx reply and fills `diag` (status, provider_code,
/// provider_reply, request_id, retry_after, and a message naming the
/// provider).
error_code map_http_error(std::string_view provider, const http::response& r,
                          std::chrono::system_clock::time_point now, diagnostics& diag);

/// What a token endpoint's 2xx reply carries (RFC 6749 section 5.1).
struct token_reply {
    std::string access_token;
    /// From expires_in, at most a day; 3600 s when absent or not positive.
    std::chrono::seconds lifetime{0};
};

/// Reads a token endpoint's reply. A 2xx gives the access token and its
/// lifetime; one without an access_token is transport_errc::temporary_reply.
/// Any other status is classified as by map_http_error with provider
/// "oauth", except that an unknown outcome counts as temporary_reply: a token
/// request carries no mail. On failure `diag.message` says why.
error_code read_token_reply(const http::response& r, std::chrono::system_clock::time_point now,
                            token_reply& out, diagnostics& diag);

/// Retry-After: delay-seconds or an IMF-fixdate (RFC 9110 10.2.3). A date in
/// the past gives zero; anything else unreadable gives nullopt.
std::optional<std::chrono::seconds> parse_retry_after(
    std::string_view value, std::chrono::system_clock::time_point now) noexcept;

/// An HTTP date in the IMF-fixdate form servers send ("Sun, 06 Nov 1994
/// 08:49:37 GMT", RFC 9110 section 5.6.7); nullopt for anything else.
std::optional<std::chrono::system_clock::time_point> parse_http_date(
    std::string_view value) noexcept;

/// True for an AWS refusal of a request's signing time rather than of its
/// signature or credentials: RequestTimeTooSkewed, RequestExpired,
/// RequestInTheFuture, or a message "Signature expired" / "Signature not yet
/// current" (SES: 403 InvalidSignatureException). `code` and `message` as
/// extract_http_error reads them.
bool is_aws_request_time_refusal(std::string_view code, std::string_view message) noexcept;

/// "2024-05-01T12:00:00.000Z" and other RFC 3339 UTC times ('Z' or an offset);
/// nullopt for a time system_clock cannot hold.
std::optional<std::chrono::system_clock::time_point> parse_rfc3339(std::string_view text) noexcept;

}  // namespace mailers::detail
