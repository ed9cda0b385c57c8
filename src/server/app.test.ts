import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { digestOf } from '../oci/digest.js';
import { buildImageManifest } from '../oci/manifest.js';
import { EmptyJSON, MediaType } from '../oci/mediatype.js';
import { startRegistry, type RunningRegistry } from './serve.js';
import { parseRange } from './app.js';

const EMPTY = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };

async function errorCode(res: Response): Promise<string | undefined> {
  const body = (await res.json()) as { errors?: { code: string }[] };
  return body.errors?.[0]?.code;
}

/** A raw request, for what fetch will not send (lying lengths, bodies that never end). */
function raw(url: string, opts: { method: string; path: string; headers: Record<string, string>; body?: Buffer; endBody?: boolean }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = request({ host: u.hostname, port: u.port, method: opts.method, path: opts.path, headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (opts.body) req.write(opts.body);
    if (opts.endBody !== false) req.end();
  });
}

describe('lading serve: distribution-spec endpoints', () => {
  let reg: RunningRegistry;
  let dir: string;
  let base: string;
  const api = (path: string, init?: RequestInit) => fetch(`${base}${path}`, init);

  async function pushBlob(repo: string, data: Buffer): Promise<string> {
    const digest = digestOf(data);
    const res = await api(`/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: data, headers: { 'content-type': 'application/octet-stream' } });
    assert.equal(res.status, 201, await res.text());
    return digest;
  }

  async function pushManifest(repo: string, ref: string, bytes: Buffer, mediaType: string = MediaType.ImageManifest): Promise<Response> {
    return api(`/v2/${repo}/manifests/${ref}`, { method: 'PUT', body: bytes, headers: { 'content-type': mediaType } });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-app-'));
    reg = await startRegistry({ root: dir });
    base = reg.url;
  });
  after(async () => {
    await reg.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('base, health, unknown paths and methods', async () => {
    const v2 = await api('/v2/');
    assert.equal(v2.status, 200);
    assert.equal(v2.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.deepEqual(await v2.json(), {});
    assert.equal((await api('/healthz')).status, 200);
    const unknown = await api('/v3/whatever');
    assert.equal(unknown.status, 404);
    assert.equal(await errorCode(unknown), 'NAME_UNKNOWN');
    const wrong = await api('/v2/', { method: 'DELETE' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'GET, HEAD');
  });

  test('monolithic upload, HEAD, GET and ranges', async () => {
    const data = Buffer.from('0123456789');
    const digest = await pushBlob('blobs/a', data);
    const head = await api(`/v2/blobs/a/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), '10');
    assert.equal(head.headers.get('docker-content-digest'), digest);
    assert.equal(head.headers.get('content-type'), 'application/octet-stream');
    assert.equal(await (await api(`/v2/blobs/a/blobs/${digest}`)).text(), '0123456789');
    const part = await api(`/v2/blobs/a/blobs/${digest}`, { headers: { range: 'bytes=2-4' } });
    assert.equal(part.status, 206);
    assert.equal(part.headers.get('content-range'), 'bytes 2-4/10');
    assert.equal(await part.text(), '234');
    const suffix = await api(`/v2/blobs/a/blobs/${digest}`, { headers: { range: 'bytes=-3' } });
    assert.equal(await suffix.text(), '789');
    const bad = await api(`/v2/blobs/a/blobs/${digest}`, { headers: { range: 'bytes=10-' } });
    assert.equal(bad.status, 416);
    assert.equal(bad.headers.get('content-range'), 'bytes */10');
    await bad.body?.cancel();
    // Another repository cannot read it until it is mounted.
    const other = await api(`/v2/blobs/b/blobs/${digest}`);
    assert.equal(other.status, 404);
    assert.equal(await errorCode(other), 'BLOB_UNKNOWN');
    const wrong = await api(`/v2/blobs/a/blobs/uploads/?digest=${digestOf('x')}`, { method: 'POST', body: 'y' });
    assert.equal(wrong.status, 400);
    assert.equal(await errorCode(wrong), 'DIGEST_INVALID');
  });

  test('parseRange follows RFC 9110', () => {
    assert.deepEqual(parseRange('bytes=0-', 5), { start: 0, end: 4 });
    assert.deepEqual(parseRange('bytes=3-100', 5), { start: 3, end: 4 });
    assert.equal(parseRange('bytes=5-', 5), 'unsatisfiable');
    assert.equal(parseRange('bytes=0-1,3-4', 5), undefined);
    assert.equal(parseRange('items=0-1', 5), undefined);
  });

  test('chunked upload: sessions, Content-Range checks, status and cancel', async () => {
    const start = await api('/v2/chunks/x/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202);
    const location = start.headers.get('location')!;
    assert.match(location, /^\/v2\/chunks\/x\/blobs\/uploads\/[A-Za-z0-9_-]+$/);
    assert.equal(start.headers.get('range'), '0-0');
    assert.ok(start.headers.get('docker-upload-uuid'));
    const p1 = await api(location, { method: 'PATCH', body: 'hello', headers: { 'content-range': '0-4', 'content-type': 'application/octet-stream' } });
    assert.equal(p1.status, 202);
    assert.equal(p1.headers.get('range'), '0-4');
    const outOfOrder = await api(location, { method: 'PATCH', body: 'zzz', headers: { 'content-range': '7-9' } });
    assert.equal(outOfOrder.status, 416);
    assert.equal(outOfOrder.headers.get('range'), '0-4');
    await outOfOrder.body?.cancel();
    const lying = await api(location, { method: 'PATCH', body: 'ab', headers: { 'content-range': '5-9' } });
    assert.equal(lying.status, 400);
    assert.equal(await errorCode(lying), 'SIZE_INVALID');
    const streamed = await api(location, { method: 'PATCH', body: ', world' });
    assert.equal(streamed.status, 202);
    assert.equal(streamed.headers.get('range'), '0-11');
    const status = await api(location);
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), '0-11');
    const digest = digestOf('hello, world!');
    const badClose = await api(`${location}?digest=${digestOf('nope')}`, { method: 'PUT', body: '!' });
    assert.equal(badClose.status, 400);
    assert.equal(await errorCode(badClose), 'DIGEST_INVALID');
    const close = await api(`${location}?digest=${digest}`, { method: 'PUT', body: '!' });
    assert.equal(close.status, 201);
    assert.equal(close.headers.get('location'), `/v2/chunks/x/blobs/${digest}`);
    assert.equal(close.headers.get('docker-content-digest'), digest);
    assert.equal(await (await api(`/v2/chunks/x/blobs/${digest}`)).text(), 'hello, world!');
    const gone = await api(location);
    assert.equal(gone.status, 404);
    assert.equal(await errorCode(gone), 'BLOB_UPLOAD_UNKNOWN');

    const second = (await api('/v2/chunks/x/blobs/uploads/', { method: 'POST' })).headers.get('location')!;
    assert.equal((await api(second, { method: 'DELETE' })).status, 204);
    assert.equal((await api(second, { method: 'DELETE' })).status, 404);
  });

  test('cross-repository mount: 201 when readable from the source, an upload session otherwise', async () => {
    const digest = await pushBlob('mount/src', Buffer.from('mount me'));
    const ok = await api(`/v2/mount/dst/blobs/uploads/?mount=${digest}&from=mount/src`, { method: 'POST' });
    assert.equal(ok.status, 201);
    assert.equal(ok.headers.get('location'), `/v2/mount/dst/blobs/${digest}`);
    assert.equal((await api(`/v2/mount/dst/blobs/${digest}`, { method: 'HEAD' })).status, 200);
    const fallback = await api(`/v2/mount/dst/blobs/uploads/?mount=${digestOf('absent')}&from=mount/src`, { method: 'POST' });
    assert.equal(fallback.status, 202);
    assert.ok(fallback.headers.get('location'));
  });

  test('manifests: PUT checks, GET/HEAD by tag and digest, OCI-Subject, referrers, delete', async () => {
    const repo = 'man/app';
    const layer = await pushBlob(repo, Buffer.from('layer'));
    await pushBlob(repo, Buffer.from('{}'));
    const subject = buildImageManifest({ config: EMPTY, layers: [{ mediaType: MediaType.ImageLayer, digest: layer, size: 5 }], artifactType: 'application/vnd.example.app' });
    const put = await pushManifest(repo, 'v1', subject.bytes);
    assert.equal(put.status, 201);
    assert.equal(put.headers.get('docker-content-digest'), subject.descriptor.digest);
    assert.equal(put.headers.get('oci-subject'), null);
    for (const ref of ['v1', subject.descriptor.digest]) {
      const got = await api(`/v2/${repo}/manifests/${ref}`, { headers: { accept: MediaType.ImageManifest } });
      assert.equal(got.status, 200);
      assert.equal(got.headers.get('content-type'), MediaType.ImageManifest);
      assert.equal(got.headers.get('docker-content-digest'), subject.descriptor.digest);
      assert.ok(Buffer.from(await got.arrayBuffer()).equals(subject.bytes));
    }

    // A referrer pushed before its subject exists is listed once the API is asked.
    const ghost = { mediaType: MediaType.ImageManifest, digest: digestOf('ghost'), size: 5 };
    const early = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.example.sig', subject: ghost });
    const earlyPut = await pushManifest(repo, early.descriptor.digest, early.bytes);
    assert.equal(earlyPut.status, 201);
    assert.equal(earlyPut.headers.get('oci-subject'), ghost.digest);

    const sig = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.example.sig', subject: subject.descriptor });
    const sbom = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.example.sbom', subject: subject.descriptor });
    for (const m of [sig, sbom]) assert.equal((await pushManifest(repo, m.descriptor.digest, m.bytes)).headers.get('oci-subject'), subject.descriptor.digest);
    const all = await api(`/v2/${repo}/referrers/${subject.descriptor.digest}`);
    assert.equal(all.headers.get('content-type'), MediaType.ImageIndex);
    const index = (await all.json()) as { mediaType: string; manifests: { digest: string; artifactType: string }[] };
    assert.equal(index.mediaType, MediaType.ImageIndex);
    assert.deepEqual(index.manifests.map((d) => d.digest).sort(), [sig.descriptor.digest, sbom.descriptor.digest].sort());
    const filtered = await api(`/v2/${repo}/referrers/${subject.descriptor.digest}?artifactType=${encodeURIComponent('application/vnd.example.sbom')}`);
    assert.equal(filtered.headers.get('oci-filters-applied'), 'artifactType');
    assert.deepEqual(((await filtered.json()) as typeof index).manifests.map((d) => d.digest), [sbom.descriptor.digest]);
    assert.deepEqual(((await (await api(`/v2/${repo}/referrers/${ghost.digest}`)).json()) as typeof index).manifests.map((d) => d.digest), [early.descriptor.digest]);
    const none = await api(`/v2/${repo}/referrers/${digestOf('nobody')}`);
    assert.equal(none.status, 200);
    assert.deepEqual(((await none.json()) as typeof index).manifests, []);
    const badRef = await api(`/v2/${repo}/referrers/sha256:nothex`);
    assert.equal(badRef.status, 400);
    assert.equal(await errorCode(badRef), 'DIGEST_INVALID');

    // Refusals.
    const missing = buildImageManifest({ config: EMPTY, layers: [{ mediaType: MediaType.ImageLayer, digest: digestOf('nope'), size: 4 }], artifactType: 'application/vnd.x' });
    const m1 = await pushManifest(repo, 'missing', missing.bytes);
    assert.equal(m1.status, 400);
    assert.equal(await errorCode(m1), 'MANIFEST_BLOB_UNKNOWN');
    const m2 = await pushManifest(repo, 'bad', Buffer.from('{"schemaVersion": 2,'));
    assert.equal(m2.status, 400);
    assert.equal(await errorCode(m2), 'MANIFEST_INVALID');
    const m3 = await pushManifest(repo, digestOf('other'), subject.bytes);
    assert.equal(m3.status, 400);
    assert.equal(await errorCode(m3), 'DIGEST_INVALID');
    const m4 = await pushManifest(repo, 'confused', subject.bytes, MediaType.ImageIndex);
    assert.equal(m4.status, 400);
    assert.equal(await errorCode(m4), 'MANIFEST_INVALID');
    const m5 = await pushManifest(repo, '-bad-tag', subject.bytes);
    assert.equal(m5.status, 400);
    await m5.body?.cancel();
    const m6 = await api(`/v2/${repo}/manifests/nope`);
    assert.equal(m6.status, 404);
    assert.equal(await errorCode(m6), 'MANIFEST_UNKNOWN');

    // Delete by tag removes the tag only; by digest removes the manifest.
    assert.equal((await pushManifest(repo, 'v2', subject.bytes)).status, 201);
    assert.equal((await api(`/v2/${repo}/manifests/v2`, { method: 'DELETE' })).status, 202);
    assert.equal((await api(`/v2/${repo}/manifests/v2`, { method: 'HEAD' })).status, 404);
    assert.equal((await api(`/v2/${repo}/manifests/v1`, { method: 'HEAD' })).status, 200);
    assert.equal((await api(`/v2/${repo}/manifests/${sbom.descriptor.digest}`, { method: 'DELETE' })).status, 202);
    const left = (await (await api(`/v2/${repo}/referrers/${subject.descriptor.digest}`)).json()) as typeof index;
    assert.deepEqual(left.manifests.map((d) => d.digest), [sig.descriptor.digest]);
  });

  test('tags and catalog paginate with n, last and Link', async () => {
    const repo = 'page/tags';
    await pushBlob(repo, Buffer.from('{}'));
    const m = buildImageManifest({ config: EMPTY, layers: [], artifactType: 'application/vnd.x' });
    for (const t of ['a', 'b', 'c', 'd', 'e']) assert.equal((await pushManifest(repo, t, m.bytes)).status, 201);
    const p1 = await api(`/v2/${repo}/tags/list?n=2`);
    assert.deepEqual(await p1.json(), { name: repo, tags: ['a', 'b'] });
    assert.equal(p1.headers.get('link'), `</v2/${repo}/tags/list?n=2&last=b>; rel="next"`);
    const p3 = await api(`/v2/${repo}/tags/list?n=2&last=d`);
    assert.deepEqual(await p3.json(), { name: repo, tags: ['e'] });
    assert.equal(p3.headers.get('link'), null);
    const unknown = await api('/v2/no/such/tags/list');
    assert.equal(unknown.status, 404);
    assert.equal(await errorCode(unknown), 'NAME_UNKNOWN');
    const cat = await api('/v2/_catalog?n=1');
    assert.equal(((await cat.json()) as { repositories: string[] }).repositories.length, 1);
    assert.match(cat.headers.get('link') ?? '', /^<\/v2\/_catalog\?n=1&last=[^>]+>; rel="next"$/);
  });

  test('malformed input gets the right code, and the server keeps serving', async () => {
    const cases: [string, RequestInit, number, string][] = [
      ['/v2/UPPER/blobs/uploads/', { method: 'POST' }, 400, 'NAME_INVALID'],
      [`/v2/${'a'.repeat(300)}/tags/list`, {}, 400, 'NAME_INVALID'],
      ['/v2/a/blobs/sha256:abc', {}, 400, 'DIGEST_INVALID'],
      ['/v2/a/blobs/md5:abc', {}, 400, 'DIGEST_INVALID'],
      ['/v2/a/manifests/sha256:zz', {}, 400, 'DIGEST_INVALID'],
      ['/v2/a/blobs/uploads/not-a-session', { method: 'PATCH', body: 'x' }, 404, 'BLOB_UPLOAD_UNKNOWN'],
      ['/v2/a/blobs/uploads/?mount=bogus&from=b', { method: 'POST' }, 400, 'DIGEST_INVALID'],
      ['/v2/a/tags/list?n=-1', {}, 400, 'UNSUPPORTED'],
    ];
    for (const [path, init, status, code] of cases) {
      const res = await api(path, init);
      assert.equal(res.status, status, `${init.method ?? 'GET'} ${path}`);
      assert.equal(await errorCode(res), code, `${init.method ?? 'GET'} ${path}`);
    }
    // fetch would normalise the dot segments away; the registry must see them and refuse.
    const dots = await raw(base, { method: 'POST', path: '/v2/a/../b/blobs/uploads/', headers: {} });
    assert.equal(dots.status, 400);
    assert.equal(JSON.parse(dots.body).errors[0].code, 'NAME_INVALID');
    // A manifest announced as larger than the limit is refused before it is read, and the connection closed.
    const huge = await raw(base, { method: 'PUT', path: '/v2/a/manifests/v1', headers: { 'content-type': MediaType.ImageManifest, 'content-length': String(100 * 1024 * 1024) }, body: Buffer.alloc(1024), endBody: false });
    assert.equal(huge.status, 413);
    assert.equal(huge.headers.connection, 'close');
    assert.equal((await api('/v2/')).status, 200);
  });
});

