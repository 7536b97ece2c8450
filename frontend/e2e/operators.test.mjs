// Operators in the web client, in headless Chromium against the real chatroom binary: Alice is made an
// admin with the binary's own command and works on a desktop-sized window in English; Bob is on a phone in
// Chinese; Carol, on a desktop in English, is nobody special. Authors recall their messages, Alice
// removes one, creates and archives a room, reads the audit trail and bans Bob; each time the others
// see it happen live. The scenarios build on each other, so they run in order.
//
// Run: npm run test:e2e      (CHATROOM_BIN, CHROMIUM_BIN and E2E_STATIC_DIR as for app.test.mjs)

import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';

import { FRONTEND_DIR, Server } from './server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const SHOTS = path.join(FRONTEND_DIR, 'test-results', 'screenshots');
const T = { timeout: 60_000 };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

setTimeout(() => {
  console.error('e2e: watchdog fired after 280 s');
  process.exit(1);
}, 280_000).unref();

const suffix = String(Date.now() % 100000);
const PASSWORD = 'secret-pass';
const names = { alice: `ada${suffix}`, bob: `bo${suffix}`, carol: `cy${suffix}` };
const NEW_ROOM = `ops_${suffix}`;
/** Markup in a room's name reads as typed, like message text. */
const NEW_ROOM_NAME = `Ops <b>&</b> ${suffix}`;

let server;
let browser;
const people = {};
const problems = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

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
  const phone = viewport === PHONE;
  const context = await browser.newContext({ viewport, locale, deviceScaleFactor: 1, isMobile: phone, hasTouch: phone });
  const page = await context.newPage();
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // Refused requests (403 for non-admins, 401 after a ban, 404 for probing) and the socket the server
    // closes are expected; anything else is a bug.
    if (/Failed to load resource|WebSocket connection|net::ERR_FAILED/.test(text)) return;
    problems.push(`${key}: console: ${text}`);
  });
  page.on('pageerror', (e) => problems.push(`${key}: page error: ${e.message}`));
  page.on('dialog', (d) => {
    problems.push(`${key}: unexpected browser dialog: ${d.message()}`);
    void d.dismiss();
  });
  const p = { key, name: names[key], context, page, viewport };
  people[key] = p;
  return p;
}

async function shot(p, name) {
  const size = p.page.viewportSize()?.width === PHONE.width ? 'phone' : 'desktop';
  await p.page.screenshot({ path: path.join(SHOTS, `${name}-${size}.png`) });
}

const go = (p, hash) => p.page.evaluate((h) => (location.hash = h), hash);

async function register(p) {
  const { page } = p;
  await page.goto(server.url);
  await page.locator('form.card button.link').click();
  await page.locator('input[name=name]').fill(p.name);
  await page.locator('input[name=password]').fill(PASSWORD);
  await page.locator('form.card button[type=submit]').click();
  await page.locator('.sidebar .conversations').waitFor();
}

async function signIn(p) {
  await p.page.locator('input[name=name]').fill(p.name);
  await p.page.locator('input[name=password]').fill(PASSWORD);
  await p.page.locator('form.card button[type=submit]').click();
}

const room = (p, roomid) => p.page.locator(`.chat[data-room="${roomid}"]`);

async function openRoom(p, roomid) {
  await go(p, `#/chat/${encodeURIComponent(roomid)}`);
  await room(p, roomid).waitFor();
}

/** Sends `text` and waits until it is stored; resolves to its id. */
async function send(p, roomid, text) {
  const box = room(p, roomid).locator('[data-testid=composer]');
  await box.fill(text);
  await box.press('Enter');
  const line = message(p, roomid, text);
  await eventually(async () => assert.equal(await line.getAttribute('data-status'), 'sent'), 10_000, `"${text}" stored`);
  return line.getAttribute('data-id');
}

function message(p, roomid, text) {
  return room(p, roomid).locator('[data-testid=message]', { has: p.page.locator('.bubble .text', { hasText: text }) });
}

const byId = (p, roomid, id) => room(p, roomid).locator(`[data-testid=message][data-id="${id}"]`);

/** Waits until message `id` shows as taken down, and returns the note's text. */
async function removedNote(p, roomid, id, by) {
  const line = byId(p, roomid, id);
  await eventually(async () => assert.equal(await line.getAttribute('data-removed'), by), 10_000, `${p.key} sees ${id} removed`);
  return (await line.textContent()).trim();
}

/** Opens a message's menu the way a pointer user does (hover shows its button on desktops). */
async function openMenu(p, line) {
  await line.hover();
  await line.locator('[data-testid=message-actions]').click();
  await line.locator('[role=menu]').waitFor();
}

