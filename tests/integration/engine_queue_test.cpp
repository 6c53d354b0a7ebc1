// The engine's paced send queue: enqueue, the drain, waits and their
// reasons, cancel, suppression at enqueue and at hand-off, restarts, and
// several engines draining one queue on SQLite and PostgreSQL.
//
// Simulated time only moves when a test moves the manual clock; the drain
// polls in real time, so the tests wait for states, never for durations.
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <mailers/calendar.hpp>
#include <mailers/postgres_store.hpp>
#include <map>
#include <random>

#include "engine/queue.hpp"
#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;
using namespace std::chrono_literals;

namespace {

/// The shared drain set-up, with the queue's own waits.
struct queue_env : drain_env {
    /// Nothing claimed and nothing due: the drain has done all it can
    /// until the clock moves.
    bool quiet(engine& e) {
        auto c = e.queue_counts();
        return c.claimed == 0 && (!c.next_due || *c.next_due > clock->now());
    }

    /// Moves the clock `step` at a time, letting the drain settle after
    /// each move, until `done` items have ended.
    void step_until(engine& e, std::uint64_t done, duration step) {
        run_until([&] { return quiet(e); });
        for (int steps = 0; e.queue_counts().done < done; ++steps) {
            if (steps > 10000) FAIL("the queue never finished");
            clock->advance(step);
            run_until([&] { return quiet(e); });
        }
    }

    /// Sends handed to the capture transport, per recipient.
    std::map<std::string, int> handed() const {
        std::map<std::string, int> n;
        for (const auto& o : capture->sent()) ++n[o.msg.to.front().addr_spec()];
        return n;
    }
};

send_request to_mailbox(const std::string& mailbox, const std::string& to,
                        const std::string& key = {}) {
    return fixture::direct(mailbox, to, key);
}

std::string rcpt(int i) {
    return "r" + std::to_string(i) + "@example.com";
}

/// `done` items have ended and nothing else is due: the drain has looked at
/// everything it can until the clock moves.
bool settled(engine& e, const mailers::clock& clk, std::uint64_t done) {
    auto c = e.queue_counts();
    return c.done == done && c.claimed == 0 && (!c.next_due || *c.next_due > clk.now());
}

/// The most sends any rolling window of `length` holds: a window ending at
/// `t` counts the sends after `t - length`, as the engine's caps do (one a
/// day allows the next exactly 24 hours later).
std::size_t busiest_window(const std::vector<outbound>& sent, duration length,
                           const std::string& mailbox = {}) {
    std::vector<time_point> at;
    for (const auto& o : sent)
        if (mailbox.empty() || o.mailbox_id == mailbox)
            at.push_back(o.msg.date.value_or(time_point{}));
    std::sort(at.begin(), at.end());
    std::size_t most = 0;
    for (std::size_t i = 0, j = 0; i < at.size(); ++i) {
        while (at[j] + length <= at[i]) ++j;
        most = std::max(most, i - j + 1);
    }
    return most;
}

std::uint64_t reason_count(const queue_counts& c, std::string_view reason) {
    for (const auto& [r, n] : c.waiting_by_reason)
        if (r == reason) return n;
    return 0;
}

}  // namespace

