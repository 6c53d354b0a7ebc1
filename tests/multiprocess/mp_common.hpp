// What the multi-process test's driver and children share: the workspace
// they work on, the clock they all read, the cross-process locks that keep
// one target's changes in a known order, and the log every process appends
// to. One definition, so the checker's model is the children's workspace.
#pragma once

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mailers/clock.hpp>
#include <mailers/engine.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/pool.hpp>
#include <mailers/postgres_store.hpp>
#include <mailers/quota.hpp>
#include <mailers/sqlite_store.hpp>
#include <mailers/store.hpp>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace mp {

using namespace std::chrono_literals;

/// CLOCK_MONOTONIC in nanoseconds: one time line for every process of the
/// host, so the order of events logged by different processes is known.
inline std::int64_t mono_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// 2026-11-25 12:00:00 UTC, a Wednesday.
inline mailers::time_point epoch() {
    return mailers::time_point(std::chrono::seconds(1795608000));
}

/// A clock whose time is one 64-bit word in a file every process maps, so
/// any of them moves time for all (backwards too).
class shared_clock final : public mailers::clock {
public:
    /// Creates the file with `start` when `create`, else maps the existing one.
    shared_clock(const std::string& path, bool create, mailers::time_point start = epoch()) {
        int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_TRUNC : 0), 0644);
        if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
        if (create && ::ftruncate(fd, sizeof(std::int64_t)) != 0) {
            ::close(fd);
            throw std::runtime_error("ftruncate " + path + ": " + std::strerror(errno));
        }
        void* p = ::mmap(nullptr, sizeof(std::int64_t), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED) throw std::runtime_error("mmap " + path + ": " + std::strerror(errno));
        word_ = static_cast<std::atomic<std::int64_t>*>(p);
        static_assert(std::atomic<std::int64_t>::is_always_lock_free);
        if (create) word_->store(start.time_since_epoch().count(), std::memory_order_release);
    }
    ~shared_clock() override { ::munmap(word_, sizeof(std::int64_t)); }
    shared_clock(const shared_clock&) = delete;
    shared_clock& operator=(const shared_clock&) = delete;

    mailers::time_point now() const noexcept override {
        return mailers::time_point(mailers::duration(word_->load(std::memory_order_acquire)));
    }
    void advance(mailers::duration d) noexcept {
        word_->fetch_add(d.count(), std::memory_order_acq_rel);
    }

private:
    std::atomic<std::int64_t>* word_ = nullptr;
};

/// Appends whole lines with one write() each on an O_APPEND descriptor:
/// lines from several processes interleave but never mix, and a process
/// killed with SIGKILL leaves every line it wrote complete.
class shared_log {
public:
    explicit shared_log(const std::string& path) {
        fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd_ < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
    }
    ~shared_log() { ::close(fd_); }
    shared_log(const shared_log&) = delete;
    shared_log& operator=(const shared_log&) = delete;
    void line(std::string s) const {
        s += '\n';
        if (::write(fd_, s.data(), s.size()) != static_cast<ssize_t>(s.size())) std::abort();
    }

private:
    int fd_ = -1;
};

/// Fields joined by tabs.
template <typename... T>
std::string fields(const T&... v) {
    std::string out;
    auto add = [&](const auto& x) {
        if (!out.empty()) out += '\t';
        if constexpr (std::is_arithmetic_v<std::decay_t<decltype(x)>>)
            out += std::to_string(x);
        else
            out += x;
    };
    (add(v), ...);
    return out;
}

// --- the workspace ------------------------------------------------------------

struct mailbox_spec {
    std::string id, addr, provider;
    std::vector<mailers::rate_limit> limits;
    std::vector<mailers::rate_limit> alt_limits;  // non-empty: changed during the run
    std::string zone = "UTC";
    std::chrono::seconds min_gap{0}, jitter{0};
    mailers::warmup_ramp warmup;
    std::uint32_t weight = 1;
    std::int32_t priority = 0;

    std::string domain() const { return addr.substr(addr.find('@') + 1); }
    mailers::mailbox_config config(const std::vector<mailers::rate_limit>& l) const {
        mailers::mailbox_config m;
        m.id = id;
        auto at = addr.find('@');
        m.from = mailers::address{addr.substr(0, at), addr.substr(at + 1), "Rep " + id};
        m.provider = provider;
        m.limits = l;
        m.time_zone = zone;
        m.min_gap = min_gap;
        m.jitter = jitter;
        m.warmup = warmup;
        m.weight = weight;
        m.priority = priority;
        return m;
    }
};