const conversation = (p, roomid) => p.page.locator(`.sidebar a.conversation[data-room="${roomid}"]`);

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`Chromium not found at ${CHROMIUM} (or set CHROMIUM_BIN)`);
  mkdirSync(SHOTS, { recursive: true });
  server = await new Server({ args: ['--socket-events-per-second', '100'] }).start();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
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

it('an admin made with the binary gets the administration page; nobody else does', async () => {
  const { alice, bob, carol } = people;
  for (const p of [alice, bob, carol]) await register(p);
  // Granted while the server runs and the page is open: the "me" page reads the role again.
  const printed = await server.admin('grant', alice.name);
  assert.match(printed, new RegExp(alice.name));
  await go(alice, '#/me');
  await alice.page.locator('[data-testid=admin-link]').click();
  const rooms = alice.page.locator('[data-testid=admin-room]');
  await eventually(async () => assert.deepEqual(await rooms.evaluateAll((els) => els.map((e) => e.dataset.room)), ['room1', 'room2']));
  await alice.page.locator('[data-testid=audit-entry][data-action=grant]').waitFor();

  await go(carol, '#/me');
  await carol.page.locator('[data-testid=sign-out]').waitFor();
  assert.equal(await carol.page.locator('[data-testid=admin-link]').count(), 0);
  await go(carol, '#/admin');
  assert.match(await carol.page.locator('[data-testid=admin-refused]').textContent(), /admins only/i);
  assert.equal(await carol.page.locator('[data-testid=admin-room], [data-testid=create-room]').count(), 0);
  const answer = await carol.page.evaluate(async () => {
    const r = await fetch('/api/admin/audit');
    return { status: r.status, body: await r.json() };
  });
  assert.equal(answer.status, 403);
  assert.equal(answer.body.code, 'forbidden');
  await go(bob, '#/me');
  await bob.page.locator('[data-testid=sign-out]').waitFor();
  assert.equal(await bob.page.locator('[data-testid=admin-link]').count(), 0);
});

it('authors recall their own messages (pointer and keyboard); everyone sees it live, history forgets it', async () => {
  const { alice, bob, carol } = people;
  for (const p of [alice, bob, carol]) await openRoom(p, 'room1');

  // Bob, on his phone, takes back a message.
  const oops = `发错了 ${suffix}`;
  const oopsId = await send(bob, 'room1', oops);
  await message(alice, 'room1', oops).waitFor();
  await message(carol, 'room1', oops).waitFor();
  // Carol may not touch it; Alice, an admin, may only remove it.
  assert.equal(await message(carol, 'room1', oops).locator('[data-testid=message-actions]').count(), 0);
  await openMenu(alice, message(alice, 'room1', oops));
  assert.deepEqual(
    await message(alice, 'room1', oops).locator('[role=menuitem]').evaluateAll((els) => els.map((e) => e.dataset.testid)),
    ['action-remove'],
  );
  await alice.page.keyboard.press('Escape');
  await message(alice, 'room1', oops).locator('[role=menu]').waitFor({ state: 'detached' });

  await message(bob, 'room1', oops).locator('[data-testid=message-actions]').click();
  await shot(bob, 'message-menu');
  await message(bob, 'room1', oops).locator('[data-testid=action-recall]').click();
  assert.equal(await removedNote(bob, 'room1', oopsId, 'author'), '消息已撤回');
  assert.equal(await removedNote(alice, 'room1', oopsId, 'author'), 'This message was recalled');
  assert.equal(await removedNote(carol, 'room1', oopsId, 'author'), 'This message was recalled');
  assert.equal(await room(carol, 'room1').getByText(oops).count(), 0);

  // Carol does the same with the keyboard only: focus the menu button, Enter, Enter.
  const typo = `typo ${suffix}`;
  const typoId = await send(carol, 'room1', typo);
  await message(bob, 'room1', typo).waitFor();
  await message(carol, 'room1', typo).locator('[data-testid=message-actions]').focus();
  await carol.page.keyboard.press('Enter');
  await eventually(async () =>
    assert.equal(await carol.page.evaluate(() => document.activeElement?.getAttribute('data-testid')), 'action-recall'),
  );
  await carol.page.keyboard.press('Enter');
  assert.equal(await removedNote(bob, 'room1', typoId, 'author'), '消息已撤回');
  await removedNote(carol, 'room1', typoId, 'author');
  await shot(bob, 'recalled');

  // A reload reads history, which no longer has them.
  await alice.page.reload();
  await room(alice, 'room1').waitFor();
  await eventually(async () => {
    const ids = await room(alice, 'room1').locator('[data-testid=message]').evaluateAll((els) => els.map((e) => e.dataset.id));
    assert.ok(!ids.includes(oopsId) && !ids.includes(typoId), `recalled messages came back: ${ids}`);
  });
});

