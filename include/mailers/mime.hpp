// RFC 5322 / MIME (RFC 2045-2047, 2231) rendering of a `message`.
#pragma once

#include <boost/system/result.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/message.hpp>
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
/// (CR/LF refused), required fields. Returns the first problem found:
///
/// - errc::header_injection: CR, LF or NUL in any value that reaches a header
///   (subject, display names, address parts, extra header names and values,
///   attachment filenames, content types and ids, message ids, unsubscribe URIs);
/// - errc::invalid_address: `from`, a recipient or `reply_to` fails address
///   syntax, or a display name holds control characters or ill-formed UTF-8;
/// - errc::invalid_header: an extra header name that is not printable ASCII
///   without ':' or space, or that names a field the writer owns (From, To, Cc,
///   Bcc, Reply-To, Subject, Date, Message-ID, MIME-Version, In-Reply-To,
///   References, Content-*, List-Unsubscribe*); a header value or filename
///   with control characters or ill-formed UTF-8; a message id that is not
///   "left@right"; a content type that is not "type/subtype[; params]";
/// - errc::invalid_argument: no recipient at all, no text, HTML or attachment,
///   an attachment typed multipart/* or message/* (attachments are always
///   base64, which RFC 2046 forbids for those), or an unsubscribe URL that is
///   not https (RFC 8058) or holds spaces, angle brackets or non-ASCII.
///
/// Message ids (message_id, in_reply_to, references) and content ids are
/// given without angle brackets; a pair around the whole id is tolerated.
MAILERS_API error_code validate_message(const message& m);

/// Renders `m` to RFC 5322 octets with CRLF line endings, every line at most
/// 998 octets, non-ASCII header text as RFC 2047 encoded-words, bodies in
/// quoted-printable (text) or base64 (attachments). Fills in Message-ID and
/// Date when the message has none. Never throws on bad input: returns an
/// error and writes nothing.
///
/// Structure: text alone is text/plain, HTML alone text/html, both a
/// multipart/alternative; attachments with a content_id sit in a
/// multipart/related next to the HTML (in multipart/mixed when there is no
/// HTML); other attachments make multipart/mixed the outermost part.
///
/// Text bodies go as 7bit when they are ASCII with lines of at most 998
/// octets and no line starting with "." or "From "; otherwise as
/// quoted-printable, or as 8bit when `opts.allow_8bit` and only non-ASCII
/// octets stood in the way. Line endings (CRLF, LF, CR) become CRLF. A
/// single-part body gains a final CRLF when it lacks one.
///
/// Addresses are written with their domain as an A-label; a UTF-8 local part
/// is written as is (RFC 6532) and needs an SMTPUTF8 transport. Display names
/// with specials are quoted, non-ASCII ones encoded.
///
/// Errors: those of validate_message; errc::header_injection or
/// errc::invalid_argument for a bad `opts.message_id_domain`;
/// errc::message_too_large when the result would exceed `opts.max_size`
/// (checked before rendering when the attachments alone exceed it).
MAILERS_API boost::system::result<std::string> render_message(const message& m,
                                                              const render_options& opts = {});

/// Generates a new globally unique message id "<random>@<domain>" (no angle brackets):
/// 128 bits from OpenSSL's CSPRNG as 26 base32 characters, then the domain as a
/// lower-case A-label. An empty or invalid domain gives "...@mailers.invalid"
/// (RFC 2606) rather than an error. Thread-safe and fork-safe.
MAILERS_API std::string make_message_id(std::string_view domain);

/// RFC 5322 date-time in UTC, e.g. "Fri, 27 Nov 2026 23:20:25 +0000";
/// fractions of a second are dropped.
MAILERS_API std::string format_rfc5322_date(time_point t);

}  // namespace mailers
