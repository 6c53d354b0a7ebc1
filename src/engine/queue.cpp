// The paced send queue: engine::enqueue and friends, and the drain.
//
// Exactly once: an item's send reserves its ledger row under the item's key
// (handoff_key), and the store refuses a second row under one key. An item
// whose holder died after reserving comes back to `waiting`; the next
// holder's send answers `duplicate` with the row the first one made, and
// the item is finished with that send. So however often an item is claimed,
// at most one send is handed off for it.
#include "engine/queue.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cstring>
#include <future>

#include "core/post.hpp"
#include "decide/pacing.hpp"
#include "engine/engine_impl.hpp"
#include "engine/enrollments.hpp"
#include "json/writer.hpp"

namespace mailers {

using namespace detail;
namespace asio = boost::asio;

namespace detail {

namespace {

// "MQ" and a format version.
constexpr std::string_view request_magic{"MQ\x01", 3};

struct byte_writer {
    std::string out;
    void u32(std::uint32_t v) {
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    }
    void str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        out.append(s);
    }
    void flag(bool b) { out.push_back(b ? '\1' : '\0'); }
    void addr(const address& a) {
        str(a.local);
        str(a.domain);
        str(a.display_name);
    }
    template <class T, class F>
    void list(const std::vector<T>& v, F&& each) {
        u32(static_cast<std::uint32_t>(v.size()));
        for (const auto& x : v) each(x);
    }
};

struct byte_reader {
    std::string_view in;
    bool ok = true;
    std::uint32_t u32() {
        if (in.size() < 4) {
            ok = false;
            return 0;
        }
        std::uint32_t v = 0;
        for (int i = 0; i < 4; ++i)
            v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << (8 * i);
        in.remove_prefix(4);
        return v;
    }
    std::string str() {
        auto n = u32();
        if (!ok || in.size() < n) {
            ok = false;
            return {};
        }
        std::string s(in.substr(0, n));
        in.remove_prefix(n);
        return s;
    }
    bool flag() {
        if (in.empty()) {
            ok = false;
            return false;
        }
        const bool b = in.front() != '\0';
        in.remove_prefix(1);
        return b;
    }
    address addr() {
        address a;
        a.local = str();
        a.domain = str();
        a.display_name = str();
        return a;
    }
    // A count no longer than the bytes left could hold, so a corrupt count
    // cannot make a huge allocation.
    std::uint32_t count() {
        auto n = u32();
        if (n > in.size()) ok = false;
        return ok ? n : 0;
    }
};

}  // namespace

std::string encode_request(const send_request& r) {
    byte_writer w;
    w.out.append(request_magic);
    w.str(r.pool);
    w.str(r.mailbox);
    w.addr(r.to);
    w.list(r.cc, [&](const address& a) { w.addr(a); });
    w.list(r.bcc, [&](const address& a) { w.addr(a); });
    w.flag(r.reply_to.has_value());
    if (r.reply_to) w.addr(*r.reply_to);
    w.str(r.raw);
    w.str(r.subject);
    w.str(r.text);
    w.str(r.html);
    w.list(r.headers, [&](const header_field& h) {
        w.str(h.name);
        w.str(h.value);
    });
    w.list(r.attachments, [&](const attachment& a) {
        w.str(a.filename);
        w.str(a.content_type);
        w.str(a.data);
        w.str(a.content_id);
    });
    w.flag(r.unsubscribe.has_value());
    if (r.unsubscribe) {
        w.str(r.unsubscribe->url);
        w.str(r.unsubscribe->mailto);
    }
    w.str(r.in_reply_to);
    w.list(r.references, [&](const std::string& s) { w.str(s); });
    w.str(r.idempotency_key);
    w.str(r.actor.id);
    w.str(r.actor.display_name);
    return std::move(w.out);
}

boost::system::result<send_request> decode_request(std::string_view bytes) {
    if (bytes.substr(0, request_magic.size()) != request_magic)
        return make_error_code(errc::store_corrupt);
    byte_reader rd{bytes.substr(request_magic.size())};
    send_request r;
    r.pool = rd.str();
    r.mailbox = rd.str();
    r.to = rd.addr();
    for (auto n = rd.count(); n-- > 0 && rd.ok;) r.cc.push_back(rd.addr());
    for (auto n = rd.count(); n-- > 0 && rd.ok;) r.bcc.push_back(rd.addr());
    if (rd.flag()) r.reply_to = rd.addr();
    r.raw = rd.str();
    r.subject = rd.str();
    r.text = rd.str();
    r.html = rd.str();
    for (auto n = rd.count(); n-- > 0 && rd.ok;) {
        header_field h;
        h.name = rd.str();
        h.value = rd.str();
        r.headers.push_back(std::move(h));
    }
    for (auto n = rd.count(); n-- > 0 && rd.ok;) {
        attachment a;
        a.filename = rd.str();
        a.content_type = rd.str();
        a.data = rd.str();
        a.content_id = rd.str();
        r.attachments.push_back(std::move(a));
    }
    if (rd.flag()) {
        list_unsubscribe u;
        u.url = rd.str();
        u.mailto = rd.str();
        r.unsubscribe = std::move(u);
    }
    r.in_reply_to = rd.str();
    for (auto n = rd.count(); n-- > 0 && rd.ok;) r.references.push_back(rd.str());
    r.idempotency_key = rd.str();
    r.actor.id = rd.str();
    r.actor.display_name = rd.str();
    if (!rd.ok || !rd.in.empty()) return make_error_code(errc::store_corrupt);
    return r;
}

std::string handoff_key(const queued_send& item) {
    return item.idempotency_key.empty() ? fmt::format("queue:{}", item.id) : item.idempotency_key;
}

std::string_view wait_reason_name(ineligible_reason r) noexcept {
    switch (r) {
        case ineligible_reason::paused:
        case ineligible_reason::retired:
        case ineligible_reason::provider_paused:
        case ineligible_reason::domain_paused:
            return "paused";
        case ineligible_reason::outside_window:
            return "window";
        case ineligible_reason::min_gap:
            return "gap";
        case ineligible_reason::throttled:
            return "throttled";
        case ineligible_reason::unhealthy:
        case ineligible_reason::probe_in_flight:
            return "breaker";
        default:
            return "cap";
    }
}

namespace {

// Why nothing can send `req` now, and when that lifts if known: the reason
// of the candidate mailbox that frees up first, as the send path judged it
// (its own state, pauses, window, gap, the store's refusals, caps, quotas).
std::pair<std::string, std::optional<time_point>> why_waiting(engine::impl& s,
                                                              const send_request& req,
                                                              time_point now) {
    domain_counts domains;
    if (auto n = normalise_address(req.to.addr_spec(), s.suppression_opts()))
        domains.emplace_back(n->substr(n->rfind('@') + 1), 1);
    std::lock_guard lock(s.mu);
    if (s.is_paused_locked(pause_scope::workspace, "") ||
        (!req.pool.empty() && s.is_paused_locked(pause_scope::pool, req.pool)))
        return {"paused", std::nullopt};
    std::vector<mailbox_rt*> candidates;
    if (!req.pool.empty()) {
        if (auto p = s.pools.find(req.pool); p != s.pools.end()) candidates = p->second.members;
    } else if (auto m = s.mailboxes.find(req.mailbox); m != s.mailboxes.end()) {
        candidates.push_back(&m->second);
    }
    std::optional<eligibility> best;
    for (auto* mb : candidates) {
        auto e = s.check(*mb, req.pool, domains, now);
        // One that could send lost to a cap the store counted for others.
        if (e.ok()) return {"cap", std::nullopt};
        if (!best || (e.next && (!best->next || *e.next < *best->next))) best = e;
    }
    if (!best) return {"paused", std::nullopt};
    return {std::string(wait_reason_name(best->reason)), best->next};
}

duration backoff(const engine::impl& s, std::uint32_t checks) {
    const auto step = std::chrono::duration_cast<duration>(s.params.queue_recheck);
    const auto cap = std::chrono::duration_cast<duration>(s.params.queue_max_backoff);
    auto d = step;
    for (std::uint32_t i = 1; i < checks && d < cap; ++i) d *= 2;
    return std::clamp(d, std::chrono::duration_cast<duration>(std::chrono::seconds(1)),
                      std::max(cap, step));
}

std::string outcome_word(error_code ec, const send_result& r) {
    if (ec == errc::suppressed) return "suppressed";
    if (r.state) return std::string(to_string(*r.state));
    return "refused";
}

}  // namespace

commit_reply commit_now(engine::impl& s, std::vector<store_op> ops) {
    commit_reply reply;
    std::promise<void> done;
    s.writer->enqueue(std::move(ops), [&](commit_reply&& r) {
        reply = std::move(r);
        done.set_value();
    });
    done.get_future().wait();
    if (reply.ec) throw exception(reply.ec, reply.diag);
    return reply;
}

send_queue::send_queue(engine::impl& s) : s_(s) {}

send_queue::~send_queue() {
    stop();
}

void send_queue::start() {
    std::lock_guard lock(mu_);
    // Started without drain_queue too: it also sees the ends of the items
    // this engine's async_enqueue callers wait for.
    if (started_) return;
    started_ = true;
    thread_ = std::thread([this] { loop(); });
}

void send_queue::stop() {
    std::multimap<std::uint64_t, waiter> gone;
    {
        std::lock_guard lock(mu_);
        stop_ = true;
        gone.swap(waiters_);
    }
    cv_.notify_all();
    if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
    for (auto& [id, w] : gone)
        complete_later(s_.ex, std::move(w.handler), make_error_code(errc::operation_aborted),
                       queued_send{});
}

void send_queue::wake() {
    {
        std::lock_guard lock(mu_);
        wake_ = true;
    }
    cv_.notify_all();
}

void send_queue::wait_for(std::uint64_t id, done_handler h) {
    std::unique_lock lock(mu_);
    if (stop_) {
        lock.unlock();
        complete_later(s_.ex, std::move(h), make_error_code(errc::operation_aborted),
                       queued_send{});
        return;
    }
    waiters_.emplace(id, waiter{std::move(h), asio::make_work_guard(s_.ex)});
}

void send_queue::ended(const queued_send& item) {
    std::vector<waiter> ready;
    {
        std::lock_guard lock(mu_);
        auto [b, e] = waiters_.equal_range(item.id);
        for (auto it = b; it != e; ++it) ready.push_back(std::move(it->second));
        waiters_.erase(b, e);
    }
    for (auto& w : ready) complete_later(s_.ex, std::move(w.handler), error_code{}, item);
}

void send_queue::loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
        cv_.wait_for(lock, s_.params.queue_poll_interval, [&] { return stop_ || wake_; });
        if (stop_) break;
        wake_ = false;
        lock.unlock();
        try {
            drain_once();
            poll_waiters();
            purge_ended();
        } catch (const std::exception& e) {
            s_.params.log.log(log_level::error,
                              fmt::format("draining the send queue failed: {}", e.what()));
        }
        lock.lock();
    }
}

