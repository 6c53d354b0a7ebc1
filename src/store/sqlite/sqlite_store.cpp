#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mailers/audit.hpp>
#include <mailers/error.hpp>
#include <mailers/sqlite_store.hpp>
#include <mutex>
#include <numeric>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/count_sum.hpp"
#include "store/enrollment_rules.hpp"
#include "store/sqlite/common.hpp"
#include "store/sqlite/schema.hpp"

namespace mailers {
namespace detail::sqlite {
namespace {

// The store's own clock for member leases: every member of an SQLite file
// runs on the same host, so the system clock is one clock for all of them.
time_point store_now() noexcept {
    return std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
}

std::int64_t lease_end(time_point now, std::chrono::milliseconds lease) noexcept {
    return micros(now) + std::chrono::duration_cast<duration>(lease).count();
}

constexpr const char* send_columns =
    "id, idempotency_key, mailbox, provider, pool, recipient, message_id, state, attempt, "
    "reserved_at, updated_at, provider_message_id, detail, owner, "
    "suppression_seq";

ledger_row read_send(const SQLite::Statement& s) {
    ledger_row r;
    r.id = static_cast<std::uint64_t>(integer(s, 0));
    r.idempotency_key = text(s, 1);
    r.mailbox = text(s, 2);
    r.provider = text(s, 3);
    r.pool = text(s, 4);
    r.recipient = text(s, 5);
    r.message_id = text(s, 6);
    r.state = state_from_code(integer(s, 7));
    r.attempt = static_cast<std::uint32_t>(integer(s, 8));
    r.reserved_at = from_micros(integer(s, 9));
    r.updated_at = from_micros(integer(s, 10));
    r.provider_message_id = text(s, 11);
    r.detail = text(s, 12);
    r.owner = static_cast<std::uint64_t>(integer(s, 13));
    r.suppression_seq = static_cast<std::uint64_t>(integer(s, 14));
    return r;
}

constexpr const char* queue_columns =
    "id, idempotency_key, pool, mailbox, recipient_domain, request, origin, enqueued_at, "
    "not_before, due_at, state, wait_reason, checks, claimed_by, send_id, detail, updated_at";

queued_send read_queued(const SQLite::Statement& s) {
    queued_send q;
    q.id = static_cast<std::uint64_t>(integer(s, 0));
    q.idempotency_key = text(s, 1);
    q.pool = text(s, 2);
    q.mailbox = text(s, 3);
    q.recipient_domain = text(s, 4);
    {
        const SQLite::Column c = s.getColumn(5);
        const auto* p = static_cast<const char*>(c.getBlob());
        q.request.assign(p, static_cast<std::size_t>(c.getBytes()));
    }
    q.origin = text(s, 6);
    q.enqueued_at = from_micros(integer(s, 7));
    q.not_before = from_micros(integer(s, 8));
    q.due_at = from_micros(integer(s, 9));
    q.state = queue_state_from_code(integer(s, 10));
    q.wait_reason = text(s, 11);
    q.checks = static_cast<std::uint32_t>(integer(s, 12));
    q.claimed_by = static_cast<std::uint64_t>(integer(s, 13));
    q.send_id = static_cast<std::uint64_t>(integer(s, 14));
    q.detail = text(s, 15);
    q.updated_at = from_micros(integer(s, 16));
    return q;
}

// --- outbound webhooks
constexpr const char* outbox_columns =
    "id, endpoint, message_id, event_key, event_type, payload, created_at, due_at, state, "
    "attempts, claimed_by, last_status, detail, updated_at";

std::int64_t delivery_state_code(webhook_delivery_state s) noexcept {
    return static_cast<std::int64_t>(s);
}

webhook_delivery_state delivery_state_from_code(std::int64_t c) {
    if (c < 0 || c > 3) fail(errc::store_corrupt, fmt::format("webhook delivery state {}", c));
    return static_cast<webhook_delivery_state>(c);
}

webhook_delivery read_delivery(const SQLite::Statement& s) {
    webhook_delivery d;
    d.id = static_cast<std::uint64_t>(integer(s, 0));
    d.endpoint = text(s, 1);
    d.message_id = text(s, 2);
    d.event_key = text(s, 3);
    d.event_type = text(s, 4);
    d.payload = text(s, 5);
    d.created_at = from_micros(integer(s, 6));
    d.due_at = from_micros(integer(s, 7));
    d.state = delivery_state_from_code(integer(s, 8));
    d.attempts = static_cast<std::uint32_t>(integer(s, 9));
    d.claimed_by = static_cast<std::uint64_t>(integer(s, 10));
    d.last_status = static_cast<int>(integer(s, 11));
    d.detail = text(s, 12);
    d.updated_at = from_micros(integer(s, 13));
    return d;
}
// --- end outbound webhooks

constexpr const char* suppression_columns = "kind, value, reason, source, created_at";

// A statement's current row, as enrollment rules read rows.
struct sqlite_row {
    const SQLite::Statement& s;
    std::int64_t i64(int c) const { return integer(s, c); }
    std::string str(int c) const { return text(s, c); }
    bool null(int c) const { return s.getColumn(c).isNull(); }
};

enrollment read_enrollment_row(const SQLite::Statement& s) {
    return read_enrollment(sqlite_row{s});
}

// Binds `cells` from parameter `first` on.
void bind_cells(SQLite::Statement& q, const std::vector<enrollment_cell>& cells, int first) {
    for (std::size_t i = 0; i < cells.size(); ++i) {
        const int at = first + static_cast<int>(i);
        if (const auto* n = std::get_if<std::int64_t>(&cells[i]))
            q.bind(at, *n);
        else if (const auto* t = std::get_if<std::string>(&cells[i]))
            q.bind(at, *t);
        else
            q.bind(at);
    }
}

std::string placeholders(int first, int count) {
    std::string out;
    for (int i = 0; i < count; ++i) out += fmt::format("{}?{}", i ? ", " : "", first + i);
    return out;
}

// The statements enrollment ops and reads run, prepared once per store
// handle: the scheduler runs them for every planned step.
struct enrollment_statements {
    explicit enrollment_statements(SQLite::Database& db)
        : by_id(db, fmt::format("SELECT {} FROM enrollments WHERE workspace = ?1 AND id = ?2",
                                enrollment_columns)),
          by_key(db, fmt::format("SELECT {} FROM enrollments WHERE workspace = ?1 "
                                 "AND sequence_id = ?2 AND address = ?3",
                                 enrollment_columns)),
          live_matching(
              db, fmt::format("SELECT {} FROM enrollments WHERE workspace = ?1 AND state IN (0, 1, 5) "
                              "AND (?2 = '' OR address = ?2) AND (?3 = '' OR domain = ?3) "
                              "AND (?4 = '' OR sequence_id = ?4) AND (?5 = 0 OR id = ?5) "
                              "ORDER BY id",
                              enrollment_columns)),
          insert(db, fmt::format("INSERT INTO enrollments (workspace, {}) VALUES (?1, {}) "
                                 "ON CONFLICT (workspace, sequence_id, address) DO NOTHING",
                                 std::string_view(enrollment_columns).substr(4),
                                 placeholders(2, 24))),
          write(db, fmt::format("REPLACE INTO enrollments (workspace, {}) VALUES (?1, {})",
                                enrollment_columns, placeholders(2, 25))),
          cancel_waiting(db,
                         "UPDATE queue SET state = 3, detail = ?3, updated_at = ?4 "
                         "WHERE workspace = ?1 AND idempotency_key = ?2 AND state = 0"),
          remember_message(db,
                           "INSERT OR REPLACE INTO enrollment_messages (workspace, message_id, "
                           "enrollment) VALUES (?1, ?2, ?3)") {}
    SQLite::Statement by_id, by_key, live_matching, insert, write, cancel_waiting,
        remember_message;
};

// The enrollment rows of one workspace, read and written inside the
// commit's transaction (which holds the write lock).
class sqlite_enrollments final : public enrollment_rows {
public:
    sqlite_enrollments(SQLite::Database& db, enrollment_statements& sql, const std::string& ws)
        : db_(db), sql_(sql), ws_(ws) {}

