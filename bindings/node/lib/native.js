'use strict';
// Finds the compiled addon: MAILERS_NODE_ADDON (a CMake build tree's
// mailers.node, as ctest passes it), else the one `npm install` built.
const path = require('path');
const fs = require('fs');

const candidates = [
  process.env.MAILERS_NODE_ADDON,
  path.join(__dirname, '..', 'build', 'Release', 'mailers.node'),
].filter(Boolean);

const found = candidates.find((p) => fs.existsSync(p));
if (!found) {
  throw new Error(
    'mailers: the native addon is not built. Run `npm install` in bindings/node, ' +
      'or build the CMake target mailers_node (-DMAILERS_BUILD_NODE=ON) and set MAILERS_NODE_ADDON ' +
      `to its path. Looked in: ${candidates.join(', ')}`,
  );
}
module.exports = require(found);
