// The SMTP client as a state machine with no I/O inside (the "sans-io"
// shape of Boost.MySQL's protocol layer). The connection feeds it replies
// and performs the step it asks for: read a reply, write a command group,
// run the TLS handshake, write the message content. The same machine is
// driven by the unit tests with scripted replies.
#pragma once

#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transports/reply_classification.hpp"
#include "transports/smtp/protocol.hpp"
#include "transports/smtp/reply.hpp"

namespace mailers::detail::smtp {

enum class tls_mode : std::uint8_t {
    required,       ///< STARTTLS, and refuse a server that does not offer it
    opportunistic,  ///< STARTTLS when offered, else clear text (never with credentials)
    none,           ///< never TLS
    implicit,       ///< TLS from the first octet (smtps, port 465)
};

enum class auth_mode : std::uint8_t { automatic, none, plain, login, xoauth2 };

/// Settings of one session. Views: the owner keeps the strings alive for
/// the session's lifetime.
struct session_config {
    tls_mode tls = tls_mode::required;
    auth_mode auth = auth_mode::automatic;
    std::string_view helo;
    std::string_view user;
    std::string_view password;
    std::string_view token;  ///< XOAUTH2 access token for this session
    bool pipelining = true;  ///< use PIPELINING when the server offers it
};

/// What the connection must do next.
enum class step : std::uint8_t {
    read,           ///< read one reply, then on_reply()
    write_read,     ///< write out(), read one reply, then on_reply()
    tls_handshake,  ///< run the TLS client handshake, then on_tls_established()
    write_data,     ///< write the message content and end-of-data, then on_data_written()
    ready,          ///< idle: start_transaction(), start_noop() or start_quit()
    close,          ///< close the connection; result() says why
};

/// A mail transaction's input. Addresses are bare addr-specs already checked
/// for syntax; the caller keeps them alive until the transaction ends.
struct transaction {
    std::string_view mail_from;
    std::span<const std::string> rcpt_to;
    mail_parameters params;
};

/// How session set-up or the last transaction ended.
struct session_result {
    error_code ec;
    diagnostics diag;  ///< message without the server's name; the connection prefixes it
    std::string provider_message_id;
    std::size_t accepted_recipients = 0;
};

class session {
public:
    explicit session(const session_config& cfg, bool tls_active = false);

    /// Starts reading the greeting.
    step start();
    step on_reply(const reply& r);
    step on_tls_established();
    step on_data_written();

    /// Only in the `ready` state.
    step start_transaction(const transaction& t);
    step start_noop();
    step start_quit();

    /// Bytes to write for a `write_read` step.
    const std::string& out() const noexcept { return out_; }

    /// Pipelining across messages (RFC 2920 section 3.1: the content of a
    /// message may be followed in the same write by the next transaction's
    /// MAIL, RCPT and DATA). True in the `write_data` step of a transaction
    /// whose server offers PIPELINING, when nothing is queued yet.
    bool can_queue_next() const noexcept;
    /// Queues `t` behind the current message: the connection writes
    /// `next_out()` right after the end-of-data line. `t` must have at least
    /// one recipient and its views must outlive the transaction.
    void queue_next(const transaction& t);
    /// The queued transaction's commands; empty when nothing is queued.
    const std::string& next_out() const noexcept { return next_out_; }
    /// True when the transaction just ended (result() says how) and the
    /// queued one's commands are on the wire: continue_next() comes next,
    /// never start_transaction(), start_noop() or start_quit().
    bool next_pending() const noexcept { return state_ == state::next_queued; }
    /// Makes the queued transaction current; its replies are next to read.
    step continue_next();

    /// What the pending step belongs to, for its timeout and for the meaning
    /// of an I/O failure during it.
    smtp_phase phase() const noexcept { return phase_; }

    /// True once the end-of-data line may have reached the server (it was
    /// written, or a write holding it failed part-way): from here on a lost
    /// connection leaves the outcome unknown.
    bool content_sent() const noexcept { return content_sent_; }
    /// The write that holds the end-of-data line failed, but the line may
    /// have gone out before it did.
    void end_of_data_may_have_left() noexcept { content_sent_ = true; }

    /// True once at least one reply of the current transaction was read.
    bool transaction_replied() const noexcept { return transaction_replied_; }

    bool tls_active() const noexcept { return tls_active_; }
    const capabilities& caps() const noexcept { return caps_; }
    bool established() const noexcept { return established_; }
    const session_result& result() const noexcept { return result_; }

    /// The AUTH mechanism used ("PLAIN", "LOGIN", "XOAUTH2") or "".
    std::string_view auth_mechanism() const noexcept { return auth_name_; }

private:
    enum class state : std::uint8_t {
        greeting,
        ehlo,
        helo,
        starttls,
        tls_handshake,
        auth_plain,
        auth_login_user,
        auth_login_password,
        auth_login_done,
        auth_xoauth2,
        auth_xoauth2_error,
        ready,
        next_queued,
        mail,
        rcpt,
        data,
        pipelined,
        content,
        data_end,
        empty_data_end,
        rset,
        noop,
        quit,
        closed,
    };

    step send_ehlo();
    step after_ehlo();
    step start_auth();
    step session_ready();
    // Both end the session: with QUIT (a write_read step whose reply closes,
    // keeping the failure as result()) unless the server said 421.
    step fail_setup(transport_errc e, std::string message, const reply* r = nullptr);
    step fail_reply(const reply& r, smtp_phase phase, std::string context);
    step quit_after_setup_failure(const reply* r);
    step on_transaction_reply(const reply& r);
    step on_pipelined_reply(const reply& r);
    step finish_transaction_failure(const reply& r);
    step after_data_reply(const reply& r);
    step send_rset();
    step end_transaction();
    void reset_transaction(const transaction& t);
    void record_failure(const reply& r, smtp_phase phase, std::string context);
    void record_rejected_recipient(const reply& r, std::string_view rcpt);
    void begin_out();

    session_config cfg_;
    state state_ = state::greeting;
    smtp_phase phase_ = smtp_phase::greeting;
    bool tls_active_ = false;
    bool established_ = false;
    bool out_secret_ = false;
    bool content_sent_ = false;
    bool transaction_replied_ = false;
    bool transaction_failed_ = false;
    bool mail_failed_ = false;
    bool starttls_refused_ = false;
    capabilities caps_;
    std::string out_;
    std::string next_out_;
    transaction next_tx_;
    std::string auth_name_;
    session_result result_;

    transaction tx_;
    std::size_t next_rcpt_ = 0;       // non-pipelined: the RCPT awaiting its reply
    std::size_t pipelined_seen_ = 0;  // pipelined: replies read so far in the group
    std::string refused_;             // recipients refused while others were accepted
    std::string xoauth2_error_;       // the decoded challenge of a refused XOAUTH2 token
};

/// The provider's id for an accepted message, read from the reply to the
/// final dot: Postfix's "queued as X", Amazon SES's "Ok X", Gmail's
/// "OK <time> X - gsmtp"; "" when the reply names none.
std::string queue_id_from_reply(const reply& r);

}  // namespace mailers::detail::smtp
