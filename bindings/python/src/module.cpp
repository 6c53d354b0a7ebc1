// The `mailers._mailers` extension: a thin layer over mailers::engine that
// speaks dicts, strings and integers. The Python package (mailers/) turns
// them into dataclasses, datetimes and exceptions; keeping the typed face in
// Python keeps this file small and the stubs honest.
//
// Threads: each core owns an io_context run by one thread of its own. The
// GIL is released around every call into the engine. Python is entered from
// that thread only through handlers posted to the io_context, so the engine
// never holds one of its locks while Python code runs, and a blocking call
// made from Python never waits on a thread that waits for the GIL.
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <future>
#include <limits>
#include <mailers.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/webhook_signing.hpp>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <sstream>
#include <thread>
#include <tuple>

namespace py = pybind11;

// Python 3.13 made the finalization check public under a new name.
#if PY_VERSION_HEX >= 0x030D0000
#define MAILERS_PY_FINALIZING() Py_IsFinalizing()
#else
#define MAILERS_PY_FINALIZING() _Py_IsFinalizing()
#endif
namespace asio = boost::asio;
using namespace mailers;

namespace {

// --- values ---------------------------------------------------------------

std::int64_t to_us(time_point t) {
    return t.time_since_epoch().count();
}
time_point from_us(std::int64_t us) {
    return time_point{duration{us}};
}

py::object opt_us(const std::optional<time_point>& t) {
    return t ? py::object(py::int_(to_us(*t))) : py::object(py::none());
}

// Enum names through the library's own to_string, so they never drift.
template <typename E>
E parse_enum(const std::string& s, int count, const char* what) {
    for (int i = 0; i < count; ++i)
        if (to_string(static_cast<E>(i)) == s) return static_cast<E>(i);
    throw exception(make_error_code(errc::invalid_argument),
                    std::string("unknown ") + what + " '" + s + "'");
}

template <typename T>
T get(const py::dict& d, const char* key, T fallback) {
    if (!d.contains(key)) return fallback;
    py::object v = d[key];
    if (v.is_none()) return fallback;
    return v.cast<T>();
}

// A count read from Python: a negative or oversized one is refused as
// InvalidArgument naming the field, as the engine refuses one out of range.
template <typename T>
T get_count(const py::dict& d, const char* key, T fallback) {
    auto v = get<py::object>(d, key, py::none());
    if (v.is_none()) return fallback;
    int overflow = 0;
    const long long n = PyLong_AsLongLongAndOverflow(v.cast<py::int_>().ptr(), &overflow);
    constexpr auto max = std::numeric_limits<T>::max();
    if (overflow != 0 || n < 0 || static_cast<unsigned long long>(n) > max)
        throw exception(make_error_code(errc::invalid_argument),
                        std::string(key) + " must be between 0 and " + std::to_string(max));
    return static_cast<T>(n);
}

address parse_addr(const std::string& text) {
    auto a = parse_address(text);
    if (!a)
        throw exception(make_error_code(errc::invalid_address),
                        "'" + text + "' is not a valid address");
    return *a;
}

std::string format_addr(const address& a) {
    if (a.display_name.empty()) return a.addr_spec();
    // Quoted only when an RFC 5322 special would otherwise end the phrase.
    if (a.display_name.find_first_of("()<>[]:;@\\,.\"") == std::string::npos)
        return a.display_name + " <" + a.addr_spec() + ">";
    std::string name;
    for (char c : a.display_name) {
        if (c == '"' || c == '\\') name += '\\';
        name += c;
    }
    return "\"" + name + "\" <" + a.addr_spec() + ">";
}

principal to_principal(const py::object& o) {
    if (o.is_none()) return principal::system();
    auto t = o.cast<py::tuple>();
    return {t[0].cast<std::string>(), t[1].cast<std::string>()};
}

std::vector<rate_limit> to_limits(const py::list& l) {
    std::vector<rate_limit> out;
    for (auto item : l) {
        auto d = item.cast<py::dict>();
        rate_limit r;
        r.max = get<std::uint64_t>(d, "max", 0);
        r.length = std::chrono::seconds(get<std::int64_t>(d, "length", 86400));
        r.kind = parse_enum<window_kind>(get<std::string>(d, "kind", "rolling"), 2, "window kind");
        out.push_back(r);
    }
    return out;
}

py::list from_limits(const std::vector<rate_limit>& limits) {
    py::list out;
    for (const auto& r : limits)
        out.append(py::dict(py::arg("max") = r.max, py::arg("length") = r.length.count(),
                            py::arg("kind") = std::string(to_string(r.kind))));
    return out;
}

mailbox_config to_mailbox(const py::dict& d) {
    mailbox_config m;
    m.id = get<std::string>(d, "id", "");
    m.from = parse_addr(get<std::string>(d, "address", ""));
    m.provider = get<std::string>(d, "provider", "");
    m.limits = to_limits(get<py::list>(d, "limits", py::list()));
    m.max_recipients_per_message = get<std::uint32_t>(d, "max_recipients_per_message", 0);
    if (d.contains("warmup") && !d["warmup"].is_none()) {
        auto w = d["warmup"].cast<py::dict>();
        m.warmup = {get<std::uint32_t>(w, "start", 0), get<std::uint32_t>(w, "step", 0),
                    get<std::uint32_t>(w, "target", 0),
                    from_us(get<std::int64_t>(w, "start_date", 0))};
    }
    m.time_zone = get<std::string>(d, "time_zone", "UTC");
    if (d.contains("window") && !d["window"].is_none()) {
        auto w = d["window"].cast<py::dict>();
        m.window = {static_cast<std::uint8_t>(get<int>(w, "start_hour", 0)),
                    static_cast<std::uint8_t>(get<int>(w, "end_hour", 24)),
                    static_cast<std::uint8_t>(get<int>(w, "weekdays", 0x7f))};
    }
    m.min_gap = std::chrono::seconds(get<std::int64_t>(d, "min_gap", 0));
    m.jitter = std::chrono::seconds(get<std::int64_t>(d, "jitter", 0));
    m.priority = get<std::int32_t>(d, "priority", 0);
    m.weight = get<std::uint32_t>(d, "weight", 1);
    m.state = parse_enum<mailbox_state>(get<std::string>(d, "state", "active"), 3, "mailbox state");
    if (d.contains("breaker") && !d["breaker"].is_none()) {
        auto b = d["breaker"].cast<py::dict>();
        m.breaker = {get<std::uint32_t>(b, "failure_threshold", 5),
                     std::chrono::seconds(get<std::int64_t>(b, "cool_down", 300)),
                     std::chrono::seconds(get<std::int64_t>(b, "max_cool_down", 3600))};
    }
    return m;
}

py::dict from_mailbox(const mailbox_config& m) {
    return py::dict(
        py::arg("id") = m.id, py::arg("address") = format_addr(m.from),
        py::arg("provider") = m.provider, py::arg("limits") = from_limits(m.limits),
        py::arg("max_recipients_per_message") = m.max_recipients_per_message,
        py::arg("warmup") =
            py::dict(py::arg("start") = m.warmup.start, py::arg("step") = m.warmup.step,
                     py::arg("target") = m.warmup.target,
                     py::arg("start_date") = to_us(m.warmup.start_date)),
        py::arg("time_zone") = m.time_zone,
        py::arg("window") = py::dict(py::arg("start_hour") = m.window.start_hour,
                                     py::arg("end_hour") = m.window.end_hour,
                                     py::arg("weekdays") = m.window.weekdays),
        py::arg("min_gap") = m.min_gap.count(), py::arg("jitter") = m.jitter.count(),
        py::arg("priority") = m.priority, py::arg("weight") = m.weight,
        py::arg("state") = std::string(to_string(m.state)),
        py::arg("breaker") = py::dict(py::arg("failure_threshold") = m.breaker.failure_threshold,
                                      py::arg("cool_down") = m.breaker.cool_down.count(),
                                      py::arg("max_cool_down") = m.breaker.max_cool_down.count()));
}

pool_config to_pool(const py::dict& d) {
    pool_config p;
    p.id = get<std::string>(d, "id", "");
    p.mailboxes = get<std::vector<std::string>>(d, "mailboxes", {});
    p.policy.kind = parse_enum<rotation_kind>(get<std::string>(d, "policy", "round_robin"), 3,
                                              "rotation policy");
    p.policy.max_attempts = get<std::uint32_t>(d, "max_attempts", 3);
    p.policy.sticky_sender = get<bool>(d, "sticky_sender", false);
    return p;
}

py::dict from_pool(const pool_config& p) {
    return py::dict(py::arg("id") = p.id, py::arg("mailboxes") = p.mailboxes,
                    py::arg("policy") = std::string(to_string(p.policy.kind)),
                    py::arg("max_attempts") = p.policy.max_attempts,
                    py::arg("sticky_sender") = p.policy.sticky_sender);
}

quota to_quota(const py::dict& d) {
    quota q;
    q.scope = parse_enum<quota_scope>(get<std::string>(d, "scope", "provider"), 3, "quota scope");
    q.key = get<std::string>(d, "key", "");
    q.limits = to_limits(get<py::list>(d, "limits", py::list()));
    q.time_zone = get<std::string>(d, "time_zone", "");
    return q;
}

py::dict from_quota(const quota& q) {
    return py::dict(py::arg("scope") = std::string(to_string(q.scope)), py::arg("key") = q.key,
                    py::arg("limits") = from_limits(q.limits), py::arg("time_zone") = q.time_zone);
}

pause_rule to_rule(const py::dict& d) {
    pause_rule r;
    r.id = get<std::string>(d, "id", "");
    r.scope = parse_enum<pause_scope>(get<std::string>(d, "scope", "mailbox"), 5, "pause scope");
    r.target = get<std::string>(d, "target", "");
    r.metric = parse_enum<rule_metric>(get<std::string>(d, "metric", "bounces"), 4, "rule metric");
    r.window_days = get_count<std::uint32_t>(d, "window_days", r.window_days);
    r.window_sends = get_count<std::uint64_t>(d, "window_sends", r.window_sends);
    r.max_rate = get<double>(d, "max_rate", r.max_rate);
    r.min_volume = get_count<std::uint64_t>(d, "min_volume", r.min_volume);
    r.grace_days = get_count<std::uint32_t>(d, "grace_days", r.grace_days);
    return r;
}

py::dict from_queued(const queued_send& q) {
    return py::dict(py::arg("id") = q.id, py::arg("idempotency_key") = q.idempotency_key,
                    py::arg("pool") = q.pool, py::arg("mailbox") = q.mailbox,
                    py::arg("origin") = q.origin,
                    py::arg("state") = std::string(to_string(q.state)),
                    py::arg("wait_reason") = q.wait_reason, py::arg("send_id") = q.send_id,
                    py::arg("detail") = q.detail, py::arg("not_before") = to_us(q.not_before));
}

py::dict from_access(const access_policy& p) {
    py::list roles, grants;
    for (const auto& r : p.roles) {
        std::vector<std::string> perms;
        for (auto pm : r.permissions) perms.emplace_back(to_string(pm));
        roles.append(py::dict(py::arg("id") = r.id, py::arg("permissions") = perms));
    }
    for (const auto& g : p.grants)
        grants.append(py::dict(py::arg("principal") = g.principal, py::arg("role") = g.role,
                               py::arg("scope") = std::string(to_string(g.scope.of)),
                               py::arg("id") = g.scope.id));
    return py::dict(py::arg("enabled") = p.enabled, py::arg("roles") = roles,
                    py::arg("grants") = grants);
}

py::dict from_histogram(const latency_histogram& h) {
    return py::dict(
        py::arg("counts") = std::vector<std::uint64_t>(h.counts.begin(), h.counts.end()),
        py::arg("sum_us") = h.sum_us);
}

py::dict from_erasure(const erasure_report& r) {
    const auto& c = r.erased;
    return py::dict(
        py::arg("hash") = r.hash, py::arg("at") = to_us(r.at),
        py::arg("erased") = py::dict(
            py::arg("suppression_rows") = c.suppression_rows, py::arg("sends") = c.sends,
            py::arg("queued") = c.queued, py::arg("queue_cancelled") = c.queue_cancelled,
            py::arg("enrollments") = c.enrollments,
            py::arg("webhook_deliveries") = c.webhook_deliveries,
            py::arg("recorded_keys") = c.recorded_keys, py::arg("soft_bounces") = c.soft_bounces),
        py::arg("was_suppressed") = r.was_suppressed, py::arg("audit_seq") = r.audit_seq);
}

py::dict from_rule(const pause_rule& r) {
    return py::dict(py::arg("id") = r.id, py::arg("scope") = std::string(to_string(r.scope)),
                    py::arg("target") = r.target,
                    py::arg("metric") = std::string(to_string(r.metric)),
                    py::arg("window_days") = r.window_days,
                    py::arg("window_sends") = r.window_sends, py::arg("max_rate") = r.max_rate,
                    py::arg("min_volume") = r.min_volume, py::arg("grace_days") = r.grace_days);
}

// Counts and windows cross as day numbers (days since 1970-01-01, UTC);
// the package turns them into datetime.date.
py::dict from_count(const daily_count& c) {
    py::dict d;
    d["day"] = c.day;
    for (std::size_t i = 0; i < count_metric_count; ++i)
        d[py::str(std::string(to_string(static_cast<count_metric>(i))))] = c.n[i];
    return d;
}

py::dict from_firing(const rule_firing& f) {
    return py::dict(
        py::arg("rule") = f.rule, py::arg("scope") = std::string(to_string(f.target.scope)),
        py::arg("target") = f.target.id, py::arg("count") = f.count, py::arg("volume") = f.volume,
        py::arg("rate") = f.rate, py::arg("from_day") = f.from_day, py::arg("to_day") = f.to_day);
}

std::vector<address> to_addrs(const py::dict& d, const char* key) {
    std::vector<address> out;
    for (const auto& s : get<std::vector<std::string>>(d, key, {})) out.push_back(parse_addr(s));
    return out;
}

send_request to_request(const py::dict& d) {
    send_request r;
    r.pool = get<std::string>(d, "pool", "");
    r.mailbox = get<std::string>(d, "mailbox", "");
    r.to = parse_addr(get<std::string>(d, "to", ""));
    r.cc = to_addrs(d, "cc");
    r.bcc = to_addrs(d, "bcc");
    if (auto rt = get<std::string>(d, "reply_to", ""); !rt.empty()) r.reply_to = parse_addr(rt);
    r.raw = get<std::string>(d, "raw", "");
    r.subject = get<std::string>(d, "subject", "");
    r.text = get<std::string>(d, "text", "");
    r.html = get<std::string>(d, "html", "");
    for (const auto& [name, value] :
         get<std::vector<std::pair<std::string, std::string>>>(d, "headers", {}))
        r.headers.push_back({name, value});
    for (auto item : get<py::list>(d, "attachments", py::list())) {
        auto a = item.cast<py::dict>();
        r.attachments.push_back(
            {get<std::string>(a, "filename", ""), get<std::string>(a, "content_type", ""),
             get<std::string>(a, "data", ""), get<std::string>(a, "content_id", "")});
    }
    if (auto u = get<std::string>(d, "unsubscribe_url", ""); !u.empty())
        r.unsubscribe = list_unsubscribe{u, get<std::string>(d, "unsubscribe_mailto", "")};
    r.in_reply_to = get<std::string>(d, "in_reply_to", "");
    r.references = get<std::vector<std::string>>(d, "references", {});
    r.idempotency_key = get<std::string>(d, "idempotency_key", "");
    if (d.contains("actor")) r.actor = to_principal(d["actor"]);
    return r;
}

py::dict from_diag(const diagnostics& g) {
    return py::dict(py::arg("message") = g.message, py::arg("provider_reply") = g.provider_reply,
                    py::arg("enhanced_status") = g.enhanced_status, py::arg("status") = g.status,
                    py::arg("provider_code") = g.provider_code,
                    py::arg("request_id") = g.request_id,
                    py::arg("retry_after") =
                        g.retry_after ? py::object(py::int_(g.retry_after->count())) : py::none());
}

py::dict from_result(const send_result& r) {
    return py::dict(
        py::arg("send_id") = r.send_id,
        py::arg("state") =
            r.state ? py::object(py::str(std::string(to_string(*r.state)))) : py::none(),
        py::arg("mailbox") = r.mailbox, py::arg("provider") = r.provider,
        py::arg("message_id") = r.message_id,
        py::arg("provider_message_id") = r.provider_message_id, py::arg("attempts") = r.attempts,
        py::arg("duplicate") = r.duplicate, py::arg("retry_at") = opt_us(r.retry_at));
}

// What the package's error factory turns into an exception.
py::dict error_info(const error_code& ec, const diagnostics& diag) {
    py::dict d;
    std::string category = "other", code;
    const int v = ec.value();
    if (ec.category() == error_category()) {
        category = "mailers";
        code = to_string(static_cast<errc>(v));
    } else if (ec.category() == transport_category()) {
        category = "transport";
        code = to_string(static_cast<transport_errc>(v));
    }
    if (code.empty()) code = std::string(ec.category().name()) + ":" + std::to_string(v);
    d["category"] = category;
    d["code"] = code;
    d["value"] = v;
    d["failure"] = category == "mailers"
                       ? py::object(py::none())
                       : py::object(py::str(std::string(to_string(classify(ec)))));
    d["message"] = ec.message();
    d["diagnostics"] = from_diag(diag);
    return d;
}

// Set by the package at import: builds a mailers.Error from error_info.
py::object& error_factory() {
    static py::object* f = new py::object();  // never destroyed: outlives the interpreter
    return *f;
}

[[noreturn]] void raise_error(const error_code& ec, const diagnostics& diag) {
    py::object exc = error_factory()(error_info(ec, diag), py::none());
    PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
    throw py::error_already_set();
}

py::dict from_event(const event& e) {
    return py::dict(
        py::arg("type") = std::string(to_string(e.type)), py::arg("at") = to_us(e.at),
        py::arg("send_id") = e.send_id, py::arg("idempotency_key") = e.idempotency_key,
        py::arg("mailbox") = e.mailbox, py::arg("pool") = e.pool, py::arg("provider") = e.provider,
        py::arg("recipient") = e.recipient, py::arg("provider_message_id") = e.provider_message_id,
        py::arg("message_id") = e.message_id, py::arg("bounce") = std::string(to_string(e.bounce)),
        py::arg("detail") = e.detail, py::arg("retry_at") = opt_us(e.retry_at),
        py::arg("provider_event") = e.provider_event, py::arg("dedup_key") = e.dedup_key,
        py::arg("diagnostic_code") = e.diagnostic_code, py::arg("campaign") = e.campaign,
        py::arg("sequence") = e.sequence,
        py::arg("enrollment") = e.enrollment ? py::object(py::int_(e.enrollment)) : py::none(),
        py::arg("step") = e.step ? py::object(py::int_(e.step)) : py::none(),
        py::arg("provider_event_id") = e.provider_event_id, py::arg("raw") = e.raw);
}

// What a refusal knows beyond its code and message, for the exception's
// attributes: where a template failed, or which variables a contact lacks.
struct error_detail {
    std::optional<template_error> at;
    std::size_t step = 0;  // 1-based sequence step; 0 for none
    std::string field;
    std::vector<std::string> missing, invalid;
    std::string recipient;
};

struct detailed_exception : exception {
    detailed_exception(const exception& e, error_detail d)
        : exception(e.code(), e.diag()), detail(std::move(d)) {}
    error_detail detail;
};

py::dict from_detail(const error_detail& d) {
    py::dict out;
    if (d.at) {
        out["part"] = std::string(to_string(d.at->part));
        out["line"] = d.at->line;
        out["column"] = d.at->column;
        out["reason"] = d.at->message;
        out["step"] = d.step;
        out["field"] = d.field;
    }
    if (!d.missing.empty() || !d.invalid.empty()) {
        out["missing"] = d.missing;
        out["invalid"] = d.invalid;
        out["recipient"] = d.recipient;
    }
    return out;
}

[[noreturn]] void throw_template_error(const template_error& t, std::string message,
                                       std::size_t step = 0, std::string field = {}) {
    throw detailed_exception(exception(make_error_code(errc::invalid_argument), message),
                             {t, step, std::move(field), {}, {}, {}});
}

// --- sequences, campaigns, forecasts, outbound webhooks ---------------------

// Enums without a library to_string, named as the Python API spells them.
constexpr std::array<const char*, 3> delay_units = {"hours", "days", "business_days"};
constexpr std::array<const char*, 2> conflict_names = {"refuse", "merge"};

template <typename E, std::size_t N>
E parse_named(const std::string& s, const std::array<const char*, N>& names, const char* what) {
    for (std::size_t i = 0; i < N; ++i)
        if (s == names[i]) return static_cast<E>(i);
    throw exception(make_error_code(errc::invalid_argument),
                    std::string("unknown ") + what + " '" + s + "'");
}

template <typename T, typename F>
py::list to_list(const std::vector<T>& items, F from) {
    py::list out;
    for (const auto& x : items) out.append(from(x));
    return out;
}

// A listing's filter: a state (one of `states` names), and paging.
template <typename Filter, typename State>
Filter paged_filter(const py::dict& d, int states, const char* what) {
    Filter f;
    if (auto st = get<std::string>(d, "state", ""); !st.empty())
        f.state = parse_enum<State>(st, states, what);
    f.after_id = get<std::uint64_t>(d, "after_id", 0);
    f.limit = get<std::size_t>(d, "limit", 0);
    return f;
}

template_source to_content(const py::dict& d) {
    return {get<std::string>(d, "subject", ""), get<std::string>(d, "text", ""),
            get<std::string>(d, "html", "")};
}

template_variables to_variables(const py::object& o) {
    template_variables out;
    if (o.is_none()) return out;
    for (auto [k, v] : o.cast<py::dict>())
        out.emplace(k.cast<std::string>(), v.cast<std::string>());
    return out;
}

sequence_config to_sequence(const py::dict& d) {
    sequence_config c;
    c.id = get<std::string>(d, "id", "");
    c.name = get<std::string>(d, "name", "");
    c.time_zone = get<std::string>(d, "time_zone", "");
    c.business_weekdays =
        static_cast<std::uint8_t>(get<int>(d, "business_weekdays", send_window::weekdays_mon_fri));
    c.holidays = get<std::vector<std::string>>(d, "holidays", {});
    c.on_enrolled_twice = parse_named<enrollment_conflict>(
        get<std::string>(d, "on_enrolled_twice", "refuse"), conflict_names, "enrollment conflict");
    c.reply_stops = parse_enum<stop_scope>(get<std::string>(d, "reply_stops", "every_sequence"), 2,
                                           "stop scope");
    c.goal_stops =
        parse_enum<stop_scope>(get<std::string>(d, "goal_stops", "this_sequence"), 2, "stop scope");
    for (auto item : get<py::list>(d, "steps", py::list())) {
        auto s = item.cast<py::dict>();
        sequence_step step;
        auto delay = get<py::dict>(s, "delay", py::dict());
        step.delay.in = parse_named<sequence_delay::unit>(get<std::string>(delay, "unit", "days"),
                                                          delay_units, "delay unit");
        step.delay.amount = get<std::uint32_t>(delay, "amount", 0);
        step.content = to_content(s);
        auto sender = get<py::dict>(s, "sender", py::dict());
        step.sender.kind = parse_enum<sender_rule_kind>(get<std::string>(sender, "kind", "pool"), 4,
                                                        "sender rule");
        step.sender.id = get<std::string>(sender, "id", "");
        step.sender.fallback_pool = get<std::string>(sender, "fallback_pool", "");
        step.threading = parse_enum<step_threading>(get<std::string>(s, "threading", "new_thread"),
                                                    2, "threading");
        c.steps.push_back(std::move(step));
    }
    return c;
}

py::dict from_sequence(const sequence_config& c) {
    py::list steps;
    for (const auto& s : c.steps)
        steps.append(py::dict(
            py::arg("delay") = py::dict(py::arg("unit") = delay_units[static_cast<int>(s.delay.in)],
                                        py::arg("amount") = s.delay.amount),
            py::arg("sender") = py::dict(py::arg("kind") = std::string(to_string(s.sender.kind)),
                                         py::arg("id") = s.sender.id,
                                         py::arg("fallback_pool") = s.sender.fallback_pool),
            py::arg("subject") = s.content.subject, py::arg("text") = s.content.text,
            py::arg("html") = s.content.html,
            py::arg("threading") = std::string(to_string(s.threading))));
    return py::dict(
        py::arg("id") = c.id, py::arg("steps") = steps, py::arg("name") = c.name,
        py::arg("time_zone") = c.time_zone, py::arg("business_weekdays") = c.business_weekdays,
        py::arg("holidays") = c.holidays,
        py::arg("on_enrolled_twice") = conflict_names[static_cast<int>(c.on_enrolled_twice)],
        py::arg("reply_stops") = std::string(to_string(c.reply_stops)),
        py::arg("goal_stops") = std::string(to_string(c.goal_stops)));
}

py::dict from_enrollment(const enrollment& e) {
    return py::dict(
        py::arg("id") = e.id, py::arg("sequence_id") = e.sequence_id,
        py::arg("address") = e.address, py::arg("display_name") = e.display_name,
        py::arg("variables") = e.variables, py::arg("owner") = e.owner, py::arg("actor") = e.actor,
        py::arg("state") = std::string(to_string(e.state)),
        py::arg("stop_reason") = std::string(to_string(e.stop_reason)),
        py::arg("detail") = e.detail, py::arg("step") = e.step,
        py::arg("next_due") = opt_us(e.next_due), py::arg("step_due") = to_us(e.step_due),
        py::arg("queue_key") = e.queue_key, py::arg("prev_mailbox") = e.prev_mailbox,
        py::arg("prev_message_id") = e.prev_message_id, py::arg("prev_subject") = e.prev_subject,
        py::arg("prev_references") = e.prev_references,
        py::arg("last_sent_at") = to_us(e.last_sent_at),
        py::arg("enrolled_at") = to_us(e.enrolled_at), py::arg("updated_at") = to_us(e.updated_at),
        py::arg("version") = e.version);
}

campaign_config to_campaign(const py::dict& d) {
    campaign_config c;
    c.id = get<std::string>(d, "id", "");
    c.name = get<std::string>(d, "name", "");
    c.content = to_content(d);
    c.pool = get<std::string>(d, "pool", "");
    c.mailbox = get<std::string>(d, "mailbox", "");
    if (auto rt = get<std::string>(d, "reply_to", ""); !rt.empty()) c.reply_to = parse_addr(rt);
    c.not_before = from_us(get<std::int64_t>(d, "not_before", 0));
    std::size_t n = 0;
    for (auto item : get<py::list>(d, "recipients", py::list())) {
        auto r = item.cast<py::tuple>();
        ++n;
        const auto text = r[0].cast<std::string>();
        auto a = parse_address(text);
        if (!a)
            throw exception(make_error_code(errc::invalid_address),
                            "recipient " + std::to_string(n) + " ('" + text +
                                "') is not a valid email address");
        c.recipients.push_back({*a, to_variables(r[1])});
    }
    return c;
}

py::dict from_campaign(const campaign_info& c) {
    return py::dict(py::arg("id") = c.id, py::arg("name") = c.name,
                    py::arg("subject") = c.content.subject, py::arg("text") = c.content.text,
                    py::arg("html") = c.content.html, py::arg("pool") = c.pool,
                    py::arg("mailbox") = c.mailbox, py::arg("not_before") = to_us(c.not_before),
                    py::arg("started_at") = to_us(c.started_at), py::arg("actor") = c.actor,
                    py::arg("total") = c.total,
                    py::arg("suppressed_at_start") = c.suppressed_at_start,
                    py::arg("cancelled") = c.cancelled, py::arg("digest") = c.digest);
}

py::dict from_reasons(const std::vector<std::pair<std::string, std::uint64_t>>& reasons) {
    py::dict out;
    for (const auto& [reason, n] : reasons) out[py::str(reason)] = n;
    return out;
}

py::dict from_progress(const campaign_progress& p) {
    return py::dict(py::arg("id") = p.id, py::arg("total") = p.total, py::arg("sent") = p.sent,
                    py::arg("failed") = p.failed, py::arg("unknown") = p.unknown,
                    py::arg("suppressed_at_start") = p.suppressed_at_start,
                    py::arg("suppressed_at_handoff") = p.suppressed_at_handoff,
                    py::arg("cancelled") = p.cancelled, py::arg("in_flight") = p.in_flight,
                    py::arg("waiting") = p.waiting,
                    py::arg("waiting_by_reason") = from_reasons(p.waiting_by_reason),
                    py::arg("not_queued") = p.not_queued, py::arg("remaining") = p.remaining,
                    py::arg("next_due") = opt_us(p.next_due),
                    py::arg("cancelled_campaign") = p.cancelled_campaign);
}

py::dict from_plan(const forecast_plan& p) {
    py::list sends, unsent;
    for (const auto& s : p.sends)
        sends.append(py::dict(py::arg("at") = to_us(s.at), py::arg("due") = to_us(s.due),
                              py::arg("mailbox") = s.mailbox, py::arg("recipient") = s.recipient,
                              py::arg("origin") = s.origin, py::arg("step") = s.step,
                              py::arg("bound") = s.bound, py::arg("existing") = s.existing));
    for (const auto& u : p.unsent)
        unsent.append(py::dict(py::arg("recipient") = u.recipient, py::arg("origin") = u.origin,
                               py::arg("step") = u.step, py::arg("reason") = u.reason,
                               py::arg("detail") = u.detail, py::arg("waiting") = u.waiting));
    return py::dict(py::arg("start") = to_us(p.start), py::arg("end") = to_us(p.end),
                    py::arg("sends") = sends, py::arg("unsent") = unsent,
                    py::arg("last") = opt_us(p.last), py::arg("complete") = p.complete);
}

webhook_endpoint to_endpoint(const py::dict& d) {
    webhook_endpoint ep;
    ep.id = get<std::string>(d, "id", "");
    ep.url = get<std::string>(d, "url", "");
    ep.secret = get<std::string>(d, "secret", "");
    for (const auto& name : get<std::vector<std::string>>(d, "event_types", {})) {
        auto t = event_type_named(name);
        if (!t)
            throw exception(make_error_code(errc::invalid_argument),
                            "unknown event type '" + name + "'");
        ep.event_types.push_back(*t);
    }
    ep.enabled = get<bool>(d, "enabled", true);
    ep.disabled_reason = get<std::string>(d, "disabled_reason", "");
    ep.description = get<std::string>(d, "description", "");
    return ep;
}

py::dict from_endpoint(const webhook_endpoint& ep) {
    std::vector<std::string> types;
    for (auto t : ep.event_types) types.emplace_back(to_string(t));
    return py::dict(py::arg("id") = ep.id, py::arg("url") = ep.url, py::arg("secret") = ep.secret,
                    py::arg("event_types") = types, py::arg("enabled") = ep.enabled,
                    py::arg("disabled_reason") = ep.disabled_reason,
                    py::arg("description") = ep.description);
}

py::dict from_delivery(const webhook_delivery& w) {
    return py::dict(py::arg("id") = w.id, py::arg("endpoint") = w.endpoint,
                    py::arg("message_id") = w.message_id, py::arg("event_key") = w.event_key,
                    py::arg("event_type") = w.event_type, py::arg("payload") = w.payload,
                    py::arg("created_at") = to_us(w.created_at),
                    py::arg("due_at") = to_us(w.due_at),
                    py::arg("state") = std::string(to_string(w.state)),
                    py::arg("attempts") = w.attempts, py::arg("last_status") = w.last_status,
                    py::arg("detail") = w.detail, py::arg("updated_at") = to_us(w.updated_at));
}

outbound_webhook_params to_webhook_params(const py::dict& d) {
    outbound_webhook_params p;
    p.deliver = get<bool>(d, "deliver", p.deliver);
    p.allow_private_targets = get<bool>(d, "allow_private_targets", p.allow_private_targets);
    p.allow_http = get<bool>(d, "allow_http", p.allow_http);
    p.max_attempts = get<std::uint32_t>(d, "max_attempts", p.max_attempts);
    p.first_retry =
        std::chrono::seconds(get<std::int64_t>(d, "first_retry", p.first_retry.count()));
    p.max_retry = std::chrono::seconds(get<std::int64_t>(d, "max_retry", p.max_retry.count()));
    p.disable_on_failure = get<bool>(d, "disable_on_failure", p.disable_on_failure);
    p.timeout = std::chrono::milliseconds(get<std::int64_t>(d, "timeout_ms", p.timeout.count()));
    p.max_response_size = get<std::size_t>(d, "max_response_size", p.max_response_size);
    p.poll_interval = std::chrono::milliseconds(
        get<std::int64_t>(d, "poll_interval_ms", p.poll_interval.count()));
    p.in_flight = get<std::size_t>(d, "in_flight", p.in_flight);
    p.retention = std::chrono::seconds(get<std::int64_t>(d, "retention", p.retention.count()));
    p.ca_file = get<std::string>(d, "ca_file", p.ca_file);
    return p;
}

// The first of `recipients` whose variables `t` (a template or a sequence)
// finds lacking, as a detail; nullopt when none lacks any.
template <typename Checker, typename Recipients>
std::optional<error_detail> lacking(const Checker& t, const Recipients& recipients) {
    for (const auto& r : recipients) {
        auto c = t.check(r.variables);
        if (!c.ok()) return error_detail{{}, 0, {}, c.missing, c.invalid, r.to.addr_spec()};
    }
    return std::nullopt;
}

// Why the engine refused a campaign, in detail, when the template or a
// recipient's variables are the reason: looked for only after a refusal,
// so a start that goes through compiles the template once.
std::optional<error_detail> diagnose_campaign(const campaign_config& c) {
    template_error at;
    auto t = message_template::compile(c.content, &at);
    if (!t) return error_detail{at, 0, "content", {}, {}, {}};
    return lacking(*t, c.recipients);
}

// A Python object that a C++ thread may drop: the reference is released
// under the GIL, or leaked once the interpreter is finalizing, when taking
// the GIL from another thread would hang it.
struct py_ref {
    explicit py_ref(py::object o)
        : p(new py::object(std::move(o)), [](py::object* x) {
              if (MAILERS_PY_FINALIZING()) return;  // leak: the process is ending
              py::gil_scoped_acquire gil;
              delete x;
          }) {}
    std::shared_ptr<py::object> p;
};

// Runs `fn` under the GIL; an exception it raises is reported through
// sys.unraisablehook and goes no further.
template <typename F>
void call_python(const char* where, F&& fn) {
    if (MAILERS_PY_FINALIZING()) return;
    py::gil_scoped_acquire gil;
    try {
        fn();
    } catch (py::error_already_set& e) {
        e.discard_as_unraisable(where);
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
        PyErr_WriteUnraisable(py::str(where).ptr());
    }
}

// --- the engine's owner ---------------------------------------------------

webhook_provider to_webhook_provider(const std::string& provider) {
    auto prov = parse_webhook_provider(provider);
    if (!prov) throw exception(prov.error(), "unknown webhook provider '" + provider + "'");
    return *prov;
}

webhook_params to_ingest_params(const py::dict& opts) {
    webhook_params wp;
    wp.verify = get<bool>(opts, "verify", true);
    wp.keep_raw = get<bool>(opts, "keep_raw", false);
    wp.mailgun.signing_key = get<std::string>(opts, "mailgun_signing_key", "");
    wp.sendgrid.public_key = get<std::string>(opts, "sendgrid_public_key", "");
    wp.postmark.basic_user = get<std::string>(opts, "postmark_user", "");
    wp.postmark.basic_password = get<std::string>(opts, "postmark_password", "");
    wp.postmark.header_name = get<std::string>(opts, "postmark_header_name", "");
    wp.postmark.header_value = get<std::string>(opts, "postmark_header_value", "");
    return wp;
}

// Views into `headers`, which must outlive them.
std::vector<http_header> to_headers(
    const std::vector<std::pair<std::string, std::string>>& headers) {
    std::vector<http_header> hs;
    for (const auto& [n, v] : headers) hs.push_back({n, v});
    return hs;
}

py::dict from_ingest(const ingest_result& r) {
    py::list events;
    for (const auto& e : r.webhook.events) events.append(from_event(e));
    return py::dict(
        py::arg("http_status") = r.webhook.http_status, py::arg("reason") = r.webhook.reason,
        py::arg("events") = events, py::arg("suppressed") = r.suppressed,
        py::arg("already_suppressed") = r.already_suppressed, py::arg("duplicates") = r.duplicates);
}

class core {
public:
    core(const py::dict& store_cfg, const py::dict& params, py::object clock_obj) {
        engine_params p;
        p.workspace = get<std::string>(params, "workspace", "default");
        p.audit_key = get<std::string>(params, "audit_key", "");
        p.erasure_key = get<std::string>(params, "erasure_key", "");
        p.member_name = get<std::string>(params, "member_name", "");
        if (params.contains("log") && !params["log"].is_none()) {
            // Library log lines come from any of the engine's threads, perhaps
            // under its locks: they reach Python through the same queue as
            // completions.
            auto cb = std::make_shared<py_ref>(params["log"].cast<py::object>());
            p.log.level = parse_enum<log_level>(get<std::string>(params, "log_level", "warning"), 6,
                                                "log level");
            p.log.sink = [this, cb](log_level l, std::string_view m) {
                if (!alive_) return;  // a transport dropped while the core is destroyed
                to_python(
                    [cb, l, msg = std::string(m)] { (*cb->p)(std::string(to_string(l)), msg); });
            };
        }
        if (params.contains("webhooks") && !params["webhooks"].is_none())
            p.webhooks = to_webhook_params(params["webhooks"].cast<py::dict>());
        p.random_seed = get<std::uint64_t>(params, "random_seed", 0);
        p.drain_queue = get<bool>(params, "drain_queue", true);
        p.unsubscribe.url = get<std::string>(params, "unsubscribe_url", "");
        p.unsubscribe.secret = get<std::string>(params, "unsubscribe_secret", "");
        p.unsubscribe.mailto = get<std::string>(params, "unsubscribe_mailto", "");
        p.queue_poll_interval =
            std::chrono::milliseconds(get<std::int64_t>(params, "queue_poll_interval_ms", 1000));
        p.rule_check_interval =
            std::chrono::seconds(get<std::int64_t>(params, "rule_check_interval_s", 300));
        if (params.contains("fold_plus_tags") || params.contains("fold_gmail_dots"))
            p.suppression = suppression_options{get<bool>(params, "fold_plus_tags", false),
                                                get<bool>(params, "fold_gmail_dots", false)};
        if (!clock_obj.is_none()) p.clock = clock_obj.cast<std::shared_ptr<manual_clock>>();
        const auto kind = get<std::string>(store_cfg, "kind", "sqlite");
        const auto mode = parse_enum<open_mode>(
            get<std::string>(store_cfg, "mode", "open_or_create"), 3, "open mode");
        sqlite_store_params sp;
        postgres_store_params pp;
        if (kind == "sqlite") {
            sp.path = store_cfg["path"].cast<std::string>();
            sp.mode = mode;
            if (get<bool>(store_cfg, "power_loss_safe", false))
                sp.durability = sqlite_durability::power_loss_safe;
        } else if (kind == "postgres") {
            pp.conninfo = store_cfg["conninfo"].cast<std::string>();
            pp.schema = get<std::string>(store_cfg, "schema", "mailers");
            pp.pool_size = get<std::size_t>(store_cfg, "pool_size", 4);
            pp.mode = mode;
        } else {
            throw exception(make_error_code(errc::invalid_argument),
                            "unknown store kind '" + kind + "'");
        }
        py::gil_scoped_release nogil;
        p.storage = kind == "sqlite" ? open_sqlite_store(sp) : open_postgres_store(pp);
        // The engine is built before the thread starts, so a refusal leaves
        // nothing running; transports built later need the thread.
        eng_ = std::make_unique<engine>(ioc_.get_executor(), std::move(p));
        eng_->on_event([this](const event& e) { post_event(e); });
        thread_ = std::thread([this] {
            ioc_.run();
            done_.set_value();
        });
        io_thread_ = thread_.get_id();
    }

