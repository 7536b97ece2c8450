// The web client in headless Chromium against the real chatroom binary, as its users see it: Alice on a
// desktop-sized window in English, Bob on a phone-sized one in Chinese, Carol for sign-up and sign-out.
// The scenarios build on each other (the same server, the same people), so they run in order.
//
// Run: cargo build && npm test        (CHATROOM_BIN, CHROMIUM_BIN and E2E_STATIC_DIR override defaults)
// Screenshots of the main screens go to test-results/screenshots/ (not committed).

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

import { FRONTEND_DIR, Server } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SHOTS = path.join(FRONTEND_DIR, 'test-results', 'screenshots');
const T = { timeout: 60_000 };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
/** Messages Alice sends while Bob is away: more than one page of history (20), so catching up takes two. */
const MISSED = 24;

// A stuck browser or server must not hang CI.
setTimeout(() => {
  console.error('e2e: watchdog fired after 280 s');
  process.exit(1);
}, 280_000).unref();

const suffix = String(Date.now() % 100000);
const PASSWORD = 'secret-pass';
const names = { alice: `alice${suffix}`, bob: `bob${suffix}`, carol: `carol${suffix}` };

let server;
let browser;
const people = {};
/** Console errors and page errors per person: a CSP violation or an exception fails the run. */
const problems = [];

/** A small PNG picture: a `width`×`height` colour gradient. */
function png(width, height) {
  const chunk = (type, data) => {
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    out.write(type, 4, 'latin1');
    data.copy(out, 8);
    out.writeUInt32BE(zlib.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
  const rows = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    const row = y * (1 + width * 3);
    for (let x = 0; x < width; x++) {
      rows.set([47 + (x * 160) / width, 111 + (y * 100) / height, 222], row + 1 + x * 3);
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
const PICTURE = png(160, 100);
const AVATAR = png(64, 64);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Retries `check` until it stops throwing, or throws its last error after `ms`. */
async function eventually(check, ms = 10_000, what = '') {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await check();
    } catch (e) {
      if (Date.now() > deadline) {
        if (what) e.message = `${what}: ${e.message}`;
        throw e;
      }
      await sleep(100);
    }
  }
}

async function person(key, { viewport, locale }) {
  const context = await browser.newContext({
    viewport,
    locale,
    deviceScaleFactor: 1,
    isMobile: viewport === PHONE,
    hasTouch: viewport === PHONE,
  });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // Requests that fail while the server is down are expected; anything else is a bug.
    if (/Failed to load resource|ERR_CONNECTION_REFUSED|WebSocket connection|net::ERR_FAILED/.test(text)) return;
    problems.push(`${key}: console: ${text}`);
  });
  page.on('pageerror', (e) => problems.push(`${key}: page error: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`${key}: unexpected dialog: ${d.message()}`);
    void d.dismiss();
  });
  const p = { key, name: names[key], context, page, viewport };
  people[key] = p;
  return p;
}

async function shot(p, name) {
  await p.page.screenshot({ path: path.join(SHOTS, `${name}-${p.viewport === PHONE ? 'phone' : 'desktop'}.png`) });
}

/** Registers through the sign-in page (its "create account" switch). */
async function register(p) {
  const { page } = p;
  await page.goto(server.url);
  await page.locator('form.card button.link').click();
  await page.locator('input[name=name]').fill(p.name);
  await page.locator('input[name=password]').fill(PASSWORD);
  await page.locator('form.card button[type=submit]').click();
  await page.locator('.sidebar .conversations').waitFor();
}

function room(p, roomid) {
  return p.page.locator(`.chat[data-room="${roomid}"]`);
}

async function openRoom(p, roomid) {
  await p.page.evaluate((id) => (location.hash = `#/chat/${encodeURIComponent(id)}`), roomid);
  await room(p, roomid).waitFor();
}

async function send(p, roomid, text) {
  const box = room(p, roomid).locator('[data-testid=composer]');
  await box.fill(text);
  await box.press('Enter');
}

/** The texts of a room's messages on screen, with their status and id. */
async function messages(p, roomid) {
  return room(p, roomid)
    .locator('[data-testid=message]')
    .evaluateAll((els) =>
      els.map((el) => ({
        id: el.dataset.id ?? '',
        status: el.dataset.status,
        text: el.querySelector('.bubble .text')?.textContent ?? '',
        img: el.querySelector('.bubble img')?.getAttribute('src') ?? '',
      })),
    );
}

function message(p, roomid, text) {
  return room(p, roomid).locator('[data-testid=message]', { has: p.page.locator('.bubble .text', { hasText: text }) });
}

function badge(p, roomid) {
  return p.page.locator(`.sidebar a.conversation[data-room="${roomid}"] [data-testid=unread]`);
}

async function cookieToken(p) {
  const cookies = await p.context.cookies(server.url);
  return cookies.find((c) => c.name === 'chatroom_token')?.value;
}

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_BIN)`);
  }
  mkdirSync(SHOTS, { recursive: true });
  // Bursts of messages are part of the restart scenario; the default limit is 10 a second.
  server = await new Server({ args: ['--socket-events-per-second', '100'] }).start();
  // Playwright starts Chromium with a new, empty profile directory of its own (and refuses
  // --user-data-dir with launch()), and removes it on close.
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
    ],
    timeout: 30_000,
  });
  await person('alice', { viewport: DESKTOP, locale: 'en-US' });
  await person('bob', { viewport: PHONE, locale: 'zh-CN' });
  await person('carol', { viewport: DESKTOP, locale: 'en-US' });
});

after(async () => {
  await browser?.close();
  await server?.dispose();
});

function it(name, fn) {
  test(name, T, async (t) => {
    try {
      await fn(t);
    } catch (e) {
      e.message = `${e.message}\n--- chatroom log (last 20 lines) ---\n${server?.tail(20)}`;
      throw e;
    }
  });
}

it('the server serves the built client with the right headers', async (t) => {
  if (server.staticDir) {
    // --static-dir serves a folder as the webchat bundles were served: without the embedded client's
    // CSP and caching headers, which only the embedded copy (scripts/test) can show.
    t.skip('the headers are the embedded copy\'s; E2E_STATIC_DIR serves a folder');
    return;
  }
  const index = await fetch(`${server.url}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  assert.equal(index.headers.get('cache-control'), 'no-cache');
  assert.match(index.headers.get('content-security-policy') ?? '', /script-src 'self'/);
  const html = await index.text();
  const script = html.match(/src="(\/assets\/[^"]+\.js)"/)?.[1];
  assert.ok(script, `no hashed script in index.html:\n${html}`);
  const js = await fetch(`${server.url}${script}`);
  assert.equal(js.status, 200);
  assert.match(js.headers.get('content-type'), /javascript/);
  assert.match(js.headers.get('cache-control'), /immutable/);
  assert.equal((await fetch(`${server.url}/no/such/file.js`)).status, 404);
});

