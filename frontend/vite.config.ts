import { defineConfig } from 'vite';
import vue from '@vitejs/plugin-vue';

// The server embeds dist/ at compile time (see README.md). `npm run dev` serves the sources with hot reload
// and forwards the API, uploads and Socket.IO to a chatroom server on 127.0.0.1:9090 (`cargo run`).
const server = process.env.CHATROOM_DEV_SERVER ?? 'http://127.0.0.1:9090';

export default defineConfig({
  plugins: [vue()],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    // One small app: a single script and stylesheet, no source maps shipped in the binary.
    sourcemap: false,
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  server: {
    port: 5173,
    proxy: {
      '/api': server,
      '/static/files': server,
      '/avatar': server,
      '/socket.io': { target: server, ws: true },
    },
  },
});
