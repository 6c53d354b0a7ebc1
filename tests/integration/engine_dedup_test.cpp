// Provider events applied exactly once: redeliveries, the same retry
// reaching two engines of a workspace, and the store-backed replay cache.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <mailers/postgres_store.hpp>
#include <mailers/store_replay_cache.hpp>
#include <map>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>

#include "engine_fixture.hpp"
#include "forwarding_store.hpp"
#include "webhooks/crypto.hpp"

using namespace mailers;
using namespace mailers_test;
using namespace std::chrono_literals;

namespace {

using store_factory = std::function<std::shared_ptr<store>()>;

struct webhook_body {
    std::string body;
    std::vector<http_header> headers{{"Content-Type", "application/json"}};
    webhook_request view() const { return {"POST", headers, body}; }
};

webhook_body postmark_record(const std::string& record_type, const std::string& type,
                             const std::string& email, int id) {
    webhook_body b;
    b.body = fmt::format(
        R"({{"RecordType":"{}","ID":{},"Type":"{}","MessageID":"pm-{}","Email":"{}",)"
        R"("Details":"smtp;550 5.1.1 no such user","BouncedAt":"2026-11-25T12:00:00Z"}})",
        record_type, id, type, id, email);
    return b;
}

// A SendGrid batch of `bounces` hard bounces and `deliveries` deliveries,
// each with its own sg_event_id under `tag`.
webhook_body sendgrid_batch(const std::string& tag, int bounces, int deliveries) {
    std::string body = "[";
    for (int i = 0; i < bounces + deliveries; ++i) {
        if (i > 0) body += ",";
        const bool bounce = i < bounces;
        body +=
            fmt::format(R"({{"email":"{}-{}@prospect.example","timestamp":1764072000,"event":"{}",)"
                        R"("type":"bounce","sg_event_id":"{}-{}","sg_message_id":"sg-{}-{}",)"
                        R"("reason":"550 5.1.1 no such user","status":"5.1.1"}})",
                        tag, i, bounce ? "bounce" : "delivered", tag, i, tag, i);
    }
    webhook_body b;
    b.body = body + "]";
    return b;
}

webhook_params unverified() {
    webhook_params p;
    p.verify = false;
    return p;
}

// Engines sharing one workspace, their clock and executor, and every event
// they emit.
struct dedup_env {
    boost::asio::io_context ioc;
    std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>(test_epoch());
    principal admin{"admin", "Test Admin"};
    std::mutex mu;
    std::vector<event> seen;

    std::unique_ptr<engine> make(std::shared_ptr<store> st, const std::string& ws,
                                 std::chrono::seconds retention = 24h * 30) {
        engine_params p;
        p.storage = std::move(st);
        p.clock = clock;
        p.workspace = ws;
        p.sync_interval = 5ms;
        p.event_retention = retention;
        auto e = std::make_unique<engine>(ioc.get_executor(), std::move(p));
        e->on_event([this](const event& ev) {
            std::lock_guard lock(mu);
            seen.push_back(ev);
        });
        return e;
    }
    void drain(std::initializer_list<engine*> engines) {
        for (auto* e : engines) e->flush();
        ioc.restart();
        ioc.poll();
    }
    std::size_t seen_of(event_type t) {
        std::lock_guard lock(mu);
        std::size_t n = 0;
        for (const auto& e : seen) n += e.type == t;
        return n;
    }
};

std::size_t suppression_records(engine& e, const std::string& address) {
    std::size_t n = 0;
    for (const auto& r : e.audit_log())
        n += r.action == "suppression.add" && r.resource_id == address;
    return n;
}

void redelivery_applied_once(const store_factory& open, const std::string& ws) {
    dedup_env env;
    auto a = env.make(open(), ws);
    auto b = env.make(open(), ws);
    const auto params = unverified();
    const auto bounce = postmark_record("Bounce", "HardBounce", "ana@prospect.example", 1);
    const auto delivery = postmark_record("Delivery", "", "bo@prospect.example", 2);

    auto first = a->ingest_webhook(webhook_provider::postmark, bounce.view(), params);
    CHECK(first.webhook.http_status == 200);
    CHECK(first.suppressed == 1);
    CHECK(first.duplicates == 0);
    auto d1 = a->ingest_webhook(webhook_provider::postmark, delivery.view(), params);
    CHECK(d1.duplicates == 0);

    // The provider redelivers to the same engine, and the same retry
    // reaches the other engine.
    for (engine* e : {a.get(), b.get(), a.get(), b.get()}) {
        auto again = e->ingest_webhook(webhook_provider::postmark, bounce.view(), params);
        CHECK(again.webhook.http_status == 200);
        CHECK(again.suppressed == 0);
        CHECK(again.already_suppressed == 0);
        CHECK(again.duplicates == 1);
        auto d = e->ingest_webhook(webhook_provider::postmark, delivery.view(), params);
        CHECK(d.duplicates == 1);
    }
    env.drain({a.get(), b.get()});
    CHECK(env.seen_of(event_type::bounced) == 1);
    CHECK(env.seen_of(event_type::delivered) == 1);
    CHECK(a->is_suppressed("ana@prospect.example"));
    CHECK(b->is_suppressed("ana@prospect.example"));
    CHECK(suppression_records(*a, "ana@prospect.example") == 1);
    CHECK(a->verify_audit() == error_code{});
    // The duplicates' commits wrote no suppression version and no record.
    CHECK(a->verify_suppressions().ok);
}

// Two threads, one per engine, ingest the same batches at once.
void concurrent_batches_applied_once(const store_factory& open, const std::string& ws) {
    dedup_env env;
    auto a = env.make(open(), ws);
    auto b = env.make(open(), ws);
    const auto params = unverified();
    constexpr int rounds = 5, bounces = 3, deliveries = 4;
    std::atomic<std::size_t> suppressed{0}, duplicates{0}, already{0};
    std::vector<webhook_body> batches;
    for (int r = 0; r < rounds; ++r)
        batches.push_back(sendgrid_batch("r" + std::to_string(r), bounces, deliveries));
    auto ingest_all = [&](engine& e) {
        for (const auto& batch : batches) {
            auto out = e.ingest_webhook(webhook_provider::sendgrid, batch.view(), params);
            CHECK(out.webhook.http_status == 200);
            suppressed += out.suppressed;
            duplicates += out.duplicates;
            already += out.already_suppressed;
        }
    };
    std::thread ta([&] { ingest_all(*a); });
    std::thread tb([&] { ingest_all(*b); });
    ta.join();
    tb.join();
    env.drain({a.get(), b.get()});
    CHECK(suppressed.load() == rounds * bounces);
    CHECK(duplicates.load() == rounds * (bounces + deliveries));
    CHECK(already.load() == 0);
    CHECK(env.seen_of(event_type::bounced) == rounds * bounces);
    CHECK(env.seen_of(event_type::delivered) == rounds * deliveries);
    for (int r = 0; r < rounds; ++r)
        for (int i = 0; i < bounces; ++i) {
            const auto addr = fmt::format("r{}-{}@prospect.example", r, i);
            CHECK(suppression_records(*a, addr) == 1);
            CHECK(a->is_suppressed(addr));
        }
    CHECK(a->verify_audit() == error_code{});
    CHECK(a->verify_suppressions().ok);
}

std::optional<std::string> pg_server() {
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (c && *c) return std::string{c};
    const char* req = std::getenv("MAILERS_REQUIRE_PG");
    if (req && std::string_view{req} == "1")
        FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset");
    MESSAGE("skipped: set MAILERS_TEST_PG to a conninfo to run de-duplication on PostgreSQL");
    return std::nullopt;
}

std::string fresh_workspace(const std::string& stem) {
    return stem + "_" + std::to_string(::getpid()) + "_" +
           std::to_string(std::random_device{}() % 100000);
}

store_factory postgres_factory(const std::string& server) {
    postgres_store_params p;
    p.conninfo = server;
    p.mode = open_mode::open_or_create;
    p.pool_size = 3;
    return [p] { return open_postgres_store(p); };
}

store_factory sqlite_factory(const db_file& db) {
    return [path = db.path.string()] {
        return open_sqlite_store({path, open_mode::open_or_create});
    };
}

void replay_cache_shared(const store_factory& open, const std::string& ws) {
    store_replay_cache first(open(), ws);
    store_replay_cache second(open(), ws);
    store_replay_cache elsewhere(open(), ws + "_other");
    const auto now = test_epoch();
    CHECK(first.first_use("mailgun:tok-1", now + 5min, now));
    CHECK_FALSE(second.first_use("mailgun:tok-1", now + 5min, now + 1min));
    CHECK_FALSE(first.first_use("mailgun:tok-1", now + 5min, now + 2min));
    CHECK(elsewhere.first_use("mailgun:tok-1", now + 5min, now));
    CHECK(second.first_use("mailgun:tok-2", now + 5min, now));
    // Expired, the token is free again (a replay that old fails the
    // signature's freshness check first).
    CHECK(second.first_use("mailgun:tok-1", now + 15min, now + 5min));
    // Tokens and event keys are recorded apart.
    const std::vector<store_op> ops{
        store_ops::record_key{"event", "mailgun:tok-3", now, now + 5min, 0}};
    CHECK(open()->commit(ws, ops).ops.at(0).applied);
    CHECK(first.first_use("mailgun:tok-3", now + 5min, now));
    // A released token is free again, for every handle; the event key of
    // the same name, and the workspace elsewhere, keep theirs.
    elsewhere.release("mailgun:tok-2");
    CHECK_FALSE(second.first_use("mailgun:tok-2", now + 5min, now));
    first.release("mailgun:tok-3");
    first.release("mailgun:tok-never");
    CHECK(second.first_use("mailgun:tok-3", now + 5min, now));
    CHECK_FALSE(first.first_use("mailgun:tok-3", now + 5min, now));
    CHECK_FALSE(open()->commit(ws, ops).ops.at(0).applied);
    const auto st = open();
    CHECK_FALSE(st->forget_key(ws, "mailgun-token", "mailgun:tok-never"));
    CHECK(st->forget_key(ws, "event", "mailgun:tok-3"));
    CHECK(st->commit(ws, ops).ops.at(0).applied);
}

}  // namespace

