// Who may take which message down, bans and the audit trail: the rules the interface follows. The server
// decides (and refuses with a reason); these only keep the interface from offering what it would refuse.
// Pure functions, unit-tested.

import { idOf, type Entry } from './timeline';

/** How long after sending an author may recall a message when the server does not say (seconds). */
export const DEFAULT_RECALL_WINDOW = 120;

/** The recall window `/api/user/me` gives (`recallWindow`, seconds), or the default. */
export function recallWindowOf(value: unknown): number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : DEFAULT_RECALL_WINDOW;
}

/** The signed-in user, as far as message actions go. */
export interface Viewer {
  name: string;
  admin: boolean;
  /** Seconds. */
  recallWindow: number;
}

export type MessageAction = 'recall' | 'remove';

// The few possible answers, always the same arrays: a component whose actions did not change is not
// drawn again when the clock ticks.
const NONE: readonly MessageAction[] = Object.freeze([]);
const RECALL: readonly MessageAction[] = Object.freeze(['recall']);
const REMOVE: readonly MessageAction[] = Object.freeze(['remove']);
const BOTH: readonly MessageAction[] = Object.freeze(['recall', 'remove']);

/**
 * Whether the viewer may still recall `entry`: their own stored message, not taken down, sent less than
 * the recall window before `now` (milliseconds). The server's clock decides in the end.
 */
export function canRecall(entry: Entry, viewer: Viewer, now: number): boolean {
  if (entry.status !== 'sent' || entry.removed || idOf(entry.message) === 0) return false;
  if (entry.message.username !== viewer.name) return false;
  const sent = Date.parse(entry.message.time);
  return Number.isFinite(sent) && now - sent < viewer.recallWindow * 1000;
}

/** What the viewer may do to a message: recall their own recent ones; admins remove any stored one. */
export function messageActions(entry: Entry, viewer: Viewer | null, now: number): readonly MessageAction[] {
  if (!viewer || entry.status !== 'sent' || entry.removed || idOf(entry.message) === 0) return NONE;
  const recall = canRecall(entry, viewer, now);
  if (viewer.admin) return recall ? BOTH : REMOVE;
  return recall ? RECALL : NONE;
}

/** Ban lengths offered to admins, in minutes; `null` is until lifted. */
export const BAN_CHOICES = [
  { minutes: 60, key: 'banHour' },
  { minutes: 24 * 60, key: 'banDay' },
  { minutes: 7 * 24 * 60, key: 'banWeek' },
  { minutes: 30 * 24 * 60, key: 'banMonth' },
  { minutes: null, key: 'banForever' },
] as const;

/** What the server's ban refusal says: until when (`null`: until lifted) and why (`''`: no reason given). */
export interface BanNotice {
  until: Date | null;
  reason: string;
}

/**
 * Reads the server's ban message ("该账号已被封禁，至 <RFC 3339> 解封，原因：<reason>", both parts optional),
 * so the interface can say it in its own language with a local date. `null` for any other text.
 */
export function parseBanNotice(text: string): BanNotice | null {
  const m = /^该账号已被封禁(?:，至\s*(\S+)\s*解封)?(?:，原因：([\s\S]*))?$/.exec(text);
  if (!m) return null;
  let until: Date | null = null;
  if (m[1] !== undefined) {
    until = new Date(m[1]);
    if (Number.isNaN(until.getTime())) return null;
  }
  return { until, reason: m[2] ?? '' };
}

/** How many pages of `size` hold `total` entries (at least one, shown empty). */
export function pageCount(total: number, size: number): number {
  if (!(size > 0) || !(total > 0)) return 1;
  return Math.ceil(total / size);
}

/** The audit trail's actions, as the server names them. */
export const AUDIT_ACTIONS = [
  'grant',
  'revoke',
  'remove',
  'recall',
  'ban',
  'unban',
  'create_room',
  'archive_room',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export function isAuditAction(action: string): action is AuditAction {
  return (AUDIT_ACTIONS as readonly string[]).includes(action);
}
