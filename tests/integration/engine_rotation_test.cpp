// Rotation, failover, health and pacing: each case drives the engine into
// one corner of the decision path with a manual clock and checks the exact
// pick, the exact refusal and the exact time it says to come back.
#include <algorithm>
#include <mailers/transports/null_transport.hpp>
#include <map>
#include <set>

#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

error_code err(transport_errc e) {
    return make_error_code(e);
}

diagnostics retry_after(std::chrono::seconds s) {
    diagnostics d;
    d.retry_after = s;
    return d;
}

rotation_policy policy(rotation_kind kind, std::uint32_t max_attempts = 3, bool sticky = false) {
    rotation_policy p;
    p.kind = kind;
    p.max_attempts = max_attempts;
    p.sticky_sender = sticky;
    return p;
}

std::string nth_recipient(int i) {
    return "u" + std::to_string(i) + "@example.com";
}

// How many audit records match, by actor, action and resource id.
std::size_t audit_count(fixture& f, std::string_view actor, std::string_view action,
                        std::string_view id) {
    f.eng->flush();
    std::size_t n = 0;
    for (const auto& r : f.eng->audit_log())
        if (r.actor == actor && r.action == action && r.resource_id == id) ++n;
    return n;
}

}  // namespace

TEST_CASE("round-robin takes each eligible mailbox in pool order") {
    fixture f;
    for (auto id : {"a", "b", "c"})
        f.eng->upsert_mailbox(f.admin, f.mailbox(id, std::string(id) + "@brand.com"));
    f.add_pool("p", {"a", "b", "c"});

    std::vector<std::string> got;
    for (int i = 0; i < 9; ++i) {
        auto [ec, r] = f.send(fixture::request("p", nth_recipient(i)));
        REQUIRE_FALSE(ec);
        got.push_back(r.mailbox);
    }
    CHECK(got == std::vector<std::string>{"a", "b", "c", "a", "b", "c", "a", "b", "c"});
    auto sent = f.capture->sent();
    REQUIRE(sent.size() == 9);
    for (std::size_t i = 0; i < sent.size(); ++i) CHECK(sent[i].mailbox_id == got[i]);

    // A paused mailbox is skipped without disturbing the others' turns.
    f.eng->pause(f.admin, {pause_scope::mailbox, "b"});
    got.clear();
    for (int i = 0; i < 6; ++i)
        got.push_back(f.send(fixture::request("p", nth_recipient(100 + i))).second.mailbox);
    CHECK(got == std::vector<std::string>{"a", "c", "a", "c", "a", "c"});
    f.eng->resume(f.admin, {pause_scope::mailbox, "b"});
    got.clear();
    for (int i = 0; i < 3; ++i)
        got.push_back(f.send(fixture::request("p", nth_recipient(200 + i))).second.mailbox);
    std::sort(got.begin(), got.end());
    CHECK(got == std::vector<std::string>{"a", "b", "c"});
}

TEST_CASE("weighted rotation spreads 1:2:7 exactly in every cycle of ten") {
    fixture f;
    std::map<std::string, std::uint32_t> weights{{"a", 1}, {"b", 2}, {"c", 7}};
    for (auto& [id, w] : weights) {
        auto m = f.mailbox(id, id + "@brand.com");
        m.weight = w;
        f.eng->upsert_mailbox(f.admin, m);
    }
    f.add_pool("p", {"a", "b", "c"}, rotation_kind::weighted);

    std::vector<std::string> got;
    for (int i = 0; i < 1000; ++i) {
        auto [ec, r] = f.send(fixture::request("p", nth_recipient(i)));
        REQUIRE_FALSE(ec);
        got.push_back(r.mailbox);
    }
    // Smooth WRR returns to its starting state after sum(weights) picks, so
    // every aligned window of ten holds exactly the weights.
    for (std::size_t w = 0; w < got.size(); w += 10) {
        std::map<std::string, int> n;
        for (std::size_t i = w; i < w + 10; ++i) ++n[got[i]];
        INFO("window starting at pick " << w);
        CHECK(n["a"] == 1);
        CHECK(n["b"] == 2);
        CHECK(n["c"] == 7);
    }
    // "Smooth": the light mailboxes are interleaved, never sent back to back.
    for (std::size_t i = 1; i < got.size(); ++i)
        if (got[i] != "c") CHECK(got[i - 1] == "c");
    CHECK(f.capture->count() == 1000);
}

TEST_CASE("priority sends from the lowest value and fails over on a transient error") {
    fixture f;
    auto fa = f.add_faulty_provider("pa");
    auto fb = f.add_faulty_provider("pb");
    auto fc = f.add_faulty_provider("pc");
    auto add = [&](const std::string& id, const std::string& provider, int prio) {
        auto m = f.mailbox(id, id + "@brand.com");
        m.provider = provider;
        m.priority = prio;
        f.eng->upsert_mailbox(f.admin, m);
    };
    add("c", "pc", 2);
    add("a", "pa", 0);
    add("b", "pb", 1);
    f.upsert_pool("p", {"c", "b", "a"}, policy(rotation_kind::priority, 3));

    // Without faults the lowest priority value always wins.
    for (int i = 0; i < 3; ++i)
        CHECK(f.send(fixture::request("p", nth_recipient(i))).second.mailbox == "a");

    fa->fail_nth(fa->calls() + 1, err(transport_errc::temporary_reply));
    auto [ec, r] = f.send(fixture::request("p", "x@example.com", "k1"));
    REQUIRE_FALSE(ec);
    CHECK(r.mailbox == "b");
    CHECK(r.provider == "pb");
    CHECK(r.attempts == 2);
    CHECK(r.state == send_state::accepted);
    CHECK(f.eng->stats().failovers == 1);
    CHECK(fb->calls() == 1);
    CHECK(fc->calls() == 0);
    REQUIRE(f.capture->last());
    CHECK(f.capture->last()->mailbox_id == "b");
    CHECK(f.capture->count() == 4);  // the failed attempt never reached the inner transport

    auto row = f.ledger(r.send_id);
    REQUIRE(row);
    CHECK(row->mailbox == "b");
    CHECK(row->provider == "pb");
    CHECK(row->attempt == 2);
    CHECK(row->state == send_state::accepted);
    CHECK(row->idempotency_key == "k1");
    CHECK(row->message_id == r.message_id);

    // The next send goes back to the healthy first choice.
    CHECK(f.send(fixture::request("p", "y@example.com")).second.mailbox == "a");

    // Ties on the lowest value take turns.
    add("a2", "pa", 0);
    f.upsert_pool("p", {"c", "b", "a", "a2"}, policy(rotation_kind::priority, 3));
    std::multiset<std::string> ties;
    for (int i = 0; i < 6; ++i)
        ties.insert(f.send(fixture::request("p", nth_recipient(50 + i))).second.mailbox);
    CHECK(ties.count("a") == 3);
    CHECK(ties.count("a2") == 3);
}

