// The send pipeline: validate → suppression check → pick → reserve (durable)
// → re-check at hand-off → transport → record → events.
#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <mailers/mime.hpp>

#include "core/post.hpp"
#include "decide/caps.hpp"
#include "engine/engine_impl.hpp"
#include "engine/enrollments.hpp"
#include "engine/serialize.hpp"
#include "mime/raw.hpp"
#include "mime/text.hpp"

namespace mailers {

using namespace detail;
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

using send_pair = std::pair<error_code, send_result>;

awaitable<commit_reply> async_commit(engine::impl& self, std::vector<store_op> ops) {
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(commit_reply)>(
        [&self](auto handler, std::vector<store_op> ops) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            self.writer->enqueue(std::move(ops), [h, ex = self.ex](commit_reply&& r) {
                complete_later(ex, std::move(*h), std::move(r));
            });
        },
        use_awaitable, std::move(ops));
}

// Reads the change feed on the writer thread (a blocking store read never
// runs on the host's executor).
awaitable<void> async_pull_changes(engine::impl& self) {
    co_await asio::async_initiate<const asio::use_awaitable_t<>&, void()>(
        [&self](auto handler) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            self.writer->run([h, ex = self.ex, &self](store&) {
                try {
                    self.pull_changes();
                } catch (const std::exception& e) {
                    self.params.log.log(
                        log_level::error,
                        fmt::format("reading the change feed failed: {}", e.what()));
                }
                complete_later(ex, std::move(*h));
            });
        },
        use_awaitable);
}

// GCC 12 cannot copy an initializer_list's backing array into a coroutine
// frame ("array used as initializer"), so coroutines build op lists here.
std::vector<store_op> one_op(store_op op) {
    std::vector<store_op> v;
    v.push_back(std::move(op));
    return v;
}

error_code check_recipients(const std::vector<address>& list, std::string_view field,
                            std::string& why) {
    for (const auto& a : list) {
        if (is_valid_addr_spec(a.addr_spec())) continue;
        why = fmt::format("{} recipient '{}' is not a valid address", field, a.addr_spec());
        return make_error_code(errc::invalid_address);
    }
    return {};
}

// A pre-rendered message and the address its From field names.
struct raw_message {
    std::string bytes;
    std::string from;
};

bool same_addr_spec(std::string_view a, std::string_view b) {
    const auto at_a = a.rfind('@'), at_b = b.rfind('@');
    if (a.size() != b.size() || at_a != at_b || a.substr(0, at_a) != b.substr(0, at_b))
        return false;
    return std::equal(a.begin() + at_a, a.end(), b.begin() + at_b,
                      [](char x, char y) { return mime::to_lower(x) == mime::to_lower(y); });
}

error_code take_raw(send_request& req, std::size_t max_size, message& m, raw_message& raw,
                    std::string& why) {
    if (req.mailbox.empty()) {
        why =
            "a raw message is sent from a named mailbox: a pool could pick a sender its From "
            "field does not name";
        return make_error_code(errc::invalid_argument);
    }
    if (!req.subject.empty() || !req.text.empty() || !req.html.empty() || !req.headers.empty() ||
        !req.attachments.empty() || req.unsubscribe || !req.in_reply_to.empty() ||
        !req.references.empty() || req.reply_to) {
        why =
            "a raw message carries its own header and body: subject, text, html, headers, "
            "attachments, unsubscribe, in_reply_to, references and reply_to must be empty";
        return make_error_code(errc::invalid_argument);
    }
    if (max_size != 0 && req.raw.size() > max_size) {
        why = fmt::format("message of {} octets exceeds the limit of {}", req.raw.size(), max_size);
        return make_error_code(errc::message_too_large);
    }
    mime::raw_header_facts facts;
    if (auto ec = mime::inspect_raw_message(req.raw, facts, why)) return ec;
    m.message_id = std::move(facts.message_id);
    m.to.push_back(req.to);
    m.cc = std::move(req.cc);
    m.bcc = std::move(req.bcc);
    raw.from = std::move(facts.from);
    raw.bytes = std::move(req.raw);
    return {};
}

