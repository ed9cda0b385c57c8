import cliProgress from 'cli-progress';
import { LadingError, isLadingError, toLadingError } from '../errors.js';
import type { ProgressEvent } from '../content/interfaces.js';

/** Prints a verb's result: JSON on --json, otherwise the human lines. */
export function emit(json: boolean | undefined, value: unknown, human: () => string | string[]): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
    return;
  }
  const text = human();
  const lines = Array.isArray(text) ? text : [text];
  if (lines.length) process.stdout.write(`${lines.join('\n')}\n`);
}

/** 2 for what the user typed (a bad flag, a malformed reference), 130 for an interruption, 1 for every refusal. */
export function exitCodeFor(err: LadingError): number {
  if (err.code === 'E_ABORTED') return 130;
  return err.code === 'E_USAGE' || err.code === 'E_REFERENCE_INVALID' ? 2 : 1;
}

/** Prints an error as message + hint (or JSON) and returns the exit code. */
export function reportError(err: unknown, json: boolean | undefined): number {
  const e = isLadingError(err) ? err : toLadingError(err);
  if (json) {
    process.stdout.write(`${JSON.stringify({ error: e.toJSON() }, null, 2)}\n`);
  } else {
    process.stderr.write(`Error: ${e.message}\n`);
    if (e.hint) process.stderr.write(`Hint: ${e.hint}\n`);
  }
  return exitCodeFor(e);
}

export function humanSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

/**
 * Progress bars on a terminal, nothing otherwise: the library reports events, only the CLI draws. Bars
 * go to stderr so that stdout stays the result.
 */
export class Progress {
  private readonly multibar: cliProgress.MultiBar | undefined;
  private readonly bars = new Map<string, cliProgress.SingleBar>();

  constructor(enabled: boolean) {
    if (!enabled || !process.stderr.isTTY) return;
    this.multibar = new cliProgress.MultiBar(
      {
        stream: process.stderr,
        format: ' {status} {name} [{bar}] {percentage}% {size}',
        hideCursor: true,
        clearOnComplete: false,
        stopOnComplete: false,
        fps: 10,
      },
      cliProgress.Presets.shades_classic,
    );
  }

  /** The listener to hand to the library, or undefined when no bars are drawn (so nothing is observed). */
  get listener(): ((e: ProgressEvent) => void) | undefined {
    return this.multibar ? this.onEvent : undefined;
  }

  readonly onEvent = (e: ProgressEvent): void => {
    if (!this.multibar) return;
    const key = e.desc.digest;
    let bar = this.bars.get(key);
    const name = (e.desc.annotations?.['org.opencontainers.image.title'] ?? e.desc.digest.slice(0, 19)).slice(0, 40).padEnd(40);
    if (!bar) {
      bar = this.multibar.create(Math.max(1, e.total), 0, { status: ' ', name, size: humanSize(e.total) });
      this.bars.set(key, bar);
    }
    const status = e.state === 'transfer' ? '↑' : e.state === 'exists' ? '=' : e.state === 'mounted' ? '⇄' : '✓';
    bar.update(e.state === 'transfer' ? e.bytes : Math.max(1, e.total), { status, name, size: humanSize(e.total) });
  };

  stop(): void {
    this.multibar?.stop();
  }
}

export { LadingError };
