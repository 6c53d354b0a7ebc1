// WAL checkpoints off the commit path.
//
// SQLite checkpoints a WAL database from inside the commit that takes the
// log past 1,000 pages: that commit writes the logged pages back into the
// database file and syncs it, and every reservation queued behind it waits
// for the disk. A checkpointer runs them on its own connection and thread
// instead; the store's connection only wakes it. A checkpoint of this kind
// (PASSIVE) never waits for, nor blocks, a writer or a reader.
#pragma once

#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

struct sqlite3;

namespace mailers::detail::sqlite {

class wal_checkpointer {
public:
    /// Opens its own connection to the database at `path` (which must exist
    /// and be in WAL mode) and takes over the checkpoints of `writer`:
    /// SQLite's automatic ones stop on `writer`, and a commit that leaves
    /// `wake_pages` or more in the log wakes the checkpointer, which also
    /// runs every `interval_ms` while there is anything to copy.
    wal_checkpointer(const std::string& path, sqlite3* writer, int wake_pages = 1000,
                     int interval_ms = 200);
    /// Stops the thread after its current checkpoint. `writer` must not
    /// commit afterwards: close it first, or give it back its automatic
    /// checkpoints with sqlite3_wal_autocheckpoint.
    ~wal_checkpointer();

    wal_checkpointer(const wal_checkpointer&) = delete;
    wal_checkpointer& operator=(const wal_checkpointer&) = delete;

    /// Checkpoints run so far, whatever they copied (for tests).
    unsigned long long runs() const;

private:
    static int on_commit(void* self, sqlite3*, const char*, int pages);
    void loop();

    struct state;
    std::unique_ptr<state> s_;
    std::thread thread_;
};

}  // namespace mailers::detail::sqlite
