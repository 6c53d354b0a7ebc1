// The storage interface, and the place where the processes that share a
// workspace coordinate.
//
// Everything two processes must agree on is decided by the store inside one
// transaction, never in one process's memory:
//   * cap reservations: a `reserve_send` counts the uses of every cap it
//     claims (mailbox, provider, sender and recipient domain, warm-up) and
//     records one more on all of them, or on none;
//   * send ids, idempotency keys (a taken key answers `duplicate` with the
//     row that holds it), the minimum gap of a mailbox;
//   * the audit chain: the store gives each record its seq, links it to the
//     head and hashes it (`audit_hash`, under the key the op carries), so
//     one chain per workspace however many processes append; a purge of its
//     oldest records moves the chain's anchor in the same order;
//   * the change feed: every commit that changes configuration objects or
//     suppressions publishes the next change seq; `changes_since` returns
//     what changed, so engines apply what others committed;
//   * membership: an engine attaches as a member with a lease and
//     acknowledges the change seq it has applied; `recover` turns the
//     still-reserved sends of members whose lease ran out into `unknown`,
//     never a send another member finished;
//   * the send queue: queued sends wait in the store until a member claims
//     them (`claim_queued`); a claimed item belongs to one member until it
//     defers or finishes it, or until that member is recovered, so several
//     processes drain one queue without two taking the same item;
//   * recorded keys (`store_ops::record_key`): what a provider delivers
//     more than once (an event, a signature token) is recorded by one
//     commit only, and the effects guarded by the record commit with it.
//
// SQLite (sqlite_store.hpp) and PostgreSQL (postgres_store.hpp) ship in the
// library. Another backend implements this class and runs the conformance
// kit installed with the headers (mailers/testing/store_conformance.hpp).
//
// Thread safety: implementations must be safe to call from several threads
// and from several processes on one database.
// Errors: methods throw `mailers::exception` with errc::store_error (or
// errc::schema_too_new); a `commit` that throws has changed nothing.
// Refusals of a reservation are results, not errors.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mailers/audit.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/daily_counts.hpp>
#include <mailers/suppression.hpp>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace mailers {

/// Where a send stands in the ledger.
enum class send_state {
    reserved,  ///< caps reserved and durably recorded; about to be handed off
    accepted,  ///< the provider accepted it
    failed,    ///< certainly not sent (refused, or cancelled before hand-off)
    unknown,   ///< may have been sent; never retried automatically
};

MAILERS_API std::string_view to_string(send_state s) noexcept;

/// Whether opening a store may create one. A store that was lost (a file
/// deleted, emptied or cut short, a schema dropped) must never come back as
/// an empty workspace with every suppression gone, so creating is a choice
/// the host makes, not a side effect of a wrong path.
enum class open_mode {
    /// The store must exist: nothing there (no file, an empty file, no
    /// schema) is errc::store_missing.
    existing,
    /// Creates the store: one already there is errc::store_exists.
    create,
    /// Opens the store, or creates it when nothing is there. For hosts that
    /// create on first run and know nothing else can point them elsewhere.
    open_or_create,
};

MAILERS_API std::string_view to_string(open_mode m) noexcept;

/// One logical send. Failover reserves again on the same row (new mailbox,
/// attempt + 1) before the next hand-off, so there is one row per
/// idempotency key.
struct ledger_row {
    std::uint64_t id = 0;         ///< given by the store at the first reservation
    std::string idempotency_key;  ///< "" when the caller gave none
    std::string mailbox;
    std::string provider;
    std::string pool;
    std::string recipient;   ///< normalised address
    std::string message_id;  ///< RFC 5322 Message-ID (without <>)
    send_state state = send_state::reserved;
    std::uint32_t attempt = 1;
    time_point reserved_at{};  ///< when the current attempt reserved its caps
    time_point updated_at{};
    std::string provider_message_id;
    std::string detail;       ///< last error, never secrets
    std::uint64_t owner = 0;  ///< the member that reserved it (see `attach`)
    /// The change seq (see `changes_since`) the engine had applied when it
    /// made the current attempt's last suppression check, at the hand-off;
    /// 0 when no check was recorded (not yet handed off, or refused before
    /// the check). The check saw every suppression change with a seq at or
    /// below it, so finding none of the send's recipients suppressed (by
    /// address or domain) at that seq shows the hand-off respected every
    /// suppression up to it; one committed later had not reached that
    /// engine yet, and `engine::suppress` returns only once it has reached
    /// every engine. Written by `reserve_send` and `update_send` as given.
    std::uint64_t suppression_seq = 0;
    friend bool operator==(const ledger_row&, const ledger_row&) = default;
};

/// A configuration object, stored as JSON: kind is "mailbox", "pool",
/// "quota", "pause", ...; id is unique within its kind.
struct stored_object {
    std::string kind;
    std::string id;
    std::string json;
    friend bool operator==(const stored_object&, const stored_object&) = default;
};

/// One window of a cap: the uses recorded at or after `floor` must stay
/// below `max` for one more to fit. A rolling window's floor is
/// `at - length`; a calendar window's is the start of its period. Uses
/// recorded after `at` (by a process whose clock runs ahead) count too, so
/// a clock that steps back never frees a cap.
struct cap_window {
    time_point floor{};
    std::uint64_t max = 0;
    friend bool operator==(const cap_window&, const cap_window&) = default;
};

/// A claim on one cap key ("mailbox:rep1", "provider:ses-eu",
/// "sender_domain:brand.com", "recipient_domain:gmail.com", ...; the engine
/// names them, the store only compares them).
struct cap_claim {
    std::string key;
    std::vector<cap_window> windows;
    /// When above zero, the claim is refused while the key's gap runs
    /// (until the `at` of its previous claim plus that claim's gap), and
    /// starts a new gap of this length. A gap belongs to the key: it runs
    /// on when the send that started it fails or its uses are purged.
    duration gap{0};
    /// The configuration object these limits come from (kind "mailbox" or
    /// "quota"). The claim is refused as stale when that object was put or
    /// deleted by a change newer than the reservation's `config_seq`, so a
    /// process deciding on an old configuration never exceeds a new cap.
    std::string object_kind;
    std::string object_id;
    friend bool operator==(const cap_claim&, const cap_claim&) = default;
};

/// Where a queued send stands.
enum class queue_state {
    waiting,    ///< waits for its due time; `claim_queued` may take it
    claimed,    ///< held by one member (`claimed_by`) until deferred or finished
    done,       ///< handed off to the ledger (`send_id`), or refused for good
    cancelled,  ///< withdrawn before anyone handed it off
};

MAILERS_API std::string_view to_string(queue_state s) noexcept;

