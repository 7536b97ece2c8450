import { describe, expect, it } from 'vitest';

import {
  PAGE_SIZE,
  addPending,
  catchUpRooms,
  confirm,
  firstId,
  lastId,
  markRemoved,
  merge,
  planSync,
  readSince,
  restart,
  setStatus,
  type Message,
} from './timeline';

function msg(id: number | string, username = 'bob', extra: Partial<Message> = {}): Message {
  return {
    _id: String(id),
    username,
    src: '',
    msg: `m${id}`,
    img: '',
    roomid: 'room1',
    roomType: 'group',
    type: 'text',
    time: '2026-11-29T00:00:00.000Z',
    clientId: '',
    ...extra,
  };
}

const ids = (entries: { message: Message }[]) => entries.map((e) => e.message._id);

describe('merge', () => {
  it('keeps stored messages in id order, once each', () => {
    const a = merge([], [msg(3), msg(1)], 'me').entries;
    const b = merge(a, [msg(2), msg(3), msg(1), msg(4)], 'me');
    expect(ids(b.entries)).toEqual(['1', '2', '3', '4']);
    expect(b.added).toBe(2);
    expect(b.addedFromOthers).toBe(2);
  });

  it('compares ids as numbers, not strings', () => {
    expect(ids(merge([], [msg(10), msg(9)], 'me').entries)).toEqual(['9', '10']);
  });

  it("replaces the user's pending message with its stored copy, keeping its key", () => {
    const pending = addPending([], msg('', 'me', { clientId: 'c1', msg: 'hi' }));
    const r = merge(pending, [msg(5, 'me', { clientId: 'c1', msg: 'hi' })], 'me');
    expect(r.entries).toHaveLength(1);
    expect(r.entries[0]).toMatchObject({ key: 'c1', status: 'sent', message: { _id: '5' } });
    expect(r.added).toBe(0);
  });

  it("does not take someone else's message with the same clientId for the user's own", () => {
    const pending = addPending([], msg('', 'me', { clientId: 'c1' }));
    const r = merge(pending, [msg(5, 'bob', { clientId: 'c1' })], 'me');
    expect(r.entries.map((e) => e.status)).toEqual(['sent', 'pending']);
  });

  it('keeps unconfirmed messages after the stored ones, in the order written', () => {
    let entries = addPending([], msg('', 'me', { clientId: 'a' }));
    entries = addPending(entries, msg('', 'me', { clientId: 'b' }));
    entries = setStatus(entries, 'a', 'failed', 'offline');
    const r = merge(entries, [msg(7)], 'me').entries;
    expect(r.map((e) => e.key)).toEqual(['id:7', 'a', 'b']);
    expect(r[1]).toMatchObject({ status: 'failed', error: 'offline' });
  });
});

describe('confirm', () => {
  it('marks a pending message stored with the acknowledged id', () => {
    const entries = merge(addPending([], msg('', 'me', { clientId: 'c' })), [msg(3)], 'me').entries;
    const done = confirm(entries, 'c', '4');
    expect(done.map((e) => [e.key, e.status, e.message._id])).toEqual([
      ['id:3', 'sent', '3'],
      ['c', 'sent', '4'],
    ]);
    expect(lastId(done)).toBe(4);
  });

  it('after the echo, drops nothing and adds nothing', () => {
    const pending = addPending([], msg('', 'me', { clientId: 'c' }));
    const echoed = merge(pending, [msg(4, 'me', { clientId: 'c' })], 'me').entries;
    expect(confirm(echoed, 'c', '4')).toEqual(echoed);
  });

  it('sorts a late acknowledgement among messages stored meanwhile', () => {
    const pending = addPending([], msg('', 'me', { clientId: 'c' }));
    const later = merge(pending, [msg(9)], 'me').entries;
    expect(ids(confirm(later, 'c', '8'))).toEqual(['8', '9']);
  });
});

describe('first and last ids', () => {
  it('ignore unconfirmed messages', () => {
    const entries = addPending(merge([], [msg(4), msg(2)], 'me').entries, msg('', 'me', { clientId: 'x' }));
    expect([firstId(entries), lastId(entries)]).toEqual([2, 4]);
    expect([firstId([]), lastId([])]).toEqual([0, 0]);
  });
});

