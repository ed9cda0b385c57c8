import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { isValidTag } from '../oci/reference.js';
import { openTarget, type GlobalOptions } from './context.js';
import { emit } from './output.js';
import { withCommon } from './common.js';

export function register(program: Command): void {
  withCommon(
    program
      .command('tag')
      .description('point more tags at the manifest a reference names')
      .argument('<reference>', 'registry/repository:tag|@digest or layout:<dir>:tag|@digest')
      .argument('<tags...>', 'new tags'),
  ).action(async (reference: string, tags: string[], opts: GlobalOptions) => {
    for (const t of tags) {
      if (!isValidTag(t)) throw new LadingError('E_USAGE', `invalid tag "${t}"`, { hint: 'a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -' });
    }
    const opened = await openTarget(reference, opts);
    const desc = await opened.target.resolve(opened.reference);
    for (const t of tags) await opened.target.tag(desc, t);
    emit(opts.json, { reference: opened.display, descriptor: desc, tags }, () => [...tags.map((t) => `Tagged ${t}`), `Digest: ${desc.digest}`]);
  });
}
