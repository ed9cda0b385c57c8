/** One command measured under GNU time: wall time and peak RSS, for the benchmarks that compare processes. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

export const TIME_BIN = '/usr/bin/time';
/** How much of a child's stdout and stderr is kept, for results and error messages. */
export const OUTPUT_KEEP = 64 * 1024;

export interface Measured {
  wallS: number;
  rssKiB: number;
  stdout: string;
  stderr: string;
}

/** The measured child running now, if any, so that an exit or Ctrl-C can stop it. */
let current: ChildProcess | undefined;

export function killGroup(child: ChildProcess): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}

/** Stops the child being measured, if one is running (for exit and signal handlers). */
export function stopMeasured(): void {
  if (current) killGroup(current);
}

/**
 * Runs one command under GNU time; resolves with its wall time and peak RSS, rejects on a non-zero exit.
 * `timeoutMs` (10 minutes unless told) bounds it: a hung tool is a failure of the benchmark, not a slow result.
 */
export async function measure(
  cmd: string,
  args: string[],
  opts: { cwd?: string; env?: NodeJS.ProcessEnv; scratch: string; timeoutMs?: number },
): Promise<Measured> {
  const rssFile = join(opts.scratch, `rss-${randomBytes(4).toString('hex')}`);
  const t0 = performance.now();
  const child = spawn(TIME_BIN, ['-f', '%M', '-o', rssFile, cmd, ...args], {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group, so that a timeout or Ctrl-C stops the tool under GNU time too.
    detached: true,
  });
  current = child;
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout = (stdout + c.toString('utf8')).slice(-OUTPUT_KEEP)));
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString('utf8')).slice(-OUTPUT_KEEP)));
  const timer = setTimeout(() => killGroup(child), opts.timeoutMs ?? 10 * 60_000);
  const code = await new Promise<number | null>((res, rej) => {
    child.once('error', rej);
    child.once('close', (c) => res(c));
  }).finally(() => {
    clearTimeout(timer);
    current = undefined;
  });
  const wallS = (performance.now() - t0) / 1000;
  let rssKiB = NaN;
  try {
    // GNU time writes "Command exited with non-zero status N" before the figure when the command fails.
    const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
    rssKiB = Number(lines[lines.length - 1]);
  } catch {
    /* reported below */
  }
  rmSync(rssFile, { force: true });
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
  if (!Number.isFinite(rssKiB)) throw new Error(`GNU time did not report the peak RSS of ${cmd}`);
  return { wallS, rssKiB, stdout, stderr };
}
