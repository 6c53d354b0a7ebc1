// The engine's decisions without the engine: breaker transitions,
// eligibility, rotation order, the failure policy and cap arithmetic, on
// values only. Times are fixed instants in real IANA zones (the system's
// zoneinfo is the one thing read); nothing reads a clock or writes a file.
#include <doctest/doctest.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "decide/breaker.hpp"
#include "decide/caps.hpp"
#include "decide/eligibility.hpp"
#include "decide/failure_policy.hpp"
#include "decide/rotation.hpp"

using namespace mailers;
using namespace mailers::decide;
using detail::effective_limit;
using detail::find_zone;
using detail::rate_counter;
using std::chrono::duration_cast;
using std::chrono::hours;
using std::chrono::minutes;
using std::chrono::seconds;

namespace {

constexpr duration us{1};

time_point utc(int y, unsigned m, unsigned d, int h = 0, int min = 0, int s = 0) {
    auto day =
        std::chrono::sys_days(std::chrono::year(y) / std::chrono::month(m) / std::chrono::day(d));
    return time_point(
        duration_cast<duration>(day.time_since_epoch() + hours(h) + minutes(min) + seconds(s)));
}

// One seed per run, printed so a failure can be replayed with
// MAILERS_TEST_SEED=<seed>.
std::uint64_t test_seed() {
    static const std::uint64_t seed = []() -> std::uint64_t {
        if (const char* s = std::getenv("MAILERS_TEST_SEED")) return std::strtoull(s, nullptr, 10);
        return static_cast<std::uint64_t>(std::random_device{}()) << 32 | std::random_device{}();
    }();
    static bool printed = false;
    if (!printed) {
        std::printf("decide_test seed: %llu (MAILERS_TEST_SEED to replay)\n",
                    static_cast<unsigned long long>(seed));
        printed = true;
    }
    return seed;
}

// A mailbox that may send: active, always-open window, no caps.
mailbox_facts open_mailbox(detail::zone_ptr zone) {
    mailbox_facts f;
    f.zone = zone;
    return f;
}

eligibility verdict(const mailbox_facts& f, time_point now) {
    return check_mailbox(f, now).verdict;
}

eligibility refused(ineligible_reason r, std::optional<time_point> next = std::nullopt) {
    return {r, next};
}

const breaker_params params3{3, seconds(300), seconds(1200)};

}  // namespace

// --- breaker -----------------------------------------------------------------

TEST_CASE("the breaker opens at the threshold of consecutive transient failures") {
    const auto t = utc(2026, 5, 4, 12);
    breaker_state s;
    s = on_transient_failure(s, params3, false, t);
    s = on_transient_failure(s, params3, false, t + seconds(1));
    CHECK(s.health == health_state::closed);
    CHECK(s.consecutive_failures == 2);
    CHECK(breaker_admits(breaker_at(s, t + seconds(2))));
    s = on_transient_failure(s, params3, false, t + seconds(2));
    CHECK(s.health == health_state::open);
    CHECK(s.open_until == t + seconds(302));
    CHECK(s.cool_down == seconds(300));
    CHECK_FALSE(breaker_admits(breaker_at(s, t + seconds(302) - us)));
    CHECK(breaker_at(s, t + seconds(302) - us).health == health_state::open);
}

TEST_CASE("a success ends the failure run; a threshold of 0 counts as 1") {
    const auto t = utc(2026, 5, 4, 12);
    breaker_state s;
    s = on_transient_failure(s, params3, false, t);
    s = on_transient_failure(s, params3, false, t);
    s = on_success(s, false);
    CHECK(s == breaker_state{});
    s = on_transient_failure(s, params3, false, t);
    s = on_transient_failure(s, params3, false, t);
    CHECK(s.health == health_state::closed);

    breaker_params zero{0, seconds(10), seconds(20)};
    auto z = on_transient_failure(breaker_state{}, zero, false, t);
    CHECK(z.health == health_state::open);
    CHECK(z.open_until == t + seconds(10));
}

TEST_CASE("after the cool-down exactly one probe goes through") {
    const auto t = utc(2026, 5, 4, 12);
    breaker_state s;
    for (int i = 0; i < 3; ++i) s = on_transient_failure(s, params3, false, t);
    auto h = breaker_at(s, t + seconds(300));
    CHECK(h.health == health_state::half_open);
    CHECK(breaker_admits(h));
    CHECK(sends_probe(h));
    h = on_reserve(h);
    CHECK(h.probe_in_flight);
    CHECK_FALSE(breaker_admits(h));
    // Asking again later does not let a second probe out.
    CHECK_FALSE(breaker_admits(breaker_at(h, t + hours(5))));
    // A probe released without a verdict frees the slot for another.
    auto released = on_release(h, true);
    CHECK(breaker_admits(released));
    CHECK(on_release(h, false) == h);
    // A closed breaker sends no probes.
    CHECK_FALSE(sends_probe(breaker_state{}));
    CHECK(on_reserve(breaker_state{}) == breaker_state{});
}

TEST_CASE("a probe's success closes the breaker and forgets the cool-down") {
    const auto t = utc(2026, 5, 4, 12);
    breaker_state s;
    for (int i = 0; i < 3; ++i) s = on_transient_failure(s, params3, false, t);
    s = on_reserve(breaker_at(s, t + seconds(300)));
    s = on_success(s, true);
    CHECK(s.health == health_state::closed);
    CHECK(s.cool_down == seconds(0));
    CHECK(s.consecutive_failures == 0);
    CHECK_FALSE(s.probe_in_flight);
    // The next trip starts again from the configured cool-down.
    for (int i = 0; i < 3; ++i) s = on_transient_failure(s, params3, false, t + hours(1));
    CHECK(s.open_until == t + hours(1) + seconds(300));
}

