#include "http/client.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cerrno>
#include <charconv>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "mime/text.hpp"

namespace mailers::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool is_tchar(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool has_ctl(std::string_view s) noexcept {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

std::string ms_text(std::chrono::milliseconds d) {
    return std::to_string(d.count()) + " ms";
}

error_code fail_with(transport_errc e) {
    return make_error_code(e);
}

}  // namespace

// ---------------------------------------------------------------------------
// URLs

boost::system::result<endpoint> parse_endpoint(std::string_view url, diagnostics* diag) {
    const auto bad = [&](std::string why) -> boost::system::result<endpoint> {
        if (diag) diag->message = "endpoint: " + why;
        return make_error_code(errc::invalid_argument);
    };
    endpoint ep;
    const auto sep = url.find("://");
    if (sep == std::string_view::npos)
        return bad("expected http:// or https:// followed by a host");
    const auto scheme = url.substr(0, sep);
    if (mime::iequals(scheme, "https"))
        ep.tls = true;
    else if (mime::iequals(scheme, "http"))
        ep.tls = false;
    else
        return bad("scheme '" + std::string(scheme) + "' is not http or https");
    std::string_view rest = url.substr(sep + 3);
    if (rest.find_first_of("?#") != std::string_view::npos)
        return bad("a query or fragment is not allowed");
    const auto slash = rest.find('/');
    std::string_view authority = rest.substr(0, slash);
    std::string_view path =
        slash == std::string_view::npos ? std::string_view{} : rest.substr(slash);
    if (authority.find('@') != std::string_view::npos)
        return bad("user information is not allowed in the URL");
    std::string_view host;
    std::string_view port;
    if (authority.starts_with('[')) {
        const auto close = authority.find(']');
        if (close == std::string_view::npos) return bad("unterminated IPv6 literal");
        host = authority.substr(1, close - 1);
        const auto after = authority.substr(close + 1);
        if (!after.empty()) {
            if (after[0] != ':') return bad("unexpected text after the IPv6 literal");
            port = after.substr(1);
        }
    } else {
        const auto colon = authority.rfind(':');
        host = authority.substr(0, colon);
        if (colon != std::string_view::npos) port = authority.substr(colon + 1);
    }
    if (host.empty()) return bad("the host is missing");
    for (char c : host) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':' || c == '_';
        if (!ok) return bad("the host holds a character that is not allowed");
    }
    ep.host.assign(host);
    for (auto& c : ep.host)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    ep.port = ep.tls ? 443 : 80;
    if (!port.empty()) {
        unsigned v = 0;
        auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
        if (ec != std::errc{} || p != port.data() + port.size() || v == 0 || v > 65535)
            return bad("the port is not a number from 1 to 65535");
        ep.port = static_cast<std::uint16_t>(v);
    }
    boost::system::error_code aec;
    const auto addr = asio::ip::make_address(ep.host, aec);
    ep.host_is_ip = !aec;
    if (!ep.host_is_ip && ep.host.find(':') != std::string::npos)
        return bad("the host is neither a name nor an IP address");
    while (path.ends_with('/')) path.remove_suffix(1);
    if (has_ctl(path) || path.find(' ') != std::string_view::npos)
        return bad("the path holds spaces or control characters");
    ep.base_path.assign(path);
    ep.host_header = ep.host_is_ip && addr.is_v6() ? "[" + ep.host + "]" : ep.host;
    if (ep.port != (ep.tls ? 443 : 80)) ep.host_header += ":" + std::to_string(ep.port);
    return ep;
}

boost::system::result<std::pair<endpoint, std::string>> parse_url(std::string_view url,
                                                                  diagnostics* diag) {
    const auto sep = url.find("://");
    const auto slash = sep == std::string_view::npos ? sep : url.find('/', sep + 3);
    std::string_view base = url.substr(0, slash);
    std::string target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
    if (has_ctl(target) || target.find(' ') != std::string::npos) {
        if (diag) diag->message = "URL: the path holds spaces or control characters";
        return make_error_code(errc::invalid_argument);
    }
    auto ep = parse_endpoint(base, diag);
    if (!ep) return ep.error();
    return std::pair{std::move(*ep), std::move(target)};
}

// ---------------------------------------------------------------------------
// Connections and the pool

