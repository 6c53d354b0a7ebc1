// Pacing: when a mailbox should make its next send so that its capacity is
// spread over the time it has, instead of spent in a burst when a window
// opens. Pure: values in, values out; no clock, no lock, no store.
#pragma once

#include <cstdint>
#include <mailers/clock.hpp>
#include <optional>
#include <span>

namespace mailers::decide {

/// At most `remaining` more sends before `until`: what is left of a cap's
/// period, or of a send window when its end also ends what may be sent.
struct send_budget {
    std::uint64_t remaining = 0;
    time_point until{};
};

struct pacing_input {
    time_point now{};
    /// The mailbox's last send; none yet is time_point{}.
    time_point last_send{};
    /// The mailbox's minimum gap between two sends.
    duration min_gap{};
    /// Up to this much is added to each paced time, so that sends do not
    /// leave on a visible grid; never past the tightest budget's end.
    duration jitter{};
};

/// The interval that spends each budget evenly up to its end: the widest
/// over the budgets of the interval that fits `remaining` sends after now
/// and before `until` (just under (until - now) / remaining), and at least
/// `min_gap`.
/// nullopt when a budget has nothing left before its end (the caller waits
/// for that end, or for the cap's retry time).
std::optional<duration> pace_interval(std::span<const send_budget> budgets, time_point now,
                                      duration min_gap);

/// When the next send should leave: one interval after the last send (at
/// once when that time has passed), plus a jitter drawn from `seed` (the
/// same seed gives the same time, so a restart paces alike). nullopt as
/// for pace_interval.
std::optional<time_point> next_paced_send(std::span<const send_budget> budgets,
                                          const pacing_input& in, std::uint64_t seed);

}  // namespace mailers::decide
