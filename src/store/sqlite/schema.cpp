#include "store/sqlite/schema.hpp"

#include <fmt/format.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <thread>

#include "store/sqlite/common.hpp"

namespace mailers::detail::sqlite {
namespace {

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
    {2, R"sql(
-- The member that reserved a send (members.id); 0 for sends written before
-- members existed, which recovery treats as a dead member's.
ALTER TABLE sends ADD COLUMN owner INTEGER NOT NULL DEFAULT 0;
-- The cap_keys ids under which the current attempt's uses are recorded,
-- comma-separated. With them, releasing a send's uses is a primary-key
-- delete, and cap_uses needs no second index that every reservation would
-- have to update.
ALTER TABLE sends ADD COLUMN cap_keys TEXT NOT NULL DEFAULT '';
-- Reserved sends are looked up by owner at recovery and by workspace at
-- load; one partial index serves both, and an outcome update removes one
-- entry instead of moving it.
DROP INDEX sends_state;
CREATE INDEX sends_reserved ON sends (workspace, owner) WHERE state = 0;

-- The per-workspace counters every commit reads and writes under the write
-- lock: the change feed, the audit chain's head and the last send id given.
ALTER TABLE workspaces ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN audit_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN audit_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE workspaces ADD COLUMN last_send_id INTEGER NOT NULL DEFAULT 0;
INSERT INTO workspaces (name)
    SELECT workspace FROM audit UNION SELECT workspace FROM objects
    UNION SELECT workspace FROM suppressions EXCEPT SELECT name FROM workspaces;
UPDATE workspaces SET
    audit_seq = coalesce((SELECT max(seq) FROM audit WHERE audit.workspace = workspaces.name), 0),
    audit_hash = coalesce((SELECT hash FROM audit WHERE audit.workspace = workspaces.name
                           ORDER BY seq DESC LIMIT 1), ''),
    last_send_id = coalesce((SELECT max(row_key) FROM sends
                             WHERE row_key BETWEEN number << 40 AND (number << 40) + 1099511627775),
                            number << 40) - (number << 40);

-- The change that last wrote a row; rows from before the feed carry 0.
ALTER TABLE objects ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX objects_seq ON objects (workspace, seq);
ALTER TABLE suppressions ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
CREATE INDEX suppressions_seq ON suppressions (workspace, seq);
-- Deletions, for the change feed and for stale-configuration checks. A put
-- removes its key's tombstone, so a key is in the table or its tombstone,
-- never both.
CREATE TABLE object_tombstones (
    workspace TEXT NOT NULL,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind, id)
) WITHOUT ROWID;
CREATE INDEX object_tombstones_seq ON object_tombstones (workspace, seq);
CREATE TABLE suppression_tombstones (
    workspace TEXT NOT NULL,
    kind INTEGER NOT NULL,        -- as suppressions.kind
    value TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (workspace, kind, value)
) WITHOUT ROWID;
CREATE INDEX suppression_tombstones_seq ON suppression_tombstones (workspace, seq);

-- AUTOINCREMENT: a member id is never given twice, so a recovered member's
-- late writes can never pass for a new member's.
CREATE TABLE members (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    name TEXT NOT NULL,
    lease_until INTEGER NOT NULL, -- microseconds since the Unix epoch, system clock
    acked_seq INTEGER NOT NULL
);
CREATE INDEX members_workspace ON members (workspace);

-- Cap keys get numbers so that cap_uses entries stay a few bytes long.
CREATE TABLE cap_keys (
    id INTEGER PRIMARY KEY,
    workspace INTEGER NOT NULL,   -- workspaces.number
    key TEXT NOT NULL,
    gap_until INTEGER NOT NULL DEFAULT 0, -- microseconds since the Unix epoch
    UNIQUE (workspace, key)
);
-- One row per claim of a reservation; `claim` is the claim's position, so a
-- reservation may claim one key twice. A send's uses of a key are one range
-- of the primary key, found from sends.cap_keys and sends.reserved_at.
CREATE TABLE cap_uses (
    key_id INTEGER NOT NULL,
    at INTEGER NOT NULL,          -- microseconds since the Unix epoch
    send_id INTEGER NOT NULL,     -- sends.id
    claim INTEGER NOT NULL,
    PRIMARY KEY (key_id, at, send_id, claim)
) WITHOUT ROWID;
-- The uses of a key counted per time bucket at three sizes: level 1 buckets
-- are 2^20 us (about a second), level 2 2^26 us (about a minute), level 3
-- 2^32 us (about 72 minutes); `bucket` is `at` shifted right by that many
-- bits. A window is counted from cap_uses for at most its first second and
-- from at most 64 + 64 buckets plus one per 72 minutes after that, so a
-- count costs the same for a key with a million uses as for one with ten.
CREATE TABLE cap_counts (
    key_id INTEGER NOT NULL,
    level INTEGER NOT NULL,
    bucket INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (key_id, level, bucket)
) WITHOUT ROWID;

-- Sends recorded before caps were counted here still occupy their mailbox
-- and provider caps for the longest window the engine uses (8 days).
CREATE TEMP TABLE m2_recent (
    row_key INTEGER PRIMARY KEY,
    ws INTEGER NOT NULL,
    id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    mailbox_key TEXT NOT NULL,
    provider_key TEXT NOT NULL
);
INSERT INTO m2_recent
    SELECT s.row_key, w.number, s.id, s.reserved_at, 'mailbox:' || s.mailbox,
           'provider:' || s.provider
    FROM sends s JOIN workspaces w ON w.name = s.workspace
    WHERE s.state <> 2
      AND s.reserved_at >= (CAST(strftime('%s', 'now') AS INTEGER) - 8 * 86400) * 1000000;
INSERT OR IGNORE INTO cap_keys (workspace, key)
    SELECT ws, mailbox_key FROM m2_recent UNION SELECT ws, provider_key FROM m2_recent;
INSERT INTO cap_uses (key_id, at, send_id, claim)
    SELECT k.id, r.at, r.id, 0 FROM m2_recent r
        JOIN cap_keys k ON k.workspace = r.ws AND k.key = r.mailbox_key
    UNION ALL
    SELECT k.id, r.at, r.id, 1 FROM m2_recent r
        JOIN cap_keys k ON k.workspace = r.ws AND k.key = r.provider_key;
UPDATE sends SET cap_keys = (
    SELECT m.id || ',' || p.id FROM m2_recent r
        JOIN cap_keys m ON m.workspace = r.ws AND m.key = r.mailbox_key
        JOIN cap_keys p ON p.workspace = r.ws AND p.key = r.provider_key
    WHERE r.row_key = sends.row_key)
WHERE row_key IN (SELECT row_key FROM m2_recent);
INSERT INTO cap_counts (key_id, level, bucket, n)
    SELECT key_id, 1, at >> 20, count(*) FROM cap_uses GROUP BY key_id, at >> 20
    UNION ALL
    SELECT key_id, 2, at >> 26, count(*) FROM cap_uses GROUP BY key_id, at >> 26
    UNION ALL
    SELECT key_id, 3, at >> 32, count(*) FROM cap_uses GROUP BY key_id, at >> 32;
DROP TABLE temp.m2_recent;
)sql"},
    {3, R"sql(
-- The change seq the engine had applied when it made the hand-off's last
-- suppression check; 0 for sends recorded before it was kept.
ALTER TABLE sends ADD COLUMN suppression_seq INTEGER NOT NULL DEFAULT 0;
)sql"},
    {4, R"sql(
-- The change seq published by the commit or import that appended the
-- record; 0 when it published none, and for records from before it was kept.
ALTER TABLE audit ADD COLUMN change_seq INTEGER NOT NULL DEFAULT 0;
-- Suppression rows as they were before a change replaced or removed them,
-- kept so the audited changes can be checked against what the table holds.
-- A rowid table: one key is replaced many times, and rowid order is the
-- order the versions were ended in.
CREATE TABLE suppression_superseded (
    workspace TEXT NOT NULL,
    kind INTEGER NOT NULL,        -- as suppressions.kind
    value TEXT NOT NULL,
    reason INTEGER NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    seq INTEGER NOT NULL,         -- the change that wrote the row
    by_seq INTEGER NOT NULL       -- the change that replaced or removed it
);
CREATE INDEX suppression_superseded_key ON suppression_superseded (workspace, kind, value);
)sql"},
    {5, R"sql(
-- The send queue. Ids come from workspaces.last_queue_id, so a purged
-- item's id is never given again.
ALTER TABLE workspaces ADD COLUMN last_queue_id INTEGER NOT NULL DEFAULT 0;
CREATE TABLE queue (
    workspace TEXT NOT NULL,
    id INTEGER NOT NULL,
    idempotency_key TEXT,         -- NULL when the caller gave none
    pool TEXT NOT NULL,
    mailbox TEXT NOT NULL,
    recipient_domain TEXT NOT NULL,
    request BLOB NOT NULL,        -- opaque bytes, as the engine serialised them
    origin TEXT NOT NULL,
    enqueued_at INTEGER NOT NULL, -- microseconds since the Unix epoch, as every time below
    not_before INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    state INTEGER NOT NULL,       -- 0 waiting, 1 claimed, 2 done, 3 cancelled
    wait_reason TEXT NOT NULL,
    checks INTEGER NOT NULL,
    claimed_by INTEGER NOT NULL,  -- members.id while claimed, else 0
    send_id INTEGER NOT NULL,     -- sends.id once done, else 0
    detail TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE UNIQUE INDEX queue_idempotency_key ON queue (workspace, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Partial indexes, each as small as the items in its state: a claim reads
-- the waiting ones in due order and counts their reasons, recovery finds
-- the claimed ones by holder, a purge the finished ones by age.
CREATE INDEX queue_due ON queue (workspace, due_at, id) WHERE state = 0;
CREATE INDEX queue_claimed ON queue (workspace, claimed_by) WHERE state = 1;
CREATE INDEX queue_finished ON queue (workspace, updated_at) WHERE state >= 2;
)sql"},
    {6, R"sql(
-- Keys recorded so that what a provider delivers more than once (an
-- event, a signature token) takes effect once. An expired row is free to
-- be recorded again and is purged later.
CREATE TABLE recorded_keys (
    workspace TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    recorded_at INTEGER NOT NULL, -- microseconds since the Unix epoch, as expires_at
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (workspace, namespace, key)
) WITHOUT ROWID;
CREATE INDEX recorded_keys_expiry ON recorded_keys (workspace, expires_at);
)sql"},
    {7, R"sql(
-- Enrollments: one contact in one sequence. AUTOINCREMENT: an id is never
-- given again, even after its row is gone.
CREATE TABLE enrollments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    sequence_id TEXT NOT NULL,
    address TEXT NOT NULL,        -- normalised, as a suppression entry's value
    display_name TEXT NOT NULL,
    variables TEXT NOT NULL,      -- as the engine serialised them
    owner TEXT NOT NULL,
    actor TEXT NOT NULL,
    state INTEGER NOT NULL,       -- 0 active, 1 paused, 2 completed, 3 stopped, 4 failed
    stop_reason INTEGER NOT NULL, -- 0 none, 1 replied, 2 bounced, 3 unsubscribed,
                                  -- 4 suppressed, 5 goal, 6 manual
    detail TEXT NOT NULL,
    step INTEGER NOT NULL,        -- steps sent
    next_due INTEGER,             -- NULL unless the scheduler has this one to plan
    step_due INTEGER NOT NULL,    -- microseconds since the Unix epoch, as every time here
    queue_key TEXT NOT NULL,
    plans INTEGER NOT NULL,
    prev_mailbox TEXT NOT NULL,
    prev_message_id TEXT NOT NULL,
    prev_subject TEXT NOT NULL,
    prev_references TEXT NOT NULL,
    last_sent_at INTEGER NOT NULL,
    enrolled_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version INTEGER NOT NULL,
    domain TEXT NOT NULL          -- the address's, for domain suppressions
);
CREATE UNIQUE INDEX enrollments_contact ON enrollments (workspace, sequence_id, address);
CREATE INDEX enrollments_address ON enrollments (workspace, address);
CREATE INDEX enrollments_domain ON enrollments (workspace, domain);
-- The scheduler's: due steps without a scan of those not due.
CREATE INDEX enrollments_due ON enrollments (workspace, state, next_due);
-- Which enrollment sent a message, for replies matched by Message-ID.
CREATE TABLE enrollment_messages (
    workspace TEXT NOT NULL,
    message_id TEXT NOT NULL,
    enrollment INTEGER NOT NULL,
    PRIMARY KEY (workspace, message_id)
) WITHOUT ROWID;
)sql"},
    {8, R"sql(
-- Outbound webhooks: the outbox, one row per event and endpoint. Ids from
-- AUTOINCREMENT are never given again. The partial indexes stay as small
-- as the rows in their state, as the queue's do.
CREATE TABLE webhook_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workspace TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    message_id TEXT NOT NULL,
    event_key TEXT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,  -- microseconds since the Unix epoch, as every time here
    due_at INTEGER NOT NULL,
    state INTEGER NOT NULL,       -- 0 pending, 1 claimed, 2 delivered, 3 failed
    attempts INTEGER NOT NULL,
    claimed_by INTEGER NOT NULL,  -- members.id while claimed, else 0
    last_status INTEGER NOT NULL,
    detail TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX webhook_outbox_event ON webhook_outbox (workspace, endpoint, event_key);
CREATE INDEX webhook_outbox_due ON webhook_outbox (workspace, due_at, id) WHERE state = 0;
CREATE INDEX webhook_outbox_claimed ON webhook_outbox (workspace, claimed_by) WHERE state = 1;
CREATE INDEX webhook_outbox_ended ON webhook_outbox (workspace, updated_at) WHERE state >= 2;
)sql"},
    {9, R"sql(
-- Per-day counts: one row per (scope, id, UTC day, metric), scope and
-- metric as the codes of count_scope and count_metric. Soft bounces: one
-- row per bounce, for the soft-bounce threshold.
CREATE TABLE daily_counts (
    workspace TEXT NOT NULL,
    scope INTEGER NOT NULL,
    id TEXT NOT NULL,
    day INTEGER NOT NULL,  -- days since 1970-01-01, UTC
    metric INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (workspace, scope, id, day, metric)
) WITHOUT ROWID;
CREATE INDEX daily_counts_day ON daily_counts (workspace, day);
CREATE TABLE soft_bounces (
    workspace TEXT NOT NULL,
    address TEXT NOT NULL,
    at INTEGER NOT NULL  -- microseconds since the Unix epoch
);
CREATE INDEX soft_bounces_address ON soft_bounces (workspace, address, at);
CREATE INDEX soft_bounces_at ON soft_bounces (workspace, at);
)sql"},
    {10, R"sql(
-- The audit chain's anchor, moved by a purge of its oldest records in the
-- purge's transaction: the first kept record's seq (0 while nothing was
-- purged), the hash it links to, when, and whether a purged record made
-- the chain keyed.
ALTER TABLE workspaces ADD COLUMN audit_anchor_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN audit_anchor_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE workspaces ADD COLUMN audit_anchor_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workspaces ADD COLUMN audit_anchor_keyed INTEGER NOT NULL DEFAULT 0;
)sql"},
    {11, R"sql(
-- Each workspace's number of suppression rows, kept by triggers in the
-- transaction of every statement that inserts or deletes one, whatever the
-- path (a commit, an import, an erasure), so reading it is one row however
-- long the list. An upsert of an existing key is an update: no change.
CREATE TABLE suppression_counts (
    workspace TEXT PRIMARY KEY,
    n INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO suppression_counts (workspace, n)
    SELECT workspace, count(*) FROM suppressions GROUP BY workspace;
CREATE TRIGGER suppressions_count_insert AFTER INSERT ON suppressions BEGIN
    INSERT INTO suppression_counts (workspace, n) VALUES (NEW.workspace, 1)
        ON CONFLICT (workspace) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER suppressions_count_delete AFTER DELETE ON suppressions BEGIN
    UPDATE suppression_counts SET n = n - 1 WHERE workspace = OLD.workspace;
END;
)sql"},
    {12, R"sql(
-- An enrollment's re-sends of its current step after an unknown send was
-- resolved not_sent: 0 for the first send (see enrollment::attempt).
ALTER TABLE enrollments ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
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

// Refuses, before SQLite opens it, a file that is no store to open: a
// missing or empty one unless the mode may create, one that is not an SQLite
// database, and one shorter than its header says (a copy or a disk cut it
// short; SQLite would read the missing pages as absent rows). Returns whether
// nothing is there yet.
bool check_file(const sqlite_store_params& p) {
    namespace fs = std::filesystem;
    if (p.path.empty() || p.path == ":memory:") return true;
    std::error_code ec;
    const auto size = fs::file_size(p.path, ec);
    // A missing file is told by the error itself: asking again with exists()
    // races a handle that creates the file in between.
    const bool missing = ec == std::errc::no_such_file_or_directory;
    if (ec || size == 0) {
        if (ec && !missing)
            fail(errc::store_error,
                 fmt::format("sqlite store: cannot read {}: {}", p.path, ec.message()));
        if (p.mode == open_mode::existing)
            fail(errc::store_missing,
                 fmt::format("sqlite store: {} {}; open_mode::create makes a new store", p.path,
                             ec ? "does not exist" : "is empty (0 bytes)"));
        return true;
    }
    std::array<unsigned char, 100> h{};
    auto read_header = [&] {
        std::ifstream in(p.path, std::ios::binary);
        in.read(reinterpret_cast<char*>(h.data()), h.size());
        return in.gcount() == static_cast<std::streamsize>(h.size());
    };
    constexpr std::string_view magic{"SQLite format 3\0", 16};
    if (!read_header() || !std::equal(magic.begin(), magic.end(), h.begin()))
        fail(errc::store_corrupt,
             fmt::format("sqlite store: {} is not an SQLite database ({} bytes)", p.path, size));
    auto be32 = [&](std::size_t at) {
        return std::uint32_t{h[at]} << 24 | std::uint32_t{h[at + 1]} << 16 |
               std::uint32_t{h[at + 2]} << 8 | std::uint32_t{h[at + 3]};
    };
    // The page count in the header is valid only when written by a version
    // that keeps it (file format section 1.3.7).
    auto expected_bytes = [&]() -> std::uint64_t {
        const std::uint32_t page_size = h[16] == 0 && h[17] == 1 ? 65536u : (h[16] << 8 | h[17]);
        return be32(24) == be32(92) ? std::uint64_t{be32(28)} * page_size : 0;
    };
    // A checkpoint in another process writes page 1, with the new page count,
    // before the pages after it, so a live file can look short for a moment.
    // A file cut short stays short: ask again for a while before saying so.
    std::uintmax_t now_size = size;
    for (int attempt = 0; now_size < expected_bytes(); ++attempt) {
        if (attempt == 50)
            fail(errc::store_corrupt,
                 fmt::format("sqlite store: {} is cut short: {} bytes, its header says {}", p.path,
                             now_size, expected_bytes()));
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        now_size = fs::file_size(p.path, ec);
        if (ec || !read_header()) return false;  // SQLite's open tells what changed
    }
    return false;
}

}  // namespace

int latest_schema_version() noexcept {
    return latest_version;
}

SQLite::Database open_database(const sqlite_store_params& params) {
    const auto busy_ms = static_cast<int>(std::clamp<std::chrono::milliseconds::rep>(
        params.busy_timeout.count(), 0, std::numeric_limits<int>::max()));
    // NOMUTEX: the store serialises every call on its own mutex, so SQLite's
    // per-call connection mutex would only add cost on the hot path.
    const bool nothing_there = check_file(params);
    SQLite::Database db(params.path,
                        SQLite::OPEN_READWRITE | SQLite::OPEN_NOMUTEX |
                            (nothing_there ? SQLite::OPEN_CREATE : 0),
                        busy_ms);
    // Checked before any PRAGMA that writes, so a file that is refused is
    // not touched.
    const int version = user_version(db);
    refuse_if_too_new(version, params.path);
    if (version == 0) {
        // A host's own tables may share the file; they are not a store.
        if (params.mode == open_mode::existing && !params.path.empty() &&
            params.path != ":memory:")
            fail(errc::store_missing,
                 fmt::format("sqlite store: {} holds no mailers store; open_mode::create makes one",
                             params.path));
    } else if (params.mode == open_mode::create) {
        fail(errc::store_exists,
             fmt::format("sqlite store: {} already holds a mailers store (schema version {})",
                         params.path, version));
    }
    // Only takes effect while the file is still empty. Ledger rows are a few
    // hundred bytes; 8 KiB pages halve the per-page work of a group commit
    // (B-tree splits, WAL frames) compared with SQLite's 4 KiB default.
    db.exec("PRAGMA page_size = 8192");
    // The result is "memory" for ":memory:"; a file system without shared
    // memory support keeps its rollback journal, which is slower but correct.
    // Switching a new file to WAL needs it to itself, and SQLite answers
    // SQLITE_BUSY at once, not through the busy handler, while other handles
    // are opening the same new file: so wait here, up to the busy timeout.
    const auto deadline = std::chrono::steady_clock::now() + params.busy_timeout;
    for (;;) {
        try {
            if (db.execAndGet("PRAGMA journal_mode").getString() != "wal")
                db.execAndGet("PRAGMA journal_mode = WAL");
            break;
        } catch (const SQLite::Exception& e) {
            if ((e.getErrorCode() & 0xff) != SQLITE_BUSY ||
                std::chrono::steady_clock::now() >= deadline)
                throw;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
    }
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

}  // namespace mailers::detail::sqlite