namespace {

// One connection. Only the exchange that holds it touches it, always on its
// strand; while it sits idle in the pool nothing runs on it, so the pool may
// inspect or close it under its mutex.
struct connection {
    explicit connection(const asio::any_io_executor& ex) : strand(asio::make_strand(ex)) {}

    asio::strand<asio::any_io_executor> strand;
    std::optional<beast::tcp_stream> plain;
    std::optional<beast::ssl_stream<beast::tcp_stream>> secure;
    beast::flat_buffer buffer;  // kept across exchanges so its storage is reused
    std::string head;           // serialized request head, reused likewise
    steady::time_point idle_since;
    bool keep = false;     // the last exchange left it reusable
    bool written = false;  // the current request was written completely

    bool is_open() const noexcept {
        return (secure && beast::get_lowest_layer(*secure).socket().is_open()) ||
               (plain && plain->socket().is_open());
    }
    beast::tcp_stream& lowest() noexcept {
        return secure ? beast::get_lowest_layer(*secure) : *plain;
    }
    void close() noexcept {
        beast::error_code ignored;
        if (secure) beast::get_lowest_layer(*secure).socket().close(ignored);
        if (plain) plain->socket().close(ignored);
        secure.reset();
        plain.reset();
        buffer.clear();
        keep = false;
    }

    // An idle keep-alive connection the server has closed (or written to,
    // which HTTP/1.1 servers do only to close) must not carry a request: the
    // write would succeed into the socket buffer and the lost reply would
    // make a harmless race look like an unknown outcome.
    bool still_usable() noexcept {
        if (!is_open() || buffer.size() != 0) return false;
        char b;
        const auto n = ::recv(lowest().socket().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
};

struct pending {
    endpoint ep;
    request req;
    exchange_handler handler;
};

struct host_pool {
    std::size_t open = 0;  // connections counted against the limit, open or opening
    std::vector<std::shared_ptr<connection>> idle;  // most recently used last
    std::deque<pending> waiters;
};

std::string pool_key(const endpoint& ep) {
    std::string k = ep.tls ? "https://" : "http://";
    k += ep.host;
    k += ':';
    k += std::to_string(ep.port);
    return k;
}

}  // namespace

struct client::state : std::enable_shared_from_this<state> {
    state(asio::any_io_executor e, const http_client_params& p)
        : ex(std::move(e)), params(p), tls(asio::ssl::context::tls_client) {
        if (params.max_connections == 0)
            throw exception(make_error_code(errc::invalid_argument),
                            "http: max_connections must be at least 1");
        SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
        if (params.verify_peer) {
            boost::system::error_code ec;
            if (!params.ca_file.empty())
                tls.load_verify_file(params.ca_file, ec);
            else
                tls.set_default_verify_paths(ec);
            if (ec)
                throw exception(make_error_code(errc::invalid_argument),
                                "http: cannot load the CA certificates" +
                                    (params.ca_file.empty() ? std::string(" of the system store")
                                                            : " from " + params.ca_file) +
                                    ": " + ec.message());
            tls.set_verify_mode(asio::ssl::verify_peer);
        } else {
            tls.set_verify_mode(asio::ssl::verify_none);
        }
    }

    asio::any_io_executor ex;
    http_client_params params;
    asio::ssl::context tls;

    std::mutex mu;
    std::unordered_map<std::string, host_pool> pools;
    bool closed = false;

    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> opened{0};
    std::atomic<std::uint64_t> reused{0};

    void submit(const endpoint& ep, request req, exchange_handler handler);
    void start(std::shared_ptr<connection> c, std::string key, pending p);
    void release(const std::string& key, std::shared_ptr<connection> c);
    void shutdown();

    asio::awaitable<exchange_result> exchange(std::shared_ptr<connection> c, const endpoint& ep,
                                              const request& req);
    asio::awaitable<exchange_result> open(connection& c, const endpoint& ep);

