// Provider webhook ingest over loopback HTTP: events per second that the
// webhook_server component takes in, verifies, parses, de-duplicates and
// applies through engine::apply_webhook, against the ceiling of `wrk`
// posting the same requests to a server that does no work, in the same run.
//
//   ingest_bench [--sends N] [--batch B] [--mailgun M] [--connections C]
//                [--threads T] [--pg CONNINFO [--schema NAME]] [--replay memory|store]
//                [--wrk-seconds S] [--fixtures DIR]
//
// Per store (an SQLite file; PostgreSQL too with --pg or MAILERS_BENCH_PG):
// an engine sends N + M messages through a null transport, so the ledger
// holds the sends the events name. SendGrid signed event webhook batches of
// B events (built from the published sample batch in the shared fixtures,
// with the send's `mailers_send_id` custom argument) report what became of
// the N sends: every send processed, then delivered (some deferred first),
// hard-bounced (2%), blocked (1%) or dropped (1%); 40% opened, 10% clicked,
// 0.5% unsubscribed, 0.1% spam reports, in time order, so that a batch
// names B different sends. Then one signed Mailgun request per event for
// the M sends (delivered, 2% failed permanently). C keep-alive connections
// post them; the server and the engine run on T threads; every request must
// be answered 200, every event applied once and every bounce, complaint
// and unsubscribe suppressed.
//
// The ceiling: `wrk -t1 -cC` posting one of the SendGrid batches (and one
// Mailgun request) to a server on T threads that reads each request and
// answers 200. Then parse-only throughput: parse_webhook on the SendGrid
// batches, with and without the signature check, beside simdjson parsing
// them alone.
#include <fmt/format.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <simdjson.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mailers.hpp>
#include <mailers/store_replay_cache.hpp>
#include <mailers/webhook_server.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_store.hpp"
#include "bench_support.hpp"
#include "bench_workspace.hpp"
#include "http_sink.hpp"
#include "webhooks/crypto.hpp"

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

[[noreturn]] void die(const std::string& why) {
    std::fprintf(stderr, "ingest_bench: %s\n", why.c_str());
    std::exit(1);
}

struct options {
    std::size_t sends = 40000;   // sends the SendGrid batches report on
    std::size_t batch = 100;     // events per SendGrid request
    std::size_t mailgun = 5000;  // sends with one Mailgun request each
    std::size_t connections = 8;
    unsigned threads = 2;
    std::string replay = "memory";
    int wrk_seconds = 5;
    std::string fixtures = MAILERS_SHARED_FIXTURES;
    bench::store_choice pg;
};

// --- signing keys, as the providers hold theirs -----------------------------

struct sendgrid_key {
    EVP_PKEY* key = EVP_EC_gen("P-256");
    sendgrid_key() {
        if (!key) die("could not make an ECDSA P-256 key");
    }
    ~sendgrid_key() { EVP_PKEY_free(key); }
    sendgrid_key(const sendgrid_key&) = delete;
    sendgrid_key& operator=(const sendgrid_key&) = delete;

    // Base64 DER SubjectPublicKeyInfo, as SendGrid shows it.
    std::string public_key() const {
        unsigned char* der = nullptr;
        const int n = i2d_PUBKEY(key, &der);
        if (n <= 0) die("could not encode the public key");
        std::string out(reinterpret_cast<char*>(der), static_cast<std::size_t>(n));
        OPENSSL_free(der);
        return mailers::webhooks::base64_encode(out);
    }
    // Base64 DER ECDSA-SHA256 signature over timestamp + body.
    std::string sign(std::string_view timestamp, std::string_view body) const {
        const std::string data = std::string(timestamp) + std::string(body);
        EVP_MD_CTX* ctx = EVP_MD_CTX_new();
        std::size_t len = 0;
        std::string sig;
        if (EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(data.data()),
                           data.size()) == 1) {
            sig.resize(len);
            if (EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                               reinterpret_cast<const unsigned char*>(data.data()),
                               data.size()) != 1)
                sig.clear();
            sig.resize(len);
        }
        EVP_MD_CTX_free(ctx);
        if (sig.empty()) die("could not sign a SendGrid batch");
        return mailers::webhooks::base64_encode(sig);
    }
};