TEST_CASE("each failed probe doubles the cool-down, up to the maximum") {
    auto t = utc(2026, 5, 4, 12);
    breaker_state s;
    for (int i = 0; i < 3; ++i) s = on_transient_failure(s, params3, false, t);
    std::vector<seconds> got;
    for (int round = 0; round < 4; ++round) {
        t = s.open_until;
        s = on_reserve(breaker_at(s, t));
        REQUIRE(s.probe_in_flight);
        s = on_transient_failure(s, params3, true, t);
        CHECK(s.health == health_state::open);
        CHECK_FALSE(s.probe_in_flight);
        CHECK(s.open_until == t + duration_cast<duration>(s.cool_down));
        got.push_back(s.cool_down);
    }
    CHECK(got == std::vector<seconds>{seconds(600), seconds(1200), seconds(1200), seconds(1200)});

    // A maximum below the cool-down never shortens it.
    breaker_params odd{1, seconds(500), seconds(100)};
    auto o = on_transient_failure(breaker_state{}, odd, false, t);
    o = on_transient_failure(on_reserve(breaker_at(o, o.open_until)), odd, true, o.open_until);
    CHECK(o.cool_down == seconds(500));
}

TEST_CASE("a failure of a send reserved before the breaker opened does not double") {
    const auto t = utc(2026, 5, 4, 12);
    breaker_state s;
    for (int i = 0; i < 3; ++i) s = on_transient_failure(s, params3, false, t);
    s = on_transient_failure(s, params3, false, t + seconds(10));
    CHECK(s.cool_down == seconds(300));
    CHECK(s.open_until == t + seconds(310));
}

TEST_CASE("random breaker histories keep the breaker's invariants") {
    std::mt19937_64 rng(test_seed());
    for (int run = 0; run < 200; ++run) {
        breaker_params p{static_cast<std::uint32_t>(1 + rng() % 4), seconds(1 + rng() % 100),
                         seconds(1 + rng() % 1000)};
        const auto cap = std::max(p.cool_down, p.max_cool_down);
        breaker_state s;
        auto now = utc(2026, 1, 1);
        for (int step = 0; step < 60; ++step) {
            now += seconds(rng() % 200);
            s = breaker_at(s, now);
            if (!breaker_admits(s)) {
                CHECK((s.health == health_state::open || s.probe_in_flight));
                continue;
            }
            const bool probe = sends_probe(s);
            s = on_reserve(s);
            switch (rng() % 3) {
                case 0:
                    s = on_success(s, probe);
                    CHECK(s.health == health_state::closed);
                    break;
                case 1: {
                    const auto before = s.cool_down;
                    s = on_transient_failure(s, p, probe, now);
                    if (probe) {
                        CHECK(s.health == health_state::open);
                        CHECK(s.cool_down ==
                              (before.count() > 0 ? std::min(before * 2, cap) : p.cool_down));
                    }
                    break;
                }
                default:
                    s = on_release(s, probe);
                    break;
            }
            CHECK_FALSE(s.probe_in_flight);
            if (s.health == health_state::open) {
                CHECK(s.cool_down >= p.cool_down);
                CHECK(s.cool_down <= cap);
                CHECK(s.open_until == now + duration_cast<duration>(s.cool_down));
            }
            if (s.health == health_state::closed)
                CHECK(s.consecutive_failures < p.failure_threshold);
        }
    }
}

// --- eligibility ---------------------------------------------------------------

