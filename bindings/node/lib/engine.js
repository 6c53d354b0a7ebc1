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
    this.on('newListener', () => queueMicrotask(() => this.#listen()));
    this.on('removeListener', () => this.#listen());
  }

  // Events cross from the engine only while somebody listens.
  #listen() {
    const names = this.eventNames().filter((n) => n !== 'newListener' && n !== 'removeListener' && n !== 'error');
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
  cancelQueued(id, opts) {
    return this.#call('cancelQueued', id, opts);
  }
  queued(filter) {
    return this.#call('queued', filter);
  }
  queueCounts() {
    return this.#call('queueCounts');
  }

  // --- configuration -----------------------------------------------------------
  addProvider(id, dsn, opts) {
    return this.#call('addProvider', id, dsn, opts);
  }
  upsertMailbox(mailbox, opts) {
    return this.#call('upsertMailbox', mailbox, opts);
  }
  retireMailbox(id, opts) {
    return this.#call('retireMailbox', id, opts);
  }
  mailbox(id) {
    return this.#call('mailbox', id);
  }
  mailboxes() {
    return this.#call('mailboxes');
  }
  status(mailboxId) {
    return this.#call('status', mailboxId);
  }
  upsertPool(pool, opts) {
    return this.#call('upsertPool', pool, opts);
  }
  removePool(id, opts) {
    return this.#call('removePool', id, opts);
  }
  pool(id) {
    return this.#call('pool', id);
  }
  pools() {
    return this.#call('pools');
  }
  setQuota(quota, opts) {
    return this.#call('setQuota', quota, opts);
  }
  removeQuota(scope, key, opts) {
    return this.#call('removeQuota', scope, key, opts);
  }
  quotas() {
    return this.#call('quotas');
  }

  // --- access control --------------------------------------------------------
  putRole(role, opts) {
    return this.#call('putRole', role, opts);
  }
  grantAccess(grant, opts) {
    return this.#call('grantAccess', grant, opts);
  }
  setAccessControl(enabled, opts) {
    return this.#call('setAccessControl', enabled, opts);
  }

  // --- suppression -------------------------------------------------------------
  suppress(value, opts) {
    return this.#call('suppress', value, opts);
  }
  unsuppress(value, opts) {
    return this.#call('unsuppress', value, opts);
  }
  isSuppressed(address) {
    return this.#call('isSuppressed', address);
  }
  findSuppression(address) {
    return this.#call('findSuppression', address);
  }
  suppressionCount() {
    return this.#call('suppressionCount');
  }
  importSuppressions(csv, opts) {
    return this.#call('importSuppressions', Buffer.isBuffer(csv) ? csv.toString('utf8') : csv, opts);
  }
  exportSuppressions() {
    return this.#call('exportSuppressions');
  }
  verifySuppressions() {
    return this.#call('verifySuppressions');
  }

  // --- pause -------------------------------------------------------------------
  pause(target, opts) {
    return this.#call('pause', target, opts);
  }
  resume(target, opts) {
    return this.#call('resume', target, opts);
  }
  isPaused(target) {
    return this.#call('isPaused', target);
  }
  pauses() {
    return this.#call('pauses');
  }

  // --- webhooks and unsubscribe --------------------------------------------
  ingestWebhook(provider, request, options) {
    return this.#call('ingestWebhook', provider, request, options);
  }
  unsubscribe(token) {
    return this.#call('unsubscribe', token);
  }

  // --- audit and stats -----------------------------------------------------
  auditLog(fromSeq = 1) {
    return this.#call('auditLog', fromSeq);
  }
  verifyAudit(checkpoint) {
    return this.#call('verifyAudit', checkpoint);
  }
  auditCheckpoint() {
    return this.#call('auditCheckpoint');
  }
  stats() {
    return this.#call('stats');
  }
  flush() {
    return this.#call('flush');
  }
  cancel() {
    return this.#call('cancel');
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

module.exports = { Engine, liveEngines: native.liveEngines, nativeVersion: native.version };
