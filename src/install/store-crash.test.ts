/**
 * Crash safety and concurrency of the install store with real processes: a child (test/support/install-child.ts)
 * installs, uninstalls or rolls back, announcing each phase; told to pause at one (INSTALL_PAUSE_AT), it waits
 * for a stdin line there, and the test SIGKILLs it by PID at exactly that point. Then: `current` is the old or
 * the new version, whole, and bin/<cmd> runs that version; opening the root breaks the dead lock and cleans up;
 * the next install completes.
 */
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { fileIndex } from './file-index.js';
import { readState } from './state.js';
import { openInstallRoot } from './store.js';
import { isLadingError } from '../errors.js';
import { fakeInstall } from '../../test/support/install-fake.js';
import { REPO_ROOT, killAllChildren, spawnTs, type LineChild } from '../../test/support/child-process.js';

const exec = promisify(execFile);
const CHILD = join(REPO_ROOT, 'test', 'support', 'install-child.ts');

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'lading-store-crash-'));
});
after(async () => {
  await killAllChildren();
  await rm(base, { recursive: true, force: true });
});

let n = 0;
async function freshRoot(): Promise<string> {
  const root = join(base, `root-${n++}`);
  await mkdir(root);
  return root;
}

/** Starts the child with INSTALL_PAUSE_AT set (or not) in its environment. */
function startChild(args: string[], pause?: string): LineChild {
  const saved = process.env.INSTALL_PAUSE_AT;
  if (pause === undefined) delete process.env.INSTALL_PAUSE_AT;
  else process.env.INSTALL_PAUSE_AT = pause;
  try {
    return spawnTs(CHILD, args);
  } finally {
    if (saved === undefined) delete process.env.INSTALL_PAUSE_AT;
    else process.env.INSTALL_PAUSE_AT = saved;
  }
}

/** Runs the child until it pauses at `point`, then SIGKILLs it there. Returns its pid. */
async function killAt(args: string[], point: string): Promise<number> {
  const child = startChild(args, point);
  try {
    await child.line(`paused ${point}`, 30_000);
  } catch (err) {
    await child.kill();
    throw err;
  }
  const exit = await child.kill();
  assert.equal(exit.signal, 'SIGKILL', `the child was killed at ${point}, not finished: ${child.lines().join(' | ')}`);
  assert.ok(!child.lines().some((l) => l.startsWith('result ')), 'the child had not finished');
  return child.pid;
}

async function runChild(args: string[]): Promise<{ code: number | null; lines: string[]; stderr: string }> {
  const child = startChild(args);
  const exit = await Promise.race([
    child.exited,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error('child took over 60 s')), 60_000).unref()),
  ]).catch(async (err) => {
    await child.kill();
    throw err;
  });
  return { code: exit.code, lines: child.lines(), stderr: child.stderr() };
}

