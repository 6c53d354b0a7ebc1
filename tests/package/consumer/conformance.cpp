// A third-party store's test as the conformance kit's documentation shows it,
// here against the library's own SQLite store, in a file in the current
// directory.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>

#include <filesystem>
#include <mailers.hpp>
#include <mailers/testing/store_conformance.hpp>
#include <string>

TEST_CASE("the SQLite store passes the installed conformance kit") {
    const std::string path = (std::filesystem::current_path() / "conformance.db").string();
    std::filesystem::remove(path);
    mailers::conformance::run_store_conformance(
        [&] {
            return mailers::open_sqlite_store({path, mailers::open_mode::open_or_create});
        },
        "conformance");
}
