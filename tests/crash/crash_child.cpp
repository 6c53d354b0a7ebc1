// The process the crash test kills. It runs an engine on an SQLite file and
// sends messages key-0 .. key-(N-1) through a transport that appends a line
// to a journal file and fsyncs it *before* reporting the send accepted: the
// journal is what really went out, whatever the ledger says.
//
//     crash_child <db> <journal> <messages> <seed>
//
// Every start sends every key again; the engine refuses the ones its ledger
// already has (idempotency keys), so a restart continues where the killed
// run stopped. Exits 0 once every send has completed.
#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mailers/engine.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transports/fault_injector.hpp>
#include <semaphore>
#include <sstream>
#include <string>
#include <thread>

#include "crash_common.hpp"

namespace {

using namespace mailers;
namespace asio = boost::asio;

/// Appends "key<TAB>mailbox<TAB>recipient\n" with one write() on an O_APPEND
/// descriptor, fsyncs, and only then completes. Runs the blocking part on
/// its own threads, as a network transport would wait on a socket.
class journal_transport final : public provider_transport {
public:
    journal_transport(asio::any_io_executor ex, int fd, asio::thread_pool& io)
        : provider_transport(std::move(ex)), fd_(fd), io_(io) {}
    std::string_view name() const noexcept override { return "journal"; }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler h) override {
        asio::post(io_, [this, out = std::move(out), h = std::move(h)]() mutable {
            std::string key;
            for (const auto& f : out->msg.headers)
                if (f.name == "X-Crash-Key") key = f.value;
            std::string line = key + "\t" + out->mailbox_id + "\t" + out->env.rcpt_to.at(0) + "\n";
            if (::write(fd_, line.data(), line.size()) != static_cast<ssize_t>(line.size()) ||
                ::fsync(fd_) != 0) {
                std::perror("journal");
                std::_Exit(3);
            }
            std::move(h)(error_code{}, send_outcome{"journal-" + key, {}});
        });
    }

private:
    int fd_;
    asio::thread_pool& io_;
};

}  // namespace

int main(int argc, char** argv) {
    if (argc != 5) {
        std::cerr << "usage: crash_child <db> <journal> <messages> <seed>\n";
        return 2;
    }
    const std::string db = argv[1];
    const std::string journal = argv[2];
    const std::uint64_t n = std::strtoull(argv[3], nullptr, 10);
    const std::uint64_t seed = std::strtoull(argv[4], nullptr, 10);

    const int fd = ::open(journal.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        std::perror("open journal");
        return 2;
    }
    asio::io_context ioc;
    asio::thread_pool journal_io(2);
    engine_params params;
    params.storage = open_sqlite_store({db, mailers::open_mode::open_or_create});
    params.random_seed = seed;
    auto eng = std::make_unique<engine>(ioc.get_executor(), params);
    const principal admin{"crash-child", "Crash test"};

    // Faults so that the ledger gets failovers, failures and unknown
    // outcomes of its own, besides the ones the kills leave.
    auto journal_a = std::make_shared<journal_transport>(ioc.get_executor(), fd, journal_io);
    auto journal_b = std::make_shared<journal_transport>(ioc.get_executor(), fd, journal_io);
    auto fa = std::make_shared<fault_injector>(journal_a);
    auto fb = std::make_shared<fault_injector>(journal_b);
    fa->set_seed(seed).fail_with_probability(0.03,
                                             make_error_code(transport_errc::temporary_reply));
    fb->set_seed(seed + 1).fail_with_probability(
        0.02, make_error_code(transport_errc::connection_failed));
    fb->unknown_with_probability(0.01);
    eng->add_provider(admin, "journal-a", fa);
    eng->add_provider(admin, "journal-b", fb);

    // Set-up is repeated at every start (a kill may have cut it short);
    // each step is idempotent and atomic.
    for (const auto& m : crash::mailboxes(n))
        if (eng->find_mailbox(m.id) != m) eng->upsert_mailbox(admin, m);
    if (eng->find_pool(crash::pool().id) != crash::pool()) eng->upsert_pool(admin, crash::pool());
    if (eng->suppression_count() < crash::suppression_entries(n)) {
        std::istringstream csv(crash::suppression_csv(n));
        eng->import_suppressions(admin, csv, "crash-test");
    }

    auto work = asio::make_work_guard(ioc);
    std::thread io1([&] { ioc.run(); }), io2([&] { ioc.run(); });
    std::counting_semaphore<> in_flight(32);
    std::atomic<std::uint64_t> done{0};
    std::atomic<std::uint64_t> outcome[5] = {};  // accepted, duplicate, suppressed, unknown, other
    for (std::uint64_t i = 0; i < n; ++i) {
        send_request r;
        r.pool = crash::pool().id;
        auto to = crash::recipient(i);
        auto at = to.find('@');
        r.to = address{to.substr(0, at), to.substr(at + 1), {}};
        r.subject = "crash " + std::to_string(i);
        r.text = "body";
        r.idempotency_key = crash::key(i);
        r.headers.push_back({"X-Crash-Key", r.idempotency_key});
        in_flight.acquire();
        eng->async_send(std::move(r), [&](error_code ec, send_result) {
            int k = !ec                              ? 0
                    : ec == errc::duplicate          ? 1
                    : ec == errc::suppressed         ? 2
                    : ec == failure::unknown_outcome ? 3
                                                     : 4;
            ++outcome[k];
            ++done;
            in_flight.release();
        });
    }
    for (int i = 0; i < 32; ++i) in_flight.acquire();
    eng.reset();
    work.reset();
    io1.join();
    io2.join();
    journal_io.join();
    ::close(fd);
    std::cout << "done " << done.load() << " accepted " << outcome[0].load() << " duplicate "
              << outcome[1].load() << " suppressed " << outcome[2].load() << " unknown "
              << outcome[3].load() << " other " << outcome[4].load() << std::endl;
    return done.load() == n ? 0 : 1;
}
