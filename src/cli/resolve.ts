import type { Command } from 'commander';
import { flattenPlan, renderPlan, resolveBundle } from '../artifact/bundle.js';
import { lockEntriesFromPlan, updateLockfile, LOCKFILE_NAME, type LockEntry } from '../install/lockfile.js';
import { LadingError } from '../errors.js';
import { cliSignal, type GlobalOptions } from './context.js';
import { withCommon } from './common.js';
import { emit } from './output.js';
import { cliOpener } from './opener.js';
import { loadFamilies, variantSelector, withFamilies, withVariant, type FamilyOptions, type VariantOptions } from './typed-options.js';
import { formatPlatform } from '../oci/platform.js';

interface ResolveOptions extends GlobalOptions, FamilyOptions {}

interface LockOptions extends GlobalOptions, FamilyOptions, VariantOptions {
  lockfile: string;
}

export function register(program: Command): void {
  withFamilies(
    withCommon(
      program
        .command('resolve')
        .description('pin a reference and, for a bundle, every component it names (recursively) to digests')
        .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]'),
    ),
  ).action(async (reference: string, opts: ResolveOptions) => {
    const families = await loadFamilies(opts);
    const plan = await resolveBundle(cliOpener(opts), reference, families, { signal: cliSignal });
    emit(opts.json, { plan, artifacts: flattenPlan(plan) }, () => renderPlan(plan));
  });

  withVariant(
    withFamilies(
      withCommon(
        program
          .command('lock')
          .description(`resolve references (bundles with all their components) and record their digests in ${LOCKFILE_NAME}`)
          .argument('<references...>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
          .option('--lockfile <path>', 'the lockfile to write', LOCKFILE_NAME),
      ),
    ),
  ).action(async (references: string[], opts: LockOptions) => {
    const families = await loadFamilies(opts);
    const want = variantSelector(opts);
    const opener = cliOpener(opts);
    // Everything is resolved before the lockfile is touched: one bad reference changes nothing.
    const entries: Record<string, LockEntry> = {};
    for (const ref of references) {
      const plan = await resolveBundle(opener, ref, families, { signal: cliSignal });
      for (const [key, entry] of Object.entries(lockEntriesFromPlan(plan, want ? { platform: formatPlatform(want.platform), variant: want.extra } : {}))) {
        // A tag that moved between two of the plans cannot be locked to both digests.
        const before = entries[key];
        if (before && before.digest !== entry.digest) {
          throw new LadingError('E_LOCK_MISMATCH', `${key} resolved to ${before.digest} and then to ${entry.digest} while locking`, {
            hint: 'the tag moved during the run; run lading lock again once pushes to it have finished',
            details: { reference: key, digests: [before.digest, entry.digest] },
          });
        }
        entries[key] = entry;
      }
    }
    const lock = await updateLockfile(opts.lockfile, entries);
    const keys = Object.keys(entries);
    emit(opts.json, { lockfile: opts.lockfile, locked: keys.map((k) => ({ reference: k, ...lock.artifacts[k] })) }, () => [
      ...keys.map((k) => `Locked ${k} ${lock.artifacts[k]!.digest}${lock.artifacts[k]!.manifest ? ` (${lock.artifacts[k]!.platform} ${lock.artifacts[k]!.manifest})` : ''}`),
      `Wrote ${opts.lockfile} (${Object.keys(lock.artifacts).length} artifact(s))`,
    ]);
  });
}
