// Outbound webhooks: endpoints as workspace configuration, the outbox rows
// an event becomes, and their delivery.
//
// Exactly once into the outbox: an event's rows are written in the commit
// that records the event (a send's final state, a provider event's dedup
// key), one per (endpoint, event key), so a crash between the two loses or
// doubles nothing. At least once out of it: a row whose holder dies mid
// attempt goes back to pending and is attempted again, under the same
// `webhook-id`, which is what receivers de-duplicate on.
#include "engine/outbox.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <mailers/webhook_signing.hpp>

#include "config/secret_ref.hpp"
#include "engine/engine_impl.hpp"
#include "engine/queue.hpp"
#include "http/client.hpp"
#include "json/writer.hpp"
#include "mime/base64.hpp"
#include "mime/random.hpp"
#include "webhooks/crypto.hpp"

namespace mailers {

using namespace detail;

// --- public helpers ------------------------------------------------------------

bool accepts(const webhook_endpoint& ep, event_type t) noexcept {
    return ep.event_types.empty() ||
           std::find(ep.event_types.begin(), ep.event_types.end(), t) != ep.event_types.end();
}

duration webhook_retry_ceiling(const outbound_webhook_params& p, std::uint32_t attempt) noexcept {
    const auto cap = std::chrono::duration_cast<duration>(p.max_retry);
    auto d = std::chrono::duration_cast<duration>(p.first_retry);
    for (std::uint32_t i = 1; i < attempt && d < cap; ++i) d *= 4;
    return std::min(d, cap);
}

std::string generate_webhook_secret() {
    unsigned char key[32];
    mime::random_bytes(key, sizeof key);
    std::string out = "whsec_";
    mime::append_base64(out, std::string_view(reinterpret_cast<const char*>(key), sizeof key));
    return out;
}

std::optional<event_type> event_type_named(std::string_view name) noexcept {
    for (int i = 0; i <= static_cast<int>(event_type::auto_paused); ++i) {
        const auto t = static_cast<event_type>(i);
        if (to_string(t) == name) return t;
    }
    return std::nullopt;
}

namespace {

std::string rfc3339(time_point t) {
    const auto secs = std::chrono::floor<std::chrono::seconds>(t);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t - secs).count();
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z",
                       std::chrono::time_point<std::chrono::system_clock, std::chrono::seconds>(
                           secs.time_since_epoch()),
                       ms);
}

}  // namespace

std::string webhook_payload(const event& ev) {
    std::string out;
    json::writer w(out);
    w.begin_object()
        .member("type", fmt::format("email.{}", to_string(ev.type)))
        .member("timestamp", rfc3339(ev.at))
        .key("data")
        .begin_object()
        .member("type", to_string(ev.type));
    const auto opt = [&](const char* k, const std::string& v) {
        if (!v.empty()) w.member(k, v);
    };
    opt("send_id", ev.send_id);
    opt("idempotency_key", ev.idempotency_key);
    opt("campaign", ev.campaign);
    opt("sequence", ev.sequence);
    if (ev.enrollment) w.member("enrollment", ev.enrollment);
    if (ev.step) w.member("step", ev.step);
    opt("mailbox", ev.mailbox);
    opt("pool", ev.pool);
    opt("provider", ev.provider);
    opt("recipient", ev.recipient);
    opt("provider_message_id", ev.provider_message_id);
    opt("message_id", ev.message_id);
    if (ev.bounce != bounce_class::none) w.member("bounce", to_string(ev.bounce));
    opt("detail", ev.detail);
    if (ev.retry_at) w.member("retry_at", rfc3339(*ev.retry_at));
    opt("provider_event", ev.provider_event);
    opt("provider_event_id", ev.provider_event_id);
    opt("diagnostic_code", ev.diagnostic_code);
    w.end_object().end_object();
    return out;
}

// --- stored form -----------------------------------------------------------------

