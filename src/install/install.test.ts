import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { isLadingError } from '../errors.js';
import type { Target } from '../content/interfaces.js';
import { MemoryStore } from '../content/memory.js';
import { OciLayout } from '../content/layout.js';
import type { Platform } from '../oci/descriptor.js';
import { formatPlatform, hostPlatform } from '../oci/platform.js';
import { checkEnvelope } from '../artifact/envelope.js';
import { Families } from '../artifact/family.js';
import { pushTyped } from '../artifact/typed.js';
import { installArtifact, rollbackPackage, versionFor, type InstallEvent, type InstallOptions } from './install.js';
import { currentVersion, readState } from './state.js';
import { openInstallRoot } from './store.js';

const run = promisify(execFile);
const families = Families.builtin();
const HOST = hostPlatform();
/** A platform that is not the host's, for the second variant. */
const OTHER: Platform = HOST.architecture === 'arm64' ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64' };

interface Env {
  target: Target;
  work: string;
  root: string;
  /** A fresh source directory holding `files` (path → content). */
  src(files: Record<string, string>): Promise<string>;
  events: InstallEvent[];
  opts(extra?: Partial<InstallOptions>): InstallOptions;
}

async function withEnv(kind: 'memory' | 'layout', body: (env: Env) => Promise<void>): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'lading-install-'));
  let n = 0;
  try {
    const target = kind === 'memory' ? new MemoryStore() : await OciLayout.open(join(work, 'layout'), { create: true });
    const events: InstallEvent[] = [];
    const root = join(work, 'root');
    await body({
      target,
      work,
      root,
      events,
      async src(files) {
        const dir = join(work, `src-${n++}`);
        for (const [path, content] of Object.entries(files)) {
          await mkdir(join(dir, path, '..'), { recursive: true });
          await writeFile(join(dir, path), content);
        }
        return dir;
      },
      opts: (extra = {}) => ({ root, families, onEvent: (e) => events.push(e), ...extra }),
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

const script = (text: string) => `#!/bin/sh\necho "${text} $*"\n`;

/** Pushes a cli at `tag`, as the variant of `platform` when given, with `bin/tool` printing `text`. */
async function pushCli(env: Env, tag: string, o: { version?: string; text: string; platform?: Platform; spec?: Record<string, unknown>; files?: Record<string, string>; name?: string }) {
  const envelope = checkEnvelope(
    {
      apiVersion: 'lading.dev/v1',
      kind: 'cli',
      metadata: { name: o.name ?? 'tool', ...(o.version ? { version: o.version } : {}) },
      spec: { executable: 'bin/tool', ...o.spec },
    },
    families.get('cli'),
  );
  const files = o.files ?? { 'bin/tool': script(o.text) };
  const cwd = await env.src(files);
  return pushTyped(env.target, tag, Object.keys(files).map((path) => ({ path })), {
    family: families.get('cli'),
    envelope,
    cwd,
    ...(o.platform ? { platform: o.platform } : {}),
  });
}

async function pushPack(env: Env, tag: string, o: { name: string; version: string; sdk: string; classes: string[] }) {
  const envelope = checkEnvelope(
    {
      apiVersion: 'lading.dev/v1',
      kind: 'pack',
      metadata: { name: o.name, version: o.version },
      spec: { entry: 'dist/index.js', protocolVersion: 1, sdk: o.sdk, classes: o.classes },
    },
    families.get('pack'),
  );
  const cwd = await env.src({ 'dist/index.js': `export const name = ${JSON.stringify(o.name)};\n` });
  return pushTyped(env.target, tag, [{ path: 'dist/index.js' }], { family: families.get('pack'), envelope, cwd });
}

async function runTool(env: Env, command = 'tool', ...args: string[]): Promise<string> {
  const { stdout } = await run(join(env.root, 'bin', command), args, { timeout: 10_000 });
  return stdout.trim();
}

async function versionsOnDisk(env: Env, name = 'tool'): Promise<string[]> {
  return (await readdir(join(env.root, 'pkgs', name))).filter((e) => e !== 'current' && e !== '.files').sort();
}

async function stagingEntries(env: Env): Promise<string[]> {
  return readdir(join(env.root, '.staging')).catch(() => []);
}

function code(c: string, re?: RegExp) {
  return (err: unknown) => {
    assert.ok(isLadingError(err), `expected a LadingError, got ${String(err)}`);
    assert.equal(err.code, c, err.message);
    if (re) assert.match(`${err.message}\n${err.hint ?? ''}`, re);
    return true;
  };
}

for (const kind of ['memory', 'layout'] as const) {
  test(`${kind}: the host's variant of a two-platform cli is installed and runs from <root>/bin`, () =>
    withEnv(kind, async (env) => {
      await pushCli(env, 'v1', { version: '1.0.0', text: `host ${formatPlatform(HOST)}`, platform: HOST });
      const other = await pushCli(env, 'v1', { version: '1.0.0', text: `other ${formatPlatform(OTHER)}`, platform: OTHER });
      const result = await installArtifact(env.target, 'v1', env.opts({ display: 'reg.test/tools/tool:v1' }));
      assert.equal(result.name, 'tool');
      assert.equal(result.version, '1.0.0');
      assert.equal(result.changed, true);
      assert.equal(result.command, 'tool');
      assert.equal(result.root, other.index!.digest);
      assert.equal(result.platform, formatPlatform(HOST));
      assert.equal(result.path, join(env.root, 'pkgs', 'tool', '1.0.0'));
      assert.equal(await runTool(env, 'tool', 'x'), `host ${formatPlatform(HOST)} x`);
      assert.equal((await stat(join(result.path, 'bin', 'tool'))).mode & 0o777, 0o755);
      assert.equal(await readlink(join(env.root, 'pkgs', 'tool', 'current')), '1.0.0');
      const state = await readState(env.root);
      const rec = state.packages.tool!.versions['1.0.0']!;
      assert.equal(rec.digest, result.digest);
      assert.equal(rec.root, other.index!.digest);
      assert.equal(rec.reference, 'reg.test/tools/tool:v1');
      assert.equal(rec.executable, 'bin/tool');
      // The file index is written beside the version, for ETags.
      const index = JSON.parse(await readFile(join(env.root, 'pkgs', 'tool', '.files', '1.0.0.json'), 'utf8'));
      assert.ok(index.files['bin/tool'].digest.startsWith('sha256:'));
      const types = env.events.map((e) => e.type);
      for (const t of ['resolved', 'staged', 'downloaded', 'committed', 'switched', 'exposed']) assert.ok(types.includes(t), `event ${t} in ${types.join(',')}`);
      assert.deepEqual(await stagingEntries(env), []);
    }));
}

test('an explicit platform picks that variant', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'host', platform: HOST });
    const other = await pushCli(env, 'v1', { version: '1.0.0', text: 'other', platform: OTHER });
    const result = await installArtifact(env.target, 'v1', env.opts({ platform: OTHER }));
    assert.equal(result.digest, other.manifest.digest);
    assert.equal(result.platform, formatPlatform(OTHER));
    assert.equal(await runTool(env), 'other');
    await assert.rejects(installArtifact(env.target, 'v1', env.opts({ platform: { os: 'plan9', architecture: 'mips' } })), code('E_VARIANT_NOT_FOUND'));
  }));

