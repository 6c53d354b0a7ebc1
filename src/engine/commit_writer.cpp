#include "engine/commit_writer.hpp"

#include <fmt/format.h>

#include <iterator>
#include <variant>

namespace mailers::detail {

namespace {
// Whether ops change what the change feed carries (objects, suppressions).
bool publishes_change(std::span<const store_op> ops) {
    for (const auto& op : ops)
        if (std::holds_alternative<store_ops::put_object>(op) ||
            std::holds_alternative<store_ops::delete_object>(op) ||
            std::holds_alternative<store_ops::put_suppression>(op) ||
            std::holds_alternative<store_ops::delete_suppression>(op))
            return true;
    return false;
}
}  // namespace

commit_writer::commit_writer(std::shared_ptr<store> st, std::string workspace,
                             std::size_t max_batch, logger log)
    : store_(std::move(st)),
      workspace_(std::move(workspace)),
      max_batch_(std::max<std::size_t>(1, max_batch)),
      log_(std::move(log)) {
    thread_ = std::thread([this] { loop(); });
}

commit_writer::~commit_writer() {
    stop();
}

void commit_writer::enqueue(std::vector<store_op> ops, done_fn done) {
    std::unique_lock lock(mu_);
    if (stopping_) {
        lock.unlock();
        commit_reply r;
        r.ec = make_error_code(errc::operation_aborted);
        r.diag.message = "the engine is stopping";
        done(std::move(r));
        return;
    }
    for (auto& op : ops) ops_.push_back(std::move(op));
    entries_.push_back(entry{ops_.size(), std::move(done), {}});
    ++enqueued_;
    cv_.notify_one();
}

bool commit_writer::commit(std::span<store_op> ops, commit_result& out, error_code& ec,
                           diagnostics& diag) {
    try {
        out = store_->commit(workspace_, ops);
        commits_.fetch_add(1, std::memory_order_relaxed);
        ops_done_.fetch_add(ops.size(), std::memory_order_relaxed);
        return true;
    } catch (const exception& e) {
        ec = e.code();
        diag = e.diag();
    } catch (const std::exception& e) {
        ec = make_error_code(errc::store_error);
        diag.message = e.what();
    }
    return false;
}

void commit_writer::run(std::function<void(store&)> task) {
    std::lock_guard lock(mu_);
    entries_.push_back(entry{ops_.size(), {}, std::move(task)});
    ++enqueued_;
    cv_.notify_one();
}

void commit_writer::flush() {
    std::unique_lock lock(mu_);
    auto target = enqueued_;
    idle_cv_.wait(lock, [&] { return applied_ >= target; });
}

void commit_writer::stop() {
    {
        std::lock_guard lock(mu_);
        if (stopping_ && !thread_.joinable()) return;
        stopping_ = true;
        cv_.notify_one();
    }
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

void commit_writer::loop() {
    std::vector<store_op> ops;
    std::vector<entry> entries;
    for (;;) {
        {
            std::unique_lock lock(mu_);
            cv_.wait(lock, [&] { return stopping_ || !entries_.empty(); });
            if (entries_.empty() && stopping_) return;
            ops.swap(ops_);
            entries.swap(entries_);
        }
        apply(ops, entries);
        {
            std::lock_guard lock(mu_);
            applied_ += entries.size();
        }
        idle_cv_.notify_all();
        ops.clear();
        entries.clear();
    }
}

void commit_writer::apply(std::vector<store_op>& ops, std::vector<entry>& entries) {
    // Split the queue into runs of write entries (committed together, up to
    // max_batch ops per transaction) separated by read tasks, which must see
    // every write queued before them.
    std::size_t i = 0, begin = 0;
    while (i < entries.size()) {
        if (entries[i].task) {
            try {
                entries[i].task(*store_);
            } catch (const std::exception& e) {
                log_.log(log_level::error, fmt::format("store read failed: {}", e.what()));
            }
            begin = entries[i].end;
            ++i;
            continue;
        }
        std::size_t j = i;
        while (j < entries.size() && !entries[j].task &&
               (j == i || entries[j].end - begin <= max_batch_))
            ++j;
        std::span<store_op> batch(ops.data() + begin, entries[j - 1].end - begin);
        error_code ec;
        diagnostics diag;
        commit_result result;
        std::size_t changers = 0;
        {
            std::size_t b = begin;
            for (std::size_t k = i; k < j; ++k) {
                changers += publishes_change(std::span(ops.data() + b, entries[k].end - b));
                b = entries[k].end;
            }
        }
        // Each entry gets the results of its own ops.
        auto reply_ok = [&](std::size_t k, std::size_t from, std::size_t first_op) {
            commit_reply r;
            r.change_seq = result.change_seq;
            const bool mine = publishes_change(std::span(ops.data() + from, entries[k].end - from));
            r.sole_change = mine && (changers == 1 || entries[k].end - from == result.ops.size());
            const auto n = entries[k].end - from;
            if (result.ops.size() >= first_op + n)
                r.ops.assign(std::make_move_iterator(result.ops.begin() +
                                                     static_cast<std::ptrdiff_t>(first_op)),
                             std::make_move_iterator(result.ops.begin() +
                                                     static_cast<std::ptrdiff_t>(first_op + n)));
            entries[k].done(std::move(r));
        };
        if (commit(batch, result, ec, diag)) {
            std::size_t b = begin;
            for (std::size_t k = i; k < j; ++k) {
                reply_ok(k, b, b - begin);
                b = entries[k].end;
            }
        } else if (j - i == 1 || ec == errc::commit_outcome_unknown) {
            // Applying a batch that may already be applied again would
            // double its writes: each entry hears the truth instead.
            log_.log(log_level::error, fmt::format("store commit failed: {}", diag.message));
            for (std::size_t k = i; k < j; ++k) entries[k].done(commit_reply{ec, diag, {}, 0});
        } else {
            // Retry entry by entry so one bad write fails alone.
            std::size_t b = begin;
            for (std::size_t k = i; k < j; ++k) {
                std::span<store_op> one(ops.data() + b, entries[k].end - b);
                error_code ec1;
                diagnostics d1;
                result = {};
                if (commit(one, result, ec1, d1)) {
                    reply_ok(k, b, 0);
                } else {
                    log_.log(log_level::error, fmt::format("store commit failed: {}", d1.message));
                    entries[k].done(commit_reply{ec1, d1, {}, 0});
                }
                b = entries[k].end;
            }
        }
        begin = entries[j - 1].end;
        i = j;
    }
}

}  // namespace mailers::detail
