// HTTP API transports: Amazon SES v2, Mailgun, SendGrid v3, Postmark, the
// Gmail API and Microsoft Graph, over one keep-alive HTTPS client.
//
// Each provider is configured by a `*_params` struct, usually read from a DSN:
//
//     ses+api://ACCESS_KEY_ID:SECRET@default?region=eu-west-1&configuration_set=bulk
//     mailgun+api://KEY:mg.example.com@default?region=eu
//     sendgrid+api://KEY@default
//     postmark+api://SERVER_TOKEN@default?stream=outbound
//     gmail+api://default?service_account=/etc/mailers/sa.json&user=rep@example.com
//     gmail+api://CLIENT_ID:CLIENT_SECRET@default?refresh_token=env:GMAIL_RT
//     graph+api://CLIENT_ID:CLIENT_SECRET@default?tenant=TENANT_ID
//
// and `make_http_transport(executor, dsn)` builds the right transport, so that
// moving volume from one provider to another is a configuration change.
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
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mailers {

/// Time limits for each phase of one HTTP exchange. A phase that runs out
/// closes the connection. Whether the send may be retried depends on the
/// phase: see `http_transport`. No timer is left armed on an idle kept-alive
/// connection, so the host's `io_context::run()` returns once sends are done.
struct http_timeouts {
    std::chrono::milliseconds connect = std::chrono::seconds(10);    ///< name resolution + TCP
    std::chrono::milliseconds handshake = std::chrono::seconds(10);  ///< TLS handshake
    std::chrono::milliseconds write = std::chrono::seconds(30);      ///< the whole request
    /// From the last octet of the request to the last octet of the response.
    std::chrono::milliseconds response = std::chrono::seconds(60);
};

/// Sends connections for one host and port to another address, as curl's
/// `--connect-to` does: the request, SNI and certificate verification still
/// use `host`. Meant for tests (a local server standing in for a public
/// API) and private networks that reach a service through a fixed address;
/// name resolution is skipped for a matching request.
struct http_connect_to {
    std::string host;           ///< the name requested, compared without letter case
    std::uint16_t port = 443;   ///< the port requested
    std::string address;        ///< an IPv4 or IPv6 address to connect to instead
    std::uint16_t to_port = 0;  ///< the port to connect to; 0 keeps `port`
};

/// Connection settings shared by every HTTP provider.
struct http_client_params {
    /// Verify the server's certificate chain and that it names the host
    /// (DNS name or IP address; SNI is sent for names). Turn off only for
    /// tests: anyone on the path could then read the API key and the mail.
    bool verify_peer = true;
    /// PEM file of CA certificates to trust instead of the system store.
    std::string ca_file;
    /// Connections kept open to one host at the same time; requests beyond
    /// it wait, in order, for a connection to come back.
    std::size_t max_connections = 16;
    /// An idle connection older than this is closed instead of reused.
    /// Shorter than the usual server keep-alive (60 s and more), so that the
    /// client, not the server, decides when a connection ends.
    std::chrono::milliseconds idle_timeout = std::chrono::seconds(20);
    http_timeouts timeouts;
    /// A response larger than this, an error reply included, fails the send
    /// with `transport_errc::outcome_unknown`, since the request was sent; an
    /// OAuth token request, which carries no mail, fails with
    /// `connection_failed`.
    std::size_t max_response_size = 1024 * 1024;
    /// Connection overrides, empty normally; see http_connect_to.
    std::vector<http_connect_to> connect_to;
    /// Refuses to connect to loopback, private (RFC 1918, 100.64/10),
    /// link-local, unique-local (fc00::/7), unspecified and multicast
    /// addresses, checked on each address a name resolves to as the
    /// connection is made, so that a name cannot be pointed at the host's
    /// own network after it was checked (DNS rebinding). For requests to
    /// URLs a third party chose, such as outbound webhooks.
    bool refuse_private_addresses = false;
    mailers::logger log;
};

// ---------------------------------------------------------------------------
// Provider parameters. Every struct has `endpoint`: empty for the provider's
// public API, or a base URL that replaces it ("https://proxy.example:8443",
// "http://127.0.0.1:8080" for a local test server). Plain http is used only
// when an endpoint says so.

/// Amazon SES v2 `SendEmail` with raw MIME content, signed with SigV4.
struct ses_params {
    std::string access_key_id;
    secret secret_access_key;
    secret session_token;              ///< for temporary credentials, else empty
    std::string region = "us-east-1";  ///< endpoint email.<region>.amazonaws.com
    std::string configuration_set;     ///< ConfigurationSetName, optional
    /// EmailTags sent with every message (names and values: A-Z a-z 0-9 _ -).
    /// The transport adds `mailers_send_id` = outbound::send_id when it is set.
    std::vector<std::pair<std::string, std::string>> tags;
    std::string endpoint;
    render_options render;
    http_client_params http;
};

enum class mailgun_region { us, eu };

/// Mailgun `messages.mime`: the rendered message as a multipart form upload.
struct mailgun_params {
    secret api_key;
    std::string domain;                          ///< the sending domain configured in Mailgun
    mailgun_region region = mailgun_region::us;  ///< api.mailgun.net / api.eu.mailgun.net
    std::vector<std::string> tags;               ///< o:tag, at most 3
    std::string endpoint;
    render_options render;
    http_client_params http;
};

/// SendGrid v3 `mail/send` (JSON). SendGrid builds the MIME itself, so a
/// pre-rendered message (`outbound::raw`) is refused.
struct sendgrid_params {
    secret api_key;
    std::vector<std::string> categories;  ///< at most 10
    std::string endpoint;
    http_client_params http;
};

/// Postmark `/email` (JSON). Postmark builds the MIME itself, so a
/// pre-rendered message (`outbound::raw`) is refused.
struct postmark_params {
    secret server_token;
    std::string message_stream = "outbound";  ///< "outbound" (transactional) or a broadcast stream
    std::string tag;                          ///< one tag per message, optional
    std::string endpoint;
    http_client_params http;
};

/// Gmail API `users.messages.send` with OAuth 2.0, in one of two ways:
///
/// - a service account with domain-wide delegation (`service_account_email`
///   and `private_key`): an RS256-signed JWT is exchanged for a token that
///   acts as the sending user (`sub`); one token per user, so one transport
///   can send for every mailbox of a Workspace domain;
/// - a refresh token granted by one user (`client_id`, `client_secret`,
///   `refresh_token`).
///
/// Tokens are cached and refreshed `refresh_before` their expiry; a 401 from
/// the API drops the cached token so the next send fetches a new one.
struct gmail_params {
    std::string service_account_email;
    secret private_key;  ///< PEM (PKCS#8 or PKCS#1) RSA key of the service account
    std::string client_id;
    secret client_secret;
    secret refresh_token;
    /// The mailbox to send as. Empty: the message's From address with a
    /// service account, "me" with a refresh token.
    std::string user;
    std::string scope = "https://www.googleapis.com/auth/gmail.send";
    std::string endpoint;        ///< default https://gmail.googleapis.com
    std::string token_endpoint;  ///< default https://oauth2.googleapis.com/token
    std::chrono::seconds refresh_before = std::chrono::minutes(5);
    /// Gmail files a message in an existing conversation only when the
    /// request names the thread. When this returns a non-empty id for a
    /// message, it is sent as `threadId`. Otherwise the transport uses the
    /// thread of a message it sent earlier (in this process) that the new
    /// one replies to (In-Reply-To or References).
    std::function<std::string(const outbound&)> thread_id;
    render_options render;
    http_client_params http;
};

/// Microsoft Graph `/users/{id}/sendMail` with a MIME body and the OAuth 2.0
/// client-credentials flow (application permission Mail.Send).
struct graph_params {
    std::string tenant;  ///< directory (tenant) id or domain
    std::string client_id;
    secret client_secret;
    /// The mailbox to send as (user id or user principal name). Empty: the
    /// message's From address.
    std::string user;
    std::string scope = "https://graph.microsoft.com/.default";
    std::string endpoint;  ///< default https://graph.microsoft.com
    std::string
        token_endpoint;  ///< default https://login.microsoftonline.com/<tenant>/oauth2/v2.0/token
    std::chrono::seconds refresh_before = std::chrono::minutes(5);
    /// Requests in flight for one mailbox. Graph refuses a fifth concurrent
    /// request per application and mailbox (429, MailboxConcurrency), and a
    /// Retry-After does not help with that limit, so sends beyond it wait here.
    std::size_t max_concurrent_per_mailbox = 4;
    render_options render;
    http_client_params http;
};

using http_provider_params = std::variant<ses_params, mailgun_params, sendgrid_params,
                                          postmark_params, gmail_params, graph_params>;

/// Counters since construction, for tests and metrics.
struct http_stats {
    std::uint64_t requests = 0;            ///< API requests written (token requests excluded)
    std::uint64_t accepted = 0;            ///< 2xx replies from the API
    std::uint64_t refused = 0;             ///< other replies from the API
    std::uint64_t failed = 0;              ///< no reply (connection, TLS, timeout)
    std::uint64_t connections_opened = 0;  ///< TCP (+TLS) connections established
    std::uint64_t token_requests = 0;      ///< OAuth token requests written
};

/// Sends through a provider's HTTP API.
///
/// Each send turns the `outbound` into the provider's request (raw MIME for
/// SES, Mailgun, Gmail and Graph; JSON fields for SendGrid and Postmark),
/// takes a keep-alive connection from the pool for that host (opening one
/// when fewer than `max_connections` are open, else waiting), writes the
/// request and reads the reply.
///
/// Pre-rendered messages (`outbound::raw`): SES, Mailgun, Gmail and Graph
/// send the bytes in place of rendering `msg` (Gmail and Graph with the Bcc
/// field described below put in front); a CR or LF outside a CRLF pair is
/// refused. SendGrid and Postmark have no API for MIME and refuse the send
/// with `errc::invalid_argument`. Both refusals come before any request.
///
/// Recipients: the envelope decides who receives the message (built from the
/// message when `out.env.rcpt_to` is empty). SES and Mailgun deliver to the
/// envelope as given. The providers that take recipients from fields or
/// headers (SendGrid, Postmark, Gmail, Graph) would deliver to every To and
/// Cc address, so a To or Cc address missing from the envelope refuses the
/// send (`errc::invalid_argument`, nothing written); envelope addresses not in
/// To or Cc are sent as Bcc.
///
/// Recipient limits: a send with more recipients (To, Cc and Bcc together,
/// each address once) than its provider documents for one message is
/// refused with `errc::invalid_argument` before any request, a token request
/// included: SES 50, Postmark 50, the Gmail API 100 (Google Workspace's
/// limit), Mailgun 1000, SendGrid 1000, Graph 1000 (Exchange Online's
/// ceiling; a lower limit set by the tenant is not checked).
///
/// Display names: SendGrid accepts a name holding ',' or ';' and then drops
/// the mail, so the SendGrid transport replaces each of them by one space
/// (none where a space is already next to it) and trims the ends; a name
/// with nothing else left is not sent.
///
/// Correlation: when `out.send_id` is set it travels with the message as the
/// provider's custom data (`mailers_send_id`: SES tag, Mailgun `v:` variable,
/// SendGrid custom_args, Postmark Metadata), so webhook events can be matched.
///
/// Completion:
/// - accepted (2xx): `provider_message_id` is the provider's id (SES
///   MessageId, Mailgun id without brackets, SendGrid X-Message-Id, Postmark
///   MessageID, Gmail id; for Graph, which returns none, the Message-ID of the
///   MIME sent). A complete 2xx reply is a success even when its body is not
///   what the provider documents (the id is then empty); a 2xx cut short is
///   an unknown outcome (below).
/// - refused: the reply classified by the table in
///   src/transports/http/error_mapping.cpp (e.g. SES "Daily message quota
///   exceeded" is `transport_errc::sender_quota_exhausted`, Postmark 406
///   `recipient_rejected`, any 429 `rate_limited`, 5xx `temporary_reply`
///   except the gateway timeouts 504, 524 and 598, which are
///   `outcome_unknown`: the gateway passed the request on and got no answer),
///   with `diag.status`, `diag.provider_code`, `diag.provider_reply` (the
///   body), `diag.request_id` and `diag.retry_after` (Retry-After, SendGrid's
///   X-RateLimit-Reset, Gmail's "Retry after <time>") set when known.
/// - no connection, a TLS failure, or a timeout before the request was
///   completely written: `transport_errc::connection_failed` or
///   `timeout_before_send`; nothing reached the provider. A reused connection
///   that turns out to be closed is replaced once, silently.
/// - the connection lost, timed out or answered with garbage after the whole
///   request was written, a response cut short (a 2xx included) or larger
///   than `max_response_size` (an error reply included):
///   `transport_errc::outcome_unknown`. The provider may have accepted the
///   message; never send it again.
/// - SES refusing the request for its signing time ("Signature expired",
///   RequestTimeTooSkewed ...) when the reply's Date is a minute or more
///   from that time: the transport takes the server's clock from Date, signs
///   the request again with it, and sends it once more (the refusal means
///   SES took nothing); later requests are signed with that clock. Without a
///   usable Date, or refused again, the refusal is the result.
/// - a certificate that does not verify or does not name the host:
///   `transport_errc::tls_verification_failed`.
/// - an OAuth token request that fails: its reply classified the same way
///   (invalid_grant and invalid_client are `authentication_failed`, any 429
///   `rate_limited`), except that a reply that would be an unknown outcome
///   (504 ...) is `temporary_reply`; a token request lost in flight, cut
///   short or over `max_response_size` is `connection_failed`, since no mail
///   was sent.
/// - a message that does not render: its `errc` (e.g. `errc::invalid_address`).
/// `diag.message` names the provider, the host and what happened; it never
/// holds a credential or an access token.
///
/// Executor: I/O runs on the executor given to the constructor, which may be
/// an io_context run by several threads: a connection's operations never
/// overlap, so they need no strand. The handler runs on its associated
/// executor, else that executor, never inside `async_send`.
///
/// Cancellation: none per operation. Destroying the transport closes idle
/// connections and fails sends still waiting for a connection with
/// `errc::operation_aborted`; sends already on a connection finish.
///
/// Thread safety: `async_send` and `stats` may be called concurrently from
/// any thread.
///
/// Lifetime: operations share the transport's state, so one in flight when
/// the transport is destroyed still completes, safely.
class MAILERS_API http_transport final : public provider_transport {
public:
    /// Throws `mailers::exception` (`errc::invalid_argument`) when a required
    /// parameter is missing or malformed, the endpoint is not an http(s) URL,
    /// the CA file or the private key cannot be read. The message names the
    /// parameter, never its value when it is a secret.
    http_transport(boost::asio::any_io_executor ex, http_provider_params params);
    ~http_transport() override;

    /// "ses", "mailgun", "sendgrid", "postmark", "gmail" or "graph".
    std::string_view name() const noexcept override;

    http_stats stats() const;

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;
    /// One read-only request with the send's credentials: SES GetAccount
    /// (GET /v2/email/account), Mailgun GET /v3/domains/{domain}, SendGrid
    /// GET /v3/scopes, Postmark GET /server; Gmail and Graph fetch an
    /// access token. A refusal is classified as a send's would be (a key
    /// the provider refuses is `transport_errc::authentication_failed`).
    void do_check(any_check_handler handler) override;

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

/// Reads a provider's parameters from a DSN. Secret references (`env:`,
/// `file:`) are resolved. Options every scheme takes:
///
///     endpoint=URL        replace the provider's base URL (tests, proxies, regions)
///     verify=true|false   certificate verification (default true)
///     ca_file=PATH        trust these CAs instead of the system store
///     max_connections=N   per host (default 16)
///     connect_timeout=S, timeout=S   seconds for connect+handshake / the response
///
/// and per scheme:
///
///     ses+api://KEY_ID:SECRET@default?region=R&configuration_set=C&tag=Name:Value&token=SESSION
///     mailgun+api://KEY:DOMAIN@default?region=us|eu&tag=T
///     sendgrid+api://KEY@default?category=C
///     postmark+api://TOKEN@default?stream=S&tag=T
///     gmail+api://default?service_account=/path/key.json&user=U
///     gmail+api://SA_EMAIL@default?private_key=file:/path/key.pem&user=U
///     gmail+api://CLIENT_ID:CLIENT_SECRET@default?refresh_token=RT&user=me
///     graph+api://CLIENT_ID:CLIENT_SECRET@default?tenant=T&user=U&max_concurrent=4
///
/// gmail and graph also take `token_endpoint=URL` and `scope=S`. A host
/// other than `default` is the API host (https, port optional). `tag`,
/// `category` may repeat. An unknown option is an error, so a typo does not
/// go unnoticed. Errors are `errc::invalid_argument` with `diag->message`
/// naming the part that is wrong; an unsupported scheme lists the supported
/// ones.
MAILERS_API boost::system::result<http_provider_params> http_params_from_dsn(
    const dsn& d, diagnostics* diag = nullptr);

/// Builds the transport for a DSN with one of `http_transport_schemes()`;
/// errors as `http_params_from_dsn` and the constructor, without throwing.
MAILERS_API boost::system::result<std::shared_ptr<http_transport>> make_http_transport(
    boost::asio::any_io_executor ex, const dsn& d, diagnostics* diag = nullptr);

/// Parses `dsn_text` (a single DSN, not a composite) and builds the transport.
MAILERS_API boost::system::result<std::shared_ptr<http_transport>> make_http_transport(
    boost::asio::any_io_executor ex, std::string_view dsn_text, diagnostics* diag = nullptr);

/// ses+api, mailgun+api, sendgrid+api, postmark+api, gmail+api, graph+api.
MAILERS_API std::span<const std::string_view> http_transport_schemes() noexcept;

}  // namespace mailers