void send_queue::purge_ended() {
    const auto keep = std::chrono::duration_cast<duration>(s_.params.queue_retention);
    const auto now = s_.clk->now();
    if (keep <= duration::zero() || !s_.params.drain_queue ||
        now - last_purge_ < std::chrono::hours(1))
        return;
    last_purge_ = now;
    const auto n = s_.params.storage->purge_queued(s_.params.workspace, now - keep);
    if (n > 0) s_.params.log.log(log_level::info, fmt::format("{} ended queue items forgotten", n));
}

void send_queue::drain_once() {
    std::size_t room = 0;
    {
        std::lock_guard lock(mu_);
        room = s_.params.queue_in_flight > in_flight_ ? s_.params.queue_in_flight - in_flight_ : 0;
    }
    const auto member = s_.member.load();
    // Without a valid lease nothing may be handed off: leave the items to
    // members that have one.
    if (!s_.params.drain_queue || member == 0 || s_.fenced() || s_.cancelled) return;
    // Due sequence steps become queue items first, so a step due now can go
    // in this very claim.
    constexpr std::size_t plan_batch = 256;
    try {
        if (plan_due_steps(s_, plan_batch) == plan_batch) {
            std::lock_guard lock(mu_);
            wake_ = true;
        }
    } catch (const std::exception& e) {
        // A store without enrollments (written before them) still drains.
        s_.params.log.log(log_level::error,
                          fmt::format("planning due sequence steps failed: {}", e.what()));
    }
    if (room == 0) return;
    auto items = s_.params.storage->claim_queued(s_.params.workspace, member, s_.clk->now(), room);
    {
        std::lock_guard lock(mu_);
        in_flight_ += items.size();
        // A full claim may have left due items behind.
        if (items.size() == room) wake_ = true;
    }
    for (auto& item : items) hand_off(std::move(item));
}

