// Send windows, calendar periods and warm-up in real IANA zones, across DST.
#include "core/schedule.hpp"

#include <doctest/doctest.h>

#include <mailers/calendar.hpp>
#include <mailers/error.hpp>
#include <random>
#include <set>
#include <vector>

#include "core/rate_counter.hpp"
#include "decide/pacing.hpp"

using namespace mailers;
using namespace mailers::detail;
using mailers::time_point;
using std::chrono::duration_cast;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {
time_point utc(int y, unsigned m, unsigned d, int h, int min = 0, int s = 0) {
    auto day =
        std::chrono::sys_days(std::chrono::year(y) / std::chrono::month(m) / std::chrono::day(d));
    return time_point(duration_cast<mailers::duration>(day.time_since_epoch() + hours(h) +
                                                       minutes(min) + seconds(s)));
}
}  // namespace

TEST_CASE("a 9-17 weekday window in New York follows daylight saving time") {
    auto ny = find_zone("America/New_York");
    REQUIRE(ny);
    send_window w{9, 17, send_window::weekdays_mon_fri};
    // Winter (EST, UTC-5): Friday 6 March 2026 opens at 14:00 UTC.
    CHECK_FALSE(window_open(w, ny, utc(2026, 3, 6, 13, 59, 59)));
    CHECK(window_open(w, ny, utc(2026, 3, 6, 14)));
    CHECK(window_open(w, ny, utc(2026, 3, 6, 21, 59)));
    CHECK_FALSE(window_open(w, ny, utc(2026, 3, 6, 22)));
    // The weekend in between is closed; the clocks spring forward on Sunday 8 March.
    CHECK_FALSE(window_open(w, ny, utc(2026, 3, 7, 15)));
    CHECK_FALSE(window_open(w, ny, utc(2026, 3, 8, 15)));
    // Summer (EDT, UTC-4): Monday 9 March opens at 13:00 UTC.
    CHECK_FALSE(window_open(w, ny, utc(2026, 3, 9, 12, 59)));
    CHECK(window_open(w, ny, utc(2026, 3, 9, 13)));
    auto next = next_window_open(w, ny, utc(2026, 3, 6, 22));
    REQUIRE(next);
    CHECK(*next == utc(2026, 3, 9, 13));
    // Back to EST on Sunday 1 November: Monday 2 November opens at 14:00 UTC.
    next = next_window_open(w, ny, utc(2026, 10, 30, 22));
    REQUIRE(next);
    CHECK(*next == utc(2026, 11, 2, 14));
}

TEST_CASE("a window closes at its local end hour, the next morning when it spans midnight") {
    auto ny = find_zone("America/New_York");
    REQUIRE(ny);
    send_window day{9, 17, send_window::weekdays_mon_fri};
    // Open now (Friday 6 March 2026, EST): today's end.
    CHECK(window_close(day, ny, utc(2026, 3, 6, 15)) == utc(2026, 3, 6, 22));
    // Closed for the weekend: the end of Monday's opening, after the
    // spring-forward (EDT, UTC-4).
    CHECK(window_close(day, ny, utc(2026, 3, 6, 23)) == utc(2026, 3, 9, 21));
    // Across midnight: opened in the evening, it closes the next morning.
    send_window night{22, 6, 0x7f};
    CHECK(window_close(night, ny, utc(2026, 3, 6, 4)) == utc(2026, 3, 6, 11));
    CHECK(window_close(night, ny, utc(2026, 3, 6, 12)) == utc(2026, 3, 7, 11));
    // Always open never closes; never open has no close.
    CHECK_FALSE(window_close(send_window{}, ny, utc(2026, 3, 6, 12)));
    CHECK_FALSE(window_close(send_window{9, 17, 0}, ny, utc(2026, 3, 6, 12)));
}

TEST_CASE("local_date names the calendar day in the zone, and refuses an unknown zone") {
    using std::chrono::year;
    CHECK(local_date(utc(2026, 3, 7, 3), "America/New_York") == year(2026) / 3 / 6);
    CHECK(local_date(utc(2026, 3, 7, 3), "UTC") == year(2026) / 3 / 7);
    CHECK(local_date(utc(2026, 3, 7, 3), "") == year(2026) / 3 / 7);
    CHECK(local_date(utc(2026, 3, 6, 23), "Asia/Kathmandu") == year(2026) / 3 / 7);
    try {
        local_date(utc(2026, 3, 6, 12), "Mars/Olympus_Mons");
        FAIL("no error");
    } catch (const mailers::exception& e) {
        CHECK(e.code() == errc::unknown_time_zone);
    }
}

