#include <doctest/doctest.h>

#include <mailers/suppression.hpp>
#include <string>
#include <string_view>
#include <vector>

using mailers::normalise_address;
using mailers::normalise_domain;
using mailers::suppression_options;

namespace {

std::string key(std::string_view addr, const suppression_options& opts = {}) {
    auto r = normalise_address(addr, opts);
    REQUIRE_MESSAGE(r.has_value(), "not accepted: ", std::string(addr));
    return *r;
}

std::string domain_key(std::string_view d) {
    auto r = normalise_domain(d);
    REQUIRE_MESSAGE(r.has_value(), "not accepted: ", std::string(d));
    return *r;
}

const suppression_options none{};
const suppression_options plus{.fold_plus_tags = true, .fold_gmail_dots = false};
const suppression_options dots{.fold_plus_tags = false, .fold_gmail_dots = true};
const suppression_options both{.fold_plus_tags = true, .fold_gmail_dots = true};

}  // namespace

TEST_CASE("suppression reasons have stable names that parse back") {
    using mailers::suppression_reason;
    for (auto r :
         {suppression_reason::unsubscribe, suppression_reason::hard_bounce,
          suppression_reason::complaint, suppression_reason::manual, suppression_reason::legal}) {
        auto parsed = mailers::parse_suppression_reason(mailers::to_string(r));
        REQUIRE(parsed.has_value());
        CHECK(*parsed == r);
    }
    CHECK(mailers::to_string(suppression_reason::hard_bounce) == "hard_bounce");
    CHECK(*mailers::parse_suppression_reason("Hard_Bounce") == suppression_reason::hard_bounce);
    CHECK(*mailers::parse_suppression_reason("LEGAL") == suppression_reason::legal);
    for (std::string_view bad : {"", "bounce", "hard-bounce", "manual ", "unsubscribed"}) {
        auto r = mailers::parse_suppression_reason(bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == mailers::make_error_code(mailers::errc::invalid_argument));
    }
}

TEST_CASE("addresses are compared case-insensitively") {
    CHECK(key("John.Doe@Example.COM") == "john.doe@example.com");
    CHECK(key("JOHN.DOE@EXAMPLE.COM") == key("john.doe@example.com"));
    // Simple Unicode case folding of UTF-8 local parts (RFC 6531).
    CHECK(key("ÉLODIE@example.fr") == "élodie@example.fr");
    CHECK(key("ΣΟΦΙΑ@example.gr") == "σοφια@example.gr");
    CHECK(key("ДМИТРИЙ@example.ru") == "дмитрий@example.ru");
    CHECK(key("\u212Aelvin@example.com") == "kelvin@example.com");  // KELVIN SIGN
    CHECK(key("\u1E9E@example.de") == "\u00DF@example.de");         // capital sharp s
    // Full folding (ß to ss) is not applied: it changes which mailbox it is.
    CHECK(key("stra\u00DFe@example.de") != key("STRASSE@example.de"));
    // The two pairs whose folding would grow (two to three bytes) fold the
    // other way: keys never outgrow the address's length limits.
    CHECK(key("\u023A@example.com") == "\u023A@example.com");
    CHECK(key("\u2C65@example.com") == "\u023A@example.com");
    CHECK(key("\u2C66@example.com") == key("\u023E@example.com"));
    std::string full;  // 63 octets: one 'a' and 31 two-byte U+023A
    full += 'a';
    for (int i = 0; i < 31; ++i) full += "\u023A";
    CHECK(key(full + "@example.com") == full + "@example.com");
    CHECK(key(key(full + "@example.com")) == full + "@example.com");
}

TEST_CASE("domains become lower-case A-labels") {
    CHECK(key("user@Bücher.example") == "user@xn--bcher-kva.example");
    CHECK(key("user@BÜCHER.example") == key("user@xn--bcher-kva.example"));
    CHECK(key("user@XN--BCHER-KVA.EXAMPLE") == "user@xn--bcher-kva.example");
    CHECK(key("user@münchen.de") == "user@xn--mnchen-3ya.de");
    CHECK(domain_key("Bücher.example") == "xn--bcher-kva.example");
    CHECK(domain_key("xn--bcher-kva.example") == domain_key("BÜCHER.EXAMPLE"));
}

