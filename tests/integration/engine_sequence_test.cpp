// Sequences and campaigns on the engine: enrollments, the scheduler,
// workspace-wide stop rules, cross-identity steps with threading, cap
// pressure, restarts, and several engines on one SQLite file or PostgreSQL
// database; campaigns through the same queue.
//
// Simulated time only moves when a test moves the manual clock; the drain
// polls in real time, so the tests wait for states, never for durations.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mailers/postgres_store.hpp>
#include <mailers/sequence.hpp>
#include <mailers/transports/file_transport.hpp>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "engine/enrollments.hpp"
#include "engine_fixture.hpp"
#include "forwarding_store.hpp"

using namespace mailers;
using namespace mailers_test;
using namespace std::chrono_literals;

namespace {

struct seq_env : drain_env {
    std::string workspace = "default";
    /// Every engine's provider "capture": passes sends to `capture` unless
    /// a test aims faults at them.
    std::shared_ptr<fault_injector> faults = std::make_shared<fault_injector>(capture);

    std::unique_ptr<engine> make(std::shared_ptr<store> st, bool drain = true) {
        return drain_env::make(std::move(st), workspace, faults, 10s,
                               [&](engine_params& p) { p.drain_queue = drain; });
    }

    mailbox_config mailbox(const std::string& id, std::vector<rate_limit> limits = {},
                           std::string zone = "UTC") {
        auto m = drain_env::mailbox(id, std::move(limits));
        m.time_zone = std::move(zone);
        return m;
    }

    /// Nothing claimed, nothing due in the queue, no enrollment due: the
    /// engines have done all they can until the clock moves.
    bool quiet(engine& e, store& st) {
        auto c = e.queue_counts();
        return c.claimed == 0 && (!c.next_due || *c.next_due > clock->now()) &&
               st.due_enrollments(workspace, clock->now(), 1).empty();
    }
    void settle(engine& e, store& st) {
        run_until([&] { return quiet(e, st); });
        // Once more: a step that just ended made its enrollment due.
        run_until([&] { return quiet(e, st); });
    }
    /// Moves the clock `step` at a time until `done` holds.
    void step_until(engine& e, store& st, duration step, const std::function<bool()>& done,
                    int max_steps = 5000) {
        settle(e, st);
        for (int i = 0; !done(); ++i) {
            if (i > max_steps) FAIL("never finished");
            clock->advance(step);
            settle(e, st);
        }
    }
    std::vector<outbound> sent_to(const std::string& to) const {
        std::vector<outbound> out;
        for (auto& o : capture->sent())
            if (o.msg.to.front().addr_spec() == to) out.push_back(o);
        return out;
    }
};

template_source content(std::string subject, std::string text) {
    template_source t;
    t.subject = std::move(subject);
    t.text = std::move(text);
    return t;
}

sequence_step step(sequence_delay d, template_source c, sender_rule s,
                   step_threading t = step_threading::new_thread) {
    return sequence_step{d, std::move(c), std::move(s), t};
}

/// A one-step sequence from mailbox `from`.
sequence_config one_step(const std::string& id, const std::string& from) {
    sequence_config c;
    c.id = id;
    c.steps = {step({sequence_delay::unit::hours, 0}, content("Hello {{first_name|there}}", "Hi"),
                    {sender_rule_kind::mailbox, from, ""})};
    return c;
}

/// Two steps from mailbox `from`, the second two days after the first.
sequence_config two_steps(const std::string& id, const std::string& from) {
    auto c = one_step(id, from);
    c.steps.push_back(step({sequence_delay::unit::days, 2}, content("", "Bump"),
                           {sender_rule_kind::previous_step, "", ""}, step_threading::reply));
    return c;
}

std::string days_text(const std::vector<int>& days) {
    std::string out;
    for (int d : days) out += std::to_string(d) + " ";
    return out;
}

std::string rcpt(int i) {
    return "p" + std::to_string(i) + "@prospect.example";
}

address contact(const std::string& a) {
    return *parse_address(a);
}

std::string pg_workspace(std::string_view stem) {
    return std::string(stem) + "_" + std::to_string(::getpid()) + "_" +
           std::to_string(std::random_device{}() % 100000);
}

/// The test server's store parameters, with `env` on a workspace of its
/// own; nullopt when PostgreSQL is skipped.
std::optional<postgres_store_params> pg_params(seq_env& env, std::string_view stem) {
    auto server = test_pg_server("sequences");
    if (!server) return std::nullopt;
    env.workspace = pg_workspace(stem);
    postgres_store_params p;
    p.conninfo = *server;
    p.mode = open_mode::open_or_create;
    p.pool_size = 3;
    return p;
}

/// The ledger id of the send with idempotency key `key`, as text; "" when none.
std::string send_id_of(store& st, const std::string& workspace, const std::string& key) {
    std::string out;
    st.for_each_send(workspace, test_epoch() - 24h, test_epoch() + 24h * 365,
                     [&](const ledger_row& r) {
                         if (r.idempotency_key == key) out = std::to_string(r.id);
                     });
    return out;
}

/// A test of two engines on one workspace: `a` does not drain the queue,
/// `z` does, `st_z` is z's store.
using two_engines = std::function<void(seq_env&, engine& a, engine& z, store& st_z)>;

/// Runs `test` with one engine on an in-memory SQLite store, as a and z.
void on_one_engine(const two_engines& test) {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    test(env, *eng, *eng, *st);
}

/// Runs `test` with two engines on one SQLite file.
void on_sqlite_file(const std::string& stem, const two_engines& test) {
    db_file db(stem);
    seq_env env;
    auto open = [&] { return open_sqlite_store({db.path.string(), open_mode::open_or_create}); };
    auto st_a = open();
    auto a = env.make(st_a, false);
    auto st_z = open();
    auto z = env.make(st_z);
    test(env, *a, *z, *st_z);
}

/// Runs `test` with two engines on the test PostgreSQL server, when there
/// is one.
void on_postgres(std::string_view stem, const two_engines& test) {
    seq_env env;
    const auto p = pg_params(env, stem);
    if (!p) return;
    auto st_a = open_postgres_store(*p);
    auto a = env.make(st_a, false);
    auto st_z = open_postgres_store(*p);
    auto z = env.make(st_z);
    test(env, *a, *z, *st_z);
}

}  // namespace

TEST_CASE("enroll refuses what it must, enrolling nothing, and merges or refuses twice") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st, false);
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    auto c = one_step("s1", "rep1");
    c.steps[0].content.text = "Hi {{first_name}} at {{company}}";
    eng->upsert_sequence(env.admin, c);
    enroll_options vars;
    vars.variables = {{"first_name", "Ada"}, {"company", "Acme"}};

    CHECK(code_of([&] { eng->enroll(env.admin, "nope", contact(rcpt(1)), vars); }) ==
          errc::not_found);
    enroll_options missing;
    missing.variables = {{"first_name", "Ada"}};
    try {
        eng->enroll(env.admin, "s1", contact(rcpt(1)), missing);
        FAIL("a missing variable was accepted");
    } catch (const exception& e) {
        CHECK(e.code() == errc::invalid_argument);
        CHECK(std::string(e.what()).find("company") != std::string::npos);
    }
    eng->suppress(env.admin, suppression_kind::address, rcpt(2), suppression_reason::unsubscribe);
    CHECK(code_of([&] { eng->enroll(env.admin, "s1", contact(rcpt(2)), vars); }) ==
          errc::suppressed);
    enroll_options bad_owner = vars;
    bad_owner.owner = "ghost";
    CHECK(code_of([&] { eng->enroll(env.admin, "s1", contact(rcpt(1)), bad_owner); }) ==
          errc::unknown_mailbox);
    CHECK(eng->enrollments().empty());

    auto e = eng->enroll(env.admin, "s1", contact(rcpt(1)), vars);
    CHECK(e.state == enrollment_state::active);
    CHECK(e.address == rcpt(1));
    CHECK(code_of([&] { eng->enroll(env.admin, "s1", contact(rcpt(1)), vars); }) ==
          errc::duplicate);
    auto merge = vars;
    merge.variables["company"] = "Initech";
    merge.on_enrolled_twice = enrollment_conflict::merge;
    auto m = eng->enroll(env.admin, "s1", contact(rcpt(1)), merge);
    CHECK(m.id == e.id);
    CHECK(m.variables.find("Initech") != std::string::npos);
    CHECK(eng->enrollments().size() == 1);
    // Audited: the enroll, the refusal, the merge.
    std::vector<std::string> actions;
    for (const auto& r : eng->audit_log()) actions.push_back(r.action);
    CHECK(std::count(actions.begin(), actions.end(), "enroll") == 3);
    CHECK(std::count(actions.begin(), actions.end(), "enroll_refused") == 1);
}

