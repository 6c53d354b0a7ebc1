// The engine's one blocking worker: applies store writes in group commits
// and runs store reads in order behind them. Nothing here touches the
// host's executor; completions are plain callbacks run on the writer thread,
// which the engine turns into posts where a handler must resume.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mailers/error.hpp>
#include <mailers/logger.hpp>
#include <mailers/store.hpp>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

namespace mailers::detail {

/// What a queued write came to: an error, or the store's results for its
/// ops (in order) and the change seq its commit published.
struct __attribute__((visibility("hidden"))) commit_reply {
    error_code ec;
    diagnostics diag;
    std::vector<op_result> ops;
    std::uint64_t change_seq = 0;
    /// True when this write was the only one of its group commit to change
    /// objects or suppressions: the change seq is then its alone.
    bool sole_change = false;
};

// Hidden like commit_reply, which its queue entries hold: code built with
// default visibility (tests, benchmarks) would otherwise see a visible
// class holding a hidden type.
class __attribute__((visibility("hidden"))) commit_writer {
public:
    using done_fn = std::function<void(commit_reply&&)>;

    commit_writer(std::shared_ptr<store> st, std::string workspace, std::size_t max_batch,
                  logger log);
    ~commit_writer();

    /// Queues `ops` for the next group commit; `done` runs on the writer
    /// thread once they are durable (or failed). Entries are applied in
    /// queue order; a failing entry fails alone (the rest of its batch is
    /// retried entry by entry), except after errc::commit_outcome_unknown,
    /// which every entry of the batch gets. Audit records are linked by the
    /// store.
    void enqueue(std::vector<store_op> ops, done_fn done);
    /// Runs `task` on the writer thread after everything queued before it.
    void run(std::function<void(store&)> task);
    /// Blocks until everything queued so far has been applied.
    void flush();
    /// Stops after draining the queue; later writes fail with
    /// operation_aborted. Idempotent.
    void stop();

    std::uint64_t commits() const noexcept { return commits_.load(std::memory_order_relaxed); }
    std::uint64_t committed_ops() const noexcept {
        return ops_done_.load(std::memory_order_relaxed);
    }

private:
    struct entry {
        std::size_t end = 0;  // ops_[begin, end) belong to this entry
        done_fn done;
        std::function<void(store&)> task;  // set for read tasks (no ops)
    };
    void loop();
    void apply(std::vector<store_op>& ops, std::vector<entry>& entries);
    bool commit(std::span<store_op> ops, commit_result& out, error_code& ec, diagnostics& diag);

    std::shared_ptr<store> store_;
    std::string workspace_;
    std::size_t max_batch_;
    logger log_;

    std::mutex mu_;
    std::condition_variable cv_;
    std::condition_variable idle_cv_;
    std::vector<store_op> ops_;
    std::vector<entry> entries_;
    std::uint64_t enqueued_ = 0, applied_ = 0;
    bool stopping_ = false;
    std::atomic<std::uint64_t> commits_{0}, ops_done_{0};
    std::thread thread_;
};

}  // namespace mailers::detail
