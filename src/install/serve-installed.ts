/**
 * Serving installed content: `GET /<name>/<version>/<path>` answers the file
 * `<root>/pkgs/<name>/<version>/<path>` as it was installed, with immutable caching and an ETag taken from
 * the digest in `<root>/pkgs/<name>/.files/<version>.json`.
 *
 * The file index is the authority on what may be served: a path it does not list is not served, even when a
 * file of that name is on disk. Requests never leave the version directory: the target is decoded exactly
 * once and segment by segment, `.`/`..`/empty segments, NUL and backslashes are refused, and the real path
 * of the file (after symlinks) must still lie inside the real path of the version directory. Answers never
 * name a file system path.
 */
import { constants as fsConstants } from 'node:fs';
import { lstat, open, readFile, realpath, stat, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream';
import type { Logger } from 'pino';
import { LadingError } from '../errors.js';

export type InstalledHandler = (req: IncomingMessage, res: ServerResponse) => void;

export interface InstalledHandlerOptions {
  /** Where each request is logged (method, url, status, ms) and unexpected failures are reported. */
  logger?: Logger;
}

/** Longest request target answered; longer ones get 414. */
export const MAX_URL_BYTES = 8 * 1024;
/** Largest file index read (a 20,000-file artifact has an index of a few MiB). */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;
const INDEX_CACHE_ENTRIES = 64;

const SEGMENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
const DIGEST = /^sha256:([0-9a-f]{64})$/;
const CACHE_CONTROL = 'public, max-age=31536000, immutable';
const ALLOW = 'GET, HEAD';

const TEXT = '; charset=utf-8';
const CONTENT_TYPES: Record<string, string> = {
  html: `text/html${TEXT}`,
  htm: `text/html${TEXT}`,
  css: `text/css${TEXT}`,
  js: `text/javascript${TEXT}`,
  mjs: `text/javascript${TEXT}`,
  cjs: `text/javascript${TEXT}`,
  map: `application/json${TEXT}`,
  json: `application/json${TEXT}`,
  jsonld: `application/ld+json${TEXT}`,
  webmanifest: `application/manifest+json${TEXT}`,
  txt: `text/plain${TEXT}`,
  text: `text/plain${TEXT}`,
  log: `text/plain${TEXT}`,
  md: `text/markdown${TEXT}`,
  markdown: `text/markdown${TEXT}`,
  csv: `text/csv${TEXT}`,
  tsv: `text/tab-separated-values${TEXT}`,
  xml: `application/xml${TEXT}`,
  svg: `image/svg+xml${TEXT}`,
  yaml: `application/yaml${TEXT}`,
  yml: `application/yaml${TEXT}`,
  toml: `application/toml${TEXT}`,
  sh: `text/x-shellscript${TEXT}`,
  png: 'image/png',
  jpg: 'image/jpeg',
  jpeg: 'image/jpeg',
  gif: 'image/gif',
  webp: 'image/webp',
  avif: 'image/avif',
  ico: 'image/vnd.microsoft.icon',
  bmp: 'image/bmp',
  wasm: 'application/wasm',
  pdf: 'application/pdf',
  woff: 'font/woff',
  woff2: 'font/woff2',
  ttf: 'font/ttf',
  otf: 'font/otf',
  mp3: 'audio/mpeg',
  ogg: 'audio/ogg',
  wav: 'audio/wav',
  mp4: 'video/mp4',
  webm: 'video/webm',
  zip: 'application/zip',
  tar: 'application/x-tar',
  gz: 'application/gzip',
  tgz: 'application/gzip',
  zst: 'application/zstd',
  xz: 'application/x-xz',
  bz2: 'application/x-bzip2',
};

/** The Content-Type served for a file name: by its extension, `application/octet-stream` when unknown. */
export function contentTypeFor(fileName: string): string {
  const dot = fileName.lastIndexOf('.');
  if (dot <= 0 || dot === fileName.length - 1) return 'application/octet-stream';
  return CONTENT_TYPES[fileName.slice(dot + 1).toLowerCase()] ?? 'application/octet-stream';
}

/** Why a request is not answered with a file: only a status and a fixed phrase ever reach the client. */
class Refusal {
  constructor(readonly status: number, readonly phrase: string) {}
}
const NOT_FOUND = new Refusal(404, 'not found');
const BAD_REQUEST = new Refusal(400, 'bad request');

interface IndexEntry {
  hex: string;
  size: number;
}
interface CachedIndex {
  key: string;
  files: Map<string, IndexEntry>;
}

/**
 * A request handler (node:http) serving `<root>/pkgs/<name>/<version>/<path>` at `/<name>/<version>/<path>`.
 * GET and HEAD only (405 otherwise), 404 for anything that is not an indexed regular file inside the version
 * directory, 304 when If-None-Match matches the ETag.
 */
export function createInstalledHandler(root: string, opts: InstalledHandlerOptions = {}): InstalledHandler {
  const pkgs = resolve(root, 'pkgs');
  const log = opts.logger;
  const indexes = new Map<string, CachedIndex>();

  return (req, res) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      log?.info({ method: req.method, url: shownUrl(req.url), status: res.statusCode, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'request');
    });
    serve(req, res).catch((err: unknown) => {
      log?.error({ err: errorSummary(err), method: req.method, url: shownUrl(req.url) }, 'request failed');
      refuse(req, res, new Refusal(500, 'internal error'));
    });
  };

  async function serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = req.url ?? '';
    if (Buffer.byteLength(url) > MAX_URL_BYTES) return refuse(req, res, new Refusal(414, 'uri too long'));
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('allow', ALLOW);
      return refuse(req, res, new Refusal(405, 'method not allowed'));
    }
    const target = parseTarget(url);
    if (target instanceof Refusal) return refuse(req, res, target);
    const { name, version, rel } = target;

    const index = await readIndex(name, version);
    const entry = index?.get(rel);
    if (!entry) return refuse(req, res, NOT_FOUND);

    const file = await openInside(join(pkgs, name, version), rel);
    if (!file) return refuse(req, res, NOT_FOUND);
    const { fh, size } = file;
    let handedOver = false;
    try {
      // What is on disk is no longer what was installed: its ETag would lie.
      if (size !== entry.size) throw new Error('installed file differs in size from its index entry');
      const etag = `"${entry.hex}"`;
      res.setHeader('etag', etag);
      res.setHeader('cache-control', CACHE_CONTROL);
      res.setHeader('x-content-type-options', 'nosniff');
      if (matchesNoneMatch(req.headers['if-none-match'], etag)) {
        res.statusCode = 304;
        res.end();
        return;
      }
      res.statusCode = 200;
      res.setHeader('content-type', contentTypeFor(rel.slice(rel.lastIndexOf('/') + 1)));
      res.setHeader('content-length', String(size));
      if (method === 'HEAD' || size === 0) {
        res.end();
        return;
      }
      const body = fh.createReadStream({ start: 0, end: size - 1, autoClose: true, highWaterMark: 64 * 1024 });
      handedOver = true;
      pipeline(body, res, (err) => {
        // A client that goes away mid-body is not a server failure; the stream (and the file) are closed by pipeline.
        if (err && res.writableFinished === false && !res.destroyed) res.destroy();
      });
    } finally {
      if (!handedOver) await fh.close();
    }
  }

  /** The file index of name@version as a Map (cached while the index file is unchanged), or undefined. */
  async function readIndex(name: string, version: string): Promise<Map<string, IndexEntry> | undefined> {
    const path = join(pkgs, name, '.files', `${version}.json`);
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    if (!st.isFile() || st.size > MAX_INDEX_BYTES) return undefined;
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
    const cacheKey = `${name}/${version}`;
    const cached = indexes.get(cacheKey);
    if (cached && cached.key === key) {
      // Most recently used last.
      indexes.delete(cacheKey);
      indexes.set(cacheKey, cached);
      return cached.files;
    }
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if (isMissing(err)) return undefined;
      throw err;
    }
    const files = parseIndex(text);
    indexes.delete(cacheKey);
    indexes.set(cacheKey, { key, files });
    while (indexes.size > INDEX_CACHE_ENTRIES) indexes.delete(indexes.keys().next().value as string);
    return files;
  }
}

