// Outbound webhooks end to end: endpoints configured on the engine, events
// written to the outbox with the commit that records them, delivered to a
// local receiver that checks every signature with the library's verifier.
#include <doctest/doctest.h>

#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/webhook_signing.hpp>
#include <map>
#include <set>
#include <thread>

#include "engine_fixture.hpp"

namespace {

using namespace mailers;
using namespace mailers_test;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

/// One POST as the receiver saw it.
struct hit {
    std::string path, id, timestamp, signature, body;
    bool verified = false;
    int status = 0;
};

/// An HTTP receiver on 127.0.0.1 with keep-alive. Each request is checked
/// with standard_webhooks::verify under the secret its path was given;
/// `fail_first` requests per webhook-id get a 500, and `always_fail` makes
/// every one a 503.
class receiver {
public:
    receiver() : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)) {
        asio::co_spawn(ioc_, accept_loop(), asio::detached);
        thread_ = std::thread([this] { ioc_.run(); });
    }
    ~receiver() {
        asio::post(ioc_, [this] {
            beast::error_code ec;
            acceptor_.close(ec);
            ioc_.stop();
        });
        thread_.join();
    }
    std::string url(const std::string& path) const {
        return "http://127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port()) + path;
    }
    void secret(const std::string& path, const std::string& s) {
        std::lock_guard lock(mu_);
        secrets_[path] = s;
    }
    std::vector<hit> hits() {
        std::lock_guard lock(mu_);
        return hits_;
    }
    std::size_t ok_count() {
        std::lock_guard lock(mu_);
        return static_cast<std::size_t>(std::count_if(
            hits_.begin(), hits_.end(), [](const hit& h) { return h.status == 200; }));
    }
    std::atomic<int> fail_first{0};
    std::atomic<bool> always_fail{false};

private:
    asio::awaitable<void> accept_loop() {
        for (;;) {
            auto [ec, sock] = co_await acceptor_.async_accept(use_tuple);
            if (ec) co_return;
            asio::co_spawn(ioc_, serve(beast::tcp_stream(std::move(sock))), asio::detached);
        }
    }
    asio::awaitable<void> serve(beast::tcp_stream s) {
        beast::flat_buffer buf;
        for (;;) {
            bhttp::request<bhttp::string_body> req;
            auto [ec, n] = co_await bhttp::async_read(s, buf, req, use_tuple);
            if (ec) co_return;
            hit h;
            h.path = std::string(req.target());
            h.id = std::string(req["webhook-id"]);
            h.timestamp = std::string(req["webhook-timestamp"]);
            h.signature = std::string(req["webhook-signature"]);
            h.body = req.body();
            {
                std::lock_guard lock(mu_);
                h.verified = standard_webhooks::verify(secrets_[h.path], h.id, h.timestamp, h.body,
                                                       h.signature)
                                 .ok();
                const int tries = ++tries_[h.id];
                h.status = always_fail ? 503 : tries <= fail_first ? 500 : 200;
                hits_.push_back(h);
            }
            bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(h.status), 11};
            res.body() = "ok";
            res.keep_alive(true);
            res.prepare_payload();
            auto [wec, wn] = co_await bhttp::async_write(s, res, use_tuple);
            if (wec) co_return;
        }
    }

    asio::io_context ioc_;
    tcp::acceptor acceptor_;
    std::thread thread_;
    std::mutex mu_;
    std::map<std::string, std::string> secrets_;
    std::map<std::string, int> tries_;
    std::vector<hit> hits_;
};

/// Engine parameters for loopback receivers, with fast polls.
void loopback(engine_params& p) {
    p.webhooks.allow_http = true;
    p.webhooks.allow_private_targets = true;
    p.webhooks.poll_interval = 5ms;
    p.webhooks.timeout = 10s;
}

webhook_endpoint endpoint(const std::string& id, const std::string& url,
                          std::vector<event_type> types = {}) {
    webhook_endpoint ep;
    ep.id = id;
    ep.url = url;
    ep.event_types = std::move(types);
    return ep;
}

/// Sends `n` messages from mailbox "m1" through the capture transport.
void send_many(drain_env& env, engine& e, int n, const std::string& prefix = "s") {
    std::atomic<int> done{0};
    for (int i = 0; i < n; ++i) {
        send_request r;
        r.mailbox = "m1";
        r.to = address{prefix + std::to_string(i), "example.com", {}};
        r.subject = "Hi";
        r.text = "Hello";
        e.async_send(std::move(r), [&](error_code, send_result) { ++done; });
    }
    env.run_until([&] { return done == n; });
}