test('reinstalling the same digest is a no-op that downloads nothing', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST });
    const first = await installArtifact(env.target, 'v1', env.opts());
    const before = await lstat(first.path);
    env.events.length = 0;
    const again = await installArtifact(env.target, 'v1', env.opts({ expectDigest: (await env.target.resolve('v1')).digest }));
    assert.equal(again.changed, false);
    assert.equal(again.digest, first.digest);
    assert.deepEqual(await versionsOnDisk(env), ['1.0.0']);
    assert.equal((await lstat(first.path)).ino, before.ino, 'the version directory is the same one');
    const types = env.events.map((e) => e.type);
    assert.deepEqual(types, ['resolved', 'noop']);
    assert.deepEqual(await stagingEntries(env), []);
    // A bin link lost (a crash between switch and expose) is restored by the no-op.
    await rm(join(env.root, 'bin', 'tool'));
    assert.equal((await installArtifact(env.target, 'v1', env.opts())).changed, false);
    assert.equal(await runTool(env), 'one');
  }));

test('a version without metadata.version is named after its digest', () =>
  withEnv('memory', async (env) => {
    const pushed = await pushCli(env, 'latest', { text: 'plain' });
    const result = await installArtifact(env.target, 'latest', env.opts());
    assert.equal(result.version, `sha256-${pushed.manifest.digest.slice(7, 19)}`);
    assert.equal(result.version, versionFor({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'tool' }, spec: {} }, pushed.manifest.digest));
    assert.equal(result.root, undefined);
    assert.equal(await runTool(env), 'plain');
  }));

