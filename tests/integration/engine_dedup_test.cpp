// Provider events applied exactly once: redeliveries, the same retry
// reaching two engines of a workspace, and the store-backed replay cache.
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <cstdlib>
#include <mailers/postgres_store.hpp>
#include <mailers/store_replay_cache.hpp>
#include <mutex>
#include <random>
#include <thread>

#include "engine_fixture.hpp"
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
