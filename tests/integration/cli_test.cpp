// The `mailers` tool as an operator uses it: every command runs as its own
// process on a real workspace (a temporary SQLite file, and PostgreSQL when
// MAILERS_TEST_PG names a server), and the test reads what it printed and
// how it exited.
#include <SQLiteCpp/SQLiteCpp.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <boost/asio/io_context.hpp>
#include <mailers/campaign.hpp>
#include <mailers/clock.hpp>
#include <mailers/daily_counts.hpp>
#include <mailers/engine.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/sequence.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/store.hpp>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

// Set by tests/CMakeLists.txt when the tool is built (MAILERS_BUILD_TOOLS).
#ifndef MAILERS_CLI_PATH
#define MAILERS_CLI_PATH ""
#endif
#define SKIP_WITHOUT_TOOL()                                                      \
    if (!*MAILERS_CLI_PATH) {                                                    \
        MESSAGE("skipped: the mailers tool is not built (MAILERS_BUILD_TOOLS)"); \
        return;                                                                  \
    }

namespace fs = std::filesystem;

namespace {

struct run_result {
    int rc = -1;
    std::string out;
    std::string err;
};

std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

std::string unique(std::string_view what) {
    static std::atomic<int> n{0};
    static const auto salt = std::random_device{}();
    return std::string{what} + "_" + std::to_string(::getpid()) + "_" +
           std::to_string(salt % 100000) + "_" + std::to_string(n++);
}

// Runs the tool with `args`; `env` entries ("NAME=value") are added to the
// test's environment, whose MAILERS_STORE is always removed so that only
// what a case passes names the store.
run_result run(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    static const fs::path dir = fs::temp_directory_path() / unique("mailers_cli_io");
    fs::create_directories(dir);
    const auto out = dir / "out", err = dir / "err";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    std::vector<std::string> all{MAILERS_CLI_PATH};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> envs;
    for (char** e = environ; *e; ++e)
        if (!std::string_view(*e).starts_with("MAILERS_STORE=")) envs.emplace_back(*e);
    envs.insert(envs.end(), env.begin(), env.end());
    std::vector<char*> envp;
    for (auto& e : envs) envp.push_back(e.data());
    envp.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    REQUIRE(rc == 0);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    run_result r;
    r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = slurp(out);
    r.err = slurp(err);
    return r;
}

bool has(const std::string& s, std::string_view what) {
    return s.find(what) != std::string::npos;
}

// The store arguments for one backend.
struct backend {
    std::vector<std::string> store;
    std::vector<std::string> with(std::vector<std::string> args) const {
        std::vector<std::string> a = store;
        a.insert(a.end(), args.begin(), args.end());
        return a;
    }
};

struct temp_dir {
    fs::path path = fs::temp_directory_path() / unique("mailers_cli");
    temp_dir() { fs::create_directories(path); }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// The PostgreSQL server MAILERS_TEST_PG names, or null (after saying why the
// case is skipped) when there is none and MAILERS_REQUIRE_PG=1 asks for none.
const char* test_pg() {
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (c && *c) return c;
    const char* req = std::getenv("MAILERS_REQUIRE_PG");
    if (req && std::string_view{req} == "1") FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset");
    MESSAGE("skipped: set MAILERS_TEST_PG to a conninfo to run the tool on PostgreSQL");
    return nullptr;
}

// An SMTP server on 127.0.0.1 that knows one account, alice with password
// "right" (AUTH PLAIN, no TLS), and takes no mail: enough for `provider
// test`, which must end with QUIT before any MAIL.
class smtp_peer {
public:
    smtp_peer() {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        REQUIRE(fd_ >= 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        REQUIRE(::listen(fd_, 4) == 0);
        socklen_t len = sizeof a;
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
        port_ = ntohs(a.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~smtp_peer() {
        stop_ = true;
        thread_.join();
        ::close(fd_);
    }
    int port() const { return port_; }
    int mails() const { return mails_; }
    int quits() const { return quits_; }

private:
    void serve() {
        while (!stop_) {
            pollfd p{fd_, POLLIN, 0};
            if (::poll(&p, 1, 50) <= 0) continue;
            const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
            if (c < 0) continue;
            converse(c);
            ::close(c);
        }
    }
    static bool read_line(int c, std::string& buf, std::string& line) {
        for (;;) {
            const auto eol = buf.find("\r\n");
            if (eol != std::string::npos) {
                line = buf.substr(0, eol);
                buf.erase(0, eol + 2);
                return true;
            }
            char tmp[512];
            const auto n = ::read(c, tmp, sizeof tmp);
            if (n <= 0) return false;
            buf.append(tmp, static_cast<std::size_t>(n));
        }
    }
    static void say(int c, std::string_view s) { (void)!::write(c, s.data(), s.size()); }
    void converse(int c) {
        // base64("\0alice\0right")
        const std::string good = "AGFsaWNlAHJpZ2h0";
        std::string buf, line;
        say(c, "220 peer.test ESMTP\r\n");
        while (read_line(c, buf, line)) {
            if (line.starts_with("EHLO")) {
                say(c, "250-peer.test\r\n250 AUTH PLAIN\r\n");
            } else if (line.starts_with("AUTH PLAIN")) {
                std::string resp = line.size() > 11 ? line.substr(11) : "";
                if (resp.empty()) {
                    say(c, "334 \r\n");
                    if (!read_line(c, buf, resp)) return;
                }
                say(c, resp == good ? "235 2.7.0 Authentication successful\r\n"
                                    : "535 5.7.8 Authentication credentials invalid\r\n");
            } else if (line.starts_with("QUIT")) {
                ++quits_;
                say(c, "221 2.0.0 Bye\r\n");
                return;
            } else {
                if (line.starts_with("MAIL")) ++mails_;
                say(c, "502 5.5.1 Not here\r\n");
            }
        }
    }

    int fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> mails_{0}, quits_{0};
    std::thread thread_;
};

// The commands every backend must pass, on a store `b` names that does not
// exist yet.
void exercise(const backend& b, const fs::path& dir) {
    auto cli = [&](std::vector<std::string> args) {
        return run(b.with(std::move(args)), {"USER=ops-test"});
    };

    auto first = cli({"init"});
    REQUIRE(first.rc == 0);
    CHECK(has(first.out, "created workspace 'default'"));

    SUBCASE("init refuses an existing workspace") {
        auto r = cli({"init"});
        CHECK(r.rc == 4);
        CHECK(has(r.err, "already exists"));
        r = cli({"--json", "audit", "verify"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"ok\":true"));
    }

    SUBCASE("a workspace the store does not hold is refused, not started") {
        auto r = cli({"--workspace", "defualt", "suppression", "add", "x@example.com"});
        CHECK(r.rc == 4);
        CHECK(has(r.err, "no workspace 'defualt'"));
        CHECK(has(r.err, "mailers init --workspace defualt"));
        // Still not there: the refusal created nothing.
        CHECK(cli({"--workspace", "defualt", "status"}).rc == 4);
        // init makes a second workspace beside the first, which it leaves alone.
        r = cli({"--workspace", "emea", "init"});
        CHECK(r.rc == 0);
        CHECK(cli({"--workspace", "emea", "suppression", "add", "y@example.com"}).rc == 0);
        CHECK(cli({"--workspace", "emea", "suppression", "check", "y@example.com"}).rc == 3);
        CHECK(cli({"suppression", "check", "y@example.com"}).rc == 0);
    }

    SUBCASE("suppression add, check, remove") {
        auto r = cli({"suppression", "check", "Jane@Example.com"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "not suppressed"));

        r = cli({"suppression", "add", "Jane@EXAMPLE.com", "--reason", "complaint", "--source",
                 "ticket-42"});
        CHECK(r.rc == 0);
        r = cli({"--json", "suppression", "check", "jane@example.COM"});
        CHECK(r.rc == 3);
        CHECK(has(r.out, "\"key\":\"jane@example.com\""));
        CHECK(has(r.out, "\"suppressed\":true"));
        CHECK(has(r.out, "\"reason\":\"complaint\""));
        CHECK(has(r.out, "\"source\":\"ticket-42\""));
        CHECK(has(r.out, "\"created_at\":\"20"));

        r = cli({"suppression", "add", "blocked.example", "--reason", "legal"});
        CHECK(r.rc == 0);
        r = cli({"suppression", "check", "anyone@mx.blocked.example"});
        CHECK(r.rc == 3);
        CHECK(has(r.out, "domain blocked.example"));
        CHECK(has(r.out, "legal"));

        r = cli({"suppression", "remove", "jane@example.com"});
        CHECK(r.rc == 0);
        r = cli({"suppression", "check", "jane@example.com"});
        CHECK(r.rc == 0);
        r = cli({"suppression", "remove", "jane@example.com"});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "no address entry"));
    }

    SUBCASE("bad input is refused with a message and changes nothing") {
        auto before = cli({"--json", "audit", "checkpoint"});
        REQUIRE(before.rc == 0);

        auto r = cli({"suppression", "check", "not an address"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "not a valid email address"));
        CHECK(r.out.empty());
        r = cli({"suppression", "add", "jane@@example.com"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "not a valid address"));
        r = cli({"suppression", "add", "jane@example.com", "--reason", "bored"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "unknown reason 'bored'"));
        r = cli({"mailbox", "show", "nobody"});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "no mailbox 'nobody'"));
        r = cli({"mailbox", "pause", "nobody", "--reason", "x"});
        CHECK(r.rc == 1);
        r = cli({"pause", "pool", "nopool"});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "nopool"));
        r = cli({"pause", "galaxy", "x"});
        CHECK(r.rc == 2);
        r = cli({"resume", "workspace"});
        CHECK(r.rc == 1);
        CHECK(has(r.err, "not paused"));
        r = cli({"mailbox", "add", "m1", "--address", "not-an-address", "--provider", "ses"});
        CHECK(r.rc == 2);
        r = cli({"audit", "verify", "--checkpoint", "banana"});
        CHECK(r.rc == 2);

