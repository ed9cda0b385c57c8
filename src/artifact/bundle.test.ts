import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { isLadingError, type LadingError } from '../errors.js';
import { MemoryStore } from '../content/memory.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { buildImageIndex, buildImageManifest } from '../oci/manifest.js';
import { EmptyJSON } from '../oci/mediatype.js';
import { parseReference, parseTargetReference } from '../oci/reference.js';
import { canonicalJsonBytes } from './canonical.js';
import { Families } from './family.js';
import { VARIANT_ANNOTATION_PREFIX } from './variants.js';
import { flattenPlan, renderPlan, resolveBundle, type Opener, type PlanNode } from './bundle.js';

/** Repositories of one fake registry, each a memory store, opened the way the CLI opens references. */
class Registry implements Opener {
  readonly stores = new Map<string, MemoryStore>();
  opened = 0;

  /** Every reference opened, in order. */
  readonly refs: string[] = [];

  /** `layout:<dir>` references are stores too, keyed by their directory, as if on disk. */
  store(ref: string): MemoryStore {
    const t = parseTargetReference(ref);
    const name = t.kind === 'layout' ? `layout:${t.dir}` : `${t.ref.registry}/${t.ref.repository}`;
    let s = this.stores.get(name);
    if (!s) this.stores.set(name, (s = new MemoryStore()));
    return s;
  }

  async open(ref: string) {
    this.opened++;
    this.refs.push(ref);
    const t = parseTargetReference(ref);
    const reference = t.kind === 'layout' ? (t.digest ?? t.tag ?? 'latest') : (t.ref.digest ?? t.ref.tag ?? 'latest');
    return { target: this.store(ref), reference, display: ref };
  }
}

async function put(store: MemoryStore, data: Buffer, mediaType: string): Promise<Descriptor> {
  const desc = { mediaType, digest: digestOf(data), size: data.length };
  await store.push(desc, Readable.from([data]));
  return desc;
}

const artifactType = (family: string) => `application/vnd.lading.${family}.v1`;
const configType = (family: string) => `application/vnd.lading.${family}.config.v1+json`;

function specFor(family: string, name: string): Record<string, unknown> {
  if (family === 'cli') return { executable: `bin/${name}` };
  return {};
}

/** A typed manifest of `family` in the repository of `ref`, tagged when `ref` has a tag. */
async function pushManifest(
  reg: Registry,
  ref: string,
  family: string,
  opts: { spec?: Record<string, unknown>; name?: string; tag?: boolean } = {},
): Promise<Descriptor> {
  const store = reg.store(ref);
  const name = opts.name ?? parseReference(ref).repository.split('/').pop()!;
  const envelope = { apiVersion: 'lading.dev/v1', kind: family, metadata: { name }, spec: opts.spec ?? specFor(family, name) };
  const config = await put(store, canonicalJsonBytes(envelope), configType(family));
  const layer = await put(store, Buffer.from(`content of ${ref}`), 'application/vnd.oci.image.layer.v1.tar');
  const built = buildImageManifest({ config, layers: [layer], artifactType: artifactType(family) });
  await store.push(built.descriptor, Readable.from([built.bytes]));
  const tag = parseReference(ref).tag;
  if (tag !== undefined && opts.tag !== false) await store.tag(built.descriptor, tag);
  return built.descriptor;
}

async function pushBundle(reg: Registry, ref: string, components: Array<Record<string, unknown>>): Promise<Descriptor> {
  return pushManifest(reg, ref, 'bundle', { spec: { components } });
}

/** A cli artifact with one variant per platform, as an index at the tag. */
async function pushCliIndex(reg: Registry, ref: string, variants: Array<{ os: string; architecture: string; extra?: Record<string, string> }>): Promise<Descriptor> {
  const store = reg.store(ref);
  const entries: Descriptor[] = [];
  for (const v of variants) {
    const m = await pushManifest(reg, `${ref}-${v.os}-${v.architecture}`, 'cli', { tag: false, name: 'web' });
    const annotations = Object.fromEntries(Object.entries(v.extra ?? {}).map(([k, val]) => [`${VARIANT_ANNOTATION_PREFIX}${k}`, val]));
    entries.push({ ...m, platform: { os: v.os, architecture: v.architecture }, ...(v.extra ? { annotations } : {}) });
  }
  const built = buildImageIndex({ manifests: entries, artifactType: artifactType('cli') });
  await store.push(built.descriptor, Readable.from([built.bytes]));
  await store.tag(built.descriptor, parseReference(ref).tag!);
  return built.descriptor;
}

