/** What both benchmarks need: settings, inputs, hashing, and which lading CLI to measure. */
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const MiB = 1024 * 1024;

export function intEnv(name: string, fallback: number, min: number, max: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min || n > max) throw new Error(`${name} must be a whole number from ${min} to ${max}, not "${raw}"`);
  return n;
}

export function syncDisks(): void {
  spawnSync('sync', [], { stdio: 'ignore', timeout: 120_000 });
}

/** openssl's sha256 is the fastest hasher at hand (about 2.5x coreutils' sha256sum on these machines). */
export const HASH_ARGS = ['dgst', '-sha256', '-r'];

export function sha256Hex(path: string): string {
  const r = spawnSync('openssl', [...HASH_ARGS, path], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`openssl dgst ${path} failed: ${r.stderr}`);
  return r.stdout.split(' ')[0]!;
}

/** 1 MiB of random bytes, repeated with a counter in every block so that nothing compresses or dedupes. */
export function makeFile(path: string, sizeMiB: number): void {
  const block = randomBytes(MiB);
  const fd = openSync(path, 'w');
  try {
    for (let i = 0; i < sizeMiB; i++) {
      block.writeBigUInt64LE(BigInt(i), 0);
      block.writeBigUInt64LE((BigInt(i) * 0x9e3779b97f4a7c15n) & 0xffffffffffffffffn, MiB / 2);
      let off = 0;
      while (off < MiB) off += writeSync(fd, block, off, MiB - off);
    }
  } finally {
    closeSync(fd);
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export const mb = (kib: number): number => (kib * 1024) / 1e6;

/** Source files changed after `since` (a build from before them would measure old code). */
function newerSources(dir: string, since: number, depth = 0): string[] {
  if (depth > 16) return [];
  const out: string[] = [];
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) out.push(...newerSources(path, since, depth + 1));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.test.ts') && statSync(path).mtimeMs > since) out.push(path);
  }
  return out;
}

/**
 * The compiled CLI to measure: dist/ when it is newer than every source file (or `mode` is 'dist'), else
 * a throw-away build in `buildDir` (the compiled CLI starts like an installed one; tsx adds ~0.3 s and
 * ~35 MB). Undefined when no build came out, so the caller can fall back to tsx or give up.
 */
export function compiledCli(buildDir: string, mode: string): { main: string; mode: string } | undefined {
  const dist = join(REPO_ROOT, 'dist', 'cli', 'main.js');
  const stale = existsSync(dist) ? newerSources(join(REPO_ROOT, 'src'), statSync(dist).mtimeMs) : [];
  if (mode === 'dist' || (mode === 'auto' && existsSync(dist) && stale.length === 0)) {
    if (!existsSync(dist)) throw new Error('LADING_BENCH_CLI=dist but dist/cli/main.js does not exist (npm run build)');
    return { main: dist, mode: `dist (node dist/cli/main.js)${stale.length ? `, OLDER than ${stale.length} file(s) in src/` : ''}` };
  }
  // tsc emits even when the tree has type errors; what matters is that cli/main.js comes out.
  spawnSync(join(REPO_ROOT, 'node_modules', '.bin', 'tsc'), ['-p', join(REPO_ROOT, 'tsconfig.build.json'), '--outDir', buildDir, '--declaration', 'false', '--sourceMap', 'false', '--incremental', 'false'], {
    cwd: REPO_ROOT,
    stdio: 'ignore',
    timeout: 300_000,
  });
  const built = join(buildDir, 'cli', 'main.js');
  return existsSync(built) ? { main: built, mode: `tsc build of src/ (node ${join('bench', basename(buildDir), 'cli', 'main.js')})` } : undefined;
}

/** Runs `cleanup` when the benchmark exits, and on SIGINT/SIGTERM before exiting 130. */
export function cleanupOnExit(cleanup: () => void): void {
  process.once('exit', cleanup);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      cleanup();
      process.exit(130);
    });
  }
}
