'use strict';
// mailers for Node.js: the engine (lib/engine.js), its errors (lib/errors.js)
// and what needs no engine (lib/utilities.js).
const { Engine, liveEngines, nativeVersion, bounceRatePreset, complaintRatePreset, parseWebhook } = require('./engine');
const errors = require('./errors');
const utilities = require('./utilities');

const { toError, libraryErrors, transportErrors, ...errorClasses } = errors;

module.exports = {
  Engine,
  bounceRatePreset,
  complaintRatePreset,
  parseWebhook,
  ...utilities,
  ...errorClasses,
  version: nativeVersion,
  _liveEngines: liveEngines,
};
