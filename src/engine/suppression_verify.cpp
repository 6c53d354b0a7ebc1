// engine::verify_suppressions: the suppression rows, current and replaced,
// checked against the audited changes that wrote and ended them.
#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <limits>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "engine/engine_impl.hpp"

namespace mailers {

namespace {

enum class change_kind { add, remove, import, settings, erase };

bool is_suppression_action(std::string_view action) {
    return action == "suppression.add" || action == "suppression.remove" ||
           action == "suppression.import" || action == "suppression.settings" ||
           action == "person.erase";
}

// What an audited change says it did, and what the rows show it did.
struct add_info {
    std::uint64_t audit_seq = 0;
    suppression_entry entry;
    std::uint64_t identical = 0;  // rows found holding the entry
};
struct remove_info {
    std::uint64_t audit_seq = 0;
    std::optional<suppression_kind> kind;  // unknown when the record has no prior entry
    std::string value;
    std::uint64_t ended = 0;  // rows of the key it ended
};
struct bulk_info {
    change_kind kind = change_kind::import;
    std::uint64_t audit_seq = 0;
    std::optional<std::uint64_t> want_count;
    std::optional<std::array<std::uint64_t, 4>> want_lanes;
    suppression_hasher* hasher = nullptr;  // null: the digest cannot be checked
    std::optional<std::uint64_t> want_erased;
    suppression_set_digest written;
    std::uint64_t ended = 0;  // rows it erased (not rewrote)
};
// The engine's commit writer puts several mutations in one commit, so one
// change seq may carry several audit records.
struct change_group {
    std::vector<add_info> adds;
    std::vector<remove_info> removes;
    std::optional<bulk_info> bulk;
};

std::optional<suppression_entry> entry_from_json(std::string_view json) {
    if (json.empty()) return std::nullopt;
    thread_local simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    simdjson::dom::object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return std::nullopt;
    std::string_view kind, value, reason, source;
    std::int64_t created = 0;
    if (o["kind"].get(kind) != simdjson::SUCCESS || o["value"].get(value) != simdjson::SUCCESS ||
        o["reason"].get(reason) != simdjson::SUCCESS ||
        o["source"].get(source) != simdjson::SUCCESS ||
        o["created_at_us"].get(created) != simdjson::SUCCESS)
        return std::nullopt;
    auto r = parse_suppression_reason(reason);
    if (!r || (kind != "address" && kind != "domain")) return std::nullopt;
    suppression_entry e;
    e.kind = kind == "address" ? suppression_kind::address : suppression_kind::domain;
    e.value = std::string(value);
    e.reason = *r;
    e.source = std::string(source);
    e.created_at = time_point{std::chrono::microseconds{created}};
    return e;
}

// The fields of a bulk change's audit body the check needs.
struct bulk_body {
    std::optional<std::uint64_t> count, erased;
    std::string digest, digest_key;
};

bulk_body bulk_from_json(std::string_view json, change_kind kind) {
    bulk_body b;
    thread_local simdjson::dom::parser parser;
    simdjson::padded_string padded(json);
    simdjson::dom::object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return b;
    std::uint64_t n = 0;
    if (o[kind == change_kind::settings ? "written" : "count"].get(n) == simdjson::SUCCESS)
        b.count = n;
    if (kind == change_kind::settings) {
        if (o["erased"].get(n) == simdjson::SUCCESS || o["rekeyed"].get(n) == simdjson::SUCCESS)
            b.erased = n;
    }
    std::string_view s;
    if (o["rows_digest"].get(s) == simdjson::SUCCESS) b.digest = std::string(s);
    if (o["digest_key"].get(s) == simdjson::SUCCESS) b.digest_key = std::string(s);
    return b;
}

bool same_entry(const suppression_entry& a, const suppression_entry& b) {
    return a.kind == b.kind && a.value == b.value && a.reason == b.reason && a.source == b.source &&
           a.created_at == b.created_at;
}

class verifier {
public:
    verifier(store& st, std::string ws, std::string_view key)
        : st_(st), ws_(std::move(ws)), key_(key), unkeyed_(), keyed_(key) {}

