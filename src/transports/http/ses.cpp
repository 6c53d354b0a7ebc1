// Amazon SES v2 SendEmail with raw content:
//
//     POST /v2/email/outbound-emails
//     {"FromEmailAddress": ..., "Destination": {"ToAddresses": [...]},
//      "Content": {"Raw": {"Data": "<base64 MIME>"}},
//      "ConfigurationSetName": ..., "EmailTags": [{"Name": ..., "Value": ...}]}
//
// signed with SigV4 (service "ses"). Raw content is delivered to the
// Destination addresses, so the envelope decides the recipients and Bcc
// needs no header.
#include <atomic>
#include <mutex>

#include "http/sigv4.hpp"
#include "json/writer.hpp"
#include "mime/base64.hpp"
#include "transports/http/common.hpp"
#include "transports/http/error_mapping.hpp"
#include "transports/http/provider.hpp"

namespace mailers::detail {
namespace {

// SES's documented maximum of recipients per message (To, Cc and Bcc).
constexpr std::size_t recipient_limit = 50;

bool is_region(std::string_view r) noexcept {
    if (r.empty() || r.size() > 32) return false;
    for (char c : r)
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
    return true;
}

class ses_provider final : public http_provider {
public:
    explicit ses_provider(const ses_params& p) : p_(p) {
        if (p_.access_key_id.empty() || p_.secret_access_key.empty())
            throw_invalid("ses: the access key id and the secret access key are required");
        if (!is_region(p_.region))
            throw_invalid("ses: region '" + p_.region + "' is not an AWS region name");
        for (const auto& [name, value] : p_.tags)
            if (!is_tag_text(name) || !is_tag_text(value))
                throw_invalid("ses: tag '" + name +
                              "' must use only A-Z a-z 0-9 _ - in its name and value");
        if (!p_.configuration_set.empty() && !is_tag_text(p_.configuration_set))
            throw_invalid("ses: the configuration set name must use only A-Z a-z 0-9 _ -");
        ep_ = resolve_endpoint("ses", p_.endpoint, "email." + p_.region + ".amazonaws.com");
        path_ = ep_.base_path + std::string(target);
    }

    std::string_view name() const noexcept override { return "ses"; }
    std::size_t max_recipients() const noexcept override { return recipient_limit; }
    const http::endpoint& api() const noexcept override { return ep_; }

    error_code build(const outbound& out, const build_context& ctx, prepared& prep,
                     diagnostics& diag) override {
        std::vector<std::string> rcpts;
        if (auto ec = envelope_recipients(out, "ses", rcpts, diag)) return ec;
        std::string mime;
        if (auto ec = render_mime(out, p_.render, "ses", mime, diag)) return ec;
        prep.message_id = rendered_message_id(mime);
        std::string from = out.env.mail_from;
        if (from.empty()) {
            auto f = ascii_addr_spec(out.msg.from);
            if (!f) {
                diag.message = "ses: the From address cannot be sent";
                return f.error();
            }
            from = std::move(*f);
        }

        auto& req = prep.req;
        req.target.assign(target);
        auto& body = req.body;
        body.clear();
        body.reserve(mime::base64_size(mime.size()) + 512);
        json::writer w{body};
        w.begin_object().member("FromEmailAddress", from);
        w.key("Destination").begin_object().key("ToAddresses").begin_array();
        for (const auto& r : rcpts) w.value(r);
        w.end_array().end_object();
        w.key("Content").begin_object().key("Raw").begin_object().key("Data").base64_value(mime);
        w.end_object().end_object();
        if (!p_.configuration_set.empty()) w.member("ConfigurationSetName", p_.configuration_set);
        const bool tag_send = is_tag_text(out.send_id);
        if (!p_.tags.empty() || tag_send) {
            w.key("EmailTags").begin_array();
            for (const auto& [n, v] : p_.tags)
                w.begin_object().member("Name", n).member("Value", v).end_object();
            if (tag_send)
                w.begin_object()
                    .member("Name", "mailers_send_id")
                    .member("Value", out.send_id)
                    .end_object();
            w.end_array();
        }
        w.end_object();

        return sign("POST", path_, ctx, prep, diag);
    }

