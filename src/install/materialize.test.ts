import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isLadingError } from '../errors.js';
import { MemoryStore } from '../content/memory.js';
import type { Platform } from '../oci/descriptor.js';
import { hostPlatform } from '../oci/platform.js';
import { parseTargetReference } from '../oci/reference.js';
import type { Opener } from '../artifact/bundle.js';
import { checkEnvelope } from '../artifact/envelope.js';
import { Families } from '../artifact/family.js';
import { pushTyped } from '../artifact/typed.js';
import { MATERIALIZED_MARKER, checkMountPath, materializeArtifact } from './materialize.js';

const families = Families.builtin();

/** Repositories of one fake registry, each a memory store, opened the way the CLI opens references. */
class Registry implements Opener {
  readonly stores = new Map<string, MemoryStore>();

  store(ref: string): MemoryStore {
    const t = parseTargetReference(ref);
    if (t.kind === 'layout') throw new Error('no layouts here');
    const name = `${t.ref.registry}/${t.ref.repository}`;
    let s = this.stores.get(name);
    if (!s) this.stores.set(name, (s = new MemoryStore()));
    return s;
  }

  async open(ref: string) {
    const t = parseTargetReference(ref);
    if (t.kind === 'layout') throw new Error('no layouts here');
    return { target: this.store(ref), reference: t.ref.digest ?? t.ref.tag ?? 'latest', display: ref };
  }
}

interface Env {
  reg: Registry;
  work: string;
  root: string;
  /** Pushes a typed artifact at `ref` (which carries a tag) with `files` (path → content). */
  push(ref: string, kind: string, o: { name: string; spec?: Record<string, unknown>; mount?: Record<string, unknown>; files?: Record<string, string>; platform?: Platform }): Promise<string>;
}

async function withEnv(body: (env: Env) => Promise<void>): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'lading-materialize-'));
  let n = 0;
  const reg = new Registry();
  try {
    await body({
      reg,
      work,
      root: join(work, 'root'),
      async push(ref, kind, o) {
        const family = families.get(kind);
        const envelope = checkEnvelope(
          { apiVersion: 'lading.dev/v1', kind, metadata: { name: o.name }, spec: o.spec ?? {}, ...(o.mount ? { mount: o.mount } : {}) },
          family,
        );
        const cwd = join(work, `src-${n++}`);
        const files = o.files ?? {};
        for (const [path, content] of Object.entries(files)) {
          await mkdir(join(cwd, path, '..'), { recursive: true });
          await writeFile(join(cwd, path), content);
        }
        await mkdir(cwd, { recursive: true });
        const t = parseTargetReference(ref);
        const tag = t.kind === 'remote' ? t.ref.tag : undefined;
        const pushed = await pushTyped(reg.store(ref), tag, Object.keys(files).map((path) => ({ path })), {
          family,
          envelope,
          cwd,
          ...(o.platform ? { platform: o.platform } : {}),
        });
        return pushed.index?.digest ?? pushed.manifest.digest;
      },
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

function code(c: string, re?: RegExp) {
  return (err: unknown) => {
    assert.ok(isLadingError(err), `expected a LadingError, got ${String(err)}`);
    assert.equal(err.code, c, err.message);
    if (re) assert.match(`${err.message}\n${err.hint ?? ''}`, re);
    return true;
  };
}

async function marker(dir: string): Promise<Record<string, unknown>> {
  return JSON.parse(await readFile(join(dir, MATERIALIZED_MARKER), 'utf8'));
}

test('a fileset is laid at its default mount path; the same digest again is a no-op; a new one replaces it', () =>
  withEnv(async (env) => {
    const d1 = await env.push('reg.test/filesets/site:1', 'fileset', { name: 'site', files: { 'index.html': 'v1', 'css/a.css': 'a' } });
    const [first, ...rest] = await materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families });
    assert.equal(rest.length, 0);
    assert.deepEqual(
      { ...first, path: first!.path },
      { reference: 'reg.test/filesets/site:1', family: 'fileset', mountPath: '/srv/site', digest: d1, path: join(env.root, 'srv', 'site'), readOnly: true, changed: true },
    );
    const dir = join(env.root, 'srv', 'site');
    assert.equal(await readFile(join(dir, 'index.html'), 'utf8'), 'v1');
    assert.equal(await readFile(join(dir, 'css', 'a.css'), 'utf8'), 'a');
    assert.equal((await marker(dir)).digest, d1);
    const ino = (await lstat(dir)).ino;

    const again = await materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families });
    assert.equal(again[0]!.changed, false);
    assert.equal((await lstat(dir)).ino, ino, 'left as it was');

    const d2 = await env.push('reg.test/filesets/site:1', 'fileset', { name: 'site', files: { 'index.html': 'v2' } });
    const replaced = await materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families });
    assert.equal(replaced[0]!.changed, true);
    assert.equal(replaced[0]!.digest, d2);
    assert.equal(await readFile(join(dir, 'index.html'), 'utf8'), 'v2');
    assert.deepEqual((await readdir(dir)).sort(), [MATERIALIZED_MARKER, 'index.html', 'lading.envelope.json'].sort(), 'nothing of v1 is left');
    // Staged beside the destination, and nothing of it, or of the old copy, is left there.
    assert.deepEqual(await readdir(join(env.root, 'srv')), ['site']);
    // No install-root directories are made in a materialize root.
    assert.deepEqual((await readdir(env.root)).sort(), ['.lading', 'srv']);
  }));

