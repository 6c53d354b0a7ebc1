// Sequences, enrollments, campaigns, forecasts and outbound webhook
// endpoints to and from JavaScript (convert.hpp says how names map).
#include <cmath>

#include "convert.hpp"

namespace mailers_node {

namespace {

using namespace std::chrono;

// Enums the library gives no `to_string`; in declaration order.
constexpr std::array<std::string_view, 3> delay_units = {"hours", "days", "business_days"};
constexpr std::array<std::string_view, 2> conflict_names = {"refuse", "merge"};
constexpr int event_types = static_cast<int>(mailers::event_type::auto_paused) + 1;

std::string_view name_of(mailers::sequence_delay::unit u) {
    return delay_units[static_cast<std::size_t>(u)];
}
std::string_view name_of(mailers::enrollment_conflict c) {
    return conflict_names[static_cast<std::size_t>(c)];
}

// The epoch stands for "unset" in the library's times.
Napi::Value optional_time(Napi::Env env, mailers::time_point t) {
    if (t == mailers::time_point{}) return env.Null();
    return to_js(env, t);
}

std::uint32_t u32_field(const Napi::Object& o, const char* name, std::uint32_t def) {
    auto v = uint_field(o, name, def);
    if (v > 0xffffffffu) type_error(o.Env(), std::string(name) + " is too large");
    return static_cast<std::uint32_t>(v);
}

mailers::template_variables variables_from(const Napi::Object& o, const char* field) {
    if (!has(o, field)) return {};
    return template_variables_from(o.Get(field), field);
}

}  // namespace

mailers::template_variables template_variables_from(const Napi::Value& v, const char* field) {
    mailers::template_variables out;
    auto vars = obj(v, field);
    auto names = vars.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); ++i) {
        auto n = names.Get(i).As<Napi::String>().Utf8Value();
        auto value = vars.Get(n);
        if (!value.IsString())
            type_error(v.Env(), std::string(field) + "." + n + " must be a string");
        out.insert_or_assign(n, value.As<Napi::String>().Utf8Value());
    }
    return out;
}

namespace {

mailers::template_source content_from(const Napi::Object& o, const char* field) {
    mailers::template_source t;
    if (!has(o, field)) return t;
    auto c = obj(o.Get(field), field);
    t.subject = string_field(c, "subject");
    t.text = string_field(c, "text");
    t.html = string_field(c, "html");
    return t;
}

Napi::Object content_to_js(Napi::Env env, const mailers::template_source& t) {
    auto o = Napi::Object::New(env);
    o.Set("subject", str(env, t.subject));
    o.Set("text", str(env, t.text));
    o.Set("html", str(env, t.html));
    return o;
}

Napi::Array array_of(const Napi::Object& o, const char* field) {
    auto v = o.Get(field);
    if (!v.IsArray()) type_error(o.Env(), std::string(field) + " must be an array");
    return v.As<Napi::Array>();
}

mailers::sequence_step step_from(const Napi::Value& v) {
    auto o = obj(v, "a step");
    mailers::sequence_step s;
    if (has(o, "delay")) {
        auto d = obj(o.Get("delay"), "delay");
        if (has(d, "in"))
            s.delay.in =
                named_from<mailers::sequence_delay::unit>(d.Get("in"), "delay.in", delay_units);
        s.delay.amount = u32_field(d, "amount", 0);
    }
    s.content = content_from(o, "content");
    if (has(o, "sender")) {
        auto r = obj(o.Get("sender"), "sender");
        if (has(r, "kind"))
            s.sender.kind = enum_from<mailers::sender_rule_kind, 4>(r.Get("kind"), "sender.kind");
        s.sender.id = string_field(r, "id");
        s.sender.fallback_pool = string_field(r, "fallbackPool");
    }
    if (has(o, "threading"))
        s.threading = enum_from<mailers::step_threading, 2>(o.Get("threading"), "threading");
    return s;
}

template <class T>
Napi::Array list_to_js(Napi::Env env, const std::vector<T>& v,
                       Napi::Object (*one)(Napi::Env, const T&)) {
    auto a = Napi::Array::New(env, v.size());
    for (std::size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), one(env, v[i]));
    return a;
}