test('upgrade keeps the old version beside the new, and rollback returns to it', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST });
    await pushCli(env, 'v2', { version: '2.0.0', text: 'two', platform: HOST });
    await installArtifact(env.target, 'v1', env.opts());
    const up = await installArtifact(env.target, 'v2', env.opts());
    assert.equal(up.changed, true);
    assert.equal(up.previous, '1.0.0');
    assert.equal(await runTool(env), 'two');
    assert.deepEqual(await versionsOnDisk(env), ['1.0.0', '2.0.0']);
    const store = await openInstallRoot(env.root);
    assert.deepEqual(await store.rollback('tool'), { from: '2.0.0', to: '1.0.0' });
    assert.equal(await runTool(env), 'one');
    // Installing v2 again only switches back: it is on disk already.
    env.events.length = 0;
    const back = await installArtifact(env.target, 'v2', env.opts());
    assert.equal(back.changed, true);
    assert.equal(back.previous, '1.0.0');
    assert.ok(!env.events.some((e) => e.type === 'downloaded'));
    assert.equal(await runTool(env), 'two');
  }));

test('another digest under an installed version is refused', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST });
    await installArtifact(env.target, 'v1', env.opts());
    await pushCli(env, 'v1b', { version: '1.0.0', text: 'changed', platform: HOST });
    await assert.rejects(installArtifact(env.target, 'v1b', env.opts()), code('E_INSTALL_CONFLICT', /new version/));
    assert.equal(await runTool(env), 'one');
  }));

test('a moved reference is refused against the expected digest before anything is downloaded', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST });
    await assert.rejects(installArtifact(env.target, 'v1', env.opts({ expectDigest: `sha256:${'0'.repeat(64)}` })), code('E_LOCK_MISMATCH'));
    assert.ok(!env.events.some((e) => e.type === 'downloaded'));
  }));

const STEPS = [
  { name: 'late', order: 0, deps: ['setup'], run: ['sh', '-c', 'echo late >> steps.log'] },
  { name: 'setup', order: 5, run: ['sh', '-c', 'echo setup >> steps.log; pwd > cwd.txt; echo "$LADING_INSTALL_DIR" > installdir.txt; env | sort > env.txt'] },
  { name: 'other', order: 3, run: ['sh', '-c', 'echo other >> steps.log'] },
];

test('install steps run in dependency order, then the version is committed', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST, spec: { install: STEPS } });
    const result = await installArtifact(env.target, 'v1', env.opts({ allowScripts: true, signed: true }));
    assert.equal(await readFile(join(result.path, 'steps.log'), 'utf8'), 'other\nsetup\nlate\n');
    assert.equal((await readFile(join(result.path, 'installdir.txt'), 'utf8')).trim(), result.path);
    // Run in the staging directory, which then became the version directory.
    assert.match((await readFile(join(result.path, 'cwd.txt'), 'utf8')).trim(), /\.staging\//);
    const names = (await readFile(join(result.path, 'env.txt'), 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('=')[0]);
    for (const n of names) assert.ok(['PATH', 'HOME', 'LADING_INSTALL_DIR', 'LADING_STAGING_DIR', 'PWD', 'SHLVL', '_', 'OLDPWD'].includes(n!), `unexpected env ${n}`);
    const ran = env.events.find((e) => e.type === 'steps-run');
    assert.deepEqual(ran?.steps, ['other', 'setup', 'late']);
    assert.equal((await readState(env.root)).packages.tool!.versions['1.0.0']!.signed, true);
    assert.equal(await runTool(env), 'one');
  }));

