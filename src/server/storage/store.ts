import type { ParsedManifest } from '../../oci/manifest-types.js';
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { LadingError, type ErrorCode } from '../../errors.js';
import type { Descriptor } from '../../oci/descriptor.js';
import { hashableAlgorithm, parseDigest, type DigestAlgorithm } from '../../oci/digest.js';
import { MAX_MANIFEST_BYTES } from '../../oci/manifest-types.js';
import { manifestChildren, parseManifest, referrerOf } from '../../oci/manifest.js';
import { isValidRepository, isValidTag } from '../../oci/reference.js';
import type { ByteRange, PositionalReader, StorageDriver } from './driver.js';

/*
 * Layout under the driver's root (see the report / README of this folder for the reasoning):
 *
 *   blobs/<alg>/<hex[0:2]>/<hex>/data                       content, shared by every repository
 *   repositories/<name>/_layers/<alg>/<hex>/link            "<digest>": the blob is readable through <name>
 *   repositories/<name>/_manifests/revisions/<alg>/<hex>/link   JSON {digest, mediaType, size}
 *   repositories/<name>/_manifests/tags/<tag>/current/link  "<digest>"
 *   repositories/<name>/_referrers/<alg>/<hex>/<alg>-<hex>  JSON descriptor of a referrer of subject <alg>:<hex>
 *   _uploads/<id>/info                                      JSON {repo, startedAt}
 *   _uploads/<id>/data                                      the bytes received so far
 *   _trash/<alg>-<hex>-<rand>/data                          blobs a running gc has set aside
 *   _gc.lock                                                JSON {pid, startedAt} while a gc runs
 *
 * Repository components match [a-z0-9]+ joined by separators, so none can be "_layers" or "..": a name can
 * never reach another repository's metadata or leave repositories/.
 */

/** Why a storage call refused, in `err.details.reason`; the routes map these to distribution-spec codes. */
/** Referrer entries read at once when listing a subject's referrers. */
const REFERRER_READ_CONCURRENCY = 16;

export type StorageReason =
  | 'name-invalid'
  | 'tag-invalid'
  | 'digest-invalid'
  | 'upload-unknown'
  | 'blob-unknown'
  | 'manifest-unknown'
  | 'manifest-blob-unknown'
  | 'offset-mismatch'
  | 'range-invalid'
  | 'too-large'
  | 'size-mismatch'
  | 'digest-mismatch'
  | 'gc-running'
  | 'not-found'
  | 'path-unsafe';

export function storageReason(err: unknown): StorageReason | undefined {
  if (!(err instanceof LadingError)) return undefined;
  const reason = err.details?.reason;
  if (typeof reason === 'string') return reason as StorageReason;
  if (err.code === 'E_DIGEST_INVALID') return 'digest-invalid';
  return undefined;
}

function refuse(code: ErrorCode, reason: StorageReason, message: string, hint?: string, details: Record<string, unknown> = {}): LadingError {
  return new LadingError(code, message, { ...(hint ? { hint } : {}), details: { reason, ...details } });
}

export interface RegistryStoreOptions {
  /** Largest upload accepted, in bytes (default: no limit). */
  maxUploadBytes?: number;
  /** An upload session untouched for this long is expired and gc removes it (default 24 h). */
  uploadTtlMs?: number;
  /** Links and blobs younger than this are never swept: pushes in flight have not named them yet (default 1 h). */
  gcGraceMs?: number;
  /** Digests kept running for chunked uploads whose final digest is not known yet (default sha256). */
  runningHashes?: DigestAlgorithm[];
  /** Clock, for tests of expiry. */
  now?: () => number;
}

export interface UploadStatus {
  id: string;
  repo: string;
  /** Bytes received so far: the next append must start at this offset. */
  size: number;
  startedAt: number;
  updatedAt: number;
}

export interface BlobInfo {
  digest: string;
  size: number;
}

export interface BlobRead extends BlobInfo {
  stream: Readable;
  /** The range served, when one was asked for. */
  range?: ByteRange;
}

export interface ManifestRead {
  bytes: Buffer;
  mediaType: string;
  digest: string;
  size: number;
}

export interface PutManifestOptions {
  tag?: string;
  /** The digest the client named (PUT by digest); the bytes must hash to it. */
  digest?: string;
  /** Store even when named blobs or manifests are not in the repository (default false). */
  allowMissing?: boolean;
  /**
   * A last check once the manifest is known to be well formed and to name only content of the
   * repository, before anything is stored (the schema authority's): what it throws refuses the PUT.
   */
  validate?: (parsed: ParsedManifest) => Promise<void>;
}

export interface PutManifestResult {
  digest: string;
  size: number;
  mediaType: string;
  /** The subject digest when the manifest has one (the route answers with OCI-Subject). */
  subject?: string;
}

export interface FsckProblem {
  kind:
    | 'blob-corrupt'
    | 'blob-misplaced'
    | 'blob-unverifiable'
    | 'link-invalid'
    | 'link-dangling'
    | 'manifest-invalid'
    | 'manifest-child-missing'
    | 'tag-invalid'
    | 'tag-dangling'
    | 'referrer-invalid';
  path: string;
  message: string;
}

export interface FsckNote {
  kind: 'temp-leftover' | 'referrer-stale' | 'trash-leftover' | 'upload-orphan';
  path: string;
}

export interface FsckReport {
  clean: boolean;
  blobs: number;
  bytes: number;
  repositories: number;
  problems: FsckProblem[];
  /** Harmless leftovers of crashes, which gc removes. */
  notes: FsckNote[];
}

export interface GcOptions {
  dryRun?: boolean;
  /** Overrides the store's grace period (0 in tests that run nothing beside gc). */
  graceMs?: number;
}

export interface GcReport {
  dryRun: boolean;
  markedBlobs: number;
  removedBlobs: string[];
  bytesFreed: number;
  removedLinks: string[];
  removedUploads: string[];
  removedTemps: string[];
  restoredBlobs: string[];
}

const UPLOAD_ID_RE = /^[A-Za-z0-9_-]{32}$/;
const LIVE_SESSIONS_MAX = 4096;
const WALK_MAX_DEPTH = 130;
const LINK_MAX_BYTES = 64 * 1024;
const CACHE_MAX_ENTRIES = 512;
const CACHE_MAX_ENTRY_BYTES = 256 * 1024;

interface Running {
  size: number;
  hashes: Map<DigestAlgorithm, Hash>;
}

interface ParsedRef {
  algorithm: string;
  encoded: string;
  digest: string;
}