Napi::Object step_to_js(Napi::Env env, const mailers::sequence_step& s) {
    auto o = Napi::Object::New(env);
    auto d = Napi::Object::New(env);
    d.Set("in", str(env, name_of(s.delay.in)));
    d.Set("amount", num(env, s.delay.amount));
    o.Set("delay", d);
    o.Set("content", content_to_js(env, s.content));
    auto r = Napi::Object::New(env);
    r.Set("kind", str(env, mailers::to_string(s.sender.kind)));
    r.Set("id", str(env, s.sender.id));
    r.Set("fallbackPool", str(env, s.sender.fallback_pool));
    o.Set("sender", r);
    o.Set("threading", str(env, mailers::to_string(s.threading)));
    return o;
}

Napi::Object planned_to_js(Napi::Env env, const mailers::planned_send& s) {
    auto o = Napi::Object::New(env);
    o.Set("at", to_js(env, s.at));
    o.Set("due", to_js(env, s.due));
    o.Set("mailbox", str(env, s.mailbox));
    o.Set("recipient", str(env, s.recipient));
    o.Set("origin", str(env, s.origin));
    o.Set("step", num(env, s.step));
    o.Set("bound", str(env, s.bound));
    o.Set("existing", Napi::Boolean::New(env, s.existing));
    return o;
}

Napi::Object unsent_to_js(Napi::Env env, const mailers::forecast_unsent& u) {
    auto o = Napi::Object::New(env);
    o.Set("recipient", str(env, u.recipient));
    o.Set("origin", str(env, u.origin));
    o.Set("step", num(env, u.step));
    o.Set("reason", str(env, u.reason));
    o.Set("detail", str(env, u.detail));
    o.Set("waiting", Napi::Boolean::New(env, u.waiting));
    return o;
}

}  // namespace

// --- sequences and enrollments ---------------------------------------------------

mailers::sequence_config sequence_from(const Napi::Value& v) {
    auto o = obj(v, "a sequence");
    mailers::sequence_config c;
    c.id = string_field(o, "id");
    c.name = string_field(o, "name");
    if (has(o, "steps")) {
        auto a = array_of(o, "steps");
        for (uint32_t i = 0; i < a.Length(); ++i) c.steps.push_back(step_from(a.Get(i)));
    }
    c.time_zone = string_field(o, "timeZone");
    c.business_weekdays = static_cast<std::uint8_t>(
        uint_field(o, "businessWeekdays", mailers::send_window::weekdays_mon_fri));
    c.holidays = strings_from(o, "holidays");
    if (has(o, "onEnrolledTwice"))
        c.on_enrolled_twice = named_from<mailers::enrollment_conflict>(
            o.Get("onEnrolledTwice"), "onEnrolledTwice", conflict_names);
    if (has(o, "replyStops"))
        c.reply_stops = enum_from<mailers::stop_scope, 2>(o.Get("replyStops"), "replyStops");
    if (has(o, "goalStops"))
        c.goal_stops = enum_from<mailers::stop_scope, 2>(o.Get("goalStops"), "goalStops");
    return c;
}

Napi::Object to_js(Napi::Env env, const mailers::sequence_config& c) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, c.id));
    o.Set("name", str(env, c.name));
    o.Set("steps", list_to_js(env, c.steps, &step_to_js));
    o.Set("timeZone", str(env, c.time_zone));
    o.Set("businessWeekdays", num(env, c.business_weekdays));
    o.Set("holidays", strings_to_js(env, c.holidays));
    o.Set("onEnrolledTwice", str(env, name_of(c.on_enrolled_twice)));
    o.Set("replyStops", str(env, mailers::to_string(c.reply_stops)));
    o.Set("goalStops", str(env, mailers::to_string(c.goal_stops)));
    return o;
}

mailers::enroll_options enroll_options_from(const Napi::Value& v) {
    mailers::enroll_options opts;
    if (v.IsUndefined() || v.IsNull()) return opts;
    auto o = obj(v, "enroll options");
    opts.variables = variables_from(o, "variables");
    opts.owner = string_field(o, "owner");
    if (has(o, "onEnrolledTwice"))
        opts.on_enrolled_twice = named_from<mailers::enrollment_conflict>(
            o.Get("onEnrolledTwice"), "onEnrolledTwice", conflict_names);
    return opts;
}

mailers::enrollment_filter enrollment_filter_from(const Napi::Value& v) {
    mailers::enrollment_filter f;
    if (v.IsUndefined() || v.IsNull()) return f;
    auto o = obj(v, "an enrollment filter");
    f.sequence_id = string_field(o, "sequenceId");
    f.address = string_field(o, "address");
    if (has(o, "state")) f.state = enum_from<mailers::enrollment_state, 6>(o.Get("state"), "state");
    f.after_id = uint_field(o, "afterId", 0);
    f.limit = static_cast<std::size_t>(uint_field(o, "limit", 0));
    return f;
}

