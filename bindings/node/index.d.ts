// Type declarations for the mailers Node.js binding. Field names are the C++
// ones (include/mailers/*.hpp) in camelCase; durations are seconds unless
// the name says Ms; times are Dates.
import { EventEmitter } from 'node:events';

export type OpenMode = 'existing' | 'create' | 'open_or_create';

export interface Principal {
  id: string;
  displayName?: string;
}

/** Every mutating call takes `{ actor }` to act as someone other than the engine's actor. */
export interface ActorOption {
  actor?: Principal | string;
}

export interface EngineOptions {
  /** An SQLite file path (":memory:" for a private database) ... */
  sqlite?: string;
  /** ... or a libpq conninfo, or an `env:NAME` / `file:PATH` reference to one. */
  postgres?: string;
  /** PostgreSQL schema holding the tables (default "mailers"). */
  schema?: string;
  /** PostgreSQL connections kept open (default 4). */
  poolSize?: number;
  /** Default "open_or_create". */
  mode?: OpenMode;
  /** SQLite: "process_crash_safe" (default) or "power_loss_safe". */
  durability?: 'process_crash_safe' | 'power_loss_safe';
  workspace?: string;
  /** Who acts when a call names nobody; default the system principal. */
  actor?: Principal | string;
  /** A secret, or an `env:` / `file:` reference, keying the audit chain. */
  auditKey?: string;
  memberName?: string;
  messageIdDomain?: string;
  drainQueue?: boolean;
  randomSeed?: number;
  maxMessageSize?: number;
  syncIntervalMs?: number;
  queuePollIntervalMs?: number;
  suppression?: { foldPlusTags?: boolean; foldGmailDots?: boolean };
  unsubscribe?: { url: string; secret: string; mailto?: string };
  /** Run on a clock that moves only by `setTime` (simulations, tests), starting here. */
  manualClock?: Date | number;
}

export type WindowKind = 'rolling' | 'calendar';
export interface RateLimit {
  max: number;
  /** Window length in seconds (default 86400). */
  seconds?: number;
  kind?: WindowKind;
}

export interface MailboxConfig {
  id: string;
  /** "rep1@brand.com" or "Riley <rep1@brand.com>". */
  from: string;
  provider: string;
  limits?: RateLimit[];
  maxRecipientsPerMessage?: number;
  warmup?: { start: number; step: number; target: number; startDate?: Date | number };
  timeZone?: string;
  window?: { startHour?: number; endHour?: number; weekdays?: number };
  minGap?: number;
  jitter?: number;
  priority?: number;
  weight?: number;
  state?: 'active' | 'paused' | 'retired';
  breaker?: { failureThreshold?: number; coolDown?: number; maxCoolDown?: number };
  /** A provider's documented limits, applied as ceilings. */
  preset?: 'google_workspace' | 'microsoft_365';
}

export interface MailboxStatus {
  id: string;
  state: 'active' | 'paused' | 'retired';
  health: 'closed' | 'open' | 'half_open';
  sentToday: number;
  sentThisHour: number;
  effectiveDailyCap: number | null;
  blocked: string;
  nextEligible: Date | null;
}

export interface PoolConfig {
  id: string;
  mailboxes: string[];
  policy?: { kind?: 'round_robin' | 'weighted' | 'priority'; maxAttempts?: number; stickySender?: boolean };
}

export type QuotaScope = 'provider' | 'sender_domain' | 'recipient_domain';
export interface Quota {
  scope: QuotaScope;
  key: string;
  limits: RateLimit[];
  timeZone?: string;
}

export interface Attachment {
  filename?: string;
  contentType?: string;
  data: string | Buffer;
  contentId?: string;
}

