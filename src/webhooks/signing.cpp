// Signature checks for inbound webhooks and Standard Webhooks signing.
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <mailers/error.hpp>
#include <mailers/webhook_signing.hpp>
#include <mutex>

#include "webhooks/crypto.hpp"
#include "webhooks/sns.hpp"

namespace mailers {

// Hidden: a nested class takes its exported parent's visibility otherwise.
struct __attribute__((visibility("hidden"))) sns_certificate::impl {
    X509* cert = nullptr;
    EVP_PKEY* key = nullptr;  // owned by cert's reference, taken with X509_get0_pubkey
    time_point not_before{};
    time_point not_after{};
    ~impl() { X509_free(cert); }
};

namespace webhooks {
namespace {

struct pkey_free {
    void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
    void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
    void operator()(BIO* p) const { BIO_free(p); }
};

verify_result fail(int status, std::string reason) {
    return verify_result{status, std::move(reason)};
}

time_point from_asn1(const ASN1_TIME* t) {
    std::tm tm{};
    if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return {};
    return time_point{std::chrono::duration_cast<duration>(std::chrono::seconds{timegm(&tm)})};
}

bool is_lower_alnum_dash(char c) noexcept {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

char lower(char c) noexcept {
    return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

// Verifies `sig` over the concatenation of `parts` with `key`.
bool digest_verify(EVP_PKEY* key, const EVP_MD* md, std::string_view sig,
                   std::initializer_list<std::string_view> parts) {
    std::unique_ptr<EVP_MD_CTX, pkey_free> ctx{EVP_MD_CTX_new()};
    if (!ctx || EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) != 1) return false;
    for (auto p : parts)
        if (EVP_DigestVerifyUpdate(ctx.get(), p.data(), p.size()) != 1) return false;
    return EVP_DigestVerifyFinal(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()),
                                 sig.size()) == 1;
}

bool read_string(simdjson::dom::object o, std::string_view key, std::string& out) {
    std::string_view v;
    if (o[key].get(v) != simdjson::SUCCESS) return false;
    out.assign(v);
    return true;
}

bool parse_int64(std::string_view s, std::int64_t& out) {
    if (s.empty() || s.size() > 18) return false;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && p == s.data() + s.size() && out >= 0;
}

}  // namespace

std::optional<std::string> read_sns_message(std::string_view json, sns_message& m) {
    thread_local simdjson::dom::parser parser;
    simdjson::dom::object o;
    if (parser.parse(json.data(), json.size()).get(o) != simdjson::SUCCESS)
        return "the body is not a JSON object";
    if (!read_string(o, "Type", m.type)) return "the SNS message has no Type";
    read_string(o, "Message", m.message);
    read_string(o, "MessageId", m.message_id);
    std::string subject;
    if (read_string(o, "Subject", subject)) m.subject = std::move(subject);
    read_string(o, "Timestamp", m.timestamp);
    read_string(o, "TopicArn", m.topic_arn);
    read_string(o, "Token", m.token);
    // Lambda-style payloads spell the URL keys with "Url".
    if (!read_string(o, "SubscribeURL", m.subscribe_url))
        read_string(o, "SubscribeUrl", m.subscribe_url);
    read_string(o, "SignatureVersion", m.signature_version);
    read_string(o, "Signature", m.signature);
    if (!read_string(o, "SigningCertURL", m.signing_cert_url))
        read_string(o, "SigningCertUrl", m.signing_cert_url);
    return std::nullopt;
}

std::string string_to_sign(const sns_message& m) {
    std::string out;
    out.reserve(m.message.size() + 512);
    const auto add = [&](std::string_view name, std::string_view value) {
        out.append(name).append("\n").append(value).append("\n");
    };
    add("Message", m.message);
    add("MessageId", m.message_id);
    if (m.type == "Notification") {
        if (m.subject) add("Subject", *m.subject);
        add("Timestamp", m.timestamp);
        add("TopicArn", m.topic_arn);
    } else {
        add("SubscribeURL", m.subscribe_url);
        add("Timestamp", m.timestamp);
        add("Token", m.token);
        add("TopicArn", m.topic_arn);
    }
    add("Type", m.type);
    return out;
}

verify_result verify_sns(const sns_message& m, const sns_certificate& cert,
                         const sns_verify_params& params) {
    if (m.type != "Notification" && m.type != "SubscriptionConfirmation" &&
        m.type != "UnsubscribeConfirmation")
        return fail(400, "unknown SNS message Type");
    const EVP_MD* md = nullptr;
    if (m.signature_version == "1")
        md = EVP_sha1();
    else if (m.signature_version == "2")
        md = EVP_sha256();
    else
        return fail(403, "unsupported SNS SignatureVersion (1 and 2 are)");
    if (m.signature.empty()) return fail(401, "the SNS message is not signed");
    const auto sig = base64_decode(m.signature);
    if (!sig) return fail(403, "the SNS Signature is not base64");
    const auto& c = cert.get_impl();
    if (params.now && (*params.now < c.not_before || *params.now > c.not_after))
        return fail(403, "the SNS signing certificate is not valid now");
    const auto text = string_to_sign(m);
    if (!digest_verify(c.key, md, *sig, {text}))
        return fail(403, "the SNS signature does not match");
    return {};
}

}  // namespace webhooks

bool constant_time_equal(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    return a.empty() || CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool is_sns_certificate_url(std::string_view url) noexcept {
    // The scheme exactly as SNS writes it: callers may compare URLs as text.
    constexpr std::string_view scheme = "https://";
    if (url.substr(0, scheme.size()) != scheme) return false;
    url.remove_prefix(scheme.size());
    const auto slash = url.find('/');
    if (slash == std::string_view::npos) return false;
    const auto host = url.substr(0, slash);
    const auto path = url.substr(slash);
    // A query or fragment could make ".pem" something other than the file.
    if (path.find_first_of("?#\\") != std::string_view::npos) return false;
    if (path.size() < 5 || path.substr(path.size() - 4) != ".pem") return false;
    for (char c : path)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return false;
    std::string h;
    for (char c : host) h.push_back(webhooks::lower(c));
    constexpr std::string_view prefix = "sns.";
    if (h.substr(0, prefix.size()) != prefix) return false;
    std::string_view rest{h};
    rest.remove_prefix(prefix.size());
    std::string_view region;
    for (std::string_view suffix : {".amazonaws.com", ".amazonaws.com.cn"}) {
        if (rest.size() > suffix.size() && rest.substr(rest.size() - suffix.size()) == suffix) {
            region = rest.substr(0, rest.size() - suffix.size());
            break;
        }
    }
    if (region.size() < 3) return false;
    return std::all_of(region.begin(), region.end(), webhooks::is_lower_alnum_dash);
}

// --- sns_certificate ----------------------------------------------------------------

sns_certificate::sns_certificate(std::unique_ptr<impl> p) noexcept : impl_(std::move(p)) {}
sns_certificate::sns_certificate(sns_certificate&&) noexcept = default;
sns_certificate& sns_certificate::operator=(sns_certificate&&) noexcept = default;
sns_certificate::~sns_certificate() = default;

boost::system::result<sns_certificate> sns_certificate::from_pem(std::string_view pem) {
    if (pem.size() > 64 * 1024) return make_error_code(errc::invalid_argument);
    std::unique_ptr<BIO, webhooks::pkey_free> bio{
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()))};
    if (!bio) return make_error_code(errc::invalid_argument);
    auto p = std::make_unique<impl>();
    p->cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (p->cert == nullptr) return make_error_code(errc::invalid_argument);
    p->key = X509_get0_pubkey(p->cert);
    if (p->key == nullptr || EVP_PKEY_get_base_id(p->key) != EVP_PKEY_RSA)
        return make_error_code(errc::invalid_argument);
    p->not_before = webhooks::from_asn1(X509_get0_notBefore(p->cert));
    p->not_after = webhooks::from_asn1(X509_get0_notAfter(p->cert));
    return sns_certificate{std::move(p)};
}

