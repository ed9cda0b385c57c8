import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isLadingError, type LadingError } from '../errors.js';
import { MemoryStore } from '../content/memory.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { buildImageIndex, buildImageManifest } from '../oci/manifest.js';
import { parseReference } from '../oci/reference.js';
import { resolveBundle, type Opener, type PlanNode } from '../artifact/bundle.js';
import { canonicalJsonBytes } from '../artifact/canonical.js';
import { Families } from '../artifact/family.js';
import { VARIANT_ANNOTATION_PREFIX } from '../artifact/variants.js';
import {
  checkFrozen,
  checkFrozenPlan,
  emptyLockfile,
  encodeLockfile,
  lockEntriesFromPlan,
  lockKey,
  mergeLock,
  parseLockfile,
  readLockfile,
  requireLockfile,
  updateLockfile,
  writeLockfile,
  type LockEntry,
  type Lockfile,
} from './lockfile.js';

const D1 = `sha256:${'1'.repeat(64)}`;
const D2 = `sha256:${'2'.repeat(64)}`;
const D3 = `sha256:${'3'.repeat(64)}`;
const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

class Registry implements Opener {
  private readonly stores = new Map<string, MemoryStore>();
  store(ref: string): MemoryStore {
    const r = parseReference(ref);
    const key = `${r.registry}/${r.repository}`;
    let s = this.stores.get(key);
    if (!s) this.stores.set(key, (s = new MemoryStore()));
    return s;
  }
  async open(ref: string) {
    const r = parseReference(ref);
    return { target: this.store(ref), reference: r.digest ?? r.tag ?? 'latest', display: ref };
  }
}

async function put(store: MemoryStore, data: Buffer, mediaType: string): Promise<Descriptor> {
  const desc = { mediaType, digest: digestOf(data), size: data.length };
  await store.push(desc, Readable.from([data]));
  return desc;
}

async function push(reg: Registry, ref: string, family: string, spec: Record<string, unknown> = {}, tag = true): Promise<Descriptor> {
  const store = reg.store(ref);
  const envelope = { apiVersion: 'lading.dev/v1', kind: family, metadata: { name: 'x' }, spec };
  const config = await put(store, canonicalJsonBytes(envelope), `application/vnd.lading.${family}.config.v1+json`);
  const layer = await put(store, Buffer.from(`${ref} ${Math.random()}`), 'application/vnd.oci.image.layer.v1.tar');
  const built = buildImageManifest({ config, layers: [layer], artifactType: `application/vnd.lading.${family}.v1` });
  await store.push(built.descriptor, Readable.from([built.bytes]));
  if (tag) await store.tag(built.descriptor, parseReference(ref).tag!);
  return built.descriptor;
}

async function pushIndex(reg: Registry, ref: string): Promise<{ index: Descriptor; amd64: Descriptor; arm64: Descriptor }> {
  const amd64 = await push(reg, ref, 'cli', { executable: 'bin/tool' }, false);
  const arm64 = await push(reg, ref, 'cli', { executable: 'bin/tool' }, false);
  const built = buildImageIndex({
    artifactType: 'application/vnd.lading.cli.v1',
    manifests: [
      { ...amd64, platform: { os: 'linux', architecture: 'amd64' } },
      { ...arm64, platform: { os: 'linux', architecture: 'arm64' }, annotations: { [`${VARIANT_ANNOTATION_PREFIX}substrate`]: 'metal' } },
    ],
  });
  const store = reg.store(ref);
  await store.push(built.descriptor, Readable.from([built.bytes]));
  await store.tag(built.descriptor, parseReference(ref).tag!);
  return { index: built.descriptor, amd64, arm64 };
}

/** app:1 → tool:1 (cli index), lib:1 (pack, pinned by digest), sub:1 → (lib:2) */
async function project(reg: Registry) {
  const tool = await pushIndex(reg, 'reg.test/p/tool:1');
  const lib1 = await push(reg, 'reg.test/p/lib:1', 'pack');
  const lib2 = await push(reg, 'reg.test/p/lib:2', 'pack');
  const sub = await push(reg, 'reg.test/p/sub:1', 'bundle', { components: [{ ref: 'reg.test/p/lib:2' }] });
  const app = await push(reg, 'reg.test/p/app:1', 'bundle', {
    components: [
      { name: 'tool', ref: 'reg.test/p/tool:1' },
      { name: 'lib', ref: 'reg.test/p/lib:1', digest: lib1.digest },
      { name: 'sub', ref: 'reg.test/p/sub:1' },
    ],
  });
  return { tool, lib1, lib2, sub, app };
}

