#include <doctest/doctest.h>
#include <simdjson.h>

#include <bit>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <string_view>

#include "json/writer.hpp"

using mailers::json::append_escaped;
using mailers::json::writer;

namespace {

std::string escaped(std::string_view s) {
    std::string out;
    append_escaped(out, s);
    return out;
}

// Parses a JSON document holding one string and returns that string.
std::string parse_string(const std::string& json) {
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE_MESSAGE(parser.parse(json).get(doc) == simdjson::SUCCESS, json);
    std::string_view s;
    REQUIRE(doc.get_string().get(s) == simdjson::SUCCESS);
    return std::string{s};
}

}  // namespace

TEST_CASE("every control character is escaped and reads back") {
    for (int c = 0; c < 0x20; ++c) {
        const std::string in(1, static_cast<char>(c));
        std::string expected;
        switch (c) {
            case '\b':
                expected = "\"\\b\"";
                break;
            case '\f':
                expected = "\"\\f\"";
                break;
            case '\n':
                expected = "\"\\n\"";
                break;
            case '\r':
                expected = "\"\\r\"";
                break;
            case '\t':
                expected = "\"\\t\"";
                break;
            default: {
                static constexpr char hex[] = "0123456789abcdef";
                expected = std::string{"\"\\u00"} + hex[c >> 4] + hex[c & 0xf] + "\"";
            }
        }
        CAPTURE(c);
        CHECK(escaped(in) == expected);
        CHECK(parse_string(escaped(in)) == in);
    }
}

TEST_CASE("quotes, backslash and printable ASCII") {
    CHECK(escaped("") == "\"\"");
    CHECK(escaped("\"") == "\"\\\"\"");
    CHECK(escaped("\\") == "\"\\\\\"");
    CHECK(escaped("a\"b\\c") == "\"a\\\"b\\\\c\"");
    CHECK(escaped("/") == "\"/\"");
    CHECK(escaped("\x7f") == "\"\x7f\"");

    std::string printable;
    for (int c = 0x20; c < 0x7f; ++c) printable.push_back(static_cast<char>(c));
    CHECK(parse_string(escaped(printable)) == printable);

    const std::string with_nul("a\0b", 3);
    CHECK(escaped(with_nul) == "\"a\\u0000b\"");
    CHECK(parse_string(escaped(with_nul)) == with_nul);
}

TEST_CASE("U+2028 and U+2029 are escaped, other UTF-8 passes through") {
    CHECK(escaped("a\u2028b") == "\"a\\u2028b\"");
    CHECK(escaped("\u2029") == "\"\\u2029\"");
    CHECK(parse_string(escaped("x\u2028y\u2029z")) == "x\u2028y\u2029z");
    // Neighbours of the two separators are not escaped.
    CHECK(escaped("\u2027\u202a") == "\"\u2027\u202a\"");

    for (std::string_view s :
         {"caf\xc3\xa9", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\xf0\x9f\x98\x80",
          "\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x92\xbb", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf",
          "\xed\x9f\xbf", "\xee\x80\x80", "\xc2\x80"}) {
        CAPTURE(s);
        CHECK(escaped(s) == "\"" + std::string{s} + "\"");
        CHECK(parse_string(escaped(s)) == s);
    }
}

TEST_CASE("invalid UTF-8 becomes one U+FFFD per maximal ill-formed subsequence") {
    struct row {
        std::string_view in;
        std::string_view out;
    };
    const row rows[] = {
        {"\x80", "\\ufffd"},                                   // stray continuation
        {"\xbf", "\\ufffd"},                                   //
        {"\xc0\xaf", "\\ufffd\\ufffd"},                        // overlong '/'
        {"\xc1\xbf", "\\ufffd\\ufffd"},                        // overlong
        {"\xe0\x80\xaf", "\\ufffd\\ufffd\\ufffd"},             // overlong 3-byte
        {"\xf0\x80\x80\xaf", "\\ufffd\\ufffd\\ufffd\\ufffd"},  // overlong 4-byte
        {"\xed\xa0\x80", "\\ufffd\\ufffd\\ufffd"},             // high surrogate
        {"\xed\xbf\xbf", "\\ufffd\\ufffd\\ufffd"},             // low surrogate
        {"\xf4\x90\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"},  // above U+10FFFF
        {"\xf5\x80\x80\x80", "\\ufffd\\ufffd\\ufffd\\ufffd"},  // lead byte never valid
        {"\xff", "\\ufffd"},
        {"\xfe", "\\ufffd"},
        {"\xc3", "\\ufffd"},          // truncated at the end
        {"\xe2\x82", "\\ufffd"},      // truncated 3-byte: one replacement
        {"\xf0\x9f\x98", "\\ufffd"},  // truncated emoji: one replacement
        {"\xe2\x82"
         "A",
         "\\ufffdA"},  // truncated before ASCII
        {"\xf0\x9f\x98"
         "\"",
         "\\ufffd\\\""},  // truncated before a quote
        {"a\xc3(b", "a\\ufffd(b"},
        {"\xc3\xa9\x80\xc3\xa9", "\xc3\xa9\\ufffd\xc3\xa9"},
        {"\xe2\x80\xa8\xe2\x80", "\\u2028\\ufffd"},
    };
    for (const auto& r : rows) {
        CAPTURE(r.in);
        const auto got = escaped(r.in);
        CHECK(got == "\"" + std::string{r.out} + "\"");
        const auto back = parse_string(got);
        CHECK(simdjson::validate_utf8(back.data(), back.size()));
    }
}

