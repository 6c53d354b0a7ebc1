// The workspace-wide do-not-contact list: entry types and the documented
// address normalisation every check goes through.
//
// Normalisation (always on):
//   * surrounding white space and a display name are removed;
//   * the domain is converted to its lower-case ASCII form (IDNA 2008 with
//     the UTS #46 mapping, so "Bücher.example", "BU\u0308cher.example"
//     (decomposed), full-width letters and "xn--bcher-kva.example" are one),
//     and the whole address must still fit in 254 octets in that form (the
//     engine refuses to send to one that does not, so it needs no entry);
//   * an address literal is the host it names, written one way: IPv4 in
//     decimal without leading zeros ("[192.000.002.001]" is "[192.0.2.1]";
//     RFC 5321's Snum allows up to three digits and they are decimal, so
//     "010" is ten), IPv6 as "[IPv6:" plus the RFC 5952 form (lower-case
//     hexadecimal, no leading zeros, "::" for the longest run of two or more
//     zero groups, so "[IPv6:2001:0DB8:0:0:0:0:0:1]" is "[IPv6:2001:db8::1]").
//     An IPv4-mapped IPv6 address ("[IPv6:::ffff:192.0.2.1]") is the IPv4
//     literal it maps ("[192.0.2.1]"): a connection to it reaches that host;
//   * the local part is in Unicode NFC (RFC 6532), so precomposed "é" (U+00E9)
//     and "e" followed by U+0301 are one;
//   * the local part is compared case-insensitively (ASCII and UTF-8 simple
//     case folding, Unicode CaseFolding.txt statuses C and S: "ẞ" is "ß",
//     but "ß" is not "ss"), folded in NFD and composed again, the canonical
//     caseless match of Unicode section 3.13. RFC 5321 allows case-sensitive
//     local parts, but no mainstream mailbox provider uses them, and for a
//     do-not-contact list a false match is the safe error;
//   * a quoted local part whose content (after the two steps above) is a
//     dot-atom is unquoted ("\"john\"@d" is "john@d", RFC 5321 section
//     4.1.2); any other keeps one quoting, with only '"' and '\' escaped.
//     NFC turns U+037E (Greek question mark) into ';', which needs quotes;
//   * an address whose normalised local part is over 64 octets is refused
//     (NFC lengthens a few characters: U+0958 becomes U+0915 U+093C).
// Optional folding (off by default; `suppression_options`), for local parts
// that are (or unquote to) dot-atoms:
//   * `fold_plus_tags`: "user+tag@d" is "user@d" (for every domain); the tag
//     stays when dropping it would leave no valid name ("+tag@d", "a.+tag@d");
//   * `fold_gmail_dots`: dots in the local part are ignored for gmail.com
//     and googlemail.com, and googlemail.com is gmail.com.
// Normalising a key again gives the same key. Case folding never lengthens
// a local part (so U+2C65 and U+2C66 fold to U+023A and U+023E, against
// CaseFolding.txt's direction), and a canonical address literal is never
// longer than a spelling of it; a key is longer than the address it came
// from only where A-labels are longer than the domain as written or NFC
// lengthens the local part.
//
// A domain entry "example.com" suppresses every address at example.com and at
// any subdomain of it (a.example.com), never at "notexample.com".
#pragma once

#include <boost/system/result.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <string>
#include <string_view>

namespace mailers {

enum class suppression_reason {
    unsubscribe,
    hard_bounce,
    complaint,
    manual,
    legal,
};

MAILERS_API std::string_view to_string(suppression_reason r) noexcept;
/// Parses "unsubscribe", "hard_bounce", "complaint", "manual", "legal" in
/// any letter case; anything else is errc::invalid_argument.
MAILERS_API boost::system::result<suppression_reason> parse_suppression_reason(std::string_view s);

enum class suppression_kind { address, domain };

MAILERS_API std::string_view to_string(suppression_kind k) noexcept;

struct suppression_entry {
    suppression_kind kind = suppression_kind::address;
    std::string value;  ///< normalised address or domain (see normalise_*)
    suppression_reason reason = suppression_reason::manual;
    std::string source;  ///< free text: "ses-webhook", "csv-import", "api", ...
    time_point created_at{};
    friend bool operator==(const suppression_entry&, const suppression_entry&) = default;
};

struct suppression_options {
    bool fold_plus_tags = false;
    bool fold_gmail_dots = false;
    friend bool operator==(const suppression_options&, const suppression_options&) = default;
};

/// The normalised key of an address (see the rules above), or
/// errc::invalid_address.
MAILERS_API boost::system::result<std::string> normalise_address(
    std::string_view addr, const suppression_options& opts = {});

/// Whether `value` has the form an erased person's address entry takes:
/// "erased:" and 64 lower-case hexadecimal digits, a keyed hash of the
/// address (docs/privacy.md). No address normalises to one.
MAILERS_API bool is_erased_value(std::string_view value) noexcept;

/// The normalised key of a domain entry: lower-case A-label form, no
/// trailing dot, or errc::invalid_address (also for address literals,
/// wildcards and anything holding '@').
MAILERS_API boost::system::result<std::string> normalise_domain(std::string_view domain);

}  // namespace mailers
