#include "convert.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <string_view>

namespace mailers_node {

using namespace std::chrono;

[[noreturn]] void type_error(const Napi::Env& env, const std::string& what) {
    throw Napi::TypeError::New(env, what);
}

Napi::String str(Napi::Env env, std::string_view s) {
    return Napi::String::New(env, s.data(), s.size());
}

Napi::Object obj(const Napi::Value& v, const char* what) {
    if (!v.IsObject()) type_error(v.Env(), std::string(what) + " must be an object");
    return v.As<Napi::Object>();
}

mailers::address address_from(const Napi::Value& v, const char* field) {
    if (!v.IsString()) type_error(v.Env(), std::string(field) + " must be an address string");
    auto s = v.As<Napi::String>().Utf8Value();
    auto a = mailers::parse_address(s);
    if (!a)
        throw mailers::exception(mailers::errc::invalid_address,
                                 std::string(field) + ": not a valid address: " + s);
    return *a;
}

std::vector<std::string> strings_from(const Napi::Object& o, const char* field) {
    std::vector<std::string> out;
    if (!has(o, field)) return out;
    auto v = o.Get(field);
    if (!v.IsArray()) type_error(o.Env(), std::string(field) + " must be an array of strings");
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
        auto e = a.Get(i);
        if (!e.IsString()) type_error(o.Env(), std::string(field) + " must be an array of strings");
        out.push_back(e.As<Napi::String>().Utf8Value());
    }
    return out;
}

Napi::Array strings_to_js(Napi::Env env, const std::vector<std::string>& v) {
    auto a = Napi::Array::New(env, v.size());
    for (std::size_t i = 0; i < v.size(); ++i) a.Set(static_cast<uint32_t>(i), str(env, v[i]));
    return a;
}

mailers::time_point time_from(const Napi::Value& v, const char* field) {
    double ms;
    if (v.IsDate())
        ms = v.As<Napi::Date>().ValueOf();
    else if (v.IsNumber())
        ms = v.As<Napi::Number>().DoubleValue();
    else
        type_error(v.Env(), std::string(field) + " must be a Date or milliseconds since the epoch");
    if (!std::isfinite(ms)) type_error(v.Env(), std::string(field) + " is not a valid time");
    return mailers::time_point(microseconds(static_cast<std::int64_t>(ms * 1000.0)));
}

std::uint64_t uint_field(const Napi::Object& o, const char* name, std::uint64_t def) {
    auto n = number_field(o, name);
    if (!n) return def;
    if (*n < 0 || *n != std::floor(*n) || *n > 9007199254740991.0)
        type_error(o.Env(), std::string(name) + " must be a non-negative integer");
    return static_cast<std::uint64_t>(*n);
}

seconds seconds_field(const Napi::Object& o, const char* name, seconds def) {
    auto n = number_field(o, name);
    if (!n) return def;
    if (!std::isfinite(*n) || *n < 0)
        type_error(o.Env(), std::string(name) + " must be a non-negative number of seconds");
    return seconds(static_cast<std::int64_t>(*n));
}

std::string addr_to_string(const mailers::address& a) {
    if (a.display_name.empty()) return a.addr_spec();
    return a.display_name + " <" + a.addr_spec() + ">";
}

Napi::Number num(Napi::Env env, double d) {
    return Napi::Number::New(env, d);
}

namespace {

std::vector<mailers::address> addresses_from(const Napi::Object& o, const char* field) {
    std::vector<mailers::address> out;
    if (!has(o, field)) return out;
    auto v = o.Get(field);
    if (v.IsString()) {
        out.push_back(address_from(v, field));
    } else if (v.IsArray()) {
        auto a = v.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); ++i) out.push_back(address_from(a.Get(i), field));
    } else {
        type_error(v.Env(), std::string(field) + " must be an address or an array of them");
    }
    return out;
}

std::string bytes_from(const Napi::Value& v, const char* field) {
    if (v.IsString()) return v.As<Napi::String>().Utf8Value();
    if (v.IsBuffer()) {
        auto b = v.As<Napi::Buffer<char>>();
        return std::string(b.Data(), b.Length());
    }
    type_error(v.Env(), std::string(field) + " must be a string or a Buffer");
}

std::vector<mailers::rate_limit> limits_from(const Napi::Object& o) {
    std::vector<mailers::rate_limit> out;
    if (!has(o, "limits")) return out;
    auto v = o.Get("limits");
    if (!v.IsArray()) type_error(o.Env(), "limits must be an array of {max, seconds, kind}");
    auto a = v.As<Napi::Array>();
    for (uint32_t i = 0; i < a.Length(); ++i) {
        auto l = obj(a.Get(i), "a limit");
        mailers::rate_limit r;
        r.max = uint_field(l, "max", 0);
        r.length = seconds_field(l, "seconds", r.length);
        if (has(l, "kind"))
            r.kind = enum_from<mailers::window_kind, 2>(l.Get("kind"), "limit kind");
        out.push_back(r);
    }
    return out;
}

Napi::Array limits_to_js(Napi::Env env, const std::vector<mailers::rate_limit>& limits) {
    auto a = Napi::Array::New(env, limits.size());
    for (std::size_t i = 0; i < limits.size(); ++i) {
        auto l = Napi::Object::New(env);
        l.Set("max", Napi::Number::New(env, static_cast<double>(limits[i].max)));
        l.Set("seconds", Napi::Number::New(env, static_cast<double>(limits[i].length.count())));
        l.Set("kind", str(env, mailers::to_string(limits[i].kind)));
        a.Set(static_cast<uint32_t>(i), l);
    }
    return a;
}

}  // namespace

