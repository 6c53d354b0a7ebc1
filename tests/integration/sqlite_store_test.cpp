// The SQLite store: the shared conformance kit on real files, then what is
// particular to SQLite: schema versions and migration, pragmas, locking, and
// several handles and processes deciding on one file.
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mailers/audit.hpp>
#include <mailers/error.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/store.hpp>
#include <mailers/testing/store_conformance.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace mailers;
using namespace std::chrono_literals;

namespace {

// A directory of its own under the system temp directory, removed with
// everything in it (database, -wal and -shm files) at the end of the test.
class temp_dir {
public:
    temp_dir() {
        std::random_device rd;
        path_ = fs::temp_directory_path() / ("mailers-sqlite-store-" + std::to_string(::getpid()) +
                                             "-" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path_);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;

    std::string file(const std::string& name) const { return (path_ / name).string(); }

private:
    fs::path path_;
};

sqlite_store_params params_for(
    const std::string& path, sqlite_durability durability = sqlite_durability::process_crash_safe) {
    sqlite_store_params p;
    p.path = path;
    p.mode = open_mode::open_or_create;
    p.durability = durability;
    return p;
}

// A raw sqlite3 connection, to look at (or tamper with) a file behind the
// store's back.
class raw_db {
public:
    explicit raw_db(const std::string& path) {
        REQUIRE(sqlite3_open(path.c_str(), &db_) == SQLITE_OK);
        sqlite3_busy_timeout(db_, 5000);
    }
    ~raw_db() { sqlite3_close(db_); }
    raw_db(const raw_db&) = delete;
    raw_db& operator=(const raw_db&) = delete;

    void exec(const std::string& sql) {
        char* err = nullptr;
        const int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
        INFO(sql << ": " << (err ? err : ""));
        sqlite3_free(err);
        REQUIRE(rc == SQLITE_OK);
    }

    /// The first column of the first row as text ("" when there is none).
    std::string scalar(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) == SQLITE_OK);
        std::string out;
        if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
            out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        sqlite3_finalize(st);
        return out;
    }

    /// The query plan's lines, joined by ';'.
    std::string plan(const std::string& sql) {
        sqlite3_stmt* st = nullptr;
        REQUIRE(sqlite3_prepare_v2(db_, ("EXPLAIN QUERY PLAN " + sql).c_str(), -1, &st, nullptr) ==
                SQLITE_OK);
        std::string out;
        while (sqlite3_step(st) == SQLITE_ROW)
            out += std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 3))) + ";";
        sqlite3_finalize(st);
        return out;
    }

private:
    sqlite3* db_ = nullptr;
};

errc open_error(const sqlite_store_params& p) {
    try {
        open_sqlite_store(p);
    } catch (const mailers::exception& e) {
        if (e.code().category() == error_category()) return static_cast<errc>(e.code().value());
        FAIL("unexpected error category: " << e.code().message());
    }
    return errc::ok;
}