const std::string mailgun_signing_key = "key-ingest-bench-0123456789abcdef";

// --- request bodies from the published samples -------------------------------

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in)
        die("cannot read " + p.string() +
            " (the shared fixtures; --fixtures DIR names their folder)");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
}

// Replaces the value of the first "key": at or after `from` in minified
// JSON `text` with `value` (JSON text); returns where the value ended.
std::size_t set_value(std::string& text, std::string_view key, std::string_view value,
                      std::size_t from = 0) {
    const std::string k = "\"" + std::string(key) + "\":";
    const auto at = text.find(k, from);
    if (at == std::string::npos) die("the fixture has no \"" + std::string(key) + "\"");
    const auto start = at + k.size();
    std::size_t end = start;
    if (text[start] == '"') {
        end = start + 1;
        while (text[end] != '"') end += text[end] == '\\' ? 2 : 1;
        ++end;
    } else if (text[start] == '{') {
        end = text.find('}', start) + 1;  // the templates' objects here are flat
    } else {
        end = text.find_first_of(",}", start);
    }
    text.replace(start, end - start, value);
    return start + value.size();
}

std::string json_string(std::string_view s) {
    return "\"" + std::string(s) + "\"";
}

// SendGrid's sample batch, one minified element per event name.
std::map<std::string, std::string> sendgrid_templates(const std::string& dir) {
    const auto text = read_file(std::filesystem::path(dir) / "webhooks" / "sendgrid" /
                                "docs-batch-all-event-types.json");
    simdjson::dom::parser parser;
    simdjson::dom::array batch;
    if (parser.parse(text).get(batch) != simdjson::SUCCESS) die("the SendGrid sample is not JSON");
    std::map<std::string, std::string> out;
    for (auto element : batch) {
        std::string_view name;
        if (element["event"].get(name) == simdjson::SUCCESS)
            out.emplace(name, simdjson::minify(element));
    }
    for (auto name : {"processed", "deferred", "delivered", "open", "click", "bounce", "dropped",
                      "spamreport", "unsubscribe"})
        if (!out.count(name)) die(std::string("the SendGrid sample has no ") + name + " event");
    return out;
}

struct send_info {
    std::string id;         // ledger id
    std::string recipient;  // as sent
};

std::string sendgrid_event(const std::string& tmpl, const send_info& s, std::size_t seq,
                           std::int64_t ts, bool blocked) {
    std::string e = tmpl;
    set_value(e, "email", json_string(s.recipient));
    set_value(e, "timestamp", std::to_string(ts));
    set_value(e, "sg_event_id", json_string("ev" + std::to_string(seq) + "-ingest-bench"));
    set_value(e, "sg_message_id", json_string("msg" + s.id + ".filter0001.ingest-bench"));
    std::string extra = "\"mailers_send_id\":" + json_string(s.id) + ",";
    if (blocked) extra += "\"type\":\"blocked\",";
    e.insert(1, extra);
    return e;
}

// What SendGrid reports about send `i`, in time order (index = round).
std::vector<std::vector<std::pair<std::string, bool>>> sendgrid_story(std::size_t i) {
    std::vector<std::vector<std::pair<std::string, bool>>> rounds(4);
    rounds[0].push_back({"processed", false});
    if (i % 50 == 0) {
        rounds[1].push_back({"bounce", false});
        return rounds;
    }
    if (i % 100 == 1) {
        rounds[1].push_back({"bounce", true});
        return rounds;
    }
    if (i % 100 == 2) {
        rounds[1].push_back({"dropped", false});
        return rounds;
    }
    if (i % 33 == 0) rounds[1].push_back({"deferred", false});
    rounds[1].push_back({"delivered", false});
    if (i % 5 < 2) rounds[2].push_back({"open", false});
    if (i % 10 == 3) rounds[2].push_back({"click", false});
    if (i % 1000 == 7) rounds[3].push_back({"spamreport", false});
    if (i % 200 == 9) rounds[3].push_back({"unsubscribe", false});
    return rounds;
}