/** `/<name>/<version>/<path...>` from an origin-form request target, decoded once, or why it is refused. */
function parseTarget(url: string): { name: string; version: string; rel: string } | Refusal {
  // Origin-form only: absolute-form (`http://host/...`), authority-form and `*` are not paths here.
  if (!url.startsWith('/')) return BAD_REQUEST;
  const q = url.indexOf('?');
  const rawPath = q >= 0 ? url.slice(0, q) : url;
  // Split before decoding, so that an encoded `/` (%2f) stays inside its segment, where it is refused.
  const raw = rawPath.slice(1).split('/');
  const segments: string[] = [];
  for (const r of raw) {
    let s: string;
    try {
      s = decodeURIComponent(r);
    } catch {
      return BAD_REQUEST;
    }
    if (!safeSegment(s)) return NOT_FOUND;
    segments.push(s);
  }
  if (segments.length < 3) return NOT_FOUND;
  const [name, version, ...rest] = segments as [string, string, ...string[]];
  if (!SEGMENT_NAME.test(name) || !SEGMENT_NAME.test(version) || version === 'current') return NOT_FOUND;
  return { name, version, rel: rest.join('/') };
}

function safeSegment(s: string): boolean {
  if (s === '' || s === '.' || s === '..') return false;
  // Separators of any platform, NUL and other control characters never name an installed file.
  // eslint-disable-next-line no-control-regex
  return !/[/\\\u0000-\u001f\u007f]/.test(s);
}

