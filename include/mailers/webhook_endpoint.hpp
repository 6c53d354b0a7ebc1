// Outbound webhooks: the host's URLs that the engine POSTs events to, signed
// the Standard Webhooks way (https://www.standardwebhooks.com), from a
// durable outbox in the store (see docs/webhooks.md, "Outbound webhooks").
//
// An endpoint is workspace configuration: stored, audited, authorised
// (`permission::manage_webhooks`) and seen by every engine of the
// workspace. Each event an engine records gets one outbox row per enabled
// endpoint whose filter admits it, in the commit that records the event, so
// a crash between the two loses or doubles nothing. The engines of the
// workspace drain the outbox together; each row is attempted by one of them
// at a time, and retried with exponential backoff and full jitter until it
// is delivered or its attempts run out.
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/event.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

/// One receiver of outbound webhooks.
struct webhook_endpoint {
    /// 1 to 128 of A-Z a-z 0-9 . _ - :
    std::string id;
    /// Where events are POSTed: "https://host[:port]/path[?query]". Plain
    /// http only with `outbound_webhook_params::allow_http`.
    std::string url;
    /// The signing secret: "whsec_" and the base64 of 24 to 64 random
    /// bytes, or an "env:NAME" / "file:PATH" reference to one, resolved by
    /// each engine when it signs. Empty: `engine::put_webhook_endpoint`
    /// generates one and returns it. An inline secret is kept in the store
    /// (every engine of the workspace signs with it); a reference keeps it
    /// out. Never written to the audit log or to logs.
    std::string secret;
    /// The events sent; empty: every event.
    std::vector<event_type> event_types;
    /// Disabled endpoints get no new deliveries and their pending ones are
    /// given up; the engine disables an endpoint that keeps failing (see
    /// `outbound_webhook_params`), and an operator enables it again.
    bool enabled = true;
    std::string disabled_reason;  ///< why it was disabled; "" while enabled
    std::string description;      ///< free text for operators
    friend bool operator==(const webhook_endpoint&, const webhook_endpoint&) = default;
};

/// True when `ep` admits events of type `t`.
MAILERS_API bool accepts(const webhook_endpoint& ep, event_type t) noexcept;

/// How an engine delivers outbound webhooks (engine_params::webhooks).
struct outbound_webhook_params {
    /// Whether this engine attempts deliveries. One that does not still
    /// writes outbox rows for the events it records; the others deliver them.
    bool deliver = true;
    /// Allows targets on loopback, private (RFC 1918, CGNAT), link-local,
    /// unique-local (fc00::/7), unspecified and multicast addresses. Off,
    /// such a target is refused when configured (a literal address) and at
    /// every connection (each address the name resolves to is checked, so a
    /// name that resolves elsewhere later reaches nothing private either).
    bool allow_private_targets = false;
    /// Allows "http://" URLs (tests, private networks).
    bool allow_http = false;
    /// Attempts per delivery, the first included, at least 1.
    std::uint32_t max_attempts = 9;
    /// The retry after attempt n (1-based) waits a random time in
    /// [0, min(first_retry * 4^(n-1), max_retry)] ("full jitter"). With the
    /// defaults the ceilings are 5 s, 20 s, 80 s, 5 min 20 s, 21 min,
    /// 85 min, 5.7 h and 22.8 h: a delivery is given up after at most about
    /// 30 hours, about 15 on average.
    std::chrono::seconds first_retry{5};
    std::chrono::seconds max_retry{std::chrono::hours(24)};
    /// An endpoint is disabled when a delivery to it runs out of attempts
    /// and no delivery to it succeeded since that one was written: it has
    /// failed every attempt for as long as the retries took.
    bool disable_on_failure = true;
    /// Per request: connection, TLS handshake, and the whole exchange.
    std::chrono::milliseconds timeout{15000};
    /// A longer response body fails the attempt.
    std::size_t max_response_size = 64 * 1024;
    /// How often the engine looks for due deliveries; an event recorded
    /// here wakes it at once.
    std::chrono::milliseconds poll_interval{1000};
    /// Deliveries this engine attempts at once, at most.
    std::size_t in_flight = 32;
    /// Delivered and given-up rows are forgotten this long after they ended
    /// (engine clock; 0 keeps them).
    std::chrono::seconds retention{std::chrono::hours(24 * 7)};
    /// PEM file of CA certificates to trust instead of the system store.
    std::string ca_file;
};

/// The ceiling of the random wait after failed attempt `attempt` (1-based):
/// min(first_retry * 4^(attempt-1), max_retry).
MAILERS_API duration webhook_retry_ceiling(const outbound_webhook_params& p,
                                           std::uint32_t attempt) noexcept;

/// A new signing secret: "whsec_" and the base64 of 32 random bytes.
MAILERS_API std::string generate_webhook_secret();

/// The event type to_string(event_type) names, or nullopt.
MAILERS_API std::optional<event_type> event_type_named(std::string_view name) noexcept;

/// The JSON body an endpoint receives for `ev`, in the Standard Webhooks
/// shape: {"type": "email.<event type>", "timestamp": RFC 3339 UTC,
/// "data": {the event's fields that are set}}. The raw provider record is
/// left out (it may be large and hold what the host did not ask for).
MAILERS_API std::string webhook_payload(const event& ev);

}  // namespace mailers