TEST_CASE("failover stops after max_attempts") {
    for (std::uint32_t max_attempts : {1u, 2u, 3u, 10u}) {
        CAPTURE(max_attempts);
        fixture f;
        std::vector<std::shared_ptr<fault_injector>> fis;
        std::vector<std::string> ids;
        for (int i = 0; i < 4; ++i) {
            auto id = "m" + std::to_string(i);
            fis.push_back(f.add_faulty_provider("p" + id));
            fis.back()->fail_with_probability(1.0, err(transport_errc::connection_failed));
            auto m = f.mailbox(id, id + "@brand.com");
            m.provider = "p" + id;
            f.eng->upsert_mailbox(f.admin, m);
            ids.push_back(id);
        }
        f.upsert_pool("p", ids, policy(rotation_kind::round_robin, max_attempts));
        auto [ec, r] = f.send(fixture::request("p", "x@example.com"));
        const std::uint32_t expected = std::min<std::uint32_t>(max_attempts, 4);
        CHECK(ec == failure::transient);
        CHECK(r.attempts == expected);
        CHECK(r.state == send_state::failed);
        std::uint64_t calls = 0;
        for (auto& fi : fis) {
            CHECK(fi->calls() <= 1);  // never the same mailbox twice in one send
            calls += fi->calls();
        }
        CHECK(calls == expected);
        CHECK(f.capture->count() == 0);
        auto s = f.eng->stats();
        CHECK(s.failed == 1);
        CHECK(s.failovers == expected - 1);
        auto row = f.ledger(r.send_id);
        REQUIRE(row);
        CHECK(row->state == send_state::failed);
        CHECK(row->attempt == expected);
        // A failed send released every reservation it made.
        for (auto& id : ids) CHECK(f.eng->status(id).sent_today == 0);
    }
}

TEST_CASE("an unknown outcome is recorded, never failed over, and counts against the cap") {
    fixture f;
    auto fa = f.add_faulty_provider("pa");
    auto fb = f.add_faulty_provider("pb");
    auto a = f.mailbox("a", "a@brand.com", {rate_limit::per_day(1)});
    a.provider = "pa";
    auto b = f.mailbox("b", "b@brand.com");
    b.provider = "pb";
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, b);
    f.upsert_pool("p", {"a", "b"}, policy(rotation_kind::priority, 3));
    fa->unknown_nth(1);

    auto [ec, r] = f.send(fixture::request("p", "x@example.com", "u1"));
    CHECK(ec == failure::unknown_outcome);
    CHECK(r.state == send_state::unknown);
    CHECK(r.mailbox == "a");
    CHECK(r.attempts == 1);
    CHECK(fb->calls() == 0);
    CHECK(f.capture->count() == 1);  // it did go out
    auto s = f.eng->stats();
    CHECK(s.unknown == 1);
    CHECK(s.failovers == 0);
    CHECK(f.ledger(r.send_id)->state == send_state::unknown);

    CHECK(f.eng->status("a").sent_today == 1);
    auto again = f.send(fixture::direct("a", "y@example.com"));
    CHECK(again.first == errc::no_capacity);
    CHECK(again.second.retry_at == test_epoch() + 24h);
    // The same key is a duplicate of the unknown send, not a retry.
    auto dup = f.send(fixture::request("p", "x@example.com", "u1"));
    CHECK(dup.first == errc::duplicate);
    CHECK(dup.second.state == send_state::unknown);
    CHECK(f.capture->count() == 1);
    // Other sends move on to the next mailbox.
    CHECK(f.send(fixture::request("p", "z@example.com")).second.mailbox == "b");
}

TEST_CASE("a permanent recipient failure suppresses the recipient and is not failed over") {
    fixture f;
    f.record_events();
    auto fa = f.add_faulty_provider("pa");
    auto fb = f.add_faulty_provider("pb");
    auto a = f.mailbox("a", "a@brand.com");
    a.provider = "pa";
    auto b = f.mailbox("b", "b@brand.com");
    b.provider = "pb";
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, b);
    f.upsert_pool("p", {"a", "b"}, policy(rotation_kind::round_robin, 3));
    fa->fail_nth(1, err(transport_errc::recipient_rejected));

    auto [ec, r] = f.send(fixture::request("p", "Gone@Example.com"));
    CHECK(ec == failure::recipient_permanent);
    CHECK(r.state == send_state::failed);
    CHECK(r.attempts == 1);
    CHECK(fb->calls() == 0);
    CHECK(f.capture->count() == 0);

    CHECK(f.eng->is_suppressed("gone@example.com"));
    auto entry = f.eng->find_suppression("GONE@example.com");
    REQUIRE(entry);
    CHECK(entry->reason == suppression_reason::hard_bounce);
    CHECK(entry->source == "transport:pa");
    CHECK(audit_count(f, "system", "suppression.add", "gone@example.com") == 1);
    // The record holds the entry, as one from suppress() does.
    bool recorded = false;
    for (const auto& rec : f.eng->audit_log())
        if (rec.action == "suppression.add" && rec.resource_id == "gone@example.com") {
            recorded = true;
            CHECK(rec.after.find("\"gone@example.com\"") != std::string::npos);
            CHECK(rec.after.find("hard_bounce") != std::string::npos);
            CHECK(rec.after.find("transport:pa") != std::string::npos);
        }
    CHECK(recorded);
    CHECK(f.eng->verify_audit() == error_code{});
    CHECK(f.events_of(event_type::bounced).size() == 1);

    auto again = f.send(fixture::request("p", "gone@example.com"));
    CHECK(again.first == errc::suppressed);
    CHECK(fa->calls() + fb->calls() == 1);
}