function families(): Families {
  return Families.builtin();
}

const code = (c: string) => (e: unknown) => isLadingError(e) && e.code === c;

/**
 * stack:1 → web (cli index, 2 variants), db (pack), conf (pinned in its ref), tools (a bundle of lint and
 * data, data pinned by `digest`), model (pinned by `digest`).
 */
async function fiveComponentStack(reg: Registry) {
  const web = await pushCliIndex(reg, 'reg.test/team/web:1', [
    { os: 'linux', architecture: 'amd64' },
    { os: 'linux', architecture: 'arm64', extra: { substrate: 'metal' } },
  ]);
  const db = await pushManifest(reg, 'reg.test/team/db:2', 'pack');
  const conf = await pushManifest(reg, 'reg.test/team/conf:1', 'config');
  const lint = await pushManifest(reg, 'reg.test/team/lint:1', 'cli');
  const data = await pushManifest(reg, 'reg.test/team/data:1', 'fileset');
  const tools = await pushBundle(reg, 'reg.test/team/tools:1', [
    { name: 'lint', ref: 'reg.test/team/lint:1' },
    { name: 'data', ref: 'reg.test/team/data:1', digest: data.digest, mount: { path: '/srv/data' } },
  ]);
  const model = await pushManifest(reg, 'reg.test/team/model:3', 'model');
  const stack = await pushBundle(reg, 'reg.test/team/stack:1', [
    { name: 'web', ref: 'reg.test/team/web:1' },
    { name: 'db', ref: 'reg.test/team/db:2' },
    { name: 'conf', ref: `reg.test/team/conf@${conf.digest}`, mount: { path: '/etc/app', readOnly: false } },
    { name: 'tools', ref: 'reg.test/team/tools:1' },
    { name: 'model', ref: 'reg.test/team/model:3', digest: model.digest },
  ]);
  return { web, db, conf, lint, data, tools, model, stack };
}