TEST_CASE("a redelivered event is applied once, by one engine or two on one SQLite file") {
    db_file db("dedup-redelivery");
    redelivery_applied_once(sqlite_factory(db), "default");
}

TEST_CASE("a redelivered event is applied once, by one engine or two on PostgreSQL") {
    auto server = pg_server();
    if (!server) return;
    redelivery_applied_once(postgres_factory(*server), fresh_workspace("dedup"));
}

TEST_CASE("two engines ingesting the same batches at once apply each event once (SQLite)") {
    db_file db("dedup-race");
    concurrent_batches_applied_once(sqlite_factory(db), "default");
}

TEST_CASE("two engines ingesting the same batches at once apply each event once (PostgreSQL)") {
    auto server = pg_server();
    if (!server) return;
    concurrent_batches_applied_once(postgres_factory(*server), fresh_workspace("dedup_race"));
}

TEST_CASE("a delivery report read twice is applied once") {
    db_file db("dedup-report");
    dedup_env env;
    auto e = env.make(sqlite_factory(db)(), "default");
    const std::string dsn =
        "From: MAILER-DAEMON@mx.brand.example\r\nMessage-ID: <r-1@mx.brand.example>\r\n"
        "Content-Type: multipart/report; report-type=delivery-status; boundary=b\r\n\r\n"
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; "
        "mx.brand.example\r\n\r\n"
        "Final-Recipient: rfc822; gone@prospect.example\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "--b--\r\n";
    auto first = e->ingest_delivery_report(dsn);
    REQUIRE(first.report.recognised);
    CHECK(first.suppressed == 1);
    auto again = e->ingest_delivery_report(dsn);
    CHECK(again.suppressed == 0);
    CHECK(again.duplicates == 1);
    env.drain({e.get()});
    CHECK(env.seen_of(event_type::bounced) == 1);
    CHECK(suppression_records(*e, "gone@prospect.example") == 1);
}

TEST_CASE("an event redelivered after its key's retention is applied again") {
    // The retention bounds how long keys are kept; a provider retries for
    // days, not weeks. Past it, the event counts as new: handlers see it
    // again, and a suppression already in force is left as it is.
    db_file db("dedup-retention");
    dedup_env env;
    auto e = env.make(sqlite_factory(db)(), "default", 1h);
    const auto params = unverified();
    const auto bounce = postmark_record("Bounce", "HardBounce", "cy@prospect.example", 7);
    CHECK(e->ingest_webhook(webhook_provider::postmark, bounce.view(), params).suppressed == 1);
    env.clock->advance(59min);
    CHECK(e->ingest_webhook(webhook_provider::postmark, bounce.view(), params).duplicates == 1);
    env.clock->advance(2min);
    auto late = e->ingest_webhook(webhook_provider::postmark, bounce.view(), params);
    CHECK(late.duplicates == 0);
    CHECK(late.suppressed == 0);
    CHECK(late.already_suppressed == 1);
    env.drain({e.get()});
    CHECK(env.seen_of(event_type::bounced) == 2);
    CHECK(suppression_records(*e, "cy@prospect.example") == 1);
}

TEST_CASE("the store replay cache refuses a token reused through another SQLite handle") {
    db_file db("dedup-replay");
    replay_cache_shared(sqlite_factory(db), "default");
}

TEST_CASE("the store replay cache refuses a token reused through another PostgreSQL handle") {
    auto server = pg_server();
    if (!server) return;
    replay_cache_shared(postgres_factory(*server), fresh_workspace("dedup_replay"));
}

