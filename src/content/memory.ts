import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { LadingError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';
import { referrerOf } from '../oci/manifest.js';
import { isValidTag } from '../oci/reference.js';
import { isManifestMediaType } from '../oci/mediatype.js';
import type {
  Deleter,
  FetchOptions,
  PushOptions,
  ReferrerLister,
  TagLister,
  Target,
} from './interfaces.js';
import { isVerifiedFor, verified } from './verify.js';

interface Entry {
  desc: Descriptor;
  data: Buffer;
}



/**
 * A target held entirely in memory: tests, dry runs and staging of small graphs. Holding whole blobs is
 * the point here, so this is the one store that buffers; it still verifies every byte it keeps.
 */
export class MemoryStore implements Target, ReferrerLister, TagLister, Deleter {
  private readonly blobs = new Map<string, Entry>();
  private readonly tagMap = new Map<string, string>();
  private readonly referrerFacts = new Map<string, { subject: string; descriptor: Descriptor }>();

  async exists(desc: Descriptor): Promise<boolean> {
    const entry = this.blobs.get(desc.digest);
    return entry !== undefined && entry.data.length === desc.size;
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    opts.signal?.throwIfAborted();
    const entry = this.blobs.get(desc.digest);
    if (!entry) throw notFound(desc.digest);
    const offset = opts.offset ?? 0;
    if (offset > 0) return Readable.from([entry.data.subarray(offset)], { objectMode: false });
    // The stored bytes were verified on push, but `desc` may claim another size: checking against the
    // caller's descriptor is what makes the stream's contract hold.
    return verified(Readable.from([entry.data], { objectMode: false }), desc);
  }

  async push(desc: Descriptor, body: Readable, opts: PushOptions = {}): Promise<void> {
    try {
      parseDigest(desc.digest);
    } catch (err) {
      body.destroy();
      throw err;
    }
    const existing = this.blobs.get(desc.digest);
    if (existing && existing.desc.size === desc.size) {
      body.destroy();
      // The same bytes pushed again as a manifest are a manifest from now on, and a referrer if they say so.
      if (isManifestMediaType(desc.mediaType) && !isManifestMediaType(existing.desc.mediaType)) existing.desc.mediaType = desc.mediaType;
      if (isManifestMediaType(desc.mediaType)) this.noteReferrer(desc, existing.data);
      return;
    }
    let source: Readable;
    try {
      source = isVerifiedFor(body, desc) ? body : verified(body, desc);
    } catch (err) {
      body.destroy();
      throw err;
    }
    const chunks: Buffer[] = [];
    let bytes = 0;
    await pipeline(
      source,
      new Writable({
        write(chunk: Buffer, _enc, done) {
          chunks.push(chunk);
          bytes += chunk.length;
          opts.onProgress?.(bytes);
          done();
        },
      }),
      { signal: opts.signal },
    );
    const data = Buffer.concat(chunks, bytes);
    this.blobs.set(desc.digest, { desc: { mediaType: desc.mediaType, digest: desc.digest, size: desc.size }, data });
    if (isManifestMediaType(desc.mediaType)) this.noteReferrer(desc, data);
  }

  async resolve(reference: string): Promise<Descriptor> {
    if (reference.includes(':')) {
      parseDigest(reference);
      const entry = this.blobs.get(reference);
      if (!entry) throw notFound(reference);
      return { ...entry.desc };
    }
    checkTag(reference);
    const digest = this.tagMap.get(reference);
    const entry = digest === undefined ? undefined : this.blobs.get(digest);
    if (!entry) {
      throw new LadingError('E_NOT_FOUND', `tag "${reference}" does not exist in the memory store`, {
        hint: 'tag the manifest first, or resolve it by digest',
      });
    }
    return { ...entry.desc };
  }

  async tag(desc: Descriptor, reference: string): Promise<void> {
    checkTag(reference);
    if (!(await this.exists(desc))) throw notFound(desc.digest);
    this.tagMap.set(reference, desc.digest);
  }

  async *referrers(subject: Descriptor, artifactType?: string): AsyncIterable<Descriptor> {
    for (const facts of [...this.referrerFacts.values()]) {
      if (facts.subject !== subject.digest) continue;
      if (artifactType !== undefined && facts.descriptor.artifactType !== artifactType) continue;
      yield { ...facts.descriptor };
    }
  }

  async *tags(opts: { last?: string; pageSize?: number; signal?: AbortSignal } = {}): AsyncIterable<string> {
    const sorted = [...this.tagMap.keys()].sort();
    for (const tag of sorted) {
      opts.signal?.throwIfAborted();
      if (opts.last !== undefined && tag <= opts.last) continue;
      yield tag;
    }
  }

  async delete(desc: Descriptor): Promise<void> {
    if (!this.blobs.delete(desc.digest)) throw notFound(desc.digest);
    this.referrerFacts.delete(desc.digest);
    for (const [tag, digest] of this.tagMap) if (digest === desc.digest) this.tagMap.delete(tag);
  }

  private noteReferrer(desc: Descriptor, data: Buffer): void {
    const facts = referrerOf(desc, data);
    if (facts) this.referrerFacts.set(desc.digest, facts);
  }
}


function checkTag(tag: string): void {
  if (!isValidTag(tag)) {
    throw new LadingError('E_REFERENCE_INVALID', `"${tag}" is neither a tag nor a digest`, {
      hint: 'a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with "." or "-"',
    });
  }
}

function notFound(digest: string): LadingError {
  return new LadingError('E_NOT_FOUND', `${digest} is not in the memory store`, {
    hint: 'push the content to this store before reading, tagging or deleting it',
    details: { digest },
  });
}
