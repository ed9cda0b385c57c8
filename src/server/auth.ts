import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import bcrypt from 'bcryptjs';
import { LadingError } from '../errors.js';
import { OciError } from './errors.js';

/** What a request wants to do: `repository:<name>:<actions>` in the terms token auth uses; `*` only for the catalog. */
export type Action = 'pull' | 'push' | 'delete' | '*';

export interface AccessScope {
  /** The repository acted on; undefined for the catalog (`registry:catalog:*`). */
  repository?: string;
  /** `catalog` for the repository listing; undefined for repository scopes. */
  registry?: 'catalog';
  actions: Action[];
  /**
   * A scope the request can do without (the source of a cross-repository mount): an authenticator that
   * would refuse it lists it in `Principal.refused` instead, and the handler acts as if it were not asked.
   */
  optional?: boolean;
}

export interface Principal {
  /** Who made the request, for logs; undefined when anonymous. */
  user?: string;
  /** Optional scopes that were not granted. */
  refused?: AccessScope[];
}

/**
 * Decides whether a request may proceed. Throws an OciError (UNAUTHORIZED with a WWW-Authenticate header
 * to challenge, DENIED to refuse) otherwise. The scopes are passed so that a token authenticator can put
 * them in its challenge and check them against a token's claims; basic auth ignores them. `/v2/` itself
 * comes with no scope: any authenticated client may reach it.
 */
export interface Authenticator {
  authenticate(req: IncomingMessage, scopes: AccessScope[]): Promise<Principal>;
  /**
   * Endpoints of the authenticator's own (the token endpoint), outside `/v2/`: answers the request and
   * returns true when `pathname` is one of them, returns false otherwise.
   */
  serve?(req: IncomingMessage, res: ServerResponse, pathname: string, query: URLSearchParams, body: () => Readable): Promise<boolean>;
}

const REALM = 'lading';
/** How many verified credentials are remembered. */
const VERIFIED_MAX = 256;
const HTPASSWD_MAX_BYTES = 4 * 1024 * 1024;

function challenge(message: string): OciError {
  return new OciError('UNAUTHORIZED', message, { headers: { 'www-authenticate': `Basic realm="${REALM}"` } });
}

/**
 * Checks user:password pairs against bcrypt hashes. Verified pairs are remembered (under a per-process key,
 * never in the clear) so that bcrypt's deliberate slowness is paid once per client, not per request.
 */
export class PasswordVerifier {
  private readonly users: Map<string, string>;
  private readonly verified = new Map<string, string>();
  private readonly cacheKey = randomBytes(32);

  constructor(users: Map<string, string>) {
    this.users = users;
  }

  get size(): number {
    return this.users.size;
  }

  async verify(user: string, password: string): Promise<boolean> {
    const hash = this.users.get(user);
    const key = createHash('sha256').update(this.cacheKey).update(user).update('\0').update(password).digest('hex');
    const known = this.verified.get(user);
    if (hash !== undefined && known !== undefined && safeEqual(known, key)) return true;
    // An unknown user still costs one bcrypt round, so that timing does not tell which users exist.
    const ok = await bcrypt.compare(password, hash ?? DUMMY_HASH);
    if (!ok || hash === undefined) return false;
    if (this.verified.size >= VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
    this.verified.set(user, key);
    return true;
  }
}

/** Reads an `htpasswd -B` file (bcrypt entries only). */
export async function readHtpasswd(path: string): Promise<Map<string, string>> {
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
  return parseHtpasswd(text, path);
}

/** `htpasswd -B` files: one `user:$2y$…` line per user. Every user may do everything. */
export class HtpasswdAuthenticator implements Authenticator {
  private readonly verifier: PasswordVerifier;

  constructor(users: Map<string, string>) {
    this.verifier = new PasswordVerifier(users);
  }

  static async load(path: string): Promise<HtpasswdAuthenticator> {
    return new HtpasswdAuthenticator(await readHtpasswd(path));
  }

  async authenticate(req: IncomingMessage): Promise<Principal> {
    const creds = basicCredentials(req.headers.authorization);
    if (!creds) throw challenge('authentication required');
    if (!(await this.verifier.verify(creds.user, creds.password))) throw challenge('invalid username or password');
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

export function basicCredentials(header: string | undefined): { user: string; password: string } | undefined {
  if (!header) return undefined;
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
