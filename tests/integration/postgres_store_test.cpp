// The PostgreSQL store against a real server: MAILERS_TEST_PG holds its
// conninfo (scripts/test starts a throwaway cluster and sets it). Without
// it these tests skip, unless MAILERS_REQUIRE_PG=1 says they must run.
#include <doctest/doctest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mailers/audit.hpp>
#include <mailers/error.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/store.hpp>
#include <mailers/testing/store_conformance.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace mailers;
using namespace std::chrono_literals;

namespace {

// The conninfo of the test server, or nullopt after saying why the test
// does not run.
std::optional<std::string> test_server() {
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (c && *c) return std::string{c};
    const char* req = std::getenv("MAILERS_REQUIRE_PG");
    if (req && std::string_view{req} == "1") {
        FAIL(
            "MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset: no PostgreSQL server to test "
            "against (scripts/test starts one)");
    }
    MESSAGE(
        "skipped: set MAILERS_TEST_PG to a conninfo (scripts/pg-test-cluster start DIR "
        "prints one) to test the PostgreSQL store");
    return std::nullopt;
}

// Tests of several processes share one server, so names are unique per run.
std::string unique(std::string_view what) {
    static std::atomic<int> n{0};
    static const auto salt = std::random_device{}();
    return std::string{what} + "_" + std::to_string(::getpid()) + "_" +
           std::to_string(salt % 100000) + "_" + std::to_string(n++);
}

postgres_store_params params_for(const std::string& conninfo, std::string schema = "mailers") {
    postgres_store_params p;
    p.conninfo = conninfo;
    p.schema = std::move(schema);
    p.mode = open_mode::open_or_create;
    p.pool_size = 3;
    p.reconnect_timeout = 20s;
    return p;
}

time_point at_s(std::int64_t s) {
    return time_point{std::chrono::seconds{s}};
}

store_ops::reserve_send reservation(std::string key, std::string cap_key, std::uint64_t max,
                                    time_point at, time_point floor = {}) {
    store_ops::reserve_send r;
    r.row.idempotency_key = std::move(key);
    r.row.mailbox = "rep1";
    r.row.provider = "ses";
    r.row.pool = "p";
    r.row.recipient = "a@example.com";
    r.row.message_id = "m@x";
    r.row.reserved_at = at;
    r.row.updated_at = at;
    r.row.owner = 7;
    cap_claim c;
    c.key = std::move(cap_key);
    c.windows.push_back({floor, max});
    r.claims.push_back(std::move(c));
    return r;
}

reserve_outcome reserve1(store& st, const std::string& ws, store_ops::reserve_send r) {
    std::vector<store_op> ops{std::move(r)};
    return st.commit(ws, ops).ops.at(0).reservation;
}

audit_record audit_entry() {
    audit_record a;
    a.action = "send.reserve";
    a.actor = "race";
    return a;
}

std::string error_text(const std::exception& e) {
    if (auto* m = dynamic_cast<const exception*>(&e)) return m->diag().message + " | " + e.what();
    return e.what();
}

}  // namespace

TEST_CASE("postgres store passes the store conformance kit") {
    auto server = test_server();
    if (!server) return;
    const auto p = params_for(*server);
    conformance::run_store_conformance([p] { return open_postgres_store(p); }, unique("conf"));
}

