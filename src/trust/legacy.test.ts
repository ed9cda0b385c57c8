import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fixture } from '../../test/support/fixtures.js';
import { isLadingError, type ErrorCode } from '../errors.js';
import { loadPublicKey } from './keys.js';
import {
  checkSimpleSigningSubject,
  legacyLayerToBundle,
  matchDockerReference,
  parseSimpleSigning,
  readSigstoreJsonAttachment,
  simpleSigningPayload,
} from './legacy.js';
import { SIMPLE_SIGNING_MEDIA_TYPE, type TrustAnchors } from './types.js';
import { verifyBundle } from './verify-bundle.js';

const DIR = fixture('sigstore', 'containers-image-fixtures', 'signature', 'fixtures');
const cosignPub = loadPublicKey(readFileSync(join(DIR, 'cosign.pub')), 'cosign.pub');
const cosign2Pub = loadPublicKey(readFileSync(join(DIR, 'cosign2.pub')), 'cosign2.pub');
const SINGLE = 'sha256:634a8f35b5f16dcf4aaa0822adc0b1964bb786fca12f6831de8ddc45e5986a00';

/** The fixtures come from a git checkout without symlinks: a link is a small file holding its target path. */
function real(path: string): string {
  const b = readFileSync(path);
  return b.length < 200 && b.toString('utf8').startsWith('../') ? real(resolve(dirname(path), b.toString('utf8').trim())) : path;
}

function manifestDigest(dir: string): string {
  return `sha256:${createHash('sha256').update(readFileSync(real(join(DIR, dir, 'manifest.json')))).digest('hex')}`;
}

/** What verifying one signature of a containers/image `dir:` image yields: ok, or the error code. */
function check(dir: string, sig: string, anchors: TrustAnchors, expectedRepository?: string): 'ok' | ErrorCode {
  try {
    const layer = readSigstoreJsonAttachment(readFileSync(real(join(DIR, dir, sig))));
    verifyBundle(legacyLayerToBundle(layer), { bytes: layer.payload }, anchors);
    checkSimpleSigningSubject(layer.payload, manifestDigest(dir), expectedRepository);
    return 'ok';
  } catch (err) {
    if (isLadingError(err)) return err.code;
    throw err;
  }
}

const keyed = (...keys: (typeof cosignPub)[]): TrustAnchors => ({ keys, identities: [] });

describe('simple-signing payloads', () => {
  it("reproduces cosign's bytes exactly", () => {
    const layer = readSigstoreJsonAttachment(readFileSync(join(DIR, 'dir-img-cosign-valid', 'signature-1')));
    assert.deepEqual(simpleSigningPayload('192.168.64.2:5000/cosign-signed-single-sample', SINGLE), layer.payload);
  });

  it('parses a payload with optional fields', () => {
    const layer = readSigstoreJsonAttachment(readFileSync(join(DIR, 'dir-img-cosign-valid-with-tag', 'signature-1')));
    const s = parseSimpleSigning(layer.payload);
    assert.equal(s.dockerReference, '192.168.64.2:5000/skopeo-signed:tag');
    assert.equal(s.manifestDigest, SINGLE);
    assert.deepEqual(s.optional, { creator: 'containers/image 5.21.2-dev', timestamp: 1657296609 });
  });

  it('refuses other payloads', () => {
    const good = JSON.parse(simpleSigningPayload('r/x', SINGLE).toString());
    const variants = [
      { ...good, critical: { ...good.critical, type: 'atomic container signature' } },
      { ...good, critical: { ...good.critical, extra: 1 } },
      { ...good, critical: { ...good.critical, image: { 'docker-manifest-digest': 'sha256:short' } } },
      { ...good, critical: { ...good.critical, identity: {} } },
      { critical: good.critical, optional: null, more: true },
      'this is not JSON',
    ];
    for (const v of variants) {
      const bytes = Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));
      assert.throws(() => parseSimpleSigning(bytes), (e) => isLadingError(e, 'E_BUNDLE_INVALID'));
    }
  });
});

