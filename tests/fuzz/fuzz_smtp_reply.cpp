// libFuzzer entry for the SMTP reply parser and the reply classification
// table.
//
// Input: byte 0 seeds the chunk sizes (and, in its low bits, may ask for a
// line or a stream longer than an input can be); the rest is what the server
// sent. The bytes are read as a connection reads them, in one chunk, in
// pieces of random sizes and octet by octet, and every read must give the
// same replies and stop the same way: a reply must not depend on how TCP cut
// the stream.
//
// Beyond that, each reply keeps the parser's contract (a code of 2xx-5xx, an
// enhanced code only when it is well formed and of the same class, consumed
// octets ending a line, text that reads back from verbatim()), and every
// refusal classifies, in every phase, to a refusal class: a 4xx never to one
// that suppresses the recipient or fails the message, a 5xx never to a
// plain temporary refusal.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "transports/reply_classification.hpp"
#include "transports/smtp/reply.hpp"

namespace {

namespace detail = mailers::detail;
namespace smtp = mailers::detail::smtp;
using mailers::transport_errc;

void check(bool ok) {
    if (!ok) std::abort();
}

struct read_result {
    std::vector<smtp::reply> replies;
    std::vector<std::size_t> ends;  ///< where each reply ends in the stream
    bool malformed = false;
    std::size_t left = 0;  ///< octets of an incomplete reply at the end
};

bool same(const smtp::reply& a, const smtp::reply& b) {
    return a.code == b.code && a.enhanced == b.enhanced && a.text == b.text;
}

bool same(const read_result& a, const read_result& b) {
    if (a.replies.size() != b.replies.size() || a.malformed != b.malformed || a.left != b.left ||
        a.ends != b.ends)
        return false;
    for (std::size_t i = 0; i < a.replies.size(); ++i)
        if (!same(a.replies[i], b.replies[i])) return false;
    return true;
}

void check_reply(const smtp::reply& r, std::string_view in, std::size_t consumed) {
    check(consumed > 0 && consumed <= in.size() && in[consumed - 1] == '\n');
    check(consumed <= smtp::max_reply_size);
    check(r.code >= 200 && r.code <= 599);
    check(int(r.positive()) + int(r.transient()) + int(r.permanent()) == 1);
    if (!r.enhanced.empty()) {
        const char cls = static_cast<char>('0' + r.code / 100);
        check(smtp::enhanced_code_length(r.enhanced, cls) == r.enhanced.size());
        check(std::string_view(r.text).starts_with(r.enhanced));
    }
    // One text line per reply line.
    std::size_t lines = 1;
    for (std::size_t i = 0; i < consumed; ++i) lines += in[i] == '\n';
    std::size_t breaks = 0;
    for (char c : r.text) breaks += c == '\n';
    check(breaks + 2 == lines);

    const auto first = r.first_line_text();
    const std::string_view text = r.text;
    const auto line0 = text.substr(0, text.find('\n'));
    check(first.data() >= line0.data() &&
          first.data() + first.size() == line0.data() + line0.size());

    // verbatim() is what diagnostics show: with CRLF line ends it is a reply
    // that parses back to this one.
    std::string wire;
    for (char c : r.verbatim()) {
        if (c == '\n') wire += '\r';
        wire += c;
    }
    wire += "\r\n";
    smtp::reply back;
    std::size_t n = 0;
    const auto st = smtp::parse_reply(wire, back, n);
    if (wire.size() > smtp::max_reply_size) {  // the CRs made it longer than what was read
        check(st == smtp::parse_status::malformed);
        return;
    }
    check(st == smtp::parse_status::complete && n == wire.size() && same(back, r));
}

// Every phase (one for a long text, to keep the rate up); the row itself is
// looked up again in one of them.
void check_classification(const smtp::reply& r, unsigned row_phase) {
    if (r.code < 400) return;  // classification is for refusals
    const auto rules = detail::smtp_reply_rules();
    for (unsigned p = 0; p <= static_cast<unsigned>(detail::smtp_phase::quit); ++p) {
        if (r.text.size() > 4096 && p != row_phase) continue;
        const auto phase = static_cast<detail::smtp_phase>(p);
        const auto e = detail::classify_smtp_reply(r.code, r.enhanced, r.text, phase);
        if (p == row_phase) {
            const int row = detail::match_smtp_reply_rule(r.code, r.enhanced, r.text, phase);
            check(row >= -1 && row < static_cast<int>(rules.size()));
            if (row >= 0) check(rules[static_cast<std::size_t>(row)].result == e);
        }
        // A reply is a refusal, never a lost connection or an unknown outcome.
        check(e == transport_errc::temporary_reply || e == transport_errc::rate_limited ||
              e == transport_errc::sender_quota_exhausted ||
              e == transport_errc::sender_reputation ||
              e == transport_errc::authentication_failed || e == transport_errc::configuration ||
              e == transport_errc::recipient_rejected || e == transport_errc::content_rejected);
        if (r.transient())
            check(e != transport_errc::recipient_rejected && e != transport_errc::content_rejected);
        if (r.permanent()) check(e != transport_errc::temporary_reply);
        check(!detail::phase_name(phase).empty() && detail::phase_name(phase) != "?");
    }
}

// Reads `in` as connection::read_reply does: append what arrived, take every
// complete reply off the front, stop at a malformed one. `piece` 0 reads all
// at once; otherwise pieces of 1 to `piece` octets follow from `seed`.
read_result read(std::string_view in, std::uint32_t seed, std::size_t piece) {
    read_result out;
    std::string buf;
    std::size_t start = 0;  // where the next reply begins in `buf`
    std::size_t base = 0;   // where `buf` begins in `in`
    smtp::reply r;
    std::size_t pos = 0;
    while (pos < in.size()) {
        std::size_t n = in.size() - pos;
        if (piece != 0) {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            n = std::min<std::size_t>(n, seed % piece + 1);
        }
        buf.erase(0, start);  // as the connection moves what is left to the front
        base += start;
        start = 0;
        buf.append(in.substr(pos, n));
        pos += n;
        for (;;) {
            const std::string_view rest = std::string_view(buf).substr(start);
            std::size_t consumed = 0;
            const auto st = smtp::parse_reply(rest, r, consumed);
            if (st == smtp::parse_status::incomplete) {
                check(consumed == 0);
                // What waits for the rest of a reply is bounded.
                check(rest.size() <= smtp::max_reply_size);
                break;
            }
            if (st == smtp::parse_status::malformed) {
                out.malformed = true;
                return out;
            }
            check(consumed > 0 && consumed <= rest.size());
            out.replies.push_back(r);
            start += consumed;
            out.ends.push_back(base + start);
        }
    }
    out.left = buf.size() - start;
    return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1) return 0;
    const std::uint32_t seed = 0x9e3779b9u ^ (std::uint32_t(data[0]) * 0x01000193u);
    std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
    // Lengths that a -max_len input cannot reach on its own: when the low
    // bits of byte 0 say so, the first line is padded to a few hundred
    // octets or to around max_reply_size, or the input is repeated past it.
    std::string big;
    const unsigned mode = data[0] & 15, step = data[0] >> 4;
    if (mode >= 13 && !in.empty()) {
        if (mode == 15) {
            while (big.size() <= smtp::max_reply_size + 1024) big.append(in);
        } else {
            auto at = std::min(in.find('\n'), in.size());
            if (at > 0 && at < in.size() && in[at - 1] == '\r') --at;
            const std::size_t pad =
                mode == 14 ? smtp::max_reply_size - 128 + step * 16 : 256 + step * 64;
            big.append(in.substr(0, at)).append(pad, 'x').append(in.substr(at));
        }
        in = big;
    }

    const auto whole = read(in, seed, 0);
    check(same(whole, read(in, seed, in.size() > 4096 ? 4096 : 16)));
    if (in.size() <= 1024) check(same(whole, read(in, seed, 1)));  // octet by octet
    // The replies' own checks, on the first few (the other reads gave the
    // same ones).
    for (std::size_t i = 0; i < whole.replies.size() && i < 32; ++i) {
        const std::size_t begin = i == 0 ? 0 : whole.ends[i - 1];
        check_reply(whole.replies[i], in.substr(begin), whole.ends[i] - begin);
        if (i < 8) check_classification(whole.replies[i], (data[0] + i) % 12);
    }

    // The enhanced-code reader on its own, over any text and class.
    for (char cls : {'2', '4', '5'}) {
        const auto n = smtp::enhanced_code_length(in, cls);
        check(n == 0 || (n >= 5 && n <= 9 && n <= in.size() && in[0] == cls));
    }
    return 0;
}
