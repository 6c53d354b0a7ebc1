// Outbound webhooks: deliveries per second from the outbox to a receiver on
// 127.0.0.1 that does no work, over keep-alive HTTP, against the ceiling of
// the same HTTP client posting the same bodies with no outbox around it.
//
//   webhook_outbox_bench [--rows N] [--in-flight N] [--store sqlite|postgres]
//                        [--pg CONNINFO]
//
// The outbox run: N rows written to the store, then one engine drains them:
// a claim per batch, a signed POST per row, an end-of-attempt commit per
// row (group-committed by the engine's writer). The ceiling: the library's
// HTTP client alone, with the same number of requests in flight.
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mailers/engine.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/sqlite_store.hpp>
#include <string>
#include <thread>
#include <unistd.h>

#include "bench_support.hpp"
#include "http_sink.hpp"
#include "http/client.hpp"

namespace {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;

const std::string body =
    R"({"type":"email.sent","timestamp":"2026-12-07T12:00:00.000Z","data":{"type":"sent",)"
    R"("send_id":"12345","mailbox":"rep1","provider":"ses","recipient":"a@example.com"}})";

double ceiling(std::uint16_t port, std::size_t n, std::size_t in_flight) {
    asio::io_context ioc;
    mailers::http_client_params p;
    p.max_connections = in_flight;
    mailers::http::client c(ioc.get_executor(), p);
    auto ep = mailers::http::parse_endpoint("http://127.0.0.1:" + std::to_string(port)).value();
    std::size_t started = 0, done = 0;
    std::function<void()> next = [&] {
        if (started == n) return;
        ++started;
        mailers::http::request r;
        r.target = "/h";
        r.headers = {{"Content-Type", "application/json"},
                     {"webhook-id", "msg_0123456789abcdef0123456789abcdef"},
                     {"webhook-timestamp", "1796644800"},
                     {"webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="}};
        r.body = body;
        c.async_exchange(ep, std::move(r), [&](mailers::http::exchange_result) {
            ++done;
            next();
        });
    };
    const auto t0 = steady::now();
    for (std::size_t i = 0; i < in_flight; ++i) next();
    while (done < n) ioc.run_one();
    return static_cast<double>(n) / std::chrono::duration<double>(steady::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t rows = 20000, in_flight = 32;
    std::string store_kind = "sqlite", pg;
    if (!bench::read_options(argc, argv, [&](std::string_view k, const std::string& v) {
            if (k == "--rows")
                rows = std::stoul(v);
            else if (k == "--in-flight")
                in_flight = std::stoul(v);
            else if (k == "--store")
                store_kind = v;
            else if (k == "--pg")
                pg = v;
            else
                return false;
            return true;
        }))
        return 2;
    bench::http_sink rx;
    const auto url = "http://127.0.0.1:" + std::to_string(rx.port()) + "/h";

    const auto path = std::filesystem::temp_directory_path() /
                      ("webhook-outbox-bench-" + std::to_string(::getpid()) + ".db");
    std::string ws = "bench";
    auto open = [&]() -> std::shared_ptr<mailers::store> {
        if (store_kind == "postgres") {
            mailers::postgres_store_params p;
            p.conninfo = pg;
            p.mode = mailers::open_mode::open_or_create;
            return mailers::open_postgres_store(p);
        }
        return mailers::open_sqlite_store({path.string(), mailers::open_mode::open_or_create});
    };
    if (store_kind == "postgres") ws += "-" + std::to_string(::getpid());

    asio::io_context ioc;
    auto make = [&](bool deliver) {
        mailers::engine_params p;
        p.storage = open();
        p.workspace = ws;
        p.webhooks.allow_http = true;
        p.webhooks.allow_private_targets = true;
        p.webhooks.deliver = deliver;
        p.webhooks.in_flight = in_flight;
        p.webhooks.poll_interval = std::chrono::milliseconds(5);
        return std::make_unique<mailers::engine>(ioc.get_executor(), std::move(p));
    };
    {
        auto writer = make(false);
        mailers::webhook_endpoint ep;
        ep.id = "h";
        ep.url = url;
        writer->put_webhook_endpoint(mailers::principal::system(), ep);
        // The rows as the engine writes them for events, straight to the store.
        auto st = open();
        std::vector<mailers::store_op> ops;
        const auto now = mailers::default_clock()->now();
        for (std::size_t i = 0; i < rows; ++i) {
            mailers::webhook_delivery d;
            d.endpoint = "h";
            d.message_id = "msg_" + std::to_string(i);
            d.event_key = "bench:" + std::to_string(i);
            d.event_type = "sent";
            d.payload = body;
            d.created_at = now;
            ops.push_back(mailers::store_ops::add_webhook_delivery{std::move(d)});
            if (ops.size() == 1000 || i + 1 == rows) {
                st->commit(ws, ops);
                ops.clear();
            }
        }
    }
    const auto cpu0 = bench::cpu_seconds();
    const auto t0 = steady::now();
    auto drainer = make(true);
    std::thread runner([&] {
        auto work = asio::make_work_guard(ioc);
        ioc.run();
    });
    for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        if (drainer->count_webhook_deliveries("h").delivered == rows) break;
    }
    const double secs = std::chrono::duration<double>(steady::now() - t0).count();
    const double cpu = bench::cpu_seconds() - cpu0;
    const auto st = drainer->stats();
    drainer.reset();
    ioc.stop();
    runner.join();
    const double ceil = ceiling(rx.port(), rows, in_flight);
    std::printf("outbox (%s): %zu deliveries in %.2f s = %.0f/s, %.1f us CPU each (process, "
                "receiver included); in flight %zu\n",
                store_kind.c_str(), rows, secs, rows / secs, cpu / rows * 1e6, in_flight);
    std::printf("the draining engine's commits: %llu holding %llu ops\n",
                static_cast<unsigned long long>(st.commits),
                static_cast<unsigned long long>(st.committed_ops));
    std::printf("ceiling (HTTP client alone, same receiver): %.0f/s; outbox at %.0f%% of it\n",
                ceil, 100.0 * (rows / secs) / ceil);
    std::error_code ec;
    for (auto suffix : {"", "-wal", "-shm"})
        std::filesystem::remove(path.string() + suffix, ec);
    return 0;
}
