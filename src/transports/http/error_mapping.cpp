#include "transports/http/error_mapping.hpp"

#include <simdjson.h>

#include <algorithm>
#include <array>
#include <charconv>

#include "mime/text.hpp"
#include "transports/http/common.hpp"

namespace mailers::detail {
namespace {

using enum transport_errc;

// clang-format off
constexpr std::array rules{
    // Amazon SES v2 (REST-JSON: x-amzn-ErrorType header, {"message": ...}).
    // SES reports both of its sending limits with one throttling code; only
    // the text tells the daily quota (wait for the window) from the rate.
    http_error_rule{"ses", "xxx", "", "Daily message quota exceeded", sender_quota_exhausted, "SES 400 LimitExceededException / Throttling: Daily message quota exceeded."},
    http_error_rule{"ses", "xxx", "", "Maximum sending rate exceeded", rate_limited, "SES 400 Throttling: Maximum sending rate exceeded."},
    http_error_rule{"ses", "xxx", "ThrottlingException", "", rate_limited, "SES ThrottlingException: Rate exceeded"},
    http_error_rule{"ses", "xxx", "Throttling", "", rate_limited, "SES Throttling (query-compatible code)"},
    http_error_rule{"ses", "xxx", "TooManyRequestsException", "", rate_limited, "SES v2 429 TooManyRequestsException: Too many requests have been made to the operation"},
    http_error_rule{"ses", "xxx", "LimitExceededException", "", rate_limited, "SES v2 LimitExceededException: a sending limit was reached"},
    http_error_rule{"ses", "xxx", "AccountSuspendedException", "", sender_reputation, "SES v2 AccountSuspendedException: the account's ability to send email has been permanently restricted"},
    http_error_rule{"ses", "xxx", "SendingPausedException", "", sender_reputation, "SES v2 SendingPausedException: sending is paused for the account or configuration set"},
    http_error_rule{"ses", "xxx", "MailFromDomainNotVerifiedException", "", configuration, "SES v2 MailFromDomainNotVerifiedException: the MAIL FROM domain isn't verified"},
    http_error_rule{"ses", "xxx", "NotFoundException", "", configuration, "SES v2 404 NotFoundException: Configuration set <name> does not exist"},
    // In the sandbox, or for an unverified sender, SES answers MessageRejected
    // with this text: it is the account's setup, not the message.
    http_error_rule{"ses", "xxx", "MessageRejected", "not verified", configuration, "SES MessageRejected: Email address is not verified. The following identities failed the check in region EU-WEST-1: a@b"},
    http_error_rule{"ses", "xxx", "MessageRejected", "", content_rejected, "SES MessageRejected: the message contains invalid content (e.g. a virus)"},
    http_error_rule{"ses", "xxx", "BadRequestException", "", content_rejected, "SES v2 400 BadRequestException: the input you provided is invalid"},
    http_error_rule{"ses", "xxx", "UnrecognizedClientException", "", authentication_failed, "SES 403 UnrecognizedClientException: The security token included in the request is invalid"},
    http_error_rule{"ses", "xxx", "InvalidSignatureException", "", authentication_failed, "SES 403 InvalidSignatureException: The request signature we calculated does not match"},
    http_error_rule{"ses", "xxx", "SignatureDoesNotMatch", "", authentication_failed, "SES 403 SignatureDoesNotMatch"},
    http_error_rule{"ses", "xxx", "IncompleteSignatureException", "", authentication_failed, "SES 403 IncompleteSignatureException"},
    http_error_rule{"ses", "xxx", "ExpiredTokenException", "", authentication_failed, "SES 403 ExpiredTokenException: The security token included in the request is expired"},
    http_error_rule{"ses", "xxx", "AccessDeniedException", "", configuration, "SES 403 AccessDeniedException: not authorized to perform ses:SendEmail"},
    http_error_rule{"ses", "xxx", "InternalServiceErrorException", "", temporary_reply, "SES v2 500 InternalServiceErrorException"},

    // SendGrid v3 ({"errors":[{"message":...,"field":...}]}).
    http_error_rule{"sendgrid", "xxx", "", "Maximum credits exceeded", sender_quota_exhausted, "SendGrid 401: Maximum credits exceeded (plan limit reached)"},
    http_error_rule{"sendgrid", "403", "", "verified Sender Identity", configuration, "SendGrid 403: The from address does not match a verified Sender Identity"},
    http_error_rule{"sendgrid", "401", "", "", authentication_failed, "SendGrid 401: The provided authorization grant is invalid, expired, or revoked"},
    http_error_rule{"sendgrid", "403", "", "", authentication_failed, "SendGrid 403: access forbidden (key without Mail Send permission, IP not allowed)"},

    // Postmark (422 {"ErrorCode": N, "Message": ...}); the code is ErrorCode.
    http_error_rule{"postmark", "xxx", "406", "", recipient_rejected, "Postmark 422 ErrorCode 406: You tried to send to recipient(s) that have been marked as inactive"},
    http_error_rule{"postmark", "xxx", "300", "sender signature", configuration, "Postmark 422 ErrorCode 300: Invalid 'From' address: not a verified sender signature"},
    http_error_rule{"postmark", "xxx", "300", "", content_rejected, "Postmark 422 ErrorCode 300: Invalid email request"},
    http_error_rule{"postmark", "xxx", "10", "", authentication_failed, "Postmark 401 ErrorCode 10: Bad or missing API token"},
    http_error_rule{"postmark", "xxx", "400", "", configuration, "Postmark ErrorCode 400: Sender signature not found"},
    http_error_rule{"postmark", "xxx", "401", "", configuration, "Postmark ErrorCode 401: Sender signature not confirmed"},
    http_error_rule{"postmark", "xxx", "402", "", content_rejected, "Postmark ErrorCode 402: Invalid JSON"},
    http_error_rule{"postmark", "xxx", "403", "", content_rejected, "Postmark ErrorCode 403: Incompatible JSON"},
    http_error_rule{"postmark", "xxx", "405", "", sender_quota_exhausted, "Postmark ErrorCode 405: Not allowed to send (the account ran out of credits)"},
    http_error_rule{"postmark", "xxx", "409", "", content_rejected, "Postmark ErrorCode 409: JSON required"},
    http_error_rule{"postmark", "xxx", "410", "", content_rejected, "Postmark ErrorCode 410: Too many batch messages"},
    http_error_rule{"postmark", "xxx", "411", "", content_rejected, "Postmark ErrorCode 411: Forbidden attachment type"},
    http_error_rule{"postmark", "xxx", "412", "", configuration, "Postmark ErrorCode 412: Account is pending approval"},
    http_error_rule{"postmark", "xxx", "413", "", sender_reputation, "Postmark ErrorCode 413: Account may not send"},
    http_error_rule{"postmark", "xxx", "100", "", temporary_reply, "Postmark 503 ErrorCode 100: Maintenance"},

    // Mailgun ({"message": ...}, or a plain-text body such as "Forbidden").
    http_error_rule{"mailgun", "xxx", "", "not allowed to send", configuration, "Mailgun 403: Domain sandbox... is not allowed to send: Free accounts are for test purposes only"},
    http_error_rule{"mailgun", "xxx", "", "Domain not found", configuration, "Mailgun 404: Domain not found: example.com"},
    http_error_rule{"mailgun", "401", "", "", authentication_failed, "Mailgun 401: Forbidden (bad API key)"},

    // Gmail API ({"error":{"code":..,"message":..,"errors":[{"reason":..}],"status":..}}).
    // The daily sending limit is a 429 whose text names "(Mail sending)".
    http_error_rule{"gmail", "xxx", "", "(Mail sending)", sender_quota_exhausted, "Gmail 429 rateLimitExceeded: User-rate limit exceeded.  Retry after 2024-05-01T12:00:00.000Z (Mail sending)"},
    http_error_rule{"gmail", "xxx", "dailyLimitExceeded", "", sender_quota_exhausted, "Gmail 403 dailyLimitExceeded: Daily Limit Exceeded"},
    http_error_rule{"gmail", "xxx", "userRateLimitExceeded", "", rate_limited, "Gmail 403 userRateLimitExceeded: User Rate Limit Exceeded"},
    http_error_rule{"gmail", "xxx", "rateLimitExceeded", "", rate_limited, "Gmail 403/429 rateLimitExceeded: Rate Limit Exceeded"},
    http_error_rule{"gmail", "xxx", "quotaExceeded", "", rate_limited, "Gmail 403 quotaExceeded: too many concurrent requests for the user"},
    http_error_rule{"gmail", "xxx", "domainPolicy", "", configuration, "Gmail 403 domainPolicy: The domain administrators have disabled Gmail apps"},
    http_error_rule{"gmail", "xxx", "insufficientPermissions", "", configuration, "Gmail 403 insufficientPermissions: Request had insufficient authentication scopes"},
    http_error_rule{"gmail", "xxx", "failedPrecondition", "", configuration, "Gmail 400 failedPrecondition: Precondition check failed (mail service not enabled, delegation missing)"},
    http_error_rule{"gmail", "xxx", "authError", "", authentication_failed, "Gmail 401 authError: Invalid Credentials"},
    http_error_rule{"gmail", "xxx", "invalidArgument", "", content_rejected, "Gmail 400 invalidArgument: Invalid To header / 'raw' RFC822 payload message string"},
    http_error_rule{"gmail", "xxx", "badRequest", "", content_rejected, "Gmail 400 badRequest"},
    http_error_rule{"gmail", "xxx", "backendError", "", temporary_reply, "Gmail 500/503 backendError"},

    // Microsoft Graph ({"error":{"code":..,"message":..}}). A fifth
    // concurrent request per app and mailbox is refused; the transport keeps
    // below that limit, but another client of the same app may not.
    http_error_rule{"graph", "429", "", "MailboxConcurrency", rate_limited, "Graph 429 ApplicationThrottled: Application is over its MailboxConcurrency limit."},
    http_error_rule{"graph", "xxx", "ErrorSendAsDenied", "", configuration, "Graph 403 ErrorSendAsDenied: not allowed to send on behalf of the specified sending account"},
    http_error_rule{"graph", "xxx", "ErrorAccessDenied", "", configuration, "Graph 403 ErrorAccessDenied: Access is denied. Check credentials and try again."},
    http_error_rule{"graph", "xxx", "Authorization_RequestDenied", "", configuration, "Graph 403 Authorization_RequestDenied: Insufficient privileges to complete the operation"},
    http_error_rule{"graph", "xxx", "InvalidAuthenticationToken", "", authentication_failed, "Graph 401 InvalidAuthenticationToken: Access token has expired or is not yet valid"},
    http_error_rule{"graph", "xxx", "ErrorInvalidUser", "", configuration, "Graph 404 ErrorInvalidUser: The requested user is invalid"},
    http_error_rule{"graph", "xxx", "MailboxNotEnabledForRESTAPI", "", configuration, "Graph 404 MailboxNotEnabledForRESTAPI: the mailbox is inactive, soft-deleted or on-premises"},
    http_error_rule{"graph", "xxx", "ErrorQuotaExceeded", "", sender_quota_exhausted, "Graph ErrorQuotaExceeded: the mailbox has exceeded its quota"},
    http_error_rule{"graph", "xxx", "ErrorMessageSubmissionBlocked", "", sender_reputation, "Graph ErrorMessageSubmissionBlocked: the account is blocked from sending"},
    http_error_rule{"graph", "xxx", "ErrorMimeContentInvalidBase64String", "", content_rejected, "Graph 400 ErrorMimeContentInvalidBase64String"},
    http_error_rule{"graph", "xxx", "ErrorMimeContentConversionFailed", "", content_rejected, "Graph 400 ErrorMimeContentConversionFailed"},

    // OAuth 2.0 token endpoints (RFC 6749 5.2: {"error":..,"error_description":..}).
    // A 429 is throttling whatever error it names: Microsoft Entra ID says
    // temporarily_unavailable, and codes such as invalid_request would
    // otherwise read as the account's setup.
    http_error_rule{"oauth", "429", "", "", rate_limited, "Entra ID / Google 429 temporarily_unavailable: the token endpoint is throttling the client"},
    http_error_rule{"oauth", "xxx", "invalid_grant", "", authentication_failed, "Google/Microsoft 400 invalid_grant: Token has been expired or revoked / Invalid JWT Signature"},
    http_error_rule{"oauth", "xxx", "invalid_client", "", authentication_failed, "401 invalid_client: The OAuth client was not found / AADSTS7000215 Invalid client secret"},
    http_error_rule{"oauth", "xxx", "unauthorized_client", "", configuration, "Google 401 unauthorized_client: Client is unauthorized to retrieve access tokens (delegation not granted)"},
    http_error_rule{"oauth", "xxx", "invalid_scope", "", configuration, "400 invalid_scope"},
    http_error_rule{"oauth", "xxx", "access_denied", "", configuration, "403 access_denied"},
    http_error_rule{"oauth", "xxx", "invalid_request", "", configuration, "400 invalid_request: AADSTS900023 Specified tenant identifier is neither a valid DNS name nor a valid external domain"},
    http_error_rule{"oauth", "xxx", "temporarily_unavailable", "", temporary_reply, "503 temporarily_unavailable"},

    // Generic HTTP, for every provider.
    http_error_rule{"*", "429", "", "", rate_limited, "429 Too Many Requests"},
    http_error_rule{"*", "401", "", "", authentication_failed, "401 Unauthorized"},
    http_error_rule{"*", "403", "", "", authentication_failed, "403 Forbidden"},
    http_error_rule{"*", "404", "", "", configuration, "404 Not Found: wrong endpoint, domain or user"},
    http_error_rule{"*", "405", "", "", configuration, "405 Method Not Allowed: wrong endpoint"},
    http_error_rule{"*", "407", "", "", configuration, "407 Proxy Authentication Required"},
    // The server gave up waiting for the rest of the request, so it did not act on it.
    http_error_rule{"*", "408", "", "", temporary_reply, "408 Request Timeout"},
    http_error_rule{"*", "413", "", "", content_rejected, "413 Payload Too Large"},
    http_error_rule{"*", "3xx", "", "", configuration, "3xx redirect: the endpoint moved; POSTs are not followed"},
    // A gateway that timed out waiting for the service had passed the request
    // on: it cannot say whether the service accepted the message.
    http_error_rule{"*", "504", "", "", outcome_unknown, "504 Gateway Timeout"},
    http_error_rule{"*", "524", "", "", outcome_unknown, "524 A Timeout Occurred (Cloudflare: the origin took the request and did not answer)"},
    http_error_rule{"*", "598", "", "", outcome_unknown, "598 Network Read Timeout (a proxy gave up reading the upstream's reply)"},
    http_error_rule{"*", "5xx", "", "", temporary_reply, "500 / 502 / 503 server error"},
    http_error_rule{"*", "4xx", "", "", content_rejected, "other 4xx: the request was refused as written"},
    // A final status outside HTTP's classes: nothing tells what happened to the request.
    http_error_rule{"*", "xxx", "", "", outcome_unknown, "a status outside 3xx-5xx"},
};
// clang-format on

bool status_matches(std::string_view pattern, unsigned status) noexcept {
    if (pattern.size() != 3 || status > 999) return false;
    const char digits[3] = {static_cast<char>('0' + status / 100),
                            static_cast<char>('0' + status / 10 % 10),
                            static_cast<char>('0' + status % 10)};
    for (int i = 0; i < 3; ++i)
        if (pattern[i] != 'x' && pattern[i] != digits[i]) return false;
    return true;
}

using sys_clock = std::chrono::system_clock;

bool read_digits(std::string_view s, std::size_t pos, std::size_t n, unsigned& out) noexcept {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9') return false;
        out = out * 10 + static_cast<unsigned>(s[i] - '0');
    }
    return true;
}

// Unix time as a time_point, or nullopt when the clock cannot hold it (with
// nanosecond ticks it spans only the years 1677 to 2262). The week of margin
// leaves room for a UTC offset to be applied afterwards.
std::optional<sys_clock::time_point> from_unix_seconds(std::int64_t secs) noexcept {
    constexpr auto limit =
        std::chrono::duration_cast<std::chrono::seconds>(sys_clock::duration::max()).count() -
        7 * 86400;
    if (secs < -limit || secs > limit) return std::nullopt;
    return sys_clock::time_point{std::chrono::seconds(secs)};
}

std::optional<sys_clock::time_point> make_time(unsigned y, unsigned mo, unsigned d, unsigned h,
                                               unsigned mi, unsigned s) noexcept {
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || s > 60) return std::nullopt;
    // A day past the month's end rolls over into the next month, as the
    // calendar arithmetic of sys_days does for any valid year and month.
    using namespace std::chrono;
    const auto date = year{static_cast<int>(y)} / month{mo} / day{d};
    const std::int64_t days = sys_days{date}.time_since_epoch().count();
    return from_unix_seconds(days * 86400 + h * 3600 + mi * 60 + s);
}

// IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
std::optional<sys_clock::time_point> parse_imf_fixdate(std::string_view v) noexcept {
    static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    if (v.size() != 29 || v[3] != ',' || v.substr(26) != "GMT") return std::nullopt;
    unsigned d = 0, y = 0, h = 0, mi = 0, s = 0, mo = 0;
    if (!read_digits(v, 5, 2, d) || !read_digits(v, 12, 4, y) || !read_digits(v, 17, 2, h) ||
        !read_digits(v, 20, 2, mi) || !read_digits(v, 23, 2, s))
        return std::nullopt;
    const auto mon = v.substr(8, 3);
    for (unsigned i = 0; i < 12; ++i)
        if (mon == months[i]) mo = i + 1;
    return make_time(y, mo, d, h, mi, s);
}

std::chrono::seconds until(sys_clock::time_point t, sys_clock::time_point now) noexcept {
    if (t <= now) return std::chrono::seconds(0);
    // Round up: waiting a fraction too little just earns another refusal.
    return std::chrono::ceil<std::chrono::seconds>(t - now);
}

std::string sanitize_aws_code(std::string_view v) {
    // "MessageRejected:http://internal.amazon.com/coral/..." or
    // "com.amazonaws.sesv2#MessageRejected".
    v = v.substr(0, v.find_first_of(":,"));
    if (const auto hash = v.find('#'); hash != std::string_view::npos) v = v.substr(hash + 1);
    while (!v.empty() && v.back() == ' ') v.remove_suffix(1);
    return std::string(v);
}