export interface SendRequest {
  pool?: string;
  mailbox?: string;
  to: string;
  cc?: string | string[];
  bcc?: string | string[];
  replyTo?: string;
  raw?: string | Buffer;
  subject?: string;
  text?: string;
  html?: string;
  headers?: Record<string, string> | { name: string; value: string }[];
  attachments?: Attachment[];
  unsubscribe?: { url: string; mailto?: string };
  inReplyTo?: string;
  references?: string[];
  idempotencyKey?: string;
  actor?: Principal | string;
}

export interface Diagnostics {
  message: string;
  providerReply: string;
  enhancedStatus: string;
  status: number;
  providerCode: string;
  requestId: string;
  retryAfter: number | null;
}

export interface SendResult {
  sendId: string;
  state: 'reserved' | 'accepted' | 'failed' | 'unknown' | null;
  mailbox: string;
  provider: string;
  messageId: string;
  providerMessageId: string;
  attempts: number;
  duplicate: boolean;
  retryAt: Date | null;
  diag: Diagnostics;
}

export interface EnqueueOptions {
  notBefore?: Date | number;
  origin?: string;
}

export interface QueuedSend {
  id: number;
  idempotencyKey: string;
  pool: string;
  mailbox: string;
  origin: string;
  enqueuedAt: Date;
  notBefore: Date;
  dueAt: Date;
  state: 'waiting' | 'claimed' | 'done' | 'cancelled';
  waitReason: string;
  checks: number;
  sendId: string;
  detail: string;
}

export interface QueueCounts {
  waiting: number;
  claimed: number;
  done: number;
  cancelled: number;
  waitingByReason: Record<string, number>;
  nextDue: Date | null;
}

export type EventType =
  | 'queued' | 'sent' | 'delivered' | 'deferred' | 'bounced' | 'complained' | 'unsubscribed'
  | 'opened' | 'clicked' | 'rejected' | 'failed' | 'replied' | 'suppressed' | 'no_capacity'
  | 'unknown' | 'paused' | 'alert';

export interface MailersEvent {
  type: EventType;
  at: Date;
  sendId: string;
  idempotencyKey: string;
  mailbox: string;
  pool: string;
  provider: string;
  recipient: string;
  providerMessageId: string;
  messageId: string;
  bounce: 'none' | 'hard' | 'soft';
  detail: string;
  retryAt: Date | null;
  providerEvent: string;
  providerEventId: string;
  dedupKey: string;
  diagnosticCode: string;
}

export type SuppressionKind = 'address' | 'domain';
export type SuppressionReason = 'unsubscribe' | 'hard_bounce' | 'complaint' | 'manual' | 'legal';
export interface SuppressionEntry {
  kind: SuppressionKind;
  value: string;
  reason: SuppressionReason;
  source: string;
  createdAt: Date;
}

export type PauseScope = 'workspace' | 'pool' | 'mailbox' | 'provider' | 'sender_domain';
export interface PauseTarget {
  scope?: PauseScope;
  id?: string;
}
export interface PauseInfo {
  scope: PauseScope;
  id: string;
  reason: string;
  actor: string;
  since: Date;
}

export interface AuditRecord {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  resourceType: string;
  resourceId: string;
  before: string;
  after: string;
  prevHash: string;
  hash: string;
}
export interface AuditHead {
  seq: number;
  hash: string;
}

export interface EngineStats {
  accepted: number;
  failed: number;
  unknown: number;
  suppressed: number;
  noCapacity: number;
  paused: number;
  rejected: number;
  duplicates: number;
  failovers: number;
  commits: number;
  committedOps: number;
}

export type WebhookProvider = 'ses' | 'mailgun' | 'sendgrid' | 'postmark';
export interface WebhookRequest {
  method?: string;
  headers?: Record<string, string | string[] | undefined>;
  body: string | Buffer;
}
export interface WebhookOptions {
  verify?: boolean;
  keepRaw?: boolean;
  now?: Date | number;
  mailgunSigningKey?: string;
  sendgridPublicKey?: string;
  postmarkBasicUser?: string;
  postmarkBasicPassword?: string;
  postmarkHeaderName?: string;
  postmarkHeaderValue?: string;
}
export interface IngestResult {
  httpStatus: number;
  outcome: 'events' | 'subscription_confirmation' | 'unsubscribe_confirmation' | 'ignored' | 'certificate_needed' | 'rejected';
  reason: string;
  events: MailersEvent[];
  confirmUrl: string;
  suppressed: number;
  alreadySuppressed: number;
  duplicates: number;
}

