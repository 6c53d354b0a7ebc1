// The invariants (MISSION.md) with several processes on one store: the
// driver sets up a workspace, runs MAILERS_MP_PROCS copies of mp_child on
// it at once (an SQLite file, then a fresh schema of the PostgreSQL
// database in MAILERS_TEST_PG), kills some with SIGKILL and starts
// replacements, restarts the PostgreSQL server once, and then checks the
// log every process appended to against the ledger:
//
//  1. no hand-off to a recipient (address or domain) between a suppress()
//     that returned and the next unsuppress() that began, in any process,
//     nor to an address after an erase_person() of it returned, whatever
//     came after (a few addresses, "u5@...", are erased now and then);
//  2. the same for pause() / resume() at every scope;
//  3. no window of any cap (mailbox rolling and calendar limits, warm-up,
//     minimum gap, provider, sender and recipient domain quotas, "*"
//     included) holds more hand-offs than allowed; where a cap changed,
//     "allowed" is the largest maximum of any version that may have been in
//     force while the window's sends were being decided (from the first
//     one's request to the last one's hand-off); where it never changed,
//     that cap;
//  4. an idempotency key is handed off for one send id, and delivered at
//     most once: further hand-offs only after an attempt that certainly
//     failed (the transport fails 3% of attempts that way);
//  5. each child that finished: engine_stats add up to the sends it made,
//     category by category;
//  6. no send is left `reserved`; every delivery is `accepted` or `unknown`
//     in the ledger, every `accepted` send was delivered exactly once, every
//     send a child saw accepted is `accepted`; the sends a killed child had
//     `reserved` end `unknown`, unless its last COMMIT landed after the
//     kill with the true outcome of the hand-off (PostgreSQL only);
//  7. the audit chain verifies and holds every change the children made;
//     one "person.erase" record per erasure, naming the hash, never the
//     address;
//  8. the queue: every send a child enqueued is in the store under its key,
//     none is left claimed by a member that ended cleanly, and each one
//     done names the ledger row of its key (invariant 4 covers its
//     hand-offs, since each queued send has a key of its own);
//  9. an inbound event (the same few complaints fed by every process) is
//     applied once: one process suppresses or records it, the others are
//     told it is a duplicate, and the audit log holds one record for each
//     suppression an event made;
// 10. the daily counts (docs/rules.md), summed over every day the clock
//     reached: `sent` in every scope equals that scope's `accepted` rows
//     (and the mailboxes' add up to the workspace's); the workspace's
//     `failed` and `unknown` equal the rows that ended so through the
//     engine that handed them off, and `complained` the complaint keys
//     applied, each within what an erasure or a change cut short leaves
//     unsure (see check_counts);
// 11. a pause rule (mp::failure_rule, low enough to fire often, measured
//     by every process after each failure and now and then on the chaos
//     thread) fires at most once per rule, mailbox and generation (its
//     "rule.fired" records, actor "rule:<id>", carry the generation); its
//     pauses are lifted by the chaos like any other, and its records are
//     not the chaos principal's.
//
// What "in force" means when a process dies in the middle of a change: the
// kernel releases the per-target lock (mp_common.hpp) at once, but a
// PostgreSQL COMMIT already sent may still land; such a change is taken to
// land at any moment up to 5 s after the kill (0 on SQLite, where nothing
// outlives the process).
//
// Environment (defaults make the CTest run short; a soak sets them higher):
//   MAILERS_MP_SECONDS     run length per store (default 8)
//   MAILERS_MP_PROCS       processes at once (default 4, at least 4 for the MISSION figure)
//   MAILERS_MP_KILLS       SIGKILLs per store (default 2)
//   MAILERS_MP_PG_RESTARTS server restarts on PostgreSQL (default 1)
//   MAILERS_MP_KEYS        idempotency key space shared by all processes (default 800)
//   MAILERS_MP_SEED        replays the operations (not their timing)
//   MAILERS_TEST_PG        libpq conninfo; unset: the PostgreSQL case is skipped, or fails
//                          when MAILERS_REQUIRE_PG=1
//   MAILERS_MP_KEEP=1      keep the run directory (log, clock, SQLite file) after a pass;
//                          it is always kept after a failure
//   MAILERS_MP_VERBOSE=1   print, per cap, how many windows were checked and how many full
//   MAILERS_TEST_PG_CTL    a shell command that restarts that server; when unset, a
//                          cluster made by scripts/pg-test-cluster is found through the
//                          server's data_directory and restarted with that script
// A soak: MAILERS_MP_SECONDS=300 MAILERS_MP_PROCS=6 MAILERS_MP_KILLS=20 MAILERS_MP_PG_RESTARTS=4
#include <date/tz.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mailers/transports/null_transport.hpp>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "invariant_helpers.hpp"
#include "mp_common.hpp"
#include "process_util.hpp"

