// libFuzzer entry for bounce messages (not built by default).
//
// Beyond "does not crash": a recognised report carries at least one event,
// each with a recipient, a de-duplication key and a bounce class only on
// bounces; an unrecognised one carries none and says why. Reading is
// deterministic: the same bytes give the same events.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <mailers/delivery_report.hpp>
#include <string_view>

namespace {

void check(bool ok) {
    if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const auto at = mailers::time_point{std::chrono::seconds{1700000000}};
    const auto r = mailers::parse_delivery_report(text, at);
    if (!r.recognised) {
        check(r.events.empty());
        check(!r.reason.empty());
        return 0;
    }
    check(!r.events.empty());
    check(!r.format.empty());
    for (const auto& e : r.events) {
        check(!e.dedup_key.empty());
        check((e.type == mailers::event_type::bounced) == (e.bounce != mailers::bounce_class::none));
        check(e.message_id == r.original_message_id);
    }
    const auto again = mailers::parse_delivery_report(text, at);
    check(again.events.size() == r.events.size());
    for (std::size_t i = 0; i < r.events.size(); ++i)
        check(again.events[i].dedup_key == r.events[i].dedup_key);
    return 0;
}
