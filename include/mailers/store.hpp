// The storage interface. The engine keeps its working state in memory and
// writes every change through a `store` in batched transactions (group
// commit); at start-up it reloads from `load`. SQLite ships in the library
// (sqlite_store.hpp); another backend implements this class and runs the
// conformance tests in tests/integration/store_conformance.hpp.
//
// Thread safety: the engine calls a store from one internal thread at a
// time; implementations need not be thread-safe unless shared by engines.
// Errors: methods throw `mailers::exception` with errc::store_error (or
// errc::schema_too_new) and leave the store unchanged for a failed `commit`.
#pragma once

#include <cstdint>
#include <functional>
#include <mailers/audit.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/suppression.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace mailers {

/// Where a send stands in the ledger.
enum class send_state {
    reserved,  ///< caps reserved and durably recorded; about to be handed off
    accepted,  ///< the provider accepted it
    failed,    ///< certainly not sent (refused, or cancelled before hand-off)
    unknown,   ///< may have been sent; never retried automatically
};

MAILERS_API std::string_view to_string(send_state s) noexcept;

/// One logical send. Failover updates the row (new mailbox, attempt + 1)
/// before the next hand-off, so there is one row per idempotency key.
struct ledger_row {
    std::uint64_t id = 0;
    std::string idempotency_key;  ///< "" when the caller gave none
    std::string mailbox;
    std::string provider;
    std::string pool;
    std::string recipient;   ///< normalised address
    std::string message_id;  ///< RFC 5322 Message-ID (without <>)
    send_state state = send_state::reserved;
    std::uint32_t attempt = 1;
    time_point reserved_at{};  ///< when the current attempt reserved its caps
    time_point updated_at{};
    std::string provider_message_id;
    std::string detail;  ///< last error, never secrets
    friend bool operator==(const ledger_row&, const ledger_row&) = default;
};

/// A configuration object, stored as JSON: kind is "mailbox", "pool",
/// "quota", "pause", ...; id is unique within its kind.
struct stored_object {
    std::string kind;
    std::string id;
    std::string json;
    friend bool operator==(const stored_object&, const stored_object&) = default;
};

/// The writes a `commit` applies. Deleting what does not exist is not an
/// error; the refusals listed below fail the whole batch.
namespace store_ops {
struct put_object {
    stored_object object;
};  ///< insert or replace
struct delete_object {
    std::string kind;
    std::string id;
};
struct put_suppression {
    suppression_entry entry;
};  ///< insert or replace
struct delete_suppression {
    suppression_kind kind;
    std::string value;
};
/// Refused when row.id exists or a non-empty idempotency_key is taken.
struct insert_send {
    ledger_row row;
};
/// Replaces the row with row.id, its idempotency key included; refused when
/// there is no such row or the new non-empty key belongs to another row.
struct update_send {
    ledger_row row;
};
/// Refused when record.seq exists. The store does not check the chain.
struct append_audit {
    audit_record record;
};
}  // namespace store_ops

using store_op =
    std::variant<store_ops::put_object, store_ops::delete_object, store_ops::put_suppression,
                 store_ops::delete_suppression, store_ops::insert_send, store_ops::update_send,
                 store_ops::append_audit>;

/// Everything the engine needs at start-up. The lists come in no particular
/// order.
struct store_snapshot {
    std::vector<stored_object> objects;
    std::vector<suppression_entry> suppressions;
    /// Sends reserved at or after `since`, plus every send still `reserved`.
    std::vector<ledger_row> recent_sends;
    /// Every idempotency key with its send id (the engine indexes them).
    std::vector<std::pair<std::string, std::uint64_t>> idempotency_keys;
    std::uint64_t max_send_id = 0;
    std::optional<audit_record> last_audit;
};

class MAILERS_API store {
public:
    virtual ~store() = default;

    /// Loads one workspace's state.
    virtual store_snapshot load(std::string_view workspace, time_point since) = 0;

    /// Applies `ops` in order, atomically: all or none. An empty span is a
    /// no-op.
    virtual void commit(std::string_view workspace, std::span<const store_op> ops) = 0;

    virtual std::optional<ledger_row> find_send(std::string_view workspace, std::uint64_t id) = 0;

    /// Calls `fn` for each suppression entry, in (kind, value) order: address
    /// entries first, values in byte order. An exception thrown by `fn`
    /// ends the iteration and reaches the caller unchanged; so for the other
    /// for_each_* functions.
    virtual void for_each_suppression(std::string_view workspace,
                                      const std::function<void(const suppression_entry&)>& fn) = 0;

    virtual std::optional<suppression_entry> find_suppression(std::string_view workspace,
                                                              suppression_kind kind,
                                                              std::string_view value) = 0;

    /// Calls `fn` for each audit record with seq >= from_seq, in seq order.
    virtual void for_each_audit(std::string_view workspace, std::uint64_t from_seq,
                                const std::function<void(const audit_record&)>& fn) = 0;

    /// Calls `fn` for each send reserved in [from, to), in id order.
    virtual void for_each_send(std::string_view workspace, time_point from, time_point to,
                               const std::function<void(const ledger_row&)>& fn) = 0;
};

}  // namespace mailers