namespace {

using namespace mailers;
namespace fs = std::filesystem;

using mailers_test::env_u64;
using mailers_test::local;

std::string env_str(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

std::vector<std::string> split(const std::string& line, char sep = '\t') {
    std::vector<std::string> out;
    std::string cur;
    for (char c : line) {
        if (c == sep) {
            out.push_back(std::move(cur));
            cur.clear();
        } else {
            cur += c;
        }
    }
    out.push_back(std::move(cur));
    return out;
}

std::string slurp_tail(const fs::path& p, std::size_t max = 6000) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    auto s = ss.str();
    return s.size() > max ? "..." + s.substr(s.size() - max) : s;
}

struct violations {
    std::uint64_t count = 0;
    std::map<std::string, std::uint64_t> by_kind;
    std::vector<std::string> first;
    void add(const std::string& kind, std::string what) {
        ++count;
        ++by_kind[kind];
        if (first.size() < 40) first.push_back("[" + kind + "] " + std::move(what));
    }
    std::string report() const {
        std::string out;
        for (const auto& [k, n] : by_kind) out += k + ": " + std::to_string(n) + "\n";
        for (const auto& f : first) out += f + "\n";
        return out;
    }
};

// --- the log -----------------------------------------------------------------

struct handoff {
    std::int64_t mono = 0, clock_us = 0, issued = 0;
    int pid = 0;
    std::string mailbox, provider, sender_domain, recipient, key, send_id, pool, outcome;
    bool delivered() const { return outcome != "fail"; }
};

struct admin_op {
    int pid = 0;
    std::uint64_t seq = 0;
    std::string op, target, arg, status;
    std::int64_t begin = -1, end = -1;
    /// The latest moment the change may take effect.
    std::int64_t lands_by = LLONG_MAX;
    bool lift() const { return op == "unsuppress" || op == "resume"; }
    /// A suppression made by an inbound event, audited under the
    /// webhook's principal rather than the chaos one.
    bool by_event() const { return arg.rfind("event:", 0) == 0; }
    bool establish() const { return op == "suppress" || op == "pause" || erase(); }
    /// An erasure: the address stays suppressed for good (a keyed hash
    /// that no unsuppress() of the address removes).
    bool erase() const { return op == "erase"; }
};

struct completion {
    int pid = 0;
    std::string category, send_id, key;
    bool duplicate = false;
};

struct enqueued {
    int pid = 0;
    std::string key, status;
    std::uint64_t id = 0;
    std::string recipient;
};

struct applied_event {
    int pid = 0;
    std::string key, outcome;
};

struct parsed_log {
    std::vector<handoff> handoffs;
    std::vector<admin_op> ops;
    std::vector<completion> completions;
    std::vector<enqueued> queued;
    std::vector<applied_event> events;
    std::vector<std::vector<std::string>> finished;  // X lines
    std::uint64_t clock_moves = 0, malformed = 0;
};

parsed_log read_log(const fs::path& p, const std::map<int, std::int64_t>& killed,
                    std::int64_t grace_ns) {
    parsed_log out;
    std::map<std::pair<int, std::uint64_t>, admin_op> ops;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
        auto f = split(line);
        try {
            if (f[0] == "H" && f.size() == 13) {
                handoff h;
                h.mono = std::stoll(f[1]);
                h.clock_us = std::stoll(f[2]);
                h.pid = std::stoi(f[3]);
                h.mailbox = f[4];
                h.provider = f[5];
                h.sender_domain = f[6];
                h.recipient = f[7];
                h.key = f[8] == "-" ? "" : f[8];
                h.send_id = f[9];
                h.pool = f[10] == "-" ? "" : f[10];
                h.issued = std::stoll(f[11]);
                h.outcome = f[12];
                out.handoffs.push_back(std::move(h));
            } else if (f[0] == "A" && f.size() == 9) {
                const int pid = std::stoi(f[3]);
                const std::uint64_t seq = std::stoull(f[4]);
                auto& op = ops[{pid, seq}];
                op.pid = pid;
                op.seq = seq;
                op.op = f[5];
                op.target = f[6];
                op.arg = f[7];
                if (f[1] == "B") {
                    op.begin = std::stoll(f[2]);
                } else {
                    op.end = std::stoll(f[2]);
                    op.status = f[8];
                }
            } else if (f[0] == "R" && f.size() == 7) {
                out.completions.push_back({std::stoi(f[2]), f[3], f[4] == "-" ? "" : f[4],
                                           f[5] == "-" ? "" : f[5], f[6] == "1"});
            } else if (f[0] == "X" && f.size() == 20) {
                out.finished.push_back(std::move(f));
            } else if (f[0] == "C" && f.size() == 4) {
                ++out.clock_moves;
            } else if (f[0] == "Q" && f.size() == 7) {
                out.queued.push_back({std::stoi(f[2]), f[3], f[5], std::stoull(f[4]), f[6]});
            } else if (f[0] == "W" && f.size() == 5) {
                out.events.push_back({std::stoi(f[2]), f[3], f[4]});
            } else {
                ++out.malformed;
            }
        } catch (const std::exception&) {
            ++out.malformed;
        }
    }
    for (auto& [id, op] : ops) {
        if (op.end >= 0) {
            op.lands_by = op.end;
        } else if (auto k = killed.find(op.pid); k != killed.end()) {
            op.status = "orphan";
            op.lands_by = k->second + grace_ns;
        } else {
            op.status = "orphan";  // a child that died on its own: may land any time
        }
        if (op.begin < 0) op.begin = op.end;  // cannot happen: B is written first
        out.ops.push_back(op);
    }
    std::sort(out.ops.begin(), out.ops.end(),
              [](const admin_op& a, const admin_op& b) { return a.begin < b.begin; });
    return out;
}

// --- invariants 1 and 2: what was in force when ----------------------------------

struct interval {
    std::int64_t from = 0, to = LLONG_MAX;
    const admin_op* by = nullptr;
};

/// For each target, the spans during which a suppression or pause was
/// certainly in force: from a suppress()/pause() that returned, to the
/// begin of the first lift that may have landed after that return; from an
/// erase_person() that returned, for good.
std::unordered_map<std::string, std::vector<interval>> in_force(const std::vector<admin_op>& ops,
                                                                std::uint64_t& voided) {
    std::unordered_map<std::string, std::vector<const admin_op*>> per_target;
    for (const auto& op : ops)
        if (op.establish() || op.lift()) per_target[op.target].push_back(&op);
    std::unordered_map<std::string, std::vector<interval>> out;
    for (const auto& [target, list] : per_target) {
        for (const auto* s : list) {
            if (!s->establish() || s->status != "ok") continue;
            interval iv{s->end, LLONG_MAX, s};
            for (const auto* u : list)
                if (!s->erase() && u->lift() && u->lands_by > s->end)
                    iv.to = std::min(iv.to, u->begin);
            if (iv.to <= iv.from) {
                ++voided;
                continue;
            }
            out[target].push_back(iv);
        }
    }
    return out;
}

// --- invariant 3: caps ------------------------------------------------------------

/// One version of a cap object: its maxima, and the span of real time in
/// which it may have been the one in force.
struct cap_version {
    std::vector<std::uint64_t> maxima;
    std::int64_t from = LLONG_MIN, to = LLONG_MAX;
};

std::vector<std::uint64_t> parse_maxima(const std::string& s) {
    std::vector<std::uint64_t> out;
    if (s == "-") return out;
    for (const auto& x : split(s, ',')) out.push_back(std::stoull(x));
    return out;
}

std::vector<std::uint64_t> maxima_of(const std::vector<rate_limit>& l) {
    std::vector<std::uint64_t> out;
    for (const auto& r : l) out.push_back(r.max);
    return out;
}

/// The versions of one object: the set-up's, then one per change. A change
/// that returned is in force from its begin until the next change that
/// returned; one that failed or whose process died may have landed at any
/// moment up to `lands_by`, and then stays in force until a change that
/// returned and began after that.
std::vector<cap_version> versions_of(const std::string& object,
                                     const std::vector<std::uint64_t>& base,
                                     const std::vector<admin_op>& ops) {
    struct change {
        std::vector<std::uint64_t> maxima;
        std::int64_t begin, lands_by, end;
        bool certain;
    };
    std::vector<change> cs{{base, LLONG_MIN, LLONG_MIN, LLONG_MIN, true}};
    for (const auto& op : ops)
        if (op.op == "caps" && op.target == object)
            cs.push_back({parse_maxima(op.arg), op.begin, op.lands_by, op.end, op.status == "ok"});
    std::vector<cap_version> out;
    for (std::size_t i = 0; i < cs.size(); ++i) {
        cap_version v{cs[i].maxima, cs[i].begin, LLONG_MAX};
        for (std::size_t j = i + 1; j < cs.size(); ++j)
            if (cs[j].certain && cs[j].begin >= cs[i].lands_by) {
                v.to = cs[j].end;
                break;
            }
        out.push_back(std::move(v));
    }
    return out;
}

struct counted {
    time_point at{};          // the ledger's reserved_at: when the caps were claimed
    std::int64_t asked = 0;   // the request was made (before the claim)
    std::int64_t handed = 0;  // the hand-off (after the claim)
    std::string send_id;
    // From the hand-off: an erasure empties the ledger row's recipient.
    std::string recipient_domain;
};

