// engine: start-up, configuration, suppression, pause, audit and events.
// The send pipeline is in send_pipeline.cpp, decisions in decisions.cpp.
#include <fmt/format.h>
#include <openssl/evp.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <cmath>
#include <future>
#include <istream>
#include <mailers/dsn.hpp>
#include <mailers/transport_factory.hpp>
#include <memory>
#include <ostream>

#include "config/secret_ref.hpp"
#include "decide/caps.hpp"
#include "engine/engine_impl.hpp"
#include "engine/enrollments.hpp"
#include "engine/outbox.hpp"
#include "engine/queue.hpp"
#include "engine/serialize.hpp"
#include "json/writer.hpp"
#include "mime/text.hpp"
#include "suppression/csv.hpp"

namespace mailers {

using namespace detail;

namespace {

// Text that goes into a header as it is: UTF-8 without control characters
// (tab, which folding turns into a space, aside).
bool header_text_ok(std::string_view s) {
    return mime::is_valid_utf8(s) && std::none_of(s.begin(), s.end(), [](char c) {
               const auto u = static_cast<unsigned char>(c);
               return (u < 0x20 && u != '\t') || u == 0x7f;
           });
}

// SHA-256 fed piece by piece, so a digest over millions of values needs
// no copy of them.
class sha256_stream {
public:
    sha256_stream() : ctx_(EVP_MD_CTX_new()) {
        if (!ctx_ || EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) != 1)
            fail(errc::store_error, "SHA-256 is unavailable from OpenSSL");
    }
    void update(std::string_view data) { EVP_DigestUpdate(ctx_.get(), data.data(), data.size()); }
    std::string hex() {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned int len = 0;
        EVP_DigestFinal_ex(ctx_.get(), md, &len);
        static constexpr char digits[] = "0123456789abcdef";
        std::string out;
        for (unsigned i = 0; i < len; ++i) {
            out += digits[md[i] >> 4];
            out += digits[md[i] & 15];
        }
        return out;
    }

private:
    struct ctx_free {
        void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
    };
    std::unique_ptr<EVP_MD_CTX, ctx_free> ctx_;
};

std::vector<effective_limit> to_effective(const std::vector<rate_limit>& limits) {
    std::vector<effective_limit> out;
    out.reserve(limits.size());
    for (const auto& l : limits) out.push_back({l.max, l.length, l.kind});
    return out;
}

std::chrono::seconds horizon_of(const std::vector<rate_limit>& limits) {
    std::chrono::seconds h{86400};
    for (const auto& l : limits) h = std::max(h, l.length);
    // A calendar day can be 25 hours long across a DST change.
    return h + std::chrono::seconds(7200);
}

error_code validate_limits(const std::vector<rate_limit>& limits, std::string& why) {
    for (const auto& l : limits) {
        if (l.length.count() <= 0 || l.length > max_window_length) {
            why = fmt::format("window length {} s is outside 1 s .. 7 days", l.length.count());
            return make_error_code(errc::invalid_argument);
        }
        if (l.kind == window_kind::calendar && l.length != std::chrono::seconds(60) &&
            l.length != std::chrono::seconds(3600) && l.length != std::chrono::seconds(86400)) {
            why = "a calendar window must be one minute, one hour or one day";
            return make_error_code(errc::invalid_argument);
        }
    }
    return {};
}

}  // namespace

// --- impl --------------------------------------------------------------------

