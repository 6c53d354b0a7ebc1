#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/error.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mailers/format.hpp>
#include <mailers/mime.hpp>
#include <mailers/transports.hpp>
#include <memory>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

using mailers::error_code;
using mailers::failure;
using mailers::fault_action;
using mailers::outbound;
using mailers::send_outcome;
using mailers::transport_errc;

namespace {

mailers::message make_message(int i) {
    mailers::message m;
    m.from = {"sender", "example.com", "Sender"};
    m.to.push_back({"rcpt" + std::to_string(i), "example.org", ""});
    m.subject = "Hello " + std::to_string(i);
    m.text = "Body of message " + std::to_string(i) + "\n";
    return m;
}

std::shared_ptr<const outbound> make_outbound(int i) {
    auto o = std::make_shared<outbound>();
    o->msg = make_message(i);
    o->env = mailers::envelope::from_message(o->msg);
    o->mailbox_id = "mbx";
    o->send_id = "send-" + std::to_string(i);
    return o;
}

struct send_result {
    error_code ec;
    send_outcome outcome;
    bool completed = false;
    bool completed_inline = false;
    std::chrono::steady_clock::duration elapsed{};
};

// Initiates the send from inside the io_context, where a transport that
// completed inline would run the handler before async_send returned.
send_result send_one(asio::io_context& ioc, mailers::provider_transport& t,
                     std::shared_ptr<const outbound> out) {
    send_result r;
    bool returned = false;
    std::chrono::steady_clock::time_point start;
    asio::post(ioc, [&] {
        start = std::chrono::steady_clock::now();
        t.async_send(std::move(out), [&](error_code ec, send_outcome o) {
            r.elapsed = std::chrono::steady_clock::now() - start;
            r.completed_inline = !returned;
            r.completed = true;
            r.ec = ec;
            r.outcome = std::move(o);
        });
        returned = true;
    });
    ioc.restart();
    ioc.run();
    REQUIRE(r.completed);
    CHECK_FALSE(r.completed_inline);
    return r;
}

// Starts `n` sends back to back from inside the io_context and waits for all.
std::vector<send_result> send_many(asio::io_context& ioc, mailers::provider_transport& t, int n) {
    std::vector<send_result> results(static_cast<std::size_t>(n));
    std::vector<bool> returned(static_cast<std::size_t>(n), false);
    asio::post(ioc, [&] {
        for (int i = 0; i < n; ++i) {
            const auto k = static_cast<std::size_t>(i);
            t.async_send(make_outbound(i), [&, k](error_code ec, send_outcome o) {
                results[k].completed_inline = !returned[k];
                results[k].completed = true;
                results[k].ec = ec;
                results[k].outcome = std::move(o);
            });
            returned[k] = true;
        }
    });
    ioc.restart();
    ioc.run();
    for (const auto& r : results) {
        REQUIRE(r.completed);
        REQUIRE_FALSE(r.completed_inline);
    }
    return results;
}

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::random_device rd;
        path = fs::temp_directory_path() /
               ("mailers-transports-test-" + std::to_string(rd()) + std::to_string(rd()));
        fs::create_directories(path);
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    temp_dir(const temp_dir&) = delete;
    temp_dir& operator=(const temp_dir&) = delete;
};

std::string read_all(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<fs::path> files_in(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path());
    return out;
}

}  // namespace

// ---------------------------------------------------------------- capture

