// A transport that accepts everything and does nothing, for benchmarks and
// for measuring the library's own overhead.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/provider_transport.hpp>
#include <string_view>

namespace mailers {

/// Accepts every message at once without looking at it.
///
/// Each send completes with an empty error code and `provider_message_id`
/// "null-1", "null-2", ... Below ten billion sends the id fits the standard
/// library's small-string buffer, so a send allocates nothing beyond what
/// `provider_transport` itself needs to post the completion.
///
/// Thread safety: every member function may be called concurrently from
/// any thread; the counter is a lock-free atomic.
///
/// Executor: the handler runs on its associated executor, else on the
/// executor given to the constructor; never inside `async_send`.
///
/// Lifetime: the transport must outlive the operations started on it.
class MAILERS_API null_transport final : public provider_transport {
public:
    explicit null_transport(boost::asio::any_io_executor ex);

    std::string_view name() const noexcept override { return "null"; }

    /// How many sends have been accepted since construction.
    std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;

private:
    std::atomic<std::uint64_t> count_{0};
};

}  // namespace mailers
