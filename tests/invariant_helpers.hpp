// What the single-process and multi-process invariant tests share: how a
// checking transport reads a hand-off, and how a checker finds the calendar
// period a send counts in.
#pragma once

#include <date/tz.h>

#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/provider_transport.hpp>
#include <string>
#include <string_view>

namespace mailers_test {

inline std::string lower(std::string s) {
    for (auto& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

inline std::string header(const mailers::outbound& o, std::string_view name) {
    for (const auto& h : o.msg.headers)
        if (h.name == name) return h.value;
    return {};
}

inline date::local_time<std::chrono::microseconds> local(const date::time_zone* z,
                                                         mailers::time_point t) {
    return z->to_local(date::sys_time<std::chrono::microseconds>(t.time_since_epoch()));
}

/// The calendar period (local day, hour or minute, by `length`) holding `t`.
inline std::int64_t calendar_period(const date::time_zone* zone, std::chrono::seconds length,
                                    mailers::time_point t) {
    auto lt = local(zone, t);
    if (length >= std::chrono::hours(24))
        return date::floor<date::days>(lt).time_since_epoch().count();
    if (length >= std::chrono::hours(1))
        return date::floor<std::chrono::hours>(lt).time_since_epoch().count();
    return date::floor<std::chrono::minutes>(lt).time_since_epoch().count();
}

}  // namespace mailers_test
