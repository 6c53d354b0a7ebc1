// A sequence: ordered steps that ride across sender identities ("rep1
// sends, rep2 follows up, the founder books the call").
//
// This header defines what a sequence is and how one step of one
// enrollment becomes a send: when it falls due, which sender rule applies,
// what the message says (a template rendered with the contact's variables,
// spintax seeded by enrollment and step) and how it threads onto the step
// before. It is pure: it reads no store and sends nothing, so the engine,
// the forecast and tests all plan steps the same way.
#pragma once

#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <mailers/address.hpp>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/engine.hpp>
#include <mailers/mailbox.hpp>
#include <mailers/template.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

/// How long after the step before (the enrollment, for the first step) a
/// step falls due.
struct sequence_delay {
    enum class unit : std::uint8_t {
        hours,         ///< elapsed time, whatever the clocks do
        days,          ///< the same local time of day, `amount` local days later
        business_days  ///< the same local time of day, `amount` business days later
    };
    unit in = unit::days;
    std::uint32_t amount = 0;
    friend bool operator==(const sequence_delay&, const sequence_delay&) = default;
};

/// Who sends a step.
enum class sender_rule_kind : std::uint8_t {
    pool,           ///< a mailbox drawn from pool `id`, by its rotation
    mailbox,        ///< exactly mailbox `id`
    previous_step,  ///< the mailbox that sent the step before
    owner,          ///< the enrollment's owner mailbox
};

MAILERS_API std::string_view to_string(sender_rule_kind k) noexcept;

struct sender_rule {
    sender_rule_kind kind = sender_rule_kind::pool;
    /// The pool (kind pool) or mailbox (kind mailbox); empty otherwise.
    std::string id;
    /// previous_step and owner: the pool a step is drawn from when there is
    /// no such mailbox (an enrollment without an owner). Empty: such a step
    /// cannot be planned (`step_request` says why), and the enrollment
    /// fails rather than send from someone the sequence did not name.
    std::string fallback_pool;
    friend bool operator==(const sender_rule&, const sender_rule&) = default;
};

/// How a step threads.
enum class step_threading : std::uint8_t {
    new_thread,  ///< a message of its own
    /// A reply in the previous step's thread: In-Reply-To its Message-ID,
    /// References its References then its Message-ID, and a subject of
    /// "Re: " and its subject when the step's own subject is empty.
    reply,
};

MAILERS_API std::string_view to_string(step_threading t) noexcept;

struct sequence_step {
    sequence_delay delay;
    template_source content;
    sender_rule sender;
    step_threading threading = step_threading::new_thread;
    friend bool operator==(const sequence_step&, const sequence_step&) = default;
};

// enrollment_conflict: store.hpp, which stores enrollments.

/// Which enrollments of a contact a reply or a reached goal stops.
enum class stop_scope : std::uint8_t {
    this_sequence,   ///< the enrollment in the sequence the event names
    every_sequence,  ///< every active enrollment of the address
};

MAILERS_API std::string_view to_string(stop_scope s) noexcept;

/// Limits of a sequence definition.
inline constexpr std::size_t max_sequence_steps = 100;
inline constexpr std::size_t max_sequence_id_size = 128;
inline constexpr std::uint32_t max_step_delay_days = 3650;  ///< about ten years, in any unit

struct sequence_config {
    /// 1 to 128 of A-Z a-z 0-9 . _ -
    std::string id;
    std::string name;  ///< for people; no control characters
    std::vector<sequence_step> steps;
    /// The calendar of steps drawn from a pool, whose sender is not known
    /// when the step is planned: days and business days are counted in this
    /// zone ("" is UTC) over `business_weekdays`. A step sent by a known
    /// mailbox counts in that mailbox's time zone and window weekdays.
    std::string time_zone;
    std::uint8_t business_weekdays = send_window::weekdays_mon_fri;  ///< bit 0 = Sunday
    /// Days that are not business days, "YYYY-MM-DD", in the zone that
    /// counts (the sender's, or `time_zone`).
    std::vector<std::string> holidays;
    enrollment_conflict on_enrolled_twice = enrollment_conflict::refuse;
    stop_scope reply_stops = stop_scope::every_sequence;
    stop_scope goal_stops = stop_scope::this_sequence;
    friend bool operator==(const sequence_config&, const sequence_config&) = default;
};

