// The client's state and its realtime connection (docs/socket.md).
//
// One socket per tab, bound to the user by the sign-in cookie. Group rooms are entered (`room`) when first
// opened and stay entered until the tab closes: the server then sends their messages live, and `count`
// (unread numbers) only for rooms the socket is not in. Private messages reach every socket of both users.
//
// After every (re)connection the client re-enters its rooms, waits for those acknowledgements, and asks
// for what it missed with `sync` (the last id it holds per room); since the server handles a socket's
// events in order, anything stored after the re-entry also arrives live, and timelines de-duplicate by
// message id. Without an answer to `sync` (a server that predates it), it reads the history API
// backwards from the newest page until it meets what it holds.
//
// Group rooms are the server's list (`GET /api/rooms`, then `rooms` events when an admin creates or
// archives one): archived rooms leave the conversation list; opened by their address they are read-only.
// Messages taken down (`messageRemoved`, by their author's `recall` or by an admin) stay as a quiet line.

import { io, type Socket } from 'socket.io-client';
import { reactive, ref } from 'vue';

import * as api from './api';
import { ApiError, type Friend, type PublicUser, type User } from './api';
import { serverText, t } from './i18n';
import { recallWindowOf, type Viewer } from './moderation';
import { openRoomIds, readRoomList, withRoom, type RoomInfo } from './rooms';
import { escapeHtml, isPrivateRoom, newClientId, peerOf, plainText, privateRoom } from './text';
import {
  PAGE_SIZE,
  addPending,
  catchUpByHistory,
  catchUpRooms,
  confirm,
  firstId,
  lastId,
  markRemoved,
  merge,
  restart,
  setStatus,
  type CatchUp,
  type Entry,
  type Message,
  type RemovedBy,
} from './timeline';

/** How long the client waits for a message's acknowledgement before showing it failed. */
const MESSAGE_ACK_MS = 10_000;
/** How long it waits for `room` and `sync` acknowledgements after connecting. */
const ROOM_ACK_MS = 5_000;
const SYNC_ACK_MS = 4_000;

export interface Member {
  name: string;
  src: string;
}

export interface Room {
  id: string;
  kind: 'group' | 'private';
  entries: Entry[];
  /** Messages from others the user has not looked at. */
  unread: number;
  /** Who is in the room now (group rooms). */
  members: Member[];
  /** More history above what is held. */
  hasOlder: boolean;
  loadingOlder: boolean;
  /** The newest page has been read since the page loaded. */
  loaded: boolean;
  /** The other user, for private rooms. */
  peer?: PublicUser;
  /** Messages taken down (id → by whom), applied to whatever copy of them arrives. */
  removed: Record<string, RemovedBy>;
}

export type Connection = 'connecting' | 'online' | 'offline' | 'recovering';

export const state = reactive({
  /** `false` until the session check at start-up is done. */
  ready: false,
  me: null as User | null,
  rooms: {} as Record<string, Room>,
  groupIds: [] as string[],
  friends: [] as Friend[],
  connection: 'connecting' as Connection,
  /** The room on screen, if any: its messages are not counted as unread. */
  viewing: null as string | null,
  /** A short message for the user (errors, confirmations). */
  toast: null as { text: string; kind: 'info' | 'error' } | null,
  /** The server's group rooms, in its order; `null` before it is read (or from a server without it). */
  roomList: null as RoomInfo[] | null,
  /** Set when the server ended the session, so the sign-in page can say so. */
  sessionEnded: false,
  /** What the server said when it ended the session (a ban), for the sign-in page. */
  endNote: '',
});

/** The time, in milliseconds, updated every few seconds: a message's "recall" follows its age. */
export const clock = ref(Date.now());
const CLOCK_MS = 5_000;

let socket: Socket | null = null;
/** Group rooms this tab has entered; re-entered after every reconnection. */
const entered = new Set<string>();
/** Picture files of messages not stored yet, kept for a retry of their upload. */
const pictures = new Map<string, { file: Blob; preview: string; url?: string }>();
let toastTimer: ReturnType<typeof setTimeout> | undefined;
const refreshTimers = new Map<string, ReturnType<typeof setTimeout>>();