void send_queue::poll_waiters() {
    std::vector<std::uint64_t> ids;
    {
        std::lock_guard lock(mu_);
        for (auto it = waiters_.begin(); it != waiters_.end(); it = waiters_.upper_bound(it->first))
            ids.push_back(it->first);
    }
    for (auto id : ids) {
        auto item = s_.params.storage->find_queued(s_.params.workspace, id);
        if (item && (item->state == queue_state::done || item->state == queue_state::cancelled))
            ended(*item);
    }
}

void send_queue::hand_off(queued_send item) {
    auto req = decode_request(item.request);
    if (!req) {
        commit_end(item, store_ops::finish_queued{item.id, item.claimed_by, queue_state::done, 0,
                                                  "refused: the stored request cannot be read",
                                                  s_.clk->now()});
        return;
    }
    if (auto k = parse_step_key(item)) {
        const auto now = s_.clk->now();
        std::string why;
        step_verdict v = step_verdict::hand_off;
        try {
            v = check_step(s_, item, *k, why);
        } catch (const std::exception& e) {
            commit_end(item, store_ops::defer_queued{item.id, item.claimed_by,
                                                     now + backoff(s_, item.checks), "error",
                                                     e.what(), now});
            return;
        }
        if (v == step_verdict::paused) {
            commit_end(item, store_ops::defer_queued{item.id, item.claimed_by,
                                                     now + backoff(s_, item.checks), "paused",
                                                     std::move(why), now});
            return;
        }
        if (v == step_verdict::drop) {
            commit_end(item,
                       store_ops::finish_queued{item.id, item.claimed_by, queue_state::cancelled, 0,
                                                std::move(why), now});
            return;
        }
    }
    if (item.origin.starts_with("campaign:")) {
        // A cancelled campaign's item that a start racing the cancel queued.
        bool cancelled = false;
        {
            std::lock_guard lock(s_.mu);
            auto it = s_.campaigns.find(item.origin.substr(9));
            cancelled = it != s_.campaigns.end() && it->second.cancelled;
        }
        if (cancelled) {
            commit_end(item, store_ops::finish_queued{
                                 item.id, item.claimed_by, queue_state::cancelled, 0,
                                 "cancelled: the campaign was cancelled", s_.clk->now()});
            return;
        }
    }
    // Spread: the target's sends leave on paced slots over its budgets
    // and its window, not in a burst when the window opens or a batch is
    // queued. An item already given a time by pacing (it waited for its
    // slot, a cap or a gap) takes it.
    if (item.wait_reason != "pace" && item.wait_reason != "cap" && item.wait_reason != "gap") {
        const auto now = s_.clk->now();
        if (auto wait = slot(*req, now, item.id)) {
            commit_end(item, store_ops::defer_queued{
                                 item.id, item.claimed_by, wait->first, wait->second,
                                 wait->second == "pace" ? "waits for its paced slot"
                                                        : "no paced slot left in this window",
                                 now});
            return;
        }
    }
    // The request's own key when it has one: a sequence step's item is
    // queued under a key per plan, its send under one key per step.
    if (req->idempotency_key.empty()) req->idempotency_key = handoff_key(item);
    auto r = *req;
    s_.start_send(std::move(*req), [self = s_.shared_from_this(), item = std::move(item),
                                    r = std::move(r)](error_code ec, send_result res) mutable {
        if (self->queue) self->queue->on_outcome(item, ec, res, r);
    });
}