TEST_CASE("eligibility names each reason, narrowest first") {
    auto zone = find_zone("UTC");
    const auto now = utc(2026, 5, 4, 12);
    auto f = open_mailbox(zone);
    CHECK(verdict(f, now) == eligibility{});

    SUBCASE("state") {
        f.state = mailbox_state::retired;
        f.paused.mailbox = true;
        CHECK(verdict(f, now) == refused(ineligible_reason::retired));
        f.state = mailbox_state::paused;
        CHECK(verdict(f, now) == refused(ineligible_reason::paused));
    }
    SUBCASE("pauses at each scope") {
        f.paused.workspace_or_pool = true;
        CHECK(verdict(f, now) == refused(ineligible_reason::paused));
        f.paused.sender_domain = true;
        CHECK(verdict(f, now) == refused(ineligible_reason::domain_paused));
        f.paused.provider = true;
        CHECK(verdict(f, now) == refused(ineligible_reason::provider_paused));
        f.paused.mailbox = true;
        CHECK(verdict(f, now) == refused(ineligible_reason::paused));
    }
    SUBCASE("an auth failure comes before the breaker and has no end") {
        f.auth_failed = true;
        f.breaker.health = health_state::open;
        f.breaker.open_until = now - seconds(1);
        auto c = check_mailbox(f, now);
        CHECK(c.verdict == refused(ineligible_reason::unhealthy));
        CHECK(c.breaker == f.breaker);  // not reached: not half-opened
    }
    SUBCASE("an open breaker until its cool-down ends, then one probe") {
        f.breaker.health = health_state::open;
        f.breaker.open_until = now + seconds(30);
        CHECK(verdict(f, now) == refused(ineligible_reason::unhealthy, now + seconds(30)));
        auto c = check_mailbox(f, now + seconds(30));
        CHECK(c.verdict.ok());
        CHECK(c.breaker.health == health_state::half_open);
        f.breaker = on_reserve(c.breaker);
        CHECK(verdict(f, now + seconds(31)) == refused(ineligible_reason::probe_in_flight));
    }
    SUBCASE("throttled, then exhausted, each until its time") {
        f.throttled_until = now + seconds(60);
        f.exhausted_until = now + hours(2);
        CHECK(verdict(f, now) == refused(ineligible_reason::throttled, now + seconds(60)));
        CHECK(verdict(f, now + seconds(60)) ==
              refused(ineligible_reason::exhausted, now + hours(2)));
        CHECK(verdict(f, now + hours(2)).ok());
    }
    SUBCASE("minimum gap, exact to the microsecond") {
        f.gap_until = now + seconds(90);
        CHECK(verdict(f, now + seconds(90) - us) ==
              refused(ineligible_reason::min_gap, now + seconds(90)));
        CHECK(verdict(f, now + seconds(90)).ok());
    }
    SUBCASE("the store's refusal holds until its time") {
        cap_hint h{now + minutes(5), ineligible_reason::cap_reached};
        f.hint = &h;
        CHECK(verdict(f, now) == refused(ineligible_reason::cap_reached, now + minutes(5)));
        h.reason = ineligible_reason::min_gap;
        CHECK(verdict(f, now) == refused(ineligible_reason::min_gap, now + minutes(5)));
        CHECK(verdict(f, now + minutes(5)).ok());
        CHECK(holding(&h, now) == &h);
        CHECK(holding(&h, now + minutes(5)) == nullptr);
        CHECK(holding(nullptr, now) == nullptr);
    }
}

TEST_CASE("send windows follow daylight saving time in two zones") {
    send_window weekdays{9, 17, send_window::weekdays_mon_fri};
    SUBCASE("New York: closed Friday evening EST, opens Monday 9:00 EDT") {
        auto f = open_mailbox(find_zone("America/New_York"));
        REQUIRE(f.zone);
        f.window = weekdays;
        CHECK(verdict(f, utc(2026, 3, 6, 22) - us).ok());
        CHECK(verdict(f, utc(2026, 3, 6, 22)) ==
              refused(ineligible_reason::outside_window, utc(2026, 3, 9, 13)));
        CHECK(verdict(f, utc(2026, 3, 9, 13) - us) ==
              refused(ineligible_reason::outside_window, utc(2026, 3, 9, 13)));
        CHECK(verdict(f, utc(2026, 3, 9, 13)).ok());
    }
    SUBCASE("Berlin: closed Friday evening CET, opens Monday 9:00 CEST") {
        auto f = open_mailbox(find_zone("Europe/Berlin"));
        REQUIRE(f.zone);
        f.window = weekdays;
        CHECK(verdict(f, utc(2026, 3, 27, 8)).ok());
        CHECK(verdict(f, utc(2026, 3, 27, 16)) ==
              refused(ineligible_reason::outside_window, utc(2026, 3, 30, 7)));
        CHECK(verdict(f, utc(2026, 3, 30, 7)).ok());
        // Autumn: back to CET on Sunday 25 October.
        CHECK(verdict(f, utc(2026, 10, 23, 15)) ==
              refused(ineligible_reason::outside_window, utc(2026, 10, 26, 8)));
    }
    SUBCASE("a night window across midnight in Sydney, where DST ends in April") {
        auto f = open_mailbox(find_zone("Australia/Sydney"));
        REQUIRE(f.zone);
        f.window = send_window{22, 6, 0x7f};
        // Saturday 4 April 2026, 22:00 AEDT (UTC+11) = 11:00 UTC.
        CHECK(verdict(f, utc(2026, 4, 4, 11) - us) ==
              refused(ineligible_reason::outside_window, utc(2026, 4, 4, 11)));
        CHECK(verdict(f, utc(2026, 4, 4, 11)).ok());
        // Sunday 5 April ends at 06:00 AEST (UTC+10) = 20:00 UTC; the
        // next night opens at 22:00 AEST = 12:00 UTC.
        CHECK(verdict(f, utc(2026, 4, 4, 20) - us).ok());
        CHECK(verdict(f, utc(2026, 4, 4, 20)) ==
              refused(ineligible_reason::outside_window, utc(2026, 4, 5, 12)));
    }
}

TEST_CASE("a rolling cap of N allows the next send exactly `length` after the oldest") {
    auto zone = find_zone("Europe/Berlin");
    const std::vector<effective_limit> limits{{3, seconds(86400), window_kind::rolling}};
    rate_counter c;
    // Across the spring-forward night: a rolling day is 24 absolute hours.
    const auto t0 = utc(2026, 3, 28, 12, 0, 0) + duration(123);
    c.add(t0);
    c.add(t0 + hours(3));
    c.add(t0 + hours(20));
    auto f = open_mailbox(zone);
    f.counter = &c;
    f.limits = limits;
    CHECK(verdict(f, t0 + hours(24) - us) ==
          refused(ineligible_reason::cap_reached, t0 + hours(24)));
    CHECK(verdict(f, t0 + hours(24)).ok());
    c.add(t0 + hours(24));
    CHECK(verdict(f, t0 + hours(24)) == refused(ineligible_reason::cap_reached, t0 + hours(27)));
}

