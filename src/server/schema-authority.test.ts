import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import bcrypt from 'bcryptjs';
import { Families, type Family } from '../artifact/family.js';
import { digestOf } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { ParsedManifest } from '../oci/manifest-types.js';
import { EmptyJSON, MediaType } from '../oci/mediatype.js';
import { createRegistryHandler } from './app.js';
import { HtpasswdAuthenticator, parseHtpasswd } from './auth.js';
import { OciError } from './errors.js';
import { MAX_FAMILY_CONFIG_BYTES, SchemaAuthority, typesListing, type ConfigBlobs, type FamilySet } from './schema-authority.js';
import { FsDriver } from './storage/fs-driver.js';
import { RegistryStore } from './storage/store.js';

function family(name: string, schema: Record<string, unknown>): Family {
  return {
    name,
    description: `${name} for tests`,
    artifactType: `application/vnd.test.${name}.v1`,
    configMediaType: `application/vnd.test.${name}.config.v1+json`,
    schema,
    mount: { mountable: false },
    pathSegments: [],
    variants: 'none',
    builtin: false,
    source: `/secret/place/${name}.yaml`,
  };
}

const widget = family('widget', { type: 'object', required: ['size'], properties: { size: { type: 'integer' } } });
const gadget = family('gadget', { type: 'object' });
const testFamilies: FamilySet = {
  list: () => [widget, gadget],
  byArtifactType: (t) => [widget, gadget].find((f) => f.artifactType === t),
  byConfigMediaType: (t) => [widget, gadget].find((f) => f.configMediaType === t),
};

function envelope(kind: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'lading.dev/v1', kind, metadata: { name: 'thing', version: '1.0.0' }, spec };
}

/** Config blobs held in memory, counting how often one is read. */
class Blobs implements ConfigBlobs {
  reads = 0;
  readonly held = new Map<string, Buffer>();
  put(bytes: Buffer | string, mediaType: string): Descriptor {
    const b = Buffer.from(bytes);
    const digest = digestOf(b);
    this.held.set(digest, b);
    return { mediaType, digest, size: b.length };
  }
  async readBlob(_repo: string, digest: string): Promise<{ size: number; stream: Readable } | undefined> {
    this.reads++;
    const b = this.held.get(digest);
    return b ? { size: b.length, stream: Readable.from([b]) } : undefined;
  }
}

function manifest(config: Descriptor, artifactType?: string): ParsedManifest {
  return {
    kind: 'manifest',
    mediaType: MediaType.ImageManifest,
    manifest: { schemaVersion: 2, mediaType: MediaType.ImageManifest, ...(artifactType ? { artifactType } : {}), config, layers: [] },
  };
}

