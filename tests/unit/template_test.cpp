#include <doctest/doctest.h>

#include <cstdint>
#include <mailers/template.hpp>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

using namespace mailers;

namespace {

message_template compile_ok(template_source src) {
    template_error err;
    auto r = message_template::compile(src, &err);
    REQUIRE_MESSAGE(r.has_value(), err.to_string());
    return *r;
}

message_template compile_part(template_part part, std::string_view source) {
    template_source src;
    (part == template_part::subject ? src.subject
     : part == template_part::text  ? src.text
                                    : src.html) = source;
    return compile_ok(std::move(src));
}

const std::string& part_of(const rendered_template& r, template_part part) {
    return part == template_part::subject ? r.subject
           : part == template_part::text  ? r.text
                                          : r.html;
}

std::string render_part(template_part part, std::string_view source,
                        const template_variables& vars = {}, std::uint64_t seed = 0) {
    const auto t = compile_part(part, source);
    template_error err;
    auto r = t.render(vars, seed, &err);
    REQUIRE_MESSAGE(r.has_value(), source, " -> ", err.to_string());
    return part_of(*r, part);
}

std::string text(std::string_view source, const template_variables& vars = {},
                 std::uint64_t seed = 0) {
    return render_part(template_part::text, source, vars, seed);
}
std::string html(std::string_view source, const template_variables& vars = {},
                 std::uint64_t seed = 0) {
    return render_part(template_part::html, source, vars, seed);
}
std::string subject(std::string_view source, const template_variables& vars = {},
                    std::uint64_t seed = 0) {
    return render_part(template_part::subject, source, vars, seed);
}

template_error compile_error(template_part part, std::string_view source) {
    template_source src;
    (part == template_part::subject ? src.subject
     : part == template_part::text  ? src.text
                                    : src.html) = source;
    template_error err;
    auto r = message_template::compile(src, &err);
    REQUIRE_MESSAGE(!r.has_value(), source);
    CHECK(r.error() == make_error_code(errc::invalid_argument));
    CHECK(err.part == part);
    return err;
}

struct valid_case {
    template_part part;
    std::string_view source;
    template_variables vars;
    std::string_view expected;
};

struct invalid_case {
    template_part part;
    std::string source;
    std::size_t line, column;
    std::string_view message;  ///< a part of the message
};

constexpr auto S = template_part::subject;
constexpr auto T = template_part::text;
constexpr auto H = template_part::html;

}  // namespace