export interface CapturedMessage {
  mailFrom: string;
  rcptTo: string[];
  from: string;
  subject: string;
  text: string;
  html: string;
  messageId: string;
  raw: string;
  mailbox: string;
  sendId: string;
  headers: { name: string; value: string }[];
}

export type Permission =
  | 'send' | 'enqueue' | 'pause' | 'resume' | 'override_cap' | 'suppression_add' | 'suppression_remove'
  | 'manage_providers' | 'manage_mailboxes' | 'manage_pools' | 'manage_sequences' | 'read_audit'
  | 'export_data' | 'erase_person' | 'manage_webhooks' | 'manage_access';

export declare class Engine extends EventEmitter {
  static open(options: EngineOptions): Promise<Engine>;
  private constructor();

  send(request: SendRequest): Promise<SendResult>;
  enqueue(request: SendRequest, options?: EnqueueOptions): Promise<number>;
  enqueueAndWait(request: SendRequest, options?: EnqueueOptions): Promise<QueuedSend>;
  cancelQueued(id: number, opts?: ActorOption): Promise<boolean>;
  queued(filter?: { state?: QueuedSend['state']; originPrefix?: string; afterId?: number; limit?: number }): Promise<QueuedSend[]>;
  queueCounts(): Promise<QueueCounts>;

  /** A transport by DSN (transport_factory.hpp); secrets by `env:` / `file:` reference. */
  addProvider(id: string, dsn: string, opts?: ActorOption): Promise<void>;
  upsertMailbox(mailbox: MailboxConfig, opts?: ActorOption): Promise<void>;
  retireMailbox(id: string, opts?: ActorOption): Promise<void>;
  mailbox(id: string): Promise<Required<MailboxConfig> | null>;
  mailboxes(): Promise<Required<MailboxConfig>[]>;
  status(mailboxId: string): Promise<MailboxStatus>;
  upsertPool(pool: PoolConfig, opts?: ActorOption): Promise<void>;
  removePool(id: string, opts?: ActorOption): Promise<void>;
  pool(id: string): Promise<Required<PoolConfig> | null>;
  pools(): Promise<Required<PoolConfig>[]>;
  setQuota(quota: Quota, opts?: ActorOption): Promise<void>;
  removeQuota(scope: QuotaScope, key: string, opts?: ActorOption): Promise<void>;
  quotas(): Promise<Quota[]>;

  putRole(role: { id: string; permissions: Permission[] }, opts?: ActorOption): Promise<void>;
  grantAccess(grant: { principal: string; role: string; scope?: { kind?: 'workspace' | 'pool' | 'mailbox' | 'provider' | 'sequence'; id?: string } }, opts?: ActorOption): Promise<void>;
  setAccessControl(enabled: boolean, opts?: ActorOption): Promise<void>;

  suppress(value: string, opts?: ActorOption & { kind?: SuppressionKind; reason?: SuppressionReason; source?: string }): Promise<void>;
  unsuppress(value: string, opts?: ActorOption & { kind?: SuppressionKind }): Promise<boolean>;
  isSuppressed(address: string): Promise<boolean>;
  findSuppression(address: string): Promise<SuppressionEntry | null>;
  suppressionCount(): Promise<number>;
  /** CSV: value,kind,reason,source,created_at; header optional; all lines or none. */
  importSuppressions(csv: string | Buffer, opts?: ActorOption & { source?: string }): Promise<number>;
  exportSuppressions(): Promise<string>;
  verifySuppressions(): Promise<{ ok: boolean; auditChainOk: boolean; brokenAuditSeq: number; rows: number; changes: number }>;