TEST_CASE("white space and display names are removed") {
    CHECK(key("  a@example.com \t") == "a@example.com");
    CHECK(key("\r\na@example.com\r\n") == "a@example.com");
    CHECK(key("Jane Doe <Jane@Example.com>") == "jane@example.com");
    CHECK(key("\"Doe, Jane\" <jane@example.com>") == "jane@example.com");
    CHECK(key(" <jane@example.com> ") == "jane@example.com");
    CHECK(key("Zoë Ünal <zoe@example.com>") == "zoe@example.com");
}

TEST_CASE("quoted local parts have one spelling") {
    // A quoted dot-atom is the same mailbox unquoted (RFC 5321 4.1.2).
    CHECK(key("\"John.Doe\"@example.com") == "john.doe@example.com");
    CHECK(key("\"a\\b\"@example.com") == "ab@example.com");
    // Anything else stays quoted, with the fewest escapes.
    CHECK(key("\"John Doe\"@example.com") == "\"john doe\"@example.com");
    CHECK(key("\"a\\\"b\"@example.com") == "\"a\\\"b\"@example.com");
    CHECK(key("\"a\\ b\"@example.com") == "\"a b\"@example.com");
    CHECK(key("\"a,b\"@example.com") == "\"a,b\"@example.com");
    CHECK(key("\"a@b\"@example.com") == "\"a@b\"@example.com");
}

TEST_CASE("address literals keep their tag and lower-case their digits") {
    CHECK(key("a@[192.0.2.1]") == "a@[192.0.2.1]");
    CHECK(key("A@[IPV6:2001:DB8::1]") == "a@[IPv6:2001:db8::1]");
    CHECK(key("a@[ipv6:2001:db8::1]") == key("a@[IPv6:2001:DB8::1]"));
}

TEST_CASE("plus-tag folding is optional") {
    CHECK(key("User+Promo@Example.com") == "user+promo@example.com");
    CHECK(key("User+Promo@Example.com", plus) == "user@example.com");
    CHECK(key("user+a+b@example.com", plus) == "user@example.com");
    CHECK(key("user+@example.com", plus) == "user@example.com");
    // No name before the tag, or a name ending in '.': nothing to fold to.
    CHECK(key("+alerts@example.com", plus) == "+alerts@example.com");
    CHECK(key("a.+b@example.com", plus) == "a.+b@example.com");
    // Quoted local parts are never folded.
    CHECK(key("\"a b+c\"@example.com", plus) == "\"a b+c\"@example.com");
    CHECK(key("\"a+c\"@example.com", plus) == "a@example.com");
}

TEST_CASE("gmail dot folding is optional and only for Google's domains") {
    CHECK(key("J.O.H.N@Gmail.com") == "j.o.h.n@gmail.com");
    CHECK(key("J.O.H.N@Gmail.com", dots) == "john@gmail.com");
    CHECK(key("j.ohn@GoogleMail.com", dots) == "john@gmail.com");
    CHECK(key("j.ohn@googlemail.com") == "j.ohn@googlemail.com");
    CHECK(key("j.ohn@example.com", dots) == "j.ohn@example.com");
    CHECK(key("j.ohn@mail.gmail.com", dots) == "j.ohn@mail.gmail.com");
    CHECK(key("j.ohn+news@gmail.com", dots) == "john+news@gmail.com");
    CHECK(key("J.Ohn+News@GoogleMail.com", both) == "john@gmail.com");
    // Dots fold before tags, so no second pass finds more to fold (fuzz_csv).
    CHECK(key("l`e.+a!@gmail.com", both) == "l`e@gmail.com");
    CHECK(key("a.+b@gmail.com", both) == "a@gmail.com");
    CHECK(key("a.+b@example.com", both) == "a.+b@example.com");
    CHECK(key("j.ohn+news@example.com", both) == "j.ohn@example.com");
}