test('a bundle of five components, one a nested bundle, resolves with every tag pinned', async () => {
  const reg = new Registry();
  const d = await fiveComponentStack(reg);
  const plan = await resolveBundle(reg, 'reg.test/team/stack:1', families());

  assert.equal(plan.digest, d.stack.digest);
  assert.equal(plan.pinned, `reg.test/team/stack@${d.stack.digest}`);
  assert.equal(plan.family, 'bundle');
  assert.equal(plan.pinnedBy, 'tag');
  assert.deepEqual(
    plan.components!.map((c) => [c.name, c.family, c.digest, c.pinnedBy]),
    [
      ['web', 'cli', d.web.digest, 'tag'],
      ['db', 'pack', d.db.digest, 'tag'],
      ['conf', 'config', d.conf.digest, 'digest'],
      ['tools', 'bundle', d.tools.digest, 'tag'],
      ['model', 'model', d.model.digest, 'digest'],
    ],
  );
  const [web, , conf, tools] = plan.components!;
  assert.deepEqual(web!.variants!.map((v) => [v.platform, v.extra]), [
    ['linux/amd64', {}],
    ['linux/arm64', { substrate: 'metal' }],
  ]);
  assert.equal(web!.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(conf!.mount, { path: '/etc/app', readOnly: false });
  assert.deepEqual(
    tools!.components!.map((c) => [c.name, c.family, c.digest, c.pinned]),
    [
      ['lint', 'cli', d.lint.digest, `reg.test/team/lint@${d.lint.digest}`],
      ['data', 'fileset', d.data.digest, `reg.test/team/data@${d.data.digest}`],
    ],
  );
  assert.deepEqual(tools!.components![1]!.mount, { path: '/srv/data', readOnly: true });

  const flat = flattenPlan(plan);
  assert.deepEqual(
    flat.map((f) => [f.depth, f.ref, f.family]),
    [
      [0, 'reg.test/team/stack:1', 'bundle'],
      [1, 'reg.test/team/web:1', 'cli'],
      [1, 'reg.test/team/db:2', 'pack'],
      [1, `reg.test/team/conf@${d.conf.digest}`, 'config'],
      [1, 'reg.test/team/tools:1', 'bundle'],
      [2, 'reg.test/team/lint:1', 'cli'],
      [2, 'reg.test/team/data:1', 'fileset'],
      [1, 'reg.test/team/model:3', 'model'],
    ],
  );
  for (const f of flat) assert.match(f.pinned, /@sha256:[0-9a-f]{64}$/);

  const lines = renderPlan(plan);
  assert.equal(lines.length, 8);
  assert.match(lines[0]!, /^stack {2}reg\.test\/team\/stack:1 → sha256:/);
  assert.match(lines[1]!, /^├── web {2}reg\.test\/team\/web:1 → .*2 variants: linux\/amd64, linux\/arm64 substrate=metal/);
  assert.match(lines[5]!, /^│ {3}├── lint {2}/);
  assert.match(lines[6]!, /^│ {3}└── data {2}.*mount \/srv\/data/);
  assert.match(lines[7]!, /^└── model {2}/);
});

test('a plain artifact resolves to a single node', async () => {
  const reg = new Registry();
  const d = await pushManifest(reg, 'reg.test/team/db:2', 'pack');
  const plan = await resolveBundle(reg, 'reg.test/team/db:2', families());
  assert.deepEqual(
    { digest: plan.digest, family: plan.family, components: plan.components, variants: plan.variants },
    { digest: d.digest, family: 'pack', components: undefined, variants: undefined },
  );
});

test('a component reached through two parents (a diamond) is not a cycle', async () => {
  const reg = new Registry();
  const shared = await pushManifest(reg, 'reg.test/d/shared:1', 'pack');
  await pushBundle(reg, 'reg.test/d/left:1', [{ ref: 'reg.test/d/shared:1' }]);
  await pushBundle(reg, 'reg.test/d/right:1', [{ ref: 'reg.test/d/shared:1' }]);
  await pushBundle(reg, 'reg.test/d/top:1', [{ ref: 'reg.test/d/left:1' }, { ref: 'reg.test/d/right:1' }, { ref: 'reg.test/d/shared:1' }]);
  const plan = await resolveBundle(reg, 'reg.test/d/top:1', families());
  const digests = flattenPlan(plan).filter((f) => f.ref === 'reg.test/d/shared:1').map((f) => f.digest);
  assert.deepEqual(digests, [shared.digest, shared.digest, shared.digest]);
});

test('a tag re-pointed to close a loop is reported as a cycle with its references', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/c/b:1', 'pack');
  const a = await pushBundle(reg, 'reg.test/c/a:1', [{ ref: 'reg.test/c/b:1' }]);
  // b:1 is pushed again, now a bundle that points back at a:1.
  const b2 = await pushBundle(reg, 'reg.test/c/b:1', [{ name: 'back', ref: 'reg.test/c/a:1' }]);
  await assert.rejects(resolveBundle(reg, 'reg.test/c/a:1', families()), (e: unknown) => {
    assert.ok(isLadingError(e, 'E_BUNDLE_CYCLE'), String(e));
    assert.match(e.message, /reg\.test\/c\/a:1 → reg\.test\/c\/b:1 → reg\.test\/c\/a:1/);
    assert.deepEqual(e.details?.cycle, ['reg.test/c/a:1', 'reg.test/c/b:1', 'reg.test/c/a:1']);
    assert.deepEqual(e.details?.digests, [a.digest, b2.digest, a.digest]);
    return true;
  });
  // Entering the loop from the other side shows it from there.
  await assert.rejects(resolveBundle(reg, 'reg.test/c/b:1', families()), (e: LadingError) =>
    /reg\.test\/c\/b:1 → reg\.test\/c\/a:1 → reg\.test\/c\/b:1/.test(e.message),
  );
});

test('a bundle naming its own tag is a cycle of one', async () => {
  const reg = new Registry();
  await pushBundle(reg, 'reg.test/c/self:1', [{ ref: 'reg.test/c/self:1' }]);
  await assert.rejects(resolveBundle(reg, 'reg.test/c/self:1', families()), (e: LadingError) =>
    isLadingError(e, 'E_BUNDLE_CYCLE') && e.message.includes('reg.test/c/self:1 → reg.test/c/self:1'),
  );
});

