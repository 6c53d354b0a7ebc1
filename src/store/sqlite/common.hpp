// What the SQLite store's files share: error helpers, the integer codes
// written to the file, and column readers.
#pragma once

#include <SQLiteCpp/SQLiteCpp.h>
#include <fmt/format.h>

#include <cstdint>
#include <limits>
#include <mailers/error.hpp>
#include <mailers/store.hpp>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "store/codes.hpp"

namespace mailers::detail::sqlite {

[[noreturn]] inline void fail(errc code, std::string message) {
    diagnostics diag;
    diag.message = std::move(message);
    throw exception(make_error_code(code), std::move(diag));
}

// An operation the store refuses by its own rules (as opposed to SQLite
// refusing it); reported with the failing op's position like SQLite errors.
class invalid_op : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

// Converts SQLite's exceptions into the library's at the interface, leaving
// exceptions thrown by user callbacks untouched.
template <class F>
decltype(auto) guarded(std::string_view what, F&& f) {
    try {
        return std::forward<F>(f)();
    } catch (const SQLite::Exception& e) {
        fail(errc::store_error, fmt::format("sqlite store: {}: {}", what, e.what()));
    }
}

using codes::state_accepted;
using codes::state_failed;
using codes::state_reserved;
using codes::state_unknown;

inline std::int64_t state_code(send_state s) {
    const auto c = codes::of(s);
    if (c < 0) throw invalid_op("invalid send_state value");
    return c;
}

inline send_state state_from_code(std::int64_t c) {
    if (auto s = codes::send_state_of(c)) return *s;
    fail(errc::store_error, fmt::format("sqlite store: corrupt sends.state value {}", c));
}

inline std::int64_t queue_state_code(queue_state s) {
    const auto c = codes::of(s);
    if (c < 0) throw invalid_op("invalid queue_state value");
    return c;
}

inline queue_state queue_state_from_code(std::int64_t c) {
    if (auto s = codes::queue_state_of(c)) return *s;
    fail(errc::store_error, fmt::format("sqlite store: corrupt queue.state value {}", c));
}

inline std::int64_t kind_code(suppression_kind k) {
    const auto c = codes::of(k);
    if (c < 0) throw invalid_op("invalid suppression_kind value");
    return c;
}

inline suppression_kind kind_from_code(std::int64_t c) {
    if (auto k = codes::suppression_kind_of(c)) return *k;
    fail(errc::store_error, fmt::format("sqlite store: corrupt suppressions.kind value {}", c));
}

inline std::int64_t reason_code(suppression_reason r) {
    const auto c = codes::of(r);
    if (c < 0) throw invalid_op("invalid suppression_reason value");
    return c;
}

inline suppression_reason reason_from_code(std::int64_t c) {
    if (auto r = codes::suppression_reason_of(c)) return *r;
    fail(errc::store_error, fmt::format("sqlite store: corrupt suppressions.reason value {}", c));
}

using codes::floor_micros;
using codes::from_micros;
using codes::micros;

// SQLite integers are signed 64-bit; a larger value would come back negative
// and sort before every other row.
inline std::int64_t integer_key(std::uint64_t v, const char* what) {
    if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
        throw invalid_op(fmt::format("{} {} exceeds the largest storable value", what, v));
    return static_cast<std::int64_t>(v);
}

// A ledger row's integer key packs (workspace number, send id) into one
// signed 64-bit value: 23 bits of workspace number above 40 bits of id. With
// the pair as the table's own row key, inserts and updates touch one B-tree
// fewer than with a composite primary key, which is worth a fifth of the
// commit cost on the ledger's hot path.
constexpr int send_id_bits = 40;
constexpr std::uint64_t largest_send_id = (std::uint64_t{1} << send_id_bits) - 1;
constexpr std::int64_t largest_workspace_number = (std::int64_t{1} << (63 - send_id_bits)) - 1;

inline std::int64_t send_key(std::int64_t workspace_number, std::uint64_t id) {
    if (id > largest_send_id)
        throw invalid_op(fmt::format("send id {} exceeds {}, the largest this store keeps", id,
                                     largest_send_id));
    return (workspace_number << send_id_bits) | static_cast<std::int64_t>(id);
}

// Leaves a cached statement ready for its next binding however the current
// use ends. Every use binds every parameter, so stale bindings (which may
// point at strings that no longer exist) are never read.
class statement_use {
public:
    explicit statement_use(SQLite::Statement& s) noexcept : s_(s) {}
    statement_use(const statement_use&) = delete;
    statement_use& operator=(const statement_use&) = delete;
    ~statement_use() { s_.tryReset(); }
    SQLite::Statement* operator->() const noexcept { return &s_; }
    SQLite::Statement& operator*() const noexcept { return s_; }

private:
    SQLite::Statement& s_;
};

inline std::string text(const SQLite::Statement& s, int col) {
    const SQLite::Column c = s.getColumn(col);
    const char* p = c.getText();  // before getBytes, as sqlite3_column_bytes requires
    return std::string(p, static_cast<std::size_t>(c.getBytes()));
}

inline std::int64_t integer(const SQLite::Statement& s, int col) {
    return s.getColumn(col).getInt64();
}

}  // namespace mailers::detail::sqlite