TEST_CASE("postgres store: reservations, caps, gaps and failover") {
    auto server = test_server();
    if (!server) return;
    auto st = open_postgres_store(params_for(*server));
    const auto ws = unique("ws");

    auto r1 = reserve1(*st, ws, reservation("k1", "mailbox:rep1", 2, at_s(100)));
    REQUIRE(r1.status == reserve_status::reserved);
    CHECK(r1.send_id != 0);
    auto dup = reserve1(*st, ws, reservation("k1", "mailbox:rep1", 2, at_s(101)));
    REQUIRE(dup.status == reserve_status::duplicate);
    REQUIRE(dup.existing);
    CHECK(dup.existing->id == r1.send_id);
    CHECK(dup.existing->owner == 7);

    // In one batch: the second fills the cap, the third is refused with the
    // oldest use that must leave (at 100), a later op sees earlier ones.
    std::vector<store_op> batch{reservation("k2", "mailbox:rep1", 3, at_s(102)),
                                reservation("k3", "mailbox:rep1", 3, at_s(103)),
                                reservation("k4", "mailbox:rep1", 3, at_s(104))};
    auto res = st->commit(ws, batch);
    CHECK(res.ops[0].reservation.status == reserve_status::reserved);
    CHECK(res.ops[1].reservation.status == reserve_status::reserved);
    REQUIRE(res.ops[2].reservation.status == reserve_status::cap_reached);
    CHECK(res.ops[2].reservation.until == at_s(100));
    CHECK(res.change_seq == 0);
    // A lowered cap: count 3, max 1 -> the 2nd oldest (0-based) use.
    auto low = reserve1(*st, ws, reservation("k5", "mailbox:rep1", 1, at_s(105)));
    CHECK(low.status == reserve_status::cap_reached);
    CHECK(low.until == at_s(103));
    auto zero = reserve1(*st, ws, reservation("k5", "mailbox:rep1", 0, at_s(105)));
    CHECK(zero.status == reserve_status::cap_reached);
    CHECK(zero.until == time_point{});
    // Uses before the floor do not count; future ones do.
    auto later = reserve1(*st, ws, reservation("k6", "mailbox:rep1", 1, at_s(50), at_s(104)));
    CHECK(later.status == reserve_status::reserved);

    // Gap
    auto g = reservation("g1", "mailbox:gap", 10, at_s(200));
    g.claims[0].gap = std::chrono::seconds{30};
    CHECK(reserve1(*st, ws, g).status == reserve_status::reserved);
    auto g2 = g;
    g2.row.idempotency_key = "g2";
    g2.row.reserved_at = at_s(220);
    auto gr = reserve1(*st, ws, g2);
    CHECK(gr.status == reserve_status::gap);
    CHECK(gr.until == at_s(230));
    g2.row.reserved_at = at_s(230);
    CHECK(reserve1(*st, ws, g2).status == reserve_status::reserved);

    // Failover: own uses do not count, old ones released.
    auto f = reservation("f1", "mailbox:a", 1, at_s(300));
    auto fr = reserve1(*st, ws, f);
    REQUIRE(fr.status == reserve_status::reserved);
    auto again = reservation("", "mailbox:a", 1, at_s(301));
    again.row.id = fr.send_id;
    again.row.mailbox = "rep2";
    again.row.attempt = 2;
    CHECK(reserve1(*st, ws, again).status == reserve_status::reserved);
    auto stored = st->find_send(ws, fr.send_id);
    REQUIRE(stored);
    CHECK(stored->mailbox == "rep2");
    CHECK(stored->attempt == 2);
    CHECK(stored->reserved_at == at_s(301));
    CHECK(stored->idempotency_key == "f1");
    again.row.owner = 8;
    CHECK(reserve1(*st, ws, again).status == reserve_status::not_owner);

    // update_send: failed releases the uses.
    store_ops::update_send u{*stored};
    u.row.state = send_state::failed;
    u.row.detail = "refused";
    u.row.mailbox = "ignored";
    std::vector<store_op> ups{u};
    CHECK(st->commit(ws, ups).ops[0].applied);
    auto after = st->find_send(ws, fr.send_id);
    CHECK(after->state == send_state::failed);
    CHECK(after->mailbox == "rep2");
    CHECK(after->detail == "refused");
    CHECK(!st->commit(ws, ups).ops[0].applied);
    CHECK(reserve1(*st, ws, reservation("f2", "mailbox:a", 1, at_s(302))).status ==
          reserve_status::reserved);

    // An update to `reserved` is invalid input and changes nothing.
    u.row.state = send_state::reserved;
    std::vector<store_op> bad{reservation("x1", "mailbox:z", 5, at_s(1)), u};
    CHECK_THROWS_AS(st->commit(ws, bad), exception);

    // Purge
    st->purge_cap_uses(ws, at_s(1000));
    CHECK(reserve1(*st, ws, reservation("p1", "mailbox:a", 1, at_s(303))).status ==
          reserve_status::reserved);
}

