// The server's HTTP API (docs/protocol.md, the v3 endpoints).
//
// Identity travels in the HttpOnly `chatroom_token` cookie that sign-in sets: this page's scripts never
// see the token, so nothing injected into the page could read it. The cookie is SameSite=Lax and the
// server refuses cross-site POSTs, so other sites cannot act with it either.

import { readRoomList, type RoomInfo } from './rooms';
import type { Message } from './timeline';

export interface User {
  id: string;
  name: string;
  src: string;
  /** Only from `/api/user/me`: whether the user is an admin, and their recall window in seconds. */
  admin?: boolean;
  recallWindow?: number;
}

export interface PublicUser {
  _id: string;
  name: string;
  src: string;
}

export interface Friend {
  _id: string;
  friendId: PublicUser;
  time: string;
}

export interface HotUser {
  _id: string;
  count: number;
  user: PublicUser;
}

/** A refusal from the server (`errno: 1`), or a network or server failure. */
export class ApiError extends Error {
  constructor(
    message: string,
    /** 401: the session is gone; the admin API answers 400, 403, 404 or 409 for its refusals. */
    readonly status = 200,
    /** The admin API's machine-readable reason (`forbidden`, `not_found`, `conflict`, `invalid`). */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** Called when a request finds the session gone (401). */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

interface Envelope<T> {
  errno?: number;
  error?: number;
  data?: T;
  msg?: string;
  code?: string;
}

async function call<T>(path: string, init: RequestInit = {}): Promise<Envelope<T> & Record<string, unknown>> {
  let res: Response;
  try {
    res = await fetch(path, { credentials: 'same-origin', ...init });
  } catch {
    throw new ApiError('network');
  }
  let body: (Envelope<T> & Record<string, unknown>) | undefined;
  try {
    body = await res.json();
  } catch {
    body = undefined;
  }
  if (res.status === 401) {
    onUnauthorized();
    throw new ApiError(body?.msg ?? 'unauthorized', 401);
  }
  const code = typeof body?.code === 'string' ? body.code : undefined;
  if (!res.ok || !body) {
    throw new ApiError(typeof body?.data === 'string' ? body.data : (body?.msg ?? 'network'), res.status, code);
  }
  if (body.errno !== 0 || body.error) {
    const text = typeof body.data === 'string' ? body.data : (body.msg ?? 'error');
    throw new ApiError(text, res.status, code);
  }
  return body;
}

function post<T>(path: string, payload: unknown) {
  return send<T>('POST', path, payload);
}

function send<T>(method: 'POST' | 'DELETE', path: string, payload?: unknown) {
  if (payload === undefined) return call<T>(path, { method });
  return call<T>(path, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(payload),
  });
}

export async function signIn(name: string, password: string): Promise<User> {
  const r = await post<string>('/api/user/signin', { name, password });
  return r.userInfo as User;
}

export async function signUp(name: string, password: string): Promise<User> {
  // The server gives users who send no avatar its default one.
  const r = await post<string>('/api/user/signup', { name, password, src: '' });
  return r.userInfo as User;
}

/** Revokes the session's token on the server and clears the cookie. */
export async function signOut(): Promise<void> {
  await post('/api/user/logout', {});
}

/** Who the cookie belongs to, or `null` when there is no usable session. */
export async function me(): Promise<User | null> {
  try {
    return (await call<User>('/api/user/me')).data ?? null;
  } catch (e) {
    if (e instanceof ApiError && e.status === 401) return null;
    throw e;
  }
}

/** The newest messages of every group room and of each friend's private room. */
export async function recentByRoom(selfId: string): Promise<Record<string, Message[]>> {
  const r = await call<Record<string, Message[]>>(`/api/message/history/byUser?selfId=${encodeURIComponent(selfId)}`);
  return r.data ?? {};
}

/** Every group room in the server's order, archived ones marked (no sign-in needed). */
export async function rooms(): Promise<RoomInfo[]> {
  const list = readRoomList((await call<unknown>('/api/rooms')).data);
  if (!list) throw new ApiError('network');
  return list;
}

/** Up to 20 messages older than `before` (the newest 20 without it), oldest first. */
export async function history(roomid: string, before?: string): Promise<Message[]> {
  const q = new URLSearchParams({ roomid });
  if (before) q.set('msgid', before);
  const r = await call<{ data: Message[] }>(`/api/message/v2/history?${q}`);
  return r.data?.data ?? [];
}

export async function friends(): Promise<Friend[]> {
  return (await post<Friend[]>('/api/friend/list', {})).data ?? [];
}

export async function addFriend(friendId: string): Promise<void> {
  await post('/api/friend/add', { friendId });
}

export async function searchUsers(name: string): Promise<PublicUser[]> {
  return (await call<PublicUser[]>(`/api/user/search?name=${encodeURIComponent(name)}`)).data ?? [];
}

export async function hotUsers(): Promise<HotUser[]> {
  return (await call<HotUser[]>('/api/message/getHot')).data ?? [];
}

export async function userInfo(name: string): Promise<User> {
  const r = await call<User>(`/api/user/getInfo?id=${encodeURIComponent(name)}`);
  if (!r.data) throw new ApiError('用户不存在');
  return r.data;
}

async function upload<T>(path: string, file: Blob): Promise<T> {
  const form = new FormData();
  form.append('file', file);
  // The upload endpoints answer in the v3 client's envelope when an Authorization header is present;
  // `Bearer false` is how that client says "no token here", so the cookie identifies us.
  const r = await call<T>(path, { method: 'POST', body: form, headers: { Authorization: 'Bearer false' } });
  return r.data as T;
}

/** Stores a chat picture; resolves to its URL, which a message then carries. */
export function uploadPicture(file: Blob): Promise<string> {
  return upload<string>('/api/file/uploadimg', file);
}

/** Replaces the user's avatar; resolves to its URL. */
export async function uploadAvatar(file: Blob): Promise<string> {
  return (await upload<{ url: string }>('/api/file/avatar', file)).url;
}

// ---- operators (admins only: everyone else gets 403) ----------------------------------------------

const seg = encodeURIComponent;

/** What `DELETE /api/admin/messages/{id}` answers; `already` when it was down before. */
export interface Removal {
  id: number;
  roomid: string;
  removed: boolean;
  already: boolean;
}

/** Takes a message down; its room hears `messageRemoved` with `by: "admin"`. */
export async function removeMessage(id: string, reason: string): Promise<Removal> {
  return (await send<Removal>('DELETE', `/api/admin/messages/${seg(id)}`, { reason })).data as Removal;
}

/** A ban as the server stored it: `until` is RFC 3339, `null` until lifted. */
export interface Ban {
  name: string;
  until: string | null;
  reason: string;
}

/** Bans `name` for `minutes` (until lifted with `null`): their sessions end at once. */
export async function ban(name: string, reason: string, minutes: number | null): Promise<Ban> {
  const payload = minutes === null ? { reason } : { reason, minutes };
  return (await send<Ban>('POST', `/api/admin/users/${seg(name)}/ban`, payload)).data as Ban;
}

/** Lifts the ban of `name` (harmless without one). */
export async function unban(name: string): Promise<void> {
  await send('DELETE', `/api/admin/users/${seg(name)}/ban`);
}

export async function createRoom(roomid: string, name: string): Promise<RoomInfo> {
  return (await send<RoomInfo>('POST', '/api/admin/rooms', { roomid, name })).data as RoomInfo;
}

/** Archives a room: its history stays readable, new messages are refused. */
export async function archiveRoom(roomid: string): Promise<RoomInfo> {
  return (await send<RoomInfo>('DELETE', `/api/admin/rooms/${seg(roomid)}`)).data as RoomInfo;
}

export interface AuditEntry {
  id: number;
  /** RFC 3339. */
  at: string;
  actor: string;
  action: string;
  target: string;
  reason: string;
  /** Why the server refused the attempt; `null` when it was done. */
  refused: string | null;
}

export interface AuditPage {
  entries: AuditEntry[];
  page: number;
  size: number;
  total: number;
}

/** A page of the audit trail, newest first. */
export async function audit(page: number, size: number): Promise<AuditPage> {
  const r = await call<AuditPage>(`/api/admin/audit?page=${page}&size=${size}`);
  const d = r.data;
  return {
    entries: Array.isArray(d?.entries) ? d.entries : [],
    page: Number(d?.page) || page,
    size: Number(d?.size) || size,
    total: Number(d?.total) || 0,
  };
}
