// A new engine on the same SQLite file must carry on exactly where the old
// one stopped: the caps it used, the suppressions, the idempotency keys,
// the pauses, the audit chain; and a send that was in flight when it
// stopped is recorded `unknown` and never sent again.
#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <cstdlib>

#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

// Stops the engine the way a crash leaves the file: the engine handle goes,
// then a fresh connection opens the same file and a new engine loads it.
void restart(fixture& f, const std::string& path) {
    f.eng.reset();
    f.store = open_sqlite_store({path, mailers::open_mode::open_or_create});
    f.open();
}

std::uint64_t max_send_id(fixture& f) {
    f.eng->flush();
    std::uint64_t id = 0;
    f.store->for_each_send("default", time_point::min(), time_point::max(),
                           [&](const ledger_row& r) { id = std::max(id, r.id); });
    return id;
}

void check_audit_chain(fixture& f, std::size_t at_least) {
    CHECK(f.eng->verify_audit() == error_code{});
    auto log = f.eng->audit_log();
    REQUIRE(log.size() >= at_least);
    for (std::size_t i = 0; i < log.size(); ++i) CHECK(log[i].seq == i + 1);
}

}  // namespace

TEST_CASE("a restarted engine keeps caps, suppressions, keys, pauses and the audit chain") {
    db_file db("restart");
    fixture f(db.path.string());
    f.eng->upsert_mailbox(f.admin, f.mailbox("a", "a@brand.com", {rate_limit::per_day(5)}));
    auto c = f.mailbox("c", "c@brand.com", {rate_limit::per_day(3, window_kind::calendar)});
    c.time_zone = "America/New_York";
    f.eng->upsert_mailbox(f.admin, c);
    auto g = f.mailbox("g", "g@brand.com");
    g.min_gap = std::chrono::seconds(600);
    f.eng->upsert_mailbox(f.admin, g);
    f.eng->upsert_mailbox(f.admin, f.mailbox("s1", "s1@brand.com"));
    f.eng->upsert_mailbox(f.admin, f.mailbox("s2", "s2@brand.com"));
    f.add_pool("p", {"a"});
    rotation_policy sticky;
    sticky.sticky_sender = true;
    f.upsert_pool("sticky", {"s1", "s2"}, sticky);
    f.eng->set_quota(f.admin,
                     quota{quota_scope::recipient_domain, "*", {rate_limit::per_day(2)}, {}});
    f.eng->suppress(f.admin, suppression_kind::address, "Bob@Example.com",
                    suppression_reason::unsubscribe);
    f.eng->suppress(f.admin, suppression_kind::domain, "blocked.org", suppression_reason::legal);
    f.eng->pause(f.admin, {pause_scope::pool, "sticky"}, "audit in progress");

    std::vector<send_result> before;
    for (int i = 0; i < 3; ++i) {
        auto [ec, r] = f.send(
            fixture::request("p", "u" + std::to_string(i) + "@d" + std::to_string(i) + ".org",
                             "key-" + std::to_string(i)));
        REQUIRE_FALSE(ec);
        before.push_back(r);
    }
    for (int i = 0; i < 2; ++i)  // uses up the "*" quota for fill.org
        REQUIRE_FALSE(f.send(fixture::direct("c", "u" + std::to_string(i) + "@fill.org")).first);
    REQUIRE_FALSE(f.send(fixture::direct("g", "x@gap.org")).first);
    f.eng->resume(f.admin, {pause_scope::pool, "sticky"});
    auto first_sticky = f.send(fixture::request("sticky", "z@sticky.org"));
    REQUIRE_FALSE(first_sticky.first);
    f.eng->pause(f.admin, {pause_scope::pool, "sticky"}, "audit in progress");
    const auto ids_before = max_send_id(f);
    const auto audit_before = f.eng->audit_log().size();
    const auto handed_before = f.capture->count();

    f.clock->advance(std::chrono::seconds(1));
    restart(f, db.path.string());

    // Caps: what was used stays used. c has one of its three left today.
    CHECK(f.eng->status("a").sent_today == 3);
    CHECK(f.eng->status("c").sent_today == 2);
    CHECK_FALSE(f.send(fixture::direct("c", "v@other.org")).first);
    CHECK(f.send(fixture::direct("c", "v2@other.org")).first == errc::no_capacity);
    // The minimum gap runs from the last send before the restart.
    auto gap = f.send(fixture::direct("g", "y@gap.org"));
    CHECK(gap.first == errc::no_capacity);
    CHECK(gap.second.retry_at == test_epoch() + std::chrono::seconds(600));
    // Shared quotas are rebuilt too: fill.org has had its two today.
    CHECK(f.send(fixture::direct("a", "w@fill.org")).first == errc::no_capacity);

    // Suppression.
    CHECK(f.eng->is_suppressed("bob@example.com"));
    CHECK(f.eng->is_suppressed("anyone@mail.blocked.org"));
    CHECK(f.send(fixture::request("p", "BOB@example.com")).first == errc::suppressed);
    CHECK(f.send(fixture::request("p", "x@blocked.org")).first == errc::suppressed);

    // Idempotency keys: a duplicate after the restart is refused.
    for (int i = 0; i < 3; ++i) {
        auto [ec, r] =
            f.send(fixture::request("p", "someone@else.org", "key-" + std::to_string(i)));
        CHECK(ec == errc::duplicate);
        CHECK(r.duplicate);
        CHECK(r.send_id == before[static_cast<std::size_t>(i)].send_id);
        CHECK(r.state == send_state::accepted);
        CHECK(r.message_id == before[static_cast<std::size_t>(i)].message_id);
    }

    // Pauses.
    CHECK(f.eng->is_paused({pause_scope::pool, "sticky"}));
    CHECK(f.send(fixture::request("sticky", "z@sticky.org")).first == errc::paused);
    f.eng->resume(f.admin, {pause_scope::pool, "sticky"});
    // Sticky sender survives too.
    auto again_sticky = f.send(fixture::request("sticky", "z@sticky.org"));
    REQUIRE_FALSE(again_sticky.first);
    CHECK(again_sticky.second.mailbox == first_sticky.second.mailbox);

    CHECK(f.capture->count() == handed_before + 2);
    // The rest of a's cap, and no more.
    CHECK_FALSE(f.send(fixture::request("p", "n1@new1.org")).first);
    CHECK_FALSE(f.send(fixture::request("p", "n2@new2.org")).first);
    CHECK(f.send(fixture::request("p", "n3@new3.org")).first == errc::no_capacity);
    CHECK(f.eng->status("a").sent_today == 5);

    // New sends never reuse an id; the audit chain runs on across the restart.
    auto fresh = f.send(fixture::direct("s1", "q@new.org"));
    REQUIRE_FALSE(fresh.first);
    CHECK(std::stoull(fresh.second.send_id) > ids_before);
    check_audit_chain(f, audit_before + 1);

    // And once more, to make sure the second session's writes load too.
    restart(f, db.path.string());
    CHECK(f.eng->status("a").sent_today == 5);
    CHECK_FALSE(f.eng->is_paused({pause_scope::pool, "sticky"}));
    check_audit_chain(f, audit_before + 3);
}

