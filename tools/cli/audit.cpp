// `mailers audit`.
#include <charconv>
#include <fstream>
#include <mailers/audit.hpp>
#include <sstream>

#include "cli.hpp"

namespace mailers_cli {

namespace {

// The kept records, with the store's anchor and the host's key in `opts`.
// The engine opens without the key, so that a mistyped one cannot mark the
// workspace as keyed (context::key_for_engine).
std::vector<mailers::audit_record> read_chain(context& c, mailers::audit_verify_options& opts) {
    if (!c.g.audit_key_file.empty()) opts.key = read_audit_key(c.g.audit_key_file);
    c.key_for_engine = false;
    open_workspace(c, mailers::open_mode::existing);
    mailers::audit_anchor anchor;
    auto records = c.engine().audit_log(1, anchor);
    opts.anchor = anchor;
    return records;
}

// Where the kept chain starts after a purge (docs/audit.md).
json_object anchor_json(const mailers::audit_anchor& a) {
    return json_object()
        .num("seq", a.seq)
        .str("hash", a.hash)
        .str("at", a.seq != 0 ? iso8601(a.at) : std::string())
        .boolean("keyed", a.keyed);
}

// Every hashed field, so an archived record can be verified again.
json_object record_json(const mailers::audit_record& r) {
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
}

}  // namespace

void add_audit_commands(CLI::App& app, commands& reg) {
    // --- audit ------------------------------------------------------------------
    auto* aud = app.add_subcommand("audit", "The hash-chained audit trail");
    aud->require_subcommand(1);

    auto& checkpoint_arg = reg.keep<std::string>();
    reg.add(aud, "verify",
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
                auto records = read_chain(c, opts);
                const mailers::audit_anchor anchor = *opts.anchor;
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

    reg.add(aud, "checkpoint",
            "Print the verified head of the chain as SEQ:HASH, to keep elsewhere",
            "mailers audit checkpoint >> /secure/mailers-checkpoints", [&](context& c) {
                mailers::audit_verify_options opts;
                auto records = read_chain(c, opts);
                const mailers::audit_anchor anchor = *opts.anchor;
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

    auto& audit_from = reg.keep<std::uint64_t>(1);
    auto& audit_limit = reg.keep<std::uint64_t>(0);
    auto* alist = reg.add(aud, "list", "List audit records from a seq on",
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

    auto& audit_export_file = reg.keep<std::string>();
    reg.add(aud, "export",
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

    auto& purge_days = reg.keep<std::uint64_t>(0);
    auto& purge_keep_from = reg.keep<std::uint64_t>(0);
    auto* apurge =
        reg.add(aud, "purge",
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
}

}  // namespace mailers_cli