/// A send waiting in the workspace's durable queue. The store keeps it and
/// decides who holds it; what it waits for (caps, windows, gaps) is the
/// engine's to judge, and the engine records its judgement in `due_at` and
/// `wait_reason` when it defers the item.
struct queued_send {
    std::uint64_t id = 0;         ///< given by the store; never reused in the workspace
    std::string idempotency_key;  ///< "" for none; unique among the workspace's queue items
    std::string pool;             ///< the target: a pool, or
    std::string mailbox;          ///< a named mailbox (the engine fills both as it needs)
    std::string recipient_domain;
    std::string request;  ///< the serialized send, stored and returned as given
    std::string origin;   ///< free text: "api", "sequence:<id>/<step>", "campaign:<id>"
    time_point enqueued_at{};
    time_point not_before{};  ///< never handed off earlier
    time_point due_at{};      ///< when it is next looked at; starts at not_before
    queue_state state = queue_state::waiting;
    /// Why it waits, as the engine names it ("", "cap", "window", "gap",
    /// "paused", "breaker", ...); the store only stores and counts it.
    std::string wait_reason;
    std::uint32_t checks = 0;      ///< times claimed
    std::uint64_t claimed_by = 0;  ///< the member holding it while claimed, else 0
    std::uint64_t send_id = 0;     ///< the ledger row it became, once done; else 0
    std::string detail;            ///< last note (a recovery, an error), never secrets
    time_point updated_at{};
    friend bool operator==(const queued_send&, const queued_send&) = default;
};

/// Where a contact's enrollment in a sequence stands.
enum class enrollment_state {
    active,     ///< its steps are planned and sent as they fall due
    paused,     ///< kept where it is until resumed
    completed,  ///< every step was sent
    stopped,    ///< ended early, for `stop_reason`
    failed,     ///< a step could not be planned or sent
    /// Its last step's send ended `unknown` (it may or may not have gone):
    /// held, the step counted as made, until `engine::resolve_unknown_step`
    /// or an event from the provider about that send says what happened.
    unresolved,
};

MAILERS_API std::string_view to_string(enrollment_state s) noexcept;

/// Why an enrollment stopped.
enum class enrollment_stop {
    none,
    replied,
    bounced,
    unsubscribed,
    suppressed,  ///< a suppression of another reason (complaint, manual, legal), or at hand-off
    goal,
    manual,
};

MAILERS_API std::string_view to_string(enrollment_stop s) noexcept;

/// One contact in one sequence. The store decides its state: every change
/// is a compare-and-set on `version` (store_ops::update_enrollment) or a
/// rule applied inside the store (stop_enrollments, advance_enrollment), so
/// several processes agree on it.
struct enrollment {
    std::uint64_t id = 0;  ///< given by the store; never reused
    std::string sequence_id;
    /// Normalised as a suppression entry's value: the key stop rules match.
    std::string address;
    std::string display_name;
    std::string variables;  ///< the contact's template variables, as the engine serialised them
    std::string owner;      ///< owner mailbox id, or ""
    std::string actor;      ///< the principal that enrolled the contact; its steps send as it
    enrollment_state state = enrollment_state::active;
    enrollment_stop stop_reason = enrollment_stop::none;
    std::string detail;  ///< why it stopped, failed or waits; never secrets
    /// The 0-based index of the next step to send: the number of steps sent.
    std::uint32_t step = 0;
    /// When the scheduler next plans this enrollment's step (store::due_enrollments).
    /// nullopt while the step waits in the send queue, and when the
    /// enrollment is not active.
    std::optional<time_point> next_due;
    time_point step_due{};  ///< when the step in the queue falls due
    /// The idempotency key of the queue item holding the current step, or "".
    std::string queue_key;
    /// Times a step was planned: makes each plan's queue key new, so a step
    /// planned again after a pause is queued again (its send keeps one key).
    std::uint32_t plans = 0;
    /// Times the current step was sent again after `engine::resolve_unknown_step`
    /// said its send did not go (`not_sent`): 0 for its first send. Names its
    /// send key ("seq:<sequence>:<enrollment>:<step>~<attempt>" from 1 on), so
    /// each re-send has a key of its own. While it is above 0 and the step not
    /// yet made again, the `prev_*` fields and `last_sent_at` still describe
    /// the attempt before (the step's re-send is built from them). Back to 0
    /// once the step counts as made (sent, or resolved as sent); an `unknown`
    /// outcome keeps it, naming the held attempt.
    std::uint32_t attempt = 0;
    /// The previous step's send, for sender and threading rules.
    std::string prev_mailbox;
    std::string prev_message_id;
    std::string prev_subject;
    std::vector<std::string> prev_references;
    time_point last_sent_at{};  ///< the previous step's send; the epoch before the first
    time_point enrolled_at{};
    time_point updated_at{};
    /// Raised by every change; `update_enrollment` applies only on the version it read.
    std::uint64_t version = 0;
    friend bool operator==(const enrollment&, const enrollment&) = default;
};

/// How one step of an enrollment ended, as the queue saw it.
enum class step_outcome {
    sent,        ///< handed off and accepted
    unknown,     ///< it may have gone; never repeated: the enrollment is held, `unresolved`
    failed,      ///< certainly not sent, and will not be by waiting
    suppressed,  ///< refused at hand-off: the recipient is suppressed
};

/// What enrolling a contact already enrolled in the sequence does.
enum class enrollment_conflict : std::uint8_t {
    refuse,  ///< errc::duplicate; the first enrollment is unchanged
    merge,   ///< the new variables and owner replace the old; progress is kept
};

// --- outbound webhooks: the outbox ------------------------------------------

/// Where an outbound webhook delivery stands.
enum class webhook_delivery_state {
    pending,    ///< waits for its due time; `claim_webhook_deliveries` may take it
    claimed,    ///< held by one member (`claimed_by`) while it is attempted
    delivered,  ///< the endpoint answered 2xx
    failed,     ///< given up: attempts exhausted, endpoint disabled or removed
};

MAILERS_API std::string_view to_string(webhook_delivery_state s) noexcept;

/// One event to be POSTed to one endpoint: a row of the workspace's
/// outbox. The engine writes it in the commit that records the event and
/// judges each attempt; the store keeps it and decides who holds it, as
/// it does for queued sends.
struct webhook_delivery {
    std::uint64_t id = 0;  ///< given by the store; never reused in the workspace
    std::string endpoint;  ///< the endpoint's id
    /// The `webhook-id` header: the same on every attempt, so a receiver
    /// de-duplicates retries on it.
    std::string message_id;
    /// The event's key ("send:<id>:<type>", a provider event's dedup key,
    /// ...): one delivery per (endpoint, event_key) in the workspace.
    std::string event_key;
    std::string event_type;  ///< "sent", "bounced", ...; for filters and reads
    std::string payload;     ///< the JSON body, stored and returned as given
    time_point created_at{};
    time_point due_at{};  ///< when it is next attempted
    webhook_delivery_state state = webhook_delivery_state::pending;
    std::uint32_t attempts = 0;    ///< times claimed
    std::uint64_t claimed_by = 0;  ///< the member holding it while claimed, else 0
    int last_status = 0;           ///< the last attempt's HTTP status; 0 for none
    std::string detail;            ///< the last attempt's error, never secrets
    time_point updated_at{};
    friend bool operator==(const webhook_delivery&, const webhook_delivery&) = default;
};