/// No window of limit `li` holds more sends than the largest maximum any
/// version in force while they were decided allowed. Sound with any clock
/// order across processes: of the sends in a window, the one whose claim
/// committed last counted every other one (their claim times are inside
/// its window, and later claims count too), under the version in force
/// at that moment.
void check_limit(const std::string& what, std::vector<counted> ds, std::size_t li,
                 const rate_limit& l, const date::time_zone* zone,
                 const std::vector<cap_version>& versions, violations& bad,
                 std::map<std::string, std::pair<std::uint64_t, std::uint64_t>>& windows) {
    std::sort(ds.begin(), ds.end(), [](const counted& a, const counted& b) { return a.at < b.at; });
    auto period = [&](time_point x) { return mailers_test::calendar_period(zone, l.length, x); };
    std::size_t start = 0;
    for (std::size_t i = 0; i < ds.size();) {
        std::size_t g = i;
        while (g + 1 < ds.size() && ds[g + 1].at == ds[i].at) ++g;
        const auto t = ds[i].at;
        if (l.kind == window_kind::rolling) {
            while (ds[start].at <= t - std::chrono::duration_cast<duration>(l.length)) ++start;
        } else {
            while (period(ds[start].at) != period(t)) ++start;
        }
        std::int64_t a = LLONG_MAX, b = LLONG_MIN;
        for (std::size_t k = start; k <= g; ++k) {
            a = std::min(a, ds[k].asked);
            b = std::max(b, ds[k].handed);
        }
        std::uint64_t allowed = 0;
        std::size_t possible = 0;
        for (const auto& v : versions)
            if (v.from <= b && v.to >= a && li < v.maxima.size()) {
                allowed = std::max(allowed, v.maxima[li]);
                ++possible;
            }
        const std::uint64_t n = g - start + 1;
        // Per cap: windows checked, and how many of them were full (the
        // cap was reached, so it was what held sends back).
        auto& w = windows[what];
        ++w.first;
        w.second += n == allowed;
        if (n > allowed) {
            std::ostringstream os;
            os << what << ": " << n << " hand-offs in the window ending at reserved_at "
               << t.time_since_epoch().count() << " us (sends";
            for (std::size_t k = start; k <= g && k < start + 12; ++k) os << " " << ds[k].send_id;
            os << (g - start >= 12 ? " ..." : "") << "), allowed " << allowed << " (" << possible
               << " version(s) possibly in force)";
            bad.add("cap", os.str());
        }
        i = g + 1;
    }
}

// --- the daily counts ------------------------------------------------------------

/// The store's daily counts (docs/rules.md), summed over every UTC day the
/// run's clock reached, against the ledger and the log: `sent` in every
/// scope equals the `accepted` rows of that scope; the workspace's `failed`
/// and `unknown` equal the rows that ended so through the engine that
/// handed them off (not refusals at hand-off, not rows a recovery marked
/// `unknown`), within the rows an erasure left without recipient or detail;
/// `complained` equals the complaint keys applied: at least those a child
/// saw applied, at most those plus the ones whose application failed or
/// was cut by a kill (it may have committed).
void check_counts(const engine& eng, const std::unordered_map<std::uint64_t, ledger_row>& rows,
                  const parsed_log& log, const std::vector<mp::mailbox_spec>& specs, time_point now,
                  violations& bad, std::string& report) {
    count_day to = utc_day(now);
    for (const auto& h : log.handoffs) to = std::max(to, utc_day(time_point(duration(h.clock_us))));
    const count_day from = utc_day(mp::epoch()) - 1;
    to += 1;
    auto total = [&](count_scope scope, const std::string& id) {
        daily_count sum{};
        for (count_day d = from; d <= to; d += 3000)
            for (const auto& day : eng.daily_counts(scope, id, d, std::min(to, d + 2999)))
                for (std::size_t m = 0; m < count_metric_count; ++m) sum.n[m] += day.n[m];
        return sum;
    };
    std::map<std::pair<count_scope, std::string>, std::uint64_t> sent;
    std::map<std::string, std::string> domain_of;
    for (const auto& m : specs) domain_of[m.id] = m.domain();
    std::uint64_t failed = 0, unknown = 0, erased_failed = 0, erased_unknown = 0;
    for (const auto& [id, r] : rows) {
        // An erasure leaves the row without recipient and detail.
        const bool erased = r.recipient.empty();
        if (r.state == send_state::accepted) {
            ++sent[{count_scope::workspace, ""}];
            ++sent[{count_scope::mailbox, r.mailbox}];
            ++sent[{count_scope::provider, r.provider}];
            ++sent[{count_scope::sender_domain, domain_of[r.mailbox]}];
            if (!r.pool.empty()) ++sent[{count_scope::pool, r.pool}];
        } else if (r.state == send_state::failed) {
            const bool refused =
                std::find(std::begin(mp::refused_details), std::end(mp::refused_details),
                          r.detail) != std::end(mp::refused_details);
            erased ? ++erased_failed : failed += !refused;
        } else if (r.state == send_state::unknown) {
            const bool recovered =
                r.detail == mp::recovered_detail || r.detail == mp::detached_detail;
            erased ? ++erased_unknown : unknown += !recovered;
        }
    }
    std::set<std::pair<count_scope, std::string>> scopes;
    for (const auto& [k, n] : sent) scopes.insert(k);
    for (const auto& m : specs) {
        scopes.insert({count_scope::mailbox, m.id});
        scopes.insert({count_scope::sender_domain, m.domain()});
        scopes.insert({count_scope::provider, m.provider});
    }
    for (const auto& p : mp::pool_configs()) scopes.insert({count_scope::pool, p.id});
    std::uint64_t mailbox_sum = 0;
    for (const auto& [scope, id] : scopes) {
        const auto got = total(scope, id)[count_metric::sent];
        const auto want = sent.count({scope, id}) ? sent.at({scope, id}) : 0;
        if (scope == count_scope::mailbox) mailbox_sum += got;
        if (got != want)
            bad.add("counts", std::string(to_string(scope)) + " '" + id + "' counts " +
                                  std::to_string(got) + " sent; the ledger has " +
                                  std::to_string(want) + " accepted");
    }
    const auto ws = total(count_scope::workspace, "");
    if (mailbox_sum != ws[count_metric::sent])
        bad.add("counts", "the mailboxes count " + std::to_string(mailbox_sum) +
                              " sent, the workspace " + std::to_string(ws[count_metric::sent]));
    auto within = [&](const char* what, std::uint64_t got, std::uint64_t lo, std::uint64_t hi) {
        report += std::string(what) + " " + std::to_string(got) + " (expected " +
                  std::to_string(lo) + (hi != lo ? ".." + std::to_string(hi) : "") + "); ";
        if (got < lo || got > hi)
            bad.add("counts", "the workspace counts " + std::to_string(got) + " " + what +
                                  ", expected " + std::to_string(lo) + " to " + std::to_string(hi));
    };
    within("failed", ws[count_metric::failed], failed, failed + erased_failed);
    within("unknown", ws[count_metric::unknown], unknown, unknown + erased_unknown);
    std::set<std::string> applied, maybe;
    for (const auto& e : log.events)
        if (e.outcome == "suppressed" || e.outcome == "applied")
            applied.insert(e.key);
        else if (e.outcome == "error")
            maybe.insert(e.key);
    for (const auto& op : log.ops)
        if (op.by_event() && op.status == "orphan") maybe.insert(op.arg.substr(6));
    for (const auto& k : applied) maybe.erase(k);
    within("complained", ws[count_metric::complained], applied.size(),
           applied.size() + maybe.size());
    report = "daily counts, days " + std::to_string(from) + " to " + std::to_string(to) +
             ": sent " + std::to_string(ws[count_metric::sent]) + ", " + report;
}