    ~core() {
        if (!closed_) {
            py::gil_scoped_release nogil;
            shutdown(30.0);
        }
        alive_ = false;  // handlers the io_context still holds are destroyed after this
    }

    void close(double timeout) {
        py::gil_scoped_release nogil;
        shutdown(timeout);
    }
    bool closed() const { return closed_; }
    bool on_engine_thread() const { return std::this_thread::get_id() == io_thread_; }

    // The engine for one call: the shared lock keeps close() from
    // destroying it while the call runs (close cancels first, so no call
    // waits long). Hold it for one full expression: `eng()->method(...)`.
    struct engine_ref {
        std::shared_lock<std::shared_mutex> lock;
        engine* e;
        engine* operator->() const { return e; }
        engine& operator*() const { return *e; }
    };
    engine_ref eng() {
        std::shared_lock lock(life_);
        if (closed_ || !eng_)
            throw exception(make_error_code(errc::operation_aborted), "the engine is closed");
        return {std::move(lock), eng_.get()};
    }

    void set_event_callback(py::object fn) {
        auto next = std::make_shared<py_ref>(std::move(fn));
        std::lock_guard lock(mu_);
        on_event_.swap(next);
    }

    void add_provider(const py::object& who, const std::string& id, const std::string& dsn) {
        auto actor = to_principal(who);
        py::gil_scoped_release nogil;
        // A capture provider is built here so its messages can be read back.
        if (dsn.rfind("capture://", 0) == 0) {
            auto t = std::make_shared<capture_transport>(ioc_.get_executor());
            eng()->add_provider(actor, id, t);
            std::lock_guard lock(mu_);
            captures_[id] = t;
            return;
        }
        eng()->add_provider(actor, id, dsn);
    }

