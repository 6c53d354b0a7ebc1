#include <fmt/format.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/use_future.hpp>
#include <future>
#include <set>
#include <sstream>
#include <mailers/mime.hpp>
#include <mailers/with_result.hpp>
#include <thread>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"
#include "metrics/exposition.hpp"
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

namespace {

address addr(const std::string& s) {
    auto at = s.find('@');
    return address{s.substr(0, at), s.substr(at + 1), {}};
}

// A fixture with mailbox rep1 in pool "p" and a recipient-domain quota of
// `per_day` on `key`.
void limit_recipient_domain(fixture& f, const std::string& key, std::uint64_t per_day) {
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    quota q;
    q.scope = quota_scope::recipient_domain;
    q.key = key;
    q.limits = {rate_limit::per_day(per_day)};
    f.eng->set_quota(f.admin, q);
}

}  // namespace

TEST_CASE("cc and bcc recipients reach the transport; bcc stays out of the headers") {
    fixture f;
    f.record_events();
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    auto req = fixture::direct("rep1", "alice@example.com");
    req.cc = {addr("carol@example.org"), addr("alice@EXAMPLE.com")};
    req.bcc = {addr("hidden@example.net")};
    req.reply_to = addr("replies@brand.com");

    auto [ec, r] = f.send(std::move(req));
    REQUIRE_FALSE(ec);
    REQUIRE(f.capture->count() == 1);
    auto sent = *f.capture->last();
    CHECK(sent.env.rcpt_to ==
          std::vector<std::string>{"alice@example.com", "carol@example.org", "hidden@example.net"});
    REQUIRE(sent.msg.bcc.size() == 1);
    auto bytes = render_message(sent.msg);
    REQUIRE(bytes.has_value());
    CHECK(bytes->find("carol@example.org") != std::string::npos);
    CHECK(bytes->find("Reply-To: replies@brand.com") != std::string::npos);
    CHECK(bytes->find("hidden@example.net") == std::string::npos);
    CHECK(f.ledger(r.send_id)->recipient == "alice@example.com");
    auto sent_events = f.events_of(event_type::sent);
    REQUIRE(sent_events.size() == 1);
    CHECK(sent_events.front().recipient == "alice@example.com");
}

TEST_CASE("one suppressed cc or bcc recipient refuses the whole send and is named") {
    fixture f;
    f.record_events();
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    f.eng->suppress(f.admin, suppression_kind::address, "carol@example.org",
                    suppression_reason::unsubscribe);
    f.eng->suppress(f.admin, suppression_kind::domain, "blocked.net", suppression_reason::legal);

    auto with_cc = fixture::request("p", "alice@example.com");
    with_cc.cc = {addr("Carol@Example.org")};
    auto [ec, r] = f.send(with_cc);
    CHECK(ec == errc::suppressed);
    CHECK(r.diag.message.find("carol@example.org") != std::string::npos);
    CHECK(r.send_id.empty());

    auto with_bcc = fixture::request("p", "alice@example.com");
    with_bcc.bcc = {addr("someone@mail.blocked.net")};
    auto [ec2, r2] = f.send(with_bcc);
    CHECK(ec2 == errc::suppressed);
    CHECK(r2.diag.message.find("someone@mail.blocked.net") != std::string::npos);

    CHECK(f.capture->count() == 0);
    auto refused = f.events_of(event_type::suppressed);
    REQUIRE(refused.size() == 2);
    CHECK(refused[0].recipient == "alice@example.com");
    CHECK(refused[0].detail.find("carol@example.org") != std::string::npos);
    CHECK(f.eng->stats().suppressed == 2);
}

TEST_CASE("a recipient-domain quota counts every recipient at the domain, cc and bcc included") {
    fixture f;
    limit_recipient_domain(f, "example.com", 3);

    auto two = fixture::request("p", "a@example.com");
    two.cc = {addr("b@example.com"), addr("x@other.org")};
    CHECK_FALSE(f.send(two).first);  // 2 of 3

    auto over = fixture::request("p", "c@example.com");
    over.bcc = {addr("d@example.com")};
    CHECK(f.send(over).first == errc::no_capacity);  // 2 + 2 > 3

    CHECK_FALSE(f.send(fixture::request("p", "c@example.com")).first);  // exactly 3
    CHECK(f.send(fixture::request("p", "e@example.com")).first == errc::no_capacity);
    CHECK(f.capture->count() == 2);
}

TEST_CASE("a \"*\" recipient-domain quota counts each domain's recipients apart") {
    fixture f;
    limit_recipient_domain(f, "*", 2);

    auto three = fixture::request("p", "a@example.com");
    three.cc = {addr("b@example.com"), addr("c@example.com")};
    CHECK(f.send(three).first == errc::no_capacity);  // never fits under 2

    auto mixed = fixture::request("p", "a@example.com");
    mixed.cc = {addr("x@other.org")};
    mixed.bcc = {addr("b@example.com")};
    CHECK_FALSE(f.send(mixed).first);  // example.com 2 of 2, other.org 1 of 2
    CHECK(f.send(fixture::request("p", "c@example.com")).first == errc::no_capacity);
    auto pair = fixture::request("p", "y@other.org");
    pair.cc = {addr("z@other.org")};
    CHECK(f.send(pair).first == errc::no_capacity);
    CHECK_FALSE(f.send(fixture::request("p", "y@other.org")).first);
    CHECK(f.capture->count() == 2);
}

TEST_CASE("more recipients than the mailbox's per-message limit are refused before reserving") {
    fixture f;
    auto small = f.mailbox("small", "small@brand.com");
    small.max_recipients_per_message = 2;
    f.eng->upsert_mailbox(f.admin, small);
    f.add_pool("only-small", {"small"});
    auto req = fixture::direct("small", "a@example.com");
    req.cc = {addr("b@example.com")};
    req.bcc = {addr("c@example.com")};

    auto [ec, r] = f.send(req);
    CHECK(ec == errc::invalid_argument);
    CHECK(r.diag.message.find("limit of 2") != std::string::npos);
    CHECK(r.send_id.empty());
    req.mailbox.clear();
    req.pool = "only-small";
    CHECK(f.send(req).first == errc::invalid_argument);

    // A pool skips the member that cannot carry the list.
    f.eng->upsert_mailbox(f.admin, f.mailbox("big", "big@brand.com"));
    f.add_pool("mixed", {"small", "big"});
    req.pool = "mixed";
    auto [ec2, r2] = f.send(req);
    CHECK_FALSE(ec2);
    CHECK(r2.mailbox == "big");
    CHECK(f.capture->count() == 1);
    CHECK(f.eng->stats().rejected == 2);
}

