// engine::metrics_text(): the engine's counters, latencies and live gauges
// for a Prometheus scrape.
#include <mailers/engine.hpp>

#include "engine/engine_impl.hpp"
#include "metrics/exposition.hpp"

namespace mailers {

std::string engine::metrics_text() const {
    detail::exposition x;
    const auto st = stats();
    x.family("mailers_sends_total", "counter", "Sends this engine completed, by outcome.");
    const std::pair<std::string_view, std::uint64_t> outcomes[] = {
        {"accepted", st.accepted},     {"failed", st.failed},           {"unknown", st.unknown},
        {"suppressed", st.suppressed}, {"no_capacity", st.no_capacity}, {"paused", st.paused},
        {"rejected", st.rejected},     {"duplicate", st.duplicates}};
    for (const auto& [name, n] : outcomes) x.sample("mailers_sends_total", {{"outcome", name}}, n);
    x.family("mailers_failovers_total", "counter",
             "Attempts moved to another mailbox after a transient failure.");
    x.sample("mailers_failovers_total", {}, st.failovers);
    x.family("mailers_store_commits_total", "counter", "Group commits this engine made.");
    x.sample("mailers_store_commits_total", {}, st.commits);
    x.family("mailers_store_committed_ops_total", "counter",
             "Writes carried by this engine's group commits.");
    x.sample("mailers_store_committed_ops_total", {}, st.committed_ops);

    const auto lat = latencies();
    x.family("mailers_send_stage_seconds", "histogram",
             "Time spent in each stage of the send pipeline.");
    const std::pair<std::string_view, const latency_histogram*> stages[] = {
        {"decide", &lat.decide},
        {"reserve", &lat.reserve},
        {"handoff", &lat.handoff},
        {"record", &lat.record},
        {"total", &lat.total}};
    // Bucket i holds [2^i, 2^(i+1)) microseconds, so its upper bound is
    // 2^(i+1) µs: 2 µs for the first.
    for (const auto& [name, h] : stages)
        x.histogram("mailers_send_stage_seconds", {{"stage", name}}, h->counts.data(),
                    h->counts.size(), 2e-6, static_cast<double>(h->sum_us) / 1e6);

    std::vector<mailbox_status> boxes;
    for (const auto& cfg : mailboxes()) {
        try {
            boxes.push_back(status(cfg.id));
        } catch (const exception&) {
            // Removed since it was listed.
        }
    }
    x.family("mailers_mailbox_sent", "gauge",
             "Sends counted against a mailbox in its daily and hourly windows now.");
    for (const auto& b : boxes) {
        x.sample("mailers_mailbox_sent", {{"mailbox", b.id}, {"window", "day"}}, b.sent_today);
        x.sample("mailers_mailbox_sent", {{"mailbox", b.id}, {"window", "hour"}}, b.sent_this_hour);
    }
    x.family("mailers_mailbox_daily_cap", "gauge",
             "The lowest of a mailbox's daily caps and today's warm-up step.");
    for (const auto& b : boxes)
        if (b.effective_daily_cap)
            x.sample("mailers_mailbox_daily_cap", {{"mailbox", b.id}}, *b.effective_daily_cap);
    x.family("mailers_mailbox_eligible", "gauge", "1 when a mailbox could send now.");
    for (const auto& b : boxes)
        x.sample("mailers_mailbox_eligible", {{"mailbox", b.id}},
                 std::uint64_t{b.blocked == ineligible_reason::none});
    x.family("mailers_mailbox_blocked", "gauge", "1 for the reason a mailbox cannot send now.");
    for (const auto& b : boxes)
        if (b.blocked != ineligible_reason::none)
            x.sample("mailers_mailbox_blocked",
                     {{"mailbox", b.id}, {"reason", to_string(b.blocked)}}, std::uint64_t{1});
    x.family("mailers_mailbox_breaker_open", "gauge",
             "1 when a mailbox's circuit breaker is open or half-open.");
    for (const auto& b : boxes)
        x.sample("mailers_mailbox_breaker_open", {{"mailbox", b.id}},
                 std::uint64_t{b.health != health_state::closed});

    x.family("mailers_pauses", "gauge", "Pauses in force in the workspace.");
    x.sample("mailers_pauses", {}, static_cast<std::uint64_t>(pauses().size()));

    std::optional<queue_summary> q;
    try {
        q = queue_counts();
    } catch (const std::exception& e) {
        impl_->params.log.log(log_level::warning,
                              std::string("metrics: queue counts left out: ") + e.what());
    }
    if (q) {
        x.family("mailers_queue_items", "gauge", "Items in the workspace's send queue, by state.");
        const std::pair<std::string_view, std::uint64_t> states[] = {{"waiting", q->waiting},
                                                                     {"claimed", q->claimed},
                                                                     {"done", q->done},
                                                                     {"cancelled", q->cancelled}};
        for (const auto& [name, n] : states) x.sample("mailers_queue_items", {{"state", name}}, n);
        x.family("mailers_queue_waiting", "gauge",
                 "Waiting queue items by what they wait for (\"\" when never deferred).");
        for (const auto& [reason, n] : q->waiting_by_reason)
            x.sample("mailers_queue_waiting", {{"reason", reason}}, n);
    }
    // Outbound webhooks: per endpoint, whether it is enabled and its outbox
    // rows by state, so an alert can fire on a disabled endpoint or a
    // growing backlog.
    try {
        const auto endpoints = webhook_endpoints();
        if (!endpoints.empty()) {
            x.family("mailers_webhook_endpoint_enabled", "gauge",
                     "1 while an outbound webhook endpoint is enabled.");
            for (const auto& ep : endpoints)
                x.sample("mailers_webhook_endpoint_enabled", {{"endpoint", ep.id}},
                         std::uint64_t{ep.enabled});
            x.family("mailers_webhook_deliveries", "gauge",
                     "Outbound webhook outbox rows per endpoint, by state.");
            for (const auto& ep : endpoints) {
                const auto c = count_webhook_deliveries(ep.id);
                const std::pair<std::string_view, std::uint64_t> states[] = {
                    {"pending", c.pending},
                    {"claimed", c.claimed},
                    {"delivered", c.delivered},
                    {"failed", c.failed}};
                for (const auto& [name, n] : states)
                    x.sample("mailers_webhook_deliveries", {{"endpoint", ep.id}, {"state", name}},
                             n);
            }
        }
    } catch (const std::exception& e) {
        impl_->params.log.log(log_level::warning,
                              std::string("metrics: webhook outbox counts left out: ") + e.what());
    }
    // Today's counts for the workspace (docs/rules.md): one store query.
    try {
        const auto today = utc_day(impl_->clk->now());
        const auto day = daily_counts(count_scope::workspace, "", today, today).front();
        x.family("mailers_workspace_today", "gauge",
                 "The workspace's counts for the current UTC day, by metric.");
        for (std::size_t m = 0; m < count_metric_count; ++m)
            x.sample("mailers_workspace_today",
                     {{"metric", to_string(static_cast<count_metric>(m))}}, day.n[m]);
    } catch (const std::exception& e) {
        impl_->params.log.log(log_level::warning,
                              std::string("metrics: daily counts left out: ") + e.what());
    }
    return x.take();
}

}  // namespace mailers