bool has(const Napi::Object& o, const char* name) {
    if (!o.Has(name)) return false;
    auto v = o.Get(name);
    return !v.IsUndefined() && !v.IsNull();
}

std::string string_field(const Napi::Object& o, const char* name, const std::string& def) {
    if (!has(o, name)) return def;
    auto v = o.Get(name);
    if (!v.IsString()) type_error(o.Env(), std::string(name) + " must be a string");
    return v.As<Napi::String>().Utf8Value();
}

std::optional<double> number_field(const Napi::Object& o, const char* name) {
    if (!has(o, name)) return std::nullopt;
    auto v = o.Get(name);
    if (!v.IsNumber()) type_error(o.Env(), std::string(name) + " must be a number");
    return v.As<Napi::Number>().DoubleValue();
}

bool bool_field(const Napi::Object& o, const char* name, bool def) {
    if (!has(o, name)) return def;
    auto v = o.Get(name);
    if (!v.IsBoolean()) type_error(o.Env(), std::string(name) + " must be a boolean");
    return v.As<Napi::Boolean>().Value();
}

// --- errors ----------------------------------------------------------------

failure_info from_exception(std::exception_ptr e) {
    failure_info f;
    try {
        std::rethrow_exception(e);
    } catch (const failure_info& x) {
        return x;
    } catch (const mailers::exception& x) {
        f.ec = x.code();
        f.diag = x.diag();
        f.message = x.what();
    } catch (const boost::system::system_error& x) {
        f.ec = x.code();
        f.message = x.what();
    } catch (const Napi::Error& x) {
        f.ec = mailers::errc::invalid_argument;
        f.message = x.Message();
    } catch (const std::exception& x) {
        f.ec = mailers::errc::invalid_argument;
        f.message = x.what();
    } catch (...) {
        f.ec = mailers::errc::invalid_argument;
        f.message = "unknown error";
    }
    return f;
}

Napi::Object to_js(Napi::Env env, const failure_info& f) {
    auto o = Napi::Object::New(env);
    const auto v = f.ec.value();
    std::string category = "system", code = "system_error";
    Napi::Value failure = env.Null();
    if (f.ec.category() == mailers::error_category()) {
        category = "mailers";
        if (const auto n = mailers::to_string(static_cast<mailers::errc>(v)); !n.empty()) code = n;
    } else if (f.ec.category() == mailers::transport_category()) {
        category = "transport";
        if (const auto n = mailers::to_string(static_cast<mailers::transport_errc>(v)); !n.empty())
            code = n;
        failure = str(env, mailers::to_string(mailers::classify(f.ec)));
    } else {
        // A code the library does not know says nothing about whether a
        // message left: classify() calls that unknown_outcome.
        failure = str(env, mailers::to_string(mailers::classify(f.ec)));
    }
    std::string message = f.message;
    if (message.empty()) message = f.diag.message.empty() ? f.ec.message() : f.diag.message;
    o.Set("category", str(env, category));
    o.Set("code", str(env, code));
    o.Set("value", num(env, v));
    o.Set("failure", failure);
    o.Set("message", str(env, message));
    o.Set("diag", to_js(env, f.diag));
    std::optional<mailers::time_point> retry = f.retry_at;
    if (!retry && f.diag.retry_after)
        retry = time_point_cast<microseconds>(system_clock::now()) + *f.diag.retry_after;
    o.Set("retryAt", to_js(env, retry));
    if (f.where) {
        auto w = Napi::Object::New(env);
        w.Set("step", num(env, static_cast<double>(f.where->step)));
        w.Set("field", str(env, f.where->field));
        if (f.where->at) {
            w.Set("part", str(env, mailers::to_string(f.where->at->part)));
            w.Set("line", num(env, static_cast<double>(f.where->at->line)));
            w.Set("column", num(env, static_cast<double>(f.where->at->column)));
        } else {
            w.Set("part", env.Null());
            w.Set("line", env.Null());
            w.Set("column", env.Null());
        }
        w.Set("message", str(env, f.where->at ? f.where->at->message : f.where->message));
        o.Set("templateError", w);
    }
    return o;
}

// --- to JS ---------------------------------------------------------------------

Napi::Value to_js(Napi::Env env, mailers::time_point t) {
    return Napi::Date::New(env, static_cast<double>(t.time_since_epoch().count()) / 1000.0);
}

Napi::Value to_js(Napi::Env env, const std::optional<mailers::time_point>& t) {
    if (!t) return env.Null();
    return to_js(env, *t);
}

