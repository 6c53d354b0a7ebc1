#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <mailers/audit.hpp>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace mailers;

namespace {

time_point at_micros(std::int64_t us) {
    return time_point{std::chrono::microseconds{us}};
}

audit_record first_record() {
    audit_record r;
    r.seq = 1;
    r.at = at_micros(1'700'000'000'000'000);
    r.actor = "alice";
    r.action = "mailbox.upsert";
    r.resource_type = "mailbox";
    r.resource_id = "rep1";
    r.after = R"({"daily_cap":30})";
    return r;
}

// A valid chain of n records, seq first_seq.., linked to `prev_hash`.
std::vector<audit_record> chain(std::size_t n, std::uint64_t first_seq = 1,
                                std::string prev_hash = {}) {
    std::vector<audit_record> out;
    for (std::size_t i = 0; i < n; ++i) {
        audit_record r;
        r.seq = first_seq + i;
        r.at = at_micros(1'700'000'000'000'000 + static_cast<std::int64_t>(i) * 1000);
        r.actor = i % 3 ? "alice" : "bob";
        r.action = "pool.update";
        r.resource_type = "pool";
        r.resource_id = "pool-" + std::to_string(i % 4);
        r.before = R"({"members":)" + std::to_string(i) + "}";
        r.after = R"({"members":)" + std::to_string(i + 1) + "}";
        r.prev_hash = prev_hash;
        r.hash = audit_hash(r);
        prev_hash = r.hash;
        out.push_back(std::move(r));
    }
    return out;
}

void rehash(audit_record& r) {
    r.hash = audit_hash(r);
}

// Verifies and returns the reported bad seq (0 when the chain verifies).
std::uint64_t bad_seq_of(const std::vector<audit_record>& records) {
    std::uint64_t bad = 0;
    const error_code ec = verify_audit_chain(records, &bad);
    if (!ec) return 0;
    CHECK(ec == make_error_code(errc::audit_chain_broken));
    return bad;
}

}  // namespace

TEST_CASE("audit_hash: pinned format") {
    // Digests computed independently (Python hashlib) from the documented
    // input: each field as "<decimal byte length>:<bytes>" in the order seq,
    // at (microseconds), actor, action, resource_type, resource_id, before,
    // after, prev_hash. A change here breaks every stored chain.
    audit_record r = first_record();
    CHECK(audit_hash(r) == "3779602fe83a87a7dff3a493a59b7208815c267d7f747bc0c9313bc02c39ded2");

    audit_record second;
    second.seq = 2;
    second.at = at_micros(-5);
    second.actor = "bob";
    second.action = "pool.delete";
    second.resource_type = "pool";
    second.resource_id = "p1";
    second.before = R"({"m":["a"]})";
    second.prev_hash = audit_hash(r);
    CHECK(audit_hash(second) == "0ce596560f08f83d563c80ccb03fe8e840c17db8777aa28fb09ba05fb1210802");
}

TEST_CASE("audit_hash: change_seq is covered only when set") {
    // A record from before change seqs were kept (change_seq 0) hashes as
    // pinned above, so stored chains keep verifying; a set change_seq is one
    // more field after prev_hash (digest from Python hashlib, as above).
    audit_record r = first_record();
    r.change_seq = 0;
    CHECK(audit_hash(r) == "3779602fe83a87a7dff3a493a59b7208815c267d7f747bc0c9313bc02c39ded2");
    r.change_seq = 42;
    CHECK(audit_hash(r) == "50bf8f6f2a9ad5d1c21c0ed62457d7d473de1bbe2fc472a64809b8e742c544f9");
    audit_record other = r;
    other.change_seq = 43;
    CHECK(audit_hash(other) != audit_hash(r));
}

TEST_CASE("audit_hash: ignores the hash field, covers every other field") {
    const audit_record base = first_record();
    const std::string h = audit_hash(base);
    CHECK(h.size() == 64);
    CHECK(h.find_first_not_of("0123456789abcdef") == std::string::npos);

    audit_record with_hash = base;
    with_hash.hash = "anything";
    CHECK(audit_hash(with_hash) == h);

    std::vector<audit_record> variants(9, base);
    variants[0].seq = 2;
    variants[1].at += std::chrono::microseconds(1);
    variants[2].actor = "alicE";
    variants[3].action = "mailbox.delete";
    variants[4].resource_type = "pool";
    variants[5].resource_id = "rep2";
    variants[6].before = "{}";
    variants[7].after = "";
    variants[8].prev_hash = "00";
    for (std::size_t i = 0; i < variants.size(); ++i) {
        INFO("field " << i);
        CHECK(audit_hash(variants[i]) != h);
    }
}

TEST_CASE("audit_hash: moving bytes between fields changes the hash") {
    audit_record a = first_record();
    audit_record b = a;
    a.actor = "ab";
    a.action = "c";
    b.actor = "a";
    b.action = "bc";
    CHECK(audit_hash(a) != audit_hash(b));

    // A field that looks like a length prefix cannot fake a boundary.
    audit_record c = first_record();
    audit_record d = c;
    c.before = "";
    c.after = "1:x";
    d.before = "1:x";
    d.after = "";
    CHECK(audit_hash(c) != audit_hash(d));
}

TEST_CASE("verify_audit_chain: valid chains") {
    CHECK_FALSE(verify_audit_chain({}));
    CHECK_FALSE(verify_audit_chain(chain(1)));
    CHECK_FALSE(verify_audit_chain(chain(50)));

    // A tail export starting mid-chain verifies from its first record.
    const auto full = chain(20);
    const std::vector<audit_record> tail(full.begin() + 7, full.end());
    CHECK_FALSE(verify_audit_chain(tail));

    // bad_seq is left alone on success.
    std::uint64_t bad = 12345;
    CHECK_FALSE(verify_audit_chain(full, &bad));
    CHECK(bad == 12345);
}

TEST_CASE("verify_audit_chain: tampering is detected at the right record") {
    const auto good = chain(10);
    REQUIRE(bad_seq_of(good) == 0);

    SUBCASE("a field edited") {
        auto c = good;
        c[4].after = R"({"members":999})";
        CHECK(bad_seq_of(c) == 5);
    }
    SUBCASE("a field edited in the first record") {
        auto c = good;
        c[0].actor = "mallory";
        CHECK(bad_seq_of(c) == 1);
    }
    SUBCASE("the time edited") {
        auto c = good;
        c[9].at -= std::chrono::hours(1);
        CHECK(bad_seq_of(c) == 10);
    }
    SUBCASE("a field edited and its hash recomputed: the next link breaks") {
        auto c = good;
        c[4].actor = "mallory";
        rehash(c[4]);
        CHECK(bad_seq_of(c) == 6);
    }
    SUBCASE("a record removed") {
        auto c = good;
        c.erase(c.begin() + 3);
        CHECK(bad_seq_of(c) == 5);
    }
    SUBCASE("a record removed and the rest renumbered and rehashed from there") {
        auto c = good;
        c.erase(c.begin() + 3);
        for (std::size_t i = 3; i < c.size(); ++i) {
            c[i].seq = i + 1;
            rehash(c[i]);
        }
        // The renumbered record 4 still names record 4's hash as its predecessor.
        CHECK(bad_seq_of(c) == 4);
    }
    SUBCASE("two records swapped") {
        auto c = good;
        std::swap(c[5], c[6]);
        CHECK(bad_seq_of(c) == 7);  // the record found where seq 6 belongs
    }
    SUBCASE("prev_hash changed") {
        auto c = good;
        c[7].prev_hash = good[6].hash;
        c[7].prev_hash[0] = c[7].prev_hash[0] == '0' ? '1' : '0';
        CHECK(bad_seq_of(c) == 8);
    }
    SUBCASE("prev_hash changed and the record rehashed") {
        auto c = good;
        c[7].prev_hash = good[5].hash;
        rehash(c[7]);
        CHECK(bad_seq_of(c) == 8);
    }
    SUBCASE("hash field replaced") {
        auto c = good;
        c[2].hash = std::string(64, 'a');
        CHECK(bad_seq_of(c) == 3);
    }
    SUBCASE("a duplicated record") {
        auto c = good;
        c.insert(c.begin() + 4, c[4]);
        CHECK(bad_seq_of(c) == 5);
    }
    SUBCASE("the first record claims a predecessor") {
        auto c = good;
        c[0].prev_hash = std::string(64, '0');
        rehash(c[0]);
        CHECK(bad_seq_of(c) == 1);
    }
    SUBCASE("a record with seq 0") {
        // Numbering starts at 1, so a chain starting at 0 is refused even
        // though its links and hashes are consistent.
        const auto c = chain(3, 0);
        std::uint64_t bad = 99;
        CHECK(verify_audit_chain(c, &bad) == make_error_code(errc::audit_chain_broken));
        CHECK(bad == 0);
    }
    SUBCASE("a gap in seq with a consistent hash link") {
        auto c = good;
        c[6].seq = 8;
        rehash(c[6]);
        CHECK(bad_seq_of(c) == 8);
    }
}

TEST_CASE("verify_audit_chain: random single edits are always caught") {
    const auto seed = std::random_device{}();
    INFO("seed = " << seed);
    std::mt19937 rng(seed);
    const auto good = chain(30);
    for (int round = 0; round < 500; ++round) {
        auto c = good;
        const auto i = std::uniform_int_distribution<std::size_t>(0, c.size() - 1)(rng);
        auto& r = c[i];
        switch (std::uniform_int_distribution<int>(0, 8)(rng)) {
            case 0:
                r.actor += "x";
                break;
            case 1:
                r.action.clear();
                break;
            case 2:
                r.resource_type = "other";
                break;
            case 3:
                r.resource_id += "1";
                break;
            case 4:
                r.before = "{}";
                break;
            case 5:
                r.after += " ";
                break;
            case 6:
                r.at += std::chrono::microseconds(1);
                break;
            case 7:
                r.prev_hash = std::string(64, 'f');
                break;
            default:
                r.hash[10] = r.hash[10] == 'a' ? 'b' : 'a';
                break;
        }
        INFO("round " << round << " record " << i);
        CHECK(bad_seq_of(c) == r.seq);
    }
}

namespace {

// `plain` unkeyed records, then an audit.key record and `keyed - 1` more,
// hashed with `key`: what engines write once a key is given.
std::vector<audit_record> keyed_chain(std::size_t plain, std::size_t keyed,
                                      const std::string& key) {
    auto out = chain(plain + keyed);
    for (std::size_t i = plain; i < out.size(); ++i) {
        if (i == plain) out[i].action = std::string(audit_key_action);
        out[i].prev_hash = i == 0 ? std::string{} : out[i - 1].hash;
        out[i].hash = audit_hash(out[i], key);
    }
    return out;
}

std::uint64_t bad_seq_with(const std::vector<audit_record>& records,
                           const audit_verify_options& options) {
    std::uint64_t bad = 0;
    const error_code ec = verify_audit_chain(records, options, &bad);
    if (!ec) return 0;
    CHECK(ec == make_error_code(errc::audit_chain_broken));
    return bad;
}

// Links and hashes every record from index `from` on again, unkeyed, as
// anyone can with the public audit_hash.
void relink_from(std::vector<audit_record>& c, std::size_t from) {
    for (std::size_t i = from; i < c.size(); ++i) {
        c[i].prev_hash = i == 0 ? std::string{} : c[i - 1].hash;
        rehash(c[i]);
    }
}

audit_head head_at(const std::vector<audit_record>& records, std::uint64_t seq) {
    return {seq, records.at(seq - 1).hash};
}

}  // namespace

TEST_CASE("audit_hash: keyed is HMAC-SHA256 over the same fields") {
    // Python: hmac.new(b"k3y", <the pinned input of first_record()>, hashlib.sha256).
    const audit_record r = first_record();
    CHECK(audit_hash(r, "k3y") ==
          "3a2769d9ba14cd7e38fb84c268e07518d4bcf28112f8f33c72a454579450fc82");
    CHECK(audit_hash(r, "") == audit_hash(r));
    CHECK(audit_hash(r, "k3y") != audit_hash(r, "k3z"));
    audit_record edited = r;
    edited.after = "{}";
    CHECK(audit_hash(edited, "k3y") != audit_hash(r, "k3y"));
}

TEST_CASE("verify_audit_chain with options: the whole chain from the genesis") {
    const audit_verify_options none;
    CHECK(bad_seq_with({}, none) == 0);
    const auto good = chain(10);
    CHECK(bad_seq_with(good, none) == 0);

    SUBCASE("records cut from the front") {
        // The part on its own is a valid segment; as a whole chain it is not.
        const std::vector<audit_record> tail(good.begin() + 3, good.end());
        CHECK_FALSE(verify_audit_chain(tail));
        CHECK(bad_seq_with(tail, none) == 4);
    }
    SUBCASE(
        "cut from the front, renumbered from 1 and re-hashed: the first link names a predecessor") {
        auto c = chain(7, 1, good[2].hash);
        CHECK(bad_seq_with(c, none) == 1);
    }
    SUBCASE("records cut from the end are not detected without a checkpoint") {
        const std::vector<audit_record> cut(good.begin(), good.begin() + 6);
        CHECK(bad_seq_with(cut, none) == 0);
    }
    SUBCASE("a record edited in the middle") {
        auto c = good;
        c[4].actor = "mallory";
        CHECK(bad_seq_with(c, none) == 5);
    }
    SUBCASE("an audit.key record cannot be checked without the key") {
        const auto k = keyed_chain(3, 4, "secret");
        CHECK(bad_seq_with(k, none) == 4);
    }
}

TEST_CASE("verify_audit_chain with a checkpoint: cuts at the end below it") {
    const auto good = chain(10);
    audit_verify_options o;
    o.checkpoint = head_at(good, 7);
    CHECK(bad_seq_with(good, o) == 0);

    SUBCASE("cut to exactly the checkpoint") {
        CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 7), o) == 0);
    }
    SUBCASE("cut below the checkpoint") {
        CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 5), o) == 6);
        CHECK(bad_seq_with({}, o) == 1);
    }
    SUBCASE("a record below the checkpoint edited and everything re-hashed") {
        auto c = good;
        c[2].after = R"({"members":0})";
        relink_from(c, 2);
        CHECK(bad_seq_with(c, audit_verify_options{}) == 0);
        CHECK(bad_seq_with(c, o) == 7);
    }
    SUBCASE("records above the checkpoint cut or rewritten are not detected") {
        CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 8), o) == 0);
        auto c = good;
        c[8].actor = "mallory";
        relink_from(c, 8);
        CHECK(bad_seq_with(c, o) == 0);
    }
    SUBCASE("the empty chain's head") {
        audit_verify_options empty;
        empty.checkpoint = audit_head{};
        CHECK(bad_seq_with({}, empty) == 0);
        CHECK(bad_seq_with(good, empty) == 0);
    }
}

