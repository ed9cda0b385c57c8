import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto';
import { LadingError } from '../errors.js';

/**
 * Bearer tokens of the distribution token spec (docs/spec/auth/jwt.md): compact JWS, ES256 over P-256,
 * with the claims `iss sub aud exp nbf iat jti access`. Written against node:crypto directly: one algorithm,
 * fixed in advance, so that a token cannot choose how it is checked (no `none`, no HMAC-with-public-key).
 */

export interface AccessEntry {
  /** `repository` or `registry`. */
  type: string;
  name: string;
  actions: string[];
}

export interface TokenClaims {
  iss: string;
  /** The user the token was issued to; `""` for an anonymous client. */
  sub: string;
  aud: string;
  exp: number;
  nbf: number;
  iat: number;
  jti: string;
  access: AccessEntry[];
}

export const TOKEN_ALG = 'ES256';
/** Longest token accepted: ours are far shorter; anything bigger is refused before any parsing. */
const MAX_TOKEN_CHARS = 16 * 1024;
/** Clock difference tolerated on `nbf` and `iat` (the issuer is this process, so a little is plenty). */
const LEEWAY_S = 5;
const B64URL = /^[A-Za-z0-9_-]+$/;

export class TokenSigner {
  readonly kid: string;
  private readonly privateKey: KeyObject;
  private readonly publicKey: KeyObject;

  constructor(privateKey: KeyObject) {
    if (privateKey.type !== 'private' || privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new LadingError('E_USAGE', 'the token signing key must be an EC P-256 private key', {
        hint: 'create one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out token-key.pem',
      });
    }
    this.privateKey = privateKey;
    this.publicKey = createPublicKey(privateKey);
    this.kid = thumbprint(this.publicKey);
  }

  /** A fresh key, for a server whose tokens need not outlive it. */
  static generate(): TokenSigner {
    return new TokenSigner(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey);
  }

  /** A PEM (PKCS#8 or SEC1) private key. The key material never appears in an error message. */
  static fromPem(pem: string | Buffer, source = 'signing key'): TokenSigner {
    let key: KeyObject;
    try {
      key = createPrivateKey({ key: pem, format: 'pem' });
    } catch {
      throw new LadingError('E_USAGE', `${source} is not a PEM private key`, {
        hint: 'create one with: openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out token-key.pem',
      });
    }
    return new TokenSigner(key);
  }

  sign(claims: Omit<TokenClaims, 'jti'> & { jti?: string }): string {
    const header = { typ: 'JWT', alg: TOKEN_ALG, kid: this.kid };
    const body: TokenClaims = { ...claims, jti: claims.jti ?? randomBytes(16).toString('base64url') };
    const input = `${b64json(header)}.${b64json(body)}`;
    const sig = sign('sha256', Buffer.from(input), { key: this.privateKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${sig.toString('base64url')}`;
  }

  /**
   * Checks a token completely and returns its claims, or throws a TokenInvalid saying why (for the
   * `error_description`; never containing the token). Order: shape, header (alg pinned, our kid),
   * signature, and only then the claims.
   */
  verify(token: string, expect: { issuer: string; audience: string; now: number }): TokenClaims {
    if (token.length > MAX_TOKEN_CHARS) throw new TokenInvalid('the token is too long');
    const parts = token.split('.');
    if (parts.length !== 3 || !parts.every((p) => B64URL.test(p))) throw new TokenInvalid('the token is not a signed JWT');
    const [h, p, s] = parts as [string, string, string];
    const header = parseJsonObject(h);
    if (!header) throw new TokenInvalid('the token header is not JSON');
    if (header.alg !== TOKEN_ALG) throw new TokenInvalid(`the token is not signed with ${TOKEN_ALG}`);
    if (header.typ !== undefined && header.typ !== 'JWT') throw new TokenInvalid('the token is not a JWT');
    if (header.crit !== undefined) throw new TokenInvalid('the token has critical header parameters');
    if (header.kid !== this.kid) throw new TokenInvalid('the token was signed by another key');
    const sig = Buffer.from(s, 'base64url');
    if (sig.length !== 64 || !verify('sha256', Buffer.from(`${h}.${p}`), { key: this.publicKey, dsaEncoding: 'ieee-p1363' }, sig)) {
      throw new TokenInvalid('the token signature does not verify');
    }
    const c = parseJsonObject(p);
    if (!c) throw new TokenInvalid('the token claims are not JSON');
    if (c.iss !== expect.issuer) throw new TokenInvalid('the token was issued by someone else');
    const aud = c.aud;
    if (!(aud === expect.audience || (Array.isArray(aud) && aud.includes(expect.audience)))) {
      throw new TokenInvalid('the token is meant for another service');
    }
    for (const k of ['exp', 'nbf', 'iat'] as const) {
      if (typeof c[k] !== 'number' || !Number.isFinite(c[k])) throw new TokenInvalid(`the token has no valid ${k}`);
    }
    const now = expect.now / 1000;
    const exp = c.exp as number;
    if (now >= exp) throw new TokenInvalid('the token has expired');
    if ((c.nbf as number) > now + LEEWAY_S || (c.iat as number) > now + LEEWAY_S) throw new TokenInvalid('the token is not valid yet');
    if (typeof c.sub !== 'string') throw new TokenInvalid('the token has no subject');
    if (typeof c.jti !== 'string') throw new TokenInvalid('the token has no id');
    if (!Array.isArray(c.access)) throw new TokenInvalid('the token has no access claim');
    const access: AccessEntry[] = [];
    for (const e of c.access as unknown[]) {
      if (
        typeof e !== 'object' || e === null ||
        typeof (e as AccessEntry).type !== 'string' || typeof (e as AccessEntry).name !== 'string' ||
        !Array.isArray((e as AccessEntry).actions) || !(e as AccessEntry).actions.every((a) => typeof a === 'string')
      ) {
        throw new TokenInvalid('the token access claim is malformed');
      }
      const entry = e as AccessEntry;
      access.push({ type: entry.type, name: entry.name, actions: [...entry.actions] });
    }
    return { iss: c.iss as string, sub: c.sub, aud: expect.audience, exp, nbf: c.nbf as number, iat: c.iat as number, jti: c.jti, access };
  }
}

/** Why a token was not accepted (answered as `error="invalid_token"`). */
export class TokenInvalid extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenInvalid';
  }
}

/** RFC 7638 thumbprint of an EC public key, base64url: a stable `kid`. */
function thumbprint(pub: KeyObject): string {
  const jwk = pub.export({ format: 'jwk' });
  const canonical = JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y });
  return createHash('sha256').update(canonical).digest('base64url');
}

function b64json(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url');
}

function parseJsonObject(part: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