TEST_CASE("a permanent failure of a send to several recipients suppresses none of them") {
    fixture f;
    auto fi = f.add_faulty_provider("pa");
    auto m = f.mailbox("rep1", "rep1@brand.com");
    m.provider = "pa";
    f.eng->upsert_mailbox(f.admin, m);
    fi->fail_nth(1, make_error_code(transport_errc::recipient_rejected));
    fi->fail_nth(2, make_error_code(transport_errc::recipient_rejected));

    auto req = fixture::direct("rep1", "a@example.com");
    req.cc = {addr("b@example.com")};
    CHECK(f.send(req).first == failure::recipient_permanent);
    CHECK_FALSE(f.eng->is_suppressed("a@example.com"));
    CHECK_FALSE(f.eng->is_suppressed("b@example.com"));

    CHECK(f.send(fixture::direct("rep1", "solo@example.com")).first ==
          failure::recipient_permanent);
    CHECK(f.eng->is_suppressed("solo@example.com"));
}

TEST_CASE("a cc suppressed while its send is reserving is not handed off") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    auto req = fixture::direct("rep1", "alice@example.com");
    req.cc = {addr("late@example.org")};
    auto slot = f.start(std::move(req));
    // Run until the send has passed its decision-time checks and its
    // reservation has left for the store; the reservation's answer waits
    // for the io_context, which does not run while suppress() does.
    f.ioc.restart();
    while (f.eng->latencies().decide.total() == 0) f.ioc.run_one();
    REQUIRE_FALSE(slot->has_value());
    f.eng->suppress(f.admin, suppression_kind::address, "late@example.org",
                    suppression_reason::unsubscribe);

    f.run_until([&] { return slot->has_value(); });
    auto& [ec, r] = **slot;
    CHECK(ec == errc::suppressed);
    CHECK(r.diag.message.find("late@example.org") != std::string::npos);
    CHECK(r.diag.message.find("before hand-off") != std::string::npos);
    CHECK(f.capture->count() == 0);
    CHECK(f.ledger(r.send_id)->state == send_state::failed);
}

TEST_CASE("with_result(use_awaitable): a failed send throws send_error carrying its result") {
    fixture f;
    auto faulty = f.add_faulty_provider("faulty");
    auto m = f.mailbox("rep1", "rep1@brand.com", {rate_limit::per_day(1)});
    m.provider = "faulty";
    f.eng->upsert_mailbox(f.admin, m);
    f.add_pool("p", {"rep1"});
    diagnostics refusal;
    refusal.provider_reply = "550 5.1.1 no such user";
    refusal.enhanced_status = "5.1.1";
    faulty->fail_nth(1, make_error_code(transport_errc::recipient_rejected), refusal);

    std::optional<send_result> accepted;
    std::optional<send_error> rejected, no_capacity;
    bool done = false;
    boost::asio::co_spawn(
        f.ioc,
        [&]() -> boost::asio::awaitable<void> {
            auto token = with_result(boost::asio::use_awaitable);
            try {
                co_await f.eng->async_send(fixture::request("p", "gone@example.com"), token);
            } catch (const send_error& e) {
                rejected = e;
            }
            accepted = co_await f.eng->async_send(fixture::request("p", "a@example.com"), token);
            try {
                co_await f.eng->async_send(fixture::request("p", "late@example.com"), token);
            } catch (const send_error& e) {
                no_capacity = e;
            }
            done = true;
        },
        boost::asio::detached);
    while (!done) f.ioc.run_one();

    REQUIRE(accepted);
    CHECK(accepted->mailbox == "rep1");
    CHECK(accepted->state == send_state::accepted);

    REQUIRE(rejected);
    CHECK(rejected->code() == failure::recipient_permanent);
    CHECK(rejected->result().mailbox == "rep1");
    CHECK_FALSE(rejected->result().send_id.empty());
    CHECK(rejected->result().state == send_state::failed);
    CHECK(rejected->result().diag.enhanced_status == "5.1.1");
    CHECK(rejected->diag().provider_reply == "550 5.1.1 no such user");

    // The refused send gave its unit back; the accepted one used the cap of
    // one, so the result says when to try again.
    REQUIRE(no_capacity);
    CHECK(no_capacity->code() == errc::no_capacity);
    CHECK(no_capacity->result().retry_at == test_epoch() + std::chrono::hours(24));
}

TEST_CASE("with_result with a callback: a null exception_ptr and the result on success") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    f.eng->suppress(f.admin, suppression_kind::address, "no@example.com",
                    suppression_reason::manual);
    std::vector<std::pair<std::exception_ptr, send_result>> got;
    auto keep = [&](std::exception_ptr ex, send_result r) { got.emplace_back(ex, std::move(r)); };
    f.eng->async_send(fixture::request("p", "yes@example.com"), with_result(keep));
    f.eng->async_send(fixture::request("p", "no@example.com"), with_result(keep));
    while (got.size() < 2) f.ioc.run_one();

    const auto& ok = got[0].first ? got[1] : got[0];
    const auto& refused = got[0].first ? got[0] : got[1];
    CHECK_FALSE(ok.first);
    CHECK(ok.second.mailbox == "rep1");
    REQUIRE(refused.first);
    try {
        std::rethrow_exception(refused.first);
    } catch (const send_error& e) {
        CHECK(e.code() == errc::suppressed);
        CHECK(e.result().send_id == refused.second.send_id);
    } catch (...) {
        FAIL("the exception is not a send_error");
    }
}

TEST_CASE("with_result(use_future): get() throws send_error carrying the result") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com", {rate_limit::per_day(1)}));
    f.add_pool("p", {"rep1"});
    // use_future completes on whichever thread finishes the send, so the
    // loop polls the engine's executor instead of blocking in it.
    auto wait = [&](std::future<send_result>& fut) {
        while (fut.wait_for(std::chrono::milliseconds(1)) != std::future_status::ready) {
            f.ioc.restart();
            f.ioc.poll();
        }
    };
    auto first = f.eng->async_send(fixture::request("p", "a@example.com"),
                                   with_result(boost::asio::use_future));
    wait(first);
    CHECK(first.get().mailbox == "rep1");

    auto second = f.eng->async_send(fixture::request("p", "b@example.com"),
                                    with_result(boost::asio::use_future));
    wait(second);
    try {
        second.get();
        FAIL("a send past the cap succeeded");
    } catch (const send_error& e) {
        CHECK(e.code() == errc::no_capacity);
        CHECK(e.result().retry_at == test_epoch() + std::chrono::hours(24));
    }
}

