// One SMTP connection: a socket (and TLS stream), its buffers and its
// per-phase deadline, driving a `session` state machine. Every member runs
// on the connection's strand.
#pragma once

#include <atomic>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mailers/provider_transport.hpp>
#include <mailers/transports/smtp_transport.hpp>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "transports/smtp/reply.hpp"
#include "transports/smtp/session.hpp"

namespace mailers::detail::smtp {

/// What every connection of one transport shares; immutable after
/// construction, so connections read it from any thread.
struct client_config {
    explicit client_config(smtp_params p);

    smtp_params params;
    /// Only read after construction (SSL_new takes its own reference),
    /// which OpenSSL allows from several threads at once.
    mutable boost::asio::ssl::context tls;
    tls_mode tls_kind = tls_mode::required;
    auth_mode auth_kind = auth_mode::automatic;
    bool host_is_ip = false;
    std::uint16_t port = 0;
    std::string label;  ///< "smtp host:port", the prefix of every diagnostic message

    mutable std::atomic<std::uint64_t> connections_opened{0};
    mutable std::atomic<std::uint64_t> connection_failures{0};
};

/// How one send ended, plus what the pool needs to know.
struct send_result {
    error_code ec;
    send_outcome outcome;
    /// The failure happened on a reused connection before the transaction
    /// got any reply: nothing can have been delivered, and a fresh
    /// connection will likely succeed.
    bool retry_on_fresh = false;
};

/// Where a connection finds a message to pipeline behind the one it is
/// sending (RFC 2920 section 3.1).
class next_message_source {
public:
    /// Called at most once per send, on the connection's strand, just before
    /// the content is written, when the server offers PIPELINING. Returns a
    /// message the caller promises to pass to the connection's very next
    /// send(), or null.
    virtual const outbound* take_next() = 0;

protected:
    ~next_message_source() = default;
};

class connection : public std::enable_shared_from_this<connection> {
public:
    using clock = std::chrono::steady_clock;

    connection(boost::asio::any_io_executor strand, const client_config& cfg);
    ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    /// One send, opening (or replacing) the session as needed. With `next`,
    /// the connection may take the following message from it and write its
    /// MAIL, RCPT and DATA right behind this message's content, saving a
    /// round trip; that message must be the next one sent here. When this
    /// message's transaction closes the session, the taken one has had no
    /// reply and nothing of it was delivered: its send opens a fresh session.
    boost::asio::awaitable<send_result> send(const outbound& out,
                                             next_message_source* next = nullptr);

    /// Opens a session (greeting, EHLO, STARTTLS and AUTH as configured)
    /// and QUITs it, sending no message. On success the outcome's message
    /// says what the session had (TLS, the AUTH mechanism).
    boost::asio::awaitable<send_result> check();

    /// Ends the session politely (QUIT) when it is usable, then closes.
    boost::asio::awaitable<void> quit();

    /// Closes the socket at once.
    void close() noexcept;

    bool is_open() const noexcept { return open_; }
    /// True once the end of a message's data may have reached the server
    /// and its reply is not yet read: an outcome unknown if the connection
    /// is lost.
    bool content_sent() const noexcept { return session_ && session_->content_sent(); }

private:
    enum class io_status { ok, failed, timed_out, malformed };

    /// A message made ready for the wire: envelope checked and converted,
    /// content rendered and dot-stuffed. Slots never move, so the views in
    /// `tx` and `content` stay valid.
    struct prepared {
        std::string from;
        std::vector<std::string> rcpts;
        std::string rendered;
        std::string stuffed;
        std::string_view content;
        std::string_view content_end;
        transaction tx;
    };

    boost::asio::awaitable<std::optional<send_result>> open();
    /// Fails (nothing written) when the message cannot go out on this session.
    std::optional<send_result> prepare(const outbound& out, prepared& m);
    boost::asio::awaitable<send_result> transact(const outbound& out, next_message_source* next);
    /// Runs the current slot's transaction from `first` to its end, offering
    /// `next` the chance to pipeline a message behind it.
    boost::asio::awaitable<send_result> run_transaction(step first, next_message_source* next);
    void queue_next(next_message_source* source);
    boost::asio::awaitable<bool> still_usable();
    /// Runs the machine until it is ready (nothing) or the connection had to
    /// close (why, with the connection closed). `next` is asked at most once,
    /// when the content is about to be written.
    boost::asio::awaitable<std::optional<send_result>> drive(step s,
                                                             next_message_source* next = nullptr);
    boost::asio::awaitable<send_result> tls_handshake();
    // Logs client commands at trace level, without their final CRLF.
    void trace_client(std::string_view prefix, std::string_view commands) const;
    boost::asio::awaitable<io_status> write_commands();
    boost::asio::awaitable<io_status> write_content();
    boost::asio::awaitable<io_status> write_all(const boost::asio::const_buffer* bufs,
                                                std::size_t count, std::size_t* written = nullptr);
    /// A write that carries the end of data, which ends `end` octets into it.
    boost::asio::awaitable<io_status> write_end(const boost::asio::const_buffer* bufs,
                                                std::size_t count, std::size_t end);
    boost::asio::awaitable<io_status> read_reply();
    boost::asio::awaitable<std::tuple<error_code, secret>> fetch_token();

    send_result io_failure(io_status st, std::string_view what) const;
    send_result fail(error_code ec, std::string message) const;
    send_result from_session() const;
    std::chrono::milliseconds timeout_for(smtp_phase p) const noexcept;
    void set_deadline(std::chrono::milliseconds d);
    void clear_deadline() noexcept;
    void on_watchdog(const error_code& ec);
    boost::asio::ip::tcp::socket& socket() noexcept;
    void log_reply() const;

    boost::asio::any_io_executor ex_;
    const client_config& cfg_;
    boost::asio::ip::tcp::socket sock_;
    std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> tls_;
    std::optional<boost::asio::ip::tcp::resolver> resolver_;
    std::optional<session> session_;

    boost::asio::steady_timer watchdog_;
    clock::time_point deadline_ = clock::time_point::max();
    bool watchdog_armed_ = false;
    bool timed_out_ = false;

    bool open_ = false;
    std::size_t messages_ = 0;
    clock::time_point idle_since_{};
    error_code last_io_error_;
    std::string malformed_;  // the start of a reply that is not SMTP, for the message

    std::string helo_;
    std::string token_;

    std::vector<char> rbuf_;
    std::size_t rstart_ = 0;
    std::size_t rend_ = 0;
    reply reply_;

    // The current message and the one pipelined behind it; reused across
    // sends so a connection settles into not allocating for its buffers.
    prepared slots_[2];
    int current_ = 0;

    const outbound* queued_ = nullptr;           // taken for pipelining, commands maybe written
    std::optional<send_result> queued_failure_;  // it could not be prepared
};

}  // namespace mailers::detail::smtp
