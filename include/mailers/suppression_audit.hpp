// Checking the suppression list against its audit trail: the hash of one
// suppression row, the order-independent digest of a set of rows that a
// bulk change (an import, a re-key of stored entries) records in its audit
// body, and the report of `engine::verify_suppressions`. What is checked,
// and what cannot be, is in docs/audit.md.
#pragma once

#include <array>
#include <cstdint>
#include <mailers/config.hpp>
#include <mailers/suppression.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

class store;

/// A row hash: 32 bytes of SHA-256 or HMAC-SHA256.
using suppression_row_hash = std::array<std::uint8_t, 32>;

/// Hashes suppression rows: the fields kind ("address" or "domain"), value,
/// reason (as `to_string`), source and created_at (decimal microseconds
/// since the Unix epoch), each as "<decimal length>:<bytes>", through
/// HMAC-SHA256 under `key`, or SHA-256 when the key is empty. The engine
/// uses its audit key, so without the key nobody can make a digest that
/// matches a forged set of rows.
///
/// Thread safety: distinct objects are independent; one object must not be
/// used from two threads at once.
class MAILERS_API suppression_hasher {
public:
    explicit suppression_hasher(std::string_view key = {});
    ~suppression_hasher();
    suppression_hasher(suppression_hasher&&) noexcept;
    suppression_hasher& operator=(suppression_hasher&&) noexcept;

    suppression_row_hash operator()(const suppression_entry& e);

    /// What an audit body records beside a digest made by this hasher, so a
    /// verifier can tell a digest made under another key (which it cannot
    /// check) from one that does not match: "sha256" without a key, else
    /// "hmac:" and 16 hex digits of a one-way function of the key.
    const std::string& key_mark() const noexcept;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

/// An order-independent digest of a multiset of rows: the count, and the
/// lane-wise sum modulo 2^64 of each row hash read as four little-endian
/// 64-bit lanes. Adding the same rows in any order gives the same digest;
/// a row given twice counts twice.
struct suppression_set_digest {
    std::uint64_t count = 0;
    std::array<std::uint64_t, 4> lanes{};

    void add(const suppression_row_hash& h) noexcept;
    /// 64 hex digits: the lanes in order, each big-endian.
    MAILERS_API std::string hex() const;
    /// Parses `hex()`; nothing when `s` is not 64 hex digits.
    MAILERS_API static std::optional<std::array<std::uint64_t, 4>> parse_lanes(std::string_view s);
    friend bool operator==(const suppression_set_digest&, const suppression_set_digest&) = default;
};

inline void suppression_set_digest::add(const suppression_row_hash& h) noexcept {
    for (std::size_t lane = 0; lane < 4; ++lane) {
        std::uint64_t v = 0;
        for (std::size_t b = 0; b < 8; ++b)
            v |= static_cast<std::uint64_t>(h[lane * 8 + b]) << (8 * b);
        lanes[lane] += v;
    }
    ++count;
}

/// One disagreement between the suppression rows and the audit trail.
struct suppression_problem {
    /// The row's key, when the problem is about one row; `value` is empty
    /// (and `kind` unset) when it is about a bulk change as a whole.
    std::optional<suppression_kind> kind;
    std::string value;
    /// The audit record of the change concerned; 0 when no audited change
    /// is concerned (a row written by none).
    std::uint64_t audit_seq = 0;
    /// The change seq concerned: the one that wrote, replaced or removed
    /// the row, or the bulk change's.
    std::uint64_t change_seq = 0;
    std::string what;  ///< what is wrong, in words
    friend bool operator==(const suppression_problem&, const suppression_problem&) = default;
};

/// The result of `engine::verify_suppressions`.
struct suppression_verify_report {
    /// No problem found: every row and every replaced row is accounted for
    /// by an audited change, and every audited change by the rows.
    bool ok = true;
    /// The audit chain verified; when it does not, nothing else was checked
    /// (`broken_audit_seq` is the first failing record).
    bool audit_chain_ok = true;
    std::uint64_t broken_audit_seq = 0;
    std::uint64_t rows = 0;             ///< current rows read
    std::uint64_t superseded_rows = 0;  ///< replaced or removed versions read
    std::uint64_t changes = 0;          ///< audited suppression changes checked
    /// Rows written before the store recorded which change an audit record
    /// belongs to (a store upgraded from an earlier version): they cannot
    /// be tied to a record, so they are counted here, not as problems.
    std::uint64_t unchecked_rows = 0;
    /// Bulk changes whose digest was made under another audit key: their
    /// counts are checked, their digests cannot be.
    std::uint64_t unchecked_digests = 0;
    /// Every problem found, up to `max_problems` of them (the number found
    /// is `problem_count`), ordered by the checks that found them.
    std::vector<suppression_problem> problems;
    std::uint64_t problem_count = 0;
    static constexpr std::size_t max_problems = 1000;
};

/// What `engine::verify_suppressions` does, on `workspace` of `st`, with
/// `audit_key` as the engine's audit key ("" for none): for a tool that
/// must not start an engine with a key it has not checked (an engine marks
/// a workspace as keyed with the first key it is given). Blocking; throws
/// `mailers::exception` when the store fails.
MAILERS_API suppression_verify_report verify_suppressions(store& st, std::string_view workspace,
                                                          std::string_view audit_key);

}  // namespace mailers
