// Webhook signatures, as pure functions: keys and secrets are passed in,
// nothing is fetched, stored or logged.
//
// Inbound: Amazon SNS message signatures (SES events arrive through SNS),
// Mailgun's HMAC token signature, SendGrid's signed event webhook (ECDSA) and
// Postmark's shared secrets. Outbound: Standard Webhooks
// (https://www.standardwebhooks.com), the scheme the webhooks mailers sends
// to its host are signed with.
//
// Every comparison of a secret or a signature takes time independent of
// where the inputs differ. A failed check says why in `reason`, which never
// holds a secret, and carries the HTTP status a webhook endpoint should
// answer with.
#pragma once

#include <boost/system/result.hpp>
#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace mailers {

/// The outcome of a signature check.
struct verify_result {
    /// 200 when verified; 400 (malformed), 401 (credentials missing) or 403
    /// (wrong signature, stale timestamp, replay, untrusted key) otherwise;
    /// 500 when the check cannot run for want of configuration.
    int http_status = 200;
    std::string reason;  ///< empty when verified

    bool ok() const noexcept { return http_status == 200; }
    explicit operator bool() const noexcept { return ok(); }
};

/// True when `a` and `b` are equal, in a time that depends on their lengths
/// only.
MAILERS_API bool constant_time_equal(std::string_view a, std::string_view b) noexcept;

// --- Amazon SNS ---------------------------------------------------------------

/// True when `url` may be an SNS signing certificate: "https://" in lower
/// case (as SNS writes it), no user info, port, query or fragment, a path
/// ending in ".pem", and a host `sns.<region>.amazonaws.com` or
/// `sns.<region>.amazonaws.com.cn` (GovCloud regions are regions), region
/// being three or more letters, digits or '-'. AWS's own validators use this
/// host rule; it stops an attacker pointing at a certificate of their own on
/// an amazonaws.com host such as an S3 bucket.
MAILERS_API bool is_sns_certificate_url(std::string_view url) noexcept;

/// An X.509 certificate that signs SNS messages, parsed once so that
/// verifying a message costs one RSA operation. Immutable; thread-safe.
class MAILERS_API sns_certificate {
public:
    /// Parses one PEM certificate holding an RSA key, or
    /// errc::invalid_argument.
    static boost::system::result<sns_certificate> from_pem(std::string_view pem);

    sns_certificate(sns_certificate&&) noexcept;
    sns_certificate& operator=(sns_certificate&&) noexcept;
    ~sns_certificate();

    time_point not_before() const noexcept;
    time_point not_after() const noexcept;
    std::string subject() const;  ///< one-line distinguished name, for logs

    /// The parsed certificate and key, for the library's own use; its
    /// definition is not public.
    struct impl;
    const impl& get_impl() const noexcept { return *impl_; }

private:
    explicit sns_certificate(std::unique_ptr<impl> p) noexcept;
    std::unique_ptr<impl> impl_;
};

/// Where parse_webhook() finds the certificate a SigningCertURL names.
/// Fetching certificates over TLS is the caller's part: on a miss,
/// parse_webhook() reports the URL (webhook_outcome::certificate_needed)
/// and the caller fetches it, adds it, and calls again.
/// sns_certificate_fetcher (<mailers/sns_certificate_fetcher.hpp>) is a
/// store that does the fetching; webhook_server uses it. Implementations
/// must be thread-safe.
class MAILERS_API sns_certificate_store {
public:
    virtual ~sns_certificate_store() = default;
    /// The certificate held for `url`, or null.
    std::shared_ptr<const sns_certificate> find(std::string_view url) const { return do_find(url); }

protected:
    virtual std::shared_ptr<const sns_certificate> do_find(std::string_view url) const = 0;
};

