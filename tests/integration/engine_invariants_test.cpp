// Randomised, concurrent attacks on the engine's invariants (MISSION.md):
// many sends from several threads on a multi-threaded io_context, while
// other threads suppress and unsuppress, pause and resume, change caps,
// move the clock and change the transport faults. What leaves is checked
// where it leaves:
//
//   engine -> checking_transport -> fault_injector -> recording_transport
//
// The checking transport sits on top so that it sees a message at the
// moment the engine hands it off (the injector may delay it afterwards);
// it compares it with what the test knows to be in force. The recording
// transport at the bottom sees what was actually delivered.
//
// MAILERS_PROPERTY_OPS scales the run (default below keeps the file well
// under a minute on two cores); MAILERS_PROPERTY_SEED replays a seed. The
// interleaving itself is up to the scheduler, so a seed replays the
// operations, not their timing.
#include <date/tz.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <condition_variable>
#include <cstdlib>
#include <future>
#include <mailers/transports/fault_injector.hpp>
#include <map>
#include <semaphore>
#include <set>
#include <sstream>
#include <thread>
#include <unordered_map>

#include "engine_fixture.hpp"
#include "forwarding_store.hpp"
#include "invariant_helpers.hpp"

using namespace mailers;
using namespace mailers_test;

namespace {

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
    const char* v = std::getenv(name);
    if (!v || !*v) return fallback;
    return std::strtoull(v, nullptr, 10);
}

std::uint64_t pick_seed() {
    auto s = env_u64("MAILERS_PROPERTY_SEED", 0);
    return s != 0 ? s
                  : (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^
                        std::random_device{}();
}

/// Violations found anywhere; kept for the report, checked at the end on
/// the test's own thread (doctest assertions stay on one thread).
struct violations {
    std::mutex mu;
    std::uint64_t count = 0;
    std::vector<std::string> first;
    void add(std::string what) {
        std::lock_guard lock(mu);
        ++count;
        if (first.size() < 25) first.push_back(std::move(what));
    }
    std::string report() {
        std::lock_guard lock(mu);
        std::string out;
        for (auto& f : first) out += f + "\n";
        return out;
    }
};

/// What the test knows to be in force. An entry goes in only after the
/// engine call that establishes it returned (suppress, pause) and comes out
/// before the call that lifts it (unsuppress, resume), so anything the
/// engine hands off while an entry is present is a real violation.
struct truth {
    std::mutex mu;
    std::set<std::string> addresses;
    std::set<std::string> domains;
    std::set<std::string> pauses;  // "scope:id"
};

std::string pause_key(const pause_target& t) {
    static const char* names[] = {"workspace", "pool", "mailbox", "provider", "sender_domain"};
    return std::string(names[static_cast<int>(t.scope)]) + ":" + t.id;
}

class checking_transport final : public provider_transport {
public:
    checking_transport(boost::asio::any_io_executor ex, std::string provider,
                       std::shared_ptr<provider_transport> inner, truth& t, violations& v)
        : provider_transport(std::move(ex)),
          provider_(std::move(provider)),
          inner_(std::move(inner)),
          truth_(t),
          bad_(v) {}

    std::string_view name() const noexcept override { return "checking"; }
    std::uint64_t handed() const { return handed_.load(); }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler h) override {
        check(*out);
        ++handed_;
        inner_->async_send(std::move(out), std::move(h));
    }

private:
    void check(const outbound& o) {
        auto rcpt = lower(o.env.rcpt_to.at(0));
        std::string_view domain(rcpt);
        domain.remove_prefix(domain.rfind('@') + 1);
        auto pool = header(o, "X-Test-Pool");
        auto sender_domain = lower(o.msg.from.domain);
        std::string what;
        {
            std::lock_guard lock(truth_.mu);
            if (truth_.addresses.count(rcpt)) what += " suppressed address;";
            for (auto d = domain;;) {
                if (truth_.domains.count(std::string(d)))
                    what += " suppressed domain " + std::string(d) + ";";
                auto dot = d.find('.');
                if (dot == std::string_view::npos) break;
                d.remove_prefix(dot + 1);
            }
            for (auto key :
                 {std::string("workspace:"), pool.empty() ? std::string() : "pool:" + pool,
                  "mailbox:" + o.mailbox_id, "provider:" + provider_,
                  "sender_domain:" + sender_domain})
                if (!key.empty() && truth_.pauses.count(key)) what += " paused " + key + ";";
        }
        if (!what.empty())
            bad_.add("hand-off of send " + o.send_id + " to " + rcpt + " from " + o.mailbox_id +
                     ":" + what);
    }

    std::string provider_;
    std::shared_ptr<provider_transport> inner_;
    truth& truth_;
    violations& bad_;
    std::atomic<std::uint64_t> handed_{0};
};

struct delivery {
    std::string send_id, mailbox, key, recipient;
    time_point handed_at{};  // the message's Date: the clock when the engine handed it off
};

class recording_transport final : public provider_transport {
public:
    explicit recording_transport(boost::asio::any_io_executor ex)
        : provider_transport(std::move(ex)) {}
    std::string_view name() const noexcept override { return "recording"; }
    std::vector<delivery> log() const {
        std::lock_guard lock(mu_);
        return log_;
    }

protected:
    void do_send(std::shared_ptr<const outbound> out, any_send_handler h) override {
        {
            std::lock_guard lock(mu_);
            log_.push_back({out->send_id, out->mailbox_id, header(*out, "X-Test-Key"),
                            lower(out->env.rcpt_to.at(0)), out->msg.date.value_or(time_point{})});
        }
        std::move(h)(error_code{}, send_outcome{"rec-" + out->send_id, {}});
    }

private:
    mutable std::mutex mu_;
    std::vector<delivery> log_;
};

// --- the workspace under attack ----------------------------------------------

