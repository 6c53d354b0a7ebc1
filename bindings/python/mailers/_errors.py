"""The exception hierarchy, built from the engine's error codes.

Every failure the engine reports is a :class:`Error`. Library verdicts
(``mailers::errc``) map to one class each; a transport's reply maps to a
:class:`TransportError` subclass by its failure class (``mailers::failure``),
with the provider's reply in :attr:`Error.diagnostics`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from dataclasses import dataclass
from typing import Any, Iterator, Optional


@dataclass(frozen=True)
class Diagnostics:
    """Detail beside an error; never contains secrets."""

    message: str = ""
    provider_reply: str = ""  #: the provider's reply text, verbatim
    enhanced_status: str = ""  #: RFC 3463 code, e.g. "5.7.26"
    status: int = 0  #: SMTP reply code or HTTP status, 0 if none
    provider_code: str = ""
    request_id: str = ""
    retry_after: Optional[int] = None  #: seconds, when the provider said


class Error(Exception):
    """Base of every mailers failure.

    ``code`` is the error's name ("suppressed", "rate_limited", ...),
    ``category`` "mailers" for the library's verdicts and "transport" for a
    provider's reply, ``failure`` the failure class of a transport error
    ("throttled", "recipient_permanent", ...; None for library verdicts),
    ``diagnostics`` the detail, and ``result`` the send's
    :class:`~mailers.SendResult` when the error completed a send.
    """

    def __init__(self, message: str = "", *, code: str = "", category: str = "mailers",
                 failure: Optional[str] = None, diagnostics: Optional[Diagnostics] = None,
                 result: Any = None) -> None:
        super().__init__(message or code)
        self.code = code
        self.category = category
        self.failure = failure
        self.diagnostics = diagnostics or Diagnostics()
        self.result = result

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r}, code={self.code!r})"


class InvalidArgument(Error, ValueError):
    """A parameter out of range, or input the engine refuses."""


class InvalidAddress(InvalidArgument):
    pass


class HeaderInjection(InvalidArgument):
    pass


class InvalidHeader(InvalidArgument):
    pass


class MessageTooLarge(InvalidArgument):
    pass


class UnknownTimeZone(InvalidArgument):
    pass


class InvalidCsv(InvalidArgument):
    pass


class TemplateError(InvalidArgument):
    """A template that does not compile or render: ``part`` ("subject", "text",
    "html"), 1-based ``line`` and ``column``, and ``reason``; for a sequence, the
    1-based ``step`` (0 for none) and ``field``."""

    part: str = ""
    line: int = 0
    column: int = 0
    reason: str = ""
    step: int = 0
    field: str = ""


class MissingVariables(InvalidArgument):
    """A contact or recipient lacks variables a template needs without a fallback:
    ``missing`` and ``invalid`` (values that are not UTF-8 text) name them, and
    ``recipient`` is the first address that lacks them."""

    missing: list[str] = []
    invalid: list[str] = []
    recipient: str = ""


class NotFound(Error, LookupError):
    """The object to change, or the pool, mailbox or provider named, does not exist."""


class UnknownPool(NotFound):
    pass


class UnknownMailbox(NotFound):
    pass


class UnknownProvider(NotFound):
    pass


class UnknownSequence(NotFound):
    pass


class UnknownCampaign(NotFound):
    pass


class Suppressed(Error):
    """A recipient is on the suppression list; nothing was sent."""


class Paused(Error):
    """What the send needs is paused."""


class Throttled(Error):
    """Not now: try again at ``retry_at`` (an aware datetime, or None when unknown).

    For :class:`NoCapacity` it is when a mailbox can next send; for
    :class:`ProviderThrottled`, the provider's retry-after counted from when
    the error was made."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.retry_at: Optional[_dt.datetime] = None
        if self.result is not None and getattr(self.result, "retry_at", None) is not None:
            self.retry_at = self.result.retry_at
        elif self.diagnostics.retry_after is not None:
            self.retry_at = _dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(
                seconds=self.diagnostics.retry_after)


class NoCapacity(Throttled):
    """No eligible mailbox can send now (caps, windows, gaps, breakers)."""


