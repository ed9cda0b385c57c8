import { createHash, randomUUID } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A registry on 127.0.0.1:0 that speaks just enough of distribution-spec 1.1 for fault tests, and whose
 * answer to each request can be scripted: truncated or corrupted bodies, dropped connections, error
 * statuses, ignored Range headers, endless manifests, redirects. It records every request it receives.
 *
 * Content is kept in memory by digest; repository names only matter for manifests.
 */

export type Fault =
  /** Answer with this status (and optional Retry-After, headers, body) instead of the real answer. */
  | { kind: 'status'; status: number; retryAfter?: string; headers?: Record<string, string>; body?: string }
  /** Announce the full Content-Length, send only `bytes` of the body, then close the connection cleanly. */
  | { kind: 'truncate'; bytes: number }
  /** Send only `bytes` of the body, with a Content-Length (and Content-Range) that agree with that. */
  | { kind: 'short'; bytes: number }
  /** Same length, one byte changed. */
  | { kind: 'wrongBytes' }
  /**
   * Responses: send `bytes` of the body, then destroy the socket. Request bodies (PATCH/PUT uploads): keep
   * the first `bytes` received, then destroy the socket.
   */
  | { kind: 'drop'; bytes: number }
  /** Answer a Range request with 200 and the whole body. */
  | { kind: 'ignoreRange' }
  /** Answer a Range request with 206 but the whole body, labelled `bytes 0-…` (not what was asked). */
  | { kind: 'wrongRange' }
  /** HEAD: 200 with a Content-Type only. GET: a manifest-typed body that never ends (until `cap`). */
  | { kind: 'endless' }
  /** 307 (or `status`) to `location`. */
  | { kind: 'redirect'; location: string; status?: number };

export const Faults = {
  status: (status: number, opts: { retryAfter?: string; headers?: Record<string, string>; body?: string } = {}): Fault => ({
    kind: 'status',
    status,
    ...opts,
  }),
  truncate: (bytes: number): Fault => ({ kind: 'truncate', bytes }),
  short: (bytes: number): Fault => ({ kind: 'short', bytes }),
  wrongBytes: (): Fault => ({ kind: 'wrongBytes' }),
  drop: (bytes: number): Fault => ({ kind: 'drop', bytes }),
  ignoreRange: (): Fault => ({ kind: 'ignoreRange' }),
  wrongRange: (): Fault => ({ kind: 'wrongRange' }),
  endless: (): Fault => ({ kind: 'endless' }),
  redirect: (location: string, status = 307): Fault => ({ kind: 'redirect', location, status }),
};

export interface FaultMatch {
  method?: string;
  /** The request path without query: an exact string or a pattern. */
  path?: string | RegExp;
  /** How many matching requests get the fault (default 1; Infinity for all). */
  times?: number;
  /** Matching requests to let through untouched before the fault applies (default 0). */
  after?: number;
}

interface Rule {
  match: FaultMatch;
  fault: Fault;
  skip: number;
  left: number;
}

export interface RecordedRequest {
  method: string;
  /** Path without query. */
  path: string;
  /** Path with query. */
  url: string;
  headers: IncomingHttpHeaders;
  /** The fault applied, if any. */
  fault?: Fault['kind'];
  /** Request body bytes the server read (uploads). */
  bodyBytes: number;
  /** Status sent, when headers went out. */
  status?: number;
  /**
   * Settles when the exchange is over: `complete` is true when the whole response went out, false when the
   * connection closed first (the client hung up, or the server dropped it).
   */
  closed: Promise<{ complete: boolean }>;
  /** For content bodies: whether the server got to the end of the body before the connection closed. */
  bodyComplete?: boolean;
}

export interface EndlessResult {
  written: number;
  /** True when the client closed the connection, false when the server reached its cap. */
  closedByClient: boolean;
}

export interface FaultServerOptions {
  /** Require HTTP Basic on every /v2/ request; answer 401 with a Basic challenge otherwise. */
  basicAuth?: { username: string; password: string };
  /** Upper bound of bytes an endless body writes before giving up (default 256 MiB). */
  endlessCap?: number;
}

