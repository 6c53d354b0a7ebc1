#include <doctest/doctest.h>

#include <cstdint>
#include <cstdlib>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

#include "suppression/index.hpp"

using mailers::suppression_kind;
using mailers::detail::fingerprint_set;
using mailers::detail::suppression_index;

namespace {

// The seed of a randomised test: MAILERS_TEST_SEED replays a failure.
std::uint64_t test_seed() {
    if (const char* s = std::getenv("MAILERS_TEST_SEED")) return std::strtoull(s, nullptr, 10);
    std::random_device rd;
    return (static_cast<std::uint64_t>(rd()) << 32) | rd();
}

// Checks the invariants documented on fingerprint_set through its public
// face: strictly increasing iteration and every member findable.
void check_invariants(const fingerprint_set& s) {
    std::uint64_t prev = 0;
    std::size_t n = 0;
    bool ordered = true;
    bool findable = true;
    s.for_each([&](std::uint64_t fp) {
        ordered = ordered && fp > prev;
        findable = findable && s.contains(fp);
        prev = fp;
        ++n;
    });
    CHECK(ordered);
    CHECK(findable);
    CHECK(n == s.size());
}

}  // namespace

TEST_CASE("siphash matches the reference vectors of the SipHash paper") {
    const mailers::detail::sip_key key{0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL};
    std::string msg;
    for (char c = 0; c < 15; ++c) msg += c;
    // Appendix A of "SipHash: a fast short-input PRF" and its vector table.
    CHECK(mailers::detail::siphash<2, 4>(key, msg) == 0xa129ca6149be45e5ULL);
    CHECK(mailers::detail::siphash<2, 4>(key, "") == 0x726fdb47dd0e0e31ULL);
    // The variant the index uses differs, and depends on the key.
    CHECK(mailers::detail::siphash<1, 3>(key, msg) != mailers::detail::siphash<2, 4>(key, msg));
    CHECK(mailers::detail::siphash<1, 3>(key, msg) !=
          mailers::detail::siphash<1, 3>(mailers::detail::sip_key{1, 2}, msg));
}

TEST_CASE("load_partial_le reads exactly the bytes asked for") {
    const char bytes[16] = {'\x01', '\x82', '\x03', '\xf4', '\x05', '\x06', '\x87', '\x08',
                            '\x09', '\x0a', '\x0b', '\x0c', '\x0d', '\x0e', '\x0f', '\x10'};
    for (std::size_t off = 0; off < 8; ++off) {
        for (std::size_t n = 0; n < 8; ++n) {
            std::uint64_t expected = 0;
            for (std::size_t i = 0; i < n; ++i)
                expected |= static_cast<std::uint64_t>(static_cast<unsigned char>(bytes[off + i]))
                            << (8 * i);
            CAPTURE(off);
            CAPTURE(n);
            CHECK(mailers::detail::load_partial_le(bytes + off, n) == expected);
        }
    }
}

TEST_CASE("block_filter never forgets what was added") {
    mailers::detail::block_filter f;
    CHECK(f.may_contain(123));  // no memory: "maybe" to everything
    f.reset(64 * 1024);
    CHECK(f.memory_bytes() >= 64 * 1024);
    // Fingerprints are uniform 64-bit values, all bits of them.
    std::mt19937_64 rng(7);
    const auto uniform = [&rng] {
        std::uint64_t fp;
        while ((fp = rng()) == 0) {
        }
        return fp;
    };
    std::vector<std::uint64_t> in(50000);
    for (auto& fp : in) {
        fp = uniform();
        f.add(fp);
    }
    for (auto fp : in) REQUIRE(f.may_contain(fp));
    // About 10 bits per entry: 1-2% of strangers get a "maybe".
    int maybes = 0;
    for (int i = 0; i < 100000; ++i) maybes += f.may_contain(uniform());
    CHECK(maybes < 3000);
    f.clear_bits();
    CHECK_FALSE(f.may_contain(in[0]));
    mailers::detail::block_filter moved = std::move(f);
    CHECK(moved.memory_bytes() >= 64 * 1024);
    CHECK(f.memory_bytes() == 0);
    CHECK(f.may_contain(in[0]));
    moved.reset(0);
    CHECK(moved.memory_bytes() == 0);
}

