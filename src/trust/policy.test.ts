import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify as toYaml } from 'yaml';
import { LadingError, type ErrorCode } from '../errors.js';
import {
  decisionError,
  evaluatePolicy,
  formatDecision,
  layoutRepository,
  loadPolicy,
  normalizeRepository,
  parsePolicy,
  selectPolicy,
  type PolicyEntry,
  type TrustPolicy,
} from './policy.js';
import { segmentMatches, segmentsMatch } from './policy-scope.js';
import type { SignatureCheck } from './types.js';

const PUBLIC_GOOD_ROOT = fileURLToPath(new URL('../../assets/trusted-root.public-good.json', import.meta.url));

function publicKeyPem(): string {
  const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return publicKey.export({ type: 'spki', format: 'pem' }) as string;
}

/** A temporary policy directory holding `cosign.pub` (and whatever a test adds). */
function workspace(): { dir: string; pem: string } {
  const dir = mkdtempSync(join(tmpdir(), 'lading-policy-'));
  const pem = publicKeyPem();
  writeFileSync(join(dir, 'cosign.pub'), pem);
  return { dir, pem };
}

const ID = { issuer: 'https://github.com/login/oauth', subject: 'someone@example.com' };

function doc(policies: unknown[], extra: Record<string, unknown> = {}): string {
  return JSON.stringify({ version: '1', policies, ...extra });
}

function enforce(name: string, scopes: string[], more: Record<string, unknown> = {}): Record<string, unknown> {
  return { name, scopes, level: 'enforce', identities: [ID], ...more };
}

async function parse(text: string, baseDir = tmpdir()): Promise<TrustPolicy> {
  return parsePolicy(text, { source: 'policy.yaml', baseDir });
}

