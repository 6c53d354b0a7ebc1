#include <algorithm>
#include <atomic>
#include <mailers/sns_certificate_fetcher.hpp>
#include <mutex>
#include <unordered_map>

#include "core/post.hpp"
#include "http/client.hpp"
#include "webhooks/sns.hpp"

namespace mailers {

namespace asio = boost::asio;
using steady = std::chrono::steady_clock;
using fetch_handler = asio::any_completion_handler<sns_certificate_fetcher::fetch_signature>;

namespace {

http_client_params client_params(const sns_certificate_fetcher_params& p) {
    if (p.max_certificates == 0 || p.max_certificate_bytes == 0 || p.timeout.count() <= 0 ||
        p.ttl.count() <= 0)
        throw exception(make_error_code(errc::invalid_argument),
                        "sns_certificate_fetcher: max_certificates, max_certificate_bytes, "
                        "timeout and ttl must be positive");
    http_client_params h;
    h.verify_peer = true;
    h.ca_file = p.ca_file;
    // SNS certificates are fetched rarely; one connection per host is plenty
    // and keeps a flood of distinct URLs from opening many.
    h.max_connections = 2;
    h.timeouts = {p.timeout, p.timeout, p.timeout, p.timeout};
    h.max_response_size = p.max_certificate_bytes;
    h.connect_to = p.connect_to;
    h.log = p.log;
    return h;
}

void complete(fetch_handler h, const asio::any_io_executor& io, error_code ec,
              std::shared_ptr<const sns_certificate> cert) {
    detail::complete_later(io, std::move(h), ec, std::move(cert));
}

}  // namespace

struct sns_certificate_fetcher::state : std::enable_shared_from_this<state> {
    state(asio::any_io_executor e, sns_certificate_fetcher_params p)
        : ex(std::move(e)), params(std::move(p)), client(ex, client_params(params)) {}

    struct entry {
        std::shared_ptr<const sns_certificate> cert;
        steady::time_point expires;
    };

    asio::any_io_executor ex;
    sns_certificate_fetcher_params params;
    http::client client;

    mutable std::mutex mu;
    std::unordered_map<std::string, entry> cache;
    // Handlers waiting on a fetch in flight, by URL: the first asker fetches,
    // the others queue here.
    std::unordered_map<std::string, std::vector<fetch_handler>> in_flight;

    std::atomic<std::uint64_t> fetches{0};
    std::atomic<std::uint64_t> failures{0};
    std::atomic<std::uint64_t> refused{0};

    // `mu` held.
    std::shared_ptr<const sns_certificate> cached(std::string_view url,
                                                  steady::time_point now) const {
        const auto it = cache.find(std::string(url));
        if (it == cache.end() || it->second.expires <= now) return nullptr;
        return it->second.cert;
    }

    // `mu` held. Expired entries go first; then, if still full, the one that
    // would expire soonest.
    void insert(const std::string& url, std::shared_ptr<const sns_certificate> cert,
                steady::time_point now) {
        if (!cache.contains(url) && cache.size() >= params.max_certificates) {
            std::erase_if(cache, [&](const auto& kv) { return kv.second.expires <= now; });
            if (cache.size() >= params.max_certificates) {
                const auto oldest =
                    std::min_element(cache.begin(), cache.end(), [](const auto& a, const auto& b) {
                        return a.second.expires < b.second.expires;
                    });
                cache.erase(oldest);
            }
        }
        cache[url] = entry{std::move(cert), now + params.ttl};
    }

    void finish(const std::string& url, error_code ec, std::shared_ptr<const sns_certificate> cert,
                const std::string& what) {
        std::vector<fetch_handler> waiting;
        {
            std::lock_guard lock(mu);
            if (cert) insert(url, cert, steady::now());
            if (auto it = in_flight.find(url); it != in_flight.end()) {
                waiting = std::move(it->second);
                in_flight.erase(it);
            }
        }
        if (ec) {
            failures.fetch_add(1, std::memory_order_relaxed);
            params.log.log(log_level::warning, "SNS certificate " + url + " not fetched: " + what);
        } else {
            params.log.log(log_level::info,
                           "SNS certificate " + url + " fetched: " + cert->subject());
        }
        for (auto& h : waiting) complete(std::move(h), ex, ec, cert);
    }