Napi::Object to_js(Napi::Env env, const mailers::diagnostics& d) {
    auto o = Napi::Object::New(env);
    o.Set("message", str(env, d.message));
    o.Set("providerReply", str(env, d.provider_reply));
    o.Set("enhancedStatus", str(env, d.enhanced_status));
    o.Set("status", num(env, d.status));
    o.Set("providerCode", str(env, d.provider_code));
    o.Set("requestId", str(env, d.request_id));
    o.Set("retryAfter", d.retry_after
                            ? Napi::Value(num(env, static_cast<double>(d.retry_after->count())))
                            : env.Null());
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::send_result& r) {
    auto o = Napi::Object::New(env);
    o.Set("sendId", str(env, r.send_id));
    o.Set("state", r.state ? Napi::Value(str(env, mailers::to_string(*r.state))) : env.Null());
    o.Set("mailbox", str(env, r.mailbox));
    o.Set("provider", str(env, r.provider));
    o.Set("messageId", str(env, r.message_id));
    o.Set("providerMessageId", str(env, r.provider_message_id));
    o.Set("attempts", num(env, r.attempts));
    o.Set("duplicate", Napi::Boolean::New(env, r.duplicate));
    o.Set("retryAt", to_js(env, r.retry_at));
    o.Set("diag", to_js(env, r.diag));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::event& e) {
    auto o = Napi::Object::New(env);
    o.Set("type", str(env, mailers::to_string(e.type)));
    o.Set("at", to_js(env, e.at));
    o.Set("sendId", str(env, e.send_id));
    o.Set("idempotencyKey", str(env, e.idempotency_key));
    o.Set("campaign", str(env, e.campaign));
    o.Set("sequence", str(env, e.sequence));
    o.Set("enrollment", num(env, static_cast<double>(e.enrollment)));
    o.Set("step", num(env, e.step));
    o.Set("mailbox", str(env, e.mailbox));
    o.Set("pool", str(env, e.pool));
    o.Set("provider", str(env, e.provider));
    o.Set("recipient", str(env, e.recipient));
    o.Set("providerMessageId", str(env, e.provider_message_id));
    o.Set("messageId", str(env, e.message_id));
    o.Set("bounce", str(env, mailers::to_string(e.bounce)));
    o.Set("detail", str(env, e.detail));
    o.Set("retryAt", to_js(env, e.retry_at));
    o.Set("providerEvent", str(env, e.provider_event));
    o.Set("providerEventId", str(env, e.provider_event_id));
    o.Set("dedupKey", str(env, e.dedup_key));
    o.Set("diagnosticCode", str(env, e.diagnostic_code));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::mailbox_config& m) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, m.id));
    o.Set("from", str(env, addr_to_string(m.from)));
    o.Set("provider", str(env, m.provider));
    o.Set("limits", limits_to_js(env, m.limits));
    o.Set("maxRecipientsPerMessage", num(env, m.max_recipients_per_message));
    auto w = Napi::Object::New(env);
    w.Set("start", num(env, m.warmup.start));
    w.Set("step", num(env, m.warmup.step));
    w.Set("target", num(env, m.warmup.target));
    w.Set("startDate", to_js(env, m.warmup.start_date));
    o.Set("warmup", w);
    o.Set("timeZone", str(env, m.time_zone));
    auto win = Napi::Object::New(env);
    win.Set("startHour", num(env, m.window.start_hour));
    win.Set("endHour", num(env, m.window.end_hour));
    win.Set("weekdays", num(env, m.window.weekdays));
    o.Set("window", win);
    o.Set("minGap", num(env, static_cast<double>(m.min_gap.count())));
    o.Set("jitter", num(env, static_cast<double>(m.jitter.count())));
    o.Set("priority", num(env, m.priority));
    o.Set("weight", num(env, m.weight));
    o.Set("state", str(env, mailers::to_string(m.state)));
    auto b = Napi::Object::New(env);
    b.Set("failureThreshold", num(env, m.breaker.failure_threshold));
    b.Set("coolDown", num(env, static_cast<double>(m.breaker.cool_down.count())));
    b.Set("maxCoolDown", num(env, static_cast<double>(m.breaker.max_cool_down.count())));
    o.Set("breaker", b);
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::mailbox_status& s) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, s.id));
    o.Set("state", str(env, mailers::to_string(s.state)));
    o.Set("health", str(env, mailers::to_string(s.health)));
    o.Set("sentToday", num(env, static_cast<double>(s.sent_today)));
    o.Set("sentThisHour", num(env, static_cast<double>(s.sent_this_hour)));
    o.Set("effectiveDailyCap",
          s.effective_daily_cap ? Napi::Value(num(env, static_cast<double>(*s.effective_daily_cap)))
                                : env.Null());
    o.Set("blocked", str(env, mailers::to_string(s.blocked)));
    o.Set("nextEligible", to_js(env, s.next_eligible));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::pool_config& p) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, p.id));
    auto a = Napi::Array::New(env, p.mailboxes.size());
    for (std::size_t i = 0; i < p.mailboxes.size(); ++i)
        a.Set(static_cast<uint32_t>(i), str(env, p.mailboxes[i]));
    o.Set("mailboxes", a);
    auto pol = Napi::Object::New(env);
    pol.Set("kind", str(env, mailers::to_string(p.policy.kind)));
    pol.Set("maxAttempts", num(env, p.policy.max_attempts));
    pol.Set("stickySender", Napi::Boolean::New(env, p.policy.sticky_sender));
    o.Set("policy", pol);
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::quota& q) {
    auto o = Napi::Object::New(env);
    o.Set("scope", str(env, mailers::to_string(q.scope)));
    o.Set("key", str(env, q.key));
    o.Set("limits", limits_to_js(env, q.limits));
    o.Set("timeZone", str(env, q.time_zone));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::suppression_entry& e) {
    auto o = Napi::Object::New(env);
    o.Set("kind", str(env, mailers::to_string(e.kind)));
    o.Set("value", str(env, e.value));
    o.Set("reason", str(env, mailers::to_string(e.reason)));
    o.Set("source", str(env, e.source));
    o.Set("createdAt", to_js(env, e.created_at));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::pause_info& p) {
    auto o = Napi::Object::New(env);
    o.Set("scope", str(env, mailers::to_string(p.target.scope)));
    o.Set("id", str(env, p.target.id));
    o.Set("reason", str(env, p.reason));
    o.Set("actor", str(env, p.actor));
    o.Set("since", to_js(env, p.since));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::stored_provider& p) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, p.id));
    o.Set("dsn", str(env, p.dsn));
    o.Set("createdAt", to_js(env, p.created_at));
    o.Set("updatedAt", to_js(env, p.updated_at));
    o.Set("active", Napi::Boolean::New(env, p.active));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::audit_record& r) {
    auto o = Napi::Object::New(env);
    o.Set("seq", num(env, static_cast<double>(r.seq)));
    o.Set("at", to_js(env, r.at));
    o.Set("actor", str(env, r.actor));
    o.Set("action", str(env, r.action));
    o.Set("resourceType", str(env, r.resource_type));
    o.Set("resourceId", str(env, r.resource_id));
    o.Set("before", str(env, r.before));
    o.Set("after", str(env, r.after));
    o.Set("prevHash", str(env, r.prev_hash));
    o.Set("hash", str(env, r.hash));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::audit_head& h) {
    auto o = Napi::Object::New(env);
    o.Set("seq", num(env, static_cast<double>(h.seq)));
    o.Set("hash", str(env, h.hash));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::engine_stats& s) {
    auto o = Napi::Object::New(env);
    auto set = [&](const char* n, std::uint64_t v) { o.Set(n, num(env, static_cast<double>(v))); };
    set("accepted", s.accepted);
    set("failed", s.failed);
    set("unknown", s.unknown);
    set("suppressed", s.suppressed);
    set("noCapacity", s.no_capacity);
    set("paused", s.paused);
    set("rejected", s.rejected);
    set("duplicates", s.duplicates);
    set("failovers", s.failovers);
    set("commits", s.commits);
    set("committedOps", s.committed_ops);
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::queued_send& q) {
    auto o = Napi::Object::New(env);
    o.Set("id", num(env, static_cast<double>(q.id)));
    o.Set("idempotencyKey", str(env, q.idempotency_key));
    o.Set("pool", str(env, q.pool));
    o.Set("mailbox", str(env, q.mailbox));
    o.Set("origin", str(env, q.origin));
    o.Set("enqueuedAt", to_js(env, q.enqueued_at));
    o.Set("notBefore", to_js(env, q.not_before));
    o.Set("dueAt", to_js(env, q.due_at));
    o.Set("state", str(env, mailers::to_string(q.state)));
    o.Set("waitReason", str(env, q.wait_reason));
    o.Set("checks", num(env, q.checks));
    o.Set("sendId", str(env, q.send_id ? std::to_string(q.send_id) : std::string()));
    o.Set("detail", str(env, q.detail));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::queue_summary& q) {
    auto o = Napi::Object::New(env);
    o.Set("waiting", num(env, static_cast<double>(q.waiting)));
    o.Set("claimed", num(env, static_cast<double>(q.claimed)));
    o.Set("done", num(env, static_cast<double>(q.done)));
    o.Set("cancelled", num(env, static_cast<double>(q.cancelled)));
    auto by = Napi::Object::New(env);
    for (const auto& [reason, n] : q.waiting_by_reason)
        by.Set(reason, num(env, static_cast<double>(n)));
    o.Set("waitingByReason", by);
    o.Set("nextDue", to_js(env, q.next_due));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::webhook_result& r) {
    auto o = Napi::Object::New(env);
    o.Set("httpStatus", num(env, r.http_status));
    o.Set("outcome", str(env, mailers::to_string(r.outcome)));
    o.Set("reason", str(env, r.reason));
    auto ev = Napi::Array::New(env, r.events.size());
    for (std::size_t i = 0; i < r.events.size(); ++i)
        ev.Set(static_cast<uint32_t>(i), to_js(env, r.events[i]));
    o.Set("events", ev);
    o.Set("confirmUrl", str(env, r.confirm_url));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::ingest_result& r) {
    auto o = to_js(env, r.webhook);
    o.Set("suppressed", num(env, static_cast<double>(r.suppressed)));
    o.Set("alreadySuppressed", num(env, static_cast<double>(r.already_suppressed)));
    o.Set("duplicates", num(env, static_cast<double>(r.duplicates)));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::unsubscribe_result& r) {
    auto o = Napi::Object::New(env);
    o.Set("status", str(env, mailers::to_string(r.status)));
    o.Set("recipient", str(env, r.recipient));
    o.Set("sendId", str(env, r.send_id));
    o.Set("suppressed", Napi::Boolean::New(env, r.suppressed));
    o.Set("already", Napi::Boolean::New(env, r.already));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::outbound& m) {
    auto o = Napi::Object::New(env);
    o.Set("mailFrom", str(env, m.env.mail_from));
    auto rc = Napi::Array::New(env, m.env.rcpt_to.size());
    for (std::size_t i = 0; i < m.env.rcpt_to.size(); ++i)
        rc.Set(static_cast<uint32_t>(i), str(env, m.env.rcpt_to[i]));
    o.Set("rcptTo", rc);
    o.Set("from", str(env, addr_to_string(m.msg.from)));
    o.Set("subject", str(env, m.msg.subject));
    o.Set("text", str(env, m.msg.text));
    o.Set("html", str(env, m.msg.html));
    o.Set("messageId", str(env, m.msg.message_id));
    o.Set("inReplyTo", str(env, m.msg.in_reply_to));
    o.Set("references", strings_to_js(env, m.msg.references));
    o.Set("raw", str(env, m.raw));
    o.Set("mailbox", str(env, m.mailbox_id));
    o.Set("sendId", str(env, m.send_id));
    auto h = Napi::Array::New(env, m.msg.headers.size());
    for (std::size_t i = 0; i < m.msg.headers.size(); ++i) {
        auto f = Napi::Object::New(env);
        f.Set("name", str(env, m.msg.headers[i].name));
        f.Set("value", str(env, m.msg.headers[i].value));
        h.Set(static_cast<uint32_t>(i), f);
    }
    o.Set("headers", h);
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::suppression_verify_report& r) {
    auto o = Napi::Object::New(env);
    o.Set("ok", Napi::Boolean::New(env, r.ok));
    o.Set("auditChainOk", Napi::Boolean::New(env, r.audit_chain_ok));
    o.Set("brokenAuditSeq", num(env, static_cast<double>(r.broken_audit_seq)));
    o.Set("rows", num(env, static_cast<double>(r.rows)));
    o.Set("changes", num(env, static_cast<double>(r.changes)));
    return o;
}