engine::impl::impl(boost::asio::any_io_executor e, engine_params p)
    : ex(e), events_strand(boost::asio::make_strand(e)), params(std::move(p)) {
    if (!params.storage) fail(errc::invalid_argument, "engine_params.storage is required");
    clk = params.clock ? params.clock : default_clock();
    std::uint64_t seed = params.random_seed;
    if (seed == 0)
        seed = (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
    rng.seed(seed);
    writer = std::make_unique<commit_writer>(params.storage, params.workspace, params.max_batch,
                                             params.log);
}

engine::impl::~impl() {
    // Stopped, not destroyed: the writer's last callbacks still report to it.
    if (queue) queue->stop();
    if (outbox) outbox->stop();
    stop_rule_worker();
    stop_membership();
    writer->stop();
}

void engine::impl::load() {
    // Join before reading: a change committed after we joined waits for our
    // acknowledgement, and one committed before is in what we read.
    start_membership();
    auto now = clk->now();
    const auto since =
        now - std::chrono::duration_cast<duration>(max_window_length + std::chrono::hours(2));
    // The keys go straight from the store into the index: a start with
    // millions of entries holds no entry objects.
    store_snapshot snap;
    {
        std::unique_lock sl(supp_mu);
        snap = params.storage->load_keys(
            params.workspace, since,
            [&](suppression_kind kind, std::string_view value) { index_insert(kind, value); });
    }
    if (!suppression_settings_current(snap)) {
        // New settings re-key the stored entries, which needs them whole: a
        // first start, or a fold changed by the host.
        snap = params.storage->load(params.workspace, since);
        std::unique_lock sl(supp_mu);
        index.clear();
        erased_entries = 0;
        std::size_t domains = 0;
        for (const auto& e : snap.suppressions) domains += e.kind == suppression_kind::domain;
        index.reserve(snap.suppressions.size() - domains, domains);
        for (const auto& e : snap.suppressions) index_insert(e.kind, e.value);
    }

    std::lock_guard feed(feed_mu);
    std::lock_guard lock(mu);
    // An object that cannot be read stops the start: dropping it would send
    // without a cap or a pool rule the workspace has.
    auto unreadable = [&](const stored_object& o, error_code ec) {
        fail(errc::store_corrupt,
             fmt::format("workspace '{}': the stored {} '{}' cannot be read: {}", params.workspace,
                         o.kind, o.id, ec.message()));
    };
    for (const auto& o : snap.objects) {
        if (o.kind == "mailbox") {
            auto m = mailbox_from_json(o.json);
            if (!m) unreadable(o, m.error());
            if (auto ec = apply_mailbox(*m, false)) unreadable(o, ec);
        } else if (o.kind == "pool") {
            auto p = pool_from_json(o.json);
            if (!p) unreadable(o, p.error());
            pools[p->id].cfg = *p;  // resolved below, once every mailbox is loaded
        } else if (o.kind == "quota") {
            auto q = quota_from_json(o.json);
            if (!q) unreadable(o, q.error());
            if (auto ec = apply_quota(*q)) unreadable(o, ec);
        } else if (o.kind == "pause") {
            pauses[o.id] = o.json;
        } else if (o.kind == "sequence.pause") {
            sequence_pauses[o.id] = o.json;
        } else if (o.kind == "campaign") {
            apply_campaign_object(o);
        } else if (o.kind == "provider") {
            apply_provider_object(o);
        } else if (apply_access_object(o)) {
        } else if (o.kind == "sequence") {
            auto c = sequence_config_from_json(o.json);
            if (!c) unreadable(o, c.error());
            sequence_error err;
            auto s = sequence::compile(std::move(*c), &err);
            if (!s)
                fail(errc::store_corrupt,
                     fmt::format("workspace '{}': the stored sequence '{}' is not valid: {}",
                                 params.workspace, o.id, err.to_string()));
            sequences.insert_or_assign(o.id, std::move(*s));
        } else if (o.kind == "audit" && o.id == "key") {
            audit_key_mark = o.json;
        } else if (o.kind == "settings" && o.id == "erasure") {
            if (auto why = apply_erasure_object(o); !why.empty())
                fail(errc::invalid_argument, std::move(why));
        } else if (apply_webhook_object(o)) {
        } else if (apply_rules_object(o)) {
        }
    }
    for (auto& [id, p] : pools) rebuild(p, mailboxes);
    // Every commit that writes an object or a suppression publishes a
    // change seq, so a workspace holding one at seq 0 has lost its own
    // record in the store (its change seq, last send id and audit head):
    // carrying on would number its changes and sends again from the start.
    if (snap.change_seq == 0) {
        std::shared_lock sl(supp_mu);
        if (!snap.objects.empty() || !snap.recent_sends.empty() || index.size() != 0)
            fail(errc::store_missing,
                 fmt::format("workspace '{}': the store has lost the workspace's record (its "
                             "change seq, send ids and audit head) but holds {} objects, {} "
                             "suppressions and {} recent sends of it",
                             params.workspace, snap.objects.size(), index.size(),
                             snap.recent_sends.size()));
    }
    {
        std::unique_lock sl(supp_mu);
        plan_suppression_settings(snap);
    }
    count_recent_sends(snap.recent_sends);
    applied_seq = snap.change_seq;
}

void engine::impl::count_recent_sends(const std::vector<ledger_row>& rows) {
    // The counters start from every process's recent reservations; from
    // here on they see only this engine's, and the store's refusals.
    for (const auto& row : rows) {
        if (row.state == send_state::failed) continue;
        auto it = mailboxes.find(row.mailbox);
        if (it == mailboxes.end()) continue;
        auto& mb = it->second;
        mb.counter.add(row.reserved_at);
        auto gap_end = row.reserved_at + std::chrono::duration_cast<duration>(mb.cfg.min_gap);
        if (gap_end > mb.gap_until) mb.gap_until = gap_end;
        auto at = row.recipient.rfind('@');
        std::string rdomain =
            at == std::string::npos ? std::string() : row.recipient.substr(at + 1);
        for_each_quota_counter(mb, rdomain,
                               [&](quota_rt&, rate_counter& c) { c.add(row.reserved_at); });
        if (row.state == send_state::accepted && !row.pool.empty()) {
            auto p = pools.find(row.pool);
            if (p != pools.end() && p->second.cfg.policy.sticky_sender)
                p->second.sticky[row.recipient] = row.mailbox;
        }
    }
}

void engine::impl::start_sync() {
    // Acknowledge what we loaded, then keep up.
    renew_or_reattach();
    sync_thread = std::thread([this] { sync_loop(); });
}

void engine::impl::with_store(const std::function<void(store&)>& fn) const {
    std::exception_ptr err;
    std::promise<void> done;
    writer->run([&](store& st) {
        try {
            fn(st);
        } catch (...) {
            err = std::current_exception();
        }
        done.set_value();
    });
    done.get_future().wait();
    if (err) std::rethrow_exception(err);
}

error_code engine::impl::apply_mailbox(const mailbox_config& cfg, bool keep_runtime) {
    auto zone = find_zone(cfg.time_zone);
    if (!zone) return make_error_code(errc::unknown_time_zone);
    auto domain = domain_to_ascii(cfg.from.domain);
    auto& mb = mailboxes[cfg.id];
    if (!keep_runtime) mb = mailbox_rt{};
    mb.cfg = cfg;
    mb.cap_key = decide::mailbox_key(cfg.id);
    mb.zone = zone;
    mb.sender_domain = domain ? *domain : cfg.from.domain;
    mb.limits = to_effective(cfg.limits);
    mb.horizon = horizon_of(cfg.limits);
    // A new configuration is a deliberate act: clear an auth failure.
    mb.auth_failed = false;
    return {};
}

error_code engine::impl::apply_quota(const quota& q) {
    auto zone = find_zone(q.time_zone);
    if (!zone) return make_error_code(errc::unknown_time_zone);
    auto& rt = quotas[{q.scope, q.key}];
    rt.q = q;
    rt.cap_key = decide::quota_key(q.scope, q.key);
    rt.object_id = quota_object_id(q.scope, q.key);
    rt.zone = zone;
    rt.limits = to_effective(q.limits);
    rt.horizon = horizon_of(q.limits);
    rt.unreadable = false;
    return {};
}

bool engine::impl::suppressed(const std::string& normalised) const {
    std::shared_lock lock(supp_mu);
    return suppressed_locked(normalised);
}

namespace {
void queue_audited(engine::impl& s, const principal& who, std::string_view action,
                   std::string_view type, std::string_view id, std::string before,
                   std::string after, std::vector<store_op> ops, commit_writer::done_fn done);
}  // namespace

void engine::impl::authorize(const principal& who, std::string_view action, std::string_view type,
                             std::string_view id) {
    std::string why = access_refusal(who, action, type, id);
    if (why.empty() && params.authorize && !params.authorize(who, access_request{action, type, id}))
        why = fmt::format("{} may not {} {} '{}'", who.id, action, type, id);
    if (why.empty()) return;
    // The refusal is recorded without waiting: it changes nothing else,
    // and a send refused on the host's executor must not block it.
    std::string after;
    json::writer(after).begin_object().member("action", action).member("reason", why).end_object();
    queue_audited(*this, who, "access.denied", type, id, {}, std::move(after), {},
                  [log = params.log](commit_reply&& r) {
                      if (r.ec)
                          log.log(
                              log_level::error,
                              fmt::format("a refusal could not be audited: {}", r.diag.message));
                  });
    fail(errc::permission_denied, std::move(why));
}

audit_record engine::impl::next_audit(const principal& who, std::string_view action,
                                      std::string_view type, std::string_view id,
                                      std::string before, std::string after) {
    // seq, prev_hash and hash are the writer's to give, in commit order.
    audit_record r;
    r.at = clk->now();
    r.actor = who.id;
    r.action = action;
    r.resource_type = type;
    r.resource_id = id;
    r.before = std::move(before);
    r.after = std::move(after);
    return r;
}

namespace {

// Appends the change's audit record to `ops` and queues them; the writer
// links the record into the chain when it commits it.
void queue_audited(engine::impl& s, const principal& who, std::string_view action,
                   std::string_view type, std::string_view id, std::string before,
                   std::string after, std::vector<store_op> ops, commit_writer::done_fn done) {
    ops.push_back(store_ops::append_audit{
        s.next_audit(who, action, type, id, std::move(before), std::move(after)),
        s.params.audit_key});
    s.writer->enqueue(std::move(ops), std::move(done));
}

// Replaces a reference by the key itself, before anything is hashed with it.
void resolve_audit_key(engine::impl& s) {
    std::string error;
    if (!detail::resolve_value(s.params.audit_key, "engine_params.audit_key", error))
        fail(errc::invalid_argument, std::move(error));
}

// Marks where the records hashed with this key start: verifying with the
// key needs such a record, which only a holder of the key can hash. One per
// key, not per start: the stored mark, an HMAC under the key that only a
// holder of it can make, says the key already has its record.
void record_audit_key(engine::impl& s) {
    if (s.params.audit_key.empty()) return;
    audit_record fingerprint;
    fingerprint.action = audit_key_action;
    fingerprint.resource_type = "audit";
    fingerprint.resource_id = s.params.workspace;
    std::string mark;
    json::writer(mark)
        .begin_object()
        .member("hmac", audit_hash(fingerprint, s.params.audit_key))
        .end_object();
    if (mark == s.audit_key_mark) return;
    std::vector<store_op> ops;
    ops.push_back(store_ops::put_object{stored_object{"audit", "key", mark}});
    s.mutate(principal::system(), audit_key_action, "audit", s.params.workspace, "",
             R"({"hash":"hmac-sha256"})", std::move(ops), {});
    s.audit_key_mark = std::move(mark);
}

}  // namespace

std::vector<op_result> engine::impl::mutate(const principal& who, std::string_view action,
                                            std::string_view type, std::string_view id,
                                            std::string before, std::string after,
                                            std::vector<store_op> ops,
                                            const std::function<void()>& apply) {
    const bool changes = std::any_of(ops.begin(), ops.end(), [](const store_op& op) {
        return !std::holds_alternative<store_ops::append_audit>(op);
    });
    const bool guarded = !ops.empty() && std::holds_alternative<store_ops::record_key>(ops[0]);
    // Only while the change is committed and applied here: while it waits
    // for the others below, the sync thread goes on applying and
    // acknowledging what they change meanwhile, which they may be waiting
    // for in turn.
    own_change_scope guard(*this);
    // A promise of void, not of the reply: std::future's types for a
    // library-private type would be exported from the shared library.
    commit_reply reply;
    std::promise<void> p;
    queue_audited(*this, who, action, type, id, std::move(before), std::move(after), std::move(ops),
                  [&](commit_reply&& r) {
                      reply = std::move(r);
                      p.set_value();
                  });
    p.get_future().wait();
    if (reply.ec) throw exception(reply.ec, reply.diag);
    // A duplicate: the engine that recorded the key first made the change,
    // and waits for every engine to apply it.
    if (guarded && (reply.ops.empty() || !reply.ops[0].applied)) return std::move(reply.ops);
    if (!changes) {
        // A runtime object (a provider): nothing for the feed to carry.
        if (apply) apply();
        return std::move(reply.ops);
    }
    settle(reply, apply, guard);
    return std::move(reply.ops);
}

void engine::impl::settle(const detail::commit_reply& reply, const std::function<void()>& apply,
                          own_change_scope& guard) {
    try {
        // Our own change may be applied as committed only when the change
        // seq is ours alone; otherwise it is read back with the others'.
        catch_up(reply.change_seq, reply.sole_change ? apply : std::function<void()>{});
    } catch (const exception&) {
        throw;
    } catch (const std::exception& e) {
        throw exception(
            make_error_code(errc::store_error),
            fmt::format("the change was stored, but reading it back failed: {}", e.what()));
    }
    guard.release();
    // Once this returns, every engine of the workspace has it in memory.
    wait_acked(reply.change_seq);
}

void engine::impl::mutate_async(std::string_view action, std::string_view type, std::string_view id,
                                std::string before, std::string after, std::vector<store_op> ops) {
    // A failure is logged; the in-memory effect (e.g. a suppression) stays in force.
    queue_audited(
        *this, principal::system(), action, type, id, std::move(before), std::move(after),
        std::move(ops), [log = params.log, a = std::string(action)](commit_reply&& r) {
            if (r.ec)
                log.log(log_level::error,
                        fmt::format("automatic {} could not be stored: {}", a, r.diag.message));
        });
}

void engine::impl::name_origin(event& ev) {
    const std::string_view key = ev.idempotency_key;
    if (ev.campaign.empty() && key.starts_with("campaign:")) {
        auto id = key.substr(9);
        ev.campaign = std::string(id.substr(0, id.find(':')));
    } else if (ev.sequence.empty()) {
        if (auto k = parse_send_key(key)) {
            ev.sequence = std::move(k->sequence_id);
            ev.enrollment = k->enrollment;
            ev.step = k->step + 1;
        }
    }
}

void engine::impl::emit(event ev, bool in_outbox) {
    name_origin(ev);  // before masking: it reads the key
    if (erased_entries_present()) mask_erased(ev);
    if (!in_outbox) {
        // An event no commit records (a refusal, a note): its rows are
        // written on their own, under a key of their own.
        std::vector<store_op> ops;
        if (add_outbox_ops(ops, ev, {}) > 0)
            writer->enqueue(std::move(ops), [self = shared_from_this()](commit_reply&& r) {
                if (r.ec)
                    self->params.log.log(log_level::error,
                                         fmt::format("an event's webhook deliveries were not "
                                                     "stored: {}",
                                                     r.diag.message));
                else
                    self->wake_outbox();
            });
    }
    if (!have_handlers.load(std::memory_order_acquire)) return;
    boost::asio::post(events_strand, [self = shared_from_this(), ev = std::move(ev)] {
        std::vector<std::function<void(const event&)>> hs;
        {
            std::lock_guard lock(self->ev_mu);
            for (auto& [id, fn] : self->handlers) hs.push_back(fn);
        }
        for (auto& fn : hs) {
            try {
                fn(ev);
            } catch (const std::exception& e) {
                self->params.log.log(log_level::error,
                                     fmt::format("event handler threw: {}", e.what()));
            }
        }
    });
}

// --- engine ------------------------------------------------------------------

engine::engine(boost::asio::any_io_executor ex, engine_params params)
    : impl_(std::make_shared<impl>(std::move(ex), std::move(params))) {
    resolve_audit_key(*impl_);
    resolve_erasure_key(*impl_);
    impl_->prepare_unsubscribe();
    detail::check_webhook_params(impl_->params.webhooks);
    impl_->load();
    record_audit_key(*impl_);
    impl_->start_sync();
    impl_->commit_suppression_settings();
    impl_->queue = std::make_unique<detail::send_queue>(*impl_);
    impl_->queue->start();
    impl_->outbox = std::make_unique<detail::webhook_outbox>(*impl_);
    impl_->outbox->start();
}

engine::~engine() {
    if (impl_) {
        // Before the cancel: a queued send started after it would fail.
        if (impl_->queue) impl_->queue->stop();
        if (impl_->outbox) impl_->outbox->stop();
        impl_->stop_rule_worker();
        impl_->cancelled = true;
        impl_->abort_checks();
        impl_->writer->flush();
        impl_->stop_membership();
    }
}

boost::asio::any_io_executor engine::get_executor() const noexcept {
    return impl_->ex;
}

void engine::async_send_impl(
    const std::shared_ptr<impl>& state, send_request req,
    boost::asio::any_completion_handler<void(error_code, send_result)> handler) {
    state->start_send(std::move(req), std::move(handler));
}

void engine::add_provider(const principal& who, const std::string& id,
                          std::shared_ptr<provider_transport> t) {
    if (id.empty() || has_crlf(id))
        fail(errc::invalid_argument, "provider id must be non-empty text");
    if (!t) fail(errc::invalid_argument, "provider transport is null");
    impl_->authorize(who, "provider.add", "provider", id);
    std::string after;
    json::writer(after).begin_object().member("id", id).member("transport", t->name()).end_object();
    impl_->mutate(who, "provider.add", "provider", id, {}, after, {},
                  [&] { impl_->register_host_provider(id, std::move(t)); });
}

void engine::add_provider(const principal& who, const std::string& id, std::string_view dsn_text) {
    if (id.empty() || has_crlf(id))
        fail(errc::invalid_argument, "provider id must be non-empty text");
    impl_->authorize(who, "provider.add", "provider", id);
    diagnostics diag;
    auto parsed = parse_dsn(dsn_text, &diag);
    if (!parsed) throw exception(parsed.error(), diag);
    auto t = make_transport(impl_->ex, dsn_text, impl_->params.log, &diag);
    if (!t) throw exception(t.error(), diag);
    std::string after;
    json::writer(after)
        .begin_object()
        .member("id", id)
        .member("transport", (*t)->name())
        .member("dsn", parsed->to_string())
        .end_object();
    impl_->mutate(who, "provider.add", "provider", id, {}, after, {},
                  [&] { impl_->register_host_provider(id, std::move(*t)); });
}

void engine::upsert_mailbox(const principal& who, const mailbox_config& cfg) {
    if (cfg.id.empty() || has_crlf(cfg.id))
        fail(errc::invalid_argument, "mailbox id must be non-empty text");
    if (!is_valid_addr_spec(cfg.from.addr_spec()))
        fail(errc::invalid_address, fmt::format("mailbox '{}': '{}' is not a valid address", cfg.id,
                                                cfg.from.addr_spec()));
    if (has_crlf(cfg.from.display_name))
        fail(errc::header_injection, "mailbox display name contains CR or LF");
    if (!header_text_ok(cfg.from.display_name))
        fail(errc::invalid_argument,
             fmt::format("mailbox '{}': the display name is not UTF-8 text without control "
                         "characters",
                         cfg.id));
    if (cfg.provider.empty())
        fail(errc::invalid_argument, fmt::format("mailbox '{}' has no provider", cfg.id));
    // An empty zone would silently mean UTC; the field's default says so.
    if (cfg.time_zone.empty() || !find_zone(cfg.time_zone))
        fail(errc::unknown_time_zone,
             fmt::format("mailbox '{}': unknown time zone '{}'", cfg.id, cfg.time_zone));
    if (!valid_window(cfg.window))
        fail(errc::invalid_argument, "send window hours must be 0..24 and weekdays 7 bits");
    if (cfg.weight == 0) fail(errc::invalid_argument, "mailbox weight must be at least 1");
    if (cfg.min_gap.count() < 0 || cfg.jitter.count() < 0)
        fail(errc::invalid_argument, "min_gap and jitter must not be negative");
    if (cfg.breaker.failure_threshold == 0 || cfg.breaker.cool_down.count() <= 0)
        fail(errc::invalid_argument, "breaker threshold and cool-down must be positive");
    std::string why;
    if (auto ec = validate_limits(cfg.limits, why))
        fail(errc::invalid_argument, fmt::format("mailbox '{}': {}", cfg.id, why));

    std::string before;
    bool provider_known = false;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->mailboxes.find(cfg.id);
        if (it != impl_->mailboxes.end()) before = to_json(it->second.cfg);
        provider_known = impl_->providers.count(cfg.provider) > 0;
    }
    // Providers are registered per process, so another process may send
    // for this mailbox: a warning here; a send from it in this process fails
    // with errc::unknown_provider.
    if (!provider_known)
        impl_->params.log.log(log_level::warning,
                              fmt::format("mailbox '{}' names provider '{}', which this engine "
                                          "has not registered",
                                          cfg.id, cfg.provider));
    const char* action = cfg.state == mailbox_state::retired ? "mailbox.retire" : "mailbox.upsert";
    impl_->authorize(who, action, "mailbox", cfg.id);
    auto after = to_json(cfg);
    impl_->mutate(who, action, "mailbox", cfg.id, before, after,
                  {store_ops::put_object{stored_object{"mailbox", cfg.id, after}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->apply_mailbox(cfg, true);
                      // Weight and priority feed the pools' precomputed rotation orders.
                      for (auto& [id, p] : impl_->pools) rebuild(p, impl_->mailboxes);
                  });
}

void engine::retire_mailbox(const principal& who, const std::string& id) {
    auto cfg = find_mailbox(id);
    if (!cfg) fail(errc::unknown_mailbox, fmt::format("no mailbox '{}'", id));
    cfg->state = mailbox_state::retired;
    upsert_mailbox(who, *cfg);
}

void engine::upsert_pool(const principal& who, const pool_config& cfg) {
    if (cfg.id.empty() || has_crlf(cfg.id))
        fail(errc::invalid_argument, "pool id must be non-empty text");
    if (cfg.policy.max_attempts == 0)
        fail(errc::invalid_argument, "pool max_attempts must be at least 1");
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        for (const auto& m : cfg.mailboxes)
            if (!impl_->mailboxes.count(m))
                fail(errc::unknown_mailbox, fmt::format("pool '{}': no mailbox '{}'", cfg.id, m));
        auto it = impl_->pools.find(cfg.id);
        if (it != impl_->pools.end()) before = to_json(it->second.cfg);
    }
    impl_->authorize(who, "pool.upsert", "pool", cfg.id);
    auto after = to_json(cfg);
    impl_->mutate(who, "pool.upsert", "pool", cfg.id, before, after,
                  {store_ops::put_object{stored_object{"pool", cfg.id, after}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      auto& p = impl_->pools[cfg.id];
                      p.cfg = cfg;
                      p.unreadable = false;
                      rebuild(p, impl_->mailboxes);
                  });
}

void engine::remove_pool(const principal& who, const std::string& id) {
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->pools.find(id);
        if (it == impl_->pools.end()) fail(errc::unknown_pool, fmt::format("no pool '{}'", id));
        before = to_json(it->second.cfg);
    }
    impl_->authorize(who, "pool.remove", "pool", id);
    impl_->mutate(who, "pool.remove", "pool", id, before, {},
                  {store_ops::delete_object{"pool", id}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->pools.erase(id);
                  });
}

