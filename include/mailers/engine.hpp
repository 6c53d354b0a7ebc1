// The engine: decides who sends what, to whom, when and through which
// provider, and keeps the receipts.
//
// Like a connection pool: constructed with the host's executor and an
// `engine_params`; its state sits behind a shared_ptr so operations in
// flight outlive the handle. Blocking store work runs on one internal
// writer thread (group commit), never on the host's executor.
//
// Thread safety: every member function may be called concurrently from
// several threads.
#pragma once

#include <array>
#include <boost/asio/any_completion_handler.hpp>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/deferred.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <mailers/access.hpp>
#include <mailers/address.hpp>
#include <mailers/campaign.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/delivery_report.hpp>
#include <mailers/error.hpp>
#include <mailers/event.hpp>
#include <mailers/forecast.hpp>
#include <mailers/logger.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/message.hpp>
#include <mailers/pool.hpp>
#include <mailers/principal.hpp>
#include <mailers/provider_transport.hpp>
#include <mailers/stored_provider.hpp>
#include <mailers/quota.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>
#include <mailers/suppression_audit.hpp>
#include <mailers/template.hpp>
#include <mailers/unsubscribe.hpp>
#include <mailers/webhook.hpp>
#include <mailers/webhook_endpoint.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace mailers {

class sequence;          // mailers/sequence.hpp
struct sequence_config;  // mailers/sequence.hpp

struct engine_params {
    std::string workspace = "default";
    std::shared_ptr<mailers::store> storage;  ///< required: where the workspace lives
    std::shared_ptr<mailers::clock> clock;    ///< default: system clock
    logger log;
    authorizer authorize;                             ///< default: allow everything
    /// The workspace's address folding rules, which are stored with it.
    /// Unset: the stored ones (the defaults for a new workspace). Set and
    /// different: the engine changes them as it starts, re-keying every
    /// stored entry in one audited step (`suppression.settings`), which
    /// needs every other engine of the workspace stopped; turning a fold
    /// off while address entries exist is refused (errc::invalid_argument),
    /// since the spellings it folded away are gone. A start also re-keys
    /// entries stored by an older version whose keys differ.
    std::optional<suppression_options> suppression;
    std::uint64_t random_seed = 0;                    ///< jitter; 0 = from std::random_device
    std::size_t max_batch = 8192;                     ///< ops per group commit, at most
    std::size_t max_message_size = 25 * 1024 * 1024;  ///< rendered octets
    std::string message_id_domain;                    ///< default: the sending mailbox's domain
    /// Shown to operators beside this engine's host and process id in the
    /// workspace's member list.
    std::string member_name;
    /// How often the engine reads the changes other processes committed
    /// (configuration, pauses, suppressions) and acknowledges them. A
    /// change made elsewhere reaches this engine within about this long;
    /// an audited change waits for every live engine to acknowledge it.
    std::chrono::milliseconds sync_interval{50};
    /// How long this engine's membership lasts without renewal. An engine
    /// that cannot renew stops handing off before it runs out; one that
    /// died holds up others' audited changes at most this long, and its
    /// sends in flight become `unknown` when it runs out (at once when the
    /// process is gone from this host).
    std::chrono::milliseconds lease{10000};
    /// A secret (or an "env:NAME" / "file:PATH" reference to one) kept
    /// outside the store. Given one, the engine appends an
    /// `audit_key_action` record the first time it starts with that key (a
    /// mark of the key kept in the store says it has one) and hashes that
    /// record and every later one with HMAC-SHA256 under the key, so that
    /// only a holder of the key can rewrite the chain. Once one engine of a workspace has
    /// it, every engine of the workspace needs the same key: a record
    /// appended without it, or with another key, fails verification. Empty:
    /// unkeyed SHA-256. See docs/audit.md.
    std::string audit_key;
    /// One-click unsubscribe links (see mailers/unsubscribe.hpp): given a
    /// `url` and a `secret`, each message the engine renders without a
    /// List-Unsubscribe of its own gets one for its `to` recipient, with
    /// List-Unsubscribe-Post (RFC 8058). Refused at construction
    /// (errc::invalid_argument) when the url is not https or the secret is
    /// shorter than 16 bytes.
    unsubscribe_settings unsubscribe;
    // --- outbound webhooks
    /// How this engine delivers outbound webhooks (webhook_endpoint.hpp).
    /// Refused at construction (errc::invalid_argument) when max_attempts
    /// or in_flight is 0, or a time is not positive.
    outbound_webhook_params webhooks;
    // --- end outbound webhooks
    /// Whether this engine hands off queued sends (`enqueue`). An engine
    /// that only enqueues (a web front end, say) leaves them to the others.
    bool drain_queue = true;
    /// How often the engine looks for queued sends that have come due. A
    /// local `enqueue` wakes it at once; an item enqueued by another
    /// process, or whose due time passes, waits up to this long more. Each
    /// look is a write transaction on the store, idle or not.
    std::chrono::milliseconds queue_poll_interval{1000};
    /// Queued sends this engine hands to the send path at once, at most.
    std::size_t queue_in_flight = 64;
    /// When a queued send waits for something with no known end (a pause,
    /// a breaker, an error), it is looked at again after this long on the
    /// engine's clock, doubling per check up to `queue_max_backoff`.
    std::chrono::seconds queue_recheck{60};
    std::chrono::seconds queue_max_backoff{3600};
    /// Done and cancelled queue items are forgotten this long after they
    /// ended (by the engine's clock; 0 keeps them). Their idempotency keys
    /// become free again, but a send reserved under one stays in the
    /// ledger, so enqueueing that key again finds the send, not a new one.
    std::chrono::seconds queue_retention{std::chrono::hours(24 * 30)};
    /// How long an ingested event's `dedup_key` is remembered in the store
    /// (by the engine's clock). Within it, a redelivered event is counted
    /// as a duplicate and applied nowhere, whichever engine of the
    /// workspace receives it; after it, the event is applied again (a
    /// suppression already in force stays as it is and is counted as
    /// `already_suppressed`, but handlers see the event again). Providers
    /// retry for a few days at most (SES and SendGrid up to 3, Mailgun
    /// about 8 hours, Postmark about 10 hours).
    std::chrono::seconds event_retention{std::chrono::hours(24 * 30)};
    /// While the workspace has pause rules, how often this engine evaluates
    /// every rule on every target it knows (as `check_pause_rules()` does),
    /// on its own thread, measured in real time. Bounces, complaints and
    /// failed sends are evaluated as they happen; this catches the
    /// crossings nothing announces (clean sends bringing a target to a
    /// rule's minimum volume, old days leaving a window). 0 turns it off.
    std::chrono::seconds rule_check_interval{300};
    // --- erasure (docs/privacy.md)
    /// The secret (or an "env:NAME" / "file:PATH" reference to one) that
    /// erased addresses are kept suppressed under: HMAC-SHA256 of the
    /// normalised address. Empty: the workspace's first erasure makes a
    /// random key and keeps it in the store. The first erasure fixes the
    /// choice for the workspace (the store keeps the key, or only a mark of
    /// the host's key); an engine whose key disagrees with it is refused at
    /// construction (errc::invalid_argument). See docs/privacy.md for what
    /// each choice protects against.
    std::string erasure_key;
    // --- end erasure
};

