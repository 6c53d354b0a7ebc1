// OAuth 2.0 access tokens for the Gmail API and Microsoft Graph: the
// JWT-bearer grant of a Google service account (RS256, domain-wide
// delegation), the refresh-token grant, and the client-credentials grant.
//
// Tokens are cached per subject (the impersonated user, or "" for one token
// per credential) and fetched again `refresh_before` their expiry; while a
// fetch is in flight, other sends for the same subject wait for it instead
// of starting their own.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <chrono>
#include <mailers/dsn.hpp>
#include <mailers/error.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "http/client.hpp"

namespace mailers::detail {

/// Completion: (error, access token, diagnostics of the failure).
using token_handler =
    boost::asio::any_completion_handler<void(error_code, std::string, diagnostics)>;

class token_source : public std::enable_shared_from_this<token_source> {
public:
    /// `token_url` is the full token endpoint URL. Throws mailers::exception
    /// (errc::invalid_argument) when it is not an http(s) URL.
    token_source(http::client& client, const std::string& token_url,
                 std::chrono::seconds refresh_before);
    virtual ~token_source();
    token_source(const token_source&) = delete;
    token_source& operator=(const token_source&) = delete;

    /// Calls `h` with a token for `subject`: at once when a fresh one is
    /// cached, else once the token endpoint has answered. Errors are
    /// classified as by map_http_error with provider "oauth"; a token request
    /// lost in flight is transport_errc::connection_failed (no mail went out).
    void async_token(const std::string& subject, token_handler h);

    /// Forgets `token` for `subject` (the API refused it), unless a newer
    /// one has replaced it already.
    void invalidate(const std::string& subject, std::string_view token);

    std::uint64_t requests() const;

    const std::string& token_url() const noexcept { return url_; }

protected:
    /// The application/x-www-form-urlencoded body of the token request.
    virtual error_code token_form(const std::string& subject,
                                  std::chrono::system_clock::time_point now, std::string& form,
                                  diagnostics& diag) = 0;

private:
    struct entry {
        std::string token;
        std::chrono::steady_clock::time_point refresh_at{};
        std::chrono::steady_clock::time_point expires_at{};
        bool fetching = false;
        std::vector<token_handler> waiters;
    };

    void fetch(const std::string& subject);
    void finish(const std::string& subject, http::exchange_result r);

    http::client& client_;
    std::string url_;
    http::endpoint ep_;
    std::string target_;
    std::chrono::seconds refresh_before_;
    mutable std::mutex mu_;
    std::unordered_map<std::string, entry> cache_;
    std::uint64_t requests_ = 0;
};

/// A Google service account: `sub` is the subject, so each Workspace user
/// gets a token of their own.
std::shared_ptr<token_source> make_jwt_bearer_source(
    http::client& client, const std::string& token_url, std::string client_email,
    const secret& private_key_pem, std::string scope, std::chrono::seconds refresh_before);

/// One user's refresh token (Google and Microsoft alike).
std::shared_ptr<token_source> make_refresh_token_source(http::client& client,
                                                        const std::string& token_url,
                                                        std::string client_id, secret client_secret,
                                                        secret refresh_token, std::string scope,
                                                        std::chrono::seconds refresh_before);

/// An application's own token (Microsoft identity platform).
std::shared_ptr<token_source> make_client_credentials_source(
    http::client& client, const std::string& token_url, std::string client_id, secret client_secret,
    std::string scope, std::chrono::seconds refresh_before);

/// Builds a signed RS256 JWT from the JSON of its claims; exposed for tests.
/// Throws mailers::exception (errc::invalid_argument) for a key that is not
/// an RSA private key in PEM.
std::string sign_jwt_rs256(std::string_view claims_json, const secret& private_key_pem);

}  // namespace mailers::detail
