// The store a store benchmark runs on: PostgreSQL when given a conninfo,
// else an SQLite file; opened or created.
#pragma once

#include <cstddef>
#include <mailers/postgres_store.hpp>
#include <mailers/sqlite_store.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

/// --pg CONNINFO [--schema NAME] or --sqlite PATH: exactly one of pg and sqlite.
struct store_choice {
    std::string pg;
    std::string sqlite;
    std::string schema;  ///< PostgreSQL schema; "" the library's default
};

/// Takes --pg, --sqlite and --schema into `o`; false for any other name.
inline bool take_store_option(store_choice& o, std::string_view name, std::string value) {
    if (name == "--pg")
        o.pg = std::move(value);
    else if (name == "--sqlite")
        o.sqlite = std::move(value);
    else if (name == "--schema")
        o.schema = std::move(value);
    else
        return false;
    return true;
}

/// Exactly one of --pg and --sqlite was given.
inline bool one_store_chosen(const store_choice& o) {
    return o.pg.empty() != o.sqlite.empty();
}

inline std::shared_ptr<mailers::store> open_store(const store_choice& o) {
    if (!o.pg.empty()) {
        mailers::postgres_store_params p;
        p.conninfo = o.pg;
        p.mode = mailers::open_mode::open_or_create;
        if (!o.schema.empty()) p.schema = o.schema;
        return mailers::open_postgres_store(p);
    }
    return mailers::open_sqlite_store({o.sqlite, mailers::open_mode::open_or_create});
}

/// "1,4,16" as numbers.
inline std::vector<std::size_t> size_list(const std::string& s) {
    std::vector<std::size_t> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) out.push_back(std::stoul(item));
    return out;
}

}  // namespace bench