    std::optional<enrollment> by_id(std::uint64_t id) override {
        if (id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        statement_use q(sql_.by_id);
        q->bind(1, ws_);
        q->bind(2, static_cast<std::int64_t>(id));
        if (!q->executeStep()) return std::nullopt;
        return read_enrollment_row(*q);
    }
    std::optional<enrollment> by_key(const std::string& sequence_id,
                                     const std::string& address) override {
        statement_use q(sql_.by_key);
        q->bind(1, ws_);
        q->bind(2, sequence_id);
        q->bind(3, address);
        if (!q->executeStep()) return std::nullopt;
        return read_enrollment_row(*q);
    }
    std::vector<enrollment> live_matching(const store_ops::stop_enrollments& op) override {
        statement_use q(sql_.live_matching);
        q->bind(1, ws_);
        q->bind(2, op.address);
        q->bind(3, op.domain);
        q->bind(4, op.sequence_id);
        q->bind(5, static_cast<std::int64_t>(
                       std::min<std::uint64_t>(op.id, std::numeric_limits<std::int64_t>::max())));
        std::vector<enrollment> out;
        while (q->executeStep()) out.push_back(read_enrollment_row(*q));
        return out;
    }
    std::optional<std::uint64_t> insert(const enrollment& e) override {
        auto cells = enrollment_cells(e);
        cells.erase(cells.begin());  // the id: AUTOINCREMENT gives it
        statement_use q(sql_.insert);
        q->bind(1, ws_);
        bind_cells(*q, cells, 2);
        if (q->exec() == 0) return std::nullopt;
        return static_cast<std::uint64_t>(db_.getLastInsertRowid());
    }
    void write(const enrollment& e) override {
        auto cells = enrollment_cells(e);
        statement_use q(sql_.write);
        q->bind(1, ws_);
        bind_cells(*q, cells, 2);
        q->exec();
    }
    void cancel_waiting(const std::string& key, const std::string& detail,
                        time_point at) override {
        statement_use q(sql_.cancel_waiting);
        q->bind(1, ws_);
        q->bind(2, key);
        q->bind(3, detail);
        q->bind(4, micros(at));
        q->exec();
    }
    void remember_message(const std::string& message_id, std::uint64_t id) override {
        statement_use q(sql_.remember_message);
        q->bind(1, ws_);
        q->bind(2, message_id);
        q->bind(3, static_cast<std::int64_t>(
                       std::min<std::uint64_t>(id, std::numeric_limits<std::int64_t>::max())));
        q->exec();
    }

private:
    SQLite::Database& db_;
    enrollment_statements& sql_;
    const std::string& ws_;
};

suppression_entry read_suppression(const SQLite::Statement& s) {
    suppression_entry e;
    e.kind = kind_from_code(integer(s, 0));
    e.value = text(s, 1);
    e.reason = reason_from_code(integer(s, 2));
    e.source = text(s, 3);
    e.created_at = from_micros(integer(s, 4));
    return e;
}

constexpr const char* audit_columns =
    R"(seq, at, actor, action, resource_type, resource_id, "before", "after", prev_hash, hash, )"
    R"(change_seq)";

audit_record read_audit(const SQLite::Statement& s) {
    audit_record r;
    r.seq = static_cast<std::uint64_t>(integer(s, 0));
    r.at = from_micros(integer(s, 1));
    r.actor = text(s, 2);
    r.action = text(s, 3);
    r.resource_type = text(s, 4);
    r.resource_id = text(s, 5);
    r.before = text(s, 6);
    r.after = text(s, 7);
    r.prev_hash = text(s, 8);
    r.hash = text(s, 9);
    r.change_seq = static_cast<std::uint64_t>(integer(s, 10));
    return r;
}

std::string describe(const store_op& op) {
    // Names the op without its payload: suppression values, recipients and
    // recipient-domain cap keys are personal data and must not end up in
    // logs through error messages.
    struct visitor {
        std::string operator()(const store_ops::put_object& o) const {
            return fmt::format("put_object {}/{}", o.object.kind, o.object.id);
        }
        std::string operator()(const store_ops::delete_object& o) const {
            return fmt::format("delete_object {}/{}", o.kind, o.id);
        }
        std::string operator()(const store_ops::put_suppression&) const {
            return "put_suppression";
        }
        std::string operator()(const store_ops::delete_suppression&) const {
            return "delete_suppression";
        }
        std::string operator()(const store_ops::reserve_send& o) const {
            return fmt::format("reserve_send id {}", o.row.id);
        }
        std::string operator()(const store_ops::update_send& o) const {
            return fmt::format("update_send id {}", o.row.id);
        }
        std::string operator()(const store_ops::append_audit&) const { return "append_audit"; }
        std::string operator()(const store_ops::enqueue&) const { return "enqueue"; }
        std::string operator()(const store_ops::defer_queued& o) const {
            return fmt::format("defer_queued id {}", o.id);
        }
        std::string operator()(const store_ops::finish_queued& o) const {
            return fmt::format("finish_queued id {}", o.id);
        }
        std::string operator()(const store_ops::cancel_queued& o) const {
            return fmt::format("cancel_queued id {}", o.id);
        }
        std::string operator()(const store_ops::record_key& o) const {
            return fmt::format("record_key {}", o.namespace_);
        }
        std::string operator()(const store_ops::enroll& o) const {
            return fmt::format("enroll in sequence {}", o.row.sequence_id);
        }
        std::string operator()(const store_ops::update_enrollment& o) const {
            return fmt::format("update_enrollment id {}", o.row.id);
        }
        std::string operator()(const store_ops::stop_enrollments&) const {
            return "stop_enrollments";
        }
        std::string operator()(const store_ops::advance_enrollment& o) const {
            return fmt::format("advance_enrollment id {}", o.id);
        }
        std::string operator()(const store_ops::add_webhook_delivery& o) const {
            return fmt::format("add_webhook_delivery for endpoint {}", o.row.endpoint);
        }
        std::string operator()(const store_ops::end_webhook_attempt& o) const {
            return fmt::format("end_webhook_attempt id {}", o.id);
        }
        std::string operator()(const store_ops::fail_webhook_deliveries& o) const {
            return fmt::format("fail_webhook_deliveries for endpoint {}", o.endpoint);
        }
        std::string operator()(const store_ops::retry_webhook_deliveries& o) const {
            return fmt::format("retry_webhook_deliveries for endpoint {}", o.endpoint);
        }
        std::string operator()(const store_ops::add_counts& o) const {
            return fmt::format("add_counts {} on day {}", to_string(o.metric), o.day);
        }
        std::string operator()(const store_ops::tally_soft_bounce&) const {
            return "tally_soft_bounce";
        }
    };
    return std::visit(visitor{}, op);
}

// Heterogeneous lookup, so that finding a cap key costs no allocation.
struct string_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};
using key_ids = std::unordered_map<std::string, std::int64_t, string_hash, std::equal_to<>>;

class sqlite_store final : public store {
public:
    explicit sqlite_store(const sqlite_store_params& params)
        : db_(open_database(params)),
          find_workspace_(db_, "SELECT number FROM workspaces WHERE name = ?1"),
          read_workspace_(db_,
                          "SELECT number, change_seq, audit_seq, audit_hash, last_send_id, "
                          "last_queue_id FROM workspaces WHERE name = ?1"),
          insert_workspace_(db_, "INSERT INTO workspaces (name) VALUES (?1)"),
          write_workspace_(db_,
                           "UPDATE workspaces SET change_seq = ?2, audit_seq = ?3, "
                           "audit_hash = ?4, last_send_id = ?5, last_queue_id = ?6 "
                           "WHERE number = ?1"),
          put_object_(db_,
                      "INSERT INTO objects (workspace, kind, id, json, seq) "
                      "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (workspace, kind, id) "
                      "DO UPDATE SET json = excluded.json, seq = excluded.seq"),
          delete_object_(db_, "DELETE FROM objects WHERE workspace = ?1 AND kind = ?2 AND id = ?3"),
          put_object_tombstone_(db_,
                                "INSERT INTO object_tombstones (workspace, kind, id, seq) "
                                "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (workspace, kind, id) "
                                "DO UPDATE SET seq = excluded.seq"),
          delete_object_tombstone_(
              db_, "DELETE FROM object_tombstones WHERE workspace = ?1 AND kind = ?2 AND id = ?3"),
          object_seq_(db_,
                      "SELECT seq FROM objects WHERE workspace = ?1 AND kind = ?2 AND id = ?3 "
                      "UNION ALL SELECT seq FROM object_tombstones "
                      "WHERE workspace = ?1 AND kind = ?2 AND id = ?3"),
          put_suppression_(db_,
                           "INSERT INTO suppressions (workspace, kind, value, reason, source, "
                           "created_at, seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) "
                           "ON CONFLICT (workspace, kind, value) DO UPDATE SET "
                           "reason = excluded.reason, source = excluded.source, "
                           "created_at = excluded.created_at, seq = excluded.seq"),
          delete_suppression_(
              db_, "DELETE FROM suppressions WHERE workspace = ?1 AND kind = ?2 AND value = ?3"),
          supersede_suppression_(
              db_,
              "INSERT INTO suppression_superseded (workspace, kind, value, reason, source, "
              "created_at, seq, by_seq) SELECT workspace, kind, value, reason, source, "
              "created_at, seq, ?4 FROM suppressions WHERE workspace = ?1 AND kind = ?2 AND "
              "value = ?3"),
          put_suppression_tombstone_(db_,
                                     "INSERT INTO suppression_tombstones (workspace, kind, value, "
                                     "seq) VALUES (?1, ?2, ?3, ?4) "
                                     "ON CONFLICT (workspace, kind, value) "
                                     "DO UPDATE SET seq = excluded.seq"),
          delete_suppression_tombstone_(db_,
                                        "DELETE FROM suppression_tombstones WHERE workspace = ?1 "
                                        "AND kind = ?2 AND value = ?3"),
          any_suppression_tombstone_(
              db_, "SELECT EXISTS (SELECT 1 FROM suppression_tombstones WHERE workspace = ?1)"),
          find_idempotency_key_(db_, fmt::format("SELECT {} FROM sends WHERE workspace = ?1 AND "
                                                 "idempotency_key = ?2",
                                                 send_columns)),
          insert_send_(db_,
                       "INSERT INTO sends (row_key, workspace, id, idempotency_key, mailbox, "
                       "provider, pool, recipient, message_id, state, attempt, reserved_at, "
                       "updated_at, provider_message_id, detail, owner, cap_keys, suppression_seq) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11, ?12, ?13, ?14, "
                       "?15, ?16, ?17)"),
          find_attempt_(db_,
                        "SELECT owner, state, reserved_at, cap_keys FROM sends WHERE row_key = ?1"),
          update_attempt_(db_,
                          "UPDATE sends SET mailbox = ?2, provider = ?3, pool = ?4, "
                          "message_id = ?5, attempt = ?6, reserved_at = ?7, updated_at = ?8, "
                          "state = 0, detail = ?9, cap_keys = ?10, suppression_seq = ?11 "
                          "WHERE row_key = ?1"),
          // An outcome leaves the key, the reservation time and the owner as
          // they were, so only the partial index of reserved sends changes.
          update_outcome_(db_,
                          "UPDATE sends SET state = ?3, updated_at = ?4, provider_message_id = ?5, "
                          "detail = ?6, suppression_seq = ?7 WHERE row_key = ?1 AND owner = ?2 "
                          "AND state IN (0, 3)"),
          update_outcome_returning_(
              db_,
              "UPDATE sends SET state = ?3, updated_at = ?4, provider_message_id = ?5, "
              "detail = ?6, suppression_seq = ?7 WHERE row_key = ?1 AND owner = ?2 AND "
              "state IN (0, 3) RETURNING reserved_at, cap_keys"),
          find_key_(db_, "SELECT id FROM cap_keys WHERE workspace = ?1 AND key = ?2"),
          insert_key_(db_, "INSERT INTO cap_keys (workspace, key) VALUES (?1, ?2)"),
          read_gap_(db_, "SELECT gap_until FROM cap_keys WHERE id = ?1"),
          write_gap_(db_, "UPDATE cap_keys SET gap_until = ?2 WHERE id = ?1"),
          // The window's first partial second from cap_uses, the rest from
          // the buckets of cap_counts (see the schema).
          count_uses_(db_,
                      "SELECT (SELECT count(*) FROM cap_uses WHERE key_id = ?1 AND at >= ?2 "
                      "AND at < ?3) + (SELECT coalesce(sum(n), 0) FROM cap_counts WHERE "
                      "key_id = ?1 AND level = 1 AND bucket >= ?4 AND bucket < ?5) + "
                      "(SELECT coalesce(sum(n), 0) FROM cap_counts WHERE key_id = ?1 AND "
                      "level = 2 AND bucket >= ?6 AND bucket < ?7) + "
                      "(SELECT coalesce(sum(n), 0) FROM cap_counts WHERE key_id = ?1 AND "
                      "level = 3 AND bucket >= ?8)"),
          nth_use_(db_,
                   "SELECT at FROM cap_uses WHERE key_id = ?1 AND at >= ?2 "
                   "ORDER BY at LIMIT 1 OFFSET ?3"),
          insert_use_(db_,
                      "INSERT INTO cap_uses (key_id, at, send_id, claim) VALUES (?1, ?2, ?3, ?4)"),
          delete_uses_(db_, "DELETE FROM cap_uses WHERE key_id = ?1 AND at = ?2 AND send_id = ?3"),
          add_count_(db_,
                     "INSERT INTO cap_counts (key_id, level, bucket, n) VALUES (?1, ?2, ?3, ?4) "
                     "ON CONFLICT (key_id, level, bucket) DO UPDATE SET n = n + excluded.n"),
          append_audit_(db_,
                        fmt::format("INSERT INTO audit (workspace, {}) VALUES (?1, ?2, ?3, ?4, "
                                    "?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                                    audit_columns)),
          find_send_(db_, fmt::format("SELECT {} FROM sends WHERE row_key = ?1", send_columns)),
          find_suppression_(db_, fmt::format("SELECT {} FROM suppressions "
                                             "WHERE workspace = ?1 AND kind = ?2 AND value = ?3",
                                             suppression_columns)),
          mark_unknown_(db_,
                        "UPDATE sends SET state = 3, updated_at = ?3, detail = ?4 "
                        "WHERE workspace = ?1 AND owner = ?2 AND state = 0"),
          delete_member_(db_, "DELETE FROM members WHERE workspace = ?1 AND id = ?2"),
          savepoint_failover_(db_, "SAVEPOINT failover"),
          rollback_failover_(db_, "ROLLBACK TO failover"),
          release_failover_(db_, "RELEASE failover"),
          find_queue_key_(db_, fmt::format("SELECT {} FROM queue WHERE workspace = ?1 AND "
                                           "idempotency_key = ?2",
                                           queue_columns)),
          insert_queued_(db_,
                         "INSERT INTO queue (workspace, id, idempotency_key, pool, mailbox, "
                         "recipient_domain, request, origin, enqueued_at, not_before, due_at, "
                         "state, wait_reason, checks, claimed_by, send_id, detail, updated_at) "
                         "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, 0, ?11, 0, 0, 0, "
                         "?12, ?9)"),
          queued_holder_(db_,
                         "SELECT state, claimed_by FROM queue WHERE workspace = ?1 AND id = ?2"),
          defer_queued_(db_,
                        "UPDATE queue SET state = 0, claimed_by = 0, due_at = ?3, "
                        "wait_reason = ?4, detail = ?5, updated_at = ?6 "
                        "WHERE workspace = ?1 AND id = ?2"),
          finish_queued_(db_,
                         "UPDATE queue SET state = ?3, claimed_by = 0, send_id = ?4, detail = ?5, "
                         "updated_at = ?6 WHERE workspace = ?1 AND id = ?2"),
          cancel_queued_(db_,
                         "UPDATE queue SET state = 3, detail = ?3, updated_at = ?4 "
                         "WHERE workspace = ?1 AND id = ?2"),
          record_key_(db_,
                      "INSERT INTO recorded_keys (workspace, namespace, key, recorded_at, "
                      "expires_at) VALUES (?1, ?2, ?3, ?5, ?4) "
                      "ON CONFLICT (workspace, namespace, key) DO UPDATE SET "
                      "recorded_at = excluded.recorded_at, expires_at = excluded.expires_at "
                      "WHERE recorded_keys.expires_at <= excluded.recorded_at"),
          live_member_(db_,
                       "SELECT EXISTS (SELECT 1 FROM members WHERE workspace = ?1 AND id = ?2 "
                       "AND lease_until > ?3)"),
          claim_queued_(db_,
                        fmt::format("UPDATE queue SET state = 1, claimed_by = ?2, "
                                    "checks = checks + 1, updated_at = ?3 WHERE workspace = ?1 "
                                    "AND id IN (SELECT id FROM queue WHERE workspace = ?1 AND "
                                    "state = 0 AND due_at <= ?3 ORDER BY due_at, id LIMIT ?4) "
                                    "RETURNING {}",
                                    queue_columns)),
          find_queued_(db_, fmt::format("SELECT {} FROM queue WHERE workspace = ?1 AND id = ?2",
                                        queue_columns)),
          requeue_(db_,
                   "UPDATE queue SET state = 0, claimed_by = 0, detail = ?3, updated_at = ?4 "
                   "WHERE workspace = ?1 AND state = 1 AND claimed_by = ?2"),
          // --- outbound webhooks
          insert_delivery_(db_,
                           "INSERT INTO webhook_outbox (workspace, endpoint, message_id, "
                           "event_key, event_type, payload, created_at, due_at, state, attempts, "
                           "claimed_by, last_status, detail, updated_at) VALUES (?1, ?2, ?3, ?4, "
                           "?5, ?6, ?7, ?8, 0, 0, 0, 0, '', ?7) ON CONFLICT (workspace, endpoint, "
                           "event_key) DO NOTHING RETURNING id"),
          end_attempt_(db_,
                       "UPDATE webhook_outbox SET state = ?4, claimed_by = 0, due_at = ?5, "
                       "last_status = ?6, detail = ?7, updated_at = ?8 WHERE workspace = ?1 AND "
                       "id = ?2 AND state = 1 AND claimed_by = ?3"),
          claim_deliveries_(db_,
                            fmt::format("UPDATE webhook_outbox SET state = 1, claimed_by = ?2, "
                                        "attempts = attempts + 1, updated_at = ?3 WHERE id IN "
                                        "(SELECT id FROM webhook_outbox WHERE workspace = ?1 AND "
                                        "state = 0 AND due_at <= ?3 ORDER BY due_at, id LIMIT ?4) "
                                        "RETURNING {}",
                                        outbox_columns)),
          requeue_deliveries_(db_,
                              "UPDATE webhook_outbox SET state = 0, claimed_by = 0, detail = ?3, "
                              "updated_at = ?4 WHERE workspace = ?1 AND state = 1 AND "
                              "claimed_by = ?2") {}

    store_snapshot load(std::string_view workspace, time_point since) override {
        return load_state(workspace, since, nullptr);
    }

    store_snapshot load_keys(
        std::string_view workspace, time_point since,
        const std::function<void(suppression_kind, std::string_view)>& key) override {
        return load_state(workspace, since, &key);
    }

private:
    // `key`, when given, receives each suppression's key in place of the
    // snapshot's entries.
    store_snapshot load_state(
        std::string_view workspace, time_point since,
        const std::function<void(suppression_kind, std::string_view)>* key) {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("load", [&] {
            store_snapshot snap;
            // One read transaction: every part of the snapshot comes from the
            // same committed state even while another process writes.
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::DEFERRED);
            snap.change_seq = change_seq(ws);
            {
                SQLite::Statement q(db_,
                                    "SELECT kind, id, json FROM objects WHERE workspace = ?1 "
                                    "ORDER BY kind, id");
                q.bindNoCopy(1, ws);
                while (q.executeStep())
                    snap.objects.push_back({text(q, 0), text(q, 1), text(q, 2)});
            }
            if (key) {
                // Only the key columns: the rest of a row is never decoded.
                SQLite::Statement q(db_,
                                    "SELECT kind, value FROM suppressions WHERE workspace = ?1");
                q.bindNoCopy(1, ws);
                while (q.executeStep()) {
                    const auto value = q.getColumn(1);
                    const auto* v = static_cast<const char*>(value.getBlob());
                    (*key)(kind_from_code(integer(q, 0)),
                           std::string_view(v, static_cast<std::size_t>(value.getBytes())));
                }
            } else {
                SQLite::Statement q(db_,
                                    fmt::format("SELECT {} FROM suppressions WHERE workspace = "
                                                "?1 ORDER BY kind, value",
                                                suppression_columns));
                q.bindNoCopy(1, ws);
                while (q.executeStep()) snap.suppressions.push_back(read_suppression(q));
            }
            {
                // Written as a union of two index searches: with an OR, the
                // planner scans the workspace's whole ledger. "state = 0" is
                // spelled out so that the partial index applies.
                SQLite::Statement q(
                    db_, fmt::format("SELECT {} FROM sends WHERE row_key IN ("
                                     "SELECT row_key FROM sends WHERE workspace = ?1 AND "
                                     "reserved_at >= ?2 UNION "
                                     "SELECT row_key FROM sends WHERE workspace = ?1 AND state = 0"
                                     ") ORDER BY row_key",
                                     send_columns));
                q.bindNoCopy(1, ws);
                q.bind(2, micros(since));
                while (q.executeStep()) snap.recent_sends.push_back(read_send(q));
            }
            tx.commit();
            return snap;
        });
    }

public:
    commit_result commit(std::string_view workspace, std::span<const store_op> ops) override {
        if (ops.empty()) return {};
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        commit_result result;
        result.ops.resize(ops.size());
        batch b{ws};
        try {
            guarded("commit", [&] {
                // IMMEDIATE takes the write lock up front: every decision
                // below (counts, ids, the audit head) is made on state no
                // other connection can change before COMMIT. The transaction
                // rolls back in its destructor unless committed.
                SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
                read_workspace(b);
                // The change seq is taken before any op runs, so an audit
                // record appended ahead of the changes it describes carries
                // it too.
                if (std::any_of(ops.begin(), ops.end(), publishes_change)) publish(b);
                // Ops below skip_until are skipped: a duplicate record_key
                // guards them. Those below guarded_until are guarded by one.
                std::size_t skip_until = 0, guarded_until = 0;
                auto apply_op = [&](std::size_t i) {
                    const auto* record = std::get_if<store_ops::record_key>(&ops[i]);
                    if (record && i < guarded_until)
                        fail_op(i, ops, "a record_key cannot be guarded by another");
                    if (i < skip_until || !previous_applied(ops, i, result)) {
                        result.ops[i].applied = false;
                        return;
                    }
                    try {
                        std::visit([&](const auto& op) { apply(b, op, result.ops[i]); }, ops[i]);
                    } catch (const SQLite::Exception& e) {
                        fail_op(i, ops, e.what());
                    } catch (const invalid_op& e) {
                        fail_op(i, ops, e.what());
                    }
                    if (record) {
                        if (record->guards > ops.size() - i - 1)
                            fail_op(i, ops, "its guards reach past the last op");
                        guarded_until = i + 1 + record->guards;
                        if (!result.ops[i].applied) skip_until = guarded_until;
                    }
                };
                for (std::size_t i = 0; i < ops.size();) {
                    std::size_t end = i;
                    while (end < ops.size() && suppression_key(ops[end])) ++end;
                    if (end - i < sorted_run_threshold) {
                        for (const std::size_t stop = std::max(end, i + 1); i < stop; ++i)
                            apply_op(i);
                        continue;
                    }
                    // A long run of suppression ops (an import) is applied in
                    // key order: B-tree inserts in key order are several
                    // times cheaper than in random order. Ops on different
                    // keys commute and the stable sort keeps those on one
                    // key in their order, so the result is the same as
                    // applying the run as given.
                    order_.resize(end - i);
                    std::iota(order_.begin(), order_.end(), i);
                    std::stable_sort(order_.begin(), order_.end(),
                                     [&](std::size_t x, std::size_t y) {
                                         return *suppression_key(ops[x]) < *suppression_key(ops[y]);
                                     });
                    for (const std::size_t k : order_) apply_op(k);
                    i = end;
                }
                write_counts(b);
                if (b.dirty) write_workspace(b);
                tx.commit();
            });
        } catch (...) {
            // Numbers given inside a rolled-back transaction may be given to
            // something else by the next writer.
            if (b.created_number) numbers_.erase(ws);
            if (b.created_key) keys_.erase(b.number);
            throw;
        }
        result.change_seq = b.published ? b.change_seq : 0;
        return result;
    }

    change_set changes_since(std::string_view workspace, std::uint64_t after) override {
        return changes_since_skipping(workspace, after, 0);
    }

    change_set changes_since_skipping(std::string_view workspace, std::uint64_t after,
                                      std::uint64_t skip_seq) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("changes_since", [&] {
            change_set out;
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::DEFERRED);
            out.seq = change_seq(ws);
            if (out.seq <= after) return out;
            const std::int64_t from = integer_key(after, "change seq");
            {
                SQLite::Statement q(db_,
                                    "SELECT kind, id, json FROM objects WHERE workspace = ?1 "
                                    "AND seq > ?2");
                q.bindNoCopy(1, ws);
                q.bind(2, from);
                while (q.executeStep()) out.objects.push_back({text(q, 0), text(q, 1), text(q, 2)});
            }
            {
                SQLite::Statement q(db_,
                                    "SELECT kind, id FROM object_tombstones WHERE workspace = ?1 "
                                    "AND seq > ?2");
                q.bindNoCopy(1, ws);
                q.bind(2, from);
                while (q.executeStep()) out.deleted_objects.emplace_back(text(q, 0), text(q, 1));
            }
            {
                SQLite::Statement q(db_, fmt::format("SELECT {} FROM suppressions WHERE "
                                                     "workspace = ?1 AND seq > ?2 AND seq <> ?3",
                                                     suppression_columns));
                q.bindNoCopy(1, ws);
                q.bind(2, from);
                q.bind(3, integer_key_or_max(skip_seq));
                while (q.executeStep()) out.suppressions.push_back(read_suppression(q));
            }
            {
                SQLite::Statement q(db_,
                                    "SELECT kind, value FROM suppression_tombstones WHERE "
                                    "workspace = ?1 AND seq > ?2");
                q.bindNoCopy(1, ws);
                q.bind(2, from);
                while (q.executeStep())
                    out.deleted_suppressions.emplace_back(kind_from_code(integer(q, 0)),
                                                          text(q, 1));
            }
            tx.commit();
            return out;
        });
    }