export function toast(text: string, kind: 'info' | 'error' = 'info'): void {
  state.toast = { text, kind };
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (state.toast = null), 3500);
}

function ensureRoom(id: string): Room {
  let room = state.rooms[id];
  if (!room) {
    state.rooms[id] = {
      id,
      kind: isPrivateRoom(id) ? 'private' : 'group',
      entries: [],
      unread: 0,
      members: [],
      hasOlder: false,
      loadingOlder: false,
      loaded: false,
      removed: {},
    };
    room = state.rooms[id]!;
    if (room.kind === 'group') {
      if (state.roomList) {
        // A room the list does not name (yet): the list may be older than what the server just said.
        if (!roomInfo(id)) scheduleRoomListRefresh();
      } else if (!state.groupIds.includes(id)) {
        // A server without a room list: the rooms are the ones it mentions.
        state.groupIds = [...state.groupIds, id].sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      }
    }
  }
  return room;
}

/** Sets a room's messages, marking those known to be taken down. */
function setEntries(room: Room, entries: Entry[]): void {
  room.entries = markRemoved(entries, room.removed);
}

/** Adds stored messages to a room; counts those from others as unread when the room is not on screen. */
function addMessages(room: Room, messages: readonly Message[], countUnread: boolean): void {
  const me = state.me?.name ?? '';
  const result = merge(room.entries, messages, me);
  setEntries(room, result.entries);
  for (const m of messages) {
    const p = pictures.get(m.clientId);
    if (p && m.username === me) {
      URL.revokeObjectURL(p.preview);
      pictures.delete(m.clientId);
    }
  }
  if (countUnread && state.viewing !== room.id && !isArchived(room.id)) room.unread += result.addedFromOthers;
}

/** Starts a room again from `messages` (its newest ones), keeping unsent and newer live messages. */
function resetRoom(room: Room, messages: readonly Message[], hasOlder: boolean): void {
  setEntries(room, restart(room.entries, messages, state.me?.name ?? ''));
  room.hasOlder = hasOlder;
  room.loaded = true;
}

function apply(room: Room, step: CatchUp): void {
  if (step.kind === 'merge') addMessages(room, step.messages, countsLocally(room));
  else if (step.kind === 'reset') resetRoom(room, step.messages, step.hasOlder);
  room.loaded = room.loaded || step.kind !== 'skip';
}

/** Messages from others count as unread in rooms whose numbers the client keeps itself. */
function countsLocally(room: Room): boolean {
  return room.kind === 'private' || entered.has(room.id);
}

function setFriends(list: Friend[]): void {
  state.friends = list;
  const me = state.me;
  if (!me) return;
  for (const f of list) {
    const room = ensureRoom(privateRoom(me.id, f.friendId._id));
    room.peer = f.friendId;
  }
}

// ---- the room list -------------------------------------------------------------------------------

/** What the server says about group room `id`, if its list names it. */
export function roomInfo(id: string): RoomInfo | undefined {
  return state.roomList?.find((r) => r.roomid === id);
}

export function isArchived(id: string): boolean {
  return roomInfo(id)?.archived === true;
}

/** A group room's name as people read it (its id until the list is known). */
export function roomName(id: string): string {
  const info = roomInfo(id);
  return info ? plainText(info.name) : id;
}

/** Follows the server's list: open rooms are listed in its order, archived ones leave the list. */
function setRoomList(list: RoomInfo[]): void {
  state.roomList = list;
  for (const r of list) {
    if (!r.archived) ensureRoom(r.roomid);
    else if (state.rooms[r.roomid]) state.rooms[r.roomid]!.unread = 0;
  }
  state.groupIds = openRoomIds(list);
}

/** Adds or updates one room of the list (an admin's change, before the `rooms` event confirms it). */
export function applyRoom(info: RoomInfo): void {
  setRoomList(withRoom(state.roomList ?? [], info));
}

let roomListTimer: ReturnType<typeof setTimeout> | undefined;

function scheduleRoomListRefresh(): void {
  if (roomListTimer) return;
  roomListTimer = setTimeout(() => {
    roomListTimer = undefined;
    if (state.me) void loadRoomList();
  }, 250);
}