    void save_provider(const py::object& who, const std::string& id, const std::string& dsn) {
        auto actor = to_principal(who);
        py::gil_scoped_release nogil;
        eng()->save_provider(actor, id, dsn);
    }

    void remove_provider(const py::object& who, const std::string& id) {
        auto actor = to_principal(who);
        py::gil_scoped_release nogil;
        eng()->remove_provider(actor, id);
    }

    py::list stored_providers() {
        std::vector<stored_provider> stored;
        {
            py::gil_scoped_release nogil;
            stored = eng()->stored_providers();
        }
        py::list out;
        for (const auto& p : stored)
            out.append(py::dict(py::arg("id") = p.id, py::arg("dsn") = p.dsn,
                                py::arg("created_at") = to_us(p.created_at),
                                py::arg("updated_at") = to_us(p.updated_at),
                                py::arg("active") = p.active));
        return out;
    }

    // Checks provider `id` as the engine sends through it, or the transport
    // `dsn` builds when `id` is empty, sending nothing; close() cancels it.
    // Returns (error_info | None, {provider, transport, message, diagnostics}).
    py::tuple check_provider(const py::object& who, const std::string& id, const std::string& dsn) {
        if (std::this_thread::get_id() == io_thread_)
            throw std::runtime_error(
                "a provider check from an event callback would wait for itself");
        auto actor = to_principal(who);
        std::pair<error_code, provider_check> out;
        {
            py::gil_scoped_release nogil;
            std::promise<std::pair<error_code, provider_check>> done;
            auto fut = done.get_future();
            auto finish = [&done](error_code ec, provider_check r) {
                done.set_value({ec, std::move(r)});
            };
            if (!id.empty())
                eng()->async_check_provider(actor, id, finish);
            else
                eng()->async_check_dsn(actor, dsn, finish);
            out = fut.get();
        }
        const auto& [ec, r] = out;
        auto result = py::dict(py::arg("provider") = r.provider, py::arg("transport") = r.transport,
                               py::arg("message") = r.diag.message,
                               py::arg("diagnostics") = from_diag(r.diag));
        return py::make_tuple(ec ? py::object(error_info(ec, r.diag)) : py::object(py::none()),
                              result);
    }