TEST_CASE("a raw message goes as given from its named mailbox; its envelope is checked") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    const std::string raw =
        "From: Rep <rep1@Brand.com>\r\nTo: a@example.com\r\nMessage-ID: <host-1@brand.com>\r\n"
        "Subject: signed by the host\r\n\r\nbody\r\n";
    const auto raw_request = [&](std::string bytes) {
        auto r = fixture::direct("rep1", "a@example.com");
        r.subject.clear();
        r.text.clear();
        r.raw = std::move(bytes);
        return r;
    };

    auto req = raw_request(raw);
    req.bcc = {addr("hidden@example.org")};
    auto [ec, r] = f.send(req);
    REQUIRE_MESSAGE(!ec, r.diag.message);
    CHECK(r.message_id == "host-1@brand.com");
    REQUIRE(f.capture->count() == 1);
    auto sent = *f.capture->last();
    CHECK(sent.raw == raw);
    CHECK(sent.env.rcpt_to == std::vector<std::string>{"a@example.com", "hidden@example.org"});
    CHECK(f.ledger(r.send_id)->message_id == "host-1@brand.com");

    f.eng->suppress(f.admin, suppression_kind::address, "hidden@example.org",
                    suppression_reason::unsubscribe);
    auto [sec, sr] = f.send(req);
    CHECK(sec == errc::suppressed);
    CHECK(sr.diag.message.find("hidden@example.org") != std::string::npos);

    const auto refused = [&](send_request bad, const std::string& why) {
        auto [bec, br] = f.send(std::move(bad));
        CHECK(bec == errc::invalid_argument);
        CHECK_MESSAGE(br.diag.message.find(why) != std::string::npos, br.diag.message);
    };
    auto pooled = raw_request(raw);
    pooled.mailbox.clear();
    pooled.pool = "p";
    refused(pooled, "named mailbox");
    auto with_subject = raw_request(raw);
    with_subject.subject = "Hello";
    refused(with_subject, "must be empty");
    refused(raw_request("From: other@brand.com\r\nMessage-ID: <x@brand.com>\r\n\r\nbody\r\n"),
            "not from mailbox 'rep1'");
    refused(raw_request("From: rep1@brand.com\r\n\r\nbody\r\n"), "Message-ID");
    refused(raw_request("From: rep1@brand.com\nMessage-ID: <x@brand.com>\n\nbody\n"), "CRLF");
    CHECK(f.capture->count() == 1);
}

TEST_CASE("a ledger row records the suppression state its hand-off was checked against") {
    fixture f;
    auto fi = f.add_faulty_provider("pa");
    auto m = f.mailbox("rep1", "rep1@brand.com");
    m.provider = "pa";
    f.eng->upsert_mailbox(f.admin, m);
    fi->fail_nth(3, make_error_code(transport_errc::recipient_rejected));
    fi->unknown_nth(4);
    // The seq the store gave a suppression: the newest change once it returns.
    const auto suppress = [&](const std::string& a) {
        f.eng->suppress(f.admin, suppression_kind::address, a, suppression_reason::unsubscribe);
        const auto seq = f.store->changes_since("default", 0).seq;
        const auto cs = f.store->changes_since("default", seq - 1);
        REQUIRE(cs.suppressions.size() == 1);
        CHECK(cs.suppressions.front().value == a);
        return seq;
    };
    const auto send_row = [&](const std::string& to, send_state expected) {
        auto [ec, r] = f.send(fixture::direct("rep1", to));
        auto row = f.ledger(r.send_id);
        REQUIRE(row);
        CHECK(row->state == expected);
        return *row;
    };

    const auto first = suppress("gone@example.com");
    const auto before = send_row("a@example.com", send_state::accepted);
    CHECK(before.suppression_seq >= first);
    const auto second = suppress("later@example.com");
    CHECK(before.suppression_seq < second);  // checked before the later one existed

    const auto after = send_row("b@example.com", send_state::accepted);
    CHECK(after.suppression_seq >= second);
    CHECK(after.suppression_seq > before.suppression_seq);
    CHECK(send_row("c@example.com", send_state::failed).suppression_seq >= second);
    CHECK(send_row("d@example.com", send_state::unknown).suppression_seq >= second);

    // A hand-off refused for a suppression made after the decision records
    // the seq that refusal saw.
    auto req = fixture::direct("rep1", "e@example.com");
    req.cc = {addr("late@example.org")};
    const auto decided = f.eng->latencies().decide.total();
    auto slot = f.start(std::move(req));
    f.ioc.restart();
    while (f.eng->latencies().decide.total() == decided) f.ioc.run_one();
    REQUIRE_FALSE(slot->has_value());
    const auto third = suppress("late@example.org");
    f.run_until([&] { return slot->has_value(); });
    CHECK((*slot)->first == errc::suppressed);
    const auto refused = f.ledger((*slot)->second.send_id);
    REQUIRE(refused);
    CHECK(refused->state == send_state::failed);
    CHECK(refused->suppression_seq >= third);
}

TEST_CASE("a send decided before the suppression rules change is checked under the new rules") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.eng->suppress(f.admin, suppression_kind::address, "user@example.com",
                    suppression_reason::unsubscribe);
    REQUIRE_FALSE(f.eng->is_suppressed("user+news@example.com"));
    auto slot = f.start(fixture::direct("rep1", "user+news@example.com"));
    f.ioc.restart();
    while (f.eng->latencies().decide.total() == 0) f.ioc.run_one();
    REQUIRE_FALSE(slot->has_value());

    // Another process turns plus-tag folding on between the decision and the
    // hand-off ("user@example.com" is already folded, so nothing is re-keyed).
    std::optional<detail::suppression_settings> settings;
    for (const auto& o : f.store->load("default", time_point{}).objects)
        if (o.kind == "settings" && o.id == "suppression")
            settings = detail::suppression_settings_from_json(o.json).value();
    REQUIRE(settings);
    settings->options.fold_plus_tags = true;
    std::vector<store_op> ops;
    ops.push_back(store_ops::put_object{
        stored_object{"settings", "suppression", detail::to_json(*settings)}});
    f.store->commit("default", ops);
    // A change of this engine's own reads the feed back past the other's.
    f.eng->suppress(f.admin, suppression_kind::address, "other@example.org",
                    suppression_reason::manual);
    REQUIRE(f.eng->is_suppressed("user+news@example.com"));

    f.run_until([&] { return slot->has_value(); });
    auto& [ec, r] = **slot;
    CHECK(ec == errc::suppressed);
    CHECK(r.diag.message.find("before hand-off") != std::string::npos);
    CHECK(f.capture->count() == 0);
    CHECK(f.ledger(r.send_id)->state == send_state::failed);
}

