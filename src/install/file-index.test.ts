import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { fileIndex, sameFileIndex } from './file-index.js';

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'lading-fileindex-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

const sha = (b: string | Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

test('fileIndex lists regular files by POSIX path with sha256 and size, sorted, without following links', async () => {
  const dir = join(base, 'tree');
  const outside = join(base, 'outside');
  await mkdir(join(dir, 'a', 'b', 'c'), { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'secret');
  await writeFile(join(dir, 'z.txt'), 'zed');
  await writeFile(join(dir, 'a', 'empty'), '');
  const big = Buffer.alloc(3 * 1024 * 1024 + 7, 0x61);
  await writeFile(join(dir, 'a', 'b', 'c', 'big.bin'), big);
  await symlink(join(outside, 'secret'), join(dir, 'link-to-file'));
  await symlink(outside, join(dir, 'link-to-dir'));
  execFileSync('mkfifo', [join(dir, 'a', 'fifo')]);

  const idx = await fileIndex(dir);
  assert.deepEqual(Object.keys(idx.files), ['a/b/c/big.bin', 'a/empty', 'z.txt']);
  assert.deepEqual(idx.files['z.txt'], { digest: sha('zed'), size: 3 });
  assert.deepEqual(idx.files['a/empty'], { digest: sha(''), size: 0 });
  assert.deepEqual(idx.files['a/b/c/big.bin'], { digest: sha(big), size: big.length });
  assert.deepEqual(await fileIndex(dir, { fsync: true }), idx);
  assert.equal(JSON.stringify(await fileIndex(dir)), JSON.stringify(idx), 'deterministic JSON');
});

test('fileIndex of an empty directory, and of many files', async () => {
  const empty = join(base, 'empty');
  await mkdir(empty);
  assert.deepEqual(await fileIndex(empty), { files: {} });
  const many = join(base, 'many');
  await mkdir(many);
  for (let i = 0; i < 300; i++) await writeFile(join(many, `f${i}`), String(i));
  const idx = await fileIndex(many);
  assert.equal(Object.keys(idx.files).length, 300);
  assert.equal(idx.files.f42!.digest, sha('42'));
});

test('sameFileIndex compares paths, digests and sizes', () => {
  const a = { files: { x: { digest: 'sha256:1', size: 1 } } };
  assert.ok(sameFileIndex(a, { files: { x: { digest: 'sha256:1', size: 1 } } }));
  assert.ok(!sameFileIndex(a, { files: { x: { digest: 'sha256:2', size: 1 } } }));
  assert.ok(!sameFileIndex(a, { files: { y: { digest: 'sha256:1', size: 1 } } }));
  assert.ok(!sameFileIndex(a, { files: {} }));
});
