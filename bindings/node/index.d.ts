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
  /** The key erased addresses stay suppressed under (a secret, or `env:NAME` / `file:PATH`);
   * without one the workspace's first erasure makes one and keeps it in the store. */
  erasureKey?: string;
  memberName?: string;
  messageIdDomain?: string;
  drainQueue?: boolean;
  randomSeed?: number;
  maxMessageSize?: number;
  syncIntervalMs?: number;
  queuePollIntervalMs?: number;
  /** While pause rules exist, how often this engine sweeps them over every target (default 300; 0 off). */
  ruleCheckIntervalSeconds?: number;
  suppression?: { foldPlusTags?: boolean; foldGmailDots?: boolean };
  unsubscribe?: { url: string; secret: string; mailto?: string };
  /** Run on a clock that moves only by `setTime` (simulations, tests), starting here. */
  manualClock?: Date | number;
  /** How this engine delivers outbound webhooks (webhook_endpoint.hpp, outbound_webhook_params). */
  webhooks?: OutboundWebhookOptions;
}

export interface OutboundWebhookOptions {
  /** Whether this engine attempts deliveries (default true). */
  deliver?: boolean;
  /** Allow loopback, private, link-local targets (tests, private networks). */
  allowPrivateTargets?: boolean;
  /** Allow http:// URLs. */
  allowHttp?: boolean;
  /** Attempts per delivery, the first included (default 9). */
  maxAttempts?: number;
  /** Seconds: the first retry's ceiling (default 5) ... */
  firstRetry?: number;
  /** ... growing fourfold per attempt up to this (default 86400). */
  maxRetry?: number;
  disableOnFailure?: boolean;
  timeoutMs?: number;
  maxResponseSize?: number;
  pollIntervalMs?: number;
  inFlight?: number;
  /** Seconds ended rows are kept (default 7 days; 0 keeps them). */
  retention?: number;
  caFile?: string;
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
  | 'unknown' | 'paused' | 'alert'
  /** A pause rule paused a target: `detail` names the rule, the target and the rate. */
  | 'auto_paused';

export interface MailersEvent {
  type: EventType;
  at: Date;
  sendId: string;
  idempotencyKey: string;
  /** The campaign the send belongs to, else "". */
  campaign: string;
  /** A sequence step's send (idempotency key "seq:<sequence>:<enrollment>:<step>", "~<attempt>" appended for a re-send): the sequence, else "". */
  sequence: string;
  /** ... its enrollment id, else 0. */
  enrollment: number;
  /** ... and its 1-based step, else 0. */
  step: number;
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

/** What daily counts are kept for (docs/rules.md); the workspace's id is "". */
export type CountScope = 'workspace' | 'mailbox' | 'pool' | 'provider' | 'sender_domain';
/** One UTC day's counts for one scope. */
export interface DailyCount {
  /** 00:00 UTC of the day. */
  day: Date;
  sent: number;
  failed: number;
  unknown: number;
  delivered: number;
  deferred: number;
  bouncedHard: number;
  bouncedSoft: number;
  complained: number;
  unsubscribed: number;
  opened: number;
  clicked: number;
}
/** `threshold` soft bounces of one address within `windowDays` days suppress it; 0 (the default) is off. */
export interface SoftBouncePolicy {
  threshold?: number;
  windowDays?: number;
}
export type RuleMetric = 'hard_bounces' | 'bounces' | 'complaints' | 'failures';
/**
 * Pauses a target whose `metric` rate over its window reaches `maxRate` once `minVolume` sends
 * are counted. `target` "" watches every target of `scope`; `windowSends` above 0 replaces
 * `windowDays` with the fewest recent days holding that many sends.
 */
export interface PauseRule {
  id: string;
  scope?: PauseScope;
  target?: string;
  metric?: RuleMetric;
  windowDays?: number;
  windowSends?: number;
  maxRate?: number;
  minVolume?: number;
  /** After a manual resume of a target, the rule leaves it alone this many days. */
  graceDays?: number;
}
/** What a rule measured when it paused its target. */
export interface RuleFiring {
  rule: string;
  target: { scope: PauseScope; id: string };
  count: number;
  volume: number;
  rate: number;
  fromDay: Date;
  toDay: Date;
}
/** Bounces, 2% of sends over 28 days, at least 20 sends, 7 days of grace. */
export declare function bounceRatePreset(id: string, scope?: PauseScope): Required<PauseRule>;
/** Complaints, 0.3% over 7 days (Gmail's line), at least 1000 sends, 7 days of grace. */
export declare function complaintRatePreset(id: string, scope?: PauseScope): Required<PauseRule>;

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

/** One stage of the send pipeline: `counts[i]` sends took [2^i, 2^(i+1)) µs (`counts[0]`: under 2 µs). */
export interface LatencyHistogram {
  counts: number[];
  sumUs: number;
  total: number;
  /** Upper bounds, in µs, of the buckets holding the median and the 99th percentile (0 when empty). */
  p50Us: number;
  p99Us: number;
}

/** Where the time of a send goes, per stage, since the engine started. */
export interface PipelineLatencies {
  decide: LatencyHistogram;
  reserve: LatencyHistogram;
  handoff: LatencyHistogram;
  record: LatencyHistogram;
  total: LatencyHistogram;
}

export type AccessScopeKind = 'workspace' | 'pool' | 'mailbox' | 'provider' | 'sequence';
export interface AccessGrant {
  principal: string;
  role: string;
  /** Default: the workspace. */
  scope?: { kind?: AccessScopeKind; id?: string };
}
export interface AccessPolicy {
  enabled: boolean;
  roles: { id: string; permissions: Permission[] }[];
  grants: { principal: string; role: string; scope: { kind: AccessScopeKind; id: string } }[];
}

/** What `erasePerson` did (docs/privacy.md). */
export interface ErasureReport {
  /** The keyed hash the person stays suppressed under: quote it instead of the address. */
  hash: string;
  at: Date;
  erased: {
    suppressionRows: number;
    sends: number;
    queued: number;
    queueCancelled: number;
    enrollments: number;
    webhookDeliveries: number;
    recordedKeys: number;
    softBounces: number;
  };
  /** An address entry suppressed it before. */
  wasSuppressed: boolean;
  auditSeq: number;
}

/** Retention windows in seconds; 0 (or absent) keeps that class. */
export interface RetentionPolicy {
  /** Ledger rows with a recorded outcome, from their reservation: at least 8 days. */
  sends?: number;
  /** Outbound webhook deliveries delivered or given up, from their last attempt. */
  webhookDeliveries?: number;
  /** Audit records, from their time; the newest stays and the chain verifies from its anchor. */
  audit?: number;
  /** Daily counts of days that ended longer ago than this: at least 365 days. */
  counts?: number;
}
export interface RetentionReport {
  at: Date;
  sends: number;
  webhookDeliveries: number;
  /** Audit records purged. */
  auditRecords: number;
  /** Daily count and soft-bounce rows gone or changed. */
  counts: number;
  /** The first kept audit record (0: none was ever purged). */
  anchorSeq: number;
  auditSeq: number;
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
/** A provider's request verified and read by parseWebhook, not yet applied. */
export interface ParsedWebhook {
  provider: WebhookProvider;
  /** What to answer the provider. */
  httpStatus: number;
  outcome: 'events' | 'subscription_confirmation' | 'unsubscribe_confirmation' | 'ignored' | 'certificate_needed' | 'rejected';
  reason: string;
  events: MailersEvent[];
  confirmUrl: string;
}

export interface IngestResult extends Omit<ParsedWebhook, 'provider'> {
  suppressed: number;
  alreadySuppressed: number;
  duplicates: number;
}

/**
 * Verifies and reads a provider's webhook request without applying it (no engine, no store):
 * the first half of `Engine.ingestWebhook`. Give the result to `engine.applyWebhook`.
 * Synchronous; Mailgun tokens it has seen are refused again for the life of the process.
 */
/** A message template compiled once (docs/templates.md); InvalidArgumentError with `templateError` when it does not compile. */
export declare class Template {
  constructor(source?: TemplateSource);
  /** Every variable it refers to, sorted. */
  variables(): string[];
  /** Variables every render needs (used without a fallback outside any section). */
  requiredVariables(): string[];
  check(variables?: TemplateVariables): { missing: string[]; invalid: string[] };
  /** Spintax choices follow `seed` (templateSeed()); a missing variable throws InvalidArgumentError. */
  render(variables?: TemplateVariables, seed?: bigint | number): { subject: string; text: string; html: string };
}
/** The seed an enrollment's step renders with: 64 bits, so a BigInt. */
export declare function templateSeed(enrollmentId: string, step: number): bigint;
/** The suppression list's key for an address; InvalidAddressError when it is not one. */
export declare function normaliseAddress(address: string, options?: { foldPlusTags?: boolean; foldGmailDots?: boolean }): string;
export declare function parseAddress(address: string): { address: string; displayName: string };
/**
 * Checks an outbound webhook request the Standard Webhooks way: its webhook-id, webhook-timestamp
 * and webhook-signature headers (any case) against the body and the endpoint's secret, the
 * timestamp within `tolerance` seconds (default 300) of `now` (default: the current time).
 */
export declare function verifyWebhookSignature(secret: string, headers: Record<string, string | string[] | undefined>, body: string | Buffer,
                                               options?: { now?: Date | number; tolerance?: number }): { ok: boolean; httpStatus: number; reason: string };

export declare function parseWebhook(provider: WebhookProvider, request: WebhookRequest, options?: WebhookOptions): ParsedWebhook;

export interface DeliveryReportResult {
  /** False when the message is not a bounce: nothing changed. */
  recognised: boolean;
  format: string;
  reportingMta: string;
  /** The bounced message's Message-ID, without <>. */
  originalMessageId: string;
  events: MailersEvent[];
  reason: string;
  suppressed: number;
  alreadySuppressed: number;
  duplicates: number;
}

export interface StoredProvider {
  id: string;
  /** As saved: secrets only as `env:` / `file:` references. */
  dsn: string;
  createdAt: Date;
  updatedAt: Date;
  /** Whether this engine sends through the stored DSN (false when addProvider registered the id here, or the DSN does not build here). */
  active: boolean;
}

export interface ProviderCheck {
  /** The provider's id; '' for a DSN given directly. */
  provider: string;
  /** 'smtp', 'ses', 'capture', ... */
  transport: string;
  ok: boolean;
  /** The failure class when not ok ('auth', 'transient', ...). */
  failure: string | null;
  /** What was checked, or what failed. */
  message: string;
}

export interface CapturedMessage {
  mailFrom: string;
  rcptTo: string[];
  from: string;
  subject: string;
  text: string;
  html: string;
  messageId: string;
  /** Message-IDs without <>. */
  inReplyTo: string;
  references: string[];
  raw: string;
  mailbox: string;
  sendId: string;
  headers: { name: string; value: string }[];
}

export type Permission =
  | 'send' | 'enqueue' | 'pause' | 'resume' | 'override_cap' | 'suppression_add' | 'suppression_remove'
  | 'manage_providers' | 'manage_mailboxes' | 'manage_pools' | 'manage_sequences' | 'read_audit'
  | 'export_data' | 'erase_person' | 'manage_webhooks' | 'manage_access';

export interface TemplateSource {
  subject?: string;
  text?: string;
  html?: string;
}
export type TemplateVariables = Record<string, string>;

export type DelayUnit = 'hours' | 'days' | 'business_days';
export type SenderRuleKind = 'pool' | 'mailbox' | 'previous_step' | 'owner';
export type StepThreading = 'new_thread' | 'reply';
export type StopScope = 'this_sequence' | 'every_sequence';
export type EnrollmentConflict = 'refuse' | 'merge';

export interface SequenceStep {
  /** After the step before (the enrollment, for the first step); default `{ in: 'days', amount: 0 }`. */
  delay?: { in?: DelayUnit; amount?: number };
  content: TemplateSource;
  sender: { kind: SenderRuleKind; id?: string; fallbackPool?: string };
  threading?: StepThreading;
}

export interface SequenceConfig {
  id: string;
  name?: string;
  steps: SequenceStep[];
  /** The calendar of pool steps ("" is UTC). */
  timeZone?: string;
  /** Bit 0 = Sunday; default Monday to Friday (0x3e). */
  businessWeekdays?: number;
  /** "YYYY-MM-DD" */
  holidays?: string[];
  onEnrolledTwice?: EnrollmentConflict;
  replyStops?: StopScope;
  goalStops?: StopScope;
}

export type EnrollmentState = 'active' | 'paused' | 'completed' | 'stopped' | 'failed' | 'unresolved';
export type StepResolution = 'sent' | 'not_sent';
export type EnrollmentStop = 'none' | 'replied' | 'bounced' | 'unsubscribed' | 'suppressed' | 'goal' | 'manual';

export interface Enrollment {
  id: number;
  sequenceId: string;
  /** Normalised. */
  address: string;
  displayName: string;
  variables: TemplateVariables;
  owner: string;
  actor: string;
  state: EnrollmentState;
  stopReason: EnrollmentStop;
  detail: string;
  /** The 0-based index of the next step: the number of steps sent. */
  step: number;
  /** When the scheduler next plans its step; null while the step waits in the queue, and when not active. */
  nextDue: Date | null;
  stepDue: Date | null;
  queueKey: string;
  plans: number;
  prevMailbox: string;
  prevMessageId: string;
  prevSubject: string;
  prevReferences: string[];
  lastSentAt: Date | null;
  enrolledAt: Date;
  updatedAt: Date;
  version: number;
}

export interface EnrollOptions extends ActorOption {
  variables?: TemplateVariables;
  /** The owner mailbox, for steps whose sender is `owner`. */
  owner?: string;
  onEnrolledTwice?: EnrollmentConflict;
}

export interface EnrollmentFilter {
  sequenceId?: string;
  address?: string;
  state?: EnrollmentState;
  afterId?: number;
  limit?: number;
}

export interface CampaignRecipient {
  to: string;
  variables?: TemplateVariables;
}

export interface CampaignConfig {
  id: string;
  name?: string;
  content: TemplateSource;
  pool?: string;
  mailbox?: string;
  replyTo?: string;
  /** Addresses, or addresses with their variables. */
  recipients: (string | CampaignRecipient)[];
  notBefore?: Date | number;
}

export interface CampaignInfo {
  id: string;
  name: string;
  content: Required<TemplateSource>;
  pool: string;
  mailbox: string;
  notBefore: Date | null;
  startedAt: Date;
  actor: string;
  total: number;
  suppressedAtStart: number;
  cancelled: boolean;
  digest: string;
}

export interface CampaignProgress {
  id: string;
  total: number;
  sent: number;
  failed: number;
  unknown: number;
  suppressedAtStart: number;
  suppressedAtHandoff: number;
  cancelled: number;
  inFlight: number;
  waiting: number;
  waitingByReason: Record<string, number>;
  notQueued: number;
  remaining: number;
  nextDue: Date | null;
  cancelledCampaign: boolean;
  finished: boolean;
}

export interface ForecastRequest {
  campaign?: CampaignConfig;
  sequenceId?: string;
  contacts?: { to: string; variables?: TemplateVariables; owner?: string }[];
  /** Seconds to simulate, rounded up to whole hours (default 30 days). */
  horizon?: number;
  includeQueue?: boolean;
  /** "campaign:<id>": also run the queue's waiting sends of that origin to their end. */
  follow?: string;
}

export interface PlannedSend {
  at: Date;
  due: Date;
  mailbox: string;
  recipient: string;
  origin: string;
  step: number;
  /** What held it back last: "" (nothing), "cap", "window", "gap", "pace", "paused", "breaker", "throttled". */
  bound: string;
  existing: boolean;
}

export interface ForecastPlan {
  start: Date;
  end: Date;
  sends: PlannedSend[];
  unsent: { recipient: string; origin: string; step: number; reason: string; detail: string; waiting: boolean }[];
  last: Date | null;
  complete: boolean;
}

export interface WebhookEndpoint {
  id: string;
  /** https:// (http:// with `webhooks.allowHttp`). */
  url: string;
  /** "whsec_..." or an env: / file: reference; empty or absent: generated. */
  secret?: string;
  /** Empty or absent: every event. */
  eventTypes?: EventType[];
  enabled?: boolean;
  description?: string;
}

export interface StoredWebhookEndpoint extends Required<WebhookEndpoint> {
  disabledReason: string;
}

export type WebhookDeliveryState = 'pending' | 'claimed' | 'delivered' | 'failed';

export interface WebhookDelivery {
  id: number;
  endpoint: string;
  /** The webhook-id header. */
  messageId: string;
  eventKey: string;
  eventType: string;
  /** The JSON body. */
  payload: string;
  createdAt: Date;
  dueAt: Date;
  state: WebhookDeliveryState;
  attempts: number;
  lastStatus: number;
  detail: string;
  updatedAt: Date;
}

export interface WebhookDeliveryCounts {
  pending: number;
  claimed: number;
  delivered: number;
  failed: number;
  lastDelivered: Date | null;
}

export declare class Engine extends EventEmitter {
  static open(options: EngineOptions): Promise<Engine>;
  private constructor();

