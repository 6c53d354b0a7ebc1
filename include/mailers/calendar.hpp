// Local calendar dates in a mailbox's time zone, for hosts that report per
// day the way caps and warm-up count days: in the sender's own zone,
// through the same IANA database the engine reads.
#pragma once

#include <chrono>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <string_view>

namespace mailers {

/// The local calendar date of `t` in the IANA zone `zone` ("" and "UTC"
/// are UTC). Throws mailers::exception with errc::unknown_time_zone when
/// the zone is not known.
MAILERS_API std::chrono::year_month_day local_date(time_point t, std::string_view zone);

}  // namespace mailers