test('a component whose ref and digest pin different digests is refused with its path', async () => {
  const reg = new Registry();
  const x = await pushManifest(reg, 'reg.test/p/x:1', 'pack');
  const y = await pushManifest(reg, 'reg.test/p/y:1', 'pack');
  await pushBundle(reg, 'reg.test/p/b:1', [
    { ref: 'reg.test/p/y:1' },
    { ref: `reg.test/p/x@${x.digest}`, digest: y.digest },
  ]);
  await assert.rejects(resolveBundle(reg, 'reg.test/p/b:1', families()), (e: LadingError) => {
    assert.equal(e.code, 'E_CONFIG_INVALID');
    assert.match(e.message, /spec\.components\[1\]/);
    assert.match(e.message, new RegExp(`pins ${x.digest} but digest says ${y.digest}`));
    assert.equal(e.details?.path, 'spec.components[1]');
    return true;
  });
});

test('a component pinned to a digest its repository lacks is refused, naming the component', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/p/x:1', 'pack');
  const other = await pushManifest(reg, 'reg.test/p/other:1', 'pack');
  await pushBundle(reg, 'reg.test/p/b:1', [{ ref: 'reg.test/p/x:1', digest: other.digest }]);
  await assert.rejects(resolveBundle(reg, 'reg.test/p/b:1', families()), (e: LadingError) => {
    assert.equal(e.code, 'E_NOT_FOUND');
    assert.match(e.message, /^reg\.test\/p\/b:1 spec\.components\[0\]: /);
    return true;
  });
});

test('a pinned component is fetched by its digest even after its tag moved', async () => {
  const reg = new Registry();
  const v1 = await pushManifest(reg, 'reg.test/p/x:1', 'pack', { name: 'first' });
  await pushBundle(reg, 'reg.test/p/b:1', [{ ref: 'reg.test/p/x:1', digest: v1.digest }]);
  const v2 = await pushManifest(reg, 'reg.test/p/x:1', 'pack', { name: 'second' });
  assert.notEqual(v1.digest, v2.digest);
  const plan = await resolveBundle(reg, 'reg.test/p/b:1', families());
  assert.equal(plan.components![0]!.digest, v1.digest);
});

test('nesting deeper than maxDepth is refused', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/n/leaf:1', 'pack');
  let below = 'reg.test/n/leaf:1';
  for (let i = 5; i >= 0; i--) {
    await pushBundle(reg, `reg.test/n/b${i}:1`, [{ ref: below }]);
    below = `reg.test/n/b${i}:1`;
  }
  // b0 → b1 → … → b5 → leaf: the leaf is at depth 6.
  const plan = await resolveBundle(reg, 'reg.test/n/b0:1', families(), { maxDepth: 6 });
  assert.equal(flattenPlan(plan).at(-1)!.depth, 6);
  await assert.rejects(resolveBundle(reg, 'reg.test/n/b0:1', families(), { maxDepth: 5 }), (e: LadingError) => {
    assert.equal(e.code, 'E_TOO_LARGE');
    assert.match(e.message, /more than 5 levels deep: reg\.test\/n\/b0:1 → .* → reg\.test\/n\/leaf:1/);
    return true;
  });
});

test('a plan with more nodes than maxNodes is refused', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/m/leaf:1', 'pack');
  // Each level doubles the occurrences of the leaf: 2^6 of them at the bottom.
  let below = 'reg.test/m/leaf:1';
  for (let i = 0; i < 6; i++) {
    await pushBundle(reg, `reg.test/m/l${i}:1`, [{ ref: below }, { ref: below }]);
    below = `reg.test/m/l${i}:1`;
  }
  await assert.rejects(resolveBundle(reg, below, families(), { maxNodes: 100 }), code('E_TOO_LARGE'));
  const plan = await resolveBundle(reg, below, families(), { maxNodes: 127 });
  assert.equal(flattenPlan(plan).length, 127);
});

test('a tag that appears twice is resolved once', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/t/x:1', 'pack');
  await pushBundle(reg, 'reg.test/t/b:1', [{ ref: 'reg.test/t/x:1' }, { ref: 'reg.test/t/x:1' }]);
  let resolves = 0;
  const counting: Opener = {
    async open(ref) {
      const o = await reg.open(ref);
      const target = o.target;
      return {
        ...o,
        target: Object.assign(Object.create(target) as MemoryStore, {
          resolve: (r: string) => {
            if (!r.includes(':')) resolves++;
            return target.resolve(r);
          },
        }),
      };
    },
  };
  const plan: PlanNode = await resolveBundle(counting, 'reg.test/t/b:1', families());
  assert.equal(plan.components!.length, 2);
  assert.equal(resolves, 2);
});

