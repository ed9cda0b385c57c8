import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test, type TestContext } from 'node:test';
import { Agent } from 'undici';
import { pullFiles } from '../src/artifact/pull.js';
import { MemoryStore } from '../src/content/memory.js';
import { LadingError, type ErrorCode } from '../src/errors.js';
import { copy } from '../src/graph/copy.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { buildImageManifest } from '../src/oci/manifest.js';
import { Annotation, MediaType } from '../src/oci/mediatype.js';
import { Authorizer } from '../src/remote/auth/authorizer.js';
import { staticCredentials } from '../src/remote/auth/credentials.js';
import { undiciHttpDo } from '../src/remote/auth/http.js';
import { Repository, type RepositoryOptions } from '../src/remote/repository.js';
import { Transport, type RetryPolicy } from '../src/remote/transport.js';
import { FaultServer, Faults, sha256, type FaultServerOptions } from './support/fault-server.js';

/**
 * What lading does when a registry misbehaves: truncated, corrupted and dropped bodies, rate limits,
 * server errors, hostile manifests, failed uploads, error bodies and cross-host redirects. Every failing
 * pull is also checked to leave nothing at all behind in the destination, hidden temp files included.
 */

const TIMEOUT = { timeout: 30_000 };
const TITLE = 'payload.bin';
const LAYER_SIZE = 256 * 1024;

/** Deterministic, incompressible-looking bytes. */
function content(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

/** Every entry under `dir`, hidden ones included, as relative paths; [] when `dir` does not exist. */
async function listAll(dir: string): Promise<string[]> {
  const out: string[] = [];
  const stack: string[] = [''];
  while (stack.length > 0) {
    const rel = stack.pop() as string;
    let entries;
    try {
      entries = await readdir(join(dir, rel), { withFileTypes: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw err;
    }
    for (const e of entries) {
      const p = rel ? `${rel}/${e.name}` : e.name;
      out.push(p);
      if (e.isDirectory()) stack.push(p);
    }
  }
  return out.sort();
}

async function rejectsWith(p: Promise<unknown>, codes: ErrorCode | ErrorCode[]): Promise<LadingError> {
  const want = Array.isArray(codes) ? codes : [codes];
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(caught !== undefined, `expected a failure with ${want.join(' or ')}, but it succeeded`);
  assert.ok(caught instanceof LadingError, `expected a LadingError, got ${String(caught)}`);
  assert.ok(want.includes(caught.code), `expected ${want.join(' or ')}, got ${caught.code}: ${caught.message}`);
  return caught;
}

interface Env {
  server: FaultServer;
  repo: Repository;
  agent: Agent;
  out: string;
}

interface SetupOptions {
  server?: FaultServerOptions;
  retry?: Partial<RetryPolicy>;
  repo?: Omit<RepositoryOptions, 'transport'>;
  /** Credentials for the registry: the client gets an Authorizer with them. */
  credentials?: { username: string; password: string };
}

async function setup(t: TestContext, opts: SetupOptions = {}): Promise<Env> {
  const server = await FaultServer.start(opts.server);
  const agent = new Agent({ keepAliveTimeout: 1_000 });
  const dir = await mkdtemp(join(tmpdir(), 'lading-faults-'));
  t.after(async () => {
    await agent.destroy();
    await server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const authorizer = opts.credentials
    ? new Authorizer({ credentials: staticCredentials({ [server.host]: opts.credentials }), http: undiciHttpDo(agent) })
    : undefined;
  const transport = new Transport({
    retry: { baseDelayMs: 1, maxDelayMs: 5, ...opts.retry },
    dispatcher: agent,
    ...(authorizer ? { authorizer } : {}),
  });
  const repo = new Repository(`${server.host}/repo`, { transport, ...opts.repo });
  return { server, repo, agent, out: join(dir, 'out') };
}

interface Artifact {
  layer: Descriptor;
  layerBytes: Buffer;
  manifest: Descriptor;
  manifestBytes: Buffer;
  blobPath: string;
  manifestPath: string;
}

/** A one-file artifact tagged `v1` in `repo`: an empty config and one titled layer. */
function publish(server: FaultServer, layerBytes = content(LAYER_SIZE), declaredSize?: number): Artifact {
  const config = server.addBlob(Buffer.from('{}'));
  const { digest, size } = server.addBlob(layerBytes);
  const layer: Descriptor = { mediaType: 'application/octet-stream', digest, size: declaredSize ?? size, annotations: { [Annotation.Title]: TITLE } };
  const built = buildImageManifest({
    config: { mediaType: MediaType.Empty, digest: config.digest, size: config.size },
    layers: [layer],
    artifactType: 'application/vnd.lading.test.v1',
  });
  server.addManifest('repo', built.bytes, built.descriptor.mediaType, ['v1']);
  return {
    layer,
    layerBytes,
    manifest: built.descriptor,
    manifestBytes: built.bytes,
    blobPath: `/v2/repo/blobs/${digest}`,
    manifestPath: `/v2/repo/manifests/${built.descriptor.digest}`,
  };
}

async function assertPulled(env: Env, art: Artifact): Promise<void> {
  assert.deepEqual(await listAll(env.out), [TITLE]);
  assert.ok((await readFile(join(env.out, TITLE))).equals(art.layerBytes), 'the pulled file differs from the layer');
}

async function assertNothingWritten(env: Env): Promise<void> {
  assert.deepEqual(await listAll(env.out), [], 'the destination must hold no file, partial or temporary');
}

function rangesOf(env: Env, path: string): Array<string | undefined> {
  return env.server.requestsTo('GET', path).map((r) => r.headers.range as string | undefined);
}

// ------------------------------------------------------------------ 1. truncated bodies

test('a body cut short of its Content-Length once is resumed with Range and verified', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.truncate(70_000));
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined, 'bytes=70000-']);
});

test('a body cut short of its Content-Length every time fails with E_NETWORK and leaves no file', TIMEOUT, async (t) => {
  const env = await setup(t, { repo: { maxResumes: 2 } });
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath, times: Infinity }, Faults.truncate(10_000));
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), ['E_NETWORK', 'E_SIZE_MISMATCH']);
  await assertNothingWritten(env);
  // The first request and then exactly maxResumes resumes, each from where the last one stopped.
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined, 'bytes=10000-', 'bytes=20000-']);
});