TEST_CASE("a send in flight when the engine stops is recorded unknown and never sent again") {
    db_file db("in-flight");
    fixture f(db.path.string());
    auto gate = std::make_shared<held_transport>(f.ioc.get_executor());
    gate->set_hold(true);
    f.eng->add_provider(f.admin, "gate", gate);
    auto m = f.mailbox("a", "a@brand.com", {rate_limit::per_day(3)});
    m.provider = "gate";
    f.eng->upsert_mailbox(f.admin, m);
    f.add_pool("p", {"a"});

    // Handed to the transport, which never answers: then the engine goes.
    auto slot = f.start(fixture::request("p", "x@example.com", "in-flight-1"));
    f.run_until([&] { return gate->pending() == 1; });
    const auto send_id = gate->handed().at(0).send_id;
    auto row = f.ledger(send_id);
    REQUIRE(row);
    CHECK(row->state == send_state::reserved);

    f.eng.reset();
    f.store = open_sqlite_store({db.path.string(), mailers::open_mode::open_or_create});
    f.open();
    auto gate2 = std::make_shared<held_transport>(f.ioc.get_executor());
    f.eng->add_provider(f.admin, "gate", gate2);

    row = f.ledger(send_id);
    REQUIRE(row);
    CHECK(row->state == send_state::unknown);
    CHECK_FALSE(row->detail.empty());
    CHECK(f.eng->status("a").sent_today == 1);  // it may have gone: it counts

    auto [ec, r] = f.send(fixture::request("p", "x@example.com", "in-flight-1"));
    CHECK(ec == errc::duplicate);
    CHECK(r.send_id == send_id);
    CHECK(r.state == send_state::unknown);
    CHECK(gate2->handed().empty());

    CHECK_FALSE(f.send(fixture::request("p", "y@example.com")).first);
    CHECK_FALSE(f.send(fixture::request("p", "z@example.com")).first);
    CHECK(f.send(fixture::request("p", "w@example.com")).first == errc::no_capacity);
    CHECK(gate2->handed().size() == 2);

    // What a crash does to the old process's pending work: it is gone. The
    // old send never completes and the row stays unknown.
    gate->drop_pending();
    CHECK_FALSE(slot->has_value());
    restart(f, db.path.string());
    CHECK(f.ledger(send_id)->state == send_state::unknown);
    CHECK(f.eng->status("a").sent_today == 3);
    CHECK(f.eng->verify_audit() == error_code{});
}