test('a fileset with spec.root lays that directory; an explicit mount path is honoured', () =>
  withEnv(async (env) => {
    await env.push('reg.test/filesets/docs:1', 'fileset', {
      name: 'docs',
      spec: { root: 'public' },
      mount: { path: '/var/www/docs' },
      files: { 'public/index.html': 'docs', 'README.md': 'not mounted' },
    });
    const [r] = await materializeArtifact(env.reg, 'reg.test/filesets/docs:1', { root: env.root, families });
    assert.equal(r!.mountPath, '/var/www/docs');
    assert.deepEqual((await readdir(join(env.root, 'var', 'www', 'docs'))).sort(), [MATERIALIZED_MARKER, 'index.html']);
  }));

test('a bundle of two filesets and a config lays each mountable component; a cli component is skipped', () =>
  withEnv(async (env) => {
    const a = await env.push('reg.test/filesets/a:1', 'fileset', { name: 'a', files: { 'a.txt': 'A' } });
    const b = await env.push('reg.test/filesets/b:1', 'fileset', { name: 'b', files: { 'b.txt': 'B' } });
    const c = await env.push('reg.test/configs/app:1', 'config', { name: 'app', spec: { format: 'yaml' }, files: { 'app.yaml': 'port: 80\n' } });
    // A cli with variants: resolved (the host's) but not laid out, having no mount path.
    await env.push('reg.test/tools/cli/jq:1', 'cli', { name: 'jq', spec: { executable: 'jq' }, files: { jq: 'x' }, platform: hostPlatform() });
    await env.push('reg.test/bundles/stack:1', 'bundle', {
      name: 'stack',
      spec: {
        components: [
          { name: 'a', ref: 'reg.test/filesets/a:1', mount: { path: '/srv/a' } },
          { name: 'b', ref: 'reg.test/filesets/b:1', mount: { path: '/data/b', readOnly: false } },
          { name: 'app', ref: 'reg.test/configs/app:1' },
          { name: 'jq', ref: 'reg.test/tools/cli/jq:1' },
        ],
      },
    });
    const events: string[] = [];
    const out = await materializeArtifact(env.reg, 'reg.test/bundles/stack:1', { root: env.root, families, onEvent: (e) => events.push(e.type) });
    assert.deepEqual(
      out.map((r) => [r.reference, r.family, r.mountPath, r.digest, r.readOnly, r.changed]),
      [
        ['reg.test/filesets/a:1', 'fileset', '/srv/a', a, true, true],
        ['reg.test/filesets/b:1', 'fileset', '/data/b', b, false, true],
        ['reg.test/configs/app:1', 'config', '/etc/app', c, true, true],
      ],
    );
    assert.equal(await readFile(join(env.root, 'srv', 'a', 'a.txt'), 'utf8'), 'A');
    assert.equal(await readFile(join(env.root, 'data', 'b', 'b.txt'), 'utf8'), 'B');
    assert.equal(await readFile(join(env.root, 'etc', 'app', 'app.yaml'), 'utf8'), 'port: 80\n');
    assert.ok(events.includes('skipped'));
    const again = await materializeArtifact(env.reg, 'reg.test/bundles/stack:1', { root: env.root, families });
    assert.deepEqual(again.map((r) => r.changed), [false, false, false]);
  }));

test('a path that holds something lading did not lay out is a conflict, and nothing is laid', () =>
  withEnv(async (env) => {
    await env.push('reg.test/filesets/a:1', 'fileset', { name: 'a', files: { 'a.txt': 'A' } });
    await env.push('reg.test/filesets/site:1', 'fileset', { name: 'site', files: { 'index.html': 'x' } });
    await env.push('reg.test/bundles/two:1', 'bundle', {
      name: 'two',
      spec: { components: [{ ref: 'reg.test/filesets/a:1', mount: { path: '/srv/a' } }, { ref: 'reg.test/filesets/site:1' }] },
    });
    await mkdir(join(env.root, 'srv', 'site'), { recursive: true });
    await writeFile(join(env.root, 'srv', 'site', 'victim.txt'), 'mine');
    await assert.rejects(materializeArtifact(env.reg, 'reg.test/bundles/two:1', { root: env.root, families }), code('E_INSTALL_CONFLICT', /\/srv\/site/));
    assert.equal(await readFile(join(env.root, 'srv', 'site', 'victim.txt'), 'utf8'), 'mine');
    await assert.rejects(lstat(join(env.root, 'srv', 'a')), 'the other component was not laid either');
    // A file there, or a marker-less directory: the same.
    await rm(join(env.root, 'srv', 'site'), { recursive: true });
    await writeFile(join(env.root, 'srv', 'site'), 'a file');
    await assert.rejects(materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families }), code('E_INSTALL_CONFLICT'));
    assert.equal(await readFile(join(env.root, 'srv', 'site'), 'utf8'), 'a file');
  }));

