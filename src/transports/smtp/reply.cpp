#include "transports/smtp/reply.hpp"

#include <cstring>

namespace mailers::detail::smtp {
namespace {

bool is_digit(char c) noexcept {
    return c >= '0' && c <= '9';
}

// Digits of one enhanced-code part: 1-3 for subject and detail, exactly 1
// for the class (RFC 3463 section 2).
std::size_t digits(std::string_view s, std::size_t pos, std::size_t max) noexcept {
    std::size_t n = 0;
    while (pos + n < s.size() && n <= max && is_digit(s[pos + n])) ++n;
    return n >= 1 && n <= max ? n : 0;
}

// Whether `line` (possibly still without its end) can begin a reply line:
// three digits, the first 2 to 5, then ' ', '-' or the line's end.
bool valid_line_start(std::string_view line) noexcept {
    for (std::size_t i = 0; i < 3 && i < line.size(); ++i)
        if (!is_digit(line[i])) return false;
    if (!line.empty() && (line[0] < '2' || line[0] > '5')) return false;
    return line.size() < 4 || line[3] == ' ' || line[3] == '-' || line[3] == '\r';
}

}  // namespace

std::string printable_excerpt(std::string_view in, std::size_t limit) {
    in = in.substr(0, in.find_first_of("\r\n"));
    std::string out;
    for (const char c : in.substr(0, limit)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    if (in.size() > limit) out += "...";
    return out;
}

std::size_t enhanced_code_length(std::string_view text, char cls) noexcept {
    if (text.size() < 5 || text[0] != cls || text[1] != '.') return 0;
    std::size_t pos = 2;
    const std::size_t subject = digits(text, pos, 3);
    if (subject == 0) return 0;
    pos += subject;
    if (pos >= text.size() || text[pos] != '.') return 0;
    ++pos;
    const std::size_t detail = digits(text, pos, 3);
    if (detail == 0) return 0;
    pos += detail;
    if (pos < text.size() && text[pos] != ' ' && text[pos] != '\t') return 0;
    return pos;
}

parse_status parse_reply(std::string_view in, reply& out, std::size_t& consumed) {
    consumed = 0;
    std::size_t pos = 0;
    bool first = true;
    for (;;) {
        const auto nl =
            static_cast<const char*>(std::memchr(in.data() + pos, '\n', in.size() - pos));
        if (nl == nullptr) {
            if (in.size() > max_reply_size || !valid_line_start(in.substr(pos)))
                return parse_status::malformed;
            return parse_status::incomplete;
        }
        const std::size_t eol = static_cast<std::size_t>(nl - in.data());
        if (eol + 1 > max_reply_size) return parse_status::malformed;
        std::string_view line = in.substr(pos, eol - pos);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

        if (line.size() < 3 || !is_digit(line[0]) || !is_digit(line[1]) || !is_digit(line[2]) ||
            line[0] < '2' || line[0] > '5')
            return parse_status::malformed;
        const int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        bool last = true;
        if (line.size() > 3) {
            if (line[3] == '-')
                last = false;
            else if (line[3] != ' ')
                return parse_status::malformed;
        }
        const std::string_view text = line.size() > 4 ? line.substr(4) : std::string_view{};

        if (first) {
            out.code = code;
            out.text.clear();
            out.enhanced.clear();
            const std::size_t n = enhanced_code_length(text, line[0]);
            if (n != 0) out.enhanced.assign(text.data(), n);
            first = false;
        } else {
            // RFC 5321 requires the same code on every line; a server that
            // changes it mid-reply cannot be trusted to mean either.
            if (code != out.code) return parse_status::malformed;
            out.text.push_back('\n');
        }
        out.text.append(text);
        pos = eol + 1;
        if (last) {
            consumed = pos;
            return parse_status::complete;
        }
    }
}

std::string reply::verbatim() const {
    std::string out;
    out.reserve(text.size() + 16);
    const char digits3[3] = {static_cast<char>('0' + code / 100 % 10),
                             static_cast<char>('0' + code / 10 % 10),
                             static_cast<char>('0' + code % 10)};
    std::string_view rest = text;
    for (;;) {
        const auto nl = rest.find('\n');
        out.append(digits3, 3);
        out.push_back(nl == std::string_view::npos ? ' ' : '-');
        out.append(rest.substr(0, nl));
        if (nl == std::string_view::npos) break;
        out.push_back('\n');
        rest.remove_prefix(nl + 1);
    }
    return out;
}

std::string_view reply::first_line_text() const noexcept {
    std::string_view t = text;
    t = t.substr(0, t.find('\n'));
    if (!enhanced.empty() && t.size() >= enhanced.size()) {
        t.remove_prefix(enhanced.size());
        while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
    }
    return t;
}

}  // namespace mailers::detail::smtp