/// Which deliveries `store::for_each_webhook_delivery` visits.
struct webhook_delivery_filter {
    std::string endpoint;                         ///< "" every endpoint
    std::optional<webhook_delivery_state> state;  ///< only this state
    std::uint64_t after_id = 0;                   ///< only ids above it (paging)
    std::size_t limit = 0;                        ///< 0: no limit
};

/// An endpoint's deliveries at a glance.
struct webhook_delivery_counts {
    std::uint64_t pending = 0, claimed = 0, delivered = 0, failed = 0;
    /// The newest updated_at of a delivered row; nullopt when none.
    std::optional<time_point> last_delivered;
    friend bool operator==(const webhook_delivery_counts&,
                           const webhook_delivery_counts&) = default;
};

// --- end outbound webhooks ----------------------------------------------------

/// The writes a `commit` applies, in order. Deleting what does not exist is
/// not an error. The refusals listed as errors fail the whole batch.
namespace store_ops {
/// Insert or replace; publishes a change.
struct put_object {
    stored_object object;
};
/// Publishes a change.
struct delete_object {
    std::string kind;
    std::string id;
};
/// Insert or replace; publishes a change.
struct put_suppression {
    suppression_entry entry;
};
/// Publishes a change.
struct delete_suppression {
    suppression_kind kind;
    std::string value;
};
/// Reserves every claim and records the send, or refuses (reserve_status).
/// With row.id == 0 it is a new send: the store gives the id, and a taken
/// non-empty idempotency key answers `duplicate`. With row.id set it is a
/// further attempt of that send by its owner (failover): the uses of the
/// previous attempt are released and the row takes the new mailbox,
/// provider, message id, attempt and reservation time, all or nothing.
/// row.state must be `reserved`; row.reserved_at is the claims' `at`.
struct reserve_send {
    ledger_row row;
    std::vector<cap_claim> claims;
    /// The newest change the caller's configuration reflects.
    std::uint64_t config_seq = 0;
};
/// Records an attempt's outcome: applied only while row.owner owns the row
/// and its state is `reserved` or `unknown` (a recovered row may still get
/// its true outcome from its owner); otherwise nothing changes and the
/// result says so. Moving to `failed` releases the attempt's cap uses; the
/// key, mailbox, provider and reservation time stay as stored.
struct update_send {
    ledger_row row;
};
/// Appends to the workspace's audit chain: the store sets seq (head + 1),
/// prev_hash (the head's hash, "" for seq 1) and hash =
/// `audit_hash(record, key)` (those given are ignored).
struct append_audit {
    audit_record record;
    /// The audit key, or "" for an unkeyed SHA-256. Never stored.
    std::string key;
};
/// Adds `item` to the queue as `waiting`, due at item.not_before. The
/// store sets id, due_at (= not_before), state, checks, claimed_by (0),
/// send_id (0) and updated_at (= enqueued_at); the rest is kept as given.
/// A non-empty idempotency key already held by a queue item of the
/// workspace (in any state, until purged) answers `duplicate` with that
/// item and changes nothing: a result, not an error. An empty `request` or
/// an unset `not_before` (the epoch) is refused (throws).
struct enqueue {
    queued_send item;
};
/// Puts an item claimed by `member` back to waiting, due at `due_at`, with
/// `wait_reason` and `detail`. Applied only while `member` holds the item;
/// otherwise nothing changes and op_result.applied is false (with
/// op_result.queue.state saying where the item stood). A member whose
/// lease ran out still holds its items until it is recovered, and may
/// defer or finish them meanwhile, as an owner may still record a send's
/// true outcome (update_send); once recovered, it holds none.
struct defer_queued {
    std::uint64_t id = 0;
    std::uint64_t member = 0;
    time_point due_at{};
    std::string wait_reason;
    std::string detail;
    time_point at{};  ///< becomes updated_at
};
/// Ends an item claimed by `member`: `done` (with the ledger row it
/// became, or 0 when it was refused for good) or `cancelled`. Applied only
/// while `member` holds the item, as for defer_queued. `state` waiting or
/// claimed is refused (throws).
struct finish_queued {
    std::uint64_t id = 0;
    std::uint64_t member = 0;
    queue_state state = queue_state::done;
    std::uint64_t send_id = 0;
    std::string detail;
    time_point at{};  ///< becomes updated_at
};
/// Cancels a waiting item. A claimed item is not cancelled: its holder may
/// be handing it off this moment, so the caller asks it (or waits). Not
/// applied for a claimed, done or cancelled item, or one that does not
/// exist; op_result.queue.state says which.
struct cancel_queued {
    std::uint64_t id = 0;
    std::string detail;
    time_point at{};  ///< becomes updated_at
};
/// Records that `key` was seen in `namespace_` ("event" for a provider
/// event's dedup key, "mailgun-token" for a webhook signature token), so
/// that something delivered more than once takes effect once, whichever
/// process receives it. Applied (op_result.applied) when the key is new in
/// the workspace and namespace, or its previous record expired (its
/// expires_at is at or before `at`): the record then expires at
/// `expires_at`. Otherwise it is a duplicate: applied is false and nothing
/// changes, a result, not an error. A key recorded twice in one commit is
/// a duplicate the second time. Two commits racing on one key, from any
/// processes, apply it in one of them only.
///
/// `guards` makes the next ops of the commit conditional on the record:
/// when it is a duplicate, those ops are skipped (each reports applied
/// false, an append_audit among them gets no seq), so an effect and the
/// record of its cause commit together or not at all. A commit holding
/// guarded ops that would publish a change may still publish a change seq
/// when they are skipped; that change changes nothing. A record_key
/// guarded by another, or guards reaching past the last op, is refused
/// (throws).
struct record_key {
    std::string namespace_;
    std::string key;
    time_point at{};
    time_point expires_at{};
    std::size_t guards = 0;
};
/// Enrolls `row` (state, step, times and fields as given; the store sets
/// id and version 1). When the workspace already holds an enrollment of
/// row.address in row.sequence_id (in any state), `refuse` answers
/// `duplicate` with it and changes nothing; `merge` replaces its
/// variables, owner and display name, keeps its progress and state, and
/// answers `merged`. Results, not errors.
struct enroll {
    enrollment row;
    enrollment_conflict on_conflict = enrollment_conflict::refuse;
};
/// Replaces the stored enrollment row.id with `row` (id, sequence and
/// address are kept as stored) when its version is still
/// `expected_version`: a compare-and-set, applied (op_result.applied) or
/// not; the stored version becomes expected_version + 1. When the stored
/// queue_key is not row.queue_key, the waiting queue item holding the
/// stored one is cancelled with `detail` (a claimed one is left to its
/// holder).
struct update_enrollment {
    enrollment row;
    std::uint64_t expected_version = 0;
    std::string detail;
    time_point at{};  ///< becomes updated_at
};
/// Stops every active, paused or unresolved enrollment matching all the given fields:
/// `address` (normalised; "" any), `domain` (the address's domain; "" any),
/// `sequence_id` ("" every sequence), `id` (0 any); at least one of
/// address, domain and id must be given (throws otherwise). Each becomes
/// `stopped` with `reason` and `detail`, leaves the scheduler, and the
/// waiting queue item of its step is cancelled. op_result.enrollments
/// lists the ids stopped.
struct stop_enrollments {
    std::string address;
    std::string domain;
    std::string sequence_id;
    std::uint64_t id = 0;
    enrollment_stop reason = enrollment_stop::manual;
    std::string detail;
    time_point at{};
};
/// Records how the step `step` (0-based) of enrollment `id`, queued under
/// `queue_key`, ended. Applied only while the enrollment is at that step
/// with that queue key (op_result.applied). `sent`: the send's facts become
/// the previous step's, `step` moves on, `attempt` returns to 0 and the
/// queue key clears; an active enrollment is planned next at `at`
/// (completed when `last`), a paused one stays paused (completed when
/// `last`), a stopped, completed or failed one keeps its state (the send
/// happened; nothing follows it). `unknown`: as `sent`, except that
/// `attempt` is kept and an active enrollment becomes `unresolved` (not
/// planned) instead. `failed`: state failed, and
/// `suppressed`: stopped with reason suppressed, both only for an active,
/// paused or unresolved enrollment. A sent or unknown message's id is
/// remembered for `store::find_enrollment_by_message` whether or not the
/// rest applies.
struct advance_enrollment {
    std::uint64_t id = 0;
    std::uint32_t step = 0;
    std::string queue_key;
    step_outcome outcome = step_outcome::sent;
    bool last = false;
    std::string mailbox;
    std::string message_id;
    std::string subject;
    std::vector<std::string> references;
    std::string detail;
    time_point at{};
};
// --- outbound webhooks: outbox ops ---
/// Adds `row` to the outbox as `pending`, due at row.due_at (the epoch:
/// at row.created_at). The store sets id, state, attempts (0), claimed_by
/// (0) and updated_at (= created_at). A delivery already held for
/// (row.endpoint, row.event_key) in the workspace, in any state until
/// purged, makes it a duplicate: op_result.applied false, nothing changes
/// (a result, not an error). An empty endpoint, message id, event key or
/// payload, or an unset created_at, is refused (throws).
struct add_webhook_delivery {
    webhook_delivery row;
};
/// Ends an attempt of a delivery claimed by `member`: `pending` (a retry,
/// due at `due_at`), `delivered` or `failed`, with the attempt's HTTP
/// status and detail. Applied only while `member` holds it; otherwise
/// nothing changes and op_result.applied is false. `claimed` is refused
/// (throws).
struct end_webhook_attempt {
    std::uint64_t id = 0;
    std::uint64_t member = 0;
    webhook_delivery_state state = webhook_delivery_state::delivered;
    time_point due_at{};
    int status = 0;
    std::string detail;
    time_point at{};  ///< becomes updated_at
};
/// Gives up every pending delivery of `endpoint` (an endpoint disabled or
/// removed): they become `failed` with `detail`. Claimed ones are left to
/// their holders.
struct fail_webhook_deliveries {
    std::string endpoint;
    std::string detail;
    time_point at{};
};
/// Retries the failed deliveries of `endpoint` created at or after
/// `since` (an endpoint re-enabled): they become `pending`, due at `at`,
/// with attempts back to 0.
struct retry_webhook_deliveries {
    std::string endpoint;
    time_point since{};
    time_point at{};
};
// --- end outbound webhooks ---
// --- daily counts and soft-bounce tallies ---
/// Adds `n` to the count of `metric` on `day` for each of `targets`
/// (scope, id; the workspace scope's id is ""). Counts only grow; two
/// commits adding to one count, from any processes, both count. With
/// `if_previous_applied`, it is applied only when the op just before it in
/// the commit was (an update_send that took, a record_key that was new);
/// op_result.applied says whether it was. A first op with it is refused
/// (throws). Stores may add up the counts of one commit before writing
/// them, so a batch of sends costs a few rows, not one per send.
struct add_counts {
    count_day day = 0;
    count_metric metric = count_metric::sent;
    std::vector<std::pair<count_scope, std::string>> targets;
    std::uint64_t n = 1;
    bool if_previous_applied = false;
};
/// Records one soft bounce of `address` (normalised) at `at` and counts
/// the address's soft bounces at or after `since`, this one included;
/// older ones are forgotten. op_result.applied is true when that count is
/// at least `threshold` (1 or more; 0 is refused, throws). Two commits
/// racing on one address, from any processes, both count: the later sees
/// the earlier.
struct tally_soft_bounce {
    std::string address;
    time_point at{};
    time_point since{};
    std::uint32_t threshold = 1;
};
// --- end daily counts ---
}  // namespace store_ops

