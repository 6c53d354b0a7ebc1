#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <mailers/mime.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mime/base64.hpp"
#include "mime/body.hpp"
#include "mime/header_writer.hpp"

using mailers::address;
using mailers::attachment;
using mailers::errc;
using mailers::header_field;
using mailers::make_error_code;
using mailers::message;
using mailers::render_message;
using mailers::render_options;

namespace {

// --- a small, independent reader for what the writer produces --------------

bool iequal(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

struct wire_stats {
    std::size_t longest_line = 0;
    std::size_t longest_header_line = 0;
    bool crlf_only = true;
};

// Checks the transport-level invariants: CRLF line endings only, no line over
// 998 octets; also reports the longest header line.
wire_stats check_wire(std::string_view s) {
    wire_stats st;
    bool in_headers = true;
    std::size_t start = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') {
            if (i + 1 >= s.size() || s[i + 1] != '\n') st.crlf_only = false;
        } else if (s[i] == '\n') {
            if (i == 0 || s[i - 1] != '\r') st.crlf_only = false;
            const std::size_t len = i - start - (i > start && s[i - 1] == '\r' ? 1 : 0);
            st.longest_line = std::max(st.longest_line, len);
            if (in_headers) {
                if (len == 0) in_headers = false;
                st.longest_header_line = std::max(st.longest_header_line, len);
            }
            start = i + 1;
        }
    }
    st.longest_line = std::max(st.longest_line, s.size() - start);
    return st;
}

struct entity {
    std::vector<std::pair<std::string, std::string>> headers;  // unfolded, leading WSP trimmed
    std::vector<std::string> raw_header_lines;
    std::string body;
    std::vector<entity> children;

    const std::string* find(std::string_view name) const {
        for (const auto& [n, v] : headers)
            if (iequal(n, name)) return &v;
        return nullptr;
    }
    std::string get(std::string_view name) const {
        const std::string* v = find(name);
        return v ? *v : std::string{};
    }
    std::size_t count(std::string_view name) const {
        return static_cast<std::size_t>(std::count_if(
            headers.begin(), headers.end(), [&](const auto& h) { return iequal(h.first, name); }));
    }
    std::string mime_type() const {
        std::string ct = get("Content-Type");
        ct = ct.substr(0, ct.find(';'));
        for (char& c : ct) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return ct.empty() ? "text/plain" : ct;
    }
    // "multipart/mixed(text/plain,application/pdf)"
    std::string shape() const {
        std::string s = mime_type();
        if (children.empty()) return s;
        s += '(';
        for (std::size_t i = 0; i < children.size(); ++i) {
            if (i) s += ',';
            s += children[i].shape();
        }
        return s + ')';
    }
};

std::string param(std::string_view header_value, std::string_view name) {
    const std::string key = std::string(name) + "=\"";
    const std::size_t p = header_value.find(key);
    if (p == std::string_view::npos) return {};
    const std::size_t start = p + key.size();
    return std::string(header_value.substr(start, header_value.find('"', start) - start));
}

entity parse_entity(std::string_view s) {
    entity e;
    const std::size_t end = s.find("\r\n\r\n");
    REQUIRE(end != std::string_view::npos);
    std::string_view head = s.substr(0, end + 2);
    e.body = std::string(s.substr(end + 4));
    while (!head.empty()) {
        const std::size_t eol = head.find("\r\n");
        const std::string_view line = head.substr(0, eol);
        e.raw_header_lines.emplace_back(line);
        if (line.front() == ' ' || line.front() == '\t') {
            REQUIRE(!e.headers.empty());
            e.headers.back().second += line;  // unfolding removes only the CRLF
        } else {
            const std::size_t colon = line.find(':');
            REQUIRE(colon != std::string_view::npos);
            std::string_view v = line.substr(colon + 1);
            while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
            e.headers.emplace_back(std::string(line.substr(0, colon)), std::string(v));
        }
        head.remove_prefix(eol + 2);
    }
    for (auto& h : e.headers) h.second.erase(0, h.second.find_first_not_of(" \t"));
    if (e.mime_type().rfind("multipart/", 0) == 0) {
        const std::string b = param(e.get("Content-Type"), "boundary");
        REQUIRE(!b.empty());
        const std::string delim = "--" + b;
        std::string_view body = e.body;
        REQUIRE(body.substr(0, delim.size() + 2) == delim + "\r\n");
        std::size_t pos = delim.size() + 2;
        while (true) {
            const std::size_t next = body.find("\r\n" + delim, pos);
            REQUIRE(next != std::string_view::npos);
            e.children.push_back(parse_entity(body.substr(pos, next - pos)));
            pos = next + 2 + delim.size();
            if (body.substr(pos, 2) == "--") break;
            REQUIRE(body.substr(pos, 2) == "\r\n");
            pos += 2;
        }
    }
    return e;
}

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

std::string b64_decode(std::string_view s) {
    static const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    unsigned buf = 0;
    int bits = 0;
    bool clean = true;
    for (char c : s) {
        if (c == '=' || c == '\r' || c == '\n') continue;
        const std::size_t v = alphabet.find(c);
        if (v == std::string::npos) {
            clean = false;
            continue;
        }
        buf = (buf << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out += static_cast<char>((buf >> bits) & 0xFF);
        }
    }
    CHECK_MESSAGE(clean, "not base64");
    return out;
}

