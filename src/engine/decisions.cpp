// Eligibility, reservation and rotation: the decision path. Pure in-memory
// work under engine::impl::mu; no I/O.
#include <algorithm>
#include <limits>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"

namespace mailers {

using namespace detail;

namespace {
// How many reservation times a counter must keep to decide its limits
// exactly. Uncapped counters keep a few thousand, for status() figures.
std::uint64_t keep_for(const std::vector<effective_limit>& limits,
                       std::optional<std::uint64_t> ramp) {
    std::uint64_t keep = 4096;
    for (const auto& l : limits) keep = std::max(keep, l.max);
    if (ramp) keep = std::max(keep, *ramp);
    return keep;
}

std::optional<time_point> earliest(std::optional<time_point> a, std::optional<time_point> b) {
    if (!a) return b;
    if (!b) return a;
    return std::min(*a, *b);
}
}  // namespace

bool engine::impl::is_paused_locked(pause_scope s, const std::string& id) const {
    return pauses.count(detail::pause_object_id(pause_target{s, id})) != 0;
}

bool engine::impl::paused_for(const mailbox_rt& mb, const std::string& pool_id) const {
    if (pauses.empty()) return false;
    return is_paused_locked(pause_scope::workspace, "") ||
           (!pool_id.empty() && is_paused_locked(pause_scope::pool, pool_id)) ||
           is_paused_locked(pause_scope::mailbox, mb.cfg.id) ||
           is_paused_locked(pause_scope::provider, mb.cfg.provider) ||
           is_paused_locked(pause_scope::sender_domain, mb.sender_domain);
}

eligibility engine::impl::check(mailbox_rt& mb, const std::string& pool_id,
                                std::string_view recipient_domain, time_point now) {
    if (mb.cfg.state == mailbox_state::retired) return {ineligible_reason::retired, std::nullopt};
    if (mb.cfg.state == mailbox_state::paused) return {ineligible_reason::paused, std::nullopt};
    if (!pauses.empty()) {
        if (is_paused_locked(pause_scope::mailbox, mb.cfg.id))
            return {ineligible_reason::paused, std::nullopt};
        if (is_paused_locked(pause_scope::provider, mb.cfg.provider))
            return {ineligible_reason::provider_paused, std::nullopt};
        if (is_paused_locked(pause_scope::sender_domain, mb.sender_domain))
            return {ineligible_reason::domain_paused, std::nullopt};
        if (is_paused_locked(pause_scope::workspace, "") ||
            (!pool_id.empty() && is_paused_locked(pause_scope::pool, pool_id)))
            return {ineligible_reason::paused, std::nullopt};
    }
    if (mb.auth_failed) return {ineligible_reason::unhealthy, std::nullopt};
    if (mb.health == health_state::open) {
        if (now < mb.open_until) return {ineligible_reason::unhealthy, mb.open_until};
        mb.health = health_state::half_open;
        mb.probe_in_flight = false;
    }
    if (mb.health == health_state::half_open && mb.probe_in_flight)
        return {ineligible_reason::probe_in_flight, std::nullopt};
    if (now < mb.throttled_until) return {ineligible_reason::throttled, mb.throttled_until};
    if (now < mb.exhausted_until) return {ineligible_reason::exhausted, mb.exhausted_until};
    if (!window_open(mb.cfg.window, mb.zone, now))
        return {ineligible_reason::outside_window, next_window_open(mb.cfg.window, mb.zone, now)};
    if (now < mb.gap_until) return {ineligible_reason::min_gap, mb.gap_until};

    if (auto until = mb.counter.blocked_until(mb.limits, mb.zone, now))
        return {ineligible_reason::cap_reached, until};
    if (auto ramp = warmup_cap(mb.cfg.warmup, mb.zone, now)) {
        // The ramp is a per-day cap counted like the mailbox's own day limit.
        effective_limit l{*ramp, std::chrono::seconds(86400), window_kind::calendar};
        for (const auto& own : mb.limits)
            if (own.length == std::chrono::seconds(86400)) l.kind = own.kind;
        if (auto until = mb.counter.blocked_until(std::span(&l, 1), mb.zone, now))
            return {ineligible_reason::warmup_cap_reached, until};
    }
    // Shared quotas on the provider, the sender domain and the recipient domain.
    std::optional<time_point> quota_until;
    for_each_quota(mb, recipient_domain, [&](const quota_rt& q, bool per_domain) {
        const rate_counter* c = &q.counter;
        if (per_domain) {
            // A domain not yet counted still has to pass the limits: a zero
            // cap refuses even its first send.
            static const rate_counter none;
            auto d = q.per_domain.find(std::string(recipient_domain));
            c = d == q.per_domain.end() ? &none : &d->second;
        }
        quota_until = c->blocked_until(q.limits, q.zone, now);
        return quota_until.has_value();
    });
    if (quota_until) return {ineligible_reason::quota_reached, quota_until};
    return {};
}

std::optional<reservation> engine::impl::reserve(mailbox_rt& mb, std::string_view recipient_domain,
                                                 time_point now) {
    reservation r;
    r.mailbox = mb.cfg.id;
    r.at = now;
    mb.counter.trim(now, mb.horizon, keep_for(mb.limits, warmup_cap(mb.cfg.warmup, mb.zone, now)));
    mb.counter.add(now);
    for_each_quota_counter(mb, recipient_domain, [&](quota_rt& q, rate_counter& c) {
        c.trim(now, q.horizon, keep_for(q.limits, std::nullopt));
        c.add(now);
        r.quota_counters.emplace_back(&q, &c);
    });
    auto gap = std::chrono::duration_cast<duration>(mb.cfg.min_gap);
    if (mb.cfg.jitter.count() > 0) {
        std::uniform_int_distribution<std::int64_t> dist(
            0, std::chrono::duration_cast<duration>(mb.cfg.jitter).count());
        gap += duration(dist(rng));
    }
    if (gap.count() > 0) mb.gap_until = now + gap;
    if (mb.health == health_state::half_open) {
        mb.probe_in_flight = true;
        r.probe = true;
    }
    return r;
}

void engine::impl::release(const reservation& r) {
    auto it = mailboxes.find(r.mailbox);
    if (it != mailboxes.end()) {
        it->second.counter.remove(r.at);
        if (r.probe) it->second.probe_in_flight = false;
    }
    for (auto& [q, c] : r.quota_counters) c->remove(r.at);
}

void engine::impl::record_success(mailbox_rt& mb, const reservation& r) {
    mb.consecutive_failures = 0;
    if (r.probe || mb.health != health_state::closed) {
        mb.health = health_state::closed;
        mb.probe_in_flight = false;
        mb.cool_down = std::chrono::seconds(0);
    }
}

void engine::impl::record_transient_failure(mailbox_rt& mb, const reservation& r, time_point now) {
    ++mb.consecutive_failures;
    bool trip = r.probe || mb.consecutive_failures >=
                               std::max<std::uint32_t>(1, mb.cfg.breaker.failure_threshold);
    if (!trip) return;
    // A failed probe doubles the cool-down, up to the maximum.
    mb.cool_down = (r.probe && mb.cool_down.count() > 0)
                       ? std::min(mb.cool_down * 2,
                                  std::max(mb.cfg.breaker.max_cool_down, mb.cfg.breaker.cool_down))
                       : mb.cfg.breaker.cool_down;
    mb.health = health_state::open;
    mb.probe_in_flight = false;
    mb.open_until = now + std::chrono::duration_cast<duration>(mb.cool_down);
}

void detail::rebuild(pool_rt& p, std::unordered_map<std::string, mailbox_rt>& mailboxes) {
    p.members.clear();
    for (const auto& id : p.cfg.mailboxes) {
        auto it = mailboxes.find(id);
        if (it != mailboxes.end()) p.members.push_back(&it->second);
    }
    const auto n = p.members.size();
    p.by_priority.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) p.by_priority[i] = i;
    std::stable_sort(p.by_priority.begin(), p.by_priority.end(), [&](auto a, auto b) {
        return p.members[a]->cfg.priority < p.members[b]->cfg.priority;
    });
    // Smooth weighted round-robin, unrolled into one cycle of sum(weights)
    // picks; very large sums are scaled down to at most 65,536 slots.
    std::uint64_t total = 0;
    for (auto* m : p.members) total += std::max<std::uint32_t>(1, m->cfg.weight);
    const double scale = total > 65536 ? 65536.0 / static_cast<double>(total) : 1.0;
    std::vector<std::int64_t> weight(n), current(n, 0);
    std::int64_t sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
        weight[i] = std::max<std::int64_t>(
            1,
            static_cast<std::int64_t>(
                static_cast<double>(std::max<std::uint32_t>(1, p.members[i]->cfg.weight)) * scale));
        sum += weight[i];
    }
    p.schedule.clear();
    p.schedule.reserve(static_cast<std::size_t>(sum));
    for (std::int64_t k = 0; k < sum; ++k) {
        std::size_t best = 0;
        for (std::size_t i = 0; i < n; ++i) {
            current[i] += weight[i];
            if (current[i] > current[best]) best = i;
        }
        current[best] -= sum;
        p.schedule.push_back(static_cast<std::uint32_t>(best));
    }
    if (p.cursor >= std::max<std::size_t>(1, std::max(n, p.schedule.size()))) p.cursor = 0;
}