interface Upload {
  name: string;
  parts: Buffer[];
  size: number;
}

const MANIFEST_RE = /^\/v2\/(.+)\/manifests\/([^/]+)$/;
const UPLOADS_RE = /^\/v2\/(.+)\/blobs\/uploads\/([^/]*)$/;
const BLOB_RE = /^\/v2\/(.+)\/blobs\/([^/]+)$/;
const DIRECT_RE = /^\/direct\/([^/]+)$/;
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

export class FaultServer {
  readonly requests: RecordedRequest[] = [];
  /** Blobs by digest: those added by the test and those uploads completed. */
  readonly blobs = new Map<string, Buffer>();
  /** Finished endless bodies, in order. */
  readonly endless: Promise<EndlessResult>[] = [];
  host = '';
  url = '';
  private readonly manifests = new Map<string, { bytes: Buffer; mediaType: string; digest: string }>();
  private readonly uploads = new Map<string, Upload>();
  private readonly rules: Rule[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly server: Server;
  private readonly opts: FaultServerOptions;

  private constructor(opts: FaultServerOptions) {
    this.opts = opts;
    this.server = createServer({ keepAliveTimeout: 30_000 }, (req, res) => this.handle(req, res));
    this.server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
    });
    this.server.on('clientError', (_err, socket) => socket.destroy());
  }

  static async start(opts: FaultServerOptions = {}): Promise<FaultServer> {
    const s = new FaultServer(opts);
    await new Promise<void>((resolve, reject) => {
      s.server.once('error', reject);
      s.server.listen(0, '127.0.0.1', () => resolve());
    });
    const port = (s.server.address() as AddressInfo).port;
    s.host = `127.0.0.1:${port}`;
    s.url = `http://${s.host}`;
    return s;
  }

  addBlob(bytes: Buffer): { digest: string; size: number } {
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    return { digest, size: bytes.length };
  }

  /** Stores a manifest under its digest and the given tags; returns its digest. */
  addManifest(name: string, bytes: Buffer, mediaType: string, tags: string[] = []): string {
    const digest = sha256(bytes);
    const entry = { bytes, mediaType, digest };
    this.manifests.set(`${name}@${digest}`, entry);
    for (const t of tags) this.manifests.set(`${name}@${t}`, entry);
    return digest;
  }

  inject(match: FaultMatch, fault: Fault): void {
    this.rules.push({ match, fault, skip: match.after ?? 0, left: match.times ?? 1 });
  }

  requestsTo(method: string, path: string | RegExp): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && matches(path, r.path));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pickFault(method: string, path: string): Fault | undefined {
    for (const rule of this.rules) {
      if (rule.left <= 0) continue;
      if (rule.match.method && rule.match.method !== method) continue;
      if (rule.match.path !== undefined && !matches(rule.match.path, path)) continue;
      if (rule.skip > 0) {
        rule.skip--;
        return undefined;
      }
      rule.left--;
      return rule.fault;
    }
    return undefined;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x');
    const path = decodeURIComponent(url.pathname);
    let settle: (v: { complete: boolean }) => void = () => undefined;
    const closed = new Promise<{ complete: boolean }>((resolve) => (settle = resolve));
    const rec: RecordedRequest = { method: req.method ?? '', path, url: `${url.pathname}${url.search}`, headers: { ...req.headers }, bodyBytes: 0, closed };
    this.requests.push(rec);
    res.on('close', () => {
      if (res.headersSent) rec.status = res.statusCode;
      settle({ complete: rec.bodyComplete ?? res.writableFinished });
    });

    if (path.startsWith('/v2/') && this.opts.basicAuth) {
      const { username, password } = this.opts.basicAuth;
      const want = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
      if (req.headers.authorization !== want) {
        drain(req, rec, () => {
          sendJson(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: 'authentication required' }] }, {
            'www-authenticate': 'Basic realm="fault-server"',
          });
        });
        return;
      }
    }

    const fault = this.pickFault(rec.method, path);
    if (fault) rec.fault = fault.kind;
    if (fault?.kind === 'status') {
      drain(req, rec, () => {
        const headers: Record<string, string> = { ...fault.headers };
        if (fault.retryAfter !== undefined) headers['retry-after'] = fault.retryAfter;
        const body = fault.body ?? JSON.stringify({ errors: [{ code: 'UNKNOWN', message: `injected ${fault.status}` }] });
        res.writeHead(fault.status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers });
        res.end(req.method === 'HEAD' ? undefined : body);
      });
      return;
    }
    if (fault?.kind === 'redirect') {
      drain(req, rec, () => {
        res.writeHead(fault.status ?? 307, { location: fault.location, 'content-length': '0' });
        res.end();
      });
      return;
    }

    let m: RegExpExecArray | null;
    if (path === '/v2/' || path === '/v2') {
      drain(req, rec, () => sendJson(res, 200, {}));
    } else if ((m = UPLOADS_RE.exec(path))) {
      this.upload(req, res, rec, m[1]!, m[2]!, url, fault);
    } else if ((m = MANIFEST_RE.exec(path))) {
      this.manifest(req, res, rec, m[1]!, m[2]!, fault);
    } else if ((m = BLOB_RE.exec(path))) {
      this.blob(req, res, rec, m[2]!, fault);
    } else if ((m = DIRECT_RE.exec(path))) {
      this.blob(req, res, rec, m[1]!, fault);
    } else {
      drain(req, rec, () => sendJson(res, 404, { errors: [{ code: 'UNSUPPORTED', message: 'no such route' }] }));
    }
  }

  private manifest(req: IncomingMessage, res: ServerResponse, rec: RecordedRequest, name: string, ref: string, fault: Fault | undefined): void {
    if (req.method === 'PUT') {
      readAll(req, rec, (body) => {
        const mediaType = String(req.headers['content-type'] ?? OCI_MANIFEST);
        const digest = this.addManifest(name, body, mediaType, ref.includes(':') ? [] : [ref]);
        res.writeHead(201, { location: `/v2/${name}/manifests/${digest}`, 'docker-content-digest': digest, 'content-length': '0' });
        res.end();
      });
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      drain(req, rec, () => sendJson(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] }));
      return;
    }
    if (fault?.kind === 'endless') {
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-type': OCI_MANIFEST });
        res.end();
        return;
      }
      this.endless.push(streamEndless(res, this.opts.endlessCap ?? 256 * 1024 * 1024));
      return;
    }
    const entry = this.manifests.get(`${name}@${ref}`);
    if (!entry) {
      sendJson(res, 404, { errors: [{ code: 'MANIFEST_UNKNOWN', message: `manifest ${ref} unknown` }] }, {}, req.method === 'HEAD');
      return;
    }
    serveContent(req, res, rec, entry.bytes, { 'content-type': entry.mediaType, 'docker-content-digest': entry.digest }, fault);
  }

  private blob(req: IncomingMessage, res: ServerResponse, rec: RecordedRequest, digest: string, fault: Fault | undefined): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      drain(req, rec, () => sendJson(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] }));
      return;
    }
    const bytes = this.blobs.get(digest);
    if (!bytes) {
      sendJson(res, 404, { errors: [{ code: 'BLOB_UNKNOWN', message: `blob ${digest} unknown` }] }, {}, req.method === 'HEAD');
      return;
    }
    serveContent(req, res, rec, bytes, { 'content-type': 'application/octet-stream', 'docker-content-digest': digest }, fault);
  }

  private upload(req: IncomingMessage, res: ServerResponse, rec: RecordedRequest, name: string, id: string, url: URL, fault: Fault | undefined): void {
    const method = req.method;
    if (method === 'POST' && id === '') {
      drain(req, rec, () => {
        const uuid = randomUUID();
        this.uploads.set(uuid, { name, parts: [], size: 0 });
        res.writeHead(202, { location: `/v2/${name}/blobs/uploads/${uuid}`, range: '0-0', 'docker-upload-uuid': uuid, 'content-length': '0' });
        res.end();
      });
      return;
    }
    const upload = this.uploads.get(id);
    if (!upload || upload.name !== name) {
      drain(req, rec, () => sendJson(res, 404, { errors: [{ code: 'BLOB_UPLOAD_UNKNOWN', message: 'upload unknown' }] }, {}, method === 'HEAD'));
      return;
    }
    const location = `/v2/${name}/blobs/uploads/${id}`;
    const progress = (): Record<string, string> => ({
      location,
      range: `0-${Math.max(0, upload.size - 1)}`,
      'docker-upload-uuid': id,
      'content-length': '0',
    });

    if (method === 'GET') {
      drain(req, rec, () => {
        res.writeHead(204, progress());
        res.end();
      });
      return;
    }
    if (method === 'DELETE') {
      drain(req, rec, () => {
        this.uploads.delete(id);
        res.writeHead(204, { 'content-length': '0' });
        res.end();
      });
      return;
    }
    if (method === 'PATCH' || method === 'PUT') {
      const range = req.headers['content-range'];
      if (method === 'PATCH' && range !== undefined) {
        const m = /^(\d+)-(\d+)$/.exec(String(range));
        if (!m || Number(m[1]) !== upload.size) {
          drain(req, rec, () => {
            res.writeHead(416, progress());
            res.end();
          });
          return;
        }
      }
      if (fault?.kind === 'drop') {
        dropRequestBody(req, rec, fault.bytes, (kept) => {
          upload.parts.push(kept);
          upload.size += kept.length;
        });
        return;
      }
      readAll(req, rec, (body) => {
        if (body.length > 0) {
          upload.parts.push(body);
          upload.size += body.length;
        }
        if (method === 'PATCH') {
          res.writeHead(202, progress());
          res.end();
          return;
        }
        const digest = url.searchParams.get('digest') ?? '';
        const data = Buffer.concat(upload.parts, upload.size);
        if (sha256(data) !== digest) {
          sendJson(res, 400, { errors: [{ code: 'DIGEST_INVALID', message: `content hashes to ${sha256(data)}, not ${digest}` }] });
          return;
        }
        this.uploads.delete(id);
        this.blobs.set(digest, data);
        res.writeHead(201, { location: `/v2/${name}/blobs/${digest}`, 'docker-content-digest': digest, 'content-length': '0' });
        res.end();
      });
      return;
    }
    drain(req, rec, () => sendJson(res, 405, { errors: [{ code: 'UNSUPPORTED', message: 'method not allowed' }] }));
  }
}