TEST_CASE("a throttled mailbox is skipped until its retry-after") {
    fixture f;
    auto fa = f.add_faulty_provider("pa");
    auto a = f.mailbox("a", "a@brand.com");
    a.provider = "pa";
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@brand.com"));
    f.add_pool("p", {"a", "b"});
    fa->fail_nth(1, err(transport_errc::rate_limited), retry_after(120s));

    auto [ec, r] = f.send(fixture::request("p", "x@example.com"));
    REQUIRE_FALSE(ec);
    CHECK(r.mailbox == "b");
    CHECK(r.attempts == 2);
    auto st = f.eng->status("a");
    CHECK(st.blocked == ineligible_reason::throttled);
    CHECK(st.next_eligible == test_epoch() + 120s);

    for (int i = 0; i < 4; ++i)
        CHECK(f.send(fixture::request("p", nth_recipient(i))).second.mailbox == "b");
    auto d = f.send(fixture::direct("a", "y@example.com"));
    CHECK(d.first == errc::no_capacity);
    CHECK(d.second.retry_at == test_epoch() + 120s);
    f.clock->advance(120s - 1us);
    CHECK(f.send(fixture::request("p", "z@example.com")).second.mailbox == "b");
    f.clock->advance(1us);
    std::set<std::string> used;
    for (int i = 0; i < 2; ++i)
        used.insert(f.send(fixture::request("p", nth_recipient(10 + i))).second.mailbox);
    CHECK(used == std::set<std::string>{"a", "b"});
}

TEST_CASE("an exhausted sender quota blocks the mailbox until its window rolls") {
    fixture f;
    auto fa = f.add_faulty_provider("pa");
    auto fc = f.add_faulty_provider("pc");
    auto a = f.mailbox("a", "a@brand.com", {rate_limit::per_day(100)});
    a.provider = "pa";
    // Counted per calendar day in New York: exhausted until local midnight.
    auto c = f.mailbox("c", "c@brand.com", {rate_limit::per_day(100, window_kind::calendar)});
    c.provider = "pc";
    c.time_zone = "America/New_York";
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, c);
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@brand.com"));
    f.add_pool("p", {"a", "b"});
    fa->fail_nth(1, err(transport_errc::sender_quota_exhausted));
    fc->fail_nth(1, err(transport_errc::sender_quota_exhausted));

    auto [ec, r] = f.send(fixture::request("p", "x@example.com"));
    REQUIRE_FALSE(ec);
    CHECK(r.mailbox == "b");
    CHECK(f.eng->status("a").blocked == ineligible_reason::exhausted);
    CHECK(f.eng->status("a").next_eligible == test_epoch() + 24h);

    CHECK(f.send(fixture::direct("c", "y@example.com")).first == failure::quota_exhausted);
    const auto ny_midnight = utc(2026, 11, 26, 5);  // 00:00 EST
    CHECK(f.eng->status("c").next_eligible == ny_midnight);
    f.clock->set(ny_midnight - 1us);
    auto refused = f.send(fixture::direct("c", "y@example.com"));
    CHECK(refused.first == errc::no_capacity);
    CHECK(refused.second.retry_at == ny_midnight);
    f.clock->set(ny_midnight);
    CHECK_FALSE(f.send(fixture::direct("c", "y@example.com")).first);
    f.clock->set(test_epoch() + 24h);
    CHECK_FALSE(f.send(fixture::direct("a", "y@example.com")).first);
}

TEST_CASE("an auth failure makes the mailbox unhealthy and raises an alert") {
    fixture f;
    f.record_events();
    auto fa = f.add_faulty_provider("pa");
    auto a = f.mailbox("a", "a@brand.com");
    a.provider = "pa";
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@brand.com"));
    f.add_pool("p", {"a", "b"});
    fa->fail_nth(1, err(transport_errc::authentication_failed));

    auto [ec, r] = f.send(fixture::request("p", "x@example.com"));
    REQUIRE_FALSE(ec);
    CHECK(r.mailbox == "b");
    auto st = f.eng->status("a");
    CHECK(st.health == health_state::open);
    CHECK(st.blocked == ineligible_reason::unhealthy);
    auto alerts = f.events_of(event_type::alert);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].mailbox == "a");
    CHECK(alerts[0].detail.find("'a'") != std::string::npos);

    // Time alone does not heal bad credentials ...
    f.clock->advance(48h);
    CHECK(f.eng->status("a").blocked == ineligible_reason::unhealthy);
    CHECK(f.send(fixture::direct("a", "y@example.com")).first == errc::no_capacity);
    // ... a new configuration does.
    f.eng->upsert_mailbox(f.admin, a);
    CHECK_FALSE(f.send(fixture::direct("a", "y@example.com")).first);
    CHECK(fa->calls() == 2);
}

TEST_CASE("a reputation block fails over and raises an alert; it never pauses the domain") {
    fixture f;
    f.record_events();
    auto fa = f.add_faulty_provider("pa");
    auto a = f.mailbox("a", "a@Brand.com");
    a.provider = "pa";
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, f.mailbox("c", "c@brand.com"));
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@other.com"));
    f.add_pool("p", {"a", "c", "b"});
    fa->fail_nth(1, err(transport_errc::sender_reputation));

    auto [ec, r] = f.send(fixture::request("p", "x@example.com"));
    REQUIRE_FALSE(ec);
    CHECK(r.mailbox == "c");  // the next in the pool, same domain: nothing is paused
    CHECK(r.attempts == 2);
    CHECK_FALSE(f.eng->is_paused({pause_scope::sender_domain, "brand.com"}));
    CHECK(f.eng->status("c").blocked == ineligible_reason::none);
    auto alerts = f.events_of(event_type::alert);
    REQUIRE(alerts.size() == 1);
    CHECK(alerts[0].detail.find("'a'") != std::string::npos);
    CHECK(alerts[0].detail.find("brand.com") != std::string::npos);
    CHECK(audit_count(f, "system", "pause", "brand.com") == 0);

    // Refusals in a row open a's breaker, as transient failures do.
    const auto threshold = a.breaker.failure_threshold;
    for (std::uint32_t i = 1; i < threshold; ++i) {
        fa->fail_nth(fa->calls() + 1, err(transport_errc::sender_reputation));
        CHECK(f.send(fixture::direct("a", nth_recipient(static_cast<int>(i)))).first);
    }
    CHECK(f.eng->status("a").health == health_state::open);
    CHECK(f.eng->status("c").blocked == ineligible_reason::none);
    CHECK(f.eng->verify_audit() == error_code{});
}