/** A room of `n` messages with ids 1..n, read through the history API's paging. */
function fakeHistory(n: number) {
  const calls: (string | undefined)[] = [];
  const read = async (_room: string, before?: string) => {
    calls.push(before);
    const end = before ? Number(before) - 1 : n;
    const start = Math.max(1, end - PAGE_SIZE + 1);
    const page: Message[] = [];
    for (let id = start; id <= end; id++) page.push(msg(id));
    return page;
  };
  return { read, calls };
}

describe('readSince', () => {
  it('reads back page by page until it meets what is held, and returns only what is newer', async () => {
    const h = fakeHistory(100);
    const got = await readSince(h.read, 'room1', 55);
    expect(got.complete).toBe(true);
    expect(got.messages.map((m) => Number(m._id))).toEqual(Array.from({ length: 45 }, (_, i) => 56 + i));
    expect(h.calls).toEqual([undefined, '81', '61']);
  });

  it('stops at the start of the room', async () => {
    const h = fakeHistory(30);
    const got = await readSince(h.read, 'room1', 0);
    expect(got).toMatchObject({ complete: true, reachedStart: false });
    expect(got.messages).toHaveLength(20);
    const all = await readSince(fakeHistory(12).read, 'room1', 3);
    expect(all.messages.map((m) => m._id)).toEqual(['4', '5', '6', '7', '8', '9', '10', '11', '12']);
    expect(all.reachedStart).toBe(true);
  });

  it('gives up after too many pages, with the newest pages, so nothing in the middle is missing', async () => {
    const got = await readSince(fakeHistory(10_000).read, 'room1', 5);
    expect(got.complete).toBe(false);
    const got_ids = got.messages.map((m) => Number(m._id));
    expect(got_ids.at(-1)).toBe(10_000);
    expect(got_ids.every((id, i) => i === 0 || id === got_ids[i - 1]! + 1)).toBe(true);
  });
});

describe('planSync', () => {
  it('merges, reloads or skips each room as the acknowledgement says', () => {
    const plan = planSync(
      {
        ok: true,
        rooms: {
          room1: { messages: [msg(5)], resync: false },
          room2: { messages: [], resync: true },
          '2-1': { error: '你暂无权限', code: 'forbidden' },
        },
      },
      ['room1', 'room2', '2-1', 'room3'],
    );
    expect(plan?.get('room1')).toEqual({ kind: 'merge', messages: [msg(5)] });
    expect(plan?.get('room2')).toEqual({ kind: 'reload' });
    expect(plan?.get('2-1')).toEqual({ kind: 'skip', error: '你暂无权限' });
    expect(plan?.get('room3')).toEqual({ kind: 'reload' });
  });

  it('refuses what is not a successful answer', () => {
    expect(planSync({ ok: false, error: 'no', code: 'invalid' }, ['room1'])).toBeNull();
    expect(planSync(undefined, ['room1'])).toBeNull();
    expect(planSync({ ok: true }, ['room1'])).toBeNull();
  });
});

describe('catchUpRooms', () => {
  const replay = (ack: unknown) => async () => ack;

  it("merges what the server's sync replays, without reading history", async () => {
    const h = fakeHistory(50);
    const steps = await catchUpRooms(
      { room1: 48 },
      replay({ ok: true, rooms: { room1: { messages: [msg(49), msg(50)], resync: false } } }),
      h.read,
    );
    expect(steps.get('room1')).toEqual({ kind: 'merge', messages: [msg(49), msg(50)] });
    expect(h.calls).toEqual([]);
  });

  it('reloads the newest page of a room the server says to resync', async () => {
    const h = fakeHistory(500);
    const steps = await catchUpRooms({ room1: 3 }, replay({ ok: true, rooms: { room1: { messages: [], resync: true } } }), h.read);
    const step = steps.get('room1');
    expect(step?.kind).toBe('reset');
    expect(step?.kind === 'reset' && step.messages.map((m) => Number(m._id))).toEqual(
      Array.from({ length: 20 }, (_, i) => 481 + i),
    );
    expect(step?.kind === 'reset' && step.hasOlder).toBe(true);
  });

  it('reads history when sync is refused, times out or is unknown to the server', async () => {
    for (const sync of [
      replay({ ok: false, error: '服务器繁忙', code: 'unavailable' }),
      () => Promise.reject(new Error('operation has timed out')),
    ]) {
      const h = fakeHistory(30);
      const steps = await catchUpRooms({ room1: 25, '2-1': 0 }, sync, h.read);
      expect(steps.get('room1')).toEqual({ kind: 'merge', messages: [26, 27, 28, 29, 30].map((id) => msg(id)) });
      expect(steps.get('2-1')?.kind).toBe('reset');
    }
  });

  it('asks about many rooms in batches', async () => {
    const asked: string[][] = [];
    const since = Object.fromEntries(Array.from({ length: 120 }, (_, i) => [`${i + 200}-1`, 7]));
    const steps = await catchUpRooms(
      since,
      async (rooms) => {
        asked.push(Object.keys(rooms));
        return { ok: true, rooms: Object.fromEntries(Object.keys(rooms).map((id) => [id, { messages: [] }])) };
      },
      fakeHistory(0).read,
    );
    expect(asked.map((b) => b.length)).toEqual([50, 50, 20]);
    expect([...steps.values()].every((s) => s.kind === 'merge')).toBe(true);
  });

  it('leaves alone a room the server will not let the user read', async () => {
    const steps = await catchUpRooms(
      { '9-8': 4 },
      replay({ ok: true, rooms: { '9-8': { error: '你暂无权限', code: 'forbidden' } } }),
      fakeHistory(10).read,
    );
    expect(steps.get('9-8')).toEqual({ kind: 'skip', error: '你暂无权限' });
  });
});