TEST_CASE("a 3-step cross-identity sequence: the right sender per step, delays, threading") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    eng->upsert_mailbox(env.admin, env.mailbox("rep_a", {}, "America/New_York"));
    eng->upsert_mailbox(env.admin, env.mailbox("rep_b", {}, "Europe/Berlin"));
    eng->upsert_mailbox(env.admin, env.mailbox("founder"));
    sequence_config c;
    c.id = "outbound";
    c.steps = {
        step({sequence_delay::unit::hours, 0}, content("Question for {{first_name}}", "Hi"),
             {sender_rule_kind::owner, "", ""}),
        step({sequence_delay::unit::business_days, 2}, content("", "Bumping this"),
             {sender_rule_kind::previous_step, "", ""}, step_threading::reply),
        step({sequence_delay::unit::days, 3}, content("", "Founder here"),
             {sender_rule_kind::mailbox, "founder", ""}, step_threading::reply),
    };
    eng->upsert_sequence(env.admin, c);
    enroll_options o1, o2;
    o1.variables = o2.variables = {{"first_name", "Ada"}};
    o1.owner = "rep_a";
    o2.owner = "rep_b";
    std::mutex mu;
    std::map<std::uint64_t, std::vector<std::uint32_t>> sent_steps;  // by enrollment
    eng->on_event([&](const event& e) {
        if (e.type != event_type::sent) return;
        CHECK(e.sequence == "outbound");
        std::lock_guard lock(mu);
        sent_steps[e.enrollment].push_back(e.step);
    });
    const auto e1 = eng->enroll(env.admin, "outbound", contact("ada@x.example"), o1);
    const auto e2 = eng->enroll(env.admin, "outbound", contact("bob@y.example"), o2);
    env.step_until(*eng, *st, 1h, [&] {
        return eng->find_enrollment(e1.id)->state == enrollment_state::completed &&
               eng->find_enrollment(e2.id)->state == enrollment_state::completed;
    });
    env.run_until([&] {
        std::lock_guard lock(mu);
        return sent_steps[e1.id].size() + sent_steps[e2.id].size() == 6;
    });
    {
        // Each sent event names its sequence, enrollment and 1-based step.
        std::lock_guard lock(mu);
        const std::vector<std::uint32_t> all{1, 2, 3};
        CHECK(sent_steps[e1.id] == all);
        CHECK(sent_steps[e2.id] == all);
        CHECK(sent_steps.size() == 2);
    }
    const auto seq = *eng->find_sequence("outbound");
    for (auto [who, owner, zone] : {std::tuple{"ada@x.example", "rep_a", "America/New_York"},
                                    std::tuple{"bob@y.example", "rep_b", "Europe/Berlin"}}) {
        INFO(who);
        auto sent = env.sent_to(who);
        REQUIRE(sent.size() == 3);
        CHECK(sent[0].mailbox_id == owner);
        CHECK(sent[1].mailbox_id == owner);
        CHECK(sent[2].mailbox_id == "founder");
        CHECK(sent[0].msg.subject == "Question for Ada");
        CHECK(sent[1].msg.subject == "Re: Question for Ada");
        CHECK(sent[2].msg.subject == "Re: Question for Ada");
        CHECK(sent[1].msg.in_reply_to == sent[0].msg.message_id);
        CHECK(sent[1].msg.references == std::vector<std::string>{sent[0].msg.message_id});
        CHECK(sent[2].msg.in_reply_to == sent[1].msg.message_id);
        CHECK(sent[2].msg.references ==
              std::vector<std::string>{sent[0].msg.message_id, sent[1].msg.message_id});
        // Each step at (within the hour the clock moves by) its due time in
        // its sender's calendar.
        const auto t0 = *sent[0].msg.date, t1 = *sent[1].msg.date, t2 = *sent[2].msg.date;
        const auto due1 = *seq.due(1, t0, zone, 0x7f);
        const auto due2 = *seq.due(2, t1, "UTC", 0x7f);
        CHECK(t1 >= due1);
        CHECK(t1 < due1 + 1h);
        CHECK(t2 >= due2);
        CHECK(t2 < due2 + 1h);
    }
    // Wednesday + 2 business days is Friday in both zones.
    CHECK(eng->find_enrollment(e1.id)->step == 3);
}

namespace {

// The brief's scenario: a contact in sequence 1 (mailbox A) and sequence 2
// (mailbox Z). Its unsubscribe, recorded against A's step, stops Z's next
// step in sequence 2. `a` enrolls and suppresses; `z` (possibly another
// process) drains.
void unsubscribe_stops_every_sequence(seq_env& env, engine& a, engine& z, store& st_z) {
    a.upsert_mailbox(env.admin, env.mailbox("mailbox_a"));
    a.upsert_mailbox(env.admin, env.mailbox("mailbox_z"));
    a.upsert_sequence(env.admin, two_steps("seq1", "mailbox_a"));
    a.upsert_sequence(env.admin, two_steps("seq2", "mailbox_z"));
    const auto who = contact("lead@prospect.example");
    const auto other = contact("other@prospect.example");
    auto in1 = a.enroll(env.admin, "seq1", who);
    auto in2 = a.enroll(env.admin, "seq2", who);
    auto bystander = a.enroll(env.admin, "seq2", other);
    // Both first steps go out; both second steps are queued, two days out.
    env.step_until(z, st_z, 1h, [&] {
        return z.find_enrollment(in2.id)->step == 1 &&
               !z.find_enrollment(in2.id)->queue_key.empty() &&
               !z.find_enrollment(in1.id)->queue_key.empty() &&
               !z.find_enrollment(bystander.id)->queue_key.empty();
    });
    CHECK(env.sent_to("lead@prospect.example").size() == 2);
    const auto waiting_before = z.queue_counts().waiting;
    // The unsubscribe, recorded against mailbox A's message in sequence 1.
    a.suppress(env.admin, suppression_kind::address, "lead@prospect.example",
               suppression_reason::unsubscribe, "one-click:mailbox_a");
    for (auto id : {in1.id, in2.id}) {
        auto e = z.find_enrollment(id);
        CHECK(e->state == enrollment_state::stopped);
        CHECK(e->stop_reason == enrollment_stop::unsubscribed);
    }
    CHECK(z.queue_counts().waiting == waiting_before - 2);
    env.step_until(z, st_z, 6h, [&] {
        return z.find_enrollment(bystander.id)->state == enrollment_state::completed;
    });
    const auto sent = env.sent_to("lead@prospect.example");
    CHECK(sent.size() == 2);  // no step 2 from either mailbox
    for (const auto& o : sent) CHECK(o.msg.references.empty());
    CHECK(env.sent_to("other@prospect.example").size() == 2);
}

}  // namespace

TEST_CASE("an unsubscribe against mailbox A in sequence 1 stops mailbox Z in sequence 2") {
    on_one_engine(unsubscribe_stops_every_sequence);
}

TEST_CASE("the same with two engines on one SQLite file") {
    on_sqlite_file("seq-two", unsubscribe_stops_every_sequence);
}

TEST_CASE("the same with two engines on PostgreSQL") {
    on_postgres("seq", unsubscribe_stops_every_sequence);
}

TEST_CASE("replies and goals stop per stop_scope; bounces stop as bounced") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    auto s1 = two_steps("s1", "rep1");
    s1.reply_stops = stop_scope::this_sequence;
    s1.goal_stops = stop_scope::every_sequence;
    eng->upsert_sequence(env.admin, s1);
    eng->upsert_sequence(env.admin, two_steps("s2", "rep1"));
    auto a1 = eng->enroll(env.admin, "s1", contact(rcpt(1)));
    auto a2 = eng->enroll(env.admin, "s2", contact(rcpt(1)));
    auto b1 = eng->enroll(env.admin, "s1", contact(rcpt(2)));
    auto b2 = eng->enroll(env.admin, "s2", contact(rcpt(2)));
    auto c1 = eng->enroll(env.admin, "s1", contact(rcpt(3)));
    env.step_until(*eng, *st, 1h, [&] { return env.capture->count() == 5; });
    // A reply to s1's message (by Message-ID): this sequence only.
    const auto mid = eng->find_enrollment(a1.id)->prev_message_id;
    REQUIRE_FALSE(mid.empty());
    CHECK(eng->record_reply(env.admin, "<" + mid + ">") == std::vector<std::uint64_t>{a1.id});
    CHECK(eng->find_enrollment(a1.id)->stop_reason == enrollment_stop::replied);
    CHECK(eng->find_enrollment(a2.id)->state == enrollment_state::active);
    // A reply by address names no sequence: every enrollment of it.
    CHECK(eng->record_reply(env.admin, rcpt(2)) == std::vector<std::uint64_t>{b1.id, b2.id});
    // s1's goal stops every sequence of the address.
    CHECK(eng->record_goal(env.admin, rcpt(1), "s1") == std::vector<std::uint64_t>{a2.id});
    CHECK(eng->find_enrollment(a2.id)->stop_reason == enrollment_stop::goal);
    // A hard bounce ingested or suppressed: bounced.
    eng->suppress(env.admin, suppression_kind::address, rcpt(3), suppression_reason::hard_bounce,
                  "ses");
    CHECK(eng->find_enrollment(c1.id)->stop_reason == enrollment_stop::bounced);
    CHECK(eng->queue_counts().waiting == 0);
    env.clock->advance(72h);
    env.settle(*eng, *st);
    CHECK(env.capture->count() == 5);
    CHECK(code_of([&] { eng->record_reply(env.admin, "not an address"); }) ==
          errc::invalid_argument);
}

TEST_CASE("pause and resume an enrollment and a sequence; manual stop") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    eng->upsert_sequence(env.admin, two_steps("s1", "rep1"));
    auto a = eng->enroll(env.admin, "s1", contact(rcpt(1)));
    auto b = eng->enroll(env.admin, "s1", contact(rcpt(2)));
    auto c = eng->enroll(env.admin, "s1", contact(rcpt(3)));
    env.step_until(*eng, *st, 1h, [&] { return env.capture->count() == 3; });
    env.settle(*eng, *st);
    CHECK(eng->queue_counts().waiting == 3);
    CHECK(eng->pause_enrollment(env.admin, a.id));
    CHECK_FALSE(eng->pause_enrollment(env.admin, a.id));
    CHECK(eng->stop_enrollment(env.admin, c.id, "asked by sales"));
    CHECK(eng->queue_counts().waiting == 1);
    eng->pause_sequence(env.admin, "s1", "copy review");
    CHECK(eng->is_sequence_paused("s1"));
    env.clock->advance(72h);
    env.settle(*eng, *st);
    CHECK(env.capture->count() == 3);  // b's step waits, paused
    CHECK(eng->queue_counts().waiting == 1);
    eng->resume_sequence(env.admin, "s1");
    env.step_until(*eng, *st, 1h, [&] { return env.capture->count() == 4; });
    CHECK(env.sent_to(rcpt(2)).size() == 2);
    CHECK(eng->find_enrollment(b.id)->state == enrollment_state::completed);
    CHECK(eng->resume_enrollment(env.admin, a.id));
    env.step_until(*eng, *st, 1h, [&] {
        return eng->find_enrollment(a.id)->state == enrollment_state::completed;
    });
    CHECK(env.sent_to(rcpt(1)).size() == 2);
    CHECK(env.sent_to(rcpt(3)).size() == 1);
    CHECK(eng->find_enrollment(c.id)->stop_reason == enrollment_stop::manual);
    CHECK(eng->find_enrollment(c.id)->detail == "asked by sales");
    CHECK(code_of([&] { eng->resume_sequence(env.admin, "s1"); }) == errc::not_found);
}

namespace {

// Steps a sequence pause held go out as soon as engine `a` resumes it,
// from engine `z`, with the clock where it was: the queued step that
// waited with reason "paused" and the enrollment whose planning the
// pause put off, neither left for a later recheck.
void resume_sends_held_steps_at_once(seq_env& env, engine& a, engine& z, store& st_z) {
    a.upsert_mailbox(env.admin, env.mailbox("rep1"));
    a.upsert_sequence(env.admin, two_steps("s1", "rep1"));
    auto queued = a.enroll(env.admin, "s1", contact(rcpt(1)));
    env.step_until(z, st_z, 1h, [&] { return env.capture->count() == 1; });
    a.pause_sequence(env.admin, "s1", "copy review");
    auto put_off = a.enroll(env.admin, "s1", contact(rcpt(2)));
    env.clock->advance(72h);  // step 2 of the first is due, step 1 of the second too
    env.settle(z, st_z);
    CHECK(env.capture->count() == 1);
    const auto waiting = z.queue_counts().waiting_by_reason;
    CHECK(std::count(waiting.begin(), waiting.end(),
                     std::pair<std::string, std::uint64_t>{"paused", 1}) == 1);
    const auto held = st_z.find_enrollment(env.workspace, put_off.id);
    REQUIRE(held->next_due);
    CHECK(*held->next_due > env.clock->now());
    a.resume_sequence(env.admin, "s1");
    env.settle(z, st_z);  // the clock does not move
    CHECK(env.sent_to(rcpt(1)).size() == 2);
    CHECK(env.sent_to(rcpt(2)).size() == 1);
    CHECK(z.find_enrollment(queued.id)->state == enrollment_state::completed);
    CHECK(z.find_enrollment(put_off.id)->step == 1);
}

}  // namespace