TEST_CASE("valid templates render as the table says") {
    const valid_case cases[] = {
        // Plain text and values.
        {T, "", {}, ""},
        {T, "Hello", {}, "Hello"},
        {T, "Hi {{first_name}},", {{"first_name", "Ada"}}, "Hi Ada,"},
        {T, "Hi {{ first_name }},", {{"first_name", "Ada"}}, "Hi Ada,"},
        {T, "{{a}}{{b}}{{a}}", {{"a", "1"}, {"b", "2"}}, "121"},
        {T, "{{user.first-name_2}}", {{"user.first-name_2", "x"}}, "x"},
        {T, "{{a}}}", {{"a", "1"}}, "1}"},
        {T, "Hi {{first_name}}", {{"first_name", " Ada "}}, "Hi  Ada "},
        // Fallbacks: absent or blank values take them.
        {T, "Hi {{first_name|there}},", {}, "Hi there,"},
        {T, "Hi {{first_name|there}},", {{"first_name", ""}}, "Hi there,"},
        {T, "Hi {{first_name|there}},", {{"first_name", " \t\r\n"}}, "Hi there,"},
        {T, "Hi {{first_name|there}},", {{"first_name", "Ada"}}, "Hi Ada,"},
        {T, "Hi {{ first_name | there friend }},", {}, "Hi there friend,"},
        {T, "{{title|}}Ada", {}, "Ada"},
        {T, "{{a|x|y}}", {}, "x|y"},
        {T, "{{a|x}y}}", {}, "x}y"},
        {T, "{{a|{b|c}}}", {}, "{b|c}"},
        // No escaping outside the HTML part.
        {T, "{{v}}", {{"v", "<b>&\"'"}}, "<b>&\"'"},
        {T, "{{&v}}", {{"v", "<b>"}}, "<b>"},
        {S, "{{v}}", {{"v", "<b>&"}}, "<b>&"},
        // HTML escaping, raw on request, fallbacks escaped like values.
        {H, "<p>{{v}}</p>", {{"v", "<b>&\"'x"}}, "<p>&lt;b&gt;&amp;&quot;&#39;x</p>"},
        {H, "<p>{{&v}}</p>", {{"v", "<b>&amp;</b>"}}, "<p><b>&amp;</b></p>"},
        {H, "<p>{{ & v }}</p>", {{"v", "<i>"}}, "<p><i></p>"},
        {H, "{{company|Smith & Co}}", {}, "Smith &amp; Co"},
        {H, "{{&company|<b>us</b>}}", {}, "<b>us</b>"},
        {H,
         "<a href=\"{{unsubscribe_url}}\">x</a>",
         {{"unsubscribe_url", "https://u.example/?a=1&b=\"2\""}},
         "<a href=\"https://u.example/?a=1&amp;b=&quot;2&quot;\">x</a>"},
        {H, "<b>&amp; literal</b>", {}, "<b>&amp; literal</b>"},
        // Sections.
        {T, "{{#vip}}VIP {{/vip}}Ada", {{"vip", "yes"}}, "VIP Ada"},
        {T, "{{#vip}}VIP {{/vip}}Ada", {}, "Ada"},
        {T, "{{#vip}}VIP {{/vip}}Ada", {{"vip", "  "}}, "Ada"},
        {T, "{{# vip }}VIP {{/ vip }}Ada", {{"vip", "1"}}, "VIP Ada"},
        {T, "{{^first_name}}Hello there{{/first_name}}", {}, "Hello there"},
        {T, "{{^first_name}}Hello there{{/first_name}}", {{"first_name", "Ada"}}, ""},
        {T, "{{#a}}A{{#b}}B{{/b}}{{^b}}!{{/b}}{{/a}}", {{"a", "1"}, {"b", "1"}}, "AB"},
        {T, "{{#a}}A{{#b}}B{{/b}}{{^b}}!{{/b}}{{/a}}", {{"a", "1"}}, "A!"},
        {T, "{{#a}}{{#a}}twice{{/a}}{{/a}}", {{"a", "1"}}, "twice"},
        {T, "{{#code}}Code: {{code}}{{/code}}", {{"code", "X1"}}, "Code: X1"},
        {T, "{{#code}}Code: {{code}}{{/code}}", {}, ""},
        // Comments.
        {T, "{{! a comment }}x{{!}}", {}, "x"},
        {T, "{{!{not|spintax}}}", {}, "}"},
        // Escapes.
        {T, "\\{a|b\\}", {}, "{a|b}"},
        {T, "{a\\|b}", {}, "{a|b}"},
        {T, "a \\| b", {}, "a | b"},
        {T, "\\{{name}}", {{"name", "Ada"}}, "{{name}}"},
        {T, "\\{{{name}}\\}", {{"name", "Ada"}}, "{Ada}"},
        {T, "C:\\Users\\n", {}, "C:\\Users\\n"},
        {S, "\\{not spintax|really\\}", {}, "{not spintax|really}"},
        // Braces and bars that are not spintax stay as written.
        {T, "{not spintax}", {}, "{not spintax}"},
        {T, "a } b | c {", {}, "a } b | c {"},
        {T, "{a|b", {}, "{a|b"},
        {T, "x}|{y", {}, "x}|{y"},
        {T, "{ {{name}} }", {{"name", "Ada"}}, "{ Ada }"},
        {T, "{{#s}}{a{{/s}}|b}", {{"s", "1"}}, "{a|b}"},
        {T, "{a {{#s}}b|c{{/s}} }", {{"s", "1"}}, "{a b|c }"},
        {T, "function(){ return {x: 1}; }", {}, "function(){ return {x: 1}; }"},
        {T, "\\{\"a\": \"x|y\"}", {}, "{\"a\": \"x|y\"}"},
        {H,
         "body { margin: 0 } @media (max-width:600px){.a{width:100%!important}}",
         {},
         "body { margin: 0 } @media (max-width:600px){.a{width:100%!important}}"},
        // <style> and <script> content is never spintax; values still work.
        {H, "<style>a|b { x: y } .c{d:e|f}</style>", {}, "<style>a|b { x: y } .c{d:e|f}</style>"},
        {H,
         "<STYLE type=\"text/css\">.a{b:c|d}</Style>",
         {},
         "<STYLE type=\"text/css\">.a{b:c|d}</Style>"},
        {H,
         "<style>.a{color:{{color}}}</style>",
         {{"color", "red"}},
         "<style>.a{color:red}</style>"},
        {H,
         "<script type=\"application/ld+json\">{\"@type\": \"EmailMessage\", \"description\": "
         "\"A | B\"}</script>",
         {},
         "<script type=\"application/ld+json\">{\"@type\": \"EmailMessage\", \"description\": "
         "\"A | B\"}</script>"},
        {H,
         "<script>if (a || b) { f({x|y}) }</script>",
         {},
         "<script>if (a || b) { f({x|y}) }</script>"},
        {H, "<style>{a|b}</style>{only|only}", {}, "<style>{a|b}</style>only"},
        // Spintax with one possible outcome.
        {T, "{same|same|same}", {}, "same"},
        {T, "{Hi|Hi} {{name}}", {{"name", "Ada"}}, "Hi Ada"},
        {T, "{{{name}}|{{name}}}", {{"name", "Ada"}}, "Ada"},
        {T, "{{{n|there}}|{{n|there}}}", {}, "there"},
        {S, "Re: {{company|you}}", {}, "Re: you"},
        // Positions count code points, not bytes; non-ASCII text passes through.
        {T, "Grüße, {{name}} — 👋", {{"name", "Zoë"}}, "Grüße, Zoë — 👋"},
        {H, "{{name}}", {{"name", "Zoë & 李"}}, "Zoë &amp; 李"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.source);
        CHECK(render_part(c.part, c.source, c.vars) == c.expected);
    }
}

