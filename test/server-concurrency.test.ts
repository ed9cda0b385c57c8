/**
 * Issue 3, "Concurrency": 16 clients at once pushing the same and different blobs and tags; afterwards fsck
 * is clean and every tag points at a complete manifest. Eight clients run in this process and eight in two
 * child processes (four each), all released together; each has its own Repository and connection pool.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Agent } from 'undici';
import { parseManifest, manifestChildren } from '../src/oci/manifest.js';
import { Repository } from '../src/remote/repository.js';
import { Transport } from '../src/remote/transport.js';
import { startRegistry } from '../src/server/serve.js';
import { FsDriver } from '../src/server/storage/fs-driver.js';
import { RegistryStore } from '../src/server/storage/store.js';
import { lading } from './support/cli.js';
import { killAllChildren, spawnTs, REPO_ROOT, type LineChild } from './support/child-process.js';
import {
  CLIENTS,
  SHARED_TAG,
  isChunked,
  ownBlob,
  ownTag,
  repositoryOf,
  runClient,
  sha256,
  sharedBlob,
  type ClientResult,
} from './support/concurrent-push.js';

const CHILD = join(REPO_ROOT, 'test', 'support', 'concurrent-push-child.ts');
const PROCESSES = 2;
const PER_PROCESS = 4;
const IN_PROCESS = CLIENTS - PROCESSES * PER_PROCESS;

const roots: string[] = [];
after(async () => {
  await killAllChildren();
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

/** Every file below `dir` (relative paths), bounded in depth. */
async function walk(dir: string, depth = 0): Promise<string[]> {
  if (depth > 12) throw new Error(`${dir} is nested deeper than the store ever nests`);
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.isDirectory()) out.push(...(await walk(join(dir, e.name), depth + 1)).map((p) => `${e.name}/${p}`));
    else out.push(e.name);
  }
  return out;
}

