// `mailers access`.

#include "cli.hpp"

namespace mailers_cli {

void add_access_commands(CLI::App& app, commands& reg) {
    // --- access -----------------------------------------------------------------
    auto* acc = app.add_subcommand(
        "access", "Roles, grants and the workspace's access control (docs/access.md)");
    acc->require_subcommand(1);
    auto& acc_role = reg.keep<std::string>();
    auto& acc_principal = reg.keep<std::string>();
    auto& acc_pool = reg.keep<std::string>();
    auto& acc_mailbox = reg.keep<std::string>();
    auto& acc_provider = reg.keep<std::string>();
    auto& acc_sequence = reg.keep<std::string>();
    auto& acc_permissions = reg.keep<std::vector<std::string>>();
    // Copied into the handlers below: it outlives this function only so.
    auto acc_scope = [&]() {
        using k = mailers::access_scope::kind;
        std::vector<mailers::access_scope> given;
        if (!acc_pool.empty()) given.push_back({k::pool, acc_pool});
        if (!acc_mailbox.empty()) given.push_back({k::mailbox, acc_mailbox});
        if (!acc_provider.empty()) given.push_back({k::provider, acc_provider});
        if (!acc_sequence.empty()) given.push_back({k::sequence, acc_sequence});
        if (given.size() > 1)
            fail(exit_usage, "give at most one of --pool, --mailbox, --provider, --sequence");
        return given.empty() ? mailers::access_scope{} : given.front();
    };
    reg.add(
        acc, "list", "Show whether access control is on, the roles and the grants",
        "mailers access list --json", [&](context& c) {
            open_workspace(c, mailers::open_mode::existing);
            auto p = c.engine().access_control();
            if (c.g.json) {
                std::vector<json_object> roles, grants;
                for (const auto& r : p.roles) {
                    std::string perms = "[";
                    for (std::size_t i = 0; i < r.permissions.size(); ++i)
                        perms +=
                            (i ? "," : "") + json_string(std::string(to_string(r.permissions[i])));
                    roles.push_back(json_object().str("id", r.id).raw("permissions", perms + "]"));
                }
                for (const auto& g : p.grants)
                    grants.push_back(json_object()
                                         .str("principal", g.principal)
                                         .str("role", g.role)
                                         .str("scope", to_string(g.scope.of))
                                         .str("scope_id", g.scope.id));
                emit(c, json_object()
                            .boolean("enabled", p.enabled)
                            .arr("roles", roles)
                            .arr("grants", grants));
                return exit_ok;
            }
            fmt::print("access control: {}\n\n", p.enabled ? "on" : "off");
            std::vector<std::vector<std::string>> rows;
            for (const auto& r : p.roles) {
                std::string perms;
                for (auto x : r.permissions)
                    perms += (perms.empty() ? "" : ",") + std::string(to_string(x));
                rows.push_back({r.id, perms.empty() ? "-" : perms});
            }
            print_table({"ROLE", "PERMISSIONS"}, rows);
            fmt::print("\n");
            rows.clear();
            for (const auto& g : p.grants)
                rows.push_back({g.principal, g.role,
                                g.scope.of == mailers::access_scope::kind::workspace
                                    ? std::string("workspace")
                                    : fmt::format("{} {}", to_string(g.scope.of), g.scope.id)});
            print_table({"PRINCIPAL", "ROLE", "OVER"}, rows);
            return exit_ok;
        });
    auto* arole = reg.add(
        acc, "role", "Create or replace a role",
        "mailers access role pauser --permission pause --permission resume", [&](context& c) {
            mailers::role r{acc_role, {}};
            for (const auto& name : acc_permissions) {
                auto p = mailers::parse_permission(name);
                if (!p) fail(exit_usage, fmt::format("unknown permission '{}'", name));
                r.permissions.push_back(*p);
            }
            open_workspace(c, mailers::open_mode::existing);
            c.engine().put_role(c.who, r);
            emit(c, json_object().str("role", r.id).num("permissions", r.permissions.size()));
            if (!c.g.json) fmt::print("role {} with {} permissions\n", r.id, r.permissions.size());
            return exit_ok;
        });
    arole->add_option("ROLE", acc_role)->required();
    arole->add_option("--permission", acc_permissions, "A permission (repeat); see docs/access.md");
    for (auto [name, help, grant] :
         {std::tuple{"grant", "Give a principal a role over the workspace or one resource", true},
          std::tuple{"revoke", "Take a grant back (exit 1 if there is none)", false}}) {
        auto* g = reg.add(acc, name, help,
                          grant ? "mailers access grant bob pauser --pool sdr-emea"
                                : "mailers access revoke bob pauser --pool sdr-emea",
                          [&, grant, acc_scope](context& c) {
                              mailers::access_grant ag{acc_principal, acc_role, acc_scope()};
                              open_workspace(c, mailers::open_mode::existing);
                              if (grant)
                                  c.engine().grant_access(c.who, ag);
                              else
                                  c.engine().revoke_access(c.who, ag);
                              emit(c, json_object()
                                          .str("principal", ag.principal)
                                          .str("role", ag.role)
                                          .str("scope", to_string(ag.scope.of))
                                          .str("scope_id", ag.scope.id)
                                          .boolean("granted", grant));
                              if (!c.g.json)
                                  fmt::print("{} {} {} {}\n", grant ? "granted" : "revoked",
                                             ag.principal, ag.role,
                                             ag.scope.id.empty()
                                                 ? "over the workspace"
                                                 : "over " + std::string(to_string(ag.scope.of)) +
                                                       " " + ag.scope.id);
                              return exit_ok;
                          });
        g->add_option("PRINCIPAL", acc_principal)->required();
        g->add_option("ROLE", acc_role)->required();
        g->add_option("--pool", acc_pool, "Only over this pool and its mailboxes");
        g->add_option("--mailbox", acc_mailbox, "Only over this mailbox");
        g->add_option("--provider", acc_provider, "Only over this provider and its mailboxes");
        g->add_option("--sequence", acc_sequence, "Only over this sequence");
    }
    for (auto [name, on] : {std::pair{"enable", true}, std::pair{"disable", false}})
        reg.add(acc, name,
                on ? "Turn access control on (you need manage_access over the workspace first)"
                   : "Turn access control off: the host's authorizer alone decides again",
                on ? "mailers --actor root access enable" : "mailers --actor root access disable",
                [&, on](context& c) {
                    open_workspace(c, mailers::open_mode::existing);
                    c.engine().set_access_control(c.who, on);
                    emit(c, json_object().boolean("enabled", on));
                    if (!c.g.json) fmt::print("access control {}\n", on ? "on" : "off");
                    return exit_ok;
                });
}

}  // namespace mailers_cli
