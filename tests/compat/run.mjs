// Compatibility of the chatroom server with the real socket.io-client 1.7.4, 2.5.0 and 4.8.x in node:
// every client × transport (polling only, websocket only, default = polling then upgrade).
//
// Run: cd tests/compat && npm ci && npm test   (CHATROOM_BIN overrides ../../target/debug/chatroom)

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, afterEach, before, describe, test } from 'node:test';
import { history, signup } from './lib/api.mjs';
import {
  CLIENTS,
  Client,
  REPLY,
  TEXT,
  TRANSPORTS,
  assertSameText,
  chatMessage,
  client,
  closeAll,
} from './lib/clients.mjs';
import { compatPath, installedVersion, startServer } from './lib/server.mjs';

const T = { timeout: 15_000 };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** How long "nobody receives anything" is watched for, after a barrier message came through. */
const QUIET_MS = 300;

const SIO1_BUNDLE = compatPath('node_modules', 'sio1', 'dist', 'socket.io.js');

// A hung socket or server must not hang CI.
setTimeout(() => {
  console.error('compat suite: watchdog fired after 110 s, giving up');
  process.exit(1);
}, 110_000).unref();

let server;

before(async () => {
  server = await startServer({ socketIoJs: SIO1_BUNDLE });
});

after(async () => {
  closeAll();
  await server?.stop();
});

afterEach(() => closeAll());

/** `test` whose failures carry the end of the server's log. */
function it(name, fn) {
  test(name, T, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      if (server && e && typeof e === 'object') {
        e.message = `${e.message}\n--- chatroom log (last 25 lines) ---\n${server.logTail(25)}`;
      }
      throw e;
    }
  });
}

/** `login` → `count`, then `room` room1 → a `room` presence that lists `user` with their avatar. */
async function joinRoom1(c, user) {
  const since = c.mark();
  c.emit('login', { name: user.name, id: user.id, browser: 'node', os: process.platform, ua: 'compat' });
  const [count] = await c.waitFor('count', () => true, 5000, "'count' after 'login'", { since });
  assert.equal(typeof count, 'object', `${c.label}: count is not an object: ${JSON.stringify(count)}`);
  for (const room of ['room1', 'room2']) {
    assert.ok(room in count, `${c.label}: count has no ${room}: ${JSON.stringify(count)}`);
    const n = Number(count[room]);
    assert.ok(
      Number.isInteger(n) && n >= 0 && String(count[room]).trim() !== '',
      `${c.label}: count.${room} is not a count: ${JSON.stringify(count)}`,
    );
  }
  c.emit('room', { name: user.name, src: user.src, roomid: 'room1' });
  const [room] = await c.waitFor(
    'room',
    (p) => p.roomid === 'room1' && Object.hasOwn(p.onlineUsers, user.name),
    5000,
    `a 'room' presence of room1 listing ${user.name}`,
    { since },
  );
  assert.equal(room.onlineUsers[user.name].src, user.src, `${c.label}: presence avatar: ${JSON.stringify(room)}`);
  return { count, room };
}

/** Checks an echoed `message` against what was sent and who sent it. */
function assertMessage(got, sent, sender, what) {
  assertSameText(got.msg, sent.msg, what);
  assert.equal(got.clientId, sent.clientId, `${what}: clientId`);
  assert.equal(got.username, sender.name, `${what}: username`);
  assert.equal(got.src, sender.src, `${what}: src`);
  assert.equal(got.img, '', `${what}: img`);
  assert.equal(got.roomid, 'room1', `${what}: roomid`);
  assert.equal(got.roomType, 'group', `${what}: roomType`);
  assert.equal(got.type, 'text', `${what}: type`);
  assert.ok(
    (typeof got._id === 'string' && got._id !== '') || typeof got._id === 'number',
    `${what}: _id missing: ${JSON.stringify(got)}`,
  );
  assert.ok(
    ['string', 'number'].includes(typeof got.time) && !Number.isNaN(new Date(got.time).getTime()),
    `${what}: time is not a date: ${JSON.stringify(got.time)}`,
  );
}

