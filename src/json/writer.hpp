// Streaming JSON writer for request bodies (provider APIs, outbound webhooks).
//
// The writer appends RFC 8259 text to a string the caller owns, so a body can
// be built in a buffer that is reused from one request to the next. It keeps
// no stack: commas and colons follow from the last token written, which makes
// it allocation-free apart from the growth of the output string. It does not
// check that calls are balanced; the tests parse its output back instead.
#pragma once

#include <concepts>
#include <cstdint>
#include <mailers/config.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace mailers::json {

/// Appends `s` as a JSON string, surrounding quotes included.
///
/// Escapes `"` and `\`, every control character below 0x20 (as \b \f \n \r \t
/// or \u00XX), and U+2028 / U+2029 (so the text is also safe inside a
/// JavaScript literal). Other valid UTF-8 passes through unchanged. Each
/// maximal ill-formed subsequence (Unicode 15, section 3.9) becomes one
/// `\ufffd`: overlong forms, surrogates, code points above U+10FFFF, stray
/// continuation bytes and truncated sequences never reach the output.
void append_escaped(std::string& out, std::string_view s);

/// Appends RFC 8259 JSON to a caller-owned string; commas are inserted
/// automatically. Every function returns `*this` so calls chain:
///
///     json::writer w{body};
///     w.begin_object().member("from", from).key("to").begin_array();
///     for (auto& r : rcpts) w.value(r);
///     w.end_array().end_object();
///
/// Calls must be balanced and a `key` must come before each value inside an
/// object; the writer does not diagnose misuse.
class writer {
public:
    explicit writer(std::string& out) noexcept : out_(out) {}

    writer& begin_object();
    writer& end_object();
    writer& begin_array();
    writer& end_array();

    /// Writes `"k":`; the next call writes the member's value.
    writer& key(std::string_view k);

    writer& value(std::string_view s);
    /// A null pointer writes `null`.
    writer& value(const char* s);
    writer& value(const std::string& s) { return value(std::string_view{s}); }
    writer& value(std::int64_t v);
    writer& value(std::uint64_t v);
    writer& value(int v) { return value(static_cast<std::int64_t>(v)); }
    /// Shortest text that reads back as the same double. JSON has no NaN or
    /// infinity, so a non-finite value writes `null` rather than invalid JSON.
    writer& value(double v);
    writer& value(bool v);

    /// Other integer types (unsigned, long long, short, ...), so that a call
    /// such as `value(42u)` is not ambiguous. Character types are excluded on
    /// purpose: a `char` is almost never meant as a number.
    template <std::integral T>
    requires(!std::same_as<T, bool> && !std::same_as<T, char> && !std::same_as<T, char8_t> &&
             !std::same_as<T, char16_t> && !std::same_as<T, char32_t> &&
             !std::same_as<T, wchar_t>) writer& value(T v) {
        if constexpr (std::signed_integral<T>)
            return value(static_cast<std::int64_t>(v));
        else
            return value(static_cast<std::uint64_t>(v));
    }

    /// An empty optional writes `null`.
    template <class T>
    writer& value(const std::optional<T>& v) {
        return v ? value(*v) : null();
    }

    writer& null();

    template <class T>
    writer& member(std::string_view k, const T& v) {
        key(k);
        return value(v);
    }

    /// A string holding the base64 (RFC 4648, padded) of `bytes`, written
    /// straight into the output: base64 needs no escaping.
    writer& base64_value(std::string_view bytes);

    /// Inserts text that is already valid JSON (a cached fragment, a body
    /// returned by another encoder) as one value; it is not checked.
    writer& raw(std::string_view already_encoded_json);

    std::string& str() noexcept { return out_; }

private:
    void separate() {
        if (need_comma_) out_.push_back(',');
    }

    std::string& out_;
    // True when the previous token was a complete value inside a container,
    // so the next value or key needs a comma in front of it.
    bool need_comma_ = false;
};

}  // namespace mailers::json
