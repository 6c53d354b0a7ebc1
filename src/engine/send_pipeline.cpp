// The send pipeline: validate → suppression check → pick → reserve (durable)
// → re-check at hand-off → transport → record → events.
#include <fmt/format.h>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <mailers/mime.hpp>

#include "core/post.hpp"
#include "engine/engine_impl.hpp"
#include "engine/serialize.hpp"

namespace mailers {

using namespace detail;
namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;

namespace {

using send_pair = std::pair<error_code, send_result>;

awaitable<std::pair<error_code, diagnostics>> async_commit(engine::impl& self,
                                                           std::vector<store_op> ops) {
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                            void(std::pair<error_code, diagnostics>)>(
        [&self](auto handler, std::vector<store_op> ops) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            self.writer->enqueue(std::move(ops),
                                 [h, ex = self.ex](error_code ec, const diagnostics& d) {
                                     complete_later(ex, std::move(*h), std::make_pair(ec, d));
                                 });
        },
        use_awaitable, std::move(ops));
}

awaitable<std::optional<ledger_row>> async_find_send(engine::impl& self, std::uint64_t id) {
    co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&,
                                            void(std::optional<ledger_row>)>(
        [&self, id](auto handler) {
            auto h = std::make_shared<decltype(handler)>(std::move(handler));
            self.writer->run([h, ex = self.ex, id, ws = self.params.workspace](store& st) {
                std::optional<ledger_row> row;
                try {
                    row = st.find_send(ws, id);
                } catch (...) {
                }
                complete_later(ex, std::move(*h), std::move(row));
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

std::string reputation_pause_json(const std::string& domain) {
    return fmt::format(R"({{"scope":"sender_domain","id":"{}","reason":"reputation"}})", domain);
}

bool has_ctl(std::string_view s) {
    return s.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
}

// Checks the request and moves its content into the message every attempt
// copies from. `req` keeps its routing fields (pool, mailbox, to, key, actor).
error_code take_message(send_request& req, std::size_t max_size, message& m, std::string& why) {
    if (req.pool.empty() == req.mailbox.empty()) {
        why = "a send names exactly one of pool or mailbox";
        return make_error_code(errc::invalid_argument);
    }
    if (req.idempotency_key.size() > 512 || has_ctl(req.idempotency_key)) {
        why = "idempotency key must be at most 512 octets without CR, LF or NUL";
        return make_error_code(errc::invalid_argument);
    }
    if (!is_valid_addr_spec(req.to.addr_spec())) {
        why = "recipient is not a valid address";
        return make_error_code(errc::invalid_address);
    }
    std::size_t size = req.text.size() + req.html.size() + req.subject.size();
    for (const auto& a : req.attachments) size += a.data.size() * 4 / 3;
    if (max_size != 0 && size > max_size) {
        why = fmt::format("message of about {} octets exceeds the limit of {}", size, max_size);
        return make_error_code(errc::message_too_large);
    }
    // Validated with a stand-in sender; each attempt sets the real one.
    m.from = address{"validate", "example.com", {}};
    m.to.push_back(req.to);
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
std::shared_ptr<outbound> build_outbound(const message& base, const mailbox_rt& mb,
                                         const ledger_row& row, time_point now) {
    auto out = std::make_shared<outbound>();
    out->msg = base;
    out->msg.from = mb.cfg.from;
    out->msg.message_id = row.message_id;
    out->msg.date = now;
    out->env.mail_from = mb.cfg.from.addr_spec();
    out->env.rcpt_to.push_back(base.to.front().addr_spec());
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

awaitable<send_pair> run_send(std::shared_ptr<engine::impl> self, send_request req) {
    auto& s = *self;
    send_result result;
    auto now = s.clk->now();

    // 1. Validate: bad input changes nothing. A refused authorisation counts
    // like bad input: every send lands in exactly one counter.
    const auto count_rejected = [&s] {
        std::lock_guard lock(s.mu);
        ++s.counters.rejected;
    };
    std::string why;
    message base;
    if (auto ec = take_message(req, s.params.max_message_size, base, why)) {
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
    auto recipient_r = normalise_address(req.to.addr_spec(), s.params.suppression);
    if (!recipient_r) {
        result.diag.message = "recipient is not a valid address";
        count_rejected();
        co_return send_pair{make_error_code(errc::invalid_address), std::move(result)};
    }
    const std::string recipient = std::move(*recipient_r);
    const std::string recipient_domain = recipient.substr(recipient.rfind('@') + 1);

    // 2. Decide, all under one lock: idempotency, pause, suppression, pick + reserve.
    ledger_row row;
    reservation res;
    std::unordered_set<std::string> tried;
    std::uint32_t max_attempts = 1;
    std::optional<std::uint64_t> duplicate_of;
    {
        std::lock_guard lock(s.mu);
        // Read under the lock, so reservations are made in time order: a
        // time read before another send reserved would miss that reservation
        // (it lies "in the future") and let a rolling window go over its cap.
        now = s.clk->now();
        if (!req.pool.empty()) {
            auto p = s.pools.find(req.pool);
            if (p == s.pools.end()) {
                ++s.counters.rejected;
                result.diag.message = fmt::format("no pool '{}'", req.pool);
                co_return send_pair{make_error_code(errc::unknown_pool), std::move(result)};
            }
            max_attempts = std::max<std::uint32_t>(1, p->second.cfg.policy.max_attempts);
        } else if (!s.mailboxes.count(req.mailbox)) {
            ++s.counters.rejected;
            result.diag.message = fmt::format("no mailbox '{}'", req.mailbox);
            co_return send_pair{make_error_code(errc::unknown_mailbox), std::move(result)};
        }
        if (!req.idempotency_key.empty()) {
            auto k = s.idem_keys.find(req.idempotency_key);
            if (k != s.idem_keys.end()) {
                ++s.counters.duplicates;
                auto f = s.in_flight.find(k->second);
                if (f != s.in_flight.end()) {
                    row = f->second;
                } else {
                    duplicate_of = k->second;
                }
                if (!duplicate_of) {
                    result.duplicate = true;
                    result.send_id = std::to_string(row.id);
                    result.state = row.state;
                    result.mailbox = row.mailbox;
                    result.provider = row.provider;
                    result.message_id = row.message_id;
                    co_return send_pair{make_error_code(errc::duplicate), std::move(result)};
                }
            }
        }
        if (!duplicate_of) {
            bool paused = s.is_paused_locked(pause_scope::workspace, "") ||
                          (!req.pool.empty() && s.is_paused_locked(pause_scope::pool, req.pool));
            // Why nothing was reserved, when nothing was.
            std::optional<std::pair<errc, event_type>> refused;
            if (paused) {
                ++s.counters.paused;
                result.diag.message = "the workspace or pool is paused";
                refused.emplace(errc::paused, event_type::paused);
            } else if (s.suppressed(recipient)) {
                ++s.counters.suppressed;
                result.diag.message = "the recipient is suppressed";
                refused.emplace(errc::suppressed, event_type::suppressed);
            } else {
                auto picked = s.pick(req, recipient, recipient_domain, tried, now);
                if (!picked.mailbox) {
                    ++s.counters.no_capacity;
                    result.retry_at = picked.retry_at;
                    result.diag.message = "no eligible mailbox can send now";
                    refused.emplace(errc::no_capacity, event_type::no_capacity);
                } else {
                    auto& mb = *picked.mailbox;
                    res = std::move(*picked.res);
                    tried.insert(mb.cfg.id);
                    row.id = s.next_send_id++;
                    row.idempotency_key = req.idempotency_key;
                    row.mailbox = mb.cfg.id;
                    row.provider = mb.cfg.provider;
                    row.pool = req.pool;
                    row.recipient = recipient;
                    row.message_id = make_message_id(s.params.message_id_domain.empty()
                                                         ? mb.sender_domain
                                                         : s.params.message_id_domain);
                    row.state = send_state::reserved;
                    row.reserved_at = row.updated_at = now;
                    s.in_flight.emplace(row.id, row);
                    if (!req.idempotency_key.empty())
                        s.idem_keys.emplace(req.idempotency_key, row.id);
                }
            }
            if (refused) {
                s.emit(
                    make_event(refused->second, now, req, result, recipient, result.diag.message));
                co_return send_pair{make_error_code(refused->first), std::move(result)};
            }
        }
    }
    if (duplicate_of) {
        auto found = co_await async_find_send(s, *duplicate_of);
        result.duplicate = true;
        result.send_id = std::to_string(*duplicate_of);
        if (found) {
            result.state = found->state;
            result.mailbox = found->mailbox;
            result.provider = found->provider;
            result.message_id = found->message_id;
            result.provider_message_id = found->provider_message_id;
        }
        co_return send_pair{make_error_code(errc::duplicate), std::move(result)};
    }

    result.send_id = std::to_string(row.id);
    bool inserted = false;
    error_code final_ec;
    for (;;) {
        // 3. The reservation is durable before anything leaves.
        {
            std::vector<store_op> ops;
            if (!inserted)
                ops.push_back(store_ops::insert_send{row});
            else
                ops.push_back(store_ops::update_send{row});
            auto [cec, cdiag] = co_await async_commit(s, std::move(ops));
            if (cec) {
                std::lock_guard lock(s.mu);
                s.release(res);
                s.in_flight.erase(row.id);
                if (!inserted && !req.idempotency_key.empty())
                    s.idem_keys.erase(req.idempotency_key);
                ++s.counters.failed;
                result.state.reset();
                result.diag = cdiag;
                co_return send_pair{cec, std::move(result)};
            }
            inserted = true;
        }
        if (s.cancelled) {
            final_ec = make_error_code(errc::operation_aborted);
            std::lock_guard lock(s.mu);
            s.release(res);
            row.state = send_state::failed;
            row.detail = "engine cancelled before hand-off";
            break;
        }

        // 4. Hand-off: re-check suppression and pauses under the same locks
        // that suppress() and pause() take, and start the transport while
        // holding them, so "once it returns, nothing new leaves" holds.
        std::uint32_t attempt = row.attempt;
        result.mailbox = row.mailbox;
        result.provider = row.provider;
        result.message_id = row.message_id;
        auto [tec, outcome] =
            co_await asio::async_initiate<const asio::as_tuple_t<asio::use_awaitable_t<>>&,
                                          void(error_code, send_outcome)>(
                [&](auto handler) {
                    std::unique_lock lock(s.mu);
                    std::shared_lock slock(s.supp_mu);
                    auto mit = s.mailboxes.find(row.mailbox);
                    error_code refuse;
                    std::string detail;
                    std::shared_ptr<provider_transport> transport;
                    if (s.index.contains_address(recipient)) {
                        refuse = make_error_code(errc::suppressed);
                        detail = "the recipient was suppressed before hand-off";
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
                        send_outcome o;
                        o.diag.message = detail;
                        complete_later(s.ex, std::move(handler), refuse, std::move(o));
                        return;
                    }
                    auto out = build_outbound(base, mit->second, row, s.clk->now());
                    transport->async_send(std::move(out), std::move(handler));
                },
                asio::as_tuple(use_awaitable));
        result.attempts = attempt;

        // 5. Record the outcome and act on its failure class. The time is
        // read under the lock, as in step 2, before a failover reserves.
        std::lock_guard lock(s.mu);
        now = s.clk->now();
        auto mit = s.mailboxes.find(row.mailbox);
        row.updated_at = now;
        if (!tec) {
            if (mit != s.mailboxes.end()) s.record_success(mit->second, res);
            row.state = send_state::accepted;
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
        if (tec == errc::suppressed || tec == errc::paused || tec == errc::unknown_provider) {
            // Refused at hand-off: certainly not sent.
            s.release(res);
            row.state = send_state::failed;
            final_ec = tec;
            if (tec == errc::suppressed)
                ++s.counters.suppressed;
            else if (tec == errc::paused)
                ++s.counters.paused;
            else
                ++s.counters.failed;
            break;
        }
        auto f = classify(tec);
        if (f == failure::unknown_outcome) {
            // It may have gone: keep the reservation, never retry.
            if (mit != s.mailboxes.end() && res.probe) mit->second.probe_in_flight = false;
            row.state = send_state::unknown;
            ++s.counters.unknown;
            final_ec = tec;
            break;
        }
        s.release(res);
        if (f == failure::recipient_permanent || f == failure::message_rejected) {
            row.state = send_state::failed;
            ++s.counters.failed;
            final_ec = tec;
            if (mit != s.mailboxes.end()) s.record_success(mit->second, res);  // the route works
            if (f == failure::recipient_permanent) {
                suppression_entry e{suppression_kind::address, recipient,
                                    suppression_reason::hard_bounce, "transport:" + row.provider,
                                    now};
                {
                    std::unique_lock slock(s.supp_mu);
                    s.index.insert(e.kind, e.value);
                }
                s.mutate_async("suppression.add", "suppression", recipient, {}, {},
                               one_op(store_ops::put_suppression{e}));
                s.emit(make_event(event_type::bounced, now, req, result, recipient, row.detail));
            }
            break;
        }
        // Sender-side failure: the message certainly did not go.
        if (mit != s.mailboxes.end()) {
            auto& mb = mit->second;
            auto retry = outcome.diag.retry_after.value_or(std::chrono::seconds(60));
            switch (f) {
                case failure::throttled:
                    mb.throttled_until = now + std::chrono::duration_cast<duration>(retry);
                    break;
                case failure::quota_exhausted: {
                    bool calendar = false;
                    for (const auto& l : mb.limits)
                        if (l.length == std::chrono::seconds(86400) &&
                            l.kind == window_kind::calendar)
                            calendar = true;
                    mb.exhausted_until =
                        calendar ? next_period_start(std::chrono::seconds(86400), mb.zone, now)
                                 : now + std::chrono::hours(24);
                    break;
                }
                case failure::auth:
                    mb.auth_failed = true;
                    s.emit(make_event(event_type::alert, now, req, result, recipient,
                                      fmt::format("mailbox '{}' failed to authenticate: {}",
                                                  mb.cfg.id, row.detail)));
                    break;
                case failure::reputation: {
                    pause_target t{pause_scope::sender_domain, mb.sender_domain};
                    auto oid = pause_object_id(t);
                    if (!s.pauses.count(oid)) {
                        std::string json = reputation_pause_json(mb.sender_domain);
                        s.pauses[oid] = json;
                        s.mutate_async(
                            "pause", "sender_domain", mb.sender_domain, {}, json,
                            one_op(store_ops::put_object{stored_object{"pause", oid, json}}));
                    }
                    s.emit(make_event(event_type::alert, now, req, result, recipient,
                                      fmt::format("sender domain '{}' paused: {}", mb.sender_domain,
                                                  row.detail)));
                    break;
                }
                default:
                    s.record_transient_failure(mb, res, now);
                    break;
            }
        }
        final_ec = tec;
        row.state = send_state::failed;
        if (attempt >= max_attempts || req.pool.empty()) {
            ++s.counters.failed;
            break;
        }
        auto picked = s.pick(req, recipient, recipient_domain, tried, now);
        if (!picked.mailbox) {
            ++s.counters.failed;
            break;
        }
        // Fail over: a fresh attempt on the next mailbox, recorded first.
        ++s.counters.failovers;
        auto& mb = *picked.mailbox;
        res = std::move(*picked.res);
        tried.insert(mb.cfg.id);
        row.mailbox = mb.cfg.id;
        row.provider = mb.cfg.provider;
        row.state = send_state::reserved;
        row.attempt = attempt + 1;
        row.reserved_at = now;
        row.message_id = make_message_id(
            s.params.message_id_domain.empty() ? mb.sender_domain : s.params.message_id_domain);
        s.in_flight[row.id] = row;
    }

    // 6. Final state is recorded; then the caller and the event handlers hear of it.
    {
        std::lock_guard lock(s.mu);
        s.in_flight.erase(row.id);
    }
    result.state = row.state;
    result.mailbox = row.mailbox;
    result.provider = row.provider;
    result.message_id = row.message_id;
    // Named, not a temporary: GCC 12 may destroy temporaries of a co_await
    // full-expression twice.
    auto final_ops = one_op(store_ops::update_send{row});
    auto [cec, cdiag] = co_await async_commit(s, std::move(final_ops));
    if (cec)
        s.params.log.log(log_level::error,
                         fmt::format("send {}: final state not stored: {}", row.id, cdiag.message));
    event_type t = row.state == send_state::accepted  ? event_type::sent
                   : row.state == send_state::unknown ? event_type::unknown
                   : final_ec == errc::suppressed     ? event_type::suppressed
                   : final_ec == errc::paused         ? event_type::paused
                                                      : event_type::failed;
    s.emit(make_event(t, now, req, result, recipient, row.detail));
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
