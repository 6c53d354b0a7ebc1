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
    unknown,      ///< handed off, outcome unknown: recorded, never retried
    paused,       ///< not sent: what it needed is paused
    alert,        ///< operator attention: auth failure, reputation block, breaker opened
};

MAILERS_API std::string_view to_string(event_type t) noexcept;

enum class bounce_class { none, hard, soft };

struct event {
    event_type type = event_type::queued;
    time_point at{};
    std::string send_id;  ///< ledger id, when the event concerns a send
    std::string idempotency_key;
    std::string mailbox;  ///< mailbox id
    std::string pool;
    std::string provider;
    std::string recipient;  ///< normalised address
    std::string provider_message_id;
    bounce_class bounce = bounce_class::none;
    std::string detail;                  ///< reason / provider reply; never secrets
    std::optional<time_point> retry_at;  ///< no_capacity: when a mailbox can next send
};

}  // namespace mailers
