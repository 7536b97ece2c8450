// HTTP calls a user's client makes: sign-up and room history.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';

export const PASSWORD = 'compat-pw-1';

let counter = 0;

/** A fresh user name of at most 15 characters; `prefix` may be non-ASCII. */
export function uniqueName(prefix = 'u') {
  counter += 1;
  const suffix = `${counter.toString(36)}${randomBytes(4).toString('hex')}`;
  return `${prefix}${suffix}`.slice(0, 15);
}

/**
 * Signs a new user up. Resolves to `{ name, id, src, token, cookie }` with the values the server
 * sent back (the test then checks those, never what it asked for).
 */
export async function signup(base, prefix = 'u') {
  const name = uniqueName(prefix);
  const src = '/avatar/default.svg';
  const res = await fetch(`${base}/api/user/signup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ name, password: PASSWORD, src }),
  });
  const text = await res.text();
  assert.equal(res.status, 200, `POST /api/user/signup ${name}: HTTP ${res.status} ${text}`);
  const body = JSON.parse(text);
  assert.equal(body.errno, 0, `POST /api/user/signup ${name}: ${text}`);
  assert.equal(typeof body.token, 'string', `signup reply has no token: ${text}`);
  assert.equal(body.userInfo?.name, name, `signup reply names another user: ${text}`);
  const setCookie = res.headers.get('set-cookie') ?? '';
  const cookie = /chatroom_token=([^;]+)/.exec(setCookie)?.[1];
  return {
    name: body.userInfo.name,
    id: body.userInfo.id,
    src: body.userInfo.src,
    token: body.token,
    cookie,
  };
}

/** The newest page of a room's history, as a user reloading the page would get it. */
export async function history(base, roomid, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const res = await fetch(`${base}/api/message/v2/history?roomid=${encodeURIComponent(roomid)}`, {
    headers,
  });
  const text = await res.text();
  assert.equal(res.status, 200, `GET /api/message/v2/history?roomid=${roomid}: ${res.status} ${text}`);
  const body = JSON.parse(text);
  assert.equal(body.errno, 0, `history: ${text}`);
  assert.ok(Array.isArray(body.data?.data), `history has no data.data list: ${text}`);
  return body.data.data;
}
