// engine::verify_suppressions on SQLite and PostgreSQL: a workspace changed
// only through the library verifies; one changed behind its back, with raw
// SQL on the store, is reported, naming the key or the change.
#include <SQLiteCpp/SQLiteCpp.h>
#include <libpq-fe.h>

#include <cstdlib>
#include <mailers/postgres_store.hpp>
#include <mailers/sequence.hpp>
#include <mailers/suppression_lookup.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <atomic>
#include <future>
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
    /// Every cell of every table of the store holding `needle` (lower case),
    /// in any letter case, as "table: cell".
    std::function<std::vector<std::string>(std::string needle)> scan;
    std::string prefix;
    bool postgres = false;
};

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

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
        scan = [path](std::string needle) {
            std::vector<std::string> hits;
            SQLite::Database raw(path, SQLite::OPEN_READONLY);
            std::vector<std::string> tables;
            SQLite::Statement t(raw, "SELECT name FROM sqlite_master WHERE type = 'table'");
            while (t.executeStep()) tables.push_back(t.getColumn(0).getString());
            for (const auto& table : tables) {
                SQLite::Statement q(raw, "SELECT * FROM \"" + table + "\"");
                while (q.executeStep())
                    for (int i = 0; i < q.getColumnCount(); ++i) {
                        const auto col = q.getColumn(i);
                        const std::string cell(static_cast<const char*>(col.getBlob()),
                                               col.getBytes());
                        if (lower(cell).find(needle) != std::string::npos)
                            hits.push_back(table + ": " + cell);
                    }
            }
            return hits;
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
        scan = [conninfo, schema](std::string needle) {
            std::vector<std::string> hits;
            PGconn* c = PQconnectdb(conninfo.c_str());
            REQUIRE(PQstatus(c) == CONNECTION_OK);
            const std::string cols_sql =
                "SELECT table_name, column_name, data_type FROM information_schema.columns "
                "WHERE table_schema = '" + schema + "'";
            PGresult* cols = PQexec(c, cols_sql.c_str());
            REQUIRE(PQresultStatus(cols) == PGRES_TUPLES_OK);
            for (int i = 0; i < PQntuples(cols); ++i) {
                const std::string table = PQgetvalue(cols, i, 0), column = PQgetvalue(cols, i, 1),
                                  type = PQgetvalue(cols, i, 2);
                // Bytes as they are (the queue's requests), text as text.
                const std::string cell = type == "bytea"
                                             ? "encode(\"" + column + "\", 'escape')"
                                             : "\"" + column + "\"::text";
                const std::string sql = "SELECT " + cell + " FROM " + schema + ".\"" + table +
                                        "\" WHERE lower(" + cell + ") LIKE '%" + needle + "%'";
                PGresult* r = PQexec(c, sql.c_str());
                INFO(sql << ": " << PQresultErrorMessage(r));
                REQUIRE(PQresultStatus(r) == PGRES_TUPLES_OK);
                for (int j = 0; j < PQntuples(r); ++j)
                    hits.push_back(table + ": " + PQgetvalue(r, j, 0));
                PQclear(r);
            }
            PQclear(cols);
            PQfinish(c);
            return hits;
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
// `tweak` sets what else the scenario needs (an audit key, an authorizer).
std::unique_ptr<fixture> engine_on(const backend& b, std::optional<suppression_options> rules = {},
                                   std::string erasure_key = {},
                                   const std::function<void(engine_params&)>& tweak = {}) {
    auto f = std::make_unique<fixture>();
    f->eng.reset();
    f->store = b.open();
    engine_params p;
    p.storage = f->store;
    p.clock = f->clock;
    p.suppression = rules;
    p.erasure_key = std::move(erasure_key);
    if (tweak) tweak(p);
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
// state verifies. With `purges`, the engines also purge the oldest audit
// records now and then (their clocks disagree), and the chain verifies
// from its anchor after each purge.
void random_two_engines(const backend& b, std::uint64_t seed, bool purges = false) {
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
    int purged = 0;
    for (int i = 0; i < 120; ++i) {
        auto& f = rng() % 2 ? *one : *two;
        const std::string who = "u" + std::to_string(rng() % 15) + "@example.com";
        switch (rng() % (purges ? 6 : 5)) {
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
            case 5: {
                const auto r = f.eng->purge_audit(
                    f.admin, f.clock->now() - std::chrono::milliseconds(rng() % 20000),
                    rng() % 4 == 0 ? f.eng->audit_log().back().seq : 0);
                purged += r.purged != 0;
                std::uint64_t bad = 0;
                const auto ec = f.eng->verify_audit(&bad);
                INFO("step " << i << ", bad seq " << bad);
                CHECK_FALSE(ec);
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
    if (purges) CHECK(purged > 0);
    for (auto* f : {one.get(), two.get()}) {
        CHECK_FALSE(f->eng->verify_audit());
        const auto r = f->eng->verify_suppressions();
        INFO(describe(r));
        CHECK(r.ok);
        CHECK(r.changes > 0);
    }
}

// --- erasure of a person ----------------------------------------------------

template_source hello() {
    template_source t;
    t.subject = "Hello {{first_name|there}}";
    t.text = "Hi";
    return t;
}

// Requires the person's name to be nowhere in the store but in the audit
// records written before `erase_seq` (docs/privacy.md), and in no record
// from it on.
void require_gone(const backend& b, engine& e, const std::string& needle,
                  std::uint64_t erase_seq) {
    for (const auto& hit : b.scan(needle)) {
        INFO(b.name << " holds it: " << hit);
        CHECK(hit.rfind("audit: ", 0) == 0);
    }
    for (const auto& r : e.audit_log(erase_seq)) {
        INFO("audit record " << r.seq << " " << r.action);
        CHECK(lower(r.resource_id + r.before + r.after).find(needle) == std::string::npos);
    }
}

void erase_everywhere(const backend& b) {
    const suppression_options rules{true, false};
    auto one = engine_on(b, rules);
    auto two = engine_on(b, rules);
    auto& e1 = *one->eng;
    auto& e2 = *two->eng;
    e1.upsert_mailbox(one->admin, one->mailbox("rep1", "rep1@brand.com"));
    one->add_pool("out", {"rep1"});
    webhook_endpoint hook;
    hook.id = "hook";
    hook.url = "https://hooks.example.com/mailers";
    e1.put_webhook_endpoint(one->admin, hook);

    // Zelda is sent to, queued for later, enrolled, in a campaign, and her
    // suppression has a history.
    auto [ec, sent] = one->send(fixture::request("out", "Zelda.Erasure+news@Example.com", "k-1"));
    REQUIRE_FALSE(ec);
    enqueue_options later;
    later.not_before = one->clock->now() + std::chrono::hours(48);
    e1.enqueue(fixture::request("out", "zelda.erasure@example.com", "q-1"), later);
    sequence_config seq;
    seq.id = "s1";
    seq.steps = {sequence_step{{sequence_delay::unit::days, 3},
                               hello(),
                               {sender_rule_kind::mailbox, "rep1", ""},
                               step_threading::new_thread}};
    e1.upsert_sequence(one->admin, seq);
    enroll_options eo;
    eo.variables = {{"first_name", "Zelda"}};
    e1.enroll(one->admin, "s1", address{"Zelda.Erasure", "example.com", "Zelda E"}, eo);
    campaign_config camp;
    camp.id = "c1";
    camp.name = "Winter";
    camp.content = hello();
    camp.pool = "out";
    camp.not_before = later.not_before;
    camp.recipients = {{address{"zelda.erasure", "example.com", "Zelda"}, {{"first_name", "Z"}}},
                       {address{"other", "example.com", ""}, {}}};
    e1.start_campaign(one->admin, camp);
    e1.suppress(one->admin, suppression_kind::address, "zelda.erasure@example.com",
                suppression_reason::manual);
    CHECK(e1.unsuppress(one->admin, suppression_kind::address, "zelda.erasure@example.com"));
    e1.suppress(one->admin, suppression_kind::address, "ZELDA.ERASURE@example.com",
                suppression_reason::complaint, "ticket-7");
    one->drain();

    // Art. 15 first: everything held about her, read by the other engine.
    const auto doc = e2.export_person(two->admin, "zelda.erasure@example.com");
    CHECK(doc.find("\"suppressed\":true") != std::string::npos);
    CHECK(doc.find("\"sends\":[{") != std::string::npos);
    CHECK(doc.find("\"enrollments\":[{") != std::string::npos);
    CHECK(doc.find("\"queued\":[{") != std::string::npos);
    CHECK(doc.find("\"events\":[{") != std::string::npos);
    CHECK(doc.find("ticket-7") != std::string::npos);
    CHECK(e1.audit_log().back().action == "person.export");
    CHECK(lower(e1.audit_log().back().after).find("zelda") == std::string::npos);

    // Erased by the second engine, spelled otherwise.
    const auto before = one->capture->sent().size() + two->capture->sent().size();
    const auto rep = e2.erase_person(two->admin, " ZELDA.ERASURE@EXAMPLE.COM ");
    CHECK(is_erased_value(rep.hash));
    CHECK(rep.was_suppressed);
    CHECK(rep.erased.suppression_rows == 2);  // the row in force and the one removed
    CHECK(rep.erased.sends >= 1);
    CHECK(rep.erased.queued >= 2);  // the later send and the campaign's item
    CHECK(rep.erased.queue_cancelled >= 2);
    CHECK(rep.erased.enrollments == 1);
    CHECK(rep.erased.webhook_deliveries >= 1);
    const auto record = e1.audit_log(rep.audit_seq).front();
    CHECK(record.action == "person.erase");
    CHECK(record.actor == two->admin.id);
    CHECK(record.resource_id == rep.hash);

    // Every spelling the rules fold together is suppressed in both engines,
    // by the hash, and nothing is handed off to it.
    const std::vector<std::string> spellings{
        "zelda.erasure@example.com", "Zelda.Erasure@EXAMPLE.COM",
        "zelda.erasure+other@example.com", "\"zelda.erasure\"@example.com",
        "ZELDA.ERASURE+X@Example.Com"};
    for (auto* f : {one.get(), two.get()}) {
        for (const auto& sp : spellings) {
            INFO(b.name << ": " << sp);
            CHECK(f->eng->is_suppressed(sp));
            const auto found = f->eng->find_suppression(sp);
            REQUIRE(found.has_value());
            CHECK(found->value == rep.hash);
            auto [sec, sres] = f->send(fixture::request("out", sp));
            CHECK(sec == make_error_code(errc::suppressed));
            CHECK(code_of([&] { f->eng->enqueue(fixture::request("out", sp)); }) ==
                  errc::suppressed);
            auto at = sp.find('@');
            CHECK(code_of([&] {
                      f->eng->enroll(f->admin, "s1", address{sp.substr(0, at), sp.substr(at + 1), ""},
                                     eo);
                  }) == errc::suppressed);
        }
        // A campaign, an import and a suppression of her store nothing plain.
        campaign_config c2 = camp;
        c2.id = "c2-" + std::to_string(f == one.get());
        c2.recipients = {{address{"Zelda.Erasure+c2", "example.com", ""}, {{"first_name", "Z"}}}};
        const auto info = f->eng->start_campaign(f->admin, c2);
        CHECK(info.suppressed_at_start == 1);
        std::istringstream csv("Zelda.Erasure@example.com,address,complaint\n"
                               "keep.me@example.com,address,complaint\n");
        CHECK(f->eng->import_suppressions(f->admin, csv) == 1);
        f->eng->suppress(f->admin, suppression_kind::address, "zelda.erasure+s@example.com",
                         suppression_reason::manual);
        f->drain();
    }
    CHECK(one->capture->sent().size() + two->capture->sent().size() == before);
    for (auto* f : {one.get(), two.get()}) {
        const auto r = f->eng->verify_suppressions();
        INFO(describe(r));
        CHECK(r.ok);
        CHECK_FALSE(f->eng->verify_audit());
    }
    require_gone(b, e1, "zelda", rep.audit_seq);

    // Again: nothing left; bad input changes nothing.
    const auto again = e1.erase_person(one->admin, "zelda.erasure@example.com");
    CHECK(again.erased == erasure_counts{});
    CHECK(again.hash == rep.hash);
    const auto n = e1.audit_log().size();
    CHECK(code_of([&] { e1.erase_person(one->admin, "not-an-address"); }) ==
          errc::invalid_address);
    CHECK(code_of([&] { e1.erase_person(one->admin, "example.com"); }) == errc::invalid_address);
    CHECK(code_of([&] { e1.erase_person(one->admin, "a@b.example\r\nBcc: x@y"); }) ==
          errc::invalid_address);
    CHECK(code_of([&] { e1.export_person(one->admin, "nope"); }) == errc::invalid_address);
    CHECK(e1.audit_log().size() == n);

    // A new engine of the workspace loads the hash and refuses too.
    one.reset();
    two.reset();
    auto three = engine_on(b, rules);
    CHECK(three->eng->is_suppressed("zelda.erasure+later@example.com"));
    CHECK(three->eng->verify_suppressions().ok);
}

// Internationalised domains and address literals: every form the
// normaliser treats as one address is suppressed once one is erased, also
// after the folding rules change.
void erase_spellings(const backend& b) {
    {
        auto one = engine_on(b);
        auto two = engine_on(b);
        one->eng->erase_person(one->admin, "Ünï@Bücher.example");
        one->eng->erase_person(one->admin, "lit@[192.000.002.001]");
        one->eng->erase_person(one->admin, "fold.me@example.com");
        for (const auto* sp : {"ünï@xn--bcher-kva.example", "ÜNÏ@BÜCHER.EXAMPLE",
                               "lit@[192.0.2.1]", "lit@[IPv6:::ffff:192.0.2.1]",
                               "Fold.Me@Example.com"}) {
            INFO(sp);
            CHECK(two->eng->is_suppressed(sp));
        }
        CHECK_FALSE(two->eng->is_suppressed("fold.me+x@example.com"));  // not folded yet
        CHECK_FALSE(two->eng->is_suppressed("lit@[192.0.2.2]"));
        CHECK(two->eng->verify_suppressions().ok);
    }
    // Folding plus tags from now on: the hash made for these rules matches.
    auto folded = engine_on(b, suppression_options{true, false});
    CHECK(folded->eng->is_suppressed("fold.me+x@example.com"));
    CHECK(folded->eng->is_suppressed("fold.me@example.com"));
    CHECK_FALSE(folded->eng->is_suppressed("other+x@example.com"));
    CHECK(folded->eng->verify_suppressions().ok);
    // A CSV export holds the hashes, and imports back.
    std::ostringstream out;
    folded->eng->export_suppressions(out);
    CHECK(out.str().find("erased:") != std::string::npos);
    CHECK(lower(out.str()).find("fold.me") == std::string::npos);
    std::istringstream in(out.str());
    CHECK(folded->eng->import_suppressions(folded->admin, in) > 0);
    CHECK(folded->eng->is_suppressed("fold.me+y@example.com"));
    CHECK(folded->eng->verify_suppressions().ok);
    require_gone(b, *folded->eng, "fold.me", 1);
}

// A key the hosts hold: the store keeps only its mark; an engine without
// it, or with another, is refused at start, and one that meets the choice
// while running refuses every send rather than miss an erased person.
void erase_with_host_key(const backend& b) {
    const auto with_key = [&](std::string key) { return engine_on(b, {}, std::move(key)); };
    auto plain = engine_on(b);
    auto holder = with_key("host-held erasure key");
    const auto rep = holder->eng->erase_person(holder->admin, "held@example.com");
    CHECK(holder->eng->is_suppressed("Held@Example.com"));
    CHECK_FALSE(holder->eng->is_suppressed("free@example.com"));
    // The engine without the key cannot check the hash: it refuses everyone.
    CHECK(plain->eng->is_suppressed("free@example.com"));
    CHECK(code_of([&] { plain->eng->erase_person(plain->admin, "x@example.com"); }) ==
          errc::invalid_argument);
    for (const auto& hit : b.scan("host-held")) {
        INFO(hit);
        CHECK(false);
    }
    plain.reset();
    CHECK(code_of([&] { engine_on(b); }) == errc::invalid_argument);
    CHECK(code_of([&] { with_key("another key"); }) == errc::invalid_argument);
    auto again = with_key("host-held erasure key");
    CHECK(again->eng->is_suppressed("held@example.com"));
    CHECK(again->eng->find_suppression("held@example.com")->value == rep.hash);
    CHECK_FALSE(again->eng->is_suppressed("free@example.com"));
    CHECK(again->eng->verify_suppressions().ok);
}

// Retention windows: ended ledger rows and outbox rows older than the
// window go, audited; a ledger window shorter than the caps' is refused.
void purge_retained(const backend& b) {
    auto f = engine_on(b);
    auto& e = *f->eng;
    e.upsert_mailbox(f->admin, f->mailbox("rep1", "rep1@brand.com"));
    f->add_pool("out", {"rep1"});
    auto [ec, old] = f->send(fixture::request("out", "old@example.com", "old-key"));
    REQUIRE_FALSE(ec);
    f->clock->advance(std::chrono::hours(24 * 20));
    auto [ec2, fresh] = f->send(fixture::request("out", "new@example.com"));
    REQUIRE_FALSE(ec2);
    f->drain();
    const auto n = e.audit_log().size();
    retention_policy too_short;
    too_short.sends = std::chrono::hours(24);
    CHECK(code_of([&] { e.purge_retained(f->admin, too_short); }) == errc::invalid_argument);
    CHECK(e.audit_log().size() == n);
    retention_policy p;
    p.sends = std::chrono::hours(24 * 10);
    p.webhook_deliveries = std::chrono::hours(24 * 10);
    const auto r = e.purge_retained(f->admin, p);
    CHECK(r.sends == 1);
    CHECK_FALSE(f->store->find_send("default", std::stoull(old.send_id)).has_value());
    CHECK(f->store->find_send("default", std::stoull(fresh.send_id)).has_value());
    for (const auto& hit : b.scan("old@example.com")) {
        INFO(hit);  // only the audit trail remembers it
        CHECK(hit.rfind("audit: ", 0) == 0);
    }
    const auto rec = e.audit_log(r.audit_seq).front();
    CHECK(rec.action == "retention.purge");
    CHECK(rec.after.find("\"sends\":1") != std::string::npos);
    CHECK(e.purge_retained(f->admin, p).sends == 0);
    CHECK_FALSE(e.verify_audit());
}

// The daily counts of days before the counts window go with the retention
// purge, audited; a window shorter than the longest one that reads them is
// refused and changes nothing.
void purge_retained_counts(const backend& b) {
    auto f = engine_on(b);
    auto& e = *f->eng;
    e.upsert_mailbox(f->admin, f->mailbox("rep1", "rep1@brand.com"));
    f->add_pool("out", {"rep1"});
    const auto first_day = utc_day(f->clock->now());
    REQUIRE_FALSE(f->send(fixture::request("out", "old@example.com")).first);
    f->clock->advance(std::chrono::hours(24 * 400));
    REQUIRE_FALSE(f->send(fixture::request("out", "new@example.com")).first);
    f->drain();
    const auto today = utc_day(f->clock->now());
    auto sent = [&](count_day from) {
        std::uint64_t n = 0;
        for (const auto& d : e.daily_counts(count_scope::mailbox, "rep1", from, today))
            n += d[count_metric::sent];
        return n;
    };
    REQUIRE(sent(first_day) == 2);
    const auto n = e.audit_log().size();
    retention_policy too_short;
    too_short.counts = std::chrono::hours(24 * 364);
    CHECK(code_of([&] { e.purge_retained(f->admin, too_short); }) == errc::invalid_argument);
    CHECK(e.audit_log().size() == n);
    CHECK(sent(first_day) == 2);
    retention_policy p;
    p.counts = std::chrono::hours(24 * 365);
    const auto r = e.purge_retained(f->admin, p);
    CHECK(r.counts >= 1);
    CHECK(sent(first_day) == 1);  // today's send is counted still
    CHECK(sent(today) == 1);
    const auto rec = e.audit_log(r.audit_seq).front();
    CHECK(rec.action == "retention.purge");
    CHECK(rec.after.find("\"counts_retention_s\":31536000") != std::string::npos);
    CHECK(e.purge_retained(f->admin, p).counts == 0);
    CHECK_FALSE(e.verify_audit());
}

// Two engines take the same one-click token at the same moment, as a
// mailbox provider's POST and the person's click can reach two processes:
// one suppresses, counts and audits it, the other finds it done. Lifted by
// an operator, the same link suppresses again.
void unsubscribe_race(const backend& b) {
    const std::string secret = "a-secret-of-at-least-16-bytes";
    auto links = [&](engine_params& p) {
        p.unsubscribe.url = "https://mail.brand.example/unsubscribe";
        p.unsubscribe.secret = secret;
    };
    auto one = engine_on(b, {}, {}, links);
    auto two = engine_on(b, {}, {}, links);
    constexpr int rounds = 12;
    std::vector<std::string> tokens;
    for (int i = 0; i < rounds; ++i) {
        const unsubscribe_claims c{"default", "race" + std::to_string(i) + "@example.com",
                                   static_cast<std::uint64_t>(1000 + i),
                                   one->clock->now() + std::chrono::hours(1)};
        tokens.push_back(make_unsubscribe_token(c, secret));
        std::atomic<int> ready{0};
        unsubscribe_result r1, r2;
        auto take = [&](engine& e, unsubscribe_result& out) {
            ++ready;
            while (ready.load() < 2) std::this_thread::yield();
            out = e.unsubscribe(tokens.back());
        };
        std::thread t1([&] { take(*one->eng, r1); });
        std::thread t2([&] { take(*two->eng, r2); });
        t1.join();
        t2.join();
        INFO("round " << i);
        CHECK(r1.status == unsubscribe_token_status::valid);
        CHECK(r2.status == unsubscribe_token_status::valid);
        CHECK(int(r1.suppressed) + int(r2.suppressed) == 1);
        CHECK(r1.already != r1.suppressed);
        CHECK(r2.already != r2.suppressed);
    }
    const auto today = utc_day(one->clock->now());
    CHECK(one->eng->daily_counts(count_scope::workspace, "", today, today)
              .at(0)[count_metric::unsubscribed] == rounds);
    int audited = 0;
    for (const auto& r : one->eng->audit_log())
        if (r.action == "suppression.add" && r.actor == "one-click") ++audited;
    CHECK(audited == rounds);

    REQUIRE(one->eng->unsuppress(one->admin, suppression_kind::address, "race0@example.com"));
    const auto again = two->eng->unsubscribe(tokens.front());
    CHECK(again.suppressed);
    CHECK(one->eng->is_suppressed("race0@example.com"));
    CHECK_FALSE(one->eng->verify_audit());
}

// Sends to the person from two engines, each on its own thread, while a
// third erases her: a send started after erase_person returned is never
// handed off.
void erase_under_sends(const backend& b, std::uint64_t seed) {
    std::mt19937_64 rng(seed);
    struct running {
        std::unique_ptr<fixture> f;
        std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>
            work;
        std::thread t;
        explicit running(std::unique_ptr<fixture> fx) : f(std::move(fx)) {
            work.emplace(f->ioc.get_executor());
            t = std::thread([this] { f->ioc.run(); });
        }
        ~running() {
            work.reset();
            f->eng->cancel();
            f->ioc.stop();
            t.join();
        }
    };
    auto setup = engine_on(b);
    setup->eng->upsert_mailbox(setup->admin, setup->mailbox("rep1", "rep1@brand.com"));
    setup->add_pool("out", {"rep1"});
    auto eraser = engine_on(b);
    running one(engine_on(b)), two(engine_on(b));
    const std::vector<std::string> spellings{"race.person@example.com", "Race.Person@EXAMPLE.com",
                                             "\"race.person\"@example.com"};
    std::atomic<bool> erased{false}, stop{false};
    std::atomic<int> violations{0}, accepted{0}, refused{0};
    auto sender = [&](fixture& f, std::uint64_t s) {
        std::mt19937_64 r(s);
        while (!stop) {
            const bool after = erased.load();
            std::promise<error_code> p;
            auto done = p.get_future();
            f.eng->async_send(fixture::request("out", spellings[r() % spellings.size()]),
                              [&p](error_code ec, send_result) { p.set_value(ec); });
            const auto ec = done.get();
            if (!ec) ++accepted;
            if (ec == make_error_code(errc::suppressed)) ++refused;
            if (after && !ec) ++violations;
        }
    };
    std::thread s1(sender, std::ref(*one.f), rng());
    std::thread s2(sender, std::ref(*two.f), rng());
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 200));
    const auto rep = eraser->eng->erase_person(eraser->admin, "RACE.PERSON@example.com");
    erased = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100 + rng() % 200));
    stop = true;
    s1.join();
    s2.join();
    CHECK(violations == 0);
    CHECK(refused > 0);
    MESSAGE(b.name << ": " << accepted.load() << " accepted before the erasure, "
                   << refused.load() << " refused");
    one.f->eng->flush();
    two.f->eng->flush();
    // A send decided before the erasure returned may reserve its ledger
    // row after the second pass (it is refused at hand-off); an erasure
    // once everything settled takes what is left (docs/privacy.md).
    const auto again = eraser->eng->erase_person(eraser->admin, "race.person@example.com");
    CHECK(again.erased.enrollments == 0);
    CHECK(again.erased.suppression_rows == 0);
    require_gone(b, *eraser->eng, "race.person", rep.audit_seq);
    CHECK(eraser->eng->verify_suppressions().ok);
}

// --- audit retention (docs/audit.md) ------------------------------------------------

// Suppresses `n` addresses, one audit record each.
void add_records(fixture& f, const std::string& prefix, int n) {
    for (int i = 0; i < n; ++i)
        f.eng->suppress(f.admin, suppression_kind::address,
                        prefix + std::to_string(i) + "@example.com", suppression_reason::manual);
}

// The workspace's row, as each store names its key column.
std::string workspace_row(const backend& b) {
    return b.postgres ? "workspace = 'default'" : "name = 'default'";
}

std::uint64_t first_at_or_after(const std::vector<audit_record>& log, time_point t) {
    for (const auto& r : log)
        if (r.at >= t) return r.seq;
    return 0;
}

// Old records, a month, new ones, then a purge at the month: the purge
// keeps the new records, anchored, and everything still verifies.
void purge_and_verify(const backend& b) {
    auto f = engine_on(b);
    auto& e = *f->eng;
    add_records(*f, "old", 5);
    f->clock->advance(std::chrono::days(30));
    const time_point cutoff = f->clock->now();
    add_records(*f, "new", 3);
    const auto log = e.audit_log();
    REQUIRE(log.front().seq == 1);
    const std::uint64_t first_new = first_at_or_after(log, cutoff);
    REQUIRE(first_new > 3);
    const audit_head before_anchor{first_new - 1, log[first_new - 2].hash};
    const audit_head older{2, log[1].hash};
    const audit_head head = e.audit_checkpoint();
    f->clock->advance(std::chrono::seconds(1));

    const auto r = e.purge_audit(f->admin, cutoff);
    CHECK(r.purged == first_new - 1);
    CHECK(r.anchor.seq == first_new);
    CHECK(r.anchor.hash == before_anchor.hash);
    CHECK(r.anchor.at == f->clock->now());
    CHECK_FALSE(r.anchor.keyed);
    CHECK(r.audit_seq == head.seq + 1);
    CHECK(e.audit_anchor() == r.anchor);
    const auto kept = e.audit_log();
    CHECK(kept.front().seq == first_new);
    CHECK(kept.front().prev_hash == r.anchor.hash);
    CHECK(kept.back().action == audit_purge_action);
    CHECK(kept.back().actor == f->admin.id);
    const auto named = audit_purge_anchor(kept.back().after);
    REQUIRE(named);
    CHECK(named->seq == r.anchor.seq);
    CHECK(named->hash == r.anchor.hash);
    CHECK_FALSE(e.verify_audit());
    CHECK_FALSE(e.verify_audit(head));
    CHECK_FALSE(e.verify_audit(before_anchor));
    std::uint64_t bad = 0;
    CHECK(e.verify_audit(older, &bad) == make_error_code(errc::audit_chain_broken));
    CHECK(bad == 2);
    CHECK(e.audit_checkpoint().seq == r.audit_seq);
    {
        // Another engine on the store: the same chain; the rows the purged
        // changes wrote can no longer be tied to a record.
        auto other = engine_on(b);
        CHECK_FALSE(other->eng->verify_audit());
        CHECK(other->eng->audit_anchor() == r.anchor);
        const auto sv = other->eng->verify_suppressions();
        INFO(describe(sv));
        CHECK(sv.ok);
        CHECK(sv.unchecked_rows == 5);
    }

    // Nothing old enough: nothing changes, no record.
    const auto n = e.audit_log().size();
    const auto again = e.purge_audit(f->admin, cutoff);
    CHECK(again.purged == 0);
    CHECK(again.audit_seq == 0);
    CHECK(again.anchor == r.anchor);
    CHECK(e.audit_log().size() == n);

    // keep_from bounds the cut; the newest record always stays.
    const auto bounded =
        e.purge_audit(f->admin, f->clock->now() + std::chrono::hours(1), first_new + 2);
    CHECK(bounded.purged == 2);
    CHECK(bounded.anchor.seq == first_new + 2);
    const std::uint64_t newest = e.audit_log().back().seq;
    const auto all = e.purge_audit(f->admin, f->clock->now() + std::chrono::hours(1));
    CHECK(all.anchor.seq == newest);
    CHECK(e.audit_log().size() == 2);
    CHECK_FALSE(e.verify_audit());
    CHECK(e.verify_suppressions().ok);

    // A retention window for audit records applies the same purge.
    retention_policy negative;
    negative.audit = std::chrono::seconds(-1);
    CHECK(code_of([&] { e.purge_retained(f->admin, negative); }) == errc::invalid_argument);
    CHECK(e.audit_log().size() == 2);
    f->clock->advance(std::chrono::days(40));
    add_records(*f, "later", 2);
    retention_policy p;
    p.audit = std::chrono::days(10);
    const auto rep = e.purge_retained(f->admin, p);
    CHECK(rep.audit_records == 2);
    CHECK(rep.anchor == e.audit_anchor());
    const auto last = e.audit_log();
    CHECK(last.back().action == "retention.purge");
    CHECK(last.back().after.find("\"audit_records\":2") != std::string::npos);
    CHECK(last[last.size() - 2].action == audit_purge_action);
    CHECK_FALSE(e.verify_audit());
    CHECK(e.verify_suppressions().ok);
}

// A purge refused by the host's authorizer changes nothing; one under an
// audit key keeps the kept records checkable with the key once the
// audit.key record is gone.
void audit_purge_keyed_and_refused(const backend& b) {
    const auto keyed = [](engine_params& p) { p.audit_key = "an audit key"; };
    auto f = engine_on(b, {}, {}, keyed);
    add_records(*f, "old", 4);
    f->clock->advance(std::chrono::days(30));
    add_records(*f, "new", 2);
    {
        auto refused = engine_on(b, {}, {}, [](engine_params& p) {
            p.audit_key = "an audit key";
            p.authorize = [](const principal&, const access_request& r) {
                return r.action != "audit.purge";
            };
        });
        const auto n = refused->eng->audit_log().size();
        const auto anchor = refused->eng->audit_anchor();
        CHECK(code_of([&] { refused->eng->purge_audit(refused->admin, refused->clock->now()); }) ==
              errc::permission_denied);
        refused->eng->flush();
        CHECK(refused->eng->audit_anchor() == anchor);
        const auto after = refused->eng->audit_log();
        CHECK(after.size() == n + 1);  // the refusal, audited
        CHECK(after.back().action == "access.denied");
    }
    const auto r = f->eng->purge_audit(f->admin, f->clock->now() - std::chrono::days(1));
    CHECK(r.purged > 0);
    CHECK(r.anchor.keyed);
    CHECK_FALSE(f->eng->verify_audit());
    for (const auto& rec : f->eng->audit_log()) CHECK(rec.action != audit_key_action);
    // Without the key nothing that is left can be checked. (An engine
    // without it would append unkeyed records: the chain is read here.)
    audit_anchor anchor;
    const auto kept = f->eng->audit_log(1, anchor);
    CHECK(anchor == r.anchor);
    std::uint64_t bad = 0;
    CHECK(verify_audit_chain(kept, audit_verify_options{{}, {}, anchor}, &bad) ==
          make_error_code(errc::audit_chain_broken));
    CHECK(bad == r.anchor.seq);
    CHECK_FALSE(verify_audit_chain(kept, audit_verify_options{{}, "an audit key", anchor}));
    // With the key it appends no second key record (the mark stays).
    auto again = engine_on(b, {}, {}, keyed);
    CHECK_FALSE(again->eng->verify_audit());
}

// What a writer of the store can do behind the library's back after a purge.
void audit_purge_tampered(const backend& b) {
    auto f = engine_on(b);
    add_records(*f, "old", 6);
    f->clock->advance(std::chrono::days(30));
    const time_point cutoff = f->clock->now();
    add_records(*f, "new", 3);
    const auto r = f->eng->purge_audit(f->admin, cutoff);
    const std::uint64_t a = r.anchor.seq;
    REQUIRE(a > 6);
    const auto bad_seq = [&] {
        std::uint64_t bad = 0;
        const auto ec = engine_on(b)->eng->verify_audit(&bad);
        return ec ? bad : 0;
    };
    SUBCASE("untouched") {
        CHECK(bad_seq() == 0);
    }
    SUBCASE("records deleted from the start without a purge") {
        b.exec("DELETE FROM {s}audit WHERE workspace = 'default' AND seq < " +
               std::to_string(a + 2));
        CHECK(bad_seq() == a + 2);
    }
    SUBCASE("the anchor moved to hide a bigger cut") {
        b.exec("DELETE FROM {s}audit WHERE workspace = 'default' AND seq < " +
               std::to_string(a + 2));
        b.exec("UPDATE {s}workspaces SET audit_anchor_seq = " + std::to_string(a + 2) +
               ", audit_anchor_hash = (SELECT prev_hash FROM {s}audit WHERE workspace = "
               "'default' AND seq = " +
               std::to_string(a + 2) + ") WHERE " + workspace_row(b));
        CHECK(bad_seq() == a);
    }
    SUBCASE("the anchor removed") {
        b.exec("UPDATE {s}workspaces SET audit_anchor_seq = 0, audit_anchor_hash = '' WHERE " +
               workspace_row(b));
        CHECK(bad_seq() == a);
    }
    SUBCASE("the purge record removed from the middle") {
        add_records(*f, "after", 2);
        b.exec("DELETE FROM {s}audit WHERE workspace = 'default' AND action = 'audit.purge'");
        CHECK(bad_seq() == a);
    }
    SUBCASE("the purge record cut from the end, the head rewound") {
        b.exec("DELETE FROM {s}audit WHERE workspace = 'default' AND action = 'audit.purge'");
        b.exec(
            "UPDATE {s}workspaces SET audit_seq = audit_seq - 1, audit_hash = (SELECT hash "
            "FROM {s}audit WHERE workspace = 'default' ORDER BY seq DESC LIMIT 1) WHERE " +
            workspace_row(b));
        CHECK(bad_seq() == a);
    }
}

// Appends on one thread and purges on another, each through its own engine
// and store: the purges serialize with the appends.
void audit_purge_concurrent(const backend& b) {
    auto appender = engine_on(b);
    auto purger = engine_on(b);
    std::atomic<bool> done{false};
    std::atomic<int> purged{0};
    std::thread t([&] {
        while (!done) {
            const auto r = purger->eng->purge_audit(purger->admin,
                                                    purger->clock->now() + std::chrono::hours(1));
            purged += static_cast<int>(r.purged);
        }
    });
    add_records(*appender, "c", 120);
    done = true;
    t.join();
    CHECK(purged > 0);
    CHECK_FALSE(appender->eng->verify_audit());
    CHECK_FALSE(purger->eng->verify_audit());
    const auto kept = appender->eng->audit_log();
    CHECK(kept.front().seq == appender->eng->audit_anchor().seq);
    CHECK(appender->eng->verify_suppressions().ok);
    MESSAGE(b.name << ": " << purged.load() << " records purged during 120 appends, " << kept.size()
                   << " kept");
}

// lookup_suppression reads the store alone and answers as an engine does:
// address entries under the folding rules, the most specific domain entry,
// erased entries under the workspace's key or the hosts', and every address
// when erased entries cannot be checked; nullopt where only an engine can
// answer.
void lookup_as_engine(const backend& b) {
    auto st = b.open();
    // No engine has started on the workspace: it holds no settings yet.
    CHECK_FALSE(lookup_suppression(*st, "default", "a@example.com"));

    auto f = engine_on(b, suppression_options{true, false});
    auto& e = *f->eng;
    e.suppress(f->admin, suppression_kind::address, "Jane+news@Example.com",
               suppression_reason::complaint, "ticket-42");
    e.suppress(f->admin, suppression_kind::domain, "blocked.example", suppression_reason::legal,
               "cli");
    e.suppress(f->admin, suppression_kind::domain, "mx.blocked.example",
               suppression_reason::manual, "cli");
    e.suppress(f->admin, suppression_kind::address, "lit@[192.0.2.1]",
               suppression_reason::manual, "cli");
    const auto same_as_engine = [&](engine& eng, const std::string& ws, std::string_view key) {
        for (const auto* a : {"jane@example.com", "JANE+other@EXAMPLE.com", "x@blocked.example",
                              "x@a.mx.blocked.example", "x@notblocked.example", "gone@example.com",
                              "Gone+x@example.com", "free@example.com", "lit@[192.000.002.001]",
                              "lit@[192.0.2.2]"}) {
            INFO(ws << " " << a);
            const auto r = lookup_suppression(*st, ws, a, key);
            REQUIRE(r);
            CHECK(r->suppressed == eng.is_suppressed(a));
            CHECK(r->entry == eng.find_suppression(a));
        }
    };
    same_as_engine(e, "default", {});
    const auto jane = lookup_suppression(*st, "default", "JANE+other@EXAMPLE.com");
    REQUIRE(jane);
    CHECK(jane->key == "jane@example.com");
    REQUIRE(jane->entry);
    CHECK(jane->entry->source == "ticket-42");
    const auto mx = lookup_suppression(*st, "default", "x@a.mx.blocked.example");
    REQUIRE((mx && mx->entry));
    CHECK(mx->entry->value == "mx.blocked.example");

    // An erasure keeps the person suppressed by a keyed hash, under the key
    // the workspace keeps.
    e.erase_person(f->admin, "gone@example.com");
    CHECK(lookup_suppression(*st, "default", "gone+y@example.com")->suppressed);
    same_as_engine(e, "default", {});
    CHECK(code_of([&] { lookup_suppression(*st, "default", "not an address"); }) ==
          errc::invalid_address);
    // The workspace keeps its own key: a host's is refused, as by an engine.
    CHECK(code_of([&] { lookup_suppression(*st, "default", "a@example.com", "a key"); }) ==
          errc::invalid_argument);
    CHECK(code_of([&] { engine_on(b, {}, "a key"); }) == errc::invalid_argument);

    // Erased entries with no key to check them (imported from another
    // workspace's export): every address is suppressed, with no entry.
    const auto other = [&](std::string key) {
        return engine_on(b, {}, std::move(key), [](engine_params& p) { p.workspace = "other"; });
    };
    {
        auto g = other({});
        std::istringstream csv("erased:" + std::string(64, 'a') + ",address,legal\n");
        CHECK(g->eng->import_suppressions(g->admin, csv) == 1);
        same_as_engine(*g->eng, "other", {});
        CHECK(lookup_suppression(*st, "other", "free@example.com")->suppressed);
        CHECK_FALSE(lookup_suppression(*st, "other", "free@example.com")->entry);
    }

    // A key the hosts hold: needed, and the right one, as an engine needs it.
    {
        auto h = engine_on(b, {}, "host key",
                           [](engine_params& p) { p.workspace = "held"; });
        h->eng->erase_person(h->admin, "held@example.com");
        h->eng->suppress(h->admin, suppression_kind::address, "jane@example.com",
                         suppression_reason::manual, "cli");
        same_as_engine(*h->eng, "held", "host key");
        CHECK(lookup_suppression(*st, "held", "held@example.com", "host key")->suppressed);
        CHECK_FALSE(lookup_suppression(*st, "held", "free@example.com", "host key")->suppressed);
        CHECK(code_of([&] { lookup_suppression(*st, "held", "free@example.com"); }) ==
              errc::invalid_argument);
        CHECK(code_of([&] { lookup_suppression(*st, "held", "free@example.com", "other key"); }) ==
              errc::invalid_argument);
    }

    // A stored value that looks like an erased entry and is not one stands
    // where the probe looks: only an engine can answer. It sorts before every
    // real erased entry but the all-zero hash, whatever hashes the random
    // erasure keys above gave.
    const std::vector<store_op> raw{store_ops::put_suppression{
        {suppression_kind::address, "erased:" + std::string(64, '0') + "@example.com",
         suppression_reason::manual, "raw", {}}}};
    st->commit("default", raw);
    CHECK_FALSE(lookup_suppression(*st, "default", "free@example.com"));
    // A workspace that does not exist is not one lookup can answer for.
    CHECK_FALSE(lookup_suppression(*st, "nowhere", "jane@example.com"));
}

// Runs `scenario` on SQLite, then on PostgreSQL when a server is given.
void on_both_stores(const std::function<void(const backend&)>& scenario) {
    {
        sqlite_backend b;
        scenario(b);
    }
    if (const auto c = pg_conninfo()) {
        pg_backend b(*c);
        scenario(b);
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

TEST_CASE("erase_person: a person's data goes everywhere, the hash keeps them suppressed") {
    on_both_stores(erase_everywhere);
}

TEST_CASE("erase_person: IDN, address literals and folding rules changed later") {
    on_both_stores(erase_spellings);
}

TEST_CASE("erase_person while two engines send to the person") {
    const std::uint64_t seed = std::random_device{}();
    INFO("seed " << seed);
    on_both_stores([&](const backend& b) { erase_under_sends(b, seed); });
}

TEST_CASE("erase_person with an erasure key the hosts hold") {
    on_both_stores(erase_with_host_key);
}

TEST_CASE("lookup_suppression answers from the store as an engine does") {
    on_both_stores(lookup_as_engine);
}

TEST_CASE("purge_retained: retention windows for the ledger and event payloads") {
    on_both_stores(purge_retained);
}

TEST_CASE("purge_retained: daily counts older than their window") {
    on_both_stores(purge_retained_counts);
}

TEST_CASE("one-click unsubscribe: the same token at two engines at once counts once") {
    on_both_stores(unsubscribe_race);
}

TEST_CASE("purge_audit: the chain verifies from its anchor") {
    on_both_stores(purge_and_verify);
}

TEST_CASE("purge_audit: under an audit key, and refused by the authorizer") {
    on_both_stores(audit_purge_keyed_and_refused);
}

TEST_CASE("purge_audit: cuts behind the library's back are detected") {
    on_both_stores(audit_purge_tampered);
}

TEST_CASE("purge_audit: random purges interleaved with appends by two engines") {
    const std::uint64_t seed = std::random_device{}();
    INFO("seed " << seed);
    on_both_stores([&](const backend& b) { random_two_engines(b, seed, true); });
}

TEST_CASE("purge_audit: purges and appends from two threads, two stores") {
    on_both_stores(audit_purge_concurrent);
}
