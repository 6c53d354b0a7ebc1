// The SQLite store: the shared conformance suite on real files, then what is
// particular to SQLite (schema versions, pragmas, locking, several handles).
//
// Two throughput measurements are skipped by default; run them with
//     integration_sqlite_store_test --no-skip --test-case='*throughput*,*1M*'
#include <doctest/doctest.h>
#include <sqlite3.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <mailers/sqlite_store.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "integration/store_conformance.hpp"

namespace fs = std::filesystem;
using namespace mailers;
using conformance::at_seconds;
using conformance::sample_send;
using conformance::sample_suppression;

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
    p.durability = durability;
    return p;
}

conformance::store_factory factory_for(const std::string& path) {
    return [path] { return open_sqlite_store(params_for(path)); };
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

}  // namespace

TEST_CASE("sqlite store passes the store conformance suite (file)") {
    temp_dir dir;
    conformance::run_store_conformance(factory_for(dir.file("conformance.db")), "conformance");
}

TEST_CASE("sqlite store passes the store conformance suite (power_loss_safe)") {
    temp_dir dir;
    const std::string path = dir.file("durable.db");
    conformance::run_store_conformance(
        [path] { return open_sqlite_store(params_for(path, sqlite_durability::power_loss_safe)); },
        "durable");
}

TEST_CASE("sqlite store: :memory: is a private database per open") {
    auto a = open_sqlite_store(params_for(":memory:"));
    auto b = open_sqlite_store(params_for(":memory:"));
    conformance::commit(*a, "ws", {store_ops::insert_send{sample_send(1, "k")}});
    CHECK(a->find_send("ws", 1) == sample_send(1, "k"));
    CHECK_FALSE(b->find_send("ws", 1));
    CHECK(a->load("ws", at_seconds(-10)).idempotency_keys.size() == 1);
}

TEST_CASE("sqlite store: a new file gets the current schema in WAL mode") {
    temp_dir dir;
    const std::string path = dir.file("schema.db");
    open_sqlite_store(params_for(path)).reset();

    raw_db raw(path);
    CHECK(sqlite_schema_version() == 1);
    CHECK(raw.scalar("PRAGMA user_version") == std::to_string(sqlite_schema_version()));
    CHECK(raw.scalar("PRAGMA journal_mode") == "wal");
    for (const char* table : {"objects", "suppressions", "sends", "audit", "workspaces"}) {
        INFO(table);
        CHECK(raw.scalar(std::string("SELECT count(*) FROM pragma_table_info('") + table +
                         "') WHERE name IN ('workspace', 'name')") == "1");
    }
    // The indexes the load and cap queries rely on.
    for (const char* index : {"sends_idempotency_key", "sends_reserved_at", "sends_state"}) {
        INFO(index);
        CHECK(raw.scalar(std::string("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND "
                                     "name = '") +
                         index + "'") == "1");
    }
    CHECK(raw.scalar("SELECT sql FROM sqlite_master WHERE name = 'sends_idempotency_key'")
              .find("WHERE idempotency_key IS NOT NULL") != std::string::npos);
    CHECK(raw.scalar("PRAGMA page_size") == "8192");

    // Reopening an up-to-date file changes nothing.
    const std::string schema_before =
        raw.scalar("SELECT group_concat(sql, ';') FROM sqlite_master");
    open_sqlite_store(params_for(path)).reset();
    CHECK(raw.scalar("SELECT group_concat(sql, ';') FROM sqlite_master") == schema_before);
    CHECK(raw.scalar("PRAGMA user_version") == "1");
}

