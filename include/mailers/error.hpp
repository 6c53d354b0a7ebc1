// Error codes, failure conditions and diagnostics.
//
// Library errors are `mailers::errc` values in `mailers::error_category()`.
// Transport replies (SMTP codes, HTTP statuses, provider error codes) are
// reported as `mailers::transport_errc` values which compare equal to one of
// the `mailers::failure` conditions, so a caller writes
//
//     if (ec == mailers::failure::throttled) ...
//
// Human-readable detail (the provider's reply text, enhanced status code,
// retry-after, request id) travels separately in a `diagnostics` object.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/system_error.hpp>
#include <chrono>
#include <mailers/config.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace mailers {

using error_code = boost::system::error_code;

/// Errors raised by the library itself.
enum class errc {
    ok = 0,
    invalid_address = 1,  ///< an address fails RFC 5321/5322 syntax or length limits
    header_injection,     ///< CR or LF (or NUL) inside a header value or name
    invalid_header,       ///< a header name that is not RFC 5322 ftext, or a reserved one
    invalid_argument,     ///< a parameter out of range (caps, weights, hours, ...)
    message_too_large,    ///< the rendered message exceeds the configured limit
    unknown_pool,         ///< no pool with that id in the workspace
    unknown_mailbox,      ///< no mailbox with that id in the workspace
    unknown_provider,     ///< no provider with that id registered
    unknown_time_zone,    ///< not an IANA time zone name
    suppressed,           ///< the recipient is on the suppression list
    paused,               ///< what the send needs is paused
    no_capacity,          ///< no eligible mailbox can send now (see send_result::retry_at)
    duplicate,            ///< an object with that id already exists
    not_found,            ///< the object to change does not exist
    permission_denied,    ///< the authorizer refused the principal
    store_error,          ///< the store failed (I/O, corruption, constraint)
    schema_too_new,       ///< the store was written by a newer version of mailers
    operation_aborted,    ///< the engine was cancelled or destroyed
    invalid_csv,          ///< a CSV import line is malformed
    audit_chain_broken,   ///< the audit log fails verification
    /// The connection to the store broke while a commit was in flight: it
    /// may or may not have been applied. Never retried automatically.
    commit_outcome_unknown,
    /// Opening found no store where one must be: a missing or empty file,
    /// an absent schema; or an engine found a workspace whose own record
    /// the store lost while its objects, suppressions or sends remain.
    store_missing,
    /// Creating found a store already there.
    store_exists,
    /// The store holds data this library cannot read: a truncated or
    /// foreign file, or a stored object that does not parse.
    store_corrupt,
};

MAILERS_API const boost::system::error_category& error_category() noexcept;

inline error_code make_error_code(errc e) noexcept {
    return {static_cast<int>(e), error_category()};
}

/// What a transport failure means for the pipeline. Each class has one action:
///
/// | failure               | action taken by the engine                                  |
/// |-----------------------|-------------------------------------------------------------|
/// | transient             | release the reservation, count a failure towards the        |
/// |                       | mailbox's circuit breaker, fail over to the next mailbox    |
/// | throttled             | back off that route until retry-after, fail over            |
/// | quota_exhausted       | mark the mailbox exhausted until its window rolls, fail over|
/// | reputation            | release the reservation, count a failure towards the        |
/// |                       | mailbox's circuit breaker, raise an alert event, fail over  |
/// | auth                  | mark the mailbox unhealthy, raise an alert event, fail over |
/// | recipient_permanent   | hard bounce: suppress the recipient, never retry            |
/// | message_rejected      | the content was refused: fail the send, do not fail over    |
/// | unknown_outcome       | record `unknown`, count against caps, never retry           |
///
/// No single outcome pauses a sender domain: one refusal says little about a
/// domain's standing, and a pause has no expiry. A `reputation` failure
/// lands on the mailbox that got it, through its breaker, which opens after
/// `breaker_params::failure_threshold` failures in a row and lets a probe
/// through after a cool-down.
///
/// Which of them may be tried again elsewhere is `may_retry()`'s rule.
enum class failure {
    transient = 1,
    throttled,
    quota_exhausted,
    reputation,
    auth,
    recipient_permanent,
    message_rejected,
    unknown_outcome,
};

/// The enumerator's name ("throttled"); `failure_category()` messages are
/// sentences for people.
MAILERS_API std::string_view to_string(failure f) noexcept;

MAILERS_API const boost::system::error_category& failure_category() noexcept;

inline boost::system::error_condition make_error_condition(failure f) noexcept {
    return {static_cast<int>(f), failure_category()};
}

