// Sequence definitions: what is refused, when each step falls due, who
// sends it and how it threads.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <mailers/sequence.hpp>
#include <string>
#include <vector>

using namespace mailers;
using namespace std::chrono_literals;

namespace {

time_point utc(int y, unsigned mo, unsigned d, int h = 0, int mi = 0) {
    auto day =
        std::chrono::sys_days(std::chrono::year{y} / std::chrono::month{mo} / std::chrono::day{d});
    return time_point(std::chrono::duration_cast<duration>(
        day.time_since_epoch() + std::chrono::hours(h) + std::chrono::minutes(mi)));
}

sequence_step step(sequence_delay delay, std::string subject, std::string text, sender_rule sender,
                   step_threading threading = step_threading::new_thread) {
    sequence_step s;
    s.delay = delay;
    s.content.subject = std::move(subject);
    s.content.text = std::move(text);
    s.sender = std::move(sender);
    s.threading = threading;
    return s;
}

// rep1 (the owner) opens, the previous sender bumps in the same thread
// two business days later, the founder's mailbox follows up a week later.
sequence_config cross_identity() {
    sequence_config c;
    c.id = "outbound-q4";
    c.name = "Outbound Q4";
    c.steps.push_back(step({sequence_delay::unit::hours, 0}, "{Quick|Short} question, {{first_name}}",
                           "Hi {{first_name|there}}, ...\n{{unsubscribe_url}}",
                           {sender_rule_kind::owner, "", "sdr"}));
    c.steps.push_back(step({sequence_delay::unit::business_days, 2}, "",
                           "Bumping this, {{first_name}}.", {sender_rule_kind::previous_step, "", "sdr"},
                           step_threading::reply));
    c.steps.push_back(step({sequence_delay::unit::days, 7}, "From the founder of {{company}}",
                           "{{first_name}}, a note from me.", {sender_rule_kind::mailbox, "founder", ""}));
    return c;
}

sequence compile_ok(sequence_config c) {
    sequence_error err;
    auto s = sequence::compile(std::move(c), &err);
    REQUIRE_MESSAGE(s.has_value(), err.to_string());
    return *s;
}

enrolled_contact contact(std::string owner = "rep1") {
    enrolled_contact c;
    c.enrollment_id = "e-42";
    c.to = address{"ana", "prospect.example", {}};
    c.variables = {{"first_name", "Ana"},
                   {"company", "Acme"},
                   {"unsubscribe_url", "https://u.example/x"}};
    c.owner = std::move(owner);
    return c;
}

}  // namespace

TEST_CASE("a cross-identity sequence plans each step's sender, text and threading") {
    auto seq = compile_ok(cross_identity());
    CHECK(seq.size() == 3);
    CHECK(seq.required_variables() == std::vector<std::string>{"company", "first_name"});

    auto c = contact();
    auto first = seq.step_request(0, c, nullptr);
    REQUIRE(first.has_value());
    CHECK(first->mailbox == "rep1");
    CHECK(first->pool.empty());
    CHECK((first->subject == "Quick question, Ana" || first->subject == "Short question, Ana"));
    CHECK(first->idempotency_key == "seq:outbound-q4:e-42:1");
    CHECK(first->to == c.to);
    CHECK(first->in_reply_to.empty());
    // The same enrollment and step render the same text after a restart.
    CHECK(seq.step_request(0, c, nullptr)->subject == first->subject);

    previous_send prev{"rep1", "abc@brand.com", first->subject, {}};
    auto second = seq.step_request(1, c, &prev);
    REQUIRE(second.has_value());
    CHECK(second->mailbox == "rep1");
    CHECK(second->subject == "Re: " + first->subject);
    CHECK(second->in_reply_to == "abc@brand.com");
    CHECK(second->references == std::vector<std::string>{"abc@brand.com"});
    CHECK(second->idempotency_key == "seq:outbound-q4:e-42:2");

    previous_send prev2{"rep1", "def@brand.com", second->subject, second->references};
    auto third = seq.step_request(2, c, &prev2);
    REQUIRE(third.has_value());
    CHECK(third->mailbox == "founder");
    CHECK(third->subject == "From the founder of Acme");
    CHECK(third->in_reply_to.empty());
    CHECK(third->references.empty());
}