TEST_CASE("a hand-off while this engine applies its own suppression records the state it saw") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    auto req = fixture::direct("rep1", "a@example.com");
    req.cc = {addr("late@example.org")};
    auto slot = f.start(std::move(req));
    f.ioc.restart();
    while (f.eng->latencies().decide.total() == 0) f.ioc.run_one();
    REQUIRE_FALSE(slot->has_value());

    // The hand-off gets its turn once suppress() has put the entry in
    // memory and before the engine names its change as applied.
    detail::own_change_applied_hook = [&] {
        // Bounded: a hand-off that waits the change out keeps coming back.
        f.ioc.restart();
        for (int i = 0; i < 1000 && f.ioc.poll_one() != 0; ++i) {
        }
    };
    struct unhook {
        ~unhook() { detail::own_change_applied_hook = nullptr; }
    } guard;
    f.eng->suppress(f.admin, suppression_kind::address, "late@example.org",
                    suppression_reason::unsubscribe);
    detail::own_change_applied_hook = nullptr;
    const auto seq = f.store->changes_since("default", 0).seq;

    f.run_until([&] { return slot->has_value(); });
    auto& [ec, r] = **slot;
    CHECK(ec == errc::suppressed);
    CHECK(f.capture->count() == 0);
    const auto row = f.ledger(r.send_id);
    REQUIRE(row);
    CHECK(row->state == send_state::failed);
    // Refused for the suppression at `seq`: its proof must say it saw it.
    CHECK(row->suppression_seq == seq);
}

TEST_CASE("the pick sees a capped domain among the cc and bcc recipients, not only the to") {
    fixture f;
    limit_recipient_domain(f, "capped.org", 1);

    auto first = fixture::request("p", "a@example.com");
    first.cc = {addr("x@capped.org")};
    REQUIRE_FALSE(f.send(first).first);

    // Memory counted the cc's domain, so the store is not asked in vain and
    // the answer says when the domain frees up.
    const auto asked = f.eng->latencies().reserve.total();
    auto second = fixture::request("p", "b@example.com");
    second.bcc = {addr("y@capped.org")};
    auto [ec, r] = f.send(second);
    CHECK(ec == errc::no_capacity);
    CHECK(r.retry_at == test_epoch() + std::chrono::hours(24));
    CHECK(f.eng->latencies().reserve.total() == asked);
    CHECK(f.capture->count() == 1);
    CHECK_FALSE(f.send(fixture::request("p", "b@example.com")).first);
}

TEST_CASE("the envelope sender is the sending mailbox's address, its domain as an A-label") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@Brand.com"));
    f.eng->upsert_mailbox(f.admin, f.mailbox("idn", "rep@bücher.example"));
    f.add_pool("p", {"rep1"});
    REQUIRE_FALSE(f.send(fixture::request("p", "a@example.com")).first);
    CHECK(f.capture->last()->env.mail_from == "rep1@Brand.com");
    CHECK(f.capture->last()->msg.from.addr_spec() == "rep1@Brand.com");
    // The same form as the recipients': a transport needs no SMTPUTF8 for it.
    auto idn = fixture::direct("idn", "b@bücher.example");
    REQUIRE_FALSE(f.send(idn).first);
    CHECK(f.capture->last()->env.mail_from == "rep@xn--bcher-kva.example");
    CHECK(f.capture->last()->env.rcpt_to == std::vector<std::string>{"b@xn--bcher-kva.example"});
}

namespace {

// Another engine on the same SQLite file, as a second process of the
// workspace would run it.
std::unique_ptr<engine> second_engine(fixture& a, const db_file& db) {
    engine_params p;
    p.storage = open_sqlite_store({db.path.string(), mailers::open_mode::existing});
    p.clock = a.clock;
    p.sync_interval = std::chrono::milliseconds(5);
    return std::make_unique<engine>(a.ioc.get_executor(), std::move(p));
}

}  // namespace

TEST_CASE("pools, quotas, pauses and folding rules can be listed, in every engine of a workspace") {
    db_file db("listing");
    fixture a(db.path.string());
    auto peer = second_engine(a, db);
    engine& b = *peer;

    CHECK(a.eng->pools().empty());
    CHECK(b.quotas().empty());
    CHECK(b.pauses().empty());

    a.eng->upsert_mailbox(a.admin, a.mailbox("rep2", "rep2@brand.com"));
    a.eng->upsert_mailbox(a.admin, a.mailbox("rep1", "rep1@brand.com"));
    a.add_pool("zeta", {"rep1"});
    a.add_pool("alpha", {"rep1", "rep2"});
    quota q;
    q.scope = quota_scope::recipient_domain;
    q.key = "gmail.com";
    q.limits = {rate_limit::per_day(50)};
    a.eng->set_quota(a.admin, q);
    quota p;
    p.scope = quota_scope::provider;
    p.key = "ses";
    p.limits = {rate_limit::per_hour(10)};
    a.eng->set_quota(a.admin, p);

    principal ops{"ops-1", "Ops"};
    a.eng->pause(ops, {pause_scope::mailbox, "rep2"}, "warming issue");
    a.clock->advance(std::chrono::seconds(5));
    a.eng->pause(a.admin, {pause_scope::sender_domain, "Brand.COM"}, "blocklisted");
    a.eng->pause(a.admin, {pause_scope::workspace, ""});

    for (engine* e : {a.eng.get(), &b}) {
        auto pools = e->pools();
        REQUIRE(pools.size() == 2);
        CHECK(pools[0].id == "alpha");
        CHECK(pools[0].mailboxes == std::vector<std::string>{"rep1", "rep2"});
        CHECK(pools[1].id == "zeta");

        auto quotas = e->quotas();
        REQUIRE(quotas.size() == 2);
        CHECK(quotas[0].scope == quota_scope::provider);
        CHECK(quotas[0].key == "ses");
        CHECK(quotas[1].key == "gmail.com");
        CHECK(quotas[1].limits == q.limits);

        auto pauses = e->pauses();
        REQUIRE(pauses.size() == 3);
        CHECK(pauses[0].target == pause_target{pause_scope::workspace, ""});
        CHECK(pauses[1].target == pause_target{pause_scope::mailbox, "rep2"});
        CHECK(pauses[1].reason == "warming issue");
        CHECK(pauses[1].actor == "ops-1");
        CHECK(pauses[1].since == test_epoch());
        // Sender-domain pauses are listed by the normalised domain.
        CHECK(pauses[2].target == pause_target{pause_scope::sender_domain, "brand.com"});
        CHECK(pauses[2].since == test_epoch() + std::chrono::seconds(5));

        CHECK(e->suppression_rules() == suppression_options{});
    }

    b.resume(a.admin, {pause_scope::workspace, ""});
    a.eng->remove_pool(a.admin, "zeta");
    a.eng->remove_quota(a.admin, quota_scope::provider, "ses");
    for (engine* e : {a.eng.get(), &b}) {
        CHECK(e->pauses().size() == 2);
        CHECK(e->pools().size() == 1);
        CHECK(e->quotas().size() == 1);
    }
}

