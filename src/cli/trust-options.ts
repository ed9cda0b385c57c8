import { readFile, stat } from 'node:fs/promises';
import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import type { Target } from '../content/interfaces.js';
import type { Descriptor } from '../oci/descriptor.js';
import type { PolicyDecision, TrustPolicy } from '../trust/policy.js';
import type { IdentityMatcher, TrustAnchors } from '../trust/types.js';
import { collect } from './common.js';
import { cliSignal } from './context.js';
import type { KeyObject } from 'node:crypto';

// The trust layer (sigstore, keys, policies) is imported where it is used, so that verbs which verify
// nothing this run do not pay its memory and start-up.

/** What verifying verbs accept: keys, a keyless identity, a trusted root. */
export interface TrustOptions {
  key: string[];
  certificateIdentity?: string;
  certificateIdentityRegexp?: string;
  certificateOidcIssuer?: string;
  certificateOidcIssuerRegexp?: string;
  trustedRoot?: string;
}

export function withTrust(cmd: Command): Command {
  return cmd
    .option('--key <file>', 'a trusted public key, PEM (repeatable)', collect, [])
    .option('--certificate-identity <id>', 'the keyless signer identity (certificate SAN), matched exactly')
    .option('--certificate-identity-regexp <re>', 'the keyless signer identity, matched by a pattern anchored at both ends')
    .option('--certificate-oidc-issuer <url>', "the keyless signer's OIDC issuer, matched exactly")
    .option('--certificate-oidc-issuer-regexp <re>', "the keyless signer's OIDC issuer, matched by an anchored pattern")
    .option('--trusted-root <file>', 'a sigstore trusted root (Fulcio, Rekor, CT, TSA); the public-good root by default');
}

/** The trust anchors the flags name; at least a key or a keyless identity is required. */
export async function anchorsFromOptions(opts: TrustOptions): Promise<TrustAnchors> {
  const { loadPublicKey } = await import('../trust/keys.js');
  const { checkIdentityMatcher } = await import('../trust/identity.js');
  const keys = await Promise.all(opts.key.map(async (path) => loadPublicKey(await readKeyFile(path), path)));
  const identities: IdentityMatcher[] = [];
  const wantsIdentity =
    opts.certificateIdentity !== undefined ||
    opts.certificateIdentityRegexp !== undefined ||
    opts.certificateOidcIssuer !== undefined ||
    opts.certificateOidcIssuerRegexp !== undefined;
  if (wantsIdentity) {
    const m: IdentityMatcher = {};
    if (opts.certificateIdentity !== undefined) m.subject = opts.certificateIdentity;
    if (opts.certificateIdentityRegexp !== undefined) m.subjectPattern = opts.certificateIdentityRegexp;
    if (opts.certificateOidcIssuer !== undefined) m.issuer = opts.certificateOidcIssuer;
    if (opts.certificateOidcIssuerRegexp !== undefined) m.issuerPattern = opts.certificateOidcIssuerRegexp;
    try {
      checkIdentityMatcher(m, 'the command line');
    } catch (err) {
      throw new LadingError('E_USAGE', (err as Error).message, {
        hint: 'give one of --certificate-identity(-regexp) and one of --certificate-oidc-issuer(-regexp)',
      });
    }
    identities.push(m);
  }
  if (keys.length === 0 && identities.length === 0) {
    throw new LadingError('E_USAGE', 'nothing to verify against', {
      hint: 'pass --key FILE, or --certificate-identity and --certificate-oidc-issuer, or --policy FILE',
    });
  }
  const anchors: TrustAnchors = { keys, identities };
  if (opts.trustedRoot !== undefined) anchors.trustedRoot = await (await import('../trust/trusted-root.js')).loadTrustedRoot(opts.trustedRoot);
  return anchors;
}

/** Key files are a few kilobytes; anything far larger is not one (and /dev/zero must not be read whole). */
const MAX_KEY_FILE_BYTES = 64 * 1024;

async function readKeyFile(path: string): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new LadingError('E_KEY_INVALID', `${path} is not a regular file`);
    if (st.size > MAX_KEY_FILE_BYTES) throw new LadingError('E_KEY_INVALID', `${path} is ${st.size} bytes, too large for a key file`);
    return await readFile(path);
  } catch (err) {
    if (err instanceof LadingError) throw err;
    throw new LadingError('E_KEY_INVALID', `cannot read key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** The signing key: an encrypted PKCS#8 PEM whose passphrase comes from LADING_PASSWORD, else stdin. */
export async function signingKey(path: string): Promise<KeyObject> {
  const { loadPrivateKey } = await import('../trust/keys.js');
  return loadPrivateKey(await readKeyFile(path), await passphrase());
}

/**
 * LADING_PASSWORD, else read from stdin: on a terminal, asked for with echo off (and asked twice when
 * `confirm`, so that a typo cannot make a key nobody can open); otherwise the first line of the pipe.
 */
export async function passphrase(opts: { confirm?: boolean } = {}): Promise<string> {
  const env = process.env.LADING_PASSWORD;
  if (env !== undefined) return env;
  if (!process.stdin.isTTY) return firstLine();
  const first = await askHidden('Passphrase: ');
  if (opts.confirm && (await askHidden('Passphrase again: ')) !== first) {
    throw new LadingError('E_USAGE', 'the passphrases differ', { hint: 'run the command again' });
  }
  return first;
}

async function firstLine(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if ((chunk as Buffer).includes(10) || size > 4096) break;
  }
  return Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
}

/** Reads one line from the terminal in raw mode, so that nothing typed is shown. */
function askHidden(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let typed = '';
    const finish = (err?: Error): void => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off('data', onData);
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(typed);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003') return finish(new LadingError('E_ABORTED', 'interrupted at the passphrase prompt'));
        if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
        else if (typed.length < 4096) typed += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on('data', onData);
  });
}

/** Options of the verbs that can verify before they act (pull, copy). */
export interface VerifyGateOptions {
  verify?: boolean;
  policy?: string;
}

export function withVerifyGate(cmd: Command): Command {
  return cmd
    .option('--verify', 'verify signatures under the trust policy first, and refuse what it does not allow')
    .option('--policy <file>', 'the trust policy (YAML or JSON); implies --verify. LADING_TRUST_POLICY set also turns verification on');
}

/** The policy to enforce, or undefined when the user did not ask for verification. */
export async function gatePolicy(opts: VerifyGateOptions): Promise<TrustPolicy | undefined> {
  // A policy configured in the environment is enforced: an administrator who sets it expects no unverified pulls.
  const fromEnv = process.env.LADING_TRUST_POLICY || undefined;
  const path = opts.policy ?? fromEnv;
  if (path === undefined) {
    if (opts.verify) {
      throw new LadingError('E_USAGE', '--verify needs a trust policy', { hint: 'pass --policy FILE or set LADING_TRUST_POLICY' });
    }
    return undefined;
  }
  return (await import('../trust/policy.js')).loadPolicy(path);
}

/**
 * Verifies `subject` under the policy, prints the report (stderr, so stdout stays the result) and throws
 * when the policy refuses.
 */
export async function enforcePolicy(target: Target, subject: Descriptor, scope: string, policy: TrustPolicy, json: boolean | undefined): Promise<PolicyDecision> {
  const { verifyUnderPolicy } = await import('../trust/enforce.js');
  const { formatDecision, decisionError } = await import('../trust/policy.js');
  const decision = await verifyUnderPolicy(target, subject, scope, policy, { signal: cliSignal });
  if (!json) process.stderr.write(`${formatDecision(decision)}\n`);
  if (!decision.allowed) throw decisionError(decision);
  return decision;
}
