/**
 * `lading serve` as the schema authority for typed artifacts, end to end over loopback: the real CLI
 * server, user families from --families and LADING_FAMILIES, and raw HTTP pushes (no lading client, so
 * nothing is validated before the server sees it).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'undici';
import { Families } from '../src/artifact/family.js';
import { INVALID_ENVELOPES, VALID_ENVELOPES, type InvalidEnvelopeCase } from '../src/artifact/invalid-envelopes.js';
import { digestOf } from '../src/oci/digest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';
import { killAllChildren, startServeChild, type ServeChild } from './support/child-process.js';
import { lading } from './support/cli.js';

/** A few of our own for the user family, beside the shared table (which covers the built-ins). */
const OWN_INVALID: InvalidEnvelopeCase[] = [
  { name: 'widget teeth missing', family: 'widget', envelope: envelope('widget', {}), path: 'spec.teeth', message: 'is required' },
  { name: 'widget teeth a string', family: 'widget', envelope: envelope('widget', { teeth: 'many' }), path: 'spec.teeth', message: 'must be integer' },
];

function envelope(kind: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: 'lading.dev/v1', kind, metadata: { name: 'thing', version: '1.2.3' }, spec };
}

const WIDGET_FAMILY = `
apiVersion: lading.dev/v1
kind: Family
metadata:
  name: widget
  description: widgets, for the server tests
spec:
  artifactType: application/vnd.example.widget.v1
  configMediaType: application/vnd.example.widget.config.v1+json
  mount:
    mountable: false
  infer:
    pathSegments: [widgets]
  variants: none
  schema:
    type: object
    required: [teeth]
    properties:
      teeth:
        type: integer
        minimum: 1
`;

const GIZMO_FAMILY = JSON.stringify({
  apiVersion: 'lading.dev/v1',
  kind: 'Family',
  metadata: { name: 'gizmo', description: 'gizmos, read through LADING_FAMILIES' },
  spec: {
    artifactType: 'application/vnd.example.gizmo.v1',
    configMediaType: 'application/vnd.example.gizmo.config.v1+json',
    schema: { type: 'object' },
  },
});

interface Answer {
  status: number;
  body: string;
  error?: { code: string; message: string; detail?: any };
}

