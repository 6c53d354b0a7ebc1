#include <mailers/clock.hpp>

namespace mailers {

time_point system_clock::now() const noexcept {
    return std::chrono::time_point_cast<duration>(std::chrono::system_clock::now());
}

std::shared_ptr<clock> default_clock() {
    static const auto instance = std::make_shared<system_clock>();
    return instance;
}

}  // namespace mailers
