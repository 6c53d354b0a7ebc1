// Role-based access decisions.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <mailers/access.hpp>
#include <mailers/error.hpp>
#include <utility>

namespace mailers {

namespace {

constexpr std::array<std::string_view, permission_count> permission_names = {
    "send",          "enqueue",          "pause",            "resume",
    "override_cap",  "suppression_add",  "suppression_remove", "manage_providers",
    "manage_mailboxes", "manage_pools",  "manage_sequences", "read_audit",
    "export_data",   "erase_person",     "manage_webhooks",  "manage_access",
};

std::string describe(const access_scope& s) {
    if (s.of == access_scope::kind::workspace) return "the workspace";
    return fmt::format("{} '{}'", to_string(s.of), s.id);
}

bool covers(const access_scope& scope, permission p, const access_target& t) {
    using k = access_scope::kind;
    if (p == permission::manage_access) return scope.of == k::workspace;
    switch (scope.of) {
        case k::workspace:
            return true;
        case k::pool:
            if (t.of == k::pool) return t.id == scope.id;
            if (t.of == k::mailbox)
                return std::find(t.pools.begin(), t.pools.end(), scope.id) != t.pools.end();
            return false;
        case k::provider:
            if (t.of == k::provider) return t.id == scope.id;
            return t.of == k::mailbox && t.provider == scope.id;
        case k::mailbox:
        case k::sequence:
            return t.of == scope.of && t.id == scope.id;
    }
    return false;
}

}  // namespace

std::string_view to_string(permission p) noexcept {
    auto i = static_cast<std::size_t>(p);
    return i < permission_names.size() ? permission_names[i] : "unknown";
}

boost::system::result<permission> parse_permission(std::string_view s) {
    for (std::size_t i = 0; i < permission_names.size(); ++i)
        if (permission_names[i] == s) return static_cast<permission>(i);
    return make_error_code(errc::invalid_argument);
}

std::string_view to_string(access_scope::kind k) noexcept {
    switch (k) {
        case access_scope::kind::workspace:
            return "workspace";
        case access_scope::kind::pool:
            return "pool";
        case access_scope::kind::mailbox:
            return "mailbox";
        case access_scope::kind::provider:
            return "provider";
        case access_scope::kind::sequence:
            return "sequence";
    }
    return "unknown";
}

access_decision decide_access(const access_policy& policy, std::string_view principal,
                              permission p, const access_target& target) {
    for (const auto& g : policy.grants) {
        if (g.principal != principal) continue;
        auto r = std::find_if(policy.roles.begin(), policy.roles.end(),
                              [&](const role& x) { return x.id == g.role; });
        if (r == policy.roles.end()) continue;
        if (std::find(r->permissions.begin(), r->permissions.end(), p) == r->permissions.end())
            continue;
        if (!covers(g.scope, p, target)) continue;
        return {true, fmt::format("role '{}' over {}", g.role, describe(g.scope))};
    }
    access_scope as_scope{target.of, target.id};
    return {false, fmt::format("principal '{}' lacks {} on {}", principal, to_string(p),
                               describe(as_scope))};
}

std::optional<permission> permission_for_action(std::string_view action) noexcept {
    static constexpr std::pair<std::string_view, permission> table[] = {
        {"send", permission::send},
        {"enqueue", permission::enqueue},
        {"queue.cancel", permission::enqueue},
        {"campaign.start", permission::enqueue},
        {"campaign.cancel", permission::enqueue},
        {"pause", permission::pause},
        {"resume", permission::resume},
        {"quota.set", permission::override_cap},
        {"quota.remove", permission::override_cap},
        {"suppression.add", permission::suppression_add},
        {"suppression.import", permission::suppression_add},
        {"suppression.remove", permission::suppression_remove},
        {"provider.add", permission::manage_providers},
        {"provider.save", permission::manage_providers},
        {"provider.remove", permission::manage_providers},
        {"provider.check", permission::manage_providers},
        {"mailbox.upsert", permission::manage_mailboxes},
        {"mailbox.retire", permission::manage_mailboxes},
        {"pool.upsert", permission::manage_pools},
        {"pool.remove", permission::manage_pools},
        {"sequence.upsert", permission::manage_sequences},
        {"sequence.remove", permission::manage_sequences},
        {"enroll", permission::enqueue},
        {"enrollment.pause", permission::pause},
        {"enrollment.resume", permission::resume},
        {"enrollment.stop", permission::manage_sequences},
        {"enrollment.resolve", permission::manage_sequences},
        {"sequence.pause", permission::pause},
        {"sequence.resume", permission::resume},
        {"audit.read", permission::read_audit},
        {"webhook.put", permission::manage_webhooks},
        {"webhook.remove", permission::manage_webhooks},
        {"webhook.enable", permission::manage_webhooks},
        {"webhook.disable", permission::manage_webhooks},
        {"access.role", permission::manage_access},
        {"access.grant", permission::manage_access},
        {"access.revoke", permission::manage_access},
        {"access.enable", permission::manage_access},
        {"person.erase", permission::erase_person},
        {"person.export", permission::export_data},
        {"retention.purge", permission::erase_person},
        {"audit.purge", permission::erase_person},
        {"rule.put", permission::pause},
        {"rule.remove", permission::pause},
        {"suppression.soft_bounces", permission::suppression_add},
    };
    for (const auto& [name, p] : table)
        if (name == action) return p;
    return std::nullopt;
}

}  // namespace mailers
