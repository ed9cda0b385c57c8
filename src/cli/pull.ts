import type { Command } from 'commander';
import { resolveBundle } from '../artifact/bundle.js';
import { pullTyped } from '../artifact/typed.js';
import { formatVariant, variantOf } from '../artifact/variants.js';
import { checkFrozenPlan, lockKey, requireLockfile, LOCKFILE_NAME, type LockEntry } from '../install/lockfile.js';
import { LadingError } from '../errors.js';
import { cliSignal, openTarget, parseConcurrency, type GlobalOptions } from './context.js';
import { emit, humanSize, Progress } from './output.js';
import { withCommon } from './common.js';
import { cliOpener } from './opener.js';
import { enforcePolicy, gatePolicy, withVerifyGate, type VerifyGateOptions } from './trust-options.js';
import type { PolicyDecision } from '../trust/policy.js';
import { loadFamilies, variantSelector, withFamilies, withVariant, type FamilyOptions, type VariantOptions } from './typed-options.js';

interface PullOptions extends GlobalOptions, FamilyOptions, VariantOptions, VerifyGateOptions {
  output: string;
  frozen?: boolean;
  lockfile: string;
}

export function register(program: Command): void {
  withVerifyGate(withVariant(
    withFamilies(
      withCommon(
        program
          .command('pull')
          .description('pull an artifact: its files by title, its directories unpacked, and the envelope of a typed artifact')
          .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
          .option('-o, --output <dir>', 'directory to write into', '.')
          .option('--frozen', `refuse anything that differs from the lockfile`)
          .option('--lockfile <path>', 'the lockfile --frozen checks against', LOCKFILE_NAME),
      ),
    ),
  )).action(async (reference: string, opts: PullOptions) => {
    const families = await loadFamilies(opts);
    const want = variantSelector(opts);
    let locked: LockEntry | undefined;
    if (opts.frozen) {
      const lock = await requireLockfile(opts.lockfile, reference);
      locked = lock.artifacts[lockKey(reference)];
      if (!locked) {
        throw new LadingError('E_LOCK_MISMATCH', `${lockKey(reference)} is not in ${opts.lockfile}`, {
          hint: `run lading lock ${reference} to lock it, or drop --frozen`,
          details: { reference: lockKey(reference), lockfile: opts.lockfile, locked: null },
        });
      }
      if (locked.platform !== undefined && want === undefined) {
        throw new LadingError('E_LOCK_MISMATCH', `${lockKey(reference)} is locked for ${locked.platform}, and no --platform was given`, {
          details: { reference: lockKey(reference), platform: locked.platform },
          hint: `pull with --platform ${locked.platform}${Object.entries(locked.variant ?? {}).map(([k, v]) => ` --variant ${k}=${v}`).join('')}`,
        });
      }
      // A bundle is frozen only if every component still resolves to its locked digest.
      if (locked.components) checkFrozenPlan(lock, await resolveBundle(cliOpener(opts), reference, families, { signal: cliSignal }));
    }
    const policy = await gatePolicy(opts);
    const opened = await openTarget(reference, opts);
    let verification: PolicyDecision | undefined;
    let verifiedDigest: string | undefined;
    if (policy) {
      const subject = await opened.target.resolve(locked?.digest ?? opened.reference);
      verification = await enforcePolicy(opened.target, subject, opened.scope, policy, opts.json);
      verifiedDigest = subject.digest;
    }
    const progress = new Progress(!opts.json);
    try {
      // What was verified is pulled by digest, so a tag moved meanwhile cannot substitute other bytes.
      const result = await pullTyped(opened.target, verifiedDigest ?? opened.reference, opts.output, {
        families,
        display: `${opened.display}${opened.explicit ? '' : `:${opened.reference}`}`,
        ...(want ? { platform: want.platform, variant: want.extra } : {}),
        ...(locked ? { expectDigest: locked.digest, ...(locked.manifest ? { expectManifest: locked.manifest } : {}) } : {}),
        concurrency: parseConcurrency(opts.concurrency),
        onProgress: progress.listener,
        signal: cliSignal,
      });
      progress.stop();
      const chosen = result.variant ? variantOf(result.variant) : undefined;
      emit(
        opts.json,
        {
          reference: opened.display,
          descriptor: result.descriptor,
          ...(result.root.digest !== result.descriptor.digest ? { index: result.root } : {}),
          ...(chosen ? { variant: formatVariant(chosen) } : {}),
          ...(result.family ? { family: result.family.name, envelope: result.envelope, envelopePath: result.envelopePath } : {}),
          files: result.files.map((f) => ({ title: f.title, path: f.path, kind: f.kind, digest: f.descriptor.digest, size: f.descriptor.size })),
          skipped: result.skipped,
          ...(verification ? { verification } : {}),
        },
        () => [
          ...result.files.map((f) => `Downloaded ${f.title}${f.kind === 'directory' ? '/' : ''} (${humanSize(f.descriptor.size)})`),
          ...(result.skipped.length ? [`Skipped ${result.skipped.length} layer(s) without a title`] : []),
          ...(result.envelopePath ? [`Wrote the ${result.family!.name} envelope to ${result.envelopePath}`] : []),
          `Pulled ${opened.display}${opened.explicit ? '' : `:${opened.reference}`}${chosen ? ` (${formatVariant(chosen)})` : ''}`,
          `Digest: ${result.descriptor.digest}`,
        ],
      );
    } finally {
      progress.stop();
    }
  });
}
