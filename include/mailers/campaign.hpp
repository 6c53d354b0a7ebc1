// A campaign: one template sent once to each recipient of a list, through a
// pool or a named mailbox, paced by the workspace's send queue.
//
// Starting a campaign validates the whole list first (addresses, the
// template, every recipient's variables) and enqueues nothing when any of
// it is wrong. Each recipient then becomes one queue item, keyed by the
// campaign and the recipient's normalised address, so a campaign started
// twice, or from two processes at once, queues each recipient once. The
// queue hands the items off as the pool's caps, windows and gaps allow;
// progress is read back from the queue in the store, so every engine of
// the workspace reports the same numbers. See docs/campaigns.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mailers/address.hpp>
#include <mailers/clock.hpp>
#include <mailers/template.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mailers {

/// One recipient of a campaign.
struct campaign_recipient {
    address to;
    /// The recipient's template variables; the engine adds `unsubscribe_url`.
    template_variables variables;
};

/// Limits of a campaign definition.
inline constexpr std::size_t max_campaign_id_size = 128;
inline constexpr std::size_t max_campaign_recipients = 1'000'000;

/// What `engine::start_campaign` sends.
struct campaign_config {
    /// 1 to 128 of A-Z a-z 0-9 . _ -; names the campaign in the queue
    /// ("campaign:<id>"), in send idempotency keys and in events.
    std::string id;
    std::string name;  ///< for people; no control characters
    template_source content;
    std::string pool;     ///< send through this pool ...
    std::string mailbox;  ///< ... or from exactly this mailbox
    std::optional<address> reply_to;
    std::vector<campaign_recipient> recipients;
    /// Nothing is handed off earlier; unset (the epoch): at once.
    time_point not_before{};
};

/// A started campaign, as the workspace keeps it (the recipients are kept
/// only as queue items).
struct campaign_info {
    std::string id;
    std::string name;
    template_source content;
    std::string pool;
    std::string mailbox;
    time_point not_before{};
    time_point started_at{};  ///< by the starting engine's clock
    std::string actor;        ///< who started it
    /// Distinct recipients (by normalised address) in the list.
    std::uint64_t total = 0;
    /// Recipients suppressed when the campaign was started: never queued.
    std::uint64_t suppressed_at_start = 0;
    bool cancelled = false;
    /// A digest of the definition and list; starting the campaign again
    /// needs the same one.
    std::string digest;
};

/// Where a campaign stands, read from the store's queue.
///
/// Every recipient is in exactly one of: sent, failed, unknown,
/// suppressed_at_start, suppressed_at_handoff, cancelled, in_flight,
/// waiting, not_queued; `remaining` is waiting + in_flight + not_queued.
/// Items the queue has forgotten (`engine_params::queue_retention` after
/// they ended, 30 days by default) read as not_queued: read a campaign's
/// outcome within that time.
struct campaign_progress {
    std::string id;
    std::uint64_t total = 0;
    std::uint64_t sent = 0;     ///< accepted by a provider
    std::uint64_t failed = 0;   ///< refused by the provider, or refused for good at hand-off
    std::uint64_t unknown = 0;  ///< handed off with no known outcome (never retried)
    std::uint64_t suppressed_at_start = 0;
    std::uint64_t suppressed_at_handoff = 0;  ///< suppressed after the start
    std::uint64_t cancelled = 0;
    std::uint64_t in_flight = 0;  ///< claimed by an engine, being handed off
    std::uint64_t waiting = 0;
    /// Waiting items by the reason they wait ("" not yet looked at, "cap",
    /// "window", "gap", "pace", "paused", "breaker", "throttled", "error"), in
    /// reason order; reasons with no item are left out.
    std::vector<std::pair<std::string, std::uint64_t>> waiting_by_reason;
    /// Recipients with no queue item yet: a start that stopped part way
    /// (starting again queues them).
    std::uint64_t not_queued = 0;
    std::uint64_t remaining = 0;
    /// The earliest time a waiting item is looked at again; nullopt when
    /// none waits.
    std::optional<time_point> next_due;
    bool cancelled_campaign = false;
    /// True once nothing remains.
    bool finished() const noexcept { return remaining == 0; }
    friend bool operator==(const campaign_progress&, const campaign_progress&) = default;
};

}  // namespace mailers
