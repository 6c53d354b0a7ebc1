// Amazon SNS signing certificates, fetched over verified TLS and cached.
//
// parse_webhook() never fetches: it reports webhook_outcome::certificate_needed
// with the SigningCertURL. sns_certificate_fetcher is the part that fetches,
// and the sns_certificate_store parse_webhook() then finds the certificate
// in. webhook_server uses one on its own; a host with its own HTTP server
// can use it the same way.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/logger.hpp>
#include <mailers/transports/http_transports.hpp>
#include <mailers/webhook_signing.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

struct sns_certificate_fetcher_params {
    /// Certificates held at once. SNS signs with one certificate per region
    /// at a time, so a handful is normal; when full, the entry that expires
    /// first makes room.
    std::size_t max_certificates = 64;
    /// How long a fetched certificate is held before it is fetched again.
    /// SNS rotates certificates under new URLs, so this only bounds how long
    /// a revoked one could be trusted.
    std::chrono::seconds ttl = std::chrono::hours(24);
    /// A larger response fails the fetch. SNS certificates are about 2 KiB.
    std::size_t max_certificate_bytes = 64 * 1024;
    /// Limit on each phase of the fetch: connect (with name resolution),
    /// TLS handshake, request, response.
    std::chrono::milliseconds timeout = std::chrono::seconds(10);
    /// PEM file of CA certificates to trust instead of the system store.
    /// The server's certificate is always verified, with its host name.
    std::string ca_file;
    /// Connection overrides for tests and private networks: a test points
    /// sns.<region>.amazonaws.com:443 at a local TLS server whose certificate
    /// `ca_file` trusts. See http_connect_to.
    std::vector<http_connect_to> connect_to;
    logger log;
};

/// What the fetcher has done, for metrics and tests.
struct sns_certificate_fetcher_stats {
    std::uint64_t fetches = 0;   ///< HTTPS requests started
    std::uint64_t failures = 0;  ///< fetches that produced no certificate
    std::uint64_t refused = 0;   ///< URLs refused without connecting (not SNS)
    std::size_t cached = 0;      ///< certificates held now
};

/// Fetches SNS signing certificates and holds them, as an
/// sns_certificate_store for parse_webhook().
///
/// A URL is fetched only when is_sns_certificate_url() accepts it (an https
/// URL on an sns.<region>.amazonaws.com host, ending in ".pem"), over TLS
/// verified against the system store or `ca_file`, with no redirect
/// followed. Concurrent fetches of one URL share one request.
///
/// Thread safety: every member may be called from any thread. Lifetime:
/// fetches in flight keep the fetcher's state alive; destroying the fetcher
/// fails fetches waiting for a connection with errc::operation_aborted.
class MAILERS_API sns_certificate_fetcher final : public sns_certificate_store {
public:
    using fetch_signature = void(error_code, std::shared_ptr<const sns_certificate>);

    /// Throws mailers::exception (errc::invalid_argument) when `ca_file`
    /// cannot be loaded or a limit is zero.
    sns_certificate_fetcher(boost::asio::any_io_executor ex,
                            sns_certificate_fetcher_params params = {});
    ~sns_certificate_fetcher() override;
    sns_certificate_fetcher(const sns_certificate_fetcher&) = delete;
    sns_certificate_fetcher& operator=(const sns_certificate_fetcher&) = delete;

    /// The certificate for `url`: from the cache when held and fresh, else
    /// fetched and then cached.
    ///
    /// Handler: `void(error_code, std::shared_ptr<const sns_certificate>)`,
    /// the pointer null on error. Errors: errc::invalid_argument when the URL
    /// is not an SNS certificate URL (nothing is connected to) or the body is
    /// not one PEM RSA certificate; transport_errc::tls_verification_failed;
    /// transport_errc::connection_failed, timeout_before_send or
    /// outcome_unknown (also for a response over `max_certificate_bytes`);
    /// errc::not_found for a status other than 200; errc::operation_aborted
    /// once the fetcher is destroyed.
    ///
    /// Executor: the handler's associated executor, else the fetcher's;
    /// never inside this call. Cancellation: none; `timeout` bounds it.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(fetch_signature) Token = boost::asio::deferred_t>
    auto async_fetch(std::string url, Token&& token = {}) {
        return boost::asio::async_initiate<Token, fetch_signature>(
            [state = state_](auto handler, std::string u) {
                async_fetch_impl(
                    state, std::move(u),
                    boost::asio::any_completion_handler<fetch_signature>(std::move(handler)));
            },
            token, std::move(url));
    }

    /// Confirms an SNS subscription: GETs `subscribe_url` (a
    /// SubscriptionConfirmation's SubscribeURL, webhook_result::confirm_url)
    /// over the same verified TLS, with the same host rule: an https URL on
    /// an sns.<region>.amazonaws.com host, else errc::invalid_argument and
    /// nothing is connected to. Handler: `void(error_code)`, clear when SNS
    /// answered 200; errc::not_found for another status; transport errors as
    /// for async_fetch. Executor and lifetime as for async_fetch.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(error_code)) Token = boost::asio::deferred_t>
    auto async_confirm_subscription(std::string subscribe_url, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code)>(
            [state = state_](auto handler, std::string u) {
                async_confirm_impl(
                    state, std::move(u),
                    boost::asio::any_completion_handler<void(error_code)>(std::move(handler)));
            },
            token, std::move(subscribe_url));
    }

    sns_certificate_fetcher_stats stats() const;

protected:
    /// A cached certificate that has not outlived `ttl`; never fetches.
    std::shared_ptr<const sns_certificate> do_find(std::string_view url) const override;

private:
    struct state;
    static void async_fetch_impl(std::shared_ptr<state> s, std::string url,
                                 boost::asio::any_completion_handler<fetch_signature> handler);
    static void async_confirm_impl(std::shared_ptr<state> s, std::string url,
                                   boost::asio::any_completion_handler<void(error_code)> handler);
    std::shared_ptr<state> state_;
};

}  // namespace mailers