// --- processes --------------------------------------------------------------------

/// One SQL statement on the test database, for what the store API does not
/// do: finding the server's data directory, dropping a run's schema.
std::string pg_exec(const std::string& conninfo, const std::string& sql, std::string* error) {
    PGconn* c = PQconnectdb(conninfo.c_str());
    std::string out;
    if (PQstatus(c) != CONNECTION_OK) {
        if (error) *error = PQerrorMessage(c);
    } else {
        PQsetNoticeProcessor(
            c, [](void*, const char*) {}, nullptr);
        PGresult* r = PQexec(c, sql.c_str());
        const auto st = PQresultStatus(r);
        if (st == PGRES_TUPLES_OK && PQntuples(r) > 0)
            out = PQgetvalue(r, 0, 0);
        else if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && error)
            *error = PQresultErrorMessage(r);
        PQclear(r);
    }
    PQfinish(c);
    return out;
}

/// The command that restarts the PostgreSQL server: MAILERS_TEST_PG_CTL, or
/// scripts/pg-test-cluster's restart for a cluster it made (its data lives
/// in DIR/data). Empty when neither applies.
std::string pg_restart_command(const std::string& conninfo, std::string& why_not) {
    if (auto cmd = env_str("MAILERS_TEST_PG_CTL"); !cmd.empty()) return cmd;
    std::string err;
    const fs::path data = pg_exec(conninfo, "SHOW data_directory", &err);
    const fs::path script = fs::path(MAILERS_SOURCE_DIR) / "scripts" / "pg-test-cluster";
    if (data.empty()) {
        why_not = "the server's data_directory cannot be read (" + err + ")";
        return {};
    }
    if (data.filename() != "data" || !fs::exists(data.parent_path() / "conninfo") ||
        !fs::exists(script)) {
        why_not = "the server (data directory " + data.string() +
                  ") was not started by scripts/pg-test-cluster";
        return {};
    }
    return script.string() + " restart " + data.parent_path().string();
}

struct run_config {
    std::string kind;    // sqlite | postgres
    std::string db;      // file, or conninfo
    std::string schema;  // postgres
    std::string restart_command;
    std::uint64_t seconds, procs, kills, restarts, keys, seed;
    std::int64_t grace_ns;
};

struct member_map {
    std::mutex mu;
    std::map<std::uint64_t, std::int64_t> pid_of;  // member id -> pid
    void note(const std::vector<member_record>& ms) {
        std::lock_guard lock(mu);
        for (const auto& m : ms) pid_of[m.id] = m.info.pid;
    }
};

