#include "suppression/csv.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cstring>
#include <istream>
#include <limits>
#include <ostream>
#include <vector>

#include "mime/text.hpp"

namespace mailers::detail {

namespace {

namespace chr = std::chrono;

enum class column : unsigned char { value, kind, reason, source, created_at };
constexpr std::array<std::string_view, 5> column_names = {"value", "kind", "reason", "source",
                                                          "created_at"};
constexpr std::size_t max_fields = column_names.size();

// Large reads keep the per-call cost of the stream out of the profile; the
// buffer also has room for one record carried over from the previous block.
constexpr std::size_t block_bytes = std::size_t{1} << 20;

std::string_view trim(std::string_view s) noexcept {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

bool all_digits(std::string_view s) noexcept {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses exactly `s.size()` decimal digits.
template <class T>
bool parse_digits(std::string_view s, T& out) noexcept {
    if (!all_digits(s)) return false;
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

// Microseconds in a fraction's digits, truncating beyond the sixth.
std::int64_t fraction_micros(std::string_view digits) noexcept {
    std::int64_t v = 0;
    for (std::size_t i = 0; i < 6; ++i) v = v * 10 + (i < digits.size() ? digits[i] - '0' : 0);
    return v;
}

boost::system::result<time_point> parse_unix_seconds(std::string_view s) {
    const auto bad = make_error_code(errc::invalid_argument);
    bool negative = false;
    if (!s.empty() && (s.front() == '-' || s.front() == '+')) {
        negative = s.front() == '-';
        s.remove_prefix(1);
    }
    std::string_view whole = s, frac;
    if (const auto dot = s.find('.'); dot != std::string_view::npos) {
        whole = s.substr(0, dot);
        frac = s.substr(dot + 1);
        if (!all_digits(frac)) return bad;
    }
    std::uint64_t secs = 0;
    if (!parse_digits(whole, secs)) return bad;
    // The magnitude must fit a signed 64-bit count of microseconds.
    std::uint64_t micros = 0;
    if (__builtin_mul_overflow(secs, std::uint64_t{1000000}, &micros) ||
        __builtin_add_overflow(micros, static_cast<std::uint64_t>(fraction_micros(frac)), &micros))
        return bad;
    constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
    if (micros > limit + (negative ? 1 : 0)) return bad;
    const std::int64_t signed_micros =
        negative ? static_cast<std::int64_t>(0 - micros) : static_cast<std::int64_t>(micros);
    return time_point{duration{signed_micros}};
}

// "YYYY-MM-DDTHH:MM:SS[.f+](Z|+hh:mm|-hh:mm)"; 't' and ' ' also separate
// date and time, as SQL exports write them.
boost::system::result<time_point> parse_iso8601(std::string_view s) {
    const auto bad = make_error_code(errc::invalid_argument);
    if (s.size() < 20 || s[4] != '-' || s[7] != '-' ||
        (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' || s[16] != ':')
        return bad;
    int y = 0;
    unsigned mo = 0, d = 0, h = 0, mi = 0, se = 0;
    if (!parse_digits(s.substr(0, 4), y) || !parse_digits(s.substr(5, 2), mo) ||
        !parse_digits(s.substr(8, 2), d) || !parse_digits(s.substr(11, 2), h) ||
        !parse_digits(s.substr(14, 2), mi) || !parse_digits(s.substr(17, 2), se))
        return bad;
    const chr::year_month_day ymd{chr::year{y}, chr::month{mo}, chr::day{d}};
    // A leap second (:60) has no representation in system_clock time.
    if (!ymd.ok() || h > 23 || mi > 59 || se > 59) return bad;
    std::string_view rest = s.substr(19);
    std::int64_t frac = 0;
    if (!rest.empty() && rest.front() == '.') {
        const auto end =
            std::find_if(rest.begin() + 1, rest.end(), [](char c) { return c < '0' || c > '9'; });
        const std::string_view digits{rest.begin() + 1, end};
        if (digits.empty()) return bad;
        frac = fraction_micros(digits);
        rest.remove_prefix(1 + digits.size());
    }
    chr::minutes offset{0};
    if (rest == "Z" || rest == "z") {
    } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
        unsigned oh = 0, om = 0;
        if (!parse_digits(rest.substr(1, 2), oh) || !parse_digits(rest.substr(4, 2), om) ||
            oh > 23 || om > 59)
            return bad;
        offset = chr::hours{oh} + chr::minutes{om};
        if (rest[0] == '-') offset = -offset;
    } else {
        return bad;
    }
    const auto t = chr::sys_days{ymd} + chr::hours{h} + chr::minutes{mi} + chr::seconds{se} -
                   offset + chr::microseconds{frac};
    return time_point{chr::duration_cast<duration>(t.time_since_epoch())};
}

bool needs_quotes(std::string_view s) noexcept {
    return s.find_first_of(",\"\r\n") != std::string_view::npos;
}

void append_field(std::string& out, std::string_view s) {
    if (!needs_quotes(s)) {
        out += s;
        return;
    }
    out += '"';
    for (char c : s) {
        if (c == '"') out += '"';
        out += c;
    }
    out += '"';
}

// Characters that end an unquoted field, or that it may not contain.
constexpr std::array<bool, 256> make_special() {
    std::array<bool, 256> t{};
    t[static_cast<unsigned char>(',')] = true;
    t[static_cast<unsigned char>('\r')] = true;
    t[static_cast<unsigned char>('\n')] = true;
    t[static_cast<unsigned char>('"')] = true;
    return t;
}
constexpr std::array<bool, 256> special = make_special();

// Line terminators inside [b, e): LF, CRLF and a lone CR count once each.
std::size_t count_lines(const char* b, const char* e) noexcept {
    std::size_t n = 0;
    for (const char* p = b; p != e; ++p)
        if (*p == '\n' || (*p == '\r' && (p + 1 == e || p[1] != '\n'))) ++n;
    return n;
}

// An incremental RFC 4180 reader. `feed` is handed the unconsumed text again
// with more appended whenever a record spans the end of a block, so a record
// is parsed from its start each time and holds no state across calls.
class csv_reader {
public:
    csv_reader(const suppression_options& opts, const suppression_csv_sink& sink,
               csv_parse_report& report)
        : opts_(opts), sink_(sink), report_(report) {}

    // Parses every complete record of `text` (all of it when `final`) and
    // sets `consumed` to the bytes used.
    error_code feed(std::string_view text, bool final, std::size_t& consumed) {
        const char* p = text.data();
        const char* const end = p + text.size();
        consumed = 0;
        if (!started_) {
            constexpr std::string_view bom = "\xEF\xBB\xBF";
            if (text.size() < bom.size() && !final && bom.starts_with(text)) return {};
            if (text.starts_with(bom)) p += bom.size();
            started_ = true;
        }
        while (p != end) {
            const char* next = nullptr;
            std::size_t lines = 0;
            const auto st = parse_record(p, end, final, next, lines);
            if (st == status::need_more) {
                if (static_cast<std::size_t>(end - p) > max_csv_record_bytes)
                    return record_too_long();
                break;
            }
            if (st == status::error) return ec_;
            if (static_cast<std::size_t>(next - p) > max_csv_record_bytes) return record_too_long();
            if (auto ec = on_record()) return ec;
            report_.lines += lines;
            p = next;
        }
        consumed = static_cast<std::size_t>(p - text.data());
        return {};
    }

private:
    enum class status { record, need_more, error };

    error_code fail(std::string what) {
        report_.error_line = report_.lines + 1;
        report_.diag.message =
            "line " + std::to_string(report_.error_line) + ": " + std::move(what);
        ec_ = make_error_code(errc::invalid_csv);
        return ec_;
    }
    error_code record_too_long() {
        return fail("record longer than " + std::to_string(max_csv_record_bytes) +
                    " bytes (a quote left open?)");
    }

    // Splits one record starting at `p` into fields_. Quoted fields that
    // contain doubled quotes are unescaped into scratch_; every other field
    // views the input.
    status parse_record(const char* p, const char* end, bool final, const char*& next,
                        std::size_t& lines) {
        nfields_ = 0;
        lines = 0;
        const char* s = p;
        for (;;) {
            if (nfields_ == max_fields) {
                fail("more than " + std::to_string(max_fields) + " fields");
                return status::error;
            }
            const std::size_t f = nfields_++;
            quoted_[f] = false;
            if (s != end && *s == '"') {
                quoted_[f] = true;
                const char* const content = ++s;
                const char* seg = content;
                std::string& scratch = scratch_[f];
                bool unescaped = false;
                for (;;) {
                    const auto* q = static_cast<const char*>(std::memchr(s, '"', end - s));
                    if (q == nullptr) {
                        if (!final) return status::need_more;
                        fail("quoted field not closed");
                        return status::error;
                    }
                    if (q + 1 == end && !final) return status::need_more;
                    if (q + 1 != end && q[1] == '"') {
                        if (!unescaped) scratch.clear();
                        scratch.append(seg, q + 1);
                        unescaped = true;
                        s = seg = q + 2;
                        continue;
                    }
                    const std::string_view tail{seg, static_cast<std::size_t>(q - seg)};
                    if (unescaped) {
                        scratch.append(tail);
                        fields_[f] = scratch;
                    } else {
                        fields_[f] = tail;
                    }
                    lines += count_lines(content, q);
                    s = q + 1;
                    break;
                }
                if (s != end && *s != ',' && *s != '\r' && *s != '\n') {
                    fail("text after the closing quote of field " + std::to_string(f + 1));
                    return status::error;
                }
            } else {
                const char* b = s;
                while (s != end && !special[static_cast<unsigned char>(*s)]) ++s;
                if (s != end && *s == '"') {
                    fail("quote inside unquoted field " + std::to_string(f + 1) +
                         " (quote the whole field and double the quote)");
                    return status::error;
                }
                if (s == end && !final) return status::need_more;
                fields_[f] = std::string_view{b, static_cast<std::size_t>(s - b)};
            }
            if (s == end) {
                next = s;
                return status::record;
            }
            if (*s == ',') {
                ++s;
                continue;
            }
            // CR, LF or CRLF ends the record.
            if (*s == '\r') {
                if (s + 1 == end && !final) return status::need_more;
                s += (s + 1 != end && s[1] == '\n') ? 2 : 1;
            } else {
                ++s;
            }
            ++lines;
            next = s;
            return status::record;
        }
    }

    bool blank_record() const noexcept {
        return nfields_ == 1 && !quoted_[0] && trim(fields_[0]).empty();
    }

    error_code on_record() {
        if (blank_record()) return {};
        if (!header_seen_) {
            header_seen_ = true;
            if (looks_like_header()) return read_header();
            ncolumns_ = max_fields;
            for (std::size_t i = 0; i < max_fields; ++i) columns_[i] = static_cast<column>(i);
        }
        return read_entry();
    }

    static bool is_column_name(std::string_view s) noexcept {
        return std::any_of(column_names.begin(), column_names.end(),
                           [&](std::string_view c) { return mime::iequals(c, trim(s)); });
    }

    // A header starts with "value" (then a field that is not a column name
    // is an error in it) or holds nothing but column names.
    bool looks_like_header() const noexcept {
        return mime::iequals(trim(fields_[0]), "value") ||
               std::all_of(fields_.begin(), fields_.begin() + nfields_, is_column_name);
    }

    error_code read_header() {
        std::array<bool, max_fields> seen{};
        for (std::size_t i = 0; i < nfields_; ++i) {
            const std::string_view name = trim(fields_[i]);
            const auto it =
                std::find_if(column_names.begin(), column_names.end(),
                             [&](std::string_view c) { return mime::iequals(c, name); });
            if (it == column_names.end())
                return fail("unknown column \"" + std::string(name) +
                            "\" in the header (expected value, kind, reason, source, created_at)");
            const auto c = static_cast<std::size_t>(it - column_names.begin());
            if (seen[c])
                return fail("column \"" + std::string(*it) + "\" named twice in the header");
            seen[c] = true;
            columns_[i] = static_cast<column>(c);
        }
        if (!seen[static_cast<std::size_t>(column::value)])
            return fail("the header names no \"value\" column");
        ncolumns_ = nfields_;
        return {};
    }

    error_code read_entry() {
        if (nfields_ > ncolumns_)
            return fail(std::to_string(nfields_) + " fields, but only " +
                        std::to_string(ncolumns_) + " columns");
        std::string_view value, kind, reason, source, created_at;
        for (std::size_t i = 0; i < nfields_; ++i) {
            switch (columns_[i]) {
                case column::value:
                    value = trim(fields_[i]);
                    break;
                case column::kind:
                    kind = trim(fields_[i]);
                    break;
                case column::reason:
                    reason = trim(fields_[i]);
                    break;
                case column::source:
                    source = fields_[i];
                    break;
                case column::created_at:
                    created_at = trim(fields_[i]);
                    break;
            }
        }
        if (value.empty()) return fail("empty value");

        suppression_entry e;
        // An erased person's entry (a keyed hash) goes back as exported.
        const bool erased = is_erased_value(value) && !mime::iequals(kind, "domain");
        if (erased) {
            e.kind = suppression_kind::address;
        } else if (kind.empty()) {
            e.kind = value.find('@') != std::string_view::npos ? suppression_kind::address
                                                               : suppression_kind::domain;
        } else if (mime::iequals(kind, "address")) {
            e.kind = suppression_kind::address;
        } else if (mime::iequals(kind, "domain")) {
            e.kind = suppression_kind::domain;
        } else {
            return fail("kind must be \"address\" or \"domain\"");
        }

        if (erased) {
            e.value = std::string(value);
        } else if (e.kind == suppression_kind::address) {
            auto key = normalise_address(value, opts_);
            if (!key) return fail("value is not a valid address");
            e.value = std::move(*key);
        } else {
            auto key = normalise_domain(value);
            if (!key) return fail("value is not a valid domain");
            e.value = std::move(*key);
        }

        if (!reason.empty()) {
            auto r = parse_suppression_reason(reason);
            if (!r)
                return fail(
                    "unknown reason (expected unsubscribe, hard_bounce, complaint, manual or "
                    "legal)");
            e.reason = *r;
        }

        // Sources end up in logs and audit records: no line breaks or other
        // control characters that could forge entries there.
        const bool control = std::any_of(source.begin(), source.end(), [](char ch) {
            const auto c = static_cast<unsigned char>(ch);
            return (c < 0x20 && c != '\t') || c == 0x7f;
        });
        if (control) return fail("control character in source");
        e.source.assign(source);

        auto t = parse_suppression_time(created_at);
        if (!t)
            return fail("created_at is neither ISO 8601 (2026-11-27T23:20:25Z) nor unix seconds");
        e.created_at = *t;

        sink_(std::move(e));
        ++report_.records;
        return {};
    }

    const suppression_options& opts_;
    const suppression_csv_sink& sink_;
    csv_parse_report& report_;
    error_code ec_;
    bool started_ = false;
    bool header_seen_ = false;
    std::size_t nfields_ = 0;
    std::array<std::string_view, max_fields> fields_{};
    std::array<bool, max_fields> quoted_{};
    std::array<std::string, max_fields> scratch_{};
    std::size_t ncolumns_ = max_fields;
    std::array<column, max_fields> columns_{};
};

}  // namespace

error_code parse_suppression_csv(std::istream& in, const suppression_options& opts,
                                 const suppression_csv_sink& sink, csv_parse_report& report) {
    report = csv_parse_report{};
    csv_reader reader(opts, sink, report);
    std::vector<char> buf(block_bytes + max_csv_record_bytes);
    std::size_t have = 0;
    for (;;) {
        in.read(buf.data() + have, static_cast<std::streamsize>(buf.size() - have));
        have += static_cast<std::size_t>(in.gcount());
        if (in.bad()) {
            report.error_line = report.lines + 1;
            report.diag.message = "line " + std::to_string(report.error_line) + ": read error";
            return make_error_code(errc::invalid_csv);
        }
        const bool final = in.eof();
        std::size_t consumed = 0;
        if (auto ec = reader.feed({buf.data(), have}, final, consumed)) return ec;
        if (final) return {};
        std::memmove(buf.data(), buf.data() + consumed, have - consumed);
        have -= consumed;
    }
}

error_code parse_suppression_csv(std::string_view text, const suppression_options& opts,
                                 const suppression_csv_sink& sink, csv_parse_report& report) {
    report = csv_parse_report{};
    csv_reader reader(opts, sink, report);
    std::size_t consumed = 0;
    return reader.feed(text, true, consumed);
}

void write_suppression_csv_header(std::ostream& out) {
    out << "value,kind,reason,source,created_at\r\n";
}

void append_suppression_csv(std::string& out, const suppression_entry& e) {
    append_field(out, e.value);
    out += e.kind == suppression_kind::address ? ",address," : ",domain,";
    out += to_string(e.reason);
    out += ',';
    append_field(out, e.source);
    out += ',';
    out += format_suppression_time(e.created_at);
    out += "\r\n";
}

void write_suppression_csv(std::ostream& out, const suppression_entry& e) {
    std::string line;
    append_suppression_csv(line, e);
    out.write(line.data(), static_cast<std::streamsize>(line.size()));
}

boost::system::result<time_point> parse_suppression_time(std::string_view s) {
    if (s.empty()) return time_point{};
    if (s.size() >= 5 && s[4] == '-') return parse_iso8601(s);
    return parse_unix_seconds(s);
}

std::string format_suppression_time(time_point t) {
    const std::int64_t us = t.time_since_epoch().count();
    if (us == 0) return {};
    const auto day = chr::floor<chr::days>(chr::sys_time<duration>{t.time_since_epoch()});
    // Checked on the day count: chrono::year wraps beyond +-32767.
    constexpr chr::sys_days first_day{chr::year{0} / 1 / 1};
    constexpr chr::sys_days last_day{chr::year{9999} / 12 / 31};
    const bool iso = day >= first_day && day <= last_day;
    const chr::year_month_day ymd{iso ? chr::sys_days{day} : first_day};
    std::string out;
    // Exports format one of these per entry; to_chars keeps it far cheaper
    // than a printf family call.
    const auto append_number = [&out](std::uint64_t v, int width) {
        char buf[24];
        const auto r = std::to_chars(buf, buf + sizeof buf, v);
        for (auto n = r.ptr - buf; n < width; ++n) out += '0';
        out.append(buf, r.ptr);
    };
    if (!iso) {
        // Out of ISO 8601's four-digit years: signed unix seconds.
        const std::uint64_t mag =
            us < 0 ? 0 - static_cast<std::uint64_t>(us) : static_cast<std::uint64_t>(us);
        if (us < 0) out += '-';
        append_number(mag / 1000000, 1);
        out += '.';
        append_number(mag % 1000000, 6);
        return out;
    }
    const auto micros =
        static_cast<std::uint64_t>((t.time_since_epoch() - day.time_since_epoch()).count());
    const std::uint64_t secs = micros / 1000000;
    out.reserve(27);
    append_number(static_cast<std::uint64_t>(static_cast<int>(ymd.year())), 4);
    out += '-';
    append_number(static_cast<unsigned>(ymd.month()), 2);
    out += '-';
    append_number(static_cast<unsigned>(ymd.day()), 2);
    out += 'T';
    append_number(secs / 3600, 2);
    out += ':';
    append_number(secs / 60 % 60, 2);
    out += ':';
    append_number(secs % 60, 2);
    if (micros % 1000000 != 0) {
        out += '.';
        append_number(micros % 1000000, 6);
    }
    out += 'Z';
    return out;
}

}  // namespace mailers::detail
