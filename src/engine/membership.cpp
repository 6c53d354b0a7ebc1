// Membership and the change feed: how engines in several processes keep one
// workspace's memory in step.
//
// Each engine is a member of its workspace with a lease in the store. A
// background thread reads the change feed (objects and suppressions that
// any process committed), applies it in change order and acknowledges the
// newest change applied when it renews the lease. An audited change returns
// only once every other live member has acknowledged it, so "once
// suppress() / pause() returns, no process hands off a matching send" holds
// across processes at no cost per send: a hand-off checks memory, under the
// lock the feed is applied under, and only while this member's lease is
// known to be valid (`fence_until`). A member that cannot renew stops
// handing off before its lease runs out in the store, which is when the
// others stop waiting for it.
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <thread>

#include "decide/caps.hpp"
#include "engine/engine_impl.hpp"
#include "engine/queue.hpp"
#include "engine/serialize.hpp"

namespace mailers {

using namespace detail;

std::function<void()> detail::own_change_applied_hook;

namespace {

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string host_name() {
    char buf[256] = {};
    if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
    return buf;
}

member_info this_member(const std::string& name) {
    member_info info;
    info.host = host_name();
    info.pid = static_cast<std::int64_t>(::getpid());
    info.name = name;
    return info;
}

// How much of a lease a member uses before it stops handing off: the rest
// covers the time a renewal takes to reach the store and clock-rate drift.
constexpr double lease_use = 0.75;

// The scope and key a quota's object id names (quota_object_id), for a
// quota whose JSON cannot be read.
std::optional<std::pair<quota_scope, std::string>> quota_of_id(std::string_view id) {
    const auto colon = id.find(':');
    if (colon == std::string_view::npos) return std::nullopt;
    for (auto scope :
         {quota_scope::provider, quota_scope::sender_domain, quota_scope::recipient_domain})
        if (to_string(scope) == id.substr(0, colon))
            return std::pair{scope, std::string(id.substr(colon + 1))};
    return std::nullopt;
}

// Until when a lease renewed (or granted) by a request sent at `sent` lets
// this member hand off.
std::int64_t fence_after(std::int64_t sent, std::chrono::milliseconds lease) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(lease).count();
    return sent + static_cast<std::int64_t>(static_cast<double>(ns) * lease_use);
}

}  // namespace

bool engine::impl::fenced() const noexcept {
    return steady_ns() >= fence_until.load(std::memory_order_acquire);
}

void engine::impl::start_membership() {
    const auto t0 = steady_ns();
    member =
        params.storage->attach(params.workspace, this_member(params.member_name), params.lease);
    fence_until = fence_after(t0, params.lease);
    recover_dead();
}

void engine::impl::stop_membership() {
    {
        std::lock_guard lock(sync_mu);
        if (sync_stop && !sync_thread.joinable()) return;
        sync_stop = true;
    }
    sync_cv.notify_all();
    if (sync_thread.joinable() && sync_thread.get_id() != std::this_thread::get_id())
        sync_thread.join();
    // Hand-offs end with the lease.
    fence_until = 0;
    if (auto m = member.exchange(0)) {
        try {
            params.storage->detach(params.workspace, m);
        } catch (const std::exception& e) {
            params.log.log(log_level::warning,
                           fmt::format("could not leave the workspace cleanly: {}", e.what()));
        }
    }
}

void engine::impl::renew_or_reattach() {
    const auto t0 = steady_ns();
    auto m = member.load();
    if (m != 0 && params.storage->renew(params.workspace, m, params.lease, applied_seq.load())) {
        fence_until = fence_after(t0, params.lease);
        return;
    }
    // The lease ran out (a long pause, the store unreachable): others have
    // stopped waiting for us, so memory may be behind. Stop handing off,
    // attach anew, catch up, and only then take hand-offs up again.
    fence_until = 0;
    params.log.log(log_level::warning, "workspace lease lost; rejoining");
    const auto t1 = steady_ns();
    m = params.storage->attach(params.workspace, this_member(params.member_name), params.lease);
    member = m;
    pull_changes();
    if (params.storage->renew(params.workspace, m, params.lease, applied_seq.load()))
        fence_until = fence_after(t1, params.lease);
}

