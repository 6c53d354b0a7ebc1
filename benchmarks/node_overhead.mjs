// CPU per send through the Node.js addon against the C++ engine alone, on
// the same workspace (decision_path_bench's: 50 mailboxes on five domains,
// weighted pool, daily and hourly caps, SQLite file), the same requests
// (1 KiB text, an idempotency key each) and the same transport (null),
// closed loop with the same number in flight.
//
//   node benchmarks/node_overhead.mjs [--sends N] [--inflight K] [--bench PATH]
//
// Needs the addon (MAILERS_NODE_ADDON or `npm install ./bindings/node`) and
// build/benchmarks/decision_path_bench. CPU is the whole process's (user +
// system, every thread), as decision_path_bench counts it.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const sends = Number(args.sends ?? 200000);
const inflight = Number(args.inflight ?? 256);
const bench = args.bench ?? join(here, '..', 'build', 'benchmarks', 'decision_path_bench');

const { Engine } = createRequire(import.meta.url)(join(here, '..', 'bindings', 'node'));

async function addon() {
  const dir = mkdtempSync(join(tmpdir(), 'mailers-node-bench-'));
  const engine = await Engine.open({ sqlite: join(dir, 'bench.db'), randomSeed: 1, actor: 'bench' });
  await engine.addProvider('null', 'null://null');
  const ids = [];
  for (let i = 0; i < 50; i++) {
    await engine.upsertMailbox({
      id: `mb${i}`,
      from: `Rep <rep${i}@brand${i % 5}.com>`,
      provider: 'null',
      limits: [{ max: 100000, seconds: 86400 }, { max: 20000, seconds: 3600 }],
      weight: 1 + (i % 3),
    });
    ids.push(`mb${i}`);
  }
  await engine.upsertPool({ id: 'bench', mailboxes: ids, policy: { kind: 'weighted' } });
  const text = 'x'.repeat(1024);
  const request = (i) => ({
    pool: 'bench',
    to: `prospect${i}@example${i % 997}.com`,
    subject: 'Quick question',
    text,
    idempotencyKey: `bench:${i}`,
  });
  let started = 0;
  const loop = async () => {
    while (started < sends) await engine.send(request(started++));
  };
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: inflight }, loop));
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(c0);
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
  return { rate: sends / dt, cpuUs: (cpu.user + cpu.system) / sends };
}

function cxx() {
  const out = execFileSync(bench, ['--suppressed', '0', '--sends', String(sends), '--inflight', String(inflight), '--rate-sends', '1000'], {
    encoding: 'utf8',
  });
  const m = /closed loop \(\d+ in flight, \d+ sends\): (\d+) sends\/s, ([\d.]+) us CPU\/send/.exec(out);
  if (!m) throw new Error(`unexpected decision_path_bench output:\n${out}`);
  return { rate: Number(m[1]), cpuUs: Number(m[2]) };
}

const c = cxx();
const n = await addon();
console.log(`null transport, SQLite, ${sends} sends, ${inflight} in flight`);
console.log(`C++ engine (decision_path_bench): ${c.rate.toFixed(0)} sends/s, ${c.cpuUs.toFixed(1)} us CPU/send`);
console.log(`Node addon:                       ${n.rate.toFixed(0)} sends/s, ${n.cpuUs.toFixed(1)} us CPU/send`);
console.log(`overhead: ${(n.cpuUs - c.cpuUs).toFixed(1)} us CPU/send (${((100 * (n.cpuUs - c.cpuUs)) / c.cpuUs).toFixed(0)}%)`);
