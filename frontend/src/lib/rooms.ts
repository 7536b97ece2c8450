// Group rooms as the server lists them (`GET /api/rooms`, the `rooms` event). Admins create and archive
// rooms while the server runs, so the client follows the server's list instead of collecting room ids
// from the messages it sees. Pure functions, unit-tested.

/** A group room. `name` is HTML-escaped by the server, like message text: show it through `plainText`. */
export interface RoomInfo {
  roomid: string;
  name: string;
  /** Archived rooms keep their history readable but refuse new messages. */
  archived: boolean;
}

/** The longest group room id and name the server accepts. */
export const MAX_ROOM_ID = 32;
export const MAX_ROOM_NAME = 30;

/** A room list from the server, or `null` when `data` is not one. Malformed entries are skipped. */
export function readRoomList(data: unknown): RoomInfo[] | null {
  if (!Array.isArray(data)) return null;
  const out: RoomInfo[] = [];
  const seen = new Set<string>();
  for (const r of data as unknown[]) {
    if (!r || typeof r !== 'object') continue;
    const { roomid, name, archived } = r as Record<string, unknown>;
    if (typeof roomid !== 'string' || roomid === '' || seen.has(roomid)) continue;
    seen.add(roomid);
    out.push({ roomid, name: typeof name === 'string' && name !== '' ? name : roomid, archived: archived === true });
  }
  return out;
}

/** The ids of the rooms still open, in the server's order: the conversation list shows these. */
export function openRoomIds(list: readonly RoomInfo[]): string[] {
  return list.filter((r) => !r.archived).map((r) => r.roomid);
}

/** The list with `room` in it: replaced where it was, appended when new (the server lists new rooms last). */
export function withRoom(list: readonly RoomInfo[], room: RoomInfo): RoomInfo[] {
  return list.some((r) => r.roomid === room.roomid)
    ? list.map((r) => (r.roomid === room.roomid ? room : r))
    : [...list, room];
}

/** Whether `id` may name a new group room: 1–32 letters, digits or `_`, as the server requires. */
export function validRoomId(id: string): boolean {
  return /^[A-Za-z0-9_]{1,32}$/.test(id);
}

/** Whether `name` (trimmed) may name a new room: 1–30 characters, no control characters. */
export function validRoomName(name: string): boolean {
  const text = name.trim();
  const length = [...text].length;
  // Control characters (C0, DEL, C1) are refused by the server too.
  return length >= 1 && length <= MAX_ROOM_NAME && !/[\u0000-\u001f\u007f-\u009f]/.test(text);
}