describe('lading serve: schema authority and /ext/v1/types', () => {
  let work: string;
  let server: ServeChild;
  const families = new Map<string, { artifactType: string; configMediaType: string }>();

  async function send(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Answer> {
    const res = await request(`${server.url}${path}`, { method: method as 'GET', headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.body.text();
    let error: Answer['error'];
    try {
      error = (JSON.parse(text) as { errors?: Answer['error'][] }).errors?.[0];
    } catch {
      error = undefined;
    }
    return { status: res.statusCode, body: text, ...(error ? { error } : {}) };
  }

  async function pushBlob(repo: string, data: Buffer): Promise<string> {
    const digest = digestOf(data);
    const a = await send('POST', `/v2/${repo}/blobs/uploads/?digest=${digest}`, data, { 'content-type': 'application/octet-stream' });
    assert.equal(a.status, 201, a.body);
    return digest;
  }

  /** Pushes `config` as the config blob of a one-layer manifest tagged `tag`; the manifest PUT's answer. */
  async function pushManifest(repo: string, tag: string, config: Buffer, configMediaType: string, artifactType?: string): Promise<Answer> {
    const digest = await pushBlob(repo, config);
    await pushBlob(repo, Buffer.from('{}'));
    const manifest = {
      schemaVersion: 2,
      mediaType: MediaType.ImageManifest,
      ...(artifactType ? { artifactType } : {}),
      config: { mediaType: configMediaType, digest, size: config.length },
      layers: [{ mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size }],
    };
    return send('PUT', `/v2/${repo}/manifests/${tag}`, JSON.stringify(manifest), { 'content-type': MediaType.ImageManifest });
  }

  function pushTyped(repo: string, tag: string, familyName: string, value: unknown): Promise<Answer> {
    const f = families.get(familyName);
    assert.ok(f, `family ${familyName} is listed by the server`);
    return pushManifest(repo, tag, Buffer.from(JSON.stringify(value)), f.configMediaType, f.artifactType);
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lading-server-types-'));
    await mkdir(join(work, 'families'));
    await mkdir(join(work, 'env-families'));
    await writeFile(join(work, 'families', 'widget.yaml'), WIDGET_FAMILY);
    await writeFile(join(work, 'env-families', 'gizmo.json'), GIZMO_FAMILY);
    const saved = process.env.LADING_FAMILIES;
    // The child takes its environment when it is spawned, synchronously inside startServeChild.
    process.env.LADING_FAMILIES = join(work, 'env-families');
    let started: Promise<ServeChild>;
    try {
      started = startServeChild(join(work, 'data'), ['--families', join(work, 'families')]);
    } finally {
      if (saved === undefined) delete process.env.LADING_FAMILIES;
      else process.env.LADING_FAMILIES = saved;
    }
    server = await started;
    const listed = JSON.parse((await send('GET', '/ext/v1/types')).body) as { families: { name: string; artifactType: string; configMediaType: string }[] };
    for (const f of listed.families) families.set(f.name, f);
  });
  after(async () => {
    await killAllChildren();
    await rm(work, { recursive: true, force: true });
  });

  test('/ext/v1/types lists the built-ins and the user families, sorted, with schemas', async () => {
    const a = await send('GET', '/ext/v1/types');
    assert.equal(a.status, 200);
    const body = JSON.parse(a.body) as { families: Record<string, unknown>[] };
    assert.deepEqual(
      body.families.map((f) => f.name),
      ['bundle', 'cli', 'config', 'file', 'fileset', 'gizmo', 'model', 'pack', 'widget'],
    );
    const widget = body.families.find((f) => f.name === 'widget')!;
    assert.equal(widget.builtin, false);
    assert.equal(widget.artifactType, 'application/vnd.example.widget.v1');
    assert.deepEqual(widget.pathSegments, ['widgets']);
    assert.equal((widget.schema as { required: string[] }).required[0], 'teeth');
    assert.ok(!('source' in widget), 'the server does not tell where its family files are');
    const builtins = Families.builtin().list().map((f) => f.name).sort();
    assert.deepEqual(body.families.filter((f) => f.builtin).map((f) => f.name), builtins);
    for (const f of body.families) {
      assert.deepEqual(Object.keys(f).sort(), ['artifactType', 'builtin', 'configMediaType', 'description', 'mount', 'name', 'pathSegments', 'schema', 'variants']);
    }
    const head = await send('HEAD', '/ext/v1/types');
    assert.equal(head.status, 200);
    assert.equal(head.body, '');
    const elsewhere = await send('GET', '/ext/v2/types');
    assert.equal(elsewhere.status, 404);
    assert.equal(elsewhere.error?.code, 'NAME_UNKNOWN');
  });

  test('a valid envelope of every built-in family, and of user families, is stored', async () => {
    for (const [name, value] of Object.entries(VALID_ENVELOPES)) {
      const a = await pushTyped(`valid/${name}`, 'v1', name, value);
      assert.equal(a.status, 201, `${name}: ${a.body}`);
    }
    assert.deepEqual(Object.keys(VALID_ENVELOPES).sort(), Families.builtin().list().map((f) => f.name).sort());
    const widget = await pushTyped('acme/widgets/sprocket', 'v1', 'widget', envelope('widget', { teeth: 12 }));
    assert.equal(widget.status, 201, widget.body);
    const gizmo = await pushTyped('acme/gizmo', 'v1', 'gizmo', envelope('gizmo', { anything: true }));
    assert.equal(gizmo.status, 201, gizmo.body);
    assert.equal((await send('HEAD', '/v2/acme/widgets/sprocket/manifests/v1')).status, 200);
  });

  test('every invalid envelope is refused with MANIFEST_INVALID and its exact first issue', async () => {
    const table = [...INVALID_ENVELOPES, ...OWN_INVALID];
    assert.ok(INVALID_ENVELOPES.length > 0);
    for (const [i, entry] of table.entries()) {
      const what = `${entry.family}: ${entry.name}`;
      const a = await pushTyped(`invalid/e${i}`, 'v1', entry.family, entry.envelope);
      assert.equal(a.status, 400, `${what}: ${a.body}`);
      assert.equal(a.error?.code, 'MANIFEST_INVALID', what);
      assert.equal(a.error?.detail?.family, entry.family, what);
      assert.equal(a.error?.detail?.issues?.[0]?.path, entry.path, `${what}: ${a.body}`);
      assert.equal(a.error?.detail?.issues?.[0]?.message, entry.message, `${what}: ${a.body}`);
      const lead = entry.path ? `${entry.path}: ` : '';
      assert.equal(a.error?.message, `config does not satisfy family ${entry.family}: ${lead}${entry.message}`, what);
      // Refused means not stored: neither the tag nor the manifest.
      assert.equal((await send('HEAD', `/v2/invalid/e${i}/manifests/v1`)).status, 404, what);
    }
  });

  test('an artifactType of one family over the config of another is refused', async () => {
    const f = families.get('widget')!;
    const a = await pushManifest('mixed/up', 'v1', Buffer.from(JSON.stringify(envelope('widget', { teeth: 3 }))), f.configMediaType, families.get('cli')!.artifactType);
    assert.equal(a.status, 400);
    assert.equal(a.error?.code, 'MANIFEST_INVALID');
    assert.equal(a.error?.detail?.issues?.[0]?.path, 'artifactType');
  });

  test('unknown artifact types pass untouched, whatever their config holds', async () => {
    const garbage = Buffer.from('{{{ this is not JSON \u0000');
    const a = await pushManifest('foreign/thing', 'v1', garbage, 'application/vnd.example.unknown.config+json', 'application/vnd.example.unknown');
    assert.equal(a.status, 201, a.body);
    const b = await pushManifest('foreign/empty', 'v1', Buffer.from('{}'), EmptyJSON.mediaType, 'application/vnd.example.unknown');
    assert.equal(b.status, 201, b.body);
  });

  test('a family artifactType must carry its envelope: over an empty or foreign config it is refused', async () => {
    for (const [name, artifactType] of [['cli', families.get('cli')!.artifactType], ['widget', families.get('widget')!.artifactType.toUpperCase()]]) {
      for (const [i, [config, mt]] of ([[Buffer.from('{}'), EmptyJSON.mediaType], [Buffer.from('{}'), 'application/vnd.example.unknown.config+json']] as const).entries()) {
        const a = await pushManifest(`hollow/${name}${i}`, 'v1', config, mt, artifactType);
        assert.equal(a.status, 400, a.body);
        assert.equal(a.error?.code, 'MANIFEST_INVALID');
        assert.equal(a.error?.detail?.issues?.[0]?.path, 'artifactType');
        assert.match(a.error?.message ?? '', new RegExp(`names family ${name}`));
        assert.equal((await send('HEAD', `/v2/hollow/${name}${i}/manifests/v1`)).status, 404);
      }
    }
  });

  test('a family config media type written with parameters or another case is refused, not stored unchecked', async () => {
    const invalid = Buffer.from(JSON.stringify(envelope('widget', { teeth: 'many' })));
    const f = families.get('widget')!;
    const cases = [`${f.configMediaType}; charset=utf-8`, f.configMediaType.toUpperCase(), `${families.get('cli')!.configMediaType};charset=utf-8`];
    for (const [i, mt] of cases.entries()) {
      for (const artifactType of [undefined, f.artifactType]) {
        const repo = `sly/c${i}${artifactType ? 't' : ''}`;
        const a = await pushManifest(repo, 'v1', invalid, mt, artifactType);
        assert.equal(a.status, 400, `${mt}: ${a.body}`);
        assert.equal(a.error?.code, 'MANIFEST_INVALID');
        assert.equal(a.error?.detail?.issues?.[0]?.path, 'config.mediaType', a.body);
        assert.equal((await send('HEAD', `/v2/${repo}/manifests/v1`)).status, 404);
      }
    }
  });

  test('an index whose artifactType names a family is not read through', async () => {
    const entry = await pushTyped('indexed/tool', 'linux', 'cli', envelope('cli', { executable: 'bin/tool' }));
    assert.equal(entry.status, 201, entry.body);
    const head = await request(`${server.url}/v2/indexed/tool/manifests/linux`, { method: 'HEAD', headers: { accept: MediaType.ImageManifest } });
    await head.body.dump();
    const digest = head.headers['docker-content-digest'] as string;
    const size = Number(head.headers['content-length']);
    const index = {
      schemaVersion: 2,
      mediaType: MediaType.ImageIndex,
      artifactType: families.get('cli')!.artifactType,
      manifests: [{ mediaType: MediaType.ImageManifest, digest, size, platform: { os: 'linux', architecture: 'amd64' } }],
    };
    const a = await send('PUT', '/v2/indexed/tool/manifests/latest', JSON.stringify(index), { 'content-type': MediaType.ImageIndex });
    assert.equal(a.status, 201, a.body);
  });
});

describe('lading serve: family files that do not load', () => {
  let work: string;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'lading-server-types-bad-'));
    await mkdir(join(work, 'bad'));
    // No schema, and an artifactType that is no media type.
    await writeFile(join(work, 'bad', 'broken.yaml'), 'name: broken\nartifactType: not a media type\n');
  });
  after(async () => {
    await rm(work, { recursive: true, force: true });
  });

  test('--families with an invalid file stops serve at start with the cause', async () => {
    const started = Date.now();
    const r = await lading(['serve', '--addr', '127.0.0.1:0', '--root', join(work, 'data'), '--families', join(work, 'bad')], { env: { LADING_FAMILIES: '' } });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^Error: .*broken\.yaml/m);
    assert.ok(Date.now() - started < 20_000);
  });

  test('so does LADING_FAMILIES, and --json reports E_FAMILY_INVALID', async () => {
    const r = await lading(['serve', '--addr', '127.0.0.1:0', '--root', join(work, 'data'), '--json'], { env: { LADING_FAMILIES: join(work, 'bad') } });
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.json?.error?.code, 'E_FAMILY_INVALID');
  });
});