TEST_CASE("random rolling histories free up exactly when the oldest counted leaves") {
    std::mt19937_64 rng(test_seed() + 1);
    auto zone = find_zone("UTC");
    for (int run = 0; run < 100; ++run) {
        const std::uint64_t n = 1 + rng() % 6;
        const seconds length(60 + rng() % 7200);
        const std::vector<effective_limit> limits{{n, length, window_kind::rolling}};
        rate_counter c;
        std::vector<time_point> sent;
        auto now = utc(2026, 2, 1) + duration(static_cast<std::int64_t>(rng() % 1'000'000));
        auto f = open_mailbox(zone);
        f.counter = &c;
        f.limits = limits;
        for (int k = 0; k < 40; ++k) {
            auto v = verdict(f, now);
            if (v.ok()) {
                c.add(now);
                sent.push_back(now);
                now += duration(static_cast<std::int64_t>(
                    rng() %
                    static_cast<std::uint64_t>(duration_cast<duration>(length).count() / n)));
                continue;
            }
            REQUIRE(sent.size() >= n);
            const auto expect = sent[sent.size() - n] + duration_cast<duration>(length);
            REQUIRE(v.reason == ineligible_reason::cap_reached);
            REQUIRE(v.next == expect);
            CHECK_FALSE(verdict(f, expect - us).ok());
            now = expect;
        }
    }
}

TEST_CASE("a calendar day cap resets at local midnight, on a 23-hour day too") {
    auto zone = find_zone("America/New_York");
    const std::vector<effective_limit> limits{{2, seconds(86400), window_kind::calendar}};
    rate_counter c;
    // Sunday 8 March 2026 starts at 05:00 UTC (EST) and ends at 04:00 UTC
    // on the 9th (EDT).
    c.add(utc(2026, 3, 8, 5) - us);  // Saturday, local 23:59:59.999999
    c.add(utc(2026, 3, 8, 5));       // Sunday, local midnight
    auto f = open_mailbox(zone);
    f.counter = &c;
    f.limits = limits;
    CHECK(verdict(f, utc(2026, 3, 8, 5)).ok());
    c.add(utc(2026, 3, 8, 18));
    CHECK(verdict(f, utc(2026, 3, 9, 4) - us) ==
          refused(ineligible_reason::cap_reached, utc(2026, 3, 9, 4)));
    CHECK(verdict(f, utc(2026, 3, 9, 4)).ok());
}

TEST_CASE("a calendar hour cap frees at the top of the local hour") {
    auto zone = find_zone("Asia/Kolkata");  // UTC+5:30: local hours start at :30 UTC
    const std::vector<effective_limit> limits{{1, seconds(3600), window_kind::calendar}};
    rate_counter c;
    c.add(utc(2026, 6, 1, 10, 45));
    auto f = open_mailbox(zone);
    f.counter = &c;
    f.limits = limits;
    CHECK(verdict(f, utc(2026, 6, 1, 11, 29, 59)) ==
          refused(ineligible_reason::cap_reached, utc(2026, 6, 1, 11, 30)));
    CHECK(verdict(f, utc(2026, 6, 1, 11, 30)).ok());
}

TEST_CASE("warm-up caps by local day, counted like the mailbox's day limit") {
    auto zone = find_zone("America/New_York");
    auto f = open_mailbox(zone);
    // Day 0 is Saturday 7 March (local), day 1 Sunday 8 March from 05:00 UTC,
    // day 2 Monday 9 March from 04:00 UTC.
    f.warmup = warmup_ramp{2, 3, 6, utc(2026, 3, 7, 12)};
    rate_counter c;
    f.counter = &c;
    c.add(utc(2026, 3, 7, 15));
    c.add(utc(2026, 3, 7, 16));

    SUBCASE("calendar when the mailbox has no day limit") {
        CHECK(verdict(f, utc(2026, 3, 8, 5) - us) ==
              refused(ineligible_reason::warmup_cap_reached, utc(2026, 3, 8, 5)));
        CHECK(verdict(f, utc(2026, 3, 8, 5)).ok());
        // Before the start date the day-0 cap applies.
        rate_counter early;
        early.add(utc(2026, 3, 5, 12));
        early.add(utc(2026, 3, 5, 13));
        f.counter = &early;
        CHECK(verdict(f, utc(2026, 3, 5, 14)).reason == ineligible_reason::warmup_cap_reached);
    }
    SUBCASE("rolling when the mailbox counts its day rolling") {
        const std::vector<effective_limit> own{{100, seconds(86400), window_kind::rolling}};
        f.limits = own;
        CHECK(verdict(f, utc(2026, 3, 7, 20)) ==
              refused(ineligible_reason::warmup_cap_reached, utc(2026, 3, 8, 15)));
        // Day 1's ramp of 5 applies from local midnight.
        CHECK(verdict(f, utc(2026, 3, 8, 5)).ok());
    }
    SUBCASE("the ramp stops at its target") {
        for (int i = 0; i < 6; ++i) c.add(utc(2026, 3, 20, 14) + seconds(i));
        CHECK(verdict(f, utc(2026, 3, 20, 15)) ==
              refused(ineligible_reason::warmup_cap_reached, utc(2026, 3, 21, 4)));
    }
    SUBCASE("the mailbox's own cap is reported before the ramp") {
        const std::vector<effective_limit> own{{2, seconds(7200), window_kind::rolling}};
        f.limits = own;
        CHECK(verdict(f, utc(2026, 3, 7, 16, 30)) ==
              refused(ineligible_reason::cap_reached, utc(2026, 3, 7, 17)));
    }
}