Napi::Object to_js(Napi::Env env, const mailers::enrollment& e) {
    auto o = Napi::Object::New(env);
    o.Set("id", num(env, static_cast<double>(e.id)));
    o.Set("sequenceId", str(env, e.sequence_id));
    o.Set("address", str(env, e.address));
    o.Set("displayName", str(env, e.display_name));
    // Stored as a JSON object of strings.
    Napi::Value vars = Napi::Object::New(env);
    if (!e.variables.empty()) {
        auto json = env.Global().Get("JSON").As<Napi::Object>();
        try {
            vars = json.Get("parse").As<Napi::Function>().Call(json, {str(env, e.variables)});
        } catch (const Napi::Error&) {
        }
    }
    o.Set("variables", vars);
    o.Set("owner", str(env, e.owner));
    o.Set("actor", str(env, e.actor));
    o.Set("state", str(env, mailers::to_string(e.state)));
    o.Set("stopReason", str(env, mailers::to_string(e.stop_reason)));
    o.Set("detail", str(env, e.detail));
    o.Set("step", num(env, e.step));
    o.Set("nextDue", to_js(env, e.next_due));
    o.Set("stepDue", optional_time(env, e.step_due));
    o.Set("queueKey", str(env, e.queue_key));
    o.Set("plans", num(env, e.plans));
    o.Set("prevMailbox", str(env, e.prev_mailbox));
    o.Set("prevMessageId", str(env, e.prev_message_id));
    o.Set("prevSubject", str(env, e.prev_subject));
    o.Set("prevReferences", strings_to_js(env, e.prev_references));
    o.Set("lastSentAt", optional_time(env, e.last_sent_at));
    o.Set("enrolledAt", to_js(env, e.enrolled_at));
    o.Set("updatedAt", to_js(env, e.updated_at));
    o.Set("version", num(env, static_cast<double>(e.version)));
    return o;
}

std::optional<mailers::sequence_error> locate_sequence_error(const mailers::sequence_config& c) {
    mailers::sequence_error err;
    if (mailers::sequence::compile(c, &err)) return std::nullopt;
    return err;
}

std::optional<mailers::sequence_error> locate_template_error(const mailers::template_source& t) {
    mailers::template_error err;
    if (mailers::message_template::compile(t, &err)) return std::nullopt;
    return mailers::sequence_error{0, "content", err, err.message};
}

// --- campaigns and forecasts -----------------------------------------------------

mailers::campaign_config campaign_from(const Napi::Value& v) {
    auto o = obj(v, "a campaign");
    mailers::campaign_config c;
    c.id = string_field(o, "id");
    c.name = string_field(o, "name");
    c.content = content_from(o, "content");
    c.pool = string_field(o, "pool");
    c.mailbox = string_field(o, "mailbox");
    if (has(o, "replyTo")) c.reply_to = address_from(o.Get("replyTo"), "replyTo");
    if (has(o, "recipients")) {
        auto a = array_of(o, "recipients");
        c.recipients.reserve(a.Length());
        for (uint32_t i = 0; i < a.Length(); ++i) {
            const auto where = "recipients[" + std::to_string(i) + "]";
            auto r = a.Get(i);
            if (r.IsString()) {
                c.recipients.push_back({address_from(r, where.c_str()), {}});
                continue;
            }
            auto ro = obj(r, where.c_str());
            if (!has(ro, "to")) type_error(o.Env(), where + ".to is required");
            c.recipients.push_back({address_from(ro.Get("to"), (where + ".to").c_str()),
                                    variables_from(ro, "variables")});
        }
    }
    if (has(o, "notBefore")) c.not_before = time_from(o.Get("notBefore"), "notBefore");
    return c;
}