TEST_CASE("postgres store: objects, suppressions, change feed, audit, load") {
    auto server = test_server();
    if (!server) return;
    auto st = open_postgres_store(params_for(*server));
    const auto ws = unique("ws");
    CHECK(st->load(ws, {}).objects.empty());
    CHECK(st->changes_since(ws, 0).seq == 0);

    suppression_entry e{suppression_kind::domain, "b.com", suppression_reason::manual, "api",
                        at_s(5)};
    suppression_entry e2{suppression_kind::address, "z@a.com", suppression_reason::hard_bounce, "x",
                         at_s(6)};
    audit_record a;
    a.action = "mailbox.upsert";
    a.actor = "me";
    std::vector<store_op> ops{store_ops::put_object{{"mailbox", "rep1", "{\"cap\":1}"}},
                              store_ops::put_suppression{e}, store_ops::put_suppression{e2},
                              store_ops::append_audit{a}, store_ops::append_audit{a}};
    auto r = st->commit(ws, ops);
    CHECK(r.change_seq == 1);
    CHECK(r.ops[3].audit_seq == 1);
    CHECK(r.ops[4].audit_seq == 2);

    // A claim on the changed object with an older config_seq is stale.
    auto stale = reservation("s1", "mailbox:rep1", 5, at_s(10));
    stale.claims[0].object_kind = "mailbox";
    stale.claims[0].object_id = "rep1";
    stale.config_seq = 0;
    CHECK(reserve1(*st, ws, stale).status == reserve_status::stale_config);
    stale.config_seq = 1;
    CHECK(reserve1(*st, ws, stale).status == reserve_status::reserved);

    std::vector<store_op> del{store_ops::delete_object{"mailbox", "rep1"},
                              store_ops::delete_suppression{suppression_kind::domain, "b.com"}};
    CHECK(st->commit(ws, del).change_seq == 2);
    auto cs = st->changes_since(ws, 1);
    CHECK(cs.seq == 2);
    CHECK(cs.objects.empty());
    REQUIRE(cs.deleted_objects.size() == 1);
    CHECK(cs.deleted_suppressions.size() == 1);
    auto all = st->changes_since(ws, 0);
    CHECK(all.suppressions.size() == 1);

    std::vector<suppression_entry> seen;
    st->for_each_suppression(ws, [&](const suppression_entry& s) { seen.push_back(s); });
    REQUIRE(seen.size() == 1);
    CHECK(seen[0] == e2);
    CHECK(st->find_suppression(ws, suppression_kind::address, "z@a.com") == e2);
    CHECK(!st->find_suppression(ws, suppression_kind::domain, "b.com"));

    std::vector<audit_record> chain;
    st->for_each_audit(ws, 0, [&](const audit_record& x) { chain.push_back(x); });
    REQUIRE(chain.size() == 2);
    CHECK(chain[0].prev_hash.empty());
    CHECK(!verify_audit_chain(chain));

    auto snap = st->load(ws, at_s(0));
    CHECK(snap.change_seq == 2);
    CHECK(snap.objects.empty());
    CHECK(snap.recent_sends.size() == 1);
}

TEST_CASE("postgres store: members and recovery") {
    auto server = test_server();
    if (!server) return;
    auto st = open_postgres_store(params_for(*server));
    const auto ws = unique("ws");
    auto m1 = st->attach(ws, {"h", 1, "a"}, 60s);
    auto m2 = st->attach(ws, {"h", 2, "b"}, 1ms);
    CHECK(m1 != 0);
    CHECK(m2 > m1);
    auto r = reservation("r1", "mailbox:a", 5, at_s(1));
    r.row.owner = m2;
    auto out = reserve1(*st, ws, r);
    auto r2 = reservation("r2", "mailbox:a", 5, at_s(1));
    r2.row.owner = m1;
    auto out2 = reserve1(*st, ws, r2);
    std::this_thread::sleep_for(20ms);
    CHECK(st->renew(ws, m1, 60s, 3));
    CHECK(!st->renew(ws, m2, 60s, 3));
    auto ms = st->members(ws);
    REQUIRE(ms.size() == 2);
    CHECK(ms[0].live);
    CHECK(ms[0].acked_seq == 3);
    CHECK(!ms[1].live);
    CHECK(st->recover(ws, {}, at_s(9), "lost") == 1);
    CHECK(st->find_send(ws, out.send_id)->state == send_state::unknown);
    CHECK(st->find_send(ws, out2.send_id)->state == send_state::reserved);
    CHECK(st->members(ws).size() == 1);
    st->detach(ws, m1);
    CHECK(st->find_send(ws, out2.send_id)->state == send_state::unknown);
    CHECK(st->members(ws).empty());
    CHECK(!st->renew(ws, m1, 60s, 3));
}

TEST_CASE("postgres store: a bad conninfo is a clear error without the password") {
    auto server = test_server();
    if (!server) return;
    auto expect_error = [](const std::string& conninfo, std::string_view mentions) {
        auto p = params_for(conninfo);
        p.connect_timeout = 1s;
        p.reconnect_timeout = 200ms;  // nothing listens on port 1: not worth waiting for
        try {
            open_postgres_store(p);
            FAIL("opened " << conninfo);
        } catch (const exception& e) {
            CHECK(e.code() == errc::store_error);
            auto text = error_text(e);
            CHECK_MESSAGE(text.find("Sekr3t") == std::string::npos, text);
            CHECK_MESSAGE(text.find(mentions) != std::string::npos, text);
        }
    };
    expect_error("host=127.0.0.1 port=1 user=u password=Sekr3t dbname=x", "127.0.0.1");
    expect_error("postgresql://u:Sekr3t@127.0.0.1:notaport/db", "postgres store");
    expect_error("host=127.0.0.1 password='Sekr3t bogus=1", "postgres store");
    expect_error(*server + " user=nobody_here password=Sekr3t", "nobody_here");
    expect_error("env:MAILERS_PG_TEST_UNSET_VARIABLE", "MAILERS_PG_TEST_UNSET_VARIABLE");
    expect_error("file:/nonexistent/conninfo", "/nonexistent/conninfo");
}

