#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <mailers/mime.hpp>
#include <span>

#include "mime/address_syntax.hpp"
#include "mime/base64.hpp"
#include "mime/body.hpp"
#include "mime/header_writer.hpp"
#include "mime/random.hpp"
#include "mime/text.hpp"

namespace mailers {
namespace {

using mime::has_line_break_or_nul;
using mime::header_writer;
using mime::strip_angles;
using mime::transfer_encoding;

// The longest header name, message id, URL or content type accepted. Values
// like these cannot be folded, so the limit keeps every line under the 998
// octets RFC 5322 allows.
constexpr std::size_t max_unfoldable = 900;

error_code fail(errc e) noexcept {
    return make_error_code(e);
}

// Header text: CR, LF and NUL are injection; other controls (TAB aside) and
// ill-formed UTF-8 cannot be encoded faithfully, so they are refused as `bad`.
error_code check_header_text(std::string_view s, errc bad) noexcept {
    if (has_line_break_or_nul(s)) return fail(errc::header_injection);
    bool ascii = true;
    for (unsigned char c : s) {
        if ((c < 32 && c != '\t') || c == 127) return fail(bad);
        if (c >= 0x80) ascii = false;
    }
    if (!ascii && !mime::is_valid_utf8(s)) return fail(bad);
    return {};
}

error_code check_address(const address& a) noexcept {
    if (has_line_break_or_nul(a.local) || has_line_break_or_nul(a.domain))
        return fail(errc::header_injection);
    if (auto ec = check_header_text(a.display_name, errc::invalid_address)) return ec;
    if (!mime::valid_mailbox(a.local, a.domain)) return fail(errc::invalid_address);
    return {};
}

// What may stand between '<' and '>' unquoted: printable ASCII, no space.
bool is_bracketable(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c <= 32 || c >= 127 || c == '<' || c == '>') return false;
    return true;
}

// A msg-id body (RFC 5322 3.6.4) "left@right"; angle brackets are tolerated.
error_code check_msg_id(std::string_view id) noexcept {
    if (has_line_break_or_nul(id)) return fail(errc::header_injection);
    id = strip_angles(id);
    const std::size_t at = id.find('@');
    if (id.size() > max_unfoldable || at == std::string_view::npos || at == 0 ||
        at + 1 == id.size() || !is_bracketable(id))
        return fail(errc::invalid_header);
    return {};
}

// Fields the writer owns; an extra header with one of these names would
// either duplicate it or contradict the MIME structure.
bool is_reserved_header(std::string_view name) noexcept {
    static constexpr std::string_view exact[] = {
        "From", "To",         "Cc",           "Bcc",         "Reply-To",  "Subject",
        "Date", "Message-ID", "MIME-Version", "In-Reply-To", "References"};
    for (std::string_view r : exact)
        if (mime::iequals(name, r)) return true;
    return mime::istarts_with(name, "Content-") || mime::istarts_with(name, "List-Unsubscribe");
}

error_code check_extra_header(const header_field& h) noexcept {
    if (has_line_break_or_nul(h.name) || has_line_break_or_nul(h.value))
        return fail(errc::header_injection);
    if (h.name.empty() || h.name.size() > max_unfoldable) return fail(errc::invalid_header);
    for (unsigned char c : h.name)
        if (c <= 32 || c >= 127 || c == ':') return fail(errc::invalid_header);
    if (is_reserved_header(h.name)) return fail(errc::invalid_header);
    return check_header_text(h.value, errc::invalid_header);
}

// RFC 2045 token character.
bool is_token_char(unsigned char c) noexcept {
    return c > 32 && c < 127 && std::strchr("()<>@,;:\\\"/[]?=", c) == nullptr;
}

bool is_token(std::string_view s) noexcept {
    if (s.empty()) return false;
    for (unsigned char c : s)
        if (!is_token_char(c)) return false;
    return true;
}

// "type/subtype" with optional "; parameters" that are passed through.
// Multipart and message types are refused: an attachment's bytes are always
// sent as base64, which RFC 2046 forbids for both.
error_code check_content_type(std::string_view ct) noexcept {
    if (has_line_break_or_nul(ct)) return fail(errc::header_injection);
    if (ct.empty()) return {};
    if (ct.size() > max_unfoldable) return fail(errc::invalid_header);
    const std::size_t semi = ct.find(';');
    std::string_view type = ct.substr(0, semi);
    while (!type.empty() && mime::is_wsp(static_cast<unsigned char>(type.back())))
        type.remove_suffix(1);
    const std::size_t slash = type.find('/');
    if (slash == std::string_view::npos || !is_token(type.substr(0, slash)) ||
        !is_token(type.substr(slash + 1)))
        return fail(errc::invalid_header);
    if (semi != std::string_view::npos)
        for (unsigned char c : ct.substr(semi + 1))
            if ((c < 32 && c != '\t') || c >= 127) return fail(errc::invalid_header);
    if (mime::istarts_with(type, "multipart/") || mime::istarts_with(type, "message/"))
        return fail(errc::invalid_argument);
    return {};
}

error_code check_attachment(const attachment& a) noexcept {
    if (has_line_break_or_nul(a.filename) || has_line_break_or_nul(a.content_id))
        return fail(errc::header_injection);
    if (auto ec = check_header_text(a.filename, errc::invalid_header)) return ec;
    if (auto ec = check_content_type(a.content_type)) return ec;
    if (!a.content_id.empty()) {
        const std::string_view cid = strip_angles(a.content_id);
        if (cid.empty() || cid.size() > max_unfoldable || !is_bracketable(cid))
            return fail(errc::invalid_header);
    }
    return {};
}

std::string_view mailto_address(std::string_view mailto) noexcept {
    return mime::istarts_with(mailto, "mailto:") ? mailto.substr(7) : mailto;
}

// RFC 8058 requires an HTTPS URI; anything that cannot sit between angle
// brackets unescaped (spaces, non-ASCII) must be percent-encoded by the caller.
error_code check_unsubscribe(const list_unsubscribe& u) noexcept {
    if (has_line_break_or_nul(u.url) || has_line_break_or_nul(u.mailto))
        return fail(errc::header_injection);
    if (!mime::istarts_with(u.url, "https://") || u.url.size() <= 8 ||
        u.url.size() > max_unfoldable || !is_bracketable(u.url))
        return fail(errc::invalid_argument);
    const std::string_view mailto = mailto_address(u.mailto);
    if (!u.mailto.empty() && (mailto.find('@') == std::string_view::npos ||
                              mailto.size() > max_unfoldable || !is_bracketable(mailto)))
        return fail(errc::invalid_argument);
    return {};
}

// --- rendering --------------------------------------------------------------

constexpr char base32_digits[] = "abcdefghijklmnopqrstuvwxyz234567";
constexpr char hex_digits[] = "0123456789abcdef";

// 128 random bits as 26 base32 characters.
void append_random_id(std::string& out) {
    unsigned char r[16];
    mime::random_bytes(r, sizeof r);
    unsigned buffer = 0;
    int bits = 0;
    for (unsigned char byte : r) {
        buffer = (buffer << 8) | byte;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out += base32_digits[(buffer >> bits) & 31];
        }
    }
    out += base32_digits[(buffer << (5 - bits)) & 31];
}