TEST_CASE("the store replay cache refuses a replayed Mailgun request through another engine") {
    db_file db("dedup-mailgun");
    auto open = sqlite_factory(db);
    dedup_env env;
    auto a = env.make(open(), "default");
    auto b = env.make(open(), "default");
    constexpr std::string_view key = "TEST_WEBHOOK_SIGNING_KEY";
    auto signed_params = [&] {
        webhook_params p;
        p.now = env.clock->now();
        p.mailgun.signing_key = std::string(key);
        p.mailgun.replay = std::make_shared<store_replay_cache>(open(), "default");
        return p;
    };
    const auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(env.clock->now().time_since_epoch())
            .count();
    auto request = [&](const std::string& token, const std::string& event_id) {
        const std::string ts = std::to_string(secs);
        const auto sig =
            webhooks::to_hex(webhooks::as_view(webhooks::hmac_sha256(key, ts + token)));
        webhook_body w;
        w.body = fmt::format(R"({{"signature":{{"timestamp":"{}","token":"{}","signature":"{}"}},)"
                             R"("event-data":{{"event":"delivered","id":"{}","timestamp":{},)"
                             R"("recipient":"dy@prospect.example"}}}})",
                             ts, token, sig, event_id, secs);
        return w;
    };
    const auto pa = signed_params(), pb = signed_params();
    auto first = a->ingest_webhook(webhook_provider::mailgun, request("tok-a", "ev-1").view(), pa);
    CHECK(first.webhook.http_status == 200);
    // The same signed token under another event: refused by the other
    // engine's cache, on another store handle, before anything is parsed.
    auto replay = b->ingest_webhook(webhook_provider::mailgun, request("tok-a", "ev-2").view(), pb);
    CHECK(replay.webhook.http_status == 403);
    CHECK(replay.webhook.events.empty());
    auto fresh = b->ingest_webhook(webhook_provider::mailgun, request("tok-b", "ev-3").view(), pb);
    CHECK(fresh.webhook.http_status == 200);
    env.drain({a.get(), b.get()});
    CHECK(env.seen_of(event_type::delivered) == 2);
}

// --- daily counts, soft bounces and pause rules ---------------------------------

namespace {

// Engines on one workspace with the capture transport, a shared clock and
// every event any of them emits.
struct rules_env : drain_env {
    std::mutex mu;
    std::vector<event> seen;