TEST_CASE("postgres store: conninfo by env: and file: reference") {
    auto server = test_server();
    if (!server) return;
    const auto var = unique("MAILERS_PG_CONNINFO");
    ::setenv(var.c_str(), server->c_str(), 1);
    auto a = open_postgres_store(params_for("env:" + var));
    const auto ws = unique("ws");
    CHECK(reserve1(*a, ws, reservation("e1", "k", 5, at_s(1))).status == reserve_status::reserved);

    auto path = std::filesystem::temp_directory_path() / unique("conninfo");
    std::ofstream(path) << *server << "\n";
    auto b = open_postgres_store(params_for("file:" + path.string()));
    CHECK(reserve1(*b, ws, reservation("e1", "k", 5, at_s(1))).status == reserve_status::duplicate);
    std::filesystem::remove(path);
    ::unsetenv(var.c_str());
}

TEST_CASE("postgres store: a schema from a newer version is refused") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("newer");
    open_postgres_store(params_for(*server, schema));
    std::string sql = "psql -q -X \"" + *server + "\" -c 'INSERT INTO " + schema +
                      ".schema_version (version) VALUES (99)' >/dev/null 2>&1";
    if (std::system(sql.c_str()) != 0) {
        MESSAGE("skipped the schema_too_new check: psql is not available");
        return;
    }
    try {
        open_postgres_store(params_for(*server, schema));
        FAIL("a newer schema was opened");
    } catch (const exception& e) {
        CHECK(e.code() == errc::schema_too_new);
        CHECK(error_text(e).find("99") != std::string::npos);
    }
    std::system(
        ("psql -q -X \"" + *server + "\" -c 'DROP SCHEMA " + schema + " CASCADE' >/dev/null 2>&1")
            .c_str());
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

// What takes a schema back before the send queue existed (version 4), and
// before the recorded keys, enrollments, webhook outbox, daily counts, audit
// anchor and suppression counts that came after it.
static std::string drop_queue(const std::string& schema) {
    return "DROP FUNCTION " + schema + ".suppressions_count_change() CASCADE; ALTER TABLE " +
           schema + ".workspaces DROP COLUMN suppression_count; " + "ALTER TABLE " + schema +
           ".workspaces DROP COLUMN audit_anchor_seq, DROP COLUMN " +
           "audit_anchor_hash, DROP COLUMN audit_anchor_at, DROP COLUMN audit_anchor_keyed; " +
           "DROP TABLE " + schema + ".daily_counts; DROP TABLE " + schema +
           ".soft_bounces; DROP TABLE " + schema + ".webhook_outbox; DROP SEQUENCE " + schema +
           ".webhook_outbox_ids; DROP TABLE " + schema + ".enrollment_messages; DROP TABLE " +
           schema + ".enrollments; DROP SEQUENCE " + schema + ".enrollment_ids; DROP TABLE " +
           schema + ".recorded_keys; DROP TABLE " + schema + ".queue; DROP SEQUENCE " + schema +
           ".queue_ids; ";
}

TEST_CASE("postgres store: a version 4 schema gains the send queue, its sends kept") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("v4");
    const auto ws = unique("ws");
    std::uint64_t old_id = 0;
    {
        auto st = open_postgres_store(params_for(*server, schema));
        auto r = reserve1(*st, ws, reservation("old", "mailbox:a", 10, at_s(1)));
        REQUIRE(r.status == reserve_status::reserved);
        old_id = r.send_id;
        conformance::commit(
            *st, ws,
            {store_ops::put_suppression{
                 conformance::sample_suppression(suppression_kind::address, "a@example.com")},
             store_ops::put_suppression{
                 conformance::sample_suppression(suppression_kind::domain, "example.org")},
             store_ops::delete_suppression{suppression_kind::address, "gone@example.com"}});
    }
    const std::string back_to_v4 = "psql -q -X \"" + *server + "\" -c '" + drop_queue(schema) +
                                   "DELETE FROM " + schema +
                                   ".schema_version WHERE version > 4' >/dev/null 2>&1";
    if (std::system(back_to_v4.c_str()) != 0) {
        MESSAGE("skipped the migration check: psql is not available");
        return;
    }
    auto st = open_postgres_store(params_for(*server, schema));
    CHECK(st->find_send(ws, old_id));
    // The count starts from the rows the schema holds, tombstones left out.
    CHECK(st->suppression_count(ws) == 2);
    std::vector<store_op> ops{store_ops::enqueue{queue_item("q")}};
    const auto out = st->commit(ws, ops).ops.at(0).queue;
    CHECK(out.status == enqueue_status::enqueued);
    CHECK(st->find_queued(ws, out.id)->request == queue_item("q").request);
    CHECK(st->count_queued(ws).waiting == 1);
    std::system(
        ("psql -q -X \"" + *server + "\" -c 'DROP SCHEMA " + schema + " CASCADE' >/dev/null 2>&1")
            .c_str());
}

