import type { IncomingMessage, ServerResponse } from 'node:http';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { pipeline as pipelineCb } from 'node:stream';
import type { Logger } from 'pino';
import { Families } from '../artifact/family.js';
import { LadingError } from '../errors.js';
import { parseDigest } from '../oci/digest.js';
import { MAX_MANIFEST_BYTES, type ParsedManifest } from '../oci/manifest-types.js';
import { MediaType } from '../oci/mediatype.js';
import type { AccessScope, Action, Authenticator, Principal } from './auth.js';
import { OciError, sendOciError } from './errors.js';
import { matchRoute, type Route } from './routes.js';
import { SchemaAuthority } from './schema-authority.js';
import type { ByteRange, PositionalReader } from './storage/driver.js';
import { storageReason, type RegistryStore, type UploadStatus } from './storage/store.js';

export interface RegistryHandlerOptions {
  auth?: Authenticator;
  logger?: Logger;
  /** Largest manifest accepted on PUT (default and maximum 4 MiB, what the image-spec guarantees). */
  maxManifestBytes?: number;
  /**
   * The artifact families whose configs are checked on manifest PUT and listed at `/ext/v1/types`
   * (default: the built-ins).
   */
  families?: Families;
}

export type RegistryHandler = (req: IncomingMessage, res: ServerResponse) => void;

/**
 * A body left unread when the answer is sent is drained up to this many bytes so that the connection can
 * be reused and the client reads our answer; beyond it the connection is closed instead.
 */
const DRAIN_MAX = 1024 * 1024;
const API_VERSION = 'registry/2.0';

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  route: Route;
  query: URLSearchParams;
  head: boolean;
  /** The request body as a stream that always ends or errors (never hangs when the client vanishes). */
  body(): Readable;
  /** Who the authenticator let in, when there is one. */
  principal?: Principal;
}