TEST_CASE("sequences are validated when saved, audited, and reach every engine of a workspace") {
    db_file db("sequences");
    fixture a(db.path.string());
    auto peer = second_engine(a, db);
    engine& b = *peer;

    a.eng->upsert_mailbox(a.admin, a.mailbox("rep1", "rep1@brand.com"));
    a.eng->upsert_mailbox(a.admin, a.mailbox("founder", "ceo@brand.com"));
    a.add_pool("sdr", {"rep1"});

    sequence_config c;
    c.id = "q4";
    c.name = "Q4";
    c.holidays = {"2026-12-25"};
    c.on_enrolled_twice = enrollment_conflict::merge;
    c.reply_stops = stop_scope::this_sequence;
    sequence_step s1;
    s1.content = {"Hi {{first_name|there}}", "Hello {{first_name}}", "<p>Hello</p>"};
    s1.sender = {sender_rule_kind::owner, "", "sdr"};
    sequence_step s2;
    s2.delay = {sequence_delay::unit::business_days, 2};
    s2.content.text = "Bump";
    s2.sender = {sender_rule_kind::previous_step, "", "sdr"};
    s2.threading = step_threading::reply;
    sequence_step s3;
    s3.delay = {sequence_delay::unit::hours, 36};
    s3.content = {"From the founder", "Hi", ""};
    s3.sender = {sender_rule_kind::mailbox, "founder", ""};
    c.steps = {s1, s2, s3};

    SUBCASE("refusals change nothing") {
        auto audit_before = a.eng->audit_log().size();
        auto bad = c;
        bad.steps[1].content.text = "{{#open}}never closed";
        CHECK_THROWS_WITH_AS(a.eng->upsert_sequence(a.admin, bad),
                             doctest::Contains("step 2 content: text, line 1"), exception);
        bad = c;
        bad.steps[2].sender.id = "nobody";
        try {
            a.eng->upsert_sequence(a.admin, bad);
            FAIL("accepted a sequence naming an unknown mailbox");
        } catch (const exception& e) {
            CHECK(e.code() == make_error_code(errc::unknown_mailbox));
        }
        bad = c;
        bad.steps[0].sender.fallback_pool = "nope";
        try {
            a.eng->upsert_sequence(a.admin, bad);
            FAIL("accepted a sequence naming an unknown pool");
        } catch (const exception& e) {
            CHECK(e.code() == make_error_code(errc::unknown_pool));
        }
        CHECK(a.eng->audit_log().size() == audit_before);
        CHECK(a.eng->sequences().empty());
        CHECK(!b.find_sequence("q4"));
    }

    SUBCASE("saved, seen by the other engine and by a restart, then removed") {
        a.eng->upsert_sequence(a.admin, c);
        for (engine* e : {a.eng.get(), &b}) {
            auto all = e->sequences();
            REQUIRE(all.size() == 1);
            CHECK(all[0] == c);
            auto found = e->find_sequence("q4");
            REQUIRE(found);
            CHECK(found->size() == 3);
        }
        auto log = a.eng->audit_log();
        CHECK(log.back().action == "sequence.upsert");
        CHECK(log.back().resource_id == "q4");

        {
            auto store_c = open_sqlite_store({db.path.string(), mailers::open_mode::existing});
            engine_params pc;
            pc.storage = store_c;
            pc.clock = a.clock;
            engine restarted(a.ioc.get_executor(), std::move(pc));
            REQUIRE(restarted.sequences().size() == 1);
            CHECK(restarted.sequences()[0] == c);
        }

        b.remove_sequence(a.admin, "q4");
        CHECK(a.eng->sequences().empty());
        CHECK(!a.eng->find_sequence("q4"));
        CHECK_THROWS_AS(a.eng->remove_sequence(a.admin, "q4"), exception);
        CHECK(a.eng->verify_audit() == error_code{});
    }
}

namespace {

struct webhook_body {
    std::string body;
    std::vector<http_header> headers{{"Content-Type", "application/json"}};
    webhook_request view() const { return {"POST", headers, body}; }
};

webhook_body postmark_record(const std::string& record_type, const std::string& type,
                             const std::string& email, const std::string& send_id, int id) {
    webhook_body b;
    b.body = fmt::format(
        R"({{"RecordType":"{}","ID":{},"Type":"{}","MessageID":"pm-{}","Email":"{}",)"
        R"("Details":"smtp;550 5.1.1 no such user","BouncedAt":"2026-11-25T12:00:00Z",)"
        R"("Metadata":{{"mailers_send_id":"{}"}}}})",
        record_type, id, type, id, email, send_id);
    return b;
}

}  // namespace

