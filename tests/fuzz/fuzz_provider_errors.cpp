// libFuzzer entry for what the HTTP providers send back: the error mapping
// (map_http_error and the readers under it), the OAuth token reply, and the
// JSON reads that take a provider message id from a 2xx.
//
// Input: byte 0 picks the provider, bytes 1-2 the status, byte 3 which
// headers the reply carries; each chosen header takes the next line as its
// value and the rest is the body.
//
// Beyond "does not crash": a refusal maps to a transport error that some row
// of the table gives, with the diagnostics filled as documented; a
// retry-after is never negative and fits the clock it is added to; a
// Retry-After in delay-seconds is read exactly (capped at a day); a token
// endpoint's 429 is throttling whatever it says; a token's lifetime is
// between a second and a day; a 2xx of the provider's success
// shape gives back the id or token it holds; reading the same reply twice
// gives the same answer.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mailers/error.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "http/client.hpp"
#include "transports/http/common.hpp"
#include "transports/http/error_mapping.hpp"

namespace {

namespace detail = mailers::detail;
using mailers::transport_errc;
using std::chrono::seconds;
using sys_clock = std::chrono::system_clock;

void check(bool ok) {
    if (!ok) std::abort();
}

// 2030-01-01T12:00:00Z, so that dates in seeds stay in the future.
const sys_clock::time_point now{seconds(1893499200)};
constexpr seconds one_day{86400};  // the cap on delay-seconds and token lifetimes

constexpr std::string_view providers[] = {"ses",   "sendgrid", "postmark", "mailgun",
                                          "gmail", "graph",    "oauth",    "other"};

// Statuses worth reaching often; other values of byte 1 give any status.
constexpr unsigned statuses[] = {200, 201, 202, 204, 301, 400, 401, 403, 404, 405, 407,
                                 408, 413, 418, 422, 429, 500, 502, 503, 504, 599};

// Header names in the order byte 3's bits choose them.
constexpr std::string_view header_names[] = {"Retry-After",      "X-RateLimit-Reset",
                                             "x-amzn-ErrorType", "x-amzn-RequestId",
                                             "request-id",       "X-Message-Id"};

std::string_view take_line(std::string_view& rest) {
    const auto nl = rest.find('\n');
    const auto line = rest.substr(0, nl);
    rest.remove_prefix(nl == std::string_view::npos ? rest.size() : nl + 1);
    return line;
}

bool all_digits(std::string_view s) {
    if (s.empty()) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    return true;
}

std::string trimmed(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return std::string(s);
}

bool is_table_result(transport_errc e) {
    for (const auto& r : detail::http_error_rules())
        if (r.result == e) return true;
    return false;
}

// "", or an integer as std::to_string writes it.
bool is_integer_text(std::string_view s) {
    if (s.empty()) return true;
    if (s.front() == '-') s.remove_prefix(1);
    return all_digits(s);
}

// A JSON number spelled from the input: integers of any size and sign, and
// fractions with exponents, so that every conversion behind the readers meets
// values beyond its range.
std::string number_from(std::string_view bytes) {
    std::uint64_t u = 0;
    for (char c : bytes.substr(0, 8)) u = u << 8 | static_cast<unsigned char>(c);
    const auto exponent = [&](int shift) {
        return std::to_string(static_cast<int>(u >> shift & 0x1ff) - 255);
    };
    switch (u % 4) {
        case 0:
            return std::to_string(static_cast<std::int64_t>(u));
        case 1:
            return std::to_string(u);
        case 2:
            return std::to_string(u >> 2 & 0xffff) + "e" + exponent(18);
        default:
            return "-" + std::to_string(u >> 2 & 0xfff) + "." + std::to_string(u >> 14 & 0xff) +
                   "E" + exponent(22);
    }
}

// Callers add a retry-after to their clocks, so it must fit what is left of
// system_clock after `now` (a date beyond that is unreadable, not a wrap).
void check_retry_after(const std::optional<seconds>& ra) {
    static const auto horizon =
        std::chrono::duration_cast<seconds>(sys_clock::time_point::max() - now);
    if (ra) check(*ra >= seconds(0) && *ra <= horizon);
}

// An id made of bytes of the input, spelled so that it needs no JSON escape.
std::string id_from(std::string_view bytes) {
    static constexpr std::string_view alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_@<>";
    std::string id;
    for (char c : bytes.substr(0, 64))
        id += alphabet[static_cast<unsigned char>(c) % alphabet.size()];
    return id.empty() ? std::string("x") : id;
}

void refused(std::string_view provider, const mailers::http::response& r) {
    mailers::diagnostics diag;
    const auto ec = detail::map_http_error(provider, r, now, diag);
    check(ec.category() == mailers::transport_category());
    const auto e = static_cast<transport_errc>(ec.value());
    check(is_table_result(e));
    // map_http_error is classify_http_error over the fields it reports.
    const auto f = detail::extract_http_error(provider, r, now);
    check(f.code == diag.provider_code && f.request_id == diag.request_id &&
          f.retry_after == diag.retry_after);
    const int row = detail::match_http_error_rule(provider, r.status, f.code, f.message);
    check(row >= 0);  // every three-digit status meets a generic row
    check(detail::http_error_rules()[static_cast<std::size_t>(row)].result == e);
    check(mailers::classify(ec) >= mailers::failure::transient &&
          mailers::classify(ec) <= mailers::failure::unknown_outcome);

    check(diag.status == static_cast<int>(r.status));
    check(diag.provider_reply == std::string_view(r.body).substr(0, 2000));
    check(diag.message.starts_with(provider));
    check_retry_after(diag.retry_after);

    // Where a retry-after may come from.
    const auto ra_header = r.header("Retry-After");
    if (ra_header.empty() && !(r.status == 429 && !r.header("X-RateLimit-Reset").empty()) &&
        provider != "gmail")
        check(!diag.retry_after);
    const auto ra_text = trimmed(ra_header);
    if (all_digits(ra_text)) {
        std::uint64_t v = 0;
        const bool fits = ra_text.size() <= 19;
        for (char c : ra_text) v = v * 10 + static_cast<unsigned>(c - '0');
        const auto cap = static_cast<std::uint64_t>(one_day.count());
        if (fits) check(diag.retry_after == seconds(static_cast<std::int64_t>(std::min(v, cap))));
    }

    // The per-thread JSON parser keeps nothing from one reply to the next.
    mailers::diagnostics again;
    check(detail::map_http_error(provider, r, now, again) == ec);
    check(again.message == diag.message && again.provider_code == diag.provider_code &&
          again.retry_after == diag.retry_after);
}

void token(const mailers::http::response& r, bool success_shape, std::string_view expected) {
    detail::token_reply t;
    mailers::diagnostics diag;
    const auto ec = detail::read_token_reply(r, now, t, diag);
    check_retry_after(diag.retry_after);
    if (ec) {
        check(ec.category() == mailers::transport_category());
        check(t.access_token.empty() && !diag.message.empty());
        // A token request carries no mail, so its outcome is never unknown.
        check(ec != mailers::make_error_code(transport_errc::outcome_unknown));
        if (r.status / 100 == 2)
            check(ec == mailers::make_error_code(transport_errc::temporary_reply));
        if (r.status == 429) check(ec == mailers::make_error_code(transport_errc::rate_limited));
        check(!success_shape);
        return;
    }
    check(r.status / 100 == 2 && !t.access_token.empty());
    // The cache adds the lifetime to steady_clock::now().
    check(t.lifetime >= seconds(1) && t.lifetime <= one_day);
    if (success_shape) check(t.access_token == expected);
}

// The members each provider's accepted() reads from a 2xx.
void accepted(std::string_view provider, const mailers::http::response& r, bool success_shape,
              bool numeric_id, std::string_view expected) {
    std::string a, b;
    std::vector<detail::json_member> m;
    if (provider == "ses")
        m = {{"MessageId", &a}};
    else if (provider == "postmark")
        m = {{"MessageID", &a}, {"ErrorCode", &b}};
    else if (provider == "mailgun")
        m = {{"id", &a}, {"message", &b}};
    else if (provider == "gmail")
        m = {{"id", &a}, {"threadId", &b}};
    else
        m = {{"id", &a}};
    const bool object = detail::read_json_members(r.body, m);
    if (!object) check(a.empty() && b.empty());
    if (success_shape) check(object && a == expected);
    if ((success_shape || numeric_id) && provider == "postmark") check(b == "0");
    // A number is read as an integer, or left out when none can hold it.
    if (numeric_id) check(object && is_integer_text(a));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 4) return 0;
    const std::string_view provider = providers[data[0] % std::size(providers)];
    const unsigned status = data[1] < std::size(statuses)
                                ? statuses[data[1]]
                                : ((unsigned(data[1]) << 8) | data[2]) % 1000;
    const unsigned flags = data[3];
    std::string_view rest(reinterpret_cast<const char*>(data) + 4, size - 4);