TEST_CASE("shared quotas: the first full one, the store's refusal, unseen domains") {
    auto zone = find_zone("UTC");
    const auto now = utc(2026, 5, 4, 12);
    const std::vector<effective_limit> two_per_hour{{2, seconds(3600), window_kind::rolling}};
    const std::vector<effective_limit> none_allowed{{0, seconds(86400), window_kind::calendar}};
    rate_counter room, full;
    room.add(now - minutes(10));
    full.add(now - minutes(50));
    full.add(now - minutes(40));

    std::vector<quota_facts> qs{{&room, two_per_hour, zone, nullptr},
                                {&full, two_per_hour, zone, nullptr}};
    CHECK(check_quotas(qs, now) == refused(ineligible_reason::quota_reached, now + minutes(10)));
    CHECK(check_quotas(std::span(qs).first(1), now).ok());
    CHECK(check_quotas({}, now).ok());

    cap_hint h{now + minutes(3), ineligible_reason::cap_reached};
    qs[0].hint = &h;
    CHECK(check_quotas(qs, now) == refused(ineligible_reason::quota_reached, now + minutes(3)));
    CHECK(check_quotas(qs, now + minutes(3)) ==
          refused(ineligible_reason::quota_reached, now + minutes(10)));

    // A receiving domain not counted yet still has to pass: a cap of 0
    // refuses its first send until the next period.
    std::vector<quota_facts> unseen{{nullptr, none_allowed, zone, nullptr}};
    CHECK(check_quotas(unseen, now) == refused(ineligible_reason::quota_reached, utc(2026, 5, 5)));
    unseen[0].limits = two_per_hour;
    CHECK(check_quotas(unseen, now).ok());

    // Limits that cannot be read refuse with no time they lift, even with
    // room in the counter.
    std::vector<quota_facts> unreadable{{&room, two_per_hour, zone, nullptr, true}};
    CHECK(check_quotas(unreadable, now) == refused(ineligible_reason::quota_reached, std::nullopt));
}

TEST_CASE("a \"*\" recipient-domain quota counts each receiving domain apart") {
    auto refs = quotas_for("ses-eu", "brand.com", "gmail.com");
    std::vector<std::tuple<quota_scope, std::string, bool>> got;
    for (const auto& r : refs) got.emplace_back(r.scope, std::string(r.key), r.per_domain);
    CHECK(got == decltype(got){{quota_scope::provider, "ses-eu", false},
                               {quota_scope::sender_domain, "brand.com", false},
                               {quota_scope::recipient_domain, "gmail.com", false},
                               {quota_scope::recipient_domain, "*", true}});
    CHECK(quotas_for("p", "d", "").count == 2);

    // The engine keeps one counter per receiving domain for the "*" quota;
    // a full gmail.com leaves outlook.com free.
    auto zone = find_zone("UTC");
    const auto now = utc(2026, 5, 4, 12);
    const std::vector<effective_limit> one_per_hour{{1, seconds(3600), window_kind::rolling}};
    std::map<std::string, rate_counter, std::less<>> per_domain;
    per_domain["gmail.com"].add(now - minutes(1));
    auto facts_for = [&](std::string_view domain) {
        std::vector<quota_facts> out;
        for (const auto& r : quotas_for("p", "brand.com", domain)) {
            if (!r.per_domain) continue;
            auto it = per_domain.find(domain);
            out.push_back(
                {it == per_domain.end() ? nullptr : &it->second, one_per_hour, zone, nullptr});
        }
        return out;
    };
    CHECK(check_quotas(facts_for("gmail.com"), now) ==
          refused(ineligible_reason::quota_reached, now + minutes(59)));
    CHECK(check_quotas(facts_for("outlook.com"), now).ok());
}

// --- rotation -------------------------------------------------------------------

namespace {

std::vector<member_rank> weights(std::initializer_list<std::uint32_t> ws) {
    std::vector<member_rank> out;
    for (auto w : ws) out.push_back({w, 0});
    return out;
}

struct picker {
    rotation r;
    rotation_kind kind;
    std::set<std::uint32_t> ineligible;
    std::set<std::uint32_t> tried;
    std::map<std::uint32_t, eligibility> why;
    std::vector<std::uint32_t> checked;  // of the last pick

    std::optional<std::uint32_t> next(std::optional<std::uint32_t> sticky = std::nullopt) {
        checked.clear();
        auto out = pick(
            r, kind, sticky, [&](std::uint32_t i) { return tried.count(i) != 0; },
            [&](std::uint32_t i) {
                checked.push_back(i);
                if (!ineligible.count(i)) return eligibility{};
                auto w = why.find(i);
                return w == why.end() ? eligibility{ineligible_reason::cap_reached, std::nullopt}
                                      : w->second;
            });
        r.cursor = out.cursor;
        last = out;
        return out.member;
    }
    std::vector<std::uint32_t> take(int k) {
        std::vector<std::uint32_t> got;
        for (int i = 0; i < k; ++i) got.push_back(next().value_or(99));
        return got;
    }
    pick_outcome last;
};

using ids = std::vector<std::uint32_t>;

}  // namespace

