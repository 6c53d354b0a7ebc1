'use strict';
// RSS before and after many sends through the null transport, in batches
// of 1000 in flight. Not part of the suite (it takes a while and its
// numbers are for people): run `node --expose-gc test/leak.js [sends]`.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { Engine } = require('..');

const total = Number(process.argv[2] || 100000);
const batch = 1000;
const mb = (n) => (n / 1048576).toFixed(1);

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailers-leak-'));
  const engine = await Engine.open({ sqlite: path.join(dir, 'ws.db') });
  await engine.addProvider('null', 'null://null');
  await engine.upsertMailbox({ id: 'rep1', from: 'rep1@brand.com', provider: 'null' });
  await engine.upsertPool({ id: 'out', mailboxes: ['rep1'] });
  let n = 0;
  const run = async (count) => {
    for (let done = 0; done < count; done += batch) {
      await Promise.all(
        Array.from({ length: batch }, () => engine.send({ pool: 'out', to: `lead${n++}@example.com`, subject: 's', text: 't' })),
      );
    }
  };
  const rss = () => {
    if (global.gc) global.gc();
    return process.memoryUsage().rss;
  };
  const heap = () => process.memoryUsage().heapTotal;
  await run(10000); // warm-up: caches, pools, SQLite page cache
  const before = rss();
  const heapBefore = heap();
  const t0 = process.cpuUsage();
  await run(total);
  const cpu = process.cpuUsage(t0);
  const after = rss();
  const heapAfter = heap();
  // The same again: a leak grows by as much again, a cache that filled does not.
  await run(total);
  const again = rss();
  await engine.close();
  fs.rmSync(dir, { recursive: true, force: true });
  console.log(
    `sends: ${total} after 10000 warm-up; RSS before ${mb(before)} MiB, after ${mb(after)} MiB, ` +
      `growth ${mb(after - before)} MiB (${((after - before) / total).toFixed(1)} bytes/send); ` +
      `another ${total}: ${mb(again - after)} MiB; V8 heap (total) ${mb(heapBefore)} -> ${mb(heapAfter)} MiB; process CPU ${((cpu.user + cpu.system) / total).toFixed(1)} us/send`,
  );
})();
