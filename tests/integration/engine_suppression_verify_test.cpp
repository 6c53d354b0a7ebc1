// engine::verify_suppressions on SQLite and PostgreSQL: a workspace changed
// only through the library verifies; one changed behind its back, with raw
// SQL on the store, is reported, naming the key or the change.
#include <SQLiteCpp/SQLiteCpp.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <mailers/postgres_store.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>

#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

// One store to run the scenarios on, and raw SQL on the same database.
// `{s}` in a statement names the store's tables' schema ("" or "schema.").
struct backend {
    std::string name;
    std::function<std::shared_ptr<store>()> open;
    std::function<void(std::string)> exec;
    std::string prefix;
    bool postgres = false;
};

std::string with_prefix(std::string sql, const std::string& prefix) {
    for (std::size_t at; (at = sql.find("{s}")) != std::string::npos;) sql.replace(at, 3, prefix);
    return sql;
}

std::optional<std::string> pg_conninfo() {
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (c && *c) return std::string(c);
    const char* req = std::getenv("MAILERS_REQUIRE_PG");
    if (req && std::string_view{req} == "1")
        FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset");
    MESSAGE("skipped on PostgreSQL: set MAILERS_TEST_PG to a conninfo to run it");
    return std::nullopt;
}

struct sqlite_backend : backend {
    db_file db{"verify"};
    sqlite_backend() {
        name = "sqlite";
        const std::string path = db.path.string();
        open = [path] { return open_sqlite_store({path, open_mode::open_or_create}); };
        exec = [path](std::string sql) {
            SQLite::Database raw(path, SQLite::OPEN_READWRITE);
            raw.exec(with_prefix(std::move(sql), ""));
        };
    }
};

struct pg_backend : backend {
    explicit pg_backend(const std::string& conninfo) {
        name = "postgres";
        postgres = true;
        std::random_device rd;
        const std::string schema = "verify_" + std::to_string(rd()) + std::to_string(rd());
        prefix = schema + ".";
        postgres_store_params p;
        p.conninfo = conninfo;
        p.schema = schema;
        p.mode = open_mode::open_or_create;
        open = [p] { return open_postgres_store(p); };
        exec = [conninfo, schema](std::string sql) {
            PGconn* c = PQconnectdb(conninfo.c_str());
            REQUIRE(PQstatus(c) == CONNECTION_OK);
            PGresult* r = PQexec(c, with_prefix(std::move(sql), schema + ".").c_str());
            const auto status = PQresultStatus(r);
            const std::string error = PQresultErrorMessage(r);
            PQclear(r);
            PQfinish(c);
            INFO(error);
            REQUIRE((status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK));
        };
        drop = [conninfo, schema] {
            PGconn* c = PQconnectdb(conninfo.c_str());
            PQclear(PQexec(c, ("SET client_min_messages = warning; DROP SCHEMA IF EXISTS " +
                               schema + " CASCADE")
                                  .c_str()));
            PQfinish(c);
        };
    }
    ~pg_backend() {
        if (drop) drop();
    }
    std::function<void()> drop;
};

// An engine over the backend's store, driven as the fixture drives one.
std::unique_ptr<fixture> engine_on(const backend& b,
                                   std::optional<suppression_options> rules = {}) {
    auto f = std::make_unique<fixture>();
    f->eng.reset();
    f->store = b.open();
    engine_params p;
    p.storage = f->store;
    p.clock = f->clock;
    p.suppression = rules;
    f->eng = std::make_unique<engine>(f->ioc.get_executor(), std::move(p));
    f->eng->add_provider(f->admin, "capture", f->capture);
    return f;
}

struct change_seqs {
    std::uint64_t import = 0;
};

