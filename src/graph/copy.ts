import { Readable, Transform } from 'node:stream';
import { LadingError, isLadingError } from '../errors.js';
import {
  isIndexer,
  isMounter,
  isReferrerLister,
  type ProgressEvent,
  type Storage,
  type Target,
} from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import { VerifyingStream } from '../content/verify.js';
import type { Descriptor } from '../oci/descriptor.js';
import { manifestChildren, parseManifest } from '../oci/manifest.js';
import { isManifestMediaType } from '../oci/mediatype.js';
import { Limiter } from './limiter.js';

export interface CopyOptions {
  /** Blobs moved at once. */
  concurrency?: number;
  /** Also copy every manifest that refers to a copied manifest (signatures, SBOMs, attestations), recursively. */
  referrers?: boolean;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface CopyResult {
  root: Descriptor;
  /** Descriptors copied, found present, or mounted, by digest. */
  copied: number;
  skipped: number;
  mounted: number;
  bytes: number;
}

/**
 * Copies the content graph under `root` from `src` to `dst`: children before parents, so that the
 * destination never holds a manifest whose content is missing; what the destination has is skipped.
 */
export async function copyGraph(src: Storage, dst: Storage, root: Descriptor, opts: CopyOptions = {}): Promise<CopyResult> {
  const run = new GraphCopy(src, dst, opts);
  try {
    await run.node(root);
    if (opts.referrers) await run.referrersOf(root);
  } catch (err) {
    // Stop every transfer still moving, and return only once they have let go of files and sockets.
    await run.abort(err);
    throw err;
  }
  return { root, ...run.stats };
}

/** Resolves `srcRef` in `src`, copies its graph to `dst` and tags it there as `dstRef` (when given). */
export async function copy(src: Target, srcRef: string, dst: Target, dstRef?: string, opts: CopyOptions = {}): Promise<CopyResult> {
  const root = await src.resolve(srcRef);
  const result = await copyGraph(src, dst, root, opts);
  await name(dst, root, dstRef);
  return result;
}

/**
 * Tags the copied root, or — with no tag — lists it untagged where a store keeps such a list (an OCI
 * layout's index.json), so that the copy is not invisible to other tools and their garbage collectors.
 */
export async function name(dst: Target, root: Descriptor, tag?: string): Promise<void> {
  if (tag) await dst.tag(root, tag);
  else if (isIndexer(dst)) await dst.index(root);
}

class GraphCopy {
  readonly stats = { copied: 0, skipped: 0, mounted: 0, bytes: 0 };
  private readonly limiter: Limiter;
  private readonly done = new Map<string, Promise<void>>();
  private readonly referrersDone = new Set<string>();
  /** Manifests copied in this run, whose referrers are looked up when asked for. */
  private readonly manifests: Descriptor[] = [];

  private readonly controller = new AbortController();
  /** The run's signal: the caller's, and this run's own abort on the first failure. */
  private readonly signal: AbortSignal;

  constructor(
    private readonly src: Storage,
    private readonly dst: Storage,
    private readonly opts: CopyOptions,
  ) {
    this.limiter = new Limiter(Math.max(1, opts.concurrency ?? 4));
    this.signal = opts.signal ? AbortSignal.any([opts.signal, this.controller.signal]) : this.controller.signal;
  }

  /**
   * Each digest is copied once per run, however many parents name it. `ensure`: a manifest that is
   * already there is pushed again all the same (without its children), so that the destination records
   * it as a referrer even if an earlier run stopped between storing and recording it.
   */
  node(desc: Descriptor, ensure = false): Promise<void> {
    let p = this.done.get(desc.digest);
    if (!p) {
      p = isManifestMediaType(desc.mediaType) ? this.manifest(desc, ensure) : this.blob(desc);
      p.catch((err: unknown) => this.controller.abort(err));
      this.done.set(desc.digest, p);
    }
    return p;
  }

  /**
   * Runs a task in a concurrency slot. A failure aborts the run before the slot passes to the next task,
   * so that nothing new starts after the first failure.
   */
  private slot<T>(task: () => Promise<T>): Promise<T> {
    return this.limiter.run(async () => {
      try {
        this.signal.throwIfAborted();
        return await task();
      } catch (err) {
        this.controller.abort(err);
        throw err;
      }
    });
  }

