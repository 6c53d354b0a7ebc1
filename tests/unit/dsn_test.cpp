// fmt first, so that dsn.hpp provides its formatters.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <mailers/dsn.hpp>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

using namespace mailers;

namespace {

using option_list = std::vector<std::pair<std::string, std::string>>;

struct valid_case {
    std::string_view text;
    std::string_view scheme, transport, variant, user, password, host;
    std::optional<std::uint16_t> port;
    std::string_view path;
    option_list options;
};

dsn parse_ok(std::string_view text) {
    diagnostics diag;
    auto r = parse_single_dsn(text, &diag);
    REQUIRE_MESSAGE(r.has_value(), text, " -> ", diag.message);
    return *r;
}

std::string parse_error(std::string_view text) {
    diagnostics diag;
    auto r = parse_dsn(text, &diag);
    REQUIRE_MESSAGE(!r.has_value(), text);
    CHECK(r.error() == make_error_code(errc::invalid_argument));
    return diag.message;
}

}  // namespace

TEST_CASE("valid DSNs decode into their parts") {
    const valid_case cases[] = {
        {"smtp://user:pass@smtp.example.com:587",
         "smtp",
         "smtp",
         "",
         "user",
         "pass",
         "smtp.example.com",
         587,
         "",
         {}},
        {"smtps://u:p@host:465", "smtps", "smtps", "", "u", "p", "host", 465, "", {}},
        {"ses+api://KEY:SECRET@default?region=eu-west-1",
         "ses+api",
         "ses",
         "api",
         "KEY",
         "SECRET",
         "default",
         std::nullopt,
         "",
         {{"region", "eu-west-1"}}},
        {"SES+SMTP://AKIA:pw@email-smtp.eu-west-1.amazonaws.com:2587",
         "ses+smtp",
         "ses",
         "smtp",
         "AKIA",
         "pw",
         "email-smtp.eu-west-1.amazonaws.com",
         2587,
         "",
         {}},
        {"sendgrid+api://KEY@default",
         "sendgrid+api",
         "sendgrid",
         "api",
         "KEY",
         "",
         "default",
         std::nullopt,
         "",
         {}},
        {"postmark+api://TOKEN@default?stream=outbound",
         "postmark+api",
         "postmark",
         "api",
         "TOKEN",
         "",
         "default",
         std::nullopt,
         "",
         {{"stream", "outbound"}}},
        {"mailgun+api://KEY:mg.example.com@default?region=eu",
         "mailgun+api",
         "mailgun",
         "api",
         "KEY",
         "mg.example.com",
         "default",
         std::nullopt,
         "",
         {{"region", "eu"}}},
        {"gmail+api://default?client_id=abc.apps.googleusercontent.com&client_secret=s&user=a@b.c",
         "gmail+api",
         "gmail",
         "api",
         "",
         "",
         "default",
         std::nullopt,
         "",
         {{"client_id", "abc.apps.googleusercontent.com"},
          {"client_secret", "s"},
          {"user", "a@b.c"}}},
        {"graph+api://CLIENT:SECRET@default?tenant=contoso.onmicrosoft.com",
         "graph+api",
         "graph",
         "api",
         "CLIENT",
         "SECRET",
         "default",
         std::nullopt,
         "",
         {{"tenant", "contoso.onmicrosoft.com"}}},
        {"null://null", "null", "null", "", "", "", "null", std::nullopt, "", {}},
        {"capture://default", "capture", "capture", "", "", "", "default", std::nullopt, "", {}},
        {"file:///var/mail/out", "file", "file", "", "", "", "", std::nullopt, "/var/mail/out", {}},
        {"file://localhost/tmp/x",
         "file",
         "file",
         "",
         "",
         "",
         "localhost",
         std::nullopt,
         "/tmp/x",
         {}},
        {"smtp://Mail.Example.COM",
         "smtp",
         "smtp",
         "",
         "",
         "",
         "mail.example.com",
         std::nullopt,
         "",
         {}},
        {"smtp://[::1]:2525", "smtp", "smtp", "", "", "", "::1", 2525, "", {}},
        {"smtp://u:p@[2001:DB8::1]",
         "smtp",
         "smtp",
         "",
         "u",
         "p",
         "2001:db8::1",
         std::nullopt,
         "",
         {}},
        {"smtp://[::ffff:127.0.0.1]:25/",
         "smtp",
         "smtp",
         "",
         "",
         "",
         "::ffff:127.0.0.1",
         25,
         "/",
         {}},
        {"smtp://127.0.0.1:1", "smtp", "smtp", "", "", "", "127.0.0.1", 1, "", {}},
        {"smtp://h:65535", "smtp", "smtp", "", "", "", "h", 65535, "", {}},
        // The '/' and '+' of an AWS secret key need no encoding; the last '@' ends the userinfo.
        {"ses+api://AKIDEXAMPLE:wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY@default?region=us-east-1",
         "ses+api",
         "ses",
         "api",
         "AKIDEXAMPLE",
         "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
         "default",
         std::nullopt,
         "",
         {{"region", "us-east-1"}}},
        {"smtp://user@example.com:p@ss:w0rd@smtp.example.com",
         "smtp",
         "smtp",
         "",
         "user@example.com",
         "p@ss:w0rd",
         "smtp.example.com",
         std::nullopt,
         "",
         {}},
        {"smtp://:only-password@h",
         "smtp",
         "smtp",
         "",
         "",
         "only-password",
         "h",
         std::nullopt,
         "",
         {}},
        {"smtp://user:@h", "smtp", "smtp", "", "user", "", "h", std::nullopt, "", {}},
        // Percent-decoding everywhere except the host; '+' stays a plus sign.
        {"smtp://us%65r%40x.com:p%3Fa%23s%25s%2F@h/a%20b?k%5B%5D=v%26w&q=1+2",
         "smtp",
         "smtp",
         "",
         "user@x.com",
         "p?a#s%s/",
         "h",
         std::nullopt,
         "/a b",
         {{"k[]", "v&w"}, {"q", "1+2"}}},
        {"smtp://h?a=1&a=2&&b=3&",
         "smtp",
         "smtp",
         "",
         "",
         "",
         "h",
         std::nullopt,
         "",
         {{"a", "1"}, {"a", "2"}, {"b", "3"}}},
        {"smtp://h?", "smtp", "smtp", "", "", "", "h", std::nullopt, "", {}},
        {"smtp://h?x=a=b", "smtp", "smtp", "", "", "", "h", std::nullopt, "", {{"x", "a=b"}}},
        {"smtp://b\xc3\xbc"
         "cher.example",
         "smtp",
         "smtp",
         "",
         "",
         "",
         "b\xc3\xbc"
         "cher.example",
         std::nullopt,
         "",
         {}},
        // References are kept as written by the parser.
        {"smtp://env:SMTP_USER:env:SMTP_PASS@h",
         "smtp",
         "smtp",
         "",
         "env:SMTP_USER",
         "env:SMTP_PASS",
         "h",
         std::nullopt,
         "",
         {}},
        {"smtp://file:/run/secrets/u:file:/run/secrets/p@h",
         "smtp",
         "smtp",
         "",
         "file:/run/secrets/u",
         "file:/run/secrets/p",
         "h",
         std::nullopt,
         "",
         {}},
        {"smtp://me:env:SMTP_PASS@h",
         "smtp",
         "smtp",
         "",
         "me",
         "env:SMTP_PASS",
         "h",
         std::nullopt,
         "",
         {}},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        const auto d = parse_ok(c.text);
        CHECK(d.scheme == c.scheme);
        CHECK(d.transport == c.transport);
        CHECK(d.variant == c.variant);
        CHECK(d.user.reveal() == c.user);
        CHECK(d.password.reveal() == c.password);
        CHECK(d.host == c.host);
        CHECK(d.port == c.port);
        CHECK(d.path == c.path);
        CHECK(d.options == c.options);
    }
}

