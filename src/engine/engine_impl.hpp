// The engine's state and the decisions it makes on it. The public class in
// engine.hpp forwards here.
//
// Locking: `mu` (all decision state) before `supp_mu` (the suppression
// index). Audit records are linked into their chain by the writer, in commit
// order.
// No lock is held while waiting for the store; in-memory effects of audited
// changes are applied on the writer thread in commit order.
#pragma once

#include <atomic>
#include <boost/asio/strand.hpp>
#include <mailers/engine.hpp>
#include <map>
#include <mutex>
#include <random>
#include <shared_mutex>
#include <unordered_map>
#include <unordered_set>

#include "core/rate_counter.hpp"
#include "core/schedule.hpp"
#include "engine/commit_writer.hpp"
#include "suppression/index.hpp"

namespace mailers {

namespace detail {

struct mailbox_rt {
    mailbox_config cfg;
    zone_ptr zone = nullptr;
    std::string sender_domain;            // normalised From domain
    std::vector<effective_limit> limits;  // cfg.limits, without warm-up
    std::chrono::seconds horizon{86400};
    rate_counter counter;
    time_point gap_until{};
    time_point throttled_until{};
    time_point exhausted_until{};
    bool auth_failed = false;
    // circuit breaker
    health_state health = health_state::closed;
    std::uint32_t consecutive_failures = 0;
    time_point open_until{};
    std::chrono::seconds cool_down{0};
    bool probe_in_flight = false;
};

struct quota_rt {
    quota q;
    zone_ptr zone = nullptr;
    std::vector<effective_limit> limits;
    std::chrono::seconds horizon{86400};
    rate_counter counter;  // for specific keys
    // key "*" on recipient_domain: one counter per receiving domain
    std::unordered_map<std::string, rate_counter> per_domain;
};

/// A pool with its members resolved and its rotation order precomputed, so
/// a pick checks mailboxes one by one in rotation order and usually stops
/// at the first: the cost of a send does not grow with the pool's size.
struct pool_rt {
    pool_config cfg;
    std::vector<mailbox_rt*> members;        // cfg.mailboxes, resolved
    std::vector<std::uint32_t> schedule;     // weighted: smooth weighted round-robin order
    std::vector<std::uint32_t> by_priority;  // priority: members by priority, stable
    std::size_t cursor = 0;
    std::unordered_map<std::string, std::string> sticky;  // recipient -> mailbox
};

/// Re-resolves members and recomputes the rotation order (after a pool or
/// a member mailbox changes).
void rebuild(pool_rt& p, std::unordered_map<std::string, mailbox_rt>& mailboxes);

/// What a reservation touched, so it can be released exactly.
struct reservation {
    std::string mailbox;
    time_point at{};
    std::vector<std::pair<quota_rt*, rate_counter*>> quota_counters;
    bool probe = false;
};

struct eligibility {
    ineligible_reason reason = ineligible_reason::none;
    std::optional<time_point> next;  // when it may become eligible, if known
};

}  // namespace detail

struct engine::impl : std::enable_shared_from_this<engine::impl> {
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
    std::unordered_map<std::string, std::shared_ptr<provider_transport>> providers;
    std::unordered_map<std::string, std::uint64_t> idem_keys;
    std::unordered_map<std::uint64_t, ledger_row> in_flight;
    std::uint64_t next_send_id = 1;
    std::mt19937_64 rng;
    engine_stats counters;

    mutable std::shared_mutex supp_mu;
    detail::suppression_index index;

    std::mutex ev_mu;
    std::vector<std::pair<std::uint64_t, std::function<void(const event&)>>> handlers;
    std::uint64_t next_handler = 1;
    std::atomic<bool> have_handlers{false};

    // --- start-up
    void load();
    /// Runs `fn` on the writer thread, after every write queued before it,
    /// and waits; rethrows what `fn` throws. Blocks the calling thread.
    void with_store(const std::function<void(store&)>& fn) const;

    // --- decisions (callers hold mu)
    detail::eligibility check(detail::mailbox_rt& mb, const std::string& pool_id,
                              std::string_view recipient_domain, time_point now);
    std::optional<detail::reservation> reserve(detail::mailbox_rt& mb,
                                               std::string_view recipient_domain, time_point now);
    void release(const detail::reservation& r);
    /// Calls fn(quota, per_domain) for every quota a send from `mb` to
    /// `recipient_domain` counts against, in a fixed order, until fn returns
    /// true; `per_domain` is set for a "*" recipient-domain quota, which
    /// counts each receiving domain apart. Returns whether fn stopped it.
    template <class Fn>
    bool for_each_quota(const detail::mailbox_rt& mb, std::string_view recipient_domain, Fn&& fn) {
        if (quotas.empty()) return false;
        auto one = [&](quota_scope scope, const std::string& key) {
            auto it = quotas.find({scope, key});
            return it != quotas.end() && fn(it->second, key == "*");
        };
        return one(quota_scope::provider, mb.cfg.provider) ||
               one(quota_scope::sender_domain, mb.sender_domain) ||
               (!recipient_domain.empty() &&
                (one(quota_scope::recipient_domain, std::string(recipient_domain)) ||
                 one(quota_scope::recipient_domain, "*")));
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
                     std::string_view recipient_domain,
                     const std::unordered_set<std::string>& tried, time_point now);
    bool paused_for(const detail::mailbox_rt& mb, const std::string& pool_id) const;
    bool is_paused_locked(pause_scope s, const std::string& id) const;
    void record_success(detail::mailbox_rt& mb, const detail::reservation& r);
    void record_transient_failure(detail::mailbox_rt& mb, const detail::reservation& r,
                                  time_point now);

    // --- suppression (takes supp_mu)
    bool suppressed(const std::string& normalised) const;

    // --- audited mutations
    /// Authorises, appends an audit record and commits `ops` + the record
    /// in one transaction; blocks until durable. Throws on failure.
    /// `apply` updates the in-memory state; it runs on the writer thread
    /// right after the commit succeeds, in commit order, so memory and store
    /// agree even when two changes to the same thing race.
    void mutate(const principal& who, std::string_view action, std::string_view resource_type,
                std::string_view resource_id, std::string before, std::string after,
                std::vector<store_op> ops, const std::function<void()>& apply);
    void authorize(const principal& who, std::string_view action, std::string_view type,
                   std::string_view id) const;
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
    void emit(event ev);

    // --- sending
    void start_send(send_request req,
                    boost::asio::any_completion_handler<void(error_code, send_result)> handler);
};

}  // namespace mailers