    py::list captured(const std::string& id) {
        std::shared_ptr<capture_transport> t;
        {
            std::lock_guard lock(mu_);
            if (auto it = captures_.find(id); it != captures_.end()) t = it->second;
        }
        if (!t)
            throw exception(make_error_code(errc::unknown_provider),
                            "'" + id + "' is not a capture provider of this engine");
        py::list out;
        for (const auto& o : t->sent()) {
            std::string data = o.raw;
            if (data.empty())
                if (auto r = render_message(o.msg)) data = *r;
            py::list to;
            for (const auto& a : o.msg.to) to.append(format_addr(a));
            out.append(
                py::dict(py::arg("mail_from") = o.env.mail_from, py::arg("rcpt_to") = o.env.rcpt_to,
                         py::arg("from") = format_addr(o.msg.from), py::arg("to") = to,
                         py::arg("subject") = o.msg.subject, py::arg("text") = o.msg.text,
                         py::arg("html") = o.msg.html, py::arg("message_id") = o.msg.message_id,
                         py::arg("mailbox") = o.mailbox_id, py::arg("send_id") = o.send_id,
                         py::arg("data") = py::bytes(data)));
        }
        return out;
    }

    void clear_captured(const std::string& id) {
        std::lock_guard lock(mu_);
        if (auto it = captures_.find(id); it != captures_.end()) it->second->clear();
    }

