#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <atomic>
#include <concepts>
#include <cstring>
#include <iterator>
#include <limits>
#include <mailers/audit.hpp>
#include <mailers/error.hpp>
#include <mailers/postgres_store.hpp>
#include <map>
#include <set>
#include <thread>
#include <unordered_map>
#include <utility>

#include "config/secret_ref.hpp"
#include "store/codes.hpp"
#include "store/count_sum.hpp"
#include "store/enrollment_rules.hpp"
#include "store/postgres/pg.hpp"
#include "store/postgres/pool.hpp"
#include "store/postgres/schema.hpp"

namespace mailers {

int postgres_schema_version() noexcept {
    return pg::schema_version;
}

namespace {

namespace codes = detail::codes;

[[noreturn]] void fail(errc code, std::string message) {
    diagnostics diag;
    diag.message = std::move(message);
    throw exception(make_error_code(code), std::move(diag));
}

using codes::floor_micros;
using codes::from_micros;
using codes::micros;
using detail::apply_enrollment_op;
using detail::enrollment_cell;
using detail::enrollment_cells;
using detail::enrollment_columns;
using detail::enrollment_rows;
using detail::is_enrollment_op;
using detail::read_enrollment;

int state_code(send_state s) {
    const auto c = codes::of(s);
    if (c < 0) fail(errc::store_error, "postgres store: invalid send_state value");
    return static_cast<int>(c);
}

send_state state_from(std::int64_t c) {
    if (auto s = codes::send_state_of(c)) return *s;
    fail(errc::store_error, fmt::format("postgres store: unknown send state code {}", c));
}

int kind_code(suppression_kind k) {
    const auto c = codes::of(k);
    if (c < 0) fail(errc::store_error, "postgres store: invalid suppression_kind value");
    return static_cast<int>(c);
}

suppression_kind kind_from(std::int64_t c) {
    if (auto k = codes::suppression_kind_of(c)) return *k;
    fail(errc::store_error, fmt::format("postgres store: unknown suppression kind code {}", c));
}

int reason_code(suppression_reason r) {
    const auto c = codes::of(r);
    if (c < 0) fail(errc::store_error, "postgres store: invalid suppression_reason value");
    return static_cast<int>(c);
}

suppression_reason reason_from(std::int64_t c) {
    if (auto r = codes::suppression_reason_of(c)) return *r;
    fail(errc::store_error, fmt::format("postgres store: unknown suppression reason code {}", c));
}

// --- conninfo references --------------------------------------------------

// The conninfo usually holds a password, so it may be given as a reference,
// resolved like a DSN secret.
std::string resolve_conninfo(const std::string& conninfo) {
    std::string value = conninfo;
    std::string error;
    if (!detail::resolve_value(value, "postgres store: conninfo", error))
        fail(errc::store_error, std::move(error));
    return value;
}

// What must never appear in a message: the password, whether or not libpq
// could parse the string, and the whole string when it could not.
std::vector<std::string> secrets_of(const std::string& conninfo) {
    std::vector<std::string> out;
    char* err = nullptr;
    if (PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err)) {
        for (auto* o = opts; o->keyword; ++o)
            if (o->val && *o->val && std::strcmp(o->keyword, "password") == 0)
                out.push_back(o->val);
        PQconninfoFree(opts);
    } else {
        // A string libpq rejects may still hold a password in any spelling.
        auto pw = conninfo.find("password=");
        if (pw != std::string::npos) {
            auto start = pw + 9;
            auto end = conninfo.find_first_of(" &", start);
            out.push_back(conninfo.substr(start, end == std::string::npos ? end : end - start));
        }
        auto scheme = conninfo.find("://");
        auto at = conninfo.rfind('@');
        if (scheme != std::string::npos && at != std::string::npos && at > scheme) {
            auto userinfo = conninfo.substr(scheme + 3, at - scheme - 3);
            auto colon = userinfo.find(':');
            if (colon != std::string::npos) out.push_back(userinfo.substr(colon + 1));
        }
    }
    if (err) PQfreemem(err);
    std::erase_if(out, [](const std::string& s) { return s.empty(); });
    return out;
}

// --- statements -----------------------------------------------------------

constexpr const char* send_cols =
    "id, idempotency_key, mailbox, provider, pool, recipient, message_id, state, attempt, "
    "reserved_at, updated_at, provider_message_id, detail, owner, suppression_seq";
constexpr const char* send_cols_s =
    "s.id, s.idempotency_key, s.mailbox, s.provider, s.pool, s.recipient, s.message_id, s.state, "
    "s.attempt, s.reserved_at, s.updated_at, s.provider_message_id, s.detail, s.owner, "
    "s.suppression_seq";

ledger_row read_send(const pg::result& r, int i, int c = 0) {
    ledger_row row;
    row.id = r.u64(i, c + 0);
    row.idempotency_key = r.str(i, c + 1);
    row.mailbox = r.str(i, c + 2);
    row.provider = r.str(i, c + 3);
    row.pool = r.str(i, c + 4);
    row.recipient = r.str(i, c + 5);
    row.message_id = r.str(i, c + 6);
    row.state = state_from(r.i64(i, c + 7));
    row.attempt = static_cast<std::uint32_t>(r.i64(i, c + 8));
    row.reserved_at = from_micros(r.i64(i, c + 9));
    row.updated_at = from_micros(r.i64(i, c + 10));
    row.provider_message_id = r.str(i, c + 11);
    row.detail = r.str(i, c + 12);
    row.owner = r.u64(i, c + 13);
    row.suppression_seq = r.u64(i, c + 14);
    return row;
}

int queue_state_code(queue_state s) {
    const auto c = codes::of(s);
    if (c < 0) fail(errc::store_error, "postgres store: invalid queue_state value");
    return static_cast<int>(c);
}

queue_state queue_state_from(std::int64_t c) {
    if (auto s = codes::queue_state_of(c)) return *s;
    fail(errc::store_error, fmt::format("postgres store: unknown queue state code {}", c));
}

// The request travels as hex text: it is opaque bytes, NUL included, which
// neither a text parameter nor a text array element may hold.
std::string to_hex(std::string_view bytes) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(bytes.size() * 2);
    for (unsigned char ch : bytes) {
        out += digits[ch >> 4];
        out += digits[ch & 15];
    }
    return out;
}

std::string from_hex(std::string_view hex) {
    auto nibble = [](char ch) -> int {
        if (ch >= '0' && ch <= '9') return ch - '0';
        if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
        fail(errc::store_error, "postgres store: corrupt queue.request value");
    };
    if (hex.size() % 2 != 0) fail(errc::store_error, "postgres store: corrupt queue.request value");
    std::string out(hex.size() / 2, '\0');
    for (std::size_t i = 0; i < out.size(); ++i)
        out[i] = static_cast<char>(nibble(hex[2 * i]) << 4 | nibble(hex[2 * i + 1]));
    return out;
}

std::string queue_cols(std::string_view t) {
    return fmt::format(
        "{0}id, {0}idempotency_key, {0}pool, {0}mailbox, {0}recipient_domain, "
        "encode({0}request, 'hex'), {0}origin, {0}enqueued_at, {0}not_before, {0}due_at, "
        "{0}state, {0}wait_reason, {0}checks, {0}claimed_by, {0}send_id, {0}detail, "
        "{0}updated_at",
        t);
}

queued_send read_queued(const pg::result& r, int i) {
    queued_send q;
    q.id = r.u64(i, 0);
    q.idempotency_key = r.str(i, 1);
    q.pool = r.str(i, 2);
    q.mailbox = r.str(i, 3);
    q.recipient_domain = r.str(i, 4);
    q.request = from_hex(r.text(i, 5));
    q.origin = r.str(i, 6);
    q.enqueued_at = from_micros(r.i64(i, 7));
    q.not_before = from_micros(r.i64(i, 8));
    q.due_at = from_micros(r.i64(i, 9));
    q.state = queue_state_from(r.i64(i, 10));
    q.wait_reason = r.str(i, 11);
    q.checks = static_cast<std::uint32_t>(r.i64(i, 12));
    q.claimed_by = r.u64(i, 13);
    q.send_id = r.u64(i, 14);
    q.detail = r.str(i, 15);
    q.updated_at = from_micros(r.i64(i, 16));
    return q;
}

suppression_entry read_suppression(const pg::result& r, int i) {
    suppression_entry e;
    e.kind = kind_from(r.i64(i, 0));
    e.value = r.str(i, 1);
    e.reason = reason_from(r.i64(i, 2));
    e.source = r.str(i, 3);
    e.created_at = from_micros(r.i64(i, 4));
    return e;
}

audit_record read_audit(const pg::result& r, int i) {
    audit_record a;
    a.seq = r.u64(i, 0);
    a.at = from_micros(r.i64(i, 1));
    a.actor = r.str(i, 2);
    a.action = r.str(i, 3);
    a.resource_type = r.str(i, 4);
    a.resource_id = r.str(i, 5);
    a.before = r.str(i, 6);
    a.after = r.str(i, 7);
    a.prev_hash = r.str(i, 8);
    a.hash = r.str(i, 9);
    a.change_seq = r.u64(i, 10);
    return a;
}

