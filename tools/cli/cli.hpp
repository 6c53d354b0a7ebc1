// What every command group of the `mailers` tool shares: the exit codes,
// the context a command runs in, output helpers, opening the workspace and
// the registry of commands main() dispatches to. Each group adds its
// commands in a file of its own (add_*_commands below).
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <functional>
#include <mailers/engine.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace mailers_cli {

// The documented exit codes (docs/cli.md); scripts depend on them.
enum exit_code : int {
    exit_ok = 0,
    exit_no = 1,          // not found / nothing to do: unknown mailbox, no such entry
    exit_usage = 2,       // bad arguments or input values
    exit_suppressed = 3,  // `suppression check`: the address is suppressed
    exit_store = 4,       // the store cannot be opened, created or written
    exit_verify = 5,      // the audit chain, the suppressions, a webhook or a provider test failed
    exit_other = 6,       // refused (permission) or any other failure
};

constexpr const char* exit_codes_help =
    "Exit codes:\n"
    "  0  success (suppression check: not suppressed)\n"
    "  1  not found: unknown mailbox, pool, campaign or sequence, no such entry, not paused\n"
    "  2  usage error or invalid input (malformed address, bad value, a webhook body the\n"
    "     provider's format refuses)\n"
    "  3  suppression check: the address is suppressed\n"
    "  4  store error: missing, already there, unreadable, or a failed write\n"
    "  5  verification failed: the audit chain, the suppressions, a provider's connection or\n"
    "     credentials (provider test); webhook replay: signature, credentials or timestamp\n"
    "     refused\n"
    "  6  any other failure (for example permission denied; webhook replay: settings missing\n"
    "     or an SNS certificate needed)\n"
    "\n"
    "Store: --sqlite PATH, --postgres CONNINFO, or MAILERS_STORE=sqlite:PATH | postgres:CONNINFO.\n"
    "Docs: docs/cli.md";

// A failure the tool itself reports, with the exit code it means.
struct cli_error {
    int code;
    std::string message;
};

[[noreturn]] inline void fail(int code, std::string message) {
    throw cli_error{code, std::move(message)};
}

std::string json_string(std::string_view s);

// Members keep the order they were added in, so the output reads the same
// way every time.
class json_object {
public:
    json_object& str(std::string_view k, std::string_view v) { return raw(k, json_string(v)); }
    json_object& num(std::string_view k, std::uint64_t v) { return raw(k, std::to_string(v)); }
    json_object& boolean(std::string_view k, bool v) { return raw(k, v ? "true" : "false"); }
    json_object& null(std::string_view k) { return raw(k, "null"); }
    json_object& obj(std::string_view k, const json_object& o) { return raw(k, o.dump()); }
    json_object& arr(std::string_view k, const std::vector<json_object>& items) {
        std::string s = "[";
        for (std::size_t i = 0; i < items.size(); ++i) {
            if (i) s += ',';
            s += items[i].dump();
        }
        return raw(k, s + "]");
    }
    json_object& raw(std::string_view k, std::string v) {
        members_.emplace_back(std::string(k), std::move(v));
        return *this;
    }
    std::string dump() const {
        std::string s = "{";
        for (std::size_t i = 0; i < members_.size(); ++i) {
            if (i) s += ',';
            s += json_string(members_[i].first) + ":" + members_[i].second;
        }
        return s + "}";
    }

private:
    std::vector<std::pair<std::string, std::string>> members_;
};

std::string iso8601(mailers::time_point t);

void print_table(const std::vector<std::string>& head,
                 const std::vector<std::vector<std::string>>& rows);
void print_fields(const std::vector<std::pair<std::string, std::string>>& fields);

// --- the workspace ------------------------------------------------------------

struct global_options {
    std::string store;  // "sqlite:PATH" or "postgres:CONNINFO"
    std::string sqlite;
    std::string postgres;
    std::string pg_schema = "mailers";
    std::string workspace = "default";
    std::string actor;
    std::string audit_key_file;
    std::string erasure_key_file;
    bool json = false;
};

struct store_spec {
    bool postgres = false;
    std::string target;  // path or conninfo
};

// Which store the global options name; fails with exit_usage when none.
store_spec resolve_store(const global_options& g);

// How a store is named in messages; a conninfo may hold a password, so it
// is never echoed.
std::string describe(const store_spec& s);

std::shared_ptr<mailers::store> open_store(const store_spec& s, const std::string& schema,
                                           mailers::open_mode mode);

struct context {
    global_options g;
    store_spec spec;
    boost::asio::io_context io;
    std::unique_ptr<mailers::engine> eng;
    mailers::principal who;
    // An engine given a key it has not seen in the workspace marks the
    // workspace as keyed with it (a new audit record). Commands that only
    // read the trail must not do that with a mistyped key, so they verify
    // with the key themselves and open the engine without it.
    bool key_for_engine = true;

    mailers::engine& engine() { return *eng; }
};

// The key a file holds, without the line ending editors add.
std::string read_audit_key(const std::string& path);

// `create` makes the workspace, and the store when there is none, and
// refuses a workspace that exists; `existing` refuses a workspace the store
// does not hold, so that a mistyped --workspace never starts a new one. An
// engine that has run on a workspace has stored its suppression settings,
// so a workspace exists exactly when its change seq is above 0.
void open_workspace(context& c, mailers::open_mode mode);

// One JSON object on stdout, under --json.
void emit(const context& c, const json_object& o);

// Shown by more than one group: mailbox and quota, mailbox and status.
std::string limits_text(const std::vector<mailers::rate_limit>& ls);
json_object status_json(const mailers::mailbox_status& s);

// The exit code an error of the library means.
int exit_for(const boost::system::error_code& ec);

// A whole file; `what` names it in the error when it cannot be read.
std::string read_file(const std::string& path, std::string_view what);

// "2026-12-07T09:00:00Z" (seconds and Z optional) or "@UNIX_SECONDS".
mailers::time_point parse_time(const std::string& s, std::string_view what);

// The commands of the tool, each a subcommand with the handler main() runs
// when it is the one parsed. CLI11 writes the options' values into storage
// the handlers read after parsing: keep() makes such storage, owned here, so
// a group's options outlive the function that registers them.
class commands {
public:
    using handler = std::function<int(context&)>;

    // `example` is shown as the subcommand's footer.
    CLI::App* add(CLI::App* parent, std::string name, std::string help, std::string example,
                  handler h);

    template <class T>
    T& keep(T initial = T{}) {
        auto p = std::make_shared<T>(std::move(initial));
        kept_.push_back(p);
        return *p;
    }

    const std::vector<std::pair<CLI::App*, handler>>& handlers() const { return handlers_; }

private:
    std::vector<std::pair<CLI::App*, handler>> handlers_;
    std::vector<std::shared_ptr<void>> kept_;
};

// The command groups, in the order `mailers --help` lists them.
void add_init_and_provider_commands(CLI::App& app, commands& reg);
void add_suppression_commands(CLI::App& app, commands& reg);
void add_audit_commands(CLI::App& app, commands& reg);
void add_mailbox_and_pool_commands(CLI::App& app, commands& reg);
void add_access_commands(CLI::App& app, commands& reg);
void add_quota_commands(CLI::App& app, commands& reg);
void add_pause_and_stats_commands(CLI::App& app, commands& reg);
void add_privacy_commands(CLI::App& app, commands& reg);
void add_workflow_commands(CLI::App& app, commands& reg);
void add_webhook_commands(CLI::App& app, commands& reg);
void add_status_command(CLI::App& app, commands& reg);

}  // namespace mailers_cli
