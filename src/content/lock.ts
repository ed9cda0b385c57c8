import { randomBytes } from 'node:crypto';
import { open, readFile, rm, stat, unlink, utimes } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { LadingError, toLadingError } from '../errors.js';

export interface FileLockOptions {
  /** Give up waiting after this long. */
  timeoutMs?: number;
  /** A lock not refreshed for this long is broken even when its holder seems alive (hung, pid reused). */
  staleMs?: number;
  /**
   * For a lock whose holder is a live process on this host (one that can be checked): broken only once
   * unrefreshed for this long (default staleMs). Infinity: such a lock is never broken by age, only when
   * its holder is gone — for locks held across long work by a process that may be paused (SIGSTOP, suspend).
   * Holders on other hosts, or locks that cannot be read, are judged by staleMs alone.
   */
  liveStaleMs?: number;
  /**
   * Break a lock that names this process (pid and host) but that this process does not hold: an earlier
   * process with the same pid left it (a restarted container's PID 1, say). Off by default.
   */
  breakOwnPidLocks?: boolean;
  /** Names what the lock protects, for the error a timeout raises. */
  what?: string;
}

interface LockInfo {
  pid: number;
  host: string;
  nonce: string;
}

/** At most this many tries, whatever the clock says: the loop is bounded in count as well as time. */
const MAX_ATTEMPTS = 20_000;
/** The break guard is held for a few file operations; one older than this was left by a crash. */
const GUARD_STALE_MS = 5_000;
/**
 * Nonces of the locks this process holds or is taking. A lock that names this process's pid (on this host)
 * with a nonce not in here was left by an earlier process that had the same pid (a restarted container's
 * PID 1, say): its holder is gone (breakOwnPidLocks).
 */
const heldHere = new Set<string>();

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/**
 * An exclusive lock between processes: a file created with O_EXCL that names its holder, refreshed while
 * held. Every removal of the lock file — a release, or breaking a lock whose holder died or went stale —
 * happens under a second, short-lived guard file and after re-reading the lock there, so a remover can
 * never delete a lock that a live process has just taken.
 */
export async function acquireFileLock(path: string, opts: FileLockOptions = {}): Promise<() => Promise<void>> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const staleMs = opts.staleMs ?? 20_000;
  const stale: Staleness = { staleMs, liveStaleMs: opts.liveStaleMs ?? staleMs, ownPid: opts.breakOwnPidLocks === true };
  const mine: LockInfo = { pid: process.pid, host: hostname(), nonce: randomBytes(12).toString('hex') };
  const content = JSON.stringify(mine);
  const deadline = Date.now() + timeoutMs;
  let backoff = 1;
  heldHere.add(mine.nonce);
  try {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      if (await tryCreate(path, content)) return holding(path, content, staleMs, mine.nonce);
      if (await breakIfStale(path, stale)) continue;
      if (Date.now() >= deadline) break;
      await delay(backoff + Math.random() * backoff);
      backoff = Math.min(backoff * 2, 25);
    }
  } catch (err) {
    heldHere.delete(mine.nonce);
    throw err;
  }
  heldHere.delete(mine.nonce);
  const holder = parseLock(await readFile(path, 'utf8').catch(() => ''));
  throw new LadingError('E_IO', `could not lock ${opts.what ?? path} within ${timeoutMs} ms`, {
    hint: `another process holds ${path}; if none does, remove that file`,
    details: { lock: path, holder: holder ?? null },
  });
}

async function tryCreate(path: string, content: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'wx', 0o644);
  } catch (err) {
    if (errnoOf(err) === 'EEXIST') return false;
    throw toLadingError(err);
  }
  try {
    await fh.writeFile(content);
  } catch (err) {
    await fh.close().catch(() => undefined);
    // Just created and still fresh: nobody else can have judged it stale, so it is ours to remove.
    await rm(path, { force: true });
    throw toLadingError(err);
  }
  await fh.close();
  return true;
}

