// Provider webhooks applied: events correlated with the ledger, bounces,
// complaints and unsubscribes turned into suppressions.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <future>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/engine_impl.hpp"
#include "engine/enrollments.hpp"
#include "engine/queue.hpp"

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

// Records keys that guard nothing, in one commit; returns each op's result.
std::vector<op_result> record_keys(engine::impl& s, std::vector<store_op> ops) {
    commit_reply reply;
    std::promise<void> p;
    const std::size_t n = ops.size();
    s.writer->enqueue(std::move(ops), [&](commit_reply&& r) {
        reply = std::move(r);
        p.set_value();
    });
    p.get_future().wait();
    if (reply.ec) throw exception(reply.ec, reply.diag);
    if (reply.ops.size() != n)
        fail(errc::store_error, "the store answered for fewer keys than were recorded");
    return std::move(reply.ops);
}

// The address `ops` ends by tallying a soft bounce of, else "".
std::string tallied_address(const std::vector<store_op>& ops) {
    if (ops.empty()) return {};
    const auto* t = std::get_if<store_ops::tally_soft_bounce>(&ops.back());
    return t ? t->address : std::string();
}

// How many of `ops` are counts and tallies rather than outbox rows.
std::size_t counted_ops(const std::vector<store_op>& ops) {
    return static_cast<std::size_t>(std::count_if(ops.begin(), ops.end(), [](const store_op& op) {
        return std::holds_alternative<store_ops::add_counts>(op) ||
               std::holds_alternative<store_ops::tally_soft_bounce>(op);
    }));
}

}  // namespace

// Correlates each event with the ledger, then applies it once: its
// dedup_key is recorded in the store, with the suppression it causes when
// there is one, and only the engine whose record is the first suppresses
// and hands the event to the handlers. Events that suppress nothing have
// their keys recorded together, one commit for each run of them between
// suppressions, so the handlers still see the events in order. Each
// event's daily counts and soft-bounce tally commit under its record; the
// soft bounces that reached the workspace's threshold, and the pause rules
// on the targets of bounces and complaints, are acted on once the batch
// is applied.
void engine::impl::apply_reported_events(engine& e, std::vector<event>& events,
                                         const principal& who, const std::string& source,
                                         std::size_t& suppressed, std::size_t& already,
                                         std::size_t& duplicates) {
    struct waiting {
        event* ev;
        bool already;    // its address was suppressed before
        std::size_t op;  // its record_key's index in run_ops
        bool rows;       // outbox rows follow it
        std::size_t tally = 0;  // its soft-bounce tally's index in run_ops, when not 0
        std::string tallied;    // the address tallied
    };
    std::vector<store_op> run_ops;
    std::vector<waiting> run;
    // Soft-bounced addresses whose tally reached the policy's threshold.
    std::vector<std::string> soft_reached;
    auto flush = [&] {
        if (run.empty()) return;
        const auto results = record_keys(*this, std::move(run_ops));
        bool outbox_rows = false;
        for (std::size_t i = 0; i < run.size(); ++i) {
            if (!results[run[i].op].applied) {
                ++duplicates;
                continue;
            }
            if (run[i].already) ++already;
            if (run[i].tally != 0 && results[run[i].tally].applied)
                soft_reached.push_back(std::move(run[i].tallied));
            outbox_rows = outbox_rows || run[i].rows;
            emit(*run[i].ev, true);
        }
        if (outbox_rows) wake_outbox();
        run_ops.clear();
        run.clear();
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
            } else if (e.is_suppressed(*key)) {
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
                k && !e.is_suppressed(*k))
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
        if (have_rules.load(std::memory_order_acquire) &&
            (ev.type == event_type::bounced || ev.type == event_type::complained))
            for (auto& t : rule_targets(ev.mailbox, ev.pool, send_provider))
                rule_checks.push_back(std::move(t));
        if (ev.dedup_key.empty()) {
            // Nothing to de-duplicate on (parse_webhook always sets one; a
            // host's own event may not): applied as it comes.
            flush();
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
                    const auto results = record_keys(*this, std::move(counted));
                    if (!address.empty() && results.back().applied)
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
        std::string tallied = tallied_address(counted);
        for (auto& op : counted) rows.push_back(std::move(op));
        if (key) {
            flush();
            if (store_suppression(who, suppression_kind::address, *key, why, source, &once,
                                  std::move(rows))) {
                ++suppressed;
                wake_outbox();
                emit(ev, true);
            } else {
                ++duplicates;
            }
        } else if (reply || held) {
            flush();
            if (reply ? commit_stop(*this, who, *reply, "", &once, std::move(rows)).has_value()
                      : commit_resolution(*this, who, *held, &once, std::move(rows))) {
                if (held && queue) queue->wake();
                wake_outbox();
                emit(ev, true);
            } else {
                ++duplicates;
            }
        } else {
            once.guards = rows.size();
            const std::size_t at = run_ops.size();
            run.push_back({&ev, was_suppressed, at, rows.size() > counted_ops(rows),
                           tallied.empty() ? 0 : at + rows.size(), std::move(tallied)});
            run_ops.push_back(std::move(once));
            for (auto& op : rows) run_ops.push_back(std::move(op));
        }
    }
    flush();
    for (const auto& address : soft_reached)
        if (suppress_soft_bounced(address)) ++suppressed;
    if (!rule_checks.empty()) evaluate_rules(rule_checks);
}

ingest_result engine::ingest_webhook(webhook_provider provider, const webhook_request& request,
                                     const webhook_params& params) {
    return apply_webhook(provider, parse_webhook(provider, request, params));
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
