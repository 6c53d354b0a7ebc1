#include <cstdio>
#include <mailers/logger.hpp>
#include <mutex>

namespace mailers {

logger stderr_logger(log_level level) {
    static std::mutex mu;
    return logger{level, [](log_level l, std::string_view msg) {
                      static constexpr const char* names[] = {"trace",   "debug", "info",
                                                              "warning", "error", "off"};
                      std::lock_guard lock(mu);
                      std::fprintf(stderr, "mailers [%s] %.*s\n", names[static_cast<int>(l)],
                                   static_cast<int>(msg.size()), msg.data());
                  }};
}

}  // namespace mailers
