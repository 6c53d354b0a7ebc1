// Template compiler: one pass over each part that builds a tree, then a
// flattening pass into the op list rendering walks.
//
// Braces cannot be classified when they are read: `{` is spintax only if a
// `}` later closes it with a `|` directly inside. So every `{` opens a
// tentative group frame, and when the group closes (or its scope ends) with
// fewer than two alternatives its content is spliced back into the parent
// as literal text. Frames are bounded by max_template_depth, so splicing
// costs at most depth x size and no input reaches quadratic time.
#include <fmt/format.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mime/text.hpp"
#include "template/compiled.hpp"

namespace mailers::tpl {
namespace {

struct node {
    op_kind kind = op_kind::text;
    bool raw = false;
    bool has_fallback = false;
    std::uint32_t name = 0;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
    std::string text;  ///< literal text, or the fallback
    /// A section's content (one list) or a spintax group's alternatives.
    std::vector<std::vector<node>> lists;
};

using node_list = std::vector<node>;

void append_text(node_list& list, std::string_view s) {
    if (s.empty()) return;
    if (!list.empty() && list.back().kind == op_kind::text) {
        list.back().text.append(s);
        return;
    }
    node n;
    n.text.assign(s);
    list.push_back(std::move(n));
}

void append_node(node_list& list, node&& n) {
    if (n.kind == op_kind::text) {
        append_text(list, n.text);
        return;
    }
    list.push_back(std::move(n));
}

struct frame {
    enum class kind { root, section, group } k = kind::root;
    bool inverted = false;
    std::uint32_t name = 0;
    std::uint32_t line = 0;
    std::uint32_t column = 0;
    std::vector<node_list> lists;
};

/// Line and column of byte offsets visited in increasing order, in linear
/// time overall: columns count code points, so they are counted as the
/// cursor moves rather than recomputed from the line's start.
class cursor {
public:
    explicit cursor(std::string_view s) : s_(s) {}
    void advance_to(std::size_t target) {
        for (; off_ < target && off_ < s_.size(); ++off_) {
            const auto c = static_cast<unsigned char>(s_[off_]);
            if (c == '\n') {
                ++line_;
                column_ = 1;
            } else if ((c & 0xC0) != 0x80) {
                ++column_;
            }
        }
    }
    std::uint32_t line() const noexcept { return line_; }
    std::uint32_t column() const noexcept { return column_; }

private:
    std::string_view s_;
    std::size_t off_ = 0;
    std::uint32_t line_ = 1;
    std::uint32_t column_ = 1;
};

constexpr bool is_name_char(unsigned char c) noexcept {
    return mime::is_alnum(c) || c == '_' || c == '.' || c == '-';
}

constexpr bool is_space(char c) noexcept {
    return c == ' ' || c == '\t';
}

/// The character at s[i] for an error message, quoted: a whole UTF-8
/// sequence, never half of one.
std::string quoted_char(std::string_view s, std::size_t i) {
    if (i >= s.size()) return "the end of the tag";
    std::size_t n = mime::utf8_sequence_length(s, i);
    if (n == 0) n = 1;
    return fmt::format("`{}`", s.substr(i, n));
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

/// Does `s` at `i` open a <style> or <script> element (ASCII case ignored)?
/// Returns the element name, or "".
std::string_view raw_text_element_at(std::string_view s, std::size_t i) {
    for (std::string_view name : {std::string_view("style"), std::string_view("script")}) {
        const std::size_t end = i + 1 + name.size();
        if (end > s.size()) continue;
        if (!mime::iequals(s.substr(i + 1, name.size()), name)) continue;
        if (end == s.size()) return name;
        const char c = s[end];
        if (c == '>' || c == '/' || c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f')
            return name;
    }
    return {};
}

class parser {
public:
    parser(std::string_view src, template_part part, compiled_template& t, template_error& err)
        : s_(src), part_(part), t_(t), err_(err), pos_(src) {
        for (std::uint32_t id = 0; id < t_.names.size(); ++id) ids_.emplace(t_.names[id], id);
    }

    bool run(compiled_part& out) {
        if (s_.size() > max_template_part_size) {
            err_ = {part_, 0, 0,
                    fmt::format("the {} part is {} bytes; the limit is {}", to_string(part_),
                                s_.size(), max_template_part_size)};
            return false;
        }
        if (!check_bytes()) return false;
        stack_.push_back(frame{});
        stack_.back().lists.emplace_back();
        if (!parse()) return false;
        // Groups never closed were literal braces all along.
        while (stack_.back().k == frame::kind::group) splice_group(false);
        if (stack_.back().k == frame::kind::section) {
            const frame& f = stack_.back();
            return fail_at(
                f.line, f.column,
                fmt::format("section `{{{{{}{}}}}}` is never closed: expected `{{{{/{}}}}}`",
                            f.inverted ? '^' : '#', t_.names[f.name], t_.names[f.name]));
        }
        flatten(stack_.back().lists.front(), out, false);
        return true;
    }

private:
    bool fail_at(std::uint32_t line, std::uint32_t column, std::string message) {
        err_ = {part_, line, column, std::move(message)};
        return false;
    }
    bool fail(std::size_t offset, std::string message) {
        pos_.advance_to(offset);
        return fail_at(pos_.line(), pos_.column(), std::move(message));
    }

    bool check_bytes() {
        for (std::size_t i = 0; i < s_.size();) {
            const auto c = static_cast<unsigned char>(s_[i]);
            if (c == 0) return fail(i, "NUL is not allowed in a template");
            if (part_ == template_part::subject && (c == '\r' || c == '\n'))
                return fail(i, "the subject must be one line: found a line break");
            if (c < 0x80) {
                ++i;
                continue;
            }
            const std::size_t n = mime::utf8_sequence_length(s_, i);
            if (n == 0) return fail(i, "invalid UTF-8");
            i += n;
        }
        return true;
    }

    node_list& current() { return stack_.back().lists.back(); }

    void flush_text(std::size_t end) {
        if (end > text_start_) append_text(current(), s_.substr(text_start_, end - text_start_));
    }

    bool push(frame f, std::uint32_t line, std::uint32_t column) {
        if (stack_.size() > max_template_depth)
            return fail_at(line, column,
                           fmt::format("nesting deeper than {} levels (sections, spintax "
                                       "groups and braces together)",
                                       max_template_depth));
        stack_.push_back(std::move(f));
        stack_.back().lists.emplace_back();
        return true;
    }

    /// Pops the group on top. With two or more alternatives and `closed`, it
    /// becomes spintax; otherwise its braces and bars are put back as text.
    void splice_group(bool closed) {
        frame g = std::move(stack_.back());
        stack_.pop_back();
        node_list& parent = current();
        if (closed && g.lists.size() >= 2) {
            node n;
            n.kind = op_kind::spin;
            n.lists = std::move(g.lists);
            parent.push_back(std::move(n));
            return;
        }
        append_text(parent, "{");
        for (std::size_t i = 0; i < g.lists.size(); ++i) {
            if (i > 0) append_text(parent, "|");
            for (node& n : g.lists[i]) append_node(parent, std::move(n));
        }
        if (closed) append_text(parent, "}");
    }

    std::uint32_t intern(std::string_view name) {
        auto it = ids_.find(name);
        if (it != ids_.end()) return it->second;
        const auto id = static_cast<std::uint32_t>(t_.names.size());
        t_.names.emplace_back(name);
        t_.first_value_use.emplace_back();
        t_.used_as_value.push_back(false);
        ids_.emplace(std::string(name), id);
        return id;
    }

    bool parse() {
        const std::size_t n = s_.size();
        const bool html = part_ == template_part::html;
        std::string_view raw_element;  // set inside <style> or <script>
        std::size_t i = 0;
        while (i < n) {
            const char c = s_[i];
            if (c == '\\' && i + 1 < n &&
                (s_[i + 1] == '{' || s_[i + 1] == '}' || s_[i + 1] == '|')) {
                flush_text(i);
                append_text(current(), s_.substr(i + 1, 1));
                i += 2;
                text_start_ = i;
                continue;
            }
            if (c == '<' && html) {
                if (raw_element.empty()) {
                    raw_element = raw_text_element_at(s_, i);
                } else if (i + 2 + raw_element.size() <= n && s_[i + 1] == '/' &&
                           mime::iequals(s_.substr(i + 2, raw_element.size()), raw_element)) {
                    raw_element = {};
                }
                ++i;
                continue;
            }
            if (c == '{' && i + 1 < n && s_[i + 1] == '{' && !(i + 2 < n && s_[i + 2] == '{')) {
                flush_text(i);
                if (!tag(i)) return false;
                continue;
            }
            if (!raw_element.empty() || (c != '{' && c != '}' && c != '|')) {
                if (c == '{') brace_end_ = i + 1;
                ++i;
                continue;
            }
            if (c == '{') {
                flush_text(i);
                pos_.advance_to(i);
                frame g;
                g.k = frame::kind::group;
                if (!push(std::move(g), pos_.line(), pos_.column())) return false;
                brace_end_ = i + 1;
                text_start_ = ++i;
                continue;
            }
            if (stack_.back().k != frame::kind::group) {
                ++i;  // a bar or closing brace outside any group is text
                continue;
            }
            flush_text(i);
            if (c == '|')
                stack_.back().lists.emplace_back();
            else
                splice_group(true);
            text_start_ = ++i;
        }
        flush_text(n);
        return true;
    }

    /// Parses the tag at s_[at] == "{{" and moves past it.
    bool tag(std::size_t& at) {
        const std::size_t n = s_.size();
        std::size_t end = at + 2;
        for (;; ++end) {
            if (end < n && (s_[end] == '\n' || s_[end] == '\r'))
                return fail(at, "expected `}}` to close this tag before the end of the line");
            if (end + 1 >= n) return fail(at, "expected `}}` to close this tag");
            if (s_[end] == '{' && s_[end + 1] == '{')
                return fail(at, "expected `}}` to close this tag before the next `{{`");
            if (s_[end] == '}' && s_[end + 1] == '}') break;
        }
        pos_.advance_to(at);
        const std::uint32_t line = pos_.line();
        const std::uint32_t column = pos_.column();
        const std::size_t base = at + 2;
        const std::string_view body = s_.substr(base, end - base);
        const std::size_t after = end + 2;

        std::size_t k = 0;
        while (k < body.size() && is_space(body[k])) ++k;
        if (k < body.size() && body[k] == '!') {  // a comment
            at = after;
            text_start_ = after;
            return true;
        }
        char sigil = 0;
        if (k < body.size() &&
            (body[k] == '#' || body[k] == '^' || body[k] == '/' || body[k] == '&')) {
            sigil = body[k++];
            while (k < body.size() && is_space(body[k])) ++k;
        }
        const std::size_t name_begin = k;
        while (k < body.size() && is_name_char(static_cast<unsigned char>(body[k]))) ++k;
        const std::string_view name = body.substr(name_begin, k - name_begin);
        if (name.empty())
            return fail(base + k,
                        fmt::format("expected a variable name (letters, digits, `_`, `.`, `-`), "
                                    "found {}",
                                    quoted_char(body, k)));
        if (name.size() > max_template_variable_name_size)
            return fail(base + name_begin, fmt::format("a variable name is at most {} bytes",
                                                       max_template_variable_name_size));
        while (k < body.size() && is_space(body[k])) ++k;
        bool has_fallback = false;
        std::string_view fallback;
        if (k < body.size()) {
            if (body[k] != '|')
                return fail(base + k, fmt::format("expected `|` or `}}}}` after the name, found {}",
                                                  quoted_char(body, k)));
            if (sigil == '#' || sigil == '^' || sigil == '/')
                return fail(base + k, "a section tag takes no fallback: expected `}}`");
            has_fallback = true;
            fallback = trim(body.substr(k + 1));
        }
        const bool is_value = sigil == 0 || sigil == '&';
        if (is_value && brace_end_ == at && after < n && s_[after] == '}')
            return fail_at(line, column - 1,
                           std::string("`{{{")
                               .append(name)
                               .append("}}}` is not raw output here: write `{{&")
                               .append(name)
                               .append("}}` for an unescaped value, or `\\{{{")
                               .append(name)
                               .append("}}\\}` for a value in literal braces"));

        const std::uint32_t id = intern(name);
        at = after;
        text_start_ = after;
        if (is_value) {
            node v;
            v.kind = op_kind::value;
            v.raw = sigil == '&';
            v.has_fallback = has_fallback;
            v.name = id;
            v.line = line;
            v.column = column;
            v.text.assign(fallback);
            current().push_back(std::move(v));
            if (!t_.used_as_value[id]) {
                t_.used_as_value[id] = true;
                t_.first_value_use[id] = {part_, line, column};
            }
            return true;
        }
        if (sigil == '#' || sigil == '^') {
            frame f;
            f.k = frame::kind::section;
            f.inverted = sigil == '^';
            f.name = id;
            f.line = line;
            f.column = column;
            return push(std::move(f), line, column);
        }
        // A closing tag ends every group opened inside the section: those
        // braces were literal.
        while (stack_.back().k == frame::kind::group) splice_group(false);
        if (stack_.back().k == frame::kind::root)
            return fail_at(line, column, fmt::format("`{{{{/{}}}}}` closes no open section", name));
        const frame& open = stack_.back();
        if (open.name != id)
            return fail_at(line, column,
                           fmt::format("expected `{{{{/{}}}}}` to close the section opened at line "
                                       "{}, column {}, found `{{{{/{}}}}}`",
                                       t_.names[open.name], open.line, open.column, name));
        frame f = std::move(stack_.back());
        stack_.pop_back();
        node sec;
        sec.kind = f.inverted ? op_kind::inverted : op_kind::section;
        sec.name = f.name;
        sec.lists = std::move(f.lists);
        current().push_back(std::move(sec));
        return true;
    }

    /// Pre-order, so spintax ordinals follow the order of opening braces.
    void flatten(node_list& list, compiled_part& out, bool in_section) {
        for (node& n : list) {
            const auto index = out.ops.size();
            op o;
            o.kind = n.kind;
            o.raw = n.raw;
            o.has_fallback = n.has_fallback;
            o.in_section = in_section;
            o.name = n.name;
            o.line = n.line;
            o.column = n.column;
            if (n.kind == op_kind::text || n.kind == op_kind::value) {
                o.begin = static_cast<std::uint32_t>(out.pool.size());
                o.size = static_cast<std::uint32_t>(n.text.size());
                out.pool += n.text;
                out.ops.push_back(o);
                continue;
            }
            if (n.kind == op_kind::spin) {
                o.ordinal = spins_++;
                o.begin = static_cast<std::uint32_t>(out.alts.size());
                o.size = static_cast<std::uint32_t>(n.lists.size());
                out.alts.resize(out.alts.size() + n.lists.size());
            }
            out.ops.push_back(o);
            for (std::size_t a = 0; a < n.lists.size(); ++a) {
                if (n.kind == op_kind::spin)
                    out.alts[o.begin + a] = static_cast<std::uint32_t>(out.ops.size());
                flatten(n.lists[a], out, in_section || n.kind != op_kind::spin);
            }
            out.ops[index].next = static_cast<std::uint32_t>(out.ops.size());
        }
    }

    std::string_view s_;
    template_part part_;
    compiled_template& t_;
    template_error& err_;
    cursor pos_;
    std::vector<frame> stack_;
    std::map<std::string, std::uint32_t, std::less<>> ids_;
    std::size_t text_start_ = 0;
    /// Just past the last `{` read as a brace, to recognise `{{{name}}}`.
    std::size_t brace_end_ = static_cast<std::size_t>(-1);
    std::uint32_t spins_ = 0;
};

}  // namespace

bool compile_part(std::string_view source, template_part part, compiled_template& t,
                  template_error& err) {
    parser p(source, part, t, err);
    return p.run(t.parts[static_cast<std::size_t>(part)]);
}

}  // namespace mailers::tpl
