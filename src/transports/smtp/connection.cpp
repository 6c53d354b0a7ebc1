#include "transports/smtp/connection.hpp"

#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cassert>
#include <cstring>
#include <mailers/address.hpp>
#include <mailers/mime.hpp>
#include <utility>

#include "mime/raw.hpp"

namespace mailers::detail::smtp {
namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr auto tok = asio::as_tuple(asio::use_awaitable);

// Reads ask the kernel for at least this much room.
constexpr std::size_t read_room = 4096;
// RFC 5321's "data block": the unit the data_block timeout applies to.
constexpr std::size_t content_block = 256 * 1024;
// QUIT is a courtesy; a server slow to answer it is not waited for.
constexpr std::chrono::milliseconds quit_limit = std::chrono::seconds(5);

tls_mode to_tls_mode(smtp_tls t) noexcept {
    switch (t) {
        case smtp_tls::required:
            return tls_mode::required;
        case smtp_tls::opportunistic:
            return tls_mode::opportunistic;
        case smtp_tls::none:
            return tls_mode::none;
        case smtp_tls::implicit:
            return tls_mode::implicit;
    }
    return tls_mode::required;
}

auth_mode to_auth_mode(smtp_auth a) noexcept {
    switch (a) {
        case smtp_auth::automatic:
            return auth_mode::automatic;
        case smtp_auth::none:
            return auth_mode::none;
        case smtp_auth::plain:
            return auth_mode::plain;
        case smtp_auth::login:
            return auth_mode::login;
        case smtp_auth::xoauth2:
            return auth_mode::xoauth2;
    }
    return auth_mode::automatic;
}

void wipe(std::string& s) noexcept {
    volatile char* p = s.data();
    for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
    s.clear();
}

// What a send fails with when the XOAUTH2 token callback does: the callback
// runs before connecting, so whatever its error says, nothing of the message
// was written. A transport_errc keeps its meaning (a refused grant is an
// authentication failure), except that an unknown outcome of the token
// request is not the message's; any other code is a connection failure.
error_code token_failure(const error_code& ec) noexcept {
    if (!ec) return make_error_code(transport_errc::configuration);
    if (ec.category() == transport_category() && classify(ec) != failure::unknown_outcome)
        return ec;
    return make_error_code(transport_errc::connection_failed);
}

std::string millis(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
    return std::to_string(d.count()) + " ms";
}

}  // namespace

client_config::client_config(smtp_params p)
    : params(std::move(p)), tls(asio::ssl::context::tls_client) {
    tls_kind = to_tls_mode(params.tls);
    auth_kind = to_auth_mode(params.auth);
    port = params.port != 0 ? params.port : (tls_kind == tls_mode::implicit ? 465 : 587);
    error_code ec;
    asio::ip::make_address(params.host, ec);
    host_is_ip = !ec;
    label = "smtp ";
    label += params.host.find(':') != std::string::npos ? "[" + params.host + "]" : params.host;
    label += ':';
    label += std::to_string(port);

    SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
    if (params.verify_peer) {
        if (!params.ca_file.empty())
            tls.load_verify_file(params.ca_file, ec);
        else
            tls.set_default_verify_paths(ec);
        if (ec)
            throw exception(
                make_error_code(errc::invalid_argument),
                "smtp: cannot load the CA certificates" +
                    (params.ca_file.empty() ? std::string(" of the system")
                                            : " from ca_file '" + params.ca_file + "'") +
                    ": " + ec.message());
        tls.set_verify_mode(asio::ssl::verify_peer);
    } else {
        tls.set_verify_mode(asio::ssl::verify_none);
    }
}

connection::connection(asio::any_io_executor strand, const client_config& cfg)
    : ex_(std::move(strand)), cfg_(cfg), sock_(ex_), watchdog_(ex_), rbuf_(16 * 1024) {}

connection::~connection() {
    close();
}

