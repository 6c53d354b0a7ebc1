// Suppression benchmark: membership checks, memory per entry and CSV import
// for the in-memory suppression index, against std::unordered_set<std::string>
// measured in the same run.
//
//     suppression_bench [--sizes 10000,1000000,10000000] [--csv-lines 1000000]
//                       [--probes 1000000] [--seed 1]
//
// Targets (MISSION.md): median check under 200 ns at 10M entries, at most 40
// bytes per entry, a 1M-line CSV import in under 2 s.
//
// Method. Entries are synthetic but shaped like real lists: name-based local
// parts, a long tail of company domains (some with subdomains and
// second-level suffixes) beside a few large mailbox providers, and one
// domain entry per 200 addresses. Probes are half hits and half misses in
// random order, all through contains_address (so each also walks the parent
// domains). Checks are timed in batches of 1000 with steady_clock; the
// figures are the median and 99th percentile of the batch means. A second
// pass times single checks to show the tail, with the time-stamp counter on
// x86 (steady_clock costs about 100 ns per read on some virtual machines),
// minus the measured cost of reading it. Memory is memory_bytes() per entry
// and the growth of the resident set (/proc/self/statm) while the structure
// is built; the share of it on transparent huge pages comes from
// /proc/self/smaps_rollup.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#if defined(__x86_64__)
#include <x86intrin.h>
#endif

#include "bench_support.hpp"
#include "suppression/csv.hpp"
#include "suppression/index.hpp"

