#include "engine/serialize.hpp"

#include <simdjson.h>

#include "json/writer.hpp"

namespace mailers::detail {
namespace {

std::int64_t micros(time_point t) {
    return t.time_since_epoch().count();
}

void write_limits(json::writer& w, const std::vector<rate_limit>& limits) {
    w.key("limits").begin_array();
    for (const auto& l : limits) {
        w.begin_object()
            .member("max", l.max)
            .member("seconds", static_cast<std::int64_t>(l.length.count()))
            .member("kind", to_string(l.kind))
            .end_object();
    }
    w.end_array();
}

using simdjson::dom::element;
using simdjson::dom::object;

error_code bad() {
    return make_error_code(errc::store_error);
}

std::string get_string(object o, const char* k) {
    std::string_view s;
    if (o[k].get(s) == simdjson::SUCCESS) return std::string(s);
    return {};
}
std::int64_t get_int(object o, const char* k, std::int64_t def = 0) {
    std::int64_t v;
    if (o[k].get(v) == simdjson::SUCCESS) return v;
    std::uint64_t u;
    if (o[k].get(u) == simdjson::SUCCESS) return static_cast<std::int64_t>(u);
    return def;
}
std::uint64_t get_uint(object o, const char* k, std::uint64_t def = 0) {
    std::uint64_t v;
    if (o[k].get(v) == simdjson::SUCCESS) return v;
    return def;
}

std::vector<rate_limit> read_limits(object o) {
    std::vector<rate_limit> out;
    simdjson::dom::array arr;
    if (o["limits"].get(arr) != simdjson::SUCCESS) return out;
    for (element e : arr) {
        object lo;
        if (e.get(lo) != simdjson::SUCCESS) continue;
        rate_limit l;
        l.max = get_uint(lo, "max");
        l.length = std::chrono::seconds(get_int(lo, "seconds", 86400));
        l.kind =
            get_string(lo, "kind") == "calendar" ? window_kind::calendar : window_kind::rolling;
        out.push_back(l);
    }
    return out;
}

template <class F>
auto parse_object(std::string_view json, F&& f) -> decltype(f(std::declval<object>())) {
    thread_local simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return bad();
    return f(o);
}

}  // namespace

std::string quota_object_id(quota_scope scope, std::string_view key) {
    return std::string(to_string(scope)) + ":" + std::string(key);
}

std::string pause_object_id(const pause_target& t) {
    return std::string(to_string(t.scope)) + ":" + t.id;
}

std::optional<pause_scope> pause_scope_named(std::string_view name) {
    for (auto s : {pause_scope::workspace, pause_scope::pool, pause_scope::mailbox,
                   pause_scope::provider, pause_scope::sender_domain})
        if (name == to_string(s)) return s;
    return std::nullopt;
}

std::string to_json(const pause_info& p) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("scope", to_string(p.target.scope))
        .member("id", p.target.id)
        .member("reason", p.reason)
        .member("actor", p.actor)
        .member("since_us", micros(p.since))
        .end_object();
    return out;
}

std::string to_json(const stored_provider& p) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("id", p.id)
        .member("dsn", p.dsn)
        .member("created_us", micros(p.created_at))
        .member("updated_us", micros(p.updated_at))
        .end_object();
    return out;
}

boost::system::result<stored_provider> stored_provider_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<stored_provider> {
        stored_provider p;
        p.id = get_string(o, "id");
        p.dsn = get_string(o, "dsn");
        if (p.id.empty() || p.dsn.empty()) return bad();
        p.created_at = time_point(duration(get_int(o, "created_us")));
        p.updated_at = time_point(duration(get_int(o, "updated_us")));
        return p;
    });
}

