// The PostgreSQL store: one database shared by every process and host that
// works on a workspace. Built on libpq (Debian's libpq5); this header does
// not include libpq's.
//
// What it relies on (docs/postgres.md has the detail):
//   * READ COMMITTED and row locks: a commit locks the cap keys its
//     reservations claim (sorted, so two processes never deadlock), counts
//     the uses in each window through an index, and records its own, in the
//     same transaction as the ledger rows; a commit is two round trips
//     (libpq pipeline mode) whatever the size of its batch;
//   * synchronous commits: an acknowledged reservation survives a crash of
//     the database server;
//   * its own tables, in the schema named by `schema`, created at open when
//     `mode` allows and migrated (a version table records the steps applied).
#pragma once

#include <chrono>
#include <cstddef>
#include <mailers/config.hpp>
#include <mailers/store.hpp>
#include <memory>
#include <string>

namespace mailers {

struct postgres_store_params {
    /// A libpq connection string ("host=127.0.0.1 port=5432 dbname=mail
    /// user=mailers", or a "postgresql://" URI). The whole string may be
    /// given by reference, `env:NAME` or `file:/path`, as DSN secrets are:
    /// it usually holds a password.
    std::string conninfo;
    /// Schema holding the tables (letters, digits, underscores).
    std::string schema = "mailers";
    /// Whether the tables may be created: in a schema that is missing or
    /// holds no mailers tables yet.
    open_mode mode = open_mode::existing;
    /// Connections this handle keeps open, opened when first needed. Each
    /// operation holds one for its duration, so up to `pool_size` run at
    /// once; more wait for a free one.
    std::size_t pool_size = 4;
    /// How long an operation waits for a connection that was lost to come
    /// back (the server restarting) before it fails with errc::store_error.
    /// Opening waits the same way for a server it cannot reach, so a wrong
    /// host or port is reported after this long.
    std::chrono::milliseconds reconnect_timeout{30000};
    /// libpq's connect_timeout for each connection attempt.
    std::chrono::milliseconds connect_timeout{5000};
};

/// Opens (creating the tables if `mode` allows, and migrating) a PostgreSQL
/// store. Throws mailers::exception: errc::store_error naming what failed
/// (the server's message, with the password never shown),
/// errc::store_missing or errc::store_exists as `mode` says,
/// errc::schema_too_new for a schema written by a newer version of mailers.
///
/// Several handles, processes and hosts may open one database; every
/// decision they must agree on is taken by the database (store.hpp).
MAILERS_API std::shared_ptr<store> open_postgres_store(const postgres_store_params& params);

/// The schema version this library writes.
MAILERS_API int postgres_schema_version() noexcept;

}  // namespace mailers
