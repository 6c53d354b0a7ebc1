'use strict';
const { EventEmitter } = require('events');
const native = require('./native');
const { toError } = require('./errors');

const rethrow = (e) => {
  throw toError(e);
};

/**
 * A mailers engine on one workspace. Open with `await Engine.open({...})`;
 * every operation returns a Promise. Events arrive as 'event' (and as their
 * type: 'sent', 'bounced', ...) and through `events()`.
 */
class Engine extends EventEmitter {
  #native;
  #iterators = new Set();

  /** Opens the store and starts the engine. See index.d.ts for the options. */
  static async open(options) {
    const engine = new Engine(options, open_token);
    await engine.#native.start().catch(rethrow);
    return engine;
  }

  constructor(options, token) {
    super();
    if (token !== open_token) throw new TypeError('use `await Engine.open(options)`');
    if (options === null || typeof options !== 'object') throw new TypeError('Engine.open(options): options must be an object');
    this.#native = new native.NativeEngine(options, (ev) => this.#dispatch(ev));
    // 'newListener' comes before the listener is added: listening starts
    // there and then, so that a send made right after on() has its events
    // delivered. 'removeListener' comes after the removal.
    this.on('newListener', (name) => {
      if (!internalEvents.has(name)) this.#native.setListening(true);
    });
    this.on('removeListener', () => this.#listen());
  }

  // Events cross from the engine only while somebody listens.
  #listen() {
    const names = this.eventNames().filter((n) => !internalEvents.has(n));
    const on = this.#iterators.size > 0 || names.some((n) => this.listenerCount(n) > 0);
    this.#native.setListening(on);
  }

  // A listener that throws is reported ('error' listeners, else a process
  // warning) and the other listeners still get the event.
  #dispatch(ev) {
    for (const it of this.#iterators) it.push(ev);
    for (const name of ['event', ev.type]) {
      for (const listener of this.rawListeners(name)) {
        try {
          listener.call(this, ev);
        } catch (err) {
          this.#report(err);
        }
      }
    }
  }