test('an aborted signal stops resolution', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/a/x:1', 'pack');
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(resolveBundle(reg, 'reg.test/a/x:1', families(), { signal: ac.signal }));
});

test('a component whose ref is not a reference is refused with its path', async () => {
  const reg = new Registry();
  await pushBundle(reg, 'reg.test/e/b:1', [{ ref: 'reg.test/e/ok:1' }, { ref: 'Reg.Test/UPPER/Case' }]);
  await assert.rejects(resolveBundle(reg, 'reg.test/e/b:1', families()), (e: LadingError) => {
    assert.equal(e.code, 'E_CONFIG_INVALID');
    assert.match(e.message, /spec\.components\[1\]\.ref/);
    return true;
  });
});

/** A manifest with the config and artifactType given, tagged `tag` in the store of `ref`. */
async function pushRaw(
  reg: Registry,
  ref: string,
  tag: string,
  config: { bytes: Buffer; mediaType: string },
  artifactType?: string,
): Promise<Descriptor> {
  const store = reg.store(ref);
  const cfg = await put(store, config.bytes, config.mediaType);
  const layer = await put(store, Buffer.from(`content of ${ref}`), 'application/vnd.oci.image.layer.v1.tar');
  const built = buildImageManifest({ config: cfg, layers: [layer], ...(artifactType ? { artifactType } : {}) });
  await store.push(built.descriptor, Readable.from([built.bytes]));
  await store.tag(built.descriptor, tag);
  return built.descriptor;
}

function bundleEnvelope(components: Array<Record<string, unknown>>): Buffer {
  return canonicalJsonBytes({ apiVersion: 'lading.dev/v1', kind: 'bundle', metadata: { name: 'b' }, spec: { components } });
}

test('an index that claims the bundle artifactType is refused, not read as a bundle of nothing', async () => {
  const reg = new Registry();
  const entry = await pushBundle(reg, 'reg.test/i/b:entry', [{ ref: 'reg.test/i/x:1' }]);
  await pushManifest(reg, 'reg.test/i/x:1', 'pack');
  const store = reg.store('reg.test/i/b:1');
  for (const [tag, own] of [['1', artifactType('bundle')], ['2', undefined], ['3', 'Application/Vnd.Lading.Bundle.V1; x=y']] as const) {
    // Its own artifactType, or the one all its entries share.
    const built = buildImageIndex({ manifests: [{ ...entry, artifactType: artifactType('bundle') }], ...(own ? { artifactType: own } : {}) });
    await store.push(built.descriptor, Readable.from([built.bytes]));
    await store.tag(built.descriptor, tag);
    await assert.rejects(resolveBundle(reg, `reg.test/i/b:${tag}`, families()), (e: LadingError) => {
      assert.equal(e.code, 'E_MANIFEST_INVALID');
      assert.match(e.message, /an index claims to be a bundle/);
      assert.match(e.hint ?? '', /a bundle is one image manifest/);
      return true;
    });
  }
  // The same refusal for a component, naming where it is.
  await pushBundle(reg, 'reg.test/i/outer:1', [{ ref: 'reg.test/i/b:1' }]);
  await assert.rejects(resolveBundle(reg, 'reg.test/i/outer:1', families()), (e: LadingError) => {
    assert.equal(e.code, 'E_MANIFEST_INVALID');
    assert.match(e.message, /^reg\.test\/i\/outer:1 spec\.components\[0\]: /);
    return true;
  });
});

test('a manifest with the bundle artifactType over another config (empty, cli) is refused', async () => {
  const reg = new Registry();
  const empty = { bytes: Buffer.from('{}'), mediaType: EmptyJSON.mediaType };
  const cli = { bytes: canonicalJsonBytes({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'c' }, spec: { executable: 'bin/c' } }), mediaType: configType('cli') };
  for (const [tag, config] of [['empty', empty], ['cli', cli]] as const) {
    await pushRaw(reg, 'reg.test/m/b:1', tag, config, artifactType('bundle'));
    await assert.rejects(resolveBundle(reg, `reg.test/m/b:${tag}`, families()), (e: LadingError) => {
      assert.equal(e.code, 'E_CONFIG_INVALID');
      assert.match(e.message, new RegExp(`says bundle, but the config is ${config.mediaType.replace(/[.+]/g, '\\$&')}`));
      assert.equal(e.details?.path, 'config.mediaType');
      assert.match(e.hint ?? '', /application\/vnd\.lading\.bundle\.config\.v1\+json/);
      return true;
    });
  }
});

