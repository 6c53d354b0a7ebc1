// libFuzzer entry point for the address parser. Beyond "does not crash", it
// checks the parser's contract: whatever it accepts is a valid addr-spec that
// re-parses to itself and renders into a message without breaking a line.
#include <cstddef>
#include <cstdint>
#include <mailers/address.hpp>
#include <mailers/mime.hpp>
#include <string>
#include <string_view>

namespace {

void require(bool ok) {
    if (!ok) __builtin_trap();
}

bool has_line_break_or_nul(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);

    const bool bare = mailers::is_valid_addr_spec(in);
    const auto parsed = mailers::parse_address(in);
    if (bare) {
        require(parsed.has_value());
        require(parsed->display_name.empty());
        require(parsed->addr_spec() == in);
    }
    if (parsed) {
        const mailers::address& a = *parsed;
        const std::string spec = a.addr_spec();
        require(spec.size() <= 254 && a.local.size() <= 64 && a.domain.size() <= 255);
        require(!has_line_break_or_nul(spec) && !has_line_break_or_nul(a.display_name));
        require(mailers::is_valid_addr_spec(spec));
        const auto again = mailers::parse_address(spec);
        require(again.has_value() && again->local == a.local && again->domain == a.domain);
        require(mailers::domain_to_ascii(a.domain).has_value());

        mailers::message m;
        m.from = a;
        m.to = {a};
        m.text = "x";
        const auto wire = mailers::render_message(m);
        require(wire.has_value());
        std::size_t line = 0;
        for (std::size_t i = 0; i < wire->size(); ++i) {
            const char c = (*wire)[i];
            if (c == '\r') require(i + 1 < wire->size() && (*wire)[i + 1] == '\n');
            if (c == '\n') {
                require(i > 0 && (*wire)[i - 1] == '\r');
                line = 0;
            } else {
                require(++line <= 999);  // 998 octets plus the CR
            }
        }
    }
    (void)mailers::domain_to_ascii(in);
    return 0;
}
