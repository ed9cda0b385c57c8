/**
 * Installing from `lading serve` through the CLI, as a user would: a multi-platform cli artifact is
 * installed, run from <root>/bin, upgraded, rolled back and uninstalled; the lockfile pins it; and an
 * install killed mid-download or mid-extraction leaves the previous install exactly as it was.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startRegistry, type RunningRegistry } from '../src/server/serve.js';
import { Repository } from '../src/remote/repository.js';
import { fetchBytes } from '../src/content/read.js';
import { formatPlatform, hostPlatform, platformEquals } from '../src/oci/platform.js';
import { lading, type CliResult } from './support/cli.js';
import { killAllChildren, spawnTs } from './support/child-process.js';
import { StallProxy } from './support/stall-proxy.js';

const run = promisify(execFile);
const HOST = formatPlatform(hostPlatform());
const OTHERS = ['linux/amd64', 'linux/arm64', 'darwin/arm64'].filter((p) => !platformEquals(hostPlatform(), { os: p.split('/')[0]!, architecture: p.split('/')[1]! })).slice(0, 2);

function ok(r: CliResult, what: string): any {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.json;
}

function refused(r: CliResult, code: string, what: string): any {
  assert.equal(r.code, 1, `${what}: expected exit 1, got ${r.code}\n${r.stderr}${r.stdout}`);
  assert.equal(r.json?.error?.code, code, `${what}: ${r.stdout}`);
  return r.json.error;
}

describe('install from lading serve', () => {
  let reg: RunningRegistry;
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lading-install-e2e-'));
    reg = await startRegistry({ root: join(work, 'registry') });
  });
  after(async () => {
    await killAllChildren();
    await reg.close();
    await rm(work, { recursive: true, force: true });
  });
  const cli = (args: string[]) => lading([...args, '--json'], { cwd: work });

  /** Publishes `name` at `version` for the host and two other platforms; the host's prints its version. */
  async function publish(name: string, version: string, extra: { deps?: string[]; bigFile?: number; manyFiles?: number } = {}): Promise<string> {
    const ref = `${reg.host}/acme/tools/${name}:${version}`;
    for (const platform of [HOST, ...OTHERS]) {
      const src = join(work, 'src', name, version, platform.replace(/\//g, '-'));
      await mkdir(join(src, 'bin'), { recursive: true });
      const body = platform === HOST ? `echo ${name} ${version}` : `echo wrong platform ${platform}; exit 3`;
      await writeFile(join(src, 'bin', name), `#!/bin/sh\n${body}\n`);
      await chmod(join(src, 'bin', name), 0o755);
      for (let i = 0; i < (extra.manyFiles ?? 0); i++) await writeFile(join(src, 'bin', `data-${i}.bin`), randomBytes(512));
      const files = ['bin'];
      if (extra.bigFile) {
        await writeFile(join(src, 'big.bin'), randomBytes(extra.bigFile));
        files.push('big.bin');
      }
      const spec = { executable: `bin/${name}`, ...(extra.deps ? { deps: extra.deps } : {}) };
      await writeFile(join(src, 'envelope.json'), JSON.stringify({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name, version }, spec }));
      const r = await lading(['push', ref, ...files, '--config', 'envelope.json', '--platform', platform, '--json'], { cwd: src });
      ok(r, `push ${name} ${version} ${platform}`);
    }
    return ref;
  }

  /** The host variant's layer whose title is `title`. */
  async function layerDigest(ref: string, title: string): Promise<string> {
    const [, path, tag] = /^[^/]+\/(.+):([^:]+)$/.exec(ref)!;
    const repo = new Repository(`${reg.host}/${path}`);
    const index = JSON.parse((await fetchBytes(repo, await repo.resolve(tag!))).toString());
    const entry = index.manifests.find((m: any) => platformEquals(hostPlatform(), m.platform));
    const manifest = JSON.parse((await fetchBytes(repo, entry)).toString());
    return manifest.layers.find((l: any) => l.annotations?.['org.opencontainers.image.title'] === title).digest;
  }

  const hi = (root: string, name = 'hi') => run(join(root, 'bin', name)).then((r) => r.stdout.trim());

  test('install, run from <root>/bin, reinstall as a no-op, upgrade, rollback, lock, uninstall', async () => {
    const root = join(work, 'root');
    const v1 = await publish('hi', '1.0.0');
    const first = ok(await cli(['install', v1, '--root', root]), 'install 1.0.0');
    assert.equal(first.name, 'hi');
    assert.equal(first.version, '1.0.0');
    assert.equal(first.changed, true);
    assert.equal(await hi(root), 'hi 1.0.0');

    const again = ok(await cli(['install', v1, '--root', root]), 'reinstall');
    assert.equal(again.changed, false);
    const lock = JSON.parse(await readFile(join(work, 'lading.lock'), 'utf8'));
    const locked = lock.artifacts[v1];
    assert.equal(locked.platform, HOST);
    assert.equal(locked.manifest, first.digest);

    const v2 = await publish('hi', '2.0.0');
    const upgraded = ok(await cli(['install', v2, '--root', root]), 'upgrade');
    assert.equal(upgraded.previous, '1.0.0');
    assert.equal(await hi(root), 'hi 2.0.0');
    const listed = ok(await cli(['list', '--root', root]), 'list');
    const pkg = listed.packages.find((p: any) => p.name === 'hi');
    assert.equal(pkg.current, '2.0.0');
    assert.deepEqual(pkg.versions.map((v: any) => v.version).sort(), ['1.0.0', '2.0.0']);

    ok(await cli(['rollback', 'hi', '--root', root]), 'rollback');
    assert.equal(await hi(root), 'hi 1.0.0');

    // The tag 1.0.0 now names other bytes: --frozen refuses, and a plain install will not overwrite 1.0.0.
    await publish('hi', '1.0.0', { manyFiles: 1 });
    refused(await cli(['install', v1, '--root', root, '--frozen']), 'E_LOCK_MISMATCH', 'frozen after the tag moved');
    refused(await cli(['install', v1, '--root', root]), 'E_INSTALL_CONFLICT', 'same version, other digest');
    assert.equal(await hi(root), 'hi 1.0.0');

    // Uninstall is refused while another install depends on it.
    const plugin = await publish('hi-plugin', '0.1.0', { deps: ['hi'] });
    ok(await cli(['install', plugin, '--root', root]), 'install a dependent');
    refused(await cli(['uninstall', 'hi', '--root', root]), 'E_INSTALL_DEPENDED_ON', 'uninstall depended on');
    ok(await cli(['uninstall', 'hi-plugin', '--root', root]), 'uninstall the dependent');
    ok(await cli(['uninstall', 'hi', '--root', root]), 'uninstall');
    await assert.rejects(hi(root), 'the command is gone');
    assert.deepEqual(ok(await cli(['list', '--root', root]), 'list after').packages, []);
    refused(await cli(['rollback', 'hi', '--root', root]), 'E_INSTALL_NOT_FOUND', 'rollback of nothing');
  });

  test('materialize a bundle of a fileset and a config at their mount paths, then serve an installed tool over HTTP', async () => {
    const src = join(work, 'src', 'mat');
    await mkdir(join(src, 'public', 'assets'), { recursive: true });
    await writeFile(join(src, 'public', 'index.html'), '<h1>docs</h1>\n');
    await writeFile(join(src, 'public', 'assets', 'site.css'), 'h1{}\n');
    await writeFile(join(src, 'nginx.conf'), 'worker_processes 1;\n');
    const env = (kind: string, name: string, spec: unknown, mount?: unknown) =>
      JSON.stringify({ apiVersion: 'lading.dev/v1', kind, metadata: { name, version: '1' }, ...(mount ? { mount } : {}), spec });
    await writeFile(join(src, 'docs.json'), env('fileset', 'docs', { root: 'public' }, { path: '/srv/docs' }));
    await writeFile(join(src, 'nginx.json'), env('config', 'nginx', { format: 'text' }, { path: '/etc/nginx' }));
    ok(await lading(['push', `${reg.host}/acme/filesets/docs:1`, 'public', '--config', 'docs.json', '--json'], { cwd: src }), 'push fileset');
    ok(await lading(['push', `${reg.host}/acme/configs/nginx:1`, 'nginx.conf', '--config', 'nginx.json', '--json'], { cwd: src }), 'push config');
    await writeFile(join(src, 'stack.json'), env('bundle', 'stack', { components: [{ name: 'docs', ref: `${reg.host}/acme/filesets/docs:1` }, { name: 'nginx', ref: `${reg.host}/acme/configs/nginx:1` }] }));
    ok(await lading(['push', `${reg.host}/acme/bundles/stack:1`, '--config', 'stack.json', '--json'], { cwd: src }), 'push bundle');

    const sys = join(work, 'sysroot');
    const laid = ok(await cli(['materialize', `${reg.host}/acme/bundles/stack:1`, '--root', sys]), 'materialize');
    assert.deepEqual(laid.components.map((c: any) => c.mountPath).sort(), ['/etc/nginx', '/srv/docs']);
    assert.equal(await readFile(join(sys, 'srv', 'docs', 'assets', 'site.css'), 'utf8'), 'h1{}\n');
    assert.equal(await readFile(join(sys, 'etc', 'nginx', 'nginx.conf'), 'utf8'), 'worker_processes 1;\n');
    // Under a policy that wants signatures, nothing unsigned is laid out.
    const policy = join(work, 'mat-policy.yaml');
    const keyPrefix = join(work, 'mat-key');
    ok(await lading(['key', 'generate', '--output-key-prefix', keyPrefix, '--json'], { env: { LADING_PASSWORD: 'pw' } }), 'key');
    await writeFile(policy, `version: "1"\npolicies:\n  - name: all\n    scopes: ["*"]\n    level: enforce\n    keys: ["${keyPrefix}.pub"]\n`);
    const other = join(work, 'sysroot-verified');
    refused(await cli(['materialize', `${reg.host}/acme/bundles/stack:1`, '--root', other, '--policy', policy]), 'E_SIGNATURE_MISSING', 'unsigned bundle');
    await assert.rejects(readdir(join(other, 'srv')), { code: 'ENOENT' });

    // An installed tool, served read-only with an immutable cache policy and its digest as ETag.
    const root = join(work, 'served');
    ok(await cli(['install', await publish('served', '3.1.0'), '--root', root]), 'install served');
    const server = spawnTs('', ['serve', '--installed', root, '--addr', '127.0.0.1:0', '--json'], { cli: true });
    try {
      const host = /"host": "([^"]+)"/.exec(await server.line('  "host"'))![1]!;
      const url = `http://${host}/served/3.1.0/bin/served`;
      const res = await fetch(url);
      assert.equal(res.status, 200);
      assert.equal(await res.text(), '#!/bin/sh\necho served 3.1.0\n');
      assert.match(res.headers.get('cache-control') ?? '', /immutable/);
      const etag = res.headers.get('etag')!;
      const again = await fetch(url, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304);
      const escape = await fetch(`http://${host}/served/3.1.0/..%2f..%2f.lading/state.json`);
      assert.equal(escape.status, 404);
      await escape.body?.cancel();
    } finally {
      process.kill(server.pid, 'SIGTERM');
      await server.exited;
    }
  });

  test('install steps run only with --allow-scripts and a signature the policy trusts; packs need a compatible SDK', async () => {
    const root = join(work, 'steps-root');
    const src = join(work, 'src', 'stepper');
    await mkdir(join(src, 'bin'), { recursive: true });
    await writeFile(join(src, 'bin', 'stepper'), '#!/bin/sh\necho stepper\n');
    await chmod(join(src, 'bin', 'stepper'), 0o755);
    const spec = {
      executable: 'bin/stepper',
      install: [
        { name: 'second', order: 0, run: ['/bin/sh', '-c', 'cat first.txt > second.txt'], deps: ['first'] },
        { name: 'first', order: 1, run: ['/bin/sh', '-c', 'echo ran > first.txt'] },
      ],
    };
    await writeFile(join(src, 'envelope.json'), JSON.stringify({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'stepper', version: '1.0.0' }, spec }));
    const ref = `${reg.host}/acme/tools/stepper:1.0.0`;
    ok(await lading(['push', ref, 'bin', '--config', 'envelope.json', '--platform', HOST, '--json'], { cwd: src }), 'push stepper');

    refused(await cli(['install', ref, '--root', root]), 'E_SCRIPTS_NOT_ALLOWED', 'steps without --allow-scripts');
    refused(await cli(['install', ref, '--root', root, '--allow-scripts']), 'E_SCRIPTS_NOT_ALLOWED', 'steps without a trusted signature');
    const keyPrefix = join(work, 'steps-key');
    const env = { LADING_PASSWORD: 'pw' };
    ok(await lading(['key', 'generate', '--output-key-prefix', keyPrefix, '--json'], { env }), 'key');
    ok(await lading(['sign', ref, '--key', `${keyPrefix}.key`, '--json'], { env }), 'sign');
    const policy = join(work, 'steps-policy.yaml');
    await writeFile(policy, `version: "1"\npolicies:\n  - name: all\n    scopes: ["*"]\n    level: enforce\n    keys: ["${keyPrefix}.pub"]\n`);
    const done = ok(await cli(['install', ref, '--root', root, '--allow-scripts', '--policy', policy]), 'signed install with steps');
    assert.equal(done.verification.allowed, true);
    assert.equal(await readFile(join(done.path, 'second.txt'), 'utf8'), 'ran\n', 'steps ran in dependency order');
    assert.equal(await hi(root, 'stepper'), 'stepper');

    // A pack: its SDK range must include the host SDK, and its classes may not collide with the host's.
    const pack = join(work, 'src', 'pack');
    await mkdir(join(pack, 'dist'), { recursive: true });
    await writeFile(join(pack, 'dist', 'index.js'), 'export class Json {}\n');
    await writeFile(
      join(pack, 'envelope.json'),
      JSON.stringify({ apiVersion: 'lading.dev/v1', kind: 'pack', metadata: { name: 'json-pack', version: '1.2.0' }, spec: { entry: 'dist/index.js', protocolVersion: 1, sdk: '^2.1.0', classes: ['acme.Json'] } }),
    );
    const packRef = `${reg.host}/acme/packs/json-pack:1.2.0`;
    ok(await lading(['push', packRef, 'dist', '--config', 'envelope.json', '--json'], { cwd: pack }), 'push pack');
    refused(await cli(['install', packRef, '--root', root, '--sdk-version', '3.0.0']), 'E_PACK_INCOMPATIBLE', 'SDK too new');
    refused(await cli(['install', packRef, '--root', root, '--sdk-version', '2.4.1', '--host-class', 'acme.Json']), 'E_PACK_CONFLICT', 'class of the host');
    const installed = ok(await cli(['install', packRef, '--root', root, '--sdk-version', '2.4.1']), 'install pack');
    assert.equal(installed.family, 'pack');
    assert.equal(await readFile(join(installed.path, 'dist', 'index.js'), 'utf8'), 'export class Json {}\n');
  });

  for (const phase of ['download', 'extraction'] as const) {
    test(`SIGKILL during ${phase} leaves the previous install intact, and the next install completes`, async () => {
      const root = join(work, `kill-${phase}`);
      const name = `k${phase.slice(0, 3)}`;
      ok(await cli(['install', await publish(name, '1.0.0'), '--root', root]), 'install 1.0.0');
      // download: a 4 MiB file layer; extraction: the bin directory (a tar+gzip layer) of 3000 files.
      const v2 = await publish(name, '2.0.0', phase === 'download' ? { bigFile: 4 * 1024 * 1024 } : { manyFiles: 3000 });
      const digest = await layerDigest(v2, phase === 'download' ? 'big.bin' : 'bin');
      const proxy = await new StallProxy(reg.host).start();
      try {
        const stalled = proxy.stallBlob(digest, phase === 'download' ? 1024 * 1024 : 256 * 1024);
        const child = spawnTs('', ['install', v2.replace(reg.host, proxy.host), '--root', root, '--lockfile', join(work, 'killed.lock'), '--json'], { cli: true });
        await Promise.race([stalled, child.exited.then((e) => assert.fail(`install ended (${e.code}) before it stalled: ${child.stderr()}`))]);
        const exit = await child.kill();
        assert.equal(exit.signal, 'SIGKILL');
        const staged = await readdir(join(root, '.staging')).catch(() => []);
        assert.ok(staged.length > 0, 'the killed install had work in staging');
      } finally {
        await proxy.stop();
      }
      assert.equal(await hi(root, name), `${name} 1.0.0`, 'the previous install is untouched');
      const listed = ok(await cli(['list', '--root', root]), 'list after the kill');
      const pkg = listed.packages.find((p: any) => p.name === name);
      assert.equal(pkg.current, '1.0.0');
      assert.deepEqual(pkg.versions.map((v: any) => v.version), ['1.0.0'], 'no half-installed version is recorded');

      const done = ok(await cli(['install', v2, '--root', root]), 'the next install');
      assert.equal(done.changed, true);
      assert.equal(await hi(root, name), `${name} 2.0.0`);
      assert.deepEqual(await readdir(join(root, '.staging')), [], 'staging is cleaned up');
    });
  }
});
