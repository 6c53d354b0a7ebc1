// Base64 (RFC 4648 alphabet) for attachment bodies and B encoded-words.
#pragma once

#include <cstddef>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

namespace mailers::mime {

/// Octets that append_base64 writes for `n` input octets.
constexpr std::size_t base64_size(std::size_t n) noexcept {
    return (n + 2) / 3 * 4;
}

/// Octets that append_base64_lines writes for `n` input octets.
constexpr std::size_t base64_lines_size(std::size_t n) noexcept {
    const std::size_t chars = base64_size(n);
    return chars == 0 ? 0 : chars + (chars - 1) / 76 * 2;
}

/// Appends the padded base64 of `data` on one line.
void append_base64(std::string& out, std::string_view data);

/// Appends the base64 of `data` as RFC 2045 body lines of 76 characters
/// joined by CRLF, without a CRLF after the last line: inside a multipart the
/// CRLF before the next delimiter belongs to the delimiter.
void append_base64_lines(std::string& out, std::string_view data);

}  // namespace mailers::mime
