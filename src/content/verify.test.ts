import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { isLadingError, type LadingError } from '../errors.js';
import { digestOf } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { writeStreamAtomic } from './atomic.js';
import { VerifyingStream, isVerifiedFor, verified } from './verify.js';

function descOf(data: Buffer, alg: 'sha256' | 'sha512' = 'sha256'): Descriptor {
  return { mediaType: 'application/octet-stream', digest: digestOf(data, alg), size: data.length };
}

/** Runs `chunks` through a verifying stream; returns what passed through and the error, if any. */
async function run(desc: Descriptor, chunks: Buffer[]): Promise<{ out: Buffer; err: unknown }> {
  const passed: Buffer[] = [];
  let err: unknown;
  try {
    await pipeline(
      Readable.from(chunks),
      new VerifyingStream(desc),
      new Writable({
        write(chunk: Buffer, _e, done) {
          passed.push(chunk);
          done();
        },
      }),
    );
  } catch (e) {
    err = e;
  }
  return { out: Buffer.concat(passed), err };
}

test('exact content passes through unchanged', async () => {
  const data = Buffer.from('hello, lading');
  const { out, err } = await run(descOf(data), [data.subarray(0, 5), data.subarray(5)]);
  assert.equal(err, undefined);
  assert.deepEqual(out, data);
});

test('empty content with the empty digest verifies', async () => {
  const { err } = await run(descOf(Buffer.alloc(0)), []);
  assert.equal(err, undefined);
});

test('short content fails with E_SIZE_MISMATCH', async () => {
  const data = Buffer.from('0123456789');
  const { err } = await run(descOf(data), [data.subarray(0, 7)]);
  assert.ok(isLadingError(err, 'E_SIZE_MISMATCH'), String(err));
  assert.equal((err as LadingError).details?.actual, 7);
});

test('overrun fails before the extra bytes pass through', async () => {
  const data = Buffer.from('0123456789');
  const extra = Buffer.from('EXTRA');
  const { out, err } = await run(descOf(data), [data, extra]);
  assert.ok(isLadingError(err, 'E_SIZE_MISMATCH'), String(err));
  assert.ok(!out.includes(extra), 'bytes beyond the size must not reach the consumer');
  assert.ok(out.length <= data.length);
});

test('overrun inside one chunk passes none of that chunk', async () => {
  const data = Buffer.from('0123456789');
  const { out, err } = await run(descOf(data), [Buffer.concat([data, Buffer.from('!')])]);
  assert.ok(isLadingError(err, 'E_SIZE_MISMATCH'));
  assert.equal(out.length, 0);
});

test('right size, wrong digest fails with E_DIGEST_MISMATCH', async () => {
  const data = Buffer.from('the real bytes');
  const other = Buffer.from('the fake bytes');
  const { err } = await run(descOf(data), [other]);
  assert.ok(isLadingError(err, 'E_DIGEST_MISMATCH'), String(err));
  assert.equal((err as LadingError).details?.actual, digestOf(other));
});

test('sha512 digests are verified', async () => {
  const data = Buffer.from('sha512 content');
  assert.equal((await run(descOf(data, 'sha512'), [data])).err, undefined);
  const wrong = { ...descOf(data, 'sha512'), digest: digestOf(Buffer.from('other content!'), 'sha512') };
  assert.ok(isLadingError((await run(wrong, [data])).err, 'E_DIGEST_MISMATCH'));
});

test('verified() marks its stream and does not wrap a stream already verifying the same descriptor', () => {
  const data = Buffer.from('x');
  const desc = descOf(data);
  const v = verified(Readable.from([data]), desc);
  assert.ok(isVerifiedFor(v, desc));
  assert.equal(verified(v, desc), v);
  assert.ok(!isVerifiedFor(v, { ...desc, size: 2 }));
  assert.ok(!isVerifiedFor(Readable.from([data]), desc));
  v.destroy();
});

test('verified() fails when its source fails', async () => {
  const data = Buffer.from('abc');
  const source = new Readable({
    read() {
      this.destroy(new Error('source broke'));
    },
  });
  await assert.rejects(pipeline(verified(source, descOf(data)), new Writable({ write: (_c, _e, d) => d() })), /source broke/);
});

/** Yields `first`, then fails when asked for more: a source that breaks after bytes were written. */
function breakingSource(first: Buffer): Readable {
  let sent = false;
  return new Readable({
    read() {
      if (!sent) {
        sent = true;
        this.push(first);
      } else {
        this.destroy(new Error('connection reset'));
      }
    },
  });
}

test('writeStreamAtomic leaves neither file nor temp file when the stream fails', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-verify-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = join(dir, 'blob');
  await assert.rejects(writeStreamAtomic(target, breakingSource(Buffer.alloc(100_000, 1))), /connection reset/);
  assert.deepEqual(await readdir(dir), []);
});

test('writeStreamAtomic leaves nothing when a verifying stream finds a mismatch', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-verify-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const data = Buffer.alloc(200_000, 7);
  const desc = { ...descOf(data), digest: digestOf(Buffer.from('something else')) };
  const v = new VerifyingStream(desc);
  const done = writeStreamAtomic(join(dir, 'blob'), v);
  // Fed only after writeStreamAtomic holds the stream, so the mismatch reaches its pipeline.
  Readable.from([data.subarray(0, 100_000), data.subarray(100_000)]).pipe(v);
  await assert.rejects(done, (err: unknown) => isLadingError(err, 'E_DIGEST_MISMATCH'));
  assert.deepEqual(await readdir(dir), []);
});

test('writeStreamAtomic keeps the old file when the stream fails', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-verify-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const target = join(dir, 'blob');
  const good = Buffer.from('good');
  await writeStreamAtomic(target, Readable.from([good]));
  await assert.rejects(writeStreamAtomic(target, breakingSource(Buffer.from('partial'))));
  assert.deepEqual(await readFile(target), good);
  assert.deepEqual(await readdir(dir), ['blob']);
});