namespace {

using clock_type = std::chrono::steady_clock;
using mailers::suppression_kind;
using mailers::detail::suppression_index;

double seconds_since(clock_type::time_point t0) {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
}

std::size_t rss_bytes() {
    std::ifstream statm("/proc/self/statm");
    std::size_t pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
}

std::size_t anon_huge_bytes() {
    std::ifstream rollup("/proc/self/smaps_rollup");
    std::string key;
    std::size_t kib = 0;
    while (rollup >> key) {
        if (key == "AnonHugePages:") {
            rollup >> kib;
            return kib * 1024;
        }
        rollup.ignore(1 << 10, '\n');
    }
    return 0;
}

// A cheap tick source for timing single checks, and its length in ns.
#if defined(__x86_64__)
std::uint64_t ticks() {
    return __rdtsc();
}
#else
std::uint64_t ticks() {
    return static_cast<std::uint64_t>(clock_type::now().time_since_epoch().count());
}
#endif

double ns_per_tick() {
    const auto w0 = clock_type::now();
    const auto t0 = ticks();
    while (clock_type::now() - w0 < std::chrono::milliseconds(200)) {
    }
    const auto t1 = ticks();
    const double ns = std::chrono::duration<double, std::nano>(clock_type::now() - w0).count();
    return ns / static_cast<double>(t1 - t0);
}

struct tick_calibration {
    double ns_per_tick = 0;
    double read_ns = 0;  // what two back-to-back tick reads add to an interval
};

// Measured on first use and kept, so that every single-check figure has the
// same cost subtracted.
const tick_calibration& calibration() {
    static const tick_calibration c = [] {
        tick_calibration out;
        out.ns_per_tick = ns_per_tick();
        std::vector<double> empty;
        for (int i = 0; i < 100000; ++i) {
            const auto t0 = ticks();
            const auto t1 = ticks();
            empty.push_back(static_cast<double>(t1 - t0) * out.ns_per_tick);
        }
        out.read_ns = bench::percentile(empty, 0.5);
        return out;
    }();
    return c;
}

// Keeps results alive so the optimiser cannot drop the checks.
volatile std::size_t sink_counter = 0;

// The ceiling a check at this size works against: the latency of one
// dependent load at a random cache line of a buffer as large as the index
// (on huge pages, like the index), from a pointer chase.
double memory_latency_ns(std::size_t bytes) {
    constexpr std::size_t line = 64 / sizeof(std::uint64_t);
    const std::size_t lines = std::max<std::size_t>(bytes / 64, 2);
    std::vector<std::uint64_t> order(lines);
    for (std::size_t i = 0; i < lines; ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937_64(7));
    constexpr std::size_t huge = std::size_t{2} << 20;
    const std::size_t span = (lines * 64 + huge - 1) / huge * huge;
    auto* chain = static_cast<std::uint64_t*>(std::aligned_alloc(huge, span));
    if (chain == nullptr) return 0;
#if defined(__linux__)
    ::madvise(chain, span, MADV_HUGEPAGE);
#endif
    for (std::size_t i = 0; i < lines; ++i) chain[order[i] * line] = order[(i + 1) % lines] * line;
    std::uint64_t p = order[0] * line;
    constexpr int steps = 1000000;
    const auto t0 = clock_type::now();
    for (int i = 0; i < steps; ++i) p = chain[p];
    const double ns = std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
    sink_counter = sink_counter + p;
    std::free(chain);
    return ns / steps;
}

constexpr const char* first_names[] = {
    "james", "mary",   "john",   "patricia", "robert", "jennifer", "michael", "linda",
    "david", "sarah",  "thomas", "karen",    "daniel", "nancy",    "matthew", "lisa",
    "anna",  "lukas",  "sofia",  "mateo",    "emma",   "noah",     "olivia",  "liam",
    "mia",   "elodie", "jakub",  "zoe",      "ines",   "hugo",     "chloe",   "leon",
    "yuki",  "wei",    "priya",  "arjun",    "fatima", "omar",     "ivan",    "olga"};
constexpr const char* last_names[] = {
    "smith",  "johnson", "williams",  "brown",   "jones",    "garcia",  "miller", "davis",
    "muller", "schmidt", "schneider", "fischer", "martin",   "bernard", "dubois", "rossi",
    "russo",  "ferrari", "kowalski",  "nowak",   "tanaka",   "suzuki",  "wang",   "li",
    "patel",  "sharma",  "kim",       "lee",     "nguyen",   "silva",   "santos", "pereira",
    "ivanov", "petrov",  "hansen",    "jensen",  "andersen", "nielsen", "walker", "young"};
constexpr const char* providers[] = {"gmail.com",   "yahoo.com", "hotmail.com", "outlook.com",
                                     "icloud.com",  "aol.com",   "gmx.de",      "web.de",
                                     "yahoo.co.uk", "orange.fr", "proton.me",   "live.com"};
constexpr const char* words[] = {"acme",   "north",  "blue",  "river", "peak",   "data",  "cloud",
                                 "green",  "bright", "stone", "swift", "nova",   "atlas", "pixel",
                                 "harbor", "summit", "maple", "delta", "vertex", "orbit", "lumen"};
constexpr const char* tlds[] = {"com", "com", "com", "io", "net", "org", "de", "co.uk", "fr", "eu"};

template <class T, std::size_t N>
const T& pick(std::mt19937_64& rng, const T (&a)[N]) {
    return a[rng() % N];
}

// Realistic, already normalised (lower-case) addresses and domains.
class address_generator {
public:
    explicit address_generator(std::uint64_t seed) : rng_(seed) {}

    std::string company_domain() {
        std::string d;
        const auto shape = rng_() % 10;
        if (shape == 0) d += "mail.";
        if (shape == 1) d += "eu.";
        d += pick(rng_, words);
        d += rng_() % 2 ? "-" : "";
        d += pick(rng_, words);
        d += std::to_string(rng_() % 20000);
        d += '.';
        d += pick(rng_, tlds);
        return d;
    }

