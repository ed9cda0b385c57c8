import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { emit, humanSize } from './output.js';

interface MaintenanceOptions {
  root: string;
  json?: boolean;
  dryRun?: boolean;
  grace?: string;
}

/** `90s`, `15m`, `2h`: how long fresh content is protected from gc. */
function parseDuration(text: string): number {
  const m = /^(\d+)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new LadingError('E_USAGE', `--grace ${JSON.stringify(text)} is not a duration such as 30m or 2h`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h'];
  return Number(m[1]) * unit;
}

async function openStore(root: string) {
  // The server's modules load only for these verbs: the client verbs start faster without them.
  const { RegistryStore } = await import('../server/storage/store.js');
  const { FsDriver } = await import('../server/storage/fs-driver.js');
  return new RegistryStore(new FsDriver(root));
}

export function register(program: Command): void {
  program
    .command('gc')
    .description("remove blobs no manifest needs and expired uploads from a lading serve root (safe beside a running server)")
    .option('--root <dir>', 'the registry root', './lading-data')
    .option('--dry-run', 'report what would be removed, remove nothing')
    .option('--grace <duration>', 'keep content younger than this, for pushes still in flight (default 1h)')
    .option('--json', 'print the report as JSON')
    .action(async (opts: MaintenanceOptions) => {
      const store = await openStore(opts.root);
      const report = await store.gc({ dryRun: opts.dryRun ?? false, ...(opts.grace ? { graceMs: parseDuration(opts.grace) } : {}) });
      emit(opts.json, report, () => [
        `${report.dryRun ? 'Would remove' : 'Removed'} ${report.removedBlobs.length} blob(s) (${humanSize(report.bytesFreed)}), ${report.removedLinks.length} link(s), ${report.removedUploads.length} upload(s), ${report.removedTemps.length} temp file(s)`,
        `Kept ${report.markedBlobs} blob(s) in use${report.restoredBlobs.length ? `; put back ${report.restoredBlobs.length} a push needed meanwhile` : ''}`,
      ]);
    });

  program
    .command('fsck')
    .description('re-hash every blob of a lading serve root and check every link, manifest, tag and referrer')
    .option('--root <dir>', 'the registry root', './lading-data')
    .option('--json', 'print the report as JSON')
    .action(async (opts: MaintenanceOptions) => {
      const store = await openStore(opts.root);
      const report = await store.fsck();
      const failure = new LadingError('E_STORE_CORRUPT', `fsck found ${report.problems.length} problem(s) in ${opts.root}`, {
        hint: 'see the problems listed; a corrupt blob must be pushed again',
        details: { report },
      });
      // With --json one document is printed: the report, or the error that carries it.
      if (!report.clean && opts.json) throw failure;
      emit(opts.json, report, () => [
        ...report.problems.map((p) => `PROBLEM ${p.kind} ${p.path}: ${p.message}`),
        ...report.notes.map((n) => `note ${n.kind} ${n.path} (gc removes it)`),
        `${report.clean ? 'Clean' : `${report.problems.length} problem(s)`}: ${report.blobs} blob(s), ${humanSize(report.bytes)}, ${report.repositories} repositories`,
      ]);
      if (!report.clean) throw failure;
    });
}