    suppression_import_result import_suppressions(std::string_view workspace,
                                                  const suppression_import& import) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        suppression_import_result result;
        batch b{ws};
        try {
            guarded("import_suppressions", [&] {
                // One write transaction for the whole import, as for a commit.
                SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
                read_workspace(b);
                // Entries go to a staging table in arrival order (appending
                // to a rowid table is cheap), then into the suppressions in
                // key order, which is several times cheaper for the B-tree
                // than arrival order. The sort is SQLite's own, spilling to
                // temporary files, so memory stays bounded by the page
                // cache. Ordering by rowid within a key keeps the later
                // entry, as a commit of the same puts in order would.
                db_.exec(
                    "CREATE TEMP TABLE IF NOT EXISTS import_staging (kind INTEGER NOT NULL, "
                    "value TEXT NOT NULL, reason INTEGER NOT NULL, source TEXT NOT NULL, "
                    "created_at INTEGER NOT NULL)");
                db_.exec("DELETE FROM temp.import_staging");
                {
                    SQLite::Statement stage(db_,
                                            "INSERT INTO temp.import_staging VALUES "
                                            "(?1, ?2, ?3, ?4, ?5)");
                    import.entries([&](std::span<const suppression_entry> chunk) {
                        for (const auto& e : chunk) {
                            try {
                                stage.bind(1, kind_code(e.kind));
                                stage.bind(3, reason_code(e.reason));
                            } catch (const invalid_op& x) {
                                fail(errc::store_error,
                                     fmt::format("sqlite store: import_suppressions: entry {}: "
                                                 "{}; nothing was imported",
                                                 result.entries + 1, x.what()));
                            }
                            stage.bindNoCopy(2, e.value);
                            stage.bindNoCopy(4, e.source);
                            stage.bind(5, micros(e.created_at));
                            stage.exec();
                            stage.reset();
                            ++result.entries;
                        }
                    });
                }
                if (result.entries > 0) {
                    const std::int64_t seq = publish(b);
                    // The rows the import replaces are kept before it
                    // writes over them.
                    SQLite::Statement keep(
                        db_,
                        "INSERT INTO suppression_superseded (workspace, kind, value, reason, "
                        "source, created_at, seq, by_seq) SELECT workspace, kind, value, reason, "
                        "source, created_at, seq, ?2 FROM suppressions WHERE workspace = ?1 AND "
                        "(kind, value) IN (SELECT kind, value FROM temp.import_staging) "
                        "ORDER BY kind, value");
                    keep.bindNoCopy(1, ws);
                    keep.bind(2, seq);
                    keep.exec();
                    SQLite::Statement put(
                        db_,
                        "INSERT INTO suppressions (workspace, kind, value, reason, source, "
                        "created_at, seq) SELECT ?1, kind, value, reason, source, created_at, ?2 "
                        "FROM temp.import_staging WHERE true ORDER BY kind, value, rowid "
                        "ON CONFLICT (workspace, kind, value) DO UPDATE SET "
                        "reason = excluded.reason, source = excluded.source, "
                        "created_at = excluded.created_at, seq = excluded.seq");
                    put.bindNoCopy(1, ws);
                    put.bind(2, seq);
                    put.exec();
                    keep_import_duplicates(ws, seq, result.entries);
                    statement_use any(any_suppression_tombstone_);
                    any->bindNoCopy(1, ws);
                    if (any->executeStep() && integer(*any, 0) != 0) {
                        SQLite::Statement untomb(
                            db_,
                            "DELETE FROM suppression_tombstones WHERE workspace = ?1 AND "
                            "(kind, value) IN (SELECT kind, value FROM temp.import_staging)");
                        untomb.bindNoCopy(1, ws);
                        untomb.exec();
                    }
                    result.change_seq = b.change_seq;
                }
                op_result audited;
                apply(b, import.audit(result.entries), audited);
                result.audit_seq = audited.audit_seq;
                write_workspace(b);
                db_.exec("DELETE FROM temp.import_staging");
                tx.commit();
            });
        } catch (...) {
            if (b.created_number) numbers_.erase(ws);
            // The staging rows went with the rollback; the table stays for
            // the next import.
            throw;
        }
        return result;
    }

    // --- erasure of a person ---------------------------------------------

    person_erasure_result erase_person(std::string_view workspace,
                                       const person_erasure& erasure) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        person_erasure_result result;
        batch b{ws};
        try {
            guarded("erase_person", [&] {
                SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
                read_workspace(b);
                erase_rows(ws, erasure, result.counts);
                std::vector<erased_row> removed = erase_suppression_rows(ws, erasure.keys);
                result.counts.suppression_rows = removed.size();
                if (!erasure.entries.empty()) {
                    op_result unused;
                    for (const auto& e : erasure.entries)
                        apply(b, store_ops::put_suppression{e}, unused);
                    result.change_seq = b.change_seq;
                }
                if (erasure.audit) {
                    op_result audited;
                    apply(b, erasure.audit(result.counts, removed), audited);
                    result.audit_seq = audited.audit_seq;
                }
                if (b.dirty) write_workspace(b);
                tx.commit();
            });
        } catch (...) {
            if (b.created_number) numbers_.erase(ws);
            throw;
        }
        return result;
    }

    std::size_t purge_sends(std::string_view workspace, time_point before) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("purge_sends", [&] {
            SQLite::Statement q(db_, "DELETE FROM sends WHERE workspace = ?1 AND reserved_at < ?2 "
                                     "AND state <> 0");
            q.bindNoCopy(1, ws);
            q.bind(2, micros(before));
            return static_cast<std::size_t>(q.exec());
        });
    }

    // --- audit retention -------------------------------------------------

    audit_purge_result purge_audit(std::string_view workspace, const audit_purge& purge) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        audit_purge_result result;
        batch b{ws};
        try {
            guarded("purge_audit", [&] {
                // IMMEDIATE, as a commit: the cut and the anchor are decided
                // on a chain no other connection appends to meanwhile.
                SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
                read_workspace(b);
                result.anchor = read_anchor(ws);
                if (b.audit_seq == 0) return;
                // The first record too new to go, bounded by the newest
                // record and keep_from.
                std::uint64_t cut = b.audit_seq;
                if (purge.keep_from != 0) cut = std::min(cut, purge.keep_from);
                {
                    SQLite::Statement q(db_,
                                        "SELECT min(seq) FROM audit WHERE workspace = ?1 AND "
                                        "at >= ?2");
                    q.bindNoCopy(1, ws);
                    q.bind(2, micros(purge.before));
                    if (q.executeStep() && !q.getColumn(0).isNull())
                        cut = std::min(cut, static_cast<std::uint64_t>(integer(q, 0)));
                }
                const std::uint64_t first = std::max<std::uint64_t>(result.anchor.seq, 1);
                if (cut <= first) return;
                audit_anchor anchor;
                anchor.seq = cut;
                anchor.at = purge.at;
                {
                    SQLite::Statement q(db_,
                                        "SELECT prev_hash, EXISTS (SELECT 1 FROM audit WHERE "
                                        "workspace = ?1 AND seq < ?2 AND action = ?3) "
                                        "FROM audit WHERE workspace = ?1 AND seq = ?2");
                    q.bindNoCopy(1, ws);
                    q.bind(2, static_cast<std::int64_t>(cut));
                    q.bind(3, std::string(audit_key_action));
                    if (!q.executeStep())
                        fail(errc::store_error,
                             fmt::format("sqlite store: purge_audit: audit record {} of "
                                         "workspace '{}' is missing",
                                         cut, ws));
                    anchor.hash = text(q, 0);
                    anchor.keyed = result.anchor.keyed || integer(q, 1) != 0;
                }
                SQLite::Statement del(db_, "DELETE FROM audit WHERE workspace = ?1 AND seq < ?2");
                del.bindNoCopy(1, ws);
                del.bind(2, static_cast<std::int64_t>(cut));
                result.purged = static_cast<std::uint64_t>(del.exec());
                SQLite::Statement put(db_,
                                      "UPDATE workspaces SET audit_anchor_seq = ?2, "
                                      "audit_anchor_hash = ?3, audit_anchor_at = ?4, "
                                      "audit_anchor_keyed = ?5 WHERE name = ?1");
                put.bindNoCopy(1, ws);
                put.bind(2, static_cast<std::int64_t>(anchor.seq));
                put.bindNoCopy(3, anchor.hash);
                put.bind(4, micros(anchor.at));
                put.bind(5, anchor.keyed ? 1 : 0);
                put.exec();
                result.anchor = anchor;
                if (purge.audit) {
                    op_result audited;
                    apply(b, purge.audit(anchor, result.purged), audited);
                    result.audit_seq = audited.audit_seq;
                }
                write_workspace(b);
                tx.commit();
            });
        } catch (...) {
            if (b.created_number) numbers_.erase(ws);
            throw;
        }
        return result;
    }

    audit_anchor find_audit_anchor(std::string_view workspace) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("find_audit_anchor", [&] { return read_anchor(ws); });
    }

