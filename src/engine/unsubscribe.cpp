// One-click unsubscribe: the links the engine puts in its messages and the
// suppression a returned token makes.
#include <fmt/format.h>

#include <mailers/unsubscribe.hpp>

#include "config/secret_ref.hpp"
#include "engine/engine_impl.hpp"
#include "mime/text.hpp"

namespace mailers {

using namespace detail;

void engine::impl::prepare_unsubscribe() {
    auto& u = params.unsubscribe;
    if (u.url.empty()) return;
    if (!mime::istarts_with(u.url, "https://") || u.url.size() <= 8 ||
        mime::has_line_break_or_nul(u.url) || u.url.find_first_of(" <>\",") != std::string::npos)
        fail(errc::invalid_argument,
             "engine_params.unsubscribe.url must be an https URL (RFC 8058 requires one)");
    std::string error;
    if (!detail::resolve_value(u.secret, "engine_params.unsubscribe.secret", error))
        fail(errc::invalid_argument, std::move(error));
    if (u.secret.size() < 16)
        fail(errc::invalid_argument,
             "engine_params.unsubscribe.secret must be at least 16 bytes");
    if (!u.mailto.empty() &&
        (u.mailto.find('@') == std::string::npos || mime::has_line_break_or_nul(u.mailto)))
        fail(errc::invalid_argument, "engine_params.unsubscribe.mailto must be an address");
    if (u.lifetime <= std::chrono::seconds::zero())
        fail(errc::invalid_argument, "engine_params.unsubscribe.lifetime must be positive");
}

std::optional<list_unsubscribe> engine::impl::unsubscribe_for(const ledger_row& row,
                                                              time_point now) const {
    const auto& u = params.unsubscribe;
    if (u.url.empty()) return std::nullopt;
    unsubscribe_claims c{params.workspace, row.recipient, row.id,
                         now + std::chrono::duration_cast<duration>(u.lifetime)};
    return list_unsubscribe{unsubscribe_link(u.url, make_unsubscribe_token(c, u.secret)),
                            u.mailto};
}

unsubscribe_result engine::unsubscribe(std::string_view token) {
    unsubscribe_result out;
    const auto& u = impl_->params.unsubscribe;
    if (u.secret.empty()) {
        out.status = unsubscribe_token_status::forged;
        return out;
    }
    auto check = check_unsubscribe_token(token, u.secret, impl_->clk->now());
    out.status = check.status;
    if (check.status == unsubscribe_token_status::valid &&
        check.claims.workspace != impl_->params.workspace)
        out.status = unsubscribe_token_status::forged;
    if (out.status == unsubscribe_token_status::malformed ||
        out.status == unsubscribe_token_status::forged)
        return out;
    out.recipient = check.claims.recipient;
    out.send_id = std::to_string(check.claims.send_id);
    if (out.status != unsubscribe_token_status::valid) return out;

    auto key = normalise_address(out.recipient, impl_->suppression_opts());
    if (!key) {
        out.status = unsubscribe_token_status::malformed;
        return out;
    }
    out.already = is_suppressed(*key);
    event ev;
    ev.type = event_type::unsubscribed;
    ev.at = impl_->clk->now();
    ev.send_id = out.send_id;
    ev.recipient = out.recipient;
    ev.detail = "one-click unsubscribe";
    if (!out.already) {
        // Counted (docs/rules.md) with the suppression, for the send that
        // carried the link.
        std::optional<ledger_row> row;
        impl_->with_store(
            [&](store& st) { row = st.find_send(impl_->params.workspace, check.claims.send_id); });
        if (row) {
            ev.mailbox = row->mailbox;
            ev.pool = row->pool;
        }
        std::vector<store_op> counted;
        if (auto c = impl_->event_counts(ev, row ? row->provider : std::string(), ev.at))
            counted.push_back(std::move(*c));
        // The same token taken at once by two engines (a mailbox
        // provider's POST and the person's click, or a retry reaching
        // another process) both find the address free: the token's record
        // guards the suppression, its count and its audit record, so only
        // the first to commit makes them.
        const auto retention =
            std::chrono::duration_cast<duration>(impl_->params.event_retention);
        const store_ops::record_key once{"event", "one-click:" + out.send_id + ":" + *key, ev.at,
                                         ev.at + retention, 0};
        // The recipient's own request: no access rule may refuse it.
        const principal who{"one-click", "One-click unsubscribe"};
        out.suppressed =
            impl_->store_suppression(who, suppression_kind::address, *key,
                                     suppression_reason::unsubscribe, "one-click", &once, counted);
        // Refused by the record: suppressed by the engine that made it,
        // unless an operator has lifted that suppression since (the person
        // resubscribed) and this is the same link followed again. The store
        // holds the other engine's commit by now; memory may not yet.
        if (!out.suppressed && !is_suppressed(*key)) {
            std::optional<suppression_entry> entry;
            impl_->with_store([&](store& st) {
                entry = st.find_suppression(impl_->params.workspace, suppression_kind::address,
                                            *key);
            });
            if (!entry) {
                impl_->store_suppression(who, suppression_kind::address, *key,
                                         suppression_reason::unsubscribe, "one-click", nullptr,
                                         std::move(counted));
                out.suppressed = true;
            }
        }
        out.already = !out.suppressed;
    }
    impl_->emit(std::move(ev));
    return out;
}

}  // namespace mailers
