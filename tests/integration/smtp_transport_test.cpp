// The SMTP transport against a real SMTP server (aiosmtpd, started by each
// test from smtp_server.py on 127.0.0.1) with a throwaway CA: TLS modes,
// AUTH mechanisms, pipelining, connection reuse and limits, content
// round trips, every rejection class, and the failures that must never be
// retried (a connection lost after the final dot).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mailers/address.hpp>
#include <mailers/engine.hpp>
#include <mailers/mime.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transports/smtp_transport.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

using mailers::error_code;
using mailers::failure;
using mailers::outbound;
using mailers::send_outcome;
using mailers::transport_errc;

namespace {

constexpr const char* python = "/usr/bin/python3";

bool have_aiosmtpd() {
    static const bool ok =
        ::access(python, X_OK) == 0 &&
        std::system("/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1") == 0;
    return ok;
}

#define REQUIRE_SMTP_SERVER()                                                                 \
    do {                                                                                      \
        if (!have_aiosmtpd()) {                                                               \
            MESSAGE("skipped: /usr/bin/python3 with aiosmtpd (python3-aiosmtpd) is missing"); \
            return;                                                                           \
        }                                                                                     \
    } while (0)

fs::path make_temp_dir(const std::string& what) {
    static std::atomic<int> n{0};
    auto dir = fs::temp_directory_path() / ("mailers-smtp-" + what + "-" +
                                            std::to_string(::getpid()) + "-" + std::to_string(++n));
    fs::remove_all(dir);
    fs::create_directories(dir);
    return dir;
}

std::string read_file(const fs::path& p) {
    std::ifstream f(p, std::ios::binary);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// A throwaway CA and certificates, made once per test run with the openssl
// command line tool.
struct tls_files {
    fs::path dir, ca, server_cert, server_key, wrong_cert, wrong_key, mismatch_cert, mismatch_key;
    bool ok = false;
};

const tls_files& certificates() {
    static const tls_files files = [] {
        tls_files t;
        t.dir = make_temp_dir("pki");
        const auto d = t.dir.string();
        t.ca = t.dir / "ca.pem";
        t.server_cert = t.dir / "server.pem";
        t.server_key = t.dir / "server.key";
        t.wrong_cert = t.dir / "wrong.pem";
        t.wrong_key = t.dir / "wrong.key";
        t.mismatch_cert = t.dir / "mismatch.pem";
        t.mismatch_key = t.dir / "mismatch.key";
        std::ofstream(t.dir / "server.ext")
            << "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
               "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";
        std::ofstream(t.dir / "mismatch.ext")
            << "subjectAltName=DNS:wrong.example\nbasicConstraints=CA:FALSE\n"
               "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";
        const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
        const std::string cmd =
            "(cd '" + d + "' && " + "openssl req -x509" + ec +
            "-keyout ca.key -out ca.pem -days 2 -subj '/CN=mailers test CA' "
            "-addext 'basicConstraints=critical,CA:TRUE' "
            "-addext 'keyUsage=critical,keyCertSign,cRLSign' && "
            "openssl req" +
            ec +
            "-keyout server.key -out server.csr -subj '/CN=localhost' && "
            "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
            "-out server.pem -days 2 -extfile server.ext && "
            "openssl req" +
            ec +
            "-keyout mismatch.key -out mismatch.csr -subj '/CN=wrong.example' && "
            "openssl x509 -req -in mismatch.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
            "-out mismatch.pem -days 2 -extfile mismatch.ext && "
            "openssl req -x509" +
            ec +
            "-keyout wrong.key -out wrong.pem -days 2 "
            "-subj '/CN=localhost' -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1')";
        t.ok = std::system((cmd + " >/dev/null 2>&1").c_str()) == 0 && fs::exists(t.wrong_cert);
        return t;
    }();
    static const struct remover {
        fs::path dir;
        ~remover() {
            std::error_code ec;
            fs::remove_all(dir, ec);
        }
    } cleanup{files.dir};
    return files;
}

// One smtp_server.py process; stopped (and its folder removed) on destruction.
class smtp_server {
public:
    explicit smtp_server(std::vector<std::string> args) : dir_(make_temp_dir("server")) {
        fs::create_directories(dir_ / "out");
        std::vector<std::string> argv{
            python,  MAILERS_SOURCE_DIR "/tests/integration/smtp_server.py",
            "--out", (dir_ / "out").string(),
            "--log", (dir_ / "log").string()};
        argv.insert(argv.end(), args.begin(), args.end());
        std::vector<char*> cargv;
        for (auto& a : argv) cargv.push_back(a.data());
        cargv.push_back(nullptr);

        int in[2], out[2];
        REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
        REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, in[0], 0);
        posix_spawn_file_actions_adddup2(&fa, out[1], 1);
        const auto err = (dir_ / "stderr").string();
        posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        const int rc = ::posix_spawn(&pid_, python, &fa, nullptr, cargv.data(), environ);
        posix_spawn_file_actions_destroy(&fa);
        ::close(in[0]);
        ::close(out[1]);
        stdin_ = in[1];
        REQUIRE(rc == 0);

        std::string line;
        pollfd p{out[0], POLLIN, 0};
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        while (line.find('\n') == std::string::npos &&
               std::chrono::steady_clock::now() < deadline) {
            if (::poll(&p, 1, 200) > 0) {
                char buf[256];
                const auto n = ::read(out[0], buf, sizeof buf);
                if (n <= 0) break;
                line.append(buf, static_cast<std::size_t>(n));
            }
        }
        ::close(out[0]);
        if (line.rfind("PORT ", 0) != 0) {
            stop();
            FAIL("smtp_server.py did not start: " << read_file(dir_ / "stderr"));
        }
        port_ = static_cast<std::uint16_t>(std::stoi(line.substr(5)));
    }

    ~smtp_server() {
        stop();
        std::error_code ec;
        fs::remove_all(dir_, ec);
    }

    std::uint16_t port() const { return port_; }
    std::string url(const std::string& scheme = "smtp", const std::string& userinfo = "") const {
        return scheme + "://" + userinfo + "127.0.0.1:" + std::to_string(port_);
    }

    std::vector<std::string> log() const {
        std::vector<std::string> lines;
        std::istringstream in(read_file(dir_ / "log"));
        for (std::string l; std::getline(in, l);) lines.push_back(l);
        return lines;
    }

    // The server logs asynchronously: a CLOSE may land just after the client
    // has moved on.
    bool wait_count(const std::string& prefix, std::size_t n,
                    std::chrono::seconds limit = 5s) const {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (count(prefix) != n) {
            if (std::chrono::steady_clock::now() > deadline) return false;
            std::this_thread::sleep_for(10ms);
        }
        return true;
    }

    std::size_t count(const std::string& prefix) const {
        std::size_t n = 0;
        for (const auto& l : log())
            if (l.rfind(prefix, 0) == 0) ++n;
        return n;
    }

    int max_active() const {
        int m = 0;
        for (const auto& l : log()) {
            const auto p = l.find("active=");
            if (l.rfind("CONNECT", 0) == 0 && p != std::string::npos)
                m = std::max(m, std::stoi(l.substr(p + 7)));
        }
        return m;
    }

    std::vector<std::string> messages() const {
        std::vector<std::string> out;
        for (int i = 1; fs::exists(dir_ / "out" / ("msg-" + std::to_string(i) + ".eml")); ++i)
            out.push_back(read_file(dir_ / "out" / ("msg-" + std::to_string(i) + ".eml")));
        return out;
    }

    std::string envelope(int i) const {
        return read_file(dir_ / "out" / ("msg-" + std::to_string(i) + ".json"));
    }

private:
    void stop() {
        if (stdin_ >= 0) ::close(stdin_);
        stdin_ = -1;
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            int status = 0;
            ::waitpid(pid_, &status, 0);
            pid_ = -1;
        }
    }

    fs::path dir_;
    pid_t pid_ = -1;
    int stdin_ = -1;
    std::uint16_t port_ = 0;
};

struct result {
    error_code ec;
    send_outcome out;
    bool done = false;
};

void run_until(asio::io_context& ioc, const std::function<bool()>& pred,
               std::chrono::seconds limit = 60s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        REQUIRE(std::chrono::steady_clock::now() < deadline);
        if (ioc.stopped()) ioc.restart();
        ioc.run_one_for(20ms);
    }
}

// Messages are made from several threads in the concurrency tests.
std::atomic<int> message_counter{0};

