import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isLadingError } from '../errors.js';
import type { Target } from '../content/interfaces.js';
import { MemoryStore } from '../content/memory.js';
import { OciLayout } from '../content/layout.js';
import { fetchBytes } from '../content/read.js';
import type { Descriptor, Platform } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { buildImageIndex, parseManifest } from '../oci/manifest.js';
import type { ImageIndex } from '../oci/manifest-types.js';
import { Annotation, MediaType } from '../oci/mediatype.js';
import { hostPlatform } from '../oci/platform.js';
import { Families, type Family } from './family.js';
import { checkEnvelope, encodeEnvelope, type Envelope } from './envelope.js';
import { pushFiles } from './files.js';
import { ENVELOPE_FILE, pullTyped, pushTyped, readTyped } from './typed.js';
import { VARIANT_ANNOTATION_PREFIX } from './variants.js';

function family(name: string, variants: Family['variants'], schema: Record<string, unknown> = { type: 'object' }): Family {
  return {
    name,
    description: `${name} artifacts`,
    artifactType: `application/vnd.lading.${name}.v1`,
    configMediaType: `application/vnd.lading.${name}.config.v1+json`,
    schema,
    mount: { mountable: true },
    pathSegments: [],
    variants,
    builtin: true,
  };
}

const cli = family('cli', 'platform', {
  type: 'object',
  required: ['executable'],
  properties: { executable: { type: 'string' } },
});
const config = family('config', 'none');
/** Only what pullTyped and readTyped ask of the families: the family of a config media type. */
const families = {
  byConfigMediaType: (mediaType: string) => [cli, config].find((f) => f.configMediaType === mediaType),
} as unknown as Families;

const envelope: Envelope = {
  apiVersion: 'lading.dev/v1',
  kind: 'cli',
  metadata: { name: 'tool', version: '1.0.0' },
  spec: { executable: 'bin/tool' },
};

const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
const ARM64: Platform = { os: 'linux', architecture: 'arm64' };
const DARWIN: Platform = { os: 'darwin', architecture: 'arm64' };
const FC = { substrate: 'firecracker', protection: 'pvm' };

interface Env {
  target: Target;
  work: string;
  /** A source directory holding `bin/tool` with this content. */
  src(content: string): Promise<string>;
  out(): string;
}

type Kind = 'memory' | 'layout';