    // `fresh` addresses use a local-part shape ("first-last-n") that the
    // others never have, so they are certain misses unless their domain is
    // suppressed.
    std::string address(bool fresh = false) {
        std::string a;
        const std::string_view f = pick(rng_, first_names);
        const std::string_view l = pick(rng_, last_names);
        switch (fresh ? 6 : rng_() % 6) {
            case 0:
                a.append(f).append(".").append(l).append(std::to_string(rng_() % 1000));
                break;
            case 1:
                a.append(f).append(l).append(std::to_string(rng_() % 100000));
                break;
            case 2:
                a.append(f.substr(0, 1))
                    .append(".")
                    .append(l)
                    .append(std::to_string(rng_() % 10000));
                break;
            case 3:
                a.append(f).append("_").append(l).append(std::to_string(rng_() % 100000));
                break;
            case 4:
                a.append(f).append(".").append(l).append("+news").append(
                    std::to_string(rng_() % 10000));
                break;
            case 5:
                for (int i = 0, n = 6 + static_cast<int>(rng_() % 8); i < n; ++i)
                    a += "abcdefghijklmnopqrstuvwxyz0123456789"[rng_() % 36];
                break;
            default:
                a.append(f).append("-").append(l).append("-").append(
                    std::to_string(rng_() % 1000000));
        }
        a += '@';
        if (rng_() % 100 < 45)
            a += pick(rng_, providers);
        else
            a += company_domain();
        return a;
    }

    std::mt19937_64& rng() { return rng_; }

private:
    std::mt19937_64 rng_;
};

// Heap bytes the peer asks for (malloc's own per-block overhead aside).
std::size_t peer_heap_bytes = 0;

template <class T>
struct counting_allocator {
    using value_type = T;
    counting_allocator() = default;
    template <class U>
    counting_allocator(const counting_allocator<U>&) noexcept {}
    T* allocate(std::size_t n) {
        peer_heap_bytes += n * sizeof(T);
        return std::allocator<T>{}.allocate(n);
    }
    void deallocate(T* p, std::size_t n) noexcept {
        peer_heap_bytes -= n * sizeof(T);
        std::allocator<T>{}.deallocate(p, n);
    }
    friend bool operator==(const counting_allocator&, const counting_allocator&) = default;
};

using peer_string = std::basic_string<char, std::char_traits<char>, counting_allocator<char>>;

struct peer_hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

using peer_set =
    std::unordered_set<peer_string, peer_hash, std::equal_to<>, counting_allocator<peer_string>>;

// The same semantics as suppression_index::contains_address over two string
// sets: what a straightforward implementation would use. Lookups are
// heterogeneous (C++20), so checking allocates nothing.
struct string_set_peer {
    peer_set addresses;
    peer_set domains;

    bool contains_address(std::string_view a) const {
        if (addresses.find(a) != addresses.end()) return true;
        if (domains.empty()) return false;
        const auto at = a.rfind('@');
        if (at == std::string_view::npos) return false;
        std::string_view d = a.substr(at + 1);
        for (;;) {
            if (domains.find(d) != domains.end()) return true;
            const auto dot = d.find('.');
            if (dot == std::string_view::npos) return false;
            d.remove_prefix(dot + 1);
        }
    }
};

struct latency {
    double median_ns = 0;
    double p99_ns = 0;
    double single_p50_ns = 0;
    double single_p99_ns = 0;
};

template <class Set>
latency measure(const Set& set, const std::vector<std::string_view>& probes) {
    constexpr std::size_t batch = 1000;
    latency out;
    std::size_t hits = 0;
    // Warm-up pass over a tenth of the probes: page faults and first-touch
    // costs belong to the build, not to the check.
    for (std::size_t i = 0; i < probes.size() / 10; ++i) hits += set.contains_address(probes[i]);

    std::vector<double> means;
    for (std::size_t b = 0; b + batch <= probes.size(); b += batch) {
        const auto t0 = clock_type::now();
        for (std::size_t i = b; i < b + batch; ++i) hits += set.contains_address(probes[i]);
        const auto ns = std::chrono::duration<double, std::nano>(clock_type::now() - t0).count();
        means.push_back(ns / batch);
    }
    out.median_ns = bench::percentile(means, 0.5);
    out.p99_ns = bench::percentile(means, 0.99);

    // Single checks, each between two tick reads; the reads' own cost (the
    // median of empty intervals) is subtracted.
    const double tick_ns = calibration().ns_per_tick;
    const double clock_ns = calibration().read_ns;
    std::vector<double> single;
    const std::size_t n = std::min<std::size_t>(probes.size(), 200000);
    single.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
        const auto t0 = ticks();
        hits += set.contains_address(probes[i]);
        const auto t1 = ticks();
        single.push_back(static_cast<double>(t1 - t0) * tick_ns - clock_ns);
    }
    out.single_p50_ns = bench::percentile(single, 0.5);
    out.single_p99_ns = bench::percentile(single, 0.99);
    sink_counter = sink_counter + hits;
    return out;
}