  send(request: SendRequest): Promise<SendResult>;
  enqueue(request: SendRequest, options?: EnqueueOptions): Promise<number>;
  enqueueAndWait(request: SendRequest, options?: EnqueueOptions): Promise<QueuedSend>;
  cancelQueued(id: number, opts?: ActorOption): Promise<boolean>;
  findQueued(id: number): Promise<QueuedSend | null>;
  queued(filter?: { state?: QueuedSend['state']; originPrefix?: string; afterId?: number; limit?: number }): Promise<QueuedSend[]>;
  queueCounts(): Promise<QueueCounts>;

  /** A transport by DSN (transport_factory.hpp); secrets by `env:` / `file:` reference. */
  addProvider(id: string, dsn: string, opts?: ActorOption): Promise<void>;
  /**
   * Keeps provider `id` in the store as a DSN, creating or replacing it: every
   * engine of the workspace builds its transport (at start and within one
   * change-feed poll). Secrets only as `env:NAME` / `file:/path` references: a
   * DSN with one inline, or one that does not build here, rejects with
   * InvalidArgumentError and stores nothing. A provider added with
   * addProvider keeps precedence in its engine.
   */
  saveProvider(id: string, dsn: string, opts?: ActorOption): Promise<void>;
  /** Rejects with InvalidArgumentError while a mailbox that is not retired uses it, NotFoundError when none is stored. */
  removeProvider(id: string, opts?: ActorOption): Promise<void>;
  /** The workspace's stored providers, in id order. */
  storedProviders(): Promise<StoredProvider[]>;
  /**
   * Checks a provider's connection and credentials, sending nothing: by id,
   * the transport this engine sends through (one addProvider registered,
   * else the one built from the stored DSN with this process's secrets); or
   * a transport built from `dsn` for the check alone. Resolves with the
   * check when it passed; a failed check rejects with its failure class's
   * Error (AuthError, TransientError, ...), the check on `result`. An
   * unknown id rejects with NotFoundError; a stored DSN that cannot be built
   * here, or a DSN that does not build, with InvalidArgumentError; close()
   * during the check with OperationAbortedError.
   */
  checkProvider(provider: string | { dsn: string }): Promise<ProviderCheck>;
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
  grantAccess(grant: AccessGrant, opts?: ActorOption): Promise<void>;
  /** Rejects with NotFoundError when there is no such grant. */
  revokeAccess(grant: AccessGrant, opts?: ActorOption): Promise<void>;
  /** Removes a role and every grant of it; NotFoundError when there is none. */
  removeRole(id: string, opts?: ActorOption): Promise<void>;
  setAccessControl(enabled: boolean, opts?: ActorOption): Promise<void>;
  accessControl(): Promise<AccessPolicy>;
  /** Erases a person's data and keeps them suppressed under a keyed hash (docs/privacy.md). */
  erasePerson(address: string, opts?: ActorOption): Promise<ErasureReport>;
  /** Everything the workspace holds about an address: the engine's JSON object, parsed. */
  exportPerson(address: string, opts?: ActorOption): Promise<Record<string, unknown>>;
  /** Forgets ledger rows and ended webhook deliveries past their windows. */
  purgeRetained(policy: RetentionPolicy, opts?: ActorOption): Promise<RetentionReport>;

