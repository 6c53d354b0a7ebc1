'use strict';
// Lifetimes (README "Lifetimes"): close(), process.exit with sends in
// flight, a worker ending with sends in flight, garbage collection, and a
// restart on the same SQLite file.
const assert = require('node:assert/strict');
const path = require('path');
const { spawn } = require('child_process');
const { test, mailers, captureEngine, message, tempDir } = require('./helpers');

const index = JSON.stringify(path.resolve(__dirname, '..'));

// Runs `body` in a child node (the same addon) and resolves with its exit
// code, signal and output. The 120 s limit only catches a hang.
function child(body, args = []) {
  const src = `const mailers = require(${index});\n${body}`;
  return new Promise((resolve, reject) => {
    const p = spawn(process.execPath, [...args, '-e', src], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => {
      p.kill('SIGKILL');
      reject(new Error(`child hung: ${err}`));
    }, 120000);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out, err });
    });
  });
}

const setup = (file) => `
  const e = await mailers.Engine.open({ sqlite: ${JSON.stringify(file)} });
  await e.addProvider('cap', 'capture://capture');
  await e.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap' });
  await e.upsertPool({ id: 'out', mailboxes: ['rep1'] });
`;

test('after close() the engine keeps nothing alive: the process exits by itself', async (t) => {
  const file = path.join(tempDir(t), 'ws.db');
  const r = await child(`(async () => {
    ${setup(file)}
    await e.send({ pool: 'out', to: 'a@example.com', text: 'x' });
    await e.close();
    console.log('closed', mailers._liveEngines());
  })();`);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /closed 1/);
});

test('an engine never closed does not keep the process alive either', async (t) => {
  const file = path.join(tempDir(t), 'ws.db');
  const r = await child(`(async () => {
    ${setup(file)}
    await e.send({ pool: 'out', to: 'a@example.com', text: 'x' });
    console.log('done');
  })();`);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /done/);
});

test('process.exit with 1000 sends in flight exits cleanly, and the store opens again', async (t) => {
  const file = path.join(tempDir(t), 'ws.db');
  const r = await child(`(async () => {
    ${setup(file)}
    for (let i = 0; i < 1000; i++) e.send({ pool: 'out', to: 'lead' + i + '@example.com', text: 'x', idempotencyKey: 'k' + i }).catch(() => {});
    process.exit(7);
  })();`);
  assert.equal(r.signal, null, r.err);
  assert.equal(r.code, 7, r.err);
  const e = await mailers.Engine.open({ sqlite: file, mode: 'existing' });
  t.after(() => e.close());
  assert.deepEqual(await e.verifyAudit(), { ok: true, badSeq: null });
  assert.equal((await e.mailboxes()).length, 1);
});

test('a worker ending with sends in flight and events arriving, terminated or by process.exit: the process carries on', async (t) => {
  const file = path.join(tempDir(t), 'ws.db');
  const worker = `const mailers = require(${index});
    const { parentPort, workerData } = require('worker_threads');
    (async () => {
      ${setup(file)}
      e.on('event', () => {});
      for (let i = 0; i < 1000; i++) e.send({ pool: 'out', to: 'w' + i + '@example.com', text: 'x' }).catch(() => {});
      if (workerData === 'exit') process.exit(3);
      parentPort.postMessage('in flight');
    })();`;
  // Ten workers: a completion meets a worker being torn down in a narrow
  // window, which one worker seldom hits.
  const r = await child(`const { Worker } = require('worker_threads');
    (async () => {
      const codes = [];
      for (let i = 0; i < 10; i++) {
        const w = new Worker(${JSON.stringify(worker)}, { eval: true, workerData: i % 2 ? 'exit' : 'terminate' });
        w.on('message', () => w.terminate());
        codes.push(await new Promise((resolve, reject) => { w.on('exit', resolve); w.on('error', reject); }));
      }
      console.log('codes', codes.join(','));
    })();`);
  assert.equal(r.signal, null, r.err);
  assert.equal(r.code, 0, r.err);
  // Terminated: 1, or 0 when its sends had all settled and it ended first.
  assert.match(r.out, /codes ([01],3,){4}[01],3\n/);
  const e = await mailers.Engine.open({ sqlite: file, mode: 'existing' });
  t.after(() => e.close());
  assert.deepEqual(await e.verifyAudit(), { ok: true, badSeq: null });
});

