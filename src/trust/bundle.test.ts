import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fixture } from '../../test/support/fixtures.js';
import { isLadingError } from '../errors.js';
import { bundleKind, dsseBundle, MAX_BUNDLE_BYTES, messageSignatureBundle, parseBundle } from './bundle.js';
import { BUNDLE_MEDIA_TYPE } from './types.js';

const json = (o: unknown): Buffer => Buffer.from(JSON.stringify(o));

describe('parseBundle', () => {
  it('reads every real bundle fixture', () => {
    const files = [
      ...['bundleV01-dsse-no-proof', 'bundleV01-full-cert-chain', 'bundleV02-intoto', 'bundleV03-dsse', 'bundleV03-intoto'].map((n) =>
        fixture('sigstore', 'sigstore-js-bundles', `${n}.sigstore`),
      ),
      fixture('sigstore', 'sigstore-go-bundle-provenance.json'),
      fixture('sigstore', 'cosign-oci-attestation.sigstore.json'),
    ];
    for (const f of files) assert.equal(bundleKind(parseBundle(readFileSync(f), f)), 'dsse');
  });

  it('refuses non-JSON, non-objects and non-bundles', () => {
    for (const bytes of [Buffer.from('{'), json([1]), json({ mediaType: 'x' }), json({})]) {
      assert.throws(() => parseBundle(bytes, 'b.json'), (e) => isLadingError(e, 'E_BUNDLE_INVALID') && e.message.startsWith('b.json'));
    }
  });

  it('refuses a bundle with a missing signature', () => {
    const b = messageSignatureBundle({ artifactDigest: Buffer.alloc(32, 1), signature: Buffer.alloc(0), keyHint: 'k' });
    assert.throws(() => parseBundle(json(b), 'b'), (e) => isLadingError(e, 'E_BUNDLE_INVALID') && /signature/.test(e.message));
  });

  it('refuses a bundle over the size cap before parsing it', () => {
    const big = Buffer.alloc(MAX_BUNDLE_BYTES + 1, 0x20);
    assert.throws(() => parseBundle(big, 'big'), (e) => isLadingError(e, 'E_BUNDLE_INVALID') && /limit/.test(e.message));
  });
});

describe('building bundles', () => {
  it('builds a v0.3 keyed message-signature bundle the parser accepts', () => {
    const b = messageSignatureBundle({ artifactDigest: Buffer.alloc(32, 7), signature: Buffer.from([0x30, 1, 2]), keyHint: 'sha256:abc' });
    assert.equal((b as { mediaType: string }).mediaType, BUNDLE_MEDIA_TYPE);
    const parsed = parseBundle(json(b), 'b');
    assert.equal(bundleKind(parsed), 'message-signature');
    assert.deepEqual(parsed.verificationMaterial.content, { $case: 'publicKey', publicKey: { hint: 'sha256:abc' } });
    assert.equal(parsed.verificationMaterial.tlogEntries.length, 0);
  });

  it('builds a v0.3 DSSE bundle the parser accepts', () => {
    const b = dsseBundle({ payload: Buffer.from('{}'), payloadType: 'application/vnd.in-toto+json', signature: Buffer.from([1]), keyHint: 'h' });
    const parsed = parseBundle(json(b), 'b');
    assert.equal(bundleKind(parsed), 'dsse');
    assert.ok(parsed.content.$case === 'dsseEnvelope');
    assert.equal(Buffer.from(parsed.content.dsseEnvelope.payload).toString(), '{}');
  });
});
