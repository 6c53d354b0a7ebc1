// Provider webhooks applied: events correlated with the ledger, bounces,
// complaints and unsubscribes turned into suppressions.
#include <fmt/format.h>

#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine_impl.hpp"

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

}  // namespace

// Correlates each event with the ledger, suppresses for hard bounces,
// complaints and unsubscribes, and hands the events to the handlers.
void engine::impl::apply_reported_events(engine& e, std::vector<event>& events,
                                         const principal& who, const std::string& source,
                                         std::size_t& suppressed, std::size_t& already) {
    for (auto& ev : events) {
        if (auto id = ledger_id(ev.send_id)) {
            std::optional<ledger_row> row;
            with_store([&](store& st) { row = st.find_send(params.workspace, *id); });
            if (row) {
                ev.mailbox = row->mailbox;
                ev.pool = row->pool;
                if (ev.idempotency_key.empty()) ev.idempotency_key = row->idempotency_key;
                if (ev.provider_message_id.empty())
                    ev.provider_message_id = row->provider_message_id;
                if (ev.message_id.empty()) ev.message_id = row->message_id;
            } else {
                // Another workspace's send, or a forged tag: not ours to fill in.
                ev.send_id.clear();
            }
        }
        if (auto reason = suppression_for(ev); reason && !ev.recipient.empty()) {
            // The recipient's own word (or their server's) is not subject
            // to access rules: it is stored however the workspace's
            // grants are set.
            auto key = normalise_address(ev.recipient, suppression_opts());
            if (!key) {
                // A reported address that does not parse cannot be
                // suppressed; the event still reaches the handlers.
                params.log.log(log_level::warning,
                               fmt::format("{}: '{}' is not an address that can be suppressed",
                                           source, ev.recipient));
            } else if (e.is_suppressed(*key)) {
                ++already;
            } else {
                store_suppression(who, suppression_kind::address, *key, *reason, source);
                ++suppressed;
            }
        }
        emit(ev);
    }
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
                                 out.suppressed, out.already_suppressed);
    return out;
}

report_ingest_result engine::ingest_delivery_report(std::string_view message) {
    report_ingest_result out;
    out.report = parse_delivery_report(message, impl_->clk->now());
    if (!out.report.recognised) return out;
    impl_->apply_reported_events(*this, out.report.events,
                                 principal{"bounce-message", "Bounce message"}, "bounce-message",
                                 out.suppressed, out.already_suppressed);
    return out;
}

}  // namespace mailers