describe('matchDockerReference', () => {
  it('compares normalized repositories and ignores tags and digests', () => {
    assert.equal(matchDockerReference('192.168.64.2:5000/skopeo-signed:tag', '192.168.64.2:5000/skopeo-signed'), true);
    assert.equal(matchDockerReference(`localhost:5000/x/repo@${SINGLE}`, 'localhost:5000/x/repo'), true);
    assert.equal(matchDockerReference('ubuntu:22.04', 'docker.io/library/ubuntu'), true);
    assert.equal(matchDockerReference('docker.io/library/ubuntu', 'ubuntu'), true);
  });

  it('never matches a neighbour', () => {
    assert.equal(matchDockerReference('localhost:5000/x/repo-evil', 'localhost:5000/x/repo'), false);
    assert.equal(matchDockerReference('localhost:5000/evil/x/repo', 'localhost:5000/x/repo'), false);
    assert.equal(matchDockerReference('localhost:5000/x/repo', 'localhost:5000/x/repo-evil'), false);
    assert.equal(matchDockerReference('localhost:5001/x/repo', 'localhost:5000/x/repo'), false);
    assert.equal(matchDockerReference('not a reference', 'not a reference'), false);
  });
});

describe('readSigstoreJsonAttachment', () => {
  it('refuses files without the header or with bad JSON', () => {
    for (const bytes of [Buffer.from('{"mimeType":"x","payload":""}'), Buffer.from('\x00sigstore-json\n{'), Buffer.from('\x00sigstore-json\n{"payload":"e30="}')]) {
      assert.throws(() => readSigstoreJsonAttachment(bytes), (e) => isLadingError(e, 'E_BUNDLE_INVALID'));
    }
  });
});

describe('legacyLayerToBundle', () => {
  it('refuses a layer that is not a simple-signing payload', () => {
    const layer = readSigstoreJsonAttachment(readFileSync(join(DIR, 'dir-img-cosign-other-attachment', 'signature-1')));
    assert.throws(() => legacyLayerToBundle(layer), (e) => isLadingError(e, 'E_BUNDLE_INVALID') && /not a signature/.test(e.message));
  });

  it('refuses a layer without a signature annotation', () => {
    const layer = { mediaType: SIMPLE_SIGNING_MEDIA_TYPE, annotations: {}, payload: simpleSigningPayload('r/x', SINGLE) };
    assert.throws(() => legacyLayerToBundle(layer), (e) => isLadingError(e, 'E_BUNDLE_INVALID'));
  });

  it('turns a Rekor SET into a log entry with a promise', () => {
    const layer = readSigstoreJsonAttachment(readFileSync(join(DIR, 'dir-img-cosign-key-rekor-valid', 'signature-1')));
    const b = legacyLayerToBundle(layer);
    const [entry] = b.verificationMaterial.tlogEntries;
    assert.equal(entry?.kindVersion?.kind, 'hashedrekord');
    assert.ok(entry?.inclusionPromise);
    assert.equal(b.verificationMaterial.content.$case, 'publicKey');
  });
});

