// The tables of the PostgreSQL store and their migrations.
#pragma once

#include <string>

#include <mailers/store.hpp>

#include "store/postgres/pg.hpp"

namespace mailers::pg {

inline constexpr int schema_version = 11;

/// Creates the schema when missing and applies the migration steps it
/// lacks, each in its own transaction, under an advisory lock so that
/// processes opening the store at once take turns. Throws
/// mailers::exception(errc::schema_too_new) for a schema from a newer
/// version; pg::error for anything the server refused.
/// Creates (as `mode` allows) and migrates the tables in `schema`.
void migrate(connection& c, const std::string& schema, open_mode mode);

}  // namespace mailers::pg