TEST_CASE("provider webhooks suppress hard bounces, complaints and unsubscribes, once") {
    db_file db("ingest");
    fixture a(db.path.string());
    auto peer = second_engine(a, db);
    engine& b = *peer;

    a.eng->upsert_mailbox(a.admin, a.mailbox("rep1", "rep1@brand.com"));
    a.add_pool("outbound", {"rep1"});
    auto [ec, sent] = a.send(fixture::request("outbound", "ana@prospect.example"));
    REQUIRE_FALSE(ec);
    std::vector<event> seen;
    a.eng->on_event([&](const event& e) { seen.push_back(e); });

    webhook_params unverified;
    unverified.verify = false;

    SUBCASE("a hard bounce suppresses its recipient, in every engine, and a redelivery changes "
            "nothing") {
        auto body = postmark_record("Bounce", "HardBounce", "Ana@Prospect.example", sent.send_id, 1);
        auto r = a.eng->ingest_webhook(webhook_provider::postmark, body.view(), unverified);
        CHECK(r.webhook.http_status == 200);
        CHECK(r.suppressed == 1);
        CHECK(r.already_suppressed == 0);
        REQUIRE(r.webhook.events.size() == 1);
        const auto& ev = r.webhook.events[0];
        CHECK(ev.mailbox == "rep1");
        CHECK(ev.pool == "outbound");
        CHECK(ev.send_id == sent.send_id);
        CHECK(a.eng->is_suppressed("ana@prospect.example"));
        CHECK(b.is_suppressed("ana@prospect.example"));
        auto entry = a.eng->find_suppression("ana@prospect.example");
        REQUIRE(entry);
        CHECK(entry->reason == suppression_reason::hard_bounce);
        CHECK(entry->source == "postmark-webhook");
        auto log = a.eng->audit_log();
        CHECK(log.back().action == "suppression.add");
        CHECK(log.back().actor == "webhook:postmark");

        auto again = a.eng->ingest_webhook(webhook_provider::postmark, body.view(), unverified);
        CHECK(again.webhook.http_status == 200);
        CHECK(again.suppressed == 0);
        CHECK(again.already_suppressed == 0);
        CHECK(again.duplicates == 1);
        CHECK(a.eng->audit_log().size() == log.size());
        CHECK(a.eng->find_suppression("ana@prospect.example") == entry);

        a.ioc.restart();
        a.ioc.poll();
        std::size_t bounced = 0;
        for (const auto& e : seen) bounced += e.type == event_type::bounced;
        CHECK(bounced == 1);
        CHECK(a.eng->verify_audit() == error_code{});
    }

    SUBCASE("complaints and unsubscribes suppress with their own reason; soft bounces do not") {
        auto soft = postmark_record("Bounce", "SoftBounce", "bo@prospect.example", "", 2);
        auto r = a.eng->ingest_webhook(webhook_provider::postmark, soft.view(), unverified);
        CHECK(r.suppressed == 0);
        CHECK(!a.eng->is_suppressed("bo@prospect.example"));

        auto complaint = postmark_record("SpamComplaint", "SpamComplaint", "cy@prospect.example", "", 3);
        r = a.eng->ingest_webhook(webhook_provider::postmark, complaint.view(), unverified);
        CHECK(r.suppressed == 1);
        CHECK(a.eng->find_suppression("cy@prospect.example")->reason == suppression_reason::complaint);

        webhook_body unsub;
        unsub.body =
            R"({"RecordType":"SubscriptionChange","ID":4,"MessageID":"pm-4","Recipient":"di@prospect.example",)"
            R"("SuppressSending":true,"SuppressionReason":"ManualSuppression","ChangedAt":"2026-11-25T12:00:00Z"})";
        r = a.eng->ingest_webhook(webhook_provider::postmark, unsub.view(), unverified);
        CHECK(r.suppressed == 1);
        CHECK(a.eng->find_suppression("di@prospect.example")->reason == suppression_reason::unsubscribe);
    }

    SUBCASE("a tag naming no send of this workspace is not trusted") {
        auto body = postmark_record("Bounce", "HardBounce", "ed@prospect.example", "987654", 5);
        auto r = a.eng->ingest_webhook(webhook_provider::postmark, body.view(), unverified);
        REQUIRE(r.webhook.events.size() == 1);
        CHECK(r.webhook.events[0].send_id.empty());
        CHECK(r.webhook.events[0].mailbox.empty());
        CHECK(r.suppressed == 1);
    }

    SUBCASE("a request that fails verification changes nothing") {
        auto body = postmark_record("Bounce", "HardBounce", "fy@prospect.example", "", 6);
        webhook_params strict;
        strict.postmark.basic_user = "hook";
        strict.postmark.basic_password = "s3cret";
        auto before = a.eng->audit_log().size();
        auto r = a.eng->ingest_webhook(webhook_provider::postmark, body.view(), strict);
        CHECK(r.webhook.http_status == 401);
        CHECK(r.webhook.events.empty());
        CHECK(r.suppressed == 0);
        CHECK(!a.eng->is_suppressed("fy@prospect.example"));
        CHECK(a.eng->audit_log().size() == before);
    }
}

namespace {

// The value of the first header field `name` in a rendered message, with
// folding undone.
std::string header_of(const std::string& rendered, const std::string& name) {
    auto at = rendered.find("\r\n" + name + ":");
    if (at == std::string::npos) return {};
    at += name.size() + 3;
    std::string out;
    for (;;) {
        auto end = rendered.find("\r\n", at);
        out += rendered.substr(at, end - at);
        if (end + 2 >= rendered.size() || (rendered[end + 2] != ' ' && rendered[end + 2] != '\t'))
            break;
        at = end + 2;
    }
    auto first = out.find_first_not_of(' ');
    return first == std::string::npos ? "" : out.substr(first);
}

}  // namespace

TEST_CASE("one-click unsubscribe: every message carries a signed link that suppresses its recipient") {
    fixture f;
    engine_params p;
    p.storage = f.store;
    p.clock = f.clock;
    p.unsubscribe.url = "https://mail.brand.example/unsubscribe";
    p.unsubscribe.secret = "a-secret-of-at-least-16-bytes";
    p.unsubscribe.mailto = "unsubscribe@brand.example";
    engine e(f.ioc.get_executor(), p);
    e.add_provider(f.admin, "capture", f.capture);
    e.upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    pool_config pool;
    pool.id = "p";
    pool.mailboxes = {"rep1"};
    e.upsert_pool(f.admin, pool);

    std::optional<std::pair<error_code, send_result>> got;
    e.async_send(fixture::request("p", "Ana@Prospect.example"),
                 [&](error_code ec, send_result r) { got.emplace(ec, std::move(r)); });
    f.ioc.restart();
    while (!got) f.ioc.run_one();
    REQUIRE_FALSE(got->first);
    auto sent = f.capture->last();
    REQUIRE(sent);
    auto rendered = render_message(sent->msg);
    REQUIRE(rendered.has_value());

    // RFC 8058 section 3.1: one HTTPS URI (a mailto besides is allowed) and
    // exactly List-Unsubscribe=One-Click.
    auto list = header_of(*rendered, "List-Unsubscribe");
    CHECK(header_of(*rendered, "List-Unsubscribe-Post") == "List-Unsubscribe=One-Click");
    CHECK(list.find("<mailto:unsubscribe@brand.example>") != std::string::npos);
    auto https = list.find("<https://mail.brand.example/unsubscribe?t=");
    REQUIRE(https != std::string::npos);
    auto token = list.substr(https + 42, list.find('>', https) - https - 42);

    SUBCASE("the token suppresses the recipient once, in this workspace") {
        auto r = e.unsubscribe(token);
        CHECK(r.status == unsubscribe_token_status::valid);
        CHECK(r.recipient == "ana@prospect.example");
        CHECK(r.send_id == got->second.send_id);
        CHECK(r.suppressed);
        CHECK(e.is_suppressed("ana@prospect.example"));
        CHECK(e.find_suppression("ana@prospect.example")->reason == suppression_reason::unsubscribe);
        CHECK(e.audit_log().back().actor == "one-click");
        auto audit = e.audit_log().size();
        auto again = e.unsubscribe(token);
        CHECK(again.already);
        CHECK(!again.suppressed);
        CHECK(e.audit_log().size() == audit);
        // Counted once, for the send's mailbox and pool (docs/rules.md).
        const auto today = utc_day(f.clock->now());
        for (auto [scope, id] : {std::pair{count_scope::mailbox, std::string("rep1")},
                                 std::pair{count_scope::pool, std::string("p")}}) {
            const auto day = e.daily_counts(scope, id, today, today).at(0);
            CHECK(day[count_metric::unsubscribed] == 1);
            CHECK(day[count_metric::sent] == 1);
        }
    }
    SUBCASE("an altered, expired or foreign token changes nothing") {
        auto altered = token;
        altered[5] = altered[5] == 'A' ? 'B' : 'A';
        CHECK(e.unsubscribe(altered).status != unsubscribe_token_status::valid);
        CHECK(e.unsubscribe("not a token").status == unsubscribe_token_status::malformed);
        unsubscribe_claims other{"another-workspace", "ana@prospect.example", 1,
                                 f.clock->now() + std::chrono::hours(1)};
        CHECK(e.unsubscribe(make_unsubscribe_token(other, p.unsubscribe.secret)).status ==
              unsubscribe_token_status::forged);
        f.clock->advance(std::chrono::hours(24 * 366));
        auto late = e.unsubscribe(token);
        CHECK(late.status == unsubscribe_token_status::expired);
        CHECK(!late.suppressed);
        CHECK(!e.is_suppressed("ana@prospect.example"));
    }
    SUBCASE("settings that cannot work are refused when the engine is made") {
        auto bad = p;
        bad.unsubscribe.url = "http://mail.brand.example/unsubscribe";
        CHECK_THROWS_AS(engine(f.ioc.get_executor(), bad), exception);
        bad = p;
        bad.unsubscribe.secret = "short";
        CHECK_THROWS_AS(engine(f.ioc.get_executor(), bad), exception);
    }
}

