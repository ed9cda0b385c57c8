import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { FsDriver } from './fs-driver.js';
import { RegistryStore } from './store.js';
import { fixtureBlob, fixtureManifest } from '../../../test/support/storage-fixtures.js';

const FIXTURE = fileURLToPath(new URL('../../../test/support/storage-child.ts', import.meta.url));
const REPO_ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const TIMEOUT = { timeout: 120_000 };

const roots: string[] = [];
const children = new Set<ChildProcess>();
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function freshRoot(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'lading-proc-'));
  roots.push(root);
  return root;
}

interface Child {
  proc: ChildProcess;
  /** Resolves with the first stdout line starting with `prefix`; rejects if the child exits first. */
  line(prefix: string): Promise<string>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

function child(...args: string[]): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(proc);
  let stderr = '';
  proc.stderr!.on('data', (d) => (stderr += String(d)));
  const lines: string[] = [];
  const waiters: { prefix: string; resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    proc.on('exit', (code, signal) => {
      // stderr may still be draining; 'close' follows once it is.
      proc.on('close', () => {
        for (const w of waiters.splice(0)) w.reject(new Error(`child exited (${code ?? signal}) before "${w.prefix}": ${stderr}`));
        resolve({ code, signal, stderr });
      });
    });
  });
  createInterface({ input: proc.stdout! }).on('line', (l) => {
    lines.push(l);
    for (let i = waiters.length - 1; i >= 0; i--) {
      if (l.startsWith(waiters[i]!.prefix)) waiters.splice(i, 1)[0]!.resolve(l);
    }
  });
  return {
    proc,
    exited,
    line(prefix) {
      const seen = lines.find((l) => l.startsWith(prefix));
      if (seen) return Promise.resolve(seen);
      if (proc.exitCode !== null || proc.signalCode !== null) return Promise.reject(new Error(`child already exited: ${stderr}`));
      return new Promise((resolve, reject) => waiters.push({ prefix, resolve, reject }));
    },
  };
}

async function kill(c: Child): Promise<void> {
  process.kill(c.proc.pid!, 'SIGKILL');
  const { signal } = await c.exited;
  assert.equal(signal, 'SIGKILL');
}

describe('two processes on one root', () => {
  it('push the same and different blobs and tags at once; fsck is clean', TIMEOUT, async () => {
    const root = await freshRoot();
    const a = child('push', root, 'pa', '8');
    const b = child('push', root, 'pb', '8');
    await Promise.all([a.line('done'), b.line('done')]);
    for (const c of [a, b]) assert.equal((await c.exited).code, 0, (await c.exited).stderr);
    const store = new RegistryStore(new FsDriver(root));
    const fsck = await store.fsck();
    assert.deepEqual(fsck.problems, []);
    // 8 shared + 2 × 8 own blobs + 16 manifests.
    assert.equal(fsck.blobs, 8 + 16 + 16);
    const tags = await store.tags('conc/repo');
    assert.equal(tags.length, 17);
    for (const t of tags) assert.ok(await store.getManifest('conc/repo', t), t);
    assert.deepEqual(await readdir(join(root, '_uploads')), []);
  });
});

describe('SIGKILL in the middle of a write', () => {
  for (const op of ['publish', 'layer-link', 'body']) {
    it(`during completeUpload (${op}): no partial blob, the upload can be finished`, TIMEOUT, async () => {
      const root = await freshRoot();
      const c = child('stall', root, op, 'crash/repo');
      const id = (await c.line('id ')).slice(3);
      await c.line(`mid ${op}`);
      await kill(c);

      const store = new RegistryStore(new FsDriver(root));
      const blob = fixtureBlob('stall', 3 * 1024 * 1024);
      assert.equal(await store.statBlob('crash/repo', blob.digest), undefined);
      const fsck = await store.fsck();
      assert.deepEqual(fsck.problems, []);
      // The session survived the crash; resume from what it holds.
      const status = await store.uploadStatus('crash/repo', id);
      assert.ok(status.size >= blob.size >> 1 && status.size <= blob.size, `size ${status.size}`);
      await store.completeUpload('crash/repo', id, blob.digest, { body: Readable.from([blob.bytes.subarray(status.size)]) });
      assert.deepEqual(await store.statBlob('crash/repo', blob.digest), { digest: blob.digest, size: blob.size });
      assert.deepEqual((await store.fsck()).problems, []);
    });
  }

  for (const op of ['manifest-link', 'tag']) {
    it(`during putManifest (${op}): old state or new, never a broken tag`, TIMEOUT, async () => {
      const root = await freshRoot();
      const c = child('stall', root, op, 'crash/m');
      const digest = (await c.line('id ')).slice(3);
      await c.line(`mid ${op}`);
      await kill(c);

      const store = new RegistryStore(new FsDriver(root));
      assert.deepEqual((await store.fsck()).problems, []);
      assert.equal(await store.getManifest('crash/m', 'v1'), undefined);
      const byDigest = await store.getManifest('crash/m', digest);
      assert.equal(byDigest !== undefined, op === 'tag');
      const subject = fixtureBlob('subject', 10).digest;
      // An entry written before the link must not show until the manifest is there.
      assert.equal((await store.referrers('crash/m', subject)).length, op === 'tag' ? 1 : 0);
      // Pushing again completes it.
      const blob = fixtureBlob('stall', 3 * 1024 * 1024);
      const m = fixtureManifest([blob], subject);
      assert.equal(m.digest, digest);
      await store.putManifest('crash/m', m.bytes, m.mediaType, { tag: 'v1' });
      assert.equal((await store.getManifest('crash/m', 'v1'))?.digest, digest);
      assert.equal((await store.referrers('crash/m', subject)).length, 1);
    });
  }

  it('at an arbitrary instant of a loop of pushes and re-tags: the tag is whole, fsck clean', TIMEOUT, async () => {
    const root = await freshRoot();
    const c = child('loop', root, 'crash/loop');
    await c.line('looping');
    await kill(c);
    const store = new RegistryStore(new FsDriver(root));
    assert.deepEqual((await store.fsck()).problems, []);
    const tagged = await store.getManifest('crash/loop', 'latest');
    assert.ok(tagged);
    for (const t of await store.tags('crash/loop')) assert.ok(await store.getManifest('crash/loop', t));
    // What the kill left behind (temps, a session) is gc's to remove, and gc leaves fsck clean.
    await store.gc({ graceMs: 0 });
    assert.deepEqual((await store.fsck()).problems, []);
    assert.ok(await store.getManifest('crash/loop', 'latest'));
  });
});