it('registration, sign-out (which revokes the token) and sign-in', async () => {
  const carol = people.carol;
  await carol.page.goto(server.url);
  await carol.page.locator('form.card').waitFor();
  await shot(carol, 'sign-in');
  await register(carol);
  assert.equal(await carol.page.locator('.sidebar .me-name').textContent(), carol.name);
  // The session survives a reload.
  await carol.page.reload();
  await carol.page.locator('.sidebar .conversations').waitFor();
  const token = await cookieToken(carol);
  assert.ok(token, 'no auth cookie after sign-up');

  await carol.page.evaluate(() => (location.hash = '#/me'));
  await carol.page.locator('[data-testid=sign-out]').click();
  await carol.page.locator('form.card').waitFor();
  // The token itself no longer works, not just the cookie that was cleared.
  const me = await fetch(`${server.url}/api/user/me`, { headers: { Authorization: `Bearer ${token}` } });
  assert.equal(me.status, 401, 'the token still works after signing out');
  await carol.page.reload();
  await carol.page.locator('form.card').waitFor();

  await carol.page.locator('input[name=name]').fill(carol.name);
  await carol.page.locator('input[name=password]').fill('wrong-password');
  await carol.page.locator('form.card button[type=submit]').click();
  await carol.page.locator('form.card .error').waitFor();
  assert.match(await carol.page.locator('form.card .error').textContent(), /Wrong name or password/);
  await carol.page.locator('input[name=password]').fill(PASSWORD);
  await carol.page.locator('form.card button[type=submit]').click();
  await carol.page.locator('.sidebar .conversations').waitFor();
});

