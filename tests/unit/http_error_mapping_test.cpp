// The HTTP providers' error replies -> failure classes, over a regression
// table of replies as the providers document and send them; the table's own
// consistency; Retry-After in its three spellings; DSN reading; RS256 JWTs.
#include <doctest/doctest.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <mailers/transports/http_transports.hpp>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "http/client.hpp"
#include "transports/http/common.hpp"
#include "transports/http/error_mapping.hpp"
#include "transports/http/oauth2.hpp"

using namespace std::chrono_literals;
using mailers::failure;
using mailers::transport_errc;
using sys_clock = std::chrono::system_clock;
namespace detail = mailers::detail;

namespace {

// 2030-01-01T12:00:00Z
const sys_clock::time_point fixed_now{std::chrono::seconds(1893499200)};

struct reply_case {
    const char* provider;
    unsigned status;
    std::vector<mailers::http::field> headers;
    const char* body;
    transport_errc expected;
    const char* code;  // expected provider_code
    std::optional<std::chrono::seconds> retry_after;
};

// clang-format off
const std::vector<reply_case> replies{
    // Amazon SES v2.
    {"ses", 400, {{"x-amzn-ErrorType", "LimitExceededException:http://internal.amazon.com/coral/com.amazonaws.sesv2/"}, {"x-amzn-RequestId", "8f1a-req"}},
     R"({"message":"Daily message quota exceeded."})", transport_errc::sender_quota_exhausted, "LimitExceededException", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "ThrottlingException"}},
     R"({"message":"Maximum sending rate exceeded."})", transport_errc::rate_limited, "ThrottlingException", std::nullopt},
    {"ses", 429, {{"x-amzn-ErrorType", "TooManyRequestsException:http://internal.amazon.com/coral/com.amazonaws.sesv2/"}},
     R"({"message":"Too Many Requests"})", transport_errc::rate_limited, "TooManyRequestsException", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "MessageRejected:http://internal.amazon.com/coral/com.amazonaws.sesv2/"}},
     R"({"message":"Email address is not verified. The following identities failed the check in region EU-WEST-1: rep@brand.example"})",
     transport_errc::configuration, "MessageRejected", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "MessageRejected"}},
     R"({"message":"Message contained a virus."})", transport_errc::content_rejected, "MessageRejected", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "AccountSuspendedException"}},
     R"({"message":"Your account has been suspended from sending email."})", transport_errc::sender_reputation, "AccountSuspendedException", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "SendingPausedException"}},
     R"({"message":"Sending is paused for this account."})", transport_errc::sender_reputation, "SendingPausedException", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "MailFromDomainNotVerifiedException"}},
     R"({"message":"The MAIL FROM domain is not verified."})", transport_errc::configuration, "MailFromDomainNotVerifiedException", std::nullopt},
    {"ses", 404, {{"x-amzn-ErrorType", "NotFoundException"}},
     R"({"message":"Configuration set <bulk> does not exist."})", transport_errc::configuration, "NotFoundException", std::nullopt},
    {"ses", 400, {{"x-amzn-ErrorType", "BadRequestException"}},
     R"({"message":"Missing required header 'From'."})", transport_errc::content_rejected, "BadRequestException", std::nullopt},
    // No header: the code comes from __type, namespace and all.
    {"ses", 403, {},
     R"({"__type":"com.amazon.coral.service#UnrecognizedClientException","message":"The security token included in the request is invalid."})",
     transport_errc::authentication_failed, "UnrecognizedClientException", std::nullopt},
    {"ses", 403, {{"x-amzn-ErrorType", "InvalidSignatureException"}},
     R"({"message":"The request signature we calculated does not match the signature you provided."})", transport_errc::authentication_failed, "InvalidSignatureException", std::nullopt},
    {"ses", 403, {{"x-amzn-ErrorType", "AccessDeniedException"}},
     R"({"Message":"User: arn:aws:iam::1:user/x is not authorized to perform: ses:SendEmail"})", transport_errc::configuration, "AccessDeniedException", std::nullopt},
    {"ses", 500, {{"x-amzn-ErrorType", "InternalFailure"}}, R"({"message":"An internal error occurred."})", transport_errc::temporary_reply, "InternalFailure", std::nullopt},
    {"ses", 503, {{"Retry-After", "5"}}, "Service Unavailable", transport_errc::temporary_reply, "", 5s},
    {"ses", 504, {}, "<html>Gateway Timeout</html>", transport_errc::outcome_unknown, "", std::nullopt},

    // SendGrid v3.
    {"sendgrid", 401, {}, R"({"errors":[{"message":"The provided authorization grant is invalid, expired, or revoked","field":null,"help":null}]})",
     transport_errc::authentication_failed, "", std::nullopt},
    {"sendgrid", 401, {}, R"({"errors":[{"message":"Maximum credits exceeded","field":null,"help":null}]})",
     transport_errc::sender_quota_exhausted, "", std::nullopt},
    {"sendgrid", 403, {}, R"({"errors":[{"message":"The from address does not match a verified Sender Identity. Mail cannot be sent until this error is resolved.","field":"from","help":null}]})",
     transport_errc::configuration, "from", std::nullopt},
    {"sendgrid", 403, {}, R"({"errors":[{"message":"access forbidden","field":null,"help":null}]})",
     transport_errc::authentication_failed, "", std::nullopt},
    {"sendgrid", 400, {}, R"({"errors":[{"message":"Does not contain a valid address.","field":"personalizations.0.to.0.email","help":"http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.personalizations.to"}]})",
     transport_errc::content_rejected, "personalizations.0.to.0.email", std::nullopt},
    {"sendgrid", 413, {}, R"({"errors":[{"message":"The JSON payload you have included in your request is too large.","field":null,"help":null}]})",
     transport_errc::content_rejected, "", std::nullopt},
    {"sendgrid", 429, {{"X-RateLimit-Limit", "600"}, {"X-RateLimit-Remaining", "0"}, {"X-RateLimit-Reset", "1893499230"}},
     R"({"errors":[{"field":null,"message":"too many requests"}]})", transport_errc::rate_limited, "", 30s},
    {"sendgrid", 500, {}, R"({"errors":[{"field":null,"message":"internal error"}]})", transport_errc::temporary_reply, "", std::nullopt},

    // Postmark.
    {"postmark", 422, {}, R"({"ErrorCode":406,"Message":"You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: gone@example.com. Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression."})",
     transport_errc::recipient_rejected, "406", std::nullopt},
    {"postmark", 422, {}, R"({"ErrorCode":300,"Message":"Invalid 'To' address: 'not an address'."})",
     transport_errc::content_rejected, "300", std::nullopt},
    {"postmark", 422, {}, R"({"ErrorCode":300,"Message":"Invalid 'From' address: 'sender@example.com' is not a verified sender signature."})",
     transport_errc::configuration, "300", std::nullopt},
    {"postmark", 401, {}, R"({"ErrorCode":10,"Message":"The Server Token you provided in the X-Postmark-Server-Token request header was invalid."})",
     transport_errc::authentication_failed, "10", std::nullopt},
    {"postmark", 422, {}, R"({"ErrorCode":400,"Message":"The 'From' address you supplied (x@y.example) is not a Sender Signature on your account."})",
     transport_errc::configuration, "400", std::nullopt},
    {"postmark", 422, {}, R"({"ErrorCode":405,"Message":"Not allowed to send: you have run out of credits."})",
     transport_errc::sender_quota_exhausted, "405", std::nullopt},
    {"postmark", 422, {}, R"({"ErrorCode":412,"Message":"While your account is pending approval, all recipient addresses must share the same domain as the 'From' address."})",
     transport_errc::configuration, "412", std::nullopt},
    {"postmark", 429, {{"Retry-After", "60"}}, R"({"ErrorCode":429,"Message":"Rate limit exceeded."})", transport_errc::rate_limited, "429", 60s},
    {"postmark", 503, {}, R"({"ErrorCode":100,"Message":"Postmark is under maintenance."})", transport_errc::temporary_reply, "100", std::nullopt},

    // Mailgun.
    {"mailgun", 401, {}, "Forbidden", transport_errc::authentication_failed, "", std::nullopt},
    {"mailgun", 400, {}, R"({"message":"'to' parameter is not a valid address. please check documentation"})",
     transport_errc::content_rejected, "", std::nullopt},
    {"mailgun", 403, {}, R"({"message":"Domain sandbox1234.mailgun.org is not allowed to send: Free accounts are for test purposes only. Please upgrade or add the address to authorized recipients in Account Settings."})",
     transport_errc::configuration, "", std::nullopt},
    {"mailgun", 404, {}, R"({"message":"Domain not found: mg.example.com"})", transport_errc::configuration, "", std::nullopt},
    {"mailgun", 429, {{"Retry-After", "10"}}, R"({"message":"Too many requests"})", transport_errc::rate_limited, "", 10s},
    {"mailgun", 502, {}, "Bad Gateway", transport_errc::temporary_reply, "", std::nullopt},

    // Gmail API. The daily sending limit names its end in the text.
    {"gmail", 429, {}, R"j({"error":{"code":429,"message":"User-rate limit exceeded.  Retry after 2030-01-01T12:00:30.000Z (Mail sending)","errors":[{"message":"User-rate limit exceeded.  Retry after 2030-01-01T12:00:30.000Z (Mail sending)","domain":"usageLimits","reason":"rateLimitExceeded"}],"status":"RESOURCE_EXHAUSTED"}})j",
     transport_errc::sender_quota_exhausted, "rateLimitExceeded", 30s},
    {"gmail", 403, {}, R"({"error":{"errors":[{"domain":"usageLimits","reason":"userRateLimitExceeded","message":"User Rate Limit Exceeded"}],"code":403,"message":"User Rate Limit Exceeded"}})",
     transport_errc::rate_limited, "userRateLimitExceeded", std::nullopt},
    {"gmail", 403, {}, R"({"error":{"errors":[{"domain":"usageLimits","reason":"dailyLimitExceeded","message":"Daily Limit Exceeded"}],"code":403,"message":"Daily Limit Exceeded"}})",
     transport_errc::sender_quota_exhausted, "dailyLimitExceeded", std::nullopt},
    {"gmail", 403, {}, R"({"error":{"errors":[{"domain":"usageLimits","reason":"rateLimitExceeded","message":"Rate Limit Exceeded"}],"code":403,"message":"Rate Limit Exceeded"}})",
     transport_errc::rate_limited, "rateLimitExceeded", std::nullopt},
    {"gmail", 400, {}, R"({"error":{"code":400,"message":"Invalid To header","errors":[{"message":"Invalid To header","domain":"global","reason":"invalidArgument"}],"status":"INVALID_ARGUMENT"}})",
     transport_errc::content_rejected, "invalidArgument", std::nullopt},
    {"gmail", 400, {}, R"({"error":{"code":400,"message":"Precondition check failed.","errors":[{"message":"Precondition check failed.","domain":"global","reason":"failedPrecondition"}],"status":"FAILED_PRECONDITION"}})",
     transport_errc::configuration, "failedPrecondition", std::nullopt},
    {"gmail", 401, {}, R"({"error":{"errors":[{"domain":"global","reason":"authError","message":"Invalid Credentials","locationType":"header","location":"Authorization"}],"code":401,"message":"Invalid Credentials"}})",
     transport_errc::authentication_failed, "authError", std::nullopt},
    {"gmail", 403, {}, R"({"error":{"code":403,"message":"Request had insufficient authentication scopes.","errors":[{"message":"Insufficient Permission","domain":"global","reason":"insufficientPermissions"}],"status":"PERMISSION_DENIED"}})",
     transport_errc::configuration, "insufficientPermissions", std::nullopt},
    {"gmail", 500, {}, R"({"error":{"errors":[{"domain":"global","reason":"backendError","message":"Backend Error"}],"code":500,"message":"Backend Error"}})",
     transport_errc::temporary_reply, "backendError", std::nullopt},

    // Microsoft Graph.
    {"graph", 429, {{"Retry-After", "1"}, {"request-id", "6c1e-req"}}, R"({"error":{"code":"ApplicationThrottled","message":"Application is over its MailboxConcurrency limit.","innerError":{"date":"2030-01-01T12:00:00","request-id":"6c1e-req"}}})",
     transport_errc::rate_limited, "ApplicationThrottled", 1s},
    {"graph", 429, {{"Retry-After", "30"}}, R"({"error":{"code":"ApplicationThrottled","message":"Application is over its RequestRate limit."}})",
     transport_errc::rate_limited, "ApplicationThrottled", 30s},
    {"graph", 403, {}, R"({"error":{"code":"ErrorSendAsDenied","message":"The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account."}})",
     transport_errc::configuration, "ErrorSendAsDenied", std::nullopt},
    {"graph", 403, {}, R"({"error":{"code":"ErrorAccessDenied","message":"Access is denied. Check credentials and try again."}})",
     transport_errc::configuration, "ErrorAccessDenied", std::nullopt},
    {"graph", 401, {}, R"({"error":{"code":"InvalidAuthenticationToken","message":"Access token has expired or is not yet valid."}})",
     transport_errc::authentication_failed, "InvalidAuthenticationToken", std::nullopt},
    {"graph", 404, {}, R"({"error":{"code":"ErrorInvalidUser","message":"The requested user 'nobody@brand.example' is invalid."}})",
     transport_errc::configuration, "ErrorInvalidUser", std::nullopt},
    {"graph", 400, {}, R"({"error":{"code":"ErrorMimeContentInvalidBase64String","message":"Invalid base64 string for MIME content."}})",
     transport_errc::content_rejected, "ErrorMimeContentInvalidBase64String", std::nullopt},
    {"graph", 503, {{"Retry-After", "Tue, 01 Jan 2030 12:01:00 GMT"}}, R"({"error":{"code":"ServiceUnavailable","message":"Service Unavailable"}})",
     transport_errc::temporary_reply, "ServiceUnavailable", 60s},

    // OAuth 2.0 token endpoints.
    {"oauth", 400, {}, R"({"error":"invalid_grant","error_description":"Token has been expired or revoked."})",
     transport_errc::authentication_failed, "invalid_grant", std::nullopt},
    {"oauth", 401, {}, R"({"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested."})",
     transport_errc::configuration, "unauthorized_client", std::nullopt},
    {"oauth", 401, {}, R"({"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."})",
     transport_errc::authentication_failed, "invalid_client", std::nullopt},
    {"oauth", 400, {}, R"({"error":"invalid_scope","error_description":"Invalid OAuth scope or ID token audience provided."})",
     transport_errc::configuration, "invalid_scope", std::nullopt},
    {"oauth", 429, {{"Retry-After", "2"}}, R"({"error":"slow_down"})", transport_errc::rate_limited, "slow_down", 2s},
    // A throttled token endpoint, whatever error it names, is not a refused credential.
    {"oauth", 429, {{"Retry-After", "5"}}, R"({"error":"temporarily_unavailable","error_description":"AADSTS50196: The server terminated an operation because it encountered a client request loop."})",
     transport_errc::rate_limited, "temporarily_unavailable", 5s},
    {"oauth", 429, {}, R"({"error":"invalid_request","error_description":"Too many requests"})", transport_errc::rate_limited, "invalid_request", std::nullopt},
    {"oauth", 429, {}, R"({"error":"invalid_client"})", transport_errc::rate_limited, "invalid_client", std::nullopt},

    // Statuses no provider row names.
    {"mailgun", 301, {{"Location", "https://elsewhere.example/"}}, "", transport_errc::configuration, "", std::nullopt},
    {"postmark", 408, {}, "", transport_errc::temporary_reply, "", std::nullopt},
    {"sendgrid", 404, {}, "Not Found", transport_errc::configuration, "", std::nullopt},
    {"gmail", 418, {}, "", transport_errc::content_rejected, "", std::nullopt},
    {"graph", 600, {}, "", transport_errc::outcome_unknown, "", std::nullopt},
};
// clang-format on

