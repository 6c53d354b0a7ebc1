"""Configuration objects and the records the engine returns.

Times are aware :class:`datetime.datetime` values in UTC (a naive one given
to the engine is taken as UTC); durations are seconds, and a
:class:`datetime.timedelta` is accepted wherever seconds are.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal, Optional, Union

Seconds = Union[int, float, _dt.timedelta]
WindowKind = Literal["rolling", "calendar"]
RotationPolicy = Literal["round_robin", "weighted", "priority"]
QuotaScope = Literal["provider", "sender_domain", "recipient_domain"]
SuppressionReason = Literal["unsubscribe", "hard_bounce", "complaint", "manual", "legal"]
PauseScope = Literal["workspace", "pool", "mailbox", "provider", "sender_domain"]
CountScope = Literal["workspace", "mailbox", "pool", "provider", "sender_domain"]
RuleMetric = Literal["hard_bounces", "bounces", "complaints", "failures"]
EventType = Literal["queued", "sent", "delivered", "deferred", "bounced", "complained",
                    "unsubscribed", "opened", "clicked", "rejected", "failed", "replied",
                    "suppressed", "no_capacity", "unknown", "paused", "alert", "auto_paused"]
OpenMode = Literal["existing", "create", "open_or_create"]
DelayUnit = Literal["hours", "days", "business_days"]
SenderKind = Literal["pool", "mailbox", "previous_step", "owner"]
Threading = Literal["new_thread", "reply"]
StopScope = Literal["this_sequence", "every_sequence"]
EnrollmentConflict = Literal["refuse", "merge"]
EnrollmentState = Literal["active", "paused", "completed", "stopped", "failed", "unresolved"]
StepResolution = Literal["sent", "not_sent"]
DeliveryState = Literal["pending", "claimed", "delivered", "failed"]

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)


def to_us(t: Optional[_dt.datetime]) -> int:
    if t is None:
        return 0
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.timezone.utc)
    return (t - _EPOCH) // _dt.timedelta(microseconds=1)


def from_us(us: Optional[int]) -> Optional[_dt.datetime]:
    if us is None:
        return None
    return _EPOCH + _dt.timedelta(microseconds=us)


def seconds(s: Seconds) -> int:
    if isinstance(s, _dt.timedelta):
        return int(s.total_seconds())
    return int(s)


# --- stores -------------------------------------------------------------------


@dataclass
class SQLite:
    """A workspace in one SQLite file (``":memory:"`` for a private one)."""

    path: str
    mode: OpenMode = "open_or_create"
    power_loss_safe: bool = False  #: fsync every commit (synchronous=FULL)

    def _native(self) -> dict:
        return {"kind": "sqlite", "path": str(self.path), "mode": self.mode,
                "power_loss_safe": self.power_loss_safe}


@dataclass
class Postgres:
    """A workspace in a PostgreSQL database shared by every process and host.

    ``conninfo`` is a libpq connection string or URI, or an ``env:NAME`` /
    ``file:/path`` reference to one.
    """

    conninfo: str
    schema: str = "mailers"
    mode: OpenMode = "open_or_create"
    pool_size: int = 4

    def _native(self) -> dict:
        return {"kind": "postgres", "conninfo": self.conninfo, "schema": self.schema,
                "mode": self.mode, "pool_size": self.pool_size}


# --- configuration ------------------------------------------------------------


@dataclass
class Principal:
    """Who acts: recorded in the audit log for every change."""

    id: str
    display_name: str = ""

    @staticmethod
    def system() -> "Principal":
        return Principal("system", "mailers")


@dataclass
class RateLimit:
    """At most ``max`` sends per ``length`` seconds, counted ``kind``."""

    max: int
    length: Seconds = 86400
    kind: WindowKind = "rolling"

    def __post_init__(self) -> None:
        self.length = seconds(self.length)


def per_minute(n: int, kind: WindowKind = "rolling") -> RateLimit:
    return RateLimit(n, 60, kind)


def per_hour(n: int, kind: WindowKind = "rolling") -> RateLimit:
    return RateLimit(n, 3600, kind)


def per_day(n: int, kind: WindowKind = "rolling") -> RateLimit:
    return RateLimit(n, 86400, kind)


@dataclass
class Warmup:
    """From ``start_date``: ``start`` a day, ``step`` more each day, up to ``target``."""

    start: int = 0
    step: int = 0
    target: int = 0
    start_date: Optional[_dt.datetime] = None


@dataclass
class SendWindow:
    """Local hours [start_hour, end_hour) on the weekdays in the bit set (bit 0 = Sunday)."""

    start_hour: int = 0
    end_hour: int = 24
    weekdays: int = 0x7F


WEEKDAYS_MON_FRI = 0x3E


@dataclass
class Breaker:
    failure_threshold: int = 5
    cool_down: Seconds = 300
    max_cool_down: Seconds = 3600

    def __post_init__(self) -> None:
        self.cool_down = seconds(self.cool_down)
        self.max_cool_down = seconds(self.max_cool_down)


@dataclass
class Mailbox:
    """One sender identity with its own caps, window, pacing and health.

    ``address`` is "user@domain" or "Display Name <user@domain>".
    """

    id: str
    address: str
    provider: str
    limits: list[RateLimit] = field(default_factory=list)
    max_recipients_per_message: int = 0
    warmup: Warmup = field(default_factory=Warmup)
    time_zone: str = "UTC"
    window: SendWindow = field(default_factory=SendWindow)
    min_gap: Seconds = 0
    jitter: Seconds = 0
    priority: int = 0
    weight: int = 1
    state: Literal["active", "paused", "retired"] = "active"
    breaker: Breaker = field(default_factory=Breaker)

    def __post_init__(self) -> None:
        self.min_gap = seconds(self.min_gap)
        self.jitter = seconds(self.jitter)

    def _native(self) -> dict:
        d = dataclasses.asdict(self)
        d["warmup"]["start_date"] = to_us(self.warmup.start_date)
        return d

    @classmethod
    def _from(cls, d: dict) -> "Mailbox":
        w = d.pop("warmup")
        w["start_date"] = from_us(w["start_date"]) if w["start_date"] else None
        return cls(limits=[RateLimit(**r) for r in d.pop("limits")], warmup=Warmup(**w),
                   window=SendWindow(**d.pop("window")), breaker=Breaker(**d.pop("breaker")),
                   **d)

    def apply(self, preset: str) -> "Mailbox":
        """Applies a provider preset ("google_workspace", "microsoft_365") as a ceiling."""
        from . import _mailers

        d = _mailers.apply_preset(self._native(), preset)
        return Mailbox._from(d)


@dataclass
class Pool:
    """A set of mailboxes a send draws from."""

    id: str
    mailboxes: list[str] = field(default_factory=list)
    policy: RotationPolicy = "round_robin"
    max_attempts: int = 3
    sticky_sender: bool = False


@dataclass
class Quota:
    """Limits shared by every mailbox of a provider, sender domain or recipient domain."""

    scope: QuotaScope
    key: str
    limits: list[RateLimit] = field(default_factory=list)
    time_zone: str = ""

    @classmethod
    def _from(cls, d: dict) -> "Quota":
        return cls(scope=d["scope"], key=d["key"], limits=[RateLimit(**r) for r in d["limits"]],
                   time_zone=d["time_zone"])


@dataclass
class Attachment:
    filename: str
    data: bytes
    content_type: str = ""
    content_id: str = ""  #: set for an inline part referenced as cid:<content_id>


# --- results ------------------------------------------------------------------


def _times(d: dict, *keys: str) -> dict:
    for k in keys:
        d[k] = from_us(d[k])
    return d


@dataclass(frozen=True)
class SendResult:
    send_id: str = ""
    state: Optional[str] = None  #: "reserved", "accepted", "failed", "unknown"
    mailbox: str = ""
    provider: str = ""
    message_id: str = ""
    provider_message_id: str = ""
    attempts: int = 0
    duplicate: bool = False  #: an earlier send had this idempotency key
    retry_at: Optional[_dt.datetime] = None  #: no capacity: earliest time a mailbox can send

    @classmethod
    def _from(cls, d: dict) -> "SendResult":
        return cls(**_times(d, "retry_at"))


@dataclass(frozen=True)
class Event:
    type: EventType
    at: _dt.datetime
    send_id: str = ""
    idempotency_key: str = ""
    mailbox: str = ""
    pool: str = ""
    provider: str = ""
    recipient: str = ""
    provider_message_id: str = ""
    message_id: str = ""
    bounce: str = "none"
    detail: str = ""
    retry_at: Optional[_dt.datetime] = None
    provider_event: str = ""
    dedup_key: str = ""
    diagnostic_code: str = ""
    campaign: str = ""  #: the campaign the send belongs to, else ""
    sequence: str = ""  #: the sequence of a step's send, else ""
    enrollment: Optional[int] = None  #: the enrollment id of a step's send, else None
    step: Optional[int] = None  #: the 1-based step of a step's send, else None
    provider_event_id: str = ""  #: the provider's id for a webhook event
    raw: str = ""  #: a webhook event's record as received, when kept

    @classmethod
    def _from(cls, d: dict) -> "Event":
        return cls(**_times(d, "at", "retry_at"))


@dataclass(frozen=True)
class MailboxStatus:
    id: str
    state: str
    health: str
    sent_today: int
    sent_this_hour: int
    effective_daily_cap: Optional[int]
    blocked: str  #: why it cannot send now ("none" when it can)
    next_eligible: Optional[_dt.datetime]


@dataclass(frozen=True)
class Stats:
    accepted: int = 0
    failed: int = 0
    unknown: int = 0
    suppressed: int = 0
    no_capacity: int = 0
    paused: int = 0
    rejected: int = 0
    duplicates: int = 0
    failovers: int = 0
    commits: int = 0
    committed_ops: int = 0


@dataclass(frozen=True)
class LatencyHistogram:
    """One stage of the send pipeline: ``counts[i]`` sends took [2**i, 2**(i+1))
    microseconds (``counts[0]``: under 2 µs); ``sum_us`` adds every time up."""

    counts: tuple[int, ...]
    sum_us: int

    def total(self) -> int:
        return sum(self.counts)

    def quantile_us(self, q: float) -> int:
        """The upper bound, in microseconds, of the bucket holding quantile ``q``
        (0..1); 0 when nothing was measured."""
        from . import _mailers
        return _mailers.latency_quantile_us(list(self.counts), q)


@dataclass(frozen=True)
class Latencies:
    """Where the time of a send goes, per stage, over every send since the engine
    started (sends refused from memory, such as a suppressed recipient, are in none)."""

    decide: LatencyHistogram    #: from the call to the reservation leaving for the store
    reserve: LatencyHistogram   #: the reservation's group commits
    handoff: LatencyHistogram   #: from the hand-off to the transport's answer
    record: LatencyHistogram    #: the outcome's group commit
    total: LatencyHistogram     #: from the call to completion

    @classmethod
    def _from(cls, d: dict) -> "Latencies":
        return cls(**{k: LatencyHistogram(tuple(v["counts"]), v["sum_us"]) for k, v in d.items()})


@dataclass(frozen=True)
class Role:
    id: str
    permissions: list[str]


@dataclass(frozen=True)
class AccessGrant:
    principal: str
    role: str
    scope: str = "workspace"  #: "workspace", "pool", "mailbox", "provider", "sequence"
    id: str = ""              #: "" for the workspace


@dataclass(frozen=True)
class AccessPolicy:
    """The workspace's roles (id order), grants and access-control switch."""

    enabled: bool
    roles: list[Role]
    grants: list[AccessGrant]

    @classmethod
    def _from(cls, d: dict) -> "AccessPolicy":
        return cls(d["enabled"], [Role(**r) for r in d["roles"]],
                   [AccessGrant(**g) for g in d["grants"]])


