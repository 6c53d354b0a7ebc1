// One event model for every provider and every part of the pipeline.
#pragma once

#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mailers {

enum class event_type {
    queued,  ///< reserved and about to be handed off
    sent,    ///< the provider accepted it
    delivered,
    deferred,
    bounced,
    complained,
    unsubscribed,
    opened,
    clicked,
    rejected,  ///< refused before hand-off (invalid input)
    failed,    ///< the provider refused it, or every attempt failed
    replied,
    suppressed,   ///< not sent: the recipient is suppressed
    no_capacity,  ///< not sent now: no eligible mailbox (see retry_at)
    /// Handed off, outcome unknown: recorded, never retried. From a provider
    /// webhook: a type this model has no name for (event::provider_event
    /// says which).
    unknown,
    paused,  ///< not sent: what it needed is paused
    alert,   ///< operator attention: auth failure, reputation block, breaker opened
    /// A pause rule paused a target (docs/rules.md): `detail` names the
    /// rule, the target and the rate measured; `mailbox`, `pool` or
    /// `provider` is set for those scopes.
    auto_paused,
};

MAILERS_API std::string_view to_string(event_type t) noexcept;

/// How lasting a bounce is: `hard` means the address will not work again
/// (unknown user, no such domain) and is suppressed; `soft` means it may
/// (mailbox full, blocked, content refused). `none` on every other event.
enum class bounce_class { none, hard, soft };

MAILERS_API std::string_view to_string(bounce_class b) noexcept;

/// Something that happened to a send, from the engine or from a provider's
/// webhook (see <mailers/webhook.hpp>, which says how each provider's fields
/// map onto these).
struct event {
    event_type type = event_type::queued;
    time_point at{};  ///< when it happened, as the reporter (engine or provider) says
    /// Ledger id, when the event concerns a send. From a webhook: the
    /// `mailers_send_id` tag the transports attach, when the provider echoes it.
    std::string send_id;
    std::string idempotency_key;  ///< the caller's key for the send, when known
    /// The campaign the send belongs to (its key is "campaign:<id>:..."),
    /// else "".
    std::string campaign;
    /// The sequence step the send belongs to (its key is
    /// "seq:<sequence>:<enrollment>:<step>", "~<attempt>" appended for a
    /// re-send after `step_resolution::not_sent`): the sequence id, the
    /// enrollment id and the 1-based step; "" and 0 for other sends.
    std::string sequence;
    std::uint64_t enrollment = 0;
    std::uint32_t step = 0;
    std::string mailbox;          ///< mailbox id
    std::string pool;             ///< pool id
    std::string provider;         ///< "ses", "mailgun", "sendgrid", "postmark", ...
    /// Normalised address (normalise_address in <mailers/suppression.hpp>);
    /// a provider-reported address that does not normalise is kept as the
    /// provider wrote it, display name removed. Empty when unknown.
    std::string recipient;
    std::string provider_message_id;           ///< the provider's id for the message
    /// Our RFC 5322 Message-ID of the message (without <>), when known: on
    /// the engine's own events, and on events read from a bounce message
    /// (see <mailers/delivery_report.hpp>), which name no send id.
    std::string message_id;
    bounce_class bounce = bounce_class::none;  ///< set on `bounced` events only
    std::string detail;                        ///< reason / provider reply; never secrets
    std::optional<time_point> retry_at;        ///< no_capacity: when a mailbox can next send
    /// Provider events only: the provider's own name for what happened, as it
    /// spelled it ("Bounce", "failed", "dropped"); with a sub-type after a
    /// '/' where the type alone is too coarse ("Bounce/Transient").
    std::string provider_event;
    /// Provider events only: the provider's id for this event (SNS
    /// MessageId, Mailgun event id or legacy token, SendGrid sg_event_id,
    /// Postmark bounce ID); empty when the provider gives none.
    std::string provider_event_id;
    /// Provider events only: the key to de-duplicate on, unique per event
    /// and stable across the provider's redeliveries. Built from
    /// provider_event_id where there is one, from a hash of the event's
    /// content otherwise. Always set on events from parse_webhook().
    std::string dedup_key;
    /// The remote mail server's status, when the provider passes it on: an
    /// enhanced status code ("5.1.1") where given, else the SMTP reply code
    /// ("550"). The full reply text goes in `detail`.
    std::string diagnostic_code;
    /// Provider events only: the record this event was read from (minified
    /// JSON, or the form body), kept for audit and for fields this model does
    /// not carry. Empty when webhook_params::keep_raw is false.
    std::string raw;
};

}  // namespace mailers
