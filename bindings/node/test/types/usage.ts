// Compiled, never run, by types.test.js (tsc --noEmit): the README's usage
// type-checks against index.d.ts through the package's own name, and
// misuse does not (each @ts-expect-error must meet an error).
import {
  Engine,
  MailersError,
  NoCapacityError,
  SuppressedError,
  TransportError,
  ThrottledError,
  type MailersEvent,
  type SendResult,
  type Enrollment,
  type CampaignInfo,
  type CampaignProgress,
  type ForecastPlan,
  type WebhookDelivery,
  type DailyCount,
  type PauseRule,
  type RuleFiring,
  type ErasureReport,
  type RetentionReport,
  type AccessPolicy,
  type PipelineLatencies,
  type QueuedSend,
  bounceRatePreset,
  complaintRatePreset,
  parseWebhook,
  Template,
  templateSeed,
  normaliseAddress,
  verifyWebhookSignature,
  type ParsedWebhook,
  type IngestResult,
  type ProviderCheck,
} from 'mailers';

export async function quickstart(): Promise<void> {
  const engine = await Engine.open({ sqlite: 'workspace.db', actor: { id: 'ops@brand.com' } });
  await engine.addProvider('main', 'postmark+api://env:POSTMARK_TOKEN@default');
  await engine.saveProvider('relay', 'smtp://apikey:env:SMTP_KEY@smtp.example.com:587');
  const stored: Date = (await engine.storedProviders())[0].updatedAt;
  const check: ProviderCheck = await engine.checkProvider({ dsn: 'capture://capture' });
  const failure: string | null = (await engine.checkProvider('relay')).failure;
  await engine.removeProvider('relay');
  // @ts-expect-error: a DSN is given as { dsn }
  await engine.checkProvider({ url: 'capture://capture' });
  await engine.upsertMailbox({ id: 'rep1', from: 'Riley <rep1@brand.com>', provider: 'main',
                               limits: [{ max: 50, seconds: 86400 }], timeZone: 'Europe/Berlin' });
  await engine.upsertPool({ id: 'outbound', mailboxes: ['rep1'] });
  try {
    const r: SendResult = await engine.send({ pool: 'outbound', to: 'ada@example.com', subject: 'Hi',
                                              text: '...', idempotencyKey: 'lead-42:step-1' });
    const id: string = r.sendId;
    void id;
  } catch (err) {
    if (err instanceof NoCapacityError) {
      const at: Date | null = err.retryAt;
      void at;
    } else if (err instanceof TransportError) {
      const failure: string | null = err.failure;
      void failure;
    } else if (!(err instanceof SuppressedError)) {
      throw err;
    }
  }
  engine.on('sent', (e: MailersEvent) => void e.type);
  engine.on('error', (e: unknown) => void e);
  const stop = new AbortController();
  for await (const e of engine.events({ signal: stop.signal })) {
    if (e.type === 'bounced') break;
  }
  const n: number = await engine.importSuppressions(Buffer.from('a@x.example,address,manual,,\n'));
  const ok: boolean = (await engine.verifyAudit()).ok;
  void n;
  void ok;
  const e: MailersError = new ThrottledError('x');
  void e.code;
  await engine.close();
}

export async function misuse(engine: Engine): Promise<void> {
  // @ts-expect-error: engines are opened, not constructed
  new Engine();
  // @ts-expect-error: a send needs a request
  await engine.send();
  // @ts-expect-error: mode is one of three names
  await Engine.open({ sqlite: 'x.db', mode: 'truncate' });
  // @ts-expect-error: send resolves with a SendResult, not a string
  const s: string = await engine.send({ pool: 'p', to: 'a@example.com', text: 'x' });
  void s;
  // @ts-expect-error: pending is read-only
  engine.pending = 3;
}

export async function workflows(engine: Engine): Promise<void> {
  await engine.upsertSequence({
    id: 'outreach',
    steps: [
      { content: { subject: 'Hi {{first_name}}', text: '...' }, sender: { kind: 'owner', fallbackPool: 'sdr' } },
      { delay: { in: 'business_days', amount: 2 }, content: { text: 'Bumping this.' }, sender: { kind: 'previous_step' }, threading: 'reply' },
    ],
    replyStops: 'every_sequence',
  });
  const en: Enrollment = await engine.enroll('outreach', 'Ada <ada@acme.example>', { variables: { first_name: 'Ada' }, owner: 'rep1' });
  const paused: boolean = await engine.pauseEnrollment(en.id);
  const stopped: number[] = await engine.recordReply('ada@acme.example');
  const active: Enrollment[] = await engine.enrollments({ sequenceId: 'outreach', state: 'active' });
  const next: Date | null = await engine.nextDue();
  void paused, stopped, active, next;

  const info: CampaignInfo = await engine.startCampaign({
    id: 'q4', content: { subject: 'News', text: 'Hi {{first_name|there}}' }, pool: 'sdr',
    recipients: ['a@example.com', { to: 'b@example.com', variables: { first_name: 'B' } }],
  });
  const p: CampaignProgress = await engine.campaignProgress(info.id);
  const withdrawn: number = await engine.cancelCampaign('q4');
  const plan: ForecastPlan = await engine.forecast({ sequenceId: 'outreach', contacts: [{ to: 'c@example.com' }], horizon: 14 * 86400 });
  void p.finished, withdrawn, plan.last;

  const ep = await engine.putWebhookEndpoint({ id: 'crm', url: 'https://crm.example.com/hook', eventTypes: ['bounced'] });
  const secret: string = ep.secret;
  const rows: WebhookDelivery[] = await engine.webhookDeliveries({ endpoint: 'crm', state: 'failed' });
  const metrics: string = await engine.metricsText();
  void secret, rows, metrics;
  engine.on('sent', (e) => void [e.campaign, e.sequence, e.enrollment, e.step]);

  try {
    await engine.upsertSequence({ id: 'x', steps: [] });
  } catch (err) {
    if (err instanceof MailersError && err.templateError) {
      const line: number | null = err.templateError.line;
      void line;
    }
  }
}