TEST_CASE("postgres store: a version 1 schema gains exact cap counts") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("v1");
    const auto ws = unique("ws");
    // Uses spread over a few hours and across bucket boundaries of every size.
    const auto base = time_point{std::chrono::seconds{1'700'000'000}};
    std::vector<time_point> uses;
    for (int i = 0; i < 300; ++i)
        uses.push_back(base + std::chrono::seconds{i * 37} +
                       std::chrono::microseconds{(i * 7919) % 1'000'000});
    {
        auto st = open_postgres_store(params_for(*server, schema));
        std::vector<store_op> ops;
        for (std::size_t i = 0; i < uses.size(); ++i)
            ops.push_back(reservation("u" + std::to_string(i), "mailbox:a", 1'000'000, uses[i]));
        for (auto& r : st->commit(ws, ops).ops)
            REQUIRE(r.reservation.status == reserve_status::reserved);
    }
    const std::string back_to_v1 = "psql -q -X \"" + *server + "\" -c '" + drop_queue(schema) +
                                   "DROP TABLE " + schema + ".cap_counts; ALTER TABLE " + schema +
                                   ".sends DROP COLUMN suppression_seq; ALTER TABLE " + schema +
                                   ".audit DROP COLUMN change_seq; DROP TABLE " + schema +
                                   ".suppression_superseded; DELETE FROM " + schema +
                                   ".schema_version WHERE version > 1' >/dev/null 2>&1";
    if (std::system(back_to_v1.c_str()) != 0) {
        MESSAGE("skipped the migration check: psql is not available");
        return;
    }
    auto st = open_postgres_store(params_for(*server, schema));
    const auto now = uses.back() + 1s;
    // A window holding exactly its uses is full, and its `until` is its
    // oldest use: both wrong if a bucket were miscounted.
    int probe = 0;
    auto check_floors = [&](std::size_t from) {
        for (std::size_t i = from; i < uses.size(); i += 7) {
            for (auto f : {uses[i], uses[i] - 1us}) {
                const auto n = uses.size() - i;
                auto r = reserve1(
                    *st, ws, reservation("x" + std::to_string(probe++), "mailbox:a", n, now, f));
                CHECK(r.status == reserve_status::cap_reached);
                CHECK(r.until == uses[i]);
                r = reserve1(
                    *st, ws,
                    reservation("x" + std::to_string(probe++), "mailbox:a", n, now, uses[i] + 1us));
                CHECK(r.status == reserve_status::reserved);
                // Back out the use just recorded, as a failed send does.
                auto row = st->find_send(ws, r.send_id);
                REQUIRE(row);
                store_ops::update_send u{*row};
                u.row.state = send_state::failed;
                std::vector<store_op> fail_it{u};
                REQUIRE(st->commit(ws, fail_it).ops[0].applied);
            }
        }
    };
    check_floors(0);
    st->purge_cap_uses(ws, uses[100]);
    check_floors(100);
    std::system(
        ("psql -q -X \"" + *server + "\" -c 'DROP SCHEMA " + schema + " CASCADE' >/dev/null 2>&1")
            .c_str());
}

TEST_CASE("postgres store: a version 2 schema gains suppression_seq, 0 for the sends it holds") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("v2");
    const auto ws = unique("ws");
    std::uint64_t old_id = 0;
    {
        auto st = open_postgres_store(params_for(*server, schema));
        auto r = reserve1(*st, ws, reservation("old", "mailbox:a", 10, at_s(1)));
        REQUIRE(r.status == reserve_status::reserved);
        old_id = r.send_id;
    }
    const std::string back_to_v2 = "psql -q -X \"" + *server + "\" -c '" + drop_queue(schema) +
                                   "ALTER TABLE " + schema +
                                   ".sends DROP COLUMN suppression_seq; ALTER TABLE " + schema +
                                   ".audit DROP COLUMN change_seq; DROP TABLE " + schema +
                                   ".suppression_superseded; DELETE FROM " + schema +
                                   ".schema_version WHERE version > 2' >/dev/null 2>&1";
    if (std::system(back_to_v2.c_str()) != 0) {
        MESSAGE("skipped the migration check: psql is not available");
        return;
    }
    auto st = open_postgres_store(params_for(*server, schema));
    auto old_row = st->find_send(ws, old_id);
    REQUIRE(old_row);
    CHECK(old_row->suppression_seq == 0);
    old_row->state = send_state::accepted;
    old_row->suppression_seq = 12;
    std::vector<store_op> accept{store_ops::update_send{*old_row}};
    REQUIRE(st->commit(ws, accept).ops[0].applied);
    CHECK(st->find_send(ws, old_id)->suppression_seq == 12);
    std::system(
        ("psql -q -X \"" + *server + "\" -c 'DROP SCHEMA " + schema + " CASCADE' >/dev/null 2>&1")
            .c_str());
}