test('install steps need --allow-scripts and a trusted signature; refused before downloading', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST, spec: { install: STEPS } });
    await assert.rejects(installArtifact(env.target, 'v1', env.opts()), code('E_SCRIPTS_NOT_ALLOWED', /--allow-scripts/));
    await assert.rejects(installArtifact(env.target, 'v1', env.opts({ allowScripts: true })), code('E_SCRIPTS_NOT_ALLOWED', /--verify/));
    await assert.rejects(installArtifact(env.target, 'v1', env.opts({ signed: true })), code('E_SCRIPTS_NOT_ALLOWED', /--allow-scripts/));
    assert.ok(!env.events.some((e) => e.type === 'downloaded' || e.type === 'staged'));
    assert.deepEqual((await readState(env.root)).packages, {});
    assert.deepEqual(await stagingEntries(env), []);
  }));

test('a cycle among the steps is refused, naming it', () =>
  withEnv('memory', async (env) => {
    const install = [
      { name: 'a', order: 0, deps: ['b'], run: ['true'] },
      { name: 'b', order: 1, deps: ['a'], run: ['true'] },
    ];
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST, spec: { install } });
    await assert.rejects(installArtifact(env.target, 'v1', env.opts({ allowScripts: true, signed: true })), code('E_STEP_CYCLE', /a → b → a/));
    await pushCli(env, 'v2', { version: '2.0.0', text: 'two', platform: HOST, spec: { install: [{ name: 'a', order: 0, deps: ['ghost'], run: ['true'] }] } });
    await assert.rejects(installArtifact(env.target, 'v2', env.opts({ allowScripts: true, signed: true })), code('E_CONFIG_INVALID', /ghost/));
  }));

test('a failing step leaves the previous install intact and commits nothing', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST });
    await installArtifact(env.target, 'v1', env.opts());
    const install = [
      { name: 'ok', order: 0, run: ['sh', '-c', 'echo fine'] },
      { name: 'boom', order: 1, run: ['sh', '-c', 'echo about to fail; echo broken >&2; exit 3'] },
      { name: 'never', order: 2, run: ['sh', '-c', 'touch never'] },
    ];
    await pushCli(env, 'v2', { version: '2.0.0', text: 'two', platform: HOST, spec: { install } });
    await assert.rejects(installArtifact(env.target, 'v2', env.opts({ allowScripts: true, signed: true })), (err: unknown) => {
      code('E_INSTALL_STEP_FAILED', /"boom".*status 3/s)(err);
      assert.ok(isLadingError(err));
      assert.equal(err.details?.exitCode, 3);
      assert.match(err.message, /broken/);
      assert.match(String(err.details?.output), /about to fail/);
      return true;
    });
    assert.equal(await currentVersion(env.root, 'tool'), '1.0.0');
    assert.deepEqual(await versionsOnDisk(env), ['1.0.0']);
    assert.deepEqual(Object.keys((await readState(env.root)).packages.tool!.versions), ['1.0.0']);
    assert.deepEqual(await stagingEntries(env), []);
    assert.equal(await runTool(env), 'one');
  }));

test('a step that cannot start, or runs too long, fails the install', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST, spec: { install: [{ name: 'x', order: 0, run: ['./no-such-program'] }] } });
    await assert.rejects(installArtifact(env.target, 'v1', env.opts({ allowScripts: true, signed: true })), code('E_INSTALL_STEP_FAILED', /could not start/));
    await pushCli(env, 'v2', { version: '2.0.0', text: 'two', platform: HOST, spec: { install: [{ name: 'slow', order: 0, run: ['sleep', '30'] }] } });
    const started = Date.now();
    await assert.rejects(
      installArtifact(env.target, 'v2', env.opts({ allowScripts: true, signed: true, stepTimeoutMs: 300 })),
      code('E_INSTALL_STEP_FAILED', /did not finish/),
    );
    assert.ok(Date.now() - started < 10_000);
    assert.deepEqual(await stagingEntries(env), []);
  }));