TEST_CASE("an @ after the ? belongs to the query") {
    // The userinfo ends at the last '@' before '?', so an address in an option
    // value is not taken for credentials.
    const auto d = parse_ok("smtp://h:25?from=noreply@example.com");
    CHECK(d.host == "h");
    CHECK(d.option("from") == "noreply@example.com");
}

TEST_CASE("option lookup") {
    const auto d = parse_ok("ses+api://K:S@default?region=eu-west-1&tag=a&tag=b");
    CHECK(d.option("region") == "eu-west-1");
    CHECK(d.option("tag") == "a");
    CHECK(d.options_named("tag") == std::vector<std::string>{"a", "b"});
    CHECK_FALSE(d.option("Region").has_value());
    CHECK(d.options_named("missing").empty());
}

TEST_CASE("malformed DSNs name the part that is wrong") {
    struct row {
        std::string_view text;
        std::string_view message_part;
    };
    const row rows[] = {
        {"", "DSN is empty"},
        {"   ", "DSN is empty"},
        {"smtp.example.com:587", "DSN scheme is missing"},
        {"://host", "DSN scheme is missing"},
        {"smtp:/host", "DSN scheme is missing"},
        {"1smtp://host", "DSN scheme is invalid"},
        {"sm_tp://host", "DSN scheme is invalid"},
        {"ses+://K@default", "DSN scheme 'ses+' has an empty part after '+'"},
        {"smtp://", "DSN host is missing"},
        {"smtp://u:p@", "DSN host is missing"},
        {"smtp://:25", "DSN host is missing"},
        {"smtp://u:p@/path", "DSN host is missing"},
        {"smtp://host:99999", "DSN port '99999' is out of range"},
        {"smtp://host:0", "DSN port '0' is out of range"},
        {"smtp://host:123456789012345678901234567890", "is out of range"},
        {"smtp://host:", "DSN port is empty"},
        {"smtp://host:smtp", "DSN port is not a number"},
        {"smtp://host:-1", "DSN port is not a number"},
        {"smtp://h:1:2", "DSN host contains ':'"},
        {"smtp://ho$t", "DSN host contains a character other than"},
        {"smtp://ho%41st", "DSN host contains a character other than"},
        {"smtp://[::1", "DSN host has '[' without a closing ']'"},
        {"smtp://[not-ipv6]", "DSN host in brackets is not an IPv6 address"},
        {"smtp://[::1]x", "DSN host '[...]' must be followed by"},
        {"smtp://h?region", "DSN option 'region' has no value"},
        {"ses+api://K:S@default?region=", "DSN option 'region' has no value"},
        {"smtp://h?=v", "DSN option 1 has an empty name"},
        {"smtp://h?a=1&b c=2", "DSN option 'b' has no value"},
        {"smtp://h?a=1&b\tc=2", "DSN option 'b' has no value"},
        {"smtp://h?a=1&b$=2", "DSN option 2 has a name with characters other than"},
        {"smtp://h?a=%zz", "DSN option 'a' has a '%' not followed by two hex digits"},
        {"smtp://h?a=%0D%0A", "DSN option 'a' contains a control character"},
        {"smtp://h/%", "DSN path has a '%' not followed by two hex digits"},
        {"smtp://u%:p@h", "DSN user has a '%' not followed by two hex digits"},
        {"smtp://u:p%4@h", "DSN password has a '%' not followed by two hex digits"},
        {"smtp://u:p%00@h", "DSN password contains a control character"},
        {"smtp://h#frag", "DSN contains '#'"},
        {"smtp://h\x01", "DSN contains a space or control character"},
        {"smtp://h\x7f", "DSN contains a space or control character"},
        {"smtp://a smtp://b", "group several DSNs in failover(...) or roundrobin(...)"},
        {"failover(smtp://a smtp://b", "unbalanced parenthesis in failover(...)"},
        {"roundrobin(smtp://a failover(smtp://b)", "unbalanced parenthesis in roundrobin(...)"},
        {"failover(smtp://a))", "unbalanced parenthesis: unexpected ')' after failover(...)"},
        {"failover()", "failover(...) needs at least one DSN"},
        {"roundrobin( )", "roundrobin(...) needs at least one DSN"},
        {"failover(smtp://a smtp://b:99999)",
         "DSN port '99999' is out of range (1-65535) (in "
         "item 2 of failover(...))"},
        {"failover(smtp://a roundrobin(smtp://b nope))",
         "DSN scheme is missing (expected 'scheme://...') (in item 2 of roundrobin(...)) (in "
         "item 2 of failover(...))"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.text);
        const auto message = parse_error(r.text);
        CHECK_MESSAGE(message.find(r.message_part) != std::string::npos, message);
    }
}