struct statements {
    explicit statements(const std::string& schema) {
        const std::string s = pg::quote_ident(schema);
        const std::string qcols = queue_cols(""), qcols_q = queue_cols("q.");
        auto make = [&](const char* name, std::string_view sql) {
            return pg::statement{
                name, fmt::format(fmt::runtime(sql), fmt::arg("s", s), fmt::arg("cols", send_cols),
                                  fmt::arg("scols", send_cols_s), fmt::arg("qcols", qcols),
                                  fmt::arg("qcols_q", qcols_q))};
        };
        // commit, first round trip: locks in the documented order, then
        // every read the decisions need.
        upsert_keys = make("m_upsert_keys",
                           "INSERT INTO {s}.cap_keys (workspace, key) "
                           "SELECT $1, k FROM unnest($2::text[]) AS k ORDER BY k COLLATE \"C\" "
                           "ON CONFLICT DO NOTHING");
        // Rows are found by joining the lists given against the tables, not
        // by `= ANY(list)`: on a table not yet analysed the planner takes
        // `workspace = $1` for selective and filters every row of the
        // workspace by the list, which grows with the ledger. A join against
        // unnest() probes the index once per element whatever the statistics.
        lock_keys = make("m_lock_keys",
                         "SELECT c.key, c.gap_until FROM unnest($2::text[]) AS r(key) "
                         "JOIN {s}.cap_keys c ON c.workspace = $1 AND c.key = r.key "
                         "ORDER BY c.key FOR UPDATE OF c");
        ensure_ws =
            make("m_ensure_ws",
                 "INSERT INTO {s}.workspaces (workspace) VALUES ($1) ON CONFLICT DO NOTHING");
        lock_ws =
            make("m_lock_ws",
                 "UPDATE {s}.workspaces SET change_seq = change_seq + $2 WHERE workspace = $1 "
                 "RETURNING change_seq, audit_seq, audit_hash");
        share_objects = make("m_share_objects",
                             "SELECT o.kind, o.id, o.seq FROM {s}.objects o "
                             "JOIN unnest($2::text[], $3::text[]) AS r(kind, id) "
                             "ON o.kind = r.kind AND o.id = r.id "
                             "WHERE o.workspace = $1 ORDER BY o.kind, o.id FOR SHARE OF o");
        lock_sends = make("m_lock_sends",
                          "SELECT {scols} FROM unnest($2::int8[]) AS r(id) "
                          "JOIN {s}.sends s ON s.workspace = $1 AND s.id = r.id "
                          "ORDER BY s.id FOR UPDATE OF s");
        uses_of_sends = make("m_uses_of_sends",
                             "SELECT u.send_id, u.key, u.at FROM unnest($2::int8[]) AS r(id) "
                             "JOIN {s}.cap_uses u ON u.workspace = $1 AND u.send_id = r.id");
        sends_by_key = make("m_sends_by_key",
                            "SELECT {scols} FROM unnest($2::text[]) AS r(k) "
                            "JOIN {s}.sends s ON s.workspace = $1 AND s.idempotency_key = r.k "
                            "AND s.idempotency_key <> ''");
        new_ids =
            make("m_new_ids", "SELECT nextval('{s}.send_ids') FROM generate_series(1, $1::int)");
        // For a group of nearby floors [lo, hi] on one key: the uses at or
        // after hi, and those in [lo, hi) listed. The first are counted
        // from cap_uses only up to hi's next 2^20 us boundary, then from
        // the buckets of cap_counts (see the schema): 2^20 us buckets up
        // to the next 2^26 boundary, 2^26 us ones up to the next 2^32
        // boundary, then the 2^32 us ones, so a busy key costs no more.
        count_uses = make(
            "m_count_uses",
            "SELECT (SELECT count(*) FROM {s}.cap_uses u WHERE u.workspace = $1 AND u.key = g.k "
            "        AND u.at >= g.hi AND u.at < (b.b1 << 20)) "
            "     + (SELECT coalesce(sum(x.n), 0) FROM {s}.cap_counts x WHERE x.workspace = $1 "
            "        AND x.key = g.k AND x.bits = 20 AND x.bucket >= b.b1 "
            "        AND x.bucket < (b.b2 << 6)) "
            "     + (SELECT coalesce(sum(x.n), 0) FROM {s}.cap_counts x WHERE x.workspace = $1 "
            "        AND x.key = g.k AND x.bits = 26 AND x.bucket >= b.b2 "
            "        AND x.bucket < (b.b3 << 6)) "
            "     + (SELECT coalesce(sum(x.n), 0) FROM {s}.cap_counts x WHERE x.workspace = $1 "
            "        AND x.key = g.k AND x.bits = 32 AND x.bucket >= b.b3), "
            "       (SELECT coalesce(array_agg(u.at ORDER BY u.at), '{{}}') FROM {s}.cap_uses u "
            "        WHERE u.workspace = $1 AND u.key = g.k AND u.at >= g.lo AND u.at < g.hi) "
            "FROM unnest($2::text[], $3::int8[], $4::int8[]) WITH ORDINALITY AS g(k, lo, hi, ord) "
            "CROSS JOIN LATERAL (SELECT (g.hi + 1048575) >> 20 AS b1, "
            "  (g.hi + 67108863) >> 26 AS b2, (g.hi + 4294967295) >> 32 AS b3) b "
            "ORDER BY g.ord");
        // commit, second round trip.
        oldest_uses = make(
            "m_oldest_uses",
            "SELECT (SELECT coalesce(array_agg(x.at ORDER BY x.at), '{{}}') FROM "
            "          (SELECT u.at FROM {s}.cap_uses u WHERE u.workspace = $1 AND u.key = g.k "
            "           AND u.at >= g.f ORDER BY u.at LIMIT g.lim) x) "
            "FROM unnest($2::text[], $3::int8[], $4::int8[]) WITH ORDINALITY AS g(k, f, lim, n) "
            "ORDER BY g.n");
        // Releases the stored uses of the sends in $2 and records new ones,
        // moving their buckets by exactly the rows deleted and inserted: a
        // purge may have deleted some of the released uses meanwhile. One
        // statement, its bucket rows locked in key order, so that commits
        // and purges touching the same buckets do not deadlock.
        write_uses =
            make("m_write_uses",
                 "WITH del AS (DELETE FROM {s}.cap_uses u USING unnest($2::int8[]) AS r(id) "
                 "  WHERE u.workspace = $1 AND u.send_id = r.id RETURNING u.key, u.at, -1 AS d), "
                 "ins AS (INSERT INTO {s}.cap_uses (workspace, key, at, send_id) "
                 "  SELECT $1, * FROM unnest($3::text[], $4::int8[], $5::int8[]) "
                 "  RETURNING key, at, 1 AS d) "
                 "INSERT INTO {s}.cap_counts AS c (workspace, key, bits, bucket, n) "
                 "SELECT $1, v.key, b.bits, v.at >> b.bits, sum(v.d) "
                 "FROM (SELECT * FROM del UNION ALL SELECT * FROM ins) v "
                 "CROSS JOIN (VALUES (20::int2), (26::int2), (32::int2)) AS b(bits) "
                 "GROUP BY v.key, b.bits, v.at >> b.bits HAVING sum(v.d) <> 0 "
                 "ORDER BY v.key, b.bits, v.at >> b.bits "
                 "ON CONFLICT (workspace, key, bits, bucket) DO UPDATE SET n = c.n + excluded.n");
        insert_sends = make(
            "m_insert_sends",
            "INSERT INTO {s}.sends (workspace, {cols}) SELECT $1, * FROM unnest($2::int8[], "
            "$3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::int2[], "
            "$10::int8[], $11::int8[], $12::int8[], $13::text[], $14::text[], $15::int8[], "
            "$16::int8[])");
        update_sends = make(
            "m_update_sends",
            "UPDATE {s}.sends s SET mailbox = v.mailbox, provider = v.provider, pool = v.pool, "
            "message_id = v.message_id, state = v.state, attempt = v.attempt, "
            "reserved_at = v.reserved_at, updated_at = v.updated_at, "
            "provider_message_id = v.provider_message_id, detail = v.detail, "
            "suppression_seq = v.suppression_seq "
            "FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int2[], "
            "$8::int8[], $9::int8[], $10::int8[], $11::text[], $12::text[], $13::int8[]) AS "
            "v(id, mailbox, provider, pool, message_id, state, attempt, reserved_at, updated_at, "
            "provider_message_id, detail, suppression_seq) WHERE s.workspace = $1 AND s.id = v.id");
        set_gaps = make("m_set_gaps",
                        "UPDATE {s}.cap_keys c SET gap_until = v.g "
                        "FROM unnest($2::text[], $3::int8[]) AS v(k, g) "
                        "WHERE c.workspace = $1 AND c.key = v.k");
        write_objects = make(
            "m_write_objects",
            "INSERT INTO {s}.objects (workspace, kind, id, json, seq) "
            "SELECT $1, k, i, j, $5 FROM unnest($2::text[], $3::text[], $4::text[]) AS v(k, i, j) "
            "ON CONFLICT (workspace, kind, id) DO UPDATE SET json = excluded.json, seq = "
            "excluded.seq");
        // The rows it replaces or removes are kept first: the CTE reads them
        // as they were before the statement.
        write_suppressions =
            make("m_write_suppressions",
                 "WITH x AS (SELECT * FROM unnest($2::int2[], $3::text[], $4::int2[], "
                 "$5::text[], $6::int8[]) AS x(k, v, r, src, c)), "
                 "kept AS (INSERT INTO {s}.suppression_superseded (workspace, kind, value, reason, "
                 "source, created_at, seq, by_seq) SELECT s.workspace, s.kind, s.value, s.reason, "
                 "s.source, s.created_at, s.seq, $7 FROM x JOIN {s}.suppressions s ON "
                 "s.workspace = $1 AND s.kind = x.k AND s.value = x.v "
                 "WHERE s.reason IS NOT NULL ORDER BY s.kind, s.value) "
                 "INSERT INTO {s}.suppressions (workspace, kind, value, reason, source, "
                 "created_at, seq) "
                 "SELECT $1, k, v, r, src, c, $7 FROM x "
                 "ON CONFLICT (workspace, kind, value) DO UPDATE SET reason = excluded.reason, "
                 "source = excluded.source, created_at = excluded.created_at, seq = excluded.seq");
        // Entries a commit wrote and then replaced or removed itself.
        write_superseded = make(
            "m_write_superseded",
            "INSERT INTO {s}.suppression_superseded (workspace, kind, value, reason, source, "
            "created_at, seq, by_seq) SELECT $1, k, v, r, src, c, $7, $7 FROM unnest($2::int2[], "
            "$3::text[], $4::int2[], $5::text[], $6::int8[]) WITH ORDINALITY AS x(k, v, r, src, "
            "c, n) ORDER BY n");
        insert_audit = make(
            "m_insert_audit",
            "INSERT INTO {s}.audit (workspace, seq, at, actor, action, resource_type, resource_id, "
            "before, after, prev_hash, hash, change_seq) SELECT $1, * FROM unnest($2::int8[], "
            "$3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], "
            "$10::text[], $11::text[], $12::int8[])");
        set_audit_head = make("m_set_audit_head",
                              "UPDATE {s}.workspaces SET audit_seq = $2, audit_hash = $3 "
                              "WHERE workspace = $1");

        // reads
        load_objects = make("m_load_objects",
                            "SELECT kind, id, json FROM {s}.objects "
                            "WHERE workspace = $1 AND json IS NOT NULL ORDER BY kind, id");
        load_suppressions =
            make("m_load_suppressions",
                 "SELECT kind, value, reason, source, created_at FROM {s}.suppressions "
                 "WHERE workspace = $1 AND reason IS NOT NULL ORDER BY kind, value");
        load_sends = make("m_load_sends",
                          "SELECT {cols} FROM {s}.sends WHERE workspace = $1 AND reserved_at >= $2 "
                          "UNION SELECT {cols} FROM {s}.sends WHERE workspace = $1 AND state = 0");
        change_seq = make(
            "m_change_seq",
            "SELECT coalesce((SELECT change_seq FROM {s}.workspaces WHERE workspace = $1), 0)");
        changed_objects = make("m_changed_objects",
                               "SELECT kind, id, json FROM {s}.objects "
                               "WHERE workspace = $1 AND seq > $2 ORDER BY seq, kind, id");
        changed_suppressions =
            make("m_changed_suppressions",
                 "SELECT kind, value, reason, source, created_at FROM {s}.suppressions "
                 "WHERE workspace = $1 AND seq > $2 AND seq <> $3 ORDER BY seq, kind, value");
        find_send =
            make("m_find_send", "SELECT {cols} FROM {s}.sends WHERE workspace = $1 AND id = $2");
        find_suppression =
            make("m_find_suppression",
                 "SELECT kind, value, reason, source, created_at FROM {s}.suppressions "
                 "WHERE workspace = $1 AND kind = $2 AND value = $3 "
                 "AND reason IS NOT NULL");
        audit_from =
            make("m_audit_from",
                 "SELECT seq, at, actor, action, resource_type, resource_id, before, after, "
                 "prev_hash, hash, change_seq FROM {s}.audit WHERE workspace = $1 AND seq >= $2 "
                 "ORDER BY seq LIMIT $3");
        sends_between =
            make("m_sends_between",
                 "SELECT {cols} FROM {s}.sends WHERE workspace = $1 AND reserved_at >= $2 "
                 "AND reserved_at < $3 AND id > $4 ORDER BY id LIMIT $5");
        first_send_between = make("m_first_send_between",
                                  "SELECT min(id + 0) FROM {s}.sends WHERE workspace = $1 AND "
                                  "reserved_at >= $2 AND reserved_at < $3");
        find_object = make("m_find_object",
                           "SELECT json FROM {s}.objects WHERE workspace = $1 AND kind = $2 "
                           "AND id = $3 AND json IS NOT NULL");
        suppression_count = make("m_suppression_count",
                                 "SELECT coalesce((SELECT suppression_count FROM {s}.workspaces "
                                 "WHERE workspace = $1), 0)");
        objects_of_kind = make("m_objects_of_kind",
                               "SELECT id, json FROM {s}.objects WHERE workspace = $1 AND "
                               "kind = $2 AND json IS NOT NULL ORDER BY id");
        next_suppression =
            make("m_next_suppression",
                 "SELECT kind, value, reason, source, created_at FROM {s}.suppressions "
                 "WHERE workspace = $1 AND kind = $2 AND value >= $3::text COLLATE \"C\" "
                 "AND reason IS NOT NULL ORDER BY value LIMIT 1");
        suppressions_after = make(
            "m_suppressions_after",
            "SELECT kind, value, reason, source, created_at FROM {s}.suppressions "
            "WHERE workspace = $1 AND reason IS NOT NULL AND (kind, value) > ($2::int2, $3::text) "
            "ORDER BY kind, value LIMIT $4");
        // The buckets give back exactly the uses deleted, so that counts
        // stay exact for any floor; buckets that end at or before $2 are
        // then empty, and go unless a use arrived meanwhile.
        purge = make(
            "m_purge",
            "WITH del AS (DELETE FROM {s}.cap_uses u USING {s}.cap_keys k WHERE k.workspace = $1 "
            "  AND u.workspace = $1 AND u.key = k.key AND u.at < $2 RETURNING u.key, u.at) "
            "INSERT INTO {s}.cap_counts AS c (workspace, key, bits, bucket, n) "
            "SELECT $1, del.key, b.bits, del.at >> b.bits, -count(*) FROM del "
            "CROSS JOIN (VALUES (20::int2), (26::int2), (32::int2)) AS b(bits) "
            "GROUP BY del.key, b.bits, del.at >> b.bits "
            "ORDER BY del.key, b.bits, del.at >> b.bits "
            "ON CONFLICT (workspace, key, bits, bucket) DO UPDATE SET n = c.n + excluded.n");
        purge_counts = make("m_purge_counts",
                            "DELETE FROM {s}.cap_counts WHERE workspace = $1 AND n = 0 "
                            "AND bucket < ($2::int8 >> bits)");

        // membership; lease times on the server's clock
        attach =
            make("m_attach",
                 "INSERT INTO {s}.members (workspace, id, host, pid, name, acked_seq, lease_until) "
                 "VALUES ($1, nextval('{s}.member_ids'), $2, $3, $4, 0, "
                 "clock_timestamp() + $5 * interval '1 millisecond') RETURNING id");
        renew = make(
            "m_renew",
            "UPDATE {s}.members SET lease_until = clock_timestamp() + $3 * interval '1 "
            "millisecond', "
            "acked_seq = $4 WHERE workspace = $1 AND id = $2 AND lease_until > clock_timestamp()");
        end_lease = make("m_end_lease",
                         "UPDATE {s}.members SET lease_until = clock_timestamp() "
                         "WHERE workspace = $1 AND id = $2");
        members = make("m_members",
                       "SELECT id, host, pid, name, acked_seq, lease_until > clock_timestamp() "
                       "FROM {s}.members WHERE workspace = $1 ORDER BY id");
        // One statement, so a member renewing at the same moment either
        // renews first (and survives) or finds itself gone.
        recover =
            make("m_recover",
                 "WITH gone AS (DELETE FROM {s}.members WHERE workspace = $1 "
                 "  AND (lease_until <= clock_timestamp() OR id = ANY($2::int8[])) RETURNING id) "
                 "UPDATE {s}.sends SET state = 3, updated_at = $3, detail = $4 "
                 "WHERE workspace = $1 AND state = 0 "
                 "AND (owner = 0 OR owner IN (SELECT id FROM gone) OR owner = ANY($2::int8[]))");
        // The send queue. Items named by queue ops are locked in id order,
        // after every other lock a commit takes.
        lock_queued = make("m_lock_queued",
                           "SELECT {qcols_q} FROM unnest($2::int8[]) AS r(id) "
                           "JOIN {s}.queue q ON q.workspace = $1 AND q.id = r.id "
                           "ORDER BY q.id FOR UPDATE OF q");
        queued_by_key = make("m_queued_by_key",
                             "SELECT {qcols_q} FROM unnest($2::text[]) AS r(k) "
                             "JOIN {s}.queue q ON q.workspace = $1 AND q.idempotency_key = r.k "
                             "AND q.idempotency_key <> ''");
        new_queue_ids = make("m_new_queue_ids",
                             "SELECT nextval('{s}.queue_ids') FROM generate_series(1, $1::int)");
        insert_queued = make(
            "m_insert_queued",
            "INSERT INTO {s}.queue (workspace, id, idempotency_key, pool, mailbox, "
            "recipient_domain, request, origin, enqueued_at, not_before, due_at, state, "
            "wait_reason, checks, claimed_by, send_id, detail, updated_at) "
            "SELECT $1, id, k, p, m, d, decode(r, 'hex'), o, e, nb, du, st, w, c, cb, si, dt, u "
            "FROM unnest($2::int8[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], "
            "$8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int2[], $13::text[], "
            "$14::int8[], $15::int8[], $16::int8[], $17::text[], $18::int8[]) "
            "AS v(id, k, p, m, d, r, o, e, nb, du, st, w, c, cb, si, dt, u)");
        update_queued = make(
            "m_update_queued",
            "UPDATE {s}.queue q SET due_at = v.du, state = v.st, wait_reason = v.w, "
            "claimed_by = v.cb, send_id = v.si, detail = v.dt, updated_at = v.u "
            "FROM unnest($2::int8[], $3::int8[], $4::int2[], $5::text[], $6::int8[], $7::int8[], "
            "$8::text[], $9::int8[]) AS v(id, du, st, w, cb, si, dt, u) "
            "WHERE q.workspace = $1 AND q.id = v.id");
        // KEY SHARE: a renewal of the lease goes on, while a recovery's
        // delete of the member waits for the claim to commit, so the
        // recovery then sees (and returns) what the claim took.
        live_member = make("m_live_member",
                           "SELECT 1 FROM {s}.members WHERE workspace = $1 AND id = $2 "
                           "AND lease_until > clock_timestamp() FOR KEY SHARE");
        // The pick is a materialised CTE: as an `IN (subquery)` the planner
        // may run the subquery more than once, and each run skips the rows
        // the previous one locked, so the update could take more than the
        // limit.
        claim_queued =
            make("m_claim_queued",
                 "WITH picked AS MATERIALIZED ("
                 "  SELECT id FROM {s}.queue WHERE workspace = $1 AND state = 0 AND due_at <= $3 "
                 "  AND EXISTS (SELECT 1 FROM {s}.members m WHERE m.workspace = $1 AND m.id = $2 "
                 "              AND m.lease_until > clock_timestamp()) "
                 "  ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
                 "UPDATE {s}.queue q SET state = 1, claimed_by = $2, checks = q.checks + 1, "
                 "updated_at = $3 FROM picked WHERE q.workspace = $1 AND q.id = picked.id "
                 "RETURNING {qcols_q}");
        // Every claimed item whose holder is no longer a member: run after
        // the members are deleted, as a statement of its own, so that it
        // sees the items of a claim that committed while the delete waited.
        requeue = make("m_requeue",
                       "UPDATE {s}.queue q SET state = 0, claimed_by = 0, detail = $2, "
                       "updated_at = $3 WHERE q.workspace = $1 AND q.state = 1 AND NOT EXISTS "
                       "(SELECT 1 FROM {s}.members m WHERE m.workspace = $1 "
                       "AND m.id = q.claimed_by)");
        find_queued =
            make("m_find_queued", "SELECT {qcols} FROM {s}.queue WHERE workspace = $1 AND id = $2");
        queued_after = make("m_queued_after",
                            "SELECT {qcols} FROM {s}.queue WHERE workspace = $1 AND id > $2 "
                            "AND ($3::int2 < 0 OR state = $3::int2) "
                            "AND ($4::text = '' OR starts_with(origin, $4::text)) "
                            "ORDER BY id LIMIT $5");
        count_queued = make("m_count_queued",
                            "SELECT state, CASE WHEN state = 0 THEN wait_reason ELSE '' END, "
                            "count(*), min(due_at) FROM {s}.queue WHERE workspace = $1 "
                            "GROUP BY 1, 2 ORDER BY 1, 2");
        // In key order, so that commits recording overlapping keys lock
        // them in one order. A row comes back for each key recorded now:
        // new, or past its expiry; a key another transaction holds waits
        // for it and then counts as a duplicate unless that one rolled back.
        record_keys = make(
            "m_record_keys",
            "INSERT INTO {s}.recorded_keys AS r (workspace, namespace, key, recorded_at, "
            "expires_at) SELECT $1, n, k, a, e FROM unnest($2::text[], $3::text[], $4::int8[], "
            "$5::int8[]) AS x(n, k, a, e) ORDER BY n COLLATE \"C\", k COLLATE \"C\" "
            "ON CONFLICT (workspace, namespace, key) DO UPDATE SET "
            "recorded_at = excluded.recorded_at, expires_at = excluded.expires_at "
            "WHERE r.expires_at <= excluded.recorded_at RETURNING r.namespace, r.key");
        purge_keys = make("m_purge_keys",
                          "DELETE FROM {s}.recorded_keys WHERE workspace = $1 AND expires_at < $2");
        forget_key = make("m_forget_key",
                          "DELETE FROM {s}.recorded_keys WHERE workspace = $1 AND namespace = $2 "
                          "AND key = $3");
        // Enrollments: read and written one statement at a time inside the
        // commit's transaction (enrollment_rows), rows locked as read.
        const std::string ecols = enrollment_columns;
        const std::string eset = [&] {
            std::string out;
            std::string_view cols = ecols;
            int n = 3;
            // Every column but the id ($2) and the key it is found by.
            for (std::size_t at = 0; at <= cols.size();) {
                auto end = cols.find(", ", at);
                if (end == std::string_view::npos) end = cols.size();
                auto col = cols.substr(at, end - at);
                if (col != "id") {
                    if (!out.empty()) out += ", ";
                    out += fmt::format("{} = {}", col,
                                       col == "next_due" ? fmt::format("NULLIF(${}, '')::bigint", n)
                                                         : fmt::format("${}", n));
                }
                if (col != "id") ++n;
                at = end + 2;
            }
            return out;
        }();
        auto emake = [&](const char* name, std::string sql) {
            return pg::statement{name, fmt::format(fmt::runtime(sql), fmt::arg("s", s),
                                                   fmt::arg("ecols", ecols),
                                                   fmt::arg("eset", eset))};
        };
        enr_by_id = emake("m_enr_by_id",
                          "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND id = $2 "
                          "FOR UPDATE");
        enr_find = emake("m_enr_find",
                         "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND id = $2");
        enr_by_key = emake("m_enr_by_key",
                           "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND "
                           "sequence_id = $2 AND address = $3 FOR UPDATE");
        enr_live = emake("m_enr_live",
                         "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND state IN "
                         "(0, 1, 5) AND ($2 = '' OR address = $2) AND ($3 = '' OR domain = $3) AND "
                         "($4 = '' OR sequence_id = $4) AND ($5::bigint = 0 OR id = $5::bigint) "
                         "ORDER BY id FOR UPDATE");
        enr_insert = emake("m_enr_insert",
                           "INSERT INTO {s}.enrollments (workspace, {ecols}) VALUES ($1, "
                           "nextval('{s}.enrollment_ids'), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULLIF($12, "
                           "'')::bigint, $13, $14, $15, $16, $17, $18, $19, $20, $21, "
                           "$22, $23, $24, $25) ON CONFLICT (workspace, sequence_id, address) DO "
                           "NOTHING RETURNING id");
        enr_write = emake("m_enr_write",
                          "UPDATE {s}.enrollments SET {eset} WHERE workspace = $1 AND id = $2");
        enr_cancel = emake("m_enr_cancel",
                           "UPDATE {s}.queue SET state = 3, detail = $3, updated_at = $4 WHERE "
                           "workspace = $1 AND idempotency_key = $2 AND idempotency_key <> '' "
                           "AND state = 0");
        enr_remember = emake("m_enr_remember",
                             "INSERT INTO {s}.enrollment_messages (workspace, message_id, "
                             "enrollment) VALUES ($1, $2, $3) ON CONFLICT (workspace, message_id) "
                             "DO UPDATE SET enrollment = excluded.enrollment");
        enr_by_message = emake("m_enr_by_message",
                               "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND id = "
                               "(SELECT enrollment FROM {s}.enrollment_messages WHERE workspace "
                               "= $1 AND message_id = $2)");
        enr_after = emake("m_enr_after",
                          "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND id > $2 "
                          "AND ($3 = '' OR sequence_id = $3) AND ($4 = '' OR address = $4) AND "
                          "($5::int = -1 OR state = $5::int) ORDER BY id LIMIT $6");
        enr_due = emake("m_enr_due",
                        "SELECT {ecols} FROM {s}.enrollments WHERE workspace = $1 AND state = 0 "
                        "AND next_due <= $2 ORDER BY next_due, id LIMIT $3");
        purge_queued = make("m_purge_queued",
                            "DELETE FROM {s}.queue WHERE workspace = $1 AND state >= 2 "
                            "AND updated_at < $2");
        // --- outbound webhooks: the outbox, written one statement per op
        // inside the commit's transaction, as enrollments are.
        const std::string ocols =
            "id, endpoint, message_id, event_key, event_type, payload, created_at, due_at, "
            "state, attempts, claimed_by, last_status, detail, updated_at";
        auto omake = [&](const char* name, std::string sql) {
            return pg::statement{name, fmt::format(fmt::runtime(sql), fmt::arg("s", s),
                                                   fmt::arg("ocols", ocols))};
        };
        wh_insert = omake("m_wh_insert",
                          "INSERT INTO {s}.webhook_outbox (workspace, id, endpoint, message_id, "
                          "event_key, event_type, payload, created_at, due_at, state, attempts, "
                          "claimed_by, last_status, detail, updated_at) VALUES ($1, "
                          "nextval('{s}.webhook_outbox_ids'), $2, $3, $4, $5, $6, $7, $8, 0, 0, "
                          "0, 0, '', $7) ON CONFLICT (workspace, endpoint, event_key) DO NOTHING "
                          "RETURNING id");
        wh_end = omake("m_wh_end",
                       "UPDATE {s}.webhook_outbox o SET state = v.st, claimed_by = 0, "
                       "due_at = v.du, last_status = v.ls, detail = v.dt, updated_at = v.u "
                       "FROM unnest($2::int8[], $3::int8[], $4::int2[], $5::int8[], $6::int4[], "
                       "$7::text[], $8::int8[]) AS v(id, m, st, du, ls, dt, u) "
                       "WHERE o.workspace = $1 AND o.id = v.id AND o.state = 1 "
                       "AND o.claimed_by = v.m RETURNING o.id");
        wh_fail = omake("m_wh_fail",
                        "UPDATE {s}.webhook_outbox SET state = 3, detail = $3, updated_at = $4 "
                        "WHERE workspace = $1 AND endpoint = $2 AND state = 0");
        wh_retry = omake("m_wh_retry",
                         "UPDATE {s}.webhook_outbox SET state = 0, attempts = 0, due_at = $4, "
                         "detail = '', updated_at = $4 WHERE workspace = $1 AND endpoint = $2 "
                         "AND state = 3 AND created_at >= $3");
        // Materialised and SKIP LOCKED, as claim_queued.
        wh_claim = omake("m_wh_claim",
                         "WITH picked AS MATERIALIZED ("
                         "  SELECT id FROM {s}.webhook_outbox WHERE workspace = $1 AND state = 0 "
                         "  AND due_at <= $3 AND EXISTS (SELECT 1 FROM {s}.members m WHERE "
                         "  m.workspace = $1 AND m.id = $2 AND m.lease_until > clock_timestamp()) "
                         "  ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) "
                         "UPDATE {s}.webhook_outbox o SET state = 1, claimed_by = $2, "
                         "attempts = o.attempts + 1, updated_at = $3 FROM picked "
                         "WHERE o.workspace = $1 AND o.id = picked.id RETURNING o.id, o.endpoint, "
                         "o.message_id, o.event_key, o.event_type, o.payload, o.created_at, "
                         "o.due_at, o.state, o.attempts, o.claimed_by, o.last_status, o.detail, "
                         "o.updated_at");
        // Run after the members are deleted, as requeue is.
        wh_requeue = omake("m_wh_requeue",
                           "UPDATE {s}.webhook_outbox o SET state = 0, claimed_by = 0, "
                           "detail = $2, updated_at = $3 WHERE o.workspace = $1 AND o.state = 1 "
                           "AND NOT EXISTS (SELECT 1 FROM {s}.members m WHERE m.workspace = $1 "
                           "AND m.id = o.claimed_by)");
        wh_find = omake("m_wh_find",
                        "SELECT {ocols} FROM {s}.webhook_outbox WHERE workspace = $1 AND id = $2");
        wh_after = omake("m_wh_after",
                         "SELECT {ocols} FROM {s}.webhook_outbox WHERE workspace = $1 AND "
                         "id > $2 AND ($3::int2 < 0 OR state = $3::int2) AND ($4::text = '' OR "
                         "endpoint = $4::text) ORDER BY id LIMIT $5");
        wh_count = omake("m_wh_count",
                         "SELECT state, count(*), max(updated_at) FROM {s}.webhook_outbox WHERE "
                         "workspace = $1 AND ($2::text = '' OR endpoint = $2::text) GROUP BY state");
        wh_purge = omake("m_wh_purge",
                         "DELETE FROM {s}.webhook_outbox WHERE workspace = $1 AND state >= 2 "
                         "AND updated_at < $2");
        // --- end outbound webhooks
        // --- daily counts: one upsert per commit, rows in key order so two
        // commits lock shared rows in the same order.
        dc_add = make("m_dc_add",
                      "INSERT INTO {s}.daily_counts AS d (workspace, scope, id, day, metric, n) "
                      "SELECT $1, x.sc, x.i, x.dy, x.m, x.n FROM unnest($2::int4[], $3::text[], "
                      "$4::int4[], $5::int4[], $6::int8[]) AS x(sc, i, dy, m, n) "
                      "ORDER BY x.sc, x.i COLLATE \"C\", x.dy, x.m "
                      "ON CONFLICT (workspace, scope, id, day, metric) DO UPDATE SET "
                      "n = d.n + excluded.n");
        dc_read = make("m_dc_read",
                       "SELECT day, metric, n FROM {s}.daily_counts WHERE workspace = $1 AND "
                       "scope = $2 AND id = $3 AND day >= $4 AND day <= $5 ORDER BY day, metric");
        dc_purge =
            make("m_dc_purge", "DELETE FROM {s}.daily_counts WHERE workspace = $1 AND day < $2");
        // The upsert locks the address's row, so racing tallies of one
        // address count one after the other.
        sb_tally = make("m_sb_tally",
                        "INSERT INTO {s}.soft_bounces AS t (workspace, address, hits, newest) "
                        "VALUES ($1, $2, ARRAY[$3::int8], $3::int8) "
                        "ON CONFLICT (workspace, address) DO UPDATE SET hits = "
                        "ARRAY(SELECT h FROM unnest(t.hits) AS h WHERE h >= $4 ORDER BY h) "
                        "|| $3::int8, newest = greatest(t.newest, $3::int8) "
                        "RETURNING (SELECT count(*) FROM unnest(hits) AS h WHERE h >= $4)");
        sb_purge =
            make("m_sb_purge", "DELETE FROM {s}.soft_bounces WHERE workspace = $1 AND newest < $2");
        sb_trim = make("m_sb_trim",
                       "UPDATE {s}.soft_bounces SET hits = ARRAY(SELECT h FROM unnest(hits) AS h "
                       "WHERE h >= $2 ORDER BY h) WHERE workspace = $1 AND EXISTS (SELECT 1 FROM "
                       "unnest(hits) AS h WHERE h < $2)");
        // --- end daily counts
        server_now =
            make("m_server_now", "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8");
        unanalysed = make("m_unanalysed",
                          "SELECT relname, n_mod_since_analyze >= $2 FROM pg_stat_user_tables "
                          "WHERE schemaname = $1 AND relname IN ('sends', 'cap_uses', "
                          "'cap_counts', 'suppressions', 'audit') AND last_analyze IS NULL "
                          "AND last_autoanalyze IS NULL ORDER BY relname");
    }

