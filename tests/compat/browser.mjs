// Headless Chromium regression test for F1 (stack-notes.md §0): the socket.io-client 1.7.4 browser build
// on HTTP long-polling must send and receive Chinese text and emoji intact. Also runs 1.7.4 on websocket
// and on the default transports, and 2.5.0's browser build, each against a node 4.x user in the same room.
//
// The page (browser/index.html) is served same-origin by chatroom itself (--static-dir), and loads
// /socket.io/socket.io.js, which chatroom serves from --socket-io-js.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, afterEach, before, describe, test } from 'node:test';
import { chromium } from 'playwright-core';
import { PASSWORD, signup } from './lib/api.mjs';
import { Client, REPLY, TEXT, assertSameText, chatMessage, client, closeAll } from './lib/clients.mjs';
import { compatPath, startServer } from './lib/server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const T = { timeout: 15_000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

setTimeout(() => {
  console.error('browser suite: watchdog fired after 110 s, giving up');
  process.exit(1);
}, 110_000).unref();

const servers = {};
let browser;
let launchError;

before(async () => {
  const staticDir = compatPath('browser');
  const [s1, s2] = await Promise.all([
    startServer({ staticDir, socketIoJs: compatPath('node_modules', 'sio1', 'dist', 'socket.io.js') }),
    startServer({ staticDir, socketIoJs: compatPath('node_modules', 'sio2', 'dist', 'socket.io.js') }),
  ]);
  servers.sio1 = s1;
  servers.sio2 = s2;
  if (!existsSync(CHROMIUM)) {
    launchError = new Error(
      `Chromium not found at ${CHROMIUM}. The F1 regression test needs Debian's chromium ` +
        '(apt-get install -y chromium) or CHROMIUM_BIN pointing at a Chromium binary.',
    );
    return;
  }
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
      timeout: 30_000,
    });
  } catch (e) {
    launchError = new Error(`Chromium at ${CHROMIUM} did not start: ${e.message}`);
  }
});

after(async () => {
  closeAll();
  await browser?.close();
  await Promise.all(Object.values(servers).map((s) => s.stop()));
});

afterEach(() => closeAll());

test('Chromium is installed and starts', () => {
  if (launchError) throw launchError;
  assert.ok(browser?.isConnected(), 'Chromium is not connected');
});

const RUNS = [
  { bundle: 'sio1', version: '1.7.4', transports: ['polling'], auth: 'query' },
  { bundle: 'sio1', version: '1.7.4', transports: ['websocket'], auth: 'query' },
  { bundle: 'sio1', version: '1.7.4', transports: null, auth: 'cookie' },
  { bundle: 'sio2', version: '2.5.0', transports: ['polling'], auth: 'query' },
  { bundle: 'sio2', version: '2.5.0', transports: null, auth: 'cookie' },
];

describe('browser builds in headless Chromium, with a node 4.x user in the same room', () => {
  for (const run of RUNS) {
    const mode = run.transports ? run.transports.join('+') : 'default transports';
    test(`${run.version} browser build, ${mode}, token from ${run.auth}: Chinese text and emoji both ways`, T, async () => {
      if (launchError) throw launchError;
      const server = servers[run.bundle];
      try {
        await browserRun(run, mode, server);
      } catch (e) {
        if (e && typeof e === 'object' && !String(e.message).includes('--- chatroom log')) {
          e.message = `${e.message}\n--- chatroom log (last 25 lines) ---\n${server.logTail(25)}`;
        }
        throw e;
      }
    });
  }
});