bool sendgrid_suppresses(std::size_t i) {
    return i % 50 == 0 || (i % 100 > 2 && (i % 1000 == 7 || i % 200 == 9));
}

std::string http_request(std::string_view path, std::string_view body,
                         const std::vector<std::pair<std::string, std::string>>& headers) {
    std::string r = "POST " + std::string(path) +
                    " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n";
    for (const auto& [k, v] : headers) r += k + ": " + v + "\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    r += body;
    return r;
}

struct workload {
    std::vector<std::string> sendgrid_bodies;  // each ends with CRLF, as SendGrid's do
    std::vector<std::string> sendgrid;         // the whole HTTP requests
    std::vector<std::string> mailgun;
    std::size_t sendgrid_events = 0;
    std::size_t expected_suppressed = 0;
};

workload build_workload(const options& o, const std::vector<send_info>& sends,
                        const sendgrid_key& key) {
    workload w;
    const auto tmpl = sendgrid_templates(o.fixtures);
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const std::string ts = std::to_string(now);
    std::vector<std::vector<std::string>> rounds(4);
    std::size_t seq = 0;
    for (std::size_t i = 0; i < o.sends; ++i) {
        const auto story = sendgrid_story(i);
        for (std::size_t r = 0; r < story.size(); ++r)
            for (const auto& [name, blocked] : story[r])
                rounds[r].push_back(sendgrid_event(tmpl.at(name), sends[i], seq++,
                                                   now - 3600 + static_cast<std::int64_t>(r) * 600,
                                                   blocked));
        if (sendgrid_suppresses(i)) ++w.expected_suppressed;
    }
    std::string body = "[";
    std::size_t in_body = 0;
    auto finish = [&] {
        body += "]\r\n";
        const auto sig = key.sign(ts, body);
        w.sendgrid.push_back(http_request("/hooks/sendgrid", body,
                                          {{"X-Twilio-Email-Event-Webhook-Signature", sig},
                                           {"X-Twilio-Email-Event-Webhook-Timestamp", ts}}));
        w.sendgrid_bodies.push_back(std::move(body));
        body = "[";
        in_body = 0;
    };
    for (auto& round : rounds)
        for (auto& e : round) {
            if (in_body) body += ',';
            body += e;
            ++w.sendgrid_events;
            if (++in_body == o.batch) finish();
        }
    if (in_body) finish();

    // Mailgun: one signed request per event, from its documented samples.
    const auto dir = std::filesystem::path(o.fixtures) / "webhooks" / "mailgun";
    std::string delivered, failed;
    for (auto [file, out] : {std::pair{"docs-delivered.json", &delivered},
                             std::pair{"docs-failed-permanent.json", &failed}}) {
        const auto text = read_file(dir / file);
        std::vector<char> buf(text.size() + simdjson::SIMDJSON_PADDING);
        std::size_t n = 0;
        if (simdjson::minify(text.data(), text.size(), buf.data(), n) != simdjson::SUCCESS)
            die(std::string("the Mailgun sample ") + file + " is not JSON");
        out->assign(buf.data(), n);
    }
    for (std::size_t j = 0; j < o.mailgun; ++j) {
        const auto& s = sends[o.sends + j];
        const bool fails = j % 50 == 0;
        std::string e = fails ? failed : delivered;
        const std::string token = fmt::format("{:050d}", j);
        const auto sig = mailers::webhooks::to_hex(mailers::webhooks::as_view(
            mailers::webhooks::hmac_sha256(mailgun_signing_key, ts + token)));
        auto at = set_value(e, "timestamp", json_string(ts));
        at = set_value(e, "token", json_string(token), at);
        at = set_value(e, "signature", json_string(sig), at);
        const auto data = e.find("\"event-data\":", at);
        at = set_value(e, "id", json_string("mg" + std::to_string(j) + "-ingest-bench"), data);
        set_value(e, "timestamp", std::to_string(now - 600) + ".5", data);
        set_value(e, "message-id", json_string("mg" + s.id + "@ingest-bench.example"), data);
        set_value(e, "recipient", json_string(s.recipient), data);
        set_value(e, "user-variables", "{\"mailers_send_id\":" + json_string(s.id) + "}", data);
        w.mailgun.push_back(http_request("/hooks/mailgun", e, {}));
        if (fails) ++w.expected_suppressed;
    }
    return w;
}