  async abort(reason: unknown): Promise<void> {
    this.controller.abort(reason);
    // Settle everything started, including what started while earlier work was settling.
    for (let seen = -1; seen !== this.done.size; ) {
      seen = this.done.size;
      await Promise.allSettled([...this.done.values()]);
    }
  }

  private async manifest(desc: Descriptor, ensure: boolean): Promise<void> {
    this.signal.throwIfAborted();
    this.manifests.push(desc);
    if (await this.slot(() => this.dst.exists(desc))) {
      // A manifest present at the destination was pushed after its children, so its graph is complete.
      if (ensure) {
        const bytes = await this.slot(() => fetchBytes(this.src, desc, undefined, this.signal));
        await this.slot(() => this.dst.push(desc, Readable.from([bytes]), { signal: this.signal }));
      }
      this.stats.skipped++;
      this.emit(desc, desc.size, 'exists');
      return;
    }
    const bytes = await this.slot(() => fetchBytes(this.src, desc, undefined, this.signal));
    const parsed = parseManifest(bytes, desc.mediaType);
    await Promise.all(manifestChildren(parsed).map((child) => this.node(child)));
    await this.slot(() => this.dst.push(desc, Readable.from([bytes]), { signal: this.signal }));
    this.stats.copied++;
    this.stats.bytes += bytes.length;
    this.emit(desc, desc.size, 'done');
  }

  private blob(desc: Descriptor): Promise<void> {
    return this.slot(async () => {
      this.signal.throwIfAborted();
      if (desc.urls?.length && !(await this.src.exists(desc))) {
        // Foreign layers live elsewhere by design; the manifest that names them is enough.
        this.stats.skipped++;
        return;
      }
      if (await this.dst.exists(desc)) {
        this.stats.skipped++;
        this.emit(desc, desc.size, 'exists');
        return;
      }
      if (isMounter(this.src) && isMounter(this.dst) && this.src.registry === this.dst.registry && this.src.repository !== this.dst.repository) {
        if (await this.dst.mount(desc, this.src.repository)) {
          this.stats.mounted++;
          this.emit(desc, desc.size, 'mounted');
          return;
        }
      }
      const body = await this.src.fetch(desc, { signal: this.signal });
      const observed = this.observe(body, desc);
      await this.dst.push(desc, observed, { signal: this.signal });
      this.stats.copied++;
      this.stats.bytes += desc.size;
      this.emit(desc, desc.size, 'done');
    });
  }

  /** Reports bytes as they pass, without giving up the source's own verification. */
  private observe(body: Readable, desc: Descriptor): Readable {
    const report = this.opts.onProgress;
    if (!report) return body;
    if (body instanceof VerifyingStream) {
      body.onProgress = (bytes) => report({ desc, bytes, total: desc.size, state: 'transfer' });
      return body;
    }
    let bytes = 0;
    const counter = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        bytes += chunk.length;
        report({ desc, bytes, total: desc.size, state: 'transfer' });
        cb(null, chunk);
      },
    });
    body.on('error', (err) => counter.destroy(err));
    counter.on('close', () => {
      if (!body.readableEnded) body.destroy();
    });
    return body.pipe(counter);
  }

  /** Copies the referrers of every manifest copied so far, and theirs, until none are new. */
  async referrersOf(root: Descriptor): Promise<void> {
    if (!isReferrerLister(this.src)) {
      throw new LadingError('E_UNSUPPORTED', 'the source cannot list referrers', { hint: 'copy without --referrers' });
    }
    const lister = this.src;
    const queue = [root, ...this.manifests];
    while (queue.length > 0) {
      const subject = queue.shift() as Descriptor;
      if (this.referrersDone.has(subject.digest)) continue;
      this.referrersDone.add(subject.digest);
      const found: Descriptor[] = [];
      try {
        for await (const r of lister.referrers(subject)) found.push(r);
      } catch (err) {
        if (!isLadingError(err, 'E_NOT_FOUND')) throw err;
      }
      await Promise.all(found.map((r) => this.node(r, true)));
      queue.push(...found);
    }
  }

  private emit(desc: Descriptor, bytes: number, state: ProgressEvent['state']): void {
    this.opts.onProgress?.({ desc, bytes, total: desc.size, state });
  }
}