/// One message, from a pool or from a named mailbox, to `to` and any `cc`
/// and `bcc` recipients.
///
/// Recipients: every recipient (to, cc and bcc, each address once) is
/// checked against the suppression list when the send is decided and again
/// at hand-off. One suppressed recipient refuses the whole send with
/// errc::suppressed, `diag.message` naming it when there are several: a
/// send is never handed off to part of its list. The mailbox's `max_recipients_per_message` (0 = no
/// limit) bounds how many there are (errc::invalid_argument for a named
/// mailbox; a pool skips members with a lower limit, errc::invalid_argument
/// when every member has one). A recipient-domain quota counts one use per
/// recipient at that domain, as providers count recipients; mailbox,
/// provider and sender-domain caps count the message once. The ledger's
/// `recipient`, events' `recipient` and sticky-sender assignment use `to`.
/// A permanent recipient failure suppresses `to` only when it is the only
/// recipient: the transport does not say which of several was refused.
struct send_request {
    std::string pool;     ///< draw the sender from this pool ...
    std::string mailbox;  ///< ... or send from exactly this mailbox
    address to;           ///< required
    std::vector<address> cc;
    std::vector<address> bcc;  ///< in the envelope only, never in the headers
    std::optional<address> reply_to;
    /// A message the host rendered (and perhaps DKIM-signed) itself: the
    /// whole RFC 5322 message in CRLF lines (no other CR or LF), handed to
    /// the transport as given. It needs a named `mailbox` (a pool could pick a sender the
    /// bytes do not name) whose address is the one in the bytes' From
    /// field, and exactly one Message-ID field, which becomes the send's.
    /// Subject, bodies, headers, attachments, unsubscribe, in_reply_to,
    /// references and reply_to must then be empty. `to`, `cc` and `bcc`
    /// are the envelope: checked, limited and counted as for any send, and
    /// not compared with the bytes' To and Cc. Violations complete with
    /// errc::invalid_argument before anything is reserved. SendGrid and
    /// Postmark take no pre-rendered messages and refuse them.
    std::string raw;
    std::string subject;
    std::string text;
    std::string html;
    std::vector<header_field> headers;
    std::vector<attachment> attachments;
    std::optional<list_unsubscribe> unsubscribe;
    std::string in_reply_to;
    std::vector<std::string> references;
    /// Same key twice → one send: the second call completes with the first
    /// one's result and `duplicate = true`, and nothing is handed off.
    std::string idempotency_key;
    principal actor = principal::system();
};

struct send_result {
    std::string send_id;              ///< ledger id ("" when nothing was reserved)
    std::optional<send_state> state;  ///< ledger state, when a row exists
    std::string mailbox;
    std::string provider;
    std::string message_id;  ///< the Message-ID that was sent
    std::string provider_message_id;
    std::uint32_t attempts = 0;          ///< transport attempts made
    bool duplicate = false;              ///< an earlier send had this idempotency key
    std::optional<time_point> retry_at;  ///< no_capacity: earliest time a mailbox can send
    diagnostics diag;
};

/// What `engine::async_check_provider` (or `async_check_dsn`) checked.
struct provider_check {
    std::string provider;   ///< the id checked ("" for a DSN checked directly)
    std::string transport;  ///< the checked transport's name ("smtp", "ses", ...); "" when none
    /// The transport the host registered under the id (add_provider),
    /// which takes precedence over a stored DSN; false for one built from
    /// the stored DSN or the DSN given.
    bool host_registered = false;
    /// `diag.message`: what was checked, or what failed (never a secret).
    diagnostics diag;
};

/// How a send waits in the workspace's durable queue (`engine::enqueue`).
struct enqueue_options {
    /// Never handed off earlier; unset (the epoch): now, by the engine's clock.
    time_point not_before{};
    /// Free text kept with the item and matched by `queue_filter::origin_prefix`:
    /// "api", "campaign:<id>", ...
    std::string origin = "api";
};

/// What `engine::queue_counts` reports: the store's counts (see store.hpp).
using queue_summary = queue_counts;

/// How a contact is enrolled (engine::enroll).
struct enroll_options {
    /// The contact's template variables, checked against every step.
    template_variables variables;
    /// The owner mailbox, for steps whose sender rule is `owner`; "" none.
    std::string owner;
    /// What enrolling a contact already in the sequence does; unset: the
    /// sequence's `on_enrolled_twice`.
    std::optional<enrollment_conflict> on_enrolled_twice;
};

/// What an operator found out about a step whose send ended `unknown`
/// (engine::resolve_unknown_step).
enum class step_resolution {
    sent,  ///< it went: the enrollment goes on with its next step
    /// it did not go: the step is sent again, once, under a send key of its
    /// own (the unknown send keeps its key), then the sequence goes on
    not_sent,
};

/// What pause() applies to.
enum class pause_scope { workspace, pool, mailbox, provider, sender_domain };

MAILERS_API std::string_view to_string(pause_scope s) noexcept;

struct pause_target {
    pause_scope scope = pause_scope::workspace;
    std::string id;  ///< empty for the workspace
    friend bool operator==(const pause_target&, const pause_target&) = default;
};

/// A pause in force, as `engine::pauses()` lists it.
struct pause_info {
    pause_target target;
    std::string reason;
    /// The principal that paused, and when, by the pausing engine's clock.
    /// Pauses stored by an earlier version lack them: "" and the epoch.
    std::string actor;
    time_point since{};
    friend bool operator==(const pause_info&, const pause_info&) = default;
};

// --- soft bounces and pause rules (docs/rules.md) ---------------------------

/// When repeated soft bounces suppress an address: `threshold` soft bounces
/// of one address (by its suppression key) within the last `window_days`
/// days suppress it, reason `hard_bounce` (the address is treated as one
/// that does not work) with source "soft-bounce-threshold". Soft bounces
/// are counted by the store, so several processes count together, and a
/// redelivered event counts once. A threshold of 0 turns it off, the
/// default: a soft bounce says the address may work later, so nothing is
/// suppressed for them unless the workspace asks.
struct soft_bounce_policy {
    std::uint32_t threshold = 0;     ///< 0: off; else 1 .. 1000
    std::uint32_t window_days = 14;  ///< 1 .. 365
    friend bool operator==(const soft_bounce_policy&, const soft_bounce_policy&) = default;
};

/// What a pause rule measures: the count of `metric` over the sends
/// counted in its window (see daily_counts.hpp). Bounces, complaints and
/// unsubscribes over `sent`; failures over `sent` + `failed`.
enum class rule_metric : std::uint8_t {
    hard_bounces,  ///< bounced_hard
    bounces,       ///< bounced_hard + bounced_soft
    complaints,    ///< complained
    failures,      ///< failed: sends a provider refused, or that failed after hand-off
};

MAILERS_API std::string_view to_string(rule_metric m) noexcept;

/// An automatic pause, stored with the workspace (every engine applies the
/// same rules). It watches one target, or every target of its scope, over
/// a window of whole UTC days; when a target's rate reaches `max_rate` with
/// at least `min_volume` sends counted, the target is paused as `pause()`
/// pauses it (actor "rule:<id>"), once, by one engine of the workspace.
struct pause_rule {
    std::string id;  ///< 1 to 128 of A-Z a-z 0-9 . _ - :
    pause_scope scope = pause_scope::mailbox;
    /// One pool, mailbox, provider or sender domain; "" every one of the
    /// scope (for the workspace scope, always "").
    std::string target;
    rule_metric metric = rule_metric::bounces;
    /// The window: the last `window_days` UTC days, today included ...
    std::uint32_t window_days = 28;
    /// ... or, when above 0, the fewest recent days (today first, at most
    /// 90) whose sends add up to at least this many: "the last N sends",
    /// to the day. `window_days` is then ignored.
    std::uint64_t window_sends = 0;
    /// Fires when count / volume >= max_rate (0 < max_rate <= 1).
    double max_rate = 0.02;
    /// Sends that must be counted in the window before the rule can fire.
    std::uint64_t min_volume = 20;
    /// After a manual `resume` of a target, the rule does not fire on it
    /// for this many days.
    std::uint32_t grace_days = 7;
    friend bool operator==(const pause_rule&, const pause_rule&) = default;
};

/// What market sending tools use for bounces: 2% of sends over 28 days,
/// with at least 20 sends, 7 days of grace after a resume.
MAILERS_API pause_rule bounce_rate_preset(std::string id, pause_scope scope = pause_scope::mailbox);
/// Gmail's bulk sender line for spam complaints: never reach 0.3%
/// (Gmail asks to stay under 0.1%), over 7 days, once 1000 sends are
/// counted (fewer make one complaint a rate above it), 7 days of grace.
MAILERS_API pause_rule complaint_rate_preset(std::string id,
                                             pause_scope scope = pause_scope::sender_domain);