Napi::Object to_js(Napi::Env env, const mailers::campaign_info& c) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, c.id));
    o.Set("name", str(env, c.name));
    o.Set("content", content_to_js(env, c.content));
    o.Set("pool", str(env, c.pool));
    o.Set("mailbox", str(env, c.mailbox));
    o.Set("notBefore", optional_time(env, c.not_before));
    o.Set("startedAt", to_js(env, c.started_at));
    o.Set("actor", str(env, c.actor));
    o.Set("total", num(env, static_cast<double>(c.total)));
    o.Set("suppressedAtStart", num(env, static_cast<double>(c.suppressed_at_start)));
    o.Set("cancelled", Napi::Boolean::New(env, c.cancelled));
    o.Set("digest", str(env, c.digest));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::campaign_progress& p) {
    auto o = Napi::Object::New(env);
    auto set = [&](const char* n, std::uint64_t v) { o.Set(n, num(env, static_cast<double>(v))); };
    o.Set("id", str(env, p.id));
    set("total", p.total);
    set("sent", p.sent);
    set("failed", p.failed);
    set("unknown", p.unknown);
    set("suppressedAtStart", p.suppressed_at_start);
    set("suppressedAtHandoff", p.suppressed_at_handoff);
    set("cancelled", p.cancelled);
    set("inFlight", p.in_flight);
    set("waiting", p.waiting);
    auto by = Napi::Object::New(env);
    for (const auto& [reason, n] : p.waiting_by_reason)
        by.Set(reason, num(env, static_cast<double>(n)));
    o.Set("waitingByReason", by);
    set("notQueued", p.not_queued);
    set("remaining", p.remaining);
    o.Set("nextDue", to_js(env, p.next_due));
    o.Set("cancelledCampaign", Napi::Boolean::New(env, p.cancelled_campaign));
    o.Set("finished", Napi::Boolean::New(env, p.finished()));
    return o;
}

mailers::forecast_request forecast_from(const Napi::Value& v) {
    auto o = obj(v, "a forecast request");
    mailers::forecast_request r;
    if (has(o, "campaign")) r.campaign = campaign_from(o.Get("campaign"));
    r.sequence_id = string_field(o, "sequenceId");
    if (has(o, "contacts")) {
        auto a = array_of(o, "contacts");
        for (uint32_t i = 0; i < a.Length(); ++i) {
            const auto where = "contacts[" + std::to_string(i) + "]";
            auto c = obj(a.Get(i), where.c_str());
            if (!has(c, "to")) type_error(o.Env(), where + ".to is required");
            r.contacts.push_back({address_from(c.Get("to"), (where + ".to").c_str()),
                                  variables_from(c, "variables"), string_field(c, "owner")});
        }
    }
    if (auto s = number_field(o, "horizon")) {
        if (!std::isfinite(*s) || *s <= 0)
            type_error(o.Env(), "horizon must be a positive number of seconds");
        r.horizon = hours(static_cast<std::int64_t>(std::ceil(*s / 3600.0)));
    }
    r.include_queue = bool_field(o, "includeQueue", true);
    r.follow = string_field(o, "follow");
    return r;
}

Napi::Object to_js(Napi::Env env, const mailers::forecast_plan& p) {
    auto o = Napi::Object::New(env);
    o.Set("start", to_js(env, p.start));
    o.Set("end", to_js(env, p.end));
    o.Set("sends", list_to_js(env, p.sends, &planned_to_js));
    o.Set("unsent", list_to_js(env, p.unsent, &unsent_to_js));
    o.Set("last", to_js(env, p.last));
    o.Set("complete", Napi::Boolean::New(env, p.complete));
    return o;
}

// --- outbound webhooks -------------------------------------------------------------

mailers::webhook_endpoint webhook_endpoint_from(const Napi::Value& v) {
    auto o = obj(v, "a webhook endpoint");
    mailers::webhook_endpoint ep;
    ep.id = string_field(o, "id");
    ep.url = string_field(o, "url");
    ep.secret = string_field(o, "secret");
    if (has(o, "eventTypes")) {
        auto a = array_of(o, "eventTypes");
        for (uint32_t i = 0; i < a.Length(); ++i)
            ep.event_types.push_back(
                enum_from<mailers::event_type, event_types>(a.Get(i), "eventTypes"));
    }
    ep.enabled = bool_field(o, "enabled", true);
    ep.description = string_field(o, "description");
    return ep;
}

Napi::Object to_js(Napi::Env env, const mailers::webhook_endpoint& ep) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, ep.id));
    o.Set("url", str(env, ep.url));
    o.Set("secret", str(env, ep.secret));
    auto a = Napi::Array::New(env, ep.event_types.size());
    for (std::size_t i = 0; i < ep.event_types.size(); ++i)
        a.Set(static_cast<uint32_t>(i), str(env, mailers::to_string(ep.event_types[i])));
    o.Set("eventTypes", a);
    o.Set("enabled", Napi::Boolean::New(env, ep.enabled));
    o.Set("disabledReason", str(env, ep.disabled_reason));
    o.Set("description", str(env, ep.description));
    return o;
}

