// Per-day counts: names, UTC days, and the defaults of store's count calls.
#include <fmt/format.h>

#include <mailers/daily_counts.hpp>
#include <mailers/error.hpp>
#include <mailers/store.hpp>

namespace mailers {

std::string_view to_string(count_metric m) noexcept {
    switch (m) {
        case count_metric::sent:
            return "sent";
        case count_metric::failed:
            return "failed";
        case count_metric::unknown:
            return "unknown";
        case count_metric::delivered:
            return "delivered";
        case count_metric::deferred:
            return "deferred";
        case count_metric::bounced_hard:
            return "bounced_hard";
        case count_metric::bounced_soft:
            return "bounced_soft";
        case count_metric::complained:
            return "complained";
        case count_metric::unsubscribed:
            return "unsubscribed";
        case count_metric::opened:
            return "opened";
        case count_metric::clicked:
            return "clicked";
    }
    return "?";
}

std::string_view to_string(count_scope s) noexcept {
    switch (s) {
        case count_scope::workspace:
            return "workspace";
        case count_scope::mailbox:
            return "mailbox";
        case count_scope::pool:
            return "pool";
        case count_scope::provider:
            return "provider";
        case count_scope::sender_domain:
            return "sender_domain";
    }
    return "?";
}

count_day utc_day(time_point t) noexcept {
    return static_cast<count_day>(
        std::chrono::floor<std::chrono::days>(t.time_since_epoch()).count());
}

time_point day_start(count_day day) noexcept {
    return time_point(std::chrono::duration_cast<duration>(std::chrono::days(day)));
}

namespace {
[[noreturn]] void no_counts(std::string_view what) {
    diagnostics diag;
    diag.message = fmt::format("{}: this store keeps no daily counts", what);
    throw exception(make_error_code(errc::store_error), std::move(diag));
}
}  // namespace

std::vector<daily_count> store::daily_counts(std::string_view, count_scope, std::string_view,
                                             count_day, count_day) {
    no_counts("daily_counts");
}

std::size_t store::purge_counts(std::string_view, count_day) {
    no_counts("purge_counts");
}

}  // namespace mailers