test('a registry announcing a shorter blob than the descriptor is refused with E_SIZE_MISMATCH before reading it', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.short(100_000));
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_SIZE_MISMATCH');
  await assertNothingWritten(env);
  // The Content-Length contradicts the descriptor: no resume is attempted against such a registry.
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined]);
});

test('a short body every time fails with E_SIZE_MISMATCH at once and leaves no file', TIMEOUT, async (t) => {
  const env = await setup(t, { repo: { maxResumes: 3 } });
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath, times: Infinity }, Faults.short(1_000));
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_SIZE_MISMATCH');
  await assertNothingWritten(env);
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined]);
});

// ------------------------------------------------------------------ 2. wrong bytes

test('a blob of the right length but other bytes fails with E_DIGEST_MISMATCH and leaves no file', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.wrongBytes());
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_DIGEST_MISMATCH');
  await assertNothingWritten(env);
  assert.equal(env.server.requestsTo('GET', art.blobPath).length, 1, 'a digest mismatch is not retried');
});

test('copying a corrupted blob into memory keeps neither the blob nor its manifest', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.wrongBytes());
  const mem = new MemoryStore();
  await rejectsWith(copy(env.repo, 'v1', mem, 'v1'), 'E_DIGEST_MISMATCH');
  assert.equal(await mem.exists(art.layer), false);
  assert.equal(await mem.exists(art.manifest), false);
  await rejectsWith(mem.resolve('v1'), 'E_NOT_FOUND');
});

test('a blob longer than its descriptor fails with E_SIZE_MISMATCH and the client hangs up', TIMEOUT, async (t) => {
  const env = await setup(t);
  // Far more than socket buffers hold: the server can only finish if the client reads it all.
  const art = publish(env.server, Buffer.alloc(32 * 1024 * 1024, 0x5a), 1024 * 1024);
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_SIZE_MISMATCH');
  await assertNothingWritten(env);
  const gets = env.server.requestsTo('GET', art.blobPath);
  assert.equal(gets.length, 1);
  // Settles only once the connection is released; a client that keeps the body open never gets here.
  const { complete } = await gets[0]!.closed;
  assert.equal(complete, false, 'the client stops reading instead of draining 32 MiB');
});

