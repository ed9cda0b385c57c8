import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { openTarget, type GlobalOptions } from './context.js';
import { emit } from './output.js';
import { withCommon } from './common.js';

interface LsOptions extends GlobalOptions {
  last?: string;
  pageSize?: string;
}

export function register(program: Command): void {
  withCommon(
    program
      .command('ls')
      .description('list the tags of a repository or layout')
      .argument('<repository>', 'registry/repository or layout:<dir>')
      .option('--last <tag>', 'start after this tag')
      .option('--page-size <n>', 'tags asked for per request'),
  ).action(async (repository: string, opts: LsOptions) => {
    const opened = await openTarget(repository, opts);
    if (opened.explicit) throw new LadingError('E_USAGE', `ls takes a repository, not a reference with a tag or digest: ${repository}`);
    if (typeof opened.target.tags !== 'function') throw new LadingError('E_UNSUPPORTED', `${opened.display} cannot list tags`);
    const pageSize = opts.pageSize === undefined ? undefined : Number(opts.pageSize);
    if (pageSize !== undefined && (!Number.isInteger(pageSize) || pageSize < 1)) throw new LadingError('E_USAGE', '--page-size takes a positive whole number');
    const tags: string[] = [];
    for await (const t of opened.target.tags({ last: opts.last, pageSize })) tags.push(t);
    emit(opts.json, { repository: opened.display, tags }, () => tags);
  });
}