    mailers::http::response r;
    r.status = status;
    for (std::size_t i = 0; i < std::size(header_names); ++i)
        if (flags & (1u << i))
            r.headers.push_back({std::string(header_names[i]), std::string(take_line(rest))});

    // Bit 6 swaps the body for the provider's success shape around an id
    // taken from the input; bit 7 then puts a number from the input in it
    // (the token's lifetime, or the id itself).
    const bool success_shape = (flags & 0x40) != 0 && status / 100 == 2;
    const bool numeric = (flags & 0x80) != 0;
    const auto id = id_from(rest);
    const auto number = number_from(rest);
    const auto id_json = numeric ? number : '"' + id + '"';
    if (success_shape) {
        if (provider == "oauth")
            r.body = R"({"access_token":")" + id + R"(","token_type":"Bearer","expires_in":)" +
                     (numeric ? number : std::string("3599")) + "}";
        else if (provider == "ses")
            r.body = R"({"MessageId":)" + id_json + "}";
        else if (provider == "postmark")
            r.body =
                R"({"To":"a@b.example","ErrorCode":0,"Message":"OK","MessageID":)" + id_json + "}";
        else if (provider == "mailgun")
            r.body = R"({"id":)" + id_json + R"(,"message":"Queued. Thank you."})";
        else
            r.body = R"({"id":)" + id_json + R"(,"threadId":"t","labelIds":["SENT"]})";
    } else {
        r.body.assign(rest);
    }

    try {
        if (provider == "oauth") token(r, success_shape, id);
        if (status / 100 != 2)
            refused(provider, r);
        else if (provider != "oauth")
            accepted(provider, r, success_shape && !numeric, success_shape && numeric, id);
        // Whatever the status, reading the fields must not fail.
        const auto f = detail::extract_http_error(provider, r, now);
        check_retry_after(f.retry_after);
        (void)detail::parse_rfc3339(rest);
        check_retry_after(detail::parse_retry_after(rest, now));
    } catch (...) {
        check(false);  // the mapping runs in completion handlers: nothing may escape
    }
    return 0;
}
