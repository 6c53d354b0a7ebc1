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
#include <mailers/forecast.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/sequence.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/suppression.hpp>
#include <mailers/suppression_audit.hpp>
#include <mailers/transport_factory.hpp>
#include <mailers/webhook.hpp>
#include <mailers/webhook_signing.hpp>
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

// --- campaigns, sequences, forecasts and webhook replay ------------------------

std::string read_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(exit_usage, fmt::format("cannot read the {} '{}'", what, path));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

// "2026-12-07T09:00:00Z" (seconds and Z optional) or "@UNIX_SECONDS".
mailers::time_point parse_time(const std::string& s, std::string_view what) {
    using namespace std::chrono;
    if (s.size() > 1 && s[0] == '@') {
        std::int64_t secs = 0;
        auto [p, ec] = std::from_chars(s.data() + 1, s.data() + s.size(), secs);
        if (ec == std::errc{} && p == s.data() + s.size())
            return mailers::time_point(seconds(secs));
    } else {
        int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, used = 0;
        const int n = std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d%n:%2d%n", &y, &mo, &d, &h, &mi,
                                  &used, &sec, &used);
        const std::string_view rest = n >= 5 ? std::string_view(s).substr(used) : "x";
        const year_month_day day{year(y), month(static_cast<unsigned>(mo)),
                                 std::chrono::day(static_cast<unsigned>(d))};
        if (n >= 5 && (rest.empty() || rest == "Z") && day.ok() && h < 24 && mi < 60 && sec < 61)
            return mailers::time_point(sys_days(day).time_since_epoch() + hours(h) +
                                       minutes(mi) + seconds(sec));
    }
    fail(exit_usage, fmt::format("{} '{}' is not a UTC time: write 2026-12-07T09:00:00Z or "
                                 "@UNIX_SECONDS",
                                 what, s));
}

std::string day_of(mailers::time_point t) {
    return fmt::format("{:%Y-%m-%d}", std::chrono::time_point_cast<std::chrono::seconds>(t));
}

// One line of RFC 4180 CSV (quoted fields with "" inside; no line breaks
// inside a field).
std::vector<std::string> csv_fields(std::string_view line, std::size_t line_no,
                                    const std::string& file) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char ch = line[i];
        if (quoted) {
            if (ch != '"')
                out.back() += ch;
            else if (i + 1 < line.size() && line[i + 1] == '"')
                out.back() += '"', ++i;
            else
                quoted = false;
        } else if (ch == '"' && out.back().empty()) {
            quoted = true;
        } else if (ch == ',') {
            out.emplace_back();
        } else {
            out.back() += ch;
        }
    }
    if (quoted) fail(exit_usage, fmt::format("{}, line {}: a quote is not closed", file, line_no));
    return out;
}

// Contacts as CSV with a header line: an `address` (or `email`) column,
// an optional `owner` column, and every other column a template variable.
std::vector<mailers::forecast_contact> read_contacts(const std::string& file) {
    std::istringstream in(read_file(file, "contacts file"));
    std::string line;
    std::vector<std::string> head;
    std::vector<mailers::forecast_contact> out;
    std::size_t n = 0, address_col = std::string::npos, owner_col = std::string::npos;
    while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.empty()) continue;
        auto f = csv_fields(line, n, file);
        if (head.empty()) {
            head = std::move(f);
            for (std::size_t i = 0; i < head.size(); ++i) {
                if (head[i] == "address" || head[i] == "email") address_col = i;
                if (head[i] == "owner") owner_col = i;
            }
            if (address_col == std::string::npos)
                fail(exit_usage, fmt::format("{}: the header line has no `address` column", file));
            continue;
        }
        if (f.size() != head.size())
            fail(exit_usage, fmt::format("{}, line {}: {} fields where the header has {}", file, n,
                                         f.size(), head.size()));
        auto to = mailers::parse_address(f[address_col]);
        if (!to)
            fail(exit_usage,
                 fmt::format("{}, line {}: '{}' is not a valid address", file, n, f[address_col]));
        mailers::forecast_contact c{*to, {}, {}};
        for (std::size_t i = 0; i < f.size(); ++i) {
            if (i == owner_col)
                c.owner = f[i];
            else if (i != address_col)
                c.variables[head[i]] = f[i];
        }
        out.push_back(std::move(c));
    }
    if (out.empty()) fail(exit_usage, fmt::format("{} lists no contacts", file));
    return out;
}