void engine::impl::recover_dead() {
    const auto self = member.load();
    const auto me = host_name();
    const auto pid = static_cast<std::int64_t>(::getpid());
    std::vector<std::uint64_t> dead;
    for (const auto& m : params.storage->members(params.workspace)) {
        if (m.id == self || m.info.host != me || m.info.pid == pid || m.info.pid <= 0) continue;
        // A process of this host that no longer exists cannot hand anything
        // off: its sends need not wait for its lease to run out.
        if (::kill(static_cast<pid_t>(m.info.pid), 0) != 0 && errno == ESRCH) dead.push_back(m.id);
    }
    auto n = params.storage->recover(params.workspace, dead, clk->now(),
                                     "engine stopped while the send was in flight");
    if (n > 0)
        params.log.log(
            log_level::warning,
            fmt::format("{} sends interrupted by a stopped process recorded as unknown", n));
}

void engine::impl::apply_changes(const change_set& cs) {
    bool sequence_resumed = false;
    {
        std::lock_guard lock(mu);
        bool pools_dirty = false;
        for (const auto& o : cs.objects) {
            if (o.kind == "mailbox") {
                // A mailbox whose new configuration cannot be read stops
                // sending here: its old caps may be above the new ones.
                auto m = mailbox_from_json(o.json);
                pools_dirty = true;
                if (!m || apply_mailbox(*m, true)) {
                    mailboxes.erase(o.id);
                    params.log.log(
                        log_level::error,
                        fmt::format("mailbox '{}' in the store cannot be read; it sends nothing "
                                    "from this process until it is put again",
                                    o.id));
                    continue;
                }
            } else if (o.kind == "pool") {
                // Its old rules may not be the new ones: it sends nothing.
                auto p = pool_from_json(o.json);
                if (!p) {
                    auto& rt = pools[o.id];
                    rt.cfg.id = o.id;
                    rt.unreadable = true;
                    params.log.log(
                        log_level::error,
                        fmt::format("pool '{}' in the store cannot be read; nothing is sent "
                                    "through it from this process until it is put again",
                                    o.id));
                    continue;
                }
                auto& rt = pools[p->id];
                rt.cfg = *p;
                rt.unreadable = false;
                pools_dirty = true;
            } else if (o.kind == "quota") {
                auto q = quota_from_json(o.json);
                if (q && !apply_quota(*q)) continue;
                // Its old limits may be above the new ones, which are
                // unknown: nothing it counts is sent.
                auto which = q ? std::optional(std::pair{q->scope, q->key}) : quota_of_id(o.id);
                if (which) {
                    auto& rt = quotas[*which];
                    rt.q.scope = which->first;
                    rt.q.key = which->second;
                    rt.cap_key = decide::quota_key(which->first, which->second);
                    rt.object_id = o.id;
                    rt.unreadable = true;
                }
                params.log.log(
                    log_level::error,
                    fmt::format("quota '{}' in the store cannot be read; nothing it counts is sent "
                                "from this process until it is put again",
                                o.id));
            } else if (o.kind == "pause") {
                pauses[o.id] = o.json;
            } else if (o.kind == "sequence.pause") {
                sequence_pauses[o.id] = o.json;
            } else if (o.kind == "campaign") {
                apply_campaign_object(o);
            } else if (o.kind == "provider") {
                apply_provider_object(o);
            } else if (apply_access_object(o)) {
            } else if (o.kind == "sequence") {
                auto c = sequence_config_from_json(o.json);
                std::optional<sequence> s;
                sequence_error err;
                if (c) {
                    if (auto r = sequence::compile(std::move(*c), &err)) s = std::move(*r);
                }
                if (!s)
                    params.log.log(log_level::error,
                                   fmt::format("sequence '{}' in the store cannot be read; no step "
                                               "of it is planned from this process until it is "
                                               "put again",
                                               o.id));
                sequences.insert_or_assign(o.id, std::move(s));
            } else if (o.kind == "settings" && o.id == "suppression") {
                apply_suppression_settings(o);
            } else if (o.kind == "settings" && o.id == "erasure") {
                if (auto why = apply_erasure_object(o); !why.empty())
                    params.log.log(log_level::error,
                                   why + "; while it lasts every address reads as suppressed "
                                         "here once an address is erased");
            } else if (apply_webhook_object(o)) {
            } else if (apply_rules_object(o)) {
            }
        }
        for (const auto& [kind, id] : cs.deleted_objects) {
            if (kind == "mailbox") {
                mailboxes.erase(id);
                pools_dirty = true;
            } else if (kind == "pool") {
                pools.erase(id);
            } else if (kind == "quota") {
                std::erase_if(quotas, [&](const auto& q) { return q.second.object_id == id; });
            } else if (kind == "pause") {
                pauses.erase(id);
            } else if (kind == "sequence.pause") {
                // Its held steps are made due by the engine that resumed it.
                sequence_pauses.erase(id);
                sequence_resumed = true;
            } else if (kind == "campaign") {
                campaigns.erase(id);
            } else if (kind == "provider") {
                remove_provider_object(id);
            } else if (kind == "sequence") {
                sequences.erase(id);
            } else if (!remove_webhook_object(kind, id) && !remove_rules_object(kind, id)) {
                remove_access_object(kind, id);
            }
        }
        if (pools_dirty)
            for (auto& [id, p] : pools) rebuild(p, mailboxes);
        if (!cs.objects.empty() || !cs.deleted_objects.empty()) cap_hints.clear();
        if (!cs.suppressions.empty() || !cs.deleted_suppressions.empty()) {
            std::unique_lock slock(supp_mu);
            for (const auto& e : cs.suppressions) index_insert(e.kind, e.value);
            for (const auto& [kind, value] : cs.deleted_suppressions) index_erase(kind, value);
        }
        if (cs.seq > applied_seq.load()) applied_seq = cs.seq;
    }
    if (sequence_resumed && queue) queue->wake();
}