using store_op =
    std::variant<store_ops::put_object, store_ops::delete_object, store_ops::put_suppression,
                 store_ops::delete_suppression, store_ops::reserve_send, store_ops::update_send,
                 store_ops::append_audit, store_ops::enqueue, store_ops::defer_queued,
                 store_ops::finish_queued, store_ops::cancel_queued, store_ops::record_key,
                 store_ops::enroll, store_ops::update_enrollment, store_ops::stop_enrollments,
                 store_ops::advance_enrollment,
                 // outbound webhooks
                 store_ops::add_webhook_delivery, store_ops::end_webhook_attempt,
                 store_ops::fail_webhook_deliveries, store_ops::retry_webhook_deliveries,
                 // daily counts
                 store_ops::add_counts, store_ops::tally_soft_bounce>;

enum class reserve_status {
    reserved,      ///< recorded; `send_id` is the send's id
    duplicate,     ///< the idempotency key is taken; `existing` is its row
    cap_reached,   ///< claims[claim].windows[window] is full
    gap,           ///< claims[claim]'s gap runs until `until`
    stale_config,  ///< claims[claim]'s object changed after config_seq
    not_owner,     ///< a further attempt of a send the caller does not own
};

MAILERS_API std::string_view to_string(reserve_status s) noexcept;

