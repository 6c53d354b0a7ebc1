// The one interface every transport implements: hand it a message, get back
// "accepted, with the provider's message id" or a classified failure.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/message.hpp>
#include <memory>
#include <string>
#include <string_view>

namespace mailers {

/// What a transport is handed. Shared and immutable: a transport may keep it
/// alive past the call (queues, retries inside one attempt), and failover
/// hands the next transport a fresh `outbound` built from the caller's
/// original message, so nothing from one attempt leaks into the next.
struct outbound {
    message msg;
    envelope env;
    /// When not empty: the message as RFC 5322 bytes in CRLF lines, sent as
    /// given instead of rendering `msg` (which then needs only `from`, its
    /// recipients and `message_id`). Transports refuse a CR or LF outside a
    /// CRLF pair; those that take messages as fields rather than MIME
    /// refuse it altogether.
    std::string raw;
    std::string mailbox_id;  ///< the sending mailbox ("" for provider-level sends)
    std::string send_id;     ///< ledger id, for logs and provider tags
};

/// Result of a completed hand-off.
struct send_outcome {
    std::string provider_message_id;  ///< the id the provider assigned, if any
    diagnostics diag;                 ///< on failure: reply text, codes, retry-after
};

using send_handler_signature = void(error_code, send_outcome);
using any_send_handler = boost::asio::any_completion_handler<send_handler_signature>;

/// How a connection check ended: `ec` as a send's would be (an
/// authentication failure compares equal to `failure::auth`), and
/// `diag.message` a sentence saying what was checked or what failed.
using check_handler_signature = void(error_code, diagnostics);
using any_check_handler = boost::asio::any_completion_handler<check_handler_signature>;

/// Base class for transports: a public non-virtual front over one protected
/// primitive. The front guarantees the handler never runs inside the
/// initiating call: a completion the backend makes inside that call is
/// posted to the handler's associated executor (or the transport's executor
/// when it has none). A later completion, from the backend's I/O, is
/// dispatched there instead, so the handler may run at once on the thread
/// that finished the I/O when that executor allows it. An exception thrown
/// by the handler leaves through the executor's `run()`, as it would from a
/// posted handler, and leaves the transport working.
///
/// Thread safety: `async_send` may be called concurrently from several
/// threads; implementations must allow that.
class MAILERS_API provider_transport {
public:
    explicit provider_transport(boost::asio::any_io_executor ex) : ex_(std::move(ex)) {}
    virtual ~provider_transport() = default;
    provider_transport(const provider_transport&) = delete;
    provider_transport& operator=(const provider_transport&) = delete;

    /// Hands `out` to the provider.
    ///
    /// Handler signature: `void(mailers::error_code, mailers::send_outcome)`.
    /// On success `ec` is clear and `outcome.provider_message_id` is set when
    /// the provider returns one. On failure `ec` compares equal to one of the
    /// `mailers::failure` conditions; `failure::unknown_outcome` means the
    /// message may have been accepted and must not be sent again.
    /// Executor: the handler's associated executor, else `get_executor()`.
    /// The transport must outlive the operation.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(send_handler_signature)
                  Token = boost::asio::deferred_t>
    auto async_send(std::shared_ptr<const outbound> out, Token&& token = {}) {
        return boost::asio::async_initiate<Token, send_handler_signature>(
            [this](auto handler, std::shared_ptr<const outbound> o) {
                send_impl(std::move(o), any_send_handler(std::move(handler)));
            },
            token, std::move(out));
    }

    /// Checks the connection and the credentials without sending anything:
    /// SMTP opens a session (EHLO, STARTTLS when configured, AUTH) and
    /// QUITs; the HTTP providers make one documented read-only request that
    /// needs the credentials a send uses, or fetch an OAuth token (see
    /// docs/transports.md). Handler signature:
    /// `void(mailers::error_code, mailers::diagnostics)`, never called
    /// inside the initiating call. Executor and lifetime as for async_send.
    /// Cancellation: the SMTP transport honours terminal cancellation
    /// through the handler's cancellation slot (emitted where the handler's
    /// executor runs it, as Asio requires): it closes the check's
    /// connection and completes with errc::operation_aborted. The other
    /// transports' checks run to their end or their timeout.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(check_handler_signature)
                  Token = boost::asio::deferred_t>
    auto async_check(Token&& token = {}) {
        return boost::asio::async_initiate<Token, check_handler_signature>(
            [this](auto handler) { check_impl(any_check_handler(std::move(handler))); }, token);
    }

    /// A short stable name for logs and events ("smtp", "ses", "capture", ...).
    virtual std::string_view name() const noexcept = 0;

    boost::asio::any_io_executor get_executor() const noexcept { return ex_; }

protected:
    /// The primitive. Implementations complete `handler` exactly once, from
    /// any thread. The base posts a completion made inside `do_send` and
    /// dispatches a later one to the handler's executor, so it may run at
    /// once on the completing thread: an implementation must not hold a lock
    /// while completing, and one that completes sends from its destructor
    /// must post those completions itself.
    virtual void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) = 0;

    /// The check's primitive; completes `handler` exactly once, from any
    /// thread (the base posts the completion). `handler` carries the
    /// caller's cancellation slot. The default has nothing to
    /// connect to: it succeeds, saying that nothing was checked. A
    /// transport with a connection overrides it.
    virtual void do_check(any_check_handler handler);

private:
    void send_impl(std::shared_ptr<const outbound> out, any_send_handler handler);
    void check_impl(any_check_handler handler);
    boost::asio::any_io_executor ex_;
};

}  // namespace mailers
