// `mailers quota`.
#include <mailers/daily_counts.hpp>

#include "cli.hpp"

namespace mailers_cli {

namespace {

mailers::quota_scope parse_quota_scope(const std::string& s) {
    if (s == "provider") return mailers::quota_scope::provider;
    if (s == "domain" || s == "sender_domain" || s == "sender-domain")
        return mailers::quota_scope::sender_domain;
    if (s == "recipient" || s == "recipient_domain" || s == "recipient-domain")
        return mailers::quota_scope::recipient_domain;
    fail(exit_usage, fmt::format("unknown quota scope '{}': use provider, domain or recipient", s));
}

}  // namespace

void add_quota_commands(CLI::App& app, commands& reg) {
    // --- quota ------------------------------------------------------------------
    auto* qt =
        app.add_subcommand("quota", "Shared caps on a provider, sender domain or recipient domain");
    qt->require_subcommand(1);
    auto& q_scope = reg.keep<std::string>();
    auto& q_key = reg.keep<std::string>();
    auto& q_tz = reg.keep<std::string>();
    auto& q_day = reg.keep<std::uint64_t>(0);
    auto& q_hour = reg.keep<std::uint64_t>(0);
    auto& q_minute = reg.keep<std::uint64_t>(0);
    auto& q_calendar = reg.keep<bool>(false);
    auto* qset = reg.add(
        qt, "set", "Set (replace) the caps on one scope key",
        "mailers quota set recipient gmail.com --per-hour 500 --per-day 5000", [&](context& c) {
            mailers::quota q;
            q.scope = parse_quota_scope(q_scope);
            q.key = q_key;
            q.time_zone = q_tz;
            auto kind = q_calendar ? mailers::window_kind::calendar : mailers::window_kind::rolling;
            if (q_day) q.limits.push_back(mailers::rate_limit::per_day(q_day, kind));
            if (q_hour) q.limits.push_back(mailers::rate_limit::per_hour(q_hour, kind));
            if (q_minute) q.limits.push_back(mailers::rate_limit::per_minute(q_minute, kind));
            if (q.limits.empty())
                fail(exit_usage, "give at least one of --per-day, --per-hour, --per-minute");
            open_workspace(c, mailers::open_mode::existing);
            c.engine().set_quota(c.who, q);
            emit(c, json_object()
                        .str("scope", to_string(q.scope))
                        .str("key", q.key)
                        .str("limits", limits_text(q.limits)));
            if (!c.g.json)
                fmt::print("quota {} {}: {}\n", to_string(q.scope), q.key, limits_text(q.limits));
            return exit_ok;
        });
    qset->add_option("SCOPE", q_scope, "provider, domain (sender) or recipient")->required();
    qset->add_option("KEY", q_key, "Provider id or domain (\"*\": every recipient domain)")
        ->required();
    qset->add_option("--per-day", q_day, "Daily cap");
    qset->add_option("--per-hour", q_hour, "Hourly cap");
    qset->add_option("--per-minute", q_minute, "Per-minute cap");
    qset->add_flag("--calendar", q_calendar, "Calendar windows (reset at local midnight / hour)");
    qset->add_option("--time-zone", q_tz, "IANA zone for calendar windows (default UTC)");

    auto* qrem = reg.add(qt, "remove", "Remove the caps on one scope key (exit 1 if none)",
                         "mailers quota remove provider ses-eu", [&](context& c) {
                             auto scope = parse_quota_scope(q_scope);
                             open_workspace(c, mailers::open_mode::existing);
                             c.engine().remove_quota(c.who, scope, q_key);
                             emit(c, json_object()
                                         .str("scope", to_string(scope))
                                         .str("key", q_key)
                                         .boolean("removed", true));
                             if (!c.g.json)
                                 fmt::print("removed quota {} {}\n", to_string(scope), q_key);
                             return exit_ok;
                         });
    qrem->add_option("SCOPE", q_scope, "provider, domain (sender) or recipient")->required();
    qrem->add_option("KEY", q_key, "Provider id or domain")->required();

    reg.add(qt, "list", "List every quota with its caps", "mailers quota list --json",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto quotas = c.engine().quotas();
                if (c.g.json) {
                    std::vector<json_object> items;
                    for (const auto& q : quotas)
                        items.push_back(json_object()
                                            .str("scope", to_string(q.scope))
                                            .str("key", q.key)
                                            .str("limits", limits_text(q.limits))
                                            .str("time_zone", q.time_zone));
                    emit(c, json_object().arr("quotas", items));
                    return exit_ok;
                }
                std::vector<std::vector<std::string>> rows;
                for (const auto& q : quotas)
                    rows.push_back({std::string(to_string(q.scope)), q.key, limits_text(q.limits),
                                    q.time_zone.empty() ? "-" : q.time_zone});
                print_table({"SCOPE", "KEY", "CAPS", "TIME ZONE"}, rows);
                return exit_ok;
            });
}

}  // namespace mailers_cli