// Checks the request and moves its content into the message every attempt
// copies from, and pre-rendered bytes into `raw`. `req` keeps its routing
// fields (pool, mailbox, to, key, actor).
error_code take_message(send_request& req, std::size_t max_size, message& m, raw_message& raw,
                        std::string& why) {
    if (req.pool.empty() == req.mailbox.empty()) {
        why = "a send names exactly one of pool or mailbox";
        return make_error_code(errc::invalid_argument);
    }
    if (req.idempotency_key.size() > 512 || has_crlf(req.idempotency_key)) {
        why = "idempotency key must be at most 512 octets without CR, LF or NUL";
        return make_error_code(errc::invalid_argument);
    }
    if (!is_valid_addr_spec(req.to.addr_spec())) {
        why = "recipient is not a valid address";
        return make_error_code(errc::invalid_address);
    }
    if (auto ec = check_recipients(req.cc, "cc", why)) return ec;
    if (auto ec = check_recipients(req.bcc, "bcc", why)) return ec;
    if (req.reply_to && !is_valid_addr_spec(req.reply_to->addr_spec())) {
        why = "reply-to is not a valid address";
        return make_error_code(errc::invalid_address);
    }
    if (!req.raw.empty()) return take_raw(req, max_size, m, raw, why);
    std::size_t size = req.text.size() + req.html.size() + req.subject.size();
    for (const auto& a : req.attachments) size += a.data.size() * 4 / 3;
    if (max_size != 0 && size > max_size) {
        why = fmt::format("message of about {} octets exceeds the limit of {}", size, max_size);
        return make_error_code(errc::message_too_large);
    }
    // Validated with a stand-in sender; each attempt sets the real one.
    m.from = address{"validate", "example.com", {}};
    m.to.push_back(req.to);
    m.cc = std::move(req.cc);
    m.bcc = std::move(req.bcc);
    m.reply_to = std::move(req.reply_to);
    m.subject = std::move(req.subject);
    m.text = std::move(req.text);
    m.html = std::move(req.html);
    m.headers = std::move(req.headers);
    m.attachments = std::move(req.attachments);
    m.unsubscribe = std::move(req.unsubscribe);
    m.in_reply_to = std::move(req.in_reply_to);
    m.references = std::move(req.references);
    if (auto ec = validate_message(m)) {
        why = ec.message();
        return ec;
    }
    return {};
}

// A fresh copy of the caller's message for one attempt: nothing from an
// earlier attempt can leak into it.
std::shared_ptr<outbound> build_outbound(const engine::impl& s, const message& base,
                                         const std::string& raw, const mailbox_rt& mb,
                                         const ledger_row& row, time_point now) {
    auto out = std::make_shared<outbound>();
    out->msg = base;
    if (raw.empty() && !out->msg.unsubscribe) out->msg.unsubscribe = s.unsubscribe_for(row, now);
    out->raw = raw;
    out->msg.from = mb.cfg.from;
    out->msg.message_id = row.message_id;
    out->msg.date = now;
    // The mailbox's address as the message's From: its domain in A-labels,
    // like the recipients'.
    out->env = envelope::from_message(out->msg);
    out->mailbox_id = mb.cfg.id;
    out->send_id = std::to_string(row.id);
    return out;
}

event make_event(event_type t, time_point at, const send_request& req, const send_result& r,
                 const std::string& recipient, std::string detail) {
    event e;
    e.type = t;
    e.at = at;
    e.send_id = r.send_id;
    e.idempotency_key = req.idempotency_key;
    e.mailbox = r.mailbox;
    e.pool = req.pool;
    e.provider = r.provider;
    e.recipient = recipient;
    e.provider_message_id = r.provider_message_id;
    e.detail = std::move(detail);
    e.retry_at = r.retry_at;
    return e;
}

// Every distinct recipient of `m`, `to` first, as the suppression index
// folds them, and how many of them each receiving domain has. False, with
// `why`, when one does not fold.
bool collect_recipients(const message& m, const suppression_options& opts,
                        std::vector<std::string>& recipients, domain_counts& domains,
                        std::string& why) {
    const auto add = [&](const address& a) {
        auto n = normalise_address(a.addr_spec(), opts);
        if (!n) {
            why = fmt::format("recipient '{}' is not a valid address", a.addr_spec());
            return false;
        }
        if (std::find(recipients.begin(), recipients.end(), *n) != recipients.end()) return true;
        auto domain = n->substr(n->rfind('@') + 1);
        auto d = std::find_if(domains.begin(), domains.end(),
                              [&](const auto& e) { return e.first == domain; });
        if (d == domains.end())
            domains.emplace_back(std::move(domain), 1);
        else
            ++d->second;
        recipients.push_back(std::move(*n));
        return true;
    };
    for (const auto* list : {&m.to, &m.cc, &m.bcc})
        for (const auto& a : *list)
            if (!add(a)) return false;
    return true;
}