    std::unique_ptr<engine> engine_on(std::shared_ptr<store> st, const std::string& ws,
                                      const std::function<void(engine_params&)>& tweak = {}) {
        auto e = make(std::move(st), ws, nullptr, 10s, [&](engine_params& p) {
            p.sync_interval = 5ms;
            if (tweak) tweak(p);
        });
        e->on_event([this](const event& ev) {
            std::lock_guard lock(mu);
            seen.push_back(ev);
        });
        return e;
    }
    std::size_t seen_of(event_type t) {
        std::lock_guard lock(mu);
        return static_cast<std::size_t>(
            std::count_if(seen.begin(), seen.end(), [t](const event& e) { return e.type == t; }));
    }
    // Sends `n` messages through pool "p" (or a mailbox); returns their send ids.
    std::vector<std::string> send(engine& e, int n, const std::string& tag,
                                  const std::string& mailbox = {}) {
        std::vector<std::string> ids;
        std::mutex ids_mu;
        std::atomic<int> done{0};
        for (int i = 0; i < n; ++i) {
            send_request r;
            if (mailbox.empty())
                r.pool = "p";
            else
                r.mailbox = mailbox;
            r.to = address{tag + "-" + std::to_string(i), "prospect.example", {}};
            r.subject = "Hi";
            r.text = "Hello";
            e.async_send(std::move(r), [&](error_code ec, send_result res) {
                CHECK_MESSAGE(!ec, ec.message());
                std::lock_guard lock(ids_mu);
                ids.push_back(res.send_id);
                ++done;
            });
        }
        run_until([&] { return done == n; });
        e.flush();
        return ids;
    }
    std::int64_t now_secs() {
        return std::chrono::duration_cast<std::chrono::seconds>(clock->now().time_since_epoch())
            .count();
    }
};

// A SendGrid batch: one event per (send id, kind), kind "bounce" (hard),
// "blocked" (soft), "delivered", "open" or "spamreport", each with its own
// sg_event_id `tag`-n, at the env's clock.
webhook_body sendgrid_events(rules_env& env, const std::string& tag,
                             const std::vector<std::pair<std::string, std::string>>& events) {
    std::string body = "[";
    int n = 0;
    for (const auto& [send_id, kind] : events) {
        if (n > 0) body += ",";
        const bool bounce = kind == "bounce" || kind == "blocked";
        body += fmt::format(
            R"({{"email":"{}-{}@prospect.example","timestamp":{},"event":"{}",{})"
            R"("sg_event_id":"{}-{}","sg_message_id":"sg-{}-{}","mailers_send_id":"{}",)"
            R"("reason":"550 5.1.1 no such user","status":"5.1.1"}})",
            tag, n, env.now_secs(), bounce ? "bounce" : kind,
            bounce ? fmt::format(R"("type":"{}",)", kind) : std::string(), tag, n, tag, n, send_id);
        ++n;
    }
    webhook_body b;
    b.body = body + "]";
    return b;
}

std::size_t audit_count(engine& e, std::string_view action) {
    std::size_t n = 0;
    for (const auto& r : e.audit_log()) n += r.action == action;
    return n;
}

std::uint64_t total(engine& e, count_scope scope, const std::string& id, count_metric m,
                    count_day from, count_day to) {
    std::uint64_t n = 0;
    for (const auto& d : e.daily_counts(scope, id, from, to)) n += d[m];
    return n;
}

void setup_pool(rules_env& env, engine& e, std::initializer_list<std::string> mailboxes) {
    pool_config pc;
    pc.id = "p";
    for (const auto& m : mailboxes) {
        e.upsert_mailbox(env.admin, env.mailbox(m));
        pc.mailboxes.push_back(m);
    }
    e.upsert_pool(env.admin, pc);
}

// Sends and events counted per scope and day, each event once although
// both engines ingest every batch at the same time; a bounce-rate rule
// that waits for its minimum volume, then pauses the mailbox once,
// audited, with one event; a resume with a reason starts the grace.
void counts_and_rule(const store_factory& open, const std::string& ws) {
    rules_env env;
    auto a = env.engine_on(open(), ws);
    auto b = env.engine_on(open(), ws);
    setup_pool(env, *a, {"m1"});
    a->put_pause_rule(env.admin, bounce_rate_preset("bounces"));
    const count_day today = utc_day(env.clock->now());

    // 10 sends and 3 hard bounces: 30%, but below 20 sends the rule waits.
    auto ids = env.send(*a, 10, "first");
    REQUIRE(ids.size() == 10);
    std::vector<std::pair<std::string, std::string>> evs;
    for (int i = 0; i < 3; ++i) evs.emplace_back(ids[i], "bounce");
    for (int i = 3; i < 10; ++i) evs.emplace_back(ids[i], "delivered");
    evs.emplace_back(ids[4], "open");
    evs.emplace_back(ids[5], "spamreport");
    const auto batch1 = sendgrid_events(env, "b1", evs);
    const auto params = unverified();
    auto ingest_both = [&](const webhook_body& batch) {
        std::atomic<std::size_t> dups{0};
        std::thread ta([&] {
            dups += a->ingest_webhook(webhook_provider::sendgrid, batch.view(), params).duplicates;
        });
        std::thread tb([&] {
            dups += b->ingest_webhook(webhook_provider::sendgrid, batch.view(), params).duplicates;
        });
        ta.join();
        tb.join();
        return dups.load();
    };
    CHECK(ingest_both(batch1) == evs.size());
    CHECK_FALSE(a->is_paused({pause_scope::mailbox, "m1"}));
    CHECK(a->check_pause_rules().empty());
    CHECK(b->check_pause_rules().empty());

    // Each scope counted each send and each distinct event once.
    for (auto [scope, id] : std::vector<std::pair<count_scope, std::string>>{
             {count_scope::mailbox, "m1"},
             {count_scope::pool, "p"},
             {count_scope::provider, "capture"},
             {count_scope::sender_domain, "brand.example"},
             {count_scope::workspace, ""}}) {
        INFO(to_string(scope) << " " << id);
        auto rows = b->daily_counts(scope, id, today - 2, today);
        REQUIRE(rows.size() == 3);
        CHECK(rows[0] == daily_count{today - 2, {}});
        CHECK(rows[2].day == today);
        CHECK(rows[2][count_metric::sent] == 10);
        CHECK(rows[2][count_metric::bounced_hard] == 3);
        CHECK(rows[2][count_metric::delivered] == 7);
        CHECK(rows[2][count_metric::opened] == 1);
        CHECK(rows[2][count_metric::complained] == 1);
        CHECK(rows[2][count_metric::bounced_soft] == 0);
    }
    CHECK(total(*a, count_scope::mailbox, "m2", count_metric::sent, today, today) == 0);
    CHECK_THROWS_AS(a->daily_counts(count_scope::mailbox, "m1", today, today - 1), exception);
    CHECK_THROWS_AS(a->daily_counts(count_scope::mailbox, "m1", today - 4000, today), exception);

    // 10 more sends: 20 counted, 3 bounces = 15%. The next bounce (on
    // both engines at once) fires the rule, once.
    ids = env.send(*a, 10, "second");
    CHECK(a->check_pause_rules().size() + b->check_pause_rules().size() == 1);
    CHECK(a->is_paused({pause_scope::mailbox, "m1"}));
    env.run_until([&] { return b->is_paused({pause_scope::mailbox, "m1"}); });
    const auto batch2 = sendgrid_events(env, "b2", {{ids[0], "bounce"}});
    CHECK(ingest_both(batch2) == 1);
    a->flush();
    b->flush();
    env.run_until([&] { return env.seen_of(event_type::auto_paused) >= 1; });
    CHECK(env.seen_of(event_type::auto_paused) == 1);
    CHECK(audit_count(*a, "rule.fired") == 1);
    const auto log = a->audit_log();
    const auto fired = std::find_if(log.begin(), log.end(),
                                    [](const audit_record& r) { return r.action == "rule.fired"; });
    REQUIRE(fired != log.end());
    CHECK(fired->actor == "rule:bounces");
    CHECK(fired->resource_id == "m1");
    CHECK(fired->after.find(R"("rule":"bounces")") != std::string::npos);
    CHECK(fired->after.find(R"("volume":20)") != std::string::npos);
    CHECK(fired->after.find(R"("count":3)") != std::string::npos);
    // The firing key's generation: no resume yet.
    CHECK(fired->after.find(R"("generation":0)") != std::string::npos);
    const auto pauses = b->pauses();
    REQUIRE(pauses.size() == 1);
    CHECK(pauses[0].actor == "rule:bounces");
    // Nothing leaves through the paused mailbox.
    send_request r;
    r.mailbox = "m1";
    r.to = address{"late", "prospect.example", {}};
    r.subject = "Hi";
    r.text = "Hello";
    std::optional<error_code> late;
    a->async_send(r, [&](error_code ec, send_result) { late = ec; });
    env.run_until([&] { return late.has_value(); });
    // A paused mailbox is not eligible: no mailbox can send.
    CHECK((*late == errc::paused || *late == errc::no_capacity));

    // A resume with a reason is audited and starts 7 days of grace.
    a->resume(principal{"ops", "Ops"}, {pause_scope::mailbox, "m1"}, "list cleaned");
    const auto after = a->audit_log();
    CHECK(after.back().action == "resume");
    CHECK(after.back().actor == "ops");
    CHECK(after.back().after.find("list cleaned") != std::string::npos);
    env.run_until([&] { return !b->is_paused({pause_scope::mailbox, "m1"}); });
    CHECK(a->check_pause_rules().empty());
    env.clock->advance(std::chrono::hours(24 * 6));
    CHECK(b->check_pause_rules().empty());
    // Past the grace, the same rate (still within 28 days) fires again,
    // once, whichever engines check.
    env.clock->advance(std::chrono::hours(24 * 2));
    std::atomic<std::size_t> again{0};
    std::thread ta([&] { again += a->check_pause_rules().size(); });
    std::thread tb([&] { again += b->check_pause_rules().size(); });
    ta.join();
    tb.join();
    CHECK(again.load() == 1);
    CHECK(audit_count(*a, "rule.fired") == 2);
    // Under the generation the resume began.
    const auto refired = a->audit_log();
    const auto last = std::find_if(refired.rbegin(), refired.rend(),
                                   [](const audit_record& r) { return r.action == "rule.fired"; });
    REQUIRE(last != refired.rend());
    CHECK(last->after.find(R"("generation":1)") != std::string::npos);
    CHECK(a->verify_audit() == error_code{});
}

// Rules never fire below their minimum volume, whatever the rate.
void rules_wait_for_volume(const store_factory& open, const std::string& ws, std::uint64_t seed) {
    rules_env env;
    auto e = env.engine_on(open(), ws);
    setup_pool(env, *e, {"m1", "m2", "m3"});
    auto rule = bounce_rate_preset("any-mailbox");
    rule.min_volume = 30;
    rule.max_rate = 0.01;
    e->put_pause_rule(env.admin, rule);
    std::mt19937_64 rng(seed);
    INFO("seed " << seed);
    for (const std::string m : {"m1", "m2", "m3"}) {
        const int n = 1 + static_cast<int>(rng() % 29);
        auto ids = env.send(*e, n, "v-" + m, m);
        std::vector<std::pair<std::string, std::string>> evs;
        for (const auto& id : ids) {
            const auto roll = rng() % 3;
            evs.emplace_back(id, roll == 0 ? "bounce" : roll == 1 ? "blocked" : "delivered");
        }
        e->ingest_webhook(webhook_provider::sendgrid, sendgrid_events(env, "v" + m, evs).view(),
                          unverified());
        CHECK(e->check_pause_rules().empty());
        CHECK_FALSE(e->is_paused({pause_scope::mailbox, m}));
    }
    CHECK(audit_count(*e, "rule.fired") == 0);
}

// N soft bounces of one address within M days suppress it, once, counted
// across engines; a redelivery counts once; older bounces drop out.
void soft_bounce_threshold(const store_factory& open, const std::string& ws) {
    rules_env env;
    auto a = env.engine_on(open(), ws);
    auto b = env.engine_on(open(), ws);
    setup_pool(env, *a, {"m1"});
    const auto params = unverified();
    auto soft = [&](engine& e, const std::string& tag, const std::string& email) {
        webhook_body w;
        w.body = fmt::format(
            R"([{{"email":"{}","timestamp":{},"event":"bounce","type":"blocked",)"
            R"("sg_event_id":"{}","sg_message_id":"sg-{}","reason":"452 mailbox full"}}])",
            email, env.now_secs(), tag, tag);
        webhook_body copy = w;
        return e.ingest_webhook(webhook_provider::sendgrid, copy.view(), params);
    };
    // Off by default: soft bounces are events only.
    CHECK(a->soft_bounces() == soft_bounce_policy{});
    for (int i = 0; i < 4; ++i) soft(*a, "off-" + std::to_string(i), "full@prospect.example");
    CHECK_FALSE(a->is_suppressed("full@prospect.example"));

    // Bad input is refused and changes nothing.
    const auto records = a->audit_log().size();
    CHECK_THROWS_AS(a->set_soft_bounce_policy(env.admin, {1001, 7}), exception);
    CHECK_THROWS_AS(a->set_soft_bounce_policy(env.admin, {3, 0}), exception);
    CHECK_THROWS_AS(a->set_soft_bounce_policy(env.admin, {3, 366}), exception);
    CHECK(a->audit_log().size() == records);
    CHECK(a->soft_bounces() == soft_bounce_policy{});

    a->set_soft_bounce_policy(env.admin, {3, 7});
    env.run_until([&] { return b->soft_bounces().threshold == 3; });
    CHECK(soft(*a, "x-1", "x@prospect.example").suppressed == 0);
    CHECK(soft(*b, "x-1", "x@prospect.example").duplicates == 1);  // counts once
    CHECK(soft(*b, "x-2", "x@prospect.example").suppressed == 0);
    CHECK_FALSE(b->is_suppressed("x@prospect.example"));
    CHECK(soft(*a, "x-3", "x@prospect.example").suppressed == 1);
    CHECK(a->is_suppressed("x@prospect.example"));
    env.run_until([&] { return b->is_suppressed("x@prospect.example"); });
    const auto entry = a->find_suppression("x@prospect.example");
    REQUIRE(entry);
    CHECK(entry->reason == suppression_reason::hard_bounce);
    CHECK(entry->source == "soft-bounce-threshold");
    // Spread wider than the window: never three within 7 days.
    for (int i = 0; i < 4; ++i) {
        CHECK(soft(*b, "y-" + std::to_string(i), "y@prospect.example").suppressed == 0);
        env.clock->advance(std::chrono::hours(24 * 4));
    }
    CHECK_FALSE(a->is_suppressed("y@prospect.example"));
    // Both engines take the third bounce of one address at once: one
    // suppression, one record.
    soft(*a, "z-1", "z@prospect.example");
    soft(*b, "z-2", "z@prospect.example");
    std::atomic<std::size_t> made{0};
    std::thread ta([&] { made += soft(*a, "z-3", "z@prospect.example").suppressed; });
    std::thread tb([&] { made += soft(*b, "z-4", "z@prospect.example").suppressed; });
    ta.join();
    tb.join();
    CHECK(made.load() == 1);
    CHECK(suppression_records(*a, "z@prospect.example") == 1);
    CHECK(a->verify_audit() == error_code{});
    CHECK(a->verify_suppressions().ok);
}

}  // namespace