/**
 * Opens `<versionDir>/<rel>` when it is a regular file whose real path lies inside the real path of
 * versionDir; undefined when it is missing, not a regular file, or leads elsewhere.
 */
async function openInside(versionDir: string, rel: string): Promise<{ fh: FileHandle; size: number } | undefined> {
  let realDir: string;
  let realFile: string;
  try {
    // The version directory is a directory of its own, never a link (`current` is the only link in pkgs/<name>).
    if (!(await lstat(versionDir)).isDirectory()) return undefined;
    realDir = await realpath(versionDir);
    realFile = await realpath(join(versionDir, ...rel.split('/')));
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
  if (!realFile.startsWith(realDir + sep)) return undefined;
  let fh: FileHandle;
  try {
    // NOFOLLOW: a symlink swapped in after realpath is not followed.
    fh = await open(realFile, fsConstants.O_RDONLY | (fsConstants.O_NOFOLLOW ?? 0));
  } catch (err) {
    if (isMissing(err) || (err as NodeJS.ErrnoException).code === 'ELOOP') return undefined;
    throw err;
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      await fh.close();
      return undefined;
    }
    return { fh, size: st.size };
  } catch (err) {
    await fh.close();
    throw err;
  }
}

function parseIndex(text: string): Map<string, IndexEntry> {
  const files = new Map<string, IndexEntry>();
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw new LadingError('E_INSTALL_STATE_INVALID', 'a file index of the install root is not JSON');
  }
  const listed = (doc as { files?: unknown } | null)?.files;
  if (typeof listed !== 'object' || listed === null || Array.isArray(listed)) {
    throw new LadingError('E_INSTALL_STATE_INVALID', 'a file index of the install root has no "files" object');
  }
  for (const [rel, value] of Object.entries(listed as Record<string, unknown>)) {
    const v = value as { digest?: unknown; size?: unknown } | null;
    const m = typeof v?.digest === 'string' ? DIGEST.exec(v.digest) : null;
    const size = v?.size;
    // Entries that are not a plain relative path with a sha256 digest are never served.
    if (!m || typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) continue;
    if (!rel.split('/').every(safeSegment)) continue;
    files.set(rel, { hex: m[1]!, size });
  }
  return files;
}