std::string to_json(const sequence_config& s) {
    std::string out;
    json::writer w(out);
    w.begin_object()
        .member("id", s.id)
        .member("name", s.name)
        .member("time_zone", s.time_zone)
        .member("business_weekdays", static_cast<std::uint64_t>(s.business_weekdays))
        .key("holidays")
        .begin_array();
    for (const auto& h : s.holidays) w.value(h);
    w.end_array()
        .member("on_enrolled_twice",
                s.on_enrolled_twice == enrollment_conflict::merge ? "merge" : "refuse")
        .member("reply_stops", to_string(s.reply_stops))
        .member("goal_stops", to_string(s.goal_stops))
        .key("steps")
        .begin_array();
    for (const auto& st : s.steps) {
        const char* unit = st.delay.in == sequence_delay::unit::hours  ? "hours"
                           : st.delay.in == sequence_delay::unit::days ? "days"
                                                                       : "business_days";
        w.begin_object()
            .member("delay_unit", unit)
            .member("delay", static_cast<std::uint64_t>(st.delay.amount))
            .member("subject", st.content.subject)
            .member("text", st.content.text)
            .member("html", st.content.html)
            .member("sender", to_string(st.sender.kind))
            .member("sender_id", st.sender.id)
            .member("fallback_pool", st.sender.fallback_pool)
            .member("threading", to_string(st.threading))
            .end_object();
    }
    w.end_array().end_object();
    return out;
}

boost::system::result<sequence_config> sequence_config_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<sequence_config> {
        sequence_config s;
        s.id = get_string(o, "id");
        if (s.id.empty()) return bad();
        s.name = get_string(o, "name");
        s.time_zone = get_string(o, "time_zone");
        s.business_weekdays = static_cast<std::uint8_t>(
            get_uint(o, "business_weekdays", send_window::weekdays_mon_fri));
        simdjson::dom::array arr;
        if (o["holidays"].get(arr) == simdjson::SUCCESS)
            for (element e : arr) {
                std::string_view h;
                if (e.get(h) != simdjson::SUCCESS) return bad();
                s.holidays.emplace_back(h);
            }
        s.on_enrolled_twice = get_string(o, "on_enrolled_twice") == "merge"
                                  ? enrollment_conflict::merge
                                  : enrollment_conflict::refuse;
        auto scope = [](const std::string& v) {
            return v == "this_sequence" ? stop_scope::this_sequence : stop_scope::every_sequence;
        };
        s.reply_stops = scope(get_string(o, "reply_stops"));
        s.goal_stops = scope(get_string(o, "goal_stops"));
        if (o["steps"].get(arr) != simdjson::SUCCESS) return bad();
        for (element e : arr) {
            object so;
            if (e.get(so) != simdjson::SUCCESS) return bad();
            sequence_step st;
            auto unit = get_string(so, "delay_unit");
            if (unit == "hours")
                st.delay.in = sequence_delay::unit::hours;
            else if (unit == "days")
                st.delay.in = sequence_delay::unit::days;
            else if (unit == "business_days")
                st.delay.in = sequence_delay::unit::business_days;
            else
                return bad();
            st.delay.amount = static_cast<std::uint32_t>(get_uint(so, "delay"));
            st.content.subject = get_string(so, "subject");
            st.content.text = get_string(so, "text");
            st.content.html = get_string(so, "html");
            auto kind = get_string(so, "sender");
            bool known = false;
            for (auto k : {sender_rule_kind::pool, sender_rule_kind::mailbox,
                           sender_rule_kind::previous_step, sender_rule_kind::owner})
                if (kind == to_string(k)) {
                    st.sender.kind = k;
                    known = true;
                }
            if (!known) return bad();
            st.sender.id = get_string(so, "sender_id");
            st.sender.fallback_pool = get_string(so, "fallback_pool");
            st.threading = get_string(so, "threading") == "reply" ? step_threading::reply
                                                                   : step_threading::new_thread;
            s.steps.push_back(std::move(st));
        }
        return s;
    });
}

boost::system::result<pause_info> pause_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<pause_info> {
        pause_info p;
        auto scope = pause_scope_named(get_string(o, "scope"));
        if (!scope) return bad();
        p.target.scope = *scope;
        p.target.id = get_string(o, "id");
        p.reason = get_string(o, "reason");
        p.actor = get_string(o, "actor");
        p.since = time_point(duration(get_int(o, "since_us")));
        return p;
    });
}

