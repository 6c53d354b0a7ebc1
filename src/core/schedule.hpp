// Calendar arithmetic in a mailbox's own time zone: send windows, calendar
// periods and warm-up days. Pure functions, DST-correct through the IANA
// database (date/tz.h reading the system's zoneinfo).
#pragma once

#include <chrono>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/mailbox.hpp>
#include <optional>
#include <string_view>

namespace date {
class time_zone;
}

namespace mailers::detail {

using zone_ptr = const date::time_zone*;

/// The zone for an IANA name, or nullptr when unknown. "UTC" and "" are UTC.
zone_ptr find_zone(std::string_view name) noexcept;

/// Is the window open at `now`?
bool window_open(const send_window& w, zone_ptr zone, time_point now);

/// The first instant >= now at which the window is open; nullopt when it
/// never opens (no weekdays, or start_hour == end_hour with no hours).
std::optional<time_point> next_window_open(const send_window& w, zone_ptr zone, time_point now);

/// Start of the calendar period of `length` (60 s, 3600 s or 86400 s)
/// containing `now`, in `zone`; and the start of the next one.
time_point period_start(std::chrono::seconds length, zone_ptr zone, time_point now);
time_point next_period_start(std::chrono::seconds length, zone_ptr zone, time_point now);

/// Local calendar days from `from` to `now` (0 on the same local day).
long local_days_between(zone_ptr zone, time_point from, time_point now);

/// The warm-up ramp's cap for the local day of `now`; nullopt when disabled.
std::optional<std::uint64_t> warmup_cap(const warmup_ramp& r, zone_ptr zone, time_point now);

/// True when `w` is a valid window (hours 0..24, start < 24).
bool valid_window(const send_window& w) noexcept;

}  // namespace mailers::detail