/** Sends `text` from `from` (with an ack) and checks the sender's echo, the ack, and each receiver's copy. */
async function sendAndCheck(from, sender, text, receivers) {
  const sent = chatMessage(text, sender);
  const [ack] = await from.emitAck('message', sent);
  assert.equal(ack?.ok, true, `${from.label}: message ack ${JSON.stringify(ack)}\n${from.dump()}`);
  assert.equal(typeof ack.id, 'number', `${from.label}: ack id is not a number: ${JSON.stringify(ack)}`);
  const [echo] = await from.waitFor('message', (p) => p.clientId === sent.clientId, 5000, 'my echo');
  assertMessage(echo, sent, sender, `${from.label} echo`);
  assert.equal(String(echo._id), String(ack.id), `${from.label}: echo _id ≠ ack id`);
  for (const r of receivers) {
    const [copy] = await r.waitFor('message', (p) => p.clientId === sent.clientId, 5000, `message from ${sender.name}`);
    assert.deepEqual(copy, echo, `${r.label}: its copy differs from the sender's echo`);
  }
  return { sent, echo, ack };
}

test('the installed clients are the pinned versions', () => {
  assert.equal(installedVersion('sio1'), '1.7.4');
  assert.equal(installedVersion('sio2'), '2.5.0');
  assert.match(installedVersion('sio4'), /^4\.8\.\d+$/);
  assert.deepEqual(
    CLIENTS.map((c) => c.legacy),
    [true, true, false],
  );
});

for (const spec of CLIENTS) {
  for (const transport of Object.keys(TRANSPORTS)) {
    describe(`socket.io-client ${spec.version}, ${transport}`, () => {
      it('two users chat in room1 with Chinese text and emoji', async () => {
        const [alice, bob] = await Promise.all([signup(server.url, '甲'), signup(server.url, '乙')]);
        const a = new Client(spec, server.url, { token: alice.token, transport, label: `${spec.version}/${transport} alice` });
        const b = new Client(spec, server.url, { token: bob.token, transport, label: `${spec.version}/${transport} bob` });
        await Promise.all([a.connected, b.connected]);
        if (transport !== 'default') {
          assert.equal(a.transportName(), TRANSPORTS[transport][0]);
        }

        // login/room straight after connect: on the default mode this still travels over polling.
        await joinRoom1(a, alice);
        await joinRoom1(b, bob);
        await a.waitFor(
          'room',
          (p) => p.roomid === 'room1' && Object.hasOwn(p.onlineUsers, alice.name) && Object.hasOwn(p.onlineUsers, bob.name),
          5000,
          `a presence listing both ${alice.name} and ${bob.name}`,
        );
        if (transport === 'default') await Promise.all([a.upgraded(), b.upgraded()]);

        const tag = `${spec.version} ${transport}`;
        const first = await sendAndCheck(a, alice, `${TEXT} ${tag}`, [b]);
        const answer = await sendAndCheck(b, bob, `${REPLY} ${tag}`, [a]);

        // Stored as sent: what either user sees after reloading the page.
        const stored = await history(server.url, 'room1', alice.token);
        for (const { sent, echo } of [first, answer]) {
          const row = stored.find((m) => m.clientId === sent.clientId);
          assert.ok(row, `history of room1 lacks message ${sent.clientId}: ${JSON.stringify(stored.slice(-5))}`);
          assertSameText(row.msg, sent.msg, 'history');
          assert.equal(String(row._id), String(echo._id), 'history _id');
        }

        // Bob leaves: Alice sees him gone, and he no longer gets room1's messages.
        const since = a.mark();
        b.emit('roomout');
        const [out] = await a.waitFor(
          'roomout',
          (p) => p.roomid === 'room1' && !Object.hasOwn(p.onlineUsers, bob.name),
          5000,
          `a 'roomout' of room1 without ${bob.name}`,
          { since },
        );
        assert.ok(Object.hasOwn(out.onlineUsers, alice.name), `roomout presence lost alice: ${JSON.stringify(out)}`);
        const later = await sendAndCheck(a, alice, `${TEXT} after roomout`, []);
        await sleep(QUIET_MS);
        assert.equal(
          b.received('message', (p) => p.clientId === later.sent.clientId).length,
          0,
          `${b.label} got room1's message after roomout\n${b.dump()}`,
        );

        if (transport !== 'default') assert.equal(a.transportName(), TRANSPORTS[transport][0]);
        a.assertHealthy();
        b.assertHealthy();
      });

      it('an anonymous socket cannot send; nobody receives its message', async () => {
        const [alice, bob] = await Promise.all([signup(server.url, '甲'), signup(server.url, '乙')]);
        const a = new Client(spec, server.url, { token: alice.token, transport, label: `${spec.version}/${transport} alice` });
        const b = new Client(spec, server.url, { token: bob.token, transport, label: `${spec.version}/${transport} bob` });
        const anon = new Client(spec, server.url, { transport, label: `${spec.version}/${transport} anonymous` });
        await Promise.all([a.connected, b.connected, anon.connected]);
        await joinRoom1(a, alice);
        await joinRoom1(b, bob);

        // The anonymous socket claims to be Alice in its payloads: identity comes from the token only.
        anon.emit('login', { name: alice.name, id: alice.id, browser: 'node', os: 'x', ua: 'x' });
        const withAck = chatMessage(`${TEXT} anonymous+ack`, alice);
        const [ack] = await anon.emitAck('message', withAck);
        assert.equal(ack?.ok, false, `anonymous message ack: ${JSON.stringify(ack)}`);
        assert.equal(typeof ack.error, 'string', `anonymous message ack has no error text: ${JSON.stringify(ack)}`);
        assert.ok(ack.error.length > 0);
        const noAck = chatMessage(`${TEXT} anonymous`, alice);
        const since = anon.mark();
        anon.emit('message', noAck);
        const [notice] = await anon.waitFor('notice', (p) => p.event === 'message', 5000, "a 'notice' for 'message'", { since });
        assert.equal(typeof notice.errno, 'number', `notice errno: ${JSON.stringify(notice)}`);
        assert.notEqual(notice.errno, 0, `notice errno 0 means success: ${JSON.stringify(notice)}`);
        assert.equal(typeof notice.msg, 'string', `notice msg: ${JSON.stringify(notice)}`);
        assert.ok(notice.msg.length > 0);

        // Barrier: a real message gets through after the refusals; then nothing of the anonymous ones.
        await sendAndCheck(a, alice, `${TEXT} barrier`, [b]);
        await sleep(QUIET_MS);
        const refused = new Set([withAck.clientId, noAck.clientId]);
        for (const c of [a, b, anon]) {
          assert.equal(
            c.received('message', (p) => refused.has(p.clientId)).length,
            0,
            `${c.label} received the anonymous message\n${c.dump()}`,
          );
        }
        const stored = await history(server.url, 'room1', alice.token);
        assert.ok(!stored.some((m) => refused.has(m.clientId)), 'the anonymous message was stored');
        // Both refusals were told with a notice, the acked one too.
        assert.ok(
          anon.received('notice', (p) => p.event === 'message').length >= 2,
          `the acked refusal sent no notice as well\n${anon.dump()}`,
        );
        a.assertHealthy();
        b.assertHealthy();
      });
    });
  }
}