private:
    audit_anchor read_anchor(const std::string& ws) {
        SQLite::Statement q(db_,
                            "SELECT audit_anchor_seq, audit_anchor_hash, audit_anchor_at, "
                            "audit_anchor_keyed FROM workspaces WHERE name = ?1");
        q.bindNoCopy(1, ws);
        audit_anchor a;
        if (!q.executeStep()) return a;
        a.seq = static_cast<std::uint64_t>(integer(q, 0));
        a.hash = text(q, 1);
        a.at = from_micros(integer(q, 2));
        a.keyed = integer(q, 3) != 0;
        return a;
    }

    // Rows of `table` (an id column and one text column) whose text holds
    // an '@' and mentions the person, by the caller's predicate.
    std::vector<std::int64_t> mentioning(const std::string& ws, const char* table,
                                         const char* id_col, const char* text_col,
                                         const person_erasure& erasure,
                                         const char* extra = "") {
        std::vector<std::int64_t> ids;
        SQLite::Statement q(db_, fmt::format("SELECT {0}, CAST({1} AS TEXT) FROM {2} WHERE "
                                             "workspace = ?1 AND instr({1}, '@') > 0{3}",
                                             id_col, text_col, table, extra));
        q.bindNoCopy(1, ws);
        while (q.executeStep()) {
            const char* t = q.getColumn(1).getText();
            if (erasure.mentions(std::string_view(t, q.getColumn(1).getBytes())))
                ids.push_back(integer(q, 0));
        }
        return ids;
    }

    void erase_rows(const std::string& ws, const person_erasure& erasure, erasure_counts& n) {
        const int nkeys = static_cast<int>(erasure.keys.size());
        const std::string in_keys = nkeys ? placeholders(2, nkeys) : std::string("NULL");
        auto bind_keys = [&](SQLite::Statement& q) {
            q.bindNoCopy(1, ws);
            for (int i = 0; i < nkeys; ++i) q.bindNoCopy(2 + i, erasure.keys[i]);
        };
        const std::int64_t at = micros(erasure.at);
        // The ledger: rows stay (their ids and cap uses count), the person goes.
        {
            std::set<std::int64_t> rows;
            SQLite::Statement q(db_, fmt::format("SELECT row_key FROM sends WHERE workspace = ?1 "
                                                 "AND recipient IN ({})",
                                                 in_keys));
            bind_keys(q);
            while (q.executeStep()) rows.insert(integer(q, 0));
            for (auto id : mentioning(ws, "sends", "row_key", "detail", erasure)) rows.insert(id);
            for (auto id : mentioning(ws, "sends", "row_key", "idempotency_key", erasure))
                rows.insert(id);
            SQLite::Statement u(db_,
                                "UPDATE sends SET recipient = '', detail = '', idempotency_key = "
                                "NULL WHERE row_key = ?1");
            for (auto id : rows) {
                u.bind(1, id);
                u.exec();
                u.reset();
            }
            n.sends = rows.size();
        }
        // The queue: the request goes; a waiting item is cancelled with it.
        {
            std::set<std::int64_t> ids;
            {
                SQLite::Statement q(db_, "SELECT id, request FROM queue WHERE workspace = ?1");
                q.bindNoCopy(1, ws);
                while (q.executeStep()) {
                    const auto col = q.getColumn(1);
                    if (erasure.request_mentions(std::string_view(
                            static_cast<const char*>(col.getBlob()), col.getBytes())))
                        ids.insert(integer(q, 0));
                }
            }
            for (auto id : mentioning(ws, "queue", "id", "idempotency_key", erasure))
                ids.insert(id);
            SQLite::Statement u(
                db_,
                "UPDATE queue SET request = X'', idempotency_key = NULL, detail = 'erased', "
                "state = CASE state WHEN 0 THEN 3 ELSE state END, updated_at = ?3 "
                "WHERE workspace = ?1 AND id = ?2");
            SQLite::Statement before(db_, "SELECT state FROM queue WHERE workspace = ?1 AND id = ?2");
            for (auto id : ids) {
                before.bindNoCopy(1, ws);
                before.bind(2, id);
                if (before.executeStep() && integer(before, 0) == 0) ++n.queue_cancelled;
                before.reset();
                u.bindNoCopy(1, ws);
                u.bind(2, id);
                u.bind(3, at);
                u.exec();
                u.reset();
            }
            n.queued = ids.size();
        }
        // Enrollments of the address, and which messages they sent.
        {
            std::vector<std::int64_t> ids;
            SQLite::Statement q(db_, fmt::format("SELECT id FROM enrollments WHERE workspace = ?1 "
                                                 "AND address IN ({})",
                                                 in_keys));
            bind_keys(q);
            while (q.executeStep()) ids.push_back(integer(q, 0));
            SQLite::Statement m(db_, "DELETE FROM enrollment_messages WHERE workspace = ?1 AND "
                                     "enrollment = ?2");
            SQLite::Statement d(db_, "DELETE FROM enrollments WHERE id = ?1");
            for (auto id : ids) {
                m.bindNoCopy(1, ws);
                m.bind(2, id);
                m.exec();
                m.reset();
                d.bind(1, id);
                d.exec();
                d.reset();
            }
            n.enrollments = ids.size();
        }
        // Outbound webhook deliveries carrying the person's events.
        {
            auto ids = mentioning(ws, "webhook_outbox", "id", "payload", erasure);
            SQLite::Statement d(db_, "DELETE FROM webhook_outbox WHERE id = ?1");
            for (auto id : ids) {
                d.bind(1, id);
                d.exec();
                d.reset();
            }
            n.webhook_deliveries = ids.size();
        }
        {
            std::vector<std::pair<std::string, std::string>> keys;
            SQLite::Statement q(db_, "SELECT namespace, key FROM recorded_keys WHERE "
                                     "workspace = ?1 AND instr(key, '@') > 0");
            q.bindNoCopy(1, ws);
            while (q.executeStep())
                if (erasure.mentions(q.getColumn(1).getString()))
                    keys.emplace_back(text(q, 0), text(q, 1));
            SQLite::Statement d(db_, "DELETE FROM recorded_keys WHERE workspace = ?1 AND "
                                     "namespace = ?2 AND key = ?3");
            for (const auto& [ns, key] : keys) {
                d.bindNoCopy(1, ws);
                d.bindNoCopy(2, ns);
                d.bindNoCopy(3, key);
                d.exec();
                d.reset();
            }
            n.recorded_keys = keys.size();
        }
        {
            SQLite::Statement d(db_, fmt::format("DELETE FROM soft_bounces WHERE workspace = ?1 "
                                                 "AND address IN ({})",
                                                 in_keys));
            bind_keys(d);
            n.soft_bounces = static_cast<std::uint64_t>(d.exec());
        }
    }

    // Removes every version of the person's address entries, current and
    // replaced, and their tombstones: no history of them is kept.
    std::vector<erased_row> erase_suppression_rows(const std::string& ws,
                                                   const std::vector<std::string>& keys) {
        std::vector<erased_row> removed;
        if (keys.empty()) return removed;
        const int nkeys = static_cast<int>(keys.size());
        const std::string in_keys = placeholders(2, nkeys);
        auto run = [&](const std::string& sql, bool collect) {
            SQLite::Statement q(db_, sql);
            q.bindNoCopy(1, ws);
            for (int i = 0; i < nkeys; ++i) q.bindNoCopy(2 + i, keys[i]);
            if (!collect) return q.exec(), void();
            while (q.executeStep())
                removed.push_back({static_cast<std::uint64_t>(integer(q, 0)),
                                   static_cast<std::uint64_t>(integer(q, 1))});
        };
        run(fmt::format("SELECT seq, 0 FROM suppressions WHERE workspace = ?1 AND kind = 0 AND "
                        "value IN ({0}) UNION ALL SELECT seq, by_seq FROM suppression_superseded "
                        "WHERE workspace = ?1 AND kind = 0 AND value IN ({0})",
                        in_keys),
            true);
        for (const char* table : {"suppressions", "suppression_superseded",
                                  "suppression_tombstones"})
            run(fmt::format("DELETE FROM {} WHERE workspace = ?1 AND kind = 0 AND value IN ({})",
                            table, in_keys),
                false);
        return removed;
    }

public:
    // --- end erasure -------------------------------------------------------

    std::uint64_t attach(std::string_view workspace, const member_info& info,
                         std::chrono::milliseconds lease) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("attach", [&] {
            SQLite::Statement q(db_,
                                "INSERT INTO members (workspace, host, pid, name, lease_until, "
                                "acked_seq) VALUES (?1, ?2, ?3, ?4, ?5, 0)");
            q.bindNoCopy(1, ws);
            q.bindNoCopy(2, info.host);
            q.bind(3, info.pid);
            q.bindNoCopy(4, info.name);
            q.bind(5, lease_end(store_now(), lease));
            q.exec();
            return static_cast<std::uint64_t>(db_.getLastInsertRowid());
        });
    }

    bool renew(std::string_view workspace, std::uint64_t member, std::chrono::milliseconds lease,
               std::uint64_t acked_seq) override {
        if (member > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return false;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("renew", [&] {
            SQLite::Statement q(db_,
                                "UPDATE members SET lease_until = ?3, acked_seq = ?4 "
                                "WHERE workspace = ?1 AND id = ?2 AND lease_until > ?5");
            const time_point now = store_now();
            q.bindNoCopy(1, ws);
            q.bind(2, static_cast<std::int64_t>(member));
            q.bind(3, lease_end(now, lease));
            q.bind(4, integer_key_or_max(acked_seq));
            q.bind(5, micros(now));
            return q.exec() == 1;
        });
    }

    void detach(std::string_view workspace, std::uint64_t member) override {
        const std::uint64_t dead[] = {member};
        recover_members(workspace, dead, store_now(), "its member detached while it was reserved",
                        false, "returned to the queue: member detached");
    }

    std::vector<member_record> members(std::string_view workspace) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("members", [&] {
            std::vector<member_record> out;
            SQLite::Statement q(db_,
                                "SELECT id, host, pid, name, acked_seq, lease_until > ?2 "
                                "FROM members WHERE workspace = ?1 ORDER BY id");
            q.bindNoCopy(1, ws);
            q.bind(2, micros(store_now()));
            while (q.executeStep()) {
                member_record m;
                m.id = static_cast<std::uint64_t>(integer(q, 0));
                m.info.host = text(q, 1);
                m.info.pid = integer(q, 2);
                m.info.name = text(q, 3);
                m.acked_seq = static_cast<std::uint64_t>(integer(q, 4));
                m.live = integer(q, 5) != 0;
                out.push_back(std::move(m));
            }
            return out;
        });
    }

    std::size_t recover(std::string_view workspace, std::span<const std::uint64_t> dead,
                        time_point now, std::string_view detail) override {
        return recover_members(workspace, dead, now, detail, true,
                               fmt::format("returned to the queue: {}", detail));
    }

    std::optional<ledger_row> find_send(std::string_view workspace, std::uint64_t id) override {
        if (id > largest_send_id) return std::nullopt;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("find_send", [&]() -> std::optional<ledger_row> {
            const auto number = workspace_number(ws);
            if (!number) return std::nullopt;
            statement_use q(find_send_);
            q->bind(1, send_key(*number, id));
            if (!q->executeStep()) return std::nullopt;
            return read_send(*q);
        });
    }

    void for_each_suppression(std::string_view workspace,
                              const std::function<void(const suppression_entry&)>& fn) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        // A fresh statement rather than a cached one: `fn` may call back
        // into the store, which must not disturb this cursor.
        SQLite::Statement q = guarded("for_each_suppression", [&] {
            SQLite::Statement s(db_, fmt::format("SELECT {} FROM suppressions WHERE workspace = ?1 "
                                                 "ORDER BY kind, value",
                                                 suppression_columns));
            s.bindNoCopy(1, ws);
            return s;
        });
        while (guarded("for_each_suppression", [&] { return q.executeStep(); }))
            fn(read_suppression(q));
    }

    void for_each_suppression_version(
        std::string_view workspace,
        const std::function<void(const suppression_version&)>& fn) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        // One statement reads one snapshot of both tables, so a row moving
        // from one to the other meanwhile is seen once. The sort is
        // SQLite's, spilling to temporary files past the page cache.
        SQLite::Statement q = guarded("for_each_suppression_version", [&] {
            SQLite::Statement s(
                db_,
                "SELECT kind, value, reason, source, created_at, seq, by_seq FROM ("
                "SELECT kind, value, reason, source, created_at, seq, by_seq, 0 AS cur, rowid AS r "
                "FROM suppression_superseded WHERE workspace = ?1 UNION ALL "
                "SELECT kind, value, reason, source, created_at, seq, 0, 1, 0 "
                "FROM suppressions WHERE workspace = ?1) ORDER BY kind, value, cur, r");
            s.bindNoCopy(1, ws);
            return s;
        });
        while (guarded("for_each_suppression_version", [&] { return q.executeStep(); })) {
            suppression_version v;
            v.entry = read_suppression(q);
            v.seq = static_cast<std::uint64_t>(integer(q, 5));
            v.by_seq = static_cast<std::uint64_t>(integer(q, 6));
            fn(v);
        }
    }

    std::optional<suppression_entry> find_suppression(std::string_view workspace,
                                                      suppression_kind kind,
                                                      std::string_view value) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        const std::string v(value);
        return guarded("find_suppression", [&]() -> std::optional<suppression_entry> {
            statement_use q(find_suppression_);
            q->bindNoCopy(1, ws);
            q->bind(2, kind_code(kind));
            q->bindNoCopy(3, v);
            if (!q->executeStep()) return std::nullopt;
            return read_suppression(*q);
        });
    }

    std::uint64_t last_change_seq(std::string_view workspace) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("last_change_seq", [&] { return change_seq(ws); });
    }

    std::optional<stored_object> find_object(std::string_view workspace, std::string_view kind,
                                             std::string_view id) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace), k(kind), i(id);
        return guarded("find_object", [&]() -> std::optional<stored_object> {
            SQLite::Statement q(db_,
                                "SELECT json FROM objects WHERE workspace = ?1 AND kind = ?2 "
                                "AND id = ?3");
            q.bindNoCopy(1, ws);
            q.bindNoCopy(2, k);
            q.bindNoCopy(3, i);
            if (!q.executeStep()) return std::nullopt;
            return stored_object{k, i, text(q, 0)};
        });
    }

    std::optional<suppression_entry> next_suppression(std::string_view workspace,
                                                      suppression_kind kind,
                                                      std::string_view from) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace), v(from);
        return guarded("next_suppression", [&]() -> std::optional<suppression_entry> {
            SQLite::Statement q(db_, fmt::format("SELECT {} FROM suppressions WHERE workspace = "
                                                 "?1 AND kind = ?2 AND value >= ?3 "
                                                 "ORDER BY value LIMIT 1",
                                                 suppression_columns));
            q.bindNoCopy(1, ws);
            q.bind(2, kind_code(kind));
            q.bindNoCopy(3, v);
            if (!q.executeStep()) return std::nullopt;
            return read_suppression(q);
        });
    }

    std::uint64_t suppression_count(std::string_view workspace) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("suppression_count", [&]() -> std::uint64_t {
            SQLite::Statement q(db_, "SELECT n FROM suppression_counts WHERE workspace = ?1");
            q.bindNoCopy(1, ws);
            if (!q.executeStep()) return 0;
            return static_cast<std::uint64_t>(integer(q, 0));
        });
    }

    void for_each_object(std::string_view workspace, std::string_view kind,
                         const std::function<void(const stored_object&)>& fn) override {
        std::vector<stored_object> out;
        {
            const std::lock_guard lock(mutex_);
            const std::string ws(workspace), k(kind);
            guarded("for_each_object", [&] {
                SQLite::Statement q(db_,
                                    "SELECT id, json FROM objects WHERE workspace = ?1 AND "
                                    "kind = ?2 ORDER BY id");
                q.bindNoCopy(1, ws);
                q.bindNoCopy(2, k);
                while (q.executeStep()) out.push_back({k, text(q, 0), text(q, 1)});
            });
        }
        // Called without the lock, so that `fn` may use the store.
        for (const auto& o : out) fn(o);
    }

    void for_each_audit(std::string_view workspace, std::uint64_t from_seq,
                        const std::function<void(const audit_record&)>& fn) override {
        if (from_seq > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        SQLite::Statement q = guarded("for_each_audit", [&] {
            SQLite::Statement s(db_, fmt::format("SELECT {} FROM audit WHERE workspace = ?1 AND "
                                                 "seq >= ?2 ORDER BY seq",
                                                 audit_columns));
            s.bindNoCopy(1, ws);
            s.bind(2, static_cast<std::int64_t>(from_seq));
            return s;
        });
        while (guarded("for_each_audit", [&] { return q.executeStep(); })) fn(read_audit(q));
    }

    void for_each_send(std::string_view workspace, time_point from, time_point to,
                       const std::function<void(const ledger_row&)>& fn) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        SQLite::Statement q = guarded("for_each_send", [&] {
            SQLite::Statement s(db_, fmt::format("SELECT {} FROM sends WHERE workspace = ?1 AND "
                                                 "reserved_at >= ?2 AND reserved_at < ?3 "
                                                 "ORDER BY row_key",
                                                 send_columns));
            s.bindNoCopy(1, ws);
            s.bind(2, micros(from));
            s.bind(3, micros(to));
            return s;
        });
        while (guarded("for_each_send", [&] { return q.executeStep(); })) fn(read_send(q));
    }

    void purge_cap_uses(std::string_view workspace, time_point before) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        guarded("purge_cap_uses", [&] {
            const auto number = workspace_number(ws);
            if (!number) return;
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
            // The buckets give back exactly the uses purged, so that counts
            // stay exact for any floor; buckets that end at or before
            // `before` are then empty and go.
            SQLite::Statement release(
                db_,
                "INSERT INTO cap_counts (key_id, level, bucket, n) "
                "SELECT key_id, ?3, at >> ?4, -count(*) FROM cap_uses WHERE key_id IN "
                "(SELECT id FROM cap_keys WHERE workspace = ?1) AND at < ?2 "
                "GROUP BY key_id, at >> ?4 "
                "ON CONFLICT (key_id, level, bucket) DO UPDATE SET n = n + excluded.n");
            SQLite::Statement empty(db_,
                                    "DELETE FROM cap_counts WHERE key_id IN (SELECT id FROM "
                                    "cap_keys WHERE workspace = ?1) AND level = ?2 AND "
                                    "bucket < ?3");
            for (int level = 1; level <= 3; ++level) {
                const int bits = bucket_bits[level - 1];
                release.bind(1, *number);
                release.bind(2, micros(before));
                release.bind(3, level);
                release.bind(4, bits);
                release.exec();
                release.reset();
                empty.bind(1, *number);
                empty.bind(2, level);
                empty.bind(3, micros(before) >> bits);
                empty.exec();
                empty.reset();
            }
            SQLite::Statement uses(db_,
                                   "DELETE FROM cap_uses WHERE key_id IN (SELECT id FROM cap_keys "
                                   "WHERE workspace = ?1) AND at < ?2");
            uses.bind(1, *number);
            uses.bind(2, micros(before));
            uses.exec();
            tx.commit();
        });
    }

