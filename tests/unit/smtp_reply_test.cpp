// SMTP replies: the parser (multi-line, split input, malformed input), the
// classification table against real providers' replies, EHLO keywords,
// dot-stuffing and the SASL encodings.
#include <doctest/doctest.h>

#include <mailers/error.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "transports/reply_classification.hpp"
#include "transports/smtp/protocol.hpp"
#include "transports/smtp/reply.hpp"
#include "transports/smtp/session.hpp"

using mailers::failure;
using mailers::transport_errc;
using mailers::detail::smtp_phase;
using namespace mailers::detail::smtp;

namespace {

reply parse_ok(std::string_view in, std::size_t* used = nullptr) {
    reply r;
    std::size_t consumed = 0;
    REQUIRE(parse_reply(in, r, consumed) == parse_status::complete);
    if (used != nullptr) *used = consumed;
    return r;
}

parse_status status_of(std::string_view in) {
    reply r;
    std::size_t consumed = 0;
    return parse_reply(in, r, consumed);
}

}  // namespace

TEST_SUITE("smtp reply parser") {
    TEST_CASE("single-line reply with an enhanced code") {
        std::size_t used = 0;
        const auto r = parse_ok("250 2.1.0 Sender OK\r\nrest", &used);
        CHECK(r.code == 250);
        CHECK(r.enhanced == "2.1.0");
        CHECK(r.text == "2.1.0 Sender OK");
        CHECK(r.first_line_text() == "Sender OK");
        CHECK(used == 21);
        CHECK(r.positive());
    }

    TEST_CASE("multi-line reply: lines joined, enhanced code from the first line") {
        const std::string in =
            "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n"
            "550-5.1.1 double-checking the recipient's email address for typos or\r\n"
            "550 5.1.1 unnecessary spaces.\r\n";
        std::size_t used = 0;
        const auto r = parse_ok(in, &used);
        CHECK(used == in.size());
        CHECK(r.code == 550);
        CHECK(r.enhanced == "5.1.1");
        CHECK(r.permanent());
        CHECK(r.text ==
              "5.1.1 The email account that you tried to reach does not exist. Please try\n"
              "5.1.1 double-checking the recipient's email address for typos or\n"
              "5.1.1 unnecessary spaces.");
        CHECK(r.verbatim() ==
              "550-5.1.1 The email account that you tried to reach does not exist. Please try\n"
              "550-5.1.1 double-checking the recipient's email address for typos or\n"
              "550 5.1.1 unnecessary spaces.");
    }

    TEST_CASE("a reply split across reads is incomplete until its last line arrives") {
        const std::string in = "250-smtp.example.com\r\n250-PIPELINING\r\n250 SIZE 1000\r\n";
        for (std::size_t cut = 0; cut < in.size(); ++cut) {
            CAPTURE(cut);
            CHECK(status_of(std::string_view(in).substr(0, cut)) == parse_status::incomplete);
        }
        CHECK(status_of(in) == parse_status::complete);
    }

    TEST_CASE("pipelined replies in one buffer are read one at a time") {
        const std::string in = "250 2.1.0 OK\r\n550 5.1.1 no such user\r\n354 go ahead\r\n";
        std::string_view rest = in;
        std::vector<int> codes;
        while (!rest.empty()) {
            std::size_t used = 0;
            codes.push_back(parse_ok(rest, &used).code);
            rest.remove_prefix(used);
        }
        CHECK(codes == std::vector<int>{250, 550, 354});
    }

    TEST_CASE("tolerated forms: bare LF, code alone, reused reply object") {
        auto r = parse_ok("220 ready\n");
        CHECK(r.code == 220);
        CHECK(r.text == "ready");
        r = parse_ok("250\r\n");
        CHECK(r.code == 250);
        CHECK(r.text.empty());
        CHECK(r.enhanced.empty());
        reply reused;
        std::size_t used = 0;
        REQUIRE(parse_reply("550 5.7.1 first\r\n", reused, used) == parse_status::complete);
        REQUIRE(parse_reply("250 ok\r\n", reused, used) == parse_status::complete);
        CHECK(reused.enhanced.empty());
        CHECK(reused.text == "ok");
    }

    TEST_CASE("malformed replies") {
        CHECK(status_of("25O ok\r\n") == parse_status::malformed);
        CHECK(status_of("250x ok\r\n") == parse_status::malformed);
        CHECK(status_of("25\r\n") == parse_status::malformed);
        CHECK(status_of("600 what\r\n") == parse_status::malformed);
        CHECK(status_of("150 what\r\n") == parse_status::malformed);
        CHECK(status_of("250-a\r\n251 b\r\n") == parse_status::malformed);
        CHECK(status_of("hello\r\n") == parse_status::malformed);
        CHECK(status_of(std::string(max_reply_size + 1, 'x')) == parse_status::malformed);
        std::string huge = "250-";
        while (huge.size() <= max_reply_size) huge += "250-a line of an endless reply\r\n";
        CHECK(status_of(huge) == parse_status::malformed);
    }

    TEST_CASE("a peer that does not speak SMTP is malformed before any line ends") {
        // An HTTP server, a TLS record, noise: no need to wait for a line end
        // that may never come.
        CHECK(status_of("HTTP/1.1 400 Bad Request") == parse_status::malformed);
        CHECK(status_of("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") ==
              parse_status::malformed);
        CHECK(status_of(std::string("\x16\x03\x01\x00", 4)) == parse_status::malformed);
        CHECK(status_of(std::string("\0", 1)) == parse_status::malformed);
        CHECK(status_of("H") == parse_status::malformed);
        CHECK(status_of("1") == parse_status::malformed);
        CHECK(status_of("6") == parse_status::malformed);
        CHECK(status_of("2x") == parse_status::malformed);
        CHECK(status_of("220x") == parse_status::malformed);
        CHECK(status_of("250-a\r\nHT") == parse_status::malformed);
        // What can still become a reply waits for more.
        for (std::string_view partial : {"", "2", "22", "220", "220 ", "220-", "220\r",
                                         "220 mx.example ESMTP", "250-a\r\n25"}) {
            CAPTURE(partial);
            CHECK(status_of(partial) == parse_status::incomplete);
        }
    }

    TEST_CASE("printable excerpts of what is not a reply") {
        CHECK(printable_excerpt("HTTP/1.1 400 Bad Request\r\nServer: x\r\n") ==
              "HTTP/1.1 400 Bad Request");
        CHECK(printable_excerpt(std::string{'\x16', '\x03', '\x01', 'a', 'b', '\x80'}) == "???ab?");
        CHECK(printable_excerpt(std::string(100, 'x'), 8) == "xxxxxxxx...");
        CHECK(printable_excerpt("").empty());
    }

    TEST_CASE("enhanced status codes") {
        CHECK(parse_ok("550 5.7.26 unauthenticated\r\n").enhanced == "5.7.26");
        CHECK(parse_ok("451 4.7.500 Server busy\r\n").enhanced == "4.7.500");
        CHECK(parse_ok("250 2.0.0\r\n").enhanced == "2.0.0");
        CHECK(parse_ok("550 4.1.1 class does not match\r\n").enhanced.empty());
        CHECK(parse_ok("550 5.1.1x not a code\r\n").enhanced.empty());
        CHECK(parse_ok("550 5.1234.1 too long\r\n").enhanced.empty());
        CHECK(parse_ok("550 Requested action not taken\r\n").enhanced.empty());
        CHECK(enhanced_code_length("5.7.1\tx", '5') == 5);
    }

}  // TEST_SUITE

