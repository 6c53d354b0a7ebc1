// The in-memory suppression index the engine consults on every send.
//
// The store is the authority on suppression entries; this index is a
// membership filter rebuilt from the store at start-up and kept coherent by
// the engine on every suppress / unsuppress. It holds no strings: each entry
// is a 64-bit keyed fingerprint (SipHash-1-3 under a per-index key) in an
// open-addressing table, with a byte of Bloom filter per table slot in front
// of it: 9 bytes per slot, 11 to 23 bytes per entry over the table's load
// range (about 15 at 10M entries).
//
// What a fingerprint can get wrong, and why that is acceptable:
//   * A lookup of a value that is not in the index answers true with
//     probability about n / 2^64 (5e-13 per check at 10M entries). The error
//     is a message not sent, never a message sent to a suppressed recipient.
//   * Two distinct entries that share a fingerprint (about n^2 / 2^65 for the
//     whole index: 3e-6 at 10M entries) are one entry: both are suppressed,
//     and erasing either un-suppresses both. Nobody can aim for this while
//     the key is secret: the default constructor draws it from
//     std::random_device; the seeded constructor is for reproducible tests
//     and benchmarks, and makes the key as guessable as the seed.
//
// Thread safety: none of its own. The const members never write (not even
// statistics), so any number of readers may run concurrently while no writer
// does; the engine guards the index with a shared_mutex.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <mailers/config.hpp>
#include <mailers/suppression.hpp>
#include <optional>
#include <string_view>

namespace mailers::detail {

/// A 128-bit SipHash key.
struct sip_key {
    std::uint64_t k0 = 0;
    std::uint64_t k1 = 0;
};

/// The `n` < 8 bytes at `p` as a little-endian word, zero-padded, without a
/// byte loop or a library memcpy call: at most two (overlapping) loads.
inline std::uint64_t load_partial_le(const char* p, std::size_t n) noexcept {
    const auto byte = [p](std::size_t i) {
        return static_cast<std::uint64_t>(static_cast<unsigned char>(p[i]));
    };
    const auto le32 = [](const char* q) {
        std::uint32_t w;
        std::memcpy(&w, q, 4);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap32(w);
        return static_cast<std::uint64_t>(w);
    };
    if (n >= 4) return le32(p) | ((le32(p + n - 4) >> (8 * (8 - n))) << 32);
    if (n == 0) return 0;
    return byte(0) | (byte(n / 2) << (8 * (n / 2))) | (byte(n - 1) << (8 * (n - 1)));
}

/// SipHash-c-d (Aumasson and Bernstein, 2012) of `data`. The index uses c=1,
/// d=3: the variant hash tables with untrusted keys rely on (Rust, CPython),
/// at half the rounds of the conservative 2-4.
template <int compression_rounds, int finalization_rounds>
std::uint64_t siphash(const sip_key& key, std::string_view data) noexcept {
    std::uint64_t v0 = key.k0 ^ 0x736f6d6570736575ULL;
    std::uint64_t v1 = key.k1 ^ 0x646f72616e646f6dULL;
    std::uint64_t v2 = key.k0 ^ 0x6c7967656e657261ULL;
    std::uint64_t v3 = key.k1 ^ 0x7465646279746573ULL;
    const auto round = [&] {
        v0 += v1;
        v1 = std::rotl(v1, 13);
        v1 ^= v0;
        v0 = std::rotl(v0, 32);
        v2 += v3;
        v3 = std::rotl(v3, 16);
        v3 ^= v2;
        v0 += v3;
        v3 = std::rotl(v3, 21);
        v3 ^= v0;
        v2 += v1;
        v1 = std::rotl(v1, 17);
        v1 ^= v2;
        v2 = std::rotl(v2, 32);
    };
    const auto load_le = [](const char* p) {
        std::uint64_t w;
        std::memcpy(&w, p, 8);
        if constexpr (std::endian::native == std::endian::big) w = __builtin_bswap64(w);
        return w;
    };
    const char* p = data.data();
    const std::size_t n = data.size();
    const char* const end = p + (n & ~std::size_t{7});
    for (; p != end; p += 8) {
        const std::uint64_t m = load_le(p);
        v3 ^= m;
        for (int i = 0; i < compression_rounds; ++i) round();
        v0 ^= m;
    }
    const std::uint64_t last =
        (static_cast<std::uint64_t>(n & 0xff) << 56) | load_partial_le(p, n & 7);
    v3 ^= last;
    for (int i = 0; i < compression_rounds; ++i) round();
    v0 ^= last;
    v2 ^= 0xff;
    for (int i = 0; i < finalization_rounds; ++i) round();
    return v0 ^ v1 ^ v2 ^ v3;
}

/// A set of non-zero 64-bit fingerprints: open addressing with linear
/// probing, where an entry's home slot is the top bits of the fingerprint.
///
/// Invariants (they are what make a miss as cheap as a hit):
///   * occupied slots, read left to right, hold increasing values (strictly,
///     unless insert_copy made it a multiset);
///   * every entry sits at or after its home, with no empty slot between;
///   * the table never wraps: it has spare slots beyond the capacity and the
///     very last slot stays empty, so probes need no bounds checks.
/// A lookup therefore stops at the first slot holding a value >= the one
/// sought. Deletion shifts the rest of the run back (no tombstones), and
/// growth is a single in-order pass.
class fingerprint_set {
public:
    /// Initial slots past the power-of-two capacity. At the 0.8 maximum
    /// load the chance that a run of random fingerprints reaches past 64 is
    /// about 1e-12; if one does, the spare area doubles (not the capacity,
    /// so crafted fingerprints sharing one home cost memory linear in their
    /// number).
    static constexpr std::size_t min_overflow = 64;
    static constexpr std::size_t min_capacity = 16;