std::string qp_decode(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] != '=') {
            out += s[i];
            continue;
        }
        if (s.substr(i + 1, 2) == "\r\n") {
            i += 2;
            continue;
        }
        REQUIRE(i + 2 < s.size());
        const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
        REQUIRE(hi >= 0);
        REQUIRE(lo >= 0);
        out += static_cast<char>(hi * 16 + lo);
        i += 2;
    }
    return out;
}

std::string decode_part_body(const entity& e) {
    const std::string cte = e.get("Content-Transfer-Encoding");
    if (iequal(cte, "base64")) return b64_decode(e.body);
    if (iequal(cte, "quoted-printable")) return qp_decode(e.body);
    return e.body;
}

// Decodes one RFC 2047 encoded-word; nullopt when `w` is not one.
std::optional<std::string> decode_word(std::string_view w) {
    if (w.size() < 8 || w.substr(0, 2) != "=?" || w.substr(w.size() - 2) != "?=") return {};
    const std::size_t q1 = w.find('?', 2);
    const std::size_t q2 = w.find('?', q1 + 1);
    if (q2 != q1 + 2) return {};
    const char enc = static_cast<char>(std::toupper(static_cast<unsigned char>(w[q1 + 1])));
    const std::string_view payload = w.substr(q2 + 1, w.size() - q2 - 3);
    if (enc == 'B') return b64_decode(payload);
    std::string out;
    for (std::size_t i = 0; i < payload.size(); ++i) {
        if (payload[i] == '_') {
            out += ' ';
        } else if (payload[i] == '=') {
            out += static_cast<char>(hex_value(payload[i + 1]) * 16 + hex_value(payload[i + 2]));
            i += 2;
        } else {
            out += payload[i];
        }
    }
    return out;
}

// Decodes an unstructured value: whitespace between adjacent encoded-words is
// dropped, everything else is kept (RFC 2047 section 6.2).
std::string decode_unstructured(std::string_view v) {
    std::string out;
    std::string pending_ws;
    bool prev_encoded = false;
    std::size_t i = 0;
    while (i < v.size()) {
        const std::size_t ws_end = v.find_first_not_of(" \t", i);
        if (ws_end != i) {
            pending_ws = std::string(
                v.substr(i, (ws_end == std::string_view::npos ? v.size() : ws_end) - i));
            if (ws_end == std::string_view::npos) break;
            i = ws_end;
        }
        std::size_t word_end = v.find_first_of(" \t", i);
        if (word_end == std::string_view::npos) word_end = v.size();
        const std::string_view word = v.substr(i, word_end - i);
        const auto decoded = decode_word(word);
        if (!(decoded && prev_encoded)) out += pending_ws;
        pending_ws.clear();
        out += decoded ? *decoded : std::string(word);
        prev_encoded = decoded.has_value();
        i = word_end;
    }
    return out + pending_ws;
}

std::vector<std::string> encoded_words_in(std::string_view v) {
    std::vector<std::string> words;
    std::size_t p = 0;
    while ((p = v.find("=?", p)) != std::string_view::npos) {
        const std::size_t q = v.find("?=", v.find('?', v.find('?', p + 2) + 1) + 1);
        words.emplace_back(v.substr(p, q + 2 - p));
        p = q + 2;
    }
    return words;
}

bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t n = c < 0x80         ? 1
                        : (c >> 5) == 6  ? 2
                        : (c >> 4) == 14 ? 3
                        : (c >> 3) == 30 ? 4
                                         : 0;
        if (n == 0 || i + n > s.size()) return false;
        for (std::size_t k = 1; k < n; ++k)
            if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
        i += n;
    }
    return true;
}

std::string crlf(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') {
            out += "\r\n";
            if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
        } else if (s[i] == '\n') {
            out += "\r\n";
        } else {
            out += s[i];
        }
    }
    return out;
}

// --- fixtures ----------------------------------------------------------------

mailers::time_point fixed_date() {
    return mailers::time_point{std::chrono::seconds{1795821625}};  // 2026-11-27 23:20:25 UTC
}

message basic() {
    message m;
    m.from = {"sender", "example.com", "Sender Name"};
    m.to = {{"rcpt", "example.org", ""}};
    m.subject = "Hello";
    m.text = "Hi there,\nThis is a test.\n";
    m.date = fixed_date();
    return m;
}

std::string render_ok(const message& m, const render_options& o = {}) {
    auto r = render_message(m, o);
    if (!r) FAIL("render failed: " << r.error().message());
    const wire_stats st = check_wire(*r);
    CHECK(st.crlf_only);
    CHECK(st.longest_line <= 998);
    return *r;
}

mailers::error_code render_error(const message& m, const render_options& o = {}) {
    auto r = render_message(m, o);
    if (r) return {};
    return r.error();
}

}  // namespace

TEST_CASE("a plain text message") {
    message m = basic();
    m.message_id = "fixed.id@example.com";
    const std::string wire = render_ok(m);
    const entity e = parse_entity(wire);
    CHECK(e.get("From") == "Sender Name <sender@example.com>");
    CHECK(e.get("To") == "rcpt@example.org");
    CHECK(e.get("Subject") == "Hello");
    CHECK(e.get("Date") == "Fri, 27 Nov 2026 23:20:25 +0000");
    CHECK(e.get("Message-ID") == "<fixed.id@example.com>");
    CHECK(e.get("MIME-Version") == "1.0");
    CHECK(e.get("Content-Type") == "text/plain; charset=utf-8");
    CHECK(e.get("Content-Transfer-Encoding") == "7bit");
    CHECK(e.body == "Hi there,\r\nThis is a test.\r\n");
    CHECK(e.count("Cc") == 0);
    CHECK(e.count("Reply-To") == 0);
    CHECK(check_wire(wire).longest_header_line <= 78);
}

