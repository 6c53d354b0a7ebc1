// What the crash child sends and what the driver checks it against: one
// definition of the keys, recipients, suppression list and caps.
#pragma once

#include <algorithm>
#include <cstdint>
#include <mailers/mailbox.hpp>
#include <mailers/pool.hpp>
#include <string>
#include <vector>

namespace crash {

inline std::string key(std::uint64_t i) {
    return "key-" + std::to_string(i);
}

/// Recipients spread over seven domains; every third one in upper case, so
/// suppression has to match through address normalisation.
inline std::string recipient(std::uint64_t i) {
    std::string local = (i % 3 == 0 ? "R" : "r") + std::to_string(i);
    std::string domain = "dom" + std::to_string(i % 7) + (i % 3 == 0 ? ".EXAMPLE" : ".example");
    return local + "@" + domain;
}

/// Suppressed: every eleventh address, and the whole of dom6.example.
inline bool suppressed(std::uint64_t i) {
    return i % 11 == 0 || i % 7 == 6;
}

inline std::string suppression_csv(std::uint64_t n) {
    std::string csv = "value,kind,reason,source\n";
    for (std::uint64_t i = 0; i < n; i += 11)
        csv += "r" + std::to_string(i) + "@dom" + std::to_string(i % 7) +
               ".example,address,unsubscribe,crash\n";
    csv += "dom6.example,domain,legal,crash\n";
    return csv;
}

inline std::size_t suppression_entries(std::uint64_t n) {
    return static_cast<std::size_t>((n + 10) / 11 + 1);
}

/// The capped mailbox takes the first fifth, the bulk one the rest.
inline std::uint64_t cap(std::uint64_t n) {
    return std::max<std::uint64_t>(1, n / 5);
}

inline std::vector<mailers::mailbox_config> mailboxes(std::uint64_t n) {
    mailers::mailbox_config capped;
    capped.id = "capped";
    capped.from = mailers::address{"capped", "brand.example", "Capped"};
    capped.provider = "journal-a";
    capped.limits = {mailers::rate_limit::per_day(cap(n))};
    capped.priority = 0;
    // Injected transient failures must not open the breaker: a key that
    // finds no capacity leaves no ledger row to account for it.
    capped.breaker.failure_threshold = 1000000;
    mailers::mailbox_config bulk = capped;
    bulk.id = "bulk";
    bulk.from = mailers::address{"bulk", "brand.example", "Bulk"};
    bulk.provider = "journal-b";
    bulk.limits.clear();
    bulk.priority = 1;
    return {capped, bulk};
}

inline mailers::pool_config pool() {
    mailers::pool_config p;
    p.id = "crash";
    p.mailboxes = {"capped", "bulk"};
    p.policy.kind = mailers::rotation_kind::priority;
    p.policy.max_attempts = 2;
    return p;
}

}  // namespace crash