// Probes laid out one after another in check order: the engine checks an
// address it has just parsed, so reading the probe itself must not be the
// cache miss being measured.
struct probe_set {
    std::string arena;
    std::vector<std::string_view> probes;
};

probe_set make_probes(const std::vector<std::string>& entries, address_generator& fresh,
                      std::size_t count, unsigned hit_percent, std::mt19937_64& rng) {
    std::vector<std::string> picked;
    picked.reserve(count);
    for (std::size_t i = 0; i < count; ++i)
        picked.push_back(i * 100 / count < hit_percent ? entries[rng() % entries.size()]
                                                       : fresh.address(true));
    std::shuffle(picked.begin(), picked.end(), rng);
    probe_set out;
    for (const auto& p : picked) out.arena += p;
    out.probes.reserve(count);
    for (std::size_t i = 0, off = 0; i < count; off += picked[i].size(), ++i)
        out.probes.emplace_back(out.arena.data() + off, picked[i].size());
    return out;
}

void run_size(std::size_t n, std::size_t probe_count, std::uint64_t seed) {
    address_generator gen(seed ^ n);
    const std::size_t domain_entries = std::max<std::size_t>(1, n / 200);
    std::vector<std::string> addrs;
    addrs.reserve(n);
    for (std::size_t i = 0; i < n; ++i) addrs.push_back(gen.address());
    std::vector<std::string> doms;
    for (std::size_t i = 0; i < domain_entries; ++i) doms.push_back(gen.company_domain());

    // --- the index --------------------------------------------------------
    const std::size_t rss0 = rss_bytes();
    const std::size_t huge0 = anon_huge_bytes();
    auto t0 = clock_type::now();
    suppression_index index;
    index.reserve(n, domain_entries);
    for (const auto& a : addrs) index.insert(suppression_kind::address, a);
    for (const auto& d : doms) index.insert(suppression_kind::domain, d);
    const double index_build_s = seconds_since(t0);
    const std::size_t index_rss = rss_bytes() - rss0;
    const std::size_t index_huge = anon_huge_bytes() - huge0;
    const std::size_t entries = index.size();

    // --- the peer ---------------------------------------------------------
    const std::size_t rss1 = rss_bytes();
    t0 = clock_type::now();
    string_set_peer peer;
    peer.addresses.reserve(n);
    for (const auto& a : addrs) peer.addresses.emplace(a);
    for (const auto& d : doms) peer.domains.emplace(d);
    const double peer_build_s = seconds_since(t0);
    const std::size_t peer_rss = rss_bytes() - rss1;
    const std::size_t peer_bytes = peer_heap_bytes;

    const double per_entry =
        static_cast<double>(index.memory_bytes()) / static_cast<double>(entries);
    const double peer_per_entry = static_cast<double>(peer_bytes) / static_cast<double>(entries);
    std::printf("\n== %zu entries (%zu addresses, %zu domains) ==\n", entries,
                index.address_count(), index.domain_count());
    std::printf(
        "memory  index: %.1f B/entry held (%.1f MiB), RSS +%.1f B/entry, %.0f MiB on huge "
        "pages; built in %.2f s\n",
        per_entry, static_cast<double>(index.memory_bytes()) / 1048576.0,
        static_cast<double>(index_rss) / static_cast<double>(entries),
        static_cast<double>(index_huge) / 1048576.0, index_build_s);
    std::printf(
        "memory  peer:  %.1f B/entry requested, RSS +%.1f B/entry; built in %.2f s  "
        "(peer/index bytes %.1fx)\n",
        peer_per_entry, static_cast<double>(peer_rss) / static_cast<double>(entries), peer_build_s,
        peer_per_entry / per_entry);
    std::printf("ceiling: one dependent load from %.0f MiB takes %.1f ns\n",
                static_cast<double>(index.memory_bytes()) / 1048576.0,
                memory_latency_ns(index.memory_bytes()));
    std::printf("%-16s %-22s %10s %10s %12s %12s %10s\n", "probes", "structure", "median ns",
                "p99 ns", "single p50", "single p99", "peer/index");

    struct mix {
        const char* name;
        unsigned hit_percent;
    };
    // 50% is the headline; an engine mostly checks addresses that are not
    // suppressed, which the 2% row is closer to.
    const mix mixes[] = {{"50% suppressed", 50},
                         {"all suppressed", 100},
                         {"none suppressed", 0},
                         {"2% suppressed", 2}};
    address_generator fresh(seed ^ n ^ 0x5555);
    double headline = 0;
    for (const auto& m : mixes) {
        const probe_set ps = make_probes(addrs, fresh, probe_count, m.hit_percent, gen.rng());
        // Both must answer alike; a disagreement would make the timing moot.
        std::size_t disagreements = 0, hits = 0;
        for (const auto& p : ps.probes) {
            const bool a = index.contains_address(p);
            disagreements += a != peer.contains_address(p);
            hits += a;
        }
        const latency li = measure(index, ps.probes);
        const latency lp = measure(peer, ps.probes);
        if (m.hit_percent == 50) headline = li.median_ns;
        std::printf("%-16s %-22s %10.1f %10.1f %12.1f %12.1f\n", m.name, "suppression_index",
                    li.median_ns, li.p99_ns, li.single_p50_ns, li.single_p99_ns);
        char label[64];
        std::snprintf(label, sizeof label, "(%.1f%% hits)",
                      100.0 * static_cast<double>(hits) / static_cast<double>(ps.probes.size()));
        std::printf("%-16s %-22s %10.1f %10.1f %12.1f %12.1f %9.2fx%s\n", label,
                    "unordered_set peer", lp.median_ns, lp.p99_ns, lp.single_p50_ns,
                    lp.single_p99_ns, lp.median_ns / li.median_ns,
                    disagreements ? "  DISAGREEMENTS" : "");
    }
    std::printf("targets at 50%%: median < 200 ns: %s (%.1f); <= 40 bytes/entry: %s (%.1f)\n",
                headline < 200 ? "met" : "MISSED", headline, per_entry <= 40 ? "met" : "MISSED",
                per_entry);
}