TEST_CASE("the circuit breaker opens, half-opens for exactly one probe, and backs off") {
    fixture f;
    auto gate = std::make_shared<held_transport>(f.ioc.get_executor());
    auto fa = f.add_faulty_provider("pa", gate);
    auto a = f.mailbox("a", "a@brand.com");
    a.provider = "pa";
    a.breaker = breaker_params{3, 60s, 600s};
    f.eng->upsert_mailbox(f.admin, a);
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@brand.com"));
    f.add_pool("p", {"a", "b"});
    const auto transient = err(transport_errc::temporary_reply);

    fa->script({fault_action::fail(transient), fault_action::fail(transient),
                fault_action::fail(transient)});
    for (int i = 0; i < 3; ++i) {
        CHECK(f.eng->status("a").health == health_state::closed);
        CHECK(f.send(fixture::direct("a", nth_recipient(i))).first == failure::transient);
    }
    auto t_open = f.clock->now();
    auto st = f.eng->status("a");
    CHECK(st.health == health_state::open);
    CHECK(st.blocked == ineligible_reason::unhealthy);
    CHECK(st.next_eligible == t_open + 60s);
    auto refused = f.send(fixture::direct("a", "x@example.com"));
    CHECK(refused.first == errc::no_capacity);
    CHECK(refused.second.retry_at == t_open + 60s);
    for (int i = 0; i < 3; ++i)
        CHECK(f.send(fixture::request("p", nth_recipient(10 + i))).second.mailbox == "b");
    CHECK(fa->calls() == 3);

    // Each failed probe doubles the cool-down, up to the maximum.
    std::chrono::seconds cool{60};
    for (auto next : {120s, 240s, 480s, 600s, 600s}) {
        CAPTURE(next.count());
        f.clock->advance(cool - 1s);
        CHECK(f.eng->status("a").health == health_state::open);
        f.clock->advance(1s);
        CHECK(f.eng->status("a").health == health_state::half_open);

        gate->set_hold(true);
        auto probe = f.start(fixture::direct("a", "probe@example.com"));
        f.run_until([&] { return gate->pending() == 1; });
        // While the probe is out, nothing else may use the mailbox.
        auto second = f.send(fixture::direct("a", "second@example.com"));
        CHECK(second.first == errc::no_capacity);
        CHECK(f.eng->status("a").blocked == ineligible_reason::probe_in_flight);
        for (int i = 0; i < 2; ++i)
            CHECK(f.send(fixture::request("p", nth_recipient(20 + i))).second.mailbox == "b");
        CHECK(gate->pending() == 1);

        gate->complete_oldest(transient);
        f.run_until([&] { return probe->has_value(); });
        CHECK((*probe)->first == failure::transient);
        auto t = f.clock->now();
        st = f.eng->status("a");
        CHECK(st.health == health_state::open);
        CHECK(st.next_eligible == t + next);
        cool = next;
    }

    // A successful probe closes the breaker; the mailbox is back in rotation.
    f.clock->advance(cool);
    gate->set_hold(true);
    auto probe = f.start(fixture::direct("a", "probe@example.com"));
    f.run_until([&] { return gate->pending() == 1; });
    CHECK(f.send(fixture::direct("a", "second@example.com")).first == errc::no_capacity);
    gate->complete_oldest();
    f.run_until([&] { return probe->has_value(); });
    CHECK_FALSE((*probe)->first);
    CHECK(f.eng->status("a").health == health_state::closed);
    gate->set_hold(false);
    for (int i = 0; i < 3; ++i)
        CHECK_FALSE(f.send(fixture::direct("a", nth_recipient(30 + i))).first);
    std::set<std::string> used;
    for (int i = 0; i < 2; ++i)
        used.insert(f.send(fixture::request("p", nth_recipient(40 + i))).second.mailbox);
    CHECK(used == std::set<std::string>{"a", "b"});

    // After a success the count starts again: two failures do not open it.
    fa->script({fault_action::fail(transient), fault_action::fail(transient)});
    for (int i = 0; i < 2; ++i)
        CHECK(f.send(fixture::direct("a", nth_recipient(50 + i))).first == failure::transient);
    CHECK(f.eng->status("a").health == health_state::closed);
}

TEST_CASE("adding and retiring mailboxes takes effect on the next pick") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("a", "a@brand.com"));
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@brand.com"));
    f.add_pool("p", {"a", "b"});
    auto pick = [&](int i) {
        return f.send(fixture::request("p", nth_recipient(i))).second.mailbox;
    };
    CHECK(pick(0) == "a");
    CHECK(pick(1) == "b");

    f.eng->upsert_mailbox(f.admin, f.mailbox("c", "c@brand.com"));
    f.add_pool("p", {"a", "b", "c"});
    CHECK(pick(2) == "a");
    CHECK(pick(3) == "b");
    CHECK(pick(4) == "c");

    f.eng->retire_mailbox(f.admin, "b");
    std::vector<std::string> got;
    for (int i = 0; i < 4; ++i) got.push_back(pick(10 + i));
    CHECK(std::count(got.begin(), got.end(), "b") == 0);
    CHECK(std::count(got.begin(), got.end(), "a") == 2);
    CHECK(std::count(got.begin(), got.end(), "c") == 2);
    auto d = f.send(fixture::direct("b", "x@example.com"));
    CHECK(d.first == errc::no_capacity);
    CHECK_FALSE(d.second.retry_at);  // retired: never
    CHECK(f.eng->status("b").state == mailbox_state::retired);
    CHECK(f.eng->status("b").blocked == ineligible_reason::retired);

    // Taking a mailbox out of the pool, and a pool with nothing left.
    f.add_pool("p", {"c"});
    for (int i = 0; i < 3; ++i) CHECK(pick(20 + i) == "c");
    f.eng->retire_mailbox(f.admin, "c");
    CHECK(f.send(fixture::request("p", "y@example.com")).first == errc::no_capacity);
    auto sent = f.capture->sent();
    CHECK(std::count_if(sent.begin(), sent.end(),
                        [](const outbound& o) { return o.mailbox_id == "b"; }) == 2);
}