tcp::socket& connection::socket() noexcept {
    return tls_ ? tls_->next_layer() : sock_;
}

void connection::close() noexcept {
    error_code ignored;
    if (tls_) {
        tls_->next_layer().close(ignored);
        tls_.reset();
    }
    sock_.close(ignored);
    if (resolver_) resolver_->cancel();
    open_ = false;
    session_.reset();
    rstart_ = rend_ = 0;
    wipe(token_);
    clear_deadline();
}

std::chrono::milliseconds connection::timeout_for(smtp_phase p) const noexcept {
    const auto& t = cfg_.params.timeouts;
    switch (p) {
        case smtp_phase::connect:
            return t.connect;
        case smtp_phase::greeting:
            return t.greeting;
        case smtp_phase::mail:
            return t.mail;
        case smtp_phase::rcpt:
            return t.rcpt;
        case smtp_phase::data:
            return t.data_init;
        case smtp_phase::data_end:
            return t.data_end;
        case smtp_phase::quit:
            return std::min(t.command, quit_limit);
        default:
            return t.command;
    }
}

// A single timer guards every phase. Moving a deadline later only stores
// it (the timer notices when it fires early and sleeps again), so the
// common case costs no timer operation; moving it earlier re-arms.
void connection::set_deadline(std::chrono::milliseconds d) {
    deadline_ = clock::now() + d;
    timed_out_ = false;
    if (!watchdog_armed_) {
        watchdog_armed_ = true;
        watchdog_.expires_at(deadline_);
        watchdog_.async_wait([w = weak_from_this()](const error_code& ec) {
            if (auto self = w.lock()) self->on_watchdog(ec);
        });
    } else if (deadline_ < watchdog_.expiry()) {
        watchdog_.expires_at(deadline_);  // the cancelled wait re-arms in on_watchdog
    }
}

void connection::clear_deadline() noexcept {
    deadline_ = clock::time_point::max();
}

void connection::on_watchdog(const error_code&) {
    if (deadline_ != clock::time_point::max() && clock::now() >= deadline_) {
        watchdog_armed_ = false;
        timed_out_ = true;
        // Closing the socket makes the pending operation complete at once.
        error_code ignored;
        socket().close(ignored);
        if (resolver_) resolver_->cancel();
        return;
    }
    watchdog_.expires_at(deadline_);
    watchdog_.async_wait([w = weak_from_this()](const error_code& ec) {
        if (auto self = w.lock()) self->on_watchdog(ec);
    });
}

send_result connection::fail(error_code ec, std::string message) const {
    send_result r;
    r.ec = ec;
    r.outcome.diag.message = cfg_.label + ": " + message;
    return r;
}

send_result connection::from_session() const {
    send_result r;
    const auto& s = session_->result();
    r.ec = s.ec;
    r.outcome.diag = s.diag;
    if (!r.outcome.diag.message.empty())
        r.outcome.diag.message = cfg_.label + ": " + r.outcome.diag.message;
    r.outcome.provider_message_id = s.provider_message_id;
    return r;
}

