#include "mime/base64.hpp"

namespace mailers::mime {
namespace {

constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Encodes whole groups of three octets; returns the new write position.
char* encode_groups(char* dst, const unsigned char* src, std::size_t groups) noexcept {
    for (std::size_t g = 0; g < groups; ++g, src += 3) {
        const unsigned v = (unsigned{src[0]} << 16) | (unsigned{src[1]} << 8) | src[2];
        dst[0] = alphabet[(v >> 18) & 63];
        dst[1] = alphabet[(v >> 12) & 63];
        dst[2] = alphabet[(v >> 6) & 63];
        dst[3] = alphabet[v & 63];
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
