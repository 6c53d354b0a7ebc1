#include <algorithm>
#include <mailers/mailbox.hpp>
#include <mailers/quota.hpp>

namespace mailers {

namespace presets {
quota_preset google_workspace() {
    return {{rate_limit::per_day(2000)}, 100};
}
quota_preset microsoft_365() {
    // 10,000 recipients per rolling day; one recipient per send here, so a
    // message cap of the same size.
    return {{rate_limit::per_day(10000), rate_limit::per_minute(30)}, 0};
}
}  // namespace presets

mailbox_config& mailbox_config::apply(const quota_preset& preset) {
    for (const auto& ceiling : preset.limits) {
        bool covered = false;
        for (auto& own : limits) {
            if (own.length != ceiling.length || own.kind != ceiling.kind) continue;
            own.max = std::min(own.max, ceiling.max);
            covered = true;
        }
        if (!covered) limits.push_back(ceiling);
    }
    if (preset.max_recipients_per_message != 0 &&
        (max_recipients_per_message == 0 ||
         max_recipients_per_message > preset.max_recipients_per_message))
        max_recipients_per_message = preset.max_recipients_per_message;
    return *this;
}

}  // namespace mailers
