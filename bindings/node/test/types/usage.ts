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
} from 'mailers';

export async function quickstart(): Promise<void> {
  const engine = await Engine.open({ sqlite: 'workspace.db', actor: { id: 'ops@brand.com' } });
  await engine.addProvider('main', 'postmark+api://env:POSTMARK_TOKEN@default');
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