// The claims a send from `mb` to recipients at `domains` makes on the
// store: the mailbox's own caps (with warm-up and gap) and every shared
// quota it counts against. Recipient-domain quotas count recipients, the
// rest count the message. Callers hold mu.
std::vector<decide::planned_claim> plan_claims(engine::impl& s, mailbox_rt& mb,
                                               const domain_counts& domains,
                                               const reservation& res) {
    std::vector<decide::planned_claim> claims;
    auto& own = claims.emplace_back();
    own.claim.key = mb.cap_key;
    own.claim.object_kind = "mailbox";
    own.claim.object_id = mb.cfg.id;
    own.claim.gap = res.gap;
    decide::add_windows(own, mb.limits, mb.zone, res.at);
    if (auto ramp = decide::warmup_limit(mb.cfg.warmup, mb.limits, mb.zone, res.at))
        decide::add_windows(own, std::span(&*ramp, 1), mb.zone, res.at);
    const auto quota_claim = [&](const quota_rt& q, std::string key) {
        decide::planned_claim c;
        c.claim.key = std::move(key);
        c.claim.object_kind = "quota";
        c.claim.object_id = q.object_id;
        decide::add_windows(c, q.limits, q.zone, res.at);
        return c;
    };
    // Without a recipient domain: the provider and sender-domain quotas.
    s.for_each_quota(mb, {}, [&](quota_rt& q, bool) {
        claims.push_back(quota_claim(q, q.cap_key));
        return false;
    });
    for (const auto& [domain, n] : domains) {
        s.for_each_quota(mb, domain, [&](quota_rt& q, bool per_domain) {
            if (q.q.scope != quota_scope::recipient_domain) return false;
            decide::append_uses(
                claims,
                quota_claim(q, per_domain ? decide::any_recipient_domain_key(domain) : q.cap_key),
                n);
            return false;
        });
    }
    return claims;
}

std::vector<cap_claim> store_claims(const std::vector<decide::planned_claim>& planned) {
    std::vector<cap_claim> out;
    out.reserve(planned.size());
    for (const auto& p : planned) out.push_back(p.claim);
    return out;
}

// Remembers the store's refusal so that picks skip the key until it may
// fit.
void note_refusal(engine::impl& s, const std::vector<decide::planned_claim>& claims,
                  const reserve_outcome& o, time_point now) {
    if (o.claim >= claims.size()) return;
    const auto& c = claims[o.claim];
    // Smaller sends may still fit the key.
    if (c.lowered != 0) return;
    cap_hint h;
    std::optional<time_point> retry;
    if (o.status == reserve_status::gap) {
        h.reason = ineligible_reason::min_gap;
        retry = o.until;
    } else if (o.status == reserve_status::cap_reached && o.window < c.rules.size()) {
        h.reason = c.claim.object_kind == "mailbox" ? ineligible_reason::cap_reached
                                                    : ineligible_reason::quota_reached;
        retry = decide::retry_time(c.rules[o.window], c.claim.windows[o.window], o.until, now);
    } else {
        return;
    }
    h.until = retry.value_or(time_point::max());
    std::lock_guard lock(s.mu);
    s.cap_hints[c.claim.key] = h;
}

// One reservation attempt, prepared under mu: the mailbox picked, its
// in-memory reservation and the claims for the store.
struct prepared {
    std::optional<reservation> res;
    std::vector<decide::planned_claim> claims;
    std::uint64_t config_seq = 0;
    std::optional<time_point> retry_at;
};

prepared prepare(engine::impl& s, const send_request& req, const std::string& recipient,
                 const domain_counts& domains, const std::unordered_set<std::string>& tried,
                 ledger_row& row) {
    prepared p;
    std::lock_guard lock(s.mu);
    // Read under the lock, so this process's reservations are made in time
    // order (a time read before another send reserved would miss it).
    auto now = s.clk->now();
    auto picked = s.pick(req, recipient, domains, tried, now);
    p.retry_at = picked.retry_at;
    if (!picked.mailbox) return p;
    auto& mb = *picked.mailbox;
    p.claims = plan_claims(s, mb, domains, *picked.res);
    p.config_seq = s.applied_seq.load();
    row.mailbox = mb.cfg.id;
    row.provider = mb.cfg.provider;
    row.message_id = make_message_id(
        s.params.message_id_domain.empty() ? mb.sender_domain : s.params.message_id_domain);
    row.state = send_state::reserved;
    row.reserved_at = row.updated_at = now;
    row.owner = s.member.load();
    p.res = std::move(picked.res);
    return p;
}

void fill_duplicate(send_result& result, const reserve_outcome& o) {
    result.duplicate = true;
    result.send_id = std::to_string(o.send_id);
    if (o.existing) {
        result.send_id = std::to_string(o.existing->id);
        result.state = o.existing->state;
        result.mailbox = o.existing->mailbox;
        result.provider = o.existing->provider;
        result.message_id = o.existing->message_id;
        result.provider_message_id = o.existing->provider_message_id;
    }
}

// How many times a send asks the store before it gives up on capacity: a
// refusal teaches this engine about other processes' sends, so the next
// pick usually passes.
std::size_t reserve_rounds(const engine::impl& s, const send_request& req) {
    if (req.pool.empty()) return 3;
    auto p = s.pools.find(req.pool);
    return 3 + (p == s.pools.end() ? 0 : p->second.members.size());
}