TEST_CASE("fingerprint_set as a multiset keeps every copy") {
    fingerprint_set s;
    s.insert_copy(5);
    s.insert_copy(5);
    s.insert_copy(9);
    CHECK(s.size() == 3);
    CHECK_FALSE(s.insert(5));
    CHECK(s.erase(5));
    CHECK(s.contains(5));
    CHECK(s.erase(5));
    CHECK_FALSE(s.contains(5));
    CHECK(s.contains(9));
    for (std::uint64_t i = 0; i < 1000; ++i) s.insert_copy(42);
    CHECK(s.size() == 1001);
    for (std::uint64_t i = 0; i < 1000; ++i) REQUIRE(s.erase(42));
    CHECK_FALSE(s.contains(42));
    CHECK(s.contains(9));
}

TEST_CASE("fingerprint_set basics") {
    fingerprint_set s;
    CHECK(s.empty());
    CHECK_FALSE(s.contains(42));
    CHECK_FALSE(s.erase(42));
    CHECK(s.memory_bytes() == 0);

    CHECK(s.insert(42));
    CHECK_FALSE(s.insert(42));
    CHECK(s.contains(42));
    CHECK_FALSE(s.contains(43));
    CHECK(s.size() == 1);
    CHECK(s.memory_bytes() > 0);

    CHECK(s.insert(~std::uint64_t{0}));
    CHECK(s.insert(1));
    CHECK(s.contains(~std::uint64_t{0}));
    CHECK(s.contains(1));
    check_invariants(s);

    CHECK(s.erase(42));
    CHECK_FALSE(s.erase(42));
    CHECK_FALSE(s.contains(42));
    CHECK(s.size() == 2);

    fingerprint_set moved = std::move(s);
    CHECK(moved.contains(1));
    CHECK(s.empty());
    CHECK_FALSE(s.contains(1));
    CHECK(s.insert(7));  // a moved-from set is usable

    moved.clear();
    CHECK(moved.empty());
    CHECK(moved.memory_bytes() == 0);
    CHECK_FALSE(moved.contains(1));
}

TEST_CASE("fingerprint_set grows and rehashes without losing entries") {
    std::mt19937_64 rng(12345);
    fingerprint_set s;
    std::vector<std::uint64_t> in;
    std::size_t last_capacity = 0;
    int growths = 0;
    for (int i = 0; i < 200000; ++i) {
        const std::uint64_t fp = rng() | 1;
        in.push_back(fp);
        REQUIRE(s.insert(fp));
        if (s.capacity() != last_capacity) {
            ++growths;
            last_capacity = s.capacity();
            CHECK(s.size() <= s.capacity());
        }
    }
    CHECK(growths > 10);
    CHECK(s.size() == in.size());
    for (auto fp : in) REQUIRE(s.contains(fp));
    check_invariants(s);
    // The 0.8 maximum load leaves at most 8 / 0.4 = 20 bytes per entry
    // (plus the spare area), well inside the 40-byte budget.
    CHECK(static_cast<double>(s.memory_bytes()) / static_cast<double>(s.size()) <= 21.0);

    // reserve() up front: one allocation, no growth during the fill.
    fingerprint_set r;
    r.reserve(in.size());
    const std::size_t reserved = r.capacity();
    for (auto fp : in) r.insert(fp);
    CHECK(r.capacity() == reserved);
    CHECK(r.size() == in.size());
}

TEST_CASE("fingerprint_set copes with fingerprints that share one home slot") {
    // Not reachable through a keyed hash, but the set must stay correct and
    // its memory linear when every entry lands on the last home slot.
    fingerprint_set s;
    std::vector<std::uint64_t> in;
    for (std::uint64_t i = 0; i < 5000; ++i) in.push_back(~std::uint64_t{0} - i * 7);
    for (auto fp : in) REQUIRE(s.insert(fp));
    for (auto fp : in) REQUIRE(s.contains(fp));
    CHECK_FALSE(s.contains(~std::uint64_t{0} - 1));
    check_invariants(s);
    CHECK(s.memory_bytes() < 64 * in.size() * sizeof(std::uint64_t));
    for (std::size_t i = 0; i < in.size(); i += 2) REQUIRE(s.erase(in[i]));
    for (std::size_t i = 0; i < in.size(); ++i) REQUIRE(s.contains(in[i]) == (i % 2 == 1));
    check_invariants(s);

    // And the same at the low end, where everything's home is slot 0.
    fingerprint_set low;
    for (std::uint64_t i = 1; i <= 3000; ++i) REQUIRE(low.insert(i));
    for (std::uint64_t i = 1; i <= 3000; ++i) REQUIRE(low.contains(i));
    CHECK_FALSE(low.contains(3001));
    check_invariants(low);
}

