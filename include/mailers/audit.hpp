// The audit trail: one record per mutation, hash-chained so that a removed,
// reordered or edited record is detected by `verify_audit_chain`. What a
// chain proves, and what it cannot, is in docs/audit.md.
#pragma once

#include <cstdint>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace mailers {

struct audit_record {
    std::uint64_t seq = 0;  ///< 1, 2, 3 ... per workspace, no gaps
    time_point at{};
    std::string actor;   ///< principal id
    std::string action;  ///< e.g. "mailbox.upsert"
    std::string resource_type;
    std::string resource_id;
    std::string before;  ///< JSON of the resource before, "" when created
    std::string after;   ///< JSON of the resource after, "" when removed
    /// The previous record's `hash`; "" for seq 1, which is linked to
    /// nothing (the genesis).
    std::string prev_hash;
    /// Hex SHA-256 over this record's fields and prev_hash; from an
    /// `audit_key_action` record on, hex HMAC-SHA256 under the audit key.
    std::string hash;
    /// The change seq (see `store::changes_since`) published by the commit
    /// or import that appended this record; 0 when it published none, and
    /// in records written before stores kept it. Set by the store, like
    /// seq, prev_hash and hash. Hashed only when nonzero, so records from
    /// before it was kept keep their hashes.
    std::uint64_t change_seq = 0;
    friend bool operator==(const audit_record&, const audit_record&) = default;
};

/// The action of the record an engine given an audit key appends the first
/// time it starts with that key. That record and every later one are hashed
/// with the key.
inline constexpr std::string_view audit_key_action = "audit.key";

/// The action of the record a purge of the chain's oldest records appends
/// (`store::purge_audit`); its `after` is `audit_purge_body(...)`, so the
/// anchor it records is covered by the chain from then on.
inline constexpr std::string_view audit_purge_action = "audit.purge";

/// Where a chain starts once its oldest records were purged: the first kept
/// record's seq and the hash of the record before it (the prev_hash the
/// first kept record links to). The store keeps it, written in the
/// transaction that purges, and the newest `audit_purge_action` record
/// repeats it. What it proves, and what not, is in docs/audit.md.
struct audit_anchor {
    std::uint64_t seq = 0;  ///< the first kept record; 0: nothing was ever purged
    std::string hash;       ///< record seq - 1's hash
    time_point at{};        ///< when the purge ran (the engine's clock)
    /// Whether an `audit_key_action` record was purged: every kept record
    /// is then hashed with the key.
    bool keyed = false;
    friend bool operator==(const audit_anchor&, const audit_anchor&) = default;
};

/// The `after` JSON of an `audit_purge_action` record: the anchor's seq,
/// hash and keyed flag, `before` (the cutoff, microseconds since the epoch)
/// and `purged` (records removed).
MAILERS_API std::string audit_purge_body(const audit_anchor& anchor, time_point before,
                                         std::uint64_t purged);

/// The anchor an `audit_purge_action` record's `after` names (its `at` is
/// left unset); nullopt when the body is not one.
MAILERS_API std::optional<audit_anchor> audit_purge_anchor(std::string_view after);

/// The head of a chain: its last record's seq and hash ({0, ""} for an
/// empty chain). Kept outside the store, it lets a verifier notice records
/// cut from the end of the chain (see docs/audit.md).
struct audit_head {
    std::uint64_t seq = 0;
    std::string hash;
    friend bool operator==(const audit_head&, const audit_head&) = default;
};

/// The hash of a record's content chained to `prev_hash` (the `hash` field
/// is ignored; `change_seq` is covered when nonzero). Fields are length-prefixed so no two records
/// collide by moving bytes between fields.
MAILERS_API std::string audit_hash(const audit_record& r);

/// The same field encoding under HMAC-SHA256 with `key`; with an empty key,
/// `audit_hash(r)`. Only a holder of the key can compute it.
MAILERS_API std::string audit_hash(const audit_record& r, std::string_view key);

/// Checks sequence numbers (consecutive from the first record's seq),
/// prev_hash links and every hash as unkeyed SHA-256. Returns
/// errc::audit_chain_broken and sets `*bad_seq` to the first failing
/// record's seq when the chain is broken. A part of a chain (an export from
/// seq n) verifies on its own: nothing here notices records missing before
/// or after `records`. The overload below checks a whole chain.
MAILERS_API error_code verify_audit_chain(std::span<const audit_record> records,
                                          std::uint64_t* bad_seq = nullptr);

struct audit_verify_options {
    /// When set, the chain must reach `checkpoint.seq`, and the record
    /// there must have `checkpoint.hash`.
    std::optional<audit_head> checkpoint;
    /// The audit key. With one, the chain must hold an `audit_key_action`
    /// record, and that record and every later one must be hashed with the
    /// key. Without one, a chain holding such a record fails at it: its
    /// records cannot be checked.
    std::string key;
    /// The store's anchor (`store::audit_anchor`); nullopt or seq 0 when
    /// nothing was purged. With one, the records may start at its seq,
    /// linked to its hash (hashed with the key from the start when it says
    /// keyed), and the newest `audit_purge_action` record must name
    /// exactly it. A checkpoint before the first record is accepted only
    /// when some kept purge record's anchor is the record after it (it
    /// names the checkpoint's seq + 1 and hash).
    std::optional<audit_anchor> anchor;
};

/// Checks a whole chain: `records` must start at seq 1 linked to the
/// genesis (an empty prev_hash), or at the anchor linked to its hash, so
/// records cut from the front are noticed; an `audit_purge_action` record
/// with no anchor given, or a newest one naming another anchor, fails (at
/// the seq its anchor names: the first record it says is kept). Then as
/// above, with the records before the first `audit_key_action` record
/// hashed unkeyed. `*bad_seq` is set to the seq
/// of the first record that fails or is missing: one past the last record
/// when the checkpoint lies beyond it, or when a key was given and no
/// record was hashed with it.
MAILERS_API error_code verify_audit_chain(std::span<const audit_record> records,
                                          const audit_verify_options& options,
                                          std::uint64_t* bad_seq = nullptr);

}  // namespace mailers
