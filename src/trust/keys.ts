import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { LadingError } from '../errors.js';
import type { TrustedKey } from './types.js';

/** Key files are a few hundred bytes; anything far larger is not one and is not parsed. */
const MAX_KEY_FILE_BYTES = 64 * 1024;
const MIN_RSA_BITS = 2048;
const PRIVATE_KEY_HINT = 'lading signs with an ECDSA P-256 key in PKCS#8 PEM ("BEGIN ENCRYPTED PRIVATE KEY"); create one with `lading key generate`';

function pemText(pem: string | Buffer, what: string): string {
  const text = typeof pem === 'string' ? pem : pem.toString('utf8');
  if (Buffer.byteLength(text) > MAX_KEY_FILE_BYTES) {
    throw new LadingError('E_KEY_INVALID', `${what} is larger than ${MAX_KEY_FILE_BYTES} bytes; it is not a PEM key`);
  }
  return text;
}

export function generateKeyPair(passphrase: string): { privateKeyPem: string; publicKeyPem: string } {
  if (typeof passphrase !== 'string' || passphrase === '') {
    throw new LadingError('E_KEY_INVALID', 'refusing to write an unencrypted private key: the passphrase is empty', {
      hint: 'give a passphrase (e.g. through LADING_PASSWORD)',
    });
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', {
    namedCurve: 'P-256',
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase },
  });
  return { privateKeyPem: privateKey, publicKeyPem: publicKey };
}

export function loadPrivateKey(pem: string | Buffer, passphrase: string): KeyObject {
  const text = pemText(pem, 'the private key');
  if (/-----BEGIN (?:ENCRYPTED )?(?:SIGSTORE|COSIGN) PRIVATE KEY-----/.test(text)) {
    throw new LadingError('E_KEY_INVALID', "the private key is in cosign's own encrypted format, which lading does not read", {
      hint: PRIVATE_KEY_HINT,
    });
  }
  const encrypted = text.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----');
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: text, format: 'pem', passphrase });
  } catch {
    // The library's message is not shown: it says nothing useful and the input is secret.
    throw new LadingError(
      'E_KEY_INVALID',
      encrypted ? 'cannot decrypt the private key: the passphrase is wrong or the file is damaged' : 'the private key is not a readable PEM key',
      { hint: PRIVATE_KEY_HINT },
    );
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
    const kind = key.asymmetricKeyType === 'ec' ? `EC ${key.asymmetricKeyDetails?.namedCurve}` : key.asymmetricKeyType;
    throw new LadingError('E_KEY_INVALID', `the private key is ${kind}; lading signs with ECDSA P-256 keys only`, { hint: PRIVATE_KEY_HINT });
  }
  return key;
}

function describeUnsupported(key: KeyObject): string | undefined {
  switch (key.asymmetricKeyType) {
    case 'ec': {
      const curve = key.asymmetricKeyDetails?.namedCurve;
      return curve === 'prime256v1' || curve === 'secp384r1' ? undefined : `an EC key on curve ${curve}`;
    }
    case 'rsa': {
      const bits = key.asymmetricKeyDetails?.modulusLength ?? 0;
      return bits >= MIN_RSA_BITS ? undefined : `a ${bits}-bit RSA key (at least ${MIN_RSA_BITS} bits are required)`;
    }
    case 'ed25519':
      // @sigstore/verify hashes before verifying, which Ed25519 does not allow: such a key could never verify.
      return 'an Ed25519 key (sigstore verification here supports ECDSA and RSA keys)';
    default:
      return `a ${key.asymmetricKeyType} key`;
  }
}

/** Reads a trusted public key (SubjectPublicKeyInfo PEM, as `cosign.pub` is). */
export function loadPublicKey(pem: string | Buffer, source: string): TrustedKey {
  const text = pemText(pem, source);
  const hint = 'a public key file holds one "-----BEGIN PUBLIC KEY-----" block (ECDSA P-256/P-384 or RSA), like cosign.pub';
  if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    // Deriving the public half would work, but a private key handed out as a trust anchor is a mistake to stop.
    throw new LadingError('E_KEY_INVALID', `${source} holds a private key, not a public key`, { hint });
  }
  if (!text.includes('-----BEGIN PUBLIC KEY-----')) {
    throw new LadingError('E_KEY_INVALID', `${source} is not a PEM public key`, { hint });
  }
  let key: KeyObject;
  try {
    key = createPublicKey({ key: text, format: 'pem' });
  } catch (err) {
    throw new LadingError('E_KEY_INVALID', `${source} is not a readable public key: ${(err as Error).message}`, { hint });
  }
  const unsupported = describeUnsupported(key);
  if (unsupported) throw new LadingError('E_KEY_INVALID', `${source} is ${unsupported}, which lading does not accept`, { hint });
  return { id: keyId(key), source, key };
}

/** `sha256:<hex>` of the DER SubjectPublicKeyInfo; for a private key, of its public half. */
export function keyId(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/** A DER signature over `data`, with the hash the key's curve is paired with. */
export function signBytes(key: KeyObject, data: Buffer): Buffer {
  if (key.type !== 'private') throw new LadingError('E_KEY_INVALID', 'signing needs a private key');
  if (key.asymmetricKeyType !== 'ec') throw new LadingError('E_KEY_INVALID', `cannot sign with a ${key.asymmetricKeyType} key; use ECDSA P-256`);
  const hash = key.asymmetricKeyDetails?.namedCurve === 'secp384r1' ? 'sha384' : 'sha256';
  return sign(hash, data, { key, dsaEncoding: 'der' });
}