TEST_CASE("sender rules without a mailbox fall back to their pool, or refuse without one") {
    auto cfg = cross_identity();
    auto seq = compile_ok(cfg);
    auto no_owner = contact("");
    auto r = seq.step_request(0, no_owner, nullptr);
    REQUIRE(r.has_value());
    CHECK(r->pool == "sdr");
    CHECK(r->mailbox.empty());

    previous_send no_sender{"", "abc@brand.com", "Hello", {}};
    r = seq.step_request(1, no_owner, &no_sender);
    REQUIRE(r.has_value());
    CHECK(r->pool == "sdr");

    cfg.steps[0].sender.fallback_pool.clear();
    auto strict = compile_ok(cfg);
    sequence_error err;
    r = strict.step_request(0, no_owner, nullptr, &err);
    CHECK(r.error() == make_error_code(errc::invalid_argument));
    CHECK(err.step == 1);
    CHECK(err.field == "sender");
}

TEST_CASE("a reply keeps one Re:, needs the Message-ID before it, and trims long References") {
    auto seq = compile_ok(cross_identity());
    auto c = contact();
    previous_send prev{"rep1", "m1@brand.com", "RE: Quick question", {}};
    CHECK(seq.step_request(1, c, &prev)->subject == "RE: Quick question");

    sequence_error err;
    previous_send no_id{"rep1", "", "Hi", {}};
    CHECK(!seq.step_request(1, c, &no_id, &err).has_value());
    CHECK(err.field == "threading");
    CHECK(!seq.step_request(1, c, nullptr, &err).has_value());

    previous_send deep{"rep1", "m30@brand.com", "Hi", {}};
    for (int i = 0; i < 29; ++i) deep.references.push_back("m" + std::to_string(i) + "@brand.com");
    auto r = seq.step_request(1, c, &deep);
    REQUIRE(r.has_value());
    REQUIRE(r->references.size() == max_thread_references);
    CHECK(r->references.front() == "m0@brand.com");
    CHECK(r->references.back() == "m30@brand.com");
    CHECK(r->references[1] == "m11@brand.com");
}

TEST_CASE("variables are checked across every step before anything is planned") {
    auto seq = compile_ok(cross_identity());
    auto check = seq.check({{"first_name", "Ana"}});
    CHECK(check.missing == std::vector<std::string>{"company"});
    CHECK(seq.check({{"first_name", "Ana"}, {"company", "Acme"}}).ok());
    // The engine provides unsubscribe_url; it is never reported missing.
    CHECK(seq.check({{"first_name", "A"}, {"company", "B"}}).missing.empty());

    auto c = contact();
    c.variables.erase("company");
    sequence_error err;
    CHECK(!seq.step_request(2, c, nullptr, &err).has_value());
    CHECK(err.step == 3);
    CHECK(err.field == "content");
}

