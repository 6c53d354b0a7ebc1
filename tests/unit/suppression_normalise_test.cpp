#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <uninorm.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <ios>
#include <mailers/suppression.hpp>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "engine_fixture.hpp"

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

// Spellings of one character of a local part that name the same mailbox:
// canonically equivalent sequences and their other letter case.
const std::vector<std::vector<std::string>> local_chars = {
    {"a", "A"},
    {"z", "Z"},
    {"0"},
    {"-"},
    {"_"},
    {"k", "K", "\u212A"},
    {"\u00E9", "e\u0301", "\u00C9", "E\u0301"},
    {"\u00E5", "a\u030A", "\u00C5", "A\u030A", "\u212B"},
    {"\u1EC7", "e\u0323\u0302", "e\u0302\u0323", "\u1EB9\u0302", "\u1EC6", "E\u0302\u0323"},
    {"\u1E96", "h\u0331", "H\u0331"},
    {"\u03B1\u03B9", "\u1FB3", "\u03B1\u0345", "\u1FBC", "\u0391\u0399"},
    {"\uAC00", "\u1100\u1161"},
    {"\u00F1", "n\u0303", "\u00D1", "N\u0303"},
    {"\u00DF", "\u1E9E"},
    {"\u043F", "\u041F"},
};

// Spellings of one domain: letter case, U-labels in NFC and NFD, full-width
// forms and ideographic full stops (UTS #46), and the A-label.
const std::vector<std::vector<std::string>> domains = {
    {"example.com", "EXAMPLE.COM", "Example.Com", "example\u3002com",
     "\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45\uFF0E\uFF43\uFF4F\uFF4D"},
    {"xn--bcher-kva.example", "XN--BCHER-KVA.EXAMPLE", "b\u00FCcher.example",
     "bu\u0308cher.example", "B\u00DCCHER.example", "\uFF42\uFF55\u0308cher.example"},
    {"xn--mnchen-3ya.de", "m\u00FCnchen.de", "mu\u0308nchen.de", "MU\u0308NCHEN.DE"},
};

// Draws from a fixed-seed mt19937_64, whose output the standard fixes
// (unlike the standard distributions'), so a failure replays anywhere.
struct draw {
    std::mt19937_64 rng{20261207};
    std::size_t below(std::size_t n) { return static_cast<std::size_t>(rng() % n); }
    bool coin() { return (rng() & 1) != 0; }
    template <class T>
    const T& pick(const std::vector<T>& v) {
        return v[below(v.size())];
    }
};

std::string hex_group(draw& d, unsigned value) {
    static constexpr char lower[] = "0123456789abcdef";
    static constexpr char upper[] = "0123456789ABCDEF";
    const char* digits = d.coin() ? lower : upper;
    std::string out;
    for (int shift = 12; shift >= 0; shift -= 4)
        if (const unsigned n = (value >> shift) & 0xfu; n != 0 || !out.empty() || shift == 0)
            out += digits[n];
    // Any number of leading zeros up to four digits.
    return std::string(d.below(5 - out.size()), '0') + out;
}

std::string ipv4_spelling(draw& d, const std::array<unsigned, 4>& b) {
    std::string out;
    for (int i = 0; i < 4; ++i) {
        if (i > 0) out += '.';
        const std::string n = std::to_string(b[i]);
        out += std::string(d.below(4 - n.size()), '0') + n;
    }
    return out;
}

std::string tag(draw& d) {
    return d.coin() ? "IPv6:" : (d.coin() ? "ipv6:" : "IPV6:");
}

