"""Sequences: steps driven on a manual clock through the capture transport, stop rules,
enrollment and sequence pauses, and every refusal as its exception class."""

import datetime as dt
import email

import pytest

import mailers
from conftest import MONDAY, OPS, drive, sim_engine, wait_until

DAY = dt.timedelta(days=1)


def outreach(**kw):
    return mailers.Sequence("outreach", name="Q4 outreach", steps=[
        mailers.Step(mailers.SenderRule.owner(fallback_pool="sdr"), mailers.hours(0),
                     subject="{Quick|Short} question for {{company}}",
                     text="Hi {{first_name|there}},\nworth a call?\n"),
        mailers.Step(mailers.SenderRule.previous_step(), mailers.business_days(2),
                     text="Bumping this, {{first_name|there}}.\n", threading="reply"),
        mailers.Step(mailers.SenderRule.mailbox("founder"), mailers.days(7),
                     subject="A note from our founder", text="{{company}} and us.\n",
                     html="<p>{{company}} &amp; us</p>"),
    ], **kw)


@pytest.fixture
def sim(db):
    eng, clock = sim_engine(db)
    with eng:
        eng.upsert_sequence(outreach())
        yield eng, clock


def headers(c):
    return email.message_from_bytes(c.data)


def test_definition_round_trips(sim):
    eng, _ = sim
    assert eng.find_sequence("outreach") == outreach()
    assert eng.find_sequence("nope") is None
    other = outreach(time_zone="Europe/Berlin", holidays=["2026-12-24", "2026-12-31"],
                     business_weekdays=mailers.WEEKDAYS_MON_FRI & ~0x20,
                     on_enrolled_twice="merge", reply_stops="this_sequence",
                     goal_stops="every_sequence")
    other.id = "other"
    eng.upsert_sequence(other)
    assert eng.find_sequence("other") == other
    assert [s.id for s in eng.sequences()] == ["other", "outreach"]
    assert "sequence.upsert" in {r.action for r in eng.audit_log()}


def test_steps_ride_across_senders_and_thread(sim):
    eng, clock = sim
    events = eng.events()
    e = eng.enroll("outreach", "Ada Lovelace <ada@acme.example>", owner="rep2",
                   variables={"first_name": "Ada", "company": "Acme"})
    assert (e.state, e.step, e.address, e.owner, e.actor) == ("active", 0, "ada@acme.example",
                                                             "rep2", OPS.id)
    assert e.variables == {"first_name": "Ada", "company": "Acme"}

    # Step 1: the owner, a new thread, rendered with the contact's variables.
    due = eng.settle()
    [c1] = eng.captured("cap")
    assert c1.mailbox == "rep2" and c1.mail_from == "rep2@brand.com"
    assert c1.subject in ("Quick question for Acme", "Short question for Acme")
    assert c1.text == "Hi Ada,\nworth a call?\n"
    assert headers(c1)["In-Reply-To"] is None
    # Two business days later, at the same time of day.
    assert due == MONDAY + 2 * DAY
    e = eng.find_enrollment(e.id)
    assert (e.step, e.prev_mailbox, e.prev_message_id) == (1, "rep2", c1.message_id)

    # Step 2: the same mailbox, in the thread.
    clock.set(due)
    due = eng.settle()
    c2 = eng.captured("cap")[1]
    assert c2.mailbox == "rep2" and c2.subject == "Re: " + c1.subject
    assert c2.text == "Bumping this, Ada.\n"
    assert headers(c2)["In-Reply-To"] == f"<{c1.message_id}>"
    assert headers(c2)["References"] == f"<{c1.message_id}>"
    assert due == MONDAY + 9 * DAY

    # Step 3: the founder, a thread of its own, with an HTML part.
    clock.set(due)
    assert eng.settle() is None
    c3 = eng.captured("cap")[2]
    assert c3.mailbox == "founder" and c3.subject == "A note from our founder"
    assert c3.html == "<p>Acme &amp; us</p>" and headers(c3)["In-Reply-To"] is None
    e = eng.find_enrollment(e.id)
    assert (e.state, e.step) == ("completed", 3)

    sent = []
    while len(sent) < 3:
        ev = events.get(10)
        if ev.type == "sent":
            sent.append(ev)
    assert [(ev.sequence, ev.enrollment, ev.step) for ev in sent] == [
        ("outreach", e.id, 1), ("outreach", e.id, 2), ("outreach", e.id, 3)]
    assert [ev.mailbox for ev in sent] == ["rep2", "rep2", "founder"]
    assert all(ev.campaign == "" for ev in sent)


def test_without_an_owner_the_fallback_pool_sends(sim):
    eng, clock = sim
    eng.enroll("outreach", "bea@beta.example", variables={"company": "Beta"})
    eng.settle()
    [c] = eng.captured("cap")
    assert c.mailbox in ("rep1", "rep2") and c.text.startswith("Hi there,")


