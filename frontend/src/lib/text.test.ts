import { describe, expect, it } from 'vitest';

import { detectLocale } from './i18n';
import { parseRoute, href } from './router';
import { charCount, escapeHtml, newClientId, peerOf, plainText, privateRoom, safeImageUrl } from './text';

describe('message text', () => {
  it("undoes exactly the server's escaping, so markup reads as typed", () => {
    const typed = `<img src=x onerror="alert('x')"> & &amp; 你好 🎉`;
    expect(plainText(escapeHtml(typed))).toBe(typed);
    expect(plainText('&lt;b&gt;hi&lt;/b&gt; &amp;lt; &#39;')).toBe("<b>hi</b> &lt; '");
    expect(plainText('&nbsp;&copy;')).toBe('&nbsp;&copy;');
  });

  it('counts characters the way the server does', () => {
    expect(charCount('字🎉a')).toBe(3);
  });
});

describe('rooms', () => {
  it('names private rooms larger id first, comparing ids as strings', () => {
    expect(privateRoom('9', '10')).toBe('9-10');
    expect(privateRoom('10', '9')).toBe('9-10');
    expect(privateRoom('3', '12')).toBe('3-12');
    expect(peerOf('9-10', '10')).toBe('9');
    expect(peerOf('9-10', '7')).toBeUndefined();
  });
});

describe('client ids', () => {
  it('are 32 hex digits and differ', () => {
    const a = newClientId();
    expect(a).toMatch(/^[0-9a-f]{32}$/);
    expect(newClientId()).not.toBe(a);
  });
});

describe('image addresses', () => {
  it('allows the upload store, our own files and http(s) only', () => {
    expect(safeImageUrl('/static/files/1-a.png')).toBe('/static/files/1-a.png');
    expect(safeImageUrl('static/files/1-a.png?width=10')).toBe('/static/files/1-a.png?width=10');
    expect(safeImageUrl('//s3.example.com/avatar/1.jpeg')).toBe('//s3.example.com/avatar/1.jpeg');
    expect(safeImageUrl('https://example.com/a.png')).toBe('https://example.com/a.png');
    expect(safeImageUrl('javascript:alert(1)')).toBeUndefined();
    expect(safeImageUrl('data:image/svg+xml,<svg onload=alert(1)>')).toBeUndefined();
    expect(safeImageUrl('https://x.com/a" onerror="x')).toBeUndefined();
    expect(safeImageUrl('')).toBeUndefined();
  });
});

describe('language', () => {
  it('follows the first Chinese or English preference', () => {
    expect(detectLocale(['zh-TW', 'en'])).toBe('zh');
    expect(detectLocale(['fr-FR', 'en-GB', 'zh-CN'])).toBe('en');
    expect(detectLocale(['de'])).toBe('en');
    expect(detectLocale([])).toBe('en');
  });
});

describe('routes', () => {
  it('round-trip through the URL fragment', () => {
    for (const r of [
      { name: 'chat', roomid: '10-9' },
      { name: 'user', username: '小明 / x' },
      { name: 'search' },
      { name: 'me' },
      { name: 'admin' },
      { name: 'home' },
    ] as const) {
      expect(parseRoute(href(r))).toEqual(r);
    }
    expect(parseRoute('#/nowhere')).toEqual({ name: 'home' });
    expect(parseRoute('#/chat/%E0%A4%A')).toEqual({ name: 'chat', roomid: '%E0%A4%A' });
  });
});