describe('containers/image cosign fixtures', () => {
  it('accepts dir-img-cosign-valid with cosign.pub', () => {
    assert.equal(check('dir-img-cosign-valid', 'signature-1', keyed(cosignPub), '192.168.64.2:5000/cosign-signed-single-sample'), 'ok');
  });

  it('accepts both signatures of dir-img-cosign-valid-2', () => {
    assert.equal(check('dir-img-cosign-valid-2', 'signature-1', keyed(cosignPub)), 'ok');
    assert.equal(check('dir-img-cosign-valid-2', 'signature-2', keyed(cosignPub)), 'ok');
  });

  it('accepts dir-img-cosign-valid-with-tag (the signed tag does not matter)', () => {
    assert.equal(check('dir-img-cosign-valid-with-tag', 'signature-1', keyed(cosignPub), '192.168.64.2:5000/skopeo-signed'), 'ok');
  });

  it('accepts dir-img-cosign-key-rekor-valid with cosign2.pub, its SET verified', () => {
    assert.equal(check('dir-img-cosign-key-rekor-valid', 'signature-1', keyed(cosign2Pub), '192.168.64.2:5000/cosign-signed/key-1'), 'ok');
  });

  it('accepts dir-img-cosign-fulcio-rekor-valid keyless, for its identity only', () => {
    const anchors = (subject: string): TrustAnchors => ({ keys: [], identities: [{ subject, issuer: 'https://github.com/login/oauth' }] });
    assert.equal(check('dir-img-cosign-fulcio-rekor-valid', 'signature-1', anchors('mitr@redhat.com')), 'ok');
    assert.equal(check('dir-img-cosign-fulcio-rekor-valid', 'signature-1', anchors('someone@redhat.com')), 'E_IDENTITY_MISMATCH');
    assert.equal(check('dir-img-cosign-fulcio-rekor-valid', 'signature-1', keyed(cosignPub)), 'E_IDENTITY_MISMATCH');
  });

  it('refuses dir-img-cosign-pki-valid: a private-PKI certificate with no timestamp cannot be verified', () => {
    const anchors: TrustAnchors = { keys: [], identities: [{ subjectPattern: '.*', issuerPattern: '.*' }] };
    assert.equal(check('dir-img-cosign-pki-valid', 'signature-1', anchors), 'E_TIMESTAMP_INVALID');
  });

  it('refuses a signature with the wrong key as an untrusted key, not a forgery', () => {
    assert.equal(check('dir-img-cosign-valid', 'signature-1', keyed(cosign2Pub)), 'E_KEY_UNTRUSTED');
    assert.equal(check('dir-img-cosign-key-rekor-valid', 'signature-1', keyed(cosignPub)), 'E_KEY_UNTRUSTED');
    assert.equal(check('dir-img-cosign-valid', 'signature-1', keyed()), 'E_KEY_UNTRUSTED');
  });

  it('refuses modified-manifest and manifest-digest-error as signing other content', () => {
    assert.equal(check('dir-img-cosign-modified-manifest', 'signature-1', keyed(cosignPub)), 'E_SIGNATURE_SUBJECT_MISMATCH');
    assert.equal(check('dir-img-cosign-manifest-digest-error', 'signature-1', keyed(cosignPub)), 'E_SIGNATURE_SUBJECT_MISMATCH');
  });

  it('has no manifest to check dir-img-cosign-no-manifest against', () => {
    assert.equal(existsSync(join(DIR, 'dir-img-cosign-no-manifest', 'manifest.json')), false);
    assert.throws(() => check('dir-img-cosign-no-manifest', 'signature-1', keyed(cosignPub)), /ENOENT/);
  });

  it('refuses unknown-cosign-key.signature', () => {
    const layer = readSigstoreJsonAttachment(readFileSync(join(DIR, 'unknown-cosign-key.signature')));
    const b = legacyLayerToBundle(layer);
    // There is no key hint: the signature verifies with no trusted key, and nothing says it was forged.
    assert.throws(
      () => verifyBundle(b, { bytes: layer.payload }, keyed(cosignPub)),
      (e) => isLadingError(e, 'E_KEY_UNTRUSTED') && /none of the 1 trusted key/.test(e.message),
    );
    assert.throws(() => verifyBundle(b, { bytes: layer.payload }, keyed(cosignPub, cosign2Pub)), (e) => isLadingError(e, 'E_KEY_UNTRUSTED'));
  });

  it('reports each signature of dir-img-cosign-mixed on its own', () => {
    assert.deepEqual(
      ['signature-1', 'signature-2'].map((s) => check('dir-img-cosign-mixed', s, keyed(cosignPub, cosign2Pub))),
      ['E_KEY_UNTRUSTED', 'ok'],
    );
  });

  it('refuses dir-img-cosign-other-attachment as not a signature', () => {
    assert.equal(check('dir-img-cosign-other-attachment', 'signature-1', keyed(cosignPub)), 'E_BUNDLE_INVALID');
  });

  it('refuses a docker-reference naming another repository', () => {
    for (const repo of ['192.168.64.2:5000/cosign-signed-single-sample-evil', '192.168.64.2:5000/evil/cosign-signed-single-sample', 'docker.io/library/cosign-signed-single-sample']) {
      assert.equal(check('dir-img-cosign-valid', 'signature-1', keyed(cosignPub), repo), 'E_IDENTITY_MISMATCH');
    }
  });
});
