// A room's messages as the client holds them: stored messages in id order, then the user's own messages
// that the server has not confirmed yet. Pure functions, so the merge and catch-up rules are unit-tested.

/** A stored message as the server sends it (the `message` event and the history API, v3 shape). */
export interface Message {
  _id: string;
  username: string;
  src: string;
  /** HTML-escaped by the server; shown through `plainText`. */
  msg: string;
  img: string;
  roomid: string;
  roomType: 'group' | 'single';
  type: 'text' | 'img';
  time: string;
  clientId: string;
}

export type Status = 'pending' | 'sent' | 'failed';

/** Who took a stored message down: its author (`recall`) or an admin. */
export type RemovedBy = 'admin' | 'author';

/** One line of a room's timeline. */
export interface Entry {
  /** Stable key for rendering: the clientId for the user's own messages, else `id:<_id>`. */
  key: string;
  message: Message;
  status: Status;
  /** Why sending failed, for the failed marker's tooltip. */
  error?: string;
  /** Set once the message was taken down: it shows as a quiet line, its text and picture are dropped. */
  removed?: RemovedBy;
}

/** Message ids are decimal strings that grow with time; 0 stands for "none". */
export function idOf(m: Pick<Message, '_id'>): number {
  const n = Number(m._id);
  return Number.isFinite(n) && m._id !== '' ? n : 0;
}

/** The newest stored id in a timeline, 0 if it holds none. */
export function lastId(entries: readonly Entry[]): number {
  let last = 0;
  for (const e of entries) {
    if (e.status === 'sent') last = Math.max(last, idOf(e.message));
  }
  return last;
}

/** The oldest stored id in a timeline, 0 if it holds none. */
export function firstId(entries: readonly Entry[]): number {
  let first = 0;
  for (const e of entries) {
    const id = e.status === 'sent' ? idOf(e.message) : 0;
    if (id && (!first || id < first)) first = id;
  }
  return first;
}

/** What merging changed: how many messages were new, and how many of those came from other people. */
export interface MergeResult {
  entries: Entry[];
  added: number;
  addedFromOthers: number;
}

/**
 * Adds stored messages to a timeline. A message already held (same `_id`) is skipped; one that confirms
 * the user's own pending or failed message (same sender and `clientId`) replaces it in place of a new
 * line. Stored messages are kept in id order; unconfirmed ones stay after them, in the order written.
 */
export function merge(entries: readonly Entry[], incoming: readonly Message[], me: string): MergeResult {
  const byId = new Set<string>();
  const local = new Map<string, Entry>();
  for (const e of entries) {
    if (e.status === 'sent') byId.add(e.message._id);
    else local.set(e.message.clientId, e);
  }
  const stored: Entry[] = entries.filter((e) => e.status === 'sent');
  let added = 0;
  let addedFromOthers = 0;
  for (const m of incoming) {
    if (!m || typeof m._id !== 'string' || byId.has(m._id)) continue;
    byId.add(m._id);
    const own = m.username === me && m.clientId !== '' ? local.get(m.clientId) : undefined;
    if (own) {
      local.delete(m.clientId);
      stored.push({ key: own.key, message: m, status: 'sent' });
      continue;
    }
    stored.push({ key: `id:${m._id}`, message: m, status: 'sent' });
    added++;
    if (m.username !== me) addedFromOthers++;
  }
  stored.sort((a, b) => idOf(a.message) - idOf(b.message));
  const unconfirmed = entries.filter((e) => e.status !== 'sent' && local.has(e.message.clientId));
  return { entries: [...stored, ...unconfirmed], added, addedFromOthers };
}

/** Adds the user's own message, not yet stored, at the end. */
export function addPending(entries: readonly Entry[], m: Message): Entry[] {
  return [...entries, { key: m.clientId, message: m, status: 'pending' }];
}

