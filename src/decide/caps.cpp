#include "decide/caps.hpp"

#include <algorithm>

namespace mailers::decide {

cap_window window_at(const detail::effective_limit& l, detail::zone_ptr zone, time_point at) {
    cap_window w;
    w.max = l.max;
    w.floor = l.kind == window_kind::calendar
                  ? detail::period_start(l.length, zone, at)
                  // The oldest use a rolling window still counts is one
                  // made exactly `length` ago plus a tick: a cap of 1 per
                  // day allows the next send exactly 24 hours later.
                  : at - std::chrono::duration_cast<duration>(l.length) + duration(1);
    return w;
}

void add_windows(planned_claim& c, std::span<const detail::effective_limit> limits,
                 detail::zone_ptr zone, time_point at) {
    for (const auto& l : limits) {
        c.claim.windows.push_back(window_at(l, zone, at));
        c.rules.push_back(window_rule{l.length, l.kind, zone});
    }
}

std::optional<detail::effective_limit> warmup_limit(
    const warmup_ramp& ramp, std::span<const detail::effective_limit> own_limits,
    detail::zone_ptr zone, time_point at) {
    auto cap = detail::warmup_cap(ramp, zone, at);
    if (!cap) return std::nullopt;
    detail::effective_limit l{*cap, std::chrono::seconds(86400), window_kind::calendar};
    for (const auto& own : own_limits)
        if (own.length == std::chrono::seconds(86400)) l.kind = own.kind;
    return l;
}

void append_uses(std::vector<planned_claim>& out, planned_claim c, std::uint64_t uses) {
    out.push_back(c);
    c.claim.gap = duration::zero();
    for (std::uint64_t k = 1; k < uses; ++k) {
        auto& copy = out.emplace_back(c);
        copy.lowered = k;
        for (auto& w : copy.claim.windows) w.max = w.max > k ? w.max - k : 0;
    }
}

std::optional<time_point> retry_time(const window_rule& rule, const cap_window& w, time_point until,
                                     time_point at) {
    if (w.max == 0) return std::nullopt;
    if (rule.kind == window_kind::calendar) {
        // Uses recorded ahead of `at` (a clock that stepped back) keep the
        // period full until the period after theirs.
        auto from = std::max(at, until);
        return detail::next_period_start(rule.length, rule.zone, from);
    }
    return std::max(at, until + std::chrono::duration_cast<duration>(rule.length));
}

std::string mailbox_key(std::string_view mailbox) {
    std::string k = "mailbox:";
    k += mailbox;
    return k;
}

std::string quota_key(quota_scope scope, std::string_view key) {
    std::string k;
    switch (scope) {
        case quota_scope::provider:
            k = "provider:";
            break;
        case quota_scope::sender_domain:
            k = "sender_domain:";
            break;
        case quota_scope::recipient_domain:
            k = "recipient_domain:";
            break;
    }
    k += key;
    return k;
}

std::string any_recipient_domain_key(std::string_view domain) {
    std::string k = "recipient_domain*:";
    k += domain;
    return k;
}

}  // namespace mailers::decide