// --- from JS -------------------------------------------------------------------

mailers::principal principal_from(const Napi::Value& v, const mailers::principal& fallback) {
    if (v.IsUndefined() || v.IsNull()) return fallback;
    if (v.IsString()) return {v.As<Napi::String>().Utf8Value(), {}};
    auto o = obj(v, "actor");
    return {string_field(o, "id"), string_field(o, "displayName")};
}

mailers::send_request send_request_from(const Napi::Value& v, const mailers::principal& actor) {
    auto o = obj(v, "a send request");
    mailers::send_request r;
    r.pool = string_field(o, "pool");
    r.mailbox = string_field(o, "mailbox");
    if (!has(o, "to")) type_error(o.Env(), "to is required");
    r.to = address_from(o.Get("to"), "to");
    r.cc = addresses_from(o, "cc");
    r.bcc = addresses_from(o, "bcc");
    if (has(o, "replyTo")) r.reply_to = address_from(o.Get("replyTo"), "replyTo");
    if (has(o, "raw")) r.raw = bytes_from(o.Get("raw"), "raw");
    r.subject = string_field(o, "subject");
    r.text = string_field(o, "text");
    r.html = string_field(o, "html");
    if (has(o, "headers")) {
        auto h = o.Get("headers");
        if (h.IsArray()) {
            auto a = h.As<Napi::Array>();
            for (uint32_t i = 0; i < a.Length(); ++i) {
                auto f = obj(a.Get(i), "a header");
                r.headers.push_back({string_field(f, "name"), string_field(f, "value")});
            }
        } else {
            auto ho = obj(h, "headers");
            auto names = ho.GetPropertyNames();
            for (uint32_t i = 0; i < names.Length(); ++i) {
                auto n = names.Get(i).As<Napi::String>().Utf8Value();
                r.headers.push_back({n, string_field(ho, n.c_str())});
            }
        }
    }
    if (has(o, "attachments")) {
        auto av = o.Get("attachments");
        if (!av.IsArray()) type_error(o.Env(), "attachments must be an array");
        auto a = av.As<Napi::Array>();
        for (uint32_t i = 0; i < a.Length(); ++i) {
            auto at = obj(a.Get(i), "an attachment");
            mailers::attachment x;
            x.filename = string_field(at, "filename");
            x.content_type = string_field(at, "contentType");
            if (has(at, "data")) x.data = bytes_from(at.Get("data"), "attachment data");
            x.content_id = string_field(at, "contentId");
            r.attachments.push_back(std::move(x));
        }
    }
    if (has(o, "unsubscribe")) {
        auto u = obj(o.Get("unsubscribe"), "unsubscribe");
        r.unsubscribe =
            mailers::list_unsubscribe{string_field(u, "url"), string_field(u, "mailto")};
    }
    r.in_reply_to = string_field(o, "inReplyTo");
    r.references = strings_from(o, "references");
    r.idempotency_key = string_field(o, "idempotencyKey");
    r.actor = principal_from(o.Get("actor"), actor);
    return r;
}