void append_two_digits(std::string& out, unsigned v) {
    out += static_cast<char>('0' + v / 10);
    out += static_cast<char>('0' + v % 10);
}

void append_date(std::string& out, time_point t) {
    using namespace std::chrono;
    static constexpr std::string_view weekdays[] = {"Sun", "Mon", "Tue", "Wed",
                                                    "Thu", "Fri", "Sat"};
    static constexpr std::string_view months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const auto secs = floor<seconds>(t);
    const sys_days day = floor<days>(secs);
    const year_month_day ymd{day};
    const auto tod = static_cast<unsigned>((secs - day).count());
    out += weekdays[weekday{day}.c_encoding()];
    out += ", ";
    append_two_digits(out, static_cast<unsigned>(ymd.day()));
    out += ' ';
    out += months[static_cast<unsigned>(ymd.month()) - 1];
    out += ' ';
    char year[12];
    const auto r = std::to_chars(year, year + sizeof year, static_cast<int>(ymd.year()));
    out.append(year, r.ptr);
    out += ' ';
    append_two_digits(out, tod / 3600);
    out += ':';
    append_two_digits(out, tod / 60 % 60);
    out += ':';
    append_two_digits(out, tod % 60);
    out += " +0000";
}

void write_mailbox(header_writer& w, const address& a, bool last) {
    mime::write_display_name(w, a.display_name);
    // Headers carry A-labels so that a transport without SMTPUTF8 can send them.
    std::string converted;
    std::string_view domain = a.domain;
    if (!mime::is_ascii(domain) && mime::append_ascii_domain(converted, domain, true))
        domain = converted;
    const bool angle = !a.display_name.empty();
    const std::size_t len =
        1 + (angle ? 2 : 0) + a.local.size() + 1 + domain.size() + (last ? 0 : 1);
    std::string& o = w.start_token(len, true);
    o += angle ? " <" : " ";
    o += a.local;
    o += '@';
    o += domain;
    if (angle) o += '>';
    if (!last) o += ',';
}

