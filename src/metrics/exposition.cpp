#include "metrics/exposition.hpp"

#include <fmt/format.h>

namespace mailers::detail {

namespace {

// Label values escape backslash, double quote and line feed; HELP text
// only backslash and line feed.
void append_escaped(std::string& out, std::string_view v, bool quotes = true) {
    for (const char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"' && quotes)
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
}

}  // namespace

void exposition::family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    append_escaped(out_, help, false);
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
}

void exposition::head(std::string_view name, labels l, std::string_view extra_name,
                      std::string_view extra_value) {
    out_ += name;
    if (l.size() == 0 && extra_name.empty()) {
        out_ += ' ';
        return;
    }
    out_ += '{';
    bool first = true;
    auto label = [&](std::string_view k, std::string_view v) {
        if (!first) out_ += ',';
        first = false;
        out_ += k;
        out_ += "=\"";
        append_escaped(out_, v);
        out_ += '"';
    };
    for (const auto& [k, v] : l) label(k, v);
    if (!extra_name.empty()) label(extra_name, extra_value);
    out_ += "} ";
}

void exposition::sample(std::string_view name, labels l, std::uint64_t value) {
    head(name, l);
    out_ += std::to_string(value);
    out_ += '\n';
}

void exposition::sample(std::string_view name, labels l, double value) {
    head(name, l);
    out_ += fmt::format("{}", value);
    out_ += '\n';
}

void exposition::histogram(std::string_view name, labels l, const std::uint64_t* counts,
                           std::size_t buckets, double first_bound, double sum) {
    const std::string bucket_name = std::string(name) + "_bucket";
    std::uint64_t total = 0;
    double bound = first_bound;
    // The last bucket holds everything above the one before it: it is +Inf.
    for (std::size_t i = 0; i < buckets; ++i, bound *= 2) {
        total += counts[i];
        if (i + 1 == buckets) break;
        head(bucket_name, l, "le", fmt::format("{}", bound));
        out_ += std::to_string(total);
        out_ += '\n';
    }
    head(bucket_name, l, "le", "+Inf");
    out_ += std::to_string(total);
    out_ += '\n';
    sample(std::string(name) + "_sum", l, sum);
    sample(std::string(name) + "_count", l, total);
}

}  // namespace mailers::detail
