// Amazon SES events, delivered as SNS messages.
#include <algorithm>
#include <string>

#include "webhooks/common.hpp"
#include "webhooks/sns.hpp"

namespace mailers::webhooks {

bool is_sns_host_url(std::string_view url) {
    // The host rule of SigningCertURL, for a URL whose path is not a ".pem";
    // the caller will send it in a request line, so no space or control.
    for (char c : url)
        if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f)
            return false;
    const auto slash = url.find('/', 8);
    if (slash == std::string_view::npos) return false;
    std::string probe(url.substr(0, slash));
    probe += "/x.pem";
    return is_sns_certificate_url(probe);
}

namespace {

using simdjson::dom::array;
using simdjson::dom::element;
using simdjson::dom::object;


struct ses_reader {
    const webhook_params& params;
    const sns_message& sns;
    object record;
    const object* mail;  // null when the record has none
    std::string_view record_type;
    std::vector<event>& out;

    std::string_view mail_str(std::string_view key) const {
        return mail ? str(*mail, key) : std::string_view{};
    }

    std::string send_id() const {
        object tags;
        if (!mail || (*mail)["tags"].get(tags) != simdjson::SUCCESS) return {};
        array values;
        if (tags[correlation_key].get(values) == simdjson::SUCCESS) {
            for (auto v : values) {
                std::string_view s;
                if (v.get(s) == simdjson::SUCCESS) return std::string(s);
            }
        }
        return std::string(str(tags, correlation_key));
    }

    // One event per entry of `list` (addresses, or objects holding one
    // under `address_key`), or one per mail.destination when `list` is absent.
    template <class Fill>
    void per_recipient(const object* detail, std::string_view list_key,
                       std::string_view address_key, event_type type, Fill&& fill) {
        event base;
        base.type = type;
        base.provider = "ses";
        base.provider_message_id = std::string(mail_str("messageId"));
        base.provider_event_id = sns.message_id;
        base.send_id = send_id();
        base.provider_event = std::string(record_type);
        auto at = parse_iso8601(detail ? str(*detail, "timestamp") : std::string_view{});
        if (!at) at = parse_iso8601(mail_str("timestamp"));
        if (!at) at = parse_iso8601(sns.timestamp);
        if (at) base.at = *at;
        if (params.keep_raw) base.raw = sns.message;

        array list;
        const bool from_detail =
            detail && !list_key.empty() && (*detail)[list_key].get(list) == simdjson::SUCCESS;
        if (!from_detail && (!mail || (*mail)["destination"].get(list) != simdjson::SUCCESS)) {
            out.push_back(std::move(base));
            fill(out.back(), nullptr);
            return;
        }
        for (auto entry : list) {
            event e = base;
            std::string_view address;
            if (entry.get(address) != simdjson::SUCCESS && from_detail)
                address = str(entry, address_key);
            e.recipient = recipient_of(address);
            fill(e, from_detail ? &entry : nullptr);
            out.push_back(std::move(e));
        }
        if (out.empty()) {
            out.push_back(std::move(base));
            fill(out.back(), nullptr);
        }
    }

    static void diagnostic(event& e, const element* entry) {
        simdjson::dom::object o;
        if (!entry || entry->get(o) != simdjson::SUCCESS) return;
        const auto code = str(o, "diagnosticCode");
        e.detail = std::string(code);
        e.diagnostic_code = std::string(str(o, "status"));
        if (e.diagnostic_code.empty()) e.diagnostic_code = diagnostic_code_in(code);
    }