std::string_view str_member(simdjson::dom::object o, std::string_view key) {
    std::string_view s;
    if (o[key].get(s) == simdjson::SUCCESS) return s;
    return {};
}

std::string num_or_str_member(simdjson::dom::object o, std::string_view key) {
    std::int64_t i = 0;
    if (o[key].get(i) == simdjson::SUCCESS) return std::to_string(i);
    return std::string(str_member(o, key));
}

// Fills code and message from the body's JSON, provider by provider.
void read_error_body(std::string_view provider, std::string_view body, http_error_fields& f) {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object o;
    if (parser.parse(body.data(), body.size()).get(o) != simdjson::SUCCESS) {
        f.message.assign(body.substr(0, 500));
        return;
    }
    if (provider == "ses") {
        if (f.code.empty()) {
            auto c = str_member(o, "code");
            if (c.empty()) c = str_member(o, "__type");
            if (c.empty()) c = str_member(o, "Code");
            f.code = sanitize_aws_code(c);
        }
        auto m = str_member(o, "message");
        if (m.empty()) m = str_member(o, "Message");
        f.message.assign(m);
    } else if (provider == "postmark") {
        f.code = num_or_str_member(o, "ErrorCode");
        f.message.assign(str_member(o, "Message"));
    } else if (provider == "sendgrid") {
        simdjson::dom::array errors;
        if (o["errors"].get(errors) == simdjson::SUCCESS) {
            for (auto e : errors) {
                simdjson::dom::object eo;
                if (e.get(eo) != simdjson::SUCCESS) continue;
                if (!f.message.empty()) f.message += "; ";
                f.message.append(str_member(eo, "message"));
                if (f.code.empty()) f.code.assign(str_member(eo, "field"));
            }
        }
    } else if (provider == "gmail" || provider == "graph") {
        simdjson::dom::object err;
        if (o["error"].get(err) == simdjson::SUCCESS) {
            f.message.assign(str_member(err, "message"));
            if (provider == "graph") {
                f.code.assign(str_member(err, "code"));
            } else {
                simdjson::dom::array errors;
                if (err["errors"].get(errors) == simdjson::SUCCESS) {
                    for (auto e : errors) {
                        simdjson::dom::object eo;
                        if (e.get(eo) == simdjson::SUCCESS) {
                            f.code.assign(str_member(eo, "reason"));
                            break;
                        }
                    }
                }
                if (f.code.empty()) f.code.assign(str_member(err, "status"));
            }
        }
    } else if (provider == "oauth") {
        f.code.assign(str_member(o, "error"));
        f.message.assign(str_member(o, "error_description"));
        if (f.code.empty()) {
            // Some endpoints nest the RFC 6749 error in a Google-style object.
            simdjson::dom::object err;
            if (o["error"].get(err) == simdjson::SUCCESS) {
                f.code.assign(str_member(err, "status"));
                f.message.assign(str_member(err, "message"));
            }
        }
    } else {
        f.message.assign(str_member(o, "message"));
    }
    if (f.message.empty()) f.message.assign(body.substr(0, 500));
}

}  // namespace