// A campaign definition as JSON (docs/cli.md, "forecast"):
// {"id", "name", "subject", "text", "html", "pool" | "mailbox", "reply_to",
//  "not_before", "recipients": ["a@x" | {"to": "a@x", "variables": {...}}]}.
mailers::campaign_config read_campaign(const std::string& file) {
    const auto text = read_file(file, "campaign file");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (auto err = parser.parse(text).get(doc))
        fail(exit_usage, fmt::format("{}: not JSON ({})", file, simdjson::error_message(err)));
    simdjson::dom::object o;
    if (doc.get(o)) fail(exit_usage, fmt::format("{}: a campaign is a JSON object", file));
    auto bad = [&](std::string_view what) -> void {
        fail(exit_usage, fmt::format("{}: {}", file, what));
    };
    auto str = [&](simdjson::dom::element v, std::string_view name) {
        std::string_view s;
        if (v.get(s)) bad(fmt::format("\"{}\" must be a string", name));
        return std::string(s);
    };
    mailers::campaign_config c;
    for (auto [key, v] : o) {
        if (key == "id") c.id = str(v, key);
        else if (key == "name") c.name = str(v, key);
        else if (key == "subject") c.content.subject = str(v, key);
        else if (key == "text") c.content.text = str(v, key);
        else if (key == "html") c.content.html = str(v, key);
        else if (key == "pool") c.pool = str(v, key);
        else if (key == "mailbox") c.mailbox = str(v, key);
        else if (key == "not_before") c.not_before = parse_time(str(v, key), "not_before");
        else if (key == "reply_to") {
            auto a = mailers::parse_address(str(v, key));
            if (!a) bad("\"reply_to\" is not a valid address");
            c.reply_to = *a;
        } else if (key == "recipients") {
            simdjson::dom::array a;
            if (v.get(a)) bad("\"recipients\" must be an array");
            std::size_t i = 0;
            for (auto r : a) {
                ++i;
                mailers::campaign_recipient rec;
                std::string to;
                simdjson::dom::object ro;
                if (r.is_string()) {
                    to = str(r, "recipients");
                } else if (!r.get(ro)) {
                    for (auto [rk, rv] : ro) {
                        if (rk == "to") {
                            to = str(rv, "to");
                        } else if (rk == "variables") {
                            simdjson::dom::object vars;
                            if (rv.get(vars))
                                bad(fmt::format("recipient {}: \"variables\" must be an object", i));
                            for (auto [vk, vv] : vars)
                                rec.variables[std::string(vk)] = str(vv, vk);
                        } else {
                            bad(fmt::format("recipient {}: unknown member \"{}\"", i, rk));
                        }
                    }
                } else {
                    bad(fmt::format("recipient {}: an address or {{\"to\", \"variables\"}}", i));
                }
                auto parsed = mailers::parse_address(to);
                if (!parsed) bad(fmt::format("recipient {}: '{}' is not a valid address", i, to));
                rec.to = *parsed;
                c.recipients.push_back(std::move(rec));
            }
        } else {
            bad(fmt::format("unknown member \"{}\"", key));
        }
    }
    return c;
}

json_object progress_json(const mailers::campaign_progress& p) {
    json_object by;
    for (const auto& [reason, n] : p.waiting_by_reason) by.num(reason.empty() ? "new" : reason, n);
    json_object o;
    o.num("total", p.total)
        .num("sent", p.sent)
        .num("failed", p.failed)
        .num("unknown", p.unknown)
        .num("suppressed_at_start", p.suppressed_at_start)
        .num("suppressed_at_handoff", p.suppressed_at_handoff)
        .num("cancelled", p.cancelled)
        .num("in_flight", p.in_flight)
        .num("waiting", p.waiting)
        .obj("waiting_by_reason", by)
        .num("not_queued", p.not_queued)
        .num("remaining", p.remaining)
        .boolean("finished", p.finished());
    if (p.next_due)
        o.str("next_due", iso8601(*p.next_due));
    else
        o.null("next_due");
    return o;
}

std::string campaign_state(const mailers::campaign_progress& p) {
    return p.cancelled_campaign ? "cancelled" : p.finished() ? "finished" : "running";
}

json_object campaign_json(const mailers::campaign_info& c, const mailers::campaign_progress& p) {
    return json_object()
        .str("id", c.id)
        .str("name", c.name)
        .str("pool", c.pool)
        .str("mailbox", c.mailbox)
        .str("subject", c.content.subject)
        .str("started_at", iso8601(c.started_at))
        .str("actor", c.actor)
        .str("not_before", c.not_before == mailers::time_point{} ? "" : iso8601(c.not_before))
        .str("state", campaign_state(p))
        .obj("progress", progress_json(p));
}

constexpr std::array enrollment_states{
    mailers::enrollment_state::active, mailers::enrollment_state::paused,
    mailers::enrollment_state::completed, mailers::enrollment_state::stopped,
    mailers::enrollment_state::failed};

// Enrollments of a sequence per state, in enrollment_states' order.
std::array<std::uint64_t, enrollment_states.size()> enrollment_counts(mailers::engine& e,
                                                                      const std::string& seq) {
    std::array<std::uint64_t, enrollment_states.size()> n{};
    mailers::enrollment_filter f;
    f.sequence_id = seq;
    for (const auto& en : e.enrollments(f))
        for (std::size_t i = 0; i < n.size(); ++i)
            if (en.state == enrollment_states[i]) ++n[i];
    return n;
}

json_object enrollment_counts_json(const std::array<std::uint64_t, enrollment_states.size()>& n) {
    json_object o;
    for (std::size_t i = 0; i < n.size(); ++i) o.num(to_string(enrollment_states[i]), n[i]);
    return o;
}

std::string delay_text(const mailers::sequence_delay& d) {
    using u = mailers::sequence_delay::unit;
    const char* unit = d.in == u::hours ? "hours" : d.in == u::days ? "days" : "business days";
    return fmt::format("{} {}", d.amount, unit);
}

std::string sender_text(const mailers::sender_rule& s) {
    std::string out(to_string(s.kind));
    if (!s.id.empty()) out += " " + s.id;
    if (!s.fallback_pool.empty()) out += " (else pool " + s.fallback_pool + ")";
    return out;
}

json_object enrollment_json(const mailers::enrollment& e) {
    json_object o;
    o.num("id", e.id)
        .str("sequence", e.sequence_id)
        .str("address", e.address)
        .str("state", to_string(e.state))
        .str("stop_reason", to_string(e.stop_reason))
        .num("steps_sent", e.step)
        .str("owner", e.owner)
        .str("detail", e.detail)
        .str("enrolled_at", iso8601(e.enrolled_at));
    if (e.next_due)
        o.str("next_due", iso8601(*e.next_due));
    else
        o.null("next_due");
    return o;
}