TEST_CASE("a queued request keeps every field through its stored bytes") {
    send_request r;
    r.mailbox = "rep1";
    r.to = address{"to", "example.com", "To Person"};
    r.cc = {address{"cc1", "example.com", ""}, address{"cc2", "example.org", "Cc Two"}};
    r.bcc = {address{"bcc", "example.net", ""}};
    r.reply_to = address{"reply", "brand.example", "Replies"};
    r.subject = "Subject \xC3\xA9";
    r.text = "text body";
    r.html = "<p>html</p>";
    r.headers = {{"X-Campaign", "q4"}, {"X-Other", ""}};
    r.attachments = {{"a.bin", "application/octet-stream", std::string("\0\1\2\xff", 4), ""},
                     {"logo.png", "image/png", "png", "logo@x"}};
    r.unsubscribe = list_unsubscribe{"https://brand.example/u/1", "u@brand.example"};
    r.in_reply_to = "parent@x";
    r.references = {"a@x", "parent@x"};
    r.idempotency_key = "key-1";
    r.actor = principal{"svc", "Service"};

    auto back = detail::decode_request(detail::encode_request(r));
    REQUIRE(back.has_value());
    CHECK(back->pool == r.pool);
    CHECK(back->mailbox == r.mailbox);
    CHECK(back->to == r.to);
    CHECK(back->cc == r.cc);
    CHECK(back->bcc == r.bcc);
    CHECK(back->reply_to == r.reply_to);
    CHECK(back->subject == r.subject);
    CHECK(back->text == r.text);
    CHECK(back->html == r.html);
    CHECK(back->headers == r.headers);
    CHECK(back->attachments == r.attachments);
    CHECK(back->unsubscribe == r.unsubscribe);
    CHECK(back->in_reply_to == r.in_reply_to);
    CHECK(back->references == r.references);
    CHECK(back->idempotency_key == r.idempotency_key);
    CHECK(back->actor == r.actor);
    CHECK(back->raw.empty());

    send_request raw;
    raw.mailbox = "rep1";
    raw.to = address{"to", "example.com", ""};
    raw.raw = "From: rep1@brand.example\r\nMessage-ID: <m@x>\r\n\r\nbody\r\n";
    auto raw_back = detail::decode_request(detail::encode_request(raw));
    REQUIRE(raw_back.has_value());
    CHECK(raw_back->raw == raw.raw);
    CHECK_FALSE(raw_back->reply_to);
    CHECK_FALSE(raw_back->unsubscribe);

    // Bytes it did not make are refused, never read as a different send.
    const auto bytes = detail::encode_request(r);
    CHECK_FALSE(detail::decode_request(bytes.substr(0, bytes.size() - 1)).has_value());
    CHECK_FALSE(detail::decode_request(bytes + "x").has_value());
    CHECK_FALSE(detail::decode_request("not a request").has_value());
}

TEST_CASE("enqueue validates like a send and answers a taken key with its item") {
    queue_env env;
    auto eng = env.make(open_sqlite_store({":memory:", open_mode::open_or_create}));
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));

    CHECK(code_of([&] { eng->enqueue(fixture::request("nopool", "a@example.com")); }) ==
          errc::unknown_pool);
    CHECK(code_of([&] { eng->enqueue(to_mailbox("nobody", "a@example.com")); }) ==
          errc::unknown_mailbox);
    auto bad = to_mailbox("rep1", "a@example.com");
    bad.to.local = "a b";
    CHECK(code_of([&] { eng->enqueue(bad); }) == errc::invalid_address);
    auto big = to_mailbox("rep1", "a@example.com");
    big.text.assign(26 * 1024 * 1024, 'x');
    CHECK(code_of([&] { eng->enqueue(big); }) == errc::message_too_large);
    eng->suppress(env.admin, suppression_kind::address, "gone@example.com",
                  suppression_reason::unsubscribe);
    auto blocked = to_mailbox("rep1", "ok@example.com");
    blocked.cc = {address{"gone", "example.com", ""}};
    CHECK(code_of([&] { eng->enqueue(blocked); }) == errc::suppressed);
    CHECK(eng->queue_counts().waiting == 0);

    enqueue_options later;
    later.not_before = env.clock->now() + 1h;
    later.origin = "campaign:7";
    const auto id = eng->enqueue(to_mailbox("rep1", "a@example.com", "k1"), later);
    CHECK(eng->enqueue(to_mailbox("rep1", "b@example.com", "k1"), later) == id);
    auto item = eng->find_queued(id);
    REQUIRE(item);
    CHECK(item->state == queue_state::waiting);
    CHECK(item->origin == "campaign:7");
    CHECK(item->recipient_domain == "example.com");
    CHECK(engine::queued_request(*item).to.addr_spec() == "a@example.com");
    queue_filter f;
    f.origin_prefix = "campaign:";
    CHECK(eng->queued(f).size() == 1);
}