time_point sns_certificate::not_before() const noexcept {
    return impl_->not_before;
}
time_point sns_certificate::not_after() const noexcept {
    return impl_->not_after;
}

std::string sns_certificate::subject() const {
    char buf[512];
    X509_NAME_oneline(X509_get_subject_name(impl_->cert), buf, sizeof buf);
    return buf;
}

boost::system::result<void> memory_sns_certificate_store::add(std::string_view url,
                                                              std::string_view pem) {
    if (!is_sns_certificate_url(url)) return make_error_code(errc::invalid_argument);
    auto cert = sns_certificate::from_pem(pem);
    if (!cert) return cert.error();
    auto shared = std::make_shared<const sns_certificate>(std::move(*cert));
    std::unique_lock lock{mutex_};
    certs_[std::string(url)] = std::move(shared);
    return {};
}

std::size_t memory_sns_certificate_store::size() const {
    std::shared_lock lock{mutex_};
    return certs_.size();
}

std::shared_ptr<const sns_certificate> memory_sns_certificate_store::do_find(
    std::string_view url) const {
    std::shared_lock lock{mutex_};
    const auto it = certs_.find(std::string(url));
    return it == certs_.end() ? nullptr : it->second;
}

boost::system::result<std::string> sns_string_to_sign(std::string_view json) {
    webhooks::sns_message m;
    if (webhooks::read_sns_message(json, m)) return make_error_code(errc::invalid_argument);
    if (m.type != "Notification" && m.type != "SubscriptionConfirmation" &&
        m.type != "UnsubscribeConfirmation")
        return make_error_code(errc::invalid_argument);
    return webhooks::string_to_sign(m);
}