async function loadRoomList(): Promise<void> {
  try {
    const list = await api.rooms();
    if (state.me) setRoomList(list);
  } catch {
    /* kept as it was; read again after the next reconnection */
  }
}

// ---- session ------------------------------------------------------------------------------------

/** Start-up: restores the session from the cookie, if there is one. */
export async function boot(): Promise<void> {
  api.setUnauthorizedHandler(() => {
    if (state.me) endSession(true);
  });
  setInterval(() => (clock.value = Date.now()), CLOCK_MS);
  try {
    const me = await api.me();
    if (me) await start(me, true);
  } catch {
    toast(t('networkError'), 'error');
  } finally {
    state.ready = true;
  }
}

/** `full`: `me` came from `/api/user/me` (sign-in answers lack the role and the recall window). */
async function start(me: User, full: boolean): Promise<void> {
  state.me = me;
  state.sessionEnded = false;
  state.endNote = '';
  let recent: Record<string, Message[]>;
  let friends: Friend[];
  let rooms: RoomInfo[] | null;
  let fresh: User | null;
  try {
    [recent, friends, rooms, fresh] = await Promise.all([
      api.recentByRoom(me.id),
      api.friends(),
      // A server without the list: rooms are the ones it mentions.
      api.rooms().catch(() => null),
      full ? me : api.me().catch(() => null),
    ]);
  } catch (e) {
    // Signed in but unable to load anything: back to the sign-in page, which shows the error.
    state.me = null;
    throw e;
  }
  if (fresh) state.me = fresh;
  if (rooms) setRoomList(rooms);
  setFriends(friends);
  for (const [roomid, messages] of Object.entries(recent)) {
    const room = ensureRoom(roomid);
    if (!room.loaded) resetRoom(room, messages, messages.length >= PAGE_SIZE);
  }
  connect();
}

export async function signIn(name: string, password: string, register: boolean): Promise<void> {
  const me = register ? await api.signUp(name, password) : await api.signIn(name, password);
  await start(me, false);
}

/** Reads the user again (an admin's role may have been granted or revoked since the page loaded). */
export async function refreshMe(): Promise<void> {
  try {
    const me = await api.me();
    if (me && state.me?.id === me.id) state.me = me;
  } catch {
    /* kept as it was */
  }
}

/** The signed-in user, as message actions see them. */
export function viewer(): Viewer | null {
  const me = state.me;
  return me ? { name: me.name, admin: me.admin === true, recallWindow: recallWindowOf(me.recallWindow) } : null;
}

/** Signs out: the server revokes this session's token, then the tab forgets everything. */
export async function signOut(): Promise<void> {
  try {
    await api.signOut();
  } finally {
    endSession(false);
  }
}

/** Forgets the session. `note`: what the server said (a ban), shown on the sign-in page. */
function endSession(byServer: boolean, note = ''): void {
  const s = socket;
  socket = null;
  s?.disconnect();
  entered.clear();
  for (const p of pictures.values()) URL.revokeObjectURL(p.preview);
  pictures.clear();
  state.me = null;
  state.rooms = {};
  state.groupIds = [];
  state.friends = [];
  state.roomList = null;
  state.viewing = null;
  state.connection = 'connecting';
  state.sessionEnded = byServer;
  state.endNote = note;
}

// ---- connection ---------------------------------------------------------------------------------

