// Provider webhooks in: verify a request, then read it into events.
//
// parse_webhook() is sans-io: it takes the request as received (method,
// headers, raw body) and returns what to answer and what happened. It opens
// no socket, reads no file, fetches no certificate and stores nothing; the
// caller (an HTTP endpoint) applies the events, de-duplicating them on
// event::dedup_key. Verification comes first: a request that fails it yields
// no events at all.
//
// Providers and what each sends:
//   * Amazon SES, through an SNS topic subscribed over HTTPS. SNS messages
//     (SubscriptionConfirmation, UnsubscribeConfirmation, Notification) carry
//     an SES record in either format SES writes: "notification" records
//     (`notificationType`) and "event publishing" records (`eventType`).
//     One event per recipient concerned (bounced or complained recipients
//     for those types, `mail.destination` otherwise).
//   * Mailgun: JSON `{"signature": {...}, "event-data": {...}}`, or the
//     legacy application/x-www-form-urlencoded body. One event per request.
//   * SendGrid: a JSON array of events. An element that is not an event
//     object is skipped and counted (webhook_result::skipped): it would fail
//     the same way on every redelivery.
//   * Postmark: one JSON record per request (RecordType).
// docs/webhooks.md has the table of provider types to event types.
//
// Correlation: the transports tag each send with the metadata key
// `mailers_send_id` (SES message tag, Mailgun user variable, SendGrid custom
// argument, Postmark Metadata). When a provider echoes it, event::send_id
// holds it.
#pragma once

#include <chrono>
#include <cstddef>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/event.hpp>
#include <mailers/webhook_signing.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mailers {

/// The metadata key the transports tag sends with, read back from webhooks.
inline constexpr std::string_view correlation_key = "mailers_send_id";

enum class webhook_provider { ses, mailgun, sendgrid, postmark };

/// "ses", "mailgun", "sendgrid", "postmark": also event::provider.
MAILERS_API std::string_view to_string(webhook_provider p) noexcept;
/// The inverse of to_string(), any letter case; errc::invalid_argument lists
/// the supported names.
MAILERS_API boost::system::result<webhook_provider> parse_webhook_provider(std::string_view s);

struct http_header {
    std::string_view name;  ///< any case; matched case-insensitively
    std::string_view value;
};

/// A request as received. Views: they must outlive the call only.
struct webhook_request {
    std::string_view method = "POST";
    std::span<const http_header> headers;
    std::string_view body;  ///< the raw bytes, never re-encoded: signatures cover them
};

/// Remembers one-time tokens (Mailgun's signature token) until they expire,
/// so that a captured request cannot be replayed. Implementations must be
/// thread-safe. A store-backed implementation (store_replay_cache, in
/// store_replay_cache.hpp) shares tokens between processes.
class MAILERS_API replay_cache {
public:
    virtual ~replay_cache() = default;
    /// Records `token` until `expires_at`; false when it is already held
    /// unexpired (a replay). Check and record are one atomic step.
    bool first_use(std::string_view token, time_point expires_at, time_point now) {
        return do_first_use(token, expires_at, now);
    }
    /// Forgets `token`, recorded by first_use for a request whose events
    /// could not be applied (webhook_result::replay_token), so that the
    /// provider's retry of that request is taken rather than refused as a
    /// replay. engine::ingest_webhook and webhook_server call it when the
    /// apply throws. The default does nothing (the retry is then refused).
    void release(std::string_view token) { do_release(token); }

protected:
    virtual bool do_first_use(std::string_view token, time_point expires_at, time_point now) = 0;
    virtual void do_release(std::string_view /*token*/) {}
};

