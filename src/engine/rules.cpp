// Per-day counts, the soft-bounce threshold and pause rules: what the engine
// adds to the store's counts, and the rules it evaluates on them.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <set>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"
#include "json/writer.hpp"

namespace mailers {

using namespace detail;

std::string_view to_string(rule_metric m) noexcept {
    switch (m) {
        case rule_metric::hard_bounces:
            return "hard_bounces";
        case rule_metric::bounces:
            return "bounces";
        case rule_metric::complaints:
            return "complaints";
        case rule_metric::failures:
            return "failures";
    }
    return "?";
}

namespace {
pause_rule preset(std::string id, pause_scope scope, rule_metric metric, std::uint32_t days,
                  double max_rate, std::uint64_t min_volume) {
    pause_rule r;
    r.id = std::move(id);
    r.scope = scope;
    r.metric = metric;
    r.window_days = days;
    r.max_rate = max_rate;
    r.min_volume = min_volume;
    r.grace_days = 7;
    return r;
}
}  // namespace

pause_rule bounce_rate_preset(std::string id, pause_scope scope) {
    return preset(std::move(id), scope, rule_metric::bounces, 28, 0.02, 20);
}

pause_rule complaint_rate_preset(std::string id, pause_scope scope) {
    return preset(std::move(id), scope, rule_metric::complaints, 7, 0.003, 1000);
}

namespace {

constexpr std::string_view rule_kind = "rule";
constexpr std::string_view resume_kind = "rule.resume";
constexpr std::string_view soft_bounce_id = "soft_bounces";
/// How far back a "last N sends" window looks, at most.
constexpr count_day max_send_window_days = 90;
constexpr count_day max_count_query_days = 3660;

bool valid_rule_id(std::string_view id) {
    return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '.' || c == '_' || c == '-' || c == ':';
    });
}

count_scope count_scope_of(pause_scope s) {
    switch (s) {
        case pause_scope::workspace:
            return count_scope::workspace;
        case pause_scope::pool:
            return count_scope::pool;
        case pause_scope::mailbox:
            return count_scope::mailbox;
        case pause_scope::provider:
            return count_scope::provider;
        case pause_scope::sender_domain:
            return count_scope::sender_domain;
    }
    return count_scope::workspace;
}

std::optional<count_metric> metric_of(const event& ev) {
    switch (ev.type) {
        case event_type::delivered:
            return count_metric::delivered;
        case event_type::deferred:
            return count_metric::deferred;
        case event_type::bounced:
            return ev.bounce == bounce_class::soft ? count_metric::bounced_soft
                                                   : count_metric::bounced_hard;
        case event_type::complained:
            return count_metric::complained;
        case event_type::unsubscribed:
            return count_metric::unsubscribed;
        case event_type::opened:
            return count_metric::opened;
        case event_type::clicked:
            return count_metric::clicked;
        default:
            return std::nullopt;
    }
}

// The day an event is counted on: the day it happened, as its reporter
// says, unless that is unknown or ahead of our clock (a provider's clock
// running fast must not count it on a day that has not come).
count_day event_day(const event& ev, time_point now) {
    if (ev.at == time_point{} || ev.at > now) return utc_day(now);
    return utc_day(ev.at);
}

// The rule's count and volume over its window, from the target's days in
// day order, the newest day `today`.
struct measurement {
    std::uint64_t count = 0, volume = 0;
    count_day from = 0, to = 0;
};