TEST_CASE("invalid templates name the part, line and column of the first problem") {
    const invalid_case cases[] = {
        {T, "Hi {{first_name", 1, 4, "expected `}}` to close this tag"},
        {T, "Hi {{first_name\n}}", 1, 4, "before the end of the line"},
        {T, "Hi {{first_name\n", 1, 4, "before the end of the line"},
        {T, "{{", 1, 1, "expected `}}` to close this tag"},
        {T, "{{a}", 1, 1, "expected `}}` to close this tag"},
        {T, "Hi {{first_name {{b}}", 1, 4, "before the next `{{`"},
        {T, "x\ny {{b", 2, 3, "expected `}}`"},
        {T, "{{}}", 1, 3, "expected a variable name"},
        {T, "{{ }}", 1, 4, "expected a variable name"},
        {T, "{{#}}", 1, 4, "expected a variable name"},
        {H, "{{&}}", 1, 4, "expected a variable name"},
        {T, "{{first name}}", 1, 9, "expected `|` or `}}` after the name, found `n`"},
        {T, "{{naéme}}", 1, 5, "found `é`"},
        {T, "é{{x", 1, 2, "expected `}}`"},
        {T, "{{#a|x}}b{{/a}}", 1, 5, "a section tag takes no fallback"},
        {T, "{{/a|x}}", 1, 5, "a section tag takes no fallback"},
        {T, "ok\n  {{#a}}x", 2, 3, "section `{{#a}}` is never closed: expected `{{/a}}`"},
        {T, "{{^a}}x", 1, 1, "section `{{^a}}` is never closed"},
        {T, "x\n{{/a}}", 2, 1, "`{{/a}}` closes no open section"},
        {T, "{{#a}}\n  {{/b}}", 2, 3,
         "expected `{{/a}}` to close the section opened at line 1, column 1, found `{{/b}}`"},
        {T, "{{#a}}{{#b}}{{/a}}{{/b}}", 1, 13, "expected `{{/b}}`"},
        {H, "<p>{{{name}}}</p>", 1, 4, "`{{{name}}}` is not raw output here: write `{{&name}}`"},
        {H, "<style>{{{css}}}</style>", 1, 8, "is not raw output"},
        {S, "Hello\nWorld", 1, 6, "the subject must be one line"},
        {S, "Hello\rWorld", 1, 6, "the subject must be one line"},
        {T, "a\xff", 1, 2, "invalid UTF-8"},
        {H, "ok\n\xc3\x28", 2, 1, "invalid UTF-8"},
        {T, "\xed\xa0\x80", 1, 1, "invalid UTF-8"},
        {T, std::string("a\0b", 3), 1, 2, "NUL"},
        {T, "{{" + std::string(max_template_variable_name_size + 1, 'a') + "}}", 1, 3,
         "a variable name is at most"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.source);
        const auto err = compile_error(c.part, c.source);
        CHECK(err.line == c.line);
        CHECK(err.column == c.column);
        CHECK_MESSAGE(err.message.find(c.message) != std::string::npos, err.message);
    }
}