// --- keep-alive clients ------------------------------------------------------

struct load {
    const std::vector<std::string>* requests = nullptr;
    std::size_t next = 0, ok = 0, refused = 0;
    std::string first_refusal;
};

asio::awaitable<void> connection(tcp::endpoint ep, load& l) {
    tcp::socket s(co_await asio::this_coro::executor);
    co_await s.async_connect(ep, asio::use_awaitable);
    s.set_option(tcp::no_delay(true));
    beast::flat_buffer buf;
    while (l.next < l.requests->size()) {
        const auto& r = (*l.requests)[l.next++];
        co_await asio::async_write(s, asio::buffer(r), asio::use_awaitable);
        bhttp::response<bhttp::string_body> res;
        co_await bhttp::async_read(s, buf, res, asio::use_awaitable);
        if (res.result_int() == 200) {
            ++l.ok;
        } else if (l.refused++ == 0) {
            l.first_refusal = std::to_string(res.result_int()) + " " + res.body();
        }
    }
}

// Posts every request over `connections` keep-alive connections from one
// thread; the seconds it took.
double drive(std::uint16_t port, const std::vector<std::string>& requests, std::size_t connections,
             load& l) {
    asio::io_context ioc(1);
    l.requests = &requests;
    const tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), port);
    const auto t0 = steady::now();
    for (std::size_t i = 0; i < connections; ++i)
        asio::co_spawn(ioc, connection(ep, l), [](std::exception_ptr e) {
            if (!e) return;
            try {
                std::rethrow_exception(e);
            } catch (const std::exception& x) {
                die(std::string("client connection: ") + x.what());
            }
        });
    ioc.run();
    return std::chrono::duration<double>(steady::now() - t0).count();
}

// --- one store ----------------------------------------------------------------

struct totals {
    std::atomic<std::uint64_t> events{0}, suppressed{0}, already{0}, duplicates{0};
};

