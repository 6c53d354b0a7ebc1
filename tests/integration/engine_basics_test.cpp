#include <mailers/mime.hpp>
#include <thread>

#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;

TEST_CASE("a send through a pool reaches the transport and is recorded") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("outbound", {"rep1"});
    std::vector<event> events;
    f.eng->on_event([&](const event& e) { events.push_back(e); });

    auto [ec, r] = f.send(fixture::request("outbound", "Alice@Example.COM"));
    REQUIRE_FALSE(ec);
    CHECK(r.state == send_state::accepted);
    CHECK(r.mailbox == "rep1");
    CHECK(r.attempts == 1);
    CHECK_FALSE(r.provider_message_id.empty());
    REQUIRE(f.capture->count() == 1);
    auto sent = *f.capture->last();
    CHECK(sent.msg.from.addr_spec() == "rep1@brand.com");
    CHECK(sent.env.rcpt_to == std::vector<std::string>{"Alice@Example.COM"});
    CHECK(sent.msg.message_id == r.message_id);
    CHECK(render_message(sent.msg).has_value());
    f.ioc.restart();
    f.ioc.poll();
    REQUIRE_FALSE(events.empty());
    CHECK(events.back().type == event_type::sent);
    CHECK(events.back().recipient == "alice@example.com");
    CHECK(f.eng->stats().accepted == 1);
}

TEST_CASE("suppressed addresses and domains are never handed off") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    f.eng->suppress(f.admin, suppression_kind::address, "Bob@Example.com",
                    suppression_reason::unsubscribe);
    f.eng->suppress(f.admin, suppression_kind::domain, "blocked.org", suppression_reason::legal);

    CHECK(f.send(fixture::request("p", "bob@example.com")).first == errc::suppressed);
    CHECK(f.send(fixture::request("p", "BOB@EXAMPLE.COM")).first == errc::suppressed);
    CHECK(f.send(fixture::request("p", "anyone@blocked.org")).first == errc::suppressed);
    CHECK(f.send(fixture::request("p", "x@mail.blocked.org")).first == errc::suppressed);
    CHECK_FALSE(f.send(fixture::request("p", "x@notblocked.org")).first);
    CHECK(f.capture->count() == 1);
    CHECK(f.eng->is_suppressed("bob@example.com"));
    auto entry = f.eng->find_suppression("bob@example.com");
    REQUIRE(entry);
    CHECK(entry->reason == suppression_reason::unsubscribe);

    CHECK(f.eng->unsuppress(f.admin, suppression_kind::address, "bob@example.com"));
    CHECK_FALSE(f.send(fixture::request("p", "bob@example.com")).first);
    CHECK(f.eng->verify_audit() == error_code{});
}

TEST_CASE("the same idempotency key sends once") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    auto first = f.send(fixture::request("p", "a@example.com", "order-1"));
    REQUIRE_FALSE(first.first);
    auto second = f.send(fixture::request("p", "a@example.com", "order-1"));
    CHECK(second.first == errc::duplicate);
    CHECK(second.second.duplicate);
    CHECK(second.second.send_id == first.second.send_id);
    CHECK(second.second.state == send_state::accepted);
    CHECK(f.capture->count() == 1);
}

TEST_CASE("a daily cap stops the mailbox and says when it can send again") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com", {rate_limit::per_day(3)}));
    f.add_pool("p", {"rep1"});
    for (int i = 0; i < 3; ++i) {
        CHECK_FALSE(f.send(fixture::request("p", "a" + std::to_string(i) + "@example.com")).first);
        f.clock->advance(std::chrono::minutes(1));
    }
    auto [ec, r] = f.send(fixture::request("p", "late@example.com"));
    CHECK(ec == errc::no_capacity);
    REQUIRE(r.retry_at);
    CHECK(*r.retry_at == test_epoch() + std::chrono::hours(24));
    CHECK(f.capture->count() == 3);
}

TEST_CASE("a rolling cap of one sends exactly one in any 24 hours") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com", {rate_limit::per_day(1)}));
    f.add_pool("p", {"rep1"});
    CHECK_FALSE(f.send(fixture::request("p", "a@example.com")).first);
    f.clock->advance(std::chrono::hours(24) - std::chrono::microseconds(1));
    CHECK(f.send(fixture::request("p", "b@example.com")).first == errc::no_capacity);
    f.clock->advance(std::chrono::microseconds(1));
    CHECK_FALSE(f.send(fixture::request("p", "c@example.com")).first);
    CHECK(f.send(fixture::request("p", "d@example.com")).first == errc::no_capacity);
    CHECK(f.capture->count() == 2);
}