test('an executable that is a symbolic link, or missing, is refused', () =>
  withEnv('memory', async (env) => {
    // A directory layer may hold links that stay inside it; the executable itself must not be one.
    const src = await env.src({ 'bin/real-tool': script('real') });
    await symlink('real-tool', join(src, 'bin', 'tool'));
    const envelope = checkEnvelope({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'tool', version: '1.0.0' }, spec: { executable: 'bin/tool' } }, families.get('cli'));
    await pushTyped(env.target, 'link', [{ path: 'bin' }], { family: families.get('cli'), envelope, cwd: src });
    await assert.rejects(installArtifact(env.target, 'link', env.opts()), code('E_UNSAFE_PATH', /symbolic link/));
    await pushCli(env, 'missing', { version: '2.0.0', text: 'x', files: { 'bin/other': 'x' } });
    await assert.rejects(installArtifact(env.target, 'missing', env.opts()), code('E_CONFIG_INVALID', /bin\/tool/));
    assert.deepEqual((await readState(env.root)).packages, {});
    assert.deepEqual(await stagingEntries(env), []);
  }));

test('args and env make bin/<command> a wrapper; spec.name names the command', () =>
  withEnv('memory', async (env) => {
    const files = { 'bin/tool': '#!/bin/sh\necho "$GREETING $*"\n' };
    await pushCli(env, 'v1', { version: '1.0.0', text: '', files, spec: { name: 'greet', args: ['--from', "it's me"], env: { GREETING: 'hello' } } });
    const result = await installArtifact(env.target, 'v1', env.opts());
    assert.equal(result.command, 'greet');
    assert.equal(await runTool(env, 'greet', 'world'), "hello --from it's me world");
  }));

test('two installs of the same artifact at once end with one install and no error', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', platform: HOST });
    const results = await Promise.all([installArtifact(env.target, 'v1', env.opts()), installArtifact(env.target, 'v1', env.opts())]);
    assert.deepEqual(results.map((r) => r.changed).sort(), [false, true]);
    assert.deepEqual(await versionsOnDisk(env), ['1.0.0']);
    assert.equal(await runTool(env), 'one');
  }));

test('packs: SDK range, class collisions with the host and other packs, no bin', () =>
  withEnv('memory', async (env) => {
    await pushPack(env, 'fmt-1', { name: 'fmt', version: '1.0.0', sdk: '^2.0.0', classes: ['Acme.Fmt'] });
    await assert.rejects(installArtifact(env.target, 'fmt-1', env.opts()), code('E_USAGE', /--sdk-version/));
    await assert.rejects(installArtifact(env.target, 'fmt-1', env.opts({ sdkVersion: '3.1.0' })), code('E_PACK_INCOMPATIBLE', /\^2\.0\.0/));
    await assert.rejects(installArtifact(env.target, 'fmt-1', env.opts({ sdkVersion: '2.3.0', hostClasses: ['Acme.Fmt'] })), code('E_PACK_CONFLICT', /Acme\.Fmt \(host\)/));
    assert.deepEqual((await readState(env.root)).packages, {});

    const fmt = await installArtifact(env.target, 'fmt-1', env.opts({ sdkVersion: '2.3.0' }));
    assert.equal(fmt.changed, true);
    assert.equal(fmt.command, undefined);
    assert.deepEqual(await readdir(join(env.root, 'bin')), []);
    assert.deepEqual((await readState(env.root)).packages.fmt!.versions['1.0.0']!.classes, ['Acme.Fmt']);
    assert.equal(await readFile(join(fmt.path, 'dist', 'index.js'), 'utf8'), 'export const name = "fmt";\n');

    await pushPack(env, 'lint-1', { name: 'lint', version: '1.0.0', sdk: '>=2', classes: ['Acme.Lint', 'Acme.Fmt'] });
    await assert.rejects(installArtifact(env.target, 'lint-1', env.opts({ sdkVersion: '2.3.0' })), code('E_PACK_CONFLICT', /Acme\.Fmt \(fmt@1\.0\.0\)/));
    // An upgrade of the same pack keeps its own classes.
    await pushPack(env, 'fmt-2', { name: 'fmt', version: '2.0.0', sdk: '^2.0.0', classes: ['Acme.Fmt', 'Acme.Fmt2'] });
    const up = await installArtifact(env.target, 'fmt-2', env.opts({ sdkVersion: '2.3.0' }));
    assert.equal(up.previous, '1.0.0');
    assert.deepEqual(await versionsOnDisk(env, 'fmt'), ['1.0.0', '2.0.0']);
  }));