TEST_CASE("daily counts and a pause rule, two engines on one SQLite file") {
    db_file db("rules-counts");
    counts_and_rule(sqlite_factory(db), "default");
}

TEST_CASE("daily counts and a pause rule, two engines on PostgreSQL") {
    auto server = pg_server();
    if (!server) return;
    counts_and_rule(postgres_factory(*server), fresh_workspace("rules_counts"));
}

TEST_CASE("pause rules never fire below their minimum volume") {
    db_file db("rules-volume");
    const std::uint64_t seed = std::random_device{}();
    rules_wait_for_volume(sqlite_factory(db), "default", seed);
    if (auto server = pg_server())
        rules_wait_for_volume(postgres_factory(*server), fresh_workspace("rules_volume"), seed);
}

TEST_CASE("soft bounces past the threshold suppress once (SQLite)") {
    db_file db("rules-soft");
    soft_bounce_threshold(sqlite_factory(db), "default");
}

TEST_CASE("soft bounces past the threshold suppress once (PostgreSQL)") {
    auto server = pg_server();
    if (!server) return;
    soft_bounce_threshold(postgres_factory(*server), fresh_workspace("rules_soft"));
}

TEST_CASE("pause rules: bad input is refused, access is checked, changes are audited") {
    db_file db("rules-config");
    rules_env env;
    auto e = env.engine_on(sqlite_factory(db)(), "default", [](engine_params& p) {
        p.authorize = [](const principal& who, const access_request& r) {
            return !(who.id == "intruder" && r.action.starts_with("rule."));
        };
    });
    const auto records = e->audit_log().size();
    auto refused = [&](pause_rule r) {
        CHECK_THROWS_AS(e->put_pause_rule(env.admin, r), exception);
    };
    auto good = bounce_rate_preset("ok");
    auto r = good;
    r.id = "";
    refused(r);
    r.id = "bad id";
    refused(r);
    r = good;
    r.scope = pause_scope::workspace;
    r.target = "x";
    refused(r);
    r = good;
    r.max_rate = 0;
    refused(r);
    r.max_rate = 1.5;
    refused(r);
    r = good;
    r.window_days = 0;
    refused(r);
    r = good;
    r.grace_days = 400;
    refused(r);
    r = good;
    r.scope = pause_scope::sender_domain;
    r.target = "not a domain";
    refused(r);
    CHECK(e->pause_rules().empty());
    CHECK(e->audit_log().size() == records);
    try {
        e->put_pause_rule(principal{"intruder", "Intruder"}, good);
        FAIL("an unauthorised rule was stored");
    } catch (const exception& ex) {
        CHECK(ex.code() == errc::permission_denied);
    }
    CHECK(e->pause_rules().empty());

    e->put_pause_rule(env.admin, good);
    auto c = complaint_rate_preset("gmail");
    c.target = "Brand.Example";
    e->put_pause_rule(env.admin, c);
    const auto rules = e->pause_rules();
    REQUIRE(rules.size() == 2);
    CHECK(rules[0].id == "gmail");
    CHECK(rules[0].target == "brand.example");
    CHECK(rules[0].max_rate == doctest::Approx(0.003));
    CHECK(rules[1] == good);
    CHECK(audit_count(*e, "rule.put") == 2);
    CHECK_THROWS_AS(e->remove_pause_rule(principal{"intruder", "Intruder"}, "ok"), exception);
    CHECK(e->remove_pause_rule(env.admin, "ok"));
    CHECK_FALSE(e->remove_pause_rule(env.admin, "ok"));
    CHECK(audit_count(*e, "rule.remove") == 1);
    // Stored: a new engine on the store has them.
    auto again = env.engine_on(sqlite_factory(db)(), "default");
    REQUIRE(again->pause_rules().size() == 1);
    CHECK(again->pause_rules()[0].id == "gmail");
}

