// The order in which a pool's members are tried, for each rotation policy.
//
// A pool's order is computed once per change of the pool or of a member
// (plan_rotation), so that a pick tries members one by one and usually
// stops at the first: the cost of a send does not grow with the pool. A
// pick tries members in the policy's order starting at the cursor, each at
// most once, skipping those the send already tried, and takes the first
// eligible one; a sticky sender, when given, is tried before the order.
//
// Pure: the cursor goes in and comes out; eligibility is the caller's
// predicate.
#pragma once

#include <boost/container/small_vector.hpp>
#include <cstddef>
#include <cstdint>
#include <mailers/rotation_policy.hpp>
#include <optional>
#include <span>
#include <vector>

#include "decide/eligibility.hpp"

namespace mailers::decide {

/// What a member brings to the order.
struct member_rank {
    std::uint32_t weight = 1;   ///< weighted: its share; 0 counts as 1
    std::int32_t priority = 0;  ///< priority: lower first
};

/// A pool's precomputed order. Indexes are positions in the member list the
/// order was planned from.
struct rotation {
    /// weighted: one cycle of smooth weighted round-robin, sum(weights)
    /// long, scaled down to about max_schedule slots when larger.
    std::vector<std::uint32_t> schedule;
    /// priority: members by priority, ties in member order.
    std::vector<std::uint32_t> by_priority;
    std::vector<std::int32_t> priority;  ///< each member's priority
    std::size_t cursor = 0;
};

/// The most slots a weighted schedule is scaled to: each member keeps at
/// least one, so a schedule can exceed it by fewer than the member count.
inline constexpr std::uint64_t max_schedule = 65536;

/// The order for `members`, keeping `cursor` where it is still in range
/// (else it restarts at 0), so a change does not restart the rotation.
rotation plan_rotation(std::span<const member_rank> members, std::size_t cursor);

struct pick_outcome {
    std::optional<std::uint32_t> member;  ///< the member to send from
    std::size_t cursor = 0;               ///< the rotation's cursor after the pick
    /// With no member: why the first member tried could not send, and the
    /// earliest time any member tried said it might.
    ineligible_reason reason = ineligible_reason::none;
    std::optional<time_point> retry_at;
};

/// Picks a member of a pool of `r.priority.size()` members. `tried(i)`
/// says the send already used member i; `check(i)` returns member i's
/// eligibility (called at most once per member). `sticky` is the member
/// that last sent to this recipient, when the pool is sticky.
template <class Tried, class Check>
pick_outcome pick(const rotation& r, rotation_kind kind, std::optional<std::uint32_t> sticky,
                  Tried&& tried, Check&& check) {
    pick_outcome out;
    out.cursor = r.cursor;
    const std::size_t n = r.priority.size();
    if (n == 0) return out;
    boost::container::small_vector<char, 64> seen(n, 0);
    std::size_t seen_count = 0;
    auto try_member = [&](std::uint32_t idx) -> bool {
        if (seen[idx]) return false;
        seen[idx] = 1;
        ++seen_count;
        if (tried(idx)) return false;
        eligibility e = check(idx);
        if (e.ok()) return true;
        if (out.reason == ineligible_reason::none) out.reason = e.reason;
        out.retry_at = earliest(out.retry_at, e.next);
        return false;
    };
    auto take = [&](std::uint32_t idx, std::size_t cursor) {
        out.member = idx;
        out.cursor = cursor;
        out.reason = ineligible_reason::none;
        out.retry_at.reset();
        return out;
    };

    // The sticky sender does not move the rotation: the others keep their turns.
    if (sticky && *sticky < n && try_member(*sticky)) return take(*sticky, r.cursor);

    switch (kind) {
        case rotation_kind::round_robin:
            for (std::size_t k = 0; k < n; ++k) {
                auto idx = static_cast<std::uint32_t>((r.cursor + k) % n);
                if (try_member(idx)) return take(idx, (idx + 1) % n);
            }
            break;
        case rotation_kind::weighted: {
            const auto len = r.schedule.size();
            // The schedule repeats members; once each was checked, the rest
            // of it can only repeat the answers.
            for (std::size_t k = 0; k < len && seen_count < n; ++k) {
                auto pos = (r.cursor + k) % len;
                if (try_member(r.schedule[pos])) return take(r.schedule[pos], (pos + 1) % len);
            }
            break;
        }
        case rotation_kind::priority: {
            // Lowest value first; a group of equals takes turns through the
            // cursor, and the next group is tried only when all of it fails.
            std::size_t g = 0;
            while (g < n) {
                const auto prio = r.priority[r.by_priority[g]];
                std::size_t e = g;
                while (e < n && r.priority[r.by_priority[e]] == prio) ++e;
                const auto size = e - g;
                for (std::size_t k = 0; k < size; ++k) {
                    auto idx = r.by_priority[g + (r.cursor + k) % size];
                    if (try_member(idx)) return take(idx, r.cursor + 1);
                }
                g = e;
            }
            break;
        }
    }
    return out;
}

}  // namespace mailers::decide