measurement measure(const pause_rule& r, const std::vector<daily_count>& days, count_day today) {
    measurement m;
    m.to = today;
    const auto volume_of = [&](const daily_count& d) {
        return d[count_metric::sent] +
               (r.metric == rule_metric::failures ? d[count_metric::failed] : 0);
    };
    const auto count_of = [&](const daily_count& d) -> std::uint64_t {
        switch (r.metric) {
            case rule_metric::hard_bounces:
                return d[count_metric::bounced_hard];
            case rule_metric::bounces:
                return d[count_metric::bounced_hard] + d[count_metric::bounced_soft];
            case rule_metric::complaints:
                return d[count_metric::complained];
            case rule_metric::failures:
                return d[count_metric::failed];
        }
        return 0;
    };
    if (r.window_sends == 0) {
        m.from = today - static_cast<count_day>(r.window_days) + 1;
        for (const auto& d : days) {
            if (d.day < m.from || d.day > today) continue;
            m.count += count_of(d);
            m.volume += volume_of(d);
        }
        return m;
    }
    // The fewest recent days holding window_sends sends.
    m.from = today - max_send_window_days + 1;
    for (auto it = days.rbegin(); it != days.rend(); ++it) {
        if (it->day > today || it->day < m.from) continue;
        m.count += count_of(*it);
        m.volume += volume_of(*it);
        if (m.volume >= r.window_sends) {
            m.from = it->day;
            break;
        }
    }
    return m;
}

std::string firing_json(const pause_rule& r, const rule_firing& f, std::uint64_t generation) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("rule", r.id)
        .member("metric", to_string(r.metric))
        .member("count", f.count)
        .member("volume", f.volume)
        .member("rate", f.rate)
        .member("max_rate", r.max_rate)
        .member("min_volume", r.min_volume)
        .member("from_day", f.from_day)
        .member("to_day", f.to_day)
        .member("generation", generation)
        .end_object();
    return out;
}

}  // namespace

// --- memory --------------------------------------------------------------------

bool engine::impl::apply_rules_object(const stored_object& o) {
    if (o.kind == rule_kind) {
        auto r = pause_rule_from_json(o.json);
        {
            std::lock_guard lock(rules_mu);
            if (r) {
                pause_rules.insert_or_assign(o.id, std::move(*r));
            } else {
                pause_rules.erase(o.id);
                params.log.log(log_level::error,
                               fmt::format("pause rule '{}' in the store cannot be read; it does "
                                           "not fire from this process until it is put again",
                                           o.id));
            }
            have_rules = !pause_rules.empty();
        }
        start_rule_sweeps();
        return true;
    }
    if (o.kind == resume_kind) {
        std::lock_guard lock(rules_mu);
        resume_marks[o.id] = o.json;
        return true;
    }
    if (o.kind == "settings" && o.id == soft_bounce_id) {
        auto p = soft_bounce_policy_from_json(o.json);
        std::lock_guard lock(rules_mu);
        // Unreadable: off here, so nothing is suppressed on rules unknown.
        soft_bounces = p ? *p : soft_bounce_policy{};
        if (!p)
            params.log.log(log_level::error,
                           "the soft-bounce policy in the store cannot be read; soft bounces "
                           "suppress nothing from this process until it is set again");
        return true;
    }
    return false;
}

bool engine::impl::remove_rules_object(const std::string& kind, const std::string& id) {
    std::lock_guard lock(rules_mu);
    if (kind == rule_kind) {
        pause_rules.erase(id);
        have_rules = !pause_rules.empty();
        return true;
    }
    if (kind == resume_kind) {
        resume_marks.erase(id);
        return true;
    }
    if (kind == "settings" && id == soft_bounce_id) {
        soft_bounces = {};
        return true;
    }
    return false;
}

std::pair<std::uint64_t, time_point> engine::impl::resume_state(const std::string& oid) const {
    std::lock_guard lock(rules_mu);
    auto it = resume_marks.find(oid);
    if (it == resume_marks.end()) return {0, time_point{}};
    auto m = resume_mark_from_json(it->second);
    // Unreadable: the next generation is unknown, so the rule waits for
    // the next resume rather than risk firing twice.
    if (!m) return {std::numeric_limits<std::uint64_t>::max(), time_point::max()};
    return {m->generation, m->at};
}

// --- counts ----------------------------------------------------------------------