std::span<const http_error_rule> http_error_rules() noexcept {
    return rules;
}

int match_http_error_rule(std::string_view provider, unsigned status, std::string_view code,
                          std::string_view text) noexcept {
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const auto& r = rules[i];
        if (r.provider != "*" && r.provider != provider) continue;
        if (!status_matches(r.status, status)) continue;
        if (!r.code.empty() && !mime::iequals(r.code, code)) continue;
        if (!mime::icontains(text, r.text)) continue;
        return static_cast<int>(i);
    }
    return -1;
}

transport_errc classify_http_error(std::string_view provider, unsigned status,
                                   std::string_view code, std::string_view text) noexcept {
    const int i = match_http_error_rule(provider, status, code, text);
    return i < 0 ? outcome_unknown : rules[static_cast<std::size_t>(i)].result;
}

std::optional<std::chrono::seconds> parse_retry_after(std::string_view v,
                                                      sys_clock::time_point now) noexcept {
    while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
    while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) v.remove_suffix(1);
    if (v.empty()) return std::nullopt;
    if (v.front() >= '0' && v.front() <= '9') {
        std::uint64_t secs = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), secs);
        if (ec != std::errc{} || p != v.data() + v.size()) return std::nullopt;
        // A day is far beyond any provider's advice; cap absurd values.
        return std::chrono::seconds(std::min<std::uint64_t>(secs, 86400));
    }
    if (auto t = parse_imf_fixdate(v)) return until(*t, now);
    return std::nullopt;
}