mailers::webhook_delivery_filter webhook_delivery_filter_from(const Napi::Value& v) {
    mailers::webhook_delivery_filter f;
    if (v.IsUndefined() || v.IsNull()) return f;
    auto o = obj(v, "a delivery filter");
    f.endpoint = string_field(o, "endpoint");
    if (has(o, "state"))
        f.state = enum_from<mailers::webhook_delivery_state, 4>(o.Get("state"), "state");
    f.after_id = uint_field(o, "afterId", 0);
    f.limit = static_cast<std::size_t>(uint_field(o, "limit", 0));
    return f;
}

Napi::Object to_js(Napi::Env env, const mailers::webhook_delivery& d) {
    auto o = Napi::Object::New(env);
    o.Set("id", num(env, static_cast<double>(d.id)));
    o.Set("endpoint", str(env, d.endpoint));
    o.Set("messageId", str(env, d.message_id));
    o.Set("eventKey", str(env, d.event_key));
    o.Set("eventType", str(env, d.event_type));
    o.Set("payload", str(env, d.payload));
    o.Set("createdAt", to_js(env, d.created_at));
    o.Set("dueAt", to_js(env, d.due_at));
    o.Set("state", str(env, mailers::to_string(d.state)));
    o.Set("attempts", num(env, d.attempts));
    o.Set("lastStatus", num(env, d.last_status));
    o.Set("detail", str(env, d.detail));
    o.Set("updatedAt", to_js(env, d.updated_at));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::webhook_delivery_counts& c) {
    auto o = Napi::Object::New(env);
    o.Set("pending", num(env, static_cast<double>(c.pending)));
    o.Set("claimed", num(env, static_cast<double>(c.claimed)));
    o.Set("delivered", num(env, static_cast<double>(c.delivered)));
    o.Set("failed", num(env, static_cast<double>(c.failed)));
    o.Set("lastDelivered", to_js(env, c.last_delivered));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::report_ingest_result& r) {
    auto o = Napi::Object::New(env);
    o.Set("recognised", Napi::Boolean::New(env, r.report.recognised));
    o.Set("format", str(env, r.report.format));
    o.Set("reportingMta", str(env, r.report.reporting_mta));
    o.Set("originalMessageId", str(env, r.report.original_message_id));
    auto ev = Napi::Array::New(env, r.report.events.size());
    for (std::size_t i = 0; i < r.report.events.size(); ++i)
        ev.Set(static_cast<uint32_t>(i), to_js(env, r.report.events[i]));
    o.Set("events", ev);
    o.Set("reason", str(env, r.report.reason));
    o.Set("suppressed", num(env, static_cast<double>(r.suppressed)));
    o.Set("alreadySuppressed", num(env, static_cast<double>(r.already_suppressed)));
    o.Set("duplicates", num(env, static_cast<double>(r.duplicates)));
    return o;
}

mailers::outbound_webhook_params outbound_webhooks_from(const Napi::Value& v) {
    mailers::outbound_webhook_params p;
    if (v.IsUndefined() || v.IsNull()) return p;
    auto o = obj(v, "webhooks");
    p.deliver = bool_field(o, "deliver", p.deliver);
    p.allow_private_targets = bool_field(o, "allowPrivateTargets", p.allow_private_targets);
    p.allow_http = bool_field(o, "allowHttp", p.allow_http);
    p.max_attempts = u32_field(o, "maxAttempts", p.max_attempts);
    p.first_retry = seconds_field(o, "firstRetry", p.first_retry);
    p.max_retry = seconds_field(o, "maxRetry", p.max_retry);
    p.disable_on_failure = bool_field(o, "disableOnFailure", p.disable_on_failure);
    p.timeout =
        milliseconds(uint_field(o, "timeoutMs", static_cast<std::uint64_t>(p.timeout.count())));
    p.max_response_size =
        static_cast<std::size_t>(uint_field(o, "maxResponseSize", p.max_response_size));
    p.poll_interval = milliseconds(
        uint_field(o, "pollIntervalMs", static_cast<std::uint64_t>(p.poll_interval.count())));
    p.in_flight = static_cast<std::size_t>(uint_field(o, "inFlight", p.in_flight));
    p.retention = seconds_field(o, "retention", p.retention);
    p.ca_file = string_field(o, "caFile");
    return p;
}

}  // namespace mailers_node