TEST_CASE("a failure-rate rule pauses a mailbox from the send path, counted per day") {
    db_file db("rules-failures");
    rules_env env;
    auto inner = std::make_shared<capture_transport>(env.ioc.get_executor());
    auto faulty = std::make_shared<fault_injector>(inner);
    faulty->fail_with_probability(1.0, make_error_code(transport_errc::content_rejected));
    auto e = env.make(sqlite_factory(db)(), "default", faulty, 10s);
    e->upsert_mailbox(env.admin, env.mailbox("m1"));
    auto r = bounce_rate_preset("failing");
    r.metric = rule_metric::failures;
    r.window_days = 1;
    r.max_rate = 0.5;
    r.min_volume = 10;
    e->put_pause_rule(env.admin, r);
    std::atomic<int> done{0};
    for (int i = 0; i < 10; ++i) {
        send_request req;
        req.mailbox = "m1";
        req.to = address{"f" + std::to_string(i), "prospect.example", {}};
        req.subject = "Hi";
        req.text = "Hello";
        e->async_send(req, [&](error_code, send_result) { ++done; });
        env.run_until([&] { return done == i + 1; });
    }
    const count_day today = utc_day(env.clock->now());
    CHECK(total(*e, count_scope::mailbox, "m1", count_metric::failed, today, today) == 10);
    CHECK(total(*e, count_scope::mailbox, "m1", count_metric::sent, today, today) == 0);
    env.run_until([&] { return e->is_paused({pause_scope::mailbox, "m1"}); });
    CHECK(audit_count(*e, "rule.fired") == 1);
    CHECK(e->check_pause_rules().empty());  // paused already
}

// No event announces this crossing: the sends that bring the mailbox to the
// rule's minimum volume are clean. The engine's own sweep finds it; a second
// engine on the workspace sweeps too, and the rule still fires once.
void crossing_without_an_event(const store_factory& open, const std::string& ws,
                               std::chrono::seconds sweep) {
    rules_env env;
    auto sweep_often = [&](engine_params& p) { p.rule_check_interval = sweep; };
    auto a = env.engine_on(open(), ws, sweep_often);
    auto b = env.engine_on(open(), ws, sweep_often);
    setup_pool(env, *a, {"m1"});
    auto r = bounce_rate_preset("volume");
    r.max_rate = 0.05;
    r.min_volume = 20;
    a->put_pause_rule(env.admin, r);
    auto ids = env.send(*a, 10, "first");
    a->ingest_webhook(webhook_provider::sendgrid,
                      sendgrid_events(env, "v", {{ids[0], "bounce"}, {ids[1], "bounce"}}).view(),
                      unverified());
    CHECK_FALSE(a->is_paused({pause_scope::mailbox, "m1"}));  // 2 of 10: below the volume
    env.send(*b, 10, "second");                                // 2 of 20: 10%, no new event
    if (sweep.count() == 0) {
        // Nothing evaluates the crossing until the host asks.
        CHECK_FALSE(a->is_paused({pause_scope::mailbox, "m1"}));
        CHECK(a->check_pause_rules().size() == 1);
    }
    env.run_until([&] { return env.seen_of(event_type::auto_paused) >= 1; });
    CHECK(a->is_paused({pause_scope::mailbox, "m1"}));
    env.run_until([&] { return b->is_paused({pause_scope::mailbox, "m1"}); });
    CHECK(a->check_pause_rules().empty());
    CHECK(b->check_pause_rules().empty());
    CHECK(audit_count(*a, "rule.fired") == 1);
    CHECK(env.seen_of(event_type::auto_paused) == 1);
}

TEST_CASE("the engine sweeps pause rules for crossings no event announces (SQLite)") {
    db_file db("rules-sweep");
    crossing_without_an_event(sqlite_factory(db), "default", 1s);
}

TEST_CASE("the engine sweeps pause rules for crossings no event announces (PostgreSQL)") {
    auto server = pg_server();
    if (!server) return;
    crossing_without_an_event(postgres_factory(*server), fresh_workspace("rules_sweep"), 1s);
}

TEST_CASE("with the sweep off, a crossing no event announces waits for check_pause_rules") {
    db_file db("rules-no-sweep");
    crossing_without_an_event(sqlite_factory(db), "default", 0s);
}

TEST_CASE("a rule over the last N sends looks back only as many days as they take") {
    db_file db("rules-window-sends");
    rules_env env;
    auto e = env.engine_on(sqlite_factory(db)(), "default");
    setup_pool(env, *e, {"m1"});
    // The same rate over two windows: the last 10 sends, and 28 days.
    auto recent = bounce_rate_preset("recent");
    recent.window_sends = 10;
    recent.max_rate = 0.1;
    recent.min_volume = 10;
    auto month = recent;
    month.id = "month";
    month.scope = pause_scope::pool;
    month.window_sends = 0;
    month.window_days = 28;
    e->put_pause_rule(env.admin, recent);
    e->put_pause_rule(env.admin, month);
    env.send(*e, 20, "old");  // a clean day
    env.clock->advance(std::chrono::hours(24));
    auto ids = env.send(*e, 10, "new");
    e->ingest_webhook(webhook_provider::sendgrid,
                      sendgrid_events(env, "w", {{ids[0], "bounce"}, {ids[1], "bounce"}}).view(),
                      unverified());
    // 2 of the last 10 sends is 20%; 2 of 30 over the month is 6.7%.
    CHECK(e->is_paused({pause_scope::mailbox, "m1"}));
    CHECK_FALSE(e->is_paused({pause_scope::pool, "p"}));
    const auto log = e->audit_log();
    const auto fired = std::find_if(log.begin(), log.end(),
                                    [](const audit_record& r) { return r.action == "rule.fired"; });
    REQUIRE(fired != log.end());
    CHECK(fired->after.find(R"("volume":10)") != std::string::npos);
    CHECK(audit_count(*e, "rule.fired") == 1);
}

TEST_CASE("pause rules follow access control: a pool grant covers a rule on that pool only") {
    db_file db("rules-access");
    rules_env env;
    auto e = env.engine_on(sqlite_factory(db)(), "default");
    setup_pool(env, *e, {"m1"});
    const principal root = env.admin, bob{"bob", "Bob"};
    e->put_role(root, {"root", {permission::manage_access, permission::pause}});
    e->grant_access(root, {root.id, "root", {}});
    e->put_role(root, {"pauser", {permission::pause}});
    e->grant_access(root, {"bob", "pauser", {access_scope::kind::pool, "p"}});
    e->set_access_control(root, true);
    auto mine = bounce_rate_preset("pool-p", pause_scope::pool);
    mine.target = "p";
    e->put_pause_rule(bob, mine);
    const auto every = bounce_rate_preset("every-pool", pause_scope::pool);
    try {
        e->put_pause_rule(bob, every);
        FAIL("a rule over every pool was stored under a grant over one");
    } catch (const exception& ex) {
        CHECK(ex.code() == errc::permission_denied);
    }
    e->put_pause_rule(root, every);
    CHECK_THROWS_AS(e->remove_pause_rule(bob, "every-pool"), exception);
    CHECK(e->remove_pause_rule(bob, "pool-p"));
    REQUIRE(e->pause_rules().size() == 1);
    CHECK(e->pause_rules()[0].id == "every-pool");
    CHECK(audit_count(*e, "access.denied") == 2);
}