TEST_CASE("bad input gets a clear error and changes nothing") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    auto audit_before = f.eng->audit_log().size();

    auto bad = [&](send_request r, errc expected) {
        auto [ec, res] = f.send(std::move(r));
        CHECK(ec == expected);
        CHECK(res.send_id.empty());
        CHECK_FALSE(res.diag.message.empty());
    };
    auto r = fixture::request("p", "ok@example.com");
    auto x = r;
    x.to = address{"no spaces", "example.com", {}};
    bad(x, errc::invalid_address);
    x = r;
    x.to = address{"a", "exa mple.com", {}};
    bad(x, errc::invalid_address);
    x = r;
    x.subject = "Hi\r\nBcc: victim@example.com";
    bad(x, errc::header_injection);
    x = r;
    x.headers.push_back({"X-Campaign", "a\nb"});
    bad(x, errc::header_injection);
    x = r;
    x.to.display_name = "Eve\r\nBcc: x@y.z";
    bad(x, errc::header_injection);
    x = r;
    x.pool = "nope";
    bad(x, errc::unknown_pool);
    x = r;
    x.mailbox = "rep1";
    bad(x, errc::invalid_argument);
    x = r;
    x.text = std::string(26 * 1024 * 1024, 'a');
    bad(x, errc::message_too_large);

    CHECK(f.capture->count() == 0);
    CHECK(f.eng->audit_log().size() == audit_before);

    // Configuration errors throw and leave the configuration as it was.
    auto m = f.mailbox("rep2", "rep2@brand.com");
    m.from.local = "not an address";
    CHECK_THROWS_AS(f.eng->upsert_mailbox(f.admin, m), exception);
    m = f.mailbox("rep2", "rep2@brand.com");
    m.time_zone = "Mars/Olympus_Mons";
    CHECK_THROWS_AS(f.eng->upsert_mailbox(f.admin, m), exception);
    m.time_zone = "UTC";
    m.weight = 0;
    CHECK_THROWS_AS(f.eng->upsert_mailbox(f.admin, m), exception);
    CHECK_FALSE(f.eng->find_mailbox("rep2"));
    CHECK_THROWS_AS(f.add_pool("q", {"ghost"}), exception);
    CHECK_FALSE(f.eng->find_pool("q"));
    CHECK_THROWS_AS(f.eng->suppress(f.admin, suppression_kind::address, "not an address",
                                    suppression_reason::manual),
                    exception);
    CHECK(f.eng->suppression_count() == 0);
    CHECK(f.eng->audit_log().size() == audit_before);
}

TEST_CASE("a deferred send launched after the engine is gone completes with operation_aborted") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    // The deferred operation holds the engine's state, not the handle.
    auto op = f.eng->async_send(fixture::request("p", "late@example.com"));
    f.eng.reset();
    std::optional<error_code> got;
    std::move(op)([&](error_code ec, send_result) { got = ec; });
    f.ioc.restart();
    f.ioc.run();
    REQUIRE(got);
    CHECK(*got == errc::operation_aborted);
    CHECK(f.capture->count() == 0);
}

TEST_CASE("after cancel(), new sends complete at once with operation_aborted") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    REQUIRE_FALSE(f.send(fixture::request("p", "first@example.com")).first);
    f.eng->cancel();
    CHECK(f.send(fixture::request("p", "second@example.com")).first == errc::operation_aborted);
    CHECK(f.capture->count() == 1);
    // Configuration keeps working.
    f.eng->suppress(f.admin, suppression_kind::address, "x@example.com",
                    suppression_reason::manual);
    CHECK(f.eng->is_suppressed("x@example.com"));
}

TEST_CASE("pipeline latencies count each send that reached the store once per stage") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    REQUIRE_FALSE(f.send(fixture::request("p", "a@example.com")).first);
    REQUIRE_FALSE(f.send(fixture::request("p", "b@example.com")).first);
    f.eng->suppress(f.admin, suppression_kind::address, "c@example.com",
                    suppression_reason::manual);
    CHECK(f.send(fixture::request("p", "c@example.com")).first == errc::suppressed);
    const auto l = f.eng->latencies();
    CHECK(l.decide.total() == 2);
    CHECK(l.reserve.total() == 2);
    CHECK(l.handoff.total() == 2);
    CHECK(l.record.total() == 2);
    CHECK(l.total.total() == 2);
    CHECK(l.total.quantile_us(1.0) >= l.decide.quantile_us(1.0));

    latency_histogram h;
    CHECK(h.quantile_us(0.5) == 0);
    h.counts[0] = 98;  // under 2 µs
    h.counts[3] = 1;   // 8..16 µs
    h.counts[10] = 1;  // 1024..2048 µs
    CHECK(h.total() == 100);
    CHECK(h.quantile_us(0.5) == 2);
    CHECK(h.quantile_us(0.99) == 16);
    CHECK(h.quantile_us(1.0) == 2048);
}

TEST_CASE("two engines changing one workspace at once both return, and each sees the other's") {
    // Each audited change waits for the other engine to apply it, while the
    // other is waiting for its own.
    db_file db("two-engines");
    fixture a(db.path.string());
    auto store_b = open_sqlite_store({db.path.string(), mailers::open_mode::open_or_create});
    engine_params pb;
    pb.storage = store_b;
    pb.clock = a.clock;
    pb.sync_interval = std::chrono::milliseconds(5);
    engine b(a.ioc.get_executor(), std::move(pb));

    constexpr int n = 40;
    std::thread ta([&] {
        for (int i = 0; i < n; ++i)
            a.eng->suppress(a.admin, suppression_kind::address,
                            "a" + std::to_string(i) + "@example.com", suppression_reason::manual);
    });
    std::thread tb([&] {
        for (int i = 0; i < n; ++i)
            b.suppress(a.admin, suppression_kind::address, "b" + std::to_string(i) + "@example.com",
                       suppression_reason::manual);
    });
    ta.join();
    tb.join();
    for (int i = 0; i < n; ++i) {
        CHECK(a.eng->is_suppressed("b" + std::to_string(i) + "@example.com"));
        CHECK(b.is_suppressed("a" + std::to_string(i) + "@example.com"));
    }
    CHECK(a.eng->verify_audit() == error_code{});
}
