#include "core/rate_counter.hpp"

#include <algorithm>

namespace mailers::detail {

std::pair<std::uint64_t, std::uint64_t> rate_counter::window(const effective_limit& l,
                                                             zone_ptr zone, time_point now) const {
    // Rolling windows count (now - length, now]; calendar windows count
    // [period start, now].
    const bool calendar = l.kind == window_kind::calendar;
    const time_point floor = calendar ? period_start(l.length, zone, now)
                                      : now - std::chrono::duration_cast<duration>(l.length);
    auto in_window = [&](time_point t) { return calendar ? t >= floor : t > floor; };

    cursor* c = nullptr;
    for (auto& k : cursors_)
        if (k.length == l.length && k.kind == l.kind) c = &k;
    if (!c) {
        cursors_.push_back(cursor{l.length, l.kind, base_, time_point::min()});
        c = &cursors_.back();
    }
    const std::uint64_t end_abs = base_ + stamps_.size();
    if (c->first < base_ || floor < c->floor) {
        // Trimmed past the cursor, or time went backwards: search again.
        auto it = calendar ? std::lower_bound(stamps_.begin(), stamps_.end(), floor)
                           : std::upper_bound(stamps_.begin(), stamps_.end(), floor);
        c->first = base_ + static_cast<std::uint64_t>(it - stamps_.begin());
    } else {
        if (c->first > end_abs) c->first = end_abs;
        // A released reservation may have shifted later ones down by one.
        while (c->first > base_ && in_window(at(c->first - 1))) --c->first;
        while (c->first < end_abs && !in_window(at(c->first))) ++c->first;
    }
    c->floor = floor;
    // Reservations after `now` (a clock set back) are not counted.
    std::uint64_t last = end_abs;
    while (last > c->first && at(last - 1) > now) --last;
    return {c->first, last};
}

std::uint64_t rate_counter::count(const effective_limit& l, zone_ptr zone, time_point now) const {
    auto [first, last] = window(l, zone, now);
    return last - first;
}

std::optional<time_point> rate_counter::blocked_until(std::span<const effective_limit> limits,
                                                      zone_ptr zone, time_point now) const {
    std::optional<time_point> until;
    for (const auto& l : limits) {
        auto [first, last] = window(l, zone, now);
        auto n = last - first;
        if (n < l.max) continue;
        time_point free_at;
        if (l.kind == window_kind::calendar || l.max == 0) {
            // The count resets when the next period starts (a zero cap never
            // frees up; the next boundary is when to look again).
            free_at = l.kind == window_kind::calendar
                          ? next_period_start(l.length, zone, now)
                          : now + std::chrono::duration_cast<duration>(l.length);
        } else {
            // (n - max + 1) reservations must leave the window; the last of
            // them is at position n - max from the window's start.
            free_at = at(first + (n - l.max)) + std::chrono::duration_cast<duration>(l.length);
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

void rate_counter::trim(time_point now, std::chrono::seconds horizon, std::uint64_t keep) {
    auto floor = now - std::chrono::duration_cast<duration>(horizon);
    while (!stamps_.empty() && (stamps_.front() < floor || stamps_.size() > keep)) {
        stamps_.pop_front();
        ++base_;
    }
}

}  // namespace mailers::detail
