import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { MemoryStore } from '../content/memory.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf } from '../oci/digest.js';
import { buildImageManifest } from '../oci/manifest.js';
import { MediaType } from '../oci/mediatype.js';
import { fixture } from '../../test/support/fixtures.js';
import { legacySignatureTag } from './attach.js';
import { adHocPolicy, verifyUnderPolicy } from './enforce.js';
import { loadPublicKey } from './keys.js';
import { readSigstoreJsonAttachment } from './legacy.js';
import type { IdentityMatcher } from './types.js';

const DIR = (name: string) => fixture('sigstore', 'containers-image-fixtures', 'signature', 'fixtures', name);

/** The fixtures come from a git checkout without symlinks: a link is a small file holding its target path. */
async function readFixture(path: string): Promise<Buffer> {
  const b = await readFile(path);
  return b.length < 200 && b.toString('utf8').startsWith('../') ? readFixture(resolve(dirname(path), b.toString('utf8').trim())) : b;
}
/** The repository cosign signed these fixtures for (their payload's docker-reference). */
const SIGNED_REPOSITORY = '192.168.64.2:5000/cosign-signed/fulcio-rekor-1';
const IDENTITY: IdentityMatcher = { subject: 'mitr@redhat.com', issuer: 'https://github.com/login/oauth' };

/**
 * A store holding the fixture's manifest and its cosign `.sig` manifest, as a registry would after
 * `cosign sign`: the keyless path (Fulcio certificate + Rekor SET) end to end through the OCI layer.
 */
async function storeWithLegacySignature(dir: string): Promise<{ store: MemoryStore; subject: Descriptor }> {
  const store = new MemoryStore();
  const manifest = await readFixture(DIR(`${dir}/manifest.json`));
  const subject: Descriptor = { mediaType: JSON.parse(manifest.toString()).mediaType ?? MediaType.DockerManifest, digest: digestOf(manifest), size: manifest.length };
  await store.push(subject, Readable.from([manifest]));
  const layer = readSigstoreJsonAttachment(await readFixture(DIR(`${dir}/signature-1`)));
  const layerDesc: Descriptor = { mediaType: layer.mediaType, digest: digestOf(layer.payload), size: layer.payload.length, annotations: layer.annotations };
  await store.push(layerDesc, Readable.from([layer.payload]));
  const config = Buffer.from('{}');
  const configDesc: Descriptor = { mediaType: MediaType.ImageConfig, digest: digestOf(config), size: config.length };
  await store.push(configDesc, Readable.from([config]));
  const sig = buildImageManifest({ config: configDesc, layers: [layerDesc] });
  await store.push(sig.descriptor, Readable.from([sig.bytes]));
  await store.tag(sig.descriptor, legacySignatureTag(subject.digest));
  return { store, subject };
}

test('a keyless cosign signature verifies through the OCI layer with the exact identity and repository', async () => {
  const { store, subject } = await storeWithLegacySignature('dir-img-cosign-fulcio-rekor-valid');
  const d = await verifyUnderPolicy(store, subject, SIGNED_REPOSITORY, adHocPolicy({ keys: [], identities: [IDENTITY] }));
  assert.equal(d.allowed, true, d.message);
  assert.deepEqual(d.checks[0]!.signer, { kind: 'certificate', subject: 'mitr@redhat.com', issuer: 'https://github.com/login/oauth' });
  assert.ok(d.checks[0]!.signedAt, 'the Rekor SET gives the signing time');
});

test('the identity cannot be stretched: other subjects, issuers, unanchored patterns and look-alike repositories are refused', async () => {
  const { store, subject } = await storeWithLegacySignature('dir-img-cosign-fulcio-rekor-valid');
  const refusals: [string, IdentityMatcher, string, string][] = [
    ['other subject', { subject: 'mitr@redhat.co', issuer: IDENTITY.issuer! }, SIGNED_REPOSITORY, 'E_IDENTITY_MISMATCH'],
    ['suffix subject', { subject: 'itr@redhat.com', issuer: IDENTITY.issuer! }, SIGNED_REPOSITORY, 'E_IDENTITY_MISMATCH'],
    ['other issuer', { subject: IDENTITY.subject!, issuer: 'https://github.com/login/oauth/evil' }, SIGNED_REPOSITORY, 'E_IDENTITY_MISMATCH'],
    ['partial pattern', { subjectPattern: 'mitr@redhat', issuer: IDENTITY.issuer! }, SIGNED_REPOSITORY, 'E_IDENTITY_MISMATCH'],
    ['repository with a suffix', IDENTITY, `${SIGNED_REPOSITORY}-evil`, 'E_IDENTITY_MISMATCH'],
    ['repository with a prefix', IDENTITY, `192.168.64.2:5000/evil/cosign-signed/fulcio-rekor-1`, 'E_IDENTITY_MISMATCH'],
  ];
  for (const [name, identity, repository, code] of refusals) {
    const d = await verifyUnderPolicy(store, subject, repository, adHocPolicy({ keys: [], identities: [identity] }));
    assert.equal(d.allowed, false, name);
    assert.equal(d.code, code, `${name}: ${d.message}`);
  }
  const pattern = await verifyUnderPolicy(store, subject, SIGNED_REPOSITORY, adHocPolicy({ keys: [], identities: [{ subjectPattern: '[a-z]+@redhat\\.com', issuer: IDENTITY.issuer! }] }));
  assert.equal(pattern.allowed, true, pattern.message);
});

test('a cosign signature of another manifest, copied beside this one, is refused as a subject mismatch', async () => {
  const { store, subject } = await storeWithLegacySignature('dir-img-cosign-modified-manifest');
  const key = loadPublicKey(await readFixture(DIR('cosign.pub')), 'cosign.pub');
  const d = await verifyUnderPolicy(store, subject, '192.168.64.2:5000/cosign-signed-single-sample', adHocPolicy({ keys: [key], identities: [] }));
  assert.equal(d.allowed, false);
  assert.equal(d.code, 'E_SIGNATURE_SUBJECT_MISMATCH', d.message);
});