namespace detail {

namespace {

bool is_reference(std::string_view s) {
    return s.starts_with("env:") || s.starts_with("file:");
}

std::string shown_secret(const std::string& s) {
    if (s.empty() || is_reference(s)) return s;
    return "whsec_\xE2\x80\xA6";  // "whsec_…"
}

bool valid_id(std::string_view id) {
    if (id.empty() || id.size() > 128) return false;
    return std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-' || c == ':';
    });
}

// The secret's key bytes, or why not. `what` names it for the message.
std::optional<std::string> check_secret(std::string secret, std::string& why) {
    if (!resolve_value(secret, "webhook endpoint secret", why)) return std::nullopt;
    std::string_view b64 = secret;
    if (!b64.starts_with("whsec_")) {
        why = "the webhook endpoint secret must be \"whsec_\" followed by base64";
        return std::nullopt;
    }
    b64.remove_prefix(6);
    auto key = webhooks::base64_decode(b64);
    if (!key) {
        why = "the webhook endpoint secret is not valid base64 after \"whsec_\"";
        return std::nullopt;
    }
    if (key->size() < 24 || key->size() > 64) {
        why = fmt::format("the webhook endpoint secret holds {} bytes; it needs 24 to 64",
                          key->size());
        return std::nullopt;
    }
    return secret;
}

}  // namespace

std::string to_json(const webhook_endpoint& ep, bool redact) {
    std::string out;
    json::writer w(out);
    w.begin_object()
        .member("id", ep.id)
        .member("url", ep.url)
        .member("secret", redact ? shown_secret(ep.secret) : ep.secret)
        .key("event_types")
        .begin_array();
    for (auto t : ep.event_types) w.value(to_string(t));
    w.end_array()
        .member("enabled", ep.enabled)
        .member("disabled_reason", ep.disabled_reason)
        .member("description", ep.description)
        .end_object();
    return out;
}

boost::system::result<webhook_endpoint> webhook_endpoint_from_json(std::string_view json) {
    thread_local simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    simdjson::dom::object o;
    const auto bad = make_error_code(errc::store_corrupt);
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return bad;
    const auto str = [&](const char* k) {
        std::string_view s;
        return o[k].get(s) == simdjson::SUCCESS ? std::string(s) : std::string();
    };
    webhook_endpoint ep;
    ep.id = str("id");
    ep.url = str("url");
    ep.secret = str("secret");
    if (ep.id.empty() || ep.url.empty()) return bad;
    simdjson::dom::array types;
    if (o["event_types"].get(types) == simdjson::SUCCESS) {
        for (auto e : types) {
            std::string_view s;
            if (e.get(s) != simdjson::SUCCESS) return bad;
            auto t = event_type_named(s);
            if (!t) return bad;  // a type this version does not know: not guessed
            ep.event_types.push_back(*t);
        }
    }
    bool enabled = true;
    if (o["enabled"].get(enabled) == simdjson::SUCCESS) ep.enabled = enabled;
    ep.disabled_reason = str("disabled_reason");
    ep.description = str("description");
    return ep;
}

webhook_endpoint redacted(webhook_endpoint ep) {
    ep.secret = shown_secret(ep.secret);
    return ep;
}

}  // namespace detail

// --- the engine's side ---------------------------------------------------------------

bool engine::impl::apply_webhook_object(const stored_object& o) {
    if (o.kind != webhook_endpoint_kind) return false;
    auto ep = webhook_endpoint_from_json(o.json);
    std::lock_guard lock(wh_mu);
    if (!ep) {
        // Unreadable: nothing is written for it here until it is put again.
        webhook_endpoints.erase(o.id);
        have_webhook_endpoints = !webhook_endpoints.empty();
        params.log.log(log_level::error,
                       fmt::format("webhook endpoint '{}' in the store cannot be read; no event "
                                   "is sent to it from this process until it is put again",
                                   o.id));
        return true;
    }
    webhook_endpoints.insert_or_assign(o.id, std::move(*ep));
    have_webhook_endpoints = true;
    return true;
}

