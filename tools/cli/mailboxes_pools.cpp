// `mailers mailbox` and `mailers pool`.

#include "cli.hpp"

namespace mailers_cli {
namespace {

json_object mailbox_json(const mailers::mailbox_config& m) {
    std::vector<json_object> limits;
    for (const auto& l : m.limits)
        limits.push_back(json_object()
                             .num("max", l.max)
                             .num("seconds", static_cast<std::uint64_t>(l.length.count()))
                             .str("kind", to_string(l.kind)));
    return json_object()
        .str("id", m.id)
        .str("address", m.from.addr_spec())
        .str("display_name", m.from.display_name)
        .str("provider", m.provider)
        .str("state", to_string(m.state))
        .str("time_zone", m.time_zone)
        .arr("limits", limits)
        .num("weight", m.weight)
        .raw("priority", std::to_string(m.priority));
}

void require_mailbox(context& c, const std::string& id) {
    if (!c.engine().find_mailbox(id)) fail(exit_no, fmt::format("no mailbox '{}'", id));
}

void add_mailbox_commands(CLI::App& app, commands& reg) {
    // --- mailbox ----------------------------------------------------------------
    auto* mbx = app.add_subcommand("mailbox", "Sender mailboxes");
    mbx->require_subcommand(1);

    reg.add(mbx, "list", "List mailboxes with their caps used today", "mailers mailbox list",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto boxes = c.engine().mailboxes();
                if (c.g.json) {
                    std::vector<json_object> items;
                    for (const auto& m : boxes)
                        items.push_back(
                            mailbox_json(m).obj("status", status_json(c.engine().status(m.id))));
                    emit(c, json_object().arr("mailboxes", items));
                    return exit_ok;
                }
                std::vector<std::vector<std::string>> rows;
                for (const auto& m : boxes) {
                    auto s = c.engine().status(m.id);
                    rows.push_back(
                        {m.id, m.from.addr_spec(), m.provider, std::string(to_string(s.state)),
                         fmt::format(
                             "{}/{}", s.sent_today,
                             s.effective_daily_cap ? std::to_string(*s.effective_daily_cap) : "-"),
                         std::string(to_string(s.blocked))});
                }
                print_table({"ID", "ADDRESS", "PROVIDER", "STATE", "TODAY", "BLOCKED"}, rows);
                return exit_ok;
            });

    auto& mbx_id = reg.keep<std::string>();
    reg.add(mbx, "show", "Show a mailbox's configuration and live state",
            "mailers mailbox show rep1",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto m = c.engine().find_mailbox(mbx_id);
                if (!m) fail(exit_no, fmt::format("no mailbox '{}'", mbx_id));
                auto s = c.engine().status(mbx_id);
                emit(c, mailbox_json(*m).obj("status", status_json(s)));
                if (!c.g.json)
                    print_fields(
                        {{"id", m->id},
                         {"address", m->from.addr_spec()},
                         {"display name", m->from.display_name},
                         {"provider", m->provider},
                         {"state", std::string(to_string(s.state))},
                         {"health", std::string(to_string(s.health))},
                         {"time zone", m->time_zone},
                         {"limits", limits_text(m->limits)},
                         {"sent today", std::to_string(s.sent_today)},
                         {"sent this hour", std::to_string(s.sent_this_hour)},
                         {"daily cap",
                          s.effective_daily_cap ? std::to_string(*s.effective_daily_cap) : "-"},
                         {"blocked", std::string(to_string(s.blocked))},
                         {"next eligible", s.next_eligible ? iso8601(*s.next_eligible) : "-"}});
                return exit_ok;
            })
        ->add_option("ID", mbx_id)
        ->required();

    auto& mbx_address = reg.keep<std::string>();
    auto& mbx_provider = reg.keep<std::string>();
    auto& mbx_tz = reg.keep<std::string>("UTC");
    auto& mbx_per_day = reg.keep<std::uint64_t>(0);
    auto& mbx_per_hour = reg.keep<std::uint64_t>(0);
    auto* madd =
        reg.add(mbx, "add", "Add a mailbox (refuses an id that exists)",
                "mailers mailbox add rep1 --address 'Rep One <rep1@brand.example>' --provider ses "
                "--per-day 200",
                [&](context& c) {
                    auto parsed = mailers::parse_address(mbx_address);
                    if (!parsed)
                        fail(exit_usage, fmt::format("'{}' is not a valid address", mbx_address));
                    open_workspace(c, mailers::open_mode::existing);
                    if (c.engine().find_mailbox(mbx_id))
                        fail(exit_usage, fmt::format("mailbox '{}' already exists", mbx_id));
                    mailers::mailbox_config cfg;
                    cfg.id = mbx_id;
                    cfg.from = *parsed;
                    cfg.provider = mbx_provider;
                    cfg.time_zone = mbx_tz;
                    if (mbx_per_day)
                        cfg.limits.push_back(mailers::rate_limit::per_day(mbx_per_day));
                    if (mbx_per_hour)
                        cfg.limits.push_back(mailers::rate_limit::per_hour(mbx_per_hour));
                    c.engine().upsert_mailbox(c.who, cfg);
                    emit(c, mailbox_json(cfg));
                    if (!c.g.json)
                        fmt::print("added mailbox {} <{}>\n", cfg.id, cfg.from.addr_spec());
                    return exit_ok;
                });
    madd->add_option("ID", mbx_id)->required();
    madd->add_option("--address", mbx_address, "From address, with an optional display name")
        ->required();
    madd->add_option("--provider", mbx_provider, "Provider id it sends through")->required();
    madd->add_option("--time-zone", mbx_tz, "IANA time zone")->capture_default_str();
    madd->add_option("--per-day", mbx_per_day, "Daily cap (0: none)");
    madd->add_option("--per-hour", mbx_per_hour, "Hourly cap (0: none)");

