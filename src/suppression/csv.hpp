// Suppression lists as CSV: the bulk import and export format.
//
// Format (RFC 4180): one entry per record, fields separated by commas,
// records by CRLF, LF or CR; a field holding a comma, quote, CR or LF is
// quoted, with quotes doubled inside it. A UTF-8 byte-order mark is skipped.
// The columns are
//
//     value,kind,reason,source,created_at
//
//   value       an address ("Name <a@b.example>" is accepted) or a domain
//   kind        "address" or "domain"; empty: a value without '@' is a domain
//   reason      unsubscribe | hard_bounce | complaint | manual | legal
//               (any letter case); empty: manual
//   source      free text, kept verbatim; may be empty
//   created_at  ISO 8601 "2026-11-27T23:20:25Z" (optional fraction, 'Z' or
//               a +hh:mm / -hh:mm offset) or unix seconds; empty: left at
//               the epoch for the caller to stamp
//
// Without a header the columns are positional and trailing ones may be left
// out. The first record is a header instead when its first field is "value"
// or all its fields are column names; a header may name the columns in any
// order (any letter case) and leave out all but `value`. Blank
// lines are skipped. Values are normalised with normalise_address or
// normalise_domain, so what the sink receives is ready for the store.
//
// Export writes the header, then one CRLF-terminated record per entry, and
// re-imports to the same entries. It does not defuse spreadsheet formulas
// (values starting with = + - @): those characters are legal at the start of
// a local part ("+alerts@example.com", "-ops@example.com"), so prefixing or
// quoting them would make the export a different list. Open exports in a
// spreadsheet with formula evaluation off, or import them as text.
#pragma once

#include <boost/system/result.hpp>
#include <cstddef>
#include <functional>
#include <iosfwd>
#include <mailers/clock.hpp>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <mailers/suppression.hpp>
#include <string>
#include <string_view>

namespace mailers::detail {

/// Receives each parsed entry, in file order.
using suppression_csv_sink = std::function<void(suppression_entry&&)>;

/// What a parse did; on failure, where and why it stopped.
struct csv_parse_report {
    std::size_t records = 0;     ///< entries handed to the sink
    std::size_t lines = 0;       ///< physical lines read
    std::size_t error_line = 0;  ///< 1-based line where the bad record starts; 0 if none
    diagnostics diag;            ///< on failure: "line N: <what is wrong>"
};

/// A record longer than this is refused: it is almost always a quote left
/// open, which would otherwise swallow the rest of the file into one field.
inline constexpr std::size_t max_csv_record_bytes = 64 * 1024;

/// Parses a whole suppression CSV from `in`, reading it in large blocks.
/// Returns errc::invalid_csv at the first malformed record, with
/// `report.error_line` and `report.diag.message` naming the line and the
/// fault (never the value itself: it is personal data and messages get
/// logged). Entries before the bad record have already reached the sink, so
/// a caller that wants all-or-nothing collects them and commits only on
/// success, as the engine does. A read error is errc::invalid_csv too.
/// Exceptions thrown by `sink` propagate.
error_code parse_suppression_csv(std::istream& in, const suppression_options& opts,
                                 const suppression_csv_sink& sink, csv_parse_report& report);

/// The same, over text already in memory.
error_code parse_suppression_csv(std::string_view text, const suppression_options& opts,
                                 const suppression_csv_sink& sink, csv_parse_report& report);

/// Writes "value,kind,reason,source,created_at\r\n".
void write_suppression_csv_header(std::ostream& out);

/// Writes one record for `e`, CRLF-terminated.
void write_suppression_csv(std::ostream& out, const suppression_entry& e);

/// Appends one record for `e` to `out`; bulk exports build large blocks with
/// it and write them at once.
void append_suppression_csv(std::string& out, const suppression_entry& e);

/// Parses a created_at field (see the format above). An empty field is the
/// epoch. Fractions finer than a microsecond are truncated.
boost::system::result<time_point> parse_suppression_time(std::string_view s);

/// Formats a time for created_at: empty for the epoch, ISO 8601 UTC with
/// microseconds only when there are any, unix seconds outside years 0-9999.
std::string format_suppression_time(time_point t);

}  // namespace mailers::detail