TEST_CASE("smooth weighted round-robin spreads a cycle by weight") {
    auto r = plan_rotation(weights({5, 1, 1}), 0);
    CHECK(r.schedule == ids{0, 0, 1, 0, 2, 0, 0});
    // A weight of 0 counts as 1.
    CHECK(plan_rotation(weights({0, 0}), 0).schedule == ids{0, 1});
    CHECK(plan_rotation({}, 5).cursor == 0);

    std::mt19937_64 rng(test_seed() + 2);
    for (int run = 0; run < 50; ++run) {
        std::vector<member_rank> ms(1 + rng() % 8);
        std::uint64_t total = 0;
        for (auto& m : ms) total += m.weight = static_cast<std::uint32_t>(1 + rng() % 50);
        auto p = plan_rotation(ms, 0);
        REQUIRE(p.schedule.size() == total);
        std::vector<std::uint64_t> count(ms.size(), 0);
        for (std::size_t k = 0; k < p.schedule.size(); ++k) {
            ++count[p.schedule[k]];
            // Smooth: in every prefix no member is ahead of its share by a
            // whole pick (a member is picked only while its current weight,
            // k*w - total*count, is positive), nor behind it by two. The
            // lag can pass one pick: 1.056 is the most seen over 20,000
            // random weight sets of these sizes.
            for (std::size_t i = 0; i < ms.size(); ++i) {
                const double share = static_cast<double>(k + 1) * ms[i].weight / total;
                CHECK(static_cast<double>(count[i]) - share < 1.0 + 1e-9);
                CHECK(share - static_cast<double>(count[i]) < 2.0);
            }
        }
        for (std::size_t i = 0; i < ms.size(); ++i) CHECK(count[i] == ms[i].weight);
    }
}

TEST_CASE("weights with large sums are scaled to a bounded schedule") {
    const std::uint32_t big = 4'000'000'000u;
    auto r = plan_rotation(weights({big, big / 2, 1}), 0);
    CHECK(r.schedule.size() <= max_schedule + 3);
    CHECK(r.schedule.size() >= max_schedule - 3);
    std::vector<std::size_t> count(3, 0);
    for (auto i : r.schedule) ++count[i];
    CHECK(count[2] == 1);  // every member keeps a turn
    CHECK(count[0] == doctest::Approx(2.0 * count[1]).epsilon(0.001));
}

TEST_CASE("round-robin takes each eligible member in turn, skipping the rest") {
    picker p{plan_rotation(weights({1, 1, 1, 1}), 0), rotation_kind::round_robin};
    CHECK(p.take(6) == ids{0, 1, 2, 3, 0, 1});
    p.ineligible = {3};
    CHECK(p.take(3) == ids{2, 0, 1});
    CHECK(p.checked == ids{1});
}

TEST_CASE("weighted picks follow the schedule and skip ineligible members") {
    picker p{plan_rotation(weights({5, 1, 1}), 0), rotation_kind::weighted};
    CHECK(p.take(8) == ids{0, 0, 1, 0, 2, 0, 0, 0});
    p.ineligible = {0};
    CHECK(p.take(3) == ids{1, 2, 1});
    // Member 0 appears many times in the schedule but is checked once a pick.
    CHECK(std::count(p.checked.begin(), p.checked.end(), 0u) == 1);
}

TEST_CASE("priority groups: the lowest group takes turns, the next only when all fail") {
    std::vector<member_rank> ms{{1, 1}, {1, 0}, {1, 0}, {1, 2}};
    picker p{plan_rotation(ms, 0), rotation_kind::priority};
    CHECK(p.r.by_priority == ids{1, 2, 0, 3});
    CHECK(p.take(4) == ids{1, 2, 1, 2});
    p.ineligible = {1};
    CHECK(p.take(2) == ids{2, 2});
    p.ineligible = {1, 2};
    CHECK(p.take(1) == ids{0});
    p.ineligible = {0, 1, 2};
    CHECK(p.take(1) == ids{3});
}

TEST_CASE("a sticky sender is tried first and does not move the rotation") {
    picker p{plan_rotation(weights({1, 1, 1}), 0), rotation_kind::round_robin};
    CHECK(p.next() == 0u);
    CHECK(p.next(2) == 2u);
    CHECK(p.r.cursor == 1);
    CHECK(p.next() == 1u);
    // An ineligible sticky sender falls back to the policy, checked once.
    p.ineligible = {2};
    CHECK(p.next(2) == 0u);
    CHECK(p.checked == ids{2, 0});
    // Out of range (the member left the pool): ignored.
    CHECK(p.next(7) == 1u);
}

TEST_CASE("members the send already tried are skipped without a check") {
    for (auto kind :
         {rotation_kind::round_robin, rotation_kind::weighted, rotation_kind::priority}) {
        picker p{plan_rotation(weights({1, 2, 1}), 0), kind};
        p.tried = {0, 1};
        CHECK(p.next(0) == 2u);
        CHECK(p.checked == ids{2});
        p.tried = {0, 1, 2};
        CHECK_FALSE(p.next());
        CHECK(p.checked.empty());
        CHECK(p.last.reason == ineligible_reason::none);
    }
}