# --- erasure, export and retention (docs/privacy.md) --------------------------------


@dataclass(frozen=True)
class ErasureCounts:
    """What an erasure removed or scrubbed, per data class."""

    suppression_rows: int = 0    #: current, replaced and removed rows of the address
    sends: int = 0               #: ledger rows scrubbed (recipient, detail, key) and kept
    queued: int = 0              #: queue items emptied
    queue_cancelled: int = 0     #: of those, waiting items cancelled
    enrollments: int = 0         #: enrollments deleted, with their message records
    webhook_deliveries: int = 0  #: outbox rows deleted
    recorded_keys: int = 0       #: recorded event keys deleted
    soft_bounces: int = 0        #: soft-bounce records deleted


@dataclass(frozen=True)
class ErasureReport:
    """What ``erase_person`` did. ``hash`` is the keyed hash the person stays
    suppressed under: what the audit record names, and what to quote instead of
    the address."""

    hash: str
    at: _dt.datetime
    erased: ErasureCounts
    was_suppressed: bool  #: an address entry suppressed it before
    audit_seq: int        #: the erasure's audit record

    @classmethod
    def _from(cls, d: dict) -> "ErasureReport":
        return cls(d["hash"], from_us(d["at"]), ErasureCounts(**d["erased"]),
                   d["was_suppressed"], d["audit_seq"])