void engine::set_quota(const principal& who, const quota& q) {
    if (q.key.empty() || has_crlf(q.key))
        fail(errc::invalid_argument, "quota key must be non-empty text");
    if (q.key == "*" && q.scope != quota_scope::recipient_domain)
        fail(errc::invalid_argument, "the key '*' applies only to recipient_domain quotas");
    if (!find_zone(q.time_zone))
        fail(errc::unknown_time_zone, fmt::format("unknown time zone '{}'", q.time_zone));
    std::string why;
    if (auto ec = validate_limits(q.limits, why)) fail(errc::invalid_argument, why);
    quota norm = q;
    if (q.scope != quota_scope::provider && q.key != "*") {
        auto d = normalise_domain(q.key);
        if (!d) fail(errc::invalid_address, fmt::format("quota key '{}' is not a domain", q.key));
        norm.key = *d;
    }
    auto oid = quota_object_id(norm.scope, norm.key);
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->quotas.find({norm.scope, norm.key});
        if (it != impl_->quotas.end()) before = to_json(it->second.q);
    }
    impl_->authorize(who, "quota.set", "quota", oid);
    auto after = to_json(norm);
    impl_->mutate(who, "quota.set", "quota", oid, before, after,
                  {store_ops::put_object{stored_object{"quota", oid, after}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->apply_quota(norm);
                  });
}