    pg::statement upsert_keys, lock_keys, ensure_ws, lock_ws, share_objects, lock_sends,
        uses_of_sends, sends_by_key, new_ids, count_uses, oldest_uses, write_uses, insert_sends,
        update_sends, set_gaps, write_objects, write_suppressions, write_superseded, insert_audit,
        set_audit_head, load_objects, load_suppressions, load_sends, change_seq, changed_objects,
        changed_suppressions, find_send, find_suppression, audit_from, sends_between,
        suppressions_after, find_object, next_suppression, suppression_count, objects_of_kind,
        first_send_between, purge, purge_counts, attach, renew, end_lease, members, recover,
        server_now, unanalysed, lock_queued, queued_by_key, new_queue_ids, insert_queued,
        update_queued, live_member, claim_queued, requeue, find_queued, queued_after, count_queued,
        purge_queued, record_keys, purge_keys, forget_key, enr_by_id, enr_by_key, enr_live, enr_insert,
        enr_write, enr_cancel, enr_remember, enr_by_message, enr_after, enr_due, enr_find;
    // outbound webhooks
    pg::statement wh_insert, wh_end, wh_fail, wh_retry, wh_claim, wh_requeue, wh_find, wh_after,
        wh_count, wh_purge;
    // daily counts
    pg::statement dc_add, dc_read, dc_purge, sb_tally, sb_purge, sb_trim;
};

// --- enrollments ---------------------------------------------------------------

// One row of a result, as enrollment rules read rows.
struct pg_row {
    const pg::result& r;
    int row;
    std::int64_t i64(int c) const { return r.i64(row, c); }
    std::string str(int c) const { return r.str(row, c); }
    bool null(int c) const { return r.is_null(row, c); }
};

// Adds `cells` from the first one on, NULL as '' (the statements turn it
// back with NULLIF).
pg::params& add_cells(pg::params& p, const std::vector<enrollment_cell>& cells,
                      std::size_t first) {
    for (std::size_t i = first; i < cells.size(); ++i) {
        if (const auto* n = std::get_if<std::int64_t>(&cells[i]))
            p.add(*n);
        else if (const auto* t = std::get_if<std::string>(&cells[i]))
            p.add(*t);
        else
            p.add("");
    }
    return p;
}

std::vector<enrollment> read_enrollments(const pg::result& r) {
    std::vector<enrollment> out;
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_enrollment(pg_row{r, i}));
    return out;
}

// The enrollment rows of one workspace inside a commit's transaction; rows
// read are locked (FOR UPDATE) until it ends.
class pg_enrollments final : public enrollment_rows {
public:
    pg_enrollments(pg::connection& c, const statements& sql, const std::string& ws)
        : c_(c), sql_(sql), ws_(ws) {}

    std::optional<enrollment> by_id(std::uint64_t id) override {
        return first(c_.run(sql_.enr_by_id, pg::params{}.add(ws_).add(id)));
    }
    std::optional<enrollment> by_key(const std::string& sequence_id,
                                     const std::string& address) override {
        return first(c_.run(sql_.enr_by_key, pg::params{}.add(ws_).add(sequence_id).add(address)));
    }
    std::vector<enrollment> live_matching(const store_ops::stop_enrollments& op) override {
        return read_enrollments(c_.run(sql_.enr_live, pg::params{}
                                                          .add(ws_)
                                                          .add(op.address)
                                                          .add(op.domain)
                                                          .add(op.sequence_id)
                                                          .add(op.id)));
    }
    std::optional<std::uint64_t> insert(const enrollment& e) override {
        pg::params p;
        p.add(ws_);
        auto r = c_.run(sql_.enr_insert, add_cells(p, enrollment_cells(e), 1));
        if (r.rows() == 0) return std::nullopt;
        return r.u64(0, 0);
    }
    void write(const enrollment& e) override {
        pg::params p;
        p.add(ws_).add(e.id);
        c_.run(sql_.enr_write, add_cells(p, enrollment_cells(e), 1));
    }
    void cancel_waiting(const std::string& key, const std::string& detail,
                        time_point at) override {
        c_.run(sql_.enr_cancel, pg::params{}.add(ws_).add(key).add(detail).add(micros(at)));
    }
    void remember_message(const std::string& message_id, std::uint64_t id) override {
        c_.run(sql_.enr_remember, pg::params{}.add(ws_).add(message_id).add(id));
    }

private:
    static std::optional<enrollment> first(const pg::result& r) {
        if (r.rows() == 0) return std::nullopt;
        return read_enrollment(pg_row{r, 0});
    }
    pg::connection& c_;
    const statements& sql_;
    const std::string& ws_;
};

// --- the commit's in-memory model ------------------------------------------

// Floors of one key closer than this share one counting query: the uses
// between them are listed, the rest counted in the index.
constexpr std::int64_t floor_group_gap = 1'000'000;
constexpr std::int64_t floor_group_span = 5'000'000;

struct floor_group {
    std::int64_t lo = 0, hi = 0;
    std::uint64_t at_or_after_hi = 0;
    std::vector<std::int64_t> between;  // sorted, in [lo, hi)
};

struct key_state {
    std::int64_t gap_until = 0;
    bool gap_changed = false;
    std::vector<std::int64_t> floors;  // requested by the batch, before grouping
    std::vector<floor_group> groups;
    // Uses recorded before the commit that the batch released, and uses the
    // batch recorded (minus those it released again); both sorted, so that
    // counting a window costs a binary search however many reservations of
    // the batch share the key.
    std::vector<std::int64_t> removed;
    std::vector<std::int64_t> added;

    void add(std::int64_t at) { added.insert(std::upper_bound(added.begin(), added.end(), at), at); }
    void remove_stored(std::int64_t at) {
        removed.insert(std::upper_bound(removed.begin(), removed.end(), at), at);
    }
    void remove_added(std::int64_t at) {
        auto it = std::lower_bound(added.begin(), added.end(), at);
        if (it != added.end() && *it == at) added.erase(it);
    }

    const floor_group& group_of(std::int64_t f) const {
        for (auto& g : groups)
            if (f >= g.lo && f <= g.hi) return g;
        fail(errc::store_error, "postgres store: internal error: floor outside every group");
    }

    // Uses at or after `f` as the batch sees them.
    std::uint64_t count(std::int64_t f) const {
        auto& g = group_of(f);
        std::uint64_t n =
            g.at_or_after_hi +
            static_cast<std::uint64_t>(g.between.end() -
                                       std::lower_bound(g.between.begin(), g.between.end(), f));
        n -= static_cast<std::uint64_t>(removed.end() -
                                        std::lower_bound(removed.begin(), removed.end(), f));
        n += static_cast<std::uint64_t>(added.end() -
                                        std::lower_bound(added.begin(), added.end(), f));
        return n;
    }
};

struct use {
    std::string key;
    std::int64_t at;
    bool stored;  // recorded before this commit
};

struct send_state_mem {
    ledger_row row;
    bool is_new = false;
    bool dirty = false;
    bool uses_released = false;  // its stored uses must be deleted
    std::vector<use> uses;
};

// A refused claim whose `until` needs the oldest uses from the server.
struct until_request {
    std::size_t op;
    std::string key;
    std::int64_t floor;
    std::uint64_t k;
    std::vector<std::int64_t> removed;  // stored uses >= floor the batch does not count
    std::vector<std::int64_t> added;    // batch uses >= floor
};

// Where a failure struck relative to the COMMIT decides whether the store may
// run the transaction again.
struct attempt {
    bool commit_sent = false;
};

// Waiting for a server that went away (a restart): pauses from 50 ms,
// doubling up to 1 s, until `timeout` has passed.
class reconnect_wait {
public:
    explicit reconnect_wait(std::chrono::milliseconds timeout)
        : deadline_(std::chrono::steady_clock::now() + timeout) {}
    bool expired() const { return std::chrono::steady_clock::now() >= deadline_; }
    void pause() {
        std::this_thread::sleep_for(backoff_);
        backoff_ = std::min(backoff_ * 2, std::chrono::milliseconds(1000));
    }

private:
    std::chrono::steady_clock::time_point deadline_;
    std::chrono::milliseconds backoff_{50};
};

class postgres_store final : public store {
public:
    postgres_store(const postgres_store_params& p, std::string conninfo,
                   std::vector<std::string> redact)
        : params_(p),
          sql_(p.schema),
          pool_(pg::pool_params{std::move(conninfo), std::move(redact), p.pool_size,
                                p.connect_timeout}) {}

    // A process started while the server restarts opens once it is back,
    // as any operation waits for a lost connection.
    void open() {
        reconnect_wait wait(params_.reconnect_timeout);
        for (;;) {
            try {
                // Through the pool, so the first query reuses the
                // connection: a short-lived process (the `mailers` tool)
                // connects once, not twice.
                auto c = pool_.acquire();
                pg::migrate(*c, params_.schema, params_.mode);
                return;
            } catch (const pg::error& e) {
                if (e.kind() != pg::failure_kind::connection_lost || wait.expired())
                    fail(errc::store_error,
                         fmt::format("postgres store: cannot open: {}", e.what()));
            }
            wait.pause();
        }
    }

    store_snapshot load(std::string_view ws, time_point since) override {
        return run("load", true, [&](pg::connection& c, attempt&) {
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
            auto io = p.add(sql_.load_objects, pg::params{}.add(ws));
            auto is = p.add(sql_.load_suppressions, pg::params{}.add(ws));
            auto isd = p.add(sql_.load_sends, pg::params{}.add(ws).add(micros(since)));
            auto iseq = p.add(sql_.change_seq, pg::params{}.add(ws));
            p.add_simple("COMMIT");
            auto r = p.finish();
            store_snapshot snap;
            for (int i = 0; i < r[io].rows(); ++i)
                snap.objects.push_back({r[io].str(i, 0), r[io].str(i, 1), r[io].str(i, 2)});
            for (int i = 0; i < r[is].rows(); ++i)
                snap.suppressions.push_back(read_suppression(r[is], i));
            for (int i = 0; i < r[isd].rows(); ++i)
                snap.recent_sends.push_back(read_send(r[isd], i));
            snap.change_seq = r[iseq].u64(0, 0);
            return snap;
        });
    }

    change_set changes_since(std::string_view ws, std::uint64_t after) override {
        // Every change seq is above 0, so skipping 0 skips nothing.
        return changes_since_skipping(ws, after, 0);
    }

    commit_result commit(std::string_view ws, std::span<const store_op> ops) override {
        if (ops.empty()) return {};
        for (auto& op : ops) {
            if (auto* u = std::get_if<store_ops::update_send>(&op);
                u && u->row.state == send_state::reserved)
                fail(errc::store_error,
                     "postgres store: update_send cannot move a send to 'reserved'; "
                     "a further attempt is a reserve_send");
        }
        return run("commit", false,
                   [&](pg::connection& c, attempt& a) { return commit_once(c, a, ws, ops); });
    }

    std::uint64_t attach(std::string_view ws, const member_info& info,
                         std::chrono::milliseconds lease) override {
        return run("attach", false, [&](pg::connection& c, attempt& a) {
            // BEGIN and the insert first, so a connection that died while idle
            // is found before anything could commit.
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN");
            auto i = p.add(sql_.attach,
                           pg::params{}.add(ws).add(info.host).add(info.pid).add(info.name).add(
                               static_cast<std::int64_t>(lease.count())));
            auto r = p.finish();
            a.commit_sent = true;
            c.exec("COMMIT");
            return r[i].u64(0, 0);
        });
    }

    bool renew(std::string_view ws, std::uint64_t member, std::chrono::milliseconds lease,
               std::uint64_t acked_seq) override {
        // Idempotent: running it twice extends the same lease.
        const bool renewed = run("renew", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.renew, pg::params{}
                                           .add(ws)
                                           .add(member)
                                           .add(static_cast<std::int64_t>(lease.count()))
                                           .add(acked_seq));
            return r.affected() == 1;
        });
        seed_statistics();
        return renewed;
    }

    void detach(std::string_view ws, std::uint64_t member) override {
        run("detach", true, [&](pg::connection& c, attempt&) {
            // The engine's clock is not at hand; the server's stamps the sends.
            auto now = c.run(sql_.server_now, pg::params{}).i64(0, 0);
            pg::int_array dead;
            dead.push(static_cast<std::int64_t>(member));
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN");
            p.add(sql_.end_lease, pg::params{}.add(ws).add(member));
            p.add(sql_.recover,
                  pg::params{}.add(ws).add(dead.str()).add(now).add("member detached"));
            p.add(sql_.requeue,
                  pg::params{}.add(ws).add("returned to the queue: member detached").add(now));
            p.add(sql_.wh_requeue,
                  pg::params{}.add(ws).add("returned to the outbox: member detached").add(now));
            p.add_simple("COMMIT");
            p.finish();
            return 0;
        });
    }

    std::vector<member_record> members(std::string_view ws) override {
        return run("members", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.members, pg::params{}.add(ws));
            std::vector<member_record> out;
            for (int i = 0; i < r.rows(); ++i) {
                member_record m;
                m.id = r.u64(i, 0);
                m.info.host = r.str(i, 1);
                m.info.pid = r.i64(i, 2);
                m.info.name = r.str(i, 3);
                m.acked_seq = r.u64(i, 4);
                m.live = r.boolean(i, 5);
                out.push_back(std::move(m));
            }
            return out;
        });
    }

    std::size_t recover(std::string_view ws, std::span<const std::uint64_t> dead, time_point now,
                        std::string_view detail) override {
        // Idempotent: a second run finds the sends already `unknown`. The
        // count is that of the run that got through.
        return run("recover", true, [&](pg::connection& c, attempt&) {
            pg::int_array ids;
            for (auto d : dead) ids.push(static_cast<std::int64_t>(d));
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN ISOLATION LEVEL READ COMMITTED");
            const auto i = p.add(sql_.recover,
                                 pg::params{}.add(ws).add(ids.str()).add(micros(now)).add(detail));
            p.add(sql_.requeue, pg::params{}
                                    .add(ws)
                                    .add(fmt::format("returned to the queue: {}", detail))
                                    .add(micros(now)));
            p.add(sql_.wh_requeue, pg::params{}
                                       .add(ws)
                                       .add(fmt::format("returned to the outbox: {}", detail))
                                       .add(micros(now)));
            p.add_simple("COMMIT");
            auto r = p.finish();
            return static_cast<std::size_t>(r[i].affected());
        });
    }

    // --- bulk suppression paths ---------------------------------------------
    // Entries travel by COPY, in both directions: a row costs a few bytes
    // of framing instead of a parameter array element or a result cell, and
    // neither side holds more than a buffer of them.

    suppression_import_result import_suppressions(std::string_view ws,
                                                  const suppression_import& import) override {
        // Not run(): the entries can be read only once, so an import that
        // failed part-way cannot be run again here; the caller decides.
        reconnect_wait wait(params_.reconnect_timeout);
        std::optional<pg::pool::lease> lease;
        for (;;) {
            try {
                lease.emplace(pool_.acquire());
                break;
            } catch (const pg::error& e) {
                if (e.kind() != pg::failure_kind::connection_lost || wait.expired())
                    fail(errc::store_error,
                         fmt::format("postgres store: import_suppressions: cannot connect: {}",
                                     e.what()));
                wait.pause();
            }
        }
        attempt a;
        try {
            return import_once(**lease, a, ws, import);
        } catch (const pg::error& e) {
            if (e.kind() == pg::failure_kind::connection_lost || (*lease)->broken()) {
                lease->discard();
                if (a.commit_sent)
                    fail(errc::commit_outcome_unknown,
                         fmt::format("postgres store: import_suppressions: the connection was "
                                     "lost while committing; the outcome is unknown ({})",
                                     e.what()));
            } else {
                rollback(**lease);
            }
            fail(errc::store_error,
                 fmt::format("postgres store: import_suppressions: {}; nothing was imported",
                             e.what()));
        } catch (...) {
            if ((*lease)->broken())
                lease->discard();
            else
                rollback(**lease);
            throw;
        }
    }

    change_set changes_since_skipping(std::string_view ws, std::uint64_t after,
                                      std::uint64_t skip_seq) override {
        return run("changes_since", true, [&](pg::connection& c, attempt&) {
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
            auto io = p.add(sql_.changed_objects, pg::params{}.add(ws).add(after));
            auto is =
                p.add(sql_.changed_suppressions, pg::params{}.add(ws).add(after).add(skip_seq));
            auto iseq = p.add(sql_.change_seq, pg::params{}.add(ws));
            p.add_simple("COMMIT");
            auto r = p.finish();
            change_set cs;
            for (int i = 0; i < r[io].rows(); ++i) {
                if (r[io].is_null(i, 2))
                    cs.deleted_objects.emplace_back(r[io].str(i, 0), r[io].str(i, 1));
                else
                    cs.objects.push_back({r[io].str(i, 0), r[io].str(i, 1), r[io].str(i, 2)});
            }
            for (int i = 0; i < r[is].rows(); ++i) {
                if (r[is].is_null(i, 2))
                    cs.deleted_suppressions.emplace_back(kind_from(r[is].i64(i, 0)),
                                                         r[is].str(i, 1));
                else
                    cs.suppressions.push_back(read_suppression(r[is], i));
            }
            cs.seq = r[iseq].u64(0, 0);
            return cs;
        });
    }

    store_snapshot load_keys(
        std::string_view ws, time_point since,
        const std::function<void(suppression_kind, std::string_view)>& key) override {
        return run("load", true, [&](pg::connection& c, attempt&) {
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY");
            auto io = p.add(sql_.load_objects, pg::params{}.add(ws));
            auto isd = p.add(sql_.load_sends, pg::params{}.add(ws).add(micros(since)));
            auto iseq = p.add(sql_.change_seq, pg::params{}.add(ws));
            auto r = p.finish();
            store_snapshot snap;
            for (int i = 0; i < r[io].rows(); ++i)
                snap.objects.push_back({r[io].str(i, 0), r[io].str(i, 1), r[io].str(i, 2)});
            for (int i = 0; i < r[isd].rows(); ++i)
                snap.recent_sends.push_back(read_send(r[isd], i));
            snap.change_seq = r[iseq].u64(0, 0);
            // Same transaction, so the same snapshot as the reads above.
            copy_keys_out(c, ws, key);
            c.exec("COMMIT");
            return snap;
        });
    }