std::vector<std::pair<count_scope, std::string>> engine::impl::count_targets(
    const std::string& mailbox, const std::string& pool, const std::string& provider) {
    std::vector<std::pair<count_scope, std::string>> out;
    out.reserve(5);
    out.emplace_back(count_scope::workspace, std::string());
    if (!mailbox.empty()) {
        out.emplace_back(count_scope::mailbox, mailbox);
        std::lock_guard lock(mu);
        if (auto it = mailboxes.find(mailbox); it != mailboxes.end())
            out.emplace_back(count_scope::sender_domain, it->second.sender_domain);
    }
    if (!pool.empty()) out.emplace_back(count_scope::pool, pool);
    if (!provider.empty()) out.emplace_back(count_scope::provider, provider);
    return out;
}

void engine::impl::add_outcome_counts(std::vector<store_op>& ops, event_type t,
                                      const ledger_row& row, time_point now) {
    count_metric m;
    switch (t) {
        case event_type::sent:
            m = count_metric::sent;
            break;
        case event_type::failed:
            m = count_metric::failed;
            break;
        case event_type::unknown:
            m = count_metric::unknown;
            break;
        default:
            return;
    }
    ops.push_back(store_ops::add_counts{
        utc_day(now), m, count_targets(row.mailbox, row.pool, row.provider), 1, true});
}

std::optional<store_ops::add_counts> engine::impl::event_counts(const event& ev,
                                                                const std::string& provider,
                                                                time_point now) {
    auto m = metric_of(ev);
    if (!m) return std::nullopt;
    // Only an event tied to one of the workspace's sends names a mailbox;
    // one that is not counts for the workspace alone.
    auto targets = count_targets(ev.mailbox, ev.pool, provider);
    return store_ops::add_counts{event_day(ev, now), *m, std::move(targets), 1, false};
}

// --- soft bounces ----------------------------------------------------------------

std::optional<store_ops::tally_soft_bounce> engine::impl::soft_bounce_tally(const event& ev,
                                                                            const std::string& key,
                                                                            time_point now) {
    if (ev.type != event_type::bounced || ev.bounce != bounce_class::soft) return std::nullopt;
    soft_bounce_policy p;
    {
        std::lock_guard lock(rules_mu);
        p = soft_bounces;
    }
    if (p.threshold == 0) return std::nullopt;
    return store_ops::tally_soft_bounce{
        key, now, now - std::chrono::duration_cast<duration>(std::chrono::days(p.window_days)),
        p.threshold};
}

bool engine::impl::suppress_soft_bounced(const std::string& key) {
    if (suppressed(key)) return false;
    soft_bounce_policy p;
    {
        std::lock_guard lock(rules_mu);
        p = soft_bounces;
    }
    // Every engine whose tally reached the threshold gets here; the first
    // to record the key suppresses, once per window, and a tally that
    // reached it in a process that stopped before this is caught by the
    // next soft bounce, which reaches it again.
    const auto now = clk->now();
    store_ops::record_key once{
        "soft-bounce", key, now,
        now + std::chrono::duration_cast<duration>(std::chrono::days(std::max(1u, p.window_days))),
        0};
    return store_suppression(principal{"soft-bounce-threshold", "Soft-bounce threshold"},
                             suppression_kind::address, key, suppression_reason::hard_bounce,
                             "soft-bounce-threshold", &once);
}

// --- rules -----------------------------------------------------------------------

std::vector<pause_target> engine::impl::rule_targets(const std::string& mailbox,
                                                     const std::string& pool,
                                                     const std::string& provider) {
    std::vector<pause_target> out;
    for (auto& [scope, id] : count_targets(mailbox, pool, provider)) {
        switch (scope) {
            case count_scope::workspace:
                out.push_back({pause_scope::workspace, {}});
                break;
            case count_scope::mailbox:
                out.push_back({pause_scope::mailbox, id});
                break;
            case count_scope::pool:
                out.push_back({pause_scope::pool, id});
                break;
            case count_scope::provider:
                out.push_back({pause_scope::provider, id});
                break;
            case count_scope::sender_domain:
                out.push_back({pause_scope::sender_domain, id});
                break;
        }
    }
    return out;
}

