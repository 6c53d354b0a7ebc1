"""Configuration objects and the records the engine returns.

Times are aware :class:`datetime.datetime` values in UTC (a naive one given
to the engine is taken as UTC); durations are seconds, and a
:class:`datetime.timedelta` is accepted wherever seconds are.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Union

Seconds = Union[int, float, _dt.timedelta]
WindowKind = Literal["rolling", "calendar"]
RotationPolicy = Literal["round_robin", "weighted", "priority"]
QuotaScope = Literal["provider", "sender_domain", "recipient_domain"]
SuppressionReason = Literal["unsubscribe", "hard_bounce", "complaint", "manual", "legal"]
PauseScope = Literal["workspace", "pool", "mailbox", "provider", "sender_domain"]
OpenMode = Literal["existing", "create", "open_or_create"]

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
    type: str  #: "sent", "failed", "bounced", "suppressed", ...
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
class WebhookResult:
    http_status: int  #: what to answer the provider
    reason: str
    events: list[Event]
    suppressed: int
    already_suppressed: int
    duplicates: int  #: events already applied (a redelivery)


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