async function refusal(p: Promise<unknown>): Promise<OciError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OciError, `expected an OciError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

describe('SchemaAuthority', () => {
  const authority = new SchemaAuthority(testFamilies);

  test('a valid family config passes', async () => {
    const blobs = new Blobs();
    const config = blobs.put(JSON.stringify(envelope('widget', { size: 3 })), widget.configMediaType);
    await authority.check(blobs, 'r', manifest(config, widget.artifactType));
    await authority.check(blobs, 'r', manifest(config));
    assert.equal(blobs.reads, 2);
  });

  test('an invalid config is refused with every issue, the first in the message', async () => {
    const blobs = new Blobs();
    const config = blobs.put(JSON.stringify(envelope('widget', { size: 'big' })), widget.configMediaType);
    const err = await refusal(authority.check(blobs, 'r', manifest(config)));
    assert.equal(err.code, 'MANIFEST_INVALID');
    assert.equal(err.status, 400);
    const detail = err.detail as { family: string; issues: { path: string; message: string }[] };
    assert.equal(detail.family, 'widget');
    assert.equal(detail.issues[0]!.path, 'spec.size');
    assert.equal(err.message, `config does not satisfy family widget: spec.size: ${detail.issues[0]!.message}`);
  });

  test('a config of the wrong kind, or not JSON, is refused', async () => {
    const blobs = new Blobs();
    const wrongKind = blobs.put(JSON.stringify(envelope('gadget', { size: 1 })), widget.configMediaType);
    const e1 = await refusal(authority.check(blobs, 'r', manifest(wrongKind)));
    assert.equal(e1.code, 'MANIFEST_INVALID');
    assert.match(e1.message, /^config does not satisfy family widget: kind/);
    const garbage = blobs.put('{"apiVersion": ', widget.configMediaType);
    const e2 = await refusal(authority.check(blobs, 'r', manifest(garbage)));
    assert.match(e2.message, /^config does not satisfy family widget: is not JSON/);
    const notUtf8 = blobs.put(Buffer.from([0x7b, 0xff, 0x7d]), widget.configMediaType);
    assert.match((await refusal(authority.check(blobs, 'r', manifest(notUtf8)))).message, /not UTF-8/);
  });

  test('an artifactType of one family over the config of another is refused before any read', async () => {
    const blobs = new Blobs();
    const config = blobs.put(JSON.stringify(envelope('widget', { size: 3 })), widget.configMediaType);
    const err = await refusal(authority.check(blobs, 'r', manifest(config, gadget.artifactType)));
    assert.equal(err.code, 'MANIFEST_INVALID');
    assert.deepEqual((err.detail as { artifactTypeFamily: string }).artifactTypeFamily, 'gadget');
    assert.equal(blobs.reads, 0);
  });

  test('unknown config media types and indexes are never read', async () => {
    const blobs = new Blobs();
    const junk = blobs.put('not json at all', 'application/vnd.example.whatever+json');
    await authority.check(blobs, 'r', manifest(junk));
    await authority.check(blobs, 'r', manifest(junk, 'application/vnd.example.other'));
    const index: ParsedManifest = {
      kind: 'index',
      mediaType: MediaType.ImageIndex,
      manifest: { schemaVersion: 2, mediaType: MediaType.ImageIndex, artifactType: widget.artifactType, manifests: [] },
    };
    await authority.check(blobs, 'r', index);
    assert.equal(blobs.reads, 0);
  });

  test('a family artifactType over a config that is no family envelope (an empty one included) is refused unread', async () => {
    const blobs = new Blobs();
    const junk = blobs.put('not json at all', 'application/vnd.example.whatever+json');
    const empty = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };
    for (const [config, artifactType] of [
      [junk, widget.artifactType],
      [empty, widget.artifactType],
      [empty, widget.artifactType.toUpperCase()],
      [empty, `${widget.artifactType}; x=y`],
    ] as const) {
      const err = await refusal(authority.check(blobs, 'r', manifest(config, artifactType)));
      assert.equal(err.code, 'MANIFEST_INVALID');
      assert.equal(err.status, 400);
      const detail = err.detail as { artifactTypeFamily: string; issues: { path: string; message: string }[] };
      assert.equal(detail.artifactTypeFamily, 'widget');
      assert.equal(detail.issues[0]!.path, 'artifactType');
      assert.match(err.message, /names family widget, whose artifacts carry a widget envelope as their config/);
      assert.ok(err.message.includes(config.mediaType), err.message);
    }
    assert.equal(blobs.reads, 0);
  });

  test('a family config media type written in another case or with parameters is refused unread', async () => {
    const blobs = new Blobs();
    for (const mt of [`${widget.configMediaType}; charset=utf-8`, widget.configMediaType.toUpperCase(), ` ${widget.configMediaType}`]) {
      // Even a config that would satisfy the family: readers disagree on whether such a type is typed.
      const config = blobs.put(JSON.stringify(envelope('widget', { size: 3 })), mt);
      for (const artifactType of [undefined, widget.artifactType, 'application/vnd.example.other']) {
        const err = await refusal(authority.check(blobs, 'r', manifest(config, artifactType)));
        assert.equal(err.code, 'MANIFEST_INVALID');
        const detail = err.detail as { family: string; issues: { path: string; message: string }[] };
        assert.equal(detail.family, 'widget');
        assert.equal(detail.issues[0]!.path, 'config.mediaType');
        assert.match(err.message, new RegExp(`must be written exactly "${widget.configMediaType.replace(/[.+]/g, '\\$&')}"`));
      }
    }
    assert.equal(blobs.reads, 0);
  });

  test('a family artifactType in another case or with parameters over its own config is checked like the exact one', async () => {
    const blobs = new Blobs();
    const good = blobs.put(JSON.stringify(envelope('widget', { size: 3 })), widget.configMediaType);
    await authority.check(blobs, 'r', manifest(good, widget.artifactType.toUpperCase()));
    await authority.check(blobs, 'r', manifest(good, `${widget.artifactType}; v=1`));
    const bad = blobs.put(JSON.stringify(envelope('widget', { size: 'big' })), widget.configMediaType);
    const err = await refusal(authority.check(blobs, 'r', manifest(bad, widget.artifactType.toUpperCase())));
    assert.match(err.message, /^config does not satisfy family widget: spec\.size/);
    // And one naming another family, however written, is still a mismatch.
    const mixed = await refusal(authority.check(blobs, 'r', manifest(good, gadget.artifactType.toUpperCase())));
    assert.equal((mixed.detail as { artifactTypeFamily: string }).artifactTypeFamily, 'gadget');
  });

  test('an oversized family config is refused from its descriptor, unread', async () => {
    const blobs = new Blobs();
    const desc = { mediaType: widget.configMediaType, digest: digestOf('x'), size: MAX_FAMILY_CONFIG_BYTES + 1 };
    const err = await refusal(authority.check(blobs, 'r', manifest(desc)));
    assert.equal(err.code, 'MANIFEST_INVALID');
    assert.equal((err.detail as { limit: number }).limit, MAX_FAMILY_CONFIG_BYTES);
    assert.equal(blobs.reads, 0);
  });

  test('a config descriptor whose size is not the blob size is refused', async () => {
    const blobs = new Blobs();
    const config = blobs.put(JSON.stringify(envelope('widget', { size: 3 })), widget.configMediaType);
    const err = await refusal(authority.check(blobs, 'r', manifest({ ...config, size: config.size - 1 })));
    assert.equal(err.code, 'MANIFEST_INVALID');
    assert.equal((err.detail as { issues: { path: string }[] }).issues[0]!.path, 'config.size');
  });

  test('a missing config blob is MANIFEST_BLOB_UNKNOWN', async () => {
    const desc = { mediaType: widget.configMediaType, digest: digestOf('absent'), size: 6 };
    assert.equal((await refusal(authority.check(new Blobs(), 'r', manifest(desc)))).code, 'MANIFEST_BLOB_UNKNOWN');
  });

  test('the types listing is sorted by name and names no server path', () => {
    const listed = typesListing(testFamilies);
    assert.deepEqual(listed.map((f) => f.name), ['gadget', 'widget']);
    assert.ok(listed.every((f) => !('source' in f)));
    assert.deepEqual(listed[1]!.schema, widget.schema);
    const body = JSON.parse(authority.types().toString('utf8')) as { families: unknown[] };
    assert.deepEqual(body.families, listed);
  });
});

describe('registry handler as schema authority (built-in families)', () => {
  let server: Server;
  let base: string;
  let dir: string;
  const api = (path: string, init?: RequestInit) => fetch(`${base}${path}`, init);

  async function pushBlob(repo: string, data: Buffer | string): Promise<string> {
    const digest = digestOf(Buffer.from(data));
    const res = await api(`/v2/${repo}/blobs/uploads/?digest=${digest}`, { method: 'POST', body: Buffer.from(data) });
    assert.equal(res.status, 201, await res.text());
    return digest;
  }

  async function pushTyped(repo: string, tag: string, config: string, configMediaType: string, artifactType?: string): Promise<Response> {
    const digest = await pushBlob(repo, config);
    await pushBlob(repo, Buffer.from('{}'));
    const body = {
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      ...(artifactType ? { artifactType } : {}),
      config: { mediaType: configMediaType, digest, size: Buffer.byteLength(config) },
      layers: [{ mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size }],
    };
    return api(`/v2/${repo}/manifests/${tag}`, { method: 'PUT', body: JSON.stringify(body), headers: { 'content-type': MediaType.ImageManifest } });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-schema-authority-'));
    const store = new RegistryStore(new FsDriver(dir));
    server = createServer(createRegistryHandler(store, { families: Families.builtin() }));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    const addr = server.address() as { port: number };
    base = `http://127.0.0.1:${addr.port}`;
  });
  after(async () => {
    await new Promise<void>((done) => server.close(() => done()));
    await rm(dir, { recursive: true, force: true });
  });

  test('a valid cli envelope is stored', async () => {
    const config = JSON.stringify(envelope('cli', { executable: 'bin/tool' }));
    const res = await pushTyped('tools/tool', 'v1', config, 'application/vnd.lading.cli.config.v1+json', 'application/vnd.lading.cli.v1');
    assert.equal(res.status, 201, await res.text());
    assert.equal((await api('/v2/tools/tool/manifests/v1', { method: 'HEAD' })).status, 200);
  });

  test('an invalid cli envelope is refused and nothing is stored', async () => {
    const config = JSON.stringify(envelope('cli', { executable: 42 }));
    const res = await pushTyped('tools/bad', 'v1', config, 'application/vnd.lading.cli.config.v1+json', 'application/vnd.lading.cli.v1');
    assert.equal(res.status, 400);
    const body = (await res.json()) as { errors: { code: string; message: string; detail: { family: string; issues: { path: string }[] } }[] };
    assert.equal(body.errors[0]!.code, 'MANIFEST_INVALID');
    assert.equal(body.errors[0]!.detail.family, 'cli');
    assert.equal(body.errors[0]!.detail.issues[0]!.path, 'spec.executable');
    assert.match(body.errors[0]!.message, /^config does not satisfy family cli: spec\.executable: /);
    assert.equal((await api('/v2/tools/bad/manifests/v1', { method: 'HEAD' })).status, 404);
    const tags = (await (await api('/v2/tools/bad/tags/list')).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, []);
  });

  test('a cli config media type with parameters or in another case is refused, not stored unchecked', async () => {
    const config = JSON.stringify(envelope('cli', { executable: 42 }));
    for (const [i, mt] of ['application/vnd.lading.cli.config.v1+json; charset=utf-8', 'Application/Vnd.Lading.Cli.Config.V1+JSON'].entries()) {
      const res = await pushTyped(`tools/sly${i}`, 'v1', config, mt, 'application/vnd.lading.cli.v1');
      assert.equal(res.status, 400);
      const body = (await res.json()) as { errors: { code: string; message: string; detail: { issues: { path: string }[] } }[] };
      assert.equal(body.errors[0]!.code, 'MANIFEST_INVALID');
      assert.equal(body.errors[0]!.detail.issues[0]!.path, 'config.mediaType');
      assert.match(body.errors[0]!.message, /application\/vnd\.lading\.cli\.config\.v1\+json/);
      assert.equal((await api(`/v2/tools/sly${i}/manifests/v1`, { method: 'HEAD' })).status, 404);
    }
  });

  test('a cli artifactType over an empty config is refused', async () => {
    const res = await pushTyped('tools/hollow', 'v1', '{}', EmptyJSON.mediaType, 'application/vnd.lading.cli.v1');
    assert.equal(res.status, 400);
    const body = (await res.json()) as { errors: { code: string; detail: { issues: { path: string }[] } }[] };
    assert.equal(body.errors[0]!.code, 'MANIFEST_INVALID');
    assert.equal(body.errors[0]!.detail.issues[0]!.path, 'artifactType');
    assert.equal((await api('/v2/tools/hollow/manifests/v1', { method: 'HEAD' })).status, 404);
  });

  test('an unknown config media type passes unread, even as garbage', async () => {
    const res = await pushTyped('other/thing', 'v1', '\u0000 not json', 'application/vnd.example.config+json', 'application/vnd.example.thing');
    assert.equal(res.status, 201, await res.text());
  });

  test('GET and HEAD /ext/v1/types list the built-ins; other /ext paths are 404', async () => {
    const res = await api('/ext/v1/types');
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/json');
    const body = (await res.json()) as { families: { name: string; builtin: boolean; schema: unknown; configMediaType: string }[] };
    assert.deepEqual(body.families.map((f) => f.name), ['bundle', 'cli', 'config', 'file', 'fileset', 'model', 'pack']);
    assert.ok(body.families.every((f) => f.builtin && typeof f.schema === 'object' && f.configMediaType === `application/vnd.lading.${f.name}.config.v1+json`));
    const head = await api('/ext/v1/types', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get('content-length'), res.headers.get('content-length'));
    assert.equal((await api('/ext/v1/types', { method: 'POST' })).status, 405);
    const other = await api('/ext/v1/nothing');
    assert.equal(other.status, 404);
    assert.equal(((await other.json()) as { errors: { code: string }[] }).errors[0]!.code, 'NAME_UNKNOWN');
    assert.equal((await api('/v2/')).status, 200);
  });
});

describe('/ext/v1/types behind basic auth', () => {
  let server: Server;
  let base: string;
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-schema-authority-auth-'));
    const auth = new HtpasswdAuthenticator(parseHtpasswd(`ann:${bcrypt.hashSync('secret', 5)}\n`));
    server = createServer(createRegistryHandler(new RegistryStore(new FsDriver(join(dir, 'data'))), { auth }));
    await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
    base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  });
  after(async () => {
    await new Promise<void>((done) => server.close(() => done()));
    await rm(dir, { recursive: true, force: true });
  });

  test('needs an authenticated user, any user', async () => {
    const anonymous = await fetch(`${base}/ext/v1/types`);
    assert.equal(anonymous.status, 401);
    assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /);
    const authed = await fetch(`${base}/ext/v1/types`, { headers: { authorization: `Basic ${Buffer.from('ann:secret').toString('base64')}` } });
    assert.equal(authed.status, 200);
    assert.equal(((await authed.json()) as { families: unknown[] }).families.length, 7);
  });
});