private:
    // Takes up to `limit` due rows for `member` with `claim` (?1 workspace,
    // ?2 member, ?3 now, ?4 limit; RETURNING the row), under the write
    // lock, so that the member's lease and the rows are read and taken on
    // one state no other connection changes. Oldest due first, then by id.
    template <class Row, class Read>
    std::vector<Row> claim_due(const char* what, std::string_view workspace, std::uint64_t member,
                               time_point now, std::size_t limit, SQLite::Statement& claim,
                               Read&& read) {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded(what, [&] {
            std::vector<Row> out;
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
            {
                statement_use q(live_member_);
                q->bindNoCopy(1, ws);
                q->bind(2, integer_key_or_max(member));
                q->bind(3, micros(store_now()));
                if (!q->executeStep() || integer(*q, 0) == 0)
                    fail(errc::store_error,
                         fmt::format("sqlite store: {}: member {} has no live lease (it ran out, "
                                     "or the member was recovered or detached); attach again "
                                     "before claiming",
                                     what, member));
            }
            if (limit == 0) return out;
            {
                statement_use q(claim);
                q->bindNoCopy(1, ws);
                q->bind(2, static_cast<std::int64_t>(member));
                q->bind(3, micros(now));
                q->bind(4, integer_key_or_max(limit));
                while (q->executeStep()) out.push_back(read(*q));
            }
            tx.commit();
            // RETURNING gives them in no promised order.
            std::sort(out.begin(), out.end(), [](const Row& a, const Row& b) {
                return a.due_at != b.due_at ? a.due_at < b.due_at : a.id < b.id;
            });
            return out;
        });
    }

public:
    std::vector<queued_send> claim_queued(std::string_view workspace, std::uint64_t member,
                                          time_point now, std::size_t limit) override {
        return claim_due<queued_send>("claim_queued", workspace, member, now, limit, claim_queued_,
                                      read_queued);
    }

    std::optional<queued_send> find_queued(std::string_view workspace, std::uint64_t id) override {
        if (id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("find_queued", [&]() -> std::optional<queued_send> {
            statement_use q(find_queued_);
            q->bindNoCopy(1, ws);
            q->bind(2, static_cast<std::int64_t>(id));
            if (!q->executeStep()) return std::nullopt;
            return read_queued(*q);
        });
    }

    void for_each_queued(std::string_view workspace, const queue_filter& filter,
                         const std::function<void(const queued_send&)>& fn) override {
        if (filter.after_id >= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        // The prefix is matched on bytes with substr: LIKE and GLOB would
        // give meaning to characters of the origin.
        SQLite::Statement q = guarded("for_each_queued", [&] {
            SQLite::Statement s(
                db_, fmt::format("SELECT {} FROM queue WHERE workspace = ?1 AND id > ?2 "
                                 "AND (?3 < 0 OR state = ?3) "
                                 "AND substr(CAST(origin AS BLOB), 1, length(CAST(?4 AS BLOB))) "
                                 "= CAST(?4 AS BLOB) ORDER BY id LIMIT ?5",
                                 queue_columns));
            s.bindNoCopy(1, ws);
            s.bind(2, static_cast<std::int64_t>(filter.after_id));
            s.bind(3, filter.state ? queue_state_code(*filter.state) : std::int64_t{-1});
            s.bindNoCopy(4, filter.origin_prefix);
            s.bind(5, filter.limit == 0 ? std::int64_t{-1} : integer_key_or_max(filter.limit));
            return s;
        });
        while (guarded("for_each_queued", [&] { return q.executeStep(); })) fn(read_queued(q));
    }

    queue_counts count_queued(std::string_view workspace) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("count_queued", [&] {
            queue_counts out;
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::DEFERRED);
            {
                SQLite::Statement q(db_,
                                    "SELECT state, count(*) FROM queue WHERE workspace = ?1 "
                                    "GROUP BY state");
                q.bindNoCopy(1, ws);
                while (q.executeStep()) {
                    const auto n = static_cast<std::uint64_t>(integer(q, 1));
                    switch (queue_state_from_code(integer(q, 0))) {
                        case queue_state::waiting:
                            out.waiting = n;
                            break;
                        case queue_state::claimed:
                            out.claimed = n;
                            break;
                        case queue_state::done:
                            out.done = n;
                            break;
                        case queue_state::cancelled:
                            out.cancelled = n;
                            break;
                    }
                }
            }
            {
                SQLite::Statement q(db_,
                                    "SELECT wait_reason, count(*) FROM queue WHERE workspace = "
                                    "?1 AND state = 0 GROUP BY wait_reason "
                                    "ORDER BY CAST(wait_reason AS BLOB)");
                q.bindNoCopy(1, ws);
                while (q.executeStep())
                    out.waiting_by_reason.emplace_back(text(q, 0),
                                                       static_cast<std::uint64_t>(integer(q, 1)));
            }
            {
                SQLite::Statement q(db_,
                                    "SELECT due_at FROM queue WHERE workspace = ?1 AND state = 0 "
                                    "ORDER BY due_at LIMIT 1");
                q.bindNoCopy(1, ws);
                if (q.executeStep()) out.next_due = from_micros(integer(q, 0));
            }
            tx.commit();
            return out;
        });
    }

    std::size_t purge_keys(std::string_view workspace, time_point before) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("purge_keys", [&] {
            SQLite::Statement q(db_,
                                "DELETE FROM recorded_keys WHERE workspace = ?1 AND "
                                "expires_at < ?2");
            q.bindNoCopy(1, ws);
            q.bind(2, micros(before));
            return static_cast<std::size_t>(q.exec());
        });
    }

    bool forget_key(std::string_view workspace, std::string_view ns,
                    std::string_view key) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace), n(ns), k(key);
        return guarded("forget_key", [&] {
            SQLite::Statement q(db_,
                                "DELETE FROM recorded_keys WHERE workspace = ?1 AND "
                                "namespace = ?2 AND key = ?3");
            q.bindNoCopy(1, ws);
            q.bindNoCopy(2, n);
            q.bindNoCopy(3, k);
            return q.exec() > 0;
        });
    }

    // --- outbound webhooks ------------------------------------------------------

    std::vector<webhook_delivery> claim_webhook_deliveries(std::string_view workspace,
                                                           std::uint64_t member, time_point now,
                                                           std::size_t limit) override {
        return claim_due<webhook_delivery>("claim_webhook_deliveries", workspace, member, now,
                                           limit, claim_deliveries_, read_delivery);
    }

    std::optional<webhook_delivery> find_webhook_delivery(std::string_view workspace,
                                                          std::uint64_t id) override {
        if (id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("find_webhook_delivery", [&]() -> std::optional<webhook_delivery> {
            SQLite::Statement q(db_, fmt::format("SELECT {} FROM webhook_outbox WHERE "
                                                 "workspace = ?1 AND id = ?2",
                                                 outbox_columns));
            q.bindNoCopy(1, ws);
            q.bind(2, static_cast<std::int64_t>(id));
            if (!q.executeStep()) return std::nullopt;
            return read_delivery(q);
        });
    }

    void for_each_webhook_delivery(
        std::string_view workspace, const webhook_delivery_filter& filter,
        const std::function<void(const webhook_delivery&)>& fn) override {
        if (filter.after_id >= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        SQLite::Statement q = guarded("for_each_webhook_delivery", [&] {
            SQLite::Statement s(
                db_, fmt::format("SELECT {} FROM webhook_outbox WHERE workspace = ?1 AND id > ?2 "
                                 "AND (?3 < 0 OR state = ?3) AND (?4 = '' OR endpoint = ?4) "
                                 "ORDER BY id LIMIT ?5",
                                 outbox_columns));
            s.bindNoCopy(1, ws);
            s.bind(2, static_cast<std::int64_t>(filter.after_id));
            s.bind(3, filter.state ? delivery_state_code(*filter.state) : std::int64_t{-1});
            s.bindNoCopy(4, filter.endpoint);
            s.bind(5, filter.limit == 0 ? std::int64_t{-1} : integer_key_or_max(filter.limit));
            return s;
        });
        while (guarded("for_each_webhook_delivery", [&] { return q.executeStep(); }))
            fn(read_delivery(q));
    }

    webhook_delivery_counts count_webhook_deliveries(std::string_view workspace,
                                                     std::string_view endpoint) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        const std::string ep(endpoint);
        return guarded("count_webhook_deliveries", [&] {
            webhook_delivery_counts out;
            SQLite::Statement q(db_,
                                "SELECT state, count(*), max(updated_at) FROM webhook_outbox "
                                "WHERE workspace = ?1 AND (?2 = '' OR endpoint = ?2) "
                                "GROUP BY state");
            q.bindNoCopy(1, ws);
            q.bindNoCopy(2, ep);
            while (q.executeStep()) {
                const auto n = static_cast<std::uint64_t>(integer(q, 1));
                switch (delivery_state_from_code(integer(q, 0))) {
                    case webhook_delivery_state::pending:
                        out.pending = n;
                        break;
                    case webhook_delivery_state::claimed:
                        out.claimed = n;
                        break;
                    case webhook_delivery_state::delivered:
                        out.delivered = n;
                        out.last_delivered = from_micros(integer(q, 2));
                        break;
                    case webhook_delivery_state::failed:
                        out.failed = n;
                        break;
                }
            }
            return out;
        });
    }

    std::size_t purge_webhook_deliveries(std::string_view workspace, time_point before) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("purge_webhook_deliveries", [&] {
            SQLite::Statement q(db_,
                                "DELETE FROM webhook_outbox WHERE workspace = ?1 AND state >= 2 "
                                "AND updated_at < ?2");
            q.bindNoCopy(1, ws);
            q.bind(2, micros(before));
            return static_cast<std::size_t>(q.exec());
        });
    }
    // --- end outbound webhooks

    std::optional<enrollment> find_enrollment(std::string_view workspace,
                                              std::uint64_t id) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("find_enrollment",
                       [&] { return sqlite_enrollments(db_, enrollment_sql(), ws).by_id(id); });
    }

    std::optional<enrollment> find_enrollment_by_message(std::string_view workspace,
                                                         std::string_view message_id) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("find_enrollment_by_message", [&]() -> std::optional<enrollment> {
            SQLite::Statement q(db_,
                                "SELECT enrollment FROM enrollment_messages WHERE workspace = ?1 "
                                "AND message_id = ?2");
            q.bind(1, ws);
            q.bind(2, std::string(message_id));
            if (!q.executeStep()) return std::nullopt;
            return sqlite_enrollments(db_, enrollment_sql(), ws)
                .by_id(static_cast<std::uint64_t>(integer(q, 0)));
        });
    }

    void for_each_enrollment(std::string_view workspace, const enrollment_filter& filter,
                             const std::function<void(const enrollment&)>& fn) override {
        if (filter.after_id >= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        SQLite::Statement q = guarded("for_each_enrollment", [&] {
            SQLite::Statement s(
                db_, fmt::format("SELECT {} FROM enrollments WHERE workspace = ?1 AND id > ?2 "
                                 "AND (?3 = '' OR sequence_id = ?3) AND (?4 = '' OR address = ?4) "
                                 "AND (?5 < 0 OR state = ?5) ORDER BY id LIMIT ?6",
                                 enrollment_columns));
            s.bind(1, ws);
            s.bind(2, static_cast<std::int64_t>(filter.after_id));
            s.bind(3, filter.sequence_id);
            s.bind(4, filter.address);
            s.bind(5, filter.state ? codes::of(*filter.state) : std::int64_t{-1});
            s.bind(6, filter.limit == 0 ? std::int64_t{-1} : integer_key_or_max(filter.limit));
            return s;
        });
        while (guarded("for_each_enrollment", [&] { return q.executeStep(); }))
            fn(read_enrollment_row(q));
    }

    std::vector<enrollment> due_enrollments(std::string_view workspace, time_point now,
                                            std::size_t limit) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("due_enrollments", [&] {
            std::vector<enrollment> out;
            if (limit == 0) return out;
            SQLite::Statement q(
                db_, fmt::format("SELECT {} FROM enrollments INDEXED BY enrollments_due "
                                 "WHERE workspace = ?1 AND state = 0 AND next_due <= ?2 "
                                 "ORDER BY next_due, id LIMIT ?3",
                                 enrollment_columns));
            q.bind(1, ws);
            q.bind(2, micros(now));
            q.bind(3, integer_key_or_max(limit));
            while (q.executeStep()) out.push_back(read_enrollment_row(q));
            return out;
        });
    }

    std::size_t purge_queued(std::string_view workspace, time_point before) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("purge_queued", [&] {
            SQLite::Statement q(db_,
                                "DELETE FROM queue WHERE workspace = ?1 AND state >= 2 AND "
                                "updated_at < ?2");
            q.bindNoCopy(1, ws);
            q.bind(2, micros(before));
            return static_cast<std::size_t>(q.exec());
        });
    }