mailers::http::response make_response(const reply_case& c) {
    mailers::http::response r;
    r.status = c.status;
    r.headers = c.headers;
    r.body = c.body;
    return r;
}

std::string base64url_decode(std::string_view in) {
    auto val = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '-') return 62;
        if (c == '_') return 63;
        return -1;
    };
    std::string out;
    unsigned acc = 0;
    int bits = 0;
    for (char c : in) {
        const int v = val(c);
        REQUIRE(v >= 0);
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((acc >> bits) & 0xff);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("every documented provider reply lands in its failure class") {
    for (const auto& c : replies) {
        CAPTURE(c.provider);
        CAPTURE(c.status);
        CAPTURE(c.body);
        mailers::diagnostics diag;
        const auto ec = detail::map_http_error(c.provider, make_response(c), fixed_now, diag);
        CHECK(ec == mailers::make_error_code(c.expected));
        CHECK(diag.provider_code == c.code);
        CHECK(diag.status == static_cast<int>(c.status));
        CHECK(diag.retry_after == c.retry_after);
        CHECK(diag.provider_reply == std::string(c.body).substr(0, 2000));
        CHECK(diag.message.find(c.provider) == 0);
    }
}

TEST_CASE("the replies the mission names map onto the engine's failure conditions") {
    const auto classify = [](const char* provider, unsigned status, const char* code,
                             const char* text) {
        return mailers::make_error_code(detail::classify_http_error(provider, status, code, text));
    };
    CHECK(classify("ses", 400, "Throttling", "Maximum sending rate exceeded.") ==
          failure::throttled);
    CHECK(classify("ses", 400, "Throttling", "Daily message quota exceeded.") ==
          failure::quota_exhausted);
    CHECK(classify("postmark", 422, "406", "inactive") == failure::recipient_permanent);
    CHECK(classify("sendgrid", 429, "", "") == failure::throttled);
    CHECK(classify("graph", 429, "ApplicationThrottled", "MailboxConcurrency") ==
          failure::throttled);
    CHECK(classify("gmail", 403, "userRateLimitExceeded", "") == failure::throttled);
    CHECK(classify("mailgun", 401, "", "Forbidden") == failure::auth);
    CHECK(classify("ses", 500, "", "") == failure::transient);
    CHECK(classify("ses", 504, "", "") == failure::unknown_outcome);
    CHECK(classify("postmark", 422, "300", "Invalid 'To' address") == failure::message_rejected);
    CHECK(classify("ses", 400, "AccountSuspendedException", "") == failure::reputation);
}

TEST_CASE("the rule table is well formed and no row is shadowed by an earlier one") {
    const std::set<std::string_view> providers{"ses",   "mailgun", "sendgrid", "postmark",
                                               "gmail", "graph",   "oauth",    "*"};
    const auto rules = detail::http_error_rules();
    REQUIRE(rules.size() > 40);
    for (std::size_t i = 0; i < rules.size(); ++i) {
        const auto& r = rules[i];
        CAPTURE(r.why);
        CHECK(providers.count(r.provider) == 1);
        REQUIRE(r.status.size() == 3);
        for (char ch : r.status) CHECK(((ch >= '0' && ch <= '9') || ch == 'x'));
        CHECK(!r.why.empty());
        // A reply made of the row's own fields must reach the row: otherwise
        // an earlier, broader row hides it and adding it changed nothing.
        std::string st(r.status);
        for (auto& ch : st)
            if (ch == 'x') ch = (&ch == &st[0]) ? '4' : '0';
        if (r.status == "xxx") st = "400";
        if (r.status == "5xx") st = "500";
        if (r.status == "3xx") st = "300";
        const unsigned status = static_cast<unsigned>(std::stoi(st));
        const std::string_view provider = r.provider == "*" ? "other" : r.provider;
        if (r.provider == "*" && r.status == "xxx") continue;  // reached only by odd statuses
        CHECK(detail::match_http_error_rule(provider, status, r.code, r.text) ==
              static_cast<int>(i));
    }
    // Every status classifies to something.
    for (unsigned s : {100u, 200u, 301u, 404u, 418u, 500u, 599u, 999u})
        CHECK(detail::match_http_error_rule("ses", s, "", "") >= 0);
}

TEST_CASE("Retry-After, X-RateLimit-Reset and RFC 3339 times") {
    using detail::parse_retry_after;
    CHECK(parse_retry_after("120", fixed_now) == 120s);
    CHECK(parse_retry_after(" 0 ", fixed_now) == 0s);
    CHECK(parse_retry_after("Tue, 01 Jan 2030 12:00:10 GMT", fixed_now) == 10s);
    CHECK(parse_retry_after("Mon, 31 Dec 2029 12:00:10 GMT", fixed_now) == 0s);  // past
    CHECK(parse_retry_after("99999999", fixed_now) == 86400s);                   // capped
    CHECK(!parse_retry_after("soon", fixed_now));
    CHECK(!parse_retry_after("-5", fixed_now));
    CHECK(!parse_retry_after("Tue, 01 Jan 2030 12:00:10 UTC", fixed_now));
    CHECK(!parse_retry_after("", fixed_now));

    using detail::parse_rfc3339;
    CHECK(parse_rfc3339("2030-01-01T12:00:00Z") == fixed_now);
    CHECK(parse_rfc3339("2030-01-01T12:00:00.123Z") == fixed_now);
    CHECK(parse_rfc3339("2030-01-01T13:00:00+01:00") == fixed_now);
    CHECK(parse_rfc3339("2030-01-01T11:30:00-00:30") == fixed_now);
    CHECK(!parse_rfc3339("2030-01-01 12:00:00"));
    CHECK(!parse_rfc3339("2030-13-01T12:00:00Z"));

    // A 200-class retry header on a non-429 SendGrid reply is not a reset time.
    mailers::http::response r;
    r.status = 500;
    r.headers = {{"X-RateLimit-Reset", "1893499230"}};
    CHECK(!detail::extract_http_error("sendgrid", r, fixed_now).retry_after);
}

TEST_CASE("a token endpoint's 429 is throttling and its 503 transient") {
    mailers::http::response r;
    r.status = 429;
    r.headers = {{"Retry-After", "7"}};
    r.body = R"({"error":"temporarily_unavailable","error_description":"try later"})";
    detail::token_reply tr;
    mailers::diagnostics diag;
    const auto ec = detail::read_token_reply(r, fixed_now, tr, diag);
    CHECK(ec == transport_errc::rate_limited);
    CHECK(ec == failure::throttled);
    CHECK(diag.retry_after == 7s);
    CHECK(tr.access_token.empty());
    r.status = 503;
    CHECK(detail::read_token_reply(r, fixed_now, tr, diag) == transport_errc::temporary_reply);
}

TEST_CASE("AWS refusals of a request's signing time, and HTTP dates") {
    using detail::is_aws_request_time_refusal;
    CHECK(is_aws_request_time_refusal(
        "InvalidSignatureException",
        "Signature expired: 20300101T114000Z is now earlier than 20300101T115500Z "
        "(20300101T120000Z - 5 min.)"));
    CHECK(is_aws_request_time_refusal(
        "InvalidSignatureException",
        "Signature not yet current: 20300101T130000Z is still later than 20300101T120500Z "
        "(20300101T120000Z + 5 min.)"));
    CHECK(is_aws_request_time_refusal("RequestTimeTooSkewed",
                                      "The difference between the request time and the current "
                                      "time is too large."));
    CHECK(is_aws_request_time_refusal("RequestExpired", ""));
    CHECK(is_aws_request_time_refusal("requestinthefuture", ""));
    CHECK_FALSE(is_aws_request_time_refusal(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided."));
    CHECK_FALSE(is_aws_request_time_refusal("ExpiredTokenException",
                                            "The security token included in the request is "
                                            "expired"));

    using detail::parse_http_date;
    CHECK(parse_http_date("Tue, 01 Jan 2030 12:00:00 GMT") == fixed_now);
    CHECK(!parse_http_date("Tuesday, 01-Jan-30 12:00:00 GMT"));
    CHECK(!parse_http_date("2030-01-01T12:00:00Z"));
    CHECK(!parse_http_date(""));
}

TEST_CASE("DSNs for every HTTP provider") {
    SUBCASE("ses") {
        auto d = mailers::parse_single_dsn(
            "ses+api://AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY@default"
            "?region=eu-west-1&configuration_set=bulk&tag=team:growth&tag=kind:cold");
        REQUIRE(d.has_value());
        auto p = mailers::http_params_from_dsn(*d);
        REQUIRE(p.has_value());
        const auto& s = std::get<mailers::ses_params>(*p);
        CHECK(s.access_key_id == "AKIDEXAMPLE");
        CHECK(s.secret_access_key.reveal() == "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        CHECK(s.region == "eu-west-1");
        CHECK(s.configuration_set == "bulk");
        REQUIRE(s.tags.size() == 2);
        CHECK(s.tags[1] == std::pair<std::string, std::string>{"kind", "cold"});
        CHECK(s.endpoint.empty());
        CHECK(s.http.verify_peer);
    }
    SUBCASE("mailgun eu and a custom host") {
        auto p = mailers::http_params_from_dsn(*mailers::parse_single_dsn(
            "mailgun+api://key-123:mg.brand.example@default?region=eu&tag=a"));
        REQUIRE(p.has_value());
        const auto& m = std::get<mailers::mailgun_params>(*p);
        CHECK(m.api_key.reveal() == "key-123");
        CHECK(m.domain == "mg.brand.example");
        CHECK(m.region == mailers::mailgun_region::eu);
        CHECK(m.tags == std::vector<std::string>{"a"});
        auto h = mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("mailgun+api://k:mg.example@proxy.example:8443"));
        REQUIRE(h.has_value());
        CHECK(std::get<mailers::mailgun_params>(*h).endpoint == "https://proxy.example:8443");
    }
    SUBCASE("sendgrid and postmark, with the test endpoint and options") {
        auto p = mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("sendgrid+api://SG.key@default?endpoint=http://"
                                       "127.0.0.1:8080&verify=false&max_connections=4&timeout=5"));
        REQUIRE(p.has_value());
        const auto& s = std::get<mailers::sendgrid_params>(*p);
        CHECK(s.api_key.reveal() == "SG.key");
        CHECK(s.endpoint == "http://127.0.0.1:8080");
        CHECK(!s.http.verify_peer);
        CHECK(s.http.max_connections == 4);
        CHECK(s.http.timeouts.response == 5s);
        auto q = mailers::http_params_from_dsn(*mailers::parse_single_dsn(
            "postmark+api://server-token@default?stream=broadcast&tag=welcome"));
        REQUIRE(q.has_value());
        CHECK(std::get<mailers::postmark_params>(*q).message_stream == "broadcast");
        CHECK(std::get<mailers::postmark_params>(*q).tag == "welcome");
    }
    SUBCASE("gmail and graph") {
        auto g = mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("gmail+api://"
                                       "client-id.apps.googleusercontent.com:client-secret@default?"
                                       "refresh_token=1%2F%2Frt&user=me"));
        REQUIRE(g.has_value());
        const auto& gp = std::get<mailers::gmail_params>(*g);
        CHECK(gp.client_id == "client-id.apps.googleusercontent.com");
        CHECK(gp.refresh_token.reveal() == "1//rt");
        CHECK(gp.user == "me");
        auto m = mailers::http_params_from_dsn(*mailers::parse_single_dsn(
            "graph+api://"
            "app-id:app-secret@default?tenant=contoso.onmicrosoft.com&max_concurrent=2"));
        REQUIRE(m.has_value());
        const auto& mp = std::get<mailers::graph_params>(*m);
        CHECK(mp.tenant == "contoso.onmicrosoft.com");
        CHECK(mp.max_concurrent_per_mailbox == 2);
        CHECK(mp.client_secret.reveal() == "app-secret");
    }
    SUBCASE("errors name the problem and never a secret") {
        mailers::diagnostics diag;
        auto bad = mailers::http_params_from_dsn(*mailers::parse_single_dsn("smtp://u:p@h"), &diag);
        CHECK(bad.error() == mailers::make_error_code(mailers::errc::invalid_argument));
        for (auto s : mailers::http_transport_schemes())
            CHECK(diag.message.find(s) != std::string::npos);

        auto typo = mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("sendgrid+api://SECRETKEY@default?regoin=eu"), &diag);
        CHECK(!typo);
        CHECK(diag.message.find("regoin") != std::string::npos);
        CHECK(diag.message.find("SECRETKEY") == std::string::npos);

        CHECK(!mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("ses+api://KEYONLY@default"), &diag));
        CHECK(diag.message.find("secret access key") != std::string::npos);
        CHECK(!mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("mailgun+api://k:d@default?region=asia"), &diag));
        CHECK(diag.message.find("region") != std::string::npos);
        CHECK(!mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("postmark+api://t@default?endpoint=ftp://x"), &diag));
        CHECK(diag.message.find("endpoint") != std::string::npos);
        CHECK(!mailers::http_params_from_dsn(*mailers::parse_single_dsn("graph+api://id:s@default"),
                                             &diag));
        CHECK(diag.message.find("tenant") != std::string::npos);
        CHECK(!mailers::http_params_from_dsn(*mailers::parse_single_dsn("gmail+api://default"),
                                             &diag));
        CHECK(diag.message.find("service_account") != std::string::npos);
        CHECK(!mailers::http_params_from_dsn(
            *mailers::parse_single_dsn("sendgrid+api://env:MAILERS_TEST_UNSET_VARIABLE@default"),
            &diag));
    }
    SUBCASE("the factory builds transports without touching the network") {
        boost::asio::io_context ioc;
        mailers::diagnostics diag;
        for (const char* text :
             {"ses+api://A:S@default?region=us-east-2", "sendgrid+api://K@default",
              "postmark+api://T@default", "mailgun+api://K:mg.example@default",
              "graph+api://id:secret@default?tenant=t1"}) {
            CAPTURE(text);
            auto t =
                mailers::make_http_transport(ioc.get_executor(), std::string_view(text), &diag);
            REQUIRE(t);
            CHECK((*t)->stats().requests == 0);
        }
        auto t = mailers::make_http_transport(
            ioc.get_executor(), std::string_view("ses+api://A:S@default?region=EU-WEST-1"), &diag);
        CHECK(!t);
        CHECK(diag.message.find("region") != std::string::npos);
        CHECK(ioc.poll() == 0);
    }
}

