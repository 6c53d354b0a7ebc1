// The send queue at the store: how fast claimers drain it. Enqueues --items
// items (in commits of 500), then drains them with 1 and with 4 claimers,
// each on a store handle of its own (its own connections), each claiming up
// to --batch items at a time and finishing them in one commit. Reports
// enqueued items/s and claimed-and-finished items/s per claimer count and
// batch size, for the store as the engine will use it, without the engine.
//
//   queue_store_bench --pg CONNINFO | --sqlite PATH
//                     [--items 20000] [--claimers 1,4] [--batches 1,16]
//                     [--schema NAME]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mailers/store.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bench_store.hpp"
#include "bench_support.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct options : bench::store_choice {
    std::size_t items = 20000;
    std::vector<std::size_t> claimers{1, 4};
    std::vector<std::size_t> batches{1, 16};
};

mailers::time_point at(std::int64_t s) {
    return mailers::time_point{std::chrono::seconds{1'700'000'000 + s}};
}

mailers::queued_send item(std::size_t n) {
    mailers::queued_send q;
    q.pool = "bench";
    q.recipient_domain = "example" + std::to_string(n % 997) + ".com";
    // About the size of a serialised send_request with a short text part.
    q.request = std::string(1200, 'x');
    q.origin = "sequence:1/" + std::to_string(n % 3);
    q.enqueued_at = at(0);
    q.not_before = at(static_cast<std::int64_t>(n % 600));
    return q;
}

double seconds_since(steady::time_point t0) {
    return std::chrono::duration<double>(steady::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const bool ok = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (bench::take_store_option(o, k, v)) return true;
        if (k == "--items")
            o.items = std::stoul(v);
        else if (k == "--claimers")
            o.claimers = bench::size_list(v);
        else if (k == "--batches")
            o.batches = bench::size_list(v);
        else
            return false;
        return true;
    });
    if (!ok || !bench::one_store_chosen(o)) {
        std::fprintf(stderr,
                     "usage: queue_store_bench --pg CONNINFO | --sqlite PATH [--items N] "
                     "[--claimers 1,4] [--batches 1,16] [--schema NAME]\n");
        return 2;
    }
    const std::string run = std::to_string(std::chrono::system_clock::now().time_since_epoch() /
                                           std::chrono::milliseconds{1});
    std::printf("%-8s %8s %6s %8s %14s %14s\n", "store", "claimers", "batch", "items", "enqueue/s",
                "claim+finish/s");
    for (const std::size_t batch : o.batches) {
        for (const std::size_t claimers : o.claimers) {
            const std::string ws =
                "qbench-" + run + "-" + std::to_string(claimers) + "-" + std::to_string(batch);
            double enqueue_rate = 0;
            {
                auto st = bench::open_store(o);
                std::vector<mailers::store_op> ops;
                const auto t0 = steady::now();
                for (std::size_t n = 0; n < o.items; ++n) {
                    ops.push_back(mailers::store_ops::enqueue{item(n)});
                    if (ops.size() == 500 || n + 1 == o.items) {
                        st->commit(ws, ops);
                        ops.clear();
                    }
                }
                enqueue_rate = static_cast<double>(o.items) / seconds_since(t0);
            }
            std::vector<std::shared_ptr<mailers::store>> handles;
            for (std::size_t i = 0; i < claimers; ++i) handles.push_back(bench::open_store(o));
            std::atomic<std::size_t> finished{0};
            std::vector<std::thread> threads;
            const auto t0 = steady::now();
            for (std::size_t t = 0; t < claimers; ++t) {
                threads.emplace_back([&, t] {
                    auto& st = *handles[t];
                    const auto me =
                        st.attach(ws, {"bench", 1, "claimer"}, std::chrono::minutes{10});
                    std::vector<mailers::store_op> ops;
                    for (;;) {
                        const auto got = st.claim_queued(ws, me, at(1000), batch);
                        if (got.empty()) break;
                        ops.clear();
                        for (const auto& q : got)
                            ops.push_back(mailers::store_ops::finish_queued{
                                q.id, me, mailers::queue_state::done, q.id, "", at(1000)});
                        st.commit(ws, ops);
                        finished += got.size();
                    }
                    st.detach(ws, me);
                });
            }
            for (auto& th : threads) th.join();
            const double rate = static_cast<double>(finished.load()) / seconds_since(t0);
            std::printf("%-8s %8zu %6zu %8zu %14.0f %14.0f\n", o.pg.empty() ? "sqlite" : "postgres",
                        claimers, batch, finished.load(), enqueue_rate, rate);
            std::fflush(stdout);
            handles.front()->purge_queued(ws, at(100'000));
        }
    }
    return 0;
}