export class RegistryStore {
  readonly driver: StorageDriver;
  private readonly maxUploadBytes: number;
  private readonly uploadTtlMs: number;
  private readonly gcGraceMs: number;
  private readonly runningAlgorithms: DigestAlgorithm[];
  private readonly now: () => number;
  /** Running hashes of sessions this process is receiving; a missing or stale entry means re-hash the file. */
  private readonly running = new Map<string, Running>();
  /** Chains of work per session, so one process never interleaves two appends to one file. */
  private readonly sessionLocks = new Map<string, Promise<unknown>>();
  /** Verified manifest bytes by digest: content-addressed, hence never stale. */
  private readonly manifestCache = new Map<string, Buffer>();

  constructor(driver: StorageDriver, opts: RegistryStoreOptions = {}) {
    this.driver = driver;
    this.maxUploadBytes = opts.maxUploadBytes ?? Number.MAX_SAFE_INTEGER;
    this.uploadTtlMs = opts.uploadTtlMs ?? 24 * 3600_000;
    this.gcGraceMs = opts.gcGraceMs ?? 3600_000;
    this.runningAlgorithms = opts.runningHashes ?? ['sha256'];
    this.now = opts.now ?? Date.now;
  }

  // ---------------------------------------------------------------- names and keys

  private repo(name: string): string {
    if (!isValidRepository(name)) {
      const shown = String(name).length > 100 ? `${String(name).slice(0, 100)}…` : String(name);
      throw refuse('E_REFERENCE_INVALID', 'name-invalid', `invalid repository name ${JSON.stringify(shown)}`,
        'repository names are lower-case components of [a-z0-9] joined by ".", "_", "__" or "-", separated by "/", at most 255 characters');
    }
    return `repositories/${name}`;
  }

  private tag(tag: string): string {
    if (!isValidTag(tag)) {
      const shown = String(tag).length > 140 ? `${String(tag).slice(0, 140)}…` : String(tag);
      throw refuse('E_REFERENCE_INVALID', 'tag-invalid', `invalid tag ${JSON.stringify(shown)}`,
        'a tag is up to 128 characters of [A-Za-z0-9_.-], not starting with "." or "-"');
    }
    return tag;
  }

  private digest(digest: string): ParsedRef {
    const { algorithm, encoded } = parseDigest(digest);
    return { algorithm, encoded, digest };
  }

  private blobKey(d: ParsedRef): string {
    return `blobs/${d.algorithm}/${d.encoded.slice(0, 2)}/${d.encoded}/data`;
  }

  private layerLink(repoKey: string, d: ParsedRef): string {
    return `${repoKey}/_layers/${d.algorithm}/${d.encoded}/link`;
  }

  private manifestLink(repoKey: string, d: ParsedRef): string {
    return `${repoKey}/_manifests/revisions/${d.algorithm}/${d.encoded}/link`;
  }

  private tagLink(repoKey: string, tag: string): string {
    return `${repoKey}/_manifests/tags/${tag}/current/link`;
  }

  private referrerDir(repoKey: string, subject: ParsedRef): string {
    return `${repoKey}/_referrers/${subject.algorithm}/${subject.encoded}`;
  }

  private uploadId(id: string): string {
    if (typeof id !== 'string' || !UPLOAD_ID_RE.test(id)) {
      throw refuse('E_NOT_FOUND', 'upload-unknown', 'unknown upload session', 'start a new upload with POST /v2/<name>/blobs/uploads/');
    }
    return `_uploads/${id}`;
  }

  // ---------------------------------------------------------------- blobs

  /** The blob when it is linked in `repo` and present; undefined otherwise. */
  async statBlob(repo: string, digest: string): Promise<BlobInfo | undefined> {
    const repoKey = this.repo(repo);
    const d = this.digest(digest);
    if (!(await this.driver.stat(this.layerLink(repoKey, d)))) return undefined;
    const s = await this.driver.stat(this.blobKey(d));
    return s && !s.isDirectory ? { digest, size: s.size } : undefined;
  }

  /**
   * A stream of the blob (or of `range`, inclusive bounds) when it is linked in `repo`. A range outside the
   * blob is refused with reason 'range-invalid' (416).
   */
  async readBlob(repo: string, digest: string, range?: ByteRange): Promise<BlobRead | undefined> {
    const info = await this.statBlob(repo, digest);
    if (!info) return undefined;
    if (range) {
      const ok = Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.start <= range.end && range.end < info.size;
      if (!ok) {
        throw refuse('E_RANGE_INVALID', 'range-invalid', `range ${range.start}-${range.end} is outside the ${info.size}-byte blob`, undefined, { size: info.size });
      }
    }
    try {
      const stream = await this.driver.reader(this.blobKey(this.digest(digest)), range);
      return { ...info, stream, ...(range ? { range } : {}) };
    } catch (err) {
      if (storageReason(err) === 'not-found') return undefined;
      throw err;
    }
  }

  /**
   * The blob as a positional reader (for serving through reused buffers), or undefined when it is not
   * linked in `repo` — or when the driver has no positional reads, in which case readBlob streams it.
   */
  async blobReader(repo: string, digest: string): Promise<(BlobInfo & { reader: PositionalReader }) | undefined> {
    if (!this.driver.positionalReader) return undefined;
    const info = await this.statBlob(repo, digest);
    if (!info) return undefined;
    try {
      const reader = await this.driver.positionalReader(this.blobKey(this.digest(digest)));
      return { ...info, reader };
    } catch (err) {
      if (storageReason(err) === 'not-found') return undefined;
      throw err;
    }
  }

  /** Removes the blob from `repo` (the content stays for other repositories; gc reclaims it). */
  async deleteBlob(repo: string, digest: string): Promise<boolean> {
    const repoKey = this.repo(repo);
    const d = this.digest(digest);
    const link = this.layerLink(repoKey, d);
    if (!(await this.driver.stat(link))) return false;
    await this.driver.delete(link);
    await this.driver.pruneEmpty(parentOf(link), `${repoKey}/_layers`);
    return true;
  }

  /**
   * Links `digest` into `to` when it is readable through `from`. False (the route then opens an ordinary
   * upload session, as the spec says) when it is not.
   */
  async mountBlob(to: string, digest: string, from: string): Promise<BlobInfo | undefined> {
    const toKey = this.repo(to);
    const d = this.digest(digest);
    const info = await this.statBlob(from, digest);
    if (!info) return undefined;
    const link = this.layerLink(toKey, d);
    await this.driver.writeBytes(link, digest);
    // A gc that set the blob aside between our check and our link would leave the link dangling: undo it.
    if (!(await this.driver.stat(this.blobKey(d)))) {
      await this.driver.delete(link);
      return undefined;
    }
    return info;
  }

