// Per-day counts of what happened to a workspace's sends, kept by the store
// (see docs/rules.md).
//
// A count is added in the same store transaction that records what it
// counts: a send's outcome with the ledger row's final state, a provider
// event with the record of its de-duplication key. So every process of a
// workspace adds to one set of counts, and an event a provider delivers
// twice is counted once.
#pragma once

#include <array>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <string_view>

namespace mailers {

/// What a per-day count counts.
enum class count_metric : std::uint8_t {
    sent,       ///< the provider accepted the send (its ledger row became `accepted`)
    failed,     ///< the send ended `failed` after reaching a transport (not a refusal before)
    unknown,    ///< handed off with an outcome that cannot be known
    delivered,  ///< provider events, by type, from here on
    deferred,
    bounced_hard,
    bounced_soft,
    complained,
    unsubscribed,
    opened,
    clicked,
};

inline constexpr std::size_t count_metric_count = 11;

MAILERS_API std::string_view to_string(count_metric m) noexcept;

/// What a count is kept for. A send's outcome and an event correlated with
/// a send are counted once in each scope: its mailbox, its pool (when it
/// was drawn from one), its provider (the provider id the engine knows it
/// by), its mailbox's sender domain and the workspace. An event the engine
/// cannot tie to a send of the workspace is counted for the workspace only.
enum class count_scope : std::uint8_t { workspace, mailbox, pool, provider, sender_domain };

MAILERS_API std::string_view to_string(count_scope s) noexcept;

/// A UTC calendar day: days since 1970-01-01. Days run from 00:00:00 UTC
/// to the next 00:00:00 UTC, whatever the mailboxes' time zones.
using count_day = std::int32_t;

/// The UTC day holding `t`.
MAILERS_API count_day utc_day(time_point t) noexcept;
/// The first instant of `day`.
MAILERS_API time_point day_start(count_day day) noexcept;

/// One day's counts for one (scope, id).
struct daily_count {
    count_day day = 0;
    std::array<std::uint64_t, count_metric_count> n{};
    std::uint64_t operator[](count_metric m) const noexcept {
        return n[static_cast<std::size_t>(m)];
    }
    std::uint64_t& operator[](count_metric m) noexcept { return n[static_cast<std::size_t>(m)]; }
    friend bool operator==(const daily_count&, const daily_count&) = default;
};

}  // namespace mailers