test('copying a blob longer than its descriptor into memory fails and releases the connection', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server, Buffer.alloc(32 * 1024 * 1024, 0x5a), 1024 * 1024);
  const mem = new MemoryStore();
  await rejectsWith(copy(env.repo, 'v1', mem, 'v1'), 'E_SIZE_MISMATCH');
  assert.equal(await mem.exists(art.layer), false);
  const { complete } = await env.server.requestsTo('GET', art.blobPath)[0]!.closed;
  assert.equal(complete, false);
});

test('a consumer that abandons a fetched blob stream releases the connection', TIMEOUT, async (t) => {
  const env = await setup(t);
  const big = Buffer.alloc(32 * 1024 * 1024, 0x33);
  const { digest, size } = env.server.addBlob(big);
  const body = await env.repo.fetch({ mediaType: 'application/octet-stream', digest, size });
  let first = 0;
  for await (const chunk of body) {
    first = (chunk as Buffer).length;
    break; // destroys the stream
  }
  assert.ok(first > 0);
  const { complete } = await env.server.requestsTo('GET', `/v2/repo/blobs/${digest}`)[0]!.closed;
  assert.equal(complete, false, 'the response is cut off rather than read on or left open');
});

// ------------------------------------------------------------------ 3. dropped connections

test('a connection dropped mid-body once is resumed from the byte received', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.drop(123_457));
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined, 'bytes=123457-']);
});

test('a copy into memory survives a dropped connection and keeps identical bytes', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.drop(50_000));
  const mem = new MemoryStore();
  await copy(env.repo, 'v1', mem, 'v1');
  const chunks: Buffer[] = [];
  for await (const c of await mem.fetch(art.layer)) chunks.push(c as Buffer);
  assert.ok(Buffer.concat(chunks).equals(art.layerBytes));
  assert.equal((await mem.resolve('v1')).digest, art.manifest.digest);
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined, 'bytes=50000-']);
});

test('a connection dropped every time fails with E_NETWORK after maxResumes resumes and leaves no file', TIMEOUT, async (t) => {
  const env = await setup(t, { repo: { maxResumes: 4 } });
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath, times: Infinity }, Faults.drop(20_000));
  const err = await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_NETWORK');
  await assertNothingWritten(env);
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined, 'bytes=20000-', 'bytes=40000-', 'bytes=60000-', 'bytes=80000-']);
  assert.equal(err.details?.received, 100_000);
});

// ------------------------------------------------------------------ 4. Range ignored

test('a registry that ignores Range on resume still yields the right bytes', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.drop(99_999));
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.ignoreRange());
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  const gets = env.server.requestsTo('GET', art.blobPath);
  assert.equal(gets.length, 2);
  assert.equal(gets[1]!.headers.range, 'bytes=99999-');
  assert.equal(gets[1]!.status, 200, 'the server answered the whole body');
});

test('a registry that ignores Range and then corrupts the body is still caught', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.drop(10_000));
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.wrongBytes());
  // wrongBytes changes the middle byte, after the part already received: the resumed tail is bad.
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_DIGEST_MISMATCH');
  await assertNothingWritten(env);
});

test('a registry that answers a resume with the wrong range fails with E_PROTOCOL and leaves no file', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.drop(10_000));
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.wrongRange());
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_PROTOCOL');
  await assertNothingWritten(env);
  assert.deepEqual(rangesOf(env, art.blobPath), [undefined, 'bytes=10000-']);
});

// ------------------------------------------------------------------ 5. rate limits

test('429 with Retry-After: 1 is waited out and retried exactly once', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.status(429, { retryAfter: '1' }));
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  const gets = env.server.requestsTo('GET', art.blobPath);
  assert.deepEqual(gets.map((r) => r.status), [429, 200]);
});

