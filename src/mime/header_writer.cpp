#include "mime/header_writer.hpp"

#include <algorithm>
#include <array>
#include <cstdio>

#include "mime/base64.hpp"
#include "mime/text.hpp"

namespace mailers::mime {
namespace {

constexpr std::size_t max_encoded_line = 76;  // RFC 2047 section 2
constexpr std::size_t max_encoded_word = 75;  // RFC 2047 section 2
constexpr std::string_view q_open = "=?UTF-8?Q?";
constexpr std::string_view b_open = "=?UTF-8?B?";
constexpr std::string_view word_close = "?=";
constexpr std::size_t word_overhead = 12;  // "=?UTF-8?Q?" + "?="
// Room for the largest single character: four octets written as Q (=XX x 4).
constexpr std::size_t min_word = word_overhead + 12;

constexpr char hex_digits[] = "0123456789ABCDEF";

// Longest whitespace run a value may end with and still be written as is.
constexpr std::size_t max_trailing_space = 64;

// Octets Q may write as themselves in any context (RFC 2047 5(3)); space is
// written as '_', everything else as =XX.
constexpr std::array<bool, 256> q_literal = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c)
        t[static_cast<std::size_t>(c)] = is_alnum(static_cast<unsigned char>(c)) || c == '!' ||
                                         c == '*' || c == '+' || c == '-' || c == '/';
    return t;
}();

std::size_t q_cost(unsigned char c) noexcept {
    return (q_literal[c] || c == ' ') ? 1 : 3;
}

// RFC 2231 attribute-char: what may appear in an extended value without %XX.
constexpr std::array<bool, 256> attr_char = [] {
    std::array<bool, 256> t{};
    for (int c = 0; c < 256; ++c) {
        const auto u = static_cast<unsigned char>(c);
        t[u] = is_alnum(u) || std::string_view{"!#$&+-.^_`|~"}.find(static_cast<char>(c)) !=
                                  std::string_view::npos;
    }
    return t;
}();

std::size_t pct_cost(unsigned char c) noexcept {
    return attr_char[c] ? 1 : 3;
}

// Length of the character at s[i], falling back to one octet for ill-formed
// input so that every loop makes progress even if validation was skipped.
std::size_t char_len(std::string_view s, std::size_t i) noexcept {
    const std::size_t n = utf8_sequence_length(s, i);
    return n == 0 ? 1 : n;
}

void append_q(std::string& out, std::string_view text) {
    for (unsigned char c : text) {
        if (q_literal[c]) {
            out += static_cast<char>(c);
        } else if (c == ' ') {
            out += '_';
        } else {
            const char esc[3] = {'=', hex_digits[c >> 4], hex_digits[c & 15]};
            out.append(esc, 3);
        }
    }
}

void append_pct(std::string& out, std::string_view text) {
    for (unsigned char c : text) {
        if (attr_char[c]) {
            out += static_cast<char>(c);
        } else {
            const char esc[3] = {'%', hex_digits[c >> 4], hex_digits[c & 15]};
            out.append(esc, 3);
        }
    }
}

// The length of `s` as quoted-string content (see append_quoted).
std::size_t quoted_len(std::string_view s) noexcept {
    std::size_t n = s.size();
    for (char c : s)
        if (c == '"' || c == '\\') ++n;
    return n;
}

bool is_plain_phrase(std::string_view s) noexcept {
    if (s.empty() || s.front() == ' ' || s.back() == ' ') return false;
    char prev = 0;
    for (char c : s) {
        if (c == ' ') {
            if (prev == ' ') return false;
        } else if (!is_atext(static_cast<unsigned char>(c))) {
            return false;
        }
        prev = c;
    }
    return true;
}

bool is_simple_param_value(std::string_view s) noexcept {
    for (unsigned char c : s)
        if (c < 32 || c > 126) return false;
    return true;
}

// Splits `s` at the start of each whitespace run: each piece is a run of
// whitespace followed by a run of other octets (either may be empty for the
// first and last piece).
template <class F>
void for_each_segment(std::string_view s, F&& f) {
    std::size_t i = 0;
    while (i < s.size()) {
        const std::size_t ws_start = i;
        while (i < s.size() && is_wsp(static_cast<unsigned char>(s[i]))) ++i;
        const std::size_t word_start = i;
        while (i < s.size() && !is_wsp(static_cast<unsigned char>(s[i]))) ++i;
        f(s.substr(ws_start, word_start - ws_start), s.substr(word_start, i - word_start),
          i == s.size());
    }
}

// Longest atom or quoted word a display name may hold before it is encoded;
// escaping can double a quoted word, and the line must stay under 998.
constexpr std::size_t max_phrase_word = 450;

bool is_phrase_atom(std::string_view word) noexcept {
    if (word.empty() || word.size() > max_phrase_word) return false;
    for (std::size_t i = 0; i < word.size(); ++i) {
        const auto c = static_cast<unsigned char>(word[i]);
        if (!is_atext(c)) return false;
        if (c == '=' && i + 1 < word.size() && word[i + 1] == '?') return false;
    }
    return true;
}

}  // namespace

