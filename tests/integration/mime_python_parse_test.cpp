// Renders messages with the MIME writer and reads them back with an
// independent implementation, Python's `email` package under policy.default,
// comparing what a mail reader would show: headers, addresses, bodies,
// attachment bytes and MIME structure, with no parser defects.
#include <doctest/doctest.h>
#include <openssl/evp.h>
#include <simdjson.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mailers/mime.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

constexpr const char* python = "/usr/bin/python3";

using mailers::address;
using mailers::attachment;
using mailers::message;

struct expected_address {
    std::string name;
    std::string addr;  // as it appears in headers: domains as A-labels
};

struct scenario {
    std::string label;
    message m;
    mailers::render_options opts;
    std::vector<expected_address> from, to, cc, reply_to;
    std::string structure;
};

std::string sha256_hex(std::string_view data) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    REQUIRE(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr) == 1);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += hex[md[i] >> 4];
        out += hex[md[i] & 15];
    }
    return out;
}

std::string lf_only(std::string_view s) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') {
            out += '\n';
            if (i + 1 < s.size() && s[i + 1] == '\n') ++i;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::string pseudo_random_bytes(std::size_t n, std::uint32_t seed) {
    std::string data(n, '\0');
    for (char& c : data) {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        c = static_cast<char>(seed);
    }
    return data;
}

std::string run_command(const std::string& cmd) {
    std::FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p != nullptr);
    std::string out;
    char buf[65536];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = ::pclose(p);
    if (status != 0) FAIL("command failed (" << status << "): " << cmd << "\n" << out);
    return out;
}

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string tmpl =
            (std::filesystem::temp_directory_path() / "mailers-mime-XXXXXX").string();
        REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

std::optional<std::string> opt_string(simdjson::dom::element e) {
    if (e.is_null()) return std::nullopt;
    std::string_view s;
    REQUIRE(e.get_string().get(s) == simdjson::SUCCESS);
    return std::string(s);
}

std::string str(simdjson::dom::element obj, const char* key) {
    simdjson::dom::element e;
    REQUIRE(obj[key].get(e) == simdjson::SUCCESS);
    auto v = opt_string(e);
    REQUIRE_MESSAGE(v.has_value(), key << " is missing");
    return *v;
}

void check_addresses(simdjson::dom::element obj, const char* key,
                     const std::vector<expected_address>& expected) {
    CAPTURE(key);
    simdjson::dom::element e;
    REQUIRE(obj[key].get(e) == simdjson::SUCCESS);
    if (expected.empty()) {
        CHECK(e.is_null());
        return;
    }
    simdjson::dom::array arr;
    REQUIRE(e.get_array().get(arr) == simdjson::SUCCESS);
    REQUIRE(arr.size() == expected.size());
    std::size_t i = 0;
    for (simdjson::dom::element a : arr) {
        CHECK(str(a, "name") == expected[i].name);
        CHECK(str(a, "addr") == expected[i].addr);
        ++i;
    }
}

std::string ids(const std::vector<std::string>& v) {
    std::string out;
    for (const std::string& id : v) out += (out.empty() ? "<" : " <") + id + ">";
    return out;
}

mailers::time_point fixed_date() {
    return mailers::time_point{std::chrono::seconds{1795821625}};
}