TEST_CASE("sticky sender keeps a recipient on the mailbox that last wrote to them") {
    fixture f;
    for (auto id : {"a", "b", "c"})
        f.eng->upsert_mailbox(f.admin, f.mailbox(id, std::string(id) + "@brand.com"));
    f.upsert_pool("p", {"a", "b", "c"}, policy(rotation_kind::round_robin, 3, true));
    auto pick = [&](const std::string& to) {
        return f.send(fixture::request("p", to)).second.mailbox;
    };

    auto first_x = pick("x@example.com");
    auto first_y = pick("y@example.com");
    CHECK(first_x != first_y);
    for (int i = 0; i < 5; ++i) {
        CHECK(pick("X@Example.com") == first_x);  // normalised recipient
        CHECK(pick("y@example.com") == first_y);
        pick(nth_recipient(i));  // others keep rotating
    }
    // When the sticky mailbox cannot send, another takes over and sticks.
    f.eng->pause(f.admin, {pause_scope::mailbox, first_x});
    auto second_x = pick("x@example.com");
    CHECK(second_x != first_x);
    CHECK(pick("x@example.com") == second_x);
    f.eng->resume(f.admin, {pause_scope::mailbox, first_x});
    CHECK(pick("x@example.com") == second_x);

    // Without the option, the same recipient rotates like anyone else.
    f.upsert_pool("q", {"a", "b", "c"}, policy(rotation_kind::round_robin, 3, false));
    std::set<std::string> used;
    for (int i = 0; i < 3; ++i)
        used.insert(f.send(fixture::request("q", "x@example.com")).second.mailbox);
    CHECK(used.size() == 3);
}

TEST_CASE("a New York 9-17 weekday window follows daylight saving time") {
    fixture f;
    auto m = f.mailbox("ny", "ny@brand.com");
    m.time_zone = "America/New_York";
    m.window = send_window{9, 17, send_window::weekdays_mon_fri};
    f.eng->upsert_mailbox(f.admin, m);
    f.add_pool("p", {"ny"});

    auto at = [&](time_point t) {
        f.clock->set(t);
        return f.send(fixture::request("p", "x@example.com"));
    };
    auto expect_closed_until = [&](time_point t, time_point open) {
        CAPTURE(t.time_since_epoch().count());
        auto [ec, r] = at(t);
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == open);
        CHECK(f.eng->status("ny").blocked == ineligible_reason::outside_window);
    };
    auto expect_open = [&](time_point t) {
        CAPTURE(t.time_since_epoch().count());
        CHECK_FALSE(at(t).first);
    };

    // Spring forward on Sunday 2026-03-08: Friday opens at 14:00 UTC (EST),
    // Monday at 13:00 UTC (EDT).
    expect_closed_until(utc(2026, 3, 6, 13, 59, 59), utc(2026, 3, 6, 14));
    expect_open(utc(2026, 3, 6, 14));
    expect_open(utc(2026, 3, 6, 21, 59, 59));
    expect_closed_until(utc(2026, 3, 6, 22), utc(2026, 3, 9, 13));
    expect_closed_until(utc(2026, 3, 7, 15), utc(2026, 3, 9, 13));  // Saturday
    expect_closed_until(utc(2026, 3, 8, 14), utc(2026, 3, 9, 13));  // Sunday, the change
    expect_closed_until(utc(2026, 3, 9, 12, 59, 59), utc(2026, 3, 9, 13));
    expect_open(utc(2026, 3, 9, 13));
    expect_open(utc(2026, 3, 9, 20, 59, 59));
    expect_closed_until(utc(2026, 3, 9, 21), utc(2026, 3, 10, 13));

    // Fall back on Sunday 2026-11-01: Friday opens at 13:00 UTC (EDT),
    // Monday at 14:00 UTC (EST).
    expect_closed_until(utc(2026, 10, 30, 12), utc(2026, 10, 30, 13));
    expect_open(utc(2026, 10, 30, 13));
    expect_closed_until(utc(2026, 10, 30, 21), utc(2026, 11, 2, 14));
    expect_closed_until(utc(2026, 11, 1, 14), utc(2026, 11, 2, 14));
    expect_closed_until(utc(2026, 11, 2, 13, 30), utc(2026, 11, 2, 14));
    expect_open(utc(2026, 11, 2, 14));
    expect_open(utc(2026, 11, 2, 21, 59, 59));
    expect_closed_until(utc(2026, 11, 2, 22), utc(2026, 11, 3, 14));
    CHECK(f.capture->count() == 7);
}

TEST_CASE("a warm-up ramp allows start, then step more each day, up to target") {
    fixture f;
    auto m = f.mailbox("w", "w@brand.com");
    m.warmup = warmup_ramp{2, 3, 10, test_epoch()};
    f.eng->upsert_mailbox(f.admin, m);
    f.add_pool("p", {"w"});

    int n = 0;
    std::uint64_t day = 0;
    for (int expected : {2, 5, 8, 10, 10}) {
        CAPTURE(day);
        f.clock->set(test_epoch() + std::chrono::hours(24 * day));
        CHECK(f.eng->status("w").effective_daily_cap == static_cast<std::uint64_t>(expected));
        for (int i = 0; i < expected; ++i) {
            REQUIRE_FALSE(f.send(fixture::request("p", nth_recipient(n++))).first);
            f.clock->advance(1min);
        }
        auto [ec, r] = f.send(fixture::request("p", "late@example.com"));
        CHECK(ec == errc::no_capacity);
        // The ramp is a calendar day in the mailbox's zone (UTC here).
        CHECK(r.retry_at == utc(2026, 11, 26 + static_cast<unsigned>(day)));
        auto st = f.eng->status("w");
        CHECK(st.blocked == ineligible_reason::warmup_cap_reached);
        CHECK(st.sent_today == static_cast<std::uint64_t>(expected));
        ++day;
    }
    CHECK(f.capture->count() == 2 + 5 + 8 + 10 + 10);
}

