/** Behaviours the distribution-spec conformance suite checks, kept here so they cannot regress. */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { digestOf } from '../src/oci/digest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';
import { startRegistry } from '../src/server/serve.js';

let server: Awaited<ReturnType<typeof startRegistry>>;
let root: string;
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'lading-spec-'));
  server = await startRegistry({ root, logger: false });
});
after(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

async function send(method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Buffer } = {}) {
  const res = await request(`${server.url}${path}`, { method: method as 'GET', headers: opts.headers, body: opts.body });
  const body = await res.body.text();
  return { status: res.statusCode, headers: res.headers, body };
}

async function blob(repo: string, data: string): Promise<string> {
  const digest = digestOf(Buffer.from(data));
  const r = await send('POST', `/v2/${repo}/blobs/uploads/?digest=${digest}`, { body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(r.status, 201, r.body);
  return digest;
}

test('a byte range that ends before it starts is refused with 416, and the error code is one the spec lists', async () => {
  const digest = await blob('spec/range', 'x'.repeat(2048));
  const backwards = await send('GET', `/v2/spec/range/blobs/${digest}`, { headers: { range: 'bytes=500-0' } });
  assert.equal(backwards.status, 416);
  const past = await send('GET', `/v2/spec/range/blobs/${digest}`, { headers: { range: 'bytes=5000-6000' } });
  assert.equal(past.status, 416);
  assert.equal(past.headers['content-range'], 'bytes */2048');
  assert.equal(JSON.parse(past.body).errors[0].code, 'UNSUPPORTED');
});

test('a manifest naming non-distributable layers it does not hold is accepted', async () => {
  await blob('spec/foreign', '{}');
  const foreign = { mediaType: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip', digest: digestOf(Buffer.from('elsewhere')), size: 9, urls: ['https://example.com/layer'] };
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, config: { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: 2 }, layers: [foreign], artifactType: 'application/vnd.example' });
  const put = await send('PUT', '/v2/spec/foreign/manifests/v1', { body: manifest, headers: { 'content-type': MediaType.ImageManifest } });
  assert.equal(put.status, 201, put.body);
  // A layer that is neither foreign nor present is still refused.
  const missing = manifest.replace(foreign.mediaType, MediaType.ImageLayerGzip).replace(',"urls":["https://example.com/layer"]', '');
  const refused = await send('PUT', '/v2/spec/foreign/manifests/v2', { body: missing, headers: { 'content-type': MediaType.ImageManifest } });
  assert.equal(refused.status, 400);
  assert.equal(JSON.parse(refused.body).errors[0].code, 'MANIFEST_BLOB_UNKNOWN');
});

test('a mount without `from` links a blob the open registry holds in another repository', async () => {
  const digest = await blob('spec/src', 'shared bytes');
  const mounted = await send('POST', `/v2/spec/dst/blobs/uploads/?mount=${digest}`);
  assert.equal(mounted.status, 201, mounted.body);
  assert.equal(mounted.headers.location, `/v2/spec/dst/blobs/${digest}`);
  assert.equal((await send('GET', `/v2/spec/dst/blobs/${digest}`)).body, 'shared bytes');
  const unknown = await send('POST', `/v2/spec/dst/blobs/uploads/?mount=${digestOf(Buffer.from('nowhere'))}`);
  assert.equal(unknown.status, 202);
});

test('?tag= on a push by digest tags it and says so in OCI-Tag', async () => {
  await blob('spec/tags', '{}');
  const manifest = JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, config: { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: 2 }, layers: [], artifactType: 'application/vnd.example' });
  const digest = digestOf(Buffer.from(manifest));
  const put = await send('PUT', `/v2/spec/tags/manifests/${digest}?tag=a&tag=b`, { body: manifest, headers: { 'content-type': MediaType.ImageManifest } });
  assert.equal(put.status, 201, put.body);
  assert.equal(put.headers['oci-tag'], 'a, b');
  assert.deepEqual(JSON.parse((await send('GET', '/v2/spec/tags/tags/list')).body).tags, ['a', 'b']);
});
