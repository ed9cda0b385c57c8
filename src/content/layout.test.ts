import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { buffer, text } from 'node:stream/consumers';
import { pathToFileURL } from 'node:url';
import { isLadingError } from '../errors.js';
import { digestOf } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { EmptyJSON, MediaType } from '../oci/mediatype.js';
import { OciLayout } from './layout.js';
import { VerifyingStream } from './verify.js';

async function tempDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-layout-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

function blob(content: string | Buffer, mediaType = 'application/octet-stream'): { desc: Descriptor; data: Buffer } {
  const data = Buffer.isBuffer(content) ? content : Buffer.from(content);
  return { desc: { mediaType, digest: digestOf(data), size: data.length }, data };
}

function manifest(doc: object): { desc: Descriptor; data: Buffer } {
  return blob(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, ...doc }), MediaType.ImageManifest);
}

async function put(layout: OciLayout, b: { desc: Descriptor; data: Buffer }): Promise<void> {
  await layout.push(b.desc, Readable.from([b.data]));
}

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

async function readIndex(dir: string): Promise<{ schemaVersion: number; mediaType?: string; manifests: Descriptor[] }> {
  return JSON.parse(await readFile(join(dir, 'index.json'), 'utf8'));
}

const isCode = (code: Parameters<typeof isLadingError>[1]) => (e: unknown) => isLadingError(e, code);

test('create writes oci-layout and an index with schemaVersion and mediaType', async (t) => {
  const dir = join(await tempDir(t), 'new');
  await OciLayout.open(dir, { create: true });
  assert.deepEqual(JSON.parse(await readFile(join(dir, 'oci-layout'), 'utf8')), { imageLayoutVersion: '1.0.0' });
  assert.deepEqual(await readIndex(dir), { schemaVersion: 2, mediaType: MediaType.ImageIndex, manifests: [] });
  const again = await OciLayout.open(dir);
  assert.deepEqual(await again.manifests(), []);
});

test('opening a directory that is not a layout fails with E_LAYOUT_INVALID', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(OciLayout.open(dir), (e: unknown) => isLadingError(e, 'E_LAYOUT_INVALID') && /oci-layout/.test((e as Error).message));
  await assert.rejects(OciLayout.open(join(dir, 'missing')), isCode('E_LAYOUT_INVALID'));
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"2.0.0"}');
  await writeFile(join(dir, 'index.json'), '{"schemaVersion":2,"manifests":[]}');
  await assert.rejects(OciLayout.open(dir), isCode('E_LAYOUT_INVALID'));
  await assert.rejects(OciLayout.open(dir, { create: true }), isCode('E_LAYOUT_INVALID'));
});

test('a malformed index.json fails with E_LAYOUT_INVALID; one without mediaType is accepted', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  for (const bad of ['{not json', '[]', '{"schemaVersion":1,"manifests":[]}', '{"schemaVersion":2,"manifests":{}}',
    '{"schemaVersion":2,"manifests":[{"mediaType":"x/y","digest":"sha256:../../etc","size":1}]}',
    `{"schemaVersion":2,"mediaType":"${MediaType.ImageManifest}","manifests":[]}`]) {
    await writeFile(join(dir, 'index.json'), bad);
    await assert.rejects(OciLayout.open(dir), isCode('E_LAYOUT_INVALID'), bad);
  }
  const m = manifest({ config: EmptyJSON, layers: [] });
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ ...m.desc, annotations: { 'org.opencontainers.image.ref.name': 'x' } }],
    annotations: { 'org.example.kept': 'yes' },
  }));
  const layout = await OciLayout.open(dir);
  assert.deepEqual(await layout.resolve('x'), m.desc);
  await put(layout, m);
  await layout.tag(m.desc, 'y');
  const index = (await readIndex(dir)) as unknown as Record<string, unknown>;
  assert.equal(index.mediaType, MediaType.ImageIndex);
  assert.deepEqual(index.annotations, { 'org.example.kept': 'yes' });
});

