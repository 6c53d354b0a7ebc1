// The workspace's suppression settings: the folding rules and the version
// of the normaliser its keys were made with. They belong to the workspace,
// not to one engine: an entry stored as "user@d" under fold_plus_tags would
// no longer match "user+tag@d" for an engine that does not fold, so a
// change re-keys every stored entry in one audited step, or is refused.
#include <fmt/format.h>

#include <algorithm>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"

namespace mailers {

using detail::current_normaliser;
using detail::fail;
using detail::suppression_settings;

namespace {

bool turns_off(const suppression_options& from, const suppression_options& to) {
    return (from.fold_plus_tags && !to.fold_plus_tags) ||
           (from.fold_gmail_dots && !to.fold_gmail_dots);
}

}  // namespace

bool engine::impl::suppression_settings_current(const store_snapshot& snap) const {
    for (const auto& o : snap.objects) {
        if (o.kind != "settings" || o.id != "suppression") continue;
        auto s = detail::suppression_settings_from_json(o.json);
        return s && *s == suppression_settings{current_normaliser,
                                               params.suppression.value_or(s->options)};
    }
    return false;
}

void engine::impl::plan_suppression_settings(const store_snapshot& snap) {
    std::optional<suppression_settings> stored;
    for (const auto& o : snap.objects) {
        if (o.kind != "settings" || o.id != "suppression") continue;
        auto s = detail::suppression_settings_from_json(o.json);
        if (!s)
            fail(errc::store_corrupt,
                 fmt::format("workspace '{}': the stored suppression settings cannot be read",
                             params.workspace));
        stored = *s;
    }
    suppression_settings want{
        current_normaliser,
        params.suppression.value_or(stored ? stored->options : suppression_options{})};
    // The keys in memory were made with the stored rules until a change lands.
    supp_opts = stored ? stored->options : want.options;
    if (stored && *stored == want) return;

    const bool has_addresses =
        std::any_of(snap.suppressions.begin(), snap.suppressions.end(),
                    [](const suppression_entry& e) { return e.kind == suppression_kind::address; });
    if (stored && has_addresses && turns_off(stored->options, want.options))
        fail(errc::invalid_argument,
             fmt::format("workspace '{}' keeps its suppressions folded ({}); turning a fold off "
                         "would un-suppress every address whose spelling was folded away, so the "
                         "engine refuses it",
                         params.workspace, to_json(*stored)));

    settings_change c;
    c.before = stored ? to_json(*stored) : std::string();
    c.after = to_json(want);
    c.options = want.options;
    suppression_hasher hasher(params.audit_key);
    c.digest_key = hasher.key_mark();
    for (const auto& e : snap.suppressions) {
        auto key = e.kind == suppression_kind::address ? normalise_address(e.value, want.options)
                                                       : normalise_domain(e.value);
        // A stored key the normaliser now refuses stays as it is: dropping
        // it would un-suppress whoever it names.
        if (!key || *key == e.value) continue;
        suppression_entry moved = e;
        moved.value = *key;
        c.written.add(hasher(moved));
        c.ops.push_back(store_ops::delete_suppression{e.kind, e.value});
        c.ops.push_back(store_ops::put_suppression{std::move(moved)});
        c.erased.emplace_back(e.kind, e.value);
        c.inserted.emplace_back(e.kind, *key);
    }
    c.ops.push_back(store_ops::put_object{stored_object{"settings", "suppression", c.after}});
    pending_settings = std::move(c);
}

void engine::impl::commit_suppression_settings() {
    if (!pending_settings) return;
    auto c = std::move(*pending_settings);
    pending_settings.reset();
    if (c.rekeys() || c.options != suppression_opts()) {
        // Another engine would go on making keys the old way until it
        // applied the change: a change waits until it is alone.
        std::vector<std::string> others;
        for (const auto& m : params.storage->members(params.workspace))
            if (m.live && m.id != member.load())
                others.push_back(
                    fmt::format("{} (pid {} on {})", m.info.name, m.info.pid, m.info.host));
        if (!others.empty())
            fail(errc::invalid_argument,
                 fmt::format(
                     "changing the suppression settings of workspace '{}' to {} re-keys stored "
                     "entries; stop the other engines first: {}",
                     params.workspace, c.after, fmt::join(others, ", ")));
    }
    // The written rows' count and digest and the erased count let
    // verify_suppressions account for every row the re-key touched.
    std::string after = fmt::format(
        R"({{"settings":{},"rekeyed":{},"written":{},"rows_digest":"{}","digest_key":"{}",)"
        R"("erased":{}}})",
        c.after, c.erased.size(), c.written.count, c.written.hex(), c.digest_key, c.erased.size());
    mutate(principal::system(), "suppression.settings", "settings", "suppression", c.before,
           std::move(after), std::move(c.ops), [&] {
               std::unique_lock lock(supp_mu);
               for (const auto& [kind, value] : c.erased) index.erase(kind, value);
               for (const auto& [kind, value] : c.inserted) index.insert(kind, value);
               supp_opts = c.options;
           });
}

void engine::impl::apply_suppression_settings(const stored_object& o) {
    auto s = detail::suppression_settings_from_json(o.json);
    if (!s) {
        params.log.log(log_level::error,
                       "the workspace's suppression settings in the store cannot be read");
        return;
    }
    std::unique_lock lock(supp_mu);
    supp_opts = s->options;
}

}  // namespace mailers
