// Receiving provider webhooks: an HTTP endpoint on the program's own
// io_context, one route per provider, events printed as they arrive.
//
// Build and run:  cmake --build build --target example_6_webhooks &&
//                 MAILGUN_WEBHOOK_KEY=... ./build/examples/example_6_webhooks
//
// Then point the providers' webhook URLs at http://<host>:8080/hooks/<provider>
// through a TLS-terminating proxy. Ctrl-C stops the server; run() returns once
// its connections are closed.
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <cstdlib>
#include <iostream>
#include <string>
#include <mailers/webhook_server.hpp>

int main() {
    boost::asio::io_context io;

    mailers::webhook_server_params p;
    p.address = "0.0.0.0";
    p.port = 8080;
    p.log = mailers::stderr_logger();

    // SES through SNS: signing certificates are fetched and cached on demand.
    p.routes.push_back({"/hooks/ses", mailers::webhook_provider::ses, {}});

    mailers::webhook_route mailgun{"/hooks/mailgun", mailers::webhook_provider::mailgun, {}};
    const char* key = std::getenv("MAILGUN_WEBHOOK_KEY");
    mailgun.params.mailgun.signing_key = key ? key : "";
    mailgun.params.mailgun.replay = std::make_shared<mailers::memory_replay_cache>();
    p.routes.push_back(mailgun);

    // A Prometheus scrape endpoint at /metrics; a host with an engine passes
    // `[&] { return engine.metrics_text(); }` (and serves one-click
    // unsubscribes with p.unsubscribe: docs/webhooks.md).
    p.metrics = [] { return std::string(); };

    mailers::webhook_server server(
        io.get_executor(), p, [](const mailers::webhook_route& route, mailers::webhook_result& r) {
            // Store or queue the events before returning: the provider takes
            // the 200 that follows as "received". Throwing answers 500, and
            // the provider delivers again later.
            for (const auto& e : r.events)
                std::cout << route.path << ": " << mailers::to_string(e.type) << " " << e.recipient
                          << " (" << e.dedup_key << ")\n";
            if (r.outcome == mailers::webhook_outcome::subscription_confirmation)
                std::cout << "confirm the SNS subscription: GET " << r.confirm_url << "\n";
        });
    std::cout << "listening on " << server.local_endpoint() << "\n";

    boost::asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](auto, int) { server.stop(); });
    io.run();
}
