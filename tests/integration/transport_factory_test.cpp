// DSN → transport, composites, and the failover rule: never after an
// unknown outcome.
#include <doctest/doctest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdlib>
#include <filesystem>
#include <mailers/engine.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transport_factory.hpp>
#include <mailers/transports.hpp>

using namespace mailers;

namespace {

std::shared_ptr<outbound> message_for(const std::string& to) {
    auto out = std::make_shared<outbound>();
    out->msg.from = address{"rep", "brand.com", "Rep"};
    out->msg.to.push_back(*parse_address(to));
    out->msg.subject = "hi";
    out->msg.text = "hello";
    out->env = envelope::from_message(out->msg);
    return out;
}

std::pair<error_code, send_outcome> run(boost::asio::io_context& ioc, provider_transport& t,
                                        std::shared_ptr<outbound> o) {
    std::optional<std::pair<error_code, send_outcome>> r;
    t.async_send(o, [&](error_code ec, send_outcome out) { r.emplace(ec, std::move(out)); });
    ioc.restart();
    while (!r) ioc.run_one();
    return *r;
}

}  // namespace

TEST_CASE("DSNs build the transport they name") {
    boost::asio::io_context ioc;
    auto ex = ioc.get_executor();
    CHECK((*make_transport(ex, "null://null"))->name() == "null");
    CHECK((*make_transport(ex, "capture://capture"))->name() == "capture");
    auto dir = std::filesystem::temp_directory_path() / "mailers-factory-test";
    CHECK((*make_transport(ex, "file://" + dir.string()))->name() == "file");
    CHECK((*make_transport(ex, "smtp://user:pass@127.0.0.1:2525?tls=none"))->name() == "smtp");
    auto fo = make_transport(ex, "failover(null://null capture://capture)");
    REQUIRE(fo);
    CHECK((*fo)->name() == "failover");
    auto rr = make_transport(ex, "roundrobin(null://null failover(capture://capture null://null))");
    REQUIRE(rr);
    CHECK((*rr)->name() == "roundrobin");
    std::filesystem::remove_all(dir);
}

TEST_CASE("a bad DSN says what is wrong and never shows the secret") {
    boost::asio::io_context ioc;
    diagnostics diag;
    auto r = make_transport(ioc.get_executor(), "carrierpigeon://KEY-s3cr3t@default", &diag);
    REQUIRE_FALSE(r);
    CHECK(r.error() == errc::invalid_argument);
    CHECK(diag.message.find("supported") != std::string::npos);
    CHECK(diag.message.find("smtp") != std::string::npos);
    CHECK(diag.message.find("s3cr3t") == std::string::npos);

    diag.clear();
    r = make_transport(ioc.get_executor(), "smtp://user:s3cr3t@host:99999", &diag);
    REQUIRE_FALSE(r);
    CHECK(diag.message.find("s3cr3t") == std::string::npos);
    CHECK_FALSE(diag.message.empty());

    diag.clear();
    ::unsetenv("MAILERS_TEST_MISSING_SECRET");
    r = make_transport(ioc.get_executor(), "smtp://user:env:MAILERS_TEST_MISSING_SECRET@host:587",
                       &diag);
    REQUIRE_FALSE(r);
    CHECK(diag.message.find("MAILERS_TEST_MISSING_SECRET") != std::string::npos);
}

TEST_CASE("failover moves on only when the message certainly did not go") {
    boost::asio::io_context ioc;
    auto ex = ioc.get_executor();
    auto first_inner = std::make_shared<capture_transport>(ex);
    auto first = std::make_shared<fault_injector>(ex, first_inner);
    auto second = std::make_shared<capture_transport>(ex);
    composite_transport fo(ex, composite_transport::mode::failover, {first, second});

    first->fail_nth(1, make_error_code(transport_errc::temporary_reply));
    auto [ec, out] = run(ioc, fo, message_for("a@example.com"));
    CHECK_FALSE(ec);
    CHECK(second->count() == 1);
    CHECK(first_inner->count() == 0);

    // The first child rests after its failure, so the next send goes to the second.
    std::tie(ec, out) = run(ioc, fo, message_for("b@example.com"));
    CHECK_FALSE(ec);
    CHECK(second->count() == 2);

    // An unknown outcome ends the attempt: the message may have gone.
    composite_transport fo2(ex, composite_transport::mode::failover, {first, second});
    first->clear();
    first->unknown_nth(first->calls() + 1);
    std::tie(ec, out) = run(ioc, fo2, message_for("c@example.com"));
    CHECK(ec == failure::unknown_outcome);
    CHECK(first_inner->count() == 1);
    CHECK(second->count() == 2);

    // So does a permanent recipient failure.
    first->fail_nth(first->calls() + 1, make_error_code(transport_errc::recipient_rejected));
    std::tie(ec, out) = run(ioc, fo2, message_for("d@example.com"));
    CHECK(ec == failure::recipient_permanent);
    CHECK(second->count() == 2);
}

