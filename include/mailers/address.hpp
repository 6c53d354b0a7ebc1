// Email addresses: parsing, validation and normalisation.
//
// Syntax follows RFC 5321 (the envelope) with RFC 6531 UTF-8 local parts and
// RFC 5890 internationalised domains: a local part of at most 64 octets, a
// domain of at most 255 octets with labels of at most 63, a whole address of
// at most 254 octets. Quoted local parts are accepted; comments, source
// routes and IP-literal domains other than [IPv4]/[IPv6:...] are refused.
// Address literals follow RFC 5321 section 4.1.3: an IPv4 part is 1 to 3
// decimal digits (a leading zero is allowed, "010" is ten), and in IPv6 "::"
// stands for at least two zero groups, so "[IPv6:1::2:3:4:5:6:7]" is refused.
#pragma once

#include <boost/system/result.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <string>
#include <string_view>

namespace mailers {

/// A mailbox address `local@domain` with an optional display name.
struct address {
    std::string local;         ///< local part, as written (case preserved)
    std::string domain;        ///< domain, as written (U-label or A-label)
    std::string display_name;  ///< UTF-8, unencoded; may be empty

    /// "local@domain" without display name.
    std::string addr_spec() const { return local + "@" + domain; }
    friend bool operator==(const address&, const address&) = default;
};

/// Parses "user@example.com" or "Display Name <user@example.com>" (the display
/// name may be a quoted-string). Returns errc::invalid_address with no side
/// effects when the input is not a single valid address; CR, LF and NUL are
/// always refused.
///
/// The display name is an RFC 5322 phrase with UTF-8 allowed (RFC 6532) and
/// "." accepted in atoms ("John Q. Public"); quoted-strings are unquoted and
/// words are joined by one space. Specials outside quotes ("Doe, John"
/// unquoted), comments, control characters and ill-formed UTF-8 are refused.
/// RFC 2047 encoded-words are kept as written, not decoded. Whitespace around
/// the input and inside the angle brackets is ignored.
MAILERS_API boost::system::result<address> parse_address(std::string_view text);

/// True when `text` is a valid bare addr-spec (no display name).
MAILERS_API bool is_valid_addr_spec(std::string_view text) noexcept;

/// Converts a domain to its lower-cased ASCII (A-label, IDNA 2008) form.
/// Returns errc::invalid_address when the domain cannot be converted.
MAILERS_API boost::system::result<std::string> domain_to_ascii(std::string_view domain);

}  // namespace mailers