bool engine::impl::remove_webhook_object(const std::string& kind, const std::string& id) {
    if (kind != webhook_endpoint_kind) return false;
    std::lock_guard lock(wh_mu);
    webhook_endpoints.erase(id);
    have_webhook_endpoints = !webhook_endpoints.empty();
    return true;
}

std::size_t engine::impl::add_outbox_ops(std::vector<store_op>& ops, const event& ev,
                                         std::string_view key) {
    if (!have_webhook_endpoints.load(std::memory_order_acquire)) return 0;
    std::vector<std::string> targets;
    {
        std::lock_guard lock(wh_mu);
        for (const auto& [id, ep] : webhook_endpoints)
            if (ep.enabled && accepts(ep, ev.type)) targets.push_back(id);
    }
    if (targets.empty()) return 0;
    const auto now = clk->now();
    // Named before masking, which may clear a key that holds the address.
    auto shown = ev;
    name_origin(shown);
    if (erased_entries_present()) mask_erased(shown);
    const auto payload = webhook_payload(shown);
    std::string fresh;
    if (key.empty()) {
        // An event no commit records: a key of its own.
        unsigned char rnd[12];
        mime::random_bytes(rnd, sizeof rnd);
        fresh = "local:";
        for (auto b : rnd) fresh += fmt::format("{:02x}", b);
        key = fresh;
    }
    for (auto& id : targets) {
        unsigned char rnd[16];
        mime::random_bytes(rnd, sizeof rnd);
        webhook_delivery d;
        d.endpoint = std::move(id);
        d.message_id = "msg_";
        for (auto b : rnd) d.message_id += fmt::format("{:02x}", b);
        d.event_key = std::string(key);
        d.event_type = std::string(to_string(ev.type));
        d.payload = payload;
        d.created_at = now;
        d.due_at = now;
        ops.push_back(store_ops::add_webhook_delivery{std::move(d)});
    }
    return targets.size();
}

void engine::impl::wake_outbox() {
    if (outbox) outbox->wake();
}

namespace {

webhook_endpoint checked_endpoint(const engine::impl& s, webhook_endpoint ep,
                                  const webhook_endpoint* before) {
    const auto& p = s.params.webhooks;
    if (!valid_id(ep.id))
        fail(errc::invalid_argument, "a webhook endpoint id is 1 to 128 of A-Z a-z 0-9 . _ - :");
    if (has_crlf(ep.url) || ep.url.find_first_of(" <>\"") != std::string::npos)
        fail(errc::invalid_argument,
             fmt::format("webhook endpoint '{}': the URL holds a space, quote, angle bracket or "
                         "line break",
                         ep.id));
    const bool https = ep.url.starts_with("https://");
    if (!https && !(p.allow_http && ep.url.starts_with("http://")))
        fail(errc::invalid_argument,
             fmt::format("webhook endpoint '{}': the URL must start with https://{}", ep.id,
                         p.allow_http ? " or http://" : ""));
    if (ep.url.find('#') != std::string::npos)
        fail(errc::invalid_argument,
             fmt::format("webhook endpoint '{}': the URL has a fragment", ep.id));
    diagnostics diag;
    auto parsed = http::parse_url(ep.url, &diag);
    if (!parsed)
        fail(errc::invalid_argument,
             fmt::format("webhook endpoint '{}': {}", ep.id,
                         diag.message.empty() ? "the URL cannot be read" : diag.message));
    if (parsed->first.host_is_ip && !p.allow_private_targets) {
        boost::system::error_code ec;
        const auto a = boost::asio::ip::make_address(parsed->first.host, ec);
        if (!ec && http::is_private_address(a))
            fail(errc::invalid_argument,
                 fmt::format("webhook endpoint '{}': {} is a loopback, private or link-local "
                             "address (allowed only with allow_private_targets)",
                             ep.id, parsed->first.host));
    }
    if (ep.secret.empty()) ep.secret = before ? before->secret : generate_webhook_secret();
    std::string why;
    if (!check_secret(ep.secret, why))
        fail(errc::invalid_argument, fmt::format("webhook endpoint '{}': {}", ep.id, why));
    if (has_crlf(ep.description) || has_crlf(ep.disabled_reason))
        fail(errc::invalid_argument,
             fmt::format("webhook endpoint '{}': description and reason are single lines", ep.id));
    if (ep.enabled) ep.disabled_reason.clear();
    std::sort(ep.event_types.begin(), ep.event_types.end());
    ep.event_types.erase(std::unique(ep.event_types.begin(), ep.event_types.end()),
                         ep.event_types.end());
    return ep;
}

}  // namespace

