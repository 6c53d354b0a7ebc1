// kill -9 at random points of a run, restart, repeat; then every message
// must be accounted for exactly once, nothing may have gone out twice, and
// nothing may have gone to a suppressed address (MISSION.md, "Reliability
// and security"). The journal the child's transport fsyncs before it
// reports a send accepted is the record of what really left.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mailers/audit.hpp>
#include <mailers/sqlite_store.hpp>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "crash_common.hpp"
#include "process_util.hpp"

namespace {

using mailers_test::env_u64;
using mailers_test::spawn_child;

std::string slurp(const std::filesystem::path& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

struct journal_line {
    std::string key, mailbox, recipient;
};

std::vector<journal_line> read_journal(const std::filesystem::path& p) {
    std::vector<journal_line> out;
    std::ifstream in(p);
    std::string line;
    while (std::getline(in, line)) {
        // A line cut short by the kill still names its key: it counts as sent.
        journal_line j;
        std::istringstream ls(line);
        std::getline(ls, j.key, '\t');
        std::getline(ls, j.mailbox, '\t');
        std::getline(ls, j.recipient);
        if (!j.key.empty()) out.push_back(std::move(j));
    }
    return out;
}

}  // namespace

TEST_CASE(
    "kill -9 at random points: no duplicates, no sends to suppressed addresses, all accounted "
    "for") {
    const std::uint64_t n = env_u64("MAILERS_CRASH_MESSAGES", 2000);
    const std::uint64_t kills = env_u64("MAILERS_CRASH_KILLS", 10);
    std::uint64_t seed = env_u64("MAILERS_CRASH_SEED", 0);
    if (seed == 0) seed = std::random_device{}();
    CAPTURE(seed);
    CAPTURE(n);
    std::mt19937_64 rng(seed);

    auto dir = std::filesystem::temp_directory_path() / ("mailers-crash-" + std::to_string(seed));
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    const auto db = (dir / "crash.db").string();
    const auto journal = dir / "journal.txt";
    const auto log = (dir / "child.log").string();
    auto args = [&](std::uint64_t run) {
        return std::vector<std::string>{MAILERS_CRASH_CHILD, db, journal.string(),
                                        std::to_string(n), std::to_string(seed + run)};
    };

    // Kill points are spread over a run's length, measured once on a scratch
    // file: on average each run gets 1/kills of the way before its kill.
    std::uint64_t max_delay_us = env_u64("MAILERS_CRASH_MAX_DELAY_MS", 0) * 1000;
    if (max_delay_us == 0) {
        const auto scratch = dir / "calibrate";
        std::filesystem::create_directories(scratch);
        const auto t0 = std::chrono::steady_clock::now();
        pid_t pid =
            spawn_child({MAILERS_CRASH_CHILD, (scratch / "c.db").string(),
                         (scratch / "j.txt").string(), std::to_string(n), std::to_string(seed)},
                        log);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        INFO(slurp(log));
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
        const auto full = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - t0);
        max_delay_us = std::max<std::uint64_t>(
            1000, 2 * static_cast<std::uint64_t>(full.count()) / std::max<std::uint64_t>(1, kills));
        std::filesystem::remove_all(scratch);
    }
    CAPTURE(max_delay_us);

