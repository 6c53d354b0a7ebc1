// Eligibility, reservation and rotation: the decision path. The rules are
// in src/decide/; this side gathers their facts from memory under
// engine::impl::mu and keeps what they return. No I/O.
#include <algorithm>
#include <array>

#include "decide/caps.hpp"
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

const cap_hint* find_hint(const std::unordered_map<std::string, cap_hint>& hints,
                          const std::string& key) {
    auto it = hints.find(key);
    return it == hints.end() ? nullptr : &it->second;
}
}  // namespace

const cap_hint* engine::impl::hint(const std::string& key, time_point now) const {
    if (cap_hints.empty()) return nullptr;
    return decide::holding(find_hint(cap_hints, key), now);
}

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
                                const domain_counts& domains, time_point now) {
    decide::mailbox_facts f;
    f.state = mb.cfg.state;
    if (!pauses.empty()) {
        f.paused.mailbox = is_paused_locked(pause_scope::mailbox, mb.cfg.id);
        f.paused.provider = is_paused_locked(pause_scope::provider, mb.cfg.provider);
        f.paused.sender_domain = is_paused_locked(pause_scope::sender_domain, mb.sender_domain);
        f.paused.workspace_or_pool =
            is_paused_locked(pause_scope::workspace, "") ||
            (!pool_id.empty() && is_paused_locked(pause_scope::pool, pool_id));
    }
    f.auth_failed = mb.auth_failed;
    f.breaker = mb.breaker();
    f.throttled_until = mb.throttled_until;
    f.exhausted_until = mb.exhausted_until;
    f.gap_until = mb.gap_until;
    f.window = mb.cfg.window;
    f.zone = mb.zone;
    if (!cap_hints.empty()) f.hint = find_hint(cap_hints, mb.cap_key);
    f.counter = &mb.counter;
    f.limits = mb.limits;
    f.warmup = mb.cfg.warmup;
    auto own = decide::check_mailbox(f, now);
    mb.breaker() = own.breaker;
    if (!own.verdict.ok()) return own.verdict;

    // Shared quotas on the provider and the sender domain, then on every
    // receiving domain: a cc or bcc counts as much as the `to`.
    std::array<decide::quota_facts, 4> qs;
    const auto check_quotas = [&](std::string_view domain) {
        std::size_t nq = 0;
        for_each_quota(mb, domain, [&](const quota_rt& q, bool per_domain) {
            if (!domain.empty() && q.q.scope != quota_scope::recipient_domain) return false;
            auto& qf = qs[nq++];
            qf.limits = q.limits;
            qf.zone = q.zone;
            qf.unreadable = q.unreadable;
            if (per_domain) {
                auto d = q.per_domain.find(std::string(domain));
                qf.counter = d == q.per_domain.end() ? nullptr : &d->second;
            } else {
                qf.counter = &q.counter;
            }
            if (!cap_hints.empty())
                qf.hint = find_hint(
                    cap_hints, per_domain ? decide::any_recipient_domain_key(domain) : q.cap_key);
            return nq == qs.size();
        });
        return decide::check_quotas(std::span(qs.data(), nq), now);
    };
    auto verdict = check_quotas({});
    for (std::size_t i = 0; verdict.ok() && i < domains.size(); ++i)
        verdict = check_quotas(domains[i].first);
    return verdict;
}

std::optional<reservation> engine::impl::reserve(mailbox_rt& mb, const domain_counts& domains,
                                                 time_point now) {
    reservation r;
    r.mailbox = mb.cfg.id;
    r.at = now;
    mb.counter.trim(now, mb.horizon, keep_for(mb.limits, warmup_cap(mb.cfg.warmup, mb.zone, now)));
    mb.counter.add(now);
    const auto count = [&](quota_rt& q, rate_counter& c, std::uint64_t uses) {
        c.trim(now, q.horizon, keep_for(q.limits, std::nullopt));
        for (std::uint64_t i = 0; i < uses; ++i) {
            c.add(now);
            r.quota_counters.emplace_back(&q, &c);
        }
    };
    for_each_quota_counter(mb, {}, [&](quota_rt& q, rate_counter& c) { count(q, c, 1); });
    for (const auto& [domain, n] : domains)
        for_each_quota(mb, domain, [&](quota_rt& q, bool per_domain) {
            if (q.q.scope == quota_scope::recipient_domain)
                count(q, per_domain ? q.per_domain[domain] : q.counter, n);
            return false;
        });
    auto gap = std::chrono::duration_cast<duration>(mb.cfg.min_gap);
    if (mb.cfg.jitter.count() > 0) {
        std::uniform_int_distribution<std::int64_t> dist(
            0, std::chrono::duration_cast<duration>(mb.cfg.jitter).count());
        gap += duration(dist(rng));
    }
    if (gap.count() > 0) mb.gap_until = now + gap;
    r.gap = gap;
    r.probe = decide::sends_probe(mb.breaker());
    mb.breaker() = decide::on_reserve(mb.breaker());
    return r;
}