std::optional<sys_clock::time_point> parse_http_date(std::string_view v) noexcept {
    return parse_imf_fixdate(v);
}

bool is_aws_request_time_refusal(std::string_view code, std::string_view message) noexcept {
    for (std::string_view c : {"RequestTimeTooSkewed", "RequestExpired", "RequestInTheFuture"})
        if (mime::iequals(code, c)) return true;
    return mime::icontains(message, "Signature expired") ||
           mime::icontains(message, "Signature not yet current");
}

std::optional<sys_clock::time_point> parse_rfc3339(std::string_view v) noexcept {
    unsigned y = 0, mo = 0, d = 0, h = 0, mi = 0, s = 0;
    if (v.size() < 20 || v[4] != '-' || v[7] != '-' || (v[10] != 'T' && v[10] != 't') ||
        v[13] != ':' || v[16] != ':')
        return std::nullopt;
    if (!read_digits(v, 0, 4, y) || !read_digits(v, 5, 2, mo) || !read_digits(v, 8, 2, d) ||
        !read_digits(v, 11, 2, h) || !read_digits(v, 14, 2, mi) || !read_digits(v, 17, 2, s))
        return std::nullopt;
    std::size_t pos = 19;
    if (pos < v.size() && v[pos] == '.') {
        ++pos;
        while (pos < v.size() && v[pos] >= '0' && v[pos] <= '9') ++pos;
    }
    auto t = make_time(y, mo, d, h, mi, s);
    if (!t || pos >= v.size()) return std::nullopt;
    if (v[pos] == 'Z' || v[pos] == 'z') return t;
    if ((v[pos] == '+' || v[pos] == '-') && pos + 6 <= v.size() && v[pos + 3] == ':') {
        unsigned oh = 0, om = 0;
        if (!read_digits(v, pos + 1, 2, oh) || !read_digits(v, pos + 4, 2, om)) return std::nullopt;
        const auto off = std::chrono::seconds(oh * 3600 + om * 60);
        return v[pos] == '+' ? *t - off : *t + off;
    }
    return std::nullopt;
}

