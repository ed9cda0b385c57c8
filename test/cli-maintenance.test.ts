import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { digestOf } from '../src/oci/digest.js';
import { buildImageManifest } from '../src/oci/manifest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';
import { Repository } from '../src/remote/repository.js';
import { startRegistry } from '../src/server/serve.js';
import { lading } from './support/cli.js';

/** Every file under `dir` whose path contains `part`. */
async function find(dir: string, part: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    const p = join(e.parentPath ?? (e as unknown as { path: string }).path, e.name);
    if (e.isFile() && p.includes(part)) out.push(p);
  }
  return out;
}

test('gc removes what a deleted manifest left behind; fsck finds a corrupted blob', async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'lading-gc-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const server = await startRegistry({ root, logger: false });
  t.after(() => server.close());
  const repo = new Repository(`${server.host}/maint/app`);
  const push = async (bytes: Buffer, mediaType: string) => {
    const d = { mediaType, digest: digestOf(bytes), size: bytes.length };
    await repo.push(d, Readable.from([bytes]));
    return d;
  };
  const empty = await push(Buffer.from('{}'), EmptyJSON.mediaType);
  const kept = await push(Buffer.from('kept layer'), MediaType.ImageLayer);
  const dropped = await push(Buffer.from('layer of a deleted manifest'), MediaType.ImageLayer);
  const keep = buildImageManifest({ config: empty, layers: [kept], artifactType: 'application/vnd.example' });
  await repo.pushManifest(keep.descriptor, keep.bytes, 'keep');
  const drop = buildImageManifest({ config: empty, layers: [dropped], artifactType: 'application/vnd.example' });
  await repo.pushManifest(drop.descriptor, drop.bytes, 'drop');
  await repo.delete(drop.descriptor);

  const clean = await lading(['fsck', '--root', root, '--json']);
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(clean.json.clean, true);

  const dry = await lading(['gc', '--root', root, '--grace', '0s', '--dry-run', '--json']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.ok(dry.json.removedBlobs.includes(dropped.digest), JSON.stringify(dry.json));
  assert.ok(!dry.json.removedBlobs.includes(kept.digest));
  assert.equal((await find(root, dropped.digest.slice(7))).length > 0, true, 'a dry run removes nothing');

  const real = await lading(['gc', '--root', root, '--grace', '0s', '--json']);
  assert.equal(real.code, 0, real.stderr);
  assert.ok(real.json.removedBlobs.includes(dropped.digest));
  assert.equal((await repo.resolve('keep')).digest, keep.descriptor.digest);
  assert.ok(await repo.exists(kept));

  // Flip the bytes of the kept layer on disk: fsck must notice and exit 1.
  const [blobFile] = (await find(root, kept.digest.slice(7))).filter((p) => p.endsWith('data'));
  assert.ok(blobFile, 'the kept layer is on disk');
  await writeFile(blobFile!, 'tampered!!');
  assert.ok((await stat(blobFile!)).size > 0);
  const broken = await lading(['fsck', '--root', root, '--json']);
  assert.equal(broken.code, 1);
  assert.equal(broken.json.error.code, 'E_STORE_CORRUPT');
  assert.ok(broken.json.error.details.report.problems.some((p: { kind: string }) => p.kind === 'blob-corrupt'), JSON.stringify(broken.json.error.details.report.problems));
});
