#include "json/writer.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "mime/base64.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace mailers::json {
namespace {

constexpr char hex_digits[] = "0123456789abcdef";
constexpr std::string_view replacement = "\\ufffd";

// 0: copy as is; 1: needs a short or \u00XX escape; 2: first byte of a
// multi-byte sequence (or an invalid byte) that must be validated.
constexpr std::array<std::uint8_t, 256> make_byte_class() {
    std::array<std::uint8_t, 256> t{};
    for (int c = 0; c < 0x20; ++c) t[c] = 1;
    t['"'] = 1;
    t['\\'] = 1;
    for (int c = 0x80; c < 0x100; ++c) t[c] = 2;
    return t;
}
constexpr auto byte_class = make_byte_class();

void append_control_escape(std::string& out, unsigned char c) {
    switch (c) {
        case '"':
            out.append("\\\"");
            return;
        case '\\':
            out.append("\\\\");
            return;
        case '\b':
            out.append("\\b");
            return;
        case '\f':
            out.append("\\f");
            return;
        case '\n':
            out.append("\\n");
            return;
        case '\r':
            out.append("\\r");
            return;
        case '\t':
            out.append("\\t");
            return;
        default:
            break;
    }
    const char esc[6] = {'\\', 'u', '0', '0', hex_digits[c >> 4], hex_digits[c & 0xf]};
    out.append(esc, sizeof esc);
}

bool is_continuation(unsigned char c) {
    return (c & 0xc0) == 0x80;
}

// Length of the well-formed UTF-8 sequence starting at s[i], or, when it is
// ill-formed, the negated length of its maximal subpart (at least one byte),
// following Table 3-7 of the Unicode standard.
int classify_sequence(std::string_view s, std::size_t i) {
    const auto lead = static_cast<unsigned char>(s[i]);
    int len = 0;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (lead >= 0xc2 && lead <= 0xdf) {
        len = 2;
    } else if (lead >= 0xe0 && lead <= 0xef) {
        len = 3;
        if (lead == 0xe0) lo = 0xa0;  // overlong
        if (lead == 0xed) hi = 0x9f;  // UTF-16 surrogates
    } else if (lead >= 0xf0 && lead <= 0xf4) {
        len = 4;
        if (lead == 0xf0) lo = 0x90;  // overlong
        if (lead == 0xf4) hi = 0x8f;  // above U+10FFFF
    } else {
        return -1;
    }
    if (i + 1 >= s.size()) return -1;
    const auto second = static_cast<unsigned char>(s[i + 1]);
    if (second < lo || second > hi) return -1;
    for (int k = 2; k < len; ++k) {
        if (i + k >= s.size() || !is_continuation(static_cast<unsigned char>(s[i + k]))) return -k;
    }
    return len;
}

// True when any of the eight bytes of `w` is below 0x20, '"', '\\' or at
// least 0x80: the bytes byte_class does not map to 0. Exact for "any",
// which is all the fast path asks.
constexpr bool needs_attention(std::uint64_t w) noexcept {
    constexpr std::uint64_t ones = 0x0101010101010101ull;
    constexpr std::uint64_t highs = 0x8080808080808080ull;
    const auto has_zero_byte = [](std::uint64_t v) { return (v - ones) & ~v & highs; };
    const std::uint64_t below_space = (w - ones * 0x20) & ~w & highs;
    return (below_space | has_zero_byte(w ^ (ones * '"')) | has_zero_byte(w ^ (ones * '\\')) |
            (w & highs)) != 0;
}

// Index of the first byte at or after `i` that byte_class does not map to
// 0, or s.size(). Plain text is skipped sixteen bytes at a time where SSE2
// is available (every x86-64), else eight.
std::size_t skip_plain(std::string_view s, std::size_t i) noexcept {
    const char* p = s.data();
    const std::size_t n = s.size();
#if defined(__SSE2__)
    const __m128i space = _mm_set1_epi8(0x20);
    const __m128i quote = _mm_set1_epi8('"');
    const __m128i backslash = _mm_set1_epi8('\\');
    for (; i + 16 <= n; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
        // A signed compare: bytes from 0x80 up are negative, so "below
        // 0x20" catches them together with the control characters.
        const __m128i hit =
            _mm_or_si128(_mm_cmplt_epi8(v, space),
                         _mm_or_si128(_mm_cmpeq_epi8(v, quote), _mm_cmpeq_epi8(v, backslash)));
        if (const int mask = _mm_movemask_epi8(hit); mask != 0)
            return i + static_cast<std::size_t>(__builtin_ctz(static_cast<unsigned>(mask)));
    }
#endif
    for (; i + 8 <= n; i += 8) {
        std::uint64_t w;
        std::memcpy(&w, p + i, sizeof w);
        if (needs_attention(w)) break;
    }
    while (i < n && byte_class[static_cast<unsigned char>(p[i])] == 0) ++i;
    return i;
}

template <class T>
void append_number(std::string& out, T v) {
    char buf[32];
    const auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

}  // namespace

void append_escaped(std::string& out, std::string_view s) {
    out.reserve(out.size() + s.size() + 2);
    out.push_back('"');
    std::size_t run = 0;  // start of the bytes not yet copied
    std::size_t i = 0;
    while (i < s.size()) {
        // Most text needs no escape.
        i = skip_plain(s, i);
        if (i == s.size()) break;
        const auto c = static_cast<unsigned char>(s[i]);
        if (byte_class[c] == 1) {
            out.append(s.data() + run, i - run);
            append_control_escape(out, c);
            run = ++i;
            continue;
        }
        const int n = classify_sequence(s, i);
        if (n < 0) {
            out.append(s.data() + run, i - run);
            out.append(replacement);
            i += static_cast<std::size_t>(-n);
            run = i;
        } else if (n == 3 && c == 0xe2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
                   (static_cast<unsigned char>(s[i + 2]) & 0xfe) == 0xa8) {
            // U+2028 LINE SEPARATOR / U+2029 PARAGRAPH SEPARATOR are valid JSON
            // but end a JavaScript string literal; escape them for consumers
            // that embed the text in a script.
            out.append(s.data() + run, i - run);
            out.append(s[i + 2] == '\xa8' ? "\\u2028" : "\\u2029");
            i += 3;
            run = i;
        } else {
            i += static_cast<std::size_t>(n);
        }
    }
    out.append(s.data() + run, s.size() - run);
    out.push_back('"');
}

writer& writer::begin_object() {
    separate();
    out_.push_back('{');
    need_comma_ = false;
    return *this;
}

writer& writer::end_object() {
    out_.push_back('}');
    need_comma_ = true;
    return *this;
}

writer& writer::begin_array() {
    separate();
    out_.push_back('[');
    need_comma_ = false;
    return *this;
}

writer& writer::end_array() {
    out_.push_back(']');
    need_comma_ = true;
    return *this;
}

writer& writer::key(std::string_view k) {
    separate();
    append_escaped(out_, k);
    out_.push_back(':');
    need_comma_ = false;
    return *this;
}

writer& writer::value(std::string_view s) {
    separate();
    append_escaped(out_, s);
    need_comma_ = true;
    return *this;
}

writer& writer::value(const char* s) {
    if (s == nullptr) return null();
    return value(std::string_view{s});
}

writer& writer::value(std::int64_t v) {
    separate();
    append_number(out_, v);
    need_comma_ = true;
    return *this;
}

writer& writer::value(std::uint64_t v) {
    separate();
    append_number(out_, v);
    need_comma_ = true;
    return *this;
}

writer& writer::value(double v) {
    if (!std::isfinite(v)) return null();
    separate();
    // Without a format argument, to_chars gives the shortest text that reads
    // back as the same double, but it prefers plain digits for large integral
    // values ("-4334270042473571549184"). Many parsers turn an integer literal
    // beyond 64 bits into an error or a big integer, so such values are
    // written in (equally shortest) exponent form instead.
    char buf[32];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    const std::string_view text{buf, static_cast<std::size_t>(r.ptr - buf)};
    if (text.size() > 16 && text.find_first_of(".e") == std::string_view::npos)
        r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
    out_.append(buf, r.ptr);
    need_comma_ = true;
    return *this;
}

writer& writer::value(bool v) {
    separate();
    out_.append(v ? "true" : "false");
    need_comma_ = true;
    return *this;
}

writer& writer::null() {
    separate();
    out_.append("null");
    need_comma_ = true;
    return *this;
}

writer& writer::base64_value(std::string_view bytes) {
    separate();
    out_.push_back('"');
    mime::append_base64(out_, bytes);
    out_.push_back('"');
    need_comma_ = true;
    return *this;
}

writer& writer::raw(std::string_view already_encoded_json) {
    separate();
    out_.append(already_encoded_json);
    need_comma_ = true;
    return *this;
}

}  // namespace mailers::json