describe('restart', () => {
  it('keeps unsent messages and live ones newer than the reloaded page', () => {
    let entries = merge([], [msg(1), msg(2), msg(60)], 'me').entries;
    entries = addPending(entries, msg('', 'me', { clientId: 'c' }));
    const page = Array.from({ length: 20 }, (_, i) => msg(40 + i));
    const next = restart(entries, page, 'me');
    expect(ids(next).slice(0, 21)).toEqual([...page.map((m) => m._id), '60']);
    expect(next.at(-1)).toMatchObject({ key: 'c', status: 'pending' });
  });
});

describe('markRemoved', () => {
  it('turns a taken-down message into a note in its place, dropping its text and picture', () => {
    const entries = merge([], [msg(1), msg(2, 'bob', { img: '/static/files/a.png' }), msg(3)], 'me').entries;
    const next = markRemoved(entries, { '2': 'admin' });
    expect(ids(next)).toEqual(['1', '2', '3']);
    expect(next[1]).toMatchObject({ key: 'id:2', status: 'sent', removed: 'admin', message: { _id: '2', msg: '', img: '' } });
    expect(next[0]).toBe(entries[0]);
    expect(next[2]).toBe(entries[2]);
    // The id still counts as held: catching up starts after it.
    expect(lastId(markRemoved(entries, { '3': 'author' }))).toBe(3);
  });

  it('returns the same timeline when nothing in it was removed', () => {
    const entries = merge([], [msg(1)], 'me').entries;
    expect(markRemoved(entries, {})).toBe(entries);
    expect(markRemoved(entries, { '9': 'author' })).toBe(entries);
    const once = markRemoved(entries, { '1': 'author' });
    expect(markRemoved(once, { '1': 'author' })).toBe(once);
  });

  it("marks a copy that arrives after the removal (a replay, a page read before it), and never an unsent message", () => {
    const removed = { '5': 'author' } as const;
    // (An unsent message has no id; one carrying the id anyway is left alone.)
    let entries = addPending([], msg('5', 'me', { clientId: 'c' }));
    entries = markRemoved(merge(entries, [msg(4), msg(5, 'me', { clientId: 'x' })], 'me').entries, removed);
    expect(entries.map((e) => [e.message._id, e.status, e.removed])).toEqual([
      ['4', 'sent', undefined],
      ['5', 'sent', 'author'],
      ['5', 'pending', undefined],
    ]);
    // Merged again (a duplicate), it stays removed and is not added twice.
    const again = merge(entries, [msg(5)], 'me').entries;
    const stored5 = again.filter((e) => e.status === 'sent' && e.message._id === '5');
    expect(stored5).toHaveLength(1);
    expect(stored5[0]?.removed).toBe('author');
  });

  it('ignores ids that only look like object keys', () => {
    const entries = merge([], [msg('constructor'), msg('toString')], 'me').entries;
    expect(markRemoved(entries, {})).toBe(entries);
  });
});
