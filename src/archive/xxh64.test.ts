/** XXH64 against the reference vectors, in every chunking, and against the checksums the zstd command writes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Xxh64, xxh64 } from './xxh64.js';

test('XXH64 reference vectors', () => {
  assert.equal(xxh64(Buffer.from('')), 0xef46db3751d8e999n);
  assert.equal(xxh64(Buffer.from('a')), 0xd24ec4f1a98c6e5bn);
  assert.equal(xxh64(Buffer.from('abc')), 0x44bc2cf5ad770999n);
});

test('XXH64 streamed in pieces of any size equals the one-shot digest', () => {
  const data = randomBytes(1000);
  for (const n of [0, 1, 5, 31, 32, 33, 100, 1000]) {
    const whole = xxh64(data.subarray(0, n));
    for (const step of [1, 3, 7, 32, 64]) {
      const h = new Xxh64();
      for (let i = 0; i < n; i += step) h.update(data.subarray(i, Math.min(n, i + step)));
      assert.equal(h.digest(), whole, `${n} bytes in pieces of ${step}`);
    }
  }
});

test('XXH64 low 32 bits equal the content checksums zstd writes', (t) => {
  for (const n of [0, 1, 4, 8, 31, 32, 33, 63, 64, 65, 4096, 200_000]) {
    const data = randomBytes(n);
    const z = spawnSync('zstd', ['-q', '-c', '--check'], { input: data });
    if (z.status !== 0 || z.error) return t.skip('no zstd command here');
    assert.equal(Number(xxh64(data) & 0xffffffffn), z.stdout.readUInt32LE(z.stdout.length - 4), `${n} bytes`);
  }
});