struct mailbox_spec {
    std::string id, addr, provider;
    std::vector<rate_limit> limits;
    std::vector<rate_limit> alt_limits;  // non-empty: a cap-change target
    std::string zone = "UTC";
    std::chrono::seconds min_gap{0}, jitter{0};
    warmup_ramp warmup;
    std::uint32_t weight = 1;
    std::int32_t priority = 0;

    std::vector<rate_limit> limits_at(int version) const {
        return alt_limits.empty() || version % 2 == 0 ? limits : alt_limits;
    }
    mailbox_config config(int version) const {
        mailbox_config m;
        m.id = id;
        auto at = addr.find('@');
        m.from = address{addr.substr(0, at), addr.substr(at + 1), "Rep " + id};
        m.provider = provider;
        m.limits = limits_at(version);
        m.time_zone = zone;
        m.min_gap = min_gap;
        m.jitter = jitter;
        m.warmup = warmup;
        m.weight = weight;
        m.priority = priority;
        return m;
    }
};

std::vector<mailbox_spec> mailbox_specs() {
    using std::chrono::seconds;
    std::vector<mailbox_spec> v;
    v.push_back({"m0", "a0@brand.com", "pa", {rate_limit::per_hour(4)}, {rate_limit::per_hour(2)}});
    v.push_back({"m1",
                 "a1@brand.com",
                 "pa",
                 {rate_limit::per_hour(3), rate_limit::per_day(12, window_kind::calendar)},
                 {}});
    v.push_back({"m2",
                 "a2@other.com",
                 "pb",
                 {rate_limit::per_day(10, window_kind::calendar)},
                 {rate_limit::per_day(5, window_kind::calendar)},
                 "America/New_York"});
    v.push_back(
        {"m3", "a3@other.com", "pb", {rate_limit::per_minute(1), rate_limit::per_hour(6)}, {}});
    v.push_back({"m4", "a4@third.com", "pc", {}, {}, "UTC", seconds(30), seconds(30)});
    v.push_back({"m5", "a5@third.com", "pc", {}, {}, "Europe/Berlin"});
    v.back().warmup = warmup_ramp{3, 2, 9, test_epoch()};
    v.push_back({"m6", "a6@bulk.com", "pc", {}, {}});
    v.push_back({"m7", "a7@bulk.com", "pa", {rate_limit::per_hour(20)}, {}});
    v[0].weight = 3;
    v[6].weight = 5;
    v[3].priority = -1;
    return v;
}

std::vector<quota> quota_specs() {
    return {
        quota{quota_scope::provider, "pc", {rate_limit::per_hour(40)}, {}},
        quota{quota_scope::sender_domain,
              "bulk.com",
              {rate_limit::per_day(300, window_kind::calendar)},
              "Asia/Tokyo"},
        quota{quota_scope::recipient_domain, "*", {rate_limit::per_hour(20)}, {}},
        quota{quota_scope::recipient_domain, "d2.org", {rate_limit::per_minute(2)}, {}},
    };
}

const std::vector<std::string> recipient_domains = {
    "example.com", "d1.org", "d2.org", "d3.org", "sub.d3.org", "xn--bcher-kva.example"};
const std::vector<std::string> suppressible_domains = {"d1.org", "d3.org", "example.com",
                                                       "sub.d3.org"};

std::vector<std::string> recipient_universe() {
    std::vector<std::string> out;
    for (const auto& d : recipient_domains)
        for (int i = 0; i < 6; ++i) out.push_back("u" + std::to_string(i) + "@" + d);
    return out;
}

std::vector<pause_target> pause_targets() {
    std::vector<pause_target> out{{pause_scope::workspace, ""}};
    for (auto p : {"all", "w", "pri", "quiet"}) out.push_back({pause_scope::pool, p});
    for (const auto& m : mailbox_specs()) out.push_back({pause_scope::mailbox, m.id});
    for (auto p : {"pa", "pb", "pc"}) out.push_back({pause_scope::provider, p});
    for (auto d : {"brand.com", "other.com", "third.com", "bulk.com"})
        out.push_back({pause_scope::sender_domain, d});
    return out;
}

// --- cap bookkeeping ----------------------------------------------------------

/// A cap that may change during the run: versions are counted when a change
/// starts and when it has returned, so each send knows the range of
/// versions that may have been in force when it reserved.
struct cap_versions {
    std::atomic<int> started{0};
    std::atomic<int> completed{0};
};

struct issued_send {
    std::string key;
    std::vector<int> v_lo,
        v_hi;  // per versioned mailbox: completed at issue, started at completion
    bool done = false;
    error_code ec;
    send_result res;
};

/// A delivered send with the time its reservation was made.
struct counted {
    time_point at{};
    std::uint64_t allowed = 0;  // the cap it may have been admitted under
};

/// Checks one limit over one group's deliveries: no window ever holds more
/// than the cap. For sends reserved at the same instant the window ends
/// after all of them and the loosest of their caps applies (the last to
/// reserve saw all the others).
void check_limit(const std::string& what, std::vector<counted> ds, const rate_limit& l,
                 const date::time_zone* zone, violations& bad, std::uint64_t& windows_checked) {
    std::sort(ds.begin(), ds.end(), [](const counted& a, const counted& b) { return a.at < b.at; });
    std::size_t start = 0;
    for (std::size_t i = 0; i < ds.size();) {
        std::size_t g = i;
        std::uint64_t allowed = ds[i].allowed;
        while (g + 1 < ds.size() && ds[g + 1].at == ds[i].at)
            allowed = std::max(allowed, ds[++g].allowed);
        const auto t = ds[i].at;
        if (l.kind == window_kind::rolling) {
            while (ds[start].at <= t - std::chrono::duration_cast<duration>(l.length)) ++start;
        } else {
            while (calendar_period(zone, l.length, ds[start].at) !=
                   calendar_period(zone, l.length, t))
                ++start;
        }
        const std::uint64_t n = g - start + 1;
        ++windows_checked;
        if (n > allowed) {
            std::ostringstream os;
            os << what << ": " << n << " sends in the window ending at "
               << t.time_since_epoch().count() << " us, cap " << allowed;
            bad.add(os.str());
        }
        i = g + 1;
    }
}

