#include <mailers/error.hpp>

namespace mailers {
namespace {

class errc_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mailers"; }
    std::string message(int ev) const override {
        switch (static_cast<errc>(ev)) {
            case errc::ok:
                return "success";
            case errc::invalid_address:
                return "invalid email address";
            case errc::header_injection:
                return "CR, LF or NUL in a header";
            case errc::invalid_header:
                return "invalid or reserved header";
            case errc::invalid_argument:
                return "invalid argument";
            case errc::message_too_large:
                return "message too large";
            case errc::unknown_pool:
                return "unknown pool";
            case errc::unknown_mailbox:
                return "unknown mailbox";
            case errc::unknown_provider:
                return "unknown provider";
            case errc::unknown_time_zone:
                return "unknown time zone";
            case errc::suppressed:
                return "recipient is suppressed";
            case errc::paused:
                return "sending is paused";
            case errc::no_capacity:
                return "no mailbox can send now";
            case errc::duplicate:
                return "already exists";
            case errc::not_found:
                return "not found";
            case errc::permission_denied:
                return "permission denied";
            case errc::store_error:
                return "store error";
            case errc::schema_too_new:
                return "store schema is newer than this library";
            case errc::operation_aborted:
                return "operation aborted";
            case errc::invalid_csv:
                return "malformed CSV";
            case errc::audit_chain_broken:
                return "audit chain does not verify";
            case errc::commit_outcome_unknown:
                return "the store may or may not have applied the commit";
            case errc::store_missing:
                return "no store where one was expected";
            case errc::store_exists:
                return "a store already exists there";
            case errc::store_corrupt:
                return "the store holds data that cannot be read";
        }
        return "unknown mailers error";
    }
};

class failure_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mailers.failure"; }
    std::string message(int ev) const override {
        switch (static_cast<failure>(ev)) {
            case failure::transient:
                return "transient failure";
            case failure::throttled:
                return "throttled";
            case failure::quota_exhausted:
                return "sender quota exhausted";
            case failure::reputation:
                return "reputation or policy block";
            case failure::auth:
                return "authentication or configuration failure";
            case failure::recipient_permanent:
                return "recipient permanently rejected";
            case failure::message_rejected:
                return "message rejected";
            case failure::unknown_outcome:
                return "outcome unknown";
        }
        return "unknown failure";
    }
    bool equivalent(const boost::system::error_code& code, int condition) const noexcept override {
        if (!code || code.category() == mailers::error_category()) return false;
        return static_cast<int>(classify(code)) == condition;
    }
};

class transport_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "mailers.transport"; }
    std::string message(int ev) const override {
        switch (static_cast<transport_errc>(ev)) {
            case transport_errc::connection_failed:
                return "connection failed";
            case transport_errc::timeout_before_send:
                return "timed out before the message was sent";
            case transport_errc::temporary_reply:
                return "temporary refusal";
            case transport_errc::rate_limited:
                return "rate limited";
            case transport_errc::sender_quota_exhausted:
                return "sender quota exhausted";
            case transport_errc::sender_reputation:
                return "refused for sender reputation (a blocklist)";
            case transport_errc::authentication_failed:
                return "authentication failed";
            case transport_errc::configuration:
                return "provider configuration error";
            case transport_errc::recipient_rejected:
                return "recipient rejected";
            case transport_errc::content_rejected:
                return "content rejected";
            case transport_errc::outcome_unknown:
                return "outcome unknown: the message may have been sent";
            case transport_errc::tls_verification_failed:
                return "TLS certificate verification failed";
            case transport_errc::protocol_error:
                return "the server's reply is not in the protocol (nothing was delivered)";
        }
        return "unknown transport error";
    }
    boost::system::error_condition default_error_condition(int ev) const noexcept override {
        return make_error_condition(classify(error_code(ev, *this)));
    }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
    static const errc_category c;
    return c;
}
const boost::system::error_category& failure_category() noexcept {
    static const failure_category_impl c;
    return c;
}
const boost::system::error_category& transport_category() noexcept {
    static const transport_category_impl c;
    return c;
}

failure classify(const error_code& ec) noexcept {
    if (ec.category() == transport_category()) {
        switch (static_cast<transport_errc>(ec.value())) {
            case transport_errc::connection_failed:
            case transport_errc::timeout_before_send:
            case transport_errc::temporary_reply:
            case transport_errc::protocol_error:
                return failure::transient;
            case transport_errc::rate_limited:
                return failure::throttled;
            case transport_errc::sender_quota_exhausted:
                return failure::quota_exhausted;
            case transport_errc::sender_reputation:
                return failure::reputation;
            case transport_errc::authentication_failed:
            case transport_errc::configuration:
            case transport_errc::tls_verification_failed:
                return failure::auth;
            case transport_errc::recipient_rejected:
                return failure::recipient_permanent;
            case transport_errc::content_rejected:
                return failure::message_rejected;
            case transport_errc::outcome_unknown:
                return failure::unknown_outcome;
        }
        return failure::unknown_outcome;
    }
    if (ec.category() == failure_category()) {
        if (ec.value() >= static_cast<int>(failure::transient) &&
            ec.value() <= static_cast<int>(failure::unknown_outcome))
            return static_cast<failure>(ec.value());
        return failure::unknown_outcome;
    }
    if (ec.category() == error_category()) {
        switch (static_cast<errc>(ec.value())) {
            // Raised while checking or rendering the message, before a
            // transport writes anything.
            case errc::invalid_address:
            case errc::header_injection:
            case errc::invalid_header:
            case errc::invalid_argument:
            case errc::message_too_large:
                return failure::message_rejected;
            default:
                break;
        }
    }
    // A code that does not say when it happened may come from after the
    // message was handed over (a reset or a timeout while waiting for the
    // reply): retrying it is how a message goes out twice.
    return failure::unknown_outcome;
}

bool may_retry(const error_code& ec) noexcept {
    return ec && may_retry(classify(ec));
}

bool may_retry(failure f) noexcept {
    switch (f) {
        case failure::transient:
        case failure::throttled:
        case failure::quota_exhausted:
        case failure::reputation:
        case failure::auth:
            return true;
        case failure::recipient_permanent:
        case failure::message_rejected:
        case failure::unknown_outcome:
            return false;
    }
    return false;
}

exception::exception(error_code ec, diagnostics diag)
    : boost::system::system_error(ec, diag.message), diag_(std::move(diag)) {}

exception::exception(error_code ec, const std::string& what)
    : boost::system::system_error(ec, what) {
    diag_.message = what;
}

void throw_on_error(const error_code& ec, const diagnostics& diag) {
    if (ec) throw exception(ec, diag);
}

}  // namespace mailers