send_result connection::io_failure(io_status st, std::string_view what) const {
    const smtp_phase phase = session_ ? session_->phase() : smtp_phase::connect;
    // The QUIT that follows a refused set-up step is a courtesy: the
    // refusal is what the send learnt, whatever becomes of the QUIT.
    if (phase == smtp_phase::quit && session_->result().ec) return from_session();
    send_result r;
    std::string msg;
    if (session_ && session_->content_sent()) {
        r.ec = make_error_code(transport_errc::outcome_unknown);
        // Still in the DATA phase: the write that carried the end of data failed.
        const bool writing = phase != smtp_phase::data_end;
        if (st == io_status::timed_out)
            msg = "timed out after " +
                  millis(writing ? cfg_.params.timeouts.data_block : timeout_for(phase)) + " " +
                  std::string(what);
        else if (st == io_status::malformed)
            msg = "the server sent something that is not an SMTP reply " + std::string(what) +
                  " (\"" + malformed_ + "\")";
        else
            msg = "connection lost " + std::string(what) + ": " + last_io_error_.message();
        msg +=
            "; the end of data may have reached the server, so the message may have been "
            "delivered and must not be sent again";
    } else if (st == io_status::timed_out) {
        r.ec = make_error_code(transport_errc::timeout_before_send);
        msg = "timed out after " + millis(timeout_for(phase)) + " " + std::string(what) +
              " (nothing was delivered)";
    } else if (st == io_status::malformed) {
        // Not a lost connection: the peer answers, in another protocol (an
        // HTTP server on the port) or in noise. The end of data was not
        // sent, so nothing of the message can have been accepted.
        r.ec = make_error_code(transport_errc::protocol_error);
        msg = "the server does not speak SMTP: it sent \"" + malformed_ + "\" " +
              std::string(what) + " (nothing was delivered)";
    } else {
        r.ec = make_error_code(transport_errc::connection_failed);
        msg = "connection lost " + std::string(what) + ": " + last_io_error_.message() +
              " (nothing was delivered)";
        r.retry_on_fresh = session_ && session_->established() && !session_->transaction_replied();
    }
    r.outcome.diag.message = cfg_.label + ": " + msg;
    return r;
}

void connection::log_reply() const {
    if (!cfg_.params.log.enabled(log_level::trace)) return;
    cfg_.params.log.log(log_level::trace, cfg_.label + " S: " + reply_.verbatim());
}

asio::awaitable<connection::io_status> connection::read_reply() {
    for (;;) {
        if (rend_ > rstart_) {
            std::size_t consumed = 0;
            const auto st =
                parse_reply({rbuf_.data() + rstart_, rend_ - rstart_}, reply_, consumed);
            if (st == parse_status::complete) {
                rstart_ += consumed;
                if (rstart_ == rend_) rstart_ = rend_ = 0;
                log_reply();
                co_return io_status::ok;
            }
            if (st == parse_status::malformed) {
                malformed_ = printable_excerpt({rbuf_.data() + rstart_, rend_ - rstart_});
                co_return io_status::malformed;
            }
        }
        if (rstart_ > 0) {
            std::memmove(rbuf_.data(), rbuf_.data() + rstart_, rend_ - rstart_);
            rend_ -= rstart_;
            rstart_ = 0;
        }
        // parse_reply() refuses replies beyond max_reply_size, which bounds
        // this growth.
        if (rbuf_.size() - rend_ < read_room) rbuf_.resize(rbuf_.size() * 2);
        const auto buf = asio::buffer(rbuf_.data() + rend_, rbuf_.size() - rend_);
        error_code ec;
        std::size_t n = 0;
        if (tls_)
            std::tie(ec, n) = co_await tls_->async_read_some(buf, tok);
        else
            std::tie(ec, n) = co_await sock_.async_read_some(buf, tok);
        if (ec) {
            last_io_error_ = ec;
            co_return timed_out_ ? io_status::timed_out : io_status::failed;
        }
        rend_ += n;
    }
}

asio::awaitable<connection::io_status> connection::write_all(const asio::const_buffer* bufs,
                                                             std::size_t count,
                                                             std::size_t* written) {
    const std::array<asio::const_buffer, 3> seq{bufs[0], count > 1 ? bufs[1] : asio::const_buffer{},
                                                count > 2 ? bufs[2] : asio::const_buffer{}};
    error_code ec;
    std::size_t n = 0;
    if (tls_)
        std::tie(ec, n) = co_await asio::async_write(*tls_, seq, tok);
    else
        std::tie(ec, n) = co_await asio::async_write(sock_, seq, tok);
    if (written != nullptr) *written = n;
    if (ec) {
        last_io_error_ = ec;
        co_return timed_out_ ? io_status::timed_out : io_status::failed;
    }
    co_return io_status::ok;
}