TEST_CASE("capture_transport keeps a copy of each send and numbers the ids") {
    asio::io_context ioc;
    mailers::capture_transport t(ioc.get_executor());
    CHECK(t.name() == "capture");
    CHECK(t.count() == 0);
    CHECK_FALSE(t.last().has_value());

    auto first = std::make_shared<outbound>();
    first->msg = make_message(1);
    first->send_id = "a";
    auto r1 = send_one(ioc, t, first);
    CHECK_FALSE(r1.ec);
    CHECK(r1.outcome.provider_message_id == "capture-1");

    // Changing the caller's object afterwards must not change the capture.
    first->msg.subject = "changed";
    first->send_id = "b";

    auto r2 = send_one(ioc, t, make_outbound(2));
    CHECK(r2.outcome.provider_message_id == "capture-2");

    const auto sent = t.sent();
    REQUIRE(sent.size() == 2);
    CHECK(sent[0].msg.subject == "Hello 1");
    CHECK(sent[0].send_id == "a");
    CHECK(sent[1].msg == make_message(2));
    CHECK(sent[1].send_id == "send-2");
    CHECK(t.count() == 2);
    REQUIRE(t.last().has_value());
    CHECK(t.last()->send_id == "send-2");

    t.clear();
    CHECK(t.count() == 0);
    CHECK(t.sent().empty());
    CHECK_FALSE(t.last().has_value());
    auto r3 = send_one(ioc, t, make_outbound(3));
    CHECK(r3.outcome.provider_message_id == "capture-3");
    CHECK(t.count() == 1);
}

TEST_CASE("capture_transport ids match the capture order under concurrent senders") {
    asio::io_context ioc;
    auto guard = asio::make_work_guard(ioc);
    mailers::capture_transport t(ioc.get_executor());
    constexpr int threads = 4, per_thread = 100;

    std::mutex m;
    std::vector<std::string> ids;
    std::atomic<int> done{0};
    std::thread runner([&] { ioc.run(); });
    std::vector<std::thread> senders;
    for (int k = 0; k < threads; ++k) {
        senders.emplace_back([&, k] {
            for (int i = 0; i < per_thread; ++i) {
                t.async_send(make_outbound(k * per_thread + i), [&](error_code, send_outcome o) {
                    std::lock_guard lock(m);
                    ids.push_back(o.provider_message_id);
                    if (++done == threads * per_thread) guard.reset();
                });
            }
        });
    }
    for (auto& s : senders) s.join();
    runner.join();

    const auto sent = t.sent();
    REQUIRE(sent.size() == threads * per_thread);
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == ids.size());
    std::set<std::string> send_ids;
    for (const auto& o : sent) send_ids.insert(o.send_id);
    CHECK(send_ids.size() == sent.size());
}

// ---------------------------------------------------------------- null

TEST_CASE("null_transport accepts everything and counts") {
    asio::io_context ioc;
    mailers::null_transport t(ioc.get_executor());
    CHECK(t.name() == "null");
    const auto results = send_many(ioc, t, 1000);
    CHECK(t.count() == 1000);
    std::set<std::string> ids;
    for (const auto& r : results) {
        CHECK_FALSE(r.ec);
        ids.insert(r.outcome.provider_message_id);
    }
    CHECK(ids.size() == 1000);
    CHECK(results.front().outcome.provider_message_id == "null-1");
    CHECK(results.back().outcome.provider_message_id == "null-1000");
}

// ---------------------------------------------------------------- file