/// Caps that change during the run keep their shape (same lengths and
/// kinds, in the same order) and change only their maxima, so every version
/// of a limit is comparable.
inline std::vector<mailbox_spec> mailbox_specs() {
    using mailers::rate_limit;
    using mailers::window_kind;
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
    v.push_back({"m3",
                 "a3@other.com",
                 "pb",
                 {rate_limit::per_minute(1), rate_limit::per_hour(6)},
                 {rate_limit::per_minute(1), rate_limit::per_hour(9)}});
    v.push_back({"m4", "a4@third.com", "pc", {}, {}, "UTC", 30s, 30s});
    v.push_back({"m5", "a5@third.com", "pc", {}, {}, "Europe/Berlin"});
    v.back().warmup = mailers::warmup_ramp{3, 2, 9, epoch()};
    v.push_back({"m6", "a6@bulk.com", "pc", {}, {}});
    v.push_back({"m7",
                 "a7@bulk.com",
                 "pa",
                 {rate_limit::per_hour(20, window_kind::calendar)},
                 {rate_limit::per_hour(8, window_kind::calendar)}});
    v[0].weight = 3;
    v[6].weight = 5;
    v[3].priority = -1;
    return v;
}

struct quota_spec {
    mailers::quota base;
    std::vector<mailers::rate_limit> alt_limits;  // non-empty: changed during the run
    mailers::quota with(const std::vector<mailers::rate_limit>& l) const {
        auto q = base;
        q.limits = l;
        return q;
    }
};

inline std::vector<quota_spec> quota_specs() {
    using mailers::quota;
    using mailers::quota_scope;
    using mailers::rate_limit;
    using mailers::window_kind;
    return {
        {quota{quota_scope::provider, "pc", {rate_limit::per_hour(40)}, {}},
         {rate_limit::per_hour(25)}},
        {quota{quota_scope::provider, "pb", {rate_limit::per_day(20, window_kind::calendar)}, {}},
         {}},
        {quota{quota_scope::sender_domain,
               "bulk.com",
               {rate_limit::per_day(60, window_kind::calendar)},
               "Asia/Tokyo"},
         {rate_limit::per_day(30, window_kind::calendar)}},
        {quota{quota_scope::sender_domain, "third.com", {rate_limit::per_hour(6)}, {}}, {}},
        {quota{quota_scope::recipient_domain, "*", {rate_limit::per_hour(20)}, {}},
         {rate_limit::per_hour(12)}},
        {quota{quota_scope::recipient_domain, "d2.org", {rate_limit::per_minute(2)}, {}}, {}},
    };
}

inline std::string scope_name(mailers::quota_scope s) {
    switch (s) {
        case mailers::quota_scope::provider:
            return "provider";
        case mailers::quota_scope::sender_domain:
            return "sender_domain";
        case mailers::quota_scope::recipient_domain:
            return "recipient_domain";
    }
    return "?";
}

/// The name a versioned cap object goes by in the log.
inline std::string object_name(const mailbox_spec& m) {
    return "mailbox:" + m.id;
}
inline std::string object_name(const quota_spec& q) {
    return "quota:" + scope_name(q.base.scope) + ":" + q.base.key;
}

inline std::string limits_text(const std::vector<mailers::rate_limit>& l) {
    std::string out;
    for (const auto& r : l) out += (out.empty() ? "" : ",") + std::to_string(r.max);
    return out.empty() ? "-" : out;
}

/// One pool per rotation policy, and one that fails over across providers.
inline std::vector<mailers::pool_config> pool_configs() {
    auto make = [](std::string id, std::vector<std::string> ids, mailers::rotation_kind kind,
                   std::uint32_t attempts, bool sticky) {
        mailers::pool_config p;
        p.id = std::move(id);
        p.mailboxes = std::move(ids);
        p.policy.kind = kind;
        p.policy.max_attempts = attempts;
        p.policy.sticky_sender = sticky;
        return p;
    };
    using mailers::rotation_kind;
    return {make("all", {"m0", "m1", "m2", "m3", "m4", "m5", "m6", "m7"},
                 rotation_kind::round_robin, 3, true),
            make("w", {"m0", "m1", "m6", "m7"}, rotation_kind::weighted, 3, false),
            make("pri", {"m3", "m6", "m2"}, rotation_kind::priority, 2, false),
            make("quiet", {"m4", "m5"}, rotation_kind::round_robin, 1, false)};
}

/// A pause rule low enough to fire often, so that several processes
/// measure the same crossing: one failure in 50 of a mailbox's sends of the
/// last week pauses it (actor "rule:<id>"), and fires again right after a
/// resume; not so low that most mailboxes stay paused.
inline mailers::pause_rule failure_rule() {
    mailers::pause_rule r;
    r.id = "mp-failures";
    r.scope = mailers::pause_scope::mailbox;
    r.target = "";
    r.metric = mailers::rule_metric::failures;
    r.window_days = 7;
    r.max_rate = 0.02;
    r.min_volume = 20;
    r.grace_days = 0;
    return r;
}

inline const std::vector<std::string>& recipient_domains() {
    static const std::vector<std::string> v = {
        "example.com", "d1.org", "d2.org", "d3.org", "sub.d3.org", "xn--bcher-kva.example"};
    return v;
}

inline const std::vector<std::string>& suppressible_domains() {
    static const std::vector<std::string> v = {"d1.org", "d3.org", "example.com", "sub.d3.org"};
    return v;
}

