// fmt formatters for the library's enums.
//
//     #include <mailers/format.hpp>
//     fmt::print("{} is {}\n", status.id, status.blocked);  // "rep1 is cap_reached"
//
// Each enum prints as its `to_string()`, the enumerator's name, and accepts
// the string format specifications ("{:>12}"). This header includes
// <fmt/format.h>, so a program that includes it links fmt itself; the
// others never need fmt.
#pragma once

#include <fmt/format.h>

#include <mailers/engine.hpp>
#include <mailers/error.hpp>
#include <mailers/event.hpp>
#include <mailers/logger.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/quota.hpp>
#include <mailers/rotation_policy.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>
#include <string_view>

namespace mailers::detail {
template <class Enum>
struct enum_formatter : fmt::formatter<std::string_view> {
    template <class FormatContext>
    auto format(Enum value, FormatContext& ctx) const {
        return fmt::formatter<std::string_view>::format(to_string(value), ctx);
    }
};
}  // namespace mailers::detail

#define MAILERS_ENUM_FORMATTER(name) \
    template <>                      \
    struct fmt::formatter<mailers::name> : mailers::detail::enum_formatter<mailers::name> {}

MAILERS_ENUM_FORMATTER(ineligible_reason);
MAILERS_ENUM_FORMATTER(health_state);
MAILERS_ENUM_FORMATTER(mailbox_state);
MAILERS_ENUM_FORMATTER(send_state);
MAILERS_ENUM_FORMATTER(reserve_status);
MAILERS_ENUM_FORMATTER(open_mode);
MAILERS_ENUM_FORMATTER(event_type);
MAILERS_ENUM_FORMATTER(suppression_reason);
MAILERS_ENUM_FORMATTER(suppression_kind);
MAILERS_ENUM_FORMATTER(quota_scope);
MAILERS_ENUM_FORMATTER(pause_scope);
MAILERS_ENUM_FORMATTER(rotation_kind);
MAILERS_ENUM_FORMATTER(window_kind);
MAILERS_ENUM_FORMATTER(log_level);
MAILERS_ENUM_FORMATTER(failure);

#undef MAILERS_ENUM_FORMATTER