TEST_CASE("file_transport writes the rendered message under a unique name") {
    temp_dir dir;
    const auto folder = dir.path / "nested" / "out";  // created on demand
    asio::io_context ioc;
    mailers::file_transport t(ioc.get_executor(), folder);
    CHECK(t.name() == "file");
    CHECK(t.folder() == folder);

    auto out = std::make_shared<outbound>();
    out->msg = make_message(7);
    out->msg.message_id = "abc.123/x@example.com";
    out->msg.date = mailers::time_point{std::chrono::seconds{1'800'000'000}};
    out->env = mailers::envelope::from_message(out->msg);

    const auto expected = mailers::render_message(out->msg);
    REQUIRE(expected.has_value());

    const auto r = send_one(ioc, t, out);
    REQUIRE_FALSE(r.ec);
    const auto& name = r.outcome.provider_message_id;
    CHECK(std::regex_match(
        name, std::regex(R"(\d{8}T\d{6}\.\d{6}Z-\d{6,}-abc\.123_x@example\.com\.eml)")));

    const auto files = files_in(folder);
    REQUIRE(files.size() == 1);
    CHECK(files[0].filename() == name);
    CHECK(read_all(files[0]) == *expected);
}

TEST_CASE("file_transport writes pre-rendered bytes as they are") {
    temp_dir dir;
    asio::io_context ioc;
    mailers::file_transport t(ioc.get_executor(), dir.path);
    auto out = std::make_shared<outbound>();
    out->msg = make_message(2);
    out->env = mailers::envelope::from_message(out->msg);
    out->raw =
        "From: a@example.com\r\nTo: b@example.com\r\nMessage-ID: <raw.1@example.com>\r\n"
        "Subject: signed elsewhere\r\n\r\nbody\r\n";
    const auto r = send_one(ioc, t, out);
    REQUIRE_FALSE(r.ec);
    const auto files = files_in(dir.path);
    REQUIRE(files.size() == 1);
    CHECK(read_all(files[0]) == out->raw);
    CHECK(files[0].filename().string().find("raw.1@example.com") != std::string::npos);
}

TEST_CASE("file_transport passes a render error through and writes nothing") {
    temp_dir dir;
    asio::io_context ioc;
    mailers::file_transport t(ioc.get_executor(), dir.path);
    auto out = std::make_shared<outbound>();
    out->msg = make_message(1);
    out->msg.subject = "bad\r\nBcc: victim@example.net";

    const auto r = send_one(ioc, t, out);
    REQUIRE(r.ec);
    CHECK(r.ec == mailers::render_message(out->msg).error());
    CHECK(r.ec.category() == mailers::error_category());
    CHECK(r.outcome.provider_message_id.empty());
    CHECK_FALSE(r.outcome.diag.message.empty());
    CHECK(files_in(dir.path).empty());
}

TEST_CASE("file_transport reports an I/O failure as a temporary refusal naming the path") {
    temp_dir dir;
    const auto blocker = dir.path / "not-a-folder";
    std::ofstream(blocker) << "x";
    asio::io_context ioc;
    mailers::file_transport t(ioc.get_executor(), blocker / "sub");

    const auto r = send_one(ioc, t, make_outbound(1));
    CHECK(r.ec == transport_errc::temporary_reply);
    CHECK(r.ec == failure::transient);
    CHECK(r.outcome.diag.message.find(blocker.string()) != std::string::npos);
}

TEST_CASE("file_transport names stay unique under concurrent senders") {
    temp_dir dir;
    asio::io_context ioc;
    auto guard = asio::make_work_guard(ioc);
    mailers::file_transport t(ioc.get_executor(), dir.path);
    constexpr int threads = 4, per_thread = 200, total = threads * per_thread;

    // One Message-ID for every send, so only the timestamp and sequence
    // can keep the names apart.
    auto msg = make_message(0);
    msg.message_id = "same@example.com";
    msg.date = mailers::time_point{std::chrono::seconds{1'800'000'000}};
    const auto expected = mailers::render_message(msg);
    REQUIRE(expected.has_value());
    auto out = std::make_shared<outbound>();
    out->msg = msg;

    std::mutex m;
    std::vector<std::string> ids;
    std::atomic<int> failures{0};
    std::atomic<int> done{0};
    std::vector<std::thread> runners;
    for (int k = 0; k < 2; ++k) runners.emplace_back([&] { ioc.run(); });
    std::vector<std::thread> senders;
    for (int k = 0; k < threads; ++k) {
        senders.emplace_back([&] {
            for (int i = 0; i < per_thread; ++i) {
                t.async_send(out, [&](error_code ec, send_outcome o) {
                    if (ec) ++failures;
                    {
                        std::lock_guard lock(m);
                        ids.push_back(o.provider_message_id);
                    }
                    if (++done == total) guard.reset();
                });
            }
        });
    }
    for (auto& s : senders) s.join();
    for (auto& r : runners) r.join();

    CHECK(failures == 0);
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == total);
    const auto files = files_in(dir.path);
    CHECK(files.size() == total);
    int mismatched = 0;
    for (const auto& f : files) {
        CHECK(f.extension() == ".eml");
        if (read_all(f) != *expected) ++mismatched;
    }
    CHECK(mismatched == 0);
}

// ---------------------------------------------------------------- fault_injector

TEST_CASE("fault_injector fails the Nth call with the given error and diagnostics") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    CHECK(fi.name() == "capture");
    CHECK(fi.inner() == inner);

    mailers::diagnostics d;
    d.retry_after = 30s;
    d.provider_reply = "421 4.7.0 slow down";
    fi.fail_nth(3, make_error_code(transport_errc::rate_limited), d);

    const auto results = send_many(ioc, fi, 5);
    for (std::size_t i = 0; i < results.size(); ++i) {
        if (i == 2) continue;
        CHECK_FALSE(results[i].ec);
    }
    CHECK(results[2].ec == transport_errc::rate_limited);
    CHECK(results[2].ec == failure::throttled);
    CHECK(results[2].outcome.diag.retry_after == 30s);
    CHECK(results[2].outcome.diag.provider_reply == "421 4.7.0 slow down");
    CHECK(inner->count() == 4);
    CHECK(fi.calls() == 5);
    CHECK(fi.injected_failures() == 1);
    CHECK(fi.injected_unknowns() == 0);

    // An injected failure without a message still says where it came from.
    fi.clear();
    fi.fail_nth(1, transport_errc::connection_failed);
    const auto r = send_one(ioc, fi, make_outbound(9));
    CHECK(r.ec == failure::transient);
    CHECK(r.outcome.diag.message.find("call 1") != std::string::npos);
}

TEST_CASE("fault_injector failure probability is respected and deterministic per seed") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::null_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    constexpr int n = 10'000;

    auto run = [&](std::uint64_t seed) {
        fi.clear();
        fi.set_seed(seed).fail_with_probability(0.2, transport_errc::temporary_reply);
        const auto results = send_many(ioc, fi, n);
        std::vector<bool> failed;
        for (const auto& r : results) {
            if (r.ec) CHECK(r.ec == transport_errc::temporary_reply);
            failed.push_back(static_cast<bool>(r.ec));
        }
        return failed;
    };

    const auto a = run(42);
    const auto failures = fi.injected_failures();
    CHECK(failures == static_cast<std::uint64_t>(std::count(a.begin(), a.end(), true)));
    CHECK(failures >= 1800);
    CHECK(failures <= 2200);
    CHECK(inner->count() == n - failures);

    CHECK(run(42) == a);
    CHECK(run(43) != a);
}

TEST_CASE("fault_injector latency delays the completion") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    fi.add_latency(50ms);

    const auto passed = send_one(ioc, fi, make_outbound(1));
    CHECK_FALSE(passed.ec);
    CHECK(passed.elapsed >= 50ms);
    CHECK(inner->count() == 1);

    fi.fail_nth(2, transport_errc::temporary_reply);
    const auto failed = send_one(ioc, fi, make_outbound(2));
    CHECK(failed.ec == transport_errc::temporary_reply);
    CHECK(failed.elapsed >= 50ms);

    fi.add_latency(0ms);
    CHECK_FALSE(send_one(ioc, fi, make_outbound(3)).ec);
}