        const auto bad = dir / "bad.csv";
        std::ofstream(bad) << "value,kind,reason,source,created_at\n"
                              "ok@example.com,address,manual,x,\n"
                              "broken line without enough fields\n";
        r = cli({"suppression", "import", bad.string()});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "line"));

        auto after = cli({"--json", "audit", "checkpoint"});
        CHECK(after.out == before.out);
        r = cli({"suppression", "check", "ok@example.com"});
        CHECK(r.rc == 0);
    }

    SUBCASE("import and export round-trip") {
        const auto in = dir / "in.csv";
        std::ofstream(in) << "value,kind,reason,source,created_at\n"
                             "a@example.com,address,hard_bounce,esp,\n"
                             "b@example.com,address,unsubscribe,esp,\n"
                             "spam.example,domain,manual,esp,\n";
        auto r = cli({"--json", "suppression", "import", in.string()});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"imported\":3"));
        const auto out = dir / "out.csv";
        r = cli({"suppression", "export", out.string()});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "exported 3 entries"));
        auto csv = slurp(out);
        CHECK(has(csv, "a@example.com,address,hard_bounce,esp,"));
        CHECK(has(csv, "spam.example,domain,manual,esp,"));
        r = cli({"suppression", "export"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "b@example.com,address,unsubscribe"));
    }

    SUBCASE("mailboxes, pools, pauses and status") {
        auto r = cli({"mailbox", "add", "rep1", "--address", "Rep One <rep1@brand.example>",
                      "--provider", "ses", "--per-day", "50"});
        CHECK(r.rc == 0);
        r = cli(
            {"mailbox", "add", "rep2", "--address", "rep2@other.example", "--provider", "smtp"});
        CHECK(r.rc == 0);
        r = cli(
            {"mailbox", "add", "rep2", "--address", "rep2@other.example", "--provider", "smtp"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "already exists"));
        r = cli({"pool", "add", "outreach", "--mailbox", "rep1", "--mailbox", "rep2"});
        CHECK(r.rc == 0);

        r = cli({"mailbox", "list"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "ID"));
        CHECK(has(r.out, "rep1@brand.example"));
        CHECK(has(r.out, "0/50"));
        r = cli({"--json", "mailbox", "show", "rep1"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"display_name\":\"Rep One\""));
        CHECK(has(r.out, "\"daily_cap\":50"));
        r = cli({"--json", "pool", "list"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"id\":\"outreach\""));
        CHECK(has(r.out, "[\"rep1\",\"rep2\"]"));

        r = cli({"--actor", "alice", "pause", "domain", "Brand.Example", "--reason",
                 "spamhaus listing"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "brand.example"));
        r = cli({"--actor", "bob", "mailbox", "pause", "rep2", "--reason", "bounces"});
        CHECK(r.rc == 0);
        r = cli({"--json", "status"});
        CHECK(r.rc == 0);
        CHECK(has(r.out,
                  "\"scope\":\"domain\",\"id\":\"brand.example\",\"by\":\"alice\","
                  "\"reason\":\"spamhaus listing\""));
        CHECK(has(r.out, "\"mailboxes_held\":[\"rep1\"]"));
        CHECK(has(r.out, "\"by\":\"bob\""));
        CHECK(has(r.out, "\"blocked\":\"domain_paused\""));
        r = cli({"status"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "spamhaus listing"));

        r = cli({"resume", "domain", "brand.example"});
        CHECK(r.rc == 0);
        r = cli({"mailbox", "resume", "rep2"});
        CHECK(r.rc == 0);
        r = cli({"status"});
        CHECK(has(r.out, "nothing is paused"));

        r = cli({"pause", "workspace", "--reason", "incident 7"});
        CHECK(r.rc == 0);
        r = cli({"--json", "status"});
        CHECK(has(r.out, "\"mailboxes_held\":[\"rep1\",\"rep2\"]"));
        CHECK(cli({"resume", "workspace"}).rc == 0);

        r = cli({"mailbox", "retire", "rep2"});
        CHECK(r.rc == 0);
        r = cli({"--json", "mailbox", "show", "rep2"});
        CHECK(has(r.out, "\"state\":\"retired\""));

        r = cli({"audit", "list", "--from", "2", "--limit", "3"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "SEQ"));
        CHECK(has(r.out, "mailbox.upsert"));
        r = cli({"--json", "audit", "list"});
        CHECK(has(r.out, "\"actor\":\"alice\",\"action\":\"pause\""));
    }

    SUBCASE("access control: roles, scoped grants, refusals") {
        REQUIRE(cli({"mailbox", "add", "rep1", "--address", "rep1@brand.example", "--provider", "smtp"}).rc == 0);
        REQUIRE(cli({"pool", "add", "emea", "--mailbox", "rep1"}).rc == 0);
        CHECK(cli({"access", "role", "admin", "--permission", "manage_access"}).rc == 0);
        CHECK(cli({"access", "role", "pauser", "--permission", "pause", "--permission", "resume"}).rc == 0);
        CHECK(cli({"access", "role", "bad", "--permission", "root"}).rc == 2);
        CHECK(cli({"access", "grant", "ops-test", "admin"}).rc == 0);
        CHECK(cli({"access", "grant", "bob", "pauser", "--pool", "emea"}).rc == 0);
        CHECK(cli({"access", "grant", "bob", "pauser", "--pool", "emea", "--mailbox", "rep1"}).rc == 2);
        // Nobody holding manage_access may turn it on.
        CHECK(cli({"--actor", "bob", "access", "enable"}).rc != 0);
        CHECK(cli({"access", "enable"}).rc == 0);
        auto r = cli({"--json", "access", "list"});
        CHECK(has(r.out, "\"enabled\":true"));
        CHECK(has(r.out, "\"principal\":\"bob\",\"role\":\"pauser\",\"scope\":\"pool\",\"scope_id\":\"emea\""));
        CHECK(cli({"--actor", "bob", "mailbox", "pause", "rep1", "--reason", "bounces"}).rc == 0);
        r = cli({"--actor", "bob", "suppression", "add", "x@example.com"});
        CHECK(r.rc == 6);
        CHECK(has(r.err, "principal 'bob' lacks suppression_add"));
        CHECK(cli({"--actor", "bob", "access", "grant", "bob", "admin"}).rc == 6);
        r = cli({"--json", "audit", "list"});
        CHECK(has(r.out, "\"action\":\"access.denied\""));
        CHECK(cli({"access", "disable"}).rc == 0);
        CHECK(cli({"--actor", "bob", "suppression", "add", "x@example.com"}).rc == 0);
    }

    SUBCASE("quota set and remove") {
        auto r = cli({"--json", "quota", "set", "recipient", "gmail.com", "--per-hour", "500"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"limits\":\"500/hour\""));
        r = cli({"--json", "quota", "list"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"scope\":\"recipient_domain\",\"key\":\"gmail.com\""));
        r = cli({"quota", "list"});
        CHECK(has(r.out, "500/hour"));
        r = cli({"quota", "set", "recipient", "not a domain", "--per-hour", "5"});
        CHECK(r.rc == 2);
        r = cli({"quota", "set", "provider", "ses"});
        CHECK(r.rc == 2);
        r = cli({"quota", "remove", "recipient", "gmail.com"});
        CHECK(r.rc == 0);
        r = cli({"quota", "remove", "recipient", "gmail.com"});
        CHECK(r.rc == 1);
        r = cli({"--json", "quota", "list"});
        CHECK(has(r.out, "\"quotas\":[]"));
    }

    SUBCASE("audit checkpoint and verify") {
        CHECK(cli({"suppression", "add", "x@example.com"}).rc == 0);
        auto cp = cli({"audit", "checkpoint"});
        REQUIRE(cp.rc == 0);
        std::string head = cp.out.substr(0, cp.out.find('\n'));
        auto r = cli({"audit", "verify", "--checkpoint", head});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "audit chain ok"));
        auto colon = head.find(':');
        std::string wrong = head.substr(0, colon + 1) + std::string(64, '0');
        r = cli({"--json", "audit", "verify", "--checkpoint", wrong});
        CHECK(r.rc == 5);
        CHECK(has(r.out, "\"ok\":false"));
        CHECK(has(r.err, "audit verification failed"));
        r = cli({"audit", "verify", "--checkpoint", "9999:" + std::string(64, '0')});
        CHECK(r.rc == 5);
    }

    SUBCASE("audit export and purge with nothing old enough") {
        CHECK(cli({"suppression", "add", "p@example.com"}).rc == 0);
        const auto before = cli({"audit", "checkpoint"}).out;
        auto r = cli({"audit", "purge", "--older-than-days", "1"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "nothing older than 1 days to purge"));
        r = cli({"audit", "purge", "--older-than-days", "0"});
        CHECK(r.rc == 2);
        CHECK(cli({"audit", "purge"}).rc == 2);
        CHECK(cli({"audit", "checkpoint"}).out == before);
        const auto file = dir / "audit.jsonl";
        r = cli({"--json", "audit", "export", file.string()});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"first_seq\":1"));
        const auto text = slurp(file);
        CHECK(text.starts_with("{\"anchor\":{\"seq\":0,"));
        CHECK(has(text, "\"action\":\"suppression.add\""));
        r = cli({"--json", "audit", "verify"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"anchor\":null"));
    }

    SUBCASE("suppression verify: ok, then a row deleted behind the tool's back") {
        CHECK(cli({"suppression", "add", "v@example.com"}).rc == 0);
        CHECK(cli({"suppression", "add", "w@example.com"}).rc == 0);
        CHECK(cli({"suppression", "remove", "w@example.com"}).rc == 0);
        auto r = cli({"suppression", "verify"});
        CHECK(r.rc == 0);
        // The three changes above and the settings `init` stored.
        CHECK(has(r.out, "suppressions ok: 1 rows, 1 replaced rows, 4 audited changes"));
        r = cli({"--json", "suppression", "verify"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"ok\":true"));
        if (b.store[0] == "--sqlite") {
            SQLite::Database raw(b.store[1], SQLite::OPEN_READWRITE);
            raw.exec("DELETE FROM suppressions WHERE value = 'v@example.com'");
        } else {
            PGconn* c = PQconnectdb(b.store[1].c_str());
            PQclear(PQexec(
                c, ("DELETE FROM " + b.store[3] + ".suppressions WHERE value = 'v@example.com'")
                       .c_str()));
            PQfinish(c);
        }
        r = cli({"--json", "suppression", "verify"});
        CHECK(r.rc == 5);
        CHECK(has(r.out, "\"ok\":false"));
        CHECK(has(r.out, "\"value\":\"v@example.com\""));
        CHECK(has(r.err, "v@example.com"));
    }

    SUBCASE("a keyed workspace verifies with its key only, and a wrong key changes nothing") {
        const auto key = dir / "audit.key", wrong = dir / "wrong.key";
        std::ofstream(key) << "correct horse battery staple\n";
        std::ofstream(wrong) << "not the key\n";
        auto r = cli({"--audit-key-file", key.string(), "suppression", "add", "k@example.com"});
        CHECK(r.rc == 0);
        r = cli({"--audit-key-file", key.string(), "audit", "verify"});
        CHECK(r.rc == 0);
        auto head = cli({"--audit-key-file", key.string(), "audit", "checkpoint"});
        CHECK(head.rc == 0);
        r = cli({"audit", "verify"});
        CHECK(r.rc == 5);
        r = cli({"--audit-key-file", wrong.string(), "audit", "verify"});
        CHECK(r.rc == 5);
        r = cli({"--audit-key-file", wrong.string(), "audit", "checkpoint"});
        CHECK(r.rc == 5);
        CHECK(cli({"--audit-key-file", key.string(), "audit", "checkpoint"}).out == head.out);
        r = cli({"--audit-key-file", (dir / "absent.key").string(), "audit", "verify"});
        CHECK(r.rc == 2);
    }

    SUBCASE("export and erase a person") {
        CHECK(cli({"suppression", "add", "Erin.Person@Example.com", "--reason", "complaint",
                   "--source", "ticket-9"})
                  .rc == 0);
        auto r = cli({"export", "erin.person@EXAMPLE.com"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"key\":\"erin.person@example.com\""));
        CHECK(has(r.out, "\"suppressed\":true"));
        CHECK(has(r.out, "ticket-9"));
        const auto file = dir / "erin.json";
        r = cli({"--json", "export", "erin.person@example.com", "--output", file.string()});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"file\":"));
        CHECK(has(slurp(file), "\"audit\":[{"));

        r = cli({"erase", "ERIN.PERSON@example.com"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "suppressed as:"));
        CHECK(has(r.out, "erased:"));
        CHECK(has(r.out, "suppression_rows:"));
        // Still suppressed, by the hash only; the list no longer holds her.
        r = cli({"--json", "suppression", "check", "Erin.Person@example.com"});
        CHECK(r.rc == 3);
        CHECK(has(r.out, "\"value\":\"erased:"));
        r = cli({"suppression", "export"});
        CHECK(r.rc == 0);
        CHECK_FALSE(has(r.out, "erin"));
        CHECK(has(r.out, "erased:"));
        CHECK(cli({"suppression", "verify"}).rc == 0);
        CHECK(cli({"audit", "verify"}).rc == 0);

        r = cli({"--json", "erase", "erin.person@example.com"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "\"suppression_rows\":0"));
        CHECK(has(r.out, "\"was_suppressed\":false"));
        auto list = cli({"--json", "audit", "list"});
        CHECK(has(list.out, "person.erase"));

        // Bad input: exit 2, nothing changed.
        const auto before = cli({"audit", "checkpoint"}).out;
        r = cli({"erase", "not-an-address"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "not a valid address"));
        CHECK(r.out.empty());
        CHECK(cli({"export", "nobody"}).rc == 2);
        CHECK(cli({"erase"}).rc == 2);
        CHECK(cli({"audit", "checkpoint"}).out == before);
    }

    SUBCASE("erase and export need their permissions once access control is on") {
        CHECK(cli({"access", "role", "admin", "--permission", "manage_access"}).rc == 0);
        CHECK(cli({"access", "grant", "root", "admin"}).rc == 0);
        CHECK(cli({"--actor", "root", "access", "enable"}).rc == 0);
        auto r = cli({"--actor", "bob", "erase", "x@example.com"});
        CHECK(r.rc == 6);
        CHECK(has(r.err, "erase_person"));
        CHECK_FALSE(has(r.err, "x@example.com"));
        r = cli({"--actor", "bob", "export", "x@example.com"});
        CHECK(r.rc == 6);
        CHECK(has(r.err, "export_data"));
        CHECK(cli({"--actor", "root", "access", "role", "dpo", "--permission", "erase_person",
                   "--permission", "export_data"})
                  .rc == 0);
        CHECK(cli({"--actor", "root", "access", "grant", "bob", "dpo"}).rc == 0);
        CHECK(cli({"--actor", "bob", "export", "x@example.com"}).rc == 0);
        CHECK(cli({"--actor", "bob", "erase", "x@example.com"}).rc == 0);
        auto list = cli({"--json", "audit", "list"});
        CHECK(has(list.out, "access.denied"));
        CHECK(has(list.out, "person.erase"));
    }

    SUBCASE("provider add, list, test and remove; secrets only by reference") {
        smtp_peer peer;
        const std::string dsn = "smtp://alice:env:CLI_SMTP_PASS@127.0.0.1:" +
                                std::to_string(peer.port()) + "?tls=none";
        auto with_pass = [&](std::string pass, std::vector<std::string> args) {
            return run(b.with(std::move(args)), {"USER=ops-test", "CLI_SMTP_PASS=" + pass});
        };
        auto r = cli({"provider", "add", "mx", "smtp://alice:hunter2@127.0.0.1:25?tls=none"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "the password"));
        CHECK_FALSE(has(r.err, "hunter2"));
        r = cli({"provider", "add", "mx", dsn});  // CLI_SMTP_PASS unset: cannot be built
        CHECK(r.rc == 2);
        CHECK(has(r.err, "CLI_SMTP_PASS"));
        r = cli({"--json", "provider", "list"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, R"({"providers":[]})"));

        r = with_pass("right", {"provider", "add", "mx", dsn});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "added provider mx"));
        CHECK(with_pass("right", {"provider", "add", "mx", dsn}).rc == 2);
        CHECK(with_pass("right", {"provider", "add", "mx", dsn, "--replace"}).rc == 0);
        r = cli({"provider", "list"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "ID"));
        CHECK(has(r.out, "mx"));
        CHECK(has(r.out, "env:CLI_SMTP_PASS"));
        r = cli({"--json", "provider", "list"});
        CHECK(has(r.out, R"("id":"mx","dsn":"smtp://)"));

        r = with_pass("right", {"provider", "test", "mx"});
        CHECK(r.rc == 0);
        CHECK(has(r.out, "ok: smtp 127.0.0.1"));
        CHECK(has(r.out, "AUTH PLAIN accepted"));
        r = with_pass("wrong", {"--json", "provider", "test", "mx"});
        CHECK(r.rc == 5);
        CHECK(has(r.out, R"("ok":false,"failure":"auth")"));
        CHECK(has(r.out, "535"));
        CHECK_FALSE(has(r.out, "wrong"));
        r = cli({"provider", "test", "mx"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "cannot be built in this process"));
        CHECK(has(r.err, "CLI_SMTP_PASS"));
        CHECK(cli({"provider", "test", "nope"}).rc == 1);
        CHECK(peer.mails() == 0);
        CHECK(peer.quits() == 2);

        REQUIRE(cli({"mailbox", "add", "rep1", "--address", "rep1@brand.example", "--provider",
                     "mx"})
                    .rc == 0);
        r = cli({"provider", "remove", "mx"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "rep1"));
        CHECK(cli({"mailbox", "retire", "rep1"}).rc == 0);
        CHECK(cli({"provider", "remove", "mx"}).rc == 0);
        CHECK(cli({"provider", "remove", "mx"}).rc == 1);
        r = cli({"--json", "audit", "list"});
        CHECK(has(r.out, "provider.save"));
        CHECK(has(r.out, "provider.remove"));
    }

    SUBCASE("a workspace whose hosts hold the erasure key needs it") {
        const auto key = dir / "erasure.key", wrong = dir / "other.key";
        std::ofstream(key) << "erasure key held by the hosts\n";
        std::ofstream(wrong) << "another key\n";
        CHECK(cli({"--erasure-key-file", key.string(), "erase", "held@example.com"}).rc == 0);
        CHECK(cli({"--erasure-key-file", key.string(), "suppression", "check",
                   "Held@example.com"})
                  .rc == 3);
        auto r = cli({"suppression", "check", "held@example.com"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "erasure_key"));
        r = cli({"--erasure-key-file", wrong.string(), "status"});
        CHECK(r.rc == 2);
        CHECK(has(r.err, "erasure_key"));
    }
}

}  // namespace