private:
    [[noreturn]] static void copy_failed(pg::connection& c, std::string_view what) {
        std::string msg = PQerrorMessage(c.raw());
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        throw pg::error(c.broken() ? pg::failure_kind::connection_lost : pg::failure_kind::other,
                        fmt::format("{}: {}", what, msg));
    }

    // Reads the result that ends a COPY; throws its error, if any.
    static void finish_copy(pg::connection& c, std::string_view what) {
        bool failed = false;
        std::string msg;
        while (PGresult* r = PQgetResult(c.raw())) {
            if (PQresultStatus(r) != PGRES_COMMAND_OK && !failed) {
                failed = true;
                msg = PQresultErrorMessage(r);
            }
            PQclear(r);
        }
        if (!failed) return;
        while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
        throw pg::error(c.broken() ? pg::failure_kind::connection_lost : pg::failure_kind::other,
                        fmt::format("{}: {}", what, msg));
    }

    // COPY's binary format (PostgreSQL's "COPY" reference): a signature,
    // no flags, no header extension; then per row a field count and per
    // field its length and bytes, every integer in network byte order.
    static constexpr std::string_view copy_binary_header{"PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0",
                                                         19};

    template <std::integral T>
    static void put_be(std::string& out, T v) {
        for (int shift = 8 * (static_cast<int>(sizeof(T)) - 1); shift >= 0; shift -= 8)
            out += static_cast<char>((v >> shift) & 0xff);
    }

    template <std::integral T>
    static void put_field(std::string& out, T v) {
        put_be(out, static_cast<std::uint32_t>(sizeof(T)));
        put_be(out, v);
    }

    static void put_field(std::string& out, std::string_view v) {
        put_be(out, static_cast<std::uint32_t>(v.size()));
        out += v;
    }

    static void copy_unescape(std::string& out, std::string_view v) {
        out.clear();
        for (std::size_t i = 0; i < v.size(); ++i) {
            if (v[i] != '\\' || i + 1 == v.size()) {
                out += v[i];
                continue;
            }
            const char e = v[++i];
            auto digits = [&](int base, std::size_t max) {
                int n = 0;
                std::size_t k = 0;
                for (; k < max && i + k < v.size(); ++k) {
                    const char d = v[i + k];
                    int x = -1;
                    if (d >= '0' && d <= '7') x = d - '0';
                    if (base == 16 && d >= '8' && d <= '9') x = d - '0';
                    if (base == 16 && d >= 'a' && d <= 'f') x = d - 'a' + 10;
                    if (base == 16 && d >= 'A' && d <= 'F') x = d - 'A' + 10;
                    if (x < 0) break;
                    n = n * base + x;
                }
                i += k - 1;
                out += static_cast<char>(n);
            };
            static constexpr std::string_view letters = "bfnrtv", controls = "\b\f\n\r\t\v";
            if (const auto k = letters.find(e); k != std::string_view::npos) {
                out += controls[k];
                continue;
            }
            switch (e) {
                case 'x':
                    ++i;
                    digits(16, 2);
                    break;
                default:
                    if (e >= '0' && e <= '7')
                        digits(8, 3);
                    else
                        out += e;
            }
        }
    }

    void copy_keys_out(pg::connection& c, std::string_view ws,
                       const std::function<void(suppression_kind, std::string_view)>& key) {
        std::unique_ptr<char, decltype(&PQfreemem)> lit(
            PQescapeLiteral(c.raw(), ws.data(), ws.size()), &PQfreemem);
        if (!lit) copy_failed(c, "load: COPY");
        const std::string sql = fmt::format(
            "COPY (SELECT kind, value FROM {}.suppressions WHERE workspace = {} AND reason IS NOT "
            "NULL) TO STDOUT",
            pg::quote_ident(params_.schema), lit.get());
        {
            pg::result r{PQexec(c.raw(), sql.c_str())};
            if (!r.get() || PQresultStatus(r.get()) != PGRES_COPY_OUT)
                copy_failed(c, "load: COPY");
        }
        std::exception_ptr err;
        std::string value;
        for (;;) {
            char* buf = nullptr;
            const int n = PQgetCopyData(c.raw(), &buf, 0);
            if (n == -1) break;
            if (n < 0) copy_failed(c, "load: COPY");
            std::unique_ptr<char, decltype(&PQfreemem)> row(buf, &PQfreemem);
            if (err) continue;  // drained, so the connection stays usable
            std::string_view line(buf, static_cast<std::size_t>(n));
            if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
            const auto tab = line.find('\t');
            try {
                if (tab == std::string_view::npos)
                    fail(errc::store_error, "postgres store: load: malformed COPY row");
                std::int64_t k = 0;
                for (char d : line.substr(0, tab)) k = k * 10 + (d - '0');
                const auto rest = line.substr(tab + 1);
                if (rest.find('\\') == std::string_view::npos) {
                    key(kind_from(k), rest);
                } else {
                    copy_unescape(value, rest);
                    key(kind_from(k), value);
                }
            } catch (...) {
                err = std::current_exception();
            }
        }
        finish_copy(c, "load: COPY");
        if (err) std::rethrow_exception(err);
    }

    // COPY streams the rows of one statement, so of one snapshot, in any
    // number without holding them here; the server sorts them (spilling to
    // temporary files past work_mem).
    void copy_versions_out(pg::connection& c, std::string_view ws,
                           const std::function<void(const suppression_version&)>& fn) {
        std::unique_ptr<char, decltype(&PQfreemem)> lit(
            PQescapeLiteral(c.raw(), ws.data(), ws.size()), &PQfreemem);
        if (!lit) copy_failed(c, "for_each_suppression_version: COPY");
        const std::string sql = fmt::format(
            "COPY (SELECT kind, value, reason, source, created_at, seq, by_seq FROM ("
            "SELECT kind, value, reason, source, created_at, seq, by_seq, 0 AS cur, id "
            "FROM {0}.suppression_superseded WHERE workspace = {1} UNION ALL "
            "SELECT kind, value, reason, source, created_at, seq, 0, 1, 0 "
            "FROM {0}.suppressions WHERE workspace = {1} AND reason IS NOT NULL) v "
            "ORDER BY kind, value, cur, id) TO STDOUT",
            pg::quote_ident(params_.schema), lit.get());
        {
            pg::result r{PQexec(c.raw(), sql.c_str())};
            if (!r.get() || PQresultStatus(r.get()) != PGRES_COPY_OUT)
                copy_failed(c, "for_each_suppression_version: COPY");
        }
        std::exception_ptr err;
        std::string field;
        auto number = [](std::string_view d) {
            std::int64_t n = 0;
            bool neg = !d.empty() && d.front() == '-';
            if (neg) d.remove_prefix(1);
            for (char ch : d) n = n * 10 + (ch - '0');
            return neg ? -n : n;
        };
        for (;;) {
            char* buf = nullptr;
            const int n = PQgetCopyData(c.raw(), &buf, 0);
            if (n == -1) break;
            if (n < 0) copy_failed(c, "for_each_suppression_version: COPY");
            std::unique_ptr<char, decltype(&PQfreemem)> row(buf, &PQfreemem);
            if (err) continue;  // drained, so the connection stays usable
            std::string_view line(buf, static_cast<std::size_t>(n));
            if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
            try {
                std::string_view cols[7];
                std::size_t k = 0;
                for (; k < 7; ++k) {
                    const auto tab = line.find('\t');
                    cols[k] = line.substr(0, tab);
                    if (tab == std::string_view::npos) break;
                    line.remove_prefix(tab + 1);
                }
                if (k != 6)
                    fail(errc::store_error,
                         "postgres store: for_each_suppression_version: malformed COPY row");
                suppression_version v;
                v.entry.kind = kind_from(number(cols[0]));
                copy_unescape(v.entry.value, cols[1]);
                v.entry.reason = reason_from(number(cols[2]));
                copy_unescape(v.entry.source, cols[3]);
                v.entry.created_at = from_micros(number(cols[4]));
                v.seq = static_cast<std::uint64_t>(number(cols[5]));
                v.by_seq = static_cast<std::uint64_t>(number(cols[6]));
                fn(v);
            } catch (...) {
                err = std::current_exception();
            }
        }
        finish_copy(c, "for_each_suppression_version: COPY");
        if (err) std::rethrow_exception(err);
    }

    suppression_import_result import_once(pg::connection& c, attempt& a, std::string_view ws,
                                          const suppression_import& import) {
        const std::string s = pg::quote_ident(params_.schema);
        const std::string ws_s{ws};
        // The staging table lives for the transaction only. `ord` keeps the
        // file's order, so that of two entries for one key the later wins.
        // The merge sorts every entry once, with more work_mem than the
        // server's default (for this transaction only): a million entries
        // sort in memory, larger imports spill to fewer temporary files.
        c.exec(
            "BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL work_mem = '256MB'; "
            "CREATE TEMP TABLE mailers_import (kind int2 NOT NULL, value text COLLATE \"C\" NOT "
            "NULL, reason int2 NOT NULL, source text NOT NULL, created_at int8 NOT NULL, ord int8 "
            "NOT NULL) ON COMMIT DROP");
        {
            pg::result r{PQexec(c.raw(),
                                "COPY pg_temp.mailers_import (kind, value, reason, source, "
                                "created_at, ord) FROM STDIN (FORMAT binary)")};
            if (!r.get() || PQresultStatus(r.get()) != PGRES_COPY_IN)
                copy_failed(c, "COPY");
        }
        suppression_import_result result;
        // COPY's binary format: the server reads each field as it is sent,
        // where the text format makes both sides print and parse every
        // number and escape every string.
        std::string buf(copy_binary_header);
        auto send = [&] {
            if (PQputCopyData(c.raw(), buf.data(), static_cast<int>(buf.size())) != 1)
                copy_failed(c, "COPY");
            buf.clear();
        };
        try {
            import.entries([&](std::span<const suppression_entry> chunk) {
                for (const auto& e : chunk) {
                    put_be(buf, std::uint16_t{6});
                    put_field(buf, static_cast<std::uint16_t>(kind_code(e.kind)));
                    put_field(buf, e.value);
                    put_field(buf, static_cast<std::uint16_t>(reason_code(e.reason)));
                    put_field(buf, e.source);
                    put_field(buf, static_cast<std::uint64_t>(micros(e.created_at)));
                    put_field(buf, result.entries);
                    ++result.entries;
                    if (buf.size() >= (1 << 20)) send();
                }
            });
            put_be(buf, std::uint16_t{0xffff});  // the trailer: a field count of -1
            send();
        } catch (...) {
            // Ends the COPY with an error, so the transaction can roll back.
            if (!c.broken() && PQputCopyEnd(c.raw(), "import abandoned") == 1) {
                while (PGresult* r = PQgetResult(c.raw())) PQclear(r);
            }
            throw;
        }
        if (PQputCopyEnd(c.raw(), nullptr) != 1) copy_failed(c, "COPY");
        finish_copy(c, "COPY");

        // The workspace row last: its lock orders this change among the
        // others, and is held only while the rows are merged. Whether the
        // workspace holds any key yet is read after it, so no writer can
        // add one meanwhile.
        pg::connection::pipeline p(c);
        p.add(sql_.ensure_ws, pg::params{}.add(ws_s));
        const auto i_ws =
            p.add(sql_.lock_ws, pg::params{}.add(ws_s).add(result.entries > 0 ? 1 : 0));
        const auto i_holds = p.add(
            pg::statement{"m_import_holds",
                          fmt::format("SELECT EXISTS (SELECT 1 FROM {}.suppressions WHERE "
                                      "workspace = $1)",
                                      s)},
            pg::params{}.add(ws_s));
        auto r = p.finish();
        const std::uint64_t change_seq = r[i_ws].u64(0, 0);
        const std::uint64_t audit_seq = r[i_ws].u64(0, 1);
        const std::string audit_head = r[i_ws].str(0, 2);
        const bool holds_keys = r[i_holds].boolean(0, 0);
        if (result.entries > 0) {
            // Each step takes the workspace ($1) and the import's change seq ($2).
            const auto run_step = [&](const char* name, std::string sql) {
                return c.run(pg::statement{name, std::move(sql)},
                             pg::params{}.add(ws_s).add(change_seq));
            };
            // One sort: the last entry given for each key, in key order,
            // in a temporary table (no WAL) the statements below share.
            auto last = c.query(
                "CREATE TEMP TABLE mailers_import_last ON COMMIT DROP AS SELECT DISTINCT ON "
                "(kind, value) kind, value, reason, source, created_at FROM "
                "pg_temp.mailers_import ORDER BY kind, value, ord DESC");
            const std::uint64_t distinct = std::strtoull(PQcmdTuples(last.get()), nullptr, 10);
            if (!holds_keys) {
                // A workspace without keys (its first import) has nothing
                // to keep or update, and every key is new: one insert, in
                // key order, so that each row goes to the primary key's
                // last leaf.
                run_step("m_import_first",
                         fmt::format("INSERT INTO {}.suppressions (workspace, kind, value, "
                                     "reason, source, created_at, seq) SELECT $1, kind, value, "
                                     "reason, source, created_at, $2::int8 FROM "
                                     "pg_temp.mailers_import_last",
                                     s));
            } else {
                c.exec("ANALYZE pg_temp.mailers_import_last");
                // What the import replaces is kept first: the rows it writes
                // over (the entries of the file that later ones displace are
                // kept below).
                run_step("m_import_keep",
                    fmt::format("INSERT INTO {0}.suppression_superseded (workspace, kind, value, "
                                "reason, source, created_at, seq, by_seq) SELECT s.workspace, "
                                "s.kind, s.value, s.reason, s.source, s.created_at, s.seq, "
                                "$2::int8 FROM {0}.suppressions s JOIN pg_temp.mailers_import_last "
                                "i ON i.kind = s.kind AND i.value = s.value WHERE s.workspace = $1 "
                                "AND s.reason IS NOT NULL ORDER BY s.kind, s.value",
                                s));
                // Keys the workspace holds (tombstones too: rows without a
                // reason) are updated, the others inserted. No other writer
                // can add a key of this workspace meanwhile (the workspace
                // row is locked), so plain inserts are safe, and cheaper
                // than an upsert's speculative insertion per row.
                run_step("m_import_update",
                    fmt::format("UPDATE {}.suppressions s SET reason = i.reason, source = "
                                "i.source, created_at = i.created_at, seq = $2::int8 FROM "
                                "pg_temp.mailers_import_last i WHERE s.workspace = $1 AND s.kind "
                                "= i.kind AND s.value = i.value",
                                s));
                run_step("m_import_insert",
                    fmt::format("INSERT INTO {0}.suppressions (workspace, kind, value, reason, "
                                "source, created_at, seq) SELECT $1, i.kind, i.value, i.reason, "
                                "i.source, i.created_at, $2::int8 FROM pg_temp.mailers_import_last "
                                "i WHERE NOT EXISTS (SELECT 1 FROM {0}.suppressions s WHERE "
                                "s.workspace = $1 AND s.kind = i.kind AND s.value = i.value)",
                                s));
            }
            // Every entry a later one for the same key displaces, given and
            // audited though never stored; the window query only when the
            // sort found such entries.
            if (distinct != result.entries) {
                run_step("m_import_keep_duplicates",
                    fmt::format("INSERT INTO {}.suppression_superseded (workspace, kind, value, "
                                "reason, source, created_at, seq, by_seq) SELECT $1, kind, value, "
                                "reason, source, created_at, $2::int8, $2::int8 FROM (SELECT *, "
                                "row_number() OVER (PARTITION BY kind, value ORDER BY ord DESC) "
                                "AS later FROM pg_temp.mailers_import) d WHERE later > 1 "
                                "ORDER BY kind, value, ord",
                                s));
            }
            result.change_seq = change_seq;
        }
        result.audit_seq = append_audit_record(c, ws_s, import.audit(result.entries),
                                               result.change_seq, audit_seq, audit_head);
        commit_or_fail(c, a, "import_suppressions");
        return result;
    }

    // Appends the record of a bulk change after the head the caller read
    // under the workspace lock; returns its seq.
    std::uint64_t append_audit_record(pg::connection& c, const std::string& ws,
                                      const store_ops::append_audit& op, std::uint64_t change_seq,
                                      std::uint64_t head_seq, const std::string& head_hash) {
        audit_record rec = op.record;
        rec.change_seq = change_seq;
        rec.seq = head_seq + 1;
        rec.prev_hash = head_hash;
        rec.hash = audit_hash(rec, op.key);
        pg::connection::pipeline p(c);
        add_audit_records(p, ws, std::span<const audit_record>(&rec, 1));
        p.finish();
        return rec.seq;
    }

    // The parameters of write_suppressions and write_superseded: the
    // workspace, the entries as arrays, and the change seq.
    static pg::params entry_params(const std::string& ws,
                                   std::span<const suppression_entry> entries,
                                   std::uint64_t change_seq) {
        pg::int_array sk, sr, sc;
        pg::text_array sv, ss;
        for (const auto& e : entries) {
            sk.push(kind_code(e.kind));
            sv.push(e.value);
            sr.push(reason_code(e.reason));
            ss.push(e.source);
            sc.push(micros(e.created_at));
        }
        return pg::params{}
            .add(ws)
            .add(sk.str())
            .add(sv.str())
            .add(sr.str())
            .add(ss.str())
            .add(sc.str())
            .add(change_seq);
    }

    static void commit_or_fail(pg::connection& c, attempt& a, std::string_view what) {
        a.commit_sent = true;
        auto done = c.query("COMMIT");
        // A COMMIT in an aborted transaction answers ROLLBACK without an error.
        if (std::string_view{PQcmdStatus(done.get())} != "COMMIT")
            fail(errc::store_error,
                 fmt::format("postgres store: {}: the server rolled the transaction back", what));
    }

    // --- erasure of a person ---------------------------------------------

public:
    person_erasure_result erase_person(std::string_view ws,
                                       const person_erasure& erasure) override {
        return run("erase_person", false, [&](pg::connection& c, attempt& a) {
            return erase_once(c, a, ws, erasure);
        });
    }

    std::size_t purge_sends(std::string_view ws, time_point before) override {
        const std::string s = pg::quote_ident(params_.schema);
        return run("purge_sends", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(pg::statement{"m_purge_sends",
                                         fmt::format("DELETE FROM {}.sends WHERE workspace = $1 "
                                                     "AND reserved_at < $2 AND state <> 0",
                                                     s)},
                           pg::params{}.add(ws).add(micros(before)));
            return static_cast<std::size_t>(r.affected());
        });
    }