TEST_CASE("fault_injector reports an unknown outcome after the inner transport got the message") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    fi.unknown_with_probability(1.0);

    const auto r = send_one(ioc, fi, make_outbound(5));
    CHECK(r.ec == failure::unknown_outcome);
    CHECK(r.ec == transport_errc::outcome_unknown);
    CHECK(r.outcome.provider_message_id.empty());
    CHECK(r.outcome.diag.message.find("capture-1") != std::string::npos);
    REQUIRE(inner->count() == 1);
    CHECK(inner->last()->send_id == "send-5");
    CHECK(fi.injected_unknowns() == 1);
    CHECK(fi.injected_failures() == 0);

    fi.clear();
    fi.unknown_nth(2).add_latency(10ms);
    const auto results = send_many(ioc, fi, 3);
    CHECK_FALSE(results[0].ec);
    CHECK(results[1].ec == failure::unknown_outcome);
    CHECK_FALSE(results[2].ec);
    CHECK(inner->count() == 4);
}

TEST_CASE("fault_injector plays a script, then falls back to the other rules") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    mailers::diagnostics d;
    d.enhanced_status = "5.7.8";
    fi.script({fault_action::pass(),
               fault_action::fail(make_error_code(transport_errc::authentication_failed), d),
               fault_action::unknown_after_delivery(), fault_action::pass()});
    // A call-number rule wins over the script, which keeps its step.
    fi.fail_nth(2, transport_errc::recipient_rejected);

    const auto results = send_many(ioc, fi, 6);
    CHECK_FALSE(results[0].ec);
    CHECK(results[1].ec == failure::recipient_permanent);
    CHECK(results[2].ec == failure::auth);
    CHECK(results[2].outcome.diag.enhanced_status == "5.7.8");
    CHECK(results[3].ec == failure::unknown_outcome);
    CHECK_FALSE(results[4].ec);
    CHECK_FALSE(results[5].ec);
    CHECK(inner->count() == 4);
    CHECK(fi.calls() == 6);
    CHECK(fi.injected_failures() == 2);
    CHECK(fi.injected_unknowns() == 1);
}