TEST_CASE("cli: usage and help") {
    SKIP_WITHOUT_TOOL();
    auto r = run({"--help"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "Exit codes"));
    CHECK(has(r.out, "suppression"));
    r = run({"suppression", "check", "--help"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "Example:"));
    r = run({});
    CHECK(r.rc == 2);
    r = run({"suppression", "check"});
    CHECK(r.rc == 2);
    r = run({"--sqlite", "a.db", "--postgres", "host=x", "status"});
    CHECK(r.rc == 2);
    r = run({"status"});
    CHECK(r.rc == 2);
    CHECK(has(r.err, "no store given"));
}

TEST_CASE("cli: a missing store is reported and not created") {
    SKIP_WITHOUT_TOOL();
    temp_dir d;
    const auto db = d.path / "missing.db";
    auto r = run({"--sqlite", db.string(), "suppression", "check", "a@example.com"});
    CHECK(r.rc == 4);
    CHECK(has(r.err, "mailers init"));
    CHECK_FALSE(fs::exists(db));
    r = run({"status"}, {"MAILERS_STORE=sqlite:" + db.string()});
    CHECK(r.rc == 4);
    CHECK_FALSE(fs::exists(db));
    r = run({"status"}, {"MAILERS_STORE=mysql:whatever"});
    CHECK(r.rc == 2);
    CHECK(has(r.err, "sqlite:PATH"));
}