    // GetAccount (GET /v2/email/account) reads the account's sending status
    // with the same signing credentials.
    error_code build_check(const build_context& ctx, prepared& prep, diagnostics& diag) override {
        prep.req.target.assign(account_target);
        prep.req.body.clear();
        return sign("GET", ep_.base_path + std::string(account_target), ctx, prep, diag);
    }

    // What AWS's SDKs do with a request refused for its time: take the
    // server's clock from the reply's Date and sign again with it.
    bool retry_refused(const prepared& p, const http::response& r,
                       std::chrono::system_clock::time_point now) override {
        if (r.status / 100 != 4) return false;
        const auto f = extract_http_error("ses", r, now);
        if (!is_aws_request_time_refusal(f.code, f.message)) return false;
        const auto server = parse_http_date(r.header("Date"));
        if (!server) return false;
        // A request signed within a minute of the server's time was refused
        // for something a new signing time would not change.
        const auto skew = *server - p.request_time;
        if (skew < std::chrono::minutes(1) && skew > -std::chrono::minutes(1)) return false;
        clock_offset_ms_.store(
            std::chrono::duration_cast<std::chrono::milliseconds>(*server - now).count());
        return true;
    }

    void accepted(const outbound&, const prepared&, const http::response& r,
                  send_outcome& outcome) override {
        outcome.provider_message_id = read_json_member(r.body, "MessageId");
        outcome.diag.request_id.assign(r.header("x-amzn-RequestId"));
    }

private:
    // Signs prep.req (target and body set) with SigV4 and sets its method
    // and headers.
    error_code sign(std::string_view method, const std::string& path, const build_context& ctx,
                    prepared& prep, diagnostics& diag) {
        auto& req = prep.req;
        const auto& body = req.body;
        prep.request_time = ctx.now + std::chrono::milliseconds(clock_offset_ms_.load());
        const auto amz_date = sigv4::format_amz_date(prep.request_time);
        const auto payload_hash = sigv4::sha256_hex(body);
        std::vector<sigv4::header> signed_headers{{"host", ep_.host_header},
                                                  {"content-type", "application/json"},
                                                  {"x-amz-date", amz_date}};
        if (!p_.session_token.empty())
            signed_headers.push_back({"x-amz-security-token", p_.session_token.reveal()});
        sigv4::request sreq;
        sreq.method = method;
        sreq.path = path;
        sreq.headers = signed_headers;
        sreq.payload_hash = payload_hash;
        sigv4::params sp;
        sp.access_key_id = p_.access_key_id;
        sp.secret_access_key = p_.secret_access_key.reveal();
        sp.session_token = p_.session_token.reveal();
        sp.region = p_.region;
        sp.service = "ses";
        sp.amz_date = amz_date;
        const auto key = signing_key(std::string_view(amz_date).substr(0, 8));
        diagnostics sign_diag;
        auto s = sigv4::sign(sreq, sp, &key, &sign_diag);
        if (!s) {
            diag.message = "ses: cannot sign the request: " + sign_diag.message;
            return make_error_code(transport_errc::configuration);
        }
        req.method = method;
        req.headers.clear();
        req.headers.push_back({"Content-Type", "application/json"});
        req.headers.push_back({"X-Amz-Date", amz_date});
        if (!p_.session_token.empty())
            req.headers.push_back({"X-Amz-Security-Token", p_.session_token.reveal()});
        req.headers.push_back({"Authorization", std::move(s->authorization)});
        return {};
    }

    // The signing key depends only on the secret, the day, the region and
    // the service: four HMACs saved on every other request of the day.
    sigv4::signing_key_bytes signing_key(std::string_view day) {
        std::lock_guard lock(key_mu_);
        if (key_day_ != day) {
            key_ = sigv4::derive_signing_key(p_.secret_access_key.reveal(), day, p_.region, "ses");
            key_day_.assign(day);
        }
        return key_;
    }

    static constexpr std::string_view target = "/v2/email/outbound-emails";
    static constexpr std::string_view account_target = "/v2/email/account";

    ses_params p_;
    http::endpoint ep_;
    std::string path_;
    /// The server's clock minus ours, learnt from a refused request's Date.
    std::atomic<std::int64_t> clock_offset_ms_{0};
    std::mutex key_mu_;
    std::string key_day_;
    sigv4::signing_key_bytes key_{};
};

}  // namespace

std::unique_ptr<http_provider> make_ses(const ses_params& p) {
    return std::make_unique<ses_provider>(p);
}

}  // namespace mailers::detail
