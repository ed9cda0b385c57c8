import { Readable, Transform } from 'node:stream';
import { LadingError, isLadingError } from '../errors.js';
import type {
  Deleter,
  FetchOptions,
  Mounter,
  PushOptions,
  ReferrerLister,
  TagLister,
  Target,
} from '../content/interfaces.js';
import { VerifyingStream, isVerifiedFor, verified } from '../content/verify.js';
import type { Descriptor } from '../oci/descriptor.js';
import { digestOf, isDigest, parseDigest, referrersTag } from '../oci/digest.js';
import { buildImageIndex, parseManifest, referrerOf } from '../oci/manifest.js';
import { MAX_MANIFEST_BYTES } from '../oci/manifest-types.js';
import { ManifestAccept, MediaType, isManifestMediaType } from '../oci/mediatype.js';
import { isValidTag, parseReference, type Reference } from '../oci/reference.js';
import { fixedChunks, readCapped } from './body.js';
import { ResumingDownload, errorCode } from './download.js';
import { readErrorBody, registryError } from './errors.js';
import { nextLink } from './link.js';
import { Transport, redactUrl, type TransportRequest } from './transport.js';

export interface RepositoryOptions {
  transport?: Transport;
  /**
   * How referrers are found and maintained: `auto` uses the referrers API and falls back to the tag schema
   * when the registry lacks it; `tag` always uses the tag schema; `api` never falls back.
   */
  referrers?: 'auto' | 'api' | 'tag';
  /** Blobs larger than this are uploaded in chunks, so that a failure resumes instead of restarting. */
  chunkThreshold?: number;
  /** Bytes per PATCH (raised to the registry's OCI-Chunk-Min-Length when that is larger). */
  chunkSize?: number;
  /** How often one download or upload may resume after a dropped connection. */
  maxResumes?: number;
}

const DEFAULT_CHUNK_THRESHOLD = 1024 * 1024 * 1024;
const DEFAULT_CHUNK_SIZE = 32 * 1024 * 1024;
const MAX_PAGES = 10_000;
/** A repository on a registry, speaking distribution-spec 1.1. */
export class Repository implements Target, ReferrerLister, TagLister, Deleter, Mounter {
  readonly registry: string;
  readonly repository: string;
  readonly transport: Transport;
  private readonly referrersMode: 'auto' | 'api' | 'tag';
  private referrersApiMissing = false;
  private readonly chunkThreshold: number;
  private readonly chunkSize: number;
  private readonly maxResumes: number;
  private readonly indexUpdates = new Map<string, Promise<void>>();

  constructor(ref: Reference | string, opts: RepositoryOptions = {}) {
    const parsed = typeof ref === 'string' ? parseReference(ref) : ref;
    this.registry = parsed.registry;
    this.repository = parsed.repository;
    this.transport = opts.transport ?? new Transport();
    this.referrersMode = opts.referrers ?? 'auto';
    this.chunkThreshold = opts.chunkThreshold ?? DEFAULT_CHUNK_THRESHOLD;
    this.chunkSize = opts.chunkSize ?? DEFAULT_CHUNK_SIZE;
    this.maxResumes = opts.maxResumes ?? 5;
  }

  toString(): string {
    return `${this.registry}/${this.repository}`;
  }

  private scope(actions: string): string {
    return `repository:${this.repository}:${actions}`;
  }

  private url(kind: 'manifests' | 'blobs' | 'tags' | 'referrers' | 'blobs/uploads', ref = ''): string {
    return `/v2/${this.repository}/${kind}/${ref}`;
  }

  private req(r: Omit<TransportRequest, 'registry'>): TransportRequest {
    return { registry: this.registry, ...r };
  }

  // ---------------------------------------------------------------- manifests and resolution