def test_a_reply_stops_the_enrollment(sim):
    eng, clock = sim
    a = eng.enroll("outreach", "ada@acme.example", variables={"company": "Acme"})
    b = eng.enroll("outreach", "bob@bolt.example", variables={"company": "Bolt"})
    eng.settle()
    by_rcpt = {c.rcpt_to[0]: c for c in eng.captured("cap")}
    # By the Message-ID of the step replied to, and by the replying address.
    assert eng.record_reply(f"<{by_rcpt['ada@acme.example'].message_id}>") == [a.id]
    assert eng.record_reply("bob@bolt.example") == [b.id]
    assert eng.record_reply("nobody@example.com") == []
    for e in (a, b):
        e = eng.find_enrollment(e.id)
        assert (e.state, e.stop_reason) == ("stopped", "replied")
    drive(eng, clock, MONDAY + 30 * DAY)
    assert len(eng.captured("cap")) == 2
    assert [e.id for e in eng.enrollments(state="stopped")] == [a.id, b.id]


def test_an_unsubscribe_stops_every_enrollment_of_the_address(sim):
    eng, clock = sim
    eng.upsert_sequence(mailers.Sequence("nurture", steps=[
        mailers.Step(mailers.SenderRule.pool("sdr"), mailers.days(3), subject="News",
                     text="t")]))
    a = eng.enroll("outreach", "ada@acme.example", variables={"company": "Acme"})
    n = eng.enroll("nurture", "ada@acme.example")
    eng.settle()
    assert len(eng.captured("cap")) == 1
    eng.suppress("ada@acme.example", reason="unsubscribe", source="one-click")
    for e in (a, n):
        e = eng.find_enrollment(e.id)
        assert (e.state, e.stop_reason) == ("stopped", "unsubscribed")
    drive(eng, clock, MONDAY + 30 * DAY)
    assert len(eng.captured("cap")) == 1
    # A goal stops only its own sequence's enrollment.
    c = eng.enroll("outreach", "cy@cyan.example", variables={"company": "Cyan"})
    d = eng.enroll("nurture", "cy@cyan.example")
    assert eng.record_goal("cy@cyan.example", "outreach") == [c.id]
    assert eng.find_enrollment(c.id).stop_reason == "goal"
    assert eng.find_enrollment(d.id).state == "active"


def test_pause_resume_and_stop(sim):
    eng, clock = sim
    e = eng.enroll("outreach", "ada@acme.example", owner="rep1", variables={"company": "Acme"})
    eng.settle()
    assert len(eng.captured("cap")) == 1
    # Step 2 waits in the queue for Wednesday; pausing takes it out.
    assert eng.queue_counts().waiting == 1
    assert eng.pause_enrollment(e.id)
    assert not eng.pause_enrollment(e.id)
    assert eng.queue_counts().waiting == 0 and eng.next_due() is None
    clock.set(MONDAY + 3 * DAY)
    eng.settle()
    assert len(eng.captured("cap")) == 1
    assert eng.find_enrollment(e.id).state == "paused"
    # Resumed after its due time: it goes at once.
    assert eng.resume_enrollment(e.id) and not eng.resume_enrollment(e.id)
    eng.settle()
    assert len(eng.captured("cap")) == 2

    eng.pause_sequence("outreach", reason="copy review")
    assert eng.is_sequence_paused("outreach")
    clock.set(MONDAY + 20 * DAY)  # step 3 fell due meanwhile
    eng.settle()
    assert len(eng.captured("cap")) == 2
    eng.resume_sequence("outreach")
    assert not eng.is_sequence_paused("outreach")
    with pytest.raises(mailers.NotFound):
        eng.resume_sequence("outreach")
    # The step waiting as "paused" is looked at again a minute (queue_recheck) on.
    drive(eng, clock, MONDAY + 21 * DAY)
    assert len(eng.captured("cap")) == 3
    assert eng.find_enrollment(e.id).state == "completed"
    assert not eng.stop_enrollment(e.id)

    e = eng.enroll("outreach", "bob@bolt.example", owner="rep1", variables={"company": "Bolt"})

    assert eng.stop_enrollment(e.id, reason="asked by sales")
    assert not eng.stop_enrollment(e.id)
    e = eng.find_enrollment(e.id)
    assert (e.state, e.stop_reason) == ("stopped", "manual")
    # Only an enrollment held by a step whose send ended unknown can be resolved.
    assert eng.enrollments(state="unresolved") == []
    assert not eng.resolve_unknown_step(e.id, "sent")
    with pytest.raises(mailers.NotFound):
        eng.resolve_unknown_step(424242, "not_sent")
    with pytest.raises(mailers.InvalidArgument):
        eng.resolve_unknown_step(e.id, "maybe")
    assert eng.find_enrollment(e.id).state == "stopped"
    actions = [r.action for r in eng.audit_log()]
    for a in ("enroll", "enrollment.pause", "enrollment.resume", "enrollment.stop",
              "sequence.pause", "sequence.resume"):
        assert a in actions, a