TEST_CASE("with no eligible member: the first reason and the earliest retry") {
    const auto t = utc(2026, 5, 4, 12);
    picker p{plan_rotation(weights({1, 1, 1}), 1), rotation_kind::round_robin};
    p.ineligible = {0, 1, 2};
    p.why[1] = {ineligible_reason::outside_window, t + hours(3)};
    p.why[2] = {ineligible_reason::throttled, t + minutes(1)};
    p.why[0] = {ineligible_reason::unhealthy, std::nullopt};
    CHECK_FALSE(p.next());
    CHECK(p.checked == ids{1, 2, 0});
    CHECK(p.last.reason == ineligible_reason::outside_window);
    CHECK(p.last.retry_at == t + minutes(1));
    CHECK(p.r.cursor == 1);
}

TEST_CASE("replanning keeps the cursor while it is in range") {
    auto r = plan_rotation(weights({3, 1}), 3);
    CHECK(r.cursor == 3);
    CHECK(plan_rotation(weights({1, 1}), 3).cursor == 0);
    CHECK(plan_rotation(weights({1, 1, 1, 1}), 3).cursor == 3);
}

// --- failure policy ---------------------------------------------------------------

TEST_CASE("the failure policy for every failure class") {
    auto zone = find_zone("America/New_York");
    const auto now = utc(2026, 3, 8, 18);  // Sunday 14:00 EDT; midnight is 04:00 UTC
    const std::vector<effective_limit> calendar_day{{50, seconds(86400), window_kind::calendar}};
    const std::vector<effective_limit> rolling_day{{50, seconds(86400), window_kind::rolling}};
    outcome_facts f{now, std::nullopt, rolling_day, zone, 1, 3, true};

    auto d = on_outcome({}, f);
    CHECK(d ==
          outcome_decision{
              send_state::accepted, false, true, false, false, sender_effect::none, {}, false});

    d = on_outcome(make_error_code(transport_errc::connection_failed), f);
    CHECK(d == outcome_decision{send_state::failed,
                                true,
                                false,
                                true,
                                false,
                                sender_effect::breaker_failure,
                                {},
                                true});
    // A protocol error (a peer that does not speak SMTP) before the message
    // was handed over: like a failed connection, released, counted by the
    // breaker, tried elsewhere.
    CHECK(on_outcome(make_error_code(transport_errc::protocol_error), f) == d);

    d = on_outcome(make_error_code(transport_errc::rate_limited), f);
    CHECK(d.effect == sender_effect::throttle);
    CHECK(d.until == now + seconds(60));
    CHECK((d.release && d.fail_over && d.state == send_state::failed));
    f.retry_after = seconds(7);
    CHECK(on_outcome(make_error_code(transport_errc::rate_limited), f).until == now + seconds(7));

    d = on_outcome(make_error_code(transport_errc::sender_quota_exhausted), f);
    CHECK(d.effect == sender_effect::exhausted);
    CHECK(d.until == now + hours(24));
    CHECK((d.release && d.fail_over));
    f.limits = calendar_day;
    CHECK(on_outcome(make_error_code(transport_errc::sender_quota_exhausted), f).until ==
          utc(2026, 3, 9, 4));

    for (auto e : {transport_errc::authentication_failed, transport_errc::configuration,
                   transport_errc::tls_verification_failed}) {
        d = on_outcome(make_error_code(e), f);
        CHECK(d.effect == sender_effect::auth_failed);
        CHECK((d.release && d.fail_over && !d.route_ok));
    }

    // A blocklist refusal lands on the mailbox's breaker; no single outcome
    // pauses the sender domain.
    d = on_outcome(make_error_code(transport_errc::sender_reputation), f);
    CHECK(d.effect == sender_effect::reputation_block);
    CHECK((d.release && d.fail_over && !d.route_ok));

    d = on_outcome(make_error_code(transport_errc::recipient_rejected), f);
    CHECK(d == outcome_decision{
                   send_state::failed, true, true, true, true, sender_effect::none, {}, false});

    d = on_outcome(make_error_code(transport_errc::content_rejected), f);
    CHECK(d == outcome_decision{
                   send_state::failed, true, true, true, false, sender_effect::none, {}, false});
    CHECK(on_outcome(make_error_code(errc::invalid_header), f) == d);

    const outcome_decision unknown{send_state::unknown, false, false, true, false,
                                   sender_effect::none, {},    false};
    CHECK(on_outcome(make_error_code(transport_errc::outcome_unknown), f) == unknown);
    CHECK(on_outcome(boost::asio::error::connection_reset, f) == unknown);
    CHECK(on_outcome(make_error_code(errc::operation_aborted), f) == unknown);

    for (auto e : {errc::suppressed, errc::paused, errc::unknown_provider, errc::store_error}) {
        CHECK(on_outcome(make_error_code(e), f) ==
              outcome_decision{
                  send_state::failed, true, false, true, false, sender_effect::none, {}, false});
    }
    // The same code from the engine's own refusal at hand-off (a cancel()
    // that came after the last check): nothing left, so nothing is unknown.
    f.refused_at_handoff = true;
    CHECK(on_outcome(make_error_code(errc::operation_aborted), f) ==
          outcome_decision{
              send_state::failed, true, false, true, false, sender_effect::none, {}, false});
}