test('a bundle config media type in another case or with parameters is still a bundle', async () => {
  const reg = new Registry();
  const x = await pushManifest(reg, 'reg.test/n/x:1', 'pack');
  for (const [tag, mt] of [['1', 'Application/Vnd.Lading.Bundle.Config.V1+JSON'], ['2', `${configType('bundle')}; charset=utf-8`]] as const) {
    await pushRaw(reg, 'reg.test/n/b:1', tag, { bytes: bundleEnvelope([{ name: 'x', ref: 'reg.test/n/x:1' }]), mediaType: mt }, artifactType('bundle'));
    const plan = await resolveBundle(reg, `reg.test/n/b:${tag}`, families());
    assert.equal(plan.family, 'bundle');
    assert.deepEqual(plan.components?.map((c) => c.digest), [x.digest]);
  }
});

test('a bundle from a registry may not name a layout component; a bundle from a layout may', async () => {
  const reg = new Registry();
  await pushManifest(reg, 'reg.test/l/x:1', 'pack');
  await pushBundle(reg, 'reg.test/l/b:1', [{ ref: 'reg.test/l/x:1' }, { ref: 'layout:dir' }]);
  const before = reg.refs.length;
  await assert.rejects(resolveBundle(reg, 'reg.test/l/b:1', families()), (e: LadingError) => {
    assert.equal(e.code, 'E_CONFIG_INVALID');
    assert.equal(e.details?.path, 'spec.components[1].ref');
    assert.match(e.message, /spec\.components\[1\]\.ref: "layout:dir" names a directory on this machine/);
    assert.match(e.hint ?? '', /only a bundle opened from a layout/);
    return true;
  });
  assert.ok(reg.refs.slice(before).every((r) => !r.startsWith('layout:')), 'no layout was opened');
  // Nested under a layout bundle, a registry bundle is still a registry bundle.
  await pushRaw(reg, 'layout:top', 'v1', { bytes: bundleEnvelope([{ ref: 'reg.test/l/b:1' }]), mediaType: configType('bundle') }, artifactType('bundle'));
  await assert.rejects(resolveBundle(reg, 'layout:top:v1', families()), (e: LadingError) => e.code === 'E_CONFIG_INVALID' && e.details?.path === 'spec.components[1].ref');
  // A bundle opened from a layout may name another layout.
  const local = await pushRaw(reg, 'layout:dir', 'latest', { bytes: Buffer.from('{}'), mediaType: EmptyJSON.mediaType }, 'application/vnd.example.thing');
  await pushRaw(reg, 'layout:here', 'v1', { bytes: bundleEnvelope([{ ref: 'layout:dir' }]), mediaType: configType('bundle') }, artifactType('bundle'));
  const plan = await resolveBundle(reg, 'layout:here:v1', families());
  assert.equal(plan.components?.[0]?.digest, local.digest);
  assert.equal(plan.components?.[0]?.pinned, `layout:dir@${local.digest}`);
});

test('a target that answers another digest than asked is E_DIGEST_MISMATCH with a hint', async () => {
  const reg = new Registry();
  const x = await pushManifest(reg, 'reg.test/d/x:1', 'pack');
  const y = await pushManifest(reg, 'reg.test/d/x:2', 'pack', { name: 'other' });
  const liar: Opener = {
    async open(ref: string) {
      const opened = await reg.open(ref);
      const target = Object.create(opened.target) as typeof opened.target;
      target.resolve = async () => y;
      return { ...opened, target };
    },
  };
  await assert.rejects(resolveBundle(liar, `reg.test/d/x@${x.digest}`, families()), (e: LadingError) => {
    assert.equal(e.code, 'E_DIGEST_MISMATCH');
    assert.ok(e.hint && e.hint.length > 0);
    assert.equal(e.details?.expected, x.digest);
    assert.equal(e.details?.actual, y.digest);
    return true;
  });
});
