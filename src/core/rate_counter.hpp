// Counts reservations against a set of rate limits, exactly: every
// reservation's time is kept while any window could still count it, so a
// rolling cap of N allows the (N+1)th send exactly `length` after the
// oldest one in the window — never earlier, never later.
#pragma once

#include <mailers/clock.hpp>
#include <mailers/quota.hpp>

#include "core/schedule.hpp"

#include <deque>
#include <optional>
#include <span>

namespace mailers::detail {

/// A limit with the time zone its calendar windows are counted in.
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

    /// Records a reservation at `t` (t >= every earlier reservation's time
    /// is the common case; older times are inserted in order).
    void add(time_point t);
    /// Releases one reservation made at `t` (the send certainly did not go).
    void remove(time_point t);
    /// Forgets reservations older than `horizon` before `now`.
    void trim(time_point now, std::chrono::seconds horizon);

    std::size_t size() const noexcept { return stamps_.size(); }

private:
    std::deque<time_point> stamps_;  // sorted ascending
};

}  // namespace mailers::detail