TEST_CASE("300 queued sends through a mailbox capped at 100 a day go out over three days") {
    queue_env env;
    auto eng = env.make(open_sqlite_store({":memory:", open_mode::open_or_create}));
    eng->upsert_mailbox(env.admin, env.mailbox("rep1", {rate_limit::per_day(100)}));
    std::atomic<int> sent_events{0};
    eng->on_event([&](const event& e) {
        if (e.type == event_type::sent) ++sent_events;
    });
    for (int i = 0; i < 300; ++i) eng->enqueue(to_mailbox("rep1", rcpt(i)));

    env.run_until([&] { return env.quiet(*eng); });
    auto c = eng->queue_counts();
    CHECK(c.done == 100);
    CHECK(c.waiting == 200);
    CHECK(reason_count(c, "cap") == 200);
    CHECK(env.capture->count() == 100);
    REQUIRE(c.next_due);
    CHECK(*c.next_due >= test_epoch() + 24h);

    env.step_until(*eng, 300, 1h);
    env.run_until([&] { return sent_events.load() == 300; });
    auto handed = env.handed();
    CHECK(handed.size() == 300);
    for (const auto& [to, n] : handed) CHECK(n == 1);
    const auto sent = env.capture->sent();
    CHECK(busiest_window(sent, 24h) <= 100);
    // The later days' sends are spread over the day, not sent as the cap
    // frees up: about 100 / 24 an hour.
    std::vector<outbound> later;
    for (const auto& o : sent)
        if (o.msg.date > test_epoch() + 1h) later.push_back(o);
    CHECK(later.size() == 200);
    CHECK(busiest_window(later, 1h) <= 10);
    for (const auto& item : eng->queued()) {
        CHECK(item.state == queue_state::done);
        CHECK(item.send_id != 0);
        CHECK(item.detail.rfind("accepted", 0) == 0);
    }
}

TEST_CASE("a mailbox with an eight-hour window spends its day's cap inside the window, spread") {
    queue_env env;
    auto eng = env.make(open_sqlite_store({":memory:", open_mode::open_or_create}));
    auto m = env.mailbox("rep1", {rate_limit::per_day(40)});
    m.time_zone = "America/New_York";
    m.window = {9, 17, send_window::weekdays_mon_fri};
    eng->upsert_mailbox(env.admin, m);
    for (int i = 0; i < 120; ++i) eng->enqueue(to_mailbox("rep1", rcpt(i)));
    // When the clock jumps, next_due() names the moment the drain has
    // work again: the queue's next item.
    env.run_until([&] { return env.quiet(*eng); });
    REQUIRE(eng->next_due());
    CHECK(*eng->next_due() == *eng->queue_counts().next_due);
    env.step_until(*eng, 120, 5min);
    CHECK_FALSE(eng->next_due());

    // Counted per local day, in the mailbox's zone: every sending day
    // reaches the cap, inside the window, and no hour takes more than a
    // fair share of it (40 over 8 hours is 5 an hour; a burst at the
    // window's opening would be 40).
    std::map<std::chrono::sys_days, int> per_day;
    std::map<std::chrono::sys_days, std::vector<outbound>> day_sends;
    for (const auto& o : env.capture->sent()) {
        const auto at = *o.msg.date;
        const auto day = std::chrono::sys_days(local_date(at, m.time_zone));
        ++per_day[day];
        day_sends[day].push_back(o);
        const auto weekday = std::chrono::weekday(day);
        CHECK(weekday != std::chrono::Saturday);
        CHECK(weekday != std::chrono::Sunday);
    }
    CHECK(per_day.size() == 3);
    for (const auto& [day, n] : per_day) CHECK(n == 40);
    for (const auto& [day, sends] : day_sends) CHECK(busiest_window(sends, 1h) <= 8);
    CHECK(busiest_window(env.capture->sent(), 24h) <= 40);
}

TEST_CASE("a waiting item is cancelled, audited; a claimed one is not") {
    queue_env env;
    auto held = std::make_shared<held_transport>(env.ioc.get_executor());
    auto eng =
        env.make(open_sqlite_store({":memory:", open_mode::open_or_create}), "default", held);
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));

    enqueue_options later;
    later.not_before = env.clock->now() + 1h;
    const auto id = eng->enqueue(to_mailbox("rep1", "a@example.com"), later);
    CHECK(eng->cancel_queued(env.admin, id));
    CHECK(eng->find_queued(id)->state == queue_state::cancelled);
    CHECK_FALSE(eng->cancel_queued(env.admin, id));
    CHECK(code_of([&] { eng->cancel_queued(env.admin, 999999); }) == errc::not_found);
    bool audited = false;
    for (const auto& r : eng->audit_log())
        if (r.action == "queue.cancel" && r.resource_id == std::to_string(id) && r.actor == "admin")
            audited = true;
    CHECK(audited);
    CHECK_FALSE(eng->verify_audit());

    held->set_hold(true);
    const auto busy = eng->enqueue(to_mailbox("rep1", "b@example.com"));
    env.run_until([&] { return held->pending() == 1; });
    CHECK(eng->find_queued(busy)->state == queue_state::claimed);
    CHECK(code_of([&] { eng->cancel_queued(env.admin, busy); }) == errc::invalid_argument);
    held->complete_oldest();
    env.run_until([&] { return settled(*eng, *env.clock, 1); });

    env.clock->advance(2h);
    eng->flush();
    CHECK(held->handed().size() == 1);
    CHECK(held->handed().front().msg.to.front().addr_spec() == "b@example.com");
}

