// One of the processes the multi-process test runs side by side on one
// store. It sends at random through an engine whose providers log every
// hand-off, enqueues some sends in the workspace's queue (drained by a
// second engine in this process, so the first one's stats count only its
// own sends), feeds the same inbound complaint events as every other
// process, and meanwhile suppresses and unsuppresses, pauses and resumes,
// erases now and then one of a few addresses, changes caps and moves the
// shared clock, logging when each change began and when it returned. The driver checks the log;
// this program checks nothing itself.
//
//     mp_child <sqlite|postgres> <db file | conninfo> <schema> <run dir> <name> <seed>
//              <deadline (CLOCK_MONOTONIC ns)> <key space>
//
// Log lines (tab-separated; mono = CLOCK_MONOTONIC ns):
//   H mono clock_us pid mailbox provider sender_domain recipient key send_id pool issued_mono
//     outcome           a hand-off (outcome ok, fail = certainly not sent, unknown)
//   A B|E mono pid seq op target arg status
//                     an admin change began (B) or returned (E); op is suppress, unsuppress,
//                     erase, pause, resume or caps (arg: the maxima set); status ok, noop or
//                     error
//   R mono pid category send_id key duplicate
//                     a send completed
//   X pid issued <count per category> <engine_stats>
//                     the child finished cleanly
//   C mono pid delta_us
//                     the child moved the shared clock
//   Q mono pid key id status recipient
//                     a send was enqueued under its own key (status ok, or the refusal)
//   W mono pid dedup_key outcome
//                     an inbound event was applied: suppressed, applied (nothing to
//                     suppress) or duplicate
#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mailers/engine.hpp>
#include <mutex>
#include <random>
#include <semaphore>
#include <thread>

#include "invariant_helpers.hpp"
#include "mp_common.hpp"

namespace {

using namespace mailers;
using mailers_test::header;
using mailers_test::lower;
namespace asio = boost::asio;

/// Logs each hand-off, under the engine's hand-off lock (the engine starts
/// the transport while holding it), then answers: mostly accepted, now and
/// then a certain transient failure (so sends fail over) or an unknown
/// outcome (never retried).
class checking_transport final : public provider_transport {
public:
    checking_transport(asio::any_io_executor ex, std::string provider, const mp::shared_log& log,
                       const mp::shared_clock& clock, std::uint64_t seed)
        : provider_transport(std::move(ex)),
          provider_(std::move(provider)),
          log_(log),
          clock_(clock),
          rng_(seed) {}
    std::string_view name() const noexcept override { return "mp-checking"; }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler h) override {
        const auto mono = mp::mono_ns();
        int roll;
        {
            std::lock_guard lock(mu_);
            roll = static_cast<int>(rng_() % 1000);
        }
        const char* outcome = roll < 30 ? "fail" : roll < 35 ? "unknown" : "ok";
        log_.line(mp::fields("H", mono, clock_.now().time_since_epoch().count(), ::getpid(),
                             out->mailbox_id, provider_, lower(out->msg.from.domain),
                             lower(out->env.rcpt_to.at(0)), or_dash(header(*out, "X-MP-Key")),
                             out->send_id, or_dash(header(*out, "X-MP-Pool")),
                             header(*out, "X-MP-Issued"), outcome));
        error_code ec;
        send_outcome o;
        if (roll < 30) {
            ec = make_error_code(transport_errc::temporary_reply);
            o.diag.message = "421 try again later (injected)";
        } else if (roll < 35) {
            ec = make_error_code(transport_errc::outcome_unknown);
        } else {
            o.provider_message_id = "mp-" + out->send_id;
        }
        // A quarter of the answers take a while, as a provider's do, so a
        // kill finds sends handed off and not yet recorded.
        if (roll % 4 != 0) {
            std::move(h)(ec, std::move(o));
            return;
        }
        auto t = std::make_shared<asio::steady_timer>(get_executor(),
                                                      std::chrono::milliseconds(1 + roll % 40));
        t->async_wait([t, h = std::move(h), ec, o = std::move(o)](error_code) mutable {
            std::move(h)(ec, std::move(o));
        });
    }

private:
    static std::string or_dash(std::string s) { return s.empty() ? "-" : s; }
    std::string provider_;
    const mp::shared_log& log_;
    const mp::shared_clock& clock_;
    std::mutex mu_;
    std::mt19937_64 rng_;
};

enum category {
    c_accepted,
    c_failed,
    c_unknown,
    c_suppressed,
    c_no_capacity,
    c_paused,
    c_duplicates,
    c_rejected,
    c_count
};
const char* category_names[c_count] = {"accepted",    "failed", "unknown",    "suppressed",
                                       "no_capacity", "paused", "duplicates", "rejected"};