private:
    // Ids of the workspace's rows in `table` whose `text` (an expression)
    // holds an '@' and mentions the person.
    std::vector<std::int64_t> mentioning(pg::connection& c, const std::string& ws,
                                         const char* name, const char* table, const char* text,
                                         const person_erasure& erasure) {
        const std::string s = pg::quote_ident(params_.schema);
        auto r = c.run(pg::statement{name, fmt::format("SELECT id, {1} FROM {0}.{2} WHERE "
                                                       "workspace = $1 AND strpos({1}, '@') > 0",
                                                       s, text, table)},
                       pg::params{}.add(ws));
        std::vector<std::int64_t> ids;
        for (int i = 0; i < r.rows(); ++i)
            if (erasure.mentions(r.text(i, 1))) ids.push_back(r.i64(i, 0));
        return ids;
    }

    person_erasure_result erase_once(pg::connection& c, attempt& a, std::string_view ws,
                                     const person_erasure& erasure) {
        const std::string s = pg::quote_ident(params_.schema);
        const std::string ws_s{ws};
        person_erasure_result result;
        erasure_counts& n = result.counts;
        pg::text_array keys;
        for (const auto& k : erasure.keys) keys.push(k);
        const auto ids_param = [](const std::vector<std::int64_t>& ids) {
            pg::int_array arr;
            for (auto id : ids) arr.push(id);
            return arr.str();
        };
        const auto merge = [](std::vector<std::int64_t> a, const std::vector<std::int64_t>& b) {
            a.insert(a.end(), b.begin(), b.end());
            std::sort(a.begin(), a.end());
            a.erase(std::unique(a.begin(), a.end()), a.end());
            return a;
        };
        c.exec("BEGIN ISOLATION LEVEL READ COMMITTED");
        // The ledger: rows stay (their ids and cap uses count), the person goes.
        {
            auto r = c.run(pg::statement{"m_erase_sends_by_recipient",
                                         fmt::format("SELECT id FROM {}.sends WHERE workspace = "
                                                     "$1 AND recipient = ANY($2::text[])",
                                                     s)},
                           pg::params{}.add(ws_s).add(keys.str()));
            std::vector<std::int64_t> ids;
            for (int i = 0; i < r.rows(); ++i) ids.push_back(r.i64(i, 0));
            ids = merge(std::move(ids), mentioning(c, ws_s, "m_erase_sends_detail", "sends",
                                                   "detail", erasure));
            ids = merge(std::move(ids), mentioning(c, ws_s, "m_erase_sends_key", "sends",
                                                   "idempotency_key", erasure));
            c.run(pg::statement{"m_erase_scrub_sends",
                                fmt::format("UPDATE {}.sends SET recipient = '', detail = '', "
                                            "idempotency_key = '' WHERE workspace = $1 AND id = "
                                            "ANY($2::int8[])",
                                            s)},
                  pg::params{}.add(ws_s).add(ids_param(ids)));
            n.sends = ids.size();
        }
        // The queue: the request goes; a waiting item is cancelled with it.
        {
            std::vector<std::int64_t> by_request;
            {
                auto r = c.run(pg::statement{"m_erase_queue_request",
                                             fmt::format("SELECT id, encode(request, 'hex') FROM "
                                                         "{}.queue WHERE workspace = $1",
                                                         s)},
                               pg::params{}.add(ws_s));
                for (int i = 0; i < r.rows(); ++i)
                    if (erasure.request_mentions(from_hex(r.text(i, 1))))
                        by_request.push_back(r.i64(i, 0));
            }
            auto ids = merge(std::move(by_request),
                             mentioning(c, ws_s, "m_erase_queue_key", "queue", "idempotency_key",
                                        erasure));
            auto r = c.run(pg::statement{"m_erase_scrub_queue",
                                         fmt::format("WITH old AS (SELECT id, state FROM {0}.queue "
                                                     "WHERE workspace = $1 AND id = "
                                                     "ANY($2::int8[]) FOR UPDATE) "
                                                     "UPDATE {0}.queue q SET request = ''::bytea, "
                                                     "idempotency_key = '', detail = 'erased', "
                                                     "state = CASE q.state WHEN 0 THEN 3 ELSE "
                                                     "q.state END, updated_at = $3 FROM old "
                                                     "WHERE q.workspace = $1 AND q.id = old.id "
                                                     "RETURNING old.state",
                                                     s)},
                           pg::params{}.add(ws_s).add(ids_param(ids)).add(micros(erasure.at)));
            for (int i = 0; i < r.rows(); ++i) n.queue_cancelled += r.i64(i, 0) == 0;
            n.queued = ids.size();
        }
        // Enrollments of the address, and which messages they sent.
        {
            auto r = c.run(pg::statement{"m_erase_enrollments",
                                         fmt::format("WITH e AS (DELETE FROM {0}.enrollments "
                                                     "WHERE workspace = $1 AND address = "
                                                     "ANY($2::text[]) RETURNING id), m AS (DELETE "
                                                     "FROM {0}.enrollment_messages WHERE workspace "
                                                     "= $1 AND enrollment IN (SELECT id FROM e)) "
                                                     "SELECT count(*) FROM e",
                                                     s)},
                           pg::params{}.add(ws_s).add(keys.str()));
            n.enrollments = r.u64(0, 0);
        }
        {
            auto ids = mentioning(c, ws_s, "m_erase_outbox", "webhook_outbox", "payload", erasure);
            c.run(pg::statement{"m_erase_delete_outbox",
                                fmt::format("DELETE FROM {}.webhook_outbox WHERE workspace = $1 "
                                            "AND id = ANY($2::int8[])",
                                            s)},
                  pg::params{}.add(ws_s).add(ids_param(ids)));
            n.webhook_deliveries = ids.size();
        }
        {
            auto r = c.run(pg::statement{"m_erase_keys_read",
                                         fmt::format("SELECT namespace, key FROM {}.recorded_keys "
                                                     "WHERE workspace = $1 AND strpos(key, '@') > 0",
                                                     s)},
                           pg::params{}.add(ws_s));
            pg::text_array ns, ks;
            for (int i = 0; i < r.rows(); ++i)
                if (erasure.mentions(r.text(i, 1))) {
                    ns.push(r.text(i, 0));
                    ks.push(r.text(i, 1));
                    ++n.recorded_keys;
                }
            if (n.recorded_keys != 0)
                c.run(pg::statement{"m_erase_keys_delete",
                                    fmt::format("DELETE FROM {}.recorded_keys k USING "
                                                "unnest($2::text[], $3::text[]) AS d(ns, key) "
                                                "WHERE k.workspace = $1 AND k.namespace = d.ns "
                                                "AND k.key = d.key",
                                                s)},
                      pg::params{}.add(ws_s).add(ns.str()).add(ks.str()));
        }
        {
            auto r = c.run(pg::statement{"m_erase_soft_bounces",
                                         fmt::format("DELETE FROM {}.soft_bounces WHERE workspace "
                                                     "= $1 AND address = ANY($2::text[])",
                                                     s)},
                           pg::params{}.add(ws_s).add(keys.str()));
            n.soft_bounces = r.affected();
        }
        // The workspace row last, as a commit takes it: its lock orders the
        // suppression change among the others.
        pg::connection::pipeline p(c);
        p.add(sql_.ensure_ws, pg::params{}.add(ws_s));
        const auto i_ws =
            p.add(sql_.lock_ws, pg::params{}.add(ws_s).add(erasure.entries.empty() ? 0 : 1));
        auto r = p.finish();
        const std::uint64_t change_seq = r[i_ws].u64(0, 0);
        const std::uint64_t audit_seq = r[i_ws].u64(0, 1);
        const std::string audit_head = r[i_ws].str(0, 2);
        // Every version of the address's entries, tombstones (rows without
        // a reason) included: no history of them is kept.
        std::vector<erased_row> removed;
        {
            auto d = c.run(pg::statement{"m_erase_suppressions",
                                         fmt::format("WITH a AS (DELETE FROM {0}.suppressions "
                                                     "WHERE workspace = $1 AND kind = 0 AND value "
                                                     "= ANY($2::text[]) RETURNING seq, reason), "
                                                     "b AS (DELETE FROM {0}.suppression_superseded "
                                                     "WHERE workspace = $1 AND kind = 0 AND value "
                                                     "= ANY($2::text[]) RETURNING seq, by_seq) "
                                                     "SELECT seq, 0 FROM a WHERE reason IS NOT "
                                                     "NULL UNION ALL SELECT seq, by_seq FROM b",
                                                     s)},
                           pg::params{}.add(ws_s).add(keys.str()));
            for (int i = 0; i < d.rows(); ++i) removed.push_back({d.u64(i, 0), d.u64(i, 1)});
            n.suppression_rows = removed.size();
        }
        if (!erasure.entries.empty()) {
            c.run(sql_.write_suppressions, entry_params(ws_s, erasure.entries, change_seq));
            result.change_seq = change_seq;
        }
        if (erasure.audit)
            result.audit_seq = append_audit_record(c, ws_s, erasure.audit(n, removed),
                                                   result.change_seq, audit_seq, audit_head);
        commit_or_fail(c, a, "erase_person");
        return result;
    }

    // --- end erasure -------------------------------------------------------

    // --- audit retention -------------------------------------------------

public:
    audit_purge_result purge_audit(std::string_view ws, const audit_purge& purge) override {
        return run("purge_audit", false, [&](pg::connection& c, attempt& a) {
            return purge_audit_once(c, a, ws, purge);
        });
    }

    audit_anchor find_audit_anchor(std::string_view ws) override {
        return run("find_audit_anchor", true,
                   [&](pg::connection& c, attempt&) { return read_anchor(c, std::string(ws)); });
    }

private:
    audit_anchor read_anchor(pg::connection& c, const std::string& ws) {
        const std::string s = pg::quote_ident(params_.schema);
        auto r = c.run(pg::statement{"m_audit_anchor",
                                     fmt::format("SELECT audit_anchor_seq, audit_anchor_hash, "
                                                 "audit_anchor_at, audit_anchor_keyed "
                                                 "FROM {}.workspaces WHERE workspace = $1",
                                                 s)},
                       pg::params{}.add(ws));
        audit_anchor out;
        if (r.rows() == 0) return out;
        out.seq = r.u64(0, 0);
        out.hash = r.str(0, 1);
        out.at = from_micros(r.i64(0, 2));
        out.keyed = r.text(0, 3) == "t";
        return out;
    }

    // Ordered with every append by the workspace row's lock, which a
    // commit takes before it reads the audit head.
    audit_purge_result purge_audit_once(pg::connection& c, attempt& a, std::string_view ws,
                                        const audit_purge& purge) {
        const std::string s = pg::quote_ident(params_.schema);
        const std::string ws_s{ws};
        audit_purge_result result;
        c.exec("BEGIN ISOLATION LEVEL READ COMMITTED");
        auto head = c.run(sql_.lock_ws, pg::params{}.add(ws_s).add(0));
        if (head.rows() == 0) {
            c.exec("ROLLBACK");
            return result;
        }
        const std::uint64_t audit_seq = head.u64(0, 1);
        const std::string audit_head = head.str(0, 2);
        result.anchor = read_anchor(c, ws_s);
        if (audit_seq == 0) {
            c.exec("ROLLBACK");
            return result;
        }
        // The first record too new to go, bounded by the newest record and
        // keep_from.
        std::uint64_t cut = audit_seq;
        if (purge.keep_from != 0) cut = std::min(cut, purge.keep_from);
        {
            auto r = c.run(pg::statement{"m_audit_purge_cut",
                                         fmt::format("SELECT min(seq) FROM {}.audit WHERE "
                                                     "workspace = $1 AND at >= $2",
                                                     s)},
                           pg::params{}.add(ws_s).add(micros(purge.before)));
            if (!r.is_null(0, 0)) cut = std::min(cut, r.u64(0, 0));
        }
        const std::uint64_t first = std::max<std::uint64_t>(result.anchor.seq, 1);
        if (cut <= first) {
            c.exec("ROLLBACK");
            return result;
        }
        audit_anchor anchor;
        anchor.seq = cut;
        anchor.at = purge.at;
        {
            auto r = c.run(pg::statement{"m_audit_purge_link",
                                         fmt::format("SELECT prev_hash, EXISTS (SELECT 1 FROM "
                                                     "{0}.audit WHERE workspace = $1 AND seq < $2 "
                                                     "AND action = $3) FROM {0}.audit WHERE "
                                                     "workspace = $1 AND seq = $2",
                                                     s)},
                           pg::params{}.add(ws_s).add(cut).add(audit_key_action));
            if (r.rows() == 0)
                fail(errc::store_error,
                     fmt::format("postgres store: purge_audit: audit record {} of workspace '{}' "
                                 "is missing",
                                 cut, ws_s));
            anchor.hash = r.str(0, 0);
            anchor.keyed = result.anchor.keyed || r.text(0, 1) == "t";
        }
        {
            auto r = c.run(pg::statement{"m_audit_purge_delete",
                                         fmt::format("DELETE FROM {}.audit WHERE workspace = $1 "
                                                     "AND seq < $2",
                                                     s)},
                           pg::params{}.add(ws_s).add(cut));
            result.purged = r.affected();
        }
        c.run(pg::statement{"m_audit_purge_anchor",
                            fmt::format("UPDATE {}.workspaces SET audit_anchor_seq = $2, "
                                        "audit_anchor_hash = $3, audit_anchor_at = $4, "
                                        "audit_anchor_keyed = $5 WHERE workspace = $1",
                                        s)},
              pg::params{}
                  .add(ws_s)
                  .add(anchor.seq)
                  .add(anchor.hash)
                  .add(micros(anchor.at))
                  .add(anchor.keyed ? "true" : "false"));
        result.anchor = anchor;
        if (purge.audit)
            result.audit_seq = append_audit_record(c, ws_s, purge.audit(anchor, result.purged), 0,
                                                   audit_seq, audit_head);
        commit_or_fail(c, a, "purge_audit");
        return result;
    }

    // --- end audit retention -------------------------------------------------