// A spelling of the IPv6 address `g`: a random run of two or more zero
// groups compressed or none, and the last 32 bits as a dotted quad when
// the compression leaves them alone.
std::string ipv6_spelling(draw& d, const std::array<unsigned, 8>& g) {
    std::vector<std::pair<int, int>> runs;  // [first, last) of zero groups
    for (int i = 0; i < 8; ++i)
        for (int j = i + 2; j <= 8 && g[i] == 0 && g[j - 2] == 0 && g[j - 1] == 0; ++j)
            runs.emplace_back(i, j);
    std::pair<int, int> run{-1, -1};
    if (!runs.empty() && d.coin()) run = d.pick(runs);
    const bool dotted = run.second <= 6 && d.coin();
    const int hex_end = dotted ? 6 : 8;
    std::string out = tag(d);
    for (int i = 0; i < hex_end; ++i) {
        if (i == run.first) {
            out += "::";
            i = run.second - 1;
            continue;
        }
        if (i > 0 && i != run.second) out += ':';
        out += hex_group(d, g[i]);
    }
    if (dotted) {
        if (run.second != 6) out += ':';
        out += ipv4_spelling(d, {g[6] >> 8, g[6] & 0xffu, g[7] >> 8, g[7] & 0xffu});
    }
    return out;
}