void connection::trace_client(std::string_view prefix, std::string_view commands) const {
    if (!cfg_.params.log.enabled(log_level::trace)) return;
    if (commands.ends_with("\r\n")) commands.remove_suffix(2);
    cfg_.params.log.log(log_level::trace,
                        cfg_.label + " C: " + std::string(prefix) + std::string(commands));
}

asio::awaitable<connection::io_status> connection::write_commands() {
    set_deadline(timeout_for(session_->phase()));
    const std::string& out = session_->out();
    if (session_->phase() != smtp_phase::auth) trace_client("", out);
    const asio::const_buffer b = asio::buffer(out);
    co_return co_await write_all(&b, 1);
}

asio::awaitable<connection::io_status> connection::write_content() {
    // The next transaction's commands, when one is pipelined, go in the same
    // write as the end of this message.
    const std::string& next = session_->next_out();
    if (!next.empty()) trace_client("(after the content) ", next);
    const std::string_view content = slots_[current_].content;
    const std::string_view content_end = slots_[current_].content_end;
    const std::size_t total = content.size() + content_end.size();
    if (total <= content_block) {
        set_deadline(cfg_.params.timeouts.data_block);
        const std::array<asio::const_buffer, 3> b{asio::buffer(content), asio::buffer(content_end),
                                                  asio::buffer(next)};
        co_return co_await write_end(b.data(), 3, total);
    }
    for (std::size_t pos = 0; pos < content.size(); pos += content_block) {
        set_deadline(cfg_.params.timeouts.data_block);
        const auto chunk = content.substr(pos, content_block);
        const asio::const_buffer b = asio::buffer(chunk);
        // Dot-stuffed content carries its own end of data, in its last chunk.
        const bool last = content_end.empty() && pos + chunk.size() == content.size();
        const auto st = last ? co_await write_end(&b, 1, chunk.size()) : co_await write_all(&b, 1);
        if (st != io_status::ok) co_return st;
    }
    if (content_end.empty() && next.empty()) co_return io_status::ok;
    set_deadline(cfg_.params.timeouts.data_block);
    const std::array<asio::const_buffer, 2> b{asio::buffer(content_end), asio::buffer(next)};
    if (content_end.empty()) co_return co_await write_all(b.data(), 2);
    co_return co_await write_end(b.data(), 2, content_end.size());
}

asio::awaitable<connection::io_status> connection::write_end(const asio::const_buffer* bufs,
                                                             std::size_t count, std::size_t end) {
    std::size_t written = 0;
    const auto st = co_await write_all(bufs, count, &written);
    // A write that fails after the end of data reached the socket (while the
    // pipelined commands behind it were going out, say) may still deliver
    // the message. A plain socket's count says whether it got that far; a
    // failed TLS write counts nothing, although records holding the end may
    // have left before the failure, so it is taken as having got there.
    if (st != io_status::ok && (tls_ || written >= end)) session_->end_of_data_may_have_left();
    co_return st;
}

asio::awaitable<send_result> connection::tls_handshake() {
    if (rend_ != rstart_) {
        // Octets that arrived with the STARTTLS reply were sent before the
        // handshake, in clear, and would be read as if protected: the classic
        // STARTTLS command injection (CVE-2011-0411).
        co_return fail(make_error_code(transport_errc::connection_failed),
                       "the server sent data after its STARTTLS reply; refusing to continue");
    }
    tls_.emplace(std::move(sock_), cfg_.tls);
    SSL* ssl = tls_->native_handle();
    const std::string& host = cfg_.params.host;
    // RFC 6066 forbids IP literals in SNI.
    if (!cfg_.host_is_ip) SSL_set_tlsext_host_name(ssl, host.c_str());
    if (cfg_.params.verify_peer) {
        X509_VERIFY_PARAM* vp = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (cfg_.host_is_ip)
            X509_VERIFY_PARAM_set1_ip_asc(vp, host.c_str());
        else
            X509_VERIFY_PARAM_set1_host(vp, host.c_str(), host.size());
    }
    set_deadline(cfg_.params.timeouts.command);
    auto [ec] = co_await tls_->async_handshake(asio::ssl::stream_base::client, tok);
    if (!ec) co_return send_result{};
    last_io_error_ = ec;
    const long verify = SSL_get_verify_result(ssl);
    if (cfg_.params.verify_peer && verify != X509_V_OK)
        co_return fail(make_error_code(transport_errc::tls_verification_failed),
                       std::string("the server's certificate does not verify: ") +
                           X509_verify_cert_error_string(verify));
    if (timed_out_) co_return io_failure(io_status::timed_out, "during the TLS handshake");
    co_return fail(make_error_code(transport_errc::connection_failed),
                   "TLS handshake failed: " + ec.message());
}