function connect(): void {
  socket?.disconnect();
  const s = io({
    path: '/socket.io/',
    reconnectionDelay: 500,
    reconnectionDelayMax: 3000,
  });
  socket = s;
  state.connection = 'connecting';
  let wasOnline = false;

  s.on('connect', () => {
    state.connection = wasOnline ? 'recovering' : 'connecting';
    void afterConnect(s, wasOnline).then((ok) => {
      if (socket === s && s.connected && ok) {
        state.connection = 'online';
        wasOnline = true;
      }
    });
  });
  s.on('disconnect', (reason) => {
    if (socket !== s) return;
    state.connection = 'offline';
    wasOnline = true;
    failPending('offline');
    // A server that shuts down disconnects every socket itself; socket.io-client does not reconnect
    // after that on its own.
    if (reason === 'io server disconnect') setTimeout(() => socket === s && s.connect(), 500);
  });
  s.on('connect_error', () => {
    if (socket === s && wasOnline) state.connection = 'offline';
  });
  s.on('message', (m: Message) => {
    if (!m || typeof m.roomid !== 'string') return;
    const room = ensureRoom(m.roomid);
    addMessages(room, [m], countsLocally(room));
    if (room.kind === 'private' && !room.peer) void refreshFriends();
  });
  s.on('count', (counts: Record<string, number>) => {
    for (const [roomid, n] of Object.entries(counts ?? {})) {
      if (isPrivateRoom(roomid) || entered.has(roomid) || isArchived(roomid)) continue;
      const room = ensureRoom(roomid);
      const count = Number(n) || 0;
      // New messages in a room the socket is not in: read them, for the home page's last message.
      if (count > room.unread) scheduleRefresh(room);
      room.unread = state.viewing === roomid ? 0 : count;
    }
  });
  const presence = (p: { roomid?: string; onlineUsers?: Record<string, { src?: string }> }) => {
    if (!p || typeof p.roomid !== 'string' || !p.onlineUsers) return;
    ensureRoom(p.roomid).members = Object.entries(p.onlineUsers).map(([name, u]) => ({ name, src: u?.src ?? '' }));
  };
  s.on('room', presence);
  s.on('roomout', presence);
  s.on('friend', (list: Friend[]) => {
    if (Array.isArray(list)) {
      setFriends(list);
      void loadNewFriendRooms();
    }
  });
  s.on('messageRemoved', (r: { id?: unknown; roomid?: unknown; by?: unknown }) => {
    if (!r || typeof r.roomid !== 'string' || (typeof r.id !== 'number' && typeof r.id !== 'string')) return;
    noteRemoved(r.roomid, String(r.id), r.by === 'admin' ? 'admin' : 'author');
  });
  s.on('rooms', (list: unknown) => {
    const rooms = readRoomList(list);
    if (rooms) setRoomList(rooms);
  });
  s.on('notice', (n: { code?: string; msg?: string; event?: string }) => {
    if (n?.event === 'ban') {
      // The server closes the socket next and has revoked the token: back to the sign-in page with its
      // message, rather than reconnecting.
      endSession(true, typeof n.msg === 'string' ? n.msg : '');
    } else if (n?.code === 'unauthenticated') {
      endSession(true);
    } else if (n?.event !== 'message' && n?.event !== 'recall' && n?.msg) {
      toast(serverText(n.msg), 'error');
    }
  });
}

/** Re-enters the rooms and catches up. `false` if the session turned out to be gone. */
async function afterConnect(s: Socket, reconnected: boolean): Promise<boolean> {
  s.emit('login', {});
  if (reconnected) {
    // Rooms created or archived while the connection was down.
    await loadRoomList();
    if (socket !== s) return false;
  }
  const acks = await Promise.all(
    [...entered].filter((roomid) => !isArchived(roomid)).map((roomid) =>
      s
        .timeout(ROOM_ACK_MS)
        .emitWithAck('room', { roomid })
        .catch(() => null),
    ),
  );
  if (acks.some((a) => a && a.ok === false && a.code === 'unauthenticated')) {
    endSession(true);
    return false;
  }
  if (socket !== s) return false;
  await recover(s, Object.keys(state.rooms).filter((id) => state.rooms[id]!.loaded));
  return true;
}

/** Fetches what the rooms missed: `sync` if the server answers it, the history API otherwise. */
async function recover(s: Socket, roomids: string[]): Promise<void> {
  if (roomids.length === 0) return;
  const since: Record<string, number> = {};
  for (const id of roomids) since[id] = lastId(state.rooms[id]!.entries);
  const steps = await catchUpRooms(
    since,
    (rooms) => s.timeout(SYNC_ACK_MS).emitWithAck('sync', { rooms }),
    api.history,
  );
  for (const [id, step] of steps) {
    const room = state.rooms[id];
    if (room && socket === s) apply(room, step);
  }
}