TEST_CASE("sqlite store: a file from a newer schema is refused untouched") {
    temp_dir dir;

    SUBCASE("a store file bumped to version 99") {
        const std::string path = dir.file("newer.db");
        {
            auto st = open_sqlite_store(params_for(path));
            conformance::commit(*st, "ws", {store_ops::insert_send{sample_send(1)}});
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
    conformance::commit(*st, "ws", {store_ops::put_object{{"mailbox", "m", "{}"}}});
    raw_db raw(path);
    CHECK(raw.scalar("SELECT x FROM host_table") == "42");
    CHECK(raw.scalar("PRAGMA user_version") == "1");
}

TEST_CASE("sqlite store: unusable paths are store errors") {
    temp_dir dir;
    SUBCASE("missing directory") {
        CHECK(open_error(params_for(dir.file("no/such/dir/x.db"))) == errc::store_error);
    }
    SUBCASE("not a database") {
        const std::string path = dir.file("garbage.db");
        std::ofstream(path) << std::string(8192, 'g');
        CHECK(open_error(params_for(path)) == errc::store_error);
    }
    SUBCASE("a table the schema needs already exists with another shape") {
        const std::string path = dir.file("clash.db");
        raw_db(path).exec("CREATE TABLE sends (x INTEGER)");
        CHECK(open_error(params_for(path)) == errc::store_error);
        CHECK(raw_db(path).scalar("PRAGMA user_version") == "0");  // the migration rolled back
    }
}

TEST_CASE("sqlite store: a failed commit names the op, not the personal data") {
    auto st = open_sqlite_store(params_for(":memory:"));
    auto first = sample_send(1, "key");
    first.recipient = "private.person@example.com";
    conformance::commit(*st, "ws", {store_ops::insert_send{first}});
    auto second = sample_send(2, "key");
    second.recipient = "another.person@example.com";
    const std::string message = conformance::commit_must_fail(
        *st, "ws", {store_ops::put_object{{"pool", "p", "{}"}}, store_ops::insert_send{second}});
    CHECK(message.find("op 2 of 2") != std::string::npos);
    CHECK(message.find("insert_send id 2") != std::string::npos);
    CHECK(message.find("UNIQUE") != std::string::npos);
    CHECK(message.find("person@example.com") == std::string::npos);
}

TEST_CASE("sqlite store: send ids up to 2^40 - 1, audit seqs up to 2^63 - 1") {
    auto st = open_sqlite_store(params_for(":memory:"));
    const std::uint64_t largest = (std::uint64_t{1} << 40) - 1;
    conformance::commit(*st, "ws", {store_ops::insert_send{sample_send(largest, "top")}});
    CHECK(st->find_send("ws", largest) == sample_send(largest, "top"));
    auto snap = st->load("ws", at_seconds(0));
    CHECK(snap.max_send_id == largest);
    CHECK(snap.idempotency_keys ==
          std::vector<std::pair<std::string, std::uint64_t>>{{"top", largest}});
    // The neighbouring workspace's keys start right above: nothing leaks.
    conformance::commit(*st, "ws2", {store_ops::insert_send{sample_send(0)}});
    CHECK(st->load("ws", at_seconds(0)).max_send_id == largest);
    CHECK(st->load("ws2", at_seconds(0)).max_send_id == 0);
    CHECK(st->find_send("ws2", 0) == sample_send(0));

    for (const std::uint64_t too_big : {largest + 1, std::uint64_t{1} << 63, ~std::uint64_t{0}}) {
        INFO(too_big);
        conformance::commit_must_fail(
            *st, "ws",
            {store_ops::insert_send{sample_send(1)}, store_ops::insert_send{sample_send(too_big)}});
        CHECK_FALSE(st->find_send("ws", 1));
        CHECK_FALSE(st->find_send("ws", too_big));
    }

    audit_record r = conformance::make_audit_chain(1)[0];
    r.seq = std::uint64_t{1} << 63;
    conformance::commit_must_fail(*st, "ws", {store_ops::append_audit{r}});
    int seen = 0;
    st->for_each_audit("ws", r.seq, [&](const audit_record&) { ++seen; });
    CHECK(seen == 0);
}

TEST_CASE("sqlite store: a workspace first seen in a failed commit keeps no ledger slot") {
    temp_dir dir;
    const std::string path = dir.file("numbers.db");
    auto a = open_sqlite_store(params_for(path));
    auto b = open_sqlite_store(params_for(path));
    conformance::commit(*a, "first", {store_ops::insert_send{sample_send(1)}});
    // "second" is numbered inside a transaction that rolls back ...
    conformance::commit_must_fail(
        *a, "second",
        {store_ops::insert_send{sample_send(1)}, store_ops::insert_send{sample_send(1)}});
    // ... so another handle may number "third" with the same value ...
    auto third = sample_send(1);
    third.mailbox = "third@brand.example";
    conformance::commit(*b, "third", {store_ops::insert_send{third}});
    // ... and "second" must not write into "third"'s range.
    conformance::commit(*a, "second", {store_ops::insert_send{sample_send(1)}});
    CHECK(a->find_send("second", 1) == sample_send(1));
    CHECK(a->find_send("third", 1) == third);
    CHECK(b->find_send("second", 1) == sample_send(1));
    CHECK(b->find_send("third", 1) == third);
    CHECK(
        raw_db(path).scalar(
            "SELECT group_concat(name, ',') FROM (SELECT name FROM workspaces ORDER BY number)") ==
        "first,third,second");
}

TEST_CASE("sqlite store: a writer holding the lock makes commit fail after busy_timeout") {
    temp_dir dir;
    const std::string path = dir.file("busy.db");
    auto p = params_for(path);
    p.busy_timeout = std::chrono::milliseconds(100);
    auto st = open_sqlite_store(p);

    raw_db other(path);
    other.exec("BEGIN IMMEDIATE");
    const auto start = std::chrono::steady_clock::now();
    conformance::commit_must_fail(*st, "ws", {store_ops::insert_send{sample_send(1)}});
    CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(90));
    // Readers are not blocked by a writer in WAL mode.
    CHECK(st->load("ws", at_seconds(0)).max_send_id == 0);
    other.exec("COMMIT");

    conformance::commit(*st, "ws", {store_ops::insert_send{sample_send(1)}});
    CHECK(st->find_send("ws", 1) == sample_send(1));
}

TEST_CASE("sqlite store: one store shared by several threads") {
    temp_dir dir;
    auto st = open_sqlite_store(params_for(dir.file("threads.db")));
    constexpr int threads = 4, per_thread = 200;
    std::atomic<int> failures{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            try {
                for (int i = 0; i < per_thread; ++i) {
                    const auto id = static_cast<std::uint64_t>(t * per_thread + i + 1);
                    const std::vector<store_op> ops = {
                        store_ops::insert_send{sample_send(id, "k" + std::to_string(id))}};
                    st->commit("ws", ops);
                    if (st->find_send("ws", id) != sample_send(id, "k" + std::to_string(id)))
                        ++failures;
                }
            } catch (...) {
                ++failures;
            }
        });
    }
    for (auto& th : pool) th.join();
    CHECK(failures == 0);
    const auto snap = st->load("ws", at_seconds(-1));
    CHECK(snap.max_send_id == threads * per_thread);
    CHECK(snap.idempotency_keys.size() == threads * per_thread);
}

