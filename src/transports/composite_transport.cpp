#include <mailers/transports/composite_transport.hpp>

namespace mailers {

struct composite_transport::attempt {
    std::shared_ptr<const outbound> out;
    any_send_handler handler;
    std::size_t start = 0;
    std::size_t tried = 0;
};

composite_transport::composite_transport(boost::asio::any_io_executor ex, mode m,
                                         std::vector<std::shared_ptr<provider_transport>> children)
    : provider_transport(std::move(ex)),
      mode_(m),
      children_(std::move(children)),
      down_until_(children_.size()) {
    if (children_.empty())
        throw exception(make_error_code(errc::invalid_argument),
                        "a composite transport needs children");
    for (const auto& c : children_)
        if (!c)
            throw exception(make_error_code(errc::invalid_argument),
                            "a composite transport child is null");
}

bool composite_transport::down(std::size_t i, std::chrono::steady_clock::time_point now) const {
    std::lock_guard lock(mu_);
    return now < down_until_[i];
}

void composite_transport::do_send(std::shared_ptr<const outbound> out, any_send_handler handler) {
    auto start = mode_ == mode::roundrobin
                     ? next_.fetch_add(1, std::memory_order_relaxed) % children_.size()
                     : 0;
    // Constructed in place: Boost 1.81's any_completion_handler does not
    // move on assignment.
    auto a = std::make_shared<attempt>(std::move(out), std::move(handler), start);
    try_next(std::move(a));
}

void composite_transport::try_next(std::shared_ptr<attempt> a) {
    const auto n = children_.size();
    auto now = std::chrono::steady_clock::now();
    // Prefer children that are not resting after a failure; when every
    // remaining one is, try them anyway rather than give up.
    std::size_t pick = n;
    for (std::size_t k = a->tried; k < n; ++k) {
        auto i = (a->start + k) % n;
        if (!down(i, now)) {
            pick = k;
            break;
        }
    }
    if (pick == n) pick = a->tried;
    // Children between `tried` and `pick` are skipped for this attempt.
    a->tried = pick + 1;
    auto i = (a->start + pick) % n;
    children_[i]->async_send(a->out, [this, a, i](error_code ec, send_outcome outcome) mutable {
        if (may_retry(ec)) {
            auto rest = outcome.diag.retry_after.value_or(std::chrono::seconds(60));
            {
                std::lock_guard lock(mu_);
                down_until_[i] = std::chrono::steady_clock::now() + rest;
            }
            if (a->tried < children_.size()) {
                try_next(std::move(a));
                return;
            }
        }
        std::move(a->handler)(ec, std::move(outcome));
    });
}

void composite_transport::do_check(any_check_handler handler) {
    check_from(0, std::make_shared<any_check_handler>(std::move(handler)), {});
}

void composite_transport::check_from(std::size_t i, std::shared_ptr<any_check_handler> h,
                                     std::string done) {
    if (i == children_.size()) {
        diagnostics d;
        d.message = std::string(name()) + ": " + done;
        std::move (*h)(error_code{}, std::move(d));
        return;
    }
    children_[i]->async_check([this, i, h, done = std::move(done)](error_code ec,
                                                                   diagnostics d) mutable {
        if (ec) {
            d.message = std::string(name()) + " child " + std::to_string(i + 1) + ": " + d.message;
            std::move (*h)(ec, std::move(d));
            return;
        }
        check_from(i + 1, std::move(h), done.empty() ? d.message : done + "; " + d.message);
    });
}

}  // namespace mailers
