// One-click unsubscribe tokens:
//   "u1." base64url(payload) "." base64url(first 16 bytes of HMAC-SHA256)
// where payload is "workspace\nrecipient\nsend id\nexpiry (unix seconds)"
// and the MAC covers "mailers-unsubscribe-v1\n" + payload, so a MAC made
// for any other purpose under the same key never passes as one.
#include <openssl/crypto.h>

#include <charconv>
#include <mailers/error.hpp>
#include <mailers/unsubscribe.hpp>
#include <string>
#include <vector>

#include "webhooks/crypto.hpp"

namespace mailers {

namespace {

constexpr std::string_view prefix = "u1.";
constexpr std::string_view mac_context = "mailers-unsubscribe-v1\n";
constexpr std::size_t mac_bytes = 16;
// A token is read from a URL anyone can send: its size is bounded before
// anything is decoded.
constexpr std::size_t max_token_size = 2048;

std::string to_base64url(std::string_view bytes) {
    auto s = webhooks::base64_encode(bytes);
    for (auto& c : s) {
        if (c == '+') c = '-';
        if (c == '/') c = '_';
    }
    while (!s.empty() && s.back() == '=') s.pop_back();
    return s;
}

std::optional<std::string> from_base64url(std::string_view s) {
    std::string std64(s);
    for (auto& c : std64) {
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '+' || c == '/' || c == '=')
            return std::nullopt;
    }
    return webhooks::base64_decode(std64);
}

std::string mac_of(std::string_view payload, std::string_view secret) {
    auto d = webhooks::hmac_sha256(secret, std::string(mac_context) + std::string(payload));
    return std::string(webhooks::as_view(d).substr(0, mac_bytes));
}

std::vector<std::string_view> split_lines(std::string_view s) {
    std::vector<std::string_view> out;
    std::size_t at = 0;
    for (;;) {
        auto nl = s.find('\n', at);
        out.push_back(s.substr(at, nl == std::string_view::npos ? nl : nl - at));
        if (nl == std::string_view::npos) break;
        at = nl + 1;
    }
    return out;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
    if (s.empty() || s.size() > 20) return false;
    auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

}  // namespace

std::string_view to_string(unsubscribe_token_status s) noexcept {
    switch (s) {
        case unsubscribe_token_status::valid:
            return "valid";
        case unsubscribe_token_status::malformed:
            return "malformed";
        case unsubscribe_token_status::forged:
            return "forged";
        case unsubscribe_token_status::expired:
            return "expired";
    }
    return "unknown";
}

std::string make_unsubscribe_token(const unsubscribe_claims& c, std::string_view secret) {
    if (c.workspace.find('\n') != std::string::npos || c.recipient.find('\n') != std::string::npos)
        throw exception(make_error_code(errc::invalid_argument),
                        "an unsubscribe token's workspace and recipient hold no newline");
    const auto seconds =
        std::chrono::duration_cast<std::chrono::seconds>(c.expires_at.time_since_epoch()).count();
    std::string payload = c.workspace + "\n" + c.recipient + "\n" + std::to_string(c.send_id) +
                          "\n" + std::to_string(seconds);
    return std::string(prefix) + to_base64url(payload) + "." +
           to_base64url(mac_of(payload, secret));
}

unsubscribe_token_check check_unsubscribe_token(std::string_view token, std::string_view secret,
                                                time_point now) {
    unsubscribe_token_check out;
    if (token.size() > max_token_size || !token.starts_with(prefix)) return out;
    token.remove_prefix(prefix.size());
    auto dot = token.find('.');
    if (dot == std::string_view::npos) return out;
    auto payload = from_base64url(token.substr(0, dot));
    auto mac = from_base64url(token.substr(dot + 1));
    if (!payload || !mac || mac->size() != mac_bytes) return out;
    auto fields = split_lines(*payload);
    std::uint64_t send_id = 0;
    std::int64_t expiry = 0;
    // Up to the end of year 9999, which any time_point can hold.
    if (fields.size() != 4 || !parse_number(fields[2], send_id) || !parse_number(fields[3], expiry) ||
        expiry < 0 || expiry > 253402300799)
        return out;
    const auto expected = mac_of(*payload, secret);
    if (CRYPTO_memcmp(expected.data(), mac->data(), mac_bytes) != 0) {
        out.status = unsubscribe_token_status::forged;
        return out;
    }
    out.claims.workspace = std::string(fields[0]);
    out.claims.recipient = std::string(fields[1]);
    out.claims.send_id = send_id;
    out.claims.expires_at = time_point(std::chrono::duration_cast<duration>(std::chrono::seconds(expiry)));
    out.status = now > out.claims.expires_at ? unsubscribe_token_status::expired
                                             : unsubscribe_token_status::valid;
    return out;
}

std::string unsubscribe_link(std::string_view url, std::string_view token) {
    std::string out(url);
    out += url.find('?') == std::string_view::npos ? '?' : '&';
    out += "t=";
    out += token;
    return out;
}

}  // namespace mailers
