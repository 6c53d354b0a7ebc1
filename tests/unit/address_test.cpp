#include <doctest/doctest.h>

#include <mailers/address.hpp>
#include <mailers/message.hpp>
#include <string>
#include <string_view>

using mailers::address;
using mailers::domain_to_ascii;
using mailers::envelope;
using mailers::errc;
using mailers::is_valid_addr_spec;
using mailers::make_error_code;
using mailers::parse_address;

namespace {

struct spec_case {
    std::string text;
    const char* why;
};

std::string repeat(char c, std::size_t n) {
    return std::string(n, c);
}

// A domain of exactly `n` octets made of 63-octet labels.
std::string domain_of_length(std::size_t n) {
    std::string d;
    while (d.size() < n) {
        if (!d.empty()) d += '.';
        d += repeat('a', std::min<std::size_t>(63, n - d.size()));
    }
    if (d.back() == '.') d.back() = 'b';
    return d;
}

}  // namespace

TEST_CASE("valid addr-specs") {
    const spec_case cases[] = {
        {"user@example.com", "plain"},
        {"first.last@example.com", "dot-atom"},
        {"user+tag@example.co.uk", "sub-address, multi-label domain"},
        {"!#$%&'*+-/=?^_`{|}~@example.com", "every atext special"},
        {"1234@example.com", "numeric local part"},
        {"user@sub-domain.example.com", "hyphen inside a label"},
        {"user@123.example", "numeric label that is not the last"},
        {"user@localhost", "single-label domain (RFC 5321 allows it)"},
        {"\"john doe\"@example.com", "quoted local part with a space"},
        {"\"a\\\"b\"@example.com", "quoted-pair inside a quoted local part"},
        {"\"a@b\"@example.com", "'@' inside a quoted local part"},
        {"\"(comment-like)\"@example.com", "specials are fine when quoted"},
        {"josé@example.com", "RFC 6531 UTF-8 local part"},
        {"用户@例子.广告", "UTF-8 local part and IDN domain"},
        {"user@bücher.de", "U-label domain"},
        {"user@xn--bcher-kva.de", "A-label domain"},
        {"user@XN--BCHER-KVA.DE", "A-label in upper case"},
        {"user@[192.168.0.1]", "IPv4 literal"},
        {"user@[IPv6:2001:db8::1]", "IPv6 literal"},
        {"user@[ipv6:::ffff:1.2.3.4]", "IPv6 literal with embedded IPv4, tag case-insensitive"},
        {repeat('a', 64) + "@example.com", "local part of exactly 64 octets"},
        {"a@" + repeat('b', 63) + ".com", "label of exactly 63 octets"},
        {repeat('a', 64) + "@" + domain_of_length(189), "addr-spec of exactly 254 octets"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CAPTURE(c.why);
        CHECK(is_valid_addr_spec(c.text));
        auto r = parse_address(c.text);
        REQUIRE(r.has_value());
        CHECK(r->display_name.empty());
        CHECK(r->addr_spec() == c.text);
    }
}

TEST_CASE("invalid addr-specs") {
    using namespace std::string_literals;
    const spec_case cases[] = {
        {"", "empty"},
        {"plainaddress", "no '@'"},
        {"@example.com", "empty local part"},
        {"user@", "empty domain"},
        {".user@example.com", "local part starts with a dot"},
        {"user.@example.com", "local part ends with a dot"},
        {"us..er@example.com", "doubled dot"},
        {"user@@example.com", "two '@'"},
        {"a@b@example.com", "unquoted '@' in the local part"},
        {"us er@example.com", "unquoted space"},
        {"us\"er@example.com", "stray quote"},
        {"(comment)user@example.com", "comments are refused"},
        {"user(comment)@example.com", "comments are refused"},
        {"\"unterminated@example.com", "unterminated quoted local part"},
        {"\"\"@example.com", "empty quoted local part"},
        {"\"a\\\"@example.com", "quoted-pair escapes the closing quote"},
        {"user@exam ple.com", "space in the domain"},
        {"user@-example.com", "label starts with a hyphen"},
        {"user@example-.com", "label ends with a hyphen"},
        {"user@example..com", "empty label"},
        {"user@.example.com", "domain starts with a dot"},
        {"user@example.com.", "trailing dot"},
        {"user@exa_mple.com", "underscore is not LDH"},
        {"user@1.2.3.4", "all-numeric TLD: an IP address needs brackets"},
        {"user@xn--zz.com", "A-label with invalid Punycode"},
        {"user@☃.com", "symbol disallowed by IDNA 2008"},
        {repeat('a', 65) + "@example.com", "local part of 65 octets"},
        {"a@" + repeat('b', 64) + ".com", "label of 64 octets"},
        {repeat('a', 64) + "@" + domain_of_length(190), "addr-spec of 255 octets"},
        {"a@" + domain_of_length(256), "domain of 256 octets"},
        {"user@[300.1.1.1]", "IPv4 octet out of range"},
        {"user@[1.2.3]", "IPv4 literal with three parts"},
        {"user@[1.2.3.4.5]", "IPv4 literal with five parts"},
        {"user@[1234.1.1.1]", "IPv4 part of four digits"},
        {"user@[IPv6:zz::1]", "IPv6 literal that is not an address"},
        {"user@[IPv6:fe80::1%eth0]", "zone ids are not part of the syntax"},
        {"user@[tag:content]", "general address literals are refused"},
        {"user@[]", "empty literal"},
        {"user@[1.2.3.4", "unterminated literal"},
        {"user\r\n@example.com", "CRLF"},
        {"user@example.com\r\nBcc: victim@example.com", "header injection"},
        {"user@example.com\n", "bare LF"},
        {"user@example.com\r", "bare CR"},
        {"user\0@example.com"s, "NUL"},
        {"\xff@example.com", "invalid UTF-8"},
        {"\xc0\xaf@example.com", "overlong UTF-8"},
        {"\xed\xa0\x80@example.com", "UTF-16 surrogate in UTF-8"},
        {"\xf4\x90\x80\x80@example.com", "code point above U+10FFFF"},
        {"user@exam\xffple.com", "invalid UTF-8 in the domain"},
        {"us\ter@example.com", "tab"},
        {"John <john@example.com>", "display name is not an addr-spec"},
        {" user@example.com", "surrounding whitespace is not an addr-spec"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CAPTURE(c.why);
        CHECK_FALSE(is_valid_addr_spec(c.text));
        // Every bare addr-spec refused above is refused by the parser too,
        // except the last two, which are valid mailbox syntax.
        const std::string_view t = c.text;
        if (t.find('<') == std::string_view::npos && (t.empty() || t.front() != ' ')) {
            auto r = parse_address(c.text);
            CHECK(r.has_error());
            if (r.has_error()) CHECK(r.error() == make_error_code(errc::invalid_address));
        }
    }
}

TEST_CASE("display-name forms") {
    struct display_case {
        const char* text;
        const char* display;
        const char* local;
        const char* domain;
    };
    const display_case cases[] = {
        {"John Doe <john@example.com>", "John Doe", "john", "example.com"},
        {"\"Doe, John\" <john@example.com>", "Doe, John", "john", "example.com"},
        {"<john@example.com>", "", "john", "example.com"},
        {"  John   Doe   <john@example.com>  ", "John Doe", "john", "example.com"},
        {"John Q. Public <jqp@example.com>", "John Q. Public", "jqp", "example.com"},
        {"\"Quote \\\"Me\\\"\" <q@example.com>", "Quote \"Me\"", "q", "example.com"},
        {"\"  spaced  \" <s@example.com>", "  spaced  ", "s", "example.com"},
        {"Jöhn Dœ <j@example.com>", "Jöhn Dœ", "j", "example.com"},
        {"李小龙 <bruce@例子.中国>", "李小龙", "bruce", "例子.中国"},
        {"John<john@example.com>", "John", "john", "example.com"},
        {"\"a>b\" <x@example.com>", "a>b", "x", "example.com"},
        {"\"a<b\" <x@example.com>", "a<b", "x", "example.com"},
        {"John \"the Man\" Doe <j@example.com>", "John the Man Doe", "j", "example.com"},
        {"< john@example.com >", "", "john", "example.com"},
        {"Name <\"odd>local\"@example.com>", "Name", "\"odd>local\"", "example.com"},
        {"Lab <ops@[IPv6:2001:db8::1]>", "Lab", "ops", "[IPv6:2001:db8::1]"},
        {"\"J\\ö\" <j@example.com>", "Jö", "j", "example.com"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        auto r = parse_address(c.text);
        REQUIRE(r.has_value());
        CHECK(r->display_name == c.display);
        CHECK(r->local == c.local);
        CHECK(r->domain == c.domain);
    }
}

TEST_CASE("invalid display-name forms") {
    const spec_case cases[] = {
        {"Doe, John <john@example.com>", "unquoted comma: two addresses or none"},
        {"John <john@example.com", "missing '>'"},
        {"John john@example.com>", "missing '<'"},
        {"John <john@example.com> extra", "text after the angle-addr"},
        {"A <a@example.com>, B <b@example.com>", "an address list, not one address"},
        {"\"unterminated <a@example.com>", "unterminated quoted display name"},
        {"John (comment) <a@example.com>", "comments are refused"},
        {"John\r\n <a@example.com>", "folded header line"},
        {"\"John\nDoe\" <a@example.com>", "LF inside a quoted display name"},
        {"John\x01 <a@example.com>", "control character"},
        {"J\xffohn <a@example.com>", "invalid UTF-8 in the display name"},
        {"\"J\\\xbd\" <a@example.com>", "quoted-pair of a lone UTF-8 continuation byte"},
        {"<>", "empty angle-addr (null path is not an address)"},
        {"John <>", "empty angle-addr"},
        {"John <bad address@example.com>", "invalid addr-spec inside angle brackets"},
        {"John <<a@example.com>>", "nested angle brackets"},
        {"John: <a@example.com>", "group syntax"},
        {"   ", "whitespace only"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.text);
        CAPTURE(c.why);
        auto r = parse_address(c.text);
        CHECK(r.has_error());
    }
}

TEST_CASE("parse round-trips through addr_spec") {
    const char* inputs[] = {
        "John Doe <john@example.com>", "\"Doe, John\" <\"john doe\"@example.com>",
        "用户 <用户@例子.广告>",       "x@[IPv6:2001:db8::1]",
        "\"a\\\"b\"@example.com",      "Ops <ops+alerts@sub.example.org>",
    };
    for (const char* in : inputs) {
        CAPTURE(in);
        auto first = parse_address(in);
        REQUIRE(first.has_value());
        const std::string spec = first->addr_spec();
        CHECK(is_valid_addr_spec(spec));
        auto second = parse_address(spec);
        REQUIRE(second.has_value());
        CHECK(second->local == first->local);
        CHECK(second->domain == first->domain);
        // And with the display name put back as a quoted-string.
        std::string quoted = "\"";
        for (char ch : first->display_name) {
            if (ch == '"' || ch == '\\') quoted += '\\';
            quoted += ch;
        }
        quoted += "\" <" + spec + ">";
        auto third = parse_address(quoted);
        REQUIRE(third.has_value());
        CHECK(*third == *first);
    }
}

TEST_CASE("address literals follow the RFC 5321 grammar") {
    // Every form of section 4.1.3: IPv4, IPv6-full, IPv6-comp, IPv6v4-full
    // and IPv6v4-comp, in any letter case.
    for (std::string_view ok : {
             "u@[0.0.0.0]",
             "u@[255.255.255.255]",
             "u@[192.000.002.001]",  // Snum is 1*3DIGIT: leading zeros are allowed
             "u@[IPv6:2001:0db8:0000:0000:0000:0000:0000:0001]",
             "u@[IPv6:2001:DB8:0:0:0:0:0:1]",
             "u@[IPv6:2001:db8::1]",
             "u@[IPv6:::]",
             "u@[IPv6:::1]",
             "u@[IPv6:1::]",
             "u@[IPv6:1:2:3::6:7:8]",
             "u@[IPv6:1:2:3:4:5:6:192.0.2.1]",
             "u@[IPv6:1:2:3:4::192.0.2.1]",
             "u@[IPv6:::ffff:192.000.002.001]",
             "u@[iPv6:::FFFF:C000:201]",
         }) {
        CAPTURE(ok);
        CHECK(is_valid_addr_spec(ok));
        CHECK(parse_address(ok).has_value());
    }
    for (std::string_view bad : {
             "u@[256.0.0.1]",
             "u@[1.2.3.0004]",
             "u@[1.2.3.]",
             "u@[.1.2.3.4]",
             "u@[1.2.3.-4]",
             "u@[+1.2.3.4]",
             "u@[1.2.3.4 ]",
             "u@[0x1.2.3.4]",
             "u@[IPv6:1:2:3:4:5:6:7]",            // seven groups
             "u@[IPv6:1:2:3:4:5:6:7:8:9]",        // nine groups
             "u@[IPv6:1::2:3:4:5:6:7]",           // "::" standing for one group
             "u@[IPv6:1:2:3:4:5:6:7::]",          // likewise
             "u@[IPv6:1:2:3:4:5::192.0.2.1]",     // "::" for one group before IPv4
             "u@[IPv6:1:2:3:4:5:6:7:192.0.2.1]",  // IPv4 after seven groups
             "u@[IPv6:1::2::3]",
             "u@[IPv6::::1]",
             "u@[IPv6::1:2:3:4:5:6:7]",
             "u@[IPv6:1:2:3:4:5:6:7:]",
             "u@[IPv6:12345::1]",
             "u@[IPv6:192.0.2.1::]",  // IPv4 only at the end
             "u@[IPv6:::192.0.2.1:1]",
             "u@[IPv6:::ffff:256.0.0.1]",
             "u@[IPv6:]",
             "u@[IPv6:g::1]",
         }) {
        CAPTURE(bad);
        CHECK_FALSE(is_valid_addr_spec(bad));
        CHECK_FALSE(parse_address(bad).has_value());
    }
}

TEST_CASE("domain_to_ascii") {
    CHECK(domain_to_ascii("Example.COM").value() == "example.com");
    CHECK(domain_to_ascii("bücher.de").value() == "xn--bcher-kva.de");
    CHECK(domain_to_ascii("BÜCHER.de").value() == "xn--bcher-kva.de");
    CHECK(domain_to_ascii("例子.广告").value() == "xn--fsqu00a.xn--4rr70v");
    // Non-transitional processing keeps the sharp s (IDNA 2008), where
    // transitional processing would have mapped it to "fass.de".
    CHECK(domain_to_ascii("faß.de").value() == "xn--fa-hia.de");
    CHECK(domain_to_ascii("XN--BCHER-KVA.de").value() == "xn--bcher-kva.de");
    CHECK(domain_to_ascii("[192.0.2.1]").value() == "[192.0.2.1]");
    CHECK(domain_to_ascii("[IPv6:2001:db8::1]").value() == "[IPv6:2001:db8::1]");
    // Decomposed and full-width spellings map to the same A-labels (UTS #46).
    CHECK(domain_to_ascii("bu\u0308cher.de").value() == "xn--bcher-kva.de");
    CHECK(domain_to_ascii("BU\u0308CHER.de").value() == "xn--bcher-kva.de");
    CHECK(domain_to_ascii("\uFF42\uFF55\u0308\uFF43\uFF48\uFF45\uFF52\uFF0E\uFF44\uFF45").value() ==
          "xn--bcher-kva.de");
    CHECK(domain_to_ascii("\uFF25\uFF38\uFF21\uFF2D\uFF30\uFF2C\uFF25\u3002com").value() ==
          "example.com");

    for (std::string_view bad : {"", "☃.com", "a..b", "exa\nmple.com", "-a.com", "a.com.",
                                 "xn--zz.com", "1.2.3.4", "[1.2.3]", "exa mple.com"}) {
        CAPTURE(bad);
        auto r = domain_to_ascii(bad);
        REQUIRE(r.has_error());
        CHECK(r.error() == make_error_code(errc::invalid_address));
    }
}

TEST_CASE("envelope::from_message") {
    mailers::message m;
    m.from = parse_address("Sender <sender@example.com>").value();
    m.to = {parse_address("a@example.com").value(), parse_address("B <b@bücher.de>").value()};
    m.cc = {parse_address("c@example.com").value(), parse_address("a@EXAMPLE.com").value()};
    m.bcc = {parse_address("hidden@example.net").value(), parse_address("用户@例子.广告").value()};

    const envelope e = envelope::from_message(m);
    CHECK(e.mail_from == "sender@example.com");
    // Domains go out as A-labels unless the local part needs SMTPUTF8 anyway;
    // a recipient listed twice is sent to once.
    const std::vector<std::string> expected = {"a@example.com", "b@xn--bcher-kva.de",
                                               "c@example.com", "hidden@example.net",
                                               "用户@例子.广告"};
    CHECK(e.rcpt_to == expected);

    mailers::message null_sender;
    null_sender.to = {parse_address("x@example.com").value()};
    const envelope n = envelope::from_message(null_sender);
    CHECK(n.mail_from.empty());
    CHECK(n.rcpt_to == std::vector<std::string>{"x@example.com"});
}