void write_address_list(header_writer& w, std::string_view name, const address* list,
                        std::size_t n) {
    w.begin(name);
    for (std::size_t i = 0; i < n; ++i) write_mailbox(w, list[i], i + 1 == n);
    w.end();
}

void write_msg_id_token(header_writer& w, std::string_view id) {
    id = strip_angles(id);
    std::string& o = w.start_token(id.size() + 3, true);
    o += " <";
    o += id;
    o += '>';
}

struct text_leaf {
    std::string_view body;
    std::string_view subtype;
    transfer_encoding enc;
};

void write_leaf(std::string& out, const text_leaf& t) {
    out += "Content-Type: text/";
    out += t.subtype;
    out += "; charset=utf-8\r\nContent-Transfer-Encoding: ";
    switch (t.enc) {
        case transfer_encoding::seven_bit:
            out += "7bit";
            break;
        case transfer_encoding::eight_bit:
            out += "8bit";
            break;
        case transfer_encoding::quoted_printable:
            out += "quoted-printable";
            break;
    }
    out += "\r\n\r\n";
    if (t.enc == transfer_encoding::quoted_printable)
        mime::append_quoted_printable(out, t.body);
    else
        mime::append_crlf_normalised(out, t.body);
}

void write_attachment(header_writer& w, const attachment& a) {
    std::string& out = w.out();
    w.begin("Content-Type");
    w.token(" ", a.content_type.empty() ? std::string_view{"application/octet-stream"}
                                        : std::string_view{a.content_type});
    if (!a.filename.empty()) mime::write_name_fallback(w, "name", a.filename);
    w.end();
    out += "Content-Transfer-Encoding: base64\r\n";
    if (!a.content_id.empty()) {
        out += "Content-ID: <";
        out += strip_angles(a.content_id);
        out += ">\r\n";
    }
    w.begin("Content-Disposition");
    w.token(" ", a.content_id.empty() ? "attachment" : "inline");
    if (!a.filename.empty()) mime::write_parameter(w, "filename", a.filename);
    w.end();
    out += "\r\n";
    mime::append_base64_lines(out, a.data);
}

// "=_" can occur neither in quoted-printable ('=' is always followed by hex
// or a line break) nor in base64, so only 7bit/8bit bodies need checking.
struct boundary {
    char text[27];
    std::string_view view() const noexcept { return {text, sizeof text}; }
};