TEST_CASE("RS256 JWTs verify with the public key and carry the claims") {
    EVP_PKEY* raw = EVP_RSA_gen(2048);
    REQUIRE(raw);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(raw, EVP_PKEY_free);
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
    REQUIRE(PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) ==
            1);
    char* data = nullptr;
    const long len = BIO_get_mem_data(bio.get(), &data);
    const mailers::secret pem(std::string(data, static_cast<std::size_t>(len)));

    const std::string claims =
        R"({"iss":"sa@p.iam.gserviceaccount.com","sub":"rep@brand.example"})";
    const auto jwt = detail::sign_jwt_rs256(claims, pem);
    const auto d1 = jwt.find('.');
    const auto d2 = jwt.find('.', d1 + 1);
    REQUIRE(d2 != std::string::npos);
    CHECK(base64url_decode(jwt.substr(0, d1)) == R"({"alg":"RS256","typ":"JWT"})");
    CHECK(base64url_decode(jwt.substr(d1 + 1, d2 - d1 - 1)) == claims);
    CHECK(jwt.find('=') == std::string::npos);
    const auto sig = base64url_decode(jwt.substr(d2 + 1));
    const std::string input = jwt.substr(0, d2);

    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    REQUIRE(EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.get()) == 1);
    CHECK(EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                           sig.size(), reinterpret_cast<const unsigned char*>(input.data()),
                           input.size()) == 1);

    CHECK_THROWS_AS(detail::sign_jwt_rs256(claims, mailers::secret("not a key")),
                    mailers::exception);
    EVP_PKEY* ec = EVP_EC_gen("P-256");
    std::unique_ptr<BIO, decltype(&BIO_free)> ecbio(BIO_new(BIO_s_mem()), BIO_free);
    PEM_write_bio_PrivateKey(ecbio.get(), ec, nullptr, nullptr, 0, nullptr, nullptr);
    EVP_PKEY_free(ec);
    const long eclen = BIO_get_mem_data(ecbio.get(), &data);
    CHECK_THROWS_AS(detail::sign_jwt_rs256(claims, mailers::secret(std::string(
                                                       data, static_cast<std::size_t>(eclen)))),
                    mailers::exception);
}