    void log(log_level l, const std::string& msg) const { params.log.log(l, msg); }
};

namespace {

void fail_later(const asio::any_io_executor& ex, exchange_handler h, error_code ec,
                std::string what) {
    asio::post(ex, [h = std::move(h), ec, what = std::move(what)]() mutable {
        exchange_result r;
        r.ec = ec;
        r.what = std::move(what);
        std::move(h)(std::move(r));
    });
}

// Writes the request line and headers into `out`, reusing its storage.
// Returns a description of the first field that cannot be sent, or "".
std::string write_head(std::string& out, const endpoint& ep, const request& req) {
    if (has_ctl(req.target) || req.target.find(' ') != std::string::npos ||
        !req.target.starts_with('/'))
        return "the request target is not a path";
    out.clear();
    out.append(req.method);
    out += ' ';
    out += ep.base_path;
    out += req.target;
    out += " HTTP/1.1\r\nHost: ";
    out += ep.host_header;
    out += "\r\nUser-Agent: mailers/0.1\r\n";
    for (const auto& f : req.headers) {
        if (f.name.empty() || !std::all_of(f.name.begin(), f.name.end(), is_tchar))
            return "header name '" + f.name + "' is not an HTTP token";
        // The value may hold a credential: name the field, never the value.
        if (has_ctl(f.value)) return "header " + f.name + " holds CR, LF or NUL";
        out += f.name;
        out += ": ";
        out += f.value;
        out += "\r\n";
    }
    out += "Content-Length: ";
    out += std::to_string(req.body.size());
    out += "\r\n\r\n";
    return {};
}

template <class Stream>
asio::awaitable<boost::system::error_code> write_request(Stream& s, const std::string& head,
                                                         const std::string& body) {
    const std::array<asio::const_buffer, 2> bufs{asio::buffer(head), asio::buffer(body)};
    auto [ec, n] = co_await asio::async_write(s, bufs, use_tuple);
    co_return ec;
}

template <class Stream>
asio::awaitable<boost::system::error_code> read_response(
    Stream& s, beast::flat_buffer& buf, bhttp::response_parser<bhttp::string_body>& parser) {
    auto [ec, n] = co_await bhttp::async_read(s, buf, parser, use_tuple);
    co_return ec;
}

}  // namespace

asio::awaitable<exchange_result> client::state::open(connection& c, const endpoint& ep) {
    exchange_result r;
    const auto& t = params.timeouts;
    std::vector<tcp::endpoint> targets;
    if (ep.host_is_ip) {
        targets.emplace_back(asio::ip::make_address(ep.host), ep.port);
    } else {
        // Resolvers have no timeout of their own; a timer cancels the lookup.
        auto resolver = std::make_shared<tcp::resolver>(c.strand);
        auto expired = std::make_shared<bool>(false);
        asio::steady_timer timer(c.strand);
        timer.expires_after(t.connect);
        timer.async_wait([resolver, expired](boost::system::error_code ec) {
            if (!ec) {
                *expired = true;
                resolver->cancel();
            }
        });
        auto [ec, results] =
            co_await resolver->async_resolve(ep.host, std::to_string(ep.port), use_tuple);
        timer.cancel();
        if (ec || results.empty()) {
            r.ec = fail_with(*expired ? transport_errc::timeout_before_send
                                      : transport_errc::connection_failed);
            r.what = *expired ? "resolving " + ep.host + " took longer than " + ms_text(t.connect)
                              : "cannot resolve " + ep.host + ": " + ec.message();
            co_return r;
        }
        for (const auto& e : results) targets.push_back(e.endpoint());
    }

    if (ep.tls)
        c.secure.emplace(c.strand, tls);
    else
        c.plain.emplace(c.strand);
    auto& low = c.lowest();
    low.expires_after(t.connect);
    auto [cec, peer] = co_await low.async_connect(targets, use_tuple);
    if (cec) {
        const bool timeout = cec == beast::error::timeout;
        c.close();
        r.ec = fail_with(timeout ? transport_errc::timeout_before_send
                                 : transport_errc::connection_failed);
        r.what = "connecting to " + ep.host_header +
                 (timeout ? " took longer than " + ms_text(t.connect) : ": " + cec.message());
        co_return r;
    }
    boost::system::error_code ignored;
    low.socket().set_option(tcp::no_delay(true), ignored);

    if (ep.tls) {
        SSL* ssl = c.secure->native_handle();
        if (!ep.host_is_ip) SSL_set_tlsext_host_name(ssl, ep.host.c_str());
        if (params.verify_peer) {
            X509_VERIFY_PARAM* vp = SSL_get0_param(ssl);
            const int ok = ep.host_is_ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, ep.host.c_str())
                                         : X509_VERIFY_PARAM_set1_host(vp, ep.host.c_str(), 0);
            if (ok != 1) {
                c.close();
                r.ec = fail_with(transport_errc::configuration);
                r.what = "cannot set up host name verification for " + ep.host;
                co_return r;
            }
        }
        low.expires_after(t.handshake);
        auto [hec] = co_await c.secure->async_handshake(asio::ssl::stream_base::client, use_tuple);
        if (hec) {
            const long verify = SSL_get_verify_result(ssl);
            const bool timeout = hec == beast::error::timeout;
            c.close();
            if (params.verify_peer && verify != X509_V_OK) {
                r.ec = fail_with(transport_errc::tls_verification_failed);
                r.what = "the certificate of " + ep.host +
                         " does not verify: " + X509_verify_cert_error_string(verify);
            } else {
                r.ec = fail_with(timeout ? transport_errc::timeout_before_send
                                         : transport_errc::connection_failed);
                r.what = "TLS handshake with " + ep.host_header +
                         (timeout ? " took longer than " + ms_text(t.handshake)
                                  : " failed: " + hec.message());
            }
            co_return r;
        }
    }
    opened.fetch_add(1, std::memory_order_relaxed);
    co_return r;
}

asio::awaitable<exchange_result> client::state::exchange(std::shared_ptr<connection> c,
                                                         const endpoint& ep, const request& req) {
    exchange_result r;
    const auto& t = params.timeouts;
    c->written = false;
    c->keep = false;
    if (auto why = write_head(c->head, ep, req); !why.empty()) {
        r.ec = fail_with(transport_errc::configuration);
        r.what = "request to " + ep.host_header + " not sent: " + why;
        co_return r;
    }

    for (int attempt = 0;; ++attempt) {
        const bool was_open = c->is_open();
        if (!was_open) {
            auto opened_r = co_await open(*c, ep);
            if (opened_r.ec) co_return opened_r;
        } else {
            reused.fetch_add(1, std::memory_order_relaxed);
        }
        c->lowest().expires_after(t.write);
        const auto wec = c->secure ? co_await write_request(*c->secure, c->head, req.body)
                                   : co_await write_request(*c->plain, c->head, req.body);
        if (!wec) break;
        const bool timeout = wec == beast::error::timeout;
        c->close();
        // A write that fails leaves the server with an incomplete request,
        // which it discards, so a fresh connection may carry it once.
        if (was_open && attempt == 0 && !timeout) continue;
        r.ec = fail_with(timeout ? transport_errc::timeout_before_send
                                 : transport_errc::connection_failed);
        r.what = "sending the request to " + ep.host_header +
                 (timeout ? " took longer than " + ms_text(t.write) : " failed: " + wec.message());
        co_return r;
    }
    c->written = true;
    requests.fetch_add(1, std::memory_order_relaxed);

    // From here on the server may have acted on the request: every failure
    // is an unknown outcome.
    std::optional<bhttp::response_parser<bhttp::string_body>> parser;
    c->lowest().expires_after(t.response);
    for (;;) {
        parser.emplace();
        parser->body_limit(params.max_response_size);
        parser->header_limit(64 * 1024);
        const auto rec = c->secure ? co_await read_response(*c->secure, c->buffer, *parser)
                                   : co_await read_response(*c->plain, c->buffer, *parser);
        if (rec) {
            const bool timeout = rec == beast::error::timeout;
            c->close();
            r.ec = fail_with(transport_errc::outcome_unknown);
            r.what = timeout ? "no complete response from " + ep.host_header + " within " +
                                   ms_text(t.response) + " after the request was sent"
                             : "reading the response from " + ep.host_header +
                                   " after the request was sent failed: " + rec.message();
            co_return r;
        }
        // An interim 1xx response (100 Continue, 103 Early Hints) precedes
        // the real one; 101 would switch protocols, which we never ask for.
        const auto status = parser->get().result_int();
        if (status < 100 || status >= 200 || status == 101) break;
    }
    auto msg = parser->release();
    r.resp.status = msg.result_int();
    r.resp.headers.reserve(16);
    for (const auto& f : msg)
        r.resp.headers.push_back(field{std::string(f.name_string()), std::string(f.value())});
    r.resp.body = std::move(msg.body());
    c->keep = msg.keep_alive() && r.resp.status != 101;
    if (!c->keep) c->close();
    co_return r;
}

void client::state::start(std::shared_ptr<connection> c, std::string key, pending p) {
    auto self = shared_from_this();
    // The coroutine borrows the endpoint and request from `job`, which the
    // completion handler owns until the coroutine has finished.
    auto job = std::make_shared<pending>(std::move(p));
    auto& conn = *c;
    asio::co_spawn(
        conn.strand, exchange(c, job->ep, job->req),
        [self, c, job, key = std::move(key)](std::exception_ptr e, exchange_result r) mutable {
            if (e) {
                c->close();
                r = exchange_result{};
                r.ec = fail_with(c->written ? transport_errc::outcome_unknown
                                            : transport_errc::connection_failed);
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    r.what = std::string("internal error: ") + x.what();
                } catch (...) {
                    r.what = "internal error";
                }
            }
            auto handler = std::move(job->handler);
            self->release(key, std::move(c));
            std::move(handler)(std::move(r));
        });
}

