// libFuzzer entry for the DSN parser (not built by default).
//
// Beyond "does not crash": an accepted DSN is normalised (lower-case scheme
// and host, port in range), and one that holds no secret prints as text that
// parses back to the same value, since to_string() only redacts secrets.
//
//     clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
//         tests/fuzz/fuzz_dsn.cpp -Lbuild -lmailers -o fuzz_dsn
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mailers/dsn.hpp>
#include <string_view>

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

bool is_lower_ascii(std::string_view s) {
    for (char c : s)
        if (c >= 'A' && c <= 'Z') return false;
    return true;
}

// True when to_string() shows everything, so it must parse back unchanged.
bool holds_no_secret(const mailers::composite_dsn& c) {
    if (c.k != mailers::composite_dsn::kind::single) {
        for (const auto& child : c.children)
            if (!holds_no_secret(child)) return false;
        return true;
    }
    if (!c.single.user.empty() || !c.single.password.empty()) return false;
    for (const auto& [name, value] : c.single.options)
        if (mailers::is_secret_option(name)) return false;
    return true;
}

void check_normalised(const mailers::composite_dsn& c) {
    if (c.k != mailers::composite_dsn::kind::single) {
        check(!c.children.empty());
        for (const auto& child : c.children) check_normalised(child);
        return;
    }
    const auto& d = c.single;
    check(!d.scheme.empty() && is_lower_ascii(d.scheme) && is_lower_ascii(d.host));
    check(d.scheme == d.transport || d.scheme == d.transport + "+" + d.variant);
    check(!d.port || *d.port != 0);
    check(!d.host.empty() || d.scheme == "file");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text{reinterpret_cast<const char*>(data), size};
    mailers::diagnostics diag;
    auto parsed = mailers::parse_dsn(text, &diag);
    if (!parsed) {
        check(!diag.message.empty());
        return 0;
    }
    check_normalised(*parsed);
    const auto printed = parsed->to_string();
    if (holds_no_secret(*parsed)) {
        auto again = mailers::parse_dsn(printed, &diag);
        check(again.has_value() && *again == *parsed);
    }
    return 0;
}