void engine::remove_quota(const principal& who, quota_scope scope, const std::string& key) {
    std::string k = key;
    if (scope != quota_scope::provider && key != "*") {
        auto d = normalise_domain(key);
        if (!d) fail(errc::invalid_address, fmt::format("quota key '{}' is not a domain", key));
        k = *d;
    }
    auto oid = quota_object_id(scope, k);
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->quotas.find({scope, k});
        if (it == impl_->quotas.end()) fail(errc::not_found, fmt::format("no quota '{}'", oid));
        before = to_json(it->second.q);
    }
    impl_->authorize(who, "quota.remove", "quota", oid);
    impl_->mutate(who, "quota.remove", "quota", oid, before, {},
                  {store_ops::delete_object{"quota", oid}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->quotas.erase({scope, k});
                  });
}

std::optional<mailbox_config> engine::find_mailbox(const std::string& id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->mailboxes.find(id);
    if (it == impl_->mailboxes.end()) return std::nullopt;
    return it->second.cfg;
}

std::vector<mailbox_config> engine::mailboxes() const {
    std::lock_guard lock(impl_->mu);
    std::vector<mailbox_config> out;
    for (const auto& [id, mb] : impl_->mailboxes) out.push_back(mb.cfg);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
}

std::vector<pool_config> engine::pools() const {
    std::lock_guard lock(impl_->mu);
    std::vector<pool_config> out;
    for (const auto& [id, p] : impl_->pools)
        if (!p.unreadable) out.push_back(p.cfg);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
    return out;
}