TEST_CASE("fail-over needs may_retry, a pool and an attempt left") {
    const auto now = utc(2026, 5, 4, 12);
    for (int v = 1; v <= static_cast<int>(transport_errc::protocol_error); ++v) {
        auto ec = make_error_code(static_cast<transport_errc>(v));
        outcome_facts f{now, std::nullopt, {}, find_zone("UTC"), 1, 3, true};
        CHECK(on_outcome(ec, f).fail_over == may_retry(ec));
        f.attempt = 3;
        CHECK_FALSE(on_outcome(ec, f).fail_over);
        f.attempt = 2;
        f.pooled = false;
        CHECK_FALSE(on_outcome(ec, f).fail_over);
        // Whatever else, a message that may have left keeps its reservation.
        CHECK(on_outcome(ec, f).release == (classify(ec) != failure::unknown_outcome));
    }
}

TEST_CASE("no single outcome takes the route out for good") {
    const auto now = utc(2026, 5, 4, 12);
    std::vector<error_code> codes;
    for (int v = 1; v <= static_cast<int>(transport_errc::protocol_error); ++v)
        codes.push_back(make_error_code(static_cast<transport_errc>(v)));
    for (int v = static_cast<int>(failure::transient);
         v <= static_cast<int>(failure::unknown_outcome); ++v)
        codes.emplace_back(v, failure_category());
    for (const auto& ec : codes) {
        CAPTURE(ec.message());
        outcome_facts f{now, std::nullopt, {}, find_zone("UTC"), 1, 3, true};
        // Only a refused credential waits for a new configuration; every
        // other effect ends by itself (a time, or the breaker's cool-down).
        const auto d = on_outcome(ec, f);
        if (d.effect == sender_effect::auth_failed) CHECK((classify(ec) == failure::auth));
        if (d.effect == sender_effect::throttle || d.effect == sender_effect::exhausted)
            CHECK(d.until > now);
    }
}

// --- caps -------------------------------------------------------------------------

TEST_CASE("cap windows: rolling floors a tick after `length` ago, calendar at the local period") {
    auto berlin = find_zone("Europe/Berlin");
    const auto at = utc(2026, 3, 29, 12, 0, 0) + duration(5);
    auto w = window_at({10, seconds(86400), window_kind::rolling}, berlin, at);
    CHECK(w.max == 10);
    CHECK(w.floor == at - hours(24) + us);
    // 29 March 2026 in Berlin starts at 23:00 UTC the day before (CET).
    w = window_at({10, seconds(86400), window_kind::calendar}, berlin, at);
    CHECK(w.floor == utc(2026, 3, 28, 23));
    w = window_at({10, seconds(3600), window_kind::calendar}, berlin, at);
    CHECK(w.floor == utc(2026, 3, 29, 12));
    w = window_at({10, seconds(60), window_kind::calendar}, berlin, at);
    CHECK(w.floor == utc(2026, 3, 29, 12));

    planned_claim c;
    const std::vector<effective_limit> ls{{2, seconds(3600), window_kind::rolling},
                                          {5, seconds(86400), window_kind::calendar}};
    add_windows(c, ls, berlin, at);
    REQUIRE(c.claim.windows.size() == 2);
    REQUIRE(c.rules.size() == 2);
    CHECK(c.claim.windows[0].floor == at - hours(1) + us);
    CHECK(c.rules[1].kind == window_kind::calendar);
    CHECK(c.rules[1].zone == berlin);
}

TEST_CASE("retry times for rolling and calendar refusals, and a clock stepped back") {
    auto ny = find_zone("America/New_York");
    const auto at = utc(2026, 3, 8, 18);
    const window_rule rolling{seconds(3600), window_kind::rolling, ny};
    const window_rule day{seconds(86400), window_kind::calendar, ny};
    const cap_window w{at - hours(1) + us, 3};
    // Rolling: the oldest counted use plus `length`.
    CHECK(retry_time(rolling, w, at - minutes(45), at) == at + minutes(15));
    // Calendar: the next local period, here the end of a 23-hour day.
    CHECK(retry_time(day, w, at - hours(2), at) == utc(2026, 3, 9, 4));
    // A use recorded ahead of `at` (our clock is behind the writer's):
    // the calendar period after that use's; never a time before `at`.
    CHECK(retry_time(day, w, utc(2026, 3, 9, 5), at) == utc(2026, 3, 10, 4));
    CHECK(retry_time(rolling, w, at + minutes(5), at) == at + minutes(65));
    CHECK(retry_time(rolling, w, at - hours(3), at) == at);
    // A cap of 0 never fits.
    CHECK_FALSE(retry_time(rolling, cap_window{w.floor, 0}, at, at));
}

TEST_CASE("the warm-up limit is counted like the mailbox's own day limit") {
    auto ny = find_zone("America/New_York");
    const warmup_ramp ramp{10, 5, 0, utc(2026, 3, 1, 12)};
    const auto at = utc(2026, 3, 3, 15);
    CHECK_FALSE(warmup_limit(warmup_ramp{}, {}, ny, at));
    auto l = warmup_limit(ramp, {}, ny, at);
    REQUIRE(l);
    CHECK(l->max == 20);
    CHECK(l->kind == window_kind::calendar);
    const std::vector<effective_limit> own{{100, seconds(86400), window_kind::rolling}};
    CHECK(warmup_limit(ramp, own, ny, at)->kind == window_kind::rolling);
}

TEST_CASE("cap keys are distinct per scope and per receiving domain") {
    std::set<std::string> keys{mailbox_key("a"), quota_key(quota_scope::provider, "a"),
                               quota_key(quota_scope::sender_domain, "a"),
                               quota_key(quota_scope::recipient_domain, "a"),
                               any_recipient_domain_key("a")};
    CHECK(keys.size() == 5);
}
