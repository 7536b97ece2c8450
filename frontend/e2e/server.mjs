// Runs the real chatroom binary for the browser tests: a free port on 127.0.0.1, a fresh data dir, and a
// restart on the same port and data (the "server restarted mid-conversation" scenario).

import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const FRONTEND_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** $CHATROOM_BIN, else the debug build the repository's scripts/test makes. */
export function binary() {
  const bin = process.env.CHATROOM_BIN
    ? path.resolve(process.env.CHATROOM_BIN)
    : path.resolve(FRONTEND_DIR, '../target/debug/chatroom');
  if (!existsSync(bin)) {
    throw new Error(`no chatroom binary at ${bin}: run \`cargo build\` first, or set CHATROOM_BIN`);
  }
  return bin;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.unref();
    probe.on('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The environment for the binary: settings come from CHATROOM_* and DATABASE_URL too, so the caller's stay out. */
function cleanEnv() {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith('CHATROOM_') && k !== 'DATABASE_URL'),
  );
  env.RUST_LOG = 'info';
  env.NO_COLOR = '1';
  return env;
}

const running = new Set();
process.on('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

/**
 * A chatroom server. `start()` launches it (again, after `stop()`, on the same port and data dir);
 * `dispose()` stops it and removes its data. `staticDir` serves a client folder instead of the embedded
 * one ($E2E_STATIC_DIR: handy for trying `npm run build` output without rebuilding the binary).
 */
export class Server {
  constructor({ args = [], staticDir = process.env.E2E_STATIC_DIR } = {}) {
    this.extraArgs = args;
    this.staticDir = staticDir ? path.resolve(FRONTEND_DIR, staticDir) : undefined;
    this.dataDir = mkdtempSync(path.join(os.tmpdir(), 'chatroom-e2e-'));
    this.lines = [];
    this.child = null;
  }

  get url() {
    return `http://127.0.0.1:${this.port}`;
  }

  async start() {
    this.port ??= await freePort();
    const args = [
      '--host', '127.0.0.1',
      '--port', String(this.port),
      '--data-dir', this.dataDir,
      '--bcrypt-cost', '4',
      '--signup-per-hour', '1000',
      '--signin-failures', '1000',
      ...this.extraArgs,
    ];
    if (this.staticDir) args.push('--static-dir', this.staticDir);
    const child = spawn(binary(), args, { cwd: this.dataDir, env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    running.add(child);
    const keep = (chunk) => {
      for (const line of chunk.toString('utf8').split('\n')) if (line.trim()) this.lines.push(line);
      if (this.lines.length > 3000) this.lines.splice(0, this.lines.length - 3000);
    };
    child.stdout.on('data', keep);
    child.stderr.on('data', keep);
    this.exited = new Promise((resolve) =>
      child.on('exit', (code, signal) => {
        running.delete(child);
        if (this.child === child) this.child = null;
        resolve({ code, signal });
      }),
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (!this.child) throw new Error(`chatroom exited at start-up\n${this.tail(30)}`);
      try {
        const res = await fetch(`${this.url}/healthz`, { signal: AbortSignal.timeout(1000) });
        if (res.ok) return this;
      } catch {
        /* not listening yet */
      }
      if (Date.now() > deadline) throw new Error(`chatroom did not become healthy\n${this.tail(30)}`);
      await sleep(100);
    }
  }

  /** SIGTERM, as an operator's restart would; waits for the process to exit. */
  async stop() {
    const child = this.child;
    if (!child) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await this.exited;
    clearTimeout(timer);
  }

  /**
   * `chatroom admin <grant|revoke> NAME` on this server's data, as an operator would run it beside the
   * running server; the role holds from the user's next request. Resolves to what the command printed.
   */
  admin(verb, name) {
    const args = ['--data-dir', this.dataDir, 'admin', verb, name];
    return new Promise((resolve, reject) => {
      execFile(binary(), args, { cwd: this.dataDir, env: cleanEnv(), timeout: 30_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`chatroom admin ${verb} ${name} failed: ${err.message}\n${stderr}`));
        else resolve(stdout.trim());
      });
    });
  }

  async dispose() {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }

  tail(n) {
    return this.lines.filter((l) => !l.includes('sea_orm_migration')).slice(-n).join('\n');
  }
}
