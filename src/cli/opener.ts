import type { Opener } from '../artifact/bundle.js';
import { makeTransport, openTarget, type GlobalOptions } from './context.js';

/**
 * Opens the references a bundle names. One transport serves them all, so that a registry's token is
 * fetched once per scope rather than once per component.
 */
export function cliOpener(opts: GlobalOptions): Opener {
  const transport = makeTransport(opts);
  return {
    async open(ref: string) {
      const opened = await openTarget(ref, opts, { transport });
      return { target: opened.target, reference: opened.reference, display: opened.display };
    },
  };
}
