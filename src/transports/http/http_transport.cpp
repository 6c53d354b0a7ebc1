// The transport around the providers: OAuth tokens, the per-mailbox
// concurrency limit, the exchange, and the reading of the reply. Also the
// DSN reader and the factory.
#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <deque>
#include <fstream>
#include <mailers/transports/http_transports.hpp>
#include <mutex>
#include <sstream>
#include <unordered_map>

#include "http/client.hpp"
#include "transports/http/common.hpp"
#include "transports/http/error_mapping.hpp"
#include "transports/http/oauth2.hpp"
#include "transports/http/provider.hpp"

namespace mailers {
namespace detail {

[[noreturn]] void throw_invalid(std::string message) {
    throw exception(make_error_code(errc::invalid_argument), std::move(message));
}

http::endpoint resolve_endpoint(std::string_view provider, const std::string& override_url,
                                std::string_view default_host) {
    diagnostics d;
    auto ep = http::parse_endpoint(
        override_url.empty() ? "https://" + std::string(default_host) : override_url, &d);
    if (!ep) throw_invalid(std::string(provider) + ": " + d.message);
    return std::move(*ep);
}

}  // namespace detail

// ---------------------------------------------------------------------------

struct http_transport::impl : std::enable_shared_from_this<impl> {
    struct job {
        // Built in one go: Boost 1.81's any_completion_handler move
        // assignment recurses without end, so the handler is only ever
        // move-constructed.
        job(std::shared_ptr<const outbound> o, any_send_handler h)
            : out(std::move(o)), handler(std::move(h)) {}
        std::shared_ptr<const outbound> out;
        any_send_handler handler;
        std::string limit_key;
        // sending_user(), asked once (it may run IDNA); `user_diag` is
        // what the send fails with when it failed.
        boost::system::result<std::string> user{std::string{}};
        diagnostics user_diag;
        bool sent_again = false;  // the provider's retry_refused() was taken up
    };
    struct slot {
        std::size_t active = 0;
        std::deque<std::shared_ptr<job>> waiting;
    };

    impl(boost::asio::any_io_executor e, http_provider_params params)
        : ex(std::move(e)),
          client(std::make_unique<http::client>(
              ex, std::visit([](const auto& p) -> const http_client_params& { return p.http; },
                             params))) {
        provider = std::visit(
            [&](const auto& p) -> std::unique_ptr<detail::http_provider> {
                using T = std::decay_t<decltype(p)>;
                if constexpr (std::is_same_v<T, ses_params>) return detail::make_ses(p);
                if constexpr (std::is_same_v<T, mailgun_params>) return detail::make_mailgun(p);
                if constexpr (std::is_same_v<T, sendgrid_params>) return detail::make_sendgrid(p);
                if constexpr (std::is_same_v<T, postmark_params>) return detail::make_postmark(p);
                if constexpr (std::is_same_v<T, gmail_params>)
                    return detail::make_gmail(p, *client, ex);
                if constexpr (std::is_same_v<T, graph_params>)
                    return detail::make_graph(p, *client, ex);
            },
            params);
        tokens = provider->tokens();
        log = std::visit([](const auto& p) { return p.http.log; }, params);
    }

    boost::asio::any_io_executor ex;
    std::unique_ptr<http::client> client;
    std::unique_ptr<detail::http_provider> provider;
    std::shared_ptr<detail::token_source> tokens;
    mailers::logger log;

    std::atomic<std::uint64_t> accepted{0};
    std::atomic<std::uint64_t> refused{0};
    std::atomic<std::uint64_t> failed{0};

    std::mutex limit_mu;
    std::unordered_map<std::string, slot> slots;

    void send(std::shared_ptr<const outbound> out, any_send_handler handler) {
        auto j = std::make_shared<job>(std::move(out), std::move(handler));
        diagnostics diag;
        if (auto ec = detail::check_recipient_limit(*j->out, provider->name(),
                                                    provider->max_recipients(), diag))
            return finish(std::move(j), ec, send_outcome{{}, std::move(diag)});
        j->user = provider->sending_user(*j->out, j->user_diag);
        // A send without a user is not limited: it fails before its request.
        auto [key, limit] =
            j->user ? provider->concurrency(*j->user) : std::pair<std::string, std::size_t>{};
        if (!key.empty()) {
            std::lock_guard lock(limit_mu);
            auto& s = slots[key];
            j->limit_key = std::move(key);
            if (s.active >= limit) {
                s.waiting.push_back(std::move(j));
                return;
            }
            ++s.active;
        }
        proceed(std::move(j));
    }