/** Reads a room's history back to the newest message it holds (all of its newest page if none). */
async function catchUp(room: Room): Promise<void> {
  const since = room.loaded ? lastId(room.entries) : 0;
  apply(room, await catchUpByHistory(api.history, room.id, since));
}

function scheduleRefresh(room: Room): void {
  clearTimeout(refreshTimers.get(room.id));
  refreshTimers.set(
    room.id,
    setTimeout(() => {
      refreshTimers.delete(room.id);
      if (state.rooms[room.id] === room) void catchUp(room).catch(() => {});
    }, 250),
  );
}

async function refreshFriends(): Promise<void> {
  try {
    setFriends(await api.friends());
    await loadNewFriendRooms();
  } catch {
    /* shown again on the next event */
  }
}

async function loadNewFriendRooms(): Promise<void> {
  await Promise.all(
    Object.values(state.rooms)
      .filter((r) => r.kind === 'private' && !r.loaded)
      .map((r) => catchUp(r).catch(() => {})),
  );
}

// ---- rooms --------------------------------------------------------------------------------------

/** Puts a room on screen: enters it (group rooms) and makes sure its newest messages are there. */
export async function openRoom(roomid: string): Promise<void> {
  const room = ensureRoom(roomid);
  state.viewing = roomid;
  room.unread = 0;
  const s = socket;
  // Archived rooms are read, not entered: nothing new happens in them.
  if (room.kind === 'group' && !entered.has(roomid) && !isArchived(roomid)) {
    entered.add(roomid);
    if (s?.connected) {
      // Entered first, then read: nothing stored in between can be missed.
      await s.timeout(ROOM_ACK_MS).emitWithAck('room', { roomid }).catch(() => null);
      await catchUp(room).catch(() => {});
    }
  } else if (!room.loaded) {
    await catchUp(room).catch(() => {});
  }
  if (state.viewing === roomid) room.unread = 0;
}

export function closeRoom(roomid: string): void {
  if (state.viewing === roomid) state.viewing = null;
}

/** Reads the page of history before the oldest message held. */
export async function loadOlder(roomid: string): Promise<void> {
  const room = state.rooms[roomid];
  if (!room || room.loadingOlder || !room.hasOlder) return;
  room.loadingOlder = true;
  try {
    const first = firstId(room.entries);
    const page = await api.history(roomid, first ? String(first) : undefined);
    addMessages(room, page, false);
    room.hasOlder = page.length >= PAGE_SIZE;
  } catch {
    toast(t('networkError'), 'error');
  } finally {
    room.loadingOlder = false;
  }
}

/** The other user of a private room, if known. */
export function peerName(room: Room): string {
  if (room.peer) return room.peer.name;
  const id = state.me ? peerOf(room.id, state.me.id) : undefined;
  return state.friends.find((f) => f.friendId._id === id)?.friendId.name ?? room.id;
}

// ---- sending ------------------------------------------------------------------------------------

function localMessage(roomid: string, clientId: string, text: string, img: string): Message {
  const me = state.me!;
  return {
    _id: '',
    username: me.name,
    src: me.src,
    msg: escapeHtml(text),
    img,
    roomid,
    roomType: isPrivateRoom(roomid) ? 'single' : 'group',
    type: img ? 'img' : 'text',
    time: new Date().toISOString(),
    clientId,
  };
}

export function sendText(roomid: string, text: string): void {
  const room = ensureRoom(roomid);
  const clientId = newClientId();
  setEntries(room, addPending(room.entries, localMessage(roomid, clientId, text, '')));
  emitMessage(room, clientId, text, '');
}

export function sendPicture(roomid: string, file: Blob): void {
  const room = ensureRoom(roomid);
  const clientId = newClientId();
  const preview = URL.createObjectURL(file);
  pictures.set(clientId, { file, preview });
  room.entries = addPending(room.entries, localMessage(roomid, clientId, '', preview));
  void uploadThenSend(room, clientId);
}

async function uploadThenSend(room: Room, clientId: string): Promise<void> {
  const p = pictures.get(clientId);
  if (!p) return;
  if (!p.url) {
    try {
      p.url = await api.uploadPicture(p.file);
    } catch (e) {
      room.entries = setStatus(room.entries, clientId, 'failed', e instanceof ApiError ? e.message : 'network');
      return;
    }
  }
  emitMessage(room, clientId, '', p.url);
}