TEST_CASE("recipients for providers that deliver to every header address") {
    mailers::outbound out;
    out.msg.from = {"rep", "brand.example", "Rep"};
    out.msg.to = {{"ann", "Example.COM", "Ann"}};
    out.msg.cc = {{"bob", "example.com", ""}};
    out.msg.text = "hi";
    mailers::diagnostics diag;
    detail::recipient_lists rl;

    SUBCASE("an empty envelope takes the message's recipients") {
        REQUIRE(!detail::split_recipients(out, "gmail", rl, diag));
        CHECK(rl.to_specs == std::vector<std::string>{"ann@example.com"});
        CHECK(rl.cc_specs == std::vector<std::string>{"bob@example.com"});
        CHECK(rl.bcc.empty());
    }
    SUBCASE("envelope-only recipients become Bcc") {
        out.env.rcpt_to = {"ann@example.com", "bob@EXAMPLE.com", "carol@example.org"};
        REQUIRE(!detail::split_recipients(out, "postmark", rl, diag));
        CHECK(rl.bcc == std::vector<std::string>{"carol@example.org"});
    }
    SUBCASE("a To or Cc address outside the envelope refuses the send") {
        out.env.rcpt_to = {"ann@example.com"};
        CHECK(detail::split_recipients(out, "sendgrid", rl, diag) ==
              mailers::make_error_code(mailers::errc::invalid_argument));
        CHECK(diag.message.find("envelope") != std::string::npos);
    }
    SUBCASE("an internationalised domain is compared as its A-label") {
        out.msg.to = {{"ann", "bücher.example", ""}};
        out.msg.cc.clear();
        out.env.rcpt_to = {"ann@xn--bcher-kva.example"};
        REQUIRE(!detail::split_recipients(out, "graph", rl, diag));
        CHECK(rl.to_specs == std::vector<std::string>{"ann@xn--bcher-kva.example"});
    }
    SUBCASE("a malformed envelope address is refused") {
        out.env.rcpt_to = {"ann@example.com\r\nBcc: x@evil.example"};
        CHECK(detail::split_recipients(out, "gmail", rl, diag) ==
              mailers::make_error_code(mailers::errc::invalid_address));
    }
}

