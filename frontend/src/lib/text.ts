// Text and identifiers as the server defines them (docs/protocol.md, docs/socket.md).

const ENTITIES: Record<string, string> = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };

/**
 * The text of a stored message. The server HTML-escapes message text for the webchat clients, which
 * render it as HTML; this client undoes exactly those five escapes and shows the result as text (never
 * as HTML), so `<b>` reads as `<b>` and nothing in a message can run.
 */
export function plainText(escaped: string): string {
  return escaped.replace(/&(?:amp|lt|gt|quot|#39);/g, (e) => ENTITIES[e] ?? e);
}

/** Longest message the server accepts, in characters (code points: an emoji counts once). */
export const MAX_MESSAGE_CHARS = 200;

/** Length in code points, the way the server counts. */
export function charCount(text: string): number {
  let n = 0;
  for (const _ of text) n++;
  return n;
}

/**
 * The private room of two users: `<larger id>-<smaller id>`, the ids compared as strings (so `"9-10"`),
 * as the server and the webchat client compute it.
 */
export function privateRoom(a: string, b: string): string {
  return a > b ? `${a}-${b}` : `${b}-${a}`;
}

export function isPrivateRoom(roomid: string): boolean {
  return roomid.includes('-');
}

/** The other user's id in a private room. */
export function peerOf(roomid: string, me: string): string | undefined {
  const [x, y] = roomid.split('-');
  if (x === me) return y;
  if (y === me) return x;
  return undefined;
}

/** A new message's `clientId`: 32 random hex digits (works on plain-HTTP pages, unlike randomUUID). */
export function newClientId(): string {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Avatars and pictures the page may load: the upload store, our own files, or http(s) addresses. */
export function safeImageUrl(url: string | undefined): string | undefined {
  if (!url) return undefined;
  if (/^(https?:)?\/\/[^\s"'<>`\\]+$/i.test(url)) return url;
  if (/^\/?(static\/files|avatar)\/[^\s"'<>`\\]+$/.test(url)) return url.startsWith('/') ? url : `/${url}`;
  return undefined;
}

/** The server's escaping of message text (for showing the user's own message before it is stored). */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": '#39' }[c]};`);
}