void engine::impl::store_webhook_endpoint(const principal& who, std::string_view action,
                                          const webhook_endpoint& ep,
                                          const std::optional<webhook_endpoint>& before,
                                          std::vector<store_op> extra) {
    const auto stored = to_json(ep, false);
    std::vector<store_op> ops;
    ops.push_back(
        store_ops::put_object{stored_object{std::string(webhook_endpoint_kind), ep.id, stored}});
    for (auto& op : extra) ops.push_back(std::move(op));
    mutate(who, action, "webhook", ep.id, before ? to_json(*before, true) : std::string(),
           to_json(ep, true), std::move(ops), [&] {
               std::lock_guard lock(wh_mu);
               webhook_endpoints.insert_or_assign(ep.id, ep);
               have_webhook_endpoints = true;
           });
}

webhook_endpoint engine::put_webhook_endpoint(const principal& who, webhook_endpoint ep) {
    std::optional<webhook_endpoint> before;
    {
        std::lock_guard lock(impl_->wh_mu);
        if (auto it = impl_->webhook_endpoints.find(ep.id); it != impl_->webhook_endpoints.end())
            before = it->second;
    }
    ep = checked_endpoint(*impl_, std::move(ep), before ? &*before : nullptr);
    impl_->authorize(who, "webhook.put", "webhook", ep.id);
    std::vector<store_op> extra;
    if (!ep.enabled)
        extra.push_back(store_ops::fail_webhook_deliveries{
            ep.id, "given up: the endpoint was disabled", impl_->clk->now()});
    impl_->store_webhook_endpoint(who, "webhook.put", ep, before, std::move(extra));
    return ep;
}

bool engine::remove_webhook_endpoint(const principal& who, const std::string& id) {
    std::optional<webhook_endpoint> before;
    {
        std::lock_guard lock(impl_->wh_mu);
        if (auto it = impl_->webhook_endpoints.find(id); it != impl_->webhook_endpoints.end())
            before = it->second;
    }
    if (!before) return false;
    impl_->authorize(who, "webhook.remove", "webhook", id);
    impl_->mutate(who, "webhook.remove", "webhook", id, to_json(*before, true), {},
                  {store_ops::delete_object{std::string(webhook_endpoint_kind), id},
                   store_ops::fail_webhook_deliveries{id, "given up: the endpoint was removed",
                                                      impl_->clk->now()}},
                  [&] {
                      std::lock_guard lock(impl_->wh_mu);
                      impl_->webhook_endpoints.erase(id);
                      impl_->have_webhook_endpoints = !impl_->webhook_endpoints.empty();
                  });
    return true;
}

namespace {

webhook_endpoint existing_endpoint(engine::impl& s, const std::string& id) {
    std::lock_guard lock(s.wh_mu);
    auto it = s.webhook_endpoints.find(id);
    if (it == s.webhook_endpoints.end())
        fail(errc::not_found, fmt::format("no webhook endpoint '{}'", id));
    return it->second;
}

}  // namespace

void engine::disable_webhook_endpoint(const principal& who, const std::string& id,
                                      std::string_view reason) {
    auto before = existing_endpoint(*impl_, id);
    if (has_crlf(reason)) fail(errc::invalid_argument, "the reason is a single line");
    impl_->authorize(who, "webhook.disable", "webhook", id);
    auto ep = before;
    ep.enabled = false;
    ep.disabled_reason = reason.empty() ? "disabled by " + who.id : std::string(reason);
    impl_->store_webhook_endpoint(
        who, "webhook.disable", ep, before,
        {store_ops::fail_webhook_deliveries{id, "given up: the endpoint was disabled",
                                            impl_->clk->now()}});
}