boundary make_boundary(char kind, std::span<const std::string_view> raw_bodies) {
    boundary b;
    b.text[0] = '=';
    b.text[1] = '_';
    b.text[2] = kind;
    while (true) {
        unsigned char r[12];
        mime::random_bytes(r, sizeof r);
        for (std::size_t i = 0; i < sizeof r; ++i) {
            b.text[3 + 2 * i] = hex_digits[r[i] >> 4];
            b.text[4 + 2 * i] = hex_digits[r[i] & 15];
        }
        bool clear = true;
        for (std::string_view body : raw_bodies)
            if (body.find(b.view()) != std::string_view::npos) clear = false;
        if (clear) return b;
    }
}

class multipart {
public:
    multipart(std::string& out, std::string_view subtype, const boundary& b,
              std::string_view params = {})
        : out_(out), b_(b) {
        out_ += "Content-Type: multipart/";
        out_ += subtype;
        out_ += ';';
        out_ += params;
        out_ += "\r\n boundary=\"";
        out_ += b_.view();
        out_ += "\"\r\n\r\n";
    }
    // The CRLF before a delimiter belongs to the delimiter (RFC 2046 5.1.1),
    // so part bodies are written without a final line break.
    void next_part() {
        if (!first_) out_ += "\r\n";
        first_ = false;
        out_ += "--";
        out_ += b_.view();
        out_ += "\r\n";
    }
    void close() {
        out_ += "\r\n--";
        out_ += b_.view();
        out_ += "--";
    }

private:
    std::string& out_;
    const boundary& b_;
    bool first_ = true;
};

struct body_plan {
    text_leaf text{};
    text_leaf html{};
    bool has_text = false;
    bool has_html = false;
    std::size_t related = 0;         // inline parts that go next to the HTML
    std::size_t mixed = 0;           // parts that go in multipart/mixed
    std::string_view raw_bodies[2];  // bodies sent unencoded, where a boundary could collide
    std::size_t raw_count = 0;

    bool is_related(const attachment& a) const noexcept {
        return has_html && !a.content_id.empty();
    }
    std::span<const std::string_view> raw() const noexcept { return {raw_bodies, raw_count}; }
};

void write_html_block(header_writer& w, const message& m, const body_plan& p) {
    if (p.related == 0) {
        write_leaf(w.out(), p.html);
        return;
    }
    const boundary b = make_boundary('r', p.raw());
    multipart mp(w.out(), "related", b, " type=\"text/html\";");
    mp.next_part();
    write_leaf(w.out(), p.html);
    for (const attachment& a : m.attachments) {
        if (!p.is_related(a)) continue;
        mp.next_part();
        write_attachment(w, a);
    }
    mp.close();
}

void write_alternatives(header_writer& w, const message& m, const body_plan& p) {
    if (p.has_text && p.has_html) {
        const boundary b = make_boundary('a', p.raw());
        multipart mp(w.out(), "alternative", b);
        mp.next_part();
        write_leaf(w.out(), p.text);
        mp.next_part();
        write_html_block(w, m, p);
        mp.close();
    } else if (p.has_text) {
        write_leaf(w.out(), p.text);
    } else {
        write_html_block(w, m, p);
    }
}

void write_body(header_writer& w, const message& m, const body_plan& p) {
    std::string& out = w.out();
    if (p.mixed == 0) {
        write_alternatives(w, m, p);
        // A single-part body that already ends in a line break keeps it as is.
        if (out.compare(out.size() - 2, 2, "\r\n") != 0) out += "\r\n";
        return;
    }
    const boundary b = make_boundary('m', p.raw());
    multipart mp(out, "mixed", b);
    if (p.has_text || p.has_html) {
        mp.next_part();
        write_alternatives(w, m, p);
    }
    for (const attachment& a : m.attachments) {
        if (p.is_related(a)) continue;
        mp.next_part();
        write_attachment(w, a);
    }
    mp.close();
    out += "\r\n";
}

std::size_t address_estimate(const address& a) noexcept {
    return 16 + a.local.size() + a.domain.size() * 2 + a.display_name.size() * 3;
}

}  // namespace