// A display name that needs encoded-words. RFC 2047 decoders drop the
// whitespace between adjacent encoded-words, but some (Python's email
// package among them) keep it inside a phrase; so a name that fits one word
// is written as one, and a longer one keeps its plain ASCII words as atoms
// and encodes only the runs of words that need it, each run as few words as
// the line allows. Whitespace around the name and runs of whitespace between
// atoms are not significant in a phrase and are written as one space.
void write_encoded_phrase(header_writer& w, std::string_view name) {
    std::size_t q_total = 0;
    for (unsigned char c : name) q_total += q_cost(c);
    if (word_overhead + std::min(q_total, base64_size(name.size())) <= max_encoded_word) {
        write_encoded_words(w, name);
        return;
    }
    std::size_t run_start = std::string_view::npos;
    std::size_t run_end = 0;
    const auto flush = [&] {
        if (run_start == std::string_view::npos) return;
        write_encoded_words(w, name.substr(run_start, run_end - run_start));
        run_start = std::string_view::npos;
    };
    for_each_segment(name, [&](std::string_view, std::string_view word, bool) {
        if (word.empty()) return;
        if (is_phrase_atom(word)) {
            flush();
            w.token(" ", word);
            return;
        }
        const auto begin = static_cast<std::size_t>(word.data() - name.data());
        if (run_start == std::string_view::npos) run_start = begin;
        run_end = begin + word.size();
    });
    flush();
}

void header_writer::begin(std::string_view name) {
    line_start_ = out_.size();
    line_has_token_ = false;
    line_has_encoded_ = false;
    out_ += name;
    out_ += ':';
}

void header_writer::token(std::string_view ws, std::string_view text) {
    std::string& o = start_token(ws.size() + text.size(), !ws.empty());
    o += ws;
    o += text;
}

std::string& header_writer::start_token(std::size_t len, bool foldable) {
    const std::size_t limit = line_has_encoded_ ? max_encoded_line : fold_column;
    if (foldable && line_has_token_ && column() + len > limit) fold();
    line_has_token_ = true;
    return out_;
}

void header_writer::fold() {
    out_ += "\r\n";
    line_start_ = out_.size();
    line_has_token_ = false;
    line_has_encoded_ = false;
}

void write_encoded_words(header_writer& w, std::string_view text, std::string_view prefix,
                         std::string_view suffix) {
    std::size_t q_total = 0;
    for (unsigned char c : text) q_total += q_cost(c);
    const bool use_q = q_total <= base64_size(text.size());
    const std::size_t whole = word_overhead + std::min(q_total, base64_size(text.size()));

    std::size_t i = 0;
    bool first = true;
    do {
        const std::size_t extra = 1 + (first ? prefix.size() : 0) + suffix.size();
        const std::size_t fresh = max_encoded_line - extra;
        std::size_t avail =
            w.column() + extra < max_encoded_line ? max_encoded_line - w.column() - extra : 0;
        // Fold rather than split when the whole text fits one word on a new
        // line: fewer words means fewer chances for decoders to disagree on
        // the whitespace between them.
        const bool fits_fresh_line = first && whole <= std::min(fresh, max_encoded_word);
        if (avail < min_word || (fits_fresh_line && whole > avail)) {
            w.fold();
            avail = fresh;
        }
        const std::size_t payload_max = std::min(avail, max_encoded_word) - word_overhead;

        std::size_t j = i;
        std::size_t payload = 0;
        while (j < text.size()) {
            const std::size_t len = char_len(text, j);
            std::size_t next;
            if (use_q) {
                next = payload;
                for (std::size_t k = j; k < j + len; ++k)
                    next += q_cost(static_cast<unsigned char>(text[k]));
            } else {
                next = base64_size(j + len - i);
            }
            if (next > payload_max && j > i) break;
            payload = next;
            j += len;
        }

        const bool last = j >= text.size();
        const std::size_t len =
            1 + (first ? prefix.size() : 0) + word_overhead + payload + (last ? suffix.size() : 0);
        std::string& o = w.start_token(len, true);
        o += ' ';
        if (first) o += prefix;
        o += use_q ? q_open : b_open;
        const std::string_view chunk = text.substr(i, j - i);
        if (use_q)
            append_q(o, chunk);
        else
            append_base64(o, chunk);
        o += word_close;
        if (last) o += suffix;
        w.mark_encoded();
        first = false;
        i = j;
    } while (i < text.size());
}

bool needs_encoded_words(std::string_view value, std::size_t max_token) noexcept {
    for (std::size_t i = 0; i < value.size(); ++i) {
        const auto c = static_cast<unsigned char>(value[i]);
        if (c >= 0x80) return true;
        if (c == '=' && i + 1 < value.size() && value[i + 1] == '?') return true;
    }
    bool too_long = false;
    for_each_segment(value, [&](std::string_view ws, std::string_view word, bool) {
        // Trailing whitespace cannot be folded onto a line of its own, so it
        // must fit after a full line.
        const std::size_t limit = word.empty() ? max_trailing_space : max_token;
        if (1 + ws.size() + word.size() > limit) too_long = true;
    });
    return too_long;
}

