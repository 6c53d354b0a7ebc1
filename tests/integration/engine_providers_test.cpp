// Stored providers (engine::save_provider): validated, audited without
// secrets, built by every engine of a workspace, on SQLite and PostgreSQL.
#include <unistd.h>

#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <cstdlib>
#include <functional>
#include <mailers/postgres_store.hpp>
#include <mailers/transport_factory.hpp>
#include <mailers/transports/fault_injector.hpp>
#include <random>

#include "engine_fixture.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

using store_factory = std::function<std::shared_ptr<store>()>;

std::unique_ptr<engine> open_engine(boost::asio::io_context& ioc,
                                    const std::shared_ptr<manual_clock>& clock,
                                    std::shared_ptr<store> st, const std::string& ws) {
    engine_params p;
    p.storage = std::move(st);
    p.clock = clock;
    p.workspace = ws;
    return std::make_unique<engine>(ioc.get_executor(), std::move(p));
}

std::optional<stored_provider> find(const engine& e, const std::string& id) {
    for (auto& p : e.stored_providers())
        if (p.id == id) return p;
    return std::nullopt;
}

mailbox_config mailbox_on(const std::string& id, const std::string& provider) {
    mailbox_config m;
    m.id = id;
    m.from = address{id, "brand.com", ""};
    m.provider = provider;
    return m;
}

void stored_providers_reach_every_engine(const store_factory& open, const std::string& ws) {
    boost::asio::io_context ioc;
    auto clock = std::make_shared<manual_clock>(test_epoch());
    principal admin{"admin", "Admin"};
    auto a = open_engine(ioc, clock, open(), ws);
    auto b = open_engine(ioc, clock, open(), ws);
    // The host's own transport under "hosted" takes precedence in b.
    auto capture = std::make_shared<capture_transport>(ioc.get_executor());
    b->add_provider(admin, "hosted", capture);

    ::setenv("MAILERS_TEST_PROVIDER_KEY", "SG.the-key-itself", 1);
    const auto audit_before = a->audit_log().size();

    // Refusals change nothing.
    CHECK(code_of([&] { a->save_provider(admin, "sg", "sendgrid+api://SG.inline@default"); }) ==
          errc::invalid_argument);
    try {
        a->save_provider(admin, "smtp1", "smtp://rep:hunter2@127.0.0.1:2525");
        FAIL("accepted an inline password");
    } catch (const exception& e) {
        CHECK(std::string(e.what()).find("the password") != std::string::npos);
        CHECK(std::string(e.what()).find("hunter2") == std::string::npos);
    }
    CHECK(code_of([&] {
              a->save_provider(admin, "ses", "ses+api://AKIA:env:NO_SUCH_MAILERS_VAR@default");
          }) == errc::invalid_argument);
    CHECK(code_of([&] { a->save_provider(admin, "", "null://null"); }) == errc::invalid_argument);
    CHECK(code_of([&] { a->save_provider(admin, "x", "nope://x"); }) == errc::invalid_argument);
    CHECK(code_of([&] { a->remove_provider(admin, "sg"); }) == errc::not_found);
    CHECK(a->audit_log().size() == audit_before);
    CHECK(a->stored_providers().empty());
    CHECK(b->stored_providers().empty());

    // Saved by a: b has it in memory once the save returns.
    a->save_provider(admin, "sg", "sendgrid+api://env:MAILERS_TEST_PROVIDER_KEY@default");
    a->save_provider(admin, "nul", "null://null");
    a->save_provider(admin, "hosted", "null://null");
    for (engine* e : {a.get(), b.get()}) {
        auto all = e->stored_providers();
        REQUIRE(all.size() == 3);
        CHECK(all[0].id == "hosted");
        CHECK(all[1].id == "nul");
        CHECK(all[2].id == "sg");
        CHECK(all[2].dsn == "sendgrid+api://env:MAILERS_TEST_PROVIDER_KEY@default");
        CHECK(all[2].created_at == test_epoch());
    }
    CHECK(find(*a, "hosted")->active);
    CHECK_FALSE(find(*b, "hosted")->active);
    CHECK(find(*b, "nul")->active);

    auto log = a->audit_log();
    REQUIRE(log.size() == audit_before + 3);
    CHECK(log[audit_before].action == "provider.save");
    CHECK(log[audit_before].resource_id == "sg");
    CHECK(log[audit_before].after.find("env:MAILERS_TEST_PROVIDER_KEY") != std::string::npos);
    CHECK(log[audit_before].after.find("the-key-itself") == std::string::npos);

    // Replacing keeps the creation time; b sees the new DSN.
    clock->advance(std::chrono::seconds(30));
    a->save_provider(admin, "nul", "null://other");
    auto nul = find(*b, "nul");
    REQUIRE(nul);
    CHECK(nul->dsn == "null://other");
    CHECK(nul->created_at == test_epoch());
    CHECK(nul->updated_at == test_epoch() + std::chrono::seconds(30));

    // A mailbox on it: the provider stays until the mailbox is retired.
    b->upsert_mailbox(admin, mailbox_on("rep1", "nul"));
    CHECK(code_of([&] { a->remove_provider(admin, "nul"); }) == errc::invalid_argument);
    CHECK(find(*b, "nul"));
    a->retire_mailbox(admin, "rep1");
    a->remove_provider(admin, "nul");
    b->remove_provider(admin, "hosted");
    for (engine* e : {a.get(), b.get()}) {
        REQUIRE(e->stored_providers().size() == 1);
        CHECK(e->stored_providers()[0].id == "sg");
    }
    CHECK(a->audit_log().back().action == "provider.remove");

    // A new engine loads what is stored.
    b.reset();
    auto c = open_engine(ioc, clock, open(), ws);
    auto sg = find(*c, "sg");
    REQUIRE(sg);
    CHECK(sg->active);
    ::unsetenv("MAILERS_TEST_PROVIDER_KEY");
}

}  // namespace