  /** A tag, a digest, or a full reference naming this repository, to the descriptor of its manifest. */
  async resolve(reference: string, opts: { signal?: AbortSignal } = {}): Promise<Descriptor> {
    const ref = this.localReference(reference);
    const res = await this.transport.expect(
      this.req({ method: 'HEAD', path: this.url('manifests', ref), headers: { accept: ManifestAccept }, scopes: [this.scope('pull')], signal: opts.signal }),
      [200],
    );
    await res.body.dump();
    const mediaType = contentType(res.headers['content-type']);
    const headerDigest = header(res.headers['docker-content-digest']);
    const length = Number(header(res.headers['content-length']));
    if (isDigest(ref) && headerDigest && headerDigest !== ref) {
      throw new LadingError('E_DIGEST_MISMATCH', `registry answered ${headerDigest} for ${ref}`, {
        details: { expected: ref, actual: headerDigest },
      });
    }
    const digest = isDigest(ref) ? ref : headerDigest;
    if (digest && isDigest(digest) && isManifestMediaType(mediaType) && Number.isSafeInteger(length) && length >= 0) {
      return { mediaType: mediaType as string, digest, size: length };
    }
    // Some registries leave out the digest or length on HEAD: read the manifest and compute them. A type
    // that is no manifest type is not taken either: parsing the manifest under it refuses it with the cause.
    const { descriptor } = await this.fetchManifestByReference(ref, opts.signal);
    return descriptor;
  }

  /** GETs a manifest by tag or digest, checking it against the digest when one was asked for. */
  async fetchManifestByReference(reference: string, signal?: AbortSignal): Promise<{ descriptor: Descriptor; bytes: Buffer }> {
    const ref = this.localReference(reference);
    const res = await this.transport.expect(
      this.req({ method: 'GET', path: this.url('manifests', ref), headers: { accept: ManifestAccept }, scopes: [this.scope('pull')], signal }),
      [200],
    );
    const bytes = await readCapped(res.body, MAX_MANIFEST_BYTES, 'manifest');
    const headerType = contentType(res.headers['content-type']);
    const parsed = parseManifest(bytes, headerType);
    const algorithm = isDigest(ref) ? (parseDigest(ref).algorithm as 'sha256' | 'sha512') : 'sha256';
    const digest = digestOf(bytes, algorithm);
    if (isDigest(ref) && digest !== ref) {
      throw new LadingError('E_DIGEST_MISMATCH', `manifest ${ref} hashes to ${digest}`, {
        hint: 'the registry served another manifest than the one asked for',
        details: { expected: ref, actual: digest },
      });
    }
    const descriptor: Descriptor = { mediaType: parsed.mediaType, digest, size: bytes.length };
    if (parsed.manifest.artifactType) descriptor.artifactType = parsed.manifest.artifactType;
    return { descriptor, bytes };
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    if (isManifestMediaType(desc.mediaType)) {
      const bytes = await this.fetchManifest(desc, opts.signal);
      return Readable.from([bytes.subarray(opts.offset ?? 0)]);
    }
    const body = new ResumingDownload((pos) => this.openBlob(desc, pos, opts.signal), desc, opts.offset ?? 0, this.maxResumes, opts.signal);
    return opts.offset ? body : verified(body, desc);
  }

  /** A manifest's bytes, verified against its descriptor. */
  async fetchManifest(desc: Descriptor, signal?: AbortSignal): Promise<Buffer> {
    if (desc.size > MAX_MANIFEST_BYTES) {
      throw new LadingError('E_MANIFEST_TOO_LARGE', `manifest ${desc.digest} is ${desc.size} bytes, over the 4 MiB limit`);
    }
    const accept = desc.mediaType && isManifestMediaType(desc.mediaType) ? `${desc.mediaType}, ${ManifestAccept}` : ManifestAccept;
    const res = await this.transport.expect(
      this.req({ method: 'GET', path: this.url('manifests', desc.digest), headers: { accept }, scopes: [this.scope('pull')], signal }),
      [200],
    );
    const bytes = await readCapped(res.body, desc.size, 'manifest').catch((err) => {
      if (isLadingError(err, 'E_MANIFEST_TOO_LARGE')) {
        throw new LadingError('E_SIZE_MISMATCH', `manifest ${desc.digest} is longer than ${desc.size} bytes`, { cause: err });
      }
      throw err;
    });
    if (bytes.length !== desc.size) {
      throw new LadingError('E_SIZE_MISMATCH', `manifest ${desc.digest}: got ${bytes.length} of ${desc.size} bytes`);
    }
    const actual = digestOf(bytes, parseDigest(desc.digest).algorithm as 'sha256' | 'sha512');
    if (actual !== desc.digest) {
      throw new LadingError('E_DIGEST_MISMATCH', `manifest ${desc.digest} hashes to ${actual}`, {
        details: { expected: desc.digest, actual },
      });
    }
    return bytes;
  }

