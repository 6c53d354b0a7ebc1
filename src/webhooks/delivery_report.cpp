// Delivery status notifications (RFC 3464, RFC 3462 multipart/report) and
// the plain-text bounces of qmail and older Exim, read into events.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <mailers/delivery_report.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mime/text.hpp"
#include "transports/reply_classification.hpp"
#include "webhooks/common.hpp"
#include "webhooks/crypto.hpp"

namespace mailers {

namespace {

using mime::iequals;
using webhooks::diagnostic_code_in;
using webhooks::recipient_of;
using webhooks::trim;
// Lower-cases a Content-Type's media type; Action and
// Content-Transfer-Encoding values are compared the same way.
using webhooks::media_type;

constexpr int max_depth = 4;
constexpr std::size_t max_parts = 64;
constexpr std::size_t max_recipients = 1000;

// One line at a time, CRLF or LF.
struct line_reader {
    std::string_view rest;
    bool next(std::string_view& line) {
        if (rest.empty()) return false;
        auto nl = rest.find('\n');
        line = rest.substr(0, nl);
        rest = nl == std::string_view::npos ? std::string_view{} : rest.substr(nl + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        return true;
    }
};

struct field {
    std::string name;
    std::string value;  // unfolded
};

// A header block: fields up to the first empty line. Returns the fields and
// leaves `body` at what follows.
std::vector<field> read_fields(std::string_view text, std::string_view* body = nullptr) {
    std::vector<field> out;
    line_reader r{text};
    std::string_view line;
    while (r.next(line)) {
        if (line.empty()) break;
        if ((line.front() == ' ' || line.front() == '\t') && !out.empty()) {
            out.back().value += ' ';
            out.back().value += trim(line);
            continue;
        }
        auto colon = line.find(':');
        if (colon == std::string_view::npos || colon == 0) continue;
        out.push_back({std::string(trim(line.substr(0, colon))),
                       std::string(trim(line.substr(colon + 1)))});
        if (out.size() > 500) break;
    }
    if (body) *body = r.rest;
    return out;
}

std::string_view get(const std::vector<field>& fs, std::string_view name) {
    for (const auto& f : fs)
        if (iequals(f.name, name)) return f.value;
    return {};
}

// One parameter of a Content-Type.
std::string param_of(std::string_view ct, std::string_view name) {
    auto semi = ct.find(';');
    if (semi == std::string_view::npos) return {};
    std::size_t i = semi + 1;
    while (i < ct.size()) {
        while (i < ct.size() && (ct[i] == ' ' || ct[i] == '\t' || ct[i] == ';')) ++i;
        auto eq = ct.find('=', i);
        if (eq == std::string_view::npos) return {};
        auto key = trim(ct.substr(i, eq - i));
        i = eq + 1;
        while (i < ct.size() && (ct[i] == ' ' || ct[i] == '\t')) ++i;
        std::string value;
        if (i < ct.size() && ct[i] == '"') {
            for (++i; i < ct.size() && ct[i] != '"'; ++i) {
                if (ct[i] == '\\' && i + 1 < ct.size()) ++i;
                value += ct[i];
            }
            ++i;  // the closing quote
        } else {
            auto end = std::min(ct.find(';', i), ct.size());
            value = std::string(trim(ct.substr(i, end - i)));
            i = end;
        }
        if (iequals(key, name)) return value;
        auto next = ct.find(';', std::min(i, ct.size()));
        if (next == std::string_view::npos) return {};
        i = next + 1;
    }
    return {};
}

struct part {
    std::vector<field> fields;
    std::string_view body;
};

// The parts of a multipart body, between "--boundary" lines.
std::vector<part> split_multipart(std::string_view body, std::string_view boundary) {
    std::vector<part> out;
    if (boundary.empty() || boundary.size() > 200) return out;
    const std::string delim = "--" + std::string(boundary);
    line_reader r{body};
    std::string_view line;
    const char* start = nullptr;  // where the current part begins
    auto close_part = [&](const char* end) {
        if (!start) return;
        part p;
        p.fields = read_fields(std::string_view(start, static_cast<std::size_t>(end - start)),
                               &p.body);
        out.push_back(std::move(p));
    };
    while (out.size() < max_parts) {
        const char* line_start = r.rest.data();
        if (!r.next(line)) break;
        if (!line.starts_with(delim)) continue;
        close_part(line_start);
        if (line.substr(delim.size()).starts_with("--")) return out;
        start = r.rest.data();
    }
    // No closing delimiter: what came after the last one is a part.
    if (start && out.size() < max_parts) close_part(body.data() + body.size());
    return out;
}

std::string decode_body(const std::vector<field>& fs, std::string_view body) {
    auto cte = media_type(get(fs, "Content-Transfer-Encoding"));
    if (cte == "base64") {
        std::string compact;
        for (char c : body)
            if (!std::isspace(static_cast<unsigned char>(c))) compact += c;
        if (auto d = webhooks::base64_decode(compact)) return std::move(*d);
        return {};
    }
    if (cte == "quoted-printable") {
        std::string out;
        for (std::size_t i = 0; i < body.size(); ++i) {
            char c = body[i];
            if (c != '=') {
                out += c;
                continue;
            }
            if (i + 1 < body.size() && (body[i + 1] == '\n' || body[i + 1] == '\r')) {
                ++i;
                if (body[i] == '\r' && i + 1 < body.size() && body[i + 1] == '\n') ++i;
                continue;
            }
            auto hex = [](char h) -> int {
                if (h >= '0' && h <= '9') return h - '0';
                if (h >= 'A' && h <= 'F') return h - 'A' + 10;
                if (h >= 'a' && h <= 'f') return h - 'a' + 10;
                return -1;
            };
            if (i + 2 < body.size() && hex(body[i + 1]) >= 0 && hex(body[i + 2]) >= 0) {
                out += static_cast<char>(hex(body[i + 1]) * 16 + hex(body[i + 2]));
                i += 2;
            } else {
                out += c;
            }
        }
        return out;
    }
    return std::string(body);
}

std::string strip_brackets(std::string_view s) {
    s = trim(s);
    auto open = s.find('<');
    auto close = s.rfind('>');
    if (open != std::string_view::npos && close != std::string_view::npos && close > open)
        return std::string(trim(s.substr(open + 1, close - open - 1)));
    return std::string(s);
}

// "rfc822; a@b" -> "a@b"
std::string_view typed_value(std::string_view v) {
    auto semi = v.find(';');
    return trim(semi == std::string_view::npos ? v : v.substr(semi + 1));
}

// RFC 5322 date-time, leniently: "[Day,] D Mon YYYY HH:MM[:SS] zone".
std::optional<time_point> parse_mail_date(std::string_view s) {
    s = trim(s);
    if (auto comma = s.find(','); comma != std::string_view::npos && comma < 10)
        s = trim(s.substr(comma + 1));
    std::vector<std::string_view> tok;
    std::size_t i = 0;
    while (i < s.size() && tok.size() < 6) {
        while (i < s.size() && s[i] == ' ') ++i;
        auto j = s.find(' ', i);
        if (j == std::string_view::npos) j = s.size();
        if (j > i) tok.push_back(s.substr(i, j - i));
        i = j;
    }
    if (tok.size() < 4) return std::nullopt;
    auto num = [](std::string_view t, int& out) {
        auto r = std::from_chars(t.data(), t.data() + t.size(), out);
        return r.ec == std::errc{} && r.ptr == t.data() + t.size();
    };
    int day = 0, year = 0, hh = 0, mm = 0, ss = 0;
    static constexpr std::string_view months[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                                  "jul", "aug", "sep", "oct", "nov", "dec"};
    unsigned month = 0;
    for (unsigned m = 0; m < 12; ++m)
        if (tok[1].size() >= 3 && iequals(tok[1].substr(0, 3), months[m])) month = m + 1;
    if (!num(tok[0], day) || month == 0 || !num(tok[2], year)) return std::nullopt;
    if (year < 100) year += year < 50 ? 2000 : 1900;
    auto hms = tok[3];
    auto c1 = hms.find(':');
    if (c1 == std::string_view::npos || !num(hms.substr(0, c1), hh)) return std::nullopt;
    auto rest = hms.substr(c1 + 1);
    auto c2 = rest.find(':');
    if (!num(rest.substr(0, c2), mm)) return std::nullopt;
    if (c2 != std::string_view::npos && !num(rest.substr(c2 + 1), ss)) return std::nullopt;
    std::chrono::year_month_day ymd{std::chrono::year{year}, std::chrono::month{month},
                                    std::chrono::day{static_cast<unsigned>(day)}};
    if (!ymd.ok() || hh > 23 || mm > 59 || ss > 60 || year < 1970 || year > 9999)
        return std::nullopt;
    int offset_min = 0;
    if (tok.size() > 4) {
        auto z = tok[4];
        if ((z[0] == '+' || z[0] == '-') && z.size() == 5) {
            int v = 0;
            if (num(z.substr(1), v)) offset_min = (v / 100 * 60 + v % 100) * (z[0] == '-' ? -1 : 1);
        } else {
            static constexpr std::pair<std::string_view, int> zones[] = {
                {"EDT", -4 * 60}, {"EST", -5 * 60}, {"CDT", -5 * 60}, {"CST", -6 * 60},
                {"MDT", -6 * 60}, {"MST", -7 * 60}, {"PDT", -7 * 60}, {"PST", -8 * 60}};
            for (const auto& [name, off] : zones)
                if (iequals(z, name)) offset_min = off;
        }
    }
    auto t = std::chrono::sys_days(ymd) + std::chrono::hours(hh) + std::chrono::minutes(mm) +
             std::chrono::seconds(ss) - std::chrono::minutes(offset_min);
    return time_point(std::chrono::duration_cast<duration>(t.time_since_epoch()));
}

// The bounce class for a failed recipient, through the same table that
// classifies a live SMTP refusal at RCPT.
bounce_class class_of(std::string_view status, std::string_view diagnostic) {
    int code = 0;
    auto reply = diagnostic_code_in(diagnostic);
    if (reply.size() == 3) std::from_chars(reply.data(), reply.data() + 3, code);
    if (code == 0) code = !status.empty() && status[0] == '4' ? 450 : 550;
    std::string enhanced(status);
    if (enhanced.empty() && reply.find('.') != std::string::npos) enhanced = reply;
    if (!enhanced.empty() && enhanced[0] == '4') return bounce_class::soft;
    auto tec = detail::classify_smtp_reply(code, enhanced, diagnostic, detail::smtp_phase::rcpt);
    return tec == transport_errc::recipient_rejected ? bounce_class::hard : bounce_class::soft;
}

struct report_context {
    delivery_report* out;
    time_point received_at;
    std::string report_id;  // the report message's own Message-ID, for dedup keys
};

void add_event(report_context& ctx, event_type type, bounce_class bounce, std::string recipient,
               std::string status, std::string diagnostic, std::string provider_event,
               std::optional<time_point> at) {
    if (ctx.out->events.size() >= max_recipients) return;
    event e;
    e.type = type;
    e.bounce = bounce;
    e.at = at.value_or(ctx.received_at);
    e.provider = "dsn";
    e.recipient = recipient_of(recipient);
    e.diagnostic_code = status.empty() ? diagnostic_code_in(diagnostic) : std::move(status);
    e.detail = std::move(diagnostic);
    e.provider_event = std::move(provider_event);
    e.message_id = ctx.out->original_message_id;
    e.provider_event_id = ctx.report_id;
    e.dedup_key = "dsn:" + webhooks::sha256_hex(ctx.report_id + "\n" + e.message_id + "\n" +
                                                e.recipient + "\n" + e.provider_event);
    ctx.out->events.push_back(std::move(e));
}

void read_original_headers(report_context& ctx, std::string_view text) {
    auto fs = read_fields(text);
    auto id = get(fs, "Message-ID");
    if (!id.empty()) ctx.out->original_message_id = strip_brackets(id);
}

// A plain-text bounce returns the message after a marker line at `at`.
void read_returned_copy(report_context& ctx, std::string_view body, std::size_t at) {
    if (at == std::string_view::npos) return;
    auto original = body.substr(at);
    auto nl = original.find('\n');
    if (nl != std::string_view::npos) read_original_headers(ctx, trim(original.substr(nl + 1)));
}

bool read_status_part(report_context& ctx, std::string_view text) {
    // Per-message fields, then one block per recipient, separated by empty
    // lines (RFC 3464 section 2.1).
    std::vector<std::vector<field>> blocks;
    std::string_view rest = text;
    while (!trim(rest).empty() && blocks.size() <= max_recipients) {
        // Skip leading empty lines.
        while (!rest.empty() && (rest.front() == '\n' || rest.front() == '\r'))
            rest.remove_prefix(1);
        std::string_view after;
        auto fs = read_fields(rest, &after);
        if (after.size() == rest.size()) break;
        if (!fs.empty()) blocks.push_back(std::move(fs));
        rest = after;
    }
    if (blocks.empty()) return false;
    const auto& per_message = blocks.front();
    ctx.out->reporting_mta = std::string(typed_value(get(per_message, "Reporting-MTA")));
    auto arrival = parse_mail_date(get(per_message, "Arrival-Date"));
    bool any = false;
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const auto& b = blocks[i];
        auto final_rcpt = get(b, "Final-Recipient");
        if (final_rcpt.empty()) final_rcpt = get(b, "Original-Recipient");
        auto action = media_type(get(b, "Action"));
        if (final_rcpt.empty() || action.empty()) continue;
        std::string status(trim(get(b, "Status")));
        if (status.find(' ') != std::string::npos) status = status.substr(0, status.find(' '));
        std::string diagnostic(typed_value(get(b, "Diagnostic-Code")));
        auto at = parse_mail_date(get(b, "Last-Attempt-Date"));
        if (!at) at = arrival;
        const std::string recipient(typed_value(final_rcpt));
        if (recipient.empty()) continue;
        std::string pe = action + (status.empty() ? "" : "/" + status);
        if (action == "failed") {
            auto cls = class_of(status, diagnostic);
            add_event(ctx, event_type::bounced, cls, recipient, status, std::move(diagnostic),
                      std::move(pe), at);
        } else if (action == "delayed") {
            add_event(ctx, event_type::deferred, bounce_class::none, recipient, status,
                      std::move(diagnostic), std::move(pe), at);
        } else if (action == "delivered" || action == "relayed" || action == "expanded") {
            add_event(ctx, event_type::delivered, bounce_class::none, recipient, status,
                      std::move(diagnostic), std::move(pe), at);
        } else {
            continue;
        }
        any = true;
    }
    return any;
}

// Finds a multipart/report with report-type delivery-status, at most
// `max_depth` multiparts down.
bool find_report(report_context& ctx, const std::vector<field>& fs, std::string_view body,
                 int depth) {
    const auto ct = get(fs, "Content-Type");
    const auto type = media_type(ct);
    if (!type.starts_with("multipart/") || depth > max_depth) return false;
    auto parts = split_multipart(body, param_of(ct, "boundary"));
    const bool is_report =
        type == "multipart/report" && iequals(param_of(ct, "report-type"), "delivery-status");
    if (is_report) {
        std::string status_text;
        for (const auto& p : parts) {
            auto pt = media_type(get(p.fields, "Content-Type"));
            if (pt == "message/delivery-status" || pt == "message/global-delivery-status")
                status_text = decode_body(p.fields, p.body);
            else if (pt == "message/rfc822" || pt == "text/rfc822-headers" ||
                     pt == "message/global" || pt == "message/global-headers")
                read_original_headers(ctx, decode_body(p.fields, p.body));
        }
        if (!status_text.empty() && read_status_part(ctx, status_text)) {
            ctx.out->format = "rfc3464";
            return true;
        }
        return false;
    }
    for (const auto& p : parts)
        if (find_report(ctx, p.fields, p.body, depth + 1)) return true;
    return false;
}

// qmail: "<user@host>:" then the remote's reply lines, per recipient,
// then "--- Below this line is a copy of the message."
bool read_qmail(report_context& ctx, std::string_view body) {
    if (body.find("This is the qmail-send program") == std::string_view::npos) return false;
    auto copy = body.find("--- Below this line is a copy of the message.");
    std::string_view report = body.substr(0, copy);
    read_returned_copy(ctx, body, copy);
    line_reader r{report};
    std::string_view line;
    std::string recipient, diagnostic;
    const bool permanent = report.find("permanent error") != std::string_view::npos ||
                           report.find("unable to deliver") != std::string_view::npos;
    auto flush = [&] {
        if (recipient.empty()) return;
        auto d = std::string(trim(diagnostic));
        auto status = diagnostic_code_in(d);
        auto cls = permanent ? class_of(status.find('.') != std::string::npos ? status : "", d)
                             : bounce_class::soft;
        add_event(ctx, permanent ? event_type::bounced : event_type::deferred,
                  permanent ? cls : bounce_class::none, recipient, "", d,
                  permanent ? "qmail/failed" : "qmail/delayed", std::nullopt);
        recipient.clear();
        diagnostic.clear();
    };
    while (r.next(line)) {
        if (line.size() > 3 && line.front() == '<' && line.ends_with(">:")) {
            flush();
            recipient = std::string(line.substr(1, line.size() - 3));
        } else if (!recipient.empty()) {
            diagnostic += std::string(trim(line)) + " ";
        }
    }
    flush();
    if (ctx.out->events.empty()) return false;
    ctx.out->format = "qmail";
    return true;
}

// Older Exim: "could not be delivered to one or more of its recipients",
// then an indented address and the reason on the following indented lines.
bool read_exim(report_context& ctx, std::string_view body) {
    auto intro = body.find("could not be delivered to one or more of its");
    if (intro == std::string_view::npos) return false;
    auto returned = body.find("------ This is a copy of the message");
    std::string_view report = body.substr(intro, returned == std::string_view::npos
                                                     ? std::string_view::npos
                                                     : returned - intro);
    read_returned_copy(ctx, body, returned);
    line_reader r{report};
    std::string_view line;
    r.next(line);  // the intro line itself
    std::string recipient, diagnostic;
    auto flush = [&] {
        if (recipient.empty()) return;
        auto d = std::string(trim(diagnostic));
        auto status = diagnostic_code_in(d);
        add_event(ctx, event_type::bounced,
                  class_of(status.find('.') != std::string::npos ? status : "", d), recipient, "",
                  d, "exim/failed", std::nullopt);
        recipient.clear();
        diagnostic.clear();
    };
    while (r.next(line)) {
        if (line.empty()) continue;
        const bool indented = line.front() == ' ' || line.front() == '\t';
        auto t = trim(line);
        if (indented && t.find('@') != std::string_view::npos && t.find(' ') == std::string_view::npos) {
            flush();
            recipient = std::string(t);
        } else if (indented && !recipient.empty()) {
            diagnostic += std::string(t) + " ";
        } else if (!indented && !recipient.empty()) {
            flush();
        }
    }
    flush();
    if (ctx.out->events.empty()) return false;
    ctx.out->format = "exim";
    return true;
}

}  // namespace

delivery_report parse_delivery_report(std::string_view message, time_point received_at) {
    delivery_report out;
    if (message.size() > max_delivery_report_size) {
        out.reason = "larger than max_delivery_report_size";
        return out;
    }
    std::string_view body;
    auto fs = read_fields(message, &body);
    report_context ctx{&out, received_at, strip_brackets(get(fs, "Message-ID"))};
    if (ctx.report_id.empty()) ctx.report_id = webhooks::sha256_hex(message);
    if (find_report(ctx, fs, body, 0) && !out.events.empty()) {
        out.recognised = true;
        return out;
    }
    out.events.clear();
    out.original_message_id.clear();
    const auto type = media_type(get(fs, "Content-Type"));
    if (type.empty() || type == "text/plain") {
        std::string text = decode_body(fs, body);
        if (read_qmail(ctx, text) || read_exim(ctx, text)) {
            out.recognised = true;
            return out;
        }
    }
    out.events.clear();
    out.original_message_id.clear();
    out.reason = type.starts_with("multipart/")
                     ? "no delivery-status report with a recipient in it"
                     : "not a delivery status notification nor a known bounce format";
    return out;
}

}  // namespace mailers