function matches(pattern: string | RegExp, path: string): boolean {
  return typeof pattern === 'string' ? pattern === path : pattern.test(path);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}, head = false): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(head ? undefined : body);
}

function drain(req: IncomingMessage, rec: RecordedRequest, then: () => void): void {
  readAll(req, rec, () => then());
}

function readAll(req: IncomingMessage, rec: RecordedRequest, then: (body: Buffer) => void): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => {
    chunks.push(c);
    rec.bodyBytes += c.length;
  });
  req.on('end', () => then(Buffer.concat(chunks)));
  req.on('error', () => undefined);
}

/** Keeps the first `keep` bytes of the request body, then destroys the connection. */
function dropRequestBody(req: IncomingMessage, rec: RecordedRequest, keep: number, store: (kept: Buffer) => void): void {
  const parts: Buffer[] = [];
  let got = 0;
  let done = false;
  const finish = (): void => {
    if (done) return;
    done = true;
    store(Buffer.concat(parts, got));
    req.socket.destroy();
  };
  req.on('data', (c: Buffer) => {
    if (done) return;
    const take = Math.min(keep - got, c.length);
    parts.push(c.subarray(0, take));
    got += take;
    rec.bodyBytes = got;
    if (got >= keep) finish();
  });
  req.on('end', finish);
  req.on('error', () => undefined);
}

