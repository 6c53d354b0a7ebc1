#include "engine/commit_writer.hpp"

#include <fmt/format.h>

#include <mailers/audit.hpp>
#include <variant>

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

void commit_writer::set_audit_head(std::uint64_t seq, std::string hash) {
    std::lock_guard lock(mu_);
    audit_ = audit_head{seq, std::move(hash)};
}

commit_writer::audit_head commit_writer::link_audit(std::span<store_op> ops, audit_head head) {
    for (auto& op : ops) {
        auto* a = std::get_if<store_ops::append_audit>(&op);
        if (!a) continue;
        a->record.seq = head.seq + 1;
        a->record.prev_hash = std::move(head.hash);
        a->record.hash = audit_hash(a->record);
        head = audit_head{a->record.seq, a->record.hash};
    }
    return head;
}

// Commits `ops` with their audit records linked onto the chain; the chain
// moves on only when the commit succeeds.
bool commit_writer::commit(std::span<store_op> ops, error_code& ec, diagnostics& diag) {
    auto next = link_audit(ops, audit_);
    try {
        store_->commit(workspace_, ops);
        commits_.fetch_add(1, std::memory_order_relaxed);
        ops_done_.fetch_add(ops.size(), std::memory_order_relaxed);
        audit_ = std::move(next);
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
        if (commit(batch, ec, diag)) {
            for (std::size_t k = i; k < j; ++k) entries[k].done({}, {});
        } else if (j - i == 1) {
            log_.log(log_level::error, fmt::format("store commit failed: {}", diag.message));
            entries[i].done(ec, diag);
        } else {
            // Retry entry by entry so one bad write fails alone.
            std::size_t b = begin;
            for (std::size_t k = i; k < j; ++k) {
                std::span<store_op> one(ops.data() + b, entries[k].end - b);
                error_code ec1;
                diagnostics d1;
                if (!commit(one, ec1, d1))
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
