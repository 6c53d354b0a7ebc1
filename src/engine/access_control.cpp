// Access control in the engine: roles and grants stored as objects, applied
// by every engine through the change feed, checked on every audited action
// and every send.
#include <fmt/format.h>

#include <algorithm>
#include <mailers/access.hpp>
#include <simdjson.h>

#include "engine/engine_impl.hpp"
#include "json/writer.hpp"

namespace mailers {

using namespace detail;

namespace {

constexpr std::string_view role_kind = "access.role";
constexpr std::string_view grant_kind = "access.grant";

bool plain_id(std::string_view s) {
    return !s.empty() && s.size() <= 256 && std::none_of(s.begin(), s.end(), [](unsigned char c) {
        return c < 0x20 || c == 0x7f || c == '|';
    });
}

std::string grant_id(const access_grant& g) {
    return fmt::format("{}|{}|{}:{}", g.principal, g.role, to_string(g.scope.of), g.scope.id);
}

std::string to_json(const role& r) {
    std::string out;
    json::writer w(out);
    w.begin_object().member("id", r.id).key("permissions").begin_array();
    for (auto p : r.permissions) w.value(to_string(p));
    w.end_array().end_object();
    return out;
}

std::string to_json(const access_grant& g) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("principal", g.principal)
        .member("role", g.role)
        .member("scope", to_string(g.scope.of))
        .member("scope_id", g.scope.id)
        .end_object();
    return out;
}

std::optional<access_scope::kind> scope_kind(std::string_view s) {
    for (auto k : {access_scope::kind::workspace, access_scope::kind::pool,
                   access_scope::kind::mailbox, access_scope::kind::provider,
                   access_scope::kind::sequence})
        if (s == to_string(k)) return k;
    return std::nullopt;
}

std::optional<role> role_from_json(std::string_view json) {
    simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    simdjson::dom::object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return std::nullopt;
    role r;
    std::string_view id;
    simdjson::dom::array perms;
    if (o["id"].get(id) != simdjson::SUCCESS || o["permissions"].get(perms) != simdjson::SUCCESS)
        return std::nullopt;
    r.id = std::string(id);
    for (auto e : perms) {
        std::string_view name;
        if (e.get(name) != simdjson::SUCCESS) return std::nullopt;
        // A permission a newer version added is not one this version can
        // grant: leaving it out refuses more, never less.
        if (auto p = parse_permission(name)) r.permissions.push_back(*p);
    }
    return r;
}

std::optional<access_grant> grant_from_json(std::string_view json) {
    simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    simdjson::dom::object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return std::nullopt;
    std::string_view principal_id, role_id, scope, scope_id;
    if (o["principal"].get(principal_id) || o["role"].get(role_id) || o["scope"].get(scope) ||
        o["scope_id"].get(scope_id))
        return std::nullopt;
    auto k = scope_kind(scope);
    if (!k) return std::nullopt;
    return access_grant{std::string(principal_id), std::string(role_id),
                        {*k, std::string(scope_id)}};
}

// Whether anyone holds manage_access over the workspace under `p`.
bool someone_administers(const access_policy& p) {
    for (const auto& g : p.grants)
        if (decide_access(p, g.principal, permission::manage_access, {}).allowed) return true;
    return false;
}

void refuse_lockout(const access_policy& after, std::string_view what) {
    if (after.enabled && !someone_administers(after))
        fail(errc::invalid_argument,
             fmt::format("{} would leave access control on with nobody holding manage_access over "
                         "the workspace",
                         what));
}

}  // namespace

std::string engine::impl::access_refusal(const principal& who, std::string_view action,
                                         std::string_view type, std::string_view id) {
    if (!access_on.load(std::memory_order_acquire)) return {};
    std::lock_guard lock(mu);
    if (!access.enabled) return {};
    auto p = permission_for_action(action);
    if (!p)
        return fmt::format("principal '{}': action '{}' is not covered by any permission", who.id,
                           action);
    access_target t;
    if (type == "mailbox") {
        t.of = access_scope::kind::mailbox;
        t.id = std::string(id);
        if (auto it = mailboxes.find(t.id); it != mailboxes.end()) t.provider = it->second.cfg.provider;
        for (const auto& [pid, pool] : pools)
            if (std::find(pool.cfg.mailboxes.begin(), pool.cfg.mailboxes.end(), t.id) !=
                pool.cfg.mailboxes.end())
                t.pools.push_back(pid);
    } else if (type == "pool") {
        t.of = access_scope::kind::pool;
        t.id = std::string(id);
    } else if (type == "provider") {
        t.of = access_scope::kind::provider;
        t.id = std::string(id);
    } else if (type == "sequence") {
        t.of = access_scope::kind::sequence;
        t.id = std::string(id);
    }
    // Anything else (suppressions, quotas, sender domains, the workspace,
    // settings) is the workspace's: only a workspace grant covers it.
    auto d = decide_access(access, who.id, *p, t);
    return d.allowed ? std::string() : d.reason;
}