it('two users chat in a room: both see the message and the sender sees it turn to sent', async () => {
  const { alice, bob } = people;
  await register(alice);
  await bob.page.goto(server.url);
  await bob.page.locator('form.card').waitFor();
  await shot(bob, 'sign-in');
  await register(bob);
  // Bob's browser asks for Chinese.
  assert.equal(await bob.page.locator('.conversations h2').first().textContent(), '聊天室');
  await openRoom(alice, 'room1');
  await openRoom(bob, 'room1');

  const text = `Hello <b>Bob</b> 😀 <img src=x onerror="window.__pwned=1"> & 你好`;
  await send(alice, 'room1', text);
  const mine = message(alice, 'room1', 'Hello');
  await mine.waitFor();
  await eventually(async () => assert.equal(await mine.getAttribute('data-status'), 'sent'), 10_000, 'sender marker');
  const theirs = message(bob, 'room1', 'Hello');
  await theirs.waitFor();
  // Markup arrives as the text that was typed, and nothing in it runs.
  assert.equal(await theirs.locator('.bubble .text').textContent(), text);
  assert.equal(await theirs.locator('.bubble b, .bubble img').count(), 0);
  assert.equal(await bob.page.evaluate(() => window.__pwned), undefined);
  assert.equal(await mine.getAttribute('data-id'), await theirs.getAttribute('data-id'));

  await send(bob, 'room1', '收到 👍');
  await message(alice, 'room1', '收到 👍').waitFor();
  await eventually(async () =>
    assert.equal(await message(bob, 'room1', '收到 👍').getAttribute('data-status'), 'sent'),
  );

  // Both are online in room1.
  await room(alice, 'room1').locator('[data-testid=members-toggle]').click();
  const members = room(alice, 'room1').locator('[data-testid=members]');
  await eventually(async () => {
    const list = await members.locator('li').allTextContents();
    assert.deepEqual(list.map((s) => s.trim()).sort(), [alice.name, bob.name].sort());
  });
  await shot(alice, 'chat');
  await shot(bob, 'chat');
});

it('history is there after a reload', async () => {
  const { bob } = people;
  await bob.page.reload();
  await room(bob, 'room1').waitFor();
  await message(bob, 'room1', 'Hello').waitFor();
  await message(bob, 'room1', '收到 👍').waitFor();
  const texts = (await messages(bob, 'room1')).map((m) => m.text);
  assert.ok(texts.indexOf('收到 👍') > texts.findIndex((t) => t.startsWith('Hello')), 'history out of order');
});

it('emoji from the picker, and a picture message', async () => {
  const { alice, bob } = people;
  await room(alice, 'room1').locator('[data-testid=emoji-toggle]').click();
  await room(alice, 'room1').locator('.emoji-panel button', { hasText: '🎉' }).click();
  await room(alice, 'room1').locator('[data-testid=composer]').press('Enter');
  await message(bob, 'room1', '🎉').waitFor();

  await room(alice, 'room1')
    .locator('[data-testid=picture-input]')
    .setInputFiles({ name: 'gradient.png', mimeType: 'image/png', buffer: PICTURE });
  const picture = (p) =>
    room(p, 'room1').locator('[data-testid=message]', { has: p.page.locator('.bubble img[src^="/static/files/"]') });
  await eventually(async () => assert.equal(await picture(alice).count(), 1), 10_000, "alice's picture");
  await eventually(async () => assert.equal(await picture(alice).getAttribute('data-status'), 'sent'));
  await eventually(async () => assert.equal(await picture(bob).count(), 1), 10_000, "bob's copy");
  const src = await picture(bob).locator('.bubble img').getAttribute('src');
  const stored = await fetch(`${server.url}${src}`);
  assert.equal(stored.status, 200);
  assert.deepEqual(Buffer.from(await stored.arrayBuffer()), PICTURE);
  // The picture really renders.
  await eventually(async () =>
    assert.equal(await picture(bob).locator('.bubble img').evaluate((img) => img.complete && img.naturalWidth), 160),
  );
});

it('unread badges on rooms the user is not viewing', async () => {
  const { alice, bob } = people;
  // Bob goes back to the list: room1 stays entered, so its messages arrive and are counted here.
  await bob.page.evaluate(() => (location.hash = '#/'));
  await bob.page.locator('.sidebar .conversations').waitFor();
  await send(alice, 'room1', 'unread one');
  await send(alice, 'room1', 'unread two');
  await eventually(async () => assert.equal(await badge(bob, 'room1').textContent(), '2'), 10_000, 'room1 badge');
  // room2 Bob never opened: the server counts it and says so.
  await openRoom(alice, 'room2');
  await send(alice, 'room2', 'over in room2');
  await eventually(async () => assert.equal(await badge(bob, 'room2').textContent(), '1'), 10_000, 'room2 badge');
  await eventually(async () =>
    assert.match(await bob.page.locator('a.conversation[data-room=room2] .preview').textContent(), /over in room2/),
  );
  await shot(bob, 'home');
  await shot(alice, 'home');
  await openRoom(bob, 'room1');
  await message(bob, 'room1', 'unread two').waitFor();
  await bob.page.evaluate(() => (location.hash = '#/'));
  await eventually(async () => assert.equal(await badge(bob, 'room1').count(), 0));
});

