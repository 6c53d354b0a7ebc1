// A fixed-size set of connections shared by one store handle. A connection
// found broken is dropped; the next caller opens a new one, waiting for the
// server to come back up to the reconnect timeout.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/postgres/pg.hpp"

namespace mailers::pg {

struct pool_params {
    std::string conninfo;
    std::vector<std::string> redact;  ///< secrets that must never appear in messages
    std::size_t size = 4;
    std::chrono::milliseconds connect_timeout{5000};
};

class pool {
public:
    explicit pool(pool_params p);

    /// A connection lent to one caller; returned on destruction, or dropped
    /// when it broke.
    class lease {
    public:
        lease(pool& p, std::unique_ptr<connection> c) : p_(&p), c_(std::move(c)) {}
        lease(lease&& o) noexcept : p_(o.p_), c_(std::move(o.c_)) { o.p_ = nullptr; }
        lease& operator=(lease&&) = delete;
        ~lease();
        connection& operator*() const noexcept { return *c_; }
        connection* operator->() const noexcept { return c_.get(); }
        /// Closes the connection instead of returning it.
        void discard() noexcept { c_.reset(); }

    private:
        pool* p_;
        std::unique_ptr<connection> c_;
    };

    /// Waits for a free slot, connecting when the slot has no live
    /// connection. Throws pg::error when connecting fails (the caller
    /// decides whether to wait and try again).
    lease acquire();

    /// Opens a connection outside the pool (migrations, tests).
    std::unique_ptr<connection> connect() const;

private:
    void give_back(std::unique_ptr<connection> c) noexcept;

    pool_params params_;
    std::mutex m_;
    std::condition_variable cv_;
    std::vector<std::unique_ptr<connection>> idle_;
    std::size_t lent_ = 0;
};

}  // namespace mailers::pg