async function rejects(text: string, code: ErrorCode, includes: string | RegExp, baseDir?: string): Promise<LadingError> {
  let caught: unknown;
  try {
    await parse(text, baseDir);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof LadingError, `expected a LadingError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (typeof includes === 'string') assert.ok(caught.message.includes(includes), `"${caught.message}" lacks "${includes}"`);
  else assert.match(caught.message, includes);
  return caught;
}

function throwsCode(fn: () => unknown, code: ErrorCode, includes?: string): LadingError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof LadingError, `expected a LadingError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (includes) assert.ok(caught.message.includes(includes), `"${caught.message}" lacks "${includes}"`);
  return caught;
}

// ---------------------------------------------------------------- parsing

test('parses a JSON policy: defaults, keys relative to baseDir, identities', async () => {
  const { dir } = workspace();
  const policy = await parse(
    doc([
      { name: 'prod', scopes: ['localhost:5000/app'], level: 'enforce', keys: ['cosign.pub'] },
      { name: 'rest', scopes: ['*'], level: 'audit', signatures: 'optional', identities: [ID] },
    ]),
    dir,
  );
  assert.equal(policy.source, 'policy.yaml');
  assert.equal(policy.policies.length, 2);
  const [prod, rest] = policy.policies as [PolicyEntry, PolicyEntry];
  assert.equal(prod.name, 'prod');
  assert.deepEqual(prod.scopes, ['localhost:5000/app']);
  assert.equal(prod.level, 'enforce');
  assert.equal(prod.signatures, 'required');
  assert.equal(prod.anchors.keys.length, 1);
  assert.match(prod.anchors.keys[0]!.id, /^sha256:[0-9a-f]{64}$/);
  assert.equal(prod.anchors.keys[0]!.source, join(dir, 'cosign.pub'));
  assert.deepEqual(prod.anchors.identities, []);
  assert.equal(prod.anchors.trustedRoot, undefined);
  assert.equal(rest.signatures, 'optional');
  assert.equal(rest.level, 'audit');
  assert.deepEqual(rest.anchors.identities, [ID]);
});

test('YAML and JSON spellings of one policy parse alike; inline PEM keys work', async () => {
  const { dir, pem } = workspace();
  const policies = [
    { name: 'prod', scopes: ['localhost:5000/team/*'], level: 'enforce', keys: [{ pem }], identities: [{ issuer: ID.issuer, subjectPattern: '.*@example\\.com' }] },
  ];
  const yamlText = `# trust policy\nversion: "1"\n${toYaml({ policies })}`;
  const fromYaml = await parse(yamlText, dir);
  const fromJson = await parse(doc(policies), dir);
  const strip = (p: TrustPolicy) => p.policies.map((e) => ({ ...e, anchors: { ...e.anchors, keys: e.anchors.keys.map((k) => [k.id, k.source]) } }));
  assert.deepEqual(strip(fromYaml), strip(fromJson));
  assert.equal(fromYaml.policies[0]!.anchors.keys[0]!.source, 'inline');
});

test('unknown fields are refused at every level, naming their path', async () => {
  await rejects(doc([enforce('a', ['*'])], { verison: '1' }), 'E_POLICY_INVALID', 'verison: unknown field');
  await rejects(doc([{ ...enforce('a', ['*']), levle: 'audit' }]), 'E_POLICY_INVALID', 'policies[0].levle: unknown field');
  const { dir } = workspace();
  await rejects(doc([enforce('a', ['*'], { keys: ['cosign.pub', { pm: 'x' }] })]), 'E_POLICY_INVALID', 'policies[0].keys[1].pm: unknown field', dir);
  await rejects(
    doc([enforce('a', ['x.io/a']), enforce('b', ['*'], { identities: [{ ...ID, subjectRegex: '.*' }] })]),
    'E_POLICY_INVALID',
    'policies[1].identities[0].subjectRegex: unknown field',
  );
});

test('version is required and must be "1" (an unquoted YAML 1 is the same)', async () => {
  const policies = [enforce('a', ['*'])];
  await rejects(JSON.stringify({ policies }), 'E_POLICY_INVALID', 'version: is required');
  await rejects(JSON.stringify({ version: '2', policies }), 'E_POLICY_INVALID', 'unsupported version "2"');
  await rejects(JSON.stringify({ version: '1.0', policies }), 'E_POLICY_INVALID', 'unsupported version');
  const ok = await parse(`version: 1\n${toYaml({ policies })}`);
  assert.equal(ok.policies.length, 1);
});

test('malformed documents and shapes are E_POLICY_INVALID', async () => {
  await rejects('version: "1"\npolicies: [\n', 'E_POLICY_INVALID', 'policy.yaml');
  await rejects('version: "1"\nversion: "1"\npolicies: []\n', 'E_POLICY_INVALID', 'policy.yaml');
  await rejects('', 'E_POLICY_INVALID', 'empty');
  await rejects('[]', 'E_POLICY_INVALID', 'must be a mapping');
  await rejects(doc([]), 'E_POLICY_INVALID', 'policies: must hold at least one policy');
  await rejects(JSON.stringify({ version: '1' }), 'E_POLICY_INVALID', 'policies: is required');
  await rejects(doc(['prod']), 'E_POLICY_INVALID', 'policies[0]: must be a mapping');
  await rejects(doc([{ scopes: ['*'], level: 'enforce', identities: [ID] }]), 'E_POLICY_INVALID', 'policies[0].name');
  await rejects(doc([{ name: 'a', level: 'enforce', identities: [ID] }]), 'E_POLICY_INVALID', 'policies[0].scopes: is required');
  await rejects(doc([enforce('a', [])]), 'E_POLICY_INVALID', 'policies[0].scopes: must name at least one scope');
  await rejects(doc([{ name: 'a', scopes: ['*'], identities: [ID] }]), 'E_POLICY_INVALID', 'policies[0].level: is required');
  await rejects(doc([enforce('a', ['*'], { level: 'strict' })]), 'E_POLICY_INVALID', 'policies[0].level: must be one of enforce, audit, skip');
  await rejects(doc([enforce('a', ['*'], { signatures: 'maybe' })]), 'E_POLICY_INVALID', 'policies[0].signatures: must be one of required, optional');
  await rejects(doc([enforce('a', ['*'], { keys: 'cosign.pub' })]), 'E_POLICY_INVALID', 'policies[0].keys: must be a list');
});

test('duplicate policy names are refused', async () => {
  await rejects(doc([enforce('prod', ['a.io/x']), enforce('prod', ['a.io/y'])]), 'E_POLICY_INVALID', 'policies[1].name: duplicate policy name "prod"');
});

test('a scope may appear once across all policies, compared after normalization', async () => {
  await rejects(doc([enforce('a', ['a.io/x']), enforce('b', ['a.io/x'])]), 'E_POLICY_INVALID', 'policies[1].scopes[0]');
  await rejects(doc([enforce('a', ['ubuntu']), enforce('b', ['docker.io/library/ubuntu'])]), 'E_POLICY_INVALID', 'docker.io/library/ubuntu');
  await rejects(doc([enforce('a', ['index.docker.io/org/app', 'docker.io/org/app'])]), 'E_POLICY_INVALID', 'policies[0].scopes[1]');
  await rejects(doc([enforce('a', ['Registry.IO:5000/app']), enforce('b', ['registry.io:5000/app'])]), 'E_POLICY_INVALID', 'policies[1].scopes[0]');
});

test('"*" must be alone in its policy, and only one policy may have it', async () => {
  await rejects(doc([enforce('a', ['*', 'a.io/x'])]), 'E_POLICY_INVALID', '"*" must be the only scope');
  await rejects(doc([enforce('a', ['*']), enforce('b', ['*'])]), 'E_POLICY_INVALID', 'a second "*" policy');
});

test('skip: refused on the "*" policy and with trust anchors; fine on named repositories', async () => {
  await rejects(doc([{ name: 'all', scopes: ['*'], level: 'skip' }]), 'E_POLICY_INVALID', 'policies[0].level: a policy with scope "*" cannot skip');
  await rejects(doc([{ name: 'dev', scopes: ['a.io/dev'], level: 'skip', identities: [ID] }]), 'E_POLICY_INVALID', 'policies[0].identities: has no meaning');
  const policy = await parse(doc([{ name: 'dev', scopes: ['a.io/dev/**'], level: 'skip' }]));
  assert.equal(policy.policies[0]!.level, 'skip');
  assert.deepEqual(policy.policies[0]!.anchors, { keys: [], identities: [] });
});

test('a registry host of only wildcards is refused at every level; skip needs a literal host', async () => {
  for (const host of ['*.*', '*:*', '*.*.*', '*.*:*', '*.']) {
    for (const level of ['enforce', 'audit'] as const) {
      await rejects(doc([enforce('a', [`${host}/**`], { level })]), 'E_POLICY_INVALID', `registry host "${host}" made only of wildcards`);
    }
    await rejects(doc([{ name: 'a', scopes: [`${host}/app`], level: 'skip' }]), 'E_POLICY_INVALID', 'made only of wildcards');
  }
  // The bypass of "skip is not allowed on *": a host glob next to a literal scope.
  const err = await rejects(
    doc([{ name: 'dev', scopes: ['localhost/**', '*.*/**'], level: 'skip' }]),
    'E_POLICY_INVALID',
    'policies[0].scopes[1]',
  );
  assert.ok(err.message.includes('made only of wildcards'), err.message);
  for (const scope of ['*.example.com/**', '*.io/dev/**', '*:5000/**', 'registry.*/dev', 'reg*.example.com/app']) {
    await rejects(doc([{ name: 'dev', scopes: ['localhost/**', scope], level: 'skip' }]), 'E_POLICY_INVALID', 'policies[0].scopes[1]: a skip policy cannot use scope');
    // The same host globs are fine where signatures are checked.
    const ok = await parse(doc([enforce('hosts', [scope])]));
    assert.equal(ok.policies[0]!.level, 'enforce');
  }
  // Skip with literal hosts, including Hub and its path globs, is allowed.
  const skip = await parse(doc([{ name: 'dev', scopes: ['localhost:5000/**', 'docker.io/dev/*', 'scratch*'], level: 'skip' }, enforce('g', ['*'])]));
  assert.equal(selectPolicy(skip, 'localhost:5000/a/b').name, 'dev');
  assert.equal(selectPolicy(skip, 'scratchpad').name, 'dev');
  assert.equal(selectPolicy(skip, 'quay.io/a/b').name, 'g');
});

test('enforce and audit policies need a key or an identity', async () => {
  await rejects(doc([{ name: 'a', scopes: ['a.io/x'], level: 'enforce' }]), 'E_POLICY_INVALID', 'policies[0]: a enforce policy needs at least one key or identity');
  await rejects(doc([{ name: 'a', scopes: ['a.io/x'], level: 'audit', keys: [], identities: [] }]), 'E_POLICY_INVALID', 'needs at least one key or identity');
});

test('bad scopes: misplaced **, ambiguous leading wildcard, tags, digests, upper case, junk', async () => {
  const bad: [string, string][] = [
    ['a.io/**x', '"**" must be a whole segment'],
    ['a.io/***', '"**" must be a whole segment'],
    ['**', 'write "*"'],
    ['**/app', 'cannot stand for a registry host'],
    ['*/app', 'could be a registry or a Docker Hub namespace'],
    ['a.io/app:1.0', 'tag or digest'],
    [`a.io/app@sha256:${'a'.repeat(64)}`, 'tag or digest'],
    ['a.io/Team/app', 'is not a repository'],
    ['a.io/te am', 'is not a repository'],
    ['a.io//app', 'is not a repository'],
    [' a.io/app', 'surrounding spaces'],
    ['https://a.io/app', 'is not a repository'],
    ['localhost:5000', 'names a registry, not a repository'],
    ['registry.example.com', 'names a registry, not a repository'],
  ];
  for (const [scope, why] of bad) {
    const err = await rejects(doc([enforce('a', [scope])]), 'E_POLICY_INVALID', why);
    assert.ok(err.message.includes('policies[0].scopes[0]'), err.message);
  }
  await rejects(doc([enforce('a', [42 as unknown as string])]), 'E_POLICY_INVALID', 'policies[0].scopes[0]: must be a non-empty string');
});

test('key paths are relative to the policy file, not the working directory', async () => {
  const { dir } = workspace();
  mkdirSync(join(dir, 'conf', 'keys'), { recursive: true });
  copyFileSync(join(dir, 'cosign.pub'), join(dir, 'conf', 'keys', 'team.pub'));
  writeFileSync(join(dir, 'conf', 'policy.yaml'), toYaml({ version: '1', policies: [enforce('a', ['*'], { keys: ['keys/team.pub', '../cosign.pub'] })] }));
  const policy = await loadPolicy(join(dir, 'conf', 'policy.yaml'));
  // Both files hold the same key, which is kept once.
  assert.equal(policy.policies[0]!.anchors.keys.length, 1);
  assert.equal(policy.policies[0]!.anchors.keys[0]!.source, join(dir, 'conf', 'keys', 'team.pub'));
  assert.equal(policy.source, join(dir, 'conf', 'policy.yaml'));
});

test('bad key files: not a key → E_KEY_INVALID, missing → E_POLICY_INVALID, both naming the entry', async () => {
  const { dir } = workspace();
  writeFileSync(join(dir, 'junk.pub'), 'not a key\n');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(join(dir, 'private.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }) as string);
  await rejects(doc([enforce('a', ['*'], { keys: ['cosign.pub', 'junk.pub'] })]), 'E_KEY_INVALID', 'policies[0].keys[1]', dir);
  await rejects(doc([enforce('a', ['*'], { keys: ['private.pem'] })]), 'E_KEY_INVALID', 'private key', dir);
  await rejects(doc([enforce('a', ['*'], { keys: [{ pem: 'nope' }] })]), 'E_KEY_INVALID', 'policies[0].keys[0]', dir);
  const missing = await rejects(doc([enforce('a', ['*'], { keys: ['absent.pub'] })]), 'E_POLICY_INVALID', 'policies[0].keys[0]: cannot read key file', dir);
  assert.equal(missing.details?.path, join(dir, 'absent.pub'));
  await rejects(doc([enforce('a', ['*'], { keys: ['.'] })]), 'E_POLICY_INVALID', 'is not a file', dir);
});

test('identities are checked: one of subject/subjectPattern and of issuer/issuerPattern, valid patterns', async () => {
  await rejects(doc([enforce('a', ['*'], { identities: [{ issuer: ID.issuer }] })]), 'E_POLICY_INVALID', 'policies[0].identities[0]: subject or subjectPattern is required');
  await rejects(
    doc([enforce('a', ['*'], { identities: [{ ...ID, subjectPattern: '.*' }] })]),
    'E_POLICY_INVALID',
    'policies[0].identities[0]: give subject or subjectPattern, not both',
  );
  await rejects(doc([enforce('a', ['*'], { identities: [{ issuer: ID.issuer, subjectPattern: '(' }] })]), 'E_POLICY_INVALID', 'not a valid regular expression');
  await rejects(doc([enforce('a', ['*'], { identities: [{ issuer: ID.issuer, subject: 7 }] })]), 'E_POLICY_INVALID', 'policies[0].identities[0].subject: must be a non-empty string');
});

test('trustedRoot is read relative to the policy file; a bad one keeps its code and names the entry', async () => {
  const { dir } = workspace();
  copyFileSync(PUBLIC_GOOD_ROOT, join(dir, 'root.json'));
  writeFileSync(join(dir, 'bad-root.json'), '{"mediaType": "nope"}');
  const policy = await parse(doc([enforce('a', ['a.io/x'], { trustedRoot: 'root.json' }), enforce('b', ['*'], { trustedRoot: './root.json' })]), dir);
  const [a, b] = policy.policies as [PolicyEntry, PolicyEntry];
  assert.equal(a.anchors.trustedRoot?.source, join(dir, 'root.json'));
  // One file named twice is read once.
  assert.equal(a.anchors.trustedRoot, b.anchors.trustedRoot);
  await rejects(doc([enforce('a', ['*'], { trustedRoot: 'bad-root.json' })]), 'E_TRUSTED_ROOT_INVALID', 'policies[0].trustedRoot', dir);
  await rejects(doc([enforce('a', ['*'], { trustedRoot: 'absent.json' })]), 'E_TRUSTED_ROOT_INVALID', 'policies[0].trustedRoot', dir);
});

test('structural faults are reported before any file is read', async () => {
  // The key file does not exist, but the misspelt field in a later policy is what the author must fix first.
  await rejects(doc([enforce('a', ['a.io/x'], { keys: ['absent.pub'] }), { ...enforce('b', ['*']), scope: [] }]), 'E_POLICY_INVALID', 'policies[1].scope: unknown field');
});

test('loadPolicy: missing file is E_IO; bytes that are not UTF-8 are E_POLICY_INVALID', async () => {
  const { dir } = workspace();
  await assert.rejects(loadPolicy(join(dir, 'absent.yaml')), (e: unknown) => e instanceof LadingError && e.code === 'E_IO');
  writeFileSync(join(dir, 'latin1.yaml'), Buffer.from([0x76, 0x65, 0x72, 0xff, 0x0a]));
  await assert.rejects(loadPolicy(join(dir, 'latin1.yaml')), (e: unknown) => e instanceof LadingError && e.code === 'E_POLICY_INVALID');
});

// ---------------------------------------------------------------- selection

async function selectionPolicy(): Promise<TrustPolicy> {
  return parse(
    doc([
      enforce('exact', ['localhost:5000/team/app']),
      enforce('team', ['localhost:5000/team/*']),
      enforce('deep', ['localhost:5000/**']),
      enforce('x-repo', ['registry.example/x/repo']),
      enforce('apps', ['registry.example/apps/app-*']),
      enforce('hub', ['ubuntu', 'docker.io/org/*']),
      enforce('global', ['*']),
    ]),
  );
}

test('exact scope beats glob, which beats "*"', async () => {
  const p = await selectionPolicy();
  assert.equal(selectPolicy(p, 'localhost:5000/team/app').name, 'exact');
  assert.equal(selectPolicy(p, 'localhost:5000/team/other').name, 'team');
  assert.equal(selectPolicy(p, 'localhost:5000/else').name, 'deep');
  assert.equal(selectPolicy(p, 'quay.io/some/thing').name, 'global');
});

test('x/repo never selects evil/x/repo or x/repo-evil', async () => {
  const p = await selectionPolicy();
  assert.equal(selectPolicy(p, 'registry.example/x/repo').name, 'x-repo');
  assert.equal(selectPolicy(p, 'registry.example/x/repo-evil').name, 'global');
  assert.equal(selectPolicy(p, 'registry.example/evil/x/repo').name, 'global');
  assert.equal(selectPolicy(p, 'registry.example/x/repo/sub').name, 'global');
  assert.equal(selectPolicy(p, 'evil.registry.example/x/repo').name, 'global');
  assert.equal(selectPolicy(p, 'registry.example.evil/x/repo').name, 'global');
  // The same without a "*" policy: nothing matches.
  const strict = await parse(doc([enforce('x-repo', ['registry.example/x/repo'])]));
  throwsCode(() => selectPolicy(strict, 'registry.example/x/repo-evil'), 'E_POLICY_NO_MATCH', 'registry.example/x/repo-evil');
  throwsCode(() => selectPolicy(strict, 'registry.example/evil/x/repo'), 'E_POLICY_NO_MATCH');
});

test('"*" matches within one segment, "**" one or more segments', async () => {
  const p = await selectionPolicy();
  assert.equal(selectPolicy(p, 'localhost:5000/team/a/b').name, 'deep');
  assert.equal(selectPolicy(p, 'registry.example/apps/app-web').name, 'apps');
  assert.equal(selectPolicy(p, 'registry.example/apps/app-web/sub').name, 'global');
  assert.equal(selectPolicy(p, 'registry.example/apps/web').name, 'global');
  // "**" does not match zero segments, and the port is part of the host.
  assert.equal(selectPolicy(p, 'localhost:5001/team/app').name, 'global');
  assert.equal(selectPolicy(p, 'localhost/team/app').name, 'global');
});

test('repositories are normalized like references: Docker Hub, host case, tags and digests dropped', async () => {
  const p = await selectionPolicy();
  assert.equal(selectPolicy(p, 'ubuntu').name, 'hub');
  assert.equal(selectPolicy(p, 'docker.io/library/ubuntu:22.04').name, 'hub');
  assert.equal(selectPolicy(p, 'index.docker.io/library/ubuntu').name, 'hub');
  assert.equal(selectPolicy(p, 'org/tool').name, 'hub');
  assert.equal(selectPolicy(p, 'org/tool/sub').name, 'global');
  assert.equal(selectPolicy(p, 'LOCALHOST:5000/team/app').name, 'exact');
  assert.equal(selectPolicy(p, `localhost:5000/team/app@sha256:${'b'.repeat(64)}`).name, 'exact');
  throwsCode(() => selectPolicy(p, 'localhost:5000/Team/App'), 'E_REFERENCE_INVALID');
});

test('every spelling of a Docker Hub repository selects the same policy, in scopes and in names', async () => {
  const spellings = [
    'nginx',
    'nginx:1.25',
    'library/nginx',
    'docker.io/library/nginx',
    'docker.io/nginx',
    'DOCKER.IO/nginx',
    'Docker.Io/library/nginx',
    'index.docker.io/library/nginx',
    'INDEX.DOCKER.IO/library/nginx',
    'index.docker.io/nginx',
    'registry-1.docker.io/library/nginx',
    'REGISTRY-1.DOCKER.IO/nginx',
    `registry-1.docker.io/library/nginx@sha256:${'d'.repeat(64)}`,
  ];
  const p = await parse(doc([enforce('nginx', ['nginx']), enforce('global', ['*'])]));
  for (const name of spellings) assert.equal(selectPolicy(p, name).name, 'nginx', name);
  assert.equal(normalizeRepository('REGISTRY-1.DOCKER.IO/nginx'), 'docker.io/library/nginx');
  // Written in any spelling, the scope is the same one: it collides with the plain name and selects alike.
  for (const scope of spellings.filter((s) => !s.includes(':') && !s.includes('@'))) {
    await rejects(doc([enforce('a', ['nginx']), enforce('b', [scope])]), 'E_POLICY_INVALID', 'both are docker.io/library/nginx');
    const q = await parse(doc([enforce('hub', [scope]), enforce('global', ['*'])]));
    for (const name of spellings) assert.equal(selectPolicy(q, name).name, 'hub', `${scope} ← ${name}`);
  }
  // Not Hub: a look-alike host, and Hub's aliases with their own organisations.
  assert.equal(selectPolicy(p, 'docker.io.evil/library/nginx').name, 'global');
  assert.equal(selectPolicy(p, 'registry-1.docker.io/org/nginx').name, 'global');
  // Globs over Hub: every alias reaches them, and "**" under Hub is not put under library/.
  const globs = await parse(doc([enforce('official', ['REGISTRY-1.DOCKER.IO/*']), enforce('hub', ['INDEX.DOCKER.IO/**'])]));
  assert.equal(selectPolicy(globs, 'nginx').name, 'official');
  assert.equal(selectPolicy(globs, 'docker.io/library/nginx').name, 'official');
  assert.equal(selectPolicy(globs, 'registry-1.docker.io/org/app').name, 'hub');
  assert.equal(selectPolicy(globs, 'DOCKER.IO/org/team/app').name, 'hub');
  await rejects(doc([enforce('a', ['docker.io/**']), enforce('b', ['registry-1.docker.io/**'])]), 'E_POLICY_INVALID', 'both are docker.io/**');
});

test('the glob with more literal characters wins; equal ones in two policies are ambiguous', async () => {
  const p = await parse(doc([enforce('short', ['a.io/team/*']), enforce('long', ['a.io/team/app-*']), enforce('other', ['a.io/*m/app-web'])]));
  assert.equal(selectPolicy(p, 'a.io/team/app-cli').name, 'long');
  assert.equal(selectPolicy(p, 'a.io/team/tool').name, 'short');
  const err = throwsCode(() => selectPolicy(p, 'a.io/team/app-web'), 'E_POLICY_INVALID', 'ambiguous');
  assert.deepEqual(err.details?.policies, ['long', 'other']);
  // Two matching globs of one policy are not ambiguous.
  const same = await parse(doc([enforce('one', ['a.io/team/*', 'a.io/*/app'])]));
  assert.equal(selectPolicy(same, 'a.io/team/app').name, 'one');
});

test('whole registries and host globs: docker.io/** covers all of Docker Hub, *.example.com its subdomains', async () => {
  const p = await parse(doc([enforce('hub', ['docker.io/**']), enforce('hosts', ['*.example.com/**']), enforce('official', ['docker.io/*'])]));
  assert.equal(selectPolicy(p, 'org/app').name, 'hub');
  assert.equal(selectPolicy(p, 'docker.io/org/team/app').name, 'hub');
  // `docker.io/*` is Hub's one-segment names, which normalize under library/, and it is the more literal glob.
  assert.equal(selectPolicy(p, 'ubuntu').name, 'official');
  assert.equal(selectPolicy(p, 'a.example.com/x/y').name, 'hosts');
  throwsCode(() => selectPolicy(p, 'a.b.example.org/x'), 'E_POLICY_NO_MATCH');
  throwsCode(() => selectPolicy(p, 'example.com.evil/x'), 'E_POLICY_NO_MATCH');
});

test('glob matching: "*" within a segment, "**" over whole segments', () => {
  const cases: [string, string, boolean][] = [
    ['', '', true],
    ['*', '', true],
    ['*', 'abc', true],
    ['a*', 'a', true],
    ['a*c', 'abbbc', true],
    ['a*c', 'abbbcd', false],
    ['*b*', 'aaa', false],
    ['*b*', 'aba', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'aXcYb', false],
    ['app-*', 'app-', true],
    ['app-*', 'ap', false],
    ['a.b', 'aXb', false],
    ['*a', 'aaaa', true],
    ['a*a', 'a', false],
  ];
  for (const [pattern, text, want] of cases) assert.equal(segmentMatches(pattern, text), want, `${pattern} ~ ${text}`);
  const seg = (s: string) => s.split('/');
  assert.equal(segmentsMatch(seg('h/**'), seg('h/a')), true);
  assert.equal(segmentsMatch(seg('h/**'), seg('h/a/b/c')), true);
  assert.equal(segmentsMatch(seg('h/**'), seg('h')), false);
  assert.equal(segmentsMatch(seg('h/**/x'), seg('h/x')), false);
  assert.equal(segmentsMatch(seg('h/**/x'), seg('h/a/b/x')), true);
  assert.equal(segmentsMatch(seg('h/**/x/**'), seg('h/a/b/x')), false);
  assert.equal(segmentsMatch(seg('h/**/x/**'), seg('h/a/x/b/x/c')), true);
  assert.equal(segmentsMatch(seg('h/**/**'), seg('h/a')), false);
  assert.equal(segmentsMatch(seg('h/**/**'), seg('h/a/b')), true);
  assert.equal(segmentsMatch(seg('h/*/a*'), seg('h/x/ab')), true);
  assert.equal(segmentsMatch(seg('h/*/a*'), seg('h/x/y/ab')), false);
  assert.equal(segmentsMatch(seg('h/**'), ['h', '']), false);
});

test('pathological globs match in linear-ish time (a backtracking matcher would hang here)', async () => {
  const stars = `registry.example.com/${'a*'.repeat(12)}b`;
  const deep = `registry.example.com/${'**/'.repeat(5)}b*b*b*b*c`;
  const p = await parse(doc([enforce('stars', [stars]), enforce('deep', [deep]), enforce('g', ['*'])]));
  const miss = `registry.example.com/${'a'.repeat(60)}`;
  const hit = `registry.example.com/${'a'.repeat(59)}b`;
  const deepMiss = `registry.example.com/${'x/'.repeat(30)}${'b'.repeat(60)}`;
  const deepHit = `registry.example.com/${'x/'.repeat(30)}${'b'.repeat(60)}c`;
  for (let i = 0; i < 1000; i++) {
    assert.equal(selectPolicy(p, miss).name, 'g');
    assert.equal(selectPolicy(p, hit).name, 'stars');
  }
  for (let i = 0; i < 100; i++) {
    assert.equal(selectPolicy(p, deepMiss).name, 'g');
    assert.equal(selectPolicy(p, deepHit).name, 'deep');
  }
  assert.equal(segmentMatches('a*'.repeat(200) + 'b', 'a'.repeat(5000)), false);
});

test('no matching scope is E_POLICY_NO_MATCH', async () => {
  const p = await parse(doc([enforce('a', ['a.io/x'])]));
  const err = throwsCode(() => selectPolicy(p, 'b.io/x'), 'E_POLICY_NO_MATCH', 'b.io/x');
  assert.ok(err.hint?.includes('"*"'));
});

test('layout scopes: oci-layout:<dir>, relative to the policy file, never matched by registry globs', async () => {
  const { dir } = workspace();
  const p = await parse(
    doc([enforce('layout', ['oci-layout:out/app']), enforce('layouts', [`oci-layout:${dir}/all/**`]), enforce('reg', ['localhost:5000/**'])]),
    dir,
  );
  assert.equal(selectPolicy(p, layoutRepository(join(dir, 'out', 'app'))).name, 'layout');
  assert.equal(selectPolicy(p, `oci-layout:${dir}/out/app/`).name, 'layout');
  assert.equal(selectPolicy(p, `oci-layout:${dir}/all/x/y`).name, 'layouts');
  throwsCode(() => selectPolicy(p, `oci-layout:${dir}/out/app2`), 'E_POLICY_NO_MATCH');
  const global = await parse(doc([enforce('g', ['*'])]));
  assert.equal(selectPolicy(global, `oci-layout:${dir}`).name, 'g');
  const hostGlob = await parse(doc([enforce('hosts', ['*:5000/**'])]));
  throwsCode(() => selectPolicy(hostGlob, `oci-layout:${dir}`), 'E_POLICY_NO_MATCH');
});

test('layout paths resolve symlinks: a linked path selects the policy of its real directory', async () => {
  const { dir } = workspace();
  mkdirSync(join(dir, 'real', 'app'), { recursive: true });
  symlinkSync(join(dir, 'real'), join(dir, 'link'), 'dir');
  const p = await parse(doc([enforce('app', ['oci-layout:real/app']), enforce('all', ['oci-layout:real/**']), enforce('g', ['*'])]), dir);
  assert.equal(layoutRepository(join(dir, 'link', 'app')), layoutRepository(join(dir, 'real', 'app')));
  assert.equal(selectPolicy(p, `oci-layout:${join(dir, 'link', 'app')}`).name, 'app');
  assert.equal(selectPolicy(p, `oci-layout:${join(dir, 'link', 'app')}/`).name, 'app');
  // A directory not made yet, under a linked parent, is resolved as far as the path exists.
  assert.equal(selectPolicy(p, `oci-layout:${join(dir, 'link', 'new', 'x')}`).name, 'all');
  // A scope written through the link means the real directory too.
  const viaLink = await parse(doc([enforce('app', ['oci-layout:link/app']), enforce('g', ['*'])]), dir);
  assert.equal(selectPolicy(viaLink, `oci-layout:${join(dir, 'real', 'app')}`).name, 'app');
  assert.equal(selectPolicy(viaLink, `oci-layout:${join(dir, 'real', 'other')}`).name, 'g');
});

test('hand-built entries (no file) are selectable', () => {
  const entry: PolicyEntry = { name: 'command line', scopes: ['*'], level: 'enforce', signatures: 'required', anchors: { keys: [], identities: [ID] } };
  assert.equal(selectPolicy({ source: 'flags', policies: [entry] }, 'a.io/x'), entry);
});

// ---------------------------------------------------------------- evaluation

const SUBJECT = { repository: 'localhost:5000/app', digest: `sha256:${'c'.repeat(64)}` };

function entry(level: PolicyEntry['level'], signatures: PolicyEntry['signatures'] = 'required'): PolicyEntry {
  return { name: 'prod', scopes: ['localhost:5000/app'], level, signatures, anchors: { keys: [], identities: [ID] } };
}

const GOOD: SignatureCheck = {
  source: 'referrer',
  where: `sha256:${'1'.repeat(64)}`,
  ok: true,
  signer: { kind: 'certificate', subject: ID.subject, issuer: ID.issuer },
  signedAt: '2024-01-02T03:04:05.000Z',
};
const UNTRUSTED: SignatureCheck = { source: 'legacy-tag', where: 'sha256-cc.sig#0', ok: false, code: 'E_KEY_UNTRUSTED', message: 'no trusted key' };
const INVALID: SignatureCheck = { source: 'referrer', where: `sha256:${'2'.repeat(64)}`, ok: false, code: 'E_SIGNATURE_INVALID', message: 'signature does not verify' };
const WRONG_ID: SignatureCheck = { source: 'referrer', where: `sha256:${'3'.repeat(64)}`, ok: false, code: 'E_IDENTITY_MISMATCH', message: 'evil@example.com' };

test('skip allows without looking', () => {
  const d = evaluatePolicy({ ...entry('skip') }, [INVALID], SUBJECT);
  assert.equal(d.allowed, true);
  assert.equal(d.code, undefined);
  assert.equal(d.message, 'verification skipped by policy prod');
  assert.deepEqual(d.warnings, []);
});

test('enforce: a valid signature allows; extra failing signatures become warnings', () => {
  const clean = evaluatePolicy(entry('enforce'), [GOOD], SUBJECT);
  assert.equal(clean.allowed, true);
  assert.equal(clean.code, undefined);
  assert.deepEqual(clean.warnings, []);
  assert.ok(clean.message.includes(ID.subject));
  const mixed = evaluatePolicy(entry('enforce'), [UNTRUSTED, GOOD, INVALID], SUBJECT);
  assert.equal(mixed.allowed, true);
  assert.equal(mixed.code, undefined);
  assert.equal(mixed.warnings.length, 2);
  assert.ok(mixed.warnings[0]!.includes('E_KEY_UNTRUSTED'));
  assert.ok(mixed.warnings[1]!.includes('E_SIGNATURE_INVALID'));
  assert.equal(mixed.checks.length, 3);
  assert.deepEqual(mixed.subject, SUBJECT);
});

test('enforce: no signature where one is required is denied with E_SIGNATURE_MISSING', () => {
  const d = evaluatePolicy(entry('enforce'), [], SUBJECT);
  assert.equal(d.allowed, false);
  assert.equal(d.code, 'E_SIGNATURE_MISSING');
  const err = decisionError(d);
  assert.equal(err.code, 'E_SIGNATURE_MISSING');
  assert.ok(err.hint?.includes('"prod"'));
  assert.equal(err.details?.policy, 'prod');
  assert.deepEqual(err.details?.report, []);
});

test('enforce: signatures optional accepts an unsigned artifact with a warning', () => {
  const d = evaluatePolicy(entry('enforce', 'optional'), [], SUBJECT);
  assert.equal(d.allowed, true);
  assert.equal(d.code, undefined);
  assert.equal(d.warnings.length, 1);
  assert.match(d.warnings[0]!, /^unsigned/);
});

test('enforce: signatures optional still refuses an artifact whose only signature fails', () => {
  const d = evaluatePolicy(entry('enforce', 'optional'), [INVALID], SUBJECT);
  assert.equal(d.allowed, false);
  assert.equal(d.code, 'E_SIGNATURE_INVALID');
  assert.equal(decisionError(d).code, 'E_SIGNATURE_INVALID');
});

test('enforce: the most specific failure names the refusal, whatever the order', () => {
  assert.equal(evaluatePolicy(entry('enforce'), [UNTRUSTED], SUBJECT).code, 'E_KEY_UNTRUSTED');
  assert.equal(evaluatePolicy(entry('enforce'), [UNTRUSTED, INVALID], SUBJECT).code, 'E_SIGNATURE_INVALID');
  assert.equal(evaluatePolicy(entry('enforce'), [INVALID, UNTRUSTED], SUBJECT).code, 'E_SIGNATURE_INVALID');
  assert.equal(evaluatePolicy(entry('enforce'), [UNTRUSTED, WRONG_ID], SUBJECT).code, 'E_IDENTITY_MISMATCH');
  const tlog: SignatureCheck = { ...UNTRUSTED, code: 'E_TLOG_INVALID' };
  assert.equal(evaluatePolicy(entry('enforce'), [tlog, UNTRUSTED], SUBJECT).code, 'E_TLOG_INVALID');
  const uncoded: SignatureCheck = { source: 'bundle-file', where: 'x.sigstore.json', ok: false };
  assert.equal(evaluatePolicy(entry('enforce'), [UNTRUSTED, uncoded], SUBJECT).code, 'E_SIGNATURE_INVALID');
  const d = evaluatePolicy(entry('enforce'), [UNTRUSTED, WRONG_ID], SUBJECT);
  assert.equal(d.allowed, false);
  assert.ok(d.message.includes('none of the 2 signatures'));
  assert.deepEqual(decisionError(d).details?.report, [UNTRUSTED, WRONG_ID]);
});

test('audit: decides like enforce but always allows, keeping the code and warning', () => {
  const missing = evaluatePolicy(entry('audit'), [], SUBJECT);
  assert.equal(missing.allowed, true);
  assert.equal(missing.code, 'E_SIGNATURE_MISSING');
  assert.ok(missing.warnings.some((w) => w.startsWith('E_SIGNATURE_MISSING')));
  const invalid = evaluatePolicy(entry('audit'), [INVALID, UNTRUSTED], SUBJECT);
  assert.equal(invalid.allowed, true);
  assert.equal(invalid.code, 'E_SIGNATURE_INVALID');
  assert.match(invalid.message, /^audit: would deny/);
  const good = evaluatePolicy(entry('audit'), [GOOD, UNTRUSTED], SUBJECT);
  assert.equal(good.allowed, true);
  assert.equal(good.code, undefined);
  assert.equal(good.warnings.length, 1);
  const unsigned = evaluatePolicy(entry('audit', 'optional'), [], SUBJECT);
  assert.equal(unsigned.allowed, true);
  assert.equal(unsigned.code, undefined);
  const optionalBad = evaluatePolicy(entry('audit', 'optional'), [WRONG_ID], SUBJECT);
  assert.equal(optionalBad.allowed, true);
  assert.equal(optionalBad.code, 'E_IDENTITY_MISMATCH');
});

test('requireSignature: nothing found is E_SIGNATURE_MISSING even where signatures are optional', () => {
  const enforced = evaluatePolicy(entry('enforce', 'optional'), [], SUBJECT, { requireSignature: true });
  assert.equal(enforced.allowed, false);
  assert.equal(enforced.code, 'E_SIGNATURE_MISSING');
  assert.ok(enforced.message.includes('no signature found'), enforced.message);
  assert.equal(decisionError(enforced).code, 'E_SIGNATURE_MISSING');
  const audited = evaluatePolicy(entry('audit', 'optional'), [], SUBJECT, { requireSignature: true });
  assert.equal(audited.allowed, true);
  assert.equal(audited.code, 'E_SIGNATURE_MISSING');
  assert.match(audited.message, /^audit: would deny/);
  // Required signatures decide as before; a found signature still allows; skip still skips.
  assert.equal(evaluatePolicy(entry('enforce'), [], SUBJECT, { requireSignature: true }).code, 'E_SIGNATURE_MISSING');
  const good = evaluatePolicy(entry('enforce', 'optional'), [GOOD], SUBJECT, { requireSignature: true });
  assert.equal(good.allowed, true);
  assert.equal(good.code, undefined);
  const skipped = evaluatePolicy(entry('skip'), [], SUBJECT, { requireSignature: true });
  assert.equal(skipped.allowed, true);
  assert.equal(skipped.code, undefined);
  // Without the option (or with it false) optional still accepts the unsigned.
  assert.equal(evaluatePolicy(entry('enforce', 'optional'), [], SUBJECT, { requireSignature: false }).allowed, true);
});

test('formatDecision lists the subject, the policy and every check', () => {
  const text = formatDecision(evaluatePolicy(entry('enforce'), [GOOD, UNTRUSTED], SUBJECT));
  const lines = text.split('\n');
  assert.equal(lines[0], `subject: ${SUBJECT.repository}@${SUBJECT.digest}`);
  assert.equal(lines[1], 'policy:  prod (enforce)');
  assert.match(lines[2]!, /^result: {2}allowed: /);
  assert.ok(lines.some((l) => l.startsWith(`  ✓ referrer ${GOOD.where}`) && l.includes(ID.subject) && l.includes(GOOD.signedAt!)));
  assert.ok(lines.some((l) => l.startsWith('  ✗ legacy-tag sha256-cc.sig#0') && l.includes('E_KEY_UNTRUSTED')));
  assert.ok(lines.some((l) => l.startsWith('warning: ')));
  const denied = formatDecision(evaluatePolicy(entry('enforce'), [], SUBJECT));
  assert.ok(denied.includes('denied (E_SIGNATURE_MISSING)'));
  assert.ok(denied.includes('signatures: none found'));
  const skipped = formatDecision(evaluatePolicy(entry('skip'), [], SUBJECT));
  assert.ok(skipped.includes('verification skipped by policy prod'));
});
