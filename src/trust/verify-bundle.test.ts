import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fixture } from '../../test/support/fixtures.js';
import { isLadingError, LadingError, type ErrorCode } from '../errors.js';
import { dsseBundle, messageSignatureBundle, parseBundle } from './bundle.js';
import { inTotoStatement, pae } from './dsse.js';
import { generateKeyPair, keyId, loadPrivateKey, loadPublicKey, signBytes } from './keys.js';
import { legacyLayerToBundle, readSigstoreJsonAttachment } from './legacy.js';
import { loadTrustedRoot, parseTrustedRoot } from './trusted-root.js';
import { IN_TOTO_PAYLOAD_TYPE, type IdentityMatcher, type TrustAnchors } from './types.js';
import { signatureCheck, verifyBundle, type ArtifactInput } from './verify-bundle.js';

const SIGSTORE = fixture('sigstore');
const JS_BUNDLES = join(SIGSTORE, 'sigstore-js-bundles');
const LEGACY = join(SIGSTORE, 'containers-image-fixtures', 'signature', 'fixtures');
const BRIAN: IdentityMatcher = { subject: 'brian@dehamer.com', issuer: 'https://github.com/login/oauth' };
const NPM_SHA512 = 'sha512:7bea9f6e7ff37f5fab0b36bf061200fff03099fd2fd696b91d04bc5e4f225eb9fd6e0cadcad54ba980f43fb352a99e8810b4e0abeb5c0ef2cf9108cd1f258b36';
const PROVENANCE_SHA512 =
  'sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751';
const RELEASE_WORKFLOW: IdentityMatcher = {
  subject: 'https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main',
  issuer: 'https://token.actions.githubusercontent.com',
};
const ATTESTED_IMAGE = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';

const keyless = (...identities: IdentityMatcher[]): TrustAnchors => ({ keys: [], identities });
const readJson = (path: string): Record<string, any> => JSON.parse(readFileSync(path, 'utf8'));
const bundleOf = (doc: unknown) => parseBundle(Buffer.from(JSON.stringify(doc)), 'test bundle');

function codeOf(fn: () => unknown): 'ok' | ErrorCode {
  try {
    fn();
    return 'ok';
  } catch (err) {
    if (err instanceof LadingError) return err.code;
    throw err;
  }
}

function flip(b64: string, at: number): string {
  const b = Buffer.from(b64, 'base64');
  b[at % b.length]! ^= 0x01;
  return b.toString('base64');
}

describe('sigstore-js bundles (DSSE, v0.1–v0.3)', () => {
  const files = readdirSync(JS_BUNDLES).filter((f) => f.endsWith('.sigstore'));

  it('finds all nine', () => assert.equal(files.length, 9));

  for (const f of files) {
    it(`verifies ${f} for brian@dehamer.com`, () => {
      const r = verifyBundle(parseBundle(readFileSync(join(JS_BUNDLES, f)), f), { digest: NPM_SHA512 }, keyless(BRIAN));
      assert.deepEqual(r.signer, { kind: 'certificate', subject: BRIAN.subject, issuer: BRIAN.issuer });
      assert.match(r.signedAt ?? '', /^2023-07-12T15:(34:38|50:43)\.000Z$/);
      assert.equal(r.statement?.predicateType, 'https://github.com/npm/attestation/tree/main/specs/publish/v0.1');
    });

    it(`refuses ${f} for another identity, or none`, () => {
      const b = parseBundle(readFileSync(join(JS_BUNDLES, f)), f);
      assert.equal(codeOf(() => verifyBundle(b, { digest: NPM_SHA512 }, keyless({ ...BRIAN, subject: 'brian@dehamer.co' }))), 'E_IDENTITY_MISMATCH');
      assert.equal(codeOf(() => verifyBundle(b, { digest: NPM_SHA512 }, keyless({ ...BRIAN, issuer: 'https://accounts.google.com' }))), 'E_IDENTITY_MISMATCH');
      assert.throws(() => verifyBundle(b, { digest: NPM_SHA512 }, keyless()), (e) => isLadingError(e, 'E_IDENTITY_MISMATCH') && /--certificate-identity/.test(e.hint ?? ''));
    });
  }

  it('refuses the bundle for another artifact', () => {
    const b = parseBundle(readFileSync(join(JS_BUNDLES, 'bundleV03-intoto.sigstore')), 'b');
    assert.equal(codeOf(() => verifyBundle(b, { digest: PROVENANCE_SHA512 }, keyless(BRIAN))), 'E_SIGNATURE_SUBJECT_MISMATCH');
    assert.equal(codeOf(() => verifyBundle(b, { bytes: Buffer.from('not the package') }, keyless(BRIAN))), 'E_SIGNATURE_SUBJECT_MISMATCH');
  });

});

