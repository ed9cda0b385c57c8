import type { Command } from 'commander';
import { LadingError } from '../errors.js';

export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/** The options every verb accepts. */
export function withCommon(cmd: Command): Command {
  return cmd
    .option('--json', 'print the result (or the error) as JSON')
    .option('--plain-http', 'talk to the registry over plain HTTP (loopback registries always are)')
    .option('--registry-config <path>', 'Docker config.json holding credentials')
    .option('--concurrency <n>', 'blobs transferred at once');
}

export function parseAnnotations(pairs: string[]): Record<string, string> | undefined {
  if (pairs.length === 0) return undefined;
  const out: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new LadingError('E_USAGE', `annotation "${pair}" is not key=value`);
    out[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return out;
}
