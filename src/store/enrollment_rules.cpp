#include "store/enrollment_rules.hpp"

#include <fmt/format.h>

#include <mailers/error.hpp>
#include <memory>

#include "store/codes.hpp"

namespace mailers::detail {

using codes::micros;

namespace {

[[noreturn]] void refuse(std::string message) {
    throw exception(make_error_code(errc::store_error), std::move(message));
}

bool live(enrollment_state s) noexcept {
    return s == enrollment_state::active || s == enrollment_state::paused ||
           s == enrollment_state::unresolved;
}

void apply(enrollment_rows& rows, const store_ops::enroll& op, op_result& out) {
    const auto& row = op.row;
    if (row.sequence_id.empty() || row.address.empty())
        refuse("enroll: an enrollment needs a sequence and an address");
    auto& res = out.enrollments;
    for (int attempt = 0; attempt < 2; ++attempt) {
        if (auto have = rows.by_key(row.sequence_id, row.address)) {
            res.id = have->id;
            res.existing = std::make_shared<const enrollment>(*have);
            if (op.on_conflict == enrollment_conflict::refuse) {
                res.status = enroll_status::duplicate;
                out.applied = false;
                return;
            }
            auto merged = *have;
            merged.variables = row.variables;
            merged.owner = row.owner;
            merged.display_name = row.display_name;
            merged.updated_at = row.updated_at;
            ++merged.version;
            rows.write(merged);
            res.status = enroll_status::merged;
            return;
        }
        auto fresh = row;
        fresh.id = 0;
        fresh.version = 1;
        if (auto id = rows.insert(fresh)) {
            res.status = enroll_status::enrolled;
            res.id = *id;
            return;
        }
        // Another transaction enrolled the contact between the look and the
        // insert: decide on its row.
    }
    refuse("enroll: the enrollment could neither be found nor inserted");
}

void apply(enrollment_rows& rows, const store_ops::update_enrollment& op, op_result& out) {
    out.applied = false;
    auto have = rows.by_id(op.row.id);
    if (!have || have->version != op.expected_version) return;
    auto next = op.row;
    next.id = have->id;
    next.sequence_id = have->sequence_id;
    next.address = have->address;
    next.enrolled_at = have->enrolled_at;
    next.version = have->version + 1;
    next.updated_at = op.at;
    if (!have->queue_key.empty() && have->queue_key != next.queue_key)
        rows.cancel_waiting(have->queue_key, op.detail, op.at);
    rows.write(next);
    out.applied = true;
}

void apply(enrollment_rows& rows, const store_ops::stop_enrollments& op, op_result& out) {
    if (op.address.empty() && op.domain.empty() && op.id == 0)
        refuse("stop_enrollments: name an address, a domain or an enrollment");
    if (op.reason == enrollment_stop::none) refuse("stop_enrollments: a stop needs a reason");
    for (auto e : rows.live_matching(op)) {
        if (!e.queue_key.empty()) rows.cancel_waiting(e.queue_key, op.detail, op.at);
        e.state = enrollment_state::stopped;
        e.stop_reason = op.reason;
        e.detail = op.detail;
        e.next_due.reset();
        e.updated_at = op.at;
        ++e.version;
        rows.write(e);
        out.enrollments.stopped.push_back(e.id);
    }
}

void apply(enrollment_rows& rows, const store_ops::advance_enrollment& op, op_result& out) {
    out.applied = false;
    const bool made = op.outcome == step_outcome::sent || op.outcome == step_outcome::unknown;
    if (made && !op.message_id.empty()) rows.remember_message(op.message_id, op.id);
    auto e = rows.by_id(op.id);
    if (!e || e->step != op.step || e->queue_key != op.queue_key || op.queue_key.empty()) return;
    if (made) {
        // An unknown send counts as made (it is never repeated), and holds
        // the enrollment until someone says what became of it.
        e->prev_mailbox = op.mailbox;
        e->prev_message_id = op.message_id;
        e->prev_subject = op.subject;
        e->prev_references = op.references;
        e->last_sent_at = op.at;
        e->step = op.step + 1;
        e->queue_key.clear();
        // A step made counts its next step's sends from the first; an
        // unknown one keeps naming the held attempt (for a re-send's key).
        if (op.outcome == step_outcome::sent) e->attempt = 0;
        if (op.outcome == step_outcome::unknown && e->state == enrollment_state::active) {
            e->state = enrollment_state::unresolved;
            e->next_due.reset();
        } else if (live(e->state) && op.last) {
            e->state = enrollment_state::completed;
            e->next_due.reset();
        } else if (e->state == enrollment_state::active) {
            e->next_due = op.at;
        }
        e->detail = op.detail;
    } else if (live(e->state)) {
        e->state = op.outcome == step_outcome::failed ? enrollment_state::failed
                                                      : enrollment_state::stopped;
        e->stop_reason = op.outcome == step_outcome::failed ? enrollment_stop::none
                                                            : enrollment_stop::suppressed;
        e->detail = op.detail;
        e->next_due.reset();
        e->queue_key.clear();
    } else {
        return;
    }
    e->updated_at = op.at;
    ++e->version;
    rows.write(*e);
    out.applied = true;
}

}  // namespace

std::vector<enrollment_cell> enrollment_cells(const enrollment& e) {
    std::vector<enrollment_cell> c;
    c.reserve(enrollment_column_count);
    c.emplace_back(static_cast<std::int64_t>(e.id));
    c.emplace_back(e.sequence_id);
    c.emplace_back(e.address);
    c.emplace_back(e.display_name);
    c.emplace_back(e.variables);
    c.emplace_back(e.owner);
    c.emplace_back(e.actor);
    c.emplace_back(codes::of(e.state));
    c.emplace_back(codes::of(e.stop_reason));
    c.emplace_back(e.detail);
    c.emplace_back(static_cast<std::int64_t>(e.step));
    if (e.next_due)
        c.emplace_back(micros(*e.next_due));
    else
        c.emplace_back(std::monostate{});
    c.emplace_back(micros(e.step_due));
    c.emplace_back(e.queue_key);
    c.emplace_back(static_cast<std::int64_t>(e.plans));
    c.emplace_back(e.prev_mailbox);
    c.emplace_back(e.prev_message_id);
    c.emplace_back(e.prev_subject);
    c.emplace_back(join_references(e.prev_references));
    c.emplace_back(micros(e.last_sent_at));
    c.emplace_back(micros(e.enrolled_at));
    c.emplace_back(micros(e.updated_at));
    c.emplace_back(static_cast<std::int64_t>(e.version));
    c.emplace_back(enrollment_domain(e.address));
    c.emplace_back(static_cast<std::int64_t>(e.attempt));
    return c;
}

bool is_enrollment_op(const store_op& op) noexcept {
    return std::holds_alternative<store_ops::enroll>(op) ||
           std::holds_alternative<store_ops::update_enrollment>(op) ||
           std::holds_alternative<store_ops::stop_enrollments>(op) ||
           std::holds_alternative<store_ops::advance_enrollment>(op);
}

void apply_enrollment_op(enrollment_rows& rows, const store_op& op, op_result& out) {
    std::visit(
        [&](const auto& o) {
            using T = std::decay_t<decltype(o)>;
            if constexpr (std::is_same_v<T, store_ops::enroll> ||
                          std::is_same_v<T, store_ops::update_enrollment> ||
                          std::is_same_v<T, store_ops::stop_enrollments> ||
                          std::is_same_v<T, store_ops::advance_enrollment>)
                apply(rows, o, out);
            else
                refuse("apply_enrollment_op: not an enrollment op");
        },
        op);
}

std::string enrollment_domain(std::string_view address) {
    const auto at = address.rfind('@');
    return at == std::string_view::npos ? std::string() : std::string(address.substr(at + 1));
}

std::string join_references(const std::vector<std::string>& refs) {
    std::string out;
    for (const auto& r : refs) {
        if (!out.empty()) out += ' ';
        out += r;
    }
    return out;
}

std::vector<std::string> split_references(std::string_view s) {
    std::vector<std::string> out;
    while (!s.empty()) {
        const auto sp = s.find(' ');
        if (sp != 0) out.emplace_back(s.substr(0, sp));
        if (sp == std::string_view::npos) break;
        s.remove_prefix(sp + 1);
    }
    return out;
}

}  // namespace mailers::detail