private:
    // State of one commit call: the workspace row, read under the write lock
    // and written back once at the end.
    struct batch {
        explicit batch(const std::string& w) noexcept : ws(w) {}
        const std::string& ws;
        std::int64_t number = 0;  // 0 while the workspace has no row
        std::uint64_t change_seq = 0;
        std::uint64_t audit_seq = 0;
        std::string audit_hash;
        std::uint64_t last_send_id = 0;
        std::uint64_t last_queue_id = 0;
        bool published = false;  // change_seq is this commit's
        bool dirty = false;
        bool created_number = false;
        bool created_key = false;
        // Whether the workspace may hold suppression tombstones; read once
        // per commit, so an import into a list that never lost an entry
        // spends no statement per entry on them.
        std::optional<bool> supp_tombstones;
        // store_ops::add_counts of the commit, written once before COMMIT.
        count_sum counts;
    };

    // Where one claim of the reservation being decided stands.
    struct claim_state {
        std::int64_t key_id = 0;  // 0: the key has no row yet
    };

    static constexpr std::size_t sorted_run_threshold = 64;
    // The sizes of cap_counts' buckets, as shifts of `at` (see the schema).
    static constexpr int bucket_bits[3] = {20, 26, 32};

    static bool publishes_change(const store_op& op) noexcept {
        return std::holds_alternative<store_ops::put_object>(op) ||
               std::holds_alternative<store_ops::delete_object>(op) ||
               std::holds_alternative<store_ops::put_suppression>(op) ||
               std::holds_alternative<store_ops::delete_suppression>(op);
    }

    // Keeps the key's current row, if any, as replaced by change `seq`.
    void supersede(const batch& b, std::int64_t kind, const std::string& value,
                   std::int64_t seq) {
        statement_use q(supersede_suppression_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, kind);
        q->bindNoCopy(3, value);
        q->bind(4, seq);
        q->exec();
    }

    // An entry of an import followed by a later one for the same key was
    // never stored, yet it was given and audited: it is kept as replaced by
    // the import itself. Counting the import's rows first (an index range)
    // spares the sort when, as usual, no key came twice.
    void keep_import_duplicates(const std::string& ws, std::int64_t seq, std::uint64_t entries) {
        SQLite::Statement count(db_,
                                "SELECT count(*) FROM suppressions WHERE workspace = ?1 AND "
                                "seq = ?2");
        count.bindNoCopy(1, ws);
        count.bind(2, seq);
        if (count.executeStep() && static_cast<std::uint64_t>(integer(count, 0)) == entries)
            return;
        SQLite::Statement keep(
            db_,
            "INSERT INTO suppression_superseded (workspace, kind, value, reason, source, "
            "created_at, seq, by_seq) SELECT ?1, kind, value, reason, source, created_at, ?2, ?2 "
            "FROM (SELECT rowid AS r, kind, value, reason, source, created_at, row_number() OVER "
            "(PARTITION BY kind, value ORDER BY rowid DESC) AS later FROM temp.import_staging) "
            "WHERE later > 1 ORDER BY kind, value, r");
        keep.bindNoCopy(1, ws);
        keep.bind(2, seq);
        keep.exec();
    }

    // The (kind, value) a suppression op writes, or nothing for other ops.
    static std::optional<std::pair<int, std::string_view>> suppression_key(const store_op& op) {
        if (const auto* put = std::get_if<store_ops::put_suppression>(&op))
            return std::pair<int, std::string_view>{static_cast<int>(put->entry.kind),
                                                    put->entry.value};
        if (const auto* del = std::get_if<store_ops::delete_suppression>(&op))
            return std::pair<int, std::string_view>{static_cast<int>(del->kind), del->value};
        return std::nullopt;
    }

    [[noreturn]] static void fail_op(std::size_t i, std::span<const store_op> ops,
                                     const char* why) {
        fail(errc::store_error, fmt::format("sqlite store: commit failed at op {} of {} ({}): {}; "
                                            "no op of the batch was applied",
                                            i + 1, ops.size(), describe(ops[i]), why));
    }

    static std::int64_t integer_key_or_max(std::uint64_t v) noexcept {
        return static_cast<std::int64_t>(
            std::min<std::uint64_t>(v, std::numeric_limits<std::int64_t>::max()));
    }

    // The workspace's number if it has one. Numbers never change once
    // committed, so they are cached for the life of the store.
    std::optional<std::int64_t> workspace_number(const std::string& ws) {
        if (const auto it = numbers_.find(ws); it != numbers_.end()) return it->second;
        statement_use q(find_workspace_);
        q->bindNoCopy(1, ws);
        if (!q->executeStep()) return std::nullopt;
        const std::int64_t number = integer(*q, 0);
        numbers_.emplace(ws, number);
        return number;
    }

    std::uint64_t change_seq(const std::string& ws) {
        statement_use q(read_workspace_);
        q->bindNoCopy(1, ws);
        return q->executeStep() ? static_cast<std::uint64_t>(integer(*q, 1)) : 0;
    }

    void read_workspace(batch& b) {
        statement_use q(read_workspace_);
        q->bindNoCopy(1, b.ws);
        if (!q->executeStep()) return;
        b.number = integer(*q, 0);
        b.change_seq = static_cast<std::uint64_t>(integer(*q, 1));
        b.audit_seq = static_cast<std::uint64_t>(integer(*q, 2));
        b.audit_hash = text(*q, 3);
        b.last_send_id = static_cast<std::uint64_t>(integer(*q, 4));
        b.last_queue_id = static_cast<std::uint64_t>(integer(*q, 5));
        numbers_.try_emplace(b.ws, b.number);
    }

    void ensure_workspace(batch& b) {
        if (b.number != 0) return;
        {
            statement_use q(insert_workspace_);
            q->bindNoCopy(1, b.ws);
            q->exec();
        }
        const std::int64_t number = db_.getLastInsertRowid();
        if (number > largest_workspace_number)
            throw invalid_op(
                fmt::format("more than {} workspaces in one file", largest_workspace_number));
        b.number = number;
        b.created_number = true;
        numbers_[b.ws] = number;
    }

    // The seq that stamps this commit's object and suppression writes.
    std::int64_t publish(batch& b) {
        ensure_workspace(b);
        if (!b.published) {
            ++b.change_seq;
            b.published = true;
            b.dirty = true;
        }
        return static_cast<std::int64_t>(b.change_seq);
    }

    // The strings bound below without copying live in `b.ws` or in the ops,
    // both of which outlive the statement's execution.
    // The workspace's counters and audit head as the batch left them.
    void write_workspace(const batch& b) {
        statement_use q(write_workspace_);
        q->bind(1, b.number);
        q->bind(2, static_cast<std::int64_t>(b.change_seq));
        q->bind(3, static_cast<std::int64_t>(b.audit_seq));
        q->bindNoCopy(4, b.audit_hash);
        q->bind(5, static_cast<std::int64_t>(b.last_send_id));
        q->bind(6, static_cast<std::int64_t>(b.last_queue_id));
        q->exec();
    }

    void apply(batch& b, const store_ops::put_object& op, op_result&) {
        const std::int64_t seq = publish(b);
        {
            statement_use q(put_object_);
            q->bindNoCopy(1, b.ws);
            q->bindNoCopy(2, op.object.kind);
            q->bindNoCopy(3, op.object.id);
            q->bindNoCopy(4, op.object.json);
            q->bind(5, seq);
            q->exec();
        }
        statement_use q(delete_object_tombstone_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, op.object.kind);
        q->bindNoCopy(3, op.object.id);
        q->exec();
    }

    void apply(batch& b, const store_ops::delete_object& op, op_result&) {
        const std::int64_t seq = publish(b);
        {
            statement_use q(delete_object_);
            q->bindNoCopy(1, b.ws);
            q->bindNoCopy(2, op.kind);
            q->bindNoCopy(3, op.id);
            q->exec();
        }
        statement_use q(put_object_tombstone_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, op.kind);
        q->bindNoCopy(3, op.id);
        q->bind(4, seq);
        q->exec();
    }

    void apply(batch& b, const store_ops::put_suppression& op, op_result&) {
        const suppression_entry& e = op.entry;
        const std::int64_t kind = kind_code(e.kind);
        const std::int64_t seq = publish(b);
        supersede(b, kind, e.value, seq);
        {
            statement_use q(put_suppression_);
            q->bindNoCopy(1, b.ws);
            q->bind(2, kind);
            q->bindNoCopy(3, e.value);
            q->bind(4, reason_code(e.reason));
            q->bindNoCopy(5, e.source);
            q->bind(6, micros(e.created_at));
            q->bind(7, seq);
            q->exec();
        }
        if (!b.supp_tombstones) {
            statement_use any(any_suppression_tombstone_);
            any->bindNoCopy(1, b.ws);
            b.supp_tombstones = any->executeStep() && integer(*any, 0) != 0;
        }
        if (!*b.supp_tombstones) return;
        statement_use q(delete_suppression_tombstone_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, kind);
        q->bindNoCopy(3, e.value);
        q->exec();
    }

    void apply(batch& b, const store_ops::delete_suppression& op, op_result&) {
        const std::int64_t kind = kind_code(op.kind);
        const std::int64_t seq = publish(b);
        supersede(b, kind, op.value, seq);
        {
            statement_use q(delete_suppression_);
            q->bindNoCopy(1, b.ws);
            q->bind(2, kind);
            q->bindNoCopy(3, op.value);
            q->exec();
        }
        statement_use q(put_suppression_tombstone_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, kind);
        q->bindNoCopy(3, op.value);
        q->bind(4, seq);
        q->exec();
        b.supp_tombstones = true;
    }

    // --- reservations ---------------------------------------------------

    // The cap key's id when it has a row. Ids never change once committed,
    // so found ids are cached for the life of the store.
    std::int64_t find_key(const batch& b, const std::string& key) {
        if (b.number == 0) return 0;
        key_ids& ids = keys_[b.number];
        if (const auto it = ids.find(std::string_view(key)); it != ids.end()) return it->second;
        statement_use q(find_key_);
        q->bind(1, b.number);
        q->bindNoCopy(2, key);
        if (!q->executeStep()) return 0;
        const std::int64_t id = integer(*q, 0);
        ids.emplace(key, id);
        return id;
    }

    std::int64_t ensure_key(batch& b, const std::string& key) {
        ensure_workspace(b);
        // Looked up again: an earlier claim of this reservation may have
        // created the key.
        if (const std::int64_t id = find_key(b, key)) return id;
        {
            statement_use q(insert_key_);
            q->bind(1, b.number);
            q->bindNoCopy(2, key);
            q->exec();
        }
        const std::int64_t id = db_.getLastInsertRowid();
        keys_[b.number].emplace(key, id);
        b.created_key = true;
        return id;
    }

    // The uses of `key_id` at or after `floor`.
    std::int64_t count_uses(std::int64_t key_id, time_point floor) {
        const std::int64_t f = floor_micros(floor);
        const auto ceil_bucket = [f](int level) {
            const int bits = bucket_bits[level - 1];
            return (f >> bits) + ((f & ((std::int64_t{1} << bits) - 1)) != 0 ? 1 : 0);
        };
        const std::int64_t b1 = ceil_bucket(1), b2 = ceil_bucket(2), b3 = ceil_bucket(3);
        statement_use q(count_uses_);
        q->bind(1, key_id);
        q->bind(2, f);
        q->bind(3, b1 << bucket_bits[0]);
        q->bind(4, b1);
        q->bind(5, b2 << (bucket_bits[1] - bucket_bits[0]));
        q->bind(6, b2);
        q->bind(7, b3 << (bucket_bits[2] - bucket_bits[1]));
        q->bind(8, b3);
        q->executeStep();
        return integer(*q, 0);
    }

    void add_counts(std::int64_t key_id, std::int64_t at, std::int64_t n) {
        for (int level = 1; level <= 3; ++level) {
            statement_use q(add_count_);
            q->bind(1, key_id);
            q->bind(2, level);
            q->bind(3, at >> bucket_bits[level - 1]);
            q->bind(4, n);
            q->exec();
        }
    }

    // Checks every claim before anything is written; fills claims_ for the
    // writes.
    bool check_claims(batch& b, const store_ops::reserve_send& op, reserve_outcome& out) {
        const time_point at = op.row.reserved_at;
        claims_.assign(op.claims.size(), claim_state{});
        for (std::size_t c = 0; c < op.claims.size(); ++c) {
            const cap_claim& claim = op.claims[c];
            // Every object's seq is at most the workspace's change seq, so
            // a caller that is up to date needs no per-object look-up.
            if (!claim.object_kind.empty() && b.change_seq > op.config_seq &&
                object_seq(b, claim.object_kind, claim.object_id) > op.config_seq) {
                out.status = reserve_status::stale_config;
                out.claim = c;
                return false;
            }
            const std::int64_t key_id = find_key(b, claim.key);
            claims_[c].key_id = key_id;
            if (claim.gap > duration::zero() && key_id != 0) {
                statement_use q(read_gap_);
                q->bind(1, key_id);
                const time_point gap_until =
                    q->executeStep() ? from_micros(integer(*q, 0)) : time_point{};
                if (gap_until > at) {
                    out.status = reserve_status::gap;
                    out.claim = c;
                    out.until = gap_until;
                    return false;
                }
            }
            for (std::size_t w = 0; w < claim.windows.size(); ++w) {
                const cap_window& window = claim.windows[w];
                if (window.max != 0 && key_id == 0) continue;
                const std::int64_t max = integer_key_or_max(window.max);
                const std::int64_t count = max == 0 ? 0 : count_uses(key_id, window.floor);
                if (max != 0 && count < max) continue;
                out.status = reserve_status::cap_reached;
                out.claim = c;
                out.window = w;
                out.until = time_point{};
                if (max != 0) {
                    statement_use q(nth_use_);
                    q->bind(1, key_id);
                    q->bind(2, micros(window.floor));
                    q->bind(3, count - max);
                    if (q->executeStep()) out.until = from_micros(integer(*q, 0));
                }
                return false;
            }
        }
        return true;
    }

    std::uint64_t object_seq(const batch& b, const std::string& kind, const std::string& id) {
        statement_use q(object_seq_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, kind);
        q->bindNoCopy(3, id);
        std::uint64_t seq = 0;
        while (q->executeStep()) seq = std::max(seq, static_cast<std::uint64_t>(integer(*q, 0)));
        return seq;
    }

    // Records one use per claim for `send_id` at `at`, starts the gaps, and
    // leaves the ids of the keys used in key_list_ for sends.cap_keys.
    void record_uses(batch& b, const store_ops::reserve_send& op, std::uint64_t send_id) {
        key_list_.clear();
        const std::int64_t at = micros(op.row.reserved_at);
        for (std::size_t c = 0; c < op.claims.size(); ++c) {
            const cap_claim& claim = op.claims[c];
            std::int64_t key_id = claims_[c].key_id;
            if (key_id == 0) key_id = ensure_key(b, claim.key);
            {
                statement_use q(insert_use_);
                q->bind(1, key_id);
                q->bind(2, at);
                q->bind(3, static_cast<std::int64_t>(send_id));
                q->bind(4, static_cast<std::int64_t>(c));
                q->exec();
            }
            add_counts(key_id, at, 1);
            if (claim.gap > duration::zero()) {
                statement_use q(write_gap_);
                q->bind(1, key_id);
                q->bind(2, at + claim.gap.count());
                q->exec();
            }
            if (!key_list_.empty()) key_list_.push_back(',');
            fmt::format_to(std::back_inserter(key_list_), "{}", key_id);
        }
    }

    // Releases the uses an attempt recorded under the keys in `list`.
    void release_uses(std::string_view list, std::int64_t at, std::uint64_t send_id) {
        while (!list.empty()) {
            const std::size_t comma = list.find(',');
            const std::string_view item = list.substr(0, comma);
            list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
            std::int64_t key_id = 0;
            const auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), key_id);
            if (ec != std::errc{} || end != item.data() + item.size())
                fail(errc::store_error, "sqlite store: corrupt sends.cap_keys value");
            std::int64_t released = 0;
            {
                statement_use q(delete_uses_);
                q->bind(1, key_id);
                q->bind(2, at);
                q->bind(3, static_cast<std::int64_t>(send_id));
                released = q->exec();
            }
            // Zero when the list names a key twice: the first pass took both.
            if (released != 0) add_counts(key_id, at, -released);
        }
    }

    void apply(batch& b, const store_ops::reserve_send& op, op_result& result) {
        const ledger_row& r = op.row;
        if (r.state != send_state::reserved)
            throw invalid_op(
                fmt::format("a reservation's state must be reserved, not {}", to_string(r.state)));
        reserve_outcome& out = result.reservation;
        if (r.id != 0) return reserve_again(b, op, out);

        if (!r.idempotency_key.empty() && b.number != 0) {
            statement_use q(find_idempotency_key_);
            q->bindNoCopy(1, b.ws);
            q->bindNoCopy(2, r.idempotency_key);
            if (q->executeStep()) {
                out.status = reserve_status::duplicate;
                out.existing = std::make_shared<const ledger_row>(read_send(*q));
                return;
            }
        }
        if (!check_claims(b, op, out)) return;

        ensure_workspace(b);
        const std::uint64_t id = b.last_send_id + 1;
        const std::int64_t key = send_key(b.number, id);
        record_uses(b, op, id);
        statement_use q(insert_send_);
        q->bind(1, key);
        q->bindNoCopy(2, b.ws);
        q->bind(3, static_cast<std::int64_t>(id));
        if (r.idempotency_key.empty())
            q->bind(4);  // NULL: the unique index ignores sends without a key
        else
            q->bindNoCopy(4, r.idempotency_key);
        q->bindNoCopy(5, r.mailbox);
        q->bindNoCopy(6, r.provider);
        q->bindNoCopy(7, r.pool);
        q->bindNoCopy(8, r.recipient);
        q->bindNoCopy(9, r.message_id);
        q->bind(10, static_cast<std::int64_t>(r.attempt));
        q->bind(11, micros(r.reserved_at));
        q->bind(12, micros(r.updated_at));
        q->bindNoCopy(13, r.provider_message_id);
        q->bindNoCopy(14, r.detail);
        q->bind(15, integer_key(r.owner, "member id"));
        q->bindNoCopy(16, key_list_);
        q->bind(17, integer_key(r.suppression_seq, "suppression seq"));
        q->exec();
        b.last_send_id = id;
        b.dirty = true;
        out.status = reserve_status::reserved;
        out.send_id = id;
    }

    static void run(SQLite::Statement& s) {
        statement_use q(s);
        q->exec();
    }

    // A further attempt of a send by its owner (failover).
    void reserve_again(batch& b, const store_ops::reserve_send& op, reserve_outcome& out) {
        const ledger_row& r = op.row;
        out.status = reserve_status::not_owner;
        if (b.number == 0 || r.id > largest_send_id) return;
        const std::int64_t key = send_key(b.number, r.id);
        std::int64_t old_at = 0;
        {
            statement_use q(find_attempt_);
            q->bind(1, key);
            if (!q->executeStep()) return;
            if (static_cast<std::uint64_t>(integer(*q, 0)) != r.owner ||
                integer(*q, 1) != state_reserved)
                return;
            old_at = integer(*q, 2);
            old_keys_ = text(*q, 3);
        }
        // The send's own uses do not count against its next attempt: they
        // are released first, and restored by rolling back to the savepoint
        // when the attempt is refused.
        run(savepoint_failover_);
        release_uses(old_keys_, old_at, r.id);
        out.status = reserve_status::reserved;
        if (!check_claims(b, op, out)) {
            run(rollback_failover_);
            run(release_failover_);
            return;
        }
        run(release_failover_);
        record_uses(b, op, r.id);
        statement_use q(update_attempt_);
        q->bind(1, key);
        q->bindNoCopy(2, r.mailbox);
        q->bindNoCopy(3, r.provider);
        q->bindNoCopy(4, r.pool);
        q->bindNoCopy(5, r.message_id);
        q->bind(6, static_cast<std::int64_t>(r.attempt));
        q->bind(7, micros(r.reserved_at));
        q->bind(8, micros(r.updated_at));
        q->bindNoCopy(9, r.detail);
        q->bindNoCopy(10, key_list_);
        q->bind(11, integer_key(r.suppression_seq, "suppression seq"));
        q->exec();
        out.send_id = r.id;
    }

    void apply(batch& b, const store_ops::update_send& op, op_result& result) {
        const ledger_row& r = op.row;
        const std::int64_t state = state_code(r.state);
        if (state == state_reserved)
            throw invalid_op("an outcome update cannot return a send to reserved");
        result.applied = false;
        if (b.number == 0 || r.id > largest_send_id ||
            r.owner > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return;
        const bool release = state == state_failed;
        statement_use q(release ? update_outcome_returning_ : update_outcome_);
        q->bind(1, send_key(b.number, r.id));
        q->bind(2, static_cast<std::int64_t>(r.owner));
        q->bind(3, state);
        q->bind(4, micros(r.updated_at));
        q->bindNoCopy(5, r.provider_message_id);
        q->bindNoCopy(6, r.detail);
        q->bind(7, integer_key(r.suppression_seq, "suppression seq"));
        if (!release) {
            result.applied = q->exec() == 1;
            return;
        }
        // RETURNING: every change is made by the first step.
        if (!q->executeStep()) return;
        result.applied = true;
        const std::int64_t at = integer(*q, 0);
        old_keys_ = text(*q, 1);
        release_uses(old_keys_, at, r.id);
    }

    void apply(batch& b, const store_ops::append_audit& op, op_result& result) {
        ensure_workspace(b);
        audit_record r = op.record;
        r.seq = b.audit_seq + 1;
        r.prev_hash = b.audit_hash;
        r.change_seq = b.published ? b.change_seq : 0;
        r.hash = audit_hash(r, op.key);
        statement_use q(append_audit_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, integer_key(r.seq, "audit seq"));
        q->bind(3, micros(r.at));
        q->bindNoCopy(4, r.actor);
        q->bindNoCopy(5, r.action);
        q->bindNoCopy(6, r.resource_type);
        q->bindNoCopy(7, r.resource_id);
        q->bindNoCopy(8, r.before);
        q->bindNoCopy(9, r.after);
        q->bindNoCopy(10, r.prev_hash);
        q->bindNoCopy(11, r.hash);
        q->bind(12, static_cast<std::int64_t>(r.change_seq));
        q->exec();
        b.audit_seq = r.seq;
        b.audit_hash = std::move(r.hash);
        b.dirty = true;
        result.audit_seq = b.audit_seq;
    }

    // --- the send queue ---------------------------------------------------

    void apply(batch& b, const store_ops::enqueue& op, op_result& result) {
        const queued_send& q = op.item;
        if (q.request.empty()) throw invalid_op("a queued send needs a request");
        if (q.not_before == time_point{}) throw invalid_op("a queued send needs its not_before");
        queue_outcome& out = result.queue;
        if (!q.idempotency_key.empty() && b.number != 0) {
            statement_use f(find_queue_key_);
            f->bindNoCopy(1, b.ws);
            f->bindNoCopy(2, q.idempotency_key);
            if (f->executeStep()) {
                out.status = enqueue_status::duplicate;
                out.existing = std::make_shared<const queued_send>(read_queued(*f));
                out.id = out.existing->id;
                return;
            }
        }
        ensure_workspace(b);
        const std::uint64_t id = b.last_queue_id + 1;
        statement_use w(insert_queued_);
        w->bindNoCopy(1, b.ws);
        w->bind(2, static_cast<std::int64_t>(id));
        if (q.idempotency_key.empty())
            w->bind(3);  // NULL: the unique index ignores items without a key
        else
            w->bindNoCopy(3, q.idempotency_key);
        w->bindNoCopy(4, q.pool);
        w->bindNoCopy(5, q.mailbox);
        w->bindNoCopy(6, q.recipient_domain);
        w->bindNoCopy(7, static_cast<const void*>(q.request.data()),
                      static_cast<int>(q.request.size()));
        w->bindNoCopy(8, q.origin);
        w->bind(9, micros(q.enqueued_at));
        w->bind(10, micros(q.not_before));
        w->bindNoCopy(11, q.wait_reason);
        w->bindNoCopy(12, q.detail);
        w->exec();
        b.last_queue_id = id;
        b.dirty = true;
        out.status = enqueue_status::enqueued;
        out.id = id;
    }

    // Where the item stands: its state and holder, or nullopt when missing.
    std::optional<std::pair<queue_state, std::uint64_t>> queued_holder(const batch& b,
                                                                       std::uint64_t id) {
        if (b.number == 0 ||
            id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return std::nullopt;
        statement_use q(queued_holder_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, static_cast<std::int64_t>(id));
        if (!q->executeStep()) return std::nullopt;
        return std::pair{queue_state_from_code(integer(*q, 0)),
                         static_cast<std::uint64_t>(integer(*q, 1))};
    }

    // Whether `member` holds the item; fills the op's result either way.
    bool held_by(const batch& b, std::uint64_t id, std::uint64_t member, op_result& result) {
        result.queue.id = id;
        result.applied = false;
        const auto at = queued_holder(b, id);
        if (!at) return false;
        result.queue.state = at->first;
        return at->first == queue_state::claimed && at->second == member && member != 0;
    }

    void apply(batch& b, const store_ops::defer_queued& op, op_result& result) {
        if (!held_by(b, op.id, op.member, result)) return;
        statement_use q(defer_queued_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, static_cast<std::int64_t>(op.id));
        q->bind(3, micros(op.due_at));
        q->bindNoCopy(4, op.wait_reason);
        q->bindNoCopy(5, op.detail);
        q->bind(6, micros(op.at));
        q->exec();
        result.applied = true;
    }

    void apply(batch& b, const store_ops::finish_queued& op, op_result& result) {
        if (op.state != queue_state::done && op.state != queue_state::cancelled)
            throw invalid_op(fmt::format("a queued send finishes done or cancelled, not {}",
                                         to_string(op.state)));
        if (!held_by(b, op.id, op.member, result)) return;
        statement_use q(finish_queued_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, static_cast<std::int64_t>(op.id));
        q->bind(3, queue_state_code(op.state));
        q->bind(4, integer_key(op.send_id, "send id"));
        q->bindNoCopy(5, op.detail);
        q->bind(6, micros(op.at));
        q->exec();
        result.applied = true;
    }

    void apply(batch& b, const store_ops::cancel_queued& op, op_result& result) {
        result.queue.id = op.id;
        result.applied = false;
        const auto at = queued_holder(b, op.id);
        if (!at) return;
        result.queue.state = at->first;
        if (at->first != queue_state::waiting) return;
        statement_use q(cancel_queued_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, static_cast<std::int64_t>(op.id));
        q->bindNoCopy(3, op.detail);
        q->bind(4, micros(op.at));
        q->exec();
        result.applied = true;
    }

    void apply(batch& b, const store_ops::record_key& op, op_result& result) {
        statement_use q(record_key_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, op.namespace_);
        q->bindNoCopy(3, op.key);
        q->bind(4, micros(op.expires_at));
        q->bind(5, micros(op.at));
        result.applied = q->exec() == 1;
    }

    // --- outbound webhooks ------------------------------------------------------

    void apply(batch& b, const store_ops::add_webhook_delivery& op, op_result& result) {
        const auto& d = op.row;
        if (d.endpoint.empty() || d.message_id.empty() || d.event_key.empty() ||
            d.payload.empty())
            throw invalid_op("a webhook delivery needs an endpoint, a message id, an event key "
                             "and a payload");
        if (d.created_at == time_point{})
            throw invalid_op("a webhook delivery needs its creation time");
        statement_use q(insert_delivery_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, d.endpoint);
        q->bindNoCopy(3, d.message_id);
        q->bindNoCopy(4, d.event_key);
        q->bindNoCopy(5, d.event_type);
        q->bindNoCopy(6, d.payload);
        q->bind(7, micros(d.created_at));
        q->bind(8, micros(d.due_at == time_point{} ? d.created_at : d.due_at));
        // With RETURNING, the insert is done by the first step.
        result.applied = q->executeStep();
        result.webhook = result.applied ? static_cast<std::uint64_t>(integer(*q, 0)) : 0;
    }

    void apply(batch& b, const store_ops::end_webhook_attempt& op, op_result& result) {
        if (op.state == webhook_delivery_state::claimed)
            throw invalid_op("a webhook attempt ends pending, delivered or failed, not claimed");
        result.applied = false;
        if (op.member == 0 ||
            op.id > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            return;
        statement_use q(end_attempt_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, static_cast<std::int64_t>(op.id));
        q->bind(3, integer_key_or_max(op.member));
        q->bind(4, delivery_state_code(op.state));
        q->bind(5, micros(op.due_at));
        q->bind(6, op.status);
        q->bindNoCopy(7, op.detail);
        q->bind(8, micros(op.at));
        result.applied = q->exec() == 1;
    }

    void apply(batch& b, const store_ops::fail_webhook_deliveries& op, op_result& result) {
        SQLite::Statement q(db_,
                            "UPDATE webhook_outbox SET state = 3, detail = ?3, updated_at = ?4 "
                            "WHERE workspace = ?1 AND endpoint = ?2 AND state = 0");
        q.bindNoCopy(1, b.ws);
        q.bindNoCopy(2, op.endpoint);
        q.bindNoCopy(3, op.detail);
        q.bind(4, micros(op.at));
        result.webhook = static_cast<std::uint64_t>(q.exec());
    }

    void apply(batch& b, const store_ops::retry_webhook_deliveries& op, op_result& result) {
        SQLite::Statement q(db_,
                            "UPDATE webhook_outbox SET state = 0, attempts = 0, due_at = ?4, "
                            "detail = '', updated_at = ?4 WHERE workspace = ?1 AND endpoint = ?2 "
                            "AND state = 3 AND created_at >= ?3");
        q.bindNoCopy(1, b.ws);
        q.bindNoCopy(2, op.endpoint);
        q.bind(3, micros(op.since));
        q.bind(4, micros(op.at));
        result.webhook = static_cast<std::uint64_t>(q.exec());
    }

    // --- daily counts and soft-bounce tallies ----------------------------------

    // False when ops[i] is an add_counts that waits on the op before it,
    // and that one was not applied.
    bool previous_applied(std::span<const store_op> ops, std::size_t i,
                          const commit_result& result) {
        const auto* c = std::get_if<store_ops::add_counts>(&ops[i]);
        if (!c || !c->if_previous_applied) return true;
        if (i == 0) fail_op(i, ops, "if_previous_applied on the first op of a commit");
        return result.ops[i - 1].applied;
    }

    void apply(batch& b, const store_ops::add_counts& op, op_result& result) {
        b.counts.add(op);
        result.applied = true;
    }

    void write_counts(batch& b) {
        if (b.counts.empty()) return;
        if (!add_daily_count_)
            add_daily_count_.emplace(db_,
                               "INSERT INTO daily_counts (workspace, scope, id, day, metric, n) "
                               "VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (workspace, scope, "
                               "id, day, metric) DO UPDATE SET n = n + excluded.n");
        for (const auto& [k, n] : b.counts) {
            statement_use q(*add_daily_count_);
            q->bindNoCopy(1, b.ws);
            q->bind(2, k.scope);
            q->bindNoCopy(3, k.id);
            q->bind(4, k.day);
            q->bind(5, k.metric);
            q->bind(6, static_cast<std::int64_t>(n));
            q->exec();
        }
        b.counts.clear();
    }

    void apply(batch& b, const store_ops::tally_soft_bounce& op, op_result& result) {
        if (op.threshold == 0) throw invalid_op("a soft-bounce threshold of 0");
        // The write lock is held (BEGIN IMMEDIATE): no other commit counts
        // between the insert and the count.
        auto bound = [&](const char* sql, time_point t) {
            SQLite::Statement q(db_, sql);
            q.bindNoCopy(1, b.ws);
            q.bindNoCopy(2, op.address);
            q.bind(3, micros(t));
            return q;
        };
        bound("DELETE FROM soft_bounces WHERE workspace = ?1 AND address = ?2 AND at < ?3",
              op.since)
            .exec();
        bound("INSERT INTO soft_bounces (workspace, address, at) VALUES (?1, ?2, ?3)", op.at)
            .exec();
        auto q = bound(
            "SELECT count(*) FROM soft_bounces WHERE workspace = ?1 AND address = ?2 AND at >= ?3",
            op.since);
        q.executeStep();
        result.applied = static_cast<std::uint64_t>(integer(q, 0)) >= op.threshold;
    }

public:
    std::vector<daily_count> daily_counts(std::string_view workspace, count_scope scope,
                                          std::string_view id, count_day from,
                                          count_day to) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace), key(id);
        return guarded("daily_counts", [&] {
            std::vector<daily_count> out;
            SQLite::Statement q(db_,
                                "SELECT day, metric, n FROM daily_counts WHERE workspace = ?1 AND "
                                "scope = ?2 AND id = ?3 AND day >= ?4 AND day <= ?5 ORDER BY day, "
                                "metric");
            q.bindNoCopy(1, ws);
            q.bind(2, static_cast<int>(scope));
            q.bindNoCopy(3, key);
            q.bind(4, from);
            q.bind(5, to);
            while (q.executeStep()) {
                const auto day = static_cast<count_day>(integer(q, 0));
                const auto metric = integer(q, 1);
                if (out.empty() || out.back().day != day) out.push_back({day, {}});
                if (metric >= 0 && metric < static_cast<std::int64_t>(count_metric_count))
                    out.back().n[static_cast<std::size_t>(metric)] =
                        static_cast<std::uint64_t>(integer(q, 2));
            }
            return out;
        });
    }

    std::size_t purge_counts(std::string_view workspace, count_day before) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("purge_counts", [&] {
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
            SQLite::Statement q(db_, "DELETE FROM daily_counts WHERE workspace = ?1 AND day < ?2");
            q.bindNoCopy(1, ws);
            q.bind(2, before);
            auto n = static_cast<std::size_t>(q.exec());
            SQLite::Statement t(db_, "DELETE FROM soft_bounces WHERE workspace = ?1 AND at < ?2");
            t.bindNoCopy(1, ws);
            t.bind(2, micros(day_start(before)));
            n += static_cast<std::size_t>(t.exec());
            tx.commit();
            return n;
        });
    }