public:

    std::optional<ledger_row> find_send(std::string_view ws, std::uint64_t id) override {
        return run("find_send", true,
                   [&](pg::connection& c, attempt&) -> std::optional<ledger_row> {
                       auto r = c.run(sql_.find_send, pg::params{}.add(ws).add(id));
                       if (r.rows() == 0) return std::nullopt;
                       return read_send(r, 0);
                   });
    }

    void for_each_suppression_version(
        std::string_view ws, const std::function<void(const suppression_version&)>& fn) override {
        // A connection lost before the first row is retried; after it, `fn`
        // has seen part of the rows and must not see them twice.
        bool delivered = false;
        run("for_each_suppression_version", true, [&](pg::connection& c, attempt&) {
            if (delivered)
                fail(errc::store_error,
                     "postgres store: for_each_suppression_version: the connection was lost "
                     "after part of the rows were read");
            copy_versions_out(c, ws, [&](const suppression_version& v) {
                delivered = true;
                fn(v);
            });
            return 0;
        });
    }

    std::optional<suppression_entry> find_suppression(std::string_view ws, suppression_kind kind,
                                                      std::string_view value) override {
        return run("find_suppression", true,
                   [&](pg::connection& c, attempt&) -> std::optional<suppression_entry> {
                       auto r = c.run(sql_.find_suppression,
                                      pg::params{}.add(ws).add(kind_code(kind)).add(value));
                       if (r.rows() == 0) return std::nullopt;
                       return read_suppression(r, 0);
                   });
    }

    std::uint64_t last_change_seq(std::string_view ws) override {
        return run("last_change_seq", true, [&](pg::connection& c, attempt&) {
            return c.run(sql_.change_seq, pg::params{}.add(ws)).u64(0, 0);
        });
    }

    std::optional<stored_object> find_object(std::string_view ws, std::string_view kind,
                                             std::string_view id) override {
        return run("find_object", true,
                   [&](pg::connection& c, attempt&) -> std::optional<stored_object> {
                       auto r = c.run(sql_.find_object, pg::params{}.add(ws).add(kind).add(id));
                       if (r.rows() == 0) return std::nullopt;
                       return stored_object{std::string(kind), std::string(id), r.str(0, 0)};
                   });
    }

    std::optional<suppression_entry> next_suppression(std::string_view ws, suppression_kind kind,
                                                      std::string_view from) override {
        return run("next_suppression", true,
                   [&](pg::connection& c, attempt&) -> std::optional<suppression_entry> {
                       auto r = c.run(sql_.next_suppression,
                                      pg::params{}.add(ws).add(kind_code(kind)).add(from));
                       if (r.rows() == 0) return std::nullopt;
                       return read_suppression(r, 0);
                   });
    }

    std::uint64_t suppression_count(std::string_view ws) override {
        return run("suppression_count", true, [&](pg::connection& c, attempt&) {
            return c.run(sql_.suppression_count, pg::params{}.add(ws)).u64(0, 0);
        });
    }

    void for_each_object(std::string_view ws, std::string_view kind,
                         const std::function<void(const stored_object&)>& fn) override {
        // The objects of one kind are few (mailboxes, pools, pauses): one
        // query, then `fn` with no connection held.
        auto objects = run("for_each_object", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.objects_of_kind, pg::params{}.add(ws).add(kind));
            std::vector<stored_object> out;
            for (int i = 0; i < r.rows(); ++i)
                out.push_back({std::string(kind), r.str(i, 0), r.str(i, 1)});
            return out;
        });
        for (const auto& o : objects) fn(o);
    }

    // The for_each_* functions read in pages, keyset-paginated, and call `fn`
    // with no connection held, so a slow callback never starves the pool and
    // an exception from it needs no clean-up.
    static constexpr int page = 1000;
    // Sends of a time range: each page sorts what is left of the range, so
    // fewer, larger pages (about 10 MB each at most).
    static constexpr int send_page = 50000;

    void for_each_suppression(std::string_view ws,
                              const std::function<void(const suppression_entry&)>& fn) override {
        int kind = -1;
        std::string value;
        for (;;) {
            auto batch = run("for_each_suppression", true, [&](pg::connection& c, attempt&) {
                auto r = c.run(sql_.suppressions_after,
                               pg::params{}.add(ws).add(kind).add(value).add(page));
                std::vector<suppression_entry> out;
                for (int i = 0; i < r.rows(); ++i) out.push_back(read_suppression(r, i));
                return out;
            });
            for (auto& e : batch) fn(e);
            if (batch.size() < static_cast<std::size_t>(page)) return;
            kind = kind_code(batch.back().kind);
            value = batch.back().value;
        }
    }

    void for_each_audit(std::string_view ws, std::uint64_t from_seq,
                        const std::function<void(const audit_record&)>& fn) override {
        for (;;) {
            auto batch = run("for_each_audit", true, [&](pg::connection& c, attempt&) {
                auto r = c.run(sql_.audit_from, pg::params{}.add(ws).add(from_seq).add(page));
                std::vector<audit_record> out;
                for (int i = 0; i < r.rows(); ++i) out.push_back(read_audit(r, i));
                return out;
            });
            for (auto& a : batch) fn(a);
            if (batch.size() < static_cast<std::size_t>(page)) return;
            from_seq = batch.back().seq + 1;
        }
    }

    void for_each_send(std::string_view ws, time_point from, time_point to,
                       const std::function<void(const ledger_row&)>& fn) override {
        // Pages start at the range's first id, found through the index on
        // reserved_at (`id + 0` keeps the planner from walking the primary
        // key from the workspace's first id, past every older send). Each
        // page reads what is left of the range and sorts it by id, so pages
        // are large: a day of a busy ledger is one or two.
        const auto first = run("for_each_send", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.first_send_between,
                           pg::params{}.add(ws).add(micros(from)).add(micros(to)));
            return r.is_null(0, 0) ? std::uint64_t{0} : r.u64(0, 0);
        });
        if (first == 0) return;
        std::uint64_t after = first - 1;
        for (;;) {
            auto batch = run("for_each_send", true, [&](pg::connection& c, attempt&) {
                auto r = c.run(sql_.sends_between, pg::params{}
                                                       .add(ws)
                                                       .add(micros(from))
                                                       .add(micros(to))
                                                       .add(after)
                                                       .add(send_page));
                std::vector<ledger_row> out;
                for (int i = 0; i < r.rows(); ++i) out.push_back(read_send(r, i));
                return out;
            });
            for (auto& s : batch) fn(s);
            if (batch.size() < static_cast<std::size_t>(send_page)) return;
            after = batch.back().id;
        }
    }

    void purge_cap_uses(std::string_view ws, time_point before) override {
        run("purge_cap_uses", true, [&](pg::connection& c, attempt&) {
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN ISOLATION LEVEL READ COMMITTED");
            p.add(sql_.purge, pg::params{}.add(ws).add(micros(before)));
            p.add(sql_.purge_counts, pg::params{}.add(ws).add(micros(before)));
            p.add_simple("COMMIT");
            p.finish();
            return 0;
        });
    }

    std::vector<queued_send> claim_queued(std::string_view ws, std::uint64_t member, time_point now,
                                          std::size_t limit) override {
        return claim_due<queued_send>("claim_queued", ws, member, now, limit, sql_.claim_queued,
                                      [](const pg::result& r, int i) { return read_queued(r, i); });
    }

    std::optional<queued_send> find_queued(std::string_view ws, std::uint64_t id) override {
        return run("find_queued", true,
                   [&](pg::connection& c, attempt&) -> std::optional<queued_send> {
                       auto r = c.run(sql_.find_queued, pg::params{}.add(ws).add(id));
                       if (r.rows() == 0) return std::nullopt;
                       return read_queued(r, 0);
                   });
    }

    std::optional<enrollment> find_enrollment(std::string_view ws, std::uint64_t id) override {
        if (id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        return run("find_enrollment", true,
                   [&](pg::connection& c, attempt&) -> std::optional<enrollment> {
                       auto r = read_enrollments(c.run(sql_.enr_find,
                                                       pg::params{}.add(ws).add(id)));
                       if (r.empty()) return std::nullopt;
                       return r.front();
                   });
    }

    std::optional<enrollment> find_enrollment_by_message(std::string_view ws,
                                                         std::string_view message_id) override {
        return run("find_enrollment_by_message", true,
                   [&](pg::connection& c, attempt&) -> std::optional<enrollment> {
                       auto r = read_enrollments(
                           c.run(sql_.enr_by_message, pg::params{}.add(ws).add(message_id)));
                       if (r.empty()) return std::nullopt;
                       return r.front();
                   });
    }

    void for_each_enrollment(std::string_view ws, const enrollment_filter& filter,
                             const std::function<void(const enrollment&)>& fn) override {
        std::uint64_t after = filter.after_id;
        if (after >= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return;
        std::size_t left =
            filter.limit == 0 ? std::numeric_limits<std::size_t>::max() : filter.limit;
        const int state = filter.state ? static_cast<int>(codes::of(*filter.state)) : -1;
        while (left > 0) {
            const int n = static_cast<int>(std::min<std::size_t>(left, page));
            auto batch = run("for_each_enrollment", true, [&](pg::connection& c, attempt&) {
                return read_enrollments(c.run(sql_.enr_after, pg::params{}
                                                                  .add(ws)
                                                                  .add(after)
                                                                  .add(filter.sequence_id)
                                                                  .add(filter.address)
                                                                  .add(state)
                                                                  .add(n)));
            });
            for (auto& e : batch) fn(e);
            if (batch.size() < static_cast<std::size_t>(n)) return;
            left -= batch.size();
            after = batch.back().id;
        }
    }

    std::vector<enrollment> due_enrollments(std::string_view ws, time_point now,
                                            std::size_t limit) override {
        if (limit == 0) return {};
        const auto n = static_cast<std::int64_t>(
            std::min<std::size_t>(limit, std::numeric_limits<std::int64_t>::max()));
        return run("due_enrollments", true, [&](pg::connection& c, attempt&) {
            return read_enrollments(
                c.run(sql_.enr_due, pg::params{}.add(ws).add(micros(now)).add(n)));
        });
    }

    void for_each_queued(std::string_view ws, const queue_filter& filter,
                         const std::function<void(const queued_send&)>& fn) override {
        std::uint64_t after = filter.after_id;
        std::size_t left =
            filter.limit == 0 ? std::numeric_limits<std::size_t>::max() : filter.limit;
        const int state = filter.state ? queue_state_code(*filter.state) : -1;
        while (left > 0) {
            const int n = static_cast<int>(std::min<std::size_t>(left, page));
            auto batch = run("for_each_queued", true, [&](pg::connection& c, attempt&) {
                auto r = c.run(
                    sql_.queued_after,
                    pg::params{}.add(ws).add(after).add(state).add(filter.origin_prefix).add(n));
                std::vector<queued_send> out;
                for (int i = 0; i < r.rows(); ++i) out.push_back(read_queued(r, i));
                return out;
            });
            for (auto& q : batch) fn(q);
            if (batch.size() < static_cast<std::size_t>(n)) return;
            left -= batch.size();
            after = batch.back().id;
        }
    }

    queue_counts count_queued(std::string_view ws) override {
        return run("count_queued", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.count_queued, pg::params{}.add(ws));
            queue_counts out;
            for (int i = 0; i < r.rows(); ++i) {
                const auto n = r.u64(i, 2);
                switch (queue_state_from(r.i64(i, 0))) {
                    case queue_state::waiting: {
                        out.waiting += n;
                        out.waiting_by_reason.emplace_back(r.str(i, 1), n);
                        const auto due = from_micros(r.i64(i, 3));
                        if (!out.next_due || due < *out.next_due) out.next_due = due;
                        break;
                    }
                    case queue_state::claimed:
                        out.claimed += n;
                        break;
                    case queue_state::done:
                        out.done += n;
                        break;
                    case queue_state::cancelled:
                        out.cancelled += n;
                        break;
                }
            }
            return out;
        });
    }

    std::size_t purge_keys(std::string_view ws, time_point before) override {
        return run("purge_keys", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.purge_keys, pg::params{}.add(ws).add(micros(before)));
            return static_cast<std::size_t>(r.affected());
        });
    }

    bool forget_key(std::string_view ws, std::string_view ns, std::string_view key) override {
        return run("forget_key", true, [&](pg::connection& c, attempt&) {
            return c.run(sql_.forget_key, pg::params{}.add(ws).add(ns).add(key)).affected() > 0;
        });
    }

    // --- daily counts ---------------------------------------------------------

    std::vector<daily_count> daily_counts(std::string_view ws, count_scope scope,
                                          std::string_view id, count_day from,
                                          count_day to) override {
        return run("daily_counts", true, [&](pg::connection& c, attempt&) {
            auto r =
                c.run(sql_.dc_read,
                      pg::params{}.add(ws).add(static_cast<int>(scope)).add(id).add(from).add(to));
            std::vector<daily_count> out;
            for (int i = 0; i < r.rows(); ++i) {
                const auto day = static_cast<count_day>(r.i64(i, 0));
                const auto metric = r.i64(i, 1);
                if (out.empty() || out.back().day != day) out.push_back({day, {}});
                if (metric >= 0 && metric < static_cast<std::int64_t>(count_metric_count))
                    out.back().n[static_cast<std::size_t>(metric)] = r.u64(i, 2);
            }
            return out;
        });
    }

    std::size_t purge_counts(std::string_view ws, count_day before) override {
        return run("purge_counts", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.dc_purge, pg::params{}.add(ws).add(before));
            auto t = c.run(sql_.sb_purge, pg::params{}.add(ws).add(micros(day_start(before))));
            auto u = c.run(sql_.sb_trim, pg::params{}.add(ws).add(micros(day_start(before))));
            return static_cast<std::size_t>(r.affected() + t.affected() + u.affected());
        });
    }
    // --- end daily counts

    std::size_t purge_queued(std::string_view ws, time_point before) override {
        return run("purge_queued", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.purge_queued, pg::params{}.add(ws).add(micros(before)));
            return static_cast<std::size_t>(r.affected());
        });
    }

    // --- outbound webhooks --------------------------------------------------------

    static webhook_delivery read_delivery(const pg::result& r, int i) {
        webhook_delivery d;
        d.id = r.u64(i, 0);
        d.endpoint = r.str(i, 1);
        d.message_id = r.str(i, 2);
        d.event_key = r.str(i, 3);
        d.event_type = r.str(i, 4);
        d.payload = r.str(i, 5);
        d.created_at = from_micros(r.i64(i, 6));
        d.due_at = from_micros(r.i64(i, 7));
        const auto st = r.i64(i, 8);
        if (st < 0 || st > 3)
            fail(errc::store_corrupt, fmt::format("postgres store: webhook delivery state {}", st));
        d.state = static_cast<webhook_delivery_state>(st);
        d.attempts = static_cast<std::uint32_t>(r.i64(i, 9));
        d.claimed_by = r.u64(i, 10);
        d.last_status = static_cast<int>(r.i64(i, 11));
        d.detail = r.str(i, 12);
        d.updated_at = from_micros(r.i64(i, 13));
        return d;
    }

    std::vector<webhook_delivery> claim_webhook_deliveries(std::string_view ws,
                                                           std::uint64_t member, time_point now,
                                                           std::size_t limit) override {
        return claim_due<webhook_delivery>(
            "claim_webhook_deliveries", ws, member, now, limit, sql_.wh_claim,
            [](const pg::result& r, int i) { return read_delivery(r, i); });
    }

    std::optional<webhook_delivery> find_webhook_delivery(std::string_view ws,
                                                          std::uint64_t id) override {
        if (id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        return run("find_webhook_delivery", true,
                   [&](pg::connection& c, attempt&) -> std::optional<webhook_delivery> {
                       auto r = c.run(sql_.wh_find, pg::params{}.add(ws).add(id));
                       if (r.rows() == 0) return std::nullopt;
                       return read_delivery(r, 0);
                   });
    }

    void for_each_webhook_delivery(
        std::string_view ws, const webhook_delivery_filter& filter,
        const std::function<void(const webhook_delivery&)>& fn) override {
        if (filter.after_id >= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return;
        std::uint64_t after = filter.after_id;
        std::size_t left =
            filter.limit == 0 ? std::numeric_limits<std::size_t>::max() : filter.limit;
        const int state = filter.state ? static_cast<int>(*filter.state) : -1;
        while (left > 0) {
            const int n = static_cast<int>(std::min<std::size_t>(left, page));
            auto batch = run("for_each_webhook_delivery", true, [&](pg::connection& c, attempt&) {
                auto r = c.run(sql_.wh_after, pg::params{}
                                                  .add(ws)
                                                  .add(after)
                                                  .add(state)
                                                  .add(filter.endpoint)
                                                  .add(n));
                std::vector<webhook_delivery> out;
                for (int i = 0; i < r.rows(); ++i) out.push_back(read_delivery(r, i));
                return out;
            });
            for (auto& d : batch) fn(d);
            if (batch.size() < static_cast<std::size_t>(n)) return;
            left -= batch.size();
            after = batch.back().id;
        }
    }

    webhook_delivery_counts count_webhook_deliveries(std::string_view ws,
                                                     std::string_view endpoint) override {
        return run("count_webhook_deliveries", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.wh_count, pg::params{}.add(ws).add(endpoint));
            webhook_delivery_counts out;
            for (int i = 0; i < r.rows(); ++i) {
                const auto n = r.u64(i, 1);
                switch (r.i64(i, 0)) {
                    case 0:
                        out.pending = n;
                        break;
                    case 1:
                        out.claimed = n;
                        break;
                    case 2:
                        out.delivered = n;
                        out.last_delivered = from_micros(r.i64(i, 2));
                        break;
                    default:
                        out.failed = n;
                        break;
                }
            }
            return out;
        });
    }

    std::size_t purge_webhook_deliveries(std::string_view ws, time_point before) override {
        return run("purge_webhook_deliveries", true, [&](pg::connection& c, attempt&) {
            auto r = c.run(sql_.wh_purge, pg::params{}.add(ws).add(micros(before)));
            return static_cast<std::size_t>(r.affected());
        });
    }
    // --- end outbound webhooks

private:
    // Takes up to `limit` due rows for `member` with `claim` ($1 workspace,
    // $2 member, $3 now, $4 limit; RETURNING the row), in one transaction
    // with the check of the member's lease. Oldest due first, then by id.
    template <class Row, class Read>
    std::vector<Row> claim_due(const char* what, std::string_view ws, std::uint64_t member,
                               time_point now, std::size_t limit, const pg::statement& claim,
                               Read&& read) {
        // Not idempotent: a claim whose COMMIT was lost may hold rows, and
        // running it again would take more (see store.hpp).
        auto out = run(what, false, [&](pg::connection& c, attempt& a) {
            pg::connection::pipeline p(c);
            p.add_simple("BEGIN ISOLATION LEVEL READ COMMITTED");
            const auto i_live = p.add(sql_.live_member, pg::params{}.add(ws).add(member));
            std::size_t i_claim = 0;
            if (limit > 0)
                i_claim = p.add(claim, pg::params{}
                                           .add(ws)
                                           .add(member)
                                           .add(micros(now))
                                           .add(static_cast<std::int64_t>(std::min<std::size_t>(
                                               limit, std::numeric_limits<std::int32_t>::max()))));
            const auto i_commit = p.add_simple("COMMIT");
            a.commit_sent = true;
            auto r = p.finish();
            if (std::string_view{PQcmdStatus(r[i_commit].get())} != "COMMIT")
                fail(errc::store_error,
                     fmt::format("postgres store: {}: the server rolled the transaction back",
                                 what));
            if (r[i_live].rows() == 0)
                fail(errc::store_error,
                     fmt::format("postgres store: {}: member {} has no live lease (it ran out, or "
                                 "the member was recovered or detached); attach again before "
                                 "claiming",
                                 what, member));
            std::vector<Row> rows;
            if (limit > 0)
                for (int i = 0; i < r[i_claim].rows(); ++i) rows.push_back(read(r[i_claim], i));
            return rows;
        });
        std::sort(out.begin(), out.end(), [](const Row& x, const Row& y) {
            return x.due_at != y.due_at ? x.due_at < y.due_at : x.id < y.id;
        });
        return out;
    }

    // Until a table has been analysed once, the planner takes `workspace =
    // $1` for selective (0.5% of the rows) and picks plans that read every
    // row of the workspace, which costs more per commit as the ledger
    // grows; autovacuum's first ANALYZE can be a minute away. So while the
    // store's tables have no statistics, a member analyses those that have
    // taken some rows, at most every few seconds. Best effort: a role that
    // may not analyse gets a warning from the server, not an error, and a
    // failed check is tried again at the next renewal.
    void seed_statistics() {
        if (statistics_seeded_.load(std::memory_order_relaxed)) return;
        const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
        auto next = next_statistics_check_.load(std::memory_order_relaxed);
        if (now < next ||
            !next_statistics_check_.compare_exchange_strong(
                next, now + std::chrono::nanoseconds(std::chrono::seconds(2)).count()))
            return;
        try {
            run("statistics", true, [&](pg::connection& c, attempt&) {
                auto r = c.run(sql_.unanalysed, pg::params{}.add(params_.schema).add(500));
                for (int i = 0; i < r.rows(); ++i)
                    if (r.str(i, 1) == "t")
                        c.exec(fmt::format("ANALYZE {}.{}", pg::quote_ident(params_.schema),
                                           pg::quote_ident(r.str(i, 0))));
                if (r.rows() == 0) statistics_seeded_.store(true, std::memory_order_relaxed);
                return 0;
            });
        } catch (const std::exception&) {
        }
    }

    std::atomic<bool> statistics_seeded_{false};
    std::atomic<std::int64_t> next_statistics_check_{0};

    // Runs `f` on a pooled connection. A lost connection is replaced,
    // waiting for the server up to reconnect_timeout, and `f` runs again
    // when it is `idempotent` or had not sent its COMMIT yet; serialization
    // failures and deadlocks run it again a bounded number of times.
    template <class F>
    auto run(std::string_view what, bool idempotent, F&& f)
        -> decltype(f(std::declval<pg::connection&>(), std::declval<attempt&>())) {
        reconnect_wait wait(params_.reconnect_timeout);
        int conflicts = 0;
        for (;;) {
            std::optional<pg::pool::lease> lease;
            try {
                lease.emplace(pool_.acquire());
            } catch (const pg::error& e) {
                if (e.kind() == pg::failure_kind::connection_lost && !wait.expired()) {
                    wait.pause();
                    continue;
                }
                fail(errc::store_error,
                     fmt::format("postgres store: {}: cannot connect: {}", what, e.what()));
            }
            attempt a;
            try {
                return f(**lease, a);
            } catch (const pg::error& e) {
                if (e.kind() == pg::failure_kind::connection_lost) {
                    lease->discard();
                    if (a.commit_sent && !idempotent)
                        fail(errc::commit_outcome_unknown,
                             fmt::format("postgres store: {}: the connection was lost while "
                                         "committing; the outcome is unknown ({})",
                                         what, e.what()));
                    if (!wait.expired()) continue;
                    fail(errc::store_error,
                         fmt::format("postgres store: {}: the connection was lost and the server "
                                     "did not come back within {} ms: {}",
                                     what, params_.reconnect_timeout.count(), e.what()));
                }
                rollback(**lease);
                bool again = (e.kind() == pg::failure_kind::retry_transaction ||
                              e.kind() == pg::failure_kind::unique_violation) &&
                             ++conflicts <= max_conflict_retries;
                // An idempotency key taken by another process while this
                // transaction waited: the next run reads it and answers
                // `duplicate`. Other unique violations are real errors.
                if (e.kind() == pg::failure_kind::unique_violation &&
                    e.constraint() != "sends_idempotency" && e.constraint() != "queue_idempotency")
                    again = false;
                if (again) {
                    if (conflicts > 2)
                        std::this_thread::sleep_for(std::chrono::milliseconds(conflicts * 2));
                    continue;
                }
                fail(errc::store_error, fmt::format("postgres store: {}: {}", what, e.what()));
            } catch (...) {
                rollback(**lease);
                throw;
            }
        }
    }

    static void rollback(pg::connection& c) noexcept {
        try {
            if (!c.broken() && PQtransactionStatus(c.raw()) != PQTRANS_IDLE) c.exec("ROLLBACK");
        } catch (...) {
        }
    }

    static constexpr int max_conflict_retries = 20;

    commit_result commit_once(pg::connection& c, attempt& a, std::string_view ws,
                              std::span<const store_op> ops);

    // Queues the insert of `recs` (chained, in seq order) and moves the
    // workspace's audit head to the last of them.
    void add_audit_records(pg::connection::pipeline& p, const std::string& ws,
                           std::span<const audit_record> recs) {
        pg::int_array seq, at, change;
        pg::text_array actor, action, rtype, rid, before, after, prev, hash;
        for (auto& rec : recs) {
            seq.push(static_cast<std::int64_t>(rec.seq));
            change.push(static_cast<std::int64_t>(rec.change_seq));
            at.push(micros(rec.at));
            actor.push(rec.actor);
            action.push(rec.action);
            rtype.push(rec.resource_type);
            rid.push(rec.resource_id);
            before.push(rec.before);
            after.push(rec.after);
            prev.push(rec.prev_hash);
            hash.push(rec.hash);
        }
        p.add(sql_.insert_audit, pg::params{}
                                     .add(ws)
                                     .add(seq.str())
                                     .add(at.str())
                                     .add(actor.str())
                                     .add(action.str())
                                     .add(rtype.str())
                                     .add(rid.str())
                                     .add(before.str())
                                     .add(after.str())
                                     .add(prev.str())
                                     .add(hash.str())
                                     .add(change.str()));
        p.add(sql_.set_audit_head,
              pg::params{}.add(ws).add(recs.back().seq).add(recs.back().hash));
    }

    postgres_store_params params_;
    statements sql_;
    pg::pool pool_;
};