TEST_CASE("fault_injector clear removes every fault and restarts numbering") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    fi.fail_nth(1, transport_errc::temporary_reply)
        .fail_with_probability(1.0, transport_errc::rate_limited)
        .unknown_with_probability(1.0)
        .script({fault_action::unknown_after_delivery()})
        .add_latency(1h);
    fi.clear();
    CHECK(fi.calls() == 0);
    const auto results = send_many(ioc, fi, 3);
    for (const auto& r : results) CHECK_FALSE(r.ec);
    CHECK(fi.calls() == 3);
    CHECK(fi.injected_failures() == 0);
}

TEST_CASE("fault_injector refuses meaningless configuration") {
    asio::io_context ioc;
    auto inner = std::make_shared<mailers::null_transport>(ioc.get_executor());
    mailers::fault_injector fi(inner);
    CHECK_THROWS_AS(mailers::fault_injector(nullptr), mailers::exception);
    CHECK_THROWS_AS(fi.fail_nth(0, transport_errc::temporary_reply), mailers::exception);
    CHECK_THROWS_AS(fi.unknown_nth(0), mailers::exception);
    CHECK_THROWS_AS(fi.fail_nth(1, error_code{}), mailers::exception);
    CHECK_THROWS_AS(fi.fail_with_probability(1.5, transport_errc::temporary_reply),
                    mailers::exception);
    CHECK_THROWS_AS(fi.fail_with_probability(-0.1, transport_errc::temporary_reply),
                    mailers::exception);
    CHECK_THROWS_AS(fi.unknown_with_probability(2.0), mailers::exception);
    CHECK_THROWS_AS(fi.add_latency(-1ms), mailers::exception);
    CHECK_THROWS_AS(fi.script({fault_action::fail(error_code{})}), mailers::exception);
}

// ---------------------------------------------------------------- failure rules

namespace {

// A category the library has never heard of, as a third-party transport or
// a dependency might report.
class foreign_category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "foreign"; }
    std::string message(int) const override { return "foreign error"; }
};

const foreign_category& foreign() {
    static const foreign_category c;
    return c;
}

