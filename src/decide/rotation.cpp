#include "decide/rotation.hpp"

#include <algorithm>

namespace mailers::decide {

rotation plan_rotation(std::span<const member_rank> members, std::size_t cursor) {
    rotation r;
    const auto n = members.size();
    r.priority.resize(n);
    r.by_priority.resize(n);
    for (std::uint32_t i = 0; i < n; ++i) {
        r.priority[i] = members[i].priority;
        r.by_priority[i] = i;
    }
    std::stable_sort(r.by_priority.begin(), r.by_priority.end(),
                     [&](auto a, auto b) { return r.priority[a] < r.priority[b]; });

    // Smooth weighted round-robin (nginx's), unrolled into one cycle so a
    // pick walks a list instead of doing n additions.
    std::uint64_t total = 0;
    for (const auto& m : members) total += std::max<std::uint32_t>(1, m.weight);
    const double scale =
        total > max_schedule ? static_cast<double>(max_schedule) / static_cast<double>(total) : 1.0;
    std::vector<std::int64_t> weight(n), current(n, 0);
    std::int64_t sum = 0;
    for (std::size_t i = 0; i < n; ++i) {
        weight[i] = std::max<std::int64_t>(
            1, static_cast<std::int64_t>(
                   static_cast<double>(std::max<std::uint32_t>(1, members[i].weight)) * scale));
        sum += weight[i];
    }
    r.schedule.reserve(static_cast<std::size_t>(sum));
    for (std::int64_t k = 0; k < sum; ++k) {
        std::size_t best = 0;
        for (std::size_t i = 0; i < n; ++i) {
            current[i] += weight[i];
            if (current[i] > current[best]) best = i;
        }
        current[best] -= sum;
        r.schedule.push_back(static_cast<std::uint32_t>(best));
    }
    r.cursor = cursor < std::max<std::size_t>(1, std::max(n, r.schedule.size())) ? cursor : 0;
    return r;
}

}  // namespace mailers::decide