TEST_CASE("splitting recipients: short and long lists give the same answer") {
    // Short lists are searched in place and long ones through hash sets;
    // random lists on both sides of the switch, with repeats, are checked
    // against a plain reference.
    std::mt19937 rng(20261128);
    for (int round = 0; round < 300; ++round) {
        const int pool = 1 + static_cast<int>(rng() % 70);
        const auto pick = [&] { return "r" + std::to_string(rng() % pool) + "@example.com"; };
        mailers::outbound out;
        out.msg.from = {"me", "example.com", ""};
        out.msg.text = "hi";
        const auto n_to = 1 + rng() % 25, n_cc = rng() % 25, n_env = rng() % 40;
        std::vector<std::string> env;
        for (std::size_t i = 0; i < n_to + n_cc + n_env; ++i) {
            const auto spec = pick();
            const auto at = spec.find('@');
            const mailers::address a{spec.substr(0, at), spec.substr(at + 1), ""};
            if (i < n_to)
                out.msg.to.push_back(a);
            else if (i < n_to + n_cc)
                out.msg.cc.push_back(a);
            if (std::find(env.begin(), env.end(), spec) == env.end()) env.push_back(spec);
        }
        out.env.rcpt_to = env;
        // The reference: first occurrences in To, then in Cc, then the rest of the envelope.
        std::vector<std::string> to, cc, bcc;
        std::set<std::string> listed;
        for (const auto& a : out.msg.to)
            if (listed.insert(a.local + "@" + a.domain).second)
                to.push_back(a.local + "@" + a.domain);
        for (const auto& a : out.msg.cc)
            if (listed.insert(a.local + "@" + a.domain).second)
                cc.push_back(a.local + "@" + a.domain);
        for (const auto& e : env)
            if (!listed.count(e)) bcc.push_back(e);

        mailers::diagnostics diag;
        detail::recipient_lists rl;
        REQUIRE_MESSAGE(!detail::split_recipients(out, "sendgrid", rl, diag), diag.message);
        CHECK(rl.to_specs == to);
        CHECK(rl.cc_specs == cc);
        CHECK(rl.bcc == bcc);
        REQUIRE(rl.to.size() == to.size());
        for (std::size_t i = 0; i < to.size(); ++i)
            CHECK(rl.to[i]->local + "@" + rl.to[i]->domain == to[i]);

        // A To address outside the envelope is refused on either path.
        out.msg.to.push_back({"stranger", "example.org", ""});
        CHECK(detail::split_recipients(out, "sendgrid", rl, diag) ==
              mailers::make_error_code(mailers::errc::invalid_argument));
    }
}