std::size_t count_in(engine& e, webhook_delivery_state s, const std::string& ep = {}) {
    webhook_delivery_filter f;
    f.endpoint = ep;
    f.state = s;
    return e.webhook_deliveries(f).size();
}

}  // namespace

TEST_CASE("webhooks: bad endpoint configuration is refused and changes nothing") {
    drain_env env;
    auto e = env.make(open_sqlite_store({":memory:", open_mode::create}));
    const auto audit_before = e->audit_log().size();
    const auto refused = [&](webhook_endpoint ep, const std::string& says) {
        try {
            e->put_webhook_endpoint(env.admin, ep);
        } catch (const mailers::exception& x) {
            CHECK(x.code() == make_error_code(errc::invalid_argument));
            const std::string msg = x.diag().message.empty() ? x.what() : x.diag().message;
            CHECK_MESSAGE(msg.find(says) != std::string::npos, msg);
            return;
        }
        FAIL("accepted " << ep.url);
    };
    refused(endpoint("a", "ftp://example.com/hook"), "https://");
    refused(endpoint("a", "http://example.com/hook"), "https://");  // http not allowed here
    refused(endpoint("a", "https://exa mple.com/"), "space");
    refused(endpoint("a", "https://example.com/#frag"), "fragment");
    refused(endpoint("bad id!", "https://example.com/"), "id");
    refused(endpoint("a", "https://127.0.0.1/hook"), "loopback");
    refused(endpoint("a", "https://10.1.2.3/hook"), "private");
    refused(endpoint("a", "https://[::1]/hook"), "loopback");
    auto ep = endpoint("a", "https://example.com/hook");
    ep.secret = "whsec_notbase64!!";
    refused(ep, "base64");
    ep.secret = "whsec_c2hvcnQ=";  // "short"
    refused(ep, "24 to 64");
    ep.secret = "plain";
    refused(ep, "whsec_");
    ep.secret = "env:MAILERS_TEST_NO_SUCH_SECRET_VAR";
    refused(ep, "MAILERS_TEST_NO_SUCH_SECRET_VAR");
    CHECK(e->webhook_endpoints().empty());
    CHECK(e->audit_log().size() == audit_before);

    // A good one: the secret is generated, returned once, and kept out of
    // listings and the audit log.
    auto stored = e->put_webhook_endpoint(env.admin, endpoint("a", "https://example.com/hook"));
    CHECK(stored.secret.starts_with("whsec_"));
    CHECK(standard_webhooks::sign(stored.secret, "msg_1", 1, "{}").has_value());
    REQUIRE(e->webhook_endpoints().size() == 1);
    CHECK(e->webhook_endpoints()[0].secret != stored.secret);
    for (const auto& r : e->audit_log()) {
        CHECK(r.after.find(stored.secret) == std::string::npos);
        CHECK(r.before.find(stored.secret) == std::string::npos);
    }
    CHECK(e->audit_log().back().action == "webhook.put");
    // Put again without a secret: the stored one is kept.
    auto again = e->put_webhook_endpoint(env.admin, endpoint("a", "https://example.com/v2"));
    CHECK(again.secret == stored.secret);
    CHECK(e->remove_webhook_endpoint(env.admin, "a"));
    CHECK_FALSE(e->remove_webhook_endpoint(env.admin, "a"));
    CHECK(code_of([&] { e->enable_webhook_endpoint(env.admin, "a"); }) == errc::not_found);
}

TEST_CASE("webhooks: events reach matching endpoints, signed, once each") {
    receiver rx;
    drain_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto e = env.make(st, "default", nullptr, 10s, loopback);
    e->upsert_mailbox(env.admin, env.mailbox("m1"));
    auto all = e->put_webhook_endpoint(env.admin, endpoint("all", rx.url("/all")));
    auto failed_only = e->put_webhook_endpoint(
        env.admin, endpoint("failed", rx.url("/failed"), {event_type::failed}));
    rx.secret("/all", all.secret);
    rx.secret("/failed", failed_only.secret);
    std::vector<event> seen;
    std::mutex seen_mu;
    e->on_event([&](const event& ev) {
        std::lock_guard lock(seen_mu);
        seen.push_back(ev);
    });

    send_many(env, *e, 5);
    env.run_until([&] { return rx.ok_count() == 5; });
    e->flush();
    env.run_until([&] { return count_in(*e, webhook_delivery_state::delivered) == 5; });
    const auto hits = rx.hits();
    CHECK(hits.size() == 5);
    std::set<std::string> ids;
    for (const auto& h : hits) {
        CHECK(h.path == "/all");
        CHECK(h.verified);
        CHECK(h.body.find("\"type\":\"email.sent\"") != std::string::npos);
        ids.insert(h.id);
    }
    CHECK(ids.size() == 5);
    CHECK(count_in(*e, webhook_delivery_state::pending, "failed") == 0);
    // The host's callbacks saw the same events.
    env.run_until([&] {
        std::lock_guard lock(seen_mu);
        return seen.size() >= 5;
    });
}

