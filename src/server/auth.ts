import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import bcrypt from 'bcryptjs';
import { LadingError } from '../errors.js';
import { OciError } from './errors.js';

/** What a request wants to do: `repository:<name>:<actions>` in the terms token auth will use. */
export type Action = 'pull' | 'push' | 'delete';

export interface AccessScope {
  /** Undefined for registry-wide endpoints (`/v2/`, `_catalog`). */
  repository?: string;
  actions: Action[];
}

export interface Principal {
  /** Who made the request, for logs; undefined when anonymous. */
  user?: string;
}

/**
 * Decides whether a request may proceed. Throws an OciError (UNAUTHORIZED with a WWW-Authenticate header
 * to challenge, DENIED to refuse) otherwise. The scopes are passed so that a token authenticator can put
 * them in its challenge and check them against a token's claims; basic auth ignores them.
 */
export interface Authenticator {
  authenticate(req: IncomingMessage, scopes: AccessScope[]): Promise<Principal>;
}

const REALM = 'lading';
/** Verified credentials remembered so that bcrypt's deliberate slowness is paid once per client, not per request. */
const VERIFIED_MAX = 256;
const HTPASSWD_MAX_BYTES = 4 * 1024 * 1024;

function challenge(message: string): OciError {
  return new OciError('UNAUTHORIZED', message, { headers: { 'www-authenticate': `Basic realm="${REALM}"` } });
}

/** `htpasswd -B` files: one `user:$2y$…` line per user. */
export class HtpasswdAuthenticator implements Authenticator {
  private readonly users: Map<string, string>;
  // Keyed by an HMAC-like digest under a per-process key: the cache never holds a password in the clear.
  private readonly verified = new Map<string, string>();
  private readonly cacheKey = randomBytes(32);

  constructor(users: Map<string, string>) {
    this.users = users;
  }

  static async load(path: string): Promise<HtpasswdAuthenticator> {
    let text: string;
    try {
      const buf = await readFile(path);
      if (buf.length > HTPASSWD_MAX_BYTES) throw new LadingError('E_IO', `htpasswd file ${path} is larger than 4 MiB`);
      text = buf.toString('utf8');
    } catch (err) {
      if (err instanceof LadingError) throw err;
      throw new LadingError('E_IO', `cannot read htpasswd file ${path}: ${(err as Error).message}`, {
        hint: 'create it with: htpasswd -Bc FILE USER',
        cause: err,
      });
    }
    return new HtpasswdAuthenticator(parseHtpasswd(text, path));
  }

  async authenticate(req: IncomingMessage): Promise<Principal> {
    const creds = basicCredentials(req.headers.authorization);
    if (!creds) throw challenge('authentication required');
    const hash = this.users.get(creds.user);
    const key = createHash('sha256').update(this.cacheKey).update(creds.user).update('\0').update(creds.password).digest('hex');
    const known = this.verified.get(creds.user);
    if (hash !== undefined && known !== undefined && safeEqual(known, key)) return { user: creds.user };
    // An unknown user still costs one bcrypt round, so that timing does not tell which users exist.
    const ok = await bcrypt.compare(creds.password, hash ?? DUMMY_HASH);
    if (!ok || hash === undefined) throw challenge('invalid username or password');
    if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(creds.user, key);
    return { user: creds.user };
  }
}

/** A bcrypt hash of random bytes, compared against when the user is unknown. */
const DUMMY_HASH = bcrypt.hashSync(randomBytes(16).toString('hex'), 5);

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function parseHtpasswd(text: string, path = 'htpasswd'): Map<string, string> {
  const users = new Map<string, string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    const user = line.slice(0, colon);
    const hash = line.slice(colon + 1);
    if (colon <= 0 || !/^\$2[aby]?\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
      throw new LadingError('E_USAGE', `${path} line ${i + 1} is not a bcrypt entry (user:$2y$...)`, {
        hint: 'only bcrypt is supported: create entries with htpasswd -B',
      });
    }
    users.set(user, hash);
  });
  return users;
}

function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
