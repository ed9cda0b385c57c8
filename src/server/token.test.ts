import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, generateKeyPairSync } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { isLadingError } from '../errors.js';
import { TokenInvalid, TokenSigner } from './token.js';
import { globMatch, grantedActions, parseTokenAuthConfig } from './token-auth.js';

const T0 = 1_700_000_000_000;
const expect = { issuer: 'iss-a', audience: 'svc-a', now: T0 };
const claims = {
  iss: 'iss-a',
  sub: 'alice',
  aud: 'svc-a',
  iat: T0 / 1000,
  nbf: T0 / 1000,
  exp: T0 / 1000 + 300,
  access: [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }],
};

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');
const parts = (token: string): [string, string, string] => token.split('.') as [string, string, string];
const decode = (part: string): Record<string, unknown> => JSON.parse(Buffer.from(part, 'base64url').toString('utf8'));

function rejectsWith(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (err: unknown) => err instanceof TokenInvalid && re.test(err.message));
}

test('a signed token verifies and gives back its claims; its header pins ES256 and the key id', () => {
  const signer = TokenSigner.generate();
  const token = signer.sign(claims);
  const [h] = parts(token);
  assert.deepEqual(decode(h), { typ: 'JWT', alg: 'ES256', kid: signer.kid });
  const got = signer.verify(token, expect);
  assert.equal(got.sub, 'alice');
  assert.deepEqual(got.access, claims.access);
  assert.match(got.jti, /^[A-Za-z0-9_-]{16,}$/);
});

test('expiry, not-before, audience and issuer are enforced', () => {
  const signer = TokenSigner.generate();
  const token = signer.sign(claims);
  rejectsWith(() => signer.verify(token, { ...expect, now: T0 + 300_000 }), /expired/);
  rejectsWith(() => signer.verify(token, { ...expect, now: T0 - 60_000 }), /not valid yet/);
  rejectsWith(() => signer.verify(token, { ...expect, audience: 'svc-b' }), /another service/);
  rejectsWith(() => signer.verify(token, { ...expect, issuer: 'iss-b' }), /someone else/);
  assert.equal(signer.verify(token, { ...expect, now: T0 + 299_000 }).sub, 'alice');
});

test('tampered tokens are refused: changed claims, alg none, HMAC, another key, a mangled signature', () => {
  const signer = TokenSigner.generate();
  const token = signer.sign(claims);
  const [h, p, s] = parts(token);

  // More access, same signature.
  const widened = b64({ ...decode(p), access: [{ type: 'repository', name: 'team/app', actions: ['pull', 'push', 'delete'] }] });
  rejectsWith(() => signer.verify(`${h}.${widened}.${s}`, expect), /signature/);
  // Another subject.
  rejectsWith(() => signer.verify(`${h}.${b64({ ...decode(p), sub: 'root' })}.${s}`, expect), /signature/);
  // alg none, with and without a signature part.
  const none = b64({ typ: 'JWT', alg: 'none', kid: signer.kid });
  rejectsWith(() => signer.verify(`${none}.${p}.`, expect), /not a signed JWT/);
  rejectsWith(() => signer.verify(`${none}.${p}.${s}`, expect), /not signed with ES256/);
  // HS256 keyed with the public key (the classic confusion attack).
  const hs = b64({ typ: 'JWT', alg: 'HS256', kid: signer.kid });
  const mac = createHmac('sha256', signer.kid).update(`${hs}.${p}`).digest('base64url');
  rejectsWith(() => signer.verify(`${hs}.${p}.${mac}`, expect), /not signed with ES256/);
  // Signed by another key, with its own kid or claiming ours.
  const other = TokenSigner.generate();
  rejectsWith(() => signer.verify(other.sign(claims), expect), /another key/);
  const [, op, os] = parts(other.sign(claims));
  rejectsWith(() => signer.verify(`${h}.${op}.${os}`, expect), /signature/);
  // Mangled signature, wrong lengths, garbage, too long.
  const flipped = Buffer.from(s, 'base64url');
  flipped[10] = (flipped[10] ?? 0) ^ 1;
  rejectsWith(() => signer.verify(`${h}.${p}.${flipped.toString('base64url')}`, expect), /signature/);
  rejectsWith(() => signer.verify(`${h}.${p}.${s.slice(0, 40)}`, expect), /signature/);
  rejectsWith(() => signer.verify('not-a-token', expect), /not a signed JWT/);
  rejectsWith(() => signer.verify(`${h}.${p}.${s}.x`, expect), /not a signed JWT/);
  rejectsWith(() => signer.verify(`${h}.${p}.${'A'.repeat(20_000)}`, expect), /too long/);
});

