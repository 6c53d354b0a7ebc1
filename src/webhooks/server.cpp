#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <limits>
#include <mailers/webhook_server.hpp>
#include <mutex>
#include <shared_mutex>
#include <unordered_map>

#include "metrics/exposition.hpp"
#include "template/html_escape.hpp"
#include "webhooks/common.hpp"
#include "webhooks/replay.hpp"

namespace mailers {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// After an answer given without reading the whole request, the unread bytes
// are drained for a moment before closing: closing with data unread sends
// a reset, which can destroy the answer before the client reads it.
constexpr std::chrono::milliseconds linger_time{1000};
constexpr std::size_t linger_bytes = 1024 * 1024;

constexpr std::string_view plain_text = "text/plain; charset=utf-8";

// The value of query parameter `name` in `target`, decoded; "" when absent
// or malformed.
std::string query_param(std::string_view target, std::string_view name) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return {};
    const auto fields = webhooks::decode_form(target.substr(q + 1));
    if (!fields) return {};
    for (const auto& [k, v] : *fields)
        if (k == name) return v;
    return {};
}

std::string escaped(std::string_view s) {
    std::string out;
    tpl::append_html_escaped(out, s);
    return out;
}

std::string html_page(std::string_view title, std::string_view body_html) {
    return fmt::format(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta name=\"robots\" content=\"noindex\"><title>{}</title></head>"
        "<body style=\"font-family: sans-serif; max-width: 32em; margin: 4em auto\">"
        "<h1>{}</h1>{}</body></html>\n",
        title, title, body_html);
}

std::string_view sv(beast::string_view s) noexcept {
    return {s.data(), s.size()};
}

}  // namespace

struct webhook_server::state : std::enable_shared_from_this<state> {
    struct session;

    state(asio::any_io_executor e, webhook_server_params p, webhook_callback cb)
        : ex(std::move(e)),
          params(std::move(p)),
          callback(std::move(cb)),
          strand(asio::make_strand(ex)),
          acceptor(strand),
          slot_free(strand) {}

    asio::any_io_executor ex;
    webhook_server_params params;
    webhook_callback callback;
    std::unordered_map<std::string, webhook_route> routes;
    asio::strand<asio::any_io_executor> strand;  // the acceptor and slot_free
    tcp::acceptor acceptor;
    asio::steady_timer slot_free;    // wakes the accept loop when a connection ends
    bool accepting_stopped = false;  // on `strand`
    tcp::endpoint bound;             // set before accepting starts

    std::mutex mu;  // guards what follows
    std::unordered_map<session*, std::weak_ptr<session>> sessions;
    bool stopped = false;

    // Held shared while the callback runs; the destructor takes it
    // exclusively to disable the callback, so that no call starts or runs
    // once the handle is gone.
    std::shared_mutex callback_mu;
    bool callback_enabled = true;

    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::size_t> open{0};
    std::atomic<std::size_t> peak{0};
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::size_t> in_progress{0};
    std::atomic<std::uint64_t> callback_errors{0};

    void setup();
    asio::awaitable<void> accept_loop();
    void ended(session* s);
    void stop();
};

struct webhook_server::state::session : std::enable_shared_from_this<session> {
    session(std::shared_ptr<state> s, tcp::socket sock)
        : srv(std::move(s)), stream(std::move(sock)) {}

    std::shared_ptr<state> srv;
    beast::tcp_stream stream;
    beast::flat_buffer buffer;
    // On the session's strand: between requests a stop closes the
    // connection at once; during one it closes after the answer.
    bool busy = false;
    bool stopping = false;

    void set_busy(bool b) {
        if (b == busy) return;
        busy = b;
        if (b)
            srv->in_progress.fetch_add(1);
        else
            srv->in_progress.fetch_sub(1);
    }

    asio::awaitable<void> run();
    asio::awaitable<void> answer(unsigned status, std::string body, unsigned version, bool keep,
                                 std::string_view allow = {},
                                 std::string_view content_type = plain_text);
    /// The metrics text and the unsubscribe pages: what to answer.
    struct page {
        unsigned status;
        std::string body;
        std::string_view content_type;
    };
    page metrics_page();
    page unsubscribe_page(bool post, std::string_view target);
    asio::awaitable<void> linger_close();

    // Sends FIN after what was written, then releases the descriptor.
    void close() {
        beast::error_code ignored;
        stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
        stream.close();
    }
};

