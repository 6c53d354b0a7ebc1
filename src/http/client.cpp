#include "http/client.hpp"

#include <openssl/err.h>
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
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/read.hpp>
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

// RFC 9110 token characters.
constexpr std::array<bool, 256> make_tchar_table() {
    std::array<bool, 256> t{};
    for (int c = '0'; c <= '9'; ++c) t[c] = true;
    for (int c = 'a'; c <= 'z'; ++c) t[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) t[c] = true;
    for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<unsigned char>(c)] = true;
    return t;
}
constexpr auto tchar_table = make_tchar_table();

bool is_tchar(char c) noexcept {
    return tchar_table[static_cast<unsigned char>(c)];
}

// CR, LF or NUL: what would split or cut a request line or header field.
bool has_ctl(std::string_view s) noexcept {
    return std::any_of(s.begin(), s.end(),
                       [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
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

struct pending {
    endpoint ep;
    request req;
    exchange_handler handler;
};

struct connection;

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

// Reads one response straight into a `response`. Beast's parser does the
// HTTP/1.1 framing (status line, fields, Content-Length, chunked coding,
// limits); the fields and body go where the caller reads them, without the
// fields container of a beast::http::message to build and then copy.
//
// Running out of memory while storing the response fails the read instead
// of throwing through the host's io_context.
class response_reader final : public bhttp::basic_parser<false> {
public:
    explicit response_reader(response& out) : out_(out) {
        out_.status = 0;
        out_.headers.clear();
        out_.body.clear();
    }

private:
    using sv = beast::string_view;

    static void out_of_memory(beast::error_code& ec) {
        ec = make_error_code(boost::system::errc::not_enough_memory);
    }

    void on_request_impl(bhttp::verb, sv, sv, int, beast::error_code&) override {}
    void on_response_impl(int code, sv, int, beast::error_code&) override {
        out_.status = static_cast<unsigned>(code);
    }
    void on_field_impl(bhttp::field, sv name, sv value, beast::error_code& ec) override {
        try {
            out_.headers.push_back(field{std::string(name), std::string(value)});
        } catch (const std::bad_alloc&) {
            out_of_memory(ec);
        }
    }
    void on_header_impl(beast::error_code&) override {}
    void on_body_init_impl(const boost::optional<std::uint64_t>& length,
                           beast::error_code& ec) override {
        // The parser has already refused a length over its body limit.
        try {
            if (length) out_.body.reserve(static_cast<std::size_t>(*length));
        } catch (const std::bad_alloc&) {
            out_of_memory(ec);
        }
    }
    std::size_t on_body_impl(sv data, beast::error_code& ec) override {
        return append(data, ec);
    }
    void on_chunk_header_impl(std::uint64_t, sv, beast::error_code&) override {}
    std::size_t on_chunk_body_impl(std::uint64_t, sv data, beast::error_code& ec) override {
        return append(data, ec);
    }
    void on_finish_impl(beast::error_code&) override {}

    std::size_t append(sv data, beast::error_code& ec) {
        try {
            out_.body.append(data.data(), data.size());
            return data.size();
        } catch (const std::bad_alloc&) {
            out_of_memory(ec);
            return 0;
        }
    }

    response& out_;
};

// One connection, and the exchange that holds it.
//
// There is no strand. Only the exchange holding a connection starts
// operations on it, one at a time, so its completion handlers never overlap
// even on an io_context run by several threads. The one other actor is the
// deadline timer: its handler may run on another thread while an operation
// is pending, so it never touches the socket object. It shuts the socket
// down with shutdown(2) instead, which makes the pending operation fail
// while the descriptor stays the exchange's to close. `mu` orders the
// timer's view of the socket and the deadline with the exchange's.
//
// While a connection sits idle in its pool nothing runs on it, so the pool
// may inspect or close it under the pool's mutex.
struct connection : std::enable_shared_from_this<connection> {
    connection(const asio::any_io_executor& ex, host_pool& p, std::chrono::milliseconds shortest)
        : pool(p), shortest_phase(shortest), timer(ex) {}

    host_pool& pool;  // the pool it counts against, for its whole life
    std::optional<tcp::socket> plain;
    std::optional<asio::ssl::stream<tcp::socket>> secure;
    std::optional<tcp::resolver> resolver;  // while resolving
    beast::flat_buffer buffer;  // kept across exchanges so its storage is reused
    std::string head;           // serialized request head, reused likewise
    steady::time_point idle_since;
    bool keep = false;     // the last exchange left it reusable
    bool written = false;  // the current request was written completely

    // The exchange holding the connection: what it was asked and what it
    // has so far. They live here, not in a per-request allocation.
    std::optional<pending> job;
    exchange_result result;
    std::optional<response_reader> reader;
    bool was_open = false;  // this attempt found the connection open
    bool retried = false;   // the request was sent again on a fresh connection

    bool is_open() const noexcept {
        return (secure && secure->next_layer().is_open()) || (plain && plain->is_open());
    }
    tcp::socket& lowest() noexcept { return secure ? secure->next_layer() : *plain; }

    // Gives the phase now starting until now + d. A phase that overruns has
    // its lookup cancelled or its socket shut down, which completes the
    // pending operation with an error, and `expired()` turns true.
    void limit(std::chrono::milliseconds d) {
        const auto until = steady::now() + d;
        std::lock_guard lock(mu);
        deadline = until;
        timed_out = false;
        if (!timer_waiting) wait_for_deadline();
    }

    // The phase that ran last overran its deadline.
    bool expired() {
        std::lock_guard lock(mu);
        return timed_out;
    }

    // No phase running; a timer still waiting returns without effect. The
    // next exchange on this connection re-arms it only if it has fired.
    void end_phase() {
        std::lock_guard lock(mu);
        deadline = steady::time_point::max();
    }

    // Once the connection is parked or dropped: a waiting timer is
    // cancelled, so that an idle connection leaves no work on the host's
    // io_context and its run() can return. Nothing is cancelled when an
    // exchange has taken the connection meanwhile; a cancel that races with
    // a new exchange costs only a re-arm, since the cancelled wait finds a
    // deadline in force and waits again.
    void unlimit_if_idle() {
        std::lock_guard lock(mu);
        if (deadline == steady::time_point::max() && timer_waiting) timer.cancel();
    }

    tcp::resolver& start_lookup(const asio::any_io_executor& ex) {
        std::lock_guard lock(mu);
        return resolver.emplace(ex);
    }
    void end_lookup() {
        std::lock_guard lock(mu);
        resolver.reset();
    }

    tcp::socket& make_socket(const asio::any_io_executor& ex, asio::ssl::context* tls) {
        std::lock_guard lock(mu);
        if (tls)
            secure.emplace(ex, *tls);
        else
            plain.emplace(ex);
        return lowest();
    }

    // A fresh descriptor for the next connect attempt. Opening it here,
    // under `mu`, rather than inside async_connect keeps the descriptor
    // from changing while the timer may read it.
    void reopen(const tcp& protocol, boost::system::error_code& ec) {
        std::lock_guard lock(mu);
        auto& s = lowest();
        if (s.is_open()) s.close(ec);
        s.open(protocol, ec);
    }

    // Closes the socket and forgets its state; not the timer (see
    // unlimit_if_idle).
    void close() {
        std::lock_guard lock(mu);
        boost::system::error_code ignored;
        if (secure) secure->next_layer().close(ignored);
        if (plain) plain->close(ignored);
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
        const auto n = ::recv(lowest().native_handle(), &b, 1, MSG_PEEK | MSG_DONTWAIT);
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }

private:
    // One timer serves every phase (connect, handshake, write, response).
    // Starting a phase only moves `deadline`; the timer, armed once, checks
    // it when it fires and waits again if the deadline has moved on. That
    // saves a timer syscall and a cancelled wait per phase.
    //
    // The timer never waits longer than the shortest phase timeout, so it
    // never expires after a deadline set later: a phase starting at t ends
    // no earlier than t + shortest_phase.
    std::chrono::milliseconds shortest_phase;
    asio::steady_timer timer;
    std::mutex mu;  // guards what follows, and the socket's and resolver's existence
    steady::time_point deadline = steady::time_point::max();  // max: no phase running
    bool timer_waiting = false;
    bool timed_out = false;

    // `mu` held.
    void wait_for_deadline() {
        timer_waiting = true;
        timer.expires_at(std::min(deadline, steady::now() + shortest_phase));
        timer.async_wait([self = shared_from_this()](const boost::system::error_code&) {
            self->on_timer();
        });
    }

    void on_timer() {
        std::lock_guard lock(mu);
        timer_waiting = false;
        // Cancelled or not, only the deadline in force counts.
        if (deadline == steady::time_point::max()) return;
        if (steady::now() < deadline) {
            wait_for_deadline();
            return;
        }
        timed_out = true;
        if (resolver) resolver->cancel();
        if (is_open()) ::shutdown(lowest().native_handle(), SHUT_RDWR);
    }
};

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
                use_system_store(ec);
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

    // The system's CA certificates are parsed once per process and shared
    // by every client: parsing Debian's bundle costs about 60 ms and 1 MB,
    // and a host may build a transport per mailbox.
    void use_system_store(boost::system::error_code& ec) {
        static const std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store = [] {
            std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> s{X509_STORE_new(),
                                                                      &X509_STORE_free};
            if (s && X509_STORE_set_default_paths(s.get()) != 1) s.reset();
            return s;
        }();
        if (!store) {
            // Only the first client sees OpenSSL's reason; later ones get a generic error.
            const auto reason = ERR_get_error();
            ec = reason ? boost::system::error_code(static_cast<int>(reason),
                                                    asio::error::get_ssl_category())
                        : make_error_code(boost::system::errc::io_error);
            return;
        }
        SSL_CTX_set1_cert_store(tls.native_handle(), store.get());
    }

    std::mutex mu;
    std::unordered_map<std::string, host_pool> pools;  // nodes never move or go
    bool closed = false;

    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> opened{0};
    std::atomic<std::uint64_t> reused{0};

    struct exchange_op;

    void submit(const endpoint& ep, request req, exchange_handler handler);
    void start(std::shared_ptr<connection> c, pending p);
    void release(std::shared_ptr<connection> c);
    void shutdown();

    asio::awaitable<exchange_result> open(connection& c, const endpoint& ep);

    std::chrono::milliseconds shortest_phase() const {
        const auto& t = params.timeouts;
        return std::max(std::chrono::milliseconds(1),
                        std::min({t.connect, t.handshake, t.write, t.response}));
    }
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

}  // namespace

bool is_private_address(const asio::ip::address& a) noexcept {
    const auto v4 = [](const asio::ip::address_v4& x) {
        const auto b = x.to_bytes();
        return b[0] == 0 || b[0] == 10 || b[0] == 127 || (b[0] == 100 && (b[1] & 0xc0) == 64) ||
               (b[0] == 169 && b[1] == 254) || (b[0] == 172 && (b[1] & 0xf0) == 16) ||
               (b[0] == 192 && b[1] == 168) || (b[0] == 192 && b[1] == 0 && b[2] == 0) ||
               b[0] >= 224;
    };
    if (a.is_v4()) return v4(a.to_v4());
    const auto x = a.to_v6();
    if (x.is_v4_mapped()) return v4(asio::ip::make_address_v4(asio::ip::v4_mapped, x));
    const auto b = x.to_bytes();
    return x.is_unspecified() || x.is_loopback() || x.is_link_local() || x.is_multicast() ||
           x.is_site_local() || (b[0] & 0xfe) == 0xfc;
}

// Opening a connection (lookup, connect, TLS handshake) happens once per
// connection, so it stays a coroutine; the steps every request takes are
// exchange_op's.
asio::awaitable<exchange_result> client::state::open(connection& c, const endpoint& ep) {
    exchange_result r;
    const auto& t = params.timeouts;
    std::vector<tcp::endpoint> targets;
    const auto over = std::find_if(params.connect_to.begin(), params.connect_to.end(),
                                   [&](const http_connect_to& o) {
                                       return o.port == ep.port && mime::iequals(o.host, ep.host);
                                   });
    if (over != params.connect_to.end()) {
        boost::system::error_code aec;
        const auto addr = asio::ip::make_address(over->address, aec);
        if (aec) {
            r.ec = fail_with(transport_errc::configuration);
            r.what = "connect_to for " + ep.host + ": '" + over->address + "' is not an IP address";
            co_return r;
        }
        targets.emplace_back(addr, over->to_port ? over->to_port : ep.port);
    } else if (ep.host_is_ip) {
        targets.emplace_back(asio::ip::make_address(ep.host), ep.port);
    } else {
        // Resolvers have no timeout of their own; the connection's deadline
        // cancels the lookup.
        c.limit(t.connect);
        auto& resolver = c.start_lookup(ex);
        auto [ec, results] =
            co_await resolver.async_resolve(ep.host, std::to_string(ep.port), use_tuple);
        c.end_lookup();
        const bool expired = c.expired();
        if (ec || expired || results.empty()) {
            r.ec = fail_with(expired ? transport_errc::timeout_before_send
                                     : transport_errc::connection_failed);
            r.what = expired ? "resolving " + ep.host + " took longer than " + ms_text(t.connect)
                             : "cannot resolve " + ep.host + ": " + ec.message();
            co_return r;
        }
        for (const auto& e : results) targets.push_back(e.endpoint());
    }

    if (params.refuse_private_addresses) {
        std::erase_if(targets,
                      [](const tcp::endpoint& e) { return is_private_address(e.address()); });
        if (targets.empty()) {
            r.ec = fail_with(transport_errc::connection_failed);
            r.what = "refused: " + ep.host +
                     " is a loopback, private, link-local or otherwise non-public address";
            co_return r;
        }
    }
    auto& low = c.make_socket(ex, ep.tls ? &tls : nullptr);
    // The connect timeout covers every address the name resolved to.
    c.limit(t.connect);
    boost::system::error_code cec;
    bool expired = false;
    for (const auto& target : targets) {
        c.reopen(target.protocol(), cec);
        if (!cec) std::tie(cec) = co_await low.async_connect(target, use_tuple);
        expired = c.expired();
        if (!cec || expired) break;
    }
    if (cec || expired) {
        c.close();
        r.ec = fail_with(expired ? transport_errc::timeout_before_send
                                 : transport_errc::connection_failed);
        r.what = "connecting to " + ep.host_header +
                 (expired ? " took longer than " + ms_text(t.connect) : ": " + cec.message());
        co_return r;
    }
    boost::system::error_code ignored;
    low.set_option(tcp::no_delay(true), ignored);

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
        c.limit(t.handshake);
        auto [hec] = co_await c.secure->async_handshake(asio::ssl::stream_base::client, use_tuple);
        const bool timeout = c.expired();
        if (hec || timeout) {
            const long verify = SSL_get_verify_result(ssl);
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

// The steps of one exchange on the connection it holds: open it if needed,
// write the request, read the response, hand the connection back and call
// the handler. The op is two shared pointers, carried from one completion
// handler to the next, and keeps what it builds in the connection; a
// request allocates nothing for its control flow, and every handler fits
// Asio's recycled handler memory.
//
// Each step's last act is to move the op into the handler of the operation
// it starts, so no step touches `s` or `c` after starting one.
struct client::state::exchange_op {
    std::shared_ptr<state> s;
    std::shared_ptr<connection> c;

    void start() {
        auto& x = *c;
        x.written = false;
        x.keep = false;
        x.retried = false;
        x.result = exchange_result{};
        if (auto why = write_head(x.head, x.job->ep, x.job->req); !why.empty()) {
            x.result.ec = fail_with(transport_errc::configuration);
            x.result.what = "request to " + x.job->ep.host_header + " not sent: " + why;
            // Never inside async_exchange.
            auto ex = s->ex;
            asio::post(ex, [op = std::move(*this)]() mutable { op.finish(); });
            return;
        }
        send();
    }

    void send() {
        auto& x = *c;
        x.was_open = x.is_open();
        if (x.was_open) {
            s->reused.fetch_add(1, std::memory_order_relaxed);
            return write();
        }
        auto opening = s->open(x, x.job->ep);
        auto ex = s->ex;
        asio::co_spawn(ex, std::move(opening),
                       [op = std::move(*this)](std::exception_ptr e, exchange_result r) mutable {
                           if (e) return op.fail_internal(e);
                           if (r.ec) {
                               op.c->result = std::move(r);
                               return op.finish();
                           }
                           op.write();
                       });
    }

    void write() {
        auto& x = *c;
        x.limit(s->params.timeouts.write);
        const std::array<asio::const_buffer, 2> out{asio::buffer(x.head),
                                                    asio::buffer(x.job->req.body)};
        auto next = [op = std::move(*this)](error_code ec, std::size_t) mutable {
            op.on_written(ec);
        };
        if (x.secure)
            asio::async_write(*x.secure, out, std::move(next));
        else
            asio::async_write(*x.plain, out, std::move(next));
    }

    void on_written(error_code ec) {
        auto& x = *c;
        if (ec) {
            const bool timeout = x.expired();
            x.close();
            // A write that fails leaves the server with an incomplete
            // request, which it discards, so a fresh connection may carry it
            // once.
            if (x.was_open && !x.retried && !timeout) {
                x.retried = true;
                return send();
            }
            const auto& ep = x.job->ep;
            return fail(timeout ? transport_errc::timeout_before_send
                                : transport_errc::connection_failed,
                        "sending the request to " + ep.host_header +
                            (timeout ? " took longer than " + ms_text(s->params.timeouts.write)
                                     : " failed: " + ec.message()));
        }
        x.written = true;
        s->requests.fetch_add(1, std::memory_order_relaxed);
        // From here on the server may have acted on the request: every
        // failure is an unknown outcome.
        x.result.resp.headers.reserve(8);
        x.limit(s->params.timeouts.response);
        read();
    }

    void read() {
        auto& x = *c;
        x.reader.emplace(x.result.resp);
        x.reader->body_limit(s->params.max_response_size);
        x.reader->header_limit(64 * 1024);
        auto next = [op = std::move(*this)](error_code ec, std::size_t) mutable {
            op.on_read(ec);
        };
        if (x.secure)
            bhttp::async_read(*x.secure, x.buffer, *x.reader, std::move(next));
        else
            bhttp::async_read(*x.plain, x.buffer, *x.reader, std::move(next));
    }

    void on_read(error_code ec) {
        auto& x = *c;
        if (ec) {
            const bool timeout = x.expired();
            x.close();
            const auto& ep = x.job->ep;
            return fail(transport_errc::outcome_unknown,
                        timeout ? "no complete response from " + ep.host_header + " within " +
                                      ms_text(s->params.timeouts.response) +
                                      " after the request was sent"
                                : "reading the response from " + ep.host_header +
                                      " after the request was sent failed: " + ec.message());
        }
        // An interim 1xx response (100 Continue, 103 Early Hints) precedes
        // the real one; 101 would switch protocols, which we never ask for.
        const auto status = x.result.resp.status;
        if (status >= 100 && status < 200 && status != 101) return read();
        x.keep = x.reader->keep_alive() && status != 101;
        if (!x.keep) x.close();
        finish();
    }

    void fail(transport_errc e, std::string what) {
        c->result.ec = fail_with(e);
        c->result.what = std::move(what);
        finish();
    }

    void fail_internal(std::exception_ptr e) {
        c->close();
        auto& r = c->result;
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
        finish();
    }

    // Hands the connection back, which may start the next exchange on it,
    // and then calls this exchange's handler.
    void finish() {
        auto& x = *c;
        x.end_phase();
        x.reader.reset();
        auto r = std::move(x.result);
        auto handler = std::move(x.job->handler);
        x.job.reset();
        auto conn = c;
        s->release(std::move(c));
        std::move(handler)(std::move(r));
        // A parked or dropped connection's timer is cancelled only now: a
        // handler that sends again usually takes the connection straight
        // back, and its timer then stays armed instead of being cancelled
        // and re-armed.
        conn->unlimit_if_idle();
    }
};

void client::state::start(std::shared_ptr<connection> c, pending p) {
    c->job.emplace(std::move(p));
    exchange_op{shared_from_this(), std::move(c)}.start();
}

void client::state::submit(const endpoint& ep, request req, exchange_handler handler) {
    const std::string key = pool_key(ep);
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
            conn = std::make_shared<connection>(ex, p, shortest_phase());
        }
        if (!conn) {
            p.waiters.push_back(pending{ep, std::move(req), std::move(handler)});
            return;
        }
    }
    start(std::move(conn), pending{ep, std::move(req), std::move(handler)});
}

void client::state::release(std::shared_ptr<connection> c) {
    std::optional<pending> next;
    {
        std::lock_guard lock(mu);
        auto& p = c->pool;
        // A parked or dropped connection's timer is cancelled by the
        // exchange's finish(), after its handler.
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
    start(std::move(c), std::move(*next));
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
