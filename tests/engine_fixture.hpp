// Shared set-up for engine tests: an engine on an io_context with a manual
// clock, an SQLite store, and capture transports behind named providers.
#pragma once

#include <mailers/engine.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transports/capture_transport.hpp>
#include <mailers/transports/fault_injector.hpp>

#include <boost/asio/io_context.hpp>
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

namespace mailers_test {

using namespace std::chrono_literals;

/// 2026-11-25 12:00:00 UTC, a Wednesday.
inline mailers::time_point test_epoch() {
    return mailers::time_point(std::chrono::seconds(1795608000));
}

inline std::filesystem::path temp_db(const std::string& stem) {
    static std::mt19937_64 rng{std::random_device{}()};
    auto p = std::filesystem::temp_directory_path() /
             ("mailers-test-" + stem + "-" + std::to_string(rng()) + ".db");
    return p;
}

struct db_file {
    std::filesystem::path path;
    explicit db_file(const std::string& stem) : path(temp_db(stem)) {}
    ~db_file() {
        std::error_code ec;
        for (auto suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path.string() + suffix, ec);
    }
};

struct fixture {
    boost::asio::io_context ioc;
    std::shared_ptr<mailers::manual_clock> clock = std::make_shared<mailers::manual_clock>(test_epoch());
    std::shared_ptr<mailers::store> store;
    std::unique_ptr<mailers::engine> eng;
    std::shared_ptr<mailers::capture_transport> capture =
        std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::principal admin{"admin", "Test Admin"};

    explicit fixture(std::string path = ":memory:", std::uint64_t seed = 42) {
        store = mailers::open_sqlite_store({path});
        open(seed);
    }

    void open(std::uint64_t seed = 42) {
        mailers::engine_params p;
        p.storage = store;
        p.clock = clock;
        p.random_seed = seed;
        eng = std::make_unique<mailers::engine>(ioc.get_executor(), std::move(p));
        eng->add_provider(admin, "capture", capture);
    }

    mailers::mailbox_config mailbox(const std::string& id, const std::string& addr,
                                    std::vector<mailers::rate_limit> limits = {}) {
        mailers::mailbox_config m;
        m.id = id;
        auto at = addr.find('@');
        m.from = mailers::address{addr.substr(0, at), addr.substr(at + 1), "Rep " + id};
        m.provider = "capture";
        m.limits = std::move(limits);
        return m;
    }

    void add_pool(const std::string& id, std::vector<std::string> ids,
                  mailers::rotation_kind kind = mailers::rotation_kind::round_robin) {
        mailers::pool_config p;
        p.id = id;
        p.mailboxes = std::move(ids);
        p.policy.kind = kind;
        eng->upsert_pool(admin, p);
    }

    static mailers::send_request request(const std::string& pool, const std::string& to,
                                         const std::string& key = {}) {
        mailers::send_request r;
        r.pool = pool;
        auto at = to.find('@');
        r.to = mailers::address{to.substr(0, at), to.substr(at + 1), {}};
        r.subject = "Hello";
        r.text = "Hi there";
        r.idempotency_key = key;
        return r;
    }

    /// Sends and runs the io_context until the send completes.
    std::pair<mailers::error_code, mailers::send_result> send(mailers::send_request r) {
        std::optional<std::pair<mailers::error_code, mailers::send_result>> out;
        eng->async_send(std::move(r), [&](mailers::error_code ec, mailers::send_result res) {
            out.emplace(ec, std::move(res));
        });
        ioc.restart();
        while (!out) ioc.run_one();
        return std::move(*out);
    }
};

}  // namespace mailers_test