TEST_CASE("domain entries match the domain and its subdomains only") {
    suppression_index idx(1);
    REQUIRE(idx.insert(suppression_kind::domain, "example.com"));
    CHECK(idx.contains_address("a@example.com"));
    CHECK(idx.contains_address("a@mail.example.com"));
    CHECK(idx.contains_address("a@x.y.mail.example.com"));
    CHECK_FALSE(idx.contains_address("a@notexample.com"));
    CHECK_FALSE(idx.contains_address("a@example.co"));
    CHECK_FALSE(idx.contains_address("a@example.com.evil.org"));
    CHECK_FALSE(idx.contains_address("a@xample.com"));
    CHECK_FALSE(idx.contains_address("example.com@other.org"));
    CHECK_FALSE(idx.contains_address("a@com"));
    // A quoted local part may hold '@'; the domain is after the last one.
    CHECK(idx.contains_address("\"x@y\"@example.com"));
    CHECK_FALSE(idx.contains_address("\"x@example.com\"@other.org"));

    auto m = idx.find("a@mail.example.com");
    REQUIRE(m);
    CHECK(m->kind == suppression_kind::domain);
    CHECK(m->value == "example.com");

    // The most specific domain, then the address itself, take precedence.
    idx.insert(suppression_kind::domain, "mail.example.com");
    CHECK(idx.find("a@mail.example.com")->value == "mail.example.com");
    idx.insert(suppression_kind::address, "a@mail.example.com");
    CHECK(idx.find("a@mail.example.com")->kind == suppression_kind::address);

    // Kinds are separate: an address entry is not a domain entry.
    CHECK(idx.contains(suppression_kind::domain, "example.com"));
    CHECK_FALSE(idx.contains(suppression_kind::address, "example.com"));
    CHECK_FALSE(idx.contains(suppression_kind::domain, "a@mail.example.com"));

    CHECK(idx.erase(suppression_kind::domain, "example.com"));
    CHECK_FALSE(idx.erase(suppression_kind::domain, "example.com"));
    CHECK_FALSE(idx.contains_address("b@example.com"));
    CHECK(idx.contains_address("b@mail.example.com"));
    CHECK_FALSE(idx.find("b@example.com"));
}

TEST_CASE("a top-level domain entry is allowed and matches everything under it") {
    suppression_index idx(2);
    idx.insert(suppression_kind::domain, "test");
    CHECK(idx.contains_address("a@example.test"));
    CHECK(idx.contains_address("a@b.c.test"));
    CHECK_FALSE(idx.contains_address("a@example.com"));
    CHECK_FALSE(idx.contains_address("a@test.com"));
}

TEST_CASE("address entries match exactly") {
    suppression_index idx(3);
    CHECK_FALSE(idx.contains_address("a@example.com"));
    CHECK(idx.insert(suppression_kind::address, "a@example.com"));
    CHECK_FALSE(idx.insert(suppression_kind::address, "a@example.com"));
    CHECK(idx.size() == 1);
    CHECK(idx.address_count() == 1);
    CHECK(idx.domain_count() == 0);
    CHECK(idx.contains_address("a@example.com"));
    CHECK_FALSE(idx.contains_address("b@example.com"));
    CHECK_FALSE(idx.contains_address("a@mail.example.com"));
    CHECK_FALSE(idx.contains_address("aa@example.com"));
    CHECK_FALSE(idx.contains_address(""));
    CHECK_FALSE(idx.contains_address("@"));

    // Address literals have no parent domains to walk.
    idx.insert(suppression_kind::address, "u@[192.0.2.1]");
    idx.insert(suppression_kind::domain, "1]");
    CHECK(idx.contains_address("u@[192.0.2.1]"));
    CHECK_FALSE(idx.contains_address("v@[192.0.2.1]"));

    idx.clear();
    CHECK(idx.size() == 0);
    CHECK(idx.memory_bytes() == 0);
    CHECK_FALSE(idx.contains_address("a@example.com"));
}

TEST_CASE("indexes with different keys agree on membership") {
    suppression_index a;  // random keys
    suppression_index b;
    for (int i = 0; i < 1000; ++i) {
        const std::string v = "user" + std::to_string(i) + "@example.com";
        a.insert(suppression_kind::address, v);
        b.insert(suppression_kind::address, v);
    }
    for (int i = 0; i < 2000; ++i) {
        const std::string v = "user" + std::to_string(i) + "@example.com";
        CHECK(a.contains_address(v) == (i < 1000));
        CHECK(b.contains_address(v) == (i < 1000));
    }
    a.insert(suppression_kind::domain, "example.org");
    suppression_index moved = std::move(a);
    CHECK(moved.contains_address("user1@example.com"));
    CHECK(moved.contains_address("x@example.org"));
    CHECK(moved.size() == 1001);
    // The moved-from index is empty and usable.
    CHECK(a.size() == 0);
    CHECK_FALSE(a.contains_address("user1@example.com"));
    CHECK_FALSE(a.contains_address("x@example.org"));
    a.insert(suppression_kind::domain, "example.net");
    CHECK(a.contains_address("x@mail.example.net"));
    b = std::move(moved);
    CHECK(b.contains_address("x@example.org"));
    CHECK(moved.size() == 0);
}