awaitable<send_pair> run_send(std::shared_ptr<engine::impl> self, send_request req) {
    auto& s = *self;
    send_result result;
    auto now = s.clk->now();
    using steady = std::chrono::steady_clock;
    const auto started = steady::now();
    bool decided = false;

    if (s.cancelled) {
        result.diag.message = "the engine was cancelled";
        co_return send_pair{make_error_code(errc::operation_aborted), std::move(result)};
    }
    // 1. Validate: bad input changes nothing. A refused authorisation counts
    // like bad input: every send lands in exactly one counter.
    const auto count_rejected = [&s] {
        std::lock_guard lock(s.mu);
        ++s.counters.rejected;
    };
    std::string why;
    message base;
    raw_message raw;
    if (auto ec = take_message(req, s.params.max_message_size, base, raw, why)) {
        result.diag.message = why;
        count_rejected();
        s.emit(make_event(event_type::rejected, now, req, result, {}, why));
        co_return send_pair{ec, std::move(result)};
    }
    try {
        s.authorize(req.actor, "send", req.pool.empty() ? "mailbox" : "pool",
                    req.pool.empty() ? req.mailbox : req.pool);
    } catch (const exception& e) {
        result.diag = e.diag();
        count_rejected();
        co_return send_pair{e.code(), std::move(result)};
    }
    std::vector<std::string> recipients;
    domain_counts domains;
    // The rules the recipients are folded with: the hand-off folds them
    // again if the workspace's rules change before it.
    const auto folded_with = s.suppression_opts();
    if (!collect_recipients(base, folded_with, recipients, domains, why)) {
        result.diag.message = why;
        count_rejected();
        co_return send_pair{make_error_code(errc::invalid_address), std::move(result)};
    }
    // `to` alone keys the ledger row and the sticky sender.
    const std::string recipient = recipients.front();
    const auto first_suppressed = [&](auto&& is_suppressed) -> const std::string* {
        for (const auto& r : recipients)
            if (is_suppressed(r)) return &r;
        return nullptr;
    };
    const auto too_many = [&](const mailbox_rt& mb) {
        const auto limit = mb.cfg.max_recipients_per_message;
        return limit != 0 && recipients.size() > limit;
    };
    std::unordered_set<std::string> tried;

    // 2. Refusals memory can give at once: unknown names, pauses, suppression.
    std::uint32_t max_attempts = 1;
    std::size_t rounds = 3;
    {
        std::lock_guard lock(s.mu);
        now = s.clk->now();
        if (!req.pool.empty()) {
            auto p = s.pools.find(req.pool);
            if (p == s.pools.end()) {
                ++s.counters.rejected;
                result.diag.message = fmt::format("no pool '{}'", req.pool);
                co_return send_pair{make_error_code(errc::unknown_pool), std::move(result)};
            }
            if (p->second.unreadable) {
                ++s.counters.failed;
                result.diag.message = fmt::format(
                    "pool '{}' in the store cannot be read; it sends nothing until it is put "
                    "again",
                    req.pool);
                co_return send_pair{make_error_code(errc::store_corrupt), std::move(result)};
            }
            max_attempts = std::max<std::uint32_t>(1, p->second.cfg.policy.max_attempts);
            for (const auto* m : p->second.members)
                if (too_many(*m)) tried.insert(m->cfg.id);
            if (!p->second.members.empty() && tried.size() == p->second.members.size()) {
                ++s.counters.rejected;
                result.diag.message = fmt::format(
                    "{} recipients exceed the per-message limit of every mailbox in pool '{}'",
                    recipients.size(), req.pool);
                co_return send_pair{make_error_code(errc::invalid_argument), std::move(result)};
            }
        } else if (auto m = s.mailboxes.find(req.mailbox); m == s.mailboxes.end()) {
            ++s.counters.rejected;
            result.diag.message = fmt::format("no mailbox '{}'", req.mailbox);
            co_return send_pair{make_error_code(errc::unknown_mailbox), std::move(result)};
        } else if (too_many(m->second)) {
            ++s.counters.rejected;
            result.diag.message = fmt::format(
                "{} recipients exceed mailbox '{}''s limit of {} per message", recipients.size(),
                req.mailbox, m->second.cfg.max_recipients_per_message);
            co_return send_pair{make_error_code(errc::invalid_argument), std::move(result)};
        } else if (!raw.bytes.empty() &&
                   !same_addr_spec(raw.from, m->second.cfg.from.addr_spec())) {
            ++s.counters.rejected;
            result.diag.message =
                fmt::format("the raw message is from {}, not from mailbox '{}' ({})", raw.from,
                            req.mailbox, m->second.cfg.from.addr_spec());
            co_return send_pair{make_error_code(errc::invalid_argument), std::move(result)};
        }
        rounds = reserve_rounds(s, req);
        std::optional<std::pair<errc, event_type>> refused;
        if (s.is_paused_locked(pause_scope::workspace, "") ||
            (!req.pool.empty() && s.is_paused_locked(pause_scope::pool, req.pool))) {
            ++s.counters.paused;
            result.diag.message = "the workspace or pool is paused";
            refused.emplace(errc::paused, event_type::paused);
        } else if (const auto* blocked =
                       first_suppressed([&](const std::string& r) { return s.suppressed(r); })) {
            ++s.counters.suppressed;
            result.diag.message = recipients.size() == 1
                                      ? "the recipient is suppressed"
                                      : fmt::format("the recipient {} is suppressed", *blocked);
            refused.emplace(errc::suppressed, event_type::suppressed);
        }
        if (refused) {
            s.emit(make_event(refused->second, now, req, result, recipient, result.diag.message));
            co_return send_pair{make_error_code(refused->first), std::move(result)};
        }
    }

    // 3. Reserve in the store: it decides caps, gap, idempotency and the id
    // for every process at once. Memory picks a mailbox likely to pass.
    ledger_row row;
    row.idempotency_key = req.idempotency_key;
    row.pool = req.pool;
    row.recipient = recipient;
    reservation res;
    // Asks the store for a reservation on the next eligible mailbox; on a
    // refusal memory learns why and the next pick avoids it.
    enum class reserved_as { ok, duplicate, no_capacity, failed };
    std::optional<time_point> retry_at;
    auto reserve_once = [&]() -> awaitable<reserved_as> {
        for (std::size_t round = 0; round < rounds; ++round) {
            auto p = prepare(s, req, recipient, domains, tried, row);
            if (!p.res) {
                retry_at = p.retry_at;
                co_return reserved_as::no_capacity;
            }
            const auto claims = std::move(p.claims);
            // The bytes already carry their Message-ID.
            if (!raw.bytes.empty()) row.message_id = base.message_id;
            store_ops::reserve_send op{row, store_claims(claims), p.config_seq};
            const auto asked = steady::now();
            if (!decided) {
                s.record_latency(engine::impl::stage_decide, asked - started);
                decided = true;
            }
            auto reply = co_await async_commit(s, one_op(std::move(op)));
            s.record_latency(engine::impl::stage_reserve, steady::now() - asked);
            if (reply.ec || reply.ops.empty()) {
                {
                    std::lock_guard lock(s.mu);
                    s.release(*p.res);
                }
                result.diag = reply.diag;
                if (!reply.ec) result.diag.message = "the store gave no result for a reservation";
                co_return reserved_as::failed;
            }
            const auto& o = reply.ops.front().reservation;
            if (o.status == reserve_status::reserved) {
                res = std::move(*p.res);
                row.id = o.send_id;
                tried.insert(row.mailbox);
                co_return reserved_as::ok;
            }
            {
                std::lock_guard lock(s.mu);
                s.release(*p.res);
            }
            switch (o.status) {
                case reserve_status::duplicate:
                    fill_duplicate(result, o);
                    co_return reserved_as::duplicate;
                case reserve_status::cap_reached:
                case reserve_status::gap:
                    note_refusal(s, claims, o, row.reserved_at);
                    break;
                case reserve_status::stale_config:
                    co_await async_pull_changes(s);
                    break;
                default:
                    // not_owner: this send's row is no longer ours to retry.
                    result.diag.message = "the send is no longer this engine's to retry";
                    co_return reserved_as::failed;
            }
        }
        // Still refused after learning from every refusal: what memory now
        // knows is the best answer for when to come back.
        {
            std::lock_guard lock(s.mu);
            auto p = s.pick(req, recipient, domains, tried, s.clk->now());
            if (p.mailbox) {
                s.release(*p.res);
            } else {
                retry_at = p.retry_at;
            }
        }
        co_return reserved_as::no_capacity;
    };

    auto first = co_await reserve_once();
    if (first != reserved_as::ok) {
        std::lock_guard lock(s.mu);
        switch (first) {
            case reserved_as::duplicate:
                ++s.counters.duplicates;
                co_return send_pair{make_error_code(errc::duplicate), std::move(result)};
            case reserved_as::no_capacity:
                ++s.counters.no_capacity;
                result.retry_at = retry_at;
                result.diag.message = "no eligible mailbox can send now";
                s.emit(make_event(event_type::no_capacity, now, req, result, recipient,
                                  result.diag.message));
                co_return send_pair{make_error_code(errc::no_capacity), std::move(result)};
            default:
                ++s.counters.failed;
                co_return send_pair{make_error_code(errc::store_error), std::move(result)};
        }
    }

    result.send_id = std::to_string(row.id);
    error_code final_ec;
    for (;;) {
        if (s.cancelled) {
            final_ec = make_error_code(errc::operation_aborted);
            std::lock_guard lock(s.mu);
            s.release(res);
            row.state = send_state::failed;
            row.detail = "engine cancelled before hand-off";
            break;
        }

        // 4. Hand-off: re-check suppression and pauses under the same lock
        // the change feed is applied under, and start the transport while
        // holding it; together with the acknowledgements suppress() and
        // pause() wait for, "once it returns, nothing new leaves" holds in
        // every process. A member whose lease may have run out hands off
        // nothing: others may have stopped waiting for it.
        std::uint32_t attempt = row.attempt;
        result.mailbox = row.mailbox;
        result.provider = row.provider;
        result.message_id = row.message_id;
        for (int waited = 0; s.fenced() && waited < 200 && !s.cancelled; ++waited) {
            asio::steady_timer t(s.ex, std::chrono::milliseconds(10));
            co_await t.async_wait(use_awaitable);
        }
        const auto handed = steady::now();
        // Read under mu: applied_seq moves only under it, and only once the
        // index holds the changes up to it (a change of this engine's own
        // being applied is waited out), so the check below saw them all and
        // no more. The row keeps it as the proof of which suppressions were
        // checked.
        std::uint64_t checked_seq = 0;
        bool own_change_pending = false, refused_at_handoff = false;
        auto [tec, outcome] =
            co_await asio::async_initiate<const asio::as_tuple_t<asio::use_awaitable_t<>>&,
                                          void(error_code, send_outcome)>(
                [&](auto handler) {
                    std::unique_lock lock(s.mu);
                    if (s.own_seq_applying != 0) {
                        own_change_pending = true;
                        complete_later(s.ex, std::move(handler), error_code{}, send_outcome{});
                        return;
                    }
                    std::shared_lock slock(s.supp_mu);
                    auto mit = s.mailboxes.find(row.mailbox);
                    error_code refuse;
                    std::string detail;
                    std::shared_ptr<provider_transport> transport;
                    const bool fenced = s.fenced();
                    if (!fenced) checked_seq = s.applied_seq.load();
                    // The index is keyed by the rules in force now: another
                    // process may have changed them, re-keying every entry,
                    // since the recipients were folded. A recipient the new
                    // rules cannot fold (they only fold more) keeps its key.
                    std::vector<std::string> refolded;
                    const auto* keys = &recipients;
                    if (s.supp_opts != folded_with) {
                        domain_counts unused;
                        std::string unfoldable;
                        if (collect_recipients(base, s.supp_opts, refolded, unused, unfoldable))
                            keys = &refolded;
                    }
                    const auto suppressed_key = [&]() -> const std::string* {
                        for (const auto& k : *keys)
                            if (s.suppressed_locked(k)) return &k;
                        return nullptr;
                    };
                    if (s.cancelled) {
                        // cancel() may have come after the check above; the
                        // lease it then gives up is not a lost one.
                        refuse = make_error_code(errc::operation_aborted);
                        detail = "engine cancelled before hand-off";
                    } else if (fenced) {
                        refuse = make_error_code(errc::store_error);
                        detail = "this engine lost its workspace lease before hand-off";
                    } else if (const auto* r = suppressed_key()) {
                        refuse = make_error_code(errc::suppressed);
                        detail = recipients.size() == 1
                                     ? "the recipient was suppressed before hand-off"
                                     : fmt::format(
                                           "the recipient {} was suppressed before hand-off", *r);
                    } else if (mit == s.mailboxes.end() || s.paused_for(mit->second, req.pool) ||
                               mit->second.cfg.state != mailbox_state::active) {
                        refuse = make_error_code(errc::paused);
                        detail = "paused before hand-off";
                    } else {
                        auto pit = s.providers.find(row.provider);
                        if (pit == s.providers.end()) {
                            refuse = make_error_code(errc::unknown_provider);
                            detail = fmt::format("no provider '{}' is registered", row.provider);
                        } else {
                            transport = pit->second;
                        }
                    }
                    if (refuse) {
                        refused_at_handoff = true;
                        send_outcome o;
                        o.diag.message = detail;
                        complete_later(s.ex, std::move(handler), refuse, std::move(o));
                        return;
                    }
                    auto out = build_outbound(s, base, raw.bytes, mit->second, row, s.clk->now());
                    transport->async_send(std::move(out), std::move(handler));
                },
                asio::as_tuple(use_awaitable));
        if (own_change_pending) {
            // Nothing was handed off; the change is in memory in a moment.
            asio::steady_timer t(s.ex, std::chrono::milliseconds(1));
            co_await t.async_wait(use_awaitable);
            continue;
        }
        result.attempts = attempt;
        row.suppression_seq = checked_seq;
        s.record_latency(engine::impl::stage_handoff, steady::now() - handed);

        // 5. Record the outcome and act on its failure class.
        std::unique_lock lock(s.mu);
        now = s.clk->now();
        auto mit = s.mailboxes.find(row.mailbox);
        mailbox_rt* mb = mit == s.mailboxes.end() ? nullptr : &mit->second;
        row.updated_at = now;
        decide::outcome_facts facts;
        facts.now = now;
        facts.retry_after = outcome.diag.retry_after;
        if (mb) {
            facts.limits = mb->limits;
            facts.zone = mb->zone;
        }
        facts.attempt = attempt;
        facts.max_attempts = max_attempts;
        facts.pooled = !req.pool.empty();
        facts.refused_at_handoff = refused_at_handoff;
        const auto d = decide::on_outcome(tec, facts);
        s.apply_outcome(mb, res, d, now);
        row.state = d.state;
        if (d.state == send_state::accepted) {
            row.provider_message_id = outcome.provider_message_id;
            row.detail.clear();
            result.provider_message_id = outcome.provider_message_id;
            if (!req.pool.empty()) {
                auto p = s.pools.find(req.pool);
                if (p != s.pools.end() && p->second.cfg.policy.sticky_sender)
                    p->second.sticky[recipient] = row.mailbox;
            }
            ++s.counters.accepted;
            final_ec = {};
            break;
        }
        result.diag = outcome.diag;
        row.detail = outcome.diag.message.empty() ? tec.message() : outcome.diag.message;
        final_ec = tec;
        // The outcome does not say which of several recipients was refused;
        // suppressing all of them would punish the good ones.
        if (d.suppress_recipient && recipients.size() == 1) {
            suppression_entry e{suppression_kind::address, recipient,
                                suppression_reason::hard_bounce, "transport:" + row.provider, now};
            {
                std::unique_lock slock(s.supp_mu);
                s.index.insert(e.kind, e.value);
            }
            // The record says what was stored, as suppress() does, so the
            // audit trail alone tells who was suppressed, why and by which
            // provider's reply.
            // With it, the stop of every enrollment of the address.
            auto ops = one_op(store_ops::put_suppression{e});
            ops.push_back(stop_for_suppression(e));
            s.mutate_async("suppression.add", "suppression", recipient, {}, to_json(e),
                           std::move(ops));
            s.emit(make_event(event_type::bounced, now, req, result, recipient, row.detail));
        }
        if (mb && d.effect == decide::sender_effect::auth_failed) {
            s.emit(make_event(
                event_type::alert, now, req, result, recipient,
                fmt::format("mailbox '{}' failed to authenticate: {}", mb->cfg.id, row.detail)));
        } else if (mb && d.effect == decide::sender_effect::reputation_block) {
            s.emit(make_event(event_type::alert, now, req, result, recipient,
                              fmt::format("mailbox '{}' (sender domain '{}') refused for its "
                                          "reputation: {}",
                                          mb->cfg.id, mb->sender_domain, row.detail)));
        }
        if (d.state == send_state::unknown) {
            ++s.counters.unknown;
            break;
        }
        if (!d.fail_over) {
            if (tec == errc::suppressed)
                ++s.counters.suppressed;
            else if (tec == errc::paused)
                ++s.counters.paused;
            else
                ++s.counters.failed;
            break;
        }
        lock.unlock();
        // Fail over: a further attempt of the same send on the next
        // mailbox, reserved in the store before it is handed off.
        const auto failed_row = row;
        row.attempt = attempt + 1;
        row.detail.clear();
        row.suppression_seq = 0;  // the next attempt is checked at its own hand-off
        auto next = co_await reserve_once();
        lock.lock();
        if (next != reserved_as::ok) {
            row = failed_row;
            ++s.counters.failed;
            break;
        }
        ++s.counters.failovers;
    }

    // 6. Final state is recorded; then the caller and the event handlers hear of it.
    result.state = row.state;
    result.mailbox = row.mailbox;
    result.provider = row.provider;
    result.message_id = row.message_id;
    // Named, not a temporary: GCC 12 may destroy temporaries of a co_await
    // full-expression twice.
    auto final_ops = one_op(store_ops::update_send{row});
    event_type t = row.state == send_state::accepted  ? event_type::sent
                   : row.state == send_state::unknown ? event_type::unknown
                   : final_ec == errc::suppressed     ? event_type::suppressed
                   : final_ec == errc::paused         ? event_type::paused
                                                      : event_type::failed;
    auto final_event = make_event(t, now, req, result, recipient, row.detail);
    // Counted with the row's final state, so a retried commit counts once.
    if (final_ec != errc::operation_aborted) s.add_outcome_counts(final_ops, t, row, now);
    // The event's outbound webhooks commit with the state they report; one
    // row per endpoint and send outcome, however often this is retried.
    const bool to_outbox = s.add_outbox_ops(final_ops, final_event,
                                            fmt::format("send:{}:{}", row.id, to_string(t))) > 0;
    const auto recording = steady::now();
    auto reply = co_await async_commit(s, std::move(final_ops));
    const auto recorded = steady::now();
    s.record_latency(engine::impl::stage_record, recorded - recording);
    s.record_latency(engine::impl::stage_total, recorded - started);
    if (reply.ec)
        s.params.log.log(log_level::error, fmt::format("send {}: final state not stored: {}",
                                                       row.id, reply.diag.message));
    else if (!reply.ops.empty() && !reply.ops.front().applied)
        // Also when a retried commit had in fact been applied before the
        // connection to the store broke: the row is then already final.
        s.params.log.log(log_level::warning,
                         fmt::format("send {}: final state not applied: the row was already "
                                     "final or is another member's",
                                     row.id));
    if (to_outbox && !reply.ec) s.wake_outbox();
    if (t == event_type::failed && !reply.ec && s.have_rules.load(std::memory_order_acquire))
        s.queue_rule_check(s.rule_targets(row.mailbox, row.pool, row.provider));
    // A failed commit stored no row: the handlers still hear of it, and the
    // rows are written on their own.
    s.emit(std::move(final_event), !reply.ec);
    co_return send_pair{final_ec, std::move(result)};
}

}  // namespace

