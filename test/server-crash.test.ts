/**
 * Issue 3, "Crashes": SIGKILL of `lading serve` mid-upload and mid-manifest-PUT, then a restart on the same
 * root: no corrupt blob, link or tag; the upload resumes or restarts cleanly. The server runs as a child
 * process (the real CLI) and is killed by its PID; fsck runs on the root while no server is running.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { request as httpRequest, type ClientRequest, type IncomingHttpHeaders } from 'node:http';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { after, test, type TestContext } from 'node:test';
import { Agent, request } from 'undici';
import { buildImageManifest, manifestChildren, parseManifest } from '../src/oci/manifest.js';
import { Repository } from '../src/remote/repository.js';
import { Transport } from '../src/remote/transport.js';
import { FsDriver } from '../src/server/storage/fs-driver.js';
import { RegistryStore } from '../src/server/storage/store.js';
import { killAllChildren, REPO_ROOT, spawnTs, startServeChild, type ServeChild } from './support/child-process.js';
import { fixtureBlob, type FixtureBlob } from './support/storage-fixtures.js';

const MiB = 1024 * 1024;
const OCTET = 'application/octet-stream';
const STORAGE_CHILD = join(REPO_ROOT, 'test', 'support', 'storage-child.ts');

const roots: string[] = [];
after(async () => {
  await killAllChildren();
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function freshRoot(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-crash-'));
  roots.push(dir);
  return join(dir, 'data');
}

function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

interface Answer {
  status: number;
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** One request through undici with the whole body at once; the answer read in full. */
async function call(dispatcher: Agent, base: string, method: string, path: string, opts: { headers?: Record<string, string>; body?: Buffer } = {}): Promise<Answer> {
  const res = await request(new URL(path, base), {
    method: method as 'GET',
    dispatcher,
    headers: opts.headers ?? {},
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  const body = Buffer.from(await res.body.arrayBuffer());
  return { status: res.statusCode, headers: res.headers, body };
}

function header(a: Answer, name: string): string | undefined {
  const v = a.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function ociCode(a: Answer): string | undefined {
  try {
    return (JSON.parse(a.body.toString('utf8')) as { errors?: { code?: string }[] }).errors?.[0]?.code;
  } catch {
    return undefined;
  }
}

/**
 * A request whose body the test writes by hand, on a connection of its own. `answer` settles with the
 * response, or with the error when the connection dies first; it never rejects.
 */
function manualRequest(url: string, method: string, headers: Record<string, string>): { req: ClientRequest; answer: Promise<Answer | Error> } {
  const req = httpRequest(url, { method, headers, agent: false });
  const answer = new Promise<Answer | Error>((resolve) => {
    req.on('response', (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) }));
      res.on('error', (err) => resolve(err));
    });
    req.on('error', (err) => resolve(err));
  });
  return { req, answer };
}

