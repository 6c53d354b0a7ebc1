#include "transports/smtp/pool.hpp"

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace mailers::detail::smtp {
namespace asio = boost::asio;

namespace {
constexpr auto tok = asio::as_tuple(asio::use_awaitable);

void abort_job(job& j, const std::string& label) {
    send_outcome o;
    o.diag.message = label + ": the transport was destroyed before the message was sent";
    std::move(j.handler)(make_error_code(errc::operation_aborted), std::move(o));
}
}  // namespace

connection_pool::worker::worker(asio::any_io_executor s, const client_config& cfg)
    : strand(std::move(s)), conn(std::make_shared<connection>(strand, cfg)), wake(strand) {}

connection_pool::connection_pool(asio::any_io_executor ex, smtp_params params)
    : ex_(std::move(ex)), cfg_(std::move(params)) {}

void connection_pool::submit(job j) {
    std::shared_ptr<worker> idle;
    {
        std::unique_lock lk(mu_);
        if (shut_) {
            lk.unlock();
            abort_job(j, cfg_.label);
            return;
        }
        if (!idle_.empty()) {
            // The most recently parked connection: the one least likely to
            // have been closed by the server meanwhile.
            idle = std::move(idle_.back());
            idle_.pop_back();
            idle->assigned.emplace(std::move(j));
        } else if (live_ < cfg_.params.max_connections) {
            ++live_;
        } else {
            queue_.push_back(std::move(j));
            return;
        }
    }
    if (idle)
        asio::post(idle->strand, [idle] { idle->wake.cancel(); });
    else
        spawn(std::move(j));
}

void connection_pool::check(any_check_handler handler) {
    auto strand = asio::make_strand(ex_);
    auto conn = std::make_shared<connection>(strand, cfg_);
    // Terminal cancellation of the check cancels the coroutine: the pending
    // socket operation ends at once and the next one throws. co_spawn
    // emits that on the strand because the completion is bound to it.
    auto slot = handler.get_cancellation_slot();
    auto h = std::make_shared<any_check_handler>(std::move(handler));
    auto cancelled = std::make_shared<bool>(false);
    asio::co_spawn(
        strand,
        [self = shared_from_this(), conn, cancelled]() -> asio::awaitable<send_result> {
            auto r = co_await conn->check();
            auto cs = co_await asio::this_coro::cancellation_state;
            *cancelled = cs.cancelled() != asio::cancellation_type::none;
            co_return r;
        },
        asio::bind_cancellation_slot(
            slot, asio::bind_executor(strand, [h, conn, cancelled, label = cfg_.label](
                                                  std::exception_ptr e, send_result r) {
                if (e || *cancelled) {
                    const bool aborted = *cancelled || [&] {
                        try {
                            std::rethrow_exception(e);
                        } catch (const boost::system::system_error& x) {
                            return x.code() == asio::error::operation_aborted;
                        } catch (...) {
                            return false;
                        }
                    }();
                    conn->close();
                    r = {};
                    r.ec = aborted ? make_error_code(errc::operation_aborted)
                                   : make_error_code(transport_errc::connection_failed);
                    r.outcome.diag.message =
                        label + (aborted ? ": the check was cancelled"
                                         : ": internal error during the check");
                }
                std::move (*h)(r.ec, std::move(r.outcome.diag));
            })));
}

void connection_pool::spawn(job j) {
    auto w = std::make_shared<worker>(asio::make_strand(ex_), cfg_);
    asio::co_spawn(w->strand, run(shared_from_this(), w, std::move(j)), asio::detached);
}

void connection_pool::remove_idle(const std::shared_ptr<worker>& w) {
    const auto it = std::find(idle_.begin(), idle_.end(), w);
    if (it != idle_.end()) idle_.erase(it);
}

// Hands a connection the oldest queued send, to pipeline behind the one it
// is sending. Only queued sends are taken: a queue forms only when every
// connection is busy, so this never keeps a send from an idle connection.
class connection_pool::pipeline_source final : public next_message_source {
public:
    pipeline_source(connection_pool& pool, worker& w) : pool_(pool), w_(w) {}

    const outbound* take_next() override {
        std::lock_guard lk(pool_.mu_);
        if (pool_.shut_ || pool_.queue_.empty()) return nullptr;
        w_.next.emplace(std::move(pool_.queue_.front()));
        pool_.queue_.pop_front();
        return w_.next->out.get();
    }

private:
    connection_pool& pool_;
    worker& w_;
};

asio::awaitable<send_result> connection_pool::process(worker& w, job& j) {
    send_result r;
    pipeline_source source(*this, w);
    try {
        r = co_await w.conn->send(*j.out, &source);
    } catch (const std::exception& e) {
        // Only resource exhaustion throws here; the handler still gets
        // exactly one completion, with the honest outcome.
        r = {};
        r.ec = make_error_code(w.conn->content_sent() ? transport_errc::outcome_unknown
                                                      : transport_errc::connection_failed);
        r.outcome.diag.message = cfg_.label + ": internal error: " + e.what();
        w.conn->close();
    }
    (r.ec ? failed_ : accepted_).fetch_add(1, std::memory_order_relaxed);
    co_return r;
}

asio::awaitable<void> connection_pool::run(std::shared_ptr<connection_pool> self,
                                           std::shared_ptr<worker> w, job j) {
    const auto idle_timeout = self->cfg_.params.idle_timeout;
    for (;;) {
        auto r = co_await self->process(*w, j);
        // The connection is handed back before the handler runs: a caller
        // that starts its next send from the handler finds it idle instead
        // of opening another. The handler may run here, inline; any send it
        // starts only posts to this strand, which wakes the worker once it
        // waits below.
        const auto complete = [&r](job& done) {
            std::move(done.handler)(r.ec, std::move(r.outcome));
        };
        // Whatever process() ended with, a job taken for pipelining is the
        // connection's next send (next_message_source's contract): its
        // commands may already be on the wire.
        if (w->next) {
            complete(j);
            j = std::move(*w->next);
            w->next.reset();
            continue;
        }

        enum class next { job, park, leave, gone } what;
        job done = std::move(j);
        {
            std::lock_guard lk(self->mu_);
            if (self->shut_) {
                what = next::leave;
            } else if (!self->queue_.empty()) {
                j = std::move(self->queue_.front());
                self->queue_.pop_front();
                what = next::job;
            } else if (!w->conn->is_open()) {
                --self->live_;
                what = next::gone;
            } else {
                self->idle_.push_back(w);
                what = next::park;
            }
        }
        complete(done);
        if (what == next::job) continue;
        if (what == next::gone) co_return;

        if (what == next::park) {
            const auto until = std::chrono::steady_clock::now() + idle_timeout;
            bool got_job = false;
            for (;;) {
                w->wake.expires_at(until);
                co_await w->wake.async_wait(tok);
                std::lock_guard lk(self->mu_);
                if (w->assigned) {
                    j = std::move(*w->assigned);
                    w->assigned.reset();
                    got_job = true;
                    break;
                }
                // A wake-up that is neither a send nor the end of the idle
                // period is a stale cancel from an earlier hand-off.
                if (self->shut_ || std::chrono::steady_clock::now() >= until) {
                    self->remove_idle(w);
                    break;
                }
            }
            if (got_job) continue;
        }

        // Leaving: the slot stays counted until the connection is closed, so
        // max_connections holds even while QUIT is in flight.
        co_await w->conn->quit();
        {
            std::lock_guard lk(self->mu_);
            if (!self->shut_ && !self->queue_.empty()) {
                j = std::move(self->queue_.front());
                self->queue_.pop_front();
                what = next::job;
            } else {
                --self->live_;
            }
        }
        if (what != next::job) co_return;
    }
}

void connection_pool::shutdown() {
    std::deque<job> queued;
    std::vector<std::shared_ptr<worker>> idle;
    {
        std::lock_guard lk(mu_);
        shut_ = true;
        queued.swap(queue_);
        idle.swap(idle_);
    }
    // Posted: a handler must not run inside the transport's destructor,
    // where the caller may hold a lock the handler takes.
    for (auto& j : queued)
        asio::post(ex_, [j = std::move(j), label = cfg_.label]() mutable { abort_job(j, label); });
    for (auto& w : idle) asio::post(w->strand, [w] { w->wake.cancel(); });
}

smtp_stats connection_pool::stats() const {
    smtp_stats s;
    s.connections_opened = cfg_.connections_opened.load(std::memory_order_relaxed);
    s.connection_failures = cfg_.connection_failures.load(std::memory_order_relaxed);
    s.messages_accepted = accepted_.load(std::memory_order_relaxed);
    s.messages_failed = failed_.load(std::memory_order_relaxed);
    std::lock_guard lk(mu_);
    s.connections_idle = idle_.size();
    s.connections_open = live_;
    return s;
}

}  // namespace mailers::detail::smtp