def test_enroll_refusals_enroll_nothing(sim):
    eng, _ = sim
    with pytest.raises(mailers.MissingVariables) as e:
        eng.enroll("outreach", "ada@acme.example", variables={"first_name": "Ada"})
    assert e.value.missing == ["company"] and e.value.recipient == "ada@acme.example"
    assert isinstance(e.value, mailers.InvalidArgument) and e.value.code == "invalid_argument"
    assert "company" in str(e.value)
    with pytest.raises(mailers.UnknownSequence) as e:
        eng.enroll("nope", "ada@acme.example")
    assert isinstance(e.value, mailers.NotFound) and e.value.code == "not_found"
    with pytest.raises(mailers.UnknownMailbox):
        eng.enroll("outreach", "ada@acme.example", owner="ghost", variables={"company": "A"})
    with pytest.raises(mailers.InvalidAddress):
        eng.enroll("outreach", "not-an-address", variables={"company": "A"})
    eng.suppress("gone@acme.example")
    with pytest.raises(mailers.Suppressed):
        eng.enroll("outreach", "gone@acme.example", variables={"company": "A"})
    assert eng.enrollments() == []

    first = eng.enroll("outreach", "ada@acme.example", variables={"company": "Acme"})
    with pytest.raises(mailers.Duplicate):
        eng.enroll("outreach", "ADA@acme.example", variables={"company": "Other"})
    merged = eng.enroll("outreach", "ada@acme.example", variables={"company": "Other"},
                        on_enrolled_twice="merge")
    assert merged.id == first.id and merged.variables == {"company": "Other"}
    with pytest.raises(mailers.InvalidArgument):
        eng.enroll("outreach", "ada@acme.example", on_enrolled_twice="sometimes")
    assert len(eng.enrollments(sequence_id="outreach", address="Ada@Acme.example")) == 1


def test_definition_refusals_change_nothing(sim):
    eng, _ = sim
    before = len(eng.audit_log())
    bad = outreach()
    bad.steps[1].text = "Bumping this,\n{{first_name"
    with pytest.raises(mailers.TemplateError) as e:
        eng.upsert_sequence(bad)
    err = e.value
    assert (err.step, err.field, err.part, err.line, err.column) == (2, "content", "text", 2, 1)
    assert "step 2" in str(err) and "line 2" in str(err) and err.reason
    assert isinstance(err, mailers.InvalidArgument)

    no_subject = mailers.Sequence("x", steps=[mailers.Step(mailers.SenderRule.pool("sdr"),
                                                           text="t")])
    with pytest.raises(mailers.InvalidArgument) as e:
        eng.upsert_sequence(no_subject)
    assert not isinstance(e.value, mailers.TemplateError) and "subject" in str(e.value)
    with pytest.raises(mailers.UnknownPool):
        eng.upsert_sequence(mailers.Sequence("x", steps=[mailers.Step(
            mailers.SenderRule.pool("nope"), subject="s", text="t")]))
    with pytest.raises(mailers.InvalidArgument):
        eng.upsert_sequence(mailers.Sequence("x", steps=[mailers.Step(
            mailers.SenderRule("carrier-pigeon"), subject="s", text="t")]))
    assert eng.find_sequence("outreach") == outreach()
    assert len(eng.audit_log()) == before

    with pytest.raises(mailers.UnknownSequence):
        eng.remove_sequence("nope")
    eng.remove_sequence("outreach")
    assert eng.sequences() == []


def test_template_compiles_checks_and_renders():
    t = mailers.Template(subject="{Hi|Hello} {{first_name|there}}",
                         text="{{#company}}At {{company}}.{{/company}} {{city}}")
    assert t.variables() == ["city", "company", "first_name"]
    assert t.required_variables() == ["city"]
    assert t.check({"company": "Acme"}) == (["city"], [])
    r = t.render({"company": "Acme", "city": "Oslo"}, seed=mailers.template_seed("e1", 1))
    assert r.subject in ("Hi there", "Hello there") and r.text == "At Acme. Oslo"
    assert t.render({"city": "Oslo"}, 1) == t.render({"city": "Oslo"}, 1)
    with pytest.raises(mailers.TemplateError) as e:
        t.render({}, 1)
    assert "city" in str(e.value)
    with pytest.raises(mailers.TemplateError) as e:
        mailers.Template(html="<p>\n  {{#open}} never closed</p>")
    assert (e.value.part, e.value.line) == ("html", 2) and e.value.column > 0


def test_two_engines_enroll_a_contact_once(db):
    import concurrent.futures

    a, clock = sim_engine(db)
    with a, mailers.Engine(db, actor=OPS, clock=clock, queue_poll_interval=0.005) as b:
        b.add_provider("cap", "capture://capture")
        a.upsert_sequence(outreach())
        wait_until(lambda: b.find_sequence("outreach"))  # through the change feed
        leads = [f"lead{i}@example.com" for i in range(20)]

        def enroll_all(eng):
            out = []
            for to in leads:
                try:
                    out.append(eng.enroll("outreach", to, variables={"company": "C"}).id)
                except mailers.Duplicate:
                    out.append(None)
            return out

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            ra, rb = pool.map(enroll_all, [a, b])
        assert all((x is None) != (y is None) for x, y in zip(ra, rb)), (ra, rb)
        assert len(a.enrollments()) == 20
        drive(a, clock, MONDAY + DAY)
        sent = a.captured("cap") + b.captured("cap")
        assert sorted(c.rcpt_to[0] for c in sent) == sorted(leads)