TEST_CASE("postgres store: a version 11 schema gains enrollments.attempt, 0 for its enrollments") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("v11");
    const auto ws = unique("ws");
    enrollment before;
    {
        auto st = open_postgres_store(params_for(*server, schema));
        const auto id =
            conformance::enroll_one(*st, ws, conformance::sample_enrollment("s1", "a@x.example"))
                .id;
        before = conformance::stored_enrollment(*st, ws, id);
    }
    const std::string back_to_v11 = "psql -q -X \"" + *server + "\" -c 'ALTER TABLE " + schema +
                                    ".enrollments DROP COLUMN attempt; DELETE FROM " + schema +
                                    ".schema_version WHERE version > 11' >/dev/null 2>&1";
    if (std::system(back_to_v11.c_str()) != 0) {
        MESSAGE("skipped the migration check: psql is not available");
        return;
    }
    auto st = open_postgres_store(params_for(*server, schema));
    auto e = conformance::stored_enrollment(*st, ws, before.id);
    CHECK(e == before);
    CHECK(e.attempt == 0);
    auto next = e;
    next.attempt = 1;
    std::vector<store_op> ops{store_ops::update_enrollment{next, e.version, "", at_s(5)}};
    REQUIRE(st->commit(ws, ops).ops[0].applied);
    CHECK(conformance::stored_enrollment(*st, ws, e.id).attempt == 1);
    std::system(
        ("psql -q -X \"" + *server + "\" -c 'DROP SCHEMA " + schema + " CASCADE' >/dev/null 2>&1")
            .c_str());
}

TEST_CASE("postgres store: handles racing on one cap key, one idempotency key, one audit chain") {
    auto server = test_server();
    if (!server) return;
    const auto ws = unique("ws");
    constexpr int handles = 4, per_handle = 30, cap = 50;
    std::vector<std::shared_ptr<store>> stores;
    // Opening at once also races the migrations.
    {
        std::vector<std::thread> ts;
        std::mutex m;
        const auto schema = unique("race");
        for (int h = 0; h < handles; ++h)
            ts.emplace_back([&] {
                auto s = open_postgres_store(params_for(*server, schema));
                std::lock_guard l(m);
                stores.push_back(s);
            });
        for (auto& t : ts) t.join();
    }
    REQUIRE(stores.size() == handles);

    std::atomic<int> reserved{0}, refused{0}, dups{0}, errors{0};
    std::mutex m;
    std::set<std::uint64_t> ids;
    std::vector<std::thread> ts;
    for (int h = 0; h < handles; ++h)
        ts.emplace_back([&, h] {
            try {
                for (int i = 0; i < per_handle; ++i) {
                    std::vector<store_op> ops{
                        reservation("c" + std::to_string(h) + "_" + std::to_string(i),
                                    "mailbox:hot", cap, at_s(1000 + i)),
                        reservation("same-key", "mailbox:other", 1000, at_s(1000 + i)),
                        store_ops::append_audit{audit_entry()}};
                    auto r = stores[h]->commit(ws, ops);
                    auto s = r.ops[0].reservation.status;
                    (s == reserve_status::reserved ? reserved : refused)++;
                    if (r.ops[1].reservation.status == reserve_status::duplicate) {
                        dups++;
                    } else {
                        std::lock_guard l(m);
                        ids.insert(r.ops[1].reservation.send_id);
                    }
                }
            } catch (const std::exception& e) {
                MESSAGE(error_text(e));
                errors++;
            }
        });
    for (auto& t : ts) t.join();
    CHECK(errors == 0);
    CHECK(reserved == cap);
    CHECK(refused == handles * per_handle - cap);
    CHECK(ids.size() == 1);
    CHECK(dups == handles * per_handle - 1);
    std::vector<audit_record> chain;
    stores[0]->for_each_audit(ws, 0, [&](const audit_record& a) { chain.push_back(a); });
    CHECK(chain.size() == handles * per_handle);
    CHECK(!verify_audit_chain(chain));
}

