/**
 * Child processes for the server concurrency and crash tests: TypeScript scripts run through tsx, their
 * stdout read line by line, and `lading serve` itself as a child that a test can SIGKILL by its PID.
 * Every child started here is remembered until it has exited, so that a test's `after` can kill what is left.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const TSX = import.meta.resolve('tsx');
const CLI = join(REPO_ROOT, 'src', 'cli', 'main.ts');
const STDERR_KEEP = 64 * 1024;

const live = new Set<ChildProcess>();

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface LineChild {
  proc: ChildProcess;
  pid: number;
  /** The first stdout line starting with `prefix` (already seen or still to come); rejects on exit or after `timeoutMs`. */
  line(prefix: string, timeoutMs?: number): Promise<string>;
  /** Every stdout line so far. */
  lines(): string[];
  stderr(): string;
  /** Resolves once the process has exited and its pipes are closed. */
  exited: Promise<Exit>;
  /** SIGKILL by PID, then waits for the exit. */
  kill(): Promise<Exit>;
}

/** Runs `node --import tsx <script> ...args` (or the lading CLI with `cli: true`). */
export function spawnTs(script: string, args: string[], opts: { cli?: boolean } = {}): LineChild {
  const entry = opts.cli ? CLI : script;
  const proc = spawn(process.execPath, ['--import', TSX, entry, ...args], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(proc);
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString('utf8')).slice(-STDERR_KEEP);
  });
  const seen: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void }[] = [];
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    seen.push(l);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (l.startsWith(waiters[i]!.prefix)) waiters.splice(i, 1)[0]!.resolve(l);
    }
  });
  let done = false;
  const exited = new Promise<Exit>((resolveExit) => {
    proc.on('close', (code, signal) => {
      done = true;
      live.delete(proc);
      resolveExit({ code, signal });
    });
    proc.on('error', () => {
      // spawn failures end in 'close' as well; this only keeps them from being thrown.
    });
  });
  const child: LineChild = {
    proc,
    pid: proc.pid!,
    lines: () => [...seen],
    stderr: () => stderr,
    exited,
    line(prefix, timeoutMs = 20_000) {
      const already = seen.find((l) => l.startsWith(prefix));
      if (already !== undefined) return Promise.resolve(already);
      return new Promise<string>((resolveLine, reject) => {
        const waiter = {
          prefix,
          resolve: (l: string) => {
            clearTimeout(timer);
            resolveLine(l);
          },
        };
        waiters.push(waiter);
        // A bound on how long the child may take, not a synchronisation point.
        const timer = setTimeout(() => fail(`no line "${prefix}…" within ${timeoutMs} ms`), timeoutMs);
        const fail = (why: string): void => {
          clearTimeout(timer);
          const at = waiters.indexOf(waiter);
          if (at >= 0) waiters.splice(at, 1);
          reject(new Error(`${why}; stderr:\n${stderr.trim() || '(empty)'}`));
        };
        exited.then((e) => {
          if (waiters.includes(waiter)) fail(`child exited (code ${e.code}, signal ${e.signal}) before a line "${prefix}…"`);
        });
      });
    },
    async kill() {
      if (!done && proc.exitCode === null && proc.signalCode === null) {
        try {
          process.kill(proc.pid!, 'SIGKILL');
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
        }
      }
      return exited;
    },
  };
  return child;
}

/** SIGKILLs (by PID) every child started here that has not exited yet, and waits for them. */
export async function killAllChildren(): Promise<void> {
  const waits: Promise<unknown>[] = [];
  for (const proc of [...live]) {
    if (proc.exitCode === null && proc.signalCode === null) {
      try {
        process.kill(proc.pid!, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    waits.push(new Promise((r) => (proc.exitCode !== null || proc.signalCode !== null ? r(undefined) : proc.once('close', r))));
  }
  await Promise.all(waits);
}

export interface ServeChild extends LineChild {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
}

/**
 * `lading serve --addr 127.0.0.1:0 --root <root> --json` as a child process, once it has printed where it
 * listens. `extra` flags come last, so they win (`--log-level info` over the default `warn`).
 */
export async function startServeChild(root: string, extra: string[] = []): Promise<ServeChild> {
  const child = spawnTs('', ['serve', '--addr', '127.0.0.1:0', '--root', root, '--json', '--log-level', 'warn', ...extra], { cli: true });
  try {
    // --json prints the address as indented JSON: the "url" line is the one that matters.
    const line = await child.line('  "url": ', 20_000);
    const url = (JSON.parse(`{${line.trim().replace(/,$/, '')}}`) as { url: string }).url;
    const host = new URL(url).host;
    if (!/^127\.0\.0\.1:\d+$/.test(host)) throw new Error(`lading serve listens on ${url}, not on loopback`);
    return Object.assign(child, { url, host });
  } catch (err) {
    await child.kill();
    throw err;
  }
}
