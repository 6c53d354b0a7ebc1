#include <mailers/store.hpp>

namespace mailers {

std::string_view to_string(send_state s) noexcept {
    switch (s) {
        case send_state::reserved:
            return "reserved";
        case send_state::accepted:
            return "accepted";
        case send_state::failed:
            return "failed";
        case send_state::unknown:
            return "unknown";
    }
    return "invalid";
}

std::string_view to_string(reserve_status s) noexcept {
    switch (s) {
        case reserve_status::reserved:
            return "reserved";
        case reserve_status::duplicate:
            return "duplicate";
        case reserve_status::cap_reached:
            return "cap_reached";
        case reserve_status::gap:
            return "gap";
        case reserve_status::stale_config:
            return "stale_config";
        case reserve_status::not_owner:
            return "not_owner";
    }
    return "invalid";
}

}  // namespace mailers
