'use strict';
// Shared by the *.test.js files: test() with a time limit, temporary
// workspaces, an engine with a capture provider, and the repository's test
// SMTP server.
const fs = require('fs');
const os = require('os');
const path = require('path');
const { spawn } = require('child_process');
const nodeTest = require('node:test');
const mailers = require('..');

// node:test's test() with a time limit, so that a hang fails the test that
// hangs, by name, instead of running until ctest gives up on the suite.
// Generous: on a loaded machine these tests run many times slower.
const testTimeoutMs = 180000;
function test(name, options, fn) {
  if (typeof options === 'function') [options, fn] = [{}, options];
  return nodeTest(name, { timeout: testTimeoutMs, ...options }, fn);
}

const sourceDir = process.env.MAILERS_SOURCE_DIR || path.resolve(__dirname, '..', '..', '..');

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mailers-node-'));
  if (t) t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

// An engine on a fresh SQLite file with provider "cap" (capture), mailbox
// "rep1" and pool "out"; closed when the test ends.
async function captureEngine(t, extra = {}) {
  const dir = tempDir(t);
  const engine = await mailers.Engine.open({
    sqlite: path.join(dir, 'ws.db'),
    actor: { id: 'ops@brand.com', displayName: 'Ops' },
    ...extra,
  });
  t.after(() => engine.close());
  await engine.addProvider('cap', 'capture://capture');
  await engine.upsertMailbox({ id: 'rep1', from: 'Riley <rep1@brand.com>', provider: 'cap' });
  await engine.upsertPool({ id: 'out', mailboxes: ['rep1'] });
  return { engine, dir };
}

const message = (to, extra = {}) => ({ pool: 'out', to, subject: 'Hello', text: 'Hi there', ...extra });

// smtp_server.py on a free port (plain text); stopped when the test ends.
// Resolves null when python3 or aiosmtpd is missing.
async function smtpServer(t, args = []) {
  const dir = tempDir(t);
  const out = path.join(dir, 'out');
  fs.mkdirSync(out);
  const script = path.join(sourceDir, 'tests', 'integration', 'smtp_server.py');
  // Debian's python3, which has aiosmtpd (python3-aiosmtpd), as the C++ tests use.
  const child = spawn('/usr/bin/python3', [script, '--out', out, '--log', path.join(dir, 'log'), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  t.after(() => {
    child.stdin.end();
    child.kill('SIGTERM');
  });
  const port = await new Promise((resolve) => {
    let buf = '';
    child.stdout.on('data', (d) => {
      buf += d;
      const m = /PORT (\d+)/.exec(buf);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', () => resolve(null));
    child.on('error', () => resolve(null));
  });
  if (port === null) return { skip: `smtp_server.py did not start: ${stderr.trim().split('\n').pop()}` };
  const messages = () => fs.readdirSync(out).filter((f) => f.endsWith('.eml'));
  return { port, url: `smtp://127.0.0.1:${port}?tls=none`, out, messages };
}

// Waits until `cond()` holds, polling: events reach listeners through the
// event loop, later on a loaded machine than on an idle one. Gives up after
// `ms` and lets the assertion that follows say what was missing. `cond` may
// be async (a read from the engine).
async function eventually(cond, ms = 10000) {
  const until = Date.now() + ms;
  while (!(await cond()) && Date.now() < until) await new Promise((res) => setTimeout(res, 5));
}

module.exports = { test, mailers, tempDir, captureEngine, message, smtpServer, sourceDir, eventually };
