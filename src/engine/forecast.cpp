// The forecast: the engine's own scheduling, run on a simulated clock
// against a private copy of the workspace (mailers/forecast.hpp).
//
// Nothing here decides when or from where a message goes: a private engine
// does, with the code the workspace's engines run. This file only builds
// that engine's world, moves its clock from one due time to the next, and
// reads the plan from its store afterwards. The workspace's store is only
// read.
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <charconv>
#include <mailers/forecast.hpp>
#include <mailers/sequence.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/transports/null_transport.hpp>
#include <map>
#include <set>
#include <sstream>

#include "engine/engine_impl.hpp"
#include "engine/enrollments.hpp"
#include "engine/queue.hpp"
#include "store/forwarding_store.hpp"

namespace mailers {

using namespace detail;

namespace {

constexpr std::string_view existing_prefix = "existing:";

/// The private store: the workspace's copy in memory, and once `seeded`,
/// the workspace's recent sends in what an engine loads, so its counters
/// (caps, gaps, sticky senders) start where the workspace's stand.
class seeded_store final : public forwarding_store {
public:
    seeded_store(std::shared_ptr<store> inner, std::vector<ledger_row> recent)
        : forwarding_store(std::move(inner)), recent_(std::move(recent)) {}

    bool seeded = false;

    store_snapshot load(std::string_view ws, time_point since) override {
        return with_recent(inner_->load(ws, since));
    }
    store_snapshot load_keys(
        std::string_view ws, time_point since,
        const std::function<void(suppression_kind, std::string_view)>& key) override {
        return with_recent(inner_->load_keys(ws, since, key));
    }

private:
    store_snapshot with_recent(store_snapshot s) const {
        if (seeded) s.recent_sends.insert(s.recent_sends.end(), recent_.begin(), recent_.end());
        return s;
    }
    std::vector<ledger_row> recent_;
};

/// The normalised `to` of a queued send ("" when unreadable).
std::string recipient_of(const queued_send& q, const suppression_options& opts) {
    try {
        auto r = engine::queued_request(q);
        if (auto n = normalise_address(r.to.addr_spec(), opts)) return *n;
    } catch (const exception&) {
    }
    return {};
}

/// The 1-based step a "sequence:<id>/<step>" origin names; 0 otherwise.
std::uint32_t step_of(std::string_view origin) {
    if (!origin.starts_with("sequence:")) return 0;
    const auto slash = origin.rfind('/');
    std::uint32_t step = 0;
    if (slash == std::string_view::npos ||
        std::from_chars(origin.data() + slash + 1, origin.data() + origin.size(), step).ec !=
            std::errc{})
        return 0;
    return step;
}

}  // namespace

forecast_plan engine::forecast(const forecast_request& req) const {
    auto& s = *impl_;
    if (req.horizon <= std::chrono::hours::zero())
        fail(errc::invalid_argument, "a forecast needs a horizon above zero");
    if (!req.contacts.empty() && req.sequence_id.empty())
        fail(errc::invalid_argument, "contacts to forecast need a sequence id");
    if (!req.follow.empty() && !req.include_queue)
        fail(errc::invalid_argument, "following queued sends needs include_queue");
    const principal who{"forecast", "Forecast"};
    const auto start = s.clk->now();
    forecast_plan plan;
    plan.start = start;
    plan.end = start + std::chrono::duration_cast<duration>(req.horizon);

    // What the workspace holds now, read once.
    std::vector<ledger_row> recent;
    std::vector<queued_send> queued;
    std::vector<pause_info> paused = pauses();
    std::vector<std::string> paused_sequences;
    {
        std::lock_guard lock(s.mu);
        for (const auto& [id, why] : s.sequence_pauses) paused_sequences.push_back(id);
    }
    std::stringstream suppressions;
    export_suppressions(suppressions);
    s.with_store([&](store& st) {
        // As far back as the engine's own load reaches.
        st.for_each_send(s.params.workspace, start - std::chrono::hours(24 * 7 + 2),
                         start + std::chrono::hours(24), [&](const ledger_row& r) {
                             if (r.state == send_state::failed) return;
                             recent.push_back(r);
                             // Counted against caps and gaps, but not the
                             // step of an enrollment the private store numbers
                             // anew (see the queue's copy below).
                             auto& key = recent.back().idempotency_key;
                             if (key.starts_with("seq:"))
                                 key = fmt::format("{}{}", existing_prefix, key);
                         });
        if (req.include_queue)
            st.for_each_queued(s.params.workspace, {}, [&](const queued_send& q) {
                if (q.state == queue_state::waiting || q.state == queue_state::claimed)
                    queued.push_back(q);
            });
    });

    boost::asio::io_context ioc;
    auto transport = std::make_shared<null_transport>(ioc.get_executor());
    auto clock = std::make_shared<manual_clock>(start);
    auto st = std::make_shared<seeded_store>(open_sqlite_store({":memory:", open_mode::create}),
                                             std::move(recent));
    std::set<std::string> providers;
    for (const auto& m : mailboxes()) providers.insert(m.provider);
    auto make = [&] {
        engine_params p;
        p.workspace = s.params.workspace;
        p.storage = st;
        p.clock = clock;
        p.suppression = suppression_rules();
        p.random_seed = s.params.random_seed;
        p.max_message_size = s.params.max_message_size;
        p.message_id_domain = s.params.message_id_domain;
        p.member_name = "forecast";
        p.unsubscribe = s.params.unsubscribe;
        p.queue_poll_interval = std::chrono::milliseconds(1);
        p.queue_in_flight = s.params.queue_in_flight;
        p.queue_recheck = s.params.queue_recheck;
        p.queue_max_backoff = s.params.queue_max_backoff;
        auto e = std::make_unique<engine>(ioc.get_executor(), std::move(p));
        for (const auto& id : providers) e->add_provider(who, id, transport);
        return e;
    };
    {
        // The configuration, through the API that checks it, on an engine
        // that loaded nothing yet.
        auto seed = make();
        for (const auto& m : mailboxes()) seed->upsert_mailbox(who, m);
        for (const auto& p : pools()) seed->upsert_pool(who, p);
        for (const auto& q : quotas()) seed->set_quota(who, q);
        for (const auto& c : sequences()) seed->upsert_sequence(who, c);
        for (const auto& p : paused) seed->pause(who, p.target, p.reason);
        for (const auto& id : paused_sequences) seed->pause_sequence(who, id);
        if (suppression_count() > 0) seed->import_suppressions(who, suppressions, "forecast");
        seed->flush();
    }
    {
        // The queue's waiting sends as plain sends: the enrollments of
        // sequence steps are not copied, so a step's item must not look
        // like one, by its origin or by its key: the private store numbers
        // enrollments from 1 again, and a copied "seq:<id>:<n>:<step>" key
        // would stand for the step of the forecast's own enrollment n.
        std::vector<store_op> ops;
        for (auto q : queued) {
            if (parse_step_key(q)) {
                q.idempotency_key = fmt::format("{}{}", existing_prefix, q.idempotency_key);
                auto r = engine::queued_request(q);
                r.idempotency_key = fmt::format("{}{}", existing_prefix, r.idempotency_key);
                q.request = encode_request(r);
            }
            q.origin = fmt::format("{}{}", existing_prefix, q.origin);
            q.not_before = std::max(q.due_at, q.not_before);
            ops.push_back(store_ops::enqueue{std::move(q)});
        }
        if (!ops.empty()) st->commit(s.params.workspace, ops);
    }
    st->seeded = true;
    auto sim = make();
    auto& ws = s.params.workspace;

    // The request, as the host would make it.
    std::optional<campaign_info> campaign;
    std::set<std::string> campaign_queued;
    if (req.campaign) campaign = sim->start_campaign(who, *req.campaign);
    for (const auto& c : req.contacts) {
        enroll_options o;
        o.variables = c.variables;
        o.owner = c.owner;
        try {
            sim->enroll(who, req.sequence_id, c.to, o);
        } catch (const exception& e) {
            if (e.code() != errc::suppressed) throw;
            forecast_unsent u;
            u.recipient = c.to.addr_spec();
            u.origin = fmt::format("sequence:{}/1", req.sequence_id);
            u.step = 1;
            u.reason = "suppressed";
            u.detail = e.what();
            plan.unsent.push_back(std::move(u));
        }
    }

    // Quiet: nothing claimed, nothing due, no step due to be planned.
    auto quiet = [&] {
        auto c = sim->queue_counts();
        return c.claimed == 0 && (!c.next_due || *c.next_due > clock->now()) &&
               st->due_enrollments(ws, clock->now(), 1).empty();
    };
    // A healthy private engine settles within milliseconds of real time;
    // one that does not (a store failure) fails the forecast rather than
    // hang it.
    auto settle = [&] {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::minutes(1);
        for (int round = 0; round < 2; ++round) {
            ioc.restart();
            while (!quiet()) {
                if (std::chrono::steady_clock::now() > give_up)
                    fail(errc::store_error, "the forecast's simulation stopped making progress");
                ioc.run_for(std::chrono::milliseconds(1));
                if (ioc.stopped()) ioc.restart();
            }
        }
    };
    const auto followed = fmt::format("{}{}", existing_prefix, req.follow);
    auto request_done = [&] {
        if (campaign && !sim->campaign_progress(campaign->id).finished()) return false;
        if (!req.follow.empty()) {
            // Only the items not yet ended: the scan shrinks as they go.
            bool waits = false;
            for (auto state : {queue_state::waiting, queue_state::claimed}) {
                queue_filter f;
                f.origin_prefix = followed;
                f.state = state;
                st->for_each_queued(ws, f,
                                    [&](const queued_send& q) { waits |= q.origin == followed; });
            }
            if (waits) return false;
        }
        enrollment_filter f;
        f.state = enrollment_state::active;
        f.limit = 1;
        return sim->enrollments(f).empty();
    };
    for (;;) {
        settle();
        if (request_done()) break;
        std::optional<time_point> next = sim->queue_counts().next_due;
        if (auto due = st->due_enrollments(ws, plan.end, 1); !due.empty() && due.front().next_due)
            if (!next || *due.front().next_due < *next) next = due.front().next_due;
        if (!next || *next > plan.end) break;
        clock->advance(std::max<duration>(*next - clock->now(), std::chrono::seconds(1)));
    }
    sim->flush();

    // The plan, from what the private engine did.
    std::vector<queued_send> items;
    st->for_each_queued(ws, {}, [&](const queued_send& q) { items.push_back(q); });
    for (auto& q : items) {
        const bool existing = q.origin.starts_with(existing_prefix);
        if (existing) q.origin.erase(0, existing_prefix.size());
        const bool follows = existing && !req.follow.empty() && q.origin == req.follow;
        if (campaign && q.origin == "campaign:" + campaign->id)
            campaign_queued.insert(q.idempotency_key);
        std::optional<ledger_row> row;
        if (q.send_id) row = st->find_send(ws, q.send_id);
        if (q.state == queue_state::done && row && row->state != send_state::failed &&
            !q.detail.starts_with("suppressed")) {
            planned_send p;
            p.at = row->reserved_at;
            p.due = q.not_before;
            p.mailbox = row->mailbox;
            p.recipient = row->recipient;
            p.origin = q.origin;
            p.step = step_of(q.origin);
            p.bound = q.wait_reason;
            p.existing = existing;
            plan.sends.push_back(std::move(p));
            continue;
        }
        // A step's item cancelled for a newer plan of its step is no
        // message; one that ended unsent is reported from its enrollment.
        if ((existing && !follows) || q.state == queue_state::cancelled) continue;
        if (q.state == queue_state::done && step_of(q.origin) > 0) continue;
        forecast_unsent u;
        u.recipient = row ? row->recipient : recipient_of(q, s.suppression_opts());
        u.origin = q.origin;
        u.step = step_of(q.origin);
        u.detail = q.detail;
        u.waiting = q.state != queue_state::done;
        if (!u.waiting)
            u.reason = q.detail.starts_with("suppressed") ? "suppressed" : "failed";
        else if (q.wait_reason.empty() && q.not_before > plan.end)
            u.reason = "not due";
        else
            u.reason = q.wait_reason.empty() ? "waiting" : q.wait_reason;
        plan.unsent.push_back(std::move(u));
    }
    // Enrollments whose next step is not in the queue: not yet due, held
    // (paused, unresolved), or ended without it (stopped, failed).
    for (const auto& e : sim->enrollments()) {
        if (e.state == enrollment_state::completed ||
            (e.state == enrollment_state::active && !e.queue_key.empty()))
            continue;
        forecast_unsent u;
        u.recipient = e.address;
        u.step = e.step + 1;
        u.origin = fmt::format("sequence:{}/{}", e.sequence_id, u.step);
        u.detail = e.detail;
        u.waiting = e.state == enrollment_state::active || e.state == enrollment_state::paused ||
                    e.state == enrollment_state::unresolved;
        u.reason = e.state == enrollment_state::active    ? "not due"
                   : e.state == enrollment_state::stopped ? std::string(to_string(e.stop_reason))
                                                          : std::string(to_string(e.state));
        plan.unsent.push_back(std::move(u));
    }
    if (campaign)
        for (const auto& r : req.campaign->recipients) {
            auto key = normalise_address(r.to.addr_spec(), s.suppression_opts());
            if (!key || campaign_queued.count(fmt::format("campaign:{}:{}", campaign->id, *key)))
                continue;
            forecast_unsent u;
            u.recipient = *key;
            u.origin = "campaign:" + campaign->id;
            u.reason = "suppressed";
            u.detail = "suppressed when the campaign starts";
            plan.unsent.push_back(std::move(u));
        }
    std::sort(plan.sends.begin(), plan.sends.end(), [](const auto& a, const auto& b) {
        return std::tie(a.at, a.mailbox) < std::tie(b.at, b.mailbox);
    });
    for (const auto& p : plan.sends)
        if (!p.existing || (!req.follow.empty() && p.origin == req.follow)) plan.last = p.at;
    plan.complete = std::none_of(plan.unsent.begin(), plan.unsent.end(),
                                 [](const auto& u) { return u.waiting; });
    return plan;
}

}  // namespace mailers
