// Gmail API users.messages.send:
//
//     POST /gmail/v1/users/<user>/messages/send     (Authorization: Bearer <token>)
//     {"raw": "<base64url MIME>", "threadId": "..."}
//
// 200 with {"id": ..., "threadId": ...}. Gmail delivers to the To, Cc and
// Bcc headers of the raw message (and strips Bcc), so envelope-only
// recipients travel in a Bcc header.
#include <deque>
#include <mutex>
#include <unordered_map>

#include "json/writer.hpp"
#include "mime/base64.hpp"
#include "mime/text.hpp"
#include "transports/http/common.hpp"
#include "transports/http/oauth2.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {
namespace {

constexpr std::size_t remembered_threads = 10000;

// Google Workspace's limit for a message sent through the Gmail API (To, Cc
// and Bcc together), lower than the 2,000 it allows from the web client.
constexpr std::size_t recipient_limit = 100;

class gmail_provider final : public http_provider {
public:
    gmail_provider(const gmail_params& p, http::client& client) : p_(p) {
        ep_ = resolve_endpoint("gmail", p_.endpoint, "gmail.googleapis.com");
        const std::string token_url =
            p_.token_endpoint.empty() ? "https://oauth2.googleapis.com/token" : p_.token_endpoint;
        const bool sa = !p_.service_account_email.empty() || !p_.private_key.empty();
        const bool rt = !p_.refresh_token.empty() || !p_.client_id.empty();
        if (sa == rt)
            throw_invalid(
                "gmail: configure either a service account (email and private key) or "
                "a refresh token (client id, client secret, refresh token)");
        if (sa) {
            if (p_.service_account_email.empty() || p_.private_key.empty())
                throw_invalid("gmail: a service account needs its email and its private key");
            service_account_ = true;
            tokens_ = make_jwt_bearer_source(client, token_url, p_.service_account_email,
                                             p_.private_key, p_.scope, p_.refresh_before);
        } else {
            if (p_.client_id.empty() || p_.client_secret.empty() || p_.refresh_token.empty())
                throw_invalid(
                    "gmail: the refresh-token flow needs client id, client secret and refresh "
                    "token");
            // The grant keeps the scopes the user consented to; naming them
            // again could only narrow or fail it.
            tokens_ = make_refresh_token_source(client, token_url, p_.client_id, p_.client_secret,
                                                p_.refresh_token, {}, p_.refresh_before);
        }
    }

    std::string_view name() const noexcept override { return "gmail"; }
    std::size_t max_recipients() const noexcept override { return recipient_limit; }
    const http::endpoint& api() const noexcept override { return ep_; }
    std::shared_ptr<token_source> tokens() const override { return tokens_; }

    boost::system::result<std::string> sending_user(const outbound& out,
                                                    diagnostics& diag) const override {
        if (!p_.user.empty()) return p_.user;
        // "me": the user who granted the refresh token.
        if (!service_account_) return std::string("me");
        return from_address_user(out, "gmail", diag);
    }

    // A service account gets a token per user it impersonates; a refresh
    // token stands for one user, so one token serves every send.
    bool token_per_user() const noexcept override { return service_account_; }

    // A service account's check asks for a token as the configured user,
    // or as itself when none is configured.
    std::string check_subject() const override { return service_account_ ? p_.user : ""; }

    error_code build(const outbound& out, const build_context& ctx, prepared& prep,
                     diagnostics& diag) override {
        std::string mime;
        if (auto ec = begin_user_mime_request(out, p_.render, "gmail", "/gmail/v1",
                                              "/messages/send", ctx, prep, mime, diag))
            return ec;
        const auto thread = thread_for(out);

        auto& req = prep.req;
        auto& body = req.body;
        body.clear();
        body.reserve(mime::base64_size(mime.size()) + 128);
        body += "{\"raw\":\"";
        append_base64url(body, mime);
        body += '"';
        if (!thread.empty()) {
            body += ",\"threadId\":";
            json::append_escaped(body, thread);
        }
        body += '}';
        req.headers.push_back({"Content-Type", "application/json"});
        return {};
    }

    void accepted(const outbound&, const prepared& prep, const http::response& r,
                  send_outcome& outcome) override {
        std::string id, thread;
        const json_member m[] = {{"id", &id}, {"threadId", &thread}};
        read_json_members(r.body, m);
        if (!prep.message_id.empty() && !thread.empty()) remember(prep.message_id, thread);
        outcome.provider_message_id = std::move(id);
    }

private:
    std::string thread_for(const outbound& out) {
        if (p_.thread_id) {
            auto t = p_.thread_id(out);
            if (!t.empty()) return t;
        }
        std::lock_guard lock(mu_);
        if (threads_.empty()) return {};
        if (!out.msg.in_reply_to.empty()) {
            auto it = threads_.find(std::string(mime::strip_angles(out.msg.in_reply_to)));
            if (it != threads_.end()) return it->second;
        }
        for (auto r = out.msg.references.rbegin(); r != out.msg.references.rend(); ++r) {
            auto it = threads_.find(std::string(mime::strip_angles(*r)));
            if (it != threads_.end()) return it->second;
        }
        return {};
    }

    void remember(const std::string& message_id, const std::string& thread) {
        std::lock_guard lock(mu_);
        if (!threads_.emplace(message_id, thread).second) return;
        order_.push_back(message_id);
        if (order_.size() > remembered_threads) {
            threads_.erase(order_.front());
            order_.pop_front();
        }
    }

    gmail_params p_;
    http::endpoint ep_;
    bool service_account_ = false;
    std::shared_ptr<token_source> tokens_;
    std::mutex mu_;
    std::unordered_map<std::string, std::string> threads_;  // Message-ID -> threadId
    std::deque<std::string> order_;
};

}  // namespace

std::unique_ptr<http_provider> make_gmail(const gmail_params& p, http::client& client,
                                          const boost::asio::any_io_executor&) {
    return std::make_unique<gmail_provider>(p, client);
}

}  // namespace mailers::detail