void webhook_server::state::setup() {
    if (params.routes.empty() && !params.unsubscribe && !params.metrics)
        throw exception(make_error_code(errc::invalid_argument),
                        "webhook_server: nothing to serve (no routes, unsubscribe or metrics)");
    if (params.max_connections == 0 || params.max_body_bytes == 0 || params.max_header_bytes == 0 ||
        params.read_timeout.count() <= 0 || params.idle_timeout.count() <= 0 ||
        params.write_timeout.count() <= 0)
        throw exception(make_error_code(errc::invalid_argument),
                        "webhook_server: limits and timeouts must be positive");
    for (auto& r : params.routes) {
        if (!r.path.starts_with('/'))
            throw exception(make_error_code(errc::invalid_argument),
                            "webhook_server: route path '" + r.path + "' does not start with /");
        if (r.provider == webhook_provider::ses && r.params.verify && !r.params.ses.certificates) {
            if (!params.sns_certificates) {
                sns_certificate_fetcher_params fp;
                fp.log = params.log;
                params.sns_certificates = std::make_shared<sns_certificate_fetcher>(ex, fp);
            }
            r.params.ses.certificates = params.sns_certificates;
        }
        const auto path = r.path;
        if (!routes.emplace(path, std::move(r)).second)
            throw exception(make_error_code(errc::invalid_argument),
                            "webhook_server: two routes for path " + path);
    }
    params.routes.clear();
    for (const auto& [path, on] : {std::pair{params.unsubscribe_path, bool(params.unsubscribe)},
                                   std::pair{params.metrics_path, bool(params.metrics)}}) {
        if (!on) continue;
        if (!path.starts_with('/'))
            throw exception(make_error_code(errc::invalid_argument),
                            "webhook_server: path '" + path + "' does not start with /");
        if (routes.count(path) || (params.unsubscribe && params.metrics &&
                                   params.unsubscribe_path == params.metrics_path))
            throw exception(make_error_code(errc::invalid_argument),
                            "webhook_server: path " + path + " is served twice");
    }

    boost::system::error_code ec;
    const auto addr = asio::ip::make_address(params.address, ec);
    if (ec)
        throw exception(make_error_code(errc::invalid_argument),
                        "webhook_server: '" + params.address + "' is not an IP address");
    const tcp::endpoint at(addr, params.port);
    acceptor.open(at.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(at);
    acceptor.listen(asio::socket_base::max_listen_connections);
    bound = acceptor.local_endpoint();
}

asio::awaitable<void> webhook_server::state::accept_loop() {
    auto self = shared_from_this();
    while (!accepting_stopped) {
        // At the limit, stop accepting: waiting clients stay in the backlog
        // rather than being refused, and get in as connections close.
        if (open.load() >= params.max_connections) {
            slot_free.expires_at(asio::steady_timer::time_point::max());
            co_await slot_free.async_wait(use_tuple);
            continue;
        }
        auto conn_strand = asio::make_strand(ex);
        auto [ec, sock] = co_await acceptor.async_accept(conn_strand, use_tuple);
        if (ec) {
            if (accepting_stopped || ec == asio::error::operation_aborted) break;
            // Out of descriptors or a connection reset before accept: pause
            // briefly instead of spinning on the error.
            params.log.log(log_level::warning, "webhook_server: accept failed: " + ec.message());
            slot_free.expires_after(std::chrono::milliseconds(50));
            co_await slot_free.async_wait(use_tuple);
            continue;
        }
        const auto now_open = open.fetch_add(1) + 1;
        auto seen = peak.load();
        while (seen < now_open && !peak.compare_exchange_weak(seen, now_open)) {
        }
        accepted.fetch_add(1, std::memory_order_relaxed);
        auto s = std::make_shared<session>(self, std::move(sock));
        bool registered = false;
        {
            std::lock_guard lock(mu);
            if (!stopped) registered = sessions.emplace(s.get(), s).second;
        }
        if (!registered) {
            // Accepted as stop() began: it missed this one.
            s->close();
            ended(s.get());
            continue;
        }
        asio::co_spawn(conn_strand, s->run(), [s](std::exception_ptr e) {
            if (e) {
                try {
                    std::rethrow_exception(e);
                } catch (const std::exception& x) {
                    s->srv->params.log.log(log_level::error,
                                           std::string("webhook_server: connection: ") + x.what());
                } catch (...) {
                }
                s->close();
            }
            s->srv->ended(s.get());
        });
    }
}

void webhook_server::state::ended(session* s) {
    {
        std::lock_guard lock(mu);
        sessions.erase(s);
    }
    open.fetch_sub(1);
    asio::post(strand, [self = shared_from_this()] { self->slot_free.cancel(); });
}

void webhook_server::state::stop() {
    std::vector<std::shared_ptr<session>> live;
    {
        std::lock_guard lock(mu);
        if (stopped) return;
        stopped = true;
        for (auto& [p, w] : sessions)
            if (auto s = w.lock()) live.push_back(std::move(s));
    }
    asio::post(strand, [self = shared_from_this()] {
        self->accepting_stopped = true;
        boost::system::error_code ignored;
        self->acceptor.close(ignored);
        self->slot_free.cancel();
    });
    for (auto& s : live)
        asio::post(s->stream.get_executor(), [s] {
            s->stopping = true;
            if (!s->busy) s->close();
        });
}

asio::awaitable<void> webhook_server::state::session::answer(unsigned status, std::string body,
                                                             unsigned version, bool keep,
                                                             std::string_view allow,
                                                             std::string_view content_type) {
    bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(status), version};
    res.set(bhttp::field::content_type, content_type);
    if (content_type != plain_text) res.set(bhttp::field::cache_control, "no-store");
    if (!allow.empty()) res.set(bhttp::field::allow, allow);
    res.keep_alive(keep);
    if (!body.empty() && body.back() != '\n') body += '\n';
    res.body() = std::move(body);
    res.prepare_payload();
    // Counted before the write, so that a client holding the answer sees it
    // counted.
    srv->requests.fetch_add(1, std::memory_order_relaxed);
    stream.expires_after(srv->params.write_timeout);
    auto [ec, n] = co_await bhttp::async_write(stream, res, use_tuple);
    if (ec) close();
}

