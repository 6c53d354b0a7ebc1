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
#include <vector>

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

/// The end of the window's opening that holds `now`, or of the next one
/// when it is closed now: the time by which what only the window lets be
/// sent must have gone. nullopt when the window never opens, or never
/// closes (open all day, every day).
std::optional<time_point> window_close(const send_window& w, zone_ptr zone, time_point now);

/// Start of the calendar period of `length` (60 s, 3600 s or 86400 s)
/// containing `now`, in `zone`; and the start of the next one.
time_point period_start(std::chrono::seconds length, zone_ptr zone, time_point now);
time_point next_period_start(std::chrono::seconds length, zone_ptr zone, time_point now);

/// Local calendar days from `from` to `now` (0 on the same local day).
long local_days_between(zone_ptr zone, time_point from, time_point now);

/// The warm-up ramp's cap for the local day of `now`; nullopt when disabled.
std::optional<std::uint64_t> warmup_cap(const warmup_ramp& r, zone_ptr zone, time_point now);

/// A sequence step's delay after the previous step.
struct step_delay {
    enum class unit : std::uint8_t {
        hours,         ///< elapsed time: `amount` hours later, whatever the clocks do
        days,          ///< the same local time of day, `amount` local days later
        business_days  ///< the same local time of day, on the `amount`-th business day after
    };
    unit in = unit::days;
    std::uint32_t amount = 0;
};

/// The business week and holidays of a calendar, in its zone's local dates.
struct business_calendar {
    std::uint8_t weekdays = send_window::weekdays_mon_fri;  ///< bit 0 = Sunday, as send_window
    std::vector<std::int32_t> holidays;  ///< local days since 1970-01-01, sorted, no repeats
};

/// When a step delayed by `d` after `from` falls due, in `zone`.
///
/// Days keep the local time of day across DST changes (a day is then 23 or
/// 25 hours); a local time that does not exist that day (inside the
/// spring-forward gap) becomes the instant the gap ends, and a repeated
/// one its first occurrence. Business days count the calendar's business
/// days after `from`'s local date: 1 business day after Friday is Monday,
/// and after Saturday too; 0 is `from` itself when it falls on a business
/// day, else the next business day's same local time. nullopt when the
/// calendar has no business day at all, or `amount` would pass year 9999.
std::optional<time_point> step_due(const step_delay& d, zone_ptr zone, const business_calendar& cal,
                                   time_point from);

/// True when `w` is a valid window (hours 0..24, start < 24).
bool valid_window(const send_window& w) noexcept;

}  // namespace mailers::detail