@dataclass(frozen=True)
class RetentionPolicy:
    """How long ``purge_retained`` keeps each class of data; 0 keeps it.

    ``sends``: ledger rows with a recorded outcome, from their reservation (at
    least 8 days: caps count the sends in their windows). ``webhook_deliveries``:
    outbound deliveries delivered or given up, from their last attempt.
    ``audit``: audit records, from their time; the newest always stays and the
    chain keeps verifying from its anchor (docs/audit.md). ``counts``: daily
    counts of the days that ended longer ago than this (at least 365 days)."""

    sends: Seconds = 0
    webhook_deliveries: Seconds = 0
    audit: Seconds = 0
    counts: Seconds = 0

    def _native(self) -> dict:
        return {"sends": seconds(self.sends),
                "webhook_deliveries": seconds(self.webhook_deliveries),
                "audit": seconds(self.audit),
                "counts": seconds(self.counts)}


@dataclass(frozen=True)
class RetentionReport:
    at: _dt.datetime
    sends: int               #: ledger rows forgotten
    webhook_deliveries: int  #: outbox rows forgotten
    audit_records: int       #: audit records purged
    counts: int              #: daily count and soft-bounce rows gone or changed
    anchor_seq: int          #: the first kept audit record (0: none was ever purged)
    audit_seq: int           #: the purge's audit record