asio::awaitable<void> webhook_server::state::session::linger_close() {
    beast::error_code ec;
    stream.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (!ec) {
        stream.expires_after(std::min(linger_time, srv->params.read_timeout));
        std::size_t drained = 0;
        char scratch[8192];
        while (drained < linger_bytes) {
            auto [rec, n] = co_await stream.async_read_some(asio::buffer(scratch), use_tuple);
            if (rec) break;
            drained += n;
        }
    }
    close();
}

asio::awaitable<void> webhook_server::state::session::run() {
    const auto& p = srv->params;
    for (;;) {
        set_busy(false);
        if (stopping) break;
        // Waiting for a request is the idle phase; its first byte starts
        // the read phase, whose deadline covers header and body together.
        if (buffer.size() == 0) {
            stream.expires_after(p.idle_timeout);
            auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), use_tuple);
            if (ec) break;
            buffer.commit(n);
        }
        set_busy(true);
        stream.expires_after(p.read_timeout);
        bhttp::request_parser<bhttp::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(p.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
        parser.body_limit(p.max_body_bytes);
        auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, use_tuple);
        if (hec == bhttp::error::header_limit) {
            co_await answer(431, "request header fields too large", 11, false);
            co_await linger_close();
            break;
        }
        if (hec == bhttp::error::body_limit) {
            co_await answer(413, "body larger than " + std::to_string(p.max_body_bytes) + " bytes",
                            11, false);
            co_await linger_close();
            break;
        }
        if (hec == beast::error::timeout || hec == bhttp::error::end_of_stream ||
            hec == asio::error::eof || hec == asio::error::operation_aborted ||
            hec == asio::error::connection_reset)
            break;
        if (hec) {
            co_await answer(400, "malformed request", 11, false);
            co_await linger_close();
            break;
        }
        const auto& head = parser.get();
        const auto version = head.version();
        const auto target = sv(head.target());
        const auto path = target.substr(0, target.find('?'));
        const auto route = srv->routes.find(std::string(path));
        const bool is_metrics = p.metrics && path == p.metrics_path;
        const bool is_unsubscribe = p.unsubscribe && path == p.unsubscribe_path;
        if (route == srv->routes.end() && !is_metrics && !is_unsubscribe) {
            co_await answer(404, "no webhook at this path", version, false);
            co_await linger_close();
            break;
        }
        const auto method = head.method();
        if (is_metrics && method != bhttp::verb::get) {
            co_await answer(405, "metrics are read with GET", version, false, "GET");
            co_await linger_close();
            break;
        }
        if (is_unsubscribe && method != bhttp::verb::get && method != bhttp::verb::post) {
            co_await answer(405, "GET shows the page, POST unsubscribes", version, false,
                            "GET, POST");
            co_await linger_close();
            break;
        }
        if (!is_metrics && !is_unsubscribe && method != bhttp::verb::post) {
            co_await answer(405, "webhooks are POSTed", version, false, "POST");
            co_await linger_close();
            break;
        }
        if (beast::iequals(head[bhttp::field::expect], "100-continue")) {
            bhttp::response<bhttp::empty_body> go{bhttp::status::continue_, version};
            stream.expires_after(p.write_timeout);
            auto [wec, wn] = co_await bhttp::async_write(stream, go, use_tuple);
            if (wec) break;
            stream.expires_after(p.read_timeout);
        }
        auto [bec, bn] = co_await bhttp::async_read(stream, buffer, parser, use_tuple);
        if (bec == bhttp::error::body_limit) {
            co_await answer(413, "body larger than " + std::to_string(p.max_body_bytes) + " bytes",
                            version, false);
            co_await linger_close();
            break;
        }
        if (bec) break;

        const auto& req = parser.get();
        if (is_metrics || is_unsubscribe) {
            const auto pg = is_metrics
                                ? metrics_page()
                                : unsubscribe_page(method == bhttp::verb::post, sv(req.target()));
            const bool keep = p.keep_alive && req.keep_alive() && !stopping;
            co_await answer(pg.status, pg.body, version, keep, {}, pg.content_type);
            if (!keep) {
                if (stream.socket().is_open() && buffer.size() != 0) co_await linger_close();
                break;
            }
            if (!stream.socket().is_open()) break;
            continue;
        }
        std::vector<http_header> headers;
        for (const auto& f : req) headers.push_back({sv(f.name_string()), sv(f.value())});
        const webhook_request wr{sv(req.method_string()), headers, req.body()};
        const auto& r = route->second;
        auto result = parse_webhook(r.provider, wr, r.params);
        const auto& fetcher = p.sns_certificates;
        if (result.outcome == webhook_outcome::certificate_needed && fetcher &&
            r.params.ses.certificates == fetcher) {
            auto [fec, cert] = co_await fetcher->async_fetch(result.certificate_url, use_tuple);
            // A failed fetch keeps the 503, so that SNS delivers again.
            if (!fec) result = parse_webhook(r.provider, wr, r.params);
        }
        if (result.outcome == webhook_outcome::subscription_confirmation &&
            p.confirm_sns_subscriptions && r.params.verify && fetcher) {
            auto [cec] =
                co_await fetcher->async_confirm_subscription(result.confirm_url, use_tuple);
            if (cec) {
                result.outcome = webhook_outcome::rejected;
                result.http_status = 503;
                result.reason = "the SNS subscription could not be confirmed: " + cec.message();
            } else {
                result.reason = "the SNS subscription is confirmed";
            }
        }

        unsigned status = static_cast<unsigned>(result.http_status);
        std::string body = result.accepted() ? "ok" : result.reason;
        // Refusals are what an operator looks for when a provider reports
        // failing deliveries; they are also what a flood of forgeries
        // produces, hence not above info. A 5xx means work for us.
        if (!result.accepted())
            p.log.log(status >= 500 ? log_level::warning : log_level::info,
                      "webhook_server: " + r.path + " answered " + std::to_string(status) + ": " +
                          result.reason);
        if (result.accepted() && srv->callback) {
            std::shared_lock lock(srv->callback_mu);
            if (!srv->callback_enabled) {
                status = 503;
                body = "shutting down";
            } else {
                // The callback may move what it likes out of the result.
                const std::string token = result.replay_token;
                try {
                    srv->callback(r, result);
                } catch (const std::exception& x) {
                    webhooks::release_replay_token(r.params, token, p.log);
                    status = 500;
                    body = "not stored; deliver again";
                    srv->callback_errors.fetch_add(1, std::memory_order_relaxed);
                    p.log.log(log_level::error,
                              "webhook_server: the callback for " + r.path + " threw: " + x.what());
                } catch (...) {
                    webhooks::release_replay_token(r.params, token, p.log);
                    status = 500;
                    body = "not stored; deliver again";
                    srv->callback_errors.fetch_add(1, std::memory_order_relaxed);
                    p.log.log(log_level::error,
                              "webhook_server: the callback for " + r.path + " threw");
                }
            }
        }
        const bool keep = p.keep_alive && req.keep_alive() && !stopping;
        co_await answer(status, std::move(body), version, keep);
        if (!keep) {
            // The request was read whole: only bytes pipelined after it
            // need draining.
            if (stream.socket().is_open() && buffer.size() != 0) co_await linger_close();
            break;
        }
        if (!stream.socket().is_open()) break;
    }
    set_busy(false);
    close();
}