TEST_CASE("un-suppressing most entries keeps the rest and rebuilds the filter") {
    suppression_index idx(5);
    constexpr int n = 20000;
    const auto addr = [](int i) { return "u" + std::to_string(i) + "@churn.example"; };
    for (int round = 0; round < 3; ++round) {
        for (int i = 0; i < n; ++i) idx.insert(suppression_kind::address, addr(i));
        for (int i = 0; i < n; ++i)
            if (i % 10 != 0) REQUIRE(idx.erase(suppression_kind::address, addr(i)));
        for (int i = 0; i < n; ++i) REQUIRE(idx.contains_address(addr(i)) == (i % 10 == 0));
    }
    CHECK(idx.address_count() == n / 10);
}

TEST_CASE("memory per entry stays within the budget as the index grows") {
    suppression_index idx(4);
    std::size_t n = 0;
    for (std::size_t target : {10000u, 100000u, 500000u, 1000000u}) {
        for (; n < target; ++n)
            idx.insert(suppression_kind::address, "u" + std::to_string(n) + "@x.org");
        CAPTURE(target);
        const double per_entry = static_cast<double>(idx.memory_bytes()) / static_cast<double>(n);
        CHECK(per_entry <= 40.0);
        CHECK(per_entry >= 8.0);
    }
}

TEST_CASE("randomised operations agree with a std::unordered_set model") {
    const std::uint64_t seed = test_seed();
    INFO("seed (replay with MAILERS_TEST_SEED): " << seed);
    std::mt19937_64 rng(seed);

    // A pool small enough that inserts collide, erases hit, and domains
    // shadow addresses: 400 domains, some of them subdomains of others.
    std::vector<std::string> domains;
    for (int i = 0; i < 200; ++i) domains.push_back("d" + std::to_string(i) + ".example");
    for (int i = 0; i < 200; ++i)
        domains.push_back("s" + std::to_string(i) + "." + domains[static_cast<std::size_t>(i)]);
    std::vector<std::string> addresses;
    for (int i = 0; i < 50000; ++i)
        addresses.push_back("user" + std::to_string(i) + "@" + domains[rng() % domains.size()]);

    suppression_index idx(seed);
    std::unordered_set<std::string> model_addr, model_dom;
    const auto model_contains = [&](const std::string& addr) {
        if (model_addr.count(addr)) return true;
        std::string_view d = std::string_view(addr).substr(addr.rfind('@') + 1);
        for (;;) {
            if (model_dom.count(std::string(d))) return true;
            const auto dot = d.find('.');
            if (dot == std::string_view::npos) return false;
            d.remove_prefix(dot + 1);
        }
    };

    constexpr int ops = 1000000;
    int mismatches = 0;
    for (int op = 0; op < ops && mismatches == 0; ++op) {
        const auto dice = rng() % 100;
        const bool domain = rng() % 50 == 0;  // 2% of updates touch a domain
        const std::string& v =
            domain ? domains[rng() % domains.size()] : addresses[rng() % addresses.size()];
        const auto kind = domain ? suppression_kind::domain : suppression_kind::address;
        auto& model = domain ? model_dom : model_addr;
        if (dice < 35) {
            const bool added = idx.insert(kind, v);
            if (added != model.insert(v).second) ++mismatches;
        } else if (dice < 55) {
            const bool erased = idx.erase(kind, v);
            if (erased != (model.erase(v) == 1)) ++mismatches;
        } else if (dice < 60) {
            if (idx.contains(kind, v) != (model.count(v) == 1)) ++mismatches;
        } else {
            const std::string& a = addresses[rng() % addresses.size()];
            if (idx.contains_address(a) != model_contains(a)) ++mismatches;
        }
        if (idx.address_count() != model_addr.size() || idx.domain_count() != model_dom.size())
            ++mismatches;
        if (mismatches != 0) {
            CAPTURE(op);
            CAPTURE(v);
            FAIL_CHECK("index and model disagree");
        }
    }
    CHECK(mismatches == 0);
    for (const auto& a : addresses) REQUIRE(idx.contains_address(a) == model_contains(a));
}
