// Writes the Prometheus text exposition format (version 0.0.4): one HELP and
// TYPE line per family, then its samples, label values escaped as the format
// requires (backslash, double quote, line feed).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace mailers::detail {

class exposition {
public:
    using labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

    /// Starts a family; `type` is "counter", "gauge" or "histogram".
    void family(std::string_view name, std::string_view type, std::string_view help);
    void sample(std::string_view name, labels l, std::uint64_t value);
    void sample(std::string_view name, labels l, double value);
    /// A histogram's samples from per-bucket counts whose upper bounds, in
    /// seconds, are `first_bound * 2^i`: cumulative `_bucket` samples with
    /// `le`, the last one `+Inf`, then `_sum` and `_count`.
    void histogram(std::string_view name, labels l, const std::uint64_t* counts,
                   std::size_t buckets, double first_bound, double sum);

    const std::string& text() const noexcept { return out_; }
    std::string take() noexcept { return std::move(out_); }

private:
    void head(std::string_view name, labels l, std::string_view extra_name = {},
              std::string_view extra_value = {});
    std::string out_;
};

}  // namespace mailers::detail
