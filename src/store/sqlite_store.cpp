#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <mailers/error.hpp>
#include <mailers/sqlite_store.hpp>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mailers {

std::string_view to_string(send_state s) noexcept {
    switch (s) {
        case send_state::reserved:
            return "reserved";
        case send_state::accepted:
            return "accepted";
        case send_state::failed:
            return "failed";
        case send_state::unknown:
            return "unknown";
    }
    return "invalid";
}

namespace detail {
namespace {

[[noreturn]] void fail(errc code, std::string message) {
    diagnostics diag;
    diag.message = std::move(message);
    throw exception(make_error_code(code), std::move(diag));
}

// An operation the store refuses by its own rules (as opposed to SQLite
// refusing it); reported with the failing op's position like SQLite errors.
class invalid_op : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Converts SQLite's exceptions into the library's at the interface, leaving
// exceptions thrown by user callbacks untouched.
template <class F>
decltype(auto) guarded(std::string_view what, F&& f) {
    try {
        return std::forward<F>(f)();
    } catch (const SQLite::Exception& e) {
        fail(errc::store_error, fmt::format("sqlite store: {}: {}", what, e.what()));
    }
}

// The integer codes written to the file. They are spelled out rather than
// taken from the enums' declaration order so that reordering or extending an
// enum can never reinterpret existing databases.
std::int64_t state_code(send_state s) {
    switch (s) {
        case send_state::reserved:
            return 0;
        case send_state::accepted:
            return 1;
        case send_state::failed:
            return 2;
        case send_state::unknown:
            return 3;
    }
    throw invalid_op("invalid send_state value");
}

send_state state_from_code(std::int64_t c) {
    switch (c) {
        case 0:
            return send_state::reserved;
        case 1:
            return send_state::accepted;
        case 2:
            return send_state::failed;
        case 3:
            return send_state::unknown;
    }
    fail(errc::store_error, fmt::format("sqlite store: corrupt sends.state value {}", c));
}

std::int64_t kind_code(suppression_kind k) {
    switch (k) {
        case suppression_kind::address:
            return 0;
        case suppression_kind::domain:
            return 1;
    }
    throw invalid_op("invalid suppression_kind value");
}

suppression_kind kind_from_code(std::int64_t c) {
    switch (c) {
        case 0:
            return suppression_kind::address;
        case 1:
            return suppression_kind::domain;
    }
    fail(errc::store_error, fmt::format("sqlite store: corrupt suppressions.kind value {}", c));
}

std::int64_t reason_code(suppression_reason r) {
    switch (r) {
        case suppression_reason::unsubscribe:
            return 0;
        case suppression_reason::hard_bounce:
            return 1;
        case suppression_reason::complaint:
            return 2;
        case suppression_reason::manual:
            return 3;
        case suppression_reason::legal:
            return 4;
    }
    throw invalid_op("invalid suppression_reason value");
}

suppression_reason reason_from_code(std::int64_t c) {
    switch (c) {
        case 0:
            return suppression_reason::unsubscribe;
        case 1:
            return suppression_reason::hard_bounce;
        case 2:
            return suppression_reason::complaint;
        case 3:
            return suppression_reason::manual;
        case 4:
            return suppression_reason::legal;
    }
    fail(errc::store_error, fmt::format("sqlite store: corrupt suppressions.reason value {}", c));
}

std::int64_t micros(time_point t) noexcept {
    return t.time_since_epoch().count();
}
time_point from_micros(std::int64_t v) noexcept {
    return time_point{duration{v}};
}

// SQLite integers are signed 64-bit; a larger value would come back negative
// and sort before every other row.
std::int64_t integer_key(std::uint64_t v, const char* what) {
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw invalid_op(fmt::format("{} {} exceeds the largest storable value", what, v));
    return static_cast<std::int64_t>(v);
}

// A ledger row's integer key packs (workspace number, send id) into one
// signed 64-bit value: 23 bits of workspace number above 40 bits of id. With
// the pair as the table's own row key, inserts and updates touch one B-tree
// fewer than with a composite primary key, which is worth a fifth of the
// commit cost on the ledger's hot path.
constexpr int send_id_bits = 40;
constexpr std::uint64_t largest_send_id = (std::uint64_t{1} << send_id_bits) - 1;
constexpr std::int64_t largest_workspace_number = (std::int64_t{1} << (63 - send_id_bits)) - 1;

std::int64_t send_key(std::int64_t workspace_number, std::uint64_t id) {
    if (id > largest_send_id)
        throw invalid_op(fmt::format("send id {} exceeds {}, the largest this store keeps", id,
                                     largest_send_id));
    return (workspace_number << send_id_bits) | static_cast<std::int64_t>(id);
}

std::uint64_t send_id_of_key(std::int64_t key) noexcept {
    return static_cast<std::uint64_t>(key) & largest_send_id;
}

// Schema history. A step is never edited once released: a change is a new
// step appended with the next version. Each step runs in its own
// transaction together with the user_version bump, so a crash mid-migration
// leaves the previous version intact.
struct migration {
    int version;
    const char* sql;
};

constexpr migration migrations[] = {
    {1, R"sql(
CREATE TABLE objects (
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (workspace, kind, id)
) WITHOUT ROWID;

CREATE TABLE suppressions (
    workspace TEXT NOT NULL,
    kind INTEGER NOT NULL,        -- 0 address, 1 domain
    value TEXT NOT NULL,          -- normalised address or domain
    reason INTEGER NOT NULL,      -- 0 unsubscribe, 1 hard_bounce, 2 complaint, 3 manual, 4 legal
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,  -- microseconds since the Unix epoch
    PRIMARY KEY (workspace, kind, value)
) WITHOUT ROWID;

-- Numbers for workspace names, used only in sends.row_key; never reused.
CREATE TABLE workspaces (
    number INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);

CREATE TABLE sends (
    row_key INTEGER PRIMARY KEY,  -- (workspaces.number << 40) | id: the (workspace, id) key
    workspace TEXT NOT NULL,
    id INTEGER NOT NULL,
    idempotency_key TEXT,         -- NULL when the caller gave none
    mailbox TEXT NOT NULL,
    provider TEXT NOT NULL,
    pool TEXT NOT NULL,
    recipient TEXT NOT NULL,
    message_id TEXT NOT NULL,
    state INTEGER NOT NULL,       -- 0 reserved, 1 accepted, 2 failed, 3 unknown
    attempt INTEGER NOT NULL,
    reserved_at INTEGER NOT NULL, -- microseconds since the Unix epoch
    updated_at INTEGER NOT NULL,  -- microseconds since the Unix epoch
    provider_message_id TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE UNIQUE INDEX sends_idempotency_key ON sends (workspace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX sends_reserved_at ON sends (workspace, reserved_at);
-- Only reserved sends are ever looked up by state (recovery at start-up).
-- Partial, the index stays as small as the number of sends in flight, and an
-- outcome update removes one entry instead of moving it.
CREATE INDEX sends_state ON sends (workspace, state) WHERE state = 0;

CREATE TABLE audit (
    workspace TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at INTEGER NOT NULL,          -- microseconds since the Unix epoch
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    "before" TEXT NOT NULL,
    "after" TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (workspace, seq)
);
)sql"},
};

constexpr int latest_version = std::end(migrations)[-1].version;

int user_version(SQLite::Database& db) {
    return db.execAndGet("PRAGMA user_version").getInt();
}

void refuse_if_too_new(int version, const std::string& path) {
    if (version > latest_version)
        fail(errc::schema_too_new,
             fmt::format(
                 "sqlite store: {} has schema version {}; this library knows versions up to {}",
                 path, version, latest_version));
}

void migrate(SQLite::Database& db, const std::string& path) {
    int current = user_version(db);
    refuse_if_too_new(current, path);
    for (const migration& m : migrations) {
        if (m.version <= current) continue;
        SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
        // Another process may have migrated while this one waited for the
        // write lock; the version read under the lock is the one that counts.
        current = user_version(db);
        refuse_if_too_new(current, path);
        if (m.version <= current) continue;
        db.exec(m.sql);
        db.exec(fmt::format("PRAGMA user_version = {}", m.version));
        tx.commit();
        current = m.version;
    }
}

SQLite::Database open_database(const sqlite_store_params& params) {
    const auto busy_ms = static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(
        params.busy_timeout.count(), 0, std::numeric_limits<int>::max()));
    // NOMUTEX: the store serialises every call on its own mutex, so SQLite's
    // per-call connection mutex would only add cost on the hot path.
    SQLite::Database db(
        params.path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX, busy_ms);
    // Checked before any PRAGMA that writes, so a file from a newer version
    // is refused without being touched.
    refuse_if_too_new(user_version(db), params.path);
    // Only takes effect while the file is still empty. Ledger rows are a few
    // hundred bytes; 8 KiB pages halve the per-page work of a group commit
    // (B-tree splits, WAL frames) compared with SQLite's 4 KiB default.
    db.exec("PRAGMA page_size = 8192");
    // The result is "memory" for ":memory:"; a file system without shared
    // memory support keeps its rollback journal, which is slower but correct.
    db.execAndGet("PRAGMA journal_mode = WAL");
    db.exec(params.durability == sqlite_durability::power_loss_safe
                ? "PRAGMA synchronous = FULL"
                : "PRAGMA synchronous = NORMAL");
    // An upper bound, allocated as pages are touched: room for the hot parts
    // of the ledger indexes so that keys arriving in random order (UUID
    // idempotency keys) do not go to the file system on every insert.
    db.exec("PRAGMA cache_size = -32768");
    migrate(db, params.path);
    return db;
}

// Leaves a cached statement ready for its next binding however the current
// use ends. Every use binds every parameter, so stale bindings (which may
// point at strings that no longer exist) are never read.
class statement_use {
public:
    explicit statement_use(SQLite::Statement& s) noexcept : s_(s) {}
    statement_use(const statement_use&) = delete;
    statement_use& operator=(const statement_use&) = delete;
    ~statement_use() { s_.tryReset(); }
    SQLite::Statement* operator->() const noexcept { return &s_; }
    SQLite::Statement& operator*() const noexcept { return s_; }

private:
    SQLite::Statement& s_;
};

std::string text(const SQLite::Statement& s, int col) {
    const SQLite::Column c = s.getColumn(col);
    const char* p = c.getText();  // before getBytes, as sqlite3_column_bytes requires
    return std::string(p, static_cast<std::size_t>(c.getBytes()));
}

std::int64_t integer(const SQLite::Statement& s, int col) {
    return s.getColumn(col).getInt64();
}

constexpr const char* send_columns =
    "id, idempotency_key, mailbox, provider, pool, recipient, message_id, state, attempt, "
    "reserved_at, updated_at, provider_message_id, detail";

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
    return r;
}

constexpr const char* suppression_columns = "kind, value, reason, source, created_at";

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
    R"(seq, at, actor, action, resource_type, resource_id, "before", "after", prev_hash, hash)";

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
    return r;
}

std::string describe(const store_op& op) {
    // Names the op without its payload: suppression values and recipients
    // are personal data and must not end up in logs through error messages.
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
        std::string operator()(const store_ops::insert_send& o) const {
            return fmt::format("insert_send id {}", o.row.id);
        }
        std::string operator()(const store_ops::update_send& o) const {
            return fmt::format("update_send id {}", o.row.id);
        }
        std::string operator()(const store_ops::append_audit& o) const {
            return fmt::format("append_audit seq {}", o.record.seq);
        }
    };
    return std::visit(visitor{}, op);
}

