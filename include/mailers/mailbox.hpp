// A mailbox: one sender identity (rep1@brand.com) with its own caps, warm-up,
// send window, spacing, rotation weight and health.
#pragma once

#include <chrono>
#include <cstdint>
#include <mailers/address.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/quota.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

enum class mailbox_state { active, paused, retired };

MAILERS_API std::string_view to_string(mailbox_state s) noexcept;

/// Warm-up ramp: on day 0 (the local calendar day of `start_date` in the
/// mailbox's time zone) the mailbox may send `start` messages, then `step`
/// more each day, up to `target`. The effective daily cap is the smallest of
/// the ramp and every per-day limit of the mailbox. Disabled when `start` is 0.
struct warmup_ramp {
    std::uint32_t start = 0;
    std::uint32_t step = 0;
    std::uint32_t target = 0;
    time_point start_date{};
    friend bool operator==(const warmup_ramp&, const warmup_ramp&) = default;
};

/// Local hours and weekdays during which the mailbox may send, in its time
/// zone. Hours are [start_hour, end_hour) in local wall-clock time; when
/// end_hour <= start_hour the window spans midnight. Weekdays are a bit set,
/// bit 0 = Sunday ... bit 6 = Saturday (the weekday on which the window
/// opens). The default is always open.
struct send_window {
    std::uint8_t start_hour = 0;
    std::uint8_t end_hour = 24;
    std::uint8_t weekdays = 0x7f;
    friend bool operator==(const send_window&, const send_window&) = default;

    static constexpr std::uint8_t weekdays_mon_fri = 0x3e;
};

/// Circuit breaker: opens after `failure_threshold` consecutive transient
/// failures, stays open for `cool_down`, then half-opens and lets exactly
/// one probe send through; the probe's success closes it, its failure opens
/// it again for twice the previous cool-down (at most `max_cool_down`).
struct breaker_params {
    std::uint32_t failure_threshold = 5;
    std::chrono::seconds cool_down{300};
    std::chrono::seconds max_cool_down{3600};
    friend bool operator==(const breaker_params&, const breaker_params&) = default;
};

/// Everything configurable about a mailbox.
struct mailbox_config {
    std::string id;                                ///< stable id, unique in the workspace
    address from;                                  ///< address + UTF-8 display name
    std::string provider;                          ///< id of the provider it sends through
    std::vector<rate_limit> limits;                ///< e.g. per_day(50), per_hour(10)
    std::uint32_t max_recipients_per_message = 0;  ///< 0 = no limit
    warmup_ramp warmup;
    std::string time_zone = "UTC";  ///< IANA name, e.g. "America/New_York"
    send_window window;
    std::chrono::seconds min_gap{0};  ///< at least this long between two sends
    std::chrono::seconds jitter{0};   ///< plus a uniform random 0..jitter
    std::int32_t priority = 0;        ///< lower sends first under the priority policy
    std::uint32_t weight = 1;         ///< share under the weighted policy (>= 1)
    mailbox_state state = mailbox_state::active;
    breaker_params breaker;
    friend bool operator==(const mailbox_config&, const mailbox_config&) = default;

    /// Applies a provider preset as a ceiling: a limit of the same window
    /// (length and kind) is lowered to the preset's when it is higher and
    /// never raised; a preset limit the mailbox has no window for is added.
    /// `max_recipients_per_message` is lowered the same way (0, no limit,
    /// takes the preset's). So `per_day(40)` stays 40 after
    /// `apply(presets::google_workspace())`. Fields can be changed afterwards.
    MAILERS_API mailbox_config& apply(const quota_preset& preset);
};

enum class health_state { closed, open, half_open };

MAILERS_API std::string_view to_string(health_state s) noexcept;

/// Why a mailbox cannot send right now (see engine::mailbox_status).
enum class ineligible_reason {
    none,
    paused,
    retired,
    provider_paused,
    domain_paused,
    outside_window,
    min_gap,
    cap_reached,
    warmup_cap_reached,
    quota_reached,    ///< a provider / domain quota is full
    exhausted,        ///< the provider said the sender's quota is exhausted
    throttled,        ///< backing off after a throttling reply
    unhealthy,        ///< circuit breaker open, or auth failure
    probe_in_flight,  ///< half-open breaker already probing
};

MAILERS_API std::string_view to_string(ineligible_reason r) noexcept;

/// A snapshot of a mailbox's live state.
struct mailbox_status {
    std::string id;
    mailbox_state state = mailbox_state::active;
    health_state health = health_state::closed;
    std::uint64_t sent_today = 0;  ///< in the daily window that applies now
    std::uint64_t sent_this_hour = 0;
    /// The lowest of the daily caps and today's warm-up step; none when the
    /// mailbox has neither. A cap of 0 is reported as 0: it sends nothing.
    std::optional<std::uint64_t> effective_daily_cap;
    ineligible_reason blocked = ineligible_reason::none;
    std::optional<time_point> next_eligible;  ///< when it could send next, if known
};

}  // namespace mailers