/// A manual clock that can park one now() call after taking the time, as
/// if the calling thread were preempted between reading the clock and
/// using the value, while other threads go on.
class parking_clock final : public mailers::clock {
public:
    explicit parking_clock(time_point t) : inner_(t) {}
    time_point now() const noexcept override {
        auto t = inner_.now();
        std::unique_lock lock(mu_);
        if (armed_) {
            armed_ = false;
            parked_ = true;
            cv_.notify_all();
            cv_.wait(lock, [&] { return !parked_; });
        }
        return t;
    }
    void advance(duration d) { inner_.advance(d); }
    /// The next now() call, from any thread, parks until release().
    void arm() {
        std::lock_guard lock(mu_);
        armed_ = true;
    }
    void wait_parked() {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return parked_; });
    }
    void release() {
        std::lock_guard lock(mu_);
        parked_ = false;
        cv_.notify_all();
    }

private:
    manual_clock inner_;
    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    mutable bool armed_ = false;
    mutable bool parked_ = false;
};

}  // namespace

TEST_CASE(
    "a send that read the clock before a concurrent send reserved still counts that reservation") {
    // Two sends race for the last unit of a rolling cap. The first reads the
    // clock and is preempted; the second reads a later time and reserves.
    // When the first resumes, its decision must count the second's
    // reservation although it lies after the time the first had read.
    boost::asio::io_context ioc;
    auto clock = std::make_shared<parking_clock>(test_epoch());
    engine_params params;
    params.storage = open_sqlite_store({":memory:"});
    params.clock = clock;
    engine eng(ioc.get_executor(), params);
    const principal admin{"admin", "Set-up"};
    auto capture = std::make_shared<capture_transport>(ioc.get_executor());
    eng.add_provider(admin, "capture", capture);
    mailbox_config m;
    m.id = "second";
    m.from = address{"second", "brand.com", {}};
    m.provider = "capture";
    m.limits = {rate_limit::per_hour(1)};
    eng.upsert_mailbox(admin, m);

    auto work = boost::asio::make_work_guard(ioc);
    std::thread io1([&] { ioc.run(); }), io2([&] { ioc.run(); });
    using outcome_t = std::pair<error_code, send_result>;
    auto send = [&](send_request r) {
        auto pr = std::make_shared<std::promise<outcome_t>>();
        auto fut = pr->get_future();
        eng.async_send(std::move(r), [pr](error_code ec, send_result res) {
            pr->set_value({ec, std::move(res)});
        });
        return fut;
    };

    clock->arm();
    auto a = send(fixture::direct("second", "a@example.com"));
    clock->wait_parked();  // a has read the time and is preempted
    clock->advance(30s);
    auto b = send(fixture::direct("second", "b@example.com")).get();
    CHECK_FALSE(b.first);
    clock->release();
    auto r = a.get();
    CHECK(r.first == errc::no_capacity);
    CHECK(capture->count() == 1);
    CHECK(eng.status("second").sent_this_hour == 1);
    work.reset();
    io1.join();
    io2.join();
}

