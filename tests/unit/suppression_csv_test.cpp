#include <doctest/doctest.h>

#include <chrono>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "suppression/csv.hpp"

using mailers::suppression_entry;
using mailers::suppression_kind;
using mailers::suppression_reason;
using mailers::time_point;
using namespace mailers::detail;

namespace {

struct parsed {
    mailers::error_code ec;
    csv_parse_report report;
    std::vector<suppression_entry> entries;
};

parsed parse(std::string_view text, const mailers::suppression_options& opts = {}) {
    parsed p;
    p.ec = parse_suppression_csv(
        text, opts, [&](suppression_entry&& e) { p.entries.push_back(std::move(e)); }, p.report);
    return p;
}

parsed parse_stream(const std::string& text) {
    parsed p;
    std::istringstream in(text);
    p.ec = parse_suppression_csv(
        in, {}, [&](suppression_entry&& e) { p.entries.push_back(std::move(e)); }, p.report);
    return p;
}

parsed parse_ok(std::string_view text, const mailers::suppression_options& opts = {}) {
    auto p = parse(text, opts);
    INFO(p.report.diag.message);
    REQUIRE_FALSE(p.ec);
    return p;
}

// Expects a failure at `line` whose message mentions `what`.
void expect_error(std::string_view text, std::size_t line, std::string_view what) {
    CAPTURE(text);
    const auto p = parse(text);
    REQUIRE(p.ec == mailers::make_error_code(mailers::errc::invalid_csv));
    CHECK(p.report.error_line == line);
    const std::string& msg = p.report.diag.message;
    CAPTURE(msg);
    CHECK(msg.starts_with("line " + std::to_string(line) + ": "));
    CHECK(msg.find(what) != std::string::npos);
}

time_point utc(int y, unsigned m, unsigned d, int hh, int mm, int ss, long long us = 0) {
    namespace chr = std::chrono;
    const auto t = chr::sys_days{chr::year{y} / chr::month{m} / chr::day{d}} + chr::hours{hh} +
                   chr::minutes{mm} + chr::seconds{ss} + chr::microseconds{us};
    return time_point{chr::duration_cast<mailers::duration>(t.time_since_epoch())};
}

}  // namespace

TEST_CASE("a bare list of addresses and domains imports with defaults") {
    const auto p = parse_ok("Jane@Example.com\nexample.org\n");
    REQUIRE(p.entries.size() == 2);
    CHECK(p.entries[0].kind == suppression_kind::address);
    CHECK(p.entries[0].value == "jane@example.com");
    CHECK(p.entries[0].reason == suppression_reason::manual);
    CHECK(p.entries[0].source.empty());
    CHECK(p.entries[0].created_at == time_point{});
    CHECK(p.entries[1].kind == suppression_kind::domain);
    CHECK(p.entries[1].value == "example.org");
    CHECK(p.report.records == 2);
    CHECK(p.report.lines == 2);
}

TEST_CASE("all columns, positional") {
    const auto p = parse_ok(
        "a@example.com,address,unsubscribe,ses-webhook,2026-11-27T23:20:25Z\n"
        "Example.NET,domain,Legal,counsel,1700000000\n"
        "b@example.com,,HARD_BOUNCE,,\n");
    REQUIRE(p.entries.size() == 3);
    CHECK(p.entries[0] == suppression_entry{suppression_kind::address, "a@example.com",
                                            suppression_reason::unsubscribe, "ses-webhook",
                                            utc(2026, 11, 27, 23, 20, 25)});
    CHECK(p.entries[1] == suppression_entry{suppression_kind::domain, "example.net",
                                            suppression_reason::legal, "counsel",
                                            time_point{std::chrono::seconds{1700000000}}});
    CHECK(p.entries[2].reason == suppression_reason::hard_bounce);
    CHECK(p.entries[2].kind == suppression_kind::address);
}

