// The `mailers` tool as an operator uses it: every command runs as its own
// process on a real workspace (a temporary SQLite file, and PostgreSQL when
// MAILERS_TEST_PG names a server), and the test reads what it printed and
// how it exited.
#include <SQLiteCpp/SQLiteCpp.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <mailers/clock.hpp>
#include <mailers/daily_counts.hpp>
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
        CHECK(has(r.err, "cannot be built here"));
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
    const char* c = std::getenv("MAILERS_TEST_PG");
    if (!c || !*c) {
        const char* req = std::getenv("MAILERS_REQUIRE_PG");
        if (req && std::string_view{req} == "1")
            FAIL("MAILERS_REQUIRE_PG=1 but MAILERS_TEST_PG is unset");
        MESSAGE("skipped: set MAILERS_TEST_PG to a conninfo to run the tool on PostgreSQL");
        return;
    }
    temp_dir d;
    // Each subcase starts from a store that does not exist: a new schema.
    exercise(backend{{"--postgres", c, "--pg-schema", unique("cli")}}, d.path);
}