mailers::message make_message(const std::string& to, std::string text = "Hello from mailers.\r\n") {
    mailers::message m;
    m.from = {"sender", "example.com", "Sender"};
    auto rcpt = mailers::parse_address(to);
    REQUIRE(rcpt.has_value());
    m.to.push_back(*rcpt);
    m.subject = "Test message";
    m.text = std::move(text);
    m.message_id = "test-" + std::to_string(++message_counter) + "@example.com";
    m.date = mailers::time_point{std::chrono::seconds(1767225600)};
    return m;
}

std::shared_ptr<const outbound> make_outbound(mailers::message m,
                                              std::vector<std::string> more_rcpts = {}) {
    auto o = std::make_shared<outbound>();
    o->env = mailers::envelope::from_message(m);
    for (auto& r : more_rcpts) o->env.rcpt_to.push_back(std::move(r));
    o->msg = std::move(m);
    o->send_id = "s" + std::to_string(message_counter.load());
    return o;
}

result send_one(asio::io_context& ioc, mailers::provider_transport& t,
                std::shared_ptr<const outbound> o) {
    result r;
    t.async_send(std::move(o), [&](error_code ec, send_outcome out) {
        r.ec = ec;
        r.out = std::move(out);
        r.done = true;
    });
    run_until(ioc, [&] { return r.done; });
    return r;
}

result send_to(asio::io_context& ioc, mailers::provider_transport& t, const std::string& to) {
    return send_one(ioc, t, make_outbound(make_message(to)));
}

std::unique_ptr<mailers::smtp_transport> transport(
    asio::io_context& ioc, const std::string& dsn,
    std::function<void(mailers::smtp_params&)> tweak = {}) {
    mailers::diagnostics diag;
    auto d = mailers::parse_single_dsn(dsn, &diag);
    REQUIRE_MESSAGE(d.has_value(), diag.message);
    auto p = mailers::smtp_params_from_dsn(*d, &diag);
    REQUIRE_MESSAGE(p.has_value(), diag.message);
    p->timeouts.greeting = 10s;
    p->timeouts.command = 10s;
    if (tweak) tweak(*p);
    return std::make_unique<mailers::smtp_transport>(ioc.get_executor(), std::move(*p));
}

// Closes the transport and lets its connections say QUIT.
// Runs the transport's connection check to its end.
std::pair<error_code, mailers::diagnostics> check_of(asio::io_context& ioc,
                                                     mailers::provider_transport& t) {
    std::optional<std::pair<error_code, mailers::diagnostics>> out;
    t.async_check([&](error_code ec, mailers::diagnostics d) { out.emplace(ec, std::move(d)); });
    run_until(ioc, [&] { return out.has_value(); });
    return std::move(*out);
}

void finish(asio::io_context& ioc, std::unique_ptr<mailers::smtp_transport>& t) {
    t.reset();
    ioc.restart();
    ioc.run_for(10s);  // returns as soon as the last connection is closed
}

std::string rendered(const mailers::message& m, bool allow_8bit) {
    mailers::render_options o;
    o.allow_8bit = allow_8bit;
    auto r = mailers::render_message(m, o);
    REQUIRE(r.has_value());
    return *r;
}

std::string ca_option() {
    return "ca_file=" + certificates().ca.string();
}

std::vector<std::string> tls_server_args(const fs::path& cert, const fs::path& key) {
    return {"--cert", cert.string(), "--key", key.string()};
}

// A server with STARTTLS (the test CA's certificate) and AUTH as alice / right.
std::vector<std::string> alice_tls_args() {
    const auto& pki = certificates();
    REQUIRE(pki.ok);
    auto args = tls_server_args(pki.server_cert, pki.server_key);
    args.insert(args.end(), {"--user", "alice", "--password", "right"});
    return args;
}

// Quoted-printable (RFC 2045 section 6.7) back to octets: soft line breaks
// removed, =XX escapes decoded.
std::string decode_quoted_printable(std::string_view in) {
    const auto hex = [](char c) { return c <= '9' ? c - '0' : (c & ~0x20) - 'A' + 10; };
    std::string out;
    for (std::size_t i = 0; i < in.size(); ++i) {
        if (in[i] != '=') {
            out.push_back(in[i]);
        } else if (in.compare(i + 1, 2, "\r\n") == 0) {
            i += 2;
        } else {
            REQUIRE(i + 2 < in.size());
            out.push_back(static_cast<char>(hex(in[i + 1]) * 16 + hex(in[i + 2])));
            i += 2;
        }
    }
    return out;
}

// A socket listening on 127.0.0.1, and its port. Until someone accepts, a
// client's TCP handshake completes in the kernel and nothing more happens.
int listen_on_loopback(std::uint16_t& port) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd, 4) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port = ntohs(addr.sin_port);
    return fd;
}

// A peer on 127.0.0.1 that is not an SMTP server: it accepts one connection,
// writes `first`; when `after_line` is set, reads one line (the client's
// EHLO) and writes it; then waits for the client to close.
class scripted_peer {
public:
    scripted_peer(std::string first, std::string after_line = {}) : fd_(listen_on_loopback(port_)) {
        thread_ =
            std::thread([this, first = std::move(first), after = std::move(after_line)]() mutable {
                pollfd p{fd_, POLLIN, 0};
                if (::poll(&p, 1, 20000) <= 0) return;
                const int c = ::accept(fd_, nullptr, nullptr);
                if (c < 0) return;
                const auto put = [c](const std::string& b) {
                    if (!b.empty()) (void)!::write(c, b.data(), b.size());
                };
                put(first);
                char buf[512];
                std::string got;
                pollfd q{c, POLLIN, 0};
                while (::poll(&q, 1, 20000) > 0) {
                    const auto n = ::read(c, buf, sizeof buf);
                    if (n <= 0) break;
                    got.append(buf, static_cast<std::size_t>(n));
                    if (!after.empty() && got.find('\n') != std::string::npos) {
                        put(after);
                        after.clear();
                    }
                }
                received_ = got;
                ::close(c);
            });
    }
    ~scripted_peer() {
        if (thread_.joinable()) thread_.join();
        ::close(fd_);
    }

    std::string url() const { return "smtp://127.0.0.1:" + std::to_string(port_); }
    // What the client wrote; read after the transport is gone.
    std::string received() {
        if (thread_.joinable()) thread_.join();
        return received_;
    }

private:
    std::uint16_t port_ = 0;  // before fd_, which sets it
    int fd_ = -1;
    std::thread thread_;
    std::string received_;
};

}  // namespace

