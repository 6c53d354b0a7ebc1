// A decorator that makes another transport misbehave on purpose, so tests
// can walk every failure path of the code that sends: the Nth call failing,
// random failures, slow providers, and the dangerous case of a message that
// went out while the caller was told the outcome is unknown.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/provider_transport.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

namespace mailers {

/// What the fault injector does with one call.
struct fault_action {
    enum class kind {
        /// Forward to the inner transport and report what it reports.
        pass,
        /// Complete with `ec` and `diag` without reaching the inner transport.
        fail,
        /// Forward to the inner transport, wait for it to finish, then report
        /// `transport_errc::outcome_unknown` whatever it said: the connection
        /// that drops after DATA, where the provider has the message but the
        /// caller cannot know.
        unknown_after_delivery,
    };

    kind what = kind::pass;
    error_code ec;     ///< for `fail`: must be set
    diagnostics diag;  ///< for `fail`: handed to the caller as is

    static fault_action pass() { return {}; }
    static fault_action fail(error_code ec, diagnostics diag = {}) {
        return {kind::fail, ec, std::move(diag)};
    }
    static fault_action unknown_after_delivery() { return {kind::unknown_after_delivery, {}, {}}; }
};

/// Wraps a transport and injects faults into the sends that go through it.
///
///     auto capture = std::make_shared<mailers::capture_transport>(ex);
///     mailers::fault_injector fi(capture);
///     mailers::diagnostics d;
///     d.retry_after = std::chrono::seconds(30);
///     fi.fail_nth(3, make_error_code(mailers::transport_errc::rate_limited), d)
///         .add_latency(std::chrono::milliseconds(20));
///
/// Calls are numbered from 1 in the order `async_send` is called. For each
/// call the first rule that applies decides the action:
///   1. a `fail_nth` / `unknown_nth` entry for that call number;
///   2. the next step of the `script`, which that call consumes;
///   3. `fail_with_probability`: fail with the configured error;
///   4. `unknown_with_probability`: deliver, then report an unknown outcome;
///   5. otherwise pass through.
/// The probabilities draw from a `std::mt19937_64` (seeded with
/// `std::mt19937_64::default_seed` until `set_seed`) in call order, so a
/// fixed seed and a fixed sequence of calls give the same faults on every
/// run and platform. The decision is taken and counted when `async_send` is
/// called; any latency then delays carrying it out.
///
/// Injected failures carry the given diagnostics; when its `message` is
/// empty it is set to say the failure was injected and on which call.
///
/// Thread safety: every member function may be called concurrently from any
/// thread, including while sends are in flight; configuration changes apply
/// to calls initiated afterwards.
///
/// Executor: latency timers run on the executor given to the constructor
/// (the inner transport's by default). The handler runs on its associated
/// executor, else on that executor; never inside `async_send`.
///
/// Cancellation: not supported, like the `provider_transport` interface.
///
/// Lifetime: the injector must outlive the operations started on it. It
/// shares ownership of the inner transport.
class MAILERS_API fault_injector final : public provider_transport {
public:
    /// Wraps `inner` (not null), using its executor.
    explicit fault_injector(std::shared_ptr<provider_transport> inner);
    /// Wraps `inner` (not null); timers and default completions use `ex`.
    fault_injector(boost::asio::any_io_executor ex, std::shared_ptr<provider_transport> inner);

    /// The inner transport's name: the injector stands in for it.
    std::string_view name() const noexcept override { return inner_->name(); }

    const std::shared_ptr<provider_transport>& inner() const noexcept { return inner_; }

    /// Call number `n` (1-based, counted since construction or `clear()`)
    /// fails with `ec` (which must be set) and `diag`. Replaces any earlier
    /// entry for `n`.
    fault_injector& fail_nth(std::uint64_t n, error_code ec, diagnostics diag = {});

    /// Call number `n` is delivered, then reported as an unknown outcome.
    fault_injector& unknown_nth(std::uint64_t n);

    /// Every call not decided by an earlier rule fails with probability `p`
    /// (0 to 1) with `ec` (which must be set) and `diag`. Replaces the
    /// earlier probability and error.
    fault_injector& fail_with_probability(double p, error_code ec, diagnostics diag = {});

    /// Every call not decided by an earlier rule is delivered and then
    /// reported as an unknown outcome with probability `p` (0 to 1).
    fault_injector& unknown_with_probability(double p);

    /// Every call waits `d` on a timer before it is forwarded or failed.
    /// Replaces the earlier latency; zero removes it.
    fault_injector& add_latency(std::chrono::steady_clock::duration d);

    /// The next calls take `steps` in order; later calls fall back to the
    /// other rules. Replaces any steps not yet taken.
    fault_injector& script(std::vector<fault_action> steps);

    /// Reseeds the generator behind the probabilities.
    fault_injector& set_seed(std::uint64_t seed);

    /// Removes every fault and the latency, and zeroes the counters, so
    /// call numbering starts again at 1. The generator is left as it is.
    void clear();

    /// Calls since construction or `clear()`.
    std::uint64_t calls() const;
    /// Calls failed without reaching the inner transport.
    std::uint64_t injected_failures() const;
    /// Calls delivered to the inner transport and reported as unknown.
    std::uint64_t injected_unknowns() const;

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler handler) override;
    /// The inner transport's check: faults are injected into sends only.
    void do_check(any_check_handler handler) override;

private:
    double draw();

    std::shared_ptr<provider_transport> inner_;

    mutable std::mutex mutex_;
    std::map<std::uint64_t, fault_action> nth_;
    std::deque<fault_action> script_;
    double fail_p_ = 0.0;
    fault_action fail_action_;
    double unknown_p_ = 0.0;
    std::chrono::steady_clock::duration latency_{};
    std::mt19937_64 rng_;
    std::uint64_t calls_ = 0;
    std::uint64_t injected_failures_ = 0;
    std::uint64_t injected_unknowns_ = 0;
};

}  // namespace mailers