async function tempDir(): Promise<{ dir: string; done: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-lock-'));
  return { dir, done: () => rm(dir, { recursive: true, force: true }) };
}

const entry = (digest: string, extra: Partial<LockEntry> = {}): LockEntry => ({ digest, mediaType: MANIFEST, size: 10, ...extra });

test('lock keys are references in their full form', () => {
  assert.equal(lockKey('ubuntu'), 'docker.io/library/ubuntu:latest');
  assert.equal(lockKey('index.docker.io/org/app:2'), 'docker.io/org/app:2');
  assert.equal(lockKey('reg.test/a'), 'reg.test/a:latest');
  assert.equal(lockKey(`reg.test/a@${D1}`), `reg.test/a@${D1}`);
  assert.equal(lockKey(`reg.test/a:1@${D1}`), `reg.test/a:1@${D1}`);
  assert.equal(lockKey('layout:./out'), 'layout:./out:latest');
  assert.equal(lockKey(`layout:./out@${D1}`), `layout:./out@${D1}`);
  for (const k of ['ubuntu', 'reg.test/a', 'layout:./out', 'layout:./a:b']) assert.equal(lockKey(lockKey(k)), lockKey(k));
});

test('a plan gives one entry per artifact, components keyed as the bundle pins them', async () => {
  const reg = new Registry();
  const d = await project(reg);
  const plan = await resolveBundle(reg, 'reg.test/p/app:1', Families.builtin());
  const entries = lockEntriesFromPlan(plan);
  assert.deepEqual(Object.keys(entries), [
    'reg.test/p/app:1',
    'reg.test/p/tool:1',
    `reg.test/p/lib:1@${d.lib1.digest}`,
    'reg.test/p/sub:1',
    'reg.test/p/lib:2',
  ]);
  assert.deepEqual(entries['reg.test/p/app:1'], {
    digest: d.app.digest,
    mediaType: MANIFEST,
    size: d.app.size,
    family: 'bundle',
    components: ['reg.test/p/tool:1', `reg.test/p/lib:1@${d.lib1.digest}`, 'reg.test/p/sub:1'],
  });
  assert.equal(entries['reg.test/p/tool:1']!.digest, d.tool.index.digest);
  assert.equal(entries['reg.test/p/tool:1']!.platform, undefined);
  assert.deepEqual(entries['reg.test/p/sub:1']!.components, ['reg.test/p/lib:2']);

  const amd = lockEntriesFromPlan(plan, { platform: 'linux/x86_64' })['reg.test/p/tool:1']!;
  assert.deepEqual([amd.platform, amd.variant, amd.manifest], ['linux/amd64', undefined, d.tool.amd64.digest]);
  const arm = lockEntriesFromPlan(plan, { platform: 'linux/arm64', variant: { substrate: 'metal' } })['reg.test/p/tool:1']!;
  assert.deepEqual([arm.platform, arm.variant, arm.manifest], ['linux/arm64', { substrate: 'metal' }, d.tool.arm64.digest]);
  // No near match: arm64 without its extra key is not the arm64 variant.
  assert.throws(() => lockEntriesFromPlan(plan, { platform: 'linux/arm64' }), (e: LadingError) => {
    assert.equal(e.code, 'E_VARIANT_NOT_FOUND');
    assert.match(e.message, /linux\/amd64; linux\/arm64 substrate=metal/);
    return true;
  });
});