TEST_CASE("a bounce message fetched from a mailbox suppresses a hard-bounced recipient") {
    fixture f;
    const std::string dsn =
        "From: MAILER-DAEMON@mx.brand.example\r\nMessage-ID: <r-1@mx.brand.example>\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: text/plain\r\n\r\nUndeliverable.\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.brand.example\r\n\r\n"
        "Final-Recipient: rfc822; gone@prospect.example\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n"
        "Final-Recipient: rfc822; full@prospect.example\r\nAction: failed\r\nStatus: 4.2.2\r\n"
        "Diagnostic-Code: smtp; 452 4.2.2 mailbox full\r\n\r\n"
        "--b\r\nContent-Type: text/rfc822-headers\r\n\r\nMessage-ID: <m-9@brand.com>\r\n\r\n--b--\r\n";
    auto r = f.eng->ingest_delivery_report(dsn);
    REQUIRE(r.report.recognised);
    CHECK(r.report.events.size() == 2);
    CHECK(r.suppressed == 1);
    CHECK(f.eng->is_suppressed("gone@prospect.example"));
    CHECK(!f.eng->is_suppressed("full@prospect.example"));
    CHECK(f.eng->find_suppression("gone@prospect.example")->source == "bounce-message");
    CHECK(f.eng->audit_log().back().actor == "bounce-message");
    auto again = f.eng->ingest_delivery_report(dsn);
    CHECK(again.suppressed == 0);
    CHECK(again.duplicates == 2);

    auto audit = f.eng->audit_log().size();
    auto not_a_bounce = f.eng->ingest_delivery_report("Subject: Out of office\r\n\r\nAway.\r\n");
    CHECK(!not_a_bounce.report.recognised);
    CHECK(f.eng->audit_log().size() == audit);
}

TEST_CASE("access control: scoped grants, audited refusals, no escalation, every engine alike") {
    db_file db("access");
    fixture a(db.path.string());
    auto peer = second_engine(a, db);
    engine& b = *peer;

    a.eng->upsert_mailbox(a.admin, a.mailbox("rep-emea", "emea@brand.com"));
    a.eng->upsert_mailbox(a.admin, a.mailbox("rep-us", "us@brand.com"));
    a.add_pool("sdr-emea", {"rep-emea"});
    a.add_pool("sdr-us", {"rep-us"});

    const principal root{"root", "Admin"};
    const principal bob{"bob", "Bob"};
    const principal eve{"eve", "Eve"};
    auto is_denied = [](auto&& fn) {
        try {
            fn();
        } catch (const exception& e) {
            return e.code() == make_error_code(errc::permission_denied);
        }
        return false;
    };

    // Turning it on without anyone able to change it is refused.
    CHECK_THROWS_AS(a.eng->set_access_control(root, true), exception);
    a.eng->put_role(root, {"admin", {permission::manage_access}});
    a.eng->put_role(root, {"pauser", {permission::pause, permission::resume}});
    // manage_access counts only over the whole workspace.
    CHECK_THROWS_AS(a.eng->grant_access(root, {"bob", "admin", {access_scope::kind::pool, "sdr-emea"}}),
                    exception);
    a.eng->grant_access(root, {"root", "admin", {}});
    a.eng->grant_access(root, {"bob", "pauser", {access_scope::kind::pool, "sdr-emea"}});
    a.eng->set_access_control(root, true);
    CHECK(b.access_control().enabled);

    // Bob may pause and resume the mailboxes of sdr-emea, nothing else, in
    // either engine.
    for (engine* e : {a.eng.get(), &b}) {
        e->pause(bob, {pause_scope::mailbox, "rep-emea"}, "bounces");
        e->resume(bob, {pause_scope::mailbox, "rep-emea"});
        e->pause(bob, {pause_scope::pool, "sdr-emea"}, "bounces");
        e->resume(bob, {pause_scope::pool, "sdr-emea"});
        CHECK(is_denied([&] { e->pause(bob, {pause_scope::mailbox, "rep-us"}, "x"); }));
        CHECK(is_denied([&] { e->pause(bob, {pause_scope::workspace, ""}, "x"); }));
        CHECK(is_denied([&] {
            e->suppress(bob, suppression_kind::address, "a@b.example", suppression_reason::manual);
        }));
    }
    // Refusals are audited without waiting; flush() waits for them.
    a.eng->flush();
    b.flush();
    auto log = a.eng->audit_log();
    auto denied = std::count_if(log.begin(), log.end(),
                                [](const audit_record& r) { return r.action == "access.denied"; });
    CHECK(denied >= 6);
    CHECK(!a.eng->is_paused({pause_scope::mailbox, "rep-us"}));
    CHECK(!a.eng->is_suppressed("a@b.example"));

    // A send through a pool needs send over it.
    auto req = fixture::request("sdr-emea", "x@prospect.example");
    req.actor = bob;
    auto [ec, r] = a.send(req);
    CHECK(ec == make_error_code(errc::permission_denied));
    CHECK(a.capture->count() == 0);

    // Randomised escalation: principals without manage_access try to give
    // themselves more, change their own role, or act outside their scope.
    std::mt19937_64 rng(7);
    const principal who[] = {bob, eve, principal::system()};
    std::size_t successes = 0;
    const auto before = a.eng->access_control();
    for (int i = 0; i < 200; ++i) {
        const auto& p = who[rng() % 3];
        engine& e = rng() % 2 ? *a.eng : b;
        const auto perm = static_cast<permission>(rng() % permission_count);
        bool ok = false;
        try {
            switch (rng() % 6) {
                case 0:
                    e.put_role(p, {"pauser", {permission::pause, permission::resume, perm}});
                    break;
                case 1:
                    e.put_role(p, {"mine", {perm}});
                    break;
                case 2:
                    e.grant_access(p, {p.id, rng() % 2 ? "admin" : "pauser", {}});
                    break;
                case 3:
                    e.revoke_access(p, {"root", "admin", {}});
                    break;
                case 4:
                    e.set_access_control(p, false);
                    break;
                case 5:
                    e.pause(p, {pause_scope::pool, "sdr-us"}, "x");
                    break;
            }
            ok = true;
        } catch (const exception&) {
        }
        successes += ok;
    }
    CHECK(successes == 0);
    CHECK(a.eng->access_control().grants == before.grants);
    CHECK(a.eng->access_control().roles == before.roles);
    CHECK(b.access_control().enabled);

    // A recipient's own request is not subject to grants.
    webhook_params unverified;
    unverified.verify = false;
    auto bounce = postmark_record("Bounce", "HardBounce", "gone@prospect.example", "", 11);
    CHECK(b.ingest_webhook(webhook_provider::postmark, bounce.view(), unverified).suppressed == 1);
    CHECK(a.eng->is_suppressed("gone@prospect.example"));

    // The last administrator cannot be revoked while access control is on.
    CHECK_THROWS_AS(a.eng->revoke_access(root, {"root", "admin", {}}), exception);
    a.eng->set_access_control(root, false);
    CHECK(!b.access_control().enabled);
    b.pause(eve, {pause_scope::pool, "sdr-us"}, "host authorizer allows all again");
    CHECK(a.eng->verify_audit() == error_code{});
}

