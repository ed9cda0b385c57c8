import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { checkIdentityMatcher } from '../trust/identity.js';
import { loadPrivateKey, loadPublicKey } from '../trust/keys.js';
import { loadPolicy, formatDecision, decisionError, type PolicyDecision, type TrustPolicy } from '../trust/policy.js';
import { loadTrustedRoot } from '../trust/trusted-root.js';
import type { IdentityMatcher, TrustAnchors } from '../trust/types.js';
import { collect } from './common.js';
import type { KeyObject } from 'node:crypto';

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
  if (opts.trustedRoot !== undefined) anchors.trustedRoot = await loadTrustedRoot(opts.trustedRoot);
  return anchors;
}

async function readKeyFile(path: string): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (err) {
    throw new LadingError('E_KEY_INVALID', `cannot read key ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
}

/** The signing key: an encrypted PKCS#8 PEM whose passphrase comes from LADING_PASSWORD, else stdin. */
export async function signingKey(path: string): Promise<KeyObject> {
  return loadPrivateKey(await readKeyFile(path), await passphrase());
}

/** LADING_PASSWORD, else the first line of stdin (never echoed, never printed). */
export async function passphrase(): Promise<string> {
  const env = process.env.LADING_PASSWORD;
  if (env !== undefined) return env;
  if (process.stdin.isTTY) process.stderr.write('Passphrase: ');
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    chunks.push(chunk as Buffer);
    size += (chunk as Buffer).length;
    if ((chunk as Buffer).includes(10) || size > 4096) break;
  }
  const line = Buffer.concat(chunks).toString('utf8').split(/\r?\n/)[0] ?? '';
  return line;
}

/** Options of the verbs that can verify before they act (pull, copy). */
export interface VerifyGateOptions {
  verify?: boolean;
  policy?: string;
}

export function withVerifyGate(cmd: Command): Command {
  return cmd
    .option('--verify', 'verify signatures under the trust policy first, and refuse what it does not allow')
    .option('--policy <file>', 'the trust policy (YAML or JSON); implies --verify (LADING_TRUST_POLICY too)');
}

/** The policy to enforce, or undefined when the user did not ask for verification. */
export async function gatePolicy(opts: VerifyGateOptions): Promise<TrustPolicy | undefined> {
  const path = opts.policy ?? (opts.verify ? process.env.LADING_TRUST_POLICY : undefined);
  if (path === undefined) {
    if (opts.verify) {
      throw new LadingError('E_USAGE', '--verify needs a trust policy', { hint: 'pass --policy FILE or set LADING_TRUST_POLICY' });
    }
    return undefined;
  }
  return loadPolicy(path);
}

/** Prints the report (stderr, so stdout stays the result) and throws when the policy refuses. */
export function enforceDecision(decision: PolicyDecision, json: boolean | undefined): void {
  if (!json) process.stderr.write(`${formatDecision(decision)}\n`);
  if (!decision.allowed) throw decisionError(decision);
}