    // The key of a send's token in the cache: its user for a per-user
    // token, the one shared key otherwise.
    const std::string& token_subject(const job& j) const {
        static const std::string shared;
        return provider->token_per_user() ? *j.user : shared;
    }

    void fail_without_user(std::shared_ptr<job> j) {
        const auto ec = j->user.error();
        auto diag = std::move(j->user_diag);
        finish(std::move(j), ec, send_outcome{{}, std::move(diag)});
    }

    void proceed(std::shared_ptr<job> j) {
        if (!tokens) return exchange(std::move(j), {});
        if (!j->user && provider->token_per_user()) return fail_without_user(std::move(j));
        tokens->async_token(
            token_subject(*j), [self = shared_from_this(), j](error_code ec, std::string token,
                                                              diagnostics d) mutable {
                if (ec) {
                    d.message = std::string(self->provider->name()) + ": " + d.message;
                    return self->finish(std::move(j), ec, send_outcome{{}, std::move(d)});
                }
                self->exchange(std::move(j), std::move(token));
            });
    }

    void exchange(std::shared_ptr<job> j, std::string token) {
        if (!j->user) return fail_without_user(std::move(j));
        auto prep = std::make_shared<detail::prepared>();
        diagnostics diag;
        const detail::build_context ctx{token, *j->user, std::chrono::system_clock::now()};
        if (auto ec = provider->build(*j->out, ctx, *prep, diag))
            return finish(std::move(j), ec, send_outcome{{}, std::move(diag)});
        auto req = std::move(prep->req);
        client->async_exchange(provider->api(), std::move(req),
                               [self = shared_from_this(), j, prep,
                                token = std::move(token)](http::exchange_result r) mutable {
                                   self->complete(std::move(j), *prep, token, std::move(r));
                               });
    }

    void complete(std::shared_ptr<job> j, const detail::prepared& prep, const std::string& token,
                  http::exchange_result r) {
        send_outcome outcome;
        const auto name = provider->name();
        if (r.ec) {
            failed.fetch_add(1, std::memory_order_relaxed);
            outcome.diag.message = std::string(name) + ": " + r.what;
            log.log(log_level::warning, outcome.diag.message);
            return finish(std::move(j), r.ec, std::move(outcome));
        }
        if (r.resp.status / 100 == 2) {
            accepted.fetch_add(1, std::memory_order_relaxed);
            provider->accepted(*j->out, prep, r.resp, outcome);
            outcome.diag.status = static_cast<int>(r.resp.status);
            return finish(std::move(j), {}, std::move(outcome));
        }
        refused.fetch_add(1, std::memory_order_relaxed);
        const auto now = std::chrono::system_clock::now();
        auto ec = detail::map_http_error(name, r.resp, now, outcome.diag);
        // A token the API refuses is dropped so that the next send fetches a
        // new one instead of failing until the cached one expires.
        if (tokens && r.resp.status == 401) tokens->invalidate(token_subject(*j), token);
        if (!j->sent_again && provider->retry_refused(prep, r.resp, now)) {
            j->sent_again = true;
            log.log(log_level::info, outcome.diag.message + "; building the request again");
            return proceed(std::move(j));
        }
        log.log(log_level::info, outcome.diag.message);
        finish(std::move(j), ec, std::move(outcome));
    }

    // The connection check: the provider's token when it has one, then its
    // check request when it has one. Its outcome is classified as a send's.
    void check(any_check_handler handler) {
        auto h = std::make_shared<any_check_handler>(std::move(handler));
        if (!tokens) return check_request(std::move(h), {});
        tokens->async_token(provider->check_subject(), [self = shared_from_this(), h](
                                                           error_code ec, std::string token,
                                                           diagnostics d) mutable {
            if (ec) {
                d.message = std::string(self->provider->name()) + ": " + d.message;
                return std::move(*h)(ec, std::move(d));
            }
            self->check_request(std::move(h), std::move(token));
        });
    }

