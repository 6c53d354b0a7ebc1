// The SMTP client state machine driven with scripted server replies (no
// sockets), and SMTP DSNs turned into parameters.
#include <doctest/doctest.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <mailers/dsn.hpp>
#include <mailers/transports/smtp_transport.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "transports/smtp/session.hpp"

using mailers::failure;
using mailers::transport_errc;
using mailers::detail::smtp_phase;
using namespace mailers::detail::smtp;

namespace {

// Feeds one reply ("250 ok", or several lines joined by '\n').
step feed(session& s, std::string_view text) {
    std::string in;
    std::size_t start = 0;
    while (start <= text.size()) {
        const auto nl = text.find('\n', start);
        in.append(text.substr(start, nl - start));
        in.append("\r\n");
        if (nl == std::string_view::npos) break;
        start = nl + 1;
    }
    reply r;
    std::size_t used = 0;
    REQUIRE(parse_reply(in, r, used) == parse_status::complete);
    return s.on_reply(r);
}

session_config config(tls_mode tls = tls_mode::none) {
    session_config c;
    c.tls = tls;
    c.helo = "client.example";
    return c;
}

const char* const ehlo_plain = "250-mx.example\n250-PIPELINING\n250-8BITMIME\n250 SIZE 1000000";

// A session in the ready state over a server offering `ehlo`.
void establish(session& s, const char* ehlo = ehlo_plain) {
    REQUIRE(s.start() == step::read);
    REQUIRE(feed(s, "220 mx.example ESMTP") == step::write_read);
    REQUIRE(s.out() == "EHLO client.example\r\n");
    REQUIRE(feed(s, ehlo) == step::ready);
    REQUIRE(s.established());
}

}  // namespace

