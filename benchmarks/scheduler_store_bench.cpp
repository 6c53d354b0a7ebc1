// The sequence scheduler at the store: does planning a due step cost the
// same with 1,000 enrollments as with millions? For each size N, enrolls N
// contacts (in commits of 1,000) of which --due fall due now and the rest
// months later, then plans every due step as the engine does: read a batch
// of 256 due enrollments through the (workspace, state, next_due) index,
// and commit for each the compare-and-set of the enrollment and the queue
// item of its step, one commit per batch. Reports enrollments/s, planned steps/s and the
// time per planned step, which should stay flat as N grows.
//
// Rendering the step's template and the send are the engine's and the
// transport's costs; they do not depend on N and are left out.
//
//   scheduler_store_bench --pg CONNINFO | --sqlite PATH
//                         [--sizes 1000,100000,1000000] [--due 1000] [--schema NAME]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mailers/store.hpp>
#include <string>
#include <vector>

#include "bench_store.hpp"
#include "bench_support.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct options : bench::store_choice {
    std::vector<std::size_t> sizes{1000, 100000, 1000000};
    std::size_t due = 1000;
};

mailers::time_point at(std::int64_t s) {
    return mailers::time_point{std::chrono::seconds{1'700'000'000 + s}};
}

double seconds_since(steady::time_point t0) {
    return std::chrono::duration<double>(steady::now() - t0).count();
}

mailers::enrollment contact(std::size_t n, bool due) {
    mailers::enrollment e;
    e.sequence_id = "outbound";
    e.address = "p" + std::to_string(n) + "@example" + std::to_string(n % 997) + ".com";
    e.display_name = "Prospect " + std::to_string(n);
    e.variables = R"({"first_name":"Ada","company":"Example"})";
    e.owner = "rep" + std::to_string(n % 30);
    e.actor = "ops";
    // Those not due now come due over the next months, as a live workspace's do.
    e.next_due = due ? at(0) : at(86'400 + static_cast<std::int64_t>(n % 10'000'000));
    e.enrolled_at = at(0);
    e.updated_at = at(0);
    return e;
}

}  // namespace

int main(int argc, char** argv) {
    options o;
    const bool ok = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (bench::take_store_option(o, k, v)) return true;
        if (k == "--sizes")
            o.sizes = bench::size_list(v);
        else if (k == "--due")
            o.due = std::stoul(v);
        else
            return false;
        return true;
    });
    if (!ok || !bench::one_store_chosen(o)) {
        std::fprintf(stderr,
                     "usage: scheduler_store_bench --pg CONNINFO | --sqlite PATH "
                     "[--sizes 1000,100000] [--due 1000] [--schema NAME]\n");
        return 2;
    }
    const std::string run = std::to_string(std::chrono::system_clock::now().time_since_epoch() /
                                           std::chrono::milliseconds{1});
    auto st = bench::open_store(o);
    std::printf("%-8s %10s %6s %14s %14s %12s %14s\n", "store", "enrolled", "due", "enrolls/s",
                "planned/s", "us/step", "us/due read");
    for (const std::size_t size : o.sizes) {
        const std::string ws = "sched-" + run + "-" + std::to_string(size);
        const std::size_t due = std::min(o.due, size);
        std::vector<mailers::store_op> ops;
        auto t0 = steady::now();
        for (std::size_t n = 0; n < size; ++n) {
            // The due ones are spread through the table, not its first rows.
            const bool is_due = n % (size / due) == 0 && n / (size / due) < due;
            ops.push_back(mailers::store_ops::enroll{contact(n, is_due)});
            if (ops.size() == 1000 || n + 1 == size) {
                st->commit(ws, ops);
                ops.clear();
            }
        }
        const double enroll_rate = static_cast<double>(size) / seconds_since(t0);

        std::size_t planned = 0, reads = 0;
        double read_seconds = 0;
        t0 = steady::now();
        for (;;) {
            const auto r0 = steady::now();
            const auto batch = st->due_enrollments(ws, at(10), 256);
            read_seconds += seconds_since(r0);
            ++reads;
            if (batch.empty()) break;
            ops.clear();
            for (const auto& e : batch) {
                auto next = e;
                next.plans = e.plans + 1;
                next.queue_key = "seq:outbound:" + std::to_string(e.id) + ":1/1";
                next.next_due.reset();
                next.step_due = at(10);
                mailers::queued_send item;
                item.idempotency_key = next.queue_key;
                item.mailbox = e.owner;
                item.recipient_domain = e.address.substr(e.address.find('@') + 1);
                item.origin = "sequence:outbound/1";
                item.enqueued_at = at(10);
                item.not_before = at(10);
                item.request = std::string(1200, 'x');  // about a rendered step's size
                ops.push_back(mailers::store_ops::update_enrollment{next, e.version, "", at(10)});
                ops.push_back(mailers::store_ops::enqueue{std::move(item)});
                ++planned;
            }
            st->commit(ws, ops);
        }
        const double plan_seconds = seconds_since(t0);
        std::printf("%-8s %10zu %6zu %14.0f %14.0f %12.1f %14.1f\n",
                    o.pg.empty() ? "sqlite" : "postgres", size, planned, enroll_rate,
                    static_cast<double>(planned) / plan_seconds,
                    plan_seconds * 1e6 / static_cast<double>(std::max<std::size_t>(planned, 1)),
                    read_seconds * 1e6 / static_cast<double>(reads));
        std::fflush(stdout);
    }
    return 0;
}