struct reserve_outcome {
    reserve_status status = reserve_status::reserved;
    std::uint64_t send_id = 0;
    /// duplicate: the row holding the key. Behind a pointer so that a
    /// result stays small: a commit returns one per op, and an import is
    /// millions of ops.
    std::shared_ptr<const ledger_row> existing;
    std::size_t claim = 0;   ///< cap_reached, gap, stale_config
    std::size_t window = 0;  ///< cap_reached
    /// cap_reached: the time of the oldest use that must leave the window
    /// before one more fits (for a rolling window, retry at until + length);
    /// gap: when the gap ends.
    time_point until{};
};

enum class enqueue_status {
    enqueued,   ///< added; `id` is the new item's
    duplicate,  ///< the idempotency key is taken; `existing` is the item holding it
};

MAILERS_API std::string_view to_string(enqueue_status s) noexcept;

/// What a queue op did.
struct queue_outcome {
    enqueue_status status = enqueue_status::enqueued;  ///< enqueue
    /// enqueue: the new item's id, or the existing one's on `duplicate`;
    /// other queue ops: the id they named.
    std::uint64_t id = 0;
    /// enqueue duplicate: the item holding the key (behind a pointer, as
    /// reserve_outcome::existing).
    std::shared_ptr<const queued_send> existing;
    /// defer_queued, finish_queued, cancel_queued: the item's state before
    /// the op; nullopt when no such item exists.
    std::optional<queue_state> state;
};

enum class enroll_status {
    enrolled,   ///< added; `id` is the new enrollment's
    duplicate,  ///< refused: `existing` is the enrollment already there
    merged,     ///< `existing` (as it was before) took the new variables and owner
};

MAILERS_API std::string_view to_string(enroll_status s) noexcept;

/// What an enrollment op did.
struct enrollment_outcome {
    enroll_status status = enroll_status::enrolled;  ///< enroll
    std::uint64_t id = 0;                            ///< enroll: the new or existing id
    std::shared_ptr<const enrollment> existing;      ///< enroll duplicate or merged
    std::vector<std::uint64_t> stopped;              ///< stop_enrollments: the ids stopped
};

/// What one op did, in op order.
struct op_result {
    reserve_outcome reservation;  ///< reserve_send
    /// update_send, defer_queued, finish_queued, cancel_queued, record_key,
    /// add_webhook_delivery, end_webhook_attempt: false when refused or a duplicate (see each op);
    /// add_counts, tally_soft_bounce: see each op;
    /// any op skipped by a record_key's `guards`: false.
    bool applied = true;
    std::uint64_t audit_seq = 0;  ///< append_audit: the seq the record got
    queue_outcome queue;          ///< enqueue, defer_queued, finish_queued, cancel_queued
    enrollment_outcome enrollments;  ///< enroll, stop_enrollments
    /// add_webhook_delivery: the new row's id (0 for a duplicate);
    /// fail_webhook_deliveries, retry_webhook_deliveries: rows changed.
    std::uint64_t webhook = 0;
};

struct commit_result {
    std::vector<op_result> ops;
    /// The change seq this commit published; 0 when it changed no object
    /// or suppression (queue ops publish none).
    std::uint64_t change_seq = 0;
};

/// Everything an engine needs at start-up, read in one transaction.
struct store_snapshot {
    std::vector<stored_object> objects;
    std::vector<suppression_entry> suppressions;
    /// Sends reserved at or after `since`, plus every send still `reserved`,
    /// in no particular order.
    std::vector<ledger_row> recent_sends;
    /// The newest change the snapshot reflects: the `after` of the first
    /// `changes_since`.
    std::uint64_t change_seq = 0;
};

/// Changes committed after a given seq, newest state only.
struct change_set {
    /// The workspace's newest change (`after` itself when nothing is
    /// newer); pass it as `after` next time.
    std::uint64_t seq = 0;
    std::vector<stored_object> objects;
    std::vector<std::pair<std::string, std::string>> deleted_objects;  ///< (kind, id)
    std::vector<suppression_entry> suppressions;
    std::vector<std::pair<suppression_kind, std::string>> deleted_suppressions;
    bool empty() const noexcept {
        return objects.empty() && deleted_objects.empty() && suppressions.empty() &&
               deleted_suppressions.empty();
    }
};

/// One version of a suppression row: the row as a change wrote it, and
/// whether and by which change it was replaced or removed. A put over an
/// existing key, an import over an existing key, an import or commit
/// writing one key twice (the earlier entry, never visible, counts as
/// replaced) and a delete all keep the version they end, in the same
/// transaction, so the versions of a workspace are its suppression history
/// since the store kept them.
struct suppression_version {
    suppression_entry entry;
    /// The change seq that wrote this version; 0 for rows written before
    /// the change feed existed.
    std::uint64_t seq = 0;
    /// The change seq that replaced or removed it; 0 while it is current.
    std::uint64_t by_seq = 0;
    friend bool operator==(const suppression_version&, const suppression_version&) = default;
};

/// Receives one chunk of a bulk import's entries (see
/// `store::import_suppressions`).
using suppression_chunk_fn = std::function<void(std::span<const suppression_entry>)>;

/// A bulk suppression import, streamed into one transaction.
struct suppression_import {
    /// Called once, inside the import's transaction: hands every entry to
    /// its argument, in chunks, in order (where two entries share a key the
    /// later one is stored). The chunk may be reused once the call returns,
    /// so an import of any size needs memory for one chunk. An exception it
    /// throws rolls the import back and reaches the caller unchanged.
    std::function<void(const suppression_chunk_fn&)> entries;
    /// Called once after the last chunk, with the number of entries given:
    /// the import's audit record, appended in the same transaction (as
    /// `store_ops::append_audit`, which this is), so its body can describe
    /// what was imported (a count, a digest of the values).
    std::function<store_ops::append_audit(std::uint64_t entries)> audit;
};

struct suppression_import_result {
    std::uint64_t entries = 0;    ///< entries given, duplicates counted
    std::uint64_t audit_seq = 0;  ///< the seq the audit record got
    /// The change seq the import published, the same for every entry; 0
    /// when there were no entries (the audit record alone is no change).
    std::uint64_t change_seq = 0;
};

// --- erasure of a person (docs/privacy.md) -------------------------------------

/// What `store::erase_person` removed or scrubbed, per data class.
struct erasure_counts {
    std::uint64_t suppression_rows = 0;    ///< current, replaced and removed rows of the address
    std::uint64_t sends = 0;               ///< ledger rows scrubbed (recipient, detail, key)
    std::uint64_t queued = 0;              ///< queue items scrubbed (request emptied)
    std::uint64_t queue_cancelled = 0;     ///< of those, waiting items cancelled
    std::uint64_t enrollments = 0;         ///< enrollments deleted, with their message records
    std::uint64_t webhook_deliveries = 0;  ///< outbox rows deleted (events and their payloads)
    std::uint64_t recorded_keys = 0;       ///< recorded keys deleted
    std::uint64_t soft_bounces = 0;        ///< soft-bounce records of the address deleted
    friend bool operator==(const erasure_counts&, const erasure_counts&) = default;
};