TEST_CASE("stored providers: refused inline secrets, saved, replaced and removed on SQLite") {
    db_file db("stored-providers");
    stored_providers_reach_every_engine(
        [&] {
            return open_sqlite_store({db.path.string(), open_mode::open_or_create});
        },
        "default");
}

TEST_CASE("stored providers: refused inline secrets, saved, replaced and removed on PostgreSQL") {
    auto server = test_pg_server("stored providers");
    if (!server) return;
    postgres_store_params p;
    p.conninfo = *server;
    p.mode = open_mode::open_or_create;
    const auto ws = "providers_" + std::to_string(::getpid()) + "_" +
                    std::to_string(std::random_device{}() % 100000);
    stored_providers_reach_every_engine([&] { return open_postgres_store(p); }, ws);
}

TEST_CASE("a mailbox sends through a stored provider") {
    fixture f;
    f.eng->save_provider(f.admin, "nul", "null://null");
    f.eng->upsert_mailbox(f.admin, mailbox_on("rep1", "nul"));
    f.add_pool("p", {"rep1"});
    auto [ec, r] = f.send(fixture::request("p", "alice@example.com"));
    REQUIRE_FALSE(ec);
    CHECK(r.state == send_state::accepted);
    CHECK(r.provider_message_id == "null-1");
}

TEST_CASE("a DSN that holds a secret inline is refused, naming the field") {
    const std::pair<const char*, const char*> cases[] = {
        {"smtp://user:pass@h", "the password"},
        {"sendgrid+api://KEY@default", "the user"},
        {"postmark+api://TOKEN@default", "the user"},
        {"mailgun+api://KEY:mg.example.com@default", "the user"},
        {"sendgrid+smtp://KEY@default", "the user"},
        {"ses+api://AKIA:SECRET@default", "the password"},
        {"ses+api://AKIA:env:S@default?token=T", "option token"},
        {"failover(null://null smtp://u:p@h)", "the password"},
    };
    for (auto [text, field] : cases) {
        CAPTURE(text);
        diagnostics d;
        auto r = require_secret_references(text, &d);
        REQUIRE_FALSE(r);
        CHECK(r.error() == make_error_code(errc::invalid_argument));
        CHECK(d.message.find(field) != std::string::npos);
    }
    const char* fine[] = {
        "smtp://user:env:SMTP_PASS@h",
        "smtp://h:25",
        "mailgun+api://env:MG_KEY:mg.example.com@default",
        "ses+api://AKIA:file:/run/secrets/ses@default?region=eu-west-1",
        "postmark+smtp://env:A:env:B@default",
        "null://null",
    };
    for (auto text : fine) {
        CAPTURE(text);
        CHECK(require_secret_references(text));
    }
}

