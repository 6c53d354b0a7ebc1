// Why a mailbox cannot send now, and when it may.
//
// The facts are gathered by the caller (the engine, under its lock) and
// handed in; the verdict comes back. Reasons are reported in a fixed order
// of precedence: the mailbox's state, pauses (mailbox, provider, sender
// domain, then workspace or pool), an authentication failure, the breaker,
// a throttling or exhaustion reply, the send window, the minimum gap, the
// store's last refusal, the mailbox's caps, its warm-up, then shared quotas.
// Only the first is reported, with the time it lifts when that is known;
// a later reason may still hold then.
//
// Pure: values in, a verdict out; no clock, no lock, no store.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <mailers/clock.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/quota.hpp>
#include <optional>
#include <span>
#include <string_view>

#include "core/rate_counter.hpp"
#include "core/schedule.hpp"
#include "decide/breaker.hpp"

namespace mailers::decide {

struct eligibility {
    ineligible_reason reason = ineligible_reason::none;
    std::optional<time_point> next;  ///< when it may become eligible, if known
    bool ok() const noexcept { return reason == ineligible_reason::none; }
    friend bool operator==(const eligibility&, const eligibility&) = default;
};

/// The earlier of two optional instants; an absent one is unknown and loses.
std::optional<time_point> earliest(std::optional<time_point> a,
                                   std::optional<time_point> b) noexcept;

/// What the store said when it refused a cap key: nothing fits before
/// `until`. Other processes' sends reach this engine only this way.
struct cap_hint {
    time_point until{};
    ineligible_reason reason = ineligible_reason::cap_reached;
    friend bool operator==(const cap_hint&, const cap_hint&) = default;
};

/// `h` when it still holds at `now`, else nullptr.
const cap_hint* holding(const cap_hint* h, time_point now) noexcept;

/// Which pause scopes cover the mailbox for this send.
struct pause_flags {
    bool mailbox = false;
    bool provider = false;
    bool sender_domain = false;
    bool workspace_or_pool = false;
};

/// A mailbox's own facts. Pointers are borrowed for the call; a null
/// counter has counted nothing.
struct mailbox_facts {
    mailbox_state state = mailbox_state::active;
    pause_flags paused;
    bool auth_failed = false;
    breaker_state breaker;
    time_point throttled_until{};
    time_point exhausted_until{};
    time_point gap_until{};
    send_window window;
    /// The mailbox's zone; may be null only when the window is always open
    /// and nothing is counted by calendar.
    detail::zone_ptr zone = nullptr;
    const cap_hint* hint = nullptr;  ///< the store's last refusal of the mailbox's key
    const detail::rate_counter* counter = nullptr;
    std::span<const detail::effective_limit> limits;  ///< without warm-up
    warmup_ramp warmup;
};

/// The verdict on the mailbox itself, and its breaker as it stands once
/// the check reached it (an expired cool-down half-opens it); unchanged
/// when an earlier reason stopped the check.
struct mailbox_check {
    eligibility verdict;
    breaker_state breaker;
};

mailbox_check check_mailbox(const mailbox_facts& m, time_point now);

/// One shared quota a send counts against. A null counter has counted
/// nothing yet (a receiving domain first seen under a "*" quota): it still
/// has to pass the limits, so a cap of 0 refuses even the first send.
struct quota_facts {
    const detail::rate_counter* counter = nullptr;
    std::span<const detail::effective_limit> limits;
    detail::zone_ptr zone = nullptr;
    const cap_hint* hint = nullptr;  ///< the store's last refusal of this quota's key
    /// Its stored limits cannot be read: full, with no time it frees up.
    bool unreadable = false;
};

/// The first full quota, in the order given: quota_reached until it may
/// fit (an unreadable one with no time); the store's refusal counts when
/// the counter has room.
eligibility check_quotas(std::span<const quota_facts> quotas, time_point now);

/// One shared quota a send may count against, to be looked up by
/// (scope, key). `per_domain` marks the "*" recipient-domain quota, which
/// counts each receiving domain apart.
struct quota_ref {
    quota_scope scope = quota_scope::provider;
    std::string_view key;
    bool per_domain = false;
};

struct quota_refs {
    std::array<quota_ref, 4> items{};
    std::size_t count = 0;
    const quota_ref* begin() const noexcept { return items.data(); }
    const quota_ref* end() const noexcept { return items.data() + count; }
};

/// The quotas a send from a mailbox of `provider` and `sender_domain` to
/// `recipient_domain` counts against, in the order they are checked: the
/// provider, the sender domain, then (with a recipient domain) that domain
/// and "*". The views point into the arguments.
quota_refs quotas_for(std::string_view provider, std::string_view sender_domain,
                      std::string_view recipient_domain) noexcept;

}  // namespace mailers::decide