std::string to_json(const mailbox_config& m) {
    std::string out;
    json::writer w(out);
    w.begin_object()
        .member("id", m.id)
        .member("address", m.from.addr_spec())
        .member("display_name", m.from.display_name)
        .member("provider", m.provider);
    write_limits(w, m.limits);
    w.member("max_recipients_per_message", m.max_recipients_per_message)
        .key("warmup")
        .begin_object()
        .member("start", m.warmup.start)
        .member("step", m.warmup.step)
        .member("target", m.warmup.target)
        .member("start_date_us", micros(m.warmup.start_date))
        .end_object()
        .member("time_zone", m.time_zone)
        .key("window")
        .begin_object()
        .member("start_hour", static_cast<unsigned>(m.window.start_hour))
        .member("end_hour", static_cast<unsigned>(m.window.end_hour))
        .member("weekdays", static_cast<unsigned>(m.window.weekdays))
        .end_object()
        .member("min_gap_s", static_cast<std::int64_t>(m.min_gap.count()))
        .member("jitter_s", static_cast<std::int64_t>(m.jitter.count()))
        .member("priority", m.priority)
        .member("weight", m.weight)
        .member("state", to_string(m.state))
        .key("breaker")
        .begin_object()
        .member("failure_threshold", m.breaker.failure_threshold)
        .member("cool_down_s", static_cast<std::int64_t>(m.breaker.cool_down.count()))
        .member("max_cool_down_s", static_cast<std::int64_t>(m.breaker.max_cool_down.count()))
        .end_object()
        .end_object();
    return out;
}

boost::system::result<mailbox_config> mailbox_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<mailbox_config> {
        mailbox_config m;
        m.id = get_string(o, "id");
        auto addr = get_string(o, "address");
        auto at = addr.rfind('@');
        if (m.id.empty() || at == std::string::npos) return bad();
        m.from.local = addr.substr(0, at);
        m.from.domain = addr.substr(at + 1);
        m.from.display_name = get_string(o, "display_name");
        m.provider = get_string(o, "provider");
        m.limits = read_limits(o);
        m.max_recipients_per_message =
            static_cast<std::uint32_t>(get_uint(o, "max_recipients_per_message"));
        object wu;
        if (o["warmup"].get(wu) == simdjson::SUCCESS) {
            m.warmup.start = static_cast<std::uint32_t>(get_uint(wu, "start"));
            m.warmup.step = static_cast<std::uint32_t>(get_uint(wu, "step"));
            m.warmup.target = static_cast<std::uint32_t>(get_uint(wu, "target"));
            m.warmup.start_date = time_point(duration(get_int(wu, "start_date_us")));
        }
        m.time_zone = get_string(o, "time_zone");
        object win;
        if (o["window"].get(win) == simdjson::SUCCESS) {
            m.window.start_hour = static_cast<std::uint8_t>(get_uint(win, "start_hour"));
            m.window.end_hour = static_cast<std::uint8_t>(get_uint(win, "end_hour", 24));
            m.window.weekdays = static_cast<std::uint8_t>(get_uint(win, "weekdays", 0x7f));
        }
        m.min_gap = std::chrono::seconds(get_int(o, "min_gap_s"));
        m.jitter = std::chrono::seconds(get_int(o, "jitter_s"));
        m.priority = static_cast<std::int32_t>(get_int(o, "priority"));
        m.weight = static_cast<std::uint32_t>(get_uint(o, "weight", 1));
        auto st = get_string(o, "state");
        m.state = st == "paused"    ? mailbox_state::paused
                  : st == "retired" ? mailbox_state::retired
                                    : mailbox_state::active;
        object br;
        if (o["breaker"].get(br) == simdjson::SUCCESS) {
            m.breaker.failure_threshold =
                static_cast<std::uint32_t>(get_uint(br, "failure_threshold", 5));
            m.breaker.cool_down = std::chrono::seconds(get_int(br, "cool_down_s", 300));
            m.breaker.max_cool_down = std::chrono::seconds(get_int(br, "max_cool_down_s", 3600));
        }
        return m;
    });
}

