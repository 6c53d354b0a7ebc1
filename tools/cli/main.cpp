// `mailers`: the operator's command-line tool. It opens the same store as
// the host application and works through the engine's public API, so every
// change it makes is authorised, audited and seen by the other processes of
// the workspace exactly as a change made by the host would be.
#include <fmt/chrono.h>
#include <fmt/format.h>
#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <array>
#include <boost/asio/io_context.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <mailers/audit.hpp>
#include <mailers/daily_counts.hpp>
#include <mailers/dsn.hpp>
#include <mailers/engine.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/suppression.hpp>
#include <mailers/suppression_audit.hpp>
#include <mailers/transport_factory.hpp>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <tuple>
#include <string>
#include <vector>

namespace {

// The documented exit codes (docs/cli.md); scripts depend on them.
enum exit_code : int {
    exit_ok = 0,
    exit_no = 1,          // not found / nothing to do: unknown mailbox, no such entry
    exit_usage = 2,       // bad arguments or input values
    exit_suppressed = 3,  // `suppression check`: the address is suppressed
    exit_store = 4,       // the store cannot be opened, created or written
    exit_verify = 5,      // the audit chain, the suppressions or a provider test failed verification
    exit_other = 6,       // refused (permission) or any other failure
};

constexpr const char* exit_codes_help =
    "Exit codes:\n"
    "  0  success (suppression check: not suppressed)\n"
    "  1  not found: unknown mailbox or pool, no such entry, not paused\n"
    "  2  usage error or invalid input (malformed address, bad value)\n"
    "  3  suppression check: the address is suppressed\n"
    "  4  store error: missing, already there, unreadable, or a failed write\n"
    "  5  verification failed: the audit chain, the suppressions, or a provider's connection or\n"
    "     credentials (provider test)\n"
    "  6  any other failure (for example permission denied)\n"
    "\n"
    "Store: --sqlite PATH, --postgres CONNINFO, or MAILERS_STORE=sqlite:PATH | postgres:CONNINFO.\n"
    "Docs: docs/cli.md";

// A failure the tool itself reports, with the exit code it means.
struct cli_error {
    int code;
    std::string message;
};

[[noreturn]] void fail(int code, std::string message) {
    throw cli_error{code, std::move(message)};
}

// --- output -----------------------------------------------------------------

std::string json_string(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default:
                if (c < 0x20 || c == 0x7f)
                    out += fmt::format("\\u{:04x}", c);
                else
                    out += static_cast<char>(c);
        }
    }
    out += '"';
    return out;
}

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

std::string iso8601(mailers::time_point t) {
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z",
                       std::chrono::time_point_cast<std::chrono::seconds>(t));
}

void print_table(const std::vector<std::string>& head,
                 const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> w(head.size());
    for (std::size_t i = 0; i < head.size(); ++i) w[i] = head[i].size();
    for (const auto& r : rows)
        for (std::size_t i = 0; i < r.size() && i < w.size(); ++i)
            w[i] = std::max(w[i], r[i].size());
    auto line = [&](const std::vector<std::string>& r) {
        std::string s;
        for (std::size_t i = 0; i < r.size(); ++i) {
            if (i + 1 == r.size())
                s += r[i];
            else
                s += fmt::format("{:<{}}  ", r[i], w[i]);
        }
        fmt::print("{}\n", s);
    };
    line(head);
    for (const auto& r : rows) line(r);
}

void print_fields(const std::vector<std::pair<std::string, std::string>>& fields) {
    std::size_t w = 0;
    for (const auto& f : fields) w = std::max(w, f.first.size());
    for (const auto& f : fields) fmt::print("{:<{}}  {}\n", f.first + ":", w + 1, f.second);
}

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

store_spec resolve_store(const global_options& g) {
    if (!g.sqlite.empty()) return {false, g.sqlite};
    if (!g.postgres.empty()) return {true, g.postgres};
    if (g.store.empty())
        fail(exit_usage,
             "no store given: pass --sqlite PATH or --postgres CONNINFO, or set "
             "MAILERS_STORE=sqlite:PATH or postgres:CONNINFO");
    if (g.store.starts_with("sqlite:")) return {false, g.store.substr(7)};
    if (g.store.starts_with("postgres:")) return {true, g.store.substr(9)};
    fail(exit_usage, fmt::format("store '{}' names no known kind: write sqlite:PATH or "
                                 "postgres:CONNINFO",
                                 g.store));
}

// How a store is named in messages; a conninfo may hold a password, so it
// is never echoed.
std::string describe(const store_spec& s) {
    return s.postgres ? "the PostgreSQL store" : fmt::format("'{}'", s.target);
}

std::shared_ptr<mailers::store> open_store(const store_spec& s, const std::string& schema,
                                           mailers::open_mode mode) {
    if (s.postgres) {
        mailers::postgres_store_params p;
        p.conninfo = s.target;
        p.schema = schema;
        p.mode = mode;
        p.reconnect_timeout = std::chrono::seconds(5);
        return mailers::open_postgres_store(p);
    }
    if (s.target.empty()) fail(exit_usage, "--sqlite needs a file path");
    mailers::sqlite_store_params p;
    p.path = s.target;
    p.mode = mode;
    return mailers::open_sqlite_store(p);
}

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

