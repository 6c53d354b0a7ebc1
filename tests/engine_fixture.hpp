// Shared set-up for engine tests: an engine on an io_context with a manual
// clock, an SQLite store, and capture transports behind named providers.
#pragma once

#include <doctest/doctest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <functional>
#include <mailers/engine.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transports/capture_transport.hpp>
#include <mailers/transports/fault_injector.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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

/// A UTC instant from calendar fields (proleptic Gregorian).
inline mailers::time_point utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0, int s = 0) {
    auto day =
        std::chrono::sys_days(std::chrono::year{y} / std::chrono::month{mo} / std::chrono::day{d});
    return mailers::time_point(std::chrono::duration_cast<mailers::duration>(
        day.time_since_epoch() + std::chrono::hours(h) + std::chrono::minutes(mi) +
        std::chrono::seconds(s)));
}

/// A transport that can keep sends in flight for as long as a test wants:
/// while `hold` is set, each send is parked with its handler until the test
/// completes it (or drops it, as a crash would); otherwise it is accepted at
/// once. Every send that is accepted or parked is recorded in `handed`.
class held_transport final : public mailers::provider_transport {
public:
    explicit held_transport(boost::asio::any_io_executor ex) : provider_transport(std::move(ex)) {}

    std::string_view name() const noexcept override { return "held"; }

    void set_hold(bool on) {
        std::lock_guard lock(mu_);
        hold_ = on;
    }
    std::size_t pending() const {
        std::lock_guard lock(mu_);
        return pending_.size();
    }
    /// Blocks until `n` sends are parked (for tests that run the io_context
    /// on other threads).
    void wait_pending(std::size_t n) const {
        std::unique_lock lock(mu_);
        parked_cv_.wait(lock, [&] { return pending_.size() >= n; });
    }
    std::vector<mailers::outbound> handed() const {
        std::lock_guard lock(mu_);
        return handed_;
    }
    /// Completes the oldest parked send with `ec` (empty: accepted).
    void complete_oldest(mailers::error_code ec = {}, mailers::diagnostics diag = {}) {
        std::unique_lock lock(mu_);
        REQUIRE_FALSE(pending_.empty());
        // Move-constructed, never move-assigned: Boost 1.81's
        // any_completion_handler::operator=(&&) recurses without end.
        mailers::any_send_handler h(std::move(pending_.front()));
        pending_.pop_front();
        lock.unlock();
        mailers::send_outcome o;
        if (!ec) o.provider_message_id = "held-ok";
        o.diag = std::move(diag);
        std::move(h)(ec, std::move(o));
    }
    /// Forgets parked sends without completing them: what a crash does.
    void drop_pending() {
        std::deque<mailers::any_send_handler> gone;
        {
            std::lock_guard lock(mu_);
            gone.swap(pending_);
        }
    }

protected:
    void do_send(std::shared_ptr<const mailers::outbound> out,
                 mailers::any_send_handler h) override {
        {
            std::lock_guard lock(mu_);
            handed_.push_back(*out);
            if (hold_) {
                pending_.push_back(std::move(h));
                parked_cv_.notify_all();
                return;
            }
        }
        std::move(h)(mailers::error_code{}, mailers::send_outcome{"held-" + out->send_id, {}});
    }

private:
    mutable std::mutex mu_;
    mutable std::condition_variable parked_cv_;
    bool hold_ = false;
    std::deque<mailers::any_send_handler> pending_;
    std::vector<mailers::outbound> handed_;
};

struct db_file {
    std::filesystem::path path;
    explicit db_file(const std::string& stem) : path(temp_db(stem)) {}
    ~db_file() {
        std::error_code ec;
        for (auto suffix : {"", "-wal", "-shm"})
            std::filesystem::remove(path.string() + suffix, ec);
    }
};

struct fixture {
    boost::asio::io_context ioc;
    std::shared_ptr<mailers::manual_clock> clock =
        std::make_shared<mailers::manual_clock>(test_epoch());
    std::shared_ptr<mailers::store> store;
    std::unique_ptr<mailers::engine> eng;
    std::shared_ptr<mailers::capture_transport> capture =
        std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::principal admin{"admin", "Test Admin"};