TEST_CASE(
    "property: invariants hold under concurrent sends, admin operations, clock moves and faults") {
    const std::uint64_t seed = pick_seed();
    const std::uint64_t ops = env_u64("MAILERS_PROPERTY_OPS", 200000);
    CAPTURE(seed);
    CAPTURE(ops);
    MESSAGE("seed " << seed << " (replay with MAILERS_PROPERTY_SEED), ops " << ops);

    db_file db("invariants");
    auto store = open_sqlite_store({db.path.string(), mailers::open_mode::open_or_create});
    boost::asio::io_context ioc;
    auto clock = std::make_shared<manual_clock>(test_epoch());
    truth known;
    violations bad;
    const principal admin{"admin", "Set-up"};
    const principal chaos{"chaos", "Chaos"};

    engine_params params;
    params.storage = store;
    params.clock = clock;
    params.random_seed = seed;
    auto eng = std::make_unique<engine>(ioc.get_executor(), params);

    auto recorder = std::make_shared<recording_transport>(ioc.get_executor());
    std::map<std::string, std::shared_ptr<fault_injector>> faults;
    std::map<std::string, std::shared_ptr<checking_transport>> checkers;
    for (auto p : {"pa", "pb", "pc"}) {
        faults[p] = std::make_shared<fault_injector>(recorder);
        faults[p]->set_seed(seed ^ std::hash<std::string>{}(p));
        checkers[p] =
            std::make_shared<checking_transport>(ioc.get_executor(), p, faults[p], known, bad);
        eng->add_provider(admin, p, checkers[p]);
    }
    const auto specs = mailbox_specs();
    std::vector<std::size_t> versioned;  // indexes into specs
    for (std::size_t i = 0; i < specs.size(); ++i) {
        eng->upsert_mailbox(admin, specs[i].config(0));
        if (!specs[i].alt_limits.empty()) versioned.push_back(i);
    }
    std::vector<cap_versions> versions(versioned.size());
    auto make_pool = [&](std::string id, std::vector<std::string> ids, rotation_kind kind,
                         std::uint32_t attempts, bool sticky) {
        pool_config p;
        p.id = std::move(id);
        p.mailboxes = std::move(ids);
        p.policy.kind = kind;
        p.policy.max_attempts = attempts;
        p.policy.sticky_sender = sticky;
        eng->upsert_pool(admin, p);
    };
    make_pool("all", {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"}, rotation_kind::round_robin,
              3, true);
    make_pool("w", {"m0", "m1", "m6", "m7"}, rotation_kind::weighted, 3, false);
    make_pool("pri", {"m3", "m6", "m2"}, rotation_kind::priority, 2, false);
    make_pool("quiet", {"m4", "m5"}, rotation_kind::round_robin, 1, false);
    for (const auto& q : quota_specs()) eng->set_quota(admin, q);
    const std::vector<std::string> pools{"all", "w", "pri", "quiet"};

    const auto universe = recipient_universe();
    const auto targets = pause_targets();
    // Per-target locks keep each target's test-side record and engine call
    // together, so two chaos threads never race on one target.
    std::map<std::string, std::mutex> target_locks;
    for (const auto& a : universe) target_locks[a];
    for (const auto& d : suppressible_domains) target_locks[d];
    for (const auto& t : targets) target_locks[pause_key(t)];
    for (const auto& s : specs) target_locks["caps:" + s.id];

    // --- run ------------------------------------------------------------------
    const std::uint64_t total_sends = std::max<std::uint64_t>(100, ops * 4 / 5);
    const std::uint64_t key_space = std::max<std::uint64_t>(20, total_sends / 4);
    const int sender_threads = 2, chaos_threads = 2, io_threads = 3;
    const std::uint64_t sends_per_chaos_op = 8;  // per chaos thread: one op per 8 sends issued
    std::vector<issued_send> issued(total_sends);
    std::atomic<std::uint64_t> issued_count{0}, completed_count{0}, admin_mutations{0},
        chaos_ops_done{0};
    std::mutex progress_mu;
    std::condition_variable progress_cv;
    std::counting_semaphore<> in_flight(96);

    auto work = boost::asio::make_work_guard(ioc);
    std::vector<std::thread> io;
    for (int i = 0; i < io_threads; ++i) io.emplace_back([&] { ioc.run(); });

    auto sender = [&](int t) {
        std::mt19937_64 rng(seed * 31 + static_cast<std::uint64_t>(t));
        for (std::uint64_t i = static_cast<std::uint64_t>(t); i < total_sends;
             i += sender_threads) {
            send_request r;
            auto roll = rng() % 100;
            if (roll < 22) {
                r.mailbox = specs[rng() % specs.size()].id;
            } else {
                r.pool = pools[rng() % pools.size()];
            }
            auto to = universe[rng() % universe.size()];
            if (rng() % 3 == 0) std::transform(to.begin(), to.end(), to.begin(), ::toupper);
            auto at = to.find('@');
            r.to = address{to.substr(0, at), to.substr(at + 1), {}};
            r.subject = "s" + std::to_string(i);
            r.text = "hello";
            if (roll >= 97) r.subject += "\r\nBcc: x@evil.example";  // rejected, never handed off
            if (roll == 96) r.pool = "no-such-pool";
            if (rng() % 10 < 7) r.idempotency_key = "k-" + std::to_string(rng() % key_space);
            r.headers.push_back({"X-Test-Key", r.idempotency_key});
            r.headers.push_back({"X-Test-Pool", r.pool});
            auto& rec = issued[i];
            rec.key = r.idempotency_key;
            for (auto& v : versions) rec.v_lo.push_back(v.completed.load());
            in_flight.acquire();
            eng->async_send(std::move(r), [&, i](error_code ec, send_result res) {
                auto& out = issued[i];
                for (auto& v : versions) out.v_hi.push_back(v.started.load());
                out.ec = ec;
                out.res = std::move(res);
                out.done = true;
                in_flight.release();
                if (completed_count.fetch_add(1) + 1 == total_sends) {
                    std::lock_guard lock(progress_mu);
                    progress_cv.notify_all();
                }
            });
            if (issued_count.fetch_add(1) % sends_per_chaos_op == 0) {
                std::lock_guard lock(progress_mu);
                progress_cv.notify_all();
            }
        }
    };

    auto chaos_op = [&](std::mt19937_64& rng) {
        auto roll = rng() % 100;
        if (roll < 30) {  // the clock moves on, sometimes far
            auto r = rng() % 100;
            auto us = r < 80   ? rng() % 1'800'000'000ull
                      : r < 98 ? 1'800'000'000ull + rng() % 7'200'000'000ull
                               : 21'600'000'000ull + rng() % 86'400'000'000ull;
            clock->advance(duration(static_cast<duration::rep>(us)));
        } else if (roll < 50) {  // suppression, address or domain
            bool dom = rng() % 8 == 0;
            auto value = dom ? suppressible_domains[rng() % suppressible_domains.size()]
                             : universe[rng() % universe.size()];
            auto kind = dom ? suppression_kind::domain : suppression_kind::address;
            auto& set = dom ? known.domains : known.addresses;
            std::lock_guard tl(target_locks.at(value));
            bool in_force;
            {
                std::lock_guard lock(known.mu);
                in_force = set.count(value) != 0;
            }
            // Lifting is likelier than adding, so most recipients stay
            // sendable and the caps get exercised too.
            if (in_force || rng() % 10 < 9) {
                {
                    std::lock_guard lock(known.mu);
                    set.erase(value);
                }
                if (eng->unsuppress(chaos, kind, value)) ++admin_mutations;
            } else {
                eng->suppress(chaos, kind, value, suppression_reason::manual, "chaos");
                ++admin_mutations;
                std::lock_guard lock(known.mu);
                set.insert(value);
            }
        } else if (roll < 70) {  // pause or resume
            auto t = rng() % 30 == 0 ? targets[0] : targets[1 + rng() % (targets.size() - 1)];
            auto key = pause_key(t);
            std::lock_guard tl(target_locks.at(key));
            bool paused;
            {
                std::lock_guard lock(known.mu);
                paused = known.pauses.count(key) != 0;
            }
            if (paused) {
                {
                    std::lock_guard lock(known.mu);
                    known.pauses.erase(key);
                }
                eng->resume(chaos, t);
                ++admin_mutations;
            } else if (rng() % 10 < 1) {
                eng->pause(chaos, t, "chaos");
                ++admin_mutations;
                std::lock_guard lock(known.mu);
                known.pauses.insert(key);
            }
        } else if (roll < 85) {  // transport faults
            auto& fi = *std::next(faults.begin(), static_cast<long>(rng() % faults.size()))->second;
            double p = static_cast<double>(rng() % 300) / 1000.0;
            switch (rng() % 6) {
                case 0:
                    fi.clear();
                    break;
                case 1:
                    fi.fail_with_probability(p, make_error_code(transport_errc::temporary_reply));
                    break;
                case 2: {
                    diagnostics d;
                    d.retry_after = std::chrono::seconds(1 + rng() % 300);
                    fi.fail_with_probability(p, make_error_code(transport_errc::rate_limited), d);
                    break;
                }
                case 3:
                    fi.fail_with_probability(p / 4,
                                             make_error_code(transport_errc::recipient_rejected));
                    break;
                case 4:
                    fi.unknown_with_probability(p / 3);
                    break;
                case 5:
                    fi.add_latency(std::chrono::microseconds(rng() % 300));
                    break;
            }
        } else {  // a cap change on a versioned mailbox
            auto w = rng() % versioned.size();
            const auto& spec = specs[versioned[w]];
            std::lock_guard tl(target_locks.at("caps:" + spec.id));
            int v = versions[w].started.fetch_add(1) + 1;
            eng->upsert_mailbox(chaos, spec.config(v));
            ++admin_mutations;
            versions[w].completed.store(v);
        }
        ++chaos_ops_done;
    };

    auto chaos_thread = [&](int t) {
        std::mt19937_64 rng(seed * 131 + 7 + static_cast<std::uint64_t>(t));
        const std::uint64_t my_ops = total_sends / sends_per_chaos_op;
        for (std::uint64_t j = 0; j < my_ops; ++j) {
            {
                std::unique_lock lock(progress_mu);
                progress_cv.wait(lock,
                                 [&] { return issued_count.load() >= j * sends_per_chaos_op; });
            }
            chaos_op(rng);
        }
    };

    auto started = std::chrono::steady_clock::now();
    std::vector<std::thread> threads;
    for (int t = 0; t < sender_threads; ++t) threads.emplace_back(sender, t);
    for (int t = 0; t < chaos_threads; ++t) threads.emplace_back(chaos_thread, t);
    for (auto& th : threads) th.join();
    {
        std::unique_lock lock(progress_mu);
        progress_cv.wait(lock, [&] { return completed_count.load() == total_sends; });
    }
    eng->flush();
    work.reset();
    for (auto& th : io) th.join();
    auto elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    // --- every result is accounted for -----------------------------------------
    auto st = eng->stats();
    std::map<std::string, std::uint64_t> seen;
    for (const auto& rec : issued) {
        REQUIRE(rec.done);
        const auto& ec = rec.ec;
        if (!ec)
            ++seen["accepted"];
        else if (ec == errc::duplicate)
            ++seen["duplicates"];
        else if (ec == errc::suppressed)
            ++seen["suppressed"];
        else if (ec == errc::no_capacity)
            ++seen["no_capacity"];
        else if (ec == errc::paused)
            ++seen["paused"];
        else if (ec == errc::header_injection || ec == errc::unknown_pool ||
                 ec == errc::invalid_address)
            ++seen["rejected"];
        else if (ec == failure::unknown_outcome)
            ++seen["unknown"];
        else
            ++seen["failed"];
    }
    CHECK(st.accepted == seen["accepted"]);
    CHECK(st.duplicates == seen["duplicates"]);
    CHECK(st.suppressed == seen["suppressed"]);
    CHECK(st.no_capacity == seen["no_capacity"]);
    CHECK(st.paused == seen["paused"]);
    CHECK(st.rejected == seen["rejected"]);
    CHECK(st.unknown == seen["unknown"]);
    CHECK(st.failed == seen["failed"]);
    CHECK(st.accepted + st.failed + st.unknown + st.suppressed + st.no_capacity + st.paused +
              st.duplicates + st.rejected ==
          total_sends);
    std::ostringstream summary;
    summary << total_sends << " sends + " << chaos_ops_done.load() << " admin/clock/fault ops in "
            << elapsed << " s: accepted " << st.accepted << ", failed " << st.failed << ", unknown "
            << st.unknown << ", suppressed " << st.suppressed << ", no_capacity " << st.no_capacity
            << ", paused " << st.paused << ", duplicates " << st.duplicates << ", rejected "
            << st.rejected << ", failovers " << st.failovers << "; simulated time "
            << std::chrono::duration_cast<std::chrono::hours>(clock->now() - test_epoch()).count()
            << " h";
    MESSAGE(summary.str());

    // --- invariant 5: every mutation by a principal is audited; the log verifies
    std::uint64_t bad_seq = 0;
    CHECK(eng->verify_audit(&bad_seq) == error_code{});
    CAPTURE(bad_seq);
    auto audit = eng->audit_log();
    CHECK(std::count_if(audit.begin(), audit.end(), [](const audit_record& r) {
              return r.actor == "chaos";
          }) == static_cast<std::ptrdiff_t>(admin_mutations.load()));

    // Snapshot of the live state, to compare with what a restart loads.
    std::vector<bool> live_suppressed;
    for (const auto& a : universe) live_suppressed.push_back(eng->is_suppressed(a));
    std::vector<bool> live_paused;
    for (const auto& t : targets) live_paused.push_back(eng->is_paused(t));
    std::vector<std::pair<std::uint64_t, std::uint64_t>> live_counts;
    for (const auto& s : specs)
        live_counts.emplace_back(eng->status(s.id).sent_today, eng->status(s.id).sent_this_hour);
    auto live_mailboxes = eng->mailboxes();
    eng.reset();

    // --- what was delivered, against the ledger -----------------------------------
    const auto deliveries = recorder->log();
    std::unordered_map<std::string, ledger_row> rows;
    store->for_each_send("default", time_point::min(), time_point::max(),
                         [&](const ledger_row& r) { rows.emplace(std::to_string(r.id), r); });
    std::unordered_map<std::string, int> per_send, per_key;
    for (const auto& d : deliveries) {
        if (++per_send[d.send_id] > 1) bad.add("send " + d.send_id + " delivered twice");
        // Invariant 3: one delivery per idempotency key, failover or not.
        if (!d.key.empty() && ++per_key[d.key] > 1)
            bad.add("idempotency key " + d.key + " delivered twice");
        auto it = rows.find(d.send_id);
        if (it == rows.end()) {
            bad.add("delivered send " + d.send_id + " has no ledger row");
        } else if (it->second.state != send_state::accepted &&
                   it->second.state != send_state::unknown) {
            bad.add("delivered send " + d.send_id + " is recorded " +
                    std::string(to_string(it->second.state)));
        } else if (it->second.mailbox != d.mailbox) {
            bad.add("delivered send " + d.send_id + " from " + d.mailbox + " is recorded for " +
                    it->second.mailbox);
        }
    }
    std::uint64_t reserved_left = 0;
    for (const auto& [id, r] : rows) {
        if (r.state == send_state::reserved) ++reserved_left;
        if ((r.state == send_state::accepted || r.state == send_state::unknown) &&
            !per_send.count(id))
            bad.add("send " + id + " is recorded " + std::string(to_string(r.state)) +
                    " but never reached the provider");
    }
    CHECK(reserved_left == 0);
    CHECK(deliveries.size() == st.accepted + st.unknown);

    // --- invariant 2: no window ever holds more than the cap -----------------------
    // Counted at the time the engine reserved (the ledger's reserved_at): the
    // instant its caps were decided on.
    std::map<std::string, std::size_t> spec_index;
    for (std::size_t i = 0; i < specs.size(); ++i) spec_index[specs[i].id] = i;
    std::unordered_map<std::string, const issued_send*> by_send;
    for (const auto& rec : issued)
        if (!rec.res.send_id.empty() && !rec.res.duplicate) by_send[rec.res.send_id] = &rec;
    std::uint64_t windows_checked = 0, skewed = 0;
    std::map<std::string, std::vector<const delivery*>> by_mailbox;
    for (const auto& d : deliveries) by_mailbox[d.mailbox].push_back(&d);
    auto reserved_at = [&](const delivery& d) { return rows.at(d.send_id).reserved_at; };
    for (const auto& d : deliveries)
        if (rows.count(d.send_id) && d.handed_at != reserved_at(d)) ++skewed;
    for (const auto& [mb, ds] : by_mailbox) {
        if (!spec_index.count(mb)) continue;
        const auto& spec = specs[spec_index[mb]];
        const auto* zone = date::locate_zone(spec.zone);
        auto w = std::find(versioned.begin(), versioned.end(), spec_index[mb]);
        for (std::size_t li = 0; li < spec.limits.size(); ++li) {
            std::vector<counted> cs;
            for (const auto* d : ds) {
                if (!rows.count(d->send_id)) continue;
                std::uint64_t allowed = spec.limits[li].max;
                if (w != versioned.end()) {
                    auto vi = static_cast<std::size_t>(w - versioned.begin());
                    auto sit = by_send.find(d->send_id);
                    REQUIRE(sit != by_send.end());
                    allowed = 0;
                    for (int v = sit->second->v_lo[vi]; v <= sit->second->v_hi[vi]; ++v)
                        allowed = std::max(allowed, spec.limits_at(v)[li].max);
                }
                cs.push_back({reserved_at(*d), allowed});
            }
            check_limit("mailbox " + mb + " limit " + std::to_string(li), cs, spec.limits[li], zone,
                        bad, windows_checked);
        }
        if (spec.warmup.start != 0) {
            // The ramp: start + step per local day, up to target, per calendar day.
            std::map<long, std::uint64_t> per_day;
            for (const auto* d : ds) {
                auto day0 = date::floor<date::days>(local(zone, spec.warmup.start_date));
                auto day = date::floor<date::days>(local(zone, reserved_at(*d)));
                auto n = ++per_day[(day - day0).count()];
                auto cap = std::min<std::uint64_t>(
                    spec.warmup.start + spec.warmup.step * (day - day0).count(),
                    spec.warmup.target);
                ++windows_checked;
                if (n > cap)
                    bad.add("mailbox " + mb + " exceeded its warm-up ramp on day " +
                            std::to_string((day - day0).count()));
            }
        }
        if (spec.min_gap.count() > 0) {
            std::vector<time_point> ts;
            for (const auto* d : ds) ts.push_back(reserved_at(*d));
            std::sort(ts.begin(), ts.end());
            for (std::size_t i = 1; i < ts.size(); ++i)
                if (ts[i] - ts[i - 1] < spec.min_gap)
                    bad.add("mailbox " + mb + " sent twice within its minimum gap");
        }
    }
    for (const auto& q : quota_specs()) {
        std::map<std::string, std::vector<counted>> groups;
        for (const auto& d : deliveries) {
            if (!rows.count(d.send_id) || !spec_index.count(d.mailbox)) continue;
            const auto& spec = specs[spec_index[d.mailbox]];
            std::string rdomain = d.recipient.substr(d.recipient.rfind('@') + 1);
            std::string key;
            if (q.scope == quota_scope::provider && spec.provider == q.key) key = q.key;
            if (q.scope == quota_scope::sender_domain && spec.addr.ends_with("@" + q.key))
                key = q.key;
            if (q.scope == quota_scope::recipient_domain && (q.key == "*" || q.key == rdomain))
                key = rdomain;
            if (!key.empty())
                for (const auto& l : q.limits) groups[key].push_back({reserved_at(d), l.max});
        }
        const auto* zone = date::locate_zone(q.time_zone.empty() ? "UTC" : q.time_zone);
        for (auto& [key, cs] : groups)
            for (const auto& l : q.limits)
                check_limit("quota " + q.key + " on " + key, cs, l, zone, bad, windows_checked);
    }
    std::uint64_t handed = 0;
    for (const auto& [id, c] : checkers) handed += c->handed();
    MESSAGE(handed << " hand-offs checked against suppressions and pauses; " << windows_checked
                   << " cap windows checked over " << deliveries.size() << " deliveries; " << skewed
                   << " handed off at a later clock time than reserved");

    // --- a restart loads exactly the state the engine had ---------------------------
    auto again = std::make_unique<engine>(ioc.get_executor(), params);
    for (std::size_t i = 0; i < universe.size(); ++i) {
        CAPTURE(universe[i]);
        CHECK(again->is_suppressed(universe[i]) == live_suppressed[i]);
    }
    for (std::size_t i = 0; i < targets.size(); ++i) {
        CAPTURE(pause_key(targets[i]));
        CHECK(again->is_paused(targets[i]) == live_paused[i]);
    }
    for (std::size_t i = 0; i < specs.size(); ++i) {
        CAPTURE(specs[i].id);
        CHECK(again->status(specs[i].id).sent_today == live_counts[i].first);
        CHECK(again->status(specs[i].id).sent_this_hour == live_counts[i].second);
    }
    CHECK(again->mailboxes() == live_mailboxes);
    CHECK(again->verify_audit() == error_code{});

    INFO(bad.report());
    CHECK(bad.count == 0);
}

TEST_CASE("property: racing admin operations on the same targets leave memory equal to the store") {
    // No per-target serialisation here: threads suppress and unsuppress,
    // pause and resume the same few targets at once, and hard bounces
    // suppress recipients automatically meanwhile. Whatever order the engine
    // picks, its live state must be what a restart loads from the store.
    const std::uint64_t seed = pick_seed();
    const std::uint64_t ops = env_u64("MAILERS_PROPERTY_OPS", 200000) / 10;
    CAPTURE(seed);
    db_file db("admin-race");
    fixture f(db.path.string(), seed);
    auto fi = f.add_faulty_provider("pa");
    fi->fail_with_probability(0.5, make_error_code(transport_errc::recipient_rejected));
    auto m = f.mailbox("a", "a@brand.com");
    m.provider = "pa";
    f.eng->upsert_mailbox(f.admin, m);
    f.eng->upsert_mailbox(f.admin, f.mailbox("b", "b@other.com"));
    f.add_pool("p", {"a", "b"});
    const std::vector<std::string> addrs{"x@example.com", "y@example.com", "z@example.com"};
    const std::vector<pause_target> targets{{pause_scope::mailbox, "b"},
                                            {pause_scope::pool, "p"},
                                            {pause_scope::sender_domain, "other.com"}};

    auto work = boost::asio::make_work_guard(f.ioc);
    std::thread io([&] { f.ioc.run(); });
    std::atomic<std::uint64_t> sends_done{0};
    std::atomic<std::uint64_t> sends_issued{0};
    auto racer = [&](int t) {
        std::mt19937_64 rng(seed + static_cast<std::uint64_t>(t) * 977);
        for (std::uint64_t i = 0; i < ops / 4; ++i) {
            const auto& a = addrs[rng() % addrs.size()];
            const auto& target = targets[rng() % targets.size()];
            switch (rng() % 5) {
                case 0:
                    f.eng->suppress(f.admin, suppression_kind::address, a,
                                    suppression_reason::manual);
                    break;
                case 1:
                    f.eng->unsuppress(f.admin, suppression_kind::address, a);
                    break;
                case 2:
                    f.eng->pause(f.admin, target);
                    break;
                case 3:
                    try {
                        f.eng->resume(f.admin, target);
                    } catch (const exception& e) {
                        if (e.code() != errc::not_found) throw;
                    }
                    break;
                case 4:
                    ++sends_issued;
                    f.eng->async_send(fixture::direct("a", a),
                                      [&](error_code, send_result) { ++sends_done; });
                    break;
            }
        }
    };
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) threads.emplace_back(racer, t);
    for (auto& th : threads) th.join();
    // Each send holds work on the context until it completes, so run()
    // returns only once every send has.
    work.reset();
    io.join();
    CHECK(sends_done.load() == sends_issued.load());
    f.eng->flush();

    std::vector<bool> live_suppressed, live_paused;
    for (const auto& a : addrs) live_suppressed.push_back(f.eng->is_suppressed(a));
    for (const auto& t : targets) live_paused.push_back(f.eng->is_paused(t));
    CHECK(f.eng->verify_audit() == error_code{});
    f.eng.reset();
    f.open(seed);
    for (std::size_t i = 0; i < addrs.size(); ++i) {
        CAPTURE(addrs[i]);
        CHECK(f.eng->is_suppressed(addrs[i]) == live_suppressed[i]);
    }
    for (std::size_t i = 0; i < targets.size(); ++i) {
        CAPTURE(pause_key(targets[i]));
        CHECK(f.eng->is_paused(targets[i]) == live_paused[i]);
    }
    MESSAGE((ops / 4 * 4) << " racing operations, " << sends_issued.load() << " of them sends");
}

