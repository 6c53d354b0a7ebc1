// libFuzzer entry for message templates (built by scripts/fuzz).
//
// The input is up to four NUL-separated pieces: subject, text and HTML
// sources, then bytes that become one of the variable values (NUL is never
// valid in a template, so splitting on it loses nothing). Beyond "does not
// crash":
// - a compile error has a message and, unless it is about the size, a position;
// - rendering succeeds for a seed exactly when check() is ok (reserved
//   variables supplied), and the same seed renders the same bytes twice;
// - a rendered subject holds no CR or LF, and every part is valid UTF-8;
// - a template recompiled from its source renders the same.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mailers/template.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "mime/text.hpp"

namespace {

// The failing line goes to the log, since every invariant aborts alike.
void check(bool ok, int line = __builtin_LINE()) {
    if (ok) return;
    std::fprintf(stderr, "fuzz_template: invariant at line %d broken\n", line);
    std::abort();
}

std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string_view pieces[4];
    for (int i = 0; i < 3; ++i) {
        const auto nul = in.find('\0');
        pieces[i] = in.substr(0, nul);
        if (nul == std::string_view::npos) {
            in = {};
            break;
        }
        in.remove_prefix(nul + 1);
    }
    pieces[3] = in;

    mailers::template_error err;
    auto compiled = mailers::message_template::compile(
        {std::string(pieces[0]), std::string(pieces[1]), std::string(pieces[2])}, &err);
    if (!compiled) {
        check(compiled.error() == mailers::make_error_code(mailers::errc::invalid_argument));
        check(!err.message.empty());
        check(err.line >= 1 || err.message.find("limit") != std::string::npos);
        if (err.line >= 1) check(err.column >= 1);
        return 0;
    }
    const auto& t = *compiled;

    const std::uint64_t salt = mix(size);
    const std::string choices[] = {
        "",
        " \t",
        "Ada",
        "a\r\nb \n",
        "<&>\"'",
        "\xff",
        std::string("x\0y", 3),
        "Zoë",
        std::string(pieces[3]),
    };
    mailers::template_variables vars;
    const auto names = t.variables();
    for (std::size_t i = 0; i < names.size(); ++i) {
        const std::uint64_t pick = mix(salt + i) % (std::size(choices) + 1);
        if (pick < std::size(choices)) vars[names[i]] = choices[pick];
    }
    const auto required = t.required_variables();
    for (const auto& r : required) check(!mailers::is_reserved_template_variable(r));
    const auto verdict = t.check(vars);
    for (const auto& n : verdict.missing) check(!mailers::is_reserved_template_variable(n));

    for (auto reserved : mailers::reserved_template_variables) vars[std::string(reserved)] = "u";
    const auto again = mailers::message_template::compile(t.source());
    check(again.has_value());

    bool all_rendered = true;
    bool too_large = false;
    for (std::uint64_t k = 0; k < 4; ++k) {
        const std::uint64_t seed = mix(salt ^ k);
        mailers::template_error rerr;
        const auto r = t.render(vars, seed, &rerr);
        if (!r) {
            check(!rerr.message.empty());
            too_large |= r.error() == mailers::make_error_code(mailers::errc::message_too_large);
            all_rendered = false;
            continue;
        }
        check(r->subject.find_first_of("\r\n") == std::string::npos);
        check(mailers::mime::is_valid_utf8(r->subject));
        check(mailers::mime::is_valid_utf8(r->text));
        check(mailers::mime::is_valid_utf8(r->html));
        const auto twice = t.render(vars, seed);
        check(twice.has_value() && *twice == *r);
        const auto other = again->render(vars, seed);
        check(other.has_value() && *other == *r);
    }
    // check() speaks for every seed: when it is ok every render succeeds; when
    // a value is invalid or a variable outside spintax is missing, none does.
    if (!too_large && verdict.ok()) check(all_rendered);
    if (!verdict.invalid.empty()) check(!all_rendered);
    return 0;
}