std::vector<quota> engine::quotas() const {
    std::lock_guard lock(impl_->mu);
    std::vector<quota> out;
    for (const auto& [key, q] : impl_->quotas)
        if (!q.unreadable) out.push_back(q.q);
    return out;
}

std::optional<pool_config> engine::find_pool(const std::string& id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->pools.find(id);
    if (it == impl_->pools.end()) return std::nullopt;
    return it->second.cfg;
}

mailbox_status engine::status(const std::string& id) const {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->mailboxes.find(id);
    if (it == impl_->mailboxes.end())
        fail(errc::unknown_mailbox, fmt::format("no mailbox '{}'", id));
    return impl_->status_of(it->second, impl_->clk->now());
}

mailbox_status engine::impl::status_of(mailbox_rt& mb, time_point now) {
    mailbox_status s;
    s.id = mb.cfg.id;
    s.state = mb.cfg.state;
    auto e = check(mb, {}, {}, now);
    s.health = mb.auth_failed ? health_state::open : mb.health;
    s.blocked = e.reason;
    s.next_eligible = e.reason == ineligible_reason::none ? std::optional<time_point>(now) : e.next;
    effective_limit day{0, std::chrono::seconds(86400), window_kind::calendar};
    auto lower = [&](std::uint64_t c) {
        s.effective_daily_cap = std::min(s.effective_daily_cap.value_or(c), c);
    };
    for (const auto& l : mb.limits) {
        if (l.length == std::chrono::seconds(86400)) {
            day.kind = l.kind;
            lower(l.max);
        }
    }
    if (auto ramp = warmup_cap(mb.cfg.warmup, mb.zone, now)) lower(*ramp);
    s.sent_today = mb.counter.count(day, mb.zone, now);
    effective_limit hour{0, std::chrono::seconds(3600), window_kind::rolling};
    for (const auto& l : mb.limits)
        if (l.length == std::chrono::seconds(3600)) hour.kind = l.kind;
    s.sent_this_hour = mb.counter.count(hour, mb.zone, now);
    return s;
}

// --- suppression -------------------------------------------------------------

namespace {
std::string normalise_entry(suppression_kind kind, std::string_view value,
                            const suppression_options& opts) {
    auto r = kind == suppression_kind::address ? normalise_address(value, opts)
                                               : normalise_domain(value);
    if (!r)
        fail(errc::invalid_address, kind == suppression_kind::address ? "not a valid email address"
                                                                      : "not a valid domain");
    return *r;
}
}  // namespace

