// Logging as a small value: a level and a callback. No logging library.
#pragma once

#include <functional>
#include <mailers/config.hpp>
#include <string_view>

namespace mailers {

enum class log_level { trace, debug, info, warning, error, off };

MAILERS_API std::string_view to_string(log_level l) noexcept;

/// Receives library log lines. Messages never contain secrets (credentials
/// are redacted before they reach a log line). The callback may be invoked
/// from any thread the library runs on and must be thread-safe.
struct logger {
    log_level level = log_level::warning;
    std::function<void(log_level, std::string_view)> sink;

    bool enabled(log_level l) const noexcept {
        return sink && l >= level && level != log_level::off;
    }
    void log(log_level l, std::string_view msg) const {
        if (enabled(l)) sink(l, msg);
    }
};

/// A logger that writes "mailers [level] message" lines to stderr.
MAILERS_API logger stderr_logger(log_level level = log_level::info);

}  // namespace mailers