TEST_CASE("a reserved row left by a crash before hand-off is recorded unknown, never sent") {
    // The crash fell between the durable reservation and the hand-off: the
    // engine cannot know which side of it the crash was on.
    db_file db("orphan");
    fixture f(db.path.string());
    f.eng->upsert_mailbox(f.admin, f.mailbox("a", "a@brand.com", {rate_limit::per_hour(2)}));
    f.add_pool("p", {"a"});
    f.eng.reset();

    // Reserved by a member that no longer exists (owner 0 is nobody's).
    ledger_row orphan;
    orphan.idempotency_key = "orphan-1";
    orphan.mailbox = "a";
    orphan.provider = "capture";
    orphan.pool = "p";
    orphan.recipient = "x@example.com";
    orphan.message_id = "orphan-1@brand.com";
    orphan.state = send_state::reserved;
    orphan.reserved_at = orphan.updated_at = test_epoch() - std::chrono::minutes(10);
    cap_claim use;
    use.key = "mailbox:a";
    std::vector<store_op> ops{store_ops::reserve_send{orphan, {use}, 0}};
    const auto reserved = f.store->commit("default", ops);
    REQUIRE(reserved.ops.size() == 1);
    REQUIRE(reserved.ops[0].reservation.status == reserve_status::reserved);
    const auto orphan_id = reserved.ops[0].reservation.send_id;

    f.store = open_sqlite_store({db.path.string(), mailers::open_mode::open_or_create});
    f.open();
    auto row = f.ledger(std::to_string(orphan_id));
    REQUIRE(row);
    CHECK(row->state == send_state::unknown);
    CHECK(f.eng->status("a").sent_this_hour == 1);
    CHECK(f.send(fixture::request("p", "x@example.com", "orphan-1")).first == errc::duplicate);
    CHECK_FALSE(f.send(fixture::request("p", "y@example.com")).first);
    auto [ec, r] = f.send(fixture::request("p", "z@example.com"));
    CHECK(ec == errc::no_capacity);
    CHECK(r.retry_at == orphan.reserved_at + std::chrono::hours(1));
    CHECK(f.capture->count() == 1);
    // New ids continue after the orphan's.
    CHECK(std::stoull(f.capture->last()->send_id) > orphan_id);
}