void engine::enable_webhook_endpoint(const principal& who, const std::string& id, bool retry_failed,
                                     time_point failed_since) {
    auto before = existing_endpoint(*impl_, id);
    impl_->authorize(who, "webhook.enable", "webhook", id);
    auto ep = before;
    ep.enabled = true;
    ep.disabled_reason.clear();
    std::vector<store_op> extra;
    if (retry_failed)
        extra.push_back(store_ops::retry_webhook_deliveries{id, failed_since, impl_->clk->now()});
    impl_->store_webhook_endpoint(who, "webhook.enable", ep, before, std::move(extra));
    impl_->wake_outbox();
}

std::vector<webhook_endpoint> engine::webhook_endpoints() const {
    std::vector<webhook_endpoint> out;
    std::lock_guard lock(impl_->wh_mu);
    for (const auto& [id, ep] : impl_->webhook_endpoints) out.push_back(redacted(ep));
    return out;
}

std::optional<webhook_endpoint> engine::find_webhook_endpoint(const std::string& id) const {
    std::lock_guard lock(impl_->wh_mu);
    auto it = impl_->webhook_endpoints.find(id);
    if (it == impl_->webhook_endpoints.end()) return std::nullopt;
    return redacted(it->second);
}

std::vector<webhook_delivery> engine::webhook_deliveries(
    const webhook_delivery_filter& filter) const {
    std::vector<webhook_delivery> out;
    impl_->with_store([&](store& st) {
        st.for_each_webhook_delivery(impl_->params.workspace, filter,
                                     [&](const webhook_delivery& d) { out.push_back(d); });
    });
    return out;
}

webhook_delivery_counts engine::count_webhook_deliveries(const std::string& endpoint) const {
    webhook_delivery_counts out;
    impl_->with_store(
        [&](store& st) { out = st.count_webhook_deliveries(impl_->params.workspace, endpoint); });
    return out;
}

// --- delivery ----------------------------------------------------------------------------

