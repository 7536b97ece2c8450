// Hash routing: every screen has an address (`#/chat/room1`, `#/admin`), reloads and the back button work, and
// the server needs no fallback route: it only ever serves `/`.

import { ref } from 'vue';

export type Route =
  | { name: 'home' }
  | { name: 'chat'; roomid: string }
  | { name: 'search' }
  | { name: 'user'; username: string }
  | { name: 'me' }
  | { name: 'admin' };

export function parseRoute(hash: string): Route {
  const [, first, second] = hash.replace(/^#/, '').split('/');
  const arg = second === undefined ? '' : safeDecode(second);
  switch (first) {
    case 'chat':
      return arg ? { name: 'chat', roomid: arg } : { name: 'home' };
    case 'user':
      return arg ? { name: 'user', username: arg } : { name: 'home' };
    case 'search':
      return { name: 'search' };
    case 'me':
      return { name: 'me' };
    case 'admin':
      return { name: 'admin' };
    default:
      return { name: 'home' };
  }
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export function href(route: Route): string {
  switch (route.name) {
    case 'chat':
      return `#/chat/${encodeURIComponent(route.roomid)}`;
    case 'user':
      return `#/user/${encodeURIComponent(route.username)}`;
    case 'home':
      return '#/';
    default:
      return `#/${route.name}`;
  }
}

export const route = ref<Route>(parseRoute(typeof location === 'undefined' ? '' : location.hash));

if (typeof window !== 'undefined') {
  window.addEventListener('hashchange', () => {
    route.value = parseRoute(location.hash);
  });
}

export function go(to: Route): void {
  location.hash = href(to);
}