http_error_fields extract_http_error(std::string_view provider, const http::response& r,
                                     sys_clock::time_point now) {
    http_error_fields f;
    if (provider == "ses") {
        f.code = sanitize_aws_code(r.header("x-amzn-ErrorType"));
        f.request_id.assign(r.header("x-amzn-RequestId"));
    } else if (provider == "graph") {
        f.request_id.assign(r.header("request-id"));
    }
    if (!r.body.empty()) read_error_body(provider, r.body, f);

    if (auto ra = r.header("Retry-After"); !ra.empty()) f.retry_after = parse_retry_after(ra, now);
    if (!f.retry_after && r.status == 429) {
        if (auto reset = r.header("X-RateLimit-Reset"); !reset.empty()) {
            std::int64_t epoch = 0;
            auto [p, ec] = std::from_chars(reset.data(), reset.data() + reset.size(), epoch);
            if (ec == std::errc{} && p == reset.data() + reset.size())
                if (auto t = from_unix_seconds(epoch)) f.retry_after = until(*t, now);
        }
    }
    if (!f.retry_after && provider == "gmail") {
        constexpr std::string_view marker = "Retry after ";
        if (const auto at = f.message.find(marker); at != std::string::npos) {
            const auto rest = std::string_view(f.message).substr(at + marker.size());
            if (auto t = parse_rfc3339(rest.substr(0, rest.find(' '))))
                f.retry_after = until(*t, now);
        }
    }
    return f;
}

