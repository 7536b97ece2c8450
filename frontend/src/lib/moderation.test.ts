import { afterEach, describe, expect, it } from 'vitest';

import { locale, serverText } from './i18n';
import {
  BAN_CHOICES,
  DEFAULT_RECALL_WINDOW,
  canRecall,
  isAuditAction,
  messageActions,
  pageCount,
  parseBanNotice,
  recallWindowOf,
  type Viewer,
} from './moderation';
import { addPending, merge, type Entry, type Message } from './timeline';

const SENT_AT = Date.parse('2026-12-04T10:00:00.000Z');

function msg(id: string, username: string, extra: Partial<Message> = {}): Message {
  return {
    _id: id,
    username,
    src: '',
    msg: 'hi',
    img: '',
    roomid: 'room1',
    roomType: 'group',
    type: 'text',
    time: new Date(SENT_AT).toISOString(),
    clientId: '',
    ...extra,
  };
}

function stored(m: Message): Entry {
  return merge([], [m], 'nobody').entries[0]!;
}

const alice: Viewer = { name: 'alice', admin: false, recallWindow: 120 };
const admin: Viewer = { name: 'root', admin: true, recallWindow: 120 };
const seconds = (n: number) => SENT_AT + n * 1000;

describe('recall', () => {
  it("is offered to the author for the server's window after sending", () => {
    const own = stored(msg('7', 'alice'));
    expect(canRecall(own, alice, seconds(0))).toBe(true);
    expect(canRecall(own, alice, seconds(119.9))).toBe(true);
    expect(canRecall(own, alice, seconds(120))).toBe(false);
    expect(canRecall(own, { ...alice, recallWindow: 600 }, seconds(300))).toBe(true);
    // A clock behind the server's: the message looks new, the server decides.
    expect(canRecall(own, alice, seconds(-30))).toBe(true);
  });

  it("is never offered for someone else's, an unsent, a removed or an undated message", () => {
    expect(canRecall(stored(msg('7', 'bob')), alice, seconds(1))).toBe(false);
    const pending = addPending([], msg('', 'alice', { clientId: 'c' }))[0]!;
    expect(canRecall(pending, alice, seconds(1))).toBe(false);
    expect(canRecall({ ...pending, status: 'failed' }, alice, seconds(1))).toBe(false);
    expect(canRecall({ ...stored(msg('7', 'alice')), removed: 'author' }, alice, seconds(1))).toBe(false);
    expect(canRecall(stored(msg('7', 'alice', { time: 'yesterday' })), alice, seconds(1))).toBe(false);
  });

  it('reads the window from /api/user/me, falling back to two minutes', () => {
    expect(recallWindowOf(300)).toBe(300);
    expect(recallWindowOf(0)).toBe(0);
    for (const bad of [undefined, null, '120', -5, Number.NaN, Infinity]) {
      expect(recallWindowOf(bad)).toBe(DEFAULT_RECALL_WINDOW);
    }
  });
});

describe('message actions', () => {
  it('authors recall their recent messages; admins remove any stored one', () => {
    const own = stored(msg('7', 'alice'));
    expect(messageActions(own, alice, seconds(5))).toEqual(['recall']);
    expect(messageActions(own, alice, seconds(500))).toEqual([]);
    expect(messageActions(stored(msg('8', 'bob')), alice, seconds(5))).toEqual([]);
    expect(messageActions(stored(msg('8', 'bob')), admin, seconds(5))).toEqual(['remove']);
    expect(messageActions(stored(msg('9', 'root')), admin, seconds(5))).toEqual(['recall', 'remove']);
    expect(messageActions(stored(msg('9', 'root')), admin, seconds(500))).toEqual(['remove']);
  });

  it('offers nothing for a removed or unsent message, or to nobody', () => {
    expect(messageActions({ ...stored(msg('8', 'bob')), removed: 'admin' }, admin, seconds(5))).toEqual([]);
    expect(messageActions(addPending([], msg('', 'root', { clientId: 'c' }))[0]!, admin, seconds(5))).toEqual([]);
    expect(messageActions(stored(msg('8', 'bob')), null, seconds(5))).toEqual([]);
  });

  it('answers with the same list while nothing changes, so a tick of the clock draws nothing again', () => {
    const own = stored(msg('7', 'alice'));
    expect(messageActions(own, alice, seconds(5))).toBe(messageActions(own, alice, seconds(6)));
    expect(messageActions(own, alice, seconds(500))).toBe(messageActions(stored(msg('8', 'bob')), alice, 0));
  });
});

describe('bans', () => {
  it('reads the three forms of the server’s ban message', () => {
    expect(parseBanNotice('该账号已被封禁，至 2026-12-05T10:00:00Z 解封，原因：spam，again')).toEqual({
      until: new Date('2026-12-05T10:00:00Z'),
      reason: 'spam，again',
    });
    expect(parseBanNotice('该账号已被封禁，原因：刷屏')).toEqual({ until: null, reason: '刷屏' });
    expect(parseBanNotice('该账号已被封禁，至 2026-12-05T10:00:00Z 解封')).toEqual({
      until: new Date('2026-12-05T10:00:00Z'),
      reason: '',
    });
    expect(parseBanNotice('该账号已被封禁')).toEqual({ until: null, reason: '' });
    expect(parseBanNotice('用户名或密码错误')).toBeNull();
    expect(parseBanNotice('该账号已被封禁，至 someday 解封')).toBeNull();
  });

  it('offers lengths from an hour to until lifted', () => {
    expect(BAN_CHOICES.map((c) => c.minutes)).toEqual([60, 1440, 10080, 43200, null]);
  });
});

describe('audit paging', () => {
  it('counts pages, at least one', () => {
    expect(pageCount(0, 20)).toBe(1);
    expect(pageCount(20, 20)).toBe(1);
    expect(pageCount(21, 20)).toBe(2);
    expect(pageCount(5, 0)).toBe(1);
  });

  it('knows the actions the server records', () => {
    expect(isAuditAction('archive_room')).toBe(true);
    expect(isAuditAction('drop_table')).toBe(false);
  });
});

describe("the server's refusals in the interface's language", () => {
  afterEach(() => {
    locale.value = 'en';
  });

  it('says a ban in either language, with its reason', () => {
    locale.value = 'en';
    expect(serverText('该账号已被封禁，原因：spam')).toBe('This account is banned. Reason: spam');
    expect(serverText('该账号已被封禁，至 2026-12-05T10:00:00Z 解封')).toMatch(/^This account is banned until .*2026.*\.$/);
    locale.value = 'zh';
    expect(serverText('该账号已被封禁，原因：刷屏')).toBe('该账号已被封禁。原因：刷屏');
  });

  it('gives the recall and admin refusals in English, numbers and names included', () => {
    locale.value = 'en';
    expect(serverText('只能撤回自己的消息')).toBe('You can only recall your own messages');
    expect(serverText('消息发出已超过 2 分钟，不能撤回')).toBe('Messages can only be recalled within 2 min of sending');
    expect(serverText('消息发出已超过 90 秒，不能撤回')).toBe('Messages can only be recalled within 90 s of sending');
    expect(serverText('房间 lobby_2 已存在')).toBe('Room lobby_2 already exists');
    expect(serverText('房间 id 只能由 1 到 32 个字母、数字或下划线组成')).toBe('A room id is 1–32 letters, digits or _');
    expect(serverText('这个房间已归档，不能再发送消息')).toBe('This room is archived: it takes no new messages');
    expect(serverText('something new')).toBe('something new');
    locale.value = 'zh';
    expect(serverText('只能撤回自己的消息')).toBe('只能撤回自己的消息');
  });
});