/// What a rule measured when it fired (the body of its audit record and
/// the detail of its event).
struct rule_firing {
    std::string rule;
    pause_target target;
    std::uint64_t count = 0;   ///< of the rule's metric in the window
    std::uint64_t volume = 0;  ///< sends counted in the window
    double rate = 0;
    count_day from_day = 0, to_day = 0;  ///< the window
};

// --- end soft bounces and pause rules

/// What `engine::ingest_webhook` did with one provider request.
struct ingest_result {
    /// parse_webhook's answer: the HTTP status to give the provider, the
    /// outcome and the events, each filled in from the ledger where it
    /// names one of this workspace's sends.
    webhook_result webhook;
    /// Recipients this request suppressed.
    std::size_t suppressed = 0;
    /// Recipients it would have suppressed that already were (another
    /// event about the same address).
    std::size_t already_suppressed = 0;
    /// Events already applied (their `dedup_key` recorded, by this engine
    /// or another of the workspace, within `engine_params::event_retention`):
    /// a provider's redelivery. They change nothing and reach no handler.
    std::size_t duplicates = 0;
};

/// What `engine::ingest_delivery_report` did with one bounce message.
struct report_ingest_result {
    delivery_report report;  ///< what the message said, events filled in
    std::size_t suppressed = 0;
    std::size_t already_suppressed = 0;
    std::size_t duplicates = 0;  ///< as ingest_result::duplicates
};

/// What `engine::unsubscribe` did with a one-click token.
struct unsubscribe_result {
    unsubscribe_token_status status = unsubscribe_token_status::malformed;
    std::string recipient;    ///< the address the token names (valid and expired tokens)
    std::string send_id;      ///< the send whose message carried it
    bool suppressed = false;  ///< this call suppressed it
    bool already = false;     ///< it was suppressed before
};

// --- erasure and export of a person (docs/privacy.md) --------------------------

/// What `engine::erase_person` did.
struct erasure_report {
    /// The keyed hash the person stays suppressed under (the suppression
    /// entry's value under the workspace's rules now): what the audit
    /// record names, and what an operator can quote instead of the address.
    std::string hash;
    time_point at{};  ///< by the engine's clock
    /// What was removed or scrubbed, per data class (both passes added up:
    /// the erasure, and a sweep once every engine has it).
    erasure_counts erased;
    /// The address was suppressed (by an address entry) before.
    bool was_suppressed = false;
    std::uint64_t audit_seq = 0;  ///< the erasure's audit record
};

/// How long `engine::purge_retained` keeps each class of data; 0 keeps it.
struct retention_policy {
    /// Ledger rows, from their reservation: at least 8 days (the longest cap
    /// window, with margin), since a cap counts the sends in its window.
    std::chrono::seconds sends{0};
    /// Outbound webhook deliveries (event payloads) that were delivered or
    /// given up, from their last attempt.
    std::chrono::seconds webhook_deliveries{0};
    /// Audit records, from their time: the oldest go, the newest record
    /// always stays, and the chain keeps verifying from its anchor (see
    /// `engine::purge_audit`, docs/audit.md).
    std::chrono::seconds audit{0};
    /// Daily counts (`engine::daily_counts`) of the days that ended longer
    /// ago than this, and the soft bounces tallied before those days: at
    /// least 365 days, the longest window a pause rule or the soft-bounce
    /// policy reads.
    std::chrono::seconds counts{0};
};

/// What `engine::purge_retained` removed.
struct retention_report {
    time_point at{};
    std::uint64_t sends = 0;
    std::uint64_t webhook_deliveries = 0;
    std::uint64_t audit_records = 0;  ///< audit records purged
    std::uint64_t counts = 0;         ///< daily count and soft-bounce rows gone or changed
    audit_anchor anchor;              ///< the audit chain's anchor after the purge
    std::uint64_t audit_seq = 0;  ///< the purge's audit record
};

// --- end erasure ------------------------------------------------------------------

/// Counters since the engine started.
struct engine_stats {
    std::uint64_t accepted = 0, failed = 0, unknown = 0, suppressed = 0, no_capacity = 0,
                  paused = 0, rejected = 0, duplicates = 0, failovers = 0;
    std::uint64_t commits = 0, committed_ops = 0;
};

/// How long one stage of the send pipeline took, over every send since
/// the engine started, in power-of-two buckets: `counts[i]` sends took
/// [2^i, 2^(i+1)) microseconds (`counts[0]`: under 2 µs).
struct latency_histogram {
    std::array<std::uint64_t, 32> counts{};
    std::uint64_t sum_us = 0;  ///< every measured time added up, in microseconds
    MAILERS_API std::uint64_t total() const noexcept;
    /// The upper bound, in microseconds, of the bucket that holds quantile
    /// `q` (0..1); 0 when nothing was measured.
    MAILERS_API std::uint64_t quantile_us(double q) const noexcept;
};

/// The send pipeline's stages, for sends that reached the store (a refusal
/// from memory, such as a suppressed recipient, is in none of them).
struct pipeline_latencies {
    latency_histogram decide;   ///< from the call to the reservation leaving for the store
    latency_histogram reserve;  ///< the reservation's group commits (every round)
    latency_histogram handoff;  ///< from the hand-off to the transport's answer (every attempt)
    latency_histogram record;   ///< the outcome's group commit
    latency_histogram total;    ///< from the call to completion
};

class MAILERS_API engine {
public:
    /// Joins the workspace as a member (store.hpp), recovers the sends of
    /// members that are gone, loads the workspace (blocking) and starts the
    /// writer and sync threads. Throws mailers::exception when the store cannot be loaded.
    engine(boost::asio::any_io_executor ex, engine_params params);
    /// Cancels (see cancel()), then leaves the workspace: the writer stops
    /// after flushing what is queued, and this engine's membership ends.
    /// Sends already handed off still record their outcome.
    ~engine();
    engine(const engine&) = delete;
    engine& operator=(const engine&) = delete;

    boost::asio::any_io_executor get_executor() const noexcept;

    // --- sending -----------------------------------------------------------

    /// Sends `req`: validate → suppression check → pick mailbox → reserve
    /// caps (durably) → re-check suppression and pauses → hand off →
    /// record the outcome → emit events. Transient failures fail over to the
    /// next eligible mailbox of the pool, up to the pool's max_attempts; an
    /// unknown outcome is recorded and never retried.
    ///
    /// Handler signature: `void(mailers::error_code, mailers::send_result)`.
    /// `ec` is clear when the provider accepted the message; otherwise it is
    /// errc::suppressed, errc::no_capacity (see result.retry_at),
    /// errc::paused, an input error (errc::invalid_address,
    /// errc::header_injection, errc::unknown_pool, ...), or a transport error
    /// that compares equal to a `mailers::failure` condition.
    /// Executor: the handler's associated executor, else the engine's.
    /// Never completes inside the initiating call.
    /// Cancellation: not supported per operation; `cancel()` aborts all.
    /// Lifetime: `req` is copied; the engine handle may be destroyed while
    /// the operation is in flight (it then completes with operation_aborted).
    ///
    /// The default token is `deferred`: `eng.async_send(r);` alone does
    /// nothing — pass a callback, `use_future`, `use_awaitable`, or
    /// `co_await` it.
    ///
    /// A token that turns the error into an exception (`use_awaitable`,
    /// `use_future`) throws a bare `system_error` and drops the result
    /// (`retry_at`, diagnostics, mailbox). Pass `as_tuple(use_awaitable)` to
    /// get both without exceptions, or `with_result(use_awaitable)`
    /// (with_result.hpp) to throw a `send_error` that carries the result.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(error_code, send_result))
                  Token = boost::asio::deferred_t>
    auto async_send(send_request req, Token&& token = {}) {
        // The initiation holds the engine's shared state, not `this`: a
        // deferred operation launched after the handle is gone completes
        // with operation_aborted instead of touching freed memory.
        return boost::asio::async_initiate<Token, void(error_code, send_result)>(
            [state = impl_](auto handler, send_request r) {
                async_send_impl(state, std::move(r),
                                boost::asio::any_completion_handler<void(error_code, send_result)>(
                                    std::move(handler)));
            },
            token, std::move(req));
    }