test('push stores blobs under blobs/<alg>/<encoded>; fetch verifies, offset gives the tail', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const b = blob(Buffer.alloc(3 << 20, 'abc'));
  assert.equal(await layout.exists(b.desc), false);
  const seen: number[] = [];
  await layout.push(b.desc, Readable.from([b.data.subarray(0, 1 << 20), b.data.subarray(1 << 20)]), {
    onProgress: (n) => seen.push(n),
  });
  assert.equal(seen.at(-1), b.data.length);
  assert.equal(await layout.exists(b.desc), true);
  assert.deepEqual(await readFile(join(dir, 'blobs', 'sha256', b.desc.digest.slice(7))), b.data);
  assert.deepEqual(await buffer(await layout.fetch(b.desc)), b.data);
  assert.deepEqual(await buffer(await layout.fetch(b.desc, { offset: 5 })), b.data.subarray(5));
  await assert.rejects(layout.fetch(blob('absent').desc), isCode('E_NOT_FOUND'));
});

test('fetch fails when the bytes on disk do not match', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const b = blob('original');
  await put(layout, b);
  await writeFile(join(dir, 'blobs', 'sha256', b.desc.digest.slice(7)), 'tampered');
  await assert.rejects(text(await layout.fetch(b.desc)), isCode('E_DIGEST_MISMATCH'));
});

test('a failed push leaves no file under blobs/', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const b = blob(Buffer.alloc(300_000, 'z'));
  await assert.rejects(layout.push(b.desc, Readable.from([Buffer.alloc(300_000, 'y')])), isCode('E_DIGEST_MISMATCH'));
  await assert.rejects(layout.push(b.desc, Readable.from([b.data.subarray(1)])), isCode('E_SIZE_MISMATCH'));
  await assert.rejects(layout.push(b.desc, Readable.from([b.data, Buffer.from('!')])), isCode('E_SIZE_MISMATCH'));
  const small = blob('tiny');
  await assert.rejects(layout.push(small.desc, Readable.from([Buffer.from('tony')])), isCode('E_DIGEST_MISMATCH'));
  await assert.rejects(
    layout.push({ ...small.desc, digest: 'sha256:../../../escape' }, Readable.from([small.data])),
    isCode('E_DIGEST_INVALID'),
  );
  assert.deepEqual(await filesUnder(join(dir, 'blobs')), []);
  assert.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
});

test('a body already verifying its descriptor is stored; an existing blob is not read again', async (t) => {
  const layout = await OciLayout.open(await tempDir(t), { create: true });
  const b = blob('verified upstream');
  const v = new VerifyingStream(b.desc);
  const pushed = layout.push(b.desc, v);
  v.end(b.data);
  await pushed;
  assert.equal(await text(await layout.fetch(b.desc)), 'verified upstream');
  let reads = 0;
  const body = new Readable({
    read() {
      reads++;
      this.push(null);
    },
  });
  await layout.push(b.desc, body);
  assert.equal(reads, 0);
  assert.ok(body.destroyed);
});

test('tags: tag replaces an entry of the same name, keeps the others; resolve by tag or digest', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const m1 = manifest({ config: EmptyJSON, layers: [], annotations: { n: '1' } });
  const m2 = manifest({ config: EmptyJSON, layers: [], annotations: { n: '2' } });
  await assert.rejects(layout.tag(m1.desc, 'v1'), isCode('E_NOT_FOUND'));
  await put(layout, m1);
  await put(layout, m2);
  await layout.tag(m1.desc, 'v1');
  await layout.tag(m1.desc, 'latest');
  await layout.tag(m2.desc, 'v1');
  assert.deepEqual(await layout.resolve('v1'), m2.desc);
  assert.deepEqual(await layout.resolve('latest'), m1.desc);
  const entries = (await readIndex(dir)).manifests;
  assert.equal(entries.length, 2);
  assert.deepEqual(entries.map((e) => e.annotations?.['org.opencontainers.image.ref.name']).sort(), ['latest', 'v1']);
  assert.deepEqual(await collect(layout.tags()), ['latest', 'v1']);
  assert.deepEqual(await collect(layout.tags({ last: 'latest' })), ['v1']);
  assert.deepEqual(await layout.resolve(m1.desc.digest), m1.desc);
  await assert.rejects(layout.resolve('v9'), (e: unknown) => isLadingError(e, 'E_NOT_FOUND') && /v9/.test((e as Error).message));
  await assert.rejects(layout.tag(m1.desc, 'bad tag'), isCode('E_REFERENCE_INVALID'));
});