mailers::enqueue_options enqueue_options_from(const Napi::Value& v) {
    mailers::enqueue_options opts;
    if (v.IsUndefined() || v.IsNull()) return opts;
    auto o = obj(v, "enqueue options");
    if (has(o, "notBefore")) opts.not_before = time_from(o.Get("notBefore"), "notBefore");
    opts.origin = string_field(o, "origin", opts.origin);
    return opts;
}

mailers::mailbox_config mailbox_from(const Napi::Value& v) {
    auto o = obj(v, "a mailbox");
    mailers::mailbox_config m;
    m.id = string_field(o, "id");
    if (!has(o, "from")) type_error(o.Env(), "from is required");
    m.from = address_from(o.Get("from"), "from");
    m.provider = string_field(o, "provider");
    m.limits = limits_from(o);
    m.max_recipients_per_message =
        static_cast<std::uint32_t>(uint_field(o, "maxRecipientsPerMessage", 0));
    if (has(o, "warmup")) {
        auto w = obj(o.Get("warmup"), "warmup");
        m.warmup.start = static_cast<std::uint32_t>(uint_field(w, "start", 0));
        m.warmup.step = static_cast<std::uint32_t>(uint_field(w, "step", 0));
        m.warmup.target = static_cast<std::uint32_t>(uint_field(w, "target", 0));
        if (has(w, "startDate"))
            m.warmup.start_date = time_from(w.Get("startDate"), "warmup.startDate");
    }
    m.time_zone = string_field(o, "timeZone", m.time_zone);
    if (has(o, "window")) {
        auto w = obj(o.Get("window"), "window");
        m.window.start_hour = static_cast<std::uint8_t>(uint_field(w, "startHour", 0));
        m.window.end_hour = static_cast<std::uint8_t>(uint_field(w, "endHour", 24));
        m.window.weekdays = static_cast<std::uint8_t>(uint_field(w, "weekdays", 0x7f));
    }
    m.min_gap = seconds_field(o, "minGap", m.min_gap);
    m.jitter = seconds_field(o, "jitter", m.jitter);
    if (auto p = number_field(o, "priority")) m.priority = static_cast<std::int32_t>(*p);
    m.weight = static_cast<std::uint32_t>(uint_field(o, "weight", 1));
    if (has(o, "state")) m.state = enum_from<mailers::mailbox_state, 3>(o.Get("state"), "state");
    if (has(o, "breaker")) {
        auto b = obj(o.Get("breaker"), "breaker");
        m.breaker.failure_threshold =
            static_cast<std::uint32_t>(uint_field(b, "failureThreshold", 5));
        m.breaker.cool_down = seconds_field(b, "coolDown", m.breaker.cool_down);
        m.breaker.max_cool_down = seconds_field(b, "maxCoolDown", m.breaker.max_cool_down);
    }
    if (has(o, "preset")) {
        auto p = string_field(o, "preset");
        if (p == "google_workspace")
            m.apply(mailers::presets::google_workspace());
        else if (p == "microsoft_365")
            m.apply(mailers::presets::microsoft_365());
        else
            type_error(o.Env(), "preset must be one of: google_workspace, microsoft_365");
    }
    return m;
}

