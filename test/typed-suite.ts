/**
 * Typed artifacts end to end through the CLI, run against every registry lading must work with: one
 * definition, so that what holds against docker-registry (no schema authority, the tag fallback) holds
 * against `lading serve` (which validates configs itself) too.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { VALID_ENVELOPES } from '../src/artifact/invalid-envelopes.js';
import { lading, type CliResult } from './support/cli.js';

export interface TypedRegistryUnderTest {
  host: string;
  stop(): Promise<void>;
}

export interface TypedRegistryKind {
  name: string;
  available(t: TestContext): boolean;
  start(): Promise<TypedRegistryUnderTest>;
}

function ok(r: CliResult, what: string): any {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.json;
}

function refused(r: CliResult, code: string, what: string): { code: string; message: string; hint?: string; details?: any } {
  assert.equal(r.code, 1, `${what}: expected exit 1, got ${r.code}\n${r.stderr}${r.stdout}`);
  assert.equal(r.json?.error?.code, code, `${what}: ${r.stdout}`);
  return r.json.error;
}

/** Content for each family's valid envelope: what its spec points into. */
async function contentFor(family: string, dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  switch (family) {
    case 'cli':
      await mkdir(join(dir, 'bin'), { recursive: true });
      await writeFile(join(dir, 'bin', 'jq'), '#!/bin/sh\necho jq-1.7.1\n', { mode: 0o755 });
      return ['bin'];
    case 'pack':
      await mkdir(join(dir, 'dist'), { recursive: true });
      await writeFile(join(dir, 'dist', 'index.js'), 'export class Json {}\n');
      return ['dist'];
    case 'fileset':
      await mkdir(join(dir, 'public', 'assets'), { recursive: true });
      await writeFile(join(dir, 'public', 'index.html'), '<h1>docs</h1>\n');
      await writeFile(join(dir, 'public', 'assets', 'site.css'), 'h1{}\n');
      return ['public'];
    case 'model':
      await writeFile(join(dir, 'weights.bin'), Buffer.alloc(4096, 7));
      return ['weights.bin'];
    case 'config':
      await writeFile(join(dir, 'nginx.conf'), 'worker_processes 1;\n');
      return ['nginx.conf'];
    case 'file':
      await writeFile(join(dir, 'NOTES.md'), '# 1.4\n');
      return ['NOTES.md'];
    default:
      // A bundle is all envelope.
      return [];
  }
}