// Every path that changes suppressions: suppress, a suppress over an entry,
// unsuppress, an import (over a stored key, with a key given twice), a hard
// bounce, and a re-key when the folding rules change.
change_seqs populate(const backend& b) {
    change_seqs out;
    {
        auto f = engine_on(b);
        auto& e = *f->eng;
        e.suppress(f->admin, suppression_kind::address, "a@example.com",
                   suppression_reason::unsubscribe);
        e.suppress(f->admin, suppression_kind::address, "b@example.com",
                   suppression_reason::manual);
        e.suppress(f->admin, suppression_kind::domain, "spam.example", suppression_reason::legal);
        e.suppress(f->admin, suppression_kind::address, "x+tag@example.com",
                   suppression_reason::manual);
        e.suppress(f->admin, suppression_kind::address, "x@example.com",
                   suppression_reason::manual);
        f->clock->advance(std::chrono::seconds(1));
        e.suppress(f->admin, suppression_kind::address, "a@example.com",
                   suppression_reason::complaint, "again");
        CHECK(e.unsuppress(f->admin, suppression_kind::address, "b@example.com"));
        std::istringstream csv(
            "value,kind,reason\n"
            "c@example.com,address,unsubscribe\n"
            "d@example.com,address,unsubscribe\n"
            "c@example.com,address,complaint\n"
            "a@example.com,address,legal\n");
        CHECK(e.import_suppressions(f->admin, csv, "list.csv") == 4);
        for (const auto& r : e.audit_log())
            if (r.action == "suppression.import") out.import = r.change_seq;

        auto fi = f->add_faulty_provider("faulty");
        auto m = f->mailbox("rep1", "rep1@brand.com");
        m.provider = "faulty";
        e.upsert_mailbox(f->admin, m);
        fi->fail_nth(1, make_error_code(transport_errc::recipient_rejected));
        f->send(fixture::direct("rep1", "gone@example.com"));
        f->drain();
        CHECK(e.is_suppressed("gone@example.com"));
    }
    // Folding plus tags re-keys x+tag@ onto x@, which is stored already.
    auto f = engine_on(b, suppression_options{true, false});
    CHECK(f->eng->is_suppressed("x+other@example.com"));
    CHECK(f->eng->verify_suppressions().ok);
    return out;
}

suppression_verify_report verify(const backend& b) {
    return engine_on(b)->eng->verify_suppressions();
}

bool names(const suppression_verify_report& r, std::string_view value) {
    for (const auto& p : r.problems)
        if (p.value == value) return true;
    return false;
}

std::string describe(const suppression_verify_report& r) {
    std::string out;
    for (const auto& p : r.problems)
        out += p.value + " (audit " + std::to_string(p.audit_seq) + ", change " +
               std::to_string(p.change_seq) + "): " + p.what + "\n";
    return out;
}

