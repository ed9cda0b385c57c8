/**
 * The registry-client suite. It runs against every registry lading must work with — the CNCF
 * distribution registry now, `lading serve` later — through one definition, so that a behaviour proven
 * against one is proven against all.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { isLadingError } from '../src/errors.js';
import { OciLayout } from '../src/content/layout.js';
import { pushFiles } from '../src/artifact/files.js';
import { pullFiles } from '../src/artifact/pull.js';
import { copy } from '../src/graph/copy.js';
import { buildImageIndex, buildImageManifest } from '../src/oci/manifest.js';
import { digestOf, referrersTag } from '../src/oci/digest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { Registry } from '../src/remote/registry.js';
import { Repository } from '../src/remote/repository.js';
import { Transport } from '../src/remote/transport.js';
import { lading } from './support/cli.js';

export interface RegistryUnderTest {
  host: string;
  stop(): Promise<void>;
}

export interface RegistryKind {
  name: string;
  /** False when the peer is missing here (the factory has already skipped or failed the test). */
  available(t: TestContext): boolean;
  start(opts?: { htpasswd?: { user: string; password: string } }): Promise<RegistryUnderTest>;
  /** Whether the registry has the referrers API (false means the tag schema must be used). */
  referrersApi: boolean;
}

const EMPTY: Descriptor = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };

