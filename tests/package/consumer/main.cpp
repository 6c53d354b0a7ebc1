#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <mailers.hpp>

int main() {
    boost::asio::io_context ioc;
    mailers::engine_params params;
    params.storage = mailers::open_sqlite_store({":memory:"});
    mailers::engine eng(ioc.get_executor(), std::move(params));
    mailers::principal me{"consumer", "Consumer"};
    auto capture = std::make_shared<mailers::capture_transport>(ioc.get_executor());
    eng.add_provider(me, "capture", capture);
    mailers::mailbox_config m;
    m.id = "m1";
    m.from = {"rep", "example.com", "Rep"};
    m.provider = "capture";
    eng.upsert_mailbox(me, m);
    mailers::send_request r;
    r.mailbox = "m1";
    r.to = *mailers::parse_address("a@example.org");
    r.subject = "hi";
    r.text = "hello";
    int rc = 1;
    eng.async_send(r, [&](mailers::error_code ec, mailers::send_result) { rc = ec ? 1 : 0; });
    ioc.run();
    std::printf("consumer: %s, %zu captured\n", rc == 0 ? "sent" : "failed", capture->count());
    return rc == 0 && capture->count() == 1 ? 0 : 1;
}