  suppress(value: string, opts?: ActorOption & { kind?: SuppressionKind; reason?: SuppressionReason; source?: string }): Promise<void>;
  unsuppress(value: string, opts?: ActorOption & { kind?: SuppressionKind }): Promise<boolean>;
  isSuppressed(address: string): Promise<boolean>;
  findSuppression(address: string): Promise<SuppressionEntry | null>;
  suppressionCount(): Promise<number>;
  /** CSV: value,kind,reason,source,created_at; header optional; all lines or none. */
  importSuppressions(csv: string | Buffer, opts?: ActorOption & { source?: string }): Promise<number>;
  exportSuppressions(): Promise<string>;
  /** The folding rules suppression keys are made with now (the engine's `suppression` option, once applied, else the stored ones). */
  suppressionRules(): Promise<{ foldPlusTags: boolean; foldGmailDots: boolean }>;
  verifySuppressions(): Promise<{ ok: boolean; auditChainOk: boolean; brokenAuditSeq: number; rows: number; changes: number }>;

  pause(target?: PauseTarget, opts?: ActorOption & { reason?: string }): Promise<void>;
  /** Lifts a pause, audited with `reason`; pause rules then leave the target alone for their `graceDays`. */
  resume(target?: PauseTarget, opts?: ActorOption & { reason?: string }): Promise<void>;
  isPaused(target?: PauseTarget): Promise<boolean>;
  pauses(): Promise<PauseInfo[]>;

