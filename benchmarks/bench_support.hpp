// What every benchmark needs, whatever it measures: its options, its CPU
// time and percentiles of its samples. Kept free of Asio and mailers so that
// benchmarks of the library's private parts can include it too.
#pragma once

#include <sys/resource.h>

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace bench {

/// User + system CPU seconds of this process so far.
inline double cpu_seconds() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/// The sample below which a share `p` (0 to 1) of `v` lies; 0 for no
/// samples. Reorders `v`.
inline double percentile(std::vector<double>& v, double p) {
    if (v.empty()) return 0;
    const auto k = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
}

/// Walks "--name value" pairs, handing each to `take(name, value)`, which
/// returns false for a name it does not know. False (after saying so on
/// stderr) at the first unknown name.
template <class Take>
bool read_options(int argc, char** argv, Take&& take) {
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!take(std::string_view(argv[i]), std::string(argv[i + 1]))) {
            std::fprintf(stderr, "unknown option %s\n", argv[i]);
            return false;
        }
    }
    return true;
}

}  // namespace bench