asio::awaitable<std::optional<send_result>> connection::drive(step s, next_message_source* next) {
    for (;;) {
        switch (s) {
            case step::ready:
                clear_deadline();
                co_return std::nullopt;
            case step::close: {
                auto r = from_session();
                close();
                co_return r;
            }
            case step::write_read:
            case step::read: {
                if (s == step::write_read) {
                    if (const auto st = co_await write_commands(); st != io_status::ok) {
                        auto r = io_failure(st, std::string("sending ") +
                                                    std::string(phase_name(session_->phase())));
                        close();
                        co_return r;
                    }
                }
                set_deadline(timeout_for(session_->phase()));
                if (const auto st = co_await read_reply(); st != io_status::ok) {
                    auto r = io_failure(st, std::string("waiting for the reply to ") +
                                                std::string(phase_name(session_->phase())));
                    close();
                    co_return r;
                }
                s = session_->on_reply(reply_);
                break;
            }
            case step::tls_handshake: {
                auto r = co_await tls_handshake();
                if (r.ec) {
                    close();
                    co_return r;
                }
                s = session_->on_tls_established();
                break;
            }
            case step::write_data: {
                queue_next(std::exchange(next, nullptr));
                if (const auto st = co_await write_content(); st != io_status::ok) {
                    auto r = io_failure(st, "sending the message content");
                    close();
                    co_return r;
                }
                s = session_->on_data_written();
                break;
            }
        }
    }
}

asio::awaitable<std::tuple<error_code, secret>> connection::fetch_token() {
    co_return co_await asio::async_initiate<decltype(tok), void(error_code, secret)>(
        [this](auto handler) {
            using handler_type = decltype(handler);
            auto h = std::make_shared<handler_type>(std::move(handler));
            auto once = std::make_shared<std::atomic<bool>>(false);
            auto done = [h, once, ex = ex_](error_code ec, secret s) {
                if (once->exchange(true)) return;
                asio::post(
                    ex, [h, ec, s = std::move(s)]() mutable { std::move (*h)(ec, std::move(s)); });
            };
            try {
                cfg_.params.token_callback(done);
            } catch (const std::exception&) {
                done(make_error_code(transport_errc::configuration), secret{});
            }
        },
        tok);
}

