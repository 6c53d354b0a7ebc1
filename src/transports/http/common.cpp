#include "transports/http/common.hpp"

#include <simdjson.h>

#include <algorithm>
#include <unordered_set>

#include "http/sigv4.hpp"
#include "mime/base64.hpp"
#include "mime/random.hpp"
#include "mime/raw.hpp"
#include "mime/text.hpp"

namespace mailers::detail {
namespace {

boost::system::result<std::string> ascii_domain(std::string_view domain) {
    if (mime::is_ascii(domain)) {
        std::string d(domain);
        for (auto& c : d) c = mime::to_lower(c);
        return d;
    }
    return domain_to_ascii(domain);
}

// An envelope address with its domain as a lower-case A-label, or "".
std::string normalise_spec(std::string_view spec) {
    const auto at = spec.rfind('@');
    if (at == std::string_view::npos || at == 0 || at + 1 == spec.size()) return {};
    auto d = ascii_domain(spec.substr(at + 1));
    if (!d) return {};
    std::string out(spec.substr(0, at + 1));
    out += *d;
    return is_valid_addr_spec(out) ? out : std::string{};
}

bool is_atext_phrase(std::string_view s) noexcept {
    if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return c == ' ' || mime::is_atext(static_cast<unsigned char>(c));
    });
}

}  // namespace

boost::system::result<std::string> ascii_addr_spec(const address& a) {
    auto d = ascii_domain(a.domain);
    if (!d) return d.error();
    std::string out;
    out.reserve(a.local.size() + 1 + d->size());
    out += a.local;
    out += '@';
    out += *d;
    return out;
}

error_code envelope_recipients(const outbound& out, std::string_view provider,
                               std::vector<std::string>& rcpts, diagnostics& diag) {
    rcpts.clear();
    const auto add = [&](std::string_view spec) -> error_code {
        auto n = normalise_spec(spec);
        if (n.empty()) {
            diag.message = std::string(provider) + ": an envelope recipient is not a valid address";
            return make_error_code(errc::invalid_address);
        }
        if (std::find(rcpts.begin(), rcpts.end(), n) == rcpts.end()) rcpts.push_back(std::move(n));
        return {};
    };
    if (!out.env.rcpt_to.empty()) {
        for (const auto& r : out.env.rcpt_to)
            if (auto ec = add(r)) return ec;
    } else {
        for (const auto* list : {&out.msg.to, &out.msg.cc, &out.msg.bcc})
            for (const auto& a : *list)
                if (auto ec = add(a.addr_spec())) return ec;
    }
    if (rcpts.empty()) {
        diag.message = std::string(provider) + ": the message has no recipient";
        return make_error_code(errc::invalid_argument);
    }
    return {};
}

error_code split_recipients(const outbound& out, std::string_view provider, recipient_lists& r,
                            diagnostics& diag) {
    std::vector<std::string> env;
    if (auto ec = envelope_recipients(out, provider, env, diag)) return ec;
    r = recipient_lists{};
    // Most sends have a handful of recipients: those are searched in place.
    // Hash sets take over for long lists (SendGrid allows 1,000), where
    // linear searches would be quadratic.
    const bool long_lists = env.size() + out.msg.to.size() + out.msg.cc.size() > 32;
    std::unordered_set<std::string_view> in_envelope;
    std::unordered_set<std::string> in_headers;
    if (long_lists) in_envelope.insert(env.begin(), env.end());
    const auto contains = [](const std::vector<std::string>& v, const std::string& s) {
        return std::find(v.begin(), v.end(), s) != v.end();
    };
    const auto enveloped = [&](const std::string& spec) {
        return long_lists ? in_envelope.count(spec) > 0 : contains(env, spec);
    };
    const auto already_listed = [&](const std::string& spec) {
        return long_lists ? in_headers.count(spec) > 0
                          : contains(r.to_specs, spec) || contains(r.cc_specs, spec);
    };
    const auto take = [&](const std::vector<address>& from, std::vector<const address*>& list,
                          std::vector<std::string>& specs) -> error_code {
        for (const auto& a : from) {
            auto spec = ascii_addr_spec(a);
            if (!spec || !is_valid_addr_spec(*spec)) {
                diag.message = std::string(provider) + ": a To or Cc address is not valid";
                return make_error_code(errc::invalid_address);
            }
            if (!enveloped(*spec)) {
                // This provider would deliver to it anyway; the envelope,
                // which the suppression check produced, is what decides.
                diag.message = std::string(provider) +
                               " delivers to every To and Cc address, and one of them is not "
                               "in the envelope";
                return make_error_code(errc::invalid_argument);
            }
            if (already_listed(*spec)) continue;
            if (long_lists) in_headers.insert(*spec);
            list.push_back(&a);
            specs.push_back(std::move(*spec));
        }
        return {};
    };
    if (auto ec = take(out.msg.to, r.to, r.to_specs)) return ec;
    if (auto ec = take(out.msg.cc, r.cc, r.cc_specs)) return ec;
    in_envelope.clear();  // its views are into `env`, which is moved from next
    for (auto& e : env)
        if (!already_listed(e)) r.bcc.push_back(std::move(e));
    return {};
}

