// The conformance kit every mailers::store backend must pass. A backend's
// test calls `run_store_conformance` from a doctest TEST_CASE with a factory
// that opens its database:
//
//     TEST_CASE("my store conforms") {
//         mailers::conformance::run_store_conformance(
//             [&] { return open_my_store(url); }, "conformance");
//     }
//
// Each check runs in its own doctest SUBCASE and works in its own
// workspaces, named from `workspace_prefix`, so one database serves the
// whole kit and other tests may use the same database (or server) at the
// same time; running the kit twice against one database only needs a fresh
// prefix. The checks compare results and stored state with the semantics in
// store.hpp, never timings; the membership checks sleep a few hundred
// milliseconds past short leases, and the race checks open several handles
// and use them from several threads at once.
//
// Set MAILERS_TEST_SEED to replay the randomised check with a given seed.
//
// The kit is a header only, built with doctest (which it includes); link the
// test with the mailers library and doctest's main.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <mailers/audit.hpp>
#include <mailers/clock.hpp>
#include <mailers/error.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <variant>
#include <vector>

namespace doctest {
template <>
struct StringMaker<mailers::ledger_row> {
    static String convert(const mailers::ledger_row& r) {
        std::ostringstream os;
        os << "send{id=" << r.id << " key='" << r.idempotency_key << "' mailbox=" << r.mailbox
           << " provider=" << r.provider << " pool=" << r.pool << " to=" << r.recipient
           << " mid=" << r.message_id << " state=" << mailers::to_string(r.state)
           << " attempt=" << r.attempt << " reserved=" << r.reserved_at.time_since_epoch().count()
           << " updated=" << r.updated_at.time_since_epoch().count()
           << " pmid=" << r.provider_message_id << " detail='" << r.detail << "' owner=" << r.owner
           << " suppression_seq=" << r.suppression_seq << "}";
        return os.str().c_str();
    }
};
template <>
struct StringMaker<mailers::suppression_entry> {
    static String convert(const mailers::suppression_entry& e) {
        std::ostringstream os;
        os << "suppression{"
           << (e.kind == mailers::suppression_kind::domain ? "domain " : "address ") << e.value
           << " reason=" << mailers::to_string(e.reason) << " source=" << e.source
           << " at=" << e.created_at.time_since_epoch().count() << "}";
        return os.str().c_str();
    }
};
template <>
struct StringMaker<mailers::stored_object> {
    static String convert(const mailers::stored_object& o) {
        return ("object{" + o.kind + "/" + o.id + " " + o.json + "}").c_str();
    }
};
template <>
struct StringMaker<mailers::audit_record> {
    static String convert(const mailers::audit_record& r) {
        std::ostringstream os;
        os << "audit{seq=" << r.seq << " at=" << r.at.time_since_epoch().count()
           << " actor=" << r.actor << " action=" << r.action << " " << r.resource_type << "/"
           << r.resource_id << " prev=" << r.prev_hash.substr(0, 12)
           << " hash=" << r.hash.substr(0, 12) << "}";
        return os.str().c_str();
    }
};
template <class T>
struct mailers_optional_maker {
    static String convert(const std::optional<T>& v) {
        return v ? StringMaker<T>::convert(*v) : String("nullopt");
    }
};
template <>
struct StringMaker<std::optional<mailers::ledger_row>>
    : mailers_optional_maker<mailers::ledger_row> {};
template <>
struct StringMaker<std::optional<mailers::suppression_entry>>
    : mailers_optional_maker<mailers::suppression_entry> {};
template <>
struct StringMaker<mailers::queued_send> {
    static String convert(const mailers::queued_send& q) {
        std::ostringstream os;
        os << "queued{id=" << q.id << " key='" << q.idempotency_key << "' pool=" << q.pool
           << " mailbox=" << q.mailbox << " domain=" << q.recipient_domain
           << " request=" << q.request.size() << "B origin=" << q.origin
           << " enqueued=" << q.enqueued_at.time_since_epoch().count()
           << " not_before=" << q.not_before.time_since_epoch().count()
           << " due=" << q.due_at.time_since_epoch().count()
           << " state=" << mailers::to_string(q.state) << " reason='" << q.wait_reason
           << "' checks=" << q.checks << " by=" << q.claimed_by << " send=" << q.send_id
           << " detail='" << q.detail << "' updated=" << q.updated_at.time_since_epoch().count()
           << "}";
        return os.str().c_str();
    }
};
template <>
struct StringMaker<std::optional<mailers::queued_send>>
    : mailers_optional_maker<mailers::queued_send> {};
template <>
struct StringMaker<mailers::queue_counts> {
    static String convert(const mailers::queue_counts& c) {
        std::ostringstream os;
        os << "counts{waiting=" << c.waiting << " claimed=" << c.claimed << " done=" << c.done
           << " cancelled=" << c.cancelled << " reasons=[";
        for (const auto& [r, n] : c.waiting_by_reason) os << "'" << r << "':" << n << " ";
        os << "] next=" << (c.next_due ? c.next_due->time_since_epoch().count() : -1) << "}";
        return os.str().c_str();
    }
};
template <>
struct StringMaker<mailers::time_point> {
    static String convert(const mailers::time_point& t) {
        return ("t" + std::to_string(t.time_since_epoch().count()) + "us").c_str();
    }
};
template <>
struct StringMaker<mailers::member_record> {
    static String convert(const mailers::member_record& m) {
        std::ostringstream os;
        os << "member{id=" << m.id << " host=" << m.info.host << " pid=" << m.info.pid
           << " name=" << m.info.name << " acked=" << m.acked_seq << " live=" << m.live << "}";
        return os.str().c_str();
    }
};
}  // namespace doctest

namespace mailers {
// doctest prints enums as numbers unless an overload is found by ADL.
inline doctest::String toString(send_state s) {
    return std::string(to_string(s)).c_str();
}
inline doctest::String toString(reserve_status s) {
    return std::string(to_string(s)).c_str();
}
inline doctest::String toString(queue_state s) {
    return std::string(to_string(s)).c_str();
}
inline doctest::String toString(enqueue_status s) {
    return std::string(to_string(s)).c_str();
}
inline doctest::String toString(enrollment_state s) {
    return std::string(to_string(s)).c_str();
}
inline doctest::String toString(enrollment_stop s) {
    return std::string(to_string(s)).c_str();
}
inline doctest::String toString(enroll_status s) {
    return std::string(to_string(s)).c_str();
}
}  // namespace mailers

namespace mailers::conformance {

/// Opens a store over one database; every call opens that same database
/// again. The reopen checks drop every handle and call it again, and the
/// race checks hold several handles at once.
using store_factory = std::function<std::shared_ptr<store>()>;

// ---------------------------------------------------------------------------
// Building blocks, usable by a backend's own tests too.

inline time_point at_seconds(std::int64_t s) {
    return time_point{std::chrono::seconds{1'700'000'000 + s}};
}

/// A new send (id 0) whose fields derive from `n`, reserved at `reserved`.
inline ledger_row sample_send(std::uint64_t n, std::string key = {},
                              time_point reserved = at_seconds(0), std::uint64_t owner = 0) {
    ledger_row r;
    r.idempotency_key = std::move(key);
    r.mailbox = "rep" + std::to_string(n % 7) + "@brand.example";
    r.provider = "ses-eu";
    r.pool = "outbound";
    r.recipient = "user" + std::to_string(n) + "@example.com";
    r.message_id = "m" + std::to_string(n) + "@mailers.brand.example";
    r.state = send_state::reserved;
    r.attempt = 1;
    r.reserved_at = reserved;
    r.updated_at = reserved;
    r.owner = owner;
    return r;
}

inline suppression_entry sample_suppression(
    suppression_kind kind, std::string value,
    suppression_reason reason = suppression_reason::manual) {
    suppression_entry e;
    e.kind = kind;
    e.value = std::move(value);
    e.reason = reason;
    e.source = "api";
    e.created_at = at_seconds(5);
    return e;
}

/// `n` audit records to append. Their seq, prev_hash and hash hold values
/// the store must ignore.
inline std::vector<audit_record> sample_audit(std::size_t n, std::size_t first = 1) {
    std::vector<audit_record> out;
    for (std::size_t i = first; i < first + n; ++i) {
        audit_record r;
        r.seq = 900 + i;
        r.at = at_seconds(static_cast<std::int64_t>(i));
        r.actor = "alice";
        r.action = "mailbox.upsert";
        r.resource_type = "mailbox";
        r.resource_id = "rep" + std::to_string(i);
        r.before = i % 2 ? "" : R"({"daily_cap":30})";
        r.after = R"({"daily_cap":)" + std::to_string(i) + "}";
        r.prev_hash = "not-the-previous-hash";
        r.hash = "not-a-hash";
        out.push_back(std::move(r));
    }
    return out;
}

/// What the store must make of `appended` after `previous`, hashed with
/// `key` ("" for unkeyed).
inline audit_record chained(audit_record appended, const audit_record* previous,
                            std::string_view key = {}) {
    appended.seq = previous ? previous->seq + 1 : 1;
    appended.prev_hash = previous ? previous->hash : std::string{};
    appended.hash = audit_hash(appended, key);
    return appended;
}

inline cap_window window(time_point floor, std::uint64_t max) {
    return cap_window{floor, max};
}

/// A claim with one window reaching back to the beginning of the kit's time.
inline cap_claim cap(std::string key, std::uint64_t max, time_point floor = at_seconds(-100'000)) {
    cap_claim c;
    c.key = std::move(key);
    c.windows = {window(floor, max)};
    return c;
}

inline cap_claim gap_claim(std::string key, duration gap) {
    cap_claim c;
    c.key = std::move(key);
    c.gap = gap;
    return c;
}

inline cap_claim object_claim(std::string key, std::string kind, std::string id,
                              std::uint64_t max = 1000) {
    cap_claim c = cap(std::move(key), max);
    c.object_kind = std::move(kind);
    c.object_id = std::move(id);
    return c;
}

inline store_op reserve(ledger_row row, std::vector<cap_claim> claims = {},
                        std::uint64_t config_seq = 0) {
    return store_ops::reserve_send{std::move(row), std::move(claims), config_seq};
}

inline commit_result commit(store& st, std::string_view ws, std::vector<store_op> ops) {
    commit_result res = st.commit(ws, ops);
    REQUIRE(res.ops.size() == ops.size());
    return res;
}

/// Commits `ops`, requires the commit to throw mailers::exception with
/// errc::store_error, and returns the message.
inline std::string commit_must_fail(store& st, std::string_view ws, std::vector<store_op> ops) {
    try {
        st.commit(ws, ops);
    } catch (const mailers::exception& e) {
        CHECK(e.code() == make_error_code(errc::store_error));
        return e.diag().message.empty() ? std::string(e.what()) : e.diag().message;
    }
    FAIL("the commit succeeded but had to fail");
    return {};
}

inline reserve_outcome reserve_one(store& st, std::string_view ws, ledger_row row,
                                   std::vector<cap_claim> claims = {},
                                   std::uint64_t config_seq = 0) {
    return commit(st, ws, {reserve(std::move(row), std::move(claims), config_seq)})
        .ops[0]
        .reservation;
}

/// Reserves a new send that must fit; returns its id.
inline std::uint64_t reserve_new(store& st, std::string_view ws, ledger_row row,
                                 std::vector<cap_claim> claims = {}, std::uint64_t config_seq = 0) {
    const auto out = reserve_one(st, ws, std::move(row), std::move(claims), config_seq);
    REQUIRE(out.status == reserve_status::reserved);
    REQUIRE(out.send_id != 0);
    return out.send_id;
}

inline bool update_one(store& st, std::string_view ws, ledger_row row) {
    return commit(st, ws, {store_ops::update_send{std::move(row)}}).ops[0].applied;
}

inline std::vector<suppression_entry> all_suppressions(store& st, std::string_view ws) {
    std::vector<suppression_entry> out;
    st.for_each_suppression(ws, [&](const suppression_entry& e) { out.push_back(e); });
    return out;
}

inline std::vector<audit_record> all_audit(store& st, std::string_view ws, std::uint64_t from = 1) {
    std::vector<audit_record> out;
    st.for_each_audit(ws, from, [&](const audit_record& r) { out.push_back(r); });
    return out;
}

inline std::vector<ledger_row> sends_between(store& st, std::string_view ws, time_point from,
                                             time_point to) {
    std::vector<ledger_row> out;
    st.for_each_send(ws, from, to, [&](const ledger_row& r) { out.push_back(r); });
    return out;
}

inline ledger_row stored_send(store& st, std::string_view ws, std::uint64_t id) {
    auto r = st.find_send(ws, id);
    REQUIRE_MESSAGE(r.has_value(), "send " << id << " is missing");
    return *r;
}

/// The snapshot and change set with every list in a canonical order, so
/// backends are free to return them in any order.
inline store_snapshot canonical(store_snapshot s) {
    std::sort(s.objects.begin(), s.objects.end(), [](const auto& a, const auto& b) {
        return std::tie(a.kind, a.id) < std::tie(b.kind, b.id);
    });
    std::sort(s.suppressions.begin(), s.suppressions.end(), [](const auto& a, const auto& b) {
        return std::tie(a.kind, a.value) < std::tie(b.kind, b.value);
    });
    std::sort(s.recent_sends.begin(), s.recent_sends.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    return s;
}

inline change_set canonical(change_set c) {
    std::sort(c.objects.begin(), c.objects.end(), [](const auto& a, const auto& b) {
        return std::tie(a.kind, a.id) < std::tie(b.kind, b.id);
    });
    std::sort(c.deleted_objects.begin(), c.deleted_objects.end());
    std::sort(c.suppressions.begin(), c.suppressions.end(), [](const auto& a, const auto& b) {
        return std::tie(a.kind, a.value) < std::tie(b.kind, b.value);
    });
    std::sort(c.deleted_suppressions.begin(), c.deleted_suppressions.end());
    return c;
}

template <class T>
void check_same_list(const std::vector<T>& actual, const std::vector<T>& expected,
                     const char* what) {
    INFO(what);
    REQUIRE(actual.size() == expected.size());
    for (std::size_t i = 0; i < actual.size(); ++i) {
        INFO("index " << i);
        REQUIRE(actual[i] == expected[i]);
    }
}

inline void check_same_snapshot(const store_snapshot& actual_raw,
                                const store_snapshot& expected_raw) {
    const store_snapshot actual = canonical(actual_raw);
    const store_snapshot expected = canonical(expected_raw);
    check_same_list(actual.objects, expected.objects, "objects");
    check_same_list(actual.suppressions, expected.suppressions, "suppressions");
    check_same_list(actual.recent_sends, expected.recent_sends, "recent_sends");
    CHECK(actual.change_seq == expected.change_seq);
}

/// Compares a change set with the expected one. Only a non-empty set names
/// a seq that must match.
inline void check_same_changes(const change_set& actual_raw, const change_set& expected_raw) {
    const change_set actual = canonical(actual_raw);
    const change_set expected = canonical(expected_raw);
    check_same_list(actual.objects, expected.objects, "changed objects");
    check_same_list(actual.deleted_objects, expected.deleted_objects, "deleted objects");
    check_same_list(actual.suppressions, expected.suppressions, "changed suppressions");
    check_same_list(actual.deleted_suppressions, expected.deleted_suppressions,
                    "deleted suppressions");
    if (!expected.empty()) CHECK(actual.seq == expected.seq);
}

/// Requires changes_since(seq) to be empty: `seq` is where a reader resumes.
inline void check_caught_up(store& st, std::string_view ws, std::uint64_t seq) {
    const change_set rest = st.changes_since(ws, seq);
    CHECK_MESSAGE(rest.empty(), "changes_since(" << seq << ") is not empty");
}

inline member_info sample_member(std::string name) {
    return member_info{"host-a.example", 4242, std::move(name)};
}

inline std::optional<member_record> find_member(store& st, std::string_view ws, std::uint64_t id) {
    for (auto& m : st.members(ws))
        if (m.id == id) return m;
    return std::nullopt;
}

/// Runs fn(0) .. fn(n - 1) on n threads released together; rethrows the
/// first exception a thread threw. Workers must not use doctest assertions.
inline void run_threads(std::size_t n, const std::function<void(std::size_t)>& fn) {
    std::mutex mu;
    std::condition_variable cv;
    bool go = false;
    std::exception_ptr failure;
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            {
                std::unique_lock lock(mu);
                cv.wait(lock, [&] { return go; });
            }
            try {
                fn(i);
            } catch (...) {
                std::lock_guard lock(mu);
                if (!failure) failure = std::current_exception();
            }
        });
    }
    {
        std::lock_guard lock(mu);
        go = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
    if (failure) std::rethrow_exception(failure);
}

// Leases for checks that must not see a member expire, and for checks that
// wait for one to: a run under load never outlasts the first, and the
// sleep after the second leaves it far behind.
inline constexpr std::chrono::milliseconds long_lease{10 * 60 * 1000};
inline constexpr std::chrono::milliseconds short_lease{100};
inline void sleep_past_short_lease() {
    std::this_thread::sleep_for(std::chrono::milliseconds{400});
}

// ---------------------------------------------------------------------------
// Checks. Each takes a workspace name (or prefix) of its own.

inline void check_objects(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(st->load(ws, at_seconds(0)).objects.empty());

    commit(*st, ws,
           {store_ops::put_object{{"mailbox", "rep1", R"({"cap":30})"}},
            store_ops::put_object{{"pool", "rep1", R"({"members":["rep1"]})"}},
            store_ops::put_object{{"mailbox", "rep2", R"({"cap":50,"name":"Zoë"})"}}});
    check_same_list(canonical(st->load(ws, at_seconds(0))).objects,
                    {{"mailbox", "rep1", R"({"cap":30})"},
                     {"mailbox", "rep2", R"({"cap":50,"name":"Zoë"})"},
                     {"pool", "rep1", R"({"members":["rep1"]})"}},
                    "after insert (same id under two kinds)");

    // put replaces; deleting a missing object is not an error.
    commit(*st, ws,
           {store_ops::put_object{{"mailbox", "rep1", R"({"cap":40})"}},
            store_ops::delete_object{"pool", "rep1"}, store_ops::delete_object{"pool", "absent"}});
    check_same_list(
        canonical(st->load(ws, at_seconds(0))).objects,
        {{"mailbox", "rep1", R"({"cap":40})"}, {"mailbox", "rep2", R"({"cap":50,"name":"Zoë"})"}},
        "after replace and delete");

    // Ops apply in order within a batch.
    commit(
        *st, ws,
        {store_ops::put_object{{"quota", "q", "1"}}, store_ops::delete_object{"quota", "q"},
         store_ops::put_object{{"quota", "q", "2"}}, store_ops::put_object{{"quota", "q", "3"}}});
    const auto objects = canonical(st->load(ws, at_seconds(0))).objects;
    REQUIRE(objects.size() == 3);
    CHECK(objects[2] == stored_object{"quota", "q", "3"});
}

inline void check_suppressions(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto a = sample_suppression(suppression_kind::address, "bob@example.com",
                                      suppression_reason::hard_bounce);
    auto d = sample_suppression(suppression_kind::domain, "competitor.example",
                                suppression_reason::legal);
    d.source = "csv-import";
    d.created_at = at_seconds(-1'800'000'000);  // before 1970: signed times survive
    const auto u = sample_suppression(suppression_kind::address, "zoë@bücher.example",
                                      suppression_reason::unsubscribe);
    // The same value as an address and as a domain entry are two entries.
    const auto same_value = sample_suppression(suppression_kind::domain, "bob@example.com");

    CHECK_FALSE(st->find_suppression(ws, suppression_kind::address, "bob@example.com"));
    commit(*st, ws,
           {store_ops::put_suppression{u}, store_ops::put_suppression{d},
            store_ops::put_suppression{a}, store_ops::put_suppression{same_value}});

    CHECK(st->find_suppression(ws, suppression_kind::address, "bob@example.com") == a);
    CHECK(st->find_suppression(ws, suppression_kind::domain, "competitor.example") == d);
    CHECK(st->find_suppression(ws, suppression_kind::address, "zoë@bücher.example") == u);
    CHECK(st->find_suppression(ws, suppression_kind::domain, "bob@example.com") == same_value);
    CHECK_FALSE(st->find_suppression(ws, suppression_kind::address, "competitor.example"));
    CHECK_FALSE(st->find_suppression(ws, suppression_kind::address, "BOB@example.com"));

    // for_each is in (kind, value) order: addresses first, byte order within.
    check_same_list(all_suppressions(*st, ws), {a, u, same_value, d}, "for_each order");
    check_same_list(canonical(st->load(ws, at_seconds(0))).suppressions, {a, u, same_value, d},
                    "load");

    // put replaces reason, source and time; delete removes only that kind.
    auto a2 = a;
    a2.reason = suppression_reason::complaint;
    a2.source = "ses-webhook";
    a2.created_at = at_seconds(99);
    commit(*st, ws,
           {store_ops::put_suppression{a2},
            store_ops::delete_suppression{suppression_kind::domain, "bob@example.com"},
            store_ops::delete_suppression{suppression_kind::address, "absent@example.com"}});
    CHECK(st->find_suppression(ws, suppression_kind::address, "bob@example.com") == a2);
    CHECK_FALSE(st->find_suppression(ws, suppression_kind::domain, "bob@example.com"));
    check_same_list(all_suppressions(*st, ws), {a2, u, d}, "after replace and delete");

    // A long batch (an import) with several ops on the same keys: the last op
    // on each key wins, whatever order a backend applies the others in.
    {
        std::vector<store_op> bulk;
        std::map<std::string, std::optional<suppression_entry>> last;
        for (int i = 0; i < 400; ++i) {
            const std::string value = "bulk" + std::to_string((i * 37) % 150) + "@example.com";
            if (i % 7 == 3) {
                bulk.push_back(store_ops::delete_suppression{suppression_kind::address, value});
                last[value] = std::nullopt;
            } else {
                auto e = sample_suppression(suppression_kind::address, value);
                e.created_at = at_seconds(i);
                bulk.push_back(store_ops::put_suppression{e});
                last[value] = e;
            }
        }
        commit(*st, ws, bulk);
        for (const auto& [value, e] : last) {
            INFO(value);
            CHECK(st->find_suppression(ws, suppression_kind::address, value) == e);
        }
    }

    // Every reason round-trips.
    std::vector<store_op> ops;
    std::vector<suppression_entry> expected;
    const suppression_reason reasons[] = {
        suppression_reason::unsubscribe, suppression_reason::hard_bounce,
        suppression_reason::complaint, suppression_reason::manual, suppression_reason::legal};
    for (const auto r : reasons) {
        auto e = sample_suppression(suppression_kind::domain,
                                    "r" + std::string(to_string(r)) + ".example", r);
        ops.push_back(store_ops::put_suppression{e});
        expected.push_back(e);
    }
    commit(*st, ws, ops);
    for (const auto& e : expected) CHECK(st->find_suppression(ws, e.kind, e.value) == e);
}

/// last_change_seq, find_object and next_suppression agree with what
/// changes_since, load and for_each_suppression return, for a workspace
/// never written, after puts and after deletes.
inline void check_point_reads(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(st->last_change_seq(ws) == 0);
    CHECK_FALSE(st->find_object(ws, "mailbox", "rep1"));
    CHECK_FALSE(st->next_suppression(ws, suppression_kind::address, ""));

    const auto a = sample_suppression(suppression_kind::address, "ann@example.com");
    const auto b = sample_suppression(suppression_kind::address, "bob@example.com");
    const auto z = sample_suppression(suppression_kind::address, "zoë@bücher.example");
    const auto d = sample_suppression(suppression_kind::domain, "blocked.example");
    commit(*st, ws,
           {store_ops::put_object{{"mailbox", "rep1", R"({"cap":30})"}},
            store_ops::put_object{{"pool", "rep1", R"({"members":["rep1"]})"}},
            store_ops::put_suppression{z}, store_ops::put_suppression{b},
            store_ops::put_suppression{a}, store_ops::put_suppression{d}});
    CHECK(st->last_change_seq(ws) == st->changes_since(ws, 0).seq);
    CHECK(st->last_change_seq(ws) > 0);
    CHECK(st->find_object(ws, "mailbox", "rep1") ==
          stored_object{"mailbox", "rep1", R"({"cap":30})"});
    CHECK(st->find_object(ws, "pool", "rep1") ==
          stored_object{"pool", "rep1", R"({"members":["rep1"]})"});
    CHECK_FALSE(st->find_object(ws, "mailbox", "rep2"));
    CHECK_FALSE(st->find_object(ws, "quota", "rep1"));

    // At or after `from`, of the kind asked for only, in byte order.
    CHECK(st->next_suppression(ws, suppression_kind::address, "") == a);
    CHECK(st->next_suppression(ws, suppression_kind::address, "ann@example.com") == a);
    CHECK(st->next_suppression(ws, suppression_kind::address, "ann@example.con") == b);
    CHECK(st->next_suppression(ws, suppression_kind::address, "c") == z);
    CHECK(st->next_suppression(ws, suppression_kind::address, "zz") == std::nullopt);
    CHECK(st->next_suppression(ws, suppression_kind::domain, "") == d);
    CHECK(st->next_suppression(ws, suppression_kind::domain, "blocked.examplf") == std::nullopt);
    // Byte order: "Z" (0x5a) sorts before "a" (0x61), whatever the locale.
    CHECK(st->next_suppression(ws, suppression_kind::address, "Z") == a);

    // Deleted objects and entries are gone from the reads; a workspace
    // beside this one is not read.
    const auto before = st->last_change_seq(ws);
    commit(*st, ws,
           {store_ops::delete_object{"mailbox", "rep1"},
            store_ops::delete_suppression{suppression_kind::address, "ann@example.com"}});
    CHECK(st->last_change_seq(ws) > before);
    CHECK(st->last_change_seq(ws) == st->changes_since(ws, 0).seq);
    CHECK_FALSE(st->find_object(ws, "mailbox", "rep1"));
    CHECK(st->next_suppression(ws, suppression_kind::address, "") == b);
    CHECK(st->last_change_seq(ws + "-other") == 0);
    CHECK_FALSE(st->find_object(ws + "-other", "pool", "rep1"));
    CHECK_FALSE(st->next_suppression(ws + "-other", suppression_kind::address, ""));
}

/// A bulk import over `entries`, handed to the store in chunks of `chunk`,
/// audited with `record`. `fail_after` > 0 throws import_stop once that many
/// chunks have been handed over.
struct import_stop {};

inline suppression_import sample_import(const std::vector<suppression_entry>& entries,
                                        audit_record record, std::size_t chunk = 333,
                                        std::size_t fail_after = 0) {
    suppression_import job;
    job.entries = [&entries, chunk, fail_after](const suppression_chunk_fn& put) {
        std::size_t chunks = 0;
        // A reused buffer, as an importer reading a file would have.
        std::vector<suppression_entry> buf;
        for (std::size_t i = 0; i < entries.size(); i += chunk) {
            if (fail_after > 0 && chunks == fail_after) throw import_stop{};
            buf.assign(
                entries.begin() + static_cast<std::ptrdiff_t>(i),
                entries.begin() + static_cast<std::ptrdiff_t>(std::min(entries.size(), i + chunk)));
            put(buf);
            ++chunks;
        }
        if (fail_after > 0) throw import_stop{};
    };
    job.audit = [record = std::move(record)](std::uint64_t n) {
        audit_record r = record;
        r.after = R"({"count":)" + std::to_string(n) + "}";
        return store_ops::append_audit{r};
    };
    return job;
}

inline std::vector<suppression_entry> import_entries(std::size_t n, const std::string& tag) {
    std::vector<suppression_entry> out;
    for (std::size_t i = 0; i < n; ++i) {
        auto e = sample_suppression(
            i % 50 == 7 ? suppression_kind::domain : suppression_kind::address,
            i % 50 == 7 ? tag + std::to_string(i) + ".example"
                        : tag + std::to_string(i) + "@example.com",
            i % 3 ? suppression_reason::unsubscribe : suppression_reason::hard_bounce);
        e.source = "import " + tag;
        e.created_at = at_seconds(static_cast<std::int64_t>(i));
        out.push_back(std::move(e));
    }
    return out;
}

/// What the store holds: the last entry given for each key.
inline std::vector<suppression_entry> last_per_key(const std::vector<suppression_entry>& in) {
    std::map<std::pair<suppression_kind, std::string>, suppression_entry> m;
    for (const auto& e : in) m.insert_or_assign({e.kind, e.value}, e);
    std::vector<suppression_entry> out;
    for (auto& [k, e] : m) out.push_back(e);
    return out;
}

inline void check_import(const store_factory& open, const std::string& ws) {
    auto st = open();
    // Before: one entry the import replaces, one it leaves, and a tombstone
    // it overwrites.
    const auto kept = sample_suppression(suppression_kind::address, "kept@example.com");
    auto replaced = sample_suppression(suppression_kind::address, "a1@example.com");
    replaced.reason = suppression_reason::legal;
    commit(*st, ws,
           {store_ops::put_suppression{kept}, store_ops::put_suppression{replaced},
            store_ops::put_suppression{
                sample_suppression(suppression_kind::address, "a2@example.com")},
            store_ops::put_object{{"pool", "p", "{}"}}});
    commit(*st, ws, {store_ops::delete_suppression{suppression_kind::address, "a2@example.com"}});
    const std::uint64_t before_seq = st->changes_since(ws, 0).seq;
    const auto audit_before = all_audit(*st, ws);

    auto entries = import_entries(5000, "a");
    // Two entries for one key: the later is stored.
    auto dup = entries[10];
    dup.reason = suppression_reason::complaint;
    dup.source = "later";
    entries.push_back(dup);
    const auto record = sample_audit(1, 1)[0];
    const auto res = st->import_suppressions(ws, sample_import(entries, record));
    CHECK(res.entries == entries.size());
    CHECK(res.change_seq == before_seq + 1);
    CHECK(res.audit_seq == audit_before.size() + 1);

    auto expected = last_per_key(entries);
    expected.push_back(kept);
    expected = canonical(store_snapshot{{}, expected, {}, 0}).suppressions;
    check_same_list(all_suppressions(*st, ws), expected, "after the import");
    CHECK(st->find_suppression(ws, suppression_kind::address, "a10@example.com") == dup);

    // One change: the feed carries every imported key at the import's seq,
    // the tombstone is gone, and skipping the import leaves nothing of it.
    const auto cs = st->changes_since(ws, before_seq);
    CHECK(cs.seq == res.change_seq);
    CHECK(cs.suppressions.size() == last_per_key(entries).size());
    CHECK(cs.deleted_suppressions.empty());
    CHECK(st->changes_since_skipping(ws, before_seq, res.change_seq).empty());
    CHECK(st->changes_since_skipping(ws, before_seq, res.change_seq).seq == res.change_seq);
    check_caught_up(*st, ws, res.change_seq);
    const auto cs_all = st->changes_since_skipping(ws, 0, res.change_seq);
    CHECK(cs_all.objects.size() == 1);
    check_same_list(cs_all.suppressions, {kept}, "all changes but the import's");

    // One audited change, chained like any append.
    const auto audit = all_audit(*st, ws);
    REQUIRE(audit.size() == audit_before.size() + 1);
    CHECK(audit.back().after == R"({"count":)" + std::to_string(entries.size()) + "}");
    CHECK_FALSE(verify_audit_chain(audit));

    // load_keys streams the same keys as load.
    std::set<std::pair<suppression_kind, std::string>> keys;
    const auto snap = st->load_keys(ws, at_seconds(0), [&](suppression_kind k, std::string_view v) {
        CHECK(keys.emplace(k, std::string(v)).second);
    });
    CHECK(snap.suppressions.empty());
    const auto full = st->load(ws, at_seconds(0));
    CHECK(snap.change_seq == full.change_seq);
    check_same_list(canonical(snap).objects, canonical(full).objects, "load_keys objects");
    REQUIRE(keys.size() == full.suppressions.size());
    for (const auto& e : full.suppressions) CHECK(keys.count({e.kind, e.value}) == 1);

    // Importing the same list again changes no entry, but is a change and an
    // audited act of its own.
    const auto again = st->import_suppressions(ws, sample_import(entries, record, 1000));
    CHECK(again.change_seq == res.change_seq + 1);
    CHECK(again.audit_seq == res.audit_seq + 1);
    check_same_list(all_suppressions(*st, ws), expected, "after importing again");

    // No entries: the audit record alone, and no change.
    const std::vector<suppression_entry> none;
    const auto empty = st->import_suppressions(ws, sample_import(none, record));
    CHECK(empty.entries == 0);
    CHECK(empty.change_seq == 0);
    CHECK(empty.audit_seq == again.audit_seq + 1);
    CHECK(st->changes_since(ws, 0).seq == again.change_seq);

    // The import survives a reopen.
    st.reset();
    st = open();
    check_same_list(all_suppressions(*st, ws), expected, "after reopen");
}

inline void check_import_all_or_nothing(const store_factory& open, const std::string& ws) {
    auto st = open();
    commit(*st, ws,
           {store_ops::put_suppression{
               sample_suppression(suppression_kind::address, "b1@example.com")}});
    commit(*st, ws, {store_ops::delete_suppression{suppression_kind::address, "b2@example.com"}});
    const auto entries = import_entries(3000, "b");
    const auto record = sample_audit(1, 1)[0];
    auto unchanged = [&](const char* what) {
        INFO(what);
        const auto suppressions = all_suppressions(*st, ws);
        REQUIRE(suppressions.size() == 1);
        CHECK(suppressions[0].value == "b1@example.com");
        CHECK(st->changes_since(ws, 0).seq == 2);
        CHECK(st->changes_since(ws, 0).deleted_suppressions.size() == 1);
        CHECK(all_audit(*st, ws).empty());
    };

    // The source fails part-way (a bad line in a file): its exception
    // reaches the caller unchanged, and nothing was imported.
    CHECK_THROWS_AS(st->import_suppressions(ws, sample_import(entries, record, 500, 3)),
                    import_stop);
    unchanged("source failed after three chunks");
    CHECK_THROWS_AS(st->import_suppressions(ws, sample_import(entries, record, 500, 6)),
                    import_stop);
    unchanged("source failed after the last chunk");

    // An entry the store refuses fails the import as a store error.
    auto bad = entries;
    bad[2500].reason = static_cast<suppression_reason>(77);
    CHECK_THROWS_AS(st->import_suppressions(ws, sample_import(bad, record)), exception);
    unchanged("an invalid entry");

    // The audit callback failing, after every entry, leaves nothing either.
    auto job = sample_import(entries, record);
    job.audit = [](std::uint64_t) -> store_ops::append_audit { throw import_stop{}; };
    CHECK_THROWS_AS(st->import_suppressions(ws, job), import_stop);
    unchanged("the audit callback failed");

    // The store stays usable.
    const auto res = st->import_suppressions(ws, sample_import(entries, record));
    CHECK(res.change_seq == 3);
    // b1@ was there already: the import replaced it.
    CHECK(all_suppressions(*st, ws).size() == entries.size());
}

inline void check_race_import(const store_factory& open, const std::string& ws) {
    constexpr std::size_t importers = 4;
    std::vector<std::vector<suppression_entry>> lists;
    for (std::size_t i = 0; i < importers; ++i) {
        lists.push_back(import_entries(1500, "r" + std::to_string(i) + "-"));
        // A key every importer writes: one of them is stored whole.
        auto shared = sample_suppression(suppression_kind::address, "shared@example.com");
        shared.source = "importer " + std::to_string(i);
        lists.back().push_back(shared);
    }
    std::vector<suppression_import_result> results(importers);
    const auto record = sample_audit(1, 1)[0];
    run_threads(importers, [&](std::size_t i) {
        auto st = open();
        results[i] = st->import_suppressions(ws, sample_import(lists[i], record, 100));
        // Ordinary commits keep going while imports run.
        commit(*st, ws, {store_ops::put_object{{"pool", "p" + std::to_string(i), "{}"}}});
    });
    auto st = open();
    std::set<std::uint64_t> seqs, audit_seqs;
    for (const auto& r : results) {
        CHECK(r.entries == 1501);
        seqs.insert(r.change_seq);
        audit_seqs.insert(r.audit_seq);
    }
    CHECK(seqs.size() == importers);
    CHECK(audit_seqs.size() == importers);
    CHECK(*seqs.begin() >= 1);
    CHECK(st->changes_since(ws, 0).seq == 2 * importers);
    const auto audit = all_audit(*st, ws);
    CHECK(audit.size() == importers);
    CHECK_FALSE(verify_audit_chain(audit));
    const auto all = all_suppressions(*st, ws);
    CHECK(all.size() == importers * 1500 + 1);
    // The shared key holds the entry of the importer whose change came last.
    const auto last =
        std::max_element(results.begin(), results.end(),
                         [](auto& a, auto& b) { return a.change_seq < b.change_seq; }) -
        results.begin();
    const auto shared = st->find_suppression(ws, suppression_kind::address, "shared@example.com");
    REQUIRE(shared);
    CHECK(shared->source == "importer " + std::to_string(last));
    // Each import's keys carry its own change seq.
    for (std::size_t i = 0; i < importers; ++i) {
        const auto skipped = st->changes_since_skipping(ws, 0, results[i].change_seq);
        std::size_t others = 0;
        for (const auto& e : skipped.suppressions)
            others += e.source == "import r" + std::to_string(i) + "-";
        CHECK(others == 0);
    }
}

inline void check_new_sends(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK_FALSE(st->find_send(ws, 1));
    CHECK_FALSE(st->find_send(ws, 0));
    const std::uint64_t owner = st->attach(ws, sample_member("sends"), long_lease);

    // Every field round-trips; the store gives the id and keeps the rest.
    auto s1 = sample_send(1, "order-1", at_seconds(10), owner);
    s1.attempt = 4'000'000'000u;
    s1.detail = std::string(5000, 'x');
    s1.provider_message_id = "pm-early";
    s1.updated_at = at_seconds(11);
    s1.suppression_seq = 17;
    const auto s2 = sample_send(2, "", at_seconds(-1'800'000'000));  // no key, owner 0
    const auto s3 = sample_send(3, "", at_seconds(12));  // no key either: empty keys never collide
    const auto res = commit(*st, ws, {reserve(s1), reserve(s2), reserve(s3)});
    std::set<std::uint64_t> ids;
    for (const auto& r : res.ops) {
        CHECK(r.reservation.status == reserve_status::reserved);
        CHECK(r.reservation.send_id != 0);
        ids.insert(r.reservation.send_id);
    }
    REQUIRE(ids.size() == 3);
    CHECK(res.change_seq == 0);
    auto expect1 = s1, expect2 = s2, expect3 = s3;
    expect1.id = res.ops[0].reservation.send_id;
    expect2.id = res.ops[1].reservation.send_id;
    expect3.id = res.ops[2].reservation.send_id;
    CHECK(st->find_send(ws, expect1.id) == expect1);
    CHECK(st->find_send(ws, expect2.id) == expect2);
    CHECK(st->find_send(ws, expect3.id) == expect3);

    // A taken key answers `duplicate` with the row as it is now, and
    // changes nothing: not the row, not the key, not the caps.
    auto accepted = expect1;
    accepted.state = send_state::accepted;
    accepted.updated_at = at_seconds(20);
    accepted.provider_message_id = "pm-1";
    // Above 2^32, below 2^63: the whole range a store keeps.
    accepted.suppression_seq = (std::uint64_t{1} << 62) + 5;
    REQUIRE(update_one(*st, ws, accepted));
    {
        const auto listed = sends_between(*st, ws, at_seconds(10), at_seconds(11));
        REQUIRE(listed.size() == 1);
        CHECK(listed.front() == accepted);
    }
    auto again = sample_send(9, "order-1", at_seconds(30), owner);
    const auto dup = reserve_one(*st, ws, again, {cap("dup-cap", 1)});
    CHECK(dup.status == reserve_status::duplicate);
    REQUIRE(dup.existing != nullptr);
    CHECK(*dup.existing == accepted);
    CHECK(st->find_send(ws, expect1.id) == accepted);
    ids.insert(reserve_new(*st, ws, sample_send(10, "", at_seconds(30)), {cap("dup-cap", 1)}));

    // Within a batch, a later reservation sees an earlier one's key.
    const auto batch = commit(
        *st, ws,
        {reserve(sample_send(11, "batch-key", at_seconds(40))),
         reserve(sample_send(12, "batch-key", at_seconds(41))), reserve(sample_send(13, ""))});
    REQUIRE(batch.ops[0].reservation.status == reserve_status::reserved);
    CHECK(batch.ops[1].reservation.status == reserve_status::duplicate);
    REQUIRE(batch.ops[1].reservation.existing != nullptr);
    CHECK(batch.ops[1].reservation.existing->id == batch.ops[0].reservation.send_id);
    CHECK(batch.ops[1].reservation.existing->recipient == "user11@example.com");
    REQUIRE(batch.ops[2].reservation.status == reserve_status::reserved);
    for (const std::size_t i : {std::size_t{0}, std::size_t{2}}) {
        const auto id = batch.ops[i].reservation.send_id;
        CHECK(id != 0);
        CHECK_MESSAGE(ids.insert(id).second, "id " << id << " given twice");
    }

    // A key stays taken whatever happens to its send.
    auto failed = stored_send(*st, ws, batch.ops[0].reservation.send_id);
    failed.state = send_state::failed;
    REQUIRE(update_one(*st, ws, failed));
    const auto after_failed = reserve_one(*st, ws, sample_send(14, "batch-key", at_seconds(50)));
    CHECK(after_failed.status == reserve_status::duplicate);
    REQUIRE(after_failed.existing != nullptr);
    CHECK(*after_failed.existing == stored_send(*st, ws, failed.id));

    // Ids are never reused, also after a reopen.
    st.reset();
    st = open();
    for (int i = 0; i < 5; ++i) {
        const auto id = reserve_new(*st, ws, sample_send(20 + i));
        CHECK(id != 0);
        CHECK_MESSAGE(ids.insert(id).second, "id " << id << " given twice");
    }
}

inline void check_cap_windows(const store_factory& open, const std::string& ws) {
    auto st = open();
    // Three uses of "mailbox:a" at 10, 20 and 30; the one at 30 is "in the
    // future" for the reservations at 25 below and counts all the same.
    for (const int t : {30, 10, 20})
        reserve_new(*st, ws, sample_send(static_cast<std::uint64_t>(t), "", at_seconds(t)),
                    {cap("mailbox:a", 10)});

    // count >= max refuses; until is the (count - max)-th use in time order.
    auto out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("mailbox:a", 3)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.claim == 0);
    CHECK(out.window == 0);
    CHECK(out.until == at_seconds(10));
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("mailbox:a", 2)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(20));
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("mailbox:a", 1)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(30));
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("mailbox:a", 0)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == time_point{});
    // A max of 0 refuses even an unused key.
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("mailbox:unused", 0)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == time_point{});

    // The floor is inclusive: a use at the floor counts, one before it not.
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)),
                      {cap("mailbox:a", 2, at_seconds(20))});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(20));
    // Uses in the future count: the use at 30 fills a window floored at 26.
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)),
                      {cap("mailbox:a", 1, at_seconds(26))});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(30));

    // The first full window of the first full claim is named; nothing of a
    // refused reservation is recorded, not even on the claims that fitted.
    cap_claim two_windows;
    two_windows.key = "mailbox:a";
    two_windows.windows = {window(at_seconds(21), 5), window(at_seconds(15), 2)};
    out = reserve_one(*st, ws, sample_send(1, "", at_seconds(25)),
                      {cap("provider:p", 1), two_windows, cap("domain:full", 0)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.claim == 1);
    CHECK(out.window == 1);
    CHECK(out.until == at_seconds(20));
    CHECK(reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("provider:p", 1)}).status ==
          reserve_status::reserved);
    CHECK(reserve_one(*st, ws, sample_send(1, "", at_seconds(25)), {cap("provider:p", 1)}).status ==
          reserve_status::cap_reached);

    // A reservation with room on every claim records one use on each.
    const auto id =
        reserve_new(*st, ws, sample_send(2, "", at_seconds(40)), {cap("k1", 1), cap("k2", 2)});
    CHECK(id != 0);
    out = reserve_one(*st, ws, sample_send(3, "", at_seconds(41)), {cap("k1", 1)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(40));
    CHECK(reserve_one(*st, ws, sample_send(3, "", at_seconds(41)), {cap("k2", 2)}).status ==
          reserve_status::reserved);
    CHECK(reserve_one(*st, ws, sample_send(3, "", at_seconds(41)), {cap("k2", 2)}).status ==
          reserve_status::cap_reached);

    // Within a batch, a later reservation counts an earlier one's uses; a
    // refused one in the middle does not stop the ones after it.
    const auto res = commit(*st, ws,
                            {reserve(sample_send(4, "", at_seconds(50)), {cap("batch", 2)}),
                             reserve(sample_send(5, "", at_seconds(51)), {cap("batch", 2)}),
                             reserve(sample_send(6, "", at_seconds(52)), {cap("batch", 2)}),
                             reserve(sample_send(7, "", at_seconds(53)), {cap("other", 1)})});
    CHECK(res.ops[0].reservation.status == reserve_status::reserved);
    CHECK(res.ops[1].reservation.status == reserve_status::reserved);
    CHECK(res.ops[2].reservation.status == reserve_status::cap_reached);
    CHECK(res.ops[2].reservation.until == at_seconds(50));
    CHECK(res.ops[3].reservation.status == reserve_status::reserved);

    // Keys are compared exactly.
    CHECK(reserve_one(*st, ws, sample_send(8, "", at_seconds(60)), {cap("Batch", 1)}).status ==
          reserve_status::reserved);
}

