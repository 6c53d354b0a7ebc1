// Address and domain normalisation for suppression keys (the rules are
// documented in include/mailers/suppression.hpp).
#include <uninorm.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <iterator>
#include <mailers/address.hpp>
#include <mailers/suppression.hpp>

#include "mime/address_syntax.hpp"
#include "mime/text.hpp"

namespace mailers {

namespace {

// Unicode simple case folding (CaseFolding.txt statuses C and S, Unicode
// 14.0) as runs: code points first..last, stepping by `stride`, fold to
// themselves plus `delta`. Full foldings (status F, e.g. U+00DF to "ss") are
// left out on purpose: they change the length of a local part, and RFC 6531
// mail systems that fold at all use the simple mapping.
//
// One deliberate departure: CaseFolding.txt folds U+023A and U+023E to
// U+2C65 and U+2C66, the only foldings that grow in UTF-8 (two bytes to
// three). Here those pairs fold the other way (U+2C65 to U+023A, U+2C66 to
// U+023E), so a key is never longer than the address and always parses again.
struct fold_run {
    char32_t first;
    char32_t last;
    std::int32_t delta;
    std::uint8_t stride;
};

constexpr fold_run fold_runs[] = {
    {0x0041, 0x005A, 32, 1},     {0x00B5, 0x00B5, 775, 1},    {0x00C0, 0x00D6, 32, 1},
    {0x00D8, 0x00DE, 32, 1},     {0x0100, 0x012E, 1, 2},      {0x0132, 0x0136, 1, 2},
    {0x0139, 0x0147, 1, 2},      {0x014A, 0x0176, 1, 2},      {0x0178, 0x0178, -121, 1},
    {0x0179, 0x017D, 1, 2},      {0x017F, 0x017F, -268, 1},   {0x0181, 0x0181, 210, 1},
    {0x0182, 0x0184, 1, 2},      {0x0186, 0x0186, 206, 1},    {0x0187, 0x0187, 1, 1},
    {0x0189, 0x018A, 205, 1},    {0x018B, 0x018B, 1, 1},      {0x018E, 0x018E, 79, 1},
    {0x018F, 0x018F, 202, 1},    {0x0190, 0x0190, 203, 1},    {0x0191, 0x0191, 1, 1},
    {0x0193, 0x0193, 205, 1},    {0x0194, 0x0194, 207, 1},    {0x0196, 0x0196, 211, 1},
    {0x0197, 0x0197, 209, 1},    {0x0198, 0x0198, 1, 1},      {0x019C, 0x019C, 211, 1},
    {0x019D, 0x019D, 213, 1},    {0x019F, 0x019F, 214, 1},    {0x01A0, 0x01A4, 1, 2},
    {0x01A6, 0x01A6, 218, 1},    {0x01A7, 0x01A7, 1, 1},      {0x01A9, 0x01A9, 218, 1},
    {0x01AC, 0x01AC, 1, 1},      {0x01AE, 0x01AE, 218, 1},    {0x01AF, 0x01AF, 1, 1},
    {0x01B1, 0x01B2, 217, 1},    {0x01B3, 0x01B5, 1, 2},      {0x01B7, 0x01B7, 219, 1},
    {0x01B8, 0x01B8, 1, 1},      {0x01BC, 0x01BC, 1, 1},      {0x01C4, 0x01C4, 2, 1},
    {0x01C5, 0x01C5, 1, 1},      {0x01C7, 0x01C7, 2, 1},      {0x01C8, 0x01C8, 1, 1},
    {0x01CA, 0x01CA, 2, 1},      {0x01CB, 0x01DB, 1, 2},      {0x01DE, 0x01EE, 1, 2},
    {0x01F1, 0x01F1, 2, 1},      {0x01F2, 0x01F4, 1, 2},      {0x01F6, 0x01F6, -97, 1},
    {0x01F7, 0x01F7, -56, 1},    {0x01F8, 0x021E, 1, 2},      {0x0220, 0x0220, -130, 1},
    {0x0222, 0x0232, 1, 2},      {0x023B, 0x023B, 1, 1},      {0x023D, 0x023D, -163, 1},
    {0x0241, 0x0241, 1, 1},      {0x0243, 0x0243, -195, 1},   {0x0244, 0x0244, 69, 1},
    {0x0245, 0x0245, 71, 1},     {0x0246, 0x024E, 1, 2},      {0x0345, 0x0345, 116, 1},
    {0x0370, 0x0372, 1, 2},      {0x0376, 0x0376, 1, 1},      {0x037F, 0x037F, 116, 1},
    {0x0386, 0x0386, 38, 1},     {0x0388, 0x038A, 37, 1},     {0x038C, 0x038C, 64, 1},
    {0x038E, 0x038F, 63, 1},     {0x0391, 0x03A1, 32, 1},     {0x03A3, 0x03AB, 32, 1},
    {0x03C2, 0x03C2, 1, 1},      {0x03CF, 0x03CF, 8, 1},      {0x03D0, 0x03D0, -30, 1},
    {0x03D1, 0x03D1, -25, 1},    {0x03D5, 0x03D5, -15, 1},    {0x03D6, 0x03D6, -22, 1},
    {0x03D8, 0x03EE, 1, 2},      {0x03F0, 0x03F0, -54, 1},    {0x03F1, 0x03F1, -48, 1},
    {0x03F4, 0x03F4, -60, 1},    {0x03F5, 0x03F5, -64, 1},    {0x03F7, 0x03F7, 1, 1},
    {0x03F9, 0x03F9, -7, 1},     {0x03FA, 0x03FA, 1, 1},      {0x03FD, 0x03FF, -130, 1},
    {0x0400, 0x040F, 80, 1},     {0x0410, 0x042F, 32, 1},     {0x0460, 0x0480, 1, 2},
    {0x048A, 0x04BE, 1, 2},      {0x04C0, 0x04C0, 15, 1},     {0x04C1, 0x04CD, 1, 2},
    {0x04D0, 0x052E, 1, 2},      {0x0531, 0x0556, 48, 1},     {0x10A0, 0x10C5, 7264, 1},
    {0x10C7, 0x10C7, 7264, 1},   {0x10CD, 0x10CD, 7264, 1},   {0x13F8, 0x13FD, -8, 1},
    {0x1C80, 0x1C80, -6222, 1},  {0x1C81, 0x1C81, -6221, 1},  {0x1C82, 0x1C82, -6212, 1},
    {0x1C83, 0x1C84, -6210, 1},  {0x1C85, 0x1C85, -6211, 1},  {0x1C86, 0x1C86, -6204, 1},
    {0x1C87, 0x1C87, -6180, 1},  {0x1C88, 0x1C88, 35267, 1},  {0x1C90, 0x1CBA, -3008, 1},
    {0x1CBD, 0x1CBF, -3008, 1},  {0x1E00, 0x1E94, 1, 2},      {0x1E9B, 0x1E9B, -58, 1},
    {0x1E9E, 0x1E9E, -7615, 1},  {0x1EA0, 0x1EFE, 1, 2},      {0x1F08, 0x1F0F, -8, 1},
    {0x1F18, 0x1F1D, -8, 1},     {0x1F28, 0x1F2F, -8, 1},     {0x1F38, 0x1F3F, -8, 1},
    {0x1F48, 0x1F4D, -8, 1},     {0x1F59, 0x1F5F, -8, 2},     {0x1F68, 0x1F6F, -8, 1},
    {0x1F88, 0x1F8F, -8, 1},     {0x1F98, 0x1F9F, -8, 1},     {0x1FA8, 0x1FAF, -8, 1},
    {0x1FB8, 0x1FB9, -8, 1},     {0x1FBA, 0x1FBB, -74, 1},    {0x1FBC, 0x1FBC, -9, 1},
    {0x1FBE, 0x1FBE, -7173, 1},  {0x1FC8, 0x1FCB, -86, 1},    {0x1FCC, 0x1FCC, -9, 1},
    {0x1FD8, 0x1FD9, -8, 1},     {0x1FDA, 0x1FDB, -100, 1},   {0x1FE8, 0x1FE9, -8, 1},
    {0x1FEA, 0x1FEB, -112, 1},   {0x1FEC, 0x1FEC, -7, 1},     {0x1FF8, 0x1FF9, -128, 1},
    {0x1FFA, 0x1FFB, -126, 1},   {0x1FFC, 0x1FFC, -9, 1},     {0x2126, 0x2126, -7517, 1},
    {0x212A, 0x212A, -8383, 1},  {0x212B, 0x212B, -8262, 1},  {0x2132, 0x2132, 28, 1},
    {0x2160, 0x216F, 16, 1},     {0x2183, 0x2183, 1, 1},      {0x24B6, 0x24CF, 26, 1},
    {0x2C00, 0x2C2F, 48, 1},     {0x2C60, 0x2C60, 1, 1},      {0x2C62, 0x2C62, -10743, 1},
    {0x2C63, 0x2C63, -3814, 1},  {0x2C64, 0x2C64, -10727, 1}, {0x2C65, 0x2C65, -10795, 1},
    {0x2C66, 0x2C66, -10792, 1}, {0x2C67, 0x2C6B, 1, 2},      {0x2C6D, 0x2C6D, -10780, 1},
    {0x2C6E, 0x2C6E, -10749, 1}, {0x2C6F, 0x2C6F, -10783, 1}, {0x2C70, 0x2C70, -10782, 1},
    {0x2C72, 0x2C72, 1, 1},      {0x2C75, 0x2C75, 1, 1},      {0x2C7E, 0x2C7F, -10815, 1},
    {0x2C80, 0x2CE2, 1, 2},      {0x2CEB, 0x2CED, 1, 2},      {0x2CF2, 0x2CF2, 1, 1},
    {0xA640, 0xA66C, 1, 2},      {0xA680, 0xA69A, 1, 2},      {0xA722, 0xA72E, 1, 2},
    {0xA732, 0xA76E, 1, 2},      {0xA779, 0xA77B, 1, 2},      {0xA77D, 0xA77D, -35332, 1},
    {0xA77E, 0xA786, 1, 2},      {0xA78B, 0xA78B, 1, 1},      {0xA78D, 0xA78D, -42280, 1},
    {0xA790, 0xA792, 1, 2},      {0xA796, 0xA7A8, 1, 2},      {0xA7AA, 0xA7AA, -42308, 1},
    {0xA7AB, 0xA7AB, -42319, 1}, {0xA7AC, 0xA7AC, -42315, 1}, {0xA7AD, 0xA7AD, -42305, 1},
    {0xA7AE, 0xA7AE, -42308, 1}, {0xA7B0, 0xA7B0, -42258, 1}, {0xA7B1, 0xA7B1, -42282, 1},
    {0xA7B2, 0xA7B2, -42261, 1}, {0xA7B3, 0xA7B3, 928, 1},    {0xA7B4, 0xA7C2, 1, 2},
    {0xA7C4, 0xA7C4, -48, 1},    {0xA7C5, 0xA7C5, -42307, 1}, {0xA7C6, 0xA7C6, -35384, 1},
    {0xA7C7, 0xA7C9, 1, 2},      {0xA7D0, 0xA7D0, 1, 1},      {0xA7D6, 0xA7D8, 1, 2},
    {0xA7F5, 0xA7F5, 1, 1},      {0xAB70, 0xABBF, -38864, 1}, {0xFF21, 0xFF3A, 32, 1},
    {0x10400, 0x10427, 40, 1},   {0x104B0, 0x104D3, 40, 1},   {0x10570, 0x1057A, 39, 1},
    {0x1057C, 0x1058A, 39, 1},   {0x1058C, 0x10592, 39, 1},   {0x10594, 0x10595, 39, 1},
    {0x10C80, 0x10CB2, 64, 1},   {0x118A0, 0x118BF, 32, 1},   {0x16E40, 0x16E5F, 32, 1},
    {0x1E900, 0x1E921, 34, 1},
};

constexpr bool fold_runs_sorted() {
    for (std::size_t i = 1; i < std::size(fold_runs); ++i)
        if (fold_runs[i].first <= fold_runs[i - 1].last) return false;
    return true;
}
static_assert(fold_runs_sorted(), "fold_runs must be sorted and disjoint for the binary search");

char32_t simple_fold(char32_t c) noexcept {
    if (c < 0x80) return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    const auto* it = std::upper_bound(std::begin(fold_runs), std::end(fold_runs), c,
                                      [](char32_t v, const fold_run& r) { return v < r.first; });
    if (it == std::begin(fold_runs)) return c;
    --it;
    if (c > it->last || (c - it->first) % it->stride != 0) return c;
    return static_cast<char32_t>(static_cast<std::int32_t>(c) + it->delta);
}

char ascii_lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

// Strict UTF-8: no overlong forms, no surrogates, nothing above U+10FFFF.
// Returns the number of bytes consumed, 0 for an invalid sequence.
std::size_t decode_utf8(std::string_view s, std::size_t i, char32_t& out) noexcept {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char b0 = byte(i);
    std::size_t len;
    char32_t c;
    char32_t min;
    if (b0 < 0x80) {
        out = b0;
        return 1;
    } else if ((b0 & 0xe0) == 0xc0) {
        len = 2, c = b0 & 0x1f, min = 0x80;
    } else if ((b0 & 0xf0) == 0xe0) {
        len = 3, c = b0 & 0x0f, min = 0x800;
    } else if ((b0 & 0xf8) == 0xf0) {
        len = 4, c = b0 & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (s.size() - i < len) return 0;
    for (std::size_t k = 1; k < len; ++k) {
        const unsigned char b = byte(i + k);
        if ((b & 0xc0) != 0x80) return 0;
        c = (c << 6) | (b & 0x3f);
    }
    if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff)) return 0;
    out = c;
    return len;
}

void append_utf8(std::string& out, char32_t c) {
    if (c < 0x80) {
        out += static_cast<char>(c);
    } else if (c < 0x800) {
        out += static_cast<char>(0xc0 | (c >> 6));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else if (c < 0x10000) {
        out += static_cast<char>(0xe0 | (c >> 12));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    } else {
        out += static_cast<char>(0xf0 | (c >> 18));
        out += static_cast<char>(0x80 | ((c >> 12) & 0x3f));
        out += static_cast<char>(0x80 | ((c >> 6) & 0x3f));
        out += static_cast<char>(0x80 | (c & 0x3f));
    }
}

// Case-folds `s` in place; false when it is not valid UTF-8. Never makes it
// longer (see simple_fold).
bool fold_case(std::string& s) {
    std::size_t i = 0;
    for (; i < s.size() && static_cast<unsigned char>(s[i]) < 0x80; ++i) s[i] = ascii_lower(s[i]);
    if (i == s.size()) return true;
    std::string out(s, 0, i);
    out.reserve(s.size() + 8);
    while (i < s.size()) {
        char32_t c;
        const std::size_t n = decode_utf8(s, i, c);
        if (n == 0) return false;
        append_utf8(out, simple_fold(c));
        i += n;
    }
    s = std::move(out);
    return true;
}

// Replaces `s` by its normalisation form `form` (libunistring); false when
// it is not valid UTF-8 or memory runs out.
bool unicode_normalise(uninorm_t form, std::string& s) {
    if (!mime::is_valid_utf8(s)) return false;
    // A local part is at most 64 octets, so this buffer nearly always fits
    // the result and libunistring allocates only for pathological input.
    std::array<std::uint8_t, 512> buf;
    std::size_t len = buf.size();
    std::uint8_t* p = u8_normalize(form, reinterpret_cast<const std::uint8_t*>(s.data()), s.size(),
                                   buf.data(), &len);
    if (p == nullptr) return false;
    s.assign(reinterpret_cast<const char*>(p), len);
    if (p != buf.data()) std::free(p);
    return true;
}

// True when `s` is valid UTF-8 made only of code points for which NFD,
// folding and NFC in turn give what folding alone gives: those below the
// combining diacritics (U+0300: Latin, IPA, spacing modifiers), Cyrillic
// letters, CJK unified ideographs and Hangul syllables. None of them is a
// combining mark, a Hangul jamo or a character NFC rewrites, so nothing in
// such a string composes with its neighbour, and their precomposed letters
// fold to precomposed letters, but for U+0130, whose decomposition folds to
// "i" + U+0307, which has no precomposed form. It spares most local parts
// the two passes through libunistring, which cost several times the rest of
// normalising an address.
bool composition_inert(std::string_view s) noexcept {
    for (std::size_t i = 0; i < s.size();) {
        char32_t c;
        const std::size_t n = decode_utf8(s, i, c);
        if (n == 0) return false;
        const bool inert = (c < 0x300 && c != 0x130) || (c >= 0x400 && c <= 0x482) ||
                           (c >= 0x48a && c <= 0x52f) || (c >= 0x4e00 && c <= 0x9fff) ||
                           (c >= 0xac00 && c <= 0xd7a3);
        if (!inert) return false;
        i += n;
    }
    return true;
}

// Canonical caseless form of a local part's content: NFC of the simple case
// folding of its NFD. Folding the decomposed form, as Unicode's canonical
// caseless match does (section 3.13), makes every canonically equivalent
// spelling fold alike ("\u1FB3" and "\u03B1\u0345" both end as
// "\u03B1\u03B9"), and composing afterwards gives NFC, which RFC 6532
// asks of addresses, for letters whose lower case has a precomposed form the
// upper case lacks ("H\u0331" becomes "\u1E96").
bool fold_local(std::string& s) {
    if (mime::is_ascii(s)) {
        for (char& c : s) c = ascii_lower(c);
        return true;
    }
    if (composition_inert(s)) return fold_case(s);
    return unicode_normalise(UNINORM_NFD, s) && fold_case(s) && unicode_normalise(UNINORM_NFC, s);
}

// RFC 5322 atext, widened by RFC 6531 to every non-ASCII octet.
bool is_atext(char ch) noexcept {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x80) return true;
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return std::string_view{"!#$%&'*+-/=?^_`{|}~"}.find(ch) != std::string_view::npos;
}

bool is_dot_atom(std::string_view s) noexcept {
    if (s.empty() || s.front() == '.' || s.back() == '.') return false;
    char prev = 0;
    for (char c : s) {
        if (c == '.' ? prev == '.' : !is_atext(c)) return false;
        prev = c;
    }
    return true;
}

std::string_view trim(std::string_view s) noexcept {
    constexpr std::string_view space = " \t\r\n\v\f";
    const auto b = s.find_first_not_of(space);
    if (b == std::string_view::npos) return {};
    return s.substr(b, s.find_last_not_of(space) - b + 1);
}

error_code invalid_address() noexcept {
    return make_error_code(errc::invalid_address);
}

// Appends the canonical spelling of a local part to `out`: its content
// (a quoted string without quotes and escapes) in caseless NFC form, unquoted
// when that is a dot-atom, for "\"john\"" is the same mailbox as "john"
// (RFC 5321 section 4.1.2), and otherwise quoted with the fewest escapes.
// The quoting is decided after normalising because NFC can change it: U+037E
// (Greek question mark) is ';'. Sets `dot_atom` when the result is unquoted,
// the only form the optional foldings apply to. False when the content is
// not valid UTF-8 or the result is over RFC 5321's 64 octets (NFC lengthens
// a few characters, U+0958 to U+0915 U+093C for one).
bool canonical_local(std::string_view local, std::string& out, bool& dot_atom) {
    const bool quoted = local.size() >= 2 && local.front() == '"' && local.back() == '"';
    if (!quoted && mime::is_ascii(local)) {
        // An ASCII dot-atom, the common case, only needs lower-casing.
        dot_atom = true;
        const std::size_t start = out.size();
        out += local;
        for (std::size_t i = start; i < out.size(); ++i) out[i] = ascii_lower(out[i]);
        return true;
    }
    std::string content;
    content.reserve(local.size());
    if (quoted) {
        for (std::size_t i = 1; i + 1 < local.size(); ++i) {
            if (local[i] == '\\') {
                if (++i + 1 >= local.size()) return false;
            }
            content += local[i];
        }
    } else {
        content = local;
    }
    if (!fold_local(content)) return false;
    const std::size_t start = out.size();
    dot_atom = is_dot_atom(content);
    if (dot_atom) {
        out += content;
    } else {
        out += '"';
        mime::append_quoted(out, content);
        out += '"';
    }
    return out.size() - start <= mime::max_local_part;
}

// Appends the lower-case domain, or the canonical address literal, to
// `out`. `checked` says parse_address has already validated the domain:
// then an ASCII domain without A-labels ("xn--", whose punycode IDNA
// checks) only needs lower-casing, and skipping a second pass through
// domain_to_ascii saves a third of the cost of a CSV import line.
bool append_canonical_domain(std::string_view domain, bool checked, std::string& out) {
    if (!domain.empty() && domain.front() == '[')
        return mime::append_canonical_address_literal(out, domain);
    const std::size_t start = out.size();
    out += domain;
    bool plain = checked;
    bool label_start = true;
    for (std::size_t i = start; plain && i < out.size(); ++i) {
        const char c = out[i];
        if (static_cast<unsigned char>(c) >= 0x80) plain = false;
        if (label_start && (c == 'x' || c == 'X') && out.size() - i >= 4 &&
            (out[i + 1] == 'n' || out[i + 1] == 'N') && out[i + 2] == '-' && out[i + 3] == '-')
            plain = false;
        label_start = c == '.';
        out[i] = ascii_lower(c);
    }
    if (plain) return true;
    out.resize(start);
    auto ascii = domain_to_ascii(domain);
    if (!ascii) return false;
    out += *ascii;
    for (std::size_t i = start; i < out.size(); ++i) out[i] = ascii_lower(out[i]);
    return true;
}

// What domain_to_ascii returns is checked again here, because a domain
// entry suppresses whole subtrees: "", "a..b" or "*" must never become one.
bool is_domain_key(std::string_view d) noexcept {
    if (d.empty() || d.size() > 253) return false;
    std::size_t label = 0;
    for (char c : d) {
        if (c == '.') {
            if (label == 0) return false;
            label = 0;
            continue;
        }
        const bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        if (!ok || ++label > 63) return false;
    }
    return label != 0;
}

}  // namespace

