// Sending through an SMTP server configured by a DSN.
//
// Build and run:  cmake --build build --target example_4_smtp &&
//                 ./build/examples/example_4_smtp 'smtp://user:pass@smtp.example.com:587'
//                 to@example.org
//
// The DSN says everything about the connection:
//
//     smtp://user:pass@smtp.example.com:587       STARTTLS (required), AUTH PLAIN or LOGIN
//     smtps://user:pass@smtp.example.com          TLS from the first octet, port 465
//     smtp://rep%40brand.com:TOKEN@smtp.gmail.com?auth=xoauth2
//     smtp://127.0.0.1:2525?tls=none              a local relay or test sink, clear text
//     smtp://user:env:SMTP_PASSWORD@host          the password read from the environment
//
// Options: tls=required|opportunistic|none, verify=false, ca_file=/path,
// auth=plain|login|xoauth2|none, helo=name, max_connections=N, max_messages=N,
// pipelining=false. The password never appears in logs or error messages.
#include <boost/asio/io_context.hpp>
#include <iostream>
#include <mailers.hpp>
#include <mailers/transports/smtp_transport.hpp>

int main(int argc, char** argv) {
    if (argc < 3) {
        std::cerr << "usage: " << argv[0] << " DSN RECIPIENT\n";
        return 2;
    }
    boost::asio::io_context ioc;

    mailers::diagnostics diag;
    auto transport = mailers::make_smtp_transport(ioc.get_executor(), argv[1], &diag);
    if (!transport) {
        std::cerr << "bad DSN: " << diag.message << "\n";  // names the part, never the secret
        return 1;
    }
    auto& smtp = **transport;
    std::cout << "sending through " << smtp.params().host << ":" << smtp.params().port << "\n";

    auto out = std::make_shared<mailers::outbound>();
    out->msg.from = {"sender", "example.com", "Example Sender"};
    auto to = mailers::parse_address(argv[2]);
    if (!to) {
        std::cerr << "not an address: " << argv[2] << "\n";
        return 1;
    }
    out->msg.to.push_back(*to);
    out->msg.subject = "Hello from mailers";
    out->msg.text = "Sent by examples/4_smtp.cpp.\n";
    out->env = mailers::envelope::from_message(out->msg);

    // With the default token (deferred), async_send(out) alone does nothing:
    // pass a callback, co_await it, or use another completion token.
    int exit_code = 1;
    smtp.async_send(out, [&](mailers::error_code ec, mailers::send_outcome outcome) {
        if (!ec) {
            std::cout << "accepted, queue id '" << outcome.provider_message_id << "'\n";
            exit_code = 0;
        } else if (ec == mailers::failure::unknown_outcome) {
            // The connection was lost after the message was handed over: it may
            // have been delivered. Record it; never send it again.
            std::cout << "outcome unknown: " << outcome.diag.message << "\n";
        } else {
            std::cout << "failed (" << ec.message() << "): " << outcome.diag.message << "\n";
            if (!outcome.diag.provider_reply.empty())
                std::cout << "server said: " << outcome.diag.provider_reply << "\n";
        }
        // Closing the transport ends its idle connection (QUIT), which lets run() return.
        transport->reset();
    });
    ioc.run();
    return exit_code;
}
