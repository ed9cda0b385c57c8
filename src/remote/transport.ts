import { isIP } from 'node:net';
import type { Readable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import { Agent, EnvHttpProxyAgent, request, type Dispatcher } from 'undici';
import { LadingError, type ErrorCode } from '../errors.js';
import { apiHost } from '../oci/reference.js';
import type { Authorizer } from './auth/authorizer.js';
import { readErrorBody, registryError } from './errors.js';

export interface RetryPolicy {
  /** Total attempts of one replayable request, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
  /** A Retry-After longer than this is not waited for: the request fails with E_TOO_MANY_REQUESTS. */
  maxRetryAfterMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseDelayMs: 250, maxDelayMs: 8000, maxRetryAfterMs: 60_000 };

export interface TransportOptions {
  authorizer?: Authorizer;
  /** Hosts (host or host:port) to reach over plain HTTP besides loopback ones; `true` for every host. */
  plainHttp?: boolean | string[];
  retry?: Partial<RetryPolicy>;
  userAgent?: string;
  dispatcher?: Dispatcher;
}

export interface TransportRequest {
  registry: string;
  method: 'GET' | 'HEAD' | 'PUT' | 'POST' | 'PATCH' | 'DELETE';
  /** A path beginning with `/v2/`, or an absolute URL (upload locations, redirects). */
  path: string;
  headers?: Record<string, string>;
  /** A stream body is sent once and never replayed; a Buffer body may be replayed. */
  body?: Buffer | Readable;
  /** Token scopes the request needs, such as `repository:foo:pull`. */
  scopes: string[];
  /**
   * Whether sending the request again cannot do harm. GET/HEAD/PUT/DELETE with a Buffer body are replayable
   * by nature; a POST opening an upload session is replayable (an orphan session is harmless).
   */
  replayable?: boolean;
  signal?: AbortSignal;
}

export type TransportResponse = Dispatcher.ResponseData;

const RETRY_STATUS = new Set([408, 429, 500, 502, 503, 504]);
const NETWORK_CODES = new Set([
  'ECONNRESET',
  'ECONNREFUSED',
  'EPIPE',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CLOSED',
]);
const MAX_REDIRECTS = 5;

export function isLoopbackHost(host: string): boolean {
  const name = hostname(host);
  if (name === 'localhost' || name.endsWith('.localhost')) return true;
  if (isIP(name) === 4) return name.startsWith('127.');
  if (isIP(name) === 6) return name === '::1';
  return false;
}

/** `host:port` → host; `[::1]:5000` → ::1. */
function hostname(host: string): string {
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']'));
  const colon = host.lastIndexOf(':');
  return colon > 0 && host.indexOf(':') === colon ? host.slice(0, colon) : host;
}