void send_queue::on_outcome(const queued_send& item, error_code ec, const send_result& r,
                            const send_request& req) {
    const auto now = s_.clk->now();
    const auto defer = [&](std::string reason, std::optional<time_point> due, std::string detail) {
        // Never due at once: an item nothing can send now would be claimed
        // again straight away.
        const auto floor = now + std::chrono::seconds(1);
        const auto at = due && *due > floor ? *due : now + backoff(s_, item.checks);
        commit_end(item, store_ops::defer_queued{item.id, item.claimed_by, at, std::move(reason),
                                                 std::move(detail), now});
    };
    const auto step = parse_step_key(item);
    // A sequence step's end is recorded on its enrollment in the same commit.
    const auto finish = [&](std::uint64_t send_id, std::string detail, step_outcome o) {
        std::optional<store_op> also;
        if (step) also = step_outcome_op(s_, item, *step, o, r, req, detail, now);
        commit_end(item,
                   store_ops::finish_queued{item.id, item.claimed_by, queue_state::done, send_id,
                                            std::move(detail), now},
                   std::move(also));
    };
    // A send still `reserved` is another engine's, in flight or dead: what
    // became of it is not known here.
    const auto sent_or_failed = [&] {
        return r.state == send_state::failed     ? step_outcome::failed
               : r.state == send_state::accepted ? step_outcome::sent
                                                 : step_outcome::unknown;
    };
    const auto send_id = r.send_id.empty() ? 0 : std::stoull(r.send_id);
    const auto with_diag = [&](std::string word) {
        return r.diag.message.empty() ? word : fmt::format("{}: {}", word, r.diag.message);
    };
    if (ec == errc::duplicate) {
        // Taken again after its send was reserved: that send is the item's.
        finish(send_id,
               fmt::format("{}: send {} was already made for this item",
                           r.state ? to_string(*r.state) : "reserved", send_id),
               sent_or_failed());
    } else if (!ec || r.state) {
        // It became a send (handed off, or refused at hand-off): final.
        finish(send_id, with_diag(outcome_word(ec, r)),
               ec == errc::suppressed ? step_outcome::suppressed
               : r.state              ? sent_or_failed()
                                      : step_outcome::failed);
    } else if (ec == errc::no_capacity) {
        auto [reason, next] = why_waiting(s_, req, now);
        auto due = r.retry_at ? r.retry_at : next;
        if (due && (reason == "cap" || reason == "gap")) due = paced(req, *due, item.id);
        defer(std::move(reason), due, with_diag("no capacity"));
    } else if (ec == errc::paused) {
        defer("paused", std::nullopt, with_diag("paused"));
    } else if (ec == errc::suppressed) {
        finish(0, with_diag("suppressed"), step_outcome::suppressed);
    } else if (ec == errc::store_error || ec == errc::store_corrupt ||
               ec == errc::operation_aborted || ec == errc::commit_outcome_unknown) {
        defer("error", std::nullopt, with_diag(ec.message()));
    } else {
        // Input the workspace no longer accepts (a pool removed, a limit
        // lowered): it will not get better by waiting.
        finish(0, with_diag("refused"), step_outcome::failed);
    }
}