TEST_CASE("nesting depth is bounded") {
    std::string deep;
    for (int i = 0; i < 100; ++i) deep += "failover(";
    deep += "null://null";
    deep += std::string(100, ')');
    CHECK(parse_error(deep).find("nested more than") != std::string::npos);

    std::string ok;
    for (int i = 0; i < 10; ++i) ok += "roundrobin(";
    ok += "null://null";
    ok += std::string(10, ')');
    CHECK(parse_dsn(ok).has_value());
}

TEST_CASE("secrets never appear in errors") {
    // Each input holds "S3CR3T" in a credential position and is malformed
    // elsewhere, or is malformed in a way that displaces the credential.
    const std::string_view inputs[] = {
        "smtp://user:S3CR3T@host:99999",
        "smtp://user:S3CR3T@host:abc",
        "smtp://user:S3CR3T@",
        "smtp://user:S3CR3T@h?region",
        "smtp://user:S3CR3T@h?a=%zz",
        "smtp://S3CR3T@ho$t",
        "ses+api://KEY:S3CR3T@default?secret=S3CR3T&x",
        "smtp://user:S3#CR3T@host",          // '#' unencoded
        "smtp://user:S3CR3T?x@host",         // '?' unencoded: displaced into the query
        "smtp://user:S3?CR3T@host",          // displaced: the password becomes a port
        "smtp://user:S3CR3T%@host",          // bad escape
        "smtp://user:S3CR3T@host smtp://x",  // trailing text
        "smtp://S3CR3T:S3CR3T@[::1",         // bad IPv6
        "S3CR3T:S3CR3T@host",                // no scheme
        "sm tp://S3CR3T@host",               // space
        "s!mtp://S3CR3T@host",               // bad scheme
        "failover(smtp://u:S3CR3T@h:0 x)",   // inside a group
        "failover(smtp://u:S3CR3T@h x://y",  // unbalanced
        "roundrobin(smtp://u:S3CR3T@h)) ",   // extra ')'
        "smtp://h?password=S3CR3T%0A",       // control char in a secret option
        "smtp://h?token=S3CR3T&=1",          // empty option name after a secret
    };
    for (auto in : inputs) {
        CAPTURE(in);
        const auto message = parse_error(in);
        CHECK_MESSAGE(message.find("S3CR3T") == std::string::npos, message);
        CHECK_MESSAGE(message.find("S3") == std::string::npos, message);
    }
}