    // Completes `callback(error_info | None, result)` on the io thread.
    void send_async(const py::dict& req, py::object callback) {
        auto r = to_request(req);
        auto cb = std::make_shared<py_ref>(std::move(callback));
        py::gil_scoped_release nogil;
        eng()->async_send(std::move(r), [this, cb](error_code ec, send_result res) mutable {
            to_python([cb = std::move(cb), ec, res = std::move(res)] {
                py::object err = ec ? py::object(error_info(ec, res.diag)) : py::none();
                (*cb->p)(err, from_result(res));
            });
        });
    }

    py::tuple send(const py::dict& req) {
        if (std::this_thread::get_id() == io_thread_)
            throw std::runtime_error(
                "a blocking send from an event callback would wait for itself; use send_async");
        auto r = to_request(req);
        std::promise<std::pair<error_code, send_result>> done;
        auto fut = done.get_future();
        std::pair<error_code, send_result> out;
        {
            py::gil_scoped_release nogil;
            eng()->async_send(std::move(r), [&done](error_code ec, send_result res) {
                done.set_value({ec, std::move(res)});
            });
            out = fut.get();
        }
        py::object err =
            out.first ? py::object(error_info(out.first, out.second.diag)) : py::none();
        return py::make_tuple(err, from_result(out.second));
    }

    std::uint64_t enqueue(const py::dict& req, std::int64_t not_before_us,
                          const std::string& origin) {
        auto r = to_request(req);
        enqueue_options o{from_us(not_before_us), origin};
        py::gil_scoped_release nogil;
        return eng()->enqueue(std::move(r), o);
    }

    // Stores the item (blocking, GIL released), then calls
    // callback(error_or_None, item_or_None) once the item has ended.
    void enqueue_async(const py::dict& req, std::int64_t not_before_us, const std::string& origin,
                       py::object callback) {
        auto r = to_request(req);
        enqueue_options o{from_us(not_before_us), origin};
        auto cb = std::make_shared<py_ref>(std::move(callback));
        py::gil_scoped_release nogil;
        eng()->async_enqueue(std::move(r), o, [this, cb](error_code ec, queued_send q) mutable {
            to_python([cb = std::move(cb), ec, q = std::move(q)] {
                if (ec)
                    (*cb->p)(error_info(ec, {}), py::none());
                else
                    (*cb->p)(py::none(), from_queued(q));
            });
        });
    }

    py::object find_queued(std::uint64_t id) {
        std::optional<queued_send> q;
        {
            py::gil_scoped_release nogil;
            q = eng()->find_queued(id);
        }
        return q ? py::object(from_queued(*q)) : py::none();
    }

    py::list queued(const py::dict& d) {
        queue_filter f;
        auto state = get<std::string>(d, "state", "");
        if (!state.empty()) f.state = parse_enum<queue_state>(state, 4, "queue state");
        f.origin_prefix = get<std::string>(d, "origin_prefix", "");
        f.after_id = get_count<std::uint64_t>(d, "after_id", 0);
        f.limit = get_count<std::size_t>(d, "limit", 0);
        std::vector<queued_send> items;
        {
            py::gil_scoped_release nogil;
            items = eng()->queued(f);
        }
        py::list out;
        for (const auto& q : items) out.append(from_queued(q));
        return out;
    }

    bool cancel_queued(const py::object& who, std::uint64_t id) {
        auto actor = to_principal(who);
        py::gil_scoped_release nogil;
        return eng()->cancel_queued(actor, id);
    }

    py::dict queue_counts() {
        queue_summary c;
        {
            py::gil_scoped_release nogil;
            c = eng()->queue_counts();
        }
        return py::dict(py::arg("waiting") = c.waiting, py::arg("claimed") = c.claimed,
                        py::arg("done") = c.done, py::arg("cancelled") = c.cancelled);
    }

    // Configuration: dict in, blocking, GIL released.
    template <typename T, typename F>
    void configure(const py::object& who, T value, F fn) {
        auto actor = to_principal(who);
        py::gil_scoped_release nogil;
        fn(*eng(), actor, value);
    }

    template <typename F>
    auto unlocked(F fn) {
        py::gil_scoped_release nogil;
        return fn(*eng());
    }

    py::dict status(const std::string& id) {
        auto s = unlocked([&](engine& e) { return e.status(id); });
        return py::dict(
            py::arg("id") = s.id, py::arg("state") = std::string(to_string(s.state)),
            py::arg("health") = std::string(to_string(s.health)),
            py::arg("sent_today") = s.sent_today, py::arg("sent_this_hour") = s.sent_this_hour,
            py::arg("effective_daily_cap") =
                s.effective_daily_cap ? py::object(py::int_(*s.effective_daily_cap)) : py::none(),
            py::arg("blocked") = std::string(to_string(s.blocked)),
            py::arg("next_eligible") = opt_us(s.next_eligible));
    }

    py::dict stats() {
        auto s = unlocked([](engine& e) { return e.stats(); });
        return py::dict(py::arg("accepted") = s.accepted, py::arg("failed") = s.failed,
                        py::arg("unknown") = s.unknown, py::arg("suppressed") = s.suppressed,
                        py::arg("no_capacity") = s.no_capacity, py::arg("paused") = s.paused,
                        py::arg("rejected") = s.rejected, py::arg("duplicates") = s.duplicates,
                        py::arg("failovers") = s.failovers, py::arg("commits") = s.commits,
                        py::arg("committed_ops") = s.committed_ops);
    }

    py::object find_suppression(const std::string& addr) {
        auto s = unlocked([&](engine& e) { return e.find_suppression(addr); });
        if (!s) return py::none();
        return py::dict(
            py::arg("kind") = std::string(to_string(s->kind)), py::arg("value") = s->value,
            py::arg("reason") = std::string(to_string(s->reason)), py::arg("source") = s->source,
            py::arg("created_at") = to_us(s->created_at));
    }

    std::size_t import_suppressions(const py::object& who, const std::string& csv,
                                    const std::string& source) {
        auto actor = to_principal(who);
        py::gil_scoped_release nogil;
        std::istringstream in(csv);
        return eng()->import_suppressions(actor, in, source);
    }

    std::string export_suppressions() {
        py::gil_scoped_release nogil;
        std::ostringstream out;
        eng()->export_suppressions(out);
        return out.str();
    }

    py::list pauses() {
        auto list = unlocked([](engine& e) { return e.pauses(); });
        py::list out;
        for (const auto& p : list)
            out.append(py::dict(py::arg("scope") = std::string(to_string(p.target.scope)),
                                py::arg("id") = p.target.id, py::arg("reason") = p.reason,
                                py::arg("actor") = p.actor, py::arg("since") = to_us(p.since)));
        return out;
    }

    py::list audit_log(std::uint64_t from) {
        auto records = unlocked([&](engine& e) { return e.audit_log(from); });
        py::list out;
        for (const auto& r : records)
            out.append(py::dict(py::arg("seq") = r.seq, py::arg("at") = to_us(r.at),
                                py::arg("actor") = r.actor, py::arg("action") = r.action,
                                py::arg("resource_type") = r.resource_type,
                                py::arg("resource_id") = r.resource_id,
                                py::arg("before") = r.before, py::arg("after") = r.after,
                                py::arg("prev_hash") = r.prev_hash, py::arg("hash") = r.hash));
        return out;
    }

    // (error_info | None, bad_seq)
    py::tuple verify_audit(const py::object& checkpoint) {
        std::uint64_t bad = 0;
        error_code ec;
        std::optional<audit_head> head;
        if (!checkpoint.is_none()) {
            auto t = checkpoint.cast<py::tuple>();
            head = audit_head{t[0].cast<std::uint64_t>(), t[1].cast<std::string>()};
        }
        {
            py::gil_scoped_release nogil;
            ec = head ? eng()->verify_audit(*head, &bad) : eng()->verify_audit(&bad);
        }
        return py::make_tuple(ec ? py::object(error_info(ec, {})) : py::none(), bad);
    }

    py::tuple audit_checkpoint() {
        auto h = unlocked([](engine& e) { return e.audit_checkpoint(); });
        return py::make_tuple(h.seq, h.hash);
    }

    py::dict ingest_webhook(const std::string& provider, const std::string& method,
                            const std::vector<std::pair<std::string, std::string>>& headers,
                            const std::string& body, const py::dict& opts) {
        auto prov = to_webhook_provider(provider);
        auto wp = to_ingest_params(opts);
        auto hs = to_headers(headers);
        ingest_result r;
        {
            py::gil_scoped_release nogil;
            r = eng()->ingest_webhook(prov, webhook_request{method, hs, body}, wp);
        }
        return from_ingest(r);
    }

    py::dict apply_webhook(const std::string& provider, webhook_result parsed) {
        auto prov = to_webhook_provider(provider);
        ingest_result r;
        {
            py::gil_scoped_release nogil;
            r = eng()->apply_webhook(prov, std::move(parsed));
        }
        return from_ingest(r);
    }

    py::dict ingest_delivery_report(const std::string& message) {
        auto r = unlocked([&](engine& e) { return e.ingest_delivery_report(message); });
        py::list events;
        for (const auto& e : r.report.events) events.append(from_event(e));
        return py::dict(py::arg("recognised") = r.report.recognised,
                        py::arg("format") = r.report.format,
                        py::arg("original_message_id") = r.report.original_message_id,
                        py::arg("reason") = r.report.reason, py::arg("events") = events,
                        py::arg("suppressed") = r.suppressed,
                        py::arg("already_suppressed") = r.already_suppressed,
                        py::arg("duplicates") = r.duplicates);
    }

