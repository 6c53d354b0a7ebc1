// The ESM entry gives the same objects as the CommonJS one.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Engine, SuppressedError, ThrottledError, TransportError } from '../lib/index.mjs';
import mailers from '../lib/index.mjs';

const require = createRequire(import.meta.url);
const { test } = require('./helpers.js');

test('import and require agree', () => {
  const cjs = require('..');
  assert.equal(Engine, cjs.Engine);
  assert.equal(SuppressedError, cjs.SuppressedError);
  assert.equal(mailers.Engine, Engine);
  assert.ok(new ThrottledError('x') instanceof TransportError);
  assert.equal(typeof Engine.open, 'function');
  for (const name of ['upsertSequence', 'enroll', 'settle', 'startCampaign', 'forecast', 'putWebhookEndpoint', 'metricsText'])
    assert.equal(typeof Engine.prototype[name], 'function', name);
});