void engine::suppress(const principal& who, suppression_kind kind, std::string_view value,
                      suppression_reason reason, std::string_view source) {
    auto key = normalise_entry(kind, value, impl_->suppression_opts());
    if (has_crlf(source)) fail(errc::invalid_argument, "suppression source contains CR or LF");
    impl_->authorize(who, "suppression.add", "suppression", key);
    // An erased person stays suppressed by the hash alone: storing the
    // address again would undo the erasure.
    if (kind == suppression_kind::address && impl_->erased(key)) return;
    impl_->store_suppression(who, kind, key, reason, source);
}

std::vector<store_op> engine::impl::suppression_ops(const suppression_entry& e,
                                                    const store_ops::record_key* once,
                                                    std::vector<store_op> also) {
    std::vector<store_op> ops;
    if (once) {
        // The guard covers the suppression, the stop of its enrollments,
        // `also` and the audit record that follows them: a duplicate
        // leaves no trace.
        store_ops::record_key rk = *once;
        rk.guards = 3 + also.size();
        ops.push_back(std::move(rk));
    }
    ops.push_back(store_ops::put_suppression{e});
    // Workspace-wide stop rule: every enrollment of the address (or at the
    // domain) in every sequence stops in the commit that suppresses it, and
    // its waiting step leaves the queue.
    ops.push_back(detail::stop_for_suppression(e));
    for (auto& op : also) ops.push_back(std::move(op));
    return ops;
}

bool engine::impl::store_suppression(const principal& who, suppression_kind kind,
                                     const std::string& key, suppression_reason reason,
                                     std::string_view source, const store_ops::record_key* once,
                                     std::vector<store_op> also) {
    suppression_entry e{kind, key, reason, std::string(source), clk->now()};
    const auto results = mutate(who, "suppression.add", "suppression", key, {}, to_json(e),
                                suppression_ops(e, once, std::move(also)), [&] {
                                    std::unique_lock lock(supp_mu);
                                    index.insert(kind, key);
                                });
    return !once || (!results.empty() && results[0].applied);
}

bool engine::unsuppress(const principal& who, suppression_kind kind, std::string_view value) {
    auto key = normalise_entry(kind, value, impl_->suppression_opts());
    {
        std::shared_lock lock(impl_->supp_mu);
        if (!impl_->index.contains(kind, key)) return false;
    }
    impl_->authorize(who, "suppression.remove", "suppression", key);
    std::optional<suppression_entry> prior;
    impl_->with_store(
        [&](store& st) { prior = st.find_suppression(impl_->params.workspace, kind, key); });
    impl_->mutate(who, "suppression.remove", "suppression", key,
                  prior ? to_json(*prior) : std::string(), {},
                  {store_ops::delete_suppression{kind, key}}, [&] {
                      std::unique_lock lock(impl_->supp_mu);
                      impl_->index.erase(kind, key);
                  });
    return true;
}

bool engine::is_suppressed(std::string_view addr) const {
    auto key = normalise_entry(suppression_kind::address, addr, impl_->suppression_opts());
    return impl_->suppressed(key);
}

std::optional<suppression_entry> engine::find_suppression(std::string_view addr) const {
    auto key = normalise_entry(suppression_kind::address, addr, impl_->suppression_opts());
    std::optional<suppression_match> m;
    std::string erased;
    {
        std::shared_lock lock(impl_->supp_mu);
        m = impl_->index.find(key);
        if (!m && impl_->suppressed_locked(key)) erased = impl_->erased_value_of(key);
    }
    if (!m && !erased.empty())
        m = suppression_match{suppression_kind::address, erased};
    if (!m) return std::nullopt;
    std::optional<suppression_entry> out;
    impl_->with_store([&](store& st) {
        out = st.find_suppression(impl_->params.workspace, m->kind, m->value);
        // Another engine erased the person: the plain key this engine still
        // holds in memory is gone from the store, the hash is there.
        if (!out && m->kind == suppression_kind::address && erased.empty()) {
            std::shared_lock lock(impl_->supp_mu);
            erased = impl_->erased_value_of(key);
        }
        if (!out && !erased.empty())
            out = st.find_suppression(impl_->params.workspace, suppression_kind::address, erased);
    });
    return out;
}

suppression_options engine::suppression_rules() const {
    return impl_->suppression_opts();
}

std::size_t engine::suppression_count() const {
    std::shared_lock lock(impl_->supp_mu);
    return impl_->index.size();
}