TEST_CASE("resume_sequence: the steps the pause held go out at once") {
    on_one_engine(resume_sends_held_steps_at_once);
}

TEST_CASE("resume_sequence from another engine on one SQLite file: at once") {
    on_sqlite_file("seq-resume", resume_sends_held_steps_at_once);
}

TEST_CASE("resume_sequence from another engine on PostgreSQL: at once") {
    on_postgres("seqresume", resume_sends_held_steps_at_once);
}

namespace {

/// Four contacts enrolled in a two-step sequence from rep1 by `a`, each
/// first step sent by `z` ending `unknown`.
std::vector<enrollment> four_held(seq_env& env, engine& a, engine& z, store& st_z) {
    a.upsert_mailbox(env.admin, env.mailbox("rep1"));
    a.upsert_sequence(env.admin, two_steps("s1", "rep1"));
    env.faults->unknown_nth(1).unknown_nth(2).unknown_nth(3).unknown_nth(4);
    std::vector<enrollment> e;
    for (int i = 0; i < 4; ++i) e.push_back(a.enroll(env.admin, "s1", contact(rcpt(i))));
    env.step_until(z, st_z, 1h, [&] { return env.capture->count() == 4; });
    env.settle(z, st_z);
    return e;
}

// A step whose send ends `unknown` holds its enrollment, visibly, and is
// not sent again unless resolved `not_sent`; engine `a` (another process than the sender's)
// resolves held steps, and a provider's event about the send resolves one
// by itself.
void unknown_steps_are_held(seq_env& env, engine& a, engine& z, store& st_z) {
    const auto e = four_held(env, a, z, st_z);
    for (const auto& x : e) {
        const auto held = z.find_enrollment(x.id);
        CHECK(held->state == enrollment_state::unresolved);
        CHECK(held->detail.starts_with("step 1 outcome unknown (send "));
        CHECK(held->step == 1);
    }
    CHECK(a.enrollments({.state = enrollment_state::unresolved}).size() == 4);
    env.clock->advance(72h);
    env.settle(z, st_z);
    CHECK(env.capture->count() == 4);  // no step sent twice, no next step
    const auto log = a.audit_log().size();
    // An operator says it went: the next step goes; said twice, nothing.
    CHECK(a.resolve_unknown_step(env.admin, e[0].id, step_resolution::sent));
    CHECK_FALSE(z.resolve_unknown_step(env.admin, e[0].id, step_resolution::not_sent));
    // An operator says it did not: the step goes again (resend_after_not_sent).
    CHECK(a.resolve_unknown_step(env.admin, e[1].id, step_resolution::not_sent));
    CHECK(z.find_enrollment(e[1].id)->state == enrollment_state::active);
    CHECK(z.find_enrollment(e[1].id)->attempt == 1);
    // The provider reports a delivery of the third: resolved, once.
    const auto sent = send_id_of(st_z, env.workspace, "seq:s1:" + std::to_string(e[2].id) + ":1");
    REQUIRE_FALSE(sent.empty());
    webhook_result w;
    w.outcome = webhook_outcome::events;
    w.http_status = 200;
    event ev;
    ev.type = event_type::delivered;
    ev.send_id = sent;
    ev.recipient = rcpt(2);
    ev.dedup_key = "delivered-2";
    w.events.push_back(ev);
    // An open of the same send in the same request: one resolution, one
    // audit record, however the request's events share a commit.
    ev.type = event_type::opened;
    ev.dedup_key = "opened-2";
    w.events.push_back(ev);
    a.apply_webhook(webhook_provider::postmark, w);
    CHECK(z.find_enrollment(e[2].id)->state == enrollment_state::active);
    CHECK(z.apply_webhook(webhook_provider::postmark, w).duplicates == 2);
    std::size_t resolves = 0;
    for (const auto& r : a.audit_log(log + 1)) resolves += r.action == "enrollment.resolve";
    CHECK(resolves == 3);
    CHECK(code_of([&] { a.resolve_unknown_step(env.admin, 999999, step_resolution::sent); }) ==
          errc::not_found);
    env.step_until(z, st_z, 6h, [&] {
        return z.find_enrollment(e[0].id)->state == enrollment_state::completed &&
               z.find_enrollment(e[1].id)->state == enrollment_state::completed &&
               z.find_enrollment(e[2].id)->state == enrollment_state::completed;
    });
    CHECK(env.capture->count() == 8);
    CHECK(env.sent_to(rcpt(1)).size() == 3);  // the unknown send, its re-send, step 2
    CHECK(env.sent_to(rcpt(3)).size() == 1);
    // Resolving takes manage_sequences over the sequence.
    a.put_role(env.admin, {"admin", {permission::manage_access}});
    a.grant_access(env.admin, {env.admin.id, "admin", {}});
    a.set_access_control(env.admin, true);
    CHECK(code_of([&] {
              a.resolve_unknown_step({"eve", "Eve"}, e[3].id, step_resolution::sent);
          }) == errc::permission_denied);
    CHECK(z.find_enrollment(e[3].id)->state == enrollment_state::unresolved);
}

}  // namespace

TEST_CASE("a step whose send ends unknown holds its enrollment until resolved") {
    on_one_engine(unknown_steps_are_held);
}

TEST_CASE("unknown steps resolved from another engine on one SQLite file") {
    on_sqlite_file("seq-unknown", unknown_steps_are_held);
}

TEST_CASE("unknown steps resolved from another engine on PostgreSQL") {
    on_postgres("sequnknown", unknown_steps_are_held);
}

TEST_CASE("cap pressure: 1,000 enrollments over 10 mailboxes capped at 30 a day") {
    db_file db("seq-caps");
    seq_env env;
    auto st = open_sqlite_store({db.path.string(), open_mode::create});
    auto eng = env.make(st);
    pool_config pool;
    pool.id = "sdr";
    for (int i = 0; i < 10; ++i) {
        const auto id = "rep" + std::to_string(i);
        eng->upsert_mailbox(env.admin,
                            env.mailbox(id, {rate_limit::per_day(30, window_kind::calendar)}));
        pool.mailboxes.push_back(id);
    }
    eng->upsert_pool(env.admin, pool);
    sequence_config c;
    c.id = "blast";
    c.steps = {step({sequence_delay::unit::hours, 0}, content("Hello", "Hi"),
                    {sender_rule_kind::pool, "sdr", ""})};
    eng->upsert_sequence(env.admin, c);
    constexpr int n = 1000;
    for (int i = 0; i < n; ++i) eng->enroll(env.admin, "blast", contact(rcpt(i)));
    env.settle(*eng, *st);
    CHECK(env.capture->count() == 300);
    CHECK(eng->queue_counts().waiting == 700);
    CHECK(eng->queue_counts().waiting_by_reason ==
          std::vector<std::pair<std::string, std::uint64_t>>{{"cap", 700}});
    // The clock jumps to each next due time, as a host's executor would
    // wake: no send is late for the simulation's step.
    for (int jumps = 0; env.capture->count() < n; ++jumps) {
        REQUIRE(jumps < 5000);
        const auto next = eng->queue_counts().next_due;
        REQUIRE(next.has_value());
        env.clock->advance(std::max<duration>(*next - env.clock->now(), 1s));
        env.settle(*eng, *st);
    }
    std::map<std::int64_t, int> per_day;
    std::map<std::pair<std::string, std::int64_t>, int> per_mailbox_day;
    std::set<std::string> to;
    for (const auto& o : env.capture->sent()) {
        const auto day =
            std::chrono::floor<std::chrono::days>(*o.msg.date).time_since_epoch().count();
        ++per_day[day];
        ++per_mailbox_day[{o.mailbox_id, day}];
        to.insert(o.msg.to.front().addr_spec());
    }
    CHECK(to.size() == n);
    std::vector<int> days;
    for (auto [d, k] : per_day) days.push_back(k);
    INFO("sent per day: " << days_text(days));
    CHECK(days == std::vector<int>{300, 300, 300, 100});
    for (auto [k, sent] : per_mailbox_day) CHECK(sent <= 30);
    for (const auto& e : eng->enrollments()) CHECK(e.state == enrollment_state::completed);
}

TEST_CASE("a restart mid-run keeps every enrollment's state: no duplicate, no lost step") {
    db_file db("seq-restart");
    seq_env env;
    auto open = [&] { return open_sqlite_store({db.path.string(), open_mode::open_or_create}); };
    constexpr int n = 40;
    {
        auto st = open();
        auto eng = env.make(st);
        eng->upsert_mailbox(env.admin, env.mailbox("rep1", {rate_limit::per_day(25)}));
        eng->upsert_sequence(env.admin, two_steps("s1", "rep1"));
        for (int i = 0; i < n; ++i) eng->enroll(env.admin, "s1", contact(rcpt(i)));
        env.settle(*eng, *st);
        CHECK(env.capture->count() == 25);
    }
    for (int round = 0; round < 6 && env.capture->count() < 2 * n; ++round) {
        auto st = open();
        auto eng = env.make(st);
        env.clock->advance(20h);
        env.settle(*eng, *st);
    }
    auto st = open();
    auto eng = env.make(st);
    env.step_until(*eng, *st, 6h, [&] { return env.capture->count() >= 2 * n; });
    env.settle(*eng, *st);
    CHECK(env.capture->count() == 2 * n);
    std::map<std::string, int> per;
    for (const auto& o : env.capture->sent()) ++per[o.msg.to.front().addr_spec()];
    CHECK(per.size() == n);
    for (auto [k, v] : per) CHECK(v == 2);
    for (const auto& e : eng->enrollments()) CHECK(e.state == enrollment_state::completed);
}

