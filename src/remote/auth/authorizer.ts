import { LadingError } from '../../errors.js';
import { parseChallenges, type Challenge } from './challenge.js';
import { canonicalRegistry } from './credentials.js';
import { covers, mergeScopes } from './scope.js';
import type { Credential, CredentialProvider, HttpDo, HttpResponse } from './types.js';

/**
 * Registry authentication as the transport sees it: ask for a header before a request, hand over the
 * challenge after a 401. Follows the distribution token spec (token.md, oauth.md): bearer tokens come
 * from the realm named in the challenge, with Basic credentials (GET) or a refresh token (POST).
 */

export interface AuthorizerOptions {
  credentials: CredentialProvider;
  http: HttpDo;
  userAgent?: string;
  /** OAuth2 client_id sent with refresh-token grants. */
  clientId?: string;
  /**
   * Whether credentials may be sent to a token realm over plain http. The default allows loopback only;
   * the transport should allow the registries the user marked as plain-http.
   */
  allowInsecureRealm?: (registry: string, realm: URL) => boolean;
  /** Milliseconds since the epoch; tests move it to expire tokens. */
  now?: () => number;
}

interface CachedToken {
  scopes: string[];
  header: string;
  expiresAt: number;
}

interface RegistryState {
  scheme?: 'basic' | 'bearer';
  realm?: string;
  service?: string;
  basicHeader?: string;
  tokens: Map<string, CachedToken>;
}

/** Tokens without `expires_in` live 60 s by the spec. */
const DEFAULT_TOKEN_LIFETIME_S = 60;
/** Use a token no later than this before it expires, so it does not die in flight. */
const MAX_EARLY_EXPIRY_MS = 30_000;

