#include "engine/commit_writer.hpp"

#include <fmt/format.h>

namespace mailers::detail {

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
    std::lock_guard lock(mu_);
    if (stopping_) {
        diagnostics d;
        d.message = "the engine is stopping";
        done(make_error_code(errc::operation_aborted), d);
        return;
    }
    for (auto& op : ops) ops_.push_back(std::move(op));
    entries_.push_back(entry{ops_.size(), std::move(done), {}});
    ++enqueued_;
    cv_.notify_one();
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
        std::span<const store_op> batch(ops.data() + begin, entries[j - 1].end - begin);
        error_code ec;
        diagnostics diag;
        try {
            store_->commit(workspace_, batch);
            commits_.fetch_add(1, std::memory_order_relaxed);
            ops_done_.fetch_add(batch.size(), std::memory_order_relaxed);
        } catch (const exception& e) {
            ec = e.code();
            diag = e.diag();
        } catch (const std::exception& e) {
            ec = make_error_code(errc::store_error);
            diag.message = e.what();
        }
        if (!ec) {
            for (std::size_t k = i; k < j; ++k) entries[k].done({}, {});
        } else if (j - i == 1) {
            log_.log(log_level::error, fmt::format("store commit failed: {}", diag.message));
            entries[i].done(ec, diag);
        } else {
            // Retry entry by entry so one bad write fails alone.
            std::size_t b = begin;
            for (std::size_t k = i; k < j; ++k) {
                std::span<const store_op> one(ops.data() + b, entries[k].end - b);
                error_code ec1;
                diagnostics d1;
                try {
                    store_->commit(workspace_, one);
                    commits_.fetch_add(1, std::memory_order_relaxed);
                    ops_done_.fetch_add(one.size(), std::memory_order_relaxed);
                } catch (const exception& e) {
                    ec1 = e.code();
                    d1 = e.diag();
                } catch (const std::exception& e) {
                    ec1 = make_error_code(errc::store_error);
                    d1.message = e.what();
                }
                if (ec1)
                    log_.log(log_level::error, fmt::format("store commit failed: {}", d1.message));
                entries[k].done(ec1, d1);
                b = entries[k].end;
            }
        }
        begin = entries[j - 1].end;
        i = j;
    }
}

}  // namespace mailers::detail