TEST_CASE("invalid addresses are refused with errc::invalid_address") {
    const std::vector<std::string> bad = {
        "",
        "   ",
        "no-at-sign",
        "a@",
        "@example.com",
        "a@@example.com",
        "a b@example.com",
        "a..b@example.com",
        ".a@example.com",
        "a@example..com",
        "a@-example.com",
        "a@example.com\r\nBcc: x@example.org",
        std::string("a\0b@example.com", 15),
        "a@example.com, b@example.com",
        "Jane <jane@example.com",
        "\xff@example.com",
        "\"\"@example.com",
        std::string(65, 'a') + "@example.com",
        "a@" + std::string(64, 'b') + ".com",
        "a@exa_mple.com",
        "a@[300.0.0.1]",
    };
    for (const auto& s : bad) {
        CAPTURE(s);
        auto r = normalise_address(s);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == mailers::make_error_code(mailers::errc::invalid_address));
    }
}

TEST_CASE("an address whose A-label form is over 254 octets is refused") {
    // 239 octets as written, 257 once the domain is in A-labels: no server
    // takes it (RFC 5321 4.5.3.1.3), an export of it would not import again,
    // and the engine refuses to send to it for the same reason.
    const std::string label = std::string(54, 'j') + "\xc3\xbc";  // ...jü
    const std::string domain = label + "." + label + "." + label + ".com";
    auto too_long = normalise_address(std::string(64, 'a') + "@" + domain);
    REQUIRE_FALSE(too_long.has_value());
    CHECK(too_long.error() == mailers::make_error_code(mailers::errc::invalid_address));
    auto fits = normalise_address(std::string(50, 'a') + "@" + domain);
    REQUIRE(fits.has_value());
    CHECK(fits->size() == 243);
    CHECK(normalise_address(*fits).value() == *fits);
}

TEST_CASE("domain entries are lower-case A-labels without a trailing dot") {
    CHECK(domain_key("Example.COM") == "example.com");
    CHECK(domain_key("example.com.") == "example.com");
    CHECK(domain_key("  mail.example.com\t") == "mail.example.com");
    CHECK(domain_key("COM") == "com");  // a top-level domain entry is allowed
    for (std::string_view bad :
         {"", " ", ".", "..", "a..b", ".example.com", "example.com..", "*.example.com",
          "@example.com", "a@example.com", "[192.0.2.1]", "exa mple.com", "-example.com",
          "example-.com", "1.2.3.4", "example.com\n.evil"}) {
        CAPTURE(bad);
        auto r = normalise_domain(bad);
        REQUIRE_FALSE(r.has_value());
        CHECK(r.error() == mailers::make_error_code(mailers::errc::invalid_address));
    }
    CHECK_FALSE(normalise_domain(std::string(64, 'a') + ".com").has_value());
    CHECK(normalise_domain(std::string(63, 'a') + ".com").has_value());
}

TEST_CASE("normalisation is idempotent") {
    const std::vector<std::string> inputs = {
        "John.Doe@Example.COM",   "Jane <J.Ane+X@GoogleMail.com>", "\"John Doe\"@example.com",
        "\"a\\\"b\"@example.com", "\"John.Doe\"@example.com",      "user@Bücher.example",
        "ÉLODIE+x@example.fr",    "A@[IPV6:2001:DB8::1]",          "a.+b@example.com",
        "+alerts@example.com",    "\"a b+c\"@gmail.com",           "x.y.z@mail.gmail.com",
        "l`e.+a!@gmail.com",      "a.+b@googlemail.com",
    };
    for (const auto* opts : {&none, &plus, &dots, &both}) {
        for (const auto& in : inputs) {
            CAPTURE(in);
            const std::string once = key(in, *opts);
            CHECK(key(once, *opts) == once);
        }
    }
    for (const auto& d : {"Example.COM.", "Bücher.example", "xn--bcher-kva.EXAMPLE"}) {
        const std::string once = domain_key(d);
        CHECK(domain_key(once) == once);
    }
}