TEST_CASE("windows across midnight, closed days and an always-open default") {
    auto berlin = find_zone("Europe/Berlin");
    REQUIRE(berlin);
    send_window night{22, 6, 0x7f};
    CHECK(window_open(night, berlin, utc(2026, 1, 10, 22)));       // 23:00 local
    CHECK(window_open(night, berlin, utc(2026, 1, 10, 4)));        // 05:00 local
    CHECK_FALSE(window_open(night, berlin, utc(2026, 1, 10, 5)));  // 06:00 local
    send_window never{9, 17, 0};
    CHECK_FALSE(window_open(never, berlin, utc(2026, 1, 10, 10)));
    CHECK_FALSE(next_window_open(never, berlin, utc(2026, 1, 10, 10)));
    CHECK(window_open(send_window{}, berlin, utc(2026, 1, 10, 3)));
    CHECK_FALSE(valid_window(send_window{25, 3, 0x7f}));
    CHECK_FALSE(valid_window(send_window{1, 3, 0xff}));
    CHECK(find_zone("Not/AZone") == nullptr);
    CHECK(find_zone("") != nullptr);
}

TEST_CASE("a window opening inside the spring-forward gap opens when the gap ends") {
    auto ny = find_zone("America/New_York");
    send_window w{2, 5, 0x7f};  // 02:00 local does not exist on 8 March 2026
    auto next = next_window_open(w, ny, utc(2026, 3, 8, 5));  // 00:00 EST
    REQUIRE(next);
    CHECK(*next == utc(2026, 3, 8, 7));  // 03:00 EDT, the end of the gap
}

TEST_CASE("calendar days are local days, 23 or 25 hours long across DST") {
    auto ny = find_zone("America/New_York");
    auto now = utc(2026, 3, 8, 12);  // 08:00 EDT on the short day
    CHECK(period_start(seconds(86400), ny, now) == utc(2026, 3, 8, 5));
    CHECK(next_period_start(seconds(86400), ny, now) == utc(2026, 3, 9, 4));
    now = utc(2026, 11, 1, 12);  // the long day
    CHECK(next_period_start(seconds(86400), ny, now) - period_start(seconds(86400), ny, now) ==
          hours(25));
    CHECK(period_start(seconds(3600), ny, utc(2026, 1, 1, 10, 30)) == utc(2026, 1, 1, 10));
    CHECK(next_period_start(seconds(60), ny, utc(2026, 1, 1, 10, 30, 5)) ==
          utc(2026, 1, 1, 10, 31));
}

TEST_CASE("warm-up ramp by local day") {
    auto tokyo = find_zone("Asia/Tokyo");
    warmup_ramp r{2, 3, 10, utc(2026, 5, 1, 1)};             // 10:00 on 1 May in Tokyo
    CHECK(warmup_cap(r, tokyo, utc(2026, 5, 1, 14)) == 2u);  // 23:00 same local day
    CHECK(warmup_cap(r, tokyo, utc(2026, 5, 1, 15)) == 5u);  // 00:00 next local day
    CHECK(warmup_cap(r, tokyo, utc(2026, 5, 2, 15)) == 8u);
    CHECK(warmup_cap(r, tokyo, utc(2026, 5, 3, 15)) == 10u);
    CHECK(warmup_cap(r, tokyo, utc(2026, 9, 3, 15)) == 10u);
    CHECK(warmup_cap(r, tokyo, utc(2026, 4, 1, 15)) == 2u);  // before the start: day 0
    CHECK_FALSE(warmup_cap(warmup_ramp{}, tokyo, utc(2026, 5, 1, 1)));
}

TEST_CASE("rolling windows are exact at their edges") {
    auto zone = find_zone("UTC");
    rate_counter c;
    effective_limit one{1, seconds(86400), window_kind::rolling};
    auto t0 = utc(2026, 6, 1, 9);
    CHECK_FALSE(c.blocked_until(std::span(&one, 1), zone, t0));
    c.add(t0);
    auto until = c.blocked_until(std::span(&one, 1), zone, t0 + hours(23));
    REQUIRE(until);
    CHECK(*until == t0 + hours(24));
    CHECK(c.blocked_until(std::span(&one, 1), zone, t0 + hours(24) - microseconds(1)));
    CHECK_FALSE(c.blocked_until(std::span(&one, 1), zone, t0 + hours(24)));
    // Releasing the reservation frees the slot at once.
    c.remove(t0);
    CHECK_FALSE(c.blocked_until(std::span(&one, 1), zone, t0 + hours(1)));
}