void run_store(const options& o, const std::string& label, const bench::store_choice& where,
               const sendgrid_key& key) {
    const std::string ws = "ingest-bench-" + std::to_string(::getpid());
    asio::io_context ioc;
    auto guard = asio::make_work_guard(ioc);
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < o.threads; ++i) threads.emplace_back([&] { ioc.run(); });

    mailers::engine_params ep;
    ep.storage = bench::open_store(where);
    ep.workspace = ws;
    ep.random_seed = 1;
    auto storage = ep.storage;
    auto eng = std::make_unique<mailers::engine>(ioc.get_executor(), std::move(ep));
    const mailers::principal ops{"bench", "bench"};
    eng->add_provider(ops, "null", std::make_shared<mailers::null_transport>(ioc.get_executor()));
    bench::add_bench_pool(
        *eng, ops, 50, "null",
        {mailers::rate_limit::per_day(10'000'000), mailers::rate_limit::per_hour(10'000'000)});

    // The sends the events report on, through the engine: real ledger rows.
    const std::size_t n = o.sends + o.mailgun;
    std::vector<send_info> sends(n);
    {
        std::mutex mu;
        std::condition_variable cv;
        std::size_t started = 0, done = 0;
        std::function<void(std::size_t)> start = [&](std::size_t i) {
            mailers::send_request r;
            r.pool = "bench";
            r.to = mailers::address{
                "prospect" + std::to_string(i), "example" + std::to_string(i % 997) + ".com", {}};
            sends[i].recipient = r.to.local + "@" + r.to.domain;
            r.subject = "Quick question";
            r.text = "Hello, a short note.";
            r.idempotency_key = "ingest-bench:" + std::to_string(i);
            eng->async_send(std::move(r), [&, i](mailers::error_code ec, mailers::send_result res) {
                if (ec || res.send_id.empty())
                    die("seeding send " + std::to_string(i) + " failed: " + ec.message());
                sends[i].id = res.send_id;
                std::optional<std::size_t> next;
                {
                    // The last one notifies under the lock: the waiter may
                    // return, and the lock and condition go, right after.
                    std::lock_guard lock(mu);
                    if (started < n) next = started++;
                    if (++done == n) cv.notify_one();
                }
                if (next) start(*next);
            });
        };
        const auto t0 = steady::now();
        {
            std::lock_guard lock(mu);
            started = std::min<std::size_t>(256, n);
        }
        for (std::size_t k = 0; k < std::min<std::size_t>(256, n); ++k) start(k);
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return done == n; });
        std::printf("[%s] ledger: %zu sends in %.2f s\n", label.c_str(), n,
                    std::chrono::duration<double>(steady::now() - t0).count());
    }
    const auto w = build_workload(o, sends, key);

    mailers::webhook_server_params sp;
    mailers::webhook_route sg{"/hooks/sendgrid", mailers::webhook_provider::sendgrid, {}};
    sg.params.sendgrid.public_key = key.public_key();
    sp.routes.push_back(sg);
    mailers::webhook_route mg{"/hooks/mailgun", mailers::webhook_provider::mailgun, {}};
    mg.params.mailgun.signing_key = mailgun_signing_key;
    if (o.replay == "store")
        mg.params.mailgun.replay = std::make_shared<mailers::store_replay_cache>(storage, ws);
    else
        mg.params.mailgun.replay = std::make_shared<mailers::memory_replay_cache>();
    sp.routes.push_back(mg);
    sp.max_connections = o.connections + 4;
    totals t;
    mailers::webhook_server server(
        ioc.get_executor(), sp,
        [&](const mailers::webhook_route& route, mailers::webhook_result& r) {
            const auto res = eng->apply_webhook(route.provider, std::move(r));
            t.events += res.webhook.events.size();
            t.suppressed += res.suppressed;
            t.already += res.already_suppressed;
            t.duplicates += res.duplicates;
        });
    const auto port = server.local_endpoint().port();

    auto report = [&](const char* what, const std::vector<std::string>& reqs, std::size_t events) {
        load l;
        const auto commits0 = eng->stats().commits;
        const auto cpu0 = bench::cpu_seconds();
        const double secs = drive(port, reqs, o.connections, l);
        const double cpu = bench::cpu_seconds() - cpu0;
        if (l.refused)
            die(std::string(what) + ": " + std::to_string(l.refused) +
                " requests refused, the first: " + l.first_refusal);
        std::printf(
            "[%s] %s: %zu events in %zu requests, %.2f s: %.0f events/s, %.0f "
            "requests/s, %.1f us CPU per event (whole process), %llu commits\n",
            label.c_str(), what, events, reqs.size(), secs, events / secs, reqs.size() / secs,
            cpu / events * 1e6, static_cast<unsigned long long>(eng->stats().commits - commits0));
    };
    report("sendgrid batches", w.sendgrid, w.sendgrid_events);
    report("mailgun single events", w.mailgun, w.mailgun.size());
    std::printf(
        "[%s] applied %llu events, %llu duplicates, %llu suppressed (expected %zu), "
        "%llu already suppressed\n",
        label.c_str(), static_cast<unsigned long long>(t.events - t.duplicates),
        static_cast<unsigned long long>(t.duplicates),
        static_cast<unsigned long long>(t.suppressed.load()), w.expected_suppressed,
        static_cast<unsigned long long>(t.already.load()));
    if (t.duplicates != 0 || t.suppressed != w.expected_suppressed)
        die("the events were not applied as expected");

    server.stop();
    eng.reset();
    guard.reset();
    ioc.stop();
    for (auto& th : threads) th.join();
}