TEST_CASE("Bcc never reaches the headers") {
    message m = basic();
    m.bcc = {{"secret", "example.net", "Hidden Person"}};
    std::string wire = render_ok(m);
    CHECK(wire.find("secret") == std::string::npos);
    CHECK(wire.find("Hidden") == std::string::npos);
    CHECK(parse_entity(wire).count("Bcc") == 0);

    m.to.clear();  // Bcc-only: no To header at all
    wire = render_ok(m);
    CHECK(parse_entity(wire).count("To") == 0);
    CHECK(wire.find("secret") == std::string::npos);
}

TEST_CASE("address lists, Cc, Reply-To and display names") {
    message m = basic();
    m.to = {{"a", "example.com", "Doe, John"},
            {"b", "example.com", "Plain Name"},
            {"c", "example.com", "Quote \"Me\" \\ Now"},
            {"d", "example.com", "Jöhn Dœ"},
            {"e", "bücher.de", ""},
            {"f", "example.com", "John Q. Public"},
            {"g", "example.com", "=?UTF-8?B?Zm9v?="}};
    m.cc = {{"cc", "example.com", "李小龙"}};
    m.reply_to = address{"replies", "example.com", "Support Team"};
    const entity e = parse_entity(render_ok(m));
    const std::string to = e.get("To");
    CHECK(to.find("\"Doe, John\" <a@example.com>") != std::string::npos);
    CHECK(to.find("Plain Name <b@example.com>") != std::string::npos);
    CHECK(to.find("\"Quote \\\"Me\\\" \\\\ Now\" <c@example.com>") != std::string::npos);
    CHECK(to.find("Jöhn") == std::string::npos);  // raw UTF-8 never reaches a header
    CHECK(to.find("e@xn--bcher-kva.de") != std::string::npos);
    CHECK(to.find("\"John Q. Public\" <f@example.com>") != std::string::npos);
    // Text that looks like an encoded-word is itself encoded, so it reads back literally.
    CHECK(to.find("=?UTF-8?B?Zm9v?= <g@") == std::string::npos);
    CHECK(decode_unstructured(to).find("=?UTF-8?B?Zm9v?= <g@example.com>") != std::string::npos);
    CHECK(decode_unstructured(to).find("Jöhn Dœ <d@example.com>") != std::string::npos);
    CHECK(decode_unstructured(e.get("Cc")) == "李小龙 <cc@example.com>");
    CHECK(e.get("Reply-To") == "Support Team <replies@example.com>");
    for (const std::string& line : e.raw_header_lines) CHECK(line.size() <= 78);
}

TEST_CASE("long ASCII subject folds at its own whitespace") {
    message m = basic();
    std::string subject;
    for (int i = 0; i < 40; ++i) subject += "word" + std::to_string(i) + (i % 3 ? " " : "\t");
    subject += "end";
    m.subject = subject;
    const std::string wire = render_ok(m);
    const entity e = parse_entity(wire);
    CHECK(e.get("Subject") == subject);
    CHECK(wire.find("=?") == std::string::npos);
    CHECK(check_wire(wire).longest_header_line <= 78);
}

TEST_CASE("non-ASCII subjects become encoded-words that never split a character") {
    const std::string chinese =
        "关于下周项目评审会议的安排以及需要提前准备的材料清单，请各位同事务必在周五之前完成并提交";
    const std::string emoji =
        "Launch day 🚀🚀🚀 — 🎉 celebrate with us "
        "🥳👩‍👩‍👧‍👦🏳️‍🌈 "
        "and "
        "more "
        "🎉🎉🎉🎉🎉🎉";
    const std::string mixed = std::string(200, 'x') + " é " + std::string(30, 'y');
    const std::string latin =
        "Prüfungsergebnisse für die Übung — bitte überprüfen Sie Ihre Angaben";
    for (const std::string& subject : {chinese, emoji, mixed, latin, std::string("é")}) {
        CAPTURE(subject);
        message m = basic();
        m.subject = subject;
        const std::string wire = render_ok(m);
        const entity e = parse_entity(wire);
        const std::string& raw = e.get("Subject");
        CHECK(decode_unstructured(raw) == subject);
        for (const std::string& w : encoded_words_in(raw)) {
            CHECK(w.size() <= 75);
            const auto d = decode_word(w);
            REQUIRE(d.has_value());
            CHECK(valid_utf8(*d));  // each word holds whole characters
        }
        for (const std::string& line : e.raw_header_lines) {
            if (line.find("=?") != std::string::npos) CHECK(line.size() <= 76);
            CHECK(line.size() <= 78);
        }
    }
}

TEST_CASE("subject edge cases") {
    message m = basic();
    m.subject = "Price =?iso-8859-1?q?10=80?= today";
    entity e = parse_entity(render_ok(m));
    CHECK(decode_unstructured(e.get("Subject")) == m.subject);

    m.subject = std::string(1500, 'a');  // one word longer than a line may be
    e = parse_entity(render_ok(m));
    CHECK(decode_unstructured(e.get("Subject")) == m.subject);

    m.subject.clear();
    e = parse_entity(render_ok(m));
    CHECK(e.count("Subject") == 0);
}

