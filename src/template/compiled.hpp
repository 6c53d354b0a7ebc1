// The compiled form of a message template: per part, a flat pre-order list
// of operations that rendering walks once, without parsing again.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <mailers/template.hpp>
#include <string>
#include <string_view>
#include <vector>

namespace mailers::tpl {

enum class op_kind : std::uint8_t {
    text,      ///< literal bytes: pool[begin, begin + size)
    value,     ///< a variable; fallback in pool[begin, begin + size) when has_fallback
    section,   ///< ops (this, next) render when the variable is present
    inverted,  ///< ops (this, next) render when the variable is absent or blank
    spin,      ///< `size` alternatives starting at alts[begin]; the last ends at next
};

struct op {
    op_kind kind = op_kind::text;
    bool raw = false;
    bool has_fallback = false;
    /// Whether any section encloses this op; a value outside every section
    /// is needed by every render.
    bool in_section = false;
    std::uint32_t name = 0;  ///< index into compiled_template::names
    std::uint32_t begin = 0;
    std::uint32_t size = 0;
    /// For section, inverted and spin: the index just past the subtree.
    std::uint32_t next = 0;
    /// For spin: the group's rank among the part's groups, in the order their
    /// opening braces appear. Part of the choice's input, so a group's choice
    /// does not depend on which sections rendered.
    std::uint32_t ordinal = 0;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
};

struct compiled_part {
    std::vector<op> ops;
    std::string pool;
    std::vector<std::uint32_t> alts;  ///< first op of each spintax alternative
};

struct name_use {
    template_part part = template_part::subject;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
};

struct compiled_template {
    std::vector<std::string> names;  ///< in order of first appearance
    /// Per name: where it is first used as a value, if ever; the place an
    /// invalid value is reported at.
    std::vector<name_use> first_value_use;
    std::vector<bool> used_as_value;
    std::array<compiled_part, 3> parts;
};

/// Compiles one part into `t.parts[part]`, adding names to `t.names`.
/// Returns false and fills `err` on the first error.
bool compile_part(std::string_view source, template_part part, compiled_template& t,
                  template_error& err);

constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// Which of `n` alternatives the group `ordinal` of `part` takes for `seed`.
/// Fixed forever: changing it changes what every running sequence sends.
constexpr std::uint32_t spin_choice(std::uint64_t seed, template_part part, std::uint32_t ordinal,
                                    std::uint32_t n) noexcept {
    const std::uint64_t where = (static_cast<std::uint64_t>(part) << 32) | ordinal;
    return static_cast<std::uint32_t>(splitmix64(seed ^ splitmix64(where)) % n);
}

/// Blank values count as absent: an empty or whitespace-only cell in an
/// import should take the fallback, not render "Hi ,".
constexpr bool is_blank(std::string_view v) noexcept {
    for (char c : v)
        if (c != ' ' && c != '\t' && c != '\r' && c != '\n') return false;
    return true;
}

}  // namespace mailers::tpl

namespace mailers {

struct __attribute__((visibility("hidden"))) message_template::impl {
    template_source source;
    tpl::compiled_template compiled;
};

}  // namespace mailers
