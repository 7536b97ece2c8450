// Starts the real chatroom binary on 127.0.0.1 with a free port and a fresh data dir, and stops it.

import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** tests/compat */
export const COMPAT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** The server binary: $CHATROOM_BIN (relative to the current directory), else the debug build. */
export function binaryPath() {
  const fromEnv = process.env.CHATROOM_BIN;
  return fromEnv ? path.resolve(fromEnv) : path.resolve(COMPAT_DIR, '../../target/debug/chatroom');
}

/** A path inside tests/compat. */
export function compatPath(...parts) {
  return path.join(COMPAT_DIR, ...parts);
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Every live server of this process, killed on exit whatever happens. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) {
    try {
      child.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/**
 * Starts the server. Options: `staticDir`, `socketIoJs` (absolute paths).
 * Resolves to `{ url, port, log(), logTail(n), stop() }` once `GET /healthz` answers 200.
 */
export async function startServer({ staticDir, socketIoJs } = {}) {
  const bin = binaryPath();
  if (!existsSync(bin)) {
    throw new Error(
      `chatroom binary not found at ${bin}: build it first (cargo build) or set CHATROOM_BIN`,
    );
  }
  let lastError;
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(bin, { staticDir, socketIoJs });
    } catch (e) {
      lastError = e;
      // Only a lost race for the port is worth another try.
      if (!/in use|AddrInUse/i.test(String(e.message))) throw e;
    }
  }
  throw lastError;
}

async function startOnce(bin, { staticDir, socketIoJs }) {
  const port = await freePort();
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'chatroom-compat-'));
  const args = [
    '--host', '127.0.0.1',
    '--port', String(port),
    '--data-dir', dataDir,
    '--signup-per-hour', '10000',
    '--signin-failures', '10000',
    '--bcrypt-cost', '4',
  ];
  if (staticDir) args.push('--static-dir', staticDir);
  if (socketIoJs) args.push('--socket-io-js', socketIoJs);

  // The server reads its settings from CHATROOM_* and DATABASE_URL too: keep the caller's out.
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('CHATROOM_') || k === 'DATABASE_URL') continue;
    env[k] = v;
  }
  env.RUST_LOG ??= 'info';
  env.NO_COLOR = '1';

  const child = spawn(bin, args, { cwd: dataDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  const lines = [];
  const collect = (chunk) => {
    for (const line of chunk.toString('utf8').split('\n')) {
      if (line.trim()) lines.push(line);
    }
    if (lines.length > 2000) lines.splice(0, lines.length - 2000);
  };
  child.stdout.on('data', collect);
  child.stderr.on('data', collect);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      live.delete(child);
      resolve(exited);
    });
  });
  child.on('error', (e) => lines.push(`spawn error: ${e.message}`));

  const url = `http://127.0.0.1:${port}`;
  // Start-up migrations say nothing about a failure.
  const tail = (n) => lines.filter((l) => !l.includes('sea_orm_migration')).slice(-n).join('\n');
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => !exited && child.kill('SIGKILL'), 5000);
      await exitPromise;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) {
      rmSync(dataDir, { recursive: true, force: true });
      throw new Error(
        `chatroom exited during start-up (${JSON.stringify(exited)}): ${bin} ${args.join(' ')}\n` +
          `--- server output ---\n${tail(40)}`,
      );
    }
    try {
      const res = await fetch(`${url}/healthz`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      await stop();
      throw new Error(`chatroom did not answer GET /healthz with 200 within 30 s\n${tail(40)}`);
    }
    await sleep(100);
  }
  return { url, port, dataDir, args, log: () => lines.join('\n'), logTail: tail, stop };
}

/** The version in a package's package.json under node_modules. */
export function installedVersion(pkg) {
  return JSON.parse(readFileSync(compatPath('node_modules', pkg, 'package.json'), 'utf8')).version;
}
