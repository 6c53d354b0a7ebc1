// Postmark's single-message API:
//
//     POST /email                            (X-Postmark-Server-Token)
//     {"From": ..., "To": ..., "Cc": ..., "Bcc": ..., "Subject": ...,
//      "TextBody": ..., "HtmlBody": ..., "ReplyTo": ..., "Headers": [...],
//      "Attachments": [...], "Metadata": {...}, "Tag": ..., "MessageStream": ...}
//
// 200 with {"ErrorCode": 0, "MessageID": ...}; refusals are 422 with an
// ErrorCode. Postmark writes the MIME itself.
#include "json/writer.hpp"
#include "transports/http/common.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {
namespace {

// Postmark's documented maximum of recipients per message (To, Cc and Bcc).
constexpr std::size_t recipient_limit = 50;

class postmark_provider final : public http_provider {
public:
    explicit postmark_provider(const postmark_params& p) : p_(p) {
        if (p_.server_token.empty()) throw_invalid("postmark: the server token is required");
        if (p_.message_stream.empty() || !is_tag_text(p_.message_stream))
            throw_invalid("postmark: the message stream id must use only A-Z a-z 0-9 _ -");
        if (p_.tag.size() > 1000 || p_.tag.find_first_of("\r\n") != std::string::npos)
            throw_invalid("postmark: the tag is longer than 1000 characters or holds a line break");
        ep_ = resolve_endpoint("postmark", p_.endpoint, "api.postmarkapp.com");
    }

    std::string_view name() const noexcept override { return "postmark"; }
    std::size_t max_recipients() const noexcept override { return recipient_limit; }
    const http::endpoint& api() const noexcept override { return ep_; }

    error_code build(const outbound& out, const build_context&, prepared& prep,
                     diagnostics& diag) override {
        const auto& m = out.msg;
        recipient_lists rl;
        if (auto ec = check_and_split(out, "postmark", rl, diag)) return ec;
        auto& req = prep.req;
        json_message_parts parts;
        if (auto ec = begin_json_message(m, "postmark", parts, prep.message_id, req.body, diag))
            return ec;

        std::string list;
        const auto join = [&](const std::vector<const address*>& addrs,
                              const std::vector<std::string>& specs) -> const std::string& {
            list.clear();
            for (std::size_t i = 0; i < addrs.size(); ++i) {
                if (i) list += ", ";
                append_mailbox(list, addrs[i]->display_name, specs[i]);
            }
            return list;
        };
        json::writer w{req.body};
        w.begin_object();
        list.clear();
        append_mailbox(list, m.from.display_name, parts.from);
        w.member("From", list);
        if (!rl.to.empty()) w.member("To", join(rl.to, rl.to_specs));
        if (!rl.cc.empty()) w.member("Cc", join(rl.cc, rl.cc_specs));
        if (!rl.bcc.empty()) {
            list.clear();
            for (std::size_t i = 0; i < rl.bcc.size(); ++i) {
                if (i) list += ", ";
                list += rl.bcc[i];
            }
            w.member("Bcc", list);
        }
        if (m.reply_to) {
            auto rt = ascii_addr_spec(*m.reply_to);
            if (!rt) {
                diag.message = "postmark: the Reply-To address cannot be sent";
                return rt.error();
            }
            list.clear();
            append_mailbox(list, m.reply_to->display_name, *rt);
            w.member("ReplyTo", list);
        }
        w.member("Subject", m.subject);
        if (!m.text.empty()) w.member("TextBody", m.text);
        if (!m.html.empty()) w.member("HtmlBody", m.html);
        w.key("Headers").begin_array();
        for (const auto& h : parts.headers)
            w.begin_object().member("Name", h.name).member("Value", h.value).end_object();
        w.end_array();
        if (!m.attachments.empty()) {
            w.key("Attachments").begin_array();
            for (const auto& a : m.attachments) {
                w.begin_object().member("Name", a.filename.empty() ? std::string_view("attachment")
                                                                   : std::string_view(a.filename));
                w.key("Content").base64_value(a.data);
                w.member("ContentType", a.content_type.empty()
                                            ? std::string_view("application/octet-stream")
                                            : std::string_view(a.content_type));
                if (!a.content_id.empty()) w.member("ContentID", "cid:" + a.content_id);
                w.end_object();
            }
            w.end_array();
        }
        if (is_tag_text(out.send_id))
            w.key("Metadata").begin_object().member("mailers_send_id", out.send_id).end_object();
        if (!p_.tag.empty()) w.member("Tag", p_.tag);
        w.member("MessageStream", p_.message_stream);
        w.end_object();

        req.method = "POST";
        req.target = "/email";
        req.headers.clear();
        req.headers.push_back({"X-Postmark-Server-Token", p_.server_token.reveal()});
        req.headers.push_back({"Accept", "application/json"});
        req.headers.push_back({"Content-Type", "application/json"});
        return {};
    }

    void accepted(const outbound&, const prepared&, const http::response& r,
                  send_outcome& outcome) override {
        outcome.provider_message_id = read_json_member(r.body, "MessageID");
    }

    // GET /server reads the configuration of the server the token belongs to.
    error_code build_check(const build_context&, prepared& prep, diagnostics&) override {
        prep.req.method = "GET";
        prep.req.target = "/server";
        prep.req.headers = {{"X-Postmark-Server-Token", p_.server_token.reveal()},
                            {"Accept", "application/json"}};
        return {};
    }

private:
    postmark_params p_;
    http::endpoint ep_;
};

}  // namespace

std::unique_ptr<http_provider> make_postmark(const postmark_params& p) {
    return std::make_unique<postmark_provider>(p);
}

}  // namespace mailers::detail