std::string make_csv(std::size_t lines, std::uint64_t seed) {
    address_generator gen(seed ^ 0xC5F);
    constexpr const char* reasons[] = {"unsubscribe", "hard_bounce", "complaint", "manual",
                                       "legal"};
    constexpr const char* sources[] = {"ses-webhook", "csv-import", "api", "mailgun-webhook",
                                       "\"support, ticket 4411\""};
    std::string csv = "value,kind,reason,source,created_at\n";
    csv.reserve(lines * 80);
    const long long base = 1735689600;  // 2025-01-01
    for (std::size_t i = 0; i < lines; ++i) {
        const bool domain = gen.rng()() % 200 == 0;
        if (domain) {
            csv += gen.company_domain();
            csv += ",domain,";
        } else {
            std::string a = gen.address();
            // Some rows come as exported by other tools: mixed case, a
            // display name, no kind column value.
            if (i % 10 == 0) a[0] = static_cast<char>(a[0] - 32 * (a[0] >= 'a' && a[0] <= 'z'));
            if (i % 25 == 0) a = "\"Customer " + std::to_string(i) + "\" <" + a + ">";
            if (a.find_first_of(",\"") != std::string::npos) {
                std::string q = "\"";
                for (char c : a) q += c == '"' ? std::string("\"\"") : std::string(1, c);
                a = q + "\"";
            }
            csv += a;
            csv += i % 3 == 0 ? ",," : ",address,";
        }
        csv += pick(gen.rng(), reasons);
        csv += ',';
        csv += pick(gen.rng(), sources);
        csv += ',';
        const long long t = base + static_cast<long long>(gen.rng()() % 60000000);
        if (i % 2) {
            csv += std::to_string(t);
        } else {
            csv += mailers::detail::format_suppression_time(
                mailers::time_point{std::chrono::seconds{t}});
        }
        csv += '\n';
    }
    return csv;
}