// --- one commit per request, and what breaks it ------------------------------------

namespace {

// Refuses commits that record event keys, on demand: `fail_next` of them,
// then each with probability `chance`. Half the random refusals fail before
// the store sees the commit, half in its middle: an op the store refuses
// (a tally with threshold 0) is put between two events' ops, after some
// of them are applied in the transaction.
class event_fault_store final : public forwarding_store {
public:
    using forwarding_store::forwarding_store;

    std::atomic<int> fail_next{0};
    std::atomic<bool> random_faults{false};
    double chance = 0.3;
    std::atomic<int> refused{0};
    std::atomic<bool> broken_applied{false};

    commit_result commit(std::string_view ws, std::span<const store_op> ops) override {
        const bool events = std::any_of(ops.begin(), ops.end(), [](const store_op& op) {
            const auto* k = std::get_if<store_ops::record_key>(&op);
            return k && k->namespace_ == "event";
        });
        if (!events) return forwarding_store::commit(ws, ops);
        bool mid = false;
        if (fail_next.load() > 0) {
            --fail_next;
        } else if (random_faults.load()) {
            std::lock_guard lock(mu_);
            if (std::uniform_real_distribution<double>(0, 1)(rng_) >= chance)
                return forwarding_store::commit(ws, ops);
            mid = rng_() % 2 == 0;
        } else {
            return forwarding_store::commit(ws, ops);
        }
        ++refused;
        if (!mid)
            throw exception(make_error_code(errc::store_error),
                            "injected: the store is unavailable");
        // Between two events' guarded ops, past the middle of the commit.
        std::vector<store_op> broken(ops.begin(), ops.end());
        std::size_t at = ops.size(), guarded_until = 0;
        for (std::size_t i = 0; i < ops.size(); ++i) {
            if (i >= guarded_until && i >= ops.size() / 2) {
                at = i;
                break;
            }
            if (const auto* k = std::get_if<store_ops::record_key>(&ops[i]))
                guarded_until = i + 1 + k->guards;
        }
        broken.insert(
            broken.begin() + static_cast<std::ptrdiff_t>(at),
            store_ops::tally_soft_bounce{"fault@prospect.example", test_epoch(), test_epoch(), 0});
        forwarding_store::commit(ws, broken);
        broken_applied = true;
        throw exception(make_error_code(errc::store_error),
                        "the store applied a commit holding a refused op");
    }

private:
    std::mutex mu_;
    std::mt19937 rng_{std::random_device{}()};
};

// A signed Mailgun request: one event for `recipient`, "failed" permanently
// (a hard bounce) or "delivered".
webhook_body mailgun_request(std::string_view key, std::int64_t secs, const std::string& token,
                             const std::string& event_id, const std::string& recipient,
                             bool bounce) {
    const std::string ts = std::to_string(secs);
    const auto sig = webhooks::to_hex(webhooks::as_view(webhooks::hmac_sha256(key, ts + token)));
    webhook_body w;
    w.body = fmt::format(
        R"({{"signature":{{"timestamp":"{}","token":"{}","signature":"{}"}},)"
        R"("event-data":{{"event":"{}",{}"id":"{}","timestamp":{},"recipient":"{}"}}}})",
        ts, token, sig, bounce ? "failed" : "delivered", bounce ? R"("severity":"permanent",)" : "",
        event_id, secs, recipient);
    return w;
}

void mailgun_retry_after_failed_apply(const store_factory& open, const std::string& ws) {
    dedup_env env;
    auto faults = std::make_shared<event_fault_store>(open());
    auto e = env.make(faults, ws);
    constexpr std::string_view key = "TEST_WEBHOOK_SIGNING_KEY";
    webhook_params p;
    p.now = env.clock->now();
    p.mailgun.signing_key = std::string(key);
    p.mailgun.replay = std::make_shared<store_replay_cache>(open(), ws);
    const auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(env.clock->now().time_since_epoch())
            .count();
    const auto request =
        mailgun_request(key, secs, "tok-retry", "ev-retry", "gil@prospect.example", true);
    faults->fail_next = 1;
    CHECK_THROWS_AS(e->ingest_webhook(webhook_provider::mailgun, request.view(), p), exception);
    CHECK(faults->refused.load() == 1);
    CHECK_FALSE(e->is_suppressed("gil@prospect.example"));
    // The provider's retry of the same request, with its token: applied.
    auto retry = e->ingest_webhook(webhook_provider::mailgun, request.view(), p);
    CHECK(retry.webhook.http_status == 200);
    CHECK(retry.suppressed == 1);
    CHECK(retry.duplicates == 0);
    // Once applied, the token is spent again.
    auto replay = e->ingest_webhook(webhook_provider::mailgun, request.view(), p);
    CHECK(replay.webhook.http_status == 403);
    env.drain({e.get()});
    CHECK(env.seen_of(event_type::bounced) == 1);
    CHECK(suppression_records(*e, "gil@prospect.example") == 1);
    CHECK(e->verify_audit() == error_code{});
}

// One distinct SendGrid event of the randomised batches.
struct sg_event {
    std::string json;
    event_type type;
    std::string address;
    bool suppresses() const {
        return type == event_type::bounced || type == event_type::complained ||
               type == event_type::unsubscribed;
    }
};

// Two engines, each on a store that refuses some commits (before or in the
// middle), ingest the same randomised batches at once, each in its own
// order, retrying a refused batch as a provider does. Batches repeat events
// (within and across them); each suppressing address has one suppressing
// event. Every event is applied once, every suppression made once, the
// counts are exact and the audit chain verifies.
void randomised_batches_with_faults(const store_factory& open, const std::string& ws) {
    dedup_env env;
    auto fa = std::make_shared<event_fault_store>(open());
    auto fb = std::make_shared<event_fault_store>(open());
    auto a = env.make(fa, ws);
    auto b = env.make(fb, ws);
    const auto seed = std::random_device{}();
    INFO("seed " << seed);
    std::mt19937 rng(seed);
    std::vector<sg_event> events;
    const auto secs =
        std::chrono::duration_cast<std::chrono::seconds>(env.clock->now().time_since_epoch())
            .count();
    auto add = [&](const std::string& address, std::string_view name, event_type t) {
        const auto id = events.size();
        const std::string extra =
            name == "bounce" ? R"("type":"bounce","reason":"550 5.1.1 no such user",)" : "";
        events.push_back(
            {fmt::format(R"({{"email":"{}","timestamp":{},"event":"{}",{}"sg_event_id":"rb-{}",)"
                         R"("sg_message_id":"sg-rb-{}"}})",
                         address, secs, name, extra, id, id),
             t, address});
    };
    constexpr int addresses = 40;
    for (int i = 0; i < addresses; ++i) {
        const auto address = fmt::format("rb-{}@prospect.example", i);
        add(address, "delivered", event_type::delivered);
        if (rng() % 2) add(address, "open", event_type::opened);
        if (rng() % 3 == 0) add(address, "click", event_type::clicked);
        switch (rng() % 4) {
            case 0:
                add(address, "bounce", event_type::bounced);
                break;
            case 1:
                add(address, "spamreport", event_type::complained);
                break;
            case 2:
                add(address, "unsubscribe", event_type::unsubscribed);
                break;
            default:
                break;  // suppresses nothing
        }
    }
    // Batches of random events, duplicates included; every event in one at least.
    std::vector<std::vector<std::size_t>> picks(12);
    for (auto& batch : picks)
        for (std::size_t n = 10 + rng() % 20; n > 0; --n) batch.push_back(rng() % events.size());
    for (std::size_t i = 0; i < events.size(); ++i) picks[rng() % picks.size()].push_back(i);
    std::vector<webhook_body> batches;
    for (auto& batch : picks) {
        std::shuffle(batch.begin(), batch.end(), rng);
        std::string body = "[";
        for (std::size_t k = 0; k < batch.size(); ++k)
            body += (k ? "," : "") + events[batch[k]].json;
        batches.push_back(webhook_body{body + "]"});
    }
    fa->random_faults = true;
    fb->random_faults = true;
    const auto params = unverified();
    std::atomic<std::size_t> suppressed{0}, duplicates{0}, already{0}, taken{0}, refused{0};
    auto ingest_all = [&](engine& e, unsigned order_seed) {
        std::vector<std::size_t> order(batches.size());
        std::iota(order.begin(), order.end(), 0);
        std::shuffle(order.begin(), order.end(), std::mt19937(order_seed));
        for (const auto i : order)
            for (int attempt = 0;; ++attempt) {
                REQUIRE(attempt < 200);
                try {
                    auto out =
                        e.ingest_webhook(webhook_provider::sendgrid, batches[i].view(), params);
                    CHECK(out.webhook.http_status == 200);
                    suppressed += out.suppressed;
                    duplicates += out.duplicates;
                    already += out.already_suppressed;
                    taken += out.webhook.events.size();
                    break;
                } catch (const exception&) {
                    ++refused;  // answered 5xx: the provider delivers it again
                }
            }
    };
    std::thread ta([&] { ingest_all(*a, seed + 1); });
    std::thread tb([&] { ingest_all(*b, seed + 2); });
    ta.join();
    tb.join();
    fa->random_faults = false;
    fb->random_faults = false;
    env.drain({a.get(), b.get()});
    CHECK(refused.load() == static_cast<std::size_t>(fa->refused + fb->refused));
    CHECK_FALSE(fa->broken_applied.load());
    CHECK_FALSE(fb->broken_applied.load());
    MESSAGE(refused.load() << " requests refused by injected faults");

    std::size_t suppressing = 0;
    std::map<event_type, std::size_t> of_type;
    for (const auto& ev : events) {
        suppressing += ev.suppresses();
        ++of_type[ev.type];
    }
    CHECK(taken.load() - duplicates.load() == events.size());
    CHECK(suppressed.load() == suppressing);
    CHECK(already.load() == 0);
    for (const auto& [type, n] : of_type) CHECK(env.seen_of(type) == n);
    for (const auto& ev : events) {
        if (!ev.suppresses()) continue;
        CHECK(suppression_records(*a, ev.address) == 1);
        CHECK(a->is_suppressed(ev.address));
        CHECK(b->is_suppressed(ev.address));
    }
    const auto day = utc_day(env.clock->now());
    std::uint64_t counted[count_metric_count] = {};
    for (const auto& d : a->daily_counts(count_scope::workspace, "", day - 1, day + 1))
        for (std::size_t m = 0; m < count_metric_count; ++m) counted[m] += d.n[m];
    auto count_of = [&](count_metric m) { return counted[static_cast<std::size_t>(m)]; };
    CHECK(count_of(count_metric::delivered) == of_type[event_type::delivered]);
    CHECK(count_of(count_metric::opened) == of_type[event_type::opened]);
    CHECK(count_of(count_metric::clicked) == of_type[event_type::clicked]);
    CHECK(count_of(count_metric::bounced_hard) == of_type[event_type::bounced]);
    CHECK(count_of(count_metric::complained) == of_type[event_type::complained]);
    CHECK(count_of(count_metric::unsubscribed) == of_type[event_type::unsubscribed]);
    CHECK(a->verify_audit() == error_code{});
    CHECK(b->verify_audit() == error_code{});
    CHECK(a->verify_suppressions().ok);
}

}  // namespace

