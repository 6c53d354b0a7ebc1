// libFuzzer entry point for the address parser and the suppression key.
// Beyond "does not crash", it checks the parser's contract: whatever it
// accepts is a valid addr-spec that re-parses to itself and renders into a
// message without breaking a line. And it checks the key's: normalising a
// key gives it back, and every respelling a receiving server treats as the
// same address (the local part in NFC or NFD or quoted, the domain in
// another letter case or as U-labels or A-labels, an address literal
// written out in full) has the same key.
#include <arpa/inet.h>
#include <idn2.h>
#include <uninorm.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mailers/address.hpp>
#include <mailers/mime.hpp>
#include <mailers/suppression.hpp>
#include <string>
#include <string_view>

namespace {

void require(bool ok) {
    if (!ok) __builtin_trap();
}

bool has_line_break_or_nul(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

bool is_ascii(std::string_view s) {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

std::string unicode_form(uninorm_t form, std::string_view s) {
    std::size_t n = 0;
    std::uint8_t* p =
        u8_normalize(form, reinterpret_cast<const std::uint8_t*>(s.data()), s.size(), nullptr, &n);
    require(p != nullptr);
    std::string out(reinterpret_cast<const char*>(p), n);
    std::free(p);
    return out;
}

std::string swap_ascii_case(std::string s) {
    for (char& c : s) {
        if (c >= 'a' && c <= 'z')
            c = static_cast<char>(c - 32);
        else if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c + 32);
    }
    return s;
}

// Spellings of the host of a canonical address literal that name it too:
// every group or octet padded with zeros, hexadecimal in upper case, and an
// IPv4 host as an IPv4-mapped IPv6 address.
std::string padded_v4(const unsigned char* b) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%03u.%03u.%03u.%03u", b[0], b[1], b[2], b[3]);
    return buf;
}

std::string padded_v6_groups(const unsigned char* b, int groups) {
    std::string out;
    char buf[8];
    for (int i = 0; i < groups; ++i) {
        std::snprintf(buf, sizeof buf, "%s%02X%02X", i ? ":" : "", b[2 * i], b[2 * i + 1]);
        out += buf;
    }
    return out;
}

template <class F>
void literal_respellings(std::string_view canonical, F&& same) {
    const std::string inner(canonical.substr(1, canonical.size() - 2));
    unsigned char b[16];
    if (inet_pton(AF_INET, inner.c_str(), b) == 1) {
        same("[" + padded_v4(b) + "]");
        same("[IPv6:0:0:0:0:0:ffff:" + padded_v6_groups(b, 2) + "]");
        same("[ipv6:::FFFF:" + padded_v4(b) + "]");
        return;
    }
    require(inner.rfind("IPv6:", 0) == 0 && inet_pton(AF_INET6, inner.c_str() + 5, b) == 1);
    same("[IPV6:" + padded_v6_groups(b, 8) + "]");
    same("[IPv6:" + padded_v6_groups(b, 6) + ":" + padded_v4(b + 12) + "]");
}

void check_key(const mailers::address& a) {
    const std::string spec = a.addr_spec();
    const auto key = mailers::normalise_address(spec);
    // Refused only when the A-label form is over 254 octets or the
    // normalised local part is over 64.
    if (!key) return;
    const auto again = mailers::normalise_address(*key);
    require(again.has_value() && *again == *key);
    // Only A-labels and NFC make a key longer than its address.
    if (is_ascii(spec)) require(key->size() <= spec.size());

    const auto same = [&](const std::string& local, const std::string& domain) {
        const std::string respelt = local + "@" + domain;
        // A respelling may not be valid syntax (NFC turns U+037E into ';',
        // quotes add two octets); those that are must have the same key.
        if (!mailers::is_valid_addr_spec(respelt)) return;
        const auto k = mailers::normalise_address(respelt);
        require(k.has_value() && *k == *key);
    };
    const std::string& local = a.local;
    const std::string& domain = a.domain;
    same(unicode_form(UNINORM_NFD, local), domain);
    same(unicode_form(UNINORM_NFC, local), domain);
    same(swap_ascii_case(local), domain);
    if (local.front() != '"') {
        same("\"" + local + "\"", domain);
        std::string escaped = "\"";
        for (char c : local) {
            if (static_cast<unsigned char>(c) < 0x80) escaped += '\\';
            escaped += c;
        }
        same(escaped + "\"", domain);
    }
    same(local, swap_ascii_case(domain));
    if (domain.front() == '[') {
        literal_respellings(std::string_view(*key).substr(key->rfind('@') + 1),
                            [&](const std::string& d) { same(local, d); });
        return;
    }
    const auto ascii = mailers::domain_to_ascii(domain);
    require(ascii.has_value());
    same(local, *ascii);
    char* unicode = nullptr;
    if (idn2_to_unicode_8z8z(ascii->c_str(), &unicode, 0) == IDN2_OK) {
        same(local, unicode);
        same(local, unicode_form(UNINORM_NFD, unicode));
    }
    idn2_free(unicode);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);

    const bool bare = mailers::is_valid_addr_spec(in);
    const auto parsed = mailers::parse_address(in);
    if (bare) {
        require(parsed.has_value());
        require(parsed->display_name.empty());
        require(parsed->addr_spec() == in);
    }
    if (parsed) {
        const mailers::address& a = *parsed;
        const std::string spec = a.addr_spec();
        require(spec.size() <= 254 && a.local.size() <= 64 && a.domain.size() <= 255);
        require(!has_line_break_or_nul(spec) && !has_line_break_or_nul(a.display_name));
        require(mailers::is_valid_addr_spec(spec));
        const auto again = mailers::parse_address(spec);
        require(again.has_value() && again->local == a.local && again->domain == a.domain);
        require(mailers::domain_to_ascii(a.domain).has_value());
        check_key(a);

        mailers::message m;
        m.from = a;
        m.to = {a};
        m.text = "x";
        const auto wire = mailers::render_message(m);
        require(wire.has_value());
        std::size_t line = 0;
        for (std::size_t i = 0; i < wire->size(); ++i) {
            const char c = (*wire)[i];
            if (c == '\r') require(i + 1 < wire->size() && (*wire)[i + 1] == '\n');
            if (c == '\n') {
                require(i > 0 && (*wire)[i - 1] == '\r');
                line = 0;
            } else {
                require(++line <= 999);  // 998 octets plus the CR
            }
        }
    }
    (void)mailers::domain_to_ascii(in);
    return 0;
}