/** If-None-Match: `*`, or a list of (possibly weak) entity tags, compared weakly as RFC 9110 wants for GET/HEAD. */
export function matchesNoneMatch(header: string | string[] | undefined, etag: string): boolean {
  if (header === undefined) return false;
  const value = Array.isArray(header) ? header.join(',') : header;
  for (const part of value.split(',')) {
    const t = part.trim();
    if (t === '*') return true;
    const tag = t.startsWith('W/') ? t.slice(2) : t;
    if (tag === etag) return true;
  }
  return false;
}

function refuse(req: IncomingMessage, res: ServerResponse, r: Refusal): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = `${r.phrase}\n`;
  res.statusCode = r.status;
  res.setHeader('content-type', `text/plain${TEXT}`);
  res.setHeader('content-length', String(Buffer.byteLength(body)));
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('cache-control', 'no-store');
  // Bodies of refused requests are not read; the connection is not reused while one is still arriving.
  if (!req.complete && req.headers['content-length'] !== '0' && (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined)) {
    res.setHeader('connection', 'close');
  }
  res.end(req.method === 'HEAD' ? undefined : body);
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG' || code === 'EACCES' || code === 'ELOOP';
}

/** Logged without file system paths: the code and a message with any absolute path blanked out. */
function errorSummary(err: unknown): { code?: string; message: string } {
  const e = err as { code?: unknown; message?: unknown } | undefined;
  const message = String(e?.message ?? err).replace(/(?:[A-Za-z]:)?[\\/][^\s'",]*/g, '<path>');
  return typeof e?.code === 'string' ? { code: e.code, message } : { message };
}

/** URLs are only bounded so that a huge one cannot flood the log. */
function shownUrl(url: string | undefined): string {
  return (url ?? '').slice(0, 512);
}

// ---------------------------------------------------------------- a server around the handler

export interface StartInstalledServerOptions {
  /** The install root (`<root>/pkgs/...`). */
  root: string;
  /** Interface to listen on (default 127.0.0.1). */
  host?: string;
  /** 0 (the default) lets the OS pick a free port. */
  port?: number;
  logger?: Logger;
  /** How long close() lets in-flight requests run before cutting them off (default 10 s). */
  closeGraceMs?: number;
}

export interface RunningInstalledServer {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>` */
  host: string;
  root: string;
  close(): Promise<void>;
}

/** Listens with createInstalledHandler(root); close() ends gracefully, like the registry's. */
export async function startInstalledServer(opts: StartInstalledServerOptions): Promise<RunningInstalledServer> {
  const root = resolve(opts.root);
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new LadingError('E_USAGE', `port ${port} is not 0-65535`);
  let st;
  try {
    st = await stat(root);
  } catch {
    st = undefined;
  }
  if (!st?.isDirectory()) {
    throw new LadingError('E_USAGE', `the install root ${root} is not a directory`, { hint: 'install something there first with lading install --root DIR' });
  }
  const logger = opts.logger;
  const handler = createInstalledHandler(root, logger ? { logger } : {});

  let closing = false;
  const server = createServer({ requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 5_000 }, (req, res) => {
    if (closing) res.setHeader('connection', 'close');
    res.on('finish', () => {
      if (closing) setImmediate(() => server.closeIdleConnections());
    });
    handler(req, res);
  });
  server.setTimeout(120_000, (socket: Socket) => socket.destroy());
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((done, fail) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      fail(new LadingError('E_IO', `cannot listen on ${host}:${port}: ${err.message}`, {
        hint: err.code === 'EADDRINUSE' ? 'another process uses that port; pick another with --addr' : undefined,
        cause: err,
      }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      done();
    });
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new LadingError('E_IO', 'the server has no TCP address');
  const hostPort = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  logger?.info({ url: `http://${hostPort}`, root }, 'serving installed content');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((done) => {
      closing = true;
      const grace = setTimeout(() => server.closeAllConnections(), opts.closeGraceMs ?? 10_000);
      grace.unref();
      server.close(() => {
        clearTimeout(grace);
        logger?.info('installed content server closed');
        done();
      });
      server.closeIdleConnections();
    });
    return closed;
  };
  return { url: `http://${hostPort}`, host: hostPort, root, close };
}
