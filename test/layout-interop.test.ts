import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { gzipSync } from 'node:zlib';
import { OciLayout } from '../src/content/layout.js';
import { digestOf } from '../src/oci/digest.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { MediaType } from '../src/oci/mediatype.js';
import { requirePeer } from './support/peers.js';
import { runTool } from './support/tool.js';
import { tarOf } from './support/tar.js';



async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-interop-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function blob(data: Buffer | string, mediaType: string): { desc: Descriptor; data: Buffer } {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return { desc: { mediaType, digest: digestOf(bytes), size: bytes.length }, data: bytes };
}


async function pushAll(layout: OciLayout, blobs: { desc: Descriptor; data: Buffer }[]): Promise<void> {
  for (const b of blobs) await layout.push(b.desc, Readable.from([b.data]));
}

/** Writes a one-layer OCI image tagged v1 and returns its manifest. */
async function writeImage(dir: string): Promise<{ layout: OciLayout; manifest: { desc: Descriptor; data: Buffer } }> {
  const tar = tarOf({ 'hello.txt': 'hello from lading\n', 'etc/motd': 'interop\n' });
  const layer = blob(gzipSync(tar), MediaType.ImageLayerGzip);
  const config = blob(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: {},
      rootfs: { type: 'layers', diff_ids: [digestOf(tar)] },
      history: [{ created_by: 'lading interop test' }],
    }),
    MediaType.ImageConfig,
  );
  const manifest = blob(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, config: config.desc, layers: [layer.desc] }),
    MediaType.ImageManifest,
  );
  const layout = await OciLayout.open(dir, { create: true });
  await pushAll(layout, [layer, config, manifest]);
  await layout.tag(manifest.desc, 'v1');
  return { layout, manifest };
}

/** Reads a manifest and every blob it names from `layout`, verifying each. */
async function readGraph(layout: OciLayout, ref: string): Promise<{ manifest: Descriptor; blobs: Descriptor[] }> {
  const desc = await layout.resolve(ref);
  const doc = JSON.parse((await buffer(await layout.fetch(desc))).toString('utf8')) as { config: Descriptor; layers: Descriptor[] };
  const blobs = [doc.config, ...doc.layers];
  for (const b of blobs) assert.equal((await buffer(await layout.fetch(b))).length, b.size);
  return { manifest: desc, blobs };
}

test('umoci and skopeo read an image layout written by OciLayout', async (t) => {
  if (!requirePeer(t, 'umoci') || !requirePeer(t, 'skopeo')) return;
  const dir = join(await tempDir(t), 'image');
  const { layout, manifest } = await writeImage(dir);
  // An untagged referrer entry in index.json must not disturb tools that know nothing of referrers.
  const sig = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: 'application/vnd.example.signature',
      config: { mediaType: MediaType.Empty, digest: digestOf('{}'), size: 2 },
      layers: [],
      subject: manifest.desc,
    }),
    MediaType.ImageManifest,
  );
  await pushAll(layout, [blob('{}', MediaType.Empty), sig]);
  assert.equal((await layout.manifests()).length, 2);

  const stat = JSON.parse(await runTool('umoci', ['stat', '--json', '--image', `${dir}:v1`])) as { history?: unknown[] };
  assert.equal(stat.history?.length, 1);
  const raw = await runTool('skopeo', ['inspect', '--raw', `oci:${dir}:v1`]);
  assert.ok(Buffer.from(raw, 'utf8').equals(manifest.data), 'skopeo reads the manifest byte for byte');
});

test('an artifact copied by skopeo between layouts keeps every digest', async (t) => {
  if (!requirePeer(t, 'skopeo')) return;
  const root = await tempDir(t);
  const config = blob(JSON.stringify({ kind: 'fileset', spec: { n: 1 } }), 'application/vnd.example.lading.config.v1+json');
  const layers = [
    blob('first layer bytes', 'application/vnd.example.lading.file.v1'),
    blob(Buffer.alloc(70_000, 3), 'application/vnd.example.lading.file.v1'),
  ];
  const manifest = blob(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      artifactType: 'application/vnd.example.lading.v1',
      config: config.desc,
      layers: layers.map((l) => ({ ...l.desc, annotations: { 'org.opencontainers.image.title': `f${l.desc.size}` } })),
    }),
    MediaType.ImageManifest,
  );
  const src = await OciLayout.open(join(root, 'src'), { create: true });
  await pushAll(src, [config, ...layers, manifest]);
  await src.tag(manifest.desc, 'v1');

  await runTool('skopeo', ['copy', '--quiet', `oci:${join(root, 'src')}:v1`, `oci:${join(root, 'dst')}:v1`]);

  const dst = await OciLayout.open(join(root, 'dst'));
  const copied = await readGraph(dst, 'v1');
  assert.equal(copied.manifest.digest, manifest.desc.digest);
  assert.deepEqual(copied.blobs.map((b) => b.digest), [config, ...layers].map((b) => b.desc.digest));
  assert.deepEqual(await buffer(await dst.fetch(manifest.desc)), manifest.data);
});

test('OciLayout reads a layout written by skopeo (index.json without mediaType)', async (t) => {
  if (!requirePeer(t, 'skopeo')) return;
  const root = await tempDir(t);
  const { manifest } = await writeImage(join(root, 'lading'));
  await runTool('skopeo', ['copy', '--quiet', `oci:${join(root, 'lading')}:v1`, `oci:${join(root, 'skopeo')}:x`]);

  const index = JSON.parse(await readFile(join(root, 'skopeo', 'index.json'), 'utf8')) as Record<string, unknown>;
  assert.equal(index.mediaType, undefined, 'skopeo 1.9 writes no mediaType; this test covers reading that');
  const layout = await OciLayout.open(join(root, 'skopeo'));
  const { manifest: desc, blobs } = await readGraph(layout, 'x');
  assert.equal(desc.mediaType, MediaType.ImageManifest);
  assert.equal(blobs.length, 2);
  const tags: string[] = [];
  for await (const tag of layout.tags()) tags.push(tag);
  assert.deepEqual(tags, ['x']);
  // An oci→oci copy of an OCI image needs no conversion, so skopeo keeps the manifest as it was.
  assert.equal(desc.digest, manifest.desc.digest);

  // Writing into skopeo's layout keeps its entries and adds ours.
  await layout.tag(desc, 'y');
  assert.deepEqual((await layout.manifests()).length, 2);
  await runTool('skopeo', ['inspect', '--raw', `oci:${join(root, 'skopeo')}:y`]);
});