test('429 with a Retry-After beyond maxRetryAfterMs fails at once with E_TOO_MANY_REQUESTS', TIMEOUT, async (t) => {
  const env = await setup(t, { retry: { maxRetryAfterMs: 2_000 } });
  const art = publish(env.server);
  env.server.inject(
    { method: 'GET', path: art.blobPath },
    Faults.status(429, { retryAfter: '3600', body: JSON.stringify({ errors: [{ code: 'TOOMANYREQUESTS', message: 'slow down' }] }) }),
  );
  const err = await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_TOO_MANY_REQUESTS');
  assert.equal(env.server.requestsTo('GET', art.blobPath).length, 1, 'not retried');
  assert.equal(err.details?.retryAfter, '3600');
  await assertNothingWritten(env);
});

// ------------------------------------------------------------------ 6. server errors

test('500 once on HEAD manifest, GET manifest and GET blob is retried and succeeds', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'HEAD', path: '/v2/repo/manifests/v1' }, Faults.status(500));
  env.server.inject({ method: 'GET', path: art.manifestPath }, Faults.status(500));
  env.server.inject({ method: 'GET', path: art.blobPath }, Faults.status(500));
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  assert.deepEqual(env.server.requestsTo('HEAD', '/v2/repo/manifests/v1').map((r) => r.status), [500, 200]);
  assert.deepEqual(env.server.requestsTo('GET', art.manifestPath).map((r) => r.status), [500, 200]);
  assert.deepEqual(env.server.requestsTo('GET', art.blobPath).map((r) => r.status), [500, 200]);
});

test('500 once on the HEAD of a blob (exists) is retried', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'HEAD', path: art.blobPath }, Faults.status(503));
  assert.equal(await env.repo.exists(art.layer), true);
  assert.equal(env.server.requestsTo('HEAD', art.blobPath).length, 2);
});

test('500 forever on HEAD manifest fails with E_REGISTRY after exactly `attempts` tries', TIMEOUT, async (t) => {
  const env = await setup(t, { retry: { attempts: 3 } });
  publish(env.server);
  env.server.inject({ method: 'HEAD', path: '/v2/repo/manifests/v1', times: Infinity }, Faults.status(500));
  const err = await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_REGISTRY');
  assert.equal(err.details?.status, 500);
  assert.equal(env.server.requestsTo('HEAD', '/v2/repo/manifests/v1').length, 3);
  await assertNothingWritten(env);
});

test('500 forever on a blob GET fails with E_REGISTRY after exactly `attempts` tries and leaves no file', TIMEOUT, async (t) => {
  const env = await setup(t, { retry: { attempts: 4 } });
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.blobPath, times: Infinity }, Faults.status(502));
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_REGISTRY');
  assert.equal(env.server.requestsTo('GET', art.blobPath).length, 4);
  await assertNothingWritten(env);
});

// ------------------------------------------------------------------ 7. hostile manifests

test('manifest bytes that do not hash to the requested digest fail with E_DIGEST_MISMATCH', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject({ method: 'GET', path: art.manifestPath }, Faults.wrongBytes());
  await rejectsWith(pullFiles(env.repo, art.manifest.digest, env.out), 'E_DIGEST_MISMATCH');
  assert.equal(env.server.requestsTo('GET', art.blobPath).length, 0, 'no layer is fetched for a bad manifest');
  await assertNothingWritten(env);
  // The same through the reference path (GET by digest, no HEAD first).
  env.server.inject({ method: 'GET', path: art.manifestPath }, Faults.wrongBytes());
  await rejectsWith(env.repo.fetchManifestByReference(art.manifest.digest), 'E_DIGEST_MISMATCH');
});

test('an endless manifest fails with E_MANIFEST_TOO_LARGE and the client hangs up early', TIMEOUT, async (t) => {
  const env = await setup(t);
  publish(env.server);
  // HEAD answers without digest or length, so resolve has to read the manifest itself.
  env.server.inject({ path: '/v2/repo/manifests/v1', times: 2 }, Faults.endless());
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_MANIFEST_TOO_LARGE');
  assert.equal(env.server.endless.length, 1);
  const result = await env.server.endless[0]!;
  assert.equal(result.closedByClient, true, 'the client must close the connection, not read on');
  assert.ok(result.written < 256 * 1024 * 1024);
  await assertNothingWritten(env);
});

