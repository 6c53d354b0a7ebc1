"""The blocking and asyncio faces of the engine."""

from __future__ import annotations

import asyncio
import atexit
import datetime as _dt
import json
import logging
import queue as _queue
import threading
import time
import weakref
from typing import Any, AsyncIterator, Callable, Iterable, Iterator, Optional, Union

from . import _mailers
from ._errors import (AuditChainBroken, Error, InvalidArgument, UnknownCampaign, UnknownSequence,
                      make_error, naming)
from ._types import (DeliveryReportResult, SuppressionProblem, SuppressionReport, AuditHead, AuditRecord, Captured, Event, Mailbox, MailboxStatus, PauseInfo,
                     Pool, Postgres, Principal, QueueCounts, QueuedSend, Quota, SendResult, SQLite,
                     Stats, SuppressionEntry, UnsubscribeResult, WebhookResult, _times, from_us,
                     request, to_us, Campaign, CampaignInfo, CampaignProgress, Enrollment,
                     ForecastPlan, OutboundWebhooks, Seconds, Sequence, WebhookDelivery,
                     WebhookDeliveryCounts, WebhookEndpoint, RecipientLike, _recipients,
                     seconds, CountScope, DailyCount, PauseRule, RuleFiring,
                     SoftBouncePolicy, to_day, AccessPolicy, ErasureReport, Latencies,
                     RetentionPolicy, RetentionReport, ParsedWebhook, ProviderCheck,
                     StoredProvider, StepResolution)

log = logging.getLogger("mailers")

_mailers._set_error_factory(make_error)

Store = Union[SQLite, Postgres]
Actor = Optional[Principal]

# Every open engine, closed at interpreter exit while threads can still
# take the GIL (see the package docstring, "Lifetimes").
_live: "weakref.WeakSet[Engine]" = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    for eng in list(_live):
        eng.close()


def _report(what: str, exc: BaseException) -> None:
    # A failing user callback is reported, never propagated into the engine.
    log.error("mailers: %s raised", what, exc_info=(type(exc), exc, exc.__traceback__))


_LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
               "warning": logging.WARNING, "error": logging.ERROR}


def _log_native(level: str, message: str) -> None:
    log.log(_LOG_LEVELS.get(level, logging.ERROR), "%s", message)


