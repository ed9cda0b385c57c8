import type { Command } from 'commander';
import { pullFiles } from '../artifact/pull.js';
import { cliSignal, openTarget, parseConcurrency, type GlobalOptions } from './context.js';
import { emit, humanSize, Progress } from './output.js';
import { withCommon } from './common.js';

interface PullOptions extends GlobalOptions {
  output: string;
}

export function register(program: Command): void {
  withCommon(
    program
      .command('pull')
      .description('pull an artifact: write its files by title, unpack its directories')
      .argument('<reference>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
      .option('-o, --output <dir>', 'directory to write into', '.'),
  ).action(async (reference: string, opts: PullOptions) => {
    const opened = await openTarget(reference, opts);
    const progress = new Progress(!opts.json);
    try {
      const result = await pullFiles(opened.target, opened.reference, opts.output, {
        concurrency: parseConcurrency(opts.concurrency),
        onProgress: progress.listener,
        signal: cliSignal,
      });
      progress.stop();
      emit(
        opts.json,
        {
          reference: opened.display,
          descriptor: result.descriptor,
          files: result.files.map((f) => ({ title: f.title, path: f.path, kind: f.kind, digest: f.descriptor.digest, size: f.descriptor.size })),
          skipped: result.skipped,
        },
        () => [
          ...result.files.map((f) => `Downloaded ${f.title}${f.kind === 'directory' ? '/' : ''} (${humanSize(f.descriptor.size)})`),
          ...(result.skipped.length ? [`Skipped ${result.skipped.length} layer(s) without a title`] : []),
          `Pulled ${opened.display}${opened.explicit ? '' : `:${opened.reference}`}`,
          `Digest: ${result.descriptor.digest}`,
        ],
      );
    } finally {
      progress.stop();
    }
  });
}