    fingerprint_set() noexcept = default;
    fingerprint_set(const fingerprint_set&) = delete;
    fingerprint_set& operator=(const fingerprint_set&) = delete;
    fingerprint_set(fingerprint_set&& other) noexcept;
    fingerprint_set& operator=(fingerprint_set&& other) noexcept;
    ~fingerprint_set();

    /// `fp` must not be 0 (the empty-slot marker) here and in insert/erase.
    bool contains(std::uint64_t fp) const noexcept {
        if (size_ == 0) return false;
        const std::uint64_t* s = slots_ + home(fp);
        // One unsigned compare covers "empty" (0 - 1 wraps) and "past fp".
        while (*s - 1 < fp - 1) ++s;
        return *s == fp;
    }
    /// Starts loading the cache line `contains(fp)` will read first.
    void prefetch(std::uint64_t fp) const noexcept {
        if (size_ != 0) __builtin_prefetch(slots_ + home(fp));
    }
    /// Returns false when `fp` was already present.
    bool insert(std::uint64_t fp);
    /// Adds `fp` even when present, making the set a multiset.
    void insert_copy(std::uint64_t fp);
    /// Removes one copy; returns false when `fp` was absent.
    bool erase(std::uint64_t fp) noexcept;
    /// Makes room for `n` entries without further allocation.
    void reserve(std::size_t n);
    /// Removes every entry and releases the memory.
    void clear() noexcept;

    std::size_t size() const noexcept { return size_; }
    bool empty() const noexcept { return size_ == 0; }
    /// Power-of-two number of home slots (0 before the first insert).
    std::size_t capacity() const noexcept { return capacity_; }
    /// Bytes of slot storage held.
    std::size_t memory_bytes() const noexcept { return bytes_; }

    /// Calls `fn(fp)` for each fingerprint (each copy) in increasing order.
    template <class Fn>
    void for_each(Fn&& fn) const {
        if (capacity_ == 0) return;
        for (std::size_t i = 0, n = capacity_ + overflow_; i < n; ++i)
            if (slots_[i] != 0) fn(slots_[i]);
    }

private:
    std::size_t home(std::uint64_t fp) const noexcept {
        return static_cast<std::size_t>(fp >> shift_);
    }
    static std::size_t capacity_for(std::size_t n) noexcept;
    bool add(std::uint64_t fp, bool copy);
    void rehash(std::size_t new_capacity, std::size_t new_overflow);