TEST_CASE("rate counter agrees with brute force counting") {
    std::uint64_t seed = std::random_device{}();
    CAPTURE(seed);
    std::mt19937_64 rng(seed);
    auto zone = find_zone("Europe/London");
    const effective_limit limits[] = {{5, seconds(3600), window_kind::rolling},
                                      {12, seconds(86400), window_kind::calendar},
                                      {3, seconds(60), window_kind::rolling}};
    rate_counter c;
    std::vector<time_point> model;
    auto now = utc(2026, 3, 28, 20);  // across the London spring change
    for (int i = 0; i < 20000; ++i) {
        now += microseconds(static_cast<long>(rng() % 600'000'000));
        auto blocked = c.blocked_until(limits, zone, now);
        // Brute force: would one more fit every limit?
        bool fits = true;
        for (const auto& l : limits) {
            auto floor = l.kind == window_kind::calendar
                             ? period_start(l.length, zone, now)
                             : now - duration_cast<mailers::duration>(l.length);
            std::uint64_t n = 0;
            for (auto t : model)
                if ((l.kind == window_kind::calendar ? t >= floor : t > floor) && t <= now) ++n;
            if (n >= l.max) fits = false;
        }
        REQUIRE(fits == !blocked.has_value());
        if (blocked) REQUIRE(*blocked > now);
        if (!blocked && rng() % 4 != 0) {
            c.add(now);
            model.push_back(now);
        }
        if (!model.empty() && rng() % 50 == 0) {
            auto victim = model[rng() % model.size()];
            c.remove(victim);
            model.erase(std::find(model.begin(), model.end(), victim));
        }
        c.trim(now, seconds(86400 + 7200), 12);
        std::erase_if(model, [&](time_point t) { return t < now - hours(26); });
    }
}

namespace {
std::int32_t local_day(int y, unsigned m, unsigned d) {
    return static_cast<std::int32_t>(
        std::chrono::sys_days(std::chrono::year(y) / std::chrono::month(m) / std::chrono::day(d))
            .time_since_epoch()
            .count());
}
step_delay after(step_delay::unit u, std::uint32_t n) {
    return step_delay{u, n};
}
}  // namespace

TEST_CASE("step delays: hours are elapsed time, days keep the local time across DST") {
    auto ny = find_zone("America/New_York");
    auto berlin = find_zone("Europe/Berlin");
    REQUIRE(ny);
    REQUIRE(berlin);
    const business_calendar cal;
    using u = step_delay::unit;
    // Saturday 7 March 2026, 09:00 EST; the clocks spring forward on Sunday.
    const auto sat9 = utc(2026, 3, 7, 14);
    CHECK(step_due(after(u::hours, 24), ny, cal, sat9) == utc(2026, 3, 8, 14));  // 10:00 EDT
    CHECK(step_due(after(u::days, 1), ny, cal, sat9) == utc(2026, 3, 8, 13));    // 09:00 EDT
    CHECK(step_due(after(u::days, 0), ny, cal, sat9) == sat9);
    // 02:30 does not exist on 8 March in New York: the gap's end, 03:00 EDT.
    CHECK(step_due(after(u::days, 1), ny, cal, utc(2026, 3, 7, 7, 30)) == utc(2026, 3, 8, 7));
    // Berlin falls back on Sunday 25 October: 10:00 CEST then 10:00 CET, 25 hours apart.
    CHECK(step_due(after(u::days, 1), berlin, cal, utc(2026, 10, 24, 8)) == utc(2026, 10, 25, 9));
    // 02:30 happens twice on 25 October in Berlin: its first occurrence (CEST).
    CHECK(step_due(after(u::days, 1), berlin, cal, utc(2026, 10, 24, 0, 30)) ==
          utc(2026, 10, 25, 0, 30));
}

