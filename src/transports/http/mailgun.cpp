// Mailgun's MIME variant of the messages API:
//
//     POST /v3/<domain>/messages.mime        (Basic api:<key>)
//     multipart/form-data: to (one part per recipient), message (the MIME
//     file), o:tag, v:mailers_send_id
//
// Mailgun delivers to the `to` fields, so the envelope decides the
// recipients and the MIME goes as rendered.
#include "mime/base64.hpp"
#include "mime/text.hpp"
#include "transports/http/common.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {
namespace {

// Mailgun's documented maximum of recipients per message.
constexpr std::size_t recipient_limit = 1000;

void add_part(std::string& body, std::string_view boundary, std::string_view name,
              std::string_view value) {
    body += "--";
    body += boundary;
    body += "\r\nContent-Disposition: form-data; name=\"";
    body += name;
    body += "\"\r\n\r\n";
    body += value;
    body += "\r\n";
}

class mailgun_provider final : public http_provider {
public:
    explicit mailgun_provider(const mailgun_params& p) : p_(p) {
        if (p_.api_key.empty()) throw_invalid("mailgun: the API key is required");
        if (!is_host_name_text(p_.domain))
            throw_invalid("mailgun: the sending domain is missing or is not a domain name");
        if (p_.tags.size() > 3) throw_invalid("mailgun: at most 3 tags per message");
        for (const auto& t : p_.tags)
            if (t.empty() || t.size() > 128 || t.find_first_of("\r\n\"") != std::string::npos)
                throw_invalid(
                    "mailgun: a tag is empty, longer than 128 octets, or holds quotes or line "
                    "breaks");
        ep_ = resolve_endpoint(
            "mailgun", p_.endpoint,
            p_.region == mailgun_region::eu ? "api.eu.mailgun.net" : "api.mailgun.net");
        target_ = "/v3/" + p_.domain + "/messages.mime";
        std::string creds = "api:" + p_.api_key.reveal();
        authorization_ = "Basic ";
        mime::append_base64(authorization_, creds);
    }

    std::string_view name() const noexcept override { return "mailgun"; }
    std::size_t max_recipients() const noexcept override { return recipient_limit; }
    const http::endpoint& api() const noexcept override { return ep_; }

    error_code build(const outbound& out, const build_context&, prepared& prep,
                     diagnostics& diag) override {
        std::vector<std::string> rcpts;
        if (auto ec = envelope_recipients(out, "mailgun", rcpts, diag)) return ec;
        std::string mime;
        if (auto ec = render_mime(out, p_.render, "mailgun", mime, diag)) return ec;
        prep.message_id = rendered_message_id(mime);

        // A random boundary: a rendered message never contains 32 random hex
        // digits by chance, and checking would cost a scan of the message.
        const auto boundary = "mailers-" + random_hex(16);
        auto& req = prep.req;
        auto& body = req.body;
        body.clear();
        body.reserve(mime.size() + 512 + rcpts.size() * 96);
        for (const auto& r : rcpts) add_part(body, boundary, "to", r);
        for (const auto& t : p_.tags) add_part(body, boundary, "o:tag", t);
        if (is_tag_text(out.send_id)) add_part(body, boundary, "v:mailers_send_id", out.send_id);
        body += "--";
        body += boundary;
        body +=
            "\r\nContent-Disposition: form-data; name=\"message\"; filename=\"message.mime\"\r\n"
            "Content-Type: message/rfc822\r\n\r\n";
        body += mime;
        body += "\r\n--";
        body += boundary;
        body += "--\r\n";

        req.method = "POST";
        req.target = target_;
        req.headers.clear();
        req.headers.push_back({"Authorization", authorization_});
        req.headers.push_back({"Content-Type", "multipart/form-data; boundary=" + boundary});
        return {};
    }

    // GET /v3/domains/{domain} reads the sending domain with the key.
    error_code build_check(const build_context&, prepared& prep, diagnostics&) override {
        prep.req.method = "GET";
        prep.req.target = "/v3/domains/" + p_.domain;
        prep.req.headers = {{"Authorization", authorization_}};
        return {};
    }

    void accepted(const outbound&, const prepared&, const http::response& r,
                  send_outcome& outcome) override {
        // Mailgun's events and webhooks name the message without brackets.
        outcome.provider_message_id = mime::strip_angles(read_json_member(r.body, "id"));
    }

private:
    mailgun_params p_;
    http::endpoint ep_;
    std::string target_;
    std::string authorization_;
};

}  // namespace

std::unique_ptr<http_provider> make_mailgun(const mailgun_params& p) {
    return std::make_unique<mailgun_provider>(p);
}

}  // namespace mailers::detail