mailers::pool_config pool_from(const Napi::Value& v) {
    auto o = obj(v, "a pool");
    mailers::pool_config p;
    p.id = string_field(o, "id");
    p.mailboxes = strings_from(o, "mailboxes");
    if (has(o, "policy")) {
        auto pol = obj(o.Get("policy"), "policy");
        if (has(pol, "kind"))
            p.policy.kind = enum_from<mailers::rotation_kind, 3>(pol.Get("kind"), "policy.kind");
        p.policy.max_attempts = static_cast<std::uint32_t>(uint_field(pol, "maxAttempts", 3));
        p.policy.sticky_sender = bool_field(pol, "stickySender", false);
    }
    return p;
}

mailers::quota_scope quota_scope_from(const Napi::Value& v) {
    return enum_from<mailers::quota_scope, 3>(v, "scope");
}

mailers::quota quota_from(const Napi::Value& v) {
    auto o = obj(v, "a quota");
    mailers::quota q;
    q.scope = quota_scope_from(o.Get("scope"));
    q.key = string_field(o, "key");
    q.limits = limits_from(o);
    q.time_zone = string_field(o, "timeZone");
    return q;
}

mailers::pause_target pause_target_from(const Napi::Value& v) {
    mailers::pause_target t;
    if (v.IsUndefined() || v.IsNull()) return t;
    auto o = obj(v, "a pause target");
    t.scope = pause_scope_from(o.Get("scope"), t.scope);
    t.id = string_field(o, "id");
    return t;
}

mailers::pause_scope pause_scope_from(const Napi::Value& v, mailers::pause_scope def) {
    if (v.IsUndefined() || v.IsNull()) return def;
    return enum_from<mailers::pause_scope, 5>(v, "scope");
}

mailers::count_scope count_scope_from(const Napi::Value& v) {
    return enum_from<mailers::count_scope, 5>(v, "scope");
}

mailers::count_day day_from(const Napi::Value& v, const char* field) {
    return mailers::utc_day(time_from(v, field));
}

// A count field: a non-negative integer no larger than T holds.
template <class T>
static T count_field(const Napi::Object& o, const char* name, T def) {
    auto n = uint_field(o, name, def);
    if (n > std::numeric_limits<T>::max())
        type_error(o.Env(), std::string(name) + " must be at most " +
                                std::to_string(std::numeric_limits<T>::max()));
    return static_cast<T>(n);
}

mailers::soft_bounce_policy soft_bounce_policy_from(const Napi::Value& v) {
    auto o = obj(v, "a soft-bounce policy");
    mailers::soft_bounce_policy p;
    p.threshold = count_field<std::uint32_t>(o, "threshold", p.threshold);
    p.window_days = count_field<std::uint32_t>(o, "windowDays", p.window_days);
    return p;
}

mailers::pause_rule pause_rule_from(const Napi::Value& v) {
    auto o = obj(v, "a pause rule");
    mailers::pause_rule r;
    r.id = string_field(o, "id");
    r.scope = pause_scope_from(o.Get("scope"), r.scope);
    r.target = string_field(o, "target");
    if (has(o, "metric")) r.metric = enum_from<mailers::rule_metric, 4>(o.Get("metric"), "metric");
    r.window_days = count_field<std::uint32_t>(o, "windowDays", r.window_days);
    r.window_sends = count_field<std::uint64_t>(o, "windowSends", r.window_sends);
    if (auto rate = number_field(o, "maxRate")) r.max_rate = *rate;
    r.min_volume = count_field<std::uint64_t>(o, "minVolume", r.min_volume);
    r.grace_days = count_field<std::uint32_t>(o, "graceDays", r.grace_days);
    return r;
}