send_queue::pace_target send_queue::target_of(const send_request& req, time_point from) const {
    // The target's budget per window length: what its mailboxes may send
    // together in one period, spent evenly from `from` on.
    pace_target t;
    t.key = req.pool.empty() ? "mailbox:" + req.mailbox : "pool:" + req.pool;
    t.in.now = from;
    std::map<std::chrono::seconds, std::uint64_t> per_length;
    bool every_member_windowed = true;
    {
        std::lock_guard lock(s_.mu);
        std::vector<const mailbox_rt*> members;
        if (!req.pool.empty()) {
            if (auto p = s_.pools.find(req.pool); p != s_.pools.end())
                members.assign(p->second.members.begin(), p->second.members.end());
        } else if (auto m = s_.mailboxes.find(req.mailbox); m != s_.mailboxes.end()) {
            members.push_back(&m->second);
        }
        for (const auto* mb : members) {
            for (const auto& l : mb->limits) per_length[l.length] += l.max;
            // A pool's sends spread over its members, each with its own gap.
            if (members.size() == 1) t.in.min_gap = mb->cfg.min_gap;
            t.in.jitter = std::max<duration>(t.in.jitter, mb->cfg.jitter);
            // Budgets end when the target's send windows close, not a whole
            // period later: spread over the period, a day's cap would
            // never be reached in an eight-hour window. A pool's end is
            // its members' latest close, and it opens again with the
            // first of them to open.
            const auto close =
                mb->zone ? window_close(mb->cfg.window, mb->zone, from) : std::nullopt;
            if (!close) {
                every_member_windowed = false;
                continue;
            }
            t.window_end = std::max(t.window_end.value_or(*close), *close);
            if (auto open = next_window_open(mb->cfg.window, mb->zone, from))
                t.opens_at = std::min(t.opens_at.value_or(*open), *open);
            if (auto open = next_window_open(mb->cfg.window, mb->zone, *close))
                t.next_open = std::min(t.next_open.value_or(*open), *open);
        }
    }
    if (!every_member_windowed) {
        t.window_end.reset();
        t.opens_at.reset();
    }
    for (const auto& [length, max] : per_length)
        t.budgets.push_back(
            {max, t.window_end ? std::min(from + length, *t.window_end) : from + length});
    return t;
}