    py::dict verify_suppressions() {
        auto r = unlocked([](engine& e) { return e.verify_suppressions(); });
        py::list problems;
        for (const auto& p : r.problems)
            problems.append(py::dict(
                py::arg("kind") = p.kind ? py::object(py::str(std::string(to_string(*p.kind))))
                                         : py::object(py::none()),
                py::arg("value") = p.value, py::arg("audit_seq") = p.audit_seq,
                py::arg("change_seq") = p.change_seq, py::arg("what") = p.what));
        return py::dict(py::arg("ok") = r.ok, py::arg("audit_chain_ok") = r.audit_chain_ok,
                        py::arg("broken_audit_seq") = r.broken_audit_seq, py::arg("rows") = r.rows,
                        py::arg("superseded_rows") = r.superseded_rows,
                        py::arg("changes") = r.changes, py::arg("problem_count") = r.problem_count,
                        py::arg("problems") = problems);
    }

    py::dict unsubscribe(const std::string& token) {
        auto r = unlocked([&](engine& e) { return e.unsubscribe(token); });
        return py::dict(py::arg("status") = std::string(to_string(r.status)),
                        py::arg("recipient") = r.recipient, py::arg("send_id") = r.send_id,
                        py::arg("suppressed") = r.suppressed, py::arg("already") = r.already);
    }

    // --- sequences and enrollments -------------------------------------------

    void upsert_sequence(const py::object& who, const py::dict& d) {
        auto actor = to_principal(who);
        auto cfg = to_sequence(d);
        py::gil_scoped_release nogil;
        // Compiled here first so a refused template reaches Python with its
        // step, part, line and column, not only as words in a message.
        sequence_error err;
        if (!sequence::compile(cfg, &err)) {
            if (err.at) throw_template_error(*err.at, err.to_string(), err.step, err.field);
            throw exception(make_error_code(errc::invalid_argument), err.to_string());
        }
        eng()->upsert_sequence(actor, cfg);
    }

    py::object find_sequence(const std::string& id) {
        auto s = unlocked([&](engine& e) { return e.find_sequence(id); });
        return s ? py::object(from_sequence(s->config())) : py::none();
    }

    py::list sequences() {
        return to_list(unlocked([](engine& e) { return e.sequences(); }), from_sequence);
    }

    py::dict enroll(const py::object& who, const std::string& sequence_id, const std::string& to,
                    const py::object& variables, const std::string& owner,
                    const py::object& conflict) {
        auto actor = to_principal(who);
        auto contact = parse_addr(to);
        enroll_options o;
        o.variables = to_variables(variables);
        o.owner = owner;
        if (!conflict.is_none())
            o.on_enrolled_twice = parse_named<enrollment_conflict>(
                conflict.cast<std::string>(), conflict_names, "enrollment conflict");
        enrollment row;
        {
            py::gil_scoped_release nogil;
            auto e = eng();
            try {
                row = e->enroll(actor, sequence_id, contact, o);
            } catch (const exception& x) {
                if (x.code() != errc::invalid_argument) throw;
                auto seq = e->find_sequence(sequence_id);
                auto c = seq ? seq->check(o.variables) : variable_check{};
                if (c.ok()) throw;
                throw detailed_exception(x, {{}, 0, {}, c.missing, c.invalid, contact.addr_spec()});
            }
        }
        return from_enrollment(row);
    }

    py::object find_enrollment(std::uint64_t id) {
        auto e = unlocked([&](engine& g) { return g.find_enrollment(id); });
        return e ? py::object(from_enrollment(*e)) : py::none();
    }

    py::list enrollments(const py::dict& d) {
        auto f = paged_filter<enrollment_filter, enrollment_state>(d, 6, "enrollment state");
        f.sequence_id = get<std::string>(d, "sequence_id", "");
        f.address = get<std::string>(d, "address", "");
        return to_list(unlocked([&](engine& e) { return e.enrollments(f); }), from_enrollment);
    }

    py::object next_due() {
        return opt_us(unlocked([](engine& e) { return e.next_due(); }));
    }

    // --- campaigns and forecasts ---------------------------------------------

    py::dict start_campaign(const py::object& who, const py::dict& d) {
        auto actor = to_principal(who);
        auto cfg = to_campaign(d);
        campaign_info info;
        {
            py::gil_scoped_release nogil;
            try {
                info = eng()->start_campaign(actor, cfg);
            } catch (const exception& x) {
                if (x.code() != errc::invalid_argument) throw;
                if (auto why = diagnose_campaign(cfg)) throw detailed_exception(x, *why);
                throw;
            }
        }
        return from_campaign(info);
    }

    py::dict campaign_progress(const std::string& id) {
        return from_progress(unlocked([&](engine& e) { return e.campaign_progress(id); }));
    }

    py::object find_campaign(const std::string& id) {
        auto c = unlocked([&](engine& e) { return e.find_campaign(id); });
        return c ? py::object(from_campaign(*c)) : py::none();
    }

    py::list campaigns() {
        return to_list(unlocked([](engine& e) { return e.campaigns(); }), from_campaign);
    }

    py::dict forecast(const py::dict& d) {
        forecast_request req;
        if (d.contains("campaign") && !d["campaign"].is_none())
            req.campaign = to_campaign(d["campaign"].cast<py::dict>());
        req.sequence_id = get<std::string>(d, "sequence_id", "");
        for (auto item : get<py::list>(d, "contacts", py::list())) {
            auto c = item.cast<py::tuple>();
            req.contacts.push_back({parse_addr(c[0].cast<std::string>()), to_variables(c[1]),
                                    c[2].cast<std::string>()});
        }
        req.horizon = std::chrono::hours(get<std::int64_t>(d, "horizon_hours", 24 * 30));
        req.include_queue = get<bool>(d, "include_queue", true);
        req.follow = get<std::string>(d, "follow", "");
        forecast_plan plan;
        {
            py::gil_scoped_release nogil;
            auto e = eng();
            try {
                plan = e->forecast(req);
            } catch (const exception& x) {
                if (x.code() != errc::invalid_argument) throw;
                std::optional<error_detail> why;
                if (req.campaign) why = diagnose_campaign(*req.campaign);
                if (!why && !req.sequence_id.empty())
                    if (auto seq = e->find_sequence(req.sequence_id))
                        why = lacking(*seq, req.contacts);
                if (why) throw detailed_exception(x, *why);
                throw;
            }
        }
        return from_plan(plan);
    }

    // --- outbound webhook endpoints --------------------------------------------

    py::dict put_webhook_endpoint(const py::object& who, const py::dict& d) {
        auto actor = to_principal(who);
        auto ep = to_endpoint(d);
        return from_endpoint(
            unlocked([&](engine& e) { return e.put_webhook_endpoint(actor, std::move(ep)); }));
    }

    void enable_webhook_endpoint(const py::object& who, const std::string& id, bool retry_failed,
                                 std::int64_t failed_since_us) {
        auto actor = to_principal(who);
        unlocked([&](engine& e) {
            e.enable_webhook_endpoint(actor, id, retry_failed, from_us(failed_since_us));
        });
    }

    py::list webhook_endpoints() {
        return to_list(unlocked([](engine& e) { return e.webhook_endpoints(); }), from_endpoint);
    }

    py::object find_webhook_endpoint(const std::string& id) {
        auto ep = unlocked([&](engine& e) { return e.find_webhook_endpoint(id); });
        return ep ? py::object(from_endpoint(*ep)) : py::none();
    }

    py::list webhook_deliveries(const py::dict& d) {
        auto f =
            paged_filter<webhook_delivery_filter, webhook_delivery_state>(d, 4, "delivery state");
        f.endpoint = get<std::string>(d, "endpoint", "");
        return to_list(unlocked([&](engine& e) { return e.webhook_deliveries(f); }), from_delivery);
    }

    py::dict count_webhook_deliveries(const std::string& endpoint) {
        auto c = unlocked([&](engine& e) { return e.count_webhook_deliveries(endpoint); });
        return py::dict(py::arg("pending") = c.pending, py::arg("claimed") = c.claimed,
                        py::arg("delivered") = c.delivered, py::arg("failed") = c.failed,
                        py::arg("last_delivered") = opt_us(c.last_delivered));
    }

private:
    void post_event(const event& e) {
        std::shared_ptr<py_ref> cb;
        {
            std::lock_guard lock(mu_);
            cb = on_event_;
        }
        if (!cb) return;
        to_python([cb = std::move(cb), e] { (*cb->p)(from_event(e)); });
    }

    // Queues a call into Python. The engine calls its handlers on its
    // executor, perhaps inside its own frames (and locks), so the calls run
    // from the io_context's own loop instead, in the order they were
    // queued, a batch under one taking of the GIL: under load a completion
    // then costs no GIL hand-off of its own.
    void to_python(std::function<void()> fn) {
        bool schedule = false;
        {
            std::lock_guard lock(pending_mu_);
            pending_.push_back(std::move(fn));
            schedule = !std::exchange(drain_scheduled_, true);
        }
        if (schedule) asio::post(ioc_, [this] { drain_python(); });
    }

    void drain_python() {
        std::vector<std::function<void()>> batch;
        {
            std::lock_guard lock(pending_mu_);
            batch.swap(pending_);
            drain_scheduled_ = false;
        }
        if (MAILERS_PY_FINALIZING()) return;  // the references they hold are leaked (py_ref)
        py::gil_scoped_acquire gil;
        for (auto& fn : batch) call_python("mailers: callback", fn);
        batch.clear();  // drops their Python references under the GIL
    }

    // Called without the GIL.
    void shutdown(double timeout) {
        if (closed_.exchange(true)) return;  // new calls are refused from here on
        {
            std::shared_lock lock(life_);
            if (eng_) eng_->cancel();  // calls in flight that wait on a send end now
        }
        {
            std::unique_lock lock(life_);  // waits for the calls in flight
            if (eng_) {
                try {
                    eng_->flush();
                } catch (...) {
                    // The store failed; destruction below still stops the engine.
                }
                eng_.reset();
            }
        }
        work_.reset();
        auto done = done_.get_future();
        if (done.wait_for(std::chrono::duration<double>(timeout)) != std::future_status::ready)
            ioc_.stop();  // something never finished: stop waiting for it
        if (thread_.joinable()) thread_.join();
        // Dropped outside the lock: dropping a Python reference takes the GIL,
        // and a thread holding the GIL may be waiting for this lock.
        std::shared_ptr<py_ref> cb;
        std::map<std::string, std::shared_ptr<capture_transport>> captures;
        {
            std::lock_guard lock(mu_);
            cb = std::move(on_event_);
            captures.swap(captures_);
        }
    }