TEST_CASE("to_string and printing redact secrets") {
    const auto d = parse_ok(
        "ses+api://AKIAS3CR3T:wJal%2FS3CR3T@default:443/p?region=eu-west-1&secret=S3CR3T"
        "&Token=S3CR3T&client_secret=S3CR3T&key=env:AWS_KEY");
    const auto s = d.to_string();
    CHECK(s ==
          "ses+api://****:****@default:443/p?region=eu-west-1&secret=****&Token=****&client_"
          "secret=****&key=env:AWS_KEY");
    CHECK(s.find("S3CR3T") == std::string::npos);

    std::ostringstream os;
    os << d << ' ' << d.password;
    CHECK(os.str() == s + " ****");
    CHECK(fmt::format("{}", d.user) == "****");
    CHECK(fmt::format("{}|{}", d, d.password) == s + "|****");

    CHECK(parse_ok("smtp://h").to_string() == "smtp://h");
    CHECK(parse_ok("smtp://u@h").to_string() == "smtp://****@h");
    CHECK(parse_ok("smtp://:p@h").to_string() == "smtp://:****@h");
    CHECK(parse_ok("smtp://[::1]:2525").to_string() == "smtp://[::1]:2525");
    CHECK(parse_ok("file:///var/mail/a%20b").to_string() == "file:///var/mail/a%20b");
    CHECK(parse_ok("smtp://h?a=x%26y&b=%2B").to_string() == "smtp://h?a=x%26y&b=+");
    CHECK(parse_ok("smtp://env:U:env:P@h").to_string() == "smtp://env:U:env:P@h");

    const auto c = parse_dsn(
        "failover(smtp://u:S3CR3T@a roundrobin(sendgrid+api://S3CR3T@default "
        "null://null))");
    REQUIRE(c.has_value());
    CHECK(c->to_string() ==
          "failover(smtp://****:****@a roundrobin(sendgrid+api://****@default null://null))");
    CHECK(fmt::format("{}", *c) == c->to_string());
}