std::vector<rule_firing> engine::impl::evaluate_rules(const std::vector<pause_target>& targets) {
    std::vector<rule_firing> fired;
    if (!have_rules.load(std::memory_order_acquire)) return fired;
    std::vector<pause_rule> rules;
    {
        std::lock_guard lock(rules_mu);
        for (const auto& [id, r] : pause_rules) rules.push_back(r);
    }
    std::set<std::pair<pause_scope, std::string>> seen;
    for (const auto& t : targets) {
        if (!seen.emplace(t.scope, t.id).second) continue;
        const auto oid = pause_object_id(t);
        std::optional<std::vector<daily_count>> days;  // read once per target
        for (const auto& r : rules) {
            if (r.scope != t.scope || (!r.target.empty() && r.target != t.id)) continue;
            {
                std::lock_guard lock(mu);
                if (pauses.count(oid)) break;
            }
            const auto now = clk->now();
            const auto [generation, resumed_at] = resume_state(oid);
            if (resumed_at == time_point::max()) break;  // its resume mark cannot be read
            if (resumed_at != time_point{} &&
                now < resumed_at +
                          std::chrono::duration_cast<duration>(std::chrono::days(r.grace_days)))
                continue;
            const count_day today = utc_day(now);
            if (!days) {
                with_store([&](store& st) {
                    days = st.daily_counts(params.workspace, count_scope_of(t.scope), t.id,
                                           today - std::max(max_send_window_days, longest_count_window_days),
                                           today);
                });
            }
            const auto m = measure(r, *days, today);
            if (m.volume == 0 || m.volume < r.min_volume) continue;
            const double rate = static_cast<double>(m.count) / static_cast<double>(m.volume);
            if (rate < r.max_rate) continue;

            rule_firing f{r.id, t, m.count, m.volume, rate, m.from, m.to};
            const std::string reason = fmt::format(
                "rule {}: {} {:.3f}% ({} of {} sends, days {} to {}) reached {:.3f}%", r.id,
                to_string(r.metric), rate * 100, m.count, m.volume, m.from, m.to, r.max_rate * 100);
            const std::string pause_json = to_json(pause_info{t, reason, "rule:" + r.id, now});
            event ev;
            ev.type = event_type::auto_paused;
            ev.at = now;
            ev.detail = reason;
            if (t.scope == pause_scope::mailbox) ev.mailbox = t.id;
            if (t.scope == pause_scope::pool) ev.pool = t.id;
            if (t.scope == pause_scope::provider) ev.provider = t.id;
            // One firing per rule, target and resume: the engine whose
            // record is first pauses, audits and emits; another that
            // measured the same crossing finds the key taken.
            const std::string key = fmt::format("{}|{}|{}", r.id, oid, generation);
            std::vector<store_op> ops;
            ops.push_back(store_ops::record_key{
                "rule", key, now,
                now + std::chrono::duration_cast<duration>(std::chrono::days(3650)), 0});
            ops.push_back(store_ops::put_object{stored_object{"pause", oid, pause_json}});
            const bool rows = add_outbox_ops(ops, ev, "rule:" + key) > 0;
            // The audit record mutate appends is guarded too.
            std::get<store_ops::record_key>(ops[0]).guards = ops.size();
            const auto results =
                mutate(principal{"rule:" + r.id, "pause rule " + r.id}, "rule.fired",
                       to_string(t.scope), t.id, {}, firing_json(r, f, generation), std::move(ops), [&] {
                           std::lock_guard lock(mu);
                           pauses[oid] = pause_json;
                       });
            if (results.empty() || !results[0].applied) break;
            params.log.log(log_level::warning, fmt::format("{} paused: {}", oid, reason));
            if (rows) wake_outbox();
            emit(std::move(ev), true);
            fired.push_back(std::move(f));
            break;  // paused now: no other rule fires on it
        }
    }
    return fired;
}

void engine::impl::queue_rule_check(std::vector<pause_target> targets) {
    std::lock_guard lock(rule_work_mu);
    if (rule_work_stop) return;
    for (auto& t : targets) rule_work.push_back(std::move(t));
    if (!rule_worker.joinable()) rule_worker = std::thread([this] { run_rule_worker(); });
    rule_work_cv.notify_one();
}

