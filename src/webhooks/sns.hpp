// The fields of an SNS HTTP(S) message, as read from its JSON envelope.
#pragma once

#include <mailers/webhook_signing.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mailers::webhooks {

struct sns_message {
    std::string type;  ///< Notification, SubscriptionConfirmation, UnsubscribeConfirmation
    std::string message;
    std::string message_id;
    std::optional<std::string> subject;  ///< signed only when present
    std::string timestamp;
    std::string topic_arn;
    std::string token;
    std::string subscribe_url;
    std::string signature_version;
    std::string signature;  ///< base64
    std::string signing_cert_url;
};

/// Reads the envelope; a reason when `json` is not an SNS message.
std::optional<std::string> read_sns_message(std::string_view json, sns_message& out);

std::string string_to_sign(const sns_message& m);

/// True when `url` is an https URL on an SNS host (the host rule of
/// SigningCertURL, for any path) with nothing that cannot go in a request
/// line: where a SubscribeURL may point.
bool is_sns_host_url(std::string_view url);

verify_result verify_sns(const sns_message& m, const sns_certificate& cert,
                         const sns_verify_params& params);

}  // namespace mailers::webhooks
