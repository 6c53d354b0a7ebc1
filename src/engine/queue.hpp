// The engine's side of the durable send queue: what a queued send stores,
// and the thread that hands due items to the send path.
//
// The store decides who holds an item (claim_queued); this side decides
// what the item waits for, from the same eligibility the send path uses,
// and records it as the item's due time and wait reason.
#pragma once

#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/system/result.hpp>
#include <condition_variable>
#include <cstdint>
#include <mailers/engine.hpp>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "decide/pacing.hpp"
#include "engine/commit_writer.hpp"

namespace mailers::detail {

/// Every field of `r`, as the bytes a queue item keeps. Length-prefixed
/// binary, versioned by its first bytes: attachments and raw messages are
/// bytes, not text.
std::string encode_request(const send_request& r);
/// The request `encode_request` made; errc::store_corrupt for bytes it did
/// not make (cut short, another version, trailing bytes).
boost::system::result<send_request> decode_request(std::string_view bytes);

/// The key a queue item's send reserves its ledger row under: the item's
/// own, else one derived from its id. Stable across claims, so an item
/// taken again after its holder died finds the send it already became.
std::string handoff_key(const queued_send& item);

/// Runs a commit on the writer thread and waits for its reply; throws its
/// error. Blocks the calling thread: never the host's executor.
commit_reply commit_now(engine::impl& s, std::vector<store_op> ops);

/// Why a queued send that could not go now waits, as the queue names it
/// ("cap", "window", "gap", "paused", "breaker", "throttled").
std::string_view wait_reason_name(ineligible_reason r) noexcept;

/// Drains the workspace's queue for one engine: claims due items on a
/// thread of its own (store calls block; never the host's executor), starts
/// each through the send path, and defers or finishes it from the outcome
/// through the engine's commit writer.
class __attribute__((visibility("hidden"))) send_queue {
public:
    using done_handler = boost::asio::any_completion_handler<void(error_code, queued_send)>;

    explicit send_queue(engine::impl& s);
    ~send_queue();

    void start();
    /// Stops claiming and joins the thread; sends already started still
    /// defer or finish their items. Waiters complete with operation_aborted.
    /// Idempotent.
    void stop();
    /// Looks for due items now rather than at the next poll.
    void wake();

    /// Completes `h` once item `id` ends (see engine::async_enqueue).
    void wait_for(std::uint64_t id, done_handler h);
    /// Item `id` ended as `item` (finished here, cancelled, or seen ended).
    void ended(const queued_send& item);

private:
    struct waiter {
        done_handler handler;
        boost::asio::executor_work_guard<boost::asio::any_io_executor> work;
    };

    void loop();
    void drain_once();
    void poll_waiters();
    /// Forgets items that ended more than queue_retention ago, at most once
    /// an hour of the engine's clock.
    void purge_ended();
    void hand_off(queued_send item);
    void on_outcome(const queued_send& item, error_code ec, const send_result& r,
                    const send_request& req);
    /// Commits `op` (and `also`, a sequence step's outcome) for `item`.
    void commit_end(const queued_send& item, store_op op, std::optional<store_op> also = {});
    /// When an item that waits for capacity from `from` on should be
    /// looked at again, so that the items waiting for one target leave
    /// spread over its caps' periods rather than all at `from`.
    time_point paced(const send_request& req, time_point from, std::uint64_t seed);
    /// For a target whose mailboxes all have a send window: the slot an
    /// item about to be handed off at `now` should wait for instead, its
    /// paced time with reason "pace", or the window's opening with reason
    /// "window" when it is closed now or this opening has no slot left.
    /// nullopt: hand it off now (its slot is now, or nothing paces it).
    /// Takes the slot it names.
    std::optional<std::pair<time_point, std::string>> slot(const send_request& req, time_point now,
                                                           std::uint64_t seed);

    /// What pacing knows of a send's target at `from`.
    struct pace_target {
        std::string key;  ///< "pool:<id>" or "mailbox:<id>"
        std::vector<decide::send_budget> budgets;
        decide::pacing_input in;
        /// When the window open at `from` (or opening next) closes: the
        /// latest member's, when every member has a window.
        std::optional<time_point> window_end;
        /// When the first member's window is open at or after `from`.
        std::optional<time_point> opens_at;
        /// When a member's window opens again after closing.
        std::optional<time_point> next_open;
    };
    pace_target target_of(const send_request& req, time_point from) const;
    struct paced_slot {
        time_point at;  ///< with jitter
        bool taken;     ///< false: it fell past the window's end and was left
    };
    /// The target's next slot after its last one, taken (recorded as its
    /// last) unless it falls past the window's end and `take_past_window`
    /// is false. nullopt when a budget has nothing left.
    std::optional<paced_slot> next_slot(pace_target& t, std::uint64_t seed, bool take_past_window);

    engine::impl& s_;
    std::mutex mu_;
    std::condition_variable cv_;
    bool stop_ = false, wake_ = false, started_ = false;
    std::size_t in_flight_ = 0;
    std::multimap<std::uint64_t, waiter> waiters_;
    /// Per target ("pool:<id>", "mailbox:<id>"): the last time paced() gave
    /// out. Memory only: after a restart, or with several engines, times
    /// may double up, which costs a wasted claim, never a cap (the store
    /// decides those).
    std::map<std::string, time_point> last_slot_;
    time_point last_purge_{};  // drain thread only
    std::thread thread_;
};

}  // namespace mailers::detail