/// A replay_cache in memory, bounded: when full, expired tokens are dropped
/// and then, if still full, the one expiring soonest, so a flood costs
/// memory up to `capacity` only (at the price of forgetting early).
class MAILERS_API memory_replay_cache final : public replay_cache {
public:
    explicit memory_replay_cache(std::size_t capacity = 100'000) : capacity_(capacity) {}
    std::size_t size() const;

protected:
    bool do_first_use(std::string_view token, time_point expires_at, time_point now) override;
    void do_release(std::string_view token) override;

private:
    mutable std::mutex mutex_;
    std::size_t capacity_;
    std::unordered_map<std::string, time_point> tokens_;
};

struct ses_webhook_params {
    /// Where SigningCertURL certificates are found. Required when verifying.
    std::shared_ptr<const sns_certificate_store> certificates;
    /// Check the certificate's validity dates against `now`.
    bool check_certificate_dates = true;
    /// TopicArns accepted; empty accepts any. An allow-list keeps someone
    /// else's topic from subscribing the endpoint.
    std::vector<std::string> allowed_topic_arns;
};

struct mailgun_webhook_params {
    std::string signing_key;  ///< HTTP webhook signing key; required when verifying
    /// How far the signed timestamp may be from `now`, either way.
    std::chrono::seconds tolerance{300};
    /// Refuses a token seen before; null skips the replay check.
    std::shared_ptr<replay_cache> replay;
};

struct sendgrid_webhook_params {
    std::string public_key;  ///< base64 DER, as SendGrid shows it; required when verifying
    /// How far X-Twilio-Email-Event-Webhook-Timestamp may be from `now`,
    /// either way. The header is when the batch was posted, which can be
    /// long after its events, so this bounds replays, not event age.
    std::chrono::seconds tolerance{600};
};

struct postmark_webhook_params {
    /// HTTP basic credentials set in the webhook URL
    /// (https://user:password@host/...). Checked when `basic_user` is set.
    std::string basic_user;
    std::string basic_password;
    /// A custom header Postmark is set to send, and its secret value.
    /// Checked when `header_name` is set. At least one of the two is
    /// required when verifying.
    std::string header_name;
    std::string header_value;
};

struct webhook_params {
    /// Verify signatures and credentials. Turn off only for tests and for
    /// bodies that were verified elsewhere.
    bool verify = true;
    /// The receiver's clock, for freshness checks; unset reads the system clock.
    std::optional<time_point> now;
    /// Larger bodies are refused with 413 before anything is parsed.
    std::size_t max_body_bytes = 4 * 1024 * 1024;
    /// Keep each event's source record in event::raw.
    bool keep_raw = true;
    ses_webhook_params ses;
    mailgun_webhook_params mailgun;
    sendgrid_webhook_params sendgrid;
    postmark_webhook_params postmark;
};

enum class webhook_outcome {
    /// Verified and read; `events` holds what it reported (possibly none).
    events,
    /// Verified SNS SubscriptionConfirmation: to subscribe, GET
    /// `confirm_url` (an SNS URL). No events.
    subscription_confirmation,
    /// Verified SNS UnsubscribeConfirmation: the subscription has ended; do
    /// not re-confirm. No events.
    unsubscribe_confirmation,
    /// Authentic but not a tracking event (SES's set-up notice, an inbound
    /// mail notification, a test message): acknowledged, `reason` says what.
    ignored,
    /// The SNS certificate at `certificate_url` is not in the store: fetch
    /// it (over verified TLS), add it, and call again. `http_status` is 503
    /// for a caller that answers without fetching, so SNS retries.
    certificate_needed,
    /// Refused: `http_status` is 4xx (or 500 for missing configuration) and
    /// `reason` says why. No events.
    rejected,
};

MAILERS_API std::string_view to_string(webhook_outcome o) noexcept;

struct webhook_result {
    webhook_outcome outcome = webhook_outcome::rejected;
    /// What to answer: 200 when accepted (events, confirmations, ignored);
    /// 400 malformed, 401 credentials missing, 403 signature, timestamp or
    /// replay refused, 405 not POST, 413 body too large, 415 content type;
    /// 500 configuration missing; 503 certificate needed.
    int http_status = 400;
    std::vector<event> events;
    std::string reason;           ///< why refused, ignored or skipped; never secret
    std::size_t skipped = 0;      ///< batch elements that were not events
    std::string topic_arn;        ///< SNS messages
    std::string confirm_url;      ///< subscription_confirmation
    std::string certificate_url;  ///< certificate_needed
    /// The one-time token this request's check recorded in the replay cache
    /// (Mailgun's, as given to replay_cache::first_use); "" when none. A
    /// caller that applies the events itself and fails releases it
    /// (replay_cache::release), so that the provider's retry is applied.
    std::string replay_token;

    bool accepted() const noexcept { return http_status >= 200 && http_status < 300; }
};

/// Verifies `request` as a webhook from `provider`, then reads it into
/// events. Never throws for anything in the request; thread-safe when the
/// stores in `params` are.
MAILERS_API webhook_result parse_webhook(webhook_provider provider, const webhook_request& request,
                                         const webhook_params& params);

}  // namespace mailers