@dataclass(frozen=True)
class SuppressionEntry:
    kind: str
    value: str
    reason: str
    source: str
    created_at: _dt.datetime


@dataclass(frozen=True)
class PauseInfo:
    scope: str
    id: str
    reason: str
    actor: str
    since: _dt.datetime


_DAY_US = 86_400_000_000


def to_day(d: _dt.date) -> int:
    """Days since 1970-01-01; a datetime counts on its UTC day."""
    if isinstance(d, _dt.datetime):
        return to_us(d) // _DAY_US
    return (d - _EPOCH.date()).days


def from_day(n: int) -> _dt.date:
    return _EPOCH.date() + _dt.timedelta(days=n)


@dataclass(frozen=True)
class DailyCount:
    """One UTC day's counts for one scope (docs/rules.md, "Daily counts")."""

    day: _dt.date
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    delivered: int = 0
    deferred: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    complained: int = 0
    unsubscribed: int = 0
    opened: int = 0
    clicked: int = 0

    @classmethod
    def _from(cls, d: dict) -> "DailyCount":
        return cls(**{**d, "day": from_day(d["day"])})


@dataclass
class SoftBouncePolicy:
    """``threshold`` soft bounces of one address within ``window_days`` days suppress it
    (reason "hard_bounce", source "soft-bounce-threshold"); 0 turns it off, the default."""

    threshold: int = 0
    window_days: int = 14


@dataclass
class PauseRule:
    """Pauses a target whose ``metric`` rate over its window reaches ``max_rate`` once
    ``min_volume`` sends are counted (docs/rules.md, "Pause rules"). ``target`` "" watches
    every target of ``scope``; ``window_sends`` above 0 replaces ``window_days`` with "the
    fewest recent days holding that many sends"."""

    id: str
    scope: PauseScope = "mailbox"
    target: str = ""
    metric: RuleMetric = "bounces"
    window_days: int = 28
    window_sends: int = 0
    max_rate: float = 0.02
    min_volume: int = 20
    grace_days: int = 7


def bounce_rate_preset(id: str, scope: PauseScope = "mailbox") -> PauseRule:
    """Bounces, 2% of sends over 28 days, at least 20 sends, 7 days of grace."""
    from . import _mailers

    return PauseRule(**_mailers.bounce_rate_preset(id, scope))


def complaint_rate_preset(id: str, scope: PauseScope = "sender_domain") -> PauseRule:
    """Complaints, 0.3% over 7 days (Gmail's line), at least 1000 sends, 7 days of grace."""
    from . import _mailers

    return PauseRule(**_mailers.complaint_rate_preset(id, scope))


@dataclass(frozen=True)
class RuleFiring:
    """What a pause rule measured when it paused ``scope``/``target``."""

    rule: str
    scope: str
    target: str
    count: int
    volume: int
    rate: float
    first_day: _dt.date
    last_day: _dt.date

    @classmethod
    def _from(cls, d: dict) -> "RuleFiring":
        return cls(rule=d["rule"], scope=d["scope"], target=d["target"], count=d["count"],
                   volume=d["volume"], rate=d["rate"], first_day=from_day(d["from_day"]),
                   last_day=from_day(d["to_day"]))


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    at: _dt.datetime
    actor: str
    action: str
    resource_type: str
    resource_id: str
    before: str
    after: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditHead:
    """A checkpoint to keep outside the store and pass to ``verify_audit``."""

    seq: int
    hash: str


@dataclass(frozen=True)
class QueuedSend:
    id: int
    idempotency_key: str
    pool: str
    mailbox: str
    origin: str
    state: str  #: "waiting", "claimed", "done", "cancelled"
    wait_reason: str
    send_id: int
    detail: str
    not_before: _dt.datetime


@dataclass(frozen=True)
class QueueCounts:
    waiting: int
    claimed: int
    done: int
    cancelled: int


@dataclass(frozen=True)
class Captured:
    """A message a ``capture://`` provider kept."""

    mail_from: str
    rcpt_to: list[str]
    from_: str
    to: list[str]
    subject: str
    text: str
    html: str
    message_id: str
    mailbox: str
    send_id: str
    data: bytes  #: the rendered RFC 5322 message

    @classmethod
    def _from(cls, d: dict) -> "Captured":
        d["from_"] = d.pop("from")
        return cls(**d)