TEST_CASE("verify_audit_chain with a key: a rewrite needs the key") {
    const std::string key = "the audit key";
    const auto good = keyed_chain(3, 7, key);
    audit_verify_options o;
    o.key = key;
    CHECK(bad_seq_with(good, o) == 0);
    // The unkeyed records before the key record verify unkeyed.
    CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 3),
                       audit_verify_options{}) == 0);

    SUBCASE("another key") {
        o.key = "another key";
        CHECK(bad_seq_with(good, o) == 4);
    }
    SUBCASE("a keyed record edited and re-hashed without the key") {
        auto c = good;
        c[6].after = "{}";
        rehash(c[6]);
        CHECK(bad_seq_with(c, o) == 7);
    }
    SUBCASE("an unkeyed record before the key record edited, re-hashed from there on") {
        auto c = good;
        c[1].actor = "mallory";
        relink_from(c, 1);
        CHECK(bad_seq_with(c, o) == 4);
    }
    SUBCASE("the whole chain rewritten unkeyed without the key record") {
        auto c = chain(10);
        CHECK(bad_seq_with(c, audit_verify_options{}) == 0);
        CHECK(bad_seq_with(c, o) == 11);
        CHECK(bad_seq_with({}, o) == 1);
    }
    SUBCASE("an unkeyed record appended after the keyed ones") {
        auto c = good;
        audit_record r = c.back();
        r.seq += 1;
        r.prev_hash = c.back().hash;
        rehash(r);
        c.push_back(r);
        CHECK(bad_seq_with(c, o) == 11);
    }
    SUBCASE("records cut from the end while a key record stays are not detected") {
        CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 5), o) == 0);
        // Cut below the key record: nothing keyed is left.
        CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 3), o) == 4);
    }
    SUBCASE("with a checkpoint, such a cut is detected") {
        o.checkpoint = head_at(good, 9);
        CHECK(bad_seq_with(good, o) == 0);
        CHECK(bad_seq_with(std::vector<audit_record>(good.begin(), good.begin() + 5), o) == 6);
    }
}

