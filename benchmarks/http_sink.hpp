// An HTTP server on 127.0.0.1 that does no work: it reads each request whole
// and answers 200 with an empty body, keep-alive, on threads of its own. The
// ceiling the HTTP benchmarks measure a receiver or a sender against.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <thread>
#include <vector>

namespace bench {

class http_sink {
public:
    /// Listens on an ephemeral port of 127.0.0.1, served by `threads` threads.
    explicit http_sink(unsigned threads = 1)
        : acceptor_(ioc_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
        boost::asio::co_spawn(ioc_, accept_loop(), boost::asio::detached);
        for (unsigned i = 0; i < threads; ++i) threads_.emplace_back([this] { ioc_.run(); });
    }
    ~http_sink() {
        boost::asio::post(ioc_, [this] { ioc_.stop(); });
        for (auto& t : threads_) t.join();
    }
    http_sink(const http_sink&) = delete;
    http_sink& operator=(const http_sink&) = delete;

    std::uint16_t port() const { return acceptor_.local_endpoint().port(); }

private:
    using tcp = boost::asio::ip::tcp;

    boost::asio::awaitable<void> accept_loop() {
        constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        for (;;) {
            auto [ec, sock] =
                co_await acceptor_.async_accept(boost::asio::make_strand(ioc_), use_tuple);
            if (ec) co_return;
            auto ex = sock.get_executor();
            boost::asio::co_spawn(ex, serve(boost::beast::tcp_stream(std::move(sock))),
                                  boost::asio::detached);
        }
    }
    static boost::asio::awaitable<void> serve(boost::beast::tcp_stream s) {
        namespace http = boost::beast::http;
        constexpr auto use_tuple = boost::asio::as_tuple(boost::asio::use_awaitable);
        boost::beast::flat_buffer buf;
        for (;;) {
            http::request_parser<http::string_body> req;
            req.body_limit(64 * 1024 * 1024);
            auto [ec, n] = co_await http::async_read(s, buf, req, use_tuple);
            if (ec) co_return;
            http::response<http::empty_body> res{http::status::ok, 11};
            res.keep_alive(true);
            res.prepare_payload();
            auto [wec, wn] = co_await http::async_write(s, res, use_tuple);
            if (wec) co_return;
        }
    }

    boost::asio::io_context ioc_;
    tcp::acceptor acceptor_;
    std::vector<std::thread> threads_;
};

}  // namespace bench
