/**
 * Signing and verification end to end through the CLI, against every registry lading must work with:
 * `lading serve` answers the referrers API, docker-registry does not (signatures travel by the tag
 * schema), and both keep cosign's legacy `.sig` tags.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Repository } from '../src/remote/repository.js';
import { fetchBytes } from '../src/content/read.js';
import { attachBundle } from '../src/trust/attach.js';
import { fetchReferrerBundle, listBundleReferrers } from '../src/trust/find.js';
import { lading, type CliResult } from './support/cli.js';

export interface TrustRegistryUnderTest {
  host: string;
  stop(): Promise<void>;
}

export interface TrustRegistryKind {
  name: string;
  available(t: TestContext): boolean;
  start(): Promise<TrustRegistryUnderTest>;
}

const PASSWORD = 'correct horse battery staple';
const env = { LADING_PASSWORD: PASSWORD };

function ok(r: CliResult, what: string): any {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}${r.stdout}`);
  return r.json;
}

function refused(r: CliResult, code: string, what: string): { code: string; message: string; hint?: string; details?: any } {
  assert.equal(r.code, 1, `${what}: expected exit 1, got ${r.code}\n${r.stderr}${r.stdout}`);
  assert.equal(r.json?.error?.code, code, `${what}: ${r.stdout}`);
  return r.json.error;
}

export function trustSuite(kind: TrustRegistryKind): void {
  describe(`signatures and trust against ${kind.name}`, () => {
    let reg: TrustRegistryUnderTest | undefined;
    let work: string;
    let keyA: string;
    let keyB: string;
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'lading-trust-'));
    });
    after(async () => {
      await reg?.stop();
      await rm(work, { recursive: true, force: true });
    });
    const ready = async (t: TestContext): Promise<boolean> => {
      if (!kind.available(t)) return false;
      if (!reg) {
        reg = await kind.start();
        keyA = join(work, 'a');
        keyB = join(work, 'b');
        for (const k of [keyA, keyB]) ok(await cli(['key', 'generate', '--output-key-prefix', k]), 'key generate');
      }
      return true;
    };
    const cli = (args: string[], cwd?: string) => lading([...args, '--json'], { env, ...(cwd ? { cwd } : {}) });
    /** Pushes a one-file artifact and returns its digest. */
    const pushFile = async (ref: string, content: string): Promise<string> => {
      const dir = join(work, 'src', ref.replace(/[^a-z0-9]+/gi, '_'));
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'notes.txt'), content);
      return ok(await cli(['push', ref, 'notes.txt'], dir), `push ${ref}`).descriptor.digest;
    };
    const repo = (name: string) => new Repository(`${reg!.host}/${name}`);

    test('sign → verify round trip with the right key; the wrong key, no signature and a moved tag are refused', async (t) => {
      if (!(await ready(t))) return;
      const ref = `${reg!.host}/trust/app:1.0`;
      const digest = await pushFile(ref, 'release 1.0\n');

      refused(await cli(['verify', ref, '--key', `${keyA}.pub`]), 'E_SIGNATURE_MISSING', 'unsigned');

      const signed = ok(await cli(['sign', ref, '--key', `${keyA}.key`]), 'sign');
      assert.equal(signed.subject.digest, digest);
      assert.equal(signed.referrer.artifactType, 'application/vnd.dev.sigstore.bundle.v0.3+json');

      const verified = ok(await cli(['verify', ref, '--key', `${keyA}.pub`]), 'verify');
      assert.equal(verified.allowed, true);
      assert.equal(verified.checks.length, 1);
      assert.equal(verified.checks[0].ok, true);
      assert.equal(verified.checks[0].source, 'referrer');
      assert.equal(verified.checks[0].signer.kind, 'key');
      assert.equal(verified.checks[0].signer.keyId, signed.keyId);

      const wrongKey = refused(await cli(['verify', ref, '--key', `${keyB}.pub`]), 'E_KEY_UNTRUSTED', 'wrong key');
      assert.equal(wrongKey.details.report[0].code, 'E_KEY_UNTRUSTED');
      // Either key is enough when both are trusted.
      ok(await cli(['verify', ref, '--key', `${keyB}.pub`, '--key', `${keyA}.pub`]), 'verify with two keys');

      // The tag now names other bytes, which nobody signed.
      await pushFile(ref, 'release 1.0, quietly changed\n');
      refused(await cli(['verify', ref, '--key', `${keyA}.pub`]), 'E_SIGNATURE_MISSING', 'moved tag');
      ok(await cli(['verify', `${reg!.host}/trust/app@${digest}`, '--key', `${keyA}.pub`]), 'the signed digest still verifies');
    });

    test('--legacy-tag writes cosign .sig signatures that verify on their own; a copy under another name is refused', async (t) => {
      if (!(await ready(t))) return;
      const ref = `${reg!.host}/acme/x/repo:2`;
      const digest = await pushFile(ref, 'legacy\n');
      const signed = ok(await cli(['sign', ref, '--key', `${keyA}.key`, '--legacy-tag']), 'sign --legacy-tag');
      assert.equal(signed.legacy.tag, `sha256-${digest.slice(7)}.sig`);

      // The .sig alone, under a repository whose name merely contains the signed one.
      for (const evil of ['acme/x/repo-evil', 'evil/acme/x/repo']) {
        const evilRef = `${reg!.host}/${evil}:2`;
        assert.equal(await pushFile(evilRef, 'legacy\n'), digest);
        ok(await cli(['copy', `${reg!.host}/acme/x/repo:${signed.legacy.tag}`, `${reg!.host}/${evil}:${signed.legacy.tag}`]), `copy .sig to ${evil}`);
        const e = refused(await cli(['verify', evilRef, '--key', `${keyA}.pub`]), 'E_IDENTITY_MISMATCH', `.sig under ${evil}`);
        assert.match(e.details.report[0].message, /acme\/x\/repo, not/);
      }

      // A second signature appends a layer instead of replacing the first.
      ok(await cli(['sign', ref, '--key', `${keyB}.key`, '--legacy-tag']), 'second legacy signature');
      const all = ok(await cli(['verify', ref, '--key', `${keyA}.pub`, '--all']), 'verify --all');
      const sources = all.checks.map((c: { source: string; ok: boolean }) => `${c.source}:${c.ok}`).sort();
      assert.deepEqual(sources, ['legacy-tag:false', 'legacy-tag:true', 'referrer:false', 'referrer:true']);
      const first = ok(await cli(['verify', ref, '--key', `${keyB}.pub`]), 'verify stops at the first good signature');
      assert.deepEqual(first.checks.map((c: { ok: boolean }) => c.ok), [true]);
    });

    test('tampering with the signature, the bundle or the subject fails with a precise code', async (t) => {
      if (!(await ready(t))) return;
      const signedRef = `${reg!.host}/tamper/base:1`;
      const victim = await pushFile(signedRef, 'victim\n');
      const signed = ok(await cli(['sign', signedRef, '--key', `${keyA}.key`]), 'sign base');
      const base = repo('tamper/base');
      const [r] = await listBundleReferrers(base, signed.subject, 10);
      const goodBundle = JSON.parse((await fetchReferrerBundle(base, r!.descriptor)).toString());

      const cases: { name: string; bundle: unknown; code: string; content?: string }[] = [];
      const flipped = structuredClone(goodBundle);
      const sig = Buffer.from(flipped.messageSignature.signature, 'base64');
      sig[sig.length - 3]! ^= 0x01;
      flipped.messageSignature.signature = sig.toString('base64');
      cases.push({ name: 'signature', bundle: flipped, code: 'E_SIGNATURE_INVALID' });
      const noMaterial = structuredClone(goodBundle);
      delete noMaterial.verificationMaterial;
      cases.push({ name: 'bundle', bundle: noMaterial, code: 'E_BUNDLE_INVALID' });
      // A genuine signature of other bytes, attached to this manifest.
      cases.push({ name: 'subject', bundle: goodBundle, code: 'E_SIGNATURE_SUBJECT_MISMATCH', content: 'other bytes\n' });

      for (const c of cases) {
        const ref = `${reg!.host}/tamper/${c.name}:1`;
        // The same bytes as the signed manifest (so the same digest), in a repository of its own.
        const pushed = await pushFile(ref, c.content ?? 'victim\n');
        assert.equal(pushed === victim, c.content === undefined);
        const target = repo(`tamper/${c.name}`);
        const subject = await target.resolve('1');
        const unchanged = await fetchBytes(target, subject);
        await attachBundle(target, subject, c.bundle as object, {});
        const e = refused(await cli(['verify', ref, '--key', `${keyA}.pub`]), c.code, `tampered ${c.name}`);
        assert.equal(e.details.report.length, 1);
        assert.deepEqual(await fetchBytes(target, subject), unchanged);
      }
    });

    test('pull and copy --verify enforce the trust policy before anything is written', async (t) => {
      if (!(await ready(t))) return;
      const good = `${reg!.host}/prod/tool:1`;
      const bad = `${reg!.host}/prod/unsigned:1`;
      const sandbox = `${reg!.host}/sandbox/thing:1`;
      await pushFile(good, 'good\n');
      await pushFile(bad, 'unsigned\n');
      await pushFile(sandbox, 'anything goes\n');
      ok(await cli(['sign', good, '--key', `${keyA}.key`]), 'sign good');
      const policy = join(work, 'policy.yaml');
      await writeFile(
        policy,
        [
          'version: "1"',
          'policies:',
          '  - name: production',
          `    scopes: ["${reg!.host}/prod/*"]`,
          '    level: enforce',
          `    keys: ["${keyA}.pub"]`,
          '  - name: sandbox',
          `    scopes: ["${reg!.host}/sandbox/**"]`,
          '    level: skip',
          '  - name: everything else',
          '    scopes: ["*"]',
          '    level: audit',
          `    keys: ["${keyB}.pub"]`,
          '',
        ].join('\n'),
      );
      const out = (n: string) => join(work, 'pulled', n);
      const pulled = ok(await cli(['pull', good, '-o', out('good'), '--policy', policy]), 'pull good');
      assert.equal(pulled.verification.policy, 'production');
      assert.equal(pulled.verification.allowed, true);
      assert.equal(await readFile(join(out('good'), 'notes.txt'), 'utf8'), 'good\n');

      const e = refused(await cli(['pull', bad, '-o', out('bad'), '--policy', policy]), 'E_SIGNATURE_MISSING', 'pull unsigned');
      assert.equal(e.details.policy, 'production');
      await assert.rejects(readdir(out('bad')), { code: 'ENOENT' }, 'nothing written');
      // A policy set in the environment is enforced without any flag.
      const viaEnv = await lading(['pull', bad, '-o', out('bad'), '--json'], { env: { ...env, LADING_TRUST_POLICY: policy } });
      refused(viaEnv, 'E_SIGNATURE_MISSING', 'pull unsigned under LADING_TRUST_POLICY');
      await assert.rejects(readdir(out('bad')), { code: 'ENOENT' }, 'nothing written');

      const skipped = ok(await cli(['pull', sandbox, '-o', out('sandbox'), '--policy', policy]), 'pull sandbox');
      assert.equal(skipped.verification.level, 'skip');

      // Audit lets it through, with the failure reported.
      const elsewhere = `${reg!.host}/other/thing:1`;
      await pushFile(elsewhere, 'audited\n');
      ok(await cli(['sign', elsewhere, '--key', `${keyA}.key`]), 'sign with a key audit does not trust');
      const audited = ok(await cli(['pull', elsewhere, '-o', out('audited'), '--policy', policy]), 'pull audited');
      assert.equal(audited.verification.level, 'audit');
      assert.equal(audited.verification.code, 'E_KEY_UNTRUSTED');
      assert.ok(audited.verification.warnings.length > 0);

      // copy: refused before the destination exists; allowed with the signatures copied along.
      const usage = await cli(['copy', bad, `${reg!.host}/mirror/unsigned:1`, '--verify']);
      assert.equal(usage.code, 2, '--verify without a policy is a usage error');
      assert.equal(usage.json.error.code, 'E_USAGE');
      refused(await cli(['copy', bad, `${reg!.host}/mirror/unsigned:1`, '--policy', policy]), 'E_SIGNATURE_MISSING', 'copy unsigned');
      const missing = await fetch(`http://${reg!.host}/v2/mirror/unsigned/tags/list`);
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
      ok(await cli(['copy', good, `${reg!.host}/prod/tool-mirror:1`, '--policy', policy, '--referrers']), 'copy good');
      ok(await cli(['verify', `${reg!.host}/prod/tool-mirror:1`, '--policy', policy]), 'the copy verifies under the policy');
    });

    test('attest → verify-attestation, and discover shows signatures and attestations', async (t) => {
      if (!(await ready(t))) return;
      const ref = `${reg!.host}/attest/app:1`;
      const digest = await pushFile(ref, 'attested\n');
      const predicate = join(work, 'provenance.json');
      await writeFile(predicate, JSON.stringify({ builder: { id: 'https://ci.example/builder' }, buildType: 'lading-test' }));
      const type = 'https://slsa.dev/provenance/v1';
      ok(await cli(['attest', ref, '--key', `${keyA}.key`, '--predicate', predicate, '--type', type]), 'attest');
      ok(await cli(['sign', ref, '--key', `${keyA}.key`, '--legacy-tag']), 'sign');

      const v = ok(await cli(['verify-attestation', ref, '--type', type, '--key', `${keyA}.pub`]), 'verify-attestation');
      assert.equal(v.attestations.length, 1);
      assert.deepEqual(v.attestations[0].predicate, { builder: { id: 'https://ci.example/builder' }, buildType: 'lading-test' });
      refused(await cli(['verify-attestation', ref, '--type', type, '--key', `${keyB}.pub`]), 'E_KEY_UNTRUSTED', 'attestation, wrong key');
      refused(await cli(['verify-attestation', ref, '--type', 'https://spdx.dev/Document', '--key', `${keyA}.pub`]), 'E_SIGNATURE_MISSING', 'no attestation of that type');
      // An attestation is not a signature.
      const onlyAttested = `${reg!.host}/attest/only:1`;
      await pushFile(onlyAttested, 'only attested\n');
      ok(await cli(['attest', onlyAttested, '--key', `${keyA}.key`, '--predicate', predicate, '--type', type]), 'attest only');
      refused(await cli(['verify', onlyAttested, '--key', `${keyA}.pub`]), 'E_SIGNATURE_MISSING', 'attestation is no signature');

      const d = ok(await cli(['discover', ref]), 'discover');
      assert.equal(d.subject.digest, digest);
      const kinds = d.referrers.map((n: { via: string; artifactType?: string; tag?: string }) => (n.via === 'legacy-tag' ? n.tag : n.artifactType)).sort();
      assert.deepEqual(kinds, [
        'application/vnd.dev.sigstore.bundle.v0.3+json',
        'application/vnd.dev.sigstore.bundle.v0.3+json',
        `sha256-${digest.slice(7)}.sig`,
      ]);
      const human = await lading(['discover', ref], { env });
      assert.equal(human.code, 0);
      assert.match(human.stdout, /└── /);
    });
  });
}