TEST_CASE("a recipient suppressed after enqueue is not handed off; the item ends suppressed") {
    queue_env env;
    auto eng = env.make(open_sqlite_store({":memory:", open_mode::open_or_create}));
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    enqueue_options later;
    later.not_before = env.clock->now() + 1h;
    const auto id = eng->enqueue(to_mailbox("rep1", "late@example.com"), later);
    const auto ok = eng->enqueue(to_mailbox("rep1", "fine@example.com"), later);
    eng->suppress(env.admin, suppression_kind::address, "late@example.com",
                  suppression_reason::unsubscribe);
    env.clock->advance(1h);
    env.run_until([&] { return settled(*eng, *env.clock, 2); });
    auto item = eng->find_queued(id);
    REQUIRE(item);
    CHECK(item->state == queue_state::done);
    CHECK(item->detail.rfind("suppressed", 0) == 0);
    CHECK(item->send_id == 0);
    CHECK(eng->find_queued(ok)->detail.rfind("accepted", 0) == 0);
    auto handed = env.handed();
    CHECK(handed.size() == 1);
    CHECK(handed.count("fine@example.com") == 1);
}

TEST_CASE("async_enqueue completes when the item is done, and waits say why") {
    queue_env env;
    auto eng = env.make(open_sqlite_store({":memory:", open_mode::open_or_create}));
    auto mb = env.mailbox("rep1");
    mb.window.weekdays = send_window::weekdays_mon_fri;
    mb.window.start_hour = 9;
    mb.window.end_hour = 17;
    eng->upsert_mailbox(env.admin, mb);
    // Wednesday 12:00 UTC: inside the window.
    std::optional<std::pair<error_code, queued_send>> out;
    eng->async_enqueue(to_mailbox("rep1", "a@example.com"), {},
                       [&](error_code ec, queued_send q) { out.emplace(ec, std::move(q)); });
    env.run_until([&] { return out.has_value(); });
    CHECK_FALSE(out->first);
    CHECK(out->second.state == queue_state::done);
    CHECK(out->second.send_id != 0);

    // Wednesday 18:00: the window is shut until Thursday 09:00.
    env.clock->advance(6h);
    const auto id = eng->enqueue(to_mailbox("rep1", "b@example.com"));
    env.run_until(
        [&] { return eng->find_queued(id)->checks >= 1 && settled(*eng, *env.clock, 1); });
    auto c = eng->queue_counts();
    CHECK(reason_count(c, "window") == 1);
    REQUIRE(c.next_due);
    CHECK(*c.next_due == utc(2026, 11, 26, 9));

    eng->pause(env.admin, {pause_scope::mailbox, "rep1"});
    env.clock->set(utc(2026, 11, 26, 9));
    env.run_until(
        [&] { return eng->find_queued(id)->checks >= 2 && settled(*eng, *env.clock, 1); });
    CHECK(reason_count(eng->queue_counts(), "paused") == 1);
    eng->resume(env.admin, {pause_scope::mailbox, "rep1"});
    env.clock->advance(eng->find_queued(id)->due_at - env.clock->now());
    env.run_until([&] { return settled(*eng, *env.clock, 2); });
    CHECK(env.capture->count() == 2);
}

TEST_CASE("waiting items survive a restart on the same SQLite file and go out once") {
    db_file db("queue-restart");
    queue_env env;
    const auto open = [&] {
        return open_sqlite_store({db.path.string(), open_mode::open_or_create});
    };
    {
        auto eng = env.make(open());
        eng->upsert_mailbox(env.admin, env.mailbox("rep1", {rate_limit::per_day(2)}));
        for (int i = 0; i < 5; ++i) eng->enqueue(to_mailbox("rep1", rcpt(i)));
        env.run_until([&] { return settled(*eng, *env.clock, 2); });
        CHECK(eng->queue_counts().waiting == 3);
    }
    auto eng = env.make(open());
    CHECK(eng->queue_counts().waiting == 3);
    env.step_until(*eng, 5, 1h);
    auto handed = env.handed();
    CHECK(handed.size() == 5);
    for (const auto& [to, n] : handed) CHECK(n == 1);
}