/** Polls `cond` until it holds; the bound is on time and on the number of checks. */
async function waitFor(what: string, cond: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 20_000 && Date.now() < deadline; i++) {
    if (await cond()) return;
    await delay(2);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

async function fileSize(path: string): Promise<number> {
  return (await stat(path).catch(() => undefined))?.size ?? -1;
}

/** Event-loop turns, counted: a varying but bounded point in time that no timer decides. */
async function turns(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await new Promise<void>((r) => setImmediate(r));
}

async function killServer(srv: ServeChild): Promise<void> {
  const exit = await srv.kill();
  assert.equal(exit.signal, 'SIGKILL', `the server was killed, not exited (${JSON.stringify(exit)}): ${srv.stderr()}`);
}

/** fsck on the root with no server running: nothing corrupt, dangling or invalid. Leftovers are notes. */
async function assertFsckClean(root: string, when: string): Promise<void> {
  const report = await new RegistryStore(new FsDriver(root)).fsck();
  assert.deepEqual(report.problems, [], `fsck ${when}`);
  assert.equal(report.clean, true);
}

function blobPath(root: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return join(root, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data');
}

async function assertBlobServed(dispatcher: Agent, srv: ServeChild, name: string, blob: FixtureBlob): Promise<void> {
  const head = await call(dispatcher, srv.url, 'HEAD', `/v2/${name}/blobs/${blob.digest}`);
  assert.equal(head.status, 200);
  assert.equal(header(head, 'content-length'), String(blob.size));
  const got = await call(dispatcher, srv.url, 'GET', `/v2/${name}/blobs/${blob.digest}`);
  assert.equal(got.status, 200);
  assert.equal(got.body.length, blob.size);
  assert.equal(sha256(got.body), blob.digest);
}

function newAgent(t: TestContext): Agent {
  const dispatcher = new Agent({ keepAliveTimeout: 1_000 });
  t.after(() => dispatcher.close());
  return dispatcher;
}

test('SIGKILL while a PATCH streams a chunk: after a restart the session resumes from the bytes on disk (or restarts), the blob verifies, fsck is clean', { timeout: 60_000 }, async (t) => {
  const root = await freshRoot();
  const dispatcher = newAgent(t);
  t.after(killAllChildren);
  const name = 'crash/upload';
  const blob = fixtureBlob('crash-upload', 6 * MiB + 123);
  let srv = await startServeChild(root);

  const post = await call(dispatcher, srv.url, 'POST', `/v2/${name}/blobs/uploads/`, { headers: { 'content-length': '0' } });
  assert.equal(post.status, 202);
  const location = header(post, 'location')!;
  const id = location.slice(location.lastIndexOf('/') + 1);
  const first = await call(dispatcher, srv.url, 'PATCH', location, {
    headers: { 'content-type': OCTET, 'content-range': `0-${MiB - 1}` },
    body: blob.bytes.subarray(0, MiB),
  });
  assert.equal(first.status, 202);
  assert.equal(header(first, 'range'), `0-${MiB - 1}`);

  // The second chunk announces 4 MiB but only 2 MiB are sent: the server is inside that PATCH for sure.
  const { req, answer } = manualRequest(new URL(location, srv.url).toString(), 'PATCH', {
    'content-type': OCTET,
    'content-length': String(4 * MiB),
    'content-range': `${MiB}-${5 * MiB - 1}`,
  });
  req.write(blob.bytes.subarray(MiB, 3 * MiB));
  const sessionData = join(root, '_uploads', id, 'data');
  await waitFor('the server to append part of the second chunk', async () => (await fileSize(sessionData)) >= MiB + 256 * 1024);
  await killServer(srv);
  const cut = await answer;
  assert.ok(cut instanceof Error, `an unfinished PATCH got no answer, got ${JSON.stringify(cut instanceof Error ? cut : cut.status)}`);
  req.destroy();

  // On disk: the session holds a prefix of the blob and nothing else; no blob and no link exist for it.
  const held = await readFile(sessionData);
  assert.ok(held.length > MiB && held.length <= 3 * MiB, `the session holds ${held.length} bytes`);
  assert.ok(held.equals(blob.bytes.subarray(0, held.length)), 'the session bytes are a prefix of the blob');
  assert.equal(await fileSize(blobPath(root, blob.digest)), -1);
  await assertFsckClean(root, 'after the kill');

  srv = await startServeChild(root);
  const status = await call(dispatcher, srv.url, 'GET', location);
  if (status.status === 204) {
    // Resume: the session reports exactly what it holds, a chunk from the old offset is refused, the rest completes it.
    assert.equal(header(status, 'range'), `0-${held.length - 1}`);
    const stale = await call(dispatcher, srv.url, 'PATCH', location, {
      headers: { 'content-type': OCTET, 'content-range': `${MiB}-${MiB + 9}` },
      body: blob.bytes.subarray(MiB, MiB + 10),
    });
    assert.equal(stale.status, 416, 'a chunk at an offset the session has passed is refused');
    assert.equal(header(stale, 'range'), `0-${held.length - 1}`);
    // The rest in two chunks and a closing PUT that carries the last bytes.
    const cuts = [held.length, held.length + MiB, blob.size - 1000, blob.size];
    for (let c = 0; c < 2; c++) {
      const rest = await call(dispatcher, srv.url, 'PATCH', location, {
        headers: { 'content-type': OCTET, 'content-range': `${cuts[c]}-${cuts[c + 1]! - 1}` },
        body: blob.bytes.subarray(cuts[c], cuts[c + 1]),
      });
      assert.equal(rest.status, 202, rest.body.toString());
      assert.equal(header(rest, 'range'), `0-${cuts[c + 1]! - 1}`);
    }
    const close = await call(dispatcher, srv.url, 'PUT', `${location}?digest=${blob.digest}`, {
      headers: { 'content-type': OCTET, 'content-range': `${cuts[2]}-${blob.size - 1}` },
      body: blob.bytes.subarray(cuts[2]),
    });
    assert.equal(close.status, 201, close.body.toString());
    t.diagnostic(`resumed at byte ${held.length} of ${blob.size}`);
  } else {
    // Restart: the session is gone as a whole (never half there), and a fresh upload succeeds.
    assert.equal(status.status, 404);
    assert.equal(ociCode(status), 'BLOB_UPLOAD_UNKNOWN');
    const mono = await call(dispatcher, srv.url, 'POST', `/v2/${name}/blobs/uploads/?digest=${blob.digest}`, { headers: { 'content-type': OCTET }, body: blob.bytes });
    assert.equal(mono.status, 201);
    t.diagnostic('the session was gone; restarted the upload');
  }
  await assertBlobServed(dispatcher, srv, name, blob);
  assert.equal(await fileSize(join(root, '_uploads', id)), -1, 'the finished session is removed');
  await killServer(srv);
  await assertFsckClean(root, 'after the resumed upload');
});

test('SIGKILL during a monolithic blob PUT: no partial blob is readable under its digest; fsck is clean; the push then succeeds', { timeout: 60_000 }, async (t) => {
  const root = await freshRoot();
  const dispatcher = newAgent(t);
  t.after(killAllChildren);
  const name = 'crash/mono';
  const blob = fixtureBlob('crash-mono', 6 * MiB);
  let srv = await startServeChild(root);

  // Mid-body: 2 of 6 MiB sent.
  const { req, answer } = manualRequest(`${srv.url}/v2/${name}/blobs/uploads/?digest=${blob.digest}`, 'POST', {
    'content-type': OCTET,
    'content-length': String(blob.size),
  });
  req.write(blob.bytes.subarray(0, 2 * MiB));
  const uploads = join(root, '_uploads');
  await waitFor('the server to store part of the body', async () => {
    for (const e of await readdir(uploads).catch(() => [])) if ((await fileSize(join(uploads, e, 'data'))) >= 512 * 1024) return true;
    return false;
  });
  await killServer(srv);
  assert.ok((await answer) instanceof Error);
  req.destroy();
  assert.equal(await fileSize(blobPath(root, blob.digest)), -1, 'no blob file under the digest');
  await assertFsckClean(root, 'after a kill mid-body');

  srv = await startServeChild(root);
  assert.equal((await call(dispatcher, srv.url, 'HEAD', `/v2/${name}/blobs/${blob.digest}`)).status, 404);
  const get = await call(dispatcher, srv.url, 'GET', `/v2/${name}/blobs/${blob.digest}`);
  assert.equal(get.status, 404);
  assert.equal(ociCode(get), 'BLOB_UNKNOWN');

  // Whole bodies sent, the kill at a varying point after the server has them all: while it hashes,
  // publishes or links. Each blob is then either absent or complete, never partial.
  const outcomes: string[] = [];
  for (let i = 0; i < 6; i++) {
    const b = fixtureBlob(`crash-mono-${i}`, 2 * MiB + i);
    const { req: put, answer: putAnswer } = manualRequest(`${srv.url}/v2/${name}/blobs/uploads/?digest=${b.digest}`, 'POST', {
      'content-type': OCTET,
      'content-length': String(b.size),
    });
    put.end(b.bytes);
    if (i === 5) {
      // The last one is killed only once answered: an acknowledged blob must survive.
      await putAnswer;
    } else if (i >= 2) {
      // As soon as the blob is in place: before or while the server links it and removes the session.
      await waitFor('the server to place the blob', async () => (await fileSize(blobPath(root, b.digest))) >= 0);
    } else {
      // Once the server has written every byte it hashes, fsyncs, publishes and links: kill in there.
      await waitFor('the server to hold the whole body', async () => {
        if ((await fileSize(blobPath(root, b.digest))) >= 0) return true;
        for (const e of await readdir(uploads).catch(() => [])) if ((await fileSize(join(uploads, e, 'data'))) === b.size) return true;
        return false;
      });
      await turns(i * 15);
    }
    await killServer(srv);
    const a = await putAnswer;
    put.destroy();
    await assertFsckClean(root, `after kill ${i}`);
    srv = await startServeChild(root);
    const head = await call(dispatcher, srv.url, 'HEAD', `/v2/${name}/blobs/${b.digest}`);
    if (!(a instanceof Error) && a.status === 201) assert.equal(head.status, 200, 'an acknowledged blob survives the kill');
    if (head.status === 200) await assertBlobServed(dispatcher, srv, name, b);
    else assert.equal(head.status, 404);
    const onDisk = await fileSize(blobPath(root, b.digest));
    assert.ok(onDisk === -1 || onDisk === b.size, `blob file of ${onDisk} bytes`);
    outcomes.push(a instanceof Error ? `cut/${head.status}` : `${a.status}/${head.status}`);
    // A session the kill left behind stays usable, and appending to it changes nothing stored.
    for (const e of await readdir(uploads).catch(() => [])) {
      const size = await fileSize(join(uploads, e, 'data'));
      if (size <= 0) continue;
      const more = await call(dispatcher, srv.url, 'PATCH', `/v2/${name}/blobs/uploads/${e}`, {
        headers: { 'content-type': OCTET, 'content-range': `${size}-${size + 9}` },
        body: Buffer.from('0123456789'),
      });
      assert.equal(more.status, 202, more.body.toString());
    }
    if (onDisk === b.size) assert.equal(sha256(await readFile(blobPath(root, b.digest))), b.digest, 'the stored blob is intact');
  }
  t.diagnostic(`answer/HEAD after restart: ${outcomes.join(' ')}`);

  // The interrupted push, done again, succeeds.
  const again = await call(dispatcher, srv.url, 'POST', `/v2/${name}/blobs/uploads/?digest=${blob.digest}`, { headers: { 'content-type': OCTET }, body: blob.bytes });
  assert.equal(again.status, 201);
  await assertBlobServed(dispatcher, srv, name, blob);
  await killServer(srv);
  await assertFsckClean(root, 'at the end');
});

test('SIGKILL while manifest PUTs are in flight, 10 times: each tag is absent or points at its complete manifest; acknowledged ones survive; fsck is clean', { timeout: 60_000 }, async (t) => {
  const root = await freshRoot();
  const dispatcher = newAgent(t);
  t.after(killAllChildren);
  const name = 'crash/manifests';
  let srv = await startServeChild(root);

  const config = fixtureBlob('crash-config', 2048);
  const layer = fixtureBlob('crash-layer', 300 * 1024);
  const setup = new Repository(`${srv.host}/${name}`, { transport: new Transport({ dispatcher }) });
  for (const b of [config, layer]) await setup.push({ mediaType: OCTET, digest: b.digest, size: b.size }, Readable.from([b.bytes]));

  const ITERATIONS = 10;
  const PER_ITERATION = 6;
  /** tag -> the manifest digest it may point at; 'latest' may point at any manifest pushed to it. */
  const expected = new Map<string, string>();
  const manifests = new Map<string, Buffer>();
  const acked = new Map<string, string>();
  const latestCandidates = new Set<string>();
  let ackedLatest = false;
  const outcomes: number[] = [];

  for (let it = 0; it < ITERATIONS; it++) {
    if (it > 0) srv = await startServeChild(root);
    const puts: { tag: string; digest: string; req: ClientRequest; answer: Promise<Answer | Error>; flushed: Promise<void> }[] = [];
    for (let k = 0; k < PER_ITERATION; k++) {
      const { bytes, descriptor } = buildImageManifest({
        config: { mediaType: 'application/vnd.lading.test.config', digest: config.digest, size: config.size },
        layers: [{ mediaType: OCTET, digest: layer.digest, size: layer.size }],
        artifactType: 'application/vnd.lading.test',
        annotations: { iteration: String(it), put: String(k) },
      });
      manifests.set(descriptor.digest, bytes);
      latestCandidates.add(descriptor.digest);
      for (const tag of [`it${it}-${k}`, 'latest']) {
        if (tag !== 'latest') expected.set(tag, descriptor.digest);
        const { req, answer } = manualRequest(`${srv.url}/v2/${name}/manifests/${tag}`, 'PUT', {
          'content-type': descriptor.mediaType,
          'content-length': String(bytes.length),
        });
        const flushed = new Promise<void>((r) => req.on('finish', () => r()));
        req.end(bytes);
        puts.push({ tag, digest: descriptor.digest, req, answer, flushed });
      }
    }
    // Where the kill lands varies with the iteration: right after the first body left, after the first
    // answer, after half the answers, or a number of event-loop turns after every body left.
    const answered = (n: number): Promise<void> =>
      new Promise<void>((resolve) => {
        let count = 0;
        for (const p of puts) void p.answer.then(() => ++count === n && resolve());
      });
    switch (it % 4) {
      case 0:
        await puts[0]!.flushed;
        break;
      case 1:
        await answered(1);
        break;
      case 2:
        await answered(puts.length / 2);
        break;
      default:
        await Promise.all(puts.map((p) => p.flushed));
        await turns(it * 5);
    }
    await killServer(srv);
    for (const p of puts) {
      const a = await p.answer;
      p.req.destroy();
      if (a instanceof Error) continue;
      assert.equal(a.status, 201, `PUT ${p.tag}: ${a.body.toString()}`);
      outcomes.push(a.status);
      if (p.tag === 'latest') ackedLatest = true;
      else acked.set(p.tag, p.digest);
    }
    await assertFsckClean(root, `after kill ${it}`);
  }

  // A last restart: every tag is absent or complete, every acknowledged tag is there.
  srv = await startServeChild(root);
  const repo = new Repository(`${srv.host}/${name}`, { transport: new Transport({ dispatcher }) });
  const present: string[] = [];
  for await (const tag of repo.tags()) present.push(tag);
  for (const tag of acked.keys()) assert.ok(present.includes(tag), `acknowledged tag ${tag} survived`);
  if (ackedLatest) assert.ok(present.includes('latest'));
  for (const tag of [...expected.keys(), 'latest']) {
    const got = await call(dispatcher, srv.url, 'GET', `/v2/${name}/manifests/${tag}`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } });
    if (got.status === 404) {
      assert.equal(ociCode(got), 'MANIFEST_UNKNOWN');
      assert.ok(!present.includes(tag), `${tag} is listed but not served`);
      continue;
    }
    assert.equal(got.status, 200, `GET ${tag}: ${got.body.toString()}`);
    const digest = sha256(got.body);
    assert.equal(header(got, 'docker-content-digest'), digest);
    if (tag === 'latest') assert.ok(latestCandidates.has(digest), 'latest points at a manifest that was pushed to it');
    else assert.equal(digest, expected.get(tag), `${tag} points at its own manifest`);
    assert.ok(got.body.equals(manifests.get(digest)!), `${tag} serves the exact bytes pushed`);
    for (const child of manifestChildren(parseManifest(got.body, header(got, 'content-type')))) {
      const b = await call(dispatcher, srv.url, 'GET', `/v2/${name}/blobs/${child.digest}`);
      assert.equal(b.status, 200);
      assert.equal(sha256(b.body), child.digest);
    }
  }
  t.diagnostic(`${outcomes.length} of ${ITERATIONS * PER_ITERATION * 2} manifest PUTs were acknowledged before a kill; ${present.length} tags present`);
  await killServer(srv);
  await assertFsckClean(root, 'at the end');
});