class ManualClock:
    """A clock that moves only when told to, for tests and simulations."""

    def __init__(self, start: _dt.datetime) -> None:
        self._native = _mailers.ManualClock(to_us(start))

    def now(self) -> _dt.datetime:
        return from_us(self._native.now_us())  # type: ignore[return-value]

    def set(self, t: _dt.datetime) -> None:
        self._native.set_us(to_us(t))

    def advance(self, d: Union[_dt.timedelta, float]) -> None:
        if not isinstance(d, _dt.timedelta):
            d = _dt.timedelta(seconds=d)
        self._native.advance_us(d // _dt.timedelta(microseconds=1))


class Subscription:
    """An event callback registered with ``Engine.on_event``."""

    def __init__(self, engine: "Engine", fn: Callable[[Event], Any]) -> None:
        self._engine = weakref.ref(engine)  # a subscription keeps no engine alive
        self.callback = fn

    def cancel(self) -> None:
        eng = self._engine()
        if eng is not None:
            eng._unsubscribe(self)


class EventStream:
    """Events as a blocking iterator; ends when the engine closes or ``close()`` is called."""

    _END = object()

    def __init__(self, engine: "Engine") -> None:
        self._q: _queue.SimpleQueue = _queue.SimpleQueue()
        self._sub = engine.on_event(self._q.put)
        engine._streams.add(self)

    def _end(self) -> None:
        self._q.put(self._END)

    def get(self, timeout: Optional[float] = None) -> Event:
        """The next event; raises TimeoutError after ``timeout`` seconds, StopIteration at the end."""
        try:
            ev = self._q.get(timeout=timeout)
        except _queue.Empty:
            raise TimeoutError("no event within the timeout") from None
        if ev is self._END:
            self._q.put(self._END)
            raise StopIteration
        return ev

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        return self.get()

    def close(self) -> None:
        self._sub.cancel()
        self._end()

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _header_list(headers: Any) -> list:
    return list(headers.items()) if isinstance(headers, dict) else list(headers or ())


def parse_webhook(provider: str, body: Union[str, bytes], *, headers: Any = None,
                  method: str = "POST", verify: bool = True, **params: str) -> ParsedWebhook:
    """Verifies and reads a provider's webhook request without applying it (no
    engine, no store): the first half of ``Engine.ingest_webhook``, whose
    keywords it takes. Give the result to ``Engine.apply_webhook``."""
    n = _mailers.parse_webhook(provider, method, _header_list(headers), body,
                               {"verify": verify, **params})
    return ParsedWebhook(provider, n.outcome, n.http_status, n.reason,
                         [Event._from(e) for e in n.events], n.confirm_url, n)


class Engine:
    """The engine, blocking face. See the package docstring for lifetimes.

    ``store`` is :class:`SQLite` or :class:`Postgres`. ``actor`` is the
    principal recorded for changes made without an ``actor=`` of their own.
    ``audit_key`` may be a secret or an ``env:NAME`` / ``file:/path``
    reference. ``clock`` is a :class:`ManualClock` for simulations. Given
    ``unsubscribe_url`` (https) and ``unsubscribe_secret`` (16 bytes or more,
    or a reference), every message without a List-Unsubscribe of its own
    gets a one-click link (RFC 8058) that :meth:`unsubscribe` applies.
    ``erasure_key`` (a secret or a reference) is the key erased addresses stay
    suppressed under; without one the workspace's first erasure makes and
    stores one (docs/privacy.md). ``webhooks`` says how this engine delivers
    outbound webhooks. The
    library's log lines at ``log_level`` and above ("trace", "debug", "info",
    "warning", "error", "off") go to the "mailers" logger.
    """

    def __init__(self, store: Store, *, workspace: str = "default", actor: Actor = None,
                 clock: Optional[ManualClock] = None, audit_key: str = "", erasure_key: str = "",
                 member_name: str = "", random_seed: int = 0, drain_queue: bool = True,
                 queue_poll_interval: float = 1.0, rule_check_interval: float = 300.0,
                 fold_plus_tags: Optional[bool] = None,
                 fold_gmail_dots: Optional[bool] = None, unsubscribe_url: str = "",
                 unsubscribe_secret: str = "", unsubscribe_mailto: str = "",
                 webhooks: Optional[OutboundWebhooks] = None,
                 log_level: str = "warning") -> None:
        self.actor = actor or Principal.system()
        self._subs: tuple[Subscription, ...] = ()
        self._subs_lock = threading.Lock()
        self._streams: "weakref.WeakSet[Any]" = weakref.WeakSet()
        params: dict[str, Any] = {
            "workspace": workspace, "audit_key": audit_key, "erasure_key": erasure_key,
            "member_name": member_name,
            "random_seed": random_seed, "drain_queue": drain_queue,
            "queue_poll_interval_ms": int(queue_poll_interval * 1000),
            "rule_check_interval_s": int(rule_check_interval),
            "unsubscribe_url": unsubscribe_url, "unsubscribe_secret": unsubscribe_secret,
            "unsubscribe_mailto": unsubscribe_mailto,
            "log": _log_native, "log_level": log_level,
            "webhooks": webhooks._native() if webhooks is not None else None,
        }
        if fold_plus_tags is not None or fold_gmail_dots is not None:
            params["fold_plus_tags"] = bool(fold_plus_tags)
            params["fold_gmail_dots"] = bool(fold_gmail_dots)
        self._clock = clock
        self._core = _mailers.Core(store._native(), params,
                                   clock._native if clock is not None else None)
        # A bound method would keep the engine alive from the native side.
        ref = weakref.ref(self)

        def dispatch(d: dict) -> None:
            eng = ref()
            if eng is not None:
                eng._dispatch(d)

        self._core.set_event_callback(dispatch)
        _live.add(self)

    # --- lifetime ---------------------------------------------------------------

    def close(self, timeout: float = 30.0) -> None:
        """Stops the engine: sends not yet handed off fail with :class:`Aborted`,
        sends already handed off finish with their outcome, queued writes are
        flushed, and this engine leaves the workspace. Waits up to
        ``timeout`` seconds for operations in flight. Idempotent."""
        core = getattr(self, "_core", None)
        if core is None or core.closed:
            return
        if core.on_engine_thread():
            # Called from a callback (or the last reference dropped there):
            # the engine's thread cannot wait for itself, so another does.
            threading.Thread(target=core.close, args=(timeout,), daemon=True).start()
            return
        core.close(timeout)
        for s in list(self._streams):
            s._end()

    @property
    def closed(self) -> bool:
        return self._core.closed

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - nothing to report to at this point
            pass

    def _who(self, actor: Actor) -> tuple[str, str]:
        a = actor or self.actor
        return (a.id, a.display_name)

    # --- events -------------------------------------------------------------------

    def _dispatch(self, d: dict) -> None:
        subs = self._subs
        if not subs:
            return
        ev = Event._from(d)
        for s in subs:
            try:
                s.callback(ev)
            except Exception as e:
                _report(f"event callback {s.callback!r}", e)

    def on_event(self, fn: Callable[[Event], Any]) -> Subscription:
        """Calls ``fn(event)`` for every event, on the engine's thread, in order per
        send. ``fn`` must not block; an exception it raises is logged to the
        "mailers" logger and goes no further."""
        sub = Subscription(self, fn)
        with self._subs_lock:
            self._subs = self._subs + (sub,)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._subs_lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def events(self) -> EventStream:
        """Events from now on, as an iterator (``for event in engine.events()``)."""
        return EventStream(self)

    # --- providers ----------------------------------------------------------------

    def add_provider(self, id: str, dsn: str, *, actor: Actor = None) -> None:
        """Registers the transport a DSN names ("smtp://user:env:PASS@host:587",
        "ses+api://...", "capture://capture", "null://null", ...). Secrets
        may be ``env:NAME`` / ``file:/path`` references. Providers are runtime
        objects: add them at every start."""
        self._core.add_provider(self._who(actor), id, dsn)

    def save_provider(self, id: str, dsn: str, *, actor: Actor = None) -> None:
        """Keeps provider ``id`` in the store as a DSN, creating or replacing
        it; every engine of the workspace builds its transport (at start and
        within one change-feed poll). Secrets must be ``env:NAME`` /
        ``file:/path`` references: a DSN with one inline, or one that does
        not build here, raises :class:`InvalidArgument` and stores nothing.
        A provider this engine registered with :meth:`add_provider` keeps
        precedence."""
        self._core.save_provider(self._who(actor), id, dsn)

    def remove_provider(self, id: str, *, actor: Actor = None) -> None:
        """Removes a stored provider. Raises :class:`InvalidArgument` while a
        mailbox that is not retired names it, :class:`NotFound` when none is
        stored under ``id``."""
        self._core.remove_provider(self._who(actor), id)

    def stored_providers(self) -> list[StoredProvider]:
        """The workspace's stored providers, in id order."""
        return [StoredProvider._from(d) for d in self._core.stored_providers()]

    def check_provider(self, id: Optional[str] = None, *,
                       dsn: Optional[str] = None) -> ProviderCheck:
        """Checks a provider's connection and credentials, sending nothing
        (SMTP: greeting, EHLO, STARTTLS, AUTH, QUIT; the HTTP APIs: one
        read-only request; capture, null and file have nothing to check and
        succeed saying so). Give a provider's ``id`` or a ``dsn`` (not both).
        For an ``id``, the transport this engine sends through: the one
        :meth:`add_provider` registered, which takes precedence, else the
        one built from the stored DSN with this process's secrets. A ``dsn``
        gets a transport built for the check alone. Returns the
        :class:`ProviderCheck` when it passed; a failed check raises the
        :class:`Error` subclass of its failure class (``AuthFailure``,
        ``TransientFailure``, ...) with the check on ``e.result``. An unknown
        ``id`` raises :class:`NotFound`; a stored DSN that cannot be built
        here (an unset ``env:`` reference), or a ``dsn`` that does not build,
        :class:`InvalidArgument`; :meth:`close` during the check
        :class:`Aborted`. Needs ``manage_providers`` (``PermissionDenied``)."""
        if (id is None) == (dsn is None):
            raise InvalidArgument("check_provider takes a provider's id or a dsn",
                                  code="invalid_argument")
        err, res = self._core.check_provider(self._who(None), id or "", dsn or "")
        res.pop("diagnostics")
        if err is not None and err["category"] == "mailers":
            raise make_error(err)  # the engine refused: there is no check to report
        result = ProviderCheck(ok=err is None, failure=err["failure"] if err else None, **res)
        if err is not None:
            raise make_error(err, result)
        return result

    def captured(self, provider: str) -> list[Captured]:
        """What a ``capture://`` provider kept, oldest first."""
        return [Captured._from(d) for d in self._core.captured(provider)]

    def clear_captured(self, provider: str) -> None:
        self._core.clear_captured(provider)

    # --- sending --------------------------------------------------------------------

    def send(self, to: str, **kw: Any) -> SendResult:
        """Sends one message and waits for the outcome. Keywords: ``pool`` or
        ``mailbox``, ``subject``, ``text``, ``html``, ``cc``, ``bcc``,
        ``reply_to``, ``headers``, ``attachments``, ``unsubscribe_url``,
        ``in_reply_to``, ``references``, ``idempotency_key``, ``raw``,
        ``actor``. Raises an :class:`Error` subclass when it was not accepted
        (the result is on ``e.result``)."""
        err, res = self._core.send(request(to, **kw))
        result = SendResult._from(res)
        if err is not None:
            raise make_error(err, result)
        return result

    def send_nowait(self, to: str, callback: Callable[[Optional[Error], SendResult], Any],
                    **kw: Any) -> None:
        """Starts a send; ``callback(error_or_None, result)`` runs on the engine's thread."""

        def done(err: Optional[dict], res: dict) -> None:
            result = SendResult._from(res)
            try:
                callback(make_error(err, result) if err is not None else None, result)
            except Exception as e:
                _report(f"send callback {callback!r}", e)

        self._core.send_async(request(to, **kw), done)

    def enqueue(self, to: str, *, not_before: Optional[_dt.datetime] = None,
                origin: str = "api", **kw: Any) -> int:
        """Stores the send in the workspace's durable queue; returns the item id."""
        return self._core.enqueue(request(to, **kw), to_us(not_before), origin)

    def enqueue_and_wait(self, to: str, *, not_before: Optional[_dt.datetime] = None,
                         origin: str = "api", timeout: Optional[float] = None,
                         **kw: Any) -> QueuedSend:
        """Enqueues as :meth:`enqueue`, then waits until this engine has finished the
        item (sent it, or seen it cancelled) and returns it as it ended: ``state``
        "done" or "cancelled", ``send_id`` and ``detail`` say how. A refused
        enqueue raises as :meth:`enqueue` does; :class:`Aborted` when the engine
        closes first. ``timeout`` (seconds) raises :class:`TimeoutError`; the item
        stays queued."""
        if self._core.on_engine_thread():
            raise RuntimeError("enqueue_and_wait from an event callback would wait for itself")
        done = threading.Event()
        out: list = []

        def finished(err: Optional[dict], item: Optional[dict]) -> None:
            out.append((err, item))
            done.set()

        self._core.enqueue_async(request(to, **kw), to_us(not_before), origin, finished)
        if not done.wait(timeout):
            raise TimeoutError("the queued item has not ended yet")
        return _queued_outcome(*out[0])

    def find_queued(self, id: int) -> Optional[QueuedSend]:
        d = self._core.find_queued(id)
        return QueuedSend(**_times(d, "not_before")) if d else None

    def queued(self, *, state: Optional[str] = None, origin_prefix: str = "", after_id: int = 0,
               limit: int = 0) -> list[QueuedSend]:
        """Queue items in id order: only ``state`` ("waiting", "claimed", "done",
        "cancelled") when given, only origins starting with ``origin_prefix``
        ("campaign:q4"); page with ``after_id`` (the last id seen) and ``limit``."""
        return [QueuedSend(**_times(d, "not_before")) for d in self._core.queued(
            {"state": state, "origin_prefix": origin_prefix, "after_id": after_id,
             "limit": limit})]

    def cancel_queued(self, id: int, *, actor: Actor = None) -> bool:
        return self._core.cancel_queued(self._who(actor), id)

    def queue_counts(self) -> QueueCounts:
        return QueueCounts(**self._core.queue_counts())

    # --- configuration ----------------------------------------------------------------

    def upsert_mailbox(self, mailbox: Mailbox, *, actor: Actor = None) -> None:
        self._core.upsert_mailbox(self._who(actor), mailbox._native())

    def retire_mailbox(self, id: str, *, actor: Actor = None) -> None:
        self._core.retire_mailbox(self._who(actor), id)

    def find_mailbox(self, id: str) -> Optional[Mailbox]:
        d = self._core.find_mailbox(id)
        return Mailbox._from(d) if d else None

    def mailboxes(self) -> list[Mailbox]:
        return [Mailbox._from(d) for d in self._core.mailboxes()]

    def upsert_pool(self, pool: Pool, *, actor: Actor = None) -> None:
        self._core.upsert_pool(self._who(actor), vars(pool))

    def remove_pool(self, id: str, *, actor: Actor = None) -> None:
        self._core.remove_pool(self._who(actor), id)

    def find_pool(self, id: str) -> Optional[Pool]:
        d = self._core.find_pool(id)
        return Pool(**d) if d else None

    def pools(self) -> list[Pool]:
        return [Pool(**d) for d in self._core.pools()]

    def set_quota(self, quota: Quota, *, actor: Actor = None) -> None:
        self._core.set_quota(self._who(actor),
                             {**vars(quota), "limits": [vars(r) for r in quota.limits]})

    def remove_quota(self, scope: str, key: str, *, actor: Actor = None) -> None:
        self._core.remove_quota(self._who(actor), scope, key)

    def quotas(self) -> list[Quota]:
        return [Quota._from(d) for d in self._core.quotas()]

    def status(self, mailbox: str) -> MailboxStatus:
        d = self._core.status(mailbox)
        d["next_eligible"] = from_us(d["next_eligible"])
        return MailboxStatus(**d)

    def stats(self) -> Stats:
        return Stats(**self._core.stats())

    def latencies(self) -> Latencies:
        """Where the time of a send goes, stage by stage, since the engine started."""
        return Latencies._from(self._core.latencies())

    def flush(self) -> None:
        """Waits until every queued store write is committed."""
        self._core.flush()

    def cancel(self) -> None:
        """Stops sending for good, short of closing: sends not yet handed off fail
        with :class:`Aborted`, this engine takes no more queued sends, and
        configuration calls keep working."""
        self._core.cancel()

    # --- suppression ----------------------------------------------------------------

    def suppress(self, value: str, *, reason: str = "manual", kind: str = "address",
                 source: str = "api", actor: Actor = None) -> None:
        """Suppresses an address, or with ``kind="domain"`` a domain and its subdomains."""
        self._core.suppress(self._who(actor), kind, value, reason, source)

    def unsuppress(self, value: str, *, kind: str = "address", actor: Actor = None) -> bool:
        return self._core.unsuppress(self._who(actor), kind, value)

    def is_suppressed(self, address: str) -> bool:
        return self._core.is_suppressed(address)

    def find_suppression(self, address: str) -> Optional[SuppressionEntry]:
        d = self._core.find_suppression(address)
        return SuppressionEntry(**_times(d, "created_at")) if d else None

    def suppression_count(self) -> int:
        return self._core.suppression_count()

    def import_suppressions(self, csv: str, *, source: str = "csv-import",
                            actor: Actor = None) -> int:
        """Imports CSV (value,kind,reason,source,created_at; header optional): all
        lines or none (:class:`InvalidCsv` names the bad line)."""
        return self._core.import_suppressions(self._who(actor), csv, source)

    def export_suppressions(self) -> str:
        return self._core.export_suppressions()

    def suppression_rules(self) -> dict[str, bool]:
        """The folding rules suppression keys are made with now: ``fold_plus_tags``
        and ``fold_gmail_dots`` (the engine's, once applied, else the stored ones)."""
        return self._core.suppression_rules()

    # --- pause ------------------------------------------------------------------------

    def pause(self, scope: str = "workspace", id: str = "", *, reason: str = "",
              actor: Actor = None) -> None:
        """Once it returns nothing new is handed off through the target."""
        self._core.pause(self._who(actor), scope, id, reason)

    def resume(self, scope: str = "workspace", id: str = "", *, reason: str = "",
               actor: Actor = None) -> None:
        """Lifts a pause, audited with ``reason``; the pause rules then leave the target
        alone for their ``grace_days``."""
        self._core.resume(self._who(actor), scope, id, reason)

    def is_paused(self, scope: str = "workspace", id: str = "") -> bool:
        return self._core.is_paused(scope, id)

    def pauses(self) -> list[PauseInfo]:
        return [PauseInfo(**_times(d, "since")) for d in self._core.pauses()]

    # --- daily counts, soft bounces and pause rules (docs/rules.md) -------------------

    def daily_counts(self, scope: CountScope, id: str = "", *, first: _dt.date,
                     last: _dt.date) -> list[DailyCount]:
        """One :class:`DailyCount` per UTC day from ``first`` to ``last`` (both included,
        zeros too), read from the store; the workspace scope's id is ""."""
        return [DailyCount._from(d)
                for d in self._core.daily_counts(scope, id, to_day(first), to_day(last))]

    def set_soft_bounce_policy(self, policy: SoftBouncePolicy, *, actor: Actor = None) -> None:
        """Raises :class:`InvalidArgument` for values out of range, changing nothing."""
        self._core.set_soft_bounce_policy(self._who(actor), vars(policy))

    def soft_bounce_policy(self) -> SoftBouncePolicy:
        return SoftBouncePolicy(**self._core.soft_bounce_policy())

    def put_pause_rule(self, rule: PauseRule, *, actor: Actor = None) -> None:
        """Adds a rule or replaces the one with its id; :class:`InvalidArgument` (a bad
        domain: :class:`InvalidAddress`) for a rule the engine refuses, changing nothing."""
        self._core.put_pause_rule(self._who(actor), vars(rule))

    def remove_pause_rule(self, id: str, *, actor: Actor = None) -> bool:
        return self._core.remove_pause_rule(self._who(actor), id)

    def pause_rules(self) -> list[PauseRule]:
        return [PauseRule(**d) for d in self._core.pause_rules()]

    def check_pause_rules(self) -> list[RuleFiring]:
        """Evaluates every rule on every target now and returns what fired here; the
        engine also does it every ``rule_check_interval`` seconds while rules exist."""
        return [RuleFiring._from(d) for d in self._core.check_pause_rules()]

    # --- sequences and enrollments (docs/sequences.md) --------------------------------

    def upsert_sequence(self, sequence: Sequence, *, actor: Actor = None) -> None:
        """Creates or replaces a sequence. A template that does not compile raises
        :class:`TemplateError` (step, part, line, column); a step naming a pool or
        mailbox the workspace lacks, :class:`UnknownPool` / :class:`UnknownMailbox`."""
        self._core.upsert_sequence(self._who(actor), sequence._native())

    def remove_sequence(self, id: str, *, actor: Actor = None) -> None:
        with naming(UnknownSequence):
            self._core.remove_sequence(self._who(actor), id)

    def find_sequence(self, id: str) -> Optional[Sequence]:
        d = self._core.find_sequence(id)
        return Sequence._from(d) if d else None

    def sequences(self) -> list[Sequence]:
        return [Sequence._from(d) for d in self._core.sequences()]

    def enroll(self, sequence_id: str, to: str, *, variables: Optional[dict[str, str]] = None,
               owner: str = "", on_enrolled_twice: Optional[str] = None,
               actor: Actor = None) -> Enrollment:
        """Enrolls a contact ("ada@example.com" or "Ada <ada@example.com>"); its first
        step is planned as soon as it falls due. ``owner`` is the mailbox for steps whose
        sender is the owner. Refused, enrolling nothing: :class:`UnknownSequence`,
        :class:`Suppressed`, :class:`MissingVariables` (a variable some step needs
        without a fallback), :class:`UnknownMailbox` (the owner), :class:`InvalidAddress`,
        and :class:`Duplicate` for a contact already enrolled when
        ``on_enrolled_twice`` (default: the sequence's) is "refuse"; "merge" replaces
        its variables and owner and keeps its progress."""
        with naming(UnknownSequence):
            return Enrollment._from(self._core.enroll(self._who(actor), sequence_id, to,
                                                      variables or {}, owner,
                                                      on_enrolled_twice))

    def pause_enrollment(self, id: int, *, actor: Actor = None) -> bool:
        """Pauses an active enrollment (its waiting step leaves the queue); False
        when it was not active."""
        return self._core.set_enrollment(self._who(actor), id, "paused", "")

    def resume_enrollment(self, id: int, *, actor: Actor = None) -> bool:
        """Plans a paused enrollment's step again, due as it would have been; False
        when it was not paused."""
        return self._core.set_enrollment(self._who(actor), id, "active", "")

    def stop_enrollment(self, id: int, *, reason: str = "", actor: Actor = None) -> bool:
        """Stops an active or paused enrollment (stop reason "manual"); False when it
        was neither."""
        return self._core.set_enrollment(self._who(actor), id, "stopped", reason)

    def resolve_unknown_step(self, id: int, resolution: StepResolution, *,
                             actor: Actor = None) -> bool:
        """Says what happened to the step whose send ended ``unknown`` and holds an
        ``unresolved`` enrollment: ``"sent"`` goes on with the next step,
        ``"not_sent"`` sends the step again, once, under a send key of its own
        (``seq:<sequence>:<enrollment>:<step>~<attempt>``), then goes on. False
        when it was no longer unresolved."""
        return self._core.resolve_unknown_step(self._who(actor), id, resolution)

    def find_enrollment(self, id: int) -> Optional[Enrollment]:
        d = self._core.find_enrollment(id)
        return Enrollment._from(d) if d else None

    def enrollments(self, *, sequence_id: str = "", address: str = "",
                    state: Optional[str] = None, after_id: int = 0,
                    limit: int = 0) -> list[Enrollment]:
        """Enrollments in id order, of one sequence, address or state when given
        (page with ``after_id`` and ``limit``)."""
        return [Enrollment._from(d) for d in self._core.enrollments(
            {"sequence_id": sequence_id, "address": address, "state": state,
             "after_id": after_id, "limit": limit})]

    def pause_sequence(self, id: str, *, reason: str = "", actor: Actor = None) -> None:
        """Holds every enrollment of the sequence: nothing of it is planned or handed
        off until resumed."""
        self._core.pause_sequence(self._who(actor), id, reason)

    def resume_sequence(self, id: str, *, actor: Actor = None) -> None:
        """Raises :class:`NotFound` when the sequence is not paused."""
        self._core.resume_sequence(self._who(actor), id)

    def is_sequence_paused(self, id: str) -> bool:
        return self._core.is_sequence_paused(id)

    def record_reply(self, from_: str, *, actor: Actor = None) -> list[int]:
        """The host saw a reply from an address, or to a step's Message-ID: stops
        enrollments as the sequences' ``reply_stops`` say. Returns the ids stopped."""
        return self._core.record_reply(self._who(actor), from_)

    def record_goal(self, address: str, sequence_id: str, *, actor: Actor = None) -> list[int]:
        """The contact reached the sequence's goal: stops its enrollment there (or
        every one of the address, as ``goal_stops`` says). Returns the ids stopped."""
        return self._core.record_goal(self._who(actor), address, sequence_id)

    def next_due(self) -> Optional[_dt.datetime]:
        """When the workspace's scheduler next has work (a queued send or an
        enrollment's step), read from the store; None when nothing waits. With a
        :class:`ManualClock`, move the clock here."""
        return from_us(self._core.next_due())

    def settle(self, timeout: float = 30.0) -> Optional[_dt.datetime]:
        """Waits until the workspace's queue and scheduler have done everything due
        at the engine clock's now (nothing claimed, nothing due), and returns
        :meth:`next_due`. A simulation moves its :class:`ManualClock` to that time and
        calls again. Raises TimeoutError after ``timeout`` seconds, and RuntimeError
        from an event callback (the engine's thread would wait for itself)."""
        if self._core.on_engine_thread():
            raise RuntimeError("settle() from an event callback would wait for itself")

        def now() -> _dt.datetime:
            return self._clock.now() if self._clock else _dt.datetime.now(_dt.timezone.utc)

        def idle(due: Optional[_dt.datetime]) -> bool:
            return due is None or due > now()

        deadline = time.monotonic() + timeout
        while True:
            # next_due() leaves claimed items out, so it is read on both sides
            # of the claimed count: an item finished in between may have made
            # more work due.
            if idle(self.next_due()) and self.queue_counts().claimed == 0:
                due = self.next_due()
                if idle(due):
                    return due
            if time.monotonic() > deadline:
                raise TimeoutError("the engine still had work due after the timeout")
            time.sleep(0.005)

    # --- campaigns and forecasts (docs/campaigns.md) ------------------------------------

    def start_campaign(self, campaign: Campaign, *, actor: Actor = None) -> CampaignInfo:
        """Validates the whole campaign and queues one send per distinct recipient
        (suppressed ones are counted, not queued). Refused, queueing nothing:
        :class:`TemplateError`, :class:`MissingVariables` (with the recipient),
        :class:`InvalidAddress`, :class:`UnknownPool` / :class:`UnknownMailbox`,
        :class:`InvalidArgument`, and :class:`Duplicate` when the id was started with
        another definition or list. Starting the same campaign again queues only
        recipients without an item."""
        return CampaignInfo._from(self._core.start_campaign(self._who(actor),
                                                            campaign._native()))

    def cancel_campaign(self, id: str, *, actor: Actor = None) -> int:
        """Withdraws every waiting item of the campaign; returns how many."""
        with naming(UnknownCampaign):
            return self._core.cancel_campaign(self._who(actor), id)

    def campaign_progress(self, id: str) -> CampaignProgress:
        with naming(UnknownCampaign):
            return CampaignProgress._from(self._core.campaign_progress(id))

    def find_campaign(self, id: str) -> Optional[CampaignInfo]:
        d = self._core.find_campaign(id)
        return CampaignInfo._from(d) if d else None

    def campaigns(self) -> list[CampaignInfo]:
        return [CampaignInfo._from(d) for d in self._core.campaigns()]

    def forecast(self, *, campaign: Optional[Campaign] = None, sequence_id: str = "",
                 contacts: Iterable[RecipientLike] = (),
                 horizon: Seconds = _dt.timedelta(days=30),
                 include_queue: bool = True, follow: str = "") -> ForecastPlan:
        """A dry run from the engine's now: what starting ``campaign`` and/or enrolling
        ``contacts`` (:class:`Recipient`, addresses or (address, variables[, owner])
        tuples) in ``sequence_id`` would send, when, from which mailbox, and what holds
        each message back, within ``horizon`` (whole hours). ``follow`` ("campaign:<id>")
        also runs the queue's waiting sends of that origin to their end: what is left of a
        started campaign. Nothing is sent or stored.
        Blocks for about as long as draining those messages through an in-memory store."""
        with naming(UnknownSequence):
            return ForecastPlan._from(self._core.forecast({
                "campaign": campaign._native() if campaign is not None else None,
                "sequence_id": sequence_id, "contacts": _recipients(contacts),
                "horizon_hours": max(1, seconds(horizon) // 3600),
                "include_queue": include_queue, "follow": follow}))

    # --- outbound webhooks (docs/webhooks.md, "Outbound webhooks") --------------------

    def put_webhook_endpoint(self, endpoint: WebhookEndpoint, *,
                             actor: Actor = None) -> WebhookEndpoint:
        """Adds or replaces an endpoint (keeping its secret when ``secret`` is empty);
        returns it as stored, with the secret (generated when none was given or kept).
        A bad URL, id or secret raises :class:`InvalidArgument` naming it."""
        return WebhookEndpoint(**self._core.put_webhook_endpoint(self._who(actor),
                                                                 vars(endpoint)))

    def remove_webhook_endpoint(self, id: str, *, actor: Actor = None) -> bool:
        """Removes an endpoint and gives up its pending deliveries; False when none."""
        return self._core.remove_webhook_endpoint(self._who(actor), id)

    def disable_webhook_endpoint(self, id: str, *, reason: str = "",
                                 actor: Actor = None) -> None:
        self._core.disable_webhook_endpoint(self._who(actor), id, reason)

    def enable_webhook_endpoint(self, id: str, *, retry_failed: bool = False,
                                failed_since: Optional[_dt.datetime] = None,
                                actor: Actor = None) -> None:
        """Enables an endpoint again; with ``retry_failed``, the deliveries given up
        since ``failed_since`` are attempted again from the start."""
        self._core.enable_webhook_endpoint(self._who(actor), id, retry_failed,
                                           to_us(failed_since))

    def webhook_endpoints(self) -> list[WebhookEndpoint]:
        """The endpoints in id order; inline secrets shown as "whsec_…"."""
        return [WebhookEndpoint(**d) for d in self._core.webhook_endpoints()]

    def find_webhook_endpoint(self, id: str) -> Optional[WebhookEndpoint]:
        d = self._core.find_webhook_endpoint(id)
        return WebhookEndpoint(**d) if d else None

    def webhook_deliveries(self, *, endpoint: str = "", state: Optional[str] = None,
                           after_id: int = 0, limit: int = 0) -> list[WebhookDelivery]:
        """Outbox rows in id order ("pending", "claimed", "delivered", "failed")."""
        return [WebhookDelivery._from(d) for d in self._core.webhook_deliveries(
            {"endpoint": endpoint, "state": state, "after_id": after_id, "limit": limit})]

    def count_webhook_deliveries(self, endpoint: str = "") -> WebhookDeliveryCounts:
        return WebhookDeliveryCounts._from(self._core.count_webhook_deliveries(endpoint))

    def metrics_text(self) -> str:
        """Counters, latencies and gauges in the Prometheus text format (0.0.4)."""
        return self._core.metrics_text()

    # --- audit ------------------------------------------------------------------------

    def audit_log(self, from_seq: int = 1) -> list[AuditRecord]:
        return [AuditRecord(**_times(d, "at")) for d in self._core.audit_log(from_seq)]

    def verify_audit(self, checkpoint: Optional[AuditHead] = None) -> None:
        """Verifies the whole audit chain (and that it reaches ``checkpoint``);
        raises :class:`AuditChainBroken` with ``bad_seq`` when it fails."""
        err, bad = self._core.verify_audit(
            (checkpoint.seq, checkpoint.hash) if checkpoint else None)
        if err is not None:
            e = make_error(err)
            assert isinstance(e, AuditChainBroken)
            e.bad_seq = bad
            raise e

    def audit_checkpoint(self) -> AuditHead:
        return AuditHead(*self._core.audit_checkpoint())

    # --- access control -------------------------------------------------------------

    def put_role(self, id: str, permissions: list[str], *, actor: Actor = None) -> None:
        """Creates or replaces a role: permission names as in access.hpp
        ("send", "pause", "manage_mailboxes", "manage_access", ...)."""
        self._core.put_role(self._who(actor), id, list(permissions))

    def grant_access(self, principal: str, role: str, scope: str = "workspace", id: str = "",
                     *, actor: Actor = None) -> None:
        self._core.grant_access(self._who(actor), principal, role, scope, id, False)

    def revoke_access(self, principal: str, role: str, scope: str = "workspace", id: str = "",
                      *, actor: Actor = None) -> None:
        self._core.grant_access(self._who(actor), principal, role, scope, id, True)

    def set_access_control(self, enabled: bool, *, actor: Actor = None) -> None:
        """Once on, everything not granted is refused (:class:`PermissionDenied`)."""
        self._core.set_access_control(self._who(actor), enabled)

    def remove_role(self, id: str, *, actor: Actor = None) -> None:
        """Removes a role and every grant of it (:class:`NotFound` when there is none)."""
        self._core.remove_role(self._who(actor), id)

    def access_control(self) -> AccessPolicy:
        """The workspace's roles, grants and whether access control is on."""
        return AccessPolicy._from(self._core.access_control())

    # --- erasure, export and retention (docs/privacy.md) ----------------------------

    def erase_person(self, address: str, *, actor: Actor = None) -> ErasureReport:
        """Erases what the workspace holds about ``address`` (GDPR Art. 17) and keeps
        it suppressed under a keyed hash: suppression rows become hash entries,
        ledger rows are scrubbed, queued items emptied, enrollments and outbox rows
        deleted, in one transaction, audited with the hash only. Once it returns
        no engine of the workspace sends to the address. Erasing again is
        harmless (zero counts). Raises :class:`InvalidAddress` (nothing changes),
        :class:`PermissionDenied` (permission ``erase_person``)."""
        return ErasureReport._from(self._core.erase_person(self._who(actor), address))

    def export_person(self, address: str, *, actor: Actor = None) -> dict[str, Any]:
        """Everything the workspace holds about ``address`` (GDPR Art. 15), as the
        engine's JSON object parsed: "address", "key", "suppressed",
        "suppression", "suppression_history", "sends", "events", "enrollments",
        "queued", "audit". Permission ``export_data``; audited with the hash."""
        return json.loads(self._core.export_person(self._who(actor), address))

    def purge_retained(self, policy: RetentionPolicy, *, actor: Actor = None) -> RetentionReport:
        """Forgets what ``policy``'s windows have passed (ledger rows with an
        outcome, ended outbound deliveries), audited as "retention.purge".
        Raises :class:`InvalidArgument` for a ledger window under 8 days or a
        negative one, changing nothing. Call it from a daily job."""
        d = self._core.purge_retained(self._who(actor), policy._native())
        return RetentionReport(**_times(d, "at"))

    # --- webhooks -----------------------------------------------------------------------

    def ingest_webhook(self, provider: str, body: Union[str, bytes], *,
                       headers: Any = None, method: str = "POST", verify: bool = True,
                       **params: str) -> WebhookResult:
        """Applies a provider's webhook request ("ses", "mailgun", "sendgrid",
        "postmark") as received: verifies it, suppresses hard bounces,
        complaints and unsubscribes, and passes the events to the handlers.
        Answer the provider ``result.http_status``. ``params``:
        mailgun_signing_key, sendgrid_public_key, postmark_user,
        postmark_password, postmark_header_name, postmark_header_value."""
        # Bytes pass through as they are: signatures cover the raw body.
        d = self._core.ingest_webhook(provider, method, _header_list(headers), body,
                                      {"verify": verify, **params})
        d["events"] = [Event._from(e) for e in d["events"]]
        return WebhookResult(**d)

    def apply_webhook(self, parsed: ParsedWebhook) -> WebhookResult:
        """The second half of :meth:`ingest_webhook`, for a request
        :func:`parse_webhook` has read (and the host has looked at): applies its
        events exactly once, as ``ingest_webhook`` does. Nothing is applied
        unless ``parsed.outcome`` is "events"."""
        d = self._core.apply_webhook(parsed.provider, parsed._native)
        d["events"] = [Event._from(e) for e in d["events"]]
        return WebhookResult(**d)

    def unsubscribe(self, token: str) -> UnsubscribeResult:
        """Applies a one-click unsubscribe token (RFC 8058 POST)."""
        return UnsubscribeResult(**self._core.unsubscribe(token))

    def ingest_delivery_report(self, message: Union[str, bytes]) -> DeliveryReportResult:
        """Applies one bounce message fetched from a sending mailbox (Google
        Workspace and Microsoft 365 have no bounce webhooks): a hard bounce
        suppresses its recipient, and every event reaches the handlers."""
        d = self._core.ingest_delivery_report(message)  # bytes pass through as they are
        d["events"] = [Event._from(e) for e in d["events"]]
        return DeliveryReportResult(**d)

    def verify_suppressions(self) -> SuppressionReport:
        """Checks every suppression row against the audit trail (docs/audit.md)."""
        d = self._core.verify_suppressions()
        d["problems"] = [SuppressionProblem(**p) for p in d["problems"]]
        return SuppressionReport(**d)


class AsyncEventStream:
    """Events as an async iterator; ends when the engine closes or ``close()`` is called."""

    _END = object()

    def __init__(self, engine: Engine, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._bridge = _bridge(loop)
        self._q: asyncio.Queue = asyncio.Queue()
        self._sub = engine.on_event(self._put)
        engine._streams.add(self)

    def _put(self, ev: Any) -> None:
        if self._loop.is_closed():  # nobody is listening any more
            self._sub.cancel()
            return
        self._bridge.push(self._q.put_nowait, ev)

    def _end(self) -> None:
        self._put(self._END)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        ev = await self._q.get()
        if ev is self._END:
            self._q.put_nowait(self._END)
            raise StopAsyncIteration
        return ev

    def close(self) -> None:
        self._sub.cancel()
        self._end()

    async def __aenter__(self) -> "AsyncEventStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()


class _LoopBridge:
    """Hands completions from the engine's thread to one asyncio loop.

    One ``call_soon_threadsafe`` (one wake-up of the loop) per batch rather
    than per completion: while a drain is scheduled, later completions join
    it, in order."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: list = []
        self.lock = threading.Lock()
        self.scheduled = False

    def push(self, fn: Callable[..., None], *args: Any) -> None:
        with self.lock:
            self.pending.append((fn, args))
            if self.scheduled:
                return
            self.scheduled = True
        try:
            self.loop.call_soon_threadsafe(self.drain)
        except RuntimeError:  # the loop is closed: nobody waits for these
            with self.lock:
                self.pending.clear()
                self.scheduled = False

    def drain(self) -> None:
        with self.lock:
            batch, self.pending = self.pending, []
            self.scheduled = False
        for fn, args in batch:
            try:
                fn(*args)
            except Exception as e:
                _report(f"completion {fn!r}", e)


_bridges: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopBridge]" = \
    weakref.WeakKeyDictionary()
_bridges_lock = threading.Lock()


def _bridge(loop: asyncio.AbstractEventLoop) -> _LoopBridge:
    with _bridges_lock:
        b = _bridges.get(loop)
        if b is None:
            b = _bridges[loop] = _LoopBridge(loop)
        return b


def _queued_outcome(err: Optional[dict], item: Optional[dict]) -> QueuedSend:
    if err is not None:
        raise make_error(err)
    assert item is not None
    return QueuedSend(**_times(item, "not_before"))


def _settle_queued(fut: asyncio.Future, err: Optional[dict], item: Optional[dict]) -> None:
    if fut.cancelled():
        return
    try:
        fut.set_result(_queued_outcome(err, item))
    except Error as e:
        fut.set_exception(e)


def _settle(fut: asyncio.Future, err: Optional[dict], res: dict) -> None:
    if fut.cancelled():
        return  # the caller stopped waiting; the send itself went on
    result = SendResult._from(res)
    if err is not None:
        fut.set_exception(make_error(err, result))
    else:
        fut.set_result(result)


class AsyncEngine:
    """The engine, asyncio face: sends complete on the running loop through
    ``call_soon_threadsafe``; configuration calls run in a worker thread.
    ``AsyncEngine(...)`` takes the same arguments as :class:`Engine` (and
    opens the store on the calling thread); ``await AsyncEngine.open(...)``
    opens it in a worker thread. ``engine.sync`` is the blocking face."""

    def __init__(self, store: Store, **kw: Any) -> None:
        self.sync = Engine(store, **kw)

    @classmethod
    async def open(cls, store: Store, **kw: Any) -> "AsyncEngine":
        self = cls.__new__(cls)
        self.sync = await asyncio.to_thread(Engine, store, **kw)
        return self

    async def close(self, timeout: float = 30.0) -> None:
        await asyncio.to_thread(self.sync.close, timeout)

    @property
    def closed(self) -> bool:
        return self.sync.closed

    async def __aenter__(self) -> "AsyncEngine":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def send(self, to: str, **kw: Any) -> "asyncio.Future[SendResult]":
        """As :meth:`Engine.send`; await the returned future. Cancelling the
        future stops the waiting, not the send."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        push = _bridge(loop).push
        try:
            self.sync._core.send_async(request(to, **kw),
                                       lambda err, res: push(_settle, fut, err, res))
        except Error as e:  # refused input fails the future, as a refused send does
            fut.set_exception(e)
        return fut

    def events(self) -> AsyncEventStream:
        """Events from now on: ``async for event in engine.events()``."""
        return AsyncEventStream(self.sync, asyncio.get_running_loop())

    def on_event(self, fn: Callable[[Event], Any]) -> Subscription:
        return self.sync.on_event(fn)

    def captured(self, provider: str) -> list[Captured]:
        return self.sync.captured(provider)

    # The rest of Engine's calls, each run in a worker thread.

    async def add_provider(self, id: str, dsn: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.add_provider, id, dsn, actor=actor)

    async def save_provider(self, id: str, dsn: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.save_provider, id, dsn, actor=actor)

    async def remove_provider(self, id: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.remove_provider, id, actor=actor)

    async def stored_providers(self) -> list[StoredProvider]:
        return await asyncio.to_thread(self.sync.stored_providers)

    async def check_provider(self, id: Optional[str] = None, *,
                             dsn: Optional[str] = None) -> ProviderCheck:
        return await asyncio.to_thread(self.sync.check_provider, id, dsn=dsn)

    async def clear_captured(self, provider: str) -> None:
        return await asyncio.to_thread(self.sync.clear_captured, provider)

    async def enqueue(self, to: str, *, not_before: Optional[_dt.datetime] = None,
                      origin: str = "api", **kw: Any) -> int:
        return await asyncio.to_thread(self.sync.enqueue, to, not_before=not_before,
                                       origin=origin, **kw)

    async def enqueue_and_wait(self, to: str, *, not_before: Optional[_dt.datetime] = None,
                               origin: str = "api", timeout: Optional[float] = None,
                               **kw: Any) -> QueuedSend:
        """As :meth:`Engine.enqueue_and_wait`: the enqueue runs in a worker thread,
        the end of the item completes on the running loop. Cancelling (or the
        timeout) stops the waiting, not the item."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        push = _bridge(loop).push
        await asyncio.to_thread(self.sync._core.enqueue_async, request(to, **kw),
                                to_us(not_before), origin,
                                lambda err, item: push(_settle_queued, fut, err, item))
        return await asyncio.wait_for(fut, timeout)

    async def find_queued(self, id: int) -> Optional[QueuedSend]:
        return await asyncio.to_thread(self.sync.find_queued, id)

    async def queued(self, *, state: Optional[str] = None, origin_prefix: str = "",
                     after_id: int = 0, limit: int = 0) -> list[QueuedSend]:
        return await asyncio.to_thread(self.sync.queued, state=state, origin_prefix=origin_prefix,
                                       after_id=after_id, limit=limit)

    async def cancel_queued(self, id: int, *, actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.cancel_queued, id, actor=actor)

    async def queue_counts(self) -> QueueCounts:
        return await asyncio.to_thread(self.sync.queue_counts)

    async def upsert_mailbox(self, mailbox: Mailbox, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.upsert_mailbox, mailbox, actor=actor)

    async def retire_mailbox(self, id: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.retire_mailbox, id, actor=actor)

    async def find_mailbox(self, id: str) -> Optional[Mailbox]:
        return await asyncio.to_thread(self.sync.find_mailbox, id)

    async def mailboxes(self) -> list[Mailbox]:
        return await asyncio.to_thread(self.sync.mailboxes)

    async def upsert_pool(self, pool: Pool, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.upsert_pool, pool, actor=actor)

    async def remove_pool(self, id: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.remove_pool, id, actor=actor)

    async def find_pool(self, id: str) -> Optional[Pool]:
        return await asyncio.to_thread(self.sync.find_pool, id)

    async def pools(self) -> list[Pool]:
        return await asyncio.to_thread(self.sync.pools)

    async def set_quota(self, quota: Quota, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.set_quota, quota, actor=actor)

    async def remove_quota(self, scope: str, key: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.remove_quota, scope, key, actor=actor)

    async def quotas(self) -> list[Quota]:
        return await asyncio.to_thread(self.sync.quotas)

    async def status(self, mailbox: str) -> MailboxStatus:
        return await asyncio.to_thread(self.sync.status, mailbox)

    async def stats(self) -> Stats:
        return await asyncio.to_thread(self.sync.stats)

    async def flush(self) -> None:
        return await asyncio.to_thread(self.sync.flush)

    async def suppress(self, value: str, *, reason: str = "manual", kind: str = "address",
                       source: str = "api", actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.suppress, value, reason=reason, kind=kind,
                                       source=source, actor=actor)

    async def unsuppress(self, value: str, *, kind: str = "address", actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.unsuppress, value, kind=kind, actor=actor)

    async def is_suppressed(self, address: str) -> bool:
        return await asyncio.to_thread(self.sync.is_suppressed, address)

    async def find_suppression(self, address: str) -> Optional[SuppressionEntry]:
        return await asyncio.to_thread(self.sync.find_suppression, address)

    async def suppression_count(self) -> int:
        return await asyncio.to_thread(self.sync.suppression_count)

    async def import_suppressions(self, csv: str, *, source: str = "csv-import",
                                  actor: Actor = None) -> int:
        return await asyncio.to_thread(self.sync.import_suppressions, csv, source=source,
                                       actor=actor)

    async def suppression_rules(self) -> dict[str, bool]:
        return await asyncio.to_thread(self.sync.suppression_rules)

    async def export_suppressions(self) -> str:
        return await asyncio.to_thread(self.sync.export_suppressions)

    async def pause(self, scope: str = "workspace", id: str = "", *, reason: str = "",
                    actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.pause, scope, id, reason=reason, actor=actor)

    async def resume(self, scope: str = "workspace", id: str = "", *, reason: str = "",
                     actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.resume, scope, id, reason=reason, actor=actor)

    async def is_paused(self, scope: str = "workspace", id: str = "") -> bool:
        return await asyncio.to_thread(self.sync.is_paused, scope, id)

    async def pauses(self) -> list[PauseInfo]:
        return await asyncio.to_thread(self.sync.pauses)

    async def daily_counts(self, scope: CountScope, id: str = "", *, first: _dt.date,
                           last: _dt.date) -> list[DailyCount]:
        return await asyncio.to_thread(self.sync.daily_counts, scope, id, first=first, last=last)

    async def set_soft_bounce_policy(self, policy: SoftBouncePolicy, *,
                                     actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.set_soft_bounce_policy, policy, actor=actor)

    async def soft_bounce_policy(self) -> SoftBouncePolicy:
        return await asyncio.to_thread(self.sync.soft_bounce_policy)

    async def put_pause_rule(self, rule: PauseRule, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.put_pause_rule, rule, actor=actor)

    async def remove_pause_rule(self, id: str, *, actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.remove_pause_rule, id, actor=actor)

    async def pause_rules(self) -> list[PauseRule]:
        return await asyncio.to_thread(self.sync.pause_rules)

    async def check_pause_rules(self) -> list[RuleFiring]:
        return await asyncio.to_thread(self.sync.check_pause_rules)

    async def audit_log(self, from_seq: int = 1) -> list[AuditRecord]:
        return await asyncio.to_thread(self.sync.audit_log, from_seq)

    async def verify_audit(self, checkpoint: Optional[AuditHead] = None) -> None:
        return await asyncio.to_thread(self.sync.verify_audit, checkpoint)

    async def audit_checkpoint(self) -> AuditHead:
        return await asyncio.to_thread(self.sync.audit_checkpoint)

    async def put_role(self, id: str, permissions: list[str], *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.put_role, id, permissions, actor=actor)

    async def grant_access(self, principal: str, role: str, scope: str = "workspace", id: str = "",
                           *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.grant_access, principal, role, scope, id,
                                       actor=actor)

    async def revoke_access(self, principal: str, role: str, scope: str = "workspace", id: str = "",
                            *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.revoke_access, principal, role, scope, id,
                                       actor=actor)

    async def set_access_control(self, enabled: bool, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.set_access_control, enabled, actor=actor)

    async def remove_role(self, id: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.remove_role, id, actor=actor)

    async def access_control(self) -> AccessPolicy:
        return await asyncio.to_thread(self.sync.access_control)

    async def latencies(self) -> Latencies:
        return await asyncio.to_thread(self.sync.latencies)

    async def cancel(self) -> None:
        return await asyncio.to_thread(self.sync.cancel)

    async def erase_person(self, address: str, *, actor: Actor = None) -> ErasureReport:
        return await asyncio.to_thread(self.sync.erase_person, address, actor=actor)

    async def export_person(self, address: str, *, actor: Actor = None) -> dict[str, Any]:
        return await asyncio.to_thread(self.sync.export_person, address, actor=actor)

    async def purge_retained(self, policy: RetentionPolicy, *,
                             actor: Actor = None) -> RetentionReport:
        return await asyncio.to_thread(self.sync.purge_retained, policy, actor=actor)

    async def ingest_webhook(self, provider: str, body: Union[str, bytes], *,
                             headers: Any = None, method: str = "POST", verify: bool = True,
                             **params: str) -> WebhookResult:
        return await asyncio.to_thread(self.sync.ingest_webhook, provider, body, headers=headers,
                                       method=method, verify=verify, **params)

    async def apply_webhook(self, parsed: ParsedWebhook) -> WebhookResult:
        return await asyncio.to_thread(self.sync.apply_webhook, parsed)

    async def unsubscribe(self, token: str) -> UnsubscribeResult:
        return await asyncio.to_thread(self.sync.unsubscribe, token)

    async def ingest_delivery_report(self, message: Union[str, bytes]) -> DeliveryReportResult:
        return await asyncio.to_thread(self.sync.ingest_delivery_report, message)

    async def verify_suppressions(self) -> SuppressionReport:
        return await asyncio.to_thread(self.sync.verify_suppressions)

    async def upsert_sequence(self, sequence: Sequence, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.upsert_sequence, sequence, actor=actor)

    async def remove_sequence(self, id: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.remove_sequence, id, actor=actor)

    async def find_sequence(self, id: str) -> Optional[Sequence]:
        return await asyncio.to_thread(self.sync.find_sequence, id)

    async def sequences(self) -> list[Sequence]:
        return await asyncio.to_thread(self.sync.sequences)

    async def enroll(self, sequence_id: str, to: str, *,
                     variables: Optional[dict[str, str]] = None, owner: str = "",
                     on_enrolled_twice: Optional[str] = None,
                     actor: Actor = None) -> Enrollment:
        return await asyncio.to_thread(self.sync.enroll, sequence_id, to, variables=variables,
                                       owner=owner, on_enrolled_twice=on_enrolled_twice,
                                       actor=actor)

    async def pause_enrollment(self, id: int, *, actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.pause_enrollment, id, actor=actor)

    async def resume_enrollment(self, id: int, *, actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.resume_enrollment, id, actor=actor)

    async def stop_enrollment(self, id: int, *, reason: str = "", actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.stop_enrollment, id, reason=reason, actor=actor)

    async def find_enrollment(self, id: int) -> Optional[Enrollment]:
        return await asyncio.to_thread(self.sync.find_enrollment, id)

    async def enrollments(self, *, sequence_id: str = "", address: str = "",
                          state: Optional[str] = None, after_id: int = 0,
                          limit: int = 0) -> list[Enrollment]:
        return await asyncio.to_thread(self.sync.enrollments, sequence_id=sequence_id,
                                       address=address, state=state, after_id=after_id,
                                       limit=limit)

    async def pause_sequence(self, id: str, *, reason: str = "", actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.pause_sequence, id, reason=reason, actor=actor)

    async def resume_sequence(self, id: str, *, actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.resume_sequence, id, actor=actor)

    async def is_sequence_paused(self, id: str) -> bool:
        return await asyncio.to_thread(self.sync.is_sequence_paused, id)

    async def resolve_unknown_step(self, id: int, resolution: StepResolution, *,
                                   actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.resolve_unknown_step, id, resolution,
                                       actor=actor)

    async def record_reply(self, from_: str, *, actor: Actor = None) -> list[int]:
        return await asyncio.to_thread(self.sync.record_reply, from_, actor=actor)

    async def record_goal(self, address: str, sequence_id: str, *,
                          actor: Actor = None) -> list[int]:
        return await asyncio.to_thread(self.sync.record_goal, address, sequence_id, actor=actor)

    async def next_due(self) -> Optional[_dt.datetime]:
        return await asyncio.to_thread(self.sync.next_due)

    async def settle(self, timeout: float = 30.0) -> Optional[_dt.datetime]:
        return await asyncio.to_thread(self.sync.settle, timeout)

    async def start_campaign(self, campaign: Campaign, *, actor: Actor = None) -> CampaignInfo:
        return await asyncio.to_thread(self.sync.start_campaign, campaign, actor=actor)

    async def cancel_campaign(self, id: str, *, actor: Actor = None) -> int:
        return await asyncio.to_thread(self.sync.cancel_campaign, id, actor=actor)

    async def campaign_progress(self, id: str) -> CampaignProgress:
        return await asyncio.to_thread(self.sync.campaign_progress, id)

    async def find_campaign(self, id: str) -> Optional[CampaignInfo]:
        return await asyncio.to_thread(self.sync.find_campaign, id)

    async def campaigns(self) -> list[CampaignInfo]:
        return await asyncio.to_thread(self.sync.campaigns)

    async def forecast(self, *, campaign: Optional[Campaign] = None, sequence_id: str = "",
                       contacts: Iterable[RecipientLike] = (),
                       horizon: Seconds = _dt.timedelta(days=30),
                       include_queue: bool = True, follow: str = "") -> ForecastPlan:
        return await asyncio.to_thread(self.sync.forecast, campaign=campaign,
                                       sequence_id=sequence_id, contacts=contacts,
                                       horizon=horizon, include_queue=include_queue,
                                       follow=follow)

    async def put_webhook_endpoint(self, endpoint: WebhookEndpoint, *,
                                   actor: Actor = None) -> WebhookEndpoint:
        return await asyncio.to_thread(self.sync.put_webhook_endpoint, endpoint, actor=actor)

    async def remove_webhook_endpoint(self, id: str, *, actor: Actor = None) -> bool:
        return await asyncio.to_thread(self.sync.remove_webhook_endpoint, id, actor=actor)

    async def disable_webhook_endpoint(self, id: str, *, reason: str = "",
                                       actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.disable_webhook_endpoint, id, reason=reason,
                                       actor=actor)

    async def enable_webhook_endpoint(self, id: str, *, retry_failed: bool = False,
                                      failed_since: Optional[_dt.datetime] = None,
                                      actor: Actor = None) -> None:
        return await asyncio.to_thread(self.sync.enable_webhook_endpoint, id,
                                       retry_failed=retry_failed, failed_since=failed_since,
                                       actor=actor)

    async def webhook_endpoints(self) -> list[WebhookEndpoint]:
        return await asyncio.to_thread(self.sync.webhook_endpoints)

    async def find_webhook_endpoint(self, id: str) -> Optional[WebhookEndpoint]:
        return await asyncio.to_thread(self.sync.find_webhook_endpoint, id)

    async def webhook_deliveries(self, *, endpoint: str = "", state: Optional[str] = None,
                                 after_id: int = 0, limit: int = 0) -> list[WebhookDelivery]:
        return await asyncio.to_thread(self.sync.webhook_deliveries, endpoint=endpoint,
                                       state=state, after_id=after_id, limit=limit)

    async def count_webhook_deliveries(self, endpoint: str = "") -> WebhookDeliveryCounts:
        return await asyncio.to_thread(self.sync.count_webhook_deliveries, endpoint)

    async def metrics_text(self) -> str:
        return await asyncio.to_thread(self.sync.metrics_text)
