// Interface text in Chinese and English: the browser's language picks one, the switch overrides it
// (remembered in localStorage).

import { ref } from 'vue';

import { parseBanNotice, type BanNotice } from './moderation';

export type Locale = 'zh' | 'en';

const en = {
  appName: 'chatroom',
  signIn: 'Sign in',
  signUp: 'Create account',
  signOut: 'Sign out',
  name: 'Name',
  password: 'Password',
  noAccount: 'No account yet?',
  haveAccount: 'Already have an account?',
  namePlaceholder: '1–15 characters, no spaces',
  passwordPlaceholder: '6–20 characters',
  tagline: 'Chat rooms and private messages, served by your own chatroom server.',
  chats: 'Chats',
  groups: 'Rooms',
  friends: 'Friends',
  noFriends: 'No friends yet. Find people with search.',
  noMessages: 'No messages yet',
  search: 'Search',
  searchPlaceholder: 'Search people by name',
  noResults: 'Nobody found',
  hotUsers: 'Most active',
  me: 'Me',
  back: 'Back',
  send: 'Send',
  messagePlaceholder: 'Write a message',
  emoji: 'Emoji',
  picture: 'Picture',
  pending: 'Sending…',
  failed: 'Not sent',
  retry: 'Retry',
  loadingOlder: 'Loading earlier messages…',
  startOfRoom: 'This is the beginning of the conversation',
  online: 'Online',
  members: 'Online ({n})',
  offline: 'Connection lost. Reconnecting…',
  catchingUp: 'Reconnected, catching up…',
  newMessages: 'New messages ↓',
  addFriend: 'Add friend',
  message: 'Message',
  isFriend: 'Friends',
  friendAdded: 'Friend added',
  profile: 'Profile',
  userNotFound: 'No such user',
  changeAvatar: 'Change avatar',
  avatarChanged: 'Avatar updated',
  language: 'Language',
  pickRoom: 'Pick a room or a friend to start chatting.',
  yesterday: 'Yesterday',
  tooLong: '{n}/200',
  uploading: 'Uploading…',
  networkError: 'Network error, please try again.',
  signedOut: 'Your session has ended. Please sign in again.',
  picturesOnly: 'Pictures only (PNG, JPEG, WebP, GIF)',
  room: 'Room {name}',
  messageActions: 'Message actions',
  recall: 'Recall',
  remove: 'Remove',
  recalled: 'This message was recalled',
  removedByAdmin: 'Removed by an admin',
  recallFailed: 'The message could not be recalled.',
  removeTitle: 'Remove this message?',
  removeHint: 'Everyone in the conversation will see that an admin removed it.',
  reasonOptional: 'Reason (optional)',
  reason: 'Reason',
  cancel: 'Cancel',
  messageRemoved: 'Message removed',
  ban: 'Ban',
  liftBan: 'Lift ban',
  banTitle: 'Ban {name}?',
  banHint: 'They are signed out everywhere at once and cannot sign in until the ban ends.',
  duration: 'Duration',
  banHour: '1 hour',
  banDay: '1 day',
  banWeek: '7 days',
  banMonth: '30 days',
  banForever: 'Until lifted',
  bannedUntil: '{name} is banned until {until}.',
  bannedForever: '{name} is banned until the ban is lifted.',
  banLifted: '{name} may sign in again.',
  accountBanned: 'This account is banned.',
  accountBannedUntil: 'This account is banned until {until}.',
  banReason: 'Reason: {reason}',
  admin: 'Administration',
  adminOnly: 'This page is for admins only.',
  createRoom: 'Create a room',
  roomId: 'Room id',
  roomIdHint: '1–32 letters, digits or _',
  roomName: 'Name',
  roomNameHint: '1–30 characters',
  create: 'Create',
  archive: 'Archive',
  archived: 'Archived',
  archiveTitle: 'Archive {name}?',
  archiveHint: 'Its history stays readable; nobody can send messages to it any more, and it leaves everyone’s list.',
  roomCreated: 'Room {name} created',
  roomArchived: 'Room {name} archived',
  archivedNote: 'This room is archived: its history stays, new messages are closed.',
  audit: 'Audit trail',
  noAudit: 'Nothing recorded yet.',
  previous: 'Previous',
  next: 'Next',
  pageOf: 'Page {page} of {pages}',
  refresh: 'Refresh',
  refused: 'refused: {why}',
  audit_grant: 'made an admin',
  audit_revoke: 'revoked admin',
  audit_remove: 'removed message',
  audit_recall: 'recalled message',
  audit_ban: 'banned',
  audit_unban: 'lifted the ban of',
  audit_create_room: 'created room',
  audit_archive_room: 'archived room',
} as const;

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  appName: 'chatroom',
  signIn: '登录',
  signUp: '注册',
  signOut: '退出登录',
  name: '用户名',
  password: '密码',
  noAccount: '还没有账号？',
  haveAccount: '已有账号？',
  namePlaceholder: '1–15 个字符，不含空格',
  passwordPlaceholder: '6–20 个字符',
  tagline: '群聊与私聊，由你自己的 chatroom 服务器提供。',
  chats: '消息',
  groups: '聊天室',
  friends: '好友',
  noFriends: '还没有好友，去搜索认识新朋友吧。',
  noMessages: '暂无消息',
  search: '搜索',
  searchPlaceholder: '按用户名搜索',
  noResults: '没有找到用户',
  hotUsers: '活跃用户',
  me: '我',
  back: '返回',
  send: '发送',
  messagePlaceholder: '输入消息',
  emoji: '表情',
  picture: '图片',
  pending: '发送中…',
  failed: '发送失败',
  retry: '重试',
  loadingOlder: '正在加载更早的消息…',
  startOfRoom: '已经到顶啦',
  online: '在线',
  members: '在线（{n}）',
  offline: '连接已断开，正在重连…',
  catchingUp: '已重新连接，正在同步消息…',
  newMessages: '有新消息 ↓',
  addFriend: '添加好友',
  message: '发消息',
  isFriend: '已是好友',
  friendAdded: '添加成功',
  profile: '个人资料',
  userNotFound: '用户不存在',
  changeAvatar: '更换头像',
  avatarChanged: '头像已更新',
  language: '语言',
  pickRoom: '选择一个聊天室或好友开始聊天。',
  yesterday: '昨天',
  tooLong: '{n}/200',
  uploading: '上传中…',
  networkError: '网络异常，请稍后再试。',
  signedOut: '登录已失效，请重新登录。',
  picturesOnly: '只支持 PNG、JPEG、WebP 和 GIF 图片',
  room: '聊天室 {name}',
  messageActions: '消息操作',
  recall: '撤回',
  remove: '删除',
  recalled: '消息已撤回',
  removedByAdmin: '消息已被管理员删除',
  recallFailed: '撤回失败。',
  removeTitle: '删除这条消息？',
  removeHint: '会话中的所有人都会看到它已被管理员删除。',
  reasonOptional: '原因（可选）',
  reason: '原因',
  cancel: '取消',
  messageRemoved: '消息已删除',
  ban: '封禁',
  liftBan: '解除封禁',
  banTitle: '封禁 {name}？',
  banHint: '对方会立即在所有设备上退出登录，封禁结束前无法登录。',
  duration: '时长',
  banHour: '1 小时',
  banDay: '1 天',
  banWeek: '7 天',
  banMonth: '30 天',
  banForever: '直到解除',
  bannedUntil: '已封禁 {name}，{until} 解封。',
  bannedForever: '已封禁 {name}，直到解除封禁。',
  banLifted: '已解除 {name} 的封禁。',
  accountBanned: '该账号已被封禁。',
  accountBannedUntil: '该账号已被封禁，{until} 解封。',
  banReason: '原因：{reason}',
  admin: '管理',
  adminOnly: '仅管理员可以访问此页面。',
  createRoom: '创建聊天室',
  roomId: '房间 id',
  roomIdHint: '1–32 个字母、数字或下划线',
  roomName: '名称',
  roomNameHint: '1–30 个字',
  create: '创建',
  archive: '归档',
  archived: '已归档',
  archiveTitle: '归档 {name}？',
  archiveHint: '历史消息仍可查看，但不能再发送新消息，它也会从所有人的列表中消失。',
  roomCreated: '已创建聊天室 {name}',
  roomArchived: '已归档聊天室 {name}',
  archivedNote: '这个聊天室已归档：可以查看历史消息，但不能再发送。',
  audit: '操作记录',
  noAudit: '暂无记录。',
  previous: '上一页',
  next: '下一页',
  pageOf: '第 {page} / {pages} 页',
  refresh: '刷新',
  refused: '被拒绝：{why}',
  audit_grant: '授予管理员',
  audit_revoke: '撤销管理员',
  audit_remove: '删除消息',
  audit_recall: '撤回消息',
  audit_ban: '封禁',
  audit_unban: '解除封禁',
  audit_create_room: '创建聊天室',
  audit_archive_room: '归档聊天室',
};