TEST_SUITE("smtp reply classification") {
    // Real replies as providers send them, the phase they arrived in, and what
    // they must mean. Adding a case is one line.
    struct regression {
        std::string_view reply;
        smtp_phase phase;
        transport_errc expected;
    };

    const regression real_replies[] = {
        {"421 4.7.0 Try again later, closing connection. (EHLO) a1si123 - gsmtp", smtp_phase::ehlo,
         transport_errc::rate_limited},
        {"421 4.7.0 Try again later, closing connection.", smtp_phase::mail,
         transport_errc::rate_limited},
        {"421-4.7.28 [203.0.113.5] Our system has detected an unusual rate of\r\n421-4.7.28 "
         "unsolicited mail originating from your IP address. To protect our\r\n421 4.7.28 users "
         "from spam, mail sent from your IP address has been temporarily rate limited.",
         smtp_phase::rcpt, transport_errc::rate_limited},
        // The recipient receives too quickly: this message waits, the mailbox does not.
        {"450-4.2.1 The user you are trying to contact is receiving mail too quickly. Please "
         "resend\r\n450 4.2.1 your message at a later time.",
         smtp_phase::rcpt, transport_errc::temporary_reply},
        {"451 4.7.500 Server busy. Please try again later from [203.0.113.5]. (S77714)",
         smtp_phase::rcpt, transport_errc::rate_limited},
        {"451 4.7.650 The mail server [203.0.113.5] has been temporarily rate limited due to IP "
         "reputation.",
         smtp_phase::rcpt, transport_errc::rate_limited},
        // Greylisting and other policy deferrals concern this message only.
        {"451 4.7.1 Greylisting in action, please come back later", smtp_phase::rcpt,
         transport_errc::temporary_reply},
        {"451 4.7.1 Greylisted, see http://postgrey.schweikert.ch/help/example.net.html",
         smtp_phase::rcpt, transport_errc::temporary_reply},
        {"450 4.7.1 <x@example.net>: Recipient address rejected: Policy deferral", smtp_phase::rcpt,
         transport_errc::temporary_reply},
        {"451 4.7.1 Please try again later", smtp_phase::data_end, transport_errc::temporary_reply},
        // Rate limits of the route keep throttling it.
        {"451 4.7.0 Too many messages from this sender, slow down", smtp_phase::mail,
         transport_errc::rate_limited},
        {"421 4.7.0 Too many connections from your host", smtp_phase::greeting,
         transport_errc::rate_limited},
        {"451 4.7.0 Too many connections from your host", smtp_phase::greeting,
         transport_errc::rate_limited},
        {"450 4.7.1 Rate limited, please slow down", smtp_phase::rcpt,
         transport_errc::rate_limited},
        {"451 4.7.0 Throttling failure: Maximum sending rate exceeded.", smtp_phase::data_end,
         transport_errc::rate_limited},
        {"421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, "
         "closing transmission channel",
         smtp_phase::greeting, transport_errc::rate_limited},
        {"421 4.7.26 Your email has been rate limited because it is unauthenticated.",
         smtp_phase::data_end, transport_errc::authentication_failed},
        {"550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n550 "
         "5.1.1 double-checking the recipient's email address.",
         smtp_phase::rcpt, transport_errc::recipient_rejected},
        {"550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
         smtp_phase::rcpt, transport_errc::recipient_rejected},
        {"550 5.2.1 The email account that you tried to reach is disabled.", smtp_phase::rcpt,
         transport_errc::recipient_rejected},
        {"550 5.4.1 Recipient address rejected: Access denied. AS(201806281)", smtp_phase::rcpt,
         transport_errc::recipient_rejected},
        {"550 5.7.1 RESOLVER.RST.NotAuthorized; not authorized", smtp_phase::rcpt,
         transport_errc::recipient_rejected},
        {"550 Requested action not taken: mailbox unavailable", smtp_phase::rcpt,
         transport_errc::recipient_rejected},
        {"550 5.4.5 Daily user sending quota exceeded. d1-20020a170902", smtp_phase::mail,
         transport_errc::sender_quota_exhausted},
        {"550 5.4.5 Daily user sending quota exceeded.", smtp_phase::rcpt,
         transport_errc::sender_quota_exhausted},
        {"550 5.7.233 Your tenant has exceeded its limit", smtp_phase::data_end,
         transport_errc::sender_quota_exhausted},
        {"554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
         "process message",
         smtp_phase::data_end, transport_errc::sender_quota_exhausted},
        {"550-5.7.26 This mail is unauthenticated, which poses a security risk to the\r\n550 "
         "5.7.26 sender and Gmail users, and has been blocked.",
         smtp_phase::data_end, transport_errc::authentication_failed},
        {"550 5.7.27 The sender's domain does not pass SPF.", smtp_phase::data_end,
         transport_errc::authentication_failed},
        {"550 5.7.515 Access denied, sending domain example.com does not meet the required "
         "authentication level.",
         smtp_phase::rcpt, transport_errc::authentication_failed},
        {"550 5.7.509 Access denied, sending domain example.com does not pass DMARC verification "
         "and has a DMARC policy of reject.",
         smtp_phase::rcpt, transport_errc::authentication_failed},
        {"535 5.7.8 Username and Password not accepted. Learn more at "
         "https://support.google.com/mail/?p=BadCredentials",
         smtp_phase::auth, transport_errc::authentication_failed},
        {"535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
         "Tenant.",
         smtp_phase::auth, transport_errc::authentication_failed},
        {"534 5.7.9 Application-specific password required.", smtp_phase::auth,
         transport_errc::authentication_failed},
        {"530 5.7.0 Authentication Required.", smtp_phase::mail,
         transport_errc::authentication_failed},
        {"530 5.7.57 Client not authenticated to send mail.", smtp_phase::mail,
         transport_errc::authentication_failed},
        {"550 5.7.60 SMTP; Client does not have permissions to send as this sender",
         smtp_phase::data_end, transport_errc::configuration},
        {"554 5.7.1 <x@example.net>: Relay access denied", smtp_phase::rcpt,
         transport_errc::configuration},
        {"553 5.7.1 <a@example.com>: Sender address rejected: not owned by user alice",
         smtp_phase::mail, transport_errc::configuration},
        {"553 5.1.8 <a@nowhere.invalid>: Sender address rejected: Domain not found",
         smtp_phase::mail, transport_errc::configuration},
        {"503 5.5.1 Error: authentication not enabled", smtp_phase::auth,
         transport_errc::configuration},
        {"503 5.5.1 Error: need RCPT command", smtp_phase::data, transport_errc::configuration},
        {"554 5.7.1 Service unavailable; Client host [203.0.113.5] blocked using zen.spamhaus.org",
         smtp_phase::rcpt, transport_errc::sender_reputation},
        {"550 5.7.708 Service unavailable. Access denied, traffic not accepted from this IP.",
         smtp_phase::mail, transport_errc::sender_reputation},
        {"550 5.7.606 Access denied, banned sending IP [203.0.113.5].", smtp_phase::rcpt,
         transport_errc::sender_reputation},
        {"554 5.7.1 Service unavailable; client host [127.0.0.1] blocked", smtp_phase::rcpt,
         transport_errc::sender_reputation},
        {"550 5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Part of their "
         "network is on our block list (S3150).",
         smtp_phase::rcpt, transport_errc::sender_reputation},
        // A policy refusal of this message is the message's permanent failure,
        // not a verdict on the sender.
        {"554 5.7.9 Message not accepted for policy reasons.", smtp_phase::data_end,
         transport_errc::content_rejected},
        {"554 5.7.1 Message rejected due to content restrictions", smtp_phase::data_end,
         transport_errc::content_rejected},
        {"550 5.7.1 Message rejected as spam by Content Filtering.", smtp_phase::data_end,
         transport_errc::content_rejected},
        {"554 5.7.1 <x@example.net>: Recipient address rejected: Access denied", smtp_phase::rcpt,
         transport_errc::content_rejected},
        {"554 No SMTP service here", smtp_phase::greeting, transport_errc::sender_reputation},
        {"552 5.3.4 Message size exceeds fixed limit", smtp_phase::data_end,
         transport_errc::content_rejected},
        {"552 5.2.2 The recipient's inbox is out of storage space.", smtp_phase::rcpt,
         transport_errc::content_rejected},
        {"552 Message size exceeds fixed maximum message size", smtp_phase::data_end,
         transport_errc::content_rejected},
        {"554 5.6.0 Message contains invalid header", smtp_phase::data_end,
         transport_errc::content_rejected},
        {"554 Transaction failed", smtp_phase::data_end, transport_errc::content_rejected},
        {"555 5.5.4 Unsupported option: SMTPUTF8", smtp_phase::mail,
         transport_errc::content_rejected},
        {"550 Requested action not taken", smtp_phase::mail, transport_errc::configuration},
        {"452 4.5.3 Too many recipients", smtp_phase::rcpt, transport_errc::temporary_reply},
        {"450 4.2.0 <x@example.net>: Recipient address rejected: Greylisted", smtp_phase::rcpt,
         transport_errc::temporary_reply},
        {"452 4.2.2 The email account that you tried to reach is over quota.", smtp_phase::rcpt,
         transport_errc::temporary_reply},
        {"421 4.4.2 Connection dropped due to timeout", smtp_phase::mail,
         transport_errc::temporary_reply},
        {"421 Service not available, closing transmission channel", smtp_phase::greeting,
         transport_errc::temporary_reply},
        {"454 4.7.0 TLS not available due to local problem", smtp_phase::starttls,
         transport_errc::temporary_reply},
        {"454 4.7.0 Temporary authentication failure", smtp_phase::auth,
         transport_errc::temporary_reply},
        {"451 4.3.0 Mail server temporarily rejected message.", smtp_phase::data_end,
         transport_errc::temporary_reply},
    };

    TEST_CASE("regression table of real replies") {
        for (const auto& c : real_replies) {
            CAPTURE(c.reply);
            CAPTURE(phase_name(c.phase));
            std::string in(c.reply);
            in += "\r\n";
            const auto r = parse_ok(in);
            const auto got =
                mailers::detail::classify_smtp_reply(r.code, r.enhanced, r.text, c.phase);
            const int row =
                mailers::detail::match_smtp_reply_rule(r.code, r.enhanced, r.text, c.phase);
            CAPTURE(row);
            if (row >= 0)
                CAPTURE(mailers::detail::smtp_reply_rules()[static_cast<std::size_t>(row)].why);
            CHECK(static_cast<int>(got) == static_cast<int>(c.expected));
        }
    }

    TEST_CASE("failure classes of the issue's examples") {
        const auto cls = [](int code, std::string_view enhanced, smtp_phase p) {
            return mailers::classify(
                make_error_code(mailers::detail::classify_smtp_reply(code, enhanced, "", p)));
        };
        CHECK(cls(421, "4.7.0", smtp_phase::mail) == failure::throttled);
        CHECK(cls(421, "4.7.28", smtp_phase::mail) == failure::throttled);
        CHECK(cls(450, "4.2.1", smtp_phase::rcpt) == failure::transient);
        CHECK(cls(451, "4.7.1", smtp_phase::rcpt) == failure::transient);
        CHECK(cls(450, "4.7.1", smtp_phase::mail) == failure::transient);
        CHECK(cls(451, "4.7.500", smtp_phase::rcpt) == failure::throttled);
        CHECK(cls(550, "5.1.1", smtp_phase::rcpt) == failure::recipient_permanent);
        CHECK(cls(550, "5.4.5", smtp_phase::mail) == failure::quota_exhausted);
        CHECK(cls(550, "5.7.26", smtp_phase::data_end) == failure::auth);
        CHECK(cls(550, "5.7.515", smtp_phase::rcpt) == failure::auth);
        CHECK(cls(554, "5.7.1", smtp_phase::rcpt) == failure::message_rejected);
        CHECK(cls(554, "5.7.1", smtp_phase::data_end) == failure::message_rejected);
        CHECK(cls(550, "5.7.233", smtp_phase::data_end) == failure::quota_exhausted);
        CHECK(cls(535, "5.7.8", smtp_phase::auth) == failure::auth);
        CHECK(cls(552, "5.3.4", smtp_phase::data_end) == failure::message_rejected);
        CHECK(cls(451, "", smtp_phase::rcpt) == failure::transient);
        CHECK(cls(499, "4.9.9", smtp_phase::mail) == failure::transient);
    }

    TEST_CASE("every reply code class has a row, and every row is reachable") {
        const auto rules = mailers::detail::smtp_reply_rules();
        for (int code = 400; code < 600; ++code) {
            for (int p = 0; p <= static_cast<int>(smtp_phase::quit); ++p)
                CHECK(mailers::detail::match_smtp_reply_rule(code, "", "",
                                                             static_cast<smtp_phase>(p)) >= 0);
        }
        for (const auto& r : rules) {
            CHECK(r.code.size() == 3);
            CHECK(!r.why.empty());
            CHECK(r.phases != 0);
        }
    }

    TEST_CASE("pattern matching: 'x' digits and '*' parts") {
        CHECK(mailers::detail::classify_smtp_reply(451, "4.7.599", "", smtp_phase::rcpt) ==
              transport_errc::rate_limited);
        CHECK(mailers::detail::classify_smtp_reply(451, "4.7.50", "", smtp_phase::rcpt) ==
              transport_errc::temporary_reply);  // 4.7.* row
        CHECK(mailers::detail::classify_smtp_reply(550, "5.1.99", "", smtp_phase::rcpt) ==
              transport_errc::recipient_rejected);
        CHECK(mailers::detail::classify_smtp_reply(550, "5.1.1", "", smtp_phase::mail) ==
              transport_errc::configuration);
    }

}  // TEST_SUITE