void engine::impl::pull_changes() {
    std::lock_guard feed(feed_mu);
    auto cs = params.storage->changes_since(params.workspace, applied_seq.load());
    if (cs.seq > applied_seq.load() || !cs.empty()) apply_changes(cs);
}

void engine::impl::catch_up(std::uint64_t seq, const std::function<void()>& apply_own) {
    if (seq == 0) return;
    std::unique_lock feed(feed_mu);
    const auto have = applied_seq.load();
    if (have >= seq) return;
    if (have + 1 == seq && apply_own) {
        // Nothing else changed in between: apply our own change as
        // committed instead of reading it back (an import may be millions
        // of entries). apply_own takes the locks it needs, so memory holds
        // the change before applied_seq can name it: hand-offs wait until
        // both agree (own_seq_applying).
        // If apply_own throws, applied_seq stays and the feed reads it back.
        own_change_applying publish(*this, seq);
        apply_own();
        if (own_change_applied_hook) own_change_applied_hook();
        publish.applied = seq;
        return;
    }
    auto cs = params.storage->changes_since(params.workspace, have);
    apply_changes(cs);
}

void engine::impl::wait_acked(std::uint64_t seq) {
    if (seq == 0) return;
    const auto self = member.load();
    const auto poll = std::max(std::chrono::milliseconds(1), params.sync_interval / 4);
    for (;;) {
        bool behind = false;
        for (const auto& m : params.storage->members(params.workspace))
            if (m.id != self && m.live && m.acked_seq < seq) behind = true;
        if (!behind) return;
        // Others ack when they renew; a nudge would only help our own.
        std::this_thread::sleep_for(poll);
    }
}

void engine::impl::sync_loop() {
    using namespace std::chrono;
    auto last_renew = steady_clock::now();
    auto last_recover = steady_clock::now();
    auto last_purge = steady_clock::time_point{};
    std::uint64_t acked = applied_seq.load();
    std::unique_lock lock(sync_mu);
    while (!sync_stop) {
        sync_cv.wait_for(lock, params.sync_interval, [&] { return sync_stop; });
        if (sync_stop) break;
        lock.unlock();
        try {
            if (own_changes.load() == 0) pull_changes();
            const auto now = steady_clock::now();
            // Renew well before the lease runs out, and at once when there
            // is something new to acknowledge: a suppress() elsewhere waits
            // for it.
            if (applied_seq.load() != acked || now - last_renew >= params.lease / 4 || fenced()) {
                renew_or_reattach();
                acked = applied_seq.load();
                last_renew = now;
            }
            if (now - last_recover >= params.lease / 2) {
                recover_dead();
                last_recover = now;
            }
            if (now - last_purge >= hours(1)) {
                params.storage->purge_cap_uses(params.workspace,
                                               clk->now() - duration_cast<duration>(hours(24 * 8)));
                last_purge = now;
                // Expired keys are already free to be recorded again; this
                // only keeps the table as small as the retention.
                params.storage->purge_keys(params.workspace, clk->now());
            }
        } catch (const std::exception& e) {
            params.log.log(log_level::error, fmt::format("workspace sync failed: {}", e.what()));
        }
        lock.lock();
    }
}

}  // namespace mailers