// Several spellings of one random address literal and, when an independent
// formatter can say, its canonical form ("" otherwise).
std::vector<std::string> literal_spellings(draw& d, std::string& canonical) {
    std::vector<std::string> out;
    std::array<unsigned, 8> g{};
    if (d.coin()) {  // IPv4, also as an IPv4-mapped IPv6 address
        const std::array<unsigned, 4> b = {unsigned(d.below(256)), unsigned(d.below(256)),
                                           unsigned(d.below(256)), unsigned(d.below(256))};
        canonical = "[" + std::to_string(b[0]) + "." + std::to_string(b[1]) + "." +
                    std::to_string(b[2]) + "." + std::to_string(b[3]) + "]";
        g[5] = 0xffff;
        g[6] = b[0] << 8 | b[1];
        g[7] = b[2] << 8 | b[3];
        for (int i = 0; i < 3; ++i) {
            out.push_back("[" + ipv4_spelling(d, b) + "]");
            out.push_back("[" + ipv6_spelling(d, g) + "]");
        }
        return out;
    }
    // Groups are zero half the time, so runs of every length turn up.
    do {
        for (auto& x : g) x = d.coin() ? 0 : unsigned(d.below(0x10000));
    } while (g[0] == 0 && g[1] == 0 && g[2] == 0 && g[3] == 0 && g[4] == 0 &&
             (g[5] == 0 || g[5] == 0xffff));
    // glibc's inet_ntop writes the RFC 5952 form for every address but those
    // with a zero 96-bit prefix or the IPv4-mapped one, both excluded above.
    std::array<unsigned char, 16> bytes{};
    for (int i = 0; i < 8; ++i) {
        bytes[2 * i] = static_cast<unsigned char>(g[i] >> 8);
        bytes[2 * i + 1] = static_cast<unsigned char>(g[i] & 0xff);
    }
    char text[INET6_ADDRSTRLEN];
    REQUIRE(inet_ntop(AF_INET6, bytes.data(), text, sizeof text) != nullptr);
    canonical = std::string("[IPv6:") + text + "]";
    for (int i = 0; i < 6; ++i) out.push_back("[" + ipv6_spelling(d, g) + "]");
    return out;
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

TEST_CASE("every spelling of an address literal is one key") {
    // IPv4: RFC 5321's Snum is decimal, leading zeros and all.
    for (std::string_view s :
         {"u@[192.0.2.1]", "u@[192.000.002.001]", "u@[192.0.02.1]", "u@[IPv6:::ffff:192.0.2.1]",
          "u@[IPv6:::FFFF:C000:0201]", "u@[ipv6:0:0:0:0:0:ffff:192.000.2.1]",
          "u@[IPv6:0000:0000:0000:0000:0000:FFFF:c000:201]"}) {
        CAPTURE(s);
        CHECK(key(s) == "u@[192.0.2.1]");
    }
    CHECK(key("u@[010.001.000.100]") == "u@[10.1.0.100]");
    CHECK(key("u@[IPv6:::ffff:0:0]") == "u@[0.0.0.0]");
    // IPv6 in the RFC 5952 form.
    for (std::string_view s :
         {"u@[IPv6:2001:db8::1]", "u@[IPv6:2001:DB8::1]",
          "u@[ipv6:2001:0db8:0000:0000:0000:0000:0000:0001]", "u@[IPv6:2001:db8:0:0::1]",
          "u@[IPv6:2001:db8::0:0:1]", "u@[IPv6:2001:db8::0.0.0.1]"}) {
        CAPTURE(s);
        CHECK(key(s) == "u@[IPv6:2001:db8::1]");
    }
    // The longest run of zero groups is compressed, the first of equal runs,
    // and never a single group.
    CHECK(key("u@[IPv6:2001:db8:0:0:1:0:0:0]") == "u@[IPv6:2001:db8:0:0:1::]");
    CHECK(key("u@[IPv6:2001:db8:0:0:1:0:0:1]") == "u@[IPv6:2001:db8::1:0:0:1]");
    CHECK(key("u@[IPv6:2001:0:1:2:3:4:5:6]") == "u@[IPv6:2001:0:1:2:3:4:5:6]");
    CHECK(key("u@[IPv6:0:0:0:0:0:0:0:0]") == "u@[IPv6:::]");
    CHECK(key("u@[IPv6:0:0:0:0:0:0:0:1]") == "u@[IPv6:::1]");
    // Only the IPv4-mapped prefix names an IPv4 host; the deprecated
    // IPv4-compatible form and NAT64 addresses stay IPv6.
    CHECK(key("u@[IPv6:::192.0.2.1]") == "u@[IPv6:::c000:201]");
    CHECK(key("u@[IPv6:64:ff9b::192.0.2.1]") == "u@[IPv6:64:ff9b::c000:201]");
    CHECK(key("u@[IPv6:::fffe:192.0.2.1]") != key("u@[192.0.2.1]"));
    CHECK(key("u@[192.0.2.1]") != key("u@[192.0.2.10]"));
}

TEST_CASE("local parts are compared in NFC") {
    // U+00E9 and "e" + U+0301, in either case.
    CHECK(key("\u00E9lodie@example.fr") == "\u00E9lodie@example.fr");
    CHECK(key("e\u0301lodie@example.fr") == "\u00E9lodie@example.fr");
    CHECK(key("E\u0301LODIE@example.fr") == "\u00E9lodie@example.fr");
    CHECK(key("\u00C9lodie@example.fr") == "\u00E9lodie@example.fr");
    // Angstrom sign, A with ring above, and A + combining ring are one.
    CHECK(key("\u212Bngstr\u00F6m@example.se") == "\u00E5ngstr\u00F6m@example.se");
    CHECK(key("A\u030Angstro\u0308m@example.se") == "\u00E5ngstr\u00F6m@example.se");
    // Combining marks in either canonical order: dot below, then circumflex.
    CHECK(key("vie\u0323\u0302t@example.vn") == "vi\u1EC7t@example.vn");
    CHECK(key("vie\u0302\u0323t@example.vn") == "vi\u1EC7t@example.vn");
    CHECK(key("VI\u1EC6T@example.vn") == "vi\u1EC7t@example.vn");
    // Hangul syllables and their conjoining jamo.
    CHECK(key("\u1100\u1161@example.kr") == "\uAC00@example.kr");
    // Folding happens in NFD and NFC composes after it: a lower-case letter
    // with a precomposed form its upper case lacks, and U+0345, which folds
    // to iota whether written apart or inside U+1FB3.
    CHECK(key("H\u0331@example.com") == "\u1E96@example.com");
    CHECK(key("\u1E96@example.com") == "\u1E96@example.com");
    CHECK(key("\u1FB3@example.gr") == key("\u03B1\u0345@example.gr"));
    CHECK(key("\u1FBC@example.gr") == key("\u03B1\u0345@example.gr"));
    // The quoted and unquoted spellings still meet.
    CHECK(key("\"e\u0301lodie\"@example.fr") == "\u00E9lodie@example.fr");
    CHECK(key("\"E\u0301 l\"@example.fr") == "\"\u00E9 l\"@example.fr");
    // U+037E is ';' in NFC, which only a quoted local part may hold.
    CHECK(key("a\u037Eb@example.com") == "\"a;b\"@example.com");
    CHECK(key("\"a;b\"@example.com") == "\"a;b\"@example.com");
}

TEST_CASE("local parts that never compose match their decomposed spelling") {
    // Every code point of the scripts normalisation skips NFD and NFC for
    // (src/suppression/normalise.cpp), against its NFD spelling, which takes
    // the full path.
    const auto utf8 = [](char32_t c) {
        std::string out;
        if (c < 0x800) {
            out += static_cast<char>(0xc0 | (c >> 6));
        } else {
            out += static_cast<char>(0xe0 | (c >> 12));
            out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        }
        out += static_cast<char>(0x80 | (c & 0x3f));
        return out;
    };
    const auto nfd = [](const std::string& s) {
        std::size_t n = 0;
        std::uint8_t* p = u8_normalize(UNINORM_NFD, reinterpret_cast<const std::uint8_t*>(s.data()),
                                       s.size(), nullptr, &n);
        REQUIRE(p != nullptr);
        std::string out(reinterpret_cast<const char*>(p), n);
        std::free(p);
        return out;
    };
    const std::pair<char32_t, char32_t> ranges[] = {
        {0x80, 0x2ff}, {0x400, 0x52f}, {0x4e00, 0x9fff}, {0xac00, 0xd7a3}};
    for (const auto& [first, last] : ranges) {
        for (char32_t c = first; c <= last; ++c) {
            const std::string s = "x" + utf8(c);
            if (key(s + "@example.com") != key(nfd(s) + "@example.com"))
                FAIL_CHECK("U+" << std::hex << static_cast<unsigned>(c) << " differs from its NFD");
        }
    }
    // U+0130 is the one that does not: it is "i" + U+0307 once folded.
    CHECK(key("\u0130@example.tr") == "i\u0307@example.tr");
    CHECK(key("I\u0307@example.tr") == "i\u0307@example.tr");
}

TEST_CASE("a local part NFC makes longer than 64 octets is refused") {
    // U+0958 is excluded from composition: NFC writes it as U+0915 U+093C,
    // six octets for three.
    std::string qa;
    for (int i = 0; i < 10; ++i) qa += "\u0958";
    const std::string ten = key(qa + "@example.in");
    CHECK(ten.size() == 60 + std::string_view("@example.in").size());
    CHECK(key(ten) == ten);
    std::string more = qa;
    for (int i = 0; i < 11; ++i) more += "\u0958";  // 63 octets as written, 126 in NFC
    auto r = normalise_address(more + "@example.in");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == mailers::make_error_code(mailers::errc::invalid_address));
}