    asio::io_context ioc_{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_{
        asio::make_work_guard(ioc_)};
    std::promise<void> done_;
    std::thread thread_;
    std::thread::id io_thread_;
    std::shared_mutex life_;  // guards eng_'s lifetime (see eng())
    std::unique_ptr<engine> eng_;
    std::atomic<bool> closed_{false};
    std::atomic<bool> alive_{true};
    std::mutex mu_;
    std::mutex pending_mu_;
    std::vector<std::function<void()>> pending_;
    bool drain_scheduled_ = false;
    std::shared_ptr<py_ref> on_event_;
    std::map<std::string, std::shared_ptr<capture_transport>> captures_;
};

// upsert, remove, find and list for a configuration object kept by id.
template <typename Cfg>
void def_objects(py::class_<core>& cls, const char* upsert_name, const char* remove_name,
                 const char* find_name, const char* list_name, Cfg (*to)(const py::dict&),
                 py::dict (*from)(const Cfg&), void (engine::*upsert)(const principal&, const Cfg&),
                 void (engine::*remove)(const principal&, const std::string&),
                 std::optional<Cfg> (engine::*find)(const std::string&) const,
                 std::vector<Cfg> (engine::*all)() const) {
    cls.def(upsert_name, [to, upsert](core& c, py::object who, const py::dict& d) {
        c.configure(who, to(d),
                    [upsert](engine& e, const principal& a, const Cfg& v) { (e.*upsert)(a, v); });
    });
    cls.def(remove_name, [remove](core& c, py::object who, std::string id) {
        c.configure(who, id, [remove](engine& e, const principal& a, const std::string& v) {
            (e.*remove)(a, v);
        });
    });
    cls.def(find_name, [from, find](core& c, std::string id) -> py::object {
        auto found = c.unlocked([&](engine& e) { return (e.*find)(id); });
        return found ? py::object(from(*found)) : py::none();
    });
    cls.def(list_name, [from, all](core& c) {
        auto list = c.unlocked([&](engine& e) { return (e.*all)(); });
        py::list out;
        for (const auto& x : list) out.append(from(x));
        return out;
    });
}

}  // namespace

PYBIND11_MODULE(_mailers, m) {
    m.doc() = "The mailers engine's native layer; use the `mailers` package.";
    m.attr("version") = py::make_tuple(version_major, version_minor, version_patch);

    m.def("_set_error_factory", [](py::object f) { error_factory() = std::move(f); });
    py::register_exception_translator([](std::exception_ptr p) {
        try {
            if (p) std::rethrow_exception(p);
        } catch (const detailed_exception& e) {
            py::dict info = error_info(e.code(), e.diag());
            info["detail"] = from_detail(e.detail);
            py::object exc = error_factory()(info, py::none());
            PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
        } catch (const exception& e) {
            if (error_factory()) {
                py::object exc = error_factory()(error_info(e.code(), e.diag()), py::none());
                PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(exc.ptr())), exc.ptr());
            } else {
                PyErr_SetString(PyExc_RuntimeError, e.what());
            }
        }
    });

    m.def(
        "normalise_address",
        [](const std::string& a, bool plus, bool dots) {
            auto r = normalise_address(a, {plus, dots});
            if (!r) raise_error(r.error(), {"'" + a + "' is not a valid address"});
            return *r;
        },
        py::arg("address"), py::arg("fold_plus_tags") = false, py::arg("fold_gmail_dots") = false);
    m.def("parse_address", [](const std::string& a) {
        auto r = parse_address(a);
        if (!r) raise_error(r.error(), {"'" + a + "' is not a valid address"});
        return py::make_tuple(r->addr_spec(), r->display_name);
    });

    m.def("apply_preset", [](const py::dict& mailbox, const std::string& name) {
        auto cfg = to_mailbox(mailbox);
        if (name == "google_workspace")
            cfg.apply(presets::google_workspace());
        else if (name == "microsoft_365")
            cfg.apply(presets::microsoft_365());
        else
            throw exception(make_error_code(errc::invalid_argument),
                            "unknown preset '" + name + "' (google_workspace, microsoft_365)");
        return from_mailbox(cfg);
    });

    py::class_<message_template>(m, "Template")
        .def(py::init([](std::string subject, std::string text, std::string html) {
            template_error at;
            auto t = message_template::compile({subject, text, html}, &at);
            if (!t) throw_template_error(at, at.to_string(), 0, "content");
            return *t;
        }))
        .def("variables", &message_template::variables)
        .def("required_variables", &message_template::required_variables)
        .def("check",
             [](const message_template& t, const py::object& vars) {
                 auto c = t.check(to_variables(vars));
                 return py::make_tuple(c.missing, c.invalid);
             })
        .def("render", [](const message_template& t, const py::object& vars, std::uint64_t seed) {
            template_error at;
            auto r = t.render(to_variables(vars), seed, &at);
            if (!r) {
                diagnostics d;
                d.message = at.to_string();
                throw detailed_exception(exception(r.error(), d), {at, 0, "content", {}, {}, {}});
            }
            return py::make_tuple(r->subject, r->text, r->html);
        });
    m.def("bounce_rate_preset", [](std::string id, std::string scope) {
        return from_rule(
            bounce_rate_preset(std::move(id), parse_enum<pause_scope>(scope, 5, "pause scope")));
    });
    m.def("complaint_rate_preset", [](std::string id, std::string scope) {
        return from_rule(
            complaint_rate_preset(std::move(id), parse_enum<pause_scope>(scope, 5, "pause scope")));
    });
    // A provider's request verified and read, not yet applied: what
    // Core.apply_webhook takes.
    py::class_<webhook_result>(m, "ParsedWebhook")
        .def_property_readonly(
            "outcome", [](const webhook_result& r) { return std::string(to_string(r.outcome)); })
        .def_readonly("http_status", &webhook_result::http_status)
        .def_readonly("reason", &webhook_result::reason)
        .def_readonly("skipped", &webhook_result::skipped)
        .def_readonly("confirm_url", &webhook_result::confirm_url)
        .def_readonly("certificate_url", &webhook_result::certificate_url)
        .def_property_readonly("events", [](const webhook_result& r) {
            py::list out;
            for (const auto& e : r.events) out.append(from_event(e));
            return out;
        });
    m.def("parse_webhook", [](const std::string& provider, const std::string& method,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, const py::dict& opts) {
        auto prov = to_webhook_provider(provider);
        auto wp = to_ingest_params(opts);
        auto hs = to_headers(headers);
        py::gil_scoped_release nogil;
        return parse_webhook(prov, webhook_request{method, hs, body}, wp);
    });
    m.def("latency_quantile_us", [](const std::vector<std::uint64_t>& counts, double q) {
        latency_histogram h;
        if (counts.size() != h.counts.size())
            throw exception(
                make_error_code(errc::invalid_argument),
                "a latency histogram has " + std::to_string(h.counts.size()) + " buckets");
        std::copy(counts.begin(), counts.end(), h.counts.begin());
        return h.quantile_us(q);
    });
    m.def("template_seed", [](const std::string& enrollment_id, std::uint64_t step) {
        return template_seed(enrollment_id, step);
    });
    m.def("verify_webhook_signature",
          [](const std::string& secret, const std::string& id, const std::string& timestamp,
             const std::string& body, const std::string& signature, std::int64_t now_us,
             std::int64_t tolerance) {
              standard_webhooks::verify_params vp;
              if (now_us != 0) vp.now = from_us(now_us);
              vp.tolerance = std::chrono::seconds(tolerance);
              auto r = standard_webhooks::verify(secret, id, timestamp, body, signature, vp);
              return py::make_tuple(r.http_status, r.reason);
          });

    py::class_<manual_clock, std::shared_ptr<manual_clock>>(m, "ManualClock")
        .def(py::init([](std::int64_t us) { return std::make_shared<manual_clock>(from_us(us)); }))
        .def("now_us", [](const manual_clock& c) { return to_us(c.now()); })
        .def("set_us", [](manual_clock& c, std::int64_t us) { c.set(from_us(us)); })
        .def("advance_us", [](manual_clock& c, std::int64_t us) { c.advance(duration{us}); });

    using P = const principal&;
    py::class_<core> cls(m, "Core");
    def_objects<mailbox_config>(cls, "upsert_mailbox", "retire_mailbox", "find_mailbox",
                                "mailboxes", to_mailbox, from_mailbox, &engine::upsert_mailbox,
                                &engine::retire_mailbox, &engine::find_mailbox, &engine::mailboxes);
    def_objects<pool_config>(cls, "upsert_pool", "remove_pool", "find_pool", "pools", to_pool,
                             from_pool, &engine::upsert_pool, &engine::remove_pool,
                             &engine::find_pool, &engine::pools);
    cls.def(py::init<const py::dict&, const py::dict&, py::object>())
        .def("close", &core::close, py::arg("timeout") = 30.0)
        .def_property_readonly("closed", &core::closed)
        .def("on_engine_thread", &core::on_engine_thread)
        .def("set_event_callback", &core::set_event_callback)
        .def("add_provider", &core::add_provider)
        .def("save_provider", &core::save_provider)
        .def("remove_provider", &core::remove_provider)
        .def("stored_providers", &core::stored_providers)
        .def("check_provider", &core::check_provider)
        .def("captured", &core::captured)
        .def("clear_captured", &core::clear_captured)
        .def("send_async", &core::send_async)
        .def("send", &core::send)
        .def("enqueue", &core::enqueue)
        .def("enqueue_async", &core::enqueue_async)
        .def("find_queued", &core::find_queued)
        .def("queued", &core::queued)
        .def("cancel_queued", &core::cancel_queued)
        .def("queue_counts", &core::queue_counts)
        .def("set_quota",
             [](core& c, py::object who, const py::dict& d) {
                 c.configure(who, to_quota(d),
                             [](engine& e, P a, const auto& v) { e.set_quota(a, v); });
             })
        .def("remove_quota",
             [](core& c, py::object who, std::string scope, std::string key) {
                 auto s = parse_enum<quota_scope>(scope, 3, "quota scope");
                 c.configure(who, key,
                             [s](engine& e, P a, const auto& v) { e.remove_quota(a, s, v); });
             })
        .def("quotas",
             [](core& c) {
                 auto list = c.unlocked([](engine& e) { return e.quotas(); });
                 py::list out;
                 for (const auto& q : list) out.append(from_quota(q));
                 return out;
             })
        .def("status", &core::status)
        .def("stats", &core::stats)
        .def("suppress",
             [](core& c, py::object who, std::string kind, std::string value, std::string reason,
                std::string source) {
                 auto k = parse_enum<suppression_kind>(kind, 2, "suppression kind");
                 auto r = parse_suppression_reason(reason);
                 if (!r) throw exception(r.error(), "unknown suppression reason '" + reason + "'");
                 c.configure(who, value, [&](engine& e, P a, const auto& v) {
                     e.suppress(a, k, v, *r, source);
                 });
             })
        .def("unsuppress",
             [](core& c, py::object who, std::string kind, std::string value) {
                 auto k = parse_enum<suppression_kind>(kind, 2, "suppression kind");
                 bool removed = false;
                 c.configure(who, value, [&](engine& e, P a, const auto& v) {
                     removed = e.unsuppress(a, k, v);
                 });
                 return removed;
             })
        .def("is_suppressed",
             [](core& c, std::string a) {
                 return c.unlocked([&](engine& e) { return e.is_suppressed(a); });
             })
        .def("find_suppression", &core::find_suppression)
        .def("suppression_count",
             [](core& c) { return c.unlocked([](engine& e) { return e.suppression_count(); }); })
        .def("import_suppressions", &core::import_suppressions)
        .def("suppression_rules",
             [](core& c) {
                 auto r = c.unlocked([](engine& e) { return e.suppression_rules(); });
                 return py::dict(py::arg("fold_plus_tags") = r.fold_plus_tags,
                                 py::arg("fold_gmail_dots") = r.fold_gmail_dots);
             })
        .def("export_suppressions", &core::export_suppressions)
        .def("pause",
             [](core& c, py::object who, std::string scope, std::string id, std::string reason) {
                 pause_target t{parse_enum<pause_scope>(scope, 5, "pause scope"), id};
                 c.configure(who, t, [&](engine& e, P a, const auto& v) { e.pause(a, v, reason); });
             })
        .def("resume",
             [](core& c, py::object who, std::string scope, std::string id, std::string reason) {
                 pause_target t{parse_enum<pause_scope>(scope, 5, "pause scope"), id};
                 c.configure(who, t,
                             [&](engine& e, P a, const auto& v) { e.resume(a, v, reason); });
             })
        .def("is_paused",
             [](core& c, std::string scope, std::string id) {
                 pause_target t{parse_enum<pause_scope>(scope, 5, "pause scope"), id};
                 return c.unlocked([&](engine& e) { return e.is_paused(t); });
             })
        .def("pauses", &core::pauses)
        .def("daily_counts",
             [](core& c, std::string scope, std::string id, count_day from, count_day to) {
                 auto s = parse_enum<count_scope>(scope, 5, "count scope");
                 auto days = c.unlocked([&](engine& e) { return e.daily_counts(s, id, from, to); });
                 py::list out;
                 for (const auto& d : days) out.append(from_count(d));
                 return out;
             })
        .def("set_soft_bounce_policy",
             [](core& c, py::object who, const py::dict& d) {
                 soft_bounce_policy p{get_count<std::uint32_t>(d, "threshold", 0),
                                      get_count<std::uint32_t>(d, "window_days", 14)};
                 c.configure(who, p,
                             [](engine& e, P a, const auto& v) { e.set_soft_bounce_policy(a, v); });
             })
        .def("soft_bounce_policy",
             [](core& c) {
                 auto p = c.unlocked([](engine& e) { return e.soft_bounces(); });
                 return py::dict(py::arg("threshold") = p.threshold,
                                 py::arg("window_days") = p.window_days);
             })
        .def("put_pause_rule",
             [](core& c, py::object who, const py::dict& d) {
                 c.configure(who, to_rule(d),
                             [](engine& e, P a, const auto& v) { e.put_pause_rule(a, v); });
             })
        .def("remove_pause_rule",
             [](core& c, py::object who, std::string id) {
                 bool removed = false;
                 c.configure(who, id, [&](engine& e, P a, const auto& v) {
                     removed = e.remove_pause_rule(a, v);
                 });
                 return removed;
             })
        .def("pause_rules",
             [](core& c) {
                 auto rules = c.unlocked([](engine& e) { return e.pause_rules(); });
                 py::list out;
                 for (const auto& r : rules) out.append(from_rule(r));
                 return out;
             })
        .def("check_pause_rules",
             [](core& c) {
                 auto fired = c.unlocked([](engine& e) { return e.check_pause_rules(); });
                 py::list out;
                 for (const auto& f : fired) out.append(from_firing(f));
                 return out;
             })
        .def("audit_log", &core::audit_log)
        .def("verify_audit", &core::verify_audit)
        .def("audit_checkpoint", &core::audit_checkpoint)
        .def("ingest_webhook", &core::ingest_webhook)
        .def("apply_webhook", &core::apply_webhook)
        .def("unsubscribe", &core::unsubscribe)
        .def("ingest_delivery_report", &core::ingest_delivery_report)
        .def("verify_suppressions", &core::verify_suppressions)
        .def("put_role",
             [](core& c, py::object who, std::string id, std::vector<std::string> perms) {
                 role r{id, {}};
                 for (const auto& name : perms) {
                     auto pm = parse_permission(name);
                     if (!pm) throw exception(pm.error(), "unknown permission '" + name + "'");
                     r.permissions.push_back(*pm);
                 }
                 c.configure(who, r, [](engine& e, P a, const auto& v) { e.put_role(a, v); });
             })
        .def("grant_access",
             [](core& c, py::object who, std::string principal_id, std::string role_id,
                std::string scope, std::string id, bool revoke) {
                 access_grant g{principal_id,
                                role_id,
                                {parse_enum<access_scope::kind>(scope, 5, "access scope"), id}};
                 c.configure(who, g, [revoke](engine& e, P a, const auto& v) {
                     revoke ? e.revoke_access(a, v) : e.grant_access(a, v);
                 });
             })
        .def("set_access_control",
             [](core& c, py::object who, bool on) {
                 c.configure(who, on, [](engine& e, P a, bool v) { e.set_access_control(a, v); });
             })
        .def("remove_role",
             [](core& c, py::object who, std::string id) {
                 c.configure(who, id, [](engine& e, P a, const auto& v) { e.remove_role(a, v); });
             })
        .def("access_control",
             [](core& c) {
                 return from_access(c.unlocked([](engine& e) { return e.access_control(); }));
             })
        .def("latencies",
             [](core& c) {
                 auto l = c.unlocked([](engine& e) { return e.latencies(); });
                 return py::dict(py::arg("decide") = from_histogram(l.decide),
                                 py::arg("reserve") = from_histogram(l.reserve),
                                 py::arg("handoff") = from_histogram(l.handoff),
                                 py::arg("record") = from_histogram(l.record),
                                 py::arg("total") = from_histogram(l.total));
             })
        .def("erase_person",
             [](core& c, py::object who, std::string address) {
                 erasure_report r;
                 c.configure(who, address,
                             [&](engine& e, P a, const auto& v) { r = e.erase_person(a, v); });
                 return from_erasure(r);
             })
        .def("export_person",
             [](core& c, py::object who, std::string address) {
                 std::string json;
                 c.configure(who, address,
                             [&](engine& e, P a, const auto& v) { json = e.export_person(a, v); });
                 return json;
             })
        .def("purge_retained",
             [](core& c, py::object who, const py::dict& d) {
                 retention_policy policy;
                 policy.sends = std::chrono::seconds(get_count<std::int64_t>(d, "sends", 0));
                 policy.webhook_deliveries =
                     std::chrono::seconds(get_count<std::int64_t>(d, "webhook_deliveries", 0));
                 policy.audit = std::chrono::seconds(get_count<std::int64_t>(d, "audit", 0));
                 policy.counts = std::chrono::seconds(get_count<std::int64_t>(d, "counts", 0));
                 retention_report r;
                 c.configure(who, policy,
                             [&](engine& e, P a, const auto& v) { r = e.purge_retained(a, v); });
                 return py::dict(py::arg("at") = to_us(r.at), py::arg("sends") = r.sends,
                                 py::arg("webhook_deliveries") = r.webhook_deliveries,
                                 py::arg("audit_records") = r.audit_records,
                                 py::arg("counts") = r.counts,
                                 py::arg("anchor_seq") = r.anchor.seq,
                                 py::arg("audit_seq") = r.audit_seq);
             })
        .def("upsert_sequence", &core::upsert_sequence)
        .def("remove_sequence",
             [](core& c, py::object who, std::string id) {
                 c.configure(who, id,
                             [](engine& e, P a, const auto& v) { e.remove_sequence(a, v); });
             })
        .def("find_sequence", &core::find_sequence)
        .def("sequences", &core::sequences)
        .def("enroll", &core::enroll)
        .def("set_enrollment",
             [](core& c, py::object who, std::uint64_t id, std::string to, std::string why) {
                 bool changed = false;
                 c.configure(who, id, [&](engine& e, P a, std::uint64_t v) {
                     if (to == "paused")
                         changed = e.pause_enrollment(a, v);
                     else if (to == "active")
                         changed = e.resume_enrollment(a, v);
                     else
                         changed = e.stop_enrollment(a, v, why);
                 });
                 return changed;
             })
        .def("resolve_unknown_step",
             [](core& c, py::object who, std::uint64_t id, std::string what) {
                 static constexpr std::array<const char*, 2> names = {"sent", "not_sent"};
                 auto r = parse_named<step_resolution>(what, names, "step resolution");
                 bool changed = false;
                 c.configure(who, id, [&](engine& e, P a, std::uint64_t v) {
                     changed = e.resolve_unknown_step(a, v, r);
                 });
                 return changed;
             })
        .def("find_enrollment", &core::find_enrollment)
        .def("enrollments", &core::enrollments)
        .def("pause_sequence",
             [](core& c, py::object who, std::string id, std::string reason) {
                 c.configure(who, id, [&](engine& e, P a, const auto& v) {
                     e.pause_sequence(a, v, reason);
                 });
             })
        .def("resume_sequence",
             [](core& c, py::object who, std::string id) {
                 c.configure(who, id,
                             [](engine& e, P a, const auto& v) { e.resume_sequence(a, v); });
             })
        .def("is_sequence_paused",
             [](core& c, std::string id) {
                 return c.unlocked([&](engine& e) { return e.is_sequence_paused(id); });
             })
        .def("record_reply",
             [](core& c, py::object who, std::string from) {
                 std::vector<std::uint64_t> ids;
                 c.configure(who, from,
                             [&](engine& e, P a, const auto& v) { ids = e.record_reply(a, v); });
                 return ids;
             })
        .def("record_goal",
             [](core& c, py::object who, std::string address, std::string sequence_id) {
                 std::vector<std::uint64_t> ids;
                 c.configure(who, address, [&](engine& e, P a, const auto& v) {
                     ids = e.record_goal(a, v, sequence_id);
                 });
                 return ids;
             })
        .def("next_due", &core::next_due)
        .def("start_campaign", &core::start_campaign)
        .def("cancel_campaign",
             [](core& c, py::object who, std::string id) {
                 std::uint64_t n = 0;
                 c.configure(who, id,
                             [&](engine& e, P a, const auto& v) { n = e.cancel_campaign(a, v); });
                 return n;
             })
        .def("campaign_progress", &core::campaign_progress)
        .def("find_campaign", &core::find_campaign)
        .def("campaigns", &core::campaigns)
        .def("forecast", &core::forecast)
        .def("put_webhook_endpoint", &core::put_webhook_endpoint)
        .def("remove_webhook_endpoint",
             [](core& c, py::object who, std::string id) {
                 bool removed = false;
                 c.configure(who, id, [&](engine& e, P a, const auto& v) {
                     removed = e.remove_webhook_endpoint(a, v);
                 });
                 return removed;
             })
        .def("disable_webhook_endpoint",
             [](core& c, py::object who, std::string id, std::string reason) {
                 c.configure(who, id, [&](engine& e, P a, const auto& v) {
                     e.disable_webhook_endpoint(a, v, reason);
                 });
             })
        .def("enable_webhook_endpoint", &core::enable_webhook_endpoint)
        .def("webhook_endpoints", &core::webhook_endpoints)
        .def("find_webhook_endpoint", &core::find_webhook_endpoint)
        .def("webhook_deliveries", &core::webhook_deliveries)
        .def("count_webhook_deliveries", &core::count_webhook_deliveries)
        .def("metrics_text",
             [](core& c) { return c.unlocked([](engine& e) { return e.metrics_text(); }); })
        .def("flush", [](core& c) { c.unlocked([](engine& e) { e.flush(); }); })
        .def("cancel", [](core& c) { c.unlocked([](engine& e) { e.cancel(); }); });
}