TEST_CASE("a calendar-day cap resets at local midnight of the mailbox's zone") {
    fixture f;
    auto ny = f.mailbox("ny", "ny@brand.com", {rate_limit::per_day(3, window_kind::calendar)});
    ny.time_zone = "America/New_York";
    auto tk = f.mailbox("tk", "tk@brand.com", {rate_limit::per_day(3, window_kind::calendar)});
    tk.time_zone = "Asia/Tokyo";
    f.eng->upsert_mailbox(f.admin, ny);
    f.eng->upsert_mailbox(f.admin, tk);
    auto fill = [&](const std::string& id, time_point reopen) {
        for (int i = 0; i < 3; ++i)
            REQUIRE_FALSE(f.send(fixture::direct(id, nth_recipient(i))).first);
        auto [ec, r] = f.send(fixture::direct(id, "late@example.com"));
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == reopen);
        CHECK(f.eng->status(id).sent_today == 3);
    };
    // 12:00 UTC on 2026-11-25 is 07:00 in New York and 21:00 in Tokyo.
    fill("ny", utc(2026, 11, 26, 5));
    fill("tk", utc(2026, 11, 25, 15));

    f.clock->set(utc(2026, 11, 25, 15) - 1us);
    CHECK(f.send(fixture::direct("tk", "x@example.com")).first == errc::no_capacity);
    f.clock->set(utc(2026, 11, 25, 15));
    CHECK(f.eng->status("tk").sent_today == 0);
    CHECK_FALSE(f.send(fixture::direct("tk", "x@example.com")).first);
    CHECK(f.eng->status("tk").sent_today == 1);

    f.clock->set(utc(2026, 11, 26, 0));  // UTC midnight means nothing to New York
    CHECK(f.send(fixture::direct("ny", "x@example.com")).first == errc::no_capacity);
    CHECK(f.eng->status("ny").sent_today == 3);
    f.clock->set(utc(2026, 11, 26, 5));
    CHECK(f.eng->status("ny").sent_today == 0);
    CHECK_FALSE(f.send(fixture::direct("ny", "x@example.com")).first);
}

TEST_CASE("a calendar day across a DST change is 23 or 25 hours long") {
    fixture f;
    f.clock->set(utc(2026, 3, 1));
    auto ny = f.mailbox("ny", "ny@brand.com", {rate_limit::per_day(3, window_kind::calendar)});
    ny.time_zone = "America/New_York";
    f.eng->upsert_mailbox(f.admin, ny);
    auto fill = [&](time_point at, time_point reopen) {
        f.clock->set(at);
        for (int i = 0; i < 3; ++i)
            REQUIRE_FALSE(f.send(fixture::direct("ny", nth_recipient(i))).first);
        f.clock->set(reopen - 1us);
        auto [ec, r] = f.send(fixture::direct("ny", "late@example.com"));
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == reopen);
        f.clock->set(reopen);
        CHECK(f.eng->status("ny").sent_today == 0);
        CHECK_FALSE(f.send(fixture::direct("ny", "late@example.com")).first);
    };
    // Spring forward: Mar 8 runs from 05:00 UTC to 04:00 UTC on Mar 9.
    fill(utc(2026, 3, 8, 5), utc(2026, 3, 9, 4));
    // Fall back: Nov 1 runs from 04:00 UTC to 05:00 UTC on Nov 2.
    fill(utc(2026, 11, 1, 4), utc(2026, 11, 2, 5));
}

TEST_CASE("minimum gap plus jitter spaces a mailbox's sends and retry_at is honest") {
    fixture f;
    auto m = f.mailbox("g", "g@brand.com");
    m.min_gap = 60s;
    m.jitter = 30s;
    f.eng->upsert_mailbox(f.admin, m);

    std::vector<time_point> sent_at;
    REQUIRE_FALSE(f.send(fixture::direct("g", nth_recipient(0))).first);
    sent_at.push_back(f.clock->now());
    for (int i = 1; i < 40; ++i) {
        f.clock->advance(1s);
        auto [ec, r] = f.send(fixture::direct("g", nth_recipient(i)));
        REQUIRE(ec == errc::no_capacity);
        REQUIRE(r.retry_at);
        auto gap = *r.retry_at - sent_at.back();
        CHECK(gap >= 60s);
        CHECK(gap <= 90s);
        CHECK(f.eng->status("g").blocked == ineligible_reason::min_gap);
        // One microsecond early is still too early, and says the same time.
        f.clock->set(*r.retry_at - 1us);
        auto early = f.send(fixture::direct("g", nth_recipient(i)));
        CHECK(early.first == errc::no_capacity);
        CHECK(early.second.retry_at == r.retry_at);
        f.clock->set(*r.retry_at);
        REQUIRE_FALSE(f.send(fixture::direct("g", nth_recipient(i))).first);
        sent_at.push_back(f.clock->now());
    }
    std::set<duration> gaps;
    for (std::size_t i = 1; i < sent_at.size(); ++i) {
        CHECK(sent_at[i] - sent_at[i - 1] >= 60s);
        gaps.insert(sent_at[i] - sent_at[i - 1]);
    }
    CHECK(gaps.size() > 1);  // the jitter really varies the spacing
    CHECK(f.capture->count() == sent_at.size());
}