TEST_CASE("every send is counted once in stats, whatever refuses it") {
    // The accounting identity must hold for refusals outside the pipeline's
    // main path too: the authorizer, and an address that passes the syntax
    // check but has no normalised form (an A-label that is not punycode).
    boost::asio::io_context ioc;
    engine_params params;
    params.storage = open_sqlite_store({":memory:"});
    params.clock = std::make_shared<manual_clock>(test_epoch());
    params.authorize = [](const principal& who, const access_request& r) {
        return !(who.id == "intruder" && r.action == "send");
    };
    engine eng(ioc.get_executor(), params);
    const principal admin{"admin", "Set-up"};
    eng.add_provider(admin, "capture", std::make_shared<capture_transport>(ioc.get_executor()));
    mailbox_config m;
    m.id = "a";
    m.from = address{"a", "brand.com", {}};
    m.provider = "capture";
    eng.upsert_mailbox(admin, m);

    std::vector<send_request> reqs;
    reqs.push_back(fixture::direct("a", "ok@example.com"));
    reqs.push_back(fixture::direct("a", "x@xn--bcher-kva.example"));  // a valid A-label: sends
    reqs.push_back(fixture::direct("a", "x@xn--a.example"));          // not punycode
    reqs.push_back(fixture::direct("a", "x@xn--zzzzz-.example"));
    reqs.back().actor = principal{"intruder", "Not allowed"};  // bad input is refused first
    reqs.push_back(fixture::direct("a", "y@example.com"));
    reqs.back().actor = principal{"intruder", "Not allowed"};
    std::vector<error_code> ecs;
    for (auto& r : reqs) {
        eng.async_send(r, [&](error_code ec, send_result) { ecs.push_back(ec); });
        ioc.restart();
        while (ecs.size() < static_cast<std::size_t>(&r - reqs.data()) + 1) ioc.run_one();
    }
    CHECK_FALSE(ecs[0]);
    CHECK_FALSE(ecs[1]);
    CHECK(ecs[2] == errc::invalid_address);
    CHECK(ecs[3] == errc::invalid_address);
    CHECK(ecs[4] == errc::permission_denied);
    auto st = eng.stats();
    CHECK(st.accepted + st.failed + st.unknown + st.suppressed + st.no_capacity + st.paused +
              st.duplicates + st.rejected ==
          reqs.size());
}