/** Keeps the lock fresh while held; returns its release. */
function holding(path: string, content: string, staleMs: number, nonce: string): () => Promise<void> {
  const refresh = setInterval(() => {
    const now = new Date();
    utimes(path, now, now).catch(() => undefined);
  }, Math.max(50, Math.floor(staleMs / 3)));
  refresh.unref();
  return async () => {
    clearInterval(refresh);
    await underGuard(path, async () => {
      // Never remove a lock that is no longer ours (broken after we went stale, and taken since).
      const now = await readFile(path, 'utf8').catch(() => undefined);
      if (now === content) await unlink(path).catch(() => undefined);
    });
    heldHere.delete(nonce);
  };
}

/** Returns true when the lock is gone (broken here, or released meanwhile), so the caller retries at once. */
async function breakIfStale(path: string, stale: Staleness): Promise<boolean> {
  const seen = await snapshot(path);
  if (!seen) return true;
  if (!isStale(seen, stale)) return false;
  return (
    (await underGuard(path, async () => {
      // Under the guard nobody else removes the lock, so what is re-read here is what gets unlinked.
      const again = await snapshot(path);
      if (!again) return true;
      if (again.raw !== seen.raw || again.ino !== seen.ino || !isStale(again, stale)) return false;
      await unlink(path).catch((err) => {
        if (errnoOf(err) !== 'ENOENT') throw toLadingError(err);
      });
      return true;
    })) ?? false
  );
}

/** The lock's content and identity, read through one handle so that they belong together. */
async function snapshot(path: string): Promise<{ raw: string; ino: number; mtimeMs: number } | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    if (errnoOf(err) === 'ENOENT') return undefined;
    throw toLadingError(err);
  }
  try {
    const st = await fh.stat();
    return { raw: await fh.readFile('utf8'), ino: st.ino, mtimeMs: st.mtimeMs };
  } catch (err) {
    throw toLadingError(err);
  } finally {
    await fh.close();
  }
}

interface Staleness {
  staleMs: number;
  liveStaleMs: number;
  /** breakOwnPidLocks */
  ownPid: boolean;
}

function isStale(s: { raw: string; mtimeMs: number }, stale: Staleness): boolean {
  const info = parseLock(s.raw);
  const age = Date.now() - s.mtimeMs;
  if (info && info.host === hostname()) {
    const alive =
      info.pid === process.pid && stale.ownPid ? typeof info.nonce === 'string' && heldHere.has(info.nonce) : pidAlive(info.pid);
    if (!alive) return true;
    return age >= stale.liveStaleMs;
  }
  return age >= stale.staleMs;
}

/**
 * Runs `fn` holding `<path>.guard`, or returns undefined when the guard is busy (the caller tries
 * again later). A guard left by a crashed process is removed once it is clearly old.
 */
async function underGuard<T>(path: string, fn: () => Promise<T>): Promise<T | undefined> {
  const guard = `${path}.guard`;
  for (let attempt = 0; attempt < 2000; attempt++) {
    let fh;
    try {
      fh = await open(guard, 'wx', 0o644);
    } catch (err) {
      if (errnoOf(err) !== 'EEXIST') throw toLadingError(err);
      const age = await stat(guard).then((s) => Date.now() - s.mtimeMs, () => 0);
      if (age >= GUARD_STALE_MS) await rm(guard, { force: true });
      else await delay(1 + Math.random() * 4);
      continue;
    }
    await fh.close();
    try {
      return await fn();
    } finally {
      await rm(guard, { force: true });
    }
  }
  return undefined;
}

function parseLock(raw: string): LockInfo | undefined {
  try {
    const v = JSON.parse(raw) as Partial<LockInfo>;
    if (typeof v.pid === 'number' && typeof v.host === 'string') return v as LockInfo;
  } catch {
    /* a lock being written, or not ours: judged by age alone */
  }
  return undefined;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoOf(err) === 'EPERM';
  }
}