@dataclass(frozen=True)
class StoredProvider:
    """A provider kept in the store (:meth:`Engine.save_provider`)."""

    id: str
    dsn: str  #: secrets only as ``env:NAME`` / ``file:/path`` references
    created_at: _dt.datetime
    updated_at: _dt.datetime
    #: whether this engine sends through the stored DSN (False when the host
    #: added a provider of this id, or the DSN does not build here)
    active: bool

    @classmethod
    def _from(cls, d: dict) -> "StoredProvider":
        return cls(**_times(d, "created_at", "updated_at"))


@dataclass(frozen=True)
class ProviderCheck:
    """How :meth:`Engine.check_provider` ended; on a failed check it is the
    raised error's ``result``."""

    provider: str  #: the provider's id ("" for a DSN given directly)
    transport: str  #: "smtp", "ses", "capture", ...
    ok: bool
    failure: Optional[str]  #: the failure class when not ok ("auth", "transient", ...)
    message: str  #: what was checked, or what failed


@dataclass(frozen=True)
class WebhookResult:
    http_status: int  #: what to answer the provider
    reason: str
    events: list[Event]
    suppressed: int
    already_suppressed: int
    duplicates: int  #: events already applied (a redelivery)


@dataclass(frozen=True)
class ParsedWebhook:
    """A provider's webhook request verified and read by :func:`parse_webhook` but not
    applied: answer a refused one ``http_status`` at once, and give an accepted one to
    ``Engine.apply_webhook``."""

    provider: str
    #: "events", "subscription_confirmation", "unsubscribe_confirmation", "ignored",
    #: "certificate_needed" or "rejected"
    outcome: str
    http_status: int  #: what to answer the provider
    reason: str
    events: list[Event]
    confirm_url: str  #: an SNS subscription confirmation's URL
    _native: Any = field(default=None, repr=False, compare=False)

    @property
    def accepted(self) -> bool:
        return 200 <= self.http_status < 300


@dataclass(frozen=True)
class DeliveryReportResult:
    """What ``ingest_delivery_report`` read from a bounce message and applied."""

    recognised: bool  #: False: not a bounce this parser knows (``reason`` says why)
    format: str  #: "rfc3464", "qmail" or "exim"
    original_message_id: str
    reason: str
    events: list[Event]
    suppressed: int
    already_suppressed: int
    duplicates: int


@dataclass(frozen=True)
class SuppressionProblem:
    kind: Optional[str]
    value: str
    audit_seq: int
    change_seq: int
    what: str


@dataclass(frozen=True)
class SuppressionReport:
    """``verify_suppressions``: the suppression rows checked against the audit trail."""

    ok: bool
    audit_chain_ok: bool
    broken_audit_seq: int
    rows: int
    superseded_rows: int
    changes: int
    problem_count: int
    problems: list[SuppressionProblem]


@dataclass(frozen=True)
class UnsubscribeResult:
    status: str  #: "valid", "malformed", "forged", "expired"
    recipient: str
    send_id: str
    suppressed: bool
    already: bool


# --- sequences -----------------------------------------------------------------


@dataclass
class Delay:
    """How long after the step before (the enrollment, for the first step) a step falls due:
    ``hours`` of elapsed time, or the same local time ``days`` or ``business_days`` later."""

    amount: int = 0
    unit: DelayUnit = "days"


def hours(n: int) -> Delay:
    return Delay(n, "hours")


def days(n: int) -> Delay:
    return Delay(n, "days")


def business_days(n: int) -> Delay:
    return Delay(n, "business_days")


@dataclass
class SenderRule:
    """Who sends a step: a mailbox drawn from pool ``id``, exactly mailbox ``id``, the
    mailbox of the step before, or the enrollment's owner. The last two send from
    ``fallback_pool`` when there is no such mailbox (without one, the enrollment fails)."""

    kind: SenderKind = "pool"
    id: str = ""
    fallback_pool: str = ""

    @staticmethod
    def pool(id: str) -> "SenderRule":
        return SenderRule("pool", id)

    @staticmethod
    def mailbox(id: str) -> "SenderRule":
        return SenderRule("mailbox", id)

    @staticmethod
    def previous_step(fallback_pool: str = "") -> "SenderRule":
        return SenderRule("previous_step", "", fallback_pool)

    @staticmethod
    def owner(fallback_pool: str = "") -> "SenderRule":
        return SenderRule("owner", "", fallback_pool)