// A forecast's plan, summed up for people and for scripts.
// Sends of `follow` (forecast_request::follow) count as the request's.
int report_forecast(const context& c, const mailers::forecast_plan& plan, bool list_sends,
                    const std::string& follow) {
    std::map<std::pair<std::string, std::string>, std::uint64_t> per_day;  // (day, mailbox)
    std::map<std::string, std::uint64_t> bounds, unsent_reasons;
    std::uint64_t planned = 0, existing = 0, waiting = 0;
    std::optional<mailers::time_point> first;
    for (const auto& s : plan.sends) {
        if (s.existing && (follow.empty() || s.origin != follow)) {
            ++existing;
            continue;
        }
        ++planned;
        if (!first) first = s.at;
        ++per_day[{day_of(s.at), s.mailbox}];
        ++bounds[s.bound.empty() ? "none" : s.bound];
    }
    for (const auto& u : plan.unsent) {
        ++unsent_reasons[u.reason];
        if (u.waiting) ++waiting;
    }
    if (c.g.json) {
        std::vector<json_object> days, sends, unsent;
        for (const auto& [k, n] : per_day)
            days.push_back(json_object().str("day", k.first).str("mailbox", k.second).num("sends", n));
        for (const auto& s : plan.sends)
            sends.push_back(json_object()
                                .str("at", iso8601(s.at))
                                .str("due", iso8601(s.due))
                                .str("mailbox", s.mailbox)
                                .str("recipient", s.recipient)
                                .str("origin", s.origin)
                                .num("step", s.step)
                                .str("bound", s.bound)
                                .boolean("existing", s.existing));
        for (const auto& u : plan.unsent)
            unsent.push_back(json_object()
                                 .str("recipient", u.recipient)
                                 .str("origin", u.origin)
                                 .num("step", u.step)
                                 .str("reason", u.reason)
                                 .str("detail", u.detail)
                                 .boolean("waiting", u.waiting));
        json_object b;
        for (const auto& [k, n] : bounds) b.num(k, n);
        json_object o;
        o.str("start", iso8601(plan.start)).str("end", iso8601(plan.end));
        if (first) o.str("first", iso8601(*first)); else o.null("first");
        if (plan.last) o.str("last", iso8601(*plan.last)); else o.null("last");
        emit(c, o.boolean("complete", plan.complete)
                    .num("planned", planned)
                    .num("existing", existing)
                    .num("unsent", plan.unsent.size())
                    .arr("days", days)
                    .obj("held_by", b)
                    .arr("unsent_messages", unsent)
                    .arr("sends", sends));
        return exit_ok;
    }
    print_fields({{"from", iso8601(plan.start)},
                  {"until", iso8601(plan.end)},
                  {"sends", fmt::format("{} of this request, {} already queued", planned, existing)},
                  {"first send", first ? iso8601(*first) : "-"},
                  {"last send", plan.last ? iso8601(*plan.last) : "-"},
                  {"unsent", fmt::format("{} ({} still waiting at the end)", plan.unsent.size(),
                                         waiting)},
                  {"complete", plan.complete ? "yes" : "no: messages still wait at the end"}});
    if (!per_day.empty()) {
        fmt::print("\n");
        std::vector<std::vector<std::string>> rows;
        for (const auto& [k, n] : per_day) rows.push_back({k.first, k.second, std::to_string(n)});
        print_table({"DAY", "MAILBOX", "SENDS"}, rows);
        fmt::print("\n");
        rows.clear();
        for (const auto& [k, n] : bounds) rows.push_back({k, std::to_string(n)});
        print_table({"HELD BY", "SENDS"}, rows);
    }
    if (!plan.unsent.empty()) {
        fmt::print("\n");
        std::vector<std::vector<std::string>> rows;
        for (const auto& [k, n] : unsent_reasons) rows.push_back({k, std::to_string(n)});
        print_table({"UNSENT BECAUSE", "MESSAGES"}, rows);
    }
    if (list_sends && !plan.sends.empty()) {
        fmt::print("\n");
        std::vector<std::vector<std::string>> rows;
        for (const auto& s : plan.sends)
            rows.push_back({iso8601(s.at), s.mailbox, s.recipient, s.origin,
                            s.bound.empty() ? "-" : s.bound});
        print_table({"AT", "MAILBOX", "RECIPIENT", "ORIGIN", "HELD BY"}, rows);
    }
    return exit_ok;
}

// A secret given as VALUE, env:NAME or file:PATH (the forms the host's
// configuration uses), so it need not appear on the command line.
std::string secret_value(const std::string& v, std::string_view option) {
    if (v.starts_with("env:")) {
        const char* s = std::getenv(v.c_str() + 4);
        if (!s || !*s)
            fail(exit_usage, fmt::format("{}: the environment variable {} is not set", option,
                                         v.substr(4)));
        return s;
    }
    if (v.starts_with("file:")) {
        auto s = read_file(v.substr(5), std::string(option) + " file");
        while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
        return s;
    }
    return v;
}

// "Name: value" into a header; false when the line is not one.
bool split_header(std::string_view line, std::pair<std::string, std::string>& out) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0 ||
        line.substr(0, colon).find(' ') != std::string_view::npos)
        return false;
    auto value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\r')) value.remove_suffix(1);
    out = {std::string(line.substr(0, colon)), std::string(value)};
    return true;
}