async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('16 clients at once push the same and different blobs and tags; fsck is clean and every tag points at a complete manifest', { timeout: 120_000 }, async (t) => {
  const root = await mkdtemp(join(tmpdir(), 'lading-conc-'));
  roots.push(root);
  const data = join(root, 'data');
  // The request log (one JSON line per answered request) shows what the clients really did.
  const log: { method: string; url: string; status: number; ms: number; time: number }[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) if (line.includes('"msg":"request"')) log.push(JSON.parse(line));
      done();
    },
  });
  const reg = await startRegistry({ root: data, logger: pino({ level: 'info' }, sink) });
  let open = true;
  t.after(async () => {
    if (open) await reg.close();
  });

  // The other processes load first and wait for "go", so that all sixteen clients start together.
  const children: LineChild[] = [];
  for (let p = 0; p < PROCESSES; p++) children.push(spawnTs(CHILD, [reg.host, String(IN_PROCESS + p * PER_PROCESS), String(PER_PROCESS)]));
  t.after(async () => {
    for (const c of children) await c.kill();
  });
  await Promise.all(children.map((c) => c.line('ready', 30_000)));
  for (const c of children) c.proc.stdin!.write('go\n');
  // allSettled: a failing client is reported below, never left as an unhandled rejection.
  const local = Promise.allSettled(Array.from({ length: IN_PROCESS }, (_, i) => runClient(reg.host, i)));
  const exits = await Promise.all(children.map((c) => c.exited));
  const settled = await local;
  for (const s of settled) if (s.status === 'rejected') throw s.reason;
  exits.forEach((e, p) => assert.deepEqual(e, { code: 0, signal: null }, `child ${p} failed:\n${children[p]!.stderr()}`));
  const results: ClientResult[] = settled.map((s) => (s as PromiseFulfilledResult<ClientResult>).value);
  for (const c of children) {
    for (const l of c.lines()) if (l.startsWith('result ')) results.push(JSON.parse(l.slice('result '.length)) as ClientResult);
  }
  results.sort((a, b) => a.client - b.client);
  assert.deepEqual(results.map((r) => r.client), Array.from({ length: CLIENTS }, (_, i) => i), 'every client reported');
  assert.ok(results.some((r) => isChunked(r.client)) && results.some((r) => !isChunked(r.client)));
  assert.equal(new Set(results.map((r) => r.manifest)).size, CLIENTS, 'sixteen different manifests');

  // Every client uploaded both blobs itself (none skipped the shared one), the chunked ones in several
  // PATCHes, and the requests overlapped in time rather than running one after another.
  const push = log.filter((e) => e.method !== 'GET' && e.method !== 'HEAD');
  assert.ok(push.every((e) => e.status < 300), `every push was accepted: ${JSON.stringify(push.filter((e) => e.status >= 300))}`);
  const closes = push.filter((e) => e.status === 201 && /\/blobs\/uploads\/[^?]*\?digest=/.test(e.url));
  assert.equal(closes.length, 2 * CLIENTS, 'two blob uploads per client');
  const sharedHex = sharedBlob().digest.slice(7);
  assert.equal(closes.filter((e) => e.url.includes(sharedHex)).length, CLIENTS, 'every client uploaded the shared blob');
  const patches = push.filter((e) => e.method === 'PATCH').length;
  const chunked = results.filter((r) => isChunked(r.client)).length;
  assert.ok(patches >= chunked * (6 + 3), `chunked clients sent ${patches} PATCHes`);
  assert.equal(push.filter((e) => e.method === 'PUT' && e.url.includes('/manifests/')).length, 2 * CLIENTS, 'two tag PUTs per client');
  const edges = push.flatMap((e) => [{ at: e.time - e.ms, d: 1 }, { at: e.time, d: -1 }]).sort((a, b) => a.at - b.at || a.d - b.d);
  let inFlight = 0;
  let peak = 0;
  for (const e of edges) peak = Math.max(peak, (inFlight += e.d));
  assert.ok(peak >= 4, `at most ${peak} pushes were in flight at once`);
  t.diagnostic(`${push.length} push requests (${patches} PATCH), at most ${peak} in flight at once`);

  // Through the API, with a fresh client: every tag of every repository resolves to a complete manifest.
  const dispatcher = new Agent();
  t.after(() => dispatcher.close());
  const transport = new Transport({ dispatcher });
  const shared = sharedBlob();
  for (const name of [...new Set(results.map((r) => r.repository))].sort()) {
    const mine = results.filter((r) => r.repository === name);
    const repo = new Repository(`${reg.host}/${name}`, { transport });
    const tags: string[] = [];
    for await (const tag of repo.tags()) tags.push(tag);
    assert.deepEqual(tags.sort(), [SHARED_TAG, ...mine.map((r) => r.tag)].sort(), `tags of ${name}`);
    for (const tag of tags) {
      const desc = await repo.resolve(tag);
      const { descriptor, bytes } = await repo.fetchManifestByReference(tag);
      assert.equal(descriptor.digest, desc.digest, `${name}:${tag} HEAD and GET agree`);
      assert.equal(sha256(bytes), desc.digest, `${name}:${tag} serves the bytes of its digest`);
      if (tag === SHARED_TAG) {
        assert.ok(mine.some((r) => r.manifest === desc.digest), `${name}:${SHARED_TAG} is ${desc.digest}, none of the manifests pushed to ${name}`);
      } else {
        assert.equal(desc.digest, mine.find((r) => r.tag === tag)!.manifest, `${name}:${tag} points at its client's manifest`);
      }
      const children = manifestChildren(parseManifest(bytes, desc.mediaType));
      assert.equal(children.length, 2);
      for (const child of children) {
        const body = await readAll(await repo.fetch(child));
        assert.equal(body.length, child.size, `${child.digest} has its size`);
        assert.equal(sha256(body), child.digest, `${child.digest} hashes to its digest`);
      }
    }
    // Each client's own blob is readable in its repository, and the shared one in both.
    for (const r of mine) {
      const own = ownBlob(r.client);
      assert.equal(sha256(await readAll(await repo.fetch({ mediaType: 'application/octet-stream', digest: own.digest, size: own.size }))), own.digest);
    }
    assert.equal(sha256(await readAll(await repo.fetch({ mediaType: 'application/octet-stream', digest: shared.digest, size: shared.size }))), shared.digest);
  }

  await reg.close();
  open = false;

  // On disk, once the server is gone: fsck finds nothing wrong and nothing left over.
  const report = await new RegistryStore(new FsDriver(data)).fsck();
  assert.deepEqual(report.problems, []);
  assert.equal(report.clean, true);
  assert.deepEqual(report.notes, [], 'no temp files, orphans or trash left behind');
  // 1 shared blob + 16 own blobs + 16 manifests.
  assert.equal(report.blobs, 1 + 2 * CLIENTS);
  assert.equal(report.repositories, 2);
  // The same through the CLI, as an operator runs it.
  const cli = await lading(['fsck', '--root', data, '--json']);
  assert.equal(cli.code, 0, cli.stdout + cli.stderr);
  assert.equal(cli.json?.clean, true);
  assert.equal(cli.json?.blobs, 1 + 2 * CLIENTS);

  // The shared blob is stored once: one file under blobs/ names its digest, and no session still holds
  // a hard link to those bytes.
  const hex = shared.digest.slice('sha256:'.length);
  const blobFiles = (await walk(join(data, 'blobs'))).filter((p) => p.includes(hex));
  assert.deepEqual(blobFiles, [`sha256/${hex.slice(0, 2)}/${hex}/data`]);
  const st = await stat(join(data, 'blobs', blobFiles[0]!));
  assert.equal(st.size, shared.size);
  assert.equal(st.nlink, 1, 'no other name shares the stored bytes');
  assert.deepEqual(await walk(join(data, '_uploads')), [], 'every upload session was closed');
  // Nothing but blobs and repositories at the top of the root (no _trash, no _gc.lock).
  const top = (await readdir(data)).filter((n) => n !== '_uploads').sort();
  assert.deepEqual(top, ['blobs', 'repositories']);
  // The repositories hold exactly the links of what was pushed to them.
  for (const name of ['conc/app', 'conc/other']) {
    const mine = results.filter((r) => r.repository === name);
    const layers = (await walk(join(data, 'repositories', name, '_layers'))).sort();
    const expected = [shared.digest, ...mine.map((r) => r.own)].map((d) => `sha256/${d.slice(7)}/link`).sort();
    assert.deepEqual(layers, expected, `blob links of ${name}`);
    const revisions = (await walk(join(data, 'repositories', name, '_manifests', 'revisions'))).sort();
    assert.deepEqual(revisions, mine.map((r) => `sha256/${r.manifest.slice(7)}/link`).sort(), `manifest links of ${name}`);
  }
  assert.ok(results.every((r) => r.repository === repositoryOf(r.client) && r.tag === ownTag(r.client)));
});