TEST_CASE("a header names the columns, in any order") {
    auto p = parse_ok("value,kind,reason,source,created_at\na@example.com,address,complaint,x,\n");
    REQUIRE(p.entries.size() == 1);
    CHECK(p.entries[0].reason == suppression_reason::complaint);

    p = parse_ok("Reason, VALUE ,source\r\nlegal,a@example.com,court order\r\n");
    REQUIRE(p.entries.size() == 1);
    CHECK(p.entries[0].value == "a@example.com");
    CHECK(p.entries[0].reason == suppression_reason::legal);
    CHECK(p.entries[0].source == "court order");

    p = parse_ok("value\n");
    CHECK(p.entries.empty());

    expect_error("value,kind,email\na@example.com\n", 1, "unknown column \"email\"");
    expect_error("value,kind,kind\n", 1, "named twice");
    expect_error("value,kind\na@example.com,address,manual\n", 2, "3 fields, but only 2 columns");
    expect_error("kind,reason\naddress,manual\n", 1, "names no \"value\" column");
}

TEST_CASE("RFC 4180 quoting, line endings, blank lines and a byte-order mark") {
    const auto p = parse_ok(
        "\xEF\xBB\xBF"
        "value,source\r\n"
        "\r\n"
        "\"\"\"Doe, Jane\"\" <Jane@Example.com>\",\"import, \"\"batch\"\" 7\"\r\n"
        "   \n"
        "\"b@example.com\",\"\"\r"
        "c@example.com,plain\n"
        "d@example.com,\"no newline at the end\"");
    REQUIRE(p.entries.size() == 4);
    CHECK(p.entries[0].value == "jane@example.com");
    CHECK(p.entries[0].source == "import, \"batch\" 7");
    CHECK(p.entries[1].value == "b@example.com");
    CHECK(p.entries[1].source.empty());
    CHECK(p.entries[2].source == "plain");
    CHECK(p.entries[3].source == "no newline at the end");
    CHECK(p.report.lines == 6);

    // Quoted local parts with commas and quotes survive as CSV fields.
    const auto q = parse_ok("\"\"\"a,b\"\"@example.com\"\n");
    REQUIRE(q.entries.size() == 1);
    CHECK(q.entries[0].value == "\"a,b\"@example.com");
}

TEST_CASE("kinds are explicit or inferred") {
    auto p = parse_ok("example.com,DOMAIN\na@example.com,Address\nexample.org\n");
    REQUIRE(p.entries.size() == 3);
    CHECK(p.entries[0].kind == suppression_kind::domain);
    CHECK(p.entries[1].kind == suppression_kind::address);
    CHECK(p.entries[2].kind == suppression_kind::domain);
    expect_error("example.com,address\n", 1, "not a valid address");
    expect_error("a@example.com,domain\n", 1, "not a valid domain");
    expect_error("a@example.com,mailbox\n", 1, "kind must be");
}

TEST_CASE("folding options apply to imported addresses") {
    const mailers::suppression_options opts{.fold_plus_tags = true, .fold_gmail_dots = true};
    const auto p = parse_ok("J.Doe+news@googlemail.com\n", opts);
    REQUIRE(p.entries.size() == 1);
    CHECK(p.entries[0].value == "jdoe@gmail.com");
}

TEST_CASE("created_at accepts ISO 8601 and unix seconds") {
    CHECK(*parse_suppression_time("") == time_point{});
    CHECK(*parse_suppression_time("2026-11-27T23:20:25Z") == utc(2026, 11, 27, 23, 20, 25));
    CHECK(*parse_suppression_time("2026-11-27t23:20:25z") == utc(2026, 11, 27, 23, 20, 25));
    CHECK(*parse_suppression_time("2026-11-27 23:20:25Z") == utc(2026, 11, 27, 23, 20, 25));
    CHECK(*parse_suppression_time("2026-11-27T23:20:25.5Z") ==
          utc(2026, 11, 27, 23, 20, 25, 500000));
    CHECK(*parse_suppression_time("2026-11-27T23:20:25.123456789Z") ==
          utc(2026, 11, 27, 23, 20, 25, 123456));
    CHECK(*parse_suppression_time("2026-11-28T01:20:25+02:00") == utc(2026, 11, 27, 23, 20, 25));
    CHECK(*parse_suppression_time("2026-11-27T18:50:25-04:30") == utc(2026, 11, 27, 23, 20, 25));
    CHECK(*parse_suppression_time("2024-02-29T00:00:00Z") == utc(2024, 2, 29, 0, 0, 0));
    CHECK(*parse_suppression_time("1764285625") == utc(2025, 11, 27, 23, 20, 25));
    CHECK(*parse_suppression_time("1764285625.25") == utc(2025, 11, 27, 23, 20, 25, 250000));
    CHECK(*parse_suppression_time("-1.5") == time_point{mailers::duration{-1500000}});
    for (std::string_view bad :
         {"2026-11-27", "2026-11-27T23:20:25", "2026-13-01T00:00:00Z", "2025-02-29T00:00:00Z",
          "2026-11-27T24:00:00Z", "2026-11-27T23:60:00Z", "2026-11-27T23:59:60Z",
          "2026-11-27T23:20:25.Z", "2026-11-27T23:20:25+2:00", "2026-11-27T23:20:25 Z",
          "2026-1-27T23:20:25Z", "yesterday", "17e8", "1.2.3", "99999999999999999999", "0x10", " 5",
          "+"}) {
        CAPTURE(bad);
        CHECK_FALSE(parse_suppression_time(bad).has_value());
    }
    expect_error("a@example.com,,,,tomorrow\n", 1, "created_at");
}

