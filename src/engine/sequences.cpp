// Sequence definitions: validated and checked against the workspace's pools
// and mailboxes when saved, stored as objects, applied by every engine
// through the change feed.
#include <fmt/format.h>

#include <mailers/sequence.hpp>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"

namespace mailers {

using namespace detail;

void engine::upsert_sequence(const principal& who, const sequence_config& cfg) {
    sequence_error err;
    auto seq = sequence::compile(cfg, &err);
    if (!seq)
        fail(errc::invalid_argument, fmt::format("sequence '{}': {}", cfg.id, err.to_string()));
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto need_pool = [&](std::size_t step, const std::string& id) {
            if (!id.empty() && !impl_->pools.count(id))
                fail(errc::unknown_pool,
                     fmt::format("sequence '{}' step {}: no pool '{}'", cfg.id, step, id));
        };
        for (std::size_t i = 0; i < cfg.steps.size(); ++i) {
            const auto& r = cfg.steps[i].sender;
            if (r.kind == sender_rule_kind::pool) need_pool(i + 1, r.id);
            if (r.kind == sender_rule_kind::mailbox && !impl_->mailboxes.count(r.id))
                fail(errc::unknown_mailbox,
                     fmt::format("sequence '{}' step {}: no mailbox '{}'", cfg.id, i + 1, r.id));
            need_pool(i + 1, r.fallback_pool);
        }
        auto it = impl_->sequences.find(cfg.id);
        if (it != impl_->sequences.end() && it->second) before = to_json(it->second->config());
    }
    impl_->authorize(who, "sequence.upsert", "sequence", cfg.id);
    auto after = to_json(cfg);
    impl_->mutate(who, "sequence.upsert", "sequence", cfg.id, before, after,
                  {store_ops::put_object{stored_object{"sequence", cfg.id, after}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->sequences.insert_or_assign(cfg.id, *seq);
                  });
}

void engine::remove_sequence(const principal& who, const std::string& id) {
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->sequences.find(id);
        if (it == impl_->sequences.end())
            fail(errc::not_found, fmt::format("no sequence '{}'", id));
        if (it->second) before = to_json(it->second->config());
    }
    impl_->authorize(who, "sequence.remove", "sequence", id);
    impl_->mutate(who, "sequence.remove", "sequence", id, before, {},
                  {store_ops::delete_object{"sequence", id}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->sequences.erase(id);
                  });
}

std::optional<sequence> engine::find_sequence(const std::string& id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->sequences.find(id);
    if (it == impl_->sequences.end()) return std::nullopt;
    return it->second;
}

std::vector<sequence_config> engine::sequences() const {
    std::lock_guard lock(impl_->mu);
    std::vector<sequence_config> out;
    for (const auto& [id, s] : impl_->sequences)
        if (s) out.push_back(s->config());
    return out;
}

}  // namespace mailers