/** Sends a failed message again with the same clientId: the server stores it once whatever happened. */
export function retry(roomid: string, clientId: string): void {
  const room = state.rooms[roomid];
  const entry = room?.entries.find((e) => e.status === 'failed' && e.message.clientId === clientId);
  if (!room || !entry) return;
  room.entries = setStatus(room.entries, clientId, 'pending');
  if (pictures.has(clientId)) {
    void uploadThenSend(room, clientId);
  } else {
    emitMessage(room, clientId, plainText(entry.message.msg), '');
  }
}

function emitMessage(room: Room, clientId: string, msg: string, img: string): void {
  const s = socket;
  if (!s?.connected) {
    room.entries = setStatus(room.entries, clientId, 'failed', 'offline');
    return;
  }
  s.timeout(MESSAGE_ACK_MS).emit(
    'message',
    { msg, img, roomid: room.id, clientId },
    (err: Error | null, ack?: { ok?: boolean; id?: number | string; error?: string }) => {
      if (state.rooms[room.id] !== room) return;
      if (!err && ack?.ok && ack.id !== undefined) {
        setEntries(room, confirm(room.entries, clientId, String(ack.id)));
        const p = pictures.get(clientId);
        if (p) {
          URL.revokeObjectURL(p.preview);
          pictures.delete(clientId);
          room.entries = room.entries.map((e) =>
            e.message.clientId === clientId && e.message.img === p.preview
              ? { ...e, message: { ...e.message, img: p.url ?? '' } }
              : e,
          );
        }
      } else {
        room.entries = setStatus(room.entries, clientId, 'failed', err ? 'timeout' : (ack?.error ?? 'error'));
      }
    },
  );
}

/** Marks every message waiting for its acknowledgement failed: the connection that carried it is gone. */
function failPending(reason: string): void {
  for (const room of Object.values(state.rooms)) {
    if (room.entries.some((e) => e.status === 'pending')) {
      room.entries = room.entries.map((e) => (e.status === 'pending' ? { ...e, status: 'failed', error: reason } : e));
    }
  }
}

// ---- taking messages down ------------------------------------------------------------------------

/** A message was taken down: its line turns into a note, now and whenever a copy of it arrives. */
function noteRemoved(roomid: string, id: string, by: RemovedBy): void {
  const room = state.rooms[roomid];
  if (!room || !/^\d+$/.test(id)) return;
  if (!Object.hasOwn(room.removed, id)) room.removed[id] = by;
  setEntries(room, room.entries);
}

/** The author takes back their message `id`. Resolves to the refusal's text, or `null` once it is down. */
export async function recall(roomid: string, id: string): Promise<string | null> {
  const s = socket;
  if (!s?.connected) return t('offline');
  let ack: { ok?: boolean; error?: string; code?: string } | undefined;
  try {
    ack = await s.timeout(MESSAGE_ACK_MS).emitWithAck('recall', { id: Number(id) });
  } catch {
    return t('networkError');
  }
  if (ack?.ok) {
    noteRemoved(roomid, id, 'author');
    return null;
  }
  return typeof ack?.error === 'string' && ack.error ? serverText(ack.error) : t('recallFailed');
}

/** An admin takes message `id` down; throws the server's refusal (`ApiError`). */
export async function removeMessage(roomid: string, id: string, reason: string): Promise<void> {
  const r = await api.removeMessage(id, reason);
  noteRemoved(typeof r?.roomid === 'string' ? r.roomid : roomid, id, 'admin');
}

// ---- people -------------------------------------------------------------------------------------

export async function addFriend(user: User): Promise<void> {
  await api.addFriend(user.id);
  await refreshFriends();
}

export function isFriend(userId: string): boolean {
  return state.friends.some((f) => f.friendId._id === userId);
}

export async function changeAvatar(file: Blob): Promise<void> {
  const url = await api.uploadAvatar(file);
  if (state.me) state.me = { ...state.me, src: url };
}
