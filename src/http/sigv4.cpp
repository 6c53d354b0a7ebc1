#include "http/sigv4.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <stdexcept>

#include "mime/text.hpp"

namespace mailers::sigv4 {
namespace {

constexpr char hex_lower[] = "0123456789abcdef";
constexpr char hex_upper[] = "0123456789ABCDEF";

// OpenSSL 3 looks algorithms up by name on every implicit use
// (EVP_sha256(), HMAC()); fetching once and reusing one context per thread
// keeps a signature in the low microseconds.
struct md_deleter {
    void operator()(EVP_MD* p) const { EVP_MD_free(p); }
    void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
    void operator()(EVP_MAC* p) const { EVP_MAC_free(p); }
    void operator()(EVP_MAC_CTX* p) const { EVP_MAC_CTX_free(p); }
};

[[noreturn]] void openssl_failure(const char* what) {
    throw std::runtime_error(std::string{"sigv4: OpenSSL "} + what + " failed");
}

const EVP_MD* sha256_md() {
    static const std::unique_ptr<EVP_MD, md_deleter> md{EVP_MD_fetch(nullptr, "SHA256", nullptr)};
    if (!md) openssl_failure("SHA256 fetch");
    return md.get();
}

EVP_MD_CTX* digest_ctx() {
    thread_local const std::unique_ptr<EVP_MD_CTX, md_deleter> ctx{EVP_MD_CTX_new()};
    if (!ctx) openssl_failure("EVP_MD_CTX_new");
    return ctx.get();
}

// An HMAC context with its digest already set; EVP_MAC_init with a new key
// and no parameters keeps the digest.
EVP_MAC_CTX* hmac_ctx() {
    static const std::unique_ptr<EVP_MAC, md_deleter> mac{EVP_MAC_fetch(nullptr, "HMAC", nullptr)};
    if (!mac) openssl_failure("HMAC fetch");
    thread_local const std::unique_ptr<EVP_MAC_CTX, md_deleter> ctx = [] {
        std::unique_ptr<EVP_MAC_CTX, md_deleter> c{EVP_MAC_CTX_new(mac.get())};
        if (!c) openssl_failure("EVP_MAC_CTX_new");
        char digest[] = "SHA256";
        const OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
            OSSL_PARAM_construct_end()};
        if (EVP_MAC_CTX_set_params(c.get(), params) != 1) openssl_failure("HMAC digest");
        return c;
    }();
    return ctx.get();
}

using digest_bytes = std::array<unsigned char, 32>;

digest_bytes sha256(std::string_view data) {
    digest_bytes out{};
    auto* ctx = digest_ctx();
    unsigned int len = 0;
    if (EVP_DigestInit_ex(ctx, sha256_md(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx, data.data(), data.size()) != 1 ||
        EVP_DigestFinal_ex(ctx, out.data(), &len) != 1 || len != out.size())
        openssl_failure("SHA-256");
    return out;
}

digest_bytes hmac(std::span<const unsigned char> key, std::string_view data) {
    digest_bytes out{};
    auto* ctx = hmac_ctx();
    std::size_t len = 0;
    if (EVP_MAC_init(ctx, key.data(), key.size(), nullptr) != 1 ||
        EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) !=
            1 ||
        EVP_MAC_final(ctx, out.data(), &len, out.size()) != 1 || len != out.size())
        openssl_failure("HMAC-SHA256");
    return out;
}

std::string to_hex(std::span<const unsigned char> bytes) {
    std::string out(bytes.size() * 2, '\0');
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        out[2 * i] = hex_lower[bytes[i] >> 4];
        out[2 * i + 1] = hex_lower[bytes[i] & 0xf];
    }
    return out;
}

bool is_unreserved(char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_' || c == '~';
}

bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

std::string to_lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

// Appends `value` trimmed, with each run of whitespace inside it reduced to
// one space (quoted strings included: AWS makes no exception for them).
void append_canonical_value(std::string& out, std::string_view value) {
    bool pending_space = false;
    bool any = false;
    for (char c : value) {
        if (is_space(c)) {
            pending_space = any;
            continue;
        }
        if (pending_space) out.push_back(' ');
        pending_space = false;
        any = true;
        out.push_back(c);
    }
}

bool is_amz_date(std::string_view s) {
    if (s.size() != 16 || s[8] != 'T' || s[15] != 'Z') return false;
    for (std::size_t i = 0; i < 15; ++i)
        if (i != 8 && (s[i] < '0' || s[i] > '9')) return false;
    return true;
}

error_code invalid(diagnostics* diag, const char* message) {
    if (diag) {
        diag->clear();
        diag->message = message;
    }
    return make_error_code(errc::invalid_argument);
}

}  // namespace

