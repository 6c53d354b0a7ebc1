// Several processes on one workspace: each runs an engine on the same store
// (a PostgreSQL database, or one SQLite file) and sends through a null
// transport as fast as its closed loop allows; every cap, id and
// idempotency key is decided by the store. Reports the aggregate sends/s,
// CPU per send (all processes, the store server excluded), latency at a
// fixed aggregate rate, and what one suppress() costs with the others
// running (the price of the cross-process hand-off guarantee, which costs
// nothing per send).
//
//   shared_store_bench --pg CONNINFO | --sqlite PATH
//                      [--procs 4] [--seconds 10] [--inflight 256] [--rate R]
//                      [--mailboxes 50] [--schema NAME]
//
// With --pg, `pgbench -N` (simple update, same cluster, 4 clients) can be
// run beside it by benchmarks/run-shared-store; this program prints only
// its own figures.
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mailers.hpp>
#include <mailers/postgres_store.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_store.hpp"
#include "bench_support.hpp"
#include "bench_workspace.hpp"

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

namespace {

struct options : bench::store_choice {
    std::size_t procs = 4;
    double seconds = 10;
    std::size_t inflight = 256;
    std::size_t mailboxes = 50;
    double rate = 0;  // 0: half the closed-loop rate measured first
};

mailers::send_request make_request(std::size_t round, std::size_t proc, std::size_t i) {
    mailers::send_request r;
    r.pool = "bench";
    r.to = mailers::address{"p" + std::to_string(proc) + "x" + std::to_string(i),
                            "example" + std::to_string(i % 997) + ".com",
                            {}};
    r.subject = "Quick question";
    r.text = std::string(1024, 'x');
    r.idempotency_key =
        "b" + std::to_string(round) + "." + std::to_string(proc) + ":" + std::to_string(i);
    return r;
}

struct child_result {
    double sends = 0;
    double cpu = 0;
    double p50 = 0, p99 = 0;
    double suppress_ms = 0;
};

// One process's share: with no `rate`, `seconds` of closed loop; with one,
// an open loop at that rate for the latency figures.
child_result run_child(const options& o, std::size_t round, std::size_t proc, double rate,
                       int start_fd) {
    asio::io_context ioc(1);
    mailers::engine_params params;
    params.storage = bench::open_store(o);
    params.random_seed = proc + 1;
    params.member_name = "bench-" + std::to_string(proc);
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal ops{"bench", "bench"};
    auto null = std::make_shared<mailers::null_transport>(ioc.get_executor());
    eng.add_provider(ops, "null", null);
    char go = 0;
    if (::read(start_fd, &go, 1) != 1) std::exit(2);

    child_result out;
    std::size_t started = 0, done = 0;
    const auto deadline = steady::now() + std::chrono::duration_cast<steady::duration>(
                                              std::chrono::duration<double>(o.seconds));
    std::function<void()> start_one = [&] {
        if (steady::now() >= deadline) return;
        eng.async_send(make_request(round, proc, started++),
                       [&](mailers::error_code ec, mailers::send_result) {
                           if (ec && ec != mailers::errc::no_capacity) {
                               std::fprintf(stderr, "send failed: %s\n", ec.message().c_str());
                               std::exit(1);
                           }
                           ++done;
                           start_one();
                       });
    };
    if (rate <= 0) {
        auto c0 = bench::cpu_seconds();
        auto t0 = steady::now();
        for (std::size_t k = 0; k < o.inflight; ++k) start_one();
        ioc.run();
        auto dt = std::chrono::duration<double>(steady::now() - t0).count();
        out.sends = static_cast<double>(done) / dt;
        out.cpu = (bench::cpu_seconds() - c0) / static_cast<double>(done) * 1e6;
    }

    // Open loop for latency.
    if (rate > 0) {
        std::vector<double> lat;
        const std::size_t n = static_cast<std::size_t>(rate * 5);
        lat.reserve(n);
        asio::steady_timer timer(ioc);
        auto interval = std::chrono::nanoseconds(static_cast<long long>(1e9 / rate));
        auto start = steady::now();
        std::size_t issued = 0;
        std::function<void()> tick = [&] {
            auto now = steady::now();
            while (issued < n && start + interval * static_cast<long long>(issued) <= now) {
                auto scheduled = start + interval * static_cast<long long>(issued);
                eng.async_send(make_request(round, proc, 100000000 + issued),
                               [&, scheduled](mailers::error_code, mailers::send_result) {
                                   lat.push_back(std::chrono::duration<double, std::micro>(
                                                     steady::now() - scheduled)
                                                     .count());
                               });
                ++issued;
            }
            if (issued < n) {
                timer.expires_at(start + interval * static_cast<long long>(issued));
                timer.async_wait([&](auto) { tick(); });
            }
        };
        tick();
        ioc.restart();
        ioc.run();
        out.p50 = bench::percentile(lat, 0.50);
        out.p99 = bench::percentile(lat, 0.99);
    }
    // One suppress() while the other processes are still members.
    if (proc == 0) {
        auto s0 = steady::now();
        eng.suppress(ops, mailers::suppression_kind::address, "bench-stop@example.com",
                     mailers::suppression_reason::manual);
        out.suppress_ms = std::chrono::duration<double, std::milli>(steady::now() - s0).count();
    }
    eng.flush();
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const bool ok = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (bench::take_store_option(o, k, v)) return true;
        if (k == "--procs")
            o.procs = std::stoull(v);
        else if (k == "--seconds")
            o.seconds = std::stod(v);
        else if (k == "--inflight")
            o.inflight = std::stoull(v);
        else if (k == "--mailboxes")
            o.mailboxes = std::stoull(v);
        else if (k == "--rate")
            o.rate = std::stod(v);
        else
            return false;
        return true;
    });
    if (!ok || !bench::one_store_chosen(o)) {
        std::fprintf(stderr, "usage: shared_store_bench --pg CONNINFO | --sqlite PATH [...]\n");
        return 2;
    }
    {
        // The workspace: mailboxes with caps far above what the run sends, so
        // every reservation is counted and none is refused.
        asio::io_context ioc(1);
        mailers::engine_params params;
        params.storage = bench::open_store(o);
        mailers::engine eng(ioc.get_executor(), std::move(params));
        mailers::principal ops{"bench", "bench"};
        bench::add_bench_pool(
            eng, ops, o.mailboxes, "null",
            {mailers::rate_limit::per_day(10000000), mailers::rate_limit::per_hour(1000000)});
    }

    std::size_t rounds = 0;
    auto run = [&](double rate) {
        const auto round = rounds++;
        std::vector<pid_t> pids;
        std::vector<int> result_fds;
        int start_pipe[2];
        if (::pipe(start_pipe) != 0) std::exit(2);
        for (std::size_t p = 0; p < o.procs; ++p) {
            int res[2];
            if (::pipe(res) != 0) std::exit(2);
            pid_t pid = ::fork();
            if (pid == 0) {
                ::close(start_pipe[1]);
                ::close(res[0]);
                auto r = run_child(o, round, p, rate / static_cast<double>(o.procs), start_pipe[0]);
                if (::write(res[1], &r, sizeof r) != static_cast<ssize_t>(sizeof r)) _exit(3);
                _exit(0);
            }
            ::close(res[1]);
            pids.push_back(pid);
            result_fds.push_back(res[0]);
        }
        ::close(start_pipe[0]);
        // Let every child open its store and join before the clock starts.
        std::this_thread::sleep_for(std::chrono::milliseconds(1500));
        std::string go(o.procs, 'g');
        if (::write(start_pipe[1], go.data(), go.size()) != static_cast<ssize_t>(go.size()))
            std::exit(2);
        ::close(start_pipe[1]);
        std::vector<child_result> rs(o.procs);
        for (std::size_t p = 0; p < o.procs; ++p) {
            if (::read(result_fds[p], &rs[p], sizeof rs[p]) != static_cast<ssize_t>(sizeof rs[p]))
                std::fprintf(stderr, "child %zu gave no result\n", p);
            int st = 0;
            ::waitpid(pids[p], &st, 0);
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                std::fprintf(stderr, "child %zu failed\n", p);
                std::exit(1);
            }
        }
        return rs;
    };

    auto closed = run(0);
    double total = 0, cpu = 0;
    for (const auto& r : closed) {
        total += r.sends;
        cpu += r.cpu * r.sends;
    }
    cpu /= total;
    const double rate = o.rate > 0 ? o.rate : total / 2;
    auto open = run(rate);
    double p50 = 0, p99 = 0, sup = 0;
    for (const auto& r : open) {
        p50 = std::max(p50, r.p50);
        p99 = std::max(p99, r.p99);
        sup = std::max(sup, r.suppress_ms);
    }
    std::printf("store: %s, %zu processes, %zu mailboxes, null transport\n",
                o.pg.empty() ? "sqlite (one file)" : "postgresql", o.procs, o.mailboxes);
    std::printf(
        "closed loop (%zu in flight per process, %.0f s): %.0f sends/s in aggregate, "
        "%.1f us client CPU/send\n",
        o.inflight, o.seconds, total, cpu);
    std::printf(
        "open loop at %.0f sends/s in aggregate: p50 %.0f us, p99 %.0f us (worst process)\n", rate,
        p50, p99);
    std::printf("suppress() with %zu engines running: %.1f ms\n", o.procs, sup);
    return 0;
}