describe('sigstore-go provenance bundle', () => {
  const b = parseBundle(readFileSync(join(SIGSTORE, 'sigstore-go-bundle-provenance.json')), 'provenance');

  it('verifies against the digest its statement names', () => {
    const r = verifyBundle(b, { digest: PROVENANCE_SHA512 }, keyless(RELEASE_WORKFLOW));
    assert.equal(r.signer.kind === 'certificate' && r.signer.subject, RELEASE_WORKFLOW.subject);
    assert.equal(r.statement?.predicateType, 'https://slsa.dev/provenance/v0.2');
    assert.equal(r.statement?.subjects[0]?.name, 'pkg:npm/sigstore@1.3.0');
  });

  it('accepts a subject pattern, anchored', () => {
    const ok = { subjectPattern: 'https://github\\.com/sigstore/sigstore-js/\\.github/workflows/.*', issuer: RELEASE_WORKFLOW.issuer! };
    assert.equal(codeOf(() => verifyBundle(b, { digest: PROVENANCE_SHA512 }, keyless(ok))), 'ok');
    const partial = { subjectPattern: 'sigstore/sigstore-js', issuer: RELEASE_WORKFLOW.issuer! };
    assert.equal(codeOf(() => verifyBundle(b, { digest: PROVENANCE_SHA512 }, keyless(partial))), 'E_IDENTITY_MISMATCH');
  });

  it('refuses another digest', () => {
    const other = `sha512:${'0'.repeat(128)}`;
    assert.equal(codeOf(() => verifyBundle(b, { digest: other }, keyless(RELEASE_WORKFLOW))), 'E_SIGNATURE_SUBJECT_MISMATCH');
    assert.equal(codeOf(() => verifyBundle(b, { digest: `sha256:${'0'.repeat(64)}` }, keyless(RELEASE_WORKFLOW))), 'E_SIGNATURE_SUBJECT_MISMATCH');
  });
});

describe('cosign OCI attestation', () => {
  const b = parseBundle(readFileSync(join(SIGSTORE, 'cosign-oci-attestation.sigstore.json')), 'attestation');
  const cody: IdentityMatcher = { subject: 'cody@soyland.com', issuer: 'https://github.com/login/oauth' };

  it('verifies with its own trusted root', async () => {
    const trustedRoot = await loadTrustedRoot(join(SIGSTORE, 'cosign-trusted_root_pgi.json'));
    const r = verifyBundle(b, { digest: ATTESTED_IMAGE }, { ...keyless(cody), trustedRoot });
    assert.equal(r.statement?.predicateType, 'https://cosign.sigstore.dev/attestation/v1');
    assert.equal(r.signedAt, '2025-02-28T19:18:11.000Z');
  });

  it('verifies with the shipped public-good root', () => {
    assert.equal(codeOf(() => verifyBundle(b, { digest: ATTESTED_IMAGE }, keyless(cody))), 'ok');
  });

  it('refuses another image digest', () => {
    assert.equal(codeOf(() => verifyBundle(b, { digest: `sha256:${'1'.repeat(64)}` }, keyless(cody))), 'E_SIGNATURE_SUBJECT_MISMATCH');
  });
});