async function browserRun(run, mode, server) {
  const context = await browser.newContext();
  const consoleLines = [];
  try {
    const page = await context.newPage();
    page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    const failed = [];
    page.on('requestfailed', (r) => failed.push(`${r.method()} ${r.url()} ${r.failure()?.errorText}`));
    const sioRequests = [];
    page.on('request', (r) => r.url().includes('/socket.io/?') && sioRequests.push(`${r.method()} ${r.url()}`));
    const badResponses = [];
    page.on('response', (r) => r.status() >= 400 && badResponses.push(`${r.status()} ${r.request().method()} ${r.url()}`));

    const [me, peer] = await Promise.all([signup(server.url, '浏览器'), signup(server.url, '节点')]);
    const node = new Client(client('sio4'), server.url, { token: peer.token, transport: 'websocket', label: 'node 4.x' });
    await node.connected;
    node.emit('login', { name: peer.name, id: peer.id });
    await node.waitFor('count', () => true, 5000, "'count'");
    node.emit('room', { roomid: 'room1', name: peer.name, src: peer.src });
    await node.waitFor('room', (p) => p.roomid === 'room1' && Object.hasOwn(p.onlineUsers, peer.name), 5000, 'my presence');

    const res = await page.goto(`${server.url}/`);
    assert.equal(res.status(), 200, 'GET / of the test page');
    const text = `${TEXT} ${run.version} ${mode}`;
    const fail = (e) => {
      throw new Error(`${e.message}\n--- page console ---\n${consoleLines.join('\n')}\n--- chatroom log ---\n${server.logTail(20)}`);
    };
    const r = await page
      .evaluate((cfg) => window.compat.start(cfg), {
        auth: run.auth,
        token: me.token,
        name: me.name,
        id: me.id,
        src: me.src,
        password: PASSWORD,
        transports: run.transports,
        text,
      })
      .catch(fail);

    // The page's own view: its Chinese name in the presence, and its message echoed intact.
    if (run.transports) assert.equal(r.connectTransport, run.transports[0], 'transport at connect');
    else assert.equal(r.initialTransport, 'polling', 'default transports start on polling');
    assert.ok(Object.hasOwn(r.room.onlineUsers, me.name), `presence: ${JSON.stringify(r.room)}`);
    assert.equal(r.room.onlineUsers[me.name].src, me.src);
    assert.equal(r.first.ack?.ok, true, `ack: ${JSON.stringify(r.first.ack)}`);
    assertSameText(r.first.echo.msg, text, 'browser echo (server → browser)');
    assert.equal(r.first.echo.username, me.name, 'echo username');
    assert.equal(r.first.echo.clientId, r.first.sent.clientId);

    // Browser → server → node: exact text (F1 inbound: no double-encoded mojibake).
    const [atNode] = await node.waitFor('message', (p) => p.clientId === r.first.sent.clientId, 5000, "the browser's message");
    assertSameText(atNode.msg, text, 'node copy of the browser message (browser → server)');
    assert.equal(atNode.username, me.name);
    assert.deepEqual(atNode, r.first.echo, 'node copy differs from the browser echo');
    await node.waitFor('room', (p) => p.roomid === 'room1' && Object.hasOwn(p.onlineUsers, me.name), 5000, 'the browser user online');

    // node → server → browser: exact text (F1 outbound: no parser error).
    const reply = chatMessage(`${REPLY} → ${run.version} ${mode}`, peer);
    const [nodeAck] = await node.emitAck('message', reply);
    assert.equal(nodeAck?.ok, true, `node ack: ${JSON.stringify(nodeAck)}`);
    const atPage = await page.evaluate(([id]) => window.compat.waitMessage(id, 5000), [reply.clientId]).catch(fail);
    assertSameText(atPage.msg, reply.msg, 'browser copy of the node message (server → browser)');
    assert.equal(atPage.username, peer.name);

    // The session survived: a second message round trip.
    const text2 = `第二条消息✅ ${run.version}`;
    const second = await page.evaluate(([t, m]) => window.compat.send(t, m), [text2, { name: me.name, src: me.src }]).catch(fail);
    assertSameText(second.echo.msg, text2, 'second browser echo');
    const [atNode2] = await node.waitFor('message', (p) => p.clientId === second.sent.clientId, 5000, 'the second browser message');
    assertSameText(atNode2.msg, text2, 'node copy of the second browser message');

    await sleep(300);
    const state = await page.evaluate(() => window.compat.state());
    const bad = state.events.filter((e) => ['disconnect', 'error', 'connect_error', 'engine_error'].includes(e.event));
    assert.deepEqual(bad, [], `the page was disconnected or saw errors\n${consoleLines.join('\n')}`);
    assert.equal(state.connected, true, 'the page socket is no longer connected');
    if (run.transports) assert.equal(state.transport, run.transports[0], 'transport at the end');
    else assert.equal(state.transport, 'websocket', 'the default transports never upgraded');
    const parserErrors = consoleLines.filter((l) => /parser error/i.test(l));
    assert.deepEqual(parserErrors, [], 'parser error in the page');
    const consoleErrors = consoleLines.filter((l) => l.startsWith('error:') || l.startsWith('pageerror:'));
    assert.deepEqual(consoleErrors, [], 'errors in the page console');
    assert.deepEqual(failed, [], 'failed requests');
    assert.deepEqual(badResponses, [], 'HTTP error responses');
    node.assertHealthy();
    if (run.transports?.[0] === 'polling') {
      // The F1 path: XHR2 binary polling (no b64=1), with posts and polls of the Engine.IO version the bundle speaks.
      const polls = sioRequests.filter((u) => u.includes('transport=polling'));
      assert.ok(polls.some((u) => u.startsWith('POST')), `no polling POST: ${polls.join(', ')}`);
      assert.ok(polls.every((u) => u.includes('EIO=3')), `not Engine.IO 3: ${polls.join(', ')}`);
      assert.ok(!polls.some((u) => /[?&]b64=1/.test(u)), `the page fell back to base64 polling: ${polls.join(', ')}`);
    }
    await page.evaluate(() => window.compat.close());
  } finally {
    await context.close();
  }
}
