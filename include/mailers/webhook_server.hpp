// An HTTP/1.1 endpoint for provider webhooks, embedded in the host's program.
//
// webhook_server listens on an address, reads each request within limits,
// hands it to parse_webhook() for the route its path names, and answers with
// the status parse_webhook() gives. Events reach the host through a callback
// before the answer is written, so the answer tells the provider whether the
// host took them.
//
// It runs on the host's executor (any_io_executor) and never blocks it; a
// program without an event loop of its own gives it an io_context and runs
// that. Plain HTTP only: put TLS in front (a load balancer or reverse
// proxy), which is where providers' HTTPS endpoints usually end.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mailers/config.hpp>
#include <mailers/logger.hpp>
#include <mailers/sns_certificate_fetcher.hpp>
#include <mailers/unsubscribe.hpp>
#include <mailers/webhook.hpp>
#include <memory>
#include <string>
#include <vector>

namespace mailers {

/// One URL path and the provider that posts to it.
struct webhook_route {
    /// The request path, matched exactly and with letter case; a query
    /// string is ignored. A secret path segment ("/hooks/postmark/<random>")
    /// makes an unguessable URL, which Postmark setups use in place of, or
    /// on top of, basic credentials.
    std::string path;
    webhook_provider provider = webhook_provider::ses;
    /// Keys, secrets and checks for this route. An SES route without a
    /// certificate store gets the server's sns_certificates, and only then
    /// are missing certificates fetched; with a store of its own, a missing
    /// certificate is answered 503.
    webhook_params params;
};

/// Applies a one-click unsubscribe token and says what it was; throwing
/// answers 500 (the mailbox provider, or the person, tries again). With an
/// engine: `[&](std::string_view t) { return eng.unsubscribe(t).status; }`.
using unsubscribe_handler = std::function<unsubscribe_token_status(std::string_view token)>;

struct webhook_server_params {
    /// An IPv4 or IPv6 address to listen on ("0.0.0.0" or "::" for all).
    std::string address = "127.0.0.1";
    std::uint16_t port = 0;  ///< 0: an ephemeral port; see local_endpoint()
    /// Provider webhooks, one path each. May be empty when the server only
    /// serves the unsubscribe or metrics path below.
    std::vector<webhook_route> routes;
    /// One-click unsubscribe (RFC 8058) at `unsubscribe_path`, served when
    /// `unsubscribe` is set; the token is the query parameter `t`, as
    /// unsubscribe_link() writes it. A POST (what a mailbox provider sends
    /// for the List-Unsubscribe-Post header, and what the confirmation
    /// page's button sends) calls `unsubscribe` and answers 200 for a valid
    /// token, 410 for an expired one, 403 for a forged one and 400 for a
    /// malformed or missing one, with a short HTML page. A GET only shows a
    /// page with that button and calls nothing, because link
    /// scanners and previews follow every link in a message.
    std::string unsubscribe_path = "/unsubscribe";
    unsubscribe_handler unsubscribe;
    /// A Prometheus scrape endpoint at `metrics_path` (GET), served
    /// when `metrics` is set: its text (engine::metrics_text() for one)
    /// followed by the server's own counters (mailers_webhook_server_*).
    std::string metrics_path = "/metrics";
    std::function<std::string()> metrics;
    /// Requests with a larger body are answered 413 without reading it.
    /// SendGrid posts event batches of several hundred kilobytes; the default
    /// leaves room and matches webhook_params::max_body_bytes.
    std::size_t max_body_bytes = 4 * 1024 * 1024;
    /// Request line and header fields together; beyond it, 431.
    std::size_t max_header_bytes = 16 * 1024;
    /// From a request's first byte to its last. A client that sends slower
    /// is disconnected (a slow-loris defence).
    std::chrono::milliseconds read_timeout = std::chrono::seconds(30);
    /// How long a connection may wait for its next request, the first one
    /// included, before it is closed.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(60);
    /// Writing one response.
    std::chrono::milliseconds write_timeout = std::chrono::seconds(30);
    /// Connections open at once. Beyond it, new connections wait in the
    /// listen backlog until one closes (they are not refused).
    std::size_t max_connections = 512;
    /// Serve several requests per connection (HTTP/1.1 keep-alive). When
    /// off, every response closes its connection.
    bool keep_alive = true;
    /// Fetches SNS signing certificates for SES routes. When null and an SES
    /// route verifies without a certificate store, the server makes one with
    /// default settings (system CA store).
    std::shared_ptr<sns_certificate_fetcher> sns_certificates;
    /// Confirm SNS subscriptions: a SubscriptionConfirmation on an SES route
    /// that verifies signatures (and, when it lists them, names an allowed
    /// topic) has its SubscribeURL fetched through `sns_certificates` before
    /// the answer; a failed confirmation is answered 503, so SNS sends the
    /// confirmation again, and the callback is not called. When off, or
    /// without a fetcher, the callback gets the `subscription_confirmation`
    /// result with `confirm_url` and confirms as it sees fit.
    bool confirm_sns_subscriptions = true;
    /// Where refusals (info), 5xx answers (warning), callback exceptions
    /// (error) and accept failures are logged; also the default fetcher's.
    logger log;
};

/// Receives what a request delivered: called for every request that
/// parse_webhook() accepted (`result.accepted()`: events, SNS subscription
/// and unsubscribe confirmations, ignored notices), never for a refused one.
/// The callback may move events out of `result`.
///
/// The answer is written after the callback returns: return normally only
/// once the events are safe (stored or queued durably), because a 2xx tells
/// the provider not to deliver them again. Throw to refuse them for now: the
/// exception is logged and answered 500 (the Mailgun token the route's
/// replay cache recorded for the request released first, so that the retry
/// is taken), and every provider retries a 5xx
/// (SNS per the topic's delivery policy, by default only 3 times, 20
/// seconds apart; Mailgun for 8 hours; SendGrid for 24 hours; Postmark
/// about 10 times over 10 hours), so events must be de-duplicated
/// (event::dedup_key) when they come again; `engine::apply_webhook` does
/// that across the workspace's engines. Refusals (4xx) are final for
/// SNS and for Postmark's 403, not for Mailgun, which retries everything but
/// 406; a refused request that comes again is refused again.
///
/// Threading: the callback runs on the server's executor, inside a strand of
/// the connection; different connections may call it concurrently when the
/// executor's io_context is run by several threads. It must not block for
/// long: it holds that thread and the provider's request.
using webhook_callback = std::function<void(const webhook_route&, webhook_result&)>;

struct webhook_server_stats {
    std::uint64_t connections_accepted = 0;
    std::size_t connections_open = 0;
    std::size_t connections_peak = 0;  ///< most connections open at once
    std::uint64_t requests = 0;        ///< requests answered
    /// Connections between a request's first byte and the end of its answer.
    std::size_t requests_in_progress = 0;
    std::uint64_t callback_errors = 0;  ///< callbacks that threw
};

/// Thread safety: every member may be called from any thread. Lifetime:
/// connections keep the server's state alive until they close; destroying
/// the server stops it, answers requests still in flight 503 without
/// calling the callback, and waits for callbacks running on other threads
/// to return (so never destroy it from inside its callback).
class MAILERS_API webhook_server {
public:
    /// Opens the listening socket and starts accepting on `ex`. Throws
    /// mailers::exception (errc::invalid_argument) for a bad address, nothing
    /// to serve (no routes, no unsubscribe handler, no metrics), a path that
    /// does not start with '/' or is served twice, or a zero limit, and boost::system::system_error
    /// when the address cannot be bound.
    webhook_server(boost::asio::any_io_executor ex, webhook_server_params params,
                   webhook_callback callback);
    ~webhook_server();
    webhook_server(const webhook_server&) = delete;
    webhook_server& operator=(const webhook_server&) = delete;

    /// The address and port listened on (the port chosen when it was 0).
    boost::asio::ip::tcp::endpoint local_endpoint() const;

    /// Stops accepting and closes connections: idle ones at once, busy ones
    /// once their current response is written (with `Connection: close`).
    /// Returns at once; work that remains runs on the executor, so that its
    /// io_context's run() returns when it is done. Idempotent.
    void stop();

    webhook_server_stats stats() const;

private:
    struct state;
    std::shared_ptr<state> state_;
};

}  // namespace mailers
