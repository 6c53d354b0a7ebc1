// The conformance suite every mailers::store backend must pass. A backend's
// test calls `run_store_conformance` from a doctest TEST_CASE with a factory
// that opens its database:
//
//     TEST_CASE("my store conforms") {
//         mailers::conformance::run_store_conformance(
//             [&] { return open_my_store(url); }, "conformance");
//     }
//
// Every check works in its own workspaces, named from `workspace_prefix`, so
// one database serves the whole suite (and running the suite twice against a
// shared server only needs a fresh prefix). Backends must keep workspaces
// apart; the isolation check relies on nothing else.
//
// Set MAILERS_TEST_SEED to replay the randomised check with a given seed.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <mailers/audit.hpp>
#include <mailers/error.hpp>
#include <mailers/store.hpp>
#include <mailers/suppression.hpp>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
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
           << " pmid=" << r.provider_message_id << " detail='" << r.detail << "'}";
        return os.str().c_str();
    }
};
template <>
struct StringMaker<mailers::suppression_entry> {
    static String convert(const mailers::suppression_entry& e) {
        std::ostringstream os;
        os << "suppression{"
           << (e.kind == mailers::suppression_kind::domain ? "domain " : "address ") << e.value
           << " reason=" << static_cast<int>(e.reason) << " source=" << e.source
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
           << r.resource_id << " hash=" << r.hash.substr(0, 12) << "}";
        return os.str().c_str();
    }
};
}  // namespace doctest