// Codes no failure class recognises: each may come from after the message
// was handed over.
std::vector<error_code> unclassified_codes() {
    return {
        asio::error::connection_reset,
        asio::error::connection_refused,
        asio::error::timed_out,
        asio::error::eof,
        asio::error::operation_aborted,
        asio::error::host_not_found,
        error_code(std::make_error_code(std::errc::broken_pipe)),
        boost::system::errc::make_error_code(boost::system::errc::io_error),
        error_code(42, foreign()),
        error_code(999, mailers::transport_category()),
        error_code(0x7fff, mailers::failure_category()),
        mailers::make_error_code(mailers::errc::operation_aborted),
    };
}

}  // namespace

TEST_CASE("may_retry: only when the message certainly did not leave") {
    struct row {
        transport_errc code;
        failure cls;
        bool retry;
    };
    const row rows[] = {
        {transport_errc::connection_failed, failure::transient, true},
        {transport_errc::timeout_before_send, failure::transient, true},
        {transport_errc::temporary_reply, failure::transient, true},
        {transport_errc::rate_limited, failure::throttled, true},
        {transport_errc::sender_quota_exhausted, failure::quota_exhausted, true},
        {transport_errc::sender_reputation, failure::reputation, true},
        {transport_errc::authentication_failed, failure::auth, true},
        {transport_errc::configuration, failure::auth, true},
        {transport_errc::tls_verification_failed, failure::auth, true},
        {transport_errc::recipient_rejected, failure::recipient_permanent, false},
        {transport_errc::content_rejected, failure::message_rejected, false},
        {transport_errc::outcome_unknown, failure::unknown_outcome, false},
    };
    for (const auto& r : rows) {
        const auto ec = make_error_code(r.code);
        CAPTURE(ec.message());
        CHECK(mailers::classify(ec) == r.cls);
        CHECK(ec == r.cls);
        CHECK(mailers::may_retry(ec) == r.retry);
    }

    // The failure classes themselves, carried as codes.
    for (int f = static_cast<int>(failure::transient);
         f <= static_cast<int>(failure::unknown_outcome); ++f) {
        const error_code ec(f, mailers::failure_category());
        CAPTURE(ec.message());
        const auto cls = static_cast<failure>(f);
        CHECK(mailers::classify(ec) == cls);
        CHECK(mailers::may_retry(ec) ==
              (cls != failure::recipient_permanent && cls != failure::message_rejected &&
               cls != failure::unknown_outcome));
    }

    // Library errors raised while preparing a message: nothing was written,
    // and another route would refuse it the same way.
    for (auto e : {mailers::errc::invalid_address, mailers::errc::header_injection,
                   mailers::errc::invalid_header, mailers::errc::invalid_argument,
                   mailers::errc::message_too_large}) {
        const auto ec = mailers::make_error_code(e);
        CAPTURE(ec.message());
        CHECK(mailers::classify(ec) == failure::message_rejected);
        CHECK_FALSE(mailers::may_retry(ec));
        // They stay the library's verdicts, equal to no transport failure class.
        CHECK(ec != failure::message_rejected);
    }

    for (const auto& ec : unclassified_codes()) {
        CAPTURE(ec.category().name());
        CAPTURE(ec.message());
        CHECK(mailers::classify(ec) == failure::unknown_outcome);
        CHECK_FALSE(mailers::may_retry(ec));
        if (ec.category() != mailers::error_category()) {
            CHECK(ec == failure::unknown_outcome);
            CHECK(ec != failure::transient);
            CHECK(ec != failure::message_rejected);
        }
    }

    CHECK_FALSE(mailers::may_retry(error_code{}));
}