TEST_CASE("a stored object the engine cannot read stops the start, naming it") {
    db_file db("unreadable");
    fixture f(db.path.string());
    f.eng->upsert_mailbox(f.admin, f.mailbox("a", "a@brand.com", {rate_limit::per_day(5)}));
    f.eng->flush();
    std::string good;
    for (const auto& o : f.store->load("default", {}).objects)
        if (o.kind == "mailbox" && o.id == "a") good = o.json;
    REQUIRE(good.find("\"UTC\"") != std::string::npos);
    auto check_refused = [&](const std::string& kind, const std::string& id,
                             const std::string& json) {
        CAPTURE(kind);
        CAPTURE(json);
        f.eng.reset();
        f.store = open_sqlite_store({db.path.string(), open_mode::existing});
        f.store->commit("default", std::vector<store_op>{store_ops::put_object{{kind, id, json}}});
        try {
            f.open();
            FAIL("the engine started without the " << kind);
        } catch (const mailers::exception& e) {
            CHECK(e.code() == errc::store_corrupt);
            CHECK(std::string(e.what()).find(kind + " '" + id + "'") != std::string::npos);
        }
        f.store->commit("default", std::vector<store_op>{store_ops::delete_object{kind, id}});
    };
    check_refused("mailbox", "broken", "{not json");
    check_refused("pool", "p", "[]");
    check_refused("quota", "q", "{\"limits\":");
    // Written behind the engine's back: upsert_mailbox refuses this zone.
    auto bad_zone = good;
    bad_zone.replace(bad_zone.find("\"UTC\""), 5, "\"Mars/Olympus_Mons\"");
    check_refused("mailbox", "a", bad_zone);
    f.store->commit("default",
                    std::vector<store_op>{store_ops::put_object{{"mailbox", "a", good}}});
    // With the broken objects gone, the workspace opens as it was.
    f.eng.reset();
    f.store = open_sqlite_store({db.path.string(), open_mode::existing});
    f.open();
    CHECK(f.eng->status("a").id == "a");
}

namespace {

// SQL on the file behind the engine's back, as anyone with write access to
// it could run.
void tamper(const std::string& path, const std::string& sql) {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    INFO(sql << ": " << (err ? err : ""));
    sqlite3_free(err);
    sqlite3_close(db);
    REQUIRE(rc == SQLITE_OK);
}

std::unique_ptr<engine> engine_with_key(fixture& f, std::string key) {
    engine_params p;
    p.storage = f.store;
    p.clock = f.clock;
    p.random_seed = 42;
    p.audit_key = std::move(key);
    return std::make_unique<engine>(f.ioc.get_executor(), std::move(p));
}

std::uint64_t bad_seq_of(const engine& eng, const audit_head* checkpoint = nullptr) {
    std::uint64_t bad = 0;
    const error_code ec = checkpoint ? eng.verify_audit(*checkpoint, &bad) : eng.verify_audit(&bad);
    if (!ec) return 0;
    CHECK(ec == errc::audit_chain_broken);
    return bad;
}

}  // namespace

TEST_CASE("the audit log: a cut at the front is found, a cut at the end only by a checkpoint") {
    db_file db("audit-checkpoint");
    const std::string path = db.path.string();
    fixture f(path);
    for (const char* id : {"a", "b", "c"})
        f.eng->upsert_mailbox(f.admin, f.mailbox(id, std::string(id) + "@brand.com"));
    const auto log = f.eng->audit_log();
    const audit_head checkpoint = f.eng->audit_checkpoint();
    CHECK(checkpoint == audit_head{log.size(), log.back().hash});
    CHECK(log.front().seq == 1);
    CHECK(log.front().prev_hash.empty());
    f.eng->upsert_mailbox(f.admin, f.mailbox("d", "d@brand.com"));
    CHECK(bad_seq_of(*f.eng, &checkpoint) == 0);

    SUBCASE("the first record deleted") {
        tamper(path, "DELETE FROM audit WHERE seq = 1");
        CHECK(bad_seq_of(*f.eng) == 2);
        CHECK_THROWS_AS(f.eng->audit_checkpoint(), mailers::exception);
    }
    SUBCASE("the last records deleted, the head rewound, the engine restarted") {
        f.eng.reset();
        tamper(path,
               fmt::format("DELETE FROM audit WHERE seq >= {0}; UPDATE workspaces SET "
                           "audit_seq = {1}, audit_hash = '{2}'",
                           checkpoint.seq - 1, checkpoint.seq - 2, log[checkpoint.seq - 3].hash));
        restart(f, path);  // its add_provider record links to the cut chain
        CHECK(f.eng->audit_log().at(checkpoint.seq - 2).prev_hash == log[checkpoint.seq - 3].hash);
        CHECK(bad_seq_of(*f.eng) == 0);
        CHECK(bad_seq_of(*f.eng, &checkpoint) == checkpoint.seq);
    }
    SUBCASE("a record edited in the middle") {
        tamper(path, "UPDATE audit SET actor = 'mallory' WHERE seq = 2");
        CHECK(bad_seq_of(*f.eng) == 2);
    }
}

