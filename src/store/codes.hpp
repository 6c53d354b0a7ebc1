// The integer codes both stores write for enums. They are spelled out
// rather than taken from the enums' declaration order, so that reordering
// or extending an enum never reinterprets stored rows. Decoding gives
// nullopt for a code no version of the library wrote; each store reports
// that as corruption in its own words.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>
#include <optional>

namespace mailers::detail::codes {

inline constexpr std::int64_t state_reserved = 0;
inline constexpr std::int64_t state_accepted = 1;
inline constexpr std::int64_t state_failed = 2;
inline constexpr std::int64_t state_unknown = 3;

/// -1 for a value outside the enum.
constexpr std::int64_t of(send_state s) noexcept {
    switch (s) {
        case send_state::reserved:
            return state_reserved;
        case send_state::accepted:
            return state_accepted;
        case send_state::failed:
            return state_failed;
        case send_state::unknown:
            return state_unknown;
    }
    return -1;
}

constexpr std::optional<send_state> send_state_of(std::int64_t c) noexcept {
    switch (c) {
        case state_reserved:
            return send_state::reserved;
        case state_accepted:
            return send_state::accepted;
        case state_failed:
            return send_state::failed;
        case state_unknown:
            return send_state::unknown;
    }
    return std::nullopt;
}

constexpr std::int64_t of(queue_state s) noexcept {
    switch (s) {
        case queue_state::waiting:
            return 0;
        case queue_state::claimed:
            return 1;
        case queue_state::done:
            return 2;
        case queue_state::cancelled:
            return 3;
    }
    return -1;
}

constexpr std::optional<queue_state> queue_state_of(std::int64_t c) noexcept {
    switch (c) {
        case 0:
            return queue_state::waiting;
        case 1:
            return queue_state::claimed;
        case 2:
            return queue_state::done;
        case 3:
            return queue_state::cancelled;
    }
    return std::nullopt;
}

constexpr std::int64_t of(suppression_kind k) noexcept {
    switch (k) {
        case suppression_kind::address:
            return 0;
        case suppression_kind::domain:
            return 1;
    }
    return -1;
}

constexpr std::optional<suppression_kind> suppression_kind_of(std::int64_t c) noexcept {
    switch (c) {
        case 0:
            return suppression_kind::address;
        case 1:
            return suppression_kind::domain;
    }
    return std::nullopt;
}

constexpr std::int64_t of(suppression_reason r) noexcept {
    switch (r) {
        case suppression_reason::unsubscribe:
            return 0;
        case suppression_reason::hard_bounce:
            return 1;
        case suppression_reason::complaint:
            return 2;
        case suppression_reason::manual:
            return 3;
        case suppression_reason::legal:
            return 4;
    }
    return -1;
}

constexpr std::optional<suppression_reason> suppression_reason_of(std::int64_t c) noexcept {
    switch (c) {
        case 0:
            return suppression_reason::unsubscribe;
        case 1:
            return suppression_reason::hard_bounce;
        case 2:
            return suppression_reason::complaint;
        case 3:
            return suppression_reason::manual;
        case 4:
            return suppression_reason::legal;
    }
    return std::nullopt;
}

constexpr std::optional<enrollment_state> enrollment_state_of(std::int64_t c) noexcept {
    switch (c) {
        case 0:
            return enrollment_state::active;
        case 1:
            return enrollment_state::paused;
        case 2:
            return enrollment_state::completed;
        case 3:
            return enrollment_state::stopped;
        case 4:
            return enrollment_state::failed;
        case 5:
            return enrollment_state::unresolved;
    }
    return std::nullopt;
}

constexpr std::int64_t of(enrollment_state s) noexcept {
    switch (s) {
        case enrollment_state::active:
            return 0;
        case enrollment_state::paused:
            return 1;
        case enrollment_state::completed:
            return 2;
        case enrollment_state::stopped:
            return 3;
        case enrollment_state::failed:
            return 4;
        case enrollment_state::unresolved:
            return 5;
    }
    return -1;
}

constexpr std::optional<enrollment_stop> enrollment_stop_of(std::int64_t c) noexcept {
    switch (c) {
        case 0:
            return enrollment_stop::none;
        case 1:
            return enrollment_stop::replied;
        case 2:
            return enrollment_stop::bounced;
        case 3:
            return enrollment_stop::unsubscribed;
        case 4:
            return enrollment_stop::suppressed;
        case 5:
            return enrollment_stop::goal;
        case 6:
            return enrollment_stop::manual;
    }
    return std::nullopt;
}

constexpr std::int64_t of(enrollment_stop s) noexcept {
    switch (s) {
        case enrollment_stop::none:
            return 0;
        case enrollment_stop::replied:
            return 1;
        case enrollment_stop::bounced:
            return 2;
        case enrollment_stop::unsubscribed:
            return 3;
        case enrollment_stop::suppressed:
            return 4;
        case enrollment_stop::goal:
            return 5;
        case enrollment_stop::manual:
            return 6;
    }
    return -1;
}

// Both stores keep times as integer microseconds since the epoch.
constexpr std::int64_t micros(time_point t) noexcept {
    return t.time_since_epoch().count();
}
constexpr time_point from_micros(std::int64_t v) noexcept {
    return time_point{duration{v}};
}

// A window's floor, kept far enough from the integer limits for the bucket
// arithmetic of the count queries; no use is that far from the epoch (2^60 us
// is 36,000 years), so the count is the same.
constexpr std::int64_t floor_micros(time_point floor) noexcept {
    constexpr std::int64_t far = std::int64_t{1} << 60;
    return std::clamp(micros(floor), -far, far);
}

}  // namespace mailers::detail::codes