std::string to_json(const pool_config& p) {
    std::string out;
    json::writer w(out);
    w.begin_object().member("id", p.id).key("mailboxes").begin_array();
    for (const auto& m : p.mailboxes) w.value(m);
    w.end_array()
        .key("policy")
        .begin_object()
        .member("kind", to_string(p.policy.kind))
        .member("max_attempts", p.policy.max_attempts)
        .member("sticky_sender", p.policy.sticky_sender)
        .end_object()
        .end_object();
    return out;
}

boost::system::result<pool_config> pool_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<pool_config> {
        pool_config p;
        p.id = get_string(o, "id");
        if (p.id.empty()) return bad();
        simdjson::dom::array arr;
        if (o["mailboxes"].get(arr) == simdjson::SUCCESS) {
            for (element e : arr) {
                std::string_view s;
                if (e.get(s) == simdjson::SUCCESS) p.mailboxes.emplace_back(s);
            }
        }
        object pol;
        if (o["policy"].get(pol) == simdjson::SUCCESS) {
            auto k = get_string(pol, "kind");
            p.policy.kind = k == "weighted"   ? rotation_kind::weighted
                            : k == "priority" ? rotation_kind::priority
                                              : rotation_kind::round_robin;
            p.policy.max_attempts = static_cast<std::uint32_t>(get_uint(pol, "max_attempts", 3));
            bool sticky = false;
            if (pol["sticky_sender"].get(sticky) == simdjson::SUCCESS)
                p.policy.sticky_sender = sticky;
        }
        return p;
    });
}

std::string to_json(const quota& q) {
    std::string out;
    json::writer w(out);
    w.begin_object().member("scope", to_string(q.scope)).member("key", q.key);
    write_limits(w, q.limits);
    w.member("time_zone", q.time_zone).end_object();
    return out;
}

boost::system::result<quota> quota_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<quota> {
        quota q;
        auto s = get_string(o, "scope");
        q.scope = s == "sender_domain"      ? quota_scope::sender_domain
                  : s == "recipient_domain" ? quota_scope::recipient_domain
                                            : quota_scope::provider;
        q.key = get_string(o, "key");
        q.limits = read_limits(o);
        q.time_zone = get_string(o, "time_zone");
        return q;
    });
}

std::string to_json(const suppression_entry& e) {
    std::string out;
    json::writer w(out);
    w.begin_object()
        .member("kind", e.kind == suppression_kind::address ? "address" : "domain")
        .member("value", e.value)
        .member("reason", to_string(e.reason))
        .member("source", e.source)
        .member("created_at_us", micros(e.created_at))
        .end_object();
    return out;
}

std::string to_json(const suppression_settings& s) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("normaliser", static_cast<std::int64_t>(s.normaliser))
        .member("fold_plus_tags", s.options.fold_plus_tags)
        .member("fold_gmail_dots", s.options.fold_gmail_dots)
        .end_object();
    return out;
}

boost::system::result<suppression_settings> suppression_settings_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<suppression_settings> {
        suppression_settings s;
        s.normaliser = static_cast<int>(get_int(o, "normaliser"));
        bool plus = false, dots = false;
        if (o["fold_plus_tags"].get(plus) != simdjson::SUCCESS ||
            o["fold_gmail_dots"].get(dots) != simdjson::SUCCESS || s.normaliser <= 0)
            return bad();
        s.options = {plus, dots};
        return s;
    });
}

std::string to_json(const campaign_info& c) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("id", c.id)
        .member("name", c.name)
        .member("subject", c.content.subject)
        .member("text", c.content.text)
        .member("html", c.content.html)
        .member("pool", c.pool)
        .member("mailbox", c.mailbox)
        .member("not_before", micros(c.not_before))
        .member("started_at", micros(c.started_at))
        .member("actor", c.actor)
        .member("total", c.total)
        .member("suppressed_at_start", c.suppressed_at_start)
        .member("cancelled", c.cancelled)
        .member("digest", c.digest)
        .end_object();
    return out;
}