    suppression_verify_report run() {
        // Every change up to here has its record in the log read next, or
        // before its anchor.
        const std::uint64_t changes_before = st_.last_change_seq(ws_);
        std::vector<audit_record> log = detail::read_kept_audit(st_, ws_, 1, anchor_);
        if (!chain_ok(log, anchor_)) return std::move(report_);
        read_changes(log);
        // Change and audit seqs are given in one order (both under the
        // workspace's lock): with records purged, the changes before the
        // first one kept had theirs purged; with none of them kept, every
        // change made before the log was read did.
        if (anchor_.seq != 0)
            purged_through_ =
                first_ != std::numeric_limits<std::uint64_t>::max() ? first_ - 1 : changes_before;
        std::vector<suppression_version> group;
        st_.for_each_suppression_version(ws_, [&](const suppression_version& v) {
            if (!group.empty() && (group.front().entry.kind != v.entry.kind ||
                                   group.front().entry.value != v.entry.value)) {
                check_key(group);
                group.clear();
            }
            group.push_back(v);
        });
        if (!group.empty()) check_key(group);
        // What was committed while the rows were read.
        const std::size_t read = log.size();
        const std::uint64_t next = log.empty() ? 1 : log.back().seq + 1;
        st_.for_each_audit(ws_, next, [&](const audit_record& r) { log.push_back(r); });
        if (log.size() > read) {
            // A purge meanwhile moved the anchor: what it removed was
            // checked above, the rest is checked from the new anchor.
            const audit_anchor now = st_.find_audit_anchor(ws_);
            std::span<const audit_record> kept(log);
            while (!kept.empty() && kept.front().seq < now.seq) kept = kept.subspan(1);
            if (!chain_ok(kept, now)) return std::move(report_);
        }
        std::unordered_set<std::uint64_t> later;
        for (std::size_t i = read; i < log.size(); ++i)
            if (log[i].change_seq != 0 && is_suppression_action(log[i].action))
                later.insert(log[i].change_seq);
        // A purge meanwhile may also have removed records of changes made
        // after the first read: those before the first change kept after
        // it (the order of seqs, as above).
        std::uint64_t purged_below = 0;
        if (log.size() == read || log[read].seq > next) {
            purged_below = std::numeric_limits<std::uint64_t>::max();
            for (std::size_t i = read; i < log.size(); ++i)
                if (log[i].change_seq != 0) {
                    purged_below = log[i].change_seq;
                    break;
                }
            if (log.size() == read && st_.find_audit_anchor(ws_).seq <= next) purged_below = 0;
        }
        for (const auto& l : late_) {
            if (later.count(l.seq)) continue;
            if (l.seq < purged_below) {
                if (l.wrote) ++report_.unchecked_rows;
                continue;
            }
            problem(l.kind, l.value, 0, l.seq,
                    fmt::format("{} by change {}, which no audited suppression change accounts "
                                "for",
                                l.wrote ? "written" : "replaced or removed", l.seq));
        }
        check_changes();
        report_.ok = report_.problem_count == 0;
        return std::move(report_);
    }

private:
    struct late_version {
        suppression_kind kind;
        std::string value;
        std::uint64_t seq;
        bool wrote;
    };

    bool chain_ok(std::span<const audit_record> log, const audit_anchor& anchor) {
        std::uint64_t bad = 0;
        if (!verify_audit_chain(log, audit_verify_options{{}, std::string(key_), anchor}, &bad))
            return true;
        report_.ok = false;
        report_.audit_chain_ok = false;
        report_.broken_audit_seq = bad;
        problem(std::nullopt, {}, bad, 0,
                fmt::format("the audit chain fails verification at seq {}; the suppressions "
                            "were not checked against it",
                            bad));
        return false;
    }

    void problem(std::optional<suppression_kind> kind, std::string_view value,
                 std::uint64_t audit_seq, std::uint64_t change_seq, std::string what) {
        ++report_.problem_count;
        if (report_.problems.size() < suppression_verify_report::max_problems)
            report_.problems.push_back(
                {kind, std::string(value), audit_seq, change_seq, std::move(what)});
    }

    void read_changes(const std::vector<audit_record>& log) {
        for (const auto& r : log) {
            if (r.change_seq == 0) {
                if (is_suppression_action(r.action)) legacy_ = true;
                continue;
            }
            first_ = std::min(first_, r.change_seq);
            newest_ = std::max(newest_, r.change_seq);
            if (!is_suppression_action(r.action)) {
                others_.emplace(r.change_seq, r.seq);
                continue;
            }
            change_group& g = changes_[r.change_seq];
            if (r.action == "suppression.add") {
                auto e = entry_from_json(r.after);
                if (e)
                    g.adds.push_back({r.seq, std::move(*e), 0});
                else
                    problem(std::nullopt, r.resource_id, r.seq, r.change_seq,
                            "the audit record of an add holds no readable entry");
            } else if (r.action == "suppression.remove") {
                remove_info rm;
                rm.audit_seq = r.seq;
                if (auto prior = entry_from_json(r.before)) rm.kind = prior->kind;
                rm.value = r.resource_id;
                g.removes.push_back(std::move(rm));
            } else {
                bulk_info c;
                c.audit_seq = r.seq;
                c.kind = r.action == "suppression.import" ? change_kind::import
                         : r.action == "person.erase"     ? change_kind::erase
                                                          : change_kind::settings;
                if (c.kind == change_kind::erase) read_erasure(r);
                auto b = bulk_from_json(r.after, c.kind);
                c.want_count = b.count;
                c.want_erased = b.erased;
                if (!b.digest.empty()) {
                    c.want_lanes = suppression_set_digest::parse_lanes(b.digest);
                    if (b.digest_key == unkeyed_.key_mark())
                        c.hasher = &unkeyed_;
                    else if (!key_.empty() && b.digest_key == keyed_.key_mark())
                        c.hasher = &keyed_;
                    else
                        ++report_.unchecked_digests;
                }
                g.bulk = std::move(c);
            }
        }
    }

