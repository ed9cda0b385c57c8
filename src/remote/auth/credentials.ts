import { readFile, realpath, mkdir } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../content/atomic.js';
import { LadingError } from '../../errors.js';
import { acquireFileLock } from '../../content/lock.js';
import { helperFailed, isNotFoundOutput, runHelper } from './helper.js';
import type { Credential, CredentialProvider } from './types.js';

/**
 * Credentials in Docker's config.json, read and written the way `docker login` does, so that a login
 * made with docker, oras or lading works for all three.
 */

/** The key Docker has always used for Docker Hub, in `auths`, in `credHelpers` and towards helpers. */
export const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';
const DOCKER_HUB_HOSTS = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

/** `https://Host:5000/v1/` → `host:5000`: config keys were written with and without scheme and path over the years. */
export function normalizeRegistryHost(keyOrHost: string): string {
  let s = keyOrHost.trim();
  const scheme = /^[a-z][a-z0-9+.-]*:\/\//i.exec(s);
  if (scheme) s = s.slice(scheme[0].length);
  const slash = s.indexOf('/');
  if (slash >= 0) s = s.slice(0, slash);
  return s.toLowerCase();
}

export function isDockerHub(registry: string): boolean {
  return DOCKER_HUB_HOSTS.has(normalizeRegistryHost(registry));
}

/** One name per registry, with the Docker Hub aliases folded into `docker.io`. */
export function canonicalRegistry(registry: string): string {
  return isDockerHub(registry) ? 'docker.io' : normalizeRegistryHost(registry);
}

/** The config key, and the server URL given to helpers, for a registry. */
export function serverAddressFor(registry: string): string {
  return isDockerHub(registry) ? DOCKER_HUB_SERVER : normalizeRegistryHost(registry);
}

/** `LADING_REGISTRY_CONFIG`, else `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.LADING_REGISTRY_CONFIG) return env.LADING_REGISTRY_CONFIG;
  if (env.DOCKER_CONFIG) return join(env.DOCKER_CONFIG, 'config.json');
  return join(homedir(), '.docker', 'config.json');
}

type JsonObject = Record<string, unknown>;

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function keyMatches(key: string, registry: string): boolean {
  return canonicalRegistry(key) === canonicalRegistry(registry);
}

/** The exact key first, then any key naming the same host, in file order. */
function lookup<T>(record: unknown, registry: string, accept: (v: unknown) => v is T): T | undefined {
  if (!isObject(record)) return undefined;
  const exact = record[serverAddressFor(registry)];
  if (accept(exact)) return exact;
  for (const [key, value] of Object.entries(record)) {
    if (keyMatches(key, registry) && accept(value)) return value;
  }
  return undefined;
}

const isNonEmptyString = (v: unknown): v is string => typeof v === 'string' && v !== '';

function helperNameFor(config: JsonObject, registry: string): string | undefined {
  return lookup(config.credHelpers, registry, isNonEmptyString) ?? (isNonEmptyString(config.credsStore) ? config.credsStore : undefined);
}

const CREDENTIAL_FIELDS = ['auth', 'username', 'password', 'identitytoken', 'registrytoken'] as const;

function hasCredentialFields(entry: unknown): boolean {
  return isObject(entry) && CREDENTIAL_FIELDS.some((f) => isNonEmptyString(entry[f]));
}

function decodeEntry(entry: JsonObject, registry: string, path: string): Credential | undefined {
  const cred: Credential = {};
  if (isNonEmptyString(entry.auth)) {
    const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) {
      throw new LadingError('E_CREDENTIALS', `the saved login for ${registry} in ${path} is malformed`, {
        hint: `log in again with \`lading login ${registry}\``,
        details: { registry, path },
      });
    }
    cred.username = decoded.slice(0, colon);
    cred.password = decoded.slice(colon + 1);
  } else {
    if (isNonEmptyString(entry.username)) cred.username = entry.username;
    if (isNonEmptyString(entry.password)) cred.password = entry.password;
  }
  if (isNonEmptyString(entry.identitytoken)) cred.identityToken = entry.identitytoken;
  if (isNonEmptyString(entry.registrytoken)) cred.registryToken = entry.registrytoken;
  if (!cred.username && !cred.password && !cred.identityToken && !cred.registryToken) return undefined;
  return cred;
}

export interface CredentialStoreOptions {
  /** A config.json to use instead of the default location. */
  configPath?: string;
  helperTimeoutMs?: number;
}

const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

export class CredentialStore {
  readonly path: string;
  private readonly helperTimeoutMs: number | undefined;

  constructor(opts: CredentialStoreOptions = {}) {
    this.path = opts.configPath ?? defaultConfigPath();
    this.helperTimeoutMs = opts.helperTimeoutMs;
  }

  /** This store as a provider for the Authorizer. */
  provider(): CredentialProvider {
    return (registry) => this.get(registry);
  }

  async get(registry: string): Promise<Credential | undefined> {
    const config = await this.read();
    const helper = helperNameFor(config, registry);
    if (helper) return this.helperGet(helper, registry);
    const entry = lookup(config.auths, registry, isObject);
    return entry ? decodeEntry(entry, registry, this.path) : undefined;
  }

