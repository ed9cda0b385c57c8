import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { OciLayout } from '../content/layout.js';
import { MemoryStore } from '../content/memory.js';
import type { Descriptor } from '../oci/descriptor.js';
import { buildImageManifest } from '../oci/manifest.js';
import { EmptyJSON } from '../oci/mediatype.js';
import { copy } from './copy.js';

const EMPTY: Descriptor = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };

async function fixture(store: MemoryStore) {
  await store.push(EMPTY, Readable.from([Buffer.from('{}')]));
  const subject = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.example.app' });
  await store.push(subject.descriptor, Readable.from([subject.bytes]));
  return { subject };
}

test('a copy into a layout without a tag lists the root in index.json', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-index-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const mem = new MemoryStore();
  const { subject } = await fixture(mem);
  const layout = await OciLayout.open(dir, { create: true });
  await copy(mem, subject.descriptor.digest, layout);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
  assert.deepEqual(index.manifests.map((d: Descriptor) => d.digest), [subject.descriptor.digest]);
});

