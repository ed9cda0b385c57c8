import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rm, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve as resolvePath } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { LadingError, isLadingError, toLadingError } from '../errors.js';
import { digestOf, hashableAlgorithm, isDigest, parseDigest } from '../oci/digest.js';
import { plainDescriptor, type Descriptor } from '../oci/descriptor.js';
import { parseManifest, referrerOf } from '../oci/manifest.js';
import { isValidTag } from '../oci/reference.js';
import { MAX_MANIFEST_BYTES } from '../oci/manifest-types.js';
import { Annotation, MediaType, isManifestMediaType } from '../oci/mediatype.js';
import { writeFileAtomic, writeStreamAtomic } from './atomic.js';
import { acquireFileLock } from './lock.js';
import type {
  Deleter,
  FetchOptions,
  PushOptions,
  ReferrerLister,
  TagLister,
  Target,
} from './interfaces.js';
import { isVerifiedFor, verified } from './verify.js';

const LAYOUT_FILE = 'oci-layout';
const INDEX_FILE = 'index.json';
const LOCK_FILE = 'index.json.lock';
const LAYOUT_VERSION = '1.0.0';

export interface LayoutLockOptions {
  /** Give up waiting for the index lock after this long. */
  timeoutMs?: number;
  /** A lock older than this is taken over even when its holder seems alive (pid reuse, hung holder). */
  staleMs?: number;
}

export interface LayoutOpenOptions {
  /** Make the directory, `oci-layout` and an empty `index.json` when they are missing. */
  create?: boolean;
  lock?: LayoutLockOptions;
}

interface IndexFile {
  /** Every top-level field as read, so that fields other tools wrote survive our rewrites. */
  doc: Record<string, unknown>;
  manifests: Descriptor[];
}

/**
 * A target over a directory in the OCI image layout format, readable by skopeo, umoci and other OCI
 * tools. Tags are index.json entries carrying `org.opencontainers.image.ref.name`; manifests with a
 * `subject` are indexed untagged so that their referrers stay reachable.
 */
export class OciLayout implements Target, ReferrerLister, TagLister, Deleter {
  readonly dir: string;
  private readonly lockOptions: Required<LayoutLockOptions>;

  private constructor(dir: string, lock: LayoutLockOptions) {
    this.dir = dir;
    this.lockOptions = { timeoutMs: lock.timeoutMs ?? 30_000, staleMs: lock.staleMs ?? 20_000 };
  }

  static async open(dir: string, opts: LayoutOpenOptions = {}): Promise<OciLayout> {
    const layout = new OciLayout(resolvePath(dir), opts.lock ?? {});
    try {
      if (opts.create) await layout.initialise();
      else await layout.checkLayoutFile();
      await layout.readIndex();
    } catch (err) {
      throw toLadingError(err);
    }
    return layout;
  }