TEST_CASE("small encoders") {
    std::string s;
    detail::append_base64url(s, "\xfb\xff\xfe");
    CHECK(s == "-__-");
    s.clear();
    detail::append_base64url(s, "ab");
    CHECK(s == "YWI");
    s.clear();
    detail::append_form_field(s, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
    detail::append_form_field(s, "x", "a b+c/=&");
    CHECK(s ==
          "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&x=a%20b%2Bc%2F%3D%26");
    s.clear();
    detail::append_mailbox(s, "Doe, John", "j@example.com");
    CHECK(s == "\"Doe, John\" <j@example.com>");
    s.clear();
    detail::append_mailbox(s, "Ann Lee", "a@example.com");
    CHECK(s == "Ann Lee <a@example.com>");

    std::string mime = "From: a@b.example\r\nMessage-ID: <abc@b.example>\r\n\r\nbody\r\n";
    CHECK(detail::rendered_message_id(mime) == "abc@b.example");
    const std::vector<std::string> bcc{"x@y.example", "z@y.example"};
    detail::add_bcc_header(mime, bcc);
    CHECK(mime.starts_with("Bcc: x@y.example, z@y.example\r\nFrom:"));

    auto ep = mailers::http::parse_endpoint("HTTP://[::1]:8080/base/");
    REQUIRE(ep.has_value());
    CHECK(!ep->tls);
    CHECK(ep->host == "::1");
    CHECK(ep->host_is_ip);
    CHECK(ep->host_header == "[::1]:8080");
    CHECK(ep->base_path == "/base");
    CHECK(mailers::http::parse_endpoint("https://Email.EU-West-1.amazonaws.com")->host_header ==
          "email.eu-west-1.amazonaws.com");
    CHECK(!mailers::http::parse_endpoint("https://user:pw@host"));
    CHECK(!mailers::http::parse_endpoint("https://host:0"));
    CHECK(!mailers::http::parse_endpoint("https://host/?q"));
    auto url = mailers::http::parse_url("https://login.microsoftonline.com/t1/oauth2/v2.0/token");
    REQUIRE(url.has_value());
    CHECK(url->second == "/t1/oauth2/v2.0/token");
}
