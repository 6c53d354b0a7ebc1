// What every command group of the `mailers` tool shares.
#include "cli.hpp"

#include <fmt/chrono.h>

#include <charconv>
#include <chrono>
#include <fstream>
#include <mailers/postgres_store.hpp>
#include <mailers/sqlite_store.hpp>
#include <sstream>

namespace mailers_cli {

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

void open_workspace(context& c, mailers::open_mode mode) {
    c.spec = resolve_store(c.g);
    const bool create = mode == mailers::open_mode::create;
    auto st = open_store(c.spec, c.g.pg_schema, create ? mailers::open_mode::open_or_create : mode);
    const bool exists = st->last_change_seq(c.g.workspace) != 0;
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
    // The tool never hands off sends: it runs its io_context only while it
    // waits for a provider check, which must not hand off queued ones.
    ep.drain_queue = false;
    if (!c.g.audit_key_file.empty() && c.key_for_engine)
        ep.audit_key = "file:" + c.g.audit_key_file;
    if (!c.g.erasure_key_file.empty()) ep.erasure_key = "file:" + c.g.erasure_key_file;
    c.eng = std::make_unique<mailers::engine>(c.io.get_executor(), std::move(ep));
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

void emit(const context& c, const json_object& o) {
    if (c.g.json) fmt::print("{}\n", o.dump());
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

std::string read_file(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) fail(exit_usage, fmt::format("cannot read the {} '{}'", what, path));
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

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
            return mailers::time_point(sys_days(day).time_since_epoch() + hours(h) + minutes(mi) +
                                       seconds(sec));
    }
    fail(exit_usage, fmt::format("{} '{}' is not a UTC time: write 2026-12-07T09:00:00Z or "
                                 "@UNIX_SECONDS",
                                 what, s));
}

CLI::App* commands::add(CLI::App* parent, std::string name, std::string help, std::string example,
                        handler h) {
    auto* sub = parent->add_subcommand(std::move(name), std::move(help));
    if (!example.empty()) sub->footer("Example:\n  " + example);
    handlers_.emplace_back(sub, std::move(h));
    return sub;
}

}  // namespace mailers_cli