TEST_CASE("nested quotas: a send reserves every level or none") {
    fixture f;
    auto fa = f.add_faulty_provider("pa");
    auto a = f.mailbox("a", "a@brand.com");
    auto b = f.mailbox("b", "b@brand.com");
    auto c = f.mailbox("c", "c@other.com");
    auto x = f.mailbox("x", "x@third.com");
    x.provider = "pa";
    for (auto* mb : {&a, &b, &c, &x}) f.eng->upsert_mailbox(f.admin, *mb);
    f.add_pool("p", {"a", "b", "c"});
    auto total_sent = [&] {
        std::uint64_t n = 0;
        for (auto id : {"a", "b", "c", "x"}) n += f.eng->status(id).sent_today;
        return n;
    };

    SUBCASE("a recipient-domain quota for one domain") {
        f.eng->set_quota(
            f.admin,
            quota{quota_scope::recipient_domain, "Example.COM", {rate_limit::per_hour(2)}, {}});
        CHECK_FALSE(f.send(fixture::request("p", "r1@example.com")).first);
        f.clock->advance(10min);
        CHECK_FALSE(f.send(fixture::request("p", "r2@EXAMPLE.com")).first);
        auto [ec, r] = f.send(fixture::request("p", "r3@example.com"));
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == test_epoch() + 1h);
        CHECK(total_sent() == 2);  // the refused send consumed no mailbox capacity
        CHECK_FALSE(f.send(fixture::request("p", "r3@elsewhere.org")).first);
        CHECK(total_sent() == 3);
        f.clock->set(test_epoch() + 1h);
        CHECK_FALSE(f.send(fixture::request("p", "r3@example.com")).first);
    }
    SUBCASE("a recipient-domain quota for every receiving domain") {
        f.eng->set_quota(f.admin,
                         quota{quota_scope::recipient_domain, "*", {rate_limit::per_hour(1)}, {}});
        CHECK_FALSE(f.send(fixture::request("p", "r1@d1.org")).first);
        CHECK(f.send(fixture::request("p", "r2@d1.org")).first == errc::no_capacity);
        CHECK_FALSE(f.send(fixture::request("p", "r1@d2.org")).first);
        CHECK(f.send(fixture::request("p", "r2@D2.org")).first == errc::no_capacity);
        CHECK(total_sent() == 2);
        // A specific key and "*" both apply to the same domain.
        f.eng->set_quota(
            f.admin, quota{quota_scope::recipient_domain, "d3.org", {rate_limit::per_hour(5)}, {}});
        CHECK_FALSE(f.send(fixture::request("p", "r1@d3.org")).first);
        CHECK(f.send(fixture::request("p", "r2@d3.org")).first == errc::no_capacity);
        CHECK(total_sent() == 3);
    }
    SUBCASE("a zero cap for every receiving domain refuses every send") {
        f.eng->set_quota(f.admin,
                         quota{quota_scope::recipient_domain, "*", {rate_limit::per_hour(0)}, {}});
        CHECK(f.send(fixture::request("p", "r1@fresh.org")).first == errc::no_capacity);
        CHECK(f.send(fixture::request("p", "r2@fresh.org")).first == errc::no_capacity);
        CHECK(f.capture->count() == 0);
        CHECK(total_sent() == 0);
    }
    SUBCASE("a sender-domain quota shared by two mailboxes") {
        f.eng->set_quota(
            f.admin, quota{quota_scope::sender_domain, "brand.com", {rate_limit::per_day(3)}, {}});
        std::map<std::string, int> by;
        for (int i = 0; i < 10; ++i)
            ++by[f.send(fixture::request("p", nth_recipient(i))).second.mailbox];
        CHECK(by["a"] + by["b"] == 3);
        CHECK(by["c"] == 7);
        CHECK(f.eng->status("a").blocked == ineligible_reason::quota_reached);
        CHECK(f.eng->status("b").blocked == ineligible_reason::quota_reached);
    }
    SUBCASE("a provider quota covers every mailbox on the provider") {
        f.eng->set_quota(f.admin,
                         quota{quota_scope::provider, "capture", {rate_limit::per_hour(4)}, {}});
        for (int i = 0; i < 4; ++i) {
            CHECK_FALSE(f.send(fixture::request("p", nth_recipient(i))).first);
            f.clock->advance(1min);
        }
        auto [ec, r] = f.send(fixture::request("p", "late@example.com"));
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == test_epoch() + 1h);
        // A mailbox on another provider is not affected.
        CHECK_FALSE(f.send(fixture::direct("x", "late@example.com")).first);
        CHECK(total_sent() == 5);
    }
    SUBCASE("a failed attempt releases every level it reserved") {
        f.eng->set_quota(f.admin,
                         quota{quota_scope::provider, "pa", {rate_limit::per_hour(1)}, {}});
        f.eng->set_quota(
            f.admin, quota{quota_scope::sender_domain, "third.com", {rate_limit::per_hour(1)}, {}});
        f.eng->set_quota(f.admin,
                         quota{quota_scope::recipient_domain, "*", {rate_limit::per_hour(1)}, {}});
        fa->fail_nth(1, err(transport_errc::connection_failed));
        CHECK(f.send(fixture::direct("x", "r@once.org")).first == failure::transient);
        CHECK(f.eng->status("x").sent_today == 0);
        CHECK_FALSE(f.send(fixture::direct("x", "r@once.org")).first);
        CHECK(f.send(fixture::direct("x", "s@once.org")).first == errc::no_capacity);
        CHECK(f.eng->status("x").sent_today == 1);
    }
}

TEST_CASE("provider presets applied to a mailbox") {
    fixture f;
    SUBCASE("Google Workspace: 2,000 per rolling day") {
        auto m = f.mailbox("g", "g@brand.com");
        m.apply(presets::google_workspace());
        CHECK(m.limits == std::vector<rate_limit>{rate_limit::per_day(2000)});
        CHECK(m.max_recipients_per_message == 100);
        f.eng->upsert_mailbox(f.admin, m);
        CHECK(f.eng->status("g").effective_daily_cap == 2000);
        for (int i = 0; i < 2000; ++i) {
            REQUIRE_FALSE(f.send(fixture::direct("g", nth_recipient(i))).first);
            if (i == 0) f.clock->advance(1h);
        }
        auto [ec, r] = f.send(fixture::direct("g", "late@example.com"));
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == test_epoch() + 24h);  // rolling: 24 h after the first
        f.clock->set(test_epoch() + 24h);
        CHECK_FALSE(f.send(fixture::direct("g", "late@example.com")).first);
        CHECK(f.send(fixture::direct("g", "later@example.com")).first == errc::no_capacity);
    }
    SUBCASE("Microsoft 365: 30 per minute, 10,000 per day") {
        auto m = f.mailbox("o", "o@brand.com");
        m.apply(presets::microsoft_365());
        f.eng->upsert_mailbox(f.admin, m);
        CHECK(f.eng->status("o").effective_daily_cap == 10000);
        for (int i = 0; i < 30; ++i)
            REQUIRE_FALSE(f.send(fixture::direct("o", nth_recipient(i))).first);
        auto [ec, r] = f.send(fixture::direct("o", "late@example.com"));
        CHECK(ec == errc::no_capacity);
        CHECK(r.retry_at == test_epoch() + 60s);
        f.clock->advance(60s);
        CHECK_FALSE(f.send(fixture::direct("o", "late@example.com")).first);
    }
}