namespace detail {

void check_webhook_params(const outbound_webhook_params& p) {
    const auto bad = [](std::string_view what) {
        fail(errc::invalid_argument, fmt::format("engine_params.webhooks.{}", what));
    };
    if (p.max_attempts == 0) bad("max_attempts must be at least 1");
    if (p.in_flight == 0) bad("in_flight must be at least 1");
    if (p.first_retry <= std::chrono::seconds::zero() || p.max_retry < p.first_retry)
        bad("first_retry must be positive and max_retry at least first_retry");
    if (p.timeout <= std::chrono::milliseconds::zero()) bad("timeout must be positive");
    if (p.poll_interval <= std::chrono::milliseconds::zero()) bad("poll_interval must be positive");
    if (p.max_response_size == 0) bad("max_response_size must be positive");
}

namespace {

http_client_params client_params(const outbound_webhook_params& p) {
    http_client_params c;
    c.ca_file = p.ca_file;
    c.max_connections = 8;
    c.timeouts.connect = p.timeout;
    c.timeouts.handshake = p.timeout;
    c.timeouts.write = p.timeout;
    c.timeouts.response = p.timeout;
    c.max_response_size = p.max_response_size;
    c.refuse_private_addresses = !p.allow_private_targets;
    return c;
}

}  // namespace

webhook_outbox::webhook_outbox(engine::impl& s)
    : s_(s),
      client_(std::make_unique<http::client>(s.ex, client_params(s.params.webhooks))),
      rng_(s.params.random_seed != 0 ? s.params.random_seed ^ 0x6f7574626f78ULL
                                     : std::random_device{}()) {}

webhook_outbox::~webhook_outbox() {
    stop();
    client_->shutdown();
}

void webhook_outbox::start() {
    std::lock_guard lock(mu_);
    if (started_ || !s_.params.webhooks.deliver) return;
    started_ = true;
    thread_ = std::thread([this] { loop(); });
}

void webhook_outbox::stop() {
    {
        std::lock_guard lock(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void webhook_outbox::wake() {
    {
        std::lock_guard lock(mu_);
        wake_ = true;
    }
    cv_.notify_all();
}

void webhook_outbox::loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
        cv_.wait_for(lock, s_.params.webhooks.poll_interval, [&] { return stop_ || wake_; });
        if (stop_) break;
        wake_ = false;
        lock.unlock();
        try {
            check_exhausted();
            drain_once();
            purge_ended();
        } catch (const std::exception& e) {
            s_.params.log.log(log_level::error,
                              fmt::format("delivering outbound webhooks failed: {}", e.what()));
        }
        lock.lock();
    }
}

void webhook_outbox::drain_once() {
    std::size_t room = 0;
    {
        std::lock_guard lock(mu_);
        const auto limit = s_.params.webhooks.in_flight;
        room = limit > in_flight_ ? limit - in_flight_ : 0;
    }
    const auto member = s_.member.load();
    if (room == 0 || member == 0 || s_.fenced() || s_.cancelled) return;
    auto rows = s_.params.storage->claim_webhook_deliveries(s_.params.workspace, member,
                                                            s_.clk->now(), room);
    {
        std::lock_guard lock(mu_);
        in_flight_ += rows.size();
        if (rows.size() == room) wake_ = true;
    }
    for (auto& row : rows) attempt(std::move(row));
}

void webhook_outbox::attempt(webhook_delivery row) {
    std::optional<webhook_endpoint> ep;
    {
        std::lock_guard lock(s_.wh_mu);
        if (auto it = s_.webhook_endpoints.find(row.endpoint); it != s_.webhook_endpoints.end())
            ep = it->second;
    }
    const auto now = s_.clk->now();
    if (!ep || !ep->enabled) {
        end(row, webhook_delivery_state::failed, now, 0,
            ep ? "given up: the endpoint is disabled" : "given up: the endpoint was removed");
        return;
    }
    std::string why;
    auto secret = check_secret(ep->secret, why);
    auto url = http::parse_url(ep->url);
    if (!secret || !url) {
        // Configuration that no longer holds (a secret file gone): the
        // attempt fails and is retried, so fixing it is enough.
        on_response(row, 0, secret ? "the endpoint URL cannot be read" : why, false);
        return;
    }
    const auto ts =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    auto sig = standard_webhooks::sign(*secret, row.message_id, ts, row.payload);
    if (!sig) {
        on_response(row, 0, "the endpoint secret cannot sign", false);
        return;
    }
    http::request req;
    req.method = "POST";
    req.target = std::move(url->second);
    req.headers = {{"Content-Type", "application/json"},
                   {"webhook-id", row.message_id},
                   {"webhook-timestamp", std::to_string(ts)},
                   {"webhook-signature", std::move(*sig)}};
    req.body = row.payload;
    client_->async_exchange(
        url->first, std::move(req),
        [self = s_.shared_from_this(), row = std::move(row)](http::exchange_result r) {
            if (!self->outbox) return;
            if (r.ec) {
                self->outbox->on_response(row, 0, r.what.empty() ? r.ec.message() : r.what, false);
                return;
            }
            const bool ok = r.resp.status >= 200 && r.resp.status < 300;
            self->outbox->on_response(row, static_cast<int>(r.resp.status),
                                      ok ? std::string() : fmt::format("HTTP {}", r.resp.status),
                                      ok);
        });
}

void webhook_outbox::on_response(const webhook_delivery& row, int status, std::string detail,
                                 bool ok) {
    const auto now = s_.clk->now();
    if (ok) {
        end(row, webhook_delivery_state::delivered, now, status, {});
        return;
    }
    const auto& p = s_.params.webhooks;
    if (row.attempts >= p.max_attempts) {
        end(row, webhook_delivery_state::failed, now, status,
            fmt::format("given up after {} attempts: {}", row.attempts, detail));
        if (p.disable_on_failure) {
            std::lock_guard lock(mu_);
            exhausted_.emplace_back(row.endpoint, row.created_at);
            wake_ = true;
        }
        cv_.notify_all();
        return;
    }
    // Full jitter: a random wait up to the ceiling, so that the retries of
    // many deliveries to one endpoint that came back spread out.
    const auto ceiling = webhook_retry_ceiling(p, row.attempts);
    duration wait{};
    {
        std::lock_guard lock(mu_);
        wait = duration{std::uniform_int_distribution<duration::rep>(0, ceiling.count())(rng_)};
    }
    end(row, webhook_delivery_state::pending, now + wait, status, std::move(detail));
}

void webhook_outbox::end(const webhook_delivery& row, webhook_delivery_state state, time_point due,
                         int status, std::string detail) {
    std::vector<store_op> ops;
    ops.push_back(store_ops::end_webhook_attempt{row.id, row.claimed_by, state, due, status,
                                                 std::move(detail), s_.clk->now()});
    s_.writer->enqueue(std::move(ops), [this, id = row.id, log = s_.params.log](commit_reply&& r) {
        if (r.ec)
            log.log(log_level::error, fmt::format("webhook delivery {}: the attempt's end was not "
                                                  "stored: {}",
                                                  id, r.diag.message));
        bool claim_more = false;
        {
            std::lock_guard lock(mu_);
            if (in_flight_ > 0) --in_flight_;
            // Claims are write transactions: one for every half of the
            // in-flight room that frees up, not one per delivery.
            claim_more = in_flight_ <= s_.params.webhooks.in_flight / 2;
            if (claim_more) wake_ = true;
        }
        if (claim_more) cv_.notify_all();
    });
}

void webhook_outbox::check_exhausted() {
    std::vector<std::pair<std::string, time_point>> exhausted;  // endpoint, row written at
    {
        std::lock_guard lock(mu_);
        exhausted.swap(exhausted_);
    }
    for (const auto& [id, since] : exhausted) {
        s_.writer->flush();  // the attempt's end is stored before it is counted
        const auto c = s_.params.storage->count_webhook_deliveries(s_.params.workspace, id);
        if (c.last_delivered && *c.last_delivered >= since) continue;
        std::optional<webhook_endpoint> before;
        {
            std::lock_guard lock(s_.wh_mu);
            if (auto it = s_.webhook_endpoints.find(id); it != s_.webhook_endpoints.end())
                before = it->second;
        }
        if (!before || !before->enabled) continue;
        auto ep = *before;
        ep.enabled = false;
        ep.disabled_reason =
            fmt::format("every attempt failed since {}: a delivery ran out of its {} attempts",
                        rfc3339(since), s_.params.webhooks.max_attempts);
        s_.store_webhook_endpoint(principal::system(), "webhook.disable", ep, before,
                                  {store_ops::fail_webhook_deliveries{
                                      id, "given up: the endpoint was disabled", s_.clk->now()}});
        s_.params.log.log(log_level::warning, fmt::format("webhook endpoint '{}' disabled: {}", id,
                                                          ep.disabled_reason));
        event ev;
        ev.type = event_type::alert;
        ev.at = s_.clk->now();
        ev.detail = fmt::format("webhook endpoint '{}' disabled: {}", id, ep.disabled_reason);
        s_.emit(std::move(ev));
    }
}

void webhook_outbox::purge_ended() {
    const auto keep = std::chrono::duration_cast<duration>(s_.params.webhooks.retention);
    const auto now = s_.clk->now();
    if (keep <= duration::zero() || now - last_purge_ < std::chrono::hours(1)) return;
    last_purge_ = now;
    s_.params.storage->purge_webhook_deliveries(s_.params.workspace, now - keep);
}

}  // namespace detail

}  // namespace mailers