category categorise(const error_code& ec) {
    if (!ec) return c_accepted;
    if (ec == errc::duplicate) return c_duplicates;
    if (ec == errc::suppressed) return c_suppressed;
    if (ec == errc::no_capacity) return c_no_capacity;
    if (ec == errc::paused) return c_paused;
    if (ec == errc::header_injection || ec == errc::unknown_pool || ec == errc::invalid_address)
        return c_rejected;
    if (ec == failure::unknown_outcome) return c_unknown;
    return c_failed;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 9) {
        std::cerr << "usage: mp_child <sqlite|postgres> <db> <schema> <dir> <name> <seed> "
                     "<deadline-ns> <key-space>\n";
        return 2;
    }
    const std::string kind = argv[1], db = argv[2], schema = argv[3], dir = argv[4], name = argv[5];
    const std::uint64_t seed = std::strtoull(argv[6], nullptr, 10);
    const std::int64_t deadline = std::strtoll(argv[7], nullptr, 10);
    const std::uint64_t key_space = std::max<std::uint64_t>(1, std::strtoull(argv[8], nullptr, 10));
    const auto pid = ::getpid();

    mp::shared_log log(dir + "/log");
    mp::shared_clock clock(dir + "/clock", false);
    mp::target_locks locks(dir + "/locks");
    const auto lock_names = mp::lock_targets();
    auto lock_index = [&](const std::string& target) {
        for (std::size_t i = 0; i < lock_names.size(); ++i)
            if (lock_names[i] == target) return i;
        std::abort();
    };

    asio::io_context ioc;
    engine_params params;
    params.storage = mp::open_store(kind, db, schema);
    params.clock = std::shared_ptr<mailers::clock>(&clock, [](mailers::clock*) {});
    params.random_seed = seed;
    params.member_name = name;
    params.sync_interval = std::chrono::milliseconds(20);
    params.lease = std::chrono::milliseconds(3000);
    params.log.level = log_level::warning;
    params.log.sink = [&](log_level, std::string_view msg) {
        std::cerr << name << " [" << pid << "]: " << msg << std::endl;
    };
    // However far the chaos moves the clock, an event's key is never
    // forgotten during the run, so a second application is always wrong.
    params.event_retention = std::chrono::hours(24 * 365 * 50);
    // Likewise the queue keeps every item, so the checker finds each one
    // enqueued, however many days a long run moves the clock.
    params.queue_retention = std::chrono::seconds(0);
    auto drain_params = params;
    params.drain_queue = false;
    drain_params.member_name = name + "-drain";
    drain_params.queue_poll_interval = std::chrono::milliseconds(50);
    auto eng = std::make_unique<engine>(ioc.get_executor(), params);
    auto drainer = std::make_unique<engine>(ioc.get_executor(), drain_params);
    // Only the changes the checker counts in the audit log are the chaos
    // principal's.
    const principal chaos{"chaos", "Multi-process chaos"};
    const principal setup{"mp-child", "Multi-process child start-up"};
    for (auto p : {"pa", "pb", "pc"})
        for (auto* e : {eng.get(), drainer.get()})
            e->add_provider(setup, p,
                            std::make_shared<checking_transport>(
                                ioc.get_executor(), p, log, clock,
                                seed ^ std::hash<std::string>{}(p) ^ (e == eng.get() ? 0 : 1)));

    auto work = asio::make_work_guard(ioc);
    std::thread io1([&] { ioc.run(); }), io2([&] { ioc.run(); });

    const auto specs = mp::mailbox_specs();
    const auto qspecs = mp::quota_specs();
    const auto pools = mp::pool_configs();
    const auto universe = mp::recipient_universe();
    const auto targets = mp::pause_targets();
    std::vector<std::size_t> vmailboxes, vquotas;
    for (std::size_t i = 0; i < specs.size(); ++i)
        if (!specs[i].alt_limits.empty()) vmailboxes.push_back(i);
    for (std::size_t i = 0; i < qspecs.size(); ++i)
        if (!qspecs[i].alt_limits.empty()) vquotas.push_back(i);

    std::atomic<std::uint64_t> chaos_done{0}, issued{0};
    std::atomic<std::uint64_t> seen[c_count] = {};

    // Sends are paced against the admin operations, so that caps, clock
    // moves and changes interleave at a steady ratio whatever the speed of
    // the store.
    const std::uint64_t sends_per_op = 12;
    std::counting_semaphore<> in_flight(32);
    std::thread sender([&] {
        std::mt19937_64 rng(seed * 31 + 1);
        for (std::uint64_t i = 0; mp::mono_ns() < deadline; ++i) {
            if (issued.load() >= sends_per_op * (chaos_done.load() + 1)) {
                std::this_thread::sleep_for(std::chrono::microseconds(200));
                continue;
            }
            send_request r;
            const auto roll = rng() % 100;
            std::string pool;
            if (roll < 22)
                r.mailbox = specs[rng() % specs.size()].id;
            else
                pool = r.pool = pools[rng() % pools.size()].id;
            auto to = universe[rng() % universe.size()];
            if (rng() % 3 == 0)
                for (auto& c : to)
                    c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
            const auto at = to.find('@');
            r.to = address{to.substr(0, at), to.substr(at + 1), {}};
            r.subject = name + " " + std::to_string(i);
            r.text = "hello";
            if (roll >= 97) r.subject += "\r\nBcc: x@evil.example";  // refused, never handed off
            if (roll == 96) r.pool = "no-such-pool";
            if (rng() % 10 < 7)
                r.idempotency_key = mp::erasable(lower(to))
                                        ? "e-" + name + "-" + std::to_string(i)
                                        : "k-" + std::to_string(rng() % key_space);
            // One in ten goes through the queue, under a key of its own.
            const bool queued = roll < 96 && rng() % 10 == 0;
            if (queued) r.idempotency_key = "q-" + name + "-" + std::to_string(i);
            r.headers.push_back({"X-MP-Key", r.idempotency_key});
            r.headers.push_back({"X-MP-Pool", pool});
            r.headers.push_back({"X-MP-Issued", std::to_string(mp::mono_ns())});
            if (queued) {
                const auto key = r.idempotency_key;
                std::string status = "ok";
                std::uint64_t id = 0;
                try {
                    id = eng->enqueue(std::move(r));
                } catch (const mailers::exception& e) {
                    status = category_names[categorise(e.code())];
                }
                log.line(mp::fields("Q", mp::mono_ns(), pid, key, id, status, lower(to)));
                continue;
            }
            in_flight.acquire();
            ++issued;
            auto key = r.idempotency_key;
            eng->async_send(
                std::move(r), [&, key = std::move(key)](error_code ec, send_result res) {
                    const auto c = categorise(ec);
                    ++seen[c];
                    // A failure carries its message, so the report shows what a
                    // server restart looked like to the caller.
                    std::string cat = category_names[c];
                    if (c == c_failed) {
                        auto m = ec.message();
                        std::replace(m.begin(), m.end(), '\t', ' ');
                        cat += "/" + m;
                    }
                    log.line(mp::fields("R", mp::mono_ns(), pid, cat,
                                        res.send_id.empty() ? "-" : res.send_id,
                                        key.empty() ? "-" : key, res.duplicate ? 1 : 0));
                    in_flight.release();
                });
        }
        // Every send still in flight completes (the engine keeps work on the
        // context for it) before the semaphore fills up again.
        for (int k = 0; k < 32; ++k) in_flight.acquire();
    });

    std::uint64_t seq = 0;
    // Runs one change on `target` with its lock held and logs when it began
    // and returned. `fn` returns false when it changed nothing.
    auto change = [&](const std::string& target, const char* op, const std::string& arg,
                      const std::function<bool()>& fn) {
        auto guard = locks.lock(lock_index(target));
        const auto s = ++seq;
        log.line(mp::fields("A", "B", mp::mono_ns(), pid, s, op, target, arg, "-"));
        std::string status = "ok";
        try {
            if (!fn()) status = "noop";
        } catch (const std::exception& e) {
            status = "error";
            std::cerr << name << " [" << pid << "]: " << op << " " << target << ": " << e.what()
                      << std::endl;
        }
        log.line(mp::fields("A", "E", mp::mono_ns(), pid, s, op, target, arg, status));
    };

    std::mt19937_64 rng(seed * 131 + 7);
    while (mp::mono_ns() < deadline) {
        const auto roll = rng() % 100;
        if (roll < 35) {
            // Time moves on for everyone, mostly a little, sometimes by
            // hours, now and then back by up to two minutes.
            const auto r = rng() % 100;
            std::int64_t us =
                r < 75   ? static_cast<std::int64_t>(rng() % 600'000'000)
                : r < 93 ? 600'000'000 + static_cast<std::int64_t>(rng() % 5'400'000'000)
                : r < 98 ? -static_cast<std::int64_t>(rng() % 120'000'000)
                         : 21'600'000'000 + static_cast<std::int64_t>(rng() % 86'400'000'000);
            clock.advance(duration(us));
            log.line(mp::fields("C", mp::mono_ns(), pid, us));
        } else if (roll < 40) {
            // A complaint, as a provider's webhook reports it; every process
            // feeds the same few events, each of which may apply only once.
            const auto n = rng() % 40;
            const auto& to = universe[(n * 7) % universe.size()];
            webhook_result parsed;
            parsed.outcome = webhook_outcome::events;
            parsed.http_status = 200;
            event ev;
            ev.type = event_type::complained;
            ev.provider = "postmark";
            ev.recipient = to;
            ev.dedup_key = "postmark:mp-" + std::to_string(n);
            parsed.events.push_back(ev);
            std::string outcome = "error";
            change("addr:" + to, "suppress", "event:" + ev.dedup_key, [&] {
                const auto res = eng->apply_webhook(webhook_provider::postmark, parsed);
                outcome = res.duplicates ? "duplicate" : res.suppressed ? "suppressed" : "applied";
                return res.suppressed > 0;
            });
            log.line(mp::fields("W", mp::mono_ns(), pid, ev.dedup_key, outcome));
        } else if (roll < 60 && rng() % 50 == 0) {
            // An erasure, rare: the address stays suppressed (as a keyed
            // hash) for good, whatever is unsuppressed later.
            std::vector<std::string> candidates;
            for (const auto& a : universe)
                if (mp::erasable(a)) candidates.push_back(a);
            const auto& to = candidates[rng() % candidates.size()];
            change("addr:" + to, "erase", "-", [&] {
                eng->erase_person(chaos, to);
                return true;
            });
        } else if (roll < 60) {
            const bool dom = rng() % 8 == 0;
            const auto value =
                dom ? mp::suppressible_domains()[rng() % mp::suppressible_domains().size()]
                    : universe[rng() % universe.size()];
            const auto skind = dom ? suppression_kind::domain : suppression_kind::address;
            const auto target = (dom ? "dom:" : "addr:") + value;
            // Lifting is likelier than adding, so most recipients stay
            // sendable and the caps get exercised too.
            const bool add = rng() % 10 == 0;
            auto guard_probe = [&] {
                return dom ? eng->is_suppressed("mp-probe@" + value) : eng->is_suppressed(value);
            };
            bool in_force = false;
            try {
                in_force = guard_probe();
            } catch (const mailers::exception&) {
            }
            if (in_force || !add)
                change(target, "unsuppress", "-",
                       [&] { return eng->unsuppress(chaos, skind, value); });
            else
                change(target, "suppress", "-", [&] {
                    // An erased address is suppressed already: suppress()
                    // stores and audits nothing for it.
                    const auto e = dom ? std::nullopt : eng->find_suppression(value);
                    eng->suppress(chaos, skind, value, suppression_reason::manual, "mp");
                    return !(e && is_erased_value(e->value));
                });
        } else if (roll < 80) {
            const auto& t =
                rng() % 30 == 0 ? targets[0] : targets[1 + rng() % (targets.size() - 1)];
            const auto target = "pause:" + mp::pause_key(t);
            if (eng->is_paused(t)) {
                change(target, "resume", "-", [&] {
                    try {
                        eng->resume(chaos, t);
                        return true;
                    } catch (const mailers::exception& e) {
                        if (e.code() != errc::not_found) throw;
                        return false;
                    }
                });
            } else if (rng() % 10 == 0) {
                change(target, "pause", "-", [&] {
                    eng->pause(chaos, t, "mp");
                    return true;
                });
            }
        } else if (roll < 83) {
            // Every process measures the pause rules now and then, as a
            // host's timer would, besides after each failure.
            try {
                eng->check_pause_rules();
            } catch (const mailers::exception&) {
            }
        } else {
            // A cap change: the object's other version, or its base one.
            const bool quota_change = rng() % 2 == 0;
            const bool alt = rng() % 2 == 0;
            if (quota_change) {
                const auto& q = qspecs[vquotas[rng() % vquotas.size()]];
                const auto& l = alt ? q.alt_limits : q.base.limits;
                change(mp::object_name(q), "caps", mp::limits_text(l), [&] {
                    eng->set_quota(chaos, q.with(l));
                    return true;
                });
            } else {
                const auto& m = specs[vmailboxes[rng() % vmailboxes.size()]];
                const auto& l = alt ? m.alt_limits : m.limits;
                change(mp::object_name(m), "caps", mp::limits_text(l), [&] {
                    eng->upsert_mailbox(chaos, m.config(l));
                    return true;
                });
            }
        }
        ++chaos_done;
    }
    sender.join();
    eng->flush();
    drainer->flush();
    drainer.reset();
    const auto st = eng->stats();
    std::string line = mp::fields("X", pid, issued.load());
    for (int c = 0; c < c_count; ++c) line += "\t" + std::to_string(seen[c].load());
    line += "\t" + mp::fields(st.accepted, st.failed, st.unknown, st.suppressed, st.no_capacity,
                              st.paused, st.duplicates, st.rejected, st.failovers);
    eng.reset();
    work.reset();
    io1.join();
    io2.join();
    log.line(line);
    std::cout << name << " [" << pid << "]: " << issued.load() << " sends, " << chaos_done.load()
              << " admin/clock operations" << std::endl;
    return 0;
}