describe('keyed bundles made by lading', () => {
  const passphrase = 'pw';
  const mine = generateKeyPair(passphrase);
  const other = generateKeyPair(passphrase);
  const key = loadPrivateKey(mine.privateKeyPem, passphrase);
  const trusted = loadPublicKey(mine.publicKeyPem, 'mine.pub');
  const stranger = loadPublicKey(other.publicKeyPem, 'other.pub');
  const manifest = Buffer.from('{"schemaVersion":2}');
  const signed = () =>
    messageSignatureBundle({ artifactDigest: createHash('sha256').update(manifest).digest(), signature: signBytes(key, manifest), keyHint: keyId(key) });

  it('verifies a message signature with the trusted key', () => {
    const r = verifyBundle(bundleOf(signed()), { bytes: manifest }, { keys: [stranger, trusted], identities: [] });
    assert.deepEqual(r.signer, { kind: 'key', keyId: trusted.id, source: 'mine.pub' });
    assert.equal(r.signedAt, undefined);
  });

  it('refuses it when the key is not trusted', () => {
    assert.equal(codeOf(() => verifyBundle(bundleOf(signed()), { bytes: manifest }, { keys: [stranger], identities: [] })), 'E_KEY_UNTRUSTED');
    assert.throws(
      () => verifyBundle(bundleOf(signed()), { bytes: manifest }, keyless(BRIAN)),
      (e) => isLadingError(e, 'E_KEY_UNTRUSTED') && /--key/.test(e.hint ?? ''),
    );
  });

  it('refuses a flipped signature byte as an invalid signature', () => {
    const doc = signed() as Record<string, any>;
    doc.messageSignature.signature = flip(doc.messageSignature.signature, 12);
    assert.equal(codeOf(() => verifyBundle(bundleOf(doc), { bytes: manifest }, { keys: [trusted], identities: [] })), 'E_SIGNATURE_INVALID');
    // The hint names a trusted key, so the failure is that key's whichever others are trusted too.
    assert.equal(codeOf(() => verifyBundle(bundleOf(doc), { bytes: manifest }, { keys: [stranger, trusted], identities: [] })), 'E_SIGNATURE_INVALID');
  });

  it('refuses a flipped signature byte with the hint removed as an unknown signer', () => {
    const doc = signed() as Record<string, any>;
    doc.messageSignature.signature = flip(doc.messageSignature.signature, 12);
    doc.verificationMaterial.publicKey.hint = '';
    assert.equal(codeOf(() => verifyBundle(bundleOf(doc), { bytes: manifest }, { keys: [trusted], identities: [] })), 'E_KEY_UNTRUSTED');
  });

  it('refuses other content and a digest in place of the file', () => {
    const anchors = { keys: [trusted], identities: [] };
    assert.equal(codeOf(() => verifyBundle(bundleOf(signed()), { bytes: Buffer.from('{}') }, anchors)), 'E_SIGNATURE_SUBJECT_MISMATCH');
    const digest: ArtifactInput = { digest: `sha256:${createHash('sha256').update(manifest).digest('hex')}` };
    assert.equal(codeOf(() => verifyBundle(bundleOf(signed()), digest, anchors)), 'E_USAGE');
  });

  it('refuses a signature whose digest was swapped for the other content', () => {
    const doc = signed() as Record<string, any>;
    const forged = Buffer.from('{"schemaVersion":3}');
    doc.messageSignature.messageDigest.digest = createHash('sha256').update(forged).digest('base64');
    assert.equal(codeOf(() => verifyBundle(bundleOf(doc), { bytes: forged }, { keys: [trusted], identities: [] })), 'E_SIGNATURE_INVALID');
  });

  it('verifies a DSSE attestation by digest and by bytes', () => {
    const digestHex = createHash('sha256').update(manifest).digest('hex');
    const payload = inTotoStatement({ subjects: [{ name: 'repo', digest: { sha256: digestHex } }], predicateType: 'https://example.com/p', predicate: { x: 1 } });
    const b = bundleOf(dsseBundle({ payload, payloadType: IN_TOTO_PAYLOAD_TYPE, signature: signBytes(key, pae(IN_TOTO_PAYLOAD_TYPE, payload)), keyHint: keyId(key) }));
    const anchors = { keys: [trusted], identities: [] };
    assert.deepEqual(verifyBundle(b, { digest: `sha256:${digestHex}` }, anchors).statement?.predicate, { x: 1 });
    assert.equal(codeOf(() => verifyBundle(b, { bytes: manifest }, anchors)), 'ok');
    assert.equal(codeOf(() => verifyBundle(b, { digest: `sha256:${'2'.repeat(64)}` }, anchors)), 'E_SIGNATURE_SUBJECT_MISMATCH');
  });

  it('compares statement digests case-insensitively', () => {
    const digestHex = createHash('sha256').update(manifest).digest('hex');
    const payload = inTotoStatement({ subjects: [{ name: 'r', digest: { sha256: digestHex.toUpperCase() } }], predicateType: 'p', predicate: null });
    const b = bundleOf(dsseBundle({ payload, payloadType: IN_TOTO_PAYLOAD_TYPE, signature: signBytes(key, pae(IN_TOTO_PAYLOAD_TYPE, payload)), keyHint: keyId(key) }));
    assert.equal(codeOf(() => verifyBundle(b, { digest: `sha256:${digestHex}` }, { keys: [trusted], identities: [] })), 'ok');
  });

  it('refuses a DSSE signature over the payload alone (no PAE)', () => {
    const payload = inTotoStatement({ subjects: [{ name: 'r', digest: { sha256: 'a'.repeat(64) } }], predicateType: 'p', predicate: null });
    const b = bundleOf(dsseBundle({ payload, payloadType: IN_TOTO_PAYLOAD_TYPE, signature: signBytes(key, payload), keyHint: keyId(key) }));
    assert.equal(codeOf(() => verifyBundle(b, { digest: `sha256:${'a'.repeat(64)}` }, { keys: [trusted], identities: [] })), 'E_SIGNATURE_INVALID');
  });

  it('refuses a validly signed DSSE payload that is not an in-toto statement', () => {
    const payload = Buffer.from('hello');
    const b = bundleOf(dsseBundle({ payload, payloadType: 'text/plain', signature: signBytes(key, pae('text/plain', payload)), keyHint: keyId(key) }));
    assert.equal(codeOf(() => verifyBundle(b, { bytes: payload }, { keys: [trusted], identities: [] })), 'E_BUNDLE_INVALID');
  });
});

