// Address syntax checks shared by the public parser (address.cpp) and the
// MIME writer, which must re-check addresses a caller built field by field.
#pragma once

#include <string>
#include <string_view>

namespace mailers::mime {

inline constexpr std::size_t max_local_part = 64;  // RFC 5321 4.5.3.1.1
inline constexpr std::size_t max_domain = 255;     // RFC 5321 4.5.3.1.2
inline constexpr std::size_t max_label = 63;       // RFC 1035 2.3.4
inline constexpr std::size_t max_addr_spec = 254;  // RFC 5321 path (256) minus "<>"

/// A local part as written: dot-atom or quoted-string (RFC 5321), with
/// RFC 6531 UTF-8 allowed, 1 to 64 octets.
bool valid_local_part(std::string_view local) noexcept;

/// A domain as written: an LDH or internationalised host name, or an
/// [IPv4] / [IPv6:...] literal; at most 255 octets.
bool valid_domain(std::string_view domain) noexcept;

/// Both parts plus the 254-octet limit on the whole addr-spec.
bool valid_mailbox(std::string_view local, std::string_view domain) noexcept;

/// Appends the ASCII form of a valid domain: ASCII names as written (or
/// lower-cased when `lower`), U-labels as lower-case A-labels, IP literals
/// unchanged. Returns false, leaving `out` unchanged, when IDNA refuses it.
bool append_ascii_domain(std::string& out, std::string_view domain, bool lower);

/// Appends the one spelling of an address literal's host, so that every
/// way of writing the same address gives the same text: "[a.b.c.d]" in
/// decimal without leading zeros, and "[IPv6:...]" in the RFC 5952 form
/// (lower-case hexadecimal, no leading zeros, "::" for the longest run of
/// two or more zero groups). An IPv4-mapped address (::ffff:a.b.c.d) is the
/// IPv4 host it maps, which is where a connection to it goes, so it is
/// written "[a.b.c.d]". The result is never longer than `literal`. Returns
/// false, leaving `out` unchanged, when `literal` is not a valid RFC 5321
/// address literal.
bool append_canonical_address_literal(std::string& out, std::string_view literal);

}  // namespace mailers::mime