    std::uint64_t* slots_ = nullptr;
    std::size_t bytes_ = 0;
    std::size_t capacity_ = 0;
    std::size_t size_ = 0;
    std::size_t overflow_ = 0;
    // 64 - log2(capacity_); 63 while empty so home() stays in range.
    unsigned shift_ = 63;
    bool mapped_ = false;
};

/// A blocked Bloom filter over fingerprints: one 64-byte block per
/// fingerprint, one bit in each of the block's eight words. It answers "no"
/// or "maybe", so it can only save work, never change an answer.
///
/// It exists because of memory latency: a 10M-entry table is 128 MiB, and a
/// check that must read it waits for DRAM. The filter is a byte per table
/// slot (16 MiB at 10M entries, 10 to 20 bits per entry), small enough to
/// stay largely in a last-level cache, and rules out 99% (at the 0.8 maximum
/// load) to 99.9% of the addresses that are not suppressed, which is nearly
/// every address an engine checks. Bits are never cleared one by one; the
/// owner rebuilds the filter from the table's fingerprints instead.
class block_filter {
public:
    block_filter() noexcept = default;
    block_filter(const block_filter&) = delete;
    block_filter& operator=(const block_filter&) = delete;
    block_filter(block_filter&& other) noexcept;
    block_filter& operator=(block_filter&& other) noexcept;
    ~block_filter();

    /// Allocates `bytes` (rounded up to whole 64-byte blocks, a power of two
    /// of them), all clear. 0 releases the filter.
    void reset(std::size_t bytes);
    /// Clears every bit, keeping the memory.
    void clear_bits() noexcept;
    void add(std::uint64_t fp) noexcept {
        if (blocks_ == 0) return;
        std::uint64_t* b = block(fp);
        const std::uint64_t h = bits(fp);
        for (int j = 0; j < 8; ++j) b[j] |= std::uint64_t{1} << ((h >> (6 * j)) & 63);
    }
    /// False only when `fp` was never added since the last reset/clear_bits;
    /// always true for a filter without memory.
    bool may_contain(std::uint64_t fp) const noexcept {
        if (blocks_ == 0) return true;
        const std::uint64_t* b = block(fp);
        const std::uint64_t h = bits(fp);
        std::uint64_t all = 1;
        for (int j = 0; j < 8; ++j) all &= b[j] >> ((h >> (6 * j)) & 63);
        return all != 0;
    }
    void prefetch(std::uint64_t fp) const noexcept {
        if (blocks_ != 0) __builtin_prefetch(block(fp));
    }
    std::size_t memory_bytes() const noexcept { return bytes_; }

private:
    // The block comes from the low bits, the bit positions from a
    // multiplicative remix; the table's home slot uses the high bits.
    std::uint64_t* block(std::uint64_t fp) const noexcept {
        return words_ + 8 * static_cast<std::size_t>(fp & (blocks_ - 1));
    }
    static std::uint64_t bits(std::uint64_t fp) noexcept {
        return (fp * 0x9e3779b97f4a7c15ULL) >> 16;
    }

    std::uint64_t* words_ = nullptr;
    std::size_t bytes_ = 0;
    std::size_t blocks_ = 0;
    bool mapped_ = false;
};

/// What `suppression_index::find` matched; `value` views the argument.
struct suppression_match {
    suppression_kind kind = suppression_kind::address;
    std::string_view value;
};

/// Address and domain entries, and the check the engine makes per recipient.
///
/// A check hashes the address once with SipHash and starts loading both its
/// block_filter block and its table slot. While those loads are in flight it
/// walks the domain and its parents through a second filter, of cheap
/// (multiply-mix, keyed) hashes of the domain entries, so SipHash runs for a
/// domain only when that filter matches; it holds one copy per domain entry
/// and never hides one. The table is read only when the block filter says
/// "maybe".
class suppression_index {
public:
    /// Draws the hash keys from std::random_device.
    suppression_index();
    /// Keys derived from `seed`: reproducible, for tests and benchmarks. An
    /// index fed from outside input should use the default constructor.
    explicit suppression_index(std::uint64_t seed) noexcept;
    /// A moved-from index is empty and usable.
    suppression_index(suppression_index&& other) noexcept;
    suppression_index& operator=(suppression_index&& other) noexcept;