std::optional<send_queue::paced_slot> send_queue::next_slot(pace_target& t, std::uint64_t seed,
                                                            bool take_past_window) {
    std::lock_guard lock(mu_);
    auto& last = last_slot_[t.key];
    t.in.last_send = last;
    auto plain = t.in;
    plain.jitter = duration::zero();
    const auto base = decide::next_paced_send(t.budgets, plain, seed);
    const auto at = decide::next_paced_send(t.budgets, t.in, seed);
    if (!base || !at) return std::nullopt;
    if (!take_past_window && t.window_end && *base >= *t.window_end) return paced_slot{*at, false};
    last = *base;
    return paced_slot{*at, true};
}

time_point send_queue::paced(const send_request& req, time_point from, std::uint64_t seed) {
    auto t = target_of(req, from);
    if (t.budgets.empty() && t.in.min_gap <= duration::zero()) return from;
    const auto s = next_slot(t, seed, true);
    return s ? s->at : from;
}

std::optional<std::pair<time_point, std::string>> send_queue::slot(const send_request& req,
                                                                   time_point now,
                                                                   std::uint64_t seed) {
    auto t = target_of(req, now);
    // A target open around the clock hands due items off as fast as its
    // caps and gap allow; only a window's opening is spread.
    if (!t.window_end || (t.budgets.empty() && t.in.min_gap <= duration::zero()))
        return std::nullopt;
    // Slots are given from the opening on, not from a time it is closed.
    if (t.opens_at && *t.opens_at > now) return std::pair{*t.opens_at, std::string("window")};
    const auto s = next_slot(t, seed, false);
    if (!s) return std::nullopt;  // a budget is spent: the send path says why
    if (!s->taken) {
        // No slot left in this opening: the next one paces it afresh.
        if (t.next_open) return std::pair{*t.next_open, std::string("window")};
        return std::nullopt;
    }
    if (s->at <= now) return std::nullopt;
    return std::pair{s->at, std::string("pace")};
}