namespace {

// What a purge at `cut` does to `full` (every record ever written): appends
// the audit.purge record naming the anchor, hashed with `key` when the
// chain is keyed there, and returns the anchor.
audit_anchor purge_at(std::vector<audit_record>& full, std::uint64_t cut, bool keyed = false,
                      const std::string& key = {}) {
    audit_anchor a;
    a.seq = cut;
    a.hash = full.at(cut - 2).hash;
    a.at = at_micros(1'800'000'000'000'000);
    a.keyed = keyed;
    audit_record p;
    p.seq = full.back().seq + 1;
    p.at = a.at;
    p.actor = "dpo";
    p.action = std::string(audit_purge_action);
    p.resource_type = "audit";
    p.after = audit_purge_body(a, at_micros(1'750'000'000'000'000), cut - 1);
    p.prev_hash = full.back().hash;
    const bool hashed_keyed = std::any_of(full.begin(), full.end(), [](const audit_record& r) {
        return r.action == audit_key_action;
    });
    p.hash = hashed_keyed ? audit_hash(p, key) : audit_hash(p);
    full.push_back(std::move(p));
    return a;
}

std::vector<audit_record> kept_from(const std::vector<audit_record>& full, std::uint64_t seq) {
    return {full.begin() + static_cast<std::ptrdiff_t>(seq - 1), full.end()};
}

}  // namespace

TEST_CASE("audit_purge_body and audit_purge_anchor round-trip") {
    audit_anchor a{42, "ab12", {}, true};
    const auto back = audit_purge_anchor(audit_purge_body(a, at_micros(5), 41));
    REQUIRE(back);
    CHECK(*back == a);
    CHECK_FALSE(audit_purge_anchor(""));
    CHECK_FALSE(
        audit_purge_anchor("{\"anchor_seq\":1,\"anchor_hash\":\"\",\"anchor_keyed\":false}"));
    CHECK_FALSE(audit_purge_anchor("{\"anchor_seq\":7}"));
}

TEST_CASE("verify_audit_chain from an anchor: what a purge keeps verifies, cuts behind it fail") {
    auto full = chain(10);
    const audit_anchor anchor = purge_at(full, 6);  // records 1..5 go, the purge is 11
    const auto kept = kept_from(full, 6);
    audit_verify_options o;
    o.anchor = anchor;
    CHECK(bad_seq_with(kept, o) == 0);
    SUBCASE("the archive joined to the kept records verifies too") {
        CHECK(bad_seq_with(full, o) == 0);
    }
    SUBCASE("without the anchor the kept records fail where they start") {
        CHECK(bad_seq_with(kept, audit_verify_options{}) == 6);
        // And a full chain holding a purge record needs its anchor.
        CHECK(bad_seq_with(full, audit_verify_options{}) == 6);
    }
    SUBCASE("records deleted from the start without a purge") {
        CHECK(bad_seq_with(kept_from(full, 8), o) == 8);
    }
    SUBCASE("an anchor moved to hide a bigger cut") {
        audit_verify_options moved = o;
        moved.anchor->seq = 8;
        moved.anchor->hash = full[6].hash;
        CHECK(bad_seq_with(kept_from(full, 8), moved) == 6);
        moved.anchor->keyed = true;
        moved.anchor->seq = 6;
        moved.anchor->hash = anchor.hash;
        CHECK(bad_seq_with(kept, moved) == 6);
    }
    SUBCASE("the purge record removed") {
        // The newest record: the anchor has no purge record behind it.
        CHECK(bad_seq_with(std::vector<audit_record>(kept.begin(), kept.end() - 1), o) == 6);
        // In the middle: whatever is re-linked, no kept record vouches for
        // the anchor.
        auto more = full;
        audit_record r = more.back();
        r.seq += 1;
        r.action = "pool.update";
        r.after = "{}";
        r.prev_hash = more.back().hash;
        rehash(r);
        more.push_back(r);
        auto gap = kept_from(more, 6);
        gap.erase(gap.end() - 2);
        CHECK(bad_seq_with(gap, o) == 6);
    }
    SUBCASE("a purge record rewritten to name a bigger cut") {
        auto forged = full;
        const audit_anchor bigger{8, forged[6].hash, anchor.at, false};
        forged.back().after = audit_purge_body(bigger, at_micros(1), 7);
        rehash(forged.back());
        // Unkeyed, a writer of the store can do that: the kept chain from
        // 8 with the moved anchor verifies. A key or a checkpoint taken
        // before the purge catches it (below and in docs/audit.md).
        audit_verify_options moved;
        moved.anchor = bigger;
        CHECK(bad_seq_with(kept_from(forged, 8), moved) == 0);
        moved.checkpoint = head_at(full, 11);
        CHECK(bad_seq_with(kept_from(forged, 8), moved) == 11);
    }
}

TEST_CASE("verify_audit_chain from an anchor: checkpoints before it") {
    auto full = chain(10);
    const audit_anchor first = purge_at(full, 4);   // purge record 11
    const audit_anchor second = purge_at(full, 9);  // purge record 12
    const auto kept = kept_from(full, 9);
    audit_verify_options o;
    o.anchor = second;
    CHECK(bad_seq_with(kept, o) == 0);
    // The record right before the anchor: the newest purge names its hash.
    o.checkpoint = head_at(full, 8);
    CHECK(bad_seq_with(kept, o) == 0);
    o.checkpoint->hash = full[0].hash;
    CHECK(bad_seq_with(kept, o) == 8);
    // The record before the first anchor: its purge record (11) is kept and
    // names its hash. Any other purged record is not provable.
    CHECK(first.seq == 4);
    o.checkpoint = head_at(full, 3);
    CHECK(bad_seq_with(kept, o) == 0);
    o.checkpoint = head_at(full, 2);
    CHECK(bad_seq_with(kept, o) == 2);
    o.checkpoint = head_at(full, 5);
    CHECK(bad_seq_with(kept, o) == 5);
    // With the archive joined, every checkpoint is checked record by record.
    CHECK(bad_seq_with(full, o) == 0);
    // A checkpoint in the kept records or at the end as before.
    o.checkpoint = head_at(full, 12);
    CHECK(bad_seq_with(kept, o) == 0);
    o.checkpoint = audit_head{13, "x"};
    CHECK(bad_seq_with(kept, o) == 13);
}

TEST_CASE("verify_audit_chain from an anchor: a keyed chain whose key record was purged") {
    const std::string key = "k3y";
    auto full = keyed_chain(3, 7, key);  // audit.key at seq 4
    const audit_anchor anchor = purge_at(full, 6, true, key);
    const auto kept = kept_from(full, 6);
    audit_verify_options o;
    o.key = key;
    o.anchor = anchor;
    CHECK(bad_seq_with(kept, o) == 0);
    CHECK(bad_seq_with(full, o) == 0);
    // Without the key nothing kept can be checked.
    audit_verify_options no_key;
    no_key.anchor = anchor;
    CHECK(bad_seq_with(kept, no_key) == 6);
    // The keyed flag flipped in the store: the purge record disagrees.
    audit_verify_options flipped = o;
    flipped.anchor->keyed = false;
    CHECK(bad_seq_with(kept, flipped) == 6);
    // The kept records rewritten unkeyed: the first one fails.
    auto rewritten = kept;
    rewritten[0].actor = "mallory";
    rehash(rewritten[0]);
    CHECK(bad_seq_with(rewritten, o) == 6);
}
