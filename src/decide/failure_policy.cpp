#include "decide/failure_policy.hpp"

namespace mailers::decide {

time_point exhausted_until(std::span<const detail::effective_limit> limits, detail::zone_ptr zone,
                           time_point now) {
    bool calendar = false;
    for (const auto& l : limits)
        if (l.length == std::chrono::seconds(86400) && l.kind == window_kind::calendar)
            calendar = true;
    return calendar ? detail::next_period_start(std::chrono::seconds(86400), zone, now)
                    : now + std::chrono::hours(24);
}

outcome_decision on_outcome(const error_code& ec, const outcome_facts& f) {
    outcome_decision d;
    if (!ec) {
        d.state = send_state::accepted;
        d.route_ok = true;
        return d;
    }
    if (f.refused_at_handoff || ec == errc::suppressed || ec == errc::paused ||
        ec == errc::unknown_provider || ec == errc::store_error) {
        // The engine refused at hand-off: nothing reached a transport.
        d.release = true;
        d.end_probe = true;
        return d;
    }
    const auto cls = classify(ec);
    if (cls == failure::unknown_outcome) {
        // It may have gone: it keeps counting against caps, and is never
        // tried again anywhere.
        d.state = send_state::unknown;
        d.end_probe = true;
        return d;
    }
    d.release = true;
    d.end_probe = true;
    d.fail_over = may_retry(cls) && f.pooled && f.attempt < f.max_attempts;
    switch (cls) {
        case failure::recipient_permanent:
            d.suppress_recipient = true;
            d.route_ok = true;
            break;
        case failure::message_rejected:
            d.route_ok = true;
            break;
        case failure::throttled:
            d.effect = sender_effect::throttle;
            d.until = f.now + std::chrono::duration_cast<duration>(
                                  f.retry_after.value_or(default_retry_after));
            break;
        case failure::quota_exhausted:
            d.effect = sender_effect::exhausted;
            d.until = exhausted_until(f.limits, f.zone, f.now);
            break;
        case failure::auth:
            d.effect = sender_effect::auth_failed;
            break;
        // One refusal is no verdict on a sender domain, and a domain pause
        // has no expiry: a blocklisted route counts against the mailbox's
        // breaker, which opens on failures in a row and probes again later.
        case failure::reputation:
            d.effect = sender_effect::reputation_block;
            break;
        case failure::transient:
        case failure::unknown_outcome:
            d.effect = sender_effect::breaker_failure;
            break;
    }
    return d;
}

}  // namespace mailers::decide