inline void check_gap(const store_factory& open, const std::string& ws) {
    auto st = open();
    const duration minute = std::chrono::seconds{60};
    reserve_new(*st, ws, sample_send(1, "", at_seconds(0)), {gap_claim("mailbox:g", minute)});

    auto out = reserve_one(*st, ws, sample_send(2, "", at_seconds(30)),
                           {cap("other", 5), gap_claim("mailbox:g", std::chrono::seconds{1})});
    CHECK(out.status == reserve_status::gap);
    CHECK(out.claim == 1);
    CHECK(out.until == at_seconds(60));
    // A claim with no gap neither checks nor starts one.
    reserve_new(*st, ws, sample_send(3, "", at_seconds(30)), {cap("mailbox:g", 10)});
    // The refused claim recorded nothing on "other".
    CHECK(reserve_one(*st, ws, sample_send(4, "", at_seconds(30)), {cap("other", 1)}).status ==
          reserve_status::reserved);

    // The gap ends at its until (exclusive), and the next one starts there.
    reserve_new(*st, ws, sample_send(5, "", at_seconds(60)),
                {gap_claim("mailbox:g", std::chrono::seconds{10})});
    out =
        reserve_one(*st, ws, sample_send(6, "", at_seconds(65)), {gap_claim("mailbox:g", minute)});
    CHECK(out.status == reserve_status::gap);
    CHECK(out.until == at_seconds(70));
    reserve_new(*st, ws, sample_send(7, "", at_seconds(70)), {gap_claim("mailbox:g", minute)});

    // A gap belongs to the key: it keeps running when the send that started
    // it fails and its uses are released, or when old uses are purged.
    const auto gone = reserve_new(*st, ws, sample_send(10, "", at_seconds(100)),
                                  {gap_claim("mailbox:f", minute)});
    ledger_row failed = stored_send(*st, ws, gone);
    failed.state = send_state::failed;
    REQUIRE(update_one(*st, ws, failed));
    st->purge_cap_uses(ws, at_seconds(150));
    out = reserve_one(*st, ws, sample_send(11, "", at_seconds(150)),
                      {gap_claim("mailbox:f", minute)});
    CHECK(out.status == reserve_status::gap);
    CHECK(out.until == at_seconds(160));

    // Within a batch the second sees the first's gap.
    const auto res =
        commit(*st, ws,
               {reserve(sample_send(8, "", at_seconds(200)), {gap_claim("mailbox:h", minute)}),
                reserve(sample_send(9, "", at_seconds(210)), {gap_claim("mailbox:h", minute)})});
    CHECK(res.ops[0].reservation.status == reserve_status::reserved);
    CHECK(res.ops[1].reservation.status == reserve_status::gap);
    CHECK(res.ops[1].reservation.until == at_seconds(260));
}

inline void check_stale_config(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto c1 = commit(*st, ws,
                           {store_ops::put_object{{"mailbox", "rep1", R"({"cap":30})"}},
                            store_ops::put_object{{"quota", "q1", R"({"max":5})"}}})
                        .change_seq;
    REQUIRE(c1 != 0);
    // Limits taken from a configuration as new as the object's last change fit.
    reserve_new(
        *st, ws, sample_send(1, "", at_seconds(0)),
        {object_claim("mailbox:rep1", "mailbox", "rep1"), object_claim("quota:q1", "quota", "q1")},
        c1);
    // An object that never changed is never stale; nor is a claim without one.
    reserve_new(*st, ws, sample_send(2, "", at_seconds(0)),
                {object_claim("mailbox:rep9", "mailbox", "rep9"), cap("plain", 5)}, 0);

    const auto c2 =
        commit(*st, ws, {store_ops::put_object{{"mailbox", "rep1", R"({"cap":10})"}}}).change_seq;
    REQUIRE(c2 > c1);
    auto out = reserve_one(
        *st, ws, sample_send(3, "", at_seconds(0)),
        {object_claim("quota:q1", "quota", "q1"), object_claim("mailbox:rep1", "mailbox", "rep1")},
        c1);
    CHECK(out.status == reserve_status::stale_config);
    CHECK(out.claim == 1);
    // The refused reservation recorded nothing.
    CHECK(reserve_one(*st, ws, sample_send(4, "", at_seconds(0)), {cap("quota:q1", 2)}).status ==
          reserve_status::reserved);
    // Stale is decided per claim, in claim order, before caps.
    out = reserve_one(*st, ws, sample_send(5, "", at_seconds(0)),
                      {object_claim("mailbox:rep1", "mailbox", "rep1", 0)}, c1);
    CHECK(out.status == reserve_status::stale_config);
    out = reserve_one(*st, ws, sample_send(5, "", at_seconds(0)),
                      {object_claim("mailbox:rep1", "mailbox", "rep1", 0)}, c2);
    CHECK(out.status == reserve_status::cap_reached);

    // A delete is a change too; the kind is part of the object's name.
    const auto c3 = commit(*st, ws, {store_ops::delete_object{"quota", "q1"}}).change_seq;
    REQUIRE(c3 > c2);
    out = reserve_one(*st, ws, sample_send(6, "", at_seconds(0)),
                      {object_claim("quota:q1", "quota", "q1")}, c2);
    CHECK(out.status == reserve_status::stale_config);
    CHECK(out.claim == 0);
    reserve_new(*st, ws, sample_send(7, "", at_seconds(0)),
                {object_claim("quota:q1", "quota", "q1")}, c3);
    reserve_new(*st, ws, sample_send(8, "", at_seconds(0)),
                {object_claim("mailbox:q1", "mailbox", "q1")}, 0);

    // An object changed earlier in the same batch is newer than any seq the
    // caller can know.
    const auto res = commit(*st, ws,
                            {store_ops::put_object{{"mailbox", "rep2", "{}"}},
                             reserve(sample_send(9, "", at_seconds(0)),
                                     {object_claim("mailbox:rep2", "mailbox", "rep2")}, c3)});
    CHECK(res.ops[1].reservation.status == reserve_status::stale_config);
    CHECK(res.change_seq > c3);
}

