// How a pool picks the next mailbox. Every policy is quota-aware: a mailbox
// that is at a cap, outside its window, inside its minimum gap, paused,
// retired or unhealthy is skipped.
#pragma once

#include <cstdint>
#include <mailers/config.hpp>
#include <string_view>

namespace mailers {

enum class rotation_kind {
    round_robin,  ///< each eligible mailbox in turn
    weighted,     ///< smooth weighted round-robin by mailbox weight (deterministic spread)
    priority,     ///< the eligible mailbox with the lowest priority value; ties round-robin
};

MAILERS_API std::string_view to_string(rotation_kind k) noexcept;

struct rotation_policy {
    rotation_kind kind = rotation_kind::round_robin;
    /// How many mailboxes a send may try when transports fail transiently
    /// (the first attempt included). Never applies to an unknown outcome.
    std::uint32_t max_attempts = 3;
    /// Prefer the mailbox that last sent to the same recipient (from this
    /// pool) when it is eligible; otherwise fall back to the policy.
    bool sticky_sender = false;
    friend bool operator==(const rotation_policy&, const rotation_policy&) = default;
};

}  // namespace mailers