error_code validate_message(const message& m) {
    if (auto ec = check_address(m.from)) return ec;
    for (const auto* list : {&m.to, &m.cc, &m.bcc})
        for (const address& a : *list)
            if (auto ec = check_address(a)) return ec;
    if (m.to.empty() && m.cc.empty() && m.bcc.empty()) return fail(errc::invalid_argument);
    if (m.reply_to)
        if (auto ec = check_address(*m.reply_to)) return ec;
    if (auto ec = check_header_text(m.subject, errc::invalid_header)) return ec;
    if (!m.message_id.empty())
        if (auto ec = check_msg_id(m.message_id)) return ec;
    if (!m.in_reply_to.empty())
        if (auto ec = check_msg_id(m.in_reply_to)) return ec;
    for (const std::string& id : m.references)
        if (auto ec = check_msg_id(id)) return ec;
    for (const header_field& h : m.headers)
        if (auto ec = check_extra_header(h)) return ec;
    for (const attachment& a : m.attachments)
        if (auto ec = check_attachment(a)) return ec;
    if (m.unsubscribe)
        if (auto ec = check_unsubscribe(*m.unsubscribe)) return ec;
    if (m.text.empty() && m.html.empty() && m.attachments.empty())
        return fail(errc::invalid_argument);
    return {};
}

boost::system::result<std::string> render_message(const message& m, const render_options& opts) {
    if (auto ec = validate_message(m)) return ec;
    const std::string_view id_domain =
        opts.message_id_domain.empty() ? std::string_view{m.from.domain} : opts.message_id_domain;
    if (!opts.message_id_domain.empty()) {
        if (has_line_break_or_nul(opts.message_id_domain)) return fail(errc::header_injection);
        if (!mime::valid_domain(opts.message_id_domain)) return fail(errc::invalid_argument);
    }

    body_plan plan;
    std::size_t estimate = 1024;
    std::size_t lower_bound = 0;
    const auto plan_leaf = [&](const std::string& body, std::string_view subtype, text_leaf& leaf) {
        const mime::body_scan scan = mime::scan_body(body);
        leaf = {body, subtype, mime::choose_encoding(scan, opts.allow_8bit)};
        if (leaf.enc != transfer_encoding::quoted_printable)
            plan.raw_bodies[plan.raw_count++] = body;
        estimate += 256 + mime::encoded_size_bound(body, scan, leaf.enc);
        lower_bound += body.size();
    };
    plan.has_text = !m.text.empty();
    plan.has_html = !m.html.empty();
    if (plan.has_text) plan_leaf(m.text, "plain", plan.text);
    if (plan.has_html) plan_leaf(m.html, "html", plan.html);
    for (const attachment& a : m.attachments) {
        ++(plan.is_related(a) ? plan.related : plan.mixed);
        const std::size_t data = mime::base64_lines_size(a.data.size());
        estimate +=
            512 + data + a.filename.size() * 9 + a.content_type.size() + a.content_id.size();
        lower_bound += data;
    }
    if (opts.max_size != 0 && lower_bound > opts.max_size) return fail(errc::message_too_large);

    estimate += address_estimate(m.from) + m.subject.size() * 3 + m.in_reply_to.size();
    for (const auto* list : {&m.to, &m.cc})
        for (const address& a : *list) estimate += address_estimate(a);
    if (m.reply_to) estimate += address_estimate(*m.reply_to);
    for (const std::string& id : m.references) estimate += id.size() + 4;
    for (const header_field& h : m.headers) estimate += 8 + h.name.size() + h.value.size() * 3;
    if (m.unsubscribe) estimate += 96 + m.unsubscribe->url.size() + m.unsubscribe->mailto.size();

    std::string out;
    out.reserve(estimate);
    header_writer w{out};

    write_address_list(w, "From", &m.from, 1);
    if (!m.to.empty()) write_address_list(w, "To", m.to.data(), m.to.size());
    if (!m.cc.empty()) write_address_list(w, "Cc", m.cc.data(), m.cc.size());
    if (m.reply_to) write_address_list(w, "Reply-To", &*m.reply_to, 1);
    if (!m.subject.empty()) mime::write_unstructured(w, "Subject", m.subject);

    out += "Date: ";
    append_date(out,
                m.date ? *m.date
                       : std::chrono::time_point_cast<duration>(std::chrono::system_clock::now()));
    out += "\r\nMessage-ID: <";
    if (m.message_id.empty()) {
        append_random_id(out);
        out += '@';
        mime::append_ascii_domain(out, id_domain, true);
    } else {
        out += strip_angles(m.message_id);
    }
    out += ">\r\n";

    if (!m.in_reply_to.empty()) {
        w.begin("In-Reply-To");
        write_msg_id_token(w, m.in_reply_to);
        w.end();
    }
    if (!m.references.empty()) {
        w.begin("References");
        for (const std::string& id : m.references) write_msg_id_token(w, id);
        w.end();
    }
    if (m.unsubscribe) {
        const std::string_view url = m.unsubscribe->url;
        const std::string_view mailto = mailto_address(m.unsubscribe->mailto);
        w.begin("List-Unsubscribe");
        std::string& o = w.start_token(url.size() + 3 + (mailto.empty() ? 0 : 1), true);
        o += " <";
        o += url;
        o += mailto.empty() ? ">" : ">,";
        if (!mailto.empty()) {
            std::string& t = w.start_token(mailto.size() + 10, true);
            t += " <mailto:";
            t += mailto;
            t += '>';
        }
        w.end();
        out += "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n";
    }
    for (const header_field& h : m.headers) mime::write_unstructured(w, h.name, h.value);
    out += "MIME-Version: 1.0\r\n";

    write_body(w, m, plan);

    if (opts.max_size != 0 && out.size() > opts.max_size) return fail(errc::message_too_large);
    return out;
}