commit_result postgres_store::commit_once(pg::connection& c, attempt& a, std::string_view ws,
                                          std::span<const store_op> ops) {
    // --- what the batch needs, before touching the server ---
    bool needs_ws = false, has_change = false;
    std::map<std::string, key_state> keys;  // sorted: the lock order
    std::set<std::pair<std::string, std::string>> object_refs;
    std::set<std::uint64_t> send_ids;
    std::set<std::string> idem_keys;
    int new_sends = 0;
    std::set<std::uint64_t> queue_ids;
    std::set<std::string> queue_keys;
    int new_queued = 0;
    // (namespace, key) -> (at, expires_at) of its first record_key.
    std::map<std::pair<std::string, std::string>, std::pair<std::int64_t, std::int64_t>>
        recorded_keys;
    std::size_t guarded_until = 0;
    for (std::size_t oi = 0; oi < ops.size(); ++oi) {
        auto& op = ops[oi];
        if (auto* r = std::get_if<store_ops::record_key>(&op)) {
            if (oi < guarded_until)
                fail(errc::store_error,
                     fmt::format("postgres store: commit: op {} (record_key {}): a record_key "
                                 "cannot be guarded by another; no op of the batch was applied",
                                 oi, r->namespace_));
            if (r->guards > ops.size() - oi - 1)
                fail(errc::store_error,
                     fmt::format("postgres store: commit: op {} (record_key {}): its guards "
                                 "reach past the last op; no op of the batch was applied",
                                 oi, r->namespace_));
            guarded_until = oi + 1 + r->guards;
            recorded_keys.try_emplace({r->namespace_, r->key}, micros(r->at),
                                      micros(r->expires_at));
            continue;
        }
        // Enrollment ops run as statements of their own, in op order (below).
        if (is_enrollment_op(op)) continue;
        // Outbound webhook ops too; an add is checked here, before anything runs.
        if (auto* w = std::get_if<store_ops::add_webhook_delivery>(&op)) {
            const auto& d = w->row;
            if (d.endpoint.empty() || d.message_id.empty() || d.event_key.empty() ||
                d.payload.empty() || d.created_at == time_point{})
                fail(errc::store_error,
                     fmt::format("postgres store: commit: op {} (add_webhook_delivery): a webhook "
                                 "delivery needs an endpoint, a message id, an event key, a "
                                 "payload and its creation time; no op of the batch was applied",
                                 oi));
            continue;
        }
        if (auto* w = std::get_if<store_ops::end_webhook_attempt>(&op)) {
            if (w->state == webhook_delivery_state::claimed)
                fail(errc::store_error,
                     fmt::format("postgres store: commit: op {} (end_webhook_attempt id {}): an "
                                 "attempt ends pending, delivered or failed, not claimed; no op "
                                 "of the batch was applied",
                                 oi, w->id));
            continue;
        }
        if (std::holds_alternative<store_ops::fail_webhook_deliveries>(op) ||
            std::holds_alternative<store_ops::retry_webhook_deliveries>(op))
            continue;
        // Daily counts and soft-bounce tallies: checked here, written below.
        if (auto* a = std::get_if<store_ops::add_counts>(&op)) {
            if (a->if_previous_applied && oi == 0)
                fail(errc::store_error,
                     "postgres store: commit: op 0 (add_counts): if_previous_applied on the "
                     "first op of a commit; no op of the batch was applied");
            continue;
        }
        if (auto* t = std::get_if<store_ops::tally_soft_bounce>(&op)) {
            if (t->threshold == 0)
                fail(errc::store_error,
                     fmt::format("postgres store: commit: op {} (tally_soft_bounce): a threshold "
                                 "of 0; no op of the batch was applied",
                                 oi));
            continue;
        }
        std::visit(
            [&](auto& o) {
                using T = std::decay_t<decltype(o)>;
                if constexpr (std::is_same_v<T, store_ops::record_key>) {
                } else if constexpr (std::is_same_v<T, store_ops::reserve_send>) {
                    if (o.row.id == 0) {
                        ++new_sends;
                        if (!o.row.idempotency_key.empty()) idem_keys.insert(o.row.idempotency_key);
                    } else {
                        send_ids.insert(o.row.id);
                    }
                    for (auto& cl : o.claims) {
                        auto& k = keys[cl.key];
                        for (auto& w : cl.windows) k.floors.push_back(floor_micros(w.floor));
                        if (!cl.object_kind.empty())
                            object_refs.emplace(cl.object_kind, cl.object_id);
                    }
                } else if constexpr (std::is_same_v<T, store_ops::update_send>) {
                    send_ids.insert(o.row.id);
                } else if constexpr (std::is_same_v<T, store_ops::append_audit>) {
                    needs_ws = true;
                } else if constexpr (std::is_same_v<T, store_ops::enqueue>) {
                    if (o.item.request.empty())
                        fail(errc::store_error,
                             "postgres store: commit: enqueue: a queued send needs a request; "
                             "no op of the batch was applied");
                    if (o.item.not_before == time_point{})
                        fail(errc::store_error,
                             "postgres store: commit: enqueue: a queued send needs its "
                             "not_before; no op of the batch was applied");
                    ++new_queued;
                    if (!o.item.idempotency_key.empty()) queue_keys.insert(o.item.idempotency_key);
                } else if constexpr (std::is_same_v<T, store_ops::finish_queued>) {
                    if (o.state != queue_state::done && o.state != queue_state::cancelled)
                        fail(errc::store_error,
                             fmt::format("postgres store: commit: finish_queued id {}: a queued "
                                         "send finishes done or cancelled, not {}; no op of the "
                                         "batch was applied",
                                         o.id, to_string(o.state)));
                    queue_ids.insert(o.id);
                } else if constexpr (std::is_same_v<T, store_ops::defer_queued> ||
                                     std::is_same_v<T, store_ops::cancel_queued>) {
                    queue_ids.insert(o.id);
                } else {
                    needs_ws = true;
                    has_change = true;
                }
            },
            op);
    }
    pg::text_array key_list, group_keys;
    pg::int_array group_lo, group_hi;
    for (auto& [name, k] : keys) {
        key_list.push(name);
        std::sort(k.floors.begin(), k.floors.end());
        k.floors.erase(std::unique(k.floors.begin(), k.floors.end()), k.floors.end());
        for (auto f : k.floors) {
            if (k.groups.empty() || f - k.groups.back().hi > floor_group_gap ||
                f - k.groups.back().lo > floor_group_span)
                k.groups.push_back({f, f, 0, {}});
            else
                k.groups.back().hi = f;
        }
        for (auto& g : k.groups) {
            group_keys.push(name);
            group_lo.push(g.lo);
            group_hi.push(g.hi);
        }
    }

    // --- first round trip: locks, then reads ---
    pg::connection::pipeline p1(c);
    p1.add_simple("BEGIN ISOLATION LEVEL READ COMMITTED");
    std::size_t i_keys = 0, i_ws = 0, i_obj = 0, i_sends = 0, i_uses = 0, i_idem = 0, i_ids = 0,
                i_counts = 0;
    const std::string ws_s{ws};
    if (!keys.empty()) {
        p1.add(sql_.upsert_keys, pg::params{}.add(ws_s).add(key_list.str()));
        i_keys = p1.add(sql_.lock_keys, pg::params{}.add(ws_s).add(key_list.str()));
    }
    if (needs_ws) {
        p1.add(sql_.ensure_ws, pg::params{}.add(ws_s));
        i_ws = p1.add(sql_.lock_ws, pg::params{}.add(ws_s).add(has_change ? 1 : 0));
    }
    if (!object_refs.empty()) {
        pg::text_array kinds, ids;
        for (auto& [k, i] : object_refs) {
            kinds.push(k);
            ids.push(i);
        }
        i_obj = p1.add(sql_.share_objects, pg::params{}.add(ws_s).add(kinds.str()).add(ids.str()));
    }
    if (!send_ids.empty()) {
        pg::int_array ids;
        for (auto id : send_ids) ids.push(static_cast<std::int64_t>(id));
        i_sends = p1.add(sql_.lock_sends, pg::params{}.add(ws_s).add(ids.str()));
        i_uses = p1.add(sql_.uses_of_sends, pg::params{}.add(ws_s).add(ids.str()));
    }
    if (!idem_keys.empty()) {
        pg::text_array ks;
        for (auto& k : idem_keys) ks.push(k);
        i_idem = p1.add(sql_.sends_by_key, pg::params{}.add(ws_s).add(ks.str()));
    }
    if (new_sends > 0) i_ids = p1.add(sql_.new_ids, pg::params{}.add(new_sends));
    std::size_t i_qlock = 0, i_qkeys = 0, i_qids = 0;
    if (!queue_ids.empty()) {
        pg::int_array ids;
        for (auto id : queue_ids)
            if (id <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                ids.push(static_cast<std::int64_t>(id));
        i_qlock = p1.add(sql_.lock_queued, pg::params{}.add(ws_s).add(ids.str()));
    }
    if (!queue_keys.empty()) {
        pg::text_array ks;
        for (auto& k : queue_keys) ks.push(k);
        i_qkeys = p1.add(sql_.queued_by_key, pg::params{}.add(ws_s).add(ks.str()));
    }
    if (new_queued > 0) i_qids = p1.add(sql_.new_queue_ids, pg::params{}.add(new_queued));
    std::size_t i_recorded = 0;
    if (!recorded_keys.empty()) {
        pg::text_array ns, ks;
        pg::int_array ats, expiries;
        for (auto& [k, times] : recorded_keys) {
            ns.push(k.first);
            ks.push(k.second);
            ats.push(times.first);
            expiries.push(times.second);
        }
        i_recorded = p1.add(
            sql_.record_keys,
            pg::params{}.add(ws_s).add(ns.str()).add(ks.str()).add(ats.str()).add(expiries.str()));
    }
    if (!keys.empty())
        i_counts = p1.add(
            sql_.count_uses,
            pg::params{}.add(ws_s).add(group_keys.str()).add(group_lo.str()).add(group_hi.str()));
    auto r1 = p1.finish();

    // --- the batch, applied in memory ---
    std::uint64_t change_seq = 0, audit_seq = 0;
    std::string audit_head;
    if (needs_ws) {
        change_seq = r1[i_ws].u64(0, 0);
        audit_seq = r1[i_ws].u64(0, 1);
        audit_head = r1[i_ws].str(0, 2);
    }
    if (!keys.empty()) {
        auto& r = r1[i_keys];
        for (int i = 0; i < r.rows(); ++i) keys[r.str(i, 0)].gap_until = r.i64(i, 1);
        auto& rc = r1[i_counts];
        int row = 0;
        for (auto& [name, k] : keys)
            for (auto& g : k.groups) {
                g.at_or_after_hi = rc.u64(row, 0);
                g.between = pg::parse_int_array(rc.text(row, 1));
                ++row;
            }
    }
    std::map<std::pair<std::string, std::string>, std::uint64_t> object_seq;
    if (!object_refs.empty()) {
        auto& r = r1[i_obj];
        for (int i = 0; i < r.rows(); ++i) object_seq[{r.str(i, 0), r.str(i, 1)}] = r.u64(i, 2);
    }
    std::unordered_map<std::uint64_t, send_state_mem> sends;
    std::unordered_map<std::string, std::uint64_t> by_key;
    if (!send_ids.empty()) {
        auto& r = r1[i_sends];
        for (int i = 0; i < r.rows(); ++i) {
            auto row = read_send(r, i);
            sends[row.id].row = row;
        }
        auto& ru = r1[i_uses];
        for (int i = 0; i < ru.rows(); ++i) {
            auto it = sends.find(ru.u64(i, 0));
            if (it != sends.end()) it->second.uses.push_back({ru.str(i, 1), ru.i64(i, 2), true});
        }
    }
    if (!idem_keys.empty()) {
        auto& r = r1[i_idem];
        for (int i = 0; i < r.rows(); ++i) {
            auto row = read_send(r, i);
            by_key[row.idempotency_key] = row.id;
            auto& s = sends[row.id];
            if (s.row.id == 0) s.row = std::move(row);
        }
    }
    std::vector<std::uint64_t> fresh_ids;
    if (new_sends > 0) {
        auto& r = r1[i_ids];
        for (int i = 0; i < r.rows(); ++i) fresh_ids.push_back(r.u64(i, 0));
    }
    std::size_t next_id = 0;

    // Queue items the batch names, as the batch leaves them.
    struct queued_mem {
        queued_send item;
        bool is_new = false;
        bool dirty = false;
    };
    std::map<std::uint64_t, queued_mem> queued;
    std::unordered_map<std::string, std::uint64_t> queued_by_key;
    if (!queue_ids.empty()) {
        auto& r = r1[i_qlock];
        for (int i = 0; i < r.rows(); ++i) {
            auto q = read_queued(r, i);
            queued[q.id].item = std::move(q);
        }
    }
    if (!queue_keys.empty()) {
        auto& r = r1[i_qkeys];
        for (int i = 0; i < r.rows(); ++i) {
            auto q = read_queued(r, i);
            queued_by_key[q.idempotency_key] = q.id;
            auto& m = queued[q.id];
            if (m.item.id == 0) m.item = std::move(q);
        }
    }
    std::vector<std::uint64_t> fresh_queue_ids;
    if (new_queued > 0) {
        auto& r = r1[i_qids];
        for (int i = 0; i < r.rows(); ++i) fresh_queue_ids.push_back(r.u64(i, 0));
    }
    std::size_t next_queue_id = 0;
    // Keys recorded now; each is taken by the first record_key naming it.
    std::set<std::pair<std::string, std::string>> fresh_keys;
    if (!recorded_keys.empty()) {
        auto& r = r1[i_recorded];
        for (int i = 0; i < r.rows(); ++i) fresh_keys.emplace(r.str(i, 0), r.str(i, 1));
    }
    // The item `id` names, if `member` holds it; records where it stood.
    auto held = [&](std::uint64_t id, std::uint64_t member, op_result& out) -> queued_mem* {
        out.applied = false;
        out.queue.id = id;
        auto it = queued.find(id);
        if (it == queued.end() || it->second.item.id == 0) return nullptr;
        out.queue.state = it->second.item.state;
        if (it->second.item.state != queue_state::claimed || member == 0 ||
            it->second.item.claimed_by != member)
            return nullptr;
        out.applied = true;
        return &it->second;
    };

    // Releases a send's current uses, remembering stored ones for deletion.
    auto release = [&](send_state_mem& s) {
        for (auto& u : s.uses) {
            auto& k = keys[u.key];
            if (u.stored) {
                k.remove_stored(u.at);
            } else {
                k.remove_added(u.at);
            }
        }
        if (std::any_of(s.uses.begin(), s.uses.end(), [](const use& u) { return u.stored; }))
            s.uses_released = true;
        s.uses.clear();
    };

    std::map<std::pair<std::string, std::string>, std::optional<std::string>> objects_out;
    std::map<std::pair<int, std::string>, std::optional<suppression_entry>> suppressions_out;
    // Entries this commit wrote and then replaced or removed itself: never
    // stored, but kept as versions ended by this commit's change.
    std::vector<suppression_entry> superseded_out;
    std::vector<audit_record> audits_out;
    std::vector<until_request> untils;
    commit_result result;
    result.ops.resize(ops.size());

    detail::count_sum counts_out;  // store_ops::add_counts

    std::size_t skip_until = 0;
    std::size_t batched_until = 0;  // ops a batch before them applied already
    for (std::size_t oi = 0; oi < ops.size(); ++oi) {
        auto& out = result.ops[oi];
        if (oi < skip_until) {
            out.applied = false;
            continue;
        }
        if (oi < batched_until) continue;
        std::visit(
            [&](auto& o) {
                using T = std::decay_t<decltype(o)>;
                if constexpr (std::is_same_v<T, store_ops::record_key>) {
                    out.applied = fresh_keys.erase({o.namespace_, o.key}) == 1;
                    if (!out.applied) skip_until = oi + 1 + o.guards;
                } else if constexpr (std::is_same_v<T, store_ops::add_counts>) {
                    out.applied = !o.if_previous_applied || result.ops[oi - 1].applied;
                    if (!out.applied) return;
                    counts_out.add(o);
                } else if constexpr (std::is_same_v<T, store_ops::tally_soft_bounce>) {
                    auto r = c.run(sql_.sb_tally, pg::params{}
                                                      .add(ws_s)
                                                      .add(o.address)
                                                      .add(micros(o.at))
                                                      .add(micros(o.since)));
                    out.applied = r.u64(0, 0) >= o.threshold;
                } else if constexpr (std::is_same_v<T, store_ops::enroll> ||
                                     std::is_same_v<T, store_ops::update_enrollment> ||
                                     std::is_same_v<T, store_ops::stop_enrollments> ||
                                     std::is_same_v<T, store_ops::advance_enrollment>) {
                    // The first round trip has ended and the second not
                    // begun: the connection is free for the op's own
                    // statements, inside the transaction.
                    pg_enrollments rows(c, sql_, ws_s);
                    apply_enrollment_op(rows, ops[oi], out);
                } else if constexpr (std::is_same_v<T, store_ops::add_webhook_delivery>) {
                    const auto& d = o.row;
                    auto r = c.run(sql_.wh_insert,
                                   pg::params{}
                                       .add(ws_s)
                                       .add(d.endpoint)
                                       .add(d.message_id)
                                       .add(d.event_key)
                                       .add(d.event_type)
                                       .add(d.payload)
                                       .add(micros(d.created_at))
                                       .add(micros(d.due_at == time_point{} ? d.created_at
                                                                            : d.due_at)));
                    out.applied = r.rows() == 1;
                    out.webhook = out.applied ? r.u64(0, 0) : 0;
                } else if constexpr (std::is_same_v<T, store_ops::end_webhook_attempt>) {
                    // A run of attempt ends (the writer groups many) is one
                    // statement: each row is ended only while its member
                    // holds it, and a row named twice ends the run, so the
                    // result is that of applying them one by one.
                    (void)o;
                    std::size_t end = oi;
                    std::set<std::uint64_t> ids;
                    pg::int_array rid, mem, st, due, status, at;
                    pg::text_array detail;
                    for (; end < ops.size(); ++end) {
                        const auto* e = std::get_if<store_ops::end_webhook_attempt>(&ops[end]);
                        if (!e || !ids.insert(e->id).second) break;
                        result.ops[end].applied = false;
                        if (e->member == 0 ||
                            e->id > static_cast<std::uint64_t>(
                                        std::numeric_limits<std::int64_t>::max()))
                            continue;
                        rid.push(static_cast<std::int64_t>(e->id));
                        mem.push(static_cast<std::int64_t>(std::min<std::uint64_t>(
                            e->member, std::numeric_limits<std::int64_t>::max())));
                        st.push(static_cast<int>(e->state));
                        due.push(micros(e->due_at));
                        status.push(e->status);
                        detail.push(e->detail);
                        at.push(micros(e->at));
                    }
                    batched_until = end;
                    if (detail.empty()) return;
                    auto r = c.run(sql_.wh_end, pg::params{}
                                                    .add(ws_s)
                                                    .add(rid.str())
                                                    .add(mem.str())
                                                    .add(st.str())
                                                    .add(due.str())
                                                    .add(status.str())
                                                    .add(detail.str())
                                                    .add(at.str()));
                    std::set<std::uint64_t> ended;
                    for (int i = 0; i < r.rows(); ++i) ended.insert(r.u64(i, 0));
                    for (std::size_t k = oi; k < end; ++k)
                        result.ops[k].applied = ended.count(
                            std::get<store_ops::end_webhook_attempt>(ops[k]).id) == 1;
                } else if constexpr (std::is_same_v<T, store_ops::fail_webhook_deliveries>) {
                    auto r = c.run(sql_.wh_fail, pg::params{}
                                                     .add(ws_s)
                                                     .add(o.endpoint)
                                                     .add(o.detail)
                                                     .add(micros(o.at)));
                    out.webhook = r.affected();
                } else if constexpr (std::is_same_v<T, store_ops::retry_webhook_deliveries>) {
                    auto r = c.run(sql_.wh_retry, pg::params{}
                                                      .add(ws_s)
                                                      .add(o.endpoint)
                                                      .add(micros(o.since))
                                                      .add(micros(o.at)));
                    out.webhook = r.affected();
                } else if constexpr (std::is_same_v<T, store_ops::put_object>) {
                    objects_out[{o.object.kind, o.object.id}] = o.object.json;
                    object_seq[{o.object.kind, o.object.id}] = change_seq;
                } else if constexpr (std::is_same_v<T, store_ops::delete_object>) {
                    objects_out[{o.kind, o.id}] = std::nullopt;
                    object_seq[{o.kind, o.id}] = change_seq;
                } else if constexpr (std::is_same_v<T, store_ops::put_suppression>) {
                    auto& slot = suppressions_out[{kind_code(o.entry.kind), o.entry.value}];
                    if (slot) superseded_out.push_back(std::move(*slot));
                    slot = o.entry;
                } else if constexpr (std::is_same_v<T, store_ops::delete_suppression>) {
                    auto& slot = suppressions_out[{kind_code(o.kind), o.value}];
                    if (slot) superseded_out.push_back(std::move(*slot));
                    slot = std::nullopt;
                } else if constexpr (std::is_same_v<T, store_ops::append_audit>) {
                    audit_record rec = o.record;
                    rec.change_seq = has_change ? change_seq : 0;
                    rec.seq = ++audit_seq;
                    rec.prev_hash = audit_head;
                    rec.hash = audit_hash(rec, o.key);
                    audit_head = rec.hash;
                    out.audit_seq = rec.seq;
                    audits_out.push_back(std::move(rec));
                } else if constexpr (std::is_same_v<T, store_ops::enqueue>) {
                    if (!o.item.idempotency_key.empty()) {
                        if (auto k = queued_by_key.find(o.item.idempotency_key);
                            k != queued_by_key.end()) {
                            out.queue.status = enqueue_status::duplicate;
                            out.queue.id = k->second;
                            out.queue.existing =
                                std::make_shared<const queued_send>(queued[k->second].item);
                            return;
                        }
                    }
                    if (next_queue_id >= fresh_queue_ids.size())
                        fail(errc::store_error, "postgres store: internal error: out of queue ids");
                    const auto id = fresh_queue_ids[next_queue_id++];
                    auto& m = queued[id];
                    m.item = o.item;
                    m.item.id = id;
                    m.item.due_at = o.item.not_before;
                    m.item.state = queue_state::waiting;
                    m.item.checks = 0;
                    m.item.claimed_by = 0;
                    m.item.send_id = 0;
                    m.item.updated_at = o.item.enqueued_at;
                    m.is_new = true;
                    if (!o.item.idempotency_key.empty()) queued_by_key[o.item.idempotency_key] = id;
                    out.queue.status = enqueue_status::enqueued;
                    out.queue.id = id;
                } else if constexpr (std::is_same_v<T, store_ops::defer_queued>) {
                    auto* m = held(o.id, o.member, out);
                    if (!m) return;
                    m->item.state = queue_state::waiting;
                    m->item.claimed_by = 0;
                    m->item.due_at = o.due_at;
                    m->item.wait_reason = o.wait_reason;
                    m->item.detail = o.detail;
                    m->item.updated_at = o.at;
                    m->dirty = true;
                } else if constexpr (std::is_same_v<T, store_ops::finish_queued>) {
                    auto* m = held(o.id, o.member, out);
                    if (!m) return;
                    m->item.state = o.state;
                    m->item.claimed_by = 0;
                    m->item.send_id = o.send_id;
                    m->item.detail = o.detail;
                    m->item.updated_at = o.at;
                    m->dirty = true;
                } else if constexpr (std::is_same_v<T, store_ops::cancel_queued>) {
                    out.applied = false;
                    out.queue.id = o.id;
                    auto it = queued.find(o.id);
                    if (it == queued.end() || it->second.item.id == 0) return;
                    auto& m = it->second;
                    out.queue.state = m.item.state;
                    if (m.item.state != queue_state::waiting) return;
                    m.item.state = queue_state::cancelled;
                    m.item.detail = o.detail;
                    m.item.updated_at = o.at;
                    m.dirty = true;
                    out.applied = true;
                } else if constexpr (std::is_same_v<T, store_ops::update_send>) {
                    auto it = sends.find(o.row.id);
                    if (it == sends.end() || it->second.row.id == 0 ||
                        it->second.row.owner != o.row.owner ||
                        (it->second.row.state != send_state::reserved &&
                         it->second.row.state != send_state::unknown)) {
                        out.applied = false;
                        return;
                    }
                    auto& s = it->second;
                    s.row.state = o.row.state;
                    s.row.updated_at = o.row.updated_at;
                    s.row.provider_message_id = o.row.provider_message_id;
                    s.row.detail = o.row.detail;
                    s.row.suppression_seq = o.row.suppression_seq;
                    s.dirty = true;
                    if (o.row.state == send_state::failed) release(s);
                } else if constexpr (std::is_same_v<T, store_ops::reserve_send>) {
                    auto& res = out.reservation;
                    send_state_mem* self = nullptr;
                    if (o.row.id == 0) {
                        if (!o.row.idempotency_key.empty()) {
                            if (auto k = by_key.find(o.row.idempotency_key); k != by_key.end()) {
                                res.status = reserve_status::duplicate;
                                res.existing =
                                    std::make_shared<const ledger_row>(sends[k->second].row);
                                return;
                            }
                        }
                    } else {
                        auto it = sends.find(o.row.id);
                        if (it == sends.end() || it->second.row.id == 0 ||
                            it->second.row.owner != o.row.owner ||
                            it->second.row.state != send_state::reserved) {
                            res.status = reserve_status::not_owner;
                            return;
                        }
                        self = &it->second;
                    }
                    const auto at = micros(o.row.reserved_at);
                    for (std::size_t ci = 0; ci < o.claims.size(); ++ci) {
                        auto& cl = o.claims[ci];
                        if (!cl.object_kind.empty()) {
                            auto s = object_seq.find({cl.object_kind, cl.object_id});
                            if (s != object_seq.end() && s->second > o.config_seq) {
                                res.status = reserve_status::stale_config;
                                res.claim = ci;
                                return;
                            }
                        }
                        auto& k = keys[cl.key];
                        if (cl.gap.count() > 0 && k.gap_until > at) {
                            res.status = reserve_status::gap;
                            res.claim = ci;
                            res.until = from_micros(k.gap_until);
                            return;
                        }
                        for (std::size_t wi = 0; wi < cl.windows.size(); ++wi) {
                            const auto& w = cl.windows[wi];
                            const auto f = floor_micros(w.floor);
                            std::uint64_t n = k.count(f);
                            std::vector<std::int64_t> own_stored, own_added;
                            if (self) {
                                for (auto& u : self->uses)
                                    if (u.key == cl.key && u.at >= f) {
                                        --n;
                                        (u.stored ? own_stored : own_added).push_back(u.at);
                                    }
                            }
                            if (n < w.max) continue;
                            res.status = reserve_status::cap_reached;
                            res.claim = ci;
                            res.window = wi;
                            if (w.max > 0) {
                                until_request u{oi, cl.key, f, n - w.max, {}, {}};
                                for (auto x : k.removed)
                                    if (x >= f) u.removed.push_back(x);
                                u.removed.insert(u.removed.end(), own_stored.begin(),
                                                 own_stored.end());
                                for (auto x : k.added)
                                    if (x >= f) u.added.push_back(x);
                                for (auto x : own_added)
                                    if (auto it = std::find(u.added.begin(), u.added.end(), x);
                                        it != u.added.end())
                                        u.added.erase(it);
                                untils.push_back(std::move(u));
                            }
                            return;
                        }
                    }
                    // Every claim fits: record.
                    if (!self) {
                        if (next_id >= fresh_ids.size())
                            fail(errc::store_error,
                                 "postgres store: internal error: out of send ids");
                        auto id = fresh_ids[next_id++];
                        auto& s = sends[id];
                        s.row = o.row;
                        s.row.id = id;
                        s.row.state = send_state::reserved;
                        s.is_new = true;
                        if (!o.row.idempotency_key.empty()) by_key[o.row.idempotency_key] = id;
                        self = &s;
                    } else {
                        release(*self);
                        auto& r = self->row;
                        r.mailbox = o.row.mailbox;
                        r.provider = o.row.provider;
                        r.pool = o.row.pool;
                        r.message_id = o.row.message_id;
                        r.attempt = o.row.attempt;
                        r.reserved_at = o.row.reserved_at;
                        r.updated_at = o.row.updated_at;
                        r.state = send_state::reserved;
                        r.detail = o.row.detail;
                        r.suppression_seq = o.row.suppression_seq;
                        self->dirty = true;
                    }
                    for (auto& cl : o.claims) {
                        auto& k = keys[cl.key];
                        k.add(at);
                        self->uses.push_back({cl.key, at, false});
                        if (cl.gap.count() > 0) {
                            k.gap_until = at + cl.gap.count();
                            k.gap_changed = true;
                        }
                    }
                    res.status = reserve_status::reserved;
                    res.send_id = self->row.id;
                }
            },
            ops[oi]);
    }
    if (has_change) result.change_seq = change_seq;

    // --- second round trip: the oldest uses refusals need, every write, COMMIT ---
    pg::connection::pipeline p2(c);
    std::size_t i_until = 0;
    if (!untils.empty()) {
        pg::text_array ks;
        pg::int_array fs, lims;
        for (auto& u : untils) {
            ks.push(u.key);
            fs.push(u.floor);
            lims.push(static_cast<std::int64_t>(u.k + u.removed.size() + 1));
        }
        i_until = p2.add(sql_.oldest_uses,
                         pg::params{}.add(ws_s).add(ks.str()).add(fs.str()).add(lims.str()));
    }
    {
        pg::int_array released;
        bool any_released = false;
        pg::int_array n_id, n_state, n_attempt, n_res, n_upd, n_owner, n_sseq;
        pg::text_array n_key, n_mailbox, n_provider, n_pool, n_recipient, n_msgid, n_pmid, n_detail;
        int n_new = 0;
        pg::int_array u_id, u_state, u_attempt, u_res, u_upd, u_sseq;
        pg::text_array u_mailbox, u_provider, u_pool, u_msgid, u_pmid, u_detail;
        int n_upd_rows = 0;
        pg::text_array use_key;
        pg::int_array use_at, use_send;
        int n_uses = 0;
        for (auto& [id, s] : sends) {
            if (s.uses_released) {
                released.push(static_cast<std::int64_t>(id));
                any_released = true;
            }
            for (auto& u : s.uses) {
                if (u.stored) continue;
                use_key.push(u.key);
                use_at.push(u.at);
                use_send.push(static_cast<std::int64_t>(id));
                ++n_uses;
            }
            auto& r = s.row;
            if (s.is_new) {
                ++n_new;
                n_id.push(static_cast<std::int64_t>(r.id));
                n_key.push(r.idempotency_key);
                n_mailbox.push(r.mailbox);
                n_provider.push(r.provider);
                n_pool.push(r.pool);
                n_recipient.push(r.recipient);
                n_msgid.push(r.message_id);
                n_state.push(state_code(r.state));
                n_attempt.push(r.attempt);
                n_res.push(micros(r.reserved_at));
                n_upd.push(micros(r.updated_at));
                n_pmid.push(r.provider_message_id);
                n_detail.push(r.detail);
                n_owner.push(static_cast<std::int64_t>(r.owner));
                n_sseq.push(static_cast<std::int64_t>(r.suppression_seq));
            } else if (s.dirty) {
                ++n_upd_rows;
                u_id.push(static_cast<std::int64_t>(r.id));
                u_mailbox.push(r.mailbox);
                u_provider.push(r.provider);
                u_pool.push(r.pool);
                u_msgid.push(r.message_id);
                u_state.push(state_code(r.state));
                u_attempt.push(r.attempt);
                u_res.push(micros(r.reserved_at));
                u_upd.push(micros(r.updated_at));
                u_pmid.push(r.provider_message_id);
                u_detail.push(r.detail);
                u_sseq.push(static_cast<std::int64_t>(r.suppression_seq));
            }
        }
        if (any_released || n_uses > 0)
            p2.add(sql_.write_uses, pg::params{}
                                        .add(ws_s)
                                        .add(released.str())
                                        .add(use_key.str())
                                        .add(use_at.str())
                                        .add(use_send.str()));
        if (n_new > 0)
            p2.add(sql_.insert_sends, pg::params{}
                                          .add(ws_s)
                                          .add(n_id.str())
                                          .add(n_key.str())
                                          .add(n_mailbox.str())
                                          .add(n_provider.str())
                                          .add(n_pool.str())
                                          .add(n_recipient.str())
                                          .add(n_msgid.str())
                                          .add(n_state.str())
                                          .add(n_attempt.str())
                                          .add(n_res.str())
                                          .add(n_upd.str())
                                          .add(n_pmid.str())
                                          .add(n_detail.str())
                                          .add(n_owner.str())
                                          .add(n_sseq.str()));
        if (n_upd_rows > 0)
            p2.add(sql_.update_sends, pg::params{}
                                          .add(ws_s)
                                          .add(u_id.str())
                                          .add(u_mailbox.str())
                                          .add(u_provider.str())
                                          .add(u_pool.str())
                                          .add(u_msgid.str())
                                          .add(u_state.str())
                                          .add(u_attempt.str())
                                          .add(u_res.str())
                                          .add(u_upd.str())
                                          .add(u_pmid.str())
                                          .add(u_detail.str())
                                          .add(u_sseq.str()));
        pg::text_array g_key;
        pg::int_array g_until;
        bool any_gap = false;
        for (auto& [name, k] : keys)
            if (k.gap_changed) {
                g_key.push(name);
                g_until.push(k.gap_until);
                any_gap = true;
            }
        if (any_gap)
            p2.add(sql_.set_gaps, pg::params{}.add(ws_s).add(g_key.str()).add(g_until.str()));
        if (!objects_out.empty()) {
            pg::text_array ok, oid, oj;
            for (auto& [key, json] : objects_out) {
                ok.push(key.first);
                oid.push(key.second);
                if (json)
                    oj.push(*json);
                else
                    oj.push_null();
            }
            p2.add(
                sql_.write_objects,
                pg::params{}.add(ws_s).add(ok.str()).add(oid.str()).add(oj.str()).add(change_seq));
        }
        if (!suppressions_out.empty()) {
            pg::int_array sk, sc;
            pg::text_array sv, sr, ss;
            for (auto& [key, e] : suppressions_out) {
                sk.push(key.first);
                sv.push(key.second);
                if (e) {
                    sr.push(std::to_string(reason_code(e->reason)));
                    ss.push(e->source);
                    sc.push(micros(e->created_at));
                } else {
                    sr.push_null();
                    ss.push("");
                    sc.push(0);
                }
            }
            p2.add(sql_.write_suppressions, pg::params{}
                                                .add(ws_s)
                                                .add(sk.str())
                                                .add(sv.str())
                                                .add(sr.str())
                                                .add(ss.str())
                                                .add(sc.str())
                                                .add(change_seq));
        }
        if (!superseded_out.empty())
            p2.add(sql_.write_superseded, entry_params(ws_s, superseded_out, change_seq));
        if (!audits_out.empty()) add_audit_records(p2, ws_s, audits_out);
        pg::int_array qn_id, qn_e, qn_nb, qn_du, qn_st, qn_c, qn_cb, qn_si, qn_u;
        pg::text_array qn_k, qn_p, qn_m, qn_d, qn_r, qn_o, qn_w, qn_dt;
        pg::int_array qu_id, qu_du, qu_st, qu_cb, qu_si, qu_u;
        pg::text_array qu_w, qu_dt;
        int qn = 0, qu = 0;
        for (auto& [id, m] : queued) {
            auto& q = m.item;
            if (m.is_new) {
                ++qn;
                qn_id.push(static_cast<std::int64_t>(id));
                qn_k.push(q.idempotency_key);
                qn_p.push(q.pool);
                qn_m.push(q.mailbox);
                qn_d.push(q.recipient_domain);
                qn_r.push(to_hex(q.request));
                qn_o.push(q.origin);
                qn_e.push(micros(q.enqueued_at));
                qn_nb.push(micros(q.not_before));
                qn_du.push(micros(q.due_at));
                qn_st.push(queue_state_code(q.state));
                qn_w.push(q.wait_reason);
                qn_c.push(static_cast<std::int64_t>(q.checks));
                qn_cb.push(static_cast<std::int64_t>(q.claimed_by));
                qn_si.push(static_cast<std::int64_t>(q.send_id));
                qn_dt.push(q.detail);
                qn_u.push(micros(q.updated_at));
            } else if (m.dirty) {
                ++qu;
                qu_id.push(static_cast<std::int64_t>(id));
                qu_du.push(micros(q.due_at));
                qu_st.push(queue_state_code(q.state));
                qu_w.push(q.wait_reason);
                qu_cb.push(static_cast<std::int64_t>(q.claimed_by));
                qu_si.push(static_cast<std::int64_t>(q.send_id));
                qu_dt.push(q.detail);
                qu_u.push(micros(q.updated_at));
            }
        }
        if (qn > 0)
            p2.add(sql_.insert_queued, pg::params{}
                                           .add(ws_s)
                                           .add(qn_id.str())
                                           .add(qn_k.str())
                                           .add(qn_p.str())
                                           .add(qn_m.str())
                                           .add(qn_d.str())
                                           .add(qn_r.str())
                                           .add(qn_o.str())
                                           .add(qn_e.str())
                                           .add(qn_nb.str())
                                           .add(qn_du.str())
                                           .add(qn_st.str())
                                           .add(qn_w.str())
                                           .add(qn_c.str())
                                           .add(qn_cb.str())
                                           .add(qn_si.str())
                                           .add(qn_dt.str())
                                           .add(qn_u.str()));
        if (qu > 0)
            p2.add(sql_.update_queued, pg::params{}
                                           .add(ws_s)
                                           .add(qu_id.str())
                                           .add(qu_du.str())
                                           .add(qu_st.str())
                                           .add(qu_w.str())
                                           .add(qu_cb.str())
                                           .add(qu_si.str())
                                           .add(qu_dt.str())
                                           .add(qu_u.str()));
    }
    if (!counts_out.empty()) {
        pg::int_array sc, dy, mt, n;
        pg::text_array id;
        for (const auto& [k, v] : counts_out) {
            sc.push(k.scope);
            id.push(k.id);
            dy.push(k.day);
            mt.push(k.metric);
            n.push(static_cast<std::int64_t>(v));
        }
        p2.add(sql_.dc_add,
               pg::params{}.add(ws_s).add(sc.str()).add(id.str()).add(dy.str()).add(mt.str()).add(
                   n.str()));
    }
    const auto i_commit = p2.add_simple("COMMIT");
    std::vector<pg::result> r2;
    try {
        r2 = p2.finish();
    } catch (pg::error& e) {
        // The server reporting a statement before COMMIT as the reason it
        // ended the session means COMMIT never ran; otherwise nobody knows.
        a.commit_sent = !(e.kind() == pg::failure_kind::connection_lost && !e.sqlstate().empty() &&
                          e.statement() >= 0 && static_cast<std::size_t>(e.statement()) < i_commit);
        if (e.kind() != pg::failure_kind::connection_lost) a.commit_sent = false;
        throw;
    }
    // A COMMIT in an aborted transaction answers ROLLBACK without an error.
    if (std::string_view{PQcmdStatus(r2[i_commit].get())} != "COMMIT")
        fail(errc::store_error, "postgres store: commit: the server rolled the transaction back");

    if (!untils.empty()) {
        auto& r = r2[i_until];
        for (std::size_t n = 0; n < untils.size(); ++n) {
            auto& u = untils[n];
            auto stored = pg::parse_int_array(r.text(static_cast<int>(n), 0));
            for (auto x : u.removed)
                if (auto it = std::find(stored.begin(), stored.end(), x); it != stored.end())
                    stored.erase(it);
            std::vector<std::int64_t> merged;
            std::sort(u.added.begin(), u.added.end());
            std::merge(stored.begin(), stored.end(), u.added.begin(), u.added.end(),
                       std::back_inserter(merged));
            if (u.k < merged.size()) result.ops[u.op].reservation.until = from_micros(merged[u.k]);
        }
    }
    return result;
}

}  // namespace

std::shared_ptr<store> open_postgres_store(const postgres_store_params& params) {
    // The name is spliced into statements (quoted), so it is kept to
    // characters that need no escaping anywhere.
    if (params.schema.empty() || params.schema.size() > 63 ||
        !std::all_of(params.schema.begin(), params.schema.end(), [](char ch) {
            return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                   (ch >= '0' && ch <= '9') || ch == '_';
        }))
        fail(errc::store_error,
             fmt::format("postgres store: schema name '{}' must be 1 to 63 letters, digits or "
                         "underscores",
                         params.schema));
    std::string conninfo = resolve_conninfo(params.conninfo);
    auto redact = secrets_of(conninfo);
    auto s = std::make_shared<postgres_store>(params, std::move(conninfo), std::move(redact));
    s->open();
    return s;
}

}  // namespace mailers