describe('tampering with real bundles', () => {
  const path = join(JS_BUNDLES, 'bundleV03-dsse.sigstore');
  const tampered = (mutate: (doc: Record<string, any>) => void): ErrorCode | 'ok' => {
    const doc = readJson(path);
    mutate(doc);
    return codeOf(() => verifyBundle(bundleOf(doc), { digest: NPM_SHA512 }, keyless(BRIAN)));
  };

  it('is accepted untouched', () => assert.equal(tampered(() => {}), 'ok'));

  it('refuses a flipped signature byte (the log entry no longer matches)', () => {
    assert.equal(tampered((d) => (d.dsseEnvelope.signatures[0].sig = flip(d.dsseEnvelope.signatures[0].sig, 20))), 'E_TLOG_INVALID');
  });

  it('refuses a changed payload', () => {
    assert.equal(tampered((d) => (d.dsseEnvelope.payload = flip(d.dsseEnvelope.payload, 40))), 'E_TLOG_INVALID');
  });

  it('refuses a flipped certificate byte', () => {
    for (const at of [40, 300, 600]) {
      assert.equal(tampered((d) => (d.verificationMaterial.certificate.rawBytes = flip(d.verificationMaterial.certificate.rawBytes, at))), 'E_CERTIFICATE_INVALID');
    }
  });

  it('refuses a flipped SET byte, a changed log time and a broken inclusion proof', () => {
    assert.equal(tampered((d) => (d.verificationMaterial.tlogEntries[0].inclusionPromise.signedEntryTimestamp = flip(d.verificationMaterial.tlogEntries[0].inclusionPromise.signedEntryTimestamp, 20))), 'E_TLOG_INVALID');
    assert.equal(tampered((d) => (d.verificationMaterial.tlogEntries[0].integratedTime = '1689177044')), 'E_TLOG_INVALID');
    assert.equal(tampered((d) => (d.verificationMaterial.tlogEntries[0].inclusionProof.hashes[0] = flip(d.verificationMaterial.tlogEntries[0].inclusionProof.hashes[0], 3))), 'E_TLOG_INVALID');
  });

  it('refuses a keyless bundle stripped of its log entry (no timestamp left)', () => {
    assert.equal(tampered((d) => (d.verificationMaterial.tlogEntries = [])), 'E_TIMESTAMP_INVALID');
  });

  it('refuses a certificate under a trusted root without its CA', () => {
    const root = readJson(join(SIGSTORE, 'cosign-trusted_root_pgi.json'));
    root.certificateAuthorities = [];
    const trustedRoot = parseTrustedRoot(JSON.stringify(root), 'no-ca.json');
    const code = codeOf(() => verifyBundle(bundleOf(readJson(path)), { digest: NPM_SHA512 }, { ...keyless(BRIAN), trustedRoot }));
    assert.equal(code, 'E_CERTIFICATE_INVALID');
  });
});

