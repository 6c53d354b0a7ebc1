#include <fmt/format.h>

#include <algorithm>
#include <mailers/error.hpp>
#include <mailers/store.hpp>
#include <utility>

namespace mailers {

std::string_view to_string(send_state s) noexcept {
    switch (s) {
        case send_state::reserved:
            return "reserved";
        case send_state::accepted:
            return "accepted";
        case send_state::failed:
            return "failed";
        case send_state::unknown:
            return "unknown";
    }
    return "invalid";
}

std::string_view to_string(reserve_status s) noexcept {
    switch (s) {
        case reserve_status::reserved:
            return "reserved";
        case reserve_status::duplicate:
            return "duplicate";
        case reserve_status::cap_reached:
            return "cap_reached";
        case reserve_status::gap:
            return "gap";
        case reserve_status::stale_config:
            return "stale_config";
        case reserve_status::not_owner:
            return "not_owner";
    }
    return "invalid";
}

std::string_view to_string(queue_state s) noexcept {
    switch (s) {
        case queue_state::waiting:
            return "waiting";
        case queue_state::claimed:
            return "claimed";
        case queue_state::done:
            return "done";
        case queue_state::cancelled:
            return "cancelled";
    }
    return "invalid";
}

std::string_view to_string(enqueue_status s) noexcept {
    switch (s) {
        case enqueue_status::enqueued:
            return "enqueued";
        case enqueue_status::duplicate:
            return "duplicate";
    }
    return "invalid";
}

namespace {
// The default of an operation on data a third-party store does not keep:
// its engine refuses the feature with a store error naming both.
[[noreturn]] void keeps_no(std::string_view what, std::string_view data) {
    diagnostics diag;
    diag.message = fmt::format("{}: this store keeps no {}", what, data);
    throw exception(make_error_code(errc::store_error), std::move(diag));
}

// The default of an operation a third-party store may leave out: its
// engine refuses that feature with a store error naming it.
[[noreturn]] void not_implemented(std::string_view what) {
    throw exception(make_error_code(errc::store_error),
                    fmt::format("store: {} is not implemented by this store", what));
}
}  // namespace

std::vector<queued_send> store::claim_queued(std::string_view, std::uint64_t, time_point,
                                             std::size_t) {
    keeps_no("claim_queued", "send queue");
}

std::optional<queued_send> store::find_queued(std::string_view, std::uint64_t) {
    keeps_no("find_queued", "send queue");
}

void store::for_each_queued(std::string_view, const queue_filter&,
                            const std::function<void(const queued_send&)>&) {
    keeps_no("for_each_queued", "send queue");
}

queue_counts store::count_queued(std::string_view) {
    keeps_no("count_queued", "send queue");
}

std::size_t store::purge_queued(std::string_view, time_point) {
    keeps_no("purge_queued", "send queue");
}

std::size_t store::purge_keys(std::string_view, time_point) {
    keeps_no("purge_keys", "recorded keys");
}

bool store::forget_key(std::string_view, std::string_view, std::string_view) {
    keeps_no("forget_key", "recorded keys");
}

std::optional<enrollment> store::find_enrollment(std::string_view, std::uint64_t) {
    keeps_no("find_enrollment", "enrollments");
}

std::optional<enrollment> store::find_enrollment_by_message(std::string_view, std::string_view) {
    keeps_no("find_enrollment_by_message", "enrollments");
}

void store::for_each_enrollment(std::string_view, const enrollment_filter&,
                                const std::function<void(const enrollment&)>&) {
    keeps_no("for_each_enrollment", "enrollments");
}

std::vector<enrollment> store::due_enrollments(std::string_view, time_point, std::size_t) {
    keeps_no("due_enrollments", "enrollments");
}

std::string_view to_string(enrollment_state s) noexcept {
    switch (s) {
        case enrollment_state::active: return "active";
        case enrollment_state::paused: return "paused";
        case enrollment_state::completed: return "completed";
        case enrollment_state::stopped: return "stopped";
        case enrollment_state::failed: return "failed";
        case enrollment_state::unresolved: return "unresolved";
    }
    return "unknown";
}

std::string_view to_string(enrollment_stop s) noexcept {
    switch (s) {
        case enrollment_stop::none: return "none";
        case enrollment_stop::replied: return "replied";
        case enrollment_stop::bounced: return "bounced";
        case enrollment_stop::unsubscribed: return "unsubscribed";
        case enrollment_stop::suppressed: return "suppressed";
        case enrollment_stop::goal: return "goal";
        case enrollment_stop::manual: return "manual";
    }
    return "unknown";
}

std::string_view to_string(enroll_status s) noexcept {
    switch (s) {
        case enroll_status::enrolled: return "enrolled";
        case enroll_status::duplicate: return "duplicate";
        case enroll_status::merged: return "merged";
    }
    return "unknown";
}

suppression_import_result store::import_suppressions(std::string_view workspace,
                                                     const suppression_import& import) {
    std::vector<store_op> ops;
    import.entries([&](std::span<const suppression_entry> chunk) {
        for (const auto& e : chunk) ops.push_back(store_ops::put_suppression{e});
    });
    suppression_import_result out;
    out.entries = ops.size();
    ops.push_back(import.audit(out.entries));
    auto r = commit(workspace, ops);
    out.audit_seq = r.ops.back().audit_seq;
    out.change_seq = r.change_seq;
    return out;
}

change_set store::changes_since_skipping(std::string_view workspace, std::uint64_t after,
                                         std::uint64_t) {
    return changes_since(workspace, after);
}

store_snapshot store::load_keys(
    std::string_view workspace, time_point since,
    const std::function<void(suppression_kind, std::string_view)>& key) {
    auto snap = load(workspace, since);
    for (const auto& e : snap.suppressions) key(e.kind, e.value);
    snap.suppressions.clear();
    snap.suppressions.shrink_to_fit();
    return snap;
}

std::uint64_t store::last_change_seq(std::string_view workspace) {
    return changes_since(workspace, 0).seq;
}

std::optional<stored_object> store::find_object(std::string_view workspace, std::string_view kind,
                                                std::string_view id) {
    for (auto& o : changes_since(workspace, 0).objects)
        if (o.kind == kind && o.id == id) return std::move(o);
    return std::nullopt;
}

std::optional<suppression_entry> store::next_suppression(std::string_view workspace,
                                                         suppression_kind kind,
                                                         std::string_view from) {
    // for_each_suppression has no way to stop but an exception.
    struct found {};
    std::optional<suppression_entry> out;
    try {
        for_each_suppression(workspace, [&](const suppression_entry& e) {
            if (e.kind == kind && e.value >= from) {
                out = e;
                throw found{};
            }
        });
    } catch (const found&) {
    }
    return out;
}

std::uint64_t store::suppression_count(std::string_view workspace) {
    std::uint64_t n = 0;
    for_each_suppression(workspace, [&](const suppression_entry&) { ++n; });
    return n;
}

void store::for_each_object(std::string_view workspace, std::string_view kind,
                            const std::function<void(const stored_object&)>& fn) {
    auto objects = changes_since(workspace, 0).objects;
    std::sort(objects.begin(), objects.end(),
              [](const stored_object& a, const stored_object& b) { return a.id < b.id; });
    for (const auto& o : objects)
        if (o.kind == kind) fn(o);
}

void store::for_each_suppression_version(
    std::string_view workspace, const std::function<void(const suppression_version&)>& fn) {
    for_each_suppression(workspace, [&](const suppression_entry& e) {
        suppression_version v;
        v.entry = e;
        fn(v);
    });
}

}  // namespace mailers