// The library's snake_case names as JS field names.
static std::string camel(std::string_view snake) {
    std::string out;
    bool up = false;
    for (char c : snake) {
        if (c == '_') {
            up = true;
            continue;
        }
        out += up ? static_cast<char>(std::toupper(static_cast<unsigned char>(c))) : c;
        up = false;
    }
    return out;
}

Napi::Object to_js(Napi::Env env, const mailers::daily_count& c) {
    auto o = Napi::Object::New(env);
    o.Set("day", to_js(env, mailers::day_start(c.day)));
    for (std::size_t i = 0; i < mailers::count_metric_count; ++i)
        o.Set(camel(mailers::to_string(static_cast<mailers::count_metric>(i))),
              num(env, static_cast<double>(c.n[i])));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::soft_bounce_policy& p) {
    auto o = Napi::Object::New(env);
    o.Set("threshold", num(env, p.threshold));
    o.Set("windowDays", num(env, p.window_days));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::pause_rule& r) {
    auto o = Napi::Object::New(env);
    o.Set("id", str(env, r.id));
    o.Set("scope", str(env, mailers::to_string(r.scope)));
    o.Set("target", str(env, r.target));
    o.Set("metric", str(env, mailers::to_string(r.metric)));
    o.Set("windowDays", num(env, r.window_days));
    o.Set("windowSends", num(env, static_cast<double>(r.window_sends)));
    o.Set("maxRate", num(env, r.max_rate));
    o.Set("minVolume", num(env, static_cast<double>(r.min_volume)));
    o.Set("graceDays", num(env, r.grace_days));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::rule_firing& f) {
    auto o = Napi::Object::New(env);
    o.Set("rule", str(env, f.rule));
    auto t = Napi::Object::New(env);
    t.Set("scope", str(env, mailers::to_string(f.target.scope)));
    t.Set("id", str(env, f.target.id));
    o.Set("target", t);
    o.Set("count", num(env, static_cast<double>(f.count)));
    o.Set("volume", num(env, static_cast<double>(f.volume)));
    o.Set("rate", num(env, f.rate));
    o.Set("fromDay", to_js(env, mailers::day_start(f.from_day)));
    o.Set("toDay", to_js(env, mailers::day_start(f.to_day)));
    return o;
}

mailers::suppression_kind suppression_kind_from(const Napi::Value& v) {
    if (v.IsUndefined() || v.IsNull()) return mailers::suppression_kind::address;
    return enum_from<mailers::suppression_kind, 2>(v, "kind");
}

mailers::suppression_reason suppression_reason_from(const Napi::Value& v) {
    if (v.IsUndefined() || v.IsNull()) return mailers::suppression_reason::manual;
    return enum_from<mailers::suppression_reason, 5>(v, "reason");
}

mailers::role role_from(const Napi::Value& v) {
    auto o = obj(v, "a role");
    mailers::role r;
    r.id = string_field(o, "id");
    for (const auto& p : strings_from(o, "permissions")) {
        auto parsed = mailers::parse_permission(p);
        if (!parsed) type_error(o.Env(), "unknown permission: " + p);
        r.permissions.push_back(*parsed);
    }
    return r;
}

mailers::access_grant grant_from(const Napi::Value& v) {
    auto o = obj(v, "a grant");
    mailers::access_grant g;
    g.principal = string_field(o, "principal");
    g.role = string_field(o, "role");
    if (has(o, "scope")) {
        auto s = obj(o.Get("scope"), "scope");
        if (has(s, "kind"))
            g.scope.of = enum_from<mailers::access_scope::kind, 5>(s.Get("kind"), "scope.kind");
        g.scope.id = string_field(s, "id");
    }
    return g;
}

mailers::retention_policy retention_policy_from(const Napi::Value& v) {
    auto o = obj(v, "a retention policy");
    mailers::retention_policy p;
    p.sends = seconds_field(o, "sends", p.sends);
    p.webhook_deliveries = seconds_field(o, "webhookDeliveries", p.webhook_deliveries);
    p.audit = seconds_field(o, "audit", p.audit);
    p.counts = seconds_field(o, "counts", p.counts);
    return p;
}

Napi::Object to_js(Napi::Env env, const mailers::access_policy& p) {
    auto roles = Napi::Array::New(env, p.roles.size());
    for (std::size_t i = 0; i < p.roles.size(); ++i) {
        std::vector<std::string> names;
        for (auto pm : p.roles[i].permissions) names.emplace_back(mailers::to_string(pm));
        auto r = Napi::Object::New(env);
        r.Set("id", str(env, p.roles[i].id));
        r.Set("permissions", strings_to_js(env, names));
        roles.Set(static_cast<uint32_t>(i), r);
    }
    auto grants = Napi::Array::New(env, p.grants.size());
    for (std::size_t i = 0; i < p.grants.size(); ++i) {
        const auto& g = p.grants[i];
        auto scope = Napi::Object::New(env);
        scope.Set("kind", str(env, mailers::to_string(g.scope.of)));
        scope.Set("id", str(env, g.scope.id));
        auto o = Napi::Object::New(env);
        o.Set("principal", str(env, g.principal));
        o.Set("role", str(env, g.role));
        o.Set("scope", scope);
        grants.Set(static_cast<uint32_t>(i), o);
    }
    auto o = Napi::Object::New(env);
    o.Set("enabled", Napi::Boolean::New(env, p.enabled));
    o.Set("roles", roles);
    o.Set("grants", grants);
    return o;
}