    void check_request(std::shared_ptr<any_check_handler> h, std::string token) {
        const std::string name(provider->name());
        detail::prepared prep;
        diagnostics diag;
        const detail::build_context ctx{token, {}, std::chrono::system_clock::now()};
        if (auto ec = provider->build_check(ctx, prep, diag))
            return std::move(*h)(ec, std::move(diag));
        if (prep.req.target.empty()) {
            diag.message = tokens ? name + ": an access token was issued by " + tokens->token_url()
                                  : name + ": nothing to check";
            return std::move(*h)(error_code{}, std::move(diag));
        }
        std::string what = name + ": " + std::string(prep.req.method) + " " + prep.req.target;
        client->async_exchange(
            provider->api(), std::move(prep.req),
            [h, name, what = std::move(what)](http::exchange_result r) mutable {
                diagnostics d;
                if (r.ec) {
                    d.message = name + ": " + r.what;
                    return std::move(*h)(r.ec, std::move(d));
                }
                if (r.resp.status / 100 == 2) {
                    d.status = static_cast<int>(r.resp.status);
                    d.message = what + " answered " + std::to_string(r.resp.status);
                    return std::move(*h)(error_code{}, std::move(d));
                }
                auto ec = detail::map_http_error(name, r.resp, std::chrono::system_clock::now(), d);
                std::move (*h)(ec, std::move(d));
            });
    }

    void finish(std::shared_ptr<job> j, error_code ec, send_outcome outcome) {
        if (!j->limit_key.empty()) {
            std::shared_ptr<job> next;
            {
                std::lock_guard lock(limit_mu);
                auto it = slots.find(j->limit_key);
                if (it != slots.end()) {
                    if (!it->second.waiting.empty()) {
                        next = std::move(it->second.waiting.front());
                        it->second.waiting.pop_front();
                    } else if (--it->second.active == 0) {
                        slots.erase(it);
                    }
                }
            }
            if (next) proceed(std::move(next));
        }
        auto h = std::move(j->handler);
        std::move(h)(ec, std::move(outcome));
    }
};

http_transport::http_transport(boost::asio::any_io_executor ex, http_provider_params params)
    : provider_transport(ex), impl_(std::make_shared<impl>(ex, std::move(params))) {}

http_transport::~http_transport() {
    // Operations in flight keep the state alive and finish; what waits for a
    // connection fails now rather than whenever one frees up.
    impl_->client->shutdown();
}

std::string_view http_transport::name() const noexcept {
    return impl_->provider->name();
}

http_stats http_transport::stats() const {
    http_stats s;
    const auto c = impl_->client->stats();
    s.connections_opened = c.connections_opened;
    s.accepted = impl_->accepted.load(std::memory_order_relaxed);
    s.refused = impl_->refused.load(std::memory_order_relaxed);
    s.failed = impl_->failed.load(std::memory_order_relaxed);
    s.token_requests = impl_->tokens ? impl_->tokens->requests() : 0;
    s.requests = c.requests >= s.token_requests ? c.requests - s.token_requests : c.requests;
    return s;
}

void http_transport::do_send(std::shared_ptr<const outbound> out, any_send_handler handler) {
    impl_->send(std::move(out), std::move(handler));
}

void http_transport::do_check(any_check_handler handler) {
    impl_->check(std::move(handler));
}

// ---------------------------------------------------------------------------
// DSNs

namespace {

constexpr std::array<std::string_view, 6> schemes{"ses+api",      "mailgun+api", "sendgrid+api",
                                                  "postmark+api", "gmail+api",   "graph+api"};

constexpr std::string_view common_options[] = {"endpoint",        "verify",  "ca_file",
                                               "max_connections", "timeout", "connect_timeout"};

struct dsn_error {
    std::string message;
};

bool parse_bool(std::string_view v, bool& out) {
    if (v == "true" || v == "1" || v == "yes" || v == "on") {
        out = true;
        return true;
    }
    if (v == "false" || v == "0" || v == "no" || v == "off") {
        out = false;
        return true;
    }
    return false;
}

bool parse_count(std::string_view v, std::size_t& out) {
    auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), out);
    return ec == std::errc{} && p == v.data() + v.size() && out > 0;
}