// --- the ceiling: wrk against a server that does no work -----------------------

double wrk_requests_per_s(const options& o, std::uint16_t port, const std::string& request) {
    // The body and headers of one of the requests, for wrk's Lua script.
    const auto split = request.find("\r\n\r\n");
    const auto dir =
        std::filesystem::temp_directory_path() / ("ingest-bench-wrk-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    {
        std::ofstream(dir / "body", std::ios::binary) << request.substr(split + 4);
        std::ofstream lua(dir / "post.lua");
        lua << "local f = assert(io.open('" << (dir / "body").string()
            << "', 'rb'))\nwrk.body = f:read('*a')\nf:close()\nwrk.method = 'POST'\n";
        std::istringstream head(request.substr(0, split));
        std::string line;
        std::getline(head, line);  // the request line
        while (std::getline(head, line)) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            const auto colon = line.find(": ");
            const auto name = line.substr(0, colon);
            if (name == "Host" || name == "Content-Length") continue;  // wrk's own
            lua << "wrk.headers['" << name << "'] = '" << line.substr(colon + 2) << "'\n";
        }
    }
    const auto cmd = fmt::format("wrk -t1 -c{} -d{}s -s {} http://127.0.0.1:{}{} 2>&1",
                                 o.connections, o.wrk_seconds, (dir / "post.lua").string(), port,
                                 request.substr(5, request.find(' ', 5) - 5));
    FILE* p = ::popen(cmd.c_str(), "r");
    if (!p) die("cannot run wrk");
    std::string out;
    char buf[4096];
    while (std::size_t k = std::fread(buf, 1, sizeof buf, p)) out.append(buf, k);
    const int rc = ::pclose(p);
    std::filesystem::remove_all(dir);
    const auto at = out.find("Requests/sec:");
    if (rc != 0 || at == std::string::npos || out.find("Non-2xx") != std::string::npos ||
        out.find("Socket errors") != std::string::npos)
        die("wrk failed (benchmarks/peers/install installs it): " + cmd + "\n" + out);
    return std::strtod(out.c_str() + at + 13, nullptr);
}

// --- parse only ----------------------------------------------------------------

void parse_only(const std::vector<std::string>& bodies, const sendgrid_key& key) {
    std::size_t bytes = 0;
    for (const auto& b : bodies) bytes += b.size();
    const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    const std::string ts = std::to_string(now);
    std::vector<std::string> sigs;
    for (const auto& b : bodies) sigs.push_back(key.sign(ts, b));
    auto measure = [&](const char* what, auto&& one) {
        std::size_t events = 0, passes = 0;
        const auto t0 = steady::now();
        double secs = 0;
        do {
            for (std::size_t i = 0; i < bodies.size(); ++i) events += one(i);
            ++passes;
            secs = std::chrono::duration<double>(steady::now() - t0).count();
        } while (secs < 2.0);
        std::printf("parse only, %s: %.0f MB/s, %.0f events/s (%zu batches of %.1f KB)\n", what,
                    static_cast<double>(bytes * passes) / secs / 1e6, events / secs, bodies.size(),
                    static_cast<double>(bytes) / bodies.size() / 1e3);
    };
    mailers::webhook_params verified;
    verified.sendgrid.public_key = key.public_key();
    mailers::webhook_params unverified;
    unverified.verify = false;
    const mailers::http_header type{"Content-Type", "application/json"};
    measure("parse_webhook, signature checked", [&](std::size_t i) {
        const mailers::http_header h[] = {type,
                                          {"X-Twilio-Email-Event-Webhook-Signature", sigs[i]},
                                          {"X-Twilio-Email-Event-Webhook-Timestamp", ts}};
        const auto r = mailers::parse_webhook(mailers::webhook_provider::sendgrid,
                                              {"POST", h, bodies[i]}, verified);
        if (r.http_status != 200) die("parse only: " + r.reason);
        return r.events.size();
    });
    measure("parse_webhook, no signature check", [&](std::size_t i) {
        const auto r = mailers::parse_webhook(mailers::webhook_provider::sendgrid,
                                              {"POST", {&type, 1}, bodies[i]}, unverified);
        if (r.http_status != 200) die("parse only: " + r.reason);
        return r.events.size();
    });
    simdjson::dom::parser parser;
    measure("simdjson DOM parse alone", [&](std::size_t i) {
        simdjson::dom::array a;
        if (parser.parse(bodies[i].data(), bodies[i].size()).get(a) != simdjson::SUCCESS)
            die("parse only: not JSON");
        return a.size();
    });
}

}  // namespace

