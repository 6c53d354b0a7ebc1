// Header field output: folding (RFC 5322 2.2.3), RFC 2047 encoded-words and
// RFC 2231 parameter values, written straight into the message buffer.
#pragma once

#include <cstddef>
#include <mailers/config.hpp>
#include <string>
#include <string_view>

namespace mailers::mime {

/// Lines are folded to stay within this many characters where the text allows.
inline constexpr std::size_t fold_column = 78;

/// Writes one header field at a time as a sequence of tokens. A token is
/// optional leading whitespace plus text that must not be split; the writer
/// folds (inserts CRLF before the whitespace) when a token would carry the
/// line past 78 characters. Tokens without leading whitespace never fold, so
/// callers glue punctuation to the token before it.
class header_writer {
public:
    explicit header_writer(std::string& out) noexcept : out_(out) {}

    /// Writes "Name:".
    void begin(std::string_view name);
    /// Ends the field with CRLF.
    void end() { out_ += "\r\n"; }

    /// Appends `ws` + `text`, folding first when needed.
    void token(std::string_view ws, std::string_view text);

    /// Prepares for a token of `len` octets (leading whitespace included) that
    /// the caller then appends to the returned string; folds first when the
    /// token would not fit and `foldable` (it starts with whitespace).
    std::string& start_token(std::size_t len, bool foldable);

    /// Starts a new line; the next token must start with whitespace.
    void fold();

    /// Records that the current line holds an encoded-word, which lowers its
    /// limit to the 76 characters RFC 2047 section 2 allows.
    void mark_encoded() noexcept { line_has_encoded_ = true; }

    std::size_t column() const noexcept { return out_.size() - line_start_; }
    std::string& out() noexcept { return out_; }

private:
    std::string& out_;
    std::size_t line_start_ = 0;
    bool line_has_token_ = false;
    bool line_has_encoded_ = false;
};

/// Writes `text` (valid UTF-8) as RFC 2047 encoded-words in UTF-8, each one a
/// separate token of at most 75 characters whose line stays within 76
/// characters; never splits a UTF-8 sequence. Picks Q when it is no longer
/// than B. Q uses only the characters RFC 2047 5(3) allows in a phrase, so the
/// words are valid in Subject, in display names and in quoted parameters.
/// `prefix` is glued to the first word and `suffix` to the last.
void write_encoded_words(header_writer& w, std::string_view text, std::string_view prefix = {},
                         std::string_view suffix = {});

/// True when an unstructured value must be written as encoded-words rather
/// than folded as is: non-ASCII, text that could be mistaken for an
/// encoded-word ("=?"), or a run that no fold could fit into `max_token`.
bool needs_encoded_words(std::string_view value, std::size_t max_token) noexcept;

/// Writes the unstructured field `name: value` (Subject, extra headers):
/// folded at its own whitespace when plain ASCII, otherwise encoded-words.
void write_unstructured(header_writer& w, std::string_view name, std::string_view value);

/// Writes a display name that needs encoded-words (see header_writer.cpp for
/// how it copes with decoders that disagree on whitespace between them).
void write_encoded_phrase(header_writer& w, std::string_view name);

/// Writes a display name (valid UTF-8) as the phrase before an angle-addr:
/// atoms as they are, a quoted-string when it holds specials, encoded-words
/// when it is not ASCII.
void write_display_name(header_writer& w, std::string_view name);

/// Writes `; attr=value` for a MIME parameter (the ';' is glued to the token
/// before): a quoted-string when `value` is short printable ASCII, else the
/// RFC 2231 `attr*=UTF-8''...` form split into `attr*0*`, `attr*1*`, ...
/// continuations that each fit a line.
void write_parameter(header_writer& w, std::string_view attr, std::string_view value);

/// Writes ` name="..."`: the plain quoted-string when write_parameter would use
/// one, else RFC 2047 encoded-words inside the quotes, the fallback that mail
/// readers without RFC 2231 support understand.
void write_name_fallback(header_writer& w, std::string_view attr, std::string_view value);

}  // namespace mailers::mime
