// The SQLite store: one file, zero set-up. WAL journal, schema migrations
// versioned in the database (PRAGMA user_version), batched transactions.
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
    sqlite_durability durability = sqlite_durability::process_crash_safe;
    /// How long a writer waits for another process's lock before failing.
    std::chrono::milliseconds busy_timeout{5000};
};

/// Opens (creating and migrating if needed) an SQLite store. Throws
/// mailers::exception (errc::store_error, errc::schema_too_new); a file from
/// a newer schema is refused before anything in it is changed.
///
/// The store may be shared by several threads: calls are serialised, and a
/// for_each_* callback may call back into the store from its own thread.
/// Several stores (and processes) may open one file; writers take turns,
/// waiting up to `busy_timeout`. Send ids are limited to 2^40 - 1.
MAILERS_API std::shared_ptr<store> open_sqlite_store(const sqlite_store_params& params);

/// The schema version this library writes.
MAILERS_API int sqlite_schema_version() noexcept;

}  // namespace mailers