TEST_CASE("cli: commands on an SQLite workspace") {
    SKIP_WITHOUT_TOOL();
    temp_dir d;
    exercise(backend{{"--sqlite", (d.path / "ws.db").string()}}, d.path);
}

TEST_CASE("cli: audit export, purge and verify from the anchor") {
    SKIP_WITHOUT_TOOL();
    temp_dir d;
    const std::string db = (d.path / "ws.db").string();
    auto cli = [&](std::vector<std::string> args) {
        args.insert(args.begin(), {"--sqlite", db});
        return run(args, {"USER=ops-test"});
    };
    // Three records from 100 days ago, written as a host's engine would
    // have, before the workspace's first change.
    {
        auto st = mailers::open_sqlite_store({db, mailers::open_mode::open_or_create});
        const auto old = std::chrono::time_point_cast<std::chrono::microseconds>(
                             std::chrono::system_clock::now()) -
                         std::chrono::days(100);
        std::vector<mailers::store_op> ops;
        for (int i = 0; i < 3; ++i) {
            mailers::audit_record r;
            r.at = old + std::chrono::seconds(i);
            r.actor = "host";
            r.action = "note";
            r.resource_type = "workspace";
            ops.push_back(mailers::store_ops::append_audit{r, {}});
        }
        st->commit("default", ops);
    }
    REQUIRE(cli({"init"}).rc == 0);
    CHECK(cli({"suppression", "add", "kept@example.com"}).rc == 0);
    const auto archive = d.path / "archive.jsonl";
    REQUIRE(cli({"audit", "export", archive.string()}).rc == 0);
    CHECK(has(slurp(archive), "\"action\":\"note\""));

    auto r = cli({"--json", "audit", "purge", "--older-than-days", "30"});
    REQUIRE(r.rc == 0);
    CHECK(has(r.out, "\"purged\":3"));
    CHECK(has(r.out, "\"anchor\":{\"seq\":4,"));
    r = cli({"audit", "verify"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "from anchor 4:"));
    r = cli({"--json", "audit", "verify"});
    CHECK(has(r.out, "\"anchor\":{\"seq\":4,"));
    r = cli({"audit", "export"});
    CHECK(r.rc == 0);
    CHECK(r.out.starts_with("{\"anchor\":{\"seq\":4,"));
    CHECK_FALSE(has(r.out, "\"action\":\"note\""));
    CHECK(has(r.out, "\"action\":\"audit.purge\""));
    const std::string second_line = r.out.substr(r.out.find('\n') + 1);
    CHECK(second_line.starts_with("{\"seq\":4,"));
    r = cli({"audit", "purge", "--older-than-days", "30"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "nothing older than 30 days"));
    CHECK(cli({"audit", "list"}).rc == 0);

    // The first kept record deleted behind the tool's back.
    SQLite::Database(db, SQLite::OPEN_READWRITE)
        .exec("DELETE FROM audit WHERE workspace = 'default' AND seq = 4");
    r = cli({"audit", "verify"});
    CHECK(r.rc == 5);
    CHECK(has(r.err, "failed at seq 5"));
}