/** Hosts from LADING_PLAIN_HTTP (comma-separated) that are reached over plain HTTP. */
function envPlainHosts(): string[] {
  return (process.env.LADING_PLAIN_HTTP ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function defaultDispatcher(): Dispatcher {
  const env = process.env;
  const proxied = env.HTTP_PROXY || env.http_proxy || env.HTTPS_PROXY || env.https_proxy;
  const opts = { connections: 16, keepAliveTimeout: 10_000, headersTimeout: 120_000, bodyTimeout: 120_000 };
  return proxied ? new EnvHttpProxyAgent(opts) : new Agent(opts);
}

let sharedDispatcher: Dispatcher | undefined;

/**
 * HTTP for registries: scheme choice, authorization, redirects and retries. Everything above it speaks in
 * paths and scopes; only this file decides how a request actually reaches a host.
 */
export class Transport {
  readonly authorizer: Authorizer | undefined;
  private readonly retry: RetryPolicy;
  private readonly plainHttp: boolean | string[];
  private readonly userAgent: string;
  private readonly dispatcher: Dispatcher;

  constructor(opts: TransportOptions = {}) {
    this.authorizer = opts.authorizer;
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
    this.plainHttp = opts.plainHttp ?? false;
    this.userAgent = opts.userAgent ?? 'lading';
    this.dispatcher = opts.dispatcher ?? (sharedDispatcher ??= defaultDispatcher());
  }

  scheme(registry: string): 'http' | 'https' {
    if (this.plainHttp === true || isLoopbackHost(registry)) return 'http';
    const allow = [...(Array.isArray(this.plainHttp) ? this.plainHttp : []), ...envPlainHosts()];
    return allow.includes(registry) || allow.includes(hostname(registry)) ? 'http' : 'https';
  }

  /** Where the registry's API answers: docker.io's lives on another host than its name. */
  baseUrl(registry: string): string {
    return `${this.scheme(registry)}://${apiHost(registry)}`;
  }

  /**
   * Sends a request and returns the response, whatever its status, once authorization and transient
   * failures are dealt with. The caller owns the body of the response it gets.
   */
  async send(req: TransportRequest): Promise<TransportResponse> {
    const replayable = req.replayable ?? (req.body === undefined || Buffer.isBuffer(req.body));
    const registryOrigin = new URL(this.baseUrl(req.registry)).origin;
    let url = req.path.startsWith('/') ? `${this.baseUrl(req.registry)}${req.path}` : req.path;
    let authTried = false;
    let challengeAuth: string | undefined;
    let redirects = 0;
    for (let attempt = 1; ; attempt++) {
      req.signal?.throwIfAborted();
      // Same scheme, host and port as the registry: an https→http downgrade or another port is elsewhere.
      const sameHost = new URL(url).origin === registryOrigin;
      const headers: Record<string, string> = { 'user-agent': this.userAgent, ...req.headers };
      // Credentials go only to the registry itself, never to a host a redirect points at.
      if (sameHost && this.authorizer) {
        const auth = (await this.authorizer.authorization(req.registry, req.scopes, req.signal)) ?? challengeAuth;
        if (auth) headers.authorization = auth;
      }
      let res: TransportResponse;
      try {
        res = await request(url, {
          method: req.method,
          headers,
          body: req.body,
          dispatcher: this.dispatcher,
          signal: req.signal,
        });
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (req.signal?.aborted) throw new LadingError('E_ABORTED', 'the operation was cancelled', { cause: err });
        // A body stream that failed its own checks (a short or corrupt source) says so itself.
        const own = ladingCause(err);
        if (own) throw own;
        if (replayable && code && NETWORK_CODES.has(code) && attempt < this.retry.attempts) {
          await this.backoff(attempt, undefined, req.signal);
          continue;
        }
        throw networkError(req, url, err);
      }

      if (res.statusCode === 401 && sameHost && this.authorizer && !authTried && replayable) {
        const challenge = res.headers['www-authenticate'];
        await res.body.dump();
        if (challenge === undefined) throw await registryError(401, undefined, req.method, redactUrl(url), res.headers, req.registry);
        authTried = true;
        challengeAuth = await this.authorizer.onChallenge(req.registry, challenge, req.scopes, req.signal);
        attempt--;
        continue;
      }
      if (res.statusCode >= 300 && res.statusCode < 400 && res.statusCode !== 304 && res.headers.location) {
        await res.body.dump();
        if (!replayable) {
          throw new LadingError('E_PROTOCOL', `${req.method} ${redactUrl(url)} was redirected, but its streamed body cannot be sent again`);
        }
        if (++redirects > MAX_REDIRECTS) {
          throw new LadingError('E_PROTOCOL', `too many redirects for ${req.method} ${redactUrl(url)}`);
        }
        url = new URL(String(res.headers.location), url).toString();
        attempt--;
        continue;
      }
      if (RETRY_STATUS.has(res.statusCode) && replayable && attempt < this.retry.attempts) {
        const wait = retryAfterMs(res.headers['retry-after']);
        if (wait === undefined || wait <= this.retry.maxRetryAfterMs) {
          await res.body.dump();
          await this.backoff(attempt, wait, req.signal);
          continue;
        }
      }
      return res;
    }
  }

  /**
   * Sends a request and fails with a LadingError unless the status is one of `ok`. The error carries the
   * registry's OCI error codes.
   */
  async expect(req: TransportRequest, ok: number[]): Promise<TransportResponse> {
    const res = await this.send(req);
    if (ok.includes(res.statusCode)) return res;
    const body = await readErrorBody(res.body);
    throw await registryError(res.statusCode, body, req.method, redactUrl(req.path), res.headers, req.registry);
  }

  private async backoff(attempt: number, retryAfter: number | undefined, signal?: AbortSignal): Promise<void> {
    const exp = Math.min(this.retry.maxDelayMs, this.retry.baseDelayMs * 2 ** (attempt - 1));
    const jittered = exp / 2 + Math.random() * (exp / 2);
    await delay(Math.max(retryAfter ?? 0, jittered), undefined, { signal });
  }
}

/** Retry-After as delay-seconds or an HTTP-date, in milliseconds. */
export function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (!v) return undefined;
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** Upload locations can carry opaque state; only the path is worth showing. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url, 'http://x');
    return url.startsWith('/') ? u.pathname : `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '<url>';
  }
}

/** The LadingError at the root of `err`, when something of ours (a verifying body) caused it. */
function ladingCause(err: unknown): LadingError | undefined {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof LadingError) return e;
  }
  return undefined;
}

function networkError(req: TransportRequest, url: string, err: unknown): LadingError {
  const code = (err as { code?: string }).code;
  const what: ErrorCode = 'E_NETWORK';
  return new LadingError(what, `${req.method} ${redactUrl(url)}: ${(err as Error).message}${code ? ` (${code})` : ''}`, {
    hint: `check that ${req.registry} is reachable; for a registry without TLS use --plain-http`,
    cause: err,
    details: { registry: req.registry, ...(code ? { cause: code } : {}) },
  });
}