TEST_CASE("random byte strings always give valid JSON; valid UTF-8 reads back unchanged") {
    std::mt19937_64 rng{20240601};
    simdjson::dom::parser parser;
    int valid_inputs = 0;
    for (int n = 0; n < 20000; ++n) {
        std::string in(rng() % 24, '\0');
        // Bias toward bytes that build multi-byte sequences.
        for (auto& ch : in) {
            const auto r = rng();
            ch = static_cast<char>((r & 3) == 0 ? 0x80 | ((r >> 8) & 0x3f) : (r >> 8) & 0xff);
        }
        const auto json = escaped(in);
        simdjson::dom::element doc;
        REQUIRE_MESSAGE(parser.parse(json).get(doc) == simdjson::SUCCESS, json);
        std::string_view back;
        REQUIRE(doc.get_string().get(back) == simdjson::SUCCESS);
        if (simdjson::validate_utf8(in.data(), in.size())) {
            ++valid_inputs;
            CHECK(back == in);
        }
    }
    CHECK(valid_inputs > 100);
}

TEST_CASE("a byte that needs escaping is found at every position of a long plain run") {
    // Plain text is skipped sixteen bytes at a time (SSE2), then eight; each special byte must
    // still be caught wherever it falls in (or across) those words.
    const std::string_view specials[] = {std::string_view("\0", 1),
                                         "\x1f",
                                         "\n",
                                         "\"",
                                         "\\",
                                         "\x7f",
                                         "\xc3\xa9",
                                         "\xe2\x80\xa8",
                                         "\xff"};
    for (const auto special : specials) {
        for (std::size_t len = 0; len <= 40; ++len) {
            for (std::size_t pos = 0; pos <= len; ++pos) {
                std::string in(len, 'a');
                in.insert(pos, special);
                // The reference: the same bytes escaped one at a time.
                std::string expected = "\"";
                for (std::size_t i = 0; i < in.size();) {
                    std::size_t n = 1;
                    while (i + n < in.size() &&
                           (static_cast<unsigned char>(in[i + n]) & 0xc0) == 0x80)
                        ++n;
                    expected += escaped(in.substr(i, n)).substr(1);
                    expected.pop_back();
                    i += n;
                }
                expected += '"';
                CAPTURE(len);
                CAPTURE(pos);
                REQUIRE(escaped(in) == expected);
            }
        }
    }
}

TEST_CASE("commas and nesting") {
    std::string out;
    writer w{out};
    w.begin_object()
        .member("a", 1)
        .key("b")
        .begin_array()
        .value(1)
        .begin_object()
        .end_object()
        .begin_array()
        .end_array()
        .value("x")
        .null()
        .begin_array()
        .value(true)
        .value(false)
        .end_array()
        .end_array()
        .key("c")
        .begin_object()
        .member("d", std::string{"e"})
        .member("f", std::string_view{"g"})
        .end_object()
        .member("h", "i")
        .end_object();
    CHECK(out == R"({"a":1,"b":[1,{},[],"x",null,[true,false]],"c":{"d":"e","f":"g"},"h":"i"})");

    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(out).get(doc) == simdjson::SUCCESS);
    CHECK(int64_t(doc["a"]) == 1);
    CHECK(std::string_view(doc["b"].at(3)) == "x");
    CHECK(doc["b"].at(4).is_null());
    CHECK(bool(doc["b"].at(5).at(0)) == true);
    CHECK(std::string_view(doc["c"]["f"]) == "g");
    CHECK(std::string_view(doc["h"]) == "i");
}

TEST_CASE("top-level values, empty containers and appending to existing text") {
    std::string out = "prefix:";
    writer{out}.begin_array().end_array();
    CHECK(out == "prefix:[]");

    out.clear();
    writer{out}.value("only");
    CHECK(out == "\"only\"");

    out.clear();
    writer{out}.begin_object().key("k\n\"").value(1).end_object();
    CHECK(out == R"({"k\n\"":1})");
}

