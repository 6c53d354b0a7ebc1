// What the transport benchmarks share: the message they send, the closed
// loop that keeps K sends in flight, the measured run and its JSON line.
#pragma once

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <functional>
#include <mailers.hpp>
#include <memory>
#include <string>

#include "bench_support.hpp"

namespace bench {

/// The 1 KiB of text the npm peers send too (benchmarks/peers/common.mjs).
inline std::string body_text() {
    const std::string line(63, 'x');
    std::string text;
    for (int i = 0; i < 16; ++i) text += line + "\n";
    return text;
}

struct tally {
    std::size_t ok = 0;
    std::size_t failed = 0;
    std::string first_error;
};

/// Keeps `window` sends in flight until `count` have completed, running
/// `ioc` on this thread. `launch(done)` starts one send and makes it call
/// `done(ec, detail)` when it completes.
template <class Launch>
tally run_closed_loop(boost::asio::io_context& ioc, std::size_t count, std::size_t window,
                      Launch&& launch) {
    tally t;
    std::size_t started = 0;
    std::size_t done = 0;
    std::function<void()> start_one = [&] {
        if (started == count) return;
        ++started;
        launch([&](mailers::error_code ec, const std::string& detail) {
            ++done;
            if (ec) {
                if (t.failed++ == 0) t.first_error = ec.message() + ": " + detail;
            } else {
                ++t.ok;
            }
            start_one();
        });
    };
    for (std::size_t i = 0; i < window; ++i) start_one();
    while (done < count) {
        // run_one() returns at once from a stopped context: one that ran
        // out of work between two sends must be restarted.
        if (ioc.stopped()) ioc.restart();
        ioc.run_one();
    }
    return t;
}

/// Sends `count` fresh messages through `transport`, `window` at a time,
/// running `ioc` on this thread until the last one completes.
inline tally closed_loop(mailers::provider_transport& transport, boost::asio::io_context& ioc,
                         std::size_t count, std::size_t window) {
    const std::string text = body_text();
    return run_closed_loop(ioc, count, window, [&](auto done) {
        auto out = std::make_shared<mailers::outbound>();
        out->msg.from = mailers::address{"rep", "sender.example", "Sales Rep"};
        out->msg.to.push_back(mailers::address{"prospect", "example.net", {}});
        out->msg.subject = "Quick question";
        out->msg.text = text;
        out->env = mailers::envelope::from_message(out->msg);
        transport.async_send(std::move(out),
                             [done](mailers::error_code ec, mailers::send_outcome outcome) {
                                 done(ec, outcome.diag.message);
                             });
    });
}

/// The same closed loop through an engine: pool "bench" draws the sender,
/// the engine checks suppression, reserves caps in its store, writes the
/// ledger and then hands off to the transport behind the pool's mailboxes.
/// Every send has a fresh idempotency key (`key_prefix` + a counter).
inline tally closed_loop(mailers::engine& eng, boost::asio::io_context& ioc, std::size_t count,
                         std::size_t window, const std::string& key_prefix) {
    const std::string text = body_text();
    static std::size_t serial = 0;
    return run_closed_loop(ioc, count, window, [&](auto done) {
        mailers::send_request r;
        r.pool = "bench";
        r.to = mailers::address{"prospect" + std::to_string(serial), "example.net", {}};
        r.subject = "Quick question";
        r.text = text;
        r.idempotency_key = key_prefix + std::to_string(serial++);
        eng.async_send(std::move(r), [done](mailers::error_code ec, mailers::send_result res) {
            done(ec, res.diag.message);
        });
    });
}

/// An engine on a fresh SQLite file in `dir` with one mailbox (caps far
/// above any run) in pool "bench", sending through `transport`.
inline std::unique_ptr<mailers::engine> bench_engine(
    boost::asio::io_context& ioc, const std::string& dir,
    std::shared_ptr<mailers::provider_transport> transport) {
    mailers::engine_params params;
    params.storage =
        mailers::open_sqlite_store({dir + "/engine-bench.db", mailers::open_mode::open_or_create});
    auto eng = std::make_unique<mailers::engine>(ioc.get_executor(), std::move(params));
    mailers::principal ops{"bench", "bench"};
    eng->add_provider(ops, "bench", std::move(transport));
    mailers::mailbox_config m;
    m.id = "rep";
    m.from = {"rep", "sender.example", "Sales Rep"};
    m.provider = "bench";
    m.limits = {mailers::rate_limit::per_day(100000000), mailers::rate_limit::per_hour(10000000)};
    eng->upsert_mailbox(ops, m);
    eng->upsert_pool(ops, {"bench", {"rep"}, {}});
    return eng;
}

/// A measured run: what `run(count)` reported, its wall time and this
/// process's CPU time over it.
struct measurement {
    tally t;
    std::size_t messages = 0;
    double seconds = 0;
    double cpu_seconds = 0;
};

/// Runs `run(n)` for a warm-up of min(200, messages / 10), unmeasured, then
/// `run(messages)` measured.
template <class Run>
measurement measure(std::size_t messages, Run&& run) {
    run(std::min<std::size_t>(200, messages / 10));
    measurement m;
    m.messages = messages;
    const double c0 = cpu_seconds();
    const auto t0 = std::chrono::steady_clock::now();
    m.t = run(messages);
    m.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    m.cpu_seconds = cpu_seconds() - c0;
    return m;
}

/// Prints the JSON line the peer runners read: `fields` (the benchmark's own
/// leading members, without braces) and then the figures. Failures are told
/// on stderr. Returns the exit status: 1 when any send failed.
inline int report(const std::string& fields, const measurement& m) {
    if (m.t.failed)
        std::fprintf(stderr, "%zu failed; first: %s\n", m.t.failed, m.t.first_error.c_str());
    std::printf(
        "{%s,\"messages\":%zu,\"ok\":%zu,\"failed\":%zu,\"seconds\":%.4f,"
        "\"cpu_seconds\":%.4f,\"msgs_per_s\":%.1f,\"cpu_us_per_msg\":%.2f}\n",
        fields.c_str(), m.messages, m.t.ok, m.t.failed, m.seconds, m.cpu_seconds,
        static_cast<double>(m.t.ok) / m.seconds,
        m.cpu_seconds * 1e6 / static_cast<double>(m.messages));
    return m.t.failed ? 1 : 0;
}

}  // namespace bench