export async function workflowMisuse(engine: Engine): Promise<void> {
  // @ts-expect-error: a delay unit is hours, days or business_days
  await engine.upsertSequence({ id: 's', steps: [{ delay: { in: 'weeks' }, content: {}, sender: { kind: 'pool', id: 'p' } }] });
  // @ts-expect-error: enrollment ids are numbers
  await engine.pauseEnrollment('1');
  // @ts-expect-error: variables are strings
  await engine.enroll('s', 'a@example.com', { variables: { n: 1 } });
  // @ts-expect-error: event types are the engine's names
  await engine.putWebhookEndpoint({ id: 'e', url: 'https://x.example/', eventTypes: ['exploded'] });
}

export async function rules(engine: Engine): Promise<void> {
  await engine.putPauseRule(bounceRatePreset('bounces'));
  await engine.putPauseRule(complaintRatePreset('gmail', 'sender_domain'));
  const r: PauseRule = { id: 'emea-failures', scope: 'pool', target: 'emea', metric: 'failures', windowSends: 200, maxRate: 0.2 };
  await engine.putPauseRule(r, { actor: { id: 'ops@brand.com' } });
  const rules: Required<PauseRule>[] = await engine.pauseRules();
  const removed: boolean = await engine.removePauseRule('emea-failures');
  const fired: RuleFiring[] = await engine.checkPauseRules();
  const days: DailyCount[] = await engine.dailyCounts({ scope: 'mailbox', id: 'rep1' }, { from: new Date(Date.now() - 27 * 86400e3), to: new Date() });
  await engine.setSoftBouncePolicy({ threshold: 3, windowDays: 14 });
  const threshold: number = (await engine.softBouncePolicy()).threshold;
  await engine.resume({ scope: 'mailbox', id: 'rep1' }, { reason: 'list cleaned' });
  engine.on('auto_paused', (e: MailersEvent) => void e.detail);
  await engine.putWebhookEndpoint({ id: 'ops', url: 'https://ops.example/hook', eventTypes: ['auto_paused', 'alert'] });
  void rules, removed, fired[0]?.target.id, days[0]?.bouncedHard, threshold;
}

export async function rulesMisuse(engine: Engine): Promise<void> {
  // @ts-expect-error: a rule's metric is one of the engine's names
  await engine.putPauseRule({ id: 'x', metric: 'joy' });
  // @ts-expect-error: a rule needs an id
  await engine.putPauseRule({ maxRate: 0.1 });
  // @ts-expect-error: counts are kept for a count scope
  await engine.dailyCounts({ scope: 'sequence', id: 's' }, { from: new Date(), to: new Date() });
  // @ts-expect-error: a resume's reason is a string
  await engine.resume({ scope: 'mailbox', id: 'rep1' }, { reason: 3 });
}

export async function privacy(): Promise<void> {
  const engine = await Engine.open({ sqlite: 'workspace.db', erasureKey: 'env:MAILERS_ERASURE_KEY' });
  const r: ErasureReport = await engine.erasePerson('ada@example.com', { actor: { id: 'dpo@brand.com' } });
  const hash: string = r.hash;
  const scrubbed: number = r.erased.sends;
  const doc: Record<string, unknown> = await engine.exportPerson('ada@example.com');
  const purged: RetentionReport = await engine.purgeRetained({ sends: 90 * 86400, webhookDeliveries: 30 * 86400 });
  const policy: AccessPolicy = await engine.accessControl();
  await engine.revokeAccess({ principal: 'bob', role: 'sender', scope: { kind: 'pool', id: 'out' } });
  await engine.removeRole('sender');
  const lat: PipelineLatencies = await engine.latencies();
  const q: QueuedSend | null = await engine.findQueued(1);
  const parsed: ParsedWebhook = parseWebhook('sendgrid', { method: 'POST', headers: {}, body: '[]' }, { verify: false });
  const applied: IngestResult | null = parsed.httpStatus === 200 ? await engine.applyWebhook(parsed) : null;
  void applied;
  void hash, scrubbed, doc, purged.sends, policy.grants[0]?.scope.kind, lat.total.p99Us, q;
}

export function helpers(): void {
  const t = new Template({ subject: 'Hi {{first_name|there}}', text: '...' });
  const needed: string[] = t.requiredVariables();
  const out: string = t.render({ first_name: 'Ada' }, templateSeed('enrollment-1', 1)).subject;
  const key: string = normaliseAddress('Jane+news@example.com', { foldPlusTags: true });
  const ok: boolean = verifyWebhookSignature('whsec_x', { 'webhook-id': 'a' }, '{}').ok;
  void needed, out, key, ok;
  // @ts-expect-error: variables are strings
  t.render({ n: 1 });
}

export async function privacyMisuse(engine: Engine): Promise<void> {
  // @ts-expect-error: retention windows are seconds
  await engine.purgeRetained({ sends: '90 days' });
  // @ts-expect-error: an erasure names an address
  await engine.erasePerson({ to: 'ada@example.com' });
  // @ts-expect-error: applyWebhook takes what parseWebhook returned
  await engine.applyWebhook({ body: '[]' });
  // @ts-expect-error: queue ids are numbers
  await engine.findQueued('1');
  // @ts-expect-error: a grant's scope kind is one of the access scopes
  await engine.revokeAccess({ principal: 'bob', role: 'sender', scope: { kind: 'campaign' } });
}
