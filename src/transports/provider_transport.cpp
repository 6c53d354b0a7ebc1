#include <mailers/provider_transport.hpp>

#include <boost/asio/append.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/dispatch.hpp>

#include "core/post.hpp"

namespace mailers {
namespace {

// How many async_send calls are running on this thread, at any depth and on
// any transport. While none is, a completion cannot be inside its own
// initiating call, so it need not wait for the scheduler.
thread_local int initiating = 0;

struct initiation_scope {
    initiation_scope() noexcept { ++initiating; }
    ~initiation_scope() { --initiating; }
    initiation_scope(const initiation_scope&) = delete;
    initiation_scope& operator=(const initiation_scope&) = delete;
};

}  // namespace

void provider_transport::send_impl(std::shared_ptr<const outbound> out, any_send_handler handler) {
    // A backend may complete inside do_send (a message that does not
    // render, a transport with nothing to wait for): that completion is
    // posted, so the handler never runs inside the initiating call. One that
    // comes later, from an I/O completion, is dispatched: the handler runs
    // on its associated executor at once when this thread may run it,
    // sparing a trip through the scheduler on every send.
    initiation_scope scope;
    do_send(std::move(out), any_send_handler([h = std::move(handler), ex = ex_](
                                                 error_code ec, send_outcome outcome) mutable {
                if (initiating > 0) {
                    detail::complete_later(ex, std::move(h), ec, std::move(outcome));
                    return;
                }
                try {
                    boost::asio::dispatch(
                        ex, boost::asio::append(std::move(h), ec, std::move(outcome)));
                } catch (...) {
                    // The handler threw while running at once, inside the
                    // backend's completion, which must still finish (hand a
                    // connection back, answer the send pipelined behind).
                    // Asio's io_context and thread_pool executors already
                    // keep such an exception for run(); this does the same
                    // for any other executor.
                    boost::asio::post(ex, [e = std::current_exception()] {
                        std::rethrow_exception(e);
                    });
                }
            }));
}

void provider_transport::do_check(any_check_handler handler) {
    diagnostics d;
    d.message = std::string(name()) + ": nothing to check (this transport holds no connection)";
    std::move(handler)(error_code{}, std::move(d));
}

void provider_transport::check_impl(any_check_handler handler) {
    // A check is rare: its completion is always posted, never dispatched.
    // The backend sees the caller's cancellation slot.
    auto slot = handler.get_cancellation_slot();
    do_check(any_check_handler(boost::asio::bind_cancellation_slot(
        slot, [h = std::move(handler), ex = ex_](error_code ec, diagnostics d) mutable {
            detail::complete_later(ex, std::move(h), ec, std::move(d));
        })));
}

}  // namespace mailers
