// HTTP API transports' throughput and client CPU per message, against a
// local endpoint that answers like the provider (benchmarks/run-http-peers
// starts nginx for it and compares against the providers' npm SDKs and wrk).
//
//   http_bench --provider ses|sendgrid|postmark|mailgun --base http://127.0.0.1:P
//              --concurrency C [--messages M] [--engine 1]
//
// With --engine 1 the sends go through an engine on an SQLite ledger
// (suppression check, cap reservation, durable ledger rows) with the
// transport behind its one mailbox: orchestration included.
//
// The transport is built from the provider's DSN with `endpoint=` pointing at
// the base URL and `max_connections=C`; C sends stay in flight (a closed
// loop), each a fresh message: the transport renders it, builds the
// provider's request (SES signs it with SigV4), sends it over a kept-alive
// connection and parses the response.
//
// Prints one JSON line: client, provider, concurrency, messages, ok, failed,
// seconds, cpu_seconds (user + system of this process, from getrusage, over
// the measured part), msgs_per_s, cpu_us_per_msg. A warm-up of
// min(200, M/10) messages runs first and is not measured.
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <filesystem>
#include <mailers.hpp>
#include <mailers/transport_factory.hpp>
#include <memory>
#include <string>

#include "transport_loop.hpp"

namespace asio = boost::asio;

namespace {

struct options {
    std::string provider;
    std::string base;
    std::size_t concurrency = 1;
    std::size_t messages = 20000;
    bool engine = false;
};

std::string dsn_for(const options& o) {
    const std::string common =
        "endpoint=" + o.base + "&max_connections=" + std::to_string(o.concurrency);
    if (o.provider == "ses")
        return "ses+api://AKIDEXAMPLE:wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY@default?region=us-"
               "east-1&" +
               common;
    if (o.provider == "sendgrid") return "sendgrid+api://SG.bench-key@default?" + common;
    if (o.provider == "postmark")
        return "postmark+api://server-token@default?stream=outbound&" + common;
    if (o.provider == "mailgun") return "mailgun+api://key-bench:mg.example.com@default?" + common;
    return {};
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const bool known = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (k == "--provider")
            o.provider = std::move(v);
        else if (k == "--base")
            o.base = std::move(v);
        else if (k == "--concurrency")
            o.concurrency = std::stoul(v);
        else if (k == "--messages")
            o.messages = std::stoul(v);
        else if (k == "--engine")
            o.engine = v == "1";
        else
            return false;
        return true;
    });
    if (!known) return 2;
    const std::string dsn = dsn_for(o);
    if (dsn.empty() || o.base.empty() || o.concurrency == 0) {
        std::fprintf(stderr,
                     "usage: http_bench --provider ses|sendgrid|postmark|mailgun "
                     "--base http://127.0.0.1:P --concurrency C [--messages M]\n");
        return 2;
    }
    asio::io_context ioc;
    mailers::diagnostics diag;
    auto transport = mailers::make_transport(ioc.get_executor(), dsn, &diag);
    if (!transport) {
        std::fprintf(stderr, "bad DSN: %s\n", diag.message.c_str());
        return 2;
    }
    bench::measurement m;
    if (!o.engine) {
        m = bench::measure(o.messages, [&](std::size_t n) {
            return bench::closed_loop(**transport, ioc, n, o.concurrency);
        });
    } else {
        const auto dir = std::filesystem::temp_directory_path() /
                         ("mailers-http-bench-" + std::to_string(::getpid()));
        std::filesystem::create_directories(dir);
        {
            auto eng = bench::bench_engine(ioc, dir.string(), *transport);
            m = bench::measure(o.messages, [&](std::size_t n) {
                return bench::closed_loop(*eng, ioc, n, o.concurrency, "k");
            });
            eng->flush();
        }
        std::filesystem::remove_all(dir);
    }
    return bench::report(std::string("\"client\":\"") + (o.engine ? "engine" : "mailers") +
                             "\",\"provider\":\"" + o.provider +
                             "\",\"concurrency\":" + std::to_string(o.concurrency),
                         m);
}
