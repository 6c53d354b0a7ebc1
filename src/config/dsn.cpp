#include <array>
#include <cstdint>
#include <cstdlib>
#include <mailers/dsn.hpp>
#include <ostream>

#include "config/secret_ref.hpp"
#include "mime/text.hpp"

namespace mailers {
namespace {

using detail::resolve_value;

// Composites nest by recursion; the limit keeps hostile input (the fuzzer's
// "failover(failover(failover(...") from exhausting the stack.
constexpr int max_nesting = 16;

constexpr std::array<std::string_view, 16> known_schemes = {
    "smtp",         "smtps",        "ses+api",       "ses+smtp",     "ses+https",     "mailgun+api",
    "mailgun+smtp", "sendgrid+api", "sendgrid+smtp", "postmark+api", "postmark+smtp", "gmail+api",
    "graph+api",    "null",         "file",          "capture",
};

constexpr std::array<std::string_view, 9> secret_option_names = {
    "key",         "secret",  "token",        "password",      "client_secret",
    "private_key", "api_key", "access_token", "refresh_token",
};

bool is_alpha(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(char c) {
    return c >= '0' && c <= '9';
}
bool is_alnum(char c) {
    return is_alpha(c) || is_digit(c);
}
bool is_hex(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_control(unsigned char c) {
    return c < 0x20 || c == 0x7f;
}
bool is_unreserved(char c) {
    return is_alnum(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

char to_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = to_lower(c);
    return out;
}

int hex_value(char c) {
    if (is_digit(c)) return c - '0';
    return to_lower(c) - 'a' + 10;
}

enum class decode_status { ok, bad_escape, control };

// RFC 3986 percent-decoding. '+' is left alone: it means space only in HTML
// forms, and keeping it preserves base64 secrets. Control characters, raw or
// encoded, are refused so that a DSN cannot smuggle CR/LF into a protocol.
decode_status percent_decode(std::string_view in, std::string& out) {
    out.clear();
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) {
        char c = in[i];
        if (c == '%') {
            if (i + 2 >= in.size() || !is_hex(in[i + 1]) || !is_hex(in[i + 2]))
                return decode_status::bad_escape;
            c = static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
            i += 2;
        }
        if (is_control(static_cast<unsigned char>(c))) return decode_status::control;
        out.push_back(c);
    }
    return decode_status::ok;
}

// `keep` lists the characters besides the unreserved ones written as is.
void percent_encode(std::string& out, std::string_view in, std::string_view keep) {
    static constexpr char hex[] = "0123456789ABCDEF";
    for (char c : in) {
        if (is_unreserved(c) || keep.find(c) != std::string_view::npos) {
            out.push_back(c);
        } else {
            const auto b = static_cast<unsigned char>(c);
            out.push_back('%');
            out.push_back(hex[b >> 4]);
            out.push_back(hex[b & 0xf]);
        }
    }
}

bool is_option_name(std::string_view s) {
    for (char c : s)
        if (!is_alnum(c) && c != '_' && c != '-' && c != '.' && c != '[' && c != ']') return false;
    return !s.empty();
}

bool is_host_char(char c) {
    return is_unreserved(c) || static_cast<unsigned char>(c) >= 0x80;  // U-labels of IDNs
}

// RFC 1035's limit on a whole domain name; an IP literal is shorter anyway.
constexpr std::size_t max_host_length = 255;

// U+0080..U+009F (C1 controls) and U+00A0 (no-break space) in UTF-8: the
// ASCII controls and spaces are refused for the whole DSN before this.
bool has_unicode_control_or_space(std::string_view host) {
    for (std::size_t i = 0; i + 1 < host.size(); ++i) {
        const auto lead = static_cast<unsigned char>(host[i]);
        const auto next = static_cast<unsigned char>(host[i + 1]);
        if (lead == 0xc2 && next >= 0x80 && next <= 0xa0) return true;
    }
    return false;
}

bool is_ipv6_literal(std::string_view s) {
    if (s.find(':') == std::string_view::npos) return false;
    for (char c : s)
        if (!is_hex(c) && c != ':' && c != '.') return false;
    return true;
}

// Where the user/password separator search starts: after a leading
// reference prefix, so `env:SMTP_USER:env:SMTP_PASS` splits after SMTP_USER.
std::size_t reference_prefix_length(std::string_view s) {
    if (s.starts_with("env:")) return 4;
    if (s.starts_with("file:")) return 5;
    return 0;
}

bool decode_field(std::string_view raw, std::string& out, std::string_view what,
                  std::string& error) {
    switch (percent_decode(raw, out)) {
        case decode_status::ok:
            return true;
        case decode_status::bad_escape:
            error =
                std::string{what} + " has a '%' not followed by two hex digits (write '%' as %25)";
            return false;
        case decode_status::control:
            error = std::string{what} + " contains a control character";
            return false;
    }
    return false;
}

std::optional<dsn> parse_one(std::string_view text, std::string& error) {
    if (text.empty()) {
        error = "DSN is empty";
        return std::nullopt;
    }
    for (char c : text) {
        const auto b = static_cast<unsigned char>(c);
        if (is_control(b) || c == ' ') {
            error = "DSN contains a space or control character";
            return std::nullopt;
        }
        if (c == '#') {
            error = "DSN contains '#'; write a '#' in a user name, password or option value as %23";
            return std::nullopt;
        }
    }

    dsn d;
    const auto sep = text.find("://");
    if (sep == std::string_view::npos || sep == 0) {
        error = "DSN scheme is missing (expected 'scheme://...')";
        return std::nullopt;
    }
    const auto scheme = text.substr(0, sep);
    bool scheme_ok = is_alpha(scheme.front());
    for (char c : scheme)
        scheme_ok = scheme_ok && (is_alnum(c) || c == '+' || c == '-' || c == '.');
    if (!scheme_ok) {
        // Not quoted: text before "://" that is not a scheme may be anything.
        error =
            "DSN scheme is invalid (letters, digits, '+', '-' and '.' only, starting with a "
            "letter)";
        return std::nullopt;
    }
    d.scheme = lower(scheme);
    if (const auto plus = d.scheme.find('+'); plus != std::string::npos) {
        d.transport = d.scheme.substr(0, plus);
        d.variant = d.scheme.substr(plus + 1);
        if (d.variant.empty()) {
            error = "DSN scheme '" + d.scheme + "' has an empty part after '+'";
            return std::nullopt;
        }
    } else {
        d.transport = d.scheme;
    }

    std::string_view rest = text.substr(sep + 3);
    std::string_view query;
    bool has_query = false;
    if (const auto q = rest.find('?'); q != std::string_view::npos) {
        query = rest.substr(q + 1);
        rest = rest.substr(0, q);
        has_query = true;
    }

    // `rest` is now authority + path. The userinfo ends at the last '@' so
    // that secrets may contain '/', '@' and ':' unencoded; a rest starting
    // with '/' has an empty authority (file:///path).
    std::string_view hostport = rest;
    std::string_view path;
    if (!rest.starts_with('/')) {
        if (const auto at = rest.rfind('@'); at != std::string_view::npos) {
            const auto userinfo = rest.substr(0, at);
            hostport = rest.substr(at + 1);
            const auto colon = userinfo.find(':', reference_prefix_length(userinfo));
            std::string value;
            if (!decode_field(userinfo.substr(0, colon), value, "DSN user", error))
                return std::nullopt;
            d.user = secret{std::move(value)};
            if (colon != std::string_view::npos) {
                if (!decode_field(userinfo.substr(colon + 1), value, "DSN password", error))
                    return std::nullopt;
                d.password = secret{std::move(value)};
            }
        }
    }
    if (const auto slash = hostport.find('/'); slash != std::string_view::npos) {
        path = hostport.substr(slash);
        hostport = hostport.substr(0, slash);
    }

    std::string_view host;
    std::optional<std::string_view> port_text;
    if (hostport.starts_with('[')) {
        const auto close = hostport.find(']');
        if (close == std::string_view::npos) {
            error = "DSN host has '[' without a closing ']'";
            return std::nullopt;
        }
        host = hostport.substr(1, close - 1);
        if (!is_ipv6_literal(host)) {
            error = "DSN host in brackets is not an IPv6 address";
            return std::nullopt;
        }
        const auto after = hostport.substr(close + 1);
        if (!after.empty()) {
            if (after.front() != ':') {
                error = "DSN host '[...]' must be followed by ':port', '/' or '?'";
                return std::nullopt;
            }
            port_text = after.substr(1);
        }
    } else {
        const auto colon = hostport.find(':');
        host = hostport.substr(0, colon);
        if (colon != std::string_view::npos) {
            port_text = hostport.substr(colon + 1);
            if (port_text->find(':') != std::string_view::npos) {
                error = "DSN host contains ':'; write an IPv6 address in brackets, [::1]";
                return std::nullopt;
            }
        }
        for (char c : host) {
            if (!is_host_char(c)) {
                error =
                    "DSN host contains a character other than letters, digits, '-', '.', "
                    "'_' and '~'";
                return std::nullopt;
            }
        }
    }
    if (host.size() > max_host_length) {
        error = "DSN host is longer than " + std::to_string(max_host_length) + " octets (RFC 1035)";
        return std::nullopt;
    }
    if (has_unicode_control_or_space(host)) {
        error = "DSN host contains a control character or a space";
        return std::nullopt;
    }
    if (host.empty() && d.scheme != "file") {
        error = "DSN host is missing";
        return std::nullopt;
    }
    d.host = lower(host);

    if (port_text) {
        if (port_text->empty()) {
            error = "DSN port is empty";
            return std::nullopt;
        }
        std::uint32_t port = 0;
        for (char c : *port_text) {
            if (!is_digit(c)) {
                // Not quoted: a password with an unencoded '?' or '#' lands here.
                error = "DSN port is not a number";
                return std::nullopt;
            }
            if (port <= 65535) port = port * 10 + static_cast<std::uint32_t>(c - '0');
        }
        if (port == 0 || port > 65535) {
            error = "DSN port '" + std::string{*port_text} + "' is out of range (1-65535)";
            return std::nullopt;
        }
        d.port = static_cast<std::uint16_t>(port);
    }

    if (!decode_field(path, d.path, "DSN path", error)) return std::nullopt;

    if (has_query) {
        std::size_t index = 0;
        while (!query.empty()) {
            const auto amp = query.find('&');
            const auto pair = query.substr(0, amp);
            query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
            if (pair.empty()) continue;  // "?a=1&" and "&&" are harmless
            ++index;
            const auto eq = pair.find('=');
            std::string name;
            if (!decode_field(pair.substr(0, eq), name,
                              "DSN option " + std::to_string(index) + " name", error))
                return std::nullopt;
            if (name.empty()) {
                error = "DSN option " + std::to_string(index) + " has an empty name";
                return std::nullopt;
            }
            if (!is_option_name(name)) {
                // Not quoted: a password with an unencoded '?' lands here.
                error = "DSN option " + std::to_string(index) +
                        " has a name with characters other than letters, digits, '_', '-', '.', "
                        "'[' and ']'";
                return std::nullopt;
            }
            if (eq == std::string_view::npos || eq + 1 == pair.size()) {
                error = "DSN option '" + name + "' has no value";
                return std::nullopt;
            }
            std::string value;
            if (!decode_field(pair.substr(eq + 1), value, "DSN option '" + name + "'", error))
                return std::nullopt;
            d.options.emplace_back(std::move(name), std::move(value));
        }
    }
    return d;
}

std::string_view kind_name(composite_dsn::kind k) {
    switch (k) {
        case composite_dsn::kind::failover:
            return "failover";
        case composite_dsn::kind::roundrobin:
            return "roundrobin";
        case composite_dsn::kind::single:
            break;
    }
    return "";
}

void skip_spaces(std::string_view text, std::size_t& pos) {
    while (pos < text.size() && is_space(text[pos])) ++pos;
}

std::optional<composite_dsn> parse_item(std::string_view text, std::size_t& pos, int depth,
                                        std::string& error) {
    skip_spaces(text, pos);
    const auto tail = text.substr(pos);
    composite_dsn item;
    std::size_t open = 0;
    if (mime::istarts_with(tail, "failover(")) {
        item.k = composite_dsn::kind::failover;
        open = 9;
    } else if (mime::istarts_with(tail, "roundrobin(")) {
        item.k = composite_dsn::kind::roundrobin;
        open = 11;
    }

    if (item.k == composite_dsn::kind::single) {
        auto end = pos;
        while (end < text.size() && !is_space(text[end])) ++end;
        auto token = text.substr(pos, end - pos);
        // Inside a group, trailing ')' close groups: "failover(a b))".
        if (depth > 0)
            while (token.ends_with(')')) token.remove_suffix(1);
        pos += token.size();
        auto d = parse_one(token, error);
        if (!d) return std::nullopt;
        item.single = std::move(*d);
        return item;
    }

    const auto name = kind_name(item.k);
    if (depth >= max_nesting) {
        error = "DSN groups are nested more than " + std::to_string(max_nesting) + " deep";
        return std::nullopt;
    }
    pos += open;
    for (;;) {
        skip_spaces(text, pos);
        if (pos >= text.size()) {
            error = "unbalanced parenthesis in " + std::string{name} + "(...)";
            return std::nullopt;
        }
        if (text[pos] == ')') {
            ++pos;
            break;
        }
        auto child = parse_item(text, pos, depth + 1, error);
        if (!child) {
            error += " (in item " + std::to_string(item.children.size() + 1) + " of " +
                     std::string{name} + "(...))";
            return std::nullopt;
        }
        item.children.push_back(std::move(*child));
    }
    if (item.children.empty()) {
        error = std::string{name} + "(...) needs at least one DSN";
        return std::nullopt;
    }
    return item;
}

error_code fail(diagnostics* diag, std::string message) {
    if (diag) {
        diag->clear();
        diag->message = std::move(message);
    }
    return make_error_code(errc::invalid_argument);
}

bool resolve_secret(secret& s, std::string_view what, std::string& error) {
    if (!s.is_reference()) return true;
    std::string value = s.reveal();
    if (!resolve_value(value, what, error)) return false;
    s = secret{std::move(value)};
    return true;
}

bool resolve_all(dsn& d, std::string& error) {
    if (d.secrets_resolved) return true;
    if (!resolve_secret(d.user, "DSN user", error)) return false;
    if (!resolve_secret(d.password, "DSN password", error)) return false;
    for (auto& [name, value] : d.options) {
        if (!is_secret_option(name)) continue;
        if (!resolve_value(value, "DSN option '" + name + "'", error)) return false;
    }
    d.secrets_resolved = true;
    return true;
}

bool resolve_all(composite_dsn& d, std::string& error) {
    if (d.k == composite_dsn::kind::single) return resolve_all(d.single, error);
    for (auto& child : d.children)
        if (!resolve_all(child, error)) return false;
    return true;
}

// References name a secret without holding it, so they are shown until
// they are resolved.
std::string_view shown(const std::string& value, bool is_secret, bool resolved) {
    if (!is_secret) return value;
    if (!resolved && (value.starts_with("env:") || value.starts_with("file:"))) return value;
    return "****";
}

}  // namespace

std::ostream& operator<<(std::ostream& os, const secret&) {
    return os << "****";
}

std::optional<std::string> dsn::option(std::string_view name) const {
    for (const auto& [k, v] : options)
        if (k == name) return v;
    return std::nullopt;
}

std::vector<std::string> dsn::options_named(std::string_view name) const {
    std::vector<std::string> out;
    for (const auto& [k, v] : options)
        if (k == name) out.push_back(v);
    return out;
}

std::string dsn::to_string() const {
    std::string out = scheme;
    out += "://";
    if (!user.empty() || !password.empty()) {
        out += shown(user.reveal(), !user.empty(), secrets_resolved);
        if (!password.empty()) {
            out += ':';
            out += shown(password.reveal(), true, secrets_resolved);
        }
        out += '@';
    }
    if (host.find(':') != std::string::npos) {
        out += '[';
        out += host;
        out += ']';
    } else {
        out += host;
    }
    if (port) {
        out += ':';
        out += std::to_string(*port);
    }
    percent_encode(out, path, "/:!$&'*+,;=");
    char sep = '?';
    for (const auto& [name, value] : options) {
        out += sep;
        sep = '&';
        percent_encode(out, name, "[]");
        out += '=';
        const auto v = shown(value, is_secret_option(name), secrets_resolved);
        if (v == "****")
            out += v;
        else
            percent_encode(out, v, "/:@!$'*+,;");
    }
    return out;
}

std::string composite_dsn::to_string() const {
    if (k == kind::single) return single.to_string();
    std::string out{kind_name(k)};
    out += '(';
    for (std::size_t i = 0; i < children.size(); ++i) {
        if (i) out += ' ';
        out += children[i].to_string();
    }
    out += ')';
    return out;
}

std::ostream& operator<<(std::ostream& os, const dsn& d) {
    return os << d.to_string();
}
std::ostream& operator<<(std::ostream& os, const composite_dsn& d) {
    return os << d.to_string();
}

boost::system::result<composite_dsn> parse_dsn(std::string_view text, diagnostics* diag) {
    std::string error;
    std::size_t pos = 0;
    skip_spaces(text, pos);
    if (pos == text.size()) return fail(diag, "DSN is empty");
    auto item = parse_item(text, pos, 0, error);
    if (!item) return fail(diag, std::move(error));
    skip_spaces(text, pos);
    if (pos != text.size()) {
        if (text[pos] == ')' && item->k != composite_dsn::kind::single)
            return fail(diag, "unbalanced parenthesis: unexpected ')' after " +
                                  std::string{kind_name(item->k)} + "(...)");
        return fail(diag,
                    "DSN is followed by more text; group several DSNs in failover(...) or "
                    "roundrobin(...)");
    }
    return std::move(*item);
}

boost::system::result<dsn> parse_single_dsn(std::string_view text, diagnostics* diag) {
    auto r = parse_dsn(text, diag);
    if (!r) return r.error();
    if (r->k != composite_dsn::kind::single)
        return fail(diag, std::string{kind_name(r->k)} + "(...) is not allowed here; give one DSN");
    return std::move(r->single);
}

boost::system::result<void> resolve_secrets(dsn& d, diagnostics* diag) {
    dsn copy = d;
    std::string error;
    if (!resolve_all(copy, error)) return fail(diag, std::move(error));
    d = std::move(copy);
    return {};
}

boost::system::result<void> resolve_secrets(composite_dsn& d, diagnostics* diag) {
    composite_dsn copy = d;
    std::string error;
    if (!resolve_all(copy, error)) return fail(diag, std::move(error));
    d = std::move(copy);
    return {};
}

bool is_secret_option(std::string_view name) noexcept {
    for (auto s : secret_option_names)
        if (mime::iequals(name, s)) return true;
    return false;
}

std::span<const std::string_view> known_dsn_schemes() noexcept {
    return known_schemes;
}

std::optional<std::chrono::milliseconds> parse_dsn_duration(std::string_view value) noexcept {
    std::size_t digits = 0;
    while (digits < value.size() && is_digit(value[digits])) ++digits;
    // Beyond nine digits a value is out of range in every unit (leading
    // zeros aside), and the bound keeps the arithmetic below from overflow.
    if (digits == 0 || digits > 9) return std::nullopt;
    std::int64_t n = 0;
    for (std::size_t i = 0; i < digits; ++i) n = n * 10 + (value[i] - '0');
    const std::string_view unit = value.substr(digits);
    std::int64_t ms = 0;
    if (unit.empty() || unit == "s")
        ms = n * 1000;
    else if (unit == "ms")
        ms = n;
    else if (unit == "m")
        ms = n * 60 * 1000;
    else
        return std::nullopt;
    if (ms <= 0 || ms > max_dsn_duration.count()) return std::nullopt;
    return std::chrono::milliseconds(ms);
}

}  // namespace mailers