  async store(registry: string, cred: { username: string; password: string }): Promise<void> {
    const key = serverAddressFor(registry);
    const config = await this.read();
    const helper = helperNameFor(config, registry);
    if (helper) {
      const res = await runHelper(
        helper,
        'store',
        JSON.stringify({ ServerURL: key, Username: cred.username, Secret: cred.password }),
        this.helperOpts(registry),
      );
      if (res.exitCode !== 0) throw helperFailed(helper, 'store', registry, res.exitCode);
    }
    await this.update((cfg) => {
      const auths = isObject(cfg.auths) ? cfg.auths : (cfg.auths = {});
      const prior = isObject(auths[key]) ? (auths[key] as JsonObject) : {};
      const next: JsonObject = { ...prior };
      for (const f of CREDENTIAL_FIELDS) delete next[f];
      // With a helper, Docker keeps an empty entry so the registry still shows as logged in; any
      // plaintext secret left from before the helper was configured goes away.
      if (!helper) next.auth = Buffer.from(`${cred.username}:${cred.password}`, 'utf8').toString('base64');
      if (helper && key in auths && !hasCredentialFields(prior)) return false;
      auths[key] = next;
      return true;
    });
  }

  /** Forgets the login for `registry`; resolves to whether there was one. */
  async erase(registry: string): Promise<boolean> {
    const config = await this.read();
    const helper = helperNameFor(config, registry);
    let erased = false;
    if (helper) {
      const res = await runHelper(helper, 'erase', serverAddressFor(registry), this.helperOpts(registry));
      if (res.exitCode === 0) erased = true;
      else if (!isNotFoundOutput(res.combined)) throw helperFailed(helper, 'erase', registry, res.exitCode);
    }
    if (!isObject(config.auths) || !Object.keys(config.auths).some((k) => keyMatches(k, registry))) return erased;
    await this.update((cfg) => {
      if (!isObject(cfg.auths)) return false;
      let changed = false;
      for (const key of Object.keys(cfg.auths)) {
        if (!keyMatches(key, registry)) continue;
        if (hasCredentialFields(cfg.auths[key])) erased = true;
        delete cfg.auths[key];
        changed = true;
      }
      return changed;
    });
    return erased;
  }

  private helperOpts(registry: string): { registry: string; timeoutMs?: number } {
    return this.helperTimeoutMs === undefined ? { registry } : { registry, timeoutMs: this.helperTimeoutMs };
  }

  private async helperGet(helper: string, registry: string): Promise<Credential | undefined> {
    const res = await runHelper(helper, 'get', serverAddressFor(registry), this.helperOpts(registry));
    if (res.exitCode !== 0) {
      if (isNotFoundOutput(res.combined)) return undefined;
      throw helperFailed(helper, 'get', registry, res.exitCode);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(res.stdout);
    } catch {
      parsed = undefined;
    }
    if (!isObject(parsed)) {
      // No cause attached: a JSON parse error quotes the text it choked on, which here holds the secret.
      throw new LadingError('E_CREDENTIALS', `the credential helper docker-credential-${helper} gave an unreadable answer for ${registry}`, {
        details: { helper: `docker-credential-${helper}`, registry },
      });
    }
    const username = typeof parsed.Username === 'string' ? parsed.Username : '';
    const secret = typeof parsed.Secret === 'string' ? parsed.Secret : '';
    if (secret === '' && username === '') return undefined;
    // Helpers have no field for identity tokens; Docker marks them with this username.
    if (username === '<token>') return secret === '' ? undefined : { identityToken: secret };
    return { username, password: secret };
  }

  private async read(): Promise<JsonObject> {
    let text: string;
    try {
      text = await readFile(this.path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new LadingError('E_CREDENTIALS', `could not read the registry config ${this.path}`, {
        cause: err,
        details: { path: this.path, errno: (err as NodeJS.ErrnoException).code },
      });
    }
    if (text.trim() === '') return {};
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      parsed = undefined;
    }
    if (!isObject(parsed)) {
      throw new LadingError('E_CREDENTIALS', `the registry config ${this.path} is not a JSON object`, {
        hint: 'fix or remove the file, then log in again',
        details: { path: this.path },
      });
    }
    return parsed;
  }

  /**
   * Read-modify-write under a lock file, so that two logins at once cannot drop each other's entry.
   * `mutate` returns false when there is nothing to write.
   */
  private async update(mutate: (config: JsonObject) => boolean): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    const release = await this.lock();
    try {
      const config = await this.read();
      if (!mutate(config)) return;
      // A symlinked config.json (dotfile managers do this) is written through, not replaced by a file.
      let target = this.path;
      try {
        target = await realpath(this.path);
      } catch {
        /* not there yet */
      }
      try {
        await writeFileAtomic(target, JSON.stringify(config, null, '\t') + '\n', { mode: 0o600 });
      } catch (err) {
        throw new LadingError('E_CREDENTIALS', `could not write the registry config ${target}`, {
          cause: err,
          details: { path: target, errno: (err as NodeJS.ErrnoException).code },
        });
      }
    } finally {
      await release();
    }
  }

  /** Two logins at once must not lose each other's entries: read-modify-write under one lock. */
  private async lock(): Promise<() => Promise<void>> {
    try {
      return await acquireFileLock(`${this.path}.lock`, { timeoutMs: LOCK_WAIT_MS, staleMs: LOCK_STALE_MS, what: `the registry config ${this.path}` });
    } catch (err) {
      throw new LadingError('E_CREDENTIALS', (err as Error).message, {
        hint: `if no login or logout is running, remove ${this.path}.lock`,
        cause: err,
      });
    }
  }
}

/** A fixed set of credentials keyed by registry host (Docker Hub aliases and `https://` prefixes allowed). */
export function staticCredentials(map: Record<string, Credential> | Map<string, Credential>): CredentialProvider {
  const table = new Map<string, Credential>();
  for (const [key, cred] of map instanceof Map ? map : Object.entries(map)) table.set(canonicalRegistry(key), { ...cred });
  return async (registry) => {
    const cred = table.get(canonicalRegistry(registry));
    return cred ? { ...cred } : undefined;
  };
}
