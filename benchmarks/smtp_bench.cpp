// SMTP submission throughput and client CPU per message, into a local sink
// (postfix smtp-sink; benchmarks/run-smtp-peers starts one and compares
// against nodemailer).
//
//   smtp_bench --client mailers|ceiling --host H --port P --connections N
//              [--messages M] [--inflight K]
//
// mailers: `smtp_transport` with N pooled connections (PIPELINING as the
//   server offers it, 100 messages per connection, the defaults), K sends in
//   flight (default 4 N), each send a fresh message rendered by the library.
// ceiling: the least a client can do over the same N connections: one
//   pre-rendered message, MAIL + RCPT + DATA pipelined, and the content, the
//   final dot and the next message's MAIL + RCPT + DATA in one write, so a
//   message costs one round trip and no rendering.
//
// Prints one JSON line: client, connections, messages, ok, failed, seconds,
// cpu_seconds (user + system of this process, from getrusage, over the
// measured part), msgs_per_s, cpu_us_per_msg. A warm-up of min(200, M/10)
// messages runs first and is not measured.
#include <unistd.h>

#include <array>
#include <boost/asio/buffer.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <mailers/transports/smtp_transport.hpp>
#include <stdexcept>
#include <string>
#include <string_view>

#include "mime/body.hpp"
#include "transport_loop.hpp"
#include "transports/smtp/protocol.hpp"

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace smtp = mailers::detail::smtp;