void engine::impl::start_rule_sweeps() {
    // The worker sweeps on its own once running; queueing nothing starts it.
    if (have_rules.load(std::memory_order_acquire) && params.rule_check_interval.count() > 0)
        queue_rule_check({});
}

void engine::impl::run_rule_worker() {
    using steady = std::chrono::steady_clock;
    const auto interval = params.rule_check_interval;
    const bool sweeps = interval.count() > 0;
    auto next_sweep = steady::now() + interval;
    std::unique_lock lock(rule_work_mu);
    for (;;) {
        auto ready = [&] { return rule_work_stop || !rule_work.empty(); };
        if (sweeps)
            rule_work_cv.wait_until(lock, next_sweep, ready);
        else
            rule_work_cv.wait(lock, ready);
        if (rule_work_stop) return;
        auto work = std::move(rule_work);
        rule_work.clear();
        const bool sweep = sweeps && steady::now() >= next_sweep;
        if (sweep) next_sweep = steady::now() + interval;
        lock.unlock();
        try {
            // A sweep covers every target, those queued included.
            if (sweep && have_rules.load(std::memory_order_acquire)) work = all_rule_targets();
            if (!work.empty()) evaluate_rules(work);
        } catch (const std::exception& e) {
            params.log.log(log_level::error,
                           fmt::format("pause rules could not be evaluated: {}", e.what()));
        }
        lock.lock();
    }
}

void engine::impl::stop_rule_worker() {
    {
        std::lock_guard lock(rule_work_mu);
        rule_work_stop = true;
    }
    rule_work_cv.notify_all();
    if (!rule_worker.joinable()) return;
    // The last owner may let go on the worker itself, which then ends on
    // its own once this returns.
    if (rule_worker.get_id() == std::this_thread::get_id())
        rule_worker.detach();
    else
        rule_worker.join();
}

// --- engine ----------------------------------------------------------------------

std::vector<daily_count> engine::daily_counts(count_scope scope, std::string_view id,
                                              count_day from, count_day to) const {
    if (from > to || to - from >= max_count_query_days)
        fail(errc::invalid_argument,
             fmt::format("daily_counts: days {} to {} are not a range of 1 to {} days", from, to,
                         max_count_query_days));
    std::vector<daily_count> stored;
    impl_->with_store(
        [&](store& st) { stored = st.daily_counts(impl_->params.workspace, scope, id, from, to); });
    std::vector<daily_count> out;
    out.reserve(static_cast<std::size_t>(to - from) + 1);
    auto it = stored.begin();
    for (count_day d = from; d <= to; ++d) {
        while (it != stored.end() && it->day < d) ++it;
        if (it != stored.end() && it->day == d)
            out.push_back(*it);
        else
            out.push_back({d, {}});
    }
    return out;
}

void engine::set_soft_bounce_policy(const principal& who, const soft_bounce_policy& p) {
    if (p.threshold > 1000)
        fail(errc::invalid_argument,
             fmt::format("soft-bounce threshold {} is above 1000", p.threshold));
    if (p.window_days < 1 || p.window_days > 365)
        fail(errc::invalid_argument,
             fmt::format("soft-bounce window of {} days is outside 1 .. 365", p.window_days));
    impl_->authorize(who, "suppression.soft_bounces", "workspace", "");
    const auto before = to_json(soft_bounces());
    const auto after = to_json(p);
    impl_->mutate(
        who, "suppression.soft_bounces", "settings", std::string(soft_bounce_id), before, after,
        {store_ops::put_object{stored_object{"settings", std::string(soft_bounce_id), after}}},
        [&] {
            std::lock_guard lock(impl_->rules_mu);
            impl_->soft_bounces = p;
        });
}

soft_bounce_policy engine::soft_bounces() const {
    std::lock_guard lock(impl_->rules_mu);
    return impl_->soft_bounces;
}