/// The suppression rows an erasure removed, by the change that wrote them:
/// what `verify_suppressions` needs to account for rows that are gone.
struct erased_row {
    std::uint64_t seq = 0;     ///< the change that wrote it
    std::uint64_t by_seq = 0;  ///< the change that replaced or removed it; 0 if current
};

/// One person's erasure, applied in one transaction (`store::erase_person`).
struct person_erasure {
    /// The address's normalised keys (under every folding rule set): rows
    /// whose address column equals one of them are the person's.
    std::vector<std::string> keys;
    /// Whether a free text (a ledger detail or idempotency key, a queue
    /// item's key, an outbox payload, a recorded key) mentions the person.
    /// The store hands it only texts holding an '@'.
    std::function<bool(std::string_view)> mentions;
    /// Whether a queued request (`queued_send::request`, as the engine
    /// encoded it) is to or about the person. The store hands it every
    /// queue item's request.
    std::function<bool(std::string_view)> request_mentions;
    /// The keyed-hash entries that keep the person suppressed, put as
    /// put_suppression puts them (publishing one change).
    std::vector<suppression_entry> entries;
    /// Called once, inside the transaction, after everything is removed:
    /// the erasure's audit record (appended as `store_ops::append_audit`).
    /// Empty: no record (a sweep after the erasure, which changes no
    /// suppression).
    std::function<store_ops::append_audit(const erasure_counts&, std::span<const erased_row>)>
        audit;
    time_point at{};  ///< becomes updated_at of scrubbed rows
};

struct person_erasure_result {
    erasure_counts counts;
    std::uint64_t audit_seq = 0;
    std::uint64_t change_seq = 0;  ///< the change that wrote `entries`
};

// --- end erasure ----------------------------------------------------------------

/// A purge of a workspace's oldest audit records (`store::purge_audit`).
struct audit_purge {
    /// Records from the first kept one up to (not including) the first
    /// whose `at` is at or after `before` go: the cut is a prefix, so a
    /// record with an earlier time behind a newer one stays.
    time_point before{};
    /// Records at or after this seq stay (0: no bound). The newest record
    /// always stays.
    std::uint64_t keep_from = 0;
    time_point at{};  ///< becomes the anchor's time
    /// Called once, inside the transaction, after the records are removed
    /// and the anchor written: the purge's audit record (appended as
    /// `store_ops::append_audit`), which must record the anchor
    /// (`audit_purge_body`) so the chain covers it.
    std::function<store_ops::append_audit(const audit_anchor&, std::uint64_t purged)> audit;
};

struct audit_purge_result {
    std::uint64_t purged = 0;  ///< 0: nothing was old enough; no record appended
    audit_anchor anchor;       ///< the anchor after the purge
    std::uint64_t audit_seq = 0;
};

/// Who a member is, for operators reading `members` and for recovery of
/// dead processes on one host.
struct member_info {
    std::string host;
    std::int64_t pid = 0;
    std::string name;  ///< free text: the host application's name for itself
};

struct member_record {
    std::uint64_t id = 0;
    member_info info;
    std::uint64_t acked_seq = 0;  ///< the newest change it has applied
    bool live = false;            ///< its lease has not run out, by the store's clock
};

/// Which queue items `store::for_each_queued` visits.
struct queue_filter {
    std::optional<queue_state> state;  ///< only items in this state
    std::string origin_prefix;         ///< only items whose origin starts with it ("" all)
    std::uint64_t after_id = 0;        ///< only ids above it: the last id of the previous page
    std::size_t limit = 0;             ///< at most this many; 0 for no limit
};

/// Which enrollments `store::for_each_enrollment` visits.
struct enrollment_filter {
    std::string sequence_id;                ///< "" any
    std::string address;                    ///< normalised; "" any
    std::optional<enrollment_state> state;  ///< only this state
    std::uint64_t after_id = 0;             ///< only ids above it (paging)
    std::size_t limit = 0;                  ///< 0: no limit
};

/// The queue of a workspace at a glance.
struct queue_counts {
    std::uint64_t waiting = 0;
    std::uint64_t claimed = 0;
    std::uint64_t done = 0;
    std::uint64_t cancelled = 0;
    /// Waiting items per wait_reason ("" for those never deferred), in
    /// reason order; reasons with no waiting item are left out.
    std::vector<std::pair<std::string, std::uint64_t>> waiting_by_reason;
    /// The earliest due_at of a waiting item; nullopt when none waits.
    std::optional<time_point> next_due;
    friend bool operator==(const queue_counts&, const queue_counts&) = default;
};

class MAILERS_API store {
public:
    virtual ~store() = default;

    /// Loads one workspace's state. A workspace that was never written
    /// loads empty.
    virtual store_snapshot load(std::string_view workspace, time_point since) = 0;

    /// Applies `ops` in order, atomically: all or none. Refused
    /// reservations and updates are reported in the result and change
    /// nothing; every other refusal throws. An empty span is a no-op.
    virtual commit_result commit(std::string_view workspace, std::span<const store_op> ops) = 0;

    /// Objects and suppressions changed by commits after `after`.
    virtual change_set changes_since(std::string_view workspace, std::uint64_t after) = 0;

    // --- bulk suppression paths ---------------------------------------------
    // An import or a start-up of millions of entries must not hold them all
    // as suppression_entry objects (or store_ops) at once. The defaults below
    // are correct but do exactly that; the stores of the library override
    // them with streaming versions, and so should any store that holds
    // large lists.

    /// Applies a whole import atomically, as one change: every entry is
    /// put (insert or replace, removing the key's tombstone) with one change
    /// seq, and the audit record is appended, all or nothing, as if by one
    /// `commit` of put_suppression ops and one append_audit. A failure
    /// throws like `commit`, having changed nothing.
    virtual suppression_import_result import_suppressions(std::string_view workspace,
                                                          const suppression_import& import);

    /// Like `changes_since`, but leaves out the suppressions whose latest
    /// write is the change `skip_seq`: an import the caller has applied to
    /// its memory itself, which would otherwise come back whole.
    virtual change_set changes_since_skipping(std::string_view workspace, std::uint64_t after,
                                              std::uint64_t skip_seq);

    /// Like `load`, but hands the key (kind, normalised value) of each
    /// suppression to `key`, in no particular order, instead of collecting
    /// entries: `suppressions` stays empty. The keys come from the same
    /// committed state as the rest of the snapshot. An exception thrown by
    /// `key` ends the load and reaches the caller unchanged.
    virtual store_snapshot load_keys(
        std::string_view workspace, time_point since,
        const std::function<void(suppression_kind, std::string_view)>& key);