  #report(err) {
    if (this.listenerCount('error') > 0) {
      try {
        this.emit('error', err);
        return;
      } catch (again) {
        err = again;
      }
    }
    process.emitWarning(`an event listener threw: ${(err && err.stack) || err}`, 'MailersListenerError');
  }

  /**
   * Events as an async iterator, from now on, buffered until read. Ends
   * when the loop breaks, `signal` aborts or the engine closes.
   */
  events({ signal } = {}) {
    const queue = [];
    let wake = null;
    let done = false;
    const iterators = this.#iterators;
    const stop = () => {
      done = true;
      iterators.delete(it);
      this.#listen();
      if (wake) wake();
    };
    const it = {
      push(ev) {
        queue.push(ev);
        if (wake) wake();
      },
      stop,
    };
    iterators.add(it);
    this.#listen();
    if (signal) signal.addEventListener('abort', stop, { once: true });
    return {
      [Symbol.asyncIterator]() {
        return this;
      },
      async next() {
        for (;;) {
          if (queue.length) return { value: queue.shift(), done: false };
          if (done) return { value: undefined, done: true };
          await new Promise((r) => (wake = r));
          wake = null;
        }
      },
      async return() {
        stop();
        return { value: undefined, done: true };
      },
    };
  }

  #call(name, ...args) {
    return this.#native.call(name, ...args).catch(rethrow);
  }

  // --- sending ---------------------------------------------------------------
  send(request) {
    return this.#native.send(request).catch(rethrow);
  }
  enqueue(request, options) {
    return this.#native.enqueue(request, options).catch(rethrow);
  }
  enqueueAndWait(request, options) {
    return this.#native.enqueueAndWait(request, options).catch(rethrow);
  }
  importSuppressions(csv, opts) {
    return this.#call('importSuppressions', Buffer.isBuffer(csv) ? csv.toString('utf8') : csv, opts);
  }
  auditLog(fromSeq = 1) {
    return this.#call('auditLog', fromSeq);
  }
  /** Everything the workspace holds about `address`, as the engine's JSON parsed. */
  async exportPerson(address, opts) {
    return JSON.parse(await this.#call('exportPerson', address, opts));
  }

  // The rest forward their arguments to the native call of the same name;
  // index.d.ts and README.md list them with their arguments.
  static {
    for (const name of [
      'findQueued',
      'cancelQueued',
      'queued',
      'queueCounts',
      'addProvider',
      'saveProvider',
      'removeProvider',
      'storedProviders',
      'checkProvider',
      'upsertMailbox',
      'retireMailbox',
      'mailbox',
      'mailboxes',
      'status',
      'upsertPool',
      'removePool',
      'pool',
      'pools',
      'setQuota',
      'removeQuota',
      'quotas',
      'putRole',
      'grantAccess',
      'setAccessControl',
      'revokeAccess',
      'removeRole',
      'accessControl',
      // erasure and retention (docs/privacy.md)
      'erasePerson',
      'purgeRetained',
      'suppress',
      'unsuppress',
      'isSuppressed',
      'findSuppression',
      'suppressionCount',
      'exportSuppressions',
      'suppressionRules',
      'verifySuppressions',
      'pause',
      'resume',
      'isPaused',
      'pauses',
      'dailyCounts',
      'setSoftBouncePolicy',
      'softBouncePolicy',
      'putPauseRule',
      'removePauseRule',
      'pauseRules',
      'checkPauseRules',
      'ingestWebhook',
      'applyWebhook',
      'ingestDeliveryReport',
      'unsubscribe',
      'verifyAudit',
      'auditCheckpoint',
      'stats',
      'latencies',
      'flush',
      'cancel',
      'metricsText',
      // sequences and enrollments
      'upsertSequence',
      'removeSequence',
      'sequence',
      'sequences',
      'enroll',
      'pauseEnrollment',
      'resumeEnrollment',
      'stopEnrollment',
      'resolveUnknownStep',
      'enrollment',
      'enrollments',
      'pauseSequence',
      'resumeSequence',
      'isSequencePaused',
      'recordReply',
      'recordGoal',
      'nextDue',
      // campaigns
      'startCampaign',
      'cancelCampaign',
      'campaignProgress',
      'campaign',
      'campaigns',
      'forecast',
      // outbound webhooks
      'putWebhookEndpoint',
      'removeWebhookEndpoint',
      'enableWebhookEndpoint',
      'disableWebhookEndpoint',
      'webhookEndpoints',
      'webhookEndpoint',
      'webhookDeliveries',
      'webhookDeliveryCounts',
    ]) {
      Object.defineProperty(Engine.prototype, name, {
        value: function (...args) {
          return this.#call(name, ...args);
        },
        writable: true,
        configurable: true,
      });
    }
  }

  /** What a provider added as 'capture://...' has been given (for tests). */
  captured(providerId, { clear = false } = {}) {
    return this.#native.captured(providerId, clear);
  }

  /** Sets the engine's clock; only for an engine opened with `manualClock`. */
  setTime(date) {
    this.#native.setTime(date);
  }

  /** The engine's clock. */
  now() {
    return this.#native.now();
  }

  /**
   * Resolves, with nextDue(), once the engine has done all it can at its
   * present time: no queued send being handed off and nothing due at or
   * before now(). For an engine on a manual clock, which a host moves with
   * `setTime(await engine.settle())`; the engine's queue thread does the
   * work (so it needs `drainQueue`, the default), and this only watches
   * the store (every `intervalMs`).
   */
  async settle({ timeoutMs = 30000, intervalMs = 10 } = {}) {
    const until = Date.now() + timeoutMs;
    // Seen twice in a row: an item moves from waiting to claimed to done
    // between any two reads.
    let calm = 0;
    for (;;) {
      const next = await this.nextDue();
      const counts = await this.queueCounts();
      calm = counts.claimed === 0 && (next === null || next > this.now()) ? calm + 1 : 0;
      if (calm === 2) return next;
      if (Date.now() >= until) throw new Error(`settle(): the engine still had work after ${timeoutMs} ms`);
      await new Promise((res) => setTimeout(res, intervalMs));
    }
  }

  /** Operations in flight (sends, calls, close). */
  get pending() {
    return this.#native.pending();
  }

  /**
   * Cancels what has not been handed off (those sends reject with
   * OperationAbortedError), flushes the store, leaves the workspace and
   * stops the engine's threads. Afterwards every call rejects with
   * OperationAbortedError, and the engine keeps nothing alive.
   */
  async close() {
    await this.#native.close();
    for (const it of [...this.#iterators]) it.stop();
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }
}

const open_token = Symbol('Engine.open');
// Listened to by the emitter's own machinery, never for the engine's events.
const internalEvents = new Set(['newListener', 'removeListener', 'error']);

module.exports = {
  Engine,
  liveEngines: native.liveEngines,
  nativeVersion: native.version,
  bounceRatePreset: native.bounceRatePreset,
  complaintRatePreset: native.complaintRatePreset,
  parseWebhook: native.parseWebhook,
};
