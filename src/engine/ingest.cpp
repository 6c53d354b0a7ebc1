// Provider webhooks applied: events correlated with the ledger, bounces,
// complaints and unsubscribes turned into suppressions.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/engine_impl.hpp"
#include "engine/enrollments.hpp"
#include "engine/queue.hpp"
#include "engine/serialize.hpp"
#include "webhooks/replay.hpp"

namespace mailers {

using namespace detail;

namespace {

std::optional<suppression_reason> suppression_for(const event& e) {
    switch (e.type) {
        case event_type::bounced:
            if (e.bounce == bounce_class::hard) return suppression_reason::hard_bounce;
            return std::nullopt;
        case event_type::complained:
            return suppression_reason::complaint;
        case event_type::unsubscribed:
            return suppression_reason::unsubscribe;
        default:
            return std::nullopt;
    }
}

std::optional<std::uint64_t> ledger_id(std::string_view s) {
    std::uint64_t id = 0;
    auto r = std::from_chars(s.data(), s.data() + s.size(), id);
    if (r.ec != std::errc{} || r.ptr != s.data() + s.size() || id == 0) return std::nullopt;
    return id;
}

// The address `ops` ends by tallying a soft bounce of, else "".
std::string tallied_address(const std::vector<store_op>& ops) {
    if (ops.empty()) return {};
    const auto* t = std::get_if<store_ops::tally_soft_bounce>(&ops.back());
    return t ? t->address : std::string();
}

}  // namespace

// Correlates each event with the ledger, then applies the request's events
// in one commit: each event's dedup_key is recorded in the store, guarding
// what the event does (the suppression it causes with its audit record and
// the stop of its enrollments, a reply's stop, a held step's resolution,
// its daily counts and soft-bounce tally, its outbound webhooks), so that a
// redelivery, here or in another engine, changes nothing and only the
// engine whose record is the first hands the event to the handlers, in
// order, once the commit is durable and its suppressions hold in every
// engine. The soft bounces that reached the workspace's threshold, and the
// pause rules on the targets of bounces and complaints, are acted on once
// the request is applied.
void engine::impl::apply_reported_events(engine& e, std::vector<event>& events,
                                         const principal& who, const std::string& source,
                                         std::size_t& suppressed, std::size_t& already,
                                         std::size_t& duplicates) {
    // An event whose ops are in `ops`, in request order.
    struct planned {
        event* ev = nullptr;
        std::size_t op = 0;                     // its record_key's index in ops
        bool already = false;                   // its address was suppressed before
        std::optional<std::string> suppresses;  // the address key it suppresses
        bool rows = false;                      // outbox rows follow it
        bool held = false;                      // it resolves a held enrollment
        std::size_t tally = 0;                  // its soft-bounce tally's index in ops, or 0
        std::string tallied;                    // the address tallied
    };
    std::vector<store_op> ops;
    std::vector<planned> plan;
    // The address keys `ops` suppresses: a later event of the request about
    // one finds it suppressed, as it would after a commit of its own.
    std::unordered_set<std::string> suppressing;
    // The enrollments `ops` resolves: each resolution is a compare-and-set
    // on the version read before the commit, so a second event about the
    // same held step waits for the first's commit and is then read afresh.
    std::unordered_set<std::uint64_t> resolving;
    // Soft-bounced addresses whose tally reached the policy's threshold.
    std::vector<std::string> soft_reached;
    auto commit_planned = [&] {
        if (plan.empty()) return;
        // As mutate() does for a change: the sync thread leaves the feed to
        // us until our suppressions are applied here.
        std::optional<own_change_scope> guard;
        if (!suppressing.empty()) guard.emplace(*this);
        const std::size_t n = ops.size();
        auto reply = commit_now(*this, std::move(ops));
        if (reply.ops.size() != n)
            fail(errc::store_error, "the store answered for fewer ops than were committed");
        std::vector<std::string> stored;  // the suppressions the commit made
        for (const auto& p : plan)
            if (p.suppresses && reply.ops[p.op].applied) stored.push_back(*p.suppresses);
        // Before any handler hears of them, the suppressions hold in every
        // engine of the workspace, as suppress() makes them hold.
        if (!stored.empty())
            settle(
                reply,
                [&] {
                    std::unique_lock lock(supp_mu);
                    for (const auto& k : stored) index.insert(suppression_kind::address, k);
                },
                *guard);
        bool outbox_rows = false, resolved = false;
        for (auto& p : plan) {
            if (!reply.ops[p.op].applied) {
                ++duplicates;
                continue;
            }
            if (p.suppresses) ++suppressed;
            if (p.already) ++already;
            if (p.tally != 0 && reply.ops[p.tally].applied)
                soft_reached.push_back(std::move(p.tallied));
            outbox_rows = outbox_rows || p.rows;
            resolved = resolved || p.held;
            emit(*p.ev, true);
        }
        if (resolved && queue) queue->wake();
        if (outbox_rows) wake_outbox();
        ops.clear();
        plan.clear();
        suppressing.clear();
        resolving.clear();
    };
    // Targets of bounces and complaints, for the pause rules.
    std::vector<pause_target> rule_checks;
    const auto retention = std::chrono::duration_cast<duration>(params.event_retention);
    // The sends the events name, read from this thread rather than queued
    // behind the writer's commits (a SendGrid batch names up to a few
    // hundred): a provider reports on a send only after its hand-off, which
    // follows the commit of its ledger row, so no write queued here can
    // change what these reads see.
    std::unordered_map<std::uint64_t, std::optional<ledger_row>> sends;
    for (const auto& ev : events)
        if (auto id = ledger_id(ev.send_id)) sends.emplace(*id, std::nullopt);
    for (auto& [id, row] : sends) row = params.storage->find_send(params.workspace, id);
    const auto is_suppressed = [&](const std::string& k) {
        return suppressing.count(k) != 0 || e.is_suppressed(k);
    };
    for (auto& ev : events) {
        std::string send_provider;  // the provider id of the send it names
        if (auto id = ledger_id(ev.send_id)) {
            const auto& row = sends.at(*id);
            if (row) {
                ev.mailbox = row->mailbox;
                ev.pool = row->pool;
                if (ev.idempotency_key.empty()) ev.idempotency_key = row->idempotency_key;
                if (ev.provider_message_id.empty())
                    ev.provider_message_id = row->provider_message_id;
                if (ev.message_id.empty()) ev.message_id = row->message_id;
                send_provider = row->provider;
            } else {
                // Another workspace's send, or a forged tag: not ours to fill in.
                ev.send_id.clear();
            }
        }
        std::optional<std::string> key;  // set when the event suppresses it
        suppression_reason why{};
        bool was_suppressed = false;
        if (auto reason = suppression_for(ev); reason && !ev.recipient.empty()) {
            why = *reason;
            // The recipient's own word (or their server's) is not subject
            // to access rules: it is stored however the workspace's
            // grants are set.
            if (auto k = normalise_address(ev.recipient, suppression_opts())) key = *k;
            if (!key) {
                // A reported address that does not parse cannot be
                // suppressed; the event still reaches the handlers.
                params.log.log(log_level::warning,
                               fmt::format("{}: '{}' is not an address that can be suppressed",
                                           source, ev.recipient));
            } else if (is_suppressed(*key)) {
                was_suppressed = true;
                key.reset();
            }
        }
        // Its counts and soft-bounce tally commit with its record, under
        // its guard: a redelivery counts nothing.
        const time_point now = clk->now();
        std::vector<store_op> counted;
        if (auto c = event_counts(ev, send_provider, now)) counted.push_back(std::move(*c));
        if (!key && !was_suppressed && !ev.recipient.empty() && ev.type == event_type::bounced &&
            ev.bounce == bounce_class::soft) {
            if (auto k = normalise_address(ev.recipient, suppression_opts());
                k && !is_suppressed(*k))
                if (auto t = soft_bounce_tally(ev, *k, now)) counted.push_back(std::move(*t));
        }
        // A reply stops enrollments as record_reply does, in the commit
        // that records the event.
        std::optional<store_ops::stop_enrollments> reply;
        if (ev.type == event_type::replied) reply = reply_stop(*this, ev);
        // An event from the provider about a step's send held `unknown`
        // shows it went.
        std::optional<held_resolution> held;
        if (!reply) held = resolved_by(*this, ev);
        if (held && resolving.count(held->before.id)) {
            commit_planned();
            held = resolved_by(*this, ev);
        }
        if (held) resolving.insert(held->before.id);
        if (have_rules.load(std::memory_order_acquire) &&
            (ev.type == event_type::bounced || ev.type == event_type::complained))
            for (auto& t : rule_targets(ev.mailbox, ev.pool, send_provider))
                rule_checks.push_back(std::move(t));
        if (ev.dedup_key.empty()) {
            // Nothing to de-duplicate on (parse_webhook always sets one; a
            // host's own event may not): applied as it comes, after the
            // events before it.
            commit_planned();
            if (key) {
                store_suppression(who, suppression_kind::address, *key, why, source, nullptr,
                                  std::move(counted));
                ++suppressed;
            } else if (reply) {
                commit_stop(*this, who, *reply, "", nullptr, std::move(counted));
            } else if (held) {
                commit_resolution(*this, who, *held, nullptr, std::move(counted));
            } else {
                if (was_suppressed) ++already;
                if (!counted.empty()) {
                    auto address = tallied_address(counted);
                    const auto results = commit_now(*this, std::move(counted)).ops;
                    if (!address.empty() && !results.empty() && results.back().applied)
                        soft_reached.push_back(std::move(address));
                }
            }
            emit(ev);
            continue;
        }
        store_ops::record_key once{"event", ev.dedup_key, now, now + retention, 0};
        // The event's outbound webhooks commit with its record, under its
        // guard: a redelivery writes none.
        std::vector<store_op> rows;
        add_outbox_ops(rows, ev, "event:" + ev.dedup_key);
        planned p;
        p.ev = &ev;
        p.op = ops.size();
        p.already = was_suppressed;
        p.tallied = tallied_address(counted);
        p.rows = !rows.empty();
        for (auto& op : counted) rows.push_back(std::move(op));
        std::vector<store_op> group;
        if (key) {
            const suppression_entry entry{suppression_kind::address, *key, why, source, now};
            group = suppression_ops(entry, &once, std::move(rows));
            group.push_back(store_ops::append_audit{
                next_audit(who, "suppression.add", "suppression", *key, {}, to_json(entry)),
                params.audit_key});
            suppressing.insert(*key);
            p.suppresses = std::move(key);
        } else if (reply) {
            group = stop_ops(*this, who, std::move(*reply), "", &once, std::move(rows));
        } else if (held) {
            group = resolution_ops(*this, who, *held, &once, std::move(rows));
            p.held = true;
        } else {
            once.guards = rows.size();
            group.push_back(std::move(once));
            for (auto& op : rows) group.push_back(std::move(op));
        }
        if (!p.tallied.empty())
            for (std::size_t i = 0; i < group.size(); ++i)
                if (std::holds_alternative<store_ops::tally_soft_bounce>(group[i]))
                    p.tally = p.op + i;
        for (auto& op : group) ops.push_back(std::move(op));
        plan.push_back(std::move(p));
    }
    commit_planned();
    for (const auto& address : soft_reached)
        if (suppress_soft_bounced(address)) ++suppressed;
    if (!rule_checks.empty()) evaluate_rules(rule_checks);
}

ingest_result engine::ingest_webhook(webhook_provider provider, const webhook_request& request,
                                     const webhook_params& params) {
    auto parsed = parse_webhook(provider, request, params);
    const std::string token = parsed.replay_token;
    try {
        return apply_webhook(provider, std::move(parsed));
    } catch (...) {
        // Nothing was applied: the provider's retry must not be refused as
        // a replay of this request.
        webhooks::release_replay_token(params, token, impl_->params.log);
        throw;
    }
}

ingest_result engine::apply_webhook(webhook_provider provider, webhook_result parsed) {
    ingest_result out;
    out.webhook = std::move(parsed);
    if (out.webhook.outcome != webhook_outcome::events) return out;
    const std::string name(to_string(provider));
    impl_->apply_reported_events(*this, out.webhook.events,
                                 principal{"webhook:" + name, name + " webhook"}, name + "-webhook",
                                 out.suppressed, out.already_suppressed, out.duplicates);
    return out;
}

report_ingest_result engine::ingest_delivery_report(std::string_view message) {
    report_ingest_result out;
    out.report = parse_delivery_report(message, impl_->clk->now());
    if (!out.report.recognised) return out;
    impl_->apply_reported_events(*this, out.report.events,
                                 principal{"bounce-message", "Bounce message"}, "bounce-message",
                                 out.suppressed, out.already_suppressed, out.duplicates);
    return out;
}

}  // namespace mailers