TEST_CASE("the audit log: with a key, a rewrite needs the key") {
    db_file db("audit-key");
    const std::string path = db.path.string();
    const std::string key = "a secret kept outside the database";
    ::setenv("MAILERS_TEST_AUDIT_KEY", key.c_str(), 1);
    fixture f(path);  // unkeyed: its add_provider record is hashed with SHA-256
    f.eng->upsert_mailbox(f.admin, f.mailbox("a", "a@brand.com"));
    const auto plain = f.eng->audit_log();
    f.eng.reset();

    auto keyed = engine_with_key(f, "env:MAILERS_TEST_AUDIT_KEY");
    keyed->upsert_mailbox(f.admin, f.mailbox("b", "b@brand.com"));
    auto log = keyed->audit_log();
    const auto marker_at = std::find_if(
        log.begin(), log.end(), [](const audit_record& r) { return r.action == audit_key_action; });
    REQUIRE(marker_at != log.end());
    const audit_record& marker = *marker_at;
    CHECK(marker.seq == plain.size() + 1);
    CHECK(marker.hash == audit_hash(marker, key));
    CHECK(marker.hash != audit_hash(marker));
    CHECK(log.back().hash == audit_hash(log.back(), key));
    CHECK(bad_seq_of(*keyed) == 0);
    const audit_head checkpoint = keyed->audit_checkpoint();
    CHECK(checkpoint.seq == log.size());

    SUBCASE("an engine without the key cannot check the keyed records") {
        keyed.reset();
        auto unkeyed = engine_with_key(f, "");
        CHECK(bad_seq_of(*unkeyed) == marker.seq);
    }
    SUBCASE("an engine with another key") {
        keyed.reset();
        auto other = engine_with_key(f, "another key");
        CHECK(bad_seq_of(*other) == marker.seq);
    }
    SUBCASE("everything re-hashed without the key") {
        // The key record renamed and every record re-linked and re-hashed
        // with the public audit_hash: a chain that verifies unkeyed.
        auto forged = log;
        forged[1].actor = "mallory";
        forged[marker.seq - 1].action = "mailbox.upsert";
        std::string sql;
        for (std::size_t i = 0; i < forged.size(); ++i) {
            forged[i].prev_hash = i == 0 ? std::string{} : forged[i - 1].hash;
            forged[i].hash = audit_hash(forged[i]);
            sql += fmt::format(
                "UPDATE audit SET actor = '{}', action = '{}', prev_hash = '{}', hash = '{}' "
                "WHERE seq = {};",
                forged[i].actor, forged[i].action, forged[i].prev_hash, forged[i].hash, i + 1);
        }
        tamper(path, sql);
        CHECK_FALSE(verify_audit_chain(keyed->audit_log(), audit_verify_options{}));
        CHECK(bad_seq_of(*keyed) == log.size() + 1);
        // The checkpoint's record is where the rewrite shows.
        CHECK(bad_seq_of(*keyed, &checkpoint) == checkpoint.seq);
    }
    SUBCASE("a keyed record edited") {
        tamper(path, fmt::format("UPDATE audit SET \"after\" = '{{}}' WHERE seq = {}", log.size()));
        CHECK(bad_seq_of(*keyed) == log.size());
    }
    SUBCASE("a key reference that does not resolve stops the start") {
        keyed.reset();
        ::unsetenv("MAILERS_TEST_AUDIT_KEY");
        try {
            engine_with_key(f, "env:MAILERS_TEST_AUDIT_KEY");
            FAIL("an engine started without its audit key");
        } catch (const mailers::exception& e) {
            CHECK(e.code() == errc::invalid_argument);
            CHECK(std::string(e.what()).find("audit_key") != std::string::npos);
            CHECK(std::string(e.what()).find(key) == std::string::npos);
        }
    }
    ::unsetenv("MAILERS_TEST_AUDIT_KEY");
}