namespace {

// Two engines on one workspace, each enqueueing half of the items: every
// item goes out once, and no mailbox sends more than its cap in a day.
void two_engines_drain_one_queue(queue_env& env,
                                 const std::function<std::shared_ptr<store>()>& open,
                                 const std::string& workspace) {
    auto a = env.make(open(), workspace);
    auto b = env.make(open(), workspace);
    a->upsert_mailbox(env.admin, env.mailbox("rep1", {rate_limit::per_day(40)}));
    a->upsert_mailbox(env.admin, env.mailbox("rep2", {rate_limit::per_day(40)}));
    pool_config p;
    p.id = "sales";
    p.mailboxes = {"rep1", "rep2"};
    a->upsert_pool(env.admin, p);
    constexpr int n = 160;
    for (int i = 0; i < n; ++i)
        (i % 2 ? a : b)->enqueue(fixture::request("sales", rcpt(i), "item-" + std::to_string(i)));
    env.run_until([&] { return settled(*a, *env.clock, 80); });
    CHECK(a->queue_counts().waiting == 80);
    CHECK(reason_count(a->queue_counts(), "cap") == 80);
    std::map<std::string, int> per_mailbox;
    for (const auto& o : env.capture->sent()) ++per_mailbox[o.mailbox_id];
    for (const auto& [m, k] : per_mailbox) CHECK(k <= 40);
    env.step_until(*b, n, 1h);
    auto handed = env.handed();
    CHECK(handed.size() == n);
    for (const auto& [to, k] : handed) CHECK(k == 1);
    const auto sent = env.capture->sent();
    CHECK(busiest_window(sent, 24h, "rep1") <= 40);
    CHECK(busiest_window(sent, 24h, "rep2") <= 40);
}

std::optional<std::string> pg_server() {
    return test_pg_server("the queue");
}

}  // namespace

TEST_CASE("two engines drain one SQLite queue: each item once, no cap exceeded") {
    db_file db("queue-two");
    queue_env env;
    two_engines_drain_one_queue(
        env,
        [&] {
            return open_sqlite_store({db.path.string(), open_mode::open_or_create});
        },
        "default");
}

TEST_CASE("two engines drain one PostgreSQL queue: each item once, no cap exceeded") {
    auto server = pg_server();
    if (!server) return;
    queue_env env;
    postgres_store_params p;
    p.conninfo = *server;
    p.mode = open_mode::open_or_create;
    p.pool_size = 3;
    const auto ws = "queue_" + std::to_string(::getpid()) + "_" +
                    std::to_string(std::random_device{}() % 100000);
    two_engines_drain_one_queue(
        env, [&] { return open_postgres_store(p); }, ws);
}

TEST_CASE("a dead member's items are recovered and go out once") {
    db_file db("queue-dead");
    queue_env env;
    const auto open = [&] {
        return open_sqlite_store({db.path.string(), open_mode::open_or_create});
    };
    auto held = std::make_shared<held_transport>(env.ioc.get_executor());
    std::vector<std::uint64_t> ids;
    std::uint64_t orphan = 0;
    {
        // A member that reserved and handed off its items, then vanished
        // before finishing them.
        auto a = env.make(open(), "default", held);
        a->upsert_mailbox(env.admin, env.mailbox("rep1"));
        held->set_hold(true);
        for (int i = 0; i < 3; ++i) ids.push_back(a->enqueue(to_mailbox("rep1", rcpt(i))));
        enqueue_options later;
        later.not_before = env.clock->now() + 1h;
        orphan = a->enqueue(to_mailbox("rep1", rcpt(3)), later);
        env.run_until([&] { return held->pending() == 3; });
        held->drop_pending();
    }
    // Then another member takes all four back and dies before sending any:
    // its lease runs out and a live engine recovers them.
    auto st = open();
    const auto ghost = st->attach("default", member_info{"elsewhere", 1, "ghost"}, 2s);
    env.clock->advance(1h);
    auto taken = st->claim_queued("default", ghost, env.clock->now(), 10);
    REQUIRE(taken.size() == 4);
    auto b = env.make(st, "default", nullptr, 1s);

    env.run_until([&] { return settled(*b, *env.clock, 4); });
    for (auto id : ids) {
        auto item = b->find_queued(id);
        REQUIRE(item);
        CHECK(item->send_id != 0);
        // Reserved and handed off by the dead member: `unknown`, never sent again.
        CHECK(item->detail.rfind("unknown", 0) == 0);
    }
    CHECK(b->find_queued(orphan)->detail.rfind("accepted", 0) == 0);
    std::map<std::string, int> handed = env.handed();
    for (const auto& o : held->handed()) ++handed[o.msg.to.front().addr_spec()];
    CHECK(handed.size() == 4);
    for (const auto& [to, n] : handed) CHECK(n == 1);
}