TEST_CASE("secret") {
    secret s;
    CHECK(s.empty());
    CHECK_FALSE(s.is_reference());
    secret t{"hunter2"};
    CHECK_FALSE(t.empty());
    CHECK(t.reveal() == "hunter2");
    CHECK(secret{"env:X"}.is_reference());
    CHECK(secret{"file:/x"}.is_reference());
    CHECK_FALSE(secret{"environment"}.is_reference());
    std::ostringstream os;
    os << t;
    CHECK(os.str() == "****");
    CHECK(fmt::format("{:>6}", t) == "  ****");
}

TEST_CASE("composites, including nesting") {
    diagnostics diag;
    auto r = parse_dsn(
        "  failover(smtp://a:1@h1:25   roundrobin( "
        "sendgrid+api://K@default\tpostmark+api://T@default"
        " )\n null://null)  ",
        &diag);
    REQUIRE_MESSAGE(r.has_value(), diag.message);
    CHECK(r->k == composite_dsn::kind::failover);
    REQUIRE(r->children.size() == 3);
    CHECK(r->children[0].k == composite_dsn::kind::single);
    CHECK(r->children[0].single.host == "h1");
    CHECK(r->children[0].single.port == 25);
    CHECK(r->children[1].k == composite_dsn::kind::roundrobin);
    REQUIRE(r->children[1].children.size() == 2);
    CHECK(r->children[1].children[0].single.scheme == "sendgrid+api");
    CHECK(r->children[1].children[1].single.user.reveal() == "T");
    CHECK(r->children[2].single.scheme == "null");

    // Closing parentheses may follow an item directly, several at once.
    auto tight = parse_dsn("roundrobin(failover(smtp://a smtp://b?x=1))");
    REQUIRE(tight.has_value());
    CHECK(tight->k == composite_dsn::kind::roundrobin);
    REQUIRE(tight->children.size() == 1);
    CHECK(tight->children[0].children[1].single.option("x") == "1");

    // A ')' inside an item is kept; only trailing ones close groups.
    auto inner = parse_dsn("failover(smtp://u:a)b@h)");
    REQUIRE(inner.has_value());
    CHECK(inner->children[0].single.password.reveal() == "a)b");

    // Keywords are case-insensitive; one item is allowed.
    auto one = parse_dsn("FailOver(null://null)");
    REQUIRE(one.has_value());
    CHECK(one->k == composite_dsn::kind::failover);
    CHECK(one->to_string() == "failover(null://null)");

    // A single DSN parses to kind::single, and a trailing ')' at top level is
    // part of the DSN (here it makes the host invalid).
    auto single = parse_dsn("smtp://h");
    REQUIRE(single.has_value());
    CHECK(single->k == composite_dsn::kind::single);
    CHECK(single->children.empty());
    CHECK(parse_error("smtp://h)").find("DSN host") != std::string::npos);

    auto refused = parse_single_dsn("failover(smtp://a smtp://b)", &diag);
    REQUIRE_FALSE(refused.has_value());
    CHECK(diag.message == "failover(...) is not allowed here; give one DSN");
}

