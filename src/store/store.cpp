#include <mailers/store.hpp>
#include <utility>

namespace mailers {

std::string_view to_string(send_state s) noexcept {
    switch (s) {
        case send_state::reserved:
            return "reserved";
        case send_state::accepted:
            return "accepted";
        case send_state::failed:
            return "failed";
        case send_state::unknown:
            return "unknown";
    }
    return "invalid";
}

std::string_view to_string(reserve_status s) noexcept {
    switch (s) {
        case reserve_status::reserved:
            return "reserved";
        case reserve_status::duplicate:
            return "duplicate";
        case reserve_status::cap_reached:
            return "cap_reached";
        case reserve_status::gap:
            return "gap";
        case reserve_status::stale_config:
            return "stale_config";
        case reserve_status::not_owner:
            return "not_owner";
    }
    return "invalid";
}

suppression_import_result store::import_suppressions(std::string_view workspace,
                                                     const suppression_import& import) {
    std::vector<store_op> ops;
    import.entries([&](std::span<const suppression_entry> chunk) {
        for (const auto& e : chunk) ops.push_back(store_ops::put_suppression{e});
    });
    suppression_import_result out;
    out.entries = ops.size();
    ops.push_back(import.audit(out.entries));
    auto r = commit(workspace, ops);
    out.audit_seq = r.ops.back().audit_seq;
    out.change_seq = r.change_seq;
    return out;
}

change_set store::changes_since_skipping(std::string_view workspace, std::uint64_t after,
                                         std::uint64_t) {
    return changes_since(workspace, after);
}

store_snapshot store::load_keys(
    std::string_view workspace, time_point since,
    const std::function<void(suppression_kind, std::string_view)>& key) {
    auto snap = load(workspace, since);
    for (const auto& e : snap.suppressions) key(e.kind, e.value);
    snap.suppressions.clear();
    snap.suppressions.shrink_to_fit();
    return snap;
}

void store::for_each_suppression_version(
    std::string_view workspace, const std::function<void(const suppression_version&)>& fn) {
    for_each_suppression(workspace, [&](const suppression_entry& e) {
        suppression_version v;
        v.entry = e;
        fn(v);
    });
}

}  // namespace mailers