std::size_t engine::import_suppressions(const principal& who, std::istream& csv,
                                        std::string_view source) {
    if (has_crlf(source)) fail(errc::invalid_argument, "suppression source contains CR or LF");
    auto& s = *impl_;
    s.authorize(who, "suppression.import", "suppression", "*");
    const auto now = s.clk->now();
    const auto opts = s.suppression_opts();
    // Memory stays bounded by the index: entries flow from the parser into
    // the store's transaction a chunk at a time, and until the commit lets
    // them into the index an address is kept as its 8-byte fingerprint.
    // Domain entries are few, and kept as values.
    std::vector<std::uint64_t> addresses;
    std::vector<std::string> domains;
    std::size_t erased_lines = 0;
    sha256_stream digest;
    // Over every entry given, duplicates included, as stored: the rows the
    // import wrote or displaced must add up to it (verify_suppressions).
    suppression_hasher row_hasher(s.params.audit_key);
    suppression_set_digest rows_digest;
    suppression_import job;
    job.entries = [&](const suppression_chunk_fn& put) {
        constexpr std::size_t chunk_size = 4096;
        std::vector<suppression_entry> chunk;
        chunk.reserve(chunk_size);
        csv_parse_report report;
        auto ec = parse_suppression_csv(
            csv, opts,
            [&](suppression_entry&& e) {
                // As suppress(): an erased person is not stored again.
                if (e.kind == suppression_kind::address && s.erased(e.value)) return;
                if (e.source.empty()) e.source = std::string(source);
                if (e.created_at == time_point{}) e.created_at = now;
                // The audit's digest is SHA-256 over "value\n" per entry.
                digest.update(e.value);
                digest.update("\n");
                rows_digest.add(row_hasher(e));
                // The key never changes, so no lock is needed to use it.
                if (e.kind == suppression_kind::address)
                    addresses.push_back(s.index.address_fingerprint(e.value));
                else
                    domains.push_back(e.value);
                // An erased person's entry, restored from an export: the
                // check must hash from now on. Counted once per line, which
                // may be more than the index gains: more is only slower.
                if (is_erased_value(e.value)) ++erased_lines;
                chunk.push_back(std::move(e));
                if (chunk.size() == chunk_size) {
                    put(chunk);
                    chunk.clear();
                }
            },
            report);
        if (ec) throw exception(ec, report.diag);
        if (!chunk.empty()) put(chunk);
    };
    job.audit = [&](std::uint64_t count) {
        std::string after;
        json::writer(after)
            .begin_object()
            .member("count", count)
            .member("source", source)
            .member("sha256", digest.hex())
            .member("rows_digest", rows_digest.hex())
            .member("digest_key", row_hasher.key_mark())
            .end_object();
        return store_ops::append_audit{
            s.next_audit(who, "suppression.import", "suppression", "*", {}, std::move(after)),
            s.params.audit_key};
    };

    // As mutate() does for one change: the sync thread leaves the feed to
    // us until our change is applied here.
    impl::own_change_scope guard(s);
    // The feed stays ours until the import is in memory: a rejoin after a
    // lease that ran out meanwhile (an SQLite import holds the connection
    // that renews it) would otherwise read all of the import back. Nothing
    // on the writer thread takes feed_mu.
    std::unique_lock feed(s.feed_mu);
    // On the writer thread, behind every write queued before it.
    suppression_import_result r;
    s.with_store([&](store& st) { r = st.import_suppressions(s.params.workspace, job); });
    if (r.change_seq == 0) return 0;
    try {
        const auto have = s.applied_seq.load();
        if (have < r.change_seq) {
            // Hand-offs wait while memory holds more than applied_seq
            // names (as in catch_up).
            engine::impl::own_change_applying publish(s, r.change_seq);
            {
                std::unique_lock lock(s.supp_mu);
                s.index.reserve(s.index.address_count() + addresses.size(),
                                s.index.domain_count() + domains.size());
                for (const auto fp : addresses) s.index.insert_address_fingerprint(fp);
                s.erased_entries += erased_lines;
                for (const auto& d : domains) s.index.insert(suppression_kind::domain, d);
            }
            if (have + 1 == r.change_seq) {
                publish.applied = r.change_seq;
            } else {
                // Others changed the workspace between what we had applied
                // and the import. Their changes go in after ours: those the
                // import overwrote carry its seq and are skipped, and those
                // committed after it win, as they do in the store.
                s.apply_changes(s.params.storage->changes_since_skipping(s.params.workspace, have,
                                                                         r.change_seq));
            }
        }
    } catch (const exception&) {
        throw;
    } catch (const std::exception& e) {
        throw exception(
            make_error_code(errc::store_error),
            fmt::format("the import was stored, but reading it back failed: {}", e.what()));
    }
    feed.unlock();
    guard.release();
    // Once this returns, every engine of the workspace has it in memory.
    s.wait_acked(r.change_seq);
    return static_cast<std::size_t>(r.entries);
}

std::size_t engine::export_suppressions(std::ostream& out) const {
    std::size_t n = 0;
    impl_->with_store([&](store& st) {
        write_suppression_csv_header(out);
        std::string buf;
        st.for_each_suppression(impl_->params.workspace, [&](const suppression_entry& e) {
            append_suppression_csv(buf, e);
            ++n;
            if (buf.size() > (1 << 20)) {
                out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
                buf.clear();
            }
        });
        out.write(buf.data(), static_cast<std::streamsize>(buf.size()));
    });
    return n;
}

// --- pause -------------------------------------------------------------------

namespace {
// Sender-domain pauses are keyed by the normalised domain, like the
// mailboxes' sender domains they are compared with.
pause_target normalised_target(const pause_target& t) {
    if (t.scope != pause_scope::sender_domain) return t;
    auto d = normalise_domain(t.id);
    if (!d) fail(errc::invalid_address, fmt::format("'{}' is not a domain", t.id));
    return {t.scope, *d};
}
}  // namespace

void engine::pause(const principal& who, const pause_target& t, std::string_view reason) {
    {
        std::lock_guard lock(impl_->mu);
        if (t.scope == pause_scope::workspace && !t.id.empty())
            fail(errc::invalid_argument, "a workspace pause takes no id");
        if (t.scope != pause_scope::workspace && t.id.empty())
            fail(errc::invalid_argument, "pause target needs an id");
        if (t.scope == pause_scope::pool && !impl_->pools.count(t.id))
            fail(errc::unknown_pool, fmt::format("no pool '{}'", t.id));
        if (t.scope == pause_scope::mailbox && !impl_->mailboxes.count(t.id))
            fail(errc::unknown_mailbox, fmt::format("no mailbox '{}'", t.id));
    }
    if (has_crlf(reason)) fail(errc::invalid_argument, "pause reason contains CR or LF");
    auto norm = normalised_target(t);
    auto oid = pause_object_id(norm);
    impl_->authorize(who, "pause", to_string(norm.scope), norm.id);
    auto after = to_json(pause_info{norm, std::string(reason), who.id, impl_->clk->now()});
    impl_->mutate(who, "pause", to_string(norm.scope), norm.id, {}, after,
                  {store_ops::put_object{stored_object{"pause", oid, after}}}, [&] {
                      std::lock_guard lock(impl_->mu);
                      impl_->pauses[oid] = after;
                  });
}

void engine::resume(const principal& who, const pause_target& t, std::string_view reason) {
    if (has_crlf(reason)) fail(errc::invalid_argument, "resume reason contains CR or LF");
    auto norm = normalised_target(t);
    auto oid = pause_object_id(norm);
    std::string before;
    {
        std::lock_guard lock(impl_->mu);
        auto it = impl_->pauses.find(oid);
        if (it == impl_->pauses.end())
            fail(errc::not_found, fmt::format("'{}' is not paused", oid));
        before = it->second;
    }
    impl_->authorize(who, "resume", to_string(norm.scope), norm.id);
    // The resume mark starts the pause rules' grace on the target and
    // moves them to a new generation, in which each may fire once more.
    resume_mark mark{impl_->clk->now(), who.id, std::string(reason),
                     impl_->resume_state(oid).first + 1};
    const auto mark_json = to_json(mark);
    std::string after;
    if (!reason.empty()) json::writer(after).begin_object().member("reason", reason).end_object();
    impl_->mutate(who, "resume", to_string(norm.scope), norm.id, before, after,
                  {store_ops::delete_object{"pause", oid},
                   store_ops::put_object{stored_object{"rule.resume", oid, mark_json}}},
                  [&] {
                      {
                          std::lock_guard lock(impl_->mu);
                          impl_->pauses.erase(oid);
                      }
                      impl_->apply_rules_object(stored_object{"rule.resume", oid, mark_json});
                  });
}

bool engine::is_paused(const pause_target& t) const {
    // A target that cannot be normalised was never paused.
    pause_target norm;
    try {
        norm = normalised_target(t);
    } catch (const exception&) {
        return false;
    }
    std::lock_guard lock(impl_->mu);
    return impl_->pauses.count(pause_object_id(norm)) != 0;
}