std::string read_audit_key(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(exit_usage, fmt::format("cannot read the audit key file '{}'", path));
    std::ostringstream s;
    s << in.rdbuf();
    std::string key = s.str();
    // As the engine reads a file: reference, without the newline editors add.
    while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
    if (key.empty()) fail(exit_usage, fmt::format("the audit key file '{}' is empty", path));
    return key;
}

// `create` makes the workspace, and the store when there is none, and
// refuses a workspace that exists; `existing` refuses a workspace the store
// does not hold, so that a mistyped --workspace never starts a new one. An
// engine that has run on a workspace has stored its suppression settings,
// so a workspace exists exactly when its change seq is above 0.
void open_workspace(context& c, mailers::open_mode mode) {
    c.spec = resolve_store(c.g);
    const bool create = mode == mailers::open_mode::create;
    auto st = open_store(c.spec, c.g.pg_schema,
                         create ? mailers::open_mode::open_or_create : mode);
    const bool exists = st->changes_since(c.g.workspace, 0).seq != 0;
    if (create && exists)
        fail(exit_store, fmt::format("workspace '{}' already exists in {}: init never changes one",
                                     c.g.workspace, describe(c.spec)));
    if (!create && !exists)
        fail(exit_store,
             fmt::format("{} holds no workspace '{}'; `mailers init --workspace {}` creates it",
                         describe(c.spec), c.g.workspace, c.g.workspace));
    mailers::engine_params ep;
    ep.workspace = c.g.workspace;
    ep.storage = std::move(st);
    ep.member_name = "mailers-cli";
    if (!c.g.audit_key_file.empty() && c.key_for_engine)
        ep.audit_key = "file:" + c.g.audit_key_file;
    if (!c.g.erasure_key_file.empty()) ep.erasure_key = "file:" + c.g.erasure_key_file;
    c.eng = std::make_unique<mailers::engine>(c.io.get_executor(), std::move(ep));
}

// --- helpers over the public API ----------------------------------------------

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

using mailers::pause_info;

// Pauses stored by an earlier version carry no actor or time; the audit
// trail's last "pause" record for such a target says who paused it, when
// and why.
std::vector<pause_info> current_pauses(mailers::engine& e) {
    auto out = e.pauses();
    if (std::none_of(out.begin(), out.end(), [](const auto& p) { return p.actor.empty(); }))
        return out;
    std::map<std::pair<std::string, std::string>, mailers::audit_record> last;
    for (auto& r : e.audit_log())
        if (r.action == "pause") last[{r.resource_type, r.resource_id}] = std::move(r);
    for (auto& p : out) {
        if (!p.actor.empty()) continue;
        auto it = last.find({std::string(to_string(p.target.scope)), p.target.id});
        if (it == last.end()) continue;
        p.actor = it->second.actor;
        p.since = it->second.at;
        if (p.reason.empty()) p.reason = pause_reason_of(it->second.after);
    }
    return out;
}

std::string domain_key(const std::string& d) {
    auto n = mailers::normalise_domain(d);
    return n ? *n : d;
}

// Mailboxes that cannot send while `p` holds.
std::vector<std::string> held_by(mailers::engine& e, const pause_info& p,
                                 const std::vector<mailers::mailbox_config>& boxes) {
    using mailers::pause_scope;
    std::vector<std::string> out;
    if (p.target.scope == pause_scope::pool) {
        if (auto pool = e.find_pool(p.target.id)) return pool->mailboxes;
        return out;
    }
    for (const auto& m : boxes) {
        if (m.state == mailers::mailbox_state::retired) continue;
        bool held = false;
        switch (p.target.scope) {
            case pause_scope::workspace:
                held = true;
                break;
            case pause_scope::mailbox:
                held = m.id == p.target.id;
                break;
            case pause_scope::provider:
                held = m.provider == p.target.id;
                break;
            case pause_scope::sender_domain: {
                auto d = domain_key(m.from.domain);
                held = d == p.target.id || d.ends_with("." + p.target.id);
                break;
            }
            case pause_scope::pool:
                break;
        }
        if (held) out.push_back(m.id);
    }
    return out;
}

std::string limits_text(const std::vector<mailers::rate_limit>& ls) {
    std::string s;
    for (const auto& l : ls) {
        if (!s.empty()) s += ",";
        auto secs = l.length.count();
        std::string per = secs == 86400  ? "day"
                          : secs == 3600 ? "hour"
                          : secs == 60   ? "minute"
                                         : fmt::format("{}s", secs);
        s += fmt::format("{}/{}{}", l.max, per,
                         l.kind == mailers::window_kind::calendar ? "(cal)" : "");
    }
    return s.empty() ? "-" : s;
}

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

json_object status_json(const mailers::mailbox_status& s) {
    json_object o;
    o.str("state", to_string(s.state))
        .str("health", to_string(s.health))
        .num("sent_today", s.sent_today)
        .num("sent_this_hour", s.sent_this_hour);
    if (s.effective_daily_cap)
        o.num("daily_cap", *s.effective_daily_cap);
    else
        o.null("daily_cap");
    o.str("blocked", to_string(s.blocked));
    if (s.next_eligible)
        o.str("next_eligible", iso8601(*s.next_eligible));
    else
        o.null("next_eligible");
    return o;
}