function isLoopback(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

function basicHeader(username: string, password: string): string {
  return `Basic ${Buffer.from(`${username}:${password}`, 'utf8').toString('base64')}`;
}

function secretsOf(cred: Credential | undefined): string[] {
  if (!cred) return [];
  return [cred.password, cred.identityToken, cred.registryToken].filter((s): s is string => !!s);
}

/** Server-supplied text is shown to help the user, but never with one of their secrets echoed back. */
function redact(text: string, secrets: string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join('***');
  return out;
}

function serverMessage(res: HttpResponse, secrets: string[]): string | undefined {
  let msg: string | undefined;
  try {
    const body = JSON.parse(res.body) as Record<string, unknown>;
    const errors = body.errors;
    if (Array.isArray(errors) && errors[0] && typeof errors[0].message === 'string') msg = errors[0].message;
    else if (typeof body.error_description === 'string') msg = body.error_description;
    else if (typeof body.error === 'string') msg = body.error;
    else if (typeof body.details === 'string') msg = body.details;
  } catch {
    /* not JSON: say nothing rather than quote an HTML page */
  }
  // Masking a very short secret would mangle the text beyond use; the message is dropped instead.
  if (!msg || secrets.some((s) => s.length < 4)) return undefined;
  return redact(msg.replace(/\s+/g, ' ').trim().slice(0, 200), secrets);
}

/** The refusal the transport should raise when a retried request is still answered 401. */
export function unauthorizedError(registry: string, opts: { credentialsSent: boolean; reason?: string }): LadingError {
  const message = opts.credentialsSent
    ? `${registry} refused the saved credentials${opts.reason ? `: ${opts.reason}` : ''}`
    : `${registry} requires authentication${opts.reason ? `: ${opts.reason}` : ''}`;
  return new LadingError('E_UNAUTHORIZED', message, {
    hint: opts.credentialsSent
      ? `log in again with \`lading login ${registry}\``
      : `log in with \`lading login ${registry}\``,
    details: { registry },
  });
}

export class Authorizer {
  private readonly credentials: CredentialProvider;
  private readonly http: HttpDo;
  private readonly userAgent: string | undefined;
  private readonly clientId: string;
  private readonly allowInsecureRealm: (registry: string, realm: URL) => boolean;
  private readonly now: () => number;
  private readonly states = new Map<string, RegistryState>();
  private readonly credCache = new Map<string, Promise<Credential | undefined>>();
  private readonly inflight = new Map<string, Promise<CachedToken>>();

  constructor(opts: AuthorizerOptions) {
    this.credentials = opts.credentials;
    this.http = opts.http;
    this.userAgent = opts.userAgent;
    this.clientId = opts.clientId ?? 'lading';
    this.allowInsecureRealm = opts.allowInsecureRealm ?? ((_r, realm) => isLoopback(realm.hostname));
    this.now = opts.now ?? Date.now;
  }

  /**
   * The Authorization header for a request to `registry` needing `scopes`, or undefined when the registry
   * has not challenged yet. Once a registry is known to use bearer tokens, a token for new scopes is
   * fetched here rather than after another 401, which saves a round trip per repository.
   */
  async authorization(registry: string, scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    const state = this.states.get(canonicalRegistry(registry));
    if (!state?.scheme) return undefined;
    if (state.scheme === 'basic') return state.basicHeader;
    const wanted = mergeScopes(scopes);
    const cached = this.cachedToken(state, wanted);
    if (cached) return cached.header;
    if (!state.realm) return undefined;
    const cred = await this.credentialFor(registry);
    if (cred?.registryToken) return `Bearer ${cred.registryToken}`;
    return (await this.fetchToken(registry, state, wanted, cred, signal)).header;
  }

  /**
   * Handles a 401: reads the challenge, obtains what it asks for and returns the header to retry with.
   * Always fetches a fresh token, since the one just sent (if any) was not accepted; the transport must
   * retry once only and then raise `unauthorizedError`.
   */
  async onChallenge(
    registry: string,
    wwwAuthenticate: string | string[] | undefined,
    scopes: string[],
    signal?: AbortSignal,
  ): Promise<string> {
    const challenges = parseChallenges(wwwAuthenticate);
    if (challenges.length === 0) {
      throw new LadingError('E_PROTOCOL', `${registry} answered 401 without a WWW-Authenticate challenge`, {
        details: { registry },
      });
    }
    const bearer = challenges.find((c) => c.scheme === 'bearer');
    const basic = challenges.find((c) => c.scheme === 'basic');
    const key = canonicalRegistry(registry);
    let state = this.states.get(key);
    if (!state) {
      state = { tokens: new Map() };
      this.states.set(key, state);
    }
    if (bearer) return this.onBearer(registry, state, bearer, scopes, signal);
    if (basic) return this.onBasic(registry, state);
    throw new LadingError(
      'E_UNAUTHORIZED',
      `${registry} asks for an authentication scheme lading does not support (${[...new Set(challenges.map((c) => c.scheme))].join(', ')})`,
      { details: { registry, schemes: challenges.map((c) => c.scheme) } },
    );
  }

  /** Drops everything known about `registry` (after `lading login`/`logout`, for example). */
  forget(registry: string): void {
    const key = canonicalRegistry(registry);
    this.states.delete(key);
    this.credCache.delete(key);
  }

  private async onBasic(registry: string, state: RegistryState): Promise<string> {
    state.scheme = 'basic';
    const cred = await this.credentialFor(registry);
    if (cred?.username === undefined && cred?.password === undefined) {
      const hasToken = !!(cred?.identityToken || cred?.registryToken);
      throw unauthorizedError(registry, {
        credentialsSent: false,
        ...(hasToken ? { reason: 'it wants a username and password, and only a token is saved' } : {}),
      });
    }
    state.basicHeader = basicHeader(cred.username ?? '', cred.password ?? '');
    return state.basicHeader;
  }

  private async onBearer(
    registry: string,
    state: RegistryState,
    challenge: Challenge,
    scopes: string[],
    signal: AbortSignal | undefined,
  ): Promise<string> {
    const realm = challenge.params.realm;
    let realmUrl: URL | undefined;
    try {
      realmUrl = realm ? new URL(realm) : undefined;
    } catch {
      realmUrl = undefined;
    }
    if (!realmUrl || (realmUrl.protocol !== 'https:' && realmUrl.protocol !== 'http:')) {
      throw new LadingError('E_PROTOCOL', `${registry} sent a bearer challenge without a usable realm URL`, {
        details: { registry, realm },
      });
    }
    state.scheme = 'bearer';
    state.realm = realmUrl.href;
    state.service = challenge.params.service;
    const cred = await this.credentialFor(registry);
    if (cred?.registryToken) return `Bearer ${cred.registryToken}`;
    const wanted = mergeScopes(challenge.params.scope, scopes);
    return (await this.fetchToken(registry, state, wanted, cred, signal, true)).header;
  }

  private cachedToken(state: RegistryState, wanted: string[]): CachedToken | undefined {
    const now = this.now();
    const exact = state.tokens.get(wanted.join(' '));
    if (exact && exact.expiresAt > now) return exact;
    for (const [k, t] of state.tokens) {
      if (t.expiresAt <= now) state.tokens.delete(k);
      else if (covers(t.scopes, wanted)) return t;
    }
    return undefined;
  }

  private credentialFor(registry: string): Promise<Credential | undefined> {
    const key = canonicalRegistry(registry);
    let p = this.credCache.get(key);
    if (!p) {
      p = this.credentials(registry).catch((err: unknown) => {
        this.credCache.delete(key);
        if (err instanceof LadingError) throw err;
        // The provider is user code; its message is not ours to vouch for, so it is not repeated.
        throw new LadingError('E_CREDENTIALS', `could not obtain credentials for ${registry}`, { details: { registry } });
      });
      this.credCache.set(key, p);
    }
    return p;
  }

  /**
   * One fetch per (registry, scope set) at a time; callers arriving while it runs share it. That holds for
   * challenges too: a fetch still in flight cannot have produced the token that was just refused.
   */
  private fetchToken(
    registry: string,
    state: RegistryState,
    wanted: string[],
    cred: Credential | undefined,
    signal: AbortSignal | undefined,
    replace = false,
  ): Promise<CachedToken> {
    const scopeKey = wanted.join(' ');
    const flightKey = `${canonicalRegistry(registry)}\n${state.realm}\n${state.service ?? ''}\n${scopeKey}`;
    const existing = this.inflight.get(flightKey);
    if (existing) return existing;
    if (replace) state.tokens.delete(scopeKey);
    // A shared fetch must not die because the first caller gave up, so it runs without that caller's signal.
    const p = this.requestToken(registry, state.realm!, state.service, wanted, cred)
      .then((token) => {
        if (token.expiresAt > this.now()) state.tokens.set(scopeKey, token);
        return token;
      })
      .finally(() => this.inflight.delete(flightKey));
    this.inflight.set(flightKey, p);
    return signal ? withSignal(p, signal) : p;
  }

  private async requestToken(
    registry: string,
    realm: string,
    service: string | undefined,
    scopes: string[],
    cred: Credential | undefined,
  ): Promise<CachedToken> {
    const url = new URL(realm);
    const secrets = secretsOf(cred);
    const headers: Record<string, string> = { accept: 'application/json' };
    if (this.userAgent) headers['user-agent'] = this.userAgent;
    const withSecret = !!(cred && (cred.identityToken || cred.username !== undefined || cred.password !== undefined));
    if (withSecret && url.protocol === 'http:' && !this.allowInsecureRealm(registry, url)) {
      throw new LadingError(
        'E_UNAUTHORIZED',
        `the token service for ${registry} (${url.origin}) is not encrypted, so lading will not send credentials to it`,
        {
          hint: `use https for the token service, or mark ${registry} as a plain-http registry if this network is trusted`,
          details: { registry, realm: url.origin + url.pathname },
        },
      );
    }

    let res: HttpResponse;
    const started = this.now();
    if (cred?.identityToken) {
      const form = new URLSearchParams();
      form.set('grant_type', 'refresh_token');
      form.set('refresh_token', cred.identityToken);
      if (service) form.set('service', service);
      if (scopes.length > 0) form.set('scope', scopes.join(' '));
      form.set('client_id', this.clientId);
      headers['content-type'] = 'application/x-www-form-urlencoded';
      res = await this.http({ method: 'POST', url: url.href, headers, body: form.toString() });
    } else {
      if (service) url.searchParams.append('service', service);
      for (const s of scopes) url.searchParams.append('scope', s);
      if (cred && (cred.username !== undefined || cred.password !== undefined)) {
        headers.authorization = basicHeader(cred.username ?? '', cred.password ?? '');
      }
      res = await this.http({ method: 'GET', url: url.href, headers });
    }

    const details = { registry, realm: url.origin + url.pathname, status: res.status, scopes };
    if (res.status !== 200) {
      const said = serverMessage(res, secrets);
      if (res.status === 401 || (res.status === 400 && cred?.identityToken)) {
        throw new LadingError(
          'E_UNAUTHORIZED',
          withSecret
            ? `${registry} refused the saved credentials${said ? `: ${said}` : ''}`
            : `${registry} requires authentication${said ? `: ${said}` : ''}`,
          { hint: `${withSecret ? 'log in again' : 'log in'} with \`lading login ${registry}\``, details },
        );
      }
      if (res.status === 403) {
        throw new LadingError('E_DENIED', `the token service for ${registry} denied access to ${scopes.join(' ') || 'the registry'}${said ? `: ${said}` : ''}`, {
          hint: withSecret ? 'check that this account has access to the repository' : `log in with \`lading login ${registry}\``,
          details,
        });
      }
      if (res.status === 429) {
        throw new LadingError('E_TOO_MANY_REQUESTS', `the token service for ${registry} is rate-limiting requests`, { details });
      }
      throw new LadingError('E_REGISTRY', `the token service for ${registry} answered ${res.status}${said ? `: ${said}` : ''}`, { details });
    }

    let body: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(res.body);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      body = parsed as Record<string, unknown>;
    } catch {
      throw new LadingError('E_PROTOCOL', `the token service for ${registry} answered with something other than a JSON object`, { details });
    }
    const token = typeof body.token === 'string' && body.token !== '' ? body.token : body.access_token;
    if (typeof token !== 'string' || token === '') {
      throw new LadingError('E_PROTOCOL', `the token service for ${registry} answered without a token`, { details });
    }
    // The token goes into a header verbatim; control characters or spaces would split or corrupt it.
    if (!/^[\x21-\x7e]+$/.test(token)) {
      throw new LadingError('E_PROTOCOL', `the token service for ${registry} answered with a malformed token`, { details });
    }
    return { scopes, header: `Bearer ${token}`, expiresAt: this.expiry(body, started) };
  }

  /**
   * Counts from when the request was sent, or from `issued_at` when that is earlier and plausible (clocks
   * differ, so an `issued_at` older than the whole lifetime is taken as skew, not as a dead token).
   */
  private expiry(body: Record<string, unknown>, started: number): number {
    const raw = body.expires_in;
    const lifetimeS = typeof raw === 'number' && Number.isFinite(raw) && raw > 0 ? raw : DEFAULT_TOKEN_LIFETIME_S;
    const lifetimeMs = lifetimeS * 1000;
    let base = started;
    if (typeof body.issued_at === 'string') {
      const issued = Date.parse(body.issued_at);
      if (Number.isFinite(issued) && issued < started && started - issued < lifetimeMs) base = issued;
    }
    return base + lifetimeMs - Math.min(MAX_EARLY_EXPIRY_MS, lifetimeMs / 10);
  }
}

function withSignal<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new LadingError('E_ABORTED', 'the operation was cancelled'));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new LadingError('E_ABORTED', 'the operation was cancelled'));
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(e);
      },
    );
  });
}
