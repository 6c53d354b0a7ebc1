// Caps ("quotas") and the windows they are counted in.
//
// A cap can sit on several levels at once: the mailbox, the provider account
// or tenant (an Exchange tenant, an SES region quota), the sender domain,
// and the recipient domain (at most N per hour to one receiving domain).
// A send reserves one unit against every level it touches, or none.
#pragma once

#include <chrono>
#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

/// How a window is counted.
///  * `rolling`: the last `length` up to now; a cap of 1 per rolling day
///    allows the next send exactly 24 hours after the previous one (Google
///    Workspace and Microsoft 365 count this way).
///  * `calendar`: the current calendar period (minute, hour or day) in the
///    owner's time zone; the count resets at local midnight for a day. Only
///    lengths of one minute, one hour and one day are calendar periods.
enum class window_kind { rolling, calendar };

MAILERS_API std::string_view to_string(window_kind k) noexcept;

/// "At most `max` sends per `length`, counted as `kind`."
struct rate_limit {
    std::uint64_t max = 0;
    std::chrono::seconds length{86400};
    window_kind kind = window_kind::rolling;
    friend bool operator==(const rate_limit&, const rate_limit&) = default;

    static rate_limit per_minute(std::uint64_t n, window_kind k = window_kind::rolling) {
        return {n, std::chrono::seconds(60), k};
    }
    static rate_limit per_hour(std::uint64_t n, window_kind k = window_kind::rolling) {
        return {n, std::chrono::seconds(3600), k};
    }
    static rate_limit per_day(std::uint64_t n, window_kind k = window_kind::rolling) {
        return {n, std::chrono::seconds(86400), k};
    }
};

/// The level a shared quota sits on. Mailbox caps live on the mailbox itself.
enum class quota_scope {
    provider,          ///< key: provider id (an account, a tenant, an SES region)
    sender_domain,     ///< key: the From domain, normalised
    recipient_domain,  ///< key: a receiving domain; key "*" applies to every receiving domain
};

MAILERS_API std::string_view to_string(quota_scope s) noexcept;

/// A set of limits on one scope key. `time_zone` is the IANA zone used for
/// calendar windows ("UTC" when empty).
struct quota {
    quota_scope scope = quota_scope::provider;
    std::string key;
    std::vector<rate_limit> limits;
    std::string time_zone;
    friend bool operator==(const quota&, const quota&) = default;
};

/// Documented limits of well-known providers, applied to a mailbox as
/// ceilings (see `mailbox_config::apply`). They are what the provider
/// enforces before it blocks the account, not a volume that is safe to send:
/// cold outbound from one mailbox is usually kept to a few dozen a day. The
/// numbers come from the providers' published sending limits; they change,
/// so check them against your contract.
struct quota_preset {
    std::vector<rate_limit> limits;
    std::uint32_t max_recipients_per_message = 0;  ///< 0 = no limit
};

namespace presets {
/// Google Workspace: 2,000 messages per rolling 24 hours per user, at most
/// 100 recipients per message over SMTP or the Gmail API. 2,000 is Google's
/// hard limit for a Workspace user (past it the user may be blocked from
/// sending for up to a day), not a safe cold-outbound volume.
MAILERS_API quota_preset google_workspace();
/// Microsoft 365 / Exchange Online: 10,000 recipients per rolling 24 hours,
/// 30 messages per minute per mailbox. 10,000 is Exchange Online's hard
/// limit, not a safe cold-outbound volume.
MAILERS_API quota_preset microsoft_365();
}  // namespace presets

}  // namespace mailers