error_code check_recipient_limit(const outbound& out, std::string_view provider, std::size_t limit,
                                 diagnostics& diag) {
    std::vector<std::string> rcpts;
    diagnostics ignored;
    if (envelope_recipients(out, provider, rcpts, ignored) || rcpts.size() <= limit) return {};
    diag.message = std::string(provider) + ": the message has " + std::to_string(rcpts.size()) +
                   " recipients (To, Cc and Bcc together) and " + std::string(provider) +
                   " takes at most " + std::to_string(limit) + " per message";
    return make_error_code(errc::invalid_argument);
}

error_code check_and_split(const outbound& out, std::string_view provider, recipient_lists& r,
                           diagnostics& diag) {
    if (!out.raw.empty()) {
        diag.message = std::string(provider) +
                       " takes a message as fields and has no API for a pre-rendered one; send "
                       "it unrendered or through a provider that accepts MIME";
        return make_error_code(errc::invalid_argument);
    }
    if (auto ec = validate_message(out.msg)) {
        diag.message = std::string(provider) + ": the message is not valid: " + ec.message();
        return ec;
    }
    return split_recipients(out, provider, r, diag);
}

void append_mailbox(std::string& out, std::string_view name, std::string_view spec) {
    if (name.empty()) {
        out += spec;
        return;
    }
    if (is_atext_phrase(name)) {
        out += name;
    } else {
        out += '"';
        mime::append_quoted(out, name);
        out += '"';
    }
    out += " <";
    out += spec;
    out += '>';
}

void append_base64url(std::string& out, std::string_view data) {
    const auto start = out.size();
    mime::append_base64(out, data);
    while (out.size() > start && out.back() == '=') out.pop_back();
    for (auto i = start; i < out.size(); ++i) {
        if (out[i] == '+')
            out[i] = '-';
        else if (out[i] == '/')
            out[i] = '_';
    }
}

void append_percent_encoded(std::string& out, std::string_view s) {
    sigv4::uri_encode(out, s, /*keep_slash=*/false);
}

void append_form_field(std::string& body, std::string_view name, std::string_view value) {
    if (!body.empty()) body += '&';
    append_percent_encoded(body, name);
    body += '=';
    append_percent_encoded(body, value);
}

std::string random_hex(std::size_t bytes) {
    static constexpr char hex[] = "0123456789abcdef";
    std::vector<unsigned char> raw(bytes);
    mime::random_bytes(raw.data(), raw.size());
    std::string out;
    out.reserve(bytes * 2);
    for (auto b : raw) {
        out += hex[b >> 4];
        out += hex[b & 15];
    }
    return out;
}

error_code render_mime(const outbound& out, const render_options& opts, std::string_view provider,
                       std::string& mime, diagnostics& diag) {
    if (!out.raw.empty()) {
        std::string why;
        if (auto ec = mime::check_raw_lines(out.raw, why)) {
            diag.message = std::string(provider) + ": " + why;
            return ec;
        }
        mime = out.raw;
        return {};
    }
    auto r = render_message(out.msg, opts);
    if (!r) {
        diag.message =
            std::string(provider) + ": the message cannot be rendered: " + r.error().message();
        return r.error();
    }
    mime = std::move(*r);
    return {};
}

std::string rendered_message_id(std::string_view mime) {
    const auto head_end = mime.find("\r\n\r\n");
    const auto head = mime.substr(0, head_end);
    std::size_t pos = 0;
    while (pos < head.size()) {
        const auto eol = head.find("\r\n", pos);
        const auto line = head.substr(pos, eol == std::string_view::npos ? eol : eol - pos);
        if (line.size() > 11 &&
            (line.starts_with("Message-ID:") || line.starts_with("Message-Id:"))) {
            const auto open = line.find('<');
            const auto close = line.find('>', open);
            if (open != std::string_view::npos && close != std::string_view::npos)
                return std::string(line.substr(open + 1, close - open - 1));
        }
        if (eol == std::string_view::npos) break;
        pos = eol + 2;
    }
    return {};
}

void add_bcc_header(std::string& mime, std::span<const std::string> bcc) {
    if (bcc.empty()) return;
    std::string field = "Bcc:";
    std::size_t column = field.size();
    for (std::size_t i = 0; i < bcc.size(); ++i) {
        // Folded so that no line passes RFC 5322's 998-octet limit.
        if (i > 0) {
            field += ',';
            ++column;
        }
        if (column + 1 + bcc[i].size() > 78 && i > 0) {
            field += "\r\n";
            column = 0;
        }
        field += ' ';
        field += bcc[i];
        column += 1 + bcc[i].size();
    }
    field += "\r\n";
    mime.insert(0, field);
}

boost::system::result<std::string> from_address_user(const outbound& out, std::string_view provider,
                                                     diagnostics& diag) {
    auto from = ascii_addr_spec(out.msg.from);
    if (!from) {
        diag.message = std::string(provider) + ": the From address does not name a user to send as";
        return from.error();
    }
    return std::move(*from);
}

