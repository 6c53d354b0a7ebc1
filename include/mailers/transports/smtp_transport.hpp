// SMTP submission: STARTTLS or implicit TLS, AUTH PLAIN / LOGIN / XOAUTH2,
// PIPELINING, SIZE, 8BITMIME, SMTPUTF8, and a pool of reused connections.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/result.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mailers/config.hpp>
#include <mailers/dsn.hpp>
#include <mailers/error.hpp>
#include <mailers/logger.hpp>
#include <mailers/mime.hpp>
#include <mailers/provider_transport.hpp>
#include <memory>
#include <string>
#include <string_view>

namespace mailers {

/// How the connection is protected.
enum class smtp_tls {
    /// STARTTLS, and refuse to send through a server that does not offer
    /// it (nothing is sent; the send fails with `transport_errc::configuration`).
    required,
    /// STARTTLS when the server offers it, else clear text. Credentials are
    /// never sent in clear text in this mode: a server that offers no
    /// STARTTLS fails authenticated sends with `transport_errc::configuration`.
    opportunistic,
    /// Clear text only, never STARTTLS (local relays, tests).
    none,
    /// TLS from the first octet ("smtps", port 465).
    implicit,
};

/// The SASL mechanism for AUTH.
enum class smtp_auth {
    /// XOAUTH2 when a token (or token callback) is configured, else PLAIN
    /// when offered, else LOGIN; no AUTH when no credentials are configured.
    automatic,
    none,
    plain,
    login,
    xoauth2,
};

/// Per-phase time limits, each settable from a DSN (see
/// smtp_params_from_dsn). The defaults are RFC 5321 section 4.5.3.2's
/// minimum client timeouts; `connect` and `command` (EHLO, STARTTLS and the
/// TLS handshake, AUTH, RSET, NOOP, QUIT) have no RFC value. QUIT waits at
/// most 5 seconds, or `command` when shorter.
struct smtp_timeouts {
    std::chrono::milliseconds connect = std::chrono::seconds(30);  ///< name resolution + TCP
    std::chrono::milliseconds greeting = std::chrono::minutes(5);
    std::chrono::milliseconds command = std::chrono::minutes(5);
    std::chrono::milliseconds mail = std::chrono::minutes(5);
    std::chrono::milliseconds rcpt = std::chrono::minutes(5);
    std::chrono::milliseconds data_init = std::chrono::minutes(2);  ///< reply to DATA
    std::chrono::milliseconds data_block =
        std::chrono::minutes(3);  ///< each block of content written
    std::chrono::milliseconds data_end = std::chrono::minutes(10);  ///< reply to the final "."
};

/// Supplies an OAuth 2.0 access token for XOAUTH2. Called once per new
/// connection, from the transport's executor; it must call `done` exactly
/// once, from any thread, with the token or an error (which fails the send
/// with that error; use a `transport_errc` to choose its failure class).
using smtp_token_callback = std::function<void(std::function<void(error_code, secret)> done)>;

struct smtp_params {
    std::string host;        ///< name or IP address (IPv6 without brackets)
    std::uint16_t port = 0;  ///< 0: 465 for implicit TLS, else 587
    smtp_tls tls = smtp_tls::required;

    /// Verify the server's certificate chain and that it names `host`
    /// (DNS name or IP address). Turn off only for tests or a server you
    /// reach over a trusted network: anyone on the path can then read the
    /// credentials and the mail.
    bool verify_peer = true;
    /// PEM file of CA certificates to trust instead of the system store.
    std::string ca_file;

    smtp_auth auth = smtp_auth::automatic;
    std::string username;
    secret password;
    /// XOAUTH2 access token, when it does not change (a test, a long-lived
    /// token); `token_callback` takes precedence.
    secret oauth2_token;
    smtp_token_callback token_callback;

    /// The name sent with EHLO/HELO; empty: the local address of the
    /// connection as an address literal ("[192.0.2.1]"), which RFC 5321
    /// allows when the client has no meaningful host name.
    std::string helo_name;

