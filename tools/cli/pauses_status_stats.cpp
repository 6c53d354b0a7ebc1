// `mailers pause`, `resume`, `stats` and `status`.
#include <fmt/chrono.h>
#include <simdjson.h>

#include <mailers/audit.hpp>
#include <mailers/daily_counts.hpp>
#include <mailers/store.hpp>
#include <mailers/workspace_status.hpp>
#include <map>

#include "cli.hpp"

namespace mailers_cli {
namespace {

std::optional<mailers::pause_scope> parse_scope(std::string_view s) {
    using mailers::pause_scope;
    if (s == "workspace") return pause_scope::workspace;
    if (s == "pool") return pause_scope::pool;
    if (s == "mailbox") return pause_scope::mailbox;
    if (s == "provider") return pause_scope::provider;
    if (s == "domain" || s == "sender_domain" || s == "sender-domain")
        return pause_scope::sender_domain;
    return std::nullopt;
}

std::string scope_name(mailers::pause_scope s) {
    return s == mailers::pause_scope::sender_domain ? "domain" : std::string(to_string(s));
}

std::string pause_reason_of(const std::string& after_json) {
    if (after_json.empty()) return {};
    simdjson::dom::parser parser;
    auto doc = parser.parse(after_json);
    if (doc.error()) return {};
    std::string_view reason;
    if (doc["reason"].get(reason)) return {};
    return std::string(reason);
}

// Pauses stored by an earlier version carry no actor or time; the audit
// trail's last "pause" record for such a target says who paused it, when
// and why. Reads the trail only when such a pause is there.
void name_legacy_pauses(mailers::store& st, const std::string& ws,
                        std::vector<mailers::workspace_pause>& pauses) {
    if (std::none_of(pauses.begin(), pauses.end(),
                     [](const auto& p) { return p.pause.actor.empty(); }))
        return;
    std::map<std::pair<std::string, std::string>, mailers::audit_record> last;
    st.for_each_audit(ws, 0, [&](const mailers::audit_record& r) {
        if (r.action == "pause") last[{r.resource_type, r.resource_id}] = r;
    });
    for (auto& wp : pauses) {
        auto& p = wp.pause;
        if (!p.actor.empty()) continue;
        auto it = last.find({std::string(to_string(p.target.scope)), p.target.id});
        if (it == last.end()) continue;
        p.actor = it->second.actor;
        p.since = it->second.at;
        if (p.reason.empty()) p.reason = pause_reason_of(it->second.after);
    }
}

// What an engine answers, where the store alone cannot
// (read_workspace_status says when).
mailers::workspace_status status_from_engine(mailers::engine& e) {
    mailers::workspace_status out;
    out.mailboxes = e.mailboxes();
    const auto pools = e.pools();
    for (auto& p : e.pauses()) {
        auto held = mailers::mailboxes_held(p.target, out.mailboxes, pools);
        out.pauses.push_back({std::move(p), std::move(held)});
    }
    for (const auto& m : out.mailboxes) out.statuses.push_back(e.status(m.id));
    out.suppressions = e.suppression_count();
    return out;
}

std::optional<mailers::count_scope> parse_count_scope(std::string_view s) {
    using mailers::count_scope;
    for (auto c : {count_scope::workspace, count_scope::mailbox, count_scope::pool,
                   count_scope::provider, count_scope::sender_domain})
        if (s == to_string(c)) return c;
    if (s == "domain") return count_scope::sender_domain;
    return std::nullopt;
}

mailers::pause_target make_target(const std::string& scope, const std::string& id) {
    auto s = parse_scope(scope);
    if (!s)
        fail(exit_usage, fmt::format("unknown scope '{}': use workspace, pool, mailbox, provider "
                                     "or domain",
                                     scope));
    if (*s == mailers::pause_scope::workspace && !id.empty())
        fail(exit_usage, "a workspace pause takes no id");
    if (*s != mailers::pause_scope::workspace && id.empty())
        fail(exit_usage, fmt::format("pause {} needs an id", scope));
    if (*s == mailers::pause_scope::sender_domain) {
        auto d = mailers::normalise_domain(id);
        if (!d) fail(exit_usage, fmt::format("'{}' is not a domain", id));
        return {*s, *d};
    }
    return {*s, id};
}

}  // namespace

void add_pause_and_stats_commands(CLI::App& app, commands& reg) {
    // --- pause / resume / status ------------------------------------------------
    auto& scope_arg = reg.keep<std::string>();
    auto& reason_arg = reg.keep<std::string>();
    auto& target_id = reg.keep<std::string>();
    auto* pz = reg.add(&app, "pause",
                       "Stop sending through a workspace, pool, mailbox, provider or sender domain",
                       "mailers pause domain brand.example --reason 'spamhaus listing, ticket 91'",
                       [&](context& c) {
                           auto t = make_target(scope_arg, target_id);
                           open_workspace(c, mailers::open_mode::existing);
                           c.engine().pause(c.who, t, reason_arg);
                           emit(c, json_object()
                                       .str("scope", scope_name(t.scope))
                                       .str("id", t.id)
                                       .boolean("paused", true)
                                       .str("reason", reason_arg));
                           if (!c.g.json) fmt::print("paused {} {}\n", scope_name(t.scope), t.id);
                           return exit_ok;
                       });
    pz->add_option("SCOPE", scope_arg, "workspace, pool, mailbox, provider or domain")->required();
    pz->add_option("ID", target_id, "What to pause (none for the workspace)");
    pz->add_option("--reason", reason_arg, "Why, recorded in the audit trail and shown by status");

    auto* rz = reg.add(&app, "resume", "Undo a pause (exit 1 if the target is not paused)",
                       "mailers resume mailbox rep1 --reason 'bounces explained, list cleaned'",
                       [&](context& c) {
                           auto t = make_target(scope_arg, target_id);
                           open_workspace(c, mailers::open_mode::existing);
                           c.engine().resume(c.who, t, reason_arg);
                           emit(c, json_object()
                                       .str("scope", scope_name(t.scope))
                                       .str("id", t.id)
                                       .boolean("paused", false)
                                       .str("reason", reason_arg));
                           if (!c.g.json) fmt::print("resumed {} {}\n", scope_name(t.scope), t.id);
                           return exit_ok;
                       });
    rz->add_option("SCOPE", scope_arg, "workspace, pool, mailbox, provider or domain")->required();
    rz->add_option("ID", target_id, "What to resume (none for the workspace)");
    rz->add_option("--reason", reason_arg,
                   "Why, recorded in the audit trail (a resume also starts the grace period of "
                   "the pause rules)");

    // --- stats --------------------------------------------------------------------
    auto& stats_scope = reg.keep<std::string>("workspace");
    auto& stats_id = reg.keep<std::string>();
    auto& stats_days = reg.keep<unsigned>(7);
    auto* st = reg.add(
        &app, "stats",
        "Per-day counts (UTC days) of sends and of what providers reported about them, for the "
        "workspace, a mailbox, pool, provider or sender domain",
        "mailers stats mailbox rep1 --days 28", [&](context& c) {
            const auto scope = parse_count_scope(stats_scope);
            if (!scope)
                fail(exit_usage, fmt::format("unknown scope '{}': use workspace, mailbox, pool, "
                                             "provider or domain",
                                             stats_scope));
            if ((*scope == mailers::count_scope::workspace) != stats_id.empty())
                fail(exit_usage, *scope == mailers::count_scope::workspace
                                     ? "workspace stats take no id"
                                     : fmt::format("stats {} needs an id", stats_scope));
            if (stats_days == 0 || stats_days > 366)
                fail(exit_usage, "--days must be between 1 and 366");
            if (*scope == mailers::count_scope::sender_domain) {
                auto d = mailers::normalise_domain(stats_id);
                if (!d) fail(exit_usage, fmt::format("'{}' is not a domain", stats_id));
                stats_id = *d;
            }
            open_workspace(c, mailers::open_mode::existing);
            const auto today = mailers::utc_day(mailers::system_clock().now());
            const auto days = c.engine().daily_counts(
                *scope, stats_id, today - static_cast<mailers::count_day>(stats_days) + 1, today);
            const auto date = [](mailers::count_day d) {
                return fmt::format(
                    "{:%Y-%m-%d}",
                    std::chrono::time_point_cast<std::chrono::seconds>(mailers::day_start(d)));
            };
            constexpr std::array metrics{
                mailers::count_metric::sent,         mailers::count_metric::failed,
                mailers::count_metric::unknown,      mailers::count_metric::delivered,
                mailers::count_metric::deferred,     mailers::count_metric::bounced_hard,
                mailers::count_metric::bounced_soft, mailers::count_metric::complained,
                mailers::count_metric::unsubscribed, mailers::count_metric::opened,
                mailers::count_metric::clicked};
            static_assert(metrics.size() == mailers::count_metric_count);
            if (c.g.json) {
                std::vector<json_object> rows;
                for (const auto& d : days) {
                    json_object o;
                    o.str("day", date(d.day));
                    for (auto m : metrics) o.num(to_string(m), d[m]);
                    rows.push_back(std::move(o));
                }
                emit(c, json_object()
                            .str("scope", to_string(*scope))
                            .str("id", stats_id)
                            .arr("days", rows));
                return exit_ok;
            }
            std::vector<std::string> head{"DAY"};
            for (auto m : metrics) {
                std::string h(to_string(m));
                for (auto& ch : h)
                    ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
                head.push_back(std::move(h));
            }
            std::vector<std::vector<std::string>> rows;
            for (const auto& d : days) {
                std::vector<std::string> r{date(d.day)};
                for (auto m : metrics) r.push_back(std::to_string(d[m]));
                rows.push_back(std::move(r));
            }
            print_table(head, rows);
            return exit_ok;
        });
    st->add_option("SCOPE", stats_scope, "workspace (default), mailbox, pool, provider or domain");
    st->add_option("ID", stats_id, "The mailbox, pool, provider or sender domain");
    st->add_option("--days", stats_days, "How many days, ending today (UTC)")
        ->capture_default_str();
}

void add_status_command(CLI::App& app, commands& reg) {
    reg.add(
        &app, "status", "What is paused, by whom, why and since when; each mailbox's state",
        "mailers status --json", [&](context& c) {
            // Point reads on the store: an engine would first load every
            // suppression key of the workspace and a week of the ledger.
            c.spec = resolve_store(c.g);
            auto st = open_store(c.spec, c.g.pg_schema, mailers::open_mode::existing);
            // A workspace never written: refused as open_workspace does.
            if (st->last_change_seq(c.g.workspace) == 0)
                open_workspace(c, mailers::open_mode::existing);
            auto found = mailers::read_workspace_status(
                *st, c.g.workspace, mailers::system_clock().now(),
                c.g.erasure_key_file.empty() ? "" : "file:" + c.g.erasure_key_file);
            if (!found) {
                open_workspace(c, mailers::open_mode::existing);
                found = status_from_engine(c.engine());
            }
            auto& ws = *found;
            name_legacy_pauses(*st, c.g.workspace, ws.pauses);
            if (c.g.json) {
                std::vector<json_object> ps, ms;
                for (const auto& wp : ws.pauses) {
                    const auto& p = wp.pause;
                    std::string held = "[";
                    for (std::size_t i = 0; i < wp.mailboxes_held.size(); ++i)
                        held += (i ? "," : "") + json_string(wp.mailboxes_held[i]);
                    ps.push_back(json_object()
                                     .str("scope", scope_name(p.target.scope))
                                     .str("id", p.target.id)
                                     .str("by", p.actor)
                                     .str("reason", p.reason)
                                     .str("since", iso8601(p.since))
                                     .raw("mailboxes_held", held + "]"));
                }
                for (std::size_t i = 0; i < ws.mailboxes.size(); ++i)
                    ms.push_back(json_object()
                                     .str("id", ws.mailboxes[i].id)
                                     .obj("status", status_json(ws.statuses[i])));
                emit(c, json_object()
                            .str("workspace", c.g.workspace)
                            .arr("pauses", ps)
                            .arr("mailboxes", ms)
                            .num("suppressions", ws.suppressions));
                return exit_ok;
            }
            fmt::print("workspace {}: {} mailboxes, {} suppression entries\n\n", c.g.workspace,
                       ws.mailboxes.size(), ws.suppressions);
            if (ws.pauses.empty()) {
                fmt::print("nothing is paused\n");
            } else {
                std::vector<std::vector<std::string>> rows;
                for (const auto& wp : ws.pauses) {
                    const auto& p = wp.pause;
                    std::string held;
                    for (const auto& x : wp.mailboxes_held) held += (held.empty() ? "" : ",") + x;
                    rows.push_back({scope_name(p.target.scope),
                                    p.target.id.empty() ? "-" : p.target.id, p.actor,
                                    iso8601(p.since), p.reason.empty() ? "-" : p.reason,
                                    held.empty() ? "-" : held});
                }
                print_table({"PAUSED", "ID", "BY", "SINCE", "REASON", "HOLDS"}, rows);
            }
            if (!ws.mailboxes.empty()) {
                fmt::print("\n");
                std::vector<std::vector<std::string>> rows;
                for (std::size_t i = 0; i < ws.mailboxes.size(); ++i) {
                    const auto& s = ws.statuses[i];
                    rows.push_back(
                        {ws.mailboxes[i].id, std::string(to_string(s.state)),
                         std::string(to_string(s.health)),
                         fmt::format(
                             "{}/{}", s.sent_today,
                             s.effective_daily_cap ? std::to_string(*s.effective_daily_cap) : "-"),
                         std::to_string(s.sent_this_hour), std::string(to_string(s.blocked)),
                         s.next_eligible ? iso8601(*s.next_eligible) : "-"});
                }
                print_table({"MAILBOX", "STATE", "HEALTH", "TODAY", "HOUR", "BLOCKED", "NEXT"},
                            rows);
            }
            return exit_ok;
        });
}

}  // namespace mailers_cli
