// SendGrid's event webhook: a JSON array of events, optionally signed.
#include <charconv>
#include <string>

#include "webhooks/common.hpp"

namespace mailers::webhooks {
namespace {

using simdjson::dom::object;

event_type type_of(std::string_view name, std::string_view bounce_type, bounce_class& cls) {
    cls = bounce_class::none;
    if (name == "processed") return event_type::queued;
    if (name == "deferred") return event_type::deferred;
    if (name == "delivered") return event_type::delivered;
    if (name == "open") return event_type::opened;
    if (name == "click") return event_type::clicked;
    if (name == "bounce") {
        // "blocked" is a refusal of this message (reputation, content), not
        // of the address.
        cls = bounce_type == "blocked" ? bounce_class::soft : bounce_class::hard;
        return event_type::bounced;
    }
    if (name == "dropped") return event_type::rejected;
    if (name == "spamreport") return event_type::complained;
    if (name == "unsubscribe" || name == "group_unsubscribe") return event_type::unsubscribed;
    return event_type::unknown;
}

}  // namespace

void parse_sendgrid(const webhook_request& req, const webhook_params& params,
                    webhook_result& result) {
    outcome_builder b{params, result};
    if (auto ct = find_header(req.headers, "content-type");
        ct && media_type(*ct) != "application/json")
        return b.reject(415, "SendGrid event webhooks are application/json");
    if (params.verify) {
        const auto sig = find_header(req.headers, "X-Twilio-Email-Event-Webhook-Signature");
        const auto ts = find_header(req.headers, "X-Twilio-Email-Event-Webhook-Timestamp");
        if (auto v = verify_sendgrid_signature(params.sendgrid.public_key, ts.value_or(""),
                                               req.body, sig.value_or(""));
            !v)
            return b.reject(v.http_status, v.reason);
        std::int64_t secs = 0;
        const auto [p, ec] = std::from_chars(ts->data(), ts->data() + ts->size(), secs);
        if (ec != std::errc{} || p != ts->data() + ts->size())
            return b.reject(400, "X-Twilio-Email-Event-Webhook-Timestamp is not an integer");
        const auto now = now_of(params);
        const auto signed_at =
            time_point{std::chrono::duration_cast<duration>(std::chrono::seconds{secs})};
        const auto tolerance = std::chrono::duration_cast<duration>(params.sendgrid.tolerance);
        if (signed_at < now - tolerance || signed_at > now + tolerance)
            return b.reject(403, "the SendGrid signature timestamp is outside the tolerance");
    }

    thread_local simdjson::dom::parser parser;
    simdjson::dom::array batch;
    if (parser.parse(req.body.data(), req.body.size()).get(batch) != simdjson::SUCCESS)
        return b.reject(400, "the body is not a JSON array");
    for (auto element : batch) {
        object o;
        std::string_view name;
        if (element.get(o) != simdjson::SUCCESS || o["event"].get(name) != simdjson::SUCCESS) {
            ++result.skipped;
            continue;
        }
        event e;
        e.provider = "sendgrid";
        e.type = type_of(name, str(o, "type"), e.bounce);
        e.provider_event = std::string(name);
        if (const auto t = str(o, "type"); !t.empty() && name == "bounce")
            e.provider_event.append("/").append(t);
        e.recipient = recipient_of(str(o, "email"));
        e.provider_message_id = std::string(str(o, "sg_message_id"));
        e.provider_event_id = std::string(str(o, "sg_event_id"));
        e.send_id = str_or_int(o, correlation_key);
        if (auto t = number(o, "timestamp")) e.at = from_unix_seconds(*t);
        auto reason = str(o, "reason");
        if (reason.empty()) reason = str(o, "response");
        e.detail = std::string(reason);
        e.diagnostic_code = std::string(str(o, "status"));
        if (e.diagnostic_code.empty()) e.diagnostic_code = diagnostic_code_in(reason);
        std::string raw = simdjson::minify(element);
        e.dedup_key = e.provider_event_id.empty() ? "sendgrid:sha256:" + sha256_hex(raw)
                                                  : "sendgrid:" + e.provider_event_id;
        if (params.keep_raw) e.raw = std::move(raw);
        result.events.push_back(std::move(e));
    }
    b.accept();
    if (result.skipped > 0)
        result.reason = std::to_string(result.skipped) +
                        " batch element(s) skipped: not an object with a string \"event\"";
}

}  // namespace mailers::webhooks