async function expectCode(p: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isLadingError(err), `expected a LadingError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** Every file, directory and link under `dir`, with contents, as one comparable object. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(dir, rel))).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = join(dir, r);
      const info = await lstat(p);
      if (info.isSymbolicLink()) out[r] = `link:${await readlink(p)}`;
      else if (info.isDirectory()) {
        out[r] = 'dir';
        await walk(r);
      } else out[r] = `file:${(info.mode & 0o111) !== 0 ? 'x' : '-'}:${digestOf(await readFile(p))}`;
    }
  };
  await walk('');
  return out;
}

async function pushBlob(repo: Repository, data: Buffer, mediaType: string = MediaType.OctetStream): Promise<Descriptor> {
  const desc = { mediaType, digest: digestOf(data), size: data.length };
  await repo.push(desc, Readable.from([data]));
  return desc;
}

/** Pushes a built manifest (with the empty config blob it may name) and tags it. */
async function pushManifestOf(repo: Repository, built: { bytes: Buffer; descriptor: Descriptor }, tag?: string): Promise<Descriptor> {
  if (built.bytes.includes(EmptyJSON.digest)) await pushBlob(repo, Buffer.from('{}'), EmptyJSON.mediaType);
  await repo.push(built.descriptor, Readable.from([built.bytes]));
  if (tag) await repo.tag(built.descriptor, tag);
  return built.descriptor;
}

export function clientSuite(kind: RegistryKind): void {
  describe(`registry client against ${kind.name}`, () => {
    let reg: RegistryUnderTest | undefined;
    let work: string;
    const transport = new Transport({ retry: { baseDelayMs: 5, maxDelayMs: 50 } });
    const repo = (name: string, opts = {}) => new Repository(`${reg!.host}/${name}`, { transport, ...opts });

    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'lading-client-'));
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

    test('push files and a directory with the CLI, pull them back byte-identical', async (t) => {
      if (!(await ready(t))) return;
      const src = join(work, 'src');
      await mkdir(join(src, 'tree', 'sub', 'deeper'), { recursive: true });
      await mkdir(join(src, 'tree', 'empty'));
      await writeFile(join(src, 'notes.txt'), 'hello, registry\n');
      await writeFile(join(src, 'data.bin'), randomBytes(3 * 1024 * 1024 + 17));
      await writeFile(join(src, 'tree', 'a.txt'), 'a');
      await writeFile(join(src, 'tree', 'sub', 'run.sh'), '#!/bin/sh\necho ok\n', { mode: 0o755 });
      await writeFile(join(src, 'tree', 'sub', 'deeper', 'z.json'), '{"z":1}');
      await symlink('a.txt', join(src, 'tree', 'link-to-a'));

      const ref = `${reg!.host}/files/demo:v1`;
      const pushed = await lading(['push', ref, 'notes.txt', 'data.bin:application/x-custom', 'tree', '--json', '--annotation', 'org.example=yes'], { cwd: src });
      assert.equal(pushed.code, 0, pushed.stderr);
      const digest = pushed.json.descriptor.digest as string;
      assert.match(digest, /^sha256:[a-f0-9]{64}$/);

      const out = join(work, 'pulled');
      const pulled = await lading(['pull', ref, '-o', out, '--json']);
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(pulled.json.descriptor.digest, digest);
      assert.deepEqual(await snapshot(out), await snapshot(src));

      // The manifest is what ORAS writes and reads: titles, the unpack marker, and the media types asked for.
      const inspected = await lading(['inspect', ref, '--json']);
      assert.equal(inspected.code, 0, inspected.stderr);
      const layers = inspected.json.manifest.layers as Descriptor[];
      assert.deepEqual(layers.map((l) => l.annotations?.['org.opencontainers.image.title']), ['notes.txt', 'data.bin', 'tree']);
      assert.equal(layers[1]!.mediaType, 'application/x-custom');
      assert.equal(layers[2]!.annotations?.['io.deis.oras.content.unpack'], 'true');
      assert.equal(inspected.json.manifest.annotations['org.example'], 'yes');
      assert.equal(inspected.json.manifest.artifactType, 'application/vnd.unknown.artifact.v1');

      // Pushing the same tree again gives the same digest: directory layers are deterministic.
      const again = await lading(['push', `${reg!.host}/files/demo:v2`, 'notes.txt', 'data.bin:application/x-custom', 'tree', '--json', '--annotation', 'org.example=yes'], { cwd: src });
      assert.equal(again.json.descriptor.digest, digest);
    });

    test('pull refuses a layer title that would leave the output directory, and writes nothing', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('files/evil');
      const layer = await pushBlob(r, Buffer.from('pwned'));
      const built = buildImageManifest({
        config: EMPTY,
        layers: [
          { ...layer, annotations: { 'org.opencontainers.image.title': 'fine.txt' } },
          { ...layer, digest: layer.digest, annotations: { 'org.opencontainers.image.title': '../escaped.txt' } },
        ],
        artifactType: 'application/vnd.example',
      });
      await pushManifestOf(r, built, 'v1');
      const base = join(work, 'evil');
      const out = join(base, 'out');
      await mkdir(out, { recursive: true });
      await expectCode(pullFiles(r, 'v1', out), 'E_UNSAFE_PATH');
      assert.deepEqual(await readdir(out), []);
      assert.deepEqual((await readdir(base)).sort(), ['out']);
    });

    test('copy between two repositories mounts the blobs instead of moving them', async (t) => {
      if (!(await ready(t))) return;
      const src = join(work, 'mount-src');
      await mkdir(src, { recursive: true });
      await writeFile(join(src, 'one.bin'), randomBytes(200_000));
      await writeFile(join(src, 'two.bin'), randomBytes(300_000));
      const a = repo('mount/a');
      const root = (await pushFiles(a, 'v1', [{ path: 'one.bin' }, { path: 'two.bin' }], { cwd: src })).descriptor;
      const b = repo('mount/b');
      const events: string[] = [];
      const result = await copy(a, 'v1', b, 'copied', { onProgress: (e) => events.push(`${e.state}:${e.desc.digest}`) });
      assert.equal(result.root.digest, root.digest);
      assert.equal(result.mounted, 3, 'config and both layers mounted');
      assert.equal(result.copied, 1, 'only the manifest is uploaded');
      assert.equal(events.filter((e) => e.startsWith('mounted:')).length, 3);
      assert.equal((await b.resolve('copied')).digest, root.digest);
      const out = join(work, 'mount-out');
      await pullFiles(b, 'copied', out);
      assert.deepEqual(await snapshot(out), await snapshot(src));

      // A second copy finds everything present and moves nothing.
      const again = await copy(a, 'v1', b, 'copied');
      assert.equal(again.copied + again.mounted, 0);
      assert.equal(again.skipped, 1);
    });

    test('copy to an OCI layout and back keeps every digest', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('layout/src');
      const blobs = await Promise.all([randomBytes(1000), randomBytes(70_000)].map((b) => pushBlob(r, b, MediaType.ImageLayer)));
      const cfg = await pushBlob(r, Buffer.from('{"kind":"demo"}'), 'application/vnd.example.config+json');
      const root = await pushManifestOf(r, buildImageManifest({ config: cfg, layers: blobs, annotations: { a: 'b' } }), 'v1');

      const dir = join(work, 'layout-copy');
      const layoutRef = `layout:${dir}:v1`;
      const down = await lading(['copy', `${reg!.host}/layout/src:v1`, layoutRef, '--json']);
      assert.equal(down.code, 0, down.stderr);
      const layout = await OciLayout.open(dir);
      assert.equal((await layout.resolve('v1')).digest, root.digest);
      for (const d of [cfg, ...blobs]) assert.ok(await layout.exists(d), `${d.digest} in the layout`);

      const up = await lading(['copy', layoutRef, `${reg!.host}/layout/back:v1`, '--json']);
      assert.equal(up.code, 0, up.stderr);
      const back = repo('layout/back');
      const resolved = await back.resolve('v1');
      assert.equal(resolved.digest, root.digest);
      assert.equal(resolved.size, root.size);
      for (const d of [cfg, ...blobs]) assert.ok(await back.exists(d));
    });

    test('an index and its manifests copy as one graph; pulling an index asks for a platform', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('multi/src');
      const children: Descriptor[] = [];
      for (const [os, architecture] of [['linux', 'amd64'], ['linux', 'arm64']] as const) {
        const layer = await pushBlob(r, Buffer.from(`${os}/${architecture} binary`), MediaType.ImageLayer);
        const m = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [{ ...layer, annotations: { 'org.opencontainers.image.title': 'tool' } }], artifactType: 'application/vnd.example.tool' }));
        children.push({ ...m, platform: { os, architecture } });
      }
      const index = await pushManifestOf(r, buildImageIndex({ manifests: children }), 'v1');
      const dst = repo('multi/dst');
      const result = await copy(r, 'v1', dst, 'v1');
      assert.equal(result.root.digest, index.digest);
      for (const c of children) assert.ok(await dst.exists(c));
      await assert.rejects(pullFiles(dst, 'v1', join(work, 'multi-out')), (err: unknown) => {
        assert.ok(isLadingError(err, 'E_UNSUPPORTED'));
        assert.match(err.hint ?? '', /linux\/amd64/);
        assert.match(err.hint ?? '', /linux\/arm64/);
        return true;
      });
      const one = await pullFiles(dst, children[1]!.digest, join(work, 'multi-out'));
      assert.equal(await readFile(join(work, 'multi-out', 'tool'), 'utf8'), 'linux/arm64 binary');
      assert.equal(one.files.length, 1);
    });

    test('referrers are recorded and found (through the tag schema where the API is missing), and copied with --referrers', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('refs/app');
      const layer = await pushBlob(r, Buffer.from('the app'), MediaType.ImageLayer);
      const subject = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [layer], artifactType: 'application/vnd.example.app' }), 'v1');
      const sigBlob = await pushBlob(r, Buffer.from('signature bytes'));
      const sig = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [sigBlob], artifactType: 'application/vnd.example.sig', subject, annotations: { 'org.example.kind': 'sig' } }));
      const sbomBlob = await pushBlob(r, Buffer.from('{"sbom":true}'));
      const sbom = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [sbomBlob], artifactType: 'application/vnd.example.sbom', subject }));

      const all: Descriptor[] = [];
      for await (const d of r.referrers(subject)) all.push(d);
      assert.deepEqual(all.map((d) => d.digest).sort(), [sig.digest, sbom.digest].sort());
      const sigEntry = all.find((d) => d.digest === sig.digest)!;
      assert.equal(sigEntry.artifactType, 'application/vnd.example.sig');
      assert.equal(sigEntry.annotations?.['org.example.kind'], 'sig');
      const onlySigs: Descriptor[] = [];
      for await (const d of r.referrers(subject, 'application/vnd.example.sig')) onlySigs.push(d);
      assert.deepEqual(onlySigs.map((d) => d.digest), [sig.digest]);

      if (!kind.referrersApi) {
        // The fallback index lives at the tag the distribution spec names, as an image index.
        const fallback = await r.resolve(referrersTag(subject.digest));
        assert.equal(fallback.mediaType, MediaType.ImageIndex);
      }

      // Referrers of referrers come along too.
      const countersig = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [sigBlob], artifactType: 'application/vnd.example.countersig', subject: sig }));
      const copied = await lading(['copy', '--referrers', `${reg!.host}/refs/app:v1`, `${reg!.host}/refs/copy:v1`, '--json']);
      assert.equal(copied.code, 0, copied.stderr);
      const dst = repo('refs/copy');
      const there: string[] = [];
      for await (const d of dst.referrers(subject)) there.push(d.digest);
      assert.deepEqual(there.sort(), [sig.digest, sbom.digest].sort());
      const nested: string[] = [];
      for await (const d of dst.referrers(sig)) nested.push(d.digest);
      assert.deepEqual(nested, [countersig.digest]);

      // Deleting a referrer takes it out of the listing.
      await r.delete(sbom);
      const left: string[] = [];
      for await (const d of r.referrers(subject)) left.push(d.digest);
      assert.deepEqual(left, [sig.digest]);
    });

    test('tags are listed across pages, in order, without repeats', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('paging/tags');
      const layer = await pushBlob(r, Buffer.from('x'));
      const m = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [layer], artifactType: 'application/vnd.example' }));
      const tags = Array.from({ length: 23 }, (_, i) => `t${String(i).padStart(2, '0')}`);
      for (const tag of tags) await r.tag(m, tag);
      const paged: string[] = [];
      for await (const tag of r.tags({ pageSize: 5 })) paged.push(tag);
      assert.deepEqual(paged, tags);
      const rest: string[] = [];
      for await (const tag of r.tags({ pageSize: 4, last: 't17' })) rest.push(tag);
      assert.deepEqual(rest, tags.slice(18));
      const cli = await lading(['ls', `${reg!.host}/paging/tags`, '--page-size', '6', '--json']);
      assert.equal(cli.code, 0, cli.stderr);
      assert.deepEqual(cli.json.tags, tags);
      const catalog: string[] = [];
      for await (const name of new Registry(reg!.host, { transport }).catalog({ pageSize: 2 })) catalog.push(name);
      assert.ok(catalog.includes('paging/tags'), catalog.join(','));
      assert.deepEqual(catalog, [...catalog].sort());
    });

    test('large blobs go up in chunks and come back verified', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('chunks/big', { chunkThreshold: 1024 * 1024, chunkSize: 512 * 1024 });
      const data = randomBytes(3 * 1024 * 1024 + 12345);
      const desc = await pushBlob(r, data);
      assert.ok(await r.exists(desc));
      const chunks: Buffer[] = [];
      for await (const c of await r.fetch(desc)) chunks.push(c as Buffer);
      assert.ok(Buffer.concat(chunks).equals(data));
      // A resumed read from an offset returns the tail.
      const tail: Buffer[] = [];
      for await (const c of await r.fetch(desc, { offset: 1_000_000 })) tail.push(c as Buffer);
      assert.ok(Buffer.concat(tail).equals(data.subarray(1_000_000)));
      // A source that is shorter than its descriptor says is refused, and nothing is left behind.
      const lie = { ...desc, digest: digestOf(Buffer.from('other')), size: data.length };
      await expectCode(r.push(lie, Readable.from([data.subarray(0, 1000)])), 'E_SIZE_MISMATCH');
      assert.equal(await r.exists(lie), false);
    });

    test('manifests can be deleted by digest', async (t) => {
      if (!(await ready(t))) return;
      const r = repo('delete/me');
      const layer = await pushBlob(r, Buffer.from('bye'));
      const m = await pushManifestOf(r, buildImageManifest({ config: EMPTY, layers: [layer], artifactType: 'application/vnd.example' }), 'v1');
      assert.ok(await r.exists(m));
      await r.delete(m);
      assert.equal(await r.exists(m), false);
      await expectCode(r.resolve('v1'), 'E_NOT_FOUND');
    });

    test('bad input gets a clear error code and writes nothing', async (t) => {
      if (!(await ready(t))) return;
      const bad = await lading(['pull', `${reg!.host}/UPPER/case:v1`, '--json']);
      assert.equal(bad.code, 2);
      assert.equal(bad.json.error.code, 'E_REFERENCE_INVALID');
      const badTag = await lading(['pull', `${reg!.host}/ok:-bad`, '--json']);
      assert.equal(badTag.code, 2);
      const missing = await lading(['pull', `${reg!.host}/nothing/here:v1`, '-o', join(work, 'missing'), '--json']);
      assert.equal(missing.code, 1);
      assert.equal(missing.json.error.code, 'E_NOT_FOUND');
      await assert.rejects(stat(join(work, 'missing')));
      const usage = await lading(['push']);
      assert.equal(usage.code, 2);
      // Neither a push of something that does not exist nor a copy from nowhere creates a layout.
      const layoutDir = join(work, 'never-created');
      const noFile = await lading(['push', `layout:${layoutDir}:v1`, 'does-not-exist.txt', '--json'], { cwd: work });
      assert.equal(noFile.code, 1);
      assert.equal(noFile.json.error.code, 'E_IO');
      const noSource = await lading(['copy', `${reg!.host}/nothing/here:v1`, `layout:${layoutDir}:v1`, '--json']);
      assert.equal(noSource.json.error.code, 'E_NOT_FOUND');
      await assert.rejects(stat(layoutDir));

      const r = repo('bad/input');
      const notJson = Buffer.from('{"schemaVersion": 2, ');
      await expectCode(r.pushManifest({ mediaType: MediaType.ImageManifest, digest: digestOf(notJson), size: notJson.length }, notJson, 'v1'), 'E_JSON_INVALID');
      const huge = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageManifest, config: EMPTY, layers: [], annotations: { pad: 'x'.repeat(4 * 1024 * 1024) } }));
      await expectCode(r.pushManifest({ mediaType: MediaType.ImageManifest, digest: digestOf(huge), size: huge.length }, huge, 'v1'), 'E_MANIFEST_TOO_LARGE');
      const unknown = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.example.not-a-manifest', config: EMPTY, layers: [] }));
      await expectCode(r.pushManifest({ mediaType: 'application/vnd.example.not-a-manifest', digest: digestOf(unknown), size: unknown.length }, unknown, 'v1'), 'E_MEDIA_TYPE_UNSUPPORTED');
      const tags: string[] = [];
      await assert.rejects(async () => {
        for await (const tag of r.tags()) tags.push(tag);
      }, (err: unknown) => isLadingError(err, 'E_NOT_FOUND'));
      assert.deepEqual(tags, []);
    });
  });

  describe(`registry client against ${kind.name} with basic auth`, () => {
    let reg: RegistryUnderTest | undefined;
    let home: string;
    const user = { user: 'lading-user', password: `pw-${randomBytes(6).toString('hex')}` };
    before(async () => {
      home = await mkdtemp(join(tmpdir(), 'lading-auth-'));
    });
    after(async () => {
      await reg?.stop();
      await rm(home, { recursive: true, force: true });
    });

    test('login stores working credentials 0600, wrong ones are refused, logout removes them; no secret is printed', async (t) => {
      if (!kind.available(t)) return;
      reg = await kind.start({ htpasswd: user });
      const env = { DOCKER_CONFIG: join(home, 'docker') };
      const src = join(home, 'src');
      await mkdir(src);
      await writeFile(join(src, 'secret-free.txt'), 'payload');
      const ref = `${reg.host}/private/app:v1`;

      const anonymous = await lading(['push', ref, 'secret-free.txt', '--json'], { cwd: src, env });
      assert.equal(anonymous.code, 1);
      assert.equal(anonymous.json.error.code, 'E_UNAUTHORIZED');
      assert.match(anonymous.json.error.hint, /lading login/);

      const wrong = await lading(['login', reg.host, '-u', user.user, '--password-stdin', '--json'], { env, input: 'not-the-password\n' });
      assert.equal(wrong.code, 1);
      assert.equal(wrong.json.error.code, 'E_UNAUTHORIZED');
      assert.ok(!wrong.stdout.includes('not-the-password') && !wrong.stderr.includes('not-the-password'));
      await assert.rejects(stat(join(home, 'docker', 'config.json')), 'a refused login stores nothing');

      const noStdin = await lading(['login', reg.host, '-u', user.user]);
      assert.equal(noStdin.code, 2);

      const ok = await lading(['login', reg.host, '-u', user.user, '--password-stdin'], { env, input: `${user.password}\n` });
      assert.equal(ok.code, 0, ok.stderr);
      assert.ok(!ok.stdout.includes(user.password) && !ok.stderr.includes(user.password));
      const configPath = join(home, 'docker', 'config.json');
      assert.equal((await stat(configPath)).mode & 0o777, 0o600);
      const config = JSON.parse(await readFile(configPath, 'utf8'));
      assert.equal(Buffer.from(config.auths[reg.host].auth, 'base64').toString(), `${user.user}:${user.password}`);

      const pushed = await lading(['push', ref, 'secret-free.txt', '--json'], { cwd: src, env });
      assert.equal(pushed.code, 0, pushed.stderr);
      const out = join(home, 'out');
      const pulled = await lading(['pull', ref, '-o', out], { env });
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(await readFile(join(out, 'secret-free.txt'), 'utf8'), 'payload');
      for (const r of [pushed, pulled]) assert.ok(!r.stdout.includes(user.password) && !r.stderr.includes(user.password));

      const out2 = await lading(['logout', reg.host], { env });
      assert.equal(out2.code, 0, out2.stderr);
      assert.equal(JSON.parse(await readFile(configPath, 'utf8')).auths?.[reg.host], undefined);
      const after = await lading(['pull', ref, '-o', join(home, 'out2'), '--json'], { env });
      assert.equal(after.json.error.code, 'E_UNAUTHORIZED');
    });
  });
}
