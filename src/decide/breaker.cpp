#include "decide/breaker.hpp"

#include <algorithm>

namespace mailers::decide {

breaker_state breaker_at(breaker_state s, time_point now) noexcept {
    if (s.health == health_state::open && now >= s.open_until) {
        s.health = health_state::half_open;
        s.probe_in_flight = false;
    }
    return s;
}

bool breaker_admits(const breaker_state& s) noexcept {
    return s.health == health_state::closed ||
           (s.health == health_state::half_open && !s.probe_in_flight);
}

bool sends_probe(const breaker_state& s) noexcept {
    return s.health == health_state::half_open;
}

breaker_state on_reserve(breaker_state s) noexcept {
    if (sends_probe(s)) s.probe_in_flight = true;
    return s;
}

breaker_state on_release(breaker_state s, bool probe) noexcept {
    if (probe) s.probe_in_flight = false;
    return s;
}

breaker_state on_success(breaker_state s, bool probe) noexcept {
    s.consecutive_failures = 0;
    if (probe || s.health != health_state::closed) {
        s.health = health_state::closed;
        s.probe_in_flight = false;
        s.cool_down = std::chrono::seconds(0);
    }
    return s;
}

breaker_state on_transient_failure(breaker_state s, const breaker_params& p, bool probe,
                                   time_point now) noexcept {
    ++s.consecutive_failures;
    const bool trip =
        probe || s.consecutive_failures >= std::max<std::uint32_t>(1, p.failure_threshold);
    if (!trip) return s;
    // Only a failed probe doubles: a failure of a send reserved before the
    // breaker opened says nothing new about the route.
    s.cool_down = (probe && s.cool_down.count() > 0)
                      ? std::min(s.cool_down * 2, std::max(p.max_cool_down, p.cool_down))
                      : p.cool_down;
    s.health = health_state::open;
    s.probe_in_flight = false;
    s.open_until = now + std::chrono::duration_cast<duration>(s.cool_down);
    return s;
}

}  // namespace mailers::decide