describe('events sent right after connect', () => {
  // The v3 web client emits `login` and `room` from its `connect` handler: nothing may be lost. A lost
  // first event is a race, so each client connects many times in a row.
  const ROUNDS = 40;
  for (const spec of CLIENTS) {
    it(`${spec.version}, websocket: 'login' sent on 'connect' is answered (${ROUNDS} sockets in a row)`, async () => {
      const alice = await signup(server.url, '己');
      const lost = [];
      for (let i = 0; i < ROUNDS; i++) {
        const c = new Client(spec, server.url, { token: alice.token, transport: 'websocket', label: `${spec.version} #${i}` });
        c.socket.on('connect', () => c.emit('login', { name: alice.name, id: alice.id }));
        await c.connected;
        try {
          await c.waitFor('count', () => true, 1500, "'count' after 'login' sent on connect");
        } catch (e) {
          lost.push(`socket #${i} sid ${c.socket.id}: ${e.message.split('\n')[0]}`);
        } finally {
          c.close();
        }
        if (lost.length >= 3) break; // enough to tell, and stays within the test's time limit
      }
      assert.deepEqual(lost, [], `${lost.length} socket(s) got no answer to the 'login' they sent on 'connect'`);
    });
  }
});

describe('binding a socket to a user', () => {
  for (const spec of CLIENTS) {
    it(`${spec.version}: a tampered token is refused (websocket)`, async () => {
      const alice = await signup(server.url, 'x');
      const bad = `${alice.token.slice(0, -4)}${alice.token.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
      // On websocket: the refusal text is Chinese, and 1.7.4's base64 polling garbles that (see the matrix).
      const c = new Client(spec, server.url, { token: bad, transport: 'websocket', label: `${spec.version} bad token` });
      if (spec.legacy) {
        // 1.x/2.x: an ERROR packet on `/`, surfaced as the socket's 'error' event.
        const [err] = await c.waitFor('error', () => true, 5000, "'error' for a bad token");
        const message = typeof err === 'string' ? err : err?.message;
        assert.equal(typeof message, 'string', `error payload: ${JSON.stringify(err)}`);
        assert.ok(message.length > 0, `empty error: ${JSON.stringify(err)}`);
      } else {
        const [err] = await c.waitFor('connect_error', () => true, 5000, "'connect_error' for a bad token");
        assert.match(err.message, /token/i, `connect_error message: ${err.message}`);
      }
      await sleep(QUIET_MS);
      assert.equal(c.received('connect').length, 0, `${c.label}: the refused socket still connected\n${c.dump()}`);
    });
  }

  // Each way on a transport that carries it from the first request; 1.7.4 on websocket so that this
  // checks the binding alone (1.7.4 on polling is covered by the matrix above).
  const ways = [
    ['sio4', 'polling', '4.x query token=', (u) => ({ query: { token: u.token } })],
    ['sio4', 'polling', '4.x Authorization: Bearer', (u) => ({ extraHeaders: { authorization: `Bearer ${u.token}` } })],
    ['sio4', 'polling', '4.x cookie chatroom_token', (u) => ({ extraHeaders: { cookie: `chatroom_token=${u.cookie}` } })],
    ['sio1', 'websocket', '1.7.4 Authorization: Bearer', (u) => ({ extraHeaders: { authorization: `Bearer ${u.token}` } })],
    ['sio1', 'websocket', '1.7.4 cookie chatroom_token', (u) => ({ extraHeaders: { Cookie: `chatroom_token=${u.cookie}` } })],
    ['sio2', 'polling', '2.5.0 query object', (u) => ({ query: { token: u.token } })],
  ];
  for (const [pkg, transport, name, opts] of ways) {
    it(`${name} binds the socket (${transport})`, async () => {
      const alice = await signup(server.url, '丙');
      assert.ok(alice.cookie, 'signup set no chatroom_token cookie');
      const c = new Client(client(pkg), server.url, { transport, label: name, ...opts(alice) });
      await c.connected;
      await joinRoom1(c, alice);
      await sendAndCheck(c, alice, `${TEXT} ${name}`, []);
      c.assertHealthy();
    });
  }
});

describe('mixed clients', () => {
  it('a 1.7.4 user and a 4.x user chat with each other', async () => {
    const [old, neu] = await Promise.all([signup(server.url, '旧'), signup(server.url, '新')]);
    const o = new Client(client('sio1'), server.url, { token: old.token, label: '1.7.4 user' });
    const n = new Client(client('sio4'), server.url, { token: neu.token, label: '4.x user' });
    await Promise.all([o.connected, n.connected]);
    await joinRoom1(o, old);
    await joinRoom1(n, neu);
    await o.waitFor(
      'room',
      (p) => p.roomid === 'room1' && Object.hasOwn(p.onlineUsers, neu.name),
      5000,
      `1.7.4 user sees ${neu.name} online`,
    );
    await sendAndCheck(o, old, `${TEXT} 1.7→4`, [n]);
    await sendAndCheck(n, neu, `${REPLY} 4→1.7`, [o]);
    o.assertHealthy();
    n.assertHealthy();
  });

  it('1.7.4 on websocket and 4.x on polling: a message over 200 characters is refused and not relayed; 200 pass whole', async () => {
    const [old, neu] = await Promise.all([signup(server.url, '旧'), signup(server.url, '新')]);
    const o = new Client(client('sio1'), server.url, { token: old.token, transport: 'websocket', label: '1.7.4 websocket' });
    const n = new Client(client('sio4'), server.url, { token: neu.token, transport: 'polling', label: '4.x polling' });
    await Promise.all([o.connected, n.connected]);
    await joinRoom1(o, old);
    await joinRoom1(n, neu);
    for (const [from, user, to] of [[o, old, n], [n, neu, o]]) {
      // 201 characters (emoji count as one character each, as users see them).
      const tooLong = chatMessage('🎉字'.repeat(100) + '🎉', user);
      const [refused] = await from.emitAck('message', tooLong);
      assert.equal(refused?.ok, false, `${from.label}: ack ${JSON.stringify(refused)}`);
      assert.match(refused.error, /200/);
      await from.waitFor('notice', (p) => p.event === 'message', 5000, 'refusal notice');
      // Exactly 200 characters go through intact, on both sides.
      const longest = chatMessage('🎉字'.repeat(100), user);
      const [ack] = await from.emitAck('message', longest);
      assert.equal(ack?.ok, true, `${from.label}: ack ${JSON.stringify(ack)}`);
      const [echo] = await from.waitFor('message', (p) => p.clientId === longest.clientId, 5000, 'echo');
      const [copy] = await to.waitFor('message', (p) => p.clientId === longest.clientId, 5000, 'copy');
      assert.deepEqual(copy, echo);
      assertSameText(echo.msg, longest.msg, `${from.label} → ${to.label}`);
      assert.equal(to.received('message', (p) => p.clientId === tooLong.clientId).length, 0, 'the refused message was relayed');
    }
    o.assertHealthy();
    n.assertHealthy();
  });

  it('recall: a 2.5 user takes a message back; 1.7.4, 2.5 and 4.x users all hear messageRemoved, and the history loses it', async () => {
    const users = await Promise.all([signup(server.url, '一'), signup(server.url, '二'), signup(server.url, '三')]);
    const clients = [
      new Client(client('sio1'), server.url, { token: users[0].token, label: '1.7.4 user' }),
      new Client(client('sio2'), server.url, { token: users[1].token, label: '2.5 user' }),
      new Client(client('sio4'), server.url, { token: users[2].token, label: '4.x user' }),
    ];
    await Promise.all(clients.map((c) => c.connected));
    for (const [i, c] of clients.entries()) await joinRoom1(c, users[i]);
    const [, sender, other] = clients;
    const sent = chatMessage(TEXT, users[1]);
    const [ack] = await sender.emitAck('message', sent);
    assert.equal(ack?.ok, true, `ack: ${JSON.stringify(ack)}`);
    for (const c of clients) await c.waitFor('message', (p) => p.clientId === sent.clientId, 5000, `${c.label} gets the message`);
    // Someone else's message: refused, nobody hears of it.
    const [refused] = await other.emitAck('recall', { id: ack.id });
    assert.equal(refused?.ok, false, `recall by another: ${JSON.stringify(refused)}`);
    assert.equal(refused.code, 'forbidden');
    // The author, with the id as the v3 client holds it (`_id`, text).
    const [done] = await sender.emitAck('recall', { id: String(ack.id) });
    assert.deepEqual(done, { ok: true });
    for (const c of clients) {
      const [removed] = await c.waitFor('messageRemoved', (p) => p.id === ack.id, 5000, `${c.label} hears messageRemoved`);
      assert.deepEqual(removed, { id: ack.id, roomid: 'room1', by: 'author' });
      c.assertHealthy();
    }
    const page = await history(server.url, 'room1', users[0].token);
    assert.equal(page.filter((m) => m._id === String(ack.id)).length, 0, 'the recalled message is still in the history');
  });

  it('markup in a message comes back HTML-escaped', async () => {
    const alice = await signup(server.url, '丁');
    const c = new Client(client('sio4'), server.url, { token: alice.token, label: '4.x' });
    await c.connected;
    await joinRoom1(c, alice);
    const sent = chatMessage('你好<b>粗体</b>', alice);
    const [ack] = await c.emitAck('message', sent);
    assert.equal(ack?.ok, true, `ack: ${JSON.stringify(ack)}`);
    const [echo] = await c.waitFor('message', (p) => p.clientId === sent.clientId, 5000, 'echo');
    assert.ok(!/[<>]/.test(echo.msg), `markup came back unescaped: ${echo.msg}`);
    assert.ok(echo.msg.includes('&lt;b&gt;粗体&lt;'), `not escaped as expected: ${echo.msg}`);
  });
});

describe('GET /socket.io/socket.io.js (F7)', () => {
  it('serves the 1.7.4 browser bundle given with --socket-io-js', async () => {
    const res = await fetch(`${server.url}/socket.io/socket.io.js`);
    const body = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200, `status ${res.status}: ${body.toString('utf8').slice(0, 200)}`);
    assert.match(res.headers.get('content-type') ?? '', /javascript/, 'content-type');
    assert.ok(body.equals(readFileSync(SIO1_BUNDLE)), 'the body is not the file given with --socket-io-js');
    // The socket.io endpoint under the same prefix still works, for EIO3 and EIO4 polling.
    for (const pkg of ['sio2', 'sio4']) {
      const user = await signup(server.url, '戊');
      const c = new Client(client(pkg), server.url, { token: user.token, transport: 'polling', label: `${pkg} after F7` });
      await c.connected;
      await joinRoom1(c, user);
    }
  });
});