  /** One element per UTC day from `from` to `to` (the days holding them, both included), zeros too. */
  dailyCounts(target: { scope: CountScope; id?: string }, range: { from: Date | number; to: Date | number }): Promise<DailyCount[]>;
  /** InvalidArgumentError for values out of range, changing nothing. */
  setSoftBouncePolicy(policy: SoftBouncePolicy, opts?: ActorOption): Promise<void>;
  softBouncePolicy(): Promise<Required<SoftBouncePolicy>>;
  /** Adds a rule or replaces the one with its id; InvalidArgumentError (a bad domain: InvalidAddressError) changes nothing. */
  putPauseRule(rule: PauseRule, opts?: ActorOption): Promise<void>;
  removePauseRule(id: string, opts?: ActorOption): Promise<boolean>;
  pauseRules(): Promise<Required<PauseRule>[]>;
  /** Evaluates every rule on every target now; resolves with what fired here. The engine also sweeps every `ruleCheckIntervalSeconds`. */
  checkPauseRules(): Promise<RuleFiring[]>;

  ingestWebhook(provider: WebhookProvider, request: WebhookRequest, options?: WebhookOptions): Promise<IngestResult>;
  /** The second half of ingestWebhook, for what parseWebhook read: applies its events exactly once. */
  applyWebhook(parsed: ParsedWebhook): Promise<IngestResult>;
  /** One bounce message (RFC 3464, qmail, exim) fetched from a sending mailbox; a hard bounce suppresses its recipient. */
  ingestDeliveryReport(message: string | Buffer): Promise<DeliveryReportResult>;
  unsubscribe(token: string): Promise<{ status: string; recipient: string; sendId: string; suppressed: boolean; already: boolean }>;