describe('lading serve: basic auth', () => {
  let reg: RunningRegistry;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-auth-'));
    const file = join(dir, 'htpasswd');
    await writeFile(file, `alice:${bcrypt.hashSync('s3cret', 4).replace(/^\$2b\$/, '$2y$')}\n`);
    reg = await startRegistry({ root: join(dir, 'data'), htpasswd: file });
  });
  after(async () => {
    await reg.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('401 with a Basic challenge, 200 with the right password, /healthz stays open', async () => {
    const anon = await fetch(`${reg.url}/v2/`);
    assert.equal(anon.status, 401);
    assert.equal(anon.headers.get('www-authenticate'), 'Basic realm="lading"');
    assert.equal(await errorCode(anon), 'UNAUTHORIZED');
    const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
    assert.equal((await fetch(`${reg.url}/v2/`, { headers: basic('alice', 'wrong') })).status, 401);
    assert.equal((await fetch(`${reg.url}/v2/`, { headers: basic('bob', 's3cret') })).status, 401);
    assert.equal((await fetch(`${reg.url}/v2/`, { headers: basic('alice', 's3cret') })).status, 200);
    assert.equal((await fetch(`${reg.url}/v2/`, { headers: basic('alice', 's3cret') })).status, 200);
    assert.equal((await fetch(`${reg.url}/healthz`)).status, 200);
  });
});

describe('lading serve: failures inside a handler', () => {
  test('an unexpected exception is a 500 INTERNAL, and the next request is served', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'lading-500-'));
    const { RegistryStore } = await import('./storage/store.js');
    const { FsDriver } = await import('./storage/fs-driver.js');
    const { createRegistryHandler } = await import('./app.js');
    const { createServer } = await import('node:http');
    const store = new RegistryStore(new FsDriver(dir));
    store.tags = async () => {
      throw new TypeError('boom');
    };
    const errors: unknown[] = [];
    const logger = { info: () => undefined, error: (o: unknown) => errors.push(o) } as never;
    const server = createServer(createRegistryHandler(store, { logger }));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
      const res = await fetch(`${url}/v2/x/tags/list`);
      assert.equal(res.status, 500);
      assert.equal(await errorCode(res), 'INTERNAL');
      assert.equal(errors.length, 1);
      assert.equal((await fetch(`${url}/v2/`)).status, 200);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
