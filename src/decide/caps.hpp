// Cap arithmetic for a reservation: which windows a send must fit, where
// each starts at a given instant, and when a refused claim may fit again.
// Pure: values in, values out; no clock, no lock, no store.
#pragma once

#include <chrono>
#include <cstdint>
#include <mailers/store.hpp>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/rate_counter.hpp"
#include "core/schedule.hpp"

namespace mailers::decide {

/// How one window of a claim is counted, kept beside the claim so a
/// refusal can be turned into a retry time.
struct window_rule {
    std::chrono::seconds length{86400};
    window_kind kind = window_kind::rolling;
    detail::zone_ptr zone = nullptr;
};

/// A claim with the rule of each of its windows (same order).
struct planned_claim {
    cap_claim claim;
    std::vector<window_rule> rules;
    /// How far append_uses lowered this copy's caps: a refusal of a
    /// lowered copy says the send's uses do not fit, not that the key is
    /// full.
    std::uint64_t lowered = 0;
};

/// The window of `l` that a send at `at` falls in: its floor and cap.
cap_window window_at(const detail::effective_limit& l, detail::zone_ptr zone, time_point at);

/// Adds one window per limit to `c`.
void add_windows(planned_claim& c, std::span<const detail::effective_limit> limits,
                 detail::zone_ptr zone, time_point at);

/// The warm-up ramp as a per-day limit counted like the mailbox's own day
/// limit (calendar unless the mailbox counts its day rolling); nullopt when
/// the ramp is off.
std::optional<detail::effective_limit> warmup_limit(
    const warmup_ramp& ramp, std::span<const detail::effective_limit> own_limits,
    detail::zone_ptr zone, time_point at);

/// Appends the claims that count `uses` uses of `c`'s key (one when
/// `uses` is 0). The store checks each claim of a reservation against the
/// uses already recorded, not against its sibling claims, so the k-th copy
/// has every cap lowered by k (to 0, which never fits, when the cap is at
/// most k) and no gap: all copies fit exactly when `uses` more uses fit.
void append_uses(std::vector<planned_claim>& out, planned_claim c, std::uint64_t uses);

/// When a claim refused at `at` may fit again. `until` is the store's
/// answer (reserve_outcome::until). nullopt when it never will (a cap of 0).
std::optional<time_point> retry_time(const window_rule& rule, const cap_window& w, time_point until,
                                     time_point at);

/// Cap keys: the store compares them as opaque strings.
std::string mailbox_key(std::string_view mailbox);
std::string quota_key(quota_scope scope, std::string_view key);
/// The per-receiving-domain counter of a "*" recipient-domain quota.
std::string any_recipient_domain_key(std::string_view domain);

}  // namespace mailers::decide