TEST_CASE("bad sequence definitions are refused, naming the step and field") {
    struct bad_case {
        const char* what;
        std::function<void(sequence_config&)> spoil;
        std::size_t step;
        const char* field;
    };
    std::vector<bad_case> cases = {
        {"empty id", [](auto& c) { c.id.clear(); }, 0, "id"},
        {"id with a space", [](auto& c) { c.id = "a b"; }, 0, "id"},
        {"id too long", [](auto& c) { c.id = std::string(129, 'a'); }, 0, "id"},
        {"name with a newline", [](auto& c) { c.name = "a\nb"; }, 0, "name"},
        {"name not UTF-8", [](auto& c) { c.name = "\xff"; }, 0, "name"},
        {"no steps", [](auto& c) { c.steps.clear(); }, 0, "steps"},
        {"too many steps", [](auto& c) { c.steps.resize(101, c.steps[2]); }, 0, "steps"},
        {"unknown zone", [](auto& c) { c.time_zone = "Mars/Olympus"; }, 0, "time_zone"},
        {"no business day", [](auto& c) { c.business_weekdays = 0; }, 0, "business_weekdays"},
        {"stray weekday bit", [](auto& c) { c.business_weekdays = 0xbe; }, 0, "business_weekdays"},
        {"holiday not a date", [](auto& c) { c.holidays = {"2026-02-30"}; }, 0, "holidays"},
        {"holiday in another form", [](auto& c) { c.holidays = {"12/25/2026"}; }, 0, "holidays"},
        {"delay too long", [](auto& c) { c.steps[2].delay.amount = 3651; }, 3, "delay"},
        {"hours too long",
         [](auto& c) { c.steps[2].delay = {sequence_delay::unit::hours, 3650 * 24 + 1}; }, 3,
         "delay"},
        {"pool rule without id",
         [](auto& c) { c.steps[2].sender = {sender_rule_kind::pool, "", ""}; }, 3, "sender"},
        {"mailbox rule with a fallback",
         [](auto& c) { c.steps[2].sender.fallback_pool = "x"; }, 3, "sender"},
        {"owner rule with an id", [](auto& c) { c.steps[0].sender.id = "rep1"; }, 1, "sender"},
        {"previous_step first",
         [](auto& c) { c.steps[0].sender = {sender_rule_kind::previous_step, "", "sdr"}; }, 1,
         "sender"},
        {"reply first", [](auto& c) { c.steps[0].threading = step_threading::reply; }, 1,
         "threading"},
        {"new thread without subject", [](auto& c) { c.steps[2].content.subject.clear(); }, 3,
         "content"},
        {"no body", [](auto& c) { c.steps[1].content.text.clear(); }, 2, "content"},
        {"template error", [](auto& c) { c.steps[1].content.text = "Hi {{name"; }, 2, "content"},
    };
    for (const auto& bc : cases) {
        CAPTURE(bc.what);
        auto cfg = cross_identity();
        bc.spoil(cfg);
        sequence_error err;
        auto r = sequence::compile(cfg, &err);
        REQUIRE(!r.has_value());
        CHECK(r.error() == make_error_code(errc::invalid_argument));
        CHECK(err.step == bc.step);
        CHECK(err.field == bc.field);
        CHECK(!err.to_string().empty());
    }

    sequence_error err;
    auto cfg = cross_identity();
    cfg.steps[1].content.text = "line one\nHi {{name";
    CHECK(!sequence::compile(cfg, &err).has_value());
    REQUIRE(err.at);
    CHECK(err.at->part == template_part::text);
    CHECK(err.at->line == 2);
    CHECK(err.to_string().rfind("step 2 content: text, line 2", 0) == 0);
}

TEST_CASE("business days skip weekends and holidays and keep the local time across DST") {
    auto seq = compile_ok(cross_identity());  // step 2: two business days
    // New York moves to EDT on Sunday 2026-03-08. Thursday 10:00 EST
    // (15:00 UTC) plus two business days is Monday 10:00 EDT (14:00 UTC).
    CHECK(seq.due(1, utc(2026, 3, 5, 15), "America/New_York", send_window::weekdays_mon_fri) ==
          utc(2026, 3, 9, 14));
    // Berlin moves to CEST on Sunday 2026-03-29. Thursday 09:00 CET (08:00
    // UTC) is Monday 09:00 CEST (07:00 UTC).
    CHECK(seq.due(1, utc(2026, 3, 26, 8), "Europe/Berlin", send_window::weekdays_mon_fri) ==
          utc(2026, 3, 30, 7));
    // The same instant is Friday midnight in Tokyo already: two business
    // days on is Tuesday midnight there, Monday 15:00 UTC.
    CHECK(seq.due(1, utc(2026, 3, 5, 15), "Asia/Tokyo", send_window::weekdays_mon_fri) ==
          utc(2026, 3, 9, 15));

    auto cfg = cross_identity();
    cfg.holidays = {"2026-03-09"};
    auto with_holiday = compile_ok(cfg);
    CHECK(with_holiday.due(1, utc(2026, 3, 5, 15), "America/New_York",
                           send_window::weekdays_mon_fri) == utc(2026, 3, 10, 14));
    // A pool step counts in the sequence's own calendar (UTC here).
    CHECK(with_holiday.due(1, utc(2026, 3, 5, 15)) == utc(2026, 3, 10, 15));
    // Hours are elapsed time; days keep the local time of day.
    CHECK(seq.due(0, utc(2026, 3, 5, 15)) == utc(2026, 3, 5, 15));
    CHECK(seq.due(2, utc(2026, 3, 5, 15), "America/New_York", 0x7f) == utc(2026, 3, 12, 14));
    CHECK(!seq.due(1, utc(2026, 3, 5, 15), "America/New_York", 0).has_value());
    CHECK_THROWS_AS(seq.due(1, utc(2026, 3, 5, 15), "Nowhere/Else", 0x3e), exception);
}
