import { defineConfig } from 'vitest/config';

// Unit tests of the client's pure logic (timelines, catch-up, text, room ids); the browser tests are in e2e/.
export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
