// The counts one commit adds (store_ops::add_counts), summed per key before
// they are written: a batch of sends shares a handful of keys, so a group
// commit writes a few count rows, and finding a key already held costs no
// allocation.
#pragma once

#include <mailers/store.hpp>
#include <map>
#include <string>
#include <string_view>
#include <tuple>

namespace mailers::detail {

class count_sum {
public:
    struct key {
        int scope = 0;
        std::string id;
        count_day day = 0;
        int metric = 0;
    };

    void add(const store_ops::add_counts& op) {
        for (const auto& [scope, id] : op.targets) {
            const view k{static_cast<int>(scope), id, op.day, static_cast<int>(op.metric)};
            auto it = sums_.find(k);
            if (it == sums_.end())
                it = sums_.emplace(key{k.scope, std::string(id), k.day, k.metric}, 0).first;
            it->second += op.n;
        }
    }
    bool empty() const noexcept { return sums_.empty(); }
    void clear() noexcept { sums_.clear(); }
    /// In (scope, id, day, metric) order, ids in byte order: the order two
    /// commits lock shared rows in.
    auto begin() const { return sums_.begin(); }
    auto end() const { return sums_.end(); }

private:
    struct view {
        int scope;
        std::string_view id;
        count_day day;
        int metric;
    };
    struct less {
        using is_transparent = void;
        static view as_view(const key& k) { return {k.scope, k.id, k.day, k.metric}; }
        static view as_view(const view& v) { return v; }
        template <class A, class B>
        bool operator()(const A& a, const B& b) const {
            const view x = as_view(a), y = as_view(b);
            return std::tie(x.scope, x.id, x.day, x.metric) <
                   std::tie(y.scope, y.id, y.day, y.metric);
        }
    };
    std::map<key, std::uint64_t, less> sums_;
};

}  // namespace mailers::detail