TEST_CASE("sqlite store: a callback may call back into the store") {
    auto st = open_sqlite_store(params_for(":memory:"));
    std::vector<store_op> ops;
    for (int i = 0; i < 5; ++i)
        ops.push_back(store_ops::put_suppression{sample_suppression(
            suppression_kind::address, "u" + std::to_string(i) + "@example.com")});
    st->commit("ws", ops);
    int found = 0;
    st->for_each_suppression("ws", [&](const suppression_entry& e) {
        if (st->find_suppression("ws", e.kind, e.value) == e) ++found;
    });
    CHECK(found == 5);
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// CPU time of the calling thread: on a shared machine, wall time also counts
// the time other processes hold the cores.
double thread_cpu_seconds() {
    timespec ts{};
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Wall and CPU time of a stretch of code, accumulated.
struct stopwatch {
    double wall = 0, cpu = 0;
    template <class F>
    void time(F&& f) {
        const auto start = std::chrono::steady_clock::now();
        const double cpu_start = thread_cpu_seconds();
        f();
        cpu += thread_cpu_seconds() - cpu_start;
        wall += seconds_since(start);
    }
};

// The engine's hot path: group commits of 1,000 reservations plus 1,000
// outcome updates of earlier reservations.
void measure_commit_throughput(sqlite_durability durability, const std::string& label) {
    temp_dir dir;
    auto st = open_sqlite_store(params_for(dir.file("throughput.db"), durability));
    constexpr int batch = 1000, warmup_batches = 20, batches = 200;
    std::uint64_t next_id = 1;
    std::vector<store_op> ops;
    ops.reserve(2 * batch);
    auto make_batch = [&] {
        ops.clear();
        const std::uint64_t first = next_id;
        for (int i = 0; i < batch; ++i) {
            const std::uint64_t id = next_id++;
            auto r = sample_send(id, "campaign-7:user" + std::to_string(id) + "@example.com",
                                 at_seconds(static_cast<std::int64_t>(id / 100)));
            ops.push_back(store_ops::insert_send{std::move(r)});
        }
        // Outcomes arrive for the previous batch's sends.
        for (int i = 0; i < batch; ++i) {
            const std::uint64_t id = first > batch ? first - batch + i : first + i;
            auto r = sample_send(id, "campaign-7:user" + std::to_string(id) + "@example.com",
                                 at_seconds(static_cast<std::int64_t>(id / 100)));
            r.state = send_state::accepted;
            r.updated_at = r.reserved_at + std::chrono::milliseconds(250);
            r.provider_message_id = "0102018c1f6e9a2b-" + std::to_string(id) + "-000000";
            ops.push_back(store_ops::update_send{std::move(r)});
        }
    };
    for (int b = 0; b < warmup_batches; ++b) {
        make_batch();
        st->commit("ws", ops);
    }
    stopwatch sw;
    for (int b = 0; b < batches; ++b) {
        make_batch();  // building the ops is the engine's cost, not the store's
        sw.time([&] { st->commit("ws", ops); });
    }
    const double n = 2.0 * batch * batches;
    MESSAGE(label << ": " << n << " ops in " << batches << " commits of " << 2 * batch
                  << " ops: wall " << sw.wall << " s (" << n / sw.wall << " ops/s), CPU " << sw.cpu
                  << " s (" << n / sw.cpu << " ops/s)");
    CHECK(st->load("ws", at_seconds(0)).max_send_id == next_id - 1);
}

}  // namespace

TEST_CASE("sqlite store: commit throughput" * doctest::skip()) {
    measure_commit_throughput(sqlite_durability::process_crash_safe, "synchronous=NORMAL");
    measure_commit_throughput(sqlite_durability::power_loss_safe, "synchronous=FULL");
}

TEST_CASE("sqlite store: load 1M suppressions" * doctest::skip()) {
    temp_dir dir;
    const std::string path = dir.file("suppressions.db");
    constexpr int total = 1'000'000;
    // Addresses in a scrambled order, as a CSV export from elsewhere has them.
    auto import = [&](const std::string& ws, int batch, const std::string& label) {
        auto st = open_sqlite_store(params_for(path));
        std::vector<store_op> ops;
        ops.reserve(static_cast<std::size_t>(batch));
        stopwatch sw;
        for (std::int64_t n = 0; n < total;) {
            ops.clear();
            for (int i = 0; i < batch; ++i, ++n) {
                auto e = sample_suppression(
                    suppression_kind::address,
                    "someone." + std::to_string(n * 7919 % total) + "@example.com",
                    suppression_reason::unsubscribe);
                e.source = "csv-import";
                ops.push_back(store_ops::put_suppression{std::move(e)});
            }
            sw.time([&] { st->commit(ws, ops); });
        }
        MESSAGE(label << ": " << total << " put_suppression in wall " << sw.wall << " s ("
                      << total / sw.wall << " ops/s), CPU " << sw.cpu << " s");
    };
    import("one-commit", total, "import in one commit");
    import("ws", 10'000, "import in commits of 10,000");

    auto st = open_sqlite_store(params_for(path));  // a cold handle, as at engine start-up
    store_snapshot snap;
    stopwatch load;
    load.time([&] { snap = st->load("ws", at_seconds(0)); });
    MESSAGE("load(): " << snap.suppressions.size() << " suppressions in wall " << load.wall
                       << " s, CPU " << load.cpu << " s");
    CHECK(snap.suppressions.size() == total);
    CHECK(load.cpu < 2.0);

    std::size_t n = 0;
    stopwatch iterate;
    iterate.time([&] { st->for_each_suppression("ws", [&](const suppression_entry&) { ++n; }); });
    MESSAGE("for_each_suppression: " << n << " in wall " << iterate.wall << " s, CPU "
                                     << iterate.cpu << " s");
}