void send_queue::commit_end(const queued_send& item, store_op op, std::optional<store_op> also) {
    auto end = item;
    end.updated_at = s_.clk->now();
    if (const auto* f = std::get_if<store_ops::finish_queued>(&op)) {
        end.state = f->state;
        end.send_id = f->send_id;
        end.detail = f->detail;
        end.claimed_by = 0;
    }
    const bool finished = std::holds_alternative<store_ops::finish_queued>(op);
    std::vector<store_op> ops;
    ops.push_back(std::move(op));
    if (also) ops.push_back(std::move(*also));
    s_.writer->enqueue(std::move(ops), [this, end = std::move(end), finished](commit_reply&& r) {
        if (r.ec)
            s_.params.log.log(log_level::error,
                              fmt::format("queue item {} not updated: {}", end.id, r.diag.message));
        else if (!r.ops.empty() && !r.ops.front().applied)
            s_.params.log.log(
                log_level::warning,
                fmt::format("queue item {} was no longer this engine's to update", end.id));
        else if (finished)
            ended(end);
        {
            std::lock_guard lock(mu_);
            if (in_flight_ > 0) --in_flight_;
            wake_ = true;
        }
        cv_.notify_all();
    });
}

}  // namespace detail

// --- engine ------------------------------------------------------------------

namespace {

using detail::commit_now;

// The item stored for `req`, or the existing one holding its key.
std::pair<std::uint64_t, std::shared_ptr<const queued_send>> enqueue_item(
    engine::impl& s, send_request req, const enqueue_options& opts) {
    if (opts.origin.size() > 512 || has_crlf(opts.origin))
        fail(errc::invalid_argument, "origin must be at most 512 octets without CR, LF or NUL");
    std::string why, domain;
    if (auto ec = s.check_send(req, why, domain)) throw exception(ec, std::move(why));
    queued_send item;
    item.idempotency_key = req.idempotency_key;
    item.pool = req.pool;
    item.mailbox = req.mailbox;
    item.recipient_domain = std::move(domain);
    item.origin = opts.origin;
    item.enqueued_at = s.clk->now();
    item.not_before = opts.not_before == time_point{} ? item.enqueued_at : opts.not_before;
    item.request = encode_request(req);
    std::vector<store_op> ops;
    ops.push_back(store_ops::enqueue{std::move(item)});
    auto reply = commit_now(s, std::move(ops));
    if (reply.ops.empty()) fail(errc::store_error, "the store gave no result for an enqueue");
    const auto& q = reply.ops.front().queue;
    if (q.status == enqueue_status::enqueued && s.queue) s.queue->wake();
    return {q.id, q.status == enqueue_status::duplicate ? q.existing : nullptr};
}

}  // namespace

std::uint64_t engine::enqueue(send_request req, const enqueue_options& opts) {
    return enqueue_item(*impl_, std::move(req), opts).first;
}

void engine::async_enqueue_impl(
    const std::shared_ptr<impl>& state, send_request req, enqueue_options opts,
    boost::asio::any_completion_handler<void(error_code, queued_send)> handler) {
    std::uint64_t id = 0;
    std::shared_ptr<const queued_send> existing;
    try {
        std::tie(id, existing) = enqueue_item(*state, std::move(req), opts);
    } catch (const exception& e) {
        complete_later(state->ex, std::move(handler), e.code(), queued_send{});
        return;
    } catch (const std::exception&) {
        complete_later(state->ex, std::move(handler), make_error_code(errc::store_error),
                       queued_send{});
        return;
    }
    if (existing &&
        (existing->state == queue_state::done || existing->state == queue_state::cancelled)) {
        complete_later(state->ex, std::move(handler), error_code{}, *existing);
        return;
    }
    state->queue->wait_for(id, std::move(handler));
    // It may have ended between the enqueue and the registration.
    if (auto item = state->params.storage->find_queued(state->params.workspace, id);
        item && (item->state == queue_state::done || item->state == queue_state::cancelled))
        state->queue->ended(*item);
}