TEST_CASE("random enroll, pause, resume and stop from two engines match a model") {
    db_file db("seq-random");
    seq_env env;
    auto open = [&] { return open_sqlite_store({db.path.string(), open_mode::open_or_create}); };
    auto st1 = open();
    auto e1 = env.make(st1);
    auto st2 = open();
    auto e2 = env.make(st2);
    e1->upsert_mailbox(env.admin, env.mailbox("rep1"));
    e1->upsert_sequence(env.admin, two_steps("s1", "rep1"));
    e1->upsert_sequence(env.admin, two_steps("s2", "rep1"));
    std::mt19937_64 rng(7);
    // The model: per (sequence, contact), the state the API left.
    std::map<std::pair<std::string, int>, enrollment_state> model;
    std::map<std::pair<std::string, int>, std::uint64_t> ids;
    std::set<int> suppressed;
    for (int op = 0; op < 300; ++op) {
        engine& e = rng() % 2 ? *e1 : *e2;
        const int who = static_cast<int>(rng() % 12);
        const std::string seq = rng() % 2 ? "s1" : "s2";
        const auto key = std::pair{seq, who};
        switch (rng() % 6) {
            case 0:
            case 1: {
                const auto ec =
                    code_of([&] { ids[key] = e.enroll(env.admin, seq, contact(rcpt(who))).id; });
                if (suppressed.count(who)) {
                    CHECK(ec == errc::suppressed);
                } else if (model.count(key)) {
                    CHECK(ec == errc::duplicate);
                } else {
                    CHECK(ec == errc{});
                    model[key] = enrollment_state::active;
                }
                break;
            }
            case 2:
                if (model.count(key)) {
                    const bool did = e.pause_enrollment(env.admin, ids[key]);
                    const auto now = e.find_enrollment(ids[key])->state;
                    CHECK(did == (model[key] == enrollment_state::active &&
                                  now == enrollment_state::paused));
                    if (did) model[key] = enrollment_state::paused;
                }
                break;
            case 3:
                if (model.count(key)) {
                    const bool did = e.resume_enrollment(env.admin, ids[key]);
                    CHECK(did == (model[key] == enrollment_state::paused));
                    if (did) model[key] = enrollment_state::active;
                }
                break;
            case 4:
                if (model.count(key)) {
                    const bool was_live = model[key] == enrollment_state::active ||
                                          model[key] == enrollment_state::paused;
                    CHECK(e.stop_enrollment(env.admin, ids[key]) == was_live);
                    if (was_live) model[key] = enrollment_state::stopped;
                }
                break;
            case 5:
                if (rng() % 4 == 0) {
                    e.suppress(env.admin, suppression_kind::address, rcpt(who),
                               suppression_reason::complaint);
                    suppressed.insert(who);
                    for (auto& [k, s] : model)
                        if (k.second == who &&
                            (s == enrollment_state::active || s == enrollment_state::paused))
                            s = enrollment_state::stopped;
                } else {
                    env.clock->advance(std::chrono::hours(rng() % 30));
                    env.settle(*e1, *st1);
                    // Completed as the steps go out.
                    for (auto& [k, s] : model)
                        if (s == enrollment_state::active &&
                            e1->find_enrollment(ids[k])->state == enrollment_state::completed)
                            s = enrollment_state::completed;
                }
                break;
        }
        for (const auto& [k, s] : model) {
            INFO("op " << op << " " << k.first << " " << k.second);
            CHECK(e2->find_enrollment(ids[k])->state == s);
        }
    }
    // No step twice, no step to a contact after it stopped or was suppressed.
    std::map<std::pair<std::string, std::string>, int> per_subject;
    for (const auto& o : env.capture->sent())
        ++per_subject[{o.msg.to.front().addr_spec(), o.msg.in_reply_to}];
    for (const auto& [k, v] : per_subject) CHECK(v <= 2);
    const auto enrollments = e1->enrollments();
    std::size_t steps = 0;
    for (const auto& en : enrollments) steps += en.step;
    CHECK(env.capture->count() == steps);
}

TEST_CASE("an ingested hard bounce stops the address in every sequence, once") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    eng->upsert_mailbox(env.admin, env.mailbox("rep2"));
    eng->upsert_sequence(env.admin, two_steps("s1", "rep1"));
    eng->upsert_sequence(env.admin, two_steps("s2", "rep2"));
    auto a = eng->enroll(env.admin, "s1", contact("ana@prospect.example"));
    auto b = eng->enroll(env.admin, "s2", contact("ana@prospect.example"));
    env.step_until(*eng, *st, 1h, [&] { return env.capture->count() == 2; });
    env.settle(*eng, *st);
    const std::string body =
        R"({"RecordType":"Bounce","ID":7,"Type":"HardBounce","MessageID":"pm-7",)"
        R"("Email":"Ana@Prospect.example","Details":"smtp;550 5.1.1 no such user",)"
        R"("BouncedAt":"2026-11-25T12:00:00Z"})";
    const std::vector<http_header> headers{{"Content-Type", "application/json"}};
    webhook_params unverified;
    unverified.verify = false;
    auto r = eng->ingest_webhook(webhook_provider::postmark, {"POST", headers, body}, unverified);
    CHECK(r.suppressed == 1);
    for (auto id : {a.id, b.id}) {
        CHECK(eng->find_enrollment(id)->state == enrollment_state::stopped);
        CHECK(eng->find_enrollment(id)->stop_reason == enrollment_stop::bounced);
    }
    CHECK(eng->queue_counts().waiting == 0);
    const auto log = eng->audit_log().size();
    auto again =
        eng->ingest_webhook(webhook_provider::postmark, {"POST", headers, body}, unverified);
    CHECK(again.duplicates == 1);
    CHECK(eng->audit_log().size() == log);
    env.clock->advance(72h);
    env.settle(*eng, *st);
    CHECK(env.capture->count() == 2);
}

namespace {

/// A provider's event of `type` about send `send_id`, as a parsed webhook.
webhook_result provider_event(event_type type, std::string send_id, std::string recipient,
                              std::string dedup) {
    webhook_result w;
    w.outcome = webhook_outcome::events;
    w.http_status = 200;
    event ev;
    ev.type = type;
    ev.send_id = std::move(send_id);
    ev.recipient = std::move(recipient);
    ev.dedup_key = std::move(dedup);
    ev.provider = "postmark";
    w.events.push_back(std::move(ev));
    return w;
}

webhook_result replied(std::string send_id, std::string recipient, std::string dedup) {
    return provider_event(event_type::replied, std::move(send_id), std::move(recipient),
                          std::move(dedup));
}

// A `replied` event ingested by engine `a` stops, by record_reply's rule,
// the enrollment whose step it answers before its next step, which engine
// `z` would send; once, however often it comes; and one about a send
// that is not ours changes nothing.
void replied_events_stop(seq_env& env, engine& a, engine& z, store& st_z) {
    a.upsert_mailbox(env.admin, env.mailbox("rep1"));
    auto s1 = two_steps("s1", "rep1");
    s1.reply_stops = stop_scope::this_sequence;
    a.upsert_sequence(env.admin, s1);
    a.upsert_sequence(env.admin, two_steps("s2", "rep1"));  // every sequence
    auto a1 = a.enroll(env.admin, "s1", contact("ana@prospect.example"));
    auto a2 = a.enroll(env.admin, "s2", contact("ana@prospect.example"));
    auto b1 = a.enroll(env.admin, "s1", contact("bo@prospect.example"));
    auto b2 = a.enroll(env.admin, "s2", contact("bo@prospect.example"));
    auto c1 = a.enroll(env.admin, "s1", contact("cy@prospect.example"));
    env.step_until(z, st_z, 1h, [&] { return env.capture->count() == 5; });
    env.settle(z, st_z);
    const auto ana = send_id_of(st_z, env.workspace, "seq:s1:" + std::to_string(a1.id) + ":1");
    const auto bo = send_id_of(st_z, env.workspace, "seq:s2:" + std::to_string(b2.id) + ":1");
    REQUIRE_FALSE(ana.empty());
    REQUIRE_FALSE(bo.empty());
    const auto log = a.audit_log().size();
    // A reply to s1's step: s1 only (its reply_stops).
    auto r = a.apply_webhook(webhook_provider::postmark,
                             replied(ana, "ana@prospect.example", "reply-ana"));
    CHECK(r.duplicates == 0);
    CHECK(z.find_enrollment(a1.id)->state == enrollment_state::stopped);
    CHECK(z.find_enrollment(a1.id)->stop_reason == enrollment_stop::replied);
    CHECK(z.find_enrollment(a2.id)->state == enrollment_state::active);
    // A reply to s2's step: every sequence of the address.
    a.apply_webhook(webhook_provider::postmark, replied(bo, "bo@prospect.example", "reply-bo"));
    for (auto id : {b1.id, b2.id})
        CHECK(z.find_enrollment(id)->stop_reason == enrollment_stop::replied);
    auto audit = a.audit_log();
    REQUIRE(audit.size() == log + 2);
    CHECK(audit[log].action == "enrollment.stop");
    CHECK(audit[log].actor == "webhook:postmark");
    CHECK(audit[log].resource_id == std::to_string(a1.id));
    CHECK(audit[log + 1].resource_id == "bo@prospect.example");
    // A redelivery changes nothing and writes no audit record, from either engine.
    auto again = z.apply_webhook(webhook_provider::postmark,
                                 replied(ana, "ana@prospect.example", "reply-ana"));
    CHECK(again.duplicates == 1);
    CHECK(a.audit_log().size() == log + 2);
    // A reply about a send that is not ours, or about none: nothing stops.
    const auto before = z.enrollments();
    auto other = a.apply_webhook(webhook_provider::postmark,
                                 replied("987654321", "cy@prospect.example", "reply-x"));
    CHECK(other.duplicates == 0);
    a.apply_webhook(webhook_provider::postmark, replied("", "cy@prospect.example", "reply-y"));
    CHECK(z.enrollments() == before);
    CHECK(z.find_enrollment(c1.id)->state == enrollment_state::active);
    CHECK(a.audit_log().size() == log + 2);
    // The stopped steps are not sent; the others are.
    env.step_until(z, st_z, 6h, [&] {
        return z.find_enrollment(c1.id)->state == enrollment_state::completed &&
               z.find_enrollment(a2.id)->state == enrollment_state::completed;
    });
    CHECK(env.sent_to("ana@prospect.example").size() == 3);  // s1 step 1, s2 steps 1 and 2
    CHECK(env.sent_to("bo@prospect.example").size() == 2);
    CHECK(env.sent_to("cy@prospect.example").size() == 2);
}

}  // namespace

TEST_CASE("an ingested replied event stops enrollments as record_reply does, once") {
    on_one_engine(replied_events_stop);
}

TEST_CASE("an ingested replied event: two engines on one SQLite file") {
    on_sqlite_file("seq-replied", replied_events_stop);
}

TEST_CASE("an ingested replied event: two engines on PostgreSQL") {
    on_postgres("seqreplied", replied_events_stop);
}

