// Counts reservations against a set of rate limits, exactly: the counter
// keeps the time of the most recent reservations (as many as the largest
// cap needs, and only while a window could still count them), so a rolling
// cap of N allows the (N+1)th send exactly `length` after the oldest one in
// the window — never earlier, never later.
//
// Checks are O(1) amortised: each window keeps a cursor to its first
// counted reservation that only moves forward while time does.
#pragma once

#include <deque>
#include <mailers/clock.hpp>
#include <mailers/quota.hpp>
#include <optional>
#include <span>
#include <vector>

#include "core/schedule.hpp"

namespace mailers::detail {

struct effective_limit {
    std::uint64_t max = 0;
    std::chrono::seconds length{86400};
    window_kind kind = window_kind::rolling;
};

class rate_counter {
public:
    /// Sends counted by `l` at `now`.
    std::uint64_t count(const effective_limit& l, zone_ptr zone, time_point now) const;

    /// nullopt when one more send fits every limit at `now`; otherwise the
    /// earliest time at which it would (given no other change).
    std::optional<time_point> blocked_until(std::span<const effective_limit> limits, zone_ptr zone,
                                            time_point now) const;

    /// Records a reservation at `t`.
    void add(time_point t);
    /// Releases one reservation made at `t` (the send certainly did not go).
    void remove(time_point t);
    /// Forgets reservations that no window of at most `horizon` can count
    /// at `now` or later, and all but the newest `keep` reservations.
    void trim(time_point now, std::chrono::seconds horizon, std::uint64_t keep);

    std::size_t size() const noexcept { return stamps_.size(); }

private:
    struct cursor {
        std::chrono::seconds length{};
        window_kind kind{};
        std::uint64_t first = 0;  // absolute index of the first counted reservation
        time_point floor{};       // the window floor the cursor was computed for
    };
    // [first counted, end of reservations <= now) as absolute indexes.
    std::pair<std::uint64_t, std::uint64_t> window(const effective_limit& l, zone_ptr zone,
                                                   time_point now) const;
    time_point at(std::uint64_t abs) const {
        return stamps_[static_cast<std::size_t>(abs - base_)];
    }

    std::deque<time_point> stamps_;  // sorted ascending
    std::uint64_t base_ = 0;         // absolute index of stamps_.front()
    mutable std::vector<cursor> cursors_;
};

}  // namespace mailers::detail