error_code begin_user_mime_request(const outbound& out, const render_options& opts,
                                   std::string_view provider, std::string_view api_root,
                                   std::string_view action, const build_context& ctx, prepared& p,
                                   std::string& mime, diagnostics& diag) {
    recipient_lists rl;
    if (auto ec = split_recipients(out, provider, rl, diag)) return ec;
    if (auto ec = render_mime(out, opts, provider, mime, diag)) return ec;
    p.message_id = rendered_message_id(mime);
    add_bcc_header(mime, rl.bcc);

    auto& req = p.req;
    req.method = "POST";
    req.target = api_root;
    req.target += "/users/";
    append_percent_encoded(req.target, ctx.user);
    req.target += action;
    req.headers.clear();
    req.headers.push_back({"Authorization", "Bearer " + std::string(ctx.access_token)});
    return {};
}

namespace {

// A capacity for a JSON request body carrying `m` (bodies, subject and
// base64 attachments plus room for the envelope fields), so the body is
// built without reallocating.
std::size_t json_body_capacity(const message& m) {
    std::size_t size = m.text.size() + m.html.size() + m.subject.size() + 1024;
    for (const auto& a : m.attachments) size += mime::base64_size(a.data.size()) + 128;
    return size;
}

// The fields that keep threading and one-click unsubscribe working when the
// provider writes the MIME (Message-ID, In-Reply-To, References,
// List-Unsubscribe, List-Unsubscribe-Post), then the message's own extra
// headers. A message without an id gets a new one, returned in `message_id`.
void message_headers(const message& m, std::vector<http::field>& out, std::string& message_id) {
    if (!m.message_id.empty()) {
        message_id.assign(mime::strip_angles(m.message_id));
    } else {
        auto d = ascii_domain(m.from.domain);
        message_id = make_message_id(d ? *d : std::string{});
    }
    out.push_back({"Message-ID", "<" + message_id + ">"});
    if (!m.in_reply_to.empty())
        out.push_back({"In-Reply-To", "<" + std::string(mime::strip_angles(m.in_reply_to)) + ">"});
    if (!m.references.empty()) {
        std::string refs;
        for (const auto& r : m.references) {
            if (!refs.empty()) refs += ' ';
            refs += '<';
            refs += mime::strip_angles(r);
            refs += '>';
        }
        out.push_back({"References", std::move(refs)});
    }
    if (m.unsubscribe && !m.unsubscribe->url.empty()) {
        std::string v = "<" + m.unsubscribe->url + ">";
        if (!m.unsubscribe->mailto.empty()) v += ", <mailto:" + m.unsubscribe->mailto + ">";
        out.push_back({"List-Unsubscribe", std::move(v)});
        out.push_back({"List-Unsubscribe-Post", "List-Unsubscribe=One-Click"});
    }
    for (const auto& h : m.headers) out.push_back({h.name, h.value});
}

}  // namespace

error_code begin_json_message(const message& m, std::string_view provider,
                              json_message_parts& parts, std::string& message_id, std::string& body,
                              diagnostics& diag) {
    auto from = ascii_addr_spec(m.from);
    if (!from) {
        diag.message = std::string(provider) + ": the From address cannot be sent";
        return from.error();
    }
    parts.from = std::move(*from);
    parts.headers.clear();
    message_headers(m, parts.headers, message_id);
    body.clear();
    body.reserve(json_body_capacity(m));
    return {};
}

bool read_json_members(std::string_view body, std::span<const json_member> members) {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object o;
    if (parser.parse(body.data(), body.size()).get(o) != simdjson::SUCCESS) return false;
    for (const auto& m : members) {
        m.value->clear();
        simdjson::dom::element e;
        if (o[m.key].get(e) != simdjson::SUCCESS) continue;
        std::string_view s;
        std::int64_t i = 0;
        std::uint64_t u = 0;
        double d = 0;
        bool b = false;
        if (e.get(s) == simdjson::SUCCESS)
            m.value->assign(s);
        else if (e.get(i) == simdjson::SUCCESS)
            *m.value = std::to_string(i);
        else if (e.get(u) == simdjson::SUCCESS)
            *m.value = std::to_string(u);
        else if (e.get(d) == simdjson::SUCCESS && d >= -0x1p63 && d < 0x1p63)
            *m.value = std::to_string(static_cast<std::int64_t>(d));  // in range: defined
        else if (e.get(b) == simdjson::SUCCESS)
            *m.value = b ? "true" : "false";
    }
    return true;
}

std::string read_json_member(std::string_view body, std::string_view key) {
    std::string value;
    const json_member m[] = {{key, &value}};
    read_json_members(body, m);
    return value;
}

bool is_host_name_text(std::string_view s) noexcept {
    return !s.empty() && s.size() <= 253 && std::all_of(s.begin(), s.end(), [](char c) {
        return mime::is_alnum(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    });
}

bool is_tag_text(std::string_view s) noexcept {
    if (s.empty() || s.size() > 256) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return mime::is_alnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
    });
}

}  // namespace mailers::detail
