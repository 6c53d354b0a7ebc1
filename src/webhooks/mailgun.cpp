// Mailgun webhooks: the JSON form and the legacy form-encoded one.
#include <charconv>
#include <string>

#include "webhooks/common.hpp"

namespace mailers::webhooks {
namespace {

using simdjson::dom::object;

// Signature, then freshness, then replay: a forged request must not reach
// the replay cache, where it could evict genuine tokens.
bool check_signature(outcome_builder& b, std::string_view timestamp, std::string_view token,
                     std::string_view signature) {
    const auto& mp = b.params.mailgun;
    if (auto v = verify_mailgun_signature(mp.signing_key, timestamp, token, signature); !v) {
        b.reject(v.http_status, v.reason);
        return false;
    }
    std::int64_t ts = 0;
    const auto [p, ec] = std::from_chars(timestamp.data(), timestamp.data() + timestamp.size(), ts);
    if (ec != std::errc{} || p != timestamp.data() + timestamp.size()) {
        b.reject(400, "the Mailgun signature timestamp is not an integer");
        return false;
    }
    const auto now = now_of(b.params);
    const auto signed_at =
        time_point{std::chrono::duration_cast<duration>(std::chrono::seconds{ts})};
    const auto tolerance = std::chrono::duration_cast<duration>(mp.tolerance);
    if (signed_at < now - tolerance || signed_at > now + tolerance) {
        b.reject(403, "the Mailgun signature timestamp is outside the tolerance");
        return false;
    }
    if (mp.replay) {
        std::string key = "mailgun:" + std::string(token);
        if (!mp.replay->first_use(key, signed_at + tolerance, now)) {
            b.reject(403, "the Mailgun token has been used before (replay)");
            return false;
        }
        b.result.replay_token = std::move(key);
    }
    return true;
}

event_type legacy_type(std::string_view e) {
    if (e == "delivered") return event_type::delivered;
    if (e == "dropped") return event_type::rejected;
    if (e == "bounced") return event_type::bounced;
    if (e == "complained") return event_type::complained;
    if (e == "unsubscribed") return event_type::unsubscribed;
    if (e == "opened") return event_type::opened;
    if (e == "clicked") return event_type::clicked;
    return event_type::unknown;
}

void parse_legacy(const webhook_request& req, outcome_builder& b) {
    auto form = decode_form(req.body);
    if (!form) return b.reject(400, "the form body has a malformed %-escape");
    const auto field = [&](std::string_view name) -> std::string_view {
        for (const auto& [k, v] : *form)
            if (k == name) return v;
        return {};
    };
    const auto token = field("token");
    if (b.params.verify && !check_signature(b, field("timestamp"), token, field("signature")))
        return;
    const auto name = field("event");
    if (name.empty()) return b.reject(400, "the Mailgun form has no event field");
    event e;
    e.provider = "mailgun";
    e.type = legacy_type(name);
    if (e.type == event_type::bounced) e.bounce = bounce_class::hard;
    e.provider_event = std::string(name);
    e.recipient = recipient_of(field("recipient"));
    e.provider_message_id = std::string(field("Message-Id"));
    e.provider_event_id = std::string(token);
    e.send_id = std::string(field(correlation_key));
    std::int64_t ts = 0;
    const auto t = field("timestamp");
    if (std::from_chars(t.data(), t.data() + t.size(), ts).ec == std::errc{} && ts > 0)
        e.at = from_unix_seconds(static_cast<double>(ts));
    e.detail = std::string(field("error"));
    if (e.detail.empty()) e.detail = std::string(field("description"));
    e.diagnostic_code = diagnostic_code_in(e.detail);
    if (e.diagnostic_code.empty()) e.diagnostic_code = std::string(field("code"));
    e.dedup_key =
        token.empty() ? "mailgun:sha256:" + sha256_hex(req.body) : "mailgun:" + std::string(token);
    if (b.params.keep_raw) e.raw = std::string(req.body);
    b.result.events.push_back(std::move(e));
    b.accept();
}

event_type json_type(std::string_view name, std::string_view severity, bounce_class& cls) {
    cls = bounce_class::none;
    if (name == "accepted") return event_type::queued;
    if (name == "delivered") return event_type::delivered;
    if (name == "failed") {
        if (severity == "permanent") {
            cls = bounce_class::hard;
            return event_type::bounced;
        }
        if (severity == "temporary") return event_type::deferred;
        return event_type::failed;
    }
    if (name == "rejected") return event_type::rejected;
    if (name == "complained") return event_type::complained;
    if (name == "unsubscribed") return event_type::unsubscribed;
    if (name == "opened") return event_type::opened;
    if (name == "clicked") return event_type::clicked;
    return event_type::unknown;
}

void parse_json(const webhook_request& req, outcome_builder& b) {
    thread_local simdjson::dom::parser parser;
    object root;
    if (parser.parse(req.body.data(), req.body.size()).get(root) != simdjson::SUCCESS)
        return b.reject(400, "the body is not a JSON object");
    if (b.params.verify) {
        object sig;
        if (root["signature"].get(sig) != simdjson::SUCCESS)
            return b.reject(401, "the Mailgun body has no signature object");
        if (!check_signature(b, str(sig, "timestamp"), str(sig, "token"), str(sig, "signature")))
            return;
    }
    object data;
    if (root["event-data"].get(data) != simdjson::SUCCESS)
        return b.reject(400, "the Mailgun body has no event-data object");
    const auto name = str(data, "event");
    if (name.empty()) return b.reject(400, "the Mailgun event-data has no event");

    event e;
    e.provider = "mailgun";
    const auto severity = str(data, "severity");
    e.type = json_type(name, severity, e.bounce);
    e.provider_event = std::string(name);
    if (!severity.empty()) e.provider_event.append("/").append(severity);
    e.provider_event_id = std::string(str(data, "id"));
    if (auto t = number(data, "timestamp")) e.at = from_unix_seconds(*t);

    object message, headers;
    const bool has_headers = data["message"].get(message) == simdjson::SUCCESS &&
                             message["headers"].get(headers) == simdjson::SUCCESS;
    if (has_headers) e.provider_message_id = std::string(str(headers, "message-id"));
    // Rejected and accepted events may lack `recipient`; the To header then
    // names who it was for.
    auto rcpt = str(data, "recipient");
    if (rcpt.empty() && has_headers) rcpt = str(headers, "to");
    e.recipient = recipient_of(rcpt);

    object vars;
    if (data["user-variables"].get(vars) == simdjson::SUCCESS)
        e.send_id = str_or_int(vars, correlation_key);

    object status;
    if (data["delivery-status"].get(status) == simdjson::SUCCESS) {
        const auto description = str(status, "description");
        const auto message_text = str(status, "message");
        e.detail = std::string(description.empty() ? message_text : description);
        e.diagnostic_code = diagnostic_code_in(message_text);
        if (e.diagnostic_code.empty()) e.diagnostic_code = diagnostic_code_in(description);
        if (e.diagnostic_code.empty()) e.diagnostic_code = str_or_int(status, "code");
    }
    object reject;
    if (e.detail.empty() && data["reject"].get(reject) == simdjson::SUCCESS)
        e.detail = std::string(str(reject, "reason"));
    if (const auto reason = str(data, "reason"); !reason.empty()) {
        e.detail = e.detail.empty() ? std::string(reason) : std::string(reason) + ": " + e.detail;
    }

    std::string raw = simdjson::minify(data);
    e.dedup_key = e.provider_event_id.empty() ? "mailgun:sha256:" + sha256_hex(raw)
                                              : "mailgun:" + e.provider_event_id;
    if (b.params.keep_raw) e.raw = std::move(raw);
    b.result.events.push_back(std::move(e));
    b.accept();
}

}  // namespace

void parse_mailgun(const webhook_request& req, const webhook_params& params,
                   webhook_result& result) {
    outcome_builder b{params, result};
    std::string type;
    if (auto ct = find_header(req.headers, "content-type")) type = media_type(*ct);
    if (type.empty()) {
        // No Content-Type: the first byte tells JSON from a form.
        const auto first = req.body.find_first_not_of(" \t\r\n");
        type = first != std::string_view::npos && req.body[first] == '{'
                   ? "application/json"
                   : "application/x-www-form-urlencoded";
    }
    if (type == "application/json") return parse_json(req, b);
    if (type == "application/x-www-form-urlencoded") return parse_legacy(req, b);
    b.reject(415,
             "Mailgun webhooks are application/json or application/x-www-form-urlencoded"
             " (multipart legacy webhooks are not read)");
}

}  // namespace mailers::webhooks