namespace {

webhook_result delivered(std::string send_id, std::string recipient, std::string dedup) {
    return provider_event(event_type::delivered, std::move(send_id), std::move(recipient),
                          std::move(dedup));
}

// `not_sent` sends the held step again, once, under a key of its own, and
// the sequence goes on from the re-send: two resolvers at once, one wins;
// a late event about the unknown send cancels a re-send still waiting, and
// changes nothing once the re-send went (a reply to it still stops the
// enrollment); a suppression before the re-send stops it; a held second
// step goes again as the same reply. `a` resolves, `z` sends.
void resend_after_not_sent(seq_env& env, engine& a, engine& z, store& st_z) {
    const auto e = four_held(env, a, z, st_z);
    const auto key = [&](int i, const std::string& step) {
        return "seq:s1:" + std::to_string(e[i].id) + ":" + step;
    };
    for (const auto& x : e) REQUIRE(z.find_enrollment(x.id)->state == enrollment_state::unresolved);
    // The re-sends wait in the queue while rep1 is paused.
    a.pause(env.admin, {pause_scope::mailbox, "rep1"}, "looking the sends up");
    const auto log = a.audit_log().size();
    std::atomic<int> wins{0};
    {
        std::thread t1(
            [&] { wins += a.resolve_unknown_step(env.admin, e[0].id, step_resolution::not_sent); });
        std::thread t2(
            [&] { wins += z.resolve_unknown_step(env.admin, e[0].id, step_resolution::not_sent); });
        t1.join();
        t2.join();
    }
    CHECK(wins == 1);
    CHECK_FALSE(a.resolve_unknown_step(env.admin, e[0].id, step_resolution::not_sent));
    CHECK_FALSE(a.resolve_unknown_step(env.admin, e[0].id, step_resolution::sent));
    for (int i = 1; i < 4; ++i)
        CHECK(a.resolve_unknown_step(env.admin, e[i].id, step_resolution::not_sent));
    env.settle(z, st_z);
    for (int i = 0; i < 4; ++i) {
        const auto x = z.find_enrollment(e[i].id);
        CHECK(x->state == enrollment_state::active);
        CHECK(x->step == 0);
        CHECK(x->attempt == 1);
        CHECK(x->queue_key.starts_with(key(i, "1~1/")));
    }
    CHECK(env.capture->count() == 4);
    const auto has = [](const std::string& text, std::string_view part) {
        return text.find(part) != std::string::npos;
    };
    std::size_t resolved = 0;
    for (const auto& r : a.audit_log(log + 1))
        if (r.action == "enrollment.resolve" && r.resource_id == std::to_string(e[1].id)) {
            ++resolved;
            CHECK(has(r.before, R"("state":"unresolved")"));
            CHECK(has(r.before, R"("step":1,"attempt":0)"));
            CHECK(has(r.after, R"("state":"active")"));
            CHECK(has(r.after, R"("step":0,"attempt":1)"));
        }
    CHECK(resolved == 1);

    // e1: the provider reports its first send delivered while the re-send
    // waits: the re-send is cancelled, the step counts once.
    const auto first1 = send_id_of(st_z, env.workspace, key(1, "1"));
    REQUIRE_FALSE(first1.empty());
    a.apply_webhook(webhook_provider::postmark, delivered(first1, rcpt(1), "late-1"));
    {
        const auto x = z.find_enrollment(e[1].id);
        CHECK(x->state == enrollment_state::active);
        CHECK(x->step == 1);
        CHECK(x->attempt == 0);
    }
    // e2: suppressed between the resolution and the re-send: stopped.
    a.suppress(env.admin, suppression_kind::address, rcpt(2), suppression_reason::unsubscribe);
    CHECK(z.find_enrollment(e[2].id)->state == enrollment_state::stopped);
    // e0 waits while e1's second step is tried.
    CHECK(a.pause_enrollment(env.admin, e[0].id));

    // The pause ends: e3's re-send goes, once, under its own key, the same
    // message with a new Message-ID.
    a.resume(env.admin, {pause_scope::mailbox, "rep1"});
    env.step_until(z, st_z, 1min, [&] { return env.capture->count() == 5; });
    env.settle(z, st_z);
    CHECK(env.capture->count() == 5);
    REQUIRE(env.sent_to(rcpt(3)).size() == 2);
    {
        const auto sent = env.sent_to(rcpt(3));
        CHECK(sent[1].msg.subject == sent[0].msg.subject);
        CHECK(sent[1].msg.text == sent[0].msg.text);
        CHECK(sent[1].msg.message_id != sent[0].msg.message_id);
    }
    CHECK_FALSE(send_id_of(st_z, env.workspace, key(3, "1~1")).empty());
    CHECK(z.find_enrollment(e[3].id)->step == 1);
    CHECK(z.find_enrollment(e[3].id)->attempt == 0);
    // e3: its first send's late delivery changes nothing now; a reply to
    // it finds the enrollment and stops it.
    const auto first3 = send_id_of(st_z, env.workspace, key(3, "1"));
    const auto before = z.find_enrollment(e[3].id);
    a.apply_webhook(webhook_provider::postmark, delivered(first3, rcpt(3), "late-3"));
    CHECK(z.find_enrollment(e[3].id) == before);
    a.apply_webhook(webhook_provider::postmark, replied(first3, rcpt(3), "reply-3"));
    CHECK(z.find_enrollment(e[3].id)->stop_reason == enrollment_stop::replied);

    // e1's second step (a reply to its first send) ends unknown; sent
    // again, it is the same reply.
    env.faults->unknown_nth(env.faults->calls() + 1);
    env.step_until(z, st_z, 1h, [&] { return env.sent_to(rcpt(1)).size() == 2; });
    env.settle(z, st_z);
    CHECK(z.find_enrollment(e[1].id)->state == enrollment_state::unresolved);
    CHECK(a.resolve_unknown_step(env.admin, e[1].id, step_resolution::not_sent));
    env.step_until(z, st_z, 1min, [&] { return env.sent_to(rcpt(1)).size() == 3; });
    env.settle(z, st_z);
    {
        const auto sent = env.sent_to(rcpt(1));
        CHECK(sent[1].msg.in_reply_to == sent[0].msg.message_id);
        CHECK(sent[2].msg.in_reply_to == sent[1].msg.in_reply_to);
        CHECK(sent[2].msg.references == sent[1].msg.references);
        CHECK(sent[2].msg.subject == sent[1].msg.subject);
        CHECK(sent[2].msg.message_id != sent[1].msg.message_id);
    }
    CHECK_FALSE(send_id_of(st_z, env.workspace, key(1, "2~1")).empty());
    CHECK(z.find_enrollment(e[1].id)->state == enrollment_state::completed);

    // e0: its re-send goes once resumed, and its second step replies to it.
    CHECK(a.resume_enrollment(env.admin, e[0].id));
    env.step_until(z, st_z, 6h, [&] {
        return z.find_enrollment(e[0].id)->state == enrollment_state::completed;
    });
    {
        const auto sent = env.sent_to(rcpt(0));
        REQUIRE(sent.size() == 3);
        CHECK(sent[2].msg.in_reply_to == sent[1].msg.message_id);
    }
    env.clock->advance(72h);
    env.settle(z, st_z);
    CHECK(env.capture->count() == 9);
    CHECK(env.sent_to(rcpt(2)).size() == 1);
    CHECK(env.sent_to(rcpt(3)).size() == 2);
}

}  // namespace

TEST_CASE("step send keys: the attempt after '~', keys without one read as attempt 0") {
    using detail::parse_send_key;
    using detail::step_send_key;
    CHECK(step_send_key("seq:s:7:3", 0) == "seq:s:7:3");
    CHECK(step_send_key("seq:s:7:3", 2) == "seq:s:7:3~2");
    const auto old = parse_send_key("seq:s:7:3");
    REQUIRE(old);
    CHECK(old->sequence_id == "s");
    CHECK(old->enrollment == 7);
    CHECK(old->step == 2);
    CHECK(old->attempt == 0);
    // The sequence id may hold ':' and '~'; the key is read from its end.
    const auto k = parse_send_key("seq:a:b~c:7:3~2");
    REQUIRE(k);
    CHECK(k->sequence_id == "a:b~c");
    CHECK(k->enrollment == 7);
    CHECK(k->step == 2);
    CHECK(k->attempt == 2);
    for (const char* bad : {"seq:s:7:3~", "seq:s:7:3~0", "seq:s:7:3~x", "seq:s:7:~1", "seq:s:7:3x",
                            "seq:s:x:3", "seq:s:7:0", "seq:7:3", "campaign:c:1", "seq:s:7:3~1~1"})
        CHECK_MESSAGE(!parse_send_key(bad), bad);
}

TEST_CASE("not_sent sends the held step again, once, under a key of its own") {
    on_one_engine(resend_after_not_sent);
}

TEST_CASE("not_sent re-sends with two engines on one SQLite file") {
    on_sqlite_file("seq-resend", resend_after_not_sent);
}

TEST_CASE("not_sent re-sends with two engines on PostgreSQL") {
    on_postgres("seqresend", resend_after_not_sent);
}

namespace {

// Each .eml file in `folder`, as (recipient, subject).
std::map<std::pair<std::string, std::string>, int> files_by_step(
    const std::filesystem::path& folder) {
    std::map<std::pair<std::string, std::string>, int> out;
    if (!std::filesystem::exists(folder)) return out;
    for (const auto& f : std::filesystem::directory_iterator(folder)) {
        if (f.path().extension() != ".eml") continue;
        std::ifstream in(f.path());
        std::string line, to, subject;
        while (std::getline(in, line) && line != "\r" && !line.empty()) {
            if (!line.empty() && line.back() == '\r') line.pop_back();
            if (line.starts_with("To: ")) to = line.substr(4);
            if (line.starts_with("Subject: ")) subject = line.substr(9);
        }
        ++out[{to, subject}];
    }
    return out;
}

}  // namespace