export function createRegistryHandler(store: RegistryStore, opts: RegistryHandlerOptions = {}): RegistryHandler {
  const maxManifest = Math.min(opts.maxManifestBytes ?? MAX_MANIFEST_BYTES, MAX_MANIFEST_BYTES);
  const log = opts.logger;
  const authority = new SchemaAuthority(opts.families ?? Families.builtin());

  return (req, res) => {
    const started = process.hrtime.bigint();
    let body: PassThrough | undefined;
    res.setHeader('docker-distribution-api-version', API_VERSION);
    res.on('finish', () => {
      settleBody(req, body);
      log?.info({ method: req.method, url: shownUrl(req.url), status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request');
    });
    res.on('close', () => {
      // The client went away before the answer was complete: nothing more will be read from it.
      if (!res.writableFinished) req.destroy();
    });
    const getBody = (): Readable => {
      if (!body) {
        body = new PassThrough({ highWaterMark: 1 << 20 });
        // pipeline turns a connection dropped mid-body into an error on `body`, so a consumer never waits forever.
        pipelineCb(req, body, () => undefined);
      }
      return body;
    };
    handle(req, res, getBody).catch((err: unknown) => {
      const oci = toOciError(err, req.method ?? 'GET');
      if (oci.status >= 500) log?.error({ err, method: req.method, url: shownUrl(req.url) }, 'request failed');
      if (!req.complete && !smallBody(req)) oci.headers.connection = 'close';
      sendOciError(res, oci, req.method === 'HEAD');
    });
  };

  async function handle(req: IncomingMessage, res: ServerResponse, body: () => Readable): Promise<void> {
    const method = req.method ?? 'GET';
    const raw = req.url ?? '/';
    if (!raw.startsWith('/')) throw new OciError('UNSUPPORTED', 'request target must be a path', { status: 400 });
    const q = raw.indexOf('?');
    const pathname = q < 0 ? raw : raw.slice(0, q);
    const query = new URLSearchParams(q < 0 ? '' : raw.slice(q + 1));

    if (pathname === '/healthz') {
      if (method !== 'GET' && method !== 'HEAD') throw notAllowed(['GET', 'HEAD']);
      return sendJSON(res, 200, { status: 'ok' }, method === 'HEAD');
    }
    // The authenticator's own endpoints (the token endpoint of token auth).
    if (opts.auth?.serve && (await opts.auth.serve(req, res, pathname, query, body))) return;
    const route = matchRoute(pathname);
    if (!route) {
      const what = pathname.startsWith('/ext/') ? 'no lading extension' : 'no endpoint';
      throw new OciError('NAME_UNKNOWN', `${what} at ${pathname.slice(0, 200)}`, { status: 404 });
    }
    const allowed = ALLOWED[route.kind];
    if (!allowed.includes(method)) throw notAllowed(allowed);

    const principal = opts.auth ? await opts.auth.authenticate(req, scopesOf(route, method, query)) : undefined;
    const ctx: Ctx = { req, res, method, route, query, head: method === 'HEAD', body, ...(principal ? { principal } : {}) };
    switch (route.kind) {
      case 'base':
        return sendJSON(res, 200, {}, ctx.head);
      case 'catalog':
        return catalog(ctx);
      case 'tags':
        return tagsList(ctx, route.name);
      case 'manifest':
        return manifest(ctx, route.name, route.reference);
      case 'blob':
        return blob(ctx, route.name, route.digest);
      case 'uploads':
        return startUpload(ctx, route.name);
      case 'upload':
        return upload(ctx, route.name, route.id);
      case 'referrers':
        return referrers(ctx, route.name, route.digest);
      case 'types':
        return sendBytes(ctx.res, 200, authority.types(), ctx.head);
    }
  }

  // ---------------------------------------------------------------- listings

  async function catalog(ctx: Ctx): Promise<void> {
    const q = pageQuery(ctx.query);
    const page = paginate(await store.repositories(), q);
    if (page.next) ctx.res.setHeader('link', `</v2/_catalog?${page.next}>; rel="next"`);
    sendJSON(ctx.res, 200, { repositories: page.items }, ctx.head);
  }

  async function tagsList(ctx: Ctx, name: string): Promise<void> {
    const q = pageQuery(ctx.query);
    const tags = await store.tags(name);
    if (tags.length === 0 && !(await store.hasRepository(name))) {
      throw new OciError('NAME_UNKNOWN', `repository ${name} is not known to this registry`, { detail: { name } });
    }
    const page = paginate(tags, q);
    if (page.next) ctx.res.setHeader('link', `</v2/${name}/tags/list?${page.next}>; rel="next"`);
    sendJSON(ctx.res, 200, { name, tags: page.items }, ctx.head);
  }

  // ---------------------------------------------------------------- manifests

  async function manifest(ctx: Ctx, name: string, reference: string): Promise<void> {
    const byDigest = reference.includes(':');
    if (byDigest) checkDigest(reference);
    switch (ctx.method) {
      case 'GET':
      case 'HEAD': {
        const found = await store.getManifest(name, reference).catch((err: unknown) => {
          // A reference that cannot be a tag names nothing here.
          if (storageReason(err) === 'tag-invalid') return undefined;
          throw err;
        });
        if (!found) throw new OciError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${name}`, { detail: { name, reference } });
        // Served as stored whatever Accept says: every type lading stores is an OCI or Docker schema 2
        // manifest, and a client that cannot read it learns more from its Content-Type than from a 404.
        ctx.res.writeHead(200, {
          'content-type': found.mediaType,
          'content-length': String(found.size),
          'docker-content-digest': found.digest,
          etag: `"${found.digest}"`,
        });
        ctx.res.end(ctx.head ? undefined : found.bytes);
        return;
      }
      case 'PUT': {
        const bytes = await readCapped(ctx.req, ctx.body, maxManifest);
        const mediaType = ctx.req.headers['content-type'];
        const validate = (parsed: ParsedManifest): Promise<void> => authority.check(store, name, parsed);
        const result = await store.putManifest(name, bytes, mediaType, { ...(byDigest ? { digest: reference } : { tag: reference }), validate });
        const headers: Record<string, string> = {
          location: `/v2/${name}/manifests/${result.digest}`,
          'docker-content-digest': result.digest,
          'content-length': '0',
        };
        // distribution-spec 1.1+: `?tag=` on a push by digest tags it in the same request. The same bytes
        // were validated just above, so the extra tags skip the schema check.
        const extraTags = byDigest ? ctx.query.getAll('tag') : [];
        for (const tag of extraTags) await store.putManifest(name, bytes, mediaType, { tag });
        if (extraTags.length) headers['oci-tag'] = extraTags.join(', ');
        if (result.subject) headers['oci-subject'] = result.subject;
        ctx.res.writeHead(201, headers);
        ctx.res.end();
        return;
      }
      case 'DELETE': {
        const gone = byDigest ? await store.deleteManifest(name, reference) : await store.deleteTag(name, reference);
        if (!gone) throw new OciError('MANIFEST_UNKNOWN', `manifest ${reference} is not in ${name}`, { detail: { name, reference } });
        ctx.res.writeHead(202, { 'content-length': '0' });
        ctx.res.end();
        return;
      }
    }
  }

  async function referrers(ctx: Ctx, name: string, digest: string): Promise<void> {
    checkDigest(digest);
    const artifactType = ctx.query.get('artifactType') ?? undefined;
    const manifests = await store.referrers(name, digest, artifactType ? { artifactType } : {});
    const index = { schemaVersion: 2, mediaType: MediaType.ImageIndex, manifests };
    const bytes = Buffer.from(JSON.stringify(index));
    const headers: Record<string, string> = { 'content-type': MediaType.ImageIndex, 'content-length': String(bytes.length) };
    if (artifactType) headers['oci-filters-applied'] = 'artifactType';
    ctx.res.writeHead(200, headers);
    ctx.res.end(ctx.head ? undefined : bytes);
  }

  // ---------------------------------------------------------------- blobs

  async function blob(ctx: Ctx, name: string, digest: string): Promise<void> {
    checkDigest(digest);
    if (ctx.method === 'DELETE') {
      if (!(await store.deleteBlob(name, digest))) throw blobUnknown(name, digest);
      ctx.res.writeHead(202, { 'content-length': '0' });
      ctx.res.end();
      return;
    }
    const info = await store.statBlob(name, digest);
    if (!info) throw blobUnknown(name, digest);
    const range = parseRange(ctx.req.headers.range, info.size);
    if (range === 'unsatisfiable') {
      throw new OciError('UNSUPPORTED', `range ${ctx.req.headers.range} is outside the ${info.size}-byte blob`, {
        status: 416,
        headers: { 'content-range': `bytes */${info.size}` },
      });
    }
    const headers: Record<string, string> = {
      'content-type': MediaType.OctetStream,
      'docker-content-digest': digest,
      'accept-ranges': 'bytes',
      etag: `"${digest}"`,
      'cache-control': 'max-age=31536000',
    };
    if (ctx.head) {
      ctx.res.writeHead(200, { ...headers, 'content-length': String(info.size) });
      ctx.res.end();
      return;
    }
    const positional = await store.blobReader(name, digest);
    if (positional) {
      const first = range?.start ?? 0;
      const last = range?.end ?? positional.size - 1;
      if (range) headers['content-range'] = `bytes ${first}-${last}/${positional.size}`;
      headers['content-length'] = String(last - first + 1);
      ctx.res.writeHead(range ? 206 : 200, headers);
      try {
        await sendRange(ctx.res, positional.reader, first, last);
      } catch {
        // The client left, or the disk failed mid-stream: the status is sent, so only the connection can say so.
        ctx.res.destroy();
      } finally {
        await positional.reader.close();
      }
      return;
    }
    const read = await store.readBlob(name, digest, range);
    if (!read) throw blobUnknown(name, digest);
    if (range) {
      headers['content-range'] = `bytes ${range.start}-${range.end}/${read.size}`;
      headers['content-length'] = String(range.end - range.start + 1);
    } else {
      headers['content-length'] = String(read.size);
    }
    ctx.res.writeHead(range ? 206 : 200, headers);
    try {
      await pipeline(read.stream, ctx.res);
    } catch {
      // The client left, or the disk failed mid-stream: the status is sent, so only the connection can say so.
      read.stream.destroy();
      ctx.res.destroy();
    }
  }

  // ---------------------------------------------------------------- uploads

  async function startUpload(ctx: Ctx, name: string): Promise<void> {
    const mount = ctx.query.get('mount');
    // A mount source the client may not read is treated as absent: the spec's fallback is a plain upload.
    const fromParam = ctx.query.get('from');
    const from = fromParam !== null && ctx.principal?.refused?.some((s) => s.repository === fromParam) ? null : fromParam;
    const digest = ctx.query.get('digest');
    if (mount !== null) {
      checkDigest(mount);
      // A source we cannot read from (bad name, not there) is no error: the spec says fall back to an upload.
      const mounted =
        from !== null && from !== name
          ? await store.mountBlob(name, mount, from).catch(() => undefined)
          : ((await store.statBlob(name, mount)) ?? (from === null && !opts.auth ? await store.mountAnywhere(name, mount).catch(() => undefined) : undefined));
      if (mounted) {
        ctx.res.writeHead(201, { location: `/v2/${name}/blobs/${mount}`, 'docker-content-digest': mount, 'content-length': '0' });
        ctx.res.end();
        return;
      }
    }
    if (digest !== null && mount === null) {
      checkDigest(digest);
      const length = contentLength(ctx.req);
      const session = await store.createUpload(name);
      try {
        await store.completeUpload(name, session.id, digest, { body: ctx.body(), ...(length !== undefined ? { length } : {}) });
      } catch (err) {
        await store.cancelUpload(name, session.id).catch(() => undefined);
        throw err;
      }
      ctx.res.writeHead(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': '0' });
      ctx.res.end();
      return;
    }
    const session = await store.createUpload(name);
    ctx.res.writeHead(202, { ...sessionHeaders(name, session), 'content-length': '0' });
    ctx.res.end();
  }

  async function upload(ctx: Ctx, name: string, id: string): Promise<void> {
    switch (ctx.method) {
      case 'GET': {
        const status = await store.uploadStatus(name, id);
        ctx.res.writeHead(204, sessionHeaders(name, status));
        ctx.res.end();
        return;
      }
      case 'DELETE': {
        await store.cancelUpload(name, id);
        ctx.res.writeHead(204);
        ctx.res.end();
        return;
      }
      case 'PATCH': {
        const status = await store.uploadStatus(name, id);
        const chunk = chunkOf(ctx.req, status);
        const after = await store.appendUpload(name, id, ctx.body(), chunk);
        ctx.res.writeHead(202, { ...sessionHeaders(name, after), 'content-length': '0' });
        ctx.res.end();
        return;
      }
      case 'PUT': {
        const digest = ctx.query.get('digest');
        if (digest === null) throw new OciError('DIGEST_INVALID', 'closing an upload needs ?digest=<digest>');
        checkDigest(digest);
        const status = await store.uploadStatus(name, id);
        const hasBody = bodyAnnounced(ctx.req);
        let length: number | undefined;
        if (hasBody) length = chunkOf(ctx.req, status).length;
        await store.completeUpload(name, id, digest, hasBody ? { body: ctx.body(), ...(length !== undefined ? { length } : {}) } : {});
        ctx.res.writeHead(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': '0' });
        ctx.res.end();
        return;
      }
    }
  }
}

// ---------------------------------------------------------------- request helpers

const ALLOWED: Record<Route['kind'], string[]> = {
  base: ['GET', 'HEAD'],
  catalog: ['GET'],
  tags: ['GET'],
  manifest: ['GET', 'HEAD', 'PUT', 'DELETE'],
  blob: ['GET', 'HEAD', 'DELETE'],
  uploads: ['POST'],
  upload: ['GET', 'PATCH', 'PUT', 'DELETE'],
  referrers: ['GET'],
  types: ['GET', 'HEAD'],
};

const SEND_CHUNK = 1 << 20;
const SEND_RING = 4;

/**
 * Writes bytes `first`..`last` of a blob to the response through a few reused buffers. A buffer is filled
 * again only once the socket has taken the chunk it last carried (the write callback), so at most
 * SEND_RING chunks are in flight and no per-chunk garbage is made.
 */
async function sendRange(res: ServerResponse, reader: PositionalReader, first: number, last: number): Promise<void> {
  const buffers = Array.from({ length: SEND_RING }, () => Buffer.allocUnsafe(SEND_CHUNK));
  const written: Array<Promise<void> | undefined> = new Array(SEND_RING);
  let pos = first;
  try {
    for (let i = 0; pos <= last; i++) {
      const slot = i % SEND_RING;
      await written[slot];
      if (res.destroyed) throw new Error('the client left');
      const want = Math.min(SEND_CHUNK, last - pos + 1);
      const n = await reader.read(buffers[slot]!.subarray(0, want), pos);
      if (n <= 0) throw new Error(`the blob ended at byte ${pos}, before ${last + 1}`);
      const chunk = buffers[slot]!.subarray(0, n);
      pos += n;
      written[slot] = new Promise<void>((resolve, reject) => {
        res.write(chunk, (err) => (err ? reject(err) : resolve()));
      });
      written[slot]!.catch(() => undefined);
    }
    await Promise.all(written);
  } catch (err) {
    // Let every write settle before the buffers go: none may be read from after this returns.
    await Promise.allSettled(written);
    throw err;
  }
  await new Promise<void>((resolve) => res.end(resolve));
}

function notAllowed(allowed: string[]): OciError {
  return new OciError('UNSUPPORTED', `method not allowed here; use ${allowed.join(', ')}`, { status: 405, headers: { allow: allowed.join(', ') } });
}

function scopesOf(route: Route, method: string, query: URLSearchParams): AccessScope[] {
  // The family listing is no repository's content: like /v2/ itself, any authenticated client may read it
  // (anyone at all on an open server). It is not the catalog, whose scope token auth may withhold.
  if (route.kind === 'base' || route.kind === 'types') return [];
  if (route.kind === 'catalog') return [{ registry: 'catalog', actions: ['*'] }];
  const actions: Action[] = method === 'DELETE' ? ['delete'] : method === 'GET' || method === 'HEAD' ? ['pull'] : ['pull', 'push'];
  const scopes: AccessScope[] = [{ repository: route.name, actions }];
  const from = query.get('from');
  if (route.kind === 'uploads' && from && query.get('mount') !== null) scopes.push({ repository: from, actions: ['pull'], optional: true });
  return scopes;
}

function sessionHeaders(name: string, s: UploadStatus): Record<string, string> {
  return {
    location: `/v2/${name}/blobs/uploads/${s.id}`,
    // distribution reports an empty session as 0-0 too; clients read it as "nothing yet" at the start.
    range: `0-${Math.max(0, s.size - 1)}`,
    'docker-upload-uuid': s.id,
  };
}

function contentLength(req: IncomingMessage): number | undefined {
  const raw = req.headers['content-length'];
  if (raw === undefined) return undefined;
  if (!/^\d{1,15}$/.test(raw)) throw new OciError('SIZE_INVALID', `Content-Length ${JSON.stringify(raw.slice(0, 40))} is not a byte count`);
  return Number(raw);
}

function bodyAnnounced(req: IncomingMessage): boolean {
  return req.headers['transfer-encoding'] !== undefined || (contentLength(req) ?? 0) > 0;
}

/** Whether what remains of the body is small enough to drain rather than close the connection over. */
function smallBody(req: IncomingMessage): boolean {
  if (req.headers['transfer-encoding'] !== undefined) return false;
  const raw = req.headers['content-length'];
  return raw === undefined || (/^\d{1,15}$/.test(raw) && Number(raw) <= DRAIN_MAX);
}

/**
 * The offset and length a chunk claims: Content-Range `<start>-<end>` (checked against the session, 416
 * with the current Range when out of order) and Content-Length, which must agree with it. Without
 * Content-Range the chunk is appended where the session stands.
 */
function chunkOf(req: IncomingMessage, status: UploadStatus): { offset: number; length?: number } {
  const length = contentLength(req);
  const raw = req.headers['content-range'];
  if (raw === undefined) return { offset: status.size, ...(length !== undefined ? { length } : {}) };
  const m = /^(?:bytes[ =])?(\d{1,15})-(\d{1,15})(?:\/(?:\d{1,15}|\*))?$/.exec(raw.trim());
  if (!m) throw new OciError('BLOB_UPLOAD_INVALID', `Content-Range ${JSON.stringify(raw.slice(0, 60))} is not <start>-<end>`, { status: 416, headers: rangeHeaders(status) });
  const start = Number(m[1]);
  const end = Number(m[2]);
  if (end < start) throw new OciError('BLOB_UPLOAD_INVALID', `Content-Range ${start}-${end} ends before it starts`, { status: 416, headers: rangeHeaders(status) });
  if (start !== status.size) {
    throw new OciError('BLOB_UPLOAD_INVALID', `the chunk starts at ${start} but the upload holds ${status.size} bytes`, {
      status: 416,
      headers: rangeHeaders(status),
      detail: { expected: status.size, got: start },
    });
  }
  const span = end - start + 1;
  if (length !== undefined && length !== span) {
    throw new OciError('SIZE_INVALID', `Content-Length ${length} does not match Content-Range ${start}-${end} (${span} bytes)`);
  }
  return { offset: start, length: span };
}

function rangeHeaders(s: UploadStatus): Record<string, string> {
  return { range: `0-${Math.max(0, s.size - 1)}`, location: `/v2/${s.repo}/blobs/uploads/${s.id}`, 'docker-upload-uuid': s.id };
}

/**
 * One `bytes=` range of a blob of `size` bytes: undefined for none (or one we may ignore: RFC 9110 lets a
 * server serve the whole representation for a malformed or multi-range request), 'unsatisfiable' for 416.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined | 'unsatisfiable' {
  if (header === undefined) return undefined;
  const m = /^bytes=(\d{0,15})-(\d{0,15})$/.exec(header.trim());
  if (!m || (m[1] === '' && m[2] === '')) return undefined;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    if (suffix === 0 || size === 0) return 'unsatisfiable';
    return { start: Math.max(0, size - suffix), end: size - 1 };
  }
  const start = Number(m[1]);
  const end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  // A range that ends before it starts is invalid (RFC 9110 §14.1.1): refused, not ignored.
  if (m[2] !== '' && Number(m[2]) < start) return 'unsatisfiable';
  if (start >= size) return 'unsatisfiable';
  return { start, end };
}

/** Reads a manifest body of at most `max` bytes; a longer one is refused without reading the rest. */
function readCapped(req: IncomingMessage, body: () => Readable, max: number): Promise<Buffer> {
  const declared = contentLength(req);
  if (declared !== undefined && declared > max) return Promise.reject(manifestTooLarge(declared, max));
  const stream = body();
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const done = (err?: unknown): void => {
      stream.off('data', onData);
      stream.off('end', onEnd);
      stream.off('error', onError);
      if (err) {
        stream.pause();
        reject(err);
      } else resolve(Buffer.concat(chunks, size));
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > max) return done(manifestTooLarge(size, max));
      chunks.push(c);
    };
    const onEnd = (): void => done();
    const onError = (err: Error): void => done(err);
    stream.on('data', onData);
    stream.on('end', onEnd);
    stream.on('error', onError);
  });
}

function manifestTooLarge(size: number, max: number): OciError {
  return new OciError('MANIFEST_INVALID', `the manifest is ${size} bytes or more, over the ${max}-byte limit`, { status: 413, detail: { limit: max } });
}

/**
 * Whatever of the body is still unread once the answer is out: drained (bounded), so that a keep-alive
 * connection stays usable; a body that will not end within the bound costs the connection instead.
 */
function settleBody(req: IncomingMessage, body: PassThrough | undefined): void {
  if (req.complete) return;
  const src: Readable = body ?? req;
  let left = DRAIN_MAX;
  src.on('data', (c: Buffer) => {
    left -= c.length;
    if (left < 0) req.destroy();
  });
  src.on('error', () => undefined);
  src.resume();
}

function checkDigest(digest: string): void {
  try {
    parseDigest(digest);
  } catch (err) {
    throw new OciError('DIGEST_INVALID', (err as Error).message, { detail: { digest: digest.slice(0, 200) } });
  }
}

function blobUnknown(name: string, digest: string): OciError {
  return new OciError('BLOB_UNKNOWN', `blob ${digest} is not in ${name}`, { detail: { name, digest } });
}

function sendJSON(res: ServerResponse, status: number, value: unknown, head: boolean): void {
  sendBytes(res, status, Buffer.from(JSON.stringify(value)), head);
}

function sendBytes(res: ServerResponse, status: number, bytes: Buffer, head: boolean): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(bytes.length) });
  res.end(head ? undefined : bytes);
}

/** `n` and `last`, checked before any listing is read. */
function pageQuery(query: URLSearchParams): { n?: number; last?: string } {
  const rawN = query.get('n');
  const last = query.get('last');
  let n: number | undefined;
  if (rawN !== null && rawN !== '') {
    if (!/^\d{1,9}$/.test(rawN)) throw new OciError('UNSUPPORTED', `n=${JSON.stringify(rawN.slice(0, 20))} is not a page size`, { status: 400 });
    n = Number(rawN);
  }
  return { ...(n !== undefined ? { n } : {}), ...(last !== null && last !== '' ? { last } : {}) };
}

/**
 * Items after `last` in lexical order, at most `n` of them, and the query of the next page when more
 * remain (the spec's Link header). No `n` means everything.
 */
function paginate(items: string[], { n, last }: { n?: number; last?: string }): { items: string[]; next?: string } {
  let rest = last !== undefined ? items.filter((t) => t > last) : items;
  if (n === undefined || rest.length <= n) return { items: rest };
  rest = rest.slice(0, n);
  const next = new URLSearchParams({ n: String(n), last: rest[rest.length - 1] ?? '' });
  return n === 0 ? { items: rest } : { items: rest, next: next.toString() };
}

/** URLs carry names and digests, never secrets; they are only bounded so that a huge one cannot flood the log. */
function shownUrl(url: string | undefined): string {
  return (url ?? '').slice(0, 512);
}

// ---------------------------------------------------------------- error mapping

/** Every refusal of the store, and every unexpected failure, as the distribution-spec error it is. */
export function toOciError(err: unknown, method: string): OciError {
  if (err instanceof OciError) return err;
  if (!(err instanceof LadingError)) {
    return new OciError('INTERNAL', 'internal error', { status: 500 });
  }
  const details = err.details ?? {};
  switch (storageReason(err)) {
    case 'name-invalid':
    case 'path-unsafe':
      return new OciError('NAME_INVALID', err.message);
    case 'tag-invalid':
      return method === 'GET' || method === 'HEAD' ? new OciError('MANIFEST_UNKNOWN', err.message) : new OciError('MANIFEST_INVALID', err.message);
    case 'digest-invalid':
      return new OciError('DIGEST_INVALID', err.message);
    case 'digest-mismatch':
      return new OciError('DIGEST_INVALID', err.message, { detail: { expected: details.expected, actual: details.actual } });
    case 'upload-unknown':
      return new OciError('BLOB_UPLOAD_UNKNOWN', err.message);
    case 'blob-unknown':
      return new OciError('BLOB_UNKNOWN', err.message);
    case 'manifest-unknown':
      return new OciError('MANIFEST_UNKNOWN', err.message);
    case 'manifest-blob-unknown':
      return new OciError('MANIFEST_BLOB_UNKNOWN', err.message, { detail: { missing: details.missing } });
    case 'offset-mismatch':
      return new OciError('BLOB_UPLOAD_INVALID', err.message, { status: 416, detail: { expected: details.expected } });
    case 'range-invalid':
      return new OciError('UNSUPPORTED', err.message, { status: 416, ...(typeof details.size === 'number' ? { headers: { 'content-range': `bytes */${details.size}` } } : {}) });
    case 'too-large':
      return new OciError('SIZE_INVALID', err.message, { status: 413, detail: { limit: details.limit } });
    case 'size-mismatch':
      return new OciError('SIZE_INVALID', err.message);
    case 'not-found':
      return new OciError('NAME_UNKNOWN', err.message);
    default:
      break;
  }
  switch (err.code) {
    case 'E_MANIFEST_TOO_LARGE':
      return new OciError('MANIFEST_INVALID', err.message, { status: 413 });
    case 'E_MANIFEST_INVALID':
    case 'E_JSON_INVALID':
      return new OciError('MANIFEST_INVALID', err.message);
    case 'E_MEDIA_TYPE_UNSUPPORTED':
      return new OciError('MANIFEST_INVALID', err.message, { detail: { reason: 'unsupported media type' } });
    case 'E_DIGEST_INVALID':
      return new OciError('DIGEST_INVALID', err.message);
    case 'E_REFERENCE_INVALID':
      return new OciError('NAME_INVALID', err.message);
    case 'E_SIZE_MISMATCH':
      return new OciError('SIZE_INVALID', err.message);
    case 'E_UNAUTHORIZED':
      return new OciError('UNAUTHORIZED', err.message);
    case 'E_DENIED':
      return new OciError('DENIED', err.message);
    default:
      return new OciError('INTERNAL', 'internal error', { status: 500 });
  }
}
