// `mailers`: the operator's command-line tool. It opens the same store as
// the host application and works through the engine's public API, so every
// change it makes is authorised, audited and seen by the other processes of
// the workspace exactly as a change made by the host would be.
//
// main() sets up the application and its global options; each command group
// registers its commands from a file of its own (cli.hpp).
#include <boost/system/system_error.hpp>
#include <cstdio>
#include <cstdlib>
#include <mailers/error.hpp>

#include "cli.hpp"

using namespace mailers_cli;

int main(int argc, char** argv) {
    context c;
    CLI::App app{
        "Operate a mailers workspace: suppression, pauses, mailboxes, pools, quotas and the audit "
        "trail, on the store the host application uses.",
        "mailers"};
    app.fallthrough();
    app.require_subcommand(1);
    app.footer(exit_codes_help);

    auto* store_opt =
        app.add_option("--store", c.g.store, "The store as sqlite:PATH or postgres:CONNINFO")
            ->envname("MAILERS_STORE");
    auto* sqlite_opt = app.add_option("--sqlite", c.g.sqlite, "SQLite store file");
    auto* pg_opt = app.add_option("--postgres", c.g.postgres,
                                  "PostgreSQL conninfo (or env:NAME / file:PATH holding one)");
    sqlite_opt->excludes(pg_opt);
    store_opt->excludes(sqlite_opt)->excludes(pg_opt);
    app.add_option("--pg-schema", c.g.pg_schema, "PostgreSQL schema holding the tables")
        ->capture_default_str();
    app.add_option("--workspace,-w", c.g.workspace, "Workspace name")->capture_default_str();
    app.add_flag("--json", c.g.json, "One JSON object per result on stdout");
    app.add_option("--actor", c.g.actor, "Who acts, recorded in the audit trail (default: $USER)");
    app.add_option("--audit-key-file", c.g.audit_key_file,
                   "File holding the workspace's audit key (as the host passes it)");
    app.add_option("--erasure-key-file", c.g.erasure_key_file,
                   "File holding the workspace's erasure key, when its hosts hold it "
                   "(engine_params::erasure_key)");

    commands reg;
    add_init_and_provider_commands(app, reg);
    add_suppression_commands(app, reg);
    add_audit_commands(app, reg);
    add_mailbox_and_pool_commands(app, reg);
    add_access_commands(app, reg);
    add_quota_commands(app, reg);
    add_pause_and_stats_commands(app, reg);
    add_privacy_commands(app, reg);
    add_workflow_commands(app, reg);
    add_webhook_commands(app, reg);
    // Last, so that --help lists `status` after the groups, where it has always been.
    add_status_command(app, reg);

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        int rc = app.exit(e);
        return rc == 0 ? exit_ok : exit_usage;
    }

    if (c.g.actor.empty()) {
        const char* u = std::getenv("USER");
        c.g.actor = u && *u ? u : "cli";
    }
    c.who = {c.g.actor, c.g.actor};

    for (const auto& [sub, run] : reg.handlers()) {
        if (!sub->parsed()) continue;
        try {
            return run(c);
        } catch (const cli_error& e) {
            std::fprintf(stderr, "mailers: %s\n", e.message.c_str());
            return e.code;
        } catch (const boost::system::system_error& e) {
            int code = exit_for(e.code());
            std::string msg = e.what();
            if (e.code() == mailers::make_error_code(mailers::errc::store_missing))
                msg += fmt::format(" (no workspace store at {}; create one with `mailers init`)",
                                   describe(c.spec));
            std::fprintf(stderr, "mailers: %s\n", msg.c_str());
            return code;
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mailers: %s\n", e.what());
            return exit_other;
        }
    }
    std::fprintf(stderr, "mailers: no command given; see mailers --help\n");
    return exit_usage;
}