namespace {

// Enrolls 150 contacts in a two-step sequence, then, ten times over, lets
// `processes` children drain the workspace together and kills them all
// with SIGKILL at a random moment after `life`; a last engine finishes the
// run. No step
// may go out twice, and every step that did not go out must be one a kill
// left `unknown`.
void killed_again_and_again(const std::function<std::shared_ptr<store>()>& open,
                            const std::string& workspace, int processes,
                            const std::filesystem::path& out, std::chrono::milliseconds life) {
    constexpr int n = 150, rounds = 10;
    {
        seq_env env;
        env.workspace = workspace;
        auto eng = env.make(open(), false);
        eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
        eng->upsert_sequence(env.admin, two_steps("s1", "rep1"));
        for (int i = 0; i < n; ++i) eng->enroll(env.admin, "s1", contact(rcpt(i)));
    }
    std::mt19937 rng(11);
    for (int round = 0; round < rounds; ++round) {
        std::vector<pid_t> children;
        for (int c = 0; c < processes; ++c) {
            const pid_t pid = ::fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                // The child reports nothing: it is killed. doctest's state
                // belongs to the parent.
                try {
                    seq_env env;
                    env.clock->advance(std::chrono::hours(30 * round));
                    auto eng = env.drain_env::make(
                        open(), workspace,
                        std::make_shared<file_transport>(env.ioc.get_executor(), out));
                    // An hour of simulated time per 2 ms of real time.
                    for (;;) {
                        env.ioc.restart();
                        env.ioc.run_for(2ms);
                        std::this_thread::sleep_for(2ms);
                        env.clock->advance(1h);
                    }
                } catch (...) {
                }
                ::_exit(1);
            }
            children.push_back(pid);
        }
        std::this_thread::sleep_for(life + std::chrono::milliseconds(rng() % 200));
        for (const pid_t pid : children) ::kill(pid, SIGKILL);
        for (const pid_t pid : children) {
            int status = 0;
            ::waitpid(pid, &status, 0);
        }
    }
    MESSAGE("steps sent by the killed processes: " << files_by_step(out).size());
    // A last process finishes the run.
    seq_env env;
    env.workspace = workspace;
    env.clock->advance(std::chrono::hours(30 * rounds));
    auto st = open();
    auto eng = env.drain_env::make(st, workspace,
                                   std::make_shared<file_transport>(env.ioc.get_executor(), out));
    env.settle(*eng, *st);
    // A kill mid-send holds its step's enrollment `unresolved`: resolved
    // here as an operator who found the message at the provider would.
    std::size_t held = 0;
    for (int i = 0; i < 1000; ++i) {
        bool resolved = false;
        for (const auto& e : eng->enrollments({.state = enrollment_state::unresolved})) {
            resolved |= eng->resolve_unknown_step(env.admin, e.id, step_resolution::sent);
            ++held;
        }
        if (resolved) {
            env.settle(*eng, *st);
            continue;
        }
        if (!eng->queue_counts().next_due) break;
        env.clock->advance(
            std::max<duration>(*eng->queue_counts().next_due - env.clock->now(), 1s));
        env.settle(*eng, *st);
    }
    MESSAGE("enrollments a kill left unresolved: " << held);
    for (const auto& e : eng->enrollments()) {
        if (e.state == enrollment_state::completed) continue;
        std::string q = "none";
        for (const auto& item : eng->queued())
            if (item.idempotency_key == e.queue_key)
                q = std::string(to_string(item.state)) + " " + item.detail;
        FAIL_CHECK("enrollment " << e.id << " " << to_string(e.state) << " step " << e.step
                                 << " key '" << e.queue_key << "' plans " << e.plans
                                 << " item: " << q << " detail: " << e.detail);
    }
    const auto files = files_by_step(out);
    for (const auto& [k, count] : files) {
        INFO(k.first << " / " << k.second);
        CHECK(count == 1);
    }
    // A kill between a send's reservation and the record of its outcome
    // leaves it `unknown`: it may or may not have gone, and it is never sent
    // again (the ledger's at-most-once). No step went out twice, and every
    // step that did not go out is one of those.
    std::size_t unknown = 0;
    st->for_each_send(workspace, test_epoch() - 24h, env.clock->now() + 24h,
                      [&](const ledger_row& r) {
                          if (r.state == send_state::unknown) ++unknown;
                      });
    MESSAGE("steps: " << 2 * n << ", sent: " << files.size()
                      << ", left unknown by a kill: " << unknown);
    CHECK(files.size() <= 2 * n);
    CHECK(files.size() + unknown >= 2 * n);
    std::uint32_t steps = 0;
    for (const auto& e : eng->enrollments()) steps += e.step;
    CHECK(steps == 2 * n);
}

}  // namespace

TEST_CASE("killed with SIGKILL mid-run again and again: no duplicate, no lost step") {
    db_file db("seq-crash");
    const std::filesystem::path out = db.path.string() + ".out";
    killed_again_and_again(
        [&] {
            return open_sqlite_store({db.path.string(), open_mode::open_or_create});
        },
        "default", 1, out, 40ms);
    std::filesystem::remove_all(out);
}

TEST_CASE("two processes on PostgreSQL killed with SIGKILL again and again: the same") {
    seq_env env;
    const auto p = pg_params(env, "seq-crash");
    if (!p) return;
    db_file db("seq-crash-pg");
    const std::filesystem::path out = db.path.string() + ".out";
    // Longer lives: connecting to the server takes part of each.
    killed_again_and_again([&] { return open_postgres_store(*p); }, env.workspace, 2, out, 300ms);
    std::filesystem::remove_all(out);
}

namespace {

// Threads enroll the same contacts through two engines while others
// suppress some of them: each contact is enrolled once, and once the
// engines settle no suppressed address has a live enrollment (an enroll
// that checked just before a suppression committed is stopped when its
// step is planned) and none was sent a step after its suppression.
void concurrent_enrolls_and_suppressions(seq_env& env,
                                         const std::function<std::shared_ptr<store>()>& open) {
    auto st1 = open();
    auto e1 = env.make(st1);
    auto st2 = open();
    auto e2 = env.make(st2);
    e1->upsert_mailbox(env.admin, env.mailbox("rep1"));
    e1->upsert_sequence(env.admin, two_steps("s1", "rep1"));
    constexpr int contacts = 24, threads = 4;
    std::atomic<int> enrolled{0}, duplicate{0}, refused{0};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
        pool.emplace_back([&, t] {
            engine& e = t % 2 ? *e1 : *e2;
            for (int i = 0; i < contacts; ++i) {
                const auto ec = code_of([&] { e.enroll(env.admin, "s1", contact(rcpt(i))); });
                if (ec == errc{})
                    ++enrolled;
                else if (ec == errc::duplicate)
                    ++duplicate;
                else if (ec == errc::suppressed)
                    ++refused;
                else
                    FAIL_CHECK("enroll: " << static_cast<int>(ec));
            }
        });
    pool.emplace_back([&] {
        for (int i = 0; i < contacts; i += 3)
            (i % 2 ? *e1 : *e2)
                .suppress(env.admin, suppression_kind::address, rcpt(i),
                          suppression_reason::unsubscribe);
    });
    // The io_context runs while the threads work: sends complete on it.
    env.run_until([&] { return enrolled + duplicate + refused == contacts * threads; });
    for (auto& th : pool) th.join();
    CHECK(enrolled.load() <= contacts);
    env.clock->advance(72h);
    env.settle(*e1, *st1);
    // Steps whose first went out after the clock moved are due later.
    for (int i = 0; i < 100 && e1->queue_counts().next_due; ++i) {
        env.clock->advance(std::max<duration>(*e1->queue_counts().next_due - env.clock->now(), 1s));
        env.settle(*e1, *st1);
    }
    std::map<std::string, int> per_address;
    for (const auto& e : e1->enrollments()) {
        ++per_address[e.address];
        const int i = std::stoi(e.address.substr(1));
        if (i % 3 == 0) {
            INFO(e.address);
            CHECK(e.state == enrollment_state::stopped);
        } else {
            CHECK(e.state == enrollment_state::completed);
        }
    }
    CHECK(static_cast<int>(per_address.size()) == enrolled.load());
    for (const auto& [a, n] : per_address) CHECK(n == 1);
    // No step to a suppressed address after the first step (the only one
    // that may have gone before its suppression).
    for (int i = 0; i < contacts; i += 3) CHECK(env.sent_to(rcpt(i)).size() <= 1);
    for (int i = 1; i < contacts; ++i)
        if (i % 3) CHECK(env.sent_to(rcpt(i)).size() == 2);
}

}  // namespace

TEST_CASE("concurrent enrolls and suppressions through two engines on one SQLite file") {
    db_file db("seq-concurrent");
    seq_env env;
    concurrent_enrolls_and_suppressions(env, [&] {
        return open_sqlite_store({db.path.string(), open_mode::open_or_create});
    });
}

TEST_CASE("concurrent enrolls and suppressions through two engines on PostgreSQL") {
    seq_env env;
    const auto p = pg_params(env, "seqc");
    if (!p) return;
    concurrent_enrolls_and_suppressions(env, [&] { return open_postgres_store(*p); });
}

// --- campaigns ------------------------------------------------------------------

namespace {

campaign_config campaign_of(const std::string& id, const std::string& pool, int n, int from = 0) {
    campaign_config c;
    c.id = id;
    c.name = "Launch";
    c.content = content("Hello {{first_name|there}}", "{Hi|Hello} {{first_name}}");
    c.pool = pool;
    for (int i = from; i < from + n; ++i)
        c.recipients.push_back({contact(rcpt(i)), {{"first_name", "P" + std::to_string(i)}}});
    return c;
}

/// A pool "sdr" of `n` mailboxes, each capped at `per_day` a calendar day.
void capped_pool(seq_env& env, engine& eng, int n, std::uint64_t per_day) {
    pool_config pool;
    pool.id = "sdr";
    for (int i = 0; i < n; ++i) {
        const auto id = "rep" + std::to_string(i);
        eng.upsert_mailbox(env.admin,
                           env.mailbox(id, {rate_limit::per_day(per_day, window_kind::calendar)}));
        pool.mailboxes.push_back(id);
    }
    eng.upsert_pool(env.admin, pool);
}

/// Moves the clock to each next due time until `done` holds.
void jump_until(seq_env& env, engine& eng, store& st, const std::function<bool()>& done) {
    env.settle(eng, st);
    for (int jumps = 0; !done(); ++jumps) {
        REQUIRE(jumps < 5000);
        const auto next = eng.queue_counts().next_due;
        REQUIRE(next.has_value());
        env.clock->advance(std::max<duration>(*next - env.clock->now(), 1s));
        env.settle(eng, st);
    }
}

/// The error code `f` throws, and its message in `what`.
errc refusal(const std::function<void()>& f, std::string& what) {
    try {
        f();
    } catch (const mailers::exception& e) {
        what = e.what();
        return static_cast<errc>(e.code().value());
    }
    return errc{};
}

std::int64_t day_of(time_point t) {
    return std::chrono::floor<std::chrono::days>(t).time_since_epoch().count();
}

}  // namespace