TEST_CASE("resolve_secrets reads environment variables and files") {
    ::setenv("MAILERS_DSN_TEST_USER", "apikey", 1);
    ::setenv("MAILERS_DSN_TEST_PASS", "p@ss/w:rd", 1);
    ::setenv("MAILERS_DSN_TEST_EMPTY", "", 1);
    ::unsetenv("MAILERS_DSN_TEST_UNSET");

    char path[] = "/tmp/mailers_dsn_test_XXXXXX";
    const int fd = ::mkstemp(path);
    REQUIRE(fd >= 0);
    const std::string content = "line1\nS3CR3T-FROM-FILE\r\n\n";
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    ::close(fd);
    char empty_path[] = "/tmp/mailers_dsn_test_empty_XXXXXX";
    const int fd2 = ::mkstemp(empty_path);
    REQUIRE(fd2 >= 0);
    REQUIRE(::write(fd2, "\n", 1) == 1);
    ::close(fd2);

    SUBCASE("user, password and secret options") {
        auto d = parse_ok(std::string{"smtp://env:MAILERS_DSN_TEST_USER:env:MAILERS_DSN_TEST_PASS@h"
                                      "?secret=file:"} +
                          path + "&region=env:NOT_A_SECRET_OPTION");
        diagnostics diag;
        REQUIRE_MESSAGE(resolve_secrets(d, &diag).has_value(), diag.message);
        CHECK(d.user.reveal() == "apikey");
        CHECK(d.password.reveal() == "p@ss/w:rd");
        CHECK(d.option("secret") == "line1\nS3CR3T-FROM-FILE");
        // Only secret options are references.
        CHECK(d.option("region") == "env:NOT_A_SECRET_OPTION");
        CHECK(d.to_string().find("S3CR3T") == std::string::npos);
        CHECK(d.to_string().find("apikey") == std::string::npos);
    }
    SUBCASE("password from a file, user literal") {
        auto d = parse_ok(std::string{"smtp://me:file:"} + path + "@h");
        REQUIRE(resolve_secrets(d).has_value());
        CHECK(d.user.reveal() == "me");
        CHECK(d.password.reveal() == "line1\nS3CR3T-FROM-FILE");
    }
    SUBCASE("a resolved value that looks like a reference stays a value") {
        // The transport factory resolves a whole composite and the transport
        // builders resolve their own DSN again; a secret whose value starts
        // with "file:" must not be read as a path the second time, nor shown.
        ::setenv("MAILERS_DSN_TEST_LOOKALIKE", "file:/etc/hostname", 1);
        auto d = parse_ok(
            "smtp://u:env:MAILERS_DSN_TEST_LOOKALIKE@h?token=env:MAILERS_DSN_TEST_LOOKALIKE");
        CHECK(d.to_string().find("env:MAILERS_DSN_TEST_LOOKALIKE") != std::string::npos);
        REQUIRE(resolve_secrets(d).has_value());
        REQUIRE(resolve_secrets(d).has_value());
        CHECK(d.password.reveal() == "file:/etc/hostname");
        CHECK(d.option("token") == "file:/etc/hostname");
        CHECK(d.to_string().find("file:") == std::string::npos);
    }
    SUBCASE("composites resolve every item") {
        auto c = parse_dsn(
            "failover(smtp://env:MAILERS_DSN_TEST_USER@a "
            "roundrobin(smtp://x:env:MAILERS_DSN_TEST_PASS@b))");
        REQUIRE(c.has_value());
        REQUIRE(resolve_secrets(*c).has_value());
        CHECK(c->children[0].single.user.reveal() == "apikey");
        CHECK(c->children[1].children[0].single.password.reveal() == "p@ss/w:rd");
    }
    SUBCASE("failures name the reference, never a value, and change nothing") {
        struct row {
            std::string text;
            std::string message;
        };
        const row rows[] = {
            {"smtp://env:MAILERS_DSN_TEST_UNSET@h",
             "DSN user refers to environment variable 'MAILERS_DSN_TEST_UNSET', which is not set"},
            {"smtp://u:env:MAILERS_DSN_TEST_EMPTY@h",
             "DSN password refers to environment variable 'MAILERS_DSN_TEST_EMPTY', which is "
             "empty"},
            {"smtp://u:env:BAD-NAME@h", "DSN password is an 'env:' reference with an invalid"},
            {"smtp://u:file:@h", "DSN password is a 'file:' reference without a path"},
            {"smtp://u:file:/nonexistent/mailers/secret@h",
             "DSN password refers to file '/nonexistent/mailers/secret', which cannot be read: "},
            {std::string{"smtp://h?token=file:"} + empty_path,
             std::string{"DSN option 'token' refers to file '"} + empty_path + "', which is empty"},
            {"smtp://env:MAILERS_DSN_TEST_PASS:env:MAILERS_DSN_TEST_UNSET@h",
             "DSN password refers to environment variable 'MAILERS_DSN_TEST_UNSET'"},
        };
        for (const auto& r : rows) {
            CAPTURE(r.text);
            auto d = parse_ok(r.text);
            const auto before = d;
            diagnostics diag;
            auto res = resolve_secrets(d, &diag);
            REQUIRE_FALSE(res.has_value());
            CHECK(res.error() == make_error_code(errc::invalid_argument));
            CHECK_MESSAGE(diag.message.find(r.message) != std::string::npos, diag.message);
            CHECK(diag.message.find("apikey") == std::string::npos);
            CHECK(diag.message.find("p@ss") == std::string::npos);
            CHECK(d == before);
        }
    }
    ::unlink(path);
    ::unlink(empty_path);
}

