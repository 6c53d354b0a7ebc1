#include "core/schedule.hpp"

#include <date/tz.h>

#include <algorithm>

namespace mailers::detail {
namespace {

using namespace std::chrono;

date::local_time<microseconds> to_local(zone_ptr zone, time_point t) {
    return zone->to_local(date::sys_time<microseconds>(t.time_since_epoch()));
}

time_point to_sys(zone_ptr zone, date::local_time<microseconds> lt) {
    // A local time inside a DST gap maps to the instant the gap ends; an
    // ambiguous one (the repeated hour) to its first occurrence.
    auto info = zone->get_info(lt);
    if (info.result == date::local_info::nonexistent)
        return time_point(duration_cast<microseconds>(info.first.end.time_since_epoch()));
    auto st = zone->to_sys(lt, date::choose::earliest);
    return time_point(st.time_since_epoch());
}

}  // namespace

zone_ptr find_zone(std::string_view name) noexcept {
    try {
        if (name.empty()) return date::locate_zone("UTC");
        return date::locate_zone(name);
    } catch (...) {
        return nullptr;
    }
}

bool valid_window(const send_window& w) noexcept {
    return w.start_hour < 24 && w.end_hour <= 24 && (w.weekdays & 0x7f) == w.weekdays;
}

bool window_open(const send_window& w, zone_ptr zone, time_point now) {
    if (w.weekdays == 0) return false;
    if (w.start_hour == 0 && w.end_hour == 24 && w.weekdays == 0x7f) return true;
    auto lt = to_local(zone, now);
    auto ld = date::floor<date::days>(lt);
    auto hour = static_cast<int>(duration_cast<hours>(lt - ld).count());
    unsigned wd = date::weekday(ld).c_encoding();
    unsigned prev_wd = (wd + 6) % 7;
    auto has = [&](unsigned d) { return (w.weekdays >> d) & 1u; };
    if (w.start_hour < w.end_hour) return has(wd) && hour >= w.start_hour && hour < w.end_hour;
    // Spans midnight: open from start_hour on an allowed day until end_hour
    // the next morning.
    return (has(wd) && hour >= w.start_hour) || (has(prev_wd) && hour < w.end_hour);
}

std::optional<time_point> next_window_open(const send_window& w, zone_ptr zone, time_point now) {
    if (window_open(w, zone, now)) return now;
    if (w.weekdays == 0 || w.start_hour == w.end_hour) return std::nullopt;
    auto ld = date::floor<date::days>(to_local(zone, now));
    // Candidate openings: start_hour on each of the next 8 local days. The
    // first one after now is the answer (a gap shifts it to the gap's end).
    for (int i = 0; i <= 8; ++i) {
        auto day = ld + date::days(i);
        if (!((w.weekdays >> date::weekday(day).c_encoding()) & 1u)) continue;
        auto open = to_sys(
            zone, date::local_time<microseconds>(day.time_since_epoch() + hours(w.start_hour)));
        if (open > now) return open;
    }
    return std::nullopt;
}

std::optional<time_point> window_close(const send_window& w, zone_ptr zone, time_point now) {
    if (w.start_hour == 0 && w.end_hour == 24 && w.weekdays == 0x7f) return std::nullopt;
    const auto open = next_window_open(w, zone, now);
    if (!open) return std::nullopt;
    const auto lt = to_local(zone, *open);
    auto day = date::floor<date::days>(lt);
    const auto hour = duration_cast<hours>(lt - day).count();
    // A window that spans midnight, opened in the evening, closes the next morning.
    if (w.start_hour >= w.end_hour && hour >= w.start_hour) day += date::days(1);
    const auto close =
        to_sys(zone, date::local_time<microseconds>(day.time_since_epoch() + hours(w.end_hour)));
    if (close <= *open) return std::nullopt;
    return close;
}

time_point period_start(std::chrono::seconds length, zone_ptr zone, time_point now) {
    auto lt = to_local(zone, now);
    date::local_time<microseconds> start;
    if (length >= hours(24)) {
        start = date::floor<date::days>(lt);
    } else if (length >= hours(1)) {
        start = date::floor<hours>(lt);
    } else {
        start = date::floor<minutes>(lt);
    }
    auto s = to_sys(zone, start);
    // A period that starts in a repeated hour: never report a start after now.
    return std::min(s, now);
}

time_point next_period_start(std::chrono::seconds length, zone_ptr zone, time_point now) {
    auto lt = to_local(zone, now);
    date::local_time<microseconds> next;
    if (length >= hours(24)) {
        next = date::floor<date::days>(lt) + date::days(1);
    } else if (length >= hours(1)) {
        next = date::floor<hours>(lt) + hours(1);
    } else {
        next = date::floor<minutes>(lt) + minutes(1);
    }
    auto s = to_sys(zone, next);
    if (s <= now) {
        // The repeated hour at a DST fall-back: the next local hour maps to an
        // instant we already passed; move forward in absolute time instead.
        s = now + duration_cast<microseconds>(length);
    }
    return s;
}

std::optional<time_point> step_due(const step_delay& d, zone_ptr zone, const business_calendar& cal,
                                   time_point from) {
    // Past year 9999 the zone database and time_point's range stop helping.
    constexpr std::uint32_t max_days = 365u * 7000u;
    if (d.in == step_delay::unit::hours) {
        if (d.amount > max_days * 24u) return std::nullopt;
        return from + hours(d.amount);
    }
    if (d.amount > max_days) return std::nullopt;
    const auto lt = to_local(zone, from);
    const auto day = date::floor<date::days>(lt);
    const auto time_of_day = lt - day;
    if (d.in == step_delay::unit::days)
        return to_sys(zone, day + date::days(d.amount) + time_of_day);
    if ((cal.weekdays & 0x7f) == 0) return std::nullopt;
    auto business = [&](date::local_days x) {
        if (!((cal.weekdays >> date::weekday(x).c_encoding()) & 1u)) return false;
        return !std::binary_search(cal.holidays.begin(), cal.holidays.end(),
                                   static_cast<std::int32_t>(x.time_since_epoch().count()));
    };
    auto x = day;
    if (d.amount == 0) {
        // The same day when it is a business day; otherwise the next one.
        for (std::uint32_t guard = 0; !business(x); ++guard) {
            if (guard > max_days) return std::nullopt;
            x += date::days(1);
        }
        return x == day ? from : to_sys(zone, x + time_of_day);
    }
    // A calendar made only of holidays must not loop for ever.
    std::uint32_t left = d.amount;
    for (std::uint32_t guard = 0; left > 0; ++guard) {
        if (guard > max_days) return std::nullopt;
        x += date::days(1);
        if (business(x)) --left;
    }
    return to_sys(zone, x + time_of_day);
}

long local_days_between(zone_ptr zone, time_point from, time_point now) {
    auto a = date::floor<date::days>(to_local(zone, from));
    auto b = date::floor<date::days>(to_local(zone, now));
    return static_cast<long>((b - a).count());
}

std::optional<std::uint64_t> warmup_cap(const warmup_ramp& r, zone_ptr zone, time_point now) {
    if (r.start == 0) return std::nullopt;
    long days = local_days_between(zone, r.start_date, now);
    if (days < 0) days = 0;  // before the start date the day-0 cap applies
    std::uint64_t cap = r.start + static_cast<std::uint64_t>(days) * r.step;
    if (r.target != 0) cap = std::min<std::uint64_t>(cap, r.target);
    return cap;
}

}  // namespace mailers::detail