async function readlinkOrUndefined(path: string): Promise<string | undefined> {
  return readlink(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

/**
 * The root as any reader sees it right after the kill, before anything is repaired: `current` is one of
 * `allowed` (undefined = no current link), names a whole committed version, and bin/tool, when present,
 * runs exactly that version.
 */
async function assertConsistent(root: string, name: string, allowed: Array<string | undefined>): Promise<string | undefined> {
  const cur = await readlinkOrUndefined(join(root, 'pkgs', name, 'current'));
  assert.ok(allowed.includes(cur), `current is ${cur}, expected one of ${allowed.join(', ')}`);
  if (cur !== undefined) {
    const dir = join(root, 'pkgs', name, cur);
    assert.ok((await stat(dir)).isDirectory(), 'current is not dangling');
    const recorded = JSON.parse(await readFile(join(root, 'pkgs', name, '.files', `${cur}.json`), 'utf8'));
    assert.deepEqual(await fileIndex(dir), recorded, 'the current version is whole');
  }
  if (await exists(join(root, 'bin', 'tool'))) {
    assert.notEqual(cur, undefined, 'a bin link exists only for a package with a current version');
    const { stdout } = await exec(join(root, 'bin', 'tool'), [], { timeout: 10_000 });
    assert.equal(stdout, `tool ${name} ${cur} \n`);
  }
  return cur;
}

/** Opening the root breaks the dead holder's lock and leaves nothing but committed, recorded versions. */
async function assertRepairedOnOpen(root: string, deadPid: number): Promise<void> {
  const lock = JSON.parse(await readFile(join(root, '.lading', 'install.lock'), 'utf8'));
  assert.equal(lock.pid, deadPid, 'the dead child still "holds" the lock');
  const r = await openInstallRoot(root);
  assert.equal(await exists(join(root, '.lading', 'install.lock')), false, 'the dead lock was broken and ours released');
  assert.deepEqual(await readdir(join(root, '.staging')), [], 'staging cleaned');
  const state = await readState(root);
  for (const pkg of await readdir(join(root, 'pkgs'))) {
    const entries = await readdir(join(root, 'pkgs', pkg));
    const versions = entries.filter((e) => e !== 'current' && e !== '.files');
    assert.deepEqual(versions.sort(), Object.keys(state.packages[pkg]?.versions ?? {}).sort(), `${pkg}: only recorded versions, no temps`);
  }
  assert.deepEqual((await readdir(join(root, 'bin'))).filter((e) => e.startsWith('.')), [], 'no temps in bin');
  await r.withLock(async () => undefined); // the lock can be taken at once
}

const UPGRADE_POINTS: Array<[string, '1' | '2']> = [
  ['locked', '1'],
  ['half-staged', '1'],
  ['staged', '1'],
  ['cp:commit:indexed', '1'],
  ['cp:commit:renamed', '1'],
  ['cp:commit:recorded', '1'],
  ['committed', '1'],
  ['cp:switch:linked', '1'],
  ['cp:switch:renamed', '2'],
  ['switched', '2'],
  // (The same command through `current` is right for both versions: exposing 2 writes nothing, so there is
  // no expose:* point here; see the renamed-command upgrade below.)
  ['exposed', '2'],
];

describe('install store under SIGKILL', () => {
  for (const [point, expected] of UPGRADE_POINTS) {
    test(`upgrade 1 → 2 killed at "${point}": current is ${expected}, then the next install completes`, async () => {
      const root = await freshRoot();
      await fakeInstall(root, { name: 'demo', version: '1', files: 40 });
      const pid = await killAt(['install', root, 'demo', '2', '40'], point);

      assert.equal(await assertConsistent(root, 'demo', ['1', '2']), expected);
      await assertRepairedOnOpen(root, pid);
      assert.equal(await assertConsistent(root, 'demo', [expected]), expected);

      const again = await fakeInstall(root, { name: 'demo', version: '2', files: 40 });
      assert.equal(again.result, ['cp:commit:indexed', 'cp:commit:renamed', 'locked', 'half-staged', 'staged'].includes(point) ? 'committed' : 'exists');
      assert.equal(await assertConsistent(root, 'demo', ['2']), '2');
      const state = await readState(root);
      assert.deepEqual(state.packages.demo!.history, ['1', '2']);
      assert.deepEqual((await readdir(join(root, 'pkgs', 'demo'))).sort(), ['.files', '1', '2', 'current']);
      // And the old version is still there to roll back to.
      const r = await openInstallRoot(root);
      assert.deepEqual(await r.rollback('demo'), { from: '2', to: '1' });
      assert.equal(await assertConsistent(root, 'demo', ['1']), '1');
    });
  }

  for (const [point, expected] of [
    ['cp:commit:recorded', '1'],
    ['cp:switch:linked', '1'],
    ['cp:switch:renamed', '2'],
    ['cp:expose:linked', '2'],
    ['cp:expose:renamed', '2'],
    ['exposed', '2'],
  ] as const) {
    test(`upgrade renaming its command (tool → tool2) killed at "${point}": bin/ is the current version's on the next open`, async () => {
      const root = await freshRoot();
      await fakeInstall(root, { name: 'demo', version: '1' });
      const pid = await killAt(['install', root, 'demo', '2', '10', 'tool2'], point);
      assert.equal(await assertConsistent(root, 'demo', [expected]), expected);
      await assertRepairedOnOpen(root, pid);
      // Whatever the moment, the open after it leaves exactly the current version's command.
      const want = expected === '2' ? 'tool2' : 'tool';
      assert.deepEqual(await readdir(join(root, 'bin')), [want]);
      assert.equal(await readlink(join(root, 'bin', want)), '../pkgs/demo/current/bin/tool');
      const { stdout } = await exec(join(root, 'bin', want), [], { timeout: 10_000 });
      assert.equal(stdout, `tool demo ${expected} \n`);
      // And the install completes; a rollback brings the old command back.
      await fakeInstall(root, { name: 'demo', version: '2', files: 10, command: 'tool2' });
      assert.deepEqual(await readdir(join(root, 'bin')), ['tool2']);
      const r = await openInstallRoot(root);
      assert.deepEqual(await r.rollback('demo'), { from: '2', to: '1' });
      assert.deepEqual(await readdir(join(root, 'bin')), ['tool']);
    });
  }

  for (const [point, expected] of [
    ['half-staged', undefined],
    ['cp:commit:renamed', undefined],
    ['cp:switch:linked', undefined],
    ['cp:expose:linked', '1'],
  ] as const) {
    test(`first install killed at "${point}": nothing or the whole version, then the next install completes`, async () => {
      const root = await freshRoot();
      const pid = await killAt(['install', root, 'demo', '1', '40'], point);
      assert.equal(await assertConsistent(root, 'demo', [expected]), expected);
      if (expected === undefined) assert.equal(await exists(join(root, 'bin', 'tool')), false);
      await assertRepairedOnOpen(root, pid);
      assert.equal(await assertConsistent(root, 'demo', [expected]), expected);
      await fakeInstall(root, { name: 'demo', version: '1', files: 40 });
      assert.equal(await assertConsistent(root, 'demo', ['1']), '1');
      assert.ok(await exists(join(root, 'bin', 'tool')));
    });
  }

  for (const point of ['cp:uninstall:unexposed', 'cp:uninstall:moved']) {
    test(`uninstall killed at "${point}": the package is whole or gone, and the next run completes`, async () => {
      const root = await freshRoot();
      await fakeInstall(root, { name: 'demo', version: '1' });
      await fakeInstall(root, { name: 'demo', version: '2' });
      const pid = await killAt(['uninstall', root, 'demo'], point);
      const cur = await assertConsistent(root, 'demo', point === 'cp:uninstall:moved' ? [undefined] : ['2']);
      await assertRepairedOnOpen(root, pid);
      const r = await openInstallRoot(root);
      if (cur === undefined) {
        assert.deepEqual(await r.list(), [], 'a package whose directory went is dropped from the state');
      } else {
        await r.uninstall('demo');
        assert.deepEqual(await r.list(), []);
      }
      assert.deepEqual(await readdir(join(root, 'pkgs')), []);
      await fakeInstall(root, { name: 'demo', version: '3' });
      assert.equal(await assertConsistent(root, 'demo', ['3']), '3');
    });
  }

  for (const [point, expected] of [
    ['cp:switch:linked', '2'],
    ['cp:switch:renamed', '1'],
  ] as const) {
    test(`rollback killed at "${point}": current is ${expected}`, async () => {
      const root = await freshRoot();
      await fakeInstall(root, { name: 'demo', version: '1' });
      await fakeInstall(root, { name: 'demo', version: '2' });
      const pid = await killAt(['rollback', root, 'demo'], point);
      assert.equal(await assertConsistent(root, 'demo', [expected]), expected);
      await assertRepairedOnOpen(root, pid);
      assert.deepEqual((await readState(root)).packages.demo!.history, ['1', '2']);
    });
  }
});

describe('install store with concurrent processes', () => {
  for (let round = 0; round < 3; round++) {
    test(`two processes install the same version at once: one install, both succeed (round ${round + 1})`, async () => {
      const root = await freshRoot();
      await fakeInstall(root, { name: 'demo', version: '1' });
      const [a, b] = await Promise.all([
        runChild(['install', root, 'demo', '2', '200']),
        runChild(['install', root, 'demo', '2', '200']),
      ]);
      assert.equal(a.code, 0, a.lines.join('\n') + a.stderr);
      assert.equal(b.code, 0, b.lines.join('\n') + b.stderr);
      const results = [a, b].map((c) => c.lines.find((l) => l.startsWith('result '))).sort();
      assert.deepEqual(results, ['result committed', 'result exists']);
      assert.deepEqual((await readdir(join(root, 'pkgs', 'demo'))).sort(), ['.files', '1', '2', 'current']);
      assert.deepEqual((await readState(root)).packages.demo!.history, ['1', '2']);
      assert.deepEqual(await readdir(join(root, '.staging')), []);
      assert.equal(await assertConsistent(root, 'demo', ['2']), '2');
    });
  }

  test('two processes install different versions at once: both recorded, current is one of them', async () => {
    const root = await freshRoot();
    const [a, b] = await Promise.all([runChild(['install', root, 'demo', '1', '100']), runChild(['install', root, 'demo', '2', '100'])]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    const state = await readState(root);
    assert.deepEqual(Object.keys(state.packages.demo!.versions).sort(), ['1', '2']);
    const last = state.packages.demo!.history.at(-1);
    assert.equal(await assertConsistent(root, 'demo', ['1', '2']), last);
  });

  test('a child paused holding the lock makes another wait; killing it lets the other finish', async () => {
    const root = await freshRoot();
    const holder = startChild(['install', root, 'demo', '1', '10'], 'staged');
    await holder.line('paused staged', 30_000);
    const waiter = startChild(['install', root, 'demo', '2', '10']);
    // The waiter opens the root (its reconcile skipped: the lock's holder is alive) and asks for the lock.
    await waiter.line('phase opened', 30_000);
    const exitHolder = await holder.kill();
    assert.equal(exitHolder.signal, 'SIGKILL');
    assert.ok(!waiter.lines().includes('phase locked'), 'the waiter got the lock while the holder held it');
    await waiter.line('result ', 60_000);
    const exit = await waiter.exited;
    assert.equal(exit.code, 0);
    assert.equal(await assertConsistent(root, 'demo', ['2']), '2');
    assert.deepEqual(await readdir(join(root, '.staging')), []);
  });

  test('a stopped (SIGSTOP) holder keeps install.lock however old it gets, and its staging survives others', async () => {
    const root = await freshRoot();
    const lock = join(root, '.lading', 'install.lock');
    const holder = startChild(['install', root, 'demo', '1', '10'], 'staged');
    await holder.line('paused staged', 30_000);
    const staging = await readdir(join(root, '.staging'));
    assert.equal(staging.length, 1);
    process.kill(holder.pid, 'SIGSTOP');
    try {
      // Hours without a refresh, as after a suspend: the holder is alive, so nothing is broken.
      const old = new Date(Date.now() - 3 * 60 * 60_000);
      await utimes(lock, old, old);
      const r = await openInstallRoot(root);
      assert.deepEqual(await readdir(join(root, '.staging')), staging, 'open did not reconcile');
      await assert.rejects(r.withLock(async () => 'taken', AbortSignal.timeout(1_500)), (err) => isLadingError(err, 'E_ABORTED'));
      assert.equal(JSON.parse(await readFile(lock, 'utf8')).pid, holder.pid);
      assert.deepEqual(await readdir(join(root, '.staging')), staging);
    } finally {
      process.kill(holder.pid, 'SIGCONT');
    }
    holder.proc.stdin!.write('go on\n');
    await holder.line('result ', 60_000);
    assert.equal((await holder.exited).code, 0);
    assert.equal(await assertConsistent(root, 'demo', ['1']), '1');
    assert.deepEqual(await readdir(join(root, '.staging')), []);
  });
});