std::string sha256_hex(std::string_view data) {
    return to_hex(sha256(data));
}

void uri_encode(std::string& out, std::string_view s, bool keep_slash) {
    for (char c : s) {
        if (is_unreserved(c) || (keep_slash && c == '/')) {
            out.push_back(c);
        } else {
            const auto b = static_cast<unsigned char>(c);
            out.push_back('%');
            out.push_back(hex_upper[b >> 4]);
            out.push_back(hex_upper[b & 0xf]);
        }
    }
}

std::string canonical_uri(std::string_view path, bool escape_path) {
    if (path.empty()) return "/";
    if (!escape_path) return std::string{path};

    // Remove empty and "." segments, let ".." drop the segment before it
    // (never above the root), and keep a trailing slash only when something
    // is left before it.
    std::vector<std::string_view> segments;
    std::size_t start = 0;
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        const auto seg = path.substr(start, end - start);
        if (seg == "..") {
            if (!segments.empty()) segments.pop_back();
        } else if (!seg.empty() && seg != ".") {
            segments.push_back(seg);
        }
        start = end + 1;
    }
    std::string out;
    out.reserve(path.size() + 8);
    if (path.front() == '/') out.push_back('/');
    for (std::size_t i = 0; i < segments.size(); ++i) {
        if (i) out.push_back('/');
        uri_encode(out, segments[i], false);
    }
    if (!segments.empty() && path.back() == '/') out.push_back('/');
    if (out.empty()) out.push_back('/');
    return out;
}

std::string canonical_query(std::span<const query_param> query) {
    std::vector<std::pair<std::string, std::string>> encoded;
    encoded.reserve(query.size());
    for (const auto& p : query) {
        std::pair<std::string, std::string> e;
        uri_encode(e.first, p.key, false);
        uri_encode(e.second, p.value, false);
        encoded.push_back(std::move(e));
    }
    std::sort(encoded.begin(), encoded.end());
    std::string out;
    for (const auto& [k, v] : encoded) {
        if (!out.empty()) out.push_back('&');
        out += k;
        out.push_back('=');
        out += v;
    }
    return out;
}

void canonical_headers(std::span<const header> headers, std::string& canonical,
                       std::string& signed_names) {
    std::vector<std::pair<std::string, std::size_t>> names;
    names.reserve(headers.size());
    for (std::size_t i = 0; i < headers.size(); ++i)
        names.emplace_back(to_lower(headers[i].name), i);
    // Stable, so that values of a repeated header keep the order given.
    std::stable_sort(names.begin(), names.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (std::size_t i = 0; i < names.size(); ++i) {
        const bool same_as_previous = i > 0 && names[i].first == names[i - 1].first;
        if (same_as_previous) {
            canonical.push_back(',');
        } else {
            if (i > 0) {
                canonical.push_back('\n');
                signed_names.push_back(';');
            }
            canonical += names[i].first;
            canonical.push_back(':');
            signed_names += names[i].first;
        }
        append_canonical_value(canonical, headers[names[i].second].value);
    }
    if (!names.empty()) canonical.push_back('\n');
}

namespace {

std::string canonical_request_impl(const request& req, bool escape_path,
                                   std::string& signed_names) {
    std::string out;
    out.reserve(256 + req.path.size() + 64 * req.headers.size());
    out += req.method;
    out.push_back('\n');
    out += canonical_uri(req.path, escape_path);
    out.push_back('\n');
    out += canonical_query(req.query);
    out.push_back('\n');
    canonical_headers(req.headers, out, signed_names);
    out.push_back('\n');
    out += signed_names;
    out.push_back('\n');
    out += req.payload_hash;
    return out;
}

}  // namespace

std::string canonical_request(const request& req, bool escape_path) {
    std::string signed_names;
    return canonical_request_impl(req, escape_path, signed_names);
}

std::string credential_scope(std::string_view date, std::string_view region,
                             std::string_view service) {
    std::string out;
    out.reserve(date.size() + region.size() + service.size() + 16);
    out += date;
    out.push_back('/');
    out += region;
    out.push_back('/');
    out += service;
    out += "/aws4_request";
    return out;
}

std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request) {
    std::string out;
    out.reserve(algorithm.size() + amz_date.size() + scope.size() + 68);
    out += algorithm;
    out.push_back('\n');
    out += amz_date;
    out.push_back('\n');
    out += scope;
    out.push_back('\n');
    out += sha256_hex(canonical_request);
    return out;
}