TEST_CASE("text bodies: line endings, dots, From, long lines, 8-bit") {
    SUBCASE("bare LF and bare CR become CRLF") {
        message m = basic();
        m.text = "one\ntwo\rthree\r\nfour\n\nfive";
        const entity e = parse_entity(render_ok(m));
        CHECK(e.get("Content-Transfer-Encoding") == "7bit");
        CHECK(e.body == "one\r\ntwo\r\nthree\r\nfour\r\n\r\nfive\r\n");
    }
    SUBCASE("a line starting with a dot is quoted-printable") {
        message m = basic();
        m.text = "first\n.\n..hidden\nlast";
        const entity e = parse_entity(render_ok(m));
        CHECK(e.get("Content-Transfer-Encoding") == "quoted-printable");
        CHECK(e.body.find("\r\n.") == std::string::npos);
        CHECK(qp_decode(e.body) == crlf(m.text) + "\r\n");
    }
    SUBCASE("a line starting with From is quoted-printable") {
        message m = basic();
        m.text = "Hello\nFrom here on\nFromage is fine";
        const entity e = parse_entity(render_ok(m));
        CHECK(e.get("Content-Transfer-Encoding") == "quoted-printable");
        CHECK(e.body.find("\r\nFrom ") == std::string::npos);
        CHECK(e.body.find("Fromage") != std::string::npos);
        CHECK(qp_decode(e.body) == crlf(m.text) + "\r\n");
    }
    SUBCASE("lines over 998 octets are quoted-printable with soft breaks") {
        message m = basic();
        m.text = std::string(5000, 'a') + "\n" + std::string(76, '.') + "\n" +
                 std::string(3000, ' ') + "x\n" + std::string(1200, '=');
        const std::string wire = render_ok(m);
        const entity e = parse_entity(wire);
        CHECK(e.get("Content-Transfer-Encoding") == "quoted-printable");
        CHECK(check_wire(wire).longest_line <= 78);
        CHECK(qp_decode(e.body) == crlf(m.text) + "\r\n");
        // No output line may start with a dot, even after a soft break.
        CHECK(e.body.find("\r\n.") == std::string::npos);
    }
    SUBCASE("non-ASCII text is quoted-printable, or 8bit when allowed") {
        message m = basic();
        m.text = "Grüße aus Köln 🚀\nzweite Zeile  \n\tTab am Ende\t\n";
        entity e = parse_entity(render_ok(m));
        CHECK(e.get("Content-Transfer-Encoding") == "quoted-printable");
        CHECK(qp_decode(e.body) == crlf(m.text));
        for (unsigned char c : e.body) CHECK(c < 0x80);
        // Whitespace before a line break is encoded so transports cannot strip it.
        CHECK(e.body.find(" \r\n") == std::string::npos);
        CHECK(e.body.find("\t\r\n") == std::string::npos);

        render_options o;
        o.allow_8bit = true;
        e = parse_entity(render_ok(m, o));
        CHECK(e.get("Content-Transfer-Encoding") == "8bit");
        CHECK(e.body == crlf(m.text));
    }
    SUBCASE("NUL forces quoted-printable") {
        message m = basic();
        m.text = std::string("a\0b", 3);
        const entity e = parse_entity(render_ok(m));
        CHECK(e.get("Content-Transfer-Encoding") == "quoted-printable");
        CHECK(e.body.find("=00") != std::string::npos);
    }
}

TEST_CASE("quoted-printable encoder") {
    using mailers::mime::append_quoted_printable;
    const std::string inputs[] = {
        "",
        "plain",
        std::string(200, 'x'),
        std::string(300, '='),
        "trailing space \nand tab\t\r\nend ",
        ".dot\nFrom x\nFrom\n",
        std::string(74, 'a') + "é" + std::string(100, 'b'),
        "ĀāĂăĄą日本語テキスト🎉" + std::string(120, 'z'),
    };
    for (const std::string& in : inputs) {
        CAPTURE(in);
        std::string out;
        append_quoted_printable(out, in);
        CHECK(qp_decode(out) == crlf(in));
        std::size_t start = 0;
        while (start <= out.size()) {
            std::size_t eol = out.find("\r\n", start);
            if (eol == std::string::npos) eol = out.size();
            const std::string_view line = std::string_view(out).substr(start, eol - start);
            CHECK(line.size() <= 76);
            if (!line.empty()) {
                CHECK(line.back() != ' ');
                CHECK(line.back() != '\t');
                CHECK(line.front() != '.');
                CHECK(line.substr(0, 5) != "From ");
            }
            start = eol + 2;
        }
    }
}

TEST_CASE("base64 encoder") {
    using mailers::mime::append_base64;
    using mailers::mime::append_base64_lines;
    using mailers::mime::base64_lines_size;
    std::string out;
    append_base64(out, "");
    CHECK(out.empty());
    append_base64(out, "f");
    CHECK(out == "Zg==");
    out.clear();
    append_base64(out, "fo");
    CHECK(out == "Zm8=");
    out.clear();
    append_base64(out, "foobar");
    CHECK(out == "Zm9vYmFy");
    for (std::size_t n : {0u, 1u, 56u, 57u, 58u, 114u, 1000u, 4099u}) {
        std::string data;
        for (std::size_t i = 0; i < n; ++i) data += static_cast<char>((i * 131 + 7) & 0xFF);
        std::string lines;
        append_base64_lines(lines, data);
        CHECK(lines.size() == base64_lines_size(n));
        CHECK(b64_decode(lines) == data);
        std::size_t start = 0;
        while (start < lines.size()) {
            std::size_t eol = lines.find("\r\n", start);
            const bool last = eol == std::string::npos;
            if (last) eol = lines.size();
            if (!last) CHECK(eol - start == 76);
            CHECK(eol - start <= 76);
            start = eol + 2;
        }
    }
}

