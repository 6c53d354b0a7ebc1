#include "store/sqlite/checkpointer.hpp"

#include <sqlite3.h>

#include <chrono>

namespace mailers::detail::sqlite {

struct wal_checkpointer::state {
    sqlite3* db = nullptr;
    int wake_pages = 0;
    std::chrono::milliseconds interval{};
    mutable std::mutex mu;
    std::condition_variable cv;
    bool wake = false;
    bool stop = false;
    int logged = 0;  // pages in the log at the last commit
    unsigned long long runs = 0;
};

wal_checkpointer::wal_checkpointer(const std::string& path, sqlite3* writer, int wake_pages,
                                   int interval_ms)
    : s_(std::make_unique<state>()) {
    s_->wake_pages = wake_pages;
    s_->interval = std::chrono::milliseconds(interval_ms);
    if (sqlite3_open_v2(path.c_str(), &s_->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
        // Without its own connection it changes nothing: SQLite keeps
        // checkpointing in the writer's commits, as before.
        sqlite3_close(s_->db);
        s_->db = nullptr;
        return;
    }
    // Replaces SQLite's automatic checkpoints on the writer, which are
    // themselves a WAL hook.
    sqlite3_wal_hook(writer, &wal_checkpointer::on_commit, this);
    thread_ = std::thread([this] { loop(); });
}

wal_checkpointer::~wal_checkpointer() {
    if (thread_.joinable()) {
        {
            std::lock_guard lock(s_->mu);
            s_->stop = true;
        }
        s_->cv.notify_all();
        thread_.join();
    }
    if (s_->db) sqlite3_close(s_->db);
}

unsigned long long wal_checkpointer::runs() const {
    std::lock_guard lock(s_->mu);
    return s_->runs;
}

int wal_checkpointer::on_commit(void* self, sqlite3*, const char*, int pages) {
    auto& s = *static_cast<wal_checkpointer*>(self)->s_;
    bool wake = false;
    {
        std::lock_guard lock(s.mu);
        s.logged = pages;
        if (pages >= s.wake_pages && !s.wake) wake = s.wake = true;
    }
    if (wake) s.cv.notify_one();
    return SQLITE_OK;
}

void wal_checkpointer::loop() {
    std::unique_lock lock(s_->mu);
    while (!s_->stop) {
        s_->cv.wait_for(lock, s_->interval, [&] { return s_->stop || s_->wake; });
        if (s_->stop) break;
        const bool due = s_->wake || s_->logged > 0;
        s_->wake = false;
        if (!due) continue;
        s_->logged = 0;
        lock.unlock();
        // BUSY (another process's checkpoint is running) and errors leave
        // the log to the next round; the log only grows meanwhile.
        sqlite3_wal_checkpoint_v2(s_->db, nullptr, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        lock.lock();
        ++s_->runs;
    }
}

}  // namespace mailers::detail::sqlite
