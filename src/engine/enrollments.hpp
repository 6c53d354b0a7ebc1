// The engine's side of enrollments: the scheduler that turns due steps into
// queue items, what the queue asks before and after handing one off, and the
// stop rule a suppression applies.
//
// A step's life: the store lists the enrollment as due (next_due, through
// its index); `plan_due_steps` renders the step and, in one commit, moves
// the enrollment out of the scheduler (a compare-and-set on its version)
// and enqueues the send, due when the step is. The queue hands it off like
// any queued send; the commit that finishes the item also records the
// step's outcome on the enrollment (advance_enrollment), which makes the
// enrollment due again for its next step. A crash between any two of these
// commits leaves either the enrollment due (planned again: the same send
// key, so at most one send) or the item queued (handed off once).
#pragma once

#include <cstdint>
#include <mailers/engine.hpp>
#include <optional>
#include <string>
#include <vector>

namespace mailers::detail {

/// What a sequence step's queue item names: "seq:<sequence>:<enrollment>:
/// <step>[~<attempt>]/<plan>" (step 1-based, as in its send's idempotency key).
struct step_key {
    std::string sequence_id;
    std::uint64_t enrollment = 0;
    std::uint32_t step = 0;     ///< 0-based
    std::uint32_t attempt = 0;  ///< enrollment::attempt when the step was planned
};

/// The step a queue item sends; nullopt for items that are not steps.
std::optional<step_key> parse_step_key(const queued_send& item);

/// A step's send key: "seq:<sequence>:<enrollment>:<step>" for its first
/// send, with "~<attempt>" appended for a re-send after `not_sent` (1-based
/// step, attempt from 1). '~' cannot occur in the step number, and the key
/// is read from its right end, so the sequence id may hold ':' or '~'; keys
/// without an attempt, stored before re-sends existed, read as attempt 0.
std::string step_send_key(std::string_view base, std::uint32_t attempt);

/// The step a send's idempotency key names (as step_send_key writes it,
/// without the queue item's "/<plan>"); nullopt for other keys.
std::optional<step_key> parse_send_key(std::string_view key);

/// The stop that suppressing `e` applies to enrollments.
store_op stop_for_suppression(const suppression_entry& e);

/// The stop a reply to a send of ours applies, by `record_reply`'s rule:
/// for a step of an enrollment, that enrollment alone or every enrollment
/// of its address, as its sequence's `reply_stops` says; for another send,
/// every enrollment of its recipient. `ev` is a `replied` event correlated
/// with the ledger (send_id, idempotency_key, message_id filled in where
/// known). nullopt when it names no send of ours: nothing stops.
std::optional<store_ops::stop_enrollments> reply_stop(engine::impl& s, const event& ev);

/// Commits `stop` with its `enrollment.stop` audit record as `who` (on
/// resource `id`; "" for the enrollment or address `stop` names), and
/// `also`. Under `once` (nullptr for none), a duplicate
/// commits none of them and answers nullopt. Returns the enrollments the
/// store stopped.
std::optional<std::vector<std::uint64_t>> commit_stop(engine::impl& s, const principal& who,
                                                      store_ops::stop_enrollments stop,
                                                      std::string_view id,
                                                      const store_ops::record_key* once = nullptr,
                                                      std::vector<store_op> also = {});

/// What commit_stop commits, as ops (its audit record the last), to
/// commit with others: under `once`, the record guards the rest.
std::vector<store_op> stop_ops(engine::impl& s, const principal& who,
                               store_ops::stop_enrollments stop, std::string_view id,
                               const store_ops::record_key* once, std::vector<store_op> also);

/// An enrollment held `unresolved` that an event resolves: as read, and
/// as resolved.
struct held_resolution {
    enrollment before, after;
};

/// The resolution `ev` proves: a provider's event about a step's send
/// (delivered, deferred, bounced, opened, clicked) shows the provider had
/// the message, so the enrollment held `unresolved` on that step (on any
/// attempt of it) goes on as sent. So does one whose re-send of that step
/// after `not_sent` has not been handed off yet, about an earlier attempt:
/// the re-send is cancelled, so the contact gets the step once. nullopt for
/// any other event, and once the re-send was handed off (it stands: the
/// event is recorded and the step counts once).
std::optional<held_resolution> resolved_by(engine::impl& s, const event& ev);

/// Commits `r` (a compare-and-set on the enrollment's version) with its
/// `enrollment.resolve` audit record as `who`, and `also`, under `once`
/// as commit_stop does. Returns false when `once` was a duplicate.
bool commit_resolution(engine::impl& s, const principal& who, const held_resolution& r,
                       const store_ops::record_key* once, std::vector<store_op> also);

/// What commit_resolution commits, as ops, as stop_ops gives them.
std::vector<store_op> resolution_ops(engine::impl& s, const principal& who,
                                     const held_resolution& r, const store_ops::record_key* once,
                                     std::vector<store_op> also);

/// Plans up to `limit` due steps; returns how many enrollments it looked
/// at. Runs on the queue's thread (store calls block).
std::size_t plan_due_steps(engine::impl& s, std::size_t limit);

/// What the queue does with a step's item it has just claimed.
enum class step_verdict {
    hand_off,  ///< send it
    paused,    ///< its sequence is paused: defer
    drop,      ///< its enrollment no longer waits for it: cancel
};
step_verdict check_step(engine::impl& s, const queued_send& item, const step_key& k,
                        std::string& why);

/// The op recording on the enrollment how its step's item ended (to commit
/// with the item's finish_queued).
store_op step_outcome_op(engine::impl& s, const queued_send& item, const step_key& k,
                         step_outcome outcome, const send_result& r, const send_request& req,
                         std::string detail, time_point at);

}  // namespace mailers::detail