TEST_CASE("webhooks: an event names the campaign or the sequence step its send belongs to") {
    receiver rx;
    drain_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto e = env.make(st, "default", nullptr, 10s, loopback);
    e->upsert_mailbox(env.admin, env.mailbox("m1"));
    auto ep = e->put_webhook_endpoint(env.admin, endpoint("all", rx.url("/all")));
    rx.secret("/all", ep.secret);
    std::vector<event> seen;
    std::mutex seen_mu;
    e->on_event([&](const event& ev) {
        std::lock_guard lock(seen_mu);
        if (ev.type == event_type::sent) seen.push_back(ev);
    });
    std::atomic<int> done{0};
    for (std::string key : {"campaign:spring:ada@example.com", "seq:intro:42:3", "plain-key"}) {
        send_request r;
        r.mailbox = "m1";
        r.to = address{"ada", "example.com", {}};
        r.subject = "Hi";
        r.text = "Hello";
        r.idempotency_key = key;
        e->async_send(std::move(r), [&](error_code, send_result) { ++done; });
    }
    env.run_until([&] { return done == 3 && rx.ok_count() == 3; });
    std::map<std::string, std::string> bodies;  // by key
    for (const auto& h : rx.hits())
        for (std::string key : {"campaign:spring:", "seq:intro:", "plain-key"})
            if (h.body.find(key) != std::string::npos) bodies[key] = h.body;
    REQUIRE(bodies.size() == 3);
    CHECK(bodies["campaign:spring:"].find(R"("campaign":"spring")") != std::string::npos);
    CHECK(bodies["campaign:spring:"].find(R"("sequence")") == std::string::npos);
    CHECK(bodies["seq:intro:"].find(R"("sequence":"intro","enrollment":42,"step":3)") !=
          std::string::npos);
    CHECK(bodies["seq:intro:"].find(R"("campaign")") == std::string::npos);
    CHECK(bodies["plain-key"].find(R"("campaign")") == std::string::npos);
    CHECK(bodies["plain-key"].find(R"("sequence")") == std::string::npos);
    // The host's callbacks get the same names.
    env.run_until([&] {
        std::lock_guard lock(seen_mu);
        return seen.size() == 3;
    });
    std::lock_guard lock(seen_mu);
    for (const auto& ev : seen) {
        INFO(ev.idempotency_key);
        if (ev.idempotency_key.starts_with("campaign:")) {
            CHECK(ev.campaign == "spring");
            CHECK(ev.sequence.empty());
        } else if (ev.idempotency_key.starts_with("seq:")) {
            CHECK(ev.sequence == "intro");
            CHECK(ev.enrollment == 42);
            CHECK(ev.step == 3);
            CHECK(ev.campaign.empty());
        } else {
            CHECK(ev.campaign.empty());
            CHECK(ev.sequence.empty());
            CHECK(ev.enrollment == 0);
        }
    }
}

TEST_CASE("webhooks: a failing receiver is retried with backoff until it answers") {
    receiver rx;
    rx.fail_first = 3;
    drain_env env;
    auto e = env.make(open_sqlite_store({":memory:", open_mode::create}), "default", nullptr, 10s,
                      loopback);
    e->upsert_mailbox(env.admin, env.mailbox("m1"));
    rx.secret("/h", e->put_webhook_endpoint(env.admin, endpoint("h", rx.url("/h"))).secret);
    send_many(env, *e, 1);
    outbound_webhook_params p;
    for (std::uint32_t attempt = 1; attempt <= 3; ++attempt) {
        env.run_until([&] { return rx.hits().size() == attempt; });
        e->flush();
        std::vector<webhook_delivery> rows;
        env.run_until([&] {
            rows = e->webhook_deliveries();
            return rows.size() == 1 && rows[0].state == webhook_delivery_state::pending &&
                   rows[0].attempts == attempt;
        });
        // Due within the attempt's ceiling, never earlier than now.
        CHECK(rows[0].due_at >= env.clock->now());
        CHECK(rows[0].due_at <= env.clock->now() + webhook_retry_ceiling(p, attempt));
        CHECK(rows[0].last_status == 500);
        env.clock->set(rows[0].due_at);
    }
    env.run_until([&] { return rx.ok_count() == 1; });
    env.run_until([&] { return count_in(*e, webhook_delivery_state::delivered) == 1; });
    const auto hits = rx.hits();
    REQUIRE(hits.size() == 4);
    for (const auto& h : hits) {
        CHECK(h.id == hits[0].id);  // one webhook-id for every try
        CHECK(h.verified);
    }
    CHECK(e->webhook_deliveries()[0].attempts == 4);
}

