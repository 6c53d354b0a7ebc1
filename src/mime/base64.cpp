#include "mime/base64.hpp"

#include <array>
#include <cstring>

namespace mailers::mime {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The two characters of every 12-bit value (8 KiB), so that a group of
// three octets takes two lookups instead of four.
constexpr auto pair_table = [] {
    std::array<char, 2 * 4096> t{};
    for (std::size_t v = 0; v < 4096; ++v) {
        t[2 * v] = alphabet[v >> 6];
        t[2 * v + 1] = alphabet[v & 63];
    }
    return t;
}();

// Encodes whole groups of three octets; returns the new write position.
char* encode_groups(char* dst, const unsigned char* src, std::size_t groups) noexcept {
    for (std::size_t g = 0; g < groups; ++g, src += 3) {
        const unsigned v = (unsigned{src[0]} << 16) | (unsigned{src[1]} << 8) | src[2];
        std::memcpy(dst, &pair_table[2 * (v >> 12)], 2);
        std::memcpy(dst + 2, &pair_table[2 * (v & 0xfff)], 2);
        dst += 4;
    }
    return dst;
}

char* encode_tail(char* dst, const unsigned char* src, std::size_t rest) noexcept {
    if (rest == 0) return dst;
    const unsigned v = (unsigned{src[0]} << 16) | (rest == 2 ? unsigned{src[1]} << 8 : 0u);
    dst[0] = alphabet[(v >> 18) & 63];
    dst[1] = alphabet[(v >> 12) & 63];
    dst[2] = rest == 2 ? alphabet[(v >> 6) & 63] : '=';
    dst[3] = '=';
    return dst + 4;
}

}  // namespace

void append_base64(std::string& out, std::string_view data) {
    const std::size_t start = out.size();
    out.resize(start + base64_size(data.size()));
    const auto* src = reinterpret_cast<const unsigned char*>(data.data());
    char* dst = encode_groups(out.data() + start, src, data.size() / 3);
    encode_tail(dst, src + data.size() / 3 * 3, data.size() % 3);
}

void append_base64_lines(std::string& out, std::string_view data) {
    // 57 input octets make exactly one 76-character line.
    constexpr std::size_t line_in = 57;
    const std::size_t start = out.size();
    out.resize(start + base64_lines_size(data.size()));
    const auto* src = reinterpret_cast<const unsigned char*>(data.data());
    char* dst = out.data() + start;
    std::size_t left = data.size();
    while (left > line_in) {
        dst = encode_groups(dst, src, line_in / 3);
        *dst++ = '\r';
        *dst++ = '\n';
        src += line_in;
        left -= line_in;
    }
    dst = encode_groups(dst, src, left / 3);
    encode_tail(dst, src + left / 3 * 3, left % 3);
}

}  // namespace mailers::mime