TEST_CASE("an error reads as one sentence with its position") {
    const auto err = compile_error(H, "<p>\n  {{first_name</p>");
    CHECK(err.to_string() == "html, line 2, column 3: expected `}}` to close this tag");
    const auto big = compile_error(T, std::string(max_template_part_size + 1, 'a'));
    CHECK(big.line == 0);
    CHECK(big.to_string() == "text: the text part is 1048577 bytes; the limit is 1048576");
}

TEST_CASE("the first part in error is reported") {
    template_error err;
    auto r = message_template::compile({.subject = "ok", .text = "{{a", .html = "{{b"}, &err);
    REQUIRE(!r);
    CHECK(err.part == T);
    CHECK(err.to_string().starts_with("text, line 1, column 1"));
}

TEST_CASE("limits: part size and nesting depth") {
    // The largest part compiles.
    CHECK(text(std::string(max_template_part_size, 'a')).size() == max_template_part_size);

    std::string nested;
    for (std::size_t i = 0; i < max_template_depth; ++i) nested += "{{#a}}";
    nested += "x";
    for (std::size_t i = 0; i < max_template_depth; ++i) nested += "{{/a}}";
    CHECK(text(nested, {{"a", "1"}}) == "x");
    const auto too_deep = compile_error(T, "{{#a}}" + nested + "{{/a}}");
    CHECK(too_deep.message.find("nesting deeper than 32 levels") != std::string::npos);
    CHECK(too_deep.column == 1 + 6 * max_template_depth);

    // Braces count too, spintax or literal, so no input nests deeper.
    std::string groups;
    for (std::size_t i = 0; i < max_template_depth; ++i) groups += "{a|";
    groups += "b";
    for (std::size_t i = 0; i < max_template_depth; ++i) groups += "}";
    const auto r = text(groups, {}, 7);
    CHECK((r == "a" || r == "b"));
    CHECK(compile_error(T, "{a|" + groups + "}").message.find("nesting") != std::string::npos);
    std::string braces;
    for (std::size_t i = 0; i <= max_template_depth; ++i) braces += "{ ";
    CHECK(compile_error(T, braces).column == 2 * max_template_depth + 1);

    // Many shallow constructs are fine, whatever the count.
    std::string wide;
    for (int i = 0; i < 20000; ++i) wide += "{a|b}{c} } | {{#s}}{{/s}}";
    CHECK(!text(wide, {}, 1).empty());
}