time_point at_seconds(std::int64_t s) {
    return time_point{std::chrono::seconds{1'700'000'000 + s}};
}

time_point now_micros() {
    return std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
}

ledger_row new_send(std::string key, std::string mailbox, time_point at, std::uint64_t owner) {
    ledger_row r;
    r.idempotency_key = std::move(key);
    r.mailbox = std::move(mailbox);
    r.provider = "ses-eu";
    r.pool = "outbound";
    r.recipient = "someone@example.com";
    r.message_id = "m@mailers.brand.example";
    r.reserved_at = at;
    r.updated_at = at;
    r.owner = owner;
    return r;
}

cap_claim claim(std::string key, std::vector<cap_window> windows, duration gap = duration{0}) {
    cap_claim c;
    c.key = std::move(key);
    c.windows = std::move(windows);
    c.gap = gap;
    return c;
}

store_ops::reserve_send reserve(ledger_row row, std::vector<cap_claim> claims,
                                std::uint64_t config_seq = 0) {
    return store_ops::reserve_send{std::move(row), std::move(claims), config_seq};
}

commit_result commit(store& st, std::string_view ws, std::vector<store_op> ops) {
    return st.commit(ws, ops);
}

reserve_outcome reserve_one(store& st, std::string_view ws, store_ops::reserve_send op) {
    auto r = commit(st, ws, {std::move(op)});
    REQUIRE(r.ops.size() == 1);
    return r.ops[0].reservation;
}

std::string commit_must_fail(store& st, std::string_view ws, std::vector<store_op> ops) {
    try {
        st.commit(ws, ops);
    } catch (const mailers::exception& e) {
        CHECK(e.code() == make_error_code(errc::store_error));
        return e.diag().message;
    }
    FAIL("the commit succeeded but had to fail");
    return {};
}

audit_record audit_entry(std::string action) {
    audit_record r;
    r.at = at_seconds(1);
    r.actor = "admin";
    r.action = std::move(action);
    r.resource_type = "mailbox";
    r.resource_id = "m1";
    r.after = "{}";
    return r;
}

std::vector<audit_record> audit_of(store& st, std::string_view ws) {
    std::vector<audit_record> out;
    st.for_each_audit(ws, 0, [&](const audit_record& r) { out.push_back(r); });
    return out;
}

}  // namespace

TEST_CASE("sqlite store passes the store conformance kit (file)") {
    temp_dir dir;
    const std::string path = dir.file("conformance.db");
    conformance::run_store_conformance([path] { return open_sqlite_store(params_for(path)); },
                                       "conformance");
}

TEST_CASE("sqlite store passes the store conformance kit (power_loss_safe)") {
    temp_dir dir;
    const std::string path = dir.file("durable.db");
    conformance::run_store_conformance(
        [path] { return open_sqlite_store(params_for(path, sqlite_durability::power_loss_safe)); },
        "durable");
}

TEST_CASE("sqlite store: :memory: is a private database per open") {
    auto a = open_sqlite_store(params_for(":memory:"));
    auto b = open_sqlite_store(params_for(":memory:"));
    const auto out = reserve_one(*a, "ws", reserve(new_send("k", "m1", at_seconds(0), 1), {}));
    REQUIRE(out.status == reserve_status::reserved);
    CHECK(a->find_send("ws", out.send_id));
    CHECK_FALSE(b->find_send("ws", out.send_id));
}

TEST_CASE("sqlite store: a new file gets the current schema in WAL mode") {
    temp_dir dir;
    const std::string path = dir.file("schema.db");
    open_sqlite_store(params_for(path)).reset();

    raw_db raw(path);
    CHECK(raw.scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
    CHECK(raw.scalar("PRAGMA journal_mode") == "wal");
    CHECK(raw.scalar("PRAGMA page_size") == "8192");
    for (const char* table :
         {"objects", "suppressions", "sends", "audit", "workspaces", "members", "cap_keys",
          "cap_uses", "object_tombstones", "suppression_tombstones", "suppression_superseded"}) {
        INFO(table);
        CHECK(raw.scalar(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                                     "AND name = '") +
                         table + "'") == "1");
    }
    // The indexes the hot path, load, recovery and the change feed rely on.
    for (const char* index :
         {"sends_idempotency_key", "sends_reserved_at", "sends_reserved", "objects_seq",
          "suppressions_seq", "object_tombstones_seq", "suppression_tombstones_seq"}) {
        INFO(index);
        CHECK(raw.scalar(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                     "name = '") +
                         index + "'") == "1");
    }
    CHECK(raw.scalar("SELECT count(*) FROM sqlite_master WHERE name = 'sends_state'") == "0");
    CHECK(raw.scalar("SELECT sql FROM sqlite_master WHERE name = 'sends_reserved'")
              .find("WHERE state = 0") != std::string::npos);
    CHECK(raw.scalar("SELECT count(*) FROM sqlite_master WHERE name LIKE 'm2_%'") == "0");

    // Counting a key's uses in a window is a range of cap_uses' primary key.
    CHECK(raw.plan("SELECT count(*) FROM cap_uses WHERE key_id = 1 AND at >= 5")
              .find("SEARCH cap_uses USING PRIMARY KEY (key_id=? AND at>?)") != std::string::npos);

    // Reopening an up-to-date file changes nothing.
    const std::string schema_before =
        raw.scalar("SELECT group_concat(sql, ';') FROM sqlite_master");
    open_sqlite_store(params_for(path)).reset();
    CHECK(raw.scalar("SELECT group_concat(sql, ';') FROM sqlite_master") == schema_before);
    CHECK(raw.scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
}

TEST_CASE("sqlite store: a file from a newer schema is refused untouched") {
    temp_dir dir;

    SUBCASE("a store file bumped to version 99") {
        const std::string path = dir.file("newer.db");
        {
            auto st = open_sqlite_store(params_for(path));
            REQUIRE(
                reserve_one(*st, "ws", reserve(new_send("", "m1", at_seconds(0), 1), {})).status ==
                reserve_status::reserved);
        }
        raw_db(path).exec("PRAGMA user_version = 99");
        CHECK(open_error(params_for(path)) == errc::schema_too_new);
        raw_db raw(path);
        CHECK(raw.scalar("PRAGMA user_version") == "99");
        CHECK(raw.scalar("SELECT count(*) FROM sends") == "1");
    }
    SUBCASE("an empty file at version 99 gets no tables and keeps its journal") {
        const std::string path = dir.file("bare.db");
        raw_db(path).exec("PRAGMA user_version = 99");
        try {
            open_sqlite_store(params_for(path));
            FAIL("opened a newer schema");
        } catch (const mailers::exception& e) {
            CHECK(e.code() == make_error_code(errc::schema_too_new));
            CHECK(e.diag().message.find("99") != std::string::npos);
        }
        raw_db raw(path);
        CHECK(raw.scalar("SELECT count(*) FROM sqlite_master") == "0");
        CHECK(raw.scalar("PRAGMA journal_mode") == "delete");
    }
}

TEST_CASE("sqlite store: migrating a version 0 file keeps what else it holds") {
    temp_dir dir;
    const std::string path = dir.file("shared.db");
    raw_db(path).exec("CREATE TABLE host_table (x INTEGER); INSERT INTO host_table VALUES (42);");
    auto st = open_sqlite_store(params_for(path));
    commit(*st, "ws", {store_ops::put_object{{"mailbox", "m", "{}"}}});
    raw_db raw(path);
    CHECK(raw.scalar("SELECT x FROM host_table") == "42");
    CHECK(raw.scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
}

TEST_CASE("sqlite store: unusable paths are store errors") {
    temp_dir dir;
    SUBCASE("missing directory") {
        CHECK(open_error(params_for(dir.file("no/such/dir/x.db"))) == errc::store_error);
    }
    SUBCASE("not a database") {
        const std::string path = dir.file("garbage.db");
        std::ofstream(path) << std::string(8192, 'g');
        CHECK(open_error(params_for(path)) == errc::store_corrupt);
    }
    SUBCASE("a table the schema needs already exists with another shape") {
        const std::string path = dir.file("clash.db");
        raw_db(path).exec("CREATE TABLE sends (x INTEGER)");
        CHECK(open_error(params_for(path)) == errc::store_error);
        CHECK(raw_db(path).scalar("PRAGMA user_version") == "0");  // the migration rolled back
    }
}

TEST_CASE("sqlite store: a lost file is an error, never a new empty workspace") {
    temp_dir dir;
    auto with_mode = [](const std::string& path, open_mode m) {
        auto p = params_for(path);
        p.mode = m;
        return p;
    };
    const std::string path = dir.file("ws.db");
    SUBCASE("missing") {
        CHECK(open_error(with_mode(path, open_mode::existing)) == errc::store_missing);
        CHECK(!fs::exists(path));
        CHECK(open_error(with_mode(path, open_mode::create)) == errc::ok);
        CHECK(open_error(with_mode(path, open_mode::create)) == errc::store_exists);
        CHECK(open_error(with_mode(path, open_mode::existing)) == errc::ok);
        CHECK(open_error(with_mode(dir.file("other.db"), open_mode::open_or_create)) == errc::ok);
        CHECK(open_error(with_mode(":memory:", open_mode::existing)) == errc::ok);
    }
    SUBCASE("zero bytes") {
        std::ofstream(path).close();
        CHECK(open_error(with_mode(path, open_mode::existing)) == errc::store_missing);
        CHECK(fs::file_size(path) == 0);
        CHECK(open_error(with_mode(path, open_mode::create)) == errc::ok);
    }
    SUBCASE("a database with only the host's tables holds no store") {
        raw_db(path).exec("CREATE TABLE host_table (x INTEGER)");
        CHECK(open_error(with_mode(path, open_mode::existing)) == errc::store_missing);
        CHECK(raw_db(path).scalar("PRAGMA user_version") == "0");
    }
    SUBCASE("cut short") {
        {
            auto st = open_sqlite_store(with_mode(path, open_mode::create));
            std::vector<store_op> ops;
            for (int i = 0; i < 2000; ++i)
                ops.push_back(store_ops::put_suppression{
                    {suppression_kind::address, "u" + std::to_string(i) + "@example.com",
                     suppression_reason::unsubscribe, "test", at_seconds(1)}});
            st->commit("ws", ops);
        }
        REQUIRE(!fs::exists(path + "-wal"));
        const auto full = fs::file_size(path);
        for (auto cut : {full / 8192 / 2 * 8192, full - 8192, std::uintmax_t{50}}) {
            CAPTURE(cut);
            fs::resize_file(path, cut);
            for (auto m : {open_mode::existing, open_mode::open_or_create, open_mode::create})
                CHECK(open_error(with_mode(path, m)) == errc::store_corrupt);
            CHECK(fs::file_size(path) == cut);
        }
    }
}

namespace {

// The version 1 schema as released, to build files an older library wrote.
constexpr const char* schema_v1 = R"sql(
CREATE TABLE objects (
    workspace TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, json TEXT NOT NULL,
    PRIMARY KEY (workspace, kind, id)) WITHOUT ROWID;
CREATE TABLE suppressions (
    workspace TEXT NOT NULL, kind INTEGER NOT NULL, value TEXT NOT NULL,
    reason INTEGER NOT NULL, source TEXT NOT NULL, created_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind, value)) WITHOUT ROWID;
CREATE TABLE workspaces (number INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE sends (
    row_key INTEGER PRIMARY KEY, workspace TEXT NOT NULL, id INTEGER NOT NULL,
    idempotency_key TEXT, mailbox TEXT NOT NULL, provider TEXT NOT NULL, pool TEXT NOT NULL,
    recipient TEXT NOT NULL, message_id TEXT NOT NULL, state INTEGER NOT NULL,
    attempt INTEGER NOT NULL, reserved_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    provider_message_id TEXT NOT NULL, detail TEXT NOT NULL);
CREATE UNIQUE INDEX sends_idempotency_key ON sends (workspace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sends_reserved_at ON sends (workspace, reserved_at);
CREATE INDEX sends_state ON sends (workspace, state) WHERE state = 0;
CREATE TABLE audit (
    workspace TEXT NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, resource_type TEXT NOT NULL, resource_id TEXT NOT NULL,
    "before" TEXT NOT NULL, "after" TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL,
    PRIMARY KEY (workspace, seq));
PRAGMA user_version = 1;
)sql";

}  // namespace

TEST_CASE("sqlite store: a version 1 file migrates to the current version") {
    temp_dir dir;
    const std::string path = dir.file("v1.db");
    const std::int64_t now = now_micros().time_since_epoch().count();
    const std::int64_t hour = 3'600'000'000, day = 24 * hour;
    // The audit chain an older engine wrote, hashed as it hashed it.
    std::vector<audit_record> chain;
    for (int i = 1; i <= 3; ++i) {
        audit_record r = audit_entry("mailbox.upsert");
        r.seq = static_cast<std::uint64_t>(i);
        r.prev_hash = chain.empty() ? "" : chain.back().hash;
        r.hash = audit_hash(r);
        chain.push_back(r);
    }
    {
        raw_db raw(path);
        raw.exec(schema_v1);
        raw.exec("INSERT INTO workspaces (number, name) VALUES (1, 'ws')");
        // (id, key, mailbox, provider, state, reserved_at): 5 and 6 are older
        // than 8 days, 3 failed; 1, 2 and 4 still occupy their caps.
        const struct {
            int id;
            const char* key;
            const char* mailbox;
            int state;
            std::int64_t at;
        } rows[] = {{1, "a", "m1", 1, now - hour},    {2, "b", "m1", 0, now - 2 * hour},
                    {3, "c", "m1", 2, now - hour},    {4, nullptr, "m2", 3, now - 7 * day},
                    {5, "e", "m1", 1, now - 9 * day}, {6, "f", "m2", 0, now - 10 * day}};
        for (const auto& r : rows)
            raw.exec("INSERT INTO sends VALUES (" + std::to_string((std::int64_t{1} << 40) + r.id) +
                     ", 'ws', " + std::to_string(r.id) + ", " +
                     (r.key ? "'" + std::string(r.key) + "'" : std::string("NULL")) + ", '" +
                     r.mailbox + "', 'ses', 'p', 'x@example.com', 'mid', " +
                     std::to_string(r.state) + ", 1, " + std::to_string(r.at) + ", " +
                     std::to_string(r.at) + ", '', '')");
        raw.exec("INSERT INTO objects VALUES ('ws', 'mailbox', 'm1', '{\"v\":1}')");
        raw.exec("INSERT INTO objects VALUES ('other', 'pool', 'p', '{}')");
        raw.exec("INSERT INTO suppressions VALUES ('ws', 0, 'gone@example.com', 1, 'api', 7)");
        for (const auto& r : chain)
            raw.exec("INSERT INTO audit VALUES ('audited', " + std::to_string(r.seq) + ", " +
                     std::to_string(r.at.time_since_epoch().count()) +
                     ", 'admin', 'mailbox.upsert', 'mailbox', 'm1', '', '{}', '" + r.prev_hash +
                     "', '" + r.hash + "')");
    }

    auto st = open_sqlite_store(params_for(path));
    raw_db raw(path);
    CHECK(raw.scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
    CHECK(raw.scalar("SELECT count(*) FROM sqlite_master WHERE name LIKE 'm2_%'") == "0");

    // Rows keep their content; owner and suppression_seq 0 for all of them.
    const auto first = st->find_send("ws", 1);
    REQUIRE(first);
    CHECK(first->idempotency_key == "a");
    CHECK(first->owner == 0);
    CHECK(first->suppression_seq == 0);
    CHECK(first->state == send_state::accepted);

    // Objects and suppressions load as before; the feed starts at 0 and does
    // not replay them.
    const auto snap = st->load("ws", time_point{});
    CHECK(snap.objects == std::vector<stored_object>{{"mailbox", "m1", "{\"v\":1}"}});
    CHECK(snap.suppressions.size() == 1);
    CHECK(snap.change_seq == 0);
    CHECK(st->changes_since("ws", 0).empty());
    CHECK(st->load("other", time_point{}).objects.size() == 1);

    // The audit chain continues where the old one ended.
    auto appended = commit(*st, "audited", {store_ops::append_audit{audit_entry("pool.upsert")}});
    CHECK(appended.ops[0].audit_seq == 4);
    const auto records = audit_of(*st, "audited");
    REQUIRE(records.size() == 4);
    CHECK(records[3].prev_hash == chain.back().hash);
    CHECK_FALSE(verify_audit_chain(records));

    // Send ids continue after the largest.
    const time_point at = now_micros();
    auto fresh = reserve_one(*st, "ws", reserve(new_send("g", "m3", at, 9), {}));
    CHECK(fresh.status == reserve_status::reserved);
    CHECK(fresh.send_id == 7);
    // Idempotency keys from before the migration still answer duplicate.
    auto dup = reserve_one(*st, "ws", reserve(new_send("b", "m3", at, 9), {}));
    CHECK(dup.status == reserve_status::duplicate);
    REQUIRE(dup.existing);
    CHECK(dup.existing->id == 2);

    // The caps count the non-failed sends of the last 8 days: m1 has 1 and
    // 2, m2 has 4, provider "ses" all three.
    const time_point week_ago = at - std::chrono::hours(24 * 8);
    auto refused = reserve_one(
        *st, "ws", reserve(new_send("", "m1", at, 9), {claim("mailbox:m1", {{week_ago, 2}})}));
    CHECK(refused.status == reserve_status::cap_reached);
    CHECK(refused.until == time_point{duration{now - 2 * hour}});
    CHECK(reserve_one(*st, "ws",
                      reserve(new_send("", "m1", at, 9), {claim("mailbox:m1", {{week_ago, 3}})}))
              .status == reserve_status::reserved);
    CHECK(reserve_one(*st, "ws",
                      reserve(new_send("", "m2", at, 9), {claim("mailbox:m2", {{week_ago, 1}})}))
              .status == reserve_status::cap_reached);
    CHECK(reserve_one(*st, "ws",
                      reserve(new_send("", "m2", at, 9), {claim("provider:ses", {{week_ago, 3}})}))
              .status == reserve_status::cap_reached);

    // The failed-to-be sends of older engines are released when they fail.
    commit(*st, "ws", {store_ops::update_send{[&] {
        auto r = *st->find_send("ws", 2);
        r.state = send_state::failed;
        return r;
    }()}});
    CHECK(reserve_one(*st, "ws",
                      reserve(new_send("", "m1", at, 9), {claim("mailbox:m1", {{week_ago, 3}})}))
              .status == reserve_status::reserved);

    // Sends older engines left reserved belong to a dead member.
    CHECK(st->recover("ws", {}, at, "recovered") == 1);
    CHECK(st->find_send("ws", 6)->state == send_state::unknown);
}

// A queue item with every field the store keeps as given set.
static queued_send queue_item(std::string key) {
    queued_send q;
    q.idempotency_key = std::move(key);
    q.pool = "outbound";
    q.recipient_domain = "example.com";
    q.request = std::string("{}\0\xff", 4);
    q.origin = "api";
    q.enqueued_at = time_point{std::chrono::seconds{1'700'000'000}};
    q.not_before = q.enqueued_at;
    return q;
}

// What takes a file back before the send queue existed (version 4), and
// before the recorded keys, enrollments, webhook outbox, daily counts, audit
// anchor and suppression counts that came after it.
constexpr const char* drop_queue =
    "DROP TRIGGER suppressions_count_insert; DROP TRIGGER suppressions_count_delete; "
    "DROP TABLE suppression_counts; "
    "ALTER TABLE workspaces DROP COLUMN audit_anchor_seq; ALTER TABLE workspaces DROP COLUMN "
    "audit_anchor_hash; ALTER TABLE workspaces DROP COLUMN audit_anchor_at; ALTER TABLE "
    "workspaces DROP COLUMN audit_anchor_keyed; DROP TABLE daily_counts; DROP TABLE soft_bounces; "
    "DROP TABLE webhook_outbox; DROP TABLE enrollment_messages; DROP TABLE enrollments; "
    "DROP TABLE recorded_keys; DROP TABLE queue; ALTER TABLE workspaces DROP COLUMN "
    "last_queue_id;";

TEST_CASE("sqlite store: a version 4 file gains the send queue, its sends kept") {
    temp_dir dir;
    const std::string path = dir.file("v4.db");
    std::uint64_t id = 0;
    {
        auto st = open_sqlite_store(params_for(path));
        id = conformance::reserve_new(*st, "ws", new_send("k", "m1", at_seconds(0), 1));
        conformance::commit(*st, "ws",
                            {store_ops::put_suppression{conformance::sample_suppression(
                                 suppression_kind::address, "a@example.com")},
                             store_ops::put_suppression{conformance::sample_suppression(
                                 suppression_kind::domain, "example.org")}});
    }
    raw_db(path).exec(std::string(drop_queue) + "PRAGMA user_version = 4");

    auto st = open_sqlite_store(params_for(path));
    CHECK(raw_db(path).scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
    CHECK(st->find_send("ws", id));
    // The count starts from the rows the file holds.
    CHECK(st->suppression_count("ws") == 2);
    std::vector<store_op> ops{store_ops::enqueue{queue_item("q")}};
    const auto out = st->commit("ws", ops).ops.at(0).queue;
    CHECK(out.status == enqueue_status::enqueued);
    CHECK(out.id == 1);
    CHECK(st->find_queued("ws", out.id)->request == queue_item("q").request);
    CHECK(st->count_queued("ws").waiting == 1);
}

TEST_CASE("sqlite store: a version 2 file gains suppression_seq, 0 for the sends it holds") {
    temp_dir dir;
    const std::string path = dir.file("v2.db");
    std::uint64_t id = 0;
    {
        auto st = open_sqlite_store(params_for(path));
        const auto out = reserve_one(*st, "ws", reserve(new_send("k", "m1", at_seconds(0), 1), {}));
        REQUIRE(out.status == reserve_status::reserved);
        id = out.send_id;
    }
    // Back to the shape version 2 left.
    raw_db(path).exec(std::string(drop_queue) +
                      "ALTER TABLE sends DROP COLUMN suppression_seq; ALTER TABLE audit DROP "
                      "COLUMN change_seq; DROP TABLE suppression_superseded; PRAGMA user_version = 2");

    auto st = open_sqlite_store(params_for(path));
    CHECK(raw_db(path).scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
    auto row = st->find_send("ws", id);
    REQUIRE(row);
    CHECK(row->suppression_seq == 0);
    row->state = send_state::accepted;
    row->suppression_seq = 12;
    REQUIRE(commit(*st, "ws", {store_ops::update_send{*row}}).ops[0].applied);
    CHECK(st->find_send("ws", id) == row);
}

TEST_CASE("sqlite store: a version 11 file gains enrollments.attempt, 0 for its enrollments") {
    temp_dir dir;
    const std::string path = dir.file("v11.db");
    enrollment before;
    {
        auto st = open_sqlite_store(params_for(path));
        const auto id =
            conformance::enroll_one(*st, "ws", conformance::sample_enrollment("s1", "a@x.example"))
                .id;
        before = conformance::stored_enrollment(*st, "ws", id);
    }
    raw_db(path).exec("ALTER TABLE enrollments DROP COLUMN attempt; PRAGMA user_version = 11");

    auto st = open_sqlite_store(params_for(path));
    CHECK(raw_db(path).scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
    auto e = conformance::stored_enrollment(*st, "ws", before.id);
    CHECK(e == before);
    CHECK(e.attempt == 0);
    auto next = e;
    next.attempt = 1;
    REQUIRE(commit(*st, "ws", {store_ops::update_enrollment{next, e.version, "", at_seconds(5)}})
                .ops[0]
                .applied);
    CHECK(conformance::stored_enrollment(*st, "ws", e.id).attempt == 1);
}

TEST_CASE("sqlite store: reservations count, refuse and release cap uses") {
    auto st = open_sqlite_store(params_for(":memory:"));
    const std::string ws = "caps";
    const time_point t0 = at_seconds(0);
    auto day = [&](time_point at) { return cap_window{at - 24h, 3}; };

    std::vector<std::uint64_t> ids;
    for (int i = 0; i < 3; ++i) {
        const time_point at = t0 + std::chrono::seconds(i);
        auto out = reserve_one(
            *st, ws,
            reserve(new_send("k" + std::to_string(i), "m1", at, 1),
                    {claim("mailbox:m1", {day(at)}), claim("provider:ses", {{at - 1h, 100}})}));
        REQUIRE(out.status == reserve_status::reserved);
        ids.push_back(out.send_id);
    }
    CHECK(ids == std::vector<std::uint64_t>{1, 2, 3});

    // Full: the oldest use must leave the window first.
    const time_point t1 = t0 + 10s;
    auto full = reserve_one(
        *st, ws,
        reserve(new_send("k9", "m1", t1, 1), {claim("provider:ses", {{t1 - 1h, 100}}),
                                              claim("mailbox:m1", {{t1 - 1h, 10}, day(t1)})}));
    CHECK(full.status == reserve_status::cap_reached);
    CHECK(full.claim == 1);
    CHECK(full.window == 1);
    CHECK(full.until == t0);
    // A cap lowered below the count: until is the use that brings it back.
    full = reserve_one(*st, ws,
                       reserve(new_send("k9", "m1", t1, 1), {claim("mailbox:m1", {{t0, 1}})}));
    CHECK(full.status == reserve_status::cap_reached);
    CHECK(full.until == t0 + 2s);
    // max 0 refuses without a use to wait for, even on a key never used.
    full = reserve_one(*st, ws,
                       reserve(new_send("k9", "m9", t1, 1), {claim("mailbox:m9", {{t0, 0}})}));
    CHECK(full.status == reserve_status::cap_reached);
    CHECK(full.until == time_point{});
    // Uses recorded in the future count too.
    full = reserve_one(
        *st, ws, reserve(new_send("k9", "m1", t0 - 1h, 1), {claim("mailbox:m1", {day(t0 - 1h)})}));
    CHECK(full.status == reserve_status::cap_reached);

    // A refused reservation wrote nothing: the next id is still 4.
    auto next = reserve_one(*st, ws,
                            reserve(new_send("k9", "m2", t1, 1), {claim("mailbox:m2", {day(t1)})}));
    CHECK(next.status == reserve_status::reserved);
    CHECK(next.send_id == 4);

    // An accepted send keeps its use; a failed one gives it back.
    auto row = *st->find_send(ws, 1);
    row.state = send_state::accepted;
    row.provider_message_id = "pm-1";
    CHECK(commit(*st, ws, {store_ops::update_send{row}}).ops[0].applied);
    row = *st->find_send(ws, 2);
    row.state = send_state::failed;
    row.detail = "550 refused";
    CHECK(commit(*st, ws, {store_ops::update_send{row}}).ops[0].applied);
    auto again = reserve_one(
        *st, ws, reserve(new_send("k10", "m1", t1, 1), {claim("mailbox:m1", {day(t1)})}));
    CHECK(again.status == reserve_status::reserved);

    // purge_cap_uses forgets old uses only.
    st->purge_cap_uses(ws, t0 + 1s);  // removes send 1's use
    CHECK(reserve_one(*st, ws,
                      reserve(new_send("k11", "m1", t1, 1), {claim("mailbox:m1", {day(t1)})}))
              .status == reserve_status::reserved);
    CHECK(reserve_one(*st, ws,
                      reserve(new_send("k12", "m1", t1, 1), {claim("mailbox:m1", {day(t1)})}))
              .status == reserve_status::cap_reached);
}

TEST_CASE("sqlite store: idempotency keys, gaps and stale configuration") {
    auto st = open_sqlite_store(params_for(":memory:"));
    const std::string ws = "ws";
    const time_point t0 = at_seconds(0);

    auto first = reserve_one(
        *st, ws,
        reserve(new_send("order-1", "m1", t0, 1), {claim("mailbox:m1", {{t0 - 1h, 10}}, 60s)}));
    REQUIRE(first.status == reserve_status::reserved);
    // The duplicate answer wins over every cap and changes nothing.
    auto dup = reserve_one(
        *st, ws,
        reserve(new_send("order-1", "m1", t0 + 1s, 2), {claim("mailbox:m1", {{t0, 0}}, 60s)}));
    CHECK(dup.status == reserve_status::duplicate);
    REQUIRE(dup.existing);
    CHECK(dup.existing->id == first.send_id);
    CHECK(dup.existing->owner == 1);
    CHECK(*dup.existing == *st->find_send(ws, first.send_id));

    // The gap runs from the previous claim's `at`.
    auto gap = reserve_one(
        *st, ws,
        reserve(new_send("", "m1", t0 + 30s, 1),
                {claim("provider:ses", {{t0, 10}}), claim("mailbox:m1", {{t0 - 1h, 10}}, 60s)}));
    CHECK(gap.status == reserve_status::gap);
    CHECK(gap.claim == 1);
    CHECK(gap.until == t0 + 60s);
    // A claim without a gap of its own ignores the key's gap.
    CHECK(reserve_one(
              *st, ws,
              reserve(new_send("", "m1", t0 + 30s, 1), {claim("mailbox:m1", {{t0 - 1h, 10}})}))
              .status == reserve_status::reserved);
    CHECK(reserve_one(
              *st, ws,
              reserve(new_send("", "m1", t0 + 60s, 1), {claim("mailbox:m1", {{t0 - 1h, 10}}, 60s)}))
              .status == reserve_status::reserved);

    // Two reservations of one key in one batch: the second sees the first.
    auto batch =
        commit(*st, ws,
               {reserve(new_send("order-2", "m2", t0, 1), {claim("mailbox:m2", {{t0, 1}})}),
                reserve(new_send("order-2", "m2", t0, 1), {}),
                reserve(new_send("order-3", "m2", t0, 1), {claim("mailbox:m2", {{t0, 1}})})});
    CHECK(batch.ops[0].reservation.status == reserve_status::reserved);
    CHECK(batch.ops[1].reservation.status == reserve_status::duplicate);
    CHECK(batch.ops[2].reservation.status == reserve_status::cap_reached);

    // Stale configuration: the object changed after the caller's seq.
    auto put = commit(*st, ws, {store_ops::put_object{{"mailbox", "m3", "{}"}}});
    CHECK(put.change_seq == 1);
    auto with_object = [&](std::uint64_t seq, std::string kind, std::string id) {
        auto c = claim("mailbox:m3", {{t0, 10}});
        c.object_kind = std::move(kind);
        c.object_id = std::move(id);
        return reserve(new_send("", "m3", t0, 1), {claim("provider:x", {{t0, 10}}), c}, seq);
    };
    auto stale = reserve_one(*st, ws, with_object(0, "mailbox", "m3"));
    CHECK(stale.status == reserve_status::stale_config);
    CHECK(stale.claim == 1);
    CHECK(reserve_one(*st, ws, with_object(1, "mailbox", "m3")).status == reserve_status::reserved);
    // An object other than the claim's changing does not matter.
    CHECK(reserve_one(*st, ws, with_object(0, "quota", "q")).status == reserve_status::reserved);
    // Deletions count as changes.
    CHECK(commit(*st, ws, {store_ops::delete_object{"mailbox", "m3"}}).change_seq == 2);
    CHECK(reserve_one(*st, ws, with_object(1, "mailbox", "m3")).status ==
          reserve_status::stale_config);
    // A put and a reservation in one commit: the put is newer than any seq
    // the caller could have.
    auto same = commit(
        *st, ws,
        {store_ops::put_object{{"mailbox", "m3", "{\"v\":2}"}}, with_object(2, "mailbox", "m3")});
    CHECK(same.change_seq == 3);
    CHECK(same.ops[1].reservation.status == reserve_status::stale_config);
}

TEST_CASE("sqlite store: failover and outcome updates are fenced by the owner") {
    auto st = open_sqlite_store(params_for(":memory:"));
    const std::string ws = "ws";
    const time_point t0 = at_seconds(0);
    auto m1 = [&](time_point at) { return claim("mailbox:m1", {{at - 1h, 1}}); };
    auto m2 = [&](time_point at) { return claim("mailbox:m2", {{at - 1h, 1}}); };
    auto out = reserve_one(
        *st, ws,
        reserve(new_send("k", "m1", t0, 7), {m1(t0), claim("provider:p", {{t0 - 1h, 1}})}));
    REQUIRE(out.status == reserve_status::reserved);
    const std::uint64_t id = out.send_id;

    auto attempt = [&](std::uint64_t owner, std::string mailbox, time_point at,
                       std::vector<cap_claim> claims) {
        auto row = *st->find_send(ws, id);
        row.owner = owner;
        row.mailbox = std::move(mailbox);
        row.attempt += 1;
        row.reserved_at = at;
        row.updated_at = at;
        row.message_id = "m2@x";
        row.state = send_state::reserved;
        return reserve(row, std::move(claims));
    };
    // Not the owner, or not a send at all.
    CHECK(reserve_one(*st, ws, attempt(8, "m2", t0 + 1s, {m2(t0 + 1s)})).status ==
          reserve_status::not_owner);
    {
        auto ghost = attempt(7, "m2", t0 + 1s, {});
        ghost.row.id = 999;
        CHECK(reserve_one(*st, ws, ghost).status == reserve_status::not_owner);
    }
    // The send's own use of the provider does not count against it.
    auto moved = reserve_one(
        *st, ws, attempt(7, "m2", t0 + 1s, {m2(t0 + 1s), claim("provider:p", {{t0 - 1h, 1}})}));
    CHECK(moved.status == reserve_status::reserved);
    CHECK(moved.send_id == id);
    auto row = *st->find_send(ws, id);
    CHECK(row.mailbox == "m2");
    CHECK(row.attempt == 2);
    CHECK(row.reserved_at == t0 + 1s);
    CHECK(row.idempotency_key == "k");
    // The first attempt's use of m1 was released; the new one holds m2.
    CHECK(reserve_one(*st, ws, reserve(new_send("", "m1", t0 + 2s, 7), {m1(t0 + 2s)})).status ==
          reserve_status::reserved);
    CHECK(reserve_one(*st, ws, reserve(new_send("", "m2", t0 + 2s, 7), {m2(t0 + 2s)})).status ==
          reserve_status::cap_reached);
    // A refused further attempt changes nothing.
    auto refused = reserve_one(*st, ws, attempt(7, "m1", t0 + 3s, {m1(t0 + 3s)}));
    CHECK(refused.status == reserve_status::cap_reached);
    CHECK(*st->find_send(ws, id) == row);

    // Outcomes: only the owner, only from reserved or unknown.
    auto outcome = row;
    outcome.state = send_state::accepted;
    outcome.provider_message_id = "pm";
    outcome.updated_at = t0 + 5s;
    outcome.owner = 8;
    CHECK_FALSE(commit(*st, ws, {store_ops::update_send{outcome}}).ops[0].applied);
    outcome.owner = 7;
    outcome.mailbox = "ignored";
    outcome.attempt = 99;
    CHECK(commit(*st, ws, {store_ops::update_send{outcome}}).ops[0].applied);
    auto stored = *st->find_send(ws, id);
    CHECK(stored.state == send_state::accepted);
    CHECK(stored.provider_message_id == "pm");
    CHECK(stored.mailbox == "m2");
    CHECK(stored.attempt == 2);
    outcome.state = send_state::failed;
    CHECK_FALSE(commit(*st, ws, {store_ops::update_send{outcome}}).ops[0].applied);
    // A further attempt of a finished send is refused.
    CHECK(reserve_one(*st, ws, attempt(7, "m3", t0 + 6s, {})).status == reserve_status::not_owner);

    // Back to reserved is invalid input: the whole commit fails, naming the
    // op without its personal data.
    auto fresh = new_send("", "m5", t0, 7);
    fresh.recipient = "private.person@example.com";
    outcome.state = send_state::reserved;
    const std::string message = commit_must_fail(
        *st, ws,
        {reserve(fresh, {claim("mailbox:m5", {{t0, 5}})}), store_ops::update_send{outcome}});
    CHECK(message.find("op 2 of 2") != std::string::npos);
    CHECK(message.find("update_send id") != std::string::npos);
    CHECK(message.find("person@example.com") == std::string::npos);
    CHECK_FALSE(st->find_send(ws, 4));
}

TEST_CASE("sqlite store: the change feed and the audit chain") {
    temp_dir dir;
    const std::string path = dir.file("feed.db");
    auto a = open_sqlite_store(params_for(path));
    auto b = open_sqlite_store(params_for(path));
    const std::string ws = "ws";
    suppression_entry e;
    e.kind = suppression_kind::address;
    e.value = "gone@example.com";
    e.source = "api";

    auto c1 = commit(
        *a, ws,
        {store_ops::put_object{{"mailbox", "m1", "{}"}}, store_ops::put_object{{"pool", "p", "{}"}},
         store_ops::put_suppression{e}, store_ops::append_audit{audit_entry("mailbox.upsert")}});
    CHECK(c1.change_seq == 1);
    CHECK(c1.ops[3].audit_seq == 1);
    auto c2 = commit(*b, ws,
                     {store_ops::delete_object{"pool", "p"},
                      store_ops::delete_suppression{suppression_kind::address, "gone@example.com"},
                      store_ops::append_audit{audit_entry("pool.delete")}});
    CHECK(c2.change_seq == 2);
    CHECK(c2.ops[2].audit_seq == 2);
    // A commit without object or suppression writes publishes nothing.
    CHECK(commit(*a, ws, {store_ops::append_audit{audit_entry("x")}}).change_seq == 0);

    auto all = a->changes_since(ws, 0);
    CHECK(all.seq == 2);
    CHECK(all.objects == std::vector<stored_object>{{"mailbox", "m1", "{}"}});
    CHECK(all.deleted_objects == std::vector<std::pair<std::string, std::string>>{{"pool", "p"}});
    CHECK(all.suppressions.empty());
    CHECK(all.deleted_suppressions.size() == 1);
    auto latest = b->changes_since(ws, 1);
    CHECK(latest.objects.empty());
    CHECK(latest.deleted_objects.size() == 1);
    CHECK(b->changes_since(ws, 2).empty());
    CHECK(b->changes_since(ws, 2).seq == 2);
    CHECK(b->changes_since("never", 0).seq == 0);

    // Put again after a delete: a put, not a delete.
    CHECK(commit(*b, ws, {store_ops::put_object{{"pool", "p", "{\"v\":2}"}}}).change_seq == 3);
    auto back = a->changes_since(ws, 0);
    CHECK(back.deleted_objects.empty());
    CHECK(back.objects.size() == 2);
    CHECK(a->load(ws, time_point{}).change_seq == 3);

    // One chain however many handles append.
    const auto records = audit_of(*a, ws);
    REQUIRE(records.size() == 3);
    CHECK(records[0].prev_hash.empty());
    CHECK(records[1].prev_hash == records[0].hash);
    CHECK_FALSE(verify_audit_chain(records));
}

TEST_CASE("sqlite store: members, leases and recovery") {
    temp_dir dir;
    const std::string path = dir.file("members.db");
    auto st = open_sqlite_store(params_for(path));
    const std::string ws = "ws";
    const time_point t0 = at_seconds(0);

    const auto a = st->attach(ws, {"host-a", 101, "app"}, 60s);
    const auto b = st->attach(ws, {"host-a", 102, "app"}, 100ms);
    const auto c = st->attach(ws, {"host-a", 103, "app"}, 60s);
    CHECK(a != 0);
    CHECK(b > a);
    CHECK(c > b);
    CHECK(st->renew(ws, a, 60s, 5));
    CHECK_FALSE(st->renew("other", a, 60s, 5));  // members belong to one workspace

    std::vector<std::uint64_t> ids;
    for (const auto owner : {a, b, b, c}) {
        auto out = reserve_one(*st, ws, reserve(new_send("", "m", t0, owner), {}));
        ids.push_back(out.send_id);
    }
    auto done = *st->find_send(ws, ids[2]);
    done.state = send_state::accepted;
    commit(*st, ws, {store_ops::update_send{done}});

    std::this_thread::sleep_for(250ms);
    CHECK_FALSE(st->renew(ws, b, 60s, 1));  // too late: it must attach again
    auto list = st->members(ws);
    REQUIRE(list.size() == 3);
    CHECK(list[0].id == a);
    CHECK(list[0].acked_seq == 5);
    CHECK(list[0].live);
    CHECK(list[0].info.pid == 101);
    CHECK_FALSE(list[1].live);

    // b's lease ran out and c is known dead: their reserved sends become
    // unknown; the accepted one stays as it is.
    const std::uint64_t dead[] = {c};
    CHECK(st->recover(ws, dead, t0 + 1h, "owner gone") == 2);
    CHECK(st->find_send(ws, ids[0])->state == send_state::reserved);
    CHECK(st->find_send(ws, ids[1])->state == send_state::unknown);
    CHECK(st->find_send(ws, ids[1])->detail == "owner gone");
    CHECK(st->find_send(ws, ids[1])->updated_at == t0 + 1h);
    CHECK(st->find_send(ws, ids[2])->state == send_state::accepted);
    CHECK(st->find_send(ws, ids[3])->state == send_state::unknown);
    list = st->members(ws);
    REQUIRE(list.size() == 1);
    CHECK(list[0].id == a);
    CHECK(st->recover(ws, {}, t0 + 1h, "again") == 0);

    // A recovered send may still get its true outcome from its owner.
    auto late = *st->find_send(ws, ids[1]);
    late.state = send_state::accepted;
    CHECK(commit(*st, ws, {store_ops::update_send{late}}).ops[0].applied);

    // Detach recovers at once; ids are never given again.
    st->detach(ws, a);
    CHECK(st->members(ws).empty());
    CHECK(st->find_send(ws, ids[0])->state == send_state::unknown);
    CHECK_FALSE(st->renew(ws, a, 60s, 5));
    auto other = open_sqlite_store(params_for(path));
    CHECK(other->attach(ws, {"host-a", 104, "app"}, 60s) > c);
}

TEST_CASE("sqlite store: a failed commit leaves no trace, numbers included") {
    temp_dir dir;
    const std::string path = dir.file("numbers.db");
    auto a = open_sqlite_store(params_for(path));
    auto b = open_sqlite_store(params_for(path));
    const time_point t0 = at_seconds(0);
    auto bad = store_ops::update_send{new_send("", "m", t0, 1)};
    bad.row.id = 1;  // state reserved: invalid
    REQUIRE(reserve_one(*a, "first", reserve(new_send("", "m", t0, 1), {claim("k1", {{t0, 5}})}))
                .status == reserve_status::reserved);
    // "second" gets a workspace number and a cap key inside a transaction
    // that rolls back ...
    commit_must_fail(*a, "second",
                     {store_ops::put_object{{"mailbox", "m", "{}"}},
                      reserve(new_send("", "m", t0, 1), {claim("k2", {{t0, 5}})}), bad});
    CHECK(a->changes_since("second", 0).seq == 0);
    // ... so another handle may give the same numbers to "third" ...
    REQUIRE(reserve_one(*b, "third", reserve(new_send("", "m3", t0, 1), {claim("k3", {{t0, 1}})}))
                .status == reserve_status::reserved);
    // ... and "second" must not use them.
    REQUIRE(reserve_one(*a, "second", reserve(new_send("", "m2", t0, 1), {claim("k2", {{t0, 1}})}))
                .status == reserve_status::reserved);
    CHECK(a->find_send("second", 1)->mailbox == "m2");
    CHECK(a->find_send("third", 1)->mailbox == "m3");
    CHECK(b->find_send("second", 1)->mailbox == "m2");
    CHECK(reserve_one(*b, "second", reserve(new_send("", "m2", t0, 1), {claim("k2", {{t0, 1}})}))
              .status == reserve_status::cap_reached);
    CHECK(reserve_one(*a, "third", reserve(new_send("", "m3", t0, 1), {claim("k3", {{t0, 1}})}))
              .status == reserve_status::cap_reached);
}

TEST_CASE("sqlite store: a writer holding the lock makes commit fail after busy_timeout") {
    temp_dir dir;
    const std::string path = dir.file("busy.db");
    auto p = params_for(path);
    p.busy_timeout = std::chrono::milliseconds(100);
    auto st = open_sqlite_store(p);
    const auto op = reserve(new_send("k", "m", at_seconds(0), 1), {});

    raw_db other(path);
    other.exec("BEGIN IMMEDIATE");
    const auto start = std::chrono::steady_clock::now();
    commit_must_fail(*st, "ws", {op});
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(90));
    // Readers are not blocked by a writer in WAL mode.
    CHECK(st->load("ws", at_seconds(0)).recent_sends.empty());
    other.exec("COMMIT");

    CHECK(reserve_one(*st, "ws", op).send_id == 1);
}

TEST_CASE("sqlite store: a callback may call back into the store") {
    auto st = open_sqlite_store(params_for(":memory:"));
    std::vector<store_op> ops;
    for (int i = 0; i < 5; ++i) {
        suppression_entry e;
        e.value = "u" + std::to_string(i) + "@example.com";
        ops.push_back(store_ops::put_suppression{e});
    }
    st->commit("ws", ops);
    int found = 0;
    st->for_each_suppression("ws", [&](const suppression_entry& e) {
        if (st->find_suppression("ws", e.kind, e.value) == e) ++found;
    });
    CHECK(found == 5);
}

TEST_CASE("sqlite store: handles on one file in several threads decide as one") {
    temp_dir dir;
    const std::string path = dir.file("race.db");
    const std::string ws = "ws";
    constexpr int threads = 4, per_thread = 60, cap = 100;
    const time_point t0 = at_seconds(0);
    open_sqlite_store(params_for(path)).reset();

    std::atomic<int> reserved{0}, duplicates{0}, refused{0}, errors{0};
    std::vector<std::uint64_t> key_holders(threads, 0);
    std::vector<std::vector<std::uint64_t>> audit_seqs(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            try {
                auto st = open_sqlite_store(params_for(path));
                for (int i = 0; i < per_thread; ++i) {
                    std::vector<store_op> ops;
                    ops.push_back(reserve(new_send("", "m", t0 + std::chrono::milliseconds(i), 1),
                                          {claim("mailbox:shared", {{t0 - 1h, cap}})}));
                    if (i == per_thread / 2)
                        ops.push_back(reserve(new_send("the-one", "m", t0, 1), {}));
                    ops.push_back(store_ops::append_audit{audit_entry("t" + std::to_string(t))});
                    const auto r = st->commit(ws, ops);
                    const auto& first = r.ops[0].reservation;
                    if (first.status == reserve_status::reserved)
                        ++reserved;
                    else if (first.status == reserve_status::cap_reached)
                        ++refused;
                    if (ops.size() == 3) {
                        const auto& one = r.ops[1].reservation;
                        if (one.status == reserve_status::duplicate) ++duplicates;
                        key_holders[t] =
                            one.status == reserve_status::reserved ? one.send_id : one.existing->id;
                    }
                    audit_seqs[t].push_back(r.ops.back().audit_seq);
                }
            } catch (...) {
                ++errors;
            }
        });
    }
    for (auto& th : pool) th.join();
    CHECK(errors == 0);
    CHECK(reserved == cap);
    CHECK(refused == threads * per_thread - cap);
    CHECK(duplicates == threads - 1);
    CHECK(std::count(key_holders.begin(), key_holders.end(), key_holders[0]) == threads);

    auto st = open_sqlite_store(params_for(path));
    std::set<std::uint64_t> seqs;
    for (const auto& v : audit_seqs) seqs.insert(v.begin(), v.end());
    CHECK(seqs.size() == threads * per_thread);
    CHECK(*seqs.rbegin() == threads * per_thread);
    const auto records = audit_of(*st, ws);
    CHECK(records.size() == threads * per_thread);
    CHECK_FALSE(verify_audit_chain(records));
    // Ids are packed: one per reservation, none skipped.
    std::set<std::uint64_t> ids;
    st->for_each_send(ws, time_point{}, t0 + 1h, [&](const ledger_row& r) { ids.insert(r.id); });
    CHECK(ids.size() == cap + 1);
    CHECK(*ids.rbegin() == cap + 1);
}

TEST_CASE("sqlite store: two processes reserving on one file get exact totals") {
    temp_dir dir;
    const std::string path = dir.file("processes.db");
    const std::string ws = "ws";
    constexpr int children = 2, batches = 40, batch = 16, cap = 700;
    const time_point t0 = at_seconds(0);
    open_sqlite_store(params_for(path)).reset();

    std::vector<pid_t> pids;
    for (int c = 0; c < children; ++c) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            // The child reports through its exit status only: doctest's
            // state belongs to the parent.
            int status = 0;
            try {
                auto st = open_sqlite_store(params_for(path));
                const auto me = st->attach(ws, {"localhost", ::getpid(), "child"}, 60s);
                for (int b = 0; b < batches; ++b) {
                    std::vector<store_op> ops;
                    for (int i = 0; i < batch; ++i) {
                        const std::string key =
                            "c" + std::to_string(c) + "-" + std::to_string(b * batch + i);
                        ops.push_back(reserve(new_send(key, "m", t0, me),
                                              {claim("mailbox:m", {{t0 - 1h, cap}}),
                                               claim("provider:p", {{t0 - 1h, 100000}})}));
                        // Every key is tried by both children.
                        ops.push_back(reserve(
                            new_send("both-" + std::to_string(b * batch + i), "m", t0, me), {}));
                    }
                    st->commit(ws, ops);
                }
                st->detach(ws, me);
            } catch (...) {
                status = 1;
            }
            std::_Exit(status);
        }
        pids.push_back(pid);
    }
    for (const pid_t pid : pids) {
        int status = 0;
        REQUIRE(::waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status));
        CHECK(WEXITSTATUS(status) == 0);
    }

    raw_db raw(path);
    // The mailbox cap admitted exactly `cap` of the capped reservations, and
    // each shared key got one send.
    const int shared = batches * batch;
    CHECK(raw.scalar("SELECT count(*) FROM sends WHERE idempotency_key LIKE 'c%'") ==
          std::to_string(cap));
    CHECK(raw.scalar("SELECT count(*) FROM sends WHERE idempotency_key LIKE 'both-%'") ==
          std::to_string(shared));
    CHECK(raw.scalar("SELECT count(*) FROM sends") == std::to_string(cap + shared));
    CHECK(raw.scalar("SELECT count(DISTINCT id) || ',' || max(id) FROM sends") ==
          std::to_string(cap + shared) + "," + std::to_string(cap + shared));
    CHECK(raw.scalar("SELECT count(*) FROM cap_uses u JOIN cap_keys k ON k.id = u.key_id "
                     "WHERE k.key = 'mailbox:m'") == std::to_string(cap));
    CHECK(raw.scalar("SELECT count(*) FROM members") == "0");
    // Both children got some of the capped sends.
    CHECK(raw.scalar("SELECT count(DISTINCT owner) FROM sends WHERE idempotency_key LIKE 'c%'") ==
          "2");
}

TEST_CASE("sqlite store: a tampered audit log is detected behind the store's back") {
    temp_dir dir;
    const std::string path = dir.file("audit-tamper.db");
    const std::string ws = "w";
    const std::string key = "audit key held elsewhere";
    auto st = open_sqlite_store(params_for(path));
    // Three unkeyed records, then the key record and three more under the key.
    commit(*st, ws,
           {store_ops::append_audit{audit_entry("a1")}, store_ops::append_audit{audit_entry("a2")},
            store_ops::append_audit{audit_entry("a3")}});
    commit(*st, ws,
           {store_ops::append_audit{audit_entry(std::string(audit_key_action)), key},
            store_ops::append_audit{audit_entry("k1"), key},
            store_ops::append_audit{audit_entry("k2"), key},
            store_ops::append_audit{audit_entry("k3"), key}});
    const auto good = audit_of(*st, ws);
    REQUIRE(good.size() == 7);
    const audit_head checkpoint{7, good.back().hash};
    const audit_verify_options with_key{{}, key};
    const audit_verify_options with_checkpoint{checkpoint, key};
    auto bad_seq = [&](const audit_verify_options& o) {
        std::uint64_t bad = 0;
        const error_code ec = verify_audit_chain(audit_of(*st, ws), o, &bad);
        if (ec) CHECK(ec == make_error_code(errc::audit_chain_broken));
        return ec ? bad : 0;
    };
    REQUIRE(bad_seq(with_checkpoint) == 0);
    raw_db raw(path);

    SUBCASE("the last records deleted: only a checkpoint notices") {
        raw.exec("DELETE FROM audit WHERE seq > 5");
        CHECK(bad_seq(with_key) == 0);
        CHECK(bad_seq(with_checkpoint) == 6);
    }
    SUBCASE("the last records deleted and the head rewound: the next record links to the cut") {
        raw.exec("DELETE FROM audit WHERE seq > 5");
        raw.exec("UPDATE workspaces SET audit_seq = 5, audit_hash = '" + good[4].hash +
                 "' WHERE name = 'w'");
        commit(*st, ws, {store_ops::append_audit{audit_entry("after the cut"), key}});
        CHECK(audit_of(*st, ws).size() == 6);
        CHECK(bad_seq(with_key) == 0);
        CHECK(bad_seq(with_checkpoint) == 7);
    }
    SUBCASE("the first record deleted") {
        raw.exec("DELETE FROM audit WHERE seq = 1");
        CHECK(bad_seq(with_key) == 2);
        // Every link left holds, so as a part of a chain it verifies (its
        // unkeyed records, before the key record).
        const auto left = audit_of(*st, ws);
        CHECK_FALSE(verify_audit_chain(std::span(left.data(), 2)));
    }
    SUBCASE("a record edited") {
        raw.exec("UPDATE audit SET actor = 'mallory' WHERE seq = 2");
        CHECK(bad_seq(with_key) == 2);
        raw.exec("UPDATE audit SET actor = 'admin' WHERE seq = 2");
        raw.exec("UPDATE audit SET \"after\" = '{\"x\":1}' WHERE seq = 6");
        CHECK(bad_seq(with_key) == 6);
    }
    SUBCASE("everything re-hashed without the key") {
        // What an attacker can do with the public audit_hash: every record
        // linked and hashed again unkeyed, one of them edited.
        auto forged = good;
        forged[1].actor = "mallory";
        for (std::size_t i = 0; i < forged.size(); ++i) {
            forged[i].prev_hash = i == 0 ? std::string{} : forged[i - 1].hash;
            forged[i].hash = audit_hash(forged[i]);
        }
        auto write = [&] {
            for (const auto& r : forged)
                raw.exec("UPDATE audit SET actor = '" + r.actor + "', action = '" + r.action +
                         "', prev_hash = '" + r.prev_hash + "', hash = '" + r.hash +
                         "' WHERE workspace = 'w' AND seq = " + std::to_string(r.seq));
        };
        write();
        // The key record, re-hashed unkeyed, fails under the key.
        CHECK(bad_seq(with_key) == 4);
        // Renamed so that nothing claims the key: no record hashed with it.
        forged[3].action = "a4";
        for (std::size_t i = 3; i < forged.size(); ++i) {
            forged[i].prev_hash = forged[i - 1].hash;
            forged[i].hash = audit_hash(forged[i]);
        }
        write();
        CHECK_FALSE(verify_audit_chain(audit_of(*st, ws), audit_verify_options{}));
        CHECK(bad_seq(with_key) == 8);
        CHECK(bad_seq(audit_verify_options{checkpoint, ""}) == 7);
    }
}
