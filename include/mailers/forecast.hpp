// A forecast: "if I start this campaign, or enroll these contacts, now:
// what is sent when, from which mailbox, what holds each message back, and
// when does the last one go out" — without sending or changing anything.
//
// `engine::forecast` answers it by running the engine's own scheduling on
// a simulated clock: a private engine, on a private in-memory store seeded
// with the workspace's configuration (mailboxes, pools, quotas, sequences,
// suppressions, pauses), its recent sends (so today's caps start as used as
// they are) and the sends already waiting in its queue, with a transport
// that accepts everything. The plan is read from what that engine "sent".
// So a forecast decides as the real drain would, with the same code; it
// differs where the future does (replies, bounces, failures, other
// processes' sends, configuration changes). See docs/campaigns.md.
#pragma once

#include <chrono>
#include <cstdint>
#include <mailers/address.hpp>
#include <mailers/campaign.hpp>
#include <mailers/clock.hpp>
#include <mailers/template.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mailers {

/// A contact to enroll in the forecast's sequence.
struct forecast_contact {
    address to;
    template_variables variables;
    std::string owner;  ///< owner mailbox, for steps whose sender is the owner; "" none
};

/// What to forecast, from now on the engine's clock.
struct forecast_request {
    /// A campaign to start now (it need not, and should not yet, exist).
    std::optional<campaign_config> campaign;
    /// Contacts to enroll now in the workspace's sequence `sequence_id`.
    std::string sequence_id;
    std::vector<forecast_contact> contacts;
    /// How far to simulate; a message not sent by then is reported unsent.
    std::chrono::hours horizon{24 * 30};
    /// Whether the sends already waiting in the workspace's queue take part
    /// (they compete for the same caps). Steps of enrollments already in
    /// flight are not simulated beyond the item they have in the queue.
    bool include_queue = true;
    /// The origin of sends already waiting in the queue to forecast as well,
    /// "campaign:<id>" for what is left of a started campaign: the
    /// simulation runs until they are sent too, they count in `last` and
    /// `complete` (still `existing` in `sends`), and those not sent by the
    /// horizon are listed in `unsent`. Needs `include_queue`.
    std::string follow;
};

/// One message the forecast sends.
struct planned_send {
    time_point at{};        ///< simulated hand-off time
    time_point due{};       ///< when it first could go (not_before, the step's due time)
    std::string mailbox;    ///< the sender
    std::string recipient;  ///< normalised address
    /// "campaign:<id>", "sequence:<id>/<step>", or a queued item's own.
    std::string origin;
    std::uint32_t step = 0;  ///< 1-based sequence step; 0 for a campaign or queued send
    /// What held it back last before it went: "" (it went as soon as it
    /// was due), "cap", "window", "gap", "pace", "paused", "breaker", "throttled".
    std::string bound;
    /// A send already waiting in the workspace's queue, not one of the request's.
    bool existing = false;
};

/// One message of the request the forecast did not send (for an
/// enrollment, its next step; the steps after it are not listed).
struct forecast_unsent {
    std::string recipient;
    std::string origin;
    std::uint32_t step = 0;
    /// Ended unsent: "suppressed", "failed" (refused; `detail` says why),
    /// an enrollment's stop reason ("unsubscribed", "bounced", ...). Still
    /// waiting at the horizon: "cap", "window", "gap", "pace", "paused", "breaker",
    /// "throttled", "error", "waiting" (not yet looked at), "not due" (it
    /// falls due after the horizon).
    std::string reason;
    std::string detail;
    /// Still waits at the horizon (else it ended unsent and never goes).
    bool waiting = false;
};

struct forecast_plan {
    time_point start{};  ///< the engine's now when the forecast began
    time_point end{};    ///< start + horizon
    /// Every message sent in the simulation, in time order (then mailbox).
    std::vector<planned_send> sends;
    /// The request's messages not sent by `end`, and why.
    std::vector<forecast_unsent> unsent;
    /// When the request's last message goes out; nullopt when none does.
    std::optional<time_point> last;
    /// True when every message of the request was sent or ended (suppressed,
    /// failed) within the horizon: `last` is then the end of it.
    bool complete = false;
};

}  // namespace mailers