  pause(target?: PauseTarget, opts?: ActorOption & { reason?: string }): Promise<void>;
  resume(target?: PauseTarget, opts?: ActorOption): Promise<void>;
  isPaused(target?: PauseTarget): Promise<boolean>;
  pauses(): Promise<PauseInfo[]>;

  ingestWebhook(provider: WebhookProvider, request: WebhookRequest, options?: WebhookOptions): Promise<IngestResult>;
  unsubscribe(token: string): Promise<{ status: string; recipient: string; sendId: string; suppressed: boolean; already: boolean }>;

  auditLog(fromSeq?: number): Promise<AuditRecord[]>;
  verifyAudit(checkpoint?: AuditHead): Promise<{ ok: boolean; badSeq: number | null }>;
  auditCheckpoint(): Promise<AuditHead>;
  stats(): Promise<EngineStats>;
  flush(): Promise<void>;
  cancel(): Promise<void>;

  /** Events from now on, buffered until read. */
  events(options?: { signal?: AbortSignal }): AsyncIterableIterator<MailersEvent>;
  on(name: 'event' | EventType, listener: (event: MailersEvent) => void): this;
  on(name: 'error', listener: (error: unknown) => void): this;
  on(name: string | symbol, listener: (...args: any[]) => void): this;

  /** What a provider added as `capture://capture` has been given. */
  captured(providerId: string, options?: { clear?: boolean }): CapturedMessage[];
  /** Operations in flight (sends, calls, close). */
  readonly pending: number;
  /** Moves the clock of an engine opened with `manualClock`. */
  setTime(date: Date | number): void;
  /** The engine's clock. */
  now(): Date;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export declare class MailersError extends Error {
  /** The mailers::errc or transport_errc name: 'suppressed', 'rate_limited', ... */
  readonly code: string;
  /** For transport errors, the failure class; null for the library's own verdicts. */
  readonly failure: string | null;
  readonly retryAt: Date | null;
  readonly diag: Diagnostics | null;
  /** For a send: what the engine recorded. */
  readonly result: SendResult | null;
}
export declare class TransportError extends MailersError {}
export declare class InvalidAddressError extends MailersError {}
export declare class HeaderInjectionError extends MailersError {}
export declare class InvalidHeaderError extends MailersError {}
export declare class InvalidArgumentError extends MailersError {}
export declare class MessageTooLargeError extends MailersError {}
export declare class UnknownPoolError extends MailersError {}
export declare class UnknownMailboxError extends MailersError {}
export declare class UnknownProviderError extends MailersError {}
export declare class UnknownTimeZoneError extends MailersError {}
export declare class SuppressedError extends MailersError {}
export declare class PausedError extends MailersError {}
export declare class NoCapacityError extends MailersError {}
export declare class DuplicateError extends MailersError {}
export declare class NotFoundError extends MailersError {}
export declare class PermissionDeniedError extends MailersError {}
export declare class StoreError extends MailersError {}
export declare class SchemaTooNewError extends MailersError {}
export declare class OperationAbortedError extends MailersError {}
export declare class InvalidCsvError extends MailersError {}
export declare class AuditChainBrokenError extends MailersError {}
export declare class CommitOutcomeUnknownError extends MailersError {}
export declare class StoreMissingError extends MailersError {}
export declare class StoreExistsError extends MailersError {}
export declare class StoreCorruptError extends MailersError {}
export declare class TransientError extends TransportError {}
export declare class ThrottledError extends TransportError {}
export declare class QuotaExhaustedError extends TransportError {}
export declare class ReputationError extends TransportError {}
export declare class AuthError extends TransportError {}
export declare class RecipientPermanentError extends TransportError {}
export declare class MessageRejectedError extends TransportError {}
export declare class UnknownOutcomeError extends TransportError {}

export declare const version: string;
