// The `mailers` tool on a large workspace: how long `suppression check` and
// `status` take, as an operator runs them, on a workspace holding millions
// of suppressions and a long send ledger.
//
//   cli_scale_bench --sqlite PATH | --pg CONNINFO [--schema NAME]
//                   [--workspace NAME] [--build 1] [--suppressions N] [--ledger N]
//                   [--ledger-days D] [--cli PATH] [--runs N] [--cold-runs N]
//                   [--drop-caches 1] [--only help,hit,domain,miss,status,status-json]
//
// --build 1 makes the workspace (refusing one that exists): 20 mailboxes in a
// pool, two pauses, N suppressions imported through the engine's CSV import
// (the bulk path a host uses), three domain entries, and N ledger rows
// committed through the store (reserve_send, then update_send to accepted),
// reserved over the last D days. Building 10M suppressions takes minutes,
// so build once and time as often as needed.
//
// --cli PATH times the tool as a subprocess: `suppression check` of an
// address that is suppressed (exit 3) and of one that is not (exit 0), and
// `status`, each --runs times in a row (warm: the store's pages cached by
// the earlier runs) and --cold-runs times after dropping the operating
// system's page cache (--drop-caches 1; needs root, and slows every other
// process on the machine for a moment). `mailers --help` is timed beside
// them: the process start and library loading every command pays.
// PostgreSQL's shared buffers survive a page cache drop, and the server may
// not be restarted here, so a cold PostgreSQL run is a new process on a new
// connection with the operating system's cache dropped.
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <mailers.hpp>
#include <streambuf>
#include <string>
#include <string_view>
#include <vector>

#include "bench_store.hpp"
#include "bench_support.hpp"
#include "bench_workspace.hpp"

extern char** environ;