test('a session whose bytes were already published when the process died cannot change the stored blob afterwards', { timeout: 60_000 }, async (t) => {
  // storage-child.ts closes an upload through a store that stops right after the blob was placed (hard-
  // linked from the session) and before the session is removed: the state a SIGKILL there leaves behind.
  const root = await freshRoot();
  const dispatcher = newAgent(t);
  t.after(killAllChildren);
  const name = 'crash/linked';
  const blob = fixtureBlob('stall', 3 * MiB);
  const stalled = spawnTs(STORAGE_CHILD, ['stall', root, 'layer-link', name]);
  const id = (await stalled.line('id ')).slice(3);
  await stalled.line('mid layer-link');
  assert.equal((await stalled.kill()).signal, 'SIGKILL');
  assert.equal(await fileSize(blobPath(root, blob.digest)), blob.size, 'the blob was placed before the kill');
  assert.equal(await fileSize(join(root, '_uploads', id, 'data')), blob.size, 'and its session is still there');

  const srv = await startServeChild(root);
  const status = await call(dispatcher, srv.url, 'GET', `/v2/${name}/blobs/uploads/${id}`);
  assert.equal(status.status, 204);
  assert.equal(header(status, 'range'), `0-${blob.size - 1}`);
  // A client that appends to the session (a chunk past the end, or a closing PUT with a body that does not
  // match) must change only the session, never the stored blob.
  const extra = await call(dispatcher, srv.url, 'PATCH', `/v2/${name}/blobs/uploads/${id}`, {
    headers: { 'content-type': OCTET, 'content-range': `${blob.size}-${blob.size + 9}` },
    body: Buffer.from('0123456789'),
  });
  assert.equal(extra.status, 202);
  const wrong = await call(dispatcher, srv.url, 'PUT', `/v2/${name}/blobs/uploads/${id}?digest=${blob.digest}`, {
    headers: { 'content-type': OCTET },
    body: Buffer.from('more'),
  });
  assert.equal(wrong.status, 400);
  assert.equal(ociCode(wrong), 'DIGEST_INVALID');
  assert.equal(await fileSize(blobPath(root, blob.digest)), blob.size, 'the stored blob kept its size');
  assert.equal(sha256(await readFile(blobPath(root, blob.digest))), blob.digest, 'the stored blob kept its bytes');
  // A later push of the same content, here or elsewhere, is linked to intact bytes.
  const again = await call(dispatcher, srv.url, 'POST', `/v2/other/repo/blobs/uploads/?digest=${blob.digest}`, { headers: { 'content-type': OCTET }, body: blob.bytes });
  assert.equal(again.status, 201);
  await assertBlobServed(dispatcher, srv, 'other/repo', blob);
  await killServer(srv);
  await assertFsckClean(root, 'after appends to a published session');
});
