#include "decide/eligibility.hpp"

#include <algorithm>

#include "decide/caps.hpp"

namespace mailers::decide {

std::optional<time_point> earliest(std::optional<time_point> a,
                                   std::optional<time_point> b) noexcept {
    if (!a) return b;
    if (!b) return a;
    return std::min(*a, *b);
}

const cap_hint* holding(const cap_hint* h, time_point now) noexcept {
    return h && now < h->until ? h : nullptr;
}

mailbox_check check_mailbox(const mailbox_facts& m, time_point now) {
    mailbox_check out{{}, m.breaker};
    auto refuse = [&](ineligible_reason r, std::optional<time_point> next = std::nullopt) {
        out.verdict = {r, next};
        return out;
    };
    if (m.state == mailbox_state::retired) return refuse(ineligible_reason::retired);
    if (m.state == mailbox_state::paused) return refuse(ineligible_reason::paused);
    // The narrowest pause is named first: it is the one to lift.
    if (m.paused.mailbox) return refuse(ineligible_reason::paused);
    if (m.paused.provider) return refuse(ineligible_reason::provider_paused);
    if (m.paused.sender_domain) return refuse(ineligible_reason::domain_paused);
    if (m.paused.workspace_or_pool) return refuse(ineligible_reason::paused);
    // Credentials that failed stay failed until the configuration changes.
    if (m.auth_failed) return refuse(ineligible_reason::unhealthy);
    out.breaker = breaker_at(m.breaker, now);
    if (out.breaker.health == health_state::open)
        return refuse(ineligible_reason::unhealthy, out.breaker.open_until);
    if (!breaker_admits(out.breaker)) return refuse(ineligible_reason::probe_in_flight);
    if (now < m.throttled_until) return refuse(ineligible_reason::throttled, m.throttled_until);
    if (now < m.exhausted_until) return refuse(ineligible_reason::exhausted, m.exhausted_until);
    if (!detail::window_open(m.window, m.zone, now))
        return refuse(ineligible_reason::outside_window,
                      detail::next_window_open(m.window, m.zone, now));
    if (now < m.gap_until) return refuse(ineligible_reason::min_gap, m.gap_until);
    // The store's refusal stands for sends by other processes that this
    // engine's counters do not see.
    if (auto h = holding(m.hint, now)) return refuse(h->reason, h->until);

    static thread_local const detail::rate_counter none;
    const auto& counter = m.counter ? *m.counter : none;
    if (auto until = counter.blocked_until(m.limits, m.zone, now))
        return refuse(ineligible_reason::cap_reached, until);
    if (auto ramp = warmup_limit(m.warmup, m.limits, m.zone, now))
        if (auto until = counter.blocked_until(std::span(&*ramp, 1), m.zone, now))
            return refuse(ineligible_reason::warmup_cap_reached, until);
    return out;
}

eligibility check_quotas(std::span<const quota_facts> quotas, time_point now) {
    static thread_local const detail::rate_counter none;
    for (const auto& q : quotas) {
        if (q.unreadable) return {ineligible_reason::quota_reached, std::nullopt};
        const auto& counter = q.counter ? *q.counter : none;
        auto until = counter.blocked_until(q.limits, q.zone, now);
        if (!until)
            if (auto h = holding(q.hint, now)) until = h->until;
        if (until) return {ineligible_reason::quota_reached, until};
    }
    return {};
}

quota_refs quotas_for(std::string_view provider, std::string_view sender_domain,
                      std::string_view recipient_domain) noexcept {
    quota_refs r;
    r.items[r.count++] = {quota_scope::provider, provider, false};
    r.items[r.count++] = {quota_scope::sender_domain, sender_domain, false};
    if (!recipient_domain.empty()) {
        r.items[r.count++] = {quota_scope::recipient_domain, recipient_domain, false};
        r.items[r.count++] = {quota_scope::recipient_domain, "*", true};
    }
    return r;
}

}  // namespace mailers::decide
