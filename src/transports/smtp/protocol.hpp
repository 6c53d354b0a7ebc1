// SMTP protocol pieces without I/O: EHLO keywords, command text, SASL
// initial responses, dot-stuffing.
#pragma once

#include <cstdint>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

#include "transports/smtp/reply.hpp"

namespace mailers::detail::smtp {

/// What the server said it supports in its EHLO reply.
struct capabilities {
    bool esmtp = false;  ///< false after a HELO fallback: no extensions at all
    bool starttls = false;
    bool pipelining = false;
    bool eight_bit_mime = false;
    bool smtputf8 = false;
    bool enhanced_status_codes = false;
    bool size = false;
    std::uint64_t size_limit = 0;  ///< 0 with `size`: no fixed limit announced
    bool auth_plain = false;
    bool auth_login = false;
    bool auth_xoauth2 = false;
    std::string auth_mechanisms;  ///< the AUTH line as announced, for error messages
};

/// Parses the lines of a 250 reply to EHLO (the first line is the server's
/// greeting, the others keywords). Unknown keywords are ignored; keywords
/// and mechanisms are case-insensitive. "AUTH=LOGIN" (pre-RFC 4954 syntax)
/// is read as AUTH.
capabilities parse_ehlo(const reply& r);

/// Appends "<addr>" where `addr` is a bare addr-spec (may be empty: the
/// null reverse-path).
void append_path(std::string& out, std::string_view addr);

/// What MAIL FROM declares about the message.
struct mail_parameters {
    std::uint64_t size = 0;  ///< SIZE=, when the server offers SIZE (0 = omit)
    bool body_8bit = false;  ///< BODY=8BITMIME
    bool smtputf8 = false;   ///< SMTPUTF8
};

void append_mail_from(std::string& out, std::string_view from, const mail_parameters& p);
void append_rcpt_to(std::string& out, std::string_view to);

/// "AUTH PLAIN <base64(\0user\0password)>\r\n" (RFC 4616, initial response
/// per RFC 4954).
void append_auth_plain(std::string& out, std::string_view user, std::string_view password);
/// The base64 of one AUTH LOGIN answer (user name or password) and CRLF.
void append_base64_line(std::string& out, std::string_view value);
/// "AUTH XOAUTH2 <base64(user=U\1auth=Bearer T\1\1)>\r\n", Google's and
/// Microsoft's SASL mechanism for OAuth 2.0 access tokens.
void append_auth_xoauth2(std::string& out, std::string_view user, std::string_view token);

/// Decodes base64 (for the server's SASL challenges, shown in diagnostics);
/// returns false on invalid input.
bool decode_base64(std::string_view in, std::string& out);

/// Facts about a rendered message that decide how it is sent.
struct message_scan {
    bool header_8bit = false;  ///< non-ASCII in the header section: needs SMTPUTF8
    bool body_8bit = false;    ///< non-ASCII in the body: needs 8BITMIME
    bool needs_stuffing = false;
    bool ends_with_crlf = false;
};

message_scan scan_message(std::string_view data) noexcept;

/// Appends `data` dot-stuffed (RFC 5321 section 4.5.2: a line that starts
/// with '.' gets another '.') followed by the end-of-data line, adding a CRLF
/// first when `data` does not end with one.
void append_dot_stuffed(std::string& out, std::string_view data);

/// The end-of-data sequence for a message whose last octets are (or are
/// not) CRLF.
constexpr std::string_view end_of_data(bool ends_with_crlf) noexcept {
    return ends_with_crlf ? std::string_view{".\r\n"} : std::string_view{"\r\n.\r\n"};
}

/// True when `s` has no octet >= 0x80.
bool is_ascii(std::string_view s) noexcept;

}  // namespace mailers::detail::smtp
