// Text body transfer encodings: the choice between 7bit, 8bit and
// quoted-printable, and the encoders. Every encoder normalises line endings:
// CRLF, bare LF and bare CR all become CRLF.
#pragma once

#include <cstddef>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

namespace mailers::mime {

enum class transfer_encoding { seven_bit, eight_bit, quoted_printable };

/// What a single pass over a text body found.
struct body_scan {
    bool eight_bit = false;  ///< an octet >= 0x80
    bool needs_encoding =
        false;  ///< NUL, a line over 998 octets, or a line starting with "." or "From "
    std::size_t line_breaks = 0;  ///< CRLF, LF or CR sequences
};

body_scan scan_body(std::string_view text) noexcept;

/// 7bit when the text allows it, else 8bit when `allow_8bit` and only
/// non-ASCII octets stand in the way, else quoted-printable.
transfer_encoding choose_encoding(const body_scan& scan, bool allow_8bit) noexcept;

/// Close estimate of the octets the chosen encoder writes for this body,
/// used to reserve the output once.
std::size_t encoded_size_bound(std::string_view text, const body_scan& scan,
                               transfer_encoding enc) noexcept;

/// Appends `text` with every line ending turned into CRLF.
void append_crlf_normalised(std::string& out, std::string_view text);

/// Appends `text` as RFC 2045 quoted-printable: lines of at most 76
/// characters, trailing whitespace encoded, and a "." or "From " at the start
/// of any output line encoded so that neither SMTP dot-stuffing nor mbox
/// "From " munging can alter the body.
void append_quoted_printable(std::string& out, std::string_view text);

}  // namespace mailers::mime