  /**
   * Links `digest` into `to` when the registry holds it at all: a mount without `from`. Only for an open
   * registry — with auth, which repositories hold a blob is itself something to keep from strangers.
   */
  async mountAnywhere(to: string, digest: string): Promise<BlobInfo | undefined> {
    const toKey = this.repo(to);
    const d = this.digest(digest);
    const blob = await this.driver.stat(this.blobKey(d));
    if (!blob) return undefined;
    const link = this.layerLink(toKey, d);
    await this.driver.writeBytes(link, digest);
    if (!(await this.driver.stat(this.blobKey(d)))) {
      await this.driver.delete(link);
      return undefined;
    }
    return { digest, size: blob.size };
  }

  // ---------------------------------------------------------------- uploads

  async createUpload(repo: string): Promise<UploadStatus> {
    this.repo(repo);
    // 192 random bits: unguessable, and the id alone authorises appends to the session.
    for (let attempt = 0; attempt < 4; attempt++) {
      const id = randomBytes(24).toString('base64url');
      const startedAt = this.now();
      if (await this.driver.createExclusive(`${this.uploadId(id)}/info`, JSON.stringify({ repo, startedAt }))) {
        this.setRunning(id, { size: 0, hashes: new Map(this.runningAlgorithms.map((a) => [a, createHash(a)])) });
        return { id, repo, size: 0, startedAt, updatedAt: startedAt };
      }
    }
    throw new LadingError('E_IO', 'could not allocate an upload session id');
  }

  async uploadStatus(repo: string, id: string): Promise<UploadStatus> {
    this.repo(repo);
    const dir = this.uploadId(id);
    const info = await this.readJSON(`${dir}/info`);
    if (!isObject(info) || info.repo !== repo || typeof info.startedAt !== 'number') {
      throw refuse('E_NOT_FOUND', 'upload-unknown', `upload ${id} is not in progress in ${repo}`,
        'the session finished, was cancelled or expired; start a new upload');
    }
    const s = await this.driver.stat(`${dir}/data`);
    return { id, repo, size: s?.size ?? 0, startedAt: info.startedAt, updatedAt: s?.mtimeMs ?? info.startedAt };
  }

  /**
   * Appends `body` at `offset`, which must equal the bytes received so far (reason 'offset-mismatch', 416).
   * `length`, when given, is what the body must deliver exactly. On any failure the session is cut back to
   * where it was, so the client can retry the chunk. A refusal before reading leaves `body` unread.
   */
  async appendUpload(repo: string, id: string, body: Readable, opts: { offset: number; length?: number }): Promise<UploadStatus> {
    return this.withSession(id, async () => {
      const status = await this.uploadStatus(repo, id);
      await this.appendLocked(status, body, opts.offset, opts.length, undefined);
      return this.uploadStatus(repo, id);
    });
  }

  /**
   * Closes the upload: appends `body` when given (a monolithic or final chunk), verifies the digest of the
   * whole upload, places it in the blob store unless present, links it into `repo` and ends the session.
   * A wrong digest (reason 'digest-mismatch') stores nothing and leaves the session as it was.
   */
  async completeUpload(repo: string, id: string, digest: string, opts: { body?: Readable; length?: number } = {}): Promise<BlobInfo> {
    const algorithm = hashableAlgorithm(digest);
    const d = this.digest(digest);
    const repoKey = this.repo(repo);
    return this.withSession(id, async () => {
      const status = await this.uploadStatus(repo, id);
      const dir = this.uploadId(id);
      const dataKey = `${dir}/data`;
      const before = status.size;
      const snapshot = this.snapshot(id, before);
      if (opts.body) await this.appendLocked(status, opts.body, before, opts.length, algorithm);
      else if (!(await this.driver.stat(dataKey))) await this.driver.append(dataKey, Readable.from([]));

      const size = (await this.driver.stat(dataKey))?.size ?? 0;
      const actual = await this.sessionDigest(id, dataKey, size, algorithm);
      if (actual !== digest) {
        if (opts.body) await this.rollback(id, dataKey, before, snapshot);
        throw refuse('E_DIGEST_MISMATCH', 'digest-mismatch', `the upload hashes to ${actual}, not ${digest}`,
          'nothing was stored; send the bytes that hash to the digest, or the digest of the bytes sent', { expected: digest, actual });
      }
      const blobKey = this.blobKey(d);
      await this.driver.publish(dataKey, blobKey);
      // Hard-linked bytes keep the session's mtime; the blob is new to gc's grace period from now.
      await this.driver.touch(blobKey);
      await this.driver.writeBytes(this.layerLink(repoKey, d), digest);
      // A concurrent gc may have set the blob aside just before our link; we still hold the bytes.
      if (!(await this.driver.stat(blobKey))) await this.driver.publish(dataKey, blobKey);
      this.running.delete(id);
      await this.driver.deleteTree(dir);
      return { digest, size };
    });
  }

  async cancelUpload(repo: string, id: string): Promise<void> {
    await this.withSession(id, async () => {
      await this.uploadStatus(repo, id);
      this.running.delete(id);
      await this.driver.deleteTree(this.uploadId(id));
    });
  }

  /** Sessions untouched for longer than `olderThanMs` (default the store's TTL): what gc removes. */
  async expiredUploads(olderThanMs = this.uploadTtlMs): Promise<UploadStatus[]> {
    const out: UploadStatus[] = [];
    const now = this.now();
    for (const e of await this.driver.list('_uploads')) {
      if (!UPLOAD_ID_RE.test(e.name)) continue;
      const info = await this.readJSON(`_uploads/${e.name}/info`).catch(() => undefined);
      const dirStat = await this.driver.stat(`_uploads/${e.name}`);
      const data = await this.driver.stat(`_uploads/${e.name}/data`);
      const repo = isObject(info) && typeof info.repo === 'string' ? info.repo : '';
      const startedAt = isObject(info) && typeof info.startedAt === 'number' ? info.startedAt : (dirStat?.mtimeMs ?? 0);
      const updatedAt = Math.max(startedAt, data?.mtimeMs ?? 0);
      if (now - updatedAt > olderThanMs) out.push({ id: e.name, repo, size: data?.size ?? 0, startedAt, updatedAt });
    }
    return out;
  }

