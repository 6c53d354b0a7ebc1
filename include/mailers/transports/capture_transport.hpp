// A transport that sends nothing and remembers everything, for a host
// application's own tests: send through it, then assert on what was sent.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstddef>
#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/provider_transport.hpp>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

namespace mailers {

/// Accepts every message and keeps a copy of it.
///
/// Each accepted send completes with an empty error code and
/// `provider_message_id` "capture-1", "capture-2", ... in the order the sends
/// were initiated. Numbering is never reset, not even by `clear()`, so an id
/// always names one send.
///
/// The copy is taken when the send is initiated, so changing an `outbound`
/// afterwards through another pointer does not change what was captured.
///
/// Thread safety: every member function may be called concurrently from
/// any thread, including while sends are in flight.
///
/// Executor: the handler runs on its associated executor, else on the
/// executor given to the constructor; never inside `async_send`.
///
/// Lifetime: the transport must outlive the operations started on it. The
/// accessors return copies, which stay valid after `clear()` or destruction.
class MAILERS_API capture_transport final : public provider_transport {
public:
    explicit capture_transport(boost::asio::any_io_executor ex);

    std::string_view name() const noexcept override { return "capture"; }

    /// Every captured send, oldest first.
    std::vector<outbound> sent() const;

    /// How many sends are held (since construction or the last `clear()`).
    std::size_t count() const;

    /// The most recent captured send, or nothing when none is held.
    std::optional<outbound> last() const;

    /// Forgets what was captured. Ids keep counting up.
    void clear();

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;

private:
    mutable std::mutex mutex_;
    std::vector<outbound> sent_;
    std::uint64_t next_id_ = 1;
};

}  // namespace mailers
