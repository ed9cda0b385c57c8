import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLadingError, type ErrorCode } from '../errors.js';
import type { Descriptor } from './descriptor.js';
import { digestOf } from './digest.js';
import { MAX_MANIFEST_BYTES } from './manifest-types.js';
import {
  buildImageIndex,
  buildImageManifest,
  encodeJSON,
  manifestChildren,
  parseManifest,
  validateDescriptor,
} from './manifest.js';
import { EmptyJSON, MediaType } from './mediatype.js';

const blob = (text: string, mediaType: string = MediaType.ImageLayerGzip): Descriptor => ({
  mediaType,
  digest: digestOf(text),
  size: Buffer.byteLength(text),
});
const config = blob('{"architecture":"amd64","os":"linux"}', MediaType.ImageConfig);
const layer0 = blob('layer 0');
const layer1 = blob('layer 1');
const child = blob('{"child":true}', MediaType.ImageManifest);
const empty: Descriptor = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };
const toBytes = (v: unknown) => Buffer.from(JSON.stringify(v));

const ociManifest = () => ({
  schemaVersion: 2,
  mediaType: MediaType.ImageManifest,
  config,
  layers: [layer0, layer1],
});
const ociIndex = () => ({
  schemaVersion: 2,
  mediaType: MediaType.ImageIndex,
  manifests: [{ ...child, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }],
});

