// `mailers suppression`.
#include <fstream>
#include <mailers/audit.hpp>
#include <mailers/suppression.hpp>
#include <mailers/suppression_audit.hpp>
#include <mailers/suppression_lookup.hpp>
#include <sstream>

#include "cli.hpp"

namespace mailers_cli {
namespace {

json_object entry_json(const mailers::suppression_entry& e) {
    return json_object()
        .str("kind", to_string(e.kind))
        .str("value", e.value)
        .str("reason", to_string(e.reason))
        .str("source", e.source)
        .str("created_at", iso8601(e.created_at));
}

}  // namespace

void add_suppression_commands(CLI::App& app, commands& reg) {
    // --- suppression ----------------------------------------------------------
    auto* sup = app.add_subcommand("suppression", "The workspace's do-not-contact list");
    sup->require_subcommand(1);

    auto& addr_arg = reg.keep<std::string>();
    reg.add(sup, "check", "Say whether ADDRESS is suppressed, and by which entry (exit 3 if so)",
            "mailers suppression check jane@example.com",
            [&](context& c) {
                // Point queries on the store: an engine would first load
                // every entry of the workspace. An engine answers when the
                // store alone cannot (lookup_suppression says when).
                c.spec = resolve_store(c.g);
                auto st = open_store(c.spec, c.g.pg_schema, mailers::open_mode::existing);
                auto found = mailers::lookup_suppression(
                    *st, c.g.workspace, addr_arg,
                    c.g.erasure_key_file.empty() ? "" : "file:" + c.g.erasure_key_file);
                if (!found) {
                    open_workspace(c, mailers::open_mode::existing);
                    found.emplace();
                    found->suppressed = c.engine().is_suppressed(addr_arg);
                    found->entry = c.engine().find_suppression(addr_arg);
                }
                const bool suppressed = found->suppressed;
                const auto& entry = found->entry;
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

    auto& sup_value = reg.keep<std::string>();
    auto& sup_reason = reg.keep<std::string>("manual");
    auto& sup_source = reg.keep<std::string>("cli");
    auto& sup_domain = reg.keep<bool>(false);
    auto* add = reg.add(
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

    auto* rem = reg.add(
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

    auto& csv_file = reg.keep<std::string>();
    auto& csv_source = reg.keep<std::string>("csv-import");
    auto* imp = reg.add(
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

    auto& export_file = reg.keep<std::string>();
    reg.add(sup, "export", "Write every entry as CSV, to FILE or stdout",
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

    reg.add(sup, "verify",
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
}

}  // namespace mailers_cli
