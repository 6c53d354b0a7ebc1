// A provider as a pure translation, with no I/O: an `outbound` into an HTTP
// request, and a 2xx reply into a provider message id. Refusals are
// classified by error_mapping; the transport does the I/O and the OAuth.
#pragma once

#include <chrono>
#include <mailers/error.hpp>
#include <mailers/provider_transport.hpp>
#include <mailers/transports/http_transports.hpp>
#include <memory>
#include <string>
#include <string_view>

#include "http/client.hpp"

namespace mailers::detail {

class token_source;

struct build_context {
    std::string_view access_token;  ///< OAuth providers; "" for the others
    std::string_view user;          ///< what sending_user() gave; "" for the others
    std::chrono::system_clock::time_point now;
};

/// One send's request, and what the reply is read against.
struct prepared {
    http::request req;
    std::string message_id;  ///< the Message-ID sent, when the provider sends MIME
    /// The time the request says it was made, for a provider that signs it (SES).
    std::chrono::system_clock::time_point request_time{};
};

class http_provider {
public:
    virtual ~http_provider() = default;

    /// "ses", "mailgun", ...: the transport's name and the error table's.
    virtual std::string_view name() const noexcept = 0;
    virtual const http::endpoint& api() const noexcept = 0;

    /// The most recipients (To, Cc and Bcc together) the provider documents
    /// for one message. The transport refuses a send over it before any
    /// request, token requests included.
    virtual std::size_t max_recipients() const noexcept = 0;

    /// The user a send acts for, whose mailbox the request names (Gmail,
    /// Graph); "" for the providers without one. The transport asks once per
    /// send, when the send starts, and hands the answer to the other calls.
    /// Fails, with `diag.message` saying why, when the message names no user
    /// to send as; the send then fails before its token when its token is
    /// the user's (token_per_user), else before build().
    virtual boost::system::result<std::string> sending_user(const outbound&, diagnostics&) const {
        return std::string{};
    }

    /// True when each user gets a token of their own (a service account
    /// impersonating users), cached under the user's name; false when one
    /// token serves every send. Only asked of providers with tokens().
    virtual bool token_per_user() const noexcept { return false; }

    /// The key under which a user's concurrent requests are limited, and the
    /// limit; {"", 0} for none.
    virtual std::pair<std::string, std::size_t> concurrency(std::string_view /*user*/) const {
        return {std::string{}, 0};
    }

    /// Fills `req` (target, headers, body). Errors: the message cannot be
    /// rendered or does not fit the provider; nothing is sent.
    virtual error_code build(const outbound& out, const build_context& ctx, prepared& p,
                             diagnostics& diag) = 0;

    /// Asked at most once per send, of a reply that is not a 2xx: true when
    /// the request was refused for something the provider has now corrected
    /// (SES: a signing time the server's clock disagrees with), so that the
    /// transport builds the request again and sends it once more. Such a
    /// refusal means the provider did not take the message.
    virtual bool retry_refused(const prepared& /*p*/, const http::response& /*r*/,
                               std::chrono::system_clock::time_point /*now*/) {
        return false;
    }

    /// Reads a 2xx reply. A body it cannot read still means accepted.
    virtual void accepted(const outbound& out, const prepared& p, const http::response& r,
                          send_outcome& outcome) = 0;

    /// The token source, for OAuth providers.
    virtual std::shared_ptr<token_source> tokens() const { return nullptr; }

    /// Fills `p.req` with the connection check's request: a documented
    /// read-only request that needs the credentials a send uses. The
    /// default leaves the target empty: the check is the OAuth token alone
    /// (Gmail and Graph, whose profile reads need scopes a sending grant
    /// need not hold).
    virtual error_code build_check(const build_context& /*ctx*/, prepared& /*p*/,
                                   diagnostics& /*diag*/) {
        return {};
    }

    /// The token subject a check asks for ("" the shared token).
    virtual std::string check_subject() const { return {}; }
};

/// Throw mailers::exception (errc::invalid_argument) for bad parameters.
std::unique_ptr<http_provider> make_ses(const ses_params& p);
std::unique_ptr<http_provider> make_mailgun(const mailgun_params& p);
std::unique_ptr<http_provider> make_sendgrid(const sendgrid_params& p);
std::unique_ptr<http_provider> make_postmark(const postmark_params& p);
std::unique_ptr<http_provider> make_gmail(const gmail_params& p, http::client& client,
                                          const boost::asio::any_io_executor& ex);
std::unique_ptr<http_provider> make_graph(const graph_params& p, http::client& client,
                                          const boost::asio::any_io_executor& ex);

/// The endpoint to use: `override_url` when set, else `https://default_host`.
http::endpoint resolve_endpoint(std::string_view provider, const std::string& override_url,
                                std::string_view default_host);

[[noreturn]] void throw_invalid(std::string message);

}  // namespace mailers::detail
