// Cross-checks mailers' SigV4 signer against @smithy/signature-v4, the signer
// of the AWS SDK for JavaScript, on generated requests that stress the
// canonicalisation rules (dot segments, double encoding, repeated query keys,
// header whitespace, UTF-8, session tokens).
//
// Needs `node` and `npm ci` in tests/tools; skips with a message otherwise.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "http/sigv4.hpp"
#include "json/writer.hpp"

namespace sigv4 = mailers::sigv4;
namespace fs = std::filesystem;

namespace {

constexpr int request_count = 200;

struct generated {
    std::string method, path, body, region, service, access_key, secret, token;
    std::vector<std::pair<std::string, std::vector<std::string>>> query;
    std::vector<std::pair<std::string, std::string>> headers;
    std::int64_t epoch = 0;
};

template <class T, std::size_t N>
const T& pick(std::mt19937& rng, const T (&pool)[N]) {
    return pool[std::uniform_int_distribution<std::size_t>{0, N - 1}(rng)];
}

int below(std::mt19937& rng, int n) {
    return std::uniform_int_distribution<int>{0, n - 1}(rng);
}

std::string random_case(std::mt19937& rng, std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'a' && c <= 'z' && below(rng, 2)) c = static_cast<char>(c - 'a' + 'A');
    return out;
}

generated generate(std::mt19937& rng) {
    static const std::string_view segments[] = {"",
                                                ".",
                                                "..",
                                                "a",
                                                "b c",
                                                "x%20y",
                                                "\xc3\xbc",
                                                "v2",
                                                "\xe1\x88\xb4",
                                                "-._~",
                                                "email",
                                                "!$&'()*+,;=:@",
                                                "a+b",
                                                "outbound-emails",
                                                "%2F",
                                                "UPPER",
                                                "\xf0\x9f\x98\x80"};
    static const std::string_view words[] = {
        "",  "a",    "Value", "two words", "x=y&z", "a+b/c", "%41",  "\xc3\xa9t\xc3\xa9",
        "~", "-._~", "*",     "1",         "10",    "2",     "'!()", "\xe1\x88\xb4"};
    static const std::string_view header_names[] = {
        "content-type", "x-amz-target", "x-amz-meta-owner", "accept", "content-encoding",
        "x-custom",     "x-amz-meta-b", "content-md5",      "x-a"};
    static const std::string_view header_values[] = {
        "application/json", "  padded  ", "a   b\t\tc", "\"quoted   value\"",       "", "\tx\t",
        "UTF-8 \xc3\xa9",   "v1, v2",     "  ",         "text/plain; charset=utf-8"};
    static const std::string_view methods[] = {"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH"};
    static const std::string_view regions[] = {"us-east-1", "eu-west-1", "ap-southeast-2",
                                               "us-gov-west-1"};
    static const std::string_view services[] = {"ses", "email", "iam", "sts", "execute-api"};

    generated g;
    g.method = pick(rng, methods);
    g.path = "/";
    const int nseg = below(rng, 6);
    for (int i = 0; i < nseg; ++i) {
        if (i) g.path += "/";
        g.path += pick(rng, segments);
    }
    if (nseg > 0 && below(rng, 3) == 0) g.path += "/";

    const int nkeys = below(rng, 5);
    for (int i = 0; i < nkeys; ++i) {
        std::string key{pick(rng, words)};
        if (key.empty()) key = "k";
        key += std::to_string(i);  // keys are unique in a JavaScript object
        std::vector<std::string> values;
        const int nvalues = 1 + below(rng, 3);
        for (int j = 0; j < nvalues; ++j) values.emplace_back(pick(rng, words));
        g.query.emplace_back(std::move(key), std::move(values));
    }

    g.headers.emplace_back("host", "email." + std::string{pick(rng, regions)} + ".amazonaws.com");
    std::vector<std::string_view> names(std::begin(header_names), std::end(header_names));
    std::shuffle(names.begin(), names.end(), rng);
    const int nheaders = below(rng, 6);
    for (int i = 0; i < nheaders; ++i)
        g.headers.emplace_back(random_case(rng, names[i]), pick(rng, header_values));
    if (below(rng, 4) == 0)
        g.headers.emplace_back(random_case(rng, "x-amz-content-sha256"), sigv4::unsigned_payload);

    const int body_kind = below(rng, 3);
    if (body_kind == 1) g.body = R"({"Content":{"Simple":{"Subject":{"Data":"h\u00e9"}}}})";
    if (body_kind == 2)
        for (int i = below(rng, 300); i > 0; --i)
            g.body.push_back(static_cast<char>(' ' + below(rng, 95)));

    g.region = pick(rng, regions);
    g.service = pick(rng, services);
    g.access_key = "AKID" + std::to_string(rng());
    g.secret = "secret/" + std::to_string(rng()) + "+K";
    if (below(rng, 2)) g.token = "FQoG//" + std::to_string(rng()) + "==";
    g.epoch = 946684800 + static_cast<std::int64_t>(rng() % (2145916800 - 946684800));
    return g;
}