TEST_CASE("a composite checks every child in order; a fault injector checks its inner transport") {
    boost::asio::io_context ioc;
    const auto check = [&](provider_transport& t) {
        std::optional<std::pair<error_code, diagnostics>> out;
        t.async_check([&](error_code ec, diagnostics d) { out.emplace(ec, std::move(d)); });
        ioc.restart();
        while (!out && ioc.run_one_for(std::chrono::seconds(30))) {
        }
        REQUIRE(out);
        return *out;
    };
    auto both = make_transport(ioc.get_executor(), "failover(null://null capture://capture)");
    REQUIRE(both);
    auto r = check(**both);
    CHECK_FALSE(r.first);
    CHECK(r.second.message ==
          "failover: null: nothing to check (this transport holds no connection); capture: "
          "nothing to check (this transport holds no connection)");

    // Port 1 on the loopback interface: nothing listens, the connection is refused.
    auto broken =
        make_transport(ioc.get_executor(), "roundrobin(null://null smtp://127.0.0.1:1?tls=none)");
    REQUIRE(broken);
    r = check(**broken);
    CHECK(r.first == failure::transient);
    CHECK(r.second.message.starts_with("roundrobin child 2: smtp 127.0.0.1:1"));

    fault_injector faulty(*broken);
    r = check(faulty);
    CHECK(r.first == failure::transient);
}

// --- engine::async_check_provider -----------------------------------------------

namespace {

using check_outcome = std::pair<error_code, provider_check>;

// Runs `start(handler)` and the io_context until the handler has run.
check_outcome run_check(
    boost::asio::io_context& ioc,
    const std::function<void(std::function<void(error_code, provider_check)>)>& start) {
    std::optional<check_outcome> out;
    start([&](error_code ec, provider_check r) { out.emplace(ec, std::move(r)); });
    ioc.restart();
    while (!out && ioc.run_one_for(std::chrono::seconds(60))) {
    }
    REQUIRE(out);
    return *out;
}

check_outcome check_provider(boost::asio::io_context& ioc, engine& e, const principal& who,
                             const std::string& id) {
    return run_check(ioc, [&](auto h) { e.async_check_provider(who, id, std::move(h)); });
}

// A 127.0.0.1 port that accepts connections (the kernel completes them
// from the backlog) and never says anything.
struct silent_listener {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor acceptor{
        io, boost::asio::ip::tcp::endpoint(boost::asio::ip::make_address("127.0.0.1"), 0)};
    unsigned short port() const { return acceptor.local_endpoint().port(); }
};

}  // namespace

TEST_CASE("provider checks: the host's transport before the stored DSN; unknown and unbuildable") {
    db_file db("provider-checks");
    boost::asio::io_context ioc;
    auto clock = std::make_shared<manual_clock>(test_epoch());
    principal admin{"admin", "Admin"};
    const auto open = [&] {
        return open_engine(ioc, clock,
                           open_sqlite_store({db.path.string(), open_mode::open_or_create}),
                           "default");
    };
    auto a = open();
    auto b = open();
    // Port 1 on the loopback interface: nothing listens there.
    a->save_provider(admin, "relay", "smtp://127.0.0.1:1?tls=none");
    b->add_provider(admin, "relay", std::make_shared<capture_transport>(ioc.get_executor()));

    // a sends through the stored DSN: its check connects, and is refused.
    auto [ec, r] = check_provider(ioc, *a, admin, "relay");
    CHECK(ec == failure::transient);
    CHECK(r.provider == "relay");
    CHECK(r.transport == "smtp");
    CHECK_FALSE(r.host_registered);
    CHECK(r.diag.message.starts_with("smtp 127.0.0.1:1"));

    // b sends through the host's transport, which has nothing to check.
    std::tie(ec, r) = check_provider(ioc, *b, admin, "relay");
    CHECK_FALSE(ec);
    CHECK(r.transport == "capture");
    CHECK(r.host_registered);
    CHECK(r.diag.message.find("nothing to check") != std::string::npos);

    // Neither registered nor stored.
    std::tie(ec, r) = check_provider(ioc, *a, admin, "nosuch");
    CHECK(ec == errc::not_found);
    CHECK(r.transport.empty());
    CHECK(r.diag.message.find("'nosuch'") != std::string::npos);

    // Stored with a reference that does not resolve in this process: an
    // engine opened now cannot build it, and says why.
    ::setenv("MAILERS_TEST_CHECK_PASS", "s3cret", 1);
    a->save_provider(admin, "gone", "smtp://u:env:MAILERS_TEST_CHECK_PASS@127.0.0.1:1?tls=none");
    ::unsetenv("MAILERS_TEST_CHECK_PASS");
    auto c = open();
    std::tie(ec, r) = check_provider(ioc, *c, admin, "gone");
    CHECK(ec == errc::invalid_argument);
    CHECK(r.diag.message.find("cannot be built in this process") != std::string::npos);
    CHECK(r.diag.message.find("MAILERS_TEST_CHECK_PASS") != std::string::npos);

    // A DSN checked directly; one that does not build is refused.
    std::tie(ec, r) = run_check(ioc, [&](auto h) { c->async_check_dsn(admin, "null://null", h); });
    CHECK_FALSE(ec);
    CHECK(r.provider.empty());
    CHECK(r.transport == "null");
    std::tie(ec, r) = run_check(ioc, [&](auto h) { c->async_check_dsn(admin, "nope://x", h); });
    CHECK(ec == errc::invalid_argument);

    // A check changes nothing and is not audited.
    const auto audited = a->audit_log().size();
    check_provider(ioc, *a, admin, "relay");
    CHECK(a->audit_log().size() == audited);
}

