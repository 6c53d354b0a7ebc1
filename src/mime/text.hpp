// Character-class, ASCII case and UTF-8 helpers shared by the address parser,
// the MIME writer and the protocol and configuration parsers. Everything here
// is inline and allocation-free because it runs on every byte of every header
// the writer emits.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mailers::mime {

constexpr bool is_alpha(unsigned char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
constexpr bool is_digit(unsigned char c) noexcept {
    return c >= '0' && c <= '9';
}
constexpr bool is_alnum(unsigned char c) noexcept {
    return is_alpha(c) || is_digit(c);
}
constexpr bool is_wsp(unsigned char c) noexcept {
    return c == ' ' || c == '\t';
}
constexpr char to_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

/// RFC 5322 atext (ASCII only; callers add UTF8-non-ascii where RFC 6531/6532 allow it).
constexpr bool is_atext(unsigned char c) noexcept {
    if (is_alnum(c)) return true;
    switch (c) {
        case '!':
        case '#':
        case '$':
        case '%':
        case '&':
        case '\'':
        case '*':
        case '+':
        case '-':
        case '/':
        case '=':
        case '?':
        case '^':
        case '_':
        case '`':
        case '{':
        case '|':
        case '}':
        case '~':
            return true;
        default:
            return false;
    }
}

/// The bytes that let a value break out of its header line.
constexpr bool has_line_break_or_nul(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c == '\r' || c == '\n' || c == '\0') return true;
    return false;
}

constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (to_lower(a[i]) != to_lower(b[i])) return false;
    return true;
}

constexpr bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
    return s.size() >= prefix.size() && iequals(s.substr(0, prefix.size()), prefix);
}

/// Where `needle` first occurs in `hay`, ignoring ASCII case; npos when it
/// does not (an empty needle is found at 0).
constexpr std::size_t ifind(std::string_view hay, std::string_view needle) noexcept {
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
        if (iequals(hay.substr(i, needle.size()), needle)) return i;
    return std::string_view::npos;
}

constexpr bool icontains(std::string_view hay, std::string_view needle) noexcept {
    return ifind(hay, needle) != std::string_view::npos;
}

/// Length (1-4) of the well-formed UTF-8 sequence (RFC 3629) starting at
/// s[i], or 0 when it is ill-formed: overlongs, surrogates, code points above
/// U+10FFFF, stray continuation bytes and truncated sequences are all refused.
constexpr std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
    const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
    const std::size_t avail = s.size() - i;
    const unsigned char c = b(0);
    if (c < 0x80) return 1;
    const auto cont = [&](std::size_t k) { return (b(k) & 0xC0) == 0x80; };
    if (c >= 0xC2 && c <= 0xDF) return (avail >= 2 && cont(1)) ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        if (avail < 3 || !cont(1) || !cont(2)) return 0;
        if (c == 0xE0 && b(1) < 0xA0) return 0;  // overlong
        if (c == 0xED && b(1) > 0x9F) return 0;  // UTF-16 surrogate
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (avail < 4 || !cont(1) || !cont(2) || !cont(3)) return 0;
        if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
        if (c == 0xF4 && b(1) > 0x8F) return 0;  // above U+10FFFF
        return 4;
    }
    return 0;
}

constexpr bool is_valid_utf8(std::string_view s) noexcept {
    std::size_t i = 0;
    while (i < s.size()) {
        if (static_cast<unsigned char>(s[i]) < 0x80) {
            ++i;
            continue;
        }
        const std::size_t n = utf8_sequence_length(s, i);
        if (n == 0) return false;
        i += n;
    }
    return true;
}

/// A message id or address without its enclosing angle brackets, when it
/// has both.
constexpr std::string_view strip_angles(std::string_view s) noexcept {
    if (s.size() >= 2 && s.front() == '<' && s.back() == '>') return s.substr(1, s.size() - 2);
    return s;
}

constexpr bool is_ascii(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

/// Appends `s` as the content of an RFC 5322 quoted-string: only '"' and
/// '\' need a backslash.
inline void append_quoted(std::string& out, std::string_view s) {
    for (char c : s) {
        if (c == '"' || c == '\\') out += '\\';
        out += c;
    }
}

}  // namespace mailers::mime