std::string read_whole_file(const std::string& path, bool& ok) {
    std::ifstream f(path, std::ios::binary);
    ok = static_cast<bool>(f);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Reads the options every scheme takes; returns the endpoint override.
void read_common(const dsn& d, http_client_params& http, std::string& endpoint) {
    if (d.host != "default") {
        endpoint = "https://";
        endpoint += d.host.find(':') != std::string::npos ? "[" + d.host + "]" : d.host;
        if (d.port) endpoint += ":" + std::to_string(*d.port);
        endpoint += d.path;
    }
    if (auto v = d.option("endpoint")) endpoint = *v;
    if (auto v = d.option("verify"); v && !parse_bool(*v, http.verify_peer))
        throw dsn_error{"option verify must be true or false"};
    if (auto v = d.option("ca_file")) http.ca_file = *v;
    if (auto v = d.option("max_connections"); v && !parse_count(*v, http.max_connections))
        throw dsn_error{"option max_connections must be a positive number"};
    std::size_t secs = 0;
    if (auto v = d.option("timeout")) {
        if (!parse_count(*v, secs))
            throw dsn_error{"option timeout must be a positive number of seconds"};
        http.timeouts.response = std::chrono::seconds(secs);
    }
    if (auto v = d.option("connect_timeout")) {
        if (!parse_count(*v, secs))
            throw dsn_error{"option connect_timeout must be a positive number of seconds"};
        http.timeouts.connect = http.timeouts.handshake = std::chrono::seconds(secs);
    }
    if (!endpoint.empty()) {
        diagnostics ed;
        if (!http::parse_endpoint(endpoint, &ed)) throw dsn_error{"option " + ed.message};
    }
}

void check_options(const dsn& d, std::initializer_list<std::string_view> own) {
    for (const auto& [name, value] : d.options) {
        const bool known = std::find(std::begin(common_options), std::end(common_options), name) !=
                               std::end(common_options) ||
                           std::find(own.begin(), own.end(), name) != own.end();
        if (known) continue;
        std::string list;
        for (auto o : own) list += std::string(list.empty() ? "" : ", ") + std::string(o);
        for (auto o : common_options) list += ", " + std::string(o);
        throw dsn_error{"unknown option '" + name + "' for " + d.scheme +
                        " (expected one of: " + list + ")"};
    }
}

http_provider_params read_params(const dsn& d) {
    if (d.scheme == "ses+api") {
        check_options(d, {"region", "configuration_set", "tag", "token"});
        ses_params p;
        read_common(d, p.http, p.endpoint);
        p.access_key_id = d.user.reveal();
        p.secret_access_key = d.password;
        if (p.access_key_id.empty() || p.secret_access_key.empty())
            throw dsn_error{
                "ses+api needs the access key id as user and the secret access key as password"};
        if (auto v = d.option("region")) p.region = *v;
        if (auto v = d.option("token")) p.session_token = secret(*v);
        if (auto v = d.option("configuration_set")) p.configuration_set = *v;
        for (const auto& t : d.options_named("tag")) {
            const auto colon = t.find(':');
            if (colon == std::string::npos || colon == 0)
                throw dsn_error{"option tag must be Name:Value"};
            p.tags.emplace_back(t.substr(0, colon), t.substr(colon + 1));
        }
        return p;
    }
    if (d.scheme == "mailgun+api") {
        check_options(d, {"region", "tag"});
        mailgun_params p;
        read_common(d, p.http, p.endpoint);
        p.api_key = d.user;
        p.domain = d.password.reveal();
        if (p.api_key.empty() || p.domain.empty())
            throw dsn_error{
                "mailgun+api needs the API key as user and the sending domain as password"};
        if (auto v = d.option("region")) {
            if (*v == "eu")
                p.region = mailgun_region::eu;
            else if (*v != "us")
                throw dsn_error{"option region must be us or eu"};
        }
        p.tags = d.options_named("tag");
        return p;
    }
    if (d.scheme == "sendgrid+api") {
        check_options(d, {"category"});
        sendgrid_params p;
        read_common(d, p.http, p.endpoint);
        p.api_key = d.user;
        if (p.api_key.empty()) throw dsn_error{"sendgrid+api needs the API key as user"};
        p.categories = d.options_named("category");
        return p;
    }
    if (d.scheme == "postmark+api") {
        check_options(d, {"stream", "tag"});
        postmark_params p;
        read_common(d, p.http, p.endpoint);
        p.server_token = d.user;
        if (p.server_token.empty()) throw dsn_error{"postmark+api needs the server token as user"};
        if (auto v = d.option("stream")) p.message_stream = *v;
        if (auto v = d.option("tag")) p.tag = *v;
        return p;
    }
    if (d.scheme == "gmail+api") {
        check_options(d, {"service_account", "private_key", "refresh_token", "user", "scope",
                          "token_endpoint"});
        gmail_params p;
        read_common(d, p.http, p.endpoint);
        if (auto v = d.option("user")) p.user = *v;
        if (auto v = d.option("scope")) p.scope = *v;
        if (auto v = d.option("token_endpoint")) p.token_endpoint = *v;
        if (auto v = d.option("refresh_token")) {
            p.client_id = d.user.reveal();
            p.client_secret = d.password;
            p.refresh_token = secret(*v);
            if (p.client_id.empty() || p.client_secret.empty())
                throw dsn_error{
                    "gmail+api with refresh_token needs the OAuth client id as user and "
                    "the client secret as password"};
        } else if (auto path = d.option("service_account")) {
            bool ok = false;
            const auto text = read_whole_file(*path, ok);
            if (!ok || text.empty())
                throw dsn_error{"cannot read the service account key file " + *path};
            std::string email, key, token_uri;
            const detail::json_member m[] = {
                {"client_email", &email}, {"private_key", &key}, {"token_uri", &token_uri}};
            if (!detail::read_json_members(text, m) || email.empty() || key.empty())
                throw dsn_error{"the service account key file " + *path +
                                " lacks client_email or private_key"};
            p.service_account_email = std::move(email);
            p.private_key = secret(std::move(key));
            if (p.token_endpoint.empty()) p.token_endpoint = std::move(token_uri);
        } else if (auto v = d.option("private_key")) {
            p.service_account_email = d.user.reveal();
            p.private_key = secret(*v);
            if (p.service_account_email.empty())
                throw dsn_error{
                    "gmail+api with private_key needs the service account email as user"};
        } else {
            throw dsn_error{
                "gmail+api needs service_account=PATH, private_key=PEM (with the "
                "service account email as user) or refresh_token=TOKEN"};
        }
        return p;
    }
    if (d.scheme == "graph+api") {
        check_options(d, {"tenant", "user", "scope", "token_endpoint", "max_concurrent"});
        graph_params p;
        read_common(d, p.http, p.endpoint);
        p.client_id = d.user.reveal();
        p.client_secret = d.password;
        if (p.client_id.empty() || p.client_secret.empty())
            throw dsn_error{
                "graph+api needs the application (client) id as user and the client "
                "secret as password"};
        if (auto v = d.option("tenant")) p.tenant = *v;
        if (auto v = d.option("user")) p.user = *v;
        if (auto v = d.option("scope")) p.scope = *v;
        if (auto v = d.option("token_endpoint")) p.token_endpoint = *v;
        if (auto v = d.option("max_concurrent");
            v && !parse_count(*v, p.max_concurrent_per_mailbox))
            throw dsn_error{"option max_concurrent must be a positive number"};
        if (p.tenant.empty() && p.token_endpoint.empty())
            throw dsn_error{"graph+api needs tenant=TENANT_ID"};
        return p;
    }
    std::string list;
    for (auto s : schemes) list += std::string(list.empty() ? "" : ", ") + std::string(s);
    throw dsn_error{"scheme '" + d.scheme + "' is not an HTTP API transport (supported: " + list +
                    ")"};
}

}  // namespace

boost::system::result<http_provider_params> http_params_from_dsn(const dsn& in, diagnostics* diag) {
    dsn d = in;
    if (auto r = resolve_secrets(d, diag); !r) return r.error();
    try {
        return read_params(d);
    } catch (const dsn_error& e) {
        if (diag) diag->message = e.message;
        return make_error_code(errc::invalid_argument);
    }
}

boost::system::result<std::shared_ptr<http_transport>> make_http_transport(
    boost::asio::any_io_executor ex, const dsn& d, diagnostics* diag) {
    auto params = http_params_from_dsn(d, diag);
    if (!params) return params.error();
    try {
        return std::make_shared<http_transport>(std::move(ex), std::move(*params));
    } catch (const exception& e) {
        if (diag) diag->message = e.diag().message;
        return e.code();
    }
}

boost::system::result<std::shared_ptr<http_transport>> make_http_transport(
    boost::asio::any_io_executor ex, std::string_view dsn_text, diagnostics* diag) {
    auto d = parse_single_dsn(dsn_text, diag);
    if (!d) return d.error();
    return make_http_transport(std::move(ex), *d, diag);
}

std::span<const std::string_view> http_transport_schemes() noexcept {
    return schemes;
}

}  // namespace mailers
