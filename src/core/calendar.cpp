#include <date/tz.h>
#include <fmt/format.h>

#include <mailers/calendar.hpp>
#include <mailers/error.hpp>

#include "core/schedule.hpp"

namespace mailers {

std::chrono::year_month_day local_date(time_point t, std::string_view zone) {
    const auto* z = detail::find_zone(zone);
    if (!z)
        throw exception(make_error_code(errc::unknown_time_zone),
                        fmt::format("unknown time zone '{}'", zone));
    const auto local = z->to_local(date::sys_time<std::chrono::microseconds>(t.time_since_epoch()));
    return std::chrono::year_month_day(
        std::chrono::sys_days(date::floor<date::days>(local).time_since_epoch()));
}

}  // namespace mailers
