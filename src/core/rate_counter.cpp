#include "core/rate_counter.hpp"

#include <algorithm>

namespace mailers::detail {

namespace {
// Reservations counted by a window at `now`: rolling windows count
// (now - length, now]; calendar windows count [period start, now].
time_point window_floor(const effective_limit& l, zone_ptr zone, time_point now, bool& inclusive) {
    if (l.kind == window_kind::calendar) {
        inclusive = true;
        return period_start(l.length, zone, now);
    }
    inclusive = false;
    return now - std::chrono::duration_cast<duration>(l.length);
}
}  // namespace

std::uint64_t rate_counter::count(const effective_limit& l, zone_ptr zone, time_point now) const {
    bool inclusive = false;
    auto floor = window_floor(l, zone, now, inclusive);
    auto it = inclusive ? std::lower_bound(stamps_.begin(), stamps_.end(), floor)
                        : std::upper_bound(stamps_.begin(), stamps_.end(), floor);
    auto end = std::upper_bound(it, stamps_.end(), now);
    return static_cast<std::uint64_t>(end - it);
}

std::optional<time_point> rate_counter::blocked_until(std::span<const effective_limit> limits,
                                                      zone_ptr zone, time_point now) const {
    std::optional<time_point> until;
    for (const auto& l : limits) {
        bool inclusive = false;
        auto floor = window_floor(l, zone, now, inclusive);
        auto first = inclusive ? std::lower_bound(stamps_.begin(), stamps_.end(), floor)
                               : std::upper_bound(stamps_.begin(), stamps_.end(), floor);
        auto end = std::upper_bound(first, stamps_.end(), now);
        auto n = static_cast<std::uint64_t>(end - first);
        if (n < l.max) continue;
        time_point free_at;
        if (l.max == 0) {
            // A zero cap never frees up within the rolling window; for a
            // calendar window the next period has the same cap, so neither
            // has a meaningful "until": report the next period boundary.
            free_at = l.kind == window_kind::calendar
                          ? next_period_start(l.length, zone, now)
                          : now + std::chrono::duration_cast<duration>(l.length);
        } else if (l.kind == window_kind::calendar) {
            free_at = next_period_start(l.length, zone, now);
        } else {
            // The window must drop (n - max + 1) reservations: the one that
            // leaves last is at index n - max from the window's start.
            auto pivot = *(first + static_cast<std::ptrdiff_t>(n - l.max));
            free_at = pivot + std::chrono::duration_cast<duration>(l.length);
        }
        if (!until || free_at > *until) until = free_at;
    }
    return until;
}

void rate_counter::add(time_point t) {
    if (stamps_.empty() || stamps_.back() <= t) {
        stamps_.push_back(t);
    } else {
        stamps_.insert(std::upper_bound(stamps_.begin(), stamps_.end(), t), t);
    }
}

void rate_counter::remove(time_point t) {
    auto it = std::lower_bound(stamps_.begin(), stamps_.end(), t);
    if (it != stamps_.end() && *it == t) stamps_.erase(it);
}

void rate_counter::trim(time_point now, std::chrono::seconds horizon) {
    auto floor = now - std::chrono::duration_cast<duration>(horizon);
    while (!stamps_.empty() && stamps_.front() < floor) stamps_.pop_front();
}

}  // namespace mailers::detail
