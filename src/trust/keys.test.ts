import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, verify } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fixture } from '../../test/support/fixtures.js';
import { isLadingError } from '../errors.js';
import { generateKeyPair, keyId, loadPrivateKey, loadPublicKey, signBytes } from './keys.js';

const C = (name: string): string => fixture('sigstore', 'containers-image-fixtures', 'signature', 'fixtures', name);
const pair = generateKeyPair('correct horse');

describe('generateKeyPair / loadPrivateKey', () => {
  it('writes an encrypted PKCS#8 P-256 key', () => {
    assert.match(pair.privateKeyPem, /^-----BEGIN ENCRYPTED PRIVATE KEY-----/);
    assert.match(pair.publicKeyPem, /^-----BEGIN PUBLIC KEY-----/);
    const key = loadPrivateKey(pair.privateKeyPem, 'correct horse');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  });

  it('refuses an empty passphrase', () => {
    assert.throws(() => generateKeyPair(''), (e) => isLadingError(e, 'E_KEY_INVALID'));
  });

  it('refuses a wrong passphrase without echoing the key', () => {
    assert.throws(
      () => loadPrivateKey(Buffer.from(pair.privateKeyPem), 'wrong'),
      (e) => isLadingError(e, 'E_KEY_INVALID') && /passphrase/.test(e.message) && !e.message.includes('BEGIN'),
    );
  });

  it("refuses cosign's own key format with a hint", () => {
    const pem = '-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\neyJrZGYiOnt9fQ==\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n';
    assert.throws(() => loadPrivateKey(pem, 'x'), (e) => isLadingError(e, 'E_KEY_INVALID') && /cosign/.test(e.message) && !!e.hint);
  });

  it('refuses garbage and non-P-256 keys', () => {
    assert.throws(() => loadPrivateKey('not a key', 'x'), (e) => isLadingError(e, 'E_KEY_INVALID'));
    const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.throws(() => loadPrivateKey(p384, ''), (e) => isLadingError(e, 'E_KEY_INVALID') && /secp384r1/.test(e.message));
  });
});

describe('loadPublicKey / keyId', () => {
  it("reads cosign.pub and names it by its SPKI digest", () => {
    const k = loadPublicKey(readFileSync(C('cosign.pub')), 'cosign.pub');
    assert.equal(k.source, 'cosign.pub');
    assert.match(k.id, /^sha256:[0-9a-f]{64}$/);
    assert.equal(k.id, keyId(k.key));
  });

  it('gives a private key and its public half the same id', () => {
    const priv = loadPrivateKey(pair.privateKeyPem, 'correct horse');
    assert.equal(keyId(priv), loadPublicKey(pair.publicKeyPem, 'p').id);
  });

  it('accepts RSA and P-384 public keys, and refuses Ed25519, which could never verify', () => {
    const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }) as string;
    assert.throws(() => loadPublicKey(ed, 'ed.pub'), (e) => isLadingError(e, 'E_KEY_INVALID') && /Ed25519/.test(e.message));
    for (const k of [
      generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey,
      generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey,
    ]) {
      assert.equal(loadPublicKey(k.export({ type: 'spki', format: 'pem' }) as string, 'k').key.asymmetricKeyType, k.asymmetricKeyType);
    }
  });

  it('refuses weak, private and malformed keys', () => {
    const weak = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
    assert.throws(() => loadPublicKey(weak, 'weak.pub'), (e) => isLadingError(e, 'E_KEY_INVALID') && /1024/.test(e.message));
    assert.throws(() => loadPublicKey(pair.privateKeyPem, 'oops.key'), (e) => isLadingError(e, 'E_KEY_INVALID') && /private/.test(e.message));
    assert.throws(() => loadPublicKey(readFileSync(C('fulcio_v1.crt.pem')), 'cert'), (e) => isLadingError(e, 'E_KEY_INVALID'));
    assert.throws(
      () => loadPublicKey('-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n', 'bad.pub'),
      (e) => isLadingError(e, 'E_KEY_INVALID'),
    );
    const k1 = generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'pem' }) as string;
    assert.throws(() => loadPublicKey(k1, 'k1.pub'), (e) => isLadingError(e, 'E_KEY_INVALID'));
  });
});

describe('signBytes', () => {
  it('makes a DER ECDSA-SHA256 signature the public key verifies', () => {
    const priv = loadPrivateKey(pair.privateKeyPem, 'correct horse');
    const data = Buffer.from('payload');
    const sig = signBytes(priv, data);
    assert.equal(sig[0], 0x30);
    assert.equal(verify('sha256', data, createPublicKey(pair.publicKeyPem), sig), true);
    assert.equal(verify('sha256', Buffer.from('other'), createPublicKey(pair.publicKeyPem), sig), false);
  });

  it('refuses a public key', () => {
    assert.throws(() => signBytes(createPublicKey(pair.publicKeyPem), Buffer.alloc(1)), (e) => isLadingError(e, 'E_KEY_INVALID'));
  });
});
