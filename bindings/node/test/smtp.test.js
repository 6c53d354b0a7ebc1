'use strict';
// Sends through the SMTP transport (smtp://...?tls=none) against the
// repository's test server (tests/integration/smtp_server.py).
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const { test, captureEngine, smtpServer } = require('./helpers');

test('messages sent through the SMTP transport arrive at the server', async (t) => {
  const server = await smtpServer(t, ['--pipelining']);
  if (server.skip) return t.skip(server.skip);
  const { engine } = await captureEngine(t);
  await engine.addProvider('smtp', server.url);
  await engine.upsertMailbox({ id: 'rep1', from: 'Riley <rep1@brand.com>', provider: 'smtp' });
  const results = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      engine.send({ pool: 'out', to: `lead${i}@example.org`, subject: `Hello ${i}`, text: 'Hi!\r\n.\r\nNot the end.' }),
    ),
  );
  assert.ok(results.every((r) => r.state === 'accepted'));
  const files = server.messages();
  assert.equal(files.length, 50);
  const one = fs.readFileSync(path.join(server.out, files[0]), 'utf8');
  assert.match(one, /^From: Riley <rep1@brand\.com>\r$/m);
  assert.match(one, /Not the end\./);
  const envelopes = files.map((f) => JSON.parse(fs.readFileSync(path.join(server.out, f.replace('.eml', '.json')), 'utf8')));
  assert.ok(envelopes.every((e) => JSON.stringify(e).includes('rep1@brand.com')));
});
