// Enrollments: the engine API (enroll, pause, resume, stop, replies and
// goals, per-sequence pause) and the scheduler that plans due steps.
#include "engine/enrollments.hpp"

#include <fmt/format.h>
#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <iterator>
#include <mailers/sequence.hpp>
#include <set>

#include "engine/engine_impl.hpp"
#include "engine/queue.hpp"
#include "json/writer.hpp"

namespace mailers {

using namespace detail;

namespace detail {

namespace {

constexpr std::string_view sequence_pause_kind = "sequence.pause";

std::string variables_json(const template_variables& vars) {
    std::string out;
    json::writer w(out);
    w.begin_object();
    for (const auto& [k, v] : vars) w.member(k, v);
    w.end_object();
    return out;
}

template_variables variables_from_json(std::string_view text) {
    template_variables out;
    simdjson::dom::parser parser;
    simdjson::padded_string padded(text);
    simdjson::dom::object o;
    if (parser.parse(padded).get(o) != simdjson::SUCCESS) return out;
    for (auto field : o) {
        std::string_view v;
        if (field.value.get(v) == simdjson::SUCCESS) out.emplace(field.key, v);
    }
    return out;
}

std::string state_json(const enrollment& e) {
    std::string out;
    json::writer(out)
        .begin_object()
        .member("id", e.id)
        .member("sequence", e.sequence_id)
        .member("address", e.address)
        .member("state", to_string(e.state))
        .member("stop_reason", to_string(e.stop_reason))
        .member("step", static_cast<std::uint64_t>(e.step))
        .member("attempt", static_cast<std::uint64_t>(e.attempt))
        .member("owner", e.owner)
        .end_object();
    return out;
}

enrollment_stop stop_reason_of(suppression_reason r) {
    switch (r) {
        case suppression_reason::unsubscribe:
            return enrollment_stop::unsubscribed;
        case suppression_reason::hard_bounce:
            return enrollment_stop::bounced;
        default:
            return enrollment_stop::suppressed;
    }
}

// Commits `ops` plus the audit record of `action`; returns the ops' results.
std::vector<op_result> commit_audited(engine::impl& s, const principal& who,
                                      std::string_view action, std::string_view id,
                                      std::string before, std::string after,
                                      std::vector<store_op> ops) {
    ops.push_back(store_ops::append_audit{
        s.next_audit(who, action, "enrollment", id, std::move(before), std::move(after)),
        s.params.audit_key});
    return commit_now(s, std::move(ops)).ops;
}

// The stored enrollment `id`, or errc::not_found.
enrollment must_find(engine::impl& s, std::uint64_t id) {
    std::optional<enrollment> e;
    s.with_store([&](store& st) { e = st.find_enrollment(s.params.workspace, id); });
    if (!e) fail(errc::not_found, fmt::format("no enrollment {}", id));
    return std::move(*e);
}

// What resolving a held step does to its enrollment. Its step was counted
// as made when it was held; `sent` lets the scheduler go on from there,
// `not_sent` takes the step back and plans it again under the next
// attempt's send key (the unknown send keeps its own). The held attempt's
// prev_* fields stay: the re-send is built from them (previous_for_resend).
void resolve_held(enrollment& e, step_resolution what, std::string_view by, time_point now) {
    e.state = enrollment_state::active;
    e.next_due = now;
    e.queue_key.clear();
    if (what == step_resolution::sent) {
        e.attempt = 0;
        e.detail.clear();
    } else {
        --e.step;
        ++e.attempt;
        e.detail = fmt::format("step {} is sent again (re-send {}): {} said its send did not go",
                               e.step + 1, e.attempt, by);
    }
}

// What the step before left behind, recovered from the attempt of the same
// step that a re-send replaces: that attempt was built from it, so its
// sender is the step before's (for `previous_step`), its subject renders
// the same, and a reply's References end with the step before's
// Message-ID after that step's own References.
previous_send previous_for_resend(const enrollment& e) {
    previous_send p{e.prev_mailbox, {}, e.prev_subject, e.prev_references};
    if (!p.references.empty()) {
        p.message_id = std::move(p.references.back());
        p.references.pop_back();
    }
    return p;
}

// Applies `change` to enrollment `id` with a compare-and-set, reading it
// again when another process changed it meanwhile. `change` returns false
// to leave it as it is. Returns whether a change was committed.
bool change_enrollment(engine::impl& s, const principal& who, std::string_view action,
                       std::uint64_t id, const std::function<bool(enrollment&)>& change) {
    for (int attempt = 0; attempt < 16; ++attempt) {
        auto e = must_find(s, id);
        auto next = e;
        if (!change(next)) return false;
        auto r = commit_audited(
            s, who, action, std::to_string(id), state_json(e), state_json(next),
            {store_ops::update_enrollment{next, e.version, fmt::format("{} by {}", action, who.id),
                                          s.clk->now()}});
        if (!r.empty() && r.front().applied) {
            if (s.queue) s.queue->wake();
            return true;
        }
        // The record above says what was asked; this one that it did not
        // take, so the log never shows a change that did not happen.
        commit_audited(s, who, std::string(action) + "_retried", std::to_string(id), {}, {}, {});
    }
    fail(errc::store_error,
         fmt::format("enrollment {} kept changing under {}; try again", id, action));
}

// The stop a reply to `replied`'s step applies: that enrollment alone, or
// every enrollment of its address, as its sequence's reply_stops says.
store_ops::stop_enrollments stop_for_reply(engine::impl& s, const enrollment& replied,
                                           std::string detail) {
    auto scope = stop_scope::every_sequence;
    {
        std::lock_guard lock(s.mu);
        if (auto it = s.sequences.find(replied.sequence_id); it != s.sequences.end() && it->second)
            scope = it->second->config().reply_stops;
    }
    store_ops::stop_enrollments op;
    if (scope == stop_scope::this_sequence)
        op.id = replied.id;
    else
        op.address = replied.address;
    op.reason = enrollment_stop::replied;
    op.detail = std::move(detail);
    op.at = s.clk->now();
    return op;
}

// A reply by address names no sequence: every enrollment of it stops.
store_ops::stop_enrollments stop_address_for_reply(engine::impl& s, std::string address,
                                                   std::string detail) {
    store_ops::stop_enrollments op;
    op.address = std::move(address);
    op.reason = enrollment_stop::replied;
    op.detail = std::move(detail);
    op.at = s.clk->now();
    return op;
}

// Makes the steps that the pause of `sequence_id` held due at once: the
// enrollments whose planning it put off (next_due later than now) and
// those whose queued step waits with reason "paused" (planned again: the
// compare-and-set cancels the waiting item; the step keeps its send key
// and its due time). Each is a compare-and-set: one another engine planned
// meanwhile is left to it.
void replan_paused_steps(engine::impl& s, const std::string& sequence_id) {
    const auto now = s.clk->now();
    std::set<std::string> paused_items;
    queue_filter qf;
    qf.state = queue_state::waiting;
    qf.origin_prefix = fmt::format("sequence:{}/", sequence_id);
    enrollment_filter ef;
    ef.sequence_id = sequence_id;
    ef.state = enrollment_state::active;
    std::vector<store_op> ops;
    s.with_store([&](store& st) {
        st.for_each_queued(s.params.workspace, qf, [&](const queued_send& q) {
            if (q.wait_reason == "paused") paused_items.insert(q.idempotency_key);
        });
        st.for_each_enrollment(s.params.workspace, ef, [&](const enrollment& e) {
            const bool put_off = e.next_due && *e.next_due > now;
            if (!put_off && !paused_items.count(e.queue_key)) return;
            auto next = e;
            next.next_due = now;
            next.queue_key.clear();
            next.detail.clear();
            ops.push_back(store_ops::update_enrollment{next, e.version, "sequence resumed", now});
        });
    });
    if (!ops.empty()) commit_now(s, std::move(ops));
}

}  // namespace

namespace {

// `op` with the audit record of `action`, and `also`, as one commit's
// ops. Under `once`, the record guards them all: a duplicate leaves no
// trace.
std::vector<store_op> guarded_ops(engine::impl& s, const principal& who, std::string_view action,
                                  std::string_view id, std::string before, std::string after,
                                  store_op op, const store_ops::record_key* once,
                                  std::vector<store_op> also) {
    std::vector<store_op> ops;
    if (once) {
        auto rk = *once;
        rk.guards = 2 + also.size();
        ops.push_back(std::move(rk));
    }
    ops.push_back(std::move(op));
    std::move(also.begin(), also.end(), std::back_inserter(ops));
    ops.push_back(store_ops::append_audit{
        s.next_audit(who, action, "enrollment", id, std::move(before), std::move(after)),
        s.params.audit_key});
    return ops;
}

// Commits guarded_ops; a duplicate of `once` answers nullopt. Returns
// `op`'s result.
std::optional<op_result> commit_guarded(engine::impl& s, std::vector<store_op> ops,
                                        const store_ops::record_key* once) {
    auto r = commit_now(s, std::move(ops)).ops;
    const std::size_t at = once ? 1 : 0;
    if (once && (r.empty() || !r.front().applied)) return std::nullopt;
    return r.size() > at ? r[at] : op_result{};
}

}  // namespace

std::vector<store_op> stop_ops(engine::impl& s, const principal& who,
                               store_ops::stop_enrollments stop, std::string_view id,
                               const store_ops::record_key* once, std::vector<store_op> also) {
    std::string after;
    json::writer(after)
        .begin_object()
        .member("reason", to_string(stop.reason))
        .member("sequence", stop.sequence_id)
        .end_object();
    const auto resource = !id.empty()    ? std::string(id)
                          : stop.id != 0 ? std::to_string(stop.id)
                                         : stop.address;
    return guarded_ops(s, who, "enrollment.stop", resource, {}, std::move(after), std::move(stop),
                       once, std::move(also));
}

std::optional<std::vector<std::uint64_t>> commit_stop(engine::impl& s, const principal& who,
                                                      store_ops::stop_enrollments stop,
                                                      std::string_view id,
                                                      const store_ops::record_key* once,
                                                      std::vector<store_op> also) {
    auto r = commit_guarded(s, stop_ops(s, who, std::move(stop), id, once, std::move(also)), once);
    if (!r) return std::nullopt;
    return r->enrollments.stopped;
}

std::optional<held_resolution> resolved_by(engine::impl& s, const event& ev) {
    switch (ev.type) {
        case event_type::delivered:
        case event_type::deferred:
        case event_type::bounced:
        case event_type::opened:
        case event_type::clicked:
            break;
        default:
            return std::nullopt;
    }
    const auto k = parse_send_key(ev.idempotency_key);
    if (!k || ev.send_id.empty()) return std::nullopt;
    std::optional<enrollment> e;
    s.with_store([&](store& st) { e = st.find_enrollment(s.params.workspace, k->enrollment); });
    if (!e || e->sequence_id != k->sequence_id) return std::nullopt;
    // Held on this step, the one counted last; or an earlier attempt of the
    // step whose re-send is still to be handed off (its waiting item is
    // cancelled by the compare-and-set: queue_key changes).
    const bool held = e->state == enrollment_state::unresolved && e->step == k->step + 1;
    const bool resending =
        (e->state == enrollment_state::active || e->state == enrollment_state::paused) &&
        e->step == k->step && k->attempt < e->attempt;
    if (!held && !resending) return std::nullopt;
    held_resolution r{*e, *e};
    if (resending) {
        ++r.after.step;
        r.after.state = enrollment_state::unresolved;  // as it was before `not_sent`
    }
    const bool paused = e->state == enrollment_state::paused;
    resolve_held(r.after, step_resolution::sent, ev.provider, s.clk->now());
    if (paused) {
        r.after.state = enrollment_state::paused;
        r.after.next_due.reset();
    }
    // The attempt that went, when another one was recorded after it.
    if (k->attempt != e->attempt) {
        if (!ev.message_id.empty()) r.after.prev_message_id = ev.message_id;
        if (!ev.mailbox.empty()) r.after.prev_mailbox = ev.mailbox;
    }
    return r;
}

std::vector<store_op> resolution_ops(engine::impl& s, const principal& who,
                                     const held_resolution& r, const store_ops::record_key* once,
                                     std::vector<store_op> also) {
    return guarded_ops(s, who, "enrollment.resolve", std::to_string(r.before.id),
                       state_json(r.before), state_json(r.after),
                       store_ops::update_enrollment{r.after, r.before.version,
                                                    "resolved: the provider had it", s.clk->now()},
                       once, std::move(also));
}

bool commit_resolution(engine::impl& s, const principal& who, const held_resolution& r,
                       const store_ops::record_key* once, std::vector<store_op> also) {
    return commit_guarded(s, resolution_ops(s, who, r, once, std::move(also)), once).has_value();
}

std::optional<store_ops::stop_enrollments> reply_stop(engine::impl& s, const event& ev) {
    std::optional<enrollment> replied;
    if (auto k = parse_send_key(ev.idempotency_key)) {
        s.with_store(
            [&](store& st) { replied = st.find_enrollment(s.params.workspace, k->enrollment); });
        if (replied && replied->sequence_id != k->sequence_id) replied.reset();
    }
    if (!replied && !ev.message_id.empty())
        s.with_store([&](store& st) {
            replied = st.find_enrollment_by_message(s.params.workspace, ev.message_id);
        });
    const auto what = !ev.message_id.empty() ? fmt::format("<{}>", ev.message_id)
                                             : fmt::format("send {}", ev.send_id);
    if (replied) return stop_for_reply(s, *replied, fmt::format("replied to {}", what));
    // Another send of ours: its recipient replied, naming no sequence.
    if (ev.send_id.empty()) return std::nullopt;
    auto key = normalise_address(ev.recipient, s.suppression_opts());
    if (!key) return std::nullopt;
    return stop_address_for_reply(s, *key, fmt::format("replied to {}", what));
}

std::string step_send_key(std::string_view base, std::uint32_t attempt) {
    return attempt == 0 ? std::string(base) : fmt::format("{}~{}", base, attempt);
}

namespace {

// The whole of `text` as a number.
template <class T>
bool whole_number(std::string_view text, T& out) {
    const auto r = std::from_chars(text.data(), text.data() + text.size(), out);
    return r.ec == std::errc{} && r.ptr == text.data() + text.size();
}

}  // namespace

std::optional<step_key> parse_send_key(std::string_view key) {
    if (!key.starts_with("seq:")) return std::nullopt;
    key.remove_prefix(4);
    const auto c2 = key.rfind(':');
    if (c2 == std::string_view::npos) return std::nullopt;
    const auto c1 = key.rfind(':', c2 == 0 ? 0 : c2 - 1);
    if (c1 == std::string_view::npos || c1 == 0) return std::nullopt;
    step_key k;
    k.sequence_id = std::string(key.substr(0, c1));
    const auto e = key.substr(c1 + 1, c2 - c1 - 1);
    auto st = key.substr(c2 + 1);
    if (const auto tilde = st.find('~'); tilde != std::string_view::npos) {
        if (!whole_number(st.substr(tilde + 1), k.attempt) || k.attempt == 0) return std::nullopt;
        st = st.substr(0, tilde);
    }
    std::uint32_t step1 = 0;
    if (!whole_number(e, k.enrollment) || !whole_number(st, step1) || step1 == 0)
        return std::nullopt;
    k.step = step1 - 1;
    return k;
}

namespace {

// "<sequence>:<enrollment>:<step>/<plan>" after "seq:".
std::optional<step_key> parse_key(std::string_view key) {
    const auto slash = key.rfind('/');
    if (slash == std::string_view::npos) return std::nullopt;
    return parse_send_key(key.substr(0, slash));
}

// What a plan does to an enrollment that cannot go on.
enrollment ended(enrollment e, enrollment_state state, enrollment_stop why, std::string detail) {
    e.state = state;
    e.stop_reason = why;
    e.detail = std::move(detail);
    e.next_due.reset();
    return e;
}

// Plans one due enrollment: appends to `out` a compare-and-set on its
// version, so that another process planning it too changes nothing, and
// the queue item of its step.
void plan_one(engine::impl& s, const enrollment& e, time_point now, std::vector<store_op>& out) {
    std::optional<sequence> seq;
    bool known = false, paused = false;
    std::string zone;
    std::uint8_t weekdays = 0x7f;
    {
        std::lock_guard lock(s.mu);
        if (auto it = s.sequences.find(e.sequence_id); it != s.sequences.end()) {
            known = true;
            seq = it->second;
        }
        paused = s.sequence_pauses.count(e.sequence_id) != 0;
    }
    std::vector<store_op> ops;
    auto next = e;
    if (!known) {
        next = ended(e, enrollment_state::failed, enrollment_stop::none,
                     fmt::format("sequence '{}' was removed", e.sequence_id));
    } else if (!seq || paused) {
        // Unreadable here, or paused: looked at again later, not every tick.
        next.next_due = now + std::chrono::duration_cast<duration>(s.params.queue_recheck);
        next.detail = paused ? "sequence paused" : "sequence unreadable in this process";
    } else if (e.step >= seq->size()) {
        // The sequence lost steps while this enrollment was past them.
        next = ended(e, enrollment_state::completed, enrollment_stop::none, {});
    } else {
        enrolled_contact contact;
        contact.enrollment_id = std::to_string(e.id);
        if (auto a = parse_address(e.address)) contact.to = *a;
        contact.to.display_name = e.display_name;
        contact.variables = variables_from_json(e.variables);
        ledger_row to;
        to.recipient = e.address;
        if (auto u = s.unsubscribe_for(to, now))
            contact.variables.insert_or_assign("unsubscribe_url", u->url);
        else
            contact.variables.try_emplace("unsubscribe_url", "");
        contact.owner = e.owner;
        const auto prev = e.attempt > 0 ? previous_for_resend(e)
                                        : previous_send{e.prev_mailbox, e.prev_message_id,
                                                        e.prev_subject, e.prev_references};
        sequence_error err;
        auto req = seq->step_request(e.step, contact, e.step > 0 ? &prev : nullptr, &err);
        if (req) req->idempotency_key = step_send_key(req->idempotency_key, e.attempt);
        std::optional<time_point> due;
        std::string why, domain;
        error_code ec;
        if (req) {
            req->actor.id = e.actor;
            const auto from = e.step == 0 ? e.enrolled_at : e.last_sent_at;
            {
                std::lock_guard lock(s.mu);
                if (auto m = s.mailboxes.find(req->mailbox); m != s.mailboxes.end()) {
                    zone = m->second.cfg.time_zone;
                    weekdays = m->second.cfg.window.weekdays;
                }
            }
            try {
                // A re-send is due as the step was: at once, its time past.
                due = e.attempt > 0 ? e.step_due
                      : req->mailbox.empty() || zone.empty()
                          ? seq->due(e.step, from)
                          : seq->due(e.step, from, zone, weekdays);
            } catch (const exception& x) {
                why = x.what();
            }
            if (due) ec = s.check_send(*req, why, domain);
        }
        if (!req) {
            next = ended(e, enrollment_state::failed, enrollment_stop::none,
                         fmt::format("step {}: {}", e.step + 1, err.to_string()));
        } else if (!due) {
            next = ended(e, enrollment_state::failed, enrollment_stop::none,
                         fmt::format("step {} never falls due{}{}", e.step + 1,
                                     why.empty() ? "" : ": ", why));
        } else if (ec == errc::suppressed) {
            next = ended(e, enrollment_state::stopped, enrollment_stop::suppressed, why);
        } else if (ec) {
            next = ended(e, enrollment_state::failed, enrollment_stop::none,
                         fmt::format("step {}: {}", e.step + 1, why));
        } else {
            next.plans = e.plans + 1;
            next.queue_key = fmt::format("{}/{}", req->idempotency_key, next.plans);
            next.next_due.reset();
            next.step_due = *due;
            next.detail.clear();
            queued_send item;
            item.idempotency_key = next.queue_key;
            item.pool = req->pool;
            item.mailbox = req->mailbox;
            item.recipient_domain = std::move(domain);
            item.origin = fmt::format("sequence:{}/{}", e.sequence_id, e.step + 1);
            item.enqueued_at = now;
            item.not_before = *due;
            item.request = encode_request(*req);
            ops.push_back(store_ops::enqueue{std::move(item)});
        }
    }
    // The compare-and-set first: when another process planned this step
    // first, the enqueue after it finds the same key taken, or leaves an
    // item the hand-off drops (check_step).
    out.push_back(store_ops::update_enrollment{next, e.version, "replanned", now});
    std::move(ops.begin(), ops.end(), std::back_inserter(out));
}

}  // namespace

std::optional<step_key> parse_step_key(const queued_send& item) {
    if (!item.origin.starts_with("sequence:")) return std::nullopt;
    return parse_key(item.idempotency_key);
}

store_op stop_for_suppression(const suppression_entry& e) {
    store_ops::stop_enrollments op;
    if (e.kind == suppression_kind::address)
        op.address = e.value;
    else
        op.domain = e.value;
    op.reason = stop_reason_of(e.reason);
    op.detail = fmt::format("suppressed ({}, {})", to_string(e.reason), e.source);
    op.at = e.created_at;
    return op;
}

std::size_t plan_due_steps(engine::impl& s, std::size_t limit) {
    const auto now = s.clk->now();
    auto due = s.params.storage->due_enrollments(s.params.workspace, now, limit);
    // One commit for the batch: each enrollment's compare-and-set decides
    // for it alone, and a commit per step would cost a durable write each.
    std::vector<store_op> ops;
    for (const auto& e : due) {
        std::vector<store_op> one;
        try {
            plan_one(s, e, now, one);
        } catch (const std::exception& x) {
            s.params.log.log(
                log_level::error,
                fmt::format("enrollment {}: its step could not be planned: {}", e.id, x.what()));
            continue;
        }
        std::move(one.begin(), one.end(), std::back_inserter(ops));
    }
    if (!ops.empty()) commit_now(s, std::move(ops));
    return due.size();
}

step_verdict check_step(engine::impl& s, const queued_send& item, const step_key& k,
                        std::string& why) {
    {
        std::lock_guard lock(s.mu);
        if (s.sequence_pauses.count(k.sequence_id)) {
            why = fmt::format("sequence '{}' is paused", k.sequence_id);
            return step_verdict::paused;
        }
    }
    auto e = s.params.storage->find_enrollment(s.params.workspace, k.enrollment);
    if (!e) {
        why = "cancelled: the enrollment is gone";
        return step_verdict::drop;
    }
    if (e->state != enrollment_state::active || e->queue_key != item.idempotency_key) {
        why = fmt::format("cancelled: the enrollment is {}{}", to_string(e->state),
                          e->state == enrollment_state::stopped
                              ? fmt::format(" ({})", to_string(e->stop_reason))
                              : std::string(e->state == enrollment_state::active
                                                ? " and waits for another plan of its step"
                                                : ""));
        return step_verdict::drop;
    }
    return step_verdict::hand_off;
}

store_op step_outcome_op(engine::impl& s, const queued_send& item, const step_key& k,
                         step_outcome outcome, const send_result& r, const send_request& req,
                         std::string detail, time_point at) {
    bool last = false;
    {
        std::lock_guard lock(s.mu);
        if (auto it = s.sequences.find(k.sequence_id); it != s.sequences.end() && it->second)
            last = k.step + 1 >= it->second->size();
    }
    if (outcome == step_outcome::unknown)
        detail = fmt::format("step {} outcome unknown (send {}): {}", k.step + 1,
                             r.send_id.empty() ? "not recorded" : r.send_id, detail);
    return store_ops::advance_enrollment{
        k.enrollment, k.step,      item.idempotency_key, outcome,           last, r.mailbox,
        r.message_id, req.subject, req.references,       std::move(detail), at};
}

}  // namespace detail

// --- engine --------------------------------------------------------------------

enrollment engine::enroll(const principal& who, const std::string& sequence_id,
                          const address& contact, const enroll_options& opts) {
    auto& s = *impl_;
    std::optional<sequence> seq;
    {
        std::lock_guard lock(s.mu);
        auto it = s.sequences.find(sequence_id);
        if (it == s.sequences.end())
            fail(errc::not_found, fmt::format("no sequence '{}'", sequence_id));
        if (!it->second)
            fail(errc::store_corrupt,
                 fmt::format("sequence '{}' cannot be read by this process", sequence_id));
        seq = it->second;
        if (!opts.owner.empty() && !s.mailboxes.count(opts.owner))
            fail(errc::unknown_mailbox,
                 fmt::format("no mailbox '{}' to own the enrollment", opts.owner));
    }
    s.authorize(who, "enroll", "sequence", sequence_id);
    auto key = normalise_address(contact.addr_spec(), s.suppression_opts());
    if (!key) fail(errc::invalid_address, "not a valid email address");
    if (has_crlf(contact.display_name))
        fail(errc::invalid_argument, "the contact's display name contains CR or LF");
    if (s.suppressed(*key))
        fail(errc::suppressed, fmt::format("{} is suppressed; it is not enrolled", *key));
    const auto check = seq->check(opts.variables);
    if (!check.missing.empty()) {
        std::string names;
        for (const auto& n : check.missing) names += (names.empty() ? "" : ", ") + n;
        fail(errc::invalid_argument,
             fmt::format("sequence '{}' needs variables the contact lacks and that have no "
                         "fallback: {}; nothing was enrolled",
                         sequence_id, names));
    }
    const auto now = s.clk->now();
    enrollment row;
    row.sequence_id = sequence_id;
    row.address = *key;
    row.display_name = contact.display_name;
    row.variables = variables_json(opts.variables);
    row.owner = opts.owner;
    row.actor = who.id;
    row.next_due = now;
    row.enrolled_at = now;
    row.updated_at = now;
    const auto rule = opts.on_enrolled_twice.value_or(seq->config().on_enrolled_twice);
    auto r = commit_audited(s, who, "enroll", fmt::format("{}/{}", sequence_id, *key), {},
                            state_json(row), {store_ops::enroll{row, rule}});
    const auto& out = r.front().enrollments;
    if (out.status == enroll_status::duplicate) {
        commit_audited(s, who, "enroll_refused", fmt::format("{}/{}", sequence_id, *key), {},
                       state_json(*out.existing), {});
        fail(errc::duplicate, fmt::format("{} is already enrolled in sequence '{}' (enrollment {})",
                                          *key, sequence_id, out.id));
    }
    if (s.queue) s.queue->wake();
    return must_find(s, out.id);
}

bool engine::pause_enrollment(const principal& who, std::uint64_t id) {
    impl_->authorize(who, "enrollment.pause", "sequence", must_find(*impl_, id).sequence_id);
    return change_enrollment(*impl_, who, "enrollment.pause", id, [](enrollment& e) {
        if (e.state != enrollment_state::active) return false;
        e.state = enrollment_state::paused;
        e.next_due.reset();
        e.queue_key.clear();  // cancels the waiting step
        return true;
    });
}

bool engine::resume_enrollment(const principal& who, std::uint64_t id) {
    impl_->authorize(who, "enrollment.resume", "sequence", must_find(*impl_, id).sequence_id);
    const auto now = impl_->clk->now();
    return change_enrollment(*impl_, who, "enrollment.resume", id, [&](enrollment& e) {
        if (e.state != enrollment_state::paused) return false;
        e.state = enrollment_state::active;
        e.queue_key.clear();
        e.next_due = now;  // planned again, due as it would have been
        e.detail.clear();
        return true;
    });
}

bool engine::stop_enrollment(const principal& who, std::uint64_t id, std::string_view why) {
    impl_->authorize(who, "enrollment.stop", "sequence", must_find(*impl_, id).sequence_id);
    if (has_crlf(why)) fail(errc::invalid_argument, "the reason contains CR or LF");
    store_ops::stop_enrollments op;
    op.id = id;
    op.reason = enrollment_stop::manual;
    op.detail = why.empty() ? fmt::format("stopped by {}", who.id) : std::string(why);
    op.at = impl_->clk->now();
    return !commit_stop(*impl_, who, std::move(op), std::to_string(id))->empty();
}

bool engine::resolve_unknown_step(const principal& who, std::uint64_t id, step_resolution what) {
    impl_->authorize(who, "enrollment.resolve", "sequence", must_find(*impl_, id).sequence_id);
    const auto now = impl_->clk->now();
    return change_enrollment(*impl_, who, "enrollment.resolve", id, [&](enrollment& e) {
        // step 0 unresolved is no row this library writes; nothing to take back.
        if (e.state != enrollment_state::unresolved || e.step == 0) return false;
        resolve_held(e, what, who.id, now);
        return true;
    });
}

std::optional<enrollment> engine::find_enrollment(std::uint64_t id) const {
    std::optional<enrollment> out;
    impl_->with_store([&](store& st) { out = st.find_enrollment(impl_->params.workspace, id); });
    return out;
}

std::vector<enrollment> engine::enrollments(const enrollment_filter& filter) const {
    auto f = filter;
    if (!f.address.empty()) {
        auto key = normalise_address(f.address, impl_->suppression_opts());
        if (!key) fail(errc::invalid_address, "not a valid email address");
        f.address = *key;
    }
    std::vector<enrollment> out;
    impl_->with_store([&](store& st) {
        st.for_each_enrollment(impl_->params.workspace, f,
                               [&](const enrollment& e) { out.push_back(e); });
    });
    return out;
}

void engine::pause_sequence(const principal& who, const std::string& sequence_id,
                            std::string_view reason) {
    {
        std::lock_guard lock(impl_->mu);
        if (!impl_->sequences.count(sequence_id))
            fail(errc::not_found, fmt::format("no sequence '{}'", sequence_id));
    }
    if (has_crlf(reason)) fail(errc::invalid_argument, "the reason contains CR or LF");
    impl_->authorize(who, "sequence.pause", "sequence", sequence_id);
    std::string after;
    json::writer(after)
        .begin_object()
        .member("reason", reason)
        .member("by", who.id)
        .member("at", impl_->clk->now().time_since_epoch().count())
        .end_object();
    impl_->mutate(who, "sequence.pause", "sequence", sequence_id, {}, after,
                  {store_ops::put_object{
                      stored_object{std::string(sequence_pause_kind), sequence_id, after}}},
                  [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->sequence_pauses[sequence_id] = after;
                  });
}

void engine::resume_sequence(const principal& who, const std::string& sequence_id) {
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->sequence_pauses.find(sequence_id);
        if (it == impl_->sequence_pauses.end())
            fail(errc::not_found, fmt::format("sequence '{}' is not paused", sequence_id));
        before = it->second;
    }
    impl_->authorize(who, "sequence.resume", "sequence", sequence_id);
    impl_->mutate(who, "sequence.resume", "sequence", sequence_id, before, {},
                  {store_ops::delete_object{std::string(sequence_pause_kind), sequence_id}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->sequence_pauses.erase(sequence_id);
                  });
    // Every engine has applied the resume now, so none defers these again.
    replan_paused_steps(*impl_, sequence_id);
    if (impl_->queue) impl_->queue->wake();
}