TEST_CASE("a provider preset is a ceiling: it lowers a mailbox's caps, never raises them") {
    fixture f;
    SUBCASE("the mailbox's own per_day(40) stays 40 under Google Workspace") {
        auto m = f.mailbox("g", "g@brand.com", {rate_limit::per_day(40)});
        m.max_recipients_per_message = 10;
        m.apply(presets::google_workspace());
        CHECK(m.limits == std::vector<rate_limit>{rate_limit::per_day(40)});
        CHECK(m.max_recipients_per_message == 10);
        f.eng->upsert_mailbox(f.admin, m);
        CHECK(f.eng->status("g").effective_daily_cap == 40);
        for (int i = 0; i < 40; ++i)
            REQUIRE_FALSE(f.send(fixture::direct("g", nth_recipient(i))).first);
        CHECK(f.send(fixture::direct("g", "late@example.com")).first == errc::no_capacity);
    }
    SUBCASE("a cap above the preset's is lowered to it") {
        auto m = f.mailbox("g", "g@brand.com", {rate_limit::per_day(5000)});
        m.max_recipients_per_message = 500;
        m.apply(presets::google_workspace());
        CHECK(m.limits == std::vector<rate_limit>{rate_limit::per_day(2000)});
        CHECK(m.max_recipients_per_message == 100);
    }
    SUBCASE("a window the mailbox lacks is added, its own windows are kept") {
        auto m =
            f.mailbox("o", "o@brand.com", {rate_limit::per_hour(20), rate_limit::per_day(100)});
        m.apply(presets::microsoft_365());
        CHECK(m.limits == std::vector<rate_limit>{rate_limit::per_hour(20),
                                                  rate_limit::per_day(100),
                                                  rate_limit::per_minute(30)});
        CHECK(m.max_recipients_per_message == 0);
    }
    SUBCASE("a calendar day is another window: both caps are kept") {
        auto m = f.mailbox("g", "g@brand.com", {rate_limit::per_day(3000, window_kind::calendar)});
        m.apply(presets::google_workspace());
        CHECK(m.limits == std::vector<rate_limit>{rate_limit::per_day(3000, window_kind::calendar),
                                                  rate_limit::per_day(2000)});
    }
}

TEST_CASE("status: a daily cap of 0 is 0, no daily cap is none") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("none", "none@brand.com"));
    f.eng->upsert_mailbox(f.admin, f.mailbox("zero", "zero@brand.com",
                                             {rate_limit::per_day(5), rate_limit::per_day(0)}));
    f.eng->upsert_mailbox(f.admin, f.mailbox("both", "both@brand.com",
                                             {rate_limit::per_day(0, window_kind::calendar),
                                              rate_limit::per_day(5)}));
    CHECK_FALSE(f.eng->status("none").effective_daily_cap.has_value());
    CHECK(f.eng->status("zero").effective_daily_cap == std::uint64_t{0});
    CHECK(f.eng->status("both").effective_daily_cap == std::uint64_t{0});
    f.add_pool("p", {"zero"});
    CHECK(f.send(fixture::request("p", "x@example.com")).first == errc::no_capacity);
}

TEST_CASE("no cap frees up when the clock steps back, at any level") {
    struct level {
        const char* name;
        std::function<void(fixture&, std::vector<rate_limit>)> apply;
    };
    const std::vector<level> levels = {
        {"mailbox",
         [](fixture& f, std::vector<rate_limit> l) {
             f.eng->upsert_mailbox(f.admin, f.mailbox("m", "m@brand.com", std::move(l)));
         }},
        {"provider",
         [](fixture& f, std::vector<rate_limit> l) {
             f.eng->set_quota(f.admin, quota{quota_scope::provider, "capture", std::move(l), {}});
         }},
        {"sender domain",
         [](fixture& f, std::vector<rate_limit> l) {
             f.eng->set_quota(f.admin,
                              quota{quota_scope::sender_domain, "brand.com", std::move(l), {}});
         }},
        {"recipient domain",
         [](fixture& f, std::vector<rate_limit> l) {
             f.eng->set_quota(f.admin,
                              quota{quota_scope::recipient_domain, "example.com", std::move(l), {}});
         }},
        {"every recipient domain",
         [](fixture& f, std::vector<rate_limit> l) {
             f.eng->set_quota(f.admin,
                              quota{quota_scope::recipient_domain, "*", std::move(l), {}});
         }},
    };
    const std::vector<std::pair<const char*, rate_limit>> caps = {
        {"rolling day", rate_limit::per_day(5)},
        {"calendar day", rate_limit::per_day(5, window_kind::calendar)},
        {"rolling hour", rate_limit::per_hour(5)},
    };
    for (const auto& lv : levels)
        for (const auto& [cap_name, cap] : caps)
            for (auto back : {std::chrono::seconds(1), std::chrono::seconds(3 * 86400)}) {
                CAPTURE(lv.name);
                CAPTURE(cap_name);
                CAPTURE(back.count());
                db_file db("clockback");
                fixture f(db.path.string());
                f.eng->upsert_mailbox(f.admin, f.mailbox("m", "m@brand.com"));
                lv.apply(f, {cap});
                f.add_pool("p", {"m"});
                int n = 0;
                for (int i = 0; i < 5; ++i) {
                    REQUIRE_FALSE(f.send(fixture::request("p", nth_recipient(n++))).first);
                    f.clock->advance(std::chrono::seconds(10));
                }
                CHECK(f.send(fixture::request("p", nth_recipient(n++))).first ==
                      errc::no_capacity);
                f.clock->set(f.clock->now() - back);
                CHECK(f.send(fixture::request("p", nth_recipient(n++))).first ==
                      errc::no_capacity);
                // A new engine on the same store, started at the earlier time.
                f.eng.reset();
                f.open();
                CHECK(f.send(fixture::request("p", nth_recipient(n++))).first ==
                      errc::no_capacity);
                CHECK(f.capture->sent().size() == 5);
            }
}