    auto& reason_arg = reg.keep<std::string>();
    auto* mpause =
        reg.add(mbx, "pause", "Pause a mailbox (same as `pause mailbox ID`)",
                "mailers mailbox pause rep1 --reason 'blocklisted at spamhaus'", [&](context& c) {
                    open_workspace(c, mailers::open_mode::existing);
                    require_mailbox(c, mbx_id);
                    c.engine().pause(c.who, {mailers::pause_scope::mailbox, mbx_id}, reason_arg);
                    emit(c, json_object()
                                .str("scope", "mailbox")
                                .str("id", mbx_id)
                                .boolean("paused", true)
                                .str("reason", reason_arg));
                    if (!c.g.json) fmt::print("paused mailbox {}\n", mbx_id);
                    return exit_ok;
                });
    mpause->add_option("ID", mbx_id)->required();
    mpause->add_option("--reason", reason_arg, "Why, recorded in the audit trail");

    reg.add(mbx, "resume", "Resume a paused mailbox (exit 1 if it is not paused)",
            "mailers mailbox resume rep1",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                require_mailbox(c, mbx_id);
                c.engine().resume(c.who, {mailers::pause_scope::mailbox, mbx_id});
                emit(c, json_object()
                            .str("scope", "mailbox")
                            .str("id", mbx_id)
                            .boolean("paused", false));
                if (!c.g.json) fmt::print("resumed mailbox {}\n", mbx_id);
                return exit_ok;
            })
        ->add_option("ID", mbx_id)
        ->required();

    reg.add(mbx, "retire", "Retire a mailbox for good (it never sends again)",
            "mailers mailbox retire rep1",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                require_mailbox(c, mbx_id);
                c.engine().retire_mailbox(c.who, mbx_id);
                emit(c, json_object().str("id", mbx_id).str("state", "retired"));
                if (!c.g.json) fmt::print("retired mailbox {}\n", mbx_id);
                return exit_ok;
            })
        ->add_option("ID", mbx_id)
        ->required();
}

void add_pool_commands(CLI::App& app, commands& reg) {
    // --- pool -------------------------------------------------------------------
    auto* pl = app.add_subcommand("pool", "Pools of mailboxes that sends draw from");
    pl->require_subcommand(1);
    reg.add(pl, "list", "List pools and their mailboxes", "mailers pool list", [&](context& c) {
        open_workspace(c, mailers::open_mode::existing);
        auto pools = c.engine().pools();
        if (c.g.json) {
            std::vector<json_object> items;
            for (const auto& p : pools) {
                std::string ms = "[";
                for (std::size_t i = 0; i < p.mailboxes.size(); ++i)
                    ms += (i ? "," : "") + json_string(p.mailboxes[i]);
                items.push_back(json_object()
                                    .str("id", p.id)
                                    .str("policy", to_string(p.policy.kind))
                                    .num("max_attempts", p.policy.max_attempts)
                                    .boolean("sticky_sender", p.policy.sticky_sender)
                                    .raw("mailboxes", ms + "]"));
            }
            emit(c, json_object().arr("pools", items));
            return exit_ok;
        }
        std::vector<std::vector<std::string>> rows;
        for (const auto& p : pools) {
            std::string ms;
            for (const auto& m : p.mailboxes) ms += (ms.empty() ? "" : ",") + m;
            rows.push_back({p.id, std::string(to_string(p.policy.kind)), ms});
        }
        print_table({"ID", "POLICY", "MAILBOXES"}, rows);
        return exit_ok;
    });

    auto& pool_id = reg.keep<std::string>();
    auto& pool_policy = reg.keep<std::string>("round_robin");
    auto& pool_members = reg.keep<std::vector<std::string>>();
    auto* padd =
        reg.add(pl, "add", "Create or replace a pool",
                "mailers pool add outreach --mailbox rep1 --mailbox rep2 --policy weighted",
                [&](context& c) {
                    mailers::pool_config p;
                    p.id = pool_id;
                    p.mailboxes = pool_members;
                    if (pool_policy == "round_robin")
                        p.policy.kind = mailers::rotation_kind::round_robin;
                    else if (pool_policy == "weighted")
                        p.policy.kind = mailers::rotation_kind::weighted;
                    else if (pool_policy == "priority")
                        p.policy.kind = mailers::rotation_kind::priority;
                    else
                        fail(exit_usage, fmt::format("unknown policy '{}': use round_robin, "
                                                     "weighted or priority",
                                                     pool_policy));
                    open_workspace(c, mailers::open_mode::existing);
                    c.engine().upsert_pool(c.who, p);
                    emit(c, json_object().str("id", p.id).num("mailboxes", p.mailboxes.size()));
                    if (!c.g.json)
                        fmt::print("pool {} with {} mailboxes\n", p.id, p.mailboxes.size());
                    return exit_ok;
                });
    padd->add_option("ID", pool_id)->required();
    padd->add_option("--mailbox", pool_members, "A member mailbox id (repeat, in order)")
        ->required();
    padd->add_option("--policy", pool_policy, "round_robin, weighted or priority")
        ->capture_default_str();
}

}  // namespace

void add_mailbox_and_pool_commands(CLI::App& app, commands& reg) {
    add_mailbox_commands(app, reg);
    add_pool_commands(app, reg);
}

}  // namespace mailers_cli