  async exists(desc: Descriptor): Promise<boolean> {
    try {
      const st = await stat(this.blobPath(desc.digest));
      return st.isFile() && st.size === desc.size;
    } catch (err) {
      if (isLadingError(err)) throw err;
      if (errnoOf(err) === 'ENOENT') return false;
      throw toLadingError(err);
    }
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    opts.signal?.throwIfAborted();
    const path = this.blobPath(desc.digest);
    let fh: FileHandle;
    try {
      fh = await open(path, 'r');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw this.notFound(desc.digest);
      throw toLadingError(err);
    }
    const offset = opts.offset ?? 0;
    const stream = createReadStream('', {
      fd: fh,
      start: offset,
      highWaterMark: 1 << 20,
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    if (offset > 0) return stream;
    const out = verified(stream, desc);
    // A consumer that stops early destroys the verifying stream only; the file must be closed too.
    out.once('close', () => stream.destroy());
    return out;
  }

  async push(desc: Descriptor, body: Readable, opts: PushOptions = {}): Promise<void> {
    let path: string;
    try {
      path = this.blobPath(desc.digest);
    } catch (err) {
      body.destroy();
      throw err;
    }
    if (await this.exists(desc)) {
      // Content addressing: the bytes on disk already are these bytes, so reading the body is waste.
      body.destroy();
    } else {
      try {
        let source: Readable = isVerifiedFor(body, desc) ? body : verified(body, desc);
        if (opts.onProgress) source = withProgress(source, opts.onProgress);
        await writeStreamAtomic(path, source, { signal: opts.signal });
      } catch (err) {
        body.destroy();
        throw toLadingError(err);
      }
    }
    // Also when the bytes were already here: a crash between writing a referrer and indexing it, or
    // bytes written by another tool, must not leave it unlisted for ever.
    if (isManifestMediaType(desc.mediaType) && desc.size <= MAX_MANIFEST_BYTES) {
      const facts = referrerOf(desc, await this.readSmall(desc));
      if (facts) await this.index(desc, facts.descriptor.artifactType);
    }
  }

  async resolve(reference: string): Promise<Descriptor> {
    const { manifests } = await this.readIndex();
    // Names as other tools write them (`1.0+build`, `foo/bar:1.0`) are found as they are listed.
    const entry = manifests.find((d) => d.annotations?.[Annotation.RefName] === reference);
    if (!entry && reference.includes(':') && !reference.includes('/')) return this.resolveDigest(reference);
    if (!entry) {
      checkTag(reference);
      throw new LadingError('E_NOT_FOUND', `tag "${reference}" does not exist in the layout ${this.dir}`, {
        hint: 'list the tags of the layout, or resolve the manifest by digest',
        details: { tag: reference },
      });
    }
    return withoutRefName(entry);
  }

  async tag(desc: Descriptor, reference: string): Promise<void> {
    checkTag(reference);
    parseDigest(desc.digest);
    if (!(await this.exists(desc))) throw this.notFound(desc.digest);
    const entry = plainDescriptor(desc);
    entry.annotations = { ...(desc.annotations ?? {}), [Annotation.RefName]: reference };
    await this.updateIndex((manifests) => [
      ...manifests.filter((d) => d.annotations?.[Annotation.RefName] !== reference),
      entry,
    ]);
  }

  async *referrers(subject: Descriptor, artifactType?: string): AsyncIterable<Descriptor> {
    const { manifests } = await this.readIndex();
    const seen = new Set<string>();
    for (const entry of manifests) {
      if (seen.has(entry.digest) || !isManifestMediaType(entry.mediaType)) continue;
      seen.add(entry.digest);
      if (entry.size > MAX_MANIFEST_BYTES) continue;
      let data: Buffer;
      try {
        data = await this.readSmall(entry);
      } catch (err) {
        // An index entry whose blob is gone cannot be a referrer of anything we can hand out.
        if (isLadingError(err, 'E_NOT_FOUND')) continue;
        throw err;
      }
      const facts = referrerOf(entry, data);
      if (!facts || facts.subject !== subject.digest) continue;
      if (artifactType !== undefined && facts.descriptor.artifactType !== artifactType) continue;
      yield facts.descriptor;
    }
  }

  async *tags(opts: { last?: string; pageSize?: number; signal?: AbortSignal } = {}): AsyncIterable<string> {
    const { manifests } = await this.readIndex();
    const names = new Set<string>();
    for (const d of manifests) {
      const name = d.annotations?.[Annotation.RefName];
      if (name !== undefined) names.add(name);
    }
    for (const name of [...names].sort()) {
      opts.signal?.throwIfAborted();
      if (opts.last !== undefined && name <= opts.last) continue;
      yield name;
    }
  }

  /** Removes every index entry naming `desc` first, then its blob, so the index never points at nothing. */
  async delete(desc: Descriptor): Promise<void> {
    const path = this.blobPath(desc.digest);
    let removed = 0;
    await this.updateIndex((manifests) => {
      const kept = manifests.filter((d) => d.digest !== desc.digest);
      removed = manifests.length - kept.length;
      return removed > 0 ? kept : undefined;
    });
    let hadBlob = true;
    try {
      await stat(path);
    } catch {
      hadBlob = false;
    }
    if (!hadBlob && removed === 0) throw this.notFound(desc.digest);
    await rm(path, { force: true }).catch((err: unknown) => {
      throw toLadingError(err);
    });
  }

  /** The entries of index.json: tagged manifests and indexed referrers. */
  async manifests(): Promise<Descriptor[]> {
    const { manifests } = await this.readIndex();
    return manifests.map((d) => ({ ...d }));
  }

  private blobPath(digest: string): string {
    // Only a validated digest reaches the file system: its parts are a known algorithm and hex.
    const { algorithm, encoded } = parseDigest(digest);
    return join(this.dir, 'blobs', algorithm, encoded);
  }

  private notFound(digest: string): LadingError {
    return new LadingError('E_NOT_FOUND', `${digest} is not in the layout ${this.dir}`, {
      hint: 'copy the content into this layout first, or check the digest',
      details: { digest },
    });
  }

  private async resolveDigest(reference: string): Promise<Descriptor> {
    parseDigest(reference);
    const { manifests } = await this.readIndex();
    const entry = manifests.find((d) => d.digest === reference);
    if (entry) return withoutRefName(entry);
    let size: number;
    try {
      size = (await stat(this.blobPath(reference))).size;
    } catch {
      throw this.notFound(reference);
    }
    if (size > MAX_MANIFEST_BYTES) {
      throw new LadingError('E_MANIFEST_TOO_LARGE', `${reference} is ${size} bytes, too large for a manifest`);
    }
    const data = await this.readSmall({ mediaType: MediaType.OctetStream, digest: reference, size });
    try {
      return { mediaType: parseManifest(data).mediaType, digest: reference, size };
    } catch (err) {
      if (isLadingError(err, 'E_MEDIA_TYPE_UNSUPPORTED')) throw err;
      throw new LadingError('E_MANIFEST_INVALID', `${reference} in ${this.dir} is not a manifest or index`, {
        hint: 'resolve names manifests; fetch plain blobs by descriptor instead',
        cause: err,
      });
    }
  }

  /** Reads a small blob whole (manifests only) and checks it against its descriptor. */
  private async readSmall(desc: Descriptor): Promise<Buffer> {
    let data: Buffer;
    try {
      data = await readFile(this.blobPath(desc.digest));
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw this.notFound(desc.digest);
      throw toLadingError(err);
    }
    if (data.length !== desc.size) {
      throw new LadingError('E_SIZE_MISMATCH', `${desc.digest} in ${this.dir} is ${data.length} bytes, not ${desc.size}`, {
        hint: 'the layout is damaged; copy the content into it again',
      });
    }
    const actual = digestOf(data, hashableAlgorithm(desc.digest));
    if (actual !== desc.digest) {
      throw new LadingError('E_DIGEST_MISMATCH', `${desc.digest} in ${this.dir} hashes to ${actual}`, {
        hint: 'the layout is damaged; copy the content into it again',
        details: { expected: desc.digest, actual },
      });
    }
    return data;
  }

  /**
   * Lists a stored manifest in index.json without a tag, unless it is listed already: index.json is what
   * other layout tools (and their garbage collectors) see, so everything worth keeping is named there.
   */
  async index(desc: Descriptor, artifactType = desc.artifactType): Promise<void> {
    if ((await this.readIndex()).manifests.some((d) => d.digest === desc.digest)) return;
    const entry: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
    if (artifactType) entry.artifactType = artifactType;
    await this.updateIndex((manifests) =>
      manifests.some((d) => d.digest === desc.digest) ? undefined : [...manifests, entry],
    );
  }

  private async checkLayoutFile(): Promise<void> {
    let raw: string;
    try {
      raw = await readFile(join(this.dir, LAYOUT_FILE), 'utf8');
    } catch (err) {
      const code = errnoOf(err);
      if (code === 'ENOENT' || code === 'ENOTDIR') {
        throw new LadingError('E_LAYOUT_INVALID', `${this.dir} is not an OCI image layout: it has no ${LAYOUT_FILE} file`, {
          hint: 'point at a directory written by lading, skopeo or umoci, or create a new layout there',
          details: { dir: this.dir },
        });
      }
      throw toLadingError(err);
    }
    let version: unknown;
    try {
      version = (JSON.parse(raw) as { imageLayoutVersion?: unknown })?.imageLayoutVersion;
    } catch (err) {
      throw layoutInvalid(this.dir, `${LAYOUT_FILE} is not valid JSON`, err);
    }
    if (typeof version !== 'string' || !/^1\.\d+\.\d+$/.test(version)) {
      throw layoutInvalid(this.dir, `${LAYOUT_FILE} names imageLayoutVersion ${JSON.stringify(version)}, not 1.x`);
    }
  }

  private async initialise(): Promise<void> {
    await mkdir(join(this.dir, 'blobs'), { recursive: true });
    try {
      await stat(join(this.dir, LAYOUT_FILE));
      await this.checkLayoutFile();
    } catch (err) {
      if (errnoOf(err) !== 'ENOENT') throw err;
      await writeFileAtomic(join(this.dir, LAYOUT_FILE), JSON.stringify({ imageLayoutVersion: LAYOUT_VERSION }));
    }
    // Under the lock, so that a concurrent creator cannot replace an index another process already wrote.
    await this.withIndexLock(async () => {
      try {
        await stat(join(this.dir, INDEX_FILE));
      } catch (err) {
        if (errnoOf(err) !== 'ENOENT') throw err;
        await this.writeIndex({ doc: {}, manifests: [] });
      }
    });
  }

  private async readIndex(): Promise<IndexFile> {
    let raw: string;
    try {
      raw = await readFile(join(this.dir, INDEX_FILE), 'utf8');
    } catch (err) {
      if (errnoOf(err) === 'ENOENT') throw layoutInvalid(this.dir, `it has no ${INDEX_FILE}`);
      throw toLadingError(err);
    }
    let doc: unknown;
    try {
      doc = JSON.parse(raw);
    } catch (err) {
      throw layoutInvalid(this.dir, `${INDEX_FILE} is not valid JSON`, err);
    }
    if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
      throw layoutInvalid(this.dir, `${INDEX_FILE} is not a JSON object`);
    }
    const index = doc as Record<string, unknown>;
    if (index.schemaVersion !== 2) throw layoutInvalid(this.dir, `${INDEX_FILE} has no schemaVersion 2`);
    // skopeo and umoci leave mediaType out; when present it must say what the file is.
    if (index.mediaType !== undefined && index.mediaType !== MediaType.ImageIndex) {
      throw layoutInvalid(this.dir, `${INDEX_FILE} has mediaType ${JSON.stringify(index.mediaType)}`);
    }
    const list = index.manifests ?? [];
    if (!Array.isArray(list)) throw layoutInvalid(this.dir, `${INDEX_FILE} manifests is not an array`);
    const manifests = list.map((d, i) => checkEntry(this.dir, d, i));
    return { doc: index, manifests };
  }

  private async writeIndex(index: IndexFile): Promise<void> {
    const { schemaVersion: _s, mediaType: _m, manifests: _l, ...rest } = index.doc;
    const out = { schemaVersion: 2, mediaType: MediaType.ImageIndex, ...rest, manifests: index.manifests };
    await writeFileAtomic(join(this.dir, INDEX_FILE), JSON.stringify(out));
  }

  /**
   * Read-modify-write of index.json under the layout's lock, re-reading inside it so that a change another
   * process made meanwhile is kept. `change` returns undefined when there is nothing to write.
   */
  private async updateIndex(change: (manifests: Descriptor[]) => Descriptor[] | undefined): Promise<void> {
    await this.withIndexLock(async () => {
      const index = await this.readIndex();
      const next = change(index.manifests);
      if (next !== undefined) await this.writeIndex({ doc: index.doc, manifests: next });
    });
  }

  private async withIndexLock<T>(fn: () => Promise<T>): Promise<T> {
    const release = await acquireFileLock(join(this.dir, LOCK_FILE), { ...this.lockOptions, what: `the index of ${this.dir}` });
    try {
      return await fn();
    } finally {
      await release();
    }
  }
}


function checkEntry(dir: string, d: unknown, i: number): Descriptor {
  const e = d as Partial<Descriptor> | null;
  if (typeof e !== 'object' || e === null) throw layoutInvalid(dir, `index.json manifests[${i}] is not an object`);
  if (typeof e.mediaType !== 'string') throw layoutInvalid(dir, `index.json manifests[${i}] has no mediaType`);
  if (!isDigest(e.digest)) throw layoutInvalid(dir, `index.json manifests[${i}] has an invalid digest`);
  if (typeof e.size !== 'number' || !Number.isSafeInteger(e.size) || e.size < 0) {
    throw layoutInvalid(dir, `index.json manifests[${i}] has an invalid size`);
  }
  if (e.annotations !== undefined && !isStringRecord(e.annotations)) {
    throw layoutInvalid(dir, `index.json manifests[${i}] has annotations that are not strings`);
  }
  return e as Descriptor;
}

function layoutInvalid(dir: string, why: string, cause?: unknown): LadingError {
  return new LadingError('E_LAYOUT_INVALID', `${dir} is not a valid OCI image layout: ${why}`, {
    hint: 'repair or recreate the layout (for example with skopeo copy into a fresh directory)',
    details: { dir },
    ...(cause === undefined ? {} : { cause }),
  });
}

function withoutRefName(entry: Descriptor): Descriptor {
  const out = plainDescriptor(entry);
  if (out.annotations) {
    const { [Annotation.RefName]: _drop, ...rest } = out.annotations;
    if (Object.keys(rest).length > 0) out.annotations = rest;
    else delete out.annotations;
  }
  return out;
}

function checkTag(tag: string): void {
  if (!isValidTag(tag)) {
    throw new LadingError('E_REFERENCE_INVALID', `"${tag}" is neither a tag nor a digest`, {
      hint: 'a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with "." or "-"',
    });
  }
}

function withProgress(source: Readable, onProgress: (bytes: number) => void): Readable {
  let bytes = 0;
  const counter = new Transform({
    transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback) {
      bytes += chunk.length;
      onProgress(bytes);
      done(null, chunk);
    },
  });
  source.on('error', (err) => counter.destroy(err));
  return source.pipe(counter);
}


function isStringRecord(v: unknown): v is Record<string, string> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === 'string');
}

function errnoOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}
