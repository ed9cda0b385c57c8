// Child process for lock tests: increments a counter file `times` times, each under the lock.
import { readFile, writeFile } from 'node:fs/promises';
import { acquireFileLock } from '../../src/content/lock.js';

const [lockPath, counterPath, times] = process.argv.slice(2) as [string, string, string];
for (let i = 0; i < Number(times); i++) {
  const release = await acquireFileLock(lockPath, { timeoutMs: 20_000, staleMs: 2_000 });
  try {
    const n = Number(await readFile(counterPath, 'utf8'));
    // Yield between read and write, so that two holders at once would lose an increment.
    await new Promise((resolve) => setImmediate(resolve));
    await writeFile(counterPath, String(n + 1));
  } finally {
    await release();
  }
}