private:
    // --- enrollments ---------------------------------------------------------

    template <class Op>
        requires(std::is_same_v<Op, store_ops::enroll> ||
                 std::is_same_v<Op, store_ops::update_enrollment> ||
                 std::is_same_v<Op, store_ops::stop_enrollments> ||
                 std::is_same_v<Op, store_ops::advance_enrollment>)
    void apply(batch& b, const Op& op, op_result& result) {
        sqlite_enrollments rows(db_, enrollment_sql(), b.ws);
        apply_enrollment_op(rows, store_op{op}, result);
    }

    // --- membership -----------------------------------------------------

    // Marks the reserved sends of the members in `dead` (and, when
    // `expired`, of members whose lease ran out and of sends from before
    // members existed) unknown, puts the queue items they held back to
    // waiting with `requeued` as their detail, and removes those members.
    std::size_t recover_members(std::string_view workspace, std::span<const std::uint64_t> dead,
                                time_point now, std::string_view detail, bool expired,
                                const std::string& requeued) {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        const std::string why(detail);
        return guarded("recover", [&] {
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
            std::vector<std::int64_t> owners;
            for (const std::uint64_t id : dead)
                if (id <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
                    owners.push_back(static_cast<std::int64_t>(id));
            if (expired) {
                owners.push_back(0);
                SQLite::Statement q(db_,
                                    "SELECT id FROM members WHERE workspace = ?1 AND "
                                    "lease_until <= ?2");
                q.bindNoCopy(1, ws);
                q.bind(2, micros(store_now()));
                while (q.executeStep()) owners.push_back(integer(q, 0));
            }
            std::sort(owners.begin(), owners.end());
            owners.erase(std::unique(owners.begin(), owners.end()), owners.end());
            std::size_t marked = 0;
            for (const std::int64_t owner : owners) {
                if (owner != 0) {
                    statement_use q(requeue_);
                    q->bindNoCopy(1, ws);
                    q->bind(2, owner);
                    q->bindNoCopy(3, requeued);
                    q->bind(4, micros(now));
                    q->exec();
                }
                if (owner != 0) {
                    // Outbound webhooks: a dead member's attempts go back
                    // to pending, due when they were.
                    statement_use q(requeue_deliveries_);
                    q->bindNoCopy(1, ws);
                    q->bind(2, owner);
                    q->bindNoCopy(3, requeued);
                    q->bind(4, micros(now));
                    q->exec();
                }
                {
                    statement_use q(mark_unknown_);
                    q->bindNoCopy(1, ws);
                    q->bind(2, owner);
                    q->bind(3, micros(now));
                    q->bindNoCopy(4, why);
                    marked += static_cast<std::size_t>(q->exec());
                }
                statement_use q(delete_member_);
                q->bindNoCopy(1, ws);
                q->bind(2, owner);
                q->exec();
            }
            tx.commit();
            return marked;
        });
    }

    // Recursive so that a for_each_* callback may call back into the store
    // from the same thread; other threads wait until the iteration ends.
    std::recursive_mutex mutex_;
    // Declared before the statements, which must be finalised before the
    // connection closes.
    SQLite::Database db_;
    SQLite::Statement find_workspace_;
    SQLite::Statement read_workspace_;
    SQLite::Statement insert_workspace_;
    SQLite::Statement write_workspace_;
    SQLite::Statement put_object_;
    SQLite::Statement delete_object_;
    SQLite::Statement put_object_tombstone_;
    SQLite::Statement delete_object_tombstone_;
    SQLite::Statement object_seq_;
    SQLite::Statement put_suppression_;
    SQLite::Statement delete_suppression_;
    SQLite::Statement supersede_suppression_;
    SQLite::Statement put_suppression_tombstone_;
    SQLite::Statement delete_suppression_tombstone_;
    SQLite::Statement any_suppression_tombstone_;
    SQLite::Statement find_idempotency_key_;
    SQLite::Statement insert_send_;
    SQLite::Statement find_attempt_;
    SQLite::Statement update_attempt_;
    SQLite::Statement update_outcome_;
    SQLite::Statement update_outcome_returning_;
    SQLite::Statement find_key_;
    SQLite::Statement insert_key_;
    SQLite::Statement read_gap_;
    SQLite::Statement write_gap_;
    SQLite::Statement count_uses_;
    SQLite::Statement nth_use_;
    SQLite::Statement insert_use_;
    SQLite::Statement delete_uses_;
    SQLite::Statement add_count_;
    SQLite::Statement append_audit_;
    std::unique_ptr<enrollment_statements> enrollment_sql_;  // made at the first use
    enrollment_statements& enrollment_sql() {
        if (!enrollment_sql_) enrollment_sql_ = std::make_unique<enrollment_statements>(db_);
        return *enrollment_sql_;
    }
    SQLite::Statement find_send_;
    SQLite::Statement find_suppression_;
    SQLite::Statement mark_unknown_;
    SQLite::Statement delete_member_;
    SQLite::Statement savepoint_failover_;
    SQLite::Statement rollback_failover_;
    SQLite::Statement release_failover_;
    SQLite::Statement find_queue_key_;
    SQLite::Statement insert_queued_;
    SQLite::Statement queued_holder_;
    SQLite::Statement defer_queued_;
    SQLite::Statement finish_queued_;
    SQLite::Statement cancel_queued_;
    SQLite::Statement record_key_;
    SQLite::Statement live_member_;
    SQLite::Statement claim_queued_;
    SQLite::Statement find_queued_;
    SQLite::Statement requeue_;
    // --- outbound webhooks
    SQLite::Statement insert_delivery_;
    SQLite::Statement end_attempt_;
    SQLite::Statement claim_deliveries_;
    SQLite::Statement requeue_deliveries_;
    // --- daily counts: prepared on first use
    std::optional<SQLite::Statement> add_daily_count_;
    std::unordered_map<std::string, std::int64_t> numbers_;
    std::unordered_map<std::int64_t, key_ids> keys_;  // by workspace number
    // Reused by every commit, so the hot path allocates nothing of its own.
    std::vector<std::size_t> order_;
    std::vector<claim_state> claims_;
    std::string key_list_;
    std::string old_keys_;
};

}  // namespace
}  // namespace detail::sqlite

std::shared_ptr<store> open_sqlite_store(const sqlite_store_params& params) {
    return detail::sqlite::guarded(fmt::format("open {}", params.path), [&] {
        return std::make_shared<detail::sqlite::sqlite_store>(params);
    });
}

int sqlite_schema_version() noexcept {
    return detail::sqlite::latest_schema_version();
}

}  // namespace mailers