namespace {
Napi::Object histogram_to_js(Napi::Env env, const mailers::latency_histogram& h) {
    auto counts = Napi::Array::New(env, h.counts.size());
    for (std::size_t i = 0; i < h.counts.size(); ++i)
        counts.Set(static_cast<uint32_t>(i), num(env, static_cast<double>(h.counts[i])));
    auto o = Napi::Object::New(env);
    o.Set("counts", counts);
    o.Set("sumUs", num(env, static_cast<double>(h.sum_us)));
    o.Set("total", num(env, static_cast<double>(h.total())));
    o.Set("p50Us", num(env, static_cast<double>(h.quantile_us(0.5))));
    o.Set("p99Us", num(env, static_cast<double>(h.quantile_us(0.99))));
    return o;
}
}  // namespace

Napi::Object to_js(Napi::Env env, const mailers::pipeline_latencies& l) {
    auto o = Napi::Object::New(env);
    o.Set("decide", histogram_to_js(env, l.decide));
    o.Set("reserve", histogram_to_js(env, l.reserve));
    o.Set("handoff", histogram_to_js(env, l.handoff));
    o.Set("record", histogram_to_js(env, l.record));
    o.Set("total", histogram_to_js(env, l.total));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::erasure_report& r) {
    const auto& c = r.erased;
    auto erased = Napi::Object::New(env);
    auto set = [&](const char* n, std::uint64_t v) {
        erased.Set(n, num(env, static_cast<double>(v)));
    };
    set("suppressionRows", c.suppression_rows);
    set("sends", c.sends);
    set("queued", c.queued);
    set("queueCancelled", c.queue_cancelled);
    set("enrollments", c.enrollments);
    set("webhookDeliveries", c.webhook_deliveries);
    set("recordedKeys", c.recorded_keys);
    set("softBounces", c.soft_bounces);
    auto o = Napi::Object::New(env);
    o.Set("hash", str(env, r.hash));
    o.Set("at", to_js(env, r.at));
    o.Set("erased", erased);
    o.Set("wasSuppressed", Napi::Boolean::New(env, r.was_suppressed));
    o.Set("auditSeq", num(env, static_cast<double>(r.audit_seq)));
    return o;
}

Napi::Object to_js(Napi::Env env, const mailers::retention_report& r) {
    auto o = Napi::Object::New(env);
    o.Set("at", to_js(env, r.at));
    o.Set("sends", num(env, static_cast<double>(r.sends)));
    o.Set("webhookDeliveries", num(env, static_cast<double>(r.webhook_deliveries)));
    o.Set("auditRecords", num(env, static_cast<double>(r.audit_records)));
    o.Set("counts", num(env, static_cast<double>(r.counts)));
    o.Set("anchorSeq", num(env, static_cast<double>(r.anchor.seq)));
    o.Set("auditSeq", num(env, static_cast<double>(r.audit_seq)));
    return o;
}

mailers::webhook_provider webhook_provider_from(const Napi::Value& v) {
    return enum_from<mailers::webhook_provider, 4>(v, "provider");
}

mailers::webhook_params webhook_params_from(const Napi::Value& v) {
    mailers::webhook_params p;
    if (v.IsUndefined() || v.IsNull()) return p;
    auto o = obj(v, "webhook options");
    p.verify = bool_field(o, "verify", true);
    p.keep_raw = bool_field(o, "keepRaw", true);
    if (has(o, "now")) p.now = time_from(o.Get("now"), "now");
    p.mailgun.signing_key = string_field(o, "mailgunSigningKey");
    p.sendgrid.public_key = string_field(o, "sendgridPublicKey");
    p.postmark.basic_user = string_field(o, "postmarkBasicUser");
    p.postmark.basic_password = string_field(o, "postmarkBasicPassword");
    p.postmark.header_name = string_field(o, "postmarkHeaderName");
    p.postmark.header_value = string_field(o, "postmarkHeaderValue");
    return p;
}

mailers::webhook_request owned_webhook_request::view() {
    header_views.clear();
    for (const auto& [n, v] : headers) header_views.push_back({n, v});
    return {method, header_views, body};
}

owned_webhook_request webhook_request_from(const Napi::Value& v) {
    if (!v.IsObject()) type_error(v.Env(), "request must be { method, headers, body }");
    auto ro = v.As<Napi::Object>();
    owned_webhook_request r;
    r.method = string_field(ro, "method", "POST");
    if (has(ro, "body")) {
        auto b = ro.Get("body");
        if (b.IsBuffer())
            r.body.assign(b.As<Napi::Buffer<char>>().Data(), b.As<Napi::Buffer<char>>().Length());
        else if (b.IsString())
            r.body = b.As<Napi::String>().Utf8Value();
        else
            type_error(v.Env(), "body must be a string or a Buffer");
    }
    if (has(ro, "headers")) {
        auto h = obj(ro.Get("headers"), "headers");
        auto names = h.GetPropertyNames();
        for (uint32_t i = 0; i < names.Length(); ++i) {
            auto n = names.Get(i).As<Napi::String>().Utf8Value();
            auto hv = h.Get(n);
            // Node gives repeated headers as arrays; the first counts.
            if (hv.IsArray()) hv = hv.As<Napi::Array>().Get(0u);
            r.headers.emplace_back(n, hv.ToString().Utf8Value());
        }
    }
    return r;
}

mailers::audit_head audit_head_from(const Napi::Value& v) {
    auto o = obj(v, "a checkpoint");
    return {uint_field(o, "seq", 0), string_field(o, "hash")};
}

}  // namespace mailers_node