    /// Connections this transport keeps open at the same time; sends beyond
    /// it wait for a free connection, in order. A transport holds one set of
    /// credentials for one server, so this is the per-mailbox limit when each
    /// mailbox has its own transport (two transports do not share a limit).
    std::size_t max_connections = 4;
    /// A connection is closed after this many messages and a fresh one
    /// opened (many providers cap messages per session); 0: no limit.
    std::size_t max_messages_per_connection = 100;
    /// Use PIPELINING when the server offers it (RFC 2920).
    bool pipelining = true;
    /// An idle connection is closed (with QUIT) after this long.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(30);
    /// A connection idle longer than this is checked with NOOP before reuse;
    /// one that fails the check is replaced without failing the send.
    std::chrono::milliseconds check_idle_after = std::chrono::seconds(5);
    smtp_timeouts timeouts;

    /// How messages are rendered (Message-ID domain, size limit). Whether
    /// 8-bit bodies are sent is decided per connection from 8BITMIME.
    render_options render;

    mailers::logger log;
};

/// Counters since construction, for tests and metrics.
struct smtp_stats {
    std::uint64_t connections_opened =
        0;  ///< sessions established (greeting, EHLO, TLS, AUTH done)
    std::uint64_t connection_failures = 0;
    std::uint64_t messages_accepted = 0;
    std::uint64_t messages_failed = 0;
    std::uint64_t connections_idle = 0;  ///< open and idle right now
    std::uint64_t connections_open = 0;  ///< open (or opening) right now
};

/// Sends through an SMTP server (submission: a provider's relay or a
/// mailbox's own server, e.g. smtp.gmail.com:587 with XOAUTH2).
///
/// Each send renders the message with `render_message`, takes a connection
/// from the pool (opening one when fewer than `max_connections` are open,
/// else waiting for one), and runs one mail transaction: MAIL, RCPT for each
/// envelope recipient and DATA, pipelined when the server offers
/// PIPELINING, the content dot-stuffed. An envelope with no recipients is
/// built from the message (`envelope::from_message`).
///
/// With PIPELINING, sends waiting for a connection are also pipelined across
/// messages (RFC 2920 section 3.1): the oldest waiting send's MAIL, RCPT and
/// DATA go out in the same write as the current message's final ".", so a
/// busy connection spends one round trip per message instead of two. The
/// outcome of each message is still its own: when the session ends after a
/// "." (a drop, a 421), the message behind it got no reply, nothing of it
/// was delivered, and it is sent on a fresh connection.
///
/// Completion:
/// - success: `provider_message_id` is the server's queue id when its reply
///   names one ("queued as X", Amazon SES "Ok X", Gmail), else empty;
///   `diag.provider_reply` holds the reply. When some recipients were
///   refused and others accepted the message went to the accepted ones, the
///   send succeeds, and `diag.message` lists the refused ones.
/// - a refusal: the reply classified by the table in
///   src/transports/reply_classification.cpp (e.g. 550 5.1.1 is
///   `transport_errc::recipient_rejected`, 421 4.7.0 `rate_limited`, 550
///   5.4.5 `sender_quota_exhausted`), with `diag.provider_reply`,
///   `diag.status` and `diag.enhanced_status` set. When every recipient is
///   refused, the first refusal decides.
/// - the connection lost or timed out before the end of the content was
///   written: `transport_errc::connection_failed` or `timeout_before_send`
///   (transient; nothing was delivered). A reused connection that turns out
///   to be closed before the transaction got any reply is replaced once,
///   silently.
/// - the server answers with something that is not an SMTP reply (an HTTP
///   server on the port, binary noise) before the end of the content was
///   written: `transport_errc::protocol_error` (transient; nothing was
///   delivered), with the start of what it sent in `diag.message`.
/// - lost, timed out or answered with something that is not an SMTP reply
///   after the final "." was written: `transport_errc::outcome_unknown`. The
///   server may have accepted the message; never send it again.
/// - a certificate that does not verify or does not name the host:
///   `transport_errc::tls_verification_failed`.
/// - STARTTLS required but not offered, credentials with no TLS, an AUTH
///   mechanism the server does not offer: `transport_errc::configuration`.
/// - the message is larger than the server's SIZE, or needs SMTPUTF8 (a
///   UTF-8 local part) that the server does not offer:
///   `transport_errc::content_rejected`, before MAIL is sent.
/// - a message that does not render: its `errc` (e.g. `errc::invalid_address`).
/// `diag.message` names the server, the phase and what happened; it never
/// holds credentials. When the server refuses a set-up step (the greeting,
/// EHLO, STARTTLS, AUTH) or the session cannot go on (STARTTLS required but
/// not offered, credentials without TLS, no usable AUTH mechanism), the
/// connection ends with QUIT, unless the server said 421, before the send
/// completes; the refusal is the send's outcome whatever QUIT gets.
///
/// Connection reuse: a connection goes back to the pool before the send's
/// handler runs, so a send started from the handler (or by a coroutine that
/// awaited the previous send) goes out on the same connection.
///
/// Executor: connections run on strands of the executor given to the
/// constructor. The handler runs on its associated executor, else on that
/// executor; never inside `async_send`.
///
/// Cancellation: none per operation. Destroying the transport closes idle
/// connections and fails sends still waiting for a connection with
/// `errc::operation_aborted`; sends already on a connection (including one
/// pipelined behind the current message) finish.
///
/// Thread safety: `async_send` and `stats` may be called concurrently from
/// any thread.
///
/// Lifetime: the transport must outlive the operations started on it.
/// Connections share its state, so an operation in flight when it is
/// destroyed still completes, safely.
///
/// Pre-rendered messages (`outbound::raw`) are sent as given, dot-stuffed.
/// A CR or LF outside a CRLF pair, or a NUL, refuses the send with
/// `errc::invalid_argument`, and an 8-bit body to a server without
/// 8BITMIME with `transport_errc::content_rejected`, both before MAIL.
class MAILERS_API smtp_transport final : public provider_transport {
public:
    /// Throws `mailers::exception` (`errc::invalid_argument`) when the
    /// parameters are inconsistent or the CA file cannot be read.
    smtp_transport(boost::asio::any_io_executor ex, smtp_params params);
    ~smtp_transport() override;