TEST_CASE("webhooks: the retry schedule grows by four up to its cap") {
    outbound_webhook_params p;
    CHECK(webhook_retry_ceiling(p, 1) == std::chrono::seconds(5));
    CHECK(webhook_retry_ceiling(p, 2) == std::chrono::seconds(20));
    CHECK(webhook_retry_ceiling(p, 4) == std::chrono::seconds(320));
    CHECK(webhook_retry_ceiling(p, 8) == std::chrono::seconds(81920));
    CHECK(webhook_retry_ceiling(p, 9) == std::chrono::hours(24));
    CHECK(webhook_retry_ceiling(p, 100) == std::chrono::hours(24));
}

TEST_CASE("webhooks: rows written before a restart are delivered by the next engine") {
    receiver rx;
    db_file db("webhooks-restart");
    drain_env env;
    std::string secret;
    {
        auto e = env.make(open_sqlite_store({db.path.string(), open_mode::create}), "default",
                          nullptr, 10s, [](engine_params& p) {
                              loopback(p);
                              p.webhooks.deliver = false;
                          });
        e->upsert_mailbox(env.admin, env.mailbox("m1"));
        secret = e->put_webhook_endpoint(env.admin, endpoint("h", rx.url("/h"))).secret;
        send_many(env, *e, 20);
        e->flush();
        CHECK(count_in(*e, webhook_delivery_state::pending) == 20);
    }
    CHECK(rx.hits().empty());
    rx.secret("/h", secret);
    auto e = env.make(open_sqlite_store({db.path.string(), open_mode::existing}), "default",
                      nullptr, 10s, loopback);
    env.run_until([&] { return count_in(*e, webhook_delivery_state::delivered) == 20; });
    CHECK(rx.hits().size() == 20);
    for (const auto& h : rx.hits()) CHECK(h.verified);
}

namespace {

// Two engines drain one outbox that a third filled: each row reaches the
// receiver exactly once.
void two_drainers(const std::function<std::shared_ptr<store>()>& open, const std::string& ws) {
    receiver rx;
    drain_env env;
    auto writer = env.make(open(), ws, nullptr, 10s, [](engine_params& p) {
        loopback(p);
        p.webhooks.deliver = false;
    });
    writer->upsert_mailbox(env.admin, env.mailbox("m1"));
    rx.secret("/h", writer->put_webhook_endpoint(env.admin, endpoint("h", rx.url("/h"))).secret);
    constexpr int n = 300;
    send_many(env, *writer, n);
    writer->flush();
    REQUIRE(count_in(*writer, webhook_delivery_state::pending) == n);
    auto a = env.make(open(), ws, nullptr, 10s, [](engine_params& p) {
        loopback(p);
        p.webhooks.in_flight = 7;
    });
    auto b = env.make(open(), ws, nullptr, 10s, [](engine_params& p) {
        loopback(p);
        p.webhooks.in_flight = 5;
    });
    // The io_context runs on two threads, as a host's might.
    std::thread helper([&] {
        while (count_in(*writer, webhook_delivery_state::delivered) < n) env.ioc.run_for(10ms);
    });
    env.run_until([&] { return count_in(*writer, webhook_delivery_state::delivered) == n; });
    helper.join();
    std::map<std::string, int> per_id;
    for (const auto& h : rx.hits()) {
        CHECK(h.verified);
        ++per_id[h.id];
    }
    CHECK(per_id.size() == n);
    for (const auto& [id, k] : per_id) CHECK_MESSAGE(k == 1, id << " delivered " << k << " times");
}

}  // namespace

TEST_CASE("webhooks: two engines drain one outbox, each row once (SQLite)") {
    db_file db("webhooks-two");
    open_sqlite_store({db.path.string(), open_mode::create});
    two_drainers(
        [&] {
            return open_sqlite_store({db.path.string(), open_mode::existing});
        },
        "default");
}