  auditLog(fromSeq?: number): Promise<AuditRecord[]>;
  verifyAudit(checkpoint?: AuditHead): Promise<{ ok: boolean; badSeq: number | null }>;
  auditCheckpoint(): Promise<AuditHead>;
  stats(): Promise<EngineStats>;
  latencies(): Promise<PipelineLatencies>;
  /** Prometheus text exposition of this engine's counters and the workspace's gauges. */
  metricsText(): Promise<string>;
  flush(): Promise<void>;
  cancel(): Promise<void>;

  upsertSequence(sequence: SequenceConfig, opts?: ActorOption): Promise<void>;
  removeSequence(id: string, opts?: ActorOption): Promise<void>;
  sequence(id: string): Promise<Required<SequenceConfig> | null>;
  sequences(): Promise<Required<SequenceConfig>[]>;
  /** `contact`: "ada@acme.example" or "Ada <ada@acme.example>". */
  enroll(sequenceId: string, contact: string, opts?: EnrollOptions): Promise<Enrollment>;
  pauseEnrollment(id: number, opts?: ActorOption): Promise<boolean>;
  resumeEnrollment(id: number, opts?: ActorOption): Promise<boolean>;
  stopEnrollment(id: number, opts?: ActorOption & { reason?: string }): Promise<boolean>;
  /**
   * Says what happened to the step whose send ended `unknown` and holds an
   * `unresolved` enrollment: 'sent' goes on with the next step, 'not_sent'
   * sends the step again, once, under a send key of its own
   * ("seq:<sequence>:<enrollment>:<step>~<attempt>"), then goes on. Resolves `false`
   * when it was no longer unresolved.
   */
  resolveUnknownStep(id: number, resolution: StepResolution, opts?: ActorOption): Promise<boolean>;
  enrollment(id: number): Promise<Enrollment | null>;
  enrollments(filter?: EnrollmentFilter): Promise<Enrollment[]>;
  pauseSequence(id: string, opts?: ActorOption & { reason?: string }): Promise<void>;
  resumeSequence(id: string, opts?: ActorOption): Promise<void>;
  isSequencePaused(id: string): Promise<boolean>;
  /** `from`: the replying address, or the Message-ID of the step replied to. Resolves with the enrollment ids stopped. */
  recordReply(from: string, opts?: ActorOption): Promise<number[]>;
  recordGoal(address: string, sequenceId: string, opts?: ActorOption): Promise<number[]>;
  /** When the scheduler next has work (a queued send or an enrollment's step); null when nothing waits. */
  nextDue(): Promise<Date | null>;