const TEXTS: Record<Locale, Record<Key, string>> = { en, zh };
const STORAGE_KEY = 'chatroom.locale';

/** The browser's preferred language: Chinese for any `zh*`, English otherwise. */
export function detectLocale(languages: readonly string[]): Locale {
  for (const l of languages) {
    const tag = l.toLowerCase();
    if (tag.startsWith('zh')) return 'zh';
    if (tag.startsWith('en')) return 'en';
  }
  return 'en';
}

function initialLocale(): Locale {
  try {
    const saved = localStorage.getItem(STORAGE_KEY);
    if (saved === 'zh' || saved === 'en') return saved;
  } catch {
    /* storage blocked: follow the browser */
  }
  return detectLocale(typeof navigator === 'undefined' ? [] : navigator.languages ?? [navigator.language]);
}

export const locale = ref<Locale>(typeof window === 'undefined' ? 'en' : initialLocale());

export function setLocale(l: Locale): void {
  locale.value = l;
  try {
    localStorage.setItem(STORAGE_KEY, l);
  } catch {
    /* not remembered, still switched */
  }
  document.documentElement.lang = l === 'zh' ? 'zh-CN' : 'en';
}

/** The text for `key` in the current language, with `{name}` placeholders filled in. */
export function t(key: Key, params?: Record<string, string | number>): string {
  const text = TEXTS[locale.value][key];
  return params ? text.replace(/\{(\w+)\}/g, (_, p: string) => String(params[p] ?? '')) : text;
}