    // One key's versions: replaced ones in the order they were ended, then
    // the current one.
    // An erasure removed rows of one address: the audited single changes
    // of it (`voided`) and the rows other changes wrote or ended
    // (`removed`, as [seq, by_seq]) are accounted for by it.
    void read_erasure(const audit_record& r) {
        thread_local simdjson::dom::parser parser;
        simdjson::padded_string padded(r.after);
        simdjson::dom::object o;
        if (parser.parse(padded).get(o) != simdjson::SUCCESS) return;
        simdjson::dom::array arr;
        if (o["voided"].get(arr) == simdjson::SUCCESS)
            for (auto v : arr) {
                std::uint64_t seq = 0;
                if (v.get(seq) == simdjson::SUCCESS) voided_.insert(seq);
            }
        if (o["removed"].get(arr) == simdjson::SUCCESS)
            for (auto v : arr) {
                simdjson::dom::array pair;
                std::uint64_t seq = 0, by = 0;
                if (v.get(pair) != simdjson::SUCCESS || pair.size() != 2 ||
                    pair.at(0).get(seq) != simdjson::SUCCESS ||
                    pair.at(1).get(by) != simdjson::SUCCESS)
                    continue;
                ++removed_written_[seq];
                if (by != 0) ++removed_ended_[by];
            }
    }

    void check_key(const std::vector<suppression_version>& group) {
        const suppression_kind kind = group.front().entry.kind;
        const std::string& value = group.front().entry.value;
        for (std::size_t i = 0; i < group.size(); ++i) {
            const auto& v = group[i];
            if (v.by_seq == 0)
                ++report_.rows;
            else
                ++report_.superseded_rows;
            // Rows written before change seqs were kept, or by changes
            // whose records were purged, cannot be tied to a record.
            if ((legacy_ || anchor_.seq != 0) && v.seq < first_)
                ++report_.unchecked_rows;
            else if (v.seq > newest_)
                late_.push_back({kind, value, v.seq, true});
            else
                check_write(v);
            if (v.by_seq == 0) continue;
            if (v.by_seq <= purged_through_) continue;  // ended by a purged change
            if (v.by_seq > newest_) {
                late_.push_back({kind, value, v.by_seq, false});
                continue;
            }
            bool rewritten = false;
            for (std::size_t j = 0; j < group.size(); ++j)
                if (j != i && group[j].seq == v.by_seq) rewritten = true;
            check_end(v, rewritten);
        }
    }

    void no_change(const suppression_version& v, std::uint64_t seq, std::string_view verb) {
        if (auto it = others_.find(seq); it != others_.end())
            problem(v.entry.kind, v.entry.value, it->second, seq,
                    fmt::format("{} by change {}, whose audit record is no suppression change",
                                verb, seq));
        else
            problem(
                v.entry.kind, v.entry.value, 0, seq,
                fmt::format("{} by change {}, which no audited change accounts for", verb, seq));
    }

    void check_write(const suppression_version& v) {
        const auto it = changes_.find(v.seq);
        if (it == changes_.end()) return no_change(v, v.seq, "written");
        change_group& g = it->second;
        bool same_key = false;
        for (auto& add : g.adds) {
            if (add.entry.kind != v.entry.kind || add.entry.value != v.entry.value) continue;
            same_key = true;
            if (same_entry(add.entry, v.entry)) {
                ++add.identical;
                return;
            }
        }
        if (g.bulk) {
            g.bulk->written.add(g.bulk->hasher ? (*g.bulk->hasher)(v.entry)
                                               : suppression_row_hash{});
            return;
        }
        const std::uint64_t audit_seq = !g.adds.empty()      ? g.adds.front().audit_seq
                                        : !g.removes.empty() ? g.removes.front().audit_seq
                                                             : 0;
        problem(v.entry.kind, v.entry.value, audit_seq, v.seq,
                same_key ? "the row differs from the entry its add audited"
                         : "the row is none that its change audited");
    }