test('a manifest announced larger than 4 MiB is refused before it is read', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  const huge = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      config: { mediaType: MediaType.Empty, digest: art.layer.digest, size: 2 },
      layers: [],
      annotations: { padding: 'x'.repeat(5 * 1024 * 1024) },
    }),
  );
  const digest = env.server.addManifest('repo', huge, MediaType.ImageManifest, ['huge']);
  await rejectsWith(pullFiles(env.repo, 'huge', env.out), 'E_MANIFEST_TOO_LARGE');
  assert.equal(env.server.requestsTo('GET', `/v2/repo/manifests/${digest}`).length, 0);
  await assertNothingWritten(env);
});

test('a manifest that is not JSON fails with E_JSON_INVALID and writes nothing', TIMEOUT, async (t) => {
  const env = await setup(t);
  publish(env.server);
  env.server.addManifest('repo', Buffer.from('{"schemaVersion": 2, "layers": [ oops'), MediaType.ImageManifest, ['broken']);
  await rejectsWith(pullFiles(env.repo, 'broken', env.out), ['E_JSON_INVALID', 'E_MANIFEST_INVALID']);
  await assertNothingWritten(env);
});

test('a manifest served with an unknown media type fails with E_MEDIA_TYPE_UNSUPPORTED', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.addManifest('repo', art.manifestBytes, 'application/vnd.example.unknown.v1+json', ['odd']);
  await rejectsWith(pullFiles(env.repo, 'odd', env.out), 'E_MEDIA_TYPE_UNSUPPORTED');
  assert.equal(env.server.requestsTo('GET', art.blobPath).length, 0);
  await assertNothingWritten(env);
});

test('a manifest declaring an unknown media type in its body fails with E_MEDIA_TYPE_UNSUPPORTED', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  const doc = JSON.parse(art.manifestBytes.toString('utf8')) as Record<string, unknown>;
  doc.mediaType = 'application/vnd.example.unknown.v1+json';
  env.server.addManifest('repo', Buffer.from(JSON.stringify(doc)), MediaType.ImageManifest, ['odd']);
  await rejectsWith(pullFiles(env.repo, 'odd', env.out), 'E_MEDIA_TYPE_UNSUPPORTED');
  await assertNothingWritten(env);
});

// ------------------------------------------------------------------ 8. uploads

function blobDesc(bytes: Buffer): Descriptor {
  return { mediaType: 'application/octet-stream', digest: sha256(bytes), size: bytes.length };
}

/** A stream that hands out `bytes` in pieces, as a file would. */
function streamOf(bytes: Buffer, piece = 1500): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += piece) parts.push(bytes.subarray(i, i + piece));
  return Readable.from(parts, { objectMode: false });
}