    const auto started = std::chrono::steady_clock::now();
    std::uint64_t runs = 0, killed = 0;
    bool finished = false;
    for (std::uint64_t k = 0; k < kills && !finished; ++k) {
        pid_t pid = spawn_child(args(runs++), log);
        // The kill point: a random moment of the run, start-up included.
        std::this_thread::sleep_for(std::chrono::microseconds(rng() % (max_delay_us + 1)));
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            INFO(slurp(log));
            REQUIRE(WIFEXITED(status));
            REQUIRE(WEXITSTATUS(status) == 0);
            finished = true;
            break;
        }
        REQUIRE(kill(pid, SIGKILL) == 0);
        REQUIRE(waitpid(pid, &status, 0) == pid);
        if (WIFSIGNALED(status)) {
            ++killed;
        } else {
            INFO(slurp(log));
            REQUIRE(WEXITSTATUS(status) == 0);  // finished just before the kill
            finished = true;
        }
    }
    if (!finished) {
        pid_t pid = spawn_child(args(runs++), log);
        int status = 0;
        REQUIRE(waitpid(pid, &status, 0) == pid);
        INFO(slurp(log));
        REQUIRE(WIFEXITED(status));
        REQUIRE(WEXITSTATUS(status) == 0);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    // --- the ledger against the journal ---------------------------------------
    auto store = mailers::open_sqlite_store({db, mailers::open_mode::open_or_create});
    std::map<std::string, std::vector<mailers::ledger_row>> rows;
    store->for_each_send(
        "default", mailers::time_point::min(), mailers::time_point::max(),
        [&](const mailers::ledger_row& r) { rows[r.idempotency_key].push_back(r); });
    std::map<std::string, int> sent;
    std::uint64_t sent_capped = 0;
    const auto lines = read_journal(journal);
    for (const auto& j : lines) {
        ++sent[j.key];
        sent_capped += j.mailbox == "capped";
    }

    std::vector<std::string> bad;
    std::map<mailers::send_state, std::uint64_t> states;
    std::uint64_t suppressed = 0, rows_capped = 0;
    for (std::uint64_t i = 0; i < n; ++i) {
        const auto k = crash::key(i);
        const auto& rs = rows[k];
        const int out = sent.count(k) ? sent[k] : 0;
        if (crash::suppressed(i)) {
            ++suppressed;
            if (!rs.empty()) bad.push_back(k + ": suppressed recipient has a ledger row");
            if (out != 0) bad.push_back(k + ": sent to a suppressed recipient");
            continue;
        }
        if (rs.size() != 1) {
            bad.push_back(k + ": " + std::to_string(rs.size()) + " ledger rows");
            continue;
        }
        const auto& r = rs.front();
        ++states[r.state];
        if ((r.state == mailers::send_state::accepted || r.state == mailers::send_state::unknown) &&
            r.mailbox == "capped")
            ++rows_capped;
        switch (r.state) {
            case mailers::send_state::accepted:
                if (out != 1)
                    bad.push_back(k + ": accepted but journalled " + std::to_string(out) +
                                  " times");
                break;
            case mailers::send_state::unknown:
                if (out > 1)
                    bad.push_back(k + ": unknown and journalled " + std::to_string(out) + " times");
                break;
            case mailers::send_state::failed:
                if (out != 0)
                    bad.push_back(k + ": failed but journalled " + std::to_string(out) + " times");
                break;
            case mailers::send_state::reserved:
                bad.push_back(k + ": still reserved after a clean run");
                break;
        }
    }
    for (const auto& [k, rs] : rows)
        if (!rs.empty() && k.rfind("key-", 0) != 0)
            bad.push_back("unexpected ledger key '" + k + "'");
    // Invariant 2 across crashes: the capped mailbox never went over its cap.
    if (sent_capped > crash::cap(n))
        bad.push_back("capped mailbox sent " + std::to_string(sent_capped));
    if (rows_capped > crash::cap(n))
        bad.push_back("capped mailbox has " + std::to_string(rows_capped) + " rows");

    std::vector<mailers::audit_record> audit;
    store->for_each_audit("default", 1,
                          [&](const mailers::audit_record& r) { audit.push_back(r); });
    std::uint64_t bad_seq = 0;
    CHECK(mailers::verify_audit_chain(audit, &bad_seq) == mailers::error_code{});
    CAPTURE(bad_seq);

    std::string first_bad;
    for (std::size_t i = 0; i < bad.size() && i < 20; ++i) first_bad += bad[i] + "\n";
    INFO(first_bad);
    CHECK(bad.empty());
    MESSAGE(n << " messages, " << runs << " runs, " << killed << " killed with SIGKILL, " << seconds
              << " s: accepted " << states[mailers::send_state::accepted] << ", unknown "
              << states[mailers::send_state::unknown] << ", failed "
              << states[mailers::send_state::failed] << ", suppressed " << suppressed << "; "
              << lines.size() << " journal lines, " << sent_capped
              << " through the capped mailbox (cap " << crash::cap(n) << "); " << bad.size()
              << " violations");
    if (bad.empty()) std::filesystem::remove_all(dir);
}
