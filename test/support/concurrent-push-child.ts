/**
 * A child process of the concurrency test: `concurrent-push-child.ts <host> <first> <count>` runs clients
 * first..first+count-1 at once. It prints "ready" once loaded, starts when it reads "go" on stdin (so that
 * every process starts together), prints "result <json>" per client and exits 0; on any failure it prints
 * the error on stderr and exits 1.
 */
import { createInterface } from 'node:readline';
import { runClient } from './concurrent-push.js';

const [host, firstRaw, countRaw] = process.argv.slice(2);
const first = Number(firstRaw);
const count = Number(countRaw);

async function main(): Promise<void> {
  if (!host || !Number.isInteger(first) || !Number.isInteger(count) || count < 1) throw new Error('usage: <host> <first> <count>');
  const go = new Promise<void>((resolve, reject) => {
    const rl = createInterface({ input: process.stdin });
    rl.on('line', (line) => {
      if (line.trim() === 'go') {
        resolve();
        rl.close();
      }
    });
    rl.on('close', () => reject(new Error('stdin closed before "go"')));
  });
  process.stdout.write('ready\n');
  await go;
  const results = await Promise.all(Array.from({ length: count }, (_, k) => runClient(host, first + k)));
  for (const r of results) process.stdout.write(`result ${JSON.stringify(r)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