/**
 * Serves `full` for GET/HEAD, honouring `Range: bytes=N-` (and `N-M`) with 206, with the body faults
 * applied.
 */
function serveContent(
  req: IncomingMessage,
  res: ServerResponse,
  rec: RecordedRequest,
  full: Buffer,
  headers: Record<string, string>,
  fault: Fault | undefined,
): void {
  let content = full;
  if (fault?.kind === 'wrongBytes' && full.length > 0) {
    content = Buffer.from(full);
    const at = Math.floor(full.length / 2);
    content[at] = content[at]! ^ 0x01;
  }
  let status = 200;
  let start = 0;
  let end = content.length - 1;
  const range = req.headers.range;
  if (range !== undefined && fault?.kind === 'wrongRange') {
    status = 206;
  } else if (range !== undefined && fault?.kind !== 'ignoreRange') {
    const m = /^bytes=(\d+)-(\d*)$/.exec(String(range));
    if (!m || Number(m[1]) >= content.length) {
      res.writeHead(416, { 'content-range': `bytes */${content.length}`, 'content-length': '0' });
      res.end();
      return;
    }
    start = Number(m[1]);
    if (m[2]) end = Math.min(end, Number(m[2]));
    status = 206;
  }
  let body = content.subarray(start, end + 1);
  if (fault?.kind === 'short') {
    body = body.subarray(0, Math.min(body.length, fault.bytes));
    end = start + body.length - 1;
  }
  const out: Record<string, string> = { ...headers, 'content-length': String(body.length), 'accept-ranges': 'bytes' };
  if (status === 206) out['content-range'] = `bytes ${start}-${end}/${content.length}`;
  res.writeHead(status, out);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  if (fault?.kind === 'truncate' || fault?.kind === 'drop') {
    const part = body.subarray(0, Math.min(body.length - 1, fault.bytes));
    const socket = req.socket;
    const cut = fault.kind === 'drop' ? () => socket.destroy() : () => socket.end();
    if (part.length === 0) {
      res.flushHeaders();
      cut();
      return;
    }
    rec.bodyComplete = false;
    res.write(part, cut);
    return;
  }
  sendBody(res, rec, body);
}