TEST_CASE("step delays: business days skip weekends and holidays, in each sender's zone") {
    auto ny = find_zone("America/New_York");
    auto tokyo = find_zone("Asia/Tokyo");
    REQUIRE(ny);
    REQUIRE(tokyo);
    using u = step_delay::unit;
    business_calendar cal;
    // Friday 6 March 2026, 10:00 EST; Monday 9 March is already EDT.
    const auto fri10 = utc(2026, 3, 6, 15);
    CHECK(step_due(after(u::business_days, 1), ny, cal, fri10) == utc(2026, 3, 9, 14));
    CHECK(step_due(after(u::business_days, 5), ny, cal, fri10) == utc(2026, 3, 13, 14));
    // From Saturday and from Sunday, 1 business day is Monday as well.
    CHECK(step_due(after(u::business_days, 1), ny, cal, utc(2026, 3, 7, 15)) ==
          utc(2026, 3, 9, 14));
    CHECK(step_due(after(u::business_days, 1), ny, cal, utc(2026, 3, 8, 14)) ==
          utc(2026, 3, 9, 14));
    // 0 is now on a business day, else the next business day's same time.
    CHECK(step_due(after(u::business_days, 0), ny, cal, fri10) == fri10);
    CHECK(step_due(after(u::business_days, 0), ny, cal, utc(2026, 3, 7, 15)) ==
          utc(2026, 3, 9, 14));
    // A holiday on the Monday moves the step to Tuesday.
    cal.holidays = {local_day(2026, 3, 9)};
    CHECK(step_due(after(u::business_days, 1), ny, cal, fri10) == utc(2026, 3, 10, 14));
    cal.holidays.clear();
    // One instant, two senders: Friday 23:00 UTC is Saturday 08:00 in Tokyo
    // and Friday 18:00 in New York, so Tokyo's next business day is Monday
    // and New York's is Monday too, each at its own local time.
    const auto instant = utc(2026, 3, 6, 23);
    CHECK(step_due(after(u::business_days, 1), tokyo, cal, instant) == utc(2026, 3, 8, 23));
    CHECK(step_due(after(u::business_days, 1), ny, cal, instant) == utc(2026, 3, 9, 22));
    // A six-day week (Monday to Saturday).
    business_calendar six{0x7e, {}};
    CHECK(step_due(after(u::business_days, 1), ny, six, fri10) == utc(2026, 3, 7, 15));
    // No business day at all, or an amount past year 9999: no due time.
    business_calendar none{0, {}};
    CHECK_FALSE(step_due(after(u::business_days, 1), ny, none, fri10));
    CHECK(step_due(after(u::days, 1), ny, none, fri10));
    CHECK_FALSE(step_due(after(u::days, 4'000'000'000u), ny, cal, fri10));
    CHECK_FALSE(step_due(after(u::hours, 4'000'000'000u), ny, cal, fri10));
}

TEST_CASE("step delays: business days agree with counting day by day, in random zones") {
    const char* zones[] = {"America/New_York",  "Europe/Berlin", "Asia/Tokyo", "Australia/Sydney",
                           "America/Sao_Paulo", "Asia/Kolkata",  "UTC"};
    std::mt19937_64 rng(20261207);
    for (int i = 0; i < 3000; ++i) {
        auto zone = find_zone(zones[rng() % std::size(zones)]);
        REQUIRE(zone);
        business_calendar cal;
        cal.weekdays = static_cast<std::uint8_t>(1 + rng() % 127);
        const auto from = utc(2025, 1, 1, 0) + duration_cast<mailers::duration>(seconds(
                                                   static_cast<long>(rng() % (3u * 365 * 86400))));
        for (int h = 0; h < 3; ++h)
            cal.holidays.push_back(local_day(2025, 1, 1) + static_cast<std::int32_t>(rng() % 1100));
        std::sort(cal.holidays.begin(), cal.holidays.end());
        cal.holidays.erase(std::unique(cal.holidays.begin(), cal.holidays.end()),
                           cal.holidays.end());
        const std::uint32_t n = 1 + static_cast<std::uint32_t>(rng() % 30);
        auto due = step_due(step_delay{step_delay::unit::business_days, n}, zone, cal, from);
        REQUIRE(due);
        CHECK(*due > from);
        // Count the business days between the two local dates by hand.
        auto is_business = [&](std::int32_t day) {
            const auto wd = static_cast<unsigned>(((day % 7) + 7 + 4) % 7);  // 1970-01-01: Thursday
            return ((cal.weekdays >> wd) & 1u) &&
                   !std::binary_search(cal.holidays.begin(), cal.holidays.end(), day);
        };
        // Noon UTC on 1 January 1970 is that local date in every zone here.
        const auto a = local_days_between(zone, utc(1970, 1, 1, 12), from);
        const auto b = local_days_between(zone, utc(1970, 1, 1, 12), *due);
        std::uint32_t counted = 0;
        for (auto d = a + 1; d <= b; ++d) counted += is_business(static_cast<std::int32_t>(d));
        CHECK(counted == n);
        CHECK(is_business(static_cast<std::int32_t>(b)));
    }
}

namespace {
mailers::duration mins(long m) {
    return duration_cast<mailers::duration>(minutes(m));
}
}  // namespace

TEST_CASE("pacing spreads a day's capacity over the window instead of a burst") {
    using mailers::decide::next_paced_send;
    using mailers::decide::pace_interval;
    using mailers::decide::pacing_input;
    using mailers::decide::send_budget;
    const auto nine = utc(2026, 3, 9, 9);
    const auto tick = mailers::duration(1);
    // 30 sends left today, the window closes at 17:00: one every 16 minutes
    // (just under, so that the 30th leaves before 17:00).
    std::vector<send_budget> day{{30, utc(2026, 3, 9, 17)}};
    CHECK(pace_interval(day, nine, {}) == mins(16) - tick);
    // An hourly cap of 2 is tighter: one every 30 minutes.
    auto both = day;
    both.push_back({2, utc(2026, 3, 9, 10)});
    CHECK(pace_interval(both, nine, {}) == mins(30) - tick);
    // The mailbox's own gap wins when it is wider.
    CHECK(pace_interval(day, nine, mins(20)) == mins(20));
    // A budget already over limits nothing; one with nothing left stops pacing.
    CHECK(pace_interval(std::vector<send_budget>{{0, nine}}, nine, {}) == mailers::duration{});
    CHECK_FALSE(pace_interval(std::vector<send_budget>{{0, utc(2026, 3, 9, 17)}}, nine, {}));
    // 3 sends in 10 ticks: at +3, +6 and +9.
    CHECK(pace_interval(std::vector<send_budget>{{3, nine + 10 * tick}}, nine, {}) == 3 * tick);

    pacing_input in;
    in.now = nine;
    CHECK(next_paced_send(day, in, 1) == nine);  // nothing sent yet: now
    in.last_send = nine - mins(10);
    CHECK(next_paced_send(day, in, 1) == nine + mins(6) - tick);
    in.last_send = nine - mins(30);
    CHECK(next_paced_send(day, in, 1) == nine);

    // Jitter: the same seed, the same time; within bounds; never past the end.
    in.last_send = nine;
    in.jitter = mins(5);
    std::set<mailers::time_point> seen;
    for (std::uint64_t seed = 0; seed < 2000; ++seed) {
        auto t = next_paced_send(day, in, seed);
        REQUIRE(t);
        CHECK(*t == *next_paced_send(day, in, seed));
        CHECK(*t >= nine + mins(16) - tick);
        CHECK(*t < nine + mins(21));
        seen.insert(*t);
    }
    CHECK(seen.size() > 1900);
    in.now = utc(2026, 3, 9, 16, 58);
    in.last_send = in.now;
    in.jitter = mins(30);
    std::vector<send_budget> last{{1, utc(2026, 3, 9, 17)}};
    for (std::uint64_t seed = 0; seed < 200; ++seed)
        CHECK(*next_paced_send(last, in, seed) < utc(2026, 3, 9, 17));
}

TEST_CASE("pacing neither overspends nor leaves unspent a budget, whatever the numbers") {
    using mailers::decide::next_paced_send;
    using mailers::decide::pacing_input;
    using mailers::decide::send_budget;
    std::mt19937_64 rng(7);
    for (int i = 0; i < 2000; ++i) {
        const auto start = utc(2026, 1, 1, 0);
        std::vector<send_budget> budgets;
        const int k = 1 + static_cast<int>(rng() % 3);
        for (int j = 0; j < k; ++j)
            budgets.push_back({1 + rng() % 200, start + mins(1 + static_cast<long>(rng() % 1440))});
        const auto given = budgets;
        pacing_input in;
        in.now = start;
        in.jitter = mins(static_cast<long>(rng() % 10));
        std::vector<std::uint64_t> used(budgets.size(), 0);
        for (int n = 0; n < 1000; ++n) {
            auto t = next_paced_send(budgets, in, rng());
            if (!t) break;
            REQUIRE(*t >= in.now);
            // Every send falls before the end of each budget it spends.
            for (std::size_t j = 0; j < budgets.size(); ++j) {
                if (*t >= budgets[j].until) continue;
                REQUIRE(budgets[j].remaining > 0);
                --budgets[j].remaining;
                ++used[j];
            }
            if (std::all_of(budgets.begin(), budgets.end(),
                            [&](const send_budget& b) { return *t >= b.until; }))
                break;
            in.now = *t;
            in.last_send = *t;
        }
        // A budget alone is spent in full before its end, jitter or not.
        if (given.size() == 1) CHECK(used[0] == given[0].remaining);
        for (std::size_t j = 0; j < given.size(); ++j) CHECK(used[j] <= given[j].remaining);
    }
}