verify_result verify_sns_signature(std::string_view json, const sns_certificate& cert,
                                   const sns_verify_params& params) {
    webhooks::sns_message m;
    if (auto why = webhooks::read_sns_message(json, m)) return webhooks::fail(400, *why);
    return webhooks::verify_sns(m, cert, params);
}

// --- Mailgun ------------------------------------------------------------------------

verify_result verify_mailgun_signature(std::string_view signing_key, std::string_view timestamp,
                                       std::string_view token, std::string_view signature) {
    if (signing_key.empty()) return webhooks::fail(500, "no Mailgun signing key is configured");
    if (timestamp.empty() || token.empty() || signature.empty())
        return webhooks::fail(401, "the Mailgun signature, timestamp or token is missing");
    std::string msg;
    msg.reserve(timestamp.size() + token.size());
    msg.append(timestamp).append(token);
    const auto expected =
        webhooks::to_hex(webhooks::as_view(webhooks::hmac_sha256(signing_key, msg)));
    if (!constant_time_equal(expected, signature))
        return webhooks::fail(403, "the Mailgun signature does not match");
    return {};
}

// --- SendGrid -----------------------------------------------------------------------

verify_result verify_sendgrid_signature(std::string_view public_key, std::string_view timestamp,
                                        std::string_view body, std::string_view signature) {
    if (public_key.empty()) return webhooks::fail(500, "no SendGrid public key is configured");
    if (timestamp.empty() || signature.empty())
        return webhooks::fail(401, "the SendGrid signature or timestamp header is missing");
    // Decoding the key costs more than checking a signature with it
    // (OpenSSL 3 looks up a decoder each time), and a route has one key:
    // each thread keeps the last one it decoded.
    thread_local std::string decoded_text;
    thread_local std::unique_ptr<EVP_PKEY, webhooks::pkey_free> decoded;
    if (!decoded || decoded_text != public_key) {
        decoded.reset();
        const auto der = webhooks::base64_decode(public_key);
        if (!der) return webhooks::fail(500, "the SendGrid public key is not base64");
        const auto* p = reinterpret_cast<const unsigned char*>(der->data());
        std::unique_ptr<EVP_PKEY, webhooks::pkey_free> key{
            d2i_PUBKEY(nullptr, &p, static_cast<long>(der->size()))};
        if (!key || EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC)
            return webhooks::fail(500, "the SendGrid public key is not an EC public key");
        decoded = std::move(key);
        decoded_text = std::string(public_key);
    }
    const auto sig = webhooks::base64_decode(signature);
    if (!sig) return webhooks::fail(403, "the SendGrid signature is not base64");
    if (!webhooks::digest_verify(decoded.get(), EVP_sha256(), *sig, {timestamp, body}))
        return webhooks::fail(403, "the SendGrid signature does not match");
    return {};
}