test('a lockfile round-trips, and the same lock always gives the same bytes', async () => {
  const t = await tempDir();
  try {
    const path = join(t.dir, 'lading.lock');
    const a: Lockfile = emptyLockfile();
    a.artifacts['reg.test/z:1'] = entry(D1, { family: 'bundle', components: ['reg.test/a:1'] });
    a.artifacts['reg.test/a:1'] = entry(D2, { platform: 'linux/arm64', variant: { z: '1', a: '2' }, manifest: D3, family: 'cli' });
    const b: Lockfile = { lockfileVersion: 1, artifacts: {} };
    b.artifacts['reg.test/a:1'] = { manifest: D3, variant: { a: '2', z: '1' }, family: 'cli', platform: 'linux/arm64', size: 10, mediaType: MANIFEST, digest: D2 };
    b.artifacts['reg.test/z:1'] = { components: ['reg.test/a:1'], family: 'bundle', size: 10, mediaType: MANIFEST, digest: D1 };

    await writeLockfile(path, a);
    const first = await readFile(path, 'utf8');
    await writeLockfile(path, b);
    const second = await readFile(path, 'utf8');
    assert.equal(first, second);
    assert.equal(first, encodeLockfile(b));
    assert.ok(first.endsWith('}\n'));
    assert.ok(first.startsWith('{\n  "lockfileVersion": 1,\n  "artifacts": {\n    "reg.test/a:1": {\n      "digest": '));
    assert.ok(first.indexOf('"a": "2"') < first.indexOf('"z": "1"'));
    assert.deepEqual(await readLockfile(path), a);
    // Nothing is left beside it: no temp file, no lock file.
    assert.deepEqual(await readdir(t.dir), ['lading.lock']);
  } finally {
    await t.done();
  }
});

test('a missing lockfile is undefined to read and E_NOT_FOUND to require', async () => {
  const t = await tempDir();
  try {
    const path = join(t.dir, 'lading.lock');
    assert.equal(await readLockfile(path), undefined);
    await assert.rejects(requireLockfile(path, 'reg.test/a:1'), (e: LadingError) => {
      assert.equal(e.code, 'E_NOT_FOUND');
      assert.match(e.hint ?? '', /run lading lock reg\.test\/a:1/);
      return true;
    });
  } finally {
    await t.done();
  }
});