    void read() {
        object section_object;
        const object* detail = nullptr;
        const auto section = [&](std::string_view key) {
            if (record[key].get(section_object) == simdjson::SUCCESS) detail = &section_object;
        };
        const auto dstr = [&](std::string_view key) {
            return detail ? str(*detail, key) : std::string_view{};
        };
        const auto none = [](event&, const element*) {};
        std::string name(record_type);
        if (record_type == "Bounce") {
            section("bounce");
            const auto kind = dstr("bounceType");
            const auto sub = dstr("bounceSubType");
            name.append("/").append(kind).append("/").append(sub);
            const auto cls = kind == "Permanent" ? bounce_class::hard : bounce_class::soft;
            per_recipient(detail, "bouncedRecipients", "emailAddress", event_type::bounced,
                          [&](event& e, const element* entry) {
                              e.bounce = cls;
                              diagnostic(e, entry);
                              if (e.detail.empty()) e.detail = std::string(sub);
                          });
        } else if (record_type == "Complaint") {
            section("complaint");
            const auto feedback = dstr("complaintFeedbackType");
            per_recipient(detail, "complainedRecipients", "emailAddress", event_type::complained,
                          [&](event& e, const element*) { e.detail = std::string(feedback); });
        } else if (record_type == "Delivery") {
            section("delivery");
            const auto reply = dstr("smtpResponse");
            per_recipient(detail, "recipients", {}, event_type::delivered,
                          [&](event& e, const element*) {
                              e.detail = std::string(reply);
                              e.diagnostic_code = diagnostic_code_in(reply);
                          });
        } else if (record_type == "Send") {
            section("send");
            per_recipient(detail, {}, {}, event_type::sent, none);
        } else if (record_type == "Reject") {
            section("reject");
            const auto reason = dstr("reason");
            per_recipient(detail, {}, {}, event_type::rejected,
                          [&](event& e, const element*) { e.detail = std::string(reason); });
        } else if (record_type == "Open") {
            section("open");
            per_recipient(detail, {}, {}, event_type::opened, none);
        } else if (record_type == "Click") {
            section("click");
            const auto link = dstr("link");
            per_recipient(detail, {}, {}, event_type::clicked,
                          [&](event& e, const element*) { e.detail = std::string(link); });
        } else if (record_type == "Rendering Failure") {
            section("failure");
            const auto why = dstr("errorMessage");
            per_recipient(detail, {}, {}, event_type::failed,
                          [&](event& e, const element*) { e.detail = std::string(why); });
        } else if (record_type == "DeliveryDelay") {
            section("deliveryDelay");
            const auto delay = dstr("delayType");
            name.append("/").append(delay);
            per_recipient(detail, "delayedRecipients", "emailAddress", event_type::deferred,
                          [&](event& e, const element* entry) {
                              diagnostic(e, entry);
                              if (e.detail.empty()) e.detail = std::string(delay);
                          });
        } else if (record_type == "Subscription") {
            section("subscription");
            // Only leaving every topic is an unsubscription; a change of
            // topic preferences is the contact list's business.
            object prefs;
            bool all = false;
            if (detail && (*detail)["newTopicPreferences"].get(prefs) == simdjson::SUCCESS)
                if (prefs["unsubscribeAll"].get(all) != simdjson::SUCCESS) all = false;
            per_recipient(detail, {}, {}, all ? event_type::unsubscribed : event_type::unknown,
                          none);
        } else {
            per_recipient(detail, {}, {}, event_type::unknown, none);
        }
        const auto id =
            sns.message_id.empty() ? "sha256:" + sha256_hex(sns.message) : sns.message_id;
        for (std::size_t i = 0; i < out.size(); ++i) {
            out[i].provider_event = name;
            // SNS resends a message with its MessageId and its body
            // unchanged, so the position names the recipient's event.
            out[i].dedup_key = "ses:" + id + ":" + std::to_string(i);
        }
    }
};

}  // namespace

void parse_ses(const webhook_request& req, const webhook_params& params, webhook_result& result) {
    outcome_builder b{params, result};
    sns_message m;
    if (auto why = read_sns_message(req.body, m)) return b.reject(400, *why);
    if (m.type != "Notification" && m.type != "SubscriptionConfirmation" &&
        m.type != "UnsubscribeConfirmation")
        return b.reject(400, "unknown SNS message Type");
    if (auto h = find_header(req.headers, "x-amz-sns-message-type"); h && *h != m.type)
        return b.reject(400, "x-amz-sns-message-type does not match the message Type");
    if (!params.ses.allowed_topic_arns.empty() &&
        std::find(params.ses.allowed_topic_arns.begin(), params.ses.allowed_topic_arns.end(),
                  m.topic_arn) == params.ses.allowed_topic_arns.end())
        return b.reject(403, "the SNS TopicArn is not allowed");

    if (params.verify) {
        if (!params.ses.certificates)
            return b.reject(500, "no SNS certificate store is configured");
        if (m.signature.empty() || m.signing_cert_url.empty())
            return b.reject(401, "the SNS message is not signed");
        if (!is_sns_certificate_url(m.signing_cert_url))
            return b.reject(403, "SigningCertURL is not an https SNS certificate URL");
        const auto cert = params.ses.certificates->find(m.signing_cert_url);
        if (!cert) {
            result = webhook_result{};
            result.outcome = webhook_outcome::certificate_needed;
            result.http_status = 503;
            result.reason = "the SNS signing certificate is not in the store";
            result.certificate_url = m.signing_cert_url;
            result.topic_arn = m.topic_arn;
            return;
        }
        sns_verify_params vp;
        if (params.ses.check_certificate_dates) vp.now = now_of(params);
        if (auto v = verify_sns(m, *cert, vp); !v) return b.reject(v.http_status, v.reason);
    }
    result.topic_arn = m.topic_arn;

    if (m.type == "SubscriptionConfirmation") {
        if (!is_sns_host_url(m.subscribe_url))
            return b.reject(403, "SubscribeURL is not an https SNS URL");
        result.outcome = webhook_outcome::subscription_confirmation;
        result.http_status = 200;
        result.confirm_url = m.subscribe_url;
        return;
    }
    if (m.type == "UnsubscribeConfirmation") {
        result.outcome = webhook_outcome::unsubscribe_confirmation;
        result.http_status = 200;
        result.reason = "the SNS subscription has ended; not re-confirmed";
        return;
    }

    thread_local simdjson::dom::parser parser;
    object record;
    if (parser.parse(m.message.data(), m.message.size()).get(record) != simdjson::SUCCESS)
        return b.ignore("the SNS Message is not an SES record (not JSON)");
    auto type = str(record, "eventType");
    if (type.empty()) type = str(record, "notificationType");
    if (type.empty()) return b.ignore("the SNS Message is not an SES record (no event type)");
    if (type == "Received")
        return b.ignore(
            "an SES inbound (Received) notification reached the tracking endpoint: check the "
            "topic's configuration");
    object mail;
    const bool has_mail = record["mail"].get(mail) == simdjson::SUCCESS;
    ses_reader r{params, m, record, has_mail ? &mail : nullptr, type, result.events};
    r.read();
    b.accept();
}

}  // namespace mailers::webhooks
