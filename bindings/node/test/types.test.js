'use strict';
// index.d.ts against a small TypeScript program (test/types/usage.ts),
// with the TypeScript compiler from devDependencies.
const assert = require('node:assert/strict');
const path = require('path');
const fs = require('fs');
const { execFile } = require('child_process');
const { test } = require('./helpers');

const root = path.resolve(__dirname, '..');
const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');

test('index.d.ts: the documented usage compiles and misuse does not (tsc --noEmit)', async (t) => {
  if (!fs.existsSync(tsc)) return t.skip('typescript is not installed: run `npm ci` in bindings/node');
  const project = path.join(__dirname, 'types', 'tsconfig.json');
  const r = await new Promise((resolve) =>
    execFile(process.execPath, [tsc, '-p', project], { cwd: root }, (error, stdout, stderr) =>
      resolve({ code: error ? error.code : 0, out: stdout + stderr }),
    ),
  );
  assert.equal(r.code, 0, r.out);
});