TEST_CASE("overloads: optional, other integer types, null pointer, raw") {
    std::string out;
    writer w{out};
    const char* none = nullptr;
    w.begin_object()
        .member("u", 42u)
        .member("ll", -7LL)
        .member("ull", 7ULL)
        .member("sh", static_cast<short>(-3))
        .member("sz", std::size_t{9})
        .member("opt", std::optional<int>{5})
        .member("nopt", std::optional<std::string>{})
        .member("np", none)
        .member("d", 0.5)
        .member("b", true)
        .key("raw")
        .raw(R"({"pre":[1,2]})")
        .key("after")
        .begin_array()
        .raw("1")
        .raw("2")
        .end_array()
        .end_object();
    CHECK(
        out ==
        R"({"u":42,"ll":-7,"ull":7,"sh":-3,"sz":9,"opt":5,"nopt":null,"np":null,"d":0.5,"b":true,)"
        R"("raw":{"pre":[1,2]},"after":[1,2]})");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    CHECK(parser.parse(out).get(doc) == simdjson::SUCCESS);
}

TEST_CASE("integers at the limits") {
    std::string out;
    writer w{out};
    w.begin_array()
        .value(std::numeric_limits<std::int64_t>::min())
        .value(std::numeric_limits<std::int64_t>::max())
        .value(std::numeric_limits<std::uint64_t>::max())
        .value(0)
        .value(-1)
        .value(std::numeric_limits<int>::min())
        .end_array();
    CHECK(out ==
          "[-9223372036854775808,9223372036854775807,18446744073709551615,0,-1,-2147483648]");

    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    REQUIRE(parser.parse(out).get(doc) == simdjson::SUCCESS);
    CHECK(int64_t(doc.at(0)) == std::numeric_limits<std::int64_t>::min());
    CHECK(int64_t(doc.at(1)) == std::numeric_limits<std::int64_t>::max());
    CHECK(uint64_t(doc.at(2)) == std::numeric_limits<std::uint64_t>::max());
    CHECK(int64_t(doc.at(5)) == std::numeric_limits<int>::min());
}

TEST_CASE("doubles use the shortest round-trip form") {
    const auto text = [](double d) {
        std::string out;
        writer{out}.value(d);
        return out;
    };
    CHECK(text(0.1) == "0.1");
    CHECK(text(1.5) == "1.5");
    CHECK(text(-2.25) == "-2.25");
    CHECK(text(100.0) == "100");
    CHECK(text(1e300) == "1e+300");
    CHECK(text(9007199254740992.0) == "9007199254740992");
    // Integral values too large for a 64-bit integer literal use exponent form.
    CHECK(text(-4334270042473571549184.0) == "-4.3342700424735715e+21");
    CHECK(text(123456789012345678.0) == "1.2345678901234568e+17");
    CHECK(text(5e-324) == "5e-324");
    CHECK(text(std::numeric_limits<double>::quiet_NaN()) == "null");
    CHECK(text(std::numeric_limits<double>::infinity()) == "null");
    CHECK(text(-std::numeric_limits<double>::infinity()) == "null");

    const double specials[] = {
        0.0,    0.1,           1.0 / 3.0, DBL_MAX, -DBL_MAX,          DBL_MIN,
        5e-324, 123456789.125, 1e21,      1e-7,    9007199254740993.0};
    std::mt19937_64 rng{7};
    simdjson::dom::parser parser;
    for (int n = 0; n < 20000; ++n) {
        double d;
        if (n < static_cast<int>(std::size(specials))) {
            d = specials[n];
        } else {
            do {
                d = std::bit_cast<double>(rng());
            } while (!std::isfinite(d));
        }
        const auto json = text(d);
        simdjson::dom::element doc;
        REQUIRE_MESSAGE(parser.parse(json).get(doc) == simdjson::SUCCESS, json);
        double back = 0;
        REQUIRE_MESSAGE(doc.get_double().get(back) == simdjson::SUCCESS, json);
        CAPTURE(json);
        CHECK(back == d);
    }
}

TEST_CASE("base64 values: padded RFC 4648 strings, separated like any value") {
    std::string out;
    writer w{out};
    w.begin_object()
        .key("a")
        .base64_value("")
        .key("b")
        .begin_array()
        .base64_value("f")
        .base64_value("fo")
        .base64_value("foobar")
        .base64_value(std::string_view("\xfb\xff\0", 3))
        .end_array()
        .end_object();
    CHECK(out == R"({"a":"","b":["Zg==","Zm8=","Zm9vYmFy","+/8A"]})");
}