describe('tampering with cosign legacy signatures', () => {
  const cosign2Pub = loadPublicKey(readFileSync(join(LEGACY, 'cosign2.pub')), 'cosign2.pub');
  const cosignPub = loadPublicKey(readFileSync(join(LEGACY, 'cosign.pub')), 'cosign.pub');
  const layerOf = (dir: string) => readSigstoreJsonAttachment(readFileSync(join(LEGACY, dir, 'signature-1')));

  it('refuses a flipped signature byte (no log entry); with no key hint it cannot be told from another key', () => {
    const layer = layerOf('dir-img-cosign-valid');
    const sig = 'dev.cosignproject.cosign/signature';
    const bad = { ...layer, annotations: { ...layer.annotations, [sig]: flip(layer.annotations[sig]!, 30) } };
    assert.throws(
      () => verifyBundle(legacyLayerToBundle(bad), { bytes: bad.payload }, { keys: [cosignPub], identities: [] }),
      (e) => isLadingError(e, 'E_KEY_UNTRUSTED') && /none of the 1 trusted key/.test(e.message) && /another key, or altered/.test(e.message),
    );
  });

  it('refuses a flipped SET byte', () => {
    const layer = layerOf('dir-img-cosign-key-rekor-valid');
    const ann = 'dev.sigstore.cosign/bundle';
    const doc = JSON.parse(layer.annotations[ann]!);
    doc.SignedEntryTimestamp = flip(doc.SignedEntryTimestamp, 20);
    const bad = { ...layer, annotations: { ...layer.annotations, [ann]: JSON.stringify(doc) } };
    assert.equal(codeOf(() => verifyBundle(legacyLayerToBundle(bad), { bytes: bad.payload }, { keys: [cosign2Pub], identities: [] })), 'E_TLOG_INVALID');
    // Even with the wrong key the broken log entry is what is reported: it does not depend on the key.
    assert.equal(codeOf(() => verifyBundle(legacyLayerToBundle(bad), { bytes: bad.payload }, { keys: [cosignPub], identities: [] })), 'E_TLOG_INVALID');
  });

  it('refuses a flipped certificate byte', () => {
    const layer = layerOf('dir-img-cosign-fulcio-rekor-valid');
    const ann = 'dev.sigstore.cosign/certificate';
    const pem = layer.annotations[ann]!;
    const der = flip(pem.replace(/-----[A-Z ]+-----|\s/g, ''), 400);
    const bad = { ...layer, annotations: { ...layer.annotations, [ann]: `-----BEGIN CERTIFICATE-----\n${der}\n-----END CERTIFICATE-----\n` } };
    const anchors = keyless({ subject: 'mitr@redhat.com', issuer: 'https://github.com/login/oauth' });
    assert.equal(codeOf(() => verifyBundle(legacyLayerToBundle(bad), { bytes: bad.payload }, anchors)), 'E_CERTIFICATE_INVALID');
  });
});

describe('signatureCheck', () => {
  it('records success with signer, time and predicate type', () => {
    const b = parseBundle(readFileSync(join(JS_BUNDLES, 'bundleV02-dsse.sigstore')), 'b');
    const c = signatureCheck(() => verifyBundle(b, { digest: NPM_SHA512 }, keyless(BRIAN)), 'bundle-file', 'b.sigstore');
    assert.equal(c.ok, true);
    assert.equal(c.where, 'b.sigstore');
    assert.equal(c.signedAt, '2023-07-12T15:50:43.000Z');
    assert.equal(c.predicateType, 'https://github.com/npm/attestation/tree/main/specs/publish/v0.1');
    assert.deepEqual(c.signer, { kind: 'certificate', subject: BRIAN.subject, issuer: BRIAN.issuer });
  });

  it('records a LadingError as a failed check and lets other errors through', () => {
    const c = signatureCheck(() => {
      throw new LadingError('E_KEY_UNTRUSTED', 'nope');
    }, 'referrer', 'sha256:x');
    assert.deepEqual(c, { source: 'referrer', where: 'sha256:x', ok: false, code: 'E_KEY_UNTRUSTED', message: 'nope' });
    assert.throws(() => signatureCheck(() => { throw new TypeError('bug'); }, 'referrer', 'x'), TypeError);
  });
});