TEST_CASE("async_enqueue on an engine that does not drain completes when another one finishes") {
    db_file db("queue-front");
    queue_env env;
    const auto open = [&] {
        return open_sqlite_store({db.path.string(), open_mode::open_or_create});
    };
    engine_params p;
    p.storage = open();
    p.clock = env.clock;
    p.queue_poll_interval = 5ms;
    p.drain_queue = false;
    auto front = std::make_unique<engine>(env.ioc.get_executor(), std::move(p));
    front->upsert_mailbox(env.admin, env.mailbox("rep1"));

    std::optional<std::pair<error_code, queued_send>> out;
    front->async_enqueue(to_mailbox("rep1", "a@example.com"), {},
                         [&](error_code ec, queued_send q) { out.emplace(ec, std::move(q)); });
    env.run_until([&] { return front->queue_counts().waiting == 1; });
    CHECK_FALSE(out);
    CHECK(env.capture->count() == 0);

    auto back = env.make(open());
    env.run_until([&] { return out.has_value(); });
    CHECK_FALSE(out->first);
    CHECK(out->second.state == queue_state::done);
    CHECK(out->second.detail.rfind("accepted", 0) == 0);
    CHECK(env.capture->count() == 1);

    // One still waiting when its engine goes completes with operation_aborted.
    enqueue_options later;
    later.not_before = env.clock->now() + 1h;
    std::optional<error_code> aborted;
    front->async_enqueue(to_mailbox("rep1", "b@example.com"), later,
                         [&](error_code ec, queued_send) { aborted = ec; });
    front.reset();
    env.run_until([&] { return aborted.has_value(); });
    CHECK(*aborted == errc::operation_aborted);
}

TEST_CASE("an open breaker is the reason a queued send waits") {
    queue_env env;
    auto faulty = std::make_shared<fault_injector>(env.capture);
    auto eng =
        env.make(open_sqlite_store({":memory:", open_mode::open_or_create}), "default", faulty);
    auto mb = env.mailbox("rep1");
    mb.breaker.failure_threshold = 1;
    eng->upsert_mailbox(env.admin, mb);
    pool_config p;
    p.id = "sales";
    p.mailboxes = {"rep1"};
    eng->upsert_pool(env.admin, p);
    // One transient failure opens rep1's breaker.
    faulty->fail_nth(1, make_error_code(transport_errc::connection_failed));
    auto first = fixture::request("sales", "a@example.com");
    const auto id = eng->enqueue(first);
    env.run_until([&] { return eng->find_queued(id)->state == queue_state::done; });
    const auto waiting = eng->enqueue(fixture::request("sales", "b@example.com"));
    env.run_until([&] { return env.quiet(*eng) && eng->find_queued(waiting)->checks >= 1; });
    CHECK(eng->find_queued(id)->detail.rfind("failed", 0) == 0);
    CHECK(reason_count(eng->queue_counts(), "breaker") == 1);
}

TEST_CASE("ended items are forgotten after the retention; their keys still find their sends") {
    queue_env env;
    auto eng = env.make(open_sqlite_store({":memory:", open_mode::open_or_create}), "default",
                        nullptr, 10s, [](engine_params& p) { p.queue_retention = 1h; });
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    const auto first = eng->enqueue(to_mailbox("rep1", "a@example.com", "welcome-a"));
    env.run_until([&] { return settled(*eng, *env.clock, 1); });
    const auto send_id = eng->find_queued(first)->send_id;
    CHECK(send_id != 0);

    env.clock->advance(2h);
    env.run_until([&] { return eng->queue_counts().done == 0; });
    CHECK_FALSE(eng->find_queued(first));

    // The key is free in the queue again, not in the ledger: no second send.
    const auto again = eng->enqueue(to_mailbox("rep1", "a@example.com", "welcome-a"));
    CHECK(again != first);
    env.run_until([&] { return settled(*eng, *env.clock, 1); });
    auto item = eng->find_queued(again);
    REQUIRE(item);
    CHECK(item->send_id == send_id);
    CHECK(item->detail.rfind("accepted", 0) == 0);
    CHECK(env.capture->count() == 1);
}