  private async appendLocked(status: UploadStatus, body: Readable, offset: number, length: number | undefined, extra: DigestAlgorithm | undefined): Promise<void> {
    if (!Number.isSafeInteger(offset) || offset !== status.size) {
      throw refuse('E_RANGE_INVALID', 'offset-mismatch', `the chunk starts at ${offset} but ${status.size} bytes were received so far`,
        `send the next chunk from byte ${status.size}`, { expected: status.size, got: offset });
    }
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
      throw refuse('E_SIZE_MISMATCH', 'size-mismatch', `invalid chunk length ${length}`);
    }
    if (length !== undefined && status.size + length > this.maxUploadBytes) throw this.tooLarge(status.size + length);
    const dataKey = `${this.uploadId(status.id)}/data`;
    const snapshot = this.snapshot(status.id, status.size);
    let run = this.running.get(status.id);
    if (!run || run.size !== status.size) run = status.size === 0 ? { size: 0, hashes: new Map() } : undefined;
    if (run && status.size === 0) {
      for (const a of this.runningAlgorithms) if (!run.hashes.has(a)) run.hashes.set(a, createHash(a));
      if (extra && !run.hashes.has(extra)) run.hashes.set(extra, createHash(extra));
    }
    // A session this process has not been receiving (it restarted since) may be what a crash between
    // completeUpload's publish and its removal left behind: its file is then a hard link of the stored
    // blob, and appending to it (or truncating it back) would rewrite that blob. A private copy first,
    // hashed on the way so that the following chunks of this session need no copy and no re-hash.
    if (!run && status.size > 0) run = await this.privateCopy(dataKey, status.size, extra);
    const counter = new ChunkMeter(run, status.size, length, this.maxUploadBytes, (total) => this.tooLarge(total));
    body.on('error', (err) => counter.destroy(err));
    // The meter may refuse a byte before the driver has attached to it; the driver's pipeline still sees it.
    counter.on('error', () => undefined);
    try {
      await this.driver.append(dataKey, body.pipe(counter));
      if (length !== undefined && counter.count !== length) {
        throw refuse('E_SIZE_MISMATCH', 'size-mismatch', `the chunk was ${counter.count} bytes, not the ${length} announced`);
      }
    } catch (err) {
      await this.rollback(status.id, dataKey, status.size, snapshot);
      throw err;
    }
    if (run) {
      run.size = status.size + counter.count;
      this.setRunning(status.id, run);
    } else {
      this.running.delete(status.id);
    }
  }

  private tooLarge(total: number): LadingError {
    return refuse('E_TOO_LARGE', 'too-large', `the upload would be ${total} bytes, over the ${this.maxUploadBytes}-byte limit`,
      'this registry refuses blobs this large', { limit: this.maxUploadBytes });
  }

  /** Rewrites the session file as a fresh file of its own; its running hashes, or undefined when its size moved. */
  private async privateCopy(dataKey: string, size: number, extra: DigestAlgorithm | undefined): Promise<Running | undefined> {
    const hashes = new Map(this.runningAlgorithms.map((a) => [a, createHash(a)] as const));
    if (extra && !hashes.has(extra)) hashes.set(extra, createHash(extra));
    let copied = 0;
    const source = await this.driver.reader(dataKey);
    const hashing = new Transform({
      transform(chunk: Buffer, _enc, done) {
        copied += chunk.length;
        for (const h of hashes.values()) h.update(chunk);
        done(null, chunk);
      },
    });
    source.on('error', (err) => hashing.destroy(err));
    await this.driver.writeStream(dataKey, source.pipe(hashing));
    return copied === size ? { size, hashes } : undefined;
  }

  /** Copies of the running hashes, to restore when an append or a close fails halfway. */
  private snapshot(id: string, size: number): Running | undefined {
    const run = this.running.get(id);
    if (!run || run.size !== size) return undefined;
    return { size, hashes: new Map([...run.hashes].map(([a, h]) => [a, h.copy()])) };
  }

  private async rollback(id: string, dataKey: string, size: number, snapshot: Running | undefined): Promise<void> {
    if (await this.driver.stat(dataKey)) await this.driver.truncate(dataKey, size);
    if (snapshot) this.setRunning(id, snapshot);
    else this.running.delete(id);
  }

  private setRunning(id: string, run: Running): void {
    this.running.delete(id);
    // Bounded: abandoned sessions fall out oldest first and are re-hashed from disk if they ever close.
    while (this.running.size >= LIVE_SESSIONS_MAX) this.running.delete(this.running.keys().next().value!);
    this.running.set(id, run);
  }

  /** One pass when the session was received here and hashed with `algorithm`; a re-read of the file otherwise. */
  private async sessionDigest(id: string, dataKey: string, size: number, algorithm: DigestAlgorithm): Promise<string> {
    const run = this.running.get(id);
    const hash = run && run.size === size ? run.hashes.get(algorithm) : undefined;
    if (hash) return `${algorithm}:${hash.copy().digest('hex')}`;
    return hashStream(await this.driver.reader(dataKey), algorithm);
  }

  private async withSession<T>(id: string, fn: () => Promise<T>): Promise<T> {
    this.uploadId(id);
    const prev = this.sessionLocks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.sessionLocks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.sessionLocks.get(id) === tail) this.sessionLocks.delete(id);
    }
  }

  // ---------------------------------------------------------------- manifests

  /**
   * Validates and stores a manifest: content-addressed as a blob, linked as a manifest of `repo`, its
   * referrer entry recorded when it has a subject (existing or not), then the tag pointed at it. Named
   * blobs and manifests must be in `repo` unless `allowMissing`: else E_NOT_FOUND with reason
   * 'manifest-blob-unknown' and `details.missing` (digests). Parse errors are parseManifest's.
   */
  async putManifest(repo: string, bytes: Uint8Array, mediaType: string | undefined, opts: PutManifestOptions = {}): Promise<PutManifestResult> {
    const repoKey = this.repo(repo);
    if (opts.tag !== undefined) this.tag(opts.tag);
    const algorithm = opts.digest !== undefined ? hashableAlgorithm(opts.digest) : 'sha256';
    const parsed = parseManifest(bytes, mediaType);
    const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const digest = `${algorithm}:${createHash(algorithm).update(buf).digest('hex')}`;
    if (opts.digest !== undefined && opts.digest !== digest) {
      throw refuse('E_DIGEST_MISMATCH', 'digest-mismatch', `the manifest hashes to ${digest}, not ${opts.digest}`,
        'PUT the manifest under the digest of its exact bytes', { expected: opts.digest, actual: digest });
    }
    const d = this.digest(digest);
    const children = storedChildren(parsed);
    if (!opts.allowMissing) {
      const missing = await this.missingChildren(repoKey, children);
      if (missing.length > 0) {
        throw refuse('E_NOT_FOUND', 'manifest-blob-unknown', `the manifest names content not in ${repo}: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`,
          'push the blobs and child manifests first (or mount them from another repository)', { missing });
      }
    }
    if (opts.validate) await opts.validate(parsed);
    const size = buf.length;
    const blobKey = this.blobKey(d);
    if (!(await this.driver.createExclusive(blobKey, buf))) await this.driver.touch(blobKey);

    const desc: Descriptor = { mediaType: parsed.mediaType, digest, size };
    const ref = referrerOf(desc, buf);
    // The entry goes first: a crash before the link leaves an entry that referrers() skips and gc removes,
    // never a linked referrer that its subject does not list.
    if (ref) {
      const subject = this.digest(ref.subject);
      await this.driver.writeBytes(`${this.referrerDir(repoKey, subject)}/${d.algorithm}-${d.encoded}`, JSON.stringify(ref.descriptor));
    }
    await this.driver.writeBytes(this.manifestLink(repoKey, d), JSON.stringify({ digest, mediaType: parsed.mediaType, size }));
    if (!(await this.driver.stat(blobKey))) await this.driver.createExclusive(blobKey, buf);
    if (!opts.allowMissing) {
      // A gc that swept a named blob while we linked: refuse rather than leave a manifest with holes.
      const gone = await this.missingChildren(repoKey, children);
      if (gone.length > 0) {
        await this.driver.delete(this.manifestLink(repoKey, d));
        throw refuse('E_NOT_FOUND', 'manifest-blob-unknown', `content named by the manifest vanished while it was stored: ${gone[0]}`,
          'push the blobs again, then the manifest', { missing: gone });
      }
    }
    if (opts.tag !== undefined) await this.driver.writeBytes(this.tagLink(repoKey, opts.tag), digest);
    if (size <= CACHE_MAX_ENTRY_BYTES) this.cache(digest, buf);
    return { digest, size, mediaType: parsed.mediaType, ...(ref ? { subject: ref.subject } : {}) };
  }

  private async missingChildren(repoKey: string, children: Descriptor[]): Promise<string[]> {
    const missing: string[] = [];
    for (const child of children) {
      let c: ParsedRef;
      try {
        c = this.digest(child.digest);
      } catch {
        missing.push(child.digest);
        continue;
      }
      const linked = (await this.driver.stat(this.layerLink(repoKey, c))) ?? (await this.driver.stat(this.manifestLink(repoKey, c)));
      if (!linked || !(await this.driver.stat(this.blobKey(c)))) missing.push(child.digest);
    }
    return [...new Set(missing)];
  }

  /** The digest a tag points at, or the digest itself; undefined when the tag does not exist. */
  async resolve(repo: string, tagOrDigest: string): Promise<string | undefined> {
    const repoKey = this.repo(repo);
    if (tagOrDigest.includes(':')) return this.digest(tagOrDigest).digest;
    const raw = await this.driver.readBytes(this.tagLink(repoKey, this.tag(tagOrDigest)), LINK_MAX_BYTES);
    if (raw === undefined) return undefined;
    try {
      return this.digest(raw.toString('utf8').trim()).digest;
    } catch {
      throw new LadingError('E_IO', `tag ${tagOrDigest} of ${repo} holds no valid digest`, { hint: 'run lading fsck' });
    }
  }

  /** The manifest by tag or digest when it is linked in `repo`. Manifests are at most 4 MiB, so bytes are returned whole. */
  async getManifest(repo: string, tagOrDigest: string): Promise<ManifestRead | undefined> {
    const repoKey = this.repo(repo);
    const digest = await this.resolve(repo, tagOrDigest);
    if (digest === undefined) return undefined;
    const d = this.digest(digest);
    const link = await this.readJSON(this.manifestLink(repoKey, d));
    if (!isObject(link) || typeof link.mediaType !== 'string') return undefined;
    const bytes = await this.manifestBytes(d);
    if (!bytes) return undefined;
    return { bytes, mediaType: link.mediaType, digest, size: bytes.length };
  }

  private async manifestBytes(d: ParsedRef): Promise<Buffer | undefined> {
    const cached = this.manifestCache.get(d.digest);
    if (cached) return cached;
    const bytes = await this.driver.readBytes(this.blobKey(d), MAX_MANIFEST_BYTES);
    if (!bytes) return undefined;
    // Verified once on the way into the cache: a damaged file is refused instead of served.
    const alg = hashableAlgorithm(d.digest);
    if (`${alg}:${createHash(alg).update(bytes).digest('hex')}` !== d.digest) {
      throw new LadingError('E_DIGEST_MISMATCH', `stored manifest ${d.digest} is damaged`, { hint: 'run lading fsck' });
    }
    if (bytes.length <= CACHE_MAX_ENTRY_BYTES) this.cache(d.digest, bytes);
    return bytes;
  }

  private cache(digest: string, bytes: Buffer): void {
    this.manifestCache.delete(digest);
    while (this.manifestCache.size >= CACHE_MAX_ENTRIES) this.manifestCache.delete(this.manifestCache.keys().next().value!);
    this.manifestCache.set(digest, bytes);
  }

  /** Removes the manifest from `repo`: tags pointing at it, its link, and its referrer entry. */
  async deleteManifest(repo: string, digest: string): Promise<boolean> {
    const repoKey = this.repo(repo);
    const d = this.digest(digest);
    const linkKey = this.manifestLink(repoKey, d);
    const link = await this.readJSON(linkKey);
    if (link === undefined) return false;
    for (const tag of await this.tags(repo)) {
      if ((await this.resolve(repo, tag).catch(() => undefined)) === digest) await this.deleteTag(repo, tag);
    }
    await this.driver.delete(linkKey);
    await this.driver.pruneEmpty(parentOf(linkKey), `${repoKey}/_manifests`);
    const bytes = await this.manifestBytes(d).catch(() => undefined);
    if (bytes && isObject(link) && typeof link.mediaType === 'string') {
      const ref = referrerOf({ mediaType: link.mediaType, digest, size: bytes.length }, bytes);
      if (ref) {
        const dir = this.referrerDir(repoKey, this.digest(ref.subject));
        await this.driver.delete(`${dir}/${d.algorithm}-${d.encoded}`);
        await this.driver.pruneEmpty(dir, `${repoKey}/_referrers`);
      }
    }
    return true;
  }

  async deleteTag(repo: string, tag: string): Promise<boolean> {
    const repoKey = this.repo(repo);
    const link = this.tagLink(repoKey, this.tag(tag));
    if (!(await this.driver.stat(link))) return false;
    await this.driver.delete(link);
    await this.driver.deleteTree(`${repoKey}/_manifests/tags/${tag}`);
    return true;
  }

  /** Tags of `repo` in lexical (code point) order; empty when there are none. */
  async tags(repo: string): Promise<string[]> {
    const repoKey = this.repo(repo);
    const out: string[] = [];
    for (const e of await this.driver.list(`${repoKey}/_manifests/tags`)) {
      if (e.isDirectory && isValidTag(e.name) && (await this.driver.stat(this.tagLink(repoKey, e.name)))) out.push(e.name);
    }
    return out.sort(byCodePoint);
  }

  /** True when anything was ever pushed to `repo` (a blob or a manifest). */
  async hasRepository(repo: string): Promise<boolean> {
    const repoKey = this.repo(repo);
    return (await this.driver.stat(`${repoKey}/_manifests`)) !== undefined || (await this.driver.stat(`${repoKey}/_layers`)) !== undefined;
  }

  /** Every repository holding a manifest or blob, in lexical order. */
  async repositories(): Promise<string[]> {
    const out: string[] = [];
    let level: string[] = [''];
    for (let depth = 0; depth < WALK_MAX_DEPTH && level.length > 0; depth++) {
      const next: string[] = [];
      for (const prefix of level) {
        const entries = await this.driver.list(prefix === '' ? 'repositories' : `repositories/${prefix}`);
        if (prefix !== '' && entries.some((e) => e.isDirectory && (e.name === '_manifests' || e.name === '_layers'))) out.push(prefix);
        for (const e of entries) {
          if (e.isDirectory && !e.name.startsWith('_')) next.push(prefix === '' ? e.name : `${prefix}/${e.name}`);
        }
      }
      level = next;
    }
    return out.filter(isValidRepository).sort(byCodePoint);
  }

  /** Manifests of `repo` whose subject is `digest`, sorted by digest; `artifactType` filters. */
  async referrers(repo: string, digest: string, opts: { artifactType?: string } = {}): Promise<Descriptor[]> {
    const repoKey = this.repo(repo);
    const dir = this.referrerDir(repoKey, this.digest(digest));
    const entries = await this.driver.list(dir);
    const out: Descriptor[] = [];
    // Each entry costs a read and a stat; a subject with many signatures is listed 16 entries at a time.
    for (let i = 0; i < entries.length; i += REFERRER_READ_CONCURRENCY) {
      const batch = entries.slice(i, i + REFERRER_READ_CONCURRENCY);
      const found = await Promise.all(batch.map((e) => this.referrerEntry(repoKey, dir, e.name, opts.artifactType)));
      for (const d of found) if (d) out.push(d);
    }
    return out.sort((a, b) => byCodePoint(a.digest, b.digest));
  }

  /** One referrer entry, or undefined when it is malformed, misnamed, unlinked or of another type. */
  private async referrerEntry(repoKey: string, dir: string, name: string, artifactType: string | undefined): Promise<Descriptor | undefined> {
    const desc = await this.readJSON(`${dir}/${name}`).catch(() => undefined);
    if (!isObject(desc) || typeof desc.digest !== 'string' || typeof desc.mediaType !== 'string' || typeof desc.size !== 'number') return undefined;
    let rd: ParsedRef;
    try {
      rd = this.digest(desc.digest);
    } catch {
      return undefined;
    }
    if (name !== `${rd.algorithm}-${rd.encoded}`) return undefined;
    if (!(await this.driver.stat(this.manifestLink(repoKey, rd)))) return undefined;
    if (artifactType !== undefined && desc.artifactType !== artifactType) return undefined;
    return desc as unknown as Descriptor;
  }

  // ---------------------------------------------------------------- fsck

  /** Re-hashes every blob and checks every link, tag and referrer entry; `clean` when nothing is wrong. */
  async fsck(): Promise<FsckReport> {
    const problems: FsckProblem[] = [];
    const notes: FsckNote[] = [];
    let blobs = 0;
    let bytes = 0;
    for await (const b of this.walkBlobs(notes)) {
      if (b.mismatch) {
        problems.push({ kind: 'blob-misplaced', path: b.key, message: b.mismatch });
        continue;
      }
      blobs++;
      bytes += b.size;
      let alg: DigestAlgorithm;
      try {
        alg = hashableAlgorithm(b.digest);
      } catch {
        problems.push({ kind: 'blob-unverifiable', path: b.key, message: `cannot compute ${b.digest}` });
        continue;
      }
      const actual = await hashStream(await this.driver.reader(b.key), alg);
      if (actual !== b.digest) problems.push({ kind: 'blob-corrupt', path: b.key, message: `hashes to ${actual}` });
    }
    const repos = await this.repositories();
    for (const repo of repos) {
      const repoKey = this.repo(repo);
      for await (const l of this.walkLinks(`${repoKey}/_layers`)) {
        const target = await this.checkLink(l.key, l.digest, problems);
        if (target && !(await this.driver.stat(this.blobKey(target)))) {
          problems.push({ kind: 'link-dangling', path: l.key, message: `${l.digest} is not in the blob store` });
        }
      }
      for await (const l of this.walkLinks(`${repoKey}/_manifests/revisions`)) {
        await this.fsckManifest(l.key, l.digest, problems);
      }
      for (const e of await this.driver.list(`${repoKey}/_manifests/tags`)) {
        const key = this.tagLink(repoKey, e.name);
        const raw = await this.driver.readBytes(key, LINK_MAX_BYTES).catch(() => undefined);
        if (raw === undefined) continue;
        let t: ParsedRef;
        try {
          t = this.digest(raw.toString('utf8').trim());
        } catch {
          problems.push({ kind: 'tag-invalid', path: key, message: 'does not hold a digest' });
          continue;
        }
        if (!(await this.driver.stat(this.manifestLink(repoKey, t))) || !(await this.driver.stat(this.blobKey(t)))) {
          problems.push({ kind: 'tag-dangling', path: key, message: `${t.digest} is not a manifest of ${repo}` });
        }
      }
      await this.fsckReferrers(repoKey, problems, notes);
      await this.collectTemps(`${repoKey}`, notes, 0);
    }
    for (const e of await this.driver.list('_trash')) notes.push({ kind: 'trash-leftover', path: `_trash/${e.name}` });
    for (const e of await this.driver.list('_uploads')) {
      if (!UPLOAD_ID_RE.test(e.name) || !(await this.driver.stat(`_uploads/${e.name}/info`))) notes.push({ kind: 'upload-orphan', path: `_uploads/${e.name}` });
    }
    return { clean: problems.length === 0, blobs, bytes, repositories: repos.length, problems, notes };
  }

  private async checkLink(key: string, expected: string, problems: FsckProblem[]): Promise<ParsedRef | undefined> {
    const raw = await this.driver.readBytes(key, LINK_MAX_BYTES).catch(() => undefined);
    if (raw === undefined) return undefined;
    if (raw.toString('utf8').trim() !== expected) {
      problems.push({ kind: 'link-invalid', path: key, message: `expected ${expected}` });
      return undefined;
    }
    return this.digest(expected);
  }

  private async fsckManifest(key: string, digest: string, problems: FsckProblem[]): Promise<void> {
    const link = await this.readJSON(key).catch(() => undefined);
    if (!isObject(link) || link.digest !== digest || typeof link.mediaType !== 'string') {
      problems.push({ kind: 'link-invalid', path: key, message: `expected {digest: ${digest}, mediaType}` });
      return;
    }
    const d = this.digest(digest);
    const bytes = await this.driver.readBytes(this.blobKey(d), MAX_MANIFEST_BYTES).catch(() => undefined);
    if (!bytes) {
      problems.push({ kind: 'link-dangling', path: key, message: `${digest} is not in the blob store` });
      return;
    }
    let children: Descriptor[];
    try {
      children = storedChildren(parseManifest(bytes, link.mediaType));
    } catch (err) {
      problems.push({ kind: 'manifest-invalid', path: key, message: (err as Error).message });
      return;
    }
    for (const c of children) {
      let cd: ParsedRef;
      try {
        cd = this.digest(c.digest);
      } catch {
        continue;
      }
      if (!(await this.driver.stat(this.blobKey(cd)))) {
        problems.push({ kind: 'manifest-child-missing', path: key, message: `${c.digest} is not in the blob store` });
      }
    }
  }

  private async fsckReferrers(repoKey: string, problems: FsckProblem[], notes: FsckNote[]): Promise<void> {
    const root = `${repoKey}/_referrers`;
    for (const alg of await this.driver.list(root)) {
      for (const hex of await this.driver.list(`${root}/${alg.name}`)) {
        for (const e of await this.driver.list(`${root}/${alg.name}/${hex.name}`)) {
          const key = `${root}/${alg.name}/${hex.name}/${e.name}`;
          if (e.name.startsWith('.')) {
            notes.push({ kind: 'temp-leftover', path: key });
            continue;
          }
          const desc = await this.readJSON(key).catch(() => undefined);
          if (!isObject(desc) || typeof desc.digest !== 'string') {
            problems.push({ kind: 'referrer-invalid', path: key, message: 'not a descriptor' });
            continue;
          }
          let rd: ParsedRef;
          try {
            rd = this.digest(desc.digest);
          } catch {
            problems.push({ kind: 'referrer-invalid', path: key, message: 'bad digest' });
            continue;
          }
          if (!(await this.driver.stat(this.manifestLink(repoKey, rd)))) notes.push({ kind: 'referrer-stale', path: key });
        }
      }
    }
  }

  /** Temp files of interrupted atomic writes under a repository's metadata (bounded depth). */
  private async collectTemps(dir: string, notes: FsckNote[], depth: number): Promise<void> {
    if (depth > 8) return;
    for (const e of await this.driver.list(dir)) {
      if (e.isDirectory) {
        // Nested repositories are visited on their own.
        if (depth === 0 && !e.name.startsWith('_')) continue;
        await this.collectTemps(`${dir}/${e.name}`, notes, depth + 1);
      } else if (e.name.startsWith('.') && e.name.endsWith('.tmp')) {
        notes.push({ kind: 'temp-leftover', path: `${dir}/${e.name}` });
      }
    }
  }

  private async *walkBlobs(notes: FsckNote[]): AsyncGenerator<{ key: string; digest: string; size: number; mtimeMs: number; mismatch?: string }> {
    for (const alg of await this.driver.list('blobs')) {
      for (const pre of await this.driver.list(`blobs/${alg.name}`)) {
        for (const hex of await this.driver.list(`blobs/${alg.name}/${pre.name}`)) {
          const dir = `blobs/${alg.name}/${pre.name}/${hex.name}`;
          if (!hex.isDirectory) {
            notes.push({ kind: 'temp-leftover', path: dir });
            continue;
          }
          for (const f of await this.driver.list(dir)) {
            const key = `${dir}/${f.name}`;
            if (f.name !== 'data') {
              notes.push({ kind: 'temp-leftover', path: key });
              continue;
            }
            const s = await this.driver.stat(key);
            if (!s) continue;
            const digest = `${alg.name}:${hex.name}`;
            let mismatch: string | undefined;
            try {
              if (this.blobKey(this.digest(digest)) !== key) mismatch = 'not where its digest puts it';
            } catch {
              mismatch = `${digest} is not a digest`;
            }
            yield { key, digest, size: s.size, mtimeMs: s.mtimeMs, ...(mismatch ? { mismatch } : {}) };
          }
        }
      }
    }
  }

  private async *walkLinks(root: string): AsyncGenerator<{ key: string; digest: string; mtimeMs: number }> {
    for (const alg of await this.driver.list(root)) {
      for (const hex of await this.driver.list(`${root}/${alg.name}`)) {
        const key = `${root}/${alg.name}/${hex.name}/link`;
        const s = await this.driver.stat(key);
        if (s) yield { key, digest: `${alg.name}:${hex.name}`, mtimeMs: s.mtimeMs };
      }
    }
  }

  // ---------------------------------------------------------------- gc

  /**
   * Mark and sweep. Roots: every manifest linked in any repository (and everything it names), every blob
   * link younger than the grace period (a push in flight whose manifest is not there yet), every blob
   * younger than the grace period. Upload sessions keep their bytes outside the blob store, so they need
   * no marking; expired ones are removed. Unmarked blobs are first moved aside into _trash, then marked
   * again: anything a concurrent push linked in between is put back, the rest is deleted with the (old)
   * links to it. Writers re-check their blob after linking it and re-place it if it was set aside. Only
   * one gc runs at a time (_gc.lock).
   */
  async gc(opts: GcOptions = {}): Promise<GcReport> {
    const dryRun = opts.dryRun ?? false;
    const grace = opts.graceMs ?? this.gcGraceMs;
    const report: GcReport = { dryRun, markedBlobs: 0, removedBlobs: [], bytesFreed: 0, removedLinks: [], removedUploads: [], removedTemps: [], restoredBlobs: [] };
    const release = dryRun ? async () => undefined : await this.gcLock();
    try {
      if (!dryRun) await this.restoreTrash(report);
      for (const u of await this.expiredUploads()) {
        report.removedUploads.push(u.id);
        if (!dryRun) {
          this.running.delete(u.id);
          await this.driver.deleteTree(`_uploads/${u.id}`);
        }
      }
      const cutoff = this.now() - grace;
      const first = await this.mark(cutoff);
      report.markedBlobs = first.marked.size;
      const candidates: { digest: string; key: string; size: number }[] = [];
      const tempNotes: FsckNote[] = [];
      for (const repo of await this.repositories()) await this.collectTemps(this.repo(repo), tempNotes, 0);
      for await (const b of this.walkBlobs(tempNotes)) {
        if (b.mismatch || first.marked.has(b.digest) || b.mtimeMs > cutoff) continue;
        candidates.push({ digest: b.digest, key: b.key, size: b.size });
      }
      for (const n of tempNotes) {
        const s = await this.driver.stat(n.path);
        if (s && !s.isDirectory && s.mtimeMs <= cutoff) {
          report.removedTemps.push(n.path);
          if (!dryRun) await this.driver.delete(n.path);
        }
      }
      if (dryRun) {
        for (const c of candidates) {
          report.removedBlobs.push(c.digest);
          report.bytesFreed += c.size;
          report.removedLinks.push(...(first.oldLinks.get(c.digest) ?? []));
        }
        return report;
      }
      const aside: { digest: string; trash: string; size: number; key: string }[] = [];
      for (const c of candidates) {
        const d = this.digest(c.digest);
        const trash = `_trash/${d.algorithm}-${d.encoded}-${randomBytes(6).toString('hex')}/data`;
        try {
          await this.driver.rename(c.key, trash);
        } catch {
          continue;
        }
        aside.push({ ...c, trash });
      }
      const second = await this.mark(cutoff);
      for (const a of aside) {
        if (second.marked.has(a.digest)) {
          await this.driver.publish(a.trash, a.key);
          report.restoredBlobs.push(a.digest);
        } else {
          for (const link of second.oldLinks.get(a.digest) ?? []) {
            // A push may have renewed the link since the second mark; a young link stays (its writer re-places the blob).
            const s = await this.driver.stat(link);
            if (!s || s.mtimeMs > cutoff) continue;
            await this.driver.delete(link);
            await this.driver.pruneEmpty(parentOf(link), link.slice(0, link.indexOf('/_layers/') + '/_layers'.length));
            report.removedLinks.push(link);
          }
          report.removedBlobs.push(a.digest);
          report.bytesFreed += a.size;
          await this.driver.pruneEmpty(parentOf(a.key), 'blobs');
        }
        await this.driver.deleteTree(parentOf(a.trash));
      }
      return report;
    } finally {
      await release();
    }
  }

  private async mark(cutoff: number): Promise<{ marked: Set<string>; oldLinks: Map<string, string[]> }> {
    const marked = new Set<string>();
    const oldLinks = new Map<string, string[]>();
    for (const repo of await this.repositories()) {
      const repoKey = this.repo(repo);
      for await (const l of this.walkLinks(`${repoKey}/_manifests/revisions`)) {
        marked.add(l.digest);
        const link = await this.readJSON(l.key).catch(() => undefined);
        let bytes: Buffer | undefined;
        try {
          bytes = await this.driver.readBytes(this.blobKey(this.digest(l.digest)), MAX_MANIFEST_BYTES);
        } catch {
          bytes = undefined;
        }
        if (!bytes || !isObject(link) || typeof link.mediaType !== 'string') continue;
        try {
          for (const c of storedChildren(parseManifest(bytes, link.mediaType))) marked.add(c.digest);
        } catch {
          /* an unparsable manifest keeps only itself; fsck reports it */
        }
      }
      for await (const l of this.walkLinks(`${repoKey}/_layers`)) {
        if (l.mtimeMs > cutoff) marked.add(l.digest);
        else oldLinks.set(l.digest, [...(oldLinks.get(l.digest) ?? []), l.key]);
      }
    }
    return { marked, oldLinks };
  }

  /** Blobs a crashed gc left aside go back first; this run judges them afresh. */
  private async restoreTrash(report: GcReport): Promise<void> {
    for (const e of await this.driver.list('_trash')) {
      const m = /^([a-z0-9]+)-([a-f0-9]+)-[a-f0-9]+$/.exec(e.name);
      if (m) {
        try {
          const d = this.digest(`${m[1]}:${m[2]}`);
          if (await this.driver.stat(`_trash/${e.name}/data`)) {
            await this.driver.publish(`_trash/${e.name}/data`, this.blobKey(d));
            report.restoredBlobs.push(d.digest);
          }
        } catch {
          /* not ours to restore */
        }
      }
      await this.driver.deleteTree(`_trash/${e.name}`);
    }
  }

  private async gcLock(): Promise<() => Promise<void>> {
    const body = JSON.stringify({ pid: process.pid, startedAt: this.now() });
    for (let attempt = 0; attempt < 2; attempt++) {
      if (await this.driver.createExclusive('_gc.lock', body)) return () => this.driver.delete('_gc.lock');
      const held = await this.readJSON('_gc.lock').catch(() => undefined);
      const pid = isObject(held) && typeof held.pid === 'number' ? held.pid : undefined;
      if (pid !== undefined && pid !== process.pid && processAlive(pid)) break;
      if (pid === process.pid) break;
      // The holder died: its lock is stale.
      await this.driver.delete('_gc.lock');
    }
    throw refuse('E_IO', 'gc-running', 'another gc is running on this storage root', 'wait for it to finish, or remove _gc.lock if its process is gone');
  }

  // ---------------------------------------------------------------- helpers

  private async readJSON(key: string): Promise<unknown> {
    const raw = await this.driver.readBytes(key, LINK_MAX_BYTES);
    if (raw === undefined) return undefined;
    try {
      return JSON.parse(raw.toString('utf8'));
    } catch {
      return null;
    }
  }
}

