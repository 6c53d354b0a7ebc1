// read_workspace_status: what `mailers status` shows, from the store's
// point reads. The state is put into an engine's own structures with the
// code an engine's start uses (apply_mailbox, apply_quota, the pauses, the
// counters of recent sends), and each mailbox's status comes from the
// engine's status_of, so the two cannot drift apart.
#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <mailers/store.hpp>
#include <mailers/workspace_status.hpp>

#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"

namespace mailers {

namespace {

// The engine's state, without its start: no member, no sync thread, no
// suppression index. Its writer thread runs idle until it goes.
struct offline_engine {
    boost::asio::io_context io;
    engine::impl state;

    offline_engine(store& st, std::string_view workspace, std::string_view erasure_key)
        : state(io.get_executor(), params(st, workspace, erasure_key)) {}

    static engine_params params(store& st, std::string_view workspace,
                                std::string_view erasure_key) {
        engine_params p;
        // Not owned: the caller's store outlives this.
        p.storage = std::shared_ptr<store>(&st, [](store*) {});
        p.workspace = std::string(workspace);
        p.erasure_key = std::string(erasure_key);
        return p;
    }
};

// How far back the counters must reach for status_of to count what an
// engine started at `now` counts: the longest window of a mailbox or quota
// (a calendar day may last 25 hours) and the longest minimum gap, bounded
// by what an engine's start reads.
time_point counted_from(const engine::impl& s, time_point now) {
    std::chrono::seconds reach{86400};
    for (const auto& [id, mb] : s.mailboxes) {
        for (const auto& l : mb.limits) reach = std::max(reach, l.length);
        reach = std::max(reach,
                         std::chrono::ceil<std::chrono::seconds>(mb.cfg.min_gap + mb.cfg.jitter));
    }
    for (const auto& [key, q] : s.quotas)
        for (const auto& l : q.limits) reach = std::max(reach, l.length);
    reach = std::min(reach, detail::max_window_length);
    return now - std::chrono::duration_cast<duration>(reach + std::chrono::hours(2));
}

}  // namespace

std::vector<std::string> mailboxes_held(const pause_target& target,
                                        std::span<const mailbox_config> mailboxes,
                                        std::span<const pool_config> pools) {
    std::vector<std::string> out;
    if (target.scope == pause_scope::pool) {
        for (const auto& p : pools)
            if (p.id == target.id) return p.mailboxes;
        return out;
    }
    for (const auto& m : mailboxes) {
        if (m.state == mailbox_state::retired) continue;
        bool held = false;
        switch (target.scope) {
            case pause_scope::workspace:
                held = true;
                break;
            case pause_scope::mailbox:
                held = m.id == target.id;
                break;
            case pause_scope::provider:
                held = m.provider == target.id;
                break;
            case pause_scope::sender_domain: {
                const auto n = normalise_domain(m.from.domain);
                const std::string& d = n ? *n : m.from.domain;
                held = d == target.id || d.ends_with("." + target.id);
                break;
            }
            case pause_scope::pool:
                break;
        }
        if (held) out.push_back(m.id);
    }
    return out;
}

std::optional<workspace_status> read_workspace_status(store& st, std::string_view workspace,
                                                      time_point now,
                                                      std::string_view erasure_key) {
    offline_engine eng(st, workspace, erasure_key);
    auto& s = eng.state;
    // As an engine's start refuses a key that does not fit the workspace,
    // or none where its hosts hold it.
    resolve_erasure_key(s);
    if (auto o = st.find_object(workspace, "settings", "erasure"))
        if (auto why = s.apply_erasure_object(*o); !why.empty())
            detail::fail(errc::invalid_argument, std::move(why));

    // Entries stored under older folding rules are re-keyed by an engine's
    // start, which may merge some: only an engine can count them then.
    store_snapshot settings;
    if (auto o = st.find_object(workspace, "settings", "suppression"))
        settings.objects.push_back(std::move(*o));
    if (!s.suppression_settings_current(settings)) return std::nullopt;

    std::vector<pool_config> pools;
    {
        std::lock_guard lock(s.mu);
        bool readable = true;
        st.for_each_object(workspace, "mailbox", [&](const stored_object& o) {
            auto m = detail::mailbox_from_json(o.json);
            readable = readable && m && !s.apply_mailbox(*m, false);
        });
        st.for_each_object(workspace, "pool", [&](const stored_object& o) {
            auto p = detail::pool_from_json(o.json);
            if (p) pools.push_back(std::move(*p));
            readable = readable && p;
        });
        st.for_each_object(workspace, "quota", [&](const stored_object& o) {
            auto q = detail::quota_from_json(o.json);
            readable = readable && q && !s.apply_quota(*q);
        });
        if (!readable) return std::nullopt;
        st.for_each_object(workspace, "pause",
                           [&](const stored_object& o) { s.pauses[o.id] = o.json; });
    }

    // The sends an engine started now would count within the windows that
    // status_of looks at; older ones count in none of them. Counted a batch
    // at a time, so memory stays bounded however many there are.
    workspace_status out;
    {
        std::lock_guard lock(s.mu);
        constexpr std::size_t batch = 4096;
        std::vector<ledger_row> sends;
        sends.reserve(batch);
        st.for_each_send(workspace, counted_from(s, now), now + std::chrono::hours(24 * 366 * 50),
                         [&](const ledger_row& r) {
                             if (r.state == send_state::failed) return;
                             sends.push_back(r);
                             if (sends.size() < batch) return;
                             s.count_recent_sends(sends);
                             sends.clear();
                         });
        s.count_recent_sends(sends);
        for (const auto& [id, mb] : s.mailboxes) out.mailboxes.push_back(mb.cfg);
        std::sort(out.mailboxes.begin(), out.mailboxes.end(),
                  [](const auto& a, const auto& b) { return a.id < b.id; });
        for (const auto& m : out.mailboxes)
            out.statuses.push_back(s.status_of(s.mailboxes.at(m.id), now));
        for (auto& p : s.pause_list()) {
            auto held = mailboxes_held(p.target, out.mailboxes, pools);
            out.pauses.push_back({std::move(p), std::move(held)});
        }
    }
    out.suppressions = st.suppression_count(workspace);
    return out;
}

}  // namespace mailers
