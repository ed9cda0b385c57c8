/**
 * podman, a container engine that knows nothing of lading, pulls an image that lading's client pushed to
 * `lading serve`: the server speaks the pull side of the protocol the way a real engine expects it.
 * podman runs with its own temporary storage (--root/--runroot/--tmpdir, vfs driver), so the test leaves
 * nothing in the machine's container store. Only pulls are checked: `podman run` needs rlimit permissions
 * these sandboxes do not grant (see PEERS.md).
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { MemoryStore } from '../src/content/memory.js';
import { copy } from '../src/graph/copy.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { digestOf } from '../src/oci/digest.js';
import { MediaType } from '../src/oci/mediatype.js';
import { Repository } from '../src/remote/repository.js';
import { startRegistry } from '../src/server/serve.js';
import { requirePeer } from './support/peers.js';
import { runTool } from './support/tool.js';
import { tarOf } from './support/tar.js';


/** Runs podman against a private store; its stderr is in the error when it fails. */
function podmanIn(store: string): (args: string[]) => Promise<string> {
  const global = [
    '--root', join(store, 'root'),
    '--runroot', join(store, 'run'),
    '--tmpdir', join(store, 'tmp'),
    '--storage-driver', 'vfs',
    '--cgroup-manager', 'cgroupfs',
    '--events-backend', 'none',
  ];
  return (args) => runTool('podman', [...global, ...args]);
}

function blob(data: Buffer | string, mediaType: string): { desc: Descriptor; data: Buffer } {
  const bytes = Buffer.isBuffer(data) ? data : Buffer.from(data);
  return { desc: { mediaType, digest: digestOf(bytes), size: bytes.length }, data: bytes };
}


async function tempDir(t: TestContext, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('podman pull --tls-verify=false of an image pushed to lading serve succeeds', async (t) => {
  if (!requirePeer(t, 'podman')) return;
  const work = await tempDir(t, 'lading-podman-');
  const reg = await startRegistry({ root: join(work, 'data'), logger: false });
  t.after(() => reg.close());

  // A real, tiny image: one tar+gzip layer and an image config whose diff_ids name the uncompressed tar.
  const tar = tarOf({ 'hello.txt': 'hello from lading\n', 'etc/motd': 'pulled by podman\n' });
  const layer = blob(gzipSync(tar), MediaType.ImageLayerGzip);
  const config = blob(
    JSON.stringify({
      created: '2024-01-01T00:00:00Z',
      architecture: 'amd64',
      os: 'linux',
      config: { Cmd: ['/hello.txt'], Labels: { 'org.example.test': 'lading-podman' } },
      rootfs: { type: 'layers', diff_ids: [digestOf(tar)] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'lading podman test' }],
    }),
    MediaType.ImageConfig,
  );
  const manifest = blob(
    JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, config: config.desc, layers: [layer.desc] }),
    MediaType.ImageManifest,
  );
  const mem = new MemoryStore();
  for (const b of [layer, config, manifest]) await mem.push(b.desc, Readable.from([b.data]));
  await mem.tag(manifest.desc, 'v1');

  const ref = `${reg.host}/podman/hello:v1`;
  await copy(mem, 'v1', new Repository(`${reg.host}/podman/hello`), 'v1');

  const store = await mkdtemp(join(tmpdir(), 'lading-podman-store-'));
  const podman = podmanIn(store);
  // Whatever happens below, podman's temporary store is emptied and then removed, in that order (one hook:
  // a podman command after the removal would create the store again).
  t.after(async () => {
    await podman(['rmi', '--all', '--force']).catch(() => undefined);
    await rm(store, { recursive: true, force: true });
  });

  await podman(['pull', '--quiet', '--tls-verify=false', ref]);
  const [info] = JSON.parse(await podman(['image', 'inspect', ref])) as Array<{
    Id: string;
    Digest: string;
    RepoDigests: string[];
    Architecture: string;
    Os: string;
    Labels: Record<string, string> | null;
    RootFS: { Layers: string[] };
  }>;
  assert.ok(info, 'podman image inspect printed no image');
  // The image id is the config digest; the digest is the manifest's, as lading stored and served it.
  assert.equal(`sha256:${info.Id}`, config.desc.digest);
  assert.equal(info.Digest, manifest.desc.digest);
  assert.ok(info.RepoDigests.includes(`${reg.host}/podman/hello@${manifest.desc.digest}`), info.RepoDigests.join(', '));
  assert.equal(info.Architecture, 'amd64');
  assert.equal(info.Os, 'linux');
  assert.equal(info.Labels?.['org.example.test'], 'lading-podman');
  assert.deepEqual(info.RootFS.Layers, [digestOf(tar)]);

  // Pulling by digest works as well, and removing the image leaves podman's store empty.
  await podman(['pull', '--quiet', '--tls-verify=false', `${reg.host}/podman/hello@${manifest.desc.digest}`]);
  // By image id: that drops every name the image has here (the tag and the digest reference).
  await podman(['rmi', '--force', info.Id]);
  assert.equal((await podman(['images', '--quiet'])).trim(), '');
});