export function typedSuite(kind: TypedRegistryKind): void {
  describe(`typed artifacts against ${kind.name}`, () => {
    let reg: TypedRegistryUnderTest | undefined;
    let work: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'lading-typed-'));
    });
    after(async () => {
      await reg?.stop();
      await rm(work, { recursive: true, force: true });
    });
    const ready = async (t: TestContext): Promise<boolean> => {
      if (!kind.available(t)) return false;
      reg ??= await kind.start();
      return true;
    };
    const cli = (args: string[], cwd?: string) => lading([...args, '--json'], cwd ? { cwd } : {});

    test('every built-in family round-trips: envelope YAML in, canonical config stored, envelope and files out', async (t) => {
      if (!(await ready(t))) return;
      for (const [family, envelope] of Object.entries(VALID_ENVELOPES)) {
        const src = join(work, 'rt', family, 'src');
        const files = await contentFor(family, src);
        await writeFile(join(src, '..', 'envelope.yaml'), toYaml(envelope));
        const ref = `${reg!.host}/rt/${family}:v1`;
        const pushed = ok(await cli(['push', ref, ...files, '--config', '../envelope.yaml'], src), `push ${family}`);
        assert.equal(pushed.family, family);

        const inspected = ok(await cli(['inspect', ref]), `inspect ${family}`);
        assert.equal(inspected.family, family);
        assert.equal(inspected.manifest.artifactType, `application/vnd.lading.${family}.v1`);
        assert.equal(inspected.manifest.config.mediaType, `application/vnd.lading.${family}.config.v1+json`);
        // The stored config is the envelope as given, plus what the family fills in (a default mount).
        for (const key of ['apiVersion', 'kind', 'metadata', 'spec'] as const) assert.deepEqual(inspected.envelope[key], envelope[key], `${family} ${key}`);

        const out = join(work, 'rt', family, 'out');
        const pulled = ok(await cli(['pull', ref, '-o', out]), `pull ${family}`);
        assert.equal(pulled.descriptor.digest, pushed.descriptor.digest);
        assert.equal(pulled.family, family);
        assert.deepEqual(JSON.parse(await readFile(join(out, 'lading.envelope.json'), 'utf8')), inspected.envelope);
        for (const f of files) assert.ok(pulled.files.some((p: { title: string }) => p.title === f), `${family}: ${f} pulled`);
        if (family === 'cli') assert.equal(await readFile(join(out, 'bin', 'jq'), 'utf8'), '#!/bin/sh\necho jq-1.7.1\n');
        if (family === 'fileset') assert.equal(await readFile(join(out, 'public', 'assets', 'site.css'), 'utf8'), 'h1{}\n');

        // Canonical JSON: pushing the same envelope written as JSON in another key order changes nothing.
        const reordered = Object.fromEntries(Object.entries(envelope).reverse());
        await writeFile(join(src, '..', 'envelope.json'), JSON.stringify(reordered, null, 4));
        const again = ok(await cli(['push', ref, ...files, '--config', '../envelope.json'], src), `re-push ${family}`);
        assert.equal(again.descriptor.digest, pushed.descriptor.digest, `${family}: the same artifact, the same digest`);
      }
    });

    test('the path infers the family of an envelope without a kind; plain pushes stay plain wherever they go; bad envelopes push nothing', async (t) => {
      if (!(await ready(t))) return;
      const src = join(work, 'infer');
      await mkdir(join(src, 'bin'), { recursive: true });
      await writeFile(join(src, 'bin', 'hello'), '#!/bin/sh\necho hello\n', { mode: 0o755 });
      // No envelope, no family: the ORAS-style artifact other tools expect, even under `…/tools/…`.
      const plain = ok(await cli(['push', `${reg!.host}/acme/tools/plain:1`, 'bin'], src), 'plain push under tools/');
      assert.equal(plain.family, undefined);
      const plainManifest = ok(await cli(['inspect', `${reg!.host}/acme/tools/plain:1`]), 'inspect plain');
      assert.equal(plainManifest.manifest.artifactType, 'application/vnd.unknown.artifact.v1');

      // An envelope without kind: `…/tools/…` makes it a cli, whose schema wants spec.executable.
      await writeFile(join(src, 'nokind.yaml'), toYaml({ apiVersion: 'lading.dev/v1', metadata: { name: 'hello' }, spec: {} }));
      const bare = refused(await cli(['push', `${reg!.host}/acme/tools/hello:1`, 'bin', '--config', 'nokind.yaml'], src), 'E_CONFIG_INVALID', 'inferred cli');
      assert.equal(bare.details.issues[0].path, 'spec.executable');
      assert.equal(bare.details.issues[0].message, 'is required');
      const tags = await fetch(`http://${reg!.host}/v2/acme/tools/hello/tags/list`);
      assert.equal(tags.status, 404, 'nothing was pushed');
      await tags.body?.cancel();

      // An envelope that does not even parse is reported, not pushed as an opaque config.
      await writeFile(join(src, 'broken.yaml'), 'apiVersion: lading.dev/v1\nmetadata:\n  name: a\nmetadata:\n  name: b\n');
      refused(await cli(['push', `${reg!.host}/acme/other/broken:1`, 'bin', '--config', 'broken.yaml'], src), 'E_CONFIG_INVALID', 'duplicate key');

      await writeFile(join(src, 'hello.yaml'), toYaml({ apiVersion: 'lading.dev/v1', metadata: { name: 'hello' }, spec: { executable: 'bin/hello' } }));
      const pushed = ok(await cli(['push', `${reg!.host}/acme/tools/hello:1`, 'bin', '--config', 'hello.yaml'], src), 'inferred cli');
      assert.equal(pushed.family, 'cli');
    });

    test('variants: four platforms of one cli artifact, each pulled exactly; no match fails and lists all four', async (t) => {
      if (!(await ready(t))) return;
      const ref = `${reg!.host}/acme/tools/jq:1.7.1`;
      const variants = [
        { name: 'linux-amd64', args: ['--platform', 'linux/amd64'] },
        { name: 'linux-arm64', args: ['--platform', 'linux/arm64'] },
        { name: 'darwin-arm64', args: ['--platform', 'darwin/arm64'] },
        { name: 'linux-amd64-fc-pvm', args: ['--platform', 'linux/amd64', '--variant', 'substrate=firecracker', '--variant', 'protection=pvm'] },
      ];
      const pushedDigests = new Map<string, string>();
      let indexDigest = '';
      for (const v of variants) {
        const src = join(work, 'variants', v.name);
        await mkdir(join(src, 'bin'), { recursive: true });
        await writeFile(join(src, 'bin', 'jq'), `#!/bin/sh\necho ${v.name}\n`, { mode: 0o755 });
        await writeFile(join(src, 'jq.yaml'), toYaml({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'jq', version: '1.7.1' }, spec: { executable: 'bin/jq' } }));
        const pushed = ok(await cli(['push', ref, 'bin', '--config', 'jq.yaml', ...v.args], src), `push ${v.name}`);
        assert.ok(pushed.index, 'a variant push answers with the index');
        pushedDigests.set(v.name, pushed.manifest.digest);
        indexDigest = pushed.index.digest;
      }
      const inspected = ok(await cli(['inspect', ref]), 'inspect index');
      assert.equal(inspected.descriptor.digest, indexDigest);
      assert.equal(inspected.variants.length, 4);

      // Aliases are normalized: x86_64 is amd64, aarch64 is arm64.
      const requests = [
        { name: 'linux-amd64', args: ['--platform', 'linux/x86_64'] },
        { name: 'linux-arm64', args: ['--platform', 'linux/aarch64'] },
        { name: 'darwin-arm64', args: ['--platform', 'darwin/arm64'] },
        { name: 'linux-amd64-fc-pvm', args: ['--platform', 'linux/amd64', '--variant', 'protection=pvm', '--variant', 'substrate=firecracker'] },
      ];
      for (const r of requests) {
        const out = join(work, 'variants-out', r.name);
        const pulled = ok(await cli(['pull', ref, '-o', out, ...r.args]), `pull ${r.name}`);
        assert.equal(pulled.descriptor.digest, pushedDigests.get(r.name), `${r.name} selects its own manifest`);
        assert.equal(await readFile(join(out, 'bin', 'jq'), 'utf8'), `#!/bin/sh\necho ${r.name}\n`);
      }

      for (const args of [
        ['--platform', 'linux/arm64', '--variant', 'substrate=firecracker'],
        ['--platform', 'linux/amd64', '--variant', 'substrate=firecracker'],
        ['--platform', 'windows/amd64'],
      ]) {
        const out = join(work, 'variants-out', 'none');
        const err = refused(await cli(['pull', ref, '-o', out, ...args]), 'E_VARIANT_NOT_FOUND', `pull ${args.join(' ')}`);
        for (const listed of ['linux/amd64', 'linux/arm64', 'darwin/arm64', 'linux/amd64 protection=pvm,substrate=firecracker']) {
          assert.ok(err.message.includes(listed), `"${listed}" listed in: ${err.message}`);
        }
        assert.equal(err.details.variants.length, 4);
        await assert.rejects(readFile(join(out, 'bin', 'jq')), 'nothing written');
      }
      // An index asked for without a platform names its variants rather than guessing one.
      refused(await cli(['pull', ref, '-o', join(work, 'variants-out', 'x')]), 'E_VARIANT_NOT_FOUND', 'pull without --platform');

      // Replacing one variant keeps the three others byte for byte.
      const src = join(work, 'variants', 'linux-arm64');
      await writeFile(join(src, 'bin', 'jq'), '#!/bin/sh\necho linux-arm64 rebuilt\n', { mode: 0o755 });
      const replaced = ok(await cli(['push', ref, 'bin', '--config', 'jq.yaml', '--platform', 'linux/arm64'], src), 'replace arm64');
      assert.equal(replaced.replaced.digest, pushedDigests.get('linux-arm64'));
      const after = ok(await cli(['inspect', ref]), 'inspect after replace');
      const digests = after.variants.map((v: { digest: string }) => v.digest).sort();
      assert.deepEqual(digests, [pushedDigests.get('linux-amd64'), pushedDigests.get('darwin-arm64'), pushedDigests.get('linux-amd64-fc-pvm'), replaced.manifest.digest].sort());
    });

    test('a bundle of five components, one a nested bundle: resolve pins every tag, lock records it, --frozen refuses drift, a cycle is caught', async (t) => {
      if (!(await ready(t))) return;
      const host = reg!.host;
      const src = join(work, 'bundle');
      await mkdir(src, { recursive: true });
      const push = async (ref: string, envelope: object, files: string[] = [], extra: string[] = []): Promise<any> => {
        const name = `${ref.replace(/[^a-z0-9]+/g, '-')}.yaml`;
        await writeFile(join(src, name), toYaml(envelope));
        return ok(await cli(['push', ref, ...files, '--config', name, ...extra], src), `push ${ref}`);
      };
      const env = (kind: string, name: string, spec: object, more: object = {}) => ({ apiVersion: 'lading.dev/v1', kind, metadata: { name }, ...more, spec });
      await mkdir(join(src, 'bin'), { recursive: true });
      await writeFile(join(src, 'bin', 'tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
      await chmod(join(src, 'bin', 'tool'), 0o755);
      await writeFile(join(src, 'app.conf'), 'port = 8080\n');
      await writeFile(join(src, 'index.js'), 'export class Widget {}\n');

      await push(`${host}/parts/tool:1`, env('cli', 'tool', { executable: 'bin/tool' }), ['bin'], ['--platform', 'linux/amd64']);
      await push(`${host}/parts/tool:1`, env('cli', 'tool', { executable: 'bin/tool' }), ['bin'], ['--platform', 'linux/arm64']);
      await push(`${host}/parts/conf:1`, env('config', 'app-conf', { format: 'text' }), ['app.conf']);
      await push(`${host}/parts/model:1`, env('model', 'small', { provider: 'acme', model: 'small-1' }));
      const pinnedModel = ok(await cli(['inspect', `${host}/parts/model:1`]), 'inspect model').descriptor.digest as string;
      await push(`${host}/parts/widgets:1`, env('pack', 'widgets', { entry: 'index.js', protocolVersion: 1, sdk: '>=2.0.0 <3', classes: ['Widget'] }), ['index.js']);
      await push(`${host}/parts/notes:1`, env('file', 'notes', {}), ['app.conf']);
      const inner = env('bundle', 'inner', { components: [{ name: 'widgets', ref: `${host}/parts/widgets:1` }, { name: 'notes', ref: `${host}/parts/notes:1`, mount: { path: '/opt/notes' } }] });
      await push(`${host}/bundles/inner:1`, inner);
      const outer = env('bundle', 'outer', {
        components: [
          { name: 'tool', ref: `${host}/parts/tool:1` },
          { name: 'conf', ref: `${host}/parts/conf:1`, mount: { path: '/etc/app', readOnly: true } },
          { name: 'model', ref: `${host}/parts/model:1`, digest: pinnedModel },
          { name: 'inner', ref: `${host}/bundles/inner:1` },
          { name: 'notes', ref: `${host}/parts/notes:1` },
        ],
      });
      const outerRef = `${host}/bundles/outer:1`;
      await push(outerRef, outer);

      const resolved = ok(await cli(['resolve', outerRef]), 'resolve');
      assert.equal(resolved.plan.components.length, 5);
      const innerNode = resolved.plan.components[3];
      assert.equal(innerNode.family, 'bundle');
      assert.equal(innerNode.components.length, 2);
      assert.equal(resolved.plan.components[0].variants.length, 2, 'the tool index lists its variants');
      for (const a of resolved.artifacts) assert.match(a.pinned, /@sha256:[a-f0-9]{64}$/, `${a.ref} pinned`);
      assert.equal(resolved.artifacts.length, 8, 'outer, five components, two inside the inner bundle');
      const human = await lading(['resolve', outerRef]);
      assert.equal(human.code, 0, human.stderr);
      assert.match(human.stdout, /inner/);

      const lockfile = join(src, 'lading.lock');
      const locked = ok(await cli(['lock', outerRef, '--lockfile', lockfile]), 'lock');
      assert.ok(locked.locked.length >= 7);
      const lock = JSON.parse(await readFile(lockfile, 'utf8'));
      assert.equal(lock.lockfileVersion, 1);
      assert.equal(lock.artifacts[outerRef].digest, resolved.plan.digest);
      assert.equal(lock.artifacts[`${host}/bundles/inner:1`].family, 'bundle');

      const out = join(work, 'bundle-out');
      ok(await cli(['pull', outerRef, '-o', out, '--frozen', '--lockfile', lockfile]), 'frozen pull before drift');

      // A component's tag moves: the bundle's own digest is unchanged, but --frozen sees the drift.
      await writeFile(join(src, 'index.js'), 'export class Widget { v2 = true }\n');
      await push(`${host}/parts/widgets:1`, env('pack', 'widgets', { entry: 'index.js', protocolVersion: 1, sdk: '>=2.0.0 <3', classes: ['Widget'] }), ['index.js']);
      const drift = refused(await cli(['pull', outerRef, '-o', join(work, 'bundle-out-2'), '--frozen', '--lockfile', lockfile]), 'E_LOCK_MISMATCH', 'frozen after drift');
      assert.match(drift.message, /parts\/widgets:1/);
      // Not frozen, the same pull goes through.
      ok(await cli(['pull', outerRef, '-o', join(work, 'bundle-out-3')]), 'pull without --frozen');

      // A reference not in the lock is refused under --frozen.
      refused(await cli(['pull', `${host}/parts/conf:2`, '-o', join(work, 'x'), '--frozen', '--lockfile', lockfile]), 'E_LOCK_MISMATCH', 'unlocked ref');

      // Inject a cycle: the inner bundle now names the outer one by tag.
      await push(`${host}/bundles/inner:1`, env('bundle', 'inner', { components: [{ name: 'outer', ref: outerRef }] }));
      const cycle = refused(await cli(['resolve', outerRef]), 'E_BUNDLE_CYCLE', 'resolve with a cycle');
      assert.match(cycle.message, /bundles\/outer:1.*→.*bundles\/inner:1.*→.*bundles\/outer:1/);
      refused(await cli(['lock', outerRef, '--lockfile', lockfile]), 'E_BUNDLE_CYCLE', 'lock with a cycle');
      // The failed lock left the lockfile as it was.
      assert.deepEqual(JSON.parse(await readFile(lockfile, 'utf8')), lock);
    });
  });
}