it('search, profile, add a friend and chat privately', async () => {
  const { alice, bob } = people;
  await alice.page.evaluate(() => (location.hash = '#/search'));
  await alice.page.locator('[data-testid=search]').fill(bob.name.slice(0, 6));
  await alice.page.locator('[data-testid=search-result]').first().waitFor();
  await shot(alice, 'search');
  await alice.page.locator('[data-testid=search-result]', { hasText: bob.name }).click();
  await eventually(async () => assert.equal(await alice.page.locator('[data-testid=profile-name]').textContent(), bob.name));
  await shot(alice, 'profile');
  await alice.page.locator('[data-testid=add-friend]').click();
  await alice.page.locator('[data-testid=start-chat]').click();
  const ids = await Promise.all(
    [alice, bob].map((p) => p.page.evaluate(() => fetch('/api/user/me').then((r) => r.json()))),
  );
  const [a, b] = ids.map((r) => r.data.id);
  const roomid = a > b ? `${a}-${b}` : `${b}-${a}`;
  await room(alice, roomid).waitFor();
  assert.equal((await room(alice, roomid).locator('.chat-title h1').textContent()).trim(), bob.name);
  await send(alice, roomid, 'Coming to the meetup on Friday? 🎉');
  await eventually(async () =>
    assert.equal(await message(alice, roomid, 'Coming to the meetup on Friday? 🎉').getAttribute('data-status'), 'sent'),
  );
  // Bob got the friend (pushed by the server) with the message and a badge, without reloading.
  const entry = bob.page.locator(`a.conversation[data-room="${roomid}"]`);
  await eventually(async () => assert.match(await entry.locator('.preview').textContent(), /Coming to the meetup on Friday/), 10_000, "bob's friend list");
  assert.equal(await badge(bob, roomid).textContent(), '1');
  await entry.click();
  await message(bob, roomid, 'Coming to the meetup on Friday? 🎉').waitFor();
  await send(bob, roomid, '当然！See you there 👋');
  await message(alice, roomid, '当然！See you there 👋').waitFor();
  await alice.page.locator('.toast').waitFor({ state: 'detached' });
  await shot(alice, 'private-chat');
  await shot(bob, 'private-chat');
  // Bob looks at Alice's profile: already friends.
  await bob.page.evaluate((name) => (location.hash = `#/user/${encodeURIComponent(name)}`), alice.name);
  await eventually(async () => assert.equal(await bob.page.locator('[data-testid=profile-name]').textContent(), alice.name));
  await bob.page.locator('[data-testid=start-chat]').waitFor();
  assert.equal(await bob.page.locator('[data-testid=add-friend]').count(), 0);
  await shot(bob, 'profile');
  // Nobody else can read it.
  const peek = await people.carol.page.evaluate(
    (id) => fetch(`/api/message/v2/history?roomid=${id}`).then((r) => r.json()),
    roomid,
  );
  assert.equal(peek.errno, 1);
  people.privateRoom = roomid;
});

