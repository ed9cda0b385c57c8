import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLadingError } from '../errors.js';
import { acquireFileLock } from './lock.js';

const CHILD = join(import.meta.dirname, '..', '..', 'test', 'support', 'lock-child.ts');

function child(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), CHILD, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    c.stderr.on('data', (d) => (err += d));
    c.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`child exited ${code}: ${err}`))));
  });
}

test('processes racing past a dead holder\'s lock never hold it at once', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (let trial = 0; trial < 3; trial++) {
    const lock = join(dir, `l${trial}`);
    const counter = join(dir, `c${trial}`);
    await writeFile(counter, '0');
    // What a process killed while holding the lock leaves behind.
    await writeFile(lock, JSON.stringify({ pid: 2 ** 22 + 12345, host: hostname(), nonce: 'dead' }));
    await Promise.all(Array.from({ length: 6 }, () => child([lock, counter, '5'])));
    assert.equal(await readFile(counter, 'utf8'), '30', `trial ${trial}: an increment was lost`);
  }
});

test('a held lock is waited for, then taken; a lock that cannot be read fails fast', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-lock-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'lock');
  const release = await acquireFileLock(path);
  await assert.rejects(acquireFileLock(path, { timeoutMs: 100 }), (e: unknown) => isLadingError(e, 'E_IO'));
  await release();
  const again = await acquireFileLock(path, { timeoutMs: 1000 });
  await again();
  await mkdir(join(dir, 'weird'));
  await assert.rejects(acquireFileLock(join(dir, 'weird'), { timeoutMs: 60_000 }), (e: unknown) => isLadingError(e));
});