TEST_CASE("times format back to what parses") {
    CHECK(format_suppression_time(time_point{}).empty());
    CHECK(format_suppression_time(utc(2026, 11, 27, 23, 20, 25)) == "2026-11-27T23:20:25Z");
    CHECK(format_suppression_time(utc(2026, 11, 27, 23, 20, 25, 7)) ==
          "2026-11-27T23:20:25.000007Z");
    CHECK(format_suppression_time(utc(1969, 12, 31, 23, 59, 59)) == "1969-12-31T23:59:59Z");
    const time_point extremes[] = {
        time_point::min(),
        time_point::max(),
        utc(-1, 1, 1, 0, 0, 0),
        utc(10000, 1, 1, 0, 0, 0, 1),
        utc(0, 1, 1, 0, 0, 0),
        utc(9999, 12, 31, 23, 59, 59, 999999),
        time_point{mailers::duration{-1}},
        // Past chrono::year's range (found by fuzz_csv).
        time_point{std::chrono::seconds{2177777777877}},
        time_point{std::chrono::seconds{-2177777777877}},
    };
    for (auto t : extremes) {
        const std::string s = format_suppression_time(t);
        CAPTURE(s);
        const auto back = parse_suppression_time(s);
        REQUIRE(back.has_value());
        CHECK(*back == t);
    }
}

TEST_CASE("malformed records name their line") {
    expect_error("a@example.com\nb@example.com,address,spam\n", 2, "unknown reason");
    expect_error("a@example.com\n\n\nnot an address@\n", 4, "not a valid address");
    // A quoted field spanning lines moves the count on.
    expect_error("a@example.com,,,\"multi\nline\"\nb@example.com,,bogus\n", 1,
                 "control character in source");
    expect_error("\"a@example.com\",,,\"x\"\n\"b@example.com\nc\"\nbad,kind,x\n", 2,
                 "not a valid address");
    expect_error("a@example.com\n\"b@example.com\n", 2, "quoted field not closed");
    expect_error("a@example.com\nb\"c@example.com\n", 2, "quote inside unquoted field 1");
    expect_error("\"a@example.com\"x,address\n", 1, "text after the closing quote of field 1");
    expect_error("a@example.com,address,manual,src,,extra\n", 1, "more than 5 fields");
    expect_error("a@example.com\n,address\n", 2, "empty value");
    expect_error("\"\"\n", 1, "empty value");
    expect_error("a@example.com,,,\"tab\tok\x01\"\n", 1, "control character in source");
    expect_error(std::string("a@exam\0ple.com\n", 15), 1, "not a valid address");
    expect_error("a@example.com\n\"" + std::string(max_csv_record_bytes + 10, 'x') + "\"\n", 2,
                 "record longer than");
}

TEST_CASE("a line count covers every line-ending style") {
    const auto p = parse("a@example.com\r\nb@example.com\rc@example.com\n\r\nbad@\n");
    REQUIRE(p.ec);
    CHECK(p.report.error_line == 5);
    CHECK(p.report.records == 3);  // the caller discards these: all or nothing is its job
}

