// Message templates: subject, text and HTML parts with variables, fallbacks,
// optional sections and spintax, compiled once and rendered per recipient.
//
//     auto t = mailers::message_template::compile({
//         .subject = "{Quick question|A thought} for {{company|your team}}",
//         .text = "{Hi|Hello} {{first_name|there}},\n...",
//         .html = "<p>{Hi|Hello} {{first_name|there}},</p>...",
//     });
//     auto seed = mailers::template_seed(enrollment_id, step);
//     auto out = t->render(vars, seed);  // out->subject, out->text, out->html
//
// Syntax (docs/templates.md is the full reference):
//
//     {{name}}              the variable's value; HTML-escaped in the HTML part
//     {{name|fallback}}     the fallback when the variable is absent or blank
//     {{&name}}             the value unescaped (raw) in the HTML part
//     {{#name}}...{{/name}} rendered when the variable is present
//     {{^name}}...{{/name}} rendered when the variable is absent or blank
//     {{! comment }}        renders nothing
//     {a|b|c}               spintax: one alternative, chosen from the seed
//     \{  \}  \|            a literal brace or bar
//
// A `{` is spintax only when a matching `}` closes it and at least one `|`
// sits directly inside; any other brace or bar is literal text, so CSS rules
// need no escaping. In the HTML part the content of <style> and <script>
// elements is never spintax, so stylesheets and JSON-LD survive whatever
// they hold. `{{` always opens a tag; `\{{` writes a literal "{{".
//
// Rendering is pure and deterministic: the same template, variables and
// seed give the same bytes on every run, machine and build.
#pragma once

#include <array>
#include <boost/system/result.hpp>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mailers/config.hpp>
#include <mailers/error.hpp>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mailers {

/// The source of a template, one UTF-8 string per part. Any part may be
/// empty; an empty part renders empty.
struct template_source {
    std::string subject;
    std::string text;
    std::string html;
    friend bool operator==(const template_source&, const template_source&) = default;
};

/// Which part of a template an error is about.
enum class template_part { subject, text, html };

/// "subject", "text" or "html".
MAILERS_API std::string_view to_string(template_part p) noexcept;

/// Where and why compiling or rendering failed.
struct template_error {
    template_part part = template_part::subject;
    std::size_t line = 0;    ///< 1-based; 0 when the error has no position
    std::size_t column = 0;  ///< 1-based, in characters (code points), a tab counts one
    std::string message;     ///< what was wrong or expected: "expected `}}` to close the tag"

    /// "html, line 3, column 14: expected `}}` to close the tag"
    MAILERS_API std::string to_string() const;
};

/// Variable values by name. Values must be UTF-8 without NUL bytes.
using template_variables = std::map<std::string, std::string, std::less<>>;

/// A rendered template; the fields match `message`'s.
struct rendered_template {
    std::string subject;  ///< never holds CR or LF
    std::string text;
    std::string html;
    friend bool operator==(const rendered_template&, const rendered_template&) = default;
};

/// What a set of variables lacks for a template, as found by
/// `message_template::check()`.
struct variable_check {
    /// Variables some render would need (whatever the seed) that are absent
    /// or blank and have no fallback there. Sorted, each once.
    std::vector<std::string> missing;
    /// Variables the template uses whose value is not UTF-8 or holds NUL.
    /// Sorted, each once.
    std::vector<std::string> invalid;

    bool ok() const noexcept { return missing.empty() && invalid.empty(); }
    /// "missing variables: company, first_name; not valid UTF-8: city", or
    /// "" when ok().
    MAILERS_API std::string to_string() const;
};

/// Largest source accepted for one part, in bytes.
inline constexpr std::size_t max_template_part_size = std::size_t{1} << 20;
/// Deepest nesting of sections, spintax groups and literal braces. Bounds
/// the recursion of compiling and rendering whatever the input.
inline constexpr std::size_t max_template_depth = 32;
/// Longest variable name, in bytes.
inline constexpr std::size_t max_template_variable_name_size = 128;
/// Largest rendered part, in bytes; a larger one fails with
/// errc::message_too_large.
inline constexpr std::size_t max_rendered_part_size = std::size_t{16} << 20;

/// Variables the engine supplies at send time. Templates use them like any
/// other; `check()` and `required_variables()` never report them, since an
/// enrollment does not provide them.
///
/// - `unsubscribe_url`: the recipient's unsubscribe link, built from the
///   workspace's settings (the same URL as the RFC 8058 List-Unsubscribe
///   header).
inline constexpr std::array<std::string_view, 1> reserved_template_variables = {"unsubscribe_url"};

/// True for the names in `reserved_template_variables`.
MAILERS_API bool is_reserved_template_variable(std::string_view name) noexcept;

/// A stable seed for one enrollment's step: a 64-bit hash of the enrollment
/// id's bytes and the step number. Fixed by this library's documentation,
/// not by the standard library, so a restarted or upgraded process renders
/// the same spintax choices.
MAILERS_API std::uint64_t template_seed(std::string_view enrollment_id,
                                        std::uint64_t step) noexcept;

/// A compiled template. Compile once (when the template is saved), then
/// render many times without parsing again.
///
/// Copies are cheap and share the compiled form, which never changes.
/// Const member functions may be called from several threads at once.
class MAILERS_API message_template {
public:
    /// An empty template: every part renders empty.
    message_template();

    /// Parses and validates all three parts. On error returns
    /// errc::invalid_argument and, when `error` is given, fills it with the
    /// part, line and column of the first problem and what was expected
    /// there. Sources larger than `max_template_part_size`, invalid UTF-8,
    /// NUL bytes, and CR or LF in the subject are errors.
    static boost::system::result<message_template> compile(template_source source,
                                                           template_error* error = nullptr);

    /// The parts as given to compile().
    const template_source& source() const noexcept;

    /// Every variable the template refers to, in values and in section tags,
    /// sorted, each once, reserved names included.
    std::vector<std::string> variables() const;

    /// Variables every render needs: used without a fallback outside any
    /// section. Sorted, each once, reserved names excluded. A variable used
    /// only inside a section is needed only when that section renders;
    /// `check()` takes that into account.
    std::vector<std::string> required_variables() const;

    /// What `vars` lacks for this template: rendering with `vars` plus the
    /// reserved variables succeeds for every seed exactly when the result
    /// is ok() (barring `max_rendered_part_size`). Sections are decided by
    /// `vars`; every alternative of a spintax group counts, since the seed
    /// may choose any.
    variable_check check(const template_variables& vars) const;

    /// Renders the three parts. Spintax choices are a function of `seed`
    /// and each group's place in the template (see `template_seed()`).
    ///
    /// Fails with errc::invalid_argument when a variable used without a
    /// fallback is absent or blank, or a value the template uses is not
    /// UTF-8 or holds NUL; with errc::message_too_large when a part would
    /// exceed `max_rendered_part_size`. `error`, when given, says which
    /// variable and where it is used. In the subject, every line break in a
    /// value, with the spaces and tabs around it, becomes one space.
    boost::system::result<rendered_template> render(const template_variables& vars,
                                                    std::uint64_t seed,
                                                    template_error* error = nullptr) const;

private:
    struct impl;
    explicit message_template(std::shared_ptr<const impl> p) noexcept;
    std::shared_ptr<const impl> impl_;
};

}  // namespace mailers
