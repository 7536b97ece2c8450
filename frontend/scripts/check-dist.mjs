// Checks that the committed build, dist/, is exactly what the sources build to: type-checks, builds into
// a temporary folder and compares every file byte for byte. The server embeds dist/ as it is committed,
// so a source change without `npm run build` (or a hand edit of dist/) would ship something untested.
//
// Run: npm ci && npm run check-dist

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const committed = path.join(root, 'dist');
const fresh = mkdtempSync(path.join(os.tmpdir(), 'chatroom-dist-'));

function files(dir, base = dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p, base) : [path.relative(base, p).split(path.sep).join('/')];
  });
}

try {
  const run = (script, args) =>
    execFileSync(process.execPath, [path.join(root, 'node_modules', script), ...args], { cwd: root, stdio: 'inherit' });
  run('vue-tsc/bin/vue-tsc.js', ['--noEmit']);
  run('vite/bin/vite.js', ['build', '--logLevel', 'warn', '--outDir', fresh, '--emptyOutDir']);

  const want = files(fresh).sort();
  const have = files(committed).sort();
  const problems = [
    ...want.filter((f) => !have.includes(f)).map((f) => `missing from dist/: ${f}`),
    ...have.filter((f) => !want.includes(f)).map((f) => `in dist/ but not built from the sources: ${f}`),
    ...want
      .filter((f) => have.includes(f))
      .filter((f) => !readFileSync(path.join(fresh, f)).equals(readFileSync(path.join(committed, f))))
      .map((f) => `differs from a fresh build: dist/${f}`),
  ];
  if (problems.length) {
    console.error(`frontend/dist does not match its sources:\n  ${problems.join('\n  ')}`);
    console.error('Run `npm run build` in frontend/ and commit dist/ with the source change.');
    process.exitCode = 1;
  } else {
    console.log(`frontend/dist matches a fresh build of the sources (${want.length} files)`);
  }
} finally {
  rmSync(fresh, { recursive: true, force: true });
}
