// lookup_suppression: the engine's suppression check, answered from the
// store's indexes instead of the engine's memory.
#include <fmt/format.h>

#include <mailers/store.hpp>
#include <mailers/suppression_lookup.hpp>

#include "config/secret_ref.hpp"
#include "engine/engine_impl.hpp"
#include "engine/erasure_key.hpp"
#include "engine/serialize.hpp"

namespace mailers {

using detail::fail;

std::optional<suppression_lookup> lookup_suppression(store& st, std::string_view workspace,
                                                     std::string_view address,
                                                     std::string_view erasure_key) {
    const auto settings_object = st.find_object(workspace, "settings", "suppression");
    if (!settings_object) return std::nullopt;
    const auto settings = detail::suppression_settings_from_json(settings_object->json);
    if (!settings || settings->normaliser != detail::current_normaliser) return std::nullopt;
    const auto& rules = settings->options;
    auto key = normalise_address(address, rules);
    if (!key) fail(errc::invalid_address, "not a valid email address");

    // As an engine does at start: the workspace's key, or the host's when
    // it holds it, and a refusal when the two do not fit.
    std::string host_key(erasure_key);
    std::string error;
    if (!detail::resolve_value(host_key, "erasure_key", error))
        fail(errc::invalid_argument, std::move(error));
    std::string hash_key;
    if (const auto o = st.find_object(workspace, "settings", "erasure")) {
        std::string why;
        hash_key = detail::workspace_erasure_key(o->json, host_key, why);
        if (!why.empty())
            fail(errc::invalid_argument, fmt::format("workspace '{}': {}", workspace, why));
    }

    suppression_lookup out;
    out.key = *key;
    const auto found = [&](std::optional<suppression_entry> e) {
        out.suppressed = true;
        out.entry = std::move(e);
        return out;
    };
    if (auto e = st.find_suppression(workspace, suppression_kind::address, *key))
        return found(std::move(e));
    // The domain, then each parent domain: the most specific entry, as the
    // engine's index finds it. An address literal has no domain to match.
    const auto at = key->rfind('@');
    std::string_view domain = std::string_view(*key).substr(at + 1);
    if (!domain.empty() && domain.front() != '[') {
        for (;;) {
            if (auto e = st.find_suppression(workspace, suppression_kind::domain, domain))
                return found(std::move(e));
            const auto dot = domain.find('.');
            if (dot == std::string_view::npos || dot + 1 == domain.size()) break;
            domain.remove_prefix(dot + 1);
        }
    }

    // Erased entries are "erased:" and 64 hex digits: the first address
    // value at or after the lowest of them says whether there are any.
    const std::string lowest = "erased:" + std::string(64, '0');
    const auto first = st.next_suppression(workspace, suppression_kind::address, lowest);
    if (!first || !first->value.starts_with("erased:")) return out;
    if (!is_erased_value(first->value)) return std::nullopt;
    // Erased entries this check cannot match: an engine without the key
    // refuses every send, so every address counts as suppressed.
    if (hash_key.empty()) return found(std::nullopt);
    if (auto e = st.find_suppression(workspace, suppression_kind::address,
                                     detail::erased_entry_value(hash_key, rules, *key)))
        return found(std::move(e));
    return out;
}

}  // namespace mailers
