import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { buildImageManifest } from '../oci/manifest.js';
import { EmptyJSON, MediaType } from '../oci/mediatype.js';
import { parsePlatform, platformEquals } from '../oci/platform.js';
import { OciLayout } from './layout.js';
import { MemoryStore } from './memory.js';

const EMPTY: Descriptor = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };

async function put(store: MemoryStore | OciLayout, desc: Descriptor, bytes: Buffer): Promise<void> {
  await store.push(desc, Readable.from([bytes]));
}

async function fixture(store: MemoryStore | OciLayout) {
  await put(store, EMPTY, Buffer.from('{}'));
  const subject = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.example.app' });
  await put(store, subject.descriptor, subject.bytes);
  const sig = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.example.sig', subject: subject.descriptor });
  return { subject, sig };
}

async function listReferrers(store: MemoryStore | OciLayout, subject: Descriptor): Promise<string[]> {
  const out: string[] = [];
  for await (const d of store.referrers(subject)) out.push(d.digest);
  return out;
}

test('a referrer whose bytes were already stored is listed once pushed as a manifest', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-index-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  for (const store of [new MemoryStore(), await OciLayout.open(dir, { create: true })]) {
    const { subject, sig } = await fixture(store);
    // The same bytes arrive first as a plain blob (another tool, or a run that stopped before indexing).
    await put(store, { mediaType: MediaType.OctetStream, digest: sig.descriptor.digest, size: sig.descriptor.size }, sig.bytes);
    assert.deepEqual(await listReferrers(store, subject.descriptor), []);
    await put(store, sig.descriptor, sig.bytes);
    assert.deepEqual(await listReferrers(store, subject.descriptor), [sig.descriptor.digest]);
    assert.equal((await store.resolve(sig.descriptor.digest)).mediaType, MediaType.ImageManifest);
  }
});

test('names other tools write in index.json resolve as listed', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-index-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const layout = await OciLayout.open(dir, { create: true });
  const { subject } = await fixture(layout);
  const names = ['1.0+build', 'foo/bar:1.0'];
  const entries = names.map((n) => ({ ...subject.descriptor, annotations: { 'org.opencontainers.image.ref.name': n } }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: entries }));
  for (const n of names) assert.equal((await layout.resolve(n)).digest, subject.descriptor.digest);
  assert.equal(digestOf(subject.bytes), subject.descriptor.digest);
});

test('an empty platform variant means none', () => {
  assert.ok(platformEquals(parsePlatform('linux/arm64'), { os: 'linux', architecture: 'arm64', variant: '' }));
  assert.ok(platformEquals(parsePlatform('linux/amd64'), { os: 'linux', architecture: 'amd64', variant: '' }));
});
