#include "suppression/index.hpp"

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <new>
#include <random>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace mailers::detail {

namespace {

// Above this size the slots come straight from mmap, 2 MiB aligned and
// marked for transparent huge pages: a 10M-entry table spans 128 MiB, and
// with 4 KiB pages nearly every lookup would also miss the TLB.
constexpr std::size_t huge_page_bytes = std::size_t{2} << 20;

struct slot_memory {
    std::uint64_t* slots = nullptr;
    std::size_t bytes = 0;
    bool mapped = false;
};

slot_memory allocate_slots(std::size_t count) {
    slot_memory m;
    m.bytes = count * sizeof(std::uint64_t);
#if defined(__linux__)
    if (m.bytes >= huge_page_bytes) {
        m.bytes = (m.bytes + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
        // Over-map by one huge page so the table can start on a boundary.
        const std::size_t span = m.bytes + huge_page_bytes;
        void* p = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) throw std::bad_alloc();
        auto base = reinterpret_cast<std::uintptr_t>(p);
        const auto aligned = (base + huge_page_bytes - 1) & ~(huge_page_bytes - 1);
        if (aligned != base) ::munmap(p, aligned - base);
        const auto tail = base + span - (aligned + m.bytes);
        if (tail != 0) ::munmap(reinterpret_cast<void*>(aligned + m.bytes), tail);
        ::madvise(reinterpret_cast<void*>(aligned), m.bytes, MADV_HUGEPAGE);
        // Anonymous mappings are zero-filled: every slot starts empty.
        m.slots = reinterpret_cast<std::uint64_t*>(aligned);
        m.mapped = true;
        return m;
    }
#endif
    // 64-byte aligned, so that a filter block is one cache line.
    m.bytes = (m.bytes + 63) & ~std::size_t{63};
    m.slots = static_cast<std::uint64_t*>(std::aligned_alloc(64, m.bytes));
    if (m.slots == nullptr) throw std::bad_alloc();
    std::memset(m.slots, 0, m.bytes);
    return m;
}

void release_slots(std::uint64_t* slots, std::size_t bytes, bool mapped) noexcept {
    if (slots == nullptr) return;
#if defined(__linux__)
    if (mapped) {
        ::munmap(slots, bytes);
        return;
    }
#endif
    (void)bytes;
    (void)mapped;
    std::free(slots);
}

// Growth keeps the load at or below 0.8: linear probing stays at about three
// slots per successful lookup there, and the table at 8 / 0.8 = 10 to 20
// bytes per entry.
constexpr std::size_t max_load(std::size_t capacity) noexcept {
    return capacity / 5 * 4;
}

std::uint64_t splitmix64(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

}  // namespace

// --- fingerprint_set ---------------------------------------------------------

fingerprint_set::fingerprint_set(fingerprint_set&& other) noexcept
    : slots_(std::exchange(other.slots_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      capacity_(std::exchange(other.capacity_, 0)),
      size_(std::exchange(other.size_, 0)),
      overflow_(std::exchange(other.overflow_, 0)),
      shift_(std::exchange(other.shift_, 63)),
      mapped_(std::exchange(other.mapped_, false)) {}

fingerprint_set& fingerprint_set::operator=(fingerprint_set&& other) noexcept {
    if (this != &other) {
        clear();
        slots_ = std::exchange(other.slots_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
        capacity_ = std::exchange(other.capacity_, 0);
        size_ = std::exchange(other.size_, 0);
        overflow_ = std::exchange(other.overflow_, 0);
        shift_ = std::exchange(other.shift_, 63);
        mapped_ = std::exchange(other.mapped_, false);
    }
    return *this;
}

fingerprint_set::~fingerprint_set() {
    clear();
}

void fingerprint_set::clear() noexcept {
    release_slots(slots_, bytes_, mapped_);
    slots_ = nullptr;
    bytes_ = 0;
    capacity_ = 0;
    size_ = 0;
    overflow_ = 0;
    shift_ = 63;
    mapped_ = false;
}

std::size_t fingerprint_set::capacity_for(std::size_t n) noexcept {
    std::size_t c = min_capacity;
    while (max_load(c) < n) c *= 2;
    return c;
}

void fingerprint_set::reserve(std::size_t n) {
    const std::size_t c = capacity_for(n);
    if (c > capacity_) rehash(c, std::max(overflow_, min_overflow));
}

void fingerprint_set::rehash(std::size_t new_capacity, std::size_t new_overflow) {
    for (;;) {
        const std::size_t total = new_capacity + new_overflow;
        slot_memory m = allocate_slots(total);
        const unsigned shift = 64 - static_cast<unsigned>(std::countr_zero(new_capacity));
        // The old slots are already in increasing order, so each entry goes
        // to its home or right after the previous one: one forward pass.
        std::size_t next = 0;
        bool overflow = false;
        for_each([&](std::uint64_t fp) {
            if (overflow) return;
            const std::size_t pos = std::max(next, static_cast<std::size_t>(fp >> shift));
            if (pos >= total - 1) {
                overflow = true;
                return;
            }
            m.slots[pos] = fp;
            next = pos + 1;
        });
        if (overflow) {
            release_slots(m.slots, m.bytes, m.mapped);
            new_overflow *= 2;
            continue;
        }
        const std::size_t size = size_;
        clear();
        slots_ = m.slots;
        bytes_ = m.bytes;
        mapped_ = m.mapped;
        capacity_ = new_capacity;
        overflow_ = new_overflow;
        shift_ = shift;
        size_ = size;
        return;
    }
}

bool fingerprint_set::insert(std::uint64_t fp) {
    return add(fp, false);
}

void fingerprint_set::insert_copy(std::uint64_t fp) {
    add(fp, true);
}

bool fingerprint_set::add(std::uint64_t fp, bool copy) {
    assert(fp != 0);
    if (capacity_ == 0 || size_ >= max_load(capacity_)) {
        if (!copy && contains(fp)) return false;
        rehash(capacity_ == 0 ? min_capacity : capacity_ * 2, std::max(overflow_, min_overflow));
    }
    for (;;) {
        std::uint64_t* s = slots_ + home(fp);
        while (*s - 1 < fp - 1) ++s;
        if (*s == fp && !copy) return false;
        std::uint64_t* hole = s;
        while (*hole != 0) ++hole;
        std::uint64_t* const last = slots_ + capacity_ + overflow_ - 1;
        if (hole == last) {
            rehash(capacity_, overflow_ * 2);
            continue;
        }
        std::memmove(s + 1, s, static_cast<std::size_t>(hole - s) * sizeof(std::uint64_t));
        *s = fp;
        ++size_;
        return true;
    }
}

bool fingerprint_set::erase(std::uint64_t fp) noexcept {
    if (size_ == 0) return false;
    std::uint64_t* s = slots_ + home(fp);
    while (*s - 1 < fp - 1) ++s;
    if (*s != fp) return false;
    // Close the gap: pull back the rest of the run up to the first entry
    // already at its home (or the first empty slot). Since the run is sorted,
    // no later entry could move further back than that one.
    std::uint64_t* end = s + 1;
    while (*end != 0 && home(*end) < static_cast<std::size_t>(end - slots_)) ++end;
    std::memmove(s, s + 1, static_cast<std::size_t>(end - s - 1) * sizeof(std::uint64_t));
    *(end - 1) = 0;
    --size_;
    return true;
}

// --- block_filter ------------------------------------------------------------

block_filter::block_filter(block_filter&& other) noexcept
    : words_(std::exchange(other.words_, nullptr)),
      bytes_(std::exchange(other.bytes_, 0)),
      blocks_(std::exchange(other.blocks_, 0)),
      mapped_(std::exchange(other.mapped_, false)) {}

block_filter& block_filter::operator=(block_filter&& other) noexcept {
    if (this != &other) {
        reset(0);
        words_ = std::exchange(other.words_, nullptr);
        bytes_ = std::exchange(other.bytes_, 0);
        blocks_ = std::exchange(other.blocks_, 0);
        mapped_ = std::exchange(other.mapped_, false);
    }
    return *this;
}

block_filter::~block_filter() {
    reset(0);
}

void block_filter::reset(std::size_t bytes) {
    release_slots(words_, bytes_, mapped_);
    words_ = nullptr;
    bytes_ = 0;
    blocks_ = 0;
    mapped_ = false;
    if (bytes == 0) return;
    std::size_t blocks = 1;
    while (blocks * 64 < bytes) blocks *= 2;
    slot_memory m = allocate_slots(blocks * 8);
    words_ = m.slots;
    bytes_ = m.bytes;
    mapped_ = m.mapped;
    blocks_ = blocks;
}

void block_filter::clear_bits() noexcept {
    if (words_ != nullptr) std::memset(words_, 0, blocks_ * 64);
}

// --- suppression_index -------------------------------------------------------

suppression_index::suppression_index() {
    std::random_device rd;
    const auto draw = [&rd] {
        return (static_cast<std::uint64_t>(rd()) << 32) ^ static_cast<std::uint64_t>(rd());
    };
    key_.k0 = draw();
    key_.k1 = draw();
    filter_key_ = draw();
}

suppression_index::suppression_index(std::uint64_t seed) noexcept {
    key_.k0 = splitmix64(seed);
    key_.k1 = splitmix64(seed);
    filter_key_ = splitmix64(seed);
}

suppression_index::suppression_index(suppression_index&& other) noexcept
    : key_(other.key_),
      filter_key_(other.filter_key_),
      addresses_(std::move(other.addresses_)),
      address_filter_(std::move(other.address_filter_)),
      address_filter_capacity_(other.address_filter_capacity_),
      address_filter_stale_(other.address_filter_stale_),
      domains_(std::move(other.domains_)),
      domain_filter_(std::move(other.domain_filter_)),
      domains_by_labels_(other.domains_by_labels_) {
    other.clear();
}

suppression_index& suppression_index::operator=(suppression_index&& other) noexcept {
    if (this != &other) {
        key_ = other.key_;
        filter_key_ = other.filter_key_;
        addresses_ = std::move(other.addresses_);
        address_filter_ = std::move(other.address_filter_);
        address_filter_capacity_ = other.address_filter_capacity_;
        address_filter_stale_ = other.address_filter_stale_;
        domains_ = std::move(other.domains_);
        domain_filter_ = std::move(other.domain_filter_);
        domains_by_labels_ = other.domains_by_labels_;
        other.clear();
    }
    return *this;
}

std::uint64_t suppression_index::fingerprint(std::string_view value) const noexcept {
    const std::uint64_t h = siphash<1, 3>(key_, value);
    // 0 marks an empty slot; folding it onto 1 costs one value in 2^64.
    return h == 0 ? 1 : h;
}

// Not collision resistant, and it need not be: a filter match only means
// the SipHash fingerprint gets checked. It only has to spread real domain
// names well and cost a few multiplications.
std::uint64_t suppression_index::filter_hash(std::string_view d) const noexcept {
    const auto mix = [](std::uint64_t h) {
        h ^= h >> 32;
        h *= 0xd6e8feb86659fd93ULL;
        h ^= h >> 32;
        return h;
    };
    std::uint64_t h = filter_key_ ^ (d.size() * 0x9e3779b97f4a7c15ULL);
    std::size_t i = 0;
    for (; i + 8 <= d.size(); i += 8) {
        std::uint64_t w;
        std::memcpy(&w, d.data() + i, 8);
        h = mix(h ^ w) * 0xa0761d6478bd642fULL;
    }
    if (i < d.size())
        h = mix(h ^ load_partial_le(d.data() + i, d.size() - i)) * 0xe7037ed1a0b428dbULL;
    h = mix(h);
    return h == 0 ? 1 : h;
}

bool suppression_index::domain_suppressed(std::string_view d, std::size_t labels) const noexcept {
    return domains_by_labels_[std::min(labels, max_labels - 1)] != 0 &&
           domain_filter_.contains(filter_hash(d)) && domains_.contains(fingerprint(d));
}

std::optional<std::string_view> suppression_index::find_domain(
    std::string_view addr) const noexcept {
    // One backward pass up to the '@' finds where each parent domain starts
    // (a quoted local part may hold '@' and '.', the domain never does).
    constexpr std::size_t max_dots = 64;
    std::array<std::size_t, max_dots> dots;  // right to left
    std::size_t ndots = 0;
    bool many = false;
    const char* const begin = addr.data();
    const char* p = begin + addr.size();
    for (;;) {
        if (p == begin) return std::nullopt;  // no '@'
        const char c = *--p;
        if (c == '@') break;
        if (c == '.') {
            if (ndots < max_dots)
                dots[ndots++] = static_cast<std::size_t>(p - begin);
            else
                many = true;
        }
    }
    const auto i = static_cast<std::size_t>(p - begin) + 1;
    // No domain, or an address literal ("u@[192.0.2.1]"): nothing to match.
    if (i == addr.size() || addr[i] == '[') return std::nullopt;
    std::string_view d = addr.substr(i);
    if (many) {
        // Past 64 labels no domain is valid; walk it the plain way anyway.
        for (std::size_t labels = label_count(d); !d.empty(); --labels) {
            if (domain_suppressed(d, labels)) return d;
            const auto dot = d.find('.');
            if (dot == std::string_view::npos) break;
            d.remove_prefix(dot + 1);
        }
        return std::nullopt;
    }
    if (domain_suppressed(d, ndots + 1)) return d;
    for (std::size_t k = ndots; k-- > 0;) {
        const std::size_t from = dots[k] + 1;
        if (from != addr.size() && domain_suppressed(addr.substr(from), k + 1))
            return addr.substr(from);
    }
    return std::nullopt;
}

std::optional<suppression_match> suppression_index::find(std::string_view addr) const noexcept {
    const std::uint64_t afp = fingerprint(addr);
    // The address table is the large one and almost always a cache miss:
    // start that load now and walk the (small, cached) domain side meanwhile.
    address_filter_.prefetch(afp);
    addresses_.prefetch(afp);
    const auto domain = domains_.empty() ? std::nullopt : find_domain(addr);
    if (address_filter_.may_contain(afp) && addresses_.contains(afp))
        return suppression_match{suppression_kind::address, addr};
    if (domain) return suppression_match{suppression_kind::domain, *domain};
    return std::nullopt;
}

bool suppression_index::contains_address(std::string_view addr) const noexcept {
    return find(addr).has_value();
}

bool suppression_index::contains(suppression_kind kind, std::string_view value) const noexcept {
    const std::uint64_t fp = fingerprint(value);
    return kind == suppression_kind::address ? addresses_.contains(fp) : domains_.contains(fp);
}

std::size_t suppression_index::label_count(std::string_view domain) noexcept {
    if (domain.empty()) return 0;
    return 1 + static_cast<std::size_t>(std::count(domain.begin(), domain.end(), '.'));
}

bool suppression_index::insert_address_fingerprint(std::uint64_t fp) {
    if (!addresses_.insert(fp)) return false;
    if (addresses_.capacity() != address_filter_capacity_)
        rebuild_address_filter();
    else
        address_filter_.add(fp);
    return true;
}

bool suppression_index::insert(suppression_kind kind, std::string_view value) {
    const std::uint64_t fp = fingerprint(value);
    if (kind == suppression_kind::address) return insert_address_fingerprint(fp);
    if (!domains_.insert(fp)) return false;
    domain_filter_.insert_copy(filter_hash(value));
    ++domains_by_labels_[std::min(label_count(value), max_labels - 1)];
    return true;
}

bool suppression_index::erase(suppression_kind kind, std::string_view value) noexcept {
    const std::uint64_t fp = fingerprint(value);
    if (kind == suppression_kind::address) {
        if (!addresses_.erase(fp)) return false;
        // Rebuilding costs a pass over the table, so it waits until the
        // erased entries' bits could have doubled the filter's load.
        if (++address_filter_stale_ > std::max<std::size_t>(addresses_.size(), 4096)) {
            address_filter_.clear_bits();
            addresses_.for_each([this](std::uint64_t f) { address_filter_.add(f); });
            address_filter_stale_ = 0;
        }
        return true;
    }
    if (!domains_.erase(fp)) return false;
    domain_filter_.erase(filter_hash(value));
    --domains_by_labels_[std::min(label_count(value), max_labels - 1)];
    return true;
}

void suppression_index::rebuild_address_filter() noexcept {
    // Allocation failure leaves no filter, which answers "maybe" to all.
    try {
        // A byte per slot: see block_filter for the trade.
        address_filter_.reset(addresses_.capacity());
    } catch (const std::bad_alloc&) {
        address_filter_.reset(0);
    }
    addresses_.for_each([this](std::uint64_t f) { address_filter_.add(f); });
    address_filter_capacity_ = addresses_.capacity();
    address_filter_stale_ = 0;
}

void suppression_index::reserve(std::size_t addresses, std::size_t domains) {
    addresses_.reserve(addresses);
    if (addresses_.capacity() != address_filter_capacity_) rebuild_address_filter();
    domains_.reserve(domains);
    domain_filter_.reserve(domains);
}

void suppression_index::clear() noexcept {
    addresses_.clear();
    address_filter_.reset(0);
    address_filter_capacity_ = 0;
    address_filter_stale_ = 0;
    domains_.clear();
    domain_filter_.clear();
    domains_by_labels_.fill(0);
}

std::size_t suppression_index::memory_bytes() const noexcept {
    return addresses_.memory_bytes() + address_filter_.memory_bytes() + domains_.memory_bytes() +
           domain_filter_.memory_bytes();
}

}  // namespace mailers::detail
