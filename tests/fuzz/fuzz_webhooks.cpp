// libFuzzer entry for provider webhook bodies (not built by default).
//
// The first byte picks the provider, whether verification is on and whether
// a Content-Type is sent; the rest is the body. Beyond "does not crash":
// an accepted request carries only well-formed events, and a refused one
// carries none and says why.
//
//     clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
//         tests/fuzz/fuzz_webhooks.cpp -Lbuild -lmailers -o fuzz_webhooks
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mailers/webhook.hpp>
#include <string_view>

#include "webhooks/common.hpp"

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

mailers::webhook_params make_params(bool verify) {
    mailers::webhook_params p;
    p.verify = verify;
    p.now = mailers::time_point{std::chrono::seconds{1700000000}};
    p.ses.certificates = std::make_shared<mailers::memory_sns_certificate_store>();
    p.mailgun.signing_key = "TEST_WEBHOOK_SIGNING_KEY";
    p.mailgun.replay = std::make_shared<mailers::memory_replay_cache>(64);
    p.sendgrid.public_key =
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+"
        "u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhH"
        "PTnlvFYPAZFceEu/1FwCM/QmGUhA==";
    p.postmark.header_name = "X-Hook-Secret";
    p.postmark.header_value = "secret";
    return p;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    static const auto verified = make_params(true);
    static const auto unverified = make_params(false);
    const auto selector = data[0];
    const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
    const auto provider = static_cast<mailers::webhook_provider>(selector % 4);
    const bool verify = (selector >> 2) & 1;
    const bool typed = (selector >> 3) & 1;
    static constexpr std::string_view types[] = {"text/plain; charset=UTF-8", "application/json",
                                                 "application/json",
                                                 "application/json; charset=utf-8"};
    const std::string_view type =
        provider == mailers::webhook_provider::mailgun && (selector >> 4) & 1
            ? "application/x-www-form-urlencoded"
            : types[selector % 4];
    const mailers::http_header headers[] = {
        {"Content-Type", type},
        {"X-Hook-Secret", "secret"},
        {"X-Twilio-Email-Event-Webhook-Timestamp", "1700000000"},
        {"X-Twilio-Email-Event-Webhook-Signature", "MEUCIQCtIHJeH93Y"}};
    const mailers::webhook_request req{
        "POST", typed ? std::span{headers} : std::span{headers}.subspan(1), body};
    const auto r = mailers::parse_webhook(provider, req, verify ? verified : unverified);

    if (r.accepted()) {
        check(r.outcome != mailers::webhook_outcome::rejected &&
              r.outcome != mailers::webhook_outcome::certificate_needed);
        if (r.outcome != mailers::webhook_outcome::events) check(r.events.empty());
        for (const auto& e : r.events) {
            check(mailers::webhooks::well_formed(e));
            check(e.provider == mailers::to_string(provider));
        }
        if (r.outcome == mailers::webhook_outcome::subscription_confirmation)
            check(r.confirm_url.rfind("https://", 0) == 0);
    } else {
        check(r.events.empty());
        check(!r.reason.empty());
        check(r.http_status >= 400 && r.http_status < 600);
    }

    if (mailers::is_sns_certificate_url(body)) check(body.substr(0, 8) == "https://");
    return 0;
}