bool engine::cancel_queued(const principal& who, std::uint64_t id) {
    auto& s = *impl_;
    s.authorize(who, "queue.cancel", "queue", std::to_string(id));
    auto item = find_queued(id);
    if (!item) fail(errc::not_found, fmt::format("no queue item {}", id));
    if (item->state == queue_state::claimed)
        fail(errc::invalid_argument,
             fmt::format("queue item {} is being handed off by member {} and cannot be "
                         "cancelled; try again once it waits or has ended",
                         id, item->claimed_by));
    if (item->state != queue_state::waiting) return false;
    const auto now = s.clk->now();
    const auto state_json = [&](std::string_view st) {
        std::string out;
        json::writer(out)
            .begin_object()
            .member("id", id)
            .member("state", st)
            .member("origin", item->origin)
            .end_object();
        return out;
    };
    std::vector<store_op> ops;
    ops.push_back(store_ops::cancel_queued{id, fmt::format("cancelled by {}", who.id), now});
    ops.push_back(
        store_ops::append_audit{s.next_audit(who, "queue.cancel", "queue", std::to_string(id),
                                             state_json("waiting"), state_json("cancelled")),
                                s.params.audit_key});
    auto reply = commit_now(s, std::move(ops));
    if (!reply.ops.empty() && !reply.ops.front().applied) {
        // Claimed in the moment between the look and the commit: the
        // record above says a cancel was asked; this one says it did not
        // take, so the log never claims a cancel that did not happen.
        std::vector<store_op> undo;
        const auto was = reply.ops.front().queue.state;
        undo.push_back(store_ops::append_audit{
            s.next_audit(who, "queue.cancel_refused", "queue", std::to_string(id), {},
                         state_json(was ? to_string(*was) : "missing")),
            s.params.audit_key});
        commit_now(s, std::move(undo));
        fail(errc::invalid_argument,
             fmt::format("queue item {} was taken for hand-off as it was cancelled", id));
    }
    if (s.queue) {
        auto ended = *item;
        ended.state = queue_state::cancelled;
        ended.updated_at = now;
        s.queue->ended(ended);
    }
    return true;
}

std::optional<queued_send> engine::find_queued(std::uint64_t id) const {
    std::optional<queued_send> out;
    impl_->with_store([&](store& st) { out = st.find_queued(impl_->params.workspace, id); });
    return out;
}

std::vector<queued_send> engine::queued(const queue_filter& filter) const {
    std::vector<queued_send> out;
    impl_->with_store([&](store& st) {
        st.for_each_queued(impl_->params.workspace, filter,
                           [&](const queued_send& q) { out.push_back(q); });
    });
    return out;
}

queue_summary engine::queue_counts() const {
    queue_summary out;
    impl_->with_store([&](store& st) { out = st.count_queued(impl_->params.workspace); });
    return out;
}

std::optional<time_point> engine::next_due() const {
    std::optional<time_point> out;
    impl_->with_store([&](store& st) {
        const auto& ws = impl_->params.workspace;
        out = st.count_queued(ws).next_due;
        // Due enrollments come earliest first: the first one due before the
        // end of time is the next one due.
        auto first = st.due_enrollments(ws, time_point::max(), 1);
        if (!first.empty() && first.front().next_due && (!out || *first.front().next_due < *out))
            out = first.front().next_due;
    });
    return out;
}

send_request engine::queued_request(const queued_send& item) {
    auto r = decode_request(item.request);
    if (!r)
        throw exception(
            make_error_code(errc::store_corrupt),
            fmt::format("queue item {} holds a request this version cannot read", item.id));
    return std::move(*r);
}

}  // namespace mailers