engine::impl::pick_result engine::impl::pick(const send_request& req, const std::string& recipient,
                                             std::string_view recipient_domain,
                                             const std::unordered_set<std::string>& tried,
                                             time_point now) {
    pick_result out;
    auto consider = [&](mailbox_rt& mb, const std::string& pool_id) -> bool {
        auto e = check(mb, pool_id, recipient_domain, now);
        if (e.reason == ineligible_reason::none) return true;
        if (out.reason == ineligible_reason::none) out.reason = e.reason;
        out.retry_at = earliest(out.retry_at, e.next);
        return false;
    };
    auto take = [&](mailbox_rt& mb) {
        out.mailbox = &mb;
        out.res = reserve(mb, recipient_domain, now);
        out.retry_at.reset();
        out.reason = ineligible_reason::none;
    };

    if (req.pool.empty()) {
        auto it = mailboxes.find(req.mailbox);
        if (it == mailboxes.end() || tried.count(req.mailbox)) return out;
        if (consider(it->second, {})) take(it->second);
        return out;
    }
    auto pit = pools.find(req.pool);
    if (pit == pools.end()) return out;
    auto& pool = pit->second;
    const auto n = pool.members.size();
    if (n == 0) return out;
    const auto& pool_id = pool.cfg.id;

    // Each member is checked at most once per pick.
    std::vector<char> seen(n, 0);
    auto try_member = [&](std::uint32_t idx) -> bool {
        if (seen[idx]) return false;
        seen[idx] = 1;
        auto* mb = pool.members[idx];
        if (!tried.empty() && tried.count(mb->cfg.id)) return false;
        return consider(*mb, pool_id);
    };

    if (pool.cfg.policy.sticky_sender) {
        auto s = pool.sticky.find(recipient);
        if (s != pool.sticky.end()) {
            for (std::uint32_t i = 0; i < n; ++i) {
                if (pool.members[i]->cfg.id == s->second) {
                    if (try_member(i)) {
                        take(*pool.members[i]);
                        return out;
                    }
                    break;
                }
            }
        }
    }

    switch (pool.cfg.policy.kind) {
        case rotation_kind::round_robin:
            for (std::size_t k = 0; k < n; ++k) {
                auto idx = static_cast<std::uint32_t>((pool.cursor + k) % n);
                if (try_member(idx)) {
                    pool.cursor = (idx + 1) % n;
                    take(*pool.members[idx]);
                    return out;
                }
            }
            break;
        case rotation_kind::weighted: {
            const auto len = pool.schedule.size();
            for (std::size_t k = 0; k < len; ++k) {
                auto pos = (pool.cursor + k) % len;
                if (try_member(pool.schedule[pos])) {
                    pool.cursor = (pos + 1) % len;
                    take(*pool.members[pool.schedule[pos]]);
                    return out;
                }
            }
            break;
        }
        case rotation_kind::priority: {
            // Lowest priority value first; equals take turns.
            std::size_t g = 0;
            while (g < n) {
                auto prio = pool.members[pool.by_priority[g]]->cfg.priority;
                std::size_t e = g;
                while (e < n && pool.members[pool.by_priority[e]]->cfg.priority == prio) ++e;
                const auto size = e - g;
                for (std::size_t k = 0; k < size; ++k) {
                    auto idx = pool.by_priority[g + (pool.cursor + k) % size];
                    if (try_member(idx)) {
                        ++pool.cursor;
                        take(*pool.members[idx]);
                        return out;
                    }
                }
                g = e;
            }
            break;
        }
    }
    return out;
}

}  // namespace mailers