TEST_CASE("a rendered part larger than the limit is refused") {
    std::string source;
    for (int i = 0; i < 17; ++i) source += "{{v}}";
    const auto t = compile_part(T, source);
    template_error err;
    auto r = t.render({{"v", std::string(std::size_t{1} << 20, 'x')}}, 0, &err);
    REQUIRE(!r);
    CHECK(r.error() == make_error_code(errc::message_too_large));
    CHECK(err.part == T);
    CHECK(t.render({{"v", std::string(std::size_t{1} << 19, 'x')}}, 0).has_value());
}

TEST_CASE("line breaks in subject values fold to one space") {
    CHECK(subject("Re: {{company}}", {{"company", "Acme\r\nInc"}}) == "Re: Acme Inc");
    CHECK(subject("Re: {{company}}", {{"company", "Acme \n\n\t Inc\n"}}) == "Re: Acme Inc ");
    CHECK(subject("Re: {{company}}", {{"company", "Acme\rInc"}}) == "Re: Acme Inc");
    CHECK(subject("Re:{{company}}", {{"company", "\r\nBcc: x@y.example"}}) ==
          "Re: Bcc: x@y.example");
    CHECK(subject("{{&company}}!", {{"company", "a\nb"}}) == "a b!");
    // Only the subject folds; bodies keep their lines.
    CHECK(text("{{company}}", {{"company", "Acme\r\nInc"}}) == "Acme\r\nInc");
    CHECK(html("{{company}}", {{"company", "Acme\nInc"}}) == "Acme\nInc");
    // A tab in the subject's own text is kept.
    CHECK(subject("a\tb") == "a\tb");
}

TEST_CASE("values must be UTF-8 without NUL") {
    const auto t = compile_ok({.subject = "{{a|x}}", .text = "{b|{{c}}}", .html = "{{#d}}{{/d}}"});
    for (const auto& bad : {std::string("\xff"), std::string("ok\xc3"), std::string("a\0b", 3),
                            std::string("\xed\xa0\x80")}) {
        template_error err;
        auto r = t.render({{"a", bad}, {"c", "ok"}}, 0, &err);
        REQUIRE(!r);
        CHECK(r.error() == make_error_code(errc::invalid_argument));
        CHECK(err.part == S);
        CHECK(err.line == 1);
        CHECK(err.column == 1);
        CHECK(err.message == "the value of `a` is not valid UTF-8 or holds NUL");
        CHECK(t.check({{"a", bad}, {"c", "ok"}}).invalid == std::vector<std::string>{"a"});
    }
    // Whichever alternative the seed picks, a bad value in any of them fails.
    for (std::uint64_t seed = 0; seed < 8; ++seed)
        CHECK(!t.render({{"c", "\xff"}}, seed).has_value());
    // A section name's value is never printed, so it is not checked.
    CHECK(t.render({{"c", "ok"}, {"d", "\xff"}}, 0).has_value());
    CHECK(t.check({{"c", "ok"}, {"d", "\xff"}}).ok());
}