TEST_CASE("campaign: 1,000 recipients over 10 mailboxes capped at 30 a day") {
    db_file db("campaign-caps");
    seq_env env;
    auto st = open_sqlite_store({db.path.string(), open_mode::create});
    auto eng = env.make(st);
    capped_pool(env, *eng, 10, 30);
    std::atomic<int> sent_events{0}, other_events{0};
    eng->on_event([&](const event& e) {
        if (e.type != event_type::sent) return;
        (e.campaign == "launch" ? sent_events : other_events)++;
    });
    constexpr int n = 1000;
    const auto cfg = campaign_of("launch", "sdr", n);
    const auto info = eng->start_campaign(env.admin, cfg);
    CHECK(info.total == n);
    CHECK(info.suppressed_at_start == 0);
    env.settle(*eng, *st);
    auto p = eng->campaign_progress("launch");
    CHECK(env.capture->count() == 300);
    CHECK(p.sent == 300);
    CHECK(p.waiting == 700);
    CHECK(p.waiting_by_reason == std::vector<std::pair<std::string, std::uint64_t>>{{"cap", 700}});
    CHECK(p.remaining == 700);
    CHECK(p.not_queued == 0);
    // Started again, here: nothing is queued twice.
    const auto queued = eng->queue_counts();
    CHECK(eng->start_campaign(env.admin, cfg).digest == info.digest);
    CHECK(eng->queue_counts() == queued);
    CHECK(eng->campaign_progress("launch") == p);
    // Each day the progress matches what went out.
    std::map<std::int64_t, int> per_day;
    std::map<std::pair<std::string, std::int64_t>, int> per_mailbox_day;
    jump_until(env, *eng, *st, [&] {
        const auto pr = eng->campaign_progress("launch");
        const auto out = static_cast<std::uint64_t>(env.capture->count());
        CHECK(pr.sent == out);
        CHECK(pr.waiting + pr.in_flight == n - out);
        CHECK(pr.remaining == n - out);
        return pr.finished();
    });
    std::set<std::string> to;
    for (const auto& o : env.capture->sent()) {
        ++per_day[day_of(*o.msg.date)];
        ++per_mailbox_day[{o.mailbox_id, day_of(*o.msg.date)}];
        to.insert(o.msg.to.front().addr_spec());
        CHECK(o.msg.subject.starts_with("Hello P"));
    }
    CHECK(to.size() == n);
    std::vector<int> days;
    for (auto [d, k] : per_day) days.push_back(k);
    INFO("sent per day: " << days_text(days));
    CHECK(days == std::vector<int>{300, 300, 300, 100});
    for (auto [k, sent] : per_mailbox_day) CHECK(sent <= 30);
    env.run_until([&] { return sent_events.load() == n; });
    CHECK(other_events.load() == 0);
    CHECK(eng->campaigns().size() == 1);
}

TEST_CASE("campaign: bad input is refused with a clear error and changes nothing") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    capped_pool(env, *eng, 2, 30);
    const auto audit_before = eng->audit_log().size();
    auto refused = [&](campaign_config c, errc want, std::string_view says) {
        std::string what;
        const auto ec = refusal([&] { eng->start_campaign(env.admin, c); }, what);
        INFO(what);
        CHECK(ec == want);
        CHECK(what.find(says) != std::string::npos);
        CHECK(what.find("nothing was queued") != std::string::npos);
        CHECK(eng->queue_counts() == queue_summary{});
        CHECK(eng->campaigns().empty());
        CHECK(eng->audit_log().size() == audit_before);
    };
    auto c = campaign_of("c1", "sdr", 5);
    c.recipients[3].to = address{"not an address", "", ""};
    refused(c, errc::invalid_address, "recipient 4");
    c = campaign_of("c1", "sdr", 5);
    c.recipients[2].variables.clear();
    refused(c, errc::invalid_argument,
            "recipient 3 (p2@prospect.example): missing variable: "
            "first_name");
    c = campaign_of("c1", "sdr", 5);
    c.content.html = "<p>\n  {{first_name</p>";
    refused(c, errc::invalid_argument, "template: html, line 2, column");
    c = campaign_of("c1", "nope", 5);
    refused(c, errc::unknown_pool, "no pool 'nope'");
    c = campaign_of("c1", "sdr", 5);
    c.mailbox = "rep0";
    refused(c, errc::invalid_argument, "exactly one of a pool and a mailbox");
    c = campaign_of("c1", "sdr", 0);
    refused(c, errc::invalid_argument, "the list is empty");
    c = campaign_of("c 1", "sdr", 5);
    refused(c, errc::invalid_argument, "campaign id");
    c = campaign_of("c1", "sdr", 5);
    c.recipients[0].to.display_name = "Evil\r\nBcc: x@y.example";
    refused(c, errc::invalid_argument, "CR or LF");
    // Started once, the id holds that definition.
    eng->start_campaign(env.admin, campaign_of("c1", "sdr", 5));
    env.settle(*eng, *st);
    const auto queued = eng->queue_counts();
    c = campaign_of("c1", "sdr", 6);
    std::string what;
    CHECK(refusal([&] { eng->start_campaign(env.admin, c); }, what) == errc::duplicate);
    CHECK(eng->queue_counts() == queued);
    CHECK(code_of([&] { eng->campaign_progress("none"); }) == errc::not_found);
    CHECK(code_of([&] { eng->cancel_campaign(env.admin, "none"); }) == errc::not_found);
}

TEST_CASE("campaign: suppressed at start and mid-run, duplicates in the list, cancel") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    capped_pool(env, *eng, 1, 2);
    eng->suppress(env.admin, suppression_kind::address, rcpt(0), suppression_reason::unsubscribe);
    auto c = campaign_of("c2", "sdr", 8);
    c.recipients.push_back({contact("P1@Prospect.example"), {{"first_name", "again"}}});
    const auto info = eng->start_campaign(env.admin, c);
    CHECK(info.total == 8);
    CHECK(info.suppressed_at_start == 1);
    env.settle(*eng, *st);
    auto p = eng->campaign_progress("c2");
    CHECK(p.sent == 2);
    CHECK(p.suppressed_at_start == 1);
    CHECK(p.waiting == 5);
    CHECK(p.remaining == 5);
    // One that waits is suppressed: it is never sent, and counted.
    std::set<std::string> out;
    for (const auto& o : env.capture->sent()) out.insert(o.msg.to.front().addr_spec());
    int victim = 1;
    while (out.count(rcpt(victim))) ++victim;
    eng->suppress(env.admin, suppression_kind::address, rcpt(victim),
                  suppression_reason::hard_bounce);
    jump_until(env, *eng, *st, [&] {
        return eng->campaign_progress("c2").sent +
                   eng->campaign_progress("c2").suppressed_at_handoff >=
               5;
    });
    p = eng->campaign_progress("c2");
    CHECK(env.sent_to(rcpt(victim)).empty());
    CHECK(p.sent + p.suppressed_at_handoff + p.waiting + p.in_flight == 7);
    // Cancelled: what waits never goes, and starting again queues nothing.
    const auto waiting = p.waiting;
    REQUIRE(waiting > 0);
    CHECK(eng->cancel_campaign(env.admin, "c2") == waiting);
    const auto sent = env.capture->count();
    env.clock->advance(std::chrono::hours(24 * 7));
    env.settle(*eng, *st);
    CHECK(env.capture->count() == sent);
    CHECK(eng->start_campaign(env.admin, c).cancelled);
    p = eng->campaign_progress("c2");
    CHECK(p.cancelled == waiting);
    CHECK(p.waiting == 0);
    CHECK(p.remaining == 0);
    CHECK(p.cancelled_campaign);
    CHECK(p.sent + p.suppressed_at_handoff + p.cancelled + p.suppressed_at_start == p.total);
    bool audited_start = false, audited_cancel = false;
    for (const auto& r : eng->audit_log()) {
        audited_start |= r.action == "campaign.start" && r.resource_id == "c2";
        audited_cancel |= r.action == "campaign.cancel" && r.resource_id == "c2";
    }
    CHECK(audited_start);
    CHECK(audited_cancel);
}

TEST_CASE("campaign: starting and cancelling need enqueue over the campaign's pool") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    capped_pool(env, *eng, 1, 30);
    pool_config other;
    other.id = "other";
    other.mailboxes = {"rep0"};
    eng->upsert_pool(env.admin, other);
    eng->put_role(env.admin, {"admin", {permission::manage_access}});
    eng->put_role(env.admin, {"sender", {permission::enqueue, permission::send}});
    eng->grant_access(env.admin, {env.admin.id, "admin", {}});
    eng->grant_access(env.admin, {"bob", "sender", {access_scope::kind::pool, "other"}});
    eng->set_access_control(env.admin, true);
    const principal bob{"bob", "Bob"};
    CHECK(code_of([&] { eng->start_campaign(bob, campaign_of("c3", "sdr", 3)); }) ==
          errc::permission_denied);
    CHECK(eng->queue_counts() == queue_summary{});
    CHECK(eng->campaigns().empty());
    auto later = campaign_of("c3", "other", 3);
    later.not_before = env.clock->now() + 1h;
    eng->start_campaign(bob, later);
    CHECK(eng->campaign_progress("c3").total == 3);
    eng->grant_access(env.admin, {"eve", "sender", {access_scope::kind::pool, "sdr"}});
    CHECK(code_of([&] { eng->cancel_campaign({"eve", "Eve"}, "c3"); }) == errc::permission_denied);
    CHECK(eng->cancel_campaign(bob, "c3") == 3);
}

namespace {

// Fails every commit that queues sends once `allowed` of them went through,
// as a process killed part way through a start would leave it.
class cut_short_store final : public forwarding_store {
public:
    using forwarding_store::forwarding_store;
    commit_result commit(std::string_view ws, std::span<const store_op> ops) override {
        if (!ops.empty() && std::holds_alternative<store_ops::enqueue>(ops.front()) &&
            allowed-- <= 0)
            throw exception(make_error_code(errc::store_error), "injected: connection lost");
        return inner_->commit(ws, ops);
    }
    std::atomic<int> allowed{1 << 30};
};

}  // namespace

TEST_CASE("campaign: a start cut short shows what is not queued; starting again finishes it") {
    seq_env env;
    auto st = std::make_shared<cut_short_store>(open_sqlite_store({":memory:", open_mode::create}));
    auto eng = env.make(st);
    capped_pool(env, *eng, 2, 1000);
    constexpr int n = 1234;  // three commits of queued sends
    auto cfg = campaign_of("big", "sdr", n);
    cfg.not_before = env.clock->now() + 1h;
    st->allowed = 1;
    CHECK(code_of([&] { eng->start_campaign(env.admin, cfg); }) == errc::store_error);
    auto p = eng->campaign_progress("big");
    CHECK(p.total == n);
    CHECK(p.waiting == 500);
    CHECK(p.not_queued == n - 500);
    CHECK(p.remaining == n);
    st->allowed = 1 << 30;
    eng->start_campaign(env.admin, cfg);
    eng->start_campaign(env.admin, cfg);
    p = eng->campaign_progress("big");
    CHECK(p.waiting == n);
    CHECK(p.not_queued == 0);
    jump_until(env, *eng, *st, [&] { return eng->campaign_progress("big").finished(); });
    std::map<std::string, int> per_address;
    for (const auto& o : env.capture->sent()) ++per_address[o.msg.to.front().addr_spec()];
    CHECK(per_address.size() == n);
    for (const auto& [a, k] : per_address) CHECK(k == 1);
    CHECK(eng->campaign_progress("big").sent == n);
}

