// The decision path end to end: validation, suppression check, rotation,
// cap reservation, durable ledger row (SQLite file, group commit), hand-off
// to a null transport and the final ledger update.
//
//   decision_path_bench [--sends N] [--inflight K] [--suppressed S] [--rate R]
//                       [--db PATH | --pg CONNINFO [--schema NAME]] [--import-only 1] [--access 1]
//
// First imports S suppressed addresses from a CSV file through the engine
// and reports the import's time and the peak RSS it reached, then the time
// a second engine takes to start on the workspace (a restart: the index
// loaded from the store). With --pg the workspace lives in PostgreSQL (a
// workspace of its own per run, in schema NAME, "mailers" by default);
// --import-only stops there. --access 1 turns the workspace's access control
// on first, so that every send is checked against a pool-scoped grant. Then it reports closed-loop throughput (K sends
// in flight), open-loop latency at a fixed rate R (p50 / p99 / p999 from
// initiation to completion), and the process's peak RSS. The ceiling printed
// beside it is the same loop with the engine replaced by a bare post to the
// null transport, measured in the same run, so the ratio survives a noisy
// machine.
#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mailers.hpp>
#include <mailers/postgres_store.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "bench_support.hpp"
#include "bench_workspace.hpp"

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

namespace {

struct options {
    std::size_t sends = 200000;
    std::size_t inflight = 256;
    std::size_t suppressed = 1000000;
    std::size_t mailboxes = 50;
    double rate = 10000;
    std::size_t rate_sends = 50000;
    std::string db;
    std::string pg;
    std::string schema;
    bool import_only = false;
    bool access = false;  ///< access control on: every send checked against the grants
    std::size_t sync_ms = 0;  ///< engine_params::sync_interval; 0 keeps the default
    bool drain = true;        ///< engine_params::drain_queue
};

long peak_rss_kib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

mailers::send_request make_request(std::size_t i) {
    mailers::send_request r;
    r.pool = "bench";
    r.to = mailers::address{
        "prospect" + std::to_string(i), "example" + std::to_string(i % 997) + ".com", {}};
    r.subject = "Quick question";
    r.text = std::string(1024, 'x');
    r.idempotency_key = "bench:" + std::to_string(i);
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    // Unknown names are skipped, not refused as in the other benchmarks:
    // invocations written for this one may rely on that.
    bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (k == "--sends")
            o.sends = std::stoull(v);
        else if (k == "--inflight")
            o.inflight = std::stoull(v);
        else if (k == "--suppressed")
            o.suppressed = std::stoull(v);
        else if (k == "--mailboxes")
            o.mailboxes = std::stoull(v);
        else if (k == "--rate")
            o.rate = std::stod(v);
        else if (k == "--rate-sends")
            o.rate_sends = std::stoull(v);
        else if (k == "--db")
            o.db = std::move(v);
        else if (k == "--pg")
            o.pg = std::move(v);
        else if (k == "--schema")
            o.schema = std::move(v);
        else if (k == "--import-only")
            o.import_only = v != "0";
        else if (k == "--access")
            o.access = v != "0";
        else if (k == "--sync-ms")
            o.sync_ms = std::stoull(v);
        else if (k == "--drain")
            o.drain = v != "0";
        return true;
    });
    auto dir =
        std::filesystem::temp_directory_path() / ("mailers-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    if (o.db.empty()) o.db = (dir / "bench.db").string();

    auto open_store = [&]() -> std::shared_ptr<mailers::store> {
        if (o.pg.empty())
            return mailers::open_sqlite_store({o.db, mailers::open_mode::open_or_create});
        mailers::postgres_store_params p;
        p.conninfo = o.pg;
        p.mode = mailers::open_mode::open_or_create;
        if (!o.schema.empty()) p.schema = o.schema;
        return mailers::open_postgres_store(p);
    };
    const std::string workspace =
        o.pg.empty() ? std::string("default") : "decision-bench-" + std::to_string(::getpid());

    asio::io_context ioc(1);
    mailers::engine_params params;
    params.storage = open_store();
    params.workspace = workspace;
    params.random_seed = 1;
    if (o.sync_ms) params.sync_interval = std::chrono::milliseconds(o.sync_ms);
    params.drain_queue = o.drain;
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal ops{"bench", "bench"};
    auto null = std::make_shared<mailers::null_transport>(ioc.get_executor());
    eng.add_provider(ops, "null", null);

    bench::add_bench_pool(
        eng, ops, o.mailboxes, "null",
        {mailers::rate_limit::per_day(100000), mailers::rate_limit::per_hour(20000)});

    if (o.access) {
        // The sends' actor may send through the bench pool, and nothing
        // else; the set-up principal holds everything.
        std::vector<mailers::permission> all;
        for (std::size_t i = 0; i < mailers::permission_count; ++i)
            all.push_back(static_cast<mailers::permission>(i));
        eng.put_role(ops, {"everything", all});
        eng.put_role(ops, {"sender", {mailers::permission::send}});
        eng.grant_access(ops, {ops.id, "everything", {}});
        eng.grant_access(ops, {mailers::principal::system().id, "sender",
                               {mailers::access_scope::kind::pool, "bench"}});
        eng.set_access_control(ops, true);
        std::printf("access control: on (sends checked against a pool-scoped grant)\n");
    }

    // S suppressed addresses, none of which the benchmark sends to, read
    // from a file as a host importing a list would.
    {
        const auto csv_path = dir / "suppressed.csv";
        {
            std::ofstream out(csv_path, std::ios::binary);
            std::string buf;
            for (std::size_t i = 0; i < o.suppressed; ++i) {
                buf += "unsub";
                buf += std::to_string(i);
                buf += "@example";
                buf += std::to_string(i % 997);
                buf += ".com,address,unsubscribe\n";
                if (buf.size() > (1 << 20)) {
                    out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
                    buf.clear();
                }
            }
            out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
        }
        const auto rss0 = peak_rss_kib();
        std::ifstream in(csv_path, std::ios::binary);
        auto c0 = bench::cpu_seconds();
        auto t0 = steady::now();
        eng.import_suppressions(ops, in, "bench");
        auto dt = std::chrono::duration<double>(steady::now() - t0).count();
        std::printf(
            "import: %zu suppressions in %.2f s (%.2f s CPU in this process; CSV file "
            "parse + store + index), peak RSS %.1f MiB (%.1f MiB before the import)\n",
            o.suppressed, dt, bench::cpu_seconds() - c0,
            static_cast<double>(peak_rss_kib()) / 1024.0, static_cast<double>(rss0) / 1024.0);
        std::filesystem::remove(csv_path);
    }

    // A restart: a second engine starts on the workspace and loads it.
    {
        mailers::engine_params p2;
        p2.storage = open_store();
        p2.workspace = workspace;
        p2.random_seed = 2;
        auto c0 = bench::cpu_seconds();
        auto t0 = steady::now();
        auto second = std::make_unique<mailers::engine>(ioc.get_executor(), std::move(p2));
        auto dt = std::chrono::duration<double>(steady::now() - t0).count();
        std::printf(
            "restart: an engine started on %zu suppressions in %.2f s (%.2f s CPU in "
            "this process; %s)\n",
            second->suppression_count(), dt, bench::cpu_seconds() - c0,
            o.pg.empty() ? "SQLite" : "PostgreSQL");
        second.reset();
        std::printf("peak RSS after the restart: %.1f MiB\n",
                    static_cast<double>(peak_rss_kib()) / 1024.0);
    }
    if (o.import_only) {
        std::filesystem::remove_all(dir);
        return 0;
    }

    // --- closed loop: K in flight -------------------------------------------
    auto run_closed = [&](std::size_t base, std::size_t n, bool engine_path) {
        std::size_t started = 0, done = 0;
        std::function<void()> start_one;
        start_one = [&] {
            if (started >= n) return;
            auto i = base + started++;
            if (engine_path) {
                eng.async_send(make_request(i), [&](mailers::error_code ec, mailers::send_result) {
                    if (ec) {
                        std::fprintf(stderr, "send failed: %s\n", ec.message().c_str());
                        std::exit(1);
                    }
                    ++done;
                    start_one();
                });
            } else {
                // Ceiling: build the same request and hand a message to the
                // null transport directly, with no decision, store or ledger.
                auto req = make_request(i);
                auto out = std::make_shared<mailers::outbound>();
                out->msg.to.push_back(req.to);
                out->msg.text = req.text;
                null->async_send(out, [&](mailers::error_code, mailers::send_outcome) {
                    ++done;
                    start_one();
                });
            }
        };
        auto c0 = bench::cpu_seconds();
        auto t0 = steady::now();
        for (std::size_t k = 0; k < o.inflight; ++k) start_one();
        ioc.restart();
        ioc.run();
        auto dt = std::chrono::duration<double>(steady::now() - t0).count();
        auto cpu = bench::cpu_seconds() - c0;
        return std::pair{static_cast<double>(done) / dt, cpu / static_cast<double>(done) * 1e6};
    };

    run_closed(0, 20000, true);  // warm-up: fills caches and the WAL
    auto [ceiling, ceiling_cpu] = run_closed(0, o.sends, false);
    auto [engine_rate, engine_cpu] = run_closed(100000000, o.sends, true);
    eng.flush();

    // --- open loop: fixed rate, latency per send ---------------------------
    const auto stages_before = eng.latencies();
    std::vector<double> lat_us;
    lat_us.reserve(o.rate_sends);
    {
        asio::steady_timer timer(ioc);
        auto interval = std::chrono::nanoseconds(static_cast<long long>(1e9 / o.rate));
        auto start = steady::now();
        std::size_t issued = 0;
        std::function<void()> tick;
        tick = [&] {
            // Issue every send whose scheduled time has come (catch up if late).
            auto now = steady::now();
            while (issued < o.rate_sends &&
                   start + interval * static_cast<long long>(issued) <= now) {
                auto scheduled = start + interval * static_cast<long long>(issued);
                eng.async_send(make_request(200000000 + issued),
                               [&, scheduled](mailers::error_code, mailers::send_result) {
                                   lat_us.push_back(std::chrono::duration<double, std::micro>(
                                                        steady::now() - scheduled)
                                                        .count());
                               });
                ++issued;
            }
            if (issued < o.rate_sends) {
                timer.expires_at(start + interval * static_cast<long long>(issued));
                timer.async_wait([&](auto) { tick(); });
            }
        };
        tick();
        ioc.restart();
        ioc.run();
    }
    auto p50 = bench::percentile(lat_us, 0.50), p99 = bench::percentile(lat_us, 0.99),
         p999 = bench::percentile(lat_us, 0.999);
    auto st = eng.stats();
    // The open loop's share of each pipeline stage's histogram.
    auto stages = eng.latencies();
    {
        mailers::latency_histogram* now_h[] = {&stages.decide, &stages.reserve, &stages.handoff,
                                               &stages.record, &stages.total};
        const mailers::latency_histogram* before_h[] = {
            &stages_before.decide, &stages_before.reserve, &stages_before.handoff,
            &stages_before.record, &stages_before.total};
        for (std::size_t s = 0; s < 5; ++s)
            for (std::size_t i = 0; i < 32; ++i) now_h[s]->counts[i] -= before_h[s]->counts[i];
    }

    std::printf("\ndecision path: %zu mailboxes, %zu suppressed, %s %s, null transport\n",
                o.mailboxes, o.suppressed, o.pg.empty() ? "SQLite file" : "PostgreSQL schema",
                o.pg.empty() ? o.db.c_str() : (o.schema.empty() ? "mailers" : o.schema.c_str()));
    std::printf("closed loop (%zu in flight, %zu sends): %.0f sends/s, %.1f us CPU/send\n",
                o.inflight, o.sends, engine_rate, engine_cpu);
    std::printf(
        "ceiling (same loop, transport only):   %.0f sends/s, %.1f us CPU/send  -> engine at "
        "%.1f%% of ceiling\n",
        ceiling, ceiling_cpu, 100.0 * engine_rate / ceiling);
    std::printf("open loop at %.0f sends/s (%zu sends): p50 %.0f us, p99 %.0f us, p99.9 %.0f us\n",
                o.rate, lat_us.size(), p50, p99, p999);
    auto stage_line = [](const char* name, const mailers::latency_histogram& h) {
        std::printf("  %-8s p50 <= %llu us, p99 <= %llu us, p99.9 <= %llu us\n", name,
                    static_cast<unsigned long long>(h.quantile_us(0.50)),
                    static_cast<unsigned long long>(h.quantile_us(0.99)),
                    static_cast<unsigned long long>(h.quantile_us(0.999)));
    };
    std::printf("open loop by pipeline stage (power-of-two buckets):\n");
    stage_line("decide", stages.decide);
    stage_line("reserve", stages.reserve);
    stage_line("handoff", stages.handoff);
    stage_line("record", stages.record);
    stage_line("total", stages.total);
    std::printf(
        "group commits: %llu for %llu ops (%.1f ops/commit)\n",
        static_cast<unsigned long long>(st.commits),
        static_cast<unsigned long long>(st.committed_ops),
        st.commits ? static_cast<double>(st.committed_ops) / static_cast<double>(st.commits) : 0.0);
    std::printf("peak RSS: %.1f MiB\n", static_cast<double>(peak_rss_kib()) / 1024.0);
    std::filesystem::remove_all(dir);
    return 0;
}