webhook_server::state::session::page webhook_server::state::session::metrics_page() {
    page out{200, {}, "text/plain; version=0.0.4; charset=utf-8"};
    try {
        out.body = srv->params.metrics();
    } catch (const std::exception& e) {
        srv->params.log.log(log_level::error,
                            std::string("webhook_server: the metrics function threw: ") + e.what());
        return {500, "metrics unavailable", plain_text};
    }
    if (!out.body.empty() && out.body.back() != '\n') out.body += '\n';
    detail::exposition x;
    x.family("mailers_webhook_server_connections_total", "counter", "Connections accepted.");
    x.sample("mailers_webhook_server_connections_total", {}, srv->accepted.load());
    x.family("mailers_webhook_server_connections_open", "gauge", "Connections open now.");
    x.sample("mailers_webhook_server_connections_open", {},
             static_cast<std::uint64_t>(srv->open.load()));
    // This scrape is answered after it is counted, as every request is.
    x.family("mailers_webhook_server_requests_total", "counter", "Requests answered.");
    x.sample("mailers_webhook_server_requests_total", {}, srv->requests.load());
    x.family("mailers_webhook_server_callback_errors_total", "counter",
             "Webhook callbacks that threw (answered 500).");
    x.sample("mailers_webhook_server_callback_errors_total", {}, srv->callback_errors.load());
    out.body += x.take();
    return out;
}