test('a malformed lockfile is refused naming the path of the fault', async () => {
  const good = { lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry(D1) } };
  const refused = (value: unknown, path: RegExp) =>
    assert.throws(
      () => parseLockfile(typeof value === 'string' ? value : JSON.stringify(value), 'lading.lock'),
      (e: unknown) => isLadingError(e, 'E_LOCK_INVALID') && path.test(e.message),
    );
  assert.deepEqual(parseLockfile(JSON.stringify(good)), good);
  refused({ ...good, extra: true }, /lading\.lock: extra: unknown field/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': { ...entry(D1), sha: 'x' } } }, /artifacts\["reg\.test\/a:1"\]\.sha: unknown field/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry('sha256:abc') } }, /artifacts\["reg\.test\/a:1"\]\.digest: invalid digest/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry(D1, { manifest: 'md5:x' }) } }, /\.manifest: /);
  refused({ lockfileVersion: 2, artifacts: {} }, /lockfileVersion: must be 1/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a': entry(D1) } }, /must be written in full \("reg\.test\/a:latest"\)/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry(D1, { components: ['reg.test/b:1'] }) } }, /components\[0\]: "reg\.test\/b:1" has no entry/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry(D1, { platform: 'linux/x86_64' }) } }, /canonical form \("linux\/amd64"\)/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry(D1, { manifest: D2 }) } }, /only with a platform/);
  refused({ lockfileVersion: 1, artifacts: { 'reg.test/a:1': { ...entry(D1), size: -1 } } }, /\.size: /);
  refused('{"lockfileVersion": 1,', /not valid JSON/);
  refused(
    `{"lockfileVersion":1,"artifacts":{"reg.test/a:1":{"digest":"${D1}","mediaType":"${MANIFEST}","size":1,"platform":"linux/amd64","variant":{"__proto__":"x"}}}}`,
    /\.variant: invalid variant key "__proto__"/,
  );
});

test('mergeLock replaces the given references and keeps the rest', () => {
  const lock: Lockfile = { lockfileVersion: 1, artifacts: { 'reg.test/a:1': entry(D1), 'reg.test/b:1': entry(D1) } };
  const merged = mergeLock(lock, { 'reg.test/b:1': entry(D2), 'reg.test/c': entry(D3) });
  assert.deepEqual(Object.keys(merged.artifacts).sort(), ['reg.test/a:1', 'reg.test/b:1', 'reg.test/c:latest']);
  assert.equal(merged.artifacts['reg.test/b:1']!.digest, D2);
  assert.equal(lock.artifacts['reg.test/b:1']!.digest, D1);
});

test('frozen checks pass on the locked digest and fail once a tag moved', async () => {
  const reg = new Registry();
  const d = await project(reg);
  const plan = await resolveBundle(reg, 'reg.test/p/app:1', Families.builtin());
  const lock = mergeLock(emptyLockfile(), lockEntriesFromPlan(plan, { platform: 'linux/amd64' }));

  checkFrozenPlan(lock, await resolveBundle(reg, 'reg.test/p/app:1', Families.builtin()));
  assert.equal(checkFrozen(lock, 'reg.test/p/lib:2', { digest: d.lib2.digest }).digest, d.lib2.digest);
  checkFrozen(lock, 'reg.test/p/tool:1', { digest: d.tool.index.digest, manifest: d.tool.amd64.digest });
  assert.throws(
    () => checkFrozen(lock, 'reg.test/p/tool:1', { digest: d.tool.index.digest, manifest: d.tool.arm64.digest }),
    (e: LadingError) => e.code === 'E_LOCK_MISMATCH' && /locked to manifest/.test(e.message),
  );

  // lib:2 (inside sub:1) moves: the bundle digests stay, the component does not.
  const moved = await push(reg, 'reg.test/p/lib:2', 'pack');
  const again = await resolveBundle(reg, 'reg.test/p/app:1', Families.builtin());
  assert.equal(again.digest, d.app.digest);
  assert.throws(() => checkFrozenPlan(lock, again), (e: LadingError) => {
    assert.equal(e.code, 'E_LOCK_MISMATCH');
    assert.equal(e.message, `reg.test/p/lib:2 is locked to ${d.lib2.digest} but now resolves to ${moved.digest}`);
    assert.match(e.hint ?? '', new RegExp(`run lading lock reg.test/p/lib:2 to accept the change, or pull by the locked digest \\(reg.test/p/lib@${d.lib2.digest}\\)`));
    assert.deepEqual(e.details, { reference: 'reg.test/p/lib:2', locked: d.lib2.digest, current: moved.digest });
    return true;
  });
  assert.throws(() => checkFrozen(lock, 'reg.test/p/other:1', { digest: D1 }), (e: LadingError) =>
    e.code === 'E_LOCK_MISMATCH' && e.message === 'reg.test/p/other:1 is not in the lockfile',
  );
  // The user's spelling does not matter: the key is the full form.
  assert.throws(() => checkFrozen(lock, 'reg.test/p/lib:2', { digest: moved.digest }), (e: LadingError) => e.code === 'E_LOCK_MISMATCH');
});

test('concurrent updates of one lockfile all land', async () => {
  const t = await tempDir();
  try {
    const path = join(t.dir, 'lading.lock');
    await writeFile(path, encodeLockfile(mergeLock(emptyLockfile(), { 'reg.test/old:1': entry(D3) })));
    const refs = ['a', 'b', 'c', 'd', 'e', 'f'].map((n) => `reg.test/${n}:1`);
    await Promise.all(refs.map((r, i) => updateLockfile(path, { [r]: entry(i % 2 ? D1 : D2) })));
    const lock = (await readLockfile(path))!;
    assert.deepEqual(Object.keys(lock.artifacts).sort(), [...refs, 'reg.test/old:1'].sort());
    assert.deepEqual((await readdir(t.dir)).sort(), ['lading.lock']);
  } finally {
    await t.done();
  }
});

test('a plan assembled with one reference at two digests is refused', () => {
  const leaf = (digest: string): PlanNode => ({ ref: 'reg.test/x:1', pinned: `reg.test/x@${digest}`, digest, mediaType: MANIFEST, size: 1, pinnedBy: 'tag' });
  const plan: PlanNode = { ...leaf(D3), ref: 'reg.test/b:1', family: 'bundle', components: [leaf(D1), leaf(D2)] };
  assert.throws(() => lockEntriesFromPlan(plan), (e: unknown) => isLadingError(e, 'E_LOCK_INVALID'));
});
