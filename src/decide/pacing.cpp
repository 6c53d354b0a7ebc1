#include "decide/pacing.hpp"

#include <algorithm>
#include <limits>

namespace mailers::decide {
namespace {

// splitmix64: a fixed function, so a paced time does not depend on the
// standard library's generators.
std::uint64_t mix(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

}  // namespace

std::optional<duration> pace_interval(std::span<const send_budget> budgets, time_point now,
                                      duration min_gap) {
    duration widest = std::max(min_gap, duration::zero());
    for (const auto& b : budgets) {
        if (b.until <= now) continue;  // over: it limits nothing from now on
        if (b.remaining == 0) return std::nullopt;
        const auto n = static_cast<std::int64_t>(std::min<std::uint64_t>(
            b.remaining, static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())));
        // The next n sends at now + k * interval (k = 1..n) all fall before
        // `until`, which is where the budget stops.
        const auto span = (b.until - now).count();
        widest = std::max(widest, duration((span - 1) / n));
    }
    return widest;
}

std::optional<time_point> next_paced_send(std::span<const send_budget> budgets,
                                          const pacing_input& in, std::uint64_t seed) {
    const auto interval = pace_interval(budgets, in.now, in.min_gap);
    if (!interval) return std::nullopt;
    auto at = in.now;
    if (in.last_send != time_point{} && in.last_send + *interval > at)
        at = in.last_send + *interval;
    if (in.jitter > duration::zero()) {
        // Never past the end of the tightest budget that is still running.
        auto end = time_point::max();
        for (const auto& b : budgets)
            if (b.until > in.now) end = std::min(end, b.until);
        auto room = end == time_point::max() ? in.jitter : std::min(in.jitter, end - at);
        if (room > duration(1)) {
            // One tick below `end`, which is where the budget stops counting.
            const auto span = static_cast<std::uint64_t>(room.count() - 1);
            at += duration(static_cast<duration::rep>(mix(seed) % (span + 1)));
        }
    }
    return at;
}

}  // namespace mailers::decide
