// The SQLite store's schema: its migrations and how a connection is opened.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>

#include <mailers/sqlite_store.hpp>

namespace mailers::detail::sqlite {

/// The schema version this library writes.
int latest_schema_version() noexcept;

/// Opens `params.path`, sets the connection up and migrates the file to the
/// latest version; a newer file is refused before anything is written.
SQLite::Database open_database(const sqlite_store_params& params);

}  // namespace mailers::detail::sqlite