std::string make_message_id(std::string_view domain) {
    std::string out;
    out.reserve(32 + domain.size());
    append_random_id(out);
    out += '@';
    // An unusable domain still yields a unique, well-formed id under the
    // reserved .invalid TLD (RFC 2606) rather than failing a send.
    if (domain.empty() || has_line_break_or_nul(domain) || !mime::valid_domain(domain) ||
        !mime::append_ascii_domain(out, domain, true))
        out += "mailers.invalid";
    return out;
}

std::string format_rfc5322_date(time_point t) {
    std::string out;
    out.reserve(40);
    append_date(out, t);
    return out;
}

namespace {

// The addr-spec a transport can use in MAIL FROM / RCPT TO: the domain as an
// A-label unless the local part needs SMTPUTF8 anyway.
std::string envelope_addr(const address& a) {
    std::string s;
    s.reserve(a.local.size() + 1 + a.domain.size() + 8);
    s += a.local;
    s += '@';
    if (mime::is_ascii(a.domain) || !mime::is_ascii(a.local) || a.domain.empty() ||
        !mime::valid_domain(a.domain) || !mime::append_ascii_domain(s, a.domain, true))
        s += a.domain;
    return s;
}

// Same mailbox: local parts compare exactly (RFC 5321 2.4), domains without case.
bool same_mailbox(std::string_view x, std::string_view y) noexcept {
    const std::size_t ax = x.rfind('@');
    const std::size_t ay = y.rfind('@');
    return x.substr(0, ax) == y.substr(0, ay) && mime::iequals(x.substr(ax), y.substr(ay));
}

}  // namespace

envelope envelope::from_message(const message& m) {
    envelope e;
    if (!m.from.local.empty() || !m.from.domain.empty()) e.mail_from = envelope_addr(m.from);
    e.rcpt_to.reserve(m.to.size() + m.cc.size() + m.bcc.size());
    for (const auto* list : {&m.to, &m.cc, &m.bcc}) {
        for (const address& a : *list) {
            std::string spec = envelope_addr(a);
            bool seen = false;
            for (const std::string& r : e.rcpt_to)
                if (same_mailbox(r, spec)) seen = true;
            if (!seen) e.rcpt_to.push_back(std::move(spec));
        }
    }
    return e;
}

}  // namespace mailers
