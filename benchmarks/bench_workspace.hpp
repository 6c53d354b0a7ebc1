// The workspace the engine benchmarks send from: `count` mailboxes on five
// sender domains, weights 1 to 3, in a weighted pool named "bench".
#pragma once

#include <cstddef>
#include <mailers.hpp>
#include <string>
#include <vector>

namespace bench {

inline void add_bench_pool(mailers::engine& eng, const mailers::principal& who, std::size_t count,
                           const std::string& provider,
                           const std::vector<mailers::rate_limit>& limits) {
    std::vector<std::string> ids;
    for (std::size_t i = 0; i < count; ++i) {
        mailers::mailbox_config m;
        m.id = "mb" + std::to_string(i);
        m.from = {"rep" + std::to_string(i), "brand" + std::to_string(i % 5) + ".com", "Rep"};
        m.provider = provider;
        m.limits = limits;
        m.weight = 1 + static_cast<unsigned>(i % 3);
        eng.upsert_mailbox(who, m);
        ids.push_back(m.id);
    }
    mailers::pool_config pool{"bench", ids, {}};
    pool.policy.kind = mailers::rotation_kind::weighted;
    eng.upsert_pool(who, pool);
}

}  // namespace bench
