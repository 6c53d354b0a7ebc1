// Bounce messages in: delivery status notifications read into events.
//
// Google Workspace and Microsoft 365 mailboxes (and any SMTP relay) report
// a message that could not be delivered by mailing a bounce back to the
// sender, not by calling a webhook. A host that fetches those messages from
// the sending mailbox passes each one here:
//   * RFC 3464 delivery status notifications (multipart/report;
//     report-type=delivery-status), as Gmail, Microsoft 365, Postfix,
//     Exim 4, Sendmail and most MTAs send them, also when wrapped in
//     another multipart;
//   * qmail's plain-text bounce ("Hi. This is the qmail-send program"),
//     and the plain-text "could not be delivered to one or more of its
//     recipients" report of older Exim.
// One event per recipient: `bounced` (hard when the status says the
// address will not work again: 5.1.x and the other codes the SMTP reply
// table treats as a rejected recipient; soft otherwise) for Action failed,
// `deferred` for delayed, `delivered` for delivered, relayed and expanded.
// Correlation is by the original message's Message-ID (event::message_id),
// read from the returned message or headers.
//
// Pure: no I/O. Never throws for anything in the message.
#pragma once

#include <cstddef>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/event.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

struct delivery_report {
    /// False when the message is not a bounce this parser knows (then
    /// `events` is empty and `reason` says why): an auto-reply, a
    /// newsletter, a report of another type.
    bool recognised = false;
    std::string format;         ///< "rfc3464", "qmail" or "exim"
    std::string reporting_mta;  ///< RFC 3464 Reporting-MTA, without its type
    /// The Message-ID of the message that bounced, without <>; "" when the
    /// report does not return its headers.
    std::string original_message_id;
    std::vector<event> events;
    std::string reason;
};

/// Larger messages are not read (reason says so): a bounce is small, and the
/// returned original is not needed beyond its headers.
inline constexpr std::size_t max_delivery_report_size = 8 * 1024 * 1024;

/// Reads one whole message (header and body, CRLF or LF line ends).
/// `received_at` is the event time when the report gives none.
MAILERS_API delivery_report parse_delivery_report(std::string_view message,
                                                  time_point received_at);

}  // namespace mailers