// Until a table has statistics, the planner takes `workspace = $1` for
// selective and may read every row of the workspace for each commit, so
// a young ledger got slower with every send until autovacuum came by.
TEST_CASE("postgres store: its tables are analysed once they hold rows") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("stats");
    const auto ws = unique("ws");
    auto st = open_postgres_store(params_for(*server, schema));
    auto psql = [&](const std::string& sql) -> std::optional<std::string> {
        const std::string cmd = "psql -q -X -A -t -v ON_ERROR_STOP=1 \"" + *server + "\" -c \"" +
                                sql + "\" 2>/dev/null";
        std::FILE* f = ::popen(cmd.c_str(), "r");
        if (!f) return std::nullopt;
        std::string out;
        char buf[256];
        while (std::fgets(buf, sizeof buf, f)) out += buf;
        if (::pclose(f) != 0) return std::nullopt;
        while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
        return out;
    };
    // Autovacuum off for these tables, so only the store can have analysed them.
    if (!psql("ALTER TABLE " + schema + ".sends SET (autovacuum_enabled = off); ALTER TABLE " +
              schema + ".cap_uses SET (autovacuum_enabled = off)")) {
        MESSAGE("skipped: psql is not available");
        return;
    }
    const auto m = st->attach(ws, {"h", 1, "a"}, 60s);
    for (int b = 0; b < 8; ++b) {
        std::vector<store_op> batch;
        for (int i = 0; i < 100; ++i)
            batch.push_back(reservation("s" + std::to_string(b * 100 + i), "mailbox:a", 100000,
                                        at_s(1000 + b)));
        for (auto& r : st->commit(ws, batch).ops)
            REQUIRE(r.reservation.status == reserve_status::reserved);
    }
    const std::string analysed = "SELECT count(*) FROM pg_stat_user_tables WHERE schemaname = '" +
                                 schema +
                                 "' AND relname IN ('sends', 'cap_uses') AND last_analyze IS "
                                 "NOT NULL";
    CHECK(psql(analysed) == "0");
    // The server publishes row counts within seconds (at most 10 s after a
    // backend goes idle); each renewal may look, at most every 2 s.
    std::optional<std::string> n;
    for (int i = 0; i < 120 && n != "2"; ++i) {
        std::this_thread::sleep_for(250ms);
        REQUIRE(st->renew(ws, m, 60s, 0));
        n = psql(analysed);
    }
    CHECK(n == "2");
    st->detach(ws, m);
}

TEST_CASE("postgres store: a server restart mid-use") {
    auto server = test_server();
    if (!server) return;
    // A private cluster, so restarting it disturbs no other test.
    const std::string script = std::string{MAILERS_SOURCE_DIR} + "/scripts/pg-test-cluster";
    const auto dir = std::filesystem::temp_directory_path() / unique("pg-restart");
    auto run = [&](const std::string& verb) {
        return std::system((script + " " + verb + " " + dir.string() + " >/dev/null 2>&1").c_str());
    };
    if (run("start") != 0) {
        MESSAGE("skipped: could not start a private cluster with " << script);
        run("stop");
        return;
    }
    struct cleanup {
        std::function<void()> f;
        ~cleanup() { f(); }
    } stop{[&] { run("stop"); }};
    std::string conninfo;
    std::getline(std::ifstream(dir / "conninfo"), conninfo);
    auto p = params_for(conninfo);
    p.reconnect_timeout = 30s;
    auto st = open_postgres_store(p);
    const auto ws = unique("ws");
    CHECK(reserve1(*st, ws, reservation("a", "k", 100, at_s(1))).status ==
          reserve_status::reserved);

    // Restarted between operations: the next one reconnects and succeeds.
    REQUIRE(run("restart") == 0);
    CHECK(reserve1(*st, ws, reservation("b", "k", 100, at_s(2))).status ==
          reserve_status::reserved);

    // Down while an operation starts: it waits for the server to come back.
    std::atomic<bool> done{false};
    REQUIRE(run("halt") == 0);
    std::thread restarter([&] {
        std::this_thread::sleep_for(1500ms);
        run("resume");
        done = true;
    });
    try {
        auto r = reserve1(*st, ws, reservation("c", "k", 100, at_s(3)));
        CHECK(r.status == reserve_status::reserved);
    } catch (const exception& e) {
        // Acceptable only as a clear statement of what happened.
        CHECK_MESSAGE(error_text(e).find("postgres store") != std::string::npos, error_text(e));
    }
    restarter.join();
    CHECK(done);
    auto snap = st->load(ws, {});
    CHECK(snap.recent_sends.size() >= 2);

    // Down for longer than reconnect_timeout: a clear error, then it works again.
    auto q = params_for(conninfo);
    q.reconnect_timeout = 500ms;
    auto quick = open_postgres_store(q);
    REQUIRE(run("halt") == 0);
    try {
        quick->find_send(ws, 1);
        FAIL("the server is down");
    } catch (const exception& e) {
        CHECK(e.code() == errc::store_error);
        CHECK(error_text(e).find("postgres store") != std::string::npos);
    }
    REQUIRE(run("resume") == 0);
    CHECK(reserve1(*quick, ws, reservation("d", "k", 100, at_s(4))).status ==
          reserve_status::reserved);

    // Opened while the server is down: the open waits for it, as a process
    // started during a restart must.
    REQUIRE(run("halt") == 0);
    std::thread resumer([&] {
        std::this_thread::sleep_for(800ms);
        run("resume");
    });
    std::shared_ptr<store> late;
    CHECK_NOTHROW(late = open_postgres_store(p));
    resumer.join();
    REQUIRE(late);
    CHECK(reserve1(*late, ws, reservation("e", "k", 100, at_s(5))).status ==
          reserve_status::reserved);
}

