#include <boost/asio/steady_timer.hpp>
#include <mailers/transports/fault_injector.hpp>
#include <string>

namespace mailers {
namespace {

std::shared_ptr<provider_transport> require_inner(std::shared_ptr<provider_transport> inner) {
    if (!inner) {
        throw exception(make_error_code(errc::invalid_argument),
                        "fault_injector: the inner transport is null");
    }
    return inner;
}

void require_failure_code(const error_code& ec) {
    if (!ec) {
        throw exception(make_error_code(errc::invalid_argument),
                        "fault_injector: an injected failure needs a non-empty error code");
    }
}

void check_probability(double p) {
    if (!(p >= 0.0 && p <= 1.0)) {
        throw exception(make_error_code(errc::invalid_argument),
                        "fault_injector: a probability must be between 0 and 1");
    }
}

std::string describe(const error_code& ec, const send_outcome& outcome) {
    if (!ec) return "accepted, id '" + outcome.provider_message_id + "'";
    return ec.message();
}

// Carries out a decision; runs after any latency, with no lock held.
void carry_out(const std::shared_ptr<provider_transport>& inner,
               std::shared_ptr<const outbound> out, any_send_handler handler, fault_action action,
               std::uint64_t call) {
    switch (action.what) {
        case fault_action::kind::pass:
            inner->async_send(std::move(out), std::move(handler));
            return;
        case fault_action::kind::fail: {
            send_outcome o;
            o.diag = std::move(action.diag);
            if (o.diag.message.empty()) {
                o.diag.message = "fault_injector: injected failure on call " + std::to_string(call);
            }
            std::move(handler)(action.ec, std::move(o));
            return;
        }
        case fault_action::kind::unknown_after_delivery:
            inner->async_send(std::move(out), [h = std::move(handler), call](
                                                  error_code inner_ec, send_outcome inner) mutable {
                send_outcome o;
                o.diag.message = "fault_injector: injected unknown outcome on call " +
                                 std::to_string(call) + " after the inner transport finished (" +
                                 describe(inner_ec, inner) + ")";
                std::move(h)(make_error_code(transport_errc::outcome_unknown), std::move(o));
            });
            return;
    }
}

}  // namespace

fault_injector::fault_injector(std::shared_ptr<provider_transport> inner)
    : fault_injector(require_inner(inner)->get_executor(), inner) {}

fault_injector::fault_injector(boost::asio::any_io_executor ex,
                               std::shared_ptr<provider_transport> inner)
    : provider_transport(std::move(ex)), inner_(require_inner(std::move(inner))) {}

fault_injector& fault_injector::fail_nth(std::uint64_t n, error_code ec, diagnostics diag) {
    if (n == 0) {
        throw exception(make_error_code(errc::invalid_argument),
                        "fault_injector: call numbers start at 1");
    }
    require_failure_code(ec);
    std::lock_guard lock(mutex_);
    nth_[n] = fault_action::fail(ec, std::move(diag));
    return *this;
}

fault_injector& fault_injector::unknown_nth(std::uint64_t n) {
    if (n == 0) {
        throw exception(make_error_code(errc::invalid_argument),
                        "fault_injector: call numbers start at 1");
    }
    std::lock_guard lock(mutex_);
    nth_[n] = fault_action::unknown_after_delivery();
    return *this;
}

fault_injector& fault_injector::fail_with_probability(double p, error_code ec, diagnostics diag) {
    check_probability(p);
    require_failure_code(ec);
    std::lock_guard lock(mutex_);
    fail_p_ = p;
    fail_action_ = fault_action::fail(ec, std::move(diag));
    return *this;
}

fault_injector& fault_injector::unknown_with_probability(double p) {
    check_probability(p);
    std::lock_guard lock(mutex_);
    unknown_p_ = p;
    return *this;
}

fault_injector& fault_injector::add_latency(std::chrono::steady_clock::duration d) {
    if (d < d.zero()) {
        throw exception(make_error_code(errc::invalid_argument),
                        "fault_injector: latency must not be negative");
    }
    std::lock_guard lock(mutex_);
    latency_ = d;
    return *this;
}

fault_injector& fault_injector::script(std::vector<fault_action> steps) {
    for (const auto& s : steps) {
        if (s.what == fault_action::kind::fail) require_failure_code(s.ec);
    }
    std::lock_guard lock(mutex_);
    script_.assign(std::make_move_iterator(steps.begin()), std::make_move_iterator(steps.end()));
    return *this;
}

fault_injector& fault_injector::set_seed(std::uint64_t seed) {
    std::lock_guard lock(mutex_);
    rng_.seed(seed);
    return *this;
}

void fault_injector::clear() {
    std::lock_guard lock(mutex_);
    nth_.clear();
    script_.clear();
    fail_p_ = 0.0;
    fail_action_ = {};
    unknown_p_ = 0.0;
    latency_ = {};
    calls_ = 0;
    injected_failures_ = 0;
    injected_unknowns_ = 0;
}

std::uint64_t fault_injector::calls() const {
    std::lock_guard lock(mutex_);
    return calls_;
}

std::uint64_t fault_injector::injected_failures() const {
    std::lock_guard lock(mutex_);
    return injected_failures_;
}

std::uint64_t fault_injector::injected_unknowns() const {
    std::lock_guard lock(mutex_);
    return injected_unknowns_;
}

double fault_injector::draw() {
    // The top 53 bits scaled by 2^-53, rather than uniform_real_distribution,
    // whose algorithm differs between standard libraries: a seed must give
    // the same faults everywhere.
    return static_cast<double>(rng_() >> 11) * 0x1.0p-53;
}

void fault_injector::do_send(std::shared_ptr<const outbound> out, any_send_handler handler) {
    fault_action action;
    std::uint64_t call = 0;
    std::chrono::steady_clock::duration latency{};
    {
        std::lock_guard lock(mutex_);
        call = ++calls_;
        if (auto it = nth_.find(call); it != nth_.end()) {
            action = std::move(it->second);
            nth_.erase(it);
        } else if (!script_.empty()) {
            action = std::move(script_.front());
            script_.pop_front();
        } else if (fail_p_ > 0.0 && draw() < fail_p_) {
            action = fail_action_;
        } else if (unknown_p_ > 0.0 && draw() < unknown_p_) {
            action = fault_action::unknown_after_delivery();
        }
        if (action.what == fault_action::kind::fail) ++injected_failures_;
        if (action.what == fault_action::kind::unknown_after_delivery) ++injected_unknowns_;
        latency = latency_;
    }

    if (latency == latency.zero()) {
        carry_out(inner_, std::move(out), std::move(handler), std::move(action), call);
        return;
    }
    auto timer = std::make_shared<boost::asio::steady_timer>(get_executor(), latency);
    timer->async_wait([timer, inner = inner_, out = std::move(out), h = std::move(handler),
                       action = std::move(action), call](error_code) mutable {
        // The timer is private and never cancelled, so the wait always runs
        // to its expiry; shutdown destroys this handler without calling it.
        carry_out(inner, std::move(out), std::move(h), std::move(action), call);
    });
}

void fault_injector::do_check(any_check_handler handler) {
    inner_->async_check(std::move(handler));
}

}  // namespace mailers