json_object entry_json(const mailers::suppression_entry& e) {
    return json_object()
        .str("kind", to_string(e.kind))
        .str("value", e.value)
        .str("reason", to_string(e.reason))
        .str("source", e.source)
        .str("created_at", iso8601(e.created_at));
}

void emit(const context& c, const json_object& o) {
    if (c.g.json) fmt::print("{}\n", o.dump());
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

void require_mailbox(context& c, const std::string& id) {
    if (!c.engine().find_mailbox(id)) fail(exit_no, fmt::format("no mailbox '{}'", id));
}

int exit_for(const boost::system::error_code& ec) {
    using mailers::errc;
    if (ec.category() != mailers::error_category()) return exit_other;
    switch (static_cast<errc>(ec.value())) {
        case errc::unknown_pool:
        case errc::unknown_mailbox:
        case errc::unknown_provider:
        case errc::not_found:
            return exit_no;
        case errc::invalid_address:
        case errc::header_injection:
        case errc::invalid_header:
        case errc::invalid_argument:
        case errc::unknown_time_zone:
        case errc::invalid_csv:
        case errc::duplicate:
            return exit_usage;
        case errc::store_error:
        case errc::schema_too_new:
        case errc::commit_outcome_unknown:
        case errc::store_missing:
        case errc::store_exists:
        case errc::store_corrupt:
            return exit_store;
        case errc::audit_chain_broken:
            return exit_verify;
        default:
            return exit_other;
    }
}

}  // namespace

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

    using handler = std::function<int(context&)>;
    std::vector<std::pair<CLI::App*, handler>> commands;
    auto command = [&](CLI::App* parent, std::string name, std::string help, std::string example,
                       handler h) {
        auto* sub = parent->add_subcommand(std::move(name), std::move(help));
        if (!example.empty()) sub->footer("Example:\n  " + example);
        commands.emplace_back(sub, std::move(h));
        return sub;
    };

    // --- init -----------------------------------------------------------------
    command(&app, "init",
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
    // A stored DSN holds references, not secrets; printed through the DSN
    // parser anyway, so nothing a reference resolved to can appear.
    const auto shown_dsn = [](const std::string& text) {
        auto parsed = mailers::parse_dsn(text);
        return parsed ? parsed->to_string() : std::string("(unreadable)");
    };
    const auto provider_json = [&](const mailers::stored_provider& p) {
        return json_object()
            .str("id", p.id)
            .str("dsn", shown_dsn(p.dsn))
            .str("created_at", iso8601(p.created_at))
            .str("updated_at", iso8601(p.updated_at));
    };
    const auto find_stored = [](context& c, const std::string& id) {
        for (auto& p : c.engine().stored_providers())
            if (p.id == id) return p;
        fail(exit_no, fmt::format("no stored provider '{}'", id));
    };

    std::string prov_id, prov_dsn;
    bool prov_replace = false;
    auto* prov_add = command(
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
                fail(exit_usage, fmt::format("provider '{}' already exists (--replace replaces it)",
                                             prov_id));
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

    command(prov, "list", "List stored providers, DSNs with their secrets redacted",
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

    command(prov, "test",
            "Check a stored provider's connection and credentials, sending nothing (exit 5 when "
            "the check fails)",
            "mailers provider test ses-eu",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                const auto p = find_stored(c, prov_id);
                // A transport of its own, on an io_context of its own: the
                // check runs to its end without the engine's background work.
                boost::asio::io_context io;
                mailers::diagnostics diag;
                auto t = mailers::make_transport(io.get_executor(), p.dsn, &diag);
                if (!t)
                    fail(exit_usage, fmt::format("provider '{}' cannot be built here: {}", p.id,
                                                 diag.message));
                mailers::error_code ec;
                bool done = false;
                (*t)->async_check([&](mailers::error_code e, mailers::diagnostics d) {
                    ec = e;
                    diag = std::move(d);
                    done = true;
                });
                // Until the check ends, not until the io_context runs dry: an
                // HTTP client keeps its connection open for the next request.
                while (!done && io.run_one()) {
                }
                json_object o;
                o.str("id", p.id).str("transport", (*t)->name()).boolean("ok", !ec);
                if (ec) o.str("failure", to_string(mailers::classify(ec)));
                o.str("message", diag.message);
                emit(c, o);
                if (!c.g.json) {
                    if (ec)
                        fmt::print("FAILED ({}): {}\n", to_string(mailers::classify(ec)),
                                   diag.message);
                    else
                        fmt::print("ok: {}\n", diag.message);
                }
                return ec ? exit_verify : exit_ok;
            })
        ->add_option("ID", prov_id)
        ->required();

    command(prov, "remove",
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

    // --- suppression ----------------------------------------------------------
    auto* sup = app.add_subcommand("suppression", "The workspace's do-not-contact list");
    sup->require_subcommand(1);

    std::string addr_arg;
    command(sup, "check", "Say whether ADDRESS is suppressed, and by which entry (exit 3 if so)",
            "mailers suppression check jane@example.com",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                bool suppressed = e.is_suppressed(addr_arg);
                auto entry = e.find_suppression(addr_arg);
                auto key = mailers::normalise_address(addr_arg);
                std::string k = entry && entry->kind == mailers::suppression_kind::address
                                    ? entry->value
                                    : (key ? *key : addr_arg);
                json_object o;
                o.str("address", addr_arg).str("key", k).boolean("suppressed", suppressed);
                if (entry)
                    o.obj("entry", entry_json(*entry));
                else
                    o.null("entry");
                emit(c, o);
                if (!c.g.json) {
                    if (!suppressed) {
                        fmt::print("{}: not suppressed (key {})\n", addr_arg, k);
                    } else if (entry) {
                        print_fields(
                            {{"address", addr_arg},
                             {"key", k},
                             {"suppressed", "yes"},
                             {"entry", fmt::format("{} {}", to_string(entry->kind), entry->value)},
                             {"reason", std::string(to_string(entry->reason))},
                             {"source", entry->source},
                             {"created", iso8601(entry->created_at)}});
                    } else {
                        fmt::print("{}: suppressed (key {})\n", addr_arg, k);
                    }
                }
                return suppressed ? exit_suppressed : exit_ok;
            })
        ->add_option("ADDRESS", addr_arg, "The address to check")
        ->required();

    std::string sup_value, sup_reason = "manual", sup_source = "cli";
    bool sup_domain = false;
    auto* add = command(
        sup, "add", "Suppress an address, or a domain and its subdomains",
        "mailers suppression add jane@example.com --reason complaint --source support-ticket-42",
        [&](context& c) {
            auto reason = mailers::parse_suppression_reason(sup_reason);
            if (!reason)
                fail(exit_usage, fmt::format("unknown reason '{}': use unsubscribe, hard_bounce, "
                                             "complaint, manual or legal",
                                             sup_reason));
            auto kind = (sup_domain || sup_value.find('@') == std::string::npos)
                            ? mailers::suppression_kind::domain
                            : mailers::suppression_kind::address;
            auto key = kind == mailers::suppression_kind::domain
                           ? mailers::normalise_domain(sup_value)
                           : mailers::normalise_address(sup_value);
            if (!key)
                fail(exit_usage, fmt::format("'{}' is not a valid {}", sup_value, to_string(kind)));
            open_workspace(c, mailers::open_mode::existing);
            c.engine().suppress(c.who, kind, sup_value, *reason, sup_source);
            emit(c, json_object()
                        .str("kind", to_string(kind))
                        .str("value", *key)
                        .str("reason", to_string(*reason))
                        .str("source", sup_source));
            if (!c.g.json) fmt::print("suppressed {} {}\n", to_string(kind), *key);
            return exit_ok;
        });
    add->add_option("VALUE", sup_value, "ADDRESS or DOMAIN")->required();
    add->add_option("--reason", sup_reason, "unsubscribe, hard_bounce, complaint, manual or legal")
        ->capture_default_str();
    add->add_option("--source", sup_source, "Where the entry comes from")->capture_default_str();
    add->add_flag("--domain", sup_domain, "Treat VALUE as a domain (implied when it has no @)");

    auto* rem = command(
        sup, "remove", "Remove an entry (exit 1 when there is none)",
        "mailers suppression remove jane@example.com", [&](context& c) {
            auto kind = (sup_domain || sup_value.find('@') == std::string::npos)
                            ? mailers::suppression_kind::domain
                            : mailers::suppression_kind::address;
            open_workspace(c, mailers::open_mode::existing);
            bool removed = c.engine().unsuppress(c.who, kind, sup_value);
            emit(c, json_object()
                        .str("kind", to_string(kind))
                        .str("value", sup_value)
                        .boolean("removed", removed));
            if (!removed)
                fail(exit_no, fmt::format("no {} entry for '{}'", to_string(kind), sup_value));
            if (!c.g.json) fmt::print("removed {} {}\n", to_string(kind), sup_value);
            return exit_ok;
        });
    rem->add_option("VALUE", sup_value, "ADDRESS or DOMAIN")->required();
    rem->add_flag("--domain", sup_domain, "Treat VALUE as a domain (implied when it has no @)");

    std::string csv_file, csv_source = "csv-import";
    auto* imp = command(
        sup, "import", "Import a CSV (value,kind,reason,source,created_at): all lines or none",
        "mailers suppression import bounces.csv --source esp-export", [&](context& c) {
            std::ifstream in(csv_file, std::ios::binary);
            if (!in) fail(exit_usage, fmt::format("cannot read '{}'", csv_file));
            open_workspace(c, mailers::open_mode::existing);
            auto n = c.engine().import_suppressions(c.who, in, csv_source);
            emit(c, json_object().str("file", csv_file).num("imported", n));
            if (!c.g.json) fmt::print("imported {} entries from {}\n", n, csv_file);
            return exit_ok;
        });
    imp->add_option("FILE", csv_file, "CSV file")->required();
    imp->add_option("--source", csv_source, "Source for lines that name none")
        ->capture_default_str();

    std::string export_file;
    command(sup, "export", "Write every entry as CSV, to FILE or stdout",
            "mailers suppression export suppressions.csv",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                if (export_file.empty() || export_file == "-") {
                    std::ostringstream out;
                    c.engine().export_suppressions(out);
                    fmt::print("{}", out.str());
                    return exit_ok;
                }
                std::ofstream out(export_file, std::ios::binary | std::ios::trunc);
                if (!out) fail(exit_usage, fmt::format("cannot write '{}'", export_file));
                auto n = c.engine().export_suppressions(out);
                out.close();
                if (!out) fail(exit_other, fmt::format("writing '{}' failed", export_file));
                emit(c, json_object().str("file", export_file).num("exported", n));
                if (!c.g.json) fmt::print("exported {} entries to {}\n", n, export_file);
                return exit_ok;
            })
        ->add_option("FILE", export_file, "Output file (default: stdout, CSV)");

    command(sup, "verify",
            "Check every entry, current and replaced, against the audit trail (exit 5 when "
            "anything disagrees)",
            "mailers suppression verify --audit-key-file /etc/mailers/audit.key", [&](context& c) {
                std::string key;
                if (!c.g.audit_key_file.empty()) key = read_audit_key(c.g.audit_key_file);
                c.key_for_engine = false;
                open_workspace(c, mailers::open_mode::existing);
                auto st = open_store(c.spec, c.g.pg_schema, mailers::open_mode::existing);
                const auto r = mailers::verify_suppressions(*st, c.g.workspace, key);
                std::vector<json_object> problems;
                for (const auto& p : r.problems) {
                    json_object o;
                    if (p.kind)
                        o.str("kind", to_string(*p.kind));
                    else
                        o.null("kind");
                    o.str("value", p.value)
                        .num("audit_seq", p.audit_seq)
                        .num("change_seq", p.change_seq)
                        .str("problem", p.what);
                    problems.push_back(std::move(o));
                }
                emit(c, json_object()
                            .boolean("ok", r.ok)
                            .boolean("audit_chain_ok", r.audit_chain_ok)
                            .num("rows", r.rows)
                            .num("superseded_rows", r.superseded_rows)
                            .num("changes", r.changes)
                            .num("unchecked_rows", r.unchecked_rows)
                            .num("unchecked_digests", r.unchecked_digests)
                            .num("problem_count", r.problem_count)
                            .arr("problems", problems));
                if (!r.ok) {
                    for (const auto& p : r.problems)
                        std::fprintf(stderr, "mailers: %s%s%s (audit seq %llu, change %llu): %s\n",
                                     p.kind ? std::string(to_string(*p.kind)).c_str() : "",
                                     p.kind ? " " : "", p.value.c_str(),
                                     static_cast<unsigned long long>(p.audit_seq),
                                     static_cast<unsigned long long>(p.change_seq), p.what.c_str());
                    std::fprintf(stderr, "mailers: suppression verification found %llu problems\n",
                                 static_cast<unsigned long long>(r.problem_count));
                    return exit_verify;
                }
                if (!c.g.json)
                    fmt::print("suppressions ok: {} rows, {} replaced rows, {} audited changes{}\n",
                               r.rows, r.superseded_rows, r.changes,
                               r.unchecked_rows ? fmt::format(", {} rows from before changes were "
                                                              "audited not checkable",
                                                              r.unchecked_rows)
                                                : "");
                return exit_ok;
            });

    // --- audit ------------------------------------------------------------------
    auto* aud = app.add_subcommand("audit", "The hash-chained audit trail");
    aud->require_subcommand(1);

    std::string checkpoint_arg;
    command(aud, "verify",
            "Verify the whole chain, and that it reaches a checkpoint (exit 5 if it fails)",
            "mailers audit verify --checkpoint 42:9f86d0...",
            [&](context& c) {
                std::optional<mailers::audit_head> cp;
                if (!checkpoint_arg.empty()) {
                    auto colon = checkpoint_arg.find(':');
                    mailers::audit_head h;
                    const char* b = checkpoint_arg.data();
                    auto [p, ec] =
                        std::from_chars(b, b + (colon == std::string::npos ? 0 : colon), h.seq);
                    if (colon == std::string::npos || ec != std::errc{} || p != b + colon ||
                        colon + 1 == checkpoint_arg.size())
                        fail(exit_usage,
                             fmt::format("checkpoint '{}' is not SEQ:HASH", checkpoint_arg));
                    h.hash = checkpoint_arg.substr(colon + 1);
                    cp = h;
                }
                mailers::audit_verify_options opts;
                opts.checkpoint = cp;
                if (!c.g.audit_key_file.empty()) opts.key = read_audit_key(c.g.audit_key_file);
                c.key_for_engine = false;
                open_workspace(c, mailers::open_mode::existing);
                auto records = c.engine().audit_log();
                std::uint64_t bad = 0;
                auto ec = mailers::verify_audit_chain(records, opts, &bad);
                json_object o;
                o.boolean("ok", !ec).num("records", records.size());
                if (ec)
                    o.num("bad_seq", bad).str("error", ec.message());
                else
                    o.null("bad_seq");
                emit(c, o);
                if (ec) {
                    std::fprintf(stderr, "mailers: audit verification failed at seq %llu: %s\n",
                                 static_cast<unsigned long long>(bad), ec.message().c_str());
                    return exit_verify;
                }
                if (!c.g.json)
                    fmt::print("audit chain ok: {} records{}\n", records.size(),
                               cp ? fmt::format(", reaches checkpoint {}", cp->seq) : "");
                return exit_ok;
            })
        ->add_option("--checkpoint", checkpoint_arg, "SEQ:HASH from `audit checkpoint`");

    command(aud, "checkpoint",
            "Print the verified head of the chain as SEQ:HASH, to keep elsewhere",
            "mailers audit checkpoint >> /secure/mailers-checkpoints", [&](context& c) {
                mailers::audit_verify_options opts;
                if (!c.g.audit_key_file.empty()) opts.key = read_audit_key(c.g.audit_key_file);
                c.key_for_engine = false;
                open_workspace(c, mailers::open_mode::existing);
                auto records = c.engine().audit_log();
                std::uint64_t bad = 0;
                if (auto ec = mailers::verify_audit_chain(records, opts, &bad))
                    fail(exit_verify, fmt::format("audit verification failed at seq {}: {}; no "
                                                  "checkpoint vouches for a broken chain",
                                                  bad, ec.message()));
                mailers::audit_head h;
                if (!records.empty()) h = {records.back().seq, records.back().hash};
                emit(c, json_object()
                            .num("seq", h.seq)
                            .str("hash", h.hash)
                            .str("checkpoint", fmt::format("{}:{}", h.seq, h.hash)));
                if (!c.g.json) fmt::print("{}:{}\n", h.seq, h.hash);
                return exit_ok;
            });

    std::uint64_t audit_from = 1, audit_limit = 0;
    auto* alist = command(aud, "list", "List audit records from a seq on",
                          "mailers audit list --from 100 --limit 20", [&](context& c) {
                              c.key_for_engine = false;
                              open_workspace(c, mailers::open_mode::existing);
                              auto recs = c.engine().audit_log(audit_from);
                              if (audit_limit && recs.size() > audit_limit)
                                  recs.resize(audit_limit);
                              if (c.g.json) {
                                  std::vector<json_object> items;
                                  for (const auto& r : recs)
                                      items.push_back(json_object()
                                                          .num("seq", r.seq)
                                                          .str("at", iso8601(r.at))
                                                          .str("actor", r.actor)
                                                          .str("action", r.action)
                                                          .str("resource_type", r.resource_type)
                                                          .str("resource_id", r.resource_id)
                                                          .str("before", r.before)
                                                          .str("after", r.after)
                                                          .str("hash", r.hash));
                                  emit(c, json_object().arr("records", items));
                                  return exit_ok;
                              }
                              std::vector<std::vector<std::string>> rows;
                              for (const auto& r : recs)
                                  rows.push_back({std::to_string(r.seq), iso8601(r.at), r.actor,
                                                  r.action, r.resource_type + ":" + r.resource_id});
                              print_table({"SEQ", "AT", "ACTOR", "ACTION", "RESOURCE"}, rows);
                              return exit_ok;
                          });
    alist->add_option("--from", audit_from, "First seq")->capture_default_str();
    alist->add_option("--limit", audit_limit, "At most this many records (0: all)");

    // --- mailbox ----------------------------------------------------------------
    auto* mbx = app.add_subcommand("mailbox", "Sender mailboxes");
    mbx->require_subcommand(1);

    command(mbx, "list", "List mailboxes with their caps used today", "mailers mailbox list",
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

    std::string mbx_id;
    command(mbx, "show", "Show a mailbox's configuration and live state",
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

    std::string mbx_address, mbx_provider, mbx_tz = "UTC";
    std::uint64_t mbx_per_day = 0, mbx_per_hour = 0;
    auto* madd =
        command(mbx, "add", "Add a mailbox (refuses an id that exists)",
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

    std::string reason_arg;
    auto* mpause =
        command(mbx, "pause", "Pause a mailbox (same as `pause mailbox ID`)",
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

    command(
        mbx, "resume", "Resume a paused mailbox (exit 1 if it is not paused)",
        "mailers mailbox resume rep1",
        [&](context& c) {
            open_workspace(c, mailers::open_mode::existing);
            require_mailbox(c, mbx_id);
            c.engine().resume(c.who, {mailers::pause_scope::mailbox, mbx_id});
            emit(c,
                 json_object().str("scope", "mailbox").str("id", mbx_id).boolean("paused", false));
            if (!c.g.json) fmt::print("resumed mailbox {}\n", mbx_id);
            return exit_ok;
        })
        ->add_option("ID", mbx_id)
        ->required();

    command(mbx, "retire", "Retire a mailbox for good (it never sends again)",
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

    // --- pool -------------------------------------------------------------------
    auto* pl = app.add_subcommand("pool", "Pools of mailboxes that sends draw from");
    pl->require_subcommand(1);
    command(pl, "list", "List pools and their mailboxes", "mailers pool list", [&](context& c) {
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

    std::string pool_id, pool_policy = "round_robin";
    std::vector<std::string> pool_members;
    auto* padd =
        command(pl, "add", "Create or replace a pool",
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

    // --- access -----------------------------------------------------------------
    auto* acc = app.add_subcommand(
        "access", "Roles, grants and the workspace's access control (docs/access.md)");
    acc->require_subcommand(1);
    std::string acc_role, acc_principal, acc_pool, acc_mailbox, acc_provider, acc_sequence;
    std::vector<std::string> acc_permissions;
    auto acc_scope = [&]() {
        using k = mailers::access_scope::kind;
        std::vector<mailers::access_scope> given;
        if (!acc_pool.empty()) given.push_back({k::pool, acc_pool});
        if (!acc_mailbox.empty()) given.push_back({k::mailbox, acc_mailbox});
        if (!acc_provider.empty()) given.push_back({k::provider, acc_provider});
        if (!acc_sequence.empty()) given.push_back({k::sequence, acc_sequence});
        if (given.size() > 1) fail(exit_usage, "give at most one of --pool, --mailbox, --provider, --sequence");
        return given.empty() ? mailers::access_scope{} : given.front();
    };
    command(acc, "list", "Show whether access control is on, the roles and the grants",
            "mailers access list --json", [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto p = c.engine().access_control();
                if (c.g.json) {
                    std::vector<json_object> roles, grants;
                    for (const auto& r : p.roles) {
                        std::string perms = "[";
                        for (std::size_t i = 0; i < r.permissions.size(); ++i)
                            perms += (i ? "," : "") + json_string(std::string(to_string(r.permissions[i])));
                        roles.push_back(json_object().str("id", r.id).raw("permissions", perms + "]"));
                    }
                    for (const auto& g : p.grants)
                        grants.push_back(json_object()
                                             .str("principal", g.principal)
                                             .str("role", g.role)
                                             .str("scope", to_string(g.scope.of))
                                             .str("scope_id", g.scope.id));
                    emit(c, json_object().boolean("enabled", p.enabled).arr("roles", roles).arr("grants", grants));
                    return exit_ok;
                }
                fmt::print("access control: {}\n\n", p.enabled ? "on" : "off");
                std::vector<std::vector<std::string>> rows;
                for (const auto& r : p.roles) {
                    std::string perms;
                    for (auto x : r.permissions) perms += (perms.empty() ? "" : ",") + std::string(to_string(x));
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
    auto* arole = command(acc, "role", "Create or replace a role",
                          "mailers access role pauser --permission pause --permission resume",
                          [&](context& c) {
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
        auto* g = command(acc, name, help,
                          grant ? "mailers access grant bob pauser --pool sdr-emea"
                                : "mailers access revoke bob pauser --pool sdr-emea",
                          [&, grant](context& c) {
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
                                             ag.scope.id.empty() ? "over the workspace"
                                                                 : "over " + std::string(to_string(ag.scope.of)) + " " + ag.scope.id);
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
        command(acc, name,
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

    // --- quota ------------------------------------------------------------------
    auto* qt =
        app.add_subcommand("quota", "Shared caps on a provider, sender domain or recipient domain");
    qt->require_subcommand(1);
    std::string q_scope, q_key, q_tz;
    std::uint64_t q_day = 0, q_hour = 0, q_minute = 0;
    bool q_calendar = false;
    auto parse_quota_scope = [](const std::string& s) {
        if (s == "provider") return mailers::quota_scope::provider;
        if (s == "domain" || s == "sender_domain" || s == "sender-domain")
            return mailers::quota_scope::sender_domain;
        if (s == "recipient" || s == "recipient_domain" || s == "recipient-domain")
            return mailers::quota_scope::recipient_domain;
        fail(exit_usage,
             fmt::format("unknown quota scope '{}': use provider, domain or recipient", s));
    };
    auto* qset = command(
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

    auto* qrem = command(qt, "remove", "Remove the caps on one scope key (exit 1 if none)",
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

    command(qt, "list", "List every quota with its caps", "mailers quota list --json",
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

    // --- pause / resume / status ------------------------------------------------
    std::string scope_arg, target_id;
    auto* pz = command(&app, "pause",
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

    auto* rz = command(&app, "resume", "Undo a pause (exit 1 if the target is not paused)",
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
    std::string stats_scope = "workspace", stats_id;
    unsigned stats_days = 7;
    auto* st = command(
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

    // --- erasure and export of a person (docs/privacy.md) -----------------------
    std::string person_arg;
    command(&app, "erase",
            "Erase everything held about ADDRESS (GDPR Art. 17) and keep it suppressed as a "
            "keyed hash",
            "mailers --actor dpo erase jane@example.com", [&](context& c) {
                if (!mailers::normalise_address(person_arg))
                    fail(exit_usage, fmt::format("'{}' is not a valid address", person_arg));
                open_workspace(c, mailers::open_mode::existing);
                const auto r = c.engine().erase_person(c.who, person_arg);
                const auto& n = r.erased;
                const std::vector<std::pair<std::string, std::uint64_t>> counts{
                    {"suppression_rows", n.suppression_rows},
                    {"sends", n.sends},
                    {"queued", n.queued},
                    {"queue_cancelled", n.queue_cancelled},
                    {"enrollments", n.enrollments},
                    {"webhook_deliveries", n.webhook_deliveries},
                    {"recorded_keys", n.recorded_keys},
                    {"soft_bounces", n.soft_bounces}};
                json_object erased;
                for (const auto& [k, v] : counts) erased.num(k, v);
                emit(c, json_object()
                            .str("address", person_arg)
                            .str("hash", r.hash)
                            .str("at", iso8601(r.at))
                            .boolean("was_suppressed", r.was_suppressed)
                            .num("audit_seq", r.audit_seq)
                            .obj("erased", erased));
                if (!c.g.json) {
                    std::vector<std::pair<std::string, std::string>> fields{
                        {"erased", person_arg},
                        {"suppressed as", r.hash},
                        {"at", iso8601(r.at)},
                        {"was suppressed", r.was_suppressed ? "yes" : "no"},
                        {"audit seq", std::to_string(r.audit_seq)}};
                    for (const auto& [k, v] : counts) fields.emplace_back(k, std::to_string(v));
                    print_fields(fields);
                }
                return exit_ok;
            })
        ->add_option("ADDRESS", person_arg, "The person's address, in any spelling")
        ->required();

    std::string person_file;
    auto* exp = command(
        &app, "export",
        "Everything held about ADDRESS (GDPR Art. 15), as one JSON document on stdout or in "
        "--output FILE",
        "mailers export jane@example.com --output jane.json", [&](context& c) {
            if (!mailers::normalise_address(person_arg))
                fail(exit_usage, fmt::format("'{}' is not a valid address", person_arg));
            open_workspace(c, mailers::open_mode::existing);
            const auto doc = c.engine().export_person(c.who, person_arg);
            if (person_file.empty()) {
                fmt::print("{}\n", doc);
                return exit_ok;
            }
            std::ofstream out(person_file, std::ios::binary | std::ios::trunc);
            out << doc << '\n';
            out.close();
            if (!out) fail(exit_other, fmt::format("cannot write '{}'", person_file));
            emit(c, json_object().str("file", person_file).num("bytes", doc.size() + 1));
            if (!c.g.json) fmt::print("wrote {} ({} bytes)\n", person_file, doc.size() + 1);
            return exit_ok;
        });
    exp->add_option("ADDRESS", person_arg, "The person's address, in any spelling")->required();
    exp->add_option("--output,-o", person_file, "Write the document to FILE instead of stdout");

    command(
        &app, "status", "What is paused, by whom, why and since when; each mailbox's state",
        "mailers status --json", [&](context& c) {
            open_workspace(c, mailers::open_mode::existing);
            auto& e = c.engine();
            auto boxes = e.mailboxes();
            auto pauses = current_pauses(e);
            if (c.g.json) {
                std::vector<json_object> ps, ms;
                for (const auto& p : pauses) {
                    std::string held = "[";
                    auto h = held_by(e, p, boxes);
                    for (std::size_t i = 0; i < h.size(); ++i)
                        held += (i ? "," : "") + json_string(h[i]);
                    ps.push_back(json_object()
                                     .str("scope", scope_name(p.target.scope))
                                     .str("id", p.target.id)
                                     .str("by", p.actor)
                                     .str("reason", p.reason)
                                     .str("since", iso8601(p.since))
                                     .raw("mailboxes_held", held + "]"));
                }
                for (const auto& m : boxes)
                    ms.push_back(
                        json_object().str("id", m.id).obj("status", status_json(e.status(m.id))));
                emit(c, json_object()
                            .str("workspace", c.g.workspace)
                            .arr("pauses", ps)
                            .arr("mailboxes", ms)
                            .num("suppressions", e.suppression_count()));
                return exit_ok;
            }
            fmt::print("workspace {}: {} mailboxes, {} suppression entries\n\n", c.g.workspace,
                       boxes.size(), e.suppression_count());
            if (pauses.empty()) {
                fmt::print("nothing is paused\n");
            } else {
                std::vector<std::vector<std::string>> rows;
                for (const auto& p : pauses) {
                    auto h = held_by(e, p, boxes);
                    std::string held;
                    for (const auto& x : h) held += (held.empty() ? "" : ",") + x;
                    rows.push_back({scope_name(p.target.scope),
                                    p.target.id.empty() ? "-" : p.target.id, p.actor,
                                    iso8601(p.since), p.reason.empty() ? "-" : p.reason,
                                    held.empty() ? "-" : held});
                }
                print_table({"PAUSED", "ID", "BY", "SINCE", "REASON", "HOLDS"}, rows);
            }
            if (!boxes.empty()) {
                fmt::print("\n");
                std::vector<std::vector<std::string>> rows;
                for (const auto& m : boxes) {
                    auto s = e.status(m.id);
                    rows.push_back(
                        {m.id, std::string(to_string(s.state)), std::string(to_string(s.health)),
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

    for (auto& [sub, run] : commands) {
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