TEST_SUITE("smtp transport") {
    TEST_CASE("plain text session (tls=none): the server receives the rendered octets") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        auto m = make_message("ada@example.org");
        const auto expected = rendered(m, true);
        const auto r = send_one(ioc, *t, make_outbound(m));
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(r.out.provider_message_id == "TEST1");
        CHECK(r.out.diag.status == 250);
        CHECK(r.out.diag.provider_reply == "250 2.0.0 Ok: queued as TEST1");
        const auto msgs = server.messages();
        REQUIRE(msgs.size() == 1);
        CHECK(msgs[0] == expected);
        CHECK(server.envelope(1).find("\"rcpt_tos\": [\"ada@example.org\"]") != std::string::npos);
        CHECK(server.envelope(1).find("\"mail_from\": \"sender@example.com\"") !=
              std::string::npos);
        finish(ioc, t);
        CHECK(server.wait_count("CLOSE", 1));
    }

    TEST_CASE("dot-stuffing round trip, with and without pipelining") {
        REQUIRE_SMTP_SERVER();
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            smtp_server server({"--pipelining"});
            asio::io_context ioc;
            auto t = transport(
                ioc, server.url() + "?tls=none&pipelining=" + (pipelining ? "true" : "false"));
            // The MIME writer already protects leading dots in bodies (=2E), so
            // the lines that need stuffing here come from header names, which
            // RFC 5322 allows to start with '.'.
            const std::string text =
                ".starts with a dot\r\n.\r\n..\r\nmiddle\r\n. space\r\n...three\r\nend.\r\n.";
            auto m = make_message("ada@example.org", text);
            m.headers.push_back({".Dotted-Header", "one"});
            m.headers.push_back({"..Two-Dots", "two"});
            const auto expected = rendered(m, true);
            REQUIRE(expected.find("\r\n.Dotted-Header: one\r\n..Two-Dots: two\r\n") !=
                    std::string::npos);
            const auto r = send_one(ioc, *t, make_outbound(m));
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            const auto msgs = server.messages();
            REQUIRE(msgs.size() == 1);
            CHECK(msgs[0] == expected);
            // The body's lines starting with ".", "..", and the lone "." reach
            // the server as the text sent.
            const auto body_at = msgs[0].find("\r\n\r\n");
            REQUIRE(body_at != std::string::npos);
            const auto body = decode_quoted_printable(msgs[0].substr(body_at + 4));
            CHECK((body == text || body == text + "\r\n"));
            finish(ioc, t);
        }
    }

    TEST_CASE("pipelining: MAIL, RCPT and DATA go out in one write only when offered and allowed") {
        REQUIRE_SMTP_SERVER();
        struct variant {
            bool server_offers;
            bool allowed;
            bool expect_group;
        };
        for (const auto v : {variant{true, true, true}, variant{true, false, false},
                             variant{false, true, false}}) {
            CAPTURE(v.server_offers);
            CAPTURE(v.allowed);
            smtp_server server(v.server_offers ? std::vector<std::string>{"--pipelining"}
                                               : std::vector<std::string>{});
            asio::io_context ioc;
            auto lines = std::make_shared<std::vector<std::string>>();
            auto mu = std::make_shared<std::mutex>();
            auto t = transport(ioc, server.url() + "?tls=none", [&](mailers::smtp_params& p) {
                p.pipelining = v.allowed;
                p.log.level = mailers::log_level::trace;
                p.log.sink = [lines, mu](mailers::log_level, std::string_view s) {
                    std::lock_guard lk(*mu);
                    lines->emplace_back(s);
                };
            });
            auto o = make_outbound(make_message("ada@example.org"), {"bob@example.org"});
            const auto r = send_one(ioc, *t, o);
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            bool grouped = false;
            for (const auto& l : *lines)
                if (l.find("C: MAIL FROM:<sender@example.com>") != std::string::npos)
                    grouped =
                        l.find("RCPT TO:<ada@example.org>\r\nRCPT TO:<bob@example.org>\r\nDATA") !=
                        std::string::npos;
            CHECK(grouped == v.expect_group);
            CHECK(server.envelope(1).find("[\"ada@example.org\", \"bob@example.org\"]") !=
                  std::string::npos);
            finish(ioc, t);
        }
    }

    // Runs `tos.size()` sends at once over one connection and returns their
    // results in order, with the client's trace lines.
    struct pipelined_run {
        std::vector<result> results;
        std::vector<std::string> trace;
        mailers::smtp_stats stats;
    };
    pipelined_run send_all(smtp_server & server, const std::vector<std::string>& tos,
                           const std::string& options = "", const std::string& url = "",
                           const std::string& security = "tls=none") {
        asio::io_context ioc;
        auto lines = std::make_shared<std::vector<std::string>>();
        auto mu = std::make_shared<std::mutex>();
        auto t = transport(
            ioc,
            (url.empty() ? server.url() : url) + "?" + security + "&max_connections=1" + options,
            [&](mailers::smtp_params& p) {
                p.log.level = mailers::log_level::trace;
                p.log.sink = [lines, mu](mailers::log_level, std::string_view s) {
                    std::lock_guard lk(*mu);
                    lines->emplace_back(s);
                };
            });
        pipelined_run run;
        run.results.resize(tos.size());
        for (std::size_t i = 0; i < tos.size(); ++i)
            t->async_send(make_outbound(make_message(tos[i])),
                          [&run, i](error_code ec, send_outcome o) {
                              run.results[i] = {ec, std::move(o), true};
                          });
        run_until(ioc, [&] {
            return std::all_of(run.results.begin(), run.results.end(),
                               [](const result& r) { return r.done; });
        });
        run.stats = t->stats();
        finish(ioc, t);
        std::lock_guard lk(*mu);
        run.trace = *lines;
        return run;
    }

    std::size_t count_containing(const std::vector<std::string>& lines, std::string_view s) {
        return static_cast<std::size_t>(
            std::count_if(lines.begin(), lines.end(),
                          [&](const std::string& l) { return l.find(s) != std::string::npos; }));
    }

    TEST_CASE("pipelining across messages: the next MAIL, RCPT and DATA follow the final dot") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        std::vector<std::string> tos;
        for (int i = 0; i < 30; ++i) tos.push_back("r" + std::to_string(i) + "@example.org");
        const auto run = send_all(server, tos);
        for (const auto& r : run.results) REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        // One connection, and every message after the first was announced in
        // the same write as the previous message's end of data.
        CHECK(run.stats.connections_opened == 1);
        CHECK(count_containing(run.trace,
                               "C: (after the content) MAIL FROM:<sender@example.com>") == 29);
        // Each message arrived whole, in order, to its own recipient.
        const auto got = server.messages();
        REQUIRE(got.size() == 30);
        for (int i = 0; i < 30; ++i) {
            CAPTURE(i);
            CHECK(server.envelope(i + 1).find("[\"r" + std::to_string(i) + "@example.org\"]") !=
                  std::string::npos);
            CHECK(got[static_cast<std::size_t>(i)].find("To: r" + std::to_string(i) +
                                                        "@example.org") != std::string::npos);
            CHECK(got[static_cast<std::size_t>(i)].ends_with("Hello from mailers.\r\n"));
        }
    }

    TEST_CASE("pipelining across messages: never without PIPELINING, never past max_messages") {
        REQUIRE_SMTP_SERVER();
        std::vector<std::string> tos(7, "a@example.org");
        {
            smtp_server server({});  // offers no PIPELINING
            const auto run = send_all(server, tos);
            for (const auto& r : run.results) REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            CHECK(count_containing(run.trace, "(after the content)") == 0);
            CHECK(server.messages().size() == 7);
        }
        {
            smtp_server server({"--pipelining"});
            const auto run = send_all(server, tos, "&max_messages=3");
            for (const auto& r : run.results) REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            // Sessions of 3, 3 and 1 messages: 2 + 2 + 0 pipelined.
            CHECK(run.stats.connections_opened == 3);
            CHECK(count_containing(run.trace, "(after the content)") == 4);
            CHECK(server.messages().size() == 7);
        }
    }

    TEST_CASE("pipelining across messages: a refusal after the dot does not disturb the next") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        const auto run = send_all(server, {"a@example.org", "toobig@example.org", "b@example.org",
                                           "reject550@example.org", "c@example.org"});
        CHECK(!run.results[0].ec);
        CHECK(run.results[1].ec == failure::message_rejected);
        CHECK(!run.results[2].ec);
        CHECK(run.results[3].ec == failure::recipient_permanent);
        CHECK(!run.results[4].ec);
        CHECK(run.stats.connections_opened == 1);
        const auto got = server.messages();
        REQUIRE(got.size() == 3);
        CHECK(got[2].find("To: c@example.org") != std::string::npos);
    }

    TEST_CASE("pipelining across messages: a drop after the dot leaves only that one unknown") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        const auto run = send_all(server, {"a@example.org", "dropdata@example.org", "b@example.org",
                                           "throttle@example.org", "c@example.org"});
        CHECK(!run.results[0].ec);
        // The server took the content and dropped the connection before its
        // reply: unknown, never sent again.
        CHECK(run.results[1].ec == failure::unknown_outcome);
        // The message pipelined behind it had only its commands written, got
        // no reply, and goes out on a fresh connection.
        REQUIRE_MESSAGE(!run.results[2].ec, run.results[2].out.diag.message);
        CHECK(run.results[3].ec == failure::throttled);
        REQUIRE_MESSAGE(!run.results[4].ec, run.results[4].out.diag.message);
        const auto got = server.messages();
        REQUIRE(got.size() == 4);  // a, dropdata, b, c: each exactly once
        CHECK(got[2].find("To: b@example.org") != std::string::npos);
        CHECK(got[3].find("To: c@example.org") != std::string::npos);
        CHECK(run.stats.connections_opened == 3);
    }

    TEST_CASE("connection reuse: sequential sends share one session") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        for (int i = 0; i < 20; ++i) {
            const auto r = send_to(ioc, *t, "rcpt" + std::to_string(i) + "@example.org");
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        }
        CHECK(server.count("CONNECT") == 1);
        CHECK(server.count("DATA") == 20);
        CHECK(t->stats().connections_opened == 1);
        CHECK(t->stats().messages_accepted == 20);
        finish(ioc, t);
        CHECK(server.wait_count("CLOSE", 1));
    }

    TEST_CASE("connection reuse: sends awaited one after another share one connection") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        std::vector<error_code> codes;
        bool done = false;
        asio::co_spawn(
            ioc,
            [&]() -> asio::awaitable<void> {
                for (int i = 0; i < 5; ++i) {
                    // Each send starts as soon as the previous one completes,
                    // from the completion itself.
                    auto [ec, out] = co_await t->async_send(
                        make_outbound(make_message("rcpt" + std::to_string(i) + "@example.org")),
                        asio::as_tuple(asio::use_awaitable));
                    codes.push_back(ec);
                }
                done = true;
            },
            asio::detached);
        run_until(ioc, [&] { return done; });
        CHECK(codes == std::vector<error_code>(5));
        CHECK(server.count("CONNECT") == 1);
        CHECK(t->stats().connections_opened == 1);
        CHECK(server.messages().size() == 5);
        finish(ioc, t);
    }

    TEST_CASE("connection reuse: a send started from the previous one's handler reuses it") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        int completed = 0;
        std::function<void()> next = [&] {
            t->async_send(make_outbound(make_message("a@example.org")),
                          [&](error_code ec, send_outcome o) {
                              REQUIRE_MESSAGE(!ec, o.diag.message);
                              if (++completed < 5) next();
                          });
        };
        next();
        run_until(ioc, [&] { return completed == 5; });
        CHECK(server.count("CONNECT") == 1);
        CHECK(t->stats().connections_opened == 1);
        finish(ioc, t);
    }

    TEST_CASE("connection reuse: a connection is replaced after max_messages") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none&max_messages=2");
        for (int i = 0; i < 5; ++i) REQUIRE(!send_to(ioc, *t, "a@example.org").ec);
        CHECK(server.count("CONNECT") == 3);
        finish(ioc, t);
    }

    TEST_CASE("connection reuse: an idle connection the server closed is replaced silently") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining", "--idle-timeout", "0.4"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        REQUIRE(!send_to(ioc, *t, "a@example.org").ec);
        ioc.restart();
        ioc.run_for(1s);
        const auto r = send_to(ioc, *t, "b@example.org");
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(server.count("CONNECT") == 2);
        CHECK(server.messages().size() == 2);
        finish(ioc, t);
    }

    TEST_CASE("connection reuse: a connection idle past check_idle_after is checked with NOOP") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none",
                           [](mailers::smtp_params& p) { p.check_idle_after = 0ms; });
        for (int i = 0; i < 3; ++i) REQUIRE(!send_to(ioc, *t, "a@example.org").ec);
        CHECK(server.count("CONNECT") == 1);
        finish(ioc, t);
    }

    TEST_CASE("max_connections holds under concurrency, from several threads") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto guard = asio::make_work_guard(ioc);
        std::vector<std::thread> threads;
        for (int i = 0; i < 2; ++i) threads.emplace_back([&] { ioc.run(); });
        auto t = transport(ioc, server.url() + "?tls=none&max_connections=3");
        constexpr int n = 60;
        std::atomic<int> done{0}, ok{0};
        std::vector<std::thread> senders;
        for (int s = 0; s < 3; ++s)
            senders.emplace_back([&, s] {
                for (int i = 0; i < n / 3; ++i)
                    t->async_send(make_outbound(make_message("r" + std::to_string(s * 100 + i) +
                                                             "@example.org")),
                                  [&](error_code ec, send_outcome) {
                                      if (!ec) ++ok;
                                      ++done;
                                  });
            });
        for (auto& s : senders) s.join();
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (done < n && std::chrono::steady_clock::now() < deadline)
            std::this_thread::sleep_for(10ms);
        CHECK(done == n);
        CHECK(ok == n);
        CHECK(server.max_active() <= 3);
        CHECK(server.count("CONNECT") <= 3);
        CHECK(t->stats().connections_opened <= 3);
        CHECK(server.messages().size() == n);
        t.reset();
        guard.reset();
        for (auto& th : threads) th.join();
    }

    TEST_CASE("8BITMIME: 8-bit bodies go as 8bit when offered, quoted-printable otherwise") {
        REQUIRE_SMTP_SERVER();
        for (const bool offered : {true, false}) {
            CAPTURE(offered);
            smtp_server server(offered ? std::vector<std::string>{"--pipelining"}
                                       : std::vector<std::string>{"--pipelining", "--no-8bitmime"});
            asio::io_context ioc;
            auto t = transport(ioc, server.url() + "?tls=none");
            auto m = make_message("ada@example.org", "Grüße aus Köln, ça va? 日本語\r\n");
            const auto expected = rendered(m, offered);
            const auto r = send_one(ioc, *t, make_outbound(m));
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            const auto msgs = server.messages();
            REQUIRE(msgs.size() == 1);
            CHECK(msgs[0] == expected);
            CHECK((msgs[0].find("Grüße") != std::string::npos) == offered);
            const auto log = server.log();
            bool body8 = false;
            for (const auto& l : log)
                if (l.rfind("MAIL", 0) == 0 && l.find("BODY=8BITMIME") != std::string::npos)
                    body8 = true;
            CHECK(body8 == offered);
            finish(ioc, t);
        }
    }

    TEST_CASE("SMTPUTF8: a UTF-8 local part is sent when offered and refused clearly otherwise") {
        REQUIRE_SMTP_SERVER();
        {
            smtp_server server({"--pipelining", "--smtputf8"});
            asio::io_context ioc;
            auto t = transport(ioc, server.url() + "?tls=none");
            const auto r = send_to(ioc, *t, "josé@example.org");
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            bool utf8 = false;
            for (const auto& l : server.log())
                if (l.rfind("MAIL", 0) == 0 && l.find("SMTPUTF8") != std::string::npos) utf8 = true;
            CHECK(utf8);
            CHECK(server.envelope(1).find("jos\\u00e9@example.org") != std::string::npos);
            finish(ioc, t);
        }
        {
            smtp_server server({"--pipelining"});
            asio::io_context ioc;
            auto t = transport(ioc, server.url() + "?tls=none");
            const auto r = send_to(ioc, *t, "josé@example.org");
            CHECK(r.ec == transport_errc::content_rejected);
            CHECK(r.ec == failure::message_rejected);
            CHECK(r.out.diag.message.find("SMTPUTF8") != std::string::npos);
            CHECK(server.count("MAIL") == 0);
            // The connection is still good for the next message.
            CHECK(!send_to(ioc, *t, "ada@example.org").ec);
            CHECK(server.count("CONNECT") == 1);
            finish(ioc, t);
        }
    }

    TEST_CASE("an internationalised domain goes out as its A-label without SMTPUTF8") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        const auto r = send_to(ioc, *t, "ada@bücher.example");
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(server.envelope(1).find("ada@xn--bcher-kva.example") != std::string::npos);
        finish(ioc, t);
    }

    TEST_CASE("SIZE: a message above the server's limit is refused before MAIL") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining", "--size", "2000"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        const auto r = send_one(
            ioc, *t, make_outbound(make_message("a@example.org", std::string(5000, 'x') + "\r\n")));
        CHECK(r.ec == transport_errc::content_rejected);
        CHECK(r.out.diag.message.find("SIZE") != std::string::npos);
        CHECK(server.count("MAIL") == 0);
        const auto small = send_to(ioc, *t, "a@example.org");
        REQUIRE_MESSAGE(!small.ec, small.out.diag.message);
        bool declared = false;
        for (const auto& l : server.log())
            if (l.rfind("MAIL", 0) == 0 && l.find(" SIZE=") != std::string::npos) declared = true;
        CHECK(declared);
        finish(ioc, t);
    }

    TEST_CASE("HELO fallback when the server does not know EHLO") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--helo-only"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none&helo=client.example");
        const auto r = send_to(ioc, *t, "ada@example.org");
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(server.count("HELO 1 client.example") == 1);
        finish(ioc, t);
    }

    TEST_CASE("STARTTLS with AUTH PLAIN and AUTH LOGIN, verified against the test CA") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        REQUIRE(pki.ok);
        for (const std::string mech : {"plain", "login"}) {
            CAPTURE(mech);
            auto args = tls_server_args(pki.server_cert, pki.server_key);
            args.insert(args.end(),
                        {"--pipelining", "--user", "alice", "--password", "s3cret pass"});
            smtp_server server(args);
            asio::io_context ioc;
            auto t = transport(ioc, server.url("smtp", "alice:s3cret%20pass@") + "?auth=" + mech +
                                        "&" + ca_option());
            const auto r = send_to(ioc, *t, "ada@example.org");
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            CHECK(server.count("STARTTLS 1") == 1);
            CHECK(server.count("AUTH 1 " + std::string(mech == "plain" ? "PLAIN" : "LOGIN") +
                               " alice") == 1);
            CHECK(server.envelope(1).find("\"tls\": true") != std::string::npos);
            CHECK(server.envelope(1).find("\"auth\": \"alice\"") != std::string::npos);
            // A second message reuses the authenticated session.
            REQUIRE(!send_to(ioc, *t, "bob@example.org").ec);
            CHECK(server.count("CONNECT") == 1);
            finish(ioc, t);
        }
    }

    TEST_CASE("pipelining across messages over STARTTLS with AUTH") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        REQUIRE(pki.ok);
        auto args = tls_server_args(pki.server_cert, pki.server_key);
        args.insert(args.end(), {"--pipelining", "--user", "alice", "--password", "pw"});
        smtp_server server(args);
        std::vector<std::string> tos;
        for (int i = 0; i < 12; ++i) tos.push_back("t" + std::to_string(i) + "@example.org");
        const auto run = send_all(server, tos, "", server.url("smtp", "alice:pw@"), ca_option());
        for (const auto& r : run.results) REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(run.stats.connections_opened == 1);
        CHECK(count_containing(run.trace, "(after the content)") == 11);
        const auto got = server.messages();
        REQUIRE(got.size() == 12);
        for (int i = 0; i < 12; ++i) {
            CAPTURE(i);
            CHECK(server.envelope(i + 1).find("\"tls\": true") != std::string::npos);
            CHECK(got[static_cast<std::size_t>(i)].find("To: t" + std::to_string(i) +
                                                        "@example.org") != std::string::npos);
        }
    }

    TEST_CASE("STARTTLS to a host name: SNI and DNS-name verification") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        REQUIRE(pki.ok);
        auto args = tls_server_args(pki.server_cert, pki.server_key);
        args.push_back("--pipelining");
        smtp_server server(args);
        asio::io_context ioc;
        // localhost may resolve to ::1 first, where nothing listens: the next
        // address is tried.
        auto t =
            transport(ioc, "smtp://localhost:" + std::to_string(server.port()) + "?" + ca_option());
        const auto r = send_to(ioc, *t, "ada@example.org");
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(server.envelope(1).find("\"tls\": true") != std::string::npos);
        finish(ioc, t);
    }

    TEST_CASE("wrong password: an authentication failure, and the password is in no message") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        auto args = tls_server_args(pki.server_cert, pki.server_key);
        args.insert(args.end(), {"--user", "alice", "--password", "right"});
        smtp_server server(args);
        asio::io_context ioc;
        std::string logged;
        auto t =
            transport(ioc, server.url("smtp", "alice:Wr0ngPassw0rd@") + "?" + ca_option(),
                      [&](mailers::smtp_params& p) {
                          p.log.level = mailers::log_level::trace;
                          p.log.sink = [&](mailers::log_level, std::string_view s) { logged += s; };
                      });
        const auto r = send_to(ioc, *t, "ada@example.org");
        CAPTURE(r.out.diag.message);
        CHECK(r.ec == transport_errc::authentication_failed);
        CHECK(r.ec == failure::auth);
        CHECK(r.out.diag.status == 535);
        CHECK(r.out.diag.enhanced_status == "5.7.8");
        CHECK(r.out.diag.message.find("Wr0ngPassw0rd") == std::string::npos);
        CHECK(logged.find("Wr0ngPassw0rd") == std::string::npos);
        CHECK(logged.find("AUTH PLAIN") == std::string::npos);  // not even base64
        CHECK(server.count("MAIL") == 0);
        // The session ended politely: QUIT before the close.
        CHECK(server.wait_count("QUIT", 1));
        CHECK(server.wait_count("CLOSE", 1));
        CHECK(t->stats().connections_open == 0);
        finish(ioc, t);
    }

    TEST_CASE("check: STARTTLS, AUTH and QUIT, nothing sent; a wrong password fails as auth") {
        REQUIRE_SMTP_SERVER();
        smtp_server server(alice_tls_args());
        for (const std::string pw : {"right", "Wr0ngPassw0rd"}) {
            CAPTURE(pw);
            asio::io_context ioc;
            auto t = transport(ioc, server.url("smtp", "alice:" + pw + "@") + "?" + ca_option());
            const auto checked = check_of(ioc, *t);
            const auto& ec = checked.first;
            const auto& d = checked.second;
            CAPTURE(d.message);
            if (pw == "right") {
                CHECK_FALSE(ec);
                CHECK(d.message.find("session open, TLS, AUTH PLAIN accepted") !=
                      std::string::npos);
            } else {
                CHECK(ec == transport_errc::authentication_failed);
                CHECK(ec == failure::auth);
                CHECK(d.status == 535);
                CHECK(d.message.find("Wr0ngPassw0rd") == std::string::npos);
            }
            finish(ioc, t);
        }
        CHECK(server.count("MAIL") == 0);
        CHECK(server.wait_count("QUIT", 2));
        CHECK(server.messages().empty());
    }

    TEST_CASE("engine: a stored provider's check; a wrong password fails as auth, unnamed") {
        REQUIRE_SMTP_SERVER();
        smtp_server server(alice_tls_args());
        asio::io_context ioc;
        mailers::engine_params p;
        p.storage = mailers::open_sqlite_store({":memory:", mailers::open_mode::open_or_create});
        mailers::engine eng(ioc.get_executor(), std::move(p));
        const mailers::principal admin{"admin", "Admin"};
        const auto dsn = server.url("smtp", "alice:env:MAILERS_TEST_CHECK_PW@") + "?" + ca_option();
        for (const std::string pw : {"right", "Wr0ngPassw0rd"}) {
            CAPTURE(pw);
            // Saving builds the transport again, with the variable as it is now.
            ::setenv("MAILERS_TEST_CHECK_PW", pw.c_str(), 1);
            eng.save_provider(admin, "relay", dsn);
            std::optional<std::pair<error_code, mailers::provider_check>> out;
            eng.async_check_provider(admin, "relay", [&](error_code ec, mailers::provider_check r) {
                out.emplace(ec, std::move(r));
            });
            run_until(ioc, [&] { return out.has_value(); });
            const auto& [ec, r] = *out;
            CAPTURE(r.diag.message);
            CHECK(r.transport == "smtp");
            CHECK_FALSE(r.host_registered);
            if (pw == "right") {
                CHECK_FALSE(ec);
                CHECK(r.diag.message.find("AUTH PLAIN accepted") != std::string::npos);
            } else {
                CHECK(ec == failure::auth);
                CHECK(r.diag.status == 535);
                CHECK(r.diag.message.find("Wr0ngPassw0rd") == std::string::npos);
            }
        }
        ::unsetenv("MAILERS_TEST_CHECK_PW");
        CHECK(server.count("MAIL") == 0);
        CHECK(server.messages().empty());
    }

    TEST_CASE("check: a refused connection is a transient failure") {
        asio::io_context ioc;
        // Bound and never listened on: a connection to it is refused.
        asio::ip::tcp::socket holder(ioc);
        holder.open(asio::ip::tcp::v4());
        holder.bind({asio::ip::make_address("127.0.0.1"), 0});
        auto t =
            transport(ioc, "smtp://127.0.0.1:" + std::to_string(holder.local_endpoint().port()) +
                               "?tls=none");
        const auto checked = check_of(ioc, *t);
        const auto& ec = checked.first;
        const auto& d = checked.second;
        CAPTURE(d.message);
        CHECK(ec == transport_errc::connection_failed);
        CHECK(ec == failure::transient);
        finish(ioc, t);
    }

    TEST_CASE("XOAUTH2: static token, token callback, and a refused token") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        auto args = tls_server_args(pki.server_cert, pki.server_key);
        args.insert(args.end(), {"--pipelining", "--user", "rep1@brand.com", "--xoauth2-token",
                                 "ya29.token-123"});
        smtp_server server(args);
        {
            asio::io_context ioc;
            auto t = transport(ioc, server.url("smtp", "rep1%40brand.com:ya29.token-123@") +
                                        "?auth=xoauth2&" + ca_option());
            const auto r = send_to(ioc, *t, "ada@example.org");
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            CHECK(server.count("AUTH 1 XOAUTH2 rep1@brand.com") == 1);
            finish(ioc, t);
        }
        {
            asio::io_context ioc;
            int calls = 0;
            auto t = transport(ioc, server.url() + "?" + ca_option(), [&](mailers::smtp_params& p) {
                p.username = "rep1@brand.com";
                p.token_callback = [&](auto done) {
                    ++calls;
                    std::thread([done] { done({}, mailers::secret("ya29.token-123")); }).detach();
                };
            });
            const auto r = send_to(ioc, *t, "ada@example.org");
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            CHECK(calls == 1);
            finish(ioc, t);
        }
        {
            asio::io_context ioc;
            auto t = transport(ioc, server.url("smtp", "rep1%40brand.com@") +
                                        "?auth=xoauth2&token=expired-token&" + ca_option());
            const auto r = send_to(ioc, *t, "ada@example.org");
            CHECK(r.ec == transport_errc::authentication_failed);
            CHECK(r.out.diag.status == 535);
            CHECK(r.out.diag.message.find("\"status\": \"401\"") != std::string::npos);
            CHECK(r.out.diag.message.find("expired-token") == std::string::npos);
            finish(ioc, t);
        }
    }

    TEST_CASE("implicit TLS (smtps) with AUTH") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        auto args = tls_server_args(pki.server_cert, pki.server_key);
        args.insert(args.end(),
                    {"--implicit-tls", "--pipelining", "--user", "alice", "--password", "pw"});
        smtp_server server(args);
        asio::io_context ioc;
        auto t = transport(ioc, server.url("smtps", "alice:pw@") + "?" + ca_option());
        CHECK(t->params().tls == mailers::smtp_tls::implicit);
        const auto r = send_to(ioc, *t, "ada@example.org");
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(server.count("STARTTLS") == 0);
        CHECK(server.envelope(1).find("\"tls\": true") != std::string::npos);
        CHECK(server.envelope(1).find("\"auth\": \"alice\"") != std::string::npos);
        finish(ioc, t);
    }

    TEST_CASE("STARTTLS required but not offered: refused, nothing sent") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url());
        const auto r = send_to(ioc, *t, "ada@example.org");
        CHECK(r.ec == transport_errc::configuration);
        CHECK(r.ec == failure::auth);
        CHECK(r.out.diag.message.find("STARTTLS") != std::string::npos);
        CHECK(server.count("MAIL") == 0);
        CHECK(server.messages().empty());
        CHECK(server.wait_count("QUIT", 1));
        CHECK(server.wait_count("CLOSE", 1));
        finish(ioc, t);
    }

    TEST_CASE("tls=opportunistic: clear text when STARTTLS is missing, but never credentials") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        {
            asio::io_context ioc;
            auto t = transport(ioc, server.url() + "?tls=opportunistic");
            const auto r = send_to(ioc, *t, "ada@example.org");
            REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
            finish(ioc, t);
        }
        {
            asio::io_context ioc;
            auto t = transport(ioc, server.url("smtp", "alice:pw@") + "?tls=opportunistic");
            const auto r = send_to(ioc, *t, "ada@example.org");
            CHECK(r.ec == transport_errc::configuration);
            CHECK(r.out.diag.message.find("clear text") != std::string::npos);
            finish(ioc, t);
        }
        CHECK(server.messages().size() == 1);
    }

    TEST_CASE("a certificate that does not verify fails unless verification is off") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        REQUIRE(pki.ok);
        struct variant {
            fs::path cert, key;
            std::string why;
        };
        for (const auto& v : {variant{pki.wrong_cert, pki.wrong_key, "self-signed"},
                              variant{pki.mismatch_cert, pki.mismatch_key, "mismatch"}}) {
            CAPTURE(v.why);
            auto args = tls_server_args(v.cert, v.key);
            args.push_back("--pipelining");
            smtp_server server(args);
            {
                asio::io_context ioc;
                auto t = transport(ioc, server.url() + "?" + ca_option());
                const auto r = send_to(ioc, *t, "ada@example.org");
                CHECK(r.ec == transport_errc::tls_verification_failed);
                CHECK(r.ec == failure::auth);
                CHECK(r.out.diag.message.find(v.why) != std::string::npos);
                CHECK(server.count("MAIL") == 0);
                finish(ioc, t);
            }
            {
                asio::io_context ioc;
                auto t = transport(ioc, server.url() + "?verify=false");
                const auto r = send_to(ioc, *t, "ada@example.org");
                REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
                finish(ioc, t);
            }
        }
    }

    TEST_CASE("the system CA store is the default trust: the test CA is not in it") {
        REQUIRE_SMTP_SERVER();
        const auto& pki = certificates();
        auto args = tls_server_args(pki.server_cert, pki.server_key);
        smtp_server server(args);
        asio::io_context ioc;
        auto t = transport(ioc, server.url());
        const auto r = send_to(ioc, *t, "ada@example.org");
        CHECK(r.ec == transport_errc::tls_verification_failed);
        finish(ioc, t);
    }

    TEST_CASE("rejections are classified, carry diagnostics, and keep the connection") {
        REQUIRE_SMTP_SERVER();
        struct expectation {
            std::string to;
            failure cls;
            transport_errc code;
            int status;
            std::string enhanced;
        };
        const std::vector<expectation> table{
            {"reject550@example.org", failure::recipient_permanent,
             transport_errc::recipient_rejected, 550, "5.1.1"},
            {"quota@example.org", failure::quota_exhausted, transport_errc::sender_quota_exhausted,
             550, "5.4.5"},
            {"unauth@example.org", failure::auth, transport_errc::authentication_failed, 550,
             "5.7.26"},
            {"blocked@example.org", failure::reputation, transport_errc::sender_reputation, 554,
             "5.7.1"},
            {"tenant@example.org", failure::quota_exhausted, transport_errc::sender_quota_exhausted,
             550, "5.7.233"},
            {"code-451-4.7.500@example.org", failure::throttled, transport_errc::rate_limited, 451,
             "4.7.500"},
            {"code-450-4.2.1@example.org", failure::transient, transport_errc::temporary_reply, 450,
             "4.2.1"},
            // Greylisting: a temporary failure of this message, not a rate limit.
            {"code-451-4.7.1@example.org", failure::transient, transport_errc::temporary_reply, 451,
             "4.7.1"},
            {"code-450-4.7.1@example.org", failure::transient, transport_errc::temporary_reply, 450,
             "4.7.1"},
            // A policy refusal of this message: its permanent failure only.
            {"code-554-5.7.1@example.org", failure::message_rejected,
             transport_errc::content_rejected, 554, "5.7.1"},
            {"code-550-5.7.515@example.org", failure::auth, transport_errc::authentication_failed,
             550, "5.7.515"},
            {"code-452-4.2.2@example.org", failure::transient, transport_errc::temporary_reply, 452,
             "4.2.2"},
            {"code-550-5.2.1@example.org", failure::recipient_permanent,
             transport_errc::recipient_rejected, 550, "5.2.1"},
            {"toobig@example.org", failure::message_rejected, transport_errc::content_rejected, 552,
             "5.3.4"},
        };
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            smtp_server server({"--pipelining"});
            asio::io_context ioc;
            auto t = transport(
                ioc, server.url() + "?tls=none&pipelining=" + (pipelining ? "true" : "false"));
            for (const auto& e : table) {
                CAPTURE(e.to);
                const auto r = send_to(ioc, *t, e.to);
                CHECK(r.ec == e.cls);
                CHECK(r.ec == e.code);
                CHECK(r.out.diag.status == e.status);
                CHECK(r.out.diag.enhanced_status == e.enhanced);
                CHECK(r.out.diag.provider_reply.rfind(std::to_string(e.status) + " " + e.enhanced,
                                                      0) == 0);
                if (e.to.rfind("toobig", 0) != 0)
                    CHECK(r.out.diag.message.find(e.to) != std::string::npos);
            }
            // RSET after each refusal kept the one session usable.
            const auto ok = send_to(ioc, *t, "ada@example.org");
            REQUIRE_MESSAGE(!ok.ec, ok.out.diag.message);
            CHECK(server.count("CONNECT") == 1);
            CHECK(server.messages().size() == 1);
            finish(ioc, t);
        }
    }

    TEST_CASE("421 throttling closes the session; the next send opens a new one") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        const auto r = send_to(ioc, *t, "throttle@example.org");
        CHECK(r.ec == failure::throttled);
        CHECK(r.out.diag.status == 421);
        CHECK(r.out.diag.enhanced_status == "4.7.0");
        const auto ok = send_to(ioc, *t, "ada@example.org");
        REQUIRE_MESSAGE(!ok.ec, ok.out.diag.message);
        CHECK(server.count("CONNECT") == 2);
        finish(ioc, t);
    }

    TEST_CASE("sender refusals at MAIL FROM") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        auto m = make_message("ada@example.org");
        m.from = {"quota", "example.com", ""};
        auto r = send_one(ioc, *t, make_outbound(m));
        CHECK(r.ec == failure::quota_exhausted);
        CHECK(r.out.diag.enhanced_status == "5.4.5");
        m.from = {"badsender", "example.com", ""};
        r = send_one(ioc, *t, make_outbound(m));
        CHECK(r.ec == transport_errc::configuration);
        CHECK(r.out.diag.status == 553);
        CHECK(server.messages().empty());
        finish(ioc, t);
    }

    TEST_CASE("some recipients refused: delivered to the others, the refusals reported") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        auto o = make_outbound(make_message("ada@example.org"), {"reject550@example.org"});
        const auto r = send_one(ioc, *t, o);
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        CHECK(r.out.diag.message.find("1 of 2") != std::string::npos);
        CHECK(r.out.diag.message.find("reject550@example.org") != std::string::npos);
        CHECK(server.envelope(1).find("[\"ada@example.org\"]") != std::string::npos);
        finish(ioc, t);
    }

    TEST_CASE("connection dropped after the content was sent: outcome unknown, never transient") {
        REQUIRE_SMTP_SERVER();
        for (const bool pipelining : {true, false}) {
            CAPTURE(pipelining);
            smtp_server server({"--pipelining"});
            asio::io_context ioc;
            auto t = transport(
                ioc, server.url() + "?tls=none&pipelining=" + (pipelining ? "true" : "false"));
            const auto r = send_to(ioc, *t, "dropdata@example.org");
            CHECK(r.ec == transport_errc::outcome_unknown);
            CHECK(r.ec == failure::unknown_outcome);
            CHECK(r.ec != failure::transient);
            CHECK(r.out.diag.message.find("must not be sent again") != std::string::npos);
            // Which is exactly why: the server has the message.
            CHECK(server.messages().size() == 1);
            CHECK(server.count("CONNECT") == 1);  // and it was not retried elsewhere
            finish(ioc, t);
        }
    }

    TEST_CASE("no reply to the final dot within data_end: outcome unknown") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining", "--slow", "3"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none",
                           [](mailers::smtp_params& p) { p.timeouts.data_end = 500ms; });
        const auto r = send_to(ioc, *t, "slowdata@example.org");
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(r.out.diag.message.find("timed out") != std::string::npos);
        finish(ioc, t);
    }

    TEST_CASE("a reply to the final dot that neither accepts nor refuses: outcome unknown") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        const auto r = send_to(ioc, *t, "noverdict@example.org");
        CHECK(r.ec == transport_errc::outcome_unknown);
        CHECK(r.ec == failure::unknown_outcome);
        CHECK_FALSE(mailers::may_retry(r.ec));
        CHECK(r.out.diag.status == 354);
        CHECK(server.messages().size() == 1);
        // The session is not trusted again: the next send opens a fresh one.
        const auto next = send_to(ioc, *t, "ada@example.org");
        REQUIRE_MESSAGE(!next.ec, next.out.diag.message);
        CHECK(server.count("CONNECT") == 2);
        finish(ioc, t);
    }

    TEST_CASE("a failing XOAUTH2 token callback: nothing sent, and the send may go elsewhere") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        struct row {
            error_code from_callback;
            error_code expected;
        };
        const row rows[] = {
            // Whatever the callback's own code, no connection was even opened.
            {boost::system::errc::make_error_code(boost::system::errc::io_error),
             make_error_code(transport_errc::connection_failed)},
            {asio::error::connection_reset, make_error_code(transport_errc::connection_failed)},
            {make_error_code(transport_errc::outcome_unknown),
             make_error_code(transport_errc::connection_failed)},
            // A code that already says what went wrong keeps its meaning.
            {make_error_code(transport_errc::authentication_failed),
             make_error_code(transport_errc::authentication_failed)},
        };
        for (const auto& c : rows) {
            CAPTURE(c.from_callback.message());
            asio::io_context ioc;
            auto t = transport(ioc, server.url() + "?tls=none", [&](mailers::smtp_params& p) {
                p.username = "rep1@brand.com";
                p.token_callback = [ec = c.from_callback](auto done) { done(ec, {}); };
            });
            const auto r = send_to(ioc, *t, "ada@example.org");
            CHECK(r.ec == c.expected);
            CHECK(mailers::may_retry(r.ec));
            CHECK(r.out.diag.message.find("token callback") != std::string::npos);
            finish(ioc, t);
        }
        CHECK(server.count("CONNECT") == 0);
    }

    TEST_CASE("connection dropped before DATA: transient, nothing delivered") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        const auto r = send_to(ioc, *t, "dropbeforedata@example.org");
        CHECK(r.ec == transport_errc::connection_failed);
        CHECK(r.ec == failure::transient);
        CHECK(server.messages().empty());
        finish(ioc, t);
    }

    TEST_CASE("a peer that does not speak SMTP: a protocol error, nothing delivered") {
        struct variant {
            const char* name;
            std::string first;
            std::string after_ehlo;
            std::string shown;
        };
        const std::vector<variant> variants{
            {"an HTTP server answering at once",
             "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", "",
             "HTTP/1.1 400 Bad Request"},
            // No line end, and the peer keeps the connection open: what came
            // is enough to know.
            {"an HTTP status line without its end", "HTTP/1.1 400 Bad Request", "",
             "HTTP/1.1 400 Bad Request"},
            {"garbage after a valid greeting", "220 almost smtp\r\n",
             std::string("\x16\x03\x01\x00garbage\r\n", 13), "????garbage"},
        };
        for (const auto& v : variants) {
            CAPTURE(v.name);
            scripted_peer peer(v.first, v.after_ehlo);
            asio::io_context ioc;
            auto t = transport(ioc, peer.url() + "?tls=none");
            const auto r = send_to(ioc, *t, "ada@example.org");
            CAPTURE(r.out.diag.message);
            CHECK(r.ec == transport_errc::protocol_error);
            CHECK(r.ec != transport_errc::connection_failed);
            CHECK(r.ec == failure::transient);  // the message did not leave
            CHECK(mailers::may_retry(r.ec));
            CHECK(r.out.diag.message.find("does not speak SMTP") != std::string::npos);
            CHECK(r.out.diag.message.find(v.shown) != std::string::npos);
            CHECK(t->stats().messages_failed == 1);
            finish(ioc, t);
            CHECK(peer.received().find("MAIL FROM") == std::string::npos);
        }
    }

    TEST_CASE("timeouts set in the DSN apply: a greeting that never comes") {
        // Nobody accepts: the greeting never comes.
        std::uint16_t port = 0;
        const int fd = listen_on_loopback(port);
        const auto base = "smtp://127.0.0.1:" + std::to_string(port) + "?tls=none";
        for (const auto& [query, shown] : std::vector<std::pair<std::string, std::string>>{
                 {"&greeting_timeout=300ms", "300 ms"}, {"&timeout=1s", "1 s"}}) {
            CAPTURE(query);
            asio::io_context ioc;
            mailers::diagnostics diag;
            auto made = mailers::make_smtp_transport(ioc.get_executor(), base + query, &diag);
            REQUIRE_MESSAGE(made.has_value(), diag.message);
            auto t = std::move(*made);
            const auto r = send_to(ioc, *t, "ada@example.org");
            CHECK(r.ec == transport_errc::timeout_before_send);
            CHECK(r.out.diag.message.find("timed out after " + shown) != std::string::npos);
            t.reset();
            ioc.restart();
            ioc.run_for(1s);
        }
        ::close(fd);
    }

    TEST_CASE("greeting timeout and refused connections are transient") {
        // Nobody accepts: the greeting never comes.
        std::uint16_t port_number = 0;
        const int fd = listen_on_loopback(port_number);
        const auto port = std::to_string(port_number);
        {
            asio::io_context ioc;
            auto t = transport(ioc, "smtp://127.0.0.1:" + port + "?tls=none",
                               [](mailers::smtp_params& p) { p.timeouts.greeting = 300ms; });
            const auto start = std::chrono::steady_clock::now();
            const auto r = send_to(ioc, *t, "ada@example.org");
            CHECK(r.ec == transport_errc::timeout_before_send);
            CHECK(r.ec == failure::transient);
            CHECK(r.out.diag.message.find("greeting") != std::string::npos);
            CHECK(std::chrono::steady_clock::now() - start < 5s);
            finish(ioc, t);
        }
        ::close(fd);
        {
            // The same port, now closed: connection refused.
            asio::io_context ioc;
            auto t = transport(ioc, "smtp://127.0.0.1:" + port + "?tls=none");
            const auto r = send_to(ioc, *t, "ada@example.org");
            CHECK(r.ec == transport_errc::connection_failed);
            CHECK(r.ec == failure::transient);
            finish(ioc, t);
        }
    }

    TEST_CASE("destroying the transport fails sends still waiting for a connection") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining", "--slow", "1"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none&max_connections=1");
        std::vector<result> results(3);
        t->async_send(make_outbound(make_message("slowdata@example.org")),
                      [&](error_code ec, send_outcome o) {
                          results[0] = {ec, std::move(o), true};
                      });
        for (int i = 1; i < 3; ++i)
            t->async_send(make_outbound(make_message("a@example.org")),
                          [&, i](error_code ec, send_outcome o) {
                              results[static_cast<std::size_t>(i)] = {ec, std::move(o), true};
                          });
        ioc.restart();
        ioc.run_for(300ms);
        // Destroyed from a handler on the io_context's thread, where a
        // completion could run at once: the aborted send's handler must still
        // not run inside the destructor, whose caller may hold a lock the
        // handler takes.
        bool aborted_inside = true;
        asio::post(ioc, [&] {
            t.reset();
            aborted_inside = results[2].done;
        });
        run_until(ioc, [&] { return !t; });
        CHECK_FALSE(aborted_inside);
        run_until(ioc, [&] { return results[0].done && results[1].done && results[2].done; });
        CHECK(!results[0].ec);
        // The second send was pipelined behind the first (its MAIL, RCPT and
        // DATA went out with the first one's content), so it was already on
        // the connection and finishes; the third was still waiting.
        CHECK(!results[1].ec);
        CHECK(results[2].ec == mailers::errc::operation_aborted);
        ioc.restart();
        ioc.run_for(2s);
    }

    TEST_CASE("a handler that throws: the exception leaves run(), every other send completes") {
        // Completions from I/O run at once inside the pool's worker; a
        // throwing handler must not end the worker or lose the send
        // pipelined behind its own.
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none&max_connections=1");
        constexpr int n = 6;
        std::vector<int> calls(n, 0);
        std::vector<error_code> ecs(n);
        for (int i = 0; i < n; ++i)
            t->async_send(make_outbound(make_message("r" + std::to_string(i) + "@example.org")),
                          [&, i](error_code ec, send_outcome) {
                              ++calls[static_cast<std::size_t>(i)];
                              ecs[static_cast<std::size_t>(i)] = ec;
                              if (i % 2 == 0) throw std::runtime_error("handler failed");
                          });
        int thrown = 0;
        const auto run_a_while = [&](std::chrono::milliseconds d) {
            try {
                ioc.restart();
                ioc.run_for(d);
            } catch (const std::runtime_error&) {
                ++thrown;
            }
        };
        const auto deadline = std::chrono::steady_clock::now() + 60s;
        while (std::count(calls.begin(), calls.end(), 1) < n &&
               std::chrono::steady_clock::now() < deadline)
            run_a_while(50ms);
        for (int i = 0; i < 4; ++i) run_a_while(50ms);
        CHECK(calls == std::vector<int>(n, 1));
        for (const auto& ec : ecs) CHECK_MESSAGE(!ec, ec.message());
        CHECK(thrown == n / 2);
        // The pool's one connection slot was handed back each time.
        CHECK(!send_to(ioc, *t, "after@example.org").ec);
    }

    TEST_CASE("throughput sanity: pipelined sends over reused connections") {
        REQUIRE_SMTP_SERVER();
        struct variant {
            std::string name;
            std::vector<std::string> args;
        };
        // aiosmtpd answers each command with its own write and is the bottleneck;
        // the sink answers a whole pipelined group at once, like postfix's
        // smtp-sink, so its figure is closer to the client's own cost.
        for (const auto& v : {variant{"aiosmtpd", {"--pipelining"}}, variant{"sink", {"--sink"}}}) {
            smtp_server server(v.args);
            asio::io_context ioc;
            auto t = transport(ioc, server.url() + "?tls=none&max_connections=4&max_messages=0");
            const int n = v.name == "sink" ? 3000 : 1000;
            std::vector<std::shared_ptr<const outbound>> msgs;
            for (int i = 0; i < n; ++i)
                msgs.push_back(make_outbound(make_message("r" + std::to_string(i) + "@example.org",
                                                          std::string(1000, 'a') + "\r\n")));
            std::atomic<int> done{0}, ok{0};
            for (int i = 0; i < 8; ++i)  // warm up: open the connections
                t->async_send(msgs[static_cast<std::size_t>(i)], [&](error_code ec, send_outcome) {
                    ok += !ec;
                    ++done;
                });
            run_until(ioc, [&] { return done == 8; });
            done = 0;
            ok = 0;
            rusage before{}, after{};
            ::getrusage(RUSAGE_SELF, &before);
            const auto start = std::chrono::steady_clock::now();
            for (const auto& m : msgs)
                t->async_send(m, [&](error_code ec, send_outcome) {
                    ok += !ec;
                    ++done;
                });
            run_until(
                ioc, [&] { return done == n; }, 120s);
            const auto wall =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            ::getrusage(RUSAGE_SELF, &after);
            const auto cpu_us = [](const rusage& r) {
                return (r.ru_utime.tv_sec + r.ru_stime.tv_sec) * 1e6 + r.ru_utime.tv_usec +
                       r.ru_stime.tv_usec;
            };
            CHECK(ok == n);
            MESSAGE("SMTP into " << v.name << " (4 connections, PIPELINING, 1 KiB text): "
                                 << static_cast<int>(n / wall) << " msg/s, client CPU "
                                 << static_cast<int>((cpu_us(after) - cpu_us(before)) / n)
                                 << " us/message");
            CHECK(server.count("CONNECT") <= 4);
            finish(ioc, t);
        }
    }

    TEST_CASE(
        "pre-rendered bytes go out as given, dot-stuffed; bare CR or LF refused before MAIL") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        const std::string raw =
            "From: Sender <sender@example.com>\r\nTo: ada@example.org\r\n"
            "Message-ID: <raw-1@example.com>\r\nSubject: rendered elsewhere\r\n\r\n"
            ".leading dot\r\n..two dots\r\n.\r\nlast line";
        auto o = std::make_shared<outbound>(*make_outbound(make_message("ada@example.org")));
        o->env.rcpt_to.push_back("bob@example.org");
        o->raw = raw;
        const auto r = send_one(ioc, *t, o);
        REQUIRE_MESSAGE(!r.ec, r.out.diag.message);
        const auto msgs = server.messages();
        REQUIRE(msgs.size() == 1);
        CHECK((msgs[0] == raw || msgs[0] == raw + "\r\n"));
        CHECK(server.envelope(1).find("[\"ada@example.org\", \"bob@example.org\"]") !=
              std::string::npos);

        for (const std::string bad : {"From: sender@example.com\nSubject: x\n\nbody\n",
                                      "From: sender@example.com\r\n\r\nbo\rdy\r\n"}) {
            auto b = std::make_shared<outbound>(*o);
            b->raw = bad;
            const auto refused = send_one(ioc, *t, b);
            CHECK(refused.ec == mailers::errc::invalid_argument);
            CHECK(refused.out.diag.message.find("CRLF") != std::string::npos);
        }
        CHECK(server.count("MAIL") == 1);
        finish(ioc, t);
    }

    TEST_CASE("pre-rendered bytes with an 8-bit body need 8BITMIME") {
        REQUIRE_SMTP_SERVER();
        smtp_server server({"--pipelining", "--no-8bitmime"});
        asio::io_context ioc;
        auto t = transport(ioc, server.url() + "?tls=none");
        auto o = std::make_shared<outbound>(*make_outbound(make_message("ada@example.org")));
        o->raw =
            "From: sender@example.com\r\nMessage-ID: <r@example.com>\r\n\r\nGr\xc3\xbc\xc3\x9f"
            "e\r\n";
        const auto r = send_one(ioc, *t, o);
        CHECK(r.ec == transport_errc::content_rejected);
        CHECK(r.out.diag.message.find("8BITMIME") != std::string::npos);
        CHECK(server.count("MAIL") == 0);
        finish(ioc, t);
    }

}  // TEST_SUITE