/** Changes the status of the user's unconfirmed message `clientId`. */
export function setStatus(entries: readonly Entry[], clientId: string, status: Status, error?: string): Entry[] {
  return entries.map((e) =>
    e.status !== 'sent' && e.message.clientId === clientId ? { ...e, status, error } : e,
  );
}

/** A page of history is 20 messages: a shorter page means the start of the room was reached. */
export const PAGE_SIZE = 20;

/** How many pages a catch-up through the history API reads before it gives up and starts afresh. */
export const MAX_CATCH_UP_PAGES = 10;

/** Reads one page of a room's history: up to 20 messages older than `before` (the newest without it). */
export type PageReader = (roomid: string, before?: string) => Promise<Message[]>;

/**
 * The messages newer than `since` in a room, read backwards page by page from the newest until a page
 * reaches `since` (or the start of the room). Returns `complete: false` when that took more than
 * `MAX_CATCH_UP_PAGES`: the caller then drops what it held and keeps only the newest pages, since a
 * timeline must never have a hole in the middle.
 */
export async function readSince(
  read: PageReader,
  roomid: string,
  since: number,
): Promise<{ messages: Message[]; complete: boolean; reachedStart: boolean }> {
  const pages: Message[][] = [];
  let before: string | undefined;
  for (let i = 0; i < MAX_CATCH_UP_PAGES; i++) {
    const page = await read(roomid, before);
    pages.unshift(page);
    const reachedStart = page.length < PAGE_SIZE;
    if (reachedStart || (page.length > 0 && idOf(page[0]!) <= since)) {
      return { messages: pages.flat().filter((m) => idOf(m) > since), complete: true, reachedStart };
    }
    if (since === 0) {
      // Holding nothing, one page is what there is to show.
      return { messages: pages.flat(), complete: true, reachedStart: false };
    }
    before = page[0]!._id;
  }
  return { messages: pages.flat(), complete: false, reachedStart: false };
}

/** One room's answer in a `sync` acknowledgement. */
export interface SyncRoom {
  messages?: Message[];
  resync?: boolean;
  error?: string;
  code?: string;
}

/** What to do for each room after a `sync`: merge the replayed messages, reload, or leave it alone. */
export type SyncPlan = Map<string, { kind: 'merge'; messages: Message[] } | { kind: 'reload' } | { kind: 'skip'; error: string }>;

/**
 * Reads a `sync` acknowledgement. Returns `null` when it is not a usable answer (refused, malformed): the
 * caller then catches up through the history API instead. A room missing from the answer is reloaded.
 */
export function planSync(ack: unknown, asked: readonly string[]): SyncPlan | null {
  if (!ack || typeof ack !== 'object') return null;
  const a = ack as { ok?: unknown; rooms?: unknown };
  if (a.ok !== true || !a.rooms || typeof a.rooms !== 'object') return null;
  const rooms = a.rooms as Record<string, SyncRoom | undefined>;
  const plan: SyncPlan = new Map();
  for (const roomid of asked) {
    const r = rooms[roomid];
    if (!r || typeof r !== 'object') {
      plan.set(roomid, { kind: 'reload' });
    } else if (r.error !== undefined || r.code !== undefined) {
      plan.set(roomid, { kind: 'skip', error: String(r.error ?? r.code) });
    } else if (r.resync === true || !Array.isArray(r.messages)) {
      plan.set(roomid, { kind: 'reload' });
    } else {
      plan.set(roomid, { kind: 'merge', messages: r.messages });
    }
  }
  return plan;
}

/** Marks the user's message `clientId` stored as `id` (its acknowledgement), unless its echo already did. */
export function confirm(entries: readonly Entry[], clientId: string, id: string): Entry[] {
  const own = entries.find((e) => e.status !== 'sent' && e.message.clientId === clientId);
  if (!own || entries.some((e) => e.status === 'sent' && e.message._id === id)) {
    return entries.filter((e) => e !== own);
  }
  const rest = entries.filter((e) => e !== own);
  return merge(rest, [{ ...own.message, _id: id }], own.message.username).entries.map((e) =>
    e.message._id === id ? { ...e, key: own.key } : e,
  );
}

