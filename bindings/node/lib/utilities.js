'use strict';
// What needs no engine: templates, addresses and the Standard Webhooks check
// for receivers of outbound webhooks. Synchronous; refusals are thrown as
// the same Error subclasses engine calls reject with.
const native = require('./native');
const { toError } = require('./errors');

const rethrowing = (fn) =>
  function (...args) {
    try {
      return fn.apply(this, args);
    } catch (e) {
      throw toError(e);
    }
  };

/**
 * A message template compiled once (docs/templates.md): variables, fallbacks,
 * sections and spintax. One that does not compile throws InvalidArgumentError
 * whose `templateError` says the part, line and column.
 */
class Template {
  #native;
  constructor(source = {}) {
    this.#native = rethrowing(() => new native.NativeTemplate(source))();
  }
  /** Every variable it refers to, sorted. */
  variables() {
    return this.#native.variables();
  }
  /** Variables every render needs (used without a fallback outside any section). */
  requiredVariables() {
    return this.#native.requiredVariables();
  }
  /** `{missing, invalid}`: what `variables` lacks for some render, and values that are not text. */
  check(variables = {}) {
    return this.#native.check(variables);
  }
  /** The three parts rendered; spintax choices follow `seed` (templateSeed()). */
  render(variables = {}, seed = 0n) {
    return rethrowing(() => this.#native.render(variables, seed))();
  }
}

module.exports = {
  Template,
  normaliseAddress: rethrowing(native.normaliseAddress),
  parseAddress: rethrowing(native.parseAddress),
  templateSeed: native.templateSeed,
  verifyWebhookSignature: native.verifyWebhookSignature,
};