signing_key_bytes derive_signing_key(std::string_view secret_access_key, std::string_view date,
                                     std::string_view region, std::string_view service) {
    std::string k_secret = "AWS4";
    k_secret += secret_access_key;
    const auto k_date =
        hmac({reinterpret_cast<const unsigned char*>(k_secret.data()), k_secret.size()}, date);
    // Overwrite the copy of the secret rather than leave it in freed memory.
    std::fill(k_secret.begin(), k_secret.end(), '\0');
    const auto k_region = hmac(k_date, region);
    const auto k_service = hmac(k_region, service);
    return hmac(k_service, "aws4_request");
}

std::string signature(const signing_key_bytes& key, std::string_view string_to_sign) {
    return to_hex(hmac(key, string_to_sign));
}

boost::system::result<signed_request> sign(const request& req, const params& p,
                                           const signing_key_bytes* key, diagnostics* diag) {
    if (!is_amz_date(p.amz_date))
        return invalid(diag, "SigV4 date is not in the form YYYYMMDDTHHMMSSZ");
    if (p.access_key_id.empty() || p.secret_access_key.empty())
        return invalid(diag, "SigV4 access key id or secret access key is empty");
    if (p.region.empty() || p.service.empty())
        return invalid(diag, "SigV4 region or service is empty");
    if (req.payload_hash.empty()) return invalid(diag, "SigV4 payload hash is empty");

    signed_request out;
    std::vector<header> headers(req.headers.begin(), req.headers.end());
    bool has_host = false, has_date = false, has_token = false;
    for (const auto& h : req.headers) {
        if (mime::iequals(h.name, "host")) has_host = true;
        if (mime::iequals(h.name, "x-amz-date")) {
            // The date signed in the string to sign must be the one sent.
            if (h.value != p.amz_date)
                return invalid(diag, "SigV4 X-Amz-Date header differs from the signing date");
            has_date = true;
        }
        if (mime::iequals(h.name, "x-amz-security-token")) has_token = true;
    }
    if (!has_host) return invalid(diag, "SigV4 request has no Host header");
    if (!has_date) {
        headers.push_back({"x-amz-date", p.amz_date});
        out.extra_headers.emplace_back("X-Amz-Date", p.amz_date);
    }
    if (!p.session_token.empty() && !has_token) {
        if (p.sign_session_token) headers.push_back({"x-amz-security-token", p.session_token});
        out.extra_headers.emplace_back("X-Amz-Security-Token", p.session_token);
    }

    request r = req;
    r.headers = headers;
    out.canonical_request = canonical_request_impl(r, p.escape_path, out.signed_headers);
    const auto date = p.amz_date.substr(0, 8);
    const auto scope = credential_scope(date, p.region, p.service);
    out.string_to_sign = string_to_sign(p.amz_date, scope, out.canonical_request);
    out.signature =
        key ? signature(*key, out.string_to_sign)
            : signature(derive_signing_key(p.secret_access_key, date, p.region, p.service),
                        out.string_to_sign);

    out.authorization.reserve(128 + out.signed_headers.size());
    out.authorization += algorithm;
    out.authorization += " Credential=";
    out.authorization += p.access_key_id;
    out.authorization.push_back('/');
    out.authorization += scope;
    out.authorization += ", SignedHeaders=";
    out.authorization += out.signed_headers;
    out.authorization += ", Signature=";
    out.authorization += out.signature;
    return out;
}

std::string format_amz_date(std::chrono::system_clock::time_point t) {
    using namespace std::chrono;
    const auto day = floor<days>(t);
    const year_month_day ymd{day};
    const hh_mm_ss hms{floor<seconds>(t - day)};
    const int year = static_cast<int>(ymd.year());
    if (year < 0 || year > 9999) {
        // Outside what four digits hold; no signing clock gets here.
        char buf[48];
        std::snprintf(
            buf, sizeof buf, "%04d%02u%02uT%02d%02d%02dZ", year, static_cast<unsigned>(ymd.month()),
            static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
            static_cast<int>(hms.minutes().count()), static_cast<int>(hms.seconds().count()));
        return buf;
    }
    // Written by hand: it runs once per signed request, and snprintf's
    // format parsing cost more than the rest of the date handling.
    std::string out(16, 'T');
    const auto two = [&](std::size_t at, unsigned v) {
        out[at] = static_cast<char>('0' + v / 10);
        out[at + 1] = static_cast<char>('0' + v % 10);
    };
    two(0, static_cast<unsigned>(year) / 100);
    two(2, static_cast<unsigned>(year) % 100);
    two(4, static_cast<unsigned>(ymd.month()));
    two(6, static_cast<unsigned>(ymd.day()));
    two(9, static_cast<unsigned>(hms.hours().count()));
    two(11, static_cast<unsigned>(hms.minutes().count()));
    two(13, static_cast<unsigned>(hms.seconds().count()));
    out[15] = 'Z';
    return out;
}

}  // namespace mailers::sigv4
