#include <idn2.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mailers/address.hpp>
#include <memory>

#include "mime/address_syntax.hpp"
#include "mime/text.hpp"

namespace mailers {
namespace mime {
namespace {

// A dot-atom with RFC 6531 UTF-8 atoms: no empty atom, so no leading,
// trailing or doubled dot.
bool valid_dot_atom(std::string_view s) noexcept {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = 0;
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        if (c == '.') {
            if (prev == '.') return false;
        } else if (c >= 0x80) {
            const std::size_t n = utf8_sequence_length(s, i);
            if (n == 0) return false;
            prev = 0;
            i += n;
            continue;
        } else if (!is_atext(c)) {
            return false;
        }
        prev = static_cast<char>(c);
        ++i;
    }
    return true;
}

// RFC 5321 Quoted-string (qtextSMTP / quoted-pairSMTP) extended with UTF-8 by
// RFC 6531. `s` includes both quotes. An empty "" local part is refused: the
// grammar allows it but no mailbox has one, and downstream systems choke on it.
bool valid_quoted_local(std::string_view s) noexcept {
    if (s.size() < 3 || s.front() != '"' || s.back() != '"') return false;
    const std::string_view body = s.substr(1, s.size() - 2);
    for (std::size_t i = 0; i < body.size();) {
        const auto c = static_cast<unsigned char>(body[i]);
        if (c == '\\') {
            if (i + 1 >= body.size()) return false;
            const auto e = static_cast<unsigned char>(body[i + 1]);
            if (e < 32 || e > 126) return false;
            i += 2;
        } else if (c == '"') {
            return false;
        } else if (c >= 0x80) {
            const std::size_t n = utf8_sequence_length(body, i);
            if (n == 0) return false;
            i += n;
        } else if (c < 32 || c > 126) {
            return false;
        } else {
            ++i;
        }
    }
    return true;
}

// RFC 5321 IPv4-address-literal: four Snum of 1 to 3 decimal digits each,
// at most 255. A leading zero is allowed, as the grammar allows it, and the
// digits are decimal ("010" is ten, not the octal eight inet_aton reads).
bool parse_ipv4(std::string_view s, std::uint8_t* out) noexcept {
    std::size_t i = 0;
    for (int part = 0; part < 4; ++part) {
        if (part > 0) {
            if (i == s.size() || s[i] != '.') return false;
            ++i;
        }
        unsigned value = 0;
        std::size_t digits = 0;
        for (; i < s.size() && is_digit(static_cast<unsigned char>(s[i])); ++i) {
            if (++digits > 3) return false;
            value = value * 10 + static_cast<unsigned>(s[i] - '0');
        }
        if (digits == 0 || value > 255) return false;
        out[part] = static_cast<std::uint8_t>(value);
    }
    return i == s.size();
}

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Parses one side of an IPv6 address (of "::" when it has one) into 16-bit
// groups; only the last element may be an IPv4 address, which fills two.
// False for an empty group, a group of more than 4 digits, or more than
// `max_groups` groups.
bool parse_ipv6_groups(std::string_view s, std::uint16_t* groups, std::size_t max_groups,
                       std::size_t& count) noexcept {
    count = 0;
    if (s.empty()) return true;
    while (true) {
        const std::size_t end = std::min(s.find(':'), s.size());
        const std::string_view part = s.substr(0, end);
        if (end == s.size() && part.find('.') != std::string_view::npos) {
            std::uint8_t v4[4];
            if (count + 2 > max_groups || !parse_ipv4(part, v4)) return false;
            groups[count++] = static_cast<std::uint16_t>(v4[0] << 8 | v4[1]);
            groups[count++] = static_cast<std::uint16_t>(v4[2] << 8 | v4[3]);
            return true;
        }
        if (part.empty() || part.size() > 4 || count == max_groups) return false;
        unsigned value = 0;
        for (char c : part) {
            const int h = hex_value(c);
            if (h < 0) return false;
            value = value << 4 | static_cast<unsigned>(h);
        }
        groups[count++] = static_cast<std::uint16_t>(value);
        if (end == s.size()) return true;
        s.remove_prefix(end + 1);
    }
}

// RFC 5321 IPv6-addr (after the "IPv6:" tag): eight groups, or "::" standing
// for at least two zero groups with at most six others around it; the last
// 32 bits may be written as an IPv4 address. Stricter than inet_pton, which
// also lets "::" stand for a single group.
bool parse_ipv6(std::string_view s, std::uint16_t* groups) noexcept {
    const std::size_t gap = s.find("::");
    std::size_t head = 0;
    std::size_t tail = 0;
    if (gap == std::string_view::npos) return parse_ipv6_groups(s, groups, 8, head) && head == 8;
    // The IPv4 form may only end the address, never come before "::".
    const std::string_view before = s.substr(0, gap);
    if (before.find('.') != std::string_view::npos) return false;
    std::uint16_t after[8];
    if (!parse_ipv6_groups(before, groups, 6, head) ||
        !parse_ipv6_groups(s.substr(gap + 2), after, 6, tail) || head + tail > 6)
        return false;
    std::fill(groups + head, groups + 8 - tail, std::uint16_t{0});
    std::copy(after, after + tail, groups + 8 - tail);
    return true;
}

// The host an address literal names, as eight 16-bit groups; an IPv4 host
// fills the last two.
struct ip_literal {
    bool v6 = false;
    std::uint16_t groups[8] = {};
};

bool parse_address_literal(std::string_view s, ip_literal& ip) noexcept {
    if (s.size() < 3 || s.front() != '[' || s.back() != ']') return false;
    const std::string_view inner = s.substr(1, s.size() - 2);
    if (istarts_with(inner, "IPv6:")) {
        ip.v6 = true;
        return parse_ipv6(inner.substr(5), ip.groups);
    }
    std::uint8_t v4[4];
    if (!parse_ipv4(inner, v4)) return false;
    ip.groups[6] = static_cast<std::uint16_t>(v4[0] << 8 | v4[1]);
    ip.groups[7] = static_cast<std::uint16_t>(v4[2] << 8 | v4[3]);
    return true;
}

bool valid_address_literal(std::string_view s) noexcept {
    ip_literal ip;
    return parse_address_literal(s, ip);
}

// An ASCII host name: LDH labels of 1-63 octets that neither start nor end
// with '-'. An all-numeric last label is refused (RFC 3696 section 2) so that
// an unbracketed "a@1.2.3.4" is not mistaken for a host name.
bool valid_ascii_host(std::string_view s) noexcept {
    if (s.empty() || s.size() > max_domain) return false;
    std::size_t label_start = 0;
    bool all_digits = true;
    for (std::size_t i = 0; i <= s.size(); ++i) {
        if (i == s.size() || s[i] == '.') {
            const std::size_t len = i - label_start;
            if (len == 0 || len > max_label) return false;
            if (s[label_start] == '-' || s[i - 1] == '-') return false;
            if (i == s.size() && all_digits) return false;
            label_start = i + 1;
            all_digits = true;
            continue;
        }
        const auto c = static_cast<unsigned char>(s[i]);
        if (!is_alnum(c) && c != '-') return false;
        if (!is_digit(c)) all_digits = false;
    }
    return true;
}

struct idn2_deleter {
    void operator()(char* p) const noexcept { idn2_free(p); }
};
using idn2_string = std::unique_ptr<char, idn2_deleter>;

// Runs IDNA 2008 (UTS #46 non-transitional) on a UTF-8 domain; null on refusal.
idn2_string to_a_labels(std::string_view domain) noexcept {
    char buf[max_domain + 1];
    if (domain.size() > max_domain) return nullptr;
    std::memcpy(buf, domain.data(), domain.size());
    buf[domain.size()] = '\0';
    char* out = nullptr;
    if (idn2_to_ascii_8z(buf, &out, IDN2_NONTRANSITIONAL | IDN2_NFC_INPUT) != IDN2_OK) {
        idn2_free(out);
        return nullptr;
    }
    idn2_string result{out};
    if (!valid_ascii_host(result.get())) return nullptr;
    return result;
}

bool has_a_label(std::string_view host) noexcept {
    for (std::size_t i = 0; i + 4 <= host.size(); ++i)
        if ((i == 0 || host[i - 1] == '.') && istarts_with(host.substr(i), "xn--")) return true;
    return false;
}

// Splits an addr-spec at the '@' that ends the local part, which for a quoted
// local part is the first '@' after the closing quote.
bool split_addr_spec(std::string_view s, std::string_view& local,
                     std::string_view& domain) noexcept {
    std::size_t at;
    if (!s.empty() && s.front() == '"') {
        std::size_t i = 1;
        while (i < s.size() && s[i] != '"') i += (s[i] == '\\') ? 2 : 1;
        if (i >= s.size()) return false;
        at = i + 1;
        if (at >= s.size() || s[at] != '@') return false;
    } else {
        at = s.find('@');
        if (at == std::string_view::npos) return false;
    }
    local = s.substr(0, at);
    domain = s.substr(at + 1);
    return true;
}

}  // namespace

bool valid_local_part(std::string_view local) noexcept {
    if (local.empty() || local.size() > max_local_part) return false;
    return local.front() == '"' ? valid_quoted_local(local) : valid_dot_atom(local);
}

bool valid_domain(std::string_view domain) noexcept {
    if (domain.empty() || domain.size() > max_domain) return false;
    if (domain.front() == '[') return valid_address_literal(domain);
    if (is_ascii(domain)) {
        if (!valid_ascii_host(domain)) return false;
        // An A-label must hold valid Punycode of a valid U-label.
        return !has_a_label(domain) || to_a_labels(domain) != nullptr;
    }
    if (!is_valid_utf8(domain)) return false;
    return to_a_labels(domain) != nullptr;
}

bool valid_mailbox(std::string_view local, std::string_view domain) noexcept {
    return local.size() + 1 + domain.size() <= max_addr_spec && valid_local_part(local) &&
           valid_domain(domain);
}

bool append_ascii_domain(std::string& out, std::string_view domain, bool lower) {
    if (domain.front() == '[' || is_ascii(domain)) {
        const std::size_t start = out.size();
        out += domain;
        if (lower && domain.front() != '[')
            for (std::size_t i = start; i < out.size(); ++i) out[i] = to_lower(out[i]);
        return true;
    }
    const idn2_string a = to_a_labels(domain);
    if (!a) return false;
    const std::size_t start = out.size();
    out += a.get();
    for (std::size_t i = start; i < out.size(); ++i) out[i] = to_lower(out[i]);
    return true;
}

bool append_canonical_address_literal(std::string& out, std::string_view literal) {
    ip_literal ip;
    if (!parse_address_literal(literal, ip)) return false;
    const auto& g = ip.groups;
    const bool v4_mapped =
        ip.v6 && std::all_of(g, g + 5, [](std::uint16_t x) { return x == 0; }) && g[5] == 0xffff;
    out += '[';
    if (!ip.v6 || v4_mapped) {
        for (int i = 0; i < 4; ++i) {
            if (i > 0) out += '.';
            const unsigned group = g[6 + i / 2];
            out += std::to_string(i % 2 == 0 ? group >> 8 : group & 0xffu);
        }
        out += ']';
        return true;
    }
    // RFC 5952: lower-case hexadecimal without leading zeros, and "::" for
    // the longest run of two or more zero groups (the first of equal runs).
    int run_start = -1;
    int run_len = 1;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0) ++j;
        if (j - i > run_len) run_start = i, run_len = j - i;
        i = j == i ? i + 1 : j;
    }
    out += "IPv6:";
    constexpr char digits[] = "0123456789abcdef";
    for (int i = 0; i < 8; ++i) {
        if (i == run_start) {
            out += "::";
            i += run_len - 1;
            continue;
        }
        if (i > 0 && i != run_start + run_len) out += ':';
        bool started = false;
        for (int shift = 12; shift >= 0; shift -= 4) {
            const unsigned nibble = (g[i] >> shift) & 0xfu;
            if (nibble != 0 || started || shift == 0) {
                out += digits[nibble];
                started = true;
            }
        }
    }
    out += ']';
    return true;
}

}  // namespace mime