/**
 * Writes `body` in pieces, waiting for the socket to drain between them, so that a client that stops
 * reading stops the server too; `rec.bodyComplete` tells whether the end was reached.
 */
function sendBody(res: ServerResponse, rec: RecordedRequest, body: Buffer): void {
  const piece = 64 * 1024;
  let at = 0;
  let closed = false;
  rec.bodyComplete = false;
  res.on('close', () => {
    closed = true;
  });
  const pump = (): void => {
    // `at` grows every iteration, so each turn ends at the body's end or at the first push-back.
    while (!closed && at < body.length) {
      const next = body.subarray(at, at + piece);
      at += next.length;
      if (!res.write(next)) {
        res.once('drain', pump);
        return;
      }
    }
    if (!closed) {
      rec.bodyComplete = true;
      res.end();
    }
  };
  pump();
}

/** A manifest-typed body that goes on until the client hangs up or `cap` bytes are written. */
function streamEndless(res: ServerResponse, cap: number): Promise<EndlessResult> {
  return new Promise<EndlessResult>((resolve) => {
    let written = 0;
    let closed = false;
    res.on('close', () => {
      closed = true;
      if (!res.writableFinished) resolve({ written, closedByClient: true });
    });
    res.writeHead(200, { 'content-type': OCI_MANIFEST });
    const head = Buffer.from(`{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","annotations":{"padding":"`);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    res.write(head);
    written += head.length;
    const pump = (): void => {
      // Each turn writes until the socket pushes back; `written` grows every iteration, so the loop ends.
      while (!closed && written < cap) {
        written += chunk.length;
        if (!res.write(chunk)) {
          res.once('drain', pump);
          return;
        }
      }
      if (!closed) {
        res.end('"}}', () => resolve({ written, closedByClient: false }));
      }
    };
    pump();
  });
}
