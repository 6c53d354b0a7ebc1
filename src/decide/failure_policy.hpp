// What a transport's outcome means for the send, the reservation, the
// mailbox and the recipient: one decision per failure class (see
// mailers::failure in error.hpp for the table this implements).
//
// Pure: the outcome and the facts in, the decision out; the caller applies
// it (memory, store, events).
#pragma once

#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/error.hpp>
#include <mailers/store.hpp>
#include <optional>
#include <span>

#include "core/rate_counter.hpp"
#include "core/schedule.hpp"

namespace mailers::decide {

/// What befalls the mailbox that sent.
enum class sender_effect {
    none,
    throttle,     ///< no sends until `until` (the provider's retry-after)
    exhausted,    ///< the provider's quota is spent until `until`
    auth_failed,  ///< unhealthy until its configuration changes; alert
    /// A transient failure counts towards opening the breaker.
    breaker_failure,
    /// A refusal of the route's reputation (a blocklist): a failure towards
    /// opening the breaker, and an alert. Never a pause of the sender
    /// domain: one refusal says too little about a whole domain.
    reputation_block,
};

/// What the decision needs besides the error code.
struct outcome_facts {
    time_point now{};
    std::optional<std::chrono::seconds> retry_after;  ///< diagnostics::retry_after
    /// The mailbox's own limits and zone: a calendar day cap means the
    /// provider's quota is spent until local midnight.
    std::span<const detail::effective_limit> limits;
    detail::zone_ptr zone = nullptr;
    std::uint32_t attempt = 1;       ///< this attempt, from 1
    std::uint32_t max_attempts = 1;  ///< rotation_policy::max_attempts
    bool pooled = false;             ///< sent through a pool (a named mailbox never fails over)
    /// The engine refused the send at hand-off, before any transport saw
    /// it, whatever the code says (a cancel() that came in between is
    /// `operation_aborted`, which from a transport would be an unknown outcome).
    bool refused_at_handoff = false;
};

struct outcome_decision {
    send_state state = send_state::failed;  ///< accepted, failed or unknown
    /// Give the reservation back: the message certainly did not leave.
    /// Otherwise it keeps counting against caps.
    bool release = false;
    /// The route works: a success for the breaker (after the release).
    bool route_ok = false;
    /// The send ends without a verdict on the route: a probe no longer
    /// blocks the next one. Implied by `release`.
    bool end_probe = false;
    /// A hard bounce: suppress the recipient and report a bounce.
    bool suppress_recipient = false;
    sender_effect effect = sender_effect::none;
    time_point until{};  ///< for throttle and exhausted
    /// Another attempt on another mailbox is allowed.
    bool fail_over = false;
    friend bool operator==(const outcome_decision&, const outcome_decision&) = default;
};

/// How long a throttled mailbox waits when the provider does not say.
inline constexpr std::chrono::seconds default_retry_after{60};

/// The decision for a transport that completed with `ec` (empty: accepted).
/// Also for the engine's own refusals at hand-off (errc::suppressed,
/// paused, unknown_provider, store_error), which certainly sent nothing.
/// Another attempt is allowed only when may_retry(ec), the send came
/// through a pool, and attempts remain.
outcome_decision on_outcome(const error_code& ec, const outcome_facts& f);

/// When a mailbox whose provider said its quota is exhausted at `now` may
/// try again: the next local midnight when it counts a calendar day, else
/// 24 hours on.
time_point exhausted_until(std::span<const detail::effective_limit> limits, detail::zone_ptr zone,
                           time_point now);

}  // namespace mailers::decide