TEST_CASE("a quota or pool another process stores unreadably stops what it governs here") {
    fixture f;
    std::mutex log_mu;
    std::vector<std::string> errors;
    f.eng.reset();
    engine_params p;
    p.storage = f.store;
    p.clock = f.clock;
    p.random_seed = 42;
    p.log.level = log_level::error;
    p.log.sink = [&](log_level, std::string_view m) {
        std::lock_guard lock(log_mu);
        errors.emplace_back(m);
    };
    f.eng = std::make_unique<engine>(f.ioc.get_executor(), std::move(p));
    f.eng->add_provider(f.admin, "capture", f.capture);
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    f.add_pool("p", {"rep1"});
    quota q;
    q.scope = quota_scope::provider;
    q.key = "capture";
    q.limits = {rate_limit::per_day(5)};
    f.eng->set_quota(f.admin, q);
    REQUIRE_FALSE(f.send(fixture::request("p", "a@example.com")).first);
    const auto logged = [&](const std::string& what) {
        std::lock_guard lock(log_mu);
        return std::any_of(errors.begin(), errors.end(),
                           [&](const std::string& e) { return e.find(what) != std::string::npos; });
    };
    // Another process's write, read back with this engine's next change.
    const auto stored_elsewhere = [&](stored_object o) {
        f.store->commit("default", std::vector<store_op>{store_ops::put_object{std::move(o)}});
        f.eng->suppress(f.admin, suppression_kind::address, "nobody@example.org",
                        suppression_reason::manual);
    };

    // Its old limits may be above the new ones: nothing it counts goes.
    stored_elsewhere({"quota", "provider:capture", "{\"limits\":"});
    CHECK(logged("quota 'provider:capture'"));
    auto [qec, qr] = f.send(fixture::request("p", "b@example.com"));
    CHECK(qec == errc::no_capacity);
    CHECK(f.capture->count() == 1);
    f.eng->set_quota(f.admin, q);
    REQUIRE_FALSE(f.send(fixture::request("p", "c@example.com")).first);
    CHECK(f.capture->count() == 2);

    stored_elsewhere({"pool", "p", "[]"});
    CHECK(logged("pool 'p'"));
    auto [pec, pr] = f.send(fixture::request("p", "d@example.com"));
    CHECK(pec == errc::store_corrupt);
    CHECK(pr.diag.message.find("pool 'p'") != std::string::npos);
    CHECK(f.capture->count() == 2);
    f.add_pool("p", {"rep1"});
    REQUIRE_FALSE(f.send(fixture::request("p", "e@example.com")).first);
    CHECK(f.capture->count() == 3);
}

TEST_CASE("an audit.key record marks the first keyed start and each change of key only") {
    db_file db("audit-key-once");
    fixture f(db.path.string());
    f.eng.reset();
    const auto key_records = [](const engine& e) {
        const auto log = e.audit_log();
        return std::count_if(log.begin(), log.end(),
                             [](const audit_record& r) { return r.action == audit_key_action; });
    };
    auto keyed = engine_with_key(f, "key one");
    CHECK(key_records(*keyed) == 1);
    keyed.reset();
    keyed = engine_with_key(f, "key one");
    CHECK(key_records(*keyed) == 1);
    CHECK(bad_seq_of(*keyed) == 0);
    keyed.reset();
    keyed = engine_with_key(f, "key two");
    CHECK(key_records(*keyed) == 2);
    keyed.reset();
    keyed = engine_with_key(f, "key two");
    CHECK(key_records(*keyed) == 2);
}

TEST_CASE("a workspace whose own record the store lost stops the start, naming it") {
    db_file db("lost-workspace");
    const std::string path = db.path.string();
    fixture f(path);
    f.eng->upsert_mailbox(f.admin, f.mailbox("a", "a@brand.com"));
    REQUIRE_FALSE(f.send(fixture::direct("a", "x@example.com")).first);
    f.eng.reset();
    // Its change seq, last send id and audit head go with it.
    tamper(path, "DELETE FROM workspaces WHERE name = 'default'");
    f.store = open_sqlite_store({path, open_mode::existing});
    try {
        f.open();
        FAIL("the engine started on a workspace that lost its record");
    } catch (const mailers::exception& e) {
        CHECK(e.code() == errc::store_missing);
        CHECK(std::string(e.what()).find("workspace 'default'") != std::string::npos);
    }
}