TEST_CASE("streams and in-memory text parse alike across block boundaries") {
    // A periodic body of awkward records (escaped quotes, CRLF, a lone CR,
    // blank lines): shifting it by every offset of one period puts the end
    // of the first read block inside each construct in turn.
    const std::string period =
        "\"\"\"q,uo\"\"@example.com\",address,\"complaint\",\"a \"\"b\"\" c\",1700000000\r\n"
        "plain@example.com,,,,\r"
        "\r\n"
        "sub.example.org,domain,legal,,2026-11-27T23:20:25.25Z\n";
    std::string body;
    while (body.size() < (std::size_t{1} << 20) + max_csv_record_bytes + 4 * period.size())
        body += period;
    const std::size_t records_per_period = 3;
    const std::size_t periods = body.size() / period.size();
    for (std::size_t shift = 0; shift <= period.size(); ++shift) {
        CAPTURE(shift);
        const std::string text = "pad@example.com,,,\"" + std::string(shift, 'p') + "\"\n" + body;
        const auto a = parse_stream(text);
        REQUIRE_FALSE(a.ec);
        REQUIRE(a.entries.size() == 1 + periods * records_per_period);
        if (shift % 16 == 0) {
            const auto b = parse(text);
            REQUIRE_FALSE(b.ec);
            CHECK(a.entries == b.entries);
            CHECK(a.report.lines == b.report.lines);
        } else {
            // Comparing with the first period is enough: every later one is
            // the same three records.
            for (std::size_t i = 1; i < a.entries.size(); ++i)
                REQUIRE(a.entries[i] == a.entries[1 + (i - 1) % records_per_period]);
        }
    }

    // An error past the first block still names its line.
    const auto bad = parse_stream(body + "x@\n");
    CHECK(bad.report.error_line == periods * 4 + 1);
}

TEST_CASE("export re-imports to the same entries") {
    std::mt19937_64 rng(99);
    const char* sources[] = {"", "api", "ses-webhook", "csv, batch \"7\"", "  spaced  ", "ünïcode"};
    const char* locals[] = {"a",  "john.doe", "+alerts",    "-ops",   "=cmd",
                            "@x", "\"a,b\"",  "\"q\\\"t\"", "élodie", "x+y"};
    std::vector<suppression_entry> entries;
    for (int i = 0; i < 2000; ++i) {
        suppression_entry e;
        const bool domain = i % 7 == 0;
        e.kind = domain ? suppression_kind::domain : suppression_kind::address;
        const std::string d = "d" + std::to_string(rng() % 50) + ".example";
        std::string raw = domain ? d : std::string(locals[rng() % std::size(locals)]) + "@" + d;
        auto key = domain ? mailers::normalise_domain(raw) : mailers::normalise_address(raw);
        if (!key) continue;  // "@x@..." is not an address
        e.value = *key;
        e.reason = static_cast<suppression_reason>(rng() % 5);
        e.source = sources[rng() % std::size(sources)];
        e.created_at = rng() % 3 == 0 ? time_point{}
                                      : time_point{mailers::duration{static_cast<std::int64_t>(
                                            rng() % 4000000000000000ULL)}};
        entries.push_back(std::move(e));
    }
    std::ostringstream out;
    write_suppression_csv_header(out);
    for (const auto& e : entries) write_suppression_csv(out, e);
    const std::string csv = out.str();
    CHECK(csv.starts_with("value,kind,reason,source,created_at\r\n"));

    const auto back = parse_stream(csv);
    INFO(back.report.diag.message);
    REQUIRE_FALSE(back.ec);
    CHECK(back.entries == entries);

    // Values are written as they are, even when a spreadsheet would read a
    // formula into them (see csv.hpp).
    std::string line;
    append_suppression_csv(
        line,
        suppression_entry{
            suppression_kind::address, "=1+2@example.com", suppression_reason::manual, "", {}});
    CHECK(line == "=1+2@example.com,address,manual,,\r\n");
}

TEST_CASE("sink exceptions propagate") {
    csv_parse_report report;
    CHECK_THROWS_AS(parse_suppression_csv(
                        "a@example.com\n", {},
                        [](suppression_entry&&) { throw std::runtime_error("x"); }, report),
                    std::runtime_error);
}