TEST_CASE("MIME structure") {
    attachment pdf{"report.pdf", "application/pdf", std::string("%PDF-1.4\0\xff\xfe", 11), ""};
    attachment logo{"logo.png", "image/png", "\x89PNG\r\n\x1a\n", "logo@example.com"};

    SUBCASE("text only") {
        message m = basic();
        CHECK(parse_entity(render_ok(m)).shape() == "text/plain");
    }
    SUBCASE("html only") {
        message m = basic();
        m.text.clear();
        m.html = "<p>Hi</p>";
        const entity e = parse_entity(render_ok(m));
        CHECK(e.shape() == "text/html");
        CHECK(e.get("Content-Type") == "text/html; charset=utf-8");
    }
    SUBCASE("text and html") {
        message m = basic();
        m.html = "<p>Hi there</p>";
        const entity e = parse_entity(render_ok(m));
        CHECK(e.shape() == "multipart/alternative(text/plain,text/html)");
        CHECK(e.children[0].body == crlf(m.text));
        CHECK(e.children[1].body == m.html);
    }
    SUBCASE("inline image next to the html") {
        message m = basic();
        m.html = "<img src=\"cid:logo@example.com\">";
        m.attachments = {logo};
        const entity e = parse_entity(render_ok(m));
        CHECK(e.shape() ==
              "multipart/alternative(text/plain,multipart/related(text/html,image/png))");
        const entity& related = e.children[1];
        CHECK(related.get("Content-Type").find("type=\"text/html\"") != std::string::npos);
        const entity& img = related.children[1];
        CHECK(img.get("Content-ID") == "<logo@example.com>");
        CHECK(img.get("Content-Disposition").rfind("inline", 0) == 0);
        CHECK(decode_part_body(img) == logo.data);
    }
    SUBCASE("attachments go in multipart/mixed, outermost") {
        message m = basic();
        m.html = "<img src=\"cid:logo@example.com\">";
        m.attachments = {pdf, logo};
        const entity e = parse_entity(render_ok(m));
        CHECK(e.shape() ==
              "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,"
              "image/png)),application/pdf)");
        const entity& a = e.children[1];
        CHECK(a.get("Content-Type") == "application/pdf; name=\"report.pdf\"");
        CHECK(a.get("Content-Disposition") == "attachment; filename=\"report.pdf\"");
        CHECK(a.get("Content-Transfer-Encoding") == "base64");
        CHECK(decode_part_body(a) == pdf.data);
    }
    SUBCASE("html with attachment, no text") {
        message m = basic();
        m.text.clear();
        m.html = "<b>x</b>";
        m.attachments = {pdf};
        CHECK(parse_entity(render_ok(m)).shape() == "multipart/mixed(text/html,application/pdf)");
    }
    SUBCASE("an inline part without html is an ordinary part") {
        message m = basic();
        m.attachments = {logo};
        CHECK(parse_entity(render_ok(m)).shape() == "multipart/mixed(text/plain,image/png)");
    }
    SUBCASE("attachment only") {
        message m = basic();
        m.text.clear();
        m.attachments = {pdf};
        CHECK(parse_entity(render_ok(m)).shape() == "multipart/mixed(application/pdf)");
    }
    SUBCASE("default content type and no filename") {
        message m = basic();
        m.attachments = {attachment{"", "", "data", ""}};
        const entity e = parse_entity(render_ok(m));
        CHECK(e.children[1].get("Content-Type") == "application/octet-stream");
        CHECK(e.children[1].get("Content-Disposition") == "attachment");
    }
    SUBCASE("boundaries differ and never occur in the content") {
        message m = basic();
        m.text = "--=_a\n--=_m\n=_r";
        m.html = "<p>=_ --=_</p>";
        m.attachments = {pdf, logo};
        const std::string wire = render_ok(m);
        const entity e = parse_entity(wire);
        const std::string outer = param(e.get("Content-Type"), "boundary");
        const std::string alt = param(e.children[0].get("Content-Type"), "boundary");
        const std::string rel = param(e.children[0].children[1].get("Content-Type"), "boundary");
        CHECK(std::set<std::string>{outer, alt, rel}.size() == 3);
        for (const std::string& b : {outer, alt, rel}) {
            CHECK(m.text.find(b) == std::string::npos);
            CHECK(m.html.find(b) == std::string::npos);
            CHECK(outer.find(b) == (b == outer ? 0 : std::string::npos));
        }
    }
}

TEST_CASE("large attachment") {
    message m = basic();
    std::string data(10 * 1024 * 1024, '\0');
    std::uint32_t x = 2463534242u;
    for (char& c : data) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x);
    }
    m.attachments = {attachment{"big.bin", "application/octet-stream", data, ""}};
    const auto t0 = std::chrono::steady_clock::now();
    const std::string wire = render_ok(m);
    const auto t1 = std::chrono::steady_clock::now();
    MESSAGE("10 MiB attachment rendered in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count() << " ms");
    const entity e = parse_entity(wire);
    REQUIRE(e.children.size() == 2);
    CHECK(decode_part_body(e.children[1]) == data);
    CHECK(check_wire(wire).longest_line == 76);

    render_options o;
    o.max_size = data.size();  // base64 alone is larger: refused before rendering
    CHECK(render_error(m, o) == make_error_code(errc::message_too_large));
}