/** Counts, bounds and hashes the bytes of one chunk on their way to the session file. */
class ChunkMeter extends Transform {
  count = 0;
  constructor(
    private readonly run: Running | undefined,
    private readonly base: number,
    private readonly length: number | undefined,
    private readonly max: number,
    private readonly tooLarge: (total: number) => LadingError,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.count += chunk.length;
    if (this.length !== undefined && this.count > this.length) {
      done(refuse('E_SIZE_MISMATCH', 'size-mismatch', `the chunk is longer than the ${this.length} bytes announced`));
      return;
    }
    if (this.base + this.count > this.max) {
      done(this.tooLarge(this.base + this.count));
      return;
    }
    if (this.run) for (const h of this.run.hashes.values()) h.update(chunk);
    done(null, chunk);
  }
}

async function hashStream(stream: Readable, algorithm: DigestAlgorithm): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of stream) hash.update(chunk as Buffer);
  return `${algorithm}:${hash.digest('hex')}`;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function parentOf(key: string): string {
  return key.slice(0, key.lastIndexOf('/'));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/**
 * What a manifest names that this registry must hold. Non-distributable ("foreign") layers live at their
 * `urls` by design, so a manifest naming them is accepted without them (as the conformance suite expects).
 */
function storedChildren(parsed: ParsedManifest): Descriptor[] {
  return manifestChildren(parsed).filter((c) => !(c.urls?.length) && !/\.(nondistributable|foreign)\./.test(c.mediaType));
}