TEST_CASE("secret option names") {
    for (auto n : {"key", "secret", "token", "password", "client_secret", "private_key", "api_key",
                   "access_token", "refresh_token", "TOKEN", "Client_Secret"})
        CHECK(is_secret_option(n));
    for (auto n : {"region", "stream", "keys", "tokens", "", "domain"})
        CHECK_FALSE(is_secret_option(n));
}

TEST_CASE("durations: a unit of ms, s or m, or a bare number of seconds") {
    using namespace std::chrono_literals;
    CHECK(parse_dsn_duration("1500ms") == 1500ms);
    CHECK(parse_dsn_duration("2s") == 2s);
    CHECK(parse_dsn_duration("30") == 30s);
    CHECK(parse_dsn_duration("5m") == 5min);
    CHECK(parse_dsn_duration("1ms") == 1ms);
    CHECK(parse_dsn_duration("007") == 7s);
    CHECK(parse_dsn_duration("86400") == max_dsn_duration);
    CHECK(parse_dsn_duration("1440m") == max_dsn_duration);
    CHECK(parse_dsn_duration("86400000ms") == max_dsn_duration);
    for (std::string_view bad : {"",           "0",
                                 "0ms",        "0s",
                                 "-1",         "+1",
                                 "1.5",        "1.5s",
                                 "1 s",        " 1",
                                 "1S",         "1MS",
                                 "1h",         "1d",
                                 "1sec",       "ms",
                                 "s",          "86401",
                                 "86400001ms", "1441m",
                                 "1234567890", "99999999999999999999"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_dsn_duration(bad).has_value());
    }
}

TEST_CASE("known schemes") {
    const auto schemes = known_dsn_schemes();
    CHECK(schemes.size() == 16);
    for (auto s : {"smtp", "smtps", "ses+api", "ses+smtp", "ses+https", "mailgun+api",
                   "mailgun+smtp", "sendgrid+api", "sendgrid+smtp", "postmark+api", "postmark+smtp",
                   "gmail+api", "graph+api", "null", "file", "capture"}) {
        CAPTURE(s);
        CHECK(std::find(schemes.begin(), schemes.end(), std::string_view{s}) != schemes.end());
        CHECK(parse_single_dsn(std::string{s} + "://default").has_value());
    }
}

TEST_CASE("a DSN host is at most 255 octets and holds no control character or space") {
    const std::string longest(255, 'a');
    const auto at_limit = parse_ok("smtp://u:p@" + longest + ":587");
    CHECK(at_limit.host == longest);
    CHECK(at_limit.port == 587);

    for (const std::size_t size : {std::size_t{256}, std::size_t{100 * 1024}}) {
        CAPTURE(size);
        const auto message = parse_error("smtp://u:p@" + std::string(size, 'a') + ":587");
        CHECK(message.find("DSN host is longer than 255 octets") != std::string::npos);
    }
    // A bracketed literal of any length is refused the same way.
    CHECK(parse_error("smtp://[" + std::string(300, ':') + "]").find("longer than 255") !=
          std::string::npos);
    CHECK(parse_error("failover(smtp://a smtp://" + std::string(256, 'b') + ")")
              .find("DSN host is longer than 255 octets") != std::string::npos);

    // ASCII spaces separate DSNs, and controls are refused in the whole DSN,
    // so neither reaches a host.
    CHECK(parse_error("smtp://ho st").find("group several DSNs") != std::string::npos);
    CHECK(parse_error("smtp://ho\x7fst").find("DSN contains a space or control character") !=
          std::string::npos);
    for (const std::string_view bad : {"\xc2\x85", "\xc2\x9f", "\xc2\xa0"}) {
        CAPTURE(bad);
        const auto message = parse_error("smtp://mail" + std::string(bad) + "host.example");
        CHECK(message.find("DSN host contains a control character or a space") !=
              std::string::npos);
    }
    // Other U-labels are still accepted.
    const std::string idn =
        "b\xc3\xbc"
        "cher.example";
    CHECK(parse_ok("smtp://" + idn).host == idn);
}