error_code map_http_error(std::string_view provider, const http::response& r,
                          sys_clock::time_point now, diagnostics& diag) {
    auto f = extract_http_error(provider, r, now);
    const auto result = classify_http_error(provider, r.status, f.code, f.message);
    diag.status = static_cast<int>(r.status);
    diag.provider_code = f.code;
    diag.request_id = std::move(f.request_id);
    diag.retry_after = f.retry_after;
    diag.provider_reply.assign(r.body.substr(0, 2000));
    diag.message = std::string(provider) + " refused the request: HTTP " + std::to_string(r.status);
    if (!f.code.empty()) diag.message += " " + f.code;
    if (!f.message.empty()) diag.message += ": " + f.message;
    return make_error_code(result);
}

error_code read_token_reply(const http::response& r, sys_clock::time_point now, token_reply& out,
                            diagnostics& diag) {
    out = token_reply{};
    if (r.status / 100 != 2) {
        auto ec = map_http_error("oauth", r, now, diag);
        if (ec == make_error_code(outcome_unknown)) ec = make_error_code(temporary_reply);
        return ec;
    }
    std::string expires;
    const json_member m[] = {{"access_token", &out.access_token}, {"expires_in", &expires}};
    if (!read_json_members(r.body, m) || out.access_token.empty()) {
        out.access_token.clear();
        diag.status = static_cast<int>(r.status);
        diag.message = "the reply has no access_token";
        return make_error_code(temporary_reply);
    }
    std::int64_t expires_in = 0;
    std::from_chars(expires.data(), expires.data() + expires.size(), expires_in);
    if (expires_in <= 0) expires_in = 3600;
    // The token cache adds the lifetime to its clock; real tokens live an
    // hour or so, and a day bounds what a reply can make it believe.
    out.lifetime = std::min(std::chrono::seconds(expires_in), std::chrono::seconds(86400));
    return {};
}

}  // namespace mailers::detail
