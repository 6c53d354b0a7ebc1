// The enrollment ops' rules, shared by the stores of the library.
//
// Both stores apply enroll, update_enrollment, stop_enrollments and
// advance_enrollment inside their commit's transaction by the same rules;
// only the reads and writes of rows differ. A store implements
// `enrollment_rows` over its own connection (the rows it returns are
// locked for the rest of the transaction where the database locks rows),
// and `apply_enrollment_op` decides.
#pragma once

#include <cstdint>
#include <mailers/error.hpp>
#include <mailers/store.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "store/codes.hpp"

namespace mailers::detail {

/// The columns of an enrollment row, in the order `enrollment_cells` gives
/// and `read_enrollment` reads them; `id` first.
inline constexpr const char* enrollment_columns =
    "id, sequence_id, address, display_name, variables, owner, actor, state, stop_reason, "
    "detail, step, next_due, step_due, queue_key, plans, prev_mailbox, prev_message_id, "
    "prev_subject, prev_references, last_sent_at, enrolled_at, updated_at, version, domain, "
    "attempt";
inline constexpr int enrollment_column_count = 25;

/// A value to bind: NULL, an integer or text.
using enrollment_cell = std::variant<std::monostate, std::int64_t, std::string>;

/// `e`'s values in `enrollment_columns` order (the domain is derived from
/// the address).
std::vector<enrollment_cell> enrollment_cells(const enrollment& e);

/// Reads a row in `enrollment_columns` order from `r`, which offers
/// `std::int64_t i64(int)`, `std::string str(int)` and `bool null(int)`.
/// Throws errc::store_corrupt for codes no version wrote.
template <class Row>
enrollment read_enrollment(const Row& r);

/// The rows the rules read and write.
class enrollment_rows {
public:
    virtual ~enrollment_rows() = default;
    virtual std::optional<enrollment> by_id(std::uint64_t id) = 0;
    virtual std::optional<enrollment> by_key(const std::string& sequence_id,
                                             const std::string& address) = 0;
    /// Active or paused enrollments matching the op's fields.
    virtual std::vector<enrollment> live_matching(const store_ops::stop_enrollments& op) = 0;
    /// Inserts `e` (id 0) and returns its new id; nullopt when an
    /// enrollment of (sequence, address) appeared meanwhile.
    virtual std::optional<std::uint64_t> insert(const enrollment& e) = 0;
    virtual void write(const enrollment& e) = 0;
    /// Cancels the waiting queue item holding `key`, if any.
    virtual void cancel_waiting(const std::string& key, const std::string& detail,
                                time_point at) = 0;
    virtual void remember_message(const std::string& message_id, std::uint64_t id) = 0;
};

/// Whether `op` is one of the enrollment ops.
bool is_enrollment_op(const store_op& op) noexcept;

/// Applies one enrollment op; throws what `rows` throws, and
/// errc::store_error for an op the rules refuse.
void apply_enrollment_op(enrollment_rows& rows, const store_op& op, op_result& out);

/// The domain of a normalised address ("" when it has none).
std::string enrollment_domain(std::string_view address);

/// Joins and splits prev_references (Message-IDs hold no spaces).
std::string join_references(const std::vector<std::string>& refs);
std::vector<std::string> split_references(std::string_view s);

template <class Row>
enrollment read_enrollment(const Row& r) {
    enrollment e;
    e.id = static_cast<std::uint64_t>(r.i64(0));
    e.sequence_id = r.str(1);
    e.address = r.str(2);
    e.display_name = r.str(3);
    e.variables = r.str(4);
    e.owner = r.str(5);
    e.actor = r.str(6);
    auto st = codes::enrollment_state_of(r.i64(7));
    auto why = codes::enrollment_stop_of(r.i64(8));
    if (!st || !why)
        throw exception(make_error_code(errc::store_corrupt),
                        "an enrollment row holds a state or stop reason no version wrote");
    e.state = *st;
    e.stop_reason = *why;
    e.detail = r.str(9);
    e.step = static_cast<std::uint32_t>(r.i64(10));
    if (!r.null(11)) e.next_due = time_point{std::chrono::microseconds(r.i64(11))};
    e.step_due = time_point{std::chrono::microseconds(r.i64(12))};
    e.queue_key = r.str(13);
    e.plans = static_cast<std::uint32_t>(r.i64(14));
    e.prev_mailbox = r.str(15);
    e.prev_message_id = r.str(16);
    e.prev_subject = r.str(17);
    e.prev_references = split_references(r.str(18));
    e.last_sent_at = time_point{std::chrono::microseconds(r.i64(19))};
    e.enrolled_at = time_point{std::chrono::microseconds(r.i64(20))};
    e.updated_at = time_point{std::chrono::microseconds(r.i64(21))};
    e.version = static_cast<std::uint64_t>(r.i64(22));
    e.attempt = static_cast<std::uint32_t>(r.i64(24));
    return e;
}

}  // namespace mailers::detail