    // --- the paced send queue ---------------------------------------------
    // A queued send waits in the store until a mailbox of its pool (or its
    // named mailbox) can send it, then goes through the same path as
    // async_send. It survives restarts, and any engine of the workspace may
    // hand it off, exactly once: the hand-off reserves its ledger row under
    // the item's idempotency key, or "queue:<id>" when it has none, so an
    // item taken again after a crash finds the send it already became.
    // See docs/queue.md.

    /// Validates `req` as async_send would (names, addresses, sizes, raw
    /// message rules, authorisation for "send") and stores it in the queue.
    /// Returns the item's id. `req.idempotency_key`, when set, is the
    /// item's key: an item already holding it is returned, not an error
    /// (and nothing is added). A suppressed recipient is refused at once
    /// (errc::suppressed); the hand-off checks again. Blocking; throws
    /// mailers::exception with the error async_send would complete with.
    std::uint64_t enqueue(send_request req, const enqueue_options& opts = {});

    /// Like `enqueue`, and completes once this engine has finished the item
    /// (or, when another engine finished it, once this one sees that while
    /// polling): `void(error_code, queued_send)`, `ec` clear when it ended
    /// (the item's state says done or cancelled; `send_id` and `detail`
    /// say how), the enqueue's error when it was refused, and
    /// operation_aborted when the engine stopped first. A duplicate key
    /// completes with the existing item's end. Executor: the handler's
    /// associated executor, else the engine's; never inside the initiating
    /// call. Cancellation: not supported per operation. Lifetime and
    /// thread safety as for async_send. The enqueue itself blocks the
    /// calling thread until it is stored.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(error_code, queued_send))
                  Token = boost::asio::deferred_t>
    auto async_enqueue(send_request req, enqueue_options opts, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code, queued_send)>(
            [state = impl_](auto handler, send_request r, enqueue_options o) {
                async_enqueue_impl(
                    state, std::move(r), std::move(o),
                    boost::asio::any_completion_handler<void(error_code, queued_send)>(
                        std::move(handler)));
            },
            token, std::move(req), std::move(opts));
    }

    /// Withdraws a waiting item (audited as "queue.cancel"). Returns false
    /// when it had already ended (done or cancelled). An item an engine has
    /// claimed is being handed off this moment and cannot be cancelled:
    /// errc::invalid_argument says so (try again once it is waiting or
    /// done). Unknown id: errc::not_found.
    bool cancel_queued(const principal& who, std::uint64_t id);
    std::optional<queued_send> find_queued(std::uint64_t id) const;
    /// Items in id order, as `filter` selects them (page with after_id).
    std::vector<queued_send> queued(const queue_filter& filter = {}) const;
    /// Counts by state, and waiting items by the reason they wait: "" (not
    /// yet looked at), "cap", "window", "gap", "pace", "paused", "breaker",
    /// "throttled", "error".
    queue_summary queue_counts() const;
    /// When the workspace's scheduler next has work: the earliest due time
    /// of a waiting queue item or of an active enrollment's next step;
    /// nullopt when nothing waits. Read from the store, so it covers work
    /// that any process queued or enrolled. A host driving a manual_clock
    /// (a simulation, a test) moves the clock here instead of stepping
    /// blindly.
    std::optional<time_point> next_due() const;
    /// The request a queued item holds (throws errc::store_corrupt when it
    /// cannot be read).
    static send_request queued_request(const queued_send& item);

    // --- configuration (blocking until durably committed; audited) -------
    // Each throws mailers::exception on bad input (errc::invalid_argument,
    // errc::invalid_address, errc::unknown_time_zone, errc::not_found, ...)
    // or errc::permission_denied, and then changes nothing.

    /// Makes `transport` the connection behind provider `id` in this engine
    /// only: register it at every start. It takes precedence over a stored
    /// provider of the same id (save_provider) for as long as the engine
    /// lives, so a host can wrap or replace what the workspace stores.
    void add_provider(const principal& who, const std::string& id,
                      std::shared_ptr<provider_transport> transport);
    /// Builds the transport from a DSN (see transport_factory.hpp) on the
    /// engine's executor and registers it, as the overload above. The audit
    /// record keeps the DSN with its secrets redacted.
    void add_provider(const principal& who, const std::string& id, std::string_view dsn);

    /// Keeps provider `id` in the store as a DSN (audited as
    /// "provider.save", needs `manage_providers`), creating or replacing
    /// it: every engine of the workspace builds its transport, at start and
    /// within one change-feed poll of the save, resolving the DSN's secret
    /// references in its own process. Refused with errc::invalid_argument,
    /// changing nothing: an empty id or one with CR/LF, a DSN that does not
    /// parse or build here (so its references must resolve in the saving
    /// process too), and a DSN holding a secret inline
    /// (require_secret_references(): the message names the field). An
    /// engine where the host registered `id` with add_provider keeps the
    /// host's transport. An engine that cannot build a stored DSN (a
    /// reference unset in its environment) logs an error and has no
    /// provider `id`: its sends through it fail with errc::unknown_provider.
    void save_provider(const principal& who, const std::string& id, std::string_view dsn);
    /// Removes a stored provider (audited as "provider.remove", needs
    /// `manage_providers`). Refused with errc::invalid_argument while a
    /// mailbox that is not retired names it (their sends would fail), and
    /// with errc::not_found when the store holds no provider `id`. A
    /// transport the host registered under `id` stays.
    void remove_provider(const principal& who, const std::string& id);
    /// The workspace's stored providers, in id order, as this engine knows
    /// them; `active` says whether this engine sends through the stored DSN.
    std::vector<stored_provider> stored_providers() const;

    /// Checks the connection and credentials of the provider this engine
    /// sends through as `id`, sending nothing (provider_transport::async_check:
    /// SMTP opens a session, AUTHs and QUITs; the HTTP providers make one
    /// read-only request or fetch an OAuth token): the transport the host
    /// registered under `id` (add_provider) when there is one, else the one
    /// this engine built from the stored DSN, with this process's secrets.
    /// Action "provider.check" on the provider, permission
    /// `manage_providers` (a check uses the provider's credentials). It
    /// changes nothing and is not audited; a refusal is, as every refusal.
    ///
    /// Handler signature: `void(mailers::error_code, mailers::provider_check)`.
    /// `ec` is clear when the check passed; a failed check compares equal
    /// to a `mailers::failure` condition (`failure::auth` for refused
    /// credentials, `failure::transient` for a refused connection), with the
    /// reply in `result.diag`. Refusals, each with `result.diag.message`
    /// saying why: errc::not_found when this engine has no provider `id`
    /// (none registered, none stored); errc::invalid_argument when `id` is
    /// stored but its DSN cannot be built in this process (a reference to
    /// an unset variable or a missing file: the message names it);
    /// errc::permission_denied; errc::operation_aborted when cancelled.
    /// Executor: the handler's associated executor, else the engine's.
    /// Never completes inside the initiating call.
    /// Cancellation: terminal, partial and total cancellation through the
    /// handler's cancellation slot, and `cancel()` (so the engine's
    /// destruction) for every check in flight: the check completes at once
    /// with errc::operation_aborted. An SMTP check's connection is closed
    /// then; an HTTP provider's request runs on, to its own timeout, and
    /// its outcome is dropped.
    /// Lifetime: `who` and `id` are copied; the engine handle may be
    /// destroyed while the check is in flight. Thread-safe.
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(error_code, provider_check))
                  Token = boost::asio::deferred_t>
    auto async_check_provider(principal who, std::string id, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code, provider_check)>(
            [state = impl_](auto handler, principal w, std::string i) {
                async_check_impl(
                    state, std::move(w), std::move(i), {},
                    boost::asio::any_completion_handler<void(error_code, provider_check)>(
                        std::move(handler)));
            },
            token, std::move(who), std::move(id));
    }

    /// As async_check_provider, for a transport built from `dsn` (see
    /// transport_factory.hpp) on the engine's executor for this check
    /// alone: a DSN not yet stored, or one to compare with the stored one.
    /// Secrets may be inline or references. errc::invalid_argument when it
    /// does not parse or build here. Action "provider.check" on the
    /// workspace (`manage_providers` over the workspace).
    template <BOOST_ASIO_COMPLETION_TOKEN_FOR(void(error_code, provider_check))
                  Token = boost::asio::deferred_t>
    auto async_check_dsn(principal who, std::string dsn, Token&& token = {}) {
        return boost::asio::async_initiate<Token, void(error_code, provider_check)>(
            [state = impl_](auto handler, principal w, std::string d) {
                async_check_impl(
                    state, std::move(w), {}, std::move(d),
                    boost::asio::any_completion_handler<void(error_code, provider_check)>(
                        std::move(handler)));
            },
            token, std::move(who), std::move(dsn));
    }
    /// Validated before anything is saved: an id, a valid From address, a
    /// display name of UTF-8 text without control characters, a provider
    /// id, an IANA time zone (not empty), a send window, weight, gap,
    /// breaker and limits in range. A provider this engine has not
    /// registered is a logged warning, not an error: another process may
    /// send for the mailbox.
    void upsert_mailbox(const principal& who, const mailbox_config& cfg);
    /// Retired mailboxes never send again; the record stays for the audit.
    void retire_mailbox(const principal& who, const std::string& id);
    void upsert_pool(const principal& who, const pool_config& cfg);
    void remove_pool(const principal& who, const std::string& id);
    void set_quota(const principal& who, const quota& q);
    void remove_quota(const principal& who, quota_scope scope, const std::string& key);

    std::optional<mailbox_config> find_mailbox(const std::string& id) const;
    std::vector<mailbox_config> mailboxes() const;
    std::optional<pool_config> find_pool(const std::string& id) const;
    /// Every pool, in id order, as this engine knows them (it applies what
    /// other processes store within one change-feed poll).
    std::vector<pool_config> pools() const;
    /// Every quota, in (scope, key) order. A quota another process stored
    /// in a form this one cannot read is left out; sends it governs are
    /// refused until it is stored again (see `set_quota`).
    std::vector<quota> quotas() const;
    mailbox_status status(const std::string& mailbox_id) const;

    // --- access control (mailers/access.hpp) -----------------------------
    // Each change is audited and needs `manage_access` over the workspace
    // once access control is on (the host's authorizer alone decides
    // before). Refused with errc::invalid_argument: an id or principal that
    // is empty or holds '|' or a control character, an unknown role in a
    // grant, `manage_access` in a grant narrower than the workspace, and any
    // change that would leave access control on with nobody holding
    // `manage_access` over the workspace.

    /// Creates or replaces a role.
    void put_role(const principal& who, const role& r);
    /// Removes a role and every grant of it (errc::not_found when none).
    void remove_role(const principal& who, const std::string& id);
    void grant_access(const principal& who, const access_grant& g);
    /// errc::not_found when there is no such grant.
    void revoke_access(const principal& who, const access_grant& g);
    /// Turns access control on or off. Turning it on needs `who` to hold
    /// `manage_access` over the workspace already, so nobody is locked out.
    void set_access_control(const principal& who, bool enabled);
    /// The workspace's roles (id order), grants and switch.
    access_policy access_control() const;

    // --- sequences (definitions: include mailers/sequence.hpp) -------------

    /// Creates or replaces a sequence definition, audited as
    /// `sequence.upsert`. Refused with errc::invalid_argument when
    /// `sequence::compile` refuses it (the message names the step, field
    /// and template position), and with errc::unknown_pool /
    /// errc::unknown_mailbox when a step names a pool or mailbox the
    /// workspace does not have.
    void upsert_sequence(const principal& who, const sequence_config& cfg);
    /// Removes a definition (errc::not_found when there is none).
    void remove_sequence(const principal& who, const std::string& id);
    std::optional<sequence> find_sequence(const std::string& id) const;
    /// Every readable definition, in id order.
    std::vector<sequence_config> sequences() const;

    // --- enrollments (docs/sequences.md) ------------------------------------
    // Every change is decided by the store (several processes agree) and
    // audited in the same commit; the actions the authorizer and access
    // control see are named with each call ("enroll" needs the `enqueue`
    // permission, the others `pause`, `resume` or `manage_sequences`, over
    // the sequence).

    /// Enrolls `contact` in sequence `sequence_id`; its first step is
    /// planned by the scheduler as soon as it falls due. Refused, enrolling
    /// nothing: errc::not_found for an unknown sequence, errc::suppressed
    /// for a suppressed address (or domain), errc::invalid_argument when a
    /// step needs a variable the contact lacks and has no fallback (the
    /// message names them), errc::unknown_mailbox for an unknown owner,
    /// errc::invalid_address. Enrolling a contact already in the sequence
    /// (in any state) is errc::duplicate under `enrollment_conflict::refuse`,
    /// or replaces its variables and owner under `merge` (progress kept).
    /// Action "enroll" on the sequence. Returns the enrollment as stored.
    enrollment enroll(const principal& who, const std::string& sequence_id,
                      const address& contact, const enroll_options& opts = {});
    /// Pauses an active enrollment: its waiting step leaves the queue
    /// (one being handed off this moment still goes). Action
    /// "enrollment.pause". Returns false when it was not active.
    bool pause_enrollment(const principal& who, std::uint64_t id);
    /// Resumes a paused enrollment: its next step is planned again, due as
    /// it would have been (at once when that time has passed). Action
    /// "enrollment.resume". Returns false when it was not paused.
    bool resume_enrollment(const principal& who, std::uint64_t id);
    /// Stops an active, paused or unresolved enrollment, reason manual. Action
    /// "enrollment.stop". Returns false when it was neither.
    bool stop_enrollment(const principal& who, std::uint64_t id, std::string_view why = {});
    /// Resolves an enrollment held `unresolved` because its step's send
    /// ended `unknown` (look the send up first: its id is in the
    /// enrollment's `detail`). `sent`: it goes on with its next step at
    /// once (or completes); `not_sent`: the step is planned again at once
    /// with `enrollment::attempt` raised, so its re-send has a send key of
    /// its own ("seq:<sequence>:<enrollment>:<step>~<attempt>"; the unknown
    /// send's key stays spent), and is checked against suppression, caps
    /// and windows at hand-off like any step; built from what the step
    /// before left, it is the same message with a new Message-ID. A
    /// provider's event about the unknown send arriving later (see
    /// `apply_webhook`) cancels the re-send while it still waits and the
    /// enrollment goes on as if resolved `sent`; once the re-send was handed
    /// off it stands, and the step counts once. A compare-and-set on the
    /// stored enrollment, so of two engines resolving it one wins. Action
    /// "enrollment.resolve" (permission manage_sequences).
    /// Returns false when it was not unresolved (resolved meanwhile, by an
    /// event about the send or another engine). errc::not_found for an
    /// unknown id.
    bool resolve_unknown_step(const principal& who, std::uint64_t id, step_resolution what);
    std::optional<enrollment> find_enrollment(std::uint64_t id) const;
    /// The enrollments `filter` admits, in id order (filter.address is
    /// normalised here).
    std::vector<enrollment> enrollments(const enrollment_filter& filter = {}) const;

    /// Pauses every enrollment of a sequence at once: no step of it is
    /// planned or handed off until resumed (steps already waiting in the
    /// queue wait, reason "paused"). On top of the other pause scopes.
    /// Action "sequence.pause".
    void pause_sequence(const principal& who, const std::string& sequence_id,
                        std::string_view reason = {});
    /// errc::not_found when the sequence is not paused. Once every engine has
    /// applied the resume, the steps the pause held are made due at once
    /// (planned again with the same send key), not at the next recheck.
    /// Blocking: reads the sequence's active enrollments. Action "sequence.resume".
    void resume_sequence(const principal& who, const std::string& sequence_id);
    bool is_sequence_paused(const std::string& sequence_id) const;

    /// The host saw a reply: stops enrollments as the replied sequence's
    /// `reply_stops` says. `from` is the replying address, or the
    /// Message-ID (with or without <>) of the step replied to; by address
    /// every active, paused or unresolved enrollment of it is stopped when any of its
    /// sequences says `every_sequence`, else each in its own sequence (all
    /// of them: a reply by address names no sequence). Reason replied.
    /// Returns the ids stopped. Action "enrollment.stop".
    std::vector<std::uint64_t> record_reply(const principal& who, std::string_view from);
    /// The contact reached the sequence's goal (booked the call): stops its
    /// enrollment in `sequence_id`, or every one of the address when that
    /// sequence's `goal_stops` is `every_sequence`. Reason goal. Returns the
    /// ids stopped. Action "enrollment.stop".
    std::vector<std::uint64_t> record_goal(const principal& who, std::string_view address,
                                           const std::string& sequence_id);

    // --- campaigns (mailers/campaign.hpp, docs/campaigns.md) --------------
    // A campaign's recipients are queue items with origin "campaign:<id>"
    // and idempotency key "campaign:<id>:<normalised address>"; the queue
    // paces and hands them off like any queued send, and their events
    // carry `event::campaign`.

    /// Validates the whole campaign, then queues one send per distinct
    /// recipient (by normalised address; later duplicates in the list are
    /// left out). A suppressed recipient is counted in
    /// `suppressed_at_start` and not queued. Refused, queueing nothing:
    /// errc::invalid_argument for a bad id or name, a template that does not
    /// compile (the message gives part, line and column), a recipient
    /// lacking a variable without fallback (named, with the recipient), a
    /// display name with CR or LF, or an empty list; errc::invalid_address
    /// for a malformed recipient (named with its position);
    /// errc::unknown_pool / errc::unknown_mailbox for the target; and
    /// errc::duplicate when a campaign with this id was started with
    /// another definition or list. Starting the same campaign again (here
    /// or in another process, also concurrently) queues only the
    /// recipients that have no item yet; a cancelled campaign queues
    /// nothing more. Action "campaign.start" over the pool or mailbox
    /// (permission `enqueue`), audited; each send is also authorised as
    /// "send". Blocking. Returns the campaign as stored.
    campaign_info start_campaign(const principal& who, const campaign_config& cfg);
    /// Withdraws every waiting item of the campaign and marks it cancelled
    /// (audited as "campaign.cancel", permission `enqueue`). Items being
    /// handed off this moment still go. Returns how many items it
    /// cancelled. errc::not_found for an unknown campaign.
    std::uint64_t cancel_campaign(const principal& who, const std::string& id);
    /// The campaign's counts, read from the store's queue (one scan of its
    /// items): any engine of the workspace answers the same.
    /// errc::not_found for an unknown campaign.
    mailers::campaign_progress campaign_progress(const std::string& id) const;
    std::optional<campaign_info> find_campaign(const std::string& id) const;
    /// Every started campaign, in id order.
    std::vector<campaign_info> campaigns() const;

    /// A dry run (mailers/forecast.hpp): what `req` would send, when and
    /// from which mailbox, and what holds each message back, decided by a
    /// private engine on a simulated clock over a private in-memory copy of
    /// the workspace's configuration, suppressions, pauses, recent sends
    /// and waiting queue. The workspace's store is only read: nothing is
    /// sent, stored or audited, and no permission is needed. Input the real
    /// call would refuse (a bad campaign, an unknown sequence, a contact
    /// lacking a variable) throws as it would there; a suppressed contact
    /// is reported unsent. Blocking, on the calling thread (never the host's
    /// executor); it takes real time roughly in proportion to the messages
    /// and distinct due times simulated, about as long as draining them
    /// through an in-memory store.
    forecast_plan forecast(const forecast_request& req) const;

    // --- end of campaigns ----------------------------------------------------

    // --- suppression -------------------------------------------------------

    /// Suppresses an address ("a@b.com") or, with kind domain, a domain.
    /// Once it returns, no send to a matching recipient is handed off. An
    /// erased address (`erase_person`) is suppressed already and is not
    /// stored again; `import_suppressions` leaves such lines out too.
    void suppress(const principal& who, suppression_kind kind, std::string_view value,
                  suppression_reason reason, std::string_view source = "api");
    /// Removes an entry; returns false when there was none.
    bool unsuppress(const principal& who, suppression_kind kind, std::string_view value);
    /// True when the address (or its domain, or a parent domain) is suppressed.
    /// Throws errc::invalid_address for a malformed address.
    bool is_suppressed(std::string_view address) const;
    std::optional<suppression_entry> find_suppression(std::string_view address) const;
    std::size_t suppression_count() const;
    /// Imports a CSV (value,kind,reason,source,created_at; header optional).
    /// All lines or none: a malformed line throws errc::invalid_csv naming
    /// the line, and nothing is imported. Returns the number of entries.
    std::size_t import_suppressions(const principal& who, std::istream& csv,
                                    std::string_view source = "csv-import");
    /// Writes every entry as CSV with a header row. Returns the count.
    std::size_t export_suppressions(std::ostream& csv) const;
    /// The folding rules the workspace's suppression keys are made with now
    /// (`engine_params::suppression` once applied, else the stored ones).
    suppression_options suppression_rules() const;

    // --- erasure and export of a person (docs/privacy.md) ---------------------

    /// Erases a person (GDPR Art. 17) while keeping them suppressed. In one
    /// store transaction: every suppression row of the address (current,
    /// replaced, removed) goes and keyed-hash entries take its place (one
    /// per set of folding rules, so a later change of the rules still
    /// matches); ledger rows are scrubbed (recipient, detail, idempotency
    /// key) and kept; queued requests to or about the person are emptied
    /// (waiting items cancelled); enrollments of the address go with their
    /// message records; outbox rows carrying the person's events and
    /// recorded keys naming it go. The audit record ("person.erase", type
    /// "person", id the hash) holds the hash and counts, never the address.
    /// Once it returns, no engine of the workspace hands off a send to the
    /// address in any spelling the normaliser folds together, and
    /// is_suppressed, find_suppression, enroll, start_campaign and enqueue
    /// see it as suppressed. A second pass then scrubs what sends in flight
    /// recorded meanwhile. Erasing again is harmless (the counts are 0).
    /// Audit records written before keep the address (docs/privacy.md).
    /// Throws errc::invalid_address (not an address; nothing changes),
    /// errc::permission_denied (permission `erase_person`), errc::invalid_argument
    /// (this engine's `erasure_key` disagrees with the workspace's).
    /// Blocking; reads the workspace's audit log and queue.
    erasure_report erase_person(const principal& who, std::string_view address);

    /// Everything the workspace holds about one address (GDPR Art. 15), as
    /// one JSON object: "address", "key", "suppressed", "suppression" (the
    /// entry in force, address or domain or erased hash), "suppression_history"
    /// (every version of the address's entries), "sends" (ledger rows),
    /// "events" (outbox rows carrying its events), "enrollments", "queued"
    /// (queue items to it, without attachments), "audit" (records naming
    /// it). Permission `export_data`; audited as "person.export" with the
    /// keyed hash, never the address. errc::invalid_address for a malformed
    /// address. Blocking; scans the ledger, queue, outbox and audit log.
    std::string export_person(const principal& who, std::string_view address);

    /// Applies retention windows: forgets ledger rows reserved longer ago
    /// than `policy.sends` whose outcome is recorded (with their idempotency
    /// keys: a send repeated under one of them is a new send), ended
    /// outbound webhook deliveries older than `policy.webhook_deliveries`,
    /// and the daily counts of days before `policy.counts`.
    /// Audited as "retention.purge" with the cutoffs and counts (permission
    /// `erase_person`). errc::invalid_argument for a ledger window under 8
    /// days or a counts window under 365 days, changing nothing. With `policy.audit`, audit records older
    /// than it are purged first, as `purge_audit` does (its "audit.purge"
    /// record comes before the "retention.purge" one). Blocking.
    retention_report purge_retained(const principal& who, const retention_policy& policy);

    /// Purges the audit records older than `before` (a prefix of the chain:
    /// up to the first record at or after `before`), never the newest
    /// record nor any at or after `keep_from` (0: no bound), and moves the
    /// store's anchor to the first kept record, in one transaction that
    /// also appends an "audit.purge" record naming the anchor and the
    /// cutoff, so `verify_audit` keeps passing and notices a cut the
    /// anchor does not account for (docs/audit.md). Permission
    /// `erase_person` (action "audit.purge"); nothing old enough purges
    /// nothing and appends no record. Blocking.
    audit_purge_result purge_audit(const principal& who, time_point before,
                                   std::uint64_t keep_from = 0);

    // --- end erasure --------------------------------------------------------

    // --- pause -------------------------------------------------------------

    /// Once pause() returns, nothing new is handed off through the target.
    void pause(const principal& who, const pause_target& target, std::string_view reason = {});
    /// Lifts a pause. Audited as "resume" with `reason`; it also starts the
    /// grace period of every pause rule (`pause_rule::grace_days`) on the
    /// target.
    void resume(const principal& who, const pause_target& target, std::string_view reason = {});
    bool is_paused(const pause_target& target) const;
    /// The pauses in force, in (scope, id) order.
    std::vector<pause_info> pauses() const;

    // --- daily counts, soft bounces and pause rules (docs/rules.md) -------

    /// The counts of (scope, id) for every UTC day from `from` to `to`, both
    /// included, one element per day in day order (days with nothing
    /// counted are zeros). The workspace scope's id is "". Read from the
    /// store: every engine of the workspace answers the same. At most 3660
    /// days (errc::invalid_argument beyond, or when `from` > `to`).
    std::vector<daily_count> daily_counts(count_scope scope, std::string_view id, count_day from,
                                          count_day to) const;

    /// Sets the workspace's soft-bounce policy. Refused, changing nothing,
    /// with errc::invalid_argument for values out of range. Action
    /// "suppression.soft_bounces" (permission `suppression_add`), audited.
    void set_soft_bounce_policy(const principal& who, const soft_bounce_policy& p);
    soft_bounce_policy soft_bounces() const;

    /// Adds a pause rule, or replaces the one with its id. Refused,
    /// changing nothing, with errc::invalid_argument naming what is wrong
    /// (id, target, rate, window). Action "rule.put" (permission `pause`)
    /// on the rule's target (the workspace for a rule over every target),
    /// audited; in force in every engine once it returns.
    void put_pause_rule(const principal& who, const pause_rule& r);
    /// Removes a rule; false when there was none. Action "rule.remove".
    bool remove_pause_rule(const principal& who, const std::string& id);
    /// The rules, in id order.
    std::vector<pause_rule> pause_rules() const;
    /// Evaluates every rule on every target it covers now (each mailbox,
    /// pool, provider and sender domain this engine knows) and fires those
    /// crossed. Rules are also evaluated on the targets of each bounce,
    /// complaint and failure as it is applied, and by the engine's own
    /// sweep every `engine_params::rule_check_interval`; this evaluates at
    /// once. Blocking (reads the store). Returns what fired here.
    std::vector<rule_firing> check_pause_rules();

    // --- events, audit, stats ----------------------------------------------

    /// Takes a provider's webhook request as received (for a host that
    /// mounts it in its own HTTP server, or from `webhook_server`):
    /// verifies and reads it with `parse_webhook(provider, request,
    /// params)`, then for each event
    ///   * fills in mailbox, pool, provider and idempotency key from the
    ///     ledger row its `send_id` names, when that is a send of this
    ///     workspace;
    ///   * suppresses the recipient for a hard bounce (`hard_bounce`), a
    ///     complaint (`complaint`) or an unsubscribe (`unsubscribe`), as
    ///     principal "webhook:<provider>" with source "<provider>-webhook",
    ///     audited like `suppress()`; an address already suppressed is left
    ///     as it is, so a redelivered request changes nothing;
    ///   * for a `replied` event about a send of this workspace (its
    ///     `send_id`, or `message_id` of a step), stops enrollments as
    ///     `record_reply` does (the step's enrollment, or every one of the
    ///     address, per the sequence's `reply_stops`; every enrollment of
    ///     the recipient for a send that is no step), audited
    ///     `enrollment.stop` as the same principal; about no send of ours,
    ///     it stops nothing;
    ///   * for a delivered, deferred, bounced, opened or clicked event
    ///     about a step's send that holds its enrollment `unresolved`
    ///     (its outcome was unknown), resolves it as sent, as
    ///     `resolve_unknown_step` does, audited `enrollment.resolve`; so
    ///     does one about such a send resolved `not_sent` whose re-send still
    ///     waits (the re-send is cancelled);
    ///   * reaches the `on_event` handlers.
    /// Every applied event is counted for its send's scopes and day
    /// (`daily_counts`). Soft bounces, deliveries, opens and clicks suppress
    /// nothing, except a soft bounce that reaches the workspace's
    /// `soft_bounce_policy`; bounces and complaints are then measured
    /// against the pause rules (`put_pause_rule`), which may pause their
    /// send's mailbox, pool, provider, sender domain or workspace. When it
    /// returns, every suppression it made holds in every engine of the
    /// workspace, so answering the provider 2xx after it is safe. A
    /// refused request (4xx) changes nothing. A store failure throws, having
    /// applied none of the request's events; answer 5xx then, so the
    /// provider redelivers. The Mailgun token the request's check recorded
    /// in `params.mailgun.replay` is then released, so the retry is not
    /// refused as a replay.
    ///
    /// Exactly once: each event's `dedup_key` is recorded in the store, in
    /// one transaction with the request's other events and with what the
    /// event does (suppression, stop or resolution and their audit records,
    /// daily counts, outbound webhook rows), and the event is applied
    /// (effects, handlers) only when this record is the first, so a
    /// redelivery, or the same retry reaching two engines of the workspace,
    /// is applied once and counted in `duplicates` elsewhere. Handlers are called once
    /// the record is durable; a process that stops between the two loses
    /// that call (the suppression is never lost).
    ingest_result ingest_webhook(webhook_provider provider, const webhook_request& request,
                                 const webhook_params& params);
    /// The second half of `ingest_webhook`, for a request parse_webhook
    /// has already read (as `webhook_server` does before its callback).
    /// Nothing is applied unless `parsed.outcome` is `events`.
    ingest_result apply_webhook(webhook_provider provider, webhook_result parsed);

    /// Takes one bounce message fetched from a sending mailbox (Google
    /// Workspace and Microsoft 365 have no bounce webhooks) and applies it
    /// as `ingest_webhook` applies a provider's events: a hard bounce
    /// suppresses its recipient (actor and source "bounce-message"), and
    /// every event reaches the handlers. A message that is not a bounce
    /// (`report.recognised` false) changes nothing. The events carry the
    /// bounced message's Message-ID, not a send id.
    report_ingest_result ingest_delivery_report(std::string_view message);

    /// Applies a one-click unsubscribe: checks the token (made by this
    /// workspace's engines under `engine_params::unsubscribe.secret`) and
    /// suppresses its recipient (reason `unsubscribe`, source "one-click",
    /// actor "one-click"), audited like `suppress()`, and emits an
    /// `unsubscribed` event. A malformed, forged or expired token, or one
    /// for another workspace, changes nothing and says so in `status`
    /// (another workspace's reads as forged). An address already
    /// suppressed is left as it is. The same token taken at once by several
    /// engines of the workspace suppresses, counts and audits once:
    /// `suppressed` for one call, `already` for the others. Call it from the POST that RFC 8058
    /// clients send; a GET should show a confirmation page instead, since
    /// link scanners follow links.
    unsubscribe_result unsubscribe(std::string_view token);

    /// Registers a callback for every event; it runs on the engine's
    /// executor, in order per send. Returns an id for `remove_event_handler`.
    std::uint64_t on_event(std::function<void(const event&)> fn);
    void remove_event_handler(std::uint64_t id);

    // --- outbound webhooks (docs/webhooks.md, "Outbound webhooks") ----------
    // Endpoints are stored objects (kind "webhook.endpoint"): every change
    // is authorised (permission `manage_webhooks` over the workspace),
    // audited with the secret left out, and in force in every engine of the
    // workspace once the call returns. Every event the handlers of
    // `on_event` get is also written to the outbox for each enabled
    // endpoint whose filter admits it.

    /// Adds `ep`, or replaces the endpoint with its id (keeping its secret
    /// when `ep.secret` is empty). Refused, changing nothing, with
    /// errc::invalid_argument naming what is wrong: a bad id, a URL that is
    /// not https (or http when allowed) or has user info or a fragment, a
    /// literal private or loopback address unless allowed, a secret that is
    /// neither "whsec_" + base64 of 24 to 64 bytes nor a reference that
    /// resolves to one. Returns the endpoint as stored, its secret included
    /// (generated when none was given and none was kept). Action
    /// "webhook.put".
    webhook_endpoint put_webhook_endpoint(const principal& who, webhook_endpoint ep);
    /// Removes an endpoint; its pending deliveries are given up. Returns
    /// false when there was none. Action "webhook.remove".
    bool remove_webhook_endpoint(const principal& who, const std::string& id);
    /// Disables an endpoint by hand, with `reason`; its pending deliveries
    /// are given up. errc::not_found for an unknown id. Action
    /// "webhook.disable".
    void disable_webhook_endpoint(const principal& who, const std::string& id,
                                  std::string_view reason);
    /// Enables an endpoint again (the operator's answer to one the engine
    /// disabled). With `retry_failed`, the deliveries to it that were given
    /// up since `failed_since` are attempted again from the start.
    /// errc::not_found for an unknown id. Action "webhook.enable".
    void enable_webhook_endpoint(const principal& who, const std::string& id,
                                 bool retry_failed = false, time_point failed_since = {});
    /// The endpoints, in id order; inline secrets are shown as "whsec_…"
    /// (references as given).
    std::vector<webhook_endpoint> webhook_endpoints() const;
    std::optional<webhook_endpoint> find_webhook_endpoint(const std::string& id) const;
    /// The outbox rows `filter` admits, in id order (reads the store).
    std::vector<webhook_delivery> webhook_deliveries(
        const webhook_delivery_filter& filter = {}) const;
    /// Counts of an endpoint's outbox rows ("" every endpoint's).
    webhook_delivery_counts count_webhook_deliveries(const std::string& endpoint = {}) const;
    // --- end outbound webhooks

    /// Reads the audit log from `from_seq` on (the kept records: from the
    /// anchor on once records were purged).
    std::vector<audit_record> audit_log(std::uint64_t from_seq = 1) const;
    /// The same, with the anchor the records were kept from: both from one
    /// state of the store, read again when a purge ran between them.
    std::vector<audit_record> audit_log(std::uint64_t from_seq,
                                        mailers::audit_anchor& anchor) const;
    /// The store's audit anchor (seq 0 when nothing was purged).
    mailers::audit_anchor audit_anchor() const;
    /// Reads the whole kept audit log and checks it with
    /// `verify_audit_chain`, this engine's audit key and the store's
    /// anchor: the chain must start at seq 1 from the genesis, or at the
    /// anchor agreeing with the newest "audit.purge" record. Returns
    /// errc::audit_chain_broken and sets `*bad_seq` (see there) when it
    /// fails. Records cut from the end leave a chain that verifies: keep
    /// checkpoints elsewhere and pass one.
    error_code verify_audit(std::uint64_t* bad_seq = nullptr) const;
    /// As above, and the chain must reach `checkpoint`: fewer records than
    /// its seq, or another hash at that seq, fails. A checkpoint older than
    /// the anchor passes only when a kept "audit.purge" record cut right
    /// after it and names its hash.
    error_code verify_audit(const audit_head& checkpoint, std::uint64_t* bad_seq = nullptr) const;
    /// The head of the audit log, for the host to keep outside the store
    /// and pass to `verify_audit` later. Reads and verifies the whole log
    /// first, so a checkpoint never vouches for a chain that fails: throws
    /// `mailers::exception` with errc::audit_chain_broken then.
    audit_head audit_checkpoint() const;

    /// Checks the workspace's suppression rows against the audit trail and
    /// returns what it found (see docs/audit.md): the audit chain verifies
    /// (checked as `verify_audit()`; when it fails nothing else is); every
    /// current and replaced row was written by an audited suppression
    /// change; a single add's entry is found exactly once, as audited; a
    /// single remove ended exactly one row of its key; the rows each bulk
    /// change (an import, a re-key of stored entries) wrote match the count
    /// and digest in its audit body; every row's replacement or removal is
    /// an audited change that wrote or removed that key.
    ///
    /// Other processes may change suppressions meanwhile: the audit log is
    /// read first, then every row version in one read of one committed
    /// state, then the records appended since. Changes up to the newest
    /// change in the first read are checked in full; rows written or ended
    /// by later ones need only be audited by the records read last. So a
    /// concurrent change never reads as tampering.
    ///
    /// Blocking: reads the whole audit log and streams every row version
    /// (memory stays bounded by the audit log, not by the rows); on SQLite,
    /// writes through the same store handle wait while the rows stream.
    /// Throws `mailers::exception` when the store fails. Safe to call from
    /// any thread. `verify_suppressions(store&, ...)` in
    /// suppression_audit.hpp does the same without an engine.
    suppression_verify_report verify_suppressions() const;

    engine_stats stats() const;
    /// Where the time of a send goes, stage by stage.
    pipeline_latencies latencies() const;

    /// This engine's counters and latency histograms, and gauges of what it
    /// sees of the workspace now, in the Prometheus text exposition format
    /// (version 0.0.4), for a host's scrape endpoint (`webhook_server` serves
    /// it when given it: webhook_server_params::metrics). Families, all
    /// prefixed `mailers_`:
    ///  - `sends_total{outcome}`, `failovers_total`, `store_commits_total`,
    ///    `store_committed_ops_total` (counters, this engine since it started);
    ///  - `send_stage_seconds{stage}` (histogram: decide, reserve, handoff,
    ///    record, total; power-of-two buckets from 2 µs);
    ///  - per mailbox: `mailbox_sent{mailbox,window="day"|"hour"}`,
    ///    `mailbox_daily_cap{mailbox}` (absent when it has none),
    ///    `mailbox_eligible{mailbox}` (1 or 0), `mailbox_blocked{mailbox,reason}`
    ///    (1 for the reason it cannot send now), `mailbox_breaker_open{mailbox}`;
    ///  - `pauses` (pause records in force);
    ///  - `queue_items{state}` and `queue_waiting{reason}` (the workspace's
    ///    queue, read from the store: one query; left out when the store
    ///    cannot answer, so a scrape never fails for it);
    ///  - per outbound webhook endpoint: `webhook_endpoint_enabled{endpoint}`
    ///    (1 or 0) and `webhook_deliveries{endpoint,state}` (its outbox rows:
    ///    pending, claimed, delivered, failed; one store query per endpoint,
    ///    left out as the queue's when the store cannot answer);
    ///  - `workspace_today{metric}`: the workspace's daily counts for the
    ///    current UTC day (one store query, left out as the queue's).
    /// Label values are escaped as the format requires. Thread-safe.
    std::string metrics_text() const;

    /// Completes every queued store write, then returns.
    void flush();

    /// Stops sending: sends started from now on, and sends not yet handed
    /// off, complete with errc::operation_aborted; queued store writes are
    /// flushed. Sends already handed off complete with their outcome.
    /// Provider checks in flight, and those started later, complete with
    /// errc::operation_aborted.
    /// Configuration calls keep working. This engine takes no more queued
    /// sends, and async_enqueue waiters complete with operation_aborted.
    /// Irreversible.
    void cancel();

    struct impl;

private:
    static void async_send_impl(
        const std::shared_ptr<impl>& state, send_request req,
        boost::asio::any_completion_handler<void(error_code, send_result)> handler);
    /// Checks provider `id`, or the transport `dsn` builds when `id` is empty.
    static void async_check_impl(
        const std::shared_ptr<impl>& state, principal who, std::string id, std::string dsn,
        boost::asio::any_completion_handler<void(error_code, provider_check)> handler);
    static void async_enqueue_impl(
        const std::shared_ptr<impl>& state, send_request req, enqueue_options opts,
        boost::asio::any_completion_handler<void(error_code, queued_send)> handler);
    std::shared_ptr<impl> impl_;
};

}  // namespace mailers