namespace mailers::conformance {

/// Opens a store over one database; every call opens that same database
/// again. The reopen checks drop every handle and call it again, so a
/// backend that keeps nothing passes only if it forgets nothing.
using store_factory = std::function<std::shared_ptr<store>()>;

// ---------------------------------------------------------------------------
// Building blocks

inline time_point at_seconds(std::int64_t s) {
    return time_point{std::chrono::seconds{1'700'000'000 + s}};
}

inline ledger_row sample_send(std::uint64_t id, std::string key = {},
                              time_point reserved = at_seconds(0)) {
    ledger_row r;
    r.id = id;
    r.idempotency_key = std::move(key);
    r.mailbox = "rep" + std::to_string(id % 7) + "@brand.example";
    r.provider = "ses-eu";
    r.pool = "outbound";
    r.recipient = "user" + std::to_string(id) + "@example.com";
    r.message_id = "m" + std::to_string(id) + "@mailers.brand.example";
    r.state = send_state::reserved;
    r.attempt = 1;
    r.reserved_at = reserved;
    r.updated_at = reserved;
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

/// A valid chain of `n` records starting after `prev` (seq 1 when none).
inline std::vector<audit_record> make_audit_chain(std::size_t n,
                                                  const audit_record* prev = nullptr) {
    std::vector<audit_record> out;
    std::uint64_t seq = prev ? prev->seq + 1 : 1;
    std::string prev_hash = prev ? prev->hash : std::string{};
    for (std::size_t i = 0; i < n; ++i, ++seq) {
        audit_record r;
        r.seq = seq;
        r.at = at_seconds(static_cast<std::int64_t>(seq));
        r.actor = "alice";
        r.action = "mailbox.upsert";
        r.resource_type = "mailbox";
        r.resource_id = "rep" + std::to_string(seq);
        r.before = seq % 2 ? "" : R"({"daily_cap":30})";
        r.after = R"({"daily_cap":)" + std::to_string(seq) + "}";
        r.prev_hash = prev_hash;
        r.hash = audit_hash(r);
        prev_hash = r.hash;
        out.push_back(std::move(r));
    }
    return out;
}

inline void commit(store& st, std::string_view ws, std::vector<store_op> ops) {
    st.commit(ws, ops);
}

/// Commits `ops`, requires the commit to fail with errc::store_error, and
/// returns the message.
inline std::string commit_must_fail(store& st, std::string_view ws, std::vector<store_op> ops) {
    try {
        st.commit(ws, ops);
    } catch (const mailers::exception& e) {
        CHECK(e.code() == make_error_code(errc::store_error));
        return e.diag().message;
    }
    FAIL("the commit succeeded but had to fail");
    return {};
}

/// The snapshot with every list in a canonical order, so backends are free to
/// return them in any order.
inline store_snapshot canonical(store_snapshot s) {
    std::sort(s.objects.begin(), s.objects.end(), [](const auto& a, const auto& b) {
        return std::tie(a.kind, a.id) < std::tie(b.kind, b.id);
    });
    std::sort(s.suppressions.begin(), s.suppressions.end(), [](const auto& a, const auto& b) {
        return std::tie(a.kind, a.value) < std::tie(b.kind, b.value);
    });
    std::sort(s.recent_sends.begin(), s.recent_sends.end(),
              [](const auto& a, const auto& b) { return a.id < b.id; });
    std::sort(s.idempotency_keys.begin(), s.idempotency_keys.end());
    return s;
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
    check_same_list(actual.idempotency_keys, expected.idempotency_keys, "idempotency_keys");
    CHECK(actual.max_send_id == expected.max_send_id);
    REQUIRE(actual.last_audit.has_value() == expected.last_audit.has_value());
    if (expected.last_audit) CHECK(*actual.last_audit == *expected.last_audit);
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

// ---------------------------------------------------------------------------
// Checks. Each takes a workspace name of its own.

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
    d.created_at = at_seconds(-3600);  // before the epoch offset: signed times survive
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
        st->commit(ws, bulk);
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
                                    "r" + std::to_string(static_cast<int>(r)) + ".example", r);
        ops.push_back(store_ops::put_suppression{e});
        expected.push_back(e);
    }
    st->commit(ws, ops);
    for (const auto& e : expected) CHECK(st->find_suppression(ws, e.kind, e.value) == e);
}

inline void check_sends(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK_FALSE(st->find_send(ws, 1));
    CHECK(st->load(ws, at_seconds(0)).max_send_id == 0);

    const auto s1 = sample_send(1, "order-1");
    const auto s2 = sample_send(2);  // no key
    const auto s3 = sample_send(3);  // no key either: empty keys never collide
    commit(*st, ws,
           {store_ops::insert_send{s1}, store_ops::insert_send{s2}, store_ops::insert_send{s3}});
    CHECK(st->find_send(ws, 1) == s1);
    CHECK(st->find_send(ws, 2) == s2);
    CHECK(st->find_send(ws, 3) == s3);
    CHECK_FALSE(st->find_send(ws, 4));

    // update replaces every field, the key included.
    auto u1 = s1;
    u1.state = send_state::accepted;
    u1.attempt = 3;
    u1.mailbox = "rep9@brand.example";
    u1.provider = "smtp-backup";
    u1.reserved_at = at_seconds(30);
    u1.updated_at = at_seconds(31);
    u1.provider_message_id = "0102018c-provider-id";
    u1.detail = "421 4.7.0 try again later";
    auto u2 = s2;
    u2.idempotency_key = "late-key";
    u2.state = send_state::unknown;
    auto u3 = s3;
    u3.state = send_state::failed;
    commit(*st, ws,
           {store_ops::update_send{u1}, store_ops::update_send{u2}, store_ops::update_send{u3}});
    CHECK(st->find_send(ws, 1) == u1);
    CHECK(st->find_send(ws, 2) == u2);
    CHECK(st->find_send(ws, 3) == u3);

    auto snap = canonical(st->load(ws, at_seconds(0)));
    CHECK(snap.max_send_id == 3);
    check_same_list(snap.idempotency_keys, {{"late-key", 2}, {"order-1", 1}}, "keys");

    // Clearing a key frees it for another send.
    u2.idempotency_key.clear();
    commit(*st, ws,
           {store_ops::update_send{u2}, store_ops::insert_send{sample_send(10, "late-key")}});
    snap = canonical(st->load(ws, at_seconds(0)));
    check_same_list(snap.idempotency_keys, {{"late-key", 10}, {"order-1", 1}}, "keys after reuse");
    CHECK(snap.max_send_id == 10);

    // Refused: a duplicate id, a duplicate key, an update of a missing id.
    commit_must_fail(*st, ws, {store_ops::insert_send{sample_send(1)}});
    commit_must_fail(*st, ws, {store_ops::insert_send{sample_send(11, "order-1")}});
    commit_must_fail(*st, ws, {store_ops::update_send{sample_send(12)}});
    auto steal = u3;
    steal.idempotency_key = "order-1";
    commit_must_fail(*st, ws, {store_ops::update_send{steal}});
    CHECK(st->find_send(ws, 3) == u3);
    CHECK_FALSE(st->find_send(ws, 11));
    CHECK_FALSE(st->find_send(ws, 12));
    CHECK(st->load(ws, at_seconds(0)).max_send_id == 10);

    // Every state and large values round-trip.
    std::vector<store_op> ops;
    std::vector<ledger_row> rows;
    const send_state states[] = {send_state::reserved, send_state::accepted, send_state::failed,
                                 send_state::unknown};
    std::uint64_t id = 100;
    for (const auto s : states) {
        auto r = sample_send(id, "state-" + std::string(to_string(s)), at_seconds(-100000));
        r.state = s;
        r.attempt = 4'000'000'000u;
        r.detail = std::string(5000, 'x');
        ops.push_back(store_ops::insert_send{r});
        rows.push_back(r);
        ++id;
    }
    st->commit(ws, ops);
    for (const auto& r : rows) CHECK(st->find_send(ws, r.id) == r);
}

inline void check_recent_sends(const store_factory& open, const std::string& ws) {
    auto st = open();
    // id: reserved_at, state
    auto old_done = sample_send(1, "a", at_seconds(10));
    old_done.state = send_state::accepted;
    auto old_reserved = sample_send(2, "b", at_seconds(11));  // still reserved: always loaded
    auto boundary = sample_send(3, "c", at_seconds(100));     // reserved_at == since: loaded
    boundary.state = send_state::failed;
    auto recent = sample_send(4, "", at_seconds(150));
    recent.state = send_state::unknown;
    auto old_unknown = sample_send(5, "", at_seconds(99));
    old_unknown.state = send_state::unknown;
    commit(*st, ws,
           {store_ops::insert_send{recent}, store_ops::insert_send{old_done},
            store_ops::insert_send{boundary}, store_ops::insert_send{old_unknown},
            store_ops::insert_send{old_reserved}});

    auto snap = canonical(st->load(ws, at_seconds(100)));
    check_same_list(snap.recent_sends, {old_reserved, boundary, recent}, "since 100");
    // Old sends still count for max id and keys.
    CHECK(snap.max_send_id == 5);
    check_same_list(snap.idempotency_keys, {{"a", 1}, {"b", 2}, {"c", 3}}, "keys");

    snap = canonical(st->load(ws, at_seconds(1000)));
    check_same_list(snap.recent_sends, {old_reserved}, "since 1000");
    snap = canonical(st->load(ws, at_seconds(-1000)));
    check_same_list(snap.recent_sends, {old_done, old_reserved, boundary, recent, old_unknown},
                    "since the beginning");

    // for_each_send: [from, to) on reserved_at, in id order, whatever the state.
    check_same_list(sends_between(*st, ws, at_seconds(11), at_seconds(150)),
                    {old_reserved, boundary, old_unknown}, "[11, 150)");
    check_same_list(sends_between(*st, ws, at_seconds(0), at_seconds(1000)),
                    {old_done, old_reserved, boundary, recent, old_unknown}, "[0, 1000)");
    CHECK(sends_between(*st, ws, at_seconds(100), at_seconds(100)).empty());
    CHECK(sends_between(*st, ws, at_seconds(200), at_seconds(100)).empty());
}

inline void check_audit(const store_factory& open, const std::string& ws) {
    auto st = open();
    CHECK_FALSE(st->load(ws, at_seconds(0)).last_audit);
    CHECK(all_audit(*st, ws).empty());

    const auto first = make_audit_chain(3);
    std::vector<store_op> ops;
    for (const auto& r : first) ops.push_back(store_ops::append_audit{r});
    st->commit(ws, ops);
    const auto more = make_audit_chain(4, &first.back());
    ops.clear();
    for (const auto& r : more) ops.push_back(store_ops::append_audit{r});
    st->commit(ws, ops);

    auto all = first;
    all.insert(all.end(), more.begin(), more.end());
    const auto stored = all_audit(*st, ws);
    check_same_list(stored, all, "for_each_audit from 1");
    CHECK_FALSE(verify_audit_chain(stored));
    check_same_list(all_audit(*st, ws, 5), std::vector<audit_record>(all.begin() + 4, all.end()),
                    "from 5");
    CHECK(all_audit(*st, ws, 8).empty());
    CHECK(st->load(ws, at_seconds(0)).last_audit == all.back());

    // A seq that exists is refused, and the batch with it.
    auto dup = all[2];
    dup.actor = "mallory";
    commit_must_fail(*st, ws,
                     {store_ops::append_audit{make_audit_chain(1, &all.back())[0]},
                      store_ops::append_audit{dup}});
    check_same_list(all_audit(*st, ws), all, "after refused batch");
}

inline void check_failed_commit_changes_nothing(const store_factory& open, const std::string& ws) {
    auto st = open();
    const auto keep_supp = sample_suppression(suppression_kind::address, "keep@example.com");
    const auto chain = make_audit_chain(2);
    commit(*st, ws,
           {store_ops::put_object{{"mailbox", "rep1", "{}"}}, store_ops::put_suppression{keep_supp},
            store_ops::insert_send{sample_send(1, "dup")}, store_ops::append_audit{chain[0]}});
    const auto before = st->load(ws, at_seconds(0));

    auto changed = sample_send(1, "dup");
    changed.state = send_state::accepted;
    const std::vector<store_op> batch = {
        store_ops::put_object{{"mailbox", "rep2", "{}"}},
        store_ops::delete_object{"mailbox", "rep1"},
        store_ops::put_suppression{sample_suppression(suppression_kind::domain, "new.example")},
        store_ops::delete_suppression{suppression_kind::address, "keep@example.com"},
        store_ops::update_send{changed},
        store_ops::insert_send{sample_send(2, "fresh")},
        store_ops::append_audit{chain[1]},
        store_ops::insert_send{sample_send(3, "dup")},  // the key of send 1: refused
        store_ops::put_object{{"mailbox", "rep3", "{}"}},
    };
    const std::string message = commit_must_fail(*st, ws, batch);
    CHECK_MESSAGE(!message.empty(), "a failed commit explains itself");
    check_same_snapshot(st->load(ws, at_seconds(0)), before);
    CHECK(st->find_send(ws, 1) == sample_send(1, "dup"));
    CHECK_FALSE(st->find_send(ws, 2));
    CHECK(st->find_suppression(ws, suppression_kind::address, "keep@example.com") == keep_supp);
    CHECK(all_audit(*st, ws).size() == 1);

    // The store is still usable, and so is every kind of op.
    std::vector<store_op> fixed(batch.begin(), batch.end() - 2);
    st->commit(ws, fixed);
    CHECK(st->find_send(ws, 1) == changed);
    CHECK(st->find_send(ws, 2) == sample_send(2, "fresh"));
    CHECK_FALSE(st->find_suppression(ws, suppression_kind::address, "keep@example.com"));
    CHECK(all_audit(*st, ws).size() == 2);

    // And the changes made by the failed batch are not waiting to reappear
    // on a later commit or after reopening.
    st.reset();
    st = open();
    CHECK_FALSE(st->find_send(ws, 3));
    CHECK(canonical(st->load(ws, at_seconds(0))).objects.size() == 1);

    // An empty batch is a no-op, not an error.
    st->commit(ws, {});
}

inline void check_reopen_persists(const store_factory& open, const std::string& ws) {
    auto st = open();
    std::vector<store_op> ops = {
        store_ops::put_object{{"mailbox", "rep1", R"({"cap":30})"}},
        store_ops::put_suppression{
            sample_suppression(suppression_kind::address, "gone@example.com")},
        store_ops::insert_send{sample_send(7, "k7", at_seconds(50))},
        store_ops::insert_send{sample_send(8, "", at_seconds(1))},
    };
    for (const auto& r : make_audit_chain(3)) ops.push_back(store_ops::append_audit{r});
    st->commit(ws, ops);
    auto accepted = sample_send(8, "", at_seconds(1));
    accepted.state = send_state::accepted;
    commit(*st, ws, {store_ops::update_send{accepted}});
    const auto before = st->load(ws, at_seconds(10));
    st.reset();

    st = open();
    const auto after = st->load(ws, at_seconds(10));
    check_same_snapshot(after, before);
    CHECK(after.max_send_id == 8);
    CHECK(after.recent_sends.size() == 1);
    CHECK(st->find_send(ws, 8) == accepted);
    CHECK_FALSE(verify_audit_chain(all_audit(*st, ws)));

    // Two handles at once see one database.
    auto other = open();
    commit(*other, ws, {store_ops::insert_send{sample_send(9)}});
    CHECK(st->find_send(ws, 9) == sample_send(9));
}

inline void check_workspaces_isolated(const store_factory& open, const std::string& prefix) {
    auto st = open();
    const std::string a = prefix + "-a", b = prefix + "-b";
    auto sa = sample_send(1, "same-key");
    auto sb = sample_send(1, "same-key");
    sb.mailbox = "other@brand.example";
    const auto chain = make_audit_chain(2);
    auto chain_b = make_audit_chain(1);
    chain_b[0].actor = "bob";
    chain_b[0].hash = audit_hash(chain_b[0]);
    // Same object ids, suppression values, send ids, keys and audit seqs in
    // both workspaces: none of them may collide.
    commit(
        *st, a,
        {store_ops::put_object{{"mailbox", "rep1", "A"}},
         store_ops::put_suppression{sample_suppression(suppression_kind::address, "x@example.com")},
         store_ops::insert_send{sa}, store_ops::append_audit{chain[0]},
         store_ops::append_audit{chain[1]}});
    commit(*st, b,
           {store_ops::put_object{{"mailbox", "rep1", "B"}},
            store_ops::put_suppression{sample_suppression(
                suppression_kind::address, "x@example.com", suppression_reason::legal)},
            store_ops::insert_send{sb}, store_ops::append_audit{chain_b[0]}});

    CHECK(st->find_send(a, 1) == sa);
    CHECK(st->find_send(b, 1) == sb);
    CHECK(st->find_suppression(b, suppression_kind::address, "x@example.com")->reason ==
          suppression_reason::legal);
    CHECK(st->find_suppression(a, suppression_kind::address, "x@example.com")->reason ==
          suppression_reason::manual);
    CHECK(st->load(a, at_seconds(0)).objects.at(0).json == "A");
    CHECK(st->load(b, at_seconds(0)).objects.at(0).json == "B");
    CHECK(all_audit(*st, a).size() == 2);
    CHECK(all_audit(*st, b) == chain_b);

    // Deleting and updating in one workspace leaves the other alone.
    auto sa2 = sa;
    sa2.state = send_state::failed;
    commit(*st, a,
           {store_ops::delete_object{"mailbox", "rep1"},
            store_ops::delete_suppression{suppression_kind::address, "x@example.com"},
            store_ops::update_send{sa2}});
    CHECK(st->find_send(b, 1) == sb);
    CHECK(st->find_suppression(b, suppression_kind::address, "x@example.com"));
    CHECK(st->load(b, at_seconds(0)).objects.size() == 1);
    CHECK(st->load(a, at_seconds(0)).objects.empty());

    // A workspace nobody wrote to is empty.
    const auto empty = st->load(prefix + "-c", at_seconds(-1'000'000'000));
    CHECK(empty.objects.empty());
    CHECK(empty.suppressions.empty());
    CHECK(empty.recent_sends.empty());
    CHECK(empty.idempotency_keys.empty());
    CHECK(empty.max_send_id == 0);
    CHECK_FALSE(empty.last_audit);
    // Workspace names are compared exactly.
    CHECK_FALSE(st->find_send(prefix + "-A", 1));
    CHECK_FALSE(st->find_send(prefix + "-a ", 1));
}

inline void check_callbacks(const store_factory& open, const std::string& ws) {
    auto st = open();
    std::vector<store_op> ops;
    for (int i = 0; i < 10; ++i) {
        ops.push_back(store_ops::put_suppression{sample_suppression(
            suppression_kind::address, "u" + std::to_string(i) + "@example.com")});
        ops.push_back(store_ops::insert_send{sample_send(static_cast<std::uint64_t>(i + 1))});
    }
    for (const auto& r : make_audit_chain(10)) ops.push_back(store_ops::append_audit{r});
    st->commit(ws, ops);

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
    commit(*st, ws, {store_ops::insert_send{sample_send(11)}});
    CHECK(st->find_send(ws, 11));
}

// ---------------------------------------------------------------------------
// Randomised check against an in-memory model of the store's contract.

class store_model {
public:
    /// Applies `op` with the store's rules; false when the store must refuse
    /// it (and with it the whole batch).
    bool apply(const store_op& op) {
        return std::visit([this](const auto& o) { return apply_one(o); }, op);
    }

    store_snapshot snapshot(time_point since) const {
        store_snapshot s;
        for (const auto& [k, json] : objects_) s.objects.push_back({k.first, k.second, json});
        for (const auto& [k, e] : suppressions_) s.suppressions.push_back(e);
        for (const auto& [id, r] : sends_) {
            if (r.reserved_at >= since || r.state == send_state::reserved)
                s.recent_sends.push_back(r);
            if (!r.idempotency_key.empty()) s.idempotency_keys.emplace_back(r.idempotency_key, id);
        }
        s.max_send_id = sends_.empty() ? 0 : sends_.rbegin()->first;
        if (!audit_.empty()) s.last_audit = audit_.rbegin()->second;
        return s;
    }

    const std::map<std::uint64_t, ledger_row>& sends() const { return sends_; }
    const std::map<std::uint64_t, audit_record>& audit() const { return audit_; }
    const std::map<std::pair<suppression_kind, std::string>, suppression_entry>& suppressions()
        const {
        return suppressions_;
    }
    bool key_used(const std::string& key) const {
        return std::any_of(sends_.begin(), sends_.end(),
                           [&](const auto& kv) { return kv.second.idempotency_key == key; });
    }

private:
    bool apply_one(const store_ops::put_object& o) {
        objects_[{o.object.kind, o.object.id}] = o.object.json;
        return true;
    }
    bool apply_one(const store_ops::delete_object& o) {
        objects_.erase({o.kind, o.id});
        return true;
    }
    bool apply_one(const store_ops::put_suppression& o) {
        suppressions_[{o.entry.kind, o.entry.value}] = o.entry;
        return true;
    }
    bool apply_one(const store_ops::delete_suppression& o) {
        suppressions_.erase({o.kind, o.value});
        return true;
    }
    bool key_taken(const ledger_row& r) const {
        if (r.idempotency_key.empty()) return false;
        return std::any_of(sends_.begin(), sends_.end(), [&](const auto& kv) {
            return kv.first != r.id && kv.second.idempotency_key == r.idempotency_key;
        });
    }
    bool apply_one(const store_ops::insert_send& o) {
        if (sends_.count(o.row.id) || key_taken(o.row)) return false;
        sends_[o.row.id] = o.row;
        return true;
    }
    bool apply_one(const store_ops::update_send& o) {
        if (!sends_.count(o.row.id) || key_taken(o.row)) return false;
        sends_[o.row.id] = o.row;
        return true;
    }
    bool apply_one(const store_ops::append_audit& o) {
        return audit_.emplace(o.record.seq, o.record).second;
    }

    std::map<std::pair<std::string, std::string>, std::string> objects_;
    std::map<std::pair<suppression_kind, std::string>, suppression_entry> suppressions_;
    std::map<std::uint64_t, ledger_row> sends_;
    std::map<std::uint64_t, audit_record> audit_;
};

/// The seed from MAILERS_TEST_SEED, or a random one.
inline std::uint64_t test_seed() {
    if (const char* s = std::getenv("MAILERS_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    return (static_cast<std::uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
}

inline void check_random_against_model(const store_factory& open, const std::string& prefix,
                                       std::uint64_t seed, int batches = 400) {
    INFO("seed = " << seed << " (rerun with MAILERS_TEST_SEED=" << seed << ")");
    std::mt19937_64 rng(seed);
    auto pick = [&](std::uint64_t n) {
        return std::uniform_int_distribution<std::uint64_t>(0, n - 1)(rng);
    };
    auto chance = [&](int percent) { return pick(100) < static_cast<std::uint64_t>(percent); };
    auto small_time = [&] { return at_seconds(static_cast<std::int64_t>(pick(2000)) - 500); };

    const std::string workspaces[] = {prefix + "-1", prefix + "-2"};
    store_model models[2];
    std::uint64_t next_id[2] = {1, 1};
    std::uint64_t next_key = 0;
    auto st = open();
    int refused = 0;

    for (int b = 0; b < batches; ++b) {
        INFO("batch " << b);
        const int w = static_cast<int>(pick(2));
        store_model model = models[w];  // becomes the new state if the batch commits
        std::vector<store_op> ops;
        bool must_fail = false;
        // Now and then a long run of suppression ops only, as an import makes.
        const bool bulk = chance(5);
        const auto n = bulk ? 100 + pick(200) : 1 + pick(chance(10) ? 60 : 8);
        for (std::uint64_t i = 0; i < n; ++i) {
            store_op op;
            switch (bulk ? 2 + pick(3) : pick(9)) {
                case 0:
                    op = store_ops::put_object{{chance(50) ? "mailbox" : "pool",
                                                "o" + std::to_string(pick(8)),
                                                R"({"v":)" + std::to_string(pick(1000)) + "}"}};
                    break;
                case 1:
                    op = store_ops::delete_object{chance(50) ? "mailbox" : "pool",
                                                  "o" + std::to_string(pick(8))};
                    break;
                case 2:
                case 3: {
                    suppression_entry e;
                    e.kind = chance(70) ? suppression_kind::address : suppression_kind::domain;
                    e.value = e.kind == suppression_kind::address
                                  ? "u" + std::to_string(pick(40)) + "@d" +
                                        std::to_string(pick(3)) + ".example"
                                  : "d" + std::to_string(pick(40)) + ".example";
                    e.reason = static_cast<suppression_reason>(pick(5));
                    e.source = chance(50) ? "api" : "webhook-" + std::to_string(pick(3));
                    e.created_at = small_time();
                    op = store_ops::put_suppression{e};
                    break;
                }
                case 4: {
                    const auto kind =
                        chance(70) ? suppression_kind::address : suppression_kind::domain;
                    op = store_ops::delete_suppression{
                        kind, kind == suppression_kind::address
                                  ? "u" + std::to_string(pick(40)) + "@d" +
                                        std::to_string(pick(3)) + ".example"
                                  : "d" + std::to_string(pick(40)) + ".example"};
                    break;
                }
                case 5:
                case 6: {
                    std::uint64_t id = next_id[w]++;
                    if (chance(3) && !model.sends().empty())
                        id = model.sends().begin()->first;  // duplicate id
                    std::string key;
                    if (chance(60)) key = "key-" + std::to_string(next_key++);
                    if (chance(3) && !model.sends().empty())
                        key = std::prev(model.sends().end())->second.idempotency_key;
                    op = store_ops::insert_send{sample_send(id, key, small_time())};
                    break;
                }
                case 7: {
                    if (model.sends().empty() || chance(3)) {
                        op =
                            store_ops::update_send{sample_send(next_id[w] + 1000)};  // no such send
                        break;
                    }
                    auto it = model.sends().begin();
                    std::advance(it, static_cast<long>(pick(model.sends().size())));
                    ledger_row r = it->second;
                    r.state = static_cast<send_state>(pick(4));
                    r.attempt += 1;
                    r.updated_at = small_time();
                    if (chance(30)) r.reserved_at = small_time();
                    if (chance(30)) r.mailbox = "rep" + std::to_string(pick(50)) + "@brand.example";
                    r.detail = chance(50) ? "" : "detail " + std::to_string(pick(100));
                    r.provider_message_id =
                        chance(50) ? "" : "pm-" + std::to_string(pick(1u << 30));
                    if (chance(10))
                        r.idempotency_key = chance(50) ? "" : "key-" + std::to_string(next_key++);
                    if (chance(3)) r.idempotency_key = "key-" + std::to_string(pick(next_key + 1));
                    op = store_ops::update_send{r};
                    break;
                }
                default: {
                    const audit_record* last =
                        model.audit().empty() ? nullptr : &model.audit().rbegin()->second;
                    audit_record r = make_audit_chain(1, last)[0];
                    if (chance(3) && last) r.seq = model.audit().begin()->first;  // duplicate seq
                    op = store_ops::append_audit{r};
                    break;
                }
            }
            if (!model.apply(op)) must_fail = true;
            ops.push_back(std::move(op));
        }

        if (must_fail) {
            ++refused;
            commit_must_fail(*st, workspaces[w], ops);
        } else {
            st->commit(workspaces[w], ops);
            models[w] = std::move(model);
        }

        if (chance(5)) {  // reopen
            st.reset();
            st = open();
        }
        if (b % 10 == 9 || b == batches - 1) {
            for (int k = 0; k < 2; ++k) {
                INFO("workspace " << workspaces[k]);
                const time_point since = small_time();
                check_same_snapshot(st->load(workspaces[k], since), models[k].snapshot(since));
                std::vector<suppression_entry> expected_supp;
                for (const auto& [key, e] : models[k].suppressions()) expected_supp.push_back(e);
                check_same_list(all_suppressions(*st, workspaces[k]), expected_supp,
                                "for_each_suppression");
                std::vector<audit_record> expected_audit;
                for (const auto& [seq, r] : models[k].audit()) expected_audit.push_back(r);
                check_same_list(all_audit(*st, workspaces[k]), expected_audit, "for_each_audit");
                CHECK_FALSE(verify_audit_chain(expected_audit));
                for (std::uint64_t id = 0; id < 5; ++id) {
                    const auto probe = pick(next_id[k] + 2);
                    const auto it = models[k].sends().find(probe);
                    const auto found = st->find_send(workspaces[k], probe);
                    REQUIRE(found.has_value() == (it != models[k].sends().end()));
                    if (found) CHECK(*found == it->second);
                }
                const time_point from = small_time(), to = small_time();
                std::vector<ledger_row> expected_range;
                for (const auto& [id, r] : models[k].sends())
                    if (r.reserved_at >= from && r.reserved_at < to) expected_range.push_back(r);
                check_same_list(sends_between(*st, workspaces[k], from, to), expected_range,
                                "for_each_send");
            }
        }
    }
    // The generator must exercise both outcomes to mean anything.
    CHECK(refused > 0);
    CHECK(refused < batches / 2);
}

// ---------------------------------------------------------------------------

/// Runs every check, each in its own doctest SUBCASE. Call it from a
/// TEST_CASE.
inline void run_store_conformance(const store_factory& open, const std::string& workspace_prefix) {
    SUBCASE("objects: put, replace, delete, order within a batch") {
        check_objects(open, workspace_prefix + "-objects");
    }
    SUBCASE("suppressions: put, replace, delete, find, for_each order") {
        check_suppressions(open, workspace_prefix + "-suppressions");
    }
    SUBCASE("sends: insert, update, keys, refusals") {
        check_sends(open, workspace_prefix + "-sends");
    }
    SUBCASE("sends: load window and for_each_send range") {
        check_recent_sends(open, workspace_prefix + "-recent");
    }
    SUBCASE("audit: append, for_each_audit, last record, duplicate seq") {
        check_audit(open, workspace_prefix + "-audit");
    }
    SUBCASE("a failed commit changes nothing") {
        check_failed_commit_changes_nothing(open, workspace_prefix + "-atomic");
    }
    SUBCASE("commits persist across reopen") {
        check_reopen_persists(open, workspace_prefix + "-reopen");
    }
    SUBCASE("workspaces are isolated") {
        check_workspaces_isolated(open, workspace_prefix + "-iso");
    }
    SUBCASE("callbacks may throw") {
        check_callbacks(open, workspace_prefix + "-callbacks");
    }
    SUBCASE("random batches match a model") {
        check_random_against_model(open, workspace_prefix + "-random", test_seed());
    }
}

}  // namespace mailers::conformance