test('close() with sends in flight: each settles, aborted or sent, and close waits for them', async (t) => {
  const { engine } = await captureEngine(t);
  const sends = Array.from({ length: 500 }, (_, i) => engine.send(message(`l${i}@example.com`)));
  const settling = Promise.allSettled(sends);
  await engine.close();
  const settled = await settling;
  for (const s of settled) {
    if (s.status === 'rejected') assert.ok(s.reason instanceof mailers.OperationAbortedError, String(s.reason));
  }
  assert.equal(engine.pending, 0);
  await assert.rejects(engine.send(message('late@example.com')), mailers.OperationAbortedError);
});

test('garbage collection: an engine with sends in flight is kept until they settle, then collected and closed', async (t) => {
  const file = path.join(tempDir(t), 'ws.db');
  const r = await child(
    `(async () => {
    let collected = false;
    const registry = new FinalizationRegistry(() => { collected = true; });
    async function fire() {
      ${setup(file)}
      registry.register(e, 'engine');
      return Array.from({ length: 200 }, (_, i) => e.send({ pool: 'out', to: 'g' + i + '@example.com', text: 'x' }));
    }
    const sends = await fire();
    for (let i = 0; i < 5; i++) { global.gc(); await new Promise((r) => setImmediate(r)); }
    const results = await Promise.all(sends);
    console.log('settled', results.filter((x) => x.state === 'accepted').length);
    for (let i = 0; i < 200 && (!collected || mailers._liveEngines() > 0); i++) {
      global.gc();
      await new Promise((r) => setTimeout(r, 10));
    }
    console.log('collected', collected, 'live', mailers._liveEngines());
  })();`,
    ['--expose-gc'],
  );
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /settled 200/);
  assert.match(r.out, /collected true live 0/);
  // The collected engine left the workspace: the file opens and verifies.
  const e = await mailers.Engine.open({ sqlite: file, mode: 'existing' });
  t.after(() => e.close());
  assert.equal((await e.verifyAudit()).ok, true);
});

test('restart on the same SQLite file: configuration, suppressions, pauses and sends survive', async (t) => {
  const file = path.join(tempDir(t), 'ws.db');
  let e = await mailers.Engine.open({ sqlite: file, actor: 'ops' });
  await e.addProvider('cap', 'capture://capture');
  await e.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'cap', limits: [{ max: 5 }] });
  await e.upsertPool({ id: 'out', mailboxes: ['rep1'] });
  await e.suppress('no@example.com', { reason: 'complaint' });
  await e.pause({ scope: 'provider', id: 'elsewhere' }, { reason: 'maintenance' });
  const first = await e.send(message('ada@example.com', { idempotencyKey: 'once' }));
  await e.close();

  e = await mailers.Engine.open({ sqlite: file, mode: 'existing', actor: 'ops' });
  t.after(() => e.close());
  await e.addProvider('cap', 'capture://capture'); // providers are runtime objects
  assert.deepEqual((await e.mailboxes()).map((m) => m.id), ['rep1']);
  assert.equal((await e.findSuppression('no@example.com')).reason, 'complaint');
  assert.equal(await e.isPaused({ scope: 'provider', id: 'elsewhere' }), true);
  const dup = await e.send(message('ada@example.com', { idempotencyKey: 'once' })).catch((x) => x);
  assert.ok(dup instanceof mailers.DuplicateError);
  assert.equal(dup.result.sendId, first.sendId);
  assert.equal((await e.status('rep1')).sentToday, 1);
  assert.equal(e.captured('cap').length, 0);
  assert.equal((await e.verifyAudit()).ok, true);
});
