// Interface text in Chinese and English: the browser's language picks one, the switch overrides it
// (remembered in localStorage).

import { ref } from 'vue';

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
 * into are given in English too; anything else is shown as the server wrote it.
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
};

export function serverText(text: string): string {
  if (locale.value === 'zh') return text;
  const key = text.replace(/[\s，。、！,.!]/g, '');
  return SERVER_EN[key] ?? text;
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