test('a 500 on the monolithic PUT of a streamed blob is not replayed', TIMEOUT, async (t) => {
  const env = await setup(t);
  const bytes = content(20_000, 7);
  const desc = blobDesc(bytes);
  env.server.inject({ method: 'PUT', path: /^\/v2\/repo\/blobs\/uploads\// }, Faults.status(500));
  const err = await rejectsWith(env.repo.push(desc, streamOf(bytes)), 'E_REGISTRY');
  assert.equal(err.details?.status, 500);
  const puts = env.server.requests.filter((r) => r.method === 'PUT');
  assert.equal(puts.length, 1, 'a stream body is sent once');
  assert.equal(env.server.requests.filter((r) => r.method === 'DELETE').length, 1, 'the failed session is cleaned up');
  assert.equal(env.server.blobs.has(desc.digest), false);
});

test('a dropped monolithic PUT of a streamed blob is not replayed and fails with E_NETWORK', TIMEOUT, async (t) => {
  const env = await setup(t);
  const bytes = content(200_000, 8);
  const desc = blobDesc(bytes);
  env.server.inject({ method: 'PUT', path: /^\/v2\/repo\/blobs\/uploads\// }, Faults.drop(5_000));
  await rejectsWith(env.repo.push(desc, streamOf(bytes)), 'E_NETWORK');
  assert.equal(env.server.requests.filter((r) => r.method === 'PUT').length, 1);
  assert.equal(env.server.blobs.has(desc.digest), false);
});

test('a chunked upload whose PATCH drops mid-body asks the upload status and sends only the rest', TIMEOUT, async (t) => {
  const env = await setup(t, { repo: { chunkThreshold: 1_000, chunkSize: 4_096 } });
  const bytes = content(10_000, 9);
  const desc = blobDesc(bytes);
  // The second PATCH (bytes 4096-8191) is cut after 1000 bytes reach the server.
  env.server.inject({ method: 'PATCH', after: 1 }, Faults.drop(1_000));
  await env.repo.push(desc, streamOf(bytes));

  const stored = env.server.blobs.get(desc.digest);
  assert.ok(stored, 'the registry holds the blob');
  assert.ok(stored.equals(bytes), 'the assembled blob is byte-identical');

  const seq = env.server.requests
    .filter((r) => r.path.startsWith('/v2/repo/blobs/uploads/'))
    .map((r) => `${r.method}${r.method === 'PATCH' ? ` ${r.headers['content-range']}` : ''}`);
  assert.deepEqual(seq, ['POST', 'PATCH 0-4095', 'PATCH 4096-8191', 'GET', 'PATCH 5096-8191', 'PATCH 8192-9999', 'PUT']);
  const resumed = env.server.requests.filter((r) => r.method === 'PATCH')[2]!;
  assert.equal(resumed.headers['content-length'], '3096');
  assert.equal(resumed.bodyBytes, 3096);
});

test('a chunked upload whose PATCH gets a 500 resumes from the upload status', TIMEOUT, async (t) => {
  const env = await setup(t, { repo: { chunkThreshold: 1_000, chunkSize: 4_096 } });
  const bytes = content(9_000, 10);
  const desc = blobDesc(bytes);
  env.server.inject({ method: 'PATCH', after: 1 }, Faults.status(500));
  await env.repo.push(desc, streamOf(bytes));
  assert.ok(env.server.blobs.get(desc.digest)?.equals(bytes));
  const patches = env.server.requests.filter((r) => r.method === 'PATCH').map((r) => r.headers['content-range']);
  assert.deepEqual(patches, ['0-4095', '4096-8191', '4096-8191', '8192-8999']);
  assert.equal(env.server.requests.filter((r) => r.method === 'GET').length, 1);
});

test('a chunked upload whose PATCH drops every time gives up after maxResumes and closes the session', TIMEOUT, async (t) => {
  const env = await setup(t, { repo: { chunkThreshold: 1_000, chunkSize: 4_096, maxResumes: 2 } });
  const bytes = content(10_000, 12);
  const desc = blobDesc(bytes);
  env.server.inject({ method: 'PATCH', times: Infinity }, Faults.drop(100));
  await rejectsWith(env.repo.push(desc, streamOf(bytes)), 'E_NETWORK');
  const seq = env.server.requests.map((r) => `${r.method}${r.method === 'PATCH' ? ` ${r.headers['content-range']}` : ''}`);
  assert.deepEqual(seq, ['POST', 'PATCH 0-4095', 'GET', 'PATCH 100-4095', 'GET', 'PATCH 200-4095', 'DELETE']);
  assert.equal(env.server.blobs.has(desc.digest), false);
});

test('a 500 on opening an upload session is retried (an orphan session is harmless)', TIMEOUT, async (t) => {
  const env = await setup(t);
  const bytes = content(5_000, 11);
  const desc = blobDesc(bytes);
  env.server.inject({ method: 'POST', path: '/v2/repo/blobs/uploads/' }, Faults.status(503));
  await env.repo.push(desc, streamOf(bytes));
  assert.ok(env.server.blobs.get(desc.digest)?.equals(bytes));
  assert.equal(env.server.requests.filter((r) => r.method === 'POST').length, 2);
  assert.equal(env.server.requests.filter((r) => r.method === 'PUT').length, 1);
});

test('a registry that refuses connections fails with E_NETWORK after the retries', TIMEOUT, async (t) => {
  const env = await setup(t);
  const host = env.server.host;
  await env.server.close();
  const repo = new Repository(`${host}/repo`, {
    transport: new Transport({ retry: { attempts: 3, baseDelayMs: 1, maxDelayMs: 5 }, dispatcher: env.agent }),
  });
  const err = await rejectsWith(pullFiles(repo, 'v1', env.out), 'E_NETWORK');
  assert.equal(err.details?.cause, 'ECONNREFUSED');
  await assertNothingWritten(env);
});

// ------------------------------------------------------------------ 9. error bodies

test('403 with an OCI error body is E_DENIED and names the registry code', TIMEOUT, async (t) => {
  const env = await setup(t);
  const art = publish(env.server);
  env.server.inject(
    { method: 'GET', path: art.blobPath },
    Faults.status(403, { body: JSON.stringify({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }) }),
  );
  const err = await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_DENIED');
  assert.match(err.message, /DENIED/);
  assert.match(err.message, /requested access to the resource is denied/);
  assert.equal(env.server.requestsTo('GET', art.blobPath).length, 1, '403 is not retried');
  await assertNothingWritten(env);
});

test('401 without WWW-Authenticate is E_UNAUTHORIZED, with or without credentials', TIMEOUT, async (t) => {
  const env = await setup(t);
  publish(env.server);
  env.server.inject({ method: 'HEAD', path: '/v2/repo/manifests/v1' }, Faults.status(401));
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_UNAUTHORIZED');
  await assertNothingWritten(env);

  const authed = await setup(t, { credentials: { username: 'alice', password: 'secret-pass' } });
  publish(authed.server);
  authed.server.inject({ method: 'HEAD', path: '/v2/repo/manifests/v1' }, Faults.status(401));
  await rejectsWith(pullFiles(authed.repo, 'v1', authed.out), 'E_UNAUTHORIZED');
  assert.equal(authed.server.requestsTo('HEAD', '/v2/repo/manifests/v1').length, 1);
  await assertNothingWritten(authed);
});

// ------------------------------------------------------------------ 10. redirects

async function redirectSetup(t: TestContext): Promise<{ env: Env; art: Artifact; cdn: FaultServer; credentials: string }> {
  const creds = { username: 'alice', password: 'secret-pass' };
  const env = await setup(t, { server: { basicAuth: creds }, credentials: creds });
  const art = publish(env.server);
  const cdn = await FaultServer.start();
  t.after(() => cdn.close());
  cdn.addBlob(art.layerBytes);
  env.server.inject({ method: 'GET', path: art.blobPath, times: Infinity }, Faults.redirect(`${cdn.url}/direct/${art.layer.digest}?sig=opaque`));
  return { env, art, cdn, credentials: `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString('base64')}` };
}

test('a blob redirected to another host is fetched without the Authorization header and verified', TIMEOUT, async (t) => {
  const { env, art, cdn, credentials } = await redirectSetup(t);
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  const atRegistry = env.server.requestsTo('GET', art.blobPath);
  assert.ok(atRegistry.length >= 1);
  assert.ok(atRegistry.every((r) => r.headers.authorization === credentials), 'the registry itself gets the credentials');
  const atCdn = cdn.requestsTo('GET', `/direct/${art.layer.digest}`);
  assert.equal(atCdn.length, 1);
  assert.equal(atCdn[0]!.headers.authorization, undefined, 'credentials must not follow a redirect to another host');
  assert.equal(atCdn[0]!.url, `/direct/${art.layer.digest}?sig=opaque`);
});

test('a redirected blob whose bytes are wrong fails with E_DIGEST_MISMATCH and leaves no file', TIMEOUT, async (t) => {
  const { env, cdn } = await redirectSetup(t);
  cdn.inject({ method: 'GET' }, Faults.wrongBytes());
  await rejectsWith(pullFiles(env.repo, 'v1', env.out), 'E_DIGEST_MISMATCH');
  await assertNothingWritten(env);
  assert.ok(cdn.requests.every((r) => r.headers.authorization === undefined));
});

test('a redirected blob whose connection drops is resumed through the redirect with Range', TIMEOUT, async (t) => {
  const { env, art, cdn } = await redirectSetup(t);
  cdn.inject({ method: 'GET' }, Faults.drop(77_777));
  await pullFiles(env.repo, 'v1', env.out);
  await assertPulled(env, art);
  assert.deepEqual(
    cdn.requests.map((r) => r.headers.range),
    [undefined, 'bytes=77777-'],
  );
  assert.ok(cdn.requests.every((r) => r.headers.authorization === undefined));
});