test('signing keys load from PEM; the wrong kind of key is refused without quoting it', () => {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const pem = privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  const a = TokenSigner.fromPem(pem);
  const b = TokenSigner.fromPem(pem);
  assert.equal(a.kid, b.kid);
  assert.equal(b.verify(a.sign(claims), expect).sub, 'alice', 'a key loaded twice (a restart) verifies its own tokens');
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
  assert.throws(() => TokenSigner.fromPem(rsa), (e: unknown) => isLadingError(e, 'E_USAGE') && /P-256/.test(e.message));
  assert.throws(() => TokenSigner.fromPem('-----BEGIN PRIVATE KEY-----\nsecretish\n-----END PRIVATE KEY-----'), (e: unknown) => isLadingError(e, 'E_USAGE') && !e.message.includes('secretish'));
});

test('globs: * matches any run of characters, slashes included; other characters are literal', () => {
  assert.ok(globMatch('team/*', 'team/app'));
  assert.ok(globMatch('team/*', 'team/a/b'));
  assert.ok(!globMatch('team/*', 'team'));
  assert.ok(!globMatch('team/*', 'teams/app'));
  assert.ok(globMatch('*', 'anything/at/all'));
  assert.ok(globMatch('a.b', 'a.b'));
  assert.ok(!globMatch('a.b', 'axb'), 'a dot is a dot');
  assert.ok(globMatch('*/base', 'x/y/base'));
});

test('the config grants the union of matching rules; anonymous only where said; unknown keys are refused', async () => {
  const hash = bcrypt.hashSync('pw', 4);
  const config = await parseTokenAuthConfig({
    users: { alice: hash, bob: hash },
    rules: [
      { repository: 'team/*', users: ['alice'], actions: ['*'] },
      { repository: ['team/*', 'shared'], users: 'bob', actions: ['pull'] },
      { repository: 'public/*', anonymous: true, actions: ['pull'] },
      { repository: 'shared', users: ['*'], actions: ['pull', 'push'] },
    ],
  });
  assert.equal(config.service, 'lading');
  assert.equal(config.tokenLifetime, 300);
  assert.deepEqual([...grantedActions(config, 'alice', 'team/x')].sort(), ['delete', 'pull', 'push']);
  assert.deepEqual([...grantedActions(config, 'bob', 'team/x')], ['pull']);
  assert.deepEqual([...grantedActions(config, 'bob', 'shared')].sort(), ['pull', 'push']);
  assert.deepEqual([...grantedActions(config, undefined, 'public/x')], ['pull']);
  assert.deepEqual([...grantedActions(config, undefined, 'team/x')], []);
  assert.deepEqual([...grantedActions(config, 'alice', 'other')], []);
  assert.deepEqual(config.catalog, { users: ['*'], anonymous: false });

  const bad = async (raw: unknown, re: RegExp): Promise<void> => {
    await assert.rejects(parseTokenAuthConfig(raw), (e: unknown) => isLadingError(e, 'E_USAGE') && re.test(e.message));
  };
  await bad({ rulez: [] }, /unknown key "rulez"/);
  await bad({ rules: [{ repository: 'a', users: ['x'], actions: ['write'] }] }, /unknown action "write"/);
  await bad({ rules: [{ repository: 'a', actions: ['pull'] }] }, /grants to nobody/);
  await bad({ rules: [{ users: ['x'], actions: ['pull'] }] }, /names no repository/);
  await bad({ rules: [{ repository: 'A B', users: ['x'], actions: ['pull'] }] }, /not a repository name/);
  await bad({ tokenLifetime: 0 }, /tokenLifetime/);
  await bad({ users: { carol: 'plaintext-password' } }, /not a bcrypt entry/);
  await assert.rejects(parseTokenAuthConfig({ users: { carol: 'plaintext-password' } }), (e: unknown) => !(e as Error).message.includes('plaintext-password'));
});