std::vector<pause_info> engine::pauses() const {
    std::lock_guard lock(impl_->mu);
    return impl_->pause_list();
}

std::vector<pause_info> engine::impl::pause_list() const {
    std::vector<pause_info> out;
    for (const auto& [oid, json] : pauses) {
        // A pause is in force whether or not its record can be read: one
        // that cannot is listed by what its object id says.
        auto p = pause_from_json(json);
        if (p) {
            out.push_back(std::move(*p));
            continue;
        }
        pause_info unreadable;
        auto colon = oid.find(':');
        unreadable.target.id = colon == std::string::npos ? "" : oid.substr(colon + 1);
        unreadable.target.scope = pause_scope_named(std::string_view(oid).substr(0, colon))
                                      .value_or(pause_scope::workspace);
        unreadable.reason = "(the stored pause cannot be read)";
        out.push_back(std::move(unreadable));
    }
    std::sort(out.begin(), out.end(), [](const pause_info& a, const pause_info& b) {
        return std::tie(a.target.scope, a.target.id) < std::tie(b.target.scope, b.target.id);
    });
    return out;
}

// --- events, audit, stats ----------------------------------------------------

std::uint64_t engine::on_event(std::function<void(const event&)> fn) {
    std::lock_guard lock(impl_->ev_mu);
    auto id = impl_->next_handler++;
    impl_->handlers.emplace_back(id, std::move(fn));
    impl_->have_handlers = true;
    return id;
}

void engine::remove_event_handler(std::uint64_t id) {
    std::lock_guard lock(impl_->ev_mu);
    std::erase_if(impl_->handlers, [id](const auto& h) { return h.first == id; });
    impl_->have_handlers = !impl_->handlers.empty();
}

std::vector<audit_record> engine::audit_log(std::uint64_t from_seq) const {
    mailers::audit_anchor anchor;
    return audit_log(from_seq, anchor);
}

std::vector<audit_record> engine::audit_log(std::uint64_t from_seq,
                                            mailers::audit_anchor& anchor) const {
    std::vector<audit_record> out;
    impl_->with_store([&](store& st) {
        out = detail::read_kept_audit(st, impl_->params.workspace, from_seq, anchor);
    });
    return out;
}

std::vector<audit_record> detail::read_kept_audit(store& st, std::string_view ws,
                                                  std::uint64_t from_seq, audit_anchor& anchor) {
    // A purge moves the anchor and removes records in one transaction; the
    // records are read between two reads of the anchor, so equal anchors
    // mean no purge ran in between.
    std::vector<audit_record> out;
    for (;;) {
        out.clear();
        anchor = st.find_audit_anchor(ws);
        st.for_each_audit(ws, from_seq, [&](const audit_record& r) { out.push_back(r); });
        if (st.find_audit_anchor(ws) == anchor) return out;
    }
}

mailers::audit_anchor engine::audit_anchor() const {
    mailers::audit_anchor out;
    impl_->with_store([&](store& st) { out = st.find_audit_anchor(impl_->params.workspace); });
    return out;
}

error_code engine::verify_audit(std::uint64_t* bad_seq) const {
    mailers::audit_anchor anchor;
    auto log = audit_log(1, anchor);
    return verify_audit_chain(log, audit_verify_options{{}, impl_->params.audit_key, anchor},
                              bad_seq);
}

error_code engine::verify_audit(const audit_head& checkpoint, std::uint64_t* bad_seq) const {
    mailers::audit_anchor anchor;
    auto log = audit_log(1, anchor);
    return verify_audit_chain(
        log, audit_verify_options{checkpoint, impl_->params.audit_key, anchor}, bad_seq);
}

audit_head engine::audit_checkpoint() const {
    mailers::audit_anchor anchor;
    const auto log = audit_log(1, anchor);
    std::uint64_t bad_seq = 0;
    if (auto ec = verify_audit_chain(log, audit_verify_options{{}, impl_->params.audit_key, anchor},
                                     &bad_seq))
        throw exception(ec, fmt::format("workspace '{}': the audit log fails verification at "
                                        "seq {}; no checkpoint taken",
                                        impl_->params.workspace, bad_seq));
    if (log.empty()) return {};
    return {log.back().seq, log.back().hash};
}

std::uint64_t latency_histogram::total() const noexcept {
    std::uint64_t n = 0;
    for (auto c : counts) n += c;
    return n;
}

std::uint64_t latency_histogram::quantile_us(double q) const noexcept {
    const auto n = total();
    if (n == 0) return 0;
    const auto want = std::max<std::uint64_t>(
        1, static_cast<std::uint64_t>(std::ceil(std::clamp(q, 0.0, 1.0) * static_cast<double>(n))));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts.size(); ++i) {
        seen += counts[i];
        if (seen >= want) return std::uint64_t{2} << i;
    }
    return std::uint64_t{2} << (counts.size() - 1);
}

void engine::impl::record_latency(stage s, std::chrono::steady_clock::duration d) noexcept {
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
    std::size_t bucket = 0;
    for (auto v = static_cast<std::uint64_t>(std::max<std::int64_t>(us, 0)) >> 1; v != 0; v >>= 1)
        ++bucket;
    latency[s][std::min<std::size_t>(bucket, 31)].fetch_add(1, std::memory_order_relaxed);
    latency_sum_us[s].fetch_add(static_cast<std::uint64_t>(std::max<std::int64_t>(us, 0)),
                                std::memory_order_relaxed);
}

pipeline_latencies engine::latencies() const {
    pipeline_latencies out;
    latency_histogram* h[] = {&out.decide, &out.reserve, &out.handoff, &out.record, &out.total};
    for (std::size_t s = 0; s < impl::stages; ++s) {
        for (std::size_t i = 0; i < 32; ++i)
            h[s]->counts[i] = impl_->latency[s][i].load(std::memory_order_relaxed);
        h[s]->sum_us = impl_->latency_sum_us[s].load(std::memory_order_relaxed);
    }
    return out;
}

engine_stats engine::stats() const {
    std::lock_guard lock(impl_->mu);
    auto s = impl_->counters;
    s.commits = impl_->writer->commits();
    s.committed_ops = impl_->writer->committed_ops();
    return s;
}

void engine::flush() {
    impl_->writer->flush();
}

void engine::cancel() {
    if (impl_->queue) impl_->queue->stop();
    if (impl_->outbox) impl_->outbox->stop();
    impl_->cancelled = true;
    impl_->abort_checks();
    impl_->writer->flush();
}

}  // namespace mailers