async function withEnv(kind: Kind, body: (env: Env) => Promise<void>): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'lading-typed-'));
  let n = 0;
  try {
    const target = kind === 'memory' ? new MemoryStore() : await OciLayout.open(join(work, 'layout'), { create: true });
    await body({
      target,
      work,
      async src(content) {
        const dir = join(work, `src-${n++}`);
        await mkdir(join(dir, 'bin'), { recursive: true });
        await writeFile(join(dir, 'bin', 'tool'), content);
        return dir;
      },
      out: () => join(work, `out-${n++}`),
    });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

async function pushVariant(env: Env, content: string, platform: Platform, variant: Record<string, string> = {}) {
  return pushTyped(env.target, 'v1', [{ path: 'bin/tool' }], { family: cli, envelope, platform, variant, cwd: await env.src(content) });
}

async function readIndex(target: Target, tag: string): Promise<{ desc: Descriptor; index: ImageIndex }> {
  const desc = await target.resolve(tag);
  const parsed = parseManifest(await fetchBytes(target, desc), desc.mediaType);
  assert.equal(parsed.kind, 'index');
  return { desc, index: parsed.manifest as ImageIndex };
}

/** The four variants of the tests, pushed in this order. */
async function pushFour(env: Env) {
  return {
    amd64: await pushVariant(env, 'linux amd64 binary', AMD64),
    arm64: await pushVariant(env, 'linux arm64 binary', ARM64),
    darwin: await pushVariant(env, 'darwin arm64 binary', DARWIN),
    fc: await pushVariant(env, 'firecracker pvm binary', AMD64, FC),
  };
}

for (const kind of ['memory', 'layout'] as const) {
  test(`${kind}: four variants at one tag; each request pulls exactly its own`, () =>
    withEnv(kind, async (env) => {
      const pushed = await pushFour(env);
      const { desc, index } = await readIndex(env.target, 'v1');
      assert.equal(pushed.fc.index?.digest, desc.digest);
      assert.equal(index.artifactType, cli.artifactType);
      assert.equal(index.annotations, undefined, 'no creation time: the index is deterministic');
      assert.deepEqual(
        index.manifests.map((m) => m.digest),
        [pushed.amd64, pushed.arm64, pushed.darwin, pushed.fc].map((p) => p.manifest.digest),
      );
      assert.equal(new Set(index.manifests.map((m) => m.digest)).size, 4);
      const fcEntry = index.manifests[3]!;
      assert.deepEqual(fcEntry.platform, AMD64);
      // The index names the family; entries carry none, which skopeo 1.9 would drop and so change the digest.
      assert.equal(fcEntry.artifactType, undefined);
      assert.deepEqual(Object.keys(fcEntry), ['mediaType', 'digest', 'size', 'annotations', 'platform']);
      assert.deepEqual(fcEntry.annotations, {
        [`${VARIANT_ANNOTATION_PREFIX}substrate`]: 'firecracker',
        [`${VARIANT_ANNOTATION_PREFIX}protection`]: 'pvm',
      });
      assert.equal(index.manifests[0]!.annotations, undefined);

      const cases: Array<[Platform, Record<string, string>, Descriptor, string]> = [
        [AMD64, {}, pushed.amd64.manifest, 'linux amd64 binary'],
        [ARM64, {}, pushed.arm64.manifest, 'linux arm64 binary'],
        [DARWIN, {}, pushed.darwin.manifest, 'darwin arm64 binary'],
        [AMD64, { protection: 'pvm', substrate: 'firecracker' }, pushed.fc.manifest, 'firecracker pvm binary'],
        [{ os: 'linux', architecture: 'x86_64' }, {}, pushed.amd64.manifest, 'linux amd64 binary'],
        [{ os: 'linux', architecture: 'aarch64' }, {}, pushed.arm64.manifest, 'linux arm64 binary'],
        [{ os: 'linux', architecture: 'x86_64' }, FC, pushed.fc.manifest, 'firecracker pvm binary'],
      ];
      for (const [platform, variant, manifest, content] of cases) {
        const out = env.out();
        const r = await pullTyped(env.target, 'v1', out, { families, platform, variant });
        assert.equal(r.root.digest, desc.digest);
        assert.equal(r.descriptor.digest, manifest.digest);
        assert.equal(r.variant?.digest, manifest.digest);
        assert.equal(r.family, cli);
        assert.deepEqual(r.envelope, envelope);
        assert.equal(await readFile(join(out, 'bin', 'tool'), 'utf8'), content);
        assert.deepEqual(JSON.parse(await readFile(join(out, ENVELOPE_FILE), 'utf8')), envelope);
        assert.equal(r.envelopePath, join(out, ENVELOPE_FILE));
        assert.deepEqual(r.files.map((f) => f.title), ['bin/tool']);
      }
    }));

  test(`${kind}: a request no variant matches fails listing all four, and writes nothing`, () =>
    withEnv(kind, async (env) => {
      await pushFour(env);
      const attempts: Array<[Platform | undefined, Record<string, string>]> = [
        [{ os: 'windows', architecture: 'amd64' }, {}],
        [AMD64, { substrate: 'firecracker' }],
        [ARM64, FC],
        [undefined, {}],
      ];
      for (const [platform, variant] of attempts) {
        const out = env.out();
        await assert.rejects(pullTyped(env.target, 'v1', out, { families, ...(platform ? { platform } : {}), variant }), (e: unknown) => {
          assert.ok(isLadingError(e, 'E_VARIANT_NOT_FOUND'), String(e));
          for (const v of ['linux/amd64', 'linux/arm64', 'darwin/arm64', 'linux/amd64 protection=pvm,substrate=firecracker']) {
            assert.ok(e.message.includes(v), `${e.message} names ${v}`);
          }
          assert.equal((e.details?.variants as unknown[]).length, 4);
          if (!platform) assert.match(e.hint ?? '', /--platform native/);
          return true;
        });
        await assert.rejects(readdir(out), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
      }
    }));

  test(`${kind}: re-pushing one variant replaces only that entry`, () =>
    withEnv(kind, async (env) => {
      const pushed = await pushFour(env);
      const before = await readIndex(env.target, 'v1');
      const again = await pushVariant(env, 'linux arm64 binary, fixed', { os: 'linux', architecture: 'aarch64' });
      assert.equal(again.replaced?.digest, pushed.arm64.manifest.digest);
      const after = await readIndex(env.target, 'v1');
      assert.notEqual(after.desc.digest, before.desc.digest);
      assert.equal(after.index.manifests.length, 4);
      // The other entries are written byte for byte as they were.
      for (const i of [0, 2, 3]) assert.equal(JSON.stringify(after.index.manifests[i]), JSON.stringify(before.index.manifests[i]));
      assert.equal(after.index.manifests[1]!.digest, again.manifest.digest);
      assert.notEqual(again.manifest.digest, pushed.arm64.manifest.digest);
      const out = env.out();
      await pullTyped(env.target, 'v1', out, { families, platform: ARM64 });
      assert.equal(await readFile(join(out, 'bin', 'tool'), 'utf8'), 'linux arm64 binary, fixed');
      // The firecracker variant shares the platform of linux/amd64 and survives a re-push of the latter.
      const amd = await pushVariant(env, 'linux amd64 binary v2', AMD64);
      assert.equal(amd.replaced?.digest, pushed.amd64.manifest.digest);
      const last = await readIndex(env.target, 'v1');
      assert.equal(last.index.manifests.length, 4);
      assert.equal(last.index.manifests[3]!.digest, pushed.fc.manifest.digest);
    }));

  test(`${kind}: re-pushing identical content gives an identical index digest`, () =>
    withEnv(kind, async (env) => {
      const pushed = await pushFour(env);
      const again = await pushVariant(env, 'linux arm64 binary', ARM64);
      assert.equal(again.manifest.digest, pushed.arm64.manifest.digest);
      assert.equal(again.replaced?.digest, pushed.arm64.manifest.digest);
      assert.equal(again.index?.digest, pushed.fc.index?.digest);
      assert.equal((await env.target.resolve('v1')).digest, pushed.fc.index?.digest);
      // The order the extra keys are given in does not matter either.
      const fc = await pushVariant(env, 'firecracker pvm binary', AMD64, { protection: 'pvm', substrate: 'firecracker' });
      assert.equal(fc.manifest.digest, pushed.fc.manifest.digest);
      assert.equal(fc.index?.digest, pushed.fc.index?.digest);
    }));

  test(`${kind}: a tag holding a single manifest or another type's index refuses a variant push before anything is pushed`, () =>
    withEnv(kind, async (env) => {
      const plain = await pushTyped(env.target, 'plain', [{ path: 'bin/tool' }], { family: cli, envelope, cwd: await env.src('plain binary') });
      assert.equal(plain.index, undefined);
      assert.equal((await env.target.resolve('plain')).digest, plain.manifest.digest);
      const fresh = 'never stored';
      await assert.rejects(
        pushTyped(env.target, 'plain', [{ path: 'bin/tool' }], { family: cli, envelope, platform: AMD64, cwd: await env.src(fresh) }),
        (e: unknown) => isLadingError(e, 'E_USAGE') && /single manifest/.test(e.message) && /another tag|without --platform/.test(e.hint ?? ''),
      );
      assert.equal((await env.target.resolve('plain')).digest, plain.manifest.digest);
      assert.equal(await env.target.exists({ mediaType: MediaType.ImageLayer, digest: digestOf(fresh), size: fresh.length }), false);

      const other = family('pack', 'platform');
      await pushTyped(env.target, 'packs', [{ path: 'bin/tool' }], {
        family: other,
        envelope: { ...envelope, kind: 'pack' },
        platform: AMD64,
        cwd: await env.src('a pack'),
      });
      await assert.rejects(
        pushTyped(env.target, 'packs', [{ path: 'bin/tool' }], { family: cli, envelope, platform: ARM64, cwd: await env.src('cli') }),
        (e: unknown) => isLadingError(e, 'E_USAGE') && e.message.includes(other.artifactType),
      );
    }));

  test(`${kind}: a variant push keeps index entries that are not variants`, () =>
    withEnv(kind, async (env) => {
      const attached = await pushTyped(env.target, undefined, [], { family: config, envelope: { ...envelope, kind: 'config', spec: {} } });
      const first = await pushVariant(env, 'linux amd64 binary', AMD64);
      // Another tool put an entry without a platform into the index; lading leaves it where it is.
      const { index } = await readIndex(env.target, 'v1');
      const mixed = buildImageIndex({ manifests: [attached.manifest, ...index.manifests], artifactType: cli.artifactType });
      await env.target.push(mixed.descriptor, Readable.from([mixed.bytes]));
      await env.target.tag(mixed.descriptor, 'v1');
      const second = await pushVariant(env, 'linux amd64 binary v2', AMD64);
      assert.equal(second.replaced?.digest, first.manifest.digest);
      const after = await readIndex(env.target, 'v1');
      assert.deepEqual(after.index.manifests.map((m) => m.digest), [attached.manifest.digest, second.manifest.digest]);
      assert.equal(after.index.artifactType, cli.artifactType);
    }));

  test(`${kind}: a variant never joins an index without an artifactType (a container image's): nothing is replaced`, () =>
    withEnv(kind, async (env) => {
      const first = await pushVariant(env, 'linux amd64 binary', AMD64);
      const { index } = await readIndex(env.target, 'v1');
      const image = buildImageIndex({ manifests: index.manifests });
      await env.target.push(image.descriptor, Readable.from([image.bytes]));
      await env.target.tag(image.descriptor, 'v1');
      await assert.rejects(pushVariant(env, 'linux amd64 binary v2', AMD64), (e: unknown) => isLadingError(e, 'E_USAGE') && /without an artifactType/.test(e.message));
      assert.equal((await env.target.resolve('v1')).digest, image.descriptor.digest);
      assert.equal(first.index?.digest === image.descriptor.digest, false);
    }));

  test(`${kind}: pullTyped of a single manifest writes its files and envelope; a platform request against it fails`, () =>
    withEnv(kind, async (env) => {
      // A directory this time: it travels as one layer and is unpacked on pull.
      const pushed = await pushTyped(env.target, 'one', [{ path: 'bin' }], { family: cli, envelope, cwd: await env.src('only binary') });
      const out = env.out();
      const r = await pullTyped(env.target, 'one', out, { families });
      assert.deepEqual(r.files.map((f) => [f.title, f.kind]), [['bin', 'directory']]);
      assert.equal(r.descriptor.digest, pushed.manifest.digest);
      assert.equal(r.root.digest, pushed.manifest.digest);
      assert.equal(r.variant, undefined);
      assert.equal(r.family, cli);
      assert.deepEqual((await readdir(out)).sort(), ['bin', ENVELOPE_FILE]);
      assert.equal(await readFile(join(out, 'bin', 'tool'), 'utf8'), 'only binary');
      const text = await readFile(join(out, ENVELOPE_FILE), 'utf8');
      assert.equal(text, `${JSON.stringify(envelope, null, 2)}\n`);

      const out2 = env.out();
      await assert.rejects(pullTyped(env.target, 'one', out2, { families, platform: hostPlatform() }), (e: unknown) => {
        return isLadingError(e, 'E_VARIANT_NOT_FOUND') && /single-manifest/.test(e.message);
      });
      await assert.rejects(readdir(out2), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
    }));

  test(`${kind}: expectDigest pins what the reference must resolve to`, () =>
    withEnv(kind, async (env) => {
      const pushed = await pushFour(env);
      const pinned = pushed.fc.index!.digest;
      const ok = await pullTyped(env.target, 'v1', env.out(), { families, platform: ARM64, expectDigest: pinned });
      assert.equal(ok.root.digest, pinned);
      await pushVariant(env, 'moved on', ARM64);
      const out = env.out();
      await assert.rejects(pullTyped(env.target, 'v1', out, { families, platform: ARM64, expectDigest: pinned }), (e: unknown) => {
        assert.ok(isLadingError(e, 'E_LOCK_MISMATCH'));
        assert.equal(e.details?.expected, pinned);
        assert.notEqual(e.details?.actual, pinned);
        return true;
      });
      await assert.rejects(readdir(out), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
      // By digest the locked index is still there.
      const again = await pullTyped(env.target, pinned, env.out(), { families, platform: ARM64, expectDigest: pinned });
      assert.equal(again.descriptor.digest, pushed.arm64.manifest.digest);
    }));
}

test('layout: the tag is one index.json entry, and every variant manifest is reachable from it', () =>
  withEnv('layout', async (env) => {
    const pushed = await pushFour(env);
    const layout = env.target as OciLayout;
    const entries = await layout.manifests();
    assert.deepEqual(
      entries.map((e) => [e.digest, e.annotations?.[Annotation.RefName]]),
      [[pushed.fc.index!.digest, 'v1']],
    );
    for (const p of Object.values(pushed)) {
      const d = await layout.resolve(p.manifest.digest);
      assert.equal(d.digest, p.manifest.digest);
      assert.ok(await layout.exists(p.manifest));
    }
  }));

test('a layer titled like the envelope is refused: at push, and at pull before anything is written', () =>
  withEnv('memory', async (env) => {
    const dir = await env.src('x');
    await writeFile(join(dir, ENVELOPE_FILE), '{"forged": true}');
    await assert.rejects(
      pushTyped(env.target, 'v1', [{ path: ENVELOPE_FILE }], { family: cli, envelope, cwd: dir }),
      (e: unknown) => isLadingError(e, 'E_USAGE') && e.message.includes(ENVELOPE_FILE),
    );
    // Another tool could still push one; pull refuses it rather than let it stand in for the envelope.
    await pushFiles(env.target, 'forged', [{ path: 'bin/tool' }, { path: ENVELOPE_FILE }], {
      cwd: dir,
      config: { mediaType: cli.configMediaType, bytes: encodeEnvelope(envelope) },
      artifactType: cli.artifactType,
    });
    const out = env.out();
    await assert.rejects(pullTyped(env.target, 'forged', out, { families }), (e: unknown) => {
      return isLadingError(e, 'E_UNSAFE_PATH') && e.message.includes(ENVELOPE_FILE);
    });
    await assert.rejects(readdir(out), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  }));

test('an envelope of another kind, a variant of a family without variants, and variant keys without a platform are refused', () =>
  withEnv('memory', async (env) => {
    const cwd = await env.src('x');
    const inputs = [{ path: 'bin/tool' }];
    await assert.rejects(
      pushTyped(env.target, 'v1', inputs, { family: cli, envelope: { ...envelope, kind: 'pack' }, cwd }),
      (e: unknown) => isLadingError(e, 'E_CONFIG_INVALID') && /kind/.test(e.message),
    );
    await assert.rejects(
      pushTyped(env.target, 'v1', [], { family: config, envelope: { ...envelope, kind: 'config' }, platform: AMD64 }),
      (e: unknown) => isLadingError(e, 'E_USAGE') && /no variants/.test(e.message),
    );
    await assert.rejects(
      pushTyped(env.target, 'v1', inputs, { family: cli, envelope, variant: FC, cwd }),
      (e: unknown) => isLadingError(e, 'E_USAGE'),
    );
    await assert.rejects(
      pushTyped(env.target, 'v1', inputs, { family: cli, envelope, platform: AMD64, variant: { Bad: 'x' }, cwd }),
      (e: unknown) => isLadingError(e, 'E_USAGE'),
    );
    await assert.rejects(pushTyped(env.target, undefined, inputs, { family: cli, envelope, platform: AMD64, cwd }), (e: unknown) =>
      isLadingError(e, 'E_USAGE'),
    );
    await assert.rejects(env.target.resolve('v1'), (e: unknown) => isLadingError(e, 'E_NOT_FOUND'));
  }));

test('a typed artifact may have no files: pull writes just the envelope; readTyped reads it back', () =>
  withEnv('memory', async (env) => {
    const settings: Envelope = { apiVersion: 'lading.dev/v1', kind: 'config', metadata: { name: 'settings' }, spec: { level: 3 } };
    const pushed = await pushTyped(env.target, 'settings', [], { family: config, envelope: settings });
    assert.deepEqual(pushed.layers, []);
    assert.equal(pushed.manifest.artifactType, config.artifactType);
    const manifest = parseManifest(await fetchBytes(env.target, pushed.manifest), pushed.manifest.mediaType);
    assert.equal(manifest.kind, 'manifest');
    if (manifest.kind === 'manifest') {
      assert.equal(manifest.manifest.config.mediaType, config.configMediaType);
      assert.equal(manifest.manifest.artifactType, config.artifactType);
      assert.equal(manifest.manifest.config.digest, digestOf(encodeEnvelope(settings)));
    }
    const out = env.out();
    const r = await pullTyped(env.target, 'settings', out, { families });
    assert.deepEqual(r.files, []);
    assert.deepEqual(await readdir(out), [ENVELOPE_FILE]);
    assert.deepEqual(await readTyped(env.target, pushed.manifest, families), { family: config, envelope: settings });

    const untyped = await pushFiles(env.target, 'plain', [{ path: 'bin/tool' }], { cwd: await env.src('y') });
    assert.deepEqual(await readTyped(env.target, untyped.descriptor, families), {});
    const out2 = env.out();
    const r2 = await pullTyped(env.target, 'plain', out2, { families });
    assert.equal(r2.family, undefined);
    assert.deepEqual(await readdir(out2), ['bin']);
  }));

test('readTyped of an index is empty', () =>
  withEnv('memory', async (env) => {
    const pushed = await pushVariant(env, 'x', AMD64);
    assert.deepEqual(await readTyped(env.target, pushed.index!, families), {});
    assert.deepEqual(await readTyped(env.target, pushed.manifest, families), { family: cli, envelope });
  }));

test('an envelope that does not check out against its family is refused before any file is written', () =>
  withEnv('memory', async (env) => {
    await pushFiles(env.target, 'odd', [{ path: 'bin/tool' }], {
      cwd: await env.src('x'),
      config: { mediaType: cli.configMediaType, bytes: encodeEnvelope({ ...envelope, kind: 'pack' }) },
      artifactType: cli.artifactType,
    });
    const out = env.out();
    await assert.rejects(pullTyped(env.target, 'odd', out, { families }), (e: unknown) => isLadingError(e, 'E_CONFIG_INVALID'));
    await assert.rejects(readdir(out), (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  }));

test('with the built-in families: a checked cli envelope goes up as a variant and comes back byte for byte', () =>
  withEnv('layout', async (env) => {
    const builtins = Families.builtin();
    const real = builtins.get('cli');
    const checked = checkEnvelope({ ...envelope }, real);
    const pushed = await pushTyped(env.target, 'v1', [{ path: 'bin/tool' }], { family: real, envelope: checked, platform: AMD64, cwd: await env.src('real') });
    const config = parseManifest(await fetchBytes(env.target, pushed.manifest), pushed.manifest.mediaType);
    assert.ok(config.kind === 'manifest');
    assert.equal(config.manifest.config.mediaType, 'application/vnd.lading.cli.config.v1+json');
    assert.equal(config.manifest.artifactType, 'application/vnd.lading.cli.v1');
    const out = env.out();
    const r = await pullTyped(env.target, 'v1', out, { families: builtins, platform: { os: 'linux', architecture: 'x86_64' } });
    assert.equal(r.family?.name, 'cli');
    assert.deepEqual(r.envelope, checked);
    assert.equal(await readFile(join(out, 'bin', 'tool'), 'utf8'), 'real');
  }));