void engine::put_pause_rule(const principal& who, const pause_rule& given) {
    pause_rule r = given;
    if (!valid_rule_id(r.id))
        fail(errc::invalid_argument,
             fmt::format("pause rule id '{}' is not 1 to 128 of A-Z a-z 0-9 . _ - :", r.id));
    if (has_crlf(r.target)) fail(errc::invalid_argument, "pause rule target contains CR or LF");
    if (r.scope == pause_scope::workspace && !r.target.empty())
        fail(errc::invalid_argument, "a workspace pause rule takes no target");
    if (r.scope == pause_scope::sender_domain && !r.target.empty()) {
        auto d = normalise_domain(r.target);
        if (!d) fail(errc::invalid_address, fmt::format("'{}' is not a domain", r.target));
        r.target = *d;
    }
    if (!(r.max_rate > 0 && r.max_rate <= 1))
        fail(errc::invalid_argument,
             fmt::format("pause rule max_rate {} is outside (0, 1]", r.max_rate));
    if (r.window_sends == 0 && (r.window_days < 1 || r.window_days > 365))
        fail(errc::invalid_argument,
             fmt::format("pause rule window of {} days is outside 1 .. 365", r.window_days));
    if (r.window_sends > 1'000'000'000)
        fail(errc::invalid_argument, "pause rule window_sends is above 1000000000");
    if (r.grace_days > 365)
        fail(errc::invalid_argument,
             fmt::format("pause rule grace of {} days is above 365", r.grace_days));
    impl_->authorize(who, "rule.put", r.target.empty() ? "workspace" : to_string(r.scope),
                     r.target);
    std::string before;
    {
        std::lock_guard lock(impl_->rules_mu);
        if (auto it = impl_->pause_rules.find(r.id); it != impl_->pause_rules.end())
            before = to_json(it->second);
    }
    const auto after = to_json(r);
    impl_->mutate(who, "rule.put", "rule", r.id, before, after,
                  {store_ops::put_object{stored_object{std::string(rule_kind), r.id, after}}}, [&] {
                      std::lock_guard lock(impl_->rules_mu);
                      impl_->pause_rules.insert_or_assign(r.id, r);
                      impl_->have_rules = true;
                  });
    impl_->start_rule_sweeps();
}

bool engine::remove_pause_rule(const principal& who, const std::string& id) {
    std::optional<pause_rule> r;
    {
        std::lock_guard lock(impl_->rules_mu);
        if (auto it = impl_->pause_rules.find(id); it != impl_->pause_rules.end()) r = it->second;
    }
    if (!r) return false;
    impl_->authorize(who, "rule.remove", r->target.empty() ? "workspace" : to_string(r->scope),
                     r->target);
    impl_->mutate(who, "rule.remove", "rule", id, to_json(*r), {},
                  {store_ops::delete_object{std::string(rule_kind), id}},
                  [&] { impl_->remove_rules_object(std::string(rule_kind), id); });
    return true;
}

std::vector<pause_rule> engine::pause_rules() const {
    std::vector<pause_rule> out;
    std::lock_guard lock(impl_->rules_mu);
    for (const auto& [id, r] : impl_->pause_rules) out.push_back(r);
    return out;
}

std::vector<pause_target> engine::impl::all_rule_targets() const {
    std::vector<pause_target> targets{{pause_scope::workspace, {}}};
    std::lock_guard lock(mu);
    for (const auto& [id, mb] : mailboxes) {
        targets.push_back({pause_scope::mailbox, id});
        targets.push_back({pause_scope::provider, mb.cfg.provider});
        targets.push_back({pause_scope::sender_domain, mb.sender_domain});
    }
    for (const auto& [id, p] : pools) targets.push_back({pause_scope::pool, id});
    for (const auto& [id, t] : providers) targets.push_back({pause_scope::provider, id});
    return targets;
}

std::vector<rule_firing> engine::check_pause_rules() {
    return impl_->evaluate_rules(impl_->all_rule_targets());
}

}  // namespace mailers