void engine::impl::release(const reservation& r) {
    auto it = mailboxes.find(r.mailbox);
    if (it != mailboxes.end()) {
        it->second.counter.remove(r.at);
        it->second.breaker() = decide::on_release(it->second.breaker(), r.probe);
    }
    for (auto& [q, c] : r.quota_counters) c->remove(r.at);
}

void engine::impl::record_success(mailbox_rt& mb, const reservation& r) {
    mb.breaker() = decide::on_success(mb.breaker(), r.probe);
}

void engine::impl::record_transient_failure(mailbox_rt& mb, const reservation& r, time_point now) {
    mb.breaker() = decide::on_transient_failure(mb.breaker(), mb.cfg.breaker, r.probe, now);
}

void engine::impl::apply_outcome(mailbox_rt* mb, const reservation& r,
                                 const decide::outcome_decision& d, time_point now) {
    if (d.release)
        release(r);
    else if (d.end_probe && mb)
        mb->breaker() = decide::on_release(mb->breaker(), r.probe);
    if (!mb) return;
    if (d.route_ok) record_success(*mb, r);
    switch (d.effect) {
        case decide::sender_effect::none:
            break;
        case decide::sender_effect::throttle:
            mb->throttled_until = d.until;
            break;
        case decide::sender_effect::exhausted:
            mb->exhausted_until = d.until;
            break;
        case decide::sender_effect::auth_failed:
            mb->auth_failed = true;
            break;
        case decide::sender_effect::breaker_failure:
        case decide::sender_effect::reputation_block:
            record_transient_failure(*mb, r, now);
            break;
    }
}

void detail::rebuild(pool_rt& p, std::unordered_map<std::string, mailbox_rt>& mailboxes) {
    p.members.clear();
    std::vector<decide::member_rank> ranks;
    ranks.reserve(p.cfg.mailboxes.size());
    for (const auto& id : p.cfg.mailboxes) {
        auto it = mailboxes.find(id);
        if (it == mailboxes.end()) continue;
        p.members.push_back(&it->second);
        ranks.push_back({it->second.cfg.weight, it->second.cfg.priority});
    }
    p.order = decide::plan_rotation(ranks, p.order.cursor);
}

engine::impl::pick_result engine::impl::pick(const send_request& req, const std::string& recipient,
                                             const domain_counts& domains,
                                             const std::unordered_set<std::string>& tried,
                                             time_point now) {
    pick_result out;
    auto take = [&](mailbox_rt& mb) {
        out.mailbox = &mb;
        out.res = reserve(mb, domains, now);
    };

    if (req.pool.empty()) {
        auto it = mailboxes.find(req.mailbox);
        if (it == mailboxes.end() || tried.count(req.mailbox)) return out;
        auto e = check(it->second, {}, domains, now);
        if (e.ok()) {
            take(it->second);
        } else {
            out.reason = e.reason;
            out.retry_at = e.next;
        }
        return out;
    }
    auto pit = pools.find(req.pool);
    if (pit == pools.end() || pit->second.unreadable) return out;
    auto& pool = pit->second;
    const auto& pool_id = pool.cfg.id;

    std::optional<std::uint32_t> sticky;
    if (pool.cfg.policy.sticky_sender) {
        auto s = pool.sticky.find(recipient);
        if (s != pool.sticky.end()) {
            for (std::uint32_t i = 0; i < pool.members.size(); ++i) {
                if (pool.members[i]->cfg.id == s->second) {
                    sticky = i;
                    break;
                }
            }
        }
    }
    auto picked = decide::pick(
        pool.order, pool.cfg.policy.kind, sticky,
        [&](std::uint32_t i) { return !tried.empty() && tried.count(pool.members[i]->cfg.id); },
        [&](std::uint32_t i) { return check(*pool.members[i], pool_id, domains, now); });
    pool.order.cursor = picked.cursor;
    out.reason = picked.reason;
    out.retry_at = picked.retry_at;
    if (picked.member) take(*pool.members[*picked.member]);
    return out;
}

}  // namespace mailers