bool engine::impl::apply_access_object(const stored_object& o) {
    if (o.kind == role_kind) {
        auto r = role_from_json(o.json);
        std::erase_if(access.roles, [&](const role& x) { return x.id == o.id; });
        if (r) {
            access.roles.push_back(std::move(*r));
        } else {
            // Unreadable: the role grants nothing here until it is put again.
            params.log.log(log_level::error,
                           fmt::format("role '{}' in the store cannot be read; it grants nothing "
                                       "from this process until it is put again",
                                       o.id));
        }
        std::sort(access.roles.begin(), access.roles.end(),
                  [](const role& a, const role& b) { return a.id < b.id; });
        return true;
    }
    if (o.kind == grant_kind) {
        auto g = grant_from_json(o.json);
        std::erase_if(access.grants, [&](const access_grant& x) { return grant_id(x) == o.id; });
        if (g && grant_id(*g) == o.id)
            access.grants.push_back(std::move(*g));
        else
            params.log.log(log_level::error,
                           fmt::format("grant '{}' in the store cannot be read; it grants nothing "
                                       "from this process until it is put again",
                                       o.id));
        return true;
    }
    if (o.kind == "settings" && o.id == "access") {
        // An unreadable switch reads as on: refusing is the safe side.
        simdjson::dom::parser parser;
        simdjson::padded_string padded(o.json);
        bool on = true;
        simdjson::dom::object obj;
        if (parser.parse(padded).get(obj) == simdjson::SUCCESS) {
            bool v = true;
            if (obj["enabled"].get(v) == simdjson::SUCCESS) on = v;
        }
        access.enabled = on;
        access_on = on;
        return true;
    }
    return false;
}

bool engine::impl::remove_access_object(const std::string& kind, const std::string& id) {
    if (kind == role_kind) {
        std::erase_if(access.roles, [&](const role& x) { return x.id == id; });
        return true;
    }
    if (kind == grant_kind) {
        std::erase_if(access.grants, [&](const access_grant& x) { return grant_id(x) == id; });
        return true;
    }
    if (kind == "settings" && id == "access") {
        access.enabled = false;
        access_on = false;
        return true;
    }
    return false;
}

void engine::put_role(const principal& who, const role& r) {
    if (!plain_id(r.id))
        fail(errc::invalid_argument, "a role id must be 1 to 256 characters without '|' or control characters");
    auto sorted = r;
    std::sort(sorted.permissions.begin(), sorted.permissions.end());
    sorted.permissions.erase(std::unique(sorted.permissions.begin(), sorted.permissions.end()),
                             sorted.permissions.end());
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto after = impl_->access;
        std::erase_if(after.roles, [&](const role& x) { return x.id == r.id; });
        after.roles.push_back(sorted);
        for (const auto& x : impl_->access.roles)
            if (x.id == r.id) before = to_json(x);
        if (std::find(sorted.permissions.begin(), sorted.permissions.end(),
                      permission::manage_access) != sorted.permissions.end())
            for (const auto& g : after.grants)
                if (g.role == r.id && g.scope.of != access_scope::kind::workspace)
                    fail(errc::invalid_argument,
                         fmt::format("role '{}' is granted over {} '{}', where manage_access does "
                                     "not apply",
                                     r.id, to_string(g.scope.of), g.scope.id));
        refuse_lockout(after, fmt::format("changing role '{}'", r.id));
    }
    impl_->authorize(who, "access.role", "workspace", r.id);
    auto json = to_json(sorted);
    impl_->mutate(who, "access.role", "role", r.id, before, json,
                  {store_ops::put_object{stored_object{std::string(role_kind), r.id, json}}},
                  [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->apply_access_object({std::string(role_kind), r.id, json});
                  });
}