/// Why a sequence definition (or a step's plan) was refused.
struct sequence_error {
    /// 1-based step the problem is in; 0 for the sequence as a whole.
    std::size_t step = 0;
    std::string field;                ///< "id", "sender", "content", "holidays", ...
    std::optional<template_error> at;  ///< content: where in the template
    std::string message;
    /// "step 2 content: html, line 3, column 7: expected `}}` ...".
    MAILERS_API std::string to_string() const;
};

/// The enrolled contact a step is planned for.
struct enrolled_contact {
    std::string enrollment_id;  ///< seeds spintax and names the send's idempotency key
    address to;
    /// The contact's variables; the engine adds the reserved
    /// `unsubscribe_url` before planning a step.
    template_variables variables;
    std::string owner;  ///< owner mailbox id, or ""
};

/// What the step before left behind, for sender and threading rules.
struct previous_send {
    std::string mailbox;     ///< the mailbox that sent it
    std::string message_id;  ///< its Message-ID, without <>
    std::string subject;     ///< as sent
    std::vector<std::string> references;  ///< its References, without <>
};

/// How many Message-IDs a reply's References keeps: the thread's first and
/// the most recent, as RFC 5322 section 3.6.4 allows trimming.
inline constexpr std::size_t max_thread_references = 20;

/// A validated sequence with its templates compiled. Cheap to copy; the
/// compiled definition is shared and never changes.
class MAILERS_API sequence {
public:
    /// Validates `config` and compiles every step's template. A refusal is
    /// errc::invalid_argument, with `error` (when given) saying which step
    /// and field, and for a template the part, line and column.
    static boost::system::result<sequence> compile(sequence_config config,
                                                   sequence_error* error = nullptr);

    const sequence_config& config() const noexcept;
    std::size_t size() const noexcept;
    const message_template& step_template(std::size_t index) const;

    /// Every variable some step needs without a fallback, sorted; the
    /// reserved `unsubscribe_url` is left out (the engine provides it).
    std::vector<std::string> required_variables() const;
    /// Checks a contact's variables against every step, as enrolling does:
    /// a missing variable without a fallback in any step refuses the
    /// enrollment before anything is stored.
    variable_check check(const template_variables& variables) const;

    /// When step `index` (0-based) falls due, counted from `from` (the step
    /// before's send, or the enrollment) in `zone` over `weekdays` and the
    /// sequence's holidays. nullopt when it never does (a calendar without
    /// business days, or past year 9999). Throws errc::invalid_argument for
    /// an unknown zone.
    std::optional<time_point> due(std::size_t index, time_point from, std::string_view zone,
                                  std::uint8_t weekdays) const;
    /// The same in the sequence's own calendar, for pool steps.
    std::optional<time_point> due(std::size_t index, time_point from) const;

    /// The send for step `index` of `contact`: the sender rule resolved to
    /// a pool or a mailbox, the template rendered (spintax seeded by
    /// `template_seed(enrollment_id, index + 1)`, so a restart renders the
    /// same text), threading applied, and the idempotency key
    /// "seq:<sequence id>:<enrollment id>:<step>" (1-based step), so a
    /// step planned twice sends once (the engine appends "~<attempt>" for
    /// a re-send after `step_resolution::not_sent`). `previous` is required from the
    /// second step on when the step threads or its sender is
    /// `previous_step`. Refusals (errc::invalid_argument, with `error`): a
    /// missing variable, no mailbox for the sender rule and no fallback
    /// pool, a reply without the previous Message-ID.
    boost::system::result<send_request> step_request(std::size_t index,
                                                     const enrolled_contact& contact,
                                                     const previous_send* previous,
                                                     sequence_error* error = nullptr) const;

private:
    struct impl;
    explicit sequence(std::shared_ptr<const impl> p) noexcept;
    std::shared_ptr<const impl> impl_;
};

}  // namespace mailers