it('an admin removes a message with a reason; the author and everyone else see it go, live', async () => {
  const { alice, bob, carol } = people;
  await openRoom(alice, 'room1');
  const spam = `买买买 http://spam.example ${suffix}`;
  const spamId = await send(bob, 'room1', spam);
  const line = message(alice, 'room1', spam);
  await line.waitFor();
  await message(carol, 'room1', spam).waitFor();
  await openMenu(alice, line);
  await line.locator('[data-testid=action-remove]').click();
  const dialog = alice.page.locator('[data-testid=dialog]');
  await dialog.waitFor();
  await dialog.locator('[data-testid=remove-reason]').fill('advertising');
  await shot(alice, 'remove-dialog');
  await dialog.locator('[data-testid=dialog-confirm]').click();
  await dialog.waitFor({ state: 'detached' });
  assert.equal(await removedNote(alice, 'room1', spamId, 'admin'), 'Removed by an admin');
  assert.equal(await removedNote(bob, 'room1', spamId, 'admin'), '消息已被管理员删除');
  assert.equal(await removedNote(carol, 'room1', spamId, 'admin'), 'Removed by an admin');
  await shot(bob, 'removed');
  await shot(carol, 'removed');
  // The stored message is gone from the history API too.
  const page = await carol.page.evaluate(() => fetch('/api/message/v2/history?roomid=room1').then((r) => r.json()));
  assert.ok(!page.data.data.some((m) => m._id === spamId), 'the removed message is still in the history');
});

it('the admin page creates a room and archives it; the others’ lists follow live', async () => {
  const { alice, bob, carol } = people;
  await go(bob, '#/');
  await go(carol, '#/');
  await go(alice, '#/admin');
  await alice.page.locator('[data-testid=room-id]').fill(NEW_ROOM);
  await alice.page.locator('[data-testid=room-name]').fill(NEW_ROOM_NAME);
  await alice.page.locator('[data-testid=room-create]').click();
  await alice.page.locator(`[data-testid=admin-room][data-room="${NEW_ROOM}"]`).waitFor();

  // Bob's list on his phone, and Carol's, show the new room by its name, without a reload.
  for (const p of [bob, carol]) {
    await eventually(
      async () => assert.equal(await conversation(p, NEW_ROOM).locator('.title').textContent(), NEW_ROOM_NAME),
      10_000,
      `${p.key}'s list`,
    );
  }
  await shot(bob, 'new-room');
  await conversation(bob, NEW_ROOM).click();
  await room(bob, NEW_ROOM).waitFor();
  assert.equal((await room(bob, NEW_ROOM).locator('.chat-title .title').textContent()).trim(), `# ${NEW_ROOM_NAME}`);
  await openRoom(carol, NEW_ROOM);
  const hello = `first in ${NEW_ROOM}`;
  await send(carol, NEW_ROOM, hello);
  await message(bob, NEW_ROOM, hello).waitFor();

  // Archived while Bob is reading it: his view turns read-only; the room leaves both lists.
  const row = alice.page.locator(`[data-testid=admin-room][data-room="${NEW_ROOM}"]`);
  await row.locator('[data-testid=archive-room]').click();
  await alice.page.locator('[data-testid=dialog-confirm]').click();
  await row.locator('.tag').waitFor();
  await room(bob, NEW_ROOM).locator('[data-testid=archived-note]').waitFor();
  assert.equal(await room(bob, NEW_ROOM).locator('[data-testid=composer]').count(), 0);
  await message(bob, NEW_ROOM, hello).waitFor();
  await shot(bob, 'archived-room');
  await go(carol, '#/');
  await eventually(async () => assert.equal(await conversation(carol, NEW_ROOM).count(), 0), 10_000, "carol's list");
  await go(bob, '#/');
  await eventually(async () => assert.equal(await conversation(bob, NEW_ROOM).count(), 0), 10_000, "bob's list");
  // Its history stays readable at its address.
  await openRoom(carol, NEW_ROOM);
  await message(carol, NEW_ROOM, hello).waitFor();
  await room(carol, NEW_ROOM).locator('[data-testid=archived-note]').waitFor();

  // The audit trail says what happened, newest first.
  await alice.page.locator('[data-testid=audit-refresh]').click();
  await eventually(async () => {
    const actions = await alice.page.locator('[data-testid=audit-entry]').evaluateAll((els) => els.map((e) => e.dataset.action));
    assert.deepEqual(actions.slice(0, 5), ['archive_room', 'create_room', 'remove', 'recall', 'recall']);
  });
  assert.match(
    await alice.page.locator('[data-testid=audit-entry][data-action=remove]').first().textContent(),
    /advertising/,
  );
  await shot(alice, 'admin');
  await alice.page.setViewportSize(PHONE);
  await shot(alice, 'admin');
  await alice.page.setViewportSize(DESKTOP);
});