bool engine::is_sequence_paused(const std::string& sequence_id) const {
    std::lock_guard lock(impl_->mu);
    return impl_->sequence_pauses.count(sequence_id) != 0;
}

std::vector<std::uint64_t> engine::record_reply(const principal& who, std::string_view from) {
    auto& s = *impl_;
    std::string_view mid = from;
    if (mid.starts_with('<') && mid.ends_with('>')) mid = mid.substr(1, mid.size() - 2);
    std::optional<enrollment> replied;
    if (!mid.empty())
        s.with_store(
            [&](store& st) { replied = st.find_enrollment_by_message(s.params.workspace, mid); });
    store_ops::stop_enrollments op;
    if (replied) {
        op = stop_for_reply(s, *replied, fmt::format("replied to <{}>", mid));
    } else {
        auto key = normalise_address(from, s.suppression_opts());
        if (!key)
            fail(errc::invalid_argument,
                 "neither a Message-ID an enrollment sent nor a valid email address");
        op = stop_address_for_reply(s, *key, "replied");
    }
    s.authorize(who, "enrollment.stop", "enrollment", op.address);
    return *commit_stop(s, who, std::move(op), "");
}

std::vector<std::uint64_t> engine::record_goal(const principal& who, std::string_view address,
                                               const std::string& sequence_id) {
    auto& s = *impl_;
    stop_scope scope = stop_scope::this_sequence;
    {
        std::lock_guard lock(s.mu);
        auto it = s.sequences.find(sequence_id);
        if (it == s.sequences.end())
            fail(errc::not_found, fmt::format("no sequence '{}'", sequence_id));
        if (it->second) scope = it->second->config().goal_stops;
    }
    auto key = normalise_address(address, s.suppression_opts());
    if (!key) fail(errc::invalid_address, "not a valid email address");
    s.authorize(who, "enrollment.stop", "sequence", sequence_id);
    store_ops::stop_enrollments op;
    op.address = *key;
    if (scope == stop_scope::this_sequence) op.sequence_id = sequence_id;
    op.reason = enrollment_stop::goal;
    op.detail = fmt::format("goal of sequence '{}' reached", sequence_id);
    op.at = s.clk->now();
    return *commit_stop(s, who, std::move(op), *key);
}

}  // namespace mailers
