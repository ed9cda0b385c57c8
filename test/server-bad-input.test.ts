/**
 * Malformed and hostile requests against `lading serve`: each gets the right status and OCI error code,
 * nothing is stored, and the server keeps serving.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
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
  root = await mkdtemp(join(tmpdir(), 'lading-bad-input-'));
  server = await startRegistry({ root, logger: false });
});
after(async () => {
  await server?.close();
  await rm(root, { recursive: true, force: true });
});

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  code?: string;
}

async function send(method: string, path: string, opts: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  const res = await request(`${server.url}${path}`, { method: method as 'GET', headers: opts.headers, body: opts.body });
  const body = await res.body.text();
  let code: string | undefined;
  try {
    code = (JSON.parse(body) as { errors?: Array<{ code: string }> }).errors?.[0]?.code;
  } catch {
    code = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body, code };
}

/** A request written byte for byte: for what HTTP clients refuse to send. */
function raw(text: string, opts: { endAfterWrite?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const url = new URL(server.url);
    const socket = connect(Number(url.port), url.hostname, () => {
      socket.write(text);
      if (opts.endAfterWrite) socket.end();
    });
    let got = '';
    socket.on('data', (d) => (got += d));
    socket.on('close', () => resolve(got));
    socket.on('error', (err) => ((err as NodeJS.ErrnoException).code === 'ECONNRESET' ? resolve(got) : reject(err)));
    socket.setTimeout(10_000, () => socket.destroy());
  });
}

const hexOf = (s: string) => digestOf(Buffer.from(s)).slice('sha256:'.length);
const EMPTY = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };

async function expectError(a: Answer | Promise<Answer>, status: number | number[], codes: string | string[]): Promise<void> {
  const answer = await a;
  const statuses = Array.isArray(status) ? status : [status];
  const codeList = Array.isArray(codes) ? codes : [codes];
  assert.ok(statuses.includes(answer.status), `status ${answer.status} (${answer.body.slice(0, 200)}) not in ${statuses}`);
  assert.ok(answer.code !== undefined && codeList.includes(answer.code), `code ${answer.code} not in ${codeList}: ${answer.body.slice(0, 200)}`);
}

async function openUpload(name: string): Promise<string> {
  const a = await send('POST', `/v2/${name}/blobs/uploads/`);
  assert.equal(a.status, 202, a.body);
  return new URL(String(a.headers.location), server.url).pathname + new URL(String(a.headers.location), server.url).search;
}

function withParam(location: string, key: string, value: string): string {
  const u = new URL(location, server.url);
  u.searchParams.set(key, value);
  return `${u.pathname}${u.search}`;
}

test('digests: malformed, unsupported, and mismatched', async () => {
  await expectError(send('GET', '/v2/r/blobs/sha256:zz'), 400, 'DIGEST_INVALID');
  await expectError(send('GET', `/v2/r/blobs/sha256:${'a'.repeat(63)}`), 400, 'DIGEST_INVALID');
  await expectError(send('GET', `/v2/r/blobs/sha256:${'A'.repeat(64)}`), 400, 'DIGEST_INVALID');
  await expectError(send('GET', '/v2/r/blobs/md5:d41d8cd98f00b204e9800998ecf8427e'), 400, 'DIGEST_INVALID');
  await expectError(send('GET', `/v2/r/blobs/sha256:${'0'.repeat(64)}`), 404, 'BLOB_UNKNOWN');
  const head = await send('HEAD', `/v2/r/blobs/sha256:${'0'.repeat(64)}`);
  assert.equal(head.status, 404);
  assert.equal(head.body, '', 'HEAD answers carry no body');
  await expectError(send('POST', `/v2/r/blobs/uploads/?digest=sha256:${hexOf('other')}`, { body: 'abc', headers: { 'content-type': 'application/octet-stream' } }), 400, 'DIGEST_INVALID');
  await expectError(send('POST', '/v2/r/blobs/uploads/?digest=not-a-digest', { body: 'abc', headers: { 'content-type': 'application/octet-stream' } }), 400, 'DIGEST_INVALID');
  await expectError(send('GET', `/v2/r/blobs/sha256:${hexOf('abc')}`), 404, ['BLOB_UNKNOWN', 'NAME_UNKNOWN']);
});

