"""mailers: outbound email across many mailboxes and providers, from Python.

The engine decides who sends what, to whom, when and through which provider,
and keeps the receipts (see the project README). This package is a binding
of the C++ engine: the same store, the same decisions, the same audit log.

Quick start::

    import mailers

    with mailers.Engine(mailers.SQLite("workspace.db"),
                        actor=mailers.Principal("ops@brand.com", "Ops")) as engine:
        engine.add_provider("smtp", "smtp://rep1%40brand.com:env:SMTP_PASS@smtp.brand.com:587")
        engine.upsert_mailbox(mailers.Mailbox("rep1", "Riley <rep1@brand.com>", "smtp",
                                              limits=[mailers.per_day(50)]))
        engine.upsert_pool(mailers.Pool("outbound", ["rep1"]))
        try:
            engine.send("ada@example.com", pool="outbound", subject="Hi", text="Hello")
        except mailers.Throttled as e:
            print("try again at", e.retry_at)

Two faces: :class:`Engine` blocks the calling thread (scripts), and
:class:`AsyncEngine` returns awaitables (``await engine.send(...)``,
``async for event in engine.events()``). Each engine runs on an I/O thread of
its own; the GIL is released around every call into it, and Python code
(completions, event callbacks) runs on that thread only from its own loop,
never while the engine holds a lock. An exception raised by a callback is
logged to the "mailers" logger and goes no further.

Errors are :class:`Error` subclasses carrying ``code``, ``failure``,
``diagnostics`` (the provider's reply) and, for sends, ``result``.

Sequences (:class:`Sequence`, ``engine.enroll``) and campaigns
(:class:`Campaign`, ``engine.start_campaign``) are sent by each engine's queue
thread as their messages fall due (on a :class:`ManualClock`, move the clock to
``engine.settle()``'s answer); ``engine.forecast`` simulates them first and
sends nothing. Outbound webhooks
(:class:`WebhookEndpoint`) are POSTed from a durable outbox; receivers check
them with :func:`verify_webhook_signature`.

Lifetimes
---------
``close()``
    Stops the engine: sends not yet handed off fail with :class:`Aborted`,
    sends already handed off finish with their outcome (their awaitables
    complete), queued store writes are flushed, the engine leaves the
    workspace and its thread ends. It waits up to ``timeout`` seconds
    (default 30) for operations in flight, then stops waiting. Idempotent;
    every later call raises :class:`Aborted`. ``with`` / ``async with``
    close on exit. Called from an event callback, it starts the close on
    another thread and returns.
Garbage collection
    An engine nobody references is closed as by ``close()``: a send still
    in flight completes (its future or callback is still called), and the
    collection waits for that. Callbacks and event streams do not keep an
    engine alive.
Interpreter shutdown
    An ``atexit`` hook closes every engine still open, while threads can
    still run Python, so pending sends settle and writes are flushed. A
    completion that would reach Python after finalization has begun is
    dropped.
Event streams
    ``engine.events()`` registers at once (no event after the call is
    missed), buffers without bound until read, and ends when the engine
    closes or the stream is closed.
"""

from ._errors import (Aborted, AuditChainBroken, AuthFailure, CommitOutcomeUnknown, Diagnostics,
                      Duplicate, Error, HeaderInjection, InvalidAddress, InvalidArgument,
                      InvalidCsv, InvalidHeader, MessageRejected, MessageTooLarge,
                      MissingVariables, NoCapacity, NotFound, Paused, PermissionDenied,
                      ProviderThrottled, QuotaExhausted, RecipientRejected, ReputationFailure,
                      SchemaTooNew, StoreCorrupt, StoreError, StoreExists, StoreMissing,
                      Suppressed, TemplateError, Throttled, TransientFailure, TransportError,
                      UnknownCampaign, UnknownMailbox, UnknownOutcome, UnknownPool,
                      UnknownProvider, UnknownSequence, UnknownTimeZone)
from ._types import (WEEKDAYS_MON_FRI, DeliveryReportResult, SuppressionProblem,
                     SuppressionReport, Attachment, AuditHead, AuditRecord, Breaker, Campaign,
                     CampaignInfo, CampaignProgress, Captured, Delay, Enrollment, Event,
                     ForecastPlan, ForecastUnsent, Mailbox, MailboxStatus, OutboundWebhooks,
                     PauseInfo, PlannedSend, Pool, Postgres, Principal, QueueCounts, QueuedSend,
                     Quota, RateLimit, Recipient, Rendered, SendResult, SenderRule, SendWindow,
                     Sequence, SignatureCheck, SQLite, Stats, Step, SuppressionEntry, Template,
                     UnsubscribeResult, Warmup, WebhookDelivery, WebhookDeliveryCounts,
                     WebhookEndpoint, WebhookResult, business_days, days, hours, per_day,
                     per_hour, per_minute, template_seed, verify_webhook_signature,
                     CountScope, DailyCount, EventType, PauseRule, PauseScope, RuleFiring,
                     RuleMetric, SoftBouncePolicy, bounce_rate_preset, complaint_rate_preset,
                     AccessGrant, AccessPolicy, ErasureCounts, ErasureReport, Latencies,
                     LatencyHistogram, ParsedWebhook, RetentionPolicy, RetentionReport, Role,
                     ProviderCheck, StoredProvider)
from ._engine import (AsyncEngine, AsyncEventStream, Engine, EventStream, ManualClock,
                      Subscription, parse_webhook)
from . import _mailers


def normalise_address(address: str, *, fold_plus_tags: bool = False,
                      fold_gmail_dots: bool = False) -> str:
    """The suppression list's key for an address; raises InvalidAddress."""
    return _mailers.normalise_address(address, fold_plus_tags, fold_gmail_dots)


__version__ = ".".join(map(str, _mailers.version))

__all__ = [n for n in dir() if not n.startswith("_")]
