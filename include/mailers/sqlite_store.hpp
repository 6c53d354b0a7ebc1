// The SQLite store: one file, zero set-up. WAL journal, schema migrations
// versioned in the database (PRAGMA user_version). Several processes on one
// host may share the file: every commit is one `BEGIN IMMEDIATE`
// transaction, so SQLite's write lock serialises every decision the store
// makes (cap counts, ids, idempotency keys, the audit chain, the change
// feed). The file must not be on a network file system.
#pragma once

#include <chrono>
#include <mailers/config.hpp>
#include <mailers/store.hpp>
#include <memory>
#include <string>

namespace mailers {

enum class sqlite_durability {
    /// synchronous=NORMAL in WAL mode: every committed transaction survives
    /// a crash of the process (kill -9); the last few may be lost on power
    /// failure or an OS crash.
    process_crash_safe,
    /// synchronous=FULL: survives power failure too, at an fsync per commit.
    power_loss_safe,
};

struct sqlite_store_params {
    std::string path;  ///< file path; ":memory:" for a private in-memory database
    /// Whether a store may be created: in a missing or zero-byte file, or in
    /// an SQLite database that holds no mailers tables yet (the host's own
    /// tables may share the file). ":memory:" is always new. A file that is
    /// not an SQLite database, or is shorter than its header says, is
    /// errc::store_corrupt in every mode and is not changed.
    open_mode mode = open_mode::existing;
    sqlite_durability durability = sqlite_durability::process_crash_safe;
    /// How long a writer waits for another connection's write lock before
    /// its commit (or membership call) fails with errc::store_error.
    std::chrono::milliseconds busy_timeout{5000};
};

/// Opens (creating it if `mode` allows, and migrating) an SQLite store.
/// Throws mailers::exception (errc::store_missing, errc::store_exists,
/// errc::store_corrupt, errc::store_error, errc::schema_too_new); a file
/// that is refused is not changed. A file
/// written by an older version is migrated in place: its sends belong to no
/// member (`recover` turns those still reserved into `unknown`), and its
/// non-failed sends of the last 8 days count against their "mailbox:" and
/// "provider:" caps.
///
/// The store may be shared by several threads: calls on one store are
/// serialised, and a for_each_* callback may call back into the store from
/// its own thread. Several stores (and processes) may open one file; writers
/// take turns, waiting up to `busy_timeout`. Member leases run on the
/// system clock, which all processes on the host share. Send ids are
/// limited to 2^40 - 1 per workspace.
MAILERS_API std::shared_ptr<store> open_sqlite_store(const sqlite_store_params& params);

/// The schema version this library writes.
MAILERS_API int sqlite_schema_version() noexcept;

}  // namespace mailers