void run_csv(std::size_t lines, std::uint64_t seed) {
    std::printf("\n== CSV import, %zu lines ==\n", lines);
    const std::string csv = make_csv(lines, seed);
    const mailers::suppression_options opts{};

    // Parse and normalise only.
    std::size_t count = 0;
    mailers::detail::csv_parse_report report;
    {
        std::istringstream in(csv);
        const auto t0 = clock_type::now();
        const auto ec = mailers::detail::parse_suppression_csv(
            in, opts, [&](mailers::suppression_entry&&) { ++count; }, report);
        const double s = seconds_since(t0);
        std::printf("parse + normalise:           %.3f s  (%.0f lines/s, %.1f MB/s)%s%s\n", s,
                    static_cast<double>(lines) / s, static_cast<double>(csv.size()) / s / 1e6,
                    ec ? "  ERROR: " : "", ec ? report.diag.message.c_str() : "");
    }

    // What an import does before its store transaction: parse, stage the
    // entries, then index them.
    {
        std::istringstream in(csv);
        const auto t0 = clock_type::now();
        std::vector<mailers::suppression_entry> staged;
        staged.reserve(lines);
        const auto ec = mailers::detail::parse_suppression_csv(
            in, opts, [&](mailers::suppression_entry&& e) { staged.push_back(std::move(e)); },
            report);
        suppression_index index;
        index.reserve(staged.size());
        for (const auto& e : staged) index.insert(e.kind, e.value);
        const double s = seconds_since(t0);
        std::printf(
            "parse + stage + index:       %.3f s  (%zu entries, %zu unique)%s  target < 2 s: %s\n",
            s, staged.size(), index.size(), ec ? "  ERROR" : "", s < 2 ? "met" : "MISSED");
    }

    // The peer: a line-at-a-time std::getline splitter that only splits
    // fields (no quoting rules, no validation), as a floor for "reading it".
    {
        std::istringstream in(csv);
        const auto t0 = clock_type::now();
        std::string line;
        std::size_t fields = 0;
        while (std::getline(in, line))
            fields += 1 + static_cast<std::size_t>(std::count(line.begin(), line.end(), ','));
        const double s = seconds_since(t0);
        sink_counter = sink_counter + fields;
        std::printf("peer: getline + split only:  %.3f s\n", s);
    }
}

std::vector<std::size_t> parse_sizes(const std::string& s) {
    std::vector<std::size_t> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) out.push_back(std::stoull(item));
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::size_t> sizes = {10000, 1000000, 10000000};
    std::size_t csv_lines = 1000000;
    std::size_t probes = 1000000;
    std::uint64_t seed = 1;
    const bool known = bench::read_options(argc, argv, [&](std::string_view k, std::string v) {
        if (k == "--sizes")
            sizes = parse_sizes(v);
        else if (k == "--csv-lines")
            csv_lines = std::stoull(v);
        else if (k == "--probes")
            probes = std::stoull(v);
        else if (k == "--seed")
            seed = std::stoull(v);
        else
            return false;
        return true;
    });
    if (!known) return 2;
    std::printf("suppression_bench: seed %llu, %zu probes per size\n",
                static_cast<unsigned long long>(seed), probes);
    for (auto n : sizes) run_size(n, probes, seed);
    if (csv_lines != 0) run_csv(csv_lines, seed);
    return 0;
}
