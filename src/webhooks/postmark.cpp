// Postmark webhooks: one JSON record per request, authenticated by basic
// credentials or a custom header (Postmark does not sign).
#include <string>

#include "webhooks/common.hpp"
#include "webhooks/crypto.hpp"

namespace mailers::webhooks {
namespace {

using simdjson::dom::object;

// Postmark's bounce types (developer/api/bounce-api#bounce-types). Hard:
// the address does not work. Soft: this message, or this time, failed.
// Transient and DNS errors are retried by Postmark, so they are deferrals.
event_type bounce_type(std::string_view t, bounce_class& cls) {
    cls = bounce_class::none;
    const auto bounced = [&](bounce_class c) {
        cls = c;
        return event_type::bounced;
    };
    if (t == "HardBounce" || t == "BadEmailAddress") return bounced(bounce_class::hard);
    if (t == "SoftBounce" || t == "Blocked" || t == "VirusNotification" || t == "DMARCPolicy" ||
        t == "Unknown")
        return bounced(bounce_class::soft);
    if (t == "Transient" || t == "DnsError") return event_type::deferred;
    if (t == "SpamNotification" || t == "SpamComplaint") return event_type::complained;
    if (t == "Unsubscribe") return event_type::unsubscribed;
    if (t == "ManuallyDeactivated" || t == "Unconfirmed") return event_type::rejected;
    if (t == "SMTPApiError" || t == "TemplateRenderingFailed") return event_type::failed;
    // Subscribe, AutoResponder, AddressChange, ChallengeVerification,
    // OpenRelayTest, InboundError and types yet to come.
    return event_type::unknown;
}

bool authenticate(const webhook_request& req, outcome_builder& b) {
    const auto& pp = b.params.postmark;
    if (pp.basic_user.empty() && pp.header_name.empty()) {
        b.reject(500, "no Postmark credentials are configured");
        return false;
    }
    if (!pp.basic_user.empty()) {
        const auto auth = find_header(req.headers, "authorization");
        constexpr std::string_view scheme = "Basic ";
        if (!auth || auth->size() <= scheme.size() ||
            media_type(auth->substr(0, scheme.size())) != "basic") {
            b.reject(401, "Postmark basic credentials are missing");
            return false;
        }
        const auto given = base64_decode(auth->substr(scheme.size()));
        const std::string expected = pp.basic_user + ":" + pp.basic_password;
        // Compare the whole "user:password" so a wrong user costs as much as
        // a wrong password.
        if (!given || !constant_time_equal(*given, expected)) {
            b.reject(403, "Postmark basic credentials do not match");
            return false;
        }
    }
    if (!pp.header_name.empty()) {
        const auto value = find_header(req.headers, pp.header_name);
        if (!value) {
            b.reject(401, "the Postmark secret header is missing");
            return false;
        }
        if (!constant_time_equal(*value, pp.header_value)) {
            b.reject(403, "the Postmark secret header does not match");
            return false;
        }
    }
    return true;
}

}  // namespace

void parse_postmark(const webhook_request& req, const webhook_params& params,
                    webhook_result& result) {
    outcome_builder b{params, result};
    if (auto ct = find_header(req.headers, "content-type");
        ct && media_type(*ct) != "application/json")
        return b.reject(415, "Postmark webhooks are application/json");
    if (params.verify && !authenticate(req, b)) return;
    thread_local simdjson::dom::parser parser;
    object o;
    if (parser.parse(req.body.data(), req.body.size()).get(o) != simdjson::SUCCESS)
        return b.reject(400, "the body is not a JSON object");
    const auto record = str(o, "RecordType");
    if (record.empty()) return b.reject(400, "the Postmark record has no RecordType");

    event e;
    e.provider = "postmark";
    e.provider_event = std::string(record);
    e.provider_message_id = std::string(str(o, "MessageID"));
    std::string_view at;
    if (record == "Bounce" || record == "SpamComplaint") {
        // Classified by Type: TypeCode disagrees with the published table in
        // Postmark's own SpamComplaint example.
        const auto type = str(o, "Type");
        e.type = record == "SpamComplaint" ? event_type::complained : bounce_type(type, e.bounce);
        if (!type.empty()) e.provider_event.append("/").append(type);
        e.recipient = recipient_of(str(o, "Email"));
        e.provider_event_id = str_or_int(o, "ID");
        auto details = str(o, "Details");
        e.detail = std::string(details.empty() ? str(o, "Description") : details);
        e.diagnostic_code = diagnostic_code_in(details);
        at = str(o, "BouncedAt");
    } else if (record == "Delivery") {
        e.type = event_type::delivered;
        e.recipient = recipient_of(str(o, "Recipient"));
        e.detail = std::string(str(o, "Details"));
        e.diagnostic_code = diagnostic_code_in(e.detail);
        at = str(o, "DeliveredAt");
    } else if (record == "Open") {
        e.type = event_type::opened;
        e.recipient = recipient_of(str(o, "Recipient"));
        at = str(o, "ReceivedAt");
    } else if (record == "Click") {
        e.type = event_type::clicked;
        e.recipient = recipient_of(str(o, "Recipient"));
        e.detail = std::string(str(o, "OriginalLink"));
        at = str(o, "ReceivedAt");
    } else if (record == "SubscriptionChange") {
        bool suppress = false;
        if (o["SuppressSending"].get(suppress) != simdjson::SUCCESS) suppress = false;
        const auto reason = str(o, "SuppressionReason");
        if (!reason.empty()) e.provider_event.append("/").append(reason);
        if (!suppress) {
            e.type = event_type::unknown;  // a resubscription
        } else if (reason == "HardBounce") {
            e.type = event_type::bounced;
            e.bounce = bounce_class::hard;
        } else if (reason == "SpamComplaint") {
            e.type = event_type::complained;
        } else {
            e.type = event_type::unsubscribed;
        }
        e.recipient = recipient_of(str(o, "Recipient"));
        at = str(o, "ChangedAt");
    } else {
        e.type = event_type::unknown;
        auto r = str(o, "Recipient");
        e.recipient = recipient_of(r.empty() ? str(o, "Email") : r);
        at = str(o, "ReceivedAt");
    }
    if (auto t = parse_iso8601(at)) e.at = *t;
    object metadata;
    if (o["Metadata"].get(metadata) == simdjson::SUCCESS)
        e.send_id = str_or_int(metadata, correlation_key);

    std::string raw = simdjson::minify(o);
    // Bounce and SpamComplaint records share one ID space in Postmark's
    // examples, so the record type is part of the key.
    e.dedup_key = e.provider_event_id.empty()
                      ? "postmark:sha256:" + sha256_hex(raw)
                      : "postmark:" + std::string(record) + ":" + e.provider_event_id;
    if (params.keep_raw) e.raw = std::move(raw);
    result.events.push_back(std::move(e));
    b.accept();
}

}  // namespace mailers::webhooks
