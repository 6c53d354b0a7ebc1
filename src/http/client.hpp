// The HTTP/1.1 client under the provider transports: a keep-alive pool per
// host with a connection limit, TLS verified against the system store (or a
// CA file), per-phase timeouts, and errors that say whether the request may
// have reached the server.
//
// The header keeps Beast and OpenSSL out, so that only client.cpp pays for
// them at compile time; requests and responses are plain structs.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/system/result.hpp>
#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/transports/http_transports.hpp>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "mime/text.hpp"

namespace mailers::http {

/// Where requests go: scheme, host and port, plus a path prefix that is put
/// in front of every request target ("" or "/prefix", no trailing slash).
struct endpoint {
    bool tls = true;
    std::string host;  ///< lower-cased; IPv6 without brackets
    std::uint16_t port = 443;
    std::string base_path;
    bool host_is_ip = false;
    std::string host_header;  ///< Host header value: host, [v6] and ":port" when not the default
};

/// Parses "https://host[:port][/prefix]" or "http://...". No user info, query
/// or fragment. `diag->message` names what is wrong.
boost::system::result<endpoint> parse_endpoint(std::string_view url, diagnostics* diag = nullptr);

/// Splits a full URL into its endpoint and the request target (path and
/// query, "/" when empty); used for token endpoints.
boost::system::result<std::pair<endpoint, std::string>> parse_url(std::string_view url,
                                                                  diagnostics* diag = nullptr);

/// True for loopback, private (10/8, 172.16/12, 192.168/16, 100.64/10),
/// link-local, unique-local (fc00::/7), unspecified, multicast, broadcast
/// and other reserved (0/8, 240/4) addresses; an IPv4-mapped IPv6 address
/// is judged as its IPv4 one. What `http_client_params::
/// refuse_private_addresses` refuses.
bool is_private_address(const boost::asio::ip::address& a) noexcept;

struct field {
    std::string name;
    std::string value;
};

/// Case-insensitive lookup; "" when absent.
inline std::string_view find_field(std::span<const field> fields, std::string_view name) noexcept {
    for (const auto& f : fields)
        if (mime::iequals(f.name, name)) return f.value;
    return {};
}

struct request {
    std::string_view method = "POST";  ///< must outlive the exchange: use literals
    std::string target;                ///< "/v3/mail/send"; the endpoint's base path is prepended
    /// Besides Host, Content-Length, User-Agent and Connection, which the
    /// client writes. CR, LF or NUL in a name or value fails the request
    /// with `transport_errc::configuration` before anything is sent.
    std::vector<field> headers;
    std::string body;
};

struct response {
    unsigned status = 0;
    std::vector<field> headers;
    std::string body;

    std::string_view header(std::string_view name) const noexcept {
        return find_field(headers, name);
    }
};

/// What an exchange produced. On failure `ec` is one of
/// transport_errc::{connection_failed, timeout_before_send,
/// tls_verification_failed, outcome_unknown, configuration} or
/// errc::operation_aborted, and `what` says what happened for people.
struct exchange_result {
    error_code ec;
    response resp;
    std::string what;
};

struct client_stats {
    std::uint64_t requests = 0;            ///< requests written completely
    std::uint64_t connections_opened = 0;  ///< established (TCP, and TLS when used)
    std::uint64_t connections_reused = 0;  ///< exchanges on a connection used before
};

using exchange_handler = boost::asio::any_completion_handler<void(exchange_result)>;

/// Thread safety: `async_exchange`, `stats` and the destructor may be called
/// from any thread. Lifetime: operations in flight keep the client's state
/// alive; destroying the client closes idle connections and fails requests
/// waiting for a connection with errc::operation_aborted.
class client {
public:
    /// Throws mailers::exception (errc::invalid_argument) when the CA file
    /// cannot be loaded or the parameters are out of range.
    client(boost::asio::any_io_executor ex, const http_client_params& params);
    ~client();
    client(const client&) = delete;
    client& operator=(const client&) = delete;

    /// Sends `req` to `ep` and reads the response. The handler is called
    /// exactly once, from the client's executor (never inside
    /// this call).
    void async_exchange(const endpoint& ep, request req, exchange_handler handler);

    client_stats stats() const;

    /// Closes idle connections and fails waiting and later requests with
    /// errc::operation_aborted; exchanges in flight finish. Idempotent.
    void shutdown();

private:
    struct state;
    std::shared_ptr<state> state_;
};

}  // namespace mailers::http