void write_unstructured(header_writer& w, std::string_view name, std::string_view value) {
    w.begin(name);
    if (value.empty()) {
        w.end();
        return;
    }
    const std::size_t max_token = name.size() + 2 < 998 ? 998 - name.size() - 2 : 0;
    if (needs_encoded_words(value, max_token)) {
        write_encoded_words(w, value);
        w.end();
        return;
    }
    bool first = true;
    for_each_segment(value, [&](std::string_view ws, std::string_view word, bool) {
        if (first) {
            std::string& o = w.start_token(1 + ws.size() + word.size(), false);
            o += ' ';
            o += ws;
            o += word;
            first = false;
        } else {
            // A trailing whitespace run is never folded onto a line of its own.
            std::string& o = w.start_token(ws.size() + word.size(), !word.empty());
            o += ws;
            o += word;
        }
    });
    w.end();
}

void write_display_name(header_writer& w, std::string_view name) {
    if (name.empty()) return;
    if (needs_encoded_words(name, max_phrase_word)) {
        write_encoded_phrase(w, name);
        return;
    }
    if (is_plain_phrase(name)) {
        for_each_segment(
            name, [&](std::string_view, std::string_view word, bool) { w.token(" ", word); });
        return;
    }
    // A quoted-string may fold at its own whitespace (RFC 5322 3.2.4), so the
    // opening quote rides on the first word and the closing one on the last.
    bool first = true;
    for_each_segment(name, [&](std::string_view ws, std::string_view word, bool last) {
        const std::size_t len = ws.size() + quoted_len(word) + (first ? 2 : 0) + (last ? 1 : 0);
        std::string& o = w.start_token(len, first || !ws.empty());
        if (first) o += " \"";
        o += ws;
        append_quoted(o, word);
        if (last) o += '"';
        first = false;
    });
}

void write_parameter(header_writer& w, std::string_view attr, std::string_view value) {
    w.out() += ';';
    // " attr=" + quoted value + ';' of a possible next parameter must fit a line.
    const std::size_t simple_len = 1 + attr.size() + 1 + 2 + quoted_len(value);
    if (is_simple_param_value(value) && simple_len + 1 <= fold_column) {
        std::string& o = w.start_token(simple_len, true);
        o += ' ';
        o += attr;
        o += "=\"";
        append_quoted(o, value);
        o += '"';
        return;
    }

    constexpr std::string_view charset = "UTF-8''";
    std::size_t total = 0;
    for (unsigned char c : value) total += pct_cost(c);
    if (1 + attr.size() + 2 + charset.size() + total + 1 <= fold_column) {
        std::string& o = w.start_token(1 + attr.size() + 2 + charset.size() + total, true);
        o += ' ';
        o += attr;
        o += "*=";
        o += charset;
        append_pct(o, value);
        return;
    }

    // Continuations: attr*0*=UTF-8''..., attr*1*=..., each on its own line.
    std::size_t i = 0;
    for (unsigned section = 0; i < value.size(); ++section) {
        char num[12];
        const int num_len = std::snprintf(num, sizeof num, "%u", section);
        const std::size_t head = 1 + attr.size() + 1 + static_cast<std::size_t>(num_len) + 2 +
                                 (section == 0 ? charset.size() : 0);
        const std::size_t room = fold_column - 1 - head;  // leave room for ';'
        std::size_t j = i, cost = 0;
        while (j < value.size()) {
            const std::size_t len = char_len(value, j);
            std::size_t c = 0;
            for (std::size_t k = j; k < j + len; ++k)
                c += pct_cost(static_cast<unsigned char>(value[k]));
            if (cost + c > room && j > i) break;
            cost += c;
            j += len;
        }
        if (section != 0) w.out() += ';';
        std::string& o = w.start_token(head + cost, true);
        o += ' ';
        o += attr;
        o += '*';
        o.append(num, static_cast<std::size_t>(num_len));
        o += "*=";
        if (section == 0) o += charset;
        append_pct(o, value.substr(i, j - i));
        i = j;
    }
}

void write_name_fallback(header_writer& w, std::string_view attr, std::string_view value) {
    const std::size_t simple_len = 1 + attr.size() + 1 + 2 + quoted_len(value);
    if (is_simple_param_value(value) && simple_len + 1 <= fold_column) {
        w.out() += ';';
        std::string& o = w.start_token(simple_len, true);
        o += ' ';
        o += attr;
        o += "=\"";
        append_quoted(o, value);
        o += '"';
        return;
    }
    w.out() += ';';
    std::string prefix;
    prefix.reserve(attr.size() + 2);
    prefix += attr;
    prefix += "=\"";
    write_encoded_words(w, value, prefix, "\"");
}

}  // namespace mailers::mime