test('resolve by digest reads an unindexed manifest for its media type', async (t) => {
  const layout = await OciLayout.open(await tempDir(t), { create: true });
  const idx = blob(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageIndex, manifests: [] }), MediaType.ImageIndex);
  await put(layout, idx);
  assert.deepEqual(await layout.resolve(idx.desc.digest), idx.desc);
  const plain = blob('not a manifest');
  await put(layout, plain);
  await assert.rejects(layout.resolve(plain.desc.digest), isCode('E_MANIFEST_INVALID'));
  await assert.rejects(layout.resolve(blob('never stored').desc.digest), isCode('E_NOT_FOUND'));
  await assert.rejects(layout.resolve('sha256:zz'), isCode('E_DIGEST_INVALID'));
});

test('manifests with a subject are indexed untagged and listed as referrers, filtered by artifactType', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const subject = manifest({ config: EmptyJSON, layers: [] });
  await put(layout, subject);
  await layout.tag(subject.desc, 'v1');
  const sig = manifest({ artifactType: 'application/vnd.example.sig', config: EmptyJSON, layers: [], subject: subject.desc, annotations: { a: 'b' } });
  const sbom = manifest({ config: { ...EmptyJSON, mediaType: 'application/vnd.example.sbom' }, layers: [], subject: subject.desc });
  await put(layout, sig);
  await put(layout, sbom);
  await put(layout, sig);
  const index = await readIndex(dir);
  assert.equal(index.manifests.length, 3);
  assert.deepEqual(index.manifests.find((e) => e.digest === sig.desc.digest), { ...sig.desc, artifactType: 'application/vnd.example.sig' });

  const reopened = await OciLayout.open(dir);
  const all = await collect(reopened.referrers(subject.desc));
  assert.deepEqual(all.map((d) => d.digest).sort(), [sig.desc.digest, sbom.desc.digest].sort());
  assert.deepEqual(await collect(reopened.referrers(subject.desc, 'application/vnd.example.sig')), [
    { ...sig.desc, artifactType: 'application/vnd.example.sig', annotations: { a: 'b' } },
  ]);
  assert.deepEqual((await collect(reopened.referrers(subject.desc, 'application/vnd.example.sbom'))).map((d) => d.digest), [sbom.desc.digest]);
  assert.deepEqual(await collect(reopened.referrers(sig.desc)), []);
  assert.deepEqual(await collect(reopened.tags()), ['v1']);
});

test('delete removes index entries and the blob', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const m = manifest({ config: EmptyJSON, layers: [] });
  const other = manifest({ config: EmptyJSON, layers: [], annotations: { other: 'yes' } });
  await put(layout, m);
  await put(layout, other);
  await layout.tag(m.desc, 'a');
  await layout.tag(m.desc, 'b');
  await layout.tag(other.desc, 'c');
  await layout.delete(m.desc);
  assert.equal(await layout.exists(m.desc), false);
  assert.deepEqual((await layout.manifests()).map((d) => d.digest), [other.desc.digest]);
  assert.deepEqual(await collect(layout.tags()), ['c']);
  await assert.rejects(layout.delete(m.desc), isCode('E_NOT_FOUND'));
});

test('concurrent tags from one process all land in index.json', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true });
  const m = manifest({ config: EmptyJSON, layers: [] });
  await put(layout, m);
  const names = Array.from({ length: 30 }, (_, i) => `t${i}`);
  await Promise.all(names.map((n) => layout.tag(m.desc, n)));
  assert.deepEqual(await collect(layout.tags()), [...names].sort());
});

