/**
 * The trust verbs that need no registry: verify-blob over the real sigstore fixtures, key generation,
 * and the command-line refusals.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from './support/fixtures.js';
import { lading, type CliResult } from './support/cli.js';

const S = (name: string) => fixture('sigstore', name);
const PROVENANCE = S('sigstore-go-bundle-provenance.json');
const PROVENANCE_DIGEST = 'sha512:76176ffa33808b54602c7c35de5c6e9a4deb96066dba6533f50ac234f4f1f4c6b3527515dc17c06fbe2860030f410eee69ea20079bd3a2c6f3dcf3b329b10751';
const WORKFLOW = 'https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main';
const GITHUB_ACTIONS = 'https://token.actions.githubusercontent.com';

let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-trust-cli-'));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

const cli = (args: string[], env: NodeJS.ProcessEnv = {}) => lading([...args, '--json'], { env });

function refused(r: CliResult, code: string, exit = 1): any {
  assert.equal(r.code, exit, `${r.stderr}${r.stdout}`);
  assert.equal(r.json?.error?.code, code, r.stdout);
  return r.json.error;
}

test('verify-blob accepts the npm provenance bundle for its digest and exact identity, offline', async () => {
  const r = await cli(['verify-blob', PROVENANCE_DIGEST, '--bundle', PROVENANCE, '--certificate-identity', WORKFLOW, '--certificate-oidc-issuer', GITHUB_ACTIONS]);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.equal(r.json.allowed, true);
  assert.deepEqual(r.json.checks[0].signer, { kind: 'certificate', subject: WORKFLOW, issuer: GITHUB_ACTIONS });
  const pattern = await cli(['verify-blob', PROVENANCE_DIGEST, '--bundle', PROVENANCE, '--certificate-identity-regexp', 'https://github\\.com/sigstore/sigstore-js/\\.github/workflows/release\\.yml@refs/heads/.*', '--certificate-oidc-issuer', GITHUB_ACTIONS]);
  assert.equal(pattern.code, 0, pattern.stdout);
});

test('verify-blob refuses other identities, look-alikes, unanchored patterns and other digests with precise codes', async () => {
  const base = ['verify-blob', PROVENANCE_DIGEST, '--bundle', PROVENANCE];
  for (const identity of [`${WORKFLOW}-evil`, WORKFLOW.replace('sigstore/sigstore-js', 'evil/sigstore/sigstore-js'), WORKFLOW.slice(0, -1)]) {
    refused(await cli([...base, '--certificate-identity', identity, '--certificate-oidc-issuer', GITHUB_ACTIONS]), 'E_IDENTITY_MISMATCH');
  }
  refused(await cli([...base, '--certificate-identity-regexp', 'sigstore-js', '--certificate-oidc-issuer', GITHUB_ACTIONS]), 'E_IDENTITY_MISMATCH');
  refused(await cli([...base, '--certificate-identity', WORKFLOW, '--certificate-oidc-issuer', 'https://token.actions.githubusercontent.com.evil']), 'E_IDENTITY_MISMATCH');
  const other = `sha512:${'0'.repeat(128)}`;
  refused(await cli(['verify-blob', other, '--bundle', PROVENANCE, '--certificate-identity', WORKFLOW, '--certificate-oidc-issuer', GITHUB_ACTIONS]), 'E_SIGNATURE_SUBJECT_MISMATCH');
  // A file is hashed as the bundle's statement names it (sha512 here): this file is not the package.
  const file = join(work, 'not-the-package.tgz');
  await writeFile(file, 'not sigstore-1.3.0.tgz');
  refused(await cli(['verify-blob', file, '--bundle', PROVENANCE, '--certificate-identity', WORKFLOW, '--certificate-oidc-issuer', GITHUB_ACTIONS]), 'E_SIGNATURE_SUBJECT_MISMATCH');
});

test("verify-blob checks cosign's OCI attestation against its own trusted root", async () => {
  const digest = 'sha256:732112270d7e59418a8c080b134b24cabd67d250d0d0147a97ed95ba5c280aa4';
  const args = ['verify-blob', digest, '--bundle', S('cosign-oci-attestation.sigstore.json'), '--certificate-identity', 'cody@soyland.com', '--certificate-oidc-issuer', 'https://github.com/login/oauth'];
  const own = await cli([...args, '--trusted-root', S('cosign-trusted_root_pgi.json')]);
  assert.equal(own.code, 0, own.stdout);
  const builtIn = await cli(args);
  assert.equal(builtIn.code, 0, builtIn.stdout);
});

test('command-line refusals: bad digests, broken bundles, nothing to trust, a policy beside keys', async () => {
  refused(await cli(['verify-blob', PROVENANCE_DIGEST.toUpperCase().replace('SHA512', 'sha512'), '--bundle', PROVENANCE, '--certificate-identity', WORKFLOW, '--certificate-oidc-issuer', GITHUB_ACTIONS]), 'E_USAGE', 2);
  const broken = join(work, 'broken.sigstore.json');
  await writeFile(broken, '{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}');
  refused(await cli(['verify-blob', PROVENANCE_DIGEST, '--bundle', broken, '--certificate-identity', WORKFLOW, '--certificate-oidc-issuer', GITHUB_ACTIONS]), 'E_BUNDLE_INVALID');
  refused(await cli(['verify-blob', PROVENANCE_DIGEST, '--bundle', PROVENANCE]), 'E_USAGE', 2);
  refused(await cli(['verify-blob', PROVENANCE_DIGEST, '--bundle', PROVENANCE, '--certificate-identity', WORKFLOW]), 'E_USAGE', 2);
  const policy = join(work, 'policy.yaml');
  await writeFile(policy, 'version: "1"\npolicies:\n  - name: all\n    scopes: ["*"]\n    level: audit\n    identities: [{ issuer: x, subject: y }]\n');
  refused(await cli(['verify', 'layout:/nonexistent:1', '--policy', policy, '--key', 'k.pub']), 'E_USAGE', 2);
  await writeFile(policy, 'version: "1"\npolicies:\n  - name: all\n    scopes: ["*"]\n    levle: audit\n');
  const bad = refused(await cli(['verify', 'layout:/nonexistent:1', '--policy', policy]), 'E_POLICY_INVALID');
  assert.match(bad.message, /policies\[0\]\.levle/);
});

test('key generate writes an encrypted private key readable by its owner only, and refuses to overwrite', async () => {
  const prefix = join(work, 'release');
  const made = await cli(['key', 'generate', '--output-key-prefix', prefix], { LADING_PASSWORD: 'pw' });
  assert.equal(made.code, 0, made.stderr + made.stdout);
  assert.match(made.json.keyId, /^sha256:[0-9a-f]{64}$/);
  assert.equal((await stat(`${prefix}.key`)).mode & 0o777, 0o600);
  const again = await cli(['key', 'generate', '--output-key-prefix', prefix], { LADING_PASSWORD: 'pw' });
  refused(again, 'E_USAGE', 2);
  // The passphrase may come from stdin instead; an empty one is refused (no unencrypted keys).
  const empty = await lading(['key', 'generate', '--output-key-prefix', join(work, 'empty'), '--json'], { input: '\n', env: { LADING_PASSWORD: undefined } });
  refused(empty, 'E_KEY_INVALID');
  const piped = await lading(['key', 'generate', '--output-key-prefix', join(work, 'piped'), '--json'], { input: 'from stdin\n', env: { LADING_PASSWORD: undefined } });
  assert.equal(piped.code, 0, piped.stderr + piped.stdout);
});
