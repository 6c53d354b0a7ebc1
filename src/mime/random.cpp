#include "mime/random.hpp"

#include <openssl/rand.h>
#include <pthread.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <random>

namespace mailers::mime {
namespace {

std::atomic<unsigned> fork_generation{0};

void on_fork_child() noexcept {
    fork_generation.fetch_add(1, std::memory_order_relaxed);
}

struct pool {
    unsigned char bytes[1024];
    std::size_t used = sizeof bytes;  // empty until first use
    unsigned generation = 0;
};

// Used only when OpenSSL cannot supply randomness (an unseeded or broken
// RNG); std::random_device reads the kernel's generator directly.
void fallback_fill(unsigned char* out, std::size_t n) noexcept {
    try {
        std::random_device rd;
        for (std::size_t i = 0; i < n; i += 4) {
            const unsigned v = rd();
            std::memcpy(out + i, &v, n - i < 4 ? n - i : 4);
        }
    } catch (...) {
        // No entropy source at all: ids stay unique per process and instant,
        // which is what Message-IDs and boundaries need, if not unpredictable.
        static std::atomic<std::uint64_t> counter{0};
        std::seed_seq seq{
            static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()),
            counter.fetch_add(1), static_cast<std::uint64_t>(::getpid())};
        std::mt19937_64 gen(seq);
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<unsigned char>(gen());
    }
}

}  // namespace

void random_bytes(unsigned char* out, std::size_t n) noexcept {
    static std::once_flag registered;
    std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });

    thread_local pool p;
    const unsigned gen = fork_generation.load(std::memory_order_relaxed);
    if (p.generation != gen) {
        p.used = sizeof p.bytes;
        p.generation = gen;
    }
    while (n > 0) {
        if (p.used == sizeof p.bytes) {
            if (RAND_bytes(p.bytes, sizeof p.bytes) != 1) fallback_fill(p.bytes, sizeof p.bytes);
            p.used = 0;
        }
        const std::size_t take = std::min(n, sizeof p.bytes - p.used);
        std::memcpy(out, p.bytes + p.used, take);
        p.used += take;
        out += take;
        n -= take;
    }
}

}  // namespace mailers::mime