scenario kitchen_sink() {
    scenario s;
    s.label = "kitchen sink";
    message& m = s.m;
    m.from = {"sender", "example.com", "Ünïcødé Sender"};
    m.to = {{"john", "example.com", "Doe, John"},
            {"jo", "example.com", "Jöhn Dœ"},
            {"idn", "bücher.de", ""},
            {"long", "example.com",
             "A Rather Long Display Name That Will Certainly Need Folding Somewhere"},
            {"bruce", "example.com", "李小龙"},
            {"mixed", "example.com", "李小龙 and a very long name that goes on and on and on"},
            {"q", "example.com", "Quote \"Me\" \\ Now"},
            {"dots", "example.com", "John Q. Public"}};
    m.cc = {{"cc", "example.org", "Cc Person"}};
    m.bcc = {{"hidden", "example.net", "Secret Person"}};
    m.reply_to = address{"replies", "example.com", "Support — Team"};
    m.subject =
        "关于下周项目评审会议的安排以及需要提前准备的材料清单，请各位同事务必在周五之前完成 "
        "🚀🎉 Launch day 👩‍👩‍👧‍👦";
    m.text = "Line one\nbare LF\rbare CR\r\n.leading dot\n..two dots\nFrom the start\n" +
             std::string(1500, 'a') + "\nGrüße 🚀\ntrailing space \ntrailing tab\t\n=3D literal\n";
    m.html =
        "<html><body><p>Grüße aus Köln</p>\n.dot\n<img src=\"cid:logo@example.com\"></body></html>";
    m.attachments = {
        {"logo.png", "image/png", pseudo_random_bytes(700, 1), "logo@example.com"},
        {"report.pdf", "application/pdf", pseudo_random_bytes(3000, 2), ""},
        {"Prüfbericht Ü 2024.pdf", "application/pdf", pseudo_random_bytes(10, 3), ""},
        {"文件名称很长的附件文件名称很长的附件文件名称很长的附件文件名称很长的附件.txt",
         "text/plain", "plain text attachment\n", ""},
        {"a \"quoted\" name.txt", "text/plain; charset=utf-8", "x", ""},
        {"", "application/octet-stream", std::string("\0\r\n\xff", 4), ""},
    };
    m.message_id = "kitchen-sink@example.com";
    m.in_reply_to = "parent@example.com";
    m.references = {"root@example.com", "parent@example.com", "other.id.1234@mail.example.org"};
    m.unsubscribe = mailers::list_unsubscribe{"https://example.com/unsubscribe/opaque-123",
                                              "unsubscribe@example.com?subject=unsubscribe"};
    m.headers = {{"X-Campaign", "spring — 春"}, {"X-Plain", "plain value"}};
    m.date = fixed_date();

    s.from = {{"Ünïcødé Sender", "sender@example.com"}};
    s.to = {{"Doe, John", "john@example.com"},
            {"Jöhn Dœ", "jo@example.com"},
            {"", "idn@xn--bcher-kva.de"},
            {"A Rather Long Display Name That Will Certainly Need Folding Somewhere",
             "long@example.com"},
            {"李小龙", "bruce@example.com"},
            {"李小龙 and a very long name that goes on and on and on", "mixed@example.com"},
            {"Quote \"Me\" \\ Now", "q@example.com"},
            {"John Q. Public", "dots@example.com"}};
    s.cc = {{"Cc Person", "cc@example.org"}};
    s.reply_to = {{"Support — Team", "replies@example.com"}};
    s.structure =
        "multipart/mixed(multipart/alternative(text/plain,multipart/related(text/html,image/png)),"
        "application/pdf,application/pdf,text/plain,text/plain,application/octet-stream)";
    return s;
}

scenario simple(std::string label, std::string subject) {
    scenario s;
    s.label = std::move(label);
    s.m.from = {"a", "example.com", ""};
    s.m.to = {{"b", "example.com", ""}};
    s.m.subject = std::move(subject);
    s.m.text = "Hello.\n";
    s.m.date = fixed_date();
    s.from = {{"", "a@example.com"}};
    s.to = {{"", "b@example.com"}};
    s.structure = "text/plain";
    return s;
}

}  // namespace

