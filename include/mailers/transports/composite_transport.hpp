// Transports made of other transports, for mail that is not bound to one
// mailbox (transactional mail through a provider pair, say):
//
//   failover(a b)   — always a first; b only when a certainly did not send
//   roundrobin(a b) — a, b, a, b ...; on a certain failure, the next one
//
// The rule is the engine's, `mailers::may_retry()`: the next child is tried
// only when the previous one certainly did not send the message (transient,
// throttled, sender quota, auth or reputation failures). An unknown outcome,
// an error no failure class recognises, a permanent recipient failure or a
// rejected message ends the attempt at once — that is how a message goes out
// twice, or is retried where it can never succeed.
//
// A child that failed that way is skipped for `retry_after` (or 60 s) while
// another is available.
//
// Thread safety: `async_send` may be called concurrently. Executor: as the
// base class. Lifetime: the composite keeps its children alive.
#pragma once

#include <atomic>
#include <chrono>
#include <mailers/config.hpp>
#include <mailers/provider_transport.hpp>
#include <memory>
#include <mutex>
#include <vector>

namespace mailers {

class MAILERS_API composite_transport final : public provider_transport {
public:
    enum class mode { failover, roundrobin };

    /// Throws mailers::exception (errc::invalid_argument) without children.
    composite_transport(boost::asio::any_io_executor ex, mode m,
                        std::vector<std::shared_ptr<provider_transport>> children);

    std::string_view name() const noexcept override {
        return mode_ == mode::failover ? "failover" : "roundrobin";
    }
    const std::vector<std::shared_ptr<provider_transport>>& children() const noexcept {
        return children_;
    }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;
    /// Checks every child in order and fails with the first child that
    /// fails: a failover group whose second provider's key expired is
    /// broken even while the first one works.
    void do_check(any_check_handler handler) override;

private:
    struct attempt;
    void check_from(std::size_t i, std::shared_ptr<any_check_handler> h, std::string done);
    void try_next(std::shared_ptr<attempt> a);
    bool down(std::size_t i, std::chrono::steady_clock::time_point now) const;

    mode mode_;
    std::vector<std::shared_ptr<provider_transport>> children_;
    std::atomic<std::size_t> next_{0};
    mutable std::mutex mu_;
    std::vector<std::chrono::steady_clock::time_point> down_until_;
};

}  // namespace mailers
