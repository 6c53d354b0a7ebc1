'use strict';
// One Error subclass per library error (mailers::errc) and per transport
// failure class (mailers::failure). Every error carries:
//   code      the errc or transport_errc name ('suppressed', 'rate_limited', ...)
//   failure   for transport errors, the failure class ('throttled', ...);
//             null for the library's own verdicts
//   retryAt   a Date when a retry makes sense (no capacity, retry-after), else null
//   diag      the provider's reply, status codes and request id
//   result    for a send, what the engine recorded (send id, mailbox, ...)
//   templateError  for a refused sequence or campaign template: the step,
//             field, part, line and column

class MailersError extends Error {
  constructor(message, info = {}) {
    super(message);
    this.name = new.target.name;
    this.code = info.code ?? 'system_error';
    this.failure = info.failure ?? null;
    this.retryAt = info.retryAt ?? null;
    this.diag = info.diag ?? null;
    this.result = info.result ?? null;
    if (info.templateError) this.templateError = info.templateError;
  }
}

// The library's verdicts and input errors, by errc name.
const libraryErrors = {
  invalid_address: 'InvalidAddressError',
  header_injection: 'HeaderInjectionError',
  invalid_header: 'InvalidHeaderError',
  invalid_argument: 'InvalidArgumentError',
  message_too_large: 'MessageTooLargeError',
  unknown_pool: 'UnknownPoolError',
  unknown_mailbox: 'UnknownMailboxError',
  unknown_provider: 'UnknownProviderError',
  unknown_time_zone: 'UnknownTimeZoneError',
  suppressed: 'SuppressedError',
  paused: 'PausedError',
  no_capacity: 'NoCapacityError',
  duplicate: 'DuplicateError',
  not_found: 'NotFoundError',
  permission_denied: 'PermissionDeniedError',
  store_error: 'StoreError',
  schema_too_new: 'SchemaTooNewError',
  operation_aborted: 'OperationAbortedError',
  invalid_csv: 'InvalidCsvError',
  audit_chain_broken: 'AuditChainBrokenError',
  commit_outcome_unknown: 'CommitOutcomeUnknownError',
  store_missing: 'StoreMissingError',
  store_exists: 'StoreExistsError',
  store_corrupt: 'StoreCorruptError',
};

// A transport's refusal, by failure class (mailers::failure).
class TransportError extends MailersError {}
const transportErrors = {
  transient: 'TransientError',
  throttled: 'ThrottledError',
  quota_exhausted: 'QuotaExhaustedError',
  reputation: 'ReputationError',
  auth: 'AuthError',
  recipient_permanent: 'RecipientPermanentError',
  message_rejected: 'MessageRejectedError',
  unknown_outcome: 'UnknownOutcomeError',
};

const classes = { MailersError, TransportError };
const byCode = new Map();
const byFailure = new Map();
for (const [code, name] of Object.entries(libraryErrors)) {
  // A named class (not an anonymous one) so stack traces and
  // `err.constructor.name` say what it is.
  const cls = { [name]: class extends MailersError {} }[name];
  classes[name] = cls;
  byCode.set(code, cls);
}
for (const [failure, name] of Object.entries(transportErrors)) {
  const cls = { [name]: class extends TransportError {} }[name];
  classes[name] = cls;
  byFailure.set(failure, cls);
}

// The native side rejects with plain objects ({ category, code, failure,
// message, diag, retryAt, result }); this makes them Errors. Anything else
// (a TypeError for a bad argument) passes through.
function toError(e) {
  if (e instanceof Error || e === null || typeof e !== 'object' || !('category' in e)) return e;
  let cls = MailersError;
  if (e.category === 'mailers') cls = byCode.get(e.code) ?? MailersError;
  else if (e.failure) cls = byFailure.get(e.failure) ?? TransportError;
  return new cls(e.message, e);
}

module.exports = { ...classes, toError, libraryErrors, transportErrors };
