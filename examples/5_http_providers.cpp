// HTTP API providers: a DSN for each provider family, then one workspace
// that sends transactional mail through Postmark (falling back to SES on a
// transient error), sales outreach through the reps' SMTP mailboxes and bulk
// mail through SES. Moving volume between providers is a change of DSN.
//
// Build and run:  cmake --build build --target example_5_http_providers &&
//                 ./build/examples/example_5_http_providers
//
// Nothing leaves the machine by default: every DSN points at 127.0.0.1:1,
// where nothing listens, so each send fails and the program shows how the
// failure is classified. To send for real, set MAILERS_POSTMARK_DSN,
// MAILERS_SES_DSN and MAILERS_SMTP_DSN, e.g.
//
//     MAILERS_POSTMARK_DSN='postmark+api://env:POSTMARK_TOKEN@default?stream=outbound'
//
// (`env:NAME` and `file:/path` keep the secret itself out of the DSN).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <mailers.hpp>
#include <mailers/transport_factory.hpp>
#include <mailers/transports/http_transports.hpp>
#include <string>

namespace asio = boost::asio;

namespace {

std::string dsn_from_env(const char* var, const char* fallback) {
    const char* v = std::getenv(var);
    return v && *v ? v : fallback;
}

// Failure classes, as the engine acts on them.
const char* describe(const mailers::error_code& ec) {
    using mailers::failure;
    if (!ec) return "accepted";
    if (ec == failure::transient) return "transient (fails over to another mailbox of the pool)";
    if (ec == failure::throttled) return "throttled (backs off until retry-after)";
    if (ec == failure::quota_exhausted) return "sender quota exhausted";
    if (ec == failure::auth) return "authentication or configuration";
    if (ec == failure::recipient_permanent) return "recipient rejected (suppressed)";
    if (ec == failure::message_rejected) return "message rejected";
    if (ec == failure::unknown_outcome) return "unknown outcome (never retried)";
    return "not sent";
}

}  // namespace

int main() {
    asio::io_context ioc;

    // 1. One DSN per provider family. Building a transport reads and checks
    //    its configuration; it connects only when it sends. `endpoint=`
    //    replaces the provider's URL (a proxy, a region, a local test server).
    const char* families[] = {
        "ses+api://AKIAEXAMPLE:secret-key@default?region=eu-west-1&configuration_set=bulk",
        "mailgun+api://key-example:mg.brand.example@default?region=eu",
        "sendgrid+api://SG.example-key@default",
        "postmark+api://server-token@default?stream=outbound",
        "graph+api://app-id:app-secret@default?tenant=contoso.onmicrosoft.com",
        // Gmail needs a real key (service_account=/path/key.json) or a
        // refresh token to be built:
        //   gmail+api://default?service_account=/etc/mailers/sa.json&user=rep1@brand.example
        //   gmail+api://CLIENT_ID:CLIENT_SECRET@default?refresh_token=env:GMAIL_REFRESH_TOKEN
    };
    for (const char* text : families) {
        mailers::diagnostics diag;
        auto d = mailers::parse_single_dsn(text, &diag);
        if (!d) {
            std::cout << "error\t" << diag.message << "\n";
            continue;
        }
        auto t = mailers::make_http_transport(ioc.get_executor(), *d, &diag);
        std::cout << (t ? (*t)->name() : "error") << "\t"
                  << d->to_string()  // secrets print as ****
                  << (t ? "" : "  -> " + diag.message) << "\n";
    }

    // 2. A workspace with three routes.
    auto dir = std::filesystem::temp_directory_path() / "mailers-http-providers";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    mailers::engine_params params;
    params.storage = mailers::open_sqlite_store(
        {(dir / "workspace.db").string(), mailers::open_mode::open_or_create});
    mailers::engine eng(ioc.get_executor(), std::move(params));
    const mailers::principal ops{"ops@brand.example", "Ops"};

    // make_transport picks the transport by scheme (SMTP, HTTP API or a
    // composite such as failover(...)), so a route moves by changing its DSN.
    const auto add = [&](const std::string& id, const std::string& dsn) {
        mailers::diagnostics diag;
        auto t = mailers::make_transport(ioc.get_executor(), dsn, &diag);
        if (!t) {
            std::cerr << id << ": " << diag.message << "\n";
            std::exit(1);
        }
        eng.add_provider(ops, id, *t);
    };
    add("postmark", dsn_from_env("MAILERS_POSTMARK_DSN",
                                 "postmark+api://token@default?endpoint=http://127.0.0.1:1"));
    add("ses",
        dsn_from_env(
            "MAILERS_SES_DSN",
            "ses+api://AKIAEXAMPLE:secret@default?region=eu-west-1&endpoint=http://127.0.0.1:1"));
    add("smtp", dsn_from_env("MAILERS_SMTP_DSN", "smtp://127.0.0.1:1?tls=none"));

    const auto mailbox = [&](std::string id, mailers::address from, std::string provider,
                             int priority, std::uint64_t per_day) {
        mailers::mailbox_config m;
        m.id = std::move(id);
        m.from = std::move(from);
        m.provider = std::move(provider);
        m.priority = priority;
        m.limits = {mailers::rate_limit::per_day(per_day)};
        eng.upsert_mailbox(ops, m);
    };
    // Transactional: Postmark first; SES takes over when Postmark fails
    // transiently (never after an unknown outcome).
    mailbox("tx-postmark", {"receipts", "brand.example", "Brand"}, "postmark", 0, 100000);
    mailbox("tx-ses", {"receipts", "brand.example", "Brand"}, "ses", 1, 100000);
    eng.upsert_pool(
        ops,
        {"transactional", {"tx-postmark", "tx-ses"}, {mailers::rotation_kind::priority, 2, false}});
    // Outreach: the reps' own mailboxes, 40 a day each, in turn.
    mailbox("rep1", {"rep1", "brand.example", "Riley"}, "smtp", 0, 40);
    mailbox("rep2", {"rep2", "brand.example", "Sam"}, "smtp", 0, 40);
    eng.upsert_pool(ops, {"outbound", {"rep1", "rep2"}, {}});
    // Bulk: SES alone.
    mailbox("bulk-ses", {"news", "brand.example", "Brand News"}, "ses", 0, 50000);
    eng.upsert_pool(ops, {"bulk", {"bulk-ses"}, {}});

    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
            for (const char* pool : {"transactional", "outbound", "bulk"}) {
                mailers::send_request req;
                req.pool = pool;
                req.to = *mailers::parse_address("ada@example.com");
                req.subject = std::string("Hello from the ") + pool + " route";
                req.text = "Hi Ada!";
                req.idempotency_key = std::string("example5:") + pool;
                auto [ec, res] = co_await eng.async_send(req, asio::as_tuple(asio::use_awaitable));
                std::cout << pool << ": " << describe(ec) << " after " << res.attempts
                          << " attempt(s)"
                          << (res.provider.empty() ? "" : ", last via " + res.provider)
                          << (res.diag.message.empty() ? "" : "\n    " + res.diag.message) << "\n";
            }
        },
        asio::detached);
    ioc.run();
}
