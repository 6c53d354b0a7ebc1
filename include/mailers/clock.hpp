// Time sources. The engine reads time only through a `clock`, so tests and
// demos can fast-forward a simulated day with `manual_clock`.
#pragma once

#include <atomic>
#include <chrono>
#include <mailers/config.hpp>
#include <memory>

namespace mailers {

using time_point = std::chrono::time_point<std::chrono::system_clock, std::chrono::microseconds>;
using duration = std::chrono::microseconds;

/// Abstract time source. Implementations must be thread-safe.
class MAILERS_API clock {
public:
    virtual ~clock() = default;
    virtual time_point now() const noexcept = 0;
};

/// Wall-clock time (std::chrono::system_clock).
class MAILERS_API system_clock final : public clock {
public:
    time_point now() const noexcept override;
};

/// A clock that moves only when told to. Thread-safe.
class MAILERS_API manual_clock final : public clock {
public:
    explicit manual_clock(time_point start) noexcept : now_(start.time_since_epoch().count()) {}
    time_point now() const noexcept override {
        return time_point{duration{now_.load(std::memory_order_acquire)}};
    }
    void set(time_point t) noexcept {
        now_.store(t.time_since_epoch().count(), std::memory_order_release);
    }
    void advance(duration d) noexcept { now_.fetch_add(d.count(), std::memory_order_acq_rel); }

private:
    std::atomic<duration::rep> now_;
};

/// A shared system clock instance, the engine's default.
MAILERS_API std::shared_ptr<clock> default_clock();

}  // namespace mailers