TEST_CASE("non-ASCII and long filenames") {
    SUBCASE("non-ASCII filename uses RFC 2231 with a name= fallback") {
        message m = basic();
        m.attachments = {attachment{"Prüfbericht Ü.pdf", "application/pdf", "x", ""}};
        const entity e = parse_entity(render_ok(m));
        const entity& a = e.children[1];
        CHECK(a.get("Content-Disposition") ==
              "attachment; filename*=UTF-8''Pr%C3%BCfbericht%20%C3%9C.pdf");
        const std::string ct = a.get("Content-Type");
        CHECK(ct.rfind("application/pdf; name=\"=?UTF-8?", 0) == 0);
        CHECK(decode_unstructured(param(ct, "name")) == "Prüfbericht Ü.pdf");
    }
    SUBCASE("long filenames are split into continuations") {
        message m = basic();
        std::string name;
        for (int i = 0; i < 12; ++i) name += "文件名称很长的附件";
        name += ".txt";
        m.attachments = {attachment{name, "text/plain", "x", ""}};
        const std::string wire = render_ok(m);
        const entity e = parse_entity(wire);
        const entity& a = e.children[1];
        const std::string cd = a.get("Content-Disposition");
        CHECK(cd.find("filename*0*=UTF-8''") != std::string::npos);
        CHECK(cd.find("filename*1*=") != std::string::npos);
        // Reassemble the sections and percent-decode.
        std::string joined;
        for (int i = 0;; ++i) {
            const std::string key = "filename*" + std::to_string(i) + "*=";
            std::size_t p = cd.find(key);
            if (p == std::string::npos) break;
            p += key.size();
            if (i == 0) p += 7;  // UTF-8''
            joined += cd.substr(p, cd.find(';', p) - p);
        }
        std::string decoded;
        for (std::size_t i = 0; i < joined.size(); ++i) {
            if (joined[i] == '%') {
                decoded +=
                    static_cast<char>(hex_value(joined[i + 1]) * 16 + hex_value(joined[i + 2]));
                i += 2;
            } else {
                decoded += joined[i];
            }
        }
        CHECK(decoded == name);
        for (const std::string& line : a.raw_header_lines) CHECK(line.size() <= 78);
        CHECK(decode_unstructured(param(a.get("Content-Type"), "name")) == name);
    }
    SUBCASE("ASCII filename with quotes is escaped") {
        message m = basic();
        m.attachments = {attachment{"a \"quoted\" name.txt", "text/plain", "x", ""}};
        const entity e = parse_entity(render_ok(m));
        CHECK(e.children[1].get("Content-Disposition") ==
              "attachment; filename=\"a \\\"quoted\\\" name.txt\"");
    }
}

TEST_CASE("threading and list headers") {
    message m = basic();
    m.message_id = "<own@example.com>";  // angle brackets are tolerated
    m.in_reply_to = "parent@example.com";
    for (int i = 0; i < 8; ++i)
        m.references.push_back("ref" + std::to_string(i) + "@mail.example.com");
    m.unsubscribe = mailers::list_unsubscribe{"https://example.com/u/opaque-123",
                                              "unsubscribe@example.com?subject=unsubscribe"};
    m.headers = {{"X-Campaign", "spring-sale"}, {"Precedence", "bulk"}};
    const std::string wire = render_ok(m);
    const entity e = parse_entity(wire);
    CHECK(e.get("Message-ID") == "<own@example.com>");
    CHECK(e.get("In-Reply-To") == "<parent@example.com>");
    std::string refs;
    for (const std::string& r : m.references) refs += (refs.empty() ? "<" : " <") + r + ">";
    CHECK(e.get("References") == refs);
    CHECK(
        e.get("List-Unsubscribe") ==
        "<https://example.com/u/opaque-123>, <mailto:unsubscribe@example.com?subject=unsubscribe>");
    CHECK(e.get("List-Unsubscribe-Post") == "List-Unsubscribe=One-Click");
    CHECK(e.get("X-Campaign") == "spring-sale");
    CHECK(e.get("Precedence") == "bulk");
    CHECK(check_wire(wire).longest_header_line <= 78);

    m.unsubscribe->mailto = "mailto:list@example.com";  // the scheme is tolerated
    CHECK(parse_entity(render_ok(m)).get("List-Unsubscribe") ==
          "<https://example.com/u/opaque-123>, <mailto:list@example.com>");
    m.unsubscribe->mailto.clear();
    CHECK(parse_entity(render_ok(m)).get("List-Unsubscribe") ==
          "<https://example.com/u/opaque-123>");

    for (const char* bad :
         {"http://example.com/u", "mailto:x@example.com", "https://", "https://exa mple.com/",
          "https://example.com/<x>", "https://example.com/ü"}) {
        CAPTURE(bad);
        m.unsubscribe->url = bad;
        CHECK(render_error(m) == make_error_code(errc::invalid_argument));
    }
}