void write_jsonl(std::string& out, const generated& g) {
    mailers::json::writer w{out};
    w.begin_object()
        .member("method", g.method)
        .member("path", g.path)
        .member("body", g.body)
        .member("region", g.region)
        .member("service", g.service)
        .member("epoch", g.epoch)
        .member("access_key", g.access_key)
        .member("secret", g.secret)
        .member("token", g.token);
    w.key("query").begin_object();
    for (const auto& [k, values] : g.query) {
        w.key(k).begin_array();
        for (const auto& v : values) w.value(v);
        w.end_array();
    }
    w.end_object().key("headers").begin_object();
    for (const auto& [n, v] : g.headers) w.member(n, v);
    w.end_object().end_object();
    out.push_back('\n');
}

sigv4::signed_request sign_here(const generated& g) {
    std::vector<sigv4::query_param> query;
    for (const auto& [k, values] : g.query)
        for (const auto& v : values) query.push_back({k, v});
    std::vector<sigv4::header> headers;
    std::string payload_hash = sigv4::sha256_hex(g.body);
    for (const auto& [n, v] : g.headers) {
        headers.push_back({n, v});
        // Like the AWS SDKs, a given x-amz-content-sha256 is the payload hash.
        if (n.size() == 20 && std::equal(n.begin(), n.end(), "x-amz-content-sha256",
                                         [](char a, char b) { return (a | 0x20) == b; }))
            payload_hash = v;
    }
    sigv4::request req;
    req.method = g.method;
    req.path = g.path;
    req.query = query;
    req.headers = headers;
    req.payload_hash = payload_hash;
    const auto amz_date =
        sigv4::format_amz_date(std::chrono::sys_seconds{std::chrono::seconds{g.epoch}});
    sigv4::params p;
    p.access_key_id = g.access_key;
    p.secret_access_key = g.secret;
    p.session_token = g.token;
    p.region = g.region;
    p.service = g.service;
    p.amz_date = amz_date;
    auto r = sigv4::sign(req, p);
    REQUIRE(r.has_value());
    return std::move(*r);
}

// Runs `command`, returning its standard output and exit status.
std::pair<std::string, int> run(const std::string& command) {
    std::string out;
    FILE* f = ::popen(command.c_str(), "r");
    if (f == nullptr) return {"", -1};
    char buf[4096];
    for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) out.append(buf, n);
    const int status = ::pclose(f);
    return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

}  // namespace

TEST_CASE("SigV4 signatures agree with @smithy/signature-v4") {
    if (run("node --version 2>/dev/null").second != 0) {
        MESSAGE("skipped: node is not installed");
        return;
    }
    const fs::path script = fs::path{MAILERS_SOURCE_DIR} / "tests" / "tools" / "sigv4_smithy.cjs";
    REQUIRE(fs::exists(script));

    std::mt19937 rng{20150830};
    std::vector<generated> requests;
    std::string input;
    for (int i = 0; i < request_count; ++i) {
        requests.push_back(generate(rng));
        write_jsonl(input, requests.back());
    }
    const fs::path input_file = fs::temp_directory_path() /
                                ("mailers_sigv4_smithy_" + std::to_string(::getpid()) + ".jsonl");
    {
        std::ofstream f{input_file, std::ios::binary};
        f << input;
    }
    auto [output, status] =
        run("node '" + script.string() + "' < '" + input_file.string() + "' 2>/dev/null");
    fs::remove(input_file);
    if (status == 77) {
        MESSAGE("skipped: @smithy/signature-v4 is not installed (npm ci in tests/tools)");
        return;
    }
    REQUIRE(status == 0);

    std::vector<std::string> theirs;
    for (std::size_t start = 0; start < output.size();) {
        auto end = output.find('\n', start);
        if (end == std::string::npos) end = output.size();
        theirs.push_back(output.substr(start, end - start));
        start = end + 1;
    }
    REQUIRE(theirs.size() == requests.size());

    int agreed = 0;
    for (std::size_t i = 0; i < requests.size(); ++i) {
        const auto ours = sign_here(requests[i]);
        CAPTURE(i);
        CAPTURE(ours.canonical_request);
        CHECK(ours.authorization == theirs[i]);
        agreed += ours.authorization == theirs[i];
    }
    CHECK(agreed == request_count);
}