namespace {

// A store that refuses every commit carrying an audit record for a resource
// whose id holds "refuse", as a full disk or a lost database would.
class refusing_store final : public forwarding_store {
public:
    using forwarding_store::forwarding_store;

    commit_result commit(std::string_view ws, std::span<const store_op> ops) override {
        for (const auto& op : ops)
            if (const auto* a = std::get_if<store_ops::append_audit>(&op);
                a && a->record.resource_id.find("refuse") != std::string::npos) {
                ++refused;
                throw exception(make_error_code(errc::store_error), "injected: disk full");
            }
        return inner_->commit(ws, ops);
    }

    std::atomic<int> refused{0};
};

}  // namespace

TEST_CASE("invariant 5 under store faults: a failed write leaves the audit log verifiable") {
    // The chain is linked when records are committed, not when they are
    // queued: a record whose write fails must leave no gap and no dangling
    // link, also when others were queued behind it in the same group commit.
    const std::uint64_t seed = pick_seed();
    CAPTURE(seed);
    db_file db("audit-faults");
    fixture f(db.path.string(), seed);
    f.eng.reset();
    auto faulty = std::make_shared<refusing_store>(f.store);
    f.store = faulty;
    f.open(seed);

    const auto before = f.eng->audit_log().size();  // the fixture's own changes
    const auto suppress = [&](const std::string& value) {
        f.eng->suppress(f.admin, suppression_kind::address, value, suppression_reason::manual);
    };
    suppress("first@example.com");
    CHECK_THROWS_AS(suppress("refuse-0@example.com"), exception);
    suppress("second@example.com");
    CHECK(f.eng->verify_audit() == error_code{});
    CHECK_FALSE(f.eng->is_suppressed("refuse-0@example.com"));

    // Four threads at once, so that refused records share group commits
    // with accepted ones.
    std::atomic<int> accepted{2}, failed{1};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            std::mt19937_64 rng(seed + static_cast<std::uint64_t>(t));
            for (int i = 0; i < 150; ++i) {
                const bool refuse = rng() % 4 == 0;
                const auto value = std::string(refuse ? "refuse-" : "ok-") + std::to_string(t) +
                                   "-" + std::to_string(i) + "@example.com";
                try {
                    suppress(value);
                    ++accepted;
                } catch (const exception& e) {
                    CHECK(e.code() == errc::store_error);
                    ++failed;
                }
            }
        });
    for (auto& th : threads) th.join();
    f.eng->flush();
    // A refused record fails its group commit and then its retry alone.
    CHECK(faulty->refused.load() >= failed.load());
    CHECK(failed.load() > 1);

    std::uint64_t bad_seq = 0;
    CHECK(f.eng->verify_audit(&bad_seq) == error_code{});
    CAPTURE(bad_seq);
    const auto log = f.eng->audit_log();
    REQUIRE(log.size() == before + static_cast<std::size_t>(accepted.load()));
    for (std::size_t i = 0; i < log.size(); ++i) {
        CHECK(log[i].seq == i + 1);
        CHECK(log[i].resource_id.find("refuse") == std::string::npos);
    }

    // A restart continues the chain from what was stored.
    f.eng.reset();
    f.open(seed);
    suppress("after-restart@example.com");
    CHECK(f.eng->verify_audit() == error_code{});
    const auto after = f.eng->audit_log(log.size() + 1);
    REQUIRE_FALSE(after.empty());
    CHECK(after.front().prev_hash == log.back().hash);
    CHECK(after.back().resource_id.find("after-restart") != std::string::npos);
}