namespace {

struct options {
    std::string client = "mailers";
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    std::size_t connections = 1;
    std::size_t messages = 20000;
    std::size_t inflight = 0;
};

// ---- ceiling -------------------------------------------------------------

// What the ceiling client writes, built once before anything is measured:
// its cost belongs to no message.
struct ceiling_script {
    tcp::endpoint server;
    std::string helo;
    std::string transaction;  // MAIL + RCPT + DATA
    std::string content;      // dot-stuffed message and the final ".\r\n"
};

ceiling_script make_ceiling_script(const options& o, asio::io_context& ioc) {
    ceiling_script sc;
    tcp::resolver r(ioc);
    sc.server = r.resolve(o.host, std::to_string(o.port)).begin()->endpoint();
    sc.helo = "EHLO bench.example\r\n";
    sc.transaction = "MAIL FROM:<rep@sender.example>\r\nRCPT TO:<prospect@example.net>\r\nDATA\r\n";
    std::string message =
        "From: Sales Rep <rep@sender.example>\r\nTo: prospect@example.net\r\n"
        "Subject: Quick question\r\nDate: Sat, 28 Nov 2026 00:00:00 +0000\r\n"
        "Message-ID: <bench@sender.example>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n";
    mailers::mime::append_crlf_normalised(message, bench::body_text());
    smtp::append_dot_stuffed(sc.content, message);
    return sc;
}

struct ceiling_state {
    const ceiling_script& script;
    std::size_t remaining = 0;
    bench::tally t;
};

// Reads until `replies` complete replies have arrived; returns false when one
// of them is not the expected class (2xx, or 354 for DATA).
asio::awaitable<bool> read_replies(tcp::socket& s, std::string& buf, std::size_t replies,
                                   bool last_is_data) {
    std::size_t seen = 0;
    bool good = true;
    std::size_t pos = 0;
    while (seen < replies) {
        auto eol = buf.find("\r\n", pos);
        if (eol == std::string::npos) {
            buf.erase(0, pos);
            pos = 0;
            std::size_t old = buf.size();
            buf.resize(old + 4096);
            std::size_t n = co_await s.async_read_some(asio::buffer(buf.data() + old, 4096),
                                                       asio::use_awaitable);
            buf.resize(old + n);
            continue;
        }
        if (eol - pos >= 4 && buf[pos + 3] == ' ') {
            ++seen;
            char c = buf[pos];
            bool want_354 = last_is_data && seen == replies;
            if (want_354 ? buf.compare(pos, 3, "354") != 0 : c != '2') good = false;
        }
        pos = eol + 2;
    }
    buf.erase(0, pos);
    co_return good;
}

asio::awaitable<void> ceiling_connection(ceiling_state& st) {
    const ceiling_script& sc = st.script;
    tcp::socket s(co_await asio::this_coro::executor);
    try {
        co_await s.async_connect(sc.server, asio::use_awaitable);
        s.set_option(tcp::no_delay(true));
        std::string buf;
        if (!co_await read_replies(s, buf, 1, false)) throw std::runtime_error("greeting");
        co_await asio::async_write(s, asio::buffer(sc.helo), asio::use_awaitable);
        if (!co_await read_replies(s, buf, 1, false)) throw std::runtime_error("EHLO");
        if (st.remaining == 0) co_return;
        --st.remaining;
        co_await asio::async_write(s, asio::buffer(sc.transaction), asio::use_awaitable);
        if (!co_await read_replies(s, buf, 3, true)) throw std::runtime_error("MAIL/RCPT/DATA");
        for (;;) {
            bool more = st.remaining > 0;
            if (more) --st.remaining;
            std::array<asio::const_buffer, 2> bufs{asio::buffer(sc.content),
                                                   asio::buffer(sc.transaction)};
            co_await asio::async_write(s, more ? bufs : std::array{bufs[0], asio::const_buffer{}},
                                       asio::use_awaitable);
            bool accepted = co_await read_replies(s, buf, 1, false);
            accepted ? ++st.t.ok : ++st.t.failed;
            if (!more) break;
            if (!co_await read_replies(s, buf, 3, true)) throw std::runtime_error("MAIL/RCPT/DATA");
        }
        static const std::string quit = "QUIT\r\n";
        co_await asio::async_write(s, asio::buffer(quit), asio::use_awaitable);
    } catch (const std::exception& e) {
        if (st.t.first_error.empty()) st.t.first_error = e.what();
        ++st.t.failed;
    }
}

bench::tally run_ceiling(const ceiling_script& sc, std::size_t connections, std::size_t count,
                         asio::io_context& ioc) {
    ceiling_state st{sc, count, {}};
    for (std::size_t i = 0; i < connections; ++i)
        asio::co_spawn(ioc, ceiling_connection(st), asio::detached);
    ioc.restart();
    ioc.run();
    return st.t;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const bool known = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (k == "--client")
            o.client = std::move(v);
        else if (k == "--host")
            o.host = std::move(v);
        else if (k == "--port")
            o.port = static_cast<std::uint16_t>(std::stoul(v));
        else if (k == "--connections")
            o.connections = std::stoul(v);
        else if (k == "--messages")
            o.messages = std::stoul(v);
        else if (k == "--inflight")
            o.inflight = std::stoul(v);
        else
            return false;
        return true;
    });
    if (!known) return 2;
    if (o.port == 0 || o.connections == 0 ||
        (o.client != "mailers" && o.client != "ceiling" && o.client != "engine")) {
        std::fprintf(stderr,
                     "usage: smtp_bench --client mailers|engine|ceiling --host H --port P "
                     "--connections N [--messages M] [--inflight K]\n");
        return 2;
    }
    asio::io_context ioc;
    bench::measurement m;
    if (o.client == "mailers" || o.client == "engine") {
        mailers::smtp_params p;
        p.host = o.host;
        p.port = o.port;
        p.tls = mailers::smtp_tls::none;
        p.helo_name = "bench.example";
        p.max_connections = o.connections;
        p.render.message_id_domain = "sender.example";
        auto transport = std::make_shared<mailers::smtp_transport>(ioc.get_executor(), p);
        const std::size_t window = o.inflight ? o.inflight : 4 * o.connections;
        if (o.client == "mailers") {
            m = bench::measure(o.messages, [&](std::size_t n) {
                return bench::closed_loop(*transport, ioc, n, window);
            });
        } else {
            // Orchestration included: the engine with its SQLite ledger.
            const auto dir = std::filesystem::temp_directory_path() /
                             ("mailers-smtp-bench-" + std::to_string(::getpid()));
            std::filesystem::create_directories(dir);
            {
                auto eng = bench::bench_engine(ioc, dir.string(), transport);
                m = bench::measure(o.messages, [&](std::size_t n) {
                    return bench::closed_loop(*eng, ioc, n, window, "k");
                });
                eng->flush();
            }
            std::filesystem::remove_all(dir);
        }
    } else {
        const ceiling_script sc = make_ceiling_script(o, ioc);
        m = bench::measure(o.messages,
                           [&](std::size_t n) { return run_ceiling(sc, o.connections, n, ioc); });
    }
    return bench::report(
        "\"client\":\"" + o.client + "\",\"connections\":" + std::to_string(o.connections), m);
}