asio::awaitable<std::optional<send_result>> connection::open() {
    close();
    sock_ = tcp::socket(ex_);
    const auto& p = cfg_.params;

    const bool wants_token =
        cfg_.auth_kind == auth_mode::xoauth2 ||
        (cfg_.auth_kind == auth_mode::automatic && (p.token_callback || !p.oauth2_token.empty()));
    if (wants_token) {
        if (p.token_callback) {
            auto [ec, token] = co_await fetch_token();
            if (ec || token.empty()) {
                co_return fail(token_failure(ec),
                               ec ? "the XOAUTH2 token callback failed: " + ec.message() +
                                        " (nothing was sent)"
                                  : std::string("the XOAUTH2 token callback returned no token"));
            }
            token_ = token.reveal();
        } else {
            token_ = p.oauth2_token.reveal();
        }
    }

    set_deadline(p.timeouts.connect);
    std::vector<tcp::endpoint> endpoints;
    if (cfg_.host_is_ip) {
        endpoints.emplace_back(asio::ip::make_address(p.host), cfg_.port);
    } else {
        resolver_.emplace(ex_);
        auto [ec, results] =
            co_await resolver_->async_resolve(p.host, std::to_string(cfg_.port), tok);
        resolver_.reset();
        if (ec) {
            if (timed_out_) co_return io_failure(io_status::timed_out, "resolving the host name");
            co_return fail(make_error_code(transport_errc::connection_failed),
                           "cannot resolve the host name: " + ec.message());
        }
        for (const auto& e : results) endpoints.push_back(e.endpoint());
    }
    error_code cec = asio::error::host_not_found;
    for (const auto& ep : endpoints) {
        error_code ignored;
        sock_.close(ignored);
        sock_.open(ep.protocol(), cec);
        if (cec) continue;
        std::tie(cec) = co_await sock_.async_connect(ep, tok);
        if (!cec || timed_out_) break;
    }
    if (cec || timed_out_) {
        last_io_error_ = cec;
        auto r = timed_out_ ? io_failure(io_status::timed_out, "connecting")
                            : fail(make_error_code(transport_errc::connection_failed),
                                   "cannot connect: " + cec.message());
        close();
        cfg_.connection_failures.fetch_add(1, std::memory_order_relaxed);
        co_return r;
    }
    error_code ignored;
    sock_.set_option(tcp::no_delay(true), ignored);
    open_ = true;

    if (!p.helo_name.empty()) {
        helo_ = p.helo_name;
    } else {
        // RFC 5321 section 4.1.3 address literal of our side of the connection.
        const auto local = sock_.local_endpoint(ignored).address();
        helo_ = local.is_v6() ? "[IPv6:" + local.to_string() + "]" : "[" + local.to_string() + "]";
    }

    if (cfg_.tls_kind == tls_mode::implicit) {
        auto r = co_await tls_handshake();
        if (r.ec) {
            close();
            cfg_.connection_failures.fetch_add(1, std::memory_order_relaxed);
            co_return r;
        }
    }

    session_config sc;
    sc.tls = cfg_.tls_kind;
    sc.auth = cfg_.auth_kind;
    sc.helo = helo_;
    sc.user = p.username;
    sc.password = p.password.reveal();
    sc.token = token_;
    sc.pipelining = p.pipelining;
    session_.emplace(sc, cfg_.tls_kind == tls_mode::implicit);

    if (auto r = co_await drive(session_->start())) {
        cfg_.connection_failures.fetch_add(1, std::memory_order_relaxed);
        co_return r;
    }
    messages_ = 0;
    idle_since_ = clock::now();
    cfg_.connections_opened.fetch_add(1, std::memory_order_relaxed);
    if (p.log.enabled(log_level::debug)) {
        const auto& c = session_->caps();
        std::string line = cfg_.label + ": session open";
        line += session_->tls_active() ? ", TLS" : ", no TLS";
        if (!session_->auth_mechanism().empty())
            line += ", AUTH " + std::string(session_->auth_mechanism());
        if (c.pipelining) line += ", PIPELINING";
        if (c.eight_bit_mime) line += ", 8BITMIME";
        if (c.smtputf8) line += ", SMTPUTF8";
        if (c.size) line += ", SIZE " + std::to_string(c.size_limit);
        p.log.log(log_level::debug, line);
    }
    co_return std::nullopt;
}

