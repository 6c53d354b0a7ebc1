// SMTP replies -> transport_errc, as data.
//
// Each row matches a basic reply code, an RFC 3463 enhanced status code and,
// rarely, a phrase of the reply text; the first matching row decides. Rows go
// from specific to general, so a provider's quirk is one line near the top
// and the RFC's generic meaning is a line near the bottom.
#pragma once

#include <cstdint>
#include <mailers/error.hpp>
#include <span>
#include <string_view>

namespace mailers::detail {

/// Where in the SMTP dialogue a reply arrived. The same code means different
/// things at different points: a bare 550 to RCPT is about the recipient, to
/// MAIL about the sender, after the final dot about the content.
enum class smtp_phase : std::uint8_t {
    connect,
    greeting,
    ehlo,
    starttls,
    auth,
    mail,
    rcpt,
    data,      ///< the reply to the DATA command
    data_end,  ///< the reply after the final "."
    rset,
    noop,
    quit,
};

/// A set of phases, as a bit mask.
using smtp_phases = std::uint16_t;

constexpr smtp_phases phase_bit(smtp_phase p) noexcept {
    return static_cast<smtp_phases>(1u << static_cast<unsigned>(p));
}

inline constexpr smtp_phases any_phase = 0xffff;

/// One row of the table.
///
/// `code` is three characters where 'x' matches any digit ("421", "55x",
/// "5xx"). `enhanced` is an RFC 3463 code whose parts may be '*' ("5.7.26",
/// "5.7.*", "*.*.*"); "" matches only a reply that carries no enhanced code,
/// and "*" matches any reply. `text` is a case-insensitive phrase the reply
/// must contain ("" for none).
struct smtp_reply_rule {
    std::string_view code;
    std::string_view enhanced;
    smtp_phases phases;
    std::string_view text;
    transport_errc result;
    std::string_view why;  ///< the reply this row is for, as documentation
};

/// The table, first match wins.
std::span<const smtp_reply_rule> smtp_reply_rules() noexcept;

/// Classifies a reply that is not a success. `enhanced` is "" when the reply
/// has no enhanced status code; `text` is the reply text (all lines). A
/// reply no row matches is a temporary refusal for 4xx, an unknown outcome
/// when it answers the end of data with neither 2xx nor 4xx/5xx, content
/// rejection otherwise.
transport_errc classify_smtp_reply(int code, std::string_view enhanced, std::string_view text,
                                   smtp_phase phase) noexcept;

/// The index of the row that classifies the reply, or -1; for tests and for
/// explaining a decision in a log line.
int match_smtp_reply_rule(int code, std::string_view enhanced, std::string_view text,
                          smtp_phase phase) noexcept;

/// Lower-case phase name for messages ("RCPT", "end of data", ...).
std::string_view phase_name(smtp_phase p) noexcept;

}  // namespace mailers::detail