inline std::vector<std::string> recipient_universe() {
    std::vector<std::string> out;
    for (const auto& d : recipient_domains())
        for (int i = 0; i < 6; ++i) out.push_back("u" + std::to_string(i) + "@" + d);
    return out;
}

/// The addresses the chaos may erase (engine::erase_person): one per
/// recipient domain. An erasure empties the idempotency key of every ledger
/// row to the person, so sends to these carry keys of their own, never one
/// of the shared key space (whose reuse after an erasure would be a new send).
inline bool erasable(const std::string& lowercase_address) {
    return lowercase_address.rfind("u5@", 0) == 0;
}

inline std::string pause_key(const mailers::pause_target& t) {
    static const char* names[] = {"workspace", "pool", "mailbox", "provider", "sender_domain"};
    return std::string(names[static_cast<int>(t.scope)]) + ":" + t.id;
}

inline std::vector<mailers::pause_target> pause_targets() {
    using mailers::pause_scope;
    std::vector<mailers::pause_target> out{{pause_scope::workspace, ""}};
    for (const auto& p : pool_configs()) out.push_back({pause_scope::pool, p.id});
    for (const auto& m : mailbox_specs()) out.push_back({pause_scope::mailbox, m.id});
    for (auto p : {"pa", "pb", "pc"}) out.push_back({pause_scope::provider, p});
    for (auto d : {"brand.com", "other.com", "third.com", "bulk.com"})
        out.push_back({pause_scope::sender_domain, d});
    return out;
}

/// Everything a change is made to, each named as the log names it:
/// "addr:<address>", "dom:<domain>", "pause:<scope>:<id>", and the cap
/// objects that change ("mailbox:<id>", "quota:<scope>:<key>").
inline std::vector<std::string> lock_targets() {
    std::vector<std::string> out;
    for (const auto& a : recipient_universe()) out.push_back("addr:" + a);
    for (const auto& d : suppressible_domains()) out.push_back("dom:" + d);
    for (const auto& t : pause_targets()) out.push_back("pause:" + pause_key(t));
    for (const auto& m : mailbox_specs())
        if (!m.alt_limits.empty()) out.push_back(object_name(m));
    for (const auto& q : quota_specs())
        if (!q.alt_limits.empty()) out.push_back(object_name(q));
    return out;
}

/// One lock per target, shared by every process: a byte-range lock on an
/// open file description (F_OFD_SETLKW), which the kernel releases when a
/// process holding it dies. Holding it across "log begin, call, log end"
/// gives each target's changes one order that the log shows, so the checker
/// knows what was in force when.
class target_locks {
public:
    explicit target_locks(const std::string& path) {
        fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd_ < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
    }
    ~target_locks() { ::close(fd_); }
    target_locks(const target_locks&) = delete;
    target_locks& operator=(const target_locks&) = delete;

    class guard {
    public:
        guard(int fd, off_t at) : fd_(fd), at_(at) { set(F_WRLCK); }
        ~guard() { set(F_UNLCK); }
        guard(const guard&) = delete;
        guard& operator=(const guard&) = delete;

    private:
        void set(short type) {
            struct flock fl {};
            fl.l_type = type;
            fl.l_whence = SEEK_SET;
            fl.l_start = at_;
            fl.l_len = 1;
            while (::fcntl(fd_, F_OFD_SETLKW, &fl) != 0)
                if (errno != EINTR) std::abort();
        }
        int fd_;
        off_t at_;
    };
    guard lock(std::size_t index) const { return guard(fd_, static_cast<off_t>(index)); }

private:
    int fd_ = -1;
};

/// The stores under test. `spec` is the SQLite file, or the PostgreSQL
/// conninfo with `schema` naming this run's fresh schema.
inline std::shared_ptr<mailers::store> open_store(const std::string& kind, const std::string& spec,
                                                  const std::string& schema) {
    if (kind == "sqlite") {
        mailers::sqlite_store_params p;
        p.path = spec;
        p.mode = mailers::open_mode::open_or_create;
        p.busy_timeout = 30s;
        return mailers::open_sqlite_store(p);
    }
    mailers::postgres_store_params p;
    p.conninfo = spec;
    p.schema = schema;
    p.mode = mailers::open_mode::open_or_create;
    p.pool_size = 3;
    p.reconnect_timeout = 30s;
    p.connect_timeout = 5s;
    return mailers::open_postgres_store(p);
}

/// The detail the engine gives sends of a member found dead.
inline constexpr std::string_view recovered_detail = "engine stopped while the send was in flight";
/// The detail the store gives sends of a member that detached with them reserved.
inline constexpr std::string_view detached_detail = "its member detached while it was reserved";
/// The details of sends refused at hand-off, which end `failed` without
/// being counted as failures (docs/rules.md).
inline constexpr std::string_view refused_details[] = {
    "the recipient was suppressed before hand-off", "paused before hand-off",
    "engine cancelled before hand-off"};

}  // namespace mp