TEST_CASE("provider checks need manage_providers once access control is on; a refusal is audited") {
    fixture f;
    f.eng->save_provider(f.admin, "nul", "null://null");
    f.eng->put_role(f.admin,
                    role{"owner", {permission::manage_access, permission::manage_providers}});
    f.eng->put_role(f.admin, role{"sender", {permission::send}});
    f.eng->grant_access(f.admin, access_grant{"admin", "owner", {}});
    f.eng->grant_access(f.admin, access_grant{"bob", "sender", {}});
    f.eng->set_access_control(f.admin, true);

    auto [ec, r] = check_provider(f.ioc, *f.eng, f.admin, "nul");
    CHECK_FALSE(ec);
    std::tie(ec, r) = check_provider(f.ioc, *f.eng, principal{"bob", "Bob"}, "nul");
    CHECK(ec == errc::permission_denied);
    CHECK(r.diag.message.find("bob") != std::string::npos);
    f.eng->flush();
    const auto log = f.eng->audit_log();
    REQUIRE_FALSE(log.empty());
    CHECK(log.back().action == "access.denied");
    CHECK(log.back().after.find("provider.check") != std::string::npos);
}

TEST_CASE(
    "provider checks: cancel() and a cancellation slot end a check waiting on a silent peer") {
    silent_listener peer;
    fixture f;
    f.eng->save_provider(f.admin, "silent",
                         "smtp://127.0.0.1:" + std::to_string(peer.port()) + "?tls=none");

    // Through the handler's cancellation slot.
    boost::asio::cancellation_signal sig;
    std::optional<check_outcome> out;
    f.eng->async_check_provider(
        f.admin, "silent",
        boost::asio::bind_cancellation_slot(
            sig.slot(), [&](error_code ec, provider_check r) { out.emplace(ec, std::move(r)); }));
    f.ioc.restart();
    f.ioc.poll();  // the check connects and waits for the greeting
    CHECK_FALSE(out);
    sig.emit(boost::asio::cancellation_type::terminal);
    while (!out && f.ioc.run_one_for(std::chrono::seconds(60))) {
    }
    REQUIRE(out);
    CHECK(out->first == errc::operation_aborted);
    CHECK(out->second.transport == "smtp");

    // Through cancel(), then the engine's destruction: the connection the
    // check opened is closed, so the io_context runs out of work.
    out.reset();
    f.eng->async_check_provider(
        f.admin, "silent", [&](error_code ec, provider_check r) { out.emplace(ec, std::move(r)); });
    f.ioc.poll();
    f.eng->cancel();
    while (!out && f.ioc.run_one_for(std::chrono::seconds(60))) {
    }
    REQUIRE(out);
    CHECK(out->first == errc::operation_aborted);

    // Started after cancel(): aborted at once.
    out.reset();
    f.eng->async_check_provider(
        f.admin, "silent", [&](error_code ec, provider_check r) { out.emplace(ec, std::move(r)); });
    while (!out && f.ioc.run_one_for(std::chrono::seconds(60))) {
    }
    REQUIRE(out);
    CHECK(out->first == errc::operation_aborted);

    f.eng.reset();
    f.ioc.restart();
    f.ioc.run();  // returns once nothing is left: no connection lingers
}
