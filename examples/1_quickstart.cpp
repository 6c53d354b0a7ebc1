// Quickstart: one mailbox, one pool, a suppression entry and two sends.
//
// Build and run:  cmake --build build --target example_1_quickstart &&
//                 ./build/examples/example_1_quickstart
//
// Messages are written as .eml files by the file transport, so nothing
// leaves the machine; swap in a real transport to send for real.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <filesystem>
#include <iostream>
#include <mailers.hpp>

namespace asio = boost::asio;

int main() {
    asio::io_context ioc;  // the host's event loop; mailers owns none

    // 1. A store: one SQLite file holds the whole workspace.
    auto dir = std::filesystem::temp_directory_path() / "mailers-quickstart";
    std::filesystem::create_directories(dir);
    auto store = mailers::open_sqlite_store(
        {(dir / "workspace.db").string(), mailers::open_mode::open_or_create});

    // 2. The engine, on the host's executor.
    mailers::engine_params params;
    params.storage = store;
    mailers::engine eng(ioc.get_executor(), std::move(params));

    // 3. Who is acting: every change is audited under this principal.
    mailers::principal me{"ops@brand.com", "Ops"};

    // 4. A provider (here: .eml files), a mailbox with a cap, and a pool.
    eng.add_provider(me, "files",
                     std::make_shared<mailers::file_transport>(ioc.get_executor(), dir / "out"));
    mailers::mailbox_config rep;
    rep.id = "rep1";
    rep.from = {"rep1", "brand.com", "Riley from Brand"};
    rep.provider = "files";
    rep.limits = {mailers::rate_limit::per_day(50), mailers::rate_limit::per_hour(10)};
    rep.time_zone = "Europe/Berlin";
    eng.upsert_mailbox(me, rep);
    eng.upsert_pool(me, {"outbound", {"rep1"}, {}});

    // 5. Someone asked not to be contacted: every send, through every
    //    mailbox and provider, respects it from now on.
    eng.suppress(me, mailers::suppression_kind::address, "no-thanks@example.com",
                 mailers::suppression_reason::unsubscribe);

    // 6. Send. async_send takes any Asio completion token. Note: with the
    //    default token (deferred), `eng.async_send(r);` alone does nothing;
    //    co_await it or pass a callback. as_tuple hands back the error code
    //    beside the result: plain use_awaitable would throw on a refusal
    //    and lose the result (mailers::with_result(use_awaitable) throws a
    //    mailers::send_error that keeps it).
    asio::co_spawn(
        ioc,
        [&]() -> asio::awaitable<void> {
            for (const char* to : {"ada@example.com", "no-thanks@example.com"}) {
                mailers::send_request req;
                req.pool = "outbound";
                req.to = *mailers::parse_address(to);
                req.subject = "Quick question";
                req.text = "Hi! Would a short call next week work?";
                req.idempotency_key = std::string("quickstart:") + to;
                auto [ec, res] = co_await eng.async_send(req, asio::as_tuple(asio::use_awaitable));
                if (!ec)
                    std::cout << to << ": sent by " << res.mailbox << ", id "
                              << res.provider_message_id << "\n";
                else if (ec == mailers::errc::duplicate)
                    std::cout << to << ": already sent earlier (idempotency key)\n";
                else
                    std::cout << to << ": not sent: " << ec.message() << "\n";
            }
        },
        asio::detached);
    ioc.run();
    std::cout << "messages are in " << (dir / "out") << "\n";
}
