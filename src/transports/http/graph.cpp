// Microsoft Graph sendMail with a MIME body:
//
//     POST /v1.0/users/<user>/sendMail        (Authorization: Bearer <token>)
//     Content-Type: text/plain
//     <base64 MIME>
//
// 202 Accepted with no body. Graph takes recipients from the MIME headers,
// so envelope-only recipients travel in a Bcc header. The token comes from
// the client-credentials flow (application permission Mail.Send): one
// token is good for every mailbox of the tenant.
#include "mime/base64.hpp"
#include "mime/text.hpp"
#include "transports/http/common.hpp"
#include "transports/http/oauth2.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {
namespace {

// Exchange Online's ceiling on recipients per message (To, Cc and Bcc
// together). A lower limit a tenant sets for its mailboxes (500 unless
// changed) is not known here.
constexpr std::size_t recipient_limit = 1000;

class graph_provider final : public http_provider {
public:
    graph_provider(const graph_params& p, http::client& client) : p_(p) {
        if (p_.client_id.empty() || p_.client_secret.empty())
            throw_invalid("graph: the client id and the client secret are required");
        if (p_.max_concurrent_per_mailbox == 0)
            throw_invalid("graph: max_concurrent_per_mailbox must be at least 1");
        if (p_.token_endpoint.empty() && !is_host_name_text(p_.tenant))
            throw_invalid("graph: the tenant (directory id or domain) is required");
        ep_ = resolve_endpoint("graph", p_.endpoint, "graph.microsoft.com");
        const std::string token_url =
            p_.token_endpoint.empty()
                ? "https://login.microsoftonline.com/" + p_.tenant + "/oauth2/v2.0/token"
                : p_.token_endpoint;
        tokens_ = make_client_credentials_source(client, token_url, p_.client_id, p_.client_secret,
                                                 p_.scope, p_.refresh_before);
    }

    std::string_view name() const noexcept override { return "graph"; }
    std::size_t max_recipients() const noexcept override { return recipient_limit; }
    const http::endpoint& api() const noexcept override { return ep_; }
    std::shared_ptr<token_source> tokens() const override { return tokens_; }

    boost::system::result<std::string> sending_user(const outbound& out,
                                                    diagnostics& diag) const override {
        if (!p_.user.empty()) return p_.user;
        return from_address_user(out, "graph", diag);
    }

    std::pair<std::string, std::size_t> concurrency(std::string_view user) const override {
        std::string key(user);
        for (auto& c : key) c = mime::to_lower(c);
        return {std::move(key), p_.max_concurrent_per_mailbox};
    }

    error_code build(const outbound& out, const build_context& ctx, prepared& prep,
                     diagnostics& diag) override {
        std::string mime;
        if (auto ec = begin_user_mime_request(out, p_.render, "graph", "/v1.0", "/sendMail", ctx,
                                              prep, mime, diag))
            return ec;
        auto& req = prep.req;
        req.body.clear();
        req.body.reserve(mime::base64_size(mime.size()));
        mime::append_base64(req.body, mime);
        req.headers.push_back({"Content-Type", "text/plain"});
        return {};
    }

    void accepted(const outbound&, const prepared& prep, const http::response& r,
                  send_outcome& outcome) override {
        // Graph returns no id; the Message-ID sent is what its events and
        // the recipient's copy carry.
        outcome.provider_message_id = prep.message_id;
        outcome.diag.request_id.assign(r.header("request-id"));
    }

private:
    graph_params p_;
    http::endpoint ep_;
    std::shared_ptr<token_source> tokens_;
};

}  // namespace

std::unique_ptr<http_provider> make_graph(const graph_params& p, http::client& client,
                                          const boost::asio::any_io_executor&) {
    return std::make_unique<graph_provider>(p, client);
}

}  // namespace mailers::detail