TEST_CASE("composites fail over on every retryable class, and on nothing else") {
    asio::io_context ioc;
    for (const auto m : {mailers::composite_transport::mode::failover,
                         mailers::composite_transport::mode::roundrobin}) {
        CAPTURE(m == mailers::composite_transport::mode::failover ? "failover" : "roundrobin");
        std::vector<error_code> codes;
        for (int e = static_cast<int>(transport_errc::connection_failed);
             e <= static_cast<int>(transport_errc::tls_verification_failed); ++e)
            codes.push_back(make_error_code(static_cast<transport_errc>(e)));
        for (const auto& ec : unclassified_codes()) codes.push_back(ec);
        codes.push_back(mailers::make_error_code(mailers::errc::invalid_address));

        for (const auto& ec : codes) {
            CAPTURE(ec.category().name());
            CAPTURE(ec.message());
            auto first_inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
            auto first = std::make_shared<mailers::fault_injector>(first_inner);
            auto second = std::make_shared<mailers::capture_transport>(ioc.get_executor());
            // A fresh composite per code: roundrobin's first send goes to the
            // first child, and no child is resting from an earlier failure.
            mailers::composite_transport c(ioc.get_executor(), m, {first, second});
            first->fail_nth(1, ec);
            const auto r = send_one(ioc, c, make_outbound(1));
            if (mailers::may_retry(ec)) {
                CHECK_FALSE(r.ec);
                CHECK(second->count() == 1);
            } else {
                CHECK(r.ec == ec);
                CHECK(second->count() == 0);
            }
            CHECK(first_inner->count() == 0);
        }
    }
}

TEST_CASE("composites never fail over after an unknown outcome, which may have delivered") {
    asio::io_context ioc;
    for (const auto m : {mailers::composite_transport::mode::failover,
                         mailers::composite_transport::mode::roundrobin}) {
        auto first_inner = std::make_shared<mailers::capture_transport>(ioc.get_executor());
        auto first = std::make_shared<mailers::fault_injector>(first_inner);
        auto second = std::make_shared<mailers::capture_transport>(ioc.get_executor());
        mailers::composite_transport c(ioc.get_executor(), m, {first, second});
        first->unknown_nth(1);
        const auto r = send_one(ioc, c, make_outbound(1));
        CHECK(r.ec == failure::unknown_outcome);
        CHECK(first_inner->count() == 1);  // the provider has it
        CHECK(second->count() == 0);       // and nobody else got it
    }
}

namespace {

// Each enumerator prints as its own name, the same through to_string() and
// fmt, and no two share one.
template <class Enum>
void check_names(std::initializer_list<std::pair<Enum, std::string_view>> expected) {
    std::set<std::string_view> seen;
    for (const auto& [value, name] : expected) {
        CAPTURE(name);
        CHECK_FALSE(name.empty());
        CHECK(mailers::to_string(value) == name);
        CHECK(fmt::format("{}", value) == name);
        CHECK(fmt::format("[{:>24}]", value) == fmt::format("[{:>24}]", name));
        CHECK(seen.insert(mailers::to_string(value)).second);
    }
}

}  // namespace