TEST_SUITE("smtp protocol pieces") {
    TEST_CASE("EHLO keywords") {
        const auto r = parse_ok(
            "250-smtp.example.com at your service\r\n250-SIZE 35882577\r\n250-8BITMIME\r\n"
            "250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
            "250-auth login Plain XOAUTH2 OAUTHBEARER\r\n250 SMTPUTF8\r\n");
        const auto c = parse_ehlo(r);
        CHECK(c.esmtp);
        CHECK(c.size);
        CHECK(c.size_limit == 35882577);
        CHECK(c.eight_bit_mime);
        CHECK(c.starttls);
        CHECK(c.enhanced_status_codes);
        CHECK(c.pipelining);
        CHECK(c.smtputf8);
        CHECK(c.auth_plain);
        CHECK(c.auth_login);
        CHECK(c.auth_xoauth2);
        CHECK(c.auth_mechanisms == "login Plain XOAUTH2 OAUTHBEARER");

        const auto old = parse_ehlo(parse_ok("250-mx\r\n250-AUTH=LOGIN\r\n250 SIZE\r\n"));
        CHECK(old.auth_login);
        CHECK(!old.auth_plain);
        CHECK(old.size);
        CHECK(old.size_limit == 0);
        CHECK(!old.starttls);

        const auto bare = parse_ehlo(parse_ok("250 mx.example.com\r\n"));
        CHECK(bare.esmtp);
        CHECK(!bare.pipelining);
        CHECK(bare.auth_mechanisms.empty());
    }

    TEST_CASE("MAIL and RCPT commands") {
        std::string out;
        append_mail_from(out, "a@example.com", {});
        CHECK(out == "MAIL FROM:<a@example.com>\r\n");
        out.clear();
        append_mail_from(out, "", {1234, true, true});
        CHECK(out == "MAIL FROM:<> SIZE=1234 BODY=8BITMIME SMTPUTF8\r\n");
        out.clear();
        append_rcpt_to(out, "b@example.org");
        CHECK(out == "RCPT TO:<b@example.org>\r\n");
    }

    TEST_CASE("SASL encodings") {
        std::string out;
        append_auth_plain(out, "user", "pass");
        CHECK(out == "AUTH PLAIN AHVzZXIAcGFzcw==\r\n");
        out.clear();
        // Google's published XOAUTH2 example.
        append_auth_xoauth2(out, "someuser@example.com",
                            "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg");
        CHECK(out ==
              "AUTH XOAUTH2 "
              "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNr"
              "QmhkSFJoZG1semRHRXVZMjl0Q2cBAQ==\r\n");
        out.clear();
        append_base64_line(out, "Username:");
        CHECK(out == "VXNlcm5hbWU6\r\n");
        std::string decoded;
        CHECK(decode_base64("eyJzdGF0dXMiOiI0MDEifQ==", decoded));
        CHECK(decoded == "{\"status\":\"401\"}");
        CHECK(!decode_base64("not base64!", decoded));
        CHECK(!decode_base64("QQ==QQ", decoded));
    }

    TEST_CASE("dot-stuffing") {
        const auto stuffed = [](std::string_view in) {
            std::string out;
            append_dot_stuffed(out, in);
            return out;
        };
        CHECK(stuffed("a\r\nb\r\n") == "a\r\nb\r\n.\r\n");
        CHECK(stuffed(".a\r\n") == "..a\r\n.\r\n");
        CHECK(stuffed("a\r\n.\r\nb\r\n") == "a\r\n..\r\nb\r\n.\r\n");
        CHECK(stuffed("a\r\n..b\r\n...\r\n") == "a\r\n...b\r\n....\r\n.\r\n");
        CHECK(stuffed("no final newline") == "no final newline\r\n.\r\n");
        CHECK(stuffed("a\r\n.") == "a\r\n..\r\n.\r\n");
        CHECK(stuffed("mid.dle\r\n") == "mid.dle\r\n.\r\n");
        CHECK(stuffed("") == "\r\n.\r\n");
    }

    TEST_CASE("scanning a rendered message") {
        auto s = scan_message("Subject: x\r\n\r\nbody\r\n");
        CHECK(!s.needs_stuffing);
        CHECK(!s.header_8bit);
        CHECK(!s.body_8bit);
        CHECK(s.ends_with_crlf);
        s = scan_message("Subject: x\r\n\r\n.body\r\n");
        CHECK(s.needs_stuffing);
        s = scan_message("From: jos\xc3\xa9@example.com\r\n\r\nbody");
        CHECK(s.header_8bit);
        CHECK(!s.body_8bit);
        CHECK(!s.ends_with_crlf);
        s = scan_message(
            "Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9f"
            "e\r\n");
        CHECK(!s.header_8bit);
        CHECK(s.body_8bit);
        CHECK(end_of_data(true) == ".\r\n");
        CHECK(end_of_data(false) == "\r\n.\r\n");
    }

    TEST_CASE("queue ids from the reply to the final dot") {
        CHECK(queue_id_from_reply(parse_ok("250 2.0.0 Ok: queued as 4F3D21C0A5\r\n")) ==
              "4F3D21C0A5");
        CHECK(queue_id_from_reply(parse_ok(
                  "250 2.0.0 OK  1700000000 a1-20020a05600c0a01si1234567wmp.123 - gsmtp\r\n")) ==
              "a1-20020a05600c0a01si1234567wmp.123");
        CHECK(queue_id_from_reply(parse_ok(
                  "250 Ok 0100018c5e3f4d6a-12345678-aaaa-bbbb-cccc-0123456789ab-000000\r\n")) ==
              "0100018c5e3f4d6a-12345678-aaaa-bbbb-cccc-0123456789ab-000000");
        CHECK(queue_id_from_reply(parse_ok("250 2.6.0 <abc@host.prod.outlook.com> [InternalId=1, "
                                           "Hostname=h] Queued mail for delivery\r\n")) ==
              "abc@host.prod.outlook.com");
        CHECK(queue_id_from_reply(parse_ok("250 OK\r\n")).empty());
        CHECK(queue_id_from_reply(parse_ok("250 2.0.0 Message accepted for delivery\r\n")).empty());
    }

}  // TEST_SUITE