TEST_SUITE("smtp session") {
    TEST_CASE("STARTTLS, a fresh EHLO, AUTH PLAIN, then a pipelined transaction") {
        session_config c = config(tls_mode::required);
        c.user = "user";
        c.password = "pass";
        session s(c);
        CHECK(s.start() == step::read);
        CHECK(s.phase() == smtp_phase::greeting);
        CHECK(feed(s, "220 mx.example ESMTP") == step::write_read);
        CHECK(s.out() == "EHLO client.example\r\n");
        CHECK(feed(s, "250-mx.example\n250-STARTTLS\n250-AUTH LOGIN\n250 PIPELINING") ==
              step::write_read);
        CHECK(s.out() == "STARTTLS\r\n");
        CHECK(s.phase() == smtp_phase::starttls);
        CHECK(feed(s, "220 2.0.0 Ready to start TLS") == step::tls_handshake);
        CHECK(s.on_tls_established() == step::write_read);
        CHECK(s.tls_active());
        CHECK(!s.caps().starttls);  // RFC 3207: forgotten after the handshake
        CHECK(s.out() == "EHLO client.example\r\n");
        CHECK(feed(s, "250-mx.example\n250-PIPELINING\n250-AUTH PLAIN LOGIN\n250 SIZE 1000") ==
              step::write_read);
        CHECK(s.out() == "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
        CHECK(s.phase() == smtp_phase::auth);
        CHECK(feed(s, "235 2.7.0 Accepted") == step::ready);
        CHECK(s.established());
        CHECK(s.auth_mechanism() == "PLAIN");
        CHECK(s.out().empty());  // the credentials are not kept in the buffer

        const std::vector<std::string> rcpts{"a@example.org", "b@example.org"};
        transaction t{"me@example.com", rcpts, {120, false, false}};
        CHECK(s.start_transaction(t) == step::write_read);
        CHECK(s.out() ==
              "MAIL FROM:<me@example.com> SIZE=120\r\nRCPT TO:<a@example.org>\r\n"
              "RCPT TO:<b@example.org>\r\nDATA\r\n");
        CHECK(s.phase() == smtp_phase::mail);
        CHECK(feed(s, "250 2.1.0 OK") == step::read);
        CHECK(s.phase() == smtp_phase::rcpt);
        CHECK(feed(s, "250 2.1.5 OK") == step::read);
        CHECK(s.phase() == smtp_phase::rcpt);
        CHECK(feed(s, "250 2.1.5 OK") == step::read);
        CHECK(s.phase() == smtp_phase::data);
        CHECK(!s.content_sent());
        CHECK(feed(s, "354 Go ahead") == step::write_data);
        CHECK(s.on_data_written() == step::read);
        CHECK(s.content_sent());
        CHECK(s.phase() == smtp_phase::data_end);
        CHECK(feed(s, "250 2.0.0 Ok: queued as ABC123") == step::ready);
        CHECK(!s.result().ec);
        CHECK(s.result().provider_message_id == "ABC123");
        CHECK(s.result().accepted_recipients == 2);
        CHECK(s.result().diag.provider_reply == "250 2.0.0 Ok: queued as ABC123");
    }

    TEST_CASE("STARTTLS required but not offered: refused before anything is sent") {
        session s(config(tls_mode::required));
        s.start();
        feed(s, "220 hi");
        // The server still listens: the session ends with QUIT, and the
        // refusal stays the result whatever QUIT gets.
        CHECK(feed(s, ehlo_plain) == step::write_read);
        CHECK(s.out() == "QUIT\r\n");
        CHECK(s.phase() == smtp_phase::quit);
        CHECK(feed(s, "221 2.0.0 Bye") == step::close);
        CHECK(s.result().ec == transport_errc::configuration);
        CHECK(s.result().diag.message.find("STARTTLS") != std::string::npos);
    }

    TEST_CASE("opportunistic TLS: clear text when not offered or refused, never with credentials") {
        {
            session s(config(tls_mode::opportunistic));
            establish(s);
            CHECK(!s.tls_active());
        }
        {
            session s(config(tls_mode::opportunistic));
            s.start();
            feed(s, "220 hi");
            CHECK(feed(s, "250-mx\n250 STARTTLS") == step::write_read);
            CHECK(feed(s, "454 4.7.0 TLS not available due to local problem") == step::ready);
            CHECK(!s.tls_active());
        }
        {
            session_config c = config(tls_mode::opportunistic);
            c.user = "u";
            c.password = "p";
            session s(c);
            s.start();
            feed(s, "220 hi");
            CHECK(feed(s, "250-mx\n250 AUTH PLAIN") == step::write_read);
            CHECK(s.out() == "QUIT\r\n");
            CHECK(feed(s, "221 bye") == step::close);
            CHECK(s.result().ec == transport_errc::configuration);
            CHECK(s.result().diag.message.find("clear text") != std::string::npos);
        }
        {
            session s(config(tls_mode::required));
            s.start();
            feed(s, "220 hi");
            feed(s, "250-mx\n250 STARTTLS");
            CHECK(feed(s, "454 4.7.0 TLS not available") == step::write_read);
            CHECK(s.out() == "QUIT\r\n");
            CHECK(feed(s, "221 bye") == step::close);
            CHECK(s.result().ec == failure::transient);
        }
    }

    TEST_CASE("HELO fallback after a permanent EHLO refusal") {
        session s(config());
        s.start();
        feed(s, "220 old server");
        CHECK(feed(s, "502 5.5.2 Command not recognized") == step::write_read);
        CHECK(s.out() == "HELO client.example\r\n");
        CHECK(feed(s, "250 old server") == step::ready);
        CHECK(!s.caps().esmtp);
        CHECK(!s.caps().pipelining);
    }

    TEST_CASE("greeting and EHLO refusals") {
        {
            session s(config());
            s.start();
            CHECK(feed(s, "554 5.7.1 Service unavailable; client host blocked") ==
                  step::write_read);
            CHECK(s.out() == "QUIT\r\n");
            CHECK(feed(s, "221 bye") == step::close);
            CHECK(s.result().ec == failure::reputation);
            CHECK(s.result().diag.status == 554);
        }
        {
            session s(config());
            s.start();
            CHECK(feed(s, "421 4.7.0 Try again later, closing connection.") == step::close);
            CHECK(s.result().ec == failure::throttled);
        }
        {
            session s(config());
            s.start();
            feed(s, "220 hi");
            CHECK(feed(s, "421 4.3.2 Service shutting down") == step::close);
            CHECK(s.result().ec == failure::transient);
        }
    }

    TEST_CASE("a refused AUTH ends with QUIT, its secret gone from the buffer") {
        const session_config c = [] {
            session_config c = config();
            c.user = "user";
            c.password = "pass";
            return c;
        }();
        // A session that has just written AUTH PLAIN.
        const auto authenticating = [&c] {
            auto s = std::make_unique<session>(c);
            s->start();
            feed(*s, "220 hi");
            CHECK(feed(*s, "250-mx\n250 AUTH PLAIN") == step::write_read);
            CHECK(s->out().rfind("AUTH PLAIN ", 0) == 0);
            return s;
        };
        for (const char* refusal : {"535 5.7.8 Authentication credentials invalid",
                                    "454 4.7.0 Temporary authentication failure",
                                    "504 5.5.4 Unrecognized authentication type"}) {
            CAPTURE(refusal);
            auto s = authenticating();
            CHECK(feed(*s, refusal) == step::write_read);
            CHECK(s->out() == "QUIT\r\n");
            CHECK(s->phase() == smtp_phase::quit);
            CHECK(!s->established());
            const auto ec = s->result().ec;
            CHECK(ec);
            CHECK(feed(*s, "221 2.0.0 Bye") == step::close);
            CHECK(s->result().ec == ec);
            CHECK(s->result().diag.provider_reply == refusal);
        }
        // After 421 the server is closing: no QUIT.
        CHECK(feed(*authenticating(), "421 4.7.0 closing") == step::close);
    }

    TEST_CASE("AUTH LOGIN exchange") {
        session_config c = config();
        c.user = "user";
        c.password = "pass";
        session s(c);
        s.start();
        feed(s, "220 hi");
        CHECK(feed(s, "250-mx\n250 AUTH LOGIN") == step::write_read);
        CHECK(s.out() == "AUTH LOGIN\r\n");
        CHECK(feed(s, "334 VXNlcm5hbWU6") == step::write_read);
        CHECK(s.out() == "dXNlcg==\r\n");
        CHECK(feed(s, "334 UGFzc3dvcmQ6") == step::write_read);
        CHECK(s.out() == "cGFzcw==\r\n");
        CHECK(feed(s, "235 2.7.0 Authentication successful") == step::ready);
    }

    TEST_CASE("XOAUTH2: a refused token is answered with an empty line, and explained") {
        session_config c = config();
        c.user = "rep@brand.com";
        c.token = "tok";
        session s(c);
        s.start();
        feed(s, "220 hi");
        CHECK(feed(s, "250-mx\n250 AUTH PLAIN LOGIN XOAUTH2") == step::write_read);
        CHECK(s.out().rfind("AUTH XOAUTH2 ", 0) == 0);
        // base64 of {"status":"401","schemes":"bearer"}
        CHECK(feed(s, "334 eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIn0=") == step::write_read);
        CHECK(s.out() == "\r\n");
        CHECK(feed(s, "535-5.7.8 Username and Password not accepted.\n535 5.7.8 Learn more") ==
              step::write_read);
        CHECK(s.out() == "QUIT\r\n");
        CHECK(feed(s, "221 bye") == step::close);
        CHECK(s.result().ec == transport_errc::authentication_failed);
        CHECK(s.result().diag.message.find("\"status\":\"401\"") != std::string::npos);
        CHECK(s.result().diag.message.find("tok") == std::string::npos);
    }

    TEST_CASE("AUTH mechanism choice") {
        const auto run = [](mailers::detail::smtp::auth_mode m, const char* ehlo) {
            session_config c = config();
            c.auth = m;
            c.user = "u";
            c.password = "p";
            auto s = std::make_unique<session>(c);
            s->start();
            feed(*s, "220 hi");
            feed(*s, ehlo);
            return s;
        };
        CHECK(run(auth_mode::automatic, "250-mx\n250 AUTH LOGIN PLAIN")
                  ->out()
                  .rfind("AUTH PLAIN", 0) == 0);
        CHECK(run(auth_mode::automatic, "250-mx\n250 AUTH LOGIN")->out() == "AUTH LOGIN\r\n");
        auto none = run(auth_mode::automatic, "250-mx\n250 AUTH CRAM-MD5");
        CHECK(none->result().ec == transport_errc::configuration);
        CHECK(none->result().diag.message.find("CRAM-MD5") != std::string::npos);
        auto missing = run(auth_mode::login, "250-mx\n250 AUTH PLAIN");
        CHECK(missing->result().ec == transport_errc::configuration);
        CHECK(missing->result().diag.message.find("AUTH LOGIN (it offers AUTH PLAIN)") !=
              std::string::npos);
        auto no_auth = run(auth_mode::automatic, "250-mx\n250 PIPELINING");
        CHECK(no_auth->result().ec == transport_errc::configuration);
        CHECK(run(auth_mode::none, "250-mx\n250 AUTH PLAIN")->established());
    }

    TEST_CASE("pipelined: a refused MAIL drains the group, resets, and decides the result") {
        session s(config());
        establish(s);
        const std::vector<std::string> rcpts{"a@example.org"};
        s.start_transaction({"quota@example.com", rcpts, {}});
        CHECK(feed(s, "550 5.4.5 Daily user sending quota exceeded.") == step::read);
        CHECK(feed(s, "503 5.5.1 MAIL first") == step::read);
        CHECK(feed(s, "503 5.5.1 RCPT first") == step::write_read);
        CHECK(s.out() == "RSET\r\n");
        CHECK(feed(s, "250 2.0.0 OK") == step::ready);
        CHECK(s.result().ec == failure::quota_exhausted);
        CHECK(s.result().diag.enhanced_status == "5.4.5");
        CHECK(s.result().diag.message.find("MAIL FROM:<quota@example.com> refused") !=
              std::string::npos);
    }

    TEST_CASE("pipelined: every recipient refused") {
        session s(config());
        establish(s);
        const std::vector<std::string> rcpts{"x@example.org", "y@example.org"};
        s.start_transaction({"me@example.com", rcpts, {}});
        feed(s, "250 OK");
        feed(s, "550 5.1.1 no such user x");
        feed(s, "550 5.1.1 no such user y");
        CHECK(feed(s, "554 5.5.1 No valid recipients") == step::write_read);
        CHECK(s.out() == "RSET\r\n");
        CHECK(feed(s, "250 OK") == step::ready);
        CHECK(s.result().ec == failure::recipient_permanent);
        CHECK(s.result().diag.message.find("x@example.org") != std::string::npos);
    }

    TEST_CASE("pipelined: DATA accepted after every recipient was refused (RFC 2920 3.1)") {
        session s(config());
        establish(s);
        const std::vector<std::string> rcpts{"x@example.org"};
        s.start_transaction({"me@example.com", rcpts, {}});
        feed(s, "250 OK");
        feed(s, "550 5.1.1 no such user");
        CHECK(feed(s, "354 go ahead") == step::write_read);
        CHECK(s.out() == ".\r\n");
        CHECK(!s.content_sent());
        CHECK(feed(s, "554 no valid recipients") == step::write_read);
        CHECK(s.out() == "RSET\r\n");
        CHECK(feed(s, "250 OK") == step::ready);
        CHECK(s.result().ec == failure::recipient_permanent);
    }

    TEST_CASE("pipelined: 421 in the middle closes the session") {
        session s(config());
        establish(s);
        const std::vector<std::string> rcpts{"a@example.org", "b@example.org"};
        s.start_transaction({"me@example.com", rcpts, {}});
        feed(s, "250 OK");
        CHECK(feed(s, "421 4.7.0 Try again later, closing connection.") == step::close);
        CHECK(s.result().ec == failure::throttled);
    }

    TEST_CASE("one at a time without PIPELINING; some recipients refused") {
        session s(config());
        establish(s, "250-mx\n250 8BITMIME");
        const std::vector<std::string> rcpts{"a@example.org", "bad@example.org", "c@example.org"};
        CHECK(s.start_transaction({"me@example.com", rcpts, {0, true, false}}) == step::write_read);
        CHECK(s.out() == "MAIL FROM:<me@example.com> BODY=8BITMIME\r\n");
        CHECK(feed(s, "250 OK") == step::write_read);
        CHECK(s.out() == "RCPT TO:<a@example.org>\r\n");
        CHECK(feed(s, "250 OK") == step::write_read);
        CHECK(s.out() == "RCPT TO:<bad@example.org>\r\n");
        CHECK(feed(s, "550 5.1.1 no such user") == step::write_read);
        CHECK(s.out() == "RCPT TO:<c@example.org>\r\n");
        CHECK(feed(s, "250 OK") == step::write_read);
        CHECK(s.out() == "DATA\r\n");
        CHECK(s.phase() == smtp_phase::data);
        CHECK(feed(s, "354 go") == step::write_data);
        s.on_data_written();
        CHECK(feed(s, "250 2.0.0 OK 1700000000 abc - gsmtp") == step::ready);
        CHECK(!s.result().ec);
        CHECK(s.result().provider_message_id == "abc");
        CHECK(s.result().diag.message.find("accepted for 2 of 3 recipients") != std::string::npos);
        CHECK(s.result().diag.message.find("<bad@example.org> refused: 550 5.1.1") !=
              std::string::npos);
    }

    TEST_CASE("one at a time: a refused MAIL stops at once") {
        session s(config());
        establish(s, "250 mx");
        const std::vector<std::string> rcpts{"a@example.org"};
        s.start_transaction({"me@example.com", rcpts, {}});
        CHECK(feed(s, "553 5.7.1 Sender address rejected: not owned by user") == step::write_read);
        CHECK(s.out() == "RSET\r\n");
        CHECK(feed(s, "250 OK") == step::ready);
        CHECK(s.result().ec == transport_errc::configuration);
    }

    TEST_CASE("a refusal after the final dot needs no RSET; 421 there closes") {
        session s(config());
        establish(s);
        const std::vector<std::string> rcpts{"a@example.org"};
        for (const bool closing : {false, true}) {
            s.start_transaction({"me@example.com", rcpts, {}});
            feed(s, "250 OK");
            feed(s, "250 OK");
            feed(s, "354 go");
            s.on_data_written();
            if (!closing) {
                CHECK(feed(s, "550-5.7.26 This mail is unauthenticated\n550 5.7.26 blocked.") ==
                      step::ready);
                CHECK(s.result().ec == failure::auth);
                CHECK(s.result().diag.provider_reply ==
                      "550-5.7.26 This mail is unauthenticated\n550 5.7.26 blocked.");
            } else {
                CHECK(feed(s, "421 4.7.0 closing") == step::close);
                CHECK(s.result().ec == failure::throttled);
            }
        }
    }

    TEST_CASE("pipelining across messages: the next transaction rides behind the final dot") {
        session s(config());
        establish(s);
        const std::vector<std::string> first{"a@example.org"};
        const std::vector<std::string> second{"b@example.org", "c@example.org"};
        CHECK(!s.can_queue_next());  // only while the content is about to go
        CHECK(s.start_transaction({"me@example.com", first, {}}) == step::write_read);
        CHECK(!s.can_queue_next());
        feed(s, "250 OK");
        feed(s, "250 OK");
        CHECK(feed(s, "354 go") == step::write_data);
        REQUIRE(s.can_queue_next());
        s.queue_next({"me@example.com", second, {}});
        CHECK(s.next_out() ==
              "MAIL FROM:<me@example.com>\r\nRCPT TO:<b@example.org>\r\nRCPT "
              "TO:<c@example.org>\r\nDATA\r\n");
        CHECK(!s.can_queue_next());  // one at a time
        CHECK(s.on_data_written() == step::read);
        CHECK(s.content_sent());
        // The first message's outcome, then the second's replies.
        CHECK(feed(s, "250 2.0.0 Ok: queued as FIRST") == step::ready);
        CHECK(s.next_pending());
        CHECK(!s.result().ec);
        CHECK(s.result().provider_message_id == "FIRST");
        CHECK(s.continue_next() == step::read);
        CHECK(!s.next_pending());
        CHECK(!s.content_sent());  // a loss now delivered nothing
        CHECK(!s.transaction_replied());
        CHECK(s.phase() == smtp_phase::mail);
        CHECK(s.next_out().empty());
        CHECK(feed(s, "250 OK") == step::read);
        CHECK(feed(s, "550 5.1.1 no such user") == step::read);
        CHECK(feed(s, "250 OK") == step::read);
        CHECK(feed(s, "354 go") == step::write_data);
        CHECK(s.on_data_written() == step::read);
        CHECK(feed(s, "250 2.0.0 Ok: queued as SECOND") == step::ready);
        CHECK(!s.next_pending());
        CHECK(!s.result().ec);
        CHECK(s.result().provider_message_id == "SECOND");
        CHECK(s.result().accepted_recipients == 1);
    }

    TEST_CASE("pipelining across messages: a refusal of the first, 421, or no PIPELINING") {
        const std::vector<std::string> one{"a@example.org"};
        const auto to_content = [&](session& s) {
            s.start_transaction({"me@example.com", one, {}});
            feed(s, "250 OK");
            feed(s, "250 OK");
            REQUIRE(feed(s, "354 go") == step::write_data);
        };
        {
            session s(config());
            establish(s);
            to_content(s);
            s.queue_next({"me@example.com", one, {}});
            s.on_data_written();
            // Refused after the dot: no RSET needed, the next one goes on.
            CHECK(feed(s, "552 5.3.4 too big") == step::ready);
            CHECK(s.result().ec == failure::message_rejected);
            CHECK(s.next_pending());
            CHECK(s.continue_next() == step::read);
        }
        {
            session s(config());
            establish(s);
            to_content(s);
            s.queue_next({"me@example.com", one, {}});
            s.on_data_written();
            // The server is closing: the queued commands will never be answered.
            CHECK(feed(s, "421 4.7.0 closing") == step::close);
            CHECK(!s.next_pending());
        }
        {
            session s(config());
            establish(s, "250-mx.example\n250 8BITMIME");  // no PIPELINING
            to_content(s);
            CHECK(!s.can_queue_next());
        }
        {
            session_config c = config();
            c.pipelining = false;
            session s(c);
            establish(s);
            to_content(s);
            CHECK(!s.can_queue_next());
        }
    }

    TEST_CASE("NOOP, QUIT and replies nobody asked for") {
        session s(config());
        establish(s);
        CHECK(s.start_noop() == step::write_read);
        CHECK(s.out() == "NOOP\r\n");
        CHECK(feed(s, "250 OK") == step::ready);
        CHECK(s.start_noop() == step::write_read);
        CHECK(feed(s, "421 4.4.2 idle timeout") == step::close);

        session q(config());
        establish(q);
        CHECK(q.start_quit() == step::write_read);
        CHECK(q.out() == "QUIT\r\n");
        CHECK(feed(q, "221 bye") == step::close);

        session u(config());
        establish(u);
        CHECK(feed(u, "421 4.4.2 timeout") == step::close);
        CHECK(u.result().ec == transport_errc::protocol_error);
    }

    TEST_CASE("a transaction with no recipient is refused without a command") {
        session s(config());
        establish(s);
        CHECK(s.start_transaction({"me@example.com", {}, {}}) == step::ready);
        CHECK(s.result().ec == mailers::errc::invalid_argument);
    }

}  // TEST_SUITE

TEST_SUITE("smtp dsn") {
    namespace {
    mailers::smtp_params params_of(std::string_view text) {
        mailers::diagnostics diag;
        auto d = mailers::parse_single_dsn(text, &diag);
        REQUIRE_MESSAGE(d.has_value(), diag.message);
        auto p = mailers::smtp_params_from_dsn(*d, &diag);
        REQUIRE_MESSAGE(p.has_value(), diag.message);
        return *p;
    }

    std::string error_of(std::string_view text) {
        mailers::diagnostics diag;
        auto d = mailers::parse_single_dsn(text, &diag);
        REQUIRE_MESSAGE(d.has_value(), diag.message);
        auto p = mailers::smtp_params_from_dsn(*d, &diag);
        REQUIRE(!p.has_value());
        CHECK(p.error() == mailers::errc::invalid_argument);
        return diag.message;
    }
    }  // namespace

    TEST_CASE("defaults") {
        const auto p = params_of("smtp://user:pass@smtp.example.com");
        CHECK(p.host == "smtp.example.com");
        CHECK(p.port == 587);
        CHECK(p.tls == mailers::smtp_tls::required);
        CHECK(p.verify_peer);
        CHECK(p.auth == mailers::smtp_auth::automatic);
        CHECK(p.username == "user");
        CHECK(p.password.reveal() == "pass");
        CHECK(p.pipelining);
    }

    TEST_CASE("implicit TLS: smtps, or port 465") {
        auto p = params_of("smtps://u:p@smtp.example.com");
        CHECK(p.tls == mailers::smtp_tls::implicit);
        CHECK(p.port == 465);
        p = params_of("smtp://u:p@smtp.example.com:465");
        CHECK(p.tls == mailers::smtp_tls::implicit);
        p = params_of("smtp://u:p@smtp.example.com:465?tls=required");
        CHECK(p.tls == mailers::smtp_tls::required);
    }

    TEST_CASE("options") {
        const auto p = params_of(
            "smtp://u:p@127.0.0.1:2525?tls=none&verify=false&ca_file=/tmp/ca.pem&max_connections=7"
            "&max_messages=0&helo=client.example&pipelining=false&auth=login");
        CHECK(p.port == 2525);
        CHECK(p.tls == mailers::smtp_tls::none);
        CHECK(!p.verify_peer);
        CHECK(p.ca_file == "/tmp/ca.pem");
        CHECK(p.max_connections == 7);
        CHECK(p.max_messages_per_connection == 0);
        CHECK(p.helo_name == "client.example");
        CHECK(!p.pipelining);
        CHECK(p.auth == mailers::smtp_auth::login);
        CHECK(params_of("smtp://h?tls=opportunistic&helo=[192.0.2.1]").tls ==
              mailers::smtp_tls::opportunistic);
    }

    TEST_CASE("timeouts: every phase from one option, each phase from its own") {
        using std::chrono::milliseconds;
        using namespace std::chrono_literals;
        const mailers::smtp_timeouts defaults;
        auto p = params_of("smtp://h?tls=none");
        CHECK(p.timeouts.connect == defaults.connect);
        CHECK(p.timeouts.data_end == defaults.data_end);

        p = params_of("smtp://h?timeout=1500ms");
        for (const auto t :
             {p.timeouts.connect, p.timeouts.greeting, p.timeouts.command, p.timeouts.mail,
              p.timeouts.rcpt, p.timeouts.data_init, p.timeouts.data_block, p.timeouts.data_end})
            CHECK(t == 1500ms);
        CHECK(p.idle_timeout == mailers::smtp_params{}.idle_timeout);

        // A phase's own option wins over `timeout`, before or after it.
        p = params_of(
            "smtp://h?connect_timeout=2s&timeout=20&greeting_timeout=250ms&command_timeout=3m"
            "&mail_timeout=4s&rcpt_timeout=5s&data_init_timeout=6s&data_block_timeout=7s"
            "&data_end_timeout=8&idle_timeout=90s");
        CHECK(p.timeouts.connect == 2s);
        CHECK(p.timeouts.greeting == 250ms);
        CHECK(p.timeouts.command == 3min);
        CHECK(p.timeouts.mail == 4s);
        CHECK(p.timeouts.rcpt == 5s);
        CHECK(p.timeouts.data_init == 6s);
        CHECK(p.timeouts.data_block == 7s);
        CHECK(p.timeouts.data_end == 8s);  // a bare number counts seconds
        CHECK(p.idle_timeout == 90s);
        CHECK(params_of("smtp://h?data_end_timeout=1ms&timeout=9s").timeouts.data_end == 1ms);
    }

    TEST_CASE("timeouts: a bad value names its option") {
        for (const char* option :
             {"timeout", "connect_timeout", "greeting_timeout", "command_timeout", "mail_timeout",
              "rcpt_timeout", "data_init_timeout", "data_block_timeout", "data_end_timeout",
              "idle_timeout"}) {
            for (const std::string value : {"0", "0ms", "-5", "1.5s", "10x", "ms", "2h", "25m0",
                                            "86400001ms", "9999999999"}) {
                CAPTURE(std::string(option));
                CAPTURE(value);
                const auto why =
                    error_of(std::string("smtp://u:TopSecret@h?") + option + "=" + value);
                CHECK(why.find("'" + std::string(option) + "'") != std::string::npos);
                CHECK(why.find("1500ms") != std::string::npos);
                CHECK(why.find("TopSecret") == std::string::npos);
            }
        }
    }

    TEST_CASE("XOAUTH2: the password or the token option is the access token") {
        auto p = params_of("smtp://rep@brand.com:ya29.abc@smtp.gmail.com?auth=xoauth2");
        CHECK(p.username == "rep@brand.com");
        CHECK(p.oauth2_token.reveal() == "ya29.abc");
        CHECK(p.password.empty());
        p = params_of("smtp://rep%40brand.com@smtp.gmail.com?auth=xoauth2&token=ya29.def");
        CHECK(p.oauth2_token.reveal() == "ya29.def");
    }

    TEST_CASE("provider presets") {
        auto p = params_of("ses+smtp://AKIA:secret@default?region=eu-west-1");
        CHECK(p.host == "email-smtp.eu-west-1.amazonaws.com");
        CHECK(p.port == 587);
        CHECK(params_of("ses+smtp://AKIA:secret@default").host ==
              "email-smtp.us-east-1.amazonaws.com");
        p = params_of("sendgrid+smtp://SG.key@default");
        CHECK(p.host == "smtp.sendgrid.net");
        CHECK(p.username == "apikey");
        CHECK(p.password.reveal() == "SG.key");
        p = params_of("postmark+smtp://server-token@default");
        CHECK(p.host == "smtp.postmarkapp.com");
        CHECK(p.username == "server-token");
        CHECK(p.password.reveal() == "server-token");
        CHECK(params_of("mailgun+smtp://postmaster%40mg.example.com:pw@default?region=eu").host ==
              "smtp.eu.mailgun.org");
        CHECK(params_of("mailgun+smtp://u:pw@127.0.0.1:2525").host == "127.0.0.1");
    }

    TEST_CASE("secret references are resolved") {
        ::setenv("MAILERS_SMTP_TEST_PASSWORD", "from-env", 1);
        const auto p = params_of("smtp://u:env:MAILERS_SMTP_TEST_PASSWORD@smtp.example.com");
        CHECK(p.password.reveal() == "from-env");
        ::unsetenv("MAILERS_SMTP_TEST_PASSWORD");
        const auto msg = error_of("smtp://u:env:MAILERS_SMTP_TEST_PASSWORD@smtp.example.com");
        CHECK(msg.find("MAILERS_SMTP_TEST_PASSWORD") != std::string::npos);
    }

    TEST_CASE("errors name the part that is wrong and never a secret") {
        CHECK(error_of("smtp://u:TopSecret@h?bogus=1").find("'bogus'") != std::string::npos);
        CHECK(error_of("smtp://u:TopSecret@h?bogus=1").find("TopSecret") == std::string::npos);
        CHECK(error_of("smtp://h?tls=maybe").find("'tls'") != std::string::npos);
        CHECK(error_of("smtps://h?tls=none").find("smtps") != std::string::npos);
        CHECK(error_of("smtp://default").find("host") != std::string::npos);
        CHECK(error_of("smtp://h?max_connections=0").find("max_connections") != std::string::npos);
        CHECK(error_of("smtp://h?max_connections=x").find("max_connections") != std::string::npos);
        CHECK(error_of("smtp://h?helo=a%20b").find("helo") != std::string::npos);
        CHECK(error_of("smtp://h?verify=maybe").find("verify") != std::string::npos);
        CHECK(error_of("smtp://user@h?auth=plain").find("credentials") != std::string::npos);
        CHECK(error_of("smtp://user@h").find("credentials") != std::string::npos);
        CHECK(error_of("smtp://h?auth=cram-md5").find("'auth'") != std::string::npos);
        CHECK(error_of("smtp://h/path").find("path") != std::string::npos);
        const auto scheme = error_of("sendgrid+api://KEY@default");
        CHECK(scheme.find("smtps") != std::string::npos);
        CHECK(scheme.find("KEY") == std::string::npos);
        CHECK(error_of("ses+smtp://a:b@default?region=EU_WEST").find("region") !=
              std::string::npos);
    }

    TEST_CASE("make_smtp_transport reports bad input without throwing") {
        boost::asio::io_context ioc;
        mailers::diagnostics diag;
        auto t = mailers::make_smtp_transport(ioc.get_executor(),
                                              "smtp://h?ca_file=/nonexistent/ca.pem", &diag);
        REQUIRE(!t.has_value());
        CHECK(t.error() == mailers::errc::invalid_argument);
        CHECK(diag.message.find("/nonexistent/ca.pem") != std::string::npos);
        t = mailers::make_smtp_transport(ioc.get_executor(), "smtp://h:99999", &diag);
        CHECK(!t.has_value());
        t = mailers::make_smtp_transport(ioc.get_executor(), "smtp://127.0.0.1:2525?tls=none",
                                         &diag);
        REQUIRE(t.has_value());
        CHECK((*t)->name() == "smtp");
        CHECK((*t)->params().port == 2525);
    }

    TEST_CASE("the constructor refuses inconsistent parameters") {
        boost::asio::io_context ioc;
        mailers::smtp_params p;
        CHECK_THROWS_AS(mailers::smtp_transport(ioc.get_executor(), p), mailers::exception);
        p.host = "h";
        p.max_connections = 0;
        CHECK_THROWS_AS(mailers::smtp_transport(ioc.get_executor(), p), mailers::exception);
        p.max_connections = 1;
        p.username = "bad\r\nuser";
        p.password = mailers::secret("x");
        CHECK_THROWS_AS(mailers::smtp_transport(ioc.get_executor(), p), mailers::exception);
        p.username = "user";
        p.helo_name = "x\r\nRCPT TO:<a@b>";
        CHECK_THROWS_AS(mailers::smtp_transport(ioc.get_executor(), p), mailers::exception);
        p.helo_name = "client.example";
        CHECK_NOTHROW(mailers::smtp_transport(ioc.get_executor(), p));
    }

}  // TEST_SUITE