    void fetch(std::string url) {
        auto parsed = http::parse_url(url);
        if (!parsed)
            return finish(url, make_error_code(errc::invalid_argument), nullptr, "bad URL");
        fetches.fetch_add(1, std::memory_order_relaxed);
        http::request req;
        req.method = "GET";
        req.target = std::move(parsed->second);
        req.headers.push_back({"Accept", "application/x-pem-file, */*"});
        client.async_exchange(
            parsed->first, std::move(req),
            [self = shared_from_this(), url = std::move(url)](http::exchange_result r) {
                if (r.ec) return self->finish(url, r.ec, nullptr, r.what);
                if (r.resp.status != 200)
                    return self->finish(url, make_error_code(errc::not_found), nullptr,
                                        "HTTP status " + std::to_string(r.resp.status));
                auto cert = sns_certificate::from_pem(r.resp.body);
                if (!cert)
                    return self->finish(url, make_error_code(errc::invalid_argument), nullptr,
                                        "the body is not a PEM certificate with an RSA key");
                self->finish(url, {}, std::make_shared<const sns_certificate>(std::move(*cert)),
                             {});
            });
    }
};

sns_certificate_fetcher::sns_certificate_fetcher(asio::any_io_executor ex,
                                                 sns_certificate_fetcher_params params)
    : state_(std::make_shared<state>(std::move(ex), std::move(params))) {}

sns_certificate_fetcher::~sns_certificate_fetcher() {
    state_->client.shutdown();
}

void sns_certificate_fetcher::async_fetch_impl(std::shared_ptr<state> s, std::string url,
                                               fetch_handler handler) {
    // The host rule is parse_webhook()'s own, so that nothing it would
    // refuse is ever fetched.
    if (!is_sns_certificate_url(url)) {
        s->refused.fetch_add(1, std::memory_order_relaxed);
        s->params.log.log(log_level::warning,
                          "SNS certificate URL refused, not an SNS host: " + url);
        return complete(std::move(handler), s->ex, make_error_code(errc::invalid_argument),
                        nullptr);
    }
    {
        std::lock_guard lock(s->mu);
        if (auto hit = s->cached(url, steady::now()))
            return complete(std::move(handler), s->ex, {}, std::move(hit));
        auto [it, first] = s->in_flight.try_emplace(url);
        it->second.push_back(std::move(handler));
        if (!first) return;
    }
    s->fetch(std::move(url));
}

void sns_certificate_fetcher::async_confirm_impl(
    std::shared_ptr<state> s, std::string url,
    asio::any_completion_handler<void(error_code)> handler) {
    auto parsed = http::parse_url(url);
    if (!webhooks::is_sns_host_url(url) || !parsed) {
        s->refused.fetch_add(1, std::memory_order_relaxed);
        s->params.log.log(log_level::warning,
                          "SNS subscription URL refused, not an SNS host: " + url);
        return detail::complete_later(s->ex, std::move(handler),
                                      make_error_code(errc::invalid_argument));
    }
    http::request req;
    req.method = "GET";
    req.target = std::move(parsed->second);
    s->client.async_exchange(
        parsed->first, std::move(req),
        [s, url = std::move(url), h = std::move(handler)](http::exchange_result r) mutable {
            error_code ec = r.ec;
            if (!ec && r.resp.status != 200) ec = make_error_code(errc::not_found);
            // The URL holds the subscription's token: log the topic side only.
            const auto where = url.substr(0, url.find('?'));
            if (ec)
                s->params.log.log(
                    log_level::warning,
                    "SNS subscription not confirmed at " + where + ": " +
                        (r.ec ? r.what : "HTTP status " + std::to_string(r.resp.status)));
            else
                s->params.log.log(log_level::info, "SNS subscription confirmed at " + where);
            detail::complete_later(s->ex, std::move(h), ec);
        });
}

std::shared_ptr<const sns_certificate> sns_certificate_fetcher::do_find(
    std::string_view url) const {
    std::lock_guard lock(state_->mu);
    return state_->cached(url, steady::now());
}

sns_certificate_fetcher_stats sns_certificate_fetcher::stats() const {
    sns_certificate_fetcher_stats st;
    st.fetches = state_->fetches.load(std::memory_order_relaxed);
    st.failures = state_->failures.load(std::memory_order_relaxed);
    st.refused = state_->refused.load(std::memory_order_relaxed);
    std::lock_guard lock(state_->mu);
    st.cached = state_->cache.size();
    return st;
}

}  // namespace mailers