it('changing the avatar', async () => {
  const { alice } = people;
  await alice.page.evaluate(() => (location.hash = '#/me'));
  await alice.page.locator('[data-testid=avatar-input]').setInputFiles({ name: 'me.png', mimeType: 'image/png', buffer: AVATAR });
  await eventually(async () =>
    assert.match(await alice.page.locator('[data-testid=my-avatar]').getAttribute('src'), /^\/static\/files\//),
  );
  const me = await alice.page.evaluate(() => fetch('/api/user/me').then((r) => r.json()));
  assert.match(me.data.src, /^\/static\/files\//);
  await alice.page.locator('.toast').waitFor({ state: 'detached' });
  await shot(alice, 'me');
});

it('the language switch', async () => {
  const { bob } = people;
  await bob.page.evaluate(() => (location.hash = '#/me'));
  await shot(bob, 'me');
  await bob.page.locator('.language button', { hasText: 'English' }).click();
  assert.equal(await bob.page.locator('[data-testid=sign-out]').textContent(), 'Sign out');
  await bob.page.locator('.language button', { hasText: '中文' }).click();
  assert.equal(await bob.page.locator('[data-testid=sign-out]').textContent(), '退出登录');
});

it('the server restarts mid-conversation: offline notice, recovery, each missed message once', async (t) => {
  const { alice, bob } = people;
  await openRoom(alice, 'room1');
  await openRoom(bob, 'room1');
  const before = await messages(bob, 'room1');

  await server.stop();
  for (const p of [alice, bob]) {
    await p.page.locator('[data-testid=connection].offline').waitFor({ timeout: 10_000 });
  }
  await shot(bob, 'offline');
  // Written while offline: marked failed, with a retry.
  await send(alice, 'room1', 'written offline');
  await eventually(async () =>
    assert.equal(await message(alice, 'room1', 'written offline').getAttribute('data-status'), 'failed'),
  );

  // Bob stays away while Alice comes back and writes: his tab cannot reach the server.
  await bob.page.route('**/socket.io/**', (route) => route.abort());
  await server.start();
  await alice.page.locator('[data-testid=connection]').waitFor({ state: 'detached', timeout: 20_000 });
  await message(alice, 'room1', 'written offline').locator('[data-testid=retry]').click();
  await eventually(async () =>
    assert.equal(await message(alice, 'room1', 'written offline').getAttribute('data-status'), 'sent'),
  );
  const missed = Array.from({ length: MISSED }, (_, i) => `missed ${i + 1}`);
  for (const text of missed) await send(alice, 'room1', text);
  await eventually(async () => {
    const mine = (await messages(alice, 'room1')).filter((m) => m.text.startsWith('missed '));
    assert.equal(mine.length, MISSED);
    assert.ok(mine.every((m) => m.status === 'sent'), JSON.stringify(mine.filter((m) => m.status !== 'sent')));
  }, 20_000, "alice's messages stored");

  // How Bob catches up: the server's `sync` replay, or (a server without it) pages of history.
  let historyReads = 0;
  const countReads = (req) => req.url().includes('/api/message/v2/history') && historyReads++;
  bob.page.on('request', countReads);
  await bob.page.unroute('**/socket.io/**');
  await bob.page.locator('[data-testid=connection]').waitFor({ state: 'detached', timeout: 30_000 });
  const expected = ['written offline', ...missed];
  await eventually(async () => {
    const now = await messages(bob, 'room1');
    const ids = now.map((m) => m.id);
    assert.equal(new Set(ids).size, ids.length, 'a message is shown twice');
    for (const text of expected) {
      assert.equal(now.filter((m) => m.text === text).length, 1, `"${text}" is not shown exactly once`);
    }
    // No gap: what Bob had, then everything written since, in order.
    const texts = now.map((m) => m.text);
    assert.deepEqual(texts.slice(-expected.length), expected);
    assert.deepEqual(now.slice(0, before.length).map((m) => m.id), before.map((m) => m.id));
    assert.equal(now.length, before.length + expected.length);
  }, 20_000, "bob's recovered room1");
  bob.page.off('request', countReads);
  t.diagnostic(`bob caught up with ${historyReads} history request(s)${historyReads ? ' (sync unanswered)' : ' (sync)'}`);
  await shot(bob, 'recovered');
});

it('scrolling up reads older history', async () => {
  const { bob } = people;
  await bob.page.reload();
  await room(bob, 'room1').waitFor();
  await message(bob, 'room1', `missed ${MISSED}`).waitFor();
  const first = (await messages(bob, 'room1')).length;
  assert.ok(first >= 20, `only ${first} messages after a reload`);
  await message(bob, 'room1', 'Hello').waitFor({ state: 'detached' });
  // Scroll to the top until the first message of the room is there.
  await eventually(async () => {
    await room(bob, 'room1').locator('[data-testid=messages]').evaluate((el) => (el.scrollTop = 0));
    assert.equal(await message(bob, 'room1', 'Hello').count(), 1);
  }, 10_000, 'older history');
  const all = await messages(bob, 'room1');
  assert.ok(all.length > first, 'no older messages were added');
  const ids = all.map((m) => Number(m.id));
  assert.deepEqual([...ids].sort((x, y) => x - y), ids, 'history out of order');
  assert.equal(new Set(ids).size, ids.length, 'a message is shown twice');
});

it('no script errors or policy violations in any page', () => {
  assert.deepEqual(problems, []);
});