int main(int argc, char** argv) {
    std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress, also into a file
    options o;
    if (const char* pg = std::getenv("MAILERS_BENCH_PG")) o.pg.pg = pg;
    if (!bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
            if (k == "--sends")
                o.sends = std::stoul(v);
            else if (k == "--batch")
                o.batch = std::stoul(v);
            else if (k == "--mailgun")
                o.mailgun = std::stoul(v);
            else if (k == "--connections")
                o.connections = std::stoul(v);
            else if (k == "--threads")
                o.threads = static_cast<unsigned>(std::stoul(v));
            else if (k == "--replay")
                o.replay = v;
            else if (k == "--wrk-seconds")
                o.wrk_seconds = std::stoi(v);
            else if (k == "--fixtures")
                o.fixtures = v;
            else
                return bench::take_store_option(o.pg, k, std::move(v));
            return true;
        }))
        return 2;
    if (o.batch == 0 || o.connections == 0 || o.threads == 0 || o.sends == 0 ||
        (o.replay != "memory" && o.replay != "store"))
        die("--sends, --batch, --connections and --threads must be positive, --replay memory or "
            "store");
    if (!o.pg.sqlite.empty())
        die("--sqlite is not an option here: SQLite runs in a temporary file");
    const sendgrid_key key;

    const auto dir =
        std::filesystem::temp_directory_path() / ("ingest-bench-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir);
    bench::store_choice sqlite;
    sqlite.sqlite = (dir / "ingest.db").string();
    std::printf(
        "sendgrid batches of %zu events, %zu connections, %u server threads, %s replay "
        "cache\n",
        o.batch, o.connections, o.threads, o.replay.c_str());
    run_store(o, "sqlite", sqlite, key);
    if (!o.pg.pg.empty()) {
        bench::store_choice pg = o.pg;
        pg.sqlite.clear();
        run_store(o, "postgres", pg, key);
    }
    std::filesystem::remove_all(dir);

    // The same requests, to a server that reads them and does nothing.
    std::vector<send_info> sends(o.sends + o.mailgun);
    for (std::size_t i = 0; i < sends.size(); ++i)
        sends[i] = {std::to_string(i + 1), "prospect" + std::to_string(i) + "@example.com"};
    const auto w = build_workload(o, sends, key);
    {
        bench::http_sink sink(o.threads);
        const double sg = wrk_requests_per_s(o, sink.port(), w.sendgrid.front());
        const double per = static_cast<double>(w.sendgrid_events) / w.sendgrid.size();
        std::printf("ceiling, wrk -t1 -c%zu, sendgrid batches: %.0f requests/s = %.0f events/s\n",
                    o.connections, sg, sg * per);
        if (!w.mailgun.empty()) {
            const double mg = wrk_requests_per_s(o, sink.port(), w.mailgun.front());
            std::printf("ceiling, wrk -t1 -c%zu, mailgun single events: %.0f requests/s\n",
                        o.connections, mg);
        }
        load l;
        const double secs = drive(sink.port(), w.sendgrid, o.connections, l);
        std::printf(
            "ceiling, this benchmark's client, sendgrid batches: %.0f requests/s = %.0f "
            "events/s\n",
            w.sendgrid.size() / secs, w.sendgrid_events / secs);
    }
    parse_only(w.sendgrid_bodies, key);
    return 0;
}
