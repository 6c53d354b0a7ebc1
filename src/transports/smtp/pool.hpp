// The connections of one SMTP transport: at most max_connections workers,
// each owning one connection on its own strand, taking sends from a FIFO
// queue and parking while idle until a send arrives or idle_timeout ends.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <deque>
#include <mailers/provider_transport.hpp>
#include <mailers/transports/smtp_transport.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "transports/smtp/connection.hpp"

namespace mailers::detail::smtp {

struct job {
    job(std::shared_ptr<const outbound> o, any_send_handler h) noexcept
        : out(std::move(o)), handler(std::move(h)) {}
    job(job&&) noexcept = default;
    // Not defaulted: Boost 1.81's any_completion_handler move assignment
    // builds its temporary from `other` as an lvalue, which picks the
    // converting constructor, whose wrapper is built from an lvalue the same
    // way: it recurses until the stack runs out. Moving into a temporary
    // and swapping it in, as later Boost does, never assigns a handler.
    job& operator=(job&& other) noexcept {
        out = std::move(other.out);
        any_send_handler(std::move(other.handler)).swap(handler);
        return *this;
    }

    std::shared_ptr<const outbound> out;
    any_send_handler handler;
};

class connection_pool : public std::enable_shared_from_this<connection_pool> {
public:
    /// Throws `mailers::exception` when the CA certificates cannot be loaded.
    connection_pool(boost::asio::any_io_executor ex, smtp_params params);

    void submit(job j);

    /// Opens and QUITs a session on a connection of its own, outside the
    /// pool's limit: a check of the server and the credentials.
    void check(any_check_handler handler);

    /// Refuses new sends, fails queued ones with errc::operation_aborted and
    /// closes idle connections; busy ones close after their current send.
    void shutdown();

    smtp_stats stats() const;
    const smtp_params& params() const noexcept { return cfg_.params; }

private:
    struct worker {
        worker(boost::asio::any_io_executor strand, const client_config& cfg);
        boost::asio::any_io_executor strand;
        std::shared_ptr<connection> conn;
        boost::asio::steady_timer wake;  // parks the worker while idle
        std::optional<job> assigned;     // guarded by the pool's mutex
        std::optional<job> next;         // pipelined behind the current send; strand only
    };
    class pipeline_source;

    void spawn(job j);
    static boost::asio::awaitable<void> run(std::shared_ptr<connection_pool> self,
                                            std::shared_ptr<worker> w, job first);
    /// Sends `j` on the worker's connection; the caller completes its handler.
    boost::asio::awaitable<send_result> process(worker& w, job& j);
    void remove_idle(const std::shared_ptr<worker>& w);

    boost::asio::any_io_executor ex_;
    client_config cfg_;

    mutable std::mutex mu_;
    std::deque<job> queue_;
    std::vector<std::shared_ptr<worker>> idle_;
    std::size_t live_ = 0;
    bool shut_ = false;

    std::atomic<std::uint64_t> accepted_{0};
    std::atomic<std::uint64_t> failed_{0};
};

}  // namespace mailers::detail::smtp
