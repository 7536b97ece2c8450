// The real npm socket.io-client 1.7.4, 2.5.0 and 4.8.x behind one small recorder, so a test can wait
// for what a user would see and print everything that arrived when it does not come.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import sio1 from 'sio1';
import sio2 from 'sio2';
import { io as sio4 } from 'sio4';
import { installedVersion } from './server.mjs';

/** The clients under test, keyed by the version npm installed. */
export const CLIENTS = [
  { version: installedVersion('sio1'), pkg: 'sio1', legacy: true, lookup: sio1 },
  { version: installedVersion('sio2'), pkg: 'sio2', legacy: true, lookup: sio2 },
  { version: installedVersion('sio4'), pkg: 'sio4', legacy: false, lookup: sio4 },
];

export const client = (pkg) => CLIENTS.find((c) => c.pkg === pkg);

/** Transport modes: polling only, websocket only, and the default (polling, then upgrade). */
export const TRANSPORTS = {
  polling: ['polling'],
  websocket: ['websocket'],
  default: undefined,
};

/** Chinese text, emoji and other multi-byte text, free of < > & " ' so it is not HTML-escaped. */
export const TEXT = '你好，世界🎉👍 𠮷野家 こんにちは 안녕 café';
export const REPLY = '收到！谢谢😀🙏 没问题';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A `message` payload as the v3 web client sends it. */
export function chatMessage(text, user, extra = {}) {
  return {
    msg: text,
    img: '',
    roomid: 'room1',
    roomType: 'group',
    type: 'text',
    clientId: randomUUID(),
    time: new Date().toISOString(),
    username: user?.name,
    src: user?.src,
    to: false,
    from: false,
    ...extra,
  };
}

const BUILT_INS = [
  'connect',
  'disconnect',
  'error',
  'connect_error',
  'connect_timeout',
  'reconnect',
  'reconnect_attempt',
];

/** Every socket opened by a test, so that it can be closed whatever happened. */
const open = new Set();

export function closeAll() {
  for (const c of open) c.close();
  open.clear();
}

/**
 * One socket.io-client socket. Options:
 * - `token`: bound with the way each client generation can carry it (4.x: `auth`, else the query);
 * - `transport`: a key of TRANSPORTS;
 * - `auth`, `query`, `extraHeaders`: passed through as given (override `token`).
 */
export class Client {
  constructor(spec, url, { token, transport = 'default', auth, query, extraHeaders, label } = {}) {
    this.spec = spec;
    this.label = label ?? `${spec.version}/${transport}`;
    this.events = [];
    this.waiters = new Set();
    const opts = { forceNew: true, reconnection: false, timeout: 10_000 };
    if (TRANSPORTS[transport]) opts.transports = TRANSPORTS[transport];
    if (extraHeaders) opts.extraHeaders = extraHeaders;
    if (spec.pkg === 'sio1') {
      // As the brief for 1.x spells it: a query string.
      if (token !== undefined) opts.query = `token=${encodeURIComponent(token)}`;
    } else if (spec.pkg === 'sio2') {
      if (token !== undefined) opts.query = { token };
    } else if (token !== undefined) {
      opts.auth = { token };
    }
    if (auth !== undefined) opts.auth = auth;
    if (query !== undefined) opts.query = query;
    this.socket = spec.lookup(url, opts);
    open.add(this);

    for (const ev of BUILT_INS) this.socket.on(ev, (...args) => this.record(ev, args, true));
    if (spec.legacy) {
      // 1.x/2.x have no onAny: wrap the parser's event dispatch.
      const orig = this.socket.onevent;
      const self = this;
      this.socket.onevent = function onevent(packet) {
        const args = (packet.data || []).slice();
        const ev = args.shift();
        if (typeof args[args.length - 1] === 'function') args.pop();
        self.record(ev, args, false);
        return orig.call(this, packet);
      };
    } else {
      this.socket.onAny((ev, ...args) => this.record(ev, args, false));
    }
    // Engine-level errors (a `parser error` shows here first).
    this.socket.io.on('error', (e) => this.record('engine_error', [describeError(e)], true));

    this.connected = this.waitFor('connect', () => true, 10_000, 'connect').then(() => this);
    this.connected.catch(() => {});
  }

  /** The engine.io transport in use now: `polling` or `websocket`. */
  transportName() {
    return this.socket.io.engine?.transport?.name;
  }

  record(event, args, builtIn) {
    const entry = { event, args, builtIn, at: Date.now(), transport: this.transportName() };
    this.events.push(entry);
    for (const w of [...this.waiters]) w.check(entry);
  }

