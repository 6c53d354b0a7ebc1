// libFuzzer entry point for the MIME writer. The input is cut into message
// fields; whatever the writer accepts must come out as CRLF lines of at most
// 998 octets whose header section holds exactly the fields the writer owns,
// so no input can smuggle in a header; whatever it refuses, it refuses with a
// mailers error and no output.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mailers/mime.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace {

void require(bool ok) {
    if (!ok) __builtin_trap();
}

// Splits on 0x1F (unit separator); missing fields are empty.
std::vector<std::string> fields(std::string_view in, std::size_t n) {
    std::vector<std::string> out(n);
    std::size_t k = 0;
    for (char c : in) {
        if (c == '\x1f' && k + 1 < n)
            ++k;
        else
            out[k] += c;
    }
    return out;
}

std::size_t count_field(std::string_view head, std::string_view name) {
    std::size_t count = 0, pos = 0;
    while (pos < head.size()) {
        const std::size_t eol = head.find("\r\n", pos);
        const std::string_view line = head.substr(pos, eol - pos);
        if (line.size() > name.size() && line[name.size()] == ':' &&
            line.substr(0, name.size()) == name)
            ++count;
        pos = eol + 2;
    }
    return count;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    const std::uint8_t flags = data[0];
    const auto f = fields(std::string_view(reinterpret_cast<const char*>(data) + 1, size - 1), 13);

    mailers::message m;
    m.from = {"sender", "example.com", f[0]};
    m.to = {{"rcpt", "example.org", f[1]}};
    if (flags & 1) m.cc = {{"cc", f[2].empty() ? "example.net" : f[2], ""}};
    m.subject = f[3];
    m.text = f[4];
    m.html = f[5];
    if (flags & 2)
        m.attachments.push_back({f[6], flags & 4 ? f[7] : "", f[8], flags & 8 ? f[9] : ""});
    if (flags & 16) m.headers.push_back({f[10], f[11]});
    if (flags & 32) m.in_reply_to = f[12];
    if (flags & 64)
        m.unsubscribe = mailers::list_unsubscribe{"https://example.com/u/" + f[12], f[9]};
    m.date = mailers::time_point{std::chrono::seconds{1700000000}};

    mailers::render_options opts;
    opts.allow_8bit = (flags & 128) != 0;
    const mailers::error_code valid = mailers::validate_message(m);
    const auto wire = mailers::render_message(m, opts);
    require(wire.has_value() == !valid);
    if (!wire) {
        require(wire.error().category() == mailers::error_category());
        return 0;
    }

    const std::string& s = *wire;
    std::size_t line = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '\r') require(i + 1 < s.size() && s[i + 1] == '\n');
        if (s[i] == '\n') {
            require(i > 0 && s[i - 1] == '\r');
            line = 0;
        } else {
            require(++line <= 999);  // 998 octets plus the CR
        }
    }
    const std::size_t end = s.find("\r\n\r\n");
    require(end != std::string::npos);
    const std::string_view head = std::string_view(s).substr(0, end + 2);
    for (const char* name : {"From", "To", "Date", "Message-ID", "MIME-Version", "Content-Type"})
        require(count_field(head, name) == 1);
    require(count_field(head, "Bcc") == 0);
    require(count_field(head, "Subject") == (m.subject.empty() ? 0u : 1u));
    require(count_field(head, "Cc") == (m.cc.empty() ? 0u : 1u));
    // One line per header field start: extra headers add exactly one each.
    std::size_t starts = 0;
    for (std::size_t pos = 0; pos < head.size();) {
        if (head[pos] != ' ' && head[pos] != '\t') ++starts;
        pos = head.find("\r\n", pos) + 2;
    }
    const std::size_t expected = 5 + !m.cc.empty() + !m.subject.empty() + !m.in_reply_to.empty() +
                                 (m.unsubscribe ? 2 : 0) + m.headers.size() +
                                 count_field(head, "Content-Transfer-Encoding");
    require(starts == expected + 1);  // + Content-Type
    // Local parts here are ASCII, so every header octet must be too.
    for (unsigned char c : head) require(c < 0x80);
    return 0;
}
