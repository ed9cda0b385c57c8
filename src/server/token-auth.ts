import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { dirname, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { LadingError } from '../errors.js';
import { basicCredentials, parseHtpasswd, PasswordVerifier, readHtpasswd, type AccessScope, type Authenticator, type Principal } from './auth.js';
import { OciError } from './errors.js';
import { TokenInvalid, TokenSigner, type AccessEntry, type TokenClaims } from './token.js';

/**
 * Token auth of the distribution spec (docs/spec/auth/token.md): the registry challenges with
 * `Bearer realm=…/token,service=…,scope=…`, the built-in token endpoint authenticates the client (Basic, or
 * nobody) and signs a short-lived token holding the intersection of what was asked and what the rules
 * grant; the registry then checks each request against the token's `access` claim.
 */

export type RepoAction = 'pull' | 'push' | 'delete';
const REPO_ACTIONS: readonly RepoAction[] = ['pull', 'push', 'delete'];

export interface AccessRule {
  /** Exact names or globs: `*` matches any run of characters, `/` included (`team/*`, `*`). */
  repositories: string[];
  /** User names; `*` is every authenticated user. */
  users: string[];
  /** Whether clients that did not log in get these actions too. */
  anonymous: boolean;
  actions: RepoAction[];
}

export interface TokenAuthConfig {
  /** The `service` of challenges and the `aud` of tokens. */
  service: string;
  /** The `iss` of tokens. */
  issuer: string;
  /** Absolute URL of the token endpoint; default `http://<Host of the request>/token`. */
  realm?: string;
  /** Seconds a token lives (default 300). */
  tokenLifetime: number;
  /** user → bcrypt hash. */
  users: Map<string, string>;
  rules: AccessRule[];
  catalog: { users: string[]; anonymous: boolean };
  /** PEM text of an EC P-256 private key; a fresh key per start when absent. */
  signingKeyPem?: string;
}

export const TOKEN_PATH = '/token';
const DEFAULT_LIFETIME_S = 300;
const CONFIG_MAX_BYTES = 1024 * 1024;
const FORM_MAX_BYTES = 64 * 1024;
const MAX_SCOPES = 64;

// ---------------------------------------------------------------- config

/**
 * Reads a token auth config (YAML, or JSON, which YAML reads too). Relative paths in it (`htpasswd`,
 * `signingKey`) are taken from the config file's folder. Unknown keys are refused, so a misspelt rule
 * fails loudly instead of silently granting or denying.
 */
export async function loadTokenAuthConfig(path: string): Promise<TokenAuthConfig> {
  let text: string;
  try {
    const buf = await readFile(path);
    if (buf.length > CONFIG_MAX_BYTES) throw new LadingError('E_USAGE', `auth config ${path} is larger than 1 MiB`);
    text = buf.toString('utf8');
  } catch (err) {
    if (err instanceof LadingError) throw err;
    throw new LadingError('E_IO', `cannot read auth config ${path}: ${(err as Error).message}`, { cause: err });
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new LadingError('E_USAGE', `auth config ${path} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  const base = dirname(resolve(path));
  return parseTokenAuthConfig(raw, {
    source: path,
    readFile: async (p) => readFile(resolve(base, p), 'utf8'),
    readHtpasswd: (p) => readHtpasswd(resolve(base, p)),
  });
}

export interface ConfigIo {
  source?: string;
  readFile?: (path: string) => Promise<string>;
  readHtpasswd?: (path: string) => Promise<Map<string, string>>;
}

export async function parseTokenAuthConfig(raw: unknown, io: ConfigIo = {}): Promise<TokenAuthConfig> {
  const src = io.source ?? 'auth config';
  const bad = (what: string, hint?: string): LadingError => new LadingError('E_USAGE', `${src}: ${what}`, hint ? { hint } : {});
  if (!isObject(raw)) throw bad('must be a mapping (service, issuer, users, rules, ...)');
  const known = ['service', 'issuer', 'realm', 'tokenLifetime', 'htpasswd', 'users', 'rules', 'catalog', 'signingKey'];
  for (const k of Object.keys(raw)) if (!known.includes(k)) throw bad(`unknown key ${JSON.stringify(k)}`, `known keys: ${known.join(', ')}`);

  const str = (v: unknown, key: string, dflt: string): string => {
    if (v === undefined) return dflt;
    if (typeof v !== 'string' || v === '' || /[\s"\\]/.test(v)) throw bad(`${key} must be a non-empty string without spaces or quotes`);
    return v;
  };
  const service = str(raw.service, 'service', 'lading');
  const issuer = str(raw.issuer, 'issuer', 'lading');
  let realm: string | undefined;
  if (raw.realm !== undefined) {
    realm = str(raw.realm, 'realm', '');
    let u: URL;
    try {
      u = new URL(realm);
    } catch {
      throw bad('realm must be an absolute http(s) URL');
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw bad('realm must be an absolute http(s) URL');
  }
  const lifetime = raw.tokenLifetime ?? DEFAULT_LIFETIME_S;
  if (typeof lifetime !== 'number' || !Number.isInteger(lifetime) || lifetime < 1 || lifetime > 86_400) {
    throw bad('tokenLifetime must be a whole number of seconds, 1 to 86400');
  }

  const users = new Map<string, string>();
  if (raw.htpasswd !== undefined) {
    if (typeof raw.htpasswd !== 'string' || raw.htpasswd === '') throw bad('htpasswd must be a file path');
    const read = io.readHtpasswd ?? readHtpasswd;
    for (const [u, h] of await read(raw.htpasswd)) users.set(u, h);
  }
  if (raw.users !== undefined) {
    if (!isObject(raw.users)) throw bad('users must map user names to bcrypt hashes');
    // Checked as htpasswd lines are, and the message never quotes the hash.
    const lines = Object.entries(raw.users).map(([u, h]) => {
      if (typeof h !== 'string' || u.includes(':') || u === '' || u === '*') throw bad(`users.${u} must be a bcrypt hash, and the name neither empty, "*" nor containing ":"`);
      return `${u}:${h}`;
    });
    for (const [u, h] of parseHtpasswd(lines.join('\n'), `${src} users`)) users.set(u, h);
  }

  const names = (v: unknown, key: string): string[] => {
    if (v === undefined) return [];
    const list = typeof v === 'string' ? [v] : v;
    if (!Array.isArray(list) || !list.every((x) => typeof x === 'string' && x !== '')) throw bad(`${key} must be a name or a list of names`);
    return list as string[];
  };
  const bool = (v: unknown, key: string): boolean => {
    if (v === undefined) return false;
    if (typeof v !== 'boolean') throw bad(`${key} must be true or false`);
    return v;
  };

  const rules: AccessRule[] = [];
  if (raw.rules !== undefined) {
    if (!Array.isArray(raw.rules)) throw bad('rules must be a list');
    raw.rules.forEach((r: unknown, i: number) => {
      const at = `rules[${i}]`;
      if (!isObject(r)) throw bad(`${at} must be a mapping with repository, users/anonymous and actions`);
      for (const k of Object.keys(r)) if (!['repository', 'users', 'anonymous', 'actions'].includes(k)) throw bad(`${at} has unknown key ${JSON.stringify(k)}`);
      const repositories = names(r.repository, `${at}.repository`);
      if (repositories.length === 0) throw bad(`${at} names no repository`, 'use an exact name, a glob such as team/*, or * for all');
      for (const p of repositories) if (!/^[a-z0-9._/*-]+$/.test(p)) throw bad(`${at}.repository ${JSON.stringify(p)} is not a repository name or glob`);
      const userList = names(r.users, `${at}.users`);
      const anonymous = bool(r.anonymous, `${at}.anonymous`);
      if (userList.length === 0 && !anonymous) throw bad(`${at} grants to nobody`, 'list users (or "*" for every logged-in user), or set anonymous: true');
      const acts = names(r.actions, `${at}.actions`);
      if (acts.length === 0) throw bad(`${at} grants no actions`, 'actions: [pull], [pull, push], [pull, push, delete] or ["*"]');
      const actions = new Set<RepoAction>();
      for (const a of acts) {
        if (a === '*') REPO_ACTIONS.forEach((x) => actions.add(x));
        else if ((REPO_ACTIONS as readonly string[]).includes(a)) actions.add(a as RepoAction);
        else throw bad(`${at}.actions has unknown action ${JSON.stringify(a)}`, 'actions are pull, push, delete, or * for all');
      }
      rules.push({ repositories, users: userList, anonymous, actions: [...actions] });
    });
  }

  let catalog = { users: ['*'], anonymous: false };
  if (raw.catalog !== undefined) {
    if (!isObject(raw.catalog)) throw bad('catalog must be a mapping with users and/or anonymous');
    for (const k of Object.keys(raw.catalog)) if (!['users', 'anonymous'].includes(k)) throw bad(`catalog has unknown key ${JSON.stringify(k)}`);
    catalog = { users: names(raw.catalog.users, 'catalog.users'), anonymous: bool(raw.catalog.anonymous, 'catalog.anonymous') };
  }

  let signingKeyPem: string | undefined;
  if (raw.signingKey !== undefined) {
    if (typeof raw.signingKey !== 'string' || raw.signingKey === '') throw bad('signingKey must be the path of a PEM private key');
    const read = io.readFile ?? ((p: string) => readFile(p, 'utf8'));
    try {
      signingKeyPem = await read(raw.signingKey);
    } catch (err) {
      throw new LadingError('E_IO', `${src}: cannot read signingKey ${raw.signingKey}: ${(err as Error).message}`, { cause: err });
    }
  }

  return {
    service,
    issuer,
    ...(realm !== undefined ? { realm } : {}),
    tokenLifetime: lifetime,
    users,
    rules,
    catalog,
    ...(signingKeyPem !== undefined ? { signingKeyPem } : {}),
  };
}

// ---------------------------------------------------------------- rules

/** `*` matches any run of characters (slashes included); everything else matches itself. */
export function globMatch(pattern: string, name: string): boolean {
  if (!pattern.includes('*')) return pattern === name;
  const re = new RegExp(`^${pattern.split('*').map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(name);
}

/** What the rules give `user` (undefined: anonymous) on `repository`. */
export function grantedActions(config: TokenAuthConfig, user: string | undefined, repository: string): Set<RepoAction> {
  const out = new Set<RepoAction>();
  for (const rule of config.rules) {
    const applies = user === undefined ? rule.anonymous : rule.anonymous || rule.users.includes('*') || rule.users.includes(user);
    if (applies && rule.repositories.some((p) => globMatch(p, repository))) rule.actions.forEach((a) => out.add(a));
  }
  return out;
}

function catalogGranted(config: TokenAuthConfig, user: string | undefined): boolean {
  if (config.catalog.anonymous) return true;
  return user !== undefined && (config.catalog.users.includes('*') || config.catalog.users.includes(user));
}

/** The access a user gets for one requested scope: the intersection, possibly empty (never an error). */
function grantScope(config: TokenAuthConfig, user: string | undefined, scope: ParsedScope): AccessEntry | undefined {
  if (scope.type === 'registry') {
    if (scope.name !== 'catalog' || !scope.actions.includes('*') || !catalogGranted(config, user)) return undefined;
    return { type: 'registry', name: 'catalog', actions: ['*'] };
  }
  if (scope.type !== 'repository') return undefined;
  const granted = grantedActions(config, user, scope.name);
  const wanted = scope.actions.includes('*') ? REPO_ACTIONS : scope.actions;
  const actions = REPO_ACTIONS.filter((a) => granted.has(a) && wanted.includes(a));
  return actions.length > 0 ? { type: 'repository', name: scope.name, actions } : undefined;
}

interface ParsedScope {
  type: string;
  name: string;
  actions: string[];
}

/** `type:name:actions`, split on the first and last colon (a name may hold a host:port). */
function parseScope(s: string): ParsedScope | undefined {
  const first = s.indexOf(':');
  const last = s.lastIndexOf(':');
  if (first <= 0 || last === first || last === s.length - 1) return undefined;
  const name = s.slice(first + 1, last);
  if (name === '' || name.length > 512) return undefined;
  return { type: s.slice(0, first), name, actions: s.slice(last + 1).split(',').filter((a) => a !== '') };
}

// ---------------------------------------------------------------- authenticator

export interface TokenAuthenticatorOptions {
  /** Milliseconds since the epoch; tests move it to expire tokens. */
  now?: () => number;
  logger?: Logger;
  /** A signer of its own (tests); otherwise from `config.signingKeyPem`, or a fresh key. */
  signer?: TokenSigner;
}

export class TokenAuthenticator implements Authenticator {
  readonly config: TokenAuthConfig;
  private readonly signer: TokenSigner;
  private readonly verifier: PasswordVerifier;
  private readonly now: () => number;
  private readonly log: Logger | undefined;

  constructor(config: TokenAuthConfig, opts: TokenAuthenticatorOptions = {}) {
    this.config = config;
    this.signer = opts.signer ?? (config.signingKeyPem ? TokenSigner.fromPem(config.signingKeyPem, 'signingKey') : TokenSigner.generate());
    this.verifier = new PasswordVerifier(config.users);
    this.now = opts.now ?? Date.now;
    this.log = opts.logger;
  }

  static async load(path: string, opts: TokenAuthenticatorOptions = {}): Promise<TokenAuthenticator> {
    return new TokenAuthenticator(await loadTokenAuthConfig(path), opts);
  }

  // ---- the registry side

  async authenticate(req: IncomingMessage, scopes: AccessScope[]): Promise<Principal> {
    const header = req.headers.authorization;
    const m = header ? /^Bearer\s+(\S+)\s*$/i.exec(header) : null;
    if (!m) throw this.challenge(req, scopes, { message: 'authentication required' });
    let claims: TokenClaims;
    try {
      claims = this.signer.verify(m[1]!, { issuer: this.config.issuer, audience: this.config.service, now: this.now() });
    } catch (err) {
      if (!(err instanceof TokenInvalid)) throw err;
      throw this.challenge(req, scopes, { error: 'invalid_token', message: err.message });
    }
    const user = claims.sub === '' ? undefined : claims.sub;
    const refused: AccessScope[] = [];
    const missing: AccessScope[] = [];
    for (const scope of scopes) {
      if (covered(claims.access, scope)) continue;
      (scope.optional ? refused : missing).push(scope);
    }
    if (missing.length === 0) return { ...(user !== undefined ? { user } : {}), ...(refused.length > 0 ? { refused } : {}) };
    // A fresh token would help when the rules grant what this one lacks: challenge again, as distribution
    // does (401, insufficient_scope). When they do not, a logged-in user is refused outright (403 DENIED),
    // so that the client reports "denied" instead of "log in again"; an anonymous client is challenged,
    // since logging in may help.
    const grantable = missing.every((s) => this.wouldGrant(user, s));
    if (grantable || user === undefined) {
      throw this.challenge(req, scopes, {
        error: 'insufficient_scope',
        message: user === undefined ? `anonymous access to ${missing.map(scopeString).join(' ')} is not allowed` : 'the token does not grant the access needed',
      });
    }
    throw new OciError('DENIED', `user ${user} may not ${describe(missing)}`, {
      detail: missing.map((s) => ({ type: s.registry ? 'registry' : 'repository', name: s.registry ?? s.repository, actions: s.actions })),
    });
  }

  private wouldGrant(user: string | undefined, scope: AccessScope): boolean {
    if (scope.registry === 'catalog') return catalogGranted(this.config, user);
    if (scope.repository === undefined) return true;
    const granted = grantedActions(this.config, user, scope.repository);
    return scope.actions.every((a) => a !== '*' && granted.has(a));
  }

  private challenge(req: IncomingMessage, scopes: AccessScope[], o: { error?: string; message: string }): OciError {
    const params = [`realm="${this.realm(req)}"`, `service="${this.config.service}"`];
    const scope = scopes.filter((s) => !s.optional).map(scopeString).join(' ');
    if (scope !== '') params.push(`scope="${scope}"`);
    if (o.error) params.push(`error="${o.error}"`);
    return new OciError('UNAUTHORIZED', o.message, {
      headers: { 'www-authenticate': `Bearer ${params.join(',')}` },
      ...(scopes.length > 0 ? { detail: scopes.map((s) => ({ type: s.registry ? 'registry' : 'repository', name: s.registry ?? s.repository, actions: s.actions })) } : {}),
    });
  }

  /** The configured realm, or this server as the client reached it (a Host that is not a plain host:port is not echoed). */
  private realm(req: IncomingMessage): string {
    if (this.config.realm) return this.config.realm;
    const host = req.headers.host ?? '';
    const safe = /^(?:[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/.test(host) ? host : `${req.socket.localAddress?.includes(':') ? `[${req.socket.localAddress}]` : req.socket.localAddress}:${req.socket.localPort}`;
    return `http://${safe}${TOKEN_PATH}`;
  }

  // ---- the token endpoint

  async serve(req: IncomingMessage, res: ServerResponse, pathname: string, query: URLSearchParams, body: () => Readable): Promise<boolean> {
    if (pathname !== TOKEN_PATH) return false;
    const method = req.method ?? 'GET';
    if (method === 'GET') {
      await this.issue(res, query, basicFrom(req), false);
      return true;
    }
    if (method === 'POST') {
      const form = new URLSearchParams((await readForm(req, body)).toString('utf8'));
      const grant = form.get('grant_type');
      if (grant !== 'password') {
        // Refresh tokens are not issued, so only the password grant exists (oauth.md); clients fall back to GET.
        sendJson(res, 400, { error: 'unsupported_grant_type', error_description: 'only grant_type=password is supported; or use GET with Basic credentials' });
        return true;
      }
      const scopes = new URLSearchParams();
      for (const s of (form.get('scope') ?? '').split(' ')) if (s !== '') scopes.append('scope', s);
      const service = form.get('service');
      if (service !== null) scopes.set('service', service);
      await this.issue(res, scopes, { user: form.get('username') ?? '', password: form.get('password') ?? '' }, true);
      return true;
    }
    throw new OciError('UNSUPPORTED', 'the token endpoint answers GET and POST', { status: 405, headers: { allow: 'GET, POST' } });
  }

  private async issue(res: ServerResponse, query: URLSearchParams, creds: { user: string; password: string } | undefined | 'malformed', oauth: boolean): Promise<void> {
    const service = query.get('service');
    if (service !== null && service !== this.config.service) {
      throw new OciError('DENIED', `this token service issues tokens for ${this.config.service} only`, { status: 400 });
    }
    if (creds === 'malformed') throw new OciError('UNAUTHORIZED', 'the token endpoint takes Basic credentials or none', { headers: { 'www-authenticate': `Basic realm="${this.config.service}"` } });
    let user: string | undefined;
    if (creds) {
      if (!(await this.verifier.verify(creds.user, creds.password))) {
        // Only a known user name is logged: an unknown one may be a password typed into the wrong field.
        this.log?.info({ user: this.config.users.has(creds.user) ? creds.user : '(unknown)' }, 'token refused: invalid username or password');
        if (oauth) {
          sendJson(res, 401, { error: 'invalid_grant', error_description: 'invalid username or password' });
          return;
        }
        throw new OciError('UNAUTHORIZED', 'invalid username or password', { headers: { 'www-authenticate': `Basic realm="${this.config.service}"` } });
      }
      user = creds.user;
    }
    const requested = query.getAll('scope').flatMap((s) => s.split(' ')).filter((s) => s !== '');
    if (requested.length > MAX_SCOPES) throw new OciError('DENIED', `at most ${MAX_SCOPES} scopes per token`, { status: 400 });
    const access: AccessEntry[] = [];
    for (const raw of requested) {
      const scope = parseScope(raw);
      const entry = scope && grantScope(this.config, user, scope);
      if (!entry) continue;
      const same = access.find((a) => a.type === entry.type && a.name === entry.name);
      if (same) same.actions = [...new Set([...same.actions, ...entry.actions])];
      else access.push(entry);
    }
    const nowMs = this.now();
    const iat = Math.floor(nowMs / 1000);
    const lifetime = this.config.tokenLifetime;
    const token = this.signer.sign({ iss: this.config.issuer, sub: user ?? '', aud: this.config.service, iat, nbf: iat, exp: iat + lifetime, access });
    this.log?.info({ user: user ?? '(anonymous)', access: access.map((a) => `${a.type}:${a.name}:${a.actions.join(',')}`) }, 'token issued');
    sendJson(res, 200, { token, access_token: token, expires_in: lifetime, issued_at: new Date(iat * 1000).toISOString() });
  }
}

function covered(access: AccessEntry[], scope: AccessScope): boolean {
  const type = scope.registry ? 'registry' : 'repository';
  const name = scope.registry ?? scope.repository;
  if (name === undefined) return true; // `/v2/`: any valid token will do
  const have = new Set(access.filter((a) => a.type === type && a.name === name).flatMap((a) => a.actions));
  return have.has('*') || scope.actions.every((a) => have.has(a));
}

function scopeString(s: AccessScope): string {
  return s.registry ? `registry:${s.registry}:*` : `repository:${s.repository}:${s.actions.join(',')}`;
}

function describe(missing: AccessScope[]): string {
  return missing.map((s) => (s.registry ? 'list the catalog' : `${s.actions.join('/')} ${s.repository}`)).join(', ');
}

function basicFrom(req: IncomingMessage): { user: string; password: string } | undefined | 'malformed' {
  const header = req.headers.authorization;
  if (header === undefined || header === '') return undefined;
  return basicCredentials(header) ?? 'malformed';
}

function readForm(req: IncomingMessage, body: () => Readable): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? NaN);
  if (declared > FORM_MAX_BYTES) return Promise.reject(new OciError('UNSUPPORTED', 'the form is too large', { status: 413 }));
  return new Promise((done, fail) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const stream = body();
    stream.on('data', (c: Buffer) => {
      size += c.length;
      if (size > FORM_MAX_BYTES) {
        stream.pause();
        fail(new OciError('UNSUPPORTED', 'the form is too large', { status: 413 }));
      } else chunks.push(c);
    });
    stream.on('end', () => done(Buffer.concat(chunks)));
    stream.on('error', fail);
  });
}

function sendJson(res: ServerResponse, status: number, value: unknown): void {
  const bytes = Buffer.from(JSON.stringify(value));
  // Tokens must not be cached by anything between the client and us.
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(bytes.length), 'cache-control': 'no-store', pragma: 'no-cache' });
  res.end(bytes);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