/// An sns_certificate_store in memory. Thread-safe.
class MAILERS_API memory_sns_certificate_store final : public sns_certificate_store {
public:
    /// Parses `pem` and holds it for `url`, replacing what was there.
    /// errc::invalid_argument when `url` fails is_sns_certificate_url() or
    /// `pem` is not a certificate.
    boost::system::result<void> add(std::string_view url, std::string_view pem);
    std::size_t size() const;

protected:
    std::shared_ptr<const sns_certificate> do_find(std::string_view url) const override;

private:
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<const sns_certificate>> certs_;
};

/// The bytes SNS signs for the message `json` (a Notification,
/// SubscriptionConfirmation or UnsubscribeConfirmation): each signed field
/// present, as "Name\nValue\n", names in byte order. errc::invalid_argument
/// when `json` is not such a message.
MAILERS_API boost::system::result<std::string> sns_string_to_sign(std::string_view json);

struct sns_verify_params {
    /// When set, the certificate must be valid at this time. Unset skips
    /// the date check (certificates in test vectors have expired).
    std::optional<time_point> now;
};

/// Checks the SNS message `json` against `cert`: SignatureVersion "1" is
/// RSA PKCS #1 v1.5 with SHA-1, "2" with SHA-256; any other is refused.
/// Checking that SigningCertURL is an SNS URL and that `cert` is the one it
/// names is the caller's part (parse_webhook() does both).
MAILERS_API verify_result verify_sns_signature(std::string_view json, const sns_certificate& cert,
                                               const sns_verify_params& params = {});

// --- Mailgun --------------------------------------------------------------------

/// Checks hex(HMAC-SHA256(signing_key, timestamp + token)) == signature.
/// `signing_key` is the HTTP webhook signing key, not the API key. Freshness
/// and replay are parse_webhook()'s part (webhook_params::mailgun).
MAILERS_API verify_result verify_mailgun_signature(std::string_view signing_key,
                                                   std::string_view timestamp,
                                                   std::string_view token,
                                                   std::string_view signature);

// --- SendGrid -------------------------------------------------------------------

/// Checks SendGrid's signed event webhook: an ECDSA P-256 signature with
/// SHA-256 over `timestamp` (the X-Twilio-Email-Event-Webhook-Timestamp
/// header, as sent) followed by the raw body, exactly as received (its
/// trailing CRLF included). `public_key` is the base64 DER key SendGrid
/// shows; `signature` the base64 DER X-Twilio-Email-Event-Webhook-Signature.
MAILERS_API verify_result verify_sendgrid_signature(std::string_view public_key,
                                                    std::string_view timestamp,
                                                    std::string_view body,
                                                    std::string_view signature);

// --- Standard Webhooks ------------------------------------------------------------

namespace standard_webhooks {

/// Default tolerance between a message's timestamp and the receiver's clock,
/// either way, as in the reference libraries.
inline constexpr std::chrono::seconds default_tolerance{300};

/// The signature header entry "v1,<base64 HMAC-SHA256>" over
/// `msg_id + "." + timestamp + "." + body`. `secret` is "whsec_" followed by
/// the base64 key (padding optional), or the bare base64. errc::invalid_argument
/// when the secret does not decode or `msg_id` holds a '.'.
MAILERS_API boost::system::result<std::string> sign(std::string_view secret,
                                                    std::string_view msg_id, std::int64_t timestamp,
                                                    std::string_view body);

struct verify_params {
    /// The receiver's clock; unset skips the tolerance check (test vectors).
    std::optional<time_point> now;
    std::chrono::seconds tolerance = default_tolerance;
};

/// Checks the `webhook-signature` header value `signatures` (space-separated
/// entries; verified when any "v1," entry matches, other versions ignored)
/// for the `webhook-id` and `webhook-timestamp` header values and the body.
MAILERS_API verify_result verify(std::string_view secret, std::string_view msg_id,
                                 std::string_view timestamp, std::string_view body,
                                 std::string_view signatures, const verify_params& params = {});

}  // namespace standard_webhooks

}  // namespace mailers