inline void check_failover(const store_factory& open, const std::string& ws) {
    auto st = open();
    const std::uint64_t owner = st->attach(ws, sample_member("failover"), long_lease);
    const std::uint64_t other = st->attach(ws, sample_member("other"), long_lease);

    auto first = sample_send(1, "order-7", at_seconds(10), owner);
    first.provider_message_id = "";
    const auto id = reserve_new(*st, ws, first, {cap("mailbox:a", 1), cap("provider:p", 1)});
    const ledger_row before = stored_send(*st, ws, id);

    // The next attempt on the same row: its own uses do not count against
    // it (provider:p is full with them), and its old ones are released.
    ledger_row next = before;
    next.mailbox = "rep-b@brand.example";
    next.provider = "smtp-backup";
    next.pool = "backup";
    next.message_id = "m1-2@mailers.brand.example";
    next.attempt = 2;
    next.reserved_at = at_seconds(20);
    next.updated_at = at_seconds(21);
    next.detail = "421 4.7.0 try again later";
    next.suppression_seq = 23;
    // Neither the key, nor the recipient, nor the provider id change on
    // failover, whatever the caller passes.
    next.idempotency_key = "ignored";
    next.recipient = "ignored@example.com";
    next.provider_message_id = "ignored";
    auto out = reserve_one(*st, ws, next, {cap("mailbox:b", 1), cap("provider:p", 1)});
    REQUIRE(out.status == reserve_status::reserved);
    CHECK(out.send_id == id);
    ledger_row expected = before;
    expected.mailbox = next.mailbox;
    expected.provider = next.provider;
    expected.pool = next.pool;
    expected.message_id = next.message_id;
    expected.attempt = 2;
    expected.reserved_at = next.reserved_at;
    expected.updated_at = next.updated_at;
    expected.detail = next.detail;
    expected.suppression_seq = next.suppression_seq;
    CHECK(st->find_send(ws, id) == expected);

    // mailbox:a is free again; provider:p and mailbox:b hold the new attempt.
    CHECK(reserve_one(*st, ws, sample_send(2), {cap("mailbox:a", 1)}).status ==
          reserve_status::reserved);
    out = reserve_one(*st, ws, sample_send(3), {cap("provider:p", 1)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(20));

    // A retry on the same mailbox fits too: again its own use does not count.
    ledger_row retry = expected;
    retry.attempt = 3;
    retry.reserved_at = at_seconds(30);
    retry.updated_at = at_seconds(30);
    out = reserve_one(*st, ws, retry, {cap("mailbox:b", 1), cap("provider:p", 1)});
    REQUIRE(out.status == reserve_status::reserved);
    expected.attempt = 3;
    expected.reserved_at = retry.reserved_at;
    expected.updated_at = retry.updated_at;
    CHECK(st->find_send(ws, id) == expected);

    // A refused attempt changes nothing: the row and its uses stay.
    reserve_new(*st, ws, sample_send(4), {cap("mailbox:c", 1)});
    ledger_row refused = expected;
    refused.mailbox = "rep-c@brand.example";
    refused.attempt = 4;
    refused.reserved_at = at_seconds(40);
    out = reserve_one(*st, ws, refused, {cap("provider:p", 1), cap("mailbox:c", 1)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.claim == 1);
    CHECK(st->find_send(ws, id) == expected);
    CHECK(reserve_one(*st, ws, sample_send(5), {cap("mailbox:b", 1)}).status ==
          reserve_status::cap_reached);
    CHECK(reserve_one(*st, ws, sample_send(5), {cap("provider:p", 1)}).status ==
          reserve_status::cap_reached);
    // Stale and gap refusals apply to further attempts too.
    const auto seq =
        commit(*st, ws, {store_ops::put_object{{"mailbox", "rep-d", "{}"}}}).change_seq;
    refused.mailbox = "rep-d@brand.example";
    out = reserve_one(*st, ws, refused, {object_claim("mailbox:d", "mailbox", "rep-d")}, seq - 1);
    CHECK(out.status == reserve_status::stale_config);
    reserve_new(*st, ws, sample_send(6, "", at_seconds(35)),
                {gap_claim("mailbox:e", std::chrono::seconds{60})});
    out = reserve_one(*st, ws, refused, {gap_claim("mailbox:e", std::chrono::seconds{60})});
    CHECK(out.status == reserve_status::gap);
    CHECK(out.until == at_seconds(95));
    CHECK(st->find_send(ws, id) == expected);

    // Only the owner may reserve again, and only a send still reserved.
    ledger_row wrong = refused;
    wrong.owner = other;
    CHECK(reserve_one(*st, ws, wrong, {}).status == reserve_status::not_owner);
    wrong.owner = 0;
    CHECK(reserve_one(*st, ws, wrong, {}).status == reserve_status::not_owner);
    ledger_row missing = refused;
    missing.id = id + 1'000'000;
    CHECK(reserve_one(*st, ws, missing, {}).status == reserve_status::not_owner);
    CHECK_FALSE(st->find_send(ws, missing.id));
    CHECK(st->find_send(ws, id) == expected);
    ledger_row done = expected;
    done.state = send_state::accepted;
    REQUIRE(update_one(*st, ws, done));
    CHECK(reserve_one(*st, ws, refused, {}).status == reserve_status::not_owner);
    CHECK(st->find_send(ws, id) == done);
}

inline void check_update_send(const store_factory& open, const std::string& ws) {
    auto st = open();
    const std::uint64_t owner = st->attach(ws, sample_member("updates"), long_lease);
    const auto id =
        reserve_new(*st, ws, sample_send(1, "k1", at_seconds(10), owner), {cap("mailbox:a", 1)});
    const ledger_row before = stored_send(*st, ws, id);

    // Only state, updated_at, provider_message_id, detail and
    // suppression_seq change.
    ledger_row update = before;
    update.state = send_state::accepted;
    update.updated_at = at_seconds(12);
    update.provider_message_id = "0102018c-provider-id";
    update.detail = "250 ok";
    update.suppression_seq = 31;
    update.idempotency_key = "other-key";
    update.mailbox = "other@brand.example";
    update.provider = "other";
    update.pool = "other";
    update.recipient = "other@example.com";
    update.message_id = "other@x";
    update.attempt = 9;
    update.reserved_at = at_seconds(99);
    const auto res = commit(*st, ws, {store_ops::update_send{update}});
    CHECK(res.ops[0].applied);
    CHECK(res.change_seq == 0);
    ledger_row expected = before;
    expected.state = update.state;
    expected.updated_at = update.updated_at;
    expected.provider_message_id = update.provider_message_id;
    expected.detail = update.detail;
    expected.suppression_seq = update.suppression_seq;
    CHECK(st->find_send(ws, id) == expected);
    // The key stayed with the row.
    const auto dup = reserve_one(*st, ws, sample_send(2, "k1"));
    CHECK(dup.status == reserve_status::duplicate);
    CHECK(reserve_one(*st, ws, sample_send(2, "other-key")).status == reserve_status::reserved);
    // Accepted keeps the cap use.
    CHECK(reserve_one(*st, ws, sample_send(3), {cap("mailbox:a", 1)}).status ==
          reserve_status::cap_reached);

    // Refused, changing nothing: a finished send, a wrong owner, a missing id.
    ledger_row late = expected;
    late.state = send_state::failed;
    late.detail = "late";
    late.suppression_seq = 99;
    CHECK_FALSE(update_one(*st, ws, late));
    CHECK(st->find_send(ws, id) == expected);
    const auto id2 =
        reserve_new(*st, ws, sample_send(4, "", at_seconds(20), owner), {cap("mailbox:b", 1)});
    ledger_row wrong = stored_send(*st, ws, id2);
    const ledger_row before2 = wrong;
    wrong.owner = owner + 1;
    wrong.state = send_state::failed;
    CHECK_FALSE(update_one(*st, ws, wrong));
    wrong.owner = 0;
    CHECK_FALSE(update_one(*st, ws, wrong));
    CHECK(st->find_send(ws, id2) == before2);
    CHECK(reserve_one(*st, ws, sample_send(5), {cap("mailbox:b", 1)}).status ==
          reserve_status::cap_reached);
    ledger_row missing = before2;
    missing.id = id2 + 1'000'000;
    missing.state = send_state::accepted;
    CHECK_FALSE(update_one(*st, ws, missing));
    CHECK_FALSE(st->find_send(ws, missing.id));

    // Failed releases the cap uses: the next reservation on the key fits.
    ledger_row failed = before2;
    failed.state = send_state::failed;
    failed.updated_at = at_seconds(21);
    failed.detail = "550 5.1.1 no such user";
    failed.suppression_seq = 41;
    CHECK(update_one(*st, ws, failed));
    CHECK(st->find_send(ws, id2) == failed);
    CHECK(reserve_one(*st, ws, sample_send(6), {cap("mailbox:b", 1)}).status ==
          reserve_status::reserved);

    // Unknown keeps the uses (it may have been sent), and may still get its
    // true outcome; failed then releases them.
    const auto id3 =
        reserve_new(*st, ws, sample_send(7, "", at_seconds(30), owner), {cap("mailbox:c", 1)});
    ledger_row unknown = stored_send(*st, ws, id3);
    unknown.state = send_state::unknown;
    unknown.detail = "connection lost after DATA";
    unknown.suppression_seq = 51;
    CHECK(update_one(*st, ws, unknown));
    CHECK(st->find_send(ws, id3) == unknown);
    CHECK(reserve_one(*st, ws, sample_send(8), {cap("mailbox:c", 1)}).status ==
          reserve_status::cap_reached);
    unknown.state = send_state::failed;
    unknown.detail = "bounced";
    unknown.suppression_seq = 52;
    CHECK(update_one(*st, ws, unknown));
    CHECK(st->find_send(ws, id3) == unknown);
    CHECK(reserve_one(*st, ws, sample_send(9), {cap("mailbox:c", 1)}).status ==
          reserve_status::reserved);

    // An update back to `reserved` fails the whole commit.
    const auto id4 = reserve_new(*st, ws, sample_send(10, "", at_seconds(40), owner));
    const ledger_row row4 = stored_send(*st, ws, id4);
    const auto seq_before = st->load(ws, at_seconds(0)).change_seq;
    ledger_row back = row4;
    back.detail = "still reserved";
    commit_must_fail(
        *st, ws,
        {store_ops::put_object{{"mailbox", "x", "{}"}},
         reserve(sample_send(11, "k-fail"), {cap("mailbox:d", 1)}), store_ops::update_send{back}});
    CHECK(st->find_send(ws, id4) == row4);
    CHECK(st->load(ws, at_seconds(0)).change_seq == seq_before);
    CHECK(st->load(ws, at_seconds(0)).objects.empty());
    CHECK(reserve_one(*st, ws, sample_send(11, "k-fail"), {cap("mailbox:d", 1)}).status ==
          reserve_status::reserved);
}

inline void check_recent_sends(const store_factory& open, const std::string& ws) {
    auto st = open();
    auto with_state = [&](ledger_row r, send_state s) {
        const auto id = reserve_new(*st, ws, r);
        r.id = id;
        if (s != send_state::reserved) {
            r.state = s;
            REQUIRE(update_one(*st, ws, r));
        }
        return r;
    };
    const auto old_done = with_state(sample_send(1, "a", at_seconds(10)), send_state::accepted);
    // Still reserved: always loaded.
    const auto old_reserved = with_state(sample_send(2, "b", at_seconds(11)), send_state::reserved);
    // reserved_at == since: loaded.
    const auto boundary = with_state(sample_send(3, "c", at_seconds(100)), send_state::failed);
    const auto recent = with_state(sample_send(4, "", at_seconds(150)), send_state::unknown);
    const auto old_unknown = with_state(sample_send(5, "", at_seconds(99)), send_state::unknown);
    auto by_id = [](std::vector<ledger_row> v) {
        std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
        return v;
    };

    check_same_list(canonical(st->load(ws, at_seconds(100))).recent_sends,
                    by_id({old_reserved, boundary, recent}), "since 100");
    check_same_list(canonical(st->load(ws, at_seconds(1000))).recent_sends, {old_reserved},
                    "since 1000");
    const auto all = by_id({old_done, old_reserved, boundary, recent, old_unknown});
    check_same_list(canonical(st->load(ws, at_seconds(-1000))).recent_sends, all,
                    "since the beginning");

    // for_each_send: [from, to) on reserved_at, in id order, whatever the state.
    check_same_list(sends_between(*st, ws, at_seconds(11), at_seconds(150)),
                    by_id({old_reserved, boundary, old_unknown}), "[11, 150)");
    check_same_list(sends_between(*st, ws, at_seconds(0), at_seconds(1000)), all, "[0, 1000)");
    CHECK(sends_between(*st, ws, at_seconds(100), at_seconds(100)).empty());
    CHECK(sends_between(*st, ws, at_seconds(200), at_seconds(100)).empty());
}

inline void check_audit(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(all_audit(*st, ws).empty());

    std::vector<audit_record> expected;
    const auto first = sample_audit(3, 1);
    std::vector<store_op> ops;
    for (const auto& r : first) ops.push_back(store_ops::append_audit{r});
    auto res = commit(*st, ws, ops);
    CHECK(res.change_seq == 0);
    for (std::size_t i = 0; i < first.size(); ++i) {
        expected.push_back(chained(first[i], expected.empty() ? nullptr : &expected.back()));
        CHECK(res.ops[i].audit_seq == expected.back().seq);
    }
    // Appends mixed with other ops, in a second commit.
    const auto more = sample_audit(4, 4);
    res = commit(*st, ws,
                 {store_ops::append_audit{more[0]}, reserve(sample_send(1)),
                  store_ops::append_audit{more[1]}, store_ops::put_object{{"pool", "p", "{}"}},
                  store_ops::append_audit{more[2]}, store_ops::append_audit{more[3]}});
    REQUIRE(res.change_seq != 0);
    std::size_t op = 0;
    for (auto r : more) {
        // The commit publishes a change, so every record of it carries it.
        r.change_seq = res.change_seq;
        expected.push_back(chained(r, &expected.back()));
        if (op == 1 || op == 3) ++op;
        CHECK(res.ops[op].audit_seq == expected.back().seq);
        ++op;
    }

    const auto stored = all_audit(*st, ws);
    check_same_list(stored, expected, "for_each_audit from 1");
    CHECK_FALSE(verify_audit_chain(stored));
    check_same_list(all_audit(*st, ws, 5),
                    std::vector<audit_record>(expected.begin() + 4, expected.end()), "from 5");
    CHECK(all_audit(*st, ws, 8).empty());
    CHECK(all_audit(*st, ws, 0) == expected);

    // The chain survives a reopen and continues from its head.
    st.reset();
    st = open();
    const auto last = sample_audit(1, 8)[0];
    res = commit(*st, ws, {store_ops::append_audit{last}});
    expected.push_back(chained(last, &expected.back()));
    CHECK(res.ops[0].audit_seq == 8);
    check_same_list(all_audit(*st, ws), expected, "after reopen");
    CHECK_FALSE(verify_audit_chain(all_audit(*st, ws)));
    CHECK_FALSE(verify_audit_chain(all_audit(*st, ws), audit_verify_options{}));
}

// An append carrying a key is hashed with it, from the key record on; the
// unkeyed records before it stay as they were.
inline void check_audit_keyed(const store_factory& open, const std::string& ws) {
    const std::string key = "conformance audit key";
    auto st = open();
    std::vector<audit_record> expected;
    const auto plain = sample_audit(2, 1);
    auto res =
        commit(*st, ws, {store_ops::append_audit{plain[0]}, store_ops::append_audit{plain[1]}});
    for (const auto& r : plain)
        expected.push_back(chained(r, expected.empty() ? nullptr : &expected.back()));

    auto marker = sample_audit(1, 3)[0];
    marker.action = std::string(audit_key_action);
    const auto keyed = sample_audit(2, 4);
    res = commit(*st, ws,
                 {store_ops::append_audit{marker, key}, store_ops::append_audit{keyed[0], key},
                  store_ops::append_audit{keyed[1], key}});
    expected.push_back(chained(marker, &expected.back(), key));
    for (const auto& r : keyed) expected.push_back(chained(r, &expected.back(), key));
    CHECK(res.ops[2].audit_seq == 5);
    CHECK(expected[2].hash != audit_hash(expected[2]));

    st.reset();
    st = open();
    const auto stored = all_audit(*st, ws);
    check_same_list(stored, expected, "keyed chain");
    CHECK_FALSE(verify_audit_chain(stored, audit_verify_options{{}, key}));
    std::uint64_t bad_seq = 0;
    CHECK(verify_audit_chain(stored, audit_verify_options{{}, "another key"}, &bad_seq) ==
          make_error_code(errc::audit_chain_broken));
    CHECK(bad_seq == 3);
}

inline void check_change_feed(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(st->load(ws, at_seconds(0)).change_seq == 0);
    check_same_changes(st->changes_since(ws, 0), change_set{});
    check_caught_up(*st, ws, 0);

    const auto a = sample_suppression(suppression_kind::address, "a@example.com");
    const auto d = sample_suppression(suppression_kind::domain, "d.example");
    const auto c1 = commit(*st, ws,
                           {store_ops::put_object{{"mailbox", "m1", "1"}},
                            store_ops::put_object{{"mailbox", "m2", "2"}},
                            store_ops::put_suppression{a}, store_ops::put_suppression{d}})
                        .change_seq;
    REQUIRE(c1 > 0);
    CHECK(st->load(ws, at_seconds(0)).change_seq == c1);

    change_set expected;
    expected.seq = c1;
    expected.objects = {{"mailbox", "m1", "1"}, {"mailbox", "m2", "2"}};
    expected.suppressions = {a, d};
    check_same_changes(st->changes_since(ws, 0), expected);
    check_caught_up(*st, ws, c1);

    // Commits without objects or suppressions publish nothing.
    auto res =
        commit(*st, ws, {reserve(sample_send(1)), store_ops::append_audit{sample_audit(1)[0]}});
    CHECK(res.change_seq == 0);
    CHECK(st->load(ws, at_seconds(0)).change_seq == c1);
    check_caught_up(*st, ws, c1);

    // Newest state only: put-then-deleted is a delete, deleted-then-put a
    // put, the last put wins.
    auto a2 = a;
    a2.reason = suppression_reason::complaint;
    const auto c2 = commit(*st, ws,
                           {store_ops::put_object{{"quota", "q", "1"}},
                            store_ops::delete_object{"mailbox", "m1"},
                            store_ops::put_object{{"mailbox", "m1", "again"}},
                            store_ops::delete_suppression{suppression_kind::domain, "d.example"}})
                        .change_seq;
    REQUIRE(c2 > c1);
    const auto c3 =
        commit(*st, ws,
               {store_ops::delete_object{"quota", "q"},
                store_ops::put_object{{"mailbox", "m1", "third"}}, store_ops::put_suppression{a2}})
            .change_seq;
    REQUIRE(c3 > c2);
    CHECK(st->load(ws, at_seconds(0)).change_seq == c3);

    expected = change_set{};
    expected.seq = c3;
    expected.objects = {{"mailbox", "m1", "third"}};
    expected.deleted_objects = {{"quota", "q"}};
    expected.suppressions = {a2};
    expected.deleted_suppressions = {{suppression_kind::domain, "d.example"}};
    check_same_changes(st->changes_since(ws, c1), expected);
    expected.objects = {{"mailbox", "m1", "third"}};
    expected.deleted_objects = {{"quota", "q"}};
    expected.suppressions = {a2};
    expected.deleted_suppressions = {};
    check_same_changes(st->changes_since(ws, c2), expected);
    expected = change_set{};
    expected.seq = c3;
    expected.objects = {{"mailbox", "m1", "third"}, {"mailbox", "m2", "2"}};
    expected.deleted_objects = {{"quota", "q"}};
    expected.suppressions = {a2};
    expected.deleted_suppressions = {{suppression_kind::domain, "d.example"}};
    check_same_changes(st->changes_since(ws, 0), expected);
    check_caught_up(*st, ws, c3);

    // A commit with only deletes of what does not exist still publishes.
    const auto c4 = commit(*st, ws, {store_ops::delete_object{"pool", "never"}}).change_seq;
    CHECK(c4 > c3);
    CHECK(st->load(ws, at_seconds(0)).change_seq == c4);
    const auto tail = st->changes_since(ws, c3);
    CHECK(tail.objects.empty());
    CHECK(tail.suppressions.empty());
    CHECK(tail.deleted_suppressions.empty());
    check_caught_up(*st, ws, tail.empty() ? c4 : tail.seq);

    // Many changes in one commit: one seq.
    std::vector<store_op> ops;
    for (int i = 0; i < 50; ++i)
        ops.push_back(store_ops::put_suppression{sample_suppression(
            suppression_kind::address, "bulk" + std::to_string(i) + "@example.com")});
    const auto c5 = commit(*st, ws, ops).change_seq;
    CHECK(c5 > c4);
    const auto bulk = st->changes_since(ws, c4);
    CHECK(bulk.seq == c5);
    CHECK(bulk.suppressions.size() == 50);
    check_caught_up(*st, ws, c5);

    // And the feed survives a reopen.
    st.reset();
    st = open();
    CHECK(st->load(ws, at_seconds(0)).change_seq == c5);
    check_same_changes(st->changes_since(ws, c4), bulk);
}

inline void check_members(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(st->members(ws).empty());
    CHECK_FALSE(st->renew(ws, 12345, long_lease, 0));

    const member_info info_a{"host-a.example", 101, "billing-worker"};
    const member_info info_b{"host-b.example", 202, ""};
    const auto a = st->attach(ws, info_a, long_lease);
    const auto b = st->attach(ws, info_b, short_lease);
    CHECK(a != 0);
    CHECK(b != 0);
    CHECK(a != b);

    auto ma = find_member(*st, ws, a);
    REQUIRE(ma.has_value());
    CHECK(ma->info.host == info_a.host);
    CHECK(ma->info.pid == info_a.pid);
    CHECK(ma->info.name == info_a.name);
    CHECK(ma->acked_seq == 0);
    CHECK(ma->live);

    CHECK(st->renew(ws, a, long_lease, 42));
    ma = find_member(*st, ws, a);
    REQUIRE(ma.has_value());
    CHECK(ma->acked_seq == 42);
    CHECK(ma->live);

    // b's lease runs out on the store's clock; a late renew changes nothing.
    sleep_past_short_lease();
    auto mb = find_member(*st, ws, b);
    REQUIRE_MESSAGE(mb.has_value(), "a member whose lease ran out stays until recovered");
    CHECK_FALSE(mb->live);
    CHECK_FALSE(st->renew(ws, b, long_lease, 7));
    mb = find_member(*st, ws, b);
    REQUIRE(mb.has_value());
    CHECK_FALSE(mb->live);
    CHECK(mb->acked_seq == 0);
    CHECK(st->renew(ws, a, long_lease, 43));

    // Recovered and detached members are gone, and their renew fails.
    CHECK(st->recover(ws, {}, at_seconds(0), "lease ran out") == 0);
    CHECK_FALSE(find_member(*st, ws, b));
    CHECK_FALSE(st->renew(ws, b, long_lease, 8));
    st->detach(ws, a);
    CHECK_FALSE(find_member(*st, ws, a));
    CHECK_FALSE(st->renew(ws, a, long_lease, 44));
    CHECK(st->members(ws).empty());

    // Ids are never reused, also after a reopen.
    std::set<std::uint64_t> ids{a, b};
    for (int i = 0; i < 3; ++i) {
        const auto id = st->attach(ws, info_b, long_lease);
        CHECK(id != 0);
        CHECK_MESSAGE(ids.insert(id).second, "member id " << id << " given twice");
    }
    st.reset();
    st = open();
    CHECK(st->members(ws).size() == 3);
    const auto id = st->attach(ws, info_a, long_lease);
    CHECK(id != 0);
    CHECK_MESSAGE(ids.insert(id).second, "member id " << id << " given twice");
    CHECK(st->members(ws).size() == 4);
}

inline void check_recover(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto live = st->attach(ws, sample_member("live"), long_lease);
    const auto expiring = st->attach(ws, sample_member("expiring"), short_lease);
    const auto dead = st->attach(ws, sample_member("dead"), long_lease);

    std::uint64_t n = 0;
    auto send = [&](std::uint64_t owner, send_state s, std::vector<cap_claim> claims = {}) {
        ++n;
        ledger_row r = sample_send(n, "", at_seconds(static_cast<std::int64_t>(n)), owner);
        r.id = reserve_new(*st, ws, r, std::move(claims));
        if (s != send_state::reserved) {
            r.state = s;
            r.detail = "by owner";
            REQUIRE(update_one(*st, ws, r));
        }
        return r;
    };
    const auto live_reserved = send(live, send_state::reserved);
    const auto exp_reserved = send(expiring, send_state::reserved, {cap("mailbox:r", 1)});
    const auto exp_accepted = send(expiring, send_state::accepted);
    const auto exp_failed = send(expiring, send_state::failed);
    const auto exp_unknown = send(expiring, send_state::unknown);
    const auto dead_reserved = send(dead, send_state::reserved);
    const auto dead_accepted = send(dead, send_state::accepted);
    const auto orphan = send(0, send_state::reserved);
    sleep_past_short_lease();

    const std::uint64_t dead_list[] = {dead};
    CHECK(st->recover(ws, dead_list, at_seconds(500), "owner gone") == 3);
    auto marked = [&](ledger_row r) {
        r.state = send_state::unknown;
        r.detail = "owner gone";
        r.updated_at = at_seconds(500);
        return r;
    };
    CHECK(st->find_send(ws, exp_reserved.id) == marked(exp_reserved));
    CHECK(st->find_send(ws, dead_reserved.id) == marked(dead_reserved));
    CHECK(st->find_send(ws, orphan.id) == marked(orphan));
    for (const auto& r : {live_reserved, exp_accepted, exp_failed, exp_unknown, dead_accepted}) {
        CHECK(st->find_send(ws, r.id) == r);
    }
    const auto members = st->members(ws);
    REQUIRE(members.size() == 1);
    CHECK(members[0].id == live);
    CHECK_FALSE(st->renew(ws, expiring, long_lease, 1));
    CHECK_FALSE(st->renew(ws, dead, long_lease, 1));
    CHECK(st->renew(ws, live, long_lease, 1));

    // An unknown send keeps its cap uses, and its owner may still record
    // the true outcome; the owner can no longer reserve again on it.
    CHECK(reserve_one(*st, ws, sample_send(100), {cap("mailbox:r", 1)}).status ==
          reserve_status::cap_reached);
    ledger_row again = marked(exp_reserved);
    again.state = send_state::reserved;
    again.attempt = 2;
    CHECK(reserve_one(*st, ws, again, {}).status == reserve_status::not_owner);
    ledger_row outcome = marked(exp_reserved);
    outcome.state = send_state::accepted;
    outcome.updated_at = at_seconds(501);
    outcome.provider_message_id = "pm-late";
    outcome.detail = "";
    CHECK(update_one(*st, ws, outcome));
    CHECK(st->find_send(ws, exp_reserved.id) == outcome);
    CHECK(st->recover(ws, {}, at_seconds(502), "again") == 0);

    // detach recovers at once.
    st->detach(ws, live);
    const auto after_detach = stored_send(*st, ws, live_reserved.id);
    CHECK(after_detach.state == send_state::unknown);
    CHECK(st->members(ws).empty());
    CHECK_FALSE(st->renew(ws, live, long_lease, 2));
    CHECK(st->recover(ws, {}, at_seconds(503), "again") == 0);
}

inline void check_purge(const store_factory& open, const std::string& ws) {
    auto st = open();
    reserve_new(*st, ws, sample_send(1, "", at_seconds(10)), {cap("k", 2)});
    reserve_new(*st, ws, sample_send(2, "", at_seconds(20)), {cap("k", 2)});
    auto out = reserve_one(*st, ws, sample_send(3, "", at_seconds(30)), {cap("k", 2)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(10));

    st->purge_cap_uses(ws, at_seconds(15));
    reserve_new(*st, ws, sample_send(3, "", at_seconds(30)), {cap("k", 2)});
    // The use at 20 is not before 20: it still counts.
    st->purge_cap_uses(ws, at_seconds(20));
    out = reserve_one(*st, ws, sample_send(4, "", at_seconds(40)), {cap("k", 2)});
    CHECK(out.status == reserve_status::cap_reached);
    CHECK(out.until == at_seconds(20));
    // Purging touches neither sends nor other workspaces.
    CHECK(sends_between(*st, ws, at_seconds(0), at_seconds(100)).size() == 3);
    reserve_new(*st, ws + "-other", sample_send(5, "", at_seconds(10)), {cap("k", 1)});
    st->purge_cap_uses(ws, at_seconds(1000));
    CHECK(
        reserve_one(*st, ws + "-other", sample_send(6, "", at_seconds(11)), {cap("k", 1)}).status ==
        reserve_status::cap_reached);
    CHECK(reserve_one(*st, ws, sample_send(7, "", at_seconds(41)), {cap("k", 1)}).status ==
          reserve_status::reserved);
}

inline void check_failed_commit_changes_nothing(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto owner = st->attach(ws, sample_member("atomic"), long_lease);
    const auto keep_supp = sample_suppression(suppression_kind::address, "keep@example.com");
    const auto setup = commit(
        *st, ws,
        {store_ops::put_object{{"mailbox", "rep1", "{}"}}, store_ops::put_suppression{keep_supp},
         reserve(sample_send(1, "dup", at_seconds(0), owner), {cap("mailbox:a", 2)}),
         reserve(sample_send(2, "", at_seconds(0), owner)),
         store_ops::append_audit{sample_audit(1)[0]}});
    const auto id1 = setup.ops[2].reservation.send_id;
    const auto id2 = setup.ops[3].reservation.send_id;
    const auto before = st->load(ws, at_seconds(0));
    const ledger_row row1 = stored_send(*st, ws, id1);
    const ledger_row row2 = stored_send(*st, ws, id2);

    ledger_row changed = row1;
    changed.state = send_state::failed;
    ledger_row bad = row2;  // an update back to reserved fails the batch
    bad.detail = "x";
    ledger_row next = row2;
    next.attempt = 2;
    next.mailbox = "moved@brand.example";
    const std::vector<store_op> batch = {
        store_ops::put_object{{"mailbox", "rep2", "{}"}},
        store_ops::delete_object{"mailbox", "rep1"},
        store_ops::put_suppression{sample_suppression(suppression_kind::domain, "new.example")},
        store_ops::delete_suppression{suppression_kind::address, "keep@example.com"},
        store_ops::update_send{changed},
        reserve(sample_send(3, "fresh"), {cap("mailbox:a", 2)}),
        reserve(next, {cap("mailbox:z", 1)}),
        store_ops::append_audit{sample_audit(1, 2)[0]},
        store_ops::update_send{bad},
        store_ops::put_object{{"mailbox", "rep3", "{}"}},
    };
    const std::string message = commit_must_fail(*st, ws, batch);
    CHECK_MESSAGE(!message.empty(), "a failed commit explains itself");
    auto check_unchanged = [&] {
        check_same_snapshot(st->load(ws, at_seconds(0)), before);
        CHECK(st->find_send(ws, id1) == row1);
        CHECK(st->find_send(ws, id2) == row2);
        CHECK(st->find_suppression(ws, suppression_kind::address, "keep@example.com") == keep_supp);
        CHECK(all_audit(*st, ws).size() == 1);
        check_caught_up(*st, ws, before.change_seq);
    };
    check_unchanged();

    // The failed batch left nothing waiting to reappear on a later commit
    // or after reopening.
    commit(*st, ws, {store_ops::put_object{{"pool", "later", "{}"}}});
    st.reset();
    st = open();
    CHECK(canonical(st->load(ws, at_seconds(0))).objects.size() == 2);
    CHECK(all_audit(*st, ws).size() == 1);
    CHECK(st->find_send(ws, id1) == row1);
    CHECK(st->find_send(ws, id2) == row2);
    const auto dup = reserve_one(*st, ws, sample_send(3, "fresh"));
    CHECK(dup.status == reserve_status::reserved);
    // mailbox:a holds only send 1's use (and the one just taken is not on it).
    CHECK(reserve_one(*st, ws, sample_send(4), {cap("mailbox:a", 2)}).status ==
          reserve_status::reserved);
    CHECK(reserve_one(*st, ws, sample_send(5), {cap("mailbox:a", 2)}).status ==
          reserve_status::cap_reached);

    // The store is still usable, with every kind of op.
    std::vector<store_op> fixed(batch.begin(), batch.end() - 2);
    const auto res = commit(*st, ws, fixed);
    CHECK(res.change_seq > 0);
    CHECK(st->find_send(ws, id1) == changed);
    CHECK(stored_send(*st, ws, id2).mailbox == "moved@brand.example");
    CHECK(all_audit(*st, ws).size() == 2);
    CHECK_FALSE(verify_audit_chain(all_audit(*st, ws)));

    // An empty batch is a no-op, not an error.
    const auto empty = st->commit(ws, {});
    CHECK(empty.ops.empty());
    CHECK(empty.change_seq == 0);
}

inline void check_reopen_persists(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto member = st->attach(ws, sample_member("reopen"), long_lease);
    REQUIRE(st->renew(ws, member, long_lease, 5));
    std::vector<store_op> ops = {
        store_ops::put_object{{"mailbox", "rep1", R"({"cap":30})"}},
        store_ops::put_suppression{
            sample_suppression(suppression_kind::address, "gone@example.com")},
        reserve(sample_send(7, "k7", at_seconds(50), member), {cap("mailbox:a", 1)}),
        reserve(sample_send(8, "", at_seconds(1), member),
                {gap_claim("mailbox:g", std::chrono::seconds{100})}),
    };
    for (const auto& r : sample_audit(3)) ops.push_back(store_ops::append_audit{r});
    const auto res = commit(*st, ws, ops);
    const auto id8 = res.ops[3].reservation.send_id;
    auto accepted = stored_send(*st, ws, id8);
    accepted.state = send_state::accepted;
    REQUIRE(update_one(*st, ws, accepted));
    const auto before = st->load(ws, at_seconds(10));
    const auto audit_before = all_audit(*st, ws);
    st.reset();

    st = open();
    const auto after = st->load(ws, at_seconds(10));
    check_same_snapshot(after, before);
    CHECK(after.change_seq == res.change_seq);
    CHECK(after.recent_sends.size() == 1);
    CHECK(st->find_send(ws, id8) == accepted);
    CHECK(all_audit(*st, ws) == audit_before);
    CHECK_FALSE(verify_audit_chain(all_audit(*st, ws)));
    // Members, keys, cap uses and gaps persist.
    const auto m = find_member(*st, ws, member);
    REQUIRE(m.has_value());
    CHECK(m->acked_seq == 5);
    CHECK(st->renew(ws, member, long_lease, 6));
    CHECK(reserve_one(*st, ws, sample_send(9, "k7")).status == reserve_status::duplicate);
    CHECK(reserve_one(*st, ws, sample_send(9), {cap("mailbox:a", 1)}).status ==
          reserve_status::cap_reached);
    const auto gap = reserve_one(*st, ws, sample_send(9, "", at_seconds(50)),
                                 {gap_claim("mailbox:g", std::chrono::seconds{1})});
    CHECK(gap.status == reserve_status::gap);
    CHECK(gap.until == at_seconds(101));

    // Two handles at once see one database.
    auto other = open();
    const auto id = reserve_new(*other, ws, sample_send(10, "k10"));
    CHECK(st->find_send(ws, id).has_value());
    CHECK(reserve_one(*st, ws, sample_send(11, "k10")).status == reserve_status::duplicate);
}

inline void check_workspaces_isolated(const store_factory& open, const std::string& prefix) {
    auto st = open();
    const std::string a = prefix + "-a", b = prefix + "-b";
    // Same object ids, suppression values, keys, cap keys and audit records
    // in both workspaces: none of them may collide.
    const auto ma = st->attach(a, sample_member("a"), long_lease);
    const auto ra = commit(
        *st, a,
        {store_ops::put_object{{"mailbox", "rep1", "A"}},
         store_ops::put_suppression{sample_suppression(suppression_kind::address, "x@example.com")},
         reserve(sample_send(1, "same-key", at_seconds(0), ma),
                 {cap("mailbox:rep1", 1), gap_claim("mailbox:g", std::chrono::seconds{60})}),
         store_ops::append_audit{sample_audit(1)[0]}, store_ops::append_audit{sample_audit(1)[0]}});
    const auto rb =
        commit(*st, b,
               {store_ops::put_object{{"mailbox", "rep1", "B"}},
                store_ops::put_suppression{sample_suppression(
                    suppression_kind::address, "x@example.com", suppression_reason::legal)},
                reserve(sample_send(2, "same-key", at_seconds(0)),
                        {cap("mailbox:rep1", 1), gap_claim("mailbox:g", std::chrono::seconds{60})}),
                store_ops::append_audit{sample_audit(1)[0]}});
    REQUIRE(ra.ops[2].reservation.status == reserve_status::reserved);
    REQUIRE(rb.ops[2].reservation.status == reserve_status::reserved);
    CHECK(rb.ops[3].audit_seq == 1);
    const auto ida = ra.ops[2].reservation.send_id, idb = rb.ops[2].reservation.send_id;

    CHECK(stored_send(*st, a, ida).recipient == "user1@example.com");
    CHECK(stored_send(*st, b, idb).recipient == "user2@example.com");
    if (ida != idb) {
        CHECK_FALSE(st->find_send(b, ida));
        CHECK_FALSE(st->find_send(a, idb));
    }
    CHECK(st->find_suppression(b, suppression_kind::address, "x@example.com")->reason ==
          suppression_reason::legal);
    CHECK(st->find_suppression(a, suppression_kind::address, "x@example.com")->reason ==
          suppression_reason::manual);
    CHECK(st->load(a, at_seconds(0)).objects.at(0).json == "A");
    CHECK(st->load(b, at_seconds(0)).objects.at(0).json == "B");
    CHECK(all_audit(*st, a).size() == 2);
    CHECK(all_audit(*st, b).size() == 1);
    CHECK(st->changes_since(b, 0).objects.at(0).json == "B");
    CHECK(st->members(b).empty());
    CHECK_FALSE(st->renew(b, ma, long_lease, 0));

    // Changes and recovery in one workspace leave the other alone.
    commit(*st, a,
           {store_ops::delete_object{"mailbox", "rep1"},
            store_ops::delete_suppression{suppression_kind::address, "x@example.com"}});
    CHECK(st->recover(b, {}, at_seconds(1), "b") == 1);  // b's send has owner 0
    CHECK(stored_send(*st, a, ida).state == send_state::reserved);
    CHECK(st->find_suppression(b, suppression_kind::address, "x@example.com"));
    CHECK(st->load(b, at_seconds(0)).objects.size() == 1);
    CHECK(st->load(a, at_seconds(0)).objects.empty());
    CHECK(find_member(*st, a, ma).has_value());

    // A workspace nobody wrote to is empty.
    const std::string c = prefix + "-c";
    const auto empty = st->load(c, at_seconds(-1'000'000'000));
    CHECK(empty.objects.empty());
    CHECK(empty.suppressions.empty());
    CHECK(empty.recent_sends.empty());
    CHECK(empty.change_seq == 0);
    CHECK(st->changes_since(c, 0).empty());
    CHECK(all_audit(*st, c).empty());
    CHECK(st->members(c).empty());
    // Workspace names are compared exactly.
    CHECK_FALSE(st->find_send(prefix + "-A", ida));
    CHECK(st->load(prefix + "-a ", at_seconds(-1'000'000'000)).recent_sends.empty());
}

inline void check_callbacks(const store_factory& open, const std::string& ws) {
    auto st = open();
    std::vector<store_op> ops;
    for (int i = 0; i < 10; ++i) {
        ops.push_back(store_ops::put_suppression{sample_suppression(
            suppression_kind::address, "u" + std::to_string(i) + "@example.com")});
        ops.push_back(reserve(sample_send(static_cast<std::uint64_t>(i + 1))));
    }
    for (const auto& r : sample_audit(10)) ops.push_back(store_ops::append_audit{r});
    commit(*st, ws, ops);

    // An exception thrown by a callback reaches the caller as it was thrown,
    // and the store stays usable.
    struct stop {};
    int seen = 0;
    CHECK_THROWS_AS(st->for_each_suppression(ws,
                                             [&](const suppression_entry&) {
                                                 if (++seen == 3) throw stop{};
                                             }),
                    stop);
    CHECK_THROWS_AS(st->for_each_send(ws, at_seconds(-1), at_seconds(1),
                                      [](const ledger_row&) { throw std::runtime_error("x"); }),
                    std::runtime_error);
    CHECK_THROWS_AS(st->for_each_audit(ws, 1, [](const audit_record&) { throw stop{}; }), stop);
    CHECK(all_suppressions(*st, ws).size() == 10);
    CHECK(sends_between(*st, ws, at_seconds(-1), at_seconds(1)).size() == 10);
    CHECK(all_audit(*st, ws).size() == 10);
    const auto id = reserve_new(*st, ws, sample_send(11));
    CHECK(st->find_send(ws, id));
}

// ---------------------------------------------------------------------------
// Randomised check against an in-memory model of the store's contract.

class store_model {
public:
    using object_key = std::pair<std::string, std::string>;
    using suppression_key = std::pair<suppression_kind, std::string>;
    /// The change seq of the commit being applied, not known until it returns.
    static constexpr std::uint64_t pending = std::numeric_limits<std::uint64_t>::max();

    struct use {
        time_point at;
        std::uint64_t send = 0;
    };

    /// The outcome the store must give; for a new send, send_id stays 0.
    reserve_outcome expect(const store_ops::reserve_send& op) const {
        reserve_outcome out;
        const ledger_row& row = op.row;
        std::uint64_t self = 0;
        if (row.id == 0) {
            if (!row.idempotency_key.empty()) {
                for (const auto& [id, r] : sends_) {
                    if (r.idempotency_key == row.idempotency_key) {
                        out.status = reserve_status::duplicate;
                        out.existing = std::make_shared<const ledger_row>(r);
                        return out;
                    }
                }
            }
        } else {
            const auto it = sends_.find(row.id);
            if (it == sends_.end() || it->second.owner != row.owner ||
                it->second.state != send_state::reserved) {
                out.status = reserve_status::not_owner;
                return out;
            }
            self = row.id;
        }
        for (std::size_t c = 0; c < op.claims.size(); ++c) {
            const cap_claim& cl = op.claims[c];
            out.claim = c;
            if (!cl.object_kind.empty()) {
                const auto it = object_changed_.find({cl.object_kind, cl.object_id});
                if (it != object_changed_.end() && it->second > op.config_seq) {
                    out.status = reserve_status::stale_config;
                    return out;
                }
            }
            if (cl.gap > duration{0}) {
                const auto it = gap_until_.find(cl.key);
                if (it != gap_until_.end() && it->second > row.reserved_at) {
                    out.status = reserve_status::gap;
                    out.until = it->second;
                    return out;
                }
            }
            const auto uses = uses_.find(cl.key);
            for (std::size_t w = 0; w < cl.windows.size(); ++w) {
                std::vector<time_point> ats;
                if (uses != uses_.end())
                    for (const auto& u : uses->second)
                        if (u.send != self && u.at >= cl.windows[w].floor) ats.push_back(u.at);
                const auto max = cl.windows[w].max;
                if (ats.size() >= max) {
                    std::sort(ats.begin(), ats.end());
                    out.status = reserve_status::cap_reached;
                    out.window = w;
                    out.until = max == 0 ? time_point{} : ats[ats.size() - max];
                    return out;
                }
            }
        }
        out.claim = 0;
        out.status = reserve_status::reserved;
        out.send_id = self;
        return out;
    }

    /// Records a reservation that fitted, under the id the store gave.
    void reserved(const store_ops::reserve_send& op, std::uint64_t id) {
        if (op.row.id == 0) {
            ledger_row r = op.row;
            r.id = id;
            sends_[id] = r;
        } else {
            release(id);
            ledger_row& r = sends_.at(id);
            r.mailbox = op.row.mailbox;
            r.provider = op.row.provider;
            r.pool = op.row.pool;
            r.message_id = op.row.message_id;
            r.attempt = op.row.attempt;
            r.reserved_at = op.row.reserved_at;
            r.updated_at = op.row.updated_at;
            r.state = op.row.state;
            r.detail = op.row.detail;
        }
        for (const auto& cl : op.claims) {
            uses_[cl.key].push_back({op.row.reserved_at, id});
            // A claim that passed its gap check starts at or after the
            // current gap_until, so this never moves it back.
            if (cl.gap > duration{0}) gap_until_[cl.key] = op.row.reserved_at + cl.gap;
        }
    }

    bool update_applies(const ledger_row& row) const {
        const auto it = sends_.find(row.id);
        return it != sends_.end() && it->second.owner == row.owner &&
               (it->second.state == send_state::reserved ||
                it->second.state == send_state::unknown);
    }

    void update(const ledger_row& row) {
        ledger_row& r = sends_.at(row.id);
        r.state = row.state;
        r.updated_at = row.updated_at;
        r.provider_message_id = row.provider_message_id;
        r.detail = row.detail;
        if (row.state == send_state::failed) release(row.id);
    }

    audit_record append(audit_record record, std::uint64_t change_seq) {
        record.change_seq = change_seq;
        audit_.push_back(chained(record, audit_.empty() ? nullptr : &audit_.back()));
        return audit_.back();
    }

    void put(const stored_object& o) {
        objects_[{o.kind, o.id}] = o.json;
        object_changed_[{o.kind, o.id}] = pending;
    }
    void erase(const std::string& kind, const std::string& id) {
        objects_.erase({kind, id});
        object_changed_[{kind, id}] = pending;
    }
    void put(const suppression_entry& e) {
        suppressions_[{e.kind, e.value}] = e;
        suppression_changed_[{e.kind, e.value}] = pending;
    }
    void erase(suppression_kind kind, const std::string& value) {
        suppressions_.erase({kind, value});
        suppression_changed_[{kind, value}] = pending;
    }

    /// Gives the changes of the commit just applied their seq.
    void published(std::uint64_t seq) {
        for (auto& [k, s] : object_changed_)
            if (s == pending) s = seq;
        for (auto& [k, s] : suppression_changed_)
            if (s == pending) s = seq;
        change_seq_ = seq;
        published_.push_back(seq);
    }

    std::size_t recover(const std::set<std::uint64_t>& gone, time_point now,
                        const std::string& detail) {
        std::size_t n = 0;
        for (auto& [id, r] : sends_) {
            if (r.state == send_state::reserved && (r.owner == 0 || gone.count(r.owner))) {
                r.state = send_state::unknown;
                r.detail = detail;
                r.updated_at = now;
                ++n;
            }
        }
        return n;
    }

    /// Gaps stay: a gap is the key's, not its uses'.
    void purge(time_point before) {
        for (auto& [key, uses] : uses_)
            std::erase_if(uses, [&](const use& u) { return u.at < before; });
    }

    store_snapshot snapshot(time_point since) const {
        store_snapshot s;
        for (const auto& [k, json] : objects_) s.objects.push_back({k.first, k.second, json});
        for (const auto& [k, e] : suppressions_) s.suppressions.push_back(e);
        for (const auto& [id, r] : sends_)
            if (r.reserved_at >= since || r.state == send_state::reserved)
                s.recent_sends.push_back(r);
        s.change_seq = change_seq_;
        return s;
    }

    change_set changes_since(std::uint64_t after) const {
        change_set c;
        for (const auto& [k, seq] : object_changed_) {
            if (seq <= after) continue;
            c.seq = std::max(c.seq, seq);
            const auto it = objects_.find(k);
            if (it != objects_.end())
                c.objects.push_back({k.first, k.second, it->second});
            else
                c.deleted_objects.push_back(k);
        }
        for (const auto& [k, seq] : suppression_changed_) {
            if (seq <= after) continue;
            c.seq = std::max(c.seq, seq);
            const auto it = suppressions_.find(k);
            if (it != suppressions_.end())
                c.suppressions.push_back(it->second);
            else
                c.deleted_suppressions.push_back(k);
        }
        return c;
    }

    const std::map<std::uint64_t, ledger_row>& sends() const { return sends_; }
    const std::vector<audit_record>& audit() const { return audit_; }
    const std::map<suppression_key, suppression_entry>& suppressions() const {
        return suppressions_;
    }
    const std::map<object_key, std::string>& objects() const { return objects_; }
    const std::vector<std::uint64_t>& published_seqs() const { return published_; }
    std::uint64_t change_seq() const { return change_seq_; }

private:
    /// Releases the send's uses; the gaps they started keep running.
    void release(std::uint64_t id) {
        for (auto& [key, uses] : uses_)
            std::erase_if(uses, [&](const use& u) { return u.send == id; });
    }

    std::map<object_key, std::string> objects_;
    std::map<object_key, std::uint64_t> object_changed_;
    std::map<suppression_key, suppression_entry> suppressions_;
    std::map<suppression_key, std::uint64_t> suppression_changed_;
    std::map<std::uint64_t, ledger_row> sends_;
    std::map<std::string, std::vector<use>> uses_;
    std::map<std::string, time_point> gap_until_;
    std::vector<audit_record> audit_;
    std::uint64_t change_seq_ = 0;
    std::vector<std::uint64_t> published_;
};

/// The seed from MAILERS_TEST_SEED, or a random one.
inline std::uint64_t test_seed() {
    if (const char* s = std::getenv("MAILERS_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    return (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

/// Compares one workspace's whole state with the model.
inline void check_against_model(store& st, const std::string& ws, const store_model& model,
                                const std::map<std::uint64_t, member_record>& members,
                                std::mt19937_64& rng) {
    INFO("workspace " << ws);
    auto pick = [&](std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng);
    };
    for (const std::int64_t since : {std::int64_t{-100'000}, std::int64_t(pick(1200)) - 100})
        check_same_snapshot(st.load(ws, at_seconds(since)), model.snapshot(at_seconds(since)));

    std::vector<suppression_entry> expected_supp;
    for (const auto& [k, e] : model.suppressions()) expected_supp.push_back(e);
    check_same_list(all_suppressions(st, ws), expected_supp, "for_each_suppression");

    const auto audit = all_audit(st, ws);
    check_same_list(audit, model.audit(), "for_each_audit");
    CHECK_FALSE(verify_audit_chain(audit));

    for (const auto& [id, r] : model.sends()) {
        INFO("send " << id);
        CHECK(st.find_send(ws, id) == r);
    }
    const auto from = at_seconds(static_cast<std::int64_t>(pick(1200)) - 100);
    const auto to = from + std::chrono::seconds{static_cast<std::int64_t>(pick(600))};
    std::vector<ledger_row> expected_range;
    for (const auto& [id, r] : model.sends())
        if (r.reserved_at >= from && r.reserved_at < to) expected_range.push_back(r);
    check_same_list(sends_between(st, ws, from, to), expected_range, "for_each_send");

    const auto& seqs = model.published_seqs();
    std::vector<std::uint64_t> afters = {0};
    if (!seqs.empty()) afters.push_back(seqs[pick(seqs.size())]);
    for (const auto after : afters) {
        INFO("changes_since " << after);
        const auto changes = st.changes_since(ws, after);
        check_same_changes(changes, model.changes_since(after));
        check_caught_up(st, ws, changes.empty() ? model.change_seq() : changes.seq);
    }

    auto actual_members = st.members(ws);
    std::sort(actual_members.begin(), actual_members.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    REQUIRE(actual_members.size() == members.size());
    std::size_t i = 0;
    for (const auto& [id, m] : members) {
        const auto& a = actual_members[i++];
        CHECK(a.id == id);
        CHECK(a.info.host == m.info.host);
        CHECK(a.info.pid == m.info.pid);
        CHECK(a.info.name == m.info.name);
        CHECK(a.acked_seq == m.acked_seq);
        CHECK(a.live);
    }
}

inline void check_random_against_model(const store_factory& open, const std::string& prefix,
                                       std::uint64_t seed, int batches = 300) {
    INFO("seed = " << seed << " (rerun with MAILERS_TEST_SEED=" << seed << ")");
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng);
    };
    auto chance = [&](int percent) { return pick(100) < static_cast<std::uint64_t>(percent); };

    struct workspace_state {
        std::string name;
        store_model model;
        std::map<std::uint64_t, member_record> members;
        std::set<std::uint64_t> send_ids;    // every id the store gave
        std::set<std::uint64_t> member_ids;  // every member id the store gave
        std::set<std::uint64_t> gone;        // recovered members
    };
    workspace_state wss[2];
    wss[0].name = prefix + "-1";
    wss[1].name = prefix + "-2";
    auto st = open();

    auto attach = [&](workspace_state& w) {
        const member_info info{"host-" + std::to_string(pick(3)) + ".example",
                               static_cast<std::int64_t>(1000 + pick(9000)),
                               "worker-" + std::to_string(pick(100))};
        const auto id = st->attach(w.name, info, long_lease);
        REQUIRE(id != 0);
        REQUIRE_MESSAGE(w.member_ids.insert(id).second, "member id " << id << " given twice");
        w.members[id] = member_record{id, info, 0, true};
    };
    for (auto& w : wss) {
        attach(w);
        attach(w);
    }

    std::map<reserve_status, int> seen;
    int not_applied = 0, failed_commits = 0;
    std::uint64_t next_key = 0;

    for (int b = 0; b < batches; ++b) {
        INFO("batch " << b);
        workspace_state& w = wss[pick(2)];
        store_model& model = w.model;
        const std::int64_t now = b * 3;

        // Between batches: housekeeping and membership.
        if (chance(4)) {
            const auto before = at_seconds(now - 60 - static_cast<std::int64_t>(pick(120)));
            st->purge_cap_uses(w.name, before);
            model.purge(before);
        }
        if (chance(4) && !w.members.empty()) {
            auto it = w.members.begin();
            std::advance(it, static_cast<long>(pick(w.members.size())));
            const std::uint64_t dead[] = {it->first};
            const std::string detail = "recovered in batch " + std::to_string(b);
            const std::size_t expected = model.recover({it->first}, at_seconds(now), detail);
            CHECK(st->recover(w.name, dead, at_seconds(now), detail) == expected);
            w.gone.insert(it->first);
            w.members.erase(it);
            attach(w);
        }
        if (chance(5)) {
            auto it = w.members.begin();
            std::advance(it, static_cast<long>(pick(w.members.size())));
            const auto acked = pick(1000);
            CHECK(st->renew(w.name, it->first, long_lease, acked));
            it->second.acked_seq = acked;
        }
        if (chance(2) && !w.gone.empty())
            CHECK_FALSE(st->renew(w.name, *w.gone.begin(), long_lease, 1));

        auto random_time = [&] {
            return at_seconds(now + static_cast<std::int64_t>(pick(40)) - 20);
        };
        auto owners = [&] {
            std::vector<std::uint64_t> v = {0};
            for (const auto& [id, m] : w.members) v.push_back(id);
            return v;
        }();
        auto random_owner = [&] { return owners[pick(owners.size())]; };
        std::set<store_model::object_key> objects;
        for (const auto& [k, json] : model.objects()) objects.insert(k);
        std::set<store_model::suppression_key> suppressions;
        for (const auto& [k, e] : model.suppressions()) suppressions.insert(k);
        std::set<std::uint64_t> touched;

        auto random_claims = [&](time_point at) {
            static const char* keys[] = {"mailbox:m0",  "mailbox:m1",  "mailbox:m2",
                                         "provider:p0", "provider:p1", "recipient_domain:d0"};
            std::vector<cap_claim> claims;
            std::vector<std::size_t> order = {0, 1, 2, 3, 4, 5};
            std::shuffle(order.begin(), order.end(), rng);
            const auto n = pick(4);
            for (std::uint64_t i = 0; i < n; ++i) {
                cap_claim c;
                c.key = keys[order[i]];
                const auto windows = pick(3);
                for (std::uint64_t k = 0; k < windows; ++k) {
                    time_point floor;
                    switch (pick(3)) {
                        case 0:
                            floor = at - std::chrono::seconds{30};
                            break;
                        case 1:
                            floor = at - std::chrono::seconds{90};
                            break;
                        default: {
                            // a calendar window: periods of 60 s
                            const auto s = std::chrono::floor<std::chrono::seconds>(at)
                                               .time_since_epoch()
                                               .count();
                            floor = time_point{std::chrono::seconds{s - ((s % 60) + 60) % 60}};
                        }
                    }
                    c.windows.push_back(window(floor, chance(3) ? 0 : 1 + pick(5)));
                }
                if (chance(20))
                    c.gap = std::chrono::seconds{2 + static_cast<std::int64_t>(pick(30))};
                if (chance(25)) {
                    c.object_kind = chance(50) ? "mailbox" : "quota";
                    c.object_id = "o" + std::to_string(pick(5));
                }
                claims.push_back(std::move(c));
            }
            return claims;
        };
        auto config_seq = [&] {
            const auto& seqs = model.published_seqs();
            if (seqs.empty() || chance(85)) return model.change_seq();
            return chance(20) ? 0 : seqs[pick(seqs.size())];
        };
        auto random_send = [&]() -> const ledger_row* {
            if (model.sends().empty()) return nullptr;
            auto it = model.sends().begin();
            std::advance(it, static_cast<long>(pick(model.sends().size())));
            return &it->second;
        };

        std::vector<store_op> ops;
        const bool bulk = chance(4);
        const auto n = bulk ? 50 + pick(100) : 1 + pick(chance(10) ? 30 : 8);
        for (std::uint64_t i = 0; i < n; ++i) {
            // A bulk batch is an import: suppression puts and deletes only.
            const auto kind = bulk ? (chance(75) ? 12 + pick(8) : 20 + pick(4)) : pick(100);
            if (kind < 8) {
                const store_model::object_key k{chance(40)   ? "mailbox"
                                                : chance(50) ? "quota"
                                                             : "pool",
                                                "o" + std::to_string(pick(5))};
                ops.push_back(store_ops::put_object{
                    {k.first, k.second, R"({"v":)" + std::to_string(pick(1000)) + "}"}});
                objects.insert(k);
            } else if (kind < 12) {
                // Deletes only what exists: whether deleting nothing is a
                // change is left open.
                if (objects.empty()) continue;
                auto it = objects.begin();
                std::advance(it, static_cast<long>(pick(objects.size())));
                ops.push_back(store_ops::delete_object{it->first, it->second});
                objects.erase(it);
            } else if (kind < 20) {
                suppression_entry e;
                e.kind = chance(70) ? suppression_kind::address : suppression_kind::domain;
                e.value = e.kind == suppression_kind::address
                              ? "u" + std::to_string(pick(40)) + "@d" + std::to_string(pick(3)) +
                                    ".example"
                              : "d" + std::to_string(pick(40)) + ".example";
                e.reason = static_cast<suppression_reason>(pick(5));
                e.source = chance(50) ? "api" : "webhook-" + std::to_string(pick(3));
                e.created_at = random_time();
                suppressions.insert({e.kind, e.value});
                ops.push_back(store_ops::put_suppression{e});
            } else if (kind < 24) {
                if (suppressions.empty()) continue;
                auto it = suppressions.begin();
                std::advance(it, static_cast<long>(pick(suppressions.size())));
                ops.push_back(store_ops::delete_suppression{it->first, it->second});
                suppressions.erase(it);
            } else if (kind < 56) {
                const auto at = random_time();
                std::string key;
                if (chance(60)) key = "key-" + std::to_string(next_key++);
                if (const auto* r = random_send(); r && chance(12)) key = r->idempotency_key;
                ledger_row row = sample_send(pick(1000), key, at, random_owner());
                row.updated_at =
                    at + std::chrono::milliseconds{static_cast<std::int64_t>(pick(5000))};
                if (chance(20)) row.detail = "note " + std::to_string(pick(100));
                ops.push_back(reserve(row, random_claims(at), config_seq()));
            } else if (kind < 68) {
                // A further attempt: mostly of a send its owner still holds.
                const ledger_row* base = random_send();
                if (!base) continue;
                ledger_row row = *base;
                if (chance(60)) {
                    for (const auto& [id, r] : model.sends()) {
                        if (r.state == send_state::reserved && r.owner != 0 &&
                            w.members.count(r.owner) && chance(30)) {
                            row = r;
                            break;
                        }
                    }
                }
                if (chance(8)) row.owner = random_owner();
                if (chance(3)) row.id += 1'000'000;
                row.state = send_state::reserved;
                row.attempt += 1;
                row.mailbox = "rep" + std::to_string(pick(9)) + "@brand.example";
                row.provider = chance(50) ? "ses-eu" : "smtp-backup";
                row.pool = chance(50) ? "outbound" : "backup";
                row.message_id = "m" + std::to_string(pick(1u << 30)) + "@mailers.brand.example";
                row.reserved_at = random_time();
                row.updated_at = row.reserved_at;
                row.detail = chance(50) ? "" : "failover " + std::to_string(pick(100));
                if (chance(30)) row.provider_message_id = "ignored";
                if (chance(30)) row.recipient = "ignored@example.com";
                if (chance(30)) row.idempotency_key = "ignored-" + std::to_string(pick(10));
                ops.push_back(reserve(row, random_claims(row.reserved_at), config_seq()));
                touched.insert(row.id);
            } else if (kind < 88) {
                const ledger_row* base = random_send();
                if (!base) continue;
                ledger_row row = *base;
                if (chance(7)) row.owner = random_owner();
                if (chance(3)) row.id += 1'000'000;
                const send_state states[] = {send_state::accepted, send_state::failed,
                                             send_state::unknown};
                row.state = states[pick(3)];
                row.updated_at = random_time();
                row.provider_message_id = chance(50) ? "" : "pm-" + std::to_string(pick(1u << 30));
                row.detail = chance(50) ? "" : "detail " + std::to_string(pick(100));
                if (chance(20)) row.mailbox = "ignored@brand.example";
                if (chance(20)) row.reserved_at = random_time();
                if (chance(20)) row.idempotency_key = "ignored";
                if (chance(20)) row.attempt += 5;
                ops.push_back(store_ops::update_send{row});
                touched.insert(row.id);
            } else {
                audit_record r = sample_audit(1, pick(1000))[0];
                r.actor = "actor-" + std::to_string(pick(5));
                r.at = random_time();
                ops.push_back(store_ops::append_audit{r});
            }
        }

        // Now and then, a batch that must fail: an update back to
        // `reserved` of a row no other op of the batch touches.
        bool must_fail = false;
        if (chance(4)) {
            for (const auto& [id, r] : model.sends()) {
                if (!touched.count(id) && model.update_applies(r) && chance(50)) {
                    ledger_row back = r;
                    back.detail = "back to reserved";
                    back.state = send_state::reserved;
                    ops.insert(ops.begin() + static_cast<long>(pick(ops.size() + 1)),
                               store_ops::update_send{back});
                    must_fail = true;
                    break;
                }
            }
        }
        if (ops.empty()) continue;

        if (must_fail) {
            ++failed_commits;
            const auto before = st->load(w.name, at_seconds(-100'000));
            commit_must_fail(*st, w.name, ops);
            check_same_snapshot(st->load(w.name, at_seconds(-100'000)), before);
            check_caught_up(*st, w.name, model.change_seq());
        } else {
            const commit_result res = commit(*st, w.name, ops);
            bool changes = false;
            // Every audit record of a commit that publishes a change
            // carries it, wherever it stands among the ops.
            const bool publishes = std::any_of(ops.begin(), ops.end(), [](const store_op& op) {
                return std::holds_alternative<store_ops::put_object>(op) ||
                       std::holds_alternative<store_ops::delete_object>(op) ||
                       std::holds_alternative<store_ops::put_suppression>(op) ||
                       std::holds_alternative<store_ops::delete_suppression>(op);
            });
            for (std::size_t i = 0; i < ops.size(); ++i) {
                INFO("op " << i);
                const op_result& got = res.ops[i];
                if (const auto* o = std::get_if<store_ops::reserve_send>(&ops[i])) {
                    const reserve_outcome want = model.expect(*o);
                    const reserve_outcome& have = got.reservation;
                    ++seen[have.status];
                    REQUIRE(have.status == want.status);
                    switch (want.status) {
                        case reserve_status::reserved:
                            if (o->row.id == 0) {
                                REQUIRE(have.send_id != 0);
                                REQUIRE_MESSAGE(w.send_ids.insert(have.send_id).second,
                                                "send id " << have.send_id << " given twice");
                            } else {
                                REQUIRE(have.send_id == o->row.id);
                            }
                            model.reserved(*o, have.send_id);
                            break;
                        case reserve_status::duplicate:
                            REQUIRE(have.existing != nullptr);
                            CHECK(*have.existing == *want.existing);
                            break;
                        case reserve_status::cap_reached:
                            CHECK(have.claim == want.claim);
                            CHECK(have.window == want.window);
                            CHECK(have.until == want.until);
                            break;
                        case reserve_status::gap:
                            CHECK(have.claim == want.claim);
                            CHECK(have.until == want.until);
                            break;
                        case reserve_status::stale_config:
                            CHECK(have.claim == want.claim);
                            break;
                        case reserve_status::not_owner:
                            break;
                    }
                } else if (const auto* u = std::get_if<store_ops::update_send>(&ops[i])) {
                    const bool applies = model.update_applies(u->row);
                    CHECK(got.applied == applies);
                    if (applies)
                        model.update(u->row);
                    else
                        ++not_applied;
                } else if (const auto* a = std::get_if<store_ops::append_audit>(&ops[i])) {
                    CHECK(got.audit_seq ==
                          model.append(a->record, publishes ? res.change_seq : 0).seq);
                } else {
                    changes = true;
                    std::visit(
                        [&](const auto& op) {
                            using T = std::decay_t<decltype(op)>;
                            if constexpr (std::is_same_v<T, store_ops::put_object>)
                                model.put(op.object);
                            else if constexpr (std::is_same_v<T, store_ops::delete_object>)
                                model.erase(op.kind, op.id);
                            else if constexpr (std::is_same_v<T, store_ops::put_suppression>)
                                model.put(op.entry);
                            else if constexpr (std::is_same_v<T, store_ops::delete_suppression>)
                                model.erase(op.kind, op.value);
                        },
                        ops[i]);
                }
            }
            if (changes) {
                REQUIRE(res.change_seq > model.change_seq());
                model.published(res.change_seq);
            } else {
                CHECK(res.change_seq == 0);
            }
        }

        const time_point since = at_seconds(now - static_cast<std::int64_t>(pick(60)));
        check_same_snapshot(st->load(w.name, since), model.snapshot(since));

        if (chance(5)) {
            st.reset();
            st = open();
            for (auto& ws : wss) check_against_model(*st, ws.name, ws.model, ws.members, rng);
        } else if (b % 10 == 9 || b == batches - 1) {
            for (auto& ws : wss) check_against_model(*st, ws.name, ws.model, ws.members, rng);
        }
    }

    // The generator must reach every outcome to mean anything.
    for (const auto s :
         {reserve_status::reserved, reserve_status::duplicate, reserve_status::cap_reached,
          reserve_status::gap, reserve_status::stale_config, reserve_status::not_owner}) {
        INFO("outcome " << to_string(s));
        CHECK(seen[s] > 0);
    }
    CHECK(not_applied > 0);
    CHECK(failed_commits > 0);
}

// ---------------------------------------------------------------------------
// Races: several handles over one database, used from several threads.

inline constexpr std::size_t race_handles = 2;
inline constexpr std::size_t race_threads = 6;

inline std::vector<std::shared_ptr<store>> open_handles(const store_factory& open) {
    std::vector<std::shared_ptr<store>> handles;
    for (std::size_t i = 0; i < race_handles; ++i) handles.push_back(open());
    return handles;
}

inline void check_race_cap(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    constexpr std::size_t per_thread = 8;
    constexpr std::uint64_t max = 11;
    std::atomic<std::size_t> reserved{0}, refused{0}, other{0};
    std::mutex mu;
    std::vector<std::uint64_t> ids;
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        for (std::size_t i = 0; i < per_thread; ++i) {
            const auto n = t * per_thread + i;
            const std::vector<store_op> ops = {
                reserve(sample_send(n, "", at_seconds(static_cast<std::int64_t>(n))),
                        {cap("provider:shared", max), cap("mailbox:" + std::to_string(t), 100)})};
            const auto out = st.commit(ws, ops).ops.at(0).reservation;
            if (out.status == reserve_status::reserved) {
                ++reserved;
                std::lock_guard lock(mu);
                ids.push_back(out.send_id);
            } else if (out.status == reserve_status::cap_reached) {
                ++refused;
            } else {
                ++other;
            }
        }
    });
    CHECK(reserved.load() == max);
    CHECK(refused.load() == race_threads * per_thread - max);
    CHECK(other.load() == 0);
    CHECK(std::set<std::uint64_t>(ids.begin(), ids.end()).size() == ids.size());
    auto st = open();
    CHECK(st->load(ws, at_seconds(-100'000)).recent_sends.size() == max);
}

inline void check_race_idempotency(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    for (int round = 0; round < 5; ++round) {
        INFO("round " << round);
        const std::string key = "race-key-" + std::to_string(round);
        std::vector<reserve_outcome> outcomes(race_threads);
        run_threads(race_threads, [&](std::size_t t) {
            const std::vector<store_op> ops = {reserve(sample_send(t, key))};
            outcomes[t] = handles[t % handles.size()]->commit(ws, ops).ops.at(0).reservation;
        });
        std::uint64_t winner = 0;
        std::size_t winners = 0;
        for (const auto& o : outcomes) {
            if (o.status == reserve_status::reserved) {
                ++winners;
                winner = o.send_id;
            }
        }
        REQUIRE(winners == 1);
        for (const auto& o : outcomes) {
            if (o.status == reserve_status::reserved) continue;
            CHECK(o.status == reserve_status::duplicate);
            REQUIRE(o.existing != nullptr);
            CHECK(o.existing->id == winner);
        }
    }
}

inline void check_race_audit(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    constexpr std::size_t per_thread = 10;
    std::mutex mu;
    std::vector<std::uint64_t> seqs;
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        for (std::size_t i = 0; i < per_thread; i += (i % 3 == 0 ? 2 : 1)) {
            std::vector<store_op> ops;
            const std::size_t n = i % 3 == 0 ? 2 : 1;
            for (const auto& r : sample_audit(n, t * 100 + i))
                ops.push_back(store_ops::append_audit{r});
            const auto res = st.commit(ws, ops);
            std::lock_guard lock(mu);
            for (const auto& o : res.ops) seqs.push_back(o.audit_seq);
        }
    });
    std::sort(seqs.begin(), seqs.end());
    REQUIRE(!seqs.empty());
    for (std::size_t i = 0; i < seqs.size(); ++i) CHECK(seqs[i] == i + 1);
    auto st = open();
    const auto chain = all_audit(*st, ws);
    CHECK(chain.size() == seqs.size());
    std::uint64_t bad = 0;
    CHECK_FALSE(verify_audit_chain(chain, &bad));
    INFO("first bad seq " << bad);
}

inline void check_race_change_feed(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    store& writer = *handles[0];
    store& reader = *handles[1];
    constexpr std::size_t per_thread = 15;
    std::mutex mu;
    std::vector<std::uint64_t> published;
    std::set<std::string> seen;
    std::vector<std::uint64_t> read_seqs;
    std::atomic<bool> done{false};
    std::exception_ptr reader_failure;
    std::uint64_t after = 0;
    auto poll = [&] {
        const auto c = reader.changes_since(ws, after);
        if (c.empty()) return;
        read_seqs.push_back(c.seq);
        after = c.seq;
        for (const auto& e : c.suppressions) seen.insert(e.value);
    };
    std::thread poller([&] {
        try {
            while (!done.load()) {
                poll();
                std::this_thread::sleep_for(std::chrono::milliseconds{1});
            }
        } catch (...) {
            reader_failure = std::current_exception();
        }
    });
    try {
        run_threads(race_threads, [&](std::size_t t) {
            for (std::size_t i = 0; i < per_thread; ++i) {
                const std::vector<store_op> ops = {store_ops::put_suppression{sample_suppression(
                    suppression_kind::address,
                    "t" + std::to_string(t) + "-" + std::to_string(i) + "@example.com")}};
                const auto seq = writer.commit(ws, ops).change_seq;
                std::lock_guard lock(mu);
                published.push_back(seq);
            }
        });
    } catch (...) {
        done = true;
        poller.join();
        throw;
    }
    done = true;
    poller.join();
    if (reader_failure) std::rethrow_exception(reader_failure);
    poll();

    CHECK(std::set<std::uint64_t>(published.begin(), published.end()).size() == published.size());
    CHECK(std::find(published.begin(), published.end(), 0) == published.end());
    for (std::size_t i = 1; i < read_seqs.size(); ++i) CHECK(read_seqs[i] > read_seqs[i - 1]);
    // Reading on from each seq the reader saw, it missed no commit.
    CHECK(seen.size() == race_threads * per_thread);
    CHECK(after == *std::max_element(published.begin(), published.end()));
}

inline void check_race_ids(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    constexpr std::size_t per_thread = 12;
    std::mutex mu;
    std::map<std::uint64_t, std::string> ids;  // id -> recipient
    std::size_t collisions = 0;
    std::vector<std::uint64_t> members;
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        const auto member = st.attach(ws, sample_member("race-" + std::to_string(t)), long_lease);
        {
            std::lock_guard lock(mu);
            members.push_back(member);
        }
        for (std::size_t i = 0; i < per_thread; i += 2) {
            const auto n = 1000 * (t + 1) + i;
            const std::vector<store_op> ops = {
                reserve(sample_send(n, "", at_seconds(0), member)),
                reserve(sample_send(n + 1, "", at_seconds(0), member))};
            const auto res = st.commit(ws, ops);
            std::lock_guard lock(mu);
            for (std::size_t k = 0; k < 2; ++k) {
                const auto id = res.ops.at(k).reservation.send_id;
                if (!ids.emplace(id, sample_send(n + k).recipient).second) ++collisions;
            }
        }
    });
    CHECK(collisions == 0);
    CHECK(ids.count(0) == 0);
    CHECK(std::set<std::uint64_t>(members.begin(), members.end()).size() == race_threads);
    CHECK(std::find(members.begin(), members.end(), 0) == members.end());
    auto st = open();
    for (const auto& [id, recipient] : ids) CHECK(stored_send(*st, ws, id).recipient == recipient);
}

// ---------------------------------------------------------------------------
// The send queue.

/// A queued send whose fields derive from `n`, not before `not_before`.
inline queued_send sample_queued(std::uint64_t n, std::string key = {},
                                 time_point not_before = at_seconds(0),
                                 std::string origin = "api") {
    queued_send q;
    q.idempotency_key = std::move(key);
    q.pool = "outbound";
    q.mailbox = n % 3 == 0 ? "rep" + std::to_string(n % 7) + "@brand.example" : "";
    q.recipient_domain = "example" + std::to_string(n % 5) + ".com";
    // Opaque bytes: a NUL and a byte above 0x7f must come back as given.
    q.request = std::string("{\"to\":\"user") + std::to_string(n) + "@example.com\"}" +
                std::string(1, '\0') + "\xff";
    q.origin = std::move(origin);
    q.enqueued_at = at_seconds(-10);
    q.not_before = not_before;
    q.detail = "queued";
    return q;
}

/// What the store must make of `given` enqueued as `id`.
inline queued_send as_enqueued(queued_send given, std::uint64_t id) {
    given.id = id;
    given.due_at = given.not_before;
    given.state = queue_state::waiting;
    given.checks = 0;
    given.claimed_by = 0;
    given.send_id = 0;
    given.updated_at = given.enqueued_at;
    return given;
}

inline queue_outcome enqueue_one(store& st, std::string_view ws, queued_send item) {
    return commit(st, ws, {store_ops::enqueue{std::move(item)}}).ops[0].queue;
}

/// Enqueues an item that must be new; returns its id.
inline std::uint64_t enqueue_new(store& st, std::string_view ws, queued_send item) {
    const auto out = enqueue_one(st, ws, std::move(item));
    REQUIRE(out.status == enqueue_status::enqueued);
    REQUIRE(out.id != 0);
    return out.id;
}

inline op_result queue_op(store& st, std::string_view ws, store_op op) {
    return commit(st, ws, {std::move(op)}).ops[0];
}

inline std::vector<queued_send> all_queued(store& st, std::string_view ws,
                                           const queue_filter& filter = {}) {
    std::vector<queued_send> out;
    st.for_each_queued(ws, filter, [&](const queued_send& q) { out.push_back(q); });
    return out;
}

inline queued_send stored_queued(store& st, std::string_view ws, std::uint64_t id) {
    auto q = st.find_queued(ws, id);
    REQUIRE_MESSAGE(q.has_value(), "queue item " << id << " is missing");
    return *q;
}

inline std::vector<std::uint64_t> ids_of(const std::vector<queued_send>& items) {
    std::vector<std::uint64_t> out;
    for (const auto& q : items) out.push_back(q.id);
    return out;
}

/// Requires `claim_queued` to refuse `member`.
inline void claim_must_fail(store& st, std::string_view ws, std::uint64_t member, time_point now) {
    try {
        st.claim_queued(ws, member, now, 10);
    } catch (const mailers::exception& e) {
        CHECK(e.code() == make_error_code(errc::store_error));
        const std::string msg = e.diag().message.empty() ? e.what() : e.diag().message;
        CHECK_MESSAGE(msg.find(std::to_string(member)) != std::string::npos,
                      "the refusal names the member: " << msg);
        return;
    }
    FAIL("claim_queued accepted a member without a live lease");
}

inline void check_queue_enqueue(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto a = sample_queued(1, "k-1", at_seconds(100));
    const auto res = commit(*st, ws, {store_ops::enqueue{a}});
    CHECK(res.change_seq == 0);
    REQUIRE(res.ops[0].queue.status == enqueue_status::enqueued);
    const auto id_a = res.ops[0].queue.id;
    REQUIRE(id_a != 0);
    CHECK(res.ops[0].queue.existing == nullptr);
    CHECK(stored_queued(*st, ws, id_a) == as_enqueued(a, id_a));

    // A taken key answers duplicate with the item holding it, whatever else
    // differs, and changes nothing.
    const auto dup = enqueue_one(*st, ws, sample_queued(2, "k-1", at_seconds(5)));
    CHECK(dup.status == enqueue_status::duplicate);
    CHECK(dup.id == id_a);
    REQUIRE(dup.existing != nullptr);
    CHECK(*dup.existing == as_enqueued(a, id_a));

    // Items without a key never collide; ids grow.
    const auto id_b = enqueue_new(*st, ws, sample_queued(3));
    const auto id_c = enqueue_new(*st, ws, sample_queued(4));
    CHECK(id_b > id_a);
    CHECK(id_c > id_b);

    // Within one batch: the second use of a key is a duplicate of the first.
    const auto batch = commit(
        *st, ws,
        {store_ops::enqueue{sample_queued(5, "k-5")}, store_ops::enqueue{sample_queued(6, "k-5")},
         store_ops::enqueue{sample_queued(7, "k-7")}});
    CHECK(batch.ops[0].queue.status == enqueue_status::enqueued);
    CHECK(batch.ops[1].queue.status == enqueue_status::duplicate);
    CHECK(batch.ops[1].queue.id == batch.ops[0].queue.id);
    REQUIRE(batch.ops[1].queue.existing != nullptr);
    CHECK(batch.ops[1].queue.existing->request == sample_queued(5).request);
    CHECK(batch.ops[2].queue.status == enqueue_status::enqueued);
    CHECK(batch.ops[2].queue.id > batch.ops[0].queue.id);
    CHECK(all_queued(*st, ws).size() == 5);

    // Bad input is refused and changes nothing.
    auto no_request = sample_queued(8, "k-8");
    no_request.request.clear();
    commit_must_fail(*st, ws, {store_ops::enqueue{no_request}});
    auto no_time = sample_queued(9, "k-9");
    no_time.not_before = time_point{};
    commit_must_fail(*st, ws, {store_ops::enqueue{no_time}});
    commit_must_fail(
        *st, ws, {store_ops::finish_queued{id_a, 1, queue_state::waiting, 0, "", at_seconds(1)}});
    commit_must_fail(
        *st, ws, {store_ops::finish_queued{id_a, 1, queue_state::claimed, 0, "", at_seconds(1)}});
    CHECK(all_queued(*st, ws).size() == 5);
    CHECK(st->find_queued(ws, 999'999) == std::nullopt);

    // Another workspace has its own keys.
    CHECK(enqueue_one(*st, ws + "-other", sample_queued(1, "k-1")).status ==
          enqueue_status::enqueued);
    CHECK(all_queued(*st, ws + "-other").size() == 1);

    // Reopened, the items are still there.
    st.reset();
    auto again = open();
    CHECK(stored_queued(*again, ws, id_a) == as_enqueued(a, id_a));
}

inline void check_queue_claim(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto m = st->attach(ws, sample_member("claimer"), long_lease);
    // Due at 30, 10, 20, 10, 50 (the two at 10 in id order), one not due.
    std::vector<std::uint64_t> ids;
    for (const std::int64_t t : {30, 10, 20, 10, 50, 500})
        ids.push_back(enqueue_new(*st, ws, sample_queued(ids.size(), "", at_seconds(t))));

    CHECK(st->claim_queued(ws, m, at_seconds(5), 10).empty());
    CHECK(st->claim_queued(ws, m, at_seconds(100), 0).empty());

    const auto now = at_seconds(100);
    const auto first = st->claim_queued(ws, m, now, 3);
    CHECK(ids_of(first) == std::vector<std::uint64_t>{ids[1], ids[3], ids[2]});
    for (const auto& q : first) {
        CHECK(q.state == queue_state::claimed);
        CHECK(q.claimed_by == m);
        CHECK(q.checks == 1);
        CHECK(q.updated_at == now);
        CHECK(stored_queued(*st, ws, q.id) == q);
    }
    // Claimed items are not taken again; the rest come in order.
    const auto second = st->claim_queued(ws, m, now, 10);
    CHECK(ids_of(second) == std::vector<std::uint64_t>{ids[0], ids[4]});
    CHECK(st->claim_queued(ws, m, now, 10).empty());
    CHECK(stored_queued(*st, ws, ids[5]).state == queue_state::waiting);

    // A due time exactly now is due.
    CHECK(ids_of(st->claim_queued(ws, m, at_seconds(500), 10)) ==
          std::vector<std::uint64_t>{ids[5]});

    // Deferred, an item comes back at its new due time, checked once more.
    const auto d = queue_op(*st, ws,
                            store_ops::defer_queued{ids[1], m, at_seconds(700), "cap",
                                                    "mailbox at cap", at_seconds(600)});
    CHECK(d.applied);
    CHECK(st->claim_queued(ws, m, at_seconds(699), 10).empty());
    const auto back = st->claim_queued(ws, m, at_seconds(700), 10);
    REQUIRE(back.size() == 1);
    CHECK(back[0].id == ids[1]);
    CHECK(back[0].checks == 2);
    CHECK(back[0].wait_reason == "cap");

    // Another workspace's member claims nothing here, and its items are its own.
    const auto other = st->attach(ws + "-other", sample_member("other"), long_lease);
    enqueue_new(*st, ws + "-other", sample_queued(1));
    claim_must_fail(*st, ws, other, now);
    CHECK(st->claim_queued(ws + "-other", other, now, 10).size() == 1);
}

inline void check_queue_holder_ops(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto m1 = st->attach(ws, sample_member("one"), long_lease);
    const auto m2 = st->attach(ws, sample_member("two"), long_lease);
    std::vector<std::uint64_t> ids;
    for (std::uint64_t n = 0; n < 5; ++n) ids.push_back(enqueue_new(*st, ws, sample_queued(n)));
    const auto now = at_seconds(100);
    REQUIRE(st->claim_queued(ws, m1, now, 2).size() == 2);  // ids[0], ids[1]

    // Only the claimer defers or finishes; a refusal says where it stood.
    for (const store_op& op :
         {store_op{store_ops::defer_queued{ids[0], m2, now, "cap", "x", now}},
          store_op{store_ops::finish_queued{ids[0], m2, queue_state::done, 7, "x", now}},
          store_op{store_ops::finish_queued{ids[0], 0, queue_state::done, 7, "x", now}},
          store_op{store_ops::cancel_queued{ids[0], "x", now}}}) {
        const auto r = queue_op(*st, ws, op);
        CHECK_FALSE(r.applied);
        CHECK(r.queue.id == ids[0]);
        CHECK(r.queue.state == queue_state::claimed);
    }
    auto held = stored_queued(*st, ws, ids[0]);
    CHECK(held.state == queue_state::claimed);
    CHECK(held.claimed_by == m1);
    // Waiting items are nobody's to defer or finish.
    const auto r_wait = queue_op(*st, ws, store_ops::defer_queued{ids[2], m1, now, "", "", now});
    CHECK_FALSE(r_wait.applied);
    CHECK(r_wait.queue.state == queue_state::waiting);

    // Finished by its claimer: done with its send, then final.
    const auto fin = queue_op(
        *st, ws,
        store_ops::finish_queued{ids[0], m1, queue_state::done, 42, "accepted", at_seconds(101)});
    CHECK(fin.applied);
    CHECK(fin.queue.state == queue_state::claimed);
    auto done = held;
    done.state = queue_state::done;
    done.claimed_by = 0;
    done.send_id = 42;
    done.detail = "accepted";
    done.updated_at = at_seconds(101);
    CHECK(stored_queued(*st, ws, ids[0]) == done);
    for (const store_op& op :
         {store_op{store_ops::defer_queued{ids[0], m1, now, "", "", now}},
          store_op{store_ops::finish_queued{ids[0], m1, queue_state::cancelled, 0, "", now}},
          store_op{store_ops::cancel_queued{ids[0], "x", now}}}) {
        const auto r = queue_op(*st, ws, op);
        CHECK_FALSE(r.applied);
        CHECK(r.queue.state == queue_state::done);
    }
    CHECK(stored_queued(*st, ws, ids[0]) == done);

    // Finished as cancelled by its claimer (a suppressed recipient, say).
    CHECK(
        queue_op(*st, ws,
                 store_ops::finish_queued{ids[1], m1, queue_state::cancelled, 0, "suppressed", now})
            .applied);
    CHECK(stored_queued(*st, ws, ids[1]).state == queue_state::cancelled);
    CHECK(stored_queued(*st, ws, ids[1]).send_id == 0);

    // Deferred by its claimer: waiting again, with the engine's reason.
    REQUIRE(st->claim_queued(ws, m2, now, 1).size() == 1);  // ids[2]
    CHECK(queue_op(*st, ws,
                   store_ops::defer_queued{ids[2], m2, at_seconds(900), "window", "outside hours",
                                           at_seconds(102)})
              .applied);
    const auto deferred = stored_queued(*st, ws, ids[2]);
    CHECK(deferred.state == queue_state::waiting);
    CHECK(deferred.claimed_by == 0);
    CHECK(deferred.due_at == at_seconds(900));
    CHECK(deferred.not_before == at_seconds(0));
    CHECK(deferred.wait_reason == "window");
    CHECK(deferred.detail == "outside hours");
    CHECK(deferred.updated_at == at_seconds(102));
    CHECK(deferred.checks == 1);

    // Cancel: only a waiting item.
    const auto c =
        queue_op(*st, ws, store_ops::cancel_queued{ids[2], "withdrawn", at_seconds(103)});
    CHECK(c.applied);
    CHECK(c.queue.state == queue_state::waiting);
    CHECK(stored_queued(*st, ws, ids[2]).state == queue_state::cancelled);
    CHECK(stored_queued(*st, ws, ids[2]).detail == "withdrawn");
    const auto c2 = queue_op(*st, ws, store_ops::cancel_queued{ids[2], "again", now});
    CHECK_FALSE(c2.applied);
    CHECK(c2.queue.state == queue_state::cancelled);
    const auto missing = queue_op(*st, ws, store_ops::cancel_queued{999'999, "", now});
    CHECK_FALSE(missing.applied);
    CHECK(missing.queue.state == std::nullopt);
    CHECK_FALSE(
        queue_op(*st, ws, store_ops::finish_queued{999'999, m1, queue_state::done, 0, "", now})
            .applied);
    // A cancelled item is never claimed.
    const auto rest = st->claim_queued(ws, m1, at_seconds(1000), 10);
    CHECK(ids_of(rest) == std::vector<std::uint64_t>{ids[3], ids[4]});

    // Several queue ops in one batch, each judged on the state the earlier
    // ones left.
    const auto res = commit(*st, ws,
                            {store_ops::defer_queued{ids[3], m1, at_seconds(0), "gap", "", now},
                             store_ops::cancel_queued{ids[3], "", now},
                             store_ops::finish_queued{ids[4], m1, queue_state::done, 5, "", now},
                             store_ops::finish_queued{ids[4], m1, queue_state::done, 6, "", now}});
    CHECK(res.change_seq == 0);
    CHECK(res.ops[0].applied);
    CHECK(res.ops[1].applied);
    CHECK(res.ops[2].applied);
    CHECK_FALSE(res.ops[3].applied);
    CHECK(res.ops[3].queue.state == queue_state::done);
    CHECK(stored_queued(*st, ws, ids[3]).state == queue_state::cancelled);
    CHECK(stored_queued(*st, ws, ids[4]).send_id == 5);
}

inline void check_queue_dead_member(const store_factory& open, const std::string& ws) {
    auto st = open();
    enqueue_new(*st, ws, sample_queued(1));
    const auto now = at_seconds(100);
    claim_must_fail(*st, ws, 999'999, now);  // never attached

    const auto short_lived = st->attach(ws, sample_member("short"), short_lease);
    const auto detached = st->attach(ws, sample_member("detached"), long_lease);
    const auto recovered = st->attach(ws, sample_member("recovered"), long_lease);
    st->detach(ws, detached);
    const std::uint64_t dead[] = {recovered};
    st->recover(ws, dead, now, "process gone");
    sleep_past_short_lease();
    claim_must_fail(*st, ws, short_lived, now);
    claim_must_fail(*st, ws, detached, now);
    claim_must_fail(*st, ws, recovered, now);
    // Not renewable either: it must attach again, and then claims.
    CHECK_FALSE(st->renew(ws, short_lived, long_lease, 0));
    const auto fresh = st->attach(ws, sample_member("fresh"), long_lease);
    CHECK(st->claim_queued(ws, fresh, now, 10).size() == 1);
}

inline void check_queue_recover(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto a = st->attach(ws, sample_member("a"), long_lease);
    const auto b = st->attach(ws, sample_member("b"), long_lease);
    std::vector<std::uint64_t> ids;
    for (std::uint64_t n = 0; n < 6; ++n)
        ids.push_back(
            enqueue_new(*st, ws, sample_queued(n, "", at_seconds(static_cast<std::int64_t>(n)))));
    const auto now = at_seconds(100);
    REQUIRE(st->claim_queued(ws, a, now, 3).size() == 3);  // ids 0..2
    REQUIRE(st->claim_queued(ws, b, now, 2).size() == 2);  // ids 3, 4
    REQUIRE(
        queue_op(*st, ws, store_ops::finish_queued{ids[0], a, queue_state::done, 9, "sent", now})
            .applied);
    const auto done_before = stored_queued(*st, ws, ids[0]);
    const auto waiting_before = stored_queued(*st, ws, ids[5]);
    const auto b_before = stored_queued(*st, ws, ids[3]);

    const std::uint64_t dead[] = {a};
    st->recover(ws, dead, at_seconds(200), "process gone");
    for (const auto id : {ids[1], ids[2]}) {
        const auto q = stored_queued(*st, ws, id);
        CHECK(q.state == queue_state::waiting);
        CHECK(q.claimed_by == 0);
        CHECK(q.checks == 1);
        CHECK(q.due_at == q.not_before);
        CHECK_FALSE(q.detail.empty());
        CHECK(q.detail != "queued");
    }
    CHECK(stored_queued(*st, ws, ids[0]) == done_before);
    CHECK(stored_queued(*st, ws, ids[5]) == waiting_before);
    CHECK(stored_queued(*st, ws, ids[3]) == b_before);
    // The recovered member's late finish is refused.
    const auto late =
        queue_op(*st, ws, store_ops::finish_queued{ids[1], a, queue_state::done, 3, "", now});
    CHECK_FALSE(late.applied);
    CHECK(late.queue.state == queue_state::waiting);

    // Detaching returns the member's items the same way.
    st->detach(ws, b);
    for (const auto id : {ids[3], ids[4]}) {
        const auto q = stored_queued(*st, ws, id);
        CHECK(q.state == queue_state::waiting);
        CHECK(q.claimed_by == 0);
    }
    // Another member takes them all, oldest due first.
    const auto c = st->attach(ws, sample_member("c"), long_lease);
    CHECK(ids_of(st->claim_queued(ws, c, now, 10)) ==
          std::vector<std::uint64_t>{ids[1], ids[2], ids[3], ids[4], ids[5]});
}

inline void check_queue_all_or_nothing(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto m = st->attach(ws, sample_member("m"), long_lease);
    const auto kept = enqueue_new(*st, ws, sample_queued(1, "kept"));
    REQUIRE(st->claim_queued(ws, m, at_seconds(100), 1).size() == 1);
    const auto waiting = enqueue_new(*st, ws, sample_queued(2, "waiting"));
    const auto before = all_queued(*st, ws);
    const auto counts = st->count_queued(ws);

    auto bad = sample_queued(9);
    bad.request.clear();
    commit_must_fail(
        *st, ws,
        {store_ops::enqueue{sample_queued(3, "fresh")},
         store_ops::finish_queued{kept, m, queue_state::done, 1, "", at_seconds(1)},
         store_ops::cancel_queued{waiting, "", at_seconds(1)}, store_ops::enqueue{bad}});
    commit_must_fail(
        *st, ws,
        {store_ops::enqueue{sample_queued(4, "fresh")},
         store_ops::defer_queued{kept, m, at_seconds(5), "cap", "", at_seconds(1)},
         store_ops::finish_queued{kept, m, queue_state::waiting, 0, "", at_seconds(1)}});
    // Also when a non-queue op of the batch is the one refused.
    ledger_row wrong = sample_send(1);
    wrong.id = 1;
    wrong.state = send_state::reserved;
    commit_must_fail(
        *st, ws, {store_ops::enqueue{sample_queued(5, "fresh")}, store_ops::update_send{wrong}});

    check_same_list(all_queued(*st, ws), before, "queue after failed commits");
    CHECK(st->count_queued(ws) == counts);
    // The key is free: the failed enqueues left no trace of it.
    const auto fresh = enqueue_one(*st, ws, sample_queued(6, "fresh"));
    CHECK(fresh.status == enqueue_status::enqueued);
    CHECK(fresh.id > waiting);
    for (std::uint64_t id = waiting + 1; id < fresh.id; ++id)
        CHECK(st->find_queued(ws, id) == std::nullopt);
}

inline void check_queue_reads(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(st->count_queued(ws) == queue_counts{});
    CHECK(all_queued(*st, ws).empty());
    const auto m = st->attach(ws, sample_member("m"), long_lease);
    std::vector<std::uint64_t> ids;
    for (std::uint64_t n = 0; n < 12; ++n)
        ids.push_back(
            enqueue_new(*st, ws,
                        sample_queued(n, "", at_seconds(static_cast<std::int64_t>(10 * n)),
                                      n % 3 == 0   ? "api"
                                      : n % 3 == 1 ? "sequence:7/" + std::to_string(n)
                                                   : "sequence:70/1")));
    const auto now = at_seconds(1000);
    const auto claimed = st->claim_queued(ws, m, now, 6);  // ids 0..5
    REQUIRE(claimed.size() == 6);
    commit(*st, ws,
           {store_ops::finish_queued{ids[0], m, queue_state::done, 1, "", at_seconds(50)},
            store_ops::finish_queued{ids[1], m, queue_state::done, 2, "", at_seconds(150)},
            store_ops::finish_queued{ids[2], m, queue_state::cancelled, 0, "", at_seconds(60)},
            store_ops::defer_queued{ids[3], m, at_seconds(2000), "cap", "", now},
            store_ops::defer_queued{ids[4], m, at_seconds(5), "window", "", now},
            store_ops::cancel_queued{ids[6], "", at_seconds(70)}});
    // waiting: 3 (cap), 4 (window), 7..11 (""); claimed: 5; done: 0, 1; cancelled: 2, 6.
    queue_counts expected;
    expected.waiting = 7;
    expected.claimed = 1;
    expected.done = 2;
    expected.cancelled = 2;
    expected.waiting_by_reason = {{"", 5}, {"cap", 1}, {"window", 1}};
    expected.next_due = at_seconds(5);
    CHECK(st->count_queued(ws) == expected);

    CHECK(ids_of(all_queued(*st, ws)) == ids);
    queue_filter f;
    f.state = queue_state::waiting;
    CHECK(ids_of(all_queued(*st, ws, f)) ==
          std::vector<std::uint64_t>{ids[3], ids[4], ids[7], ids[8], ids[9], ids[10], ids[11]});
    f = {};
    f.origin_prefix = "sequence:7/";
    CHECK(ids_of(all_queued(*st, ws, f)) ==
          std::vector<std::uint64_t>{ids[1], ids[4], ids[7], ids[10]});
    f.origin_prefix = "sequence:7";
    CHECK(all_queued(*st, ws, f).size() == 8);
    f.state = queue_state::done;
    CHECK(ids_of(all_queued(*st, ws, f)) == std::vector<std::uint64_t>{ids[1]});
    // Paging: after the last id of a page, at most `limit`.
    f = {};
    f.limit = 5;
    std::vector<std::uint64_t> paged;
    for (;;) {
        const auto page = all_queued(*st, ws, f);
        CHECK(page.size() <= 5);
        if (page.empty()) break;
        for (const auto& q : page) paged.push_back(q.id);
        f.after_id = page.back().id;
    }
    CHECK(paged == ids);

    // Purge: finished items last updated before the time go, nothing else.
    CHECK(st->purge_queued(ws, at_seconds(100)) == 3);  // ids 0, 2, 6
    CHECK(ids_of(all_queued(*st, ws, queue_filter{queue_state::done, "", 0, 0})) ==
          std::vector<std::uint64_t>{ids[1]});
    CHECK(st->find_queued(ws, ids[0]) == std::nullopt);
    CHECK(st->count_queued(ws).cancelled == 0);
    CHECK(st->count_queued(ws).waiting == 7);
    CHECK(st->purge_queued(ws, at_seconds(100)) == 0);
    // A purged id is never given again.
    CHECK(enqueue_new(*st, ws, sample_queued(20)) > ids.back());
}

// The queue of one workspace as the store must keep it.
class queue_model {
public:
    queue_outcome enqueue(const queued_send& given, std::uint64_t id) {
        queue_outcome out;
        if (!given.idempotency_key.empty())
            for (const auto& [i, q] : items_)
                if (q.idempotency_key == given.idempotency_key) {
                    out.status = enqueue_status::duplicate;
                    out.id = i;
                    out.existing = std::make_shared<const queued_send>(q);
                    return out;
                }
        items_[id] = as_enqueued(given, id);
        out.id = id;
        return out;
    }
    bool holds(std::uint64_t id, std::uint64_t member) const {
        auto it = items_.find(id);
        return it != items_.end() && it->second.state == queue_state::claimed && member != 0 &&
               it->second.claimed_by == member;
    }
    std::optional<queue_state> state_of(std::uint64_t id) const {
        auto it = items_.find(id);
        if (it == items_.end()) return std::nullopt;
        return it->second.state;
    }
    bool apply(const store_ops::defer_queued& o) {
        if (!holds(o.id, o.member)) return false;
        auto& q = items_[o.id];
        q.state = queue_state::waiting;
        q.claimed_by = 0;
        q.due_at = o.due_at;
        q.wait_reason = o.wait_reason;
        q.detail = o.detail;
        q.updated_at = o.at;
        return true;
    }
    bool apply(const store_ops::finish_queued& o) {
        if (!holds(o.id, o.member)) return false;
        auto& q = items_[o.id];
        q.state = o.state;
        q.claimed_by = 0;
        q.send_id = o.send_id;
        q.detail = o.detail;
        q.updated_at = o.at;
        return true;
    }
    bool apply(const store_ops::cancel_queued& o) {
        if (state_of(o.id) != queue_state::waiting) return false;
        auto& q = items_[o.id];
        q.state = queue_state::cancelled;
        q.detail = o.detail;
        q.updated_at = o.at;
        return true;
    }
    std::vector<queued_send> claim(std::uint64_t member, time_point now, std::size_t limit) {
        std::vector<queued_send*> due;
        for (auto& [id, q] : items_)
            if (q.state == queue_state::waiting && q.due_at <= now) due.push_back(&q);
        std::sort(due.begin(), due.end(), [](const queued_send* a, const queued_send* b) {
            return a->due_at != b->due_at ? a->due_at < b->due_at : a->id < b->id;
        });
        std::vector<queued_send> out;
        for (std::size_t i = 0; i < due.size() && i < limit; ++i) {
            auto& q = *due[i];
            q.state = queue_state::claimed;
            q.claimed_by = member;
            ++q.checks;
            q.updated_at = now;
            out.push_back(q);
        }
        return out;
    }
    /// Items of members no longer present go back to waiting; the detail is
    /// the store's to word, so the caller copies it from the store.
    std::vector<std::uint64_t> requeue(std::uint64_t member, time_point now) {
        std::vector<std::uint64_t> out;
        for (auto& [id, q] : items_)
            if (q.state == queue_state::claimed && q.claimed_by == member) {
                q.state = queue_state::waiting;
                q.claimed_by = 0;
                q.updated_at = now;
                out.push_back(id);
            }
        return out;
    }
    std::size_t purge(time_point before) {
        return std::erase_if(items_, [&](const auto& kv) {
            const auto& q = kv.second;
            return (q.state == queue_state::done || q.state == queue_state::cancelled) &&
                   q.updated_at < before;
        });
    }
    queue_counts counts() const {
        queue_counts c;
        std::map<std::string, std::uint64_t> reasons;
        for (const auto& [id, q] : items_) {
            switch (q.state) {
                case queue_state::waiting:
                    ++c.waiting;
                    ++reasons[q.wait_reason];
                    if (!c.next_due || q.due_at < *c.next_due) c.next_due = q.due_at;
                    break;
                case queue_state::claimed:
                    ++c.claimed;
                    break;
                case queue_state::done:
                    ++c.done;
                    break;
                case queue_state::cancelled:
                    ++c.cancelled;
                    break;
            }
        }
        c.waiting_by_reason.assign(reasons.begin(), reasons.end());
        return c;
    }
    std::map<std::uint64_t, queued_send>& items() { return items_; }

private:
    std::map<std::uint64_t, queued_send> items_;
};

inline void check_queue_random_against_model(const store_factory& open, const std::string& ws,
                                             std::uint64_t seed, int steps = 250) {
    INFO("seed = " << seed << " (rerun with MAILERS_TEST_SEED=" << seed << ")");
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng);
    };
    auto chance = [&](int percent) { return pick(100) < static_cast<std::uint64_t>(percent); };
    auto st = open();
    queue_model model;
    std::vector<std::uint64_t> members;
    for (int i = 0; i < 3; ++i)
        members.push_back(st->attach(ws, sample_member("m" + std::to_string(i)), long_lease));
    std::uint64_t last_id = 0;
    std::size_t applied = 0, refused = 0, duplicates = 0, failed = 0, claimed = 0;
    auto any_id = [&]() -> std::uint64_t {
        if (model.items().empty() || chance(5)) return last_id + 1 + pick(3);
        auto it = model.items().begin();
        std::advance(it, static_cast<std::ptrdiff_t>(pick(model.items().size())));
        return it->first;
    };
    auto any_member = [&] { return members[pick(members.size())]; };
    auto reasons = std::vector<std::string>{"", "cap", "window", "gap", "paused"};

    for (int step = 0; step < steps; ++step) {
        INFO("step " << step);
        const auto t = at_seconds(static_cast<std::int64_t>(step * 10));
        const auto kind = pick(100);
        if (kind < 50) {
            // A batch of queue ops, sometimes ending in one that is refused.
            std::vector<store_op> ops;
            const auto n = 1 + pick(4);
            for (std::uint64_t i = 0; i < n; ++i) {
                const auto which = pick(4);
                if (which == 0) {
                    auto q = sample_queued(
                        pick(1000), chance(50) ? "key-" + std::to_string(pick(10)) : "",
                        at_seconds(static_cast<std::int64_t>(step * 10) +
                                   static_cast<std::int64_t>(pick(200)) - 100),
                        chance(50) ? "api" : "sequence:" + std::to_string(pick(3)));
                    q.enqueued_at = t;
                    ops.push_back(store_ops::enqueue{std::move(q)});
                } else if (which == 1) {
                    ops.push_back(store_ops::defer_queued{
                        any_id(), chance(80) ? any_member() : 0,
                        t + std::chrono::seconds{static_cast<std::int64_t>(pick(300))},
                        reasons[pick(reasons.size())], "d" + std::to_string(step), t});
                } else if (which == 2) {
                    ops.push_back(store_ops::finish_queued{
                        any_id(), any_member(),
                        chance(70) ? queue_state::done : queue_state::cancelled, pick(50),
                        "f" + std::to_string(step), t});
                } else {
                    ops.push_back(
                        store_ops::cancel_queued{any_id(), "c" + std::to_string(step), t});
                }
            }
            const bool fails = chance(10);
            if (fails) {
                auto bad = sample_queued(1);
                bad.request.clear();
                ops.insert(ops.begin() + static_cast<std::ptrdiff_t>(pick(ops.size() + 1)),
                           store_ops::enqueue{bad});
            }
            if (fails) {
                commit_must_fail(*st, ws, ops);
                ++failed;
            } else {
                const auto res = commit(*st, ws, ops);
                CHECK(res.change_seq == 0);
                for (std::size_t i = 0; i < ops.size(); ++i) {
                    INFO("op " << i);
                    const auto& out = res.ops[i];
                    if (const auto* e = std::get_if<store_ops::enqueue>(&ops[i])) {
                        if (out.queue.status == enqueue_status::enqueued) {
                            CHECK(out.queue.id > last_id);
                            last_id = out.queue.id;
                        }
                        const auto expected = model.enqueue(e->item, out.queue.id);
                        CHECK(out.queue.status == expected.status);
                        CHECK(out.queue.id == expected.id);
                        if (expected.existing) {
                            ++duplicates;
                            REQUIRE(out.queue.existing != nullptr);
                            CHECK(*out.queue.existing == *expected.existing);
                        }
                    } else {
                        std::uint64_t id = 0;
                        std::optional<queue_state> before;
                        bool expect = false;
                        std::visit(
                            [&](const auto& o) {
                                using T = std::decay_t<decltype(o)>;
                                if constexpr (std::is_same_v<T, store_ops::defer_queued> ||
                                              std::is_same_v<T, store_ops::finish_queued> ||
                                              std::is_same_v<T, store_ops::cancel_queued>) {
                                    id = o.id;
                                    before = model.state_of(o.id);
                                    expect = model.apply(o);
                                }
                            },
                            ops[i]);
                        CHECK(out.applied == expect);
                        CHECK(out.queue.id == id);
                        CHECK(out.queue.state == before);
                        (expect ? applied : refused)++;
                    }
                }
            }
        } else if (kind < 80) {
            const auto m = any_member();
            const auto limit = pick(6);
            const auto got = st->claim_queued(ws, m, t, limit);
            const auto expected = model.claim(m, t, limit);
            check_same_list(got, expected, "claimed");
            claimed += got.size();
        } else if (kind < 88) {
            // A member goes; its items return. A new one takes its place.
            const auto i = pick(members.size());
            const auto gone = members[i];
            if (chance(50)) {
                st->detach(ws, gone);
            } else {
                const std::uint64_t dead[] = {gone};
                st->recover(ws, dead, t, "gone");
            }
            // Detach stamps with the store's own clock: copy what is the store's to word.
            for (const auto id : model.requeue(gone, t)) {
                const auto stored = stored_queued(*st, ws, id);
                CHECK_FALSE(stored.detail.empty());
                model.items()[id].detail = stored.detail;
                model.items()[id].updated_at = stored.updated_at;
            }
            members[i] = st->attach(ws, sample_member("m" + std::to_string(step)), long_lease);
        } else if (kind < 92) {
            const auto before = t - std::chrono::seconds{static_cast<std::int64_t>(pick(500))};
            CHECK(st->purge_queued(ws, before) == model.purge(before));
        } else {
            const auto id = any_id();
            const auto it = model.items().find(id);
            CHECK(st->find_queued(ws, id) ==
                  (it == model.items().end() ? std::nullopt : std::optional(it->second)));
        }
        // The whole queue after every step.
        std::vector<queued_send> expected;
        for (const auto& [id, q] : model.items()) expected.push_back(q);
        check_same_list(all_queued(*st, ws), expected, "queue");
        CHECK(st->count_queued(ws) == model.counts());
    }
    // The run exercised every outcome.
    CHECK(applied > 0);
    CHECK(refused > 0);
    CHECK(duplicates > 0);
    CHECK(failed > 0);
    CHECK(claimed > 0);
}

/// Several handles drain one queue from several threads: every item is
/// finished exactly once, never held by two claimers at once, none lost.
inline void check_race_queue(const store_factory& open, const std::string& ws,
                             std::size_t items = 2000, std::size_t threads = 4) {
    {
        auto st = open();
        std::vector<store_op> ops;
        for (std::size_t n = 0; n < items; ++n) {
            ops.push_back(store_ops::enqueue{
                sample_queued(n, "", at_seconds(static_cast<std::int64_t>(n % 50)))});
            if (ops.size() == 500 || n + 1 == items) {
                commit(*st, ws, ops);
                ops.clear();
            }
        }
    }
    std::vector<std::shared_ptr<store>> handles;
    for (std::size_t i = 0; i < threads; ++i) handles.push_back(open());
    std::mutex mu;
    std::map<std::uint64_t, std::uint64_t> holder;  // id -> member holding it now
    std::map<std::uint64_t, int> finished;          // id -> times finished
    std::atomic<std::size_t> double_holds{0}, refused{0}, deferrals{0};
    std::atomic<std::size_t> done{0};
    const auto now = at_seconds(100);
    run_threads(threads, [&](std::size_t t) {
        store& st = *handles[t];
        const auto me = st.attach(ws, sample_member("drain-" + std::to_string(t)), long_lease);
        std::minstd_rand rng(static_cast<std::uint32_t>(t + 1));
        // Others hold what is left and finish or defer it soon; no item
        // finished anywhere for half a minute means the queue is stuck.
        std::size_t seen_done = done.load();
        auto progress_at = std::chrono::steady_clock::now();
        while (done.load() < items) {
            const auto got = st.claim_queued(ws, me, now, 1 + rng() % 16);
            if (got.empty()) {
                if (const auto d = done.load(); d != seen_done) {
                    seen_done = d;
                    progress_at = std::chrono::steady_clock::now();
                } else if (std::chrono::steady_clock::now() - progress_at >
                           std::chrono::seconds(30)) {
                    throw std::runtime_error("the queue stopped draining");
                }
                std::this_thread::yield();
                continue;
            }
            {
                std::lock_guard lock(mu);
                for (const auto& q : got)
                    if (!holder.emplace(q.id, me).second) ++double_holds;
            }
            std::vector<store_op> ops;
            std::vector<std::uint64_t> finishing;
            for (const auto& q : got) {
                // About one in six is deferred on its first check, due at once.
                if (q.checks == 1 && rng() % 6 == 0) {
                    ops.push_back(store_ops::defer_queued{q.id, me, now, "cap", "", now});
                } else {
                    ops.push_back(
                        store_ops::finish_queued{q.id, me, queue_state::done, q.id, "", now});
                    finishing.push_back(q.id);
                }
            }
            // Released from the table before the commit that lets others
            // take the items again.
            {
                std::lock_guard lock(mu);
                for (const auto& q : got) holder.erase(q.id);
            }
            const auto res = st.commit(ws, ops);
            std::lock_guard lock(mu);
            for (std::size_t i = 0; i < ops.size(); ++i) {
                if (!res.ops[i].applied) {
                    ++refused;
                    continue;
                }
                if (const auto* f = std::get_if<store_ops::finish_queued>(&ops[i])) {
                    ++finished[f->id];
                    ++done;
                } else {
                    ++deferrals;
                }
            }
        }
        st.detach(ws, me);
    });
    CHECK(double_holds.load() == 0);
    CHECK(refused.load() == 0);
    CHECK(deferrals.load() > 0);
    CHECK(finished.size() == items);
    std::size_t twice = 0;
    for (const auto& [id, n] : finished)
        if (n != 1) ++twice;
    CHECK(twice == 0);
    auto st = open();
    const auto c = st->count_queued(ws);
    CHECK(c.done == items);
    CHECK(c.waiting == 0);
    CHECK(c.claimed == 0);
    std::size_t checked_again = 0;
    for (const auto& q : all_queued(*st, ws)) {
        CHECK(q.state == queue_state::done);
        CHECK(q.send_id == q.id);
        if (q.checks > 1) ++checked_again;
    }
    CHECK(checked_again == deferrals.load());
}

// ---------------------------------------------------------------------------

/// Every suppression version of `ws`, as the store hands them over.
inline std::vector<suppression_version> all_versions(store& st, std::string_view ws) {
    std::vector<suppression_version> out;
    st.for_each_suppression_version(ws, [&](const suppression_version& v) { out.push_back(v); });
    return out;
}

inline suppression_version version(suppression_entry e, std::uint64_t seq, std::uint64_t by_seq) {
    return suppression_version{std::move(e), seq, by_seq};
}

inline void check_audit_change_seq(const store_factory& open, const std::string& ws) {
    auto st = open();
    auto records = sample_audit(4);
    // The record comes before the change it describes: it still carries it.
    auto r1 = commit(
        *st, ws, {store_ops::append_audit{records[0]}, store_ops::put_object{{"pool", "p", "{}"}}});
    REQUIRE(r1.change_seq != 0);
    // No change, no change seq.
    commit(*st, ws, {store_ops::append_audit{records[1]}});
    auto r3 = commit(
        *st, ws,
        {store_ops::put_suppression{sample_suppression(suppression_kind::address, "c@example.com")},
         store_ops::append_audit{records[2], "k"}});
    audit_record given = records[3];
    given.change_seq = 999;  // ignored, like seq and hash
    const auto imported = st->import_suppressions(
        ws, sample_import({sample_suppression(suppression_kind::address, "i@example.com")}, given));
    const auto empty = st->import_suppressions(ws, sample_import({}, records[3]));
    const auto audit = all_audit(*st, ws);
    REQUIRE(audit.size() == 5);
    CHECK(audit[0].change_seq == r1.change_seq);
    CHECK(audit[1].change_seq == 0);
    CHECK(audit[2].change_seq == r3.change_seq);
    CHECK(audit[3].change_seq == imported.change_seq);
    CHECK(audit[3].change_seq != 0);
    CHECK(audit[4].change_seq == 0);
    CHECK(empty.change_seq == 0);
    // The hashes cover the change seq: each is recomputed from the record.
    CHECK(audit[0].hash == audit_hash(audit[0]));
    CHECK(audit[2].hash == audit_hash(audit[2], "k"));
    audit_record moved = audit[0];
    moved.change_seq += 1;
    CHECK(audit_hash(moved) != audit[0].hash);
}

inline void check_suppression_versions(const store_factory& open, const std::string& ws) {
    auto st = open();
    auto put = [&](std::vector<store_op> ops) {
        return commit(*st, ws, std::move(ops)).change_seq;
    };
    const auto a1 = sample_suppression(suppression_kind::address, "a@example.com");
    auto a2 = a1;
    a2.reason = suppression_reason::legal;
    a2.source = "second";
    const auto s1 = put({store_ops::put_suppression{a1}});
    CHECK(all_versions(*st, ws) == std::vector{version(a1, s1, 0)});
    const auto s2 = put({store_ops::put_suppression{a2}});
    const auto s3 =
        put({store_ops::delete_suppression{suppression_kind::address, "a@example.com"}});
    // A delete of what is not there ends nothing.
    put({store_ops::delete_suppression{suppression_kind::address, "none@example.com"}});
    CHECK(all_versions(*st, ws) == std::vector{version(a1, s1, s2), version(a2, s2, s3)});

    // One commit writing a key twice, and one writing then deleting one:
    // the entries it displaced itself are versions it ended.
    auto c1 = sample_suppression(suppression_kind::address, "c@example.com");
    auto c2 = c1;
    c2.source = "later";
    const auto d = sample_suppression(suppression_kind::domain, "d.example");
    const auto s4 = put({store_ops::put_suppression{c1}, store_ops::put_suppression{d},
                         store_ops::put_suppression{c2},
                         store_ops::delete_suppression{suppression_kind::domain, "d.example"}});
    // An import over a stored key, giving a key twice.
    auto e0 = sample_suppression(suppression_kind::address, "e@example.com");
    const auto s5 = put({store_ops::put_suppression{e0}});
    auto e1 = e0, e2 = e0;
    e1.source = "import 1";
    e2.source = "import 2";
    auto f = sample_suppression(suppression_kind::address, "f@example.com");
    const auto imported =
        st->import_suppressions(ws, sample_import({e1, f, e2}, sample_audit(1)[0]));
    const auto s6 = imported.change_seq;
    const std::vector expected{version(a1, s1, s2), version(a2, s2, s3), version(c1, s4, s4),
                               version(c2, s4, 0),  version(e0, s5, s6), version(e1, s6, s6),
                               version(e2, s6, 0),  version(f, s6, 0),   version(d, s4, s4)};
    CHECK(all_versions(*st, ws) == expected);
    // Versions are history: a reopen finds them as they were.
    st.reset();
    CHECK(all_versions(*open(), ws) == expected);
}

inline void check_first_import(const store_factory& open, const std::string& ws) {
    // A workspace's first import (a store may take a shorter path when
    // there is nothing to replace) keeps the same promises: the later entry
    // of a key given twice is stored and the earlier is a version it ended,
    // and another workspace's keys do not count as this one's.
    auto st = open();
    const auto other = sample_suppression(suppression_kind::address, "y@example.com");
    commit(*st, ws + "-other", {store_ops::put_suppression{other}});
    auto x1 = sample_suppression(suppression_kind::address, "x@example.com");
    auto x2 = x1;
    x1.source = "import 1";
    x2.source = "import 2";
    x2.reason = suppression_reason::complaint;
    const auto y = sample_suppression(suppression_kind::address, "y@example.com");
    const auto d = sample_suppression(suppression_kind::domain, "d.example");
    const auto first =
        st->import_suppressions(ws, sample_import({x1, y, d, x2}, sample_audit(1)[0]));
    const auto s1 = first.change_seq;
    CHECK(first.entries == 4);
    CHECK(s1 == 1);
    CHECK(all_versions(*st, ws) ==
          std::vector{version(x1, s1, s1), version(x2, s1, 0), version(y, s1, 0),
                      version(d, s1, 0)});
    check_same_list(all_suppressions(*st, ws), {x2, y, d}, "after the first import");
    check_same_list(st->changes_since(ws, 0).suppressions, {x2, y, d}, "the first import's change");
    check_same_list(all_suppressions(*st, ws + "-other"), {other}, "the other workspace");

    // A workspace holding only a tombstone has a key to overwrite.
    const std::string ws2 = ws + "-tombstone";
    commit(*st, ws2, {store_ops::delete_suppression{suppression_kind::address, "x@example.com"}});
    const auto second = st->import_suppressions(ws2, sample_import({x1, x2}, sample_audit(1)[0]));
    CHECK(all_versions(*st, ws2) ==
          std::vector{version(x1, second.change_seq, second.change_seq),
                      version(x2, second.change_seq, 0)});
    const auto cs = st->changes_since(ws2, 0);
    check_same_list(cs.suppressions, {x2}, "over a tombstone");
    CHECK(cs.deleted_suppressions.empty());
}

inline void check_race_versions(const store_factory& open, const std::string& ws) {
    // Writers on several handles put and delete one key; the versions must
    // account for every put, each ended by a later change at most once.
    constexpr std::size_t writers = 4, rounds = 25;
    std::mutex mu;
    std::set<std::uint64_t> puts, deletes;
    run_threads(writers, [&](std::size_t w) {
        auto st = open();
        for (std::size_t i = 0; i < rounds; ++i) {
            auto e = sample_suppression(suppression_kind::address, "shared@example.com");
            e.source = "w" + std::to_string(w) + "-" + std::to_string(i);
            const bool del = (i + w) % 3 == 0;
            std::vector<store_op> ops;
            if (del)
                ops.push_back(
                    store_ops::delete_suppression{suppression_kind::address, "shared@example.com"});
            else
                ops.push_back(store_ops::put_suppression{e});
            const auto seq = st->commit(ws, ops).change_seq;
            std::lock_guard lock(mu);
            (del ? deletes : puts).insert(seq);
        }
    });
    auto st = open();
    const auto versions = all_versions(*st, ws);
    CHECK(versions.size() == puts.size());
    std::set<std::uint64_t> written, ended;
    std::size_t current = 0;
    std::uint64_t last_end = 0;
    for (const auto& v : versions) {
        written.insert(v.seq);
        if (v.by_seq == 0) {
            ++current;
            continue;
        }
        CHECK(v.by_seq > v.seq);
        CHECK(v.by_seq > last_end);  // in the order they were ended
        last_end = v.by_seq;
        CHECK((puts.count(v.by_seq) + deletes.count(v.by_seq)) == 1);
        CHECK(ended.insert(v.by_seq).second);
    }
    CHECK(written == puts);
    CHECK(current <= 1);
    CHECK(current ==
          (st->find_suppression(ws, suppression_kind::address, "shared@example.com") ? 1u : 0u));
}

// --- enrollments ------------------------------------------------------------

inline enrollment sample_enrollment(std::string sequence, std::string address,
                                    std::int64_t due = 0) {
    enrollment e;
    e.sequence_id = std::move(sequence);
    e.address = std::move(address);
    e.display_name = "Ada";
    e.variables = "{\"first_name\":\"Ada\"}";
    e.owner = "rep1";
    e.actor = "host";
    e.next_due = at_seconds(due);
    e.enrolled_at = at_seconds(-5);
    e.updated_at = at_seconds(-5);
    return e;
}

inline enrollment_outcome enroll_one(store& st, std::string_view ws, enrollment e,
                                     enrollment_conflict rule = enrollment_conflict::refuse) {
    return commit(st, ws, {store_ops::enroll{std::move(e), rule}}).ops[0].enrollments;
}

inline enrollment stored_enrollment(store& st, std::string_view ws, std::uint64_t id) {
    auto e = st.find_enrollment(ws, id);
    REQUIRE_MESSAGE(e.has_value(), "enrollment " << id << " is missing");
    return *e;
}

inline std::vector<std::uint64_t> enrollment_ids(store& st, std::string_view ws,
                                                 const enrollment_filter& f = {}) {
    std::vector<std::uint64_t> out;
    st.for_each_enrollment(ws, f, [&](const enrollment& e) { out.push_back(e.id); });
    return out;
}

/// A step of `e` queued: the enrollment leaves the scheduler and names the
/// item's key, and the item is enqueued, in one commit.
inline std::string queue_step(store& st, std::string_view ws, const enrollment& e,
                              std::uint64_t n) {
    auto next = e;
    next.queue_key = "seq:" + e.sequence_id + ":" + std::to_string(e.id) + ":" +
                     std::to_string(e.step + 1) + "/" + std::to_string(e.plans + 1);
    next.plans = e.plans + 1;
    next.next_due.reset();
    next.step_due = at_seconds(100);
    auto item = sample_queued(n, next.queue_key);
    item.origin = "sequence:" + e.sequence_id + "/" + std::to_string(e.step + 1);
    auto r = commit(st, ws,
                    {store_ops::update_enrollment{next, e.version, "", at_seconds(1)},
                     store_ops::enqueue{item}});
    REQUIRE(r.ops[0].applied);
    REQUIRE(r.ops[1].queue.status == enqueue_status::enqueued);
    return next.queue_key;
}

inline void check_enrollments(const store_factory& open, const std::string& ws) {
    auto st = open();
    // Enroll, find, refuse a second enrollment, merge one.
    auto a = enroll_one(*st, ws, sample_enrollment("s1", "ada@example.com"));
    REQUIRE(a.status == enroll_status::enrolled);
    REQUIRE(a.id != 0);
    auto got = stored_enrollment(*st, ws, a.id);
    auto want = sample_enrollment("s1", "ada@example.com");
    want.id = a.id;
    want.version = 1;
    CHECK(got == want);
    auto again = enroll_one(*st, ws, sample_enrollment("s1", "ada@example.com"));
    CHECK(again.status == enroll_status::duplicate);
    CHECK(again.id == a.id);
    REQUIRE(again.existing != nullptr);
    CHECK(*again.existing == got);
    auto other = sample_enrollment("s1", "ada@example.com");
    other.variables = "{}";
    other.owner = "rep2";
    auto merged = enroll_one(*st, ws, other, enrollment_conflict::merge);
    CHECK(merged.status == enroll_status::merged);
    CHECK(merged.id == a.id);
    got = stored_enrollment(*st, ws, a.id);
    CHECK(got.variables == "{}");
    CHECK(got.owner == "rep2");
    CHECK(got.version == 2);
    CHECK(got.step == 0);
    auto b = enroll_one(*st, ws, sample_enrollment("s2", "ada@example.com", 5)).id;
    auto c = enroll_one(*st, ws, sample_enrollment("s2", "bob@other.example", 3)).id;
    CHECK(b > a.id);
    CHECK(c > b);
    CHECK_FALSE(st->find_enrollment(ws + "-other", a.id).has_value());

    // Filters and pages.
    CHECK(enrollment_ids(*st, ws) == std::vector<std::uint64_t>{a.id, b, c});
    CHECK(enrollment_ids(*st, ws, {.sequence_id = "s2"}) == std::vector<std::uint64_t>{b, c});
    CHECK(enrollment_ids(*st, ws, {.address = "ada@example.com"}) ==
          std::vector<std::uint64_t>{a.id, b});
    CHECK(enrollment_ids(*st, ws, {.after_id = a.id, .limit = 1}) ==
          std::vector<std::uint64_t>{b});
    CHECK(enrollment_ids(*st, ws, {.state = enrollment_state::paused}).empty());

    // Due: active, next_due reached, earliest first; not the others.
    auto due = st->due_enrollments(ws, at_seconds(4), 10);
    REQUIRE(due.size() == 2);
    CHECK(due[0].id == a.id);
    CHECK(due[1].id == c);
    CHECK(st->due_enrollments(ws, at_seconds(10), 1).size() == 1);
    CHECK(st->due_enrollments(ws, at_seconds(10), 0).empty());

    // Compare-and-set: on the version read, once.
    auto e = stored_enrollment(*st, ws, c);
    auto paused = e;
    paused.state = enrollment_state::paused;
    paused.next_due.reset();
    CHECK(queue_op(*st, ws, store_ops::update_enrollment{paused, e.version, "", at_seconds(2)})
              .applied);
    CHECK_FALSE(
        queue_op(*st, ws, store_ops::update_enrollment{paused, e.version, "", at_seconds(2)})
            .applied);
    got = stored_enrollment(*st, ws, c);
    CHECK(got.state == enrollment_state::paused);
    CHECK(got.version == e.version + 1);
    CHECK(got.updated_at == at_seconds(2));
    CHECK(st->due_enrollments(ws, at_seconds(10), 10).size() == 2);
    CHECK(enrollment_ids(*st, ws, {.state = enrollment_state::paused}) ==
          std::vector<std::uint64_t>{c});

    // A queued step, then advanced by its outcome; a stale outcome is not applied.
    e = stored_enrollment(*st, ws, a.id);
    const auto key = queue_step(*st, ws, e, 1);
    e = stored_enrollment(*st, ws, a.id);
    CHECK_FALSE(e.next_due.has_value());
    CHECK(e.queue_key == key);
    store_ops::advance_enrollment adv{a.id,  0, key, step_outcome::sent, false, "rep1",
                                      "m1@x", "Hi", {"r0@x"}, "sent", at_seconds(50)};
    auto stale = adv;
    stale.step = 1;
    CHECK_FALSE(queue_op(*st, ws, stale).applied);
    CHECK(queue_op(*st, ws, adv).applied);
    CHECK_FALSE(queue_op(*st, ws, adv).applied);  // once
    e = stored_enrollment(*st, ws, a.id);
    CHECK(e.step == 1);
    CHECK(e.queue_key.empty());
    CHECK(e.next_due == at_seconds(50));
    CHECK(e.prev_mailbox == "rep1");
    CHECK(e.prev_message_id == "m1@x");
    CHECK(e.prev_subject == "Hi");
    CHECK(e.prev_references == std::vector<std::string>{"r0@x"});
    CHECK(e.last_sent_at == at_seconds(50));
    CHECK(e.state == enrollment_state::active);
    auto by_msg = st->find_enrollment_by_message(ws, "m1@x");
    REQUIRE(by_msg.has_value());
    CHECK(by_msg->id == a.id);
    CHECK_FALSE(st->find_enrollment_by_message(ws, "nope@x").has_value());
    // The last step completes it.
    const auto key2 = queue_step(*st, ws, e, 2);
    adv.step = 1;
    adv.queue_key = key2;
    adv.last = true;
    adv.message_id = "m2@x";
    CHECK(queue_op(*st, ws, adv).applied);
    e = stored_enrollment(*st, ws, a.id);
    CHECK(e.state == enrollment_state::completed);
    CHECK_FALSE(e.next_due.has_value());
    CHECK(st->find_enrollment_by_message(ws, "m2@x")->id == a.id);

    // A failed step fails the enrollment.
    e = stored_enrollment(*st, ws, b);
    const auto key3 = queue_step(*st, ws, e, 3);
    CHECK(queue_op(*st, ws,
                   store_ops::advance_enrollment{b, 0, key3, step_outcome::failed, false, "", "",
                                                 "", {}, "refused", at_seconds(60)})
              .applied);
    e = stored_enrollment(*st, ws, b);
    CHECK(e.state == enrollment_state::failed);
    CHECK(e.detail == "refused");
    CHECK(e.step == 0);

    // A step's re-sends: stored as written, kept by an unknown outcome (it
    // names the held attempt), back to 0 once the step is sent.
    const auto step_of_c = [&](std::uint64_t n, step_outcome outcome, std::int64_t at) {
        e = stored_enrollment(*st, ws, c);
        const auto k = queue_step(*st, ws, e, n);
        store_ops::advance_enrollment adv{c, 0, k, outcome, false, "rep1", "m@x", "Hi", {}, "",
                                          at_seconds(at)};
        CHECK(queue_op(*st, ws, adv).applied);
        e = stored_enrollment(*st, ws, c);
    };
    const auto rewrite_c = [&](enrollment_state state, std::uint32_t step, std::uint32_t attempt) {
        e = stored_enrollment(*st, ws, c);
        auto next = e;
        next.state = state;
        next.step = step;
        next.attempt = attempt;
        REQUIRE(queue_op(*st, ws, store_ops::update_enrollment{next, e.version, "", at_seconds(70)})
                    .applied);
        CHECK(stored_enrollment(*st, ws, c).attempt == attempt);
    };
    rewrite_c(enrollment_state::active, 0, 2);
    step_of_c(4, step_outcome::unknown, 80);
    CHECK(e.state == enrollment_state::unresolved);
    CHECK(e.step == 1);
    CHECK(e.attempt == 2);
    rewrite_c(enrollment_state::active, 0, 3);  // taken back, as resolving it not_sent does
    step_of_c(5, step_outcome::sent, 95);
    CHECK(e.step == 1);
    CHECK(e.attempt == 0);
}

inline void check_enrollment_stops(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto a1 = enroll_one(*st, ws, sample_enrollment("s1", "ada@example.com")).id;
    const auto a2 = enroll_one(*st, ws, sample_enrollment("s2", "ada@example.com")).id;
    const auto a3 = enroll_one(*st, ws, sample_enrollment("s3", "ada@example.com")).id;
    const auto b1 = enroll_one(*st, ws, sample_enrollment("s1", "bob@example.com")).id;
    const auto c1 = enroll_one(*st, ws, sample_enrollment("s1", "cy@other.example")).id;
    const auto k2 = queue_step(*st, ws, stored_enrollment(*st, ws, a2), 1);
    // a3's step is claimed: a stop leaves it to its holder.
    const auto k3 = queue_step(*st, ws, stored_enrollment(*st, ws, a3), 2);
    const auto m = st->attach(ws, sample_member("m"), long_lease);
    const auto claimed = st->claim_queued(ws, m, at_seconds(1000), 10);
    REQUIRE(claimed.size() == 2);
    const auto claimed_id = claimed[0].idempotency_key == k3 ? claimed[0].id : claimed[1].id;
    const auto waiting_id = claimed[0].idempotency_key == k3 ? claimed[1].id : claimed[0].id;
    REQUIRE(queue_op(*st, ws,
                     store_ops::defer_queued{waiting_id, m, at_seconds(500), "cap", "",
                                             at_seconds(2)})
                .applied);
    // a1 is paused, still stopped.
    auto e1 = stored_enrollment(*st, ws, a1);
    auto p1 = e1;
    p1.state = enrollment_state::paused;
    p1.next_due.reset();
    REQUIRE(queue_op(*st, ws, store_ops::update_enrollment{p1, e1.version, "", at_seconds(2)})
                .applied);

    // Refusals fail the whole batch.
    commit_must_fail(*st, ws,
                     {store_ops::enroll{sample_enrollment("s9", "zed@example.com"), {}},
                      store_ops::stop_enrollments{}});
    CHECK(enrollment_ids(*st, ws, {.sequence_id = "s9"}).empty());

    auto r = queue_op(*st, ws,
                      store_ops::stop_enrollments{"ada@example.com", "", "", 0,
                                                  enrollment_stop::unsubscribed, "unsubscribed",
                                                  at_seconds(3)});
    CHECK(r.enrollments.stopped == std::vector<std::uint64_t>{a1, a2, a3});
    for (auto id : {a1, a2, a3}) {
        auto e = stored_enrollment(*st, ws, id);
        CHECK(e.state == enrollment_state::stopped);
        CHECK(e.stop_reason == enrollment_stop::unsubscribed);
        CHECK_FALSE(e.next_due.has_value());
    }
    CHECK(stored_queued(*st, ws, waiting_id).state == queue_state::cancelled);
    CHECK(stored_queued(*st, ws, claimed_id).state == queue_state::claimed);
    CHECK(stored_enrollment(*st, ws, b1).state == enrollment_state::active);
    // Stopped stays stopped: nothing more to stop, and a late outcome of the
    // claimed step is recorded without bringing it back.
    CHECK(queue_op(*st, ws,
                   store_ops::stop_enrollments{"ada@example.com", "", "", 0,
                                               enrollment_stop::bounced, "", at_seconds(4)})
              .enrollments.stopped.empty());
    CHECK(queue_op(*st, ws,
                   store_ops::advance_enrollment{a3, 0, k3, step_outcome::sent, false, "rep1",
                                                 "late@x", "", {}, "", at_seconds(5)})
              .applied);
    CHECK(stored_enrollment(*st, ws, a3).state == enrollment_state::stopped);
    CHECK(stored_enrollment(*st, ws, a3).step == 1);
    CHECK_FALSE(stored_enrollment(*st, ws, a3).next_due.has_value());
    CHECK(st->find_enrollment_by_message(ws, "late@x")->id == a3);
    (void)k2;

    // By domain, by sequence, by id.
    CHECK(queue_op(*st, ws,
                   store_ops::stop_enrollments{"", "other.example", "s2", 0,
                                               enrollment_stop::suppressed, "", at_seconds(6)})
              .enrollments.stopped.empty());
    CHECK(queue_op(*st, ws,
                   store_ops::stop_enrollments{"", "other.example", "s1", 0,
                                               enrollment_stop::suppressed, "", at_seconds(6)})
              .enrollments.stopped == std::vector<std::uint64_t>{c1});
    CHECK(queue_op(*st, ws,
                   store_ops::stop_enrollments{"", "", "", b1, enrollment_stop::manual, "by hand",
                                               at_seconds(7)})
              .enrollments.stopped == std::vector<std::uint64_t>{b1});
    CHECK(stored_enrollment(*st, ws, b1).stop_reason == enrollment_stop::manual);
    CHECK(st->due_enrollments(ws, at_seconds(1000), 10).empty());
}

inline void check_race_enrollments(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    // One contact enrolled from every thread: one enrollment.
    std::atomic<int> enrolled{0}, duplicate{0};
    run_threads(race_threads, [&](std::size_t t) {
        auto out = enroll_one(*handles[t % handles.size()], ws,
                              sample_enrollment("race", "ada@example.com"));
        (out.status == enroll_status::enrolled ? enrolled : duplicate)++;
    });
    CHECK(enrolled.load() == 1);
    CHECK(duplicate.load() == static_cast<int>(race_threads) - 1);
    const auto id = enrollment_ids(*handles[0], ws).at(0);
    // Compare-and-set from every thread: each change applied exactly once,
    // none lost.
    constexpr int per_thread = 10;
    std::atomic<int> applied{0};
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        for (int i = 0; i < per_thread;) {
            auto e = st.find_enrollment(ws, id);
            REQUIRE(e.has_value());
            auto next = *e;
            next.plans = e->plans + 1;
            const std::vector<store_op> ops{
                store_ops::update_enrollment{next, e->version, "", at_seconds(1)}};
            if (st.commit(ws, ops).ops.at(0).applied) {
                ++applied;
                ++i;
            }
        }
    });
    CHECK(applied.load() == static_cast<int>(race_threads) * per_thread);
    const auto e = stored_enrollment(*handles[0], ws, id);
    CHECK(e.plans == race_threads * per_thread);
    CHECK(e.version == 1 + race_threads * per_thread);
    // Stops racing: each enrollment stopped by one of them.
    for (int i = 0; i < 20; ++i)
        enroll_one(*handles[0], ws, sample_enrollment("s" + std::to_string(i), "bob@example.com"));
    std::mutex mu;
    std::vector<std::uint64_t> stopped;
    run_threads(race_threads, [&](std::size_t t) {
        const std::vector<store_op> ops{store_ops::stop_enrollments{
            "bob@example.com", "", "", 0, enrollment_stop::unsubscribed, "", at_seconds(2)}};
        auto r = handles[t % handles.size()]->commit(ws, ops).ops.at(0).enrollments.stopped;
        std::lock_guard lock(mu);
        stopped.insert(stopped.end(), r.begin(), r.end());
    });
    CHECK(stopped.size() == 20);
    CHECK(std::set<std::uint64_t>(stopped.begin(), stopped.end()).size() == 20);
}

/// Runs every check, each in its own doctest SUBCASE. Call it from a
/// TEST_CASE.
// --- recorded keys ------------------------------------------------------------

inline store_ops::record_key key_op(std::string key, std::int64_t at, std::int64_t expires,
                                    std::size_t guards = 0, std::string ns = "event") {
    return store_ops::record_key{std::move(ns), std::move(key), at_seconds(at), at_seconds(expires),
                                 guards};
}

/// Whether a record of `key` at `at` would be applied. The probe's record
/// expires at `at`, so a free key stays free from `at` on.
inline bool key_is_free(store& st, std::string_view ws, const std::string& key, std::int64_t at,
                        std::string ns = "event") {
    const std::vector<store_op> ops{key_op(key, at, at, 0, std::move(ns))};
    return st.commit(ws, ops).ops.at(0).applied;
}

inline void check_recorded_keys(const store_factory& open, const std::string& ws) {
    auto st = open();
    // New keys apply; the same key twice in one commit is a duplicate the
    // second time; namespaces and workspaces are apart.
    auto r = commit(*st, ws,
                    {key_op("a", 10, 100), key_op("b", 10, 100), key_op("a", 10, 100),
                     key_op("a", 10, 100, 0, "mailgun-token")});
    CHECK(r.ops[0].applied);
    CHECK(r.ops[1].applied);
    CHECK_FALSE(r.ops[2].applied);
    CHECK(r.ops[3].applied);
    CHECK(r.change_seq == 0);
    // Across commits and handles.
    auto other = open();
    CHECK_FALSE(commit(*other, ws, {key_op("a", 20, 200)}).ops[0].applied);
    CHECK(commit(*other, ws + "-elsewhere", {key_op("a", 20, 200)}).ops[0].applied);
    // Until it expires: at its expiry a record applies again, and expires
    // anew.
    CHECK_FALSE(commit(*st, ws, {key_op("b", 99, 300)}).ops[0].applied);
    CHECK(commit(*st, ws, {key_op("b", 100, 300)}).ops[0].applied);
    CHECK_FALSE(commit(*st, ws, {key_op("b", 299, 400)}).ops[0].applied);

    // Guards: applied with the record, skipped with a duplicate.
    const auto audit_before = all_audit(*st, ws).size();
    const auto e1 = sample_suppression(suppression_kind::address, "g1@example.com");
    r = commit(*st, ws,
               {key_op("c", 10, 100, 2), store_ops::put_suppression{e1},
                store_ops::append_audit{sample_audit(1)[0]}, key_op("d", 10, 100)});
    CHECK(r.ops[0].applied);
    CHECK(r.ops[2].audit_seq == audit_before + 1);
    CHECK(r.ops[3].applied);
    CHECK(st->find_suppression(ws, suppression_kind::address, "g1@example.com"));
}

inline void check_recorded_key_guards(const store_factory& open, const std::string& ws) {
    auto st = open();
    REQUIRE(commit(*st, ws, {key_op("k", 10, 100)}).ops[0].applied);
    const auto audit_before = all_audit(*st, ws).size();
    const auto e = sample_suppression(suppression_kind::address, "dup@example.com");
    auto r = commit(*st, ws,
                    {key_op("k", 20, 100, 2), store_ops::put_suppression{e},
                     store_ops::append_audit{sample_audit(1)[0]}, key_op("fresh", 20, 100),
                     store_ops::append_audit{sample_audit(1)[0]}});
    CHECK_FALSE(r.ops[0].applied);
    CHECK_FALSE(r.ops[1].applied);
    CHECK_FALSE(r.ops[2].applied);
    CHECK(r.ops[2].audit_seq == 0);
    CHECK(r.ops[3].applied);
    CHECK(r.ops[4].audit_seq == audit_before + 1);
    CHECK_FALSE(st->find_suppression(ws, suppression_kind::address, "dup@example.com"));
    CHECK(all_audit(*st, ws).size() == audit_before + 1);

    // Refused: guards past the end, a guarded record_key. Nothing stays.
    commit_must_fail(*st, ws, {key_op("x", 20, 100, 2), key_op("y", 20, 100)});
    commit_must_fail(*st, ws, {key_op("x", 20, 100, 1), key_op("y", 20, 100)});
    CHECK(key_is_free(*st, ws, "x", 20));
    CHECK(key_is_free(*st, ws, "y", 20));

    // All or nothing: a failing op undoes the record with the rest.
    queued_send bad;
    bad.not_before = at_seconds(1);
    commit_must_fail(*st, ws, {key_op("z", 20, 100), store_ops::enqueue{bad}});
    CHECK(commit(*st, ws, {key_op("z", 21, 100)}).ops[0].applied);

    // purge_keys forgets keys that expired before its time, not later ones.
    REQUIRE(commit(*st, ws, {key_op("old", 10, 50), key_op("new", 10, 500)}).ops[1].applied);
    CHECK(st->purge_keys(ws, at_seconds(60)) >= 1);
    CHECK(key_is_free(*st, ws, "old", 20));
    CHECK_FALSE(key_is_free(*st, ws, "new", 20));
}

inline void check_race_recorded_keys(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    constexpr std::size_t keys = 12;
    std::vector<std::atomic<int>> applied(keys);
    std::atomic<int> suppressed{0};
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        // Each thread records every key, in its own order, some with a
        // guarded suppression and audit record, some several to a commit.
        for (std::size_t i = 0; i < keys; ++i) {
            const std::size_t k = (i + t * 5) % keys;
            const std::string key = "race-" + std::to_string(k);
            std::vector<store_op> ops;
            if (k % 3 == 0) {
                ops = {key_op(key, 10, 1000, 2),
                       store_ops::put_suppression{
                           sample_suppression(suppression_kind::address, key + "@example.com")},
                       store_ops::append_audit{sample_audit(1)[0]}};
            } else {
                ops = {key_op(key, 10, 1000), key_op(key + "-pair", 10, 1000)};
            }
            const auto r = st.commit(ws, ops);
            if (r.ops[0].applied) ++applied[k];
            if (k % 3 == 0 && r.ops[1].applied) ++suppressed;
        }
    });
    for (std::size_t k = 0; k < keys; ++k) {
        INFO("key " << k);
        CHECK(applied[k].load() == 1);
    }
    CHECK(suppressed.load() == keys / 3);
    auto st = open();
    CHECK(all_audit(*st, ws).size() == keys / 3);
}

// --- outbound webhooks: the outbox -------------------------------------------

inline webhook_delivery sample_delivery(std::string endpoint, std::string key,
                                        std::int64_t due = 10) {
    webhook_delivery d;
    d.endpoint = std::move(endpoint);
    d.message_id = "msg_" + key;
    d.event_key = std::move(key);
    d.event_type = "sent";
    d.payload = R"({"type":"email.sent"})";
    d.created_at = at_seconds(1);
    d.due_at = at_seconds(due);
    return d;
}

inline std::uint64_t add_delivery(store& st, std::string_view ws, webhook_delivery d) {
    const auto r = commit(st, ws, {store_ops::add_webhook_delivery{std::move(d)}});
    CHECK(r.change_seq == 0);
    REQUIRE(r.ops[0].applied);
    REQUIRE(r.ops[0].webhook != 0);
    return r.ops[0].webhook;
}

inline webhook_delivery stored_delivery(store& st, std::string_view ws, std::uint64_t id) {
    auto d = st.find_webhook_delivery(ws, id);
    REQUIRE_MESSAGE(d.has_value(), "webhook delivery " << id << " is missing");
    return *d;
}

inline void check_outbox(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto a = add_delivery(*st, ws, sample_delivery("ep1", "k1", 30));
    auto stored = stored_delivery(*st, ws, a);
    auto expected = sample_delivery("ep1", "k1", 30);
    expected.id = a;
    expected.updated_at = expected.created_at;
    CHECK(stored == expected);

    // One row per (endpoint, event key): a duplicate changes nothing, also
    // within one commit; another endpoint is another row.
    auto dup = sample_delivery("ep1", "k1", 5);
    dup.payload = "{}";
    const auto r = commit(*st, ws,
                          {store_ops::add_webhook_delivery{dup},
                           store_ops::add_webhook_delivery{sample_delivery("ep2", "k1", 10)},
                           store_ops::add_webhook_delivery{sample_delivery("ep2", "k1", 10)}});
    CHECK_FALSE(r.ops[0].applied);
    CHECK(r.ops[1].applied);
    CHECK(r.ops[1].webhook > a);
    CHECK_FALSE(r.ops[2].applied);
    CHECK(stored_delivery(*st, ws, a) == expected);
    const auto b = r.ops[1].webhook;
    // The epoch as due time means at creation.
    auto now_due = sample_delivery("ep1", "k2");
    now_due.due_at = time_point{};
    const auto c = add_delivery(*st, ws, now_due);
    CHECK(stored_delivery(*st, ws, c).due_at == at_seconds(1));

    // Bad input is refused and changes nothing.
    for (auto bad : {sample_delivery("", "x"), sample_delivery("ep1", "")}) {
        commit_must_fail(*st, ws,
                         {store_ops::add_webhook_delivery{sample_delivery("ep9", "fine")},
                          store_ops::add_webhook_delivery{bad}});
    }
    auto no_payload = sample_delivery("ep1", "y");
    no_payload.payload.clear();
    commit_must_fail(*st, ws, {store_ops::add_webhook_delivery{no_payload}});
    commit_must_fail(*st, ws,
                     {store_ops::end_webhook_attempt{a, 1, webhook_delivery_state::claimed}});
    CHECK(st->count_webhook_deliveries(ws, "ep9").pending == 0);
    CHECK(st->count_webhook_deliveries(ws, "").pending == 3);

    // Claims: due ones, oldest due first, attempts counted.
    const auto m = st->attach(ws, sample_member("deliverer"), long_lease);
    CHECK(st->claim_webhook_deliveries(ws, m, at_seconds(0), 10).empty());
    const auto got = st->claim_webhook_deliveries(ws, m, at_seconds(20), 10);
    REQUIRE(got.size() == 2);
    CHECK(got[0].id == c);  // due at 1
    CHECK(got[1].id == b);  // due at 10
    for (const auto& d : got) {
        CHECK(d.state == webhook_delivery_state::claimed);
        CHECK(d.claimed_by == m);
        CHECK(d.attempts == 1);
        CHECK(d.updated_at == at_seconds(20));
        CHECK(stored_delivery(*st, ws, d.id) == d);
    }
    CHECK(st->claim_webhook_deliveries(ws, m, at_seconds(20), 10).empty());
    CHECK(st->claim_webhook_deliveries(ws, m, at_seconds(30), 0).empty());

    // Only the holder ends an attempt.
    const auto other = st->attach(ws, sample_member("other"), long_lease);
    const auto not_mine =
        commit(*st, ws,
               {store_ops::end_webhook_attempt{
                   c, other, webhook_delivery_state::delivered, {}, 200, "", {}}});
    CHECK_FALSE(not_mine.ops[0].applied);
    const auto retry =
        commit(*st, ws,
               {store_ops::end_webhook_attempt{c, m, webhook_delivery_state::pending,
                                               at_seconds(50), 500, "HTTP 500", at_seconds(21)},
                store_ops::end_webhook_attempt{b, m, webhook_delivery_state::delivered,
                                               at_seconds(21), 204, "", at_seconds(21)}});
    CHECK(retry.ops[0].applied);
    CHECK(retry.ops[1].applied);
    auto rc = stored_delivery(*st, ws, c);
    CHECK(rc.state == webhook_delivery_state::pending);
    CHECK(rc.claimed_by == 0);
    CHECK(rc.due_at == at_seconds(50));
    CHECK(rc.last_status == 500);
    CHECK(rc.detail == "HTTP 500");
    CHECK(rc.updated_at == at_seconds(21));
    CHECK(stored_delivery(*st, ws, b).state == webhook_delivery_state::delivered);
    // An ended attempt cannot be ended twice.
    CHECK_FALSE(commit(*st, ws,
                       {store_ops::end_webhook_attempt{
                           b, m, webhook_delivery_state::failed, {}, 0, "", at_seconds(22)}})
                    .ops[0]
                    .applied);
    const auto again = st->claim_webhook_deliveries(ws, m, at_seconds(50), 10);
    REQUIRE(again.size() == 2);  // c (due 50) and a (due 30)
    CHECK(again[0].id == a);
    CHECK(again[1].id == c);
    CHECK(again[1].attempts == 2);
    commit(*st, ws,
           {store_ops::end_webhook_attempt{
                a, m, webhook_delivery_state::failed, {}, 503, "gone", at_seconds(51)},
            store_ops::end_webhook_attempt{c, m, webhook_delivery_state::pending, at_seconds(60),
                                           500, "", at_seconds(51)}});

    // Counts and reads.
    auto counts = st->count_webhook_deliveries(ws, "");
    CHECK(counts.pending == 1);
    CHECK(counts.delivered == 1);
    CHECK(counts.failed == 1);
    CHECK(counts.last_delivered == at_seconds(21));
    CHECK(st->count_webhook_deliveries(ws, "ep1").last_delivered == std::nullopt);
    std::vector<std::uint64_t> ids;
    webhook_delivery_filter f;
    f.endpoint = "ep1";
    st->for_each_webhook_delivery(ws, f, [&](const webhook_delivery& d) { ids.push_back(d.id); });
    CHECK(ids == std::vector<std::uint64_t>{a, c});
    ids.clear();
    f = {};
    f.state = webhook_delivery_state::failed;
    st->for_each_webhook_delivery(ws, f, [&](const webhook_delivery& d) { ids.push_back(d.id); });
    CHECK(ids == std::vector<std::uint64_t>{a});
    ids.clear();
    f = {};
    f.after_id = a;
    f.limit = 1;
    st->for_each_webhook_delivery(ws, f, [&](const webhook_delivery& d) { ids.push_back(d.id); });
    CHECK(ids == std::vector<std::uint64_t>{b});

    // Give up an endpoint's pending rows; retry its failed ones.
    const auto gave_up =
        commit(*st, ws, {store_ops::fail_webhook_deliveries{"ep1", "disabled", at_seconds(70)}});
    CHECK(gave_up.ops[0].webhook == 1);
    CHECK(stored_delivery(*st, ws, c).state == webhook_delivery_state::failed);
    CHECK(stored_delivery(*st, ws, c).detail == "disabled");
    const auto back = commit(
        *st, ws, {store_ops::retry_webhook_deliveries{"ep1", at_seconds(0), at_seconds(80)}});
    CHECK(back.ops[0].webhook == 2);
    for (auto id : {a, c}) {
        const auto d = stored_delivery(*st, ws, id);
        CHECK(d.state == webhook_delivery_state::pending);
        CHECK(d.attempts == 0);
        CHECK(d.due_at == at_seconds(80));
    }
    CHECK(
        commit(*st, ws, {store_ops::retry_webhook_deliveries{"ep1", at_seconds(2), at_seconds(80)}})
            .ops[0]
            .webhook == 0);  // created at 1: not since 2

    // Purge forgets ended rows updated before the cut; another workspace
    // sees none of this one's rows.
    CHECK(st->purge_webhook_deliveries(ws, at_seconds(21)) == 0);
    CHECK(st->purge_webhook_deliveries(ws, at_seconds(22)) == 1);
    CHECK_FALSE(st->find_webhook_delivery(ws, b).has_value());
    CHECK(st->count_webhook_deliveries(ws + "-other", "").pending == 0);
    CHECK_FALSE(st->find_webhook_delivery(ws + "-other", a).has_value());
    // A member without a live lease claims nothing.
    st->detach(ws, other);
    bool refused = false;
    try {
        st->claim_webhook_deliveries(ws, other, at_seconds(100), 10);
    } catch (const mailers::exception& e) {
        refused = e.code() == make_error_code(errc::store_error);
    }
    CHECK(refused);
    // Reopened, the rows are still there.
    st.reset();
    CHECK(stored_delivery(*open(), ws, a).state == webhook_delivery_state::pending);
}

inline void check_outbox_recover(const store_factory& open, const std::string& ws) {
    auto st = open();
    for (int i = 0; i < 4; ++i)
        add_delivery(*st, ws, sample_delivery("ep", "k" + std::to_string(i)));
    const auto a = st->attach(ws, sample_member("a"), long_lease);
    const auto b = st->attach(ws, sample_member("b"), long_lease);
    const auto held_a = st->claim_webhook_deliveries(ws, a, at_seconds(20), 2);
    const auto held_b = st->claim_webhook_deliveries(ws, b, at_seconds(20), 2);
    REQUIRE(held_a.size() == 2);
    REQUIRE(held_b.size() == 2);
    const std::uint64_t dead[] = {a};
    st->recover(ws, dead, at_seconds(30), "process gone");
    for (const auto& d : held_a) {
        const auto now = stored_delivery(*st, ws, d.id);
        CHECK(now.state == webhook_delivery_state::pending);
        CHECK(now.claimed_by == 0);
        CHECK(now.attempts == 1);
        CHECK(now.due_at == d.due_at);
    }
    for (const auto& d : held_b) CHECK(stored_delivery(*st, ws, d.id) == d);
    // The recovered member's late end is refused.
    CHECK_FALSE(
        commit(
            *st, ws,
            {store_ops::end_webhook_attempt{
                held_a[0].id, a, webhook_delivery_state::delivered, {}, 200, "", at_seconds(31)}})
            .ops[0]
            .applied);
    // Several ends in one commit apply as if one by one: a row ended twice
    // takes the first, a row its member no longer holds none.
    const auto batch = commit(
        *st, ws,
        {store_ops::end_webhook_attempt{held_b[0].id, b, webhook_delivery_state::delivered, {},
                                        200, "", at_seconds(32)},
         store_ops::end_webhook_attempt{held_a[1].id, a, webhook_delivery_state::delivered, {},
                                        200, "", at_seconds(32)},
         store_ops::end_webhook_attempt{held_b[0].id, b, webhook_delivery_state::failed, {}, 500,
                                        "", at_seconds(32)}});
    CHECK(batch.ops[0].applied);
    CHECK_FALSE(batch.ops[1].applied);
    CHECK_FALSE(batch.ops[2].applied);
    CHECK(stored_delivery(*st, ws, held_b[0].id).state == webhook_delivery_state::delivered);
    CHECK(stored_delivery(*st, ws, held_b[0].id).last_status == 200);
    CHECK(stored_delivery(*st, ws, held_a[1].id).state == webhook_delivery_state::pending);
    st->detach(ws, b);
    const auto c = st->attach(ws, sample_member("c"), long_lease);
    CHECK(st->claim_webhook_deliveries(ws, c, at_seconds(40), 10).size() == 3);
}

inline void check_race_outbox(const store_factory& open, const std::string& ws,
                              std::size_t rows = 1000, std::size_t threads = 4) {
    {
        auto st = open();
        std::vector<store_op> ops;
        for (std::size_t n = 0; n < rows; ++n) {
            ops.push_back(store_ops::add_webhook_delivery{
                sample_delivery("ep", "k" + std::to_string(n), static_cast<std::int64_t>(n % 40))});
            if (ops.size() == 250 || n + 1 == rows) {
                commit(*st, ws, ops);
                ops.clear();
            }
        }
    }
    std::vector<std::shared_ptr<store>> handles;
    for (std::size_t i = 0; i < threads; ++i) handles.push_back(open());
    std::mutex mu;
    std::map<std::uint64_t, int> delivered;
    std::atomic<std::size_t> done{0}, not_applied{0};
    run_threads(threads, [&](std::size_t t) {
        store& st = *handles[t];
        const auto me = st.attach(ws, sample_member("deliver-" + std::to_string(t)), long_lease);
        std::minstd_rand rng(static_cast<std::uint32_t>(t + 7));
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::minutes(2);
        while (done.load() < rows) {
            if (std::chrono::steady_clock::now() > deadline)
                throw std::runtime_error("the outbox stopped draining");
            const auto got = st.claim_webhook_deliveries(ws, me, at_seconds(100), 1 + rng() % 8);
            std::vector<store_op> ops;
            for (const auto& d : got) {
                // One in five fails its first attempt and is due again at once.
                const bool retry = d.attempts == 1 && rng() % 5 == 0;
                ops.push_back(store_ops::end_webhook_attempt{
                    d.id, me,
                    retry ? webhook_delivery_state::pending : webhook_delivery_state::delivered,
                    at_seconds(50), retry ? 500 : 200, "", at_seconds(100)});
            }
            if (ops.empty()) {
                std::this_thread::yield();
                continue;
            }
            const auto r = st.commit(ws, ops);
            std::lock_guard lock(mu);
            for (std::size_t i = 0; i < ops.size(); ++i) {
                const auto& op = std::get<store_ops::end_webhook_attempt>(ops[i]);
                if (!r.ops[i].applied) {
                    ++not_applied;
                    continue;
                }
                if (op.state == webhook_delivery_state::delivered) {
                    ++delivered[op.id];
                    ++done;
                }
            }
        }
    });
    CHECK(not_applied.load() == 0);
    CHECK(delivered.size() == rows);
    for (const auto& [id, n] : delivered) CHECK_MESSAGE(n == 1, "row " << id << " delivered " << n);
    CHECK(open()->count_webhook_deliveries(ws, "ep").delivered == rows);
}

// --- end outbound webhooks ---

// --- erasure of a person ---------------------------------------------------------

inline std::string lower_ascii(std::string_view s) {
    std::string out(s);
    for (auto& c : out)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return out;
}

/// An erasure of "jane@example.com" as an engine would ask for it, with a
/// keyed-hash entry of 64 'a' digits. `audited` receives what the audit
/// callback was given.
inline person_erasure sample_erasure(erasure_counts* audited = nullptr,
                                     std::vector<erased_row>* removed = nullptr) {
    person_erasure e;
    e.keys = {"jane@example.com"};
    e.mentions = [](std::string_view t) {
        return lower_ascii(t).find("jane@example.com") != std::string::npos;
    };
    e.request_mentions = [](std::string_view b) {
        return std::string_view(b).find("jane@") != std::string_view::npos;
    };
    e.entries = {sample_suppression(suppression_kind::address, "erased:" + std::string(64, 'a'),
                                    suppression_reason::legal)};
    e.at = at_seconds(100);
    e.audit = [audited, removed](const erasure_counts& n, std::span<const erased_row> rows) {
        if (audited) *audited = n;
        if (removed) removed->assign(rows.begin(), rows.end());
        auto r = sample_audit(1).front();
        r.action = "person.erase";
        r.resource_type = "person";
        r.resource_id = "erased:" + std::string(64, 'a');
        return store_ops::append_audit{r, ""};
    };
    return e;
}

inline bool mentions_jane(std::string_view text) {
    return lower_ascii(text).find("jane@") != std::string::npos;
}

inline void check_erase_person(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto jane = sample_suppression(suppression_kind::address, "jane@example.com");
    const auto other = sample_suppression(suppression_kind::address, "other@example.com");
    // Jane's key: written, removed, written again (current, replaced, and
    // a tombstone in between).
    commit(*st, ws, {store_ops::put_suppression{jane}, store_ops::put_suppression{other}});
    commit(*st, ws, {store_ops::delete_suppression{suppression_kind::address, jane.value}});
    commit(*st, ws, {store_ops::put_suppression{jane}});

    auto to_jane = sample_send(1, "campaign:c1:jane@example.com");
    to_jane.recipient = "jane@example.com";
    const auto s1 = reserve_new(*st, ws, to_jane);
    auto bounced = stored_send(*st, ws, s1);
    bounced.state = send_state::failed;
    bounced.detail = "550 5.1.1 <Jane@Example.com>: no such user";
    REQUIRE(update_one(*st, ws, bounced));
    auto mentioned = sample_send(2);
    const auto s2 = reserve_new(*st, ws, mentioned);
    auto m2 = stored_send(*st, ws, s2);
    m2.state = send_state::failed;
    m2.detail = "forwarded to jane@example.com";
    REQUIRE(update_one(*st, ws, m2));
    const auto s3 = reserve_new(*st, ws, sample_send(3, "keep-me"));

    auto q_jane = sample_queued(1, "campaign:c1:jane@example.com");
    q_jane.request = std::string("to jane@\0x", 10);
    const auto q1 = enqueue_new(*st, ws, q_jane);
    auto q_claimed = sample_queued(2);
    q_claimed.request = "jane@ again";
    const auto q2 = enqueue_new(*st, ws, q_claimed);
    const auto q3 = enqueue_new(*st, ws, sample_queued(3, "other-item"));
    const auto m = st->attach(ws, sample_member("eraser"), long_lease);
    auto claimed = st->claim_queued(ws, m, at_seconds(1), 10);
    // Only q2 is claimed: q1 and q3 go back to waiting.
    for (const auto& c : claimed)
        if (c.id != q2)
            commit(*st, ws,
                   {store_ops::defer_queued{c.id, m, at_seconds(500), "cap", "", at_seconds(1)}});

    const auto e1 = enroll_one(*st, ws, sample_enrollment("s1", "jane@example.com")).id;
    const auto e2 = enroll_one(*st, ws, sample_enrollment("s2", "jane@example.com")).id;
    const auto e3 = enroll_one(*st, ws, sample_enrollment("s1", "other@example.com")).id;
    commit(*st, ws,
           {store_ops::advance_enrollment{e1, 0, "no-key", step_outcome::sent, false, "rep1",
                                          "jane-step@x", "", {}, "", at_seconds(2)}});
    REQUIRE(st->find_enrollment_by_message(ws, "jane-step@x").has_value());

    auto d_jane = sample_delivery("ep1", "send:1:sent");
    d_jane.payload = R"({"type":"email.sent","data":{"recipient":"JANE@example.com"}})";
    const auto d1 = add_delivery(*st, ws, d_jane);
    const auto d2 = add_delivery(*st, ws, sample_delivery("ep1", "send:3:sent"));
    commit(*st, ws,
           {key_op("reply:jane@example.com:1", 1, 10'000), key_op("other-key@x", 1, 10'000)});
    commit(*st, ws,
           {store_ops::tally_soft_bounce{"jane@example.com", at_seconds(3), at_seconds(0), 1},
            store_ops::tally_soft_bounce{"jane@example.com", at_seconds(4), at_seconds(0), 1},
            store_ops::tally_soft_bounce{"other@example.com", at_seconds(4), at_seconds(0), 1}});

    const auto before = st->changes_since(ws, 0).seq;
    erasure_counts audited;
    std::vector<erased_row> removed;
    const auto r = st->erase_person(ws, sample_erasure(&audited, &removed));
    CHECK(r.counts.suppression_rows == 2);  // the current row and the replaced one
    CHECK(removed.size() == 2);
    CHECK(r.counts.sends == 2);
    CHECK(r.counts.queued == 2);
    CHECK(r.counts.queue_cancelled == 1);
    CHECK(r.counts.enrollments == 2);
    CHECK(r.counts.webhook_deliveries == 1);
    CHECK(r.counts.recorded_keys == 1);
    CHECK(r.counts.soft_bounces >= 1);  // a row per bounce or per address
    CHECK(audited == r.counts);
    CHECK(r.change_seq > before);
    CHECK(r.audit_seq != 0);

    // The suppression: the hash in, every version of the address out.
    CHECK_FALSE(st->find_suppression(ws, suppression_kind::address, jane.value).has_value());
    const auto erased =
        st->find_suppression(ws, suppression_kind::address, "erased:" + std::string(64, 'a'));
    REQUIRE(erased.has_value());
    CHECK(erased->reason == suppression_reason::legal);
    CHECK(st->find_suppression(ws, suppression_kind::address, other.value) == other);
    st->for_each_suppression_version(ws, [&](const suppression_version& v) {
        CHECK_FALSE(mentions_jane(v.entry.value));
    });
    const auto cs = st->changes_since(ws, before);
    CHECK(cs.seq == r.change_seq);
    REQUIRE(cs.suppressions.size() == 1);
    CHECK(cs.suppressions[0] == *erased);
    for (const auto& [kind, value] : cs.deleted_suppressions) CHECK_FALSE(mentions_jane(value));
    const auto log = [&] {
        std::vector<audit_record> out;
        st->for_each_audit(ws, r.audit_seq, [&](const audit_record& a) { out.push_back(a); });
        return out;
    }();
    REQUIRE(log.size() == 1);
    CHECK(log[0].action == "person.erase");
    CHECK(log[0].change_seq == r.change_seq);

    // The ledger keeps its rows, without the person; the key is free again.
    for (const auto id : {s1, s2}) {
        const auto row = stored_send(*st, ws, id);
        CHECK(row.recipient.empty());
        CHECK(row.detail.empty());
        CHECK(row.idempotency_key.empty());
        CHECK(row.state == send_state::failed);
    }
    CHECK(stored_send(*st, ws, s3).idempotency_key == "keep-me");
    CHECK(stored_send(*st, ws, s3).recipient == "user3@example.com");

    // The queue: requests emptied, a waiting item cancelled, a claimed one
    // left to its holder.
    const auto a1 = stored_queued(*st, ws, q1);
    CHECK(a1.state == queue_state::cancelled);
    CHECK(a1.request.empty());
    CHECK(a1.idempotency_key.empty());
    const auto a2 = stored_queued(*st, ws, q2);
    CHECK(a2.state == queue_state::claimed);
    CHECK(a2.request.empty());
    CHECK(stored_queued(*st, ws, q3).state == queue_state::waiting);
    CHECK(stored_queued(*st, ws, q3).request == sample_queued(3).request);

    CHECK_FALSE(st->find_enrollment(ws, e1).has_value());
    CHECK_FALSE(st->find_enrollment(ws, e2).has_value());
    CHECK(st->find_enrollment(ws, e3).has_value());
    CHECK_FALSE(st->find_enrollment_by_message(ws, "jane-step@x").has_value());
    CHECK_FALSE(st->find_webhook_delivery(ws, d1).has_value());
    CHECK(st->find_webhook_delivery(ws, d2).has_value());

    // Again: nothing left to remove; the entry is written again.
    const auto again = st->erase_person(ws, sample_erasure());
    CHECK(again.counts == erasure_counts{});
    // Her soft bounces are forgotten: a new one is the first; others' stay.
    const auto tally = [&](const char* who) {
        return commit(*st, ws,
                      {store_ops::tally_soft_bounce{who, at_seconds(6), at_seconds(0), 2}})
            .ops[0]
            .applied;
    };
    CHECK_FALSE(tally("jane@example.com"));
    CHECK(tally("other@example.com"));
    CHECK(key_is_free(*st, ws, "reply:jane@example.com:1", 2));
    CHECK_FALSE(key_is_free(*st, ws, "other-key@x", 2));
    CHECK(again.audit_seq == r.audit_seq + 1);
    // A sweep without entries or audit record changes no suppression.
    auto sweep = sample_erasure();
    sweep.entries.clear();
    sweep.audit = nullptr;
    const auto head = st->changes_since(ws, 0).seq;
    const auto swept = st->erase_person(ws, sweep);
    CHECK(swept.change_seq == 0);
    CHECK(swept.audit_seq == 0);
    CHECK(st->changes_since(ws, 0).seq == head);
    reserve_new(*st, ws, sample_send(4, "campaign:c1:jane@example.com"));
}

inline void check_erase_person_all_or_nothing(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto jane = sample_suppression(suppression_kind::address, "jane@example.com");
    commit(*st, ws, {store_ops::put_suppression{jane}});
    auto to_jane = sample_send(1);
    to_jane.recipient = "jane@example.com";
    const auto s1 = reserve_new(*st, ws, to_jane);
    const auto e1 = enroll_one(*st, ws, sample_enrollment("s1", "jane@example.com")).id;
    const auto head = st->changes_since(ws, 0).seq;
    auto failing = sample_erasure();
    failing.audit = [](const erasure_counts&, std::span<const erased_row>) -> store_ops::append_audit {
        throw std::runtime_error("audit refused");
    };
    CHECK_THROWS(st->erase_person(ws, failing));
    CHECK(st->find_suppression(ws, suppression_kind::address, jane.value) == jane);
    CHECK(stored_send(*st, ws, s1).recipient == "jane@example.com");
    CHECK(st->find_enrollment(ws, e1).has_value());
    CHECK(st->changes_since(ws, 0).seq == head);
}

inline void check_purge_sends(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto old_done = reserve_new(*st, ws, sample_send(1, "old-key", at_seconds(0)));
    auto row = stored_send(*st, ws, old_done);
    row.state = send_state::accepted;
    REQUIRE(update_one(*st, ws, row));
    const auto old_open = reserve_new(*st, ws, sample_send(2, "open-key", at_seconds(0)));
    const auto old_unknown = reserve_new(*st, ws, sample_send(3, {}, at_seconds(5)));
    row = stored_send(*st, ws, old_unknown);
    row.state = send_state::unknown;
    REQUIRE(update_one(*st, ws, row));
    const auto recent = reserve_new(*st, ws, sample_send(4, "recent-key", at_seconds(20)));
    row = stored_send(*st, ws, recent);
    row.state = send_state::failed;
    REQUIRE(update_one(*st, ws, row));

    CHECK(st->purge_sends(ws, at_seconds(10)) == 2);
    CHECK_FALSE(st->find_send(ws, old_done).has_value());
    CHECK_FALSE(st->find_send(ws, old_unknown).has_value());
    CHECK(stored_send(*st, ws, old_open).state == send_state::reserved);
    CHECK(stored_send(*st, ws, recent).state == send_state::failed);
    CHECK(st->purge_sends(ws, at_seconds(10)) == 0);
    // The key is free again; ids are never given twice.
    const auto again = reserve_new(*st, ws, sample_send(5, "old-key", at_seconds(30)));
    CHECK(again > recent);
    CHECK(reserve_one(*st, ws, sample_send(6, "recent-key", at_seconds(30))).status ==
          reserve_status::duplicate);
}

// --- end erasure ------------------------------------------------------------------

// --- audit retention ---------------------------------------------------------------

/// An audit_purge before `before`, bounded by `keep_from`, whose record
/// names the anchor as engines write it.
inline audit_purge audit_purge_at(time_point before, std::uint64_t keep_from = 0) {
    audit_purge p;
    p.before = before;
    p.keep_from = keep_from;
    p.at = at_seconds(1000);
    p.audit = [before](const audit_anchor& a, std::uint64_t purged) {
        audit_record r;
        r.at = at_seconds(1000);
        r.actor = "dpo";
        r.action = std::string(audit_purge_action);
        r.resource_type = "audit";
        r.after = audit_purge_body(a, before, purged);
        return store_ops::append_audit{r};
    };
    return p;
}

inline void check_audit_purge(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK(st->find_audit_anchor(ws) == audit_anchor{});
    CHECK(st->purge_audit(ws, audit_purge_at(at_seconds(100))).purged == 0);
    // Records at 1..6 s, then one at 2 s: a prefix goes, the older record
    // behind a newer one stays.
    std::vector<store_op> ops;
    for (const auto& r : sample_audit(6, 1)) ops.push_back(store_ops::append_audit{r});
    auto late = sample_audit(1, 2).front();
    ops.push_back(store_ops::append_audit{late});
    commit(*st, ws, ops);
    const auto before = all_audit(*st, ws);
    REQUIRE(before.size() == 7);

    auto r = st->purge_audit(ws, audit_purge_at(at_seconds(4)));
    CHECK(r.purged == 3);
    CHECK(r.anchor.seq == 4);
    CHECK(r.anchor.hash == before[2].hash);
    CHECK(r.anchor.at == at_seconds(1000));
    CHECK_FALSE(r.anchor.keyed);
    CHECK(r.audit_seq == 8);
    CHECK(st->find_audit_anchor(ws) == r.anchor);
    auto kept = all_audit(*st, ws);
    REQUIRE(kept.size() == 5);
    CHECK(kept.front() == before[3]);
    CHECK(kept.back().action == audit_purge_action);
    CHECK(kept.back().prev_hash == before.back().hash);
    CHECK_FALSE(verify_audit_chain(kept, audit_verify_options{{}, {}, r.anchor}));
    CHECK(verify_audit_chain(kept, audit_verify_options{}));
    // Nothing old enough: nothing changes, no record.
    CHECK(st->purge_audit(ws, audit_purge_at(at_seconds(4))).purged == 0);
    CHECK(all_audit(*st, ws).size() == 5);
    // keep_from bounds the cut; then record 7 (2 s) goes with 5 and 6, up to
    // the first purge record (1000 s).
    r = st->purge_audit(ws, audit_purge_at(at_seconds(100), 5));
    CHECK(r.purged == 1);
    CHECK(r.anchor.seq == 5);
    r = st->purge_audit(ws, audit_purge_at(at_seconds(7)));
    CHECK(r.purged == 3);
    CHECK(r.anchor.seq == 8);
    // The newest record always stays.
    r = st->purge_audit(ws, audit_purge_at(at_seconds(2000)));
    CHECK(r.anchor.seq == r.audit_seq - 1);
    kept = all_audit(*st, ws);
    CHECK(kept.size() == 2);
    CHECK_FALSE(verify_audit_chain(kept, audit_verify_options{{}, {}, r.anchor}));
    // Appends continue the chain; another handle sees the anchor.
    commit(*st, ws, {store_ops::append_audit{sample_audit(1, 9).front()}});
    auto other = open();
    CHECK(other->find_audit_anchor(ws) == r.anchor);
    CHECK_FALSE(verify_audit_chain(all_audit(*other, ws), audit_verify_options{{}, {}, r.anchor}));
    CHECK(other->find_audit_anchor(ws + "-other") == audit_anchor{});
}

inline void check_audit_purge_keyed(const store_factory& open, const std::string& ws) {
    const std::string key = "conformance key";
    auto st = open();
    auto recs = sample_audit(4, 1);
    recs[1].action = std::string(audit_key_action);
    commit(*st, ws,
           {store_ops::append_audit{recs[0]}, store_ops::append_audit{recs[1], key},
            store_ops::append_audit{recs[2], key}, store_ops::append_audit{recs[3], key}});
    auto p = audit_purge_at(at_seconds(3));
    p.audit = [](const audit_anchor& a, std::uint64_t purged) {
        audit_record r;
        r.at = at_seconds(1000);
        r.action = std::string(audit_purge_action);
        r.after = audit_purge_body(a, at_seconds(3), purged);
        return store_ops::append_audit{r, "conformance key"};
    };
    const auto r = st->purge_audit(ws, p);
    CHECK(r.purged == 2);
    CHECK(r.anchor.keyed);
    const auto kept = all_audit(*st, ws);
    CHECK_FALSE(verify_audit_chain(kept, audit_verify_options{{}, key, r.anchor}));
    std::uint64_t bad = 0;
    CHECK(verify_audit_chain(kept, audit_verify_options{{}, {}, r.anchor}, &bad));
    CHECK(bad == 3);
}

/// Appends and purges from several handles and threads: every purge is
/// ordered with every append, so the chain verifies from the anchor.
inline void check_race_audit_purge(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    // Records to cut whichever thread runs first: the newest always stays.
    std::vector<store_op> seed;
    for (const auto& r : sample_audit(3)) seed.push_back(store_ops::append_audit{r});
    handles[0]->commit(ws, seed);
    std::atomic<std::uint64_t> purged{0};
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        for (std::size_t i = 0; i < 8; ++i) {
            if (t % 2 == 0) {
                purged += st.purge_audit(ws, audit_purge_at(at_seconds(5000))).purged;
            } else {
                std::vector<store_op> ops;
                for (const auto& r : sample_audit(2, t * 100 + i))
                    ops.push_back(store_ops::append_audit{r});
                st.commit(ws, ops);
            }
        }
    });
    CHECK(purged > 0);
    auto st = open();
    const auto anchor = st->find_audit_anchor(ws);
    const auto chain = all_audit(*st, ws);
    REQUIRE_FALSE(chain.empty());
    CHECK(chain.front().seq == anchor.seq);
    std::uint64_t bad = 0;
    CHECK_FALSE(verify_audit_chain(chain, audit_verify_options{{}, {}, anchor}, &bad));
    INFO("first bad seq " << bad);
}

// --- end audit retention ---------------------------------------------------------

// --- daily counts and soft-bounce tallies ---------------------------------------

inline store_ops::add_counts count_op(count_day day, count_metric m,
                                      std::vector<std::pair<count_scope, std::string>> targets,
                                      std::uint64_t n = 1, bool if_previous = false) {
    return store_ops::add_counts{day, m, std::move(targets), n, if_previous};
}

/// The stored count of `m` on `day` for (scope, id); 0 when none.
inline std::uint64_t stored_count(store& st, std::string_view ws, count_scope scope,
                                  std::string_view id, count_day day, count_metric m) {
    for (const auto& d : st.daily_counts(ws, scope, id, day, day))
        if (d.day == day) return d[m];
    return 0;
}

inline void check_daily_counts(const store_factory& open, const std::string& ws) {
    auto st = open();
    const count_day d0 = 19'700;
    const std::vector<std::pair<count_scope, std::string>> send_targets{
        {count_scope::mailbox, "rep1"},
        {count_scope::pool, "outbound"},
        {count_scope::provider, "ses-eu"},
        {count_scope::sender_domain, "brand.example"},
        {count_scope::workspace, ""}};
    // Several adds in one commit are added up; counts publish no change.
    auto r = commit(*st, ws,
                    {count_op(d0, count_metric::sent, send_targets),
                     count_op(d0, count_metric::sent, send_targets, 2),
                     count_op(d0, count_metric::bounced_hard, {{count_scope::mailbox, "rep1"}}),
                     count_op(d0 + 1, count_metric::sent, {{count_scope::mailbox, "rep1"}}, 5)});
    CHECK(r.ops[0].applied);
    CHECK(r.ops[3].applied);
    CHECK(r.change_seq == 0);
    // And across commits and handles.
    auto other = open();
    commit(*other, ws, {count_op(d0, count_metric::sent, {{count_scope::mailbox, "rep1"}})});

    auto rows = st->daily_counts(ws, count_scope::mailbox, "rep1", d0 - 5, d0 + 5);
    REQUIRE(rows.size() == 2);
    CHECK(rows[0].day == d0);
    CHECK(rows[0][count_metric::sent] == 4);
    CHECK(rows[0][count_metric::bounced_hard] == 1);
    CHECK(rows[0][count_metric::delivered] == 0);
    CHECK(rows[1].day == d0 + 1);
    CHECK(rows[1][count_metric::sent] == 5);
    // The range is inclusive and days outside it are left out.
    CHECK(st->daily_counts(ws, count_scope::mailbox, "rep1", d0 + 1, d0 + 1).size() == 1);
    CHECK(st->daily_counts(ws, count_scope::mailbox, "rep1", d0 + 2, d0 + 9).empty());
    // Scopes, ids and workspaces are apart.
    CHECK(stored_count(*st, ws, count_scope::pool, "outbound", d0, count_metric::sent) == 3);
    CHECK(stored_count(*st, ws, count_scope::workspace, "", d0, count_metric::sent) == 3);
    CHECK(stored_count(*st, ws, count_scope::pool, "rep1", d0, count_metric::sent) == 0);
    CHECK(stored_count(*st, ws, count_scope::mailbox, "rep2", d0, count_metric::sent) == 0);
    CHECK(stored_count(*st, ws + "-elsewhere", count_scope::mailbox, "rep1", d0,
                       count_metric::sent) == 0);

    // if_previous_applied follows the op before it: an update_send that
    // takes, one that does not, a new key, a duplicate one.
    const std::uint64_t owner = st->attach(ws, sample_member("counts"), long_lease);
    const auto id = reserve_new(*st, ws, sample_send(1, "count-1", at_seconds(10), owner));
    ledger_row done = stored_send(*st, ws, id);
    done.state = send_state::accepted;
    const auto tgt = std::vector<std::pair<count_scope, std::string>>{{count_scope::mailbox, "c"}};
    r = commit(*st, ws,
               {store_ops::update_send{done}, count_op(d0, count_metric::sent, tgt, 1, true)});
    CHECK(r.ops[0].applied);
    CHECK(r.ops[1].applied);
    r = commit(*st, ws,
               {store_ops::update_send{done}, count_op(d0, count_metric::sent, tgt, 1, true)});
    CHECK_FALSE(r.ops[0].applied);
    CHECK_FALSE(r.ops[1].applied);
    r = commit(*st, ws,
               {key_op("counted", 10, 100), count_op(d0, count_metric::opened, tgt, 1, true),
                key_op("counted", 10, 100), count_op(d0, count_metric::opened, tgt, 1, true)});
    CHECK(r.ops[1].applied);
    CHECK_FALSE(r.ops[3].applied);
    // Guarded by a duplicate record: skipped.
    r = commit(*st, ws, {key_op("counted", 10, 100, 1), count_op(d0, count_metric::opened, tgt)});
    CHECK_FALSE(r.ops[1].applied);
    CHECK(stored_count(*st, ws, count_scope::mailbox, "c", d0, count_metric::sent) == 1);
    CHECK(stored_count(*st, ws, count_scope::mailbox, "c", d0, count_metric::opened) == 1);

    // Refused, counting nothing: if_previous_applied on the first op; a
    // commit failing on a later op takes its counts back.
    commit_must_fail(*st, ws, {count_op(d0, count_metric::sent, tgt, 1, true)});
    queued_send bad;
    bad.not_before = at_seconds(1);
    commit_must_fail(*st, ws, {count_op(d0, count_metric::sent, tgt), store_ops::enqueue{bad}});
    CHECK(stored_count(*st, ws, count_scope::mailbox, "c", d0, count_metric::sent) == 1);

    // purge_counts forgets the days before its day only.
    CHECK(st->purge_counts(ws, d0 + 1) >= 2);
    CHECK(st->daily_counts(ws, count_scope::mailbox, "rep1", d0, d0).empty());
    CHECK(stored_count(*st, ws, count_scope::mailbox, "rep1", d0 + 1, count_metric::sent) == 5);
}

inline store_ops::tally_soft_bounce tally_op(std::string address, std::int64_t at,
                                             std::int64_t since, std::uint32_t threshold) {
    return store_ops::tally_soft_bounce{std::move(address), at_seconds(at), at_seconds(since),
                                        threshold};
}

inline void check_soft_bounce_tally(const store_factory& open, const std::string& ws) {
    auto st = open();
    auto tally = [&](store& s, std::string a, std::int64_t at, std::int64_t since,
                     std::uint32_t threshold) {
        return commit(s, ws, {tally_op(std::move(a), at, since, threshold)}).ops[0].applied;
    };
    CHECK_FALSE(tally(*st, "a@example.com", 10, 0, 3));
    CHECK_FALSE(tally(*st, "b@example.com", 11, 0, 3));  // another address counts apart
    auto other = open();
    CHECK_FALSE(tally(*other, "a@example.com", 20, 0, 3));
    CHECK(tally(*st, "a@example.com", 30, 0, 3));  // the third within the window
    CHECK(tally(*st, "a@example.com", 31, 0, 3));  // and on
    // Bounces before `since` no longer count.
    CHECK_FALSE(tally(*st, "a@example.com", 40, 25, 4));  // 30, 31, 40
    CHECK(tally(*st, "a@example.com", 41, 25, 4));
    CHECK_FALSE(tally(*st, "a@example.com", 1000, 900, 2));
    CHECK(tally(*st, "a@example.com", 1001, 900, 2));
    // Workspaces are apart.
    CHECK_FALSE(
        commit(*st, ws + "-elsewhere", {tally_op("a@example.com", 1002, 900, 2)}).ops[0].applied);
    // Guarded by a duplicate record: not counted.
    REQUIRE(commit(*st, ws, {key_op("sb", 10, 100)}).ops[0].applied);
    auto r = commit(*st, ws, {key_op("sb", 10, 100, 1), tally_op("c@example.com", 50, 0, 1)});
    CHECK_FALSE(r.ops[1].applied);
    CHECK_FALSE(tally(*st, "c@example.com", 51, 0, 2));  // the skipped one did not count
    // A threshold of 0 is refused, with the rest of the commit.
    commit_must_fail(*st, ws,
                     {tally_op("d@example.com", 60, 0, 1), tally_op("d@example.com", 61, 0, 0)});
    CHECK_FALSE(tally(*st, "d@example.com", 62, 0, 2));
    // purge_counts forgets bounces before its day.
    CHECK(st->purge_counts(ws, utc_day(at_seconds(2000)) + 1) >= 1);
    CHECK_FALSE(tally(*st, "a@example.com", 3000, 0, 2));
}

inline void check_race_counts(const store_factory& open, const std::string& ws) {
    const auto handles = open_handles(open);
    constexpr std::size_t keys = 10;
    constexpr std::uint32_t threshold = 5;
    std::atomic<int> applied_keys{0}, reached{0};
    const auto tgt = std::vector<std::pair<count_scope, std::string>>{
        {count_scope::mailbox, "race"}, {count_scope::workspace, ""}};
    run_threads(race_threads, [&](std::size_t t) {
        store& st = *handles[t % handles.size()];
        // Each thread delivers every event once, in its own order: the
        // event's count and a soft-bounce tally under its record, as a
        // redelivered webhook reaching several processes would.
        for (std::size_t i = 0; i < keys; ++i) {
            const std::size_t k = (i + t * 3) % keys;
            const std::vector<store_op> ops{
                key_op("race-count-" + std::to_string(k), 10, 1000, 2),
                count_op(19'000, count_metric::bounced_soft, tgt),
                tally_op("race@example.com", static_cast<std::int64_t>(k), 0, threshold)};
            const auto r = st.commit(ws, ops);
            if (r.ops[0].applied) ++applied_keys;
            if (r.ops[2].applied) ++reached;
            // Counts without a guard all count.
            st.commit(ws, std::vector<store_op>{count_op(19'000, count_metric::sent, tgt)});
        }
    });
    CHECK(applied_keys.load() == static_cast<int>(keys));
    // Each tally saw every earlier one: the 5th to the 10th reached it.
    CHECK(reached.load() == static_cast<int>(keys - threshold + 1));
    auto st = open();
    CHECK(stored_count(*st, ws, count_scope::mailbox, "race", 19'000, count_metric::bounced_soft) ==
          keys);
    CHECK(stored_count(*st, ws, count_scope::workspace, "", 19'000, count_metric::sent) ==
          keys * race_threads);
}
// --- end daily counts

// --- suppression_count

/// suppression_count is the number of entries for_each_suppression visits,
/// kept through every path that writes suppressions: replacing a key, a
/// delete of a key that is not there, a commit writing one key twice, an
/// import with duplicates and over existing keys (and one that fails), an
/// erasure, a failed commit, and writers racing on overlapping keys.
inline void check_suppression_count(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto counted = [&](const std::string& w) {
        std::uint64_t n = 0;
        st->for_each_suppression(w, [&](const suppression_entry&) { ++n; });
        return n;
    };
    const auto same = [&](std::uint64_t want, const char* when) {
        INFO(when);
        CHECK(st->suppression_count(ws) == want);
        CHECK(counted(ws) == want);
    };
    same(0, "never written");
    const auto a = sample_suppression(suppression_kind::address, "ann@example.com");
    const auto b = sample_suppression(suppression_kind::address, "bob@example.com");
    const auto d = sample_suppression(suppression_kind::domain, "blocked.example");
    commit(*st, ws,
           {store_ops::put_suppression{a}, store_ops::put_suppression{b},
            store_ops::put_suppression{d}});
    same(3, "three puts");
    auto a2 = a;
    a2.source = "again";
    commit(*st, ws, {store_ops::put_suppression{a2}});
    same(3, "a key replaced");
    commit(*st, ws,
           {store_ops::delete_suppression{suppression_kind::address, "nobody@example.com"}});
    same(3, "a delete of a missing key");
    commit(*st, ws, {store_ops::delete_suppression{suppression_kind::address, b.value}});
    same(2, "a delete");
    commit(*st, ws, {store_ops::delete_suppression{suppression_kind::address, b.value}});
    same(2, "the same delete again");
    // One commit writing keys twice: put then delete, delete then put.
    const auto c = sample_suppression(suppression_kind::address, "cy@example.com");
    commit(*st, ws,
           {store_ops::put_suppression{c},
            store_ops::delete_suppression{suppression_kind::address, c.value},
            store_ops::delete_suppression{suppression_kind::address, b.value},
            store_ops::put_suppression{b}, store_ops::put_suppression{b}});
    same(3, "a commit writing keys twice");
    // The same value as a domain and as an address are two entries.
    commit(*st, ws,
           {store_ops::put_suppression{sample_suppression(suppression_kind::domain, "cy.example")},
            store_ops::put_suppression{
                sample_suppression(suppression_kind::address, "cy.example@cy.example")}});
    same(5, "a domain beside an address");
    // A failed commit counts nothing.
    auto no_request = sample_queued(1, "cnt-1");
    no_request.request.clear();
    commit_must_fail(*st, ws,
                     {store_ops::put_suppression{
                          sample_suppression(suppression_kind::address, "gone@example.com")},
                      store_ops::enqueue{no_request}});
    same(5, "a failed commit");

    // An import with duplicates, over existing keys and a deleted one.
    auto entries = import_entries(200, "cnt");
    entries.push_back(entries[3]);
    entries.push_back(entries[10]);
    entries.push_back(a);
    entries.push_back(sample_suppression(suppression_kind::address, "cy@example.com"));
    st->import_suppressions(ws, sample_import(entries, sample_audit(1, 1)[0], 17));
    same(5 + 200 + 1, "an import with duplicates");
    // One that fails midway counts nothing.
    auto more = import_entries(100, "cnt-fail");
    CHECK_THROWS_AS(st->import_suppressions(ws, sample_import(more, sample_audit(1, 1)[0], 30, 2)),
                    import_stop);
    same(5 + 200 + 1, "a failed import");

    // An erasure removes the person's rows and puts the hashed entry.
    commit(*st, ws,
           {store_ops::put_suppression{
               sample_suppression(suppression_kind::address, "jane@example.com")}});
    same(207, "jane suppressed");
    st->erase_person(ws, sample_erasure());
    same(207, "jane erased, her hashed entry put");
    st->erase_person(ws, sample_erasure());
    same(207, "erased again");

    // Other workspaces are apart.
    CHECK(st->suppression_count(ws + "-other") == 0);

    // Writers racing on overlapping keys, with imports among them.
    const std::string race = ws + "-race";
    const auto handles = open_handles(open);
    run_threads(race_threads, [&](std::size_t t) {
        store& h = *handles[t % handles.size()];
        std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1);
        for (int i = 0; i < 40; ++i) {
            const auto key = "k" + std::to_string(rng() % 25) + "@example.com";
            if (i % 13 == 5) {
                std::vector<suppression_entry> list;
                for (int j = 0; j < 6; ++j)
                    list.push_back(
                        sample_suppression(suppression_kind::address,
                                           "k" + std::to_string(rng() % 25) + "@example.com"));
                h.import_suppressions(race, sample_import(list, sample_audit(1, 1)[0], 4));
            } else if (rng() % 2) {
                commit(h, race,
                       {store_ops::put_suppression{
                           sample_suppression(suppression_kind::address, key)}});
            } else {
                commit(h, race, {store_ops::delete_suppression{suppression_kind::address, key}});
            }
        }
    });
    CHECK(st->suppression_count(race) == counted(race));
}
// --- end suppression_count

inline void run_store_conformance(store_factory open, std::string workspace_prefix) {
    const std::string& p = workspace_prefix;
    SUBCASE("objects: put, replace, delete, order within a batch") {
        check_objects(open, p + "-objects");
    }
    SUBCASE("suppressions: put, replace, delete, find, for_each order") {
        check_suppressions(open, p + "-suppressions");
    }
    SUBCASE("point reads: last_change_seq, find_object, next_suppression") {
        check_point_reads(open, p + "-point-reads");
    }
    SUBCASE("suppression_count: every write path, racing writers") {
        check_suppression_count(open, p + "-count");
    }
    SUBCASE("import: one change, one audit record, the later entry of a key") {
        check_import(open, p + "-import");
    }
    SUBCASE("import: all or nothing") {
        check_import_all_or_nothing(open, p + "-import-atomic");
    }
    SUBCASE("race: concurrent imports") {
        check_race_import(open, p + "-race-import");
    }
    SUBCASE("new sends: ids, idempotency keys, duplicates") {
        check_new_sends(open, p + "-sends");
    }
    SUBCASE("caps: windows, floors, future uses, until") {
        check_cap_windows(open, p + "-caps");
    }
    SUBCASE("caps: minimum gap") {
        check_gap(open, p + "-gap");
    }
    SUBCASE("caps: stale configuration") {
        check_stale_config(open, p + "-stale");
    }
    SUBCASE("failover: a further attempt on the same row") {
        check_failover(open, p + "-failover");
    }
    SUBCASE("update_send: owner, states, released caps") {
        check_update_send(open, p + "-update");
    }
    SUBCASE("load window and for_each_send range") {
        check_recent_sends(open, p + "-recent");
    }
    SUBCASE("audit: seq, prev_hash and hash given by the store") {
        check_audit(open, p + "-audit");
    }
    SUBCASE("audit: appends hashed with the key they carry") {
        check_audit_keyed(open, p + "-audit-keyed");
    }
    SUBCASE("change feed: change seqs, changes_since, load") {
        check_change_feed(open, p + "-feed");
    }
    SUBCASE("members: attach, renew, lease, detach") {
        check_members(open, p + "-members");
    }
    SUBCASE("recover: reserved sends of gone members become unknown") {
        check_recover(open, p + "-recover");
    }
    SUBCASE("purge_cap_uses") {
        check_purge(open, p + "-purge");
    }
    SUBCASE("a failed commit changes nothing") {
        check_failed_commit_changes_nothing(open, p + "-atomic");
    }
    SUBCASE("commits persist across reopen") {
        check_reopen_persists(open, p + "-reopen");
    }
    SUBCASE("workspaces are isolated") {
        check_workspaces_isolated(open, p + "-iso");
    }
    SUBCASE("callbacks may throw") {
        check_callbacks(open, p + "-callbacks");
    }
    SUBCASE("random batches match a model") {
        check_random_against_model(open, p + "-random", test_seed());
    }
    SUBCASE("race: one cap, many handles and threads") {
        check_race_cap(open, p + "-race-cap");
    }
    SUBCASE("race: one idempotency key") {
        check_race_idempotency(open, p + "-race-key");
    }
    SUBCASE("race: one audit chain") {
        check_race_audit(open, p + "-race-audit");
    }
    SUBCASE("race: the change feed misses no commit") {
        check_race_change_feed(open, p + "-race-feed");
    }
    SUBCASE("race: ids never collide") {
        check_race_ids(open, p + "-race-ids");
    }
    SUBCASE("audit: records carry the change seq of their commit or import") {
        check_audit_change_seq(open, p + "-audit-change");
    }
    SUBCASE("suppressions: replaced and removed rows are kept as versions") {
        check_suppression_versions(open, p + "-versions");
    }
    SUBCASE("import: a workspace's first import, duplicates, a tombstone") {
        check_first_import(open, p + "-first-import");
    }
    SUBCASE("race: versions of one key written from many handles") {
        check_race_versions(open, p + "-race-versions");
    }
    SUBCASE("queue: enqueue, idempotency keys, duplicates, bad input") {
        check_queue_enqueue(open, p + "-queue-enqueue");
    }
    SUBCASE("queue: claim order, limit and due times") {
        check_queue_claim(open, p + "-queue-claim");
    }
    SUBCASE("queue: defer, finish and cancel only by the holder") {
        check_queue_holder_ops(open, p + "-queue-holder");
    }
    SUBCASE("queue: a member without a live lease claims nothing") {
        check_queue_dead_member(open, p + "-queue-dead");
    }
    SUBCASE("queue: recover and detach return the items held") {
        check_queue_recover(open, p + "-queue-recover");
    }
    SUBCASE("queue: a failed commit leaves the queue as it was") {
        check_queue_all_or_nothing(open, p + "-queue-atomic");
    }
    SUBCASE("queue: for_each_queued filters and pages, count_queued, purge_queued") {
        check_queue_reads(open, p + "-queue-reads");
    }
    SUBCASE("queue: random ops match a model") {
        check_queue_random_against_model(open, p + "-queue-random", test_seed());
    }
    SUBCASE("race: several handles drain one queue") {
        check_race_queue(open, p + "-race-queue");
    }
    SUBCASE("recorded keys: duplicates, namespaces, expiry") {
        check_recorded_keys(open, p + "-keys");
    }
    SUBCASE("recorded keys: guarded ops, refusals, all or nothing, purge") {
        check_recorded_key_guards(open, p + "-keys-guards");
    }
    SUBCASE("enrollments: enroll, merge, compare-and-set, due, advance") {
        check_enrollments(open, p + "-enrollments");
    }
    SUBCASE("enrollments: stops by address, domain, sequence and id cancel waiting steps") {
        check_enrollment_stops(open, p + "-enrollment-stops");
    }
    SUBCASE("race: enrollments from many handles") {
        check_race_enrollments(open, p + "-race-enrollments");
    }
    SUBCASE("race: one key recorded from many handles applies once") {
        check_race_recorded_keys(open, p + "-race-keys");
    }
    // outbound webhooks
    SUBCASE("outbox: add, duplicates, claim, end by the holder, give up, retry, reads") {
        check_outbox(open, p + "-outbox");
    }
    SUBCASE("outbox: recover and detach return the rows held") {
        check_outbox_recover(open, p + "-outbox-recover");
    }
    SUBCASE("race: several handles drain one outbox, each row delivered once") {
        check_race_outbox(open, p + "-race-outbox");
    }
    // erasure
    SUBCASE("erasure: one person's rows go in one transaction, the keyed hash stays") {
        check_erase_person(open, p + "-erase");
    }
    SUBCASE("erasure: a failed erasure changes nothing") {
        check_erase_person_all_or_nothing(open, p + "-erase-atomic");
    }
    SUBCASE("retention: purge_sends forgets ended ledger rows before a time") {
        check_purge_sends(open, p + "-purge-sends");
    }
    SUBCASE("audit retention: a purge moves the anchor and is itself a record") {
        check_audit_purge(open, p + "-audit-purge");
    }
    SUBCASE("audit retention: a purged audit.key record leaves the anchor keyed") {
        check_audit_purge_keyed(open, p + "-audit-purge-keyed");
    }
    SUBCASE("race: purges and appends on one audit chain") {
        check_race_audit_purge(open, p + "-race-audit-purge");
    }
    // daily counts
    SUBCASE("daily counts: added up per day, scope and id, conditional, purged") {
        check_daily_counts(open, p + "-daily-counts");
    }
    SUBCASE("soft bounces: tallied per address within a window") {
        check_soft_bounce_tally(open, p + "-soft-bounces");
    }
    SUBCASE("race: counts and tallies from many handles, each event once") {
        check_race_counts(open, p + "-race-counts");
    }
}

}  // namespace mailers::conformance