test('a lock left by a dead process, or one older than staleMs, is taken over', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true, lock: { timeoutMs: 5_000, staleMs: 60_000 } });
  const m = manifest({ config: EmptyJSON, layers: [] });
  await put(layout, m);
  const deadPid = await new Promise<number>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', () => resolve(child.pid!));
  });
  const lock = join(dir, 'index.json.lock');
  await writeFile(lock, JSON.stringify({ pid: deadPid, host: hostname(), time: Date.now(), nonce: 'x' }));
  await layout.tag(m.desc, 'after-dead');
  await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname(), time: 0, nonce: 'y' }));
  const old = new Date(Date.now() - 120_000);
  await utimes(lock, old, old);
  await layout.tag(m.desc, 'after-old');
  assert.deepEqual(await collect(layout.tags()), ['after-dead', 'after-old']);
  assert.deepEqual((await readdir(dir)).sort(), ['blobs', 'index.json', 'oci-layout']);
});

test('a live, fresh lock makes updates fail with E_IO after the timeout', async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(dir, { create: true, lock: { timeoutMs: 150, staleMs: 60_000 } });
  const m = manifest({ config: EmptyJSON, layers: [] });
  await put(layout, m);
  await writeFile(join(dir, 'index.json.lock'), JSON.stringify({ pid: process.pid, host: hostname(), time: Date.now(), nonce: 'z' }));
  await assert.rejects(layout.tag(m.desc, 'blocked'), (e: unknown) => isLadingError(e, 'E_IO') && /lock/.test((e as Error).message));
  await rm(join(dir, 'index.json.lock'));
  await layout.tag(m.desc, 'free');
  assert.deepEqual(await collect(layout.tags()), ['free']);
});

const CHILD_SCRIPT = `
import { Readable } from 'node:stream';
const { OciLayout } = await import(process.env.LAYOUT_MODULE);
const [dir, prefix, count, desc] = [process.env.DIR, process.env.PREFIX, Number(process.env.COUNT), JSON.parse(process.env.DESC)];
const layout = await OciLayout.open(dir);
process.send('ready');
process.once('message', async () => {
  for (let i = 0; i < count; i++) await layout.tag(desc, prefix + i);
  process.disconnect();
});
`;

test('two processes tagging the same layout at once lose no tag', { timeout: 60_000 }, async (t) => {
  const dir = await tempDir(t);
  const layout = await OciLayout.open(join(dir, 'layout'), { create: true });
  const m = manifest({ config: EmptyJSON, layers: [] });
  await put(layout, m);
  const script = join(dir, 'tagger.mjs');
  await writeFile(script, CHILD_SCRIPT);

  const children: ChildProcess[] = [];
  t.after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill();
  });
  const exits: Promise<number | null>[] = [];
  const ready: Promise<void>[] = [];
  for (const prefix of ['a', 'b']) {
    const child = fork(script, [], {
      execArgv: ['--import', 'tsx'],
      env: {
        ...process.env,
        LAYOUT_MODULE: pathToFileURL(join(import.meta.dirname, 'layout.ts')).href,
        DIR: join(dir, 'layout'),
        PREFIX: `${prefix}-`,
        COUNT: '50',
        DESC: JSON.stringify(m.desc),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    ready.push(new Promise((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`child ${prefix} exited early with ${code}`)));
    }));
    exits.push(new Promise((resolve) => child.once('exit', (code) => resolve(code))));
  }
  await Promise.all(ready);
  // Both start only once both are ready, so that their updates overlap.
  for (const c of children) c.send('go');
  assert.deepEqual(await Promise.all(exits), [0, 0]);

  const index = await readIndex(join(dir, 'layout'));
  const names = index.manifests.map((e) => e.annotations?.['org.opencontainers.image.ref.name']).sort();
  const expected = ['a', 'b'].flatMap((p) => Array.from({ length: 50 }, (_, i) => `${p}-${i}`)).sort();
  assert.deepEqual(names, expected);
  assert.deepEqual(await collect(layout.tags()), expected);
  assert.deepEqual((await readdir(join(dir, 'layout'))).sort(), ['blobs', 'index.json', 'oci-layout']);
});
