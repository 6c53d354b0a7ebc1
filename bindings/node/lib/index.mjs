// ESM entry: the same objects as the CommonJS one, so `instanceof` agrees
// whichever way a program loads mailers.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const m = require('./index.js');

export default m;
export const {
  Engine,
  bounceRatePreset,
  complaintRatePreset,
  parseWebhook,
  Template,
  normaliseAddress,
  parseAddress,
  templateSeed,
  verifyWebhookSignature,
  version,
  MailersError,
  TransportError,
  InvalidAddressError,
  HeaderInjectionError,
  InvalidHeaderError,
  InvalidArgumentError,
  MessageTooLargeError,
  UnknownPoolError,
  UnknownMailboxError,
  UnknownProviderError,
  UnknownTimeZoneError,
  SuppressedError,
  PausedError,
  NoCapacityError,
  DuplicateError,
  NotFoundError,
  PermissionDeniedError,
  StoreError,
  SchemaTooNewError,
  OperationAbortedError,
  InvalidCsvError,
  AuditChainBrokenError,
  CommitOutcomeUnknownError,
  StoreMissingError,
  StoreExistsError,
  StoreCorruptError,
  TransientError,
  ThrottledError,
  QuotaExhaustedError,
  ReputationError,
  AuthError,
  RecipientPermanentError,
  MessageRejectedError,
  UnknownOutcomeError,
} = m;