namespace {

using steady = std::chrono::steady_clock;

struct options {
    bench::store_choice store;
    std::string workspace = "big";
    bool build = false;
    std::size_t suppressions = 10'000'000;
    std::size_t ledger = 1'000'000;
    std::size_t ledger_days = 30;
    std::string cli;
    std::size_t runs = 20;
    std::size_t cold_runs = 5;
    bool drop_caches = false;
    std::string only;  ///< comma-separated command tags; "" all
};

std::string suppressed_address(std::size_t i) {
    return "unsub" + std::to_string(i) + "@example" + std::to_string(i % 997) + ".com";
}

// Streams "address,address,unsubscribe" lines for 0..n-1 without holding
// the CSV anywhere: 10M lines are about 400 MB.
class generated_csv : public std::streambuf {
public:
    explicit generated_csv(std::size_t n) : n_(n) {}

protected:
    int_type underflow() override {
        if (gptr() < egptr()) return traits_type::to_int_type(*gptr());
        buf_.clear();
        while (next_ < n_ && buf_.size() < (1 << 16)) {
            buf_ += suppressed_address(next_++);
            buf_ += ",address,unsubscribe\n";
        }
        if (buf_.empty()) return traits_type::eof();
        setg(buf_.data(), buf_.data(), buf_.data() + buf_.size());
        return traits_type::to_int_type(*gptr());
    }

private:
    std::size_t n_;
    std::size_t next_ = 0;
    std::string buf_;
};

double seconds_since(steady::time_point t0) {
    return std::chrono::duration<double>(steady::now() - t0).count();
}

long peak_rss_mib() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

int build(const options& o) {
    auto st = bench::open_store(o.store);
    if (st->changes_since(o.workspace, 0).seq != 0) {
        std::fprintf(stderr, "workspace '%s' exists already; time it without --build\n",
                     o.workspace.c_str());
        return 1;
    }
    const mailers::principal ops{"bench", "bench"};
    boost::asio::io_context io;
    {
        mailers::engine_params p;
        p.storage = st;
        p.workspace = o.workspace;
        mailers::engine eng(io.get_executor(), std::move(p));
        bench::add_bench_pool(
            eng, ops, 20, "null",
            {mailers::rate_limit::per_day(100000), mailers::rate_limit::per_hour(20000)});
        eng.pause(ops, {mailers::pause_scope::mailbox, "mb3"}, "bounces, ticket 12");
        eng.pause(ops, {mailers::pause_scope::sender_domain, "brand4.com"}, "listing");
        for (int k = 0; k < 3; ++k)
            eng.suppress(ops, mailers::suppression_kind::domain,
                         "blocked" + std::to_string(k) + ".example",
                         mailers::suppression_reason::legal, "bench");
        generated_csv csv(o.suppressions);
        std::istream in(&csv);
        const auto t0 = steady::now();
        const auto c0 = bench::cpu_seconds();
        const auto n = eng.import_suppressions(ops, in, "bench");
        std::printf("import: %zu suppressions in %.1f s (%.1f s CPU here), peak RSS %ld MiB\n", n,
                    seconds_since(t0), bench::cpu_seconds() - c0, peak_rss_mib());
    }

    // The ledger through the store's commit, as the engine writes it: a
    // reservation, then its outcome. Spread over the last `ledger_days`.
    const auto t0 = steady::now();
    const auto member =
        st->attach(o.workspace, {"bench", ::getpid(), "cli_scale_bench"}, std::chrono::minutes(10));
    const auto now = mailers::system_clock().now();
    const auto span = std::chrono::duration_cast<mailers::duration>(
        std::chrono::hours(24) * static_cast<long>(o.ledger_days));
    constexpr std::size_t batch = 2000;
    for (std::size_t from = 0; from < o.ledger; from += batch) {
        std::vector<mailers::store_op> reserve, outcome;
        std::vector<mailers::ledger_row> rows;
        for (std::size_t i = from; i < std::min(o.ledger, from + batch); ++i) {
            mailers::ledger_row r;
            r.idempotency_key = "bench:" + std::to_string(i);
            r.mailbox = "mb" + std::to_string(i % 20);
            r.provider = "null";
            r.pool = "bench";
            r.recipient =
                "prospect" + std::to_string(i) + "@example" + std::to_string(i % 997) + ".com";
            r.message_id = "bench." + std::to_string(i) + "@brand" + std::to_string(i % 5) + ".com";
            r.reserved_at = now - span + span / static_cast<long>(o.ledger) * static_cast<long>(i);
            r.updated_at = r.reserved_at;
            r.owner = member;
            rows.push_back(r);
            reserve.push_back(mailers::store_ops::reserve_send{std::move(r), {}, 0});
        }
        const auto res = st->commit(o.workspace, reserve);
        for (std::size_t k = 0; k < rows.size(); ++k) {
            if (res.ops[k].reservation.status != mailers::reserve_status::reserved) {
                std::fprintf(stderr, "ledger row %zu was not reserved\n", from + k);
                return 1;
            }
            rows[k].id = res.ops[k].reservation.send_id;
            rows[k].state = mailers::send_state::accepted;
            rows[k].provider_message_id = "pm-" + std::to_string(rows[k].id);
            outcome.push_back(mailers::store_ops::update_send{rows[k]});
        }
        st->commit(o.workspace, outcome);
    }
    st->detach(o.workspace, member);
    std::printf("ledger: %zu rows over %zu days in %.1f s\n", o.ledger, o.ledger_days,
                seconds_since(t0));
    return 0;
}

struct run_result {
    double wall_ms = 0;
    double cpu_ms = 0;
    long max_rss_mib = 0;
    int rc = 0;
};

run_result run_cli(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    run_result r;
    const auto t0 = steady::now();
    pid_t pid = 0;
    if (posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ) != 0) {
        std::perror("posix_spawn");
        std::exit(1);
    }
    int status = 0;
    rusage ru{};
    wait4(pid, &status, 0, &ru);
    r.wall_ms = seconds_since(t0) * 1e3;
    posix_spawn_file_actions_destroy(&fa);
    r.cpu_ms = (static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3);
    r.max_rss_mib = ru.ru_maxrss / 1024;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

bool drop_page_cache() {
    ::sync();
    std::ofstream f("/proc/sys/vm/drop_caches");
    f << "3\n";
    f.flush();
    return static_cast<bool>(f);
}

struct command {
    std::string tag;
    std::string name;
    std::vector<std::string> args;
    int want_rc;
};

void report(const command& c, const char* kind, std::vector<run_result>& rs) {
    std::vector<double> wall, cpu;
    long rss = 0;
    for (const auto& r : rs) {
        wall.push_back(r.wall_ms);
        cpu.push_back(r.cpu_ms);
        rss = std::max(rss, r.max_rss_mib);
    }
    const double max = *std::max_element(wall.begin(), wall.end());
    std::printf("| %s | %s | %zu | %.1f | %.1f | %.1f | %ld |\n", c.name.c_str(), kind, rs.size(),
                bench::percentile(wall, 0.5), max, bench::percentile(cpu, 0.5), rss);
}

int time_cli(const options& o) {
    std::vector<std::string> base{o.cli};
    if (!o.store.sqlite.empty()) {
        base.insert(base.end(), {"--sqlite", o.store.sqlite});
    } else {
        base.insert(base.end(), {"--postgres", o.store.pg});
        if (!o.store.schema.empty()) base.insert(base.end(), {"--pg-schema", o.store.schema});
    }
    base.insert(base.end(), {"--workspace", o.workspace});
    auto with = [&](std::vector<std::string> more) {
        auto a = base;
        a.insert(a.end(), more.begin(), more.end());
        return a;
    };
    const std::size_t hit = o.suppressions ? o.suppressions * 2 / 3 : 0;
    const std::vector<command> cmds{
        {"help", "`mailers --help` (process start)", {o.cli, "--help"}, 0},
        {"hit", "`suppression check` (suppressed)",
         with({"suppression", "check", suppressed_address(hit)}), 3},
        {"domain", "`suppression check` (domain entry)",
         with({"suppression", "check", "jo@mx.blocked1.example"}), 3},
        {"miss", "`suppression check` (not suppressed)",
         with({"suppression", "check", "nobody@example1.com"}), 0},
        {"status", "`status`", with({"status"}), 0},
        {"status-json", "`status --json`", with({"--json", "status"}), 0},
    };
    std::printf(
        "| command | cache | runs | median ms | max ms | median CPU ms | peak RSS MiB |\n"
        "|---|---|---|---|---|---|---|\n");
    for (const auto& c : cmds) {
        if (!o.only.empty() && ("," + o.only + ",").find("," + c.tag + ",") == std::string::npos)
            continue;
        std::vector<run_result> cold, warm;
        for (std::size_t i = 0; i < o.cold_runs; ++i) {
            if (o.drop_caches && !drop_page_cache()) {
                std::fprintf(stderr, "the page cache cannot be dropped (not root?)\n");
                return 1;
            }
            cold.push_back(run_cli(c.args));
        }
        for (std::size_t i = 0; i < o.runs; ++i) warm.push_back(run_cli(c.args));
        for (const auto* rs : {&cold, &warm})
            for (const auto& r : *rs)
                if (r.rc != c.want_rc) {
                    std::fprintf(stderr, "%s exited %d, not %d\n", c.name.c_str(), r.rc, c.want_rc);
                    return 1;
                }
        if (!cold.empty()) report(c, o.drop_caches ? "cold (page cache dropped)" : "first", cold);
        report(c, "warm", warm);
        std::fflush(stdout);
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const bool ok = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (bench::take_store_option(o.store, k, v)) return true;
        if (k == "--workspace")
            o.workspace = std::move(v);
        else if (k == "--build")
            o.build = v != "0";
        else if (k == "--suppressions")
            o.suppressions = std::stoull(v);
        else if (k == "--ledger")
            o.ledger = std::stoull(v);
        else if (k == "--ledger-days")
            o.ledger_days = std::stoull(v);
        else if (k == "--cli")
            o.cli = std::move(v);
        else if (k == "--runs")
            o.runs = std::stoull(v);
        else if (k == "--cold-runs")
            o.cold_runs = std::stoull(v);
        else if (k == "--drop-caches")
            o.drop_caches = v != "0";
        else if (k == "--only")
            o.only = std::move(v);
        else
            return false;
        return true;
    });
    if (!ok || !bench::one_store_chosen(o.store) || (!o.build && o.cli.empty()) ||
        o.ledger_days == 0) {
        std::fprintf(stderr,
                     "usage: cli_scale_bench --sqlite PATH | --pg CONNINFO [--schema NAME] "
                     "[--build 1] [--cli PATH] ...\n");
        return 2;
    }
    if (o.build)
        if (int rc = build(o)) return rc;
    if (!o.cli.empty()) return time_cli(o);
    return 0;
}