class Duplicate(Error):
    """An object with that id already exists."""


class PermissionDenied(Error, PermissionError):
    pass


class Aborted(Error):
    """The engine was cancelled or closed before the operation finished."""


class AuditChainBroken(Error):
    """The audit log fails verification; ``bad_seq`` is the first bad record."""

    bad_seq: int = 0


class StoreError(Error):
    """The store failed (I/O, corruption, a lost connection)."""


class SchemaTooNew(StoreError):
    pass


class CommitOutcomeUnknown(StoreError):
    pass


class StoreMissing(StoreError):
    pass


class StoreExists(StoreError):
    pass


class StoreCorrupt(StoreError):
    pass


class TransportError(Error):
    """A provider refused or lost the message; ``failure`` says what that means."""


class TransientFailure(TransportError):
    pass


class ProviderThrottled(TransportError, Throttled):
    pass


class QuotaExhausted(TransportError):
    pass


class ReputationFailure(TransportError):
    pass


class AuthFailure(TransportError):
    pass


class RecipientRejected(TransportError):
    pass


class MessageRejected(TransportError):
    pass


class UnknownOutcome(TransportError):
    """The message may have left; it is never retried automatically."""


_BY_CODE: dict[str, type[Error]] = {
    "invalid_address": InvalidAddress,
    "header_injection": HeaderInjection,
    "invalid_header": InvalidHeader,
    "invalid_argument": InvalidArgument,
    "message_too_large": MessageTooLarge,
    "unknown_pool": UnknownPool,
    "unknown_mailbox": UnknownMailbox,
    "unknown_provider": UnknownProvider,
    "unknown_time_zone": UnknownTimeZone,
    "suppressed": Suppressed,
    "paused": Paused,
    "no_capacity": NoCapacity,
    "duplicate": Duplicate,
    "not_found": NotFound,
    "permission_denied": PermissionDenied,
    "store_error": StoreError,
    "schema_too_new": SchemaTooNew,
    "operation_aborted": Aborted,
    "invalid_csv": InvalidCsv,
    "audit_chain_broken": AuditChainBroken,
    "commit_outcome_unknown": CommitOutcomeUnknown,
    "store_missing": StoreMissing,
    "store_exists": StoreExists,
    "store_corrupt": StoreCorrupt,
}

_BY_FAILURE: dict[str, type[TransportError]] = {
    "transient": TransientFailure,
    "throttled": ProviderThrottled,
    "quota_exhausted": QuotaExhausted,
    "reputation": ReputationFailure,
    "auth": AuthFailure,
    "recipient_permanent": RecipientRejected,
    "message_rejected": MessageRejected,
    "unknown_outcome": UnknownOutcome,
}


def make_error(info: dict, result: Any = None) -> Error:
    """Builds the exception for an error the native layer reports."""
    diag = Diagnostics(**info["diagnostics"])
    if info["category"] == "mailers":
        cls: type[Error] = _BY_CODE.get(info["code"], Error)
    else:
        cls = _BY_FAILURE.get(info["failure"] or "unknown_outcome", UnknownOutcome)
    text = diag.message or info["message"]
    if diag.provider_reply and diag.provider_reply not in text:
        text = f"{text}: {diag.provider_reply}"
    detail = info.get("detail") or {}
    if cls is InvalidArgument and "part" in detail:
        cls = TemplateError
    elif cls is InvalidArgument and "missing" in detail:
        cls = MissingVariables
    err = cls(text, code=info["code"], category=info["category"], failure=info["failure"],
              diagnostics=diag, result=result)
    if cls in (TemplateError, MissingVariables):
        for k, v in detail.items():
            setattr(err, k, v)
    return err


@contextlib.contextmanager
def naming(cls: type[NotFound]) -> Iterator[None]:
    """Raises a bare :class:`NotFound` from the block as ``cls``, the subclass that
    names what was missing (the engine reports an unknown sequence or campaign as
    plain not_found)."""
    try:
        yield
    except NotFound as e:
        if type(e) is not NotFound:
            raise
        raise cls(str(e), code=e.code, category=e.category, failure=e.failure,
                  diagnostics=e.diagnostics, result=e.result) from None