namespace {

using mime::is_wsp;

boost::system::result<address> invalid() {
    return make_error_code(errc::invalid_address);
}

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && is_wsp(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && is_wsp(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

// Parses an RFC 5322 phrase (obs-phrase: '.' allowed in atoms) into its
// display form: words joined by one space, quoted-strings unquoted. UTF-8 is
// allowed in atoms and quoted-strings (RFC 6532); comments are not.
bool parse_phrase(std::string_view s, std::string& out) {
    std::size_t i = 0;
    bool first = true;
    while (i < s.size()) {
        if (is_wsp(static_cast<unsigned char>(s[i]))) {
            ++i;
            continue;
        }
        if (!first) out += ' ';
        first = false;
        if (s[i] == '"') {
            ++i;
            while (true) {
                if (i >= s.size()) return false;
                const auto c = static_cast<unsigned char>(s[i]);
                if (c == '"') break;
                if (c == '\\') {
                    // quoted-pair: "\" then VCHAR or WSP, or a UTF-8 character (RFC 6532).
                    if (i + 1 >= s.size()) return false;
                    const auto e = static_cast<unsigned char>(s[i + 1]);
                    if ((e < 32 && e != '\t') || e == 127) return false;
                    const std::size_t n = mime::utf8_sequence_length(s, i + 1);
                    if (n == 0) return false;
                    out.append(s.substr(i + 1, n));
                    i += 1 + n;
                } else if (c >= 0x80) {
                    const std::size_t n = mime::utf8_sequence_length(s, i);
                    if (n == 0) return false;
                    out.append(s.substr(i, n));
                    i += n;
                } else if ((c < 32 && c != '\t') || c == 127) {
                    return false;
                } else {
                    out += static_cast<char>(c);
                    ++i;
                }
            }
            ++i;  // closing quote
            continue;
        }
        while (i < s.size()) {
            const auto c = static_cast<unsigned char>(s[i]);
            if (is_wsp(c) || c == '"') break;
            if (c >= 0x80) {
                const std::size_t n = mime::utf8_sequence_length(s, i);
                if (n == 0) return false;
                out.append(s.substr(i, n));
                i += n;
                continue;
            }
            if (!mime::is_atext(c) && c != '.') return false;
            out += static_cast<char>(c);
            ++i;
        }
    }
    return true;
}

// Finds the '<' that opens the angle-addr: the first one outside a quoted-string.
std::size_t find_angle_open(std::string_view s) noexcept {
    bool quoted = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (quoted) {
            if (s[i] == '\\')
                ++i;
            else if (s[i] == '"')
                quoted = false;
        } else if (s[i] == '"') {
            quoted = true;
        } else if (s[i] == '<') {
            return i;
        }
    }
    return std::string_view::npos;
}

}  // namespace

boost::system::result<address> parse_address(std::string_view text) {
    if (mime::has_line_break_or_nul(text)) return invalid();
    text = trim(text);
    if (text.empty()) return invalid();

    address a;
    std::string_view spec = text;
    if (text.back() == '>') {
        const std::size_t open = find_angle_open(text);
        if (open == std::string_view::npos) return invalid();
        if (!parse_phrase(text.substr(0, open), a.display_name)) return invalid();
        spec = trim(text.substr(open + 1, text.size() - open - 2));
    }
    std::string_view local, domain;
    if (!mime::split_addr_spec(spec, local, domain) || !mime::valid_mailbox(local, domain))
        return invalid();
    a.local.assign(local);
    a.domain.assign(domain);
    return a;
}

bool is_valid_addr_spec(std::string_view text) noexcept {
    if (mime::has_line_break_or_nul(text)) return false;
    std::string_view local, domain;
    return mime::split_addr_spec(text, local, domain) && mime::valid_mailbox(local, domain);
}

boost::system::result<std::string> domain_to_ascii(std::string_view domain) {
    std::string out;
    if (mime::has_line_break_or_nul(domain) || !mime::valid_domain(domain) ||
        !mime::append_ascii_domain(out, domain, true))
        return make_error_code(errc::invalid_address);
    return out;
}

}  // namespace mailers
