#include <mailers/event.hpp>

namespace mailers {

std::string_view to_string(event_type t) noexcept {
    switch (t) {
        case event_type::queued:
            return "queued";
        case event_type::sent:
            return "sent";
        case event_type::delivered:
            return "delivered";
        case event_type::deferred:
            return "deferred";
        case event_type::bounced:
            return "bounced";
        case event_type::complained:
            return "complained";
        case event_type::unsubscribed:
            return "unsubscribed";
        case event_type::opened:
            return "opened";
        case event_type::clicked:
            return "clicked";
        case event_type::rejected:
            return "rejected";
        case event_type::failed:
            return "failed";
        case event_type::replied:
            return "replied";
        case event_type::suppressed:
            return "suppressed";
        case event_type::no_capacity:
            return "no_capacity";
        case event_type::unknown:
            return "unknown";
        case event_type::paused:
            return "paused";
        case event_type::alert:
            return "alert";
    }
    return "unknown";
}

}  // namespace mailers
