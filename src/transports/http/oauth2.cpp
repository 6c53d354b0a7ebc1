#include "transports/http/oauth2.hpp"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <optional>

#include "json/writer.hpp"
#include "transports/http/common.hpp"
#include "transports/http/error_mapping.hpp"

namespace mailers::detail {
namespace {

using steady = std::chrono::steady_clock;
using sys_clock = std::chrono::system_clock;

struct pkey_deleter {
    void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
    void operator()(BIO* b) const { BIO_free(b); }
};
using pkey_ptr = std::unique_ptr<EVP_PKEY, pkey_deleter>;

[[noreturn]] void bad_key(const std::string& why) {
    throw exception(make_error_code(errc::invalid_argument), "oauth2: " + why);
}

pkey_ptr load_rsa_key(const secret& pem) {
    std::unique_ptr<BIO, pkey_deleter> bio{
        BIO_new_mem_buf(pem.reveal().data(), static_cast<int>(pem.reveal().size()))};
    if (!bio) bad_key("cannot read the private key");
    pkey_ptr key{PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr)};
    if (!key) bad_key("the private key is not a PEM private key");
    if (!EVP_PKEY_is_a(key.get(), "RSA"))
        bad_key("the private key is not an RSA key (RS256 needs one)");
    return key;
}

std::string sign_with(EVP_PKEY* key, std::string_view claims_json) {
    std::string jwt;
    append_base64url(jwt, R"({"alg":"RS256","typ":"JWT"})");
    jwt += '.';
    append_base64url(jwt, claims_json);
    std::unique_ptr<EVP_MD_CTX, pkey_deleter> ctx{EVP_MD_CTX_new()};
    std::size_t len = 0;
    if (!ctx ||
        EVP_DigestSignInit_ex(ctx.get(), nullptr, "SHA256", nullptr, nullptr, key, nullptr) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(jwt.data()),
                       jwt.size()) != 1)
        throw exception(make_error_code(transport_errc::configuration),
                        "oauth2: RS256 signing failed");
    std::string sig(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                       reinterpret_cast<const unsigned char*>(jwt.data()), jwt.size()) != 1)
        throw exception(make_error_code(transport_errc::configuration),
                        "oauth2: RS256 signing failed");
    sig.resize(len);
    jwt += '.';
    append_base64url(jwt, sig);
    return jwt;
}

class jwt_bearer_source final : public token_source {
public:
    jwt_bearer_source(http::client& c, const std::string& url, std::string email, const secret& pem,
                      std::string scope, std::chrono::seconds refresh_before)
        : token_source(c, url, refresh_before),
          email_(std::move(email)),
          scope_(std::move(scope)),
          key_(load_rsa_key(pem)) {}

protected:
    error_code token_form(const std::string& subject, sys_clock::time_point now, std::string& form,
                          diagnostics& diag) override {
        const auto iat =
            std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
        std::string claims;
        json::writer w{claims};
        // Google wants the token URL itself as the audience; an endpoint
        // override (tests, a proxy) moves both.
        w.begin_object().member("iss", email_).member("scope", scope_).member("aud", token_url());
        w.member("iat", iat).member("exp", iat + 3600);
        if (!subject.empty()) w.member("sub", subject);
        w.end_object();
        try {
            const auto jwt = sign_with(key_.get(), claims);
            form.clear();
            append_form_field(form, "grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer");
            append_form_field(form, "assertion", jwt);
        } catch (const exception& e) {
            diag.message = e.what();
            return e.code();
        }
        return {};
    }

private:
    std::string email_;
    std::string scope_;
    pkey_ptr key_;
};

// The grants in which the application signs in with its client id and
// secret: for a user, with the refresh token that user granted
// (refresh_token), or for itself (client_credentials).
class client_secret_source final : public token_source {
public:
    client_secret_source(http::client& c, const std::string& url, std::string client_id,
                         secret client_secret, std::optional<secret> refresh_token,
                         std::string scope, std::chrono::seconds refresh_before)
        : token_source(c, url, refresh_before),
          client_id_(std::move(client_id)),
          client_secret_(std::move(client_secret)),
          refresh_token_(std::move(refresh_token)),
          scope_(std::move(scope)) {}

protected:
    error_code token_form(const std::string&, sys_clock::time_point, std::string& form,
                          diagnostics&) override {
        form.clear();
        append_form_field(form, "grant_type",
                          refresh_token_ ? "refresh_token" : "client_credentials");
        append_form_field(form, "client_id", client_id_);
        append_form_field(form, "client_secret", client_secret_.reveal());
        if (refresh_token_) append_form_field(form, "refresh_token", refresh_token_->reveal());
        // A refresh token keeps the scopes granted with it, so an empty one
        // is left out; the client-credentials grant always names its scope
        // (the Microsoft identity platform requires it).
        if (!refresh_token_ || !scope_.empty()) append_form_field(form, "scope", scope_);
        return {};
    }

private:
    std::string client_id_;
    secret client_secret_;
    std::optional<secret> refresh_token_;  ///< nullopt: the client-credentials grant
    std::string scope_;
};

}  // namespace

