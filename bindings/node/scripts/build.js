#!/usr/bin/env node
'use strict';
// `npm install` (of this folder, or `npm install ./bindings/node` from the
// repository) builds the addon with CMake against the library in this
// repository, offline: Node's headers come from the running Node's prefix
// (or /usr/include/node), node-addon-api from node_modules. The result is
// build/Release/mailers.node, where lib/native.js looks.
//
// Environment: MAILERS_BUILD_JOBS (default 2), CMAKE (default "cmake").
// ccache is used when installed.
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const here = path.resolve(__dirname, '..');
const root = path.resolve(here, '..', '..');
if (!fs.existsSync(path.join(root, 'include', 'mailers', 'engine.hpp'))) {
  console.error('mailers: build the addon from a mailers source tree (bindings/node inside it)');
  process.exit(1);
}
const cmake = process.env.CMAKE || 'cmake';
const out = path.join(here, 'build', 'cmake');
let addonApi;
try {
  addonApi = path.dirname(require.resolve('node-addon-api/package.json', { paths: [here] }));
} catch {
  console.error('mailers: node-addon-api is missing; run `npm ci --ignore-scripts` in bindings/node first');
  process.exit(1);
}

const args = [
  '-S', root, '-B', out,
  // The type scripts/test builds, so ccache shares its objects.
  '-DCMAKE_BUILD_TYPE=RelWithDebInfo',
  '-DMAILERS_BUILD_NODE=ON',
  '-DMAILERS_BUILD_TESTS=OFF', '-DMAILERS_BUILD_EXAMPLES=OFF',
  '-DMAILERS_BUILD_BENCHMARKS=OFF', '-DMAILERS_BUILD_TOOLS=OFF',
  `-DNODE_ADDON_API_DIR=${addonApi}`,
];
try {
  execFileSync('ccache', ['--version'], { stdio: 'ignore' });
  args.push('-DCMAKE_CXX_COMPILER_LAUNCHER=ccache');
} catch {}

const env = { ...process.env, CCACHE_BASEDIR: root, CCACHE_NOHASHDIR: '1' };
const run = (a) => execFileSync(cmake, a, { stdio: 'inherit', env });
run(args);
run(['--build', out, '--target', 'mailers_node', '-j', process.env.MAILERS_BUILD_JOBS || '2']);

const built = path.join(out, 'bindings', 'node', 'mailers.node');
const dest = path.join(here, 'build', 'Release');
fs.mkdirSync(dest, { recursive: true });
fs.copyFileSync(built, path.join(dest, 'mailers.node'));
console.log(`mailers: built ${path.join(dest, 'mailers.node')}`);