    explicit fixture(std::string path = ":memory:", std::uint64_t seed = 42) {
        store = mailers::open_sqlite_store({path, mailers::open_mode::open_or_create});
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

    /// Registers provider `id` as a fault injector over `inner` (the shared
    /// capture when null), so faults can be aimed at one provider's mailboxes.
    std::shared_ptr<mailers::fault_injector> add_faulty_provider(
        const std::string& id, std::shared_ptr<mailers::provider_transport> inner = nullptr) {
        auto fi = std::make_shared<mailers::fault_injector>(inner ? inner : capture);
        eng->add_provider(admin, id, fi);
        return fi;
    }

    void upsert_pool(const std::string& id, std::vector<std::string> ids,
                     mailers::rotation_policy policy) {
        mailers::pool_config p;
        p.id = id;
        p.mailboxes = std::move(ids);
        p.policy = policy;
        eng->upsert_pool(admin, p);
    }

    /// A send from one named mailbox rather than a pool.
    static mailers::send_request direct(const std::string& mailbox, const std::string& to,
                                        const std::string& key = {}) {
        auto r = request({}, to, key);
        r.mailbox = mailbox;
        return r;
    }

    using outcome = std::pair<mailers::error_code, mailers::send_result>;

    /// Starts a send without waiting; the slot fills when it completes.
    std::shared_ptr<std::optional<outcome>> start(mailers::send_request r) {
        auto slot = std::make_shared<std::optional<outcome>>();
        eng->async_send(std::move(r), [slot](mailers::error_code ec, mailers::send_result res) {
            slot->emplace(ec, std::move(res));
        });
        return slot;
    }

    /// Runs handlers until `done()` holds. The engine keeps outstanding work
    /// on the context while a send is in flight, so this never returns early;
    /// the bounded wait only lets `done()` see progress made on other threads.
    void run_until(const std::function<bool()>& done) {
        ioc.restart();
        while (!done()) {
            if (ioc.run_one_for(std::chrono::milliseconds(20)) == 0 && ioc.stopped()) ioc.restart();
        }
    }

    /// Runs whatever is ready (event handlers, posted completions).
    void drain() {
        eng->flush();
        ioc.restart();
        ioc.poll();
    }

    /// Records every event the engine emits into `events`.
    void record_events() {
        eng->on_event([this](const mailers::event& e) {
            std::lock_guard lock(events_mu);
            events.push_back(e);
        });
    }
    std::vector<mailers::event> events_of(mailers::event_type t) {
        drain();
        std::lock_guard lock(events_mu);
        std::vector<mailers::event> out;
        for (const auto& e : events)
            if (e.type == t) out.push_back(e);
        return out;
    }

    /// The ledger row of a send, read after every queued write is applied.
    std::optional<mailers::ledger_row> ledger(const std::string& send_id) {
        eng->flush();
        return store->find_send("default", std::stoull(send_id));
    }

    std::mutex events_mu;
    std::vector<mailers::event> events;

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

/// The PostgreSQL server named by MAILERS_TEST_PG, or nullopt (a skip,
/// saying what is skipped) when unset; with MAILERS_REQUIRE_PG=1 an unset
/// server fails the test instead.
inline std::optional<std::string> test_pg_server(std::string_view what) {
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (c && *c) return std::string{c};
    const char* req = std::getenv("MAILERS_REQUIRE_PG");
    if (req && std::string_view{req} == "1")
        FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset");
    MESSAGE("skipped: set MAILERS_TEST_PG to a conninfo to run " << what << " on PostgreSQL");
    return std::nullopt;
}

/// The error code `f` throws as a mailers::exception; errc{} when it
/// returns.
inline mailers::errc code_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const mailers::exception& e) {
        return static_cast<mailers::errc>(e.code().value());
    }
    return mailers::errc{};
}

/// One io_context, one manual clock, one capture transport (provider
/// "capture"), and engines that drain the queue on stores the test opens.
/// Simulated time moves only when the test moves the clock; the drain
/// polls in real time, so tests wait for states, never for durations.
struct drain_env {
    boost::asio::io_context ioc;
    std::shared_ptr<mailers::manual_clock> clock =
        std::make_shared<mailers::manual_clock>(test_epoch());
    std::shared_ptr<mailers::capture_transport> capture =
        std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::principal admin{"admin", "Test Admin"};

    std::unique_ptr<mailers::engine> make(
        std::shared_ptr<mailers::store> st, std::string workspace = "default",
        std::shared_ptr<mailers::provider_transport> transport = nullptr,
        std::chrono::milliseconds lease = 10s,
        const std::function<void(mailers::engine_params&)>& tweak = {}) {
        mailers::engine_params p;
        p.storage = std::move(st);
        p.clock = clock;
        p.workspace = std::move(workspace);
        p.random_seed = 42;
        p.queue_poll_interval = 5ms;
        p.lease = lease;
        if (tweak) tweak(p);
        auto e = std::make_unique<mailers::engine>(ioc.get_executor(), std::move(p));
        e->add_provider(admin, "capture", transport ? transport : capture);
        return e;
    }

    mailers::mailbox_config mailbox(const std::string& id,
                                    std::vector<mailers::rate_limit> limits = {}) {
        mailers::mailbox_config m;
        m.id = id;
        m.from = mailers::address{id, "brand.example", "Rep " + id};
        m.provider = "capture";
        m.limits = std::move(limits);
        return m;
    }

    /// Runs the io_context until `done()` holds. Bounded only so that a
    /// broken drain fails instead of hanging; nothing is timed.
    void run_until(const std::function<bool()>& done) {
        const auto give_up = std::chrono::steady_clock::now() + 5min;
        ioc.restart();
        while (!done()) {
            if (std::chrono::steady_clock::now() > give_up) FAIL("never reached the state");
            ioc.run_for(10ms);
            if (ioc.stopped()) ioc.restart();
        }
    }
};

}  // namespace mailers_test
