// SMTP replies (RFC 5321 section 4.2) read from a byte buffer, without I/O.
#pragma once

#include <cstddef>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

namespace mailers::detail::smtp {

/// One complete reply, possibly of several lines.
///
/// Reused across replies: parse_reply() overwrites it and keeps the string
/// capacity, so a connection parses replies without allocating.
struct reply {
    int code = 0;
    /// RFC 3463 code from the first line ("5.7.26"), "" when absent or when
    /// its class does not match the basic code's.
    std::string enhanced;
    /// The reply's lines without the code and separator, joined by '\n'.
    /// For EHLO these are the keyword lines.
    std::string text;

    bool positive() const noexcept { return code >= 200 && code < 400; }
    bool transient() const noexcept { return code >= 400 && code < 500; }
    bool permanent() const noexcept { return code >= 500; }

    /// The reply as the server wrote it, one line per line ("250-a\n250 b"),
    /// for diagnostics.provider_reply.
    std::string verbatim() const;

    /// The text after the enhanced code on the first line, for messages.
    std::string_view first_line_text() const noexcept;
};

enum class parse_status {
    complete,    ///< `out` holds a reply; `consumed` octets were used
    incomplete,  ///< more input is needed; nothing was consumed
    malformed,   ///< the input is not an SMTP reply (or exceeds the limits)
};

/// The longest reply accepted (all lines). RFC 5321 allows 512-octet reply
/// lines; real servers send longer, and an EHLO reply has many lines, but a
/// server that sends more than this is broken or hostile.
inline constexpr std::size_t max_reply_size = 64 * 1024;

/// Parses the first reply at the start of `in`. Lines end in CRLF; a bare LF
/// is tolerated because some servers send it. Every line must start with the
/// same three-digit code followed by '-' (more lines follow), ' ' or the end
/// of the line (last line). A line is malformed as soon as its first octets
/// cannot start a reply ("HTTP/1.1 400", binary noise), without waiting for
/// its end: a peer that does not speak SMTP may never send one.
parse_status parse_reply(std::string_view in, reply& out, std::size_t& consumed);

/// The start of `in` as printable ASCII, for a message about a reply that is
/// not SMTP: at most `limit` octets of its first line, anything else as '?'.
std::string printable_excerpt(std::string_view in, std::size_t limit = 64);

/// Reads "d.ddd.ddd" at the start of `text`, requiring class `cls` ('2',
/// '4', '5') and a following space or end; returns its length or 0.
std::size_t enhanced_code_length(std::string_view text, char cls) noexcept;

}  // namespace mailers::detail::smtp