void engine::remove_role(const principal& who, const std::string& id) {
    std::string before;
    std::vector<access_grant> grants;
    {
        std::lock_guard lock(impl_->mu);
        auto it = std::find_if(impl_->access.roles.begin(), impl_->access.roles.end(),
                               [&](const role& x) { return x.id == id; });
        if (it == impl_->access.roles.end()) fail(errc::not_found, fmt::format("no role '{}'", id));
        before = to_json(*it);
        auto after = impl_->access;
        std::erase_if(after.roles, [&](const role& x) { return x.id == id; });
        for (const auto& g : after.grants)
            if (g.role == id) grants.push_back(g);
        std::erase_if(after.grants, [&](const access_grant& g) { return g.role == id; });
        refuse_lockout(after, fmt::format("removing role '{}'", id));
    }
    impl_->authorize(who, "access.role", "workspace", id);
    std::vector<store_op> ops{store_ops::delete_object{std::string(role_kind), id}};
    for (const auto& g : grants) ops.push_back(store_ops::delete_object{std::string(grant_kind), grant_id(g)});
    impl_->mutate(who, "access.role", "role", id, before, {}, std::move(ops), [&] {
        std::lock_guard lock(impl_->mu);
        impl_->remove_access_object(std::string(role_kind), id);
        for (const auto& g : grants) impl_->remove_access_object(std::string(grant_kind), grant_id(g));
    });
}

void engine::grant_access(const principal& who, const access_grant& g) {
    if (!plain_id(g.principal) || !plain_id(g.role))
        fail(errc::invalid_argument,
             "a grant's principal and role must be 1 to 256 characters without '|' or control characters");
    if ((g.scope.of == access_scope::kind::workspace) != g.scope.id.empty() ||
        (!g.scope.id.empty() && !plain_id(g.scope.id)))
        fail(errc::invalid_argument, "a workspace grant names no id; every other scope names one");
    {
        std::lock_guard lock(impl_->mu);
        auto r = std::find_if(impl_->access.roles.begin(), impl_->access.roles.end(),
                              [&](const role& x) { return x.id == g.role; });
        if (r == impl_->access.roles.end()) fail(errc::invalid_argument, fmt::format("no role '{}'", g.role));
        if (g.scope.of != access_scope::kind::workspace &&
            std::find(r->permissions.begin(), r->permissions.end(), permission::manage_access) !=
                r->permissions.end())
            fail(errc::invalid_argument,
                 fmt::format("role '{}' holds manage_access, which only a workspace grant gives", g.role));
    }
    impl_->authorize(who, "access.grant", "workspace", grant_id(g));
    auto json = to_json(g);
    auto id = grant_id(g);
    impl_->mutate(who, "access.grant", "grant", id, {}, json,
                  {store_ops::put_object{stored_object{std::string(grant_kind), id, json}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->apply_access_object({std::string(grant_kind), id, json});
                  });
}

void engine::revoke_access(const principal& who, const access_grant& g) {
    auto id = grant_id(g);
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = std::find(impl_->access.grants.begin(), impl_->access.grants.end(), g);
        if (it == impl_->access.grants.end()) fail(errc::not_found, fmt::format("no grant '{}'", id));
        before = to_json(*it);
        auto after = impl_->access;
        std::erase(after.grants, g);
        refuse_lockout(after, "revoking that grant");
    }
    impl_->authorize(who, "access.revoke", "workspace", id);
    impl_->mutate(who, "access.revoke", "grant", id, before, {},
                  {store_ops::delete_object{std::string(grant_kind), id}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->remove_access_object(std::string(grant_kind), id);
                  });
}

void engine::set_access_control(const principal& who, bool enabled) {
    {
        std::lock_guard lock(impl_->mu);
        if (enabled && !decide_access(impl_->access, who.id, permission::manage_access, {}).allowed)
            fail(errc::invalid_argument,
                 fmt::format("grant '{}' a role with manage_access over the workspace before turning "
                             "access control on, so that someone can still change it",
                             who.id));
    }
    impl_->authorize(who, "access.enable", "workspace", "");
    std::string json = enabled ? R"({"enabled":true})" : R"({"enabled":false})";
    impl_->mutate(who, "access.enable", "settings", "access", {}, json,
                  {store_ops::put_object{stored_object{"settings", "access", json}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->access.enabled = enabled;
                      impl_->access_on = enabled;
                  });
}

access_policy engine::access_control() const {
    std::lock_guard lock(impl_->mu);
    return impl_->access;
}

}  // namespace mailers