  startCampaign(campaign: CampaignConfig, opts?: ActorOption): Promise<CampaignInfo>;
  /** Resolves with the number of items withdrawn. */
  cancelCampaign(id: string, opts?: ActorOption): Promise<number>;
  campaignProgress(id: string): Promise<CampaignProgress>;
  campaign(id: string): Promise<CampaignInfo | null>;
  campaigns(): Promise<CampaignInfo[]>;
  /** A dry run: nothing is sent or stored. */
  forecast(request: ForecastRequest): Promise<ForecastPlan>;

  /** Resolves with the endpoint as stored, its secret included (generated when none was given). */
  putWebhookEndpoint(endpoint: WebhookEndpoint, opts?: ActorOption): Promise<StoredWebhookEndpoint>;
  removeWebhookEndpoint(id: string, opts?: ActorOption): Promise<boolean>;
  enableWebhookEndpoint(id: string, opts?: ActorOption & { retryFailed?: boolean; failedSince?: Date | number }): Promise<void>;
  disableWebhookEndpoint(id: string, opts?: ActorOption & { reason?: string }): Promise<void>;
  /** Inline secrets are shown as "whsec_…". */
  webhookEndpoints(): Promise<StoredWebhookEndpoint[]>;
  webhookEndpoint(id: string): Promise<StoredWebhookEndpoint | null>;
  webhookDeliveries(filter?: { endpoint?: string; state?: WebhookDeliveryState; afterId?: number; limit?: number }): Promise<WebhookDelivery[]>;
  /** One endpoint's rows, or every endpoint's. */
  webhookDeliveryCounts(endpoint?: string): Promise<WebhookDeliveryCounts>;