boost::system::result<campaign_info> campaign_info_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<campaign_info> {
        campaign_info c;
        c.id = get_string(o, "id");
        if (c.id.empty()) return bad();
        c.name = get_string(o, "name");
        c.content.subject = get_string(o, "subject");
        c.content.text = get_string(o, "text");
        c.content.html = get_string(o, "html");
        c.pool = get_string(o, "pool");
        c.mailbox = get_string(o, "mailbox");
        c.not_before = time_point(duration(get_int(o, "not_before")));
        c.started_at = time_point(duration(get_int(o, "started_at")));
        c.actor = get_string(o, "actor");
        c.total = get_uint(o, "total");
        c.suppressed_at_start = get_uint(o, "suppressed_at_start");
        bool cancelled = false;
        if (o["cancelled"].get(cancelled) == simdjson::SUCCESS) c.cancelled = cancelled;
        c.digest = get_string(o, "digest");
        return c;
    });
}

// --- soft bounces and pause rules --------------------------------------------

std::optional<rule_metric> rule_metric_named(std::string_view name) {
    for (auto m : {rule_metric::hard_bounces, rule_metric::bounces, rule_metric::complaints,
                   rule_metric::failures})
        if (name == to_string(m)) return m;
    return std::nullopt;
}

std::string to_json(const pause_rule& r) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("id", r.id)
        .member("scope", to_string(r.scope))
        .member("target", r.target)
        .member("metric", to_string(r.metric))
        .member("window_days", r.window_days)
        .member("window_sends", r.window_sends)
        .member("max_rate", r.max_rate)
        .member("min_volume", r.min_volume)
        .member("grace_days", r.grace_days)
        .end_object();
    return out;
}

boost::system::result<pause_rule> pause_rule_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<pause_rule> {
        pause_rule r;
        r.id = get_string(o, "id");
        auto scope = pause_scope_named(get_string(o, "scope"));
        auto metric = rule_metric_named(get_string(o, "metric"));
        double rate = 0;
        if (!scope || !metric || r.id.empty() || o["max_rate"].get(rate) != simdjson::SUCCESS)
            return bad();
        r.scope = *scope;
        r.metric = *metric;
        r.target = get_string(o, "target");
        r.window_days = static_cast<std::uint32_t>(get_uint(o, "window_days"));
        r.window_sends = get_uint(o, "window_sends");
        r.max_rate = rate;
        r.min_volume = get_uint(o, "min_volume");
        r.grace_days = static_cast<std::uint32_t>(get_uint(o, "grace_days"));
        return r;
    });
}

std::string to_json(const soft_bounce_policy& p) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("threshold", p.threshold)
        .member("window_days", p.window_days)
        .end_object();
    return out;
}

boost::system::result<soft_bounce_policy> soft_bounce_policy_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<soft_bounce_policy> {
        soft_bounce_policy p;
        p.threshold = static_cast<std::uint32_t>(get_uint(o, "threshold"));
        p.window_days = static_cast<std::uint32_t>(get_uint(o, "window_days", 14));
        return p;
    });
}

std::string to_json(const resume_mark& m) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("at_us", micros(m.at))
        .member("actor", m.actor)
        .member("reason", m.reason)
        .member("generation", m.generation)
        .end_object();
    return out;
}

boost::system::result<resume_mark> resume_mark_from_json(std::string_view json) {
    return parse_object(json, [](object o) -> boost::system::result<resume_mark> {
        resume_mark m;
        m.at = time_point(duration(get_int(o, "at_us")));
        m.actor = get_string(o, "actor");
        m.reason = get_string(o, "reason");
        m.generation = get_uint(o, "generation");
        return m;
    });
}

}  // namespace mailers::detail