/**
 * The server's refusals are written in Chinese (for the webchat clients). The ones this client can run
 * into are given in English too; anything else is shown as the server wrote it. Keys are the server's
 * text without spaces and punctuation.
 */
const SERVER_EN: Record<string, string> = {
  用户名或密码错误: 'Wrong name or password',
  用户名已存在: 'That name is taken',
  用户名过长: 'The name is too long',
  密码过长: 'The password is too long',
  操作过于频繁请稍后再试: 'Too many attempts, please try again later',
  您已经添加过该好友请勿重复添加: 'Already friends',
  用户不存在: 'No such user',
  只支持PNGJPEGWebP和GIF图片: 'Pictures only (PNG, JPEG, WebP, GIF)',
  图片不能超过5MB: 'The picture is larger than 5 MB',
  图片尺寸过大: 'The picture is too large',
  服务器繁忙: 'The server is busy, please retry',
  请先登录: 'Please sign in',
  只能撤回自己的消息: 'You can only recall your own messages',
  消息不存在: 'No such message',
  消息id无效: 'Not a message id',
  这条消息已被撤回或删除: 'This message was recalled or removed',
  这个房间已归档不能再发送消息: 'This room is archived: it takes no new messages',
  房间不存在: 'No such room',
  仅管理员可以访问: 'Admins only',
  '不能封禁管理员（请先撤销其管理员身份）': 'Admins cannot be banned (revoke their role first)',
  房间id只能由1到32个字母数字或下划线组成: 'A room id is 1–32 letters, digits or _',
  至少要保留一个开放的房间: 'At least one room has to stay open',
  没有这个接口: 'No such endpoint',
};

/** Refusals with a number or a name in them: the key's pattern, and the English text built from it. */
const SERVER_EN_PATTERNS: [RegExp, (m: RegExpExecArray) => string][] = [
  [/^消息发出已超过(\d+)分钟不能撤回$/, (m) => `Messages can only be recalled within ${m[1]} min of sending`],
  [/^消息发出已超过(\d+)秒不能撤回$/, (m) => `Messages can only be recalled within ${m[1]} s of sending`],
  [/^房间名称应为1到(\d+)个字$/, (m) => `A room name is 1–${m[1]} characters`],
  [/^房间(\w+)不存在$/, (m) => `No room ${m[1]}`],
  [/^房间(\w+)已存在$/, (m) => `Room ${m[1]} already exists`],
  [/^minutes应在1到\d+之间$/, () => 'That ban length is not allowed'],
];

export function serverText(text: string): string {
  // A ban is said in the interface's language either way, with its end in local time.
  const ban = parseBanNotice(text);
  if (ban) return banText(ban);
  if (locale.value === 'zh') return text;
  const key = text.replace(/[\s，。、！,.!]/g, '');
  const known = SERVER_EN[key];
  if (known) return known;
  for (const [pattern, english] of SERVER_EN_PATTERNS) {
    const m = pattern.exec(key);
    if (m) return english(m);
  }
  return text;
}

/** A ban as the banned user reads it: until when (local time) and why. */
export function banText(ban: BanNotice): string {
  const head = ban.until ? t('accountBannedUntil', { until: formatDateTime(ban.until) }) : t('accountBanned');
  if (!ban.reason) return head;
  return `${head}${locale.value === 'zh' ? '' : ' '}${t('banReason', { reason: ban.reason })}`;
}

/** A date and time in full, in the interface's language (ban ends, the audit trail). */
export function formatDateTime(d: Date | string): string {
  const date = typeof d === 'string' ? new Date(d) : d;
  if (Number.isNaN(date.getTime())) return typeof d === 'string' ? d : '';
  return date.toLocaleString(locale.value === 'zh' ? 'zh-CN' : 'en-GB', { dateStyle: 'medium', timeStyle: 'short' });
}

/** Message times: the time of day for today, "Yesterday" + time, else the date and time. */
export function formatTime(iso: string, now = new Date()): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const tag = locale.value === 'zh' ? 'zh-CN' : 'en-GB';
  const time = d.toLocaleTimeString(tag, { hour: '2-digit', minute: '2-digit' });
  const day = (x: Date) => `${x.getFullYear()}-${x.getMonth()}-${x.getDate()}`;
  if (day(d) === day(now)) return time;
  const yesterday = new Date(now);
  yesterday.setDate(now.getDate() - 1);
  if (day(d) === day(yesterday)) return `${t('yesterday')} ${time}`;
  const sameYear = d.getFullYear() === now.getFullYear();
  const date = d.toLocaleDateString(tag, sameYear ? { month: 'short', day: 'numeric' } : { dateStyle: 'medium' });
  return `${date} ${time}`;
}