// --- Standard Webhooks ----------------------------------------------------------------

namespace standard_webhooks {
namespace {

std::optional<std::string> decode_secret(std::string_view secret) {
    constexpr std::string_view prefix = "whsec_";
    if (secret.substr(0, prefix.size()) == prefix) secret.remove_prefix(prefix.size());
    auto key = webhooks::base64_decode(secret);
    if (!key || key->empty()) return std::nullopt;
    return key;
}

std::string signature_of(std::string_view key, std::string_view msg_id, std::string_view timestamp,
                         std::string_view body) {
    std::string content;
    content.reserve(msg_id.size() + timestamp.size() + body.size() + 2);
    content.append(msg_id).append(".").append(timestamp).append(".").append(body);
    return webhooks::base64_encode(webhooks::as_view(webhooks::hmac_sha256(key, content)));
}

}  // namespace

boost::system::result<std::string> sign(std::string_view secret, std::string_view msg_id,
                                        std::int64_t timestamp, std::string_view body) {
    const auto key = decode_secret(secret);
    if (!key || msg_id.empty() || msg_id.find('.') != std::string_view::npos || timestamp < 0)
        return make_error_code(errc::invalid_argument);
    return "v1," + signature_of(*key, msg_id, std::to_string(timestamp), body);
}

verify_result verify(std::string_view secret, std::string_view msg_id, std::string_view timestamp,
                     std::string_view body, std::string_view signatures,
                     const verify_params& params) {
    const auto key = decode_secret(secret);
    if (!key) return webhooks::fail(500, "the webhook secret is not whsec_ base64");
    if (msg_id.empty() || timestamp.empty() || signatures.empty())
        return webhooks::fail(401, "webhook-id, webhook-timestamp or webhook-signature is missing");
    std::int64_t ts = 0;
    if (!webhooks::parse_int64(timestamp, ts) || msg_id.find('.') != std::string_view::npos)
        return webhooks::fail(400, "webhook-timestamp is not an integer, or webhook-id holds '.'");
    if (params.now) {
        const auto now =
            std::chrono::duration_cast<std::chrono::seconds>(params.now->time_since_epoch())
                .count();
        if (ts < now - params.tolerance.count() || ts > now + params.tolerance.count())
            return webhooks::fail(403, "webhook-timestamp is outside the tolerance");
    }
    const auto expected = signature_of(*key, msg_id, timestamp, body);
    bool matched = false;
    while (!signatures.empty()) {
        const auto space = signatures.find(' ');
        const auto entry = signatures.substr(0, space);
        signatures.remove_prefix(space == std::string_view::npos ? signatures.size() : space + 1);
        const auto comma = entry.find(',');
        if (comma == std::string_view::npos || entry.substr(0, comma) != "v1") continue;
        // Every entry is compared, so timing does not reveal which matched.
        matched |= constant_time_equal(entry.substr(comma + 1), expected);
    }
    if (!matched) return webhooks::fail(403, "no v1 webhook-signature matches");
    return {};
}

}  // namespace standard_webhooks

}  // namespace mailers