webhook_server::state::session::page webhook_server::state::session::unsubscribe_page(
    bool post, std::string_view target) {
    constexpr std::string_view html = "text/html; charset=utf-8";
    const auto token = query_param(target, "t");
    if (token.empty())
        return {400, html_page("Unsubscribe", "<p>This link is incomplete.</p>"), html};
    // Tokens are base64url and '.'; anything else is no token of ours, and
    // would not be safe to write back into the page's form.
    if (token.find_first_not_of(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.") !=
        std::string::npos)
        return {400, html_page("Unsubscribe", "<p>This link is not valid.</p>"), html};
    if (!post) {
        // Only a person pressing the button (or a provider's one-click
        // POST) unsubscribes; following the link does not.
        const auto action = fmt::format("{}?t={}", srv->params.unsubscribe_path, token);
        return {200,
                html_page("Unsubscribe",
                          fmt::format("<form method=\"post\" action=\"{}\">"
                                      "<input type=\"hidden\" name=\"List-Unsubscribe\" "
                                      "value=\"One-Click\"><p>Stop receiving these emails?</p>"
                                      "<button type=\"submit\">Unsubscribe</button></form>",
                                      escaped(action))),
                html};
    }
    unsubscribe_token_status st;
    try {
        st = srv->params.unsubscribe(token);
    } catch (const std::exception& e) {
        srv->params.log.log(
            log_level::error,
            std::string("webhook_server: the unsubscribe handler threw: ") + e.what());
        return {500, html_page("Unsubscribe", "<p>Something went wrong. Please try again.</p>"),
                html};
    }
    switch (st) {
        case unsubscribe_token_status::valid:
            return {200, html_page("Unsubscribed", "<p>You will not get these emails again.</p>"),
                    html};
        case unsubscribe_token_status::expired:
            return {410,
                    html_page("Unsubscribe",
                              "<p>This link has expired. Reply to the email to "
                              "unsubscribe.</p>"),
                    html};
        case unsubscribe_token_status::forged:
            return {403, html_page("Unsubscribe", "<p>This link is not valid.</p>"), html};
        case unsubscribe_token_status::malformed:
            break;
    }
    return {400, html_page("Unsubscribe", "<p>This link is not valid.</p>"), html};
}

webhook_server::webhook_server(asio::any_io_executor ex, webhook_server_params params,
                               webhook_callback callback)
    : state_(std::make_shared<state>(std::move(ex), std::move(params), std::move(callback))) {
    state_->setup();
    asio::co_spawn(state_->strand, state_->accept_loop(), [s = state_](std::exception_ptr e) {
        if (!e) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            s->params.log.log(log_level::error,
                              std::string("webhook_server: accepting stopped: ") + x.what());
        } catch (...) {
        }
    });
}

webhook_server::~webhook_server() {
    state_->stop();
    std::unique_lock lock(state_->callback_mu);
    state_->callback_enabled = false;
}

tcp::endpoint webhook_server::local_endpoint() const {
    return state_->bound;
}

void webhook_server::stop() {
    state_->stop();
}

webhook_server_stats webhook_server::stats() const {
    webhook_server_stats st;
    st.connections_accepted = state_->accepted.load();
    st.connections_open = state_->open.load();
    st.connections_peak = state_->peak.load();
    st.requests = state_->requests.load();
    st.requests_in_progress = state_->in_progress.load();
    st.callback_errors = state_->callback_errors.load();
    return st;
}

}  // namespace mailers
