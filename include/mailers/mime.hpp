// RFC 5322 / MIME (RFC 2045-2047, 2231) rendering of a `message`.
#pragma once

#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/message.hpp>

#include <boost/system/result.hpp>

#include <string>
#include <string_view>

namespace mailers {

struct render_options {
    /// Domain used on the right of generated Message-IDs; the From domain when empty.
    std::string message_id_domain;
    /// Refuse messages whose rendered size exceeds this many octets (0 = no limit).
    std::size_t max_size = 0;
    /// When true, 8-bit text bodies are sent as 8bit instead of quoted-printable
    /// (use only when the transport has negotiated 8BITMIME).
    bool allow_8bit = false;
};

/// Checks a message without rendering it: addresses, header names and values
/// (CR/LF refused), required fields. Returns the first problem found.
MAILERS_API error_code validate_message(const message& m);

/// Renders `m` to RFC 5322 octets with CRLF line endings, every line at most
/// 998 octets, non-ASCII header text as RFC 2047 encoded-words, bodies in
/// quoted-printable (text) or base64 (attachments). Fills in Message-ID and
/// Date when the message has none. Never throws on bad input: returns an
/// error and writes nothing.
MAILERS_API boost::system::result<std::string> render_message(const message& m,
                                                              const render_options& opts = {});

/// Generates a new globally unique message id "<random>@<domain>" (no angle brackets).
MAILERS_API std::string make_message_id(std::string_view domain);

/// RFC 5322 date-time, e.g. "Fri, 27 Nov 2026 23:20:25 +0000".
MAILERS_API std::string format_rfc5322_date(time_point t);

}  // namespace mailers
