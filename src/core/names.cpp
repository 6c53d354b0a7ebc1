// The names of the public enums, as printed by to_string() and the fmt
// formatters in <mailers/format.hpp>: each is the enumerator's spelling.
// The scopes, rotation kinds, window kinds and mailbox states are also what
// the store and the audit log keep, so renaming one changes stored data.
#include <mailers/engine.hpp>
#include <mailers/error.hpp>
#include <mailers/event.hpp>
#include <mailers/logger.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/quota.hpp>
#include <mailers/rotation_policy.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>

namespace mailers {

std::string_view to_string(event_type t) noexcept {
    switch (t) {
        case event_type::queued:
            return "queued";
        case event_type::sent:
            return "sent";
        case event_type::delivered:
            return "delivered";
        case event_type::deferred:
            return "deferred";
        case event_type::bounced:
            return "bounced";
        case event_type::complained:
            return "complained";
        case event_type::unsubscribed:
            return "unsubscribed";
        case event_type::opened:
            return "opened";
        case event_type::clicked:
            return "clicked";
        case event_type::rejected:
            return "rejected";
        case event_type::failed:
            return "failed";
        case event_type::replied:
            return "replied";
        case event_type::suppressed:
            return "suppressed";
        case event_type::no_capacity:
            return "no_capacity";
        case event_type::unknown:
            return "unknown";
        case event_type::paused:
            return "paused";
        case event_type::alert:
            return "alert";
        case event_type::auto_paused:
            return "auto_paused";
    }
    return "unknown";
}

std::string_view to_string(bounce_class b) noexcept {
    switch (b) {
        case bounce_class::none:
            return "none";
        case bounce_class::hard:
            return "hard";
        case bounce_class::soft:
            return "soft";
    }
    return "invalid bounce_class";
}

std::string_view to_string(mailbox_state s) noexcept {
    switch (s) {
        case mailbox_state::active:
            return "active";
        case mailbox_state::paused:
            return "paused";
        case mailbox_state::retired:
            return "retired";
    }
    return "invalid mailbox_state";
}

std::string_view to_string(health_state s) noexcept {
    switch (s) {
        case health_state::closed:
            return "closed";
        case health_state::open:
            return "open";
        case health_state::half_open:
            return "half_open";
    }
    return "invalid health_state";
}

std::string_view to_string(ineligible_reason r) noexcept {
    switch (r) {
        case ineligible_reason::none:
            return "none";
        case ineligible_reason::paused:
            return "paused";
        case ineligible_reason::retired:
            return "retired";
        case ineligible_reason::provider_paused:
            return "provider_paused";
        case ineligible_reason::domain_paused:
            return "domain_paused";
        case ineligible_reason::outside_window:
            return "outside_window";
        case ineligible_reason::min_gap:
            return "min_gap";
        case ineligible_reason::cap_reached:
            return "cap_reached";
        case ineligible_reason::warmup_cap_reached:
            return "warmup_cap_reached";
        case ineligible_reason::quota_reached:
            return "quota_reached";
        case ineligible_reason::exhausted:
            return "exhausted";
        case ineligible_reason::throttled:
            return "throttled";
        case ineligible_reason::unhealthy:
            return "unhealthy";
        case ineligible_reason::probe_in_flight:
            return "probe_in_flight";
    }
    return "invalid ineligible_reason";
}

std::string_view to_string(window_kind k) noexcept {
    switch (k) {
        case window_kind::rolling:
            return "rolling";
        case window_kind::calendar:
            return "calendar";
    }
    return "invalid window_kind";
}

std::string_view to_string(quota_scope s) noexcept {
    switch (s) {
        case quota_scope::provider:
            return "provider";
        case quota_scope::sender_domain:
            return "sender_domain";
        case quota_scope::recipient_domain:
            return "recipient_domain";
    }
    return "invalid quota_scope";
}

std::string_view to_string(pause_scope s) noexcept {
    switch (s) {
        case pause_scope::workspace:
            return "workspace";
        case pause_scope::pool:
            return "pool";
        case pause_scope::mailbox:
            return "mailbox";
        case pause_scope::provider:
            return "provider";
        case pause_scope::sender_domain:
            return "sender_domain";
    }
    return "invalid pause_scope";
}

std::string_view to_string(rotation_kind k) noexcept {
    switch (k) {
        case rotation_kind::round_robin:
            return "round_robin";
        case rotation_kind::weighted:
            return "weighted";
        case rotation_kind::priority:
            return "priority";
    }
    return "invalid rotation_kind";
}

std::string_view to_string(open_mode m) noexcept {
    switch (m) {
        case open_mode::existing:
            return "existing";
        case open_mode::create:
            return "create";
        case open_mode::open_or_create:
            return "open_or_create";
    }
    return "invalid open_mode";
}

std::string_view to_string(suppression_kind k) noexcept {
    switch (k) {
        case suppression_kind::address:
            return "address";
        case suppression_kind::domain:
            return "domain";
    }
    return "invalid suppression_kind";
}

std::string_view to_string(log_level l) noexcept {
    switch (l) {
        case log_level::trace:
            return "trace";
        case log_level::debug:
            return "debug";
        case log_level::info:
            return "info";
        case log_level::warning:
            return "warning";
        case log_level::error:
            return "error";
        case log_level::off:
            return "off";
    }
    return "invalid log_level";
}

std::string_view to_string(failure f) noexcept {
    switch (f) {
        case failure::transient:
            return "transient";
        case failure::throttled:
            return "throttled";
        case failure::quota_exhausted:
            return "quota_exhausted";
        case failure::reputation:
            return "reputation";
        case failure::auth:
            return "auth";
        case failure::recipient_permanent:
            return "recipient_permanent";
        case failure::message_rejected:
            return "message_rejected";
        case failure::unknown_outcome:
            return "unknown_outcome";
    }
    return "invalid failure";
}

std::string_view to_string(errc e) noexcept {
    switch (e) {
        case errc::ok:
            return "ok";
        case errc::invalid_address:
            return "invalid_address";
        case errc::header_injection:
            return "header_injection";
        case errc::invalid_header:
            return "invalid_header";
        case errc::invalid_argument:
            return "invalid_argument";
        case errc::message_too_large:
            return "message_too_large";
        case errc::unknown_pool:
            return "unknown_pool";
        case errc::unknown_mailbox:
            return "unknown_mailbox";
        case errc::unknown_provider:
            return "unknown_provider";
        case errc::unknown_time_zone:
            return "unknown_time_zone";
        case errc::suppressed:
            return "suppressed";
        case errc::paused:
            return "paused";
        case errc::no_capacity:
            return "no_capacity";
        case errc::duplicate:
            return "duplicate";
        case errc::not_found:
            return "not_found";
        case errc::permission_denied:
            return "permission_denied";
        case errc::store_error:
            return "store_error";
        case errc::schema_too_new:
            return "schema_too_new";
        case errc::operation_aborted:
            return "operation_aborted";
        case errc::invalid_csv:
            return "invalid_csv";
        case errc::audit_chain_broken:
            return "audit_chain_broken";
        case errc::commit_outcome_unknown:
            return "commit_outcome_unknown";
        case errc::store_missing:
            return "store_missing";
        case errc::store_exists:
            return "store_exists";
        case errc::store_corrupt:
            return "store_corrupt";
    }
    return {};
}

std::string_view to_string(transport_errc e) noexcept {
    switch (e) {
        case transport_errc::connection_failed:
            return "connection_failed";
        case transport_errc::timeout_before_send:
            return "timeout_before_send";
        case transport_errc::temporary_reply:
            return "temporary_reply";
        case transport_errc::rate_limited:
            return "rate_limited";
        case transport_errc::sender_quota_exhausted:
            return "sender_quota_exhausted";
        case transport_errc::sender_reputation:
            return "sender_reputation";
        case transport_errc::authentication_failed:
            return "authentication_failed";
        case transport_errc::configuration:
            return "configuration";
        case transport_errc::recipient_rejected:
            return "recipient_rejected";
        case transport_errc::content_rejected:
            return "content_rejected";
        case transport_errc::outcome_unknown:
            return "outcome_unknown";
        case transport_errc::tls_verification_failed:
            return "tls_verification_failed";
        case transport_errc::protocol_error:
            return "protocol_error";
    }
    return {};
}

}  // namespace mailers