TEST_CASE("missing variables: required_variables, check and render agree") {
    const auto t = compile_ok({
        .subject = "{{company|you}}",
        .text = "Hi {{first_name}} {{#vip}}{{code}}{{/vip}} {Hi|Hey {{nick}}}",
        .html = "{{^first_name}}{{greeting}}{{/first_name}}<a href=\"{{unsubscribe_url}}\">x</a>",
    });
    CHECK(t.variables() == std::vector<std::string>{"code", "company", "first_name", "greeting",
                                                    "nick", "unsubscribe_url", "vip"});
    CHECK(t.required_variables() == std::vector<std::string>{"first_name", "nick"});

    auto c = t.check({});
    CHECK(c.missing == std::vector<std::string>{"first_name", "greeting", "nick"});
    CHECK(!c.ok());
    CHECK(c.to_string() == "missing variables: first_name, greeting, nick");

    c = t.check({{"first_name", "Ada"}, {"vip", "1"}});
    CHECK(c.missing == std::vector<std::string>{"code", "nick"});

    c = t.check({{"first_name", "Ada"}, {"nick", "A"}});
    CHECK(c.ok());
    CHECK(c.to_string().empty());

    c = t.check({{"first_name", "  "}, {"nick", "\xff"}, {"greeting", "Hi"}});
    CHECK(c.missing == std::vector<std::string>{"first_name"});
    CHECK(c.invalid == std::vector<std::string>{"nick"});
    CHECK(c.to_string() == "missing variable: first_name; not valid UTF-8 or holding NUL: nick");

    // The reserved variable is needed to render, never reported by check,
    // not even with a bad value: the engine replaces it.
    CHECK(t.check({{"first_name", "Ada"}, {"nick", "A"}, {"unsubscribe_url", "\xff"}}).ok());
    template_error err;
    auto r = t.render({{"first_name", "Ada"}, {"nick", "A"}}, 0, &err);
    REQUIRE(!r);
    CHECK(r.error() == make_error_code(errc::invalid_argument));
    CHECK(err.to_string() ==
          "html, line 1, column 52: variable `unsubscribe_url` is missing and has no fallback");

    r = t.render({{"first_name", "Ada"}, {"nick", "A"}, {"unsubscribe_url", "https://u/1"}}, 0);
    REQUIRE(r.has_value());
    CHECK(r->subject == "you");
    CHECK(r->html == "<a href=\"https://u/1\">x</a>");

    // A blank value is as missing as an absent one, and says so.
    r = t.render({{"first_name", " "}, {"greeting", "x"}, {"nick", "A"}}, 0, &err);
    REQUIRE(!r);
    CHECK(err.to_string() ==
          "text, line 1, column 4: variable `first_name` is blank and has no "
          "fallback");
}

TEST_CASE("render succeeds for every seed exactly when check() is ok") {
    const auto t = compile_ok({
        .subject = "{A|B {{x}}}",
        .text = "{{#s}}{{y}}{{/s}}{{^s}}{C|{{z|zz}}}{{/s}}",
        .html = "{{&w|}}",
    });
    const std::vector<std::string> names = {"x", "y", "z", "s", "w"};
    const std::vector<std::string> values = {"", " ", "v", "\xff"};
    // Every assignment of those values to those names.
    std::size_t combos = 1;
    for (std::size_t i = 0; i < names.size(); ++i) combos *= values.size() + 1;
    for (std::size_t k = 0; k < combos; ++k) {
        template_variables vars;
        std::size_t code = k;
        for (const auto& n : names) {
            const std::size_t v = code % (values.size() + 1);
            code /= values.size() + 1;
            if (v < values.size()) vars[n] = values[v];
        }
        const bool ok = t.check(vars).ok();
        bool all_render = true;
        for (std::uint64_t seed = 0; seed < 16; ++seed)
            all_render &= t.render(vars, seed).has_value();
        CHECK(ok == all_render);
    }
}

TEST_CASE("template_seed is a fixed function") {
    // FNV-1a 64 over the id, then splitmix64 (docs/templates.md spells it
    // out); these values must never change.
    CHECK(template_seed("", 0) == 0x5b21f68ffa77f14cULL);
    CHECK(template_seed("enr-1", 0) == 0xd4b6cfe9decedc87ULL);
    CHECK(template_seed("enr-1", 1) == 0x71b48ef07aa1b110ULL);
    CHECK(template_seed("01HZX3K9Q2W7", 3) == 0xcc168ea236285577ULL);
    CHECK(template_seed("enr-1", 0) != template_seed("enr-2", 0));
}

