// The engine's state and the decisions it makes on it. The public class in
// engine.hpp forwards here.
//
// Locking: `feed_mu` (applying the change feed) before `mu` (all decision
// state) before `supp_mu` (the suppression index). No lock is held while
// waiting for the store, except `feed_mu` while reading the change feed.
//
// Memory is a cache of what the store decides. Configuration, pauses and
// suppressions reach it through the store's change feed, applied in change
// order (membership.cpp); caps are decided by the store at reservation, the
// in-memory counters only choose a mailbox likely to pass.
#pragma once

#include <atomic>
#include <boost/asio/strand.hpp>
#include <condition_variable>
#include <mailers/engine.hpp>
#include <mailers/sequence.hpp>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "core/rate_counter.hpp"
#include "core/schedule.hpp"
#include "decide/breaker.hpp"
#include "decide/eligibility.hpp"
#include "decide/failure_policy.hpp"
#include "decide/rotation.hpp"
#include "engine/commit_writer.hpp"
#include "suppression/index.hpp"

namespace mailers {

namespace detail {

/// The most days back that anything reads the daily counts (a pause rule's
/// window, the soft-bounce policy's): retention keeps at least these.
inline constexpr count_day longest_count_window_days = 365;

[[noreturn]] inline void fail(errc e, std::string message) {
    throw exception(make_error_code(e), std::move(message));
}

/// The longest cap window: load() reads the sends of this long and two
/// hours more (a calendar day can be 25 hours long).
inline constexpr std::chrono::seconds max_window_length{7 * 86400};

/// CR, LF or NUL: what no single-line value may hold.
inline bool has_crlf(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// The breaker is a base so its fields read as the mailbox's own
// (mb.health, mb.probe_in_flight); breaker() is the whole state, for the
// decide:: transitions.
struct mailbox_rt : decide::breaker_state {
    mailbox_config cfg;
    std::string cap_key;  // decide::mailbox_key(cfg.id)
    zone_ptr zone = nullptr;
    std::string sender_domain;            // normalised From domain
    std::vector<effective_limit> limits;  // cfg.limits, without warm-up
    std::chrono::seconds horizon{86400};
    rate_counter counter;
    time_point gap_until{};
    time_point throttled_until{};
    time_point exhausted_until{};
    bool auth_failed = false;

    decide::breaker_state& breaker() noexcept { return *this; }
    const decide::breaker_state& breaker() const noexcept { return *this; }
};

struct quota_rt {
    quota q;
    std::string cap_key;    // decide::quota_key(scope, key)
    std::string object_id;  // quota_object_id(scope, key)
    zone_ptr zone = nullptr;
    std::vector<effective_limit> limits;
    std::chrono::seconds horizon{86400};
    rate_counter counter;  // for specific keys
    // key "*" on recipient_domain: one counter per receiving domain
    std::unordered_map<std::string, rate_counter> per_domain;
    /// Put by another process in a form this one cannot read: its limits
    /// are unknown, so nothing it counts is sent until it is put again.
    bool unreadable = false;
};

/// A pool with its members resolved and its rotation order precomputed, so
/// a pick checks mailboxes one by one in rotation order and usually stops
/// at the first: the cost of a send does not grow with the pool's size.
struct pool_rt {
    pool_config cfg;
    std::vector<mailbox_rt*> members;                     // cfg.mailboxes, resolved
    decide::rotation order;                               // indexes into members
    std::unordered_map<std::string, std::string> sticky;  // recipient -> mailbox
    /// Put by another process in a form this one cannot read: nothing is
    /// sent through it until it is put again.
    bool unreadable = false;
};

/// Re-resolves members and recomputes the rotation order (after a pool or
/// a member mailbox changes).
void rebuild(pool_rt& p, std::unordered_map<std::string, mailbox_rt>& mailboxes);

/// A send's distinct receiving domains, each with how many of its
/// recipients it has, the `to` recipient's first.
using domain_counts = std::vector<std::pair<std::string, std::uint64_t>>;

/// What a reservation touched, so it can be released exactly.
struct reservation {
    std::string mailbox;
    time_point at{};
    std::vector<std::pair<quota_rt*, rate_counter*>> quota_counters;
    bool probe = false;
    duration gap{0};  // the gap (with jitter) this reservation starts
};

using decide::cap_hint;
using decide::eligibility;

/// Test seam: when set, runs on the thread committing one of this
/// process's audited changes, once the change is in memory and before the
/// engine names it as applied (catch_up), so a test can run a hand-off in
/// between. Empty outside tests.
extern std::function<void()> own_change_applied_hook;

class send_queue;      // queue.hpp

/// The provider checks in flight (providers.cpp), each by the function that
/// aborts it. Apart from the engine's state, so that a check ending after
/// the engine never holds that state up; `mu` is taken alone.
struct __attribute__((visibility("hidden"))) check_registry {
    std::mutex mu;
    std::unordered_map<std::uint64_t, std::function<void()>> aborts;
    std::uint64_t next = 0;
};
class webhook_outbox;  // outbox.hpp

/// The kept audit records from `from_seq` on and, in `anchor`, where they
/// start, read from one state of the store (engine.cpp).
std::vector<audit_record> read_kept_audit(store& st, std::string_view ws, std::uint64_t from_seq,
                                          audit_anchor& anchor);

}  // namespace detail

// Hidden: a nested class of an exported class is exported by default, and
// nothing here is public API.
struct __attribute__((visibility("hidden"))) engine::impl
    : std::enable_shared_from_this<engine::impl> {
    impl(boost::asio::any_io_executor ex, engine_params p);
    ~impl();

    boost::asio::any_io_executor ex;
    boost::asio::strand<boost::asio::any_io_executor> events_strand;
    engine_params params;
    std::shared_ptr<mailers::clock> clk;
    std::unique_ptr<detail::commit_writer> writer;
    std::atomic<bool> cancelled{false};

    mutable std::mutex mu;
    std::unordered_map<std::string, detail::mailbox_rt> mailboxes;
    std::unordered_map<std::string, detail::pool_rt> pools;
    std::map<std::pair<quota_scope, std::string>, detail::quota_rt> quotas;
    std::unordered_map<std::string, std::string> pauses;  // pause object id -> reason
    /// Roles, grants and the switch (objects "access.role", "access.grant"
    /// and "settings"/"access").
    access_policy access;
    /// access.enabled, readable without `mu`: a send checks it first, so
    /// a workspace without access control pays no lock for it.
    std::atomic<bool> access_on{false};
    /// Sequence definitions by id. One another process stored in a form
    /// this one cannot read is kept as its id without a definition, so no
    /// step is planned here from an older version of it.
    std::map<std::string, std::optional<sequence>> sequences;
    /// Paused sequences (objects "sequence.pause"): sequence id -> the pause.
    std::map<std::string, std::string> sequence_pauses;
    /// Started campaigns (objects "campaign"); an unreadable one is left out.
    std::map<std::string, campaign_info> campaigns;
    /// Applies a stored campaign object (load and change feed).
    void apply_campaign_object(const stored_object& o);
    std::unordered_map<std::string, std::shared_ptr<provider_transport>> providers;
    /// Providers kept in the store (objects "provider"), by id
    /// (providers.cpp). Ids in `host_providers` were registered by the host
    /// with add_provider: a stored DSN of the same id does not replace them.
    std::map<std::string, stored_provider> saved_providers;
    std::unordered_set<std::string> host_providers;
    /// Applies a stored provider object, building its transport (load and
    /// change feed; under mu). A DSN that does not build here is logged.
    void apply_provider_object(const stored_object& o);
    void remove_provider_object(const std::string& id);  // under mu
    /// add_provider's commit: `t` sends for `id` here, whatever is stored
    /// under it (takes mu).
    void register_host_provider(const std::string& id, std::shared_ptr<provider_transport> t);
    /// Provider checks in flight, so that cancel() ends them (providers.cpp).
    std::shared_ptr<detail::check_registry> checks = std::make_shared<detail::check_registry>();
    /// Completes every check in flight with operation_aborted.
    void abort_checks();
    std::unordered_map<std::string, detail::cap_hint> cap_hints;  // cap key -> store's refusal
    std::mt19937_64 rng;
    engine_stats counters;

    /// pipeline_latencies, kept lock-free: one bucket array per stage.
    enum stage { stage_decide, stage_reserve, stage_handoff, stage_record, stage_total, stages };
    std::array<std::array<std::atomic<std::uint64_t>, 32>, stages> latency{};
    std::array<std::atomic<std::uint64_t>, stages> latency_sum_us{};
    void record_latency(stage s, std::chrono::steady_clock::duration d) noexcept;

    mutable std::shared_mutex supp_mu;
    detail::suppression_index index;
    /// The workspace's folding rules, which made the keys in `index`
    /// (suppression_settings.cpp); under supp_mu.
    suppression_options supp_opts;
    suppression_options suppression_opts() const {
        std::shared_lock lock(supp_mu);
        return supp_opts;
    }
    /// What load() found to change in the workspace's suppression settings,
    /// committed by commit_suppression_settings() once the engine is a
    /// member that follows the feed.
    struct settings_change {
        std::string before, after;
        suppression_options options;
        std::vector<store_op> ops;
        std::vector<std::pair<suppression_kind, std::string>> erased, inserted;
        /// Over the entries the re-key writes, for its audit body.
        suppression_set_digest written;
        std::string digest_key;
        bool rekeys() const { return !erased.empty(); }
    };
    std::optional<settings_change> pending_settings;
    /// Reads the stored settings from `snap` (under mu and supp_mu).
    void plan_suppression_settings(const store_snapshot& snap);
    /// Whether the settings stored in `snap` are the ones this engine
    /// wants, so that planning needs no suppression entries.
    bool suppression_settings_current(const store_snapshot& snap) const;
    void commit_suppression_settings();
    /// Applies settings another engine committed (under mu).
    void apply_suppression_settings(const stored_object& o);

    std::mutex ev_mu;
    std::vector<std::pair<std::uint64_t, std::function<void(const event&)>>> handlers;
    std::uint64_t next_handler = 1;
    std::atomic<bool> have_handlers{false};

    // --- membership and the change feed (membership.cpp)
    std::atomic<std::uint64_t> member{0};
    /// The newest change applied to memory; written under feed_mu and mu.
    std::atomic<std::uint64_t> applied_seq{0};
    /// This engine's own change while catch_up applies it as committed,
    /// outside mu, before applied_seq names it; 0 otherwise. Under mu. A
    /// hand-off waits it out: memory then holds a change applied_seq does
    /// not name yet, and the seq it records must be the state it checked.
    std::uint64_t own_seq_applying = 0;
    /// Marks `seq` as this engine's own change being applied to memory
    /// (own_seq_applying) for its lifetime; at its end publishes `applied`
    /// as applied_seq when set. Both under mu, so a hand-off never sees
    /// memory ahead of applied_seq without the mark.
    struct own_change_applying {
        impl& s;
        std::uint64_t applied = 0;
        own_change_applying(impl& s, std::uint64_t seq) : s(s) {
            std::lock_guard lock(s.mu);
            s.own_seq_applying = seq;
        }
        ~own_change_applying() {
            std::lock_guard lock(s.mu);
            if (applied != 0) s.applied_seq = applied;
            s.own_seq_applying = 0;
        }
        own_change_applying(const own_change_applying&) = delete;
        own_change_applying& operator=(const own_change_applying&) = delete;
    };
    /// Hand-offs are allowed only before this steady-clock instant (ns):
    /// the lease this member last renewed, less a safety margin. Another
    /// process's suppress() stops waiting for us once our lease runs out,
    /// so we must have stopped handing off by then.
    std::atomic<std::int64_t> fence_until{0};
    /// Audited changes of this engine being committed. The sync thread
    /// leaves the feed to them meanwhile: each applies its own change as
    /// committed, where reading it back (an import of millions of entries)
    /// would cost as much again.
    std::atomic<int> own_changes{0};
    /// Counts one of own_changes for its lifetime, or until release().
    struct own_change_scope {
        std::atomic<int>* n;
        explicit own_change_scope(impl& s) noexcept : n(&s.own_changes) { ++*n; }
        void release() noexcept {
            if (n) --*n;
            n = nullptr;
        }
        ~own_change_scope() { release(); }
        own_change_scope(const own_change_scope&) = delete;
        own_change_scope& operator=(const own_change_scope&) = delete;
    };
    std::mutex feed_mu;
    std::mutex sync_mu;
    std::condition_variable sync_cv;
    bool sync_stop = false;
    std::thread sync_thread;

    void start_membership();
    void stop_membership();
    void sync_loop();
    /// Attaches anew (after a lost lease) or renews; acks applied_seq.
    void renew_or_reattach();
    /// Recovers members that are gone: leases run out, and processes of
    /// this host that no longer exist.
    void recover_dead();
    /// Reads the change feed past applied_seq and applies it.
    void pull_changes();
    /// Applies the change feed up to at least `seq`. `apply_own`, when
    /// given, applies the caller's own change, the only one at `seq`: used
    /// instead of reading it back when `seq` is the very next change.
    void catch_up(std::uint64_t seq, const std::function<void()>& apply_own);
    /// Waits until every other live member has applied `seq`.
    void wait_acked(std::uint64_t seq);
    void apply_changes(const change_set& cs);  // callers hold feed_mu
    bool fenced() const noexcept;

    // --- start-up
    /// The stored mark of the audit key whose `audit.key` record the chain
    /// has (engine.cpp, record_audit_key); "" when none.
    std::string audit_key_mark;
    /// Joins the workspace and loads it into memory.
    void load();
    /// Counts the sends read at start-up (every process's recent
    /// reservations) on the counters of their mailboxes and quotas, and
    /// starts each mailbox's gap from them. Callers hold mu.
    void count_recent_sends(const std::vector<ledger_row>& rows);
    /// What status() reports for `mb` at `now`. Callers hold mu.
    mailbox_status status_of(detail::mailbox_rt& mb, time_point now);
    /// The pauses in force, in (scope, id) order. Callers hold mu.
    std::vector<pause_info> pause_list() const;
    /// Acknowledges what load() read and starts the sync thread.
    void start_sync();
    /// Runs `fn` on the writer thread, after every write queued before it,
    /// and waits; rethrows what `fn` throws. Blocks the calling thread.
    void with_store(const std::function<void(store&)>& fn) const;

    /// What `suppress` does once the caller is authorized; also what a
    /// recipient's own request (a bounce, a complaint, an unsubscribe)
    /// does, which no access rule may refuse. `key` is normalised.
    /// With `once`, the suppression, its audit record and the record of
    /// `once` commit together, and only when `once` is recorded now;
    /// returns false (changing nothing) when it was a duplicate.
    /// `also` (outbox rows for the event that caused it) commits with it,
    /// under the same guard.
    bool store_suppression(const principal& who, suppression_kind kind, const std::string& key,
                           suppression_reason reason, std::string_view source,
                           const store_ops::record_key* once = nullptr,
                           std::vector<store_op> also = {});
    /// The ops store_suppression commits for `e` before its audit record
    /// (which, under `once`, they are guarded with and must be followed by).
    std::vector<store_op> suppression_ops(const suppression_entry& e,
                                          const store_ops::record_key* once,
                                          std::vector<store_op> also);
    /// What ingest_webhook and ingest_delivery_report do with the events
    /// they read (see engine.hpp).
    void apply_reported_events(engine& e, std::vector<event>& events, const principal& who,
                               const std::string& source, std::size_t& suppressed,
                               std::size_t& already, std::size_t& duplicates);

    /// Checks `params.unsubscribe` and resolves its secret reference
    /// (engine construction).
    void prepare_unsubscribe();
    /// The one-click List-Unsubscribe for a send's message, when the
    /// engine makes them.
    std::optional<list_unsubscribe> unsubscribe_for(const ledger_row& row, time_point now) const;

    // --- decisions (callers hold mu)
    /// Whether `mb` may send to recipients at `domains` now: its own state
    /// and caps, then every shared quota the send counts against (none of
    /// the recipient-domain ones when `domains` is empty).
    detail::eligibility check(detail::mailbox_rt& mb, const std::string& pool_id,
                              const detail::domain_counts& domains, time_point now);
    /// Counts the send in memory as the store will: once on the mailbox and
    /// its provider and sender-domain quotas, once per recipient on each
    /// recipient-domain quota.
    std::optional<detail::reservation> reserve(detail::mailbox_rt& mb,
                                               const detail::domain_counts& domains,
                                               time_point now);
    void release(const detail::reservation& r);
    /// Calls fn(quota, per_domain) for every quota a send from `mb` to
    /// `recipient_domain` counts against, in decide::quotas_for's order,
    /// until fn returns true; `per_domain` is set for a "*" recipient-domain
    /// quota, which counts each receiving domain apart. Returns whether fn
    /// stopped it.
    template <class Fn>
    bool for_each_quota(const detail::mailbox_rt& mb, std::string_view recipient_domain, Fn&& fn) {
        if (quotas.empty()) return false;
        for (const auto& r :
             decide::quotas_for(mb.cfg.provider, mb.sender_domain, recipient_domain)) {
            auto it = quotas.find({r.scope, std::string(r.key)});
            if (it != quotas.end() && fn(it->second, r.per_domain)) return true;
        }
        return false;
    }
    /// Calls fn(quota, counter) for every quota counter a send from `mb` to
    /// `recipient_domain` counts against, creating the per-domain counter of
    /// a "*" recipient-domain quota on first use.
    template <class Fn>
    void for_each_quota_counter(const detail::mailbox_rt& mb, std::string_view recipient_domain,
                                Fn&& fn) {
        for_each_quota(mb, recipient_domain, [&](detail::quota_rt& q, bool per_domain) {
            fn(q, per_domain ? q.per_domain[std::string(recipient_domain)] : q.counter);
            return false;
        });
    }
    /// Picks and reserves; nullptr mailbox + retry time when none can send.
    struct pick_result {
        detail::mailbox_rt* mailbox = nullptr;
        std::optional<detail::reservation> res;
        std::optional<time_point> retry_at;
        ineligible_reason reason = ineligible_reason::none;
    };
    pick_result pick(const send_request& req, const std::string& recipient,
                     const detail::domain_counts& domains,
                     const std::unordered_set<std::string>& tried, time_point now);
    bool paused_for(const detail::mailbox_rt& mb, const std::string& pool_id) const;
    /// The store's last refusal for `key`, when it still holds at `now`.
    const detail::cap_hint* hint(const std::string& key, time_point now) const;
    bool is_paused_locked(pause_scope s, const std::string& id) const;
    void record_success(detail::mailbox_rt& mb, const detail::reservation& r);
    void record_transient_failure(detail::mailbox_rt& mb, const detail::reservation& r,
                                  time_point now);
    /// Applies what decide::on_outcome decided at `now` to memory: the
    /// reservation, the breaker and the mailbox's marks (`mb` is null when
    /// the mailbox is gone). Suppression, pauses, events and counters are
    /// the caller's.
    void apply_outcome(detail::mailbox_rt* mb, const detail::reservation& r,
                       const decide::outcome_decision& d, time_point now);

    // --- suppression (takes supp_mu)
    bool suppressed(const std::string& normalised) const;
    /// The same, for callers holding supp_mu: an address entry, a domain
    /// entry, or the keyed hash an erasure left (erasure.cpp).
    bool suppressed_locked(std::string_view normalised) const;

    // --- erasure (erasure.cpp); under supp_mu
    /// The key erased addresses are hashed under, once the workspace has
    /// one that this engine holds; "" otherwise.
    std::string erasure_key;
    /// The workspace's key object ("settings"/"erasure") disagrees with
    /// this engine's `erasure_key`: erased entries cannot be checked, so
    /// while any exist every address reads as suppressed.
    bool erasure_key_conflict = false;
    /// Erased-hash entries in `index`. Changed with supp_mu held; read
    /// without it only as a hint (erased_entries_present).
    std::atomic<std::size_t> erased_entries{0};
    /// The erased-hash value `normalised` would have under the rules in
    /// force; "" when this engine holds no key. Callers hold supp_mu.
    std::string erased_value_of(std::string_view normalised) const;
    /// Whether `normalised` is an erased person's address (its keyed hash
    /// is in the index). Takes supp_mu.
    bool erased(std::string_view normalised) const;
    /// Whether any erased-hash entry is in the index (no lock: a hint that
    /// spares events the check when nobody was ever erased).
    bool erased_entries_present() const noexcept {
        return erased_entries.load(std::memory_order_relaxed) != 0;
    }
    /// Replaces an erased person's address in `ev` (recipient, and the
    /// idempotency key naming it) with the keyed hash, so that events
    /// about refused sends never record the address again (handlers,
    /// outbox). Returns whether it changed anything.
    bool mask_erased(event& ev) const;
    /// Inserts / erases an index entry, counting erased-hash entries.
    void index_insert(suppression_kind kind, std::string_view value);
    void index_erase(suppression_kind kind, std::string_view value);
    /// Applies the workspace's key object; returns why it conflicts with
    /// this engine's key ("" when it does not). Takes supp_mu.
    std::string apply_erasure_object(const stored_object& o);
    // --- end erasure

    // --- audited mutations
    /// Appends an audit record and commits `ops` + the record in one
    /// transaction; blocks until durable, then until this engine has applied
    /// the change and every other live member has too. Throws on failure.
    /// `apply` updates memory when the change is the next one in the feed
    /// (otherwise the feed is read back); with no store change (a runtime
    /// object such as a provider) it always runs. When `ops` starts with a
    /// store_ops::record_key guarding the rest, a duplicate changes nothing:
    /// `apply` does not run and nothing is waited for. Returns the ops'
    /// results (the audit record's last).
    std::vector<op_result> mutate(const principal& who, std::string_view action,
                                  std::string_view resource_type, std::string_view resource_id,
                                  std::string before, std::string after, std::vector<store_op> ops,
                                  const std::function<void()>& apply);
    /// What mutate does once a change is committed: applies it to memory
    /// (`apply` when the change seq is the reply's alone, else the feed is
    /// read back), releases `guard`, and waits until every other live
    /// member has applied it too, so that it holds in every engine of the
    /// workspace (a member that cannot acknowledge it has stopped handing
    /// off by the time its lease runs out). Throws when reading it back
    /// fails.
    void settle(const detail::commit_reply& reply, const std::function<void()>& apply,
                own_change_scope& guard);
    /// Refuses (errc::permission_denied, audited as "access.denied") what
    /// access control or the host's authorizer does not allow.
    void authorize(const principal& who, std::string_view action, std::string_view type,
                   std::string_view id);
    /// The access-control half of authorize: an empty string when allowed,
    /// else why not.
    std::string access_refusal(const principal& who, std::string_view action,
                               std::string_view type, std::string_view id);
    /// Applies a stored access object; false when it is not one.
    bool apply_access_object(const stored_object& o);
    bool remove_access_object(const std::string& kind, const std::string& id);
    /// Same, without blocking, for automatic actions on the hot path.
    void mutate_async(std::string_view action, std::string_view resource_type,
                      std::string_view resource_id, std::string before, std::string after,
                      std::vector<store_op> ops);
    audit_record next_audit(const principal& who, std::string_view action, std::string_view type,
                            std::string_view id, std::string before, std::string after);

    // --- config application (callers hold mu)
    error_code apply_mailbox(const mailbox_config& cfg, bool keep_runtime);
    error_code apply_quota(const quota& q);

    // --- events
    /// Hands `ev` to the handlers. Unless `in_outbox` (the caller committed
    /// its outbox rows with the event's record), also writes its outbox
    /// rows, keyed by a fresh id, through the commit writer.
    void emit(event ev, bool in_outbox = false);
    /// Sets `ev`'s campaign, or its sequence, enrollment and step, from the
    /// send's idempotency key when the key is one the engine gives
    /// ("campaign:<id>:...", "seq:<sequence>:<enrollment>:<step>") and they
    /// are not set yet.
    static void name_origin(event& ev);

    // --- outbound webhooks (outbox.cpp)
    /// Endpoints by id, as stored (secrets as stored); under wh_mu, which
    /// is taken alone.
    mutable std::mutex wh_mu;
    std::map<std::string, webhook_endpoint> webhook_endpoints;
    /// !webhook_endpoints.empty(), readable without wh_mu: an event with no
    /// endpoint to go to costs no lock.
    std::atomic<bool> have_webhook_endpoints{false};
    std::unique_ptr<detail::webhook_outbox> outbox;
    /// Appends one add_webhook_delivery op per enabled endpoint admitting
    /// `ev`, under event key `key` (empty: a fresh one); returns how many.
    std::size_t add_outbox_ops(std::vector<store_op>& ops, const event& ev, std::string_view key);
    void wake_outbox();
    /// Applies a stored endpoint object (false when `o` is not one).
    bool apply_webhook_object(const stored_object& o);
    bool remove_webhook_object(const std::string& kind, const std::string& id);
    /// Puts `ep` (checked) with `extra` ops, audited as `action`.
    void store_webhook_endpoint(const principal& who, std::string_view action,
                                const webhook_endpoint& ep,
                                const std::optional<webhook_endpoint>& before,
                                std::vector<store_op> extra);
    // --- end outbound webhooks

    // --- daily counts, soft bounces and pause rules (rules.cpp)
    /// Rules (objects "rule"), resume marks ("rule.resume") and the
    /// soft-bounce policy ("settings"/"soft_bounces"); under rules_mu,
    /// which may be taken under mu but never holds while another is taken.
    mutable std::mutex rules_mu;
    std::map<std::string, pause_rule> pause_rules;
    std::map<std::string, std::string> resume_marks;  // pause object id -> resume_mark json
    soft_bounce_policy soft_bounces;
    /// !pause_rules.empty(), readable without rules_mu.
    std::atomic<bool> have_rules{false};
    /// Applies a stored rules object (false when `o` is not one).
    bool apply_rules_object(const stored_object& o);
    bool remove_rules_object(const std::string& kind, const std::string& id);
    /// The scopes a send from `mailbox` through `pool` and `provider` is
    /// counted in (the mailbox's sender domain when it is known here).
    std::vector<std::pair<count_scope, std::string>> count_targets(const std::string& mailbox,
                                                                   const std::string& pool,
                                                                   const std::string& provider);
    /// Appends the add_counts op for a send's outcome `t`, applied with the
    /// update_send just before it; nothing for outcomes not counted.
    void add_outcome_counts(std::vector<store_op>& ops, event_type t, const ledger_row& row,
                            time_point now);
    /// The add_counts op for a provider event correlated with a send
    /// through `provider` ("" when not correlated), nullopt when its type
    /// is not counted.
    std::optional<store_ops::add_counts> event_counts(const event& ev, const std::string& provider,
                                                      time_point now);
    /// The soft-bounce tally op for `ev`, when the policy is on and it is a
    /// soft bounce of suppression key `key`.
    std::optional<store_ops::tally_soft_bounce> soft_bounce_tally(const event& ev,
                                                                  const std::string& key,
                                                                  time_point now);
    /// Suppresses `key` whose tally reached the threshold, once per window
    /// across engines; true when this call stored it.
    bool suppress_soft_bounced(const std::string& key);
    /// The targets an event or a send outcome counted in, for the rules.
    std::vector<pause_target> rule_targets(const std::string& mailbox, const std::string& pool,
                                           const std::string& provider);
    /// Evaluates the rules covering each of `targets`, firing those
    /// crossed; returns what fired here. Blocking; not on the writer or
    /// sync thread.
    std::vector<rule_firing> evaluate_rules(const std::vector<pause_target>& targets);
    /// The resume mark's generation and grace start for pause object `oid`.
    std::pair<std::uint64_t, time_point> resume_state(const std::string& oid) const;
    /// Evaluates the rules on `targets` on a thread of the rules' own (a
    /// failed send's, which must not block the host's executor), started
    /// on first use.
    void queue_rule_check(std::vector<pause_target> targets);
    /// Stops that thread after the evaluation it is running.
    /// Starts the worker when rules exist and sweeps are on.
    void start_rule_sweeps();
    void run_rule_worker();
    void stop_rule_worker();
    /// Every target `check_pause_rules` evaluates: the workspace and each
    /// mailbox, pool, provider and sender domain this engine knows.
    std::vector<pause_target> all_rule_targets() const;
    std::mutex rule_work_mu;
    std::condition_variable rule_work_cv;
    std::vector<pause_target> rule_work;
    bool rule_work_stop = false;
    std::thread rule_worker;
    // --- end daily counts

    // --- sending
    void start_send(send_request req,
                    boost::asio::any_completion_handler<void(error_code, send_result)> handler);

    // --- the send queue (queue.cpp)
    std::unique_ptr<detail::send_queue> queue;
    /// What async_send would refuse before reserving anything (input,
    /// names, limits, authorisation, suppression), without sending; sets
    /// `why` and the `to` recipient's domain. Pauses are not refusals here.
    error_code check_send(send_request req, std::string& why, std::string& recipient_domain);
};

/// Resolves `params.erasure_key` when it is a reference (construction).
void resolve_erasure_key(engine::impl& s);

}  // namespace mailers
