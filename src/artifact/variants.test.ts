import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LadingError, isLadingError } from '../errors.js';
import type { Descriptor, Platform } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { MediaType } from '../oci/mediatype.js';
import {
  VARIANT_ANNOTATION_PREFIX,
  formatVariant,
  parseVariantArgs,
  sameVariant,
  selectVariant,
  upsertVariant,
  variantEntry,
  variantOf,
} from './variants.js';

function entry(name: string, platform?: Platform, extra: Record<string, string> = {}): Descriptor {
  const d: Descriptor = { mediaType: MediaType.ImageManifest, digest: digestOf(name), size: name.length };
  if (platform) d.platform = platform;
  const annotations = Object.fromEntries(Object.entries(extra).map(([k, v]) => [`${VARIANT_ANNOTATION_PREFIX}${k}`, v]));
  if (Object.keys(annotations).length > 0) d.annotations = annotations;
  return d;
}

const linuxAmd64 = entry('linux-amd64', { os: 'linux', architecture: 'amd64' });
const linuxArm64 = entry('linux-arm64', { os: 'linux', architecture: 'arm64' });
const darwinArm64 = entry('darwin-arm64', { os: 'darwin', architecture: 'arm64' });
const firecracker = entry('linux-amd64-fc', { os: 'linux', architecture: 'amd64' }, { substrate: 'firecracker', protection: 'pvm' });
const four = [linuxAmd64, linuxArm64, darwinArm64, firecracker];

function usage(pattern: RegExp) {
  return (e: unknown) => isLadingError(e, 'E_USAGE') && pattern.test(e.message) && typeof e.hint === 'string';
}

test('parseVariantArgs reads key=value pairs; the value may itself hold "="', () => {
  assert.deepEqual(parseVariantArgs(['substrate=firecracker', 'protection=pvm', 'x.y_z-1=a=b']), {
    substrate: 'firecracker',
    protection: 'pvm',
    'x.y_z-1': 'a=b',
  });
  assert.deepEqual(parseVariantArgs([]), {});
});

test('parseVariantArgs refuses malformed keys, empty or long values, duplicates and platform keys', () => {
  assert.throws(() => parseVariantArgs(['substrate']), usage(/expected key=value/));
  assert.throws(() => parseVariantArgs(['Substrate=x']), usage(/invalid variant key "Substrate"/));
  assert.throws(() => parseVariantArgs(['-x=1']), usage(/invalid variant key/));
  assert.throws(() => parseVariantArgs(['x-=1']), usage(/invalid variant key/));
  assert.throws(() => parseVariantArgs(['=1']), usage(/invalid variant key ""/));
  assert.throws(() => parseVariantArgs([`${'a'.repeat(65)}=1`]), usage(/invalid variant key/));
  assert.deepEqual(parseVariantArgs([`${'a'.repeat(64)}=1`]), { ['a'.repeat(64)]: '1' });
  assert.throws(() => parseVariantArgs(['substrate=']), usage(/needs a value/));
  assert.throws(() => parseVariantArgs([`substrate=${'v'.repeat(257)}`]), usage(/needs a value/));
  assert.equal(parseVariantArgs([`substrate=${'v'.repeat(256)}`]).substrate!.length, 256);
  assert.throws(() => parseVariantArgs(['substrate=a', 'substrate=b']), usage(/given twice/));
  assert.throws(() => parseVariantArgs(['os=linux']), usage(/part of the platform/));
});

test('parseVariantArgs keeps "__proto__" as data', () => {
  assert.throws(() => parseVariantArgs(['__proto__=x']), usage(/invalid variant key/));
  const v = parseVariantArgs(['proto=x']);
  assert.equal(Object.getPrototypeOf(v), Object.prototype);
});

test('variantOf reads the normalized platform and the prefixed annotations only', () => {
  assert.equal(variantOf(entry('attached')), undefined);
  const d = entry('x', { os: 'Linux', architecture: 'x86_64' }, { substrate: 'firecracker' });
  d.annotations = { ...d.annotations, 'org.opencontainers.image.title': 'not a variant key', [VARIANT_ANNOTATION_PREFIX]: 'empty key' };
  assert.deepEqual(variantOf(d), { platform: { os: 'linux', architecture: 'amd64' }, extra: { substrate: 'firecracker' } });
});