// --- outbound webhooks: the outbox -------------------------------------------

namespace mailers {

std::string_view to_string(webhook_delivery_state s) noexcept {
    switch (s) {
        case webhook_delivery_state::pending:
            return "pending";
        case webhook_delivery_state::claimed:
            return "claimed";
        case webhook_delivery_state::delivered:
            return "delivered";
        case webhook_delivery_state::failed:
            return "failed";
    }
    return "invalid";
}

std::vector<webhook_delivery> store::claim_webhook_deliveries(std::string_view, std::uint64_t,
                                                              time_point, std::size_t) {
    keeps_no("claim_webhook_deliveries", "webhook outbox");
}

std::optional<webhook_delivery> store::find_webhook_delivery(std::string_view, std::uint64_t) {
    keeps_no("find_webhook_delivery", "webhook outbox");
}

void store::for_each_webhook_delivery(std::string_view, const webhook_delivery_filter&,
                                      const std::function<void(const webhook_delivery&)>&) {
    keeps_no("for_each_webhook_delivery", "webhook outbox");
}

webhook_delivery_counts store::count_webhook_deliveries(std::string_view, std::string_view) {
    keeps_no("count_webhook_deliveries", "webhook outbox");
}

std::size_t store::purge_webhook_deliveries(std::string_view, time_point) {
    keeps_no("purge_webhook_deliveries", "webhook outbox");
}

// --- erasure of a person -----------------------------------------------------

person_erasure_result store::erase_person(std::string_view, const person_erasure&) {
    not_implemented("erase_person");
}

std::size_t store::purge_sends(std::string_view, time_point) {
    not_implemented("purge_sends");
}

audit_purge_result store::purge_audit(std::string_view, const audit_purge&) {
    not_implemented("purge_audit");
}

// A store that cannot purge never has an anchor: its chain starts at seq 1.
audit_anchor store::find_audit_anchor(std::string_view) {
    return {};
}

}  // namespace mailers