TEST_CASE("spintax is deterministic: golden renders") {
    const auto t = compile_ok({
        .subject = "{Quick question|A thought|Idea} for {{company|your team}}",
        .text = "{Hi|Hello|Hey} {{first_name|there}},\n{I {saw|noticed}|Saw} your post.",
        .html = "<p>{Hi|Hello|Hey} {{first_name|there}}</p>",
    });
    const template_variables vars = {{"first_name", "Ada"}, {"company", "Acme"}};
    const auto r1 = t.render(vars, template_seed("enr-1", 0));
    const auto r2 = t.render(vars, template_seed("enr-1", 1));
    REQUIRE(r1.has_value());
    REQUIRE(r2.has_value());
    CHECK(r1->subject == "A thought for Acme");
    CHECK(r1->text == "Hi Ada,\nI noticed your post.");
    CHECK(r1->html == "<p>Hello Ada</p>");
    CHECK(r2->subject == "Idea for Acme");
    CHECK(r2->text == "Hi Ada,\nSaw your post.");

    // The same inputs give the same bytes, through copies and recompiles.
    const message_template copy = t;
    const auto again = message_template::compile(t.source());
    REQUIRE(again.has_value());
    for (std::uint64_t seed = 0; seed < 200; ++seed) {
        const auto a = t.render(vars, seed).value();
        CHECK(a == copy.render(vars, seed).value());
        CHECK(a == again->render(vars, seed).value());
    }
}

TEST_CASE("spintax: across seeds every alternative appears, evenly") {
    const auto t = compile_part(T, "{a|b|c|d}");
    std::map<std::string, int> counts;
    for (int i = 0; i < 4000; ++i)
        ++counts[t.render({}, template_seed("enrollment-" + std::to_string(i), 0))->text];
    REQUIRE(counts.size() == 4);
    for (const auto& [alt, n] : counts) {
        CAPTURE(alt);
        CHECK(n > 850);
        CHECK(n < 1150);
    }

    // Steps of one enrollment vary too.
    std::set<std::string> seen;
    for (std::uint64_t step = 0; step < 64; ++step)
        seen.insert(t.render({}, template_seed("enr-1", step))->text);
    CHECK(seen.size() == 4);

    // Nested groups reach every leaf; empty alternatives are allowed.
    std::set<std::string> nested;
    for (std::uint64_t seed = 0; seed < 400; ++seed)
        nested.insert(text("{a|{b|c{d|e}}|}", {}, template_seed("x", seed)));
    CHECK(nested == std::set<std::string>{"", "a", "b", "cd", "ce"});
}

TEST_CASE("spintax: groups choose independently and do not move with sections") {
    const auto t = compile_part(T, "{{#x}}{p|q}{{/x}}{a|b|c|d|e|f|g|h}");
    const auto u = compile_part(T, "{a|b|c|d|e|f|g|h}{a|b|c|d|e|f|g|h}");
    bool differ = false;
    for (std::uint64_t seed = 0; seed < 100; ++seed) {
        const auto with = t.render({{"x", "1"}}, seed)->text;
        const auto without = t.render({}, seed)->text;
        REQUIRE(with.size() == 2);
        CHECK(with.substr(1) == without);
        const auto two = u.render({}, seed)->text;
        differ |= two[0] != two[1];
    }
    CHECK(differ);
    // The same group text in two parts is two groups.
    const auto p = compile_ok({.subject = "{a|b|c|d}", .text = "{a|b|c|d}"});
    bool parts_differ = false;
    for (std::uint64_t seed = 0; seed < 50; ++seed) {
        const auto r = p.render({}, seed);
        parts_differ |= r->subject != r->text;
    }
    CHECK(parts_differ);
}