    void check_end(const suppression_version& v, bool rewritten) {
        const auto it = changes_.find(v.by_seq);
        if (it == changes_.end()) return no_change(v, v.by_seq, "replaced or removed");
        change_group& g = it->second;
        if (rewritten) return;  // the rows written by that change are checked as written
        for (auto& rm : g.removes)
            if (rm.value == v.entry.value && (!rm.kind || *rm.kind == v.entry.kind)) {
                ++rm.ended;
                return;
            }
        if (g.bulk && g.bulk->kind == change_kind::settings) {
            ++g.bulk->ended;
            return;
        }
        const std::uint64_t audit_seq = !g.adds.empty()      ? g.adds.front().audit_seq
                                        : !g.removes.empty() ? g.removes.front().audit_seq
                                        : g.bulk             ? g.bulk->audit_seq
                                                             : 0;
        problem(v.entry.kind, v.entry.value, audit_seq, v.by_seq,
                fmt::format("ended by change {}, which neither removed this key nor left a row "
                            "of it",
                            v.by_seq));
    }

    void check_changes() {
        std::vector<std::pair<std::uint64_t, const change_group*>> sorted;
        for (const auto& [seq, g] : changes_) sorted.emplace_back(seq, &g);
        std::sort(sorted.begin(), sorted.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        for (const auto& [seq, gp] : sorted) {
            const change_group& g = *gp;
            report_.changes += g.adds.size() + g.removes.size() + (g.bulk ? 1 : 0);
            for (const auto& add : g.adds) {
                if (add.identical == 0 && voided_.count(add.audit_seq)) continue;
                if (add.identical == 0)
                    problem(add.entry.kind, add.entry.value, add.audit_seq, seq,
                            "the entry this add audited is in no row");
                else if (add.identical > 1)
                    problem(add.entry.kind, add.entry.value, add.audit_seq, seq,
                            fmt::format("the entry this add audited is in {} rows", add.identical));
            }
            for (const auto& rm : g.removes)
                if (rm.ended != 1 && !(rm.ended == 0 && voided_.count(rm.audit_seq)))
                    problem(rm.kind, rm.value, rm.audit_seq, seq,
                            fmt::format("this removal ended {} rows of its key, not 1", rm.ended));
            if (!g.bulk) continue;
            const bulk_info& c = *g.bulk;
            const char* name = c.kind == change_kind::import  ? "import"
                               : c.kind == change_kind::erase ? "erasure"
                                                              : "re-key";
            const auto gone = [](const auto& m, std::uint64_t seq) -> std::uint64_t {
                const auto it = m.find(seq);
                return it == m.end() ? 0 : it->second;
            };
            const std::uint64_t erased_rows = gone(removed_written_, seq);
            if (c.want_count && *c.want_count != c.written.count + erased_rows)
                problem(std::nullopt, {}, c.audit_seq, seq,
                        fmt::format("the {} wrote {} rows by its audit record; {} are found", name,
                                    *c.want_count, c.written.count));
            else if (erased_rows != 0)
                ++report_.unchecked_digests;  // an erasure took some of its rows
            else if (c.hasher && (!c.want_lanes || *c.want_lanes != c.written.lanes))
                problem(std::nullopt, {}, c.audit_seq, seq,
                        fmt::format("the {} rows found do not match the digest in the {}'s audit "
                                    "record",
                                    c.written.count, name));
            if (c.kind == change_kind::settings && c.want_erased &&
                *c.want_erased != c.ended + gone(removed_ended_, seq))
                problem(std::nullopt, {}, c.audit_seq, seq,
                        fmt::format("the re-key erased {} rows by its audit record; {} are found",
                                    *c.want_erased, c.ended));
        }
    }

    store& st_;
    std::string ws_;
    std::string_view key_;
    suppression_hasher unkeyed_;
    suppression_hasher keyed_;
    suppression_verify_report report_;
    std::unordered_map<std::uint64_t, change_group> changes_;
    std::unordered_map<std::uint64_t, std::uint64_t> others_;  // change seq -> audit seq
    bool legacy_ = false;  // suppression changes from before change seqs were kept
    audit_anchor anchor_;  // where the kept records start (seq 0: none purged)
    std::uint64_t first_ = std::numeric_limits<std::uint64_t>::max();
    std::uint64_t newest_ = 0;
    std::uint64_t purged_through_ = 0;  // changes whose records a purge removed
    std::vector<late_version> late_;
    // What erasures removed (read_erasure).
    std::unordered_set<std::uint64_t> voided_;
    std::unordered_map<std::uint64_t, std::uint64_t> removed_written_, removed_ended_;
};

}  // namespace

suppression_verify_report verify_suppressions(store& st, std::string_view workspace,
                                              std::string_view audit_key) {
    return verifier(st, std::string(workspace), audit_key).run();
}

suppression_verify_report engine::verify_suppressions() const {
    suppression_verify_report out;
    impl_->with_store([&](store& st) {
        out = mailers::verify_suppressions(st, impl_->params.workspace, impl_->params.audit_key);
    });
    return out;
}

}  // namespace mailers