  /** Index to pass to `waitFor(…, { since })` to see only what arrives later. */
  mark() {
    return this.events.length;
  }

  /** A readable list of what arrived, for failure messages. */
  dump() {
    const shown = this.events.slice(-30).map((e) => {
      let args;
      try {
        args = JSON.stringify(e.args.map(describeError));
      } catch {
        args = String(e.args);
      }
      return `  [${e.transport ?? '?'}] ${e.event} ${args?.slice(0, 400)}`;
    });
    return `${this.label} received ${this.events.length} event(s):\n${shown.join('\n') || '  (none)'}`;
  }

  /**
   * Resolves with the args of the first `event` (from `since` on) for which `pred(...args)` holds;
   * rejects after `timeoutMs`, or at once when the socket disconnects or is refused meanwhile.
   */
  waitFor(event, pred = () => true, timeoutMs = 5000, what = event, { since = 0 } = {}) {
    const fatal = new Set(['disconnect', 'connect_error', 'error', 'engine_error']);
    fatal.delete(event);
    return new Promise((resolve, reject) => {
      const waiter = {
        check: (e) => {
          if (e.event === event && safe(pred, e.args)) {
            done();
            resolve(e.args);
          } else if (fatal.has(e.event) && this.events.indexOf(e) >= since) {
            done();
            reject(
              new Error(
                `${this.label}: got '${e.event}' ${JSON.stringify(e.args.map(describeError))} while waiting for ${what}\n${this.dump()}`,
              ),
            );
          }
        },
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no ${what} within ${timeoutMs} ms\n${this.dump()}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
      };
      this.waiters.add(waiter);
      for (const e of this.events.slice(since)) {
        if (!this.waiters.has(waiter)) break;
        waiter.check(e);
      }
    });
  }

  /** Events named `event` received so far whose args satisfy `pred`. */
  received(event, pred = () => true) {
    return this.events.filter((e) => e.event === event && safe(pred, e.args)).map((e) => e.args);
  }

  emit(event, ...args) {
    this.socket.emit(event, ...args);
  }

  /** Emits with an acknowledgement callback; resolves with the ack's arguments. */
  emitAck(event, payload, timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${this.label}: no ack for '${event}' within ${timeoutMs} ms\n${this.dump()}`)),
        timeoutMs,
      );
      const cb = (...args) => {
        clearTimeout(timer);
        resolve(args);
      };
      if (payload === undefined) this.socket.emit(event, cb);
      else this.socket.emit(event, payload, cb);
    });
  }

  /** Waits until the default transport mode has upgraded to websocket. */
  async upgraded(timeoutMs = 8000) {
    const deadline = Date.now() + timeoutMs;
    while (this.transportName() !== 'websocket') {
      if (Date.now() > deadline) {
        throw new Error(`${this.label}: still on '${this.transportName()}' after ${timeoutMs} ms: no upgrade to websocket\n${this.dump()}`);
      }
      await sleep(25);
    }
  }

  /** Fails if the socket was disconnected or saw an error. */
  assertHealthy() {
    const bad = this.events.filter((e) =>
      ['disconnect', 'error', 'connect_error', 'engine_error'].includes(e.event),
    );
    assert.equal(bad.length, 0, `${this.label} was disconnected or saw errors\n${this.dump()}`);
  }

  close() {
    try {
      this.socket.close();
    } catch {
      /* already closed */
    }
    open.delete(this);
  }
}

function safe(pred, args) {
  try {
    return Boolean(pred(...args));
  } catch {
    return false;
  }
}

export function describeError(e) {
  if (e instanceof Error) {
    const out = { message: e.message };
    if (e.code !== undefined) out.code = e.code;
    if (e.description !== undefined) out.description = String(e.description?.message ?? e.description);
    if (e.data !== undefined) out.data = e.data;
    if (e.type !== undefined) out.type = e.type;
    return out;
  }
  return e;
}

/** Code points of a string as hex, to show exactly how two texts differ. */
export function codePoints(s) {
  return [...String(s)].map((c) => c.codePointAt(0).toString(16)).join(' ');
}

/** Asserts two texts are identical, showing the code points when they are not. */
export function assertSameText(actual, expected, what) {
  if (actual !== expected) {
    assert.fail(
      `${what}: text differs\n  expected ${JSON.stringify(expected)}\n  actual   ${JSON.stringify(actual)}\n` +
        `  expected code points ${codePoints(expected)}\n  actual code points   ${codePoints(actual)}`,
    );
  }
}