void engine::impl::start_send(send_request req,
                              asio::any_completion_handler<void(error_code, send_result)> handler) {
    auto self = shared_from_this();
    asio::co_spawn(ex, run_send(self, std::move(req)),
                   [self, h = std::move(handler)](std::exception_ptr ep, send_pair r) mutable {
                       if (ep) {
                           try {
                               std::rethrow_exception(ep);
                           } catch (const exception& e) {
                               r.first = e.code();
                               r.second.diag = e.diag();
                           } catch (const std::exception& e) {
                               r.first = make_error_code(errc::store_error);
                               r.second.diag.message = e.what();
                           }
                       }
                       // co_spawn never completes inside async_send (the coroutine
                       // starts from a post), so dispatching to the handler's
                       // executor is enough here.
                       auto hex = asio::get_associated_executor(h, self->ex);
                       asio::dispatch(hex,
                                      asio::append(std::move(h), r.first, std::move(r.second)));
                   });
}

}  // namespace mailers

namespace mailers {

error_code engine::impl::check_send(send_request req, std::string& why,
                                    std::string& recipient_domain) {
    message base;
    raw_message raw;
    if (auto ec = take_message(req, params.max_message_size, base, raw, why)) return ec;
    // Enqueueing is its own permission; the hand-off checks "send" again.
    try {
        authorize(req.actor, "enqueue", req.pool.empty() ? "mailbox" : "pool",
                  req.pool.empty() ? req.mailbox : req.pool);
    } catch (const exception& e) {
        why = e.diag().message;
        return e.code();
    }
    std::vector<std::string> recipients;
    domain_counts domains;
    if (!collect_recipients(base, suppression_opts(), recipients, domains, why))
        return make_error_code(errc::invalid_address);
    recipient_domain = domains.front().first;
    std::lock_guard lock(mu);
    const auto too_many = [&](const mailbox_rt& mb) {
        const auto limit = mb.cfg.max_recipients_per_message;
        return limit != 0 && recipients.size() > limit;
    };
    if (!req.pool.empty()) {
        auto p = pools.find(req.pool);
        if (p == pools.end()) {
            why = fmt::format("no pool '{}'", req.pool);
            return make_error_code(errc::unknown_pool);
        }
        if (!p->second.members.empty() &&
            std::all_of(p->second.members.begin(), p->second.members.end(),
                        [&](const mailbox_rt* m) { return too_many(*m); })) {
            why = fmt::format(
                "{} recipients exceed the per-message limit of every mailbox in pool '{}'",
                recipients.size(), req.pool);
            return make_error_code(errc::invalid_argument);
        }
    } else if (auto m = mailboxes.find(req.mailbox); m == mailboxes.end()) {
        why = fmt::format("no mailbox '{}'", req.mailbox);
        return make_error_code(errc::unknown_mailbox);
    } else if (too_many(m->second)) {
        why = fmt::format("{} recipients exceed mailbox '{}''s limit of {} per message",
                          recipients.size(), req.mailbox, m->second.cfg.max_recipients_per_message);
        return make_error_code(errc::invalid_argument);
    } else if (!raw.bytes.empty() && !same_addr_spec(raw.from, m->second.cfg.from.addr_spec())) {
        why = fmt::format("the raw message is from {}, not from mailbox '{}' ({})", raw.from,
                          req.mailbox, m->second.cfg.from.addr_spec());
        return make_error_code(errc::invalid_argument);
    }
    for (const auto& r : recipients) {
        if (!suppressed(r)) continue;
        why = recipients.size() == 1 ? "the recipient is suppressed"
                                     : fmt::format("the recipient {} is suppressed", r);
        return make_error_code(errc::suppressed);
    }
    return {};
}

}  // namespace mailers
