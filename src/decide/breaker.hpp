// The circuit breaker of one mailbox, as a value and its transitions.
//
// Closed: sends go through and consecutive transient failures are counted.
// At `failure_threshold` of them it opens for `cool_down`. Once the
// cool-down has run out it is half-open: exactly one send, the probe, goes
// through. The probe's success closes it; its failure opens it again for
// twice the previous cool-down, at most `max_cool_down`.
//
// Pure: each function takes the state and returns the next one; the caller
// supplies the time and stores the result.
#pragma once

#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/mailbox.hpp>

namespace mailers::decide {

struct breaker_state {
    health_state health = health_state::closed;
    std::uint32_t consecutive_failures = 0;
    time_point open_until{};            ///< meaningful while open
    std::chrono::seconds cool_down{0};  ///< the last cool-down, 0 after a close
    bool probe_in_flight = false;       ///< half-open, and the one probe is out
    friend bool operator==(const breaker_state&, const breaker_state&) = default;
};

/// The breaker as it stands at `now`: one whose cool-down has run out is
/// half-open, with no probe in flight yet.
breaker_state breaker_at(breaker_state s, time_point now) noexcept;

/// Whether the breaker, as breaker_at() returned it, lets a send through:
/// closed, or half-open with its probe not yet out.
bool breaker_admits(const breaker_state& s) noexcept;

/// A send admitted now is the probe when the breaker is half-open.
bool sends_probe(const breaker_state& s) noexcept;

/// A send was reserved: a half-open breaker now has its probe out.
breaker_state on_reserve(breaker_state s) noexcept;

/// A reservation ended without a verdict on the route (released, or an
/// outcome that is unknown): if it was the probe, another may go.
breaker_state on_release(breaker_state s, bool probe) noexcept;

/// The route worked (the provider accepted the message, or refused it for
/// reasons of the recipient or the content): the failure run ends, and a
/// breaker that is not closed closes.
breaker_state on_success(breaker_state s, bool probe) noexcept;

/// A transient failure of the route at `now`. Opens the breaker at the
/// threshold (a threshold of 0 counts as 1) or when the probe failed; a
/// failed probe doubles the previous cool-down, up to the larger of
/// `max_cool_down` and `cool_down`.
breaker_state on_transient_failure(breaker_state s, const breaker_params& p, bool probe,
                                   time_point now) noexcept;

}  // namespace mailers::decide
