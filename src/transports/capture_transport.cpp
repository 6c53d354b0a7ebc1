#include <mailers/transports/capture_transport.hpp>
#include <string>
#include <utility>

namespace mailers {

capture_transport::capture_transport(boost::asio::any_io_executor ex)
    : provider_transport(std::move(ex)) {}

std::vector<outbound> capture_transport::sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
}

std::size_t capture_transport::count() const {
    std::lock_guard lock(mutex_);
    return sent_.size();
}

std::optional<outbound> capture_transport::last() const {
    std::lock_guard lock(mutex_);
    if (sent_.empty()) return std::nullopt;
    return sent_.back();
}

void capture_transport::clear() {
    std::lock_guard lock(mutex_);
    sent_.clear();
}

void capture_transport::do_send(std::shared_ptr<const outbound> out, any_send_handler handler) {
    // Copied outside the lock: a message with large attachments should not
    // stall concurrent senders or readers.
    outbound copy = *out;
    std::uint64_t id = 0;
    {
        std::lock_guard lock(mutex_);
        id = next_id_++;
        sent_.push_back(std::move(copy));
    }
    std::move(handler)(error_code{}, send_outcome{"capture-" + std::to_string(id), {}});
}

}  // namespace mailers
