// What the transport benchmarks share: the message they send, the closed
// loop that keeps K sends in flight, and client CPU time from getrusage.
#pragma once

#include <sys/resource.h>

#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <functional>
#include <mailers.hpp>
#include <memory>
#include <string>

namespace bench {

/// User + system CPU seconds of this process so far.
inline double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

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

/// Sends `count` fresh messages through `transport`, `window` at a time,
/// running `ioc` on this thread until the last one completes.
inline tally closed_loop(mailers::provider_transport& transport, boost::asio::io_context& ioc,
                         std::size_t count, std::size_t window) {
    tally t;
    const std::string text = body_text();
    std::size_t started = 0;
    std::size_t done = 0;
    std::function<void()> start_one = [&] {
        if (started == count) return;
        ++started;
        auto out = std::make_shared<mailers::outbound>();
        out->msg.from = mailers::address{"rep", "sender.example", "Sales Rep"};
        out->msg.to.push_back(mailers::address{"prospect", "example.net", {}});
        out->msg.subject = "Quick question";
        out->msg.text = text;
        out->env = mailers::envelope::from_message(out->msg);
        transport.async_send(std::move(out),
                             [&](mailers::error_code ec, mailers::send_outcome outcome) {
                                 ++done;
                                 if (ec) {
                                     if (t.failed++ == 0)
                                         t.first_error = ec.message() + ": " + outcome.diag.message;
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

}  // namespace bench
