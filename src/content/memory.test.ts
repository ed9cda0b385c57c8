import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { isLadingError } from '../errors.js';
import { digestOf } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { EmptyJSON, MediaType } from '../oci/mediatype.js';
import { MemoryStore } from './memory.js';

function blob(content: string, mediaType = 'application/octet-stream'): { desc: Descriptor; data: Buffer } {
  const data = Buffer.from(content);
  return { desc: { mediaType, digest: digestOf(data), size: data.length }, data };
}

function manifest(doc: object): { desc: Descriptor; data: Buffer } {
  return blob(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, ...doc }), MediaType.ImageManifest);
}

async function put(store: MemoryStore, b: { desc: Descriptor; data: Buffer }): Promise<void> {
  await store.push(b.desc, Readable.from([b.data]));
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

test('push, exists and fetch round-trip; fetch with an offset gives the tail', async () => {
  const store = new MemoryStore();
  const b = blob('hello memory');
  assert.equal(await store.exists(b.desc), false);
  await put(store, b);
  assert.equal(await store.exists(b.desc), true);
  assert.equal(await text(await store.fetch(b.desc)), 'hello memory');
  assert.equal(await text(await store.fetch(b.desc, { offset: 6 })), 'memory');
});

test('a push whose bytes do not match stores nothing', async () => {
  const store = new MemoryStore();
  const b = blob('right');
  await assert.rejects(store.push(b.desc, Readable.from([Buffer.from('wrong')])), (e: unknown) =>
    isLadingError(e, 'E_DIGEST_MISMATCH'),
  );
  await assert.rejects(store.push(b.desc, Readable.from([Buffer.from('right!')])), (e: unknown) =>
    isLadingError(e, 'E_SIZE_MISMATCH'),
  );
  assert.equal(await store.exists(b.desc), false);
  await assert.rejects(store.fetch(b.desc), (e: unknown) => isLadingError(e, 'E_NOT_FOUND') && /not in the memory/.test((e as Error).message));
});

test('fetch fails verification when the caller names a different size', async () => {
  const store = new MemoryStore();
  const b = blob('abc');
  await put(store, b);
  assert.equal(await store.exists({ ...b.desc, size: 4 }), false);
  await assert.rejects(text(await store.fetch({ ...b.desc, size: 4 })), (e: unknown) => isLadingError(e, 'E_SIZE_MISMATCH'));
});

test('progress is reported as bytes are consumed', async () => {
  const store = new MemoryStore();
  const b = blob('x'.repeat(1000));
  const seen: number[] = [];
  await store.push(b.desc, Readable.from([b.data.subarray(0, 400), b.data.subarray(400)]), { onProgress: (n) => seen.push(n) });
  assert.deepEqual(seen, [400, 1000]);
});

test('resolve accepts tags and digests; tag requires stored content', async () => {
  const store = new MemoryStore();
  const m = manifest({ config: EmptyJSON, layers: [] });
  await assert.rejects(store.tag(m.desc, 'v1'), (e: unknown) => isLadingError(e, 'E_NOT_FOUND'));
  await put(store, m);
  await store.tag(m.desc, 'v1');
  assert.deepEqual(await store.resolve('v1'), m.desc);
  assert.deepEqual(await store.resolve(m.desc.digest), m.desc);
  await assert.rejects(store.resolve('v2'), (e: unknown) => isLadingError(e, 'E_NOT_FOUND') && /v2/.test((e as Error).message));
  await assert.rejects(store.resolve('sha256:nothex'), (e: unknown) => isLadingError(e, 'E_DIGEST_INVALID'));
  await assert.rejects(store.tag(m.desc, '-bad'), (e: unknown) => isLadingError(e, 'E_REFERENCE_INVALID'));
});

test('tags are listed in lexical order, after `last`', async () => {
  const store = new MemoryStore();
  const m = manifest({ config: EmptyJSON, layers: [] });
  await put(store, m);
  for (const t of ['b', 'a', 'c', 'a']) await store.tag(m.desc, t);
  assert.deepEqual(await collect(store.tags()), ['a', 'b', 'c']);
  assert.deepEqual(await collect(store.tags({ last: 'a' })), ['b', 'c']);
});

test('referrers are found from pushed manifests with a subject, filtered by artifactType', async () => {
  const store = new MemoryStore();
  const subject = manifest({ config: EmptyJSON, layers: [] });
  await put(store, subject);
  const sig = manifest({
    artifactType: 'application/vnd.example.sig',
    config: EmptyJSON,
    layers: [],
    subject: subject.desc,
    annotations: { 'org.example': 'yes' },
  });
  const sbom = manifest({ config: { ...EmptyJSON, mediaType: 'application/vnd.example.sbom' }, layers: [], subject: subject.desc });
  const unrelated = manifest({ config: EmptyJSON, layers: [], annotations: { n: '1' } });
  for (const m of [sig, sbom, unrelated]) await put(store, m);

  const all = await collect(store.referrers(subject.desc));
  assert.deepEqual(all.map((d) => d.digest).sort(), [sig.desc.digest, sbom.desc.digest].sort());
  const sigs = await collect(store.referrers(subject.desc, 'application/vnd.example.sig'));
  assert.deepEqual(sigs, [{ ...sig.desc, artifactType: 'application/vnd.example.sig', annotations: { 'org.example': 'yes' } }]);
  const sboms = await collect(store.referrers(subject.desc, 'application/vnd.example.sbom'));
  assert.deepEqual(sboms.map((d) => d.digest), [sbom.desc.digest]);
  assert.deepEqual(await collect(store.referrers(unrelated.desc)), []);
});

test('delete removes the content, its tags and its referrer entry', async () => {
  const store = new MemoryStore();
  const subject = manifest({ config: EmptyJSON, layers: [] });
  const ref = manifest({ artifactType: 'a/b', config: EmptyJSON, layers: [], subject: subject.desc });
  await put(store, subject);
  await put(store, ref);
  await store.tag(ref.desc, 'r');
  await store.delete(ref.desc);
  assert.equal(await store.exists(ref.desc), false);
  assert.deepEqual(await collect(store.tags()), []);
  assert.deepEqual(await collect(store.referrers(subject.desc)), []);
  await assert.rejects(store.delete(ref.desc), (e: unknown) => isLadingError(e, 'E_NOT_FOUND'));
});

test('pushing content that exists does not read the body again', async () => {
  const store = new MemoryStore();
  const b = blob('once');
  await put(store, b);
  let reads = 0;
  const body = new Readable({
    read() {
      reads++;
      this.push(null);
    },
  });
  await store.push(b.desc, body);
  assert.equal(reads, 0);
  assert.ok(body.destroyed);
});