TEST_CASE("Python's email package reads what the writer produces") {
    if (::access(python, X_OK) != 0) {
        MESSAGE("skipped: " << python << " is not available");
        return;
    }
    const std::string script = MAILERS_SOURCE_DIR "/tests/integration/parse_eml.py";

    std::vector<scenario> scenarios;
    scenarios.push_back(kitchen_sink());
    {
        scenario s = kitchen_sink();
        s.label = "kitchen sink, 8bit";
        s.opts.allow_8bit = true;
        scenarios.push_back(std::move(s));
    }
    {
        scenario s = simple("html only",
                            "A plain ASCII subject that is long enough to be folded "
                            "onto a second line by the writer, and a third");
        s.m.text.clear();
        s.m.html = "<p>Only <b>HTML</b> — with UTF-8</p>";
        s.structure = "text/html";
        scenarios.push_back(std::move(s));
    }
    {
        scenario s = simple("ten megabytes", "Big 📦");
        s.m.text.clear();
        s.m.attachments = {
            {"big.bin", "application/octet-stream", pseudo_random_bytes(10 << 20, 42), ""}};
        s.structure = "multipart/mixed(application/octet-stream)";
        scenarios.push_back(std::move(s));
    }
    {
        scenario s = simple("text and html", "Re: 你好");
        s.m.html = "<p>Hello.</p>";
        s.structure = "multipart/alternative(text/plain,text/html)";
        scenarios.push_back(std::move(s));
    }
    const char* subjects[] = {
        "=?utf-8?q?not-an-encoded-word?=",
        "Tab\tseparated\tsubject",
        "trailing spaces  ",
        "a  double  spaced  subject",
        "😀",
        "é",
        "Ωmega and ASCII mixed, with punctuation: (a) [b] <c> \"d\"",
        "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c",  // 你好世界
    };
    for (const char* subject : subjects) scenarios.push_back(simple("subject", subject));
    scenarios.push_back(simple("long word subject", std::string(2000, 'w')));

    temp_dir dir;
    std::string cmd = std::string(python) + " -I " + script;
    std::vector<std::string> rendered;
    for (std::size_t i = 0; i < scenarios.size(); ++i) {
        auto r = mailers::render_message(scenarios[i].m, scenarios[i].opts);
        REQUIRE_MESSAGE(r.has_value(), scenarios[i].label << ": " << r.error().message());
        const auto file = dir.path / ("m" + std::to_string(i) + ".eml");
        std::ofstream(file, std::ios::binary)
            .write(r->data(), static_cast<std::streamsize>(r->size()));
        cmd += " " + file.string();
        rendered.push_back(std::move(*r));
    }
    const std::string json = run_command(cmd);

    simdjson::dom::parser parser;
    simdjson::dom::array results;
    REQUIRE_MESSAGE(parser.parse(json).get_array().get(results) == simdjson::SUCCESS, json);
    REQUIRE(results.size() == scenarios.size());

    std::size_t i = 0;
    for (simdjson::dom::element got : results) {
        const scenario& s = scenarios[i];
        const message& m = s.m;
        CAPTURE(s.label);
        CAPTURE(m.subject);

        simdjson::dom::array defects;
        REQUIRE(got["defects"].get_array().get(defects) == simdjson::SUCCESS);
        for (simdjson::dom::element d : defects) {
            std::string_view text;
            REQUIRE(d.get_string().get(text) == simdjson::SUCCESS);
            // The name= fallback for non-ASCII filenames is RFC 2047 inside a
            // quoted string: what Thunderbird, Gmail and Outlook send and old
            // readers understand, though RFC 2047 section 5 does not allow
            // it. Python decodes it and notes these two defects; the
            // authoritative RFC 2231 filename* is checked below.
            const bool fallback =
                text.starts_with("Content-Type: ") &&
                (text.find("encoded word inside quoted string") != std::string_view::npos ||
                 text.find("missing trailing whitespace after encoded-word") !=
                     std::string_view::npos);
            if (!fallback) FAIL_CHECK("defect: " << text);
        }

        if (m.subject.empty()) {
            CHECK(got["subject"].is_null());
        } else {
            CHECK(str(got, "subject") == m.subject);
        }
        check_addresses(got, "from", s.from);
        check_addresses(got, "to", s.to);
        check_addresses(got, "cc", s.cc);
        check_addresses(got, "reply_to", s.reply_to);
        bool bcc_present = true;
        REQUIRE(got["bcc_present"].get_bool().get(bcc_present) == simdjson::SUCCESS);
        CHECK_FALSE(bcc_present);
        for (const address& b : m.bcc) CHECK(rendered[i].find(b.local) == std::string::npos);
        std::int64_t date = 0;
        REQUIRE(got["date"].get_int64().get(date) == simdjson::SUCCESS);
        CHECK(date == 1795821625);
        if (!m.message_id.empty()) CHECK(str(got, "message_id") == "<" + m.message_id + ">");
        if (!m.in_reply_to.empty()) CHECK(str(got, "in_reply_to") == "<" + m.in_reply_to + ">");
        if (!m.references.empty()) CHECK(str(got, "references") == ids(m.references));
        if (m.unsubscribe) {
            CHECK(str(got, "list_unsubscribe") ==
                  "<" + m.unsubscribe->url + ">, <mailto:" + m.unsubscribe->mailto + ">");
            CHECK(str(got, "list_unsubscribe_post") == "List-Unsubscribe=One-Click");
        }
        simdjson::dom::array headers;
        REQUIRE(got["headers"].get_array().get(headers) == simdjson::SUCCESS);
        for (const auto& extra : m.headers) {
            bool found = false;
            for (simdjson::dom::array h : headers) {
                std::string_view name, value;
                REQUIRE(h.at(0).get_string().get(name) == simdjson::SUCCESS);
                REQUIRE(h.at(1).get_string().get(value) == simdjson::SUCCESS);
                if (name == extra.name) {
                    found = true;
                    CHECK(value == extra.value);
                }
            }
            CHECK_MESSAGE(found, extra.name);
        }
        CHECK(str(got, "structure") == s.structure);

        // A single-part body may gain one final line break; nothing else changes.
        const auto check_body = [&](const char* key, const std::string& sent) {
            CAPTURE(key);
            simdjson::dom::element e;
            REQUIRE(got[key].get(e) == simdjson::SUCCESS);
            if (sent.empty()) {
                CHECK(e.is_null());
                return;
            }
            const auto body = opt_string(e);
            REQUIRE(body.has_value());
            const std::string want = lf_only(sent);
            CHECK((*body == want || *body == want + "\n"));
        };
        check_body("text", m.text);
        check_body("html", m.html);

        simdjson::dom::array atts;
        REQUIRE(got["attachments"].get_array().get(atts) == simdjson::SUCCESS);
        REQUIRE(atts.size() == m.attachments.size());
        // Python walks the tree depth-first: inline parts inside multipart/related come first.
        std::vector<const attachment*> order;
        for (const attachment& a : m.attachments)
            if (!a.content_id.empty() && !m.html.empty()) order.push_back(&a);
        for (const attachment& a : m.attachments)
            if (a.content_id.empty() || m.html.empty()) order.push_back(&a);
        std::size_t k = 0;
        for (simdjson::dom::element a : atts) {
            const attachment& want = *order[k++];
            CAPTURE(want.filename);
            simdjson::dom::element fn;
            REQUIRE(a["filename"].get(fn) == simdjson::SUCCESS);
            if (want.filename.empty())
                CHECK(fn.is_null());
            else
                CHECK(opt_string(fn) == want.filename);
            std::string type = want.content_type.substr(0, want.content_type.find(';'));
            CHECK(str(a, "content_type") == type);
            CHECK(str(a, "disposition") == (want.content_id.empty() ? "attachment" : "inline"));
            if (!want.content_id.empty())
                CHECK(str(a, "content_id") == "<" + want.content_id + ">");
            std::uint64_t size = 0;
            REQUIRE(a["size"].get_uint64().get(size) == simdjson::SUCCESS);
            CHECK(size == want.data.size());
            CHECK(str(a, "sha256") == sha256_hex(want.data));
        }
        ++i;
    }
}