test('upload sessions: unknown ids, out-of-order and lying chunks, missing or wrong digests', async () => {
  await expectError(send('PATCH', '/v2/r/blobs/uploads/doesnotexist', { body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');
  await expectError(send('GET', '/v2/r/blobs/uploads/doesnotexist'), 404, 'BLOB_UPLOAD_UNKNOWN');
  await expectError(send('DELETE', '/v2/r/blobs/uploads/doesnotexist'), 404, 'BLOB_UPLOAD_UNKNOWN');
  await expectError(send('PUT', `/v2/r/blobs/uploads/doesnotexist?digest=sha256:${hexOf('x')}`, { body: 'x' }), 404, 'BLOB_UPLOAD_UNKNOWN');

  const loc = await openUpload('up');
  const ahead = await send('PATCH', loc, { body: 'hello', headers: { 'content-range': '10-14', 'content-type': 'application/octet-stream' } });
  assert.equal(ahead.status, 416, ahead.body);
  const backwards = await send('PATCH', loc, { body: 'hello', headers: { 'content-range': '4-0', 'content-type': 'application/octet-stream' } });
  assert.ok([400, 416].includes(backwards.status), `backwards range answered ${backwards.status}`);
  const lying = await send('PATCH', loc, { body: 'hello', headers: { 'content-range': '0-9', 'content-type': 'application/octet-stream' } });
  assert.ok([400, 416].includes(lying.status), `a range longer than the body answered ${lying.status}`);
  await expectError(send('PATCH', loc, { body: 'hello', headers: { 'content-range': 'five-nine', 'content-type': 'application/octet-stream' } }), [400, 416], ['BLOB_UPLOAD_INVALID', 'SIZE_INVALID', 'RANGE_INVALID']);

  // The session is intact after the refusals: a correct chunk still goes in at 0.
  const ok = await send('PATCH', loc, { body: 'hello', headers: { 'content-range': '0-4', 'content-type': 'application/octet-stream' } });
  assert.equal(ok.status, 202, ok.body);
  const next = new URL(String(ok.headers.location), server.url);
  const nextLoc = `${next.pathname}${next.search}`;
  await expectError(send('PUT', nextLoc), 400, 'DIGEST_INVALID');
  await expectError(send('PUT', withParam(nextLoc, 'digest', `sha256:${hexOf('not hello')}`)), 400, 'DIGEST_INVALID');
  const done = await send('PUT', withParam(nextLoc, 'digest', `sha256:${hexOf('hello')}`));
  assert.equal(done.status, 201, done.body);
  assert.equal(done.headers['docker-content-digest'], `sha256:${hexOf('hello')}`);
});

test('ranges that cannot be satisfied', async () => {
  const put = await send('POST', `/v2/range/blobs/uploads/?digest=sha256:${hexOf('0123456789')}`, { body: '0123456789', headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201, put.body);
  const part = await send('GET', `/v2/range/blobs/sha256:${hexOf('0123456789')}`, { headers: { range: 'bytes=2-5' } });
  assert.equal(part.status, 206);
  assert.equal(part.body, '2345');
  const past = await send('GET', `/v2/range/blobs/sha256:${hexOf('0123456789')}`, { headers: { range: 'bytes=100-200' } });
  assert.equal(past.status, 416);
});

test('manifests: not JSON, wrong shapes, unknown blobs, mismatched digests and types, oversized', async () => {
  const blob = await send('POST', `/v2/m/blobs/uploads/?digest=${EmptyJSON.digest}`, { body: '{}', headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(blob.status, 201, blob.body);
  const put = (body: string | Buffer, ref = 'v1', type: string = MediaType.ImageManifest) =>
    send('PUT', `/v2/m/manifests/${ref}`, { body, headers: { 'content-type': type } });
  const good = (extra: Record<string, unknown> = {}) => JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, artifactType: 'application/vnd.example', config: EMPTY, layers: [], ...extra });

  await expectError(put('{"schemaVersion": 2,'), 400, 'MANIFEST_INVALID');
  await expectError(put('[]'), 400, 'MANIFEST_INVALID');
  await expectError(put('"just a string"'), 400, 'MANIFEST_INVALID');
  await expectError(put(JSON.stringify({ schemaVersion: 1, name: 'm', tag: 'v1', fsLayers: [] })), [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']);
  await expectError(put(good({ schemaVersion: 3 })), 400, 'MANIFEST_INVALID');
  await expectError(put(good({ layers: [{ mediaType: MediaType.ImageLayer, digest: `sha256:${hexOf('never pushed')}`, size: 12 }] })), 400, 'MANIFEST_BLOB_UNKNOWN');
  await expectError(put(good({ layers: [{ mediaType: MediaType.ImageLayer, digest: 'sha256:nothex', size: 1 }] })), 400, 'MANIFEST_INVALID');
  await expectError(put(good({ layers: [{ mediaType: MediaType.ImageLayer, digest: EmptyJSON.digest, size: -2 }] })), 400, 'MANIFEST_INVALID');
  await expectError(put(good({ config: { ...EMPTY, mediaType: 'not a media type' } })), 400, 'MANIFEST_INVALID');
  await expectError(put(good({ annotations: { a: 1 } })), 400, 'MANIFEST_INVALID');
  await expectError(put(good(), `sha256:${hexOf('something else')}`), 400, ['DIGEST_INVALID', 'MANIFEST_INVALID']);
  await expectError(put(good(), 'v1', MediaType.ImageIndex), 400, 'MANIFEST_INVALID');
  await expectError(put(good({ mediaType: 'application/x-not-a-manifest' }), 'v1', 'application/x-not-a-manifest'), [400, 415], ['MANIFEST_INVALID', 'UNSUPPORTED']);
  const huge = good({ annotations: { pad: 'x'.repeat(4 * 1024 * 1024) } });
  await expectError(put(huge), [400, 413], ['MANIFEST_INVALID', 'SIZE_INVALID', 'TOO_LARGE']);
  await expectError(put(good(), `-bad-tag`), 400, ['TAG_INVALID', 'MANIFEST_INVALID', 'NAME_INVALID']);
  await expectError(put(good(), 'x'.repeat(129)), 400, ['TAG_INVALID', 'MANIFEST_INVALID', 'NAME_INVALID']);

  await expectError(send('GET', '/v2/m/manifests/nope', { headers: { accept: MediaType.ImageManifest } }), 404, 'MANIFEST_UNKNOWN');
  await expectError(send('DELETE', `/v2/m/manifests/sha256:${hexOf('nope')}`), 404, 'MANIFEST_UNKNOWN');
  // None of the refused manifests was stored: the repository has no tag.
  const tags = await send('GET', '/v2/m/tags/list');
  assert.ok(tags.status === 404 || (tags.status === 200 && (JSON.parse(tags.body).tags ?? []).length === 0), tags.body);

  const accepted = await put(good());
  assert.equal(accepted.status, 201, accepted.body);
});

test('repository names: case, dots, length, unicode, unknown', async () => {
  await expectError(send('GET', '/v2/UPPER/tags/list'), 400, 'NAME_INVALID');
  await expectError(send('GET', '/v2/a..b/tags/list'), 400, 'NAME_INVALID');
  await expectError(send('GET', '/v2/-a/tags/list'), 400, 'NAME_INVALID');
  await expectError(send('GET', '/v2/a//b/tags/list'), [400, 404], ['NAME_INVALID', 'NAME_UNKNOWN']);
  await expectError(send('GET', `/v2/${'a/'.repeat(130)}b/tags/list`), 400, 'NAME_INVALID');
  await expectError(send('GET', '/v2/caf%C3%A9/tags/list'), 400, 'NAME_INVALID');
  await expectError(send('POST', '/v2/Bad_Name/blobs/uploads/'), 400, 'NAME_INVALID');
  await expectError(send('GET', '/v2/never/pushed/tags/list'), 404, 'NAME_UNKNOWN');
});

test('unknown paths and methods, referrers with bad digests', async () => {
  const unknownPath = await send('GET', '/v2/r/nothing-here');
  assert.equal(unknownPath.status, 404);
  const wrongMethod = await send('PROPFIND', '/v2/');
  assert.equal(wrongMethod.status, 405);
  const postManifest = await send('POST', '/v2/r/manifests/v1');
  assert.equal(postManifest.status, 405);
  await expectError(send('GET', '/v2/r/referrers/sha256:zz'), 400, 'DIGEST_INVALID');
  const empty = await send('GET', `/v2/r/referrers/sha256:${'1'.repeat(64)}`);
  assert.equal(empty.status, 200);
  assert.deepEqual(JSON.parse(empty.body).manifests, []);
});

test('raw protocol abuse: dot segments, a body shorter than its Content-Length, garbage', async () => {
  const dots = await raw('GET /v2/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(dots, /^HTTP\/1\.1 (400|404)/);
  assert.doesNotMatch(dots, /root:/);
  const loc = await openUpload('lying');
  const short = await raw(`PATCH ${loc} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 1000\r\n\r\nonly a few bytes`, { endAfterWrite: true });
  assert.doesNotMatch(short, /^HTTP\/1\.1 20[12]/);
  // The session holds nothing from the cut-off request.
  const status = await send('GET', loc);
  assert.equal(status.status, 204);
  assert.ok(['0-0', undefined].includes(status.headers.range as string | undefined) || status.headers.range === '0--1', `range ${status.headers.range}`);
  const garbage = await raw('THIS IS NOT HTTP\r\n\r\n');
  assert.match(garbage, /^HTTP\/1\.1 400|^$/);
});

test('after all of it the server still serves', async () => {
  const base = await send('GET', '/v2/');
  assert.equal(base.status, 200);
  const data = 'still alive';
  const put = await send('POST', `/v2/alive/blobs/uploads/?digest=sha256:${hexOf(data)}`, { body: data, headers: { 'content-type': 'application/octet-stream' } });
  assert.equal(put.status, 201, put.body);
  const got = await send('GET', `/v2/alive/blobs/sha256:${hexOf(data)}`);
  assert.equal(got.body, data);
});