TEST_CASE("decomposed and full-width domains match their A-label") {
    const std::string a_label = "u@xn--bcher-kva.example";
    for (std::string_view s :
         {"u@b\u00FCcher.example", "u@bu\u0308cher.example", "u@BU\u0308CHER.EXAMPLE",
          "u@XN--BCHER-KVA.example", "u@\uFF42\uFF55\u0308\uFF43\uFF48\uFF45\uFF52\uFF0Eexample",
          "u@\uFF22\uFF35\u0308cher\u3002example"}) {
        CAPTURE(s);
        CHECK(key(s) == a_label);
    }
    CHECK(key("u@\uFF45\uFF58\uFF41\uFF4D\uFF50\uFF4C\uFF45\uFF0E\uFF43\uFF4F\uFF4D") ==
          "u@example.com");
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

TEST_CASE("randomised: respellings of one address normalise to one key") {
    draw d;
    for (int round = 0; round < 2000; ++round) {
        // A local part of 1 to 6 characters, each spelt several ways, with
        // dots between some of them.
        const std::size_t n = 1 + d.below(6);
        std::vector<const std::vector<std::string>*> chars;
        std::vector<bool> dot_after;
        for (std::size_t i = 0; i < n; ++i) {
            chars.push_back(&d.pick(local_chars));
            dot_after.push_back(i + 1 < n && d.below(4) == 0);
        }
        std::string canonical_domain;
        std::vector<std::string> domain_forms;
        if (d.below(3) == 0) {
            domain_forms = literal_spellings(d, canonical_domain);
        } else {
            domain_forms = d.pick(domains);
            canonical_domain = domain_forms.front();
        }
        std::string first_key;
        for (int k = 0; k < 6; ++k) {
            std::string local;
            for (std::size_t i = 0; i < n; ++i) {
                local += d.pick(*chars[i]);
                if (dot_after[i]) local += '.';
            }
            // A dot-atom means the same quoted.
            if (d.below(4) == 0) local = "\"" + local + "\"";
            const std::string addr = local + "@" + d.pick(domain_forms);
            CAPTURE(addr);
            const std::string k1 = key(addr);
            CHECK(key(k1) == k1);
            if (k == 0) {
                first_key = k1;
                CHECK(k1.substr(k1.rfind('@') + 1) == canonical_domain);
            } else {
                CHECK(k1 == first_key);
            }
        }
    }
}

TEST_CASE("a suppressed address is suppressed in every spelling") {
    using mailers::errc;
    using mailers::suppression_kind;
    using mailers::suppression_reason;
    mailers_test::fixture f;
    f.eng->upsert_mailbox(f.admin, f.mailbox("rep1", "rep1@brand.com"));
    const std::vector<std::vector<std::string>> groups = {
        {"\u00E9lodie@b\u00FCcher.example", "E\u0301LODIE@xn--bcher-kva.example",
         "e\u0301lodie@BU\u0308CHER.EXAMPLE", "\"\u00C9lodie\"@\uFF42\uFF55\u0308cher.example"},
        {"ops@[192.0.2.1]", "ops@[192.000.002.001]", "OPS@[IPv6:::ffff:192.0.2.1]",
         "ops@[ipv6:0:0:0:0:0:FFFF:C000:0201]"},
        {"noc@[IPv6:2001:db8::1]", "noc@[IPv6:2001:0DB8:0000:0000:0000:0000:0000:0001]",
         "NOC@[ipv6:2001:db8:0:0::0.0.0.1]"},
    };
    for (const auto& g : groups) {
        f.eng->suppress(f.admin, suppression_kind::address, g.front(),
                        suppression_reason::unsubscribe);
        for (const auto& spelling : g) {
            CAPTURE(spelling);
            CHECK(f.eng->is_suppressed(spelling));
            CHECK(f.eng->find_suppression(spelling).has_value());
            CHECK(f.send(mailers_test::fixture::direct("rep1", spelling)).first ==
                  errc::suppressed);
        }
    }
    // Neighbours stay deliverable.
    for (std::string_view other : {"elodie@b\u00FCcher.example", "ops@[192.0.2.10]",
                                   "noc@[IPv6:2001:db8::1:0]", "ops@[IPv6:::192.0.2.1]"}) {
        CAPTURE(other);
        CHECK_FALSE(f.eng->is_suppressed(other));
    }
    CHECK(f.eng->suppression_count() == groups.size());
    CHECK(f.capture->count() == 0);
}

namespace {

// An engine on the fixture's store with these folding rules (none: the
// workspace's stored ones).
std::unique_ptr<mailers::engine> engine_with(mailers_test::fixture& f,
                                             std::optional<mailers::suppression_options> o) {
    mailers::engine_params p;
    p.storage = f.store;
    p.clock = f.clock;
    p.suppression = o;
    return std::make_unique<mailers::engine>(f.ioc.get_executor(), std::move(p));
}

std::vector<std::string> stored_keys(mailers::store& st) {
    std::vector<std::string> keys;
    for (const auto& e : st.load("default", {}).suppressions) keys.push_back(e.value);
    std::sort(keys.begin(), keys.end());
    return keys;
}

std::size_t settings_changes(mailers::engine& e) {
    std::size_t n = 0;
    for (const auto& r : e.audit_log())
        n += r.action == "suppression.settings";
    return n;
}

}  // namespace

TEST_CASE("folding rules belong to the workspace: stored, re-keyed when turned on, kept on") {
    using mailers::errc;
    using mailers::suppression_kind;
    using mailers::suppression_reason;
    mailers_test::db_file db("settings");
    mailers_test::fixture f(db.path.string());
    f.eng->suppress(f.admin, suppression_kind::address, "ann+news@example.com",
                    suppression_reason::unsubscribe);
    f.eng->suppress(f.admin, suppression_kind::address, "bob@example.com",
                    suppression_reason::unsubscribe);
    CHECK_FALSE(f.eng->is_suppressed("ann@example.com"));
    f.eng.reset();

    // Turned on: the stored entries are re-keyed in one audited step.
    auto on = engine_with(f, mailers::suppression_options{true, false});
    CHECK(on->is_suppressed("ann@example.com"));
    CHECK(on->is_suppressed("ann+other@example.com"));
    CHECK(stored_keys(*f.store) == std::vector<std::string>{"ann@example.com", "bob@example.com"});
    CHECK(settings_changes(*on) == 2);  // the first start stored the defaults
    CHECK(on->verify_audit() == mailers::error_code{});
    on.reset();

    // Unset: the workspace's rules, whatever the engine's defaults.
    auto plain = engine_with(f, std::nullopt);
    CHECK(plain->is_suppressed("ann+again@example.com"));
    plain->suppress(f.admin, suppression_kind::address, "cy+x@example.com",
                    suppression_reason::manual);
    CHECK(plain->is_suppressed("cy@example.com"));
    CHECK(settings_changes(*plain) == 2);
    plain.reset();

    // Turned off: refused, nothing changed.
    try {
        engine_with(f, mailers::suppression_options{false, false});
        FAIL("turned a fold off");
    } catch (const mailers::exception& e) {
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("fold") != std::string::npos);
    }
    auto again = engine_with(f, std::nullopt);
    CHECK(again->is_suppressed("ann+news@example.com"));
    CHECK(settings_changes(*again) == 2);
}