asio::awaitable<bool> connection::still_usable() {
    if (!session_ || !session_->established()) co_return false;
    // Anything unread while idle is unsolicited (typically "421 idle
    // timeout" before a close): the session is over.
    if (rend_ != rstart_) co_return false;
    pollfd pfd{};
    pfd.fd = socket().native_handle();
    pfd.events = POLLIN | POLLRDHUP;
    if (::poll(&pfd, 1, 0) < 0) co_return false;
    if (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) co_return false;
    const bool readable = (pfd.revents & POLLIN) != 0;
    if (!readable && clock::now() - idle_since_ < cfg_.params.check_idle_after) co_return true;
    const auto r = co_await drive(session_->start_noop());
    co_return !r.has_value();
}

asio::awaitable<send_result> connection::check() {
    if (auto r = co_await open()) co_return std::move(*r);
    std::string what = cfg_.label + ": session open";
    what += session_->tls_active() ? ", TLS" : ", no TLS";
    what += session_->auth_mechanism().empty()
                ? ", no AUTH"
                : ", AUTH " + std::string(session_->auth_mechanism()) + " accepted";
    co_await quit();
    send_result ok;
    ok.outcome.diag.message = std::move(what);
    co_return ok;
}

asio::awaitable<void> connection::quit() {
    if (open_ && session_ && session_->established()) co_await drive(session_->start_quit());
    close();
}

std::optional<send_result> connection::prepare(const outbound& out, prepared& m) {
    const envelope* env = &out.env;
    envelope derived;
    if (out.env.rcpt_to.empty()) {
        derived = envelope::from_message(out.msg);
        env = &derived;
    }

    // Envelope addresses go into command lines: anything that is not a valid
    // addr-spec (a CR or LF above all) is refused before it reaches the wire.
    bool needs_utf8 = false;
    std::string bad;
    const auto convert = [&](std::string_view addr, std::string& dst) {
        if (!is_valid_addr_spec(addr)) {
            bad = addr;
            return false;
        }
        const auto at = addr.rfind('@');
        const auto local = addr.substr(0, at);
        const auto domain = addr.substr(at + 1);
        if (!is_ascii(local)) {
            needs_utf8 = true;
            dst = addr;
        } else if (!is_ascii(domain)) {
            auto ascii = domain_to_ascii(domain);
            if (!ascii) {
                bad = addr;
                return false;
            }
            dst.assign(local);
            dst.push_back('@');
            dst.append(*ascii);
        } else {
            dst = addr;
        }
        return true;
    };
    const auto invalid = [&] {
        std::string shown;
        for (char c : bad) shown += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
        return fail(make_error_code(errc::invalid_address),
                    "the envelope address '" + shown + "' is not a valid address");
    };
    if (env->mail_from.empty())
        m.from.clear();
    else if (!convert(env->mail_from, m.from))
        return invalid();
    if (m.rcpts.size() < env->rcpt_to.size()) m.rcpts.resize(env->rcpt_to.size());
    for (std::size_t i = 0; i < env->rcpt_to.size(); ++i)
        if (!convert(env->rcpt_to[i], m.rcpts[i])) return invalid();
    if (env->rcpt_to.empty())
        return fail(make_error_code(errc::invalid_argument), "the envelope has no recipient");

    const auto& caps = session_->caps();
    render_options opts = cfg_.params.render;
    opts.allow_8bit = caps.eight_bit_mime;
    if (out.raw.empty()) {
        auto rendered = render_message(out.msg, opts);
        if (!rendered)
            return fail(rendered.error(),
                        "the message does not render: " + rendered.error().message());
        m.rendered = std::move(*rendered);
    } else {
        std::string why;
        if (auto ec = mime::check_raw_lines(out.raw, why)) return fail(ec, why);
        m.rendered = out.raw;
    }
    const message_scan scan = scan_message(m.rendered);
    if (!out.raw.empty() && scan.body_8bit && !caps.eight_bit_mime)
        return fail(make_error_code(transport_errc::content_rejected),
                    "the raw message has 8-bit octets in its body and the server does not offer "
                    "8BITMIME; nothing was sent");
    needs_utf8 = needs_utf8 || scan.header_8bit;
    if (needs_utf8 && !caps.smtputf8)
        return fail(make_error_code(transport_errc::content_rejected),
                    "the message has a UTF-8 address, which needs SMTPUTF8 (RFC 6531), and "
                    "the server does not offer it");
    if (caps.size && caps.size_limit != 0 && m.rendered.size() > caps.size_limit)
        return fail(make_error_code(transport_errc::content_rejected),
                    "the message is " + std::to_string(m.rendered.size()) +
                        " octets and the server accepts at most " +
                        std::to_string(caps.size_limit) + " (SIZE); nothing was sent");

    if (scan.needs_stuffing) {
        m.stuffed.clear();
        append_dot_stuffed(m.stuffed, m.rendered);
        m.content = m.stuffed;
        m.content_end = {};
    } else {
        m.content = m.rendered;
        m.content_end = end_of_data(scan.ends_with_crlf);
    }

    m.tx = {};
    m.tx.mail_from = m.from;
    m.tx.rcpt_to = std::span<const std::string>(m.rcpts.data(), env->rcpt_to.size());
    m.tx.params.size = caps.size ? m.rendered.size() : 0;
    m.tx.params.body_8bit = scan.body_8bit && caps.eight_bit_mime;
    m.tx.params.smtputf8 = needs_utf8;
    return std::nullopt;
}