it('the audit trail pages through older entries, refused attempts included', async () => {
  const { alice } = people;
  // Probing for messages that do not exist is refused, and recorded.
  const statuses = await alice.page.evaluate(async () => {
    const out = [];
    for (let i = 0; i < 21; i++) out.push((await fetch(`/api/admin/messages/none${i}`, { method: 'DELETE' })).status);
    return out;
  });
  assert.deepEqual([...new Set(statuses)], [404]);
  await alice.page.locator('[data-testid=audit-refresh]').click();
  const pageText = alice.page.locator('[data-testid=audit-page]');
  await eventually(async () => assert.match(await pageText.textContent(), /Page 1 of 2/));
  const first = await alice.page.locator('[data-testid=audit-entry]').evaluateAll((els) => els.map((e) => e.textContent));
  assert.equal(first.length, 20);
  assert.match(first[0], /none20/);
  assert.match(first[0], /refused/);
  await alice.page.locator('[data-testid=audit-next]').click();
  await eventually(async () => assert.match(await pageText.textContent(), /Page 2 of 2/));
  const second = await alice.page.locator('[data-testid=audit-entry]').evaluateAll((els) => els.map((e) => e.dataset.action));
  // The oldest entry of all is the grant made with the binary.
  assert.equal(second.at(-1), 'grant');
  await alice.page.locator('[data-testid=audit-prev]').click();
  await eventually(async () => assert.match(await pageText.textContent(), /Page 1 of 2/));
});

it('a ban signs the user out at once with its reason, refuses their sign-in, and can be lifted', async () => {
  const { alice, bob } = people;
  await openRoom(bob, 'room1');
  const oldToken = (await bob.context.cookies(server.url)).find((c) => c.name === 'chatroom_token')?.value;
  assert.ok(oldToken);

  await go(alice, `#/user/${encodeURIComponent(bob.name)}`);
  await alice.page.locator('[data-testid=ban]').click();
  const dialog = alice.page.locator('[data-testid=dialog]');
  await dialog.locator('[data-testid=ban-reason]').fill('flooding room1');
  await dialog.locator('[data-testid=ban-banHour]').check();
  await shot(alice, 'ban-dialog');
  await dialog.locator('[data-testid=dialog-confirm]').click();
  await dialog.waitFor({ state: 'detached' });
  await eventually(async () => assert.match(await alice.page.locator('.toast').textContent(), /is banned until/));

  // Bob's phone is back at the sign-in page, saying why, and stays there (no reconnecting).
  const notice = bob.page.locator('[data-testid=session-ended]');
  await notice.waitFor({ timeout: 10_000 });
  assert.match(await notice.textContent(), /该账号已被封禁.*原因：flooding room1/s);
  let socketRequests = 0;
  const countSockets = (req) => req.url().includes('/socket.io/') && socketRequests++;
  bob.page.on('request', countSockets);
  await sleep(2500);
  bob.page.off('request', countSockets);
  assert.equal(socketRequests, 0, 'the banned page kept reconnecting');
  assert.equal(await bob.page.locator('.sidebar').count(), 0);
  await shot(bob, 'banned');
  const me = await fetch(`${server.url}/api/user/me`, { headers: { Authorization: `Bearer ${oldToken}` } });
  assert.equal(me.status, 401, 'the banned session still works');

  // The right password is not enough while the ban holds.
  await signIn(bob);
  const error = bob.page.locator('form.card .error');
  await error.waitFor();
  assert.match(await error.textContent(), /该账号已被封禁.*flooding room1/s);

  // Alice lifts it; Bob signs in again.
  await alice.page.locator('[data-testid=lift-ban]').click();
  await eventually(async () => assert.match(await alice.page.locator('.toast').textContent(), /may sign in again/));
  await signIn(bob);
  // Back where the page was: room1, on his phone without the list.
  await room(bob, 'room1').waitFor();
  await alice.page.locator('.toast').waitFor({ state: 'detached' });
});

it('no script errors or policy violations in any page', () => {
  assert.deepEqual(problems, []);
});