test('fileset, config and bundle artifacts are for lading materialize', () =>
  withEnv('memory', async (env) => {
    const envelope = checkEnvelope({ apiVersion: 'lading.dev/v1', kind: 'fileset', metadata: { name: 'site' }, spec: {} }, families.get('fileset'));
    const cwd = await env.src({ 'index.html': '<p>hi</p>' });
    await pushTyped(env.target, 'site', [{ path: 'index.html' }], { family: families.get('fileset'), envelope, cwd });
    await assert.rejects(installArtifact(env.target, 'site', env.opts()), code('E_USAGE', /lading materialize/));
    assert.ok(!env.events.some((e) => e.type === 'downloaded'));
  }));

test('a command that belongs to another package, or to nobody lading knows, is refused before downloading', () =>
  withEnv('memory', async (env) => {
    await pushCli(env, 'a', { name: 'alpha', version: '1.0.0', text: 'alpha', spec: { name: 'tool' } });
    await pushCli(env, 'b', { name: 'beta', version: '1.0.0', text: 'beta', spec: { name: 'tool' } });
    await installArtifact(env.target, 'a', env.opts());
    env.events.length = 0;
    await assert.rejects(installArtifact(env.target, 'b', env.opts()), code('E_INSTALL_CONFLICT', /not beta's command/));
    assert.ok(!env.events.some((e) => e.type === 'downloaded'));
    assert.equal(await runTool(env), 'alpha');
    await writeFile(join(env.root, 'bin', 'other'), '#!/bin/sh\necho mine\n');
    await pushCli(env, 'c', { name: 'gamma', version: '1.0.0', text: 'gamma', spec: { name: 'other' } });
    await assert.rejects(installArtifact(env.target, 'c', env.opts()), code('E_INSTALL_CONFLICT'));
    assert.equal(await readFile(join(env.root, 'bin', 'other'), 'utf8'), '#!/bin/sh\necho mine\n');
    assert.deepEqual(Object.keys((await readState(env.root)).packages), ['alpha']);
  }));

test('a timed-out step is stopped together with what it started', () =>
  withEnv('memory', async (env) => {
    // The step starts a background sleep, records its pid, then waits on it.
    const pidFile = join(env.work, 'bg.pid');
    const install = [{ name: 'hang', order: 0, run: ['sh', '-c', `sleep 30 & echo $! > '${pidFile}'; wait`] }];
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', spec: { install } });
    await assert.rejects(
      installArtifact(env.target, 'v1', env.opts({ allowScripts: true, signed: true, stepTimeoutMs: 500 })),
      code('E_INSTALL_STEP_FAILED', /did not finish/),
    );
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    assert.ok(pid > 0);
    // Killed with its group, and waited for: gone (or a zombie until init reaps it) when install returned.
    const alive = await running(pid);
    if (alive) process.kill(pid, 'SIGKILL');
    assert.equal(alive, false, 'the background process of the step was stopped');
  }));

/** Whether `pid` still runs: false when it is gone or a zombie (killed, not yet reaped). Looked at once. */
async function running(pid: number): Promise<boolean> {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat !== '' && !/^\d+ \(.*\) [ZX]/.test(stat);
}

test('what a step leaves running in the background is stopped before the content is indexed and committed', () =>
  withEnv('memory', async (env) => {
    const pidFile = join(env.work, 'bg.pid');
    const fifo = join(env.work, 'never.fifo');
    await run('mkfifo', [fifo]);
    // The background child records its pid, then blocks for ever reading a FIFO nobody writes to, and
    // would then overwrite the executable. It keeps the step's pipes open, too.
    const install = [{ name: 'bg', order: 0, run: ['sh', '-c', `sh -c 'echo $$ > "${pidFile}"; read x < "${fifo}"; echo injected > bin/tool' & while [ ! -s '${pidFile}' ]; do :; done`] }];
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', spec: { install } });
    let pid = 0;
    try {
      const result = await installArtifact(env.target, 'v1', env.opts({ allowScripts: true, signed: true }));
      pid = Number((await readFile(pidFile, 'utf8')).trim());
      assert.ok(pid > 0);
      assert.equal(await running(pid), false, 'the background process was stopped by the time install returned');
      assert.equal(await readFile(join(result.path, 'bin', 'tool'), 'utf8'), script('one'));
      assert.equal(await runTool(env), 'one');
    } finally {
      if (pid > 0 && (await running(pid))) process.kill(pid, 'SIGKILL');
    }
  }));

test('after the steps, modes are stripped again and links out of the content or special files are refused', () =>
  withEnv('memory', async (env) => {
    const modes = [
      { name: 'modes', order: 0, run: ['sh', '-c', 'echo d > data && chmod 6777 data && mkdir -p shared && chmod 1777 shared && chmod 4777 bin/tool && ln -s bin/tool alias && ln -s "$LADING_INSTALL_DIR/data" abs'] },
    ];
    await pushCli(env, 'v1', { version: '1.0.0', text: 'one', spec: { install: modes } });
    const result = await installArtifact(env.target, 'v1', env.opts({ allowScripts: true, signed: true }));
    assert.equal((await lstat(join(result.path, 'data'))).mode & 0o7777, 0o755);
    assert.equal((await lstat(join(result.path, 'shared'))).mode & 0o7777, 0o755);
    assert.equal((await lstat(join(result.path, 'bin', 'tool'))).mode & 0o7777, 0o755);
    assert.equal(await readFile(join(result.path, 'abs'), 'utf8'), 'd\n', 'a link to the install directory is fine');
    assert.equal(await runTool(env), 'one');

    const victim = join(env.work, 'victim.txt');
    await writeFile(victim, 'untouched');
    const bad: Array<[string, string[]]> = [
      ['out', ['sh', '-c', `ln -s '${victim}' out`]],
      ['up', ['sh', '-c', 'mkdir -p a && ln -s ../../.. a/up']],
      ['dangling-out', ['sh', '-c', 'ln -s ../../../../nowhere/x later']],
      ['fifo', ['mkfifo', 'pipe']],
    ];
    let n = 2;
    for (const [label, argv] of bad) {
      await pushCli(env, `v${n}`, { version: `${n}.0.0`, text: label, spec: { install: [{ name: label, order: 0, run: argv }] } });
      await assert.rejects(installArtifact(env.target, `v${n}`, env.opts({ allowScripts: true, signed: true })), code('E_UNSAFE_PATH'), label);
      n++;
    }
    assert.equal(await readFile(victim, 'utf8'), 'untouched');
    assert.deepEqual(await versionsOnDisk(env), ['1.0.0']);
    assert.deepEqual(await stagingEntries(env), []);
  }));

test('the no-op and switch paths make bin/ what the version records: args, env, renamed commands', () =>
  withEnv('memory', async (env) => {
    const files = { 'bin/tool': '#!/bin/sh\necho "$GREETING $*"\n' };
    await pushCli(env, 'v1', { version: '1.0.0', text: '', files, spec: { name: 'greet', args: ['--from', 'me'], env: { GREETING: 'hello' } } });
    await pushCli(env, 'v2', { version: '2.0.0', text: '', files, spec: { name: 'hail' } });
    await installArtifact(env.target, 'v1', env.opts());
    const rec = (await readState(env.root)).packages.tool!.versions['1.0.0']!;
    assert.deepEqual(rec.args, ['--from', 'me']);
    assert.deepEqual(rec.env, { GREETING: 'hello' });
    // bin/greet replaced by a plain link of the same package (losing args and env): the no-op restores it.
    await rm(join(env.root, 'bin', 'greet'));
    await symlink('../pkgs/tool/current/bin/tool', join(env.root, 'bin', 'greet'));
    assert.equal(await runTool(env, 'greet', 'x'), 'x');
    assert.equal((await installArtifact(env.target, 'v1', env.opts())).changed, false);
    assert.equal(await runTool(env, 'greet', 'x'), 'hello --from me x');

    await installArtifact(env.target, 'v2', env.opts());
    assert.deepEqual(await readdir(join(env.root, 'bin')), ['hail']);
    // Back to 1.0.0 by installing it again (a switch only): its command, not 2.0.0's.
    const back = await installArtifact(env.target, 'v1', env.opts());
    assert.equal(back.command, 'greet');
    assert.deepEqual(await readdir(join(env.root, 'bin')), ['greet']);
    assert.equal(await runTool(env, 'greet', 'y'), 'hello --from me y');
    // And by rolling back.
    await installArtifact(env.target, 'v2', env.opts());
    assert.deepEqual(await rollbackPackage(env.root, 'tool'), { from: '2.0.0', to: '1.0.0' });
    assert.deepEqual(await readdir(join(env.root, 'bin')), ['greet']);
  }));

test('a pack reinstalled at its current digest is a no-op without --sdk-version', () =>
  withEnv('memory', async (env) => {
    await pushPack(env, 'fmt-1', { name: 'fmt', version: '1.0.0', sdk: '^2.0.0', classes: ['Acme.Fmt'] });
    await installArtifact(env.target, 'fmt-1', env.opts({ sdkVersion: '2.3.0' }));
    const again = await installArtifact(env.target, 'fmt-1', env.opts());
    assert.equal(again.changed, false);
  }));

test('rolling a pack back, or switching to an installed version, is refused when its classes are taken', () =>
  withEnv('memory', async (env) => {
    await pushPack(env, 'fmt-1', { name: 'fmt', version: '1.0.0', sdk: '^2.0.0', classes: ['Acme.Fmt'] });
    await pushPack(env, 'fmt-2', { name: 'fmt', version: '2.0.0', sdk: '^2.0.0', classes: ['Acme.Fmt2'] });
    await pushPack(env, 'lint-1', { name: 'lint', version: '1.0.0', sdk: '^2.0.0', classes: ['Acme.Lint', 'Acme.Fmt'] });
    const sdk = { sdkVersion: '2.3.0' };
    await installArtifact(env.target, 'fmt-1', env.opts(sdk));
    await installArtifact(env.target, 'fmt-2', env.opts(sdk));
    // fmt@2 no longer provides Acme.Fmt, so lint may.
    await installArtifact(env.target, 'lint-1', env.opts(sdk));
    await assert.rejects(rollbackPackage(env.root, 'fmt'), code('E_PACK_CONFLICT', /Acme\.Fmt \(lint@1\.0\.0\)/));
    await assert.rejects(installArtifact(env.target, 'fmt-1', env.opts(sdk)), code('E_PACK_CONFLICT', /lint@1\.0\.0/));
    assert.equal(await currentVersion(env.root, 'fmt'), '2.0.0');
    const store = await openInstallRoot(env.root);
    await store.uninstall('lint');
    await assert.rejects(rollbackPackage(env.root, 'fmt', { hostClasses: ['Acme.Fmt'] }), code('E_PACK_CONFLICT', /\(host\)/));
    assert.deepEqual(await rollbackPackage(env.root, 'fmt'), { from: '2.0.0', to: '1.0.0' });
    assert.equal(await currentVersion(env.root, 'fmt'), '1.0.0');
  }));

test('a version named "current" (any case) is refused before anything is downloaded', () =>
  withEnv('memory', async (env) => {
    for (const v of ['current', 'Current', 'CURRENT']) {
      env.events.length = 0;
      await pushCli(env, v, { version: v, text: 'x' });
      await assert.rejects(installArtifact(env.target, v, env.opts()), code('E_CONFIG_INVALID', /current/));
      assert.ok(!env.events.some((e) => e.type === 'staged' || e.type === 'downloaded'));
    }
    const envelope = { apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'tool', version: '.hidden' }, spec: {} } as const;
    assert.throws(() => versionFor(envelope, `sha256:${'a'.repeat(64)}`), code('E_CONFIG_INVALID'));
    assert.deepEqual((await readState(env.root)).packages, {});
  }));