token_source::token_source(http::client& client, const std::string& token_url,
                           std::chrono::seconds refresh_before)
    : client_(client), url_(token_url), refresh_before_(refresh_before) {
    diagnostics d;
    auto parsed = http::parse_url(token_url, &d);
    if (!parsed)
        throw exception(make_error_code(errc::invalid_argument), "oauth2: token " + d.message);
    ep_ = std::move(parsed->first);
    target_ = std::move(parsed->second);
}

token_source::~token_source() = default;

std::uint64_t token_source::requests() const {
    std::lock_guard lock(mu_);
    return requests_;
}

void token_source::async_token(const std::string& subject, token_handler h) {
    std::string token;
    {
        std::lock_guard lock(mu_);
        auto& e = cache_[subject];
        const auto now = steady::now();
        if (!e.token.empty() && now < e.refresh_at) {
            token = e.token;
        } else {
            e.waiters.push_back(std::move(h));
            if (e.fetching) return;
            e.fetching = true;
        }
    }
    if (!token.empty()) {
        std::move(h)(error_code{}, std::move(token), diagnostics{});
        return;
    }
    fetch(subject);
}

void token_source::invalidate(const std::string& subject, std::string_view token) {
    std::lock_guard lock(mu_);
    auto it = cache_.find(subject);
    if (it != cache_.end() && it->second.token == token) {
        it->second.token.clear();
        it->second.refresh_at = {};
        it->second.expires_at = {};
    }
}

void token_source::fetch(const std::string& subject) {
    http::request req;
    diagnostics diag;
    if (auto ec = token_form(subject, sys_clock::now(), req.body, diag)) {
        http::exchange_result r;
        r.ec = ec;
        r.what = diag.message;
        finish(subject, std::move(r));
        return;
    }
    req.method = "POST";
    req.target = target_;
    req.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    req.headers.push_back({"Accept", "application/json"});
    {
        std::lock_guard lock(mu_);
        ++requests_;
    }
    client_.async_exchange(ep_, std::move(req),
                           [self = shared_from_this(), subject](http::exchange_result r) {
                               self->finish(subject, std::move(r));
                           });
}

void token_source::finish(const std::string& subject, http::exchange_result r) {
    error_code ec;
    diagnostics diag;
    token_reply reply;
    if (r.ec) {
        // The token request carries no mail: losing it is a connection
        // failure whatever the phase, and safe to retry elsewhere.
        ec = r.ec == make_error_code(transport_errc::outcome_unknown)
                 ? make_error_code(transport_errc::connection_failed)
                 : r.ec;
        diag.message = "oauth2 token request to " + ep_.host_header + ": " + r.what;
    } else if ((ec = read_token_reply(r.resp, sys_clock::now(), reply, diag))) {
        diag.message = "oauth2 token endpoint " + ep_.host_header + ": " + diag.message;
    }
    std::string token = std::move(reply.access_token);

    std::vector<token_handler> waiters;
    {
        std::lock_guard lock(mu_);
        auto& e = cache_[subject];
        e.fetching = false;
        waiters.swap(e.waiters);
        const auto now = steady::now();
        if (!ec) {
            const auto life = reply.lifetime;
            // Refresh well before expiry, but never sooner than half-way
            // through a short-lived token.
            const auto margin = std::min<std::chrono::seconds>(refresh_before_, life / 2);
            e.token = token;
            e.expires_at = now + life;
            e.refresh_at = now + life - margin;
        } else if (!e.token.empty() && now < e.expires_at) {
            // The refresh failed but the old token is still valid: use it.
            token = e.token;
            ec = {};
        }
    }
    for (auto& w : waiters) std::move(w)(ec, ec ? std::string{} : token, diag);
}

std::shared_ptr<token_source> make_jwt_bearer_source(
    http::client& client, const std::string& token_url, std::string client_email,
    const secret& private_key_pem, std::string scope, std::chrono::seconds refresh_before) {
    return std::make_shared<jwt_bearer_source>(client, token_url, std::move(client_email),
                                               private_key_pem, std::move(scope), refresh_before);
}

std::shared_ptr<token_source> make_refresh_token_source(http::client& client,
                                                        const std::string& token_url,
                                                        std::string client_id, secret client_secret,
                                                        secret refresh_token, std::string scope,
                                                        std::chrono::seconds refresh_before) {
    return std::make_shared<client_secret_source>(
        client, token_url, std::move(client_id), std::move(client_secret), std::move(refresh_token),
        std::move(scope), refresh_before);
}

std::shared_ptr<token_source> make_client_credentials_source(
    http::client& client, const std::string& token_url, std::string client_id, secret client_secret,
    std::string scope, std::chrono::seconds refresh_before) {
    return std::make_shared<client_secret_source>(client, token_url, std::move(client_id),
                                                  std::move(client_secret), std::nullopt,
                                                  std::move(scope), refresh_before);
}

std::string sign_jwt_rs256(std::string_view claims_json, const secret& private_key_pem) {
    auto key = load_rsa_key(private_key_pem);
    return sign_with(key.get(), claims_json);
}

}  // namespace mailers::detail
