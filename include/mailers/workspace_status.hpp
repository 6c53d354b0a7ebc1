// What is paused, by whom and since when, each mailbox's state and the
// number of suppression entries, read from the store with a few queries
// instead of through an engine. An engine answers from memory it fills at
// start with every suppression key of the workspace and the last week of
// the ledger: seconds on a workspace of millions of entries, for a process
// that asks once and exits (`mailers status`).
#pragma once

#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/engine.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

class store;

/// A pause in force and the mailboxes it stops.
struct workspace_pause {
    /// As `engine::pauses` lists it.
    pause_info pause;
    /// See `mailboxes_held`.
    std::vector<std::string> mailboxes_held;
};

/// What `read_workspace_status` found.
struct workspace_status {
    /// In (scope, id) order, as `engine::pauses` returns them.
    std::vector<workspace_pause> pauses;
    /// Every mailbox, in id order, as `engine::mailboxes` returns them.
    std::vector<mailbox_config> mailboxes;
    /// One per mailbox, in the same order, as `engine::status` reports it
    /// on an engine that has just started at `now`.
    std::vector<mailbox_status> statuses;
    /// As `engine::suppression_count`: `store::suppression_count`.
    std::uint64_t suppressions = 0;
};

/// Reads `workspace`'s status from `st` at `now`: the configuration objects
/// (mailboxes, pools, quotas, pauses; one query per kind), the store's
/// suppression count (one row), and the sends reserved within the longest
/// cap window of a mailbox or quota (a day for most workspaces; the ledger
/// before it is not read). Each mailbox's status comes from the engine's
/// own decision code over the counters those sends give, so it is what
/// `engine::status` answers on an engine started at `now`. That is the
/// stored state: what a running engine holds in memory alone (an open
/// circuit breaker, a provider's throttling reply, a cap the store refused)
/// is not in it.
///
/// Returns nullopt when only an engine can answer: the workspace holds no
/// suppression settings of this version's normaliser (an engine would
/// re-key the stored entries first, which may change their number), or a
/// stored mailbox, pool or quota cannot be read (an engine refuses to
/// start, and says why). Each query reads the committed state when it runs.
///
/// `erasure_key` is the key the workspace's hosts hold, as
/// `engine_params::erasure_key` takes it (the key, env:NAME or file:PATH);
/// "" when the workspace keeps its own or has none. Throws `exception` with
/// errc::invalid_argument where an engine given it would refuse to start:
/// a key that does not fit the workspace, none where its hosts hold it, or
/// one that cannot be read.
MAILERS_API std::optional<workspace_status> read_workspace_status(
    store& st, std::string_view workspace, time_point now, std::string_view erasure_key = {});

/// The mailboxes `target` stops, not counting retired ones: every mailbox
/// for the workspace, the pool's members for a pool (retired or not, as
/// listed), the mailbox itself, the provider's mailboxes, and those sending
/// from the domain or a subdomain of it. In the order of `mailboxes`, or of
/// the pool's list.
MAILERS_API std::vector<std::string> mailboxes_held(const pause_target& target,
                                                    std::span<const mailbox_config> mailboxes,
                                                    std::span<const pool_config> pools);

}  // namespace mailers
