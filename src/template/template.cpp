// message_template: compiling the three parts, checking variables, and
// rendering the op lists built by parse.cpp.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <mailers/template.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mime/text.hpp"
#include "template/compiled.hpp"
#include "template/html_escape.hpp"

namespace mailers {

std::string_view to_string(template_part p) noexcept {
    switch (p) {
        case template_part::subject:
            return "subject";
        case template_part::text:
            return "text";
        case template_part::html:
            return "html";
    }
    return "unknown";
}

std::string template_error::to_string() const {
    if (line == 0) return fmt::format("{}: {}", mailers::to_string(part), message);
    return fmt::format("{}, line {}, column {}: {}", mailers::to_string(part), line, column,
                       message);
}

std::string variable_check::to_string() const {
    std::string out;
    if (!missing.empty())
        out = fmt::format("missing variable{}: {}", missing.size() == 1 ? "" : "s",
                          fmt::join(missing, ", "));
    if (!invalid.empty()) {
        if (!out.empty()) out += "; ";
        out += fmt::format("not valid UTF-8 or holding NUL: {}", fmt::join(invalid, ", "));
    }
    return out;
}

bool is_reserved_template_variable(std::string_view name) noexcept {
    return std::find(reserved_template_variables.begin(), reserved_template_variables.end(),
                     name) != reserved_template_variables.end();
}

std::uint64_t template_seed(std::string_view enrollment_id, std::uint64_t step) noexcept {
    // FNV-1a over the id's bytes, then splitmix64 to spread the step: both
    // are fixed published functions, unlike std::hash.
    std::uint64_t h = 0xcbf29ce484222325ULL;
    for (char c : enrollment_id) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return tpl::splitmix64(h ^ tpl::splitmix64(step));
}

namespace {

bool value_is_valid(std::string_view v) noexcept {
    return v.find('\0') == std::string_view::npos && mime::is_valid_utf8(v);
}

using resolved = std::vector<const std::string*>;

resolved resolve(const tpl::compiled_template& t, const template_variables& vars) {
    resolved values(t.names.size(), nullptr);
    for (std::size_t i = 0; i < t.names.size(); ++i) {
        auto it = vars.find(t.names[i]);
        if (it != vars.end()) values[i] = &it->second;
    }
    return values;
}

bool present(const std::string* v) noexcept {
    return v != nullptr && !tpl::is_blank(*v);
}


/// A line break with the blanks around it becomes one space, so a value
/// pasted from a multi-line cell reads naturally and can never start a new
/// header line.
void append_folded(std::string& out, std::string_view v) {
    const std::size_t start = out.size();
    std::size_t i = 0;
    while (i < v.size()) {
        const char c = v[i];
        if (c != '\r' && c != '\n') {
            out += c;
            ++i;
            continue;
        }
        while (out.size() > start && (out.back() == ' ' || out.back() == '\t')) out.pop_back();
        while (i < v.size() && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n')) ++i;
        out += ' ';
    }
}

class renderer {
public:
    renderer(const tpl::compiled_template& t, const resolved& values, std::uint64_t seed,
             template_error& err)
        : t_(t), values_(values), seed_(seed), err_(err) {}

    error_code part(template_part p, std::string& out) {
        part_ = p;
        const auto& cp = t_.parts[static_cast<std::size_t>(p)];
        // The literal text is an estimate of the output that saves most of
        // the regrowth.
        out.reserve(cp.pool.size());
        return range(cp, 0, static_cast<std::uint32_t>(cp.ops.size()), out);
    }

private:
    error_code range(const tpl::compiled_part& cp, std::uint32_t i, std::uint32_t end,
                     std::string& out) {
        while (i < end) {
            const tpl::op& o = cp.ops[i];
            switch (o.kind) {
                case tpl::op_kind::text:
                    out.append(cp.pool, o.begin, o.size);
                    ++i;
                    break;
                case tpl::op_kind::value: {
                    const std::string* v = values_[o.name];
                    if (present(v)) {
                        append_value(out, *v, o.raw);
                    } else if (o.has_fallback) {
                        append_value(out, std::string_view(cp.pool).substr(o.begin, o.size), o.raw);
                    } else {
                        err_ = {part_, o.line, o.column,
                                fmt::format("variable `{}` is {} and has no fallback",
                                            t_.names[o.name], v ? "blank" : "missing")};
                        return errc::invalid_argument;
                    }
                    ++i;
                    break;
                }
                case tpl::op_kind::section:
                case tpl::op_kind::inverted:
                    // Content is contiguous after the op: enter it or skip it.
                    i = (present(values_[o.name]) == (o.kind == tpl::op_kind::section)) ? i + 1
                                                                                        : o.next;
                    break;
                case tpl::op_kind::spin: {
                    const std::uint32_t a = tpl::spin_choice(seed_, part_, o.ordinal, o.size);
                    const std::uint32_t from = cp.alts[o.begin + a];
                    const std::uint32_t to = a + 1 < o.size ? cp.alts[o.begin + a + 1] : o.next;
                    if (auto ec = range(cp, from, to, out)) return ec;
                    i = o.next;
                    break;
                }
            }
            if (out.size() > max_rendered_part_size) {
                err_ = {part_, 0, 0,
                        fmt::format("the rendered {} part exceeds {} bytes", to_string(part_),
                                    max_rendered_part_size)};
                return errc::message_too_large;
            }
        }
        return {};
    }

    void append_value(std::string& out, std::string_view v, bool raw) {
        switch (part_) {
            case template_part::subject:
                append_folded(out, v);
                break;
            case template_part::text:
                out.append(v);
                break;
            case template_part::html:
                if (raw)
                    out.append(v);
                else
                    tpl::append_html_escaped(out, v);
                break;
        }
    }

    const tpl::compiled_template& t_;
    const resolved& values_;
    std::uint64_t seed_;
    template_error& err_;
    template_part part_ = template_part::subject;
};

std::vector<std::string> sorted_unique(std::vector<std::string> v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
}

}  // namespace

message_template::message_template() {
    static const auto empty = std::make_shared<const impl>();
    impl_ = empty;
}

message_template::message_template(std::shared_ptr<const impl> p) noexcept : impl_(std::move(p)) {}

boost::system::result<message_template> message_template::compile(template_source source,
                                                                  template_error* error) {
    auto p = std::make_shared<impl>();
    p->source = std::move(source);
    template_error err;
    const std::string_view parts[] = {p->source.subject, p->source.text, p->source.html};
    for (auto part : {template_part::subject, template_part::text, template_part::html}) {
        if (!tpl::compile_part(parts[static_cast<std::size_t>(part)], part, p->compiled, err)) {
            if (error) *error = std::move(err);
            return error_code(errc::invalid_argument);
        }
    }
    return message_template(std::move(p));
}

const template_source& message_template::source() const noexcept {
    return impl_->source;
}

std::vector<std::string> message_template::variables() const {
    return sorted_unique(impl_->compiled.names);
}

std::vector<std::string> message_template::required_variables() const {
    const auto& t = impl_->compiled;
    std::vector<std::string> out;
    for (const auto& cp : t.parts)
        for (const auto& o : cp.ops)
            if (o.kind == tpl::op_kind::value && !o.has_fallback && !o.in_section &&
                !is_reserved_template_variable(t.names[o.name]))
                out.push_back(t.names[o.name]);
    return sorted_unique(std::move(out));
}

variable_check message_template::check(const template_variables& vars) const {
    const auto& t = impl_->compiled;
    const resolved values = resolve(t, vars);
    variable_check out;
    for (std::size_t id = 0; id < t.names.size(); ++id)
        if (t.used_as_value[id] && values[id] && !value_is_valid(*values[id]) &&
            !is_reserved_template_variable(t.names[id]))
            out.invalid.push_back(t.names[id]);
    // Walking every op but the skipped sections visits every spintax
    // alternative, since alternatives lie one after another.
    for (const auto& cp : t.parts) {
        for (std::uint32_t i = 0; i < cp.ops.size();) {
            const tpl::op& o = cp.ops[i];
            if (o.kind == tpl::op_kind::section || o.kind == tpl::op_kind::inverted) {
                i = (present(values[o.name]) == (o.kind == tpl::op_kind::section)) ? i + 1 : o.next;
                continue;
            }
            if (o.kind == tpl::op_kind::value && !o.has_fallback && !present(values[o.name]) &&
                !is_reserved_template_variable(t.names[o.name]))
                out.missing.push_back(t.names[o.name]);
            ++i;
        }
    }
    out.missing = sorted_unique(std::move(out.missing));
    out.invalid = sorted_unique(std::move(out.invalid));
    return out;
}

boost::system::result<rendered_template> message_template::render(const template_variables& vars,
                                                                  std::uint64_t seed,
                                                                  template_error* error) const {
    const auto& t = impl_->compiled;
    const resolved values = resolve(t, vars);
    template_error err;
    const auto failed = [&](error_code ec) -> boost::system::result<rendered_template> {
        if (error) *error = std::move(err);
        return ec;
    };
    // Every value the template could print is checked, not only those this
    // seed prints: a bad value fails every render, as check() reports it.
    for (std::size_t id = 0; id < t.names.size(); ++id) {
        if (t.used_as_value[id] && values[id] && !value_is_valid(*values[id])) {
            const auto& use = t.first_value_use[id];
            err = {use.part, use.line, use.column,
                   fmt::format("the value of `{}` is not valid UTF-8 or holds NUL", t.names[id])};
            return failed(errc::invalid_argument);
        }
    }
    rendered_template out;
    renderer r(t, values, seed, err);
    if (auto ec = r.part(template_part::subject, out.subject)) return failed(ec);
    if (auto ec = r.part(template_part::text, out.text)) return failed(ec);
    if (auto ec = r.part(template_part::html, out.html)) return failed(ec);
    return out;
}

namespace tpl {

void append_html_escaped(std::string& out, std::string_view v) {
    std::size_t run = 0;
    for (std::size_t i = 0; i < v.size(); ++i) {
        std::string_view entity;
        switch (v[i]) {
            case '&':
                entity = "&amp;";
                break;
            case '<':
                entity = "&lt;";
                break;
            case '>':
                entity = "&gt;";
                break;
            case '"':
                entity = "&quot;";
                break;
            case '\'':
                entity = "&#39;";
                break;
            default:
                continue;
        }
        out.append(v.substr(run, i - run));
        out.append(entity);
        run = i + 1;
    }
    out.append(v.substr(run));
}

}  // namespace tpl

}  // namespace mailers