test('well-formed manifests and indexes', async (t) => {
  const cases: Array<{ name: string; body: unknown; given?: string; kind: 'manifest' | 'index'; mediaType: string; children: number }> = [
    { name: 'OCI manifest', body: ociManifest(), kind: 'manifest', mediaType: MediaType.ImageManifest, children: 3 },
    {
      name: 'OCI manifest with Content-Type parameters',
      body: ociManifest(),
      given: 'application/vnd.oci.image.manifest.v1+json; charset=utf-8',
      kind: 'manifest',
      mediaType: MediaType.ImageManifest,
      children: 3,
    },
    {
      name: 'OCI manifest without mediaType, inferred from config',
      body: { schemaVersion: 2, config, layers: [layer0] },
      kind: 'manifest',
      mediaType: MediaType.ImageManifest,
      children: 2,
    },
    {
      name: 'OCI manifest without mediaType, given by the descriptor',
      body: { schemaVersion: 2, config, layers: [] },
      given: MediaType.ImageManifest,
      kind: 'manifest',
      mediaType: MediaType.ImageManifest,
      children: 1,
    },
    {
      name: 'artifact with empty config, subject, annotations, unknown fields',
      body: {
        schemaVersion: 2,
        mediaType: MediaType.ImageManifest,
        artifactType: 'application/vnd.example.sbom+json',
        config: { ...EmptyJSON },
        layers: [{ ...layer0, annotations: { 'org.opencontainers.image.title': 'sbom.json' } }],
        subject: child,
        annotations: { a: 'b' },
        somethingNew: { ignored: true },
      },
      kind: 'manifest',
      mediaType: MediaType.ImageManifest,
      children: 2,
    },
    { name: 'OCI index', body: ociIndex(), kind: 'index', mediaType: MediaType.ImageIndex, children: 1 },
    {
      name: 'OCI index without mediaType, inferred from manifests',
      body: { schemaVersion: 2, manifests: [child, child] },
      kind: 'index',
      mediaType: MediaType.ImageIndex,
      children: 2,
    },
    {
      name: 'artifact index whose entries are blobs',
      body: { schemaVersion: 2, mediaType: MediaType.ImageIndex, artifactType: 'application/vnd.example.set', manifests: [layer0, layer1] },
      kind: 'index',
      mediaType: MediaType.ImageIndex,
      children: 2,
    },
    {
      name: 'Docker schema2 manifest',
      body: {
        schemaVersion: 2,
        mediaType: MediaType.DockerManifest,
        config: { ...config, mediaType: MediaType.DockerConfig },
        layers: [{ ...layer0, mediaType: MediaType.DockerLayerGzip, urls: ['https://example.com/l0'] }],
      },
      kind: 'manifest',
      mediaType: MediaType.DockerManifest,
      children: 2,
    },
    {
      name: 'Docker manifest list',
      body: {
        schemaVersion: 2,
        mediaType: MediaType.DockerManifestList,
        manifests: [
          { ...child, mediaType: MediaType.DockerManifest, platform: { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763.1', 'os.features': ['win32k'] } },
        ],
      },
      kind: 'index',
      mediaType: MediaType.DockerManifestList,
      children: 1,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, () => {
      const p = parseManifest(toBytes(c.body), c.given);
      assert.equal(p.kind, c.kind);
      assert.equal(p.mediaType, c.mediaType);
      assert.equal(p.manifest.schemaVersion, 2);
      const children = manifestChildren(p);
      assert.equal(children.length, c.children);
      for (const d of children) assert.match(d.digest, /^sha256:[0-9a-f]{64}$/);
    });
  }
});

test('parsed view keeps spec fields and drops unknown ones', () => {
  const body = { ...ociManifest(), subject: child, annotations: { k: 'v' }, extra: 1 };
  body.layers = [{ ...layer0, extra: 'x' } as Descriptor, layer1];
  const p = parseManifest(toBytes(body));
  assert.equal(p.kind, 'manifest');
  if (p.kind !== 'manifest') return;
  assert.deepEqual(p.manifest.subject, child);
  assert.deepEqual(p.manifest.annotations, { k: 'v' });
  assert.deepEqual(p.manifest.layers[0], layer0);
  assert.equal('extra' in p.manifest, false);
});

test('an annotation named __proto__ stays data', () => {
  const text = JSON.stringify(ociManifest()).replace(/}$/, ',"annotations":{"__proto__":"x"}}');
  const p = parseManifest(Buffer.from(text));
  assert.equal(Object.getPrototypeOf(p.manifest.annotations), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(p.manifest.annotations, '__proto__')?.value, 'x');
});

type Bad = { name: string; bytes: Uint8Array; given?: string; code: ErrorCode; path?: string | RegExp };
const bad = (name: string, body: unknown, code: ErrorCode, path?: string | RegExp, given?: string): Bad => ({
  name,
  bytes: typeof body === 'string' ? Buffer.from(body) : toBytes(body),
  code,
  ...(path === undefined ? {} : { path }),
  ...(given === undefined ? {} : { given }),
});
const m = (patch: Record<string, unknown>) => ({ ...ociManifest(), ...patch });
const withLayer = (i: number, patch: Record<string, unknown>) => {
  const layers: unknown[] = [layer0, layer1];
  layers[i] = { ...(layers[i] as object), ...patch };
  return m({ layers });
};

const malformed: Bad[] = [
  { name: 'too large', bytes: Buffer.alloc(MAX_MANIFEST_BYTES + 1, 0x20), code: 'E_MANIFEST_TOO_LARGE' },
  bad('not JSON', '{"schemaVersion": 2,', 'E_JSON_INVALID'),
  { name: 'not UTF-8', bytes: Buffer.from([0x7b, 0xff, 0x7d]), code: 'E_JSON_INVALID' },
  bad('byte order mark', `\ufeff${JSON.stringify(ociManifest())}`, 'E_JSON_INVALID'),
  bad('array', [ociManifest()], 'E_MANIFEST_INVALID', 'manifest'),
  bad('null', 'null', 'E_MANIFEST_INVALID', 'manifest'),
  bad('schemaVersion missing', m({ schemaVersion: undefined }), 'E_MANIFEST_INVALID', 'schemaVersion'),
  bad('schemaVersion 3', m({ schemaVersion: 3 }), 'E_MANIFEST_INVALID', 'schemaVersion'),
  bad('schemaVersion "2"', m({ schemaVersion: '2' }), 'E_MANIFEST_INVALID', 'schemaVersion'),
  bad('Docker schema1 body', { schemaVersion: 1, name: 'x', tag: 'y', fsLayers: [] }, 'E_MEDIA_TYPE_UNSUPPORTED'),
  bad('Docker schema1 content type', ociManifest(), 'E_MEDIA_TYPE_UNSUPPORTED', undefined, 'application/vnd.docker.distribution.manifest.v1+prettyjws'),
  bad('unknown given media type', ociManifest(), 'E_MEDIA_TYPE_UNSUPPORTED', undefined, 'application/json'),
  bad('unknown body media type', m({ mediaType: 'application/vnd.oci.artifact.manifest.v1+json' }), 'E_MEDIA_TYPE_UNSUPPORTED'),
  bad('body mediaType not a string', m({ mediaType: 7 }), 'E_MANIFEST_INVALID', 'mediaType'),
  bad('body and given media types differ', ociManifest(), 'E_MANIFEST_INVALID', 'mediaType', MediaType.ImageIndex),
  bad('neither config nor manifests', { schemaVersion: 2, layers: [] }, 'E_MANIFEST_INVALID', 'mediaType'),
  bad('both config and manifests, no mediaType', { schemaVersion: 2, config, layers: [], manifests: [] }, 'E_MANIFEST_INVALID', 'mediaType'),
  bad('index carrying layers', { ...ociIndex(), layers: [layer0] }, 'E_MANIFEST_INVALID', 'layers'),
  bad('manifest carrying manifests', m({ manifests: [child] }), 'E_MANIFEST_INVALID', 'manifests'),
  bad('config missing', m({ config: undefined }), 'E_MANIFEST_INVALID', 'config'),
  bad('config not an object', m({ config: 'sha256:abc' }), 'E_MANIFEST_INVALID', 'config'),
  bad('layers missing', m({ layers: undefined }), 'E_MANIFEST_INVALID', 'layers'),
  bad('layers not an array', m({ layers: { 0: layer0 } }), 'E_MANIFEST_INVALID', 'layers'),
  bad('manifests missing', { schemaVersion: 2, mediaType: MediaType.ImageIndex }, 'E_MANIFEST_INVALID', 'manifests'),
  bad('manifests not an array', { ...ociIndex(), manifests: child }, 'E_MANIFEST_INVALID', 'manifests'),
  bad('layer media type invalid', withLayer(1, { mediaType: 'not a media type' }), 'E_MANIFEST_INVALID', 'layers[1].mediaType'),
  bad('layer media type missing', withLayer(0, { mediaType: undefined }), 'E_MANIFEST_INVALID', 'layers[0].mediaType'),
  bad('layer digest invalid', withLayer(1, { digest: 'sha256:abc' }), 'E_MANIFEST_INVALID', 'layers[1].digest'),
  bad('layer digest upper case', withLayer(0, { digest: layer0.digest.toUpperCase() }), 'E_MANIFEST_INVALID', 'layers[0].digest'),
  bad('layer digest unknown algorithm', withLayer(0, { digest: `md5:${'a'.repeat(32)}` }), 'E_MANIFEST_INVALID', 'layers[0].digest'),
  bad('size negative', withLayer(0, { size: -1 }), 'E_MANIFEST_INVALID', 'layers[0].size'),
  bad('size fractional', withLayer(0, { size: 1.5 }), 'E_MANIFEST_INVALID', 'layers[0].size'),
  bad('size a string', withLayer(1, { size: '7' }), 'E_MANIFEST_INVALID', 'layers[1].size'),
  bad('size beyond safe integers', withLayer(1, { size: 2 ** 53 }), 'E_MANIFEST_INVALID', 'layers[1].size'),
  bad('annotation value not a string', withLayer(0, { annotations: { a: 1 } }), 'E_MANIFEST_INVALID', 'layers[0].annotations["a"]'),
  bad('annotations an array', m({ annotations: ['a'] }), 'E_MANIFEST_INVALID', 'annotations'),
  bad('urls not strings', withLayer(0, { urls: [1] }), 'E_MANIFEST_INVALID', 'layers[0].urls[0]'),
  bad('urls not an array', withLayer(0, { urls: 'https://x' }), 'E_MANIFEST_INVALID', 'layers[0].urls'),
  bad('platform without os', { ...ociIndex(), manifests: [{ ...child, platform: { architecture: 'amd64' } }] }, 'E_MANIFEST_INVALID', 'manifests[0].platform.os'),
  bad('platform architecture not a string', { ...ociIndex(), manifests: [child, { ...child, platform: { os: 'linux', architecture: 1 } }] }, 'E_MANIFEST_INVALID', 'manifests[1].platform.architecture'),
  bad('platform os.features not strings', { ...ociIndex(), manifests: [{ ...child, platform: { os: 'windows', architecture: 'amd64', 'os.features': [true] } }] }, 'E_MANIFEST_INVALID', 'manifests[0].platform["os.features"][0]'),
  bad('index entry digest invalid', { ...ociIndex(), manifests: [{ ...child, digest: 'nope' }] }, 'E_MANIFEST_INVALID', 'manifests[0].digest'),
  bad('subject invalid', m({ subject: { ...child, size: null } }), 'E_MANIFEST_INVALID', 'subject.size'),
  bad('artifactType invalid', m({ artifactType: 'sbom' }), 'E_MANIFEST_INVALID', 'artifactType'),
  bad('descriptor artifactType invalid', withLayer(0, { artifactType: 3 }), 'E_MANIFEST_INVALID', 'layers[0].artifactType'),
  bad('embedded data not base64', m({ config: { ...EmptyJSON, data: 'e30' } }), 'E_MANIFEST_INVALID', 'config.data'),
  bad('embedded data of the wrong size', m({ config: { ...EmptyJSON, size: 3 } }), 'E_MANIFEST_INVALID', 'config.data'),
  bad('embedded data of another digest', m({ config: { ...EmptyJSON, data: 'e30=', digest: digestOf('{ ') } }), 'E_MANIFEST_INVALID', 'config.data'),
];

test('malformed manifests are refused with the code and the path at fault', async (t) => {
  assert.ok(malformed.length >= 20);
  for (const c of malformed) {
    await t.test(c.name, () => {
      assert.throws(
        () => parseManifest(c.bytes, c.given),
        (e: unknown) => {
          assert.ok(isLadingError(e), `not a LadingError: ${String(e)}`);
          assert.equal(e.code, c.code, e.message);
          if (c.path !== undefined) {
            assert.equal(e.details?.path, c.path, e.message);
            assert.ok(e.message.startsWith(`${c.path}: `), e.message);
          }
          assert.ok(e.hint, 'every refusal carries a hint');
          return true;
        },
      );
    });
  }
});

test('validateDescriptor returns a clean copy and names its path', () => {
  const d = validateDescriptor({ ...layer0, platform: { os: 'linux', architecture: 'amd64', extra: 1 }, junk: true }, 'x');
  assert.deepEqual(d, { ...layer0, platform: { os: 'linux', architecture: 'amd64' } });
  assert.throws(
    () => validateDescriptor({ ...layer0, digest: 'sha256:zz' }, 'blobs[4]'),
    (e: unknown) => isLadingError(e, 'E_MANIFEST_INVALID') && /^blobs\[4\]\.digest: invalid digest/.test(e.message),
  );
});

test('encodeJSON is compact and keeps key order', () => {
  assert.equal(encodeJSON({ b: 1, a: [1, { z: 'é', y: null }] }).toString('utf8'), '{"b":1,"a":[1,{"z":"é","y":null}]}');
  assert.throws(() => encodeJSON(undefined), (e: unknown) => isLadingError(e, 'E_JSON_INVALID'));
});

test('buildImageManifest writes what parseManifest reads back', () => {
  const built = buildImageManifest({
    config: { ...EmptyJSON },
    layers: [layer0, { ...layer1, annotations: {} }],
    artifactType: 'application/vnd.example.thing',
    subject: child,
    annotations: { 'org.opencontainers.image.created': '2024-01-01T00:00:00Z' },
  });
  assert.equal(
    Object.keys(built.manifest).join(','),
    'schemaVersion,mediaType,artifactType,config,layers,subject,annotations',
  );
  assert.equal(built.bytes.toString(), JSON.stringify(built.manifest));
  assert.deepEqual(built.descriptor, {
    mediaType: MediaType.ImageManifest,
    digest: digestOf(built.bytes),
    size: built.bytes.length,
    artifactType: 'application/vnd.example.thing',
  });
  // Transport-only and empty fields are not written.
  assert.equal('data' in built.manifest.config, false);
  assert.equal('annotations' in built.manifest.layers[1]!, false);
  const back = parseManifest(built.bytes, built.descriptor.mediaType);
  assert.equal(back.kind, 'manifest');
  assert.deepEqual(back.manifest, built.manifest);
});

test('buildImageManifest artifactType rules', () => {
  assert.throws(
    () => buildImageManifest({ config: empty, layers: [layer0] }),
    (e: unknown) => isLadingError(e, 'E_MANIFEST_INVALID') && e.message.startsWith('artifactType:'),
  );
  const custom = buildImageManifest({ config: blob('{}', 'application/vnd.example.config+json'), layers: [] });
  assert.equal(custom.descriptor.artifactType, 'application/vnd.example.config+json');
  assert.equal('artifactType' in custom.manifest, false);
  const image = buildImageManifest({ config, layers: [layer0] });
  assert.equal(image.descriptor.artifactType, undefined);
  assert.throws(
    () => buildImageManifest({ config, layers: [{ ...layer0, size: -3 }] }),
    (e: unknown) => isLadingError(e, 'E_MANIFEST_INVALID') && e.message.startsWith('layers[0].size:'),
  );
  const huge = Array.from({ length: 30000 }, (_, i) => ({ ...layer0, annotations: { n: String(i).padStart(40, '0') } }));
  assert.throws(() => buildImageManifest({ config, layers: huge }), (e: unknown) => isLadingError(e, 'E_MANIFEST_TOO_LARGE'));
});

test('buildImageIndex', () => {
  const entries = [
    { ...child, platform: { os: 'linux', architecture: 'amd64' } },
    { ...child, digest: digestOf('other'), platform: { os: 'linux', architecture: 'arm64' } },
  ];
  const built = buildImageIndex({ manifests: entries, annotations: {} });
  assert.equal(Object.keys(built.manifest).join(','), 'schemaVersion,mediaType,manifests');
  assert.deepEqual(built.descriptor, { mediaType: MediaType.ImageIndex, digest: digestOf(built.bytes), size: built.bytes.length });
  const back = parseManifest(built.bytes);
  assert.equal(back.kind, 'index');
  assert.deepEqual(manifestChildren(back), entries);
  const typed = buildImageIndex({ manifests: [], artifactType: 'application/vnd.example.set', subject: child });
  assert.equal(typed.descriptor.artifactType, 'application/vnd.example.set');
  assert.deepEqual(typed.manifest.subject, child);
  assert.throws(
    () => buildImageIndex({ manifests: [{ ...child, mediaType: '' }] }),
    (e: unknown) => isLadingError(e, 'E_MANIFEST_INVALID') && e.message.startsWith('manifests[0].mediaType:'),
  );
});

test('keys that differ from spec fields only in case are refused (Go readers would take them for the field)', () => {
  const cfg = { mediaType: 'application/vnd.oci.empty.v1+json', digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', size: 2 };
  const cases: Array<[unknown, RegExp]> = [
    [{ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers: [], Layers: [cfg] }, /^Layers: /],
    [{ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: cfg, layers: [], Subject: cfg }, /^Subject: /],
    [{ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { ...cfg, Digest: cfg.digest }, layers: [] }, /^config\.Digest: /],
    [{ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [{ ...cfg, mediaType: 'application/vnd.oci.image.manifest.v1+json', platform: { os: 'linux', architecture: 'amd64', OS: 'windows' } }] }, /^manifests\[0\]\.platform\.OS: /],
  ];
  for (const [doc, where] of cases) {
    assert.throws(() => parseManifest(Buffer.from(JSON.stringify(doc))), (e: unknown) => isLadingError(e, 'E_MANIFEST_INVALID') && where.test(e.message));
  }
});