/** Rooms asked about in one `sync`. */
export const SYNC_BATCH = 50;

/** What to do with one room after catching up. */
export type CatchUp =
  | { kind: 'merge'; messages: Message[] }
  | { kind: 'reset'; messages: Message[]; hasOlder: boolean }
  | { kind: 'skip'; error: string };

/**
 * What a room missed since message `since`, through the history API: the messages to merge, or, when too
 * much was missed (or nothing was held), the newest pages to start again from.
 */
export async function catchUpByHistory(read: PageReader, roomid: string, since: number): Promise<CatchUp> {
  const got = await readSince(read, roomid, since);
  if (!got.complete || since === 0) return { kind: 'reset', messages: got.messages, hasOlder: !got.reachedStart };
  return { kind: 'merge', messages: got.messages };
}

/**
 * What each room missed since the id given for it. Asks `sync` first (the server replays from its
 * database); when that fails, times out or is refused, reads each room's history instead. A room the
 * server answers with `resync: true` (too much missed) starts again from its newest page.
 */
export async function catchUpRooms(
  since: Record<string, number>,
  sync: (rooms: Record<string, number>) => Promise<unknown>,
  read: PageReader,
): Promise<Map<string, CatchUp>> {
  const roomids = Object.keys(since);
  // The server answers at most 64 rooms per `sync`; a user with many friends asks in several.
  const plan: SyncPlan = new Map();
  for (let i = 0; i < roomids.length; i += SYNC_BATCH) {
    const batch = roomids.slice(i, i + SYNC_BATCH);
    try {
      const answer = planSync(await sync(Object.fromEntries(batch.map((id) => [id, since[id] ?? 0]))), batch);
      for (const [id, step] of answer ?? []) plan.set(id, step);
    } catch {
      /* unanswered: these rooms read their history */
    }
  }
  const out = new Map<string, CatchUp>();
  await Promise.all(
    roomids.map(async (id) => {
      const step = plan.get(id);
      try {
        if (step?.kind === 'merge' || step?.kind === 'skip') {
          out.set(id, step);
        } else if (step?.kind === 'reload') {
          const page = await read(id);
          out.set(id, { kind: 'reset', messages: page, hasOlder: page.length >= PAGE_SIZE });
        } else {
          out.set(id, await catchUpByHistory(read, id, since[id] ?? 0));
        }
      } catch (e) {
        out.set(id, { kind: 'skip', error: e instanceof Error ? e.message : String(e) });
      }
    }),
  );
  return out;
}

/**
 * Starts a timeline again from `newest` (a room's newest messages), keeping the user's unsent messages and
 * any message newer than those (one that arrived live while they were being read).
 */
export function restart(entries: readonly Entry[], newest: readonly Message[], me: string): Entry[] {
  const top = newest.reduce((max, m) => Math.max(max, idOf(m)), 0);
  const kept = entries.filter((e) => e.status !== 'sent' || idOf(e.message) > top);
  return merge(kept, newest, me).entries;
}

/**
 * Marks the stored messages named in `removed` (id → who took it down) as removed, dropping their text
 * and picture; the line keeps its place and id. Returns `entries` itself when nothing changes. A removal
 * is kept per room, so a copy of the message that arrives later (a replay or a page read before the
 * removal) is marked as well.
 */
export function markRemoved(entries: readonly Entry[], removed: Readonly<Record<string, RemovedBy>>): Entry[] {
  let changed = false;
  const out = entries.map((e) => {
    const id = e.message._id;
    const by = e.status === 'sent' && !e.removed && Object.hasOwn(removed, id) ? removed[id] : undefined;
    if (!by) return e;
    changed = true;
    return { ...e, removed: by, message: { ...e.message, msg: '', img: '' } };
  });
  return changed ? out : (entries as Entry[]);
}
