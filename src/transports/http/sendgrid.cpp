// SendGrid v3 mail/send:
//
//     POST /v3/mail/send                     (Authorization: Bearer <key>)
//     {"personalizations": [{"to": [...], "cc": [...], "bcc": [...]}],
//      "from": {...}, "reply_to": {...}, "subject": ..., "content": [...],
//      "attachments": [...], "headers": {...}, "custom_args": {...},
//      "categories": [...]}
//
// 202 Accepted with the message id in X-Message-Id. SendGrid writes the MIME
// itself, so threading and unsubscribe headers go in "headers".
#include "json/writer.hpp"
#include "transports/http/common.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {
namespace {

// SendGrid's documented maximum of recipients per request (To, Cc and Bcc).
constexpr std::size_t recipient_limit = 1000;

// SendGrid answers 202 to a name holding ',' or ';' (a documented limit of
// its API), then splits the address at that character and drops the mail
// as invalid. Each becomes a space, or goes where a space or the end is
// next to it.
std::string sendgrid_name(std::string_view name) {
    if (name.find_first_of(",;") == std::string_view::npos) return std::string(name);
    std::string out;
    out.reserve(name.size());
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char c = name[i];
        if (c != ',' && c != ';') {
            out += c;
            continue;
        }
        const bool gap_next =
            i + 1 == name.size() || name[i + 1] == ' ' || name[i + 1] == ',' || name[i + 1] == ';';
        if (!out.empty() && out.back() != ' ' && !gap_next) out += ' ';
    }
    const auto first = out.find_first_not_of(' ');
    if (first == std::string::npos) return {};
    out.erase(out.find_last_not_of(' ') + 1);
    out.erase(0, first);
    return out;
}

void write_email(json::writer& w, std::string_view spec, std::string_view name) {
    w.begin_object().member("email", spec);
    if (!name.empty()) {
        if (const auto n = sendgrid_name(name); !n.empty()) w.member("name", n);
    }
    w.end_object();
}

class sendgrid_provider final : public http_provider {
public:
    explicit sendgrid_provider(const sendgrid_params& p) : p_(p) {
        if (p_.api_key.empty()) throw_invalid("sendgrid: the API key is required");
        if (p_.categories.size() > 10) throw_invalid("sendgrid: at most 10 categories per message");
        ep_ = resolve_endpoint("sendgrid", p_.endpoint, "api.sendgrid.com");
        authorization_ = "Bearer " + p_.api_key.reveal();
    }

    std::string_view name() const noexcept override { return "sendgrid"; }
    std::size_t max_recipients() const noexcept override { return recipient_limit; }
    const http::endpoint& api() const noexcept override { return ep_; }

    error_code build(const outbound& out, const build_context&, prepared& prep,
                     diagnostics& diag) override {
        const auto& m = out.msg;
        recipient_lists rl;
        if (auto ec = check_and_split(out, "sendgrid", rl, diag)) return ec;
        if (rl.to.empty()) {
            diag.message = "sendgrid: a message needs at least one To address in the envelope";
            return make_error_code(errc::invalid_argument);
        }
        auto& req = prep.req;
        json_message_parts parts;
        if (auto ec = begin_json_message(m, "sendgrid", parts, prep.message_id, req.body, diag))
            return ec;
        json::writer w{req.body};
        w.begin_object().key("personalizations").begin_array().begin_object();
        w.key("to").begin_array();
        for (std::size_t i = 0; i < rl.to.size(); ++i)
            write_email(w, rl.to_specs[i], rl.to[i]->display_name);
        w.end_array();
        if (!rl.cc.empty()) {
            w.key("cc").begin_array();
            for (std::size_t i = 0; i < rl.cc.size(); ++i)
                write_email(w, rl.cc_specs[i], rl.cc[i]->display_name);
            w.end_array();
        }
        if (!rl.bcc.empty()) {
            w.key("bcc").begin_array();
            for (const auto& b : rl.bcc) write_email(w, b, {});
            w.end_array();
        }
        w.end_object().end_array();
        w.key("from");
        write_email(w, parts.from, m.from.display_name);
        if (m.reply_to) {
            auto rt = ascii_addr_spec(*m.reply_to);
            if (!rt) {
                diag.message = "sendgrid: the Reply-To address cannot be sent";
                return rt.error();
            }
            w.key("reply_to");
            write_email(w, *rt, m.reply_to->display_name);
        }
        w.member("subject", m.subject);
        w.key("content").begin_array();
        // SendGrid requires text/plain first, and at least one part.
        if (!m.text.empty() || m.html.empty())
            w.begin_object()
                .member("type", "text/plain")
                .member("value", m.text.empty() ? " " : m.text)
                .end_object();
        if (!m.html.empty())
            w.begin_object().member("type", "text/html").member("value", m.html).end_object();
        w.end_array();
        if (!m.attachments.empty()) {
            w.key("attachments").begin_array();
            for (const auto& a : m.attachments) {
                w.begin_object().key("content").base64_value(a.data);
                w.member("type", a.content_type.empty()
                                     ? std::string_view("application/octet-stream")
                                     : std::string_view(a.content_type));
                w.member("filename", a.filename.empty() ? std::string_view("attachment")
                                                        : std::string_view(a.filename));
                if (!a.content_id.empty())
                    w.member("disposition", "inline").member("content_id", a.content_id);
                else
                    w.member("disposition", "attachment");
                w.end_object();
            }
            w.end_array();
        }
        w.key("headers").begin_object();
        for (const auto& h : parts.headers) w.member(h.name, h.value);
        w.end_object();
        if (is_tag_text(out.send_id))
            w.key("custom_args").begin_object().member("mailers_send_id", out.send_id).end_object();
        if (!p_.categories.empty()) {
            w.key("categories").begin_array();
            for (const auto& c : p_.categories) w.value(c);
            w.end_array();
        }
        w.end_object();

        req.method = "POST";
        req.target = "/v3/mail/send";
        req.headers.clear();
        req.headers.push_back({"Authorization", authorization_});
        req.headers.push_back({"Content-Type", "application/json"});
        return {};
    }

    void accepted(const outbound&, const prepared&, const http::response& r,
                  send_outcome& outcome) override {
        outcome.provider_message_id.assign(r.header("X-Message-Id"));
    }

    // GET /v3/scopes lists the scopes of the key it is called with.
    error_code build_check(const build_context&, prepared& prep, diagnostics&) override {
        prep.req.method = "GET";
        prep.req.target = "/v3/scopes";
        prep.req.headers = {{"Authorization", authorization_}};
        return {};
    }

private:
    sendgrid_params p_;
    http::endpoint ep_;
    std::string authorization_;
};

}  // namespace

std::unique_ptr<http_provider> make_sendgrid(const sendgrid_params& p) {
    return std::make_unique<sendgrid_provider>(p);
}

}  // namespace mailers::detail