TEST_CASE("every public enum has a name through to_string and fmt") {
    using namespace mailers;
    check_names<ineligible_reason>({{ineligible_reason::none, "none"},
                                    {ineligible_reason::paused, "paused"},
                                    {ineligible_reason::retired, "retired"},
                                    {ineligible_reason::provider_paused, "provider_paused"},
                                    {ineligible_reason::domain_paused, "domain_paused"},
                                    {ineligible_reason::outside_window, "outside_window"},
                                    {ineligible_reason::min_gap, "min_gap"},
                                    {ineligible_reason::cap_reached, "cap_reached"},
                                    {ineligible_reason::warmup_cap_reached, "warmup_cap_reached"},
                                    {ineligible_reason::quota_reached, "quota_reached"},
                                    {ineligible_reason::exhausted, "exhausted"},
                                    {ineligible_reason::throttled, "throttled"},
                                    {ineligible_reason::unhealthy, "unhealthy"},
                                    {ineligible_reason::probe_in_flight, "probe_in_flight"}});
    check_names<health_state>({{health_state::closed, "closed"},
                               {health_state::open, "open"},
                               {health_state::half_open, "half_open"}});
    check_names<mailbox_state>({{mailbox_state::active, "active"},
                                {mailbox_state::paused, "paused"},
                                {mailbox_state::retired, "retired"}});
    check_names<send_state>({{send_state::reserved, "reserved"},
                             {send_state::accepted, "accepted"},
                             {send_state::failed, "failed"},
                             {send_state::unknown, "unknown"}});
    check_names<reserve_status>({{reserve_status::reserved, "reserved"},
                                 {reserve_status::duplicate, "duplicate"},
                                 {reserve_status::cap_reached, "cap_reached"},
                                 {reserve_status::gap, "gap"},
                                 {reserve_status::stale_config, "stale_config"},
                                 {reserve_status::not_owner, "not_owner"}});
    check_names<open_mode>({{open_mode::existing, "existing"},
                            {open_mode::create, "create"},
                            {open_mode::open_or_create, "open_or_create"}});
    check_names<event_type>({{event_type::queued, "queued"},
                             {event_type::sent, "sent"},
                             {event_type::delivered, "delivered"},
                             {event_type::deferred, "deferred"},
                             {event_type::bounced, "bounced"},
                             {event_type::complained, "complained"},
                             {event_type::unsubscribed, "unsubscribed"},
                             {event_type::opened, "opened"},
                             {event_type::clicked, "clicked"},
                             {event_type::rejected, "rejected"},
                             {event_type::failed, "failed"},
                             {event_type::replied, "replied"},
                             {event_type::suppressed, "suppressed"},
                             {event_type::no_capacity, "no_capacity"},
                             {event_type::unknown, "unknown"},
                             {event_type::paused, "paused"},
                             {event_type::alert, "alert"},
                             {event_type::auto_paused, "auto_paused"}});
    check_names<suppression_reason>({{suppression_reason::unsubscribe, "unsubscribe"},
                                     {suppression_reason::hard_bounce, "hard_bounce"},
                                     {suppression_reason::complaint, "complaint"},
                                     {suppression_reason::manual, "manual"},
                                     {suppression_reason::legal, "legal"}});
    for (auto r :
         {suppression_reason::unsubscribe, suppression_reason::hard_bounce,
          suppression_reason::complaint, suppression_reason::manual, suppression_reason::legal})
        CHECK(parse_suppression_reason(to_string(r)).value() == r);
    check_names<suppression_kind>(
        {{suppression_kind::address, "address"}, {suppression_kind::domain, "domain"}});
    check_names<quota_scope>({{quota_scope::provider, "provider"},
                              {quota_scope::sender_domain, "sender_domain"},
                              {quota_scope::recipient_domain, "recipient_domain"}});
    check_names<pause_scope>({{pause_scope::workspace, "workspace"},
                              {pause_scope::pool, "pool"},
                              {pause_scope::mailbox, "mailbox"},
                              {pause_scope::provider, "provider"},
                              {pause_scope::sender_domain, "sender_domain"}});
    check_names<rotation_kind>({{rotation_kind::round_robin, "round_robin"},
                                {rotation_kind::weighted, "weighted"},
                                {rotation_kind::priority, "priority"}});
    check_names<window_kind>(
        {{window_kind::rolling, "rolling"}, {window_kind::calendar, "calendar"}});
    check_names<log_level>({{log_level::trace, "trace"},
                            {log_level::debug, "debug"},
                            {log_level::info, "info"},
                            {log_level::warning, "warning"},
                            {log_level::error, "error"},
                            {log_level::off, "off"}});
    check_names<failure>({{failure::transient, "transient"},
                          {failure::throttled, "throttled"},
                          {failure::quota_exhausted, "quota_exhausted"},
                          {failure::reputation, "reputation"},
                          {failure::auth, "auth"},
                          {failure::recipient_permanent, "recipient_permanent"},
                          {failure::message_rejected, "message_rejected"},
                          {failure::unknown_outcome, "unknown_outcome"}});
}

TEST_CASE("an enum prints inside a sentence") {
    CHECK(fmt::format("{} is {} ({})", "rep1", mailers::ineligible_reason::cap_reached,
                      mailers::health_state::half_open) == "rep1 is cap_reached (half_open)");
}