// A new SQLite workspace, and the tool run on it.
struct sqlite_workspace {
    temp_dir dir;
    std::string db = (dir.path / "ws.db").string();
    sqlite_workspace() { REQUIRE(run({"--sqlite", db, "init"}).rc == 0); }
    run_result operator()(std::vector<std::string> args) const {
        args.insert(args.begin(), {"--sqlite", db});
        return run(args, {"USER=ops-test"});
    }
};

TEST_CASE("cli: stats shows the store's per-day counts") {
    SKIP_WITHOUT_TOOL();
    sqlite_workspace cli;
    // Counts as an engine's commits add them: today and two days ago.
    const auto today = mailers::utc_day(mailers::system_clock().now());
    {
        auto st = mailers::open_sqlite_store({cli.db, mailers::open_mode::existing});
        std::vector<mailers::store_op> ops;
        const std::vector<std::pair<mailers::count_scope, std::string>> where{
            {mailers::count_scope::workspace, ""},
            {mailers::count_scope::mailbox, "rep1"},
            {mailers::count_scope::sender_domain, "brand.example"}};
        ops.push_back(
            mailers::store_ops::add_counts{today, mailers::count_metric::sent, where, 12});
        ops.push_back(
            mailers::store_ops::add_counts{today, mailers::count_metric::bounced_hard, where, 2});
        ops.push_back(
            mailers::store_ops::add_counts{today - 2, mailers::count_metric::sent, where, 5});
        st->commit("default", ops);
    }
    auto r = cli({"--json", "stats", "mailbox", "rep1", "--days", "3"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("scope":"mailbox","id":"rep1","days":[{"day":")"));
    CHECK(has(r.out, R"("sent":5,"failed":0)"));
    CHECK(has(r.out, R"("sent":0,"failed":0)"));  // yesterday: nothing
    CHECK(has(r.out, R"("sent":12,"failed":0,"unknown":0,"delivered":0,"deferred":0,)"
                     R"("bounced_hard":2,)"));
    r = cli({"stats"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "DAY"));
    CHECK(has(r.out, "BOUNCED_HARD"));
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 8);  // a head and 7 days
    r = cli({"--json", "stats", "domain", "Brand.Example", "--days", "1"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("id":"brand.example")"));
    CHECK(has(r.out, R"("sent":12)"));
    r = cli({"--json", "stats", "pool", "nobody"});
    CHECK(r.rc == 0);
    CHECK_FALSE(has(r.out, R"("sent":1)"));
    // Bad input: exit 2, nothing on stdout.
    for (std::vector<std::string> bad : {std::vector<std::string>{"stats", "galaxy"},
                                         {"stats", "mailbox"},
                                         {"stats", "workspace", "x"},
                                         {"stats", "--days", "0"},
                                         {"stats", "--days", "400"},
                                         {"stats", "domain", "not a domain"}}) {
        INFO(bad[1]);
        r = cli(bad);
        CHECK(r.rc == 2);
        CHECK(r.out.empty());
    }
}

TEST_CASE("cli: resume records its reason") {
    SKIP_WITHOUT_TOOL();
    sqlite_workspace cli;
    REQUIRE(cli({"pause", "workspace", "--reason", "incident 7"}).rc == 0);
    auto r = cli({"--json", "resume", "workspace", "--reason", "incident 7 closed"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("reason":"incident 7 closed")"));
    r = cli({"--json", "audit", "list"});
    CHECK(has(r.out, "incident 7 closed"));
}

TEST_CASE("cli: MAILERS_STORE names the store") {
    SKIP_WITHOUT_TOOL();
    temp_dir d;
    const std::string env = "MAILERS_STORE=sqlite:" + (d.path / "env.db").string();
    CHECK(run({"init"}, {env}).rc == 0);
    auto r = run({"--json", "suppression", "check", "a@example.com"}, {env});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "\"suppressed\":false"));
}

TEST_CASE("cli: commands on a PostgreSQL workspace") {
    SKIP_WITHOUT_TOOL();
    const char* c = test_pg();
    if (!c) return;
    temp_dir d;
    // Each subcase starts from a store that does not exist: a new schema.
    exercise(backend{{"--postgres", c, "--pg-schema", unique("cli")}}, d.path);
}

namespace {

// A campaign, a sequence and an enrollment, made by a host's engine on the
// workspace `b` names (created by the tool), then read, cancelled and
// forecast by the tool in processes of its own.
void exercise_workflows(const backend& b, const std::function<std::shared_ptr<mailers::store>()>& open,
                        const fs::path& dir) {
    auto cli = [&](std::vector<std::string> args) {
        return run(b.with(std::move(args)), {"USER=ops-test"});
    };
    REQUIRE(cli({"init"}).rc == 0);
    {
        boost::asio::io_context io;  // never run: what the host queues waits
        mailers::engine_params p;
        p.storage = open();
        p.member_name = "host";
        mailers::engine e(io.get_executor(), std::move(p));
        const mailers::principal host{"host", "Host"};
        mailers::mailbox_config m;
        m.id = "rep1";
        m.from = *mailers::parse_address("Rep One <rep1@brand.example>");
        m.provider = "ses";
        m.limits = {mailers::rate_limit::per_day(2)};
        e.upsert_mailbox(host, m);
        e.suppress(host, mailers::suppression_kind::address, "gone@example.com",
                   mailers::suppression_reason::complaint);
        mailers::campaign_config c;
        c.id = "q4";
        c.name = "Q4 launch";
        c.content = {.subject = "Hello {{first_name|there}}", .text = "News."};
        c.mailbox = "rep1";
        for (auto a : {"a@example.com", "b@example.com", "gone@example.com"})
            c.recipients.push_back({*mailers::parse_address(a), {}});
        e.start_campaign(host, c);
        mailers::sequence_config s;
        s.id = "outreach";
        s.name = "Outreach";
        for (std::uint32_t days : {0u, 2u})
            s.steps.push_back({{mailers::sequence_delay::unit::days, days},
                               {.subject = "Hi {{first_name|there}}", .text = "Step."},
                               {mailers::sender_rule_kind::mailbox, "rep1", ""},
                               mailers::step_threading::new_thread});
        e.upsert_sequence(host, s);
        e.enroll(host, "outreach", *mailers::parse_address("lead@example.com"));
        e.flush();
    }

    auto r = cli({"campaign", "list"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "REMAINING"));
    CHECK(has(r.out, "mailbox rep1"));
    CHECK(has(r.out, "running"));
    r = cli({"--json", "campaign", "show", "q4"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("id":"q4","name":"Q4 launch")"));
    CHECK(has(r.out, R"("total":3,"sent":0)"));
    CHECK(has(r.out, R"("suppressed_at_start":1)"));
    CHECK(has(r.out, R"("waiting":2)"));
    r = cli({"campaign", "show", "q5"});
    CHECK(r.rc == 1);
    CHECK(has(r.err, "no campaign 'q5'"));
    CHECK(r.out.empty());

    r = cli({"sequence", "list"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "outreach"));
    r = cli({"--json", "sequence", "show", "outreach"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("delay":"2 days","sender":"mailbox rep1")"));
    CHECK(has(r.out, R"("enrollments":{"active":1,"paused":0)"));
    r = cli({"sequence", "show", "outreach"});
    CHECK(has(r.out, "STEP"));
    CHECK(has(r.out, "Hi {{first_name|there}}"));
    CHECK(cli({"sequence", "show", "nope"}).rc == 1);
    r = cli({"--json", "enrollment", "list", "--sequence", "outreach"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("address":"lead@example.com","state":"active")"));
    r = cli({"enrollment", "list", "--sequence", "outreach", "--state", "stopped"});
    CHECK(r.rc == 0);
    CHECK_FALSE(has(r.out, "lead@example.com"));
    CHECK(cli({"enrollment", "list", "--sequence", "outreach", "--state", "asleep"}).rc == 2);
    CHECK(cli({"enrollment", "list", "--sequence", "nope"}).rc == 1);
    CHECK(cli({"enrollment", "list"}).rc == 2);
    r = cli({"--json", "enrollment", "list", "--sequence", "outreach", "--state", "unresolved"});
    CHECK(r.rc == 0);
    CHECK_FALSE(has(r.out, "lead@example.com"));
    // Only a step whose send ended unknown is resolved; bad input changes nothing.
    r = cli({"enrollment", "resolve", "1", "--sent"});
    CHECK(r.rc == 1);
    CHECK(has(r.err, "enrollment 1 is not unresolved"));
    CHECK(cli({"enrollment", "resolve", "1"}).rc == 2);
    CHECK(cli({"enrollment", "resolve", "1", "--sent", "--not-sent"}).rc == 2);
    CHECK(cli({"enrollment", "resolve", "999", "--not-sent"}).rc == 1);
    r = cli({"--json", "enrollment", "list", "--sequence", "outreach"});
    CHECK(has(r.out, R"("address":"lead@example.com","state":"active")"));

    // Forecasts: the cap of 2 a day spreads the sends over the days.
    const auto contacts = dir / "leads.csv";
    std::ofstream(contacts) << "address,first_name\nann@example.com,Ann\n"
                               "\"Bo B. <bo@example.com>\",Bo\ngone@example.com,Gone\n";
    r = cli({"--json", "forecast", "sequence", "outreach", "--contacts", contacts.string(),
             "--days", "10"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("complete":true)"));
    CHECK(has(r.out, R"("planned":4)"));
    CHECK(has(r.out, R"("reason":"suppressed")"));
    r = cli({"forecast", "sequence", "outreach", "--contacts", contacts.string(), "--sends"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "DAY         MAILBOX  SENDS"));
    CHECK(has(r.out, "HELD BY"));
    CHECK(has(r.out, "sequence:outreach/2"));
    CHECK(has(r.out, "last send:"));
    const auto campaign = dir / "q5.json";
    std::ofstream(campaign) << R"({"id": "q5", "name": "Q5", "subject": "Hi {{first_name}}",
        "text": "News.", "mailbox": "rep1",
        "recipients": [{"to": "x@example.com", "variables": {"first_name": "X"}},
                       {"to": "y@example.com", "variables": {"first_name": "Y"}}]})";
    r = cli({"--json", "forecast", "campaign", campaign.string(), "--no-queue"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("planned":2,"existing":0)"));
    CHECK(has(r.out, R"("origin":"campaign:q5")"));
    // Forecasting changes nothing.
    r = cli({"--json", "campaign", "list"});
    CHECK_FALSE(has(r.out, "q5"));
    // What is left of the started campaign: its two waiting messages.
    r = cli({"--json", "forecast", "campaign", "q4"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("complete":true)"));
    CHECK(has(r.out, R"("planned":2,"existing":0)"));
    r = cli({"forecast", "campaign", "q4"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "2 of this request"));
    CHECK(cli({"forecast", "campaign", "q4", "--no-queue"}).rc == 2);
    r = cli({"forecast", "campaign", "q7"});
    CHECK(r.rc == 1);
    CHECK(has(r.err, "no campaign 'q7'"));
    // Bad input: a clear error, exit 2 (1 for an unknown sequence).
    const auto bad = dir / "bad.json";
    std::ofstream(bad) << R"({"id": "q6", "mailbox": "rep1", "subject": "Hi {{first_name}}",
        "text": "x", "recipients": ["z@example.com"]})";
    r = cli({"forecast", "campaign", bad.string()});
    CHECK(r.rc == 2);
    CHECK(has(r.err, "first_name"));
    std::ofstream(bad) << R"({"id": "q6", "recipients": 3})";
    CHECK(cli({"forecast", "campaign", bad.string()}).rc == 2);
    std::ofstream(bad) << R"({"id": "q4", "mailbox": "rep1", "subject": "s", "text": "t",
        "recipients": ["a@example.com"]})";
    r = cli({"forecast", "campaign", bad.string()});
    CHECK(r.rc == 2);
    CHECK(has(r.err, "already started"));
    std::ofstream(bad) << "first_name\nAnn\n";
    r = cli({"forecast", "sequence", "outreach", "--contacts", bad.string()});
    CHECK(r.rc == 2);
    CHECK(has(r.err, "address"));
    CHECK(cli({"forecast", "sequence", "nope", "--contacts", contacts.string()}).rc == 1);
    CHECK(cli({"forecast", "sequence", "outreach", "--contacts", contacts.string(), "--days", "0"})
              .rc == 2);

    r = cli({"--json", "campaign", "cancel", "q4"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("withdrawn":2)"));
    r = cli({"--json", "campaign", "show", "q4"});
    CHECK(has(r.out, R"("state":"cancelled")"));
    CHECK(has(r.out, R"("cancelled":2)"));
    CHECK(cli({"campaign", "cancel", "q5"}).rc == 1);
    r = cli({"--json", "audit", "list"});
    CHECK(has(r.out, "campaign.cancel"));
}

}  // namespace

TEST_CASE("cli: campaigns, sequences, enrollments and forecasts on SQLite") {
    SKIP_WITHOUT_TOOL();
    temp_dir d;
    const auto db = (d.path / "ws.db").string();
    exercise_workflows(
        backend{{"--sqlite", db}},
        [&] { return mailers::open_sqlite_store({db, mailers::open_mode::existing}); }, d.path);
}

TEST_CASE("cli: campaigns, sequences, enrollments and forecasts on PostgreSQL") {
    SKIP_WITHOUT_TOOL();
    const char* c = test_pg();
    if (!c) return;
    temp_dir d;
    const auto schema = unique("cliwf");
    exercise_workflows(backend{{"--postgres", c, "--pg-schema", schema}}, [&] {
        mailers::postgres_store_params p;
        p.conninfo = c;
        p.schema = schema;
        p.mode = mailers::open_mode::existing;
        return mailers::open_postgres_store(p);
    }, d.path);
}

// Real provider bodies (../shared/fixtures/webhooks) replayed into a
// workspace: each produces the events EXPECTED.tsv lists, a second replay
// applies nothing, and verification refuses what it should.
TEST_CASE("cli: webhook replay") {
    SKIP_WITHOUT_TOOL();
    const fs::path fixtures = MAILERS_SHARED_FIXTURES;
    if (!fs::exists(fixtures / "webhooks" / "EXPECTED.tsv")) {
        MESSAGE("skipped: no shared fixtures at " << fixtures.string());
        return;
    }
    sqlite_workspace cli;
    const auto hooks = fixtures / "webhooks";
    std::map<std::pair<std::string, std::string>, int> expected;  // (provider, file) -> events
    {
        std::ifstream in(hooks / "EXPECTED.tsv");
        std::string line;
        std::getline(in, line);  // the header
        while (std::getline(in, line)) {
            std::istringstream f(line);
            std::string provider, file;
            std::getline(f, provider, '\t');
            std::getline(f, file, '\t');
            if (fs::exists(hooks / provider / file)) ++expected[{provider, file}];
        }
    }
    REQUIRE(expected.size() > 40);
    auto replay = [&](const std::string& provider, const std::string& file,
                      std::vector<std::string> extra = {}) {
        const auto path = hooks / provider / file;
        auto headers = path;
        headers.replace_extension(".headers.txt");
        std::vector<std::string> args{"--json", "webhook", "replay", provider, path.string()};
        if (fs::exists(headers)) {
            args.insert(args.end(), {"--headers-file", headers.string()});
        } else {
            args.insert(args.end(), {"--header", file.ends_with(".txt")
                                                     ? "Content-Type: application/x-www-form-urlencoded"
                                                     : "Content-Type: application/json"});
        }
        args.insert(args.end(), extra.begin(), extra.end());
        return cli(args);
    };
    for (int pass = 0; pass < 2; ++pass)
        for (const auto& [key, n] : expected) {
            INFO(key.first << "/" << key.second << " pass " << pass);
            auto r = replay(key.first, key.second, {"--no-verify"});
            CHECK(r.rc == 0);
            CHECK(has(r.out, R"("http_status":200,"outcome":"events")"));
            CHECK(has(r.out, "\"events\":" + std::to_string(n) + ","));
            if (pass == 1) CHECK(has(r.out, R"("applied":0,)"));
        }
    // The SendGrid bounce suppressed its recipient, and a person reads why.
    auto r = cli({"suppression", "check", "example@test.com"});
    CHECK(r.rc == 3);
    CHECK(has(r.out, "sendgrid-webhook"));
    r = cli({"webhook", "replay", "sendgrid", (hooks / "sendgrid" / "docs-bounce.json").string(),
             "--no-verify"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, "200 events"));
    CHECK(has(r.out, "0 applied, 1 duplicates"));
    CHECK(has(r.out, "example@test.com"));

    // SNS handshakes: acknowledged, no events.
    r = replay("ses", "sns-subscription-confirmation.json", {"--no-verify"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("outcome":"subscription_confirmation")"));
    CHECK(has(r.out, R"("events":0,)"));

    // Verified as the host verifies: SendGrid's signed request, at the time
    // it was posted.
    std::string key;
    {
        const auto v = slurp(fixtures / "signing" / "sendgrid" / "real-issue1193-vector.json");
        const auto at = v.find("\"public_key\": \"");
        REQUIRE(at != std::string::npos);
        const auto from = at + 15;
        key = v.substr(from, v.find('"', from) - from);
    }
    const std::string signed_body = "signed-real-issue1193-processed.json";
    r = replay("sendgrid", signed_body, {"--public-key", key, "--received-at", "@1599663888"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("http_status":200)"));
    r = replay("sendgrid", signed_body, {"--public-key", key, "--received-at",
                                         "2020-09-09T15:04:48Z"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("applied":0,"duplicates":1)"));
    // Now is years after the signed timestamp: refused, exit 5.
    r = replay("sendgrid", signed_body, {"--public-key", key});
    CHECK(r.rc == 5);
    CHECK(has(r.err, "not accepted (403)"));
    // Another body under the same signature: refused.
    r = replay("sendgrid", "docs-bounce.json",
               {"--public-key", key, "--received-at", "@1599663888", "--header",
                "X-Twilio-Email-Event-Webhook-Signature: MEYCIQCxfnpzX3CftRSaaA4wHWHOKEyHbCf5jbwL/z/"
                "QQpncqQIhANu8Ug7FTuQhgGzhSVQvDSIS64rp+fXz2AloRnV5qcTL",
                "--header", "X-Twilio-Email-Event-Webhook-Timestamp: 1599663888"});
    CHECK(r.rc == 5);
    // SES through SNS, verified with the certificate the host holds (it has
    // expired since, so its dates are not checked) and the topic allow-list.
    const auto sns = fixtures / "signing" / "sns";
    const std::string cert =
        "https://sns.us-east-1.amazonaws.com/"
        "SimpleNotificationService-7ff5318490ec183fbaddaa2a969abfda.pem=" +
        (sns / "sns-cert-7ff5318490ec183fbaddaa2a969abfda.pem").string();
    auto ses = [&](std::vector<std::string> extra) {
        std::vector<std::string> args{"--json", "webhook", "replay", "ses",
                                      (sns / "real-signed-complaint.json").string()};
        args.insert(args.end(), extra.begin(), extra.end());
        return cli(args);
    };
    r = ses({"--sns-certificate", cert, "--no-certificate-dates", "--topic-arn",
             "arn:aws:sns:us-east-1:364852123998:test-email"});
    CHECK(r.rc == 0);
    CHECK(has(r.out, R"("type":"complained","recipient":"complaint@simulator.amazonses.com")"));
    r = ses({"--sns-certificate", cert});
    CHECK(r.rc == 5);
    CHECK(has(r.out, "not valid now"));
    r = ses({"--sns-certificate", cert, "--no-certificate-dates", "--topic-arn",
             "arn:aws:sns:us-east-1:1:other"});
    CHECK(r.rc == 5);
    r = ses({});
    CHECK(r.rc == 6);
    CHECK(has(r.out, R"("outcome":"certificate_needed")"));
    CHECK(cli({"webhook", "replay", "ses", (sns / "real-signed-complaint.json").string(),
               "--sns-certificate", "no-equals-sign"})
              .rc == 2);
    // Verification on without its settings: the host's configuration is
    // missing, exit 6.
    r = replay("postmark", "pmdocs-delivery.json");
    CHECK(r.rc == 6);
    // Bad input: exit 2, the store untouched.
    CHECK(cli({"webhook", "replay", "sparkpost", (hooks / "sendgrid" / "docs-bounce.json").string()})
              .rc == 2);
    CHECK(cli({"webhook", "replay", "sendgrid", (hooks / "nope.json").string()}).rc == 2);
    CHECK(cli({"webhook", "replay", "sendgrid", (hooks / "sendgrid" / "docs-bounce.json").string(),
               "--header", "no colon"})
              .rc == 2);
    CHECK(cli({"webhook", "replay", "sendgrid", (hooks / "sendgrid" / "docs-bounce.json").string(),
               "--received-at", "yesterday"})
              .rc == 2);
    const auto junk = fs::path(cli.db).parent_path() / "junk.json";
    std::ofstream(junk) << "{not json";
    r = cli({"webhook", "replay", "sendgrid", junk.string(), "--no-verify"});
    CHECK(r.rc == 2);
    CHECK(has(r.out, "400"));
}