TEST_CASE("a request's events, suppressions included, commit once") {
    db_file db("dedup-one-commit");
    dedup_env env;
    auto e = env.make(sqlite_factory(db)(), "default");
    const auto params = unverified();
    // Two events about one address, the second finding it suppressed by the
    // first in the same commit.
    webhook_body batch;
    batch.body = sendgrid_batch("one", 3, 4).body;
    batch.body.back() = ',';
    batch.body +=
        R"({"email":"one-0@prospect.example","timestamp":1764072000,"event":"spamreport",)"
        R"("sg_event_id":"one-spam","sg_message_id":"sg-one-spam"}])";
    const auto commits = e->stats().commits;
    auto out = e->ingest_webhook(webhook_provider::sendgrid, batch.view(), params);
    CHECK(out.webhook.http_status == 200);
    CHECK(e->stats().commits - commits == 1);
    CHECK(out.suppressed == 3);
    CHECK(out.already_suppressed == 1);
    CHECK(out.duplicates == 0);
    CHECK(suppression_records(*e, "one-0@prospect.example") == 1);
    auto again = e->ingest_webhook(webhook_provider::sendgrid, batch.view(), params);
    CHECK(again.duplicates == 8);
    CHECK(again.suppressed == 0);
    env.drain({e.get()});
    CHECK(env.seen_of(event_type::bounced) == 3);
    CHECK(env.seen_of(event_type::complained) == 1);
    CHECK(e->verify_audit() == error_code{});
    CHECK(e->verify_suppressions().ok);
}

TEST_CASE("a Mailgun retry after a failed apply is applied once (SQLite)") {
    db_file db("dedup-mailgun-retry");
    mailgun_retry_after_failed_apply(sqlite_factory(db), "default");
}

TEST_CASE("a Mailgun retry after a failed apply is applied once (PostgreSQL)") {
    auto server = pg_server();
    if (!server) return;
    mailgun_retry_after_failed_apply(postgres_factory(*server), fresh_workspace("dedup_mg_retry"));
}

TEST_CASE("randomised batches on two engines with faults apply each event once (SQLite)") {
    db_file db("dedup-randomised");
    randomised_batches_with_faults(sqlite_factory(db), "default");
}

TEST_CASE("randomised batches on two engines with faults apply each event once (PostgreSQL)") {
    auto server = pg_server();
    if (!server) return;
    randomised_batches_with_faults(postgres_factory(*server), fresh_workspace("dedup_random"));
}
