import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isLadingError } from '../errors.js';
import { checkName, checkVersion, currentVersion, emptyState, familyCompatible, readState, updateState, validateState, type InstalledVersion } from './state.js';

let base: string;
before(async () => {
  base = await mkdtemp(join(tmpdir(), 'lading-state-'));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});
let n = 0;
async function freshRoot(): Promise<string> {
  const root = join(base, `r${n++}`);
  await mkdir(root);
  return root;
}

function rec(version: string): InstalledVersion {
  return { version, digest: `sha256:${version}`, reference: `r:${version}`, family: 'cli', installedAt: 'now', deps: [] };
}

describe('installed-state store', () => {
  test('a missing state is empty', async () => {
    assert.deepEqual(await readState(await freshRoot()), emptyState());
  });

  test('updateState serialises concurrent writers: no update is lost, no temp file is left', async () => {
    const root = await freshRoot();
    await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        updateState(root, async (s) => {
          const pkg = (s.packages.p ??= { name: 'p', family: 'cli', versions: {}, history: [] });
          // Yield between read and write, so that two holders at once would lose one.
          await new Promise((r) => setImmediate(r));
          pkg.versions[`v${i}`] = rec(`v${i}`);
          pkg.history.push(`v${i}`);
        }),
      ),
    );
    const s = await readState(root);
    assert.equal(s.packages.p!.history.length, 25);
    assert.deepEqual(Object.keys(s.packages.p!.versions).sort(), Array.from({ length: 25 }, (_, i) => `v${i}`).sort());
    assert.deepEqual((await readdir(join(root, '.lading'))).sort(), ['state.json']);
  });

  test('updateState may return a new state, and refuses to write a malformed one', async () => {
    const root = await freshRoot();
    await updateState(root, () => ({ version: 1, packages: { a: { name: 'a', family: 'cli', versions: { 1: rec('1') }, history: ['1'] } } }));
    assert.deepEqual((await readState(root)).packages.a!.history, ['1']);
    const before = await readFile(join(root, '.lading', 'state.json'), 'utf8');
    await assert.rejects(
      updateState(root, (s) => {
        s.packages.a!.history.push('2');
      }),
      (err) => isLadingError(err, 'E_INSTALL_STATE_INVALID'),
    );
    assert.equal(await readFile(join(root, '.lading', 'state.json'), 'utf8'), before);
  });

  test('a malformed file is E_INSTALL_STATE_INVALID naming the file, with a hint', async () => {
    const root = await freshRoot();
    await mkdir(join(root, '.lading'));
    await writeFile(join(root, '.lading', 'state.json'), '{"version":1,"packages":{"a":{"name":"a"}}}');
    await assert.rejects(readState(root), (err) => {
      assert.ok(isLadingError(err, 'E_INSTALL_STATE_INVALID'));
      assert.match(err.message, /state\.json/);
      assert.ok(err.hint);
      return true;
    });
    await assert.rejects(updateState(root, () => undefined), (err) => isLadingError(err, 'E_INSTALL_STATE_INVALID'));
  });

  test('currentVersion reads the link, and is undefined without one', async () => {
    const root = await freshRoot();
    assert.equal(await currentVersion(root, 'x'), undefined);
    await mkdir(join(root, 'pkgs', 'x', 'current'), { recursive: true });
    assert.equal(await currentVersion(root, 'x'), undefined, 'a directory is not a current link');
    await mkdir(join(root, 'pkgs', 'y'), { recursive: true });
    await symlink('2.0.0', join(root, 'pkgs', 'y', 'current'));
    assert.equal(await currentVersion(root, 'y'), '2.0.0');
  });

  test('checkName accepts names and versions and refuses anything else with E_CONFIG_INVALID', () => {
    for (const ok of ['a', 'A1', '1.0.0', '1.0.0-rc.1+build.5', 'sha256-0123456789ab', 'x_y', 'a'.repeat(128)]) {
      assert.equal(checkName(ok, 'version'), ok);
    }
    for (const bad of ['', '.', '..', '.x', '-x', '_x', 'a/b', 'a\\b', 'a b', 'a\0', 'é', 'a'.repeat(129), 7, undefined]) {
      assert.throws(() => checkName(bad, 'name'), (err) => isLadingError(err, 'E_CONFIG_INVALID'));
    }
  });

  test('checkVersion refuses "current" in any case, and what checkName refuses (a leading dot too)', () => {
    for (const ok of ['1.0.0', 'currently', 'current1', 'sha256-0123456789ab']) assert.equal(checkVersion(ok), ok);
    for (const bad of ['current', 'CURRENT', 'Current', 'cUrReNt', '.current', '.1', '', '..', 'a/b']) {
      assert.throws(() => checkVersion(bad), (err) => isLadingError(err, 'E_CONFIG_INVALID'));
    }
  });

  test('familyCompatible: the same family, or "unknown" (a version found without its envelope) on either side', () => {
    assert.equal(familyCompatible('cli', 'cli'), true);
    assert.equal(familyCompatible('unknown', 'cli'), true);
    assert.equal(familyCompatible('pack', 'unknown'), true);
    assert.equal(familyCompatible('cli', 'pack'), false);
  });

  test('records keep args and env; wrong types and a version named current are refused', () => {
    const ok = { version: 1, packages: { a: { name: 'a', family: 'cli', versions: { 1: { ...rec('1'), args: ['-x'], env: { K: 'v' } } }, history: ['1'] } } };
    assert.deepEqual(validateState(ok).packages.a!.versions['1']!.env, { K: 'v' });
    const bad = [
      { ...rec('1'), args: 'x' },
      { ...rec('1'), args: [1] },
      { ...rec('1'), env: ['K'] },
      { ...rec('1'), env: { K: 1 } },
    ];
    for (const r of bad) {
      assert.throws(
        () => validateState({ version: 1, packages: { a: { name: 'a', family: 'cli', versions: { 1: r }, history: ['1'] } } }),
        (err) => isLadingError(err, 'E_INSTALL_STATE_INVALID'),
      );
    }
    assert.throws(
      () => validateState({ version: 1, packages: { a: { name: 'a', family: 'cli', versions: { Current: rec('Current') }, history: ['Current'] } } }),
      (err) => isLadingError(err, 'E_INSTALL_STATE_INVALID'),
    );
  });
});
