#include "mime/body.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

namespace mailers::mime {
namespace {

constexpr std::size_t max_line = 998;  // RFC 5322 2.1.1, excluding CRLF

// Octets quoted-printable may write literally (RFC 2045 6.7 rule 2); space and
// tab are literal except before a line break, which the encoder checks.
constexpr std::array<bool, 256> qp_literal = [] {
    std::array<bool, 256> t{};
    for (int c = 33; c <= 126; ++c) t[static_cast<std::size_t>(c)] = c != '=';
    t[' '] = t['\t'] = true;
    return t;
}();

constexpr char hex_digits[] = "0123456789ABCDEF";

bool starts_with_from(std::string_view text, std::size_t i) noexcept {
    return text.compare(i, 5, "From ") == 0;
}

// Word-at-a-time tests (the "has zero byte" trick): bodies are mostly plain
// ASCII text, and a byte loop with a branch per octet dominated rendering.
constexpr std::uint64_t ones = 0x0101010101010101ull;
constexpr std::uint64_t highs = 0x8080808080808080ull;

constexpr std::uint64_t has_byte(std::uint64_t w, unsigned char b) noexcept {
    const std::uint64_t x = w ^ (ones * b);
    return (x - ones) & ~x & highs;
}

std::uint64_t load(const char* p) noexcept {
    std::uint64_t w;
    std::memcpy(&w, p, sizeof w);
    return w;
}

// In a mask from has_byte, the lowest flagged byte is always a real match
// (a borrow only runs towards higher bytes), so it locates the first special
// octet of a little-endian word.
const char* first_flagged(const char* p, std::uint64_t mask) noexcept {
    if constexpr (std::endian::native == std::endian::little)
        return p + std::countr_zero(mask) / 8;
    else
        return p;  // the caller's byte loop finds it
}

// First CR or LF in [p, end), or end.
const char* find_line_break(const char* p, const char* end) noexcept {
    while (end - p >= 8) {
        const std::uint64_t w = load(p);
        if (const std::uint64_t m = has_byte(w, '\n') | has_byte(w, '\r')) {
            p = first_flagged(p, m);
            break;
        }
        p += 8;
    }
    while (p < end && *p != '\r' && *p != '\n') ++p;
    return p;
}

// Skips octets that are not CR, LF or NUL (nor, until one has been seen,
// >= 0x80); returns the first one that is, or end.
const char* skip_plain(const char* p, const char* end, bool eight_bit_seen) noexcept {
    const std::uint64_t high_mask = eight_bit_seen ? 0 : highs;
    while (end - p >= 8) {
        const std::uint64_t w = load(p);
        if (const std::uint64_t m =
                (w & high_mask) | has_byte(w, '\n') | has_byte(w, '\r') | has_byte(w, 0)) {
            p = first_flagged(p, m);
            break;
        }
        p += 8;
    }
    return p;
}

// Number of octets >= 0x80 in a word.
std::size_t count_high(std::uint64_t w) noexcept {
    return static_cast<std::size_t>((((w & highs) >> 7) * ones) >> 56);
}

bool is_break(char c) noexcept {
    return c == '\r' || c == '\n';
}

}  // namespace

body_scan scan_body(std::string_view text) noexcept {
    body_scan s;
    const char* p = text.data();
    const char* const end = p + text.size();
    const char* line = p;
    const auto check_line_start = [&] {
        if (p < end && (*p == '.' || (*p == 'F' && starts_with_from(text, p - text.data()))))
            s.needs_encoding = true;
    };
    check_line_start();
    while (p < end) {
        p = skip_plain(p, end, s.eight_bit);
        if (p == end) break;
        const auto c = static_cast<unsigned char>(*p);
        if (c == '\r' || c == '\n') {
            if (static_cast<std::size_t>(p - line) > max_line) s.needs_encoding = true;
            ++s.line_breaks;
            p += (c == '\r' && p + 1 < end && p[1] == '\n') ? 2 : 1;
            line = p;
            check_line_start();
            continue;
        }
        if (c >= 0x80)
            s.eight_bit = true;
        else if (c == 0)
            s.needs_encoding = true;
        ++p;
    }
    if (static_cast<std::size_t>(end - line) > max_line) s.needs_encoding = true;
    return s;
}

transfer_encoding choose_encoding(const body_scan& scan, bool allow_8bit) noexcept {
    if (scan.needs_encoding) return transfer_encoding::quoted_printable;
    if (!scan.eight_bit) return transfer_encoding::seven_bit;
    return allow_8bit ? transfer_encoding::eight_bit : transfer_encoding::quoted_printable;
}

std::size_t encoded_size_bound(std::string_view text, const body_scan& scan,
                               transfer_encoding enc) noexcept {
    // Each line break may grow from LF to CRLF.
    const std::size_t base = text.size() + scan.line_breaks;
    if (enc != transfer_encoding::quoted_printable) return base;
    // Octets >= 0x80 dominate the escapes in real text; '=' and controls are
    // covered by the 1/16 margin.
    std::size_t escapes = text.size() / 16;
    const char* p = text.data();
    const char* const end = p + text.size();
    for (; end - p >= 8; p += 8) escapes += count_high(load(p));
    for (; p < end; ++p) escapes += static_cast<unsigned char>(*p) >> 7;
    // Escapes add two octets; a soft break ("=" CRLF) every 73+ output octets;
    // the start-of-line and trailing-whitespace escapes are at most two per line.
    const std::size_t escaped = base + 2 * escapes;
    return escaped + escaped / 24 + 6 * (scan.line_breaks + 1);
}

void append_crlf_normalised(std::string& out, std::string_view text) {
    const char* p = text.data();
    const char* const end = p + text.size();
    while (p < end) {
        const char* brk = find_line_break(p, end);
        out.append(p, static_cast<std::size_t>(brk - p));
        if (brk == end) break;
        out.append("\r\n", 2);
        p = brk + ((*brk == '\r' && brk + 1 < end && brk[1] == '\n') ? 2 : 1);
    }
}

void append_quoted_printable(std::string& out, std::string_view text) {
    // Output goes through a stack buffer: appending octet by octet to the
    // string cost more than the encoding itself.
    char buf[4096];
    std::size_t len = 0;
    const std::size_t n = text.size();
    std::size_t col = 0;
    std::size_t i = 0;
    while (i < n) {
        // Room for the longest step below: a run of up to 73 octets.
        if (len > sizeof buf - 80) {
            out.append(buf, len);
            len = 0;
        }
        const auto c = static_cast<unsigned char>(text[i]);
        // Most octets are far enough from the line limit to need no soft
        // break: runs of printable octets not at a line start (whitespace
        // included unless it ends a line) are copied whole; anything else
        // but a line break is escaped.
        if (col < 73) {
            if (col != 0 && qp_literal[c]) {
                const std::size_t max = std::min(n, i + (73 - col));
                std::size_t j = i + 1;
                while (j < max && qp_literal[static_cast<unsigned char>(text[j])]) ++j;
                if (j == n || is_break(text[j]))
                    while (j > i && (text[j - 1] == ' ' || text[j - 1] == '\t')) --j;
                if (j > i) {
                    std::memcpy(buf + len, text.data() + i, j - i);
                    len += j - i;
                    col += j - i;
                    i = j;
                    continue;
                }
            }
            if (!qp_literal[c] && !is_break(static_cast<char>(c))) {
                buf[len++] = '=';
                buf[len++] = hex_digits[c >> 4];
                buf[len++] = hex_digits[c & 15];
                col += 3;
                ++i;
                continue;
            }
        }
        if (is_break(static_cast<char>(c))) {
            buf[len++] = '\r';
            buf[len++] = '\n';
            col = 0;
            i += (c == '\r' && i + 1 < n && text[i + 1] == '\n') ? 2 : 1;
            continue;
        }
        const bool at_eol = i + 1 == n || is_break(text[i + 1]);
        const auto literal = [&] {
            if (!qp_literal[c]) return false;
            if ((c == ' ' || c == '\t') && at_eol) return false;
            if (col == 0 && (c == '.' || (c == 'F' && starts_with_from(text, i)))) return false;
            return true;
        };
        bool lit = literal();
        // A line holds 76 characters; all but the last need room for a soft break.
        const std::size_t limit = at_eol ? 76 : 75;
        if (col + (lit ? 1 : 3) > limit) {
            buf[len++] = '=';
            buf[len++] = '\r';
            buf[len++] = '\n';
            col = 0;
            lit = literal();
        }
        if (lit) {
            buf[len++] = static_cast<char>(c);
            ++col;
        } else {
            buf[len++] = '=';
            buf[len++] = hex_digits[c >> 4];
            buf[len++] = hex_digits[c & 15];
            col += 3;
        }
        ++i;
    }
    out.append(buf, len);
}

}  // namespace mailers::mime