    // --- membership -----------------------------------------------------
    // Lease times run on the store's own clock (the database server's for
    // PostgreSQL), never on an engine's `clock`, so simulated time in tests
    // cannot expire a live member.

    /// Makes a new member with a lease of `lease`; returns its id (never 0,
    /// never reused in the workspace).
    virtual std::uint64_t attach(std::string_view workspace, const member_info& info,
                                 std::chrono::milliseconds lease) = 0;
    /// Extends the lease to `lease` from now and records `acked_seq`.
    /// Returns false, changing nothing, when the lease had already run out
    /// or the member was recovered: others may have stopped waiting for it,
    /// so it must stop handing off, attach again and catch up first.
    virtual bool renew(std::string_view workspace, std::uint64_t member,
                       std::chrono::milliseconds lease, std::uint64_t acked_seq) = 0;
    /// Ends the member's lease now and recovers it (see `recover`).
    virtual void detach(std::string_view workspace, std::uint64_t member) = 0;
    /// Members of the workspace, live or not yet recovered.
    virtual std::vector<member_record> members(std::string_view workspace) = 0;
    /// Removes members whose lease has run out, and the members in `dead`
    /// (which the caller knows to be gone: a process that no longer exists
    /// on its own host); their sends still `reserved` become `unknown` with
    /// `detail`, and the queue items they held go back to `waiting` (due
    /// when they were, claimed_by 0, detail noting the recovery), so
    /// another member takes them. Sends in any other state, and queue items
    /// not held by a removed member, are never touched. Returns the number
    /// of sends marked. `detach` returns a member's queue items the same
    /// way.
    virtual std::size_t recover(std::string_view workspace, std::span<const std::uint64_t> dead,
                                time_point now, std::string_view detail) = 0;

    // --- reads ----------------------------------------------------------

    virtual std::optional<ledger_row> find_send(std::string_view workspace, std::uint64_t id) = 0;

    /// Calls `fn` for each suppression entry, in (kind, value) order: address
    /// entries first, values in byte order. An exception thrown by `fn`
    /// ends the iteration and reaches the caller unchanged; so for the other
    /// for_each_* functions.
    virtual void for_each_suppression(std::string_view workspace,
                                      const std::function<void(const suppression_entry&)>& fn) = 0;

    /// Calls `fn` for each suppression version (see `suppression_version`),
    /// current and replaced, read from one committed state, in (kind,
    /// value) order as `for_each_suppression`; within a key, replaced
    /// versions first in the order they were written (`seq`, then the
    /// order within one change), then the current one. Memory stays
    /// bounded however many versions there are. The default calls
    /// `for_each_suppression` and reports every row as current with seq 0:
    /// a store that keeps no history has nothing to check it against.
    virtual void for_each_suppression_version(
        std::string_view workspace, const std::function<void(const suppression_version&)>& fn);

    virtual std::optional<suppression_entry> find_suppression(std::string_view workspace,
                                                              suppression_kind kind,
                                                              std::string_view value) = 0;

    // --- point reads -------------------------------------------------------
    // For a process that asks a question or two and exits (the `mailers`
    // tool), where `load` would read every suppression of a large workspace.
    // The defaults are correct but read the whole workspace, as `load`
    // does; the stores of the library answer each from an index.

    /// The workspace's newest change seq: `changes_since(workspace,
    /// 0).seq`, 0 for a workspace never written.
    virtual std::uint64_t last_change_seq(std::string_view workspace);
    /// The object (kind, id), as `load` would return it.
    virtual std::optional<stored_object> find_object(std::string_view workspace,
                                                     std::string_view kind, std::string_view id);
    /// The first entry of `kind` whose value is at or after `from` in byte
    /// order (the order of `for_each_suppression`): one probe answers
    /// whether any entry lies in a range of values.
    virtual std::optional<suppression_entry> next_suppression(std::string_view workspace,
                                                              suppression_kind kind,
                                                              std::string_view from);
    /// How many suppression entries the workspace holds (address and domain
    /// entries, erased ones included): the number `for_each_suppression`
    /// visits. The stores of the library keep it with every write, in the
    /// write's transaction, and answer with one row; the default counts
    /// through `for_each_suppression`.
    virtual std::uint64_t suppression_count(std::string_view workspace);
    /// Calls `fn` for each object of `kind`, as `load` returns them, in id
    /// order (byte order). The default reads `changes_since(workspace, 0)`,
    /// every suppression included; the stores of the library read the
    /// objects of that kind alone.
    virtual void for_each_object(std::string_view workspace, std::string_view kind,
                                 const std::function<void(const stored_object&)>& fn);

    /// Calls `fn` for each audit record with seq >= from_seq, in seq order.
    virtual void for_each_audit(std::string_view workspace, std::uint64_t from_seq,
                                const std::function<void(const audit_record&)>& fn) = 0;

    /// Calls `fn` for each send reserved in [from, to), in id order.
    virtual void for_each_send(std::string_view workspace, time_point from, time_point to,
                               const std::function<void(const ledger_row&)>& fn) = 0;

    /// Forgets cap uses recorded before `before` (no window reaches back
    /// that far). Housekeeping; the engine calls it now and then.
    virtual void purge_cap_uses(std::string_view workspace, time_point before) = 0;

    // --- the send queue ---------------------------------------------------
    // The queue ops themselves (enqueue, defer_queued, finish_queued,
    // cancel_queued) are commit ops, so that the engine audits them in the
    // same transaction. The defaults below throw errc::store_error: a store
    // written before the queue existed keeps working for everything else,
    // and fails the conformance kit until it implements them.

    /// Takes up to `limit` waiting items with due_at <= now, oldest due_at
    /// first (then lowest id), for `member`: atomically marks them claimed
    /// by it, counts one more check each and sets updated_at to `now`; two
    /// calls, from any processes, never take the same item. Returns the
    /// items as claimed. A member whose lease has run out, or which was
    /// recovered or detached, claims nothing: the call throws
    /// errc::store_error naming the member, so the caller attaches again
    /// before draining (see `renew`). A `limit` of 0 claims nothing.
    virtual std::vector<queued_send> claim_queued(std::string_view workspace, std::uint64_t member,
                                                  time_point now, std::size_t limit);

    virtual std::optional<queued_send> find_queued(std::string_view workspace, std::uint64_t id);

    /// Calls `fn` for each item that `filter` admits, in id order.
    virtual void for_each_queued(std::string_view workspace, const queue_filter& filter,
                                 const std::function<void(const queued_send&)>& fn);

    /// Counts per state, waiting items per reason, and the next due time.
    virtual queue_counts count_queued(std::string_view workspace);