TEST_CASE("metrics_text exposes counters, stage histograms and live gauges in Prometheus format") {
    fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com", {rate_limit::per_day(2)}));
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep2", "rep2@brand.com"));
    f.add_pool("p", {"rep1"});
    CHECK_FALSE(f.send(fixture::request("p", "a@x.example")).first);
    CHECK_FALSE(f.send(fixture::request("p", "b@x.example")).first);
    CHECK(f.send(fixture::request("p", "c@x.example")).first == errc::no_capacity);
    f.eng->pause(f.admin, {pause_scope::mailbox, "rep2"}, "test");
    f.eng->enqueue(fixture::request("p", "d@x.example"));

    const auto text = f.eng->metrics_text();
    auto has = [&](const std::string& line) {
        INFO(line);
        CHECK(text.find("\n" + line + "\n") != std::string::npos);
    };
    has("# TYPE mailers_sends_total counter");
    has("mailers_sends_total{outcome=\"accepted\"} 2");
    has("mailers_sends_total{outcome=\"no_capacity\"} 1");
    has("# TYPE mailers_send_stage_seconds histogram");
    has("mailers_send_stage_seconds_bucket{stage=\"total\",le=\"+Inf\"} 2");
    has("mailers_send_stage_seconds_count{stage=\"total\"} 2");
    has("mailers_mailbox_sent{mailbox=\"rep1\",window=\"day\"} 2");
    has("mailers_mailbox_daily_cap{mailbox=\"rep1\"} 2");
    has("mailers_mailbox_eligible{mailbox=\"rep1\"} 0");
    has("mailers_mailbox_blocked{mailbox=\"rep1\",reason=\"cap_reached\"} 1");
    has("mailers_mailbox_blocked{mailbox=\"rep2\",reason=\"paused\"} 1");
    has("mailers_pauses 1");
    // The queued send is waiting, claimed or done by now, one of them.
    std::uint64_t queued = 0;
    for (auto at = text.find("\nmailers_queue_items{"); at != std::string::npos;
         at = text.find("\nmailers_queue_items{", at + 1))
        queued += std::stoull(text.substr(text.find("} ", at) + 2));
    CHECK(queued == 1);

    // Every sample line is `name{labels} value` or `name value`, buckets are
    // cumulative, and every family is declared once before its samples.
    std::set<std::string> families;
    std::istringstream in(text);
    std::string line;
    std::uint64_t last_bucket = 0;
    std::string last_series;
    while (std::getline(in, line)) {
        INFO(line);
        if (line.starts_with("# TYPE ")) {
            const auto name = line.substr(7, line.find(' ', 7) - 7);
            CHECK(families.insert(name).second);
            continue;
        }
        if (line.starts_with("# HELP ")) continue;
        const auto space = line.rfind(' ');
        REQUIRE(space != std::string::npos);
        const auto series = line.substr(0, space);
        const auto name = series.substr(0, series.find('{'));
        const bool known = families.count(name) ||
                           (name.ends_with("_bucket") &&
                            families.count(name.substr(0, name.size() - 7))) ||
                           (name.ends_with("_sum") && families.count(name.substr(0, name.size() - 4))) ||
                           (name.ends_with("_count") && families.count(name.substr(0, name.size() - 6)));
        CHECK(known);
        const auto value = line.substr(space + 1);
        CHECK(value.find_first_not_of("0123456789.e+-") == std::string::npos);
        if (name.ends_with("_bucket")) {
            const auto stage = series.substr(0, series.find(",le="));
            const auto n = std::stoull(value);
            if (stage == last_series) CHECK(n >= last_bucket);
            last_series = stage;
            last_bucket = n;
        }
    }
}

TEST_CASE("the exposition writer escapes label values and help text as the format requires") {
    detail::exposition x;
    x.family("m", "gauge", "a \\ b\nc");
    x.sample("m", {{"id", "a\"b\\c\nd"}}, std::uint64_t{3});
    const std::uint64_t counts[] = {1, 0, 2};
    x.histogram("h", {}, counts, 3, 0.5, 4.25);
    CHECK(x.text() ==
          "# HELP m a \\\\ b\\nc\n# TYPE m gauge\n"
          "m{id=\"a\\\"b\\\\c\\nd\"} 3\n"
          "h_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 3\n"
          "h_sum 4.25\nh_count 3\n");
}
