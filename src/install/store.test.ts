import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rename, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { promisify } from 'node:util';
import { isLadingError, type ErrorCode } from '../errors.js';
import { fileIndex } from './file-index.js';
import { currentVersion, readState, type InstalledVersion } from './state.js';
import { INSTALL_LOCK_WAIT_MS, InstallRoot, listInstalled, openInstallRoot, shQuote } from './store.js';
import { fakeInstall } from '../../test/support/install-fake.js';

const exec = promisify(execFile);

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'lading-store-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

let n = 0;
async function freshRoot(): Promise<string> {
  const root = join(base, `root-${n++}`);
  await mkdir(root);
  return root;
}

async function rejectsWith(p: Promise<unknown>, code: ErrorCode): Promise<Error> {
  let caught: unknown;
  await assert.rejects(p, (err) => {
    caught = err;
    return isLadingError(err, code);
  });
  return caught as Error;
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

async function runBin(root: string, cmd: string, args: string[] = []): Promise<string> {
  const { stdout } = await exec(join(root, 'bin', cmd), args, { timeout: 10_000 });
  return stdout;
}

function record(version: string, digest: string, extra: Partial<InstalledVersion> = {}): InstalledVersion {
  return {
    version,
    digest,
    reference: `example.test/x:${version}`,
    family: 'cli',
    installedAt: new Date().toISOString(),
    deps: [],
    ...extra,
  };
}

/** Stages a directory with the given files and returns it with its index. */
async function stage(r: InstallRoot, files: Record<string, string>): Promise<{ dir: string; files: Awaited<ReturnType<typeof fileIndex>> }> {
  const dir = await r.newStaging();
  for (const [p, c] of Object.entries(files)) {
    await mkdir(join(dir, p, '..'), { recursive: true });
    await writeFile(join(dir, p), c);
  }
  return { dir, files: await fileIndex(dir) };
}

describe('install store', () => {
  test('openInstallRoot lays out the root; a fake install is committed, current and exposed', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    for (const d of ['.lading', '.staging', 'pkgs', 'bin']) assert.ok((await stat(join(root, d))).isDirectory(), d);
    assert.deepEqual(await r.list(), []);

    const out = await fakeInstall(root, { name: 'demo', version: '1.0.0', files: 5 });
    assert.deepEqual(out, { result: 'committed' });
    assert.equal(await readlink(join(root, 'pkgs', 'demo', 'current')), '1.0.0');
    assert.equal(await currentVersion(root, 'demo'), '1.0.0');
    assert.equal(await readlink(join(root, 'bin', 'tool')), '../pkgs/demo/current/bin/tool');
    assert.equal(await runBin(root, 'tool', ['a', 'b']), 'tool demo 1.0.0 a b\n');
    const index = JSON.parse(await readFile(join(root, 'pkgs', 'demo', '.files', '1.0.0.json'), 'utf8'));
    assert.ok(index.files['bin/tool'].digest.startsWith('sha256:'));
    assert.equal(Object.keys(index.files).length, 5 + 2);
    assert.deepEqual(await readdir(join(root, '.staging')), []);
    const list = await r.list();
    assert.equal(list.length, 1);
    assert.equal(list[0]!.current, '1.0.0');
    assert.equal(list[0]!.family, 'cli');
    assert.deepEqual(list[0]!.versions.map((v) => v.version), ['1.0.0']);
    // The lock is released.
    await assert.rejects(stat(join(root, '.lading', 'install.lock')), { code: 'ENOENT' });
  });

  test('newStaging makes private, distinct directories inside .staging', async () => {
    const r = await openInstallRoot(await freshRoot());
    await r.withLock(async () => {
      const a = await r.newStaging();
      const b = await r.newStaging();
      assert.notEqual(a, b);
      assert.equal((await stat(a)).mode & 0o777, 0o700);
      assert.ok(a.startsWith(join(r.root, '.staging') + '/'));
      await r.removeStaging(a);
      await assert.rejects(stat(a), { code: 'ENOENT' });
      await rejectsWith(r.removeStaging(join(r.root, 'pkgs')), 'E_USAGE');
    });
    // Only the lock's holder stages (the next holder removes whatever it did not make).
    const err = await rejectsWith(r.newStaging(), 'E_USAGE');
    assert.match((err as { hint?: string }).hint ?? '', /withLock/);
    await r.withLock(async () => undefined);
    assert.deepEqual(await readdir(join(r.root, '.staging')), [], 'b was removed by the next holder');
  });

  test('commitVersion: same digest → exists (one directory), other digest → E_INSTALL_CONFLICT', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    await r.withLock(async () => {
    const s1 = await stage(r, { 'a.txt': 'one' });
    assert.equal(await r.commitVersion({ stagingDir: s1.dir, name: 'x', version: '1', record: record('1', 'sha256:aa'), files: s1.files }), 'committed');
    await assert.rejects(stat(s1.dir), { code: 'ENOENT' });

    const s2 = await stage(r, { 'a.txt': 'one' });
    assert.equal(await r.commitVersion({ stagingDir: s2.dir, name: 'x', version: '1', record: record('1', 'sha256:aa'), files: s2.files }), 'exists');
    await assert.rejects(stat(s2.dir), { code: 'ENOENT' }, 'the staging of a no-op is removed');

    const s3 = await stage(r, { 'a.txt': 'two' });
    const err = await rejectsWith(
      r.commitVersion({ stagingDir: s3.dir, name: 'x', version: '1', record: record('1', 'sha256:bb'), files: s3.files }),
      'E_INSTALL_CONFLICT',
    );
    assert.match((err as { hint?: string }).hint ?? '', /uninstall/);
    assert.equal(await readFile(join(root, 'pkgs', 'x', '1', 'a.txt'), 'utf8'), 'one');
    });
    assert.deepEqual(await readdir(join(root, 'pkgs', 'x')), ['.files', '1']);
    const state = await readState(root);
    assert.deepEqual(state.packages.x!.history, ['1']);
    assert.equal(state.packages.x!.versions['1']!.digest, 'sha256:aa');
  });

  test('commitVersion validates names, versions, records and where the staging is', async () => {
    const r = await openInstallRoot(await freshRoot());
    await r.withLock(async () => {
    const s = await stage(r, { f: 'x' });
    for (const bad of ['../x', '.hidden', '', 'a/b', '-x', 'x'.repeat(129)]) {
      await rejectsWith(r.commitVersion({ stagingDir: s.dir, name: bad, version: '1', record: record('1', 'sha256:a'), files: s.files }), 'E_CONFIG_INVALID');
      await rejectsWith(r.commitVersion({ stagingDir: s.dir, name: 'x', version: bad, record: record(bad, 'sha256:a'), files: s.files }), 'E_CONFIG_INVALID');
    }
    await rejectsWith(r.commitVersion({ stagingDir: s.dir, name: 'x', version: '1', record: record('2', 'sha256:a'), files: s.files }), 'E_USAGE');
    const outside = join(r.root, 'elsewhere');
    await mkdir(outside);
    await rejectsWith(r.commitVersion({ stagingDir: outside, name: 'x', version: '1', record: record('1', 'sha256:a'), files: s.files }), 'E_USAGE');
    await rejectsWith(r.commitVersion({ stagingDir: r.stagingRoot, name: 'x', version: '1', record: record('1', 'sha256:a'), files: s.files }), 'E_USAGE');
    // "current" names the link, in any case (a case-insensitive filesystem), so it is no version.
    for (const reserved of ['current', 'CURRENT', 'Current']) {
      await rejectsWith(
        r.commitVersion({ stagingDir: s.dir, name: 'x', version: reserved, record: record(reserved, 'sha256:a'), files: s.files }),
        'E_CONFIG_INVALID',
      );
    }
    });
    assert.deepEqual(await readdir(join(r.root, 'pkgs')), []);
  });

  test('commitVersion refuses a package name already installed as another family', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    const r = await openInstallRoot(root);
    await r.withLock(async () => {
      const s = await stage(r, { f: 'x' });
      await rejectsWith(
        r.commitVersion({ stagingDir: s.dir, name: 'demo', version: '2', record: record('2', 'sha256:a', { family: 'pack' }), files: s.files }),
        'E_INSTALL_CONFLICT',
      );
    });
  });

  test('switchCurrent needs an installed version and returns the previous one', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    await fakeInstall(root, { name: 'demo', version: '2' });
    const r = await openInstallRoot(root);
    await rejectsWith(r.switchCurrent('demo', '3'), 'E_INSTALL_NOT_FOUND');
    assert.equal(await r.switchCurrent('demo', '1'), '2');
    assert.equal(await r.switchCurrent('demo', '1'), '1');
    assert.equal(await runBin(root, 'tool'), 'tool demo 1 \n');
    // No temp links are left beside current.
    assert.deepEqual((await readdir(join(root, 'pkgs', 'demo'))).sort(), ['.files', '1', '2', 'current']);
  });

  test('rollback: v1 → v2 → rollback → v1; no earlier version → E_INSTALL_NOT_FOUND; history kept', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1.0.0' });
    const r = await openInstallRoot(root);
    await rejectsWith(r.rollback('demo'), 'E_INSTALL_NOT_FOUND');
    await rejectsWith(r.rollback('nope'), 'E_INSTALL_NOT_FOUND');
    const out = await fakeInstall(root, { name: 'demo', version: '2.0.0' });
    assert.deepEqual(out, { result: 'committed', previous: '1.0.0' });
    assert.equal(await runBin(root, 'tool'), 'tool demo 2.0.0 \n');

    const events: unknown[] = [];
    r.events.on('rolled-back', (e) => events.push(e));
    assert.deepEqual(await r.rollback('demo'), { from: '2.0.0', to: '1.0.0' });
    assert.deepEqual(events, [{ name: 'demo', from: '2.0.0', to: '1.0.0' }]);
    assert.equal(await currentVersion(root, 'demo'), '1.0.0');
    assert.equal(await runBin(root, 'tool'), 'tool demo 1.0.0 \n');
    // Rollback records nothing, so a second one does not alternate: there is nothing before 1.0.0.
    assert.deepEqual((await readState(root)).packages.demo!.history, ['1.0.0', '2.0.0']);
    await rejectsWith(r.rollback('demo'), 'E_INSTALL_NOT_FOUND');
  });

  test('reinstalling an installed version moves it last in the history', async () => {
    const root = await freshRoot();
    for (const v of ['1', '2', '3']) await fakeInstall(root, { name: 'demo', version: v });
    const again = await fakeInstall(root, { name: 'demo', version: '1' });
    assert.deepEqual(again, { result: 'exists', previous: '3' });
    assert.deepEqual((await readState(root)).packages.demo!.history, ['2', '3', '1']);
    const r = await openInstallRoot(root);
    assert.deepEqual(await r.rollback('demo'), { from: '1', to: '3' });
    assert.deepEqual(await r.rollback('demo'), { from: '3', to: '2' });
    await rejectsWith(r.rollback('demo'), 'E_INSTALL_NOT_FOUND');
  });

  test('uninstall: refused while a current version depends on it, forced otherwise; removes links, dir and entry', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'lib', version: '1', command: 'libtool' });
    await fakeInstall(root, { name: 'app', version: '1', command: 'app', deps: ['lib'] });
    await fakeInstall(root, { name: 'other', version: '1', command: 'other' });
    const r = await openInstallRoot(root);
    await rejectsWith(r.uninstall('ghost'), 'E_INSTALL_NOT_FOUND');
    const err = await rejectsWith(r.uninstall('lib'), 'E_INSTALL_DEPENDED_ON');
    assert.deepEqual((err as { details?: Record<string, unknown> }).details?.dependents, ['app']);
    assert.equal(await runBin(root, 'libtool'), 'tool lib 1 \n', 'nothing was removed');

    const events: unknown[] = [];
    r.events.on('uninstalled', (e) => events.push(e));
    await r.uninstall('lib', { force: true });
    assert.deepEqual(events, [{ name: 'lib', versions: ['1'], commands: ['libtool'], forced: true, dependents: ['app'] }]);
    await assert.rejects(lstat(join(root, 'bin', 'libtool')), { code: 'ENOENT' });
    await assert.rejects(lstat(join(root, 'pkgs', 'lib')), { code: 'ENOENT' });
    assert.equal((await readState(root)).packages.lib, undefined);
    assert.equal(await runBin(root, 'app'), 'tool app 1 \n');
    assert.equal(await runBin(root, 'other'), 'tool other 1 \n');
    assert.deepEqual(await readdir(join(root, '.staging')), []);
    await rejectsWith(r.uninstall('lib'), 'E_INSTALL_NOT_FOUND');
  });

  test('uninstall is allowed when only a non-current version depends on the package', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'lib', version: '1', command: 'libtool' });
    await fakeInstall(root, { name: 'app', version: '1', command: 'app', deps: ['lib'] });
    await fakeInstall(root, { name: 'app', version: '2', command: 'app' });
    const r = await openInstallRoot(root);
    await r.uninstall('lib');
    assert.deepEqual((await r.list()).map((p) => p.name), ['app']);
  });

  test('exposeCommand refuses commands of other packages and files lading did not make', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'a', version: '1', command: 'tool' });
    await fakeInstall(root, { name: 'b', version: '1', command: 'btool' });
    const r = await openInstallRoot(root);
    // One hold: each new holder makes bin/ what the records say, which would undo the extra commands made here.
    await r.withLock(async () => {
    const err = await rejectsWith(r.exposeCommand('b', 'tool', 'bin/tool'), 'E_INSTALL_CONFLICT');
    assert.match(err.message, /belongs to package a/);
    assert.equal(await runBin(root, 'tool'), 'tool a 1 \n');

    await writeFile(join(root, 'bin', 'mine'), '#!/bin/sh\necho mine\n', { mode: 0o755 });
    await rejectsWith(r.exposeCommand('b', 'mine', 'bin/tool'), 'E_INSTALL_CONFLICT');
    await symlink('/bin/sh', join(root, 'bin', 'shell'));
    await rejectsWith(r.exposeCommand('b', 'shell', 'bin/tool'), 'E_INSTALL_CONFLICT');
    await mkdir(join(root, 'bin', 'dir'));
    await rejectsWith(r.exposeCommand('b', 'dir', 'bin/tool'), 'E_INSTALL_CONFLICT');
    // A wrapper of another package is another package's too.
    await r.exposeCommand('a', 'wrapped', 'bin/tool', { args: ['x'] });
    await rejectsWith(r.exposeCommand('b', 'wrapped', 'bin/tool'), 'E_INSTALL_CONFLICT');
    assert.equal(await readFile(join(root, 'bin', 'mine'), 'utf8'), '#!/bin/sh\necho mine\n');
    assert.equal(await readlink(join(root, 'bin', 'shell')), '/bin/sh');

    // The same package may replace its own entry, a link by a wrapper and back.
    await r.exposeCommand('a', 'tool', 'bin/tool', { env: { K: 'v' } });
    assert.ok((await lstat(join(root, 'bin', 'tool'))).isFile());
    await r.exposeCommand('a', 'tool', 'bin/tool');
    assert.ok((await lstat(join(root, 'bin', 'tool'))).isSymbolicLink());

    await rejectsWith(r.exposeCommand('a', 'x', 'bin/missing'), 'E_INSTALL_NOT_FOUND');
    await rejectsWith(r.exposeCommand('nope', 'x', 'bin/tool'), 'E_INSTALL_NOT_FOUND');
    for (const bad of ['../../../b/1/bin/tool', '/bin/sh', 'bin/../bin/tool', 'bin//tool', './bin/tool', 'bin\\tool', '']) {
      await rejectsWith(r.exposeCommand('a', 'x', bad), 'E_UNSAFE_PATH');
    }
    for (const bad of ['../x', '.x', 'a/b', '-rf']) await rejectsWith(r.exposeCommand('a', bad, 'bin/tool'), 'E_CONFIG_INVALID');
    await rejectsWith(r.exposeCommand('a', 'x', 'bin/tool', { env: { 'A-B': 'v' } }), 'E_CONFIG_INVALID');
    await rejectsWith(r.exposeCommand('a', 'x', 'bin/tool', { args: ['a\0b'] }), 'E_CONFIG_INVALID');
    // Temp files of failed attempts are not left behind.
    assert.deepEqual((await readdir(join(root, 'bin'))).filter((e) => e.startsWith('.')), []);
    });
    // The next holder makes a's bin/ its record's again: the extra 'wrapped' goes, bin/tool is a link.
    await r.withLock(async () => undefined);
    assert.deepEqual((await readdir(join(root, 'bin'))).sort(), ['btool', 'dir', 'mine', 'shell', 'tool']);
    assert.equal(await readlink(join(root, 'bin', 'tool')), '../pkgs/a/current/bin/tool');
  });

  test('a wrapper passes args and env through sh quoting unchanged, is 0755, and runs the current version', async () => {
    const root = await freshRoot();
    const rr = await openInstallRoot(root);
    await rr.withLock(async () => {
    const s = await rr.newStaging();
    const content = join(s, 'c');
    await mkdir(join(content, 'bin'), { recursive: true });
    // Prints each argument on its own line between brackets, then the variables.
    await writeFile(
      join(content, 'bin', 'show'),
      '#!/bin/sh\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\nprintf "Q=[%s]\\n" "$Q"\nprintf "E=[%s]\\n" "$E"\n',
      { mode: 0o755 },
    );
    await chmod(join(content, 'bin', 'show'), 0o755);
    const files = await fileIndex(content);
    await rr.commitVersion({ stagingDir: content, name: 'w', version: '1', record: record('1', 'sha256:w'), files });
    await rr.switchCurrent('w', '1');
    const nasty = [`it's`, 'two words', '$HOME', '`id`', '$(id)', 'a\nb', '"dq"', '\\', '*', "'", ''];
    await rr.exposeCommand('w', 'show', 'bin/show', { args: nasty, env: { Q: `x'y $HOME "z"`, E: '' } });
    const st = await stat(join(root, 'bin', 'show'));
    assert.equal(st.mode & 0o777, 0o755);
    const { stdout } = await exec(join(root, 'bin', 'show'), ['last one'], { timeout: 10_000 });
    const expected = [...nasty, 'last one'].map((a) => `[${a}]`).join('\n') + `\nQ=[x'y $HOME "z"]\nE=[]\n`;
    assert.equal(stdout, expected);
    const script = await readFile(join(root, 'bin', 'show'), 'utf8');
    assert.ok(script.startsWith('#!/bin/sh\n# lading-wrapper package=w command=show\n'));
    });
    // Uninstall removes wrappers too.
    await rr.uninstall('w');
    await assert.rejects(lstat(join(root, 'bin', 'show')), { code: 'ENOENT' });
  });

  test('shQuote single-quotes everything', () => {
    assert.equal(shQuote(''), "''");
    assert.equal(shQuote("a'b"), `'a'\\''b'`);
    assert.equal(shQuote('$x `y`'), "'$x `y`'");
  });

  test('events are plain objects, in order, for a whole install', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    const r = await openInstallRoot(root);
    const seen: Array<[string, unknown]> = [];
    for (const name of ['staged', 'committed', 'switched', 'exposed', 'rolled-back', 'uninstalled', 'noop']) {
      r.events.on(name, (e) => seen.push([name, e]));
    }
    await r.withLock(async () => {
      const s = await r.newStaging();
      const c = join(s, 'c');
      await mkdir(join(c, 'bin'), { recursive: true });
      await writeFile(join(c, 'bin', 'tool'), '#!/bin/sh\necho two\n', { mode: 0o755 });
      const files = await fileIndex(c);
      // Version 2 names its command tool2: the switch exposes it (and removes tool); the rollback the reverse.
      await r.commitVersion({ stagingDir: c, name: 'demo', version: '2', record: record('2', 'sha256:2', { command: 'tool2', executable: 'bin/tool' }), files });
      await r.switchCurrent('demo', '2');
      // Exactly what is there already: nothing is written, no event.
      await r.exposeCommand('demo', 'tool2', 'bin/tool');
    });
    await r.rollback('demo');
    await r.uninstall('demo');
    assert.deepEqual(
      seen.map(([n]) => n),
      ['committed', 'switched', 'exposed', 'switched', 'exposed', 'rolled-back', 'uninstalled'],
    );
    for (const [, e] of seen) {
      assert.equal(Object.getPrototypeOf(e), Object.prototype);
      assert.deepEqual(JSON.parse(JSON.stringify(e)), e);
    }
    assert.deepEqual(seen[0]![1], { name: 'demo', version: '2', digest: 'sha256:2', path: join(r.root, 'pkgs', 'demo', '2') });
    assert.deepEqual(seen[1]![1], { name: 'demo', from: '1', to: '2' });
    assert.deepEqual(seen[2]![1], { name: 'demo', command: 'tool2', path: join(r.root, 'bin', 'tool2'), wrapper: false });
    assert.deepEqual(seen[4]![1], { name: 'demo', command: 'tool', path: join(r.root, 'bin', 'tool'), wrapper: false });
  });

  test('withLock is re-entrant, serialises holders in one process, and honours an aborted signal', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    const r2 = await openInstallRoot(root);
    assert.equal(await r.withLock(() => r.withLock(async () => r2.withLock(async () => 42))), 42);
    const order: string[] = [];
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((res) => (releaseFirst = res));
    let firstIn!: () => void;
    const firstEntered = new Promise<void>((res) => (firstIn = res));
    const a = r.withLock(async () => {
      order.push('a-in');
      firstIn();
      await firstHeld;
      order.push('a-out');
    });
    await firstEntered;
    const b = r2.withLock(async () => {
      order.push('b-in');
    });
    releaseFirst();
    await Promise.all([a, b]);
    assert.deepEqual(order, ['a-in', 'a-out', 'b-in']);
    const ac = new AbortController();
    ac.abort();
    await rejectsWith(r.withLock(async () => 1, ac.signal), 'E_ABORTED');
  });

  test('reconcile removes dead staging, unrecorded versions and temps; records a current one as found', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    await fakeInstall(root, { name: 'demo', version: '2' });
    // A package whose directory vanished.
    await fakeInstall(root, { name: 'gone', version: '1', command: 'gone' });
    const r = await openInstallRoot(root);
    await rm(join(root, 'pkgs', 'gone'), { recursive: true });
    // Staging of a dead process (pid above any pid_max), one without a pid, one named with a live pid (a
    // reused one: whoever made it no longer holds the lock, so it is garbage all the same), one with ours.
    await mkdir(join(root, '.staging', '99999999-dead', 'x'), { recursive: true });
    await mkdir(join(root, '.staging', 'junk'));
    const live = `${process.ppid}-live`;
    await mkdir(join(root, '.staging', live));
    const own = `${process.pid}-0123456789abcdef`;
    await mkdir(join(root, '.staging', own));
    // A version renamed in but never recorded, and temps of dead writers.
    await mkdir(join(root, 'pkgs', 'demo', '3'));
    await writeFile(join(root, 'pkgs', 'demo', '.files', '3.json'), '{"files":{}}');
    await symlink('3', join(root, 'pkgs', 'demo', '.current.99999999.abcdef.tmp'));
    await writeFile(join(root, 'bin', '.tool.99999999.abcdef.tmp'), 'x');

    const report = await r.reconcile();
    assert.deepEqual(report.staging.sort(), ['99999999-dead', live, own, 'junk'].sort());
    assert.deepEqual(report.removed, ['demo@3']);
    assert.deepEqual(report.found, []);
    assert.deepEqual(report.dropped, ['gone@1']);
    assert.deepEqual(report.unexposed, ['gone'], 'the command of a package that is gone');
    assert.deepEqual(await readdir(join(root, '.staging')), []);
    assert.deepEqual((await readdir(join(root, 'pkgs', 'demo'))).sort(), ['.files', '1', '2', 'current']);
    assert.deepEqual((await readdir(join(root, 'pkgs', 'demo', '.files'))).sort(), ['1.json', '2.json']);
    assert.deepEqual(await readdir(join(root, 'bin')).then((e) => e.sort()), ['tool']);
    assert.equal((await readState(root)).packages.gone, undefined);

    // current pointing at an unrecorded version: recorded as found (digest unknown), first in the history.
    await mkdir(join(root, 'pkgs', 'demo', '4'));
    await writeFile(join(root, 'pkgs', 'demo', '4', 'f'), 'four');
    // (switchCurrent would reconcile first and remove it: the link is made by hand, as after a lost state file.)
    await symlink('4', join(root, 'pkgs', 'demo', 'current.new'));
    await rename(join(root, 'pkgs', 'demo', 'current.new'), join(root, 'pkgs', 'demo', 'current'));
    const again = await r.reconcile();
    assert.deepEqual(again.found, ['demo@4']);
    const rec = (await readState(root)).packages.demo!.versions['4']!;
    assert.equal(rec.found, true);
    assert.equal(rec.digest, '');
    assert.deepEqual((await readState(root)).packages.demo!.history, ['4', '1', '2']);

    // A commit of the same files adopts it with the real record; other files conflict.
    await r.withLock(async () => {
    const other = await stage(r, { f: 'FOUR' });
    await rejectsWith(r.commitVersion({ stagingDir: other.dir, name: 'demo', version: '4', record: record('4', 'sha256:44'), files: other.files }), 'E_INSTALL_CONFLICT');
    const same = await stage(r, { f: 'four' });
    assert.equal(await r.commitVersion({ stagingDir: same.dir, name: 'demo', version: '4', record: record('4', 'sha256:44'), files: same.files }), 'exists');
    const adopted = (await readState(root)).packages.demo!.versions['4']!;
    assert.equal(adopted.digest, 'sha256:44');
    assert.equal(adopted.found, undefined);
    assert.deepEqual((await readState(root)).packages.demo!.history, ['1', '2', '4']);
    });
  });

  test('openInstallRoot does not reconcile while another holder has the lock, and does once it is free', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    let entered!: () => void;
    const inside = new Promise<void>((res) => (entered = res));
    let leave!: () => void;
    const release = new Promise<void>((res) => (leave = res));
    const holder = r.withLock(async () => {
      await mkdir(join(root, '.staging', '99999999-dead'));
      entered();
      await release;
    });
    await inside;
    // Outside the holder's async context: the lock is busy, so nothing is touched.
    const busy = await openInstallRoot(root);
    assert.equal(await busy.tryReconcile(), undefined);
    assert.deepEqual(await readdir(join(root, '.staging')), ['99999999-dead']);
    leave();
    await holder;
    const report = await (await openInstallRoot(root)).tryReconcile();
    assert.deepEqual(report?.staging, []);
    assert.deepEqual(await readdir(join(root, '.staging')), [], 'removed by the open before');
  });

  test('a root made with the constructor (materialize) only has its staging reconciled', async () => {
    const root = await freshRoot();
    await mkdir(join(root, 'pkgs', 'laid', 'out'), { recursive: true });
    await writeFile(join(root, 'pkgs', 'laid', 'out', 'f'), 'mounted content');
    await mkdir(join(root, '.staging', '99999999-dead'), { recursive: true });
    const r = new InstallRoot(root);
    assert.equal(await r.withLock(async () => 'ok'), 'ok');
    assert.deepEqual(await readdir(join(root, '.staging')), []);
    assert.equal(await readFile(join(root, 'pkgs', 'laid', 'out', 'f'), 'utf8'), 'mounted content');
    assert.equal(await exists(join(root, '.lading', 'state.json')), false);
  });

  test('a malformed state file is E_INSTALL_STATE_INVALID with a hint; extra fields are kept', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    const good = JSON.parse(await readFile(join(root, '.lading', 'state.json'), 'utf8'));
    const bad: unknown[] = [
      'not json',
      [],
      { version: 2, packages: {} },
      { version: 1, packages: [] },
      { version: 1, packages: { demo: { ...good.packages.demo, history: 'x' } } },
      { version: 1, packages: { demo: { ...good.packages.demo, name: 'other' } } },
      { version: 1, packages: { demo: { ...good.packages.demo, history: ['1', '9'] } } },
      { version: 1, packages: { demo: { ...good.packages.demo, versions: { 1: { ...good.packages.demo.versions['1'], deps: 'lib' } } } } },
      { version: 1, packages: { demo: { ...good.packages.demo, versions: { 1: { ...good.packages.demo.versions['1'], digest: 7 } } } } },
      { version: 1, packages: { '../x': { ...good.packages.demo, name: '../x' } } },
    ];
    for (const doc of bad) {
      await writeFile(join(root, '.lading', 'state.json'), typeof doc === 'string' ? doc : JSON.stringify(doc));
      const err = await rejectsWith(readState(root), 'E_INSTALL_STATE_INVALID');
      assert.ok((err as { hint?: string }).hint, 'has a hint');
      await rejectsWith(openInstallRoot(root), 'E_INSTALL_STATE_INVALID');
    }
    good.extra = { future: true };
    good.packages.demo.versions['1'].note = 'kept';
    await writeFile(join(root, '.lading', 'state.json'), JSON.stringify(good));
    const r = await openInstallRoot(root);
    await fakeInstall(root, { name: 'demo', version: '2' });
    const after = JSON.parse(await readFile(join(root, '.lading', 'state.json'), 'utf8'));
    assert.deepEqual(after.extra, { future: true });
    assert.equal(after.packages.demo.versions['1'].note, 'kept');
    assert.equal((await r.list())[0]!.current, '2');
  });

  test('the committed version tree is what was staged, file for file', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1', files: 30 });
    const onDisk = await fileIndex(join(root, 'pkgs', 'demo', '1'));
    const recorded = JSON.parse(await readFile(join(root, 'pkgs', 'demo', '.files', '1.json'), 'utf8'));
    assert.deepEqual(onDisk, recorded);
    const digest = `sha256:${createHash('sha256').update(JSON.stringify(onDisk)).digest('hex')}`;
    assert.equal((await readState(root)).packages.demo!.versions['1']!.digest, digest);
  });

  // ---- review findings -------------------------------------------------------------------------------

  test('switch and rollback make bin/ the current version\'s: renamed commands, args and env, content compared', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    await fakeInstall(root, { name: 'demo', version: '2', command: 'tool2', args: ['--two'], env: { V: 'two' } });
    const state = await readState(root);
    assert.deepEqual(state.packages.demo!.versions['2']!.args, ['--two']);
    assert.deepEqual(state.packages.demo!.versions['2']!.env, { V: 'two' });
    // The old command went with the switch; the new one is a wrapper (args/env recorded).
    assert.deepEqual(await readdir(join(root, 'bin')), ['tool2']);
    assert.ok((await lstat(join(root, 'bin', 'tool2'))).isFile());
    assert.equal(await runBin(root, 'tool2', ['x']), 'tool demo 2 --two x\n');
    const r = await openInstallRoot(root);
    assert.deepEqual(await r.rollback('demo'), { from: '2', to: '1' });
    assert.deepEqual(await readdir(join(root, 'bin')), ['tool']);
    assert.equal(await readlink(join(root, 'bin', 'tool')), '../pkgs/demo/current/bin/tool');
    assert.equal(await runBin(root, 'tool'), 'tool demo 1 \n');
    await r.switchCurrent('demo', '2');
    assert.deepEqual(await readdir(join(root, 'bin')), ['tool2']);

    // "Already exposed" means the same bytes, not just an entry of this package: a changed wrapper and a
    // link to another file of the package are rewritten.
    const wrapper = await readFile(join(root, 'bin', 'tool2'), 'utf8');
    const exposed: unknown[] = [];
    r.events.on('exposed', (e) => exposed.push(e));
    // (Inside one hold: a new holder's reconcile would repair it first, quietly.)
    await r.withLock(async () => {
      await writeFile(join(root, 'bin', 'tool2'), wrapper.replace("'--two'", "'--evil'"));
      await r.exposeFor('demo', '2');
      assert.equal(await readFile(join(root, 'bin', 'tool2'), 'utf8'), wrapper);
      assert.equal(exposed.length, 1);
      await r.exposeFor('demo', '2');
      assert.equal(exposed.length, 1, 'exactly right already: nothing written, no event');
    });
    await writeFile(join(root, 'bin', 'tool2'), wrapper.replace("'--two'", "'--evil'"));
    await r.withLock(async () => undefined);
    assert.equal(await readFile(join(root, 'bin', 'tool2'), 'utf8'), wrapper, 'the next holder repairs it too');
    await r.rollback('demo');
    await symlink('../pkgs/demo/current/data/file-0.txt', join(root, 'bin', '.x.tmp-by-hand'));
    await rename(join(root, 'bin', '.x.tmp-by-hand'), join(root, 'bin', 'tool'));
    await r.exposeFor('demo', '1');
    assert.equal(await readlink(join(root, 'bin', 'tool')), '../pkgs/demo/current/bin/tool');
    await rejectsWith(r.exposeFor('demo', '2'), 'E_USAGE');
    await rejectsWith(r.exposeFor('demo', 'current'), 'E_CONFIG_INVALID');
    await rejectsWith(r.exposeFor('ghost', '1'), 'E_USAGE');
  });

  test('a kill between the switch and the expose: the next open makes bin/ the current version\'s', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    await fakeInstall(root, { name: 'demo', version: '2', command: 'tool2' });
    await fakeInstall(root, { name: 'other', version: '1', command: 'other' });
    const r = await openInstallRoot(root);
    await r.rollback('demo');
    // As if a process died right after renaming `current` to 2: bin/ still has 1's command.
    await symlink('2', join(root, 'pkgs', 'demo', 'current.new'));
    await rename(join(root, 'pkgs', 'demo', 'current.new'), join(root, 'pkgs', 'demo', 'current'));
    // And another package's link is gone (killed during an earlier expose), a link of an uninstalled one is left.
    await rm(join(root, 'bin', 'other'));
    await symlink('../pkgs/ghost/current/bin/tool', join(root, 'bin', 'ghost'));
    const report = await new InstallRoot(root, { packages: true }).tryReconcile();
    assert.deepEqual(report?.unexposed, ['ghost', 'tool']);
    assert.deepEqual(report?.unexposable, []);
    assert.deepEqual((await readdir(join(root, 'bin'))).sort(), ['other', 'tool2']);
    assert.equal(await runBin(root, 'tool2'), 'tool demo 2 \n');
    assert.equal(await runBin(root, 'other'), 'tool other 1 \n');
  });

  test('a lost state file: versions found on disk get their family and command back from the envelope', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1', deps: ['lib'], args: ['-a'] });
    await rm(join(root, '.lading', 'state.json'));
    await rm(join(root, 'bin', 'tool'));
    const report = await (await openInstallRoot(root)).tryReconcile();
    assert.deepEqual(report?.found, []);
    const rec = (await readState(root)).packages.demo!.versions['1']!;
    assert.equal((await readState(root)).packages.demo!.family, 'cli');
    assert.equal(rec.found, true);
    assert.equal(rec.digest, '');
    assert.equal(rec.family, 'cli');
    assert.equal(rec.command, 'tool');
    assert.equal(rec.executable, 'bin/tool');
    assert.deepEqual(rec.args, ['-a']);
    assert.deepEqual(rec.deps, ['lib']);
    // bin/ was re-derived from it, and installing goes on as a cli.
    assert.equal(await runBin(root, 'tool'), 'tool demo 1 -a\n');
    await fakeInstall(root, { name: 'demo', version: '2' });
    assert.equal(await runBin(root, 'tool'), 'tool demo 2 \n');

    // Without a readable envelope the family is 'unknown', which any family may take over.
    const other = await freshRoot();
    await fakeInstall(other, { name: 'demo', version: '1' });
    await rm(join(other, '.lading', 'state.json'));
    await writeFile(join(other, 'pkgs', 'demo', '1', 'lading.envelope.json'), '{not json');
    await openInstallRoot(other);
    const pkg = (await readState(other)).packages.demo!;
    assert.equal(pkg.family, 'unknown');
    assert.equal(pkg.versions['1']!.command, undefined);
    assert.equal(await runBin(other, 'tool'), 'tool demo 1 \n', 'a found version of unknown command leaves bin/ alone');
    await fakeInstall(other, { name: 'demo', version: '2' });
    assert.equal((await readState(other)).packages.demo!.family, 'cli');

    // An envelope naming another package, or too big, is not believed.
    const third = await freshRoot();
    await fakeInstall(third, { name: 'demo', version: '1' });
    await rm(join(third, '.lading', 'state.json'));
    await writeFile(join(third, 'pkgs', 'demo', '1', 'lading.envelope.json'), JSON.stringify({ kind: 'pack', metadata: { name: 'else' }, spec: {} }));
    await openInstallRoot(third);
    assert.equal((await readState(third)).packages.demo!.family, 'unknown');
  });

  test('a committed version is readable by everyone (0755 & ~umask), though staging is private', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    const umask = process.umask();
    assert.equal((await stat(join(root, 'pkgs', 'demo', '1'))).mode & 0o777, 0o755 & ~umask);
    assert.equal((await stat(join(root, '.staging'))).isDirectory(), true);
  });

  test('the lock stops being re-entrant once withLock returned, for work scheduled inside it', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    const lock = join(root, '.lading', 'install.lock');
    let go!: () => void;
    const gate = new Promise<void>((res) => (go = res));
    let later!: Promise<boolean>;
    let laterStaging!: Promise<unknown>;
    await r.withLock(async () => {
      assert.equal(r.locked, true);
      // Continuations created here keep this async context after the hold ended.
      later = gate.then(() => r.withLock(async () => exists(lock)));
      laterStaging = gate.then(() => r.newStaging().catch((e: unknown) => e));
    });
    assert.equal(r.locked, false);
    go();
    assert.equal(await later, true, 'the later withLock took the lock itself');
    assert.ok(isLadingError(await laterStaging, 'E_USAGE'), 'staging after the hold ended is refused');
    await assert.rejects(stat(lock), { code: 'ENOENT' });
  });

  test('an explicit reconcile inside a hold keeps that hold\'s staging; every other entry goes', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    await r.withLock(async () => {
      const mine = await r.newStaging();
      await mkdir(join(root, '.staging', `${process.pid}-leftover`));
      await mkdir(join(root, '.staging', '1-pid-one'));
      const report = await r.reconcile();
      assert.deepEqual(report.staging.sort(), [`${process.pid}-leftover`, '1-pid-one'].sort());
      assert.ok((await stat(mine)).isDirectory());
      await r.removeStaging(mine);
    });
  });

  test('orphans: file indexes without a version, temps in .files/ and .lading/ are removed', async () => {
    const root = await freshRoot();
    await fakeInstall(root, { name: 'demo', version: '1' });
    const files = join(root, 'pkgs', 'demo', '.files');
    await writeFile(join(files, '9.json'), '{"files":{}}');
    await writeFile(join(files, '.1.json.99999999.abcdef.tmp'), 'x');
    await writeFile(join(files, `.1.json.${process.pid}.abcdef.tmp`), 'x');
    await writeFile(join(root, '.lading', '.state.json.99999999.abcdef.tmp'), 'x');
    await writeFile(join(root, '.lading', `.state.json.${process.ppid}.abcdef.tmp`), 'x');
    await writeFile(join(root, 'bin', `.tool.${process.pid}.abcdef.tmp`), 'x');
    await openInstallRoot(root);
    assert.deepEqual(await readdir(files), ['1.json']);
    assert.deepEqual((await readdir(join(root, '.lading'))).sort(), ['state.json']);
    assert.deepEqual(await readdir(join(root, 'bin')), ['tool']);
  });

  test('install.lock: a lock naming this process that it does not hold (an earlier life of the pid) is broken', async () => {
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    const lock = join(root, '.lading', 'install.lock');
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: hostname(), nonce: 'an-earlier-process' }));
    await mkdir(join(root, '.staging', `${process.pid}-earlier`));
    const report = await r.tryReconcile();
    assert.deepEqual(report?.staging, [`${process.pid}-earlier`]);
    assert.equal(await r.withLock(async () => 'taken', AbortSignal.timeout(5_000)), 'taken');
  });

  test('install.lock waits as long as an install may take, and an abort ends the wait', async () => {
    assert.ok(INSTALL_LOCK_WAIT_MS >= 24 * 60 * 60_000);
    const root = await freshRoot();
    const r = await openInstallRoot(root);
    let leave!: () => void;
    const hold = new Promise<void>((res) => (leave = res));
    let entered!: () => void;
    const inside = new Promise<void>((res) => (entered = res));
    const holder = r.withLock(async () => {
      entered();
      await hold;
    });
    await inside;
    // Made old: a live holder on this host is not broken by age.
    const old = new Date(Date.now() - 2 * 60 * 60_000);
    await utimes(join(root, '.lading', 'install.lock'), old, old);
    const other = new InstallRoot(root, { packages: true });
    const started = Date.now();
    await rejectsWith(other.withLock(async () => 'got it', AbortSignal.timeout(1_500)), 'E_ABORTED');
    assert.ok(Date.now() - started < 10_000, 'the abort was noticed promptly');
    assert.equal(await other.tryReconcile(), undefined);
    leave();
    await holder;
    assert.equal(await other.withLock(async () => 'got it'), 'got it');
  });

  test('listInstalled reads without changing anything: no directories, no lock, no reconcile', async () => {
    const bare = join(await freshRoot(), 'does-not-exist');
    assert.deepEqual(await listInstalled(bare), []);
    await assert.rejects(stat(bare), { code: 'ENOENT' });

    const root = await freshRoot();
    await fakeInstall(root, { name: 'b', version: '1', command: 'b' });
    await fakeInstall(root, { name: 'b', version: '2', command: 'b' });
    await fakeInstall(root, { name: 'a', version: '1', command: 'a' });
    const r = await openInstallRoot(root);
    await mkdir(join(root, '.staging', '99999999-dead'));
    let leave!: () => void;
    const hold = new Promise<void>((res) => (leave = res));
    let entered!: () => void;
    const inside = new Promise<void>((res) => (entered = res));
    const holder = new InstallRoot(root).withLock(async () => {
      entered();
      await hold;
    });
    await inside;
    // (Outside the holder's context: a reader neither waits for the lock nor takes it.)
    const listed = await listInstalled(root);
    leave();
    await holder;
    assert.deepEqual(listed.map((p) => [p.name, p.family, p.current, p.versions.map((v) => v.version)]), [
      ['a', 'cli', '1', ['1']],
      ['b', 'cli', '2', ['1', '2']],
    ]);
    await mkdir(join(root, '.staging', '99999999-dead2'));
    assert.deepEqual(await listInstalled(root), listed);
    assert.deepEqual(await r.list(), listed);
    assert.ok(await exists(join(root, '.staging', '99999999-dead2')), 'nothing reconciled');
  });
});