    /// Forgets done and cancelled items last updated before `before`
    /// (their idempotency keys become free again). Returns how many went.
    virtual std::size_t purge_queued(std::string_view workspace, time_point before);

    // --- enrollments -------------------------------------------------------
    // Enrollment ops are commit ops (enroll, update_enrollment,
    // stop_enrollments, advance_enrollment). The defaults below throw
    // errc::store_error, as the queue's do.

    virtual std::optional<enrollment> find_enrollment(std::string_view workspace,
                                                      std::uint64_t id);
    /// The enrollment whose step sent the message `message_id` (without
    /// <>), as advance_enrollment recorded it.
    virtual std::optional<enrollment> find_enrollment_by_message(std::string_view workspace,
                                                                 std::string_view message_id);
    /// Calls `fn` for each enrollment `filter` admits, in id order.
    virtual void for_each_enrollment(std::string_view workspace, const enrollment_filter& filter,
                                     const std::function<void(const enrollment&)>& fn);
    /// Up to `limit` active enrollments whose next_due is at or before
    /// `now`, earliest first (then lowest id), read through an index on
    /// (workspace, state, next_due): the cost does not grow with the
    /// enrollments that are not due. Nothing is claimed: the caller plans
    /// each with a compare-and-set (update_enrollment).
    virtual std::vector<enrollment> due_enrollments(std::string_view workspace, time_point now,
                                                    std::size_t limit);

    // --- recorded keys ------------------------------------------------------

    /// Forgets keys (store_ops::record_key) that expired before `before`;
    /// a later record of one is applied again. Returns how many went.
    /// Housekeeping: an expired key is already free for a new record, so
    /// this only bounds the table. The default throws errc::store_error,
    /// as the queue defaults do.
    virtual std::size_t purge_keys(std::string_view workspace, time_point before);

    // --- outbound webhooks: the outbox ---------------------------------------
    // The writes are commit ops (add_webhook_delivery and the rest), so a
    // delivery commits with the event it carries. `recover` and `detach`
    // return the deliveries a removed member held to `pending` (due when
    // they were), as they do queue items. The defaults throw
    // errc::store_error, as the queue's do.

    /// Takes up to `limit` pending deliveries with due_at <= now, oldest
    /// due_at first (then lowest id), for `member`: marks them claimed by
    /// it, counts one more attempt each and sets updated_at to `now`; two
    /// calls, from any processes, never take the same row. A member
    /// without a live lease claims nothing: the call throws
    /// errc::store_error naming it, as claim_queued does.
    virtual std::vector<webhook_delivery> claim_webhook_deliveries(std::string_view workspace,
                                                                   std::uint64_t member,
                                                                   time_point now,
                                                                   std::size_t limit);
    virtual std::optional<webhook_delivery> find_webhook_delivery(std::string_view workspace,
                                                                  std::uint64_t id);
    /// Calls `fn` for each delivery `filter` admits, in id order.
    virtual void for_each_webhook_delivery(std::string_view workspace,
                                           const webhook_delivery_filter& filter,
                                           const std::function<void(const webhook_delivery&)>& fn);
    /// Counts of `endpoint`'s deliveries ("" every endpoint's).
    virtual webhook_delivery_counts count_webhook_deliveries(std::string_view workspace,
                                                             std::string_view endpoint);
    /// Forgets delivered and failed rows last updated before `before`.
    /// Returns how many went.
    virtual std::size_t purge_webhook_deliveries(std::string_view workspace, time_point before);
    // --- end outbound webhooks ---

    // --- erasure of a person (docs/privacy.md) ------------------------------

    /// Removes one person from the workspace, all or nothing, in one
    /// transaction: suppression rows (current, replaced, removed) whose
    /// address value is one of `keys`; ledger rows whose recipient is one of
    /// them or whose detail or idempotency key `mentions` the person are
    /// scrubbed (recipient and detail emptied, key cleared) and kept, since
    /// their cap uses and ids still count; queue items whose request or key
    /// mentions the person get an empty request (a waiting one is cancelled,
    /// a claimed one is left to its holder, which cannot read it any more);
    /// enrollments of one of `keys` are deleted with their message records;
    /// outbox rows whose payload mentions the person and recorded keys that
    /// mention it are deleted, and so are the address's soft-bounce records
    /// (store_ops::tally_soft_bounce). Then `entries` are put and the audit record
    /// appended. Audit records are never changed. The default throws
    /// errc::store_error, as the queue's do.
    virtual person_erasure_result erase_person(std::string_view workspace,
                                               const person_erasure& erasure);
    /// Forgets ledger rows reserved before `before` whose outcome is
    /// recorded (accepted, failed or unknown; a `reserved` row stays),
    /// with their idempotency keys: a retention window for the ledger.
    /// Returns how many went. The default throws errc::store_error.
    virtual std::size_t purge_sends(std::string_view workspace, time_point before);
    // --- end erasure ---

    // --- audit retention (docs/audit.md) ------------------------------------

    /// Removes the oldest audit records (see `audit_purge`) and, in the
    /// same transaction, ordered with every append of the workspace, moves
    /// the anchor to the first kept record {its seq, its prev_hash, `at`,
    /// keyed if the anchor was or an `audit_key_action` record went} and
    /// appends `purge.audit`'s record. When nothing is old enough nothing
    /// changes and no record is appended. The default throws
    /// errc::store_error.
    virtual audit_purge_result purge_audit(std::string_view workspace, const audit_purge& purge);
    /// The workspace's anchor; seq 0 when nothing was ever purged. The
    /// default returns that: a store that cannot purge has no anchor.
    virtual audit_anchor find_audit_anchor(std::string_view workspace);
    // --- end audit retention ---
    // --- daily counts (store_ops::add_counts) ----------------------------------
    // The defaults throw errc::store_error, as the queue's do.

    /// The stored counts of (scope, id) for the days from `from` to `to`,
    /// both included, in day order; a day with nothing counted is left out.
    virtual std::vector<daily_count> daily_counts(std::string_view workspace, count_scope scope,
                                                  std::string_view id, count_day from,
                                                  count_day to);
    /// Forgets the counts of days before `before`, and the soft bounces
    /// (store_ops::tally_soft_bounce) recorded before day_start(before):
    /// later tallies no longer count them. Returns how many rows went or
    /// changed.
    virtual std::size_t purge_counts(std::string_view workspace, count_day before);
    // --- end daily counts ---

    /// Forgets the record of `key` in `namespace_` (store_ops::record_key),
    /// so that its next record is applied: for a one-time token recorded
    /// before the work it admits, when that work failed and the sender
    /// will try again (store_replay_cache::release). Returns whether there
    /// was one. The default throws errc::store_error, as purge_keys does.
    virtual bool forget_key(std::string_view workspace, std::string_view namespace_,
                            std::string_view key);
};

}  // namespace mailers