/// Returns true when the run found nothing wrong.
bool run(const run_config& cfg) {
    CAPTURE(cfg.kind);
    CAPTURE(cfg.seed);
    MESSAGE(cfg.kind << ": seed " << cfg.seed << " (MAILERS_MP_SEED), " << cfg.procs
                     << " processes, " << cfg.seconds << " s, " << cfg.kills << " kills"
                     << (cfg.kind == "postgres"
                             ? ", " +
                                   std::to_string(cfg.restart_command.empty() ? 0 : cfg.restarts) +
                                   " server restarts, schema " + cfg.schema
                             : std::string()));
    std::mt19937_64 rng(cfg.seed);
    const fs::path dir =
        fs::temp_directory_path() / ("mailers-mp-" + cfg.kind + "-" + std::to_string(cfg.seed) +
                                     "-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const std::string db = cfg.kind == "sqlite" ? (dir / "mp.db").string() : cfg.db;
    const auto children_out = (dir / "children.txt").string();
    auto clock = std::make_shared<mp::shared_clock>((dir / "clock").string(), true);
    { std::ofstream((dir / "log").string()); }
    { std::ofstream((dir / "locks").string()); }

    // --- the workspace ------------------------------------------------------------
    auto store = mp::open_store(cfg.kind, db, cfg.schema);
    const principal admin{"admin", "Set-up"};
    const auto specs = mp::mailbox_specs();
    const auto qspecs = mp::quota_specs();
    {
        boost::asio::io_context ioc;
        engine_params p;
        p.storage = store;
        p.clock = clock;
        p.sync_interval = std::chrono::milliseconds(20);
        p.lease = std::chrono::milliseconds(3000);
        engine eng(ioc.get_executor(), p);
        for (auto id : {"pa", "pb", "pc"})
            eng.add_provider(admin, id, std::make_shared<null_transport>(ioc.get_executor()));
        for (const auto& m : specs) eng.upsert_mailbox(admin, m.config(m.limits));
        for (const auto& pc : mp::pool_configs()) eng.upsert_pool(admin, pc);
        for (const auto& q : qspecs) eng.set_quota(admin, q.base);
        eng.put_pause_rule(admin, mp::failure_rule());
    }

    // --- the run ------------------------------------------------------------------
    const auto run_ns = static_cast<std::int64_t>(cfg.seconds) * 1'000'000'000;
    const auto t0 = mp::mono_ns();
    const auto deadline = t0 + run_ns;
    std::uint64_t next_name = 0;
    std::map<pid_t, std::string> live;
    auto start_child = [&] {
        const auto i = next_name++;
        const auto name = "c" + std::to_string(i);
        pid_t pid =
            mailers_test::spawn_child({MAILERS_MP_CHILD, cfg.kind, db, cfg.schema, dir.string(),
                                       name, std::to_string(cfg.seed * 1000 + i),
                                       std::to_string(deadline), std::to_string(cfg.keys)},
                                      children_out);
        live[pid] = name;
    };
    for (std::uint64_t i = 0; i < cfg.procs; ++i) start_child();

    std::vector<std::int64_t> kill_at, restart_at;
    for (std::uint64_t k = 0; k < cfg.kills; ++k)
        kill_at.push_back(t0 + static_cast<std::int64_t>(
                                   (0.1 + 0.6 * static_cast<double>(rng() % 10000) / 10000.0) *
                                   static_cast<double>(run_ns)));
    if (!cfg.restart_command.empty())
        for (std::uint64_t k = 0; k < cfg.restarts; ++k)
            restart_at.push_back(t0 +
                                 static_cast<std::int64_t>(
                                     (0.25 + 0.5 * static_cast<double>(rng() % 10000) / 10000.0) *
                                     static_cast<double>(run_ns)));
    std::sort(kill_at.begin(), kill_at.end());
    std::sort(restart_at.begin(), restart_at.end());

    // Member ids to pids, from a thread of its own: the store may keep a
    // call waiting while the server restarts.
    member_map members;
    std::atomic<bool> polling{true};
    std::thread poller([&] {
        while (polling) {
            try {
                members.note(store->members("default"));
            } catch (const std::exception&) {
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(150));
        }
    });

    std::map<int, std::int64_t> killed;  // pid -> when it was gone
    std::set<std::uint64_t> dead_members;
    std::set<std::uint64_t> reserved_by_dead;  // send ids `reserved` by a killed member
    std::vector<std::string> early_exits, restarts_done;
    std::size_t ki = 0, ri = 0;
    auto reap = [&](bool block) {
        for (auto it = live.begin(); it != live.end();) {
            int status = 0;
            const pid_t r = waitpid(it->first, &status, block ? 0 : WNOHANG);
            if (r == it->first) {
                if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                    early_exits.push_back(it->second + " [" + std::to_string(it->first) +
                                          "] ended with status " + std::to_string(status));
                it = live.erase(it);
            } else {
                ++it;
            }
        }
    };
    while (mp::mono_ns() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        reap(false);
        const auto now = mp::mono_ns();
        if (ki < kill_at.size() && now >= kill_at[ki] && !live.empty()) {
            ++ki;
            auto victim = std::next(live.begin(), static_cast<long>(rng() % live.size()));
            const pid_t pid = victim->first;
            try {
                members.note(store->members("default"));
            } catch (const std::exception&) {
            }
            REQUIRE(::kill(pid, SIGKILL) == 0);
            int status = 0;
            REQUIRE(waitpid(pid, &status, 0) == pid);
            killed[pid] = mp::mono_ns();
            live.erase(victim);
            {
                std::lock_guard lock(members.mu);
                for (const auto& [id, p] : members.pid_of)
                    if (p == pid) dead_members.insert(id);
            }
            // What the dead member left `reserved` must end `unknown`. Read
            // now, before a survivor or the replacement recovers it.
            try {
                store->for_each_send(
                    "default", time_point::min(), time_point::max(), [&](const ledger_row& r) {
                        if (r.state == send_state::reserved && dead_members.count(r.owner))
                            reserved_by_dead.insert(r.id);
                    });
            } catch (const std::exception& e) {
                MESSAGE("reading the ledger after a kill failed: " << e.what());
            }
            // Kills end early enough for the replacement to do some work.
            start_child();
        }
        if (ri < restart_at.size() && now >= restart_at[ri]) {
            ++ri;
            const auto b = mp::mono_ns();
            const int rc =
                std::system((cfg.restart_command + " >>" + children_out + " 2>&1").c_str());
            restarts_done.push_back("restart exit " + std::to_string(rc) + " after " +
                                    std::to_string((mp::mono_ns() - b) / 1'000'000) + " ms");
            CHECK_MESSAGE(rc == 0, "restarting the server failed: " << cfg.restart_command);
        }
    }
    // Children stop at the deadline by themselves, once their sends complete.
    const auto give_up = mp::mono_ns() + 120'000'000'000;
    while (!live.empty() && mp::mono_ns() < give_up) {
        reap(false);
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    for (const auto& [pid, name] : live) {
        early_exits.push_back(name + " [" + std::to_string(pid) + "] did not finish; killed");
        ::kill(pid, SIGKILL);
    }
    reap(true);
    polling = false;
    poller.join();
    const double elapsed = static_cast<double>(mp::mono_ns() - t0) / 1e9;
    INFO("children's output:\n" << slurp_tail(children_out));
    CHECK_MESSAGE(early_exits.empty(), [&] {
        std::string s;
        for (const auto& e : early_exits) s += e + "\n";
        return s;
    }());

    // --- the checks ---------------------------------------------------------------
    violations bad;
    const auto log = read_log(dir / "log", killed, cfg.grace_ns);
    std::unordered_map<std::uint64_t, ledger_row> rows;
    store->for_each_send("default", time_point::min(), time_point::max(),
                         [&](const ledger_row& r) { rows.emplace(r.id, r); });
    auto row_of = [&](const std::string& send_id) -> const ledger_row* {
        if (send_id.empty() || send_id == "-") return nullptr;
        auto it = rows.find(std::stoull(send_id));
        return it == rows.end() ? nullptr : &it->second;
    };

    // 1 and 2: suppressions and pauses in force at each hand-off.
    std::uint64_t voided = 0;
    const auto spans = in_force(log.ops, voided);
    std::uint64_t spans_total = 0;
    for (const auto& [t, v] : spans) spans_total += v.size();
    for (const auto& h : log.handoffs) {
        std::vector<std::string> keys{"addr:" + h.recipient};
        std::string_view d(h.recipient);
        d.remove_prefix(d.rfind('@') + 1);
        for (;;) {
            keys.push_back("dom:" + std::string(d));
            auto dot = d.find('.');
            if (dot == std::string_view::npos) break;
            d.remove_prefix(dot + 1);
        }
        keys.push_back("pause:workspace:");
        if (!h.pool.empty()) keys.push_back("pause:pool:" + h.pool);
        keys.push_back("pause:mailbox:" + h.mailbox);
        keys.push_back("pause:provider:" + h.provider);
        keys.push_back("pause:sender_domain:" + h.sender_domain);
        for (const auto& k : keys) {
            auto it = spans.find(k);
            if (it == spans.end()) continue;
            for (const auto& iv : it->second)
                if (h.mono >= iv.from && h.mono < iv.to) {
                    std::ostringstream os;
                    os << "send " << h.send_id << " handed off by pid " << h.pid << " from "
                       << h.mailbox << " to " << h.recipient << " while " << k
                       << " was in force: " << (h.mono - iv.from) / 1000 << " us after "
                       << iv.by->op << " returned in pid " << iv.by->pid << " (op " << iv.by->seq
                       << ")";
                    bad.add(k.rfind("pause:", 0) == 0 ? "paused" : "suppressed", os.str());
                }
        }
    }

    // 4: idempotency keys; and 6: the ledger against what left.
    std::unordered_map<std::string, std::vector<const handoff*>> by_key, by_send;
    for (const auto& h : log.handoffs) {
        by_send[h.send_id].push_back(&h);
        if (!h.key.empty()) by_key[h.key].push_back(&h);
    }
    for (auto& [key, hs] : by_key) {
        std::sort(hs.begin(), hs.end(),
                  [](const handoff* a, const handoff* b) { return a->mono < b->mono; });
        std::set<std::string> ids;
        const handoff* delivered = nullptr;
        for (const auto* h : hs) {
            ids.insert(h->send_id);
            if (delivered)
                bad.add("idempotency", "key " + key + " handed off again (send " + h->send_id +
                                           ", pid " + std::to_string(h->pid) + ") after send " +
                                           delivered->send_id + " was delivered");
            if (h->delivered() && !delivered) delivered = h;
        }
        if (ids.size() > 1) {
            std::string s;
            for (const auto& i : ids) s += " " + i;
            bad.add("idempotency", "key " + key + " handed off for several sends:" + s);
        }
    }
    std::unordered_map<std::string, std::uint64_t> key_rows;
    for (const auto& [id, r] : rows)
        if (!r.idempotency_key.empty() && key_rows.count(r.idempotency_key))
            bad.add("idempotency", "key " + r.idempotency_key + " has two ledger rows");
        else if (!r.idempotency_key.empty())
            key_rows[r.idempotency_key] = id;
    for (const auto& c : log.completions)
        if (!c.key.empty() && !c.send_id.empty() && key_rows.count(c.key) &&
            std::to_string(key_rows[c.key]) != c.send_id)
            bad.add("idempotency", "a send with key " + c.key + " completed (" + c.category +
                                       ") as send " + c.send_id + ", but the key's row is " +
                                       std::to_string(key_rows[c.key]));
    for (const auto& [send_id, hs] : by_send) {
        const auto n = std::count_if(hs.begin(), hs.end(), [](auto* h) { return h->delivered(); });
        const auto* r = row_of(send_id);
        if (n > 1)
            bad.add("idempotency",
                    "send " + send_id + " delivered " + std::to_string(n) + " times");
        if (!r) {
            bad.add("ledger", "send " + send_id + " was handed off but has no ledger row");
            continue;
        }
        if (n > 0 && r->state != send_state::accepted && r->state != send_state::unknown)
            bad.add("ledger", "send " + send_id + " was delivered but is recorded " +
                                  std::string(to_string(r->state)));
        if (n == 0 && r->state == send_state::accepted)
            bad.add("ledger", "send " + send_id + " is accepted but its hand-offs all failed");
        for (const auto* h : hs)
            if (h->delivered() && h->mailbox != r->mailbox)
                bad.add("ledger", "send " + send_id + " delivered from " + h->mailbox +
                                      " is recorded for " + r->mailbox);
    }
    std::map<send_state, std::uint64_t> states;
    std::uint64_t recovered_dead = 0, recovered_other = 0;
    for (const auto& [id, r] : rows) {
        ++states[r.state];
        if (r.state == send_state::reserved)
            bad.add("reserved", "send " + std::to_string(id) + " (owner " +
                                    std::to_string(r.owner) + ") is still reserved");
        if (r.state == send_state::accepted && !by_send.count(std::to_string(id)))
            bad.add("ledger",
                    "send " + std::to_string(id) + " is accepted but was never handed off");
        if (r.state == send_state::unknown && r.detail == mp::recovered_detail)
            ++(dead_members.count(r.owner) ? recovered_dead : recovered_other);
    }
    for (auto id : reserved_by_dead) {
        if (!rows.count(id) || rows[id].state == send_state::unknown) continue;
        // A killed client's last COMMIT may already be with the server and
        // land after the ledger was read at the kill: the dead member then
        // recorded the true outcome of its hand-off, which the row must match.
        const auto hs = by_send.find(std::to_string(id));
        const bool delivered =
            hs != by_send.end() && std::any_of(hs->second.begin(), hs->second.end(),
                                               [](auto* h) { return h->delivered(); });
        const auto state = rows[id].state;
        if (!(state == send_state::accepted && delivered) &&
            !(state == send_state::failed && !delivered))
            bad.add("recovery", "send " + std::to_string(id) + " reserved by a killed member is " +
                                    std::string(to_string(state)) + ", not unknown");
    }
    for (const auto& c : log.completions) {
        const auto* r = row_of(c.send_id);
        if (c.duplicate) continue;
        if (c.category == "accepted" && (!r || r->state != send_state::accepted))
            bad.add("ledger", "send " + c.send_id + " completed accepted in pid " +
                                  std::to_string(c.pid) + " but the ledger has " +
                                  (r ? std::string(to_string(r->state)) : "no row"));
        // A caller told its send did not go must not find it accepted: it
        // would send again.
        if (c.category != "accepted" && c.category != "unknown" && r &&
            r->state == send_state::accepted)
            bad.add("ledger", "send " + c.send_id + " completed " + c.category + " in pid " +
                                  std::to_string(c.pid) + " but the ledger has it accepted");
        if (c.category == "unknown" && (!r || r->state != send_state::unknown))
            bad.add("ledger", "send " + c.send_id + " completed unknown but the ledger has " +
                                  (r ? std::string(to_string(r->state)) : "no row"));
    }

    // 3: caps, counted at the ledger's reservation time of each delivery.
    std::map<std::string, std::vector<counted>> by_mailbox;
    for (const auto& h : log.handoffs) {
        if (!h.delivered()) continue;
        const auto* r = row_of(h.send_id);
        if (!r) continue;
        by_mailbox[h.mailbox].push_back({r->reserved_at, h.issued, h.mono, h.send_id,
                                         h.recipient.substr(h.recipient.rfind('@') + 1)});
    }
    std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> windows;
    for (const auto& spec : specs) {
        const auto& ds = by_mailbox[spec.id];
        const auto* zone = date::locate_zone(spec.zone);
        const auto versions = versions_of(mp::object_name(spec), maxima_of(spec.limits), log.ops);
        for (std::size_t li = 0; li < spec.limits.size(); ++li)
            check_limit("mailbox " + spec.id + " limit " + std::to_string(li), ds, li,
                        spec.limits[li], zone, versions, bad, windows);
        if (spec.warmup.start != 0) {
            const auto day0 = date::floor<date::days>(local(zone, spec.warmup.start_date));
            std::map<long, std::uint64_t> per_day;
            for (const auto& d : ds) {
                const auto day = date::floor<date::days>(local(zone, d.at));
                const auto n = ++per_day[(day - day0).count()];
                const auto cap = std::min<std::uint64_t>(
                    spec.warmup.start +
                        spec.warmup.step *
                            static_cast<std::uint64_t>(std::max<long>(0, (day - day0).count())),
                    spec.warmup.target);
                auto& w = windows["mailbox " + spec.id + " warm-up"];
                ++w.first;
                w.second += n == cap;
                if (n > cap)
                    bad.add("cap", "mailbox " + spec.id + " exceeded its warm-up ramp on day " +
                                       std::to_string((day - day0).count()) + " (send " +
                                       d.send_id + " is number " + std::to_string(n) + ", cap " +
                                       std::to_string(cap) + ")");
            }
        }
        if (spec.min_gap.count() > 0) {
            auto ts = ds;
            std::sort(ts.begin(), ts.end(),
                      [](const counted& a, const counted& b) { return a.at < b.at; });
            for (std::size_t i = 1; i < ts.size();
                 ++i, ++windows["mailbox " + spec.id + " gap"].first)
                if (ts[i].at - ts[i - 1].at < spec.min_gap)
                    bad.add("cap", "mailbox " + spec.id + " sent " + ts[i - 1].send_id + " and " +
                                       ts[i].send_id + " within its minimum gap");
        }
    }
    for (const auto& q : qspecs) {
        std::map<std::string, std::vector<counted>> groups;
        for (const auto& spec : specs)
            for (const auto& d : by_mailbox[spec.id]) {
                const auto& rdomain = d.recipient_domain;
                std::string key;
                if (q.base.scope == quota_scope::provider && spec.provider == q.base.key)
                    key = q.base.key;
                if (q.base.scope == quota_scope::sender_domain && spec.domain() == q.base.key)
                    key = q.base.key;
                if (q.base.scope == quota_scope::recipient_domain &&
                    (q.base.key == "*" || q.base.key == rdomain))
                    key = rdomain;
                if (!key.empty()) groups[key].push_back(d);
            }
        const auto* zone = date::locate_zone(q.base.time_zone.empty() ? "UTC" : q.base.time_zone);
        const auto versions = versions_of(mp::object_name(q), maxima_of(q.base.limits), log.ops);
        for (auto& [key, cs] : groups)
            for (std::size_t li = 0; li < q.base.limits.size(); ++li)
                check_limit(mp::object_name(q) + " on " + key, cs, li, q.base.limits[li], zone,
                            versions, bad, windows);
    }

    // 5: each child that finished accounts for every send it made.
    std::uint64_t issued_total = 0, finished = 0;
    const char* names[] = {"accepted",    "failed", "unknown",    "suppressed",
                           "no_capacity", "paused", "duplicates", "rejected"};
    for (const auto& x : log.finished) {
        ++finished;
        const auto issued = std::stoull(x[2]);
        issued_total += issued;
        std::uint64_t seen_sum = 0, stats_sum = 0;
        for (int c = 0; c < 8; ++c) {
            const auto seen = std::stoull(x[3 + static_cast<std::size_t>(c)]);
            const auto stat = std::stoull(x[11 + static_cast<std::size_t>(c)]);
            seen_sum += seen;
            stats_sum += stat;
            if (seen != stat)
                bad.add("accounting", "pid " + x[1] + ": " + names[c] + " seen " +
                                          std::to_string(seen) + ", engine_stats " +
                                          std::to_string(stat));
        }
        if (seen_sum != issued || stats_sum != issued)
            bad.add("accounting", "pid " + x[1] + ": " + std::to_string(issued) + " sends made, " +
                                      std::to_string(seen_sum) + " completed, engine_stats sum " +
                                      std::to_string(stats_sum));
    }

    // 7: the shared audit chain verifies and holds every change the
    // children made (at least every one that returned, at most every one
    // that began).
    std::uint64_t audit_lo = 0, audit_hi = 0, audit_chaos = 0, bad_seq = 0;
    std::uint64_t event_lo = 0, event_hi = 0, audit_events = 0;
    std::uint64_t erase_lo = 0, erase_hi = 0, audit_erasures = 0;
    // An erasure that did not return may have landed after a later
    // suppress() of its address began; that suppress() then stored and
    // audited nothing, though it returned.
    std::set<std::string> erasure_unsure;
    for (const auto& op : log.ops)
        if (op.erase() && op.status != "ok" && op.status != "noop")
            erasure_unsure.insert(op.target);
    for (const auto& op : log.ops) {
        // A change that failed may still have committed (a connection lost
        // while committing leaves the outcome unknown): it began, it did
        // not return.
        if (op.status == "noop") continue;
        ++(op.by_event() ? event_hi : audit_hi);
        const bool maybe_nothing =
            op.op == "suppress" && !op.by_event() && erasure_unsure.count(op.target);
        if (op.status == "ok" && !maybe_nothing) ++(op.by_event() ? event_lo : audit_lo);
        // Each erasure writes one record, "person.erase", naming the hash.
        if (op.erase()) {
            ++erase_hi;
            erase_lo += op.status == "ok";
        }
    }
    std::string counts_report;
    std::map<std::string, std::uint64_t> resumes;
    std::set<std::string> fired;
    std::uint64_t firings = 0, stale_firings = 0;
    {
        boost::asio::io_context ioc;
        engine_params p;
        p.storage = store;
        p.clock = clock;
        engine eng(ioc.get_executor(), p);
        const auto ec = eng.verify_audit(&bad_seq);
        if (ec)
            bad.add("audit",
                    "verify_audit: " + ec.message() + " at seq " + std::to_string(bad_seq));
        for (const auto& r : eng.audit_log()) {
            if (r.actor == "chaos") ++audit_chaos;
            if (r.actor == "webhook:postmark") ++audit_events;
            if (r.action == "resume") ++resumes[r.resource_type + ":" + r.resource_id];
            if (r.action == "rule.fired") {
                // 11: one firing per rule, target and generation (a resume
                // begins the next), whichever process measured it.
                const auto g = r.after.find(R"("generation":)");
                const auto gen =
                    g == std::string::npos
                        ? std::string("?")
                        : r.after.substr(g + 13, r.after.find_first_of(",}", g) - g - 13);
                const auto target = r.resource_type + ":" + r.resource_id;
                ++firings;
                if (r.actor != "rule:" + mp::failure_rule().id || r.resource_type != "mailbox")
                    bad.add("rules", "record " + std::to_string(r.seq) + ": " + r.actor +
                                         " fired on " + target);
                if (!fired.insert(target + "|" + gen).second)
                    bad.add("rules", "rule fired twice on " + target + " in generation " + gen +
                                         " (again at audit seq " + std::to_string(r.seq) + ")");
                // Fired under an older generation than the resumes audited
                // before it: measured before an operator's resume.
                if (gen != "?" && std::stoull(gen) < resumes[target]) ++stale_firings;
            }
            if (r.action != "person.erase") continue;
            audit_erasures += r.actor == "chaos";
            // Records appended by an erasure never hold the address.
            if (!is_erased_value(r.resource_id) || r.after.find('@') != std::string::npos)
                bad.add("audit", "erasure record " + std::to_string(r.seq) + " names " +
                                     r.resource_id + " or holds an address");
        }
        check_counts(eng, rows, log, specs, clock->now(), bad, counts_report);
    }
    if (audit_erasures < erase_lo || audit_erasures > erase_hi)
        bad.add("audit", std::to_string(audit_erasures) + " erasures in the audit log; " +
                             std::to_string(erase_lo) + " returned, " + std::to_string(erase_hi) +
                             " began");
    if (audit_chaos < audit_lo || audit_chaos > audit_hi)
        bad.add("audit",
                std::to_string(audit_chaos) + " changes by the children in the audit log; " +
                    std::to_string(audit_lo) + " returned, " + std::to_string(audit_hi) + " began");
    if (audit_events < event_lo || audit_events > event_hi)
        bad.add("audit", std::to_string(audit_events) +
                             " suppressions by inbound events in the audit log; " +
                             std::to_string(event_lo) + " returned, " + std::to_string(event_hi) +
                             " began");

    // 8: the queue.
    std::map<std::uint64_t, queued_send> items;
    store->for_each_queued("default", {}, [&](const queued_send& q) { items.emplace(q.id, q); });
    std::uint64_t enqueued_ok = 0;
    // An erasure empties the key of every item to or about the person.
    std::set<std::string> erased;
    for (const auto& op : log.ops)
        if (op.erase()) erased.insert(op.target.substr(op.target.find(':') + 1));
    for (const auto& q : log.queued) {
        if (q.status != "ok") continue;
        ++enqueued_ok;
        const auto it = items.find(q.id);
        if (it == items.end())
            bad.add("queue", "item " + std::to_string(q.id) + " (key " + q.key +
                                 ") enqueued by pid " + std::to_string(q.pid) +
                                 " is not in the store");
        else if (it->second.idempotency_key.empty() && erased.count(q.recipient))
            continue;
        else if (it->second.idempotency_key != q.key)
            bad.add("queue", "item " + std::to_string(q.id) + " holds key " +
                                 it->second.idempotency_key + ", enqueued as " + q.key);
    }
    std::map<queue_state, std::uint64_t> queue_states;
    for (const auto& [id, q] : items) {
        ++queue_states[q.state];
        if (q.state == queue_state::claimed && !dead_members.count(q.claimed_by))
            bad.add("queue", "item " + std::to_string(id) + " is still claimed by member " +
                                 std::to_string(q.claimed_by) + ", which ended cleanly");
        if (q.state == queue_state::done && q.send_id != 0 &&
            !(q.idempotency_key.empty() && !erased.empty())) {
            const auto* r = row_of(std::to_string(q.send_id));
            if (!r || r->idempotency_key != q.idempotency_key)
                bad.add("queue", "item " + std::to_string(id) + " (key " + q.idempotency_key +
                                     ") is done as send " + std::to_string(q.send_id) +
                                     (r ? ", whose key is " + r->idempotency_key
                                        : ", which has no ledger row"));
        }
    }

    // 9: inbound events applied once.
    std::map<std::string, std::uint64_t> applications;
    std::uint64_t event_duplicates = 0;
    for (const auto& e : log.events) {
        if (e.outcome == "duplicate") ++event_duplicates;
        if (e.outcome != "suppressed" && e.outcome != "applied") continue;
        if (++applications[e.key] == 2)
            bad.add("events", "event " + e.key + " applied more than once (again by pid " +
                                  std::to_string(e.pid) + ")");
    }

    std::uint64_t windows_total = 0, windows_full = 0;
    std::string cap_report;
    for (const auto& [what, w] : windows) {
        windows_total += w.first;
        windows_full += w.second;
        cap_report += what + ": " + std::to_string(w.first) + " windows, " +
                      std::to_string(w.second) + " full\n";
    }
    std::uint64_t delivered = 0, failed_attempts = 0, orphans = 0;
    for (const auto& h : log.handoffs) (h.delivered() ? delivered : failed_attempts)++;
    for (const auto& op : log.ops) orphans += op.status == "orphan";
    std::ostringstream summary;
    summary << cfg.kind << ": " << elapsed << " s, " << next_name << " processes started, "
            << killed.size() << " killed";
    for (const auto& r : restarts_done) summary << ", server " << r;
    summary << "; " << issued_total << " sends by the " << finished << " that finished, "
            << log.completions.size() << " completed in all; " << log.ops.size()
            << " admin changes (" << orphans << " cut by a kill), " << log.clock_moves
            << " clock moves; " << log.handoffs.size() << " hand-offs (" << failed_attempts
            << " failed attempts); ledger: " << rows.size() << " sends, accepted "
            << states[send_state::accepted] << ", unknown " << states[send_state::unknown] << " ("
            << recovered_dead << " recovered from killed members, " << recovered_other
            << " from other members), failed " << states[send_state::failed] << ", reserved "
            << states[send_state::reserved] << "; " << spans_total << " suppression/pause spans ("
            << voided << " voided by a change cut short), " << windows_total << " cap windows ("
            << windows_full << " full), " << reserved_by_dead.size() << " sends reserved by the "
            << dead_members.size() << " killed members; audit: " << audit_chaos
            << " chaos records, " << audit_events << " by events; queue: " << enqueued_ok
            << " enqueued, " << queue_states[queue_state::done] << " done, "
            << queue_states[queue_state::waiting] << " waiting, "
            << queue_states[queue_state::claimed] << " claimed; events: " << log.events.size()
            << " fed, " << applications.size() << " applied, " << event_duplicates
            << " duplicates; " << log.malformed << " malformed log lines; " << bad.count
            << " violations";
    MESSAGE(summary.str());
    MESSAGE(counts_report << erase_lo << " erasures returned, " << erase_hi << " began; " << firings
                          << " pause rule firings (" << stale_firings
                          << " under a generation older than the resumes before them)");
    {
        std::map<std::string, std::uint64_t> outcomes;
        for (const auto& c : log.completions) ++outcomes[c.category];
        std::string s = "completions by outcome:";
        for (const auto& [k, n] : outcomes) s += "\n  " + k + ": " + std::to_string(n);
        MESSAGE(s);
    }
    if (env_str("MAILERS_MP_VERBOSE") == "1") MESSAGE(cap_report);
    INFO("run directory (kept on failure): " << dir.string());
    INFO(bad.report());
    CHECK(log.malformed == 0);
    CHECK(bad.count == 0);
    CHECK(delivered > 0);
    const bool passed = bad.count == 0 && early_exits.empty() && log.malformed == 0;
    if (passed && env_str("MAILERS_MP_KEEP") != "1") fs::remove_all(dir);
    return passed;
}

run_config base_config(std::string kind) {
    run_config c;
    c.kind = std::move(kind);
    c.seconds = env_u64("MAILERS_MP_SECONDS", 8);
    c.procs = env_u64("MAILERS_MP_PROCS", 4);
    c.kills = env_u64("MAILERS_MP_KILLS", 2);
    c.restarts = env_u64("MAILERS_MP_PG_RESTARTS", 1);
    c.keys = env_u64("MAILERS_MP_KEYS", 800);
    c.seed = env_u64("MAILERS_MP_SEED", 0);
    if (c.seed == 0) c.seed = std::random_device{}() % 1'000'000'000 + 1;
    c.grace_ns = 0;
    return c;
}

}  // namespace

TEST_CASE("invariants hold with several processes on one SQLite file") {
    run(base_config("sqlite"));
}

TEST_CASE("invariants hold with several processes on one PostgreSQL database") {
    const auto conninfo = env_str("MAILERS_TEST_PG");
    if (conninfo.empty()) {
        if (env_str("MAILERS_REQUIRE_PG") == "1")
            FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG (a libpq conninfo) is not set");
        MESSAGE(
            "skipped: set MAILERS_TEST_PG to a libpq conninfo (scripts/pg-test-cluster start "
            "DIR prints one) to run the PostgreSQL case");
        return;
    }
    auto cfg = base_config("postgres");
    cfg.db = conninfo;
    cfg.schema = "mp_" + std::to_string(cfg.seed) + "_" + std::to_string(::getpid());
    // A COMMIT sent by a process just killed may still be applied by the server.
    cfg.grace_ns = 5'000'000'000;
    std::string why_not;
    if (cfg.restarts > 0) {
        cfg.restart_command = pg_restart_command(conninfo, why_not);
        if (cfg.restart_command.empty())
            MESSAGE("no server restart in this run: " << why_not
                                                      << "; set MAILERS_TEST_PG_CTL to a command "
                                                         "that restarts the server");
    }
    // The schema stays for inspection when the run failed.
    if (run(cfg)) {
        std::string err;
        pg_exec(conninfo, "DROP SCHEMA IF EXISTS \"" + cfg.schema + "\" CASCADE", &err);
    }
}