  /**
   * Opens a blob at byte `pos` (a Range request past 0), checking what the registry says of the size
   * before a byte is read.
   */
  private async openBlob(desc: Descriptor, pos: number, signal?: AbortSignal): Promise<{ body: Readable; skip: number }> {
    const headers: Record<string, string> = pos > 0 ? { range: `bytes=${pos}-` } : {};
    const res = await this.transport
      .expect(this.req({ method: 'GET', path: this.url('blobs', desc.digest), headers, scopes: [this.scope('pull')], signal }), pos > 0 ? [200, 206] : [200])
      .catch((err: unknown) => {
        // Asking for bytes past the end means the blob is shorter than its descriptor.
        if (pos > 0 && isLadingError(err) && err.details?.status === 416) {
          throw new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: the registry has fewer than ${desc.size} bytes`, { cause: err });
        }
        throw err;
      });
    const total = res.statusCode === 200 ? Number(header(res.headers['content-length'])) : Number(/\/(\d+)$/.exec(header(res.headers['content-range']) ?? '')?.[1]);
    if (Number.isSafeInteger(total) && total !== desc.size) {
      // The registry says up front that the blob is not the size its descriptor names: fail before reading it.
      await res.body.dump();
      throw new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: registry has ${total} bytes, the descriptor says ${desc.size}`, {
        details: { digest: desc.digest, expected: desc.size, actual: total },
      });
    }
    if (pos > 0 && res.statusCode === 206) {
      const range = header(res.headers['content-range']) ?? '';
      if (!range.startsWith(`bytes ${pos}-`)) {
        await res.body.dump();
        throw new LadingError('E_PROTOCOL', `registry answered range "${range}" when asked for bytes ${pos}- of ${desc.digest}`);
      }
    }
    // A 200 to a Range request carries the whole blob: the bytes already held are dropped.
    return { body: res.body, skip: pos > 0 && res.statusCode === 200 ? pos : 0 };
  }

  async exists(desc: Descriptor, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const kind = isManifestMediaType(desc.mediaType) ? 'manifests' : 'blobs';
    const res = await this.transport.send(
      this.req({
        method: 'HEAD',
        path: this.url(kind, desc.digest),
        headers: kind === 'manifests' ? { accept: ManifestAccept } : {},
        scopes: [this.scope('pull')],
        signal: opts.signal,
      }),
    );
    await res.body.dump();
    if (res.statusCode === 200) return true;
    if (res.statusCode === 404) return false;
    throw await registryError(res.statusCode, undefined, 'HEAD', this.url(kind, desc.digest), res.headers, this.registry);
  }

  // ---------------------------------------------------------------- push

  async push(desc: Descriptor, body: Readable, opts: PushOptions = {}): Promise<void> {
    if (isManifestMediaType(desc.mediaType)) {
      if (desc.size > MAX_MANIFEST_BYTES) {
        body.destroy();
        throw new LadingError('E_MANIFEST_TOO_LARGE', `manifest ${desc.digest} is ${desc.size} bytes, over the 4 MiB limit`);
      }
      const check = isVerifiedFor(body, desc) ? body : body.pipe(new VerifyingStream(desc));
      if (check !== body) body.on('error', (err) => check.destroy(err));
      const bytes = await readCapped(check, MAX_MANIFEST_BYTES, 'manifest');
      opts.onProgress?.(bytes.length);
      await this.pushManifest(desc, bytes, undefined, opts.signal);
      return;
    }
    await this.uploadBlob(desc, body, opts);
  }

  /**
   * PUTs a manifest by digest, or by tag when `tag` is given. A manifest with a subject pushed to a
   * registry that does not answer with OCI-Subject is also recorded in the referrers tag-schema index.
   */
  async pushManifest(desc: Descriptor, bytes: Buffer, tag?: string, signal?: AbortSignal): Promise<void> {
    if (tag !== undefined && !isValidTag(tag)) {
      throw new LadingError('E_REFERENCE_INVALID', `invalid tag "${tag}"`, { hint: 'a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -' });
    }
    const parsed = parseManifest(bytes, desc.mediaType);
    const res = await this.transport.expect(
      this.req({
        method: 'PUT',
        path: this.url('manifests', tag ?? desc.digest),
        headers: { 'content-type': desc.mediaType },
        body: bytes,
        scopes: [this.scope('pull,push')],
        signal,
      }),
      [201, 200],
    );
    await res.body.dump();
    const returned = header(res.headers['docker-content-digest']);
    if (returned && returned !== desc.digest && isDigest(returned) && parseDigest(returned).algorithm === parseDigest(desc.digest).algorithm) {
      throw new LadingError('E_DIGEST_MISMATCH', `registry stored manifest as ${returned}, expected ${desc.digest}`);
    }
    const subject = parsed.manifest.subject;
    if (!subject) return;
    const apiAnswered = header(res.headers['oci-subject']) !== undefined;
    if (this.referrersMode === 'tag' || (this.referrersMode === 'auto' && !apiAnswered)) {
      await this.updateReferrersIndex(subject, (entries) => {
        if (entries.some((e) => e.digest === desc.digest)) return undefined;
        return [...entries, referrerOf(desc, bytes)!.descriptor];
      }, signal);
    }
  }

  /** Points a tag at a manifest that the repository already holds. */
  async tag(desc: Descriptor, reference: string, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const bytes = await this.fetchManifest(desc, opts.signal);
    await this.pushManifest(desc, bytes, reference, opts.signal);
  }

  private async startUpload(signal?: AbortSignal): Promise<{ location: string; minChunk: number }> {
    const res = await this.transport.expect(
      this.req({ method: 'POST', path: this.url('blobs/uploads'), headers: { 'content-length': '0' }, scopes: [this.scope('pull,push')], replayable: true, signal }),
      [202],
    );
    await res.body.dump();
    return { location: this.location(res.headers.location), minChunk: Number(header(res.headers['oci-chunk-min-length']) ?? 0) || 0 };
  }

  private location(value: string | string[] | undefined): string {
    const loc = header(value);
    if (!loc) throw new LadingError('E_PROTOCOL', 'registry opened an upload without a Location header');
    return new URL(loc, this.transport.baseUrl(this.registry)).toString();
  }

  private async uploadBlob(desc: Descriptor, body: Readable, opts: PushOptions): Promise<void> {
    parseDigest(desc.digest);
    let session: { location: string; minChunk: number };
    try {
      session = await this.startUpload(opts.signal);
    } catch (err) {
      body.destroy();
      throw err;
    }
    try {
      if (desc.size <= this.chunkThreshold) {
        await this.putMonolithic(desc, body, session.location, opts);
      } else {
        await this.putChunked(desc, body, session, opts);
      }
    } catch (err) {
      body.destroy();
      // Leave no half-written session behind on the registry.
      await this.transport
        .send(this.req({ method: 'DELETE', path: session.location, scopes: [this.scope('pull,push')], replayable: true }))
        .then((r) => r.body.dump())
        .catch(() => undefined);
      throw err;
    }
  }

  private async putMonolithic(desc: Descriptor, body: Readable, location: string, opts: PushOptions): Promise<void> {
    const url = withDigest(location, desc.digest);
    // The registry checks the digest; counting here stops a source that grows or shrinks mid-upload.
    const counted = countBytes(body, desc, opts.onProgress);
    const res = await this.transport.expect(
      this.req({
        method: 'PUT',
        path: url,
        headers: { 'content-type': 'application/octet-stream', 'content-length': String(desc.size) },
        body: counted,
        scopes: [this.scope('pull,push')],
        replayable: false,
        signal: opts.signal,
      }),
      [201, 204],
    );
    await res.body.dump();
  }

  private async putChunked(
    desc: Descriptor,
    body: Readable,
    session: { location: string; minChunk: number },
    opts: PushOptions,
  ): Promise<void> {
    let location = session.location;
    const size = Math.max(this.chunkSize, session.minChunk);
    let offset = 0;
    for await (const chunk of fixedChunks(body, size)) {
      if (offset + chunk.length > desc.size) {
        throw new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: got more than ${desc.size} bytes`);
      }
      location = await this.patchChunk(location, chunk, offset, opts.signal);
      offset += chunk.length;
      opts.onProgress?.(offset);
    }
    if (offset !== desc.size) {
      throw new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: got ${offset} of ${desc.size} bytes`);
    }
    const res = await this.transport.expect(
      this.req({ method: 'PUT', path: withDigest(location, desc.digest), headers: { 'content-length': '0' }, scopes: [this.scope('pull,push')], replayable: true, signal: opts.signal }),
      [201, 204],
    );
    await res.body.dump();
  }

  /**
   * Sends one chunk, and after a failure asks the registry how much it holds and sends only the rest:
   * the registry's upload status is the truth, never our guess of what arrived.
   */
  private async patchChunk(location: string, chunk: Buffer, offset: number, signal?: AbortSignal): Promise<string> {
    let sent = 0;
    for (let resumes = 0; ; resumes++) {
      const part = chunk.subarray(sent);
      const start = offset + sent;
      try {
        const res = await this.transport.expect(
          this.req({
            method: 'PATCH',
            path: location,
            headers: {
              'content-type': 'application/octet-stream',
              'content-length': String(part.length),
              'content-range': `${start}-${start + part.length - 1}`,
            },
            body: Readable.from([part]),
            scopes: [this.scope('pull,push')],
            replayable: false,
            signal,
          }),
          [202, 204],
        );
        await res.body.dump();
        return res.headers.location ? this.location(res.headers.location) : location;
      } catch (err) {
        if (signal?.aborted || resumes >= this.maxResumes) throw err;
        const code = isLadingError(err) ? (err.details?.cause as string | undefined) : errorCode(err);
        const transient = (isLadingError(err, 'E_NETWORK') && code) || (isLadingError(err) && [429, 500, 502, 503, 504].includes(Number(err.details?.status)));
        if (!transient) throw err;
        const status = await this.uploadStatus(location, signal);
        location = status.location;
        // distribution reports an empty upload as "0-0", the same as one holding a single byte; at the
        // start of an upload the empty reading is the likely one (a wrong guess gets a clear 416).
        const held = status.end === 0 && offset === 0 ? 0 : status.end + 1;
        if (held < offset || held > offset + chunk.length) {
          throw new LadingError('E_PROTOCOL', `registry holds ${held} bytes of an upload that should hold ${offset}-${offset + chunk.length}`);
        }
        sent = held - offset;
        if (sent === chunk.length) return location;
      }
    }
  }

  private async uploadStatus(location: string, signal?: AbortSignal): Promise<{ location: string; end: number }> {
    const res = await this.transport.expect(
      this.req({ method: 'GET', path: location, scopes: [this.scope('pull,push')], signal }),
      [204, 200],
    );
    await res.body.dump();
    const range = header(res.headers.range) ?? '';
    const m = /^(?:bytes=)?0-(\d+)$/.exec(range);
    return { location: res.headers.location ? this.location(res.headers.location) : location, end: m ? Number(m[1]) : -1 };
  }

  /** Cross-repository mount: true when the registry linked the blob, false when it wants an upload. */
  async mount(desc: Descriptor, fromRepository: string, opts: { signal?: AbortSignal } = {}): Promise<boolean> {
    const path = `${this.url('blobs/uploads')}?mount=${encodeURIComponent(desc.digest)}&from=${encodeURIComponent(fromRepository)}`;
    const res = await this.transport.expect(
      this.req({
        method: 'POST',
        path,
        headers: { 'content-length': '0' },
        scopes: [this.scope('pull,push'), `repository:${fromRepository}:pull`],
        replayable: true,
        signal: opts.signal,
      }),
      [201, 202],
    );
    await res.body.dump();
    if (res.statusCode === 201) return true;
    // The registry opened an upload session instead; close it, the caller uploads afresh.
    if (res.headers.location) {
      await this.transport
        .send(this.req({ method: 'DELETE', path: this.location(res.headers.location), scopes: [this.scope('pull,push')], replayable: true }))
        .then((r) => r.body.dump())
        .catch(() => undefined);
    }
    return false;
  }

  // ---------------------------------------------------------------- tags, delete

  async *tags(opts: { last?: string; pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<string> {
    const query = new URLSearchParams();
    if (opts.pageSize) query.set('n', String(opts.pageSize));
    if (opts.last) query.set('last', opts.last);
    let path: string | undefined = `${this.url('tags', 'list')}${query.size ? `?${query}` : ''}`;
    const seen = new Set<string>();
    for (let page = 0; path && page < MAX_PAGES; page++) {
      const res = await this.transport.expect(this.req({ method: 'GET', path, scopes: [this.scope('pull')], signal: opts.signal }), [200]);
      const doc = parseJson(await readCapped(res.body, 16 * 1024 * 1024, 'tag list'), 'tag list') as { tags?: unknown };
      let tags = Array.isArray(doc.tags) ? doc.tags.filter((t): t is string => typeof t === 'string') : [];
      const next = nextLink(res.headers.link, this.transport.baseUrl(this.registry));
      if (page === 0 && !next) {
        // The whole listing came in one page. Some registries (distribution 2.8) answer that way whatever
        // `n` and `last` say, unsorted: order it, and start after `last` here.
        tags = tags.sort(byCodePoint);
        if (opts.last !== undefined) tags = tags.filter((t) => t > (opts.last as string));
      }
      // Across pages the registry's own order stands; a tag is only ever listed once.
      for (const t of tags) {
        if (seen.has(t)) continue;
        seen.add(t);
        yield t;
      }
      path = next;
    }
  }

  async delete(desc: Descriptor, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const manifest = isManifestMediaType(desc.mediaType);
    let subject: Descriptor | undefined;
    if (manifest && this.referrersMode !== 'api') {
      const bytes = await this.fetchManifest(desc, opts.signal);
      subject = parseManifest(bytes, desc.mediaType).manifest.subject;
    }
    const res = await this.transport.expect(
      this.req({ method: 'DELETE', path: this.url(manifest ? 'manifests' : 'blobs', desc.digest), scopes: [this.scope('delete')], signal: opts.signal }),
      [202, 200, 204],
    );
    await res.body.dump();
    if (subject && (this.referrersMode === 'tag' || !(await this.hasReferrersApi(subject, opts.signal)))) {
      await this.updateReferrersIndex(subject, (entries) => {
        const kept = entries.filter((e) => e.digest !== desc.digest);
        return kept.length === entries.length ? undefined : kept;
      }, opts.signal);
    }
  }

  // ---------------------------------------------------------------- referrers

  async *referrers(subject: Descriptor, artifactType?: string, opts: { signal?: AbortSignal } = {}): AsyncGenerator<Descriptor> {
    if (this.referrersMode === 'api' || (this.referrersMode === 'auto' && !this.referrersApiMissing)) {
      const viaApi = await this.referrersFromApi(subject, artifactType, opts.signal);
      if (viaApi) {
        yield* viaApi;
        return;
      }
      if (this.referrersMode === 'api') {
        throw new LadingError('E_UNSUPPORTED', `${this.registry} has no referrers API`, { hint: 'use the tag fallback (referrers: auto)' });
      }
    }
    for (const d of await this.readReferrersIndex(subject, opts.signal)) {
      if (!artifactType || d.artifactType === artifactType) yield d;
    }
  }

  private async hasReferrersApi(subject: Descriptor, signal?: AbortSignal): Promise<boolean> {
    if (this.referrersMode === 'tag' || this.referrersApiMissing) return false;
    return (await this.referrersFromApi(subject, undefined, signal)) !== undefined;
  }

  /** All pages of the referrers API, or undefined when the registry has no such API (404). */
  private async referrersFromApi(subject: Descriptor, artifactType: string | undefined, signal?: AbortSignal): Promise<Descriptor[] | undefined> {
    const query = artifactType ? `?artifactType=${encodeURIComponent(artifactType)}` : '';
    let path: string | undefined = `${this.url('referrers', subject.digest)}${query}`;
    const out: Descriptor[] = [];
    for (let page = 0; path && page < MAX_PAGES; page++) {
      const res = await this.transport.send(
        this.req({ method: 'GET', path, headers: { accept: MediaType.ImageIndex }, scopes: [this.scope('pull')], signal }),
      );
      const type = contentType(res.headers['content-type']);
      if (page === 0 && (res.statusCode === 404 || (res.statusCode === 200 && type !== MediaType.ImageIndex))) {
        await res.body.dump();
        // Remembered for reads only: whether a push must maintain the fallback is decided by OCI-Subject.
        this.referrersApiMissing = true;
        return undefined;
      }
      if (res.statusCode !== 200) {
        throw await registryError(res.statusCode, await readErrorBody(res.body), 'GET', path, res.headers, this.registry);
      }
      const bytes = await readCapped(res.body, MAX_MANIFEST_BYTES, 'referrers index');
      const index = parseManifest(bytes, MediaType.ImageIndex);
      const filtered = (header(res.headers['oci-filters-applied']) ?? '').split(',').map((s) => s.trim()).includes('artifactType');
      for (const d of index.kind === 'index' ? index.manifest.manifests : []) {
        if (!artifactType || filtered || d.artifactType === artifactType) out.push(d);
      }
      path = nextLink(res.headers.link, this.transport.baseUrl(this.registry));
    }
    return out;
  }

  private async readReferrersIndex(subject: Descriptor, signal?: AbortSignal): Promise<Descriptor[]> {
    try {
      const { bytes, descriptor } = await this.fetchManifestByReference(referrersTag(subject.digest), signal);
      const parsed = parseManifest(bytes, descriptor.mediaType);
      if (parsed.kind !== 'index') {
        throw new LadingError('E_MANIFEST_INVALID', `referrers tag ${referrersTag(subject.digest)} does not hold an index`);
      }
      return parsed.manifest.manifests;
    } catch (err) {
      if (isLadingError(err, 'E_NOT_FOUND')) return [];
      throw err;
    }
  }

  /**
   * Rewrites the tag-schema index of `subject`. `change` returns the new entries, or undefined for no
   * change. Two writers racing can lose an entry; the distribution spec accepts that for the fallback.
   */
  private async updateReferrersIndex(
    subject: Descriptor,
    change: (entries: Descriptor[]) => Descriptor[] | undefined,
    signal?: AbortSignal,
  ): Promise<void> {
    // Updates of one subject's index run one after another within this process (a copy pushes several
    // referrers of one subject at once); across processes the spec accepts the race.
    const key = subject.digest;
    const previous = this.indexUpdates.get(key) ?? Promise.resolve();
    const update = previous.catch(() => undefined).then(async () => {
      const current = await this.readReferrersIndex(subject, signal);
      const next = change(current);
      if (!next) return;
      const { bytes, descriptor } = buildImageIndex({ manifests: next });
      await this.pushManifest(descriptor, bytes, referrersTag(subject.digest), signal);
    });
    this.indexUpdates.set(key, update);
    try {
      await update;
    } finally {
      if (this.indexUpdates.get(key) === update) this.indexUpdates.delete(key);
    }
  }

  private localReference(reference: string): string {
    if (isDigest(reference) || isValidTag(reference)) return reference;
    const ref = parseReference(reference);
    if (ref.registry !== this.registry || ref.repository !== this.repository) {
      throw new LadingError('E_REFERENCE_INVALID', `${reference} is not in repository ${this.registry}/${this.repository}`);
    }
    const local = ref.digest ?? ref.tag;
    if (!local) throw new LadingError('E_REFERENCE_INVALID', `${reference} names no tag or digest`);
    return local;
  }
}


function byCodePoint(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function contentType(value: string | string[] | undefined): string | undefined {
  return header(value)?.split(';')[0]?.trim() || undefined;
}

function withDigest(location: string, digest: string): string {
  const u = new URL(location);
  u.searchParams.set('digest', digest);
  return u.toString();
}

function parseJson(bytes: Buffer, what: string): unknown {
  try {
    return JSON.parse(bytes.toString('utf8'));
  } catch (err) {
    throw new LadingError('E_PROTOCOL', `registry sent a ${what} that is not JSON`, { cause: err });
  }
}

/** Passes `body` through, failing when it carries more or fewer bytes than `desc.size`. */
function countBytes(body: Readable, desc: Descriptor, onProgress?: (n: number) => void): Readable {
  let seen = 0;
  const counter = new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > desc.size) {
        done(new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: got more than ${desc.size} bytes`));
        return;
      }
      onProgress?.(seen);
      done(null, chunk);
    },
    flush(done) {
      done(seen === desc.size ? null : new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: got ${seen} of ${desc.size} bytes`));
    },
  });
  body.on('error', (err) => counter.destroy(err));
  counter.on('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  return body.pipe(counter);
}

export { redactUrl };