void client::state::submit(const endpoint& ep, request req, exchange_handler handler) {
    std::string key = pool_key(ep);
    std::shared_ptr<connection> conn;
    std::vector<std::shared_ptr<connection>> stale;
    {
        std::lock_guard lock(mu);
        if (closed) {
            fail_later(ex, std::move(handler), make_error_code(errc::operation_aborted),
                       "the HTTP client is shut down");
            return;
        }
        auto& p = pools[key];
        const auto now = steady::now();
        while (!p.idle.empty()) {
            auto c = std::move(p.idle.back());
            p.idle.pop_back();
            if (now - c->idle_since < params.idle_timeout && c->still_usable()) {
                conn = std::move(c);
                break;
            }
            c->close();
            stale.push_back(std::move(c));
            --p.open;
        }
        if (!conn && p.open < params.max_connections) {
            ++p.open;
            conn = std::make_shared<connection>(ex);
        }
        if (!conn) {
            p.waiters.push_back(pending{ep, std::move(req), std::move(handler)});
            return;
        }
    }
    start(std::move(conn), std::move(key), pending{ep, std::move(req), std::move(handler)});
}

void client::state::release(const std::string& key, std::shared_ptr<connection> c) {
    std::optional<pending> next;
    {
        std::lock_guard lock(mu);
        auto& p = pools[key];
        if (closed) {
            c->close();
            --p.open;
            return;
        }
        if (!c->keep || !c->is_open()) c->close();
        if (!p.waiters.empty()) {
            // The slot passes to the next request; a closed connection is
            // reopened by its exchange.
            next.emplace(std::move(p.waiters.front()));
            p.waiters.pop_front();
        } else if (c->is_open()) {
            c->idle_since = steady::now();
            p.idle.push_back(std::move(c));
            return;
        } else {
            --p.open;
            return;
        }
    }
    start(std::move(c), key, std::move(*next));
}

