import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { attestManifest, signManifest } from '../trust/attach.js';
import { cliSignal, openTarget, type GlobalOptions } from './context.js';
import { emit } from './output.js';
import { collect, parseAnnotations, withCommon } from './common.js';
import { signingKey } from './trust-options.js';

interface SignOptions extends GlobalOptions {
  key: string;
  legacyTag?: boolean;
  annotation: string[];
}

interface AttestOptions extends GlobalOptions {
  key: string;
  predicate: string;
  type: string;
  annotation: string[];
}

export function register(program: Command): void {
  withCommon(
    program
      .command('sign')
      .description('sign a manifest and attach the sigstore bundle as an OCI 1.1 referrer')
      .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
      .requiredOption('--key <file>', 'the private key (encrypted PEM; passphrase from LADING_PASSWORD or stdin)')
      .option('--legacy-tag', "also write cosign's sha256-<hex>.sig simple-signing signature")
      .option('-a, --annotation <key=value>', 'an annotation on the signature manifest (repeatable)', collect, []),
  ).action(async (reference: string, opts: SignOptions) => {
    const key = await signingKey(opts.key);
    const opened = await openTarget(reference, opts);
    const subject = await opened.target.resolve(opened.reference);
    if (opts.legacyTag && !opened.remote) {
      throw new LadingError('E_USAGE', '--legacy-tag needs a registry reference', { hint: "cosign's payload names the image's repository" });
    }
    const annotations = parseAnnotations(opts.annotation);
    const result = await signManifest(opened.target, subject, {
      key,
      ...(opts.legacyTag ? { legacy: { dockerReference: opened.scope } } : {}),
      ...(annotations ? { annotations } : {}),
      signal: cliSignal,
    });
    emit(opts.json, result, () => [
      `Signed ${opened.display}@${subject.digest}`,
      `Signature: ${result.referrer.digest} (referrer, key ${result.keyId})`,
      ...(result.legacy ? [`Legacy signature: ${result.legacy.tag} (${result.legacy.descriptor.digest})`] : []),
    ]);
  });

  withCommon(
    program
      .command('attest')
      .description('sign an in-toto statement about a manifest (DSSE) and attach it as a referrer')
      .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
      .requiredOption('--key <file>', 'the private key (encrypted PEM; passphrase from LADING_PASSWORD or stdin)')
      .requiredOption('--predicate <file>', 'the predicate, a JSON file')
      .requiredOption('--type <uri>', 'the predicate type URI, e.g. https://slsa.dev/provenance/v1')
      .option('-a, --annotation <key=value>', 'an annotation on the attestation manifest (repeatable)', collect, []),
  ).action(async (reference: string, opts: AttestOptions) => {
    if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(opts.type)) {
      throw new LadingError('E_USAGE', `--type "${opts.type}" is not a URI`, { hint: 'predicate types are URIs, e.g. https://slsa.dev/provenance/v1' });
    }
    const predicate = await readPredicate(opts.predicate);
    const key = await signingKey(opts.key);
    const opened = await openTarget(reference, opts);
    const subject = await opened.target.resolve(opened.reference);
    const annotations = parseAnnotations(opts.annotation);
    const result = await attestManifest(opened.target, subject, {
      key,
      predicateType: opts.type,
      predicate,
      subjectName: opened.scope,
      ...(annotations ? { annotations } : {}),
      signal: cliSignal,
    });
    emit(opts.json, { ...result, predicateType: opts.type }, () => [
      `Attested ${opened.display}@${subject.digest} (${opts.type})`,
      `Attestation: ${result.referrer.digest} (referrer, key ${result.keyId})`,
    ]);
  });
}

/** A predicate is JSON, at most 16 MiB (it is signed whole, inside the DSSE envelope). */
async function readPredicate(path: string): Promise<unknown> {
  let text: string;
  try {
    const bytes = await readFile(path);
    if (bytes.length > 16 * 1024 * 1024) throw new LadingError('E_TOO_LARGE', `${path} is over 16 MiB`);
    text = bytes.toString('utf8');
  } catch (err) {
    if (err instanceof LadingError) throw err;
    throw new LadingError('E_IO', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new LadingError('E_JSON_INVALID', `${path} is not JSON: ${(err as Error).message}`, { cause: err });
  }
}