TEST_CASE("webhooks: two engines drain one outbox, each row once (PostgreSQL)") {
    auto conninfo = test_pg_server("the two-drainer webhook test");
    if (!conninfo) return;
    postgres_store_params p;
    p.conninfo = *conninfo;
    p.mode = open_mode::open_or_create;
    static std::mt19937_64 rng{std::random_device{}()};
    two_drainers([&] { return open_postgres_store(p); }, "webhooks-" + std::to_string(rng()));
}

TEST_CASE("webhooks: an endpoint that keeps failing is disabled, and enabled again") {
    receiver rx;
    rx.always_fail = true;
    drain_env env;
    auto e = env.make(open_sqlite_store({":memory:", open_mode::create}), "default", nullptr, 10s,
                      [](engine_params& p) {
                          loopback(p);
                          p.webhooks.max_attempts = 3;
                      });
    std::vector<event> alerts;
    std::mutex alerts_mu;
    e->on_event([&](const event& ev) {
        if (ev.type != event_type::alert) return;
        std::lock_guard lock(alerts_mu);
        alerts.push_back(ev);
    });
    e->upsert_mailbox(env.admin, env.mailbox("m1"));
    rx.secret("/h", e->put_webhook_endpoint(env.admin, endpoint("h", rx.url("/h"))).secret);
    send_many(env, *e, 2);
    // Each attempt fails; the clock jumps to the next due time.
    env.run_until([&] {
        e->flush();
        for (const auto& d : e->webhook_deliveries())
            if (d.state == webhook_delivery_state::pending && d.due_at > env.clock->now())
                env.clock->set(d.due_at);
        auto ep = e->find_webhook_endpoint("h");
        return ep && !ep->enabled;
    });
    const auto ep = e->find_webhook_endpoint("h");
    CHECK(ep->disabled_reason.find("3 attempts") != std::string::npos);
    env.run_until([&] { return count_in(*e, webhook_delivery_state::failed) == 2; });
    bool audited = false;
    for (const auto& r : e->audit_log())
        if (r.action == "webhook.disable" && r.actor == "system") audited = true;
    CHECK(audited);
    {
        const auto text = e->metrics_text();
        CHECK(text.find("\nmailers_webhook_endpoint_enabled{endpoint=\"h\"} 0\n") !=
              std::string::npos);
        CHECK(text.find("\nmailers_webhook_deliveries{endpoint=\"h\",state=\"failed\"} 2\n") !=
              std::string::npos);
    }
    env.run_until([&] {
        std::lock_guard lock(alerts_mu);
        return !alerts.empty();
    });
    // Disabled: new events write no rows for it.
    send_many(env, *e, 1, "later");
    e->flush();
    CHECK(e->webhook_deliveries().size() == 2);

    // The operator fixes the receiver and enables the endpoint, retrying
    // what was given up.
    rx.always_fail = false;
    e->enable_webhook_endpoint(env.admin, "h", true);
    CHECK(e->find_webhook_endpoint("h")->enabled);
    CHECK(e->find_webhook_endpoint("h")->disabled_reason.empty());
    env.run_until([&] { return count_in(*e, webhook_delivery_state::delivered) == 2; });
    CHECK(rx.ok_count() == 2);
    const auto text = e->metrics_text();
    CHECK(text.find("\nmailers_webhook_endpoint_enabled{endpoint=\"h\"} 1\n") != std::string::npos);
    CHECK(text.find("\nmailers_webhook_deliveries{endpoint=\"h\",state=\"delivered\"} 2\n") !=
          std::string::npos);
}

TEST_CASE("webhooks: private targets are refused at connect time unless allowed") {
    receiver rx;
    drain_env env;
    // A name, not an address: accepted as configuration, refused when it
    // resolves to loopback.
    auto e = env.make(open_sqlite_store({":memory:", open_mode::create}), "default", nullptr, 10s,
                      [](engine_params& p) {
                          p.webhooks.allow_http = true;
                          p.webhooks.poll_interval = 5ms;
                      });
    e->upsert_mailbox(env.admin, env.mailbox("m1"));
    const auto url = rx.url("/h");
    const auto port = url.substr(url.rfind(':') + 1);
    e->put_webhook_endpoint(env.admin, endpoint("h", "http://localhost:" + port));
    send_many(env, *e, 1);
    std::vector<webhook_delivery> rows;
    env.run_until([&] {
        e->flush();
        rows = e->webhook_deliveries();
        return rows.size() == 1 && rows[0].attempts >= 1 &&
               rows[0].state == webhook_delivery_state::pending;
    });
    CHECK(rows[0].detail.find("refused") != std::string::npos);
    CHECK(rx.hits().empty());
}