TEST_CASE("extra headers") {
    message m = basic();
    m.headers = {{"X-Note", "Grüße 🚀"}, {"X-Empty", ""}, {"X-Long", std::string(2000, 'z')}};
    const std::string wire = render_ok(m);
    const entity e = parse_entity(wire);
    CHECK(decode_unstructured(e.get("X-Note")) == "Grüße 🚀");
    CHECK(e.get("X-Empty").empty());
    CHECK(decode_unstructured(e.get("X-Long")) == std::string(2000, 'z'));

    for (const char* name :
         {"From", "to", "CC", "bcc", "Subject", "date", "Message-Id", "MIME-Version",
          "Content-Type", "content-transfer-encoding", "Content-Disposition", "In-Reply-To",
          "references", "List-Unsubscribe", "List-Unsubscribe-Post", "Reply-To"}) {
        CAPTURE(name);
        message r = basic();
        r.headers = {{name, "x"}};
        CHECK(render_error(r) == make_error_code(errc::invalid_header));
    }
    for (const char* name : {"", "X Space", "X:Colon", "X-Ü", "X-\x7f", "X-\x01"}) {
        CAPTURE(name);
        message r = basic();
        r.headers = {{name, "x"}};
        CHECK(render_error(r) == make_error_code(errc::invalid_header));
    }
    message r = basic();
    r.headers = {{"X-Bad-UTF8", "\xc3"}};
    CHECK(render_error(r) == make_error_code(errc::invalid_header));
    r.headers = {{"X-Control", "a\x1b[31mb"}};
    CHECK(render_error(r) == make_error_code(errc::invalid_header));
}

TEST_CASE("header injection is refused in every field") {
    using mutate = std::function<void(message&, const std::string&)>;
    const std::pair<const char*, mutate> fields[] = {
        {"subject",
         [](message& m, const std::string& s) { m.subject = "Hi" + s + "Bcc: x@evil.com"; }},
        {"from display",
         [](message& m, const std::string& s) { m.from.display_name = "A" + s + "B"; }},
        {"from local", [](message& m, const std::string& s) { m.from.local = "a" + s + "b"; }},
        {"from domain",
         [](message& m, const std::string& s) { m.from.domain = "example.com" + s; }},
        {"to display", [](message& m, const std::string& s) { m.to[0].display_name = s + "x"; }},
        {"to domain", [](message& m, const std::string& s) { m.to[0].domain = "a" + s + ".com"; }},
        {"cc display",
         [](message& m, const std::string& s) {
             m.cc = {{"c", "example.com", "C" + s}};
         }},
        {"bcc local",
         [](message& m, const std::string& s) {
             m.bcc = {{"b" + s, "example.com", ""}};
         }},
        {"reply-to display",
         [](message& m, const std::string& s) {
             m.reply_to = address{"r", "example.com", s};
         }},
        {"extra header value",
         [](message& m, const std::string& s) {
             m.headers = {{"X-A", "v" + s + "Bcc: x@y.z"}};
         }},
        {"extra header name",
         [](message& m, const std::string& s) {
             m.headers = {{"X-A" + s, "v"}};
         }},
        {"attachment filename",
         [](message& m, const std::string& s) {
             m.attachments = {{"a" + s + ".txt", "", "x", ""}};
         }},
        {"attachment content type",
         [](message& m, const std::string& s) {
             m.attachments = {{"a", "text/plain" + s, "x", ""}};
         }},
        {"attachment content id",
         [](message& m, const std::string& s) {
             m.attachments = {{"a", "", "x", "id" + s + "@x"}};
         }},
        {"message id", [](message& m, const std::string& s) { m.message_id = "a" + s + "@b"; }},
        {"in-reply-to", [](message& m, const std::string& s) { m.in_reply_to = "a@b" + s; }},
        {"references",
         [](message& m, const std::string& s) { m.references = {"ok@x", "a" + s + "@b"}; }},
        {"unsubscribe url",
         [](message& m,
            const std::string&
                s) { m.unsubscribe = mailers::list_unsubscribe{"https://x.com/" + s, ""}; }},
        {"unsubscribe mailto",
         [](message& m,
            const std::string&
                s) { m.unsubscribe = mailers::list_unsubscribe{"https://x.com/u", "u@x.com" + s}; }},
    };
    const std::string breaks[] = {"\r\n", "\n", "\r", std::string(1, '\0'), "\r\n "};
    for (const auto& field : fields) {
        const char* what = field.first;
        const mutate& apply = field.second;
        for (const std::string& br : breaks) {
            CAPTURE(what);
            CAPTURE(br.size());
            message m = basic();
            apply(m, br);
            CHECK(mailers::validate_message(m) == make_error_code(errc::header_injection));
            auto r = render_message(m);
            REQUIRE(r.has_error());
            CHECK(r.error() == make_error_code(errc::header_injection));
        }
    }
    render_options o;
    o.message_id_domain = "example.com\r\nBcc: x@evil.com";
    CHECK(render_error(basic(), o) == make_error_code(errc::header_injection));
}

TEST_CASE("validation errors") {
    message m = basic();
    CHECK_FALSE(mailers::validate_message(m));

    m = basic();
    m.to.clear();
    CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_argument));

    m = basic();
    m.text.clear();
    CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_argument));

    m = basic();
    m.from = {};
    CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_address));

    m = basic();
    m.to[0].local = "bad local";
    CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_address));

    m = basic();
    m.from.display_name = "\xff\xfe";
    CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_address));

    m = basic();
    m.subject = "bad \xc3\x28 utf8";
    CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_header));

    for (const char* id : {"no-at-sign", "@right", "left@", "sp ace@x", "a@b>c", "<>"}) {
        CAPTURE(id);
        m = basic();
        m.in_reply_to = id;
        CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_header));
    }

    for (const char* ct : {"pdf", "/pdf", "application/", "app lication/pdf", "text/plain; ü=1"}) {
        CAPTURE(ct);
        m = basic();
        m.attachments = {{"a", ct, "x", ""}};
        CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_header));
    }
    for (const char* ct : {"multipart/mixed", "message/rfc822"}) {
        m = basic();
        m.attachments = {{"a", ct, "x", ""}};
        CHECK(mailers::validate_message(m) == make_error_code(errc::invalid_argument));
    }
    m = basic();
    m.attachments = {{"a", "text/csv; charset=utf-8", "x", "<part1@example.com>"}};
    CHECK_FALSE(mailers::validate_message(m));

    render_options o;
    o.message_id_domain = "not a domain";
    CHECK(render_error(basic(), o) == make_error_code(errc::invalid_argument));
}

