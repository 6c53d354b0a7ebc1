'use strict';
// mailers for Node.js: the engine (lib/engine.js) and its errors (lib/errors.js).
const { Engine, liveEngines, nativeVersion, bounceRatePreset, complaintRatePreset, parseWebhook } = require('./engine');
const errors = require('./errors');

const { toError, libraryErrors, transportErrors, ...errorClasses } = errors;

module.exports = {
  Engine,
  bounceRatePreset,
  complaintRatePreset,
  parseWebhook,
  ...errorClasses,
  version: nativeVersion,
  _liveEngines: liveEngines,
};
