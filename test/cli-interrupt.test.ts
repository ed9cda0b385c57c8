import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { digestOf } from '../src/oci/digest.js';
import { buildImageManifest } from '../src/oci/manifest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';

const SIZE = 10 * 1024 * 1024;

test('SIGINT during a pull stops the transfer, removes its temp file and exits 130', async (t) => {
  const layer = { mediaType: MediaType.ImageLayer, digest: digestOf(Buffer.alloc(SIZE)), size: SIZE, annotations: { 'org.opencontainers.image.title': 'big.bin' } };
  const built = buildImageManifest({ config: { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: 2 }, layers: [layer], artifactType: 'application/vnd.example' });
  let onBlob!: () => void;
  const blobRequested = new Promise<void>((resolve) => (onBlob = resolve));
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/v2/r/manifests/')) {
      res.writeHead(200, { 'content-type': MediaType.ImageManifest, 'docker-content-digest': built.descriptor.digest, 'content-length': String(built.bytes.length) });
      res.end(req.method === 'HEAD' ? undefined : built.bytes);
    } else if (req.url === `/v2/r/blobs/${layer.digest}`) {
      // Some bytes, then nothing more: the client is mid-transfer when the signal comes.
      res.writeHead(200, { 'content-length': String(SIZE) });
      res.write(Buffer.alloc(256 * 1024), () => onBlob());
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  const out = await mkdtemp(join(tmpdir(), 'lading-interrupt-'));
  t.after(() => rm(out, { recursive: true, force: true }));

  const child = spawn(process.execPath, ['--import', import.meta.resolve('tsx'), join(import.meta.dirname, '..', 'src', 'cli', 'main.ts'), 'pull', `127.0.0.1:${(server.address() as AddressInfo).port}/r:v1`, '-o', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  await blobRequested;
  child.kill('SIGINT');
  assert.equal(await exited, 130, stderr);
  assert.match(stderr, /interrupted by SIGINT/);
  assert.deepEqual(await readdir(out), []);
});