@dataclass
class Step:
    """One step of a sequence: a template (docs/templates.md) sent ``delay`` after the
    step before, by ``sender``, in a thread of its own or as a ``"reply"`` in the
    previous step's thread (In-Reply-To, References, and "Re: " and its subject when
    ``subject`` is empty)."""

    sender: SenderRule
    delay: Delay = field(default_factory=Delay)
    subject: str = ""
    text: str = ""
    html: str = ""
    threading: Threading = "new_thread"

    def _native(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def _from(cls, d: dict) -> "Step":
        return cls(sender=SenderRule(**d.pop("sender")), delay=Delay(**d.pop("delay")), **d)


@dataclass
class Sequence:
    """Ordered steps that may ride across sender identities (docs/sequences.md).

    Days and business days of a pool step count in ``time_zone`` ("" is UTC) over
    ``business_weekdays`` (bit 0 = Sunday) and ``holidays`` ("YYYY-MM-DD"); a step
    sent by a known mailbox counts in that mailbox's zone and window weekdays."""

    id: str
    steps: list[Step] = field(default_factory=list)
    name: str = ""
    time_zone: str = ""
    business_weekdays: int = 0x3E
    holidays: list[str] = field(default_factory=list)
    on_enrolled_twice: EnrollmentConflict = "refuse"
    reply_stops: StopScope = "every_sequence"
    goal_stops: StopScope = "this_sequence"

    def _native(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def _from(cls, d: dict) -> "Sequence":
        return cls(steps=[Step._from(s) for s in d.pop("steps")], **d)


@dataclass(frozen=True)
class Enrollment:
    """One contact in one sequence, as the store keeps it."""

    id: int
    sequence_id: str
    address: str  #: normalised, as a suppression entry's value
    display_name: str
    variables: dict[str, str]
    owner: str
    actor: str  #: who enrolled the contact; its steps send as this principal
    state: EnrollmentState
    #: "none", "replied", "bounced", "unsubscribed", "suppressed", "goal", "manual"
    stop_reason: str
    detail: str
    step: int  #: 0-based index of the next step: the number of steps sent
    next_due: Optional[_dt.datetime]  #: when its next step is planned; None while queued or ended
    step_due: _dt.datetime
    queue_key: str
    prev_mailbox: str
    prev_message_id: str
    prev_subject: str
    prev_references: list[str]
    last_sent_at: Optional[_dt.datetime]
    enrolled_at: _dt.datetime
    updated_at: _dt.datetime
    version: int

    @classmethod
    def _from(cls, d: dict) -> "Enrollment":
        import json

        d["variables"] = json.loads(d["variables"]) if d["variables"] else {}
        d = _times(d, "next_due", "step_due", "enrolled_at", "updated_at", "last_sent_at")
        if d["last_sent_at"] == _EPOCH:
            d["last_sent_at"] = None
        return cls(**d)


# --- campaigns and forecasts -----------------------------------------------------


@dataclass
class Recipient:
    """A campaign recipient or a contact to enroll: an address and its template variables
    (and, for a forecast's contact, the owner mailbox)."""

    to: str
    variables: dict[str, str] = field(default_factory=dict)
    owner: str = ""


#: A recipient or contact: a :class:`Recipient`, an address, or a tuple of an address,
#: its variables and (for a forecast's contact) its owner mailbox.
RecipientLike = Union[Recipient, str, tuple[str, dict[str, str]], tuple[str, dict[str, str], str]]


def _recipients(items: Iterable[RecipientLike]) -> list[tuple[str, dict[str, str], str]]:
    out = []
    for r in items:
        if isinstance(r, str):
            r = Recipient(r)
        elif isinstance(r, tuple):
            r = Recipient(*r)
        out.append((r.to, dict(r.variables), r.owner))
    return out


@dataclass
class Campaign:
    """One template sent once to each recipient, through ``pool`` or from ``mailbox``,
    paced by the send queue (docs/campaigns.md). ``recipients`` are :class:`Recipient`,
    addresses, or (address, variables) tuples."""

    id: str
    recipients: list[RecipientLike] = field(default_factory=list)
    subject: str = ""
    text: str = ""
    html: str = ""
    pool: str = ""
    mailbox: str = ""
    name: str = ""
    reply_to: str = ""
    not_before: Optional[_dt.datetime] = None  #: nothing goes earlier; None: at once

    def _native(self) -> dict:
        return {"id": self.id, "name": self.name, "subject": self.subject, "text": self.text,
                "html": self.html, "pool": self.pool, "mailbox": self.mailbox,
                "reply_to": self.reply_to, "not_before": to_us(self.not_before),
                "recipients": [(to, v) for to, v, _ in _recipients(self.recipients)]}


@dataclass(frozen=True)
class CampaignInfo:
    """A started campaign, as the workspace keeps it (without its list)."""

    id: str
    name: str
    subject: str
    text: str
    html: str
    pool: str
    mailbox: str
    not_before: Optional[_dt.datetime]
    started_at: _dt.datetime
    actor: str
    total: int  #: distinct recipients in the list
    suppressed_at_start: int
    cancelled: bool
    digest: str

    @classmethod
    def _from(cls, d: dict) -> "CampaignInfo":
        d = _times(d, "not_before", "started_at")
        if d["not_before"] == _EPOCH:
            d["not_before"] = None
        return cls(**d)


@dataclass(frozen=True)
class CampaignProgress:
    """Where a campaign stands, read from the store's queue: every recipient is in
    exactly one of sent, failed, unknown, suppressed_at_start, suppressed_at_handoff,
    cancelled, in_flight, waiting and not_queued."""

    id: str
    total: int
    sent: int
    failed: int
    unknown: int
    suppressed_at_start: int
    suppressed_at_handoff: int
    cancelled: int
    in_flight: int
    waiting: int
    waiting_by_reason: dict[str, int]  #: "" (not yet looked at), "cap", "window", ...
    not_queued: int
    remaining: int  #: waiting + in_flight + not_queued
    next_due: Optional[_dt.datetime]
    cancelled_campaign: bool

    @property
    def finished(self) -> bool:
        return self.remaining == 0

    @classmethod
    def _from(cls, d: dict) -> "CampaignProgress":
        return cls(**_times(d, "next_due"))


@dataclass(frozen=True)
class PlannedSend:
    """A message the forecast sends."""

    at: _dt.datetime  #: simulated hand-off time
    due: _dt.datetime  #: when it first could go
    mailbox: str
    recipient: str
    origin: str  #: "campaign:<id>", "sequence:<id>/<step>", or a queued item's own
    step: int  #: 1-based sequence step; 0 for a campaign or queued send
    bound: str  #: what held it back last ("" none, "cap", "window", "gap", ...)
    existing: bool  #: already waiting in the workspace's queue


@dataclass(frozen=True)
class ForecastUnsent:
    recipient: str
    origin: str
    step: int
    reason: str  #: "suppressed", "failed", a stop reason, or what it still waits for
    detail: str
    waiting: bool  #: still waits at the horizon (else it ended unsent)


@dataclass(frozen=True)
class ForecastPlan:
    start: _dt.datetime
    end: _dt.datetime
    sends: list[PlannedSend]  #: in time order
    unsent: list[ForecastUnsent]
    last: Optional[_dt.datetime]  #: when the request's last message goes out
    complete: bool  #: every message of the request was sent or ended by ``end``

    @classmethod
    def _from(cls, d: dict) -> "ForecastPlan":
        return cls(start=from_us(d["start"]), end=from_us(d["end"]),  # type: ignore[arg-type]
                   sends=[PlannedSend(**_times(s, "at", "due")) for s in d["sends"]],
                   unsent=[ForecastUnsent(**u) for u in d["unsent"]],
                   last=from_us(d["last"]), complete=d["complete"])


# --- outbound webhooks ------------------------------------------------------------


@dataclass
class OutboundWebhooks:
    """How an engine delivers outbound webhooks (docs/webhooks.md, "Outbound webhooks").

    ``allow_private_targets`` and ``allow_http`` admit loopback, private and plain-http
    URLs (tests, private networks). The retry after attempt n waits a random time up to
    ``min(first_retry * 4**(n-1), max_retry)``."""

    deliver: bool = True
    allow_private_targets: bool = False
    allow_http: bool = False
    max_attempts: int = 9
    first_retry: Seconds = 5
    max_retry: Seconds = 86400
    disable_on_failure: bool = True
    timeout: float = 15.0  #: seconds, per request phase
    max_response_size: int = 64 * 1024
    poll_interval: float = 1.0  #: seconds between looks for due deliveries
    in_flight: int = 32
    retention: Seconds = 7 * 86400
    ca_file: str = ""

    def _native(self) -> dict:
        d = dataclasses.asdict(self)
        d["first_retry"] = seconds(self.first_retry)
        d["max_retry"] = seconds(self.max_retry)
        d["retention"] = seconds(self.retention)
        d["timeout_ms"] = int(d.pop("timeout") * 1000)
        d["poll_interval_ms"] = int(d.pop("poll_interval") * 1000)
        return d


@dataclass
class WebhookEndpoint:
    """A URL the engine POSTs events to, signed the Standard Webhooks way.

    ``secret``: "whsec_" and base64, an ``env:``/``file:`` reference, or "" to have one
    generated (returned by ``put_webhook_endpoint``). ``event_types``: the events sent
    ("sent", "bounced", ...); empty: every event."""

    id: str
    url: str
    secret: str = ""
    event_types: list[EventType] = field(default_factory=list)
    enabled: bool = True
    disabled_reason: str = ""
    description: str = ""


@dataclass(frozen=True)
class WebhookDelivery:
    """One event to be POSTed to one endpoint: a row of the outbox."""

    id: int
    endpoint: str
    message_id: str  #: the webhook-id header, the same on every attempt
    event_key: str
    event_type: str
    payload: str  #: the JSON body
    created_at: _dt.datetime
    due_at: _dt.datetime
    state: DeliveryState
    attempts: int
    last_status: int  #: the last attempt's HTTP status; 0 for none
    detail: str
    updated_at: _dt.datetime

    @classmethod
    def _from(cls, d: dict) -> "WebhookDelivery":
        return cls(**_times(d, "created_at", "due_at", "updated_at"))


@dataclass(frozen=True)
class WebhookDeliveryCounts:
    pending: int
    claimed: int
    delivered: int
    failed: int
    last_delivered: Optional[_dt.datetime]

    @classmethod
    def _from(cls, d: dict) -> "WebhookDeliveryCounts":
        return cls(**_times(d, "last_delivered"))


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


class Template:
    """A message template compiled once (docs/templates.md): variables, fallbacks,
    sections and spintax. A template that does not compile raises
    :class:`TemplateError` with its part, line and column."""

    def __init__(self, subject: str = "", text: str = "", html: str = "") -> None:
        from . import _mailers

        self._native = _mailers.Template(subject, text, html)

    def variables(self) -> list[str]:
        """Every variable it refers to, sorted."""
        return self._native.variables()

    def required_variables(self) -> list[str]:
        """Variables every render needs (used without a fallback outside any section)."""
        return self._native.required_variables()

    def check(self, variables: dict[str, str]) -> tuple[list[str], list[str]]:
        """(missing, invalid): what ``variables`` lacks for some render, and values
        that are not valid UTF-8 text."""
        return self._native.check(variables)

    def render(self, variables: dict[str, str], seed: int = 0) -> Rendered:
        """Renders the three parts; spintax choices follow ``seed``
        (:func:`template_seed`). A variable used without a fallback and absent raises
        :class:`TemplateError` naming it and where it is used."""
        return Rendered(*self._native.render(variables, seed))


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of :func:`verify_webhook_signature`: ``http_status`` 200 when it
    verifies, else the status to answer (400, 401, 403) and the ``reason``."""

    http_status: int
    reason: str

    @property
    def ok(self) -> bool:
        return self.http_status == 200

    def __bool__(self) -> bool:
        return self.ok


def template_seed(enrollment_id: str, step: int) -> int:
    """The spintax seed of one enrollment's step, stable across runs and versions."""
    from . import _mailers

    return _mailers.template_seed(enrollment_id, step)


def verify_webhook_signature(secret: str, headers: Any, body: Union[str, bytes], *,
                             now: Optional[_dt.datetime] = None,
                             tolerance: float = 300) -> SignatureCheck:
    """Checks an outbound webhook request the Standard Webhooks way: its
    ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers (a mapping
    or (name, value) pairs, any case) against the body and the endpoint's secret.
    The timestamp must be within ``tolerance`` seconds of ``now`` (default: the
    current time). Receivers also ignore a ``webhook-id`` they have seen."""
    from . import _mailers

    pairs = headers.items() if hasattr(headers, "items") else headers
    h = {k.lower(): v for k, v in pairs}
    status, reason = _mailers.verify_webhook_signature(
        secret, h.get("webhook-id", ""), h.get("webhook-timestamp", ""), body,
        h.get("webhook-signature", ""),
        to_us(now or _dt.datetime.now(_dt.timezone.utc)), int(tolerance))
    return SignatureCheck(status, reason)


def request(to: str, *, pool: str = "", mailbox: str = "", subject: str = "", text: str = "",
            html: str = "", cc: Any = (), bcc: Any = (), reply_to: Optional[str] = None,
            headers: Any = None, attachments: Any = (), unsubscribe_url: str = "",
            unsubscribe_mailto: str = "", in_reply_to: str = "", references: Any = (),
            idempotency_key: str = "", raw: Union[str, bytes] = "",
            actor: Optional[Principal] = None) -> dict:
    """The native form of a send request (the keywords of ``Engine.send``)."""
    # Only what was given: the native side reads a missing key as its default.
    d: dict[str, Any] = {"to": to}
    for key, value in (("pool", pool), ("mailbox", mailbox), ("subject", subject),
                       ("text", text), ("html", html), ("reply_to", reply_to),
                       ("unsubscribe_url", unsubscribe_url),
                       ("unsubscribe_mailto", unsubscribe_mailto), ("in_reply_to", in_reply_to),
                       ("idempotency_key", idempotency_key)):
        if value:
            d[key] = value
    if cc:
        d["cc"] = list(cc)
    if bcc:
        d["bcc"] = list(bcc)
    if references:
        d["references"] = list(references)
    if headers:
        d["headers"] = list(headers.items()) if isinstance(headers, dict) else [
            tuple(h) for h in headers]
    if attachments:
        d["attachments"] = [dataclasses.asdict(a) for a in attachments]
    if raw:
        d["raw"] = raw.decode() if isinstance(raw, bytes) else raw
    if actor is not None:
        d["actor"] = (actor.id, actor.display_name)
    return d