    std::string_view name() const noexcept override { return "smtp"; }

    smtp_stats stats() const;

    const smtp_params& params() const noexcept;

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;
    /// Opens a session of its own (greeting, EHLO, STARTTLS when
    /// configured, AUTH when configured) and QUITs: the failures are a
    /// send's set-up failures (535 is `transport_errc::authentication_failed`).
    void do_check(any_check_handler handler) override;

private:
    struct pool;
    std::shared_ptr<pool> pool_;
};

/// Reads SMTP parameters from a DSN:
///
///     smtp://user:pass@host:587?tls=required|opportunistic|none&verify=true|false
///         &ca_file=/path&auth=plain|login|xoauth2|none&helo=name
///         &max_connections=N&max_messages=N&pipelining=true|false&token=...
///         &timeout=D&connect_timeout=D&greeting_timeout=D&command_timeout=D
///         &mail_timeout=D&rcpt_timeout=D&data_init_timeout=D
///         &data_block_timeout=D&data_end_timeout=D&idle_timeout=D
///     smtps://user:pass@host:465   (implicit TLS; tls= may only say implicit)
///
/// Durations D are read by parse_dsn_duration(): "1500ms", "30s", "5m", or a
/// bare number of seconds ("30"); zero, fractions, other units and more than
/// 24 hours are refused. `timeout` sets every `smtp_timeouts` field; an
/// option named after one field (`connect_timeout` sets `connect`,
/// `data_init_timeout` sets `data_init`, ...) overrides it, wherever it is
/// written. `idle_timeout` sets `smtp_params::idle_timeout`, which `timeout`
/// leaves alone.
///
/// Defaults: port 587 (465 for smtps), tls=required, verify=true. With
/// auth=xoauth2 the password (or the `token` option) is the access token.
/// The provider presets ses+smtp (`?region=`, default us-east-1),
/// sendgrid+smtp (the key as user; sent as user "apikey"), postmark+smtp
/// (the server token as user) and mailgun+smtp (`?region=eu` for the EU)
/// fill in the host. Secret references (`env:`, `file:`) are resolved.
/// Errors (`errc::invalid_argument`) name the option or part that is
/// wrong, never a secret.
MAILERS_API boost::system::result<smtp_params> smtp_params_from_dsn(const dsn& d,
                                                                    diagnostics* diag = nullptr);

/// Parses `dsn_text` and builds a transport; errors as smtp_params_from_dsn
/// and the constructor, without throwing.
MAILERS_API boost::system::result<std::shared_ptr<smtp_transport>> make_smtp_transport(
    boost::asio::any_io_executor ex, std::string_view dsn_text, diagnostics* diag = nullptr);

}  // namespace mailers