void client::state::shutdown() {
    std::vector<std::shared_ptr<connection>> idle;
    std::vector<pending> waiting;
    {
        std::lock_guard lock(mu);
        closed = true;
        for (auto& [key, p] : pools) {
            for (auto& c : p.idle) idle.push_back(std::move(c));
            p.open -= p.idle.size();
            p.idle.clear();
            for (auto& w : p.waiters) waiting.push_back(std::move(w));
            p.waiters.clear();
        }
    }
    for (auto& c : idle) c->close();
    for (auto& w : waiting)
        fail_later(ex, std::move(w.handler), make_error_code(errc::operation_aborted),
                   "the HTTP client was destroyed before a connection was free");
}

// ---------------------------------------------------------------------------

client::client(asio::any_io_executor ex, const http_client_params& params)
    : state_(std::make_shared<state>(std::move(ex), params)) {}

client::~client() {
    state_->shutdown();
}

void client::shutdown() {
    state_->shutdown();
}

void client::async_exchange(const endpoint& ep, request req, exchange_handler handler) {
    state_->submit(ep, std::move(req), std::move(handler));
}

client_stats client::stats() const {
    client_stats s;
    s.requests = state_->requests.load(std::memory_order_relaxed);
    s.connections_opened = state_->opened.load(std::memory_order_relaxed);
    s.connections_reused = state_->reused.load(std::memory_order_relaxed);
    return s;
}

}  // namespace mailers::http