TEST_CASE("roundrobin spreads sends and fails over on certain failures") {
    boost::asio::io_context ioc;
    auto ex = ioc.get_executor();
    auto a = std::make_shared<capture_transport>(ex);
    auto b = std::make_shared<capture_transport>(ex);
    composite_transport rr(ex, composite_transport::mode::roundrobin, {a, b});
    for (int i = 0; i < 10; ++i) CHECK_FALSE(run(ioc, rr, message_for("x@example.com")).first);
    CHECK(a->count() == 5);
    CHECK(b->count() == 5);
    CHECK_THROWS_AS(composite_transport(ex, composite_transport::mode::failover, {}), exception);
}

TEST_CASE("an engine provider can be configured by DSN and the audit keeps no secret") {
    boost::asio::io_context ioc;
    engine_params p;
    p.storage = open_sqlite_store({":memory:"});
    engine eng(ioc.get_executor(), std::move(p));
    principal admin{"admin", "Admin"};
    eng.add_provider(admin, "bulk",
                     "failover(null://null smtp://user:hunter2@127.0.0.1:2525?tls=none)");
    auto log = eng.audit_log();
    REQUIRE_FALSE(log.empty());
    CHECK(log.back().action == "provider.add");
    CHECK(log.back().after.find("hunter2") == std::string::npos);
    CHECK(log.back().after.find("failover") != std::string::npos);
    CHECK_THROWS_AS(eng.add_provider(admin, "bad", "nope://x"), exception);
}

namespace {

// A local port nothing listens on: bound, then closed, so connecting is refused.
std::uint16_t closed_port(boost::asio::io_context& ioc) {
    boost::asio::ip::tcp::acceptor a(ioc, {boost::asio::ip::make_address("127.0.0.1"), 0});
    return a.local_endpoint().port();
}

struct captured_log {
    std::shared_ptr<std::vector<std::string>> lines = std::make_shared<std::vector<std::string>>();
    logger make() const {
        return {log_level::trace,
                [lines = lines](log_level, std::string_view m) { lines->emplace_back(m); }};
    }
    bool mentions(std::string_view s) const {
        return std::any_of(lines->begin(), lines->end(),
                           [&](const std::string& l) { return l.find(s) != std::string::npos; });
    }
};

}  // namespace

TEST_CASE("transports built from a DSN log through the logger they are given") {
    boost::asio::io_context ioc;
    const auto dsn =
        "postmark+api://tok@default?endpoint=http://127.0.0.1:" + std::to_string(closed_port(ioc));
    SUBCASE("a single DSN") {
        captured_log seen;
        auto t = make_transport(ioc.get_executor(), dsn, seen.make());
        REQUIRE(t);
        CHECK(run(ioc, **t, message_for("x@example.com")).first == failure::transient);
        CHECK(seen.mentions("postmark"));
    }
    SUBCASE("a composite's children") {
        captured_log seen;
        auto t = make_transport(ioc.get_executor(), "failover(" + dsn + ")", seen.make());
        REQUIRE(t);
        CHECK(run(ioc, **t, message_for("x@example.com")).first == failure::transient);
        CHECK(seen.mentions("postmark"));
    }
    SUBCASE("the overload without a logger builds the same transport") {
        auto t = make_transport(ioc.get_executor(), dsn);
        REQUIRE(t);
        CHECK(run(ioc, **t, message_for("x@example.com")).first == failure::transient);
    }
}

TEST_CASE("a provider added by DSN logs through engine_params::log") {
    boost::asio::io_context ioc;
    captured_log seen;
    engine_params p;
    p.storage = open_sqlite_store({":memory:"});
    p.log = seen.make();
    engine eng(ioc.get_executor(), std::move(p));
    principal admin{"admin", "Admin"};
    eng.add_provider(
        admin, "api",
        "postmark+api://tok@default?endpoint=http://127.0.0.1:" + std::to_string(closed_port(ioc)));
    mailbox_config m;
    m.id = "rep1";
    m.from = address{"rep1", "brand.com", "Rep"};
    m.provider = "api";
    eng.upsert_mailbox(admin, m);
    pool_config pool;
    pool.id = "p";
    pool.mailboxes = {"rep1"};
    eng.upsert_pool(admin, pool);

    send_request req;
    req.pool = "p";
    req.to = *parse_address("x@example.com");
    req.subject = "hi";
    req.text = "hello";
    std::optional<error_code> got;
    eng.async_send(req, [&](error_code ec, send_result) { got = ec; });
    while (!got) ioc.run_one();
    CHECK(got->failed());
    CHECK(seen.mentions("postmark"));
}