void connection::queue_next(next_message_source* source) {
    if (source == nullptr || !session_->can_queue_next()) return;
    // The queued message must still fit in this session.
    const auto limit = cfg_.params.max_messages_per_connection;
    if (limit != 0 && messages_ + 2 > limit) return;
    queued_ = source->take_next();
    if (queued_ == nullptr) return;
    prepared& m = slots_[1 - current_];
    if (auto failed = prepare(*queued_, m)) {
        queued_failure_.emplace(std::move(*failed));
        return;
    }
    session_->queue_next(m.tx);
}

asio::awaitable<send_result> connection::run_transaction(step first, next_message_source* next) {
    auto failed = co_await drive(first, next);
    ++messages_;
    if (failed) co_return std::move(*failed);
    idle_since_ = clock::now();
    co_return from_session();
}

asio::awaitable<send_result> connection::transact(const outbound& out, next_message_source* next) {
    if (auto failed = prepare(out, slots_[current_])) co_return std::move(*failed);
    co_return co_await run_transaction(session_->start_transaction(slots_[current_].tx), next);
}

asio::awaitable<send_result> connection::send(const outbound& out, next_message_source* next) {
    bool replaced = false;
    const outbound* queued = std::exchange(queued_, nullptr);
    if (queued != nullptr) {
        // The caller's promise to take_next(): the message taken is the next
        // one sent, since its commands may already be on the wire.
        assert(queued == &out);
        if (queued_failure_) {
            auto r = std::move(*queued_failure_);
            queued_failure_.reset();
            co_return r;
        }
        if (open_ && session_ && session_->next_pending()) {
            current_ = 1 - current_;
            auto r = co_await run_transaction(session_->continue_next(), next);
            // A session that ended before answering any of the pipelined
            // commands delivered nothing: try once more on a fresh one.
            if (!r.retry_on_fresh) co_return r;
            replaced = true;
            close();
        }
        // Otherwise the previous transaction closed the session before the
        // queued commands got any reply: nothing of this message was
        // delivered, and it goes out the ordinary way.
    }
    for (;;) {
        bool reused = false;
        if (open_) {
            const auto limit = cfg_.params.max_messages_per_connection;
            if (limit != 0 && messages_ >= limit)
                co_await quit();
            else if (co_await still_usable())
                reused = true;
            else
                close();
        }
        if (!open_) {
            if (auto r = co_await open()) co_return std::move(*r);
        }
        auto r = co_await transact(out, next);
        if (r.retry_on_fresh && reused && !replaced) {
            replaced = true;
            continue;
        }
        co_return r;
    }
}

}  // namespace mailers::detail::smtp