// What `webhook replay` means by its exit code, from the HTTP status the
// host would have answered.
int exit_for_webhook(const mailers::webhook_result& r) {
    if (r.accepted()) return exit_ok;
    if (r.http_status == 401 || r.http_status == 403) return exit_verify;
    if (r.http_status >= 500) return exit_other;
    return exit_usage;
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
    // Where the kept chain starts after a purge (docs/audit.md).
    auto anchor_json = [](const mailers::audit_anchor& a) {
        return json_object()
            .num("seq", a.seq)
            .str("hash", a.hash)
            .str("at", a.seq != 0 ? iso8601(a.at) : std::string())
            .boolean("keyed", a.keyed);
    };
    // Every hashed field, so an archived record can be verified again.
    auto record_json = [](const mailers::audit_record& r) {
        return json_object()
            .num("seq", r.seq)
            .str("at", iso8601(r.at))
            .raw("at_us", std::to_string(r.at.time_since_epoch().count()))
            .str("actor", r.actor)
            .str("action", r.action)
            .str("resource_type", r.resource_type)
            .str("resource_id", r.resource_id)
            .str("before", r.before)
            .str("after", r.after)
            .num("change_seq", r.change_seq)
            .str("prev_hash", r.prev_hash)
            .str("hash", r.hash);
    };

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
                mailers::audit_anchor anchor;
                auto records = c.engine().audit_log(1, anchor);
                opts.anchor = anchor;
                std::uint64_t bad = 0;
                auto ec = mailers::verify_audit_chain(records, opts, &bad);
                json_object o;
                o.boolean("ok", !ec).num("records", records.size());
                if (ec)
                    o.num("bad_seq", bad).str("error", ec.message());
                else
                    o.null("bad_seq");
                if (anchor.seq != 0)
                    o.obj("anchor", anchor_json(anchor));
                else
                    o.null("anchor");
                emit(c, o);
                if (ec) {
                    std::fprintf(stderr, "mailers: audit verification failed at seq %llu: %s\n",
                                 static_cast<unsigned long long>(bad), ec.message().c_str());
                    return exit_verify;
                }
                if (!c.g.json)
                    fmt::print("audit chain ok: {} records{}{}\n", records.size(),
                               anchor.seq != 0
                                   ? fmt::format(" from anchor {}:{} (purged {})", anchor.seq,
                                                 anchor.hash, iso8601(anchor.at))
                                   : std::string(" from seq 1"),
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
                mailers::audit_anchor anchor;
                auto records = c.engine().audit_log(1, anchor);
                opts.anchor = anchor;
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
                                  for (const auto& r : recs) items.push_back(record_json(r));
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

    std::string audit_export_file;
    command(aud, "export",
            "Write the anchor and every kept record as JSON lines, to FILE or stdout, for "
            "archiving before a purge",
            "mailers audit export /archive/audit-2026-12.jsonl",
            [&](context& c) {
                c.key_for_engine = false;
                open_workspace(c, mailers::open_mode::existing);
                mailers::audit_anchor anchor;
                const auto records = c.engine().audit_log(1, anchor);
                std::string text = json_object().obj("anchor", anchor_json(anchor)).dump() + "\n";
                for (const auto& r : records) text += record_json(r).dump() + "\n";
                if (audit_export_file.empty() || audit_export_file == "-") {
                    fmt::print("{}", text);
                    return exit_ok;
                }
                std::ofstream out(audit_export_file, std::ios::binary | std::ios::trunc);
                if (!out) fail(exit_usage, fmt::format("cannot write '{}'", audit_export_file));
                out << text;
                out.close();
                if (!out) fail(exit_other, fmt::format("writing '{}' failed", audit_export_file));
                emit(c, json_object()
                            .str("file", audit_export_file)
                            .num("exported", records.size())
                            .num("first_seq", records.empty() ? 0 : records.front().seq)
                            .num("last_seq", records.empty() ? 0 : records.back().seq));
                if (!c.g.json)
                    fmt::print("exported {} records ({}..{}) to {}\n", records.size(),
                               records.empty() ? 0 : records.front().seq,
                               records.empty() ? 0 : records.back().seq, audit_export_file);
                return exit_ok;
            })
        ->add_option("FILE", audit_export_file, "Output file (default: stdout)");

    std::uint64_t purge_days = 0, purge_keep_from = 0;
    auto* apurge =
        command(aud, "purge",
                "Remove audit records older than N days; the chain keeps verifying from its anchor "
                "(export first to archive them)",
                "mailers audit purge --older-than-days 400", [&](context& c) {
                    if (purge_days == 0) fail(exit_usage, "--older-than-days must be at least 1");
                    open_workspace(c, mailers::open_mode::existing);
                    const auto now = std::chrono::time_point_cast<std::chrono::microseconds>(
                        std::chrono::system_clock::now());
                    const auto r = c.engine().purge_audit(
                        c.who, now - std::chrono::days(purge_days), purge_keep_from);
                    json_object o;
                    o.num("purged", r.purged);
                    if (r.anchor.seq != 0)
                        o.obj("anchor", anchor_json(r.anchor));
                    else
                        o.null("anchor");
                    if (r.audit_seq != 0)
                        o.num("audit_seq", r.audit_seq);
                    else
                        o.null("audit_seq");
                    emit(c, o);
                    if (!c.g.json) {
                        if (r.purged == 0)
                            fmt::print("nothing older than {} days to purge\n", purge_days);
                        else
                            fmt::print(
                                "purged {} records; the chain starts at anchor {}:{} (audit seq "
                                "{})\n",
                                r.purged, r.anchor.seq, r.anchor.hash, r.audit_seq);
                    }
                    return exit_ok;
                });
    apurge->add_option("--older-than-days", purge_days, "Purge records older than this")
        ->required();
    apurge->add_option("--keep-from", purge_keep_from,
                       "Keep records from this seq on, whatever their age (0: no bound)");

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

    // --- campaigns --------------------------------------------------------------
    auto* camp = app.add_subcommand("campaign", "Campaigns started by the host (docs/campaigns.md)");
    camp->require_subcommand(1);
    command(camp, "list", "List campaigns with their progress", "mailers campaign list",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                std::vector<json_object> items;
                std::vector<std::vector<std::string>> rows;
                for (const auto& k : e.campaigns()) {
                    const auto p = e.campaign_progress(k.id);
                    items.push_back(campaign_json(k, p));
                    rows.push_back({k.id, k.pool.empty() ? "mailbox " + k.mailbox : "pool " + k.pool,
                                    iso8601(k.started_at), campaign_state(p),
                                    std::to_string(p.total), std::to_string(p.sent),
                                    std::to_string(p.failed + p.unknown),
                                    std::to_string(p.waiting + p.in_flight),
                                    std::to_string(p.remaining)});
                }
                emit(c, json_object().arr("campaigns", items));
                if (!c.g.json)
                    print_table({"ID", "THROUGH", "STARTED", "STATE", "TOTAL", "SENT", "FAILED",
                                 "WAITING", "REMAINING"},
                                rows);
                return exit_ok;
            });

    std::string campaign_id;
    command(camp, "show",
            "Show a campaign and where it stands: sent, failed, suppressed, waiting and why",
            "mailers campaign show q4-launch",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                auto k = e.find_campaign(campaign_id);
                if (!k) fail(exit_no, fmt::format("no campaign '{}'", campaign_id));
                const auto p = e.campaign_progress(campaign_id);
                emit(c, campaign_json(*k, p));
                if (c.g.json) return exit_ok;
                std::string by;
                for (const auto& [reason, n] : p.waiting_by_reason)
                    by += fmt::format("{}{} {}", by.empty() ? "" : ", ", n,
                                      reason.empty() ? "new" : reason);
                print_fields(
                    {{"id", k->id},
                     {"name", k->name},
                     {"through", k->pool.empty() ? "mailbox " + k->mailbox : "pool " + k->pool},
                     {"subject", k->content.subject},
                     {"started", fmt::format("{} by {}", iso8601(k->started_at), k->actor)},
                     {"not before",
                      k->not_before == mailers::time_point{} ? "-" : iso8601(k->not_before)},
                     {"state", campaign_state(p)},
                     {"recipients", std::to_string(p.total)},
                     {"sent", std::to_string(p.sent)},
                     {"failed", std::to_string(p.failed)},
                     {"unknown outcome", std::to_string(p.unknown)},
                     {"suppressed", fmt::format("{} at start, {} at hand-off",
                                                p.suppressed_at_start, p.suppressed_at_handoff)},
                     {"cancelled", std::to_string(p.cancelled)},
                     {"in flight", std::to_string(p.in_flight)},
                     {"waiting", p.waiting ? fmt::format("{} ({})", p.waiting, by) : "0"},
                     {"not queued", std::to_string(p.not_queued)},
                     {"remaining", std::to_string(p.remaining)},
                     {"next due", p.next_due ? iso8601(*p.next_due) : "-"}});
                return exit_ok;
            })
        ->add_option("ID", campaign_id, "The campaign id")
        ->required();

    command(camp, "cancel",
            "Withdraw every waiting message of a campaign and mark it cancelled (items being "
            "handed off this moment still go)",
            "mailers --actor ops campaign cancel q4-launch",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                if (!e.find_campaign(campaign_id))
                    fail(exit_no, fmt::format("no campaign '{}'", campaign_id));
                const auto n = e.cancel_campaign(c.who, campaign_id);
                emit(c, json_object().str("id", campaign_id).num("withdrawn", n).boolean(
                            "cancelled", true));
                if (!c.g.json)
                    fmt::print("cancelled campaign {}: {} waiting messages withdrawn\n",
                               campaign_id, n);
                return exit_ok;
            })
        ->add_option("ID", campaign_id, "The campaign id")
        ->required();

    // --- sequences and enrollments ----------------------------------------------
    auto* seq = app.add_subcommand("sequence", "Sequences and their enrollments (docs/sequences.md)");
    seq->require_subcommand(1);
    command(seq, "list", "List sequences with their enrollments per state",
            "mailers sequence list", [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                std::vector<json_object> items;
                std::vector<std::vector<std::string>> rows;
                for (const auto& s : e.sequences()) {
                    const auto n = enrollment_counts(e, s.id);
                    const bool paused = e.is_sequence_paused(s.id);
                    items.push_back(json_object()
                                        .str("id", s.id)
                                        .str("name", s.name)
                                        .num("steps", s.steps.size())
                                        .boolean("paused", paused)
                                        .obj("enrollments", enrollment_counts_json(n)));
                    std::vector<std::string> r{s.id, std::to_string(s.steps.size()),
                                               paused ? "yes" : "no"};
                    for (auto x : n) r.push_back(std::to_string(x));
                    rows.push_back(std::move(r));
                }
                emit(c, json_object().arr("sequences", items));
                if (!c.g.json)
                    print_table({"ID", "STEPS", "SEQUENCE PAUSED", "ACTIVE", "PAUSED", "COMPLETED",
                                 "STOPPED", "FAILED"},
                                rows);
                return exit_ok;
            });

    std::string sequence_id;
    command(seq, "show", "Show a sequence's steps and its enrollments per state",
            "mailers sequence show outreach",
            [&](context& c) {
                open_workspace(c, mailers::open_mode::existing);
                auto& e = c.engine();
                auto s = e.find_sequence(sequence_id);
                if (!s) fail(exit_no, fmt::format("no sequence '{}'", sequence_id));
                const auto& cfg = s->config();
                const auto n = enrollment_counts(e, sequence_id);
                const bool paused = e.is_sequence_paused(sequence_id);
                if (c.g.json) {
                    std::vector<json_object> steps;
                    for (const auto& st : cfg.steps)
                        steps.push_back(json_object()
                                            .str("delay", delay_text(st.delay))
                                            .str("sender", sender_text(st.sender))
                                            .str("threading", to_string(st.threading))
                                            .str("subject", st.content.subject));
                    emit(c, json_object()
                                .str("id", cfg.id)
                                .str("name", cfg.name)
                                .str("time_zone", cfg.time_zone)
                                .boolean("paused", paused)
                                .arr("steps", steps)
                                .obj("enrollments", enrollment_counts_json(n)));
                    return exit_ok;
                }
                std::vector<std::pair<std::string, std::string>> fields{
                    {"id", cfg.id},
                    {"name", cfg.name},
                    {"time zone", cfg.time_zone.empty() ? "-" : cfg.time_zone},
                    {"paused", paused ? "yes" : "no"}};
                std::string counts;
                for (std::size_t i = 0; i < n.size(); ++i)
                    counts += fmt::format("{}{} {}", i ? ", " : "", n[i],
                                          to_string(enrollment_states[i]));
                fields.emplace_back("enrollments", counts);
                print_fields(fields);
                fmt::print("\n");
                std::vector<std::vector<std::string>> rows;
                for (std::size_t i = 0; i < cfg.steps.size(); ++i) {
                    const auto& st = cfg.steps[i];
                    rows.push_back({std::to_string(i + 1), delay_text(st.delay),
                                    sender_text(st.sender), std::string(to_string(st.threading)),
                                    st.content.subject});
                }
                print_table({"STEP", "AFTER", "SENDER", "THREAD", "SUBJECT"}, rows);
                return exit_ok;
            })
        ->add_option("ID", sequence_id, "The sequence id")
        ->required();

    auto* enr = app.add_subcommand("enrollment", "Contacts enrolled in sequences");
    enr->require_subcommand(1);
    std::string enr_state;
    std::uint64_t enr_after = 0, enr_limit = 0;
    auto* elist = command(
        enr, "list", "List a sequence's enrollments: state, steps sent, next step due",
        "mailers enrollment list --sequence outreach --state active --limit 50", [&](context& c) {
            mailers::enrollment_filter f;
            f.sequence_id = sequence_id;
            f.after_id = enr_after;
            f.limit = enr_limit;
            if (!enr_state.empty()) {
                for (auto s : enrollment_states)
                    if (enr_state == to_string(s)) f.state = s;
                if (!f.state)
                    fail(exit_usage, fmt::format("unknown state '{}': use active, paused, "
                                                 "completed, stopped or failed",
                                                 enr_state));
            }
            open_workspace(c, mailers::open_mode::existing);
            auto& e = c.engine();
            if (!e.find_sequence(sequence_id))
                fail(exit_no, fmt::format("no sequence '{}'", sequence_id));
            const auto list = e.enrollments(f);
            if (c.g.json) {
                std::vector<json_object> items;
                for (const auto& x : list) items.push_back(enrollment_json(x));
                emit(c, json_object().arr("enrollments", items));
                return exit_ok;
            }
            std::vector<std::vector<std::string>> rows;
            for (const auto& x : list)
                rows.push_back(
                    {std::to_string(x.id), x.address,
                     x.state == mailers::enrollment_state::stopped
                         ? fmt::format("stopped ({})", to_string(x.stop_reason))
                         : std::string(to_string(x.state)),
                     std::to_string(x.step), x.next_due ? iso8601(*x.next_due) : "-",
                     iso8601(x.enrolled_at), x.detail.empty() ? "-" : x.detail});
            print_table({"ID", "ADDRESS", "STATE", "SENT", "NEXT DUE", "ENROLLED", "DETAIL"}, rows);
            return exit_ok;
        });
    elist->add_option("--sequence", sequence_id, "The sequence")->required();
    elist->add_option("--state", enr_state, "Only active, paused, completed, stopped or failed");
    elist->add_option("--after", enr_after, "Only ids above this one (paging)");
    elist->add_option("--limit", enr_limit, "At most this many (0: all)");

    // --- forecast -----------------------------------------------------------------
    auto* fc = app.add_subcommand(
        "forecast",
        "What a campaign or an enrollment would send, when and from which mailbox, and what "
        "holds it back: a dry run that sends, stores and audits nothing (docs/campaigns.md)");
    fc->require_subcommand(1);
    unsigned fc_days = 30;
    bool fc_no_queue = false, fc_sends = false;
    std::string fc_file;
    auto forecast_options = [&](CLI::App* sub) {
        sub->add_option("--days", fc_days, "How far ahead to simulate, in days")
            ->capture_default_str();
        sub->add_flag("--no-queue", fc_no_queue,
                      "Leave out the sends already waiting in the queue (they compete for the "
                      "same caps otherwise)");
        sub->add_flag("--sends", fc_sends, "Also list every planned send (--json always does)");
    };
    auto run_forecast = [&](context& c, mailers::forecast_request req) {
        if (fc_days == 0 || fc_days > 366) fail(exit_usage, "--days must be between 1 and 366");
        req.horizon = std::chrono::hours(24 * fc_days);
        req.include_queue = !fc_no_queue;
        return report_forecast(c, c.engine().forecast(req), fc_sends, req.follow);
    };
    auto* fcc = command(
        fc, "campaign",
        "Forecast what is left of a started campaign (ID), or starting the campaign defined in "
        "a JSON file (id, name, subject, text, html, pool or mailbox, not_before, recipients)",
        "mailers forecast campaign q4-launch.json --days 14", [&](context& c) {
            mailers::forecast_request req;
            open_workspace(c, mailers::open_mode::existing);
            if (auto k = c.engine().find_campaign(fc_file)) {
                if (fc_no_queue)
                    fail(exit_usage, "a started campaign's messages wait in the queue: "
                                     "--no-queue would leave none to forecast");
                req.follow = "campaign:" + k->id;
                return run_forecast(c, std::move(req));
            }
            if (!std::ifstream(fc_file))
                fail(exit_no, fmt::format("no campaign '{}', and no campaign file of that name",
                                          fc_file));
            req.campaign = read_campaign(fc_file);
            if (auto k = c.engine().find_campaign(req.campaign->id))
                fail(exit_usage,
                     fmt::format("campaign '{}' is already started: `mailers forecast campaign {}` "
                                 "forecasts what is left of it",
                                 k->id, k->id));
            return run_forecast(c, std::move(req));
        });
    fcc->add_option("CAMPAIGN", fc_file,
                    "A started campaign's id, or a JSON file defining one not yet started")
        ->required();
    forecast_options(fcc);
    auto* fcs = command(
        fc, "sequence",
        "Forecast enrolling the contacts of a CSV file (header line: address, optional owner, "
        "then template variables) in a stored sequence",
        "mailers forecast sequence outreach --contacts leads.csv", [&](context& c) {
            mailers::forecast_request req;
            req.sequence_id = sequence_id;
            req.contacts = read_contacts(fc_file);
            open_workspace(c, mailers::open_mode::existing);
            if (!c.engine().find_sequence(sequence_id))
                fail(exit_no, fmt::format("no sequence '{}'", sequence_id));
            return run_forecast(c, std::move(req));
        });
    fcs->add_option("ID", sequence_id, "The sequence id")->required();
    fcs->add_option("--contacts", fc_file, "CSV file of the contacts to enroll")->required();
    forecast_options(fcs);

    // --- webhook replay -------------------------------------------------------------
    auto* wh = app.add_subcommand("webhook", "Provider webhooks (docs/webhooks.md)");
    wh->require_subcommand(1);
    std::string wh_provider, wh_file, wh_headers_file, wh_received_at, wh_signing_key,
        wh_public_key, wh_basic_user, wh_basic_password, wh_auth_header;
    std::vector<std::string> wh_headers, wh_certificates, wh_topics;
    bool wh_no_verify = false, wh_no_cert_dates = false;
    std::int64_t wh_tolerance = -1;
    auto* whr = command(
        wh, "replay",
        "Push a saved provider request body through ingest, as the host's endpoint would: "
        "verified with the same settings (or --no-verify for a body verified before), "
        "suppressing hard bounces, complaints and unsubscribes; events already applied count as "
        "duplicates and change nothing",
        "mailers webhook replay sendgrid body.json --headers-file body.headers.txt "
        "--public-key MFkw... --received-at 2020-09-09T15:04:48Z",
        [&](context& c) {
            auto provider = mailers::parse_webhook_provider(wh_provider);
            if (!provider)
                fail(exit_usage, fmt::format("unknown provider '{}': use ses, mailgun, sendgrid "
                                             "or postmark",
                                             wh_provider));
            const auto body = read_file(wh_file, "webhook body");
            std::string method = "POST";
            std::vector<std::pair<std::string, std::string>> headers;
            if (!wh_headers_file.empty()) {
                std::istringstream in(read_file(wh_headers_file, "headers file"));
                std::string line;
                for (std::size_t n = 1; std::getline(in, line); ++n) {
                    std::pair<std::string, std::string> h;
                    if (split_header(line, h)) {
                        headers.push_back(std::move(h));
                    } else if (n == 1 && line.find(" HTTP/") != std::string::npos) {
                        method = line.substr(0, line.find(' '));  // the request line
                    } else if (!line.empty() && line != "\r") {
                        fail(exit_usage, fmt::format("{}, line {}: not 'Name: value'",
                                                     wh_headers_file, n));
                    }
                }
            }
            for (const auto& s : wh_headers) {
                std::pair<std::string, std::string> h;
                if (!split_header(s, h))
                    fail(exit_usage, fmt::format("--header '{}' is not 'Name: value'", s));
                headers.push_back(std::move(h));
            }
            mailers::webhook_params p;
            p.verify = !wh_no_verify;
            if (!wh_received_at.empty()) p.now = parse_time(wh_received_at, "--received-at");
            p.mailgun.signing_key = secret_value(wh_signing_key, "--signing-key");
            p.sendgrid.public_key = wh_public_key;
            p.postmark.basic_user = wh_basic_user;
            p.postmark.basic_password = secret_value(wh_basic_password, "--basic-password");
            if (!wh_auth_header.empty()) {
                std::pair<std::string, std::string> h;
                if (!split_header(secret_value(wh_auth_header, "--auth-header"), h))
                    fail(exit_usage, "--auth-header is not 'Name: value'");
                p.postmark.header_name = h.first;
                p.postmark.header_value = h.second;
            }
            if (wh_tolerance >= 0) {
                p.mailgun.tolerance = std::chrono::seconds(wh_tolerance);
                p.sendgrid.tolerance = std::chrono::seconds(wh_tolerance);
            }
            auto certs = std::make_shared<mailers::memory_sns_certificate_store>();
            for (const auto& spec : wh_certificates) {
                const auto eq = spec.rfind('=');
                if (eq == std::string::npos)
                    fail(exit_usage, fmt::format("--sns-certificate '{}' is not URL=FILE", spec));
                if (auto r = certs->add(spec.substr(0, eq),
                                        read_file(spec.substr(eq + 1), "certificate file"));
                    !r)
                    fail(exit_usage, fmt::format("--sns-certificate '{}': {}", spec,
                                                 r.error().message()));
            }
            p.ses.certificates = certs;
            p.ses.check_certificate_dates = !wh_no_cert_dates;
            p.ses.allowed_topic_arns = wh_topics;
            std::vector<mailers::http_header> hs;
            for (const auto& [n, v] : headers) hs.push_back({n, v});
            mailers::webhook_request req;
            req.method = method;
            req.headers = hs;
            req.body = body;
            open_workspace(c, mailers::open_mode::existing);
            const auto r = c.engine().ingest_webhook(*provider, req, p);
            const auto& w = r.webhook;
            const auto applied = w.events.size() - std::min(w.events.size(), r.duplicates);
            std::vector<json_object> events;
            for (const auto& ev : w.events)
                events.push_back(json_object()
                                     .str("type", to_string(ev.type))
                                     .str("recipient", ev.recipient)
                                     .str("send_id", ev.send_id)
                                     .str("dedup_key", ev.dedup_key));
            emit(c, json_object()
                        .str("provider", to_string(*provider))
                        .str("file", wh_file)
                        .num("http_status", static_cast<std::uint64_t>(w.http_status))
                        .str("outcome", to_string(w.outcome))
                        .str("reason", w.reason)
                        .num("events", w.events.size())
                        .num("applied", applied)
                        .num("duplicates", r.duplicates)
                        .num("suppressed", r.suppressed)
                        .num("already_suppressed", r.already_suppressed)
                        .num("skipped", w.skipped)
                        .arr("event_list", events));
            const int code = exit_for_webhook(w);
            if (!c.g.json) {
                std::vector<std::pair<std::string, std::string>> f{
                    {"status", fmt::format("{} {}", w.http_status, to_string(w.outcome))},
                    {"events", fmt::format("{} ({} applied, {} duplicates)", w.events.size(),
                                           applied, r.duplicates)},
                    {"suppressed", fmt::format("{} ({} already were)", r.suppressed,
                                               r.already_suppressed)}};
                if (w.skipped) f.emplace_back("skipped", std::to_string(w.skipped));
                if (!w.reason.empty()) f.emplace_back("reason", w.reason);
                if (!w.certificate_url.empty())
                    f.emplace_back("certificate needed", w.certificate_url);
                print_fields(f);
                std::vector<std::vector<std::string>> rows;
                for (const auto& ev : w.events)
                    rows.push_back({std::string(to_string(ev.type)), ev.recipient,
                                    ev.send_id.empty() ? "-" : ev.send_id});
                if (!rows.empty()) {
                    fmt::print("\n");
                    print_table({"EVENT", "RECIPIENT", "SEND"}, rows);
                }
            }
            if (code != exit_ok)
                std::fprintf(stderr, "mailers: the %s request was not accepted (%d): %s\n",
                             std::string(to_string(*provider)).c_str(), w.http_status,
                             w.reason.c_str());
            return code;
        });
    whr->add_option("PROVIDER", wh_provider, "ses, mailgun, sendgrid or postmark")->required();
    whr->add_option("FILE", wh_file, "The request body, byte for byte as received")->required();
    whr->add_option("--header", wh_headers, "A request header 'Name: value' (repeat)")
        ->allow_extra_args(false);
    whr->add_option("--headers-file", wh_headers_file,
                    "File of 'Name: value' lines, after an optional request line");
    whr->add_flag("--no-verify", wh_no_verify,
                  "Skip signature and credential checks: only for a body verified before");
    whr->add_option("--received-at", wh_received_at,
                    "When the request was received (UTC, or @UNIX_SECONDS): timestamps are "
                    "checked against it instead of now");
    whr->add_option("--tolerance", wh_tolerance,
                    "Seconds a signed timestamp may be off (Mailgun, SendGrid; default as the "
                    "library's)");
    whr->add_option("--signing-key", wh_signing_key,
                    "Mailgun's webhook signing key, as VALUE, env:NAME or file:PATH");
    whr->add_option("--public-key", wh_public_key, "SendGrid's verification key (base64 DER)");
    whr->add_option("--basic-user", wh_basic_user, "Postmark: the URL's basic-auth user");
    whr->add_option("--basic-password", wh_basic_password,
                    "Postmark: its password, as VALUE, env:NAME or file:PATH");
    whr->add_option("--auth-header", wh_auth_header,
                    "Postmark: the custom header 'Name: secret', as VALUE, env:NAME or file:PATH");
    whr->add_option("--sns-certificate", wh_certificates,
                    "SES: URL=FILE, the PEM the message's SigningCertURL names (repeat)")
        ->allow_extra_args(false);
    whr->add_flag("--no-certificate-dates", wh_no_cert_dates,
                  "SES: accept an SNS certificate outside its validity dates (an old capture)");
    whr->add_option("--topic-arn", wh_topics, "SES: a TopicArn to accept (repeat; none: any)")
        ->allow_extra_args(false);

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