TEST_CASE("max_size") {
    message m = basic();
    const std::string wire = render_ok(m);
    render_options o;
    o.max_size = wire.size() + 200;  // Message-ID length is fixed, so this fits
    CHECK(render_message(m, o).has_value());
    o.max_size = 100;
    CHECK(render_error(m, o) == make_error_code(errc::message_too_large));
}

TEST_CASE("Message-ID generation") {
    message m = basic();
    entity e = parse_entity(render_ok(m));
    const std::string id = e.get("Message-ID");
    CHECK(id.front() == '<');
    CHECK(id.back() == '>');
    CHECK(id.find("@example.com>") != std::string::npos);

    m.from.domain = "bücher.de";
    e = parse_entity(render_ok(m));
    CHECK(e.get("Message-ID").find("@xn--bcher-kva.de>") != std::string::npos);

    render_options o;
    o.message_id_domain = "mail.example.net";
    e = parse_entity(render_ok(m, o));
    CHECK(e.get("Message-ID").find("@mail.example.net>") != std::string::npos);

    std::set<std::string> seen;
    for (int i = 0; i < 10000; ++i) {
        const std::string mid = mailers::make_message_id("example.com");
        REQUIRE(mid.size() == 26 + 1 + 11);
        const std::string_view left = std::string_view(mid).substr(0, 26);
        CHECK(left.find_first_not_of("abcdefghijklmnopqrstuvwxyz234567") == std::string::npos);
        seen.insert(mid);
    }
    CHECK(seen.size() == 10000);
    CHECK(mailers::make_message_id("Bücher.DE").ends_with("@xn--bcher-kva.de"));
    CHECK(mailers::make_message_id("bad\r\ndomain").ends_with("@mailers.invalid"));
    CHECK(mailers::make_message_id("").ends_with("@mailers.invalid"));
}

TEST_CASE("format_rfc5322_date") {
    using mailers::format_rfc5322_date;
    using mailers::time_point;
    using std::chrono::seconds;
    CHECK(format_rfc5322_date(time_point{}) == "Thu, 01 Jan 1970 00:00:00 +0000");
    CHECK(format_rfc5322_date(fixed_date()) == "Fri, 27 Nov 2026 23:20:25 +0000");
    CHECK(format_rfc5322_date(time_point{seconds{1709190309}}) ==
          "Thu, 29 Feb 2024 07:05:09 +0000");
    // Sub-second parts are truncated, including before the epoch.
    CHECK(
        format_rfc5322_date(time_point{seconds{1709190309}} + std::chrono::microseconds{999999}) ==
        "Thu, 29 Feb 2024 07:05:09 +0000");
    CHECK(format_rfc5322_date(time_point{std::chrono::microseconds{-1}}) ==
          "Wed, 31 Dec 1969 23:59:59 +0000");
}

TEST_CASE("values that cannot be folded as they are still fit in 998-octet lines") {
    message m = basic();
    m.subject = std::string(1000, ' ');
    m.headers = {{"X-Trailing", "word" + std::string(990, ' ')},
                 {"X-Tabs", std::string(500, '\t') + "x" + std::string(500, '\t') + "y"},
                 {std::string(900, 'N'), "a value with words " + std::string(300, 'v')}};
    m.to = {{"a", "example.com", std::string(800, '"')},
            {"b", "example.com", std::string(2000, 'x')},
            {"c", "example.com", std::string(600, '\\') + " " + std::string(600, '(')}};
    const std::string wire = render_ok(m);  // checks CRLF and line lengths
    const entity e = parse_entity(wire);
    CHECK(decode_unstructured(e.get("Subject")) == m.subject);
    CHECK(decode_unstructured(e.get("X-Trailing")) == m.headers[0].value);
    // Leading whitespace is not part of a header value once unfolded.
    CHECK(decode_unstructured(e.get("X-Tabs")) == m.headers[1].value.substr(500));
    CHECK(decode_unstructured(e.get(m.headers[2].name)) == m.headers[2].value);
    const std::string to = decode_unstructured(e.get("To"));
    CHECK(to.find(std::string(2000, 'x') + " <b@example.com>") != std::string::npos);
}

TEST_CASE("header writer folding") {
    using mailers::mime::header_writer;
    std::string out;
    header_writer w{out};
    mailers::mime::write_unstructured(
        w, "X-Very-Long-Header-Name-That-Leaves-Little-Room-For-Words-At-All", "日本語のテキスト");
    const std::string_view first_line = std::string_view(out).substr(0, out.find("\r\n"));
    CHECK(first_line.size() <= 76);
    REQUIRE(out.ends_with("\r\n"));
    std::string unfolded;
    for (std::size_t i = 0; i < out.size(); ++i) {
        if (out.compare(i, 2, "\r\n") == 0)
            ++i;
        else
            unfolded += out[i];
    }
    std::string_view value = std::string_view(unfolded).substr(unfolded.find(':') + 1);
    while (value.front() == ' ') value.remove_prefix(1);
    CHECK(decode_unstructured(value) == "日本語のテキスト");
}