TEST_CASE("keys an older normaliser made are re-keyed at start; a change waits to be alone") {
    using mailers::suppression_kind;
    mailers_test::db_file db("legacy");
    mailers_test::fixture f(db.path.string());
    f.eng.reset();
    // As an older version stored them: literal and NFD spellings, no settings.
    f.store->commit("default",
                    std::vector<mailers::store_op>{
                        mailers::store_ops::delete_object{"settings", "suppression"},
                        mailers::store_ops::put_suppression{
                            {suppression_kind::address, "ops@[192.000.002.001]",
                             mailers::suppression_reason::legal, "old", {}}},
                        mailers::store_ops::put_suppression{
                            {suppression_kind::address, "e\u0301lodie@example.com",
                             mailers::suppression_reason::legal, "old", {}}}});
    auto e = engine_with(f, std::nullopt);
    CHECK(e->is_suppressed("ops@[192.0.2.1]"));
    CHECK(e->is_suppressed("\u00E9lodie@example.com"));
    CHECK(stored_keys(*f.store) ==
          std::vector<std::string>{"ops@[192.0.2.1]", "\u00E9lodie@example.com"});

    // Another engine is attached: a change of rules is refused.
    try {
        engine_with(f, mailers::suppression_options{false, true});
        FAIL("changed the rules under a running engine");
    } catch (const mailers::exception& ex) {
        CHECK(ex.code() == mailers::errc::invalid_argument);
        CHECK(std::string(ex.what()).find("stop the other engines") != std::string::npos);
    }
    CHECK(e->is_suppressed("ops@[192.0.2.1]"));
}
