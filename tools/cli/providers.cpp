// `mailers init` and `mailers provider`.
#include <algorithm>
#include <mailers/dsn.hpp>
#include <optional>

#include "cli.hpp"

namespace mailers_cli {

namespace {

// A stored DSN holds references, not secrets; printed through the DSN
// parser anyway, so nothing a reference resolved to can appear.
std::string shown_dsn(const std::string& text) {
    auto parsed = mailers::parse_dsn(text);
    return parsed ? parsed->to_string() : std::string("(unreadable)");
}

json_object provider_json(const mailers::stored_provider& p) {
    return json_object()
        .str("id", p.id)
        .str("dsn", shown_dsn(p.dsn))
        .str("created_at", iso8601(p.created_at))
        .str("updated_at", iso8601(p.updated_at));
}

mailers::stored_provider find_stored(context& c, const std::string& id) {
    for (auto& p : c.engine().stored_providers())
        if (p.id == id) return p;
    fail(exit_no, fmt::format("no stored provider '{}'", id));
}

}  // namespace

void add_init_and_provider_commands(CLI::App& app, commands& reg) {
    // --- init -----------------------------------------------------------------
    reg.add(&app, "init",
            "Create the workspace, and the store when there is none (refuses an existing "
            "workspace)",
            "mailers --sqlite /var/lib/mailers/ws.db init", [](context& c) {
                open_workspace(c, mailers::open_mode::create);
                emit(c, json_object()
                            .str("store", c.spec.postgres ? "postgres" : "sqlite")
                            .str("workspace", c.g.workspace)
                            .boolean("created", true));
                if (!c.g.json)
                    fmt::print("created workspace '{}' in {}\n", c.g.workspace, describe(c.spec));
                return exit_ok;
            });

    // --- provider -----------------------------------------------------------------
    auto* prov = app.add_subcommand(
        "provider",
        "Providers kept in the workspace: a DSN per id, secrets named by env:NAME or file:PATH");
    prov->require_subcommand(1);

    auto& prov_id = reg.keep<std::string>();
    auto& prov_dsn = reg.keep<std::string>();
    auto& prov_replace = reg.keep<bool>(false);
    auto* prov_add = reg.add(
        prov, "add",
        "Store a provider (refuses an id that exists unless --replace). Secrets must be "
        "references: env:NAME or file:PATH; the DSN is checked by building its transport here",
        "SMTP_PASS=... mailers provider add ses-eu "
        "'smtp://AKIA...:env:SMTP_PASS@email-smtp.eu-west-1.amazonaws.com:587'",
        [&](context& c) {
            open_workspace(c, mailers::open_mode::existing);
            const auto stored = c.engine().stored_providers();
            const bool exists = std::any_of(stored.begin(), stored.end(),
                                            [&](const auto& p) { return p.id == prov_id; });
            if (exists && !prov_replace)
                fail(exit_usage,
                     fmt::format("provider '{}' already exists (--replace replaces it)", prov_id));
            c.engine().save_provider(c.who, prov_id, prov_dsn);
            emit(c, provider_json(find_stored(c, prov_id)));
            if (!c.g.json)
                fmt::print("{} provider {}: {}\n", exists ? "replaced" : "added", prov_id,
                           shown_dsn(prov_dsn));
            return exit_ok;
        });
    prov_add->add_option("ID", prov_id)->required();
    prov_add->add_option("DSN", prov_dsn, "The provider's DSN (docs/transports.md)")->required();
    prov_add->add_flag("--replace", prov_replace, "Replace a provider stored under ID");

    reg.add(prov, "list", "List stored providers, DSNs with their secrets redacted",
            "mailers provider list", [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                const auto stored = c.engine().stored_providers();
                if (c.g.json) {
                    std::vector<json_object> items;
                    for (const auto& p : stored) items.push_back(provider_json(p));
                    emit(c, json_object().arr("providers", items));
                    return exit_ok;
                }
                std::vector<std::vector<std::string>> rows;
                for (const auto& p : stored)
                    rows.push_back({p.id, shown_dsn(p.dsn), iso8601(p.updated_at)});
                print_table({"ID", "DSN", "UPDATED"}, rows);
                return exit_ok;
            });

    reg.add(prov, "test",
            "Check a provider's connection and credentials as this workspace's engines would "
            "use it, sending nothing (exit 5 when the check fails)",
            "mailers provider test ses-eu",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                std::optional<std::pair<mailers::error_code, mailers::provider_check>> out;
                c.engine().async_check_provider(
                    c.who, prov_id, [&](mailers::error_code ec, mailers::provider_check r) {
                        out.emplace(ec, std::move(r));
                    });
                // Until the check ends, not until the io_context runs dry: an
                // HTTP client keeps its connection open for the next request.
                while (!out && c.io.run_one()) {
                }
                auto& [ec, r] = *out;
                // The engine's refusals (unknown id, a DSN that cannot be
                // built here, a permission) are errors; a transport's
                // answer is the check's outcome.
                if (ec && ec.category() == mailers::error_category())
                    fail(exit_for(ec), r.diag.message);
                json_object o;
                o.str("id", r.provider).str("transport", r.transport).boolean("ok", !ec);
                if (ec) o.str("failure", to_string(mailers::classify(ec)));
                o.str("message", r.diag.message);
                emit(c, o);
                if (!c.g.json) {
                    if (ec)
                        fmt::print("FAILED ({}): {}\n", to_string(mailers::classify(ec)),
                                   r.diag.message);
                    else
                        fmt::print("ok: {}\n", r.diag.message);
                }
                return ec ? exit_verify : exit_ok;
            })
        ->add_option("ID", prov_id)
        ->required();

    reg.add(prov, "remove",
            "Remove a stored provider (refused while a mailbox that is not retired uses it)",
            "mailers provider remove ses-eu",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                c.engine().remove_provider(c.who, prov_id);
                emit(c, json_object().str("id", prov_id).boolean("removed", true));
                if (!c.g.json) fmt::print("removed provider {}\n", prov_id);
                return exit_ok;
            })
        ->add_option("ID", prov_id)
        ->required();
}

}  // namespace mailers_cli