  /** Events from now on, buffered until read. */
  events(options?: { signal?: AbortSignal }): AsyncIterableIterator<MailersEvent>;
  on(name: 'event' | EventType, listener: (event: MailersEvent) => void): this;
  on(name: 'error', listener: (error: unknown) => void): this;
  on(name: string | symbol, listener: (...args: any[]) => void): this;

  /** What a provider added as `capture://capture` has been given. */
  captured(providerId: string, options?: { clear?: boolean }): CapturedMessage[];
  /**
   * Resolves with nextDue() once nothing is being handed off and nothing is due at or before now():
   * for an engine on a manual clock, moved with `engine.setTime(await engine.settle())`.
   */
  settle(options?: { timeoutMs?: number; intervalMs?: number }): Promise<Date | null>;
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
  /** For a send: what the engine recorded; for checkProvider, the check. */
  readonly result: SendResult | ProviderCheck | null;
  /** For a refused sequence or campaign template: where it went wrong. */
  readonly templateError?: TemplateErrorInfo;
}
export interface TemplateErrorInfo {
  /** 1-based step; 0 for the sequence as a whole, or a campaign. */
  step: number;
  /** "content", "sender", "id", ... */
  field: string;
  part: 'subject' | 'text' | 'html' | null;
  line: number | null;
  column: number | null;
  message: string;
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