test('formatVariant writes the platform then the extra keys sorted', () => {
  assert.equal(formatVariant(variantOf(firecracker)!), 'linux/amd64 protection=pvm,substrate=firecracker');
  assert.equal(formatVariant({ platform: { os: 'linux', architecture: 'aarch64' }, extra: {} }), 'linux/arm64');
  assert.equal(formatVariant({ platform: { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763' }, extra: {} }), 'windows/amd64:10.0.17763');
});

test('sameVariant folds aliases but compares extra keys and os.version exactly', () => {
  const p = (platform: Platform, extra: Record<string, string> = {}) => ({ platform, extra });
  assert.ok(sameVariant(p({ os: 'linux', architecture: 'x86_64' }), p({ os: 'linux', architecture: 'amd64' })));
  assert.ok(sameVariant(p({ os: 'linux', architecture: 'arm64', variant: 'v8' }), p({ os: 'linux', architecture: 'aarch64' })));
  assert.ok(!sameVariant(p({ os: 'linux', architecture: 'arm', variant: 'v6' }), p({ os: 'linux', architecture: 'arm' })));
  assert.ok(!sameVariant(p({ os: 'linux', architecture: 'amd64' }, { a: '1' }), p({ os: 'linux', architecture: 'amd64' })));
  assert.ok(!sameVariant(p({ os: 'linux', architecture: 'amd64' }), p({ os: 'linux', architecture: 'amd64' }, { a: '1' })));
  assert.ok(!sameVariant(p({ os: 'linux', architecture: 'amd64' }, { a: '1' }), p({ os: 'linux', architecture: 'amd64' }, { a: '2' })));
  assert.ok(sameVariant(p({ os: 'linux', architecture: 'amd64' }, { a: '1', b: '2' }), p({ os: 'linux', architecture: 'amd64' }, { b: '2', a: '1' })));
  const win = { os: 'windows', architecture: 'amd64' };
  assert.ok(!sameVariant(p({ ...win, 'os.version': '10.0.1' }), p(win)));
  assert.ok(!sameVariant(p(win), p({ ...win, 'os.version': '10.0.1' })));
});

test('upsertVariant replaces the entry of the same variant in place and keeps the rest', () => {
  const attached = entry('attached');
  const entries = [linuxAmd64, attached, linuxArm64, firecracker];
  const newer = entry('linux-amd64-new', { os: 'linux', architecture: 'x86_64' });
  const r = upsertVariant(entries, newer);
  assert.deepEqual(r.replaced, linuxAmd64);
  assert.deepEqual(r.manifests, [newer, attached, linuxArm64, firecracker]);
  assert.deepEqual(entries, [linuxAmd64, attached, linuxArm64, firecracker], 'the input is not changed');

  const newerFc = entry('fc-new', { os: 'linux', architecture: 'amd64' }, { protection: 'pvm', substrate: 'firecracker' });
  const r2 = upsertVariant(entries, newerFc);
  assert.deepEqual(r2.replaced, firecracker);
  assert.deepEqual(r2.manifests, [linuxAmd64, attached, linuxArm64, newerFc]);

  const r3 = upsertVariant(entries, darwinArm64);
  assert.equal(r3.replaced, undefined);
  assert.deepEqual(r3.manifests, [...entries, darwinArm64]);

  assert.throws(() => upsertVariant(entries, attached), (e: unknown) => isLadingError(e, 'E_USAGE'));
});

test('upsertVariant drops a second copy of the variant it replaces', () => {
  const dup = entry('linux-amd64-dup', { os: 'linux', architecture: 'amd64' });
  const newer = entry('newer', { os: 'linux', architecture: 'amd64' });
  const r = upsertVariant([linuxAmd64, linuxArm64, dup], newer);
  assert.deepEqual(r.manifests, [newer, linuxArm64]);
  assert.deepEqual(r.replaced, linuxAmd64);
});

test('selectVariant takes exactly the variant asked for among four', () => {
  const want = (platform: Platform, extra: Record<string, string> = {}) => selectVariant(four, { platform, extra }, 'tool:1');
  assert.equal(want({ os: 'linux', architecture: 'amd64' }), linuxAmd64);
  assert.equal(want({ os: 'linux', architecture: 'arm64' }), linuxArm64);
  assert.equal(want({ os: 'darwin', architecture: 'arm64' }), darwinArm64);
  assert.equal(want({ os: 'linux', architecture: 'amd64' }, { substrate: 'firecracker', protection: 'pvm' }), firecracker);
  assert.equal(want({ os: 'linux', architecture: 'x86_64' }), linuxAmd64);
  assert.equal(want({ os: 'linux', architecture: 'aarch64' }), linuxArm64);
  assert.equal(want({ os: 'macos', architecture: 'aarch64' }), darwinArm64);
});

test('selectVariant never falls back: a missing variant fails listing every variant', () => {
  const attempts: Array<[Platform, Record<string, string>]> = [
    [{ os: 'windows', architecture: 'amd64' }, {}],
    [{ os: 'linux', architecture: 'amd64' }, { substrate: 'firecracker' }],
    [{ os: 'linux', architecture: 'arm64' }, { substrate: 'firecracker', protection: 'pvm' }],
    [{ os: 'linux', architecture: 'arm', variant: 'v7' }, {}],
  ];
  for (const [platform, extra] of attempts) {
    assert.throws(
      () => selectVariant(four, { platform, extra }, 'tool:1'),
      (e: unknown) => {
        assert.ok(isLadingError(e, 'E_VARIANT_NOT_FOUND'));
        assert.match(e.message, /^tool:1 has no variant /);
        assert.ok(e.message.includes(formatVariant({ platform, extra })));
        for (const v of ['linux/amd64;', 'linux/arm64', 'darwin/arm64', 'linux/amd64 protection=pvm,substrate=firecracker']) {
          assert.ok(e.message.includes(v), `${e.message} names ${v}`);
        }
        const variants = e.details?.variants as Array<{ variant: string; digest: string }>;
        assert.deepEqual(
          variants.map((v) => [v.variant, v.digest]),
          four.map((d) => [formatVariant(variantOf(d)!), d.digest]),
        );
        assert.match(e.hint ?? '', /--platform/);
        assert.match(e.hint ?? '', /--variant/);
        return true;
      },
    );
  }
});

test('selectVariant ignores entries that are not variants and says when there are none', () => {
  assert.throws(
    () => selectVariant([entry('attached')], { platform: { os: 'linux', architecture: 'amd64' }, extra: {} }, 'x'),
    (e: unknown) => isLadingError(e, 'E_VARIANT_NOT_FOUND') && /no variants/.test(e.message),
  );
});

test('selectVariant refuses an index that lists one variant twice', () => {
  const dup = entry('dup', { os: 'linux', architecture: 'x86_64' });
  assert.throws(
    () => selectVariant([...four, dup], { platform: { os: 'linux', architecture: 'amd64' }, extra: {} }, 'x'),
    (e: unknown) => isLadingError(e, 'E_MANIFEST_INVALID') && /2 times/.test(e.message),
  );
});

test('selectVariant: a request without os.version takes the one entry of any os.version, and asks when there are more', () => {
  const a = entry('a', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763' });
  const b = entry('b', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.20348' });
  const win = { os: 'windows', architecture: 'amd64' };
  assert.equal(selectVariant([a, linuxAmd64], { platform: win, extra: {} }, 'x'), a);
  assert.equal(selectVariant([a, b], { platform: { ...win, 'os.version': '10.0.20348' }, extra: {} }, 'x'), b);
  assert.throws(
    () => selectVariant([a, b], { platform: win, extra: {} }, 'x'),
    (e: unknown) => e instanceof LadingError && e.code === 'E_VARIANT_NOT_FOUND' && /os\.version/.test(e.hint ?? ''),
  );
});

test('variantEntry writes one byte sequence per variant, whatever the order of keys and aliases', () => {
  const manifest: Descriptor = { mediaType: MediaType.ImageManifest, digest: digestOf('m'), size: 1, artifactType: 'application/vnd.lading.cli.v1' };
  const a = variantEntry(manifest, { platform: { os: 'linux', architecture: 'x86_64' }, extra: { substrate: 'firecracker', protection: 'pvm' } });
  const b = variantEntry(manifest, { platform: { architecture: 'amd64', os: 'linux' }, extra: { protection: 'pvm', substrate: 'firecracker' } });
  assert.equal(JSON.stringify(a), JSON.stringify(b));
  assert.equal(
    JSON.stringify(a),
    JSON.stringify({
      mediaType: MediaType.ImageManifest,
      digest: manifest.digest,
      size: 1,
      annotations: { [`${VARIANT_ANNOTATION_PREFIX}protection`]: 'pvm', [`${VARIANT_ANNOTATION_PREFIX}substrate`]: 'firecracker' },
      platform: { architecture: 'amd64', os: 'linux' },
    }),
  );
  assert.deepEqual(variantOf(a), { platform: { os: 'linux', architecture: 'amd64' }, extra: { protection: 'pvm', substrate: 'firecracker' } });
  assert.equal(variantEntry(manifest, { platform: { os: 'linux', architecture: 'arm', variant: 'v6' }, extra: {} }).annotations, undefined);
});
