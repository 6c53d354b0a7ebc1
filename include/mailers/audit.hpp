// The audit trail: one record per mutation, hash-chained so that a removed,
// reordered or edited record is detected by `verify_audit_chain`.
#pragma once

#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <span>
#include <string>

namespace mailers {

struct audit_record {
    std::uint64_t seq = 0;  ///< 1, 2, 3 ... per workspace, no gaps
    time_point at{};
    std::string actor;   ///< principal id
    std::string action;  ///< e.g. "mailbox.upsert"
    std::string resource_type;
    std::string resource_id;
    std::string before;     ///< JSON of the resource before, "" when created
    std::string after;      ///< JSON of the resource after, "" when removed
    std::string prev_hash;  ///< hex SHA-256 of the previous record ("" for seq 1)
    std::string hash;       ///< hex SHA-256 over this record's fields and prev_hash
    friend bool operator==(const audit_record&, const audit_record&) = default;
};

/// The hash of a record's content chained to `prev_hash` (the `hash` field
/// is ignored). Fields are length-prefixed so no two records collide by
/// moving bytes between fields.
MAILERS_API std::string audit_hash(const audit_record& r);

/// Checks sequence numbers (consecutive from the first record's seq),
/// prev_hash links and every hash. Returns errc::audit_chain_broken and sets
/// `*bad_seq` to the first failing record's seq when the chain is broken.
MAILERS_API error_code verify_audit_chain(std::span<const audit_record> records,
                                          std::uint64_t* bad_seq = nullptr);

}  // namespace mailers