std::string_view to_string(suppression_reason r) noexcept {
    switch (r) {
        case suppression_reason::unsubscribe:
            return "unsubscribe";
        case suppression_reason::hard_bounce:
            return "hard_bounce";
        case suppression_reason::complaint:
            return "complaint";
        case suppression_reason::manual:
            return "manual";
        case suppression_reason::legal:
            return "legal";
    }
    return "unknown";
}

boost::system::result<suppression_reason> parse_suppression_reason(std::string_view s) {
    constexpr std::array all = {suppression_reason::unsubscribe, suppression_reason::hard_bounce,
                                suppression_reason::complaint, suppression_reason::manual,
                                suppression_reason::legal};
    for (auto r : all)
        if (mime::iequals(s, to_string(r))) return r;
    return make_error_code(errc::invalid_argument);
}

boost::system::result<std::string> normalise_address(std::string_view addr,
                                                     const suppression_options& opts) {
    auto parsed = parse_address(trim(addr));
    if (!parsed) return invalid_address();

    std::string key;
    key.reserve(parsed->local.size() + 1 + parsed->domain.size());
    bool dot_atom = false;
    if (!canonical_local(parsed->local, key, dot_atom)) return invalid_address();
    std::size_t at = key.size();
    key += '@';
    if (!append_canonical_domain(parsed->domain, true, key)) return invalid_address();
    // The limit holds for the form that goes on the wire: A-labels can make
    // an address that fits as written too long to send, and to import back.
    if (key.size() > mime::max_addr_spec) return invalid_address();
    if (!dot_atom || (!opts.fold_plus_tags && !opts.fold_gmail_dots)) return key;

    // Dots go first: for Gmail "a.+x" is "a+x", whose tag then folds too,
    // and folding a key again must not find anything left to fold.
    if (const auto domain = std::string_view(key).substr(at + 1);
        opts.fold_gmail_dots && (domain == "gmail.com" || domain == "googlemail.com")) {
        key.resize(at);
        std::erase(key, '.');
        at = key.size();
        key += "@gmail.com";
    }
    if (opts.fold_plus_tags) {
        // Only a tag after a usable name is dropped: "+x" and "a.+x" keep
        // theirs, because "" and "a." are not local parts.
        const auto plus = std::string_view(key).substr(0, at).find('+');
        if (plus != std::string_view::npos && plus != 0 && key[plus - 1] != '.')
            key.erase(plus, at - plus);
    }
    return key;
}

boost::system::result<std::string> normalise_domain(std::string_view domain) {
    domain = trim(domain);
    if (!domain.empty() && domain.back() == '.') domain.remove_suffix(1);
    if (domain.empty() || domain.front() == '[' ||
        domain.find_first_of("@ \t\r\n") != std::string_view::npos)
        return invalid_address();
    std::string key;
    if (!append_canonical_domain(domain, false, key) || !is_domain_key(key))
        return invalid_address();
    return key;
}

bool is_erased_value(std::string_view value) noexcept {
    constexpr std::string_view prefix = "erased:";
    if (value.size() != prefix.size() + 64 || !value.starts_with(prefix)) return false;
    return std::all_of(value.begin() + prefix.size(), value.end(), [](char c) {
        return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
    });
}

}  // namespace mailers
