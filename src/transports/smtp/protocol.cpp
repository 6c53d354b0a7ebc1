#include "transports/smtp/protocol.hpp"

#include <charconv>
#include <cstring>

#include "mime/base64.hpp"
#include "mime/text.hpp"

namespace mailers::detail::smtp {
namespace {

// Splits "KEYWORD params" at the first space (or '=' for the old AUTH=).
std::string_view keyword_of(std::string_view line, std::string_view& params) noexcept {
    std::size_t end = 0;
    while (end < line.size() && line[end] != ' ' && line[end] != '=') ++end;
    params = end < line.size() ? line.substr(end + 1) : std::string_view{};
    return line.substr(0, end);
}

void read_auth_mechanisms(capabilities& caps, std::string_view params) {
    if (!caps.auth_mechanisms.empty()) caps.auth_mechanisms.push_back(' ');
    caps.auth_mechanisms.append(params);
    while (!params.empty()) {
        const auto sp = params.find(' ');
        const auto mech = params.substr(0, sp);
        if (mime::iequals(mech, "PLAIN")) caps.auth_plain = true;
        if (mime::iequals(mech, "LOGIN")) caps.auth_login = true;
        if (mime::iequals(mech, "XOAUTH2")) caps.auth_xoauth2 = true;
        if (sp == std::string_view::npos) break;
        params.remove_prefix(sp + 1);
    }
}

int base64_value(char c) noexcept {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

// Credentials pass through temporary strings on their way to base64; wipe
// them so a later heap dump or reuse of the block does not show them.
void wipe(std::string& s) noexcept {
    volatile char* p = s.data();
    for (std::size_t i = 0; i < s.size(); ++i) p[i] = 0;
    s.clear();
}

}  // namespace

capabilities parse_ehlo(const reply& r) {
    capabilities caps;
    caps.esmtp = true;
    std::string_view rest = r.text;
    bool first = true;
    while (!rest.empty() || first) {
        const auto nl = rest.find('\n');
        std::string_view line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        if (first) {
            first = false;  // the server's name and greeting, not a keyword
            if (rest.empty()) break;
            continue;
        }
        std::string_view params;
        const auto kw = keyword_of(line, params);
        if (mime::iequals(kw, "STARTTLS")) {
            caps.starttls = true;
        } else if (mime::iequals(kw, "PIPELINING")) {
            caps.pipelining = true;
        } else if (mime::iequals(kw, "8BITMIME")) {
            caps.eight_bit_mime = true;
        } else if (mime::iequals(kw, "SMTPUTF8")) {
            caps.smtputf8 = true;
        } else if (mime::iequals(kw, "ENHANCEDSTATUSCODES")) {
            caps.enhanced_status_codes = true;
        } else if (mime::iequals(kw, "SIZE")) {
            caps.size = true;
            std::uint64_t n = 0;
            const auto [p, ec] = std::from_chars(params.data(), params.data() + params.size(), n);
            if (ec == std::errc{} && p != params.data()) caps.size_limit = n;
        } else if (mime::iequals(kw, "AUTH")) {
            read_auth_mechanisms(caps, params);
        }
    }
    return caps;
}

void append_path(std::string& out, std::string_view addr) {
    out.push_back('<');
    out.append(addr);
    out.push_back('>');
}

void append_mail_from(std::string& out, std::string_view from, const mail_parameters& p) {
    out.append("MAIL FROM:");
    append_path(out, from);
    if (p.size != 0) {
        char buf[24];
        const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, p.size);
        out.append(" SIZE=");
        out.append(buf, static_cast<std::size_t>(end - buf));
    }
    if (p.body_8bit) out.append(" BODY=8BITMIME");
    if (p.smtputf8) out.append(" SMTPUTF8");
    out.append("\r\n");
}

void append_rcpt_to(std::string& out, std::string_view to) {
    out.append("RCPT TO:");
    append_path(out, to);
    out.append("\r\n");
}

void append_auth_plain(std::string& out, std::string_view user, std::string_view password) {
    std::string plain;
    plain.reserve(user.size() + password.size() + 2);
    plain.push_back('\0');  // no authorization identity: act as `user`
    plain.append(user);
    plain.push_back('\0');
    plain.append(password);
    out.append("AUTH PLAIN ");
    mime::append_base64(out, plain);
    out.append("\r\n");
    wipe(plain);
}

void append_base64_line(std::string& out, std::string_view value) {
    mime::append_base64(out, value);
    out.append("\r\n");
}

void append_auth_xoauth2(std::string& out, std::string_view user, std::string_view token) {
    std::string s;
    s.reserve(user.size() + token.size() + 24);
    s.append("user=");
    s.append(user);
    s.append(
        "\x01"
        "auth=Bearer ");
    s.append(token);
    s.append("\x01\x01");
    out.append("AUTH XOAUTH2 ");
    mime::append_base64(out, s);
    out.append("\r\n");
    wipe(s);
}

bool decode_base64(std::string_view in, std::string& out) {
    out.clear();
    unsigned acc = 0;
    int bits = 0;
    std::size_t pad = 0;
    for (char c : in) {
        if (c == '=') {
            ++pad;
            continue;
        }
        if (pad != 0) return false;  // data after padding
        const int v = base64_value(c);
        if (v < 0) return false;
        acc = (acc << 6) | static_cast<unsigned>(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    return pad <= 2;
}

message_scan scan_message(std::string_view data) noexcept {
    message_scan s;
    if (data.empty()) return s;
    s.ends_with_crlf = data.size() >= 2 && data[data.size() - 2] == '\r' && data.back() == '\n';
    s.needs_stuffing = data.front() == '.';
    bool in_header = true;
    bool line_start = true;
    bool line_empty_so_far = true;
    for (std::size_t i = 0; i < data.size(); ++i) {
        const auto c = static_cast<unsigned char>(data[i]);
        if (c == '\n') {
            // An empty line (only CR before LF) ends the header section.
            if (in_header && line_empty_so_far) in_header = false;
            line_start = true;
            line_empty_so_far = true;
            continue;
        }
        if (line_start && c == '.') s.needs_stuffing = true;
        line_start = false;
        if (c != '\r') line_empty_so_far = false;
        if (c >= 0x80) (in_header ? s.header_8bit : s.body_8bit) = true;
    }
    return s;
}

void append_dot_stuffed(std::string& out, std::string_view data) {
    out.reserve(out.size() + data.size() + data.size() / 64 + 8);
    std::size_t pos = 0;
    while (pos < data.size()) {
        if (data[pos] == '.') out.push_back('.');
        const auto nl =
            static_cast<const char*>(std::memchr(data.data() + pos, '\n', data.size() - pos));
        const std::size_t end =
            nl == nullptr ? data.size() : static_cast<std::size_t>(nl - data.data()) + 1;
        out.append(data.substr(pos, end - pos));
        pos = end;
    }
    const bool crlf = data.size() >= 2 && data[data.size() - 2] == '\r' && data.back() == '\n';
    out.append(end_of_data(crlf));
}

bool is_ascii(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c >= 0x80) return false;
    return true;
}

}  // namespace mailers::detail::smtp