/// Error codes a transport completes with. Each maps onto exactly one
/// `failure` condition; transports choose the most specific one.
enum class transport_errc {
    connection_failed = 1,    ///< could not connect / TLS handshake failed  -> transient
    timeout_before_send,      ///< timed out before the message was handed over -> transient
    temporary_reply,          ///< 4xx-style temporary refusal, greylisting  -> transient
    rate_limited,             ///< 429, 421 4.7.0, 4.7.28, ThrottlingException -> throttled
    sender_quota_exhausted,   ///< 550 5.4.5, daily quota exceeded          -> quota_exhausted
    sender_reputation,        ///< 554 5.7.1 client host blocked (a blocklist) -> reputation
    authentication_failed,    ///< 535, 5.7.26, 401/403                     -> auth
    configuration,            ///< bad credentials format, unverified sender -> auth
    recipient_rejected,       ///< 550 5.1.1, inactive recipient            -> recipient_permanent
    content_rejected,         ///< 552, 554 5.6.x, 5.7.x policy, invalid request body
                              ///< -> message_rejected
    outcome_unknown,          ///< lost after the message was handed over   -> unknown_outcome
    tls_verification_failed,  ///< bad certificate or host name             -> auth
    /// The peer's reply is not the protocol's (an HTTP server or garbage
    /// bytes on an SMTP port) before the message was handed over -> transient:
    /// nothing was delivered. After the message was handed over the same
    /// reply is `outcome_unknown`.
    protocol_error,
};

MAILERS_API const boost::system::error_category& transport_category() noexcept;

/// The enumerator's name ("no_capacity", "rate_limited"), for bindings and
/// logs that name codes the way this header does; "" for a value this
/// version does not know. The categories' messages are sentences for people.
MAILERS_API std::string_view to_string(errc e) noexcept;
MAILERS_API std::string_view to_string(transport_errc e) noexcept;

inline error_code make_error_code(transport_errc e) noexcept {
    return {static_cast<int>(e), transport_category()};
}

/// Maps an error code onto its failure class. Anything this function cannot
/// prove harmless is `failure::unknown_outcome`, the one class that is never
/// retried and keeps its reservation:
///
/// - `transport_errc` values map as listed above; a value this version does
///   not know is `unknown_outcome`.
/// - Library errors a transport reports while preparing a message, before
///   anything is written (`errc::invalid_address`, `header_injection`,
///   `invalid_header`, `invalid_argument`, `message_too_large`), are
///   `message_rejected`: another attempt would be refused the same way.
///   Every other library error (`operation_aborted` among them) is
///   `unknown_outcome`.
/// - Every other code — a raw Boost.Asio or OpenSSL error, a `std::errc`, a
///   category this library does not know, an empty code — is
///   `unknown_outcome`: the code does not say whether the message left, and
///   a connection reset or a timeout may come after it did.
///
/// `ec == failure::X` agrees with this function for every code except the
/// library's own errors (`mailers::errc`), which compare equal to no failure
/// class: they are the library's verdicts (suppressed, paused, no capacity,
/// ...), which callers test for by name.
MAILERS_API failure classify(const error_code& ec) noexcept;

/// The retry rule, shared by the engine's fail-over and the `failover` and
/// `roundrobin` composite transports: true only when the message certainly
/// did not leave and another attempt — another mailbox, another provider —
/// may succeed. That is the sender-side failures:
///
/// - `transient`: no connection, a timeout before the message was handed
///   over, a temporary refusal (SMTP 4xx, HTTP 5xx other than gateway
///   timeouts), a peer that does not speak the protocol;
/// - `throttled` and `quota_exhausted`: this route's limits, not another's;
/// - `auth` and `reputation`: a refusal of this mailbox's credentials,
///   sender domain or IP (a blocklist), given instead of accepting the
///   message.
///
/// False for `recipient_permanent` and `message_rejected` (any route gets the
/// same answer), for `unknown_outcome` (the message may have gone: another
/// attempt may deliver it twice), and so for every code `classify()` does not
/// recognise, and for an empty code.
MAILERS_API bool may_retry(const error_code& ec) noexcept;
/// The same rule for a failure class already known.
MAILERS_API bool may_retry(failure f) noexcept;

/// Detail that accompanies an error code. Never contains secrets.
struct diagnostics {
    std::string message;                              ///< what went wrong, for people
    std::string provider_reply;                       ///< the provider's reply text, verbatim
    std::string enhanced_status;                      ///< RFC 3463 code, e.g. "5.7.26"
    int status = 0;                                   ///< SMTP reply code or HTTP status, 0 if none
    std::string provider_code;                        ///< provider's own error code/name
    std::string request_id;                           ///< provider request id, when given
    std::optional<std::chrono::seconds> retry_after;  ///< honoured by the engine

    void clear() { *this = diagnostics{}; }
};

/// Exception thrown by throwing overloads; carries the diagnostics.
class MAILERS_API exception : public boost::system::system_error {
public:
    exception(error_code ec, diagnostics diag);
    explicit exception(error_code ec, const std::string& what = {});
    const diagnostics& diag() const noexcept { return diag_; }

private:
    diagnostics diag_;
};

/// Throws `mailers::exception` when `ec` is set.
MAILERS_API void throw_on_error(const error_code& ec, const diagnostics& diag = {});

}  // namespace mailers

namespace boost::system {
template <>
struct is_error_code_enum<mailers::errc> : std::true_type {};
template <>
struct is_error_code_enum<mailers::transport_errc> : std::true_type {};
template <>
struct is_error_condition_enum<mailers::failure> : std::true_type {};
}  // namespace boost::system