class sqlite_store final : public store {
public:
    explicit sqlite_store(const sqlite_store_params& params)
        : db_(open_database(params)),
          put_object_(db_,
                      "INSERT INTO objects (workspace, kind, id, json) VALUES (?1, ?2, ?3, ?4) "
                      "ON CONFLICT (workspace, kind, id) DO UPDATE SET json = excluded.json"),
          delete_object_(db_, "DELETE FROM objects WHERE workspace = ?1 AND kind = ?2 AND id = ?3"),
          put_suppression_(db_,
                           "INSERT INTO suppressions (workspace, kind, value, reason, source, "
                           "created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                           "ON CONFLICT (workspace, kind, value) DO UPDATE SET "
                           "reason = excluded.reason, source = excluded.source, "
                           "created_at = excluded.created_at"),
          delete_suppression_(
              db_, "DELETE FROM suppressions WHERE workspace = ?1 AND kind = ?2 AND value = ?3"),
          // The send statements share one parameter layout (see bind_send);
          // a statement may leave some of the parameters unused.
          insert_send_(db_,
                       "INSERT INTO sends (row_key, workspace, id, idempotency_key, mailbox, "
                       "provider, pool, recipient, message_id, state, attempt, reserved_at, "
                       "updated_at, provider_message_id, detail) VALUES (?15, ?1, ?2, ?3, ?4, ?5, "
                       "?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"),
          // Most updates record an outcome: the key and the reservation time
          // stay as they were. Leaving those columns out of SET spares their
          // two indexes; the WHERE clause makes this statement a no-op when
          // they did change, and update_send_ then does the full update.
          update_send_outcome_(db_,
                               "UPDATE sends SET mailbox = ?4, provider = ?5, pool = ?6, "
                               "recipient = ?7, message_id = ?8, state = ?9, attempt = ?10, "
                               "updated_at = ?12, provider_message_id = ?13, detail = ?14 "
                               "WHERE row_key = ?15 AND idempotency_key IS ?3 AND "
                               "reserved_at = ?11"),
          update_send_(db_,
                       "UPDATE sends SET idempotency_key = ?3, mailbox = ?4, provider = ?5, "
                       "pool = ?6, recipient = ?7, message_id = ?8, state = ?9, attempt = ?10, "
                       "reserved_at = ?11, updated_at = ?12, provider_message_id = ?13, "
                       "detail = ?14 WHERE row_key = ?15"),
          append_audit_(db_,
                        fmt::format("INSERT INTO audit (workspace, {}) VALUES (?1, ?2, ?3, ?4, "
                                    "?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                                    audit_columns)),
          find_send_(db_, fmt::format("SELECT {} FROM sends WHERE row_key = ?1", send_columns)),
          find_suppression_(db_, fmt::format("SELECT {} FROM suppressions "
                                             "WHERE workspace = ?1 AND kind = ?2 AND value = ?3",
                                             suppression_columns)),
          find_workspace_(db_, "SELECT number FROM workspaces WHERE name = ?1"),
          insert_workspace_(db_, "INSERT INTO workspaces (name) VALUES (?1)") {}

    store_snapshot load(std::string_view workspace, time_point since) override {
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        return guarded("load", [&] {
            store_snapshot snap;
            // One read transaction: every part of the snapshot comes from the
            // same committed state even while another process writes.
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::DEFERRED);
            {
                SQLite::Statement q(db_,
                                    "SELECT kind, id, json FROM objects WHERE workspace = ?1 "
                                    "ORDER BY kind, id");
                q.bindNoCopy(1, ws);
                while (q.executeStep())
                    snap.objects.push_back({text(q, 0), text(q, 1), text(q, 2)});
            }
            {
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
            {
                // row_key rather than id: the index holds it, so no table
                // lookups are needed.
                SQLite::Statement q(db_,
                                    "SELECT idempotency_key, row_key FROM sends WHERE workspace = "
                                    "?1 AND idempotency_key IS NOT NULL");
                q.bindNoCopy(1, ws);
                while (q.executeStep())
                    snap.idempotency_keys.emplace_back(text(q, 0), send_id_of_key(integer(q, 1)));
            }
            if (const auto number = workspace_number(ws)) {
                SQLite::Statement q(db_,
                                    "SELECT row_key FROM sends WHERE row_key BETWEEN ?1 AND ?2 "
                                    "ORDER BY row_key DESC LIMIT 1");
                q.bind(1, send_key(*number, 0));
                q.bind(2, send_key(*number, largest_send_id));
                if (q.executeStep()) snap.max_send_id = send_id_of_key(integer(q, 0));
            }
            {
                SQLite::Statement q(db_, fmt::format("SELECT {} FROM audit WHERE workspace = ?1 "
                                                     "ORDER BY seq DESC LIMIT 1",
                                                     audit_columns));
                q.bindNoCopy(1, ws);
                if (q.executeStep()) snap.last_audit = read_audit(q);
            }
            tx.commit();
            return snap;
        });
    }

    void commit(std::string_view workspace, std::span<const store_op> ops) override {
        if (ops.empty()) return;
        const std::lock_guard lock(mutex_);
        const std::string ws(workspace);
        guarded("commit", [&] {
            // IMMEDIATE takes the write lock up front, so a busy database is
            // reported before any op runs rather than at COMMIT. The
            // transaction rolls back in its destructor unless committed.
            SQLite::Transaction tx(db_, SQLite::TransactionBehavior::IMMEDIATE);
            batch b{ws, std::nullopt, false};
            auto apply_op = [&](std::size_t i) {
                try {
                    std::visit([&](const auto& op) { apply(b, op); }, ops[i]);
                } catch (const SQLite::Exception& e) {
                    fail_op(i, ops, e.what());
                } catch (const invalid_op& e) {
                    fail_op(i, ops, e.what());
                }
            };
            for (std::size_t i = 0; i < ops.size();) {
                std::size_t end = i;
                while (end < ops.size() && suppression_key(ops[end])) ++end;
                if (end - i < sorted_run_threshold) {
                    for (const std::size_t stop = std::max(end, i + 1); i < stop; ++i) apply_op(i);
                    continue;
                }
                // A long run of suppression ops (an import) is applied in key
                // order: B-tree inserts in key order are several times cheaper
                // than in random order. Ops on different keys commute and the
                // stable sort keeps those on one key in their order, so the
                // result is the same as applying the run as given.
                order_.resize(end - i);
                std::iota(order_.begin(), order_.end(), i);
                std::stable_sort(order_.begin(), order_.end(), [&](std::size_t x, std::size_t y) {
                    return *suppression_key(ops[x]) < *suppression_key(ops[y]);
                });
                for (const std::size_t k : order_) apply_op(k);
                i = end;
            }
            tx.commit();
            // Remembered only once committed: a rolled-back number may be
            // given to another workspace by the next writer.
            if (b.number_created) numbers_.emplace(ws, *b.number);
        });
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

private:
    // State of one commit call.
    struct batch {
        const std::string& ws;
        std::optional<std::int64_t> number;  // resolved at the first send op
        bool number_created = false;
    };

    static constexpr std::size_t sorted_run_threshold = 64;

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

    std::int64_t workspace_number_for_write(batch& b) {
        if (b.number) return *b.number;
        // Under the write lock, a number read here was committed by someone,
        // possibly another process.
        b.number = workspace_number(b.ws);
        if (b.number) return *b.number;
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
        b.number_created = true;
        return number;
    }

    // The strings bound below without copying live in `b.ws` or in the ops,
    // both of which outlive the statement's execution.
    void apply(batch& b, const store_ops::put_object& op) {
        statement_use q(put_object_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, op.object.kind);
        q->bindNoCopy(3, op.object.id);
        q->bindNoCopy(4, op.object.json);
        q->exec();
    }

    void apply(batch& b, const store_ops::delete_object& op) {
        statement_use q(delete_object_);
        q->bindNoCopy(1, b.ws);
        q->bindNoCopy(2, op.kind);
        q->bindNoCopy(3, op.id);
        q->exec();
    }

    void apply(batch& b, const store_ops::put_suppression& op) {
        const suppression_entry& e = op.entry;
        statement_use q(put_suppression_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, kind_code(e.kind));
        q->bindNoCopy(3, e.value);
        q->bind(4, reason_code(e.reason));
        q->bindNoCopy(5, e.source);
        q->bind(6, micros(e.created_at));
        q->exec();
    }

    void apply(batch& b, const store_ops::delete_suppression& op) {
        statement_use q(delete_suppression_);
        q->bindNoCopy(1, b.ws);
        q->bind(2, kind_code(op.kind));
        q->bindNoCopy(3, op.value);
        q->exec();
    }

    void bind_send(SQLite::Statement& q, batch& b, const ledger_row& r) {
        const std::int64_t key = send_key(workspace_number_for_write(b), r.id);
        q.bindNoCopy(1, b.ws);
        q.bind(2, static_cast<std::int64_t>(r.id));
        if (r.idempotency_key.empty())
            q.bind(3);  // NULL: the unique index ignores sends without a key
        else
            q.bindNoCopy(3, r.idempotency_key);
        q.bindNoCopy(4, r.mailbox);
        q.bindNoCopy(5, r.provider);
        q.bindNoCopy(6, r.pool);
        q.bindNoCopy(7, r.recipient);
        q.bindNoCopy(8, r.message_id);
        q.bind(9, state_code(r.state));
        q.bind(10, static_cast<std::int64_t>(r.attempt));
        q.bind(11, micros(r.reserved_at));
        q.bind(12, micros(r.updated_at));
        q.bindNoCopy(13, r.provider_message_id);
        q.bindNoCopy(14, r.detail);
        q.bind(15, key);
    }

    void apply(batch& b, const store_ops::insert_send& op) {
        statement_use q(insert_send_);
        bind_send(*q, b, op.row);
        q->exec();
    }

    void apply(batch& b, const store_ops::update_send& op) {
        {
            statement_use q(update_send_outcome_);
            bind_send(*q, b, op.row);
            if (q->exec() == 1) return;
        }
        statement_use q(update_send_);
        bind_send(*q, b, op.row);
        if (q->exec() == 0) throw invalid_op("no send with this id");
    }

    void apply(batch& b, const store_ops::append_audit& op) {
        const audit_record& r = op.record;
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
        q->exec();
    }

    // Recursive so that a for_each_* callback may call back into the store
    // from the same thread; other threads wait until the iteration ends.
    std::recursive_mutex mutex_;
    // Declared before the statements, which must be finalised before the
    // connection closes.
    SQLite::Database db_;
    SQLite::Statement put_object_;
    SQLite::Statement delete_object_;
    SQLite::Statement put_suppression_;
    SQLite::Statement delete_suppression_;
    SQLite::Statement insert_send_;
    SQLite::Statement update_send_outcome_;
    SQLite::Statement update_send_;
    SQLite::Statement append_audit_;
    SQLite::Statement find_send_;
    SQLite::Statement find_suppression_;
    SQLite::Statement find_workspace_;
    SQLite::Statement insert_workspace_;
    std::unordered_map<std::string, std::int64_t> numbers_;
    std::vector<std::size_t> order_;  // reused by commit to sort suppression runs
};

}  // namespace
}  // namespace detail

std::shared_ptr<store> open_sqlite_store(const sqlite_store_params& params) {
    return detail::guarded(fmt::format("open {}", params.path),
                           [&] { return std::make_shared<detail::sqlite_store>(params); });
}

int sqlite_schema_version() noexcept {
    return detail::latest_version;
}

}  // namespace mailers