    /// True when the address, its domain, or any parent domain of it is
    /// suppressed: for "u@a.b.example.com" the domains a.b.example.com,
    /// b.example.com, example.com and com are looked up (a top-level domain
    /// entry is allowed, so "com" is too). "u@notexample.com" never matches
    /// the entry "example.com". `normalised_addr` must come from
    /// normalise_address; anything else is looked up as given.
    bool contains_address(std::string_view normalised_addr) const noexcept;

    /// Which entry suppresses the address: the address entry first, then the
    /// most specific domain; nullopt when none does.
    std::optional<suppression_match> find(std::string_view normalised_addr) const noexcept;

    /// Exact membership of one entry, without parent-domain matching.
    bool contains(suppression_kind kind, std::string_view normalised_value) const noexcept;

    /// `value` must be normalised (normalise_address / normalise_domain).
    /// Returns false when the entry was already present.
    bool insert(suppression_kind kind, std::string_view value);
    /// Returns false when the entry was absent.
    bool erase(suppression_kind kind, std::string_view value) noexcept;

    /// The 8 bytes an address entry is kept as. A bulk import keeps these,
    /// not the values, until its commit lets it insert them; they are only
    /// valid for this index (its key).
    std::uint64_t address_fingerprint(std::string_view normalised_addr) const noexcept {
        return fingerprint(normalised_addr);
    }
    /// insert(address, value) for the value `fp` was made from.
    bool insert_address_fingerprint(std::uint64_t fp);

    std::size_t size() const noexcept { return addresses_.size() + domains_.size(); }
    std::size_t address_count() const noexcept { return addresses_.size(); }
    std::size_t domain_count() const noexcept { return domains_.size(); }
    /// Makes room for `addresses` address entries and `domains` domain
    /// entries; bulk loads call it first so the table is filled once.
    void reserve(std::size_t addresses, std::size_t domains = 0);
    void clear() noexcept;
    /// Heap bytes held by the index (the tables; the object itself aside).
    std::size_t memory_bytes() const noexcept;

private:
    std::uint64_t fingerprint(std::string_view value) const noexcept;
    std::uint64_t filter_hash(std::string_view domain) const noexcept;
    void rebuild_address_filter() noexcept;
    bool domain_suppressed(std::string_view domain, std::size_t labels) const noexcept;
    std::optional<std::string_view> find_domain(std::string_view addr) const noexcept;

    static constexpr std::size_t max_labels = 128;
    static std::size_t label_count(std::string_view domain) noexcept;

    sip_key key_;
    std::uint64_t filter_key_ = 0;
    fingerprint_set addresses_;
    // A byte per address slot, rebuilt whenever the table is resized and
    // once as many entries have been erased as remain (erased entries leave
    // their bits set, which only makes "maybe" more frequent).
    block_filter address_filter_;
    std::size_t address_filter_capacity_ = 0;
    std::size_t address_filter_stale_ = 0;
    fingerprint_set domains_;
    // filter_hash of each domain entry, as a multiset: two entries may share
    // a filter hash, and erasing one must leave the other's copy.
    fingerprint_set domain_filter_;
    // Domain entries by number of labels (the last bucket holds the rest).
    // A check hashes only the suffixes whose length in labels some entry
    // has, which skips the top-level domain and deep subdomains almost
    // always.
    std::array<std::uint32_t, max_labels> domains_by_labels_{};
};

}  // namespace mailers::detail
