#include "mime/raw.hpp"

#include <mailers/address.hpp>
#include <string>

#include "mime/text.hpp"

namespace mailers::mime {

namespace {

error_code refuse(std::string& why, std::string text) {
    why = std::move(text);
    return make_error_code(errc::invalid_argument);
}

bool name_is(std::string_view field, std::string_view name) {
    if (field.size() <= name.size() || field[name.size()] != ':') return false;
    for (std::size_t i = 0; i < name.size(); ++i)
        if (to_lower(field[i]) != to_lower(name[i])) return false;
    return true;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_wsp(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && is_wsp(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
}

}  // namespace

error_code check_raw_lines(std::string_view raw, std::string& why) {
    if (raw.empty()) return refuse(why, "the raw message is empty");
    for (std::size_t i = 0; i < raw.size(); ++i) {
        const char c = raw[i];
        if (c == '\0')
            return refuse(why, "the raw message has a NUL at octet " + std::to_string(i));
        if (c == '\r' && (i + 1 == raw.size() || raw[i + 1] != '\n'))
            return refuse(why, "the raw message has a CR without LF at octet " + std::to_string(i) +
                                   "; lines must end in CRLF");
        if (c == '\n' && (i == 0 || raw[i - 1] != '\r'))
            return refuse(why, "the raw message has a LF without CR at octet " + std::to_string(i) +
                                   "; lines must end in CRLF");
    }
    return {};
}

error_code inspect_raw_message(std::string_view raw, raw_header_facts& facts, std::string& why) {
    if (auto ec = check_raw_lines(raw, why)) return ec;
    const auto end = raw.find("\r\n\r\n");
    if (end == std::string_view::npos)
        return refuse(why, "the raw message has no empty line after its header section");
    const std::string_view head = raw.substr(0, end + 2);
    int froms = 0, ids = 0;
    std::size_t pos = 0;
    while (pos < head.size()) {
        // One field: this line and the continuation lines that start with
        // white space, unfolded by dropping their CRLFs.
        std::string field;
        do {
            const auto eol = head.find("\r\n", pos);
            field.append(head.substr(pos, eol - pos));
            pos = eol + 2;
        } while (pos < head.size() && is_wsp(static_cast<unsigned char>(head[pos])));
        if (name_is(field, "From")) {
            ++froms;
            auto a = parse_address(trim(std::string_view(field).substr(5)));
            if (!a) return refuse(why, "the raw message's From field is not one valid address");
            facts.from = a->addr_spec();
        } else if (name_is(field, "Message-ID")) {
            ++ids;
            auto v = trim(std::string_view(field).substr(11));
            if (v.size() < 3 || v.front() != '<' || v.back() != '>')
                return refuse(why, "the raw message's Message-ID is not <id>");
            facts.message_id = std::string(v.substr(1, v.size() - 2));
        }
    }
    if (froms != 1) return refuse(why, "the raw message must have exactly one From field");
    if (ids != 1) return refuse(why, "the raw message must have exactly one Message-ID field");
    return {};
}

}  // namespace mailers::mime