TEST_CASE("postgres store: a tampered audit log is detected behind the store's back") {
    auto server = test_server();
    if (!server) return;
    const auto schema = unique("audit_tamper");
    const auto ws = unique("ws");
    const std::string key = "audit key held elsewhere";
    auto st = open_postgres_store(params_for(*server, schema));
    // Plain SQL on the server, as anyone with write access could run it.
    const std::string sql_file =
        (std::filesystem::temp_directory_path() / (unique("tamper") + ".sql")).string();
    auto tamper = [&](const std::string& sql) {
        std::ofstream(sql_file) << sql;
        const std::string cmd =
            "psql -q -X -v ON_ERROR_STOP=1 \"" + *server + "\" -f " + sql_file + " >/dev/null 2>&1";
        return std::system(cmd.c_str()) == 0;
    };
    const std::string where = " WHERE workspace = '" + ws + "'";
    auto entry = [](std::string action) {
        audit_record a = audit_entry();
        a.action = std::move(action);
        return a;
    };
    std::vector<store_op> ops{store_ops::append_audit{entry("a1")},
                              store_ops::append_audit{entry("a2")},
                              store_ops::append_audit{entry("a3")},
                              store_ops::append_audit{entry(std::string(audit_key_action)), key},
                              store_ops::append_audit{entry("k1"), key},
                              store_ops::append_audit{entry("k2"), key},
                              store_ops::append_audit{entry("k3"), key}};
    st->commit(ws, ops);
    auto read = [&] {
        std::vector<audit_record> out;
        st->for_each_audit(ws, 1, [&](const audit_record& r) { out.push_back(r); });
        return out;
    };
    const auto good = read();
    REQUIRE(good.size() == 7);
    const audit_verify_options with_key{{}, key};
    const audit_verify_options with_checkpoint{audit_head{7, good.back().hash}, key};
    auto bad_seq = [&](const audit_verify_options& o) {
        std::uint64_t bad = 0;
        const error_code ec = verify_audit_chain(read(), o, &bad);
        if (ec) CHECK(ec == make_error_code(errc::audit_chain_broken));
        return ec ? bad : 0;
    };
    REQUIRE(bad_seq(with_checkpoint) == 0);
    if (!tamper("SELECT 1")) {
        MESSAGE("skipped the tampering checks: psql is not available");
        return;
    }

    SUBCASE("the last records deleted and the head rewound") {
        REQUIRE(tamper("DELETE FROM " + schema + ".audit" + where + " AND seq > 5; UPDATE " +
                       schema + ".workspaces SET audit_seq = 5, audit_hash = '" + good[4].hash +
                       "'" + where));
        std::vector<store_op> next{store_ops::append_audit{entry("after the cut"), key}};
        st->commit(ws, next);
        CHECK(bad_seq(with_key) == 0);
        CHECK(bad_seq(with_checkpoint) == 7);
    }
    SUBCASE("the first record deleted") {
        REQUIRE(tamper("DELETE FROM " + schema + ".audit" + where + " AND seq = 1"));
        CHECK(bad_seq(with_key) == 2);
    }
    SUBCASE("a record edited") {
        REQUIRE(tamper("UPDATE " + schema + ".audit SET after = '{}'" + where + " AND seq = 6"));
        CHECK(bad_seq(with_key) == 6);
    }
    SUBCASE("everything re-hashed without the key, the key record renamed") {
        auto forged = good;
        forged[1].actor = "mallory";
        forged[3].action = "a4";
        std::string sql;
        for (std::size_t i = 0; i < forged.size(); ++i) {
            forged[i].prev_hash = i == 0 ? std::string{} : forged[i - 1].hash;
            forged[i].hash = audit_hash(forged[i]);
            sql += "UPDATE " + schema + ".audit SET actor = '" + forged[i].actor + "', action = '" +
                   forged[i].action + "', prev_hash = '" + forged[i].prev_hash + "', hash = '" +
                   forged[i].hash + "'" + where + " AND seq = " + std::to_string(i + 1) + ";\n";
        }
        REQUIRE(tamper(sql));
        CHECK_FALSE(verify_audit_chain(read(), audit_verify_options{}));
        CHECK(bad_seq(with_key) == 8);
    }
    tamper("DROP SCHEMA " + schema + " CASCADE");
    std::filesystem::remove(sql_file);
}