namespace {

// Two engines start one campaign at once and both drain it: each recipient
// is sent exactly once.
void one_campaign_two_engines(seq_env& env, const std::function<std::shared_ptr<store>()>& open) {
    auto st1 = open();
    auto e1 = env.make(st1);
    auto st2 = open();
    auto e2 = env.make(st2);
    capped_pool(env, *e1, 4, 25);
    constexpr int n = 160;
    const auto cfg = campaign_of("twice", "sdr", n);
    std::atomic<int> started{0};
    std::thread t1([&] {
        e1->start_campaign(env.admin, cfg);
        ++started;
    });
    std::thread t2([&] {
        e2->start_campaign(env.admin, cfg);
        ++started;
    });
    env.run_until([&] { return started.load() == 2; });
    t1.join();
    t2.join();
    const auto c = e1->queue_counts();  // one read: items move between states meanwhile
    CHECK(c.waiting + c.claimed + c.done == n);
    jump_until(env, *e1, *st1, [&] { return e2->campaign_progress("twice").finished(); });
    std::map<std::string, int> per_address;
    for (const auto& o : env.capture->sent()) ++per_address[o.msg.to.front().addr_spec()];
    CHECK(per_address.size() == n);
    for (const auto& [a, k] : per_address) CHECK(k == 1);
    CHECK(e1->campaign_progress("twice") == e2->campaign_progress("twice"));
    CHECK(e1->campaign_progress("twice").sent == n);
}

}  // namespace

TEST_CASE("campaign: two engines on one SQLite file send each recipient once") {
    db_file db("campaign-two");
    seq_env env;
    one_campaign_two_engines(env, [&] {
        return open_sqlite_store({db.path.string(), open_mode::open_or_create});
    });
}

TEST_CASE("campaign: two engines on PostgreSQL send each recipient once") {
    seq_env env;
    const auto p = pg_params(env, "camp");
    if (!p) return;
    one_campaign_two_engines(env, [&] { return open_postgres_store(*p); });
}

// --- forecast -------------------------------------------------------------------

namespace {

/// What the workspace's store holds, to show a forecast changed none of it.
struct store_marks {
    std::size_t audit = 0, sends = 0;
    queue_summary queue;
    std::size_t campaigns = 0, enrollments = 0, suppressions = 0;
    friend bool operator==(const store_marks&, const store_marks&) = default;
};

store_marks marks_of(engine& eng, store& st, const std::string& ws) {
    store_marks m;
    m.audit = eng.audit_log().size();
    st.for_each_send(ws, time_point{}, time_point::max(), [&](const ledger_row&) { ++m.sends; });
    m.queue = eng.queue_counts();
    m.campaigns = eng.campaigns().size();
    m.enrollments = eng.enrollments().size();
    m.suppressions = eng.suppression_count();
    return m;
}

using mailbox_days = std::map<std::pair<std::string, std::int64_t>, int>;

}  // namespace

TEST_CASE("forecast: past a cap of 40 a day, around the clock, one send about every 36 minutes") {
    // The queue's pacing, not the simulation's: a cap's period divided by
    // its max (docs/queue.md, "Spread, not burst").
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    capped_pool(env, *eng, 1, 40);
    forecast_request fr;
    fr.campaign = campaign_of("launch", "sdr", 45);
    fr.horizon = std::chrono::hours(24 * 3);
    const auto plan = eng->forecast(fr);
    REQUIRE(plan.sends.size() == 45);
    std::vector<time_point> at;
    for (const auto& p : plan.sends) at.push_back(p.at);
    std::sort(at.begin(), at.end());
    CHECK(day_of(at[39]) == day_of(plan.start));  // the first day's 40 as they fall due
    CHECK(day_of(at[40]) == day_of(plan.start) + 1);
    for (std::size_t i = 41; i < at.size(); ++i) {
        CHECK(at[i] - at[i - 1] > 35min);
        CHECK(at[i] - at[i - 1] <= 36min);  // 24 h / 40
    }
}

TEST_CASE("forecast: a campaign's plan is what the real run then sends, and changes nothing") {
    db_file db("forecast-campaign");
    seq_env env;
    auto st = open_sqlite_store({db.path.string(), open_mode::create});
    auto eng = env.make(st);
    capped_pool(env, *eng, 10, 30);
    eng->suppress(env.admin, suppression_kind::address, rcpt(7), suppression_reason::unsubscribe);
    constexpr int n = 1000;
    const auto cfg = campaign_of("launch", "sdr", n);
    const auto before = marks_of(*eng, *st, env.workspace);
    forecast_request fr;
    fr.campaign = cfg;
    fr.horizon = std::chrono::hours(24 * 10);
    const auto plan = eng->forecast(fr);
    CHECK(marks_of(*eng, *st, env.workspace) == before);
    CHECK(env.capture->count() == 0);
    CHECK(plan.complete);
    REQUIRE(plan.sends.size() == n - 1);
    REQUIRE(plan.unsent.size() == 1);
    CHECK(plan.unsent.front().recipient == rcpt(7));
    CHECK(plan.unsent.front().reason == "suppressed");
    mailbox_days planned;
    std::map<std::string, int> bound;
    for (const auto& p : plan.sends) {
        ++planned[{p.mailbox, day_of(p.at)}];
        ++bound[p.bound];
        CHECK(p.origin == "campaign:launch");
        CHECK_FALSE(p.existing);
    }
    CHECK(bound[""] == 300);
    CHECK(bound["cap"] == n - 1 - 300);
    REQUIRE(plan.last.has_value());
    CHECK(day_of(*plan.last) - day_of(plan.start) == 3);
    // The real run under the same clock.
    eng->start_campaign(env.admin, cfg);
    // Once started, what is left of it is forecast from the queue: the same plan.
    forecast_request left;
    left.follow = "campaign:launch";
    left.horizon = fr.horizon;
    const auto again = eng->forecast(left);
    CHECK(again.complete);
    CHECK(again.unsent.empty());
    mailbox_days followed;
    for (const auto& p : again.sends) {
        CHECK(p.existing);
        ++followed[{p.mailbox, day_of(p.at)}];
    }
    CHECK(followed == planned);
    CHECK(again.last == plan.last);
    left.horizon = std::chrono::hours(24);
    const auto part = eng->forecast(left);
    CHECK_FALSE(part.complete);
    CHECK(part.sends.size() + part.unsent.size() == n - 1);
    left.include_queue = false;
    CHECK_THROWS(eng->forecast(left));
    jump_until(env, *eng, *st, [&] { return eng->campaign_progress("launch").finished(); });
    mailbox_days real;
    time_point last{};
    for (const auto& o : env.capture->sent()) {
        ++real[{o.mailbox_id, day_of(*o.msg.date)}];
        last = std::max(last, *o.msg.date);
    }
    CHECK(real == planned);
    CHECK(day_of(last) == day_of(*plan.last));
}

TEST_CASE(
    "forecast: a sequence starts from today's sends, waits its delays, skips the suppressed") {
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    eng->upsert_mailbox(env.admin,
                        env.mailbox("rep1", {rate_limit::per_day(2, window_kind::calendar)}));
    eng->upsert_sequence(env.admin, two_steps("s1", "rep1"));
    // One of today's two sends is already made; another waits in the queue.
    send_request r;
    r.mailbox = "rep1";
    r.to = contact("earlier@prospect.example");
    r.subject = "Earlier";
    r.text = "Hi";
    eng->enqueue(r);
    env.settle(*eng, *st);
    REQUIRE(env.capture->count() == 1);
    r.to = contact("queued@prospect.example");
    enqueue_options later;
    later.not_before = env.clock->now() + 48h;
    eng->enqueue(r, later);
    eng->suppress(env.admin, suppression_kind::address, rcpt(2), suppression_reason::hard_bounce);
    const auto before = marks_of(*eng, *st, env.workspace);
    forecast_request fr;
    fr.sequence_id = "s1";
    for (int i = 0; i < 3; ++i) fr.contacts.push_back({contact(rcpt(i)), {}, ""});
    fr.horizon = std::chrono::hours(24 * 14);
    const auto plan = eng->forecast(fr);
    CHECK(marks_of(*eng, *st, env.workspace) == before);
    CHECK(plan.complete);
    REQUIRE(plan.unsent.size() == 1);
    CHECK(plan.unsent.front().recipient == rcpt(2));
    CHECK(plan.unsent.front().reason == "suppressed");
    std::map<std::int64_t, int> per_day;
    int existing = 0;
    for (const auto& p : plan.sends) {
        CHECK(p.mailbox == "rep1");
        ++per_day[day_of(p.at)];
        existing += p.existing;
    }
    CHECK(existing == 1);
    CHECK(plan.sends.size() == 5);  // 2 contacts x 2 steps, and the queued send
    for (auto [d, k] : per_day) CHECK(k + (d == day_of(plan.start)) <= 2);
    // Today's one free slot goes to the first contact's first step; the
    // second waits for the cap.
    const auto first = std::find_if(plan.sends.begin(), plan.sends.end(),
                                    [](const planned_send& p) { return !p.existing; });
    CHECK(day_of(first->at) == day_of(plan.start));
    CHECK(first->step == 1);
    CHECK(first->bound == "");
    int capped = 0;
    for (const auto& p : plan.sends) capped += p.bound == "cap";
    CHECK(capped >= 1);
    for (const auto& p : plan.sends)
        if (p.step == 2) CHECK(p.at - p.due < std::chrono::hours(24 * 3));
    REQUIRE(plan.last.has_value());
    CHECK(*plan.last > plan.start + std::chrono::hours(48));
}

TEST_CASE(
    "forecast: a step already waiting in the queue does not stand in for a forecast "
    "contact's step") {
    // The private store numbers enrollments from 1 again: the waiting step
    // of real enrollment 1 must not take the key of the forecast's first
    // contact's step.
    seq_env env;
    auto st = open_sqlite_store({":memory:", open_mode::create});
    auto eng = env.make(st);
    eng->upsert_mailbox(env.admin, env.mailbox("rep1"));
    eng->upsert_sequence(env.admin, two_steps("s1", "rep1"));
    eng->enroll(env.admin, "s1", contact(rcpt(0)), {});
    env.settle(*eng, *st);
    REQUIRE(env.capture->count() == 1);
    REQUIRE(eng->queue_counts().waiting == 1);  // its step 2, two days out
    forecast_request fr;
    fr.sequence_id = "s1";
    fr.contacts.push_back({contact(rcpt(1)), {}, ""});
    fr.horizon = std::chrono::hours(24 * 7);
    const auto plan = eng->forecast(fr);
    CHECK(plan.complete);
    std::vector<int> steps;
    for (const auto& p : plan.sends)
        if (p.recipient == rcpt(1)) steps.push_back(p.step);
    CHECK(steps == std::vector<int>{1, 2});
    int existing = 0;
    for (const auto& p : plan.sends) existing += p.existing;
    CHECK(existing == 1);
}
