import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { isLadingError } from '../errors.js';
import type { FetchOptions } from '../content/interfaces.js';
import { MemoryStore } from '../content/memory.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { buildImageManifest } from '../oci/manifest.js';
import { Annotation, EmptyJSON, MediaType } from '../oci/mediatype.js';
import { pullFiles } from './pull.js';
import { ustar } from '../../test/support/tar.js';

const EMPTY: Descriptor = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };

async function put(store: MemoryStore, data: Buffer, mediaType: string = MediaType.ImageLayer): Promise<Descriptor> {
  const desc = { mediaType, digest: digestOf(data), size: data.length };
  await store.push(desc, Readable.from([data]));
  return desc;
}

/** An artifact of the given layers, tagged v1. */
async function artifact(store: MemoryStore, layers: Descriptor[]): Promise<Descriptor> {
  await put(store, Buffer.from('{}'), EmptyJSON.mediaType);
  const built = buildImageManifest({ config: EMPTY, layers, artifactType: 'application/vnd.example' });
  await store.push(built.descriptor, Readable.from([built.bytes]));
  await store.tag(built.descriptor, 'v1');
  return built.descriptor;
}

const titled = (d: Descriptor, title: string, unpack = false): Descriptor => ({
  ...d,
  annotations: { [Annotation.Title]: title, ...(unpack ? { [Annotation.OrasUnpack]: 'true' } : {}) },
});


async function home(): Promise<{ base: string; out: string; victim: string; done: () => Promise<void> }> {
  const base = await mkdtemp(join(tmpdir(), 'lading-pull-'));
  await mkdir(join(base, '.ssh'));
  const victim = join(base, '.ssh', 'authorized_keys');
  await writeFile(victim, 'owner key');
  return { base, out: base, victim, done: () => rm(base, { recursive: true, force: true }) };
}

test('a title inside another title is refused before anything is fetched', async () => {
  const store = new MemoryStore();
  const a = await put(store, Buffer.from('a'));
  const b = await put(store, Buffer.from('b'));
  await artifact(store, [titled(a, 'd'), titled(b, 'd/x')]);
  const h = await home();
  try {
    await assert.rejects(pullFiles(store, 'v1', h.out), (e: unknown) => isLadingError(e, 'E_UNSAFE_PATH'));
    assert.deepEqual((await readdir(h.base)).sort(), ['.ssh']);
  } finally {
    await h.done();
  }
});

test('a directory layer whose link leaves its own directory is refused; the file beside it is untouched', async () => {
  const store = new MemoryStore();
  const dir = await put(store, gzipSync(ustar([{ name: 'd/l', type: '2', link: '../.ssh', mode: 0o777 }])), MediaType.ImageLayerGzip);
  const key = await put(store, Buffer.from('attacker key'));
  await artifact(store, [titled(dir, 'd', true), titled(key, 'e/authorized_keys')]);
  const h = await home();
  try {
    await assert.rejects(pullFiles(store, 'v1', h.out, { concurrency: 1 }), (e: unknown) => isLadingError(e, 'E_UNSAFE_PATH'));
    assert.equal(await readFile(h.victim, 'utf8'), 'owner key');
    assert.deepEqual((await readdir(h.base)).sort(), ['.ssh']);
  } finally {
    await h.done();
  }
});

test('when one layer fails, the others are stopped and nothing is left in the output directory', async () => {
  const store = new MemoryStore();
  const good = await put(store, Buffer.from('fine'));
  const slow = await put(store, Buffer.alloc(64 * 1024, 1));
  const root = await artifact(store, [titled(good, 'good.txt'), titled(slow, 'slow.bin')]);
  let slowAborted = false;
  // The slow layer sends its first bytes and then waits for ever, unless its transfer is aborted; the
  // good layer's bytes are corrupted on the way, which fails the pull.
  const target = Object.create(store) as MemoryStore;
  target.fetch = async (desc: Descriptor, opts: FetchOptions = {}) => {
    if (desc.digest === slow.digest) {
      const stalled = new Readable({ read() {} });
      stalled.push(Buffer.alloc(1024, 1));
      opts.signal?.addEventListener('abort', () => {
        slowAborted = true;
        stalled.destroy(new Error('aborted'));
      });
      return stalled;
    }
    if (desc.digest === good.digest) return Readable.from([Buffer.from('FINE')]).pipe(new (await import('../content/verify.js')).VerifyingStream(desc));
    return store.fetch(desc, opts);
  };
  const h = await home();
  try {
    await assert.rejects(pullFiles(target, root.digest, h.out), (e: unknown) => isLadingError(e, 'E_DIGEST_MISMATCH'));
    assert.ok(slowAborted, 'the stalled transfer was aborted');
    assert.deepEqual((await readdir(h.base)).sort(), ['.ssh']);
  } finally {
    await h.done();
  }
});

test('layers without a title are reported, not written', async () => {
  const store = new MemoryStore();
  const named = await put(store, Buffer.from('named'));
  const anonymous = await put(store, Buffer.from('anonymous'));
  await artifact(store, [titled(named, 'n.txt'), anonymous]);
  const h = await home();
  try {
    const r = await pullFiles(store, 'v1', h.out);
    assert.deepEqual(r.files.map((f) => f.title), ['n.txt']);
    assert.deepEqual(r.skipped.map((d) => d.digest), [anonymous.digest]);
    assert.equal(await readFile(join(h.out, 'n.txt'), 'utf8'), 'named');
  } finally {
    await h.done();
  }
});