void clean_and_tampered(const backend& b) {
    const auto seqs = populate(b);
    SUBCASE("a workspace changed only through the library verifies") {
        const auto r = verify(b);
        INFO(describe(r));
        CHECK(r.ok);
        CHECK(r.audit_chain_ok);
        CHECK(r.rows == 6);  // a, spam.example, x (re-keyed onto), c, d, gone
        CHECK(r.rows + r.superseded_rows > r.rows);
        CHECK(r.changes >= 10);
        CHECK(r.unchecked_rows == 0);
        CHECK(r.problems.empty());
    }
    SUBCASE("a deleted row") {
        b.exec("DELETE FROM {s}suppressions WHERE value = 'spam.example'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        CHECK(names(r, "spam.example"));
    }
    SUBCASE("a row's reason edited") {
        b.exec("UPDATE {s}suppressions SET reason = 0 WHERE value = 'gone@example.com'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        CHECK(names(r, "gone@example.com"));
    }
    SUBCASE("a row inserted without an audited change") {
        for (const char* seq : {"0", "3", "100000"}) {
            const std::string value = std::string("evil") + seq + "@example.com";
            b.exec(
                "INSERT INTO {s}suppressions (workspace, kind, value, reason, source, created_at, "
                "seq) VALUES ('default', 0, '" +
                value + "', 3, 'api', 0, " + seq + ")");
            const auto r = verify(b);
            INFO(seq, describe(r));
            CHECK_FALSE(r.ok);
            CHECK(names(r, value));
            b.exec("DELETE FROM {s}suppressions WHERE value = '" + value + "'");
        }
    }
    SUBCASE("an imported row deleted") {
        b.exec("DELETE FROM {s}suppressions WHERE value = 'd@example.com'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        bool import_named = false;
        for (const auto& p : r.problems)
            import_named |= p.change_seq == seqs.import && p.value.empty() &&
                            p.what.find("import") != std::string::npos;
        CHECK(import_named);
    }
    SUBCASE("an imported row edited: the count holds, the digest does not") {
        b.exec("UPDATE {s}suppressions SET source = 'forged' WHERE value = 'd@example.com'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        bool digest = false;
        for (const auto& p : r.problems)
            digest |= p.change_seq == seqs.import && p.what.find("digest") != std::string::npos;
        CHECK(digest);
    }
    SUBCASE("a removed row resurrected") {
        if (b.postgres)
            b.exec(
                "UPDATE {s}suppressions t SET reason = x.reason, source = x.source, created_at = "
                "x.created_at, seq = x.seq FROM {s}suppression_superseded x WHERE x.workspace = "
                "t.workspace AND x.kind = t.kind AND x.value = t.value AND t.value = "
                "'b@example.com'");
        else
            b.exec(
                "INSERT INTO {s}suppressions (workspace, kind, value, reason, source, created_at, "
                "seq) SELECT workspace, kind, value, reason, source, created_at, seq FROM "
                "{s}suppression_superseded WHERE value = 'b@example.com'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        CHECK(names(r, "b@example.com"));
    }
    SUBCASE("a replaced row deleted") {
        b.exec("DELETE FROM {s}suppression_superseded WHERE value = 'b@example.com'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        CHECK(names(r, "b@example.com"));
    }
    SUBCASE("a re-keyed row deleted") {
        b.exec("DELETE FROM {s}suppression_superseded WHERE value = 'x+tag@example.com'");
        const auto r = verify(b);
        INFO(describe(r));
        CHECK_FALSE(r.ok);
        CHECK(r.problem_count >= 1);
    }
    SUBCASE("an audit record edited: the chain fails, nothing else is checked") {
        b.exec("UPDATE {s}audit SET actor = 'mallory' WHERE seq = 2");
        const auto r = verify(b);
        CHECK_FALSE(r.ok);
        CHECK_FALSE(r.audit_chain_ok);
        CHECK(r.broken_audit_seq == 2);
        CHECK(r.rows == 0);
    }
}

// Two engines on one store make random changes while a third party keeps
// verifying: no check sees a concurrent change as tampering, and the end
// state verifies.
void random_two_engines(const backend& b, std::uint64_t seed) {
    auto one = engine_on(b);
    auto two = engine_on(b);
    std::atomic<bool> done{false};
    std::atomic<int> checks{0}, failures{0};
    std::string first_failure;
    std::thread checker([&] {
        auto st = b.open();
        while (!done) {
            const auto r = verify_suppressions(*st, "default", "");
            ++checks;
            if (!r.ok && failures++ == 0) first_failure = describe(r);
        }
    });
    std::mt19937_64 rng(seed);
    for (int i = 0; i < 120; ++i) {
        auto& f = rng() % 2 ? *one : *two;
        const std::string who = "u" + std::to_string(rng() % 15) + "@example.com";
        switch (rng() % 5) {
            case 0:
            case 1:
                f.eng->suppress(f.admin, suppression_kind::address, who,
                                static_cast<suppression_reason>(rng() % 5), "r");
                break;
            case 2:
                f.eng->unsuppress(f.admin, suppression_kind::address, who);
                break;
            case 3: {
                std::string text = "value\n";
                for (int k = 0, n = static_cast<int>(rng() % 6); k < n; ++k)
                    text += "u" + std::to_string(rng() % 15) + "@example.com\n";
                std::istringstream csv(text);
                f.eng->import_suppressions(f.admin, csv, "batch");
                break;
            }
            default:
                f.clock->advance(std::chrono::milliseconds(rng() % 5000));
        }
    }
    done = true;
    checker.join();
    INFO(first_failure);
    CHECK(failures == 0);
    CHECK(checks > 0);
    for (auto* f : {one.get(), two.get()}) {
        const auto r = f->eng->verify_suppressions();
        INFO(describe(r));
        CHECK(r.ok);
        CHECK(r.changes > 0);
    }
}

}  // namespace

TEST_CASE("verify_suppressions on SQLite") {
    sqlite_backend b;
    clean_and_tampered(b);
}

TEST_CASE("verify_suppressions on PostgreSQL") {
    const auto c = pg_conninfo();
    if (!c) return;
    pg_backend b(*c);
    clean_and_tampered(b);
}

TEST_CASE("verify_suppressions after random changes by two engines on one store") {
    const std::uint64_t seed = std::random_device{}();
    INFO("seed " << seed);
    {
        sqlite_backend b;
        random_two_engines(b, seed);
    }
    if (const auto c = pg_conninfo()) {
        pg_backend b(*c);
        random_two_engines(b, seed);
    }
}

TEST_CASE("verify_suppressions: rows from before audit records carried change seqs") {
    sqlite_backend b;
    std::uint64_t legacy_end = 0;
    {
        auto f = engine_on(b);
        f->eng->suppress(f->admin, suppression_kind::address, "old1@example.com",
                         suppression_reason::manual);
        f->eng->suppress(f->admin, suppression_kind::address, "old2@example.com",
                         suppression_reason::manual);
        legacy_end = f->eng->audit_log().back().seq;
    }
    // As a store upgraded from an earlier version holds them: the records
    // written so far carry no change seq, and are hashed without one.
    {
        std::vector<audit_record> log;
        b.open()->for_each_audit("default", 1, [&](const audit_record& r) { log.push_back(r); });
        SQLite::Database raw(b.db.path.string(), SQLite::OPEN_READWRITE);
        std::string prev;
        for (auto& r : log) {
            REQUIRE(r.seq <= legacy_end);
            r.change_seq = 0;
            r.prev_hash = prev;
            r.hash = audit_hash(r);
            prev = r.hash;
            SQLite::Statement q(raw,
                                "UPDATE audit SET change_seq = 0, prev_hash = ?1, hash = ?2 "
                                "WHERE workspace = 'default' AND seq = ?3");
            q.bind(1, r.prev_hash);
            q.bind(2, r.hash);
            q.bind(3, static_cast<std::int64_t>(r.seq));
            q.exec();
        }
        SQLite::Statement head(raw, "UPDATE workspaces SET audit_hash = ?1 WHERE name = 'default'");
        head.bind(1, prev);
        head.exec();
    }
    auto f = engine_on(b);
    REQUIRE(f->eng->verify_audit() == error_code{});
    f->eng->suppress(f->admin, suppression_kind::address, "new@example.com",
                     suppression_reason::manual);
    CHECK(f->eng->unsuppress(f->admin, suppression_kind::address, "old1@example.com"));
    auto r = f->eng->verify_suppressions();
    INFO(describe(r));
    CHECK(r.ok);
    CHECK(r.unchecked_rows == 2);  // old1 (now replaced) and old2
    CHECK(r.rows == 2);
    CHECK(r.superseded_rows == 1);

    // The removal of a row from before is still checked.
    b.exec("DELETE FROM suppression_superseded WHERE value = 'old1@example.com'");
    r = f->eng->verify_suppressions();
    CHECK_FALSE(r.ok);
    CHECK(names(r, "old1@example.com"));
}