TEST_CASE("spintax alternatives hold values, fallbacks and sections") {
    std::set<std::string> seen;
    for (std::uint64_t seed = 0; seed < 100; ++seed)
        seen.insert(html("{Hi {{name|there}}|{{{name}}|friend}, {{#vip}}VIP{{/vip}}}",
                         {{"name", "<A>"}, {"vip", "1"}}, seed));
    CHECK(seen == std::set<std::string>{"Hi &lt;A&gt;", "&lt;A&gt;, VIP", "friend, VIP"});
    seen.clear();
    for (std::uint64_t seed = 0; seed < 100; ++seed)
        seen.insert(
            html("{Hi {{name|there}}|{{&name}}!|{{#vip}}VIP{{/vip}}}", {{"name", "<A>"}}, seed));
    CHECK(seen == std::set<std::string>{"Hi &lt;A&gt;", "<A>!", ""});
}

TEST_CASE("a real HTML email: CSS and JSON-LD survive, spintax and values render") {
    const std::string source = R"(<!doctype html>
<html><head>
<style type="text/css">
  body { margin: 0; padding: 0; }
  a[href^="tel"] { color: inherit; }
  @media only screen and (max-width: 600px) { .col { width: 100% !important; } }
</style>
<!--[if mso]><style>table {border-collapse: collapse;}</style><![endif]-->
<script type="application/ld+json">
{"@context": "http://schema.org", "@type": "EmailMessage",
 "potentialAction": {"@type": "ViewAction", "url": "{{&cta_url}}", "name": "Open | Now"}}
</script>
</head>
<body style="margin:0">
<p>{Hi|Hello} {{first_name|there}},</p>
<p>Example: \{"key": "a|b"\}</p>
<p><a href="{{unsubscribe_url}}">Unsubscribe</a></p>
</body></html>)";
    const auto t = compile_part(H, source);
    const template_variables vars = {{"first_name", "Ada & Bo"},
                                     {"cta_url", "https://x.example/a?b=1&c=2"},
                                     {"unsubscribe_url", "https://u.example/t?x=1&y=2"}};
    std::set<std::string> greetings;
    for (std::uint64_t seed = 0; seed < 32; ++seed) {
        const auto r = t.render(vars, seed);
        REQUIRE(r.has_value());
        const std::string& out = r->html;
        CHECK(out.find("  body { margin: 0; padding: 0; }\n") != std::string::npos);
        CHECK(out.find("{ .col { width: 100% !important; } }") != std::string::npos);
        CHECK(out.find("<style>table {border-collapse: collapse;}</style>") != std::string::npos);
        CHECK(out.find("\"url\": \"https://x.example/a?b=1&c=2\", \"name\": \"Open | Now\"}}") !=
              std::string::npos);
        CHECK(out.find("<p>Example: {\"key\": \"a|b\"}</p>") != std::string::npos);
        CHECK(out.find("href=\"https://u.example/t?x=1&amp;y=2\"") != std::string::npos);
        const auto p = out.find("<p>H");
        REQUIRE(p != std::string::npos);
        greetings.insert(out.substr(p, out.find(',', p) - p));
    }
    CHECK(greetings == std::set<std::string>{"<p>Hi Ada &amp; Bo", "<p>Hello Ada &amp; Bo"});
}

TEST_CASE("an empty template renders empty parts; source() returns what was compiled") {
    const message_template empty;
    const auto r = empty.render({}, 0);
    REQUIRE(r.has_value());
    CHECK(*r == rendered_template{});
    CHECK(empty.variables().empty());

    const template_source src{.subject = "s {{a}}", .text = "t", .html = "h"};
    CHECK(compile_ok(src).source() == src);
}

TEST_CASE("names of parts, reserved variables") {
    CHECK(to_string(template_part::subject) == "subject");
    CHECK(to_string(template_part::text) == "text");
    CHECK(to_string(template_part::html) == "html");
    CHECK(is_reserved_template_variable("unsubscribe_url"));
    CHECK(!is_reserved_template_variable("first_name"));
}
