#include <charconv>
#include <mailers/transports/null_transport.hpp>
#include <string>
#include <utility>

namespace mailers {

null_transport::null_transport(boost::asio::any_io_executor ex)
    : provider_transport(std::move(ex)) {}

void null_transport::do_send(std::shared_ptr<const outbound>, any_send_handler handler) {
    const std::uint64_t n = count_.fetch_add(1, std::memory_order_relaxed) + 1;
    // Built in a stack buffer rather than with to_string + operator+, which
    // would allocate a temporary on every send.
    char buf[32] = {'n', 'u', 'l', 'l', '-'};
    const auto end = std::to_chars(buf + 5, buf + sizeof buf, n).ptr;
    std::move(handler)(error_code{}, send_outcome{std::string(buf, end), {}});
}

}  // namespace mailers
