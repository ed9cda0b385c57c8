import type { Command } from 'commander';
import { copyGraph, name } from '../graph/copy.js';
import { isDigest } from '../oci/digest.js';
import { cliSignal, makeTransport, openTarget, parseConcurrency, type GlobalOptions } from './context.js';
import { emit, humanSize, Progress } from './output.js';
import { withCommon } from './common.js';
import { enforcePolicy, gatePolicy, withVerifyGate, type VerifyGateOptions } from './trust-options.js';
import type { PolicyDecision } from '../trust/policy.js';

interface CopyOptions extends GlobalOptions, VerifyGateOptions {
  referrers?: boolean;
}

export function register(program: Command): void {
  withVerifyGate(withCommon(
    program
      .command('copy')
      .alias('cp')
      .description('copy an artifact or image (its whole graph) between registries and layouts')
      .argument('<source>', 'registry/repository[:tag|@digest] or layout:<dir>[:tag|@digest]')
      .argument('<destination>', 'registry/repository[:tag] or layout:<dir>[:tag]; without a tag, the source tag')
      .option('-r, --referrers', 'also copy signatures, attestations and other referrers, recursively'),
  )).action(async (source: string, destination: string, opts: CopyOptions) => {
    const concurrency = parseConcurrency(opts.concurrency);
    const transport = makeTransport(opts);
    const src = await openTarget(source, opts, { transport });
    // The source must resolve before a destination layout is created.
    const root = await src.target.resolve(src.reference);
    const policy = await gatePolicy(opts);
    let verification: PolicyDecision | undefined;
    if (policy) {
      // The graph copied is the one whose root was verified: the root descriptor is pinned from here on.
      verification = await enforcePolicy(src.target, root, src.scope, policy, opts.json);
    }
    const dst = await openTarget(destination, opts, { create: true, transport });
    const tag = dst.explicit ? dst.reference : isDigest(src.reference) ? undefined : src.reference;
    const progress = new Progress(!opts.json);
    try {
      const result = await copyGraph(src.target, dst.target, root, {
        referrers: opts.referrers,
        concurrency,
        onProgress: progress.listener,
        signal: cliSignal,
      });
      await name(dst.target, root, tag && !isDigest(tag) ? tag : undefined);
      progress.stop();
      emit(opts.json, { source: src.display, destination: dst.display, tag, ...result, ...(verification ? { verification } : {}) }, () => [
        `Copied ${src.display} => ${dst.display}${tag && !dst.explicit ? `:${tag}` : ''}`,
        `Digest: ${result.root.digest}`,
        `${result.copied} copied (${humanSize(result.bytes)}), ${result.skipped} already present, ${result.mounted} mounted`,
      ]);
    } finally {
      progress.stop();
    }
  });
}