test('unsafe mount paths and links on the way are refused', () =>
  withEnv(async (env) => {
    for (const bad of ['relative/x', '/srv/../etc', '/srv/./x', '/srv//x', '/srv/x/', '/', '/.lading/x', '/.staging', 'C:\\x', '/a\\b']) {
      assert.throws(() => checkMountPath(bad, 'test'), code('E_UNSAFE_PATH'), bad);
    }
    assert.equal(checkMountPath('/srv/site', 'test'), '/srv/site');

    // <root>/srv is a link to a directory outside the root: laying /srv/site through it is refused.
    const outside = join(env.work, 'outside');
    await mkdir(outside);
    await writeFile(join(outside, 'victim.txt'), 'untouched');
    await mkdir(env.root, { recursive: true });
    await symlink(outside, join(env.root, 'srv'));
    await env.push('reg.test/filesets/site:1', 'fileset', { name: 'site', files: { 'index.html': 'x' } });
    await assert.rejects(materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families }), code('E_UNSAFE_PATH', /symbolic link/));
    assert.deepEqual(await readdir(outside), ['victim.txt']);
    assert.equal(await readFile(join(outside, 'victim.txt'), 'utf8'), 'untouched');
  }));

test('overlapping mount paths, and artifacts without one, are refused', () =>
  withEnv(async (env) => {
    await env.push('reg.test/filesets/a:1', 'fileset', { name: 'a', files: { 'a.txt': 'A' } });
    await env.push('reg.test/filesets/b:1', 'fileset', { name: 'b', files: { 'b.txt': 'B' } });
    await env.push('reg.test/bundles/nested:1', 'bundle', {
      name: 'nested',
      spec: { components: [{ ref: 'reg.test/filesets/a:1', mount: { path: '/srv' } }, { ref: 'reg.test/filesets/b:1', mount: { path: '/srv/b' } }] },
    });
    await assert.rejects(materializeArtifact(env.reg, 'reg.test/bundles/nested:1', { root: env.root, families }), code('E_CONFIG_INVALID', /inside/));
    await env.push('reg.test/tools/cli/jq:1', 'cli', { name: 'jq', spec: { executable: 'jq' }, files: { jq: 'x' } });
    await assert.rejects(materializeArtifact(env.reg, 'reg.test/tools/cli/jq:1', { root: env.root, families }), code('E_USAGE', /lading install/));
  }));

test('a swap interrupted between its renames is repaired by the next run; leftovers beside the path are removed', () =>
  withEnv(async (env) => {
    const d1 = await env.push('reg.test/filesets/site:1', 'fileset', { name: 'site', files: { 'index.html': 'v1' } });
    await materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families });
    const srv = join(env.root, 'srv');
    const dest = join(srv, 'site');
    const ino = (await lstat(dest)).ino;
    // The state a crash after "rename old aside" leaves: the old copy aside, nothing at the path, and a
    // half-downloaded new copy beside it.
    await rename(dest, join(srv, '.site.lading-old-0123456789abcdef'));
    await mkdir(join(srv, '.site.lading-new-fedcba9876543210', 'partial'), { recursive: true });
    // Something that only looks similar is not ours and stays.
    await mkdir(join(srv, '.site.lading-old-not-ours'));
    const events: string[] = [];
    const [r] = await materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families, onEvent: (e) => events.push(e.type) });
    assert.equal(r!.changed, false, 'the old copy (the same digest) was put back');
    assert.ok(events.includes('repaired'));
    assert.equal((await lstat(dest)).ino, ino);
    assert.equal((await marker(dest)).digest, d1);
    assert.deepEqual((await readdir(srv)).sort(), ['.site.lading-old-not-ours', 'site']);

    // A crash after both renames leaves the old copy aside with the new one in place: it is removed.
    await rm(join(srv, '.site.lading-old-not-ours'), { recursive: true });
    await mkdir(join(srv, '.site.lading-old-00000000000000aa'));
    await writeFile(join(srv, '.site.lading-old-00000000000000aa', MATERIALIZED_MARKER), JSON.stringify({ digest: 'sha256:old' }));
    const d2 = await env.push('reg.test/filesets/site:1', 'fileset', { name: 'site', files: { 'index.html': 'v2' } });
    const [r2] = await materializeArtifact(env.reg, 'reg.test/filesets/site:1', { root: env.root, families });
    assert.equal(r2!.digest, d2);
    assert.equal(await readFile(join(dest, 'index.html'), 'utf8'), 'v2');
    assert.deepEqual(await readdir(srv), ['site']);
  }));
