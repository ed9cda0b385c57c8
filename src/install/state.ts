import { mkdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { LadingError, toLadingError } from '../errors.js';
import { writeFileAtomic } from '../content/atomic.js';
import { acquireFileLock } from '../content/lock.js';

/**
 * The installed-state store: `<root>/.lading/state.json`, read without a lock (it is only ever replaced
 * by one rename, so a reader sees one whole version) and rewritten atomically under `.lading/state.lock`.
 *
 * Which version of a package is current is NOT stored here: the `pkgs/<name>/current` symlink is the one
 * truth for that, so a crash between the two can never make them disagree.
 */

export interface InstalledVersion {
  version: string;
  /** The manifest digest installed (the variant's, for a multi-platform artifact). */
  digest: string;
  /** The index digest, when the manifest installed is a variant of an index. */
  root?: string;
  reference: string;
  family: string;
  platform?: string;
  installedAt: string;
  command?: string;
  executable?: string;
  /** Arguments the command's wrapper passes before the caller's (cli spec.args); with env, bin/<command> is a wrapper. */
  args?: string[];
  /** Environment the command's wrapper exports (cli spec.env). */
  env?: Record<string, string>;
  /** Names of packages this one depends on (cli spec.deps). */
  deps: string[];
  /** Classes a pack provides. */
  classes?: string[];
  signed?: boolean;
  /**
   * Set when the version was not recorded by an install but found on disk by reconcile (its `current`
   * pointed at it while the state had no entry). Its digest is then unknown (`digest` is ''); its family,
   * command and deps are read back from the version's lading.envelope.json when that can be read, else
   * the family is 'unknown' (which any family may replace).
   */
  found?: boolean;
}

export interface InstalledPackage {
  name: string;
  family: string;
  versions: Record<string, InstalledVersion>;
  /** Versions in install order, last = newest. Each version appears once. */
  history: string[];
}

export interface InstallState {
  version: 1;
  packages: Record<string, InstalledPackage>;
}

export const STATE_DIR = '.lading';
export const STATE_FILE = 'state.json';
/** Bounds what a damaged or hostile state file makes us parse. */
const MAX_STATE_BYTES = 64 * 1024 * 1024;

/** Package names, versions and command names: one path segment, no leading dot or dash. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;

/**
 * Checks a package name, version or command name taken from an envelope. Such values come from the
 * artifact, so a bad one is the envelope's fault: E_CONFIG_INVALID.
 */
export function checkName(value: unknown, what: string): string {
  if (typeof value !== 'string' || !NAME_PATTERN.test(value)) {
    throw new LadingError('E_CONFIG_INVALID', `${what} ${JSON.stringify(value)} is not a valid name`, {
      hint: 'names and versions must match /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/',
      details: { [what]: value },
    });
  }
  return value;
}

/** The family of a version whose envelope could not be read back; compatible with every family. */
export const UNKNOWN_FAMILY = 'unknown';

/** Versions that would collide with `pkgs/<name>/current` (on a case-insensitive filesystem too). */
const RESERVED_VERSION = /^current$/i;

/** Checks a version as checkName does, and refuses `current` in any case (the name of the link). */
export function checkVersion(value: unknown, what = 'version'): string {
  checkName(value, what);
  if (RESERVED_VERSION.test(value as string)) {
    throw new LadingError('E_CONFIG_INVALID', `${what} ${JSON.stringify(value)} is reserved`, {
      hint: `"current" names the link to the current version; publish under another version`,
      details: { [what]: value },
    });
  }
  return value as string;
}

/** Whether a package installed as `installed` may take a version of family `incoming` ('unknown' fits any). */
export function familyCompatible(installed: string, incoming: string): boolean {
  return installed === incoming || installed === UNKNOWN_FAMILY || incoming === UNKNOWN_FAMILY;
}

export function statePath(root: string): string {
  return join(root, STATE_DIR, STATE_FILE);
}

function stateLockPath(root: string): string {
  return join(root, STATE_DIR, 'state.lock');
}

export function emptyState(): InstallState {
  return { version: 1, packages: {} };
}

/** The state of an install root; a missing file is an empty state. */
export async function readState(root: string): Promise<InstallState> {
  const path = statePath(root);
  let raw: string;
  try {
    raw = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return emptyState();
    throw toLadingError(err);
  }
  if (raw.length > MAX_STATE_BYTES) throw invalid(path, `it is larger than ${MAX_STATE_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(raw);
  } catch (err) {
    throw invalid(path, `it is not JSON (${(err as Error).message})`);
  }
  return validateState(doc, path);
}

/**
 * Reads, changes and rewrites the state under its lock. `fn` may change the state it is given in place or
 * return a new one; what it returns (or the changed state) is written with one atomic rename.
 */
export async function updateState(
  root: string,
  fn: (state: InstallState) => InstallState | void | Promise<InstallState | void>,
): Promise<InstallState> {
  try {
    await mkdir(join(root, STATE_DIR), { recursive: true });
  } catch (err) {
    throw toLadingError(err);
  }
  const release = await acquireFileLock(stateLockPath(root), { timeoutMs: 60_000, what: 'the installed-state store' });
  try {
    const state = await readState(root);
    const next = (await fn(state)) ?? state;
    validateState(next, statePath(root));
    await writeFileAtomic(statePath(root), `${JSON.stringify(next, null, 2)}\n`);
    return next;
  } finally {
    await release();
  }
}

/** The version `pkgs/<name>/current` points at, or undefined when there is no such link. */
export async function currentVersion(root: string, name: string): Promise<string | undefined> {
  try {
    return await readlink(join(root, 'pkgs', name, 'current'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'EINVAL' || code === 'ENOTDIR') return undefined;
    throw toLadingError(err);
  }
}

// ---- validation ---------------------------------------------------------------------------------------

function invalid(path: string, why: string): LadingError {
  return new LadingError('E_INSTALL_STATE_INVALID', `the installed-state store ${path} is malformed: ${why}`, {
    hint:
      'restore that file from a backup, or move it aside and reinstall: opening the root records each version that a ' +
      '`current` link points at, and removes the other version directories it cannot account for',
    details: { path },
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isStringArray(v: unknown): v is string[] {
  return Array.isArray(v) && v.every((x) => typeof x === 'string');
}

/**
 * Checks the shape strictly enough that no code reading the state can crash on it. Unknown extra fields are
 * kept as they are (a newer lading may add some); a wrong type or a missing field is refused.
 */
export function validateState(doc: unknown, path = STATE_FILE): InstallState {
  if (!isObject(doc)) throw invalid(path, 'it is not a JSON object');
  if (doc.version !== 1) throw invalid(path, `its version is ${JSON.stringify(doc.version)}, not 1`);
  if (!isObject(doc.packages)) throw invalid(path, '"packages" is not an object');
  for (const [name, pkg] of Object.entries(doc.packages)) {
    const at = `packages[${JSON.stringify(name)}]`;
    if (!NAME_PATTERN.test(name)) throw invalid(path, `${at}: not a valid package name`);
    if (!isObject(pkg)) throw invalid(path, `${at} is not an object`);
    if (pkg.name !== name) throw invalid(path, `${at}.name is not ${JSON.stringify(name)}`);
    if (typeof pkg.family !== 'string') throw invalid(path, `${at}.family is not a string`);
    if (!isObject(pkg.versions)) throw invalid(path, `${at}.versions is not an object`);
    if (!isStringArray(pkg.history)) throw invalid(path, `${at}.history is not an array of strings`);
    for (const h of pkg.history) {
      if (!Object.hasOwn(pkg.versions, h)) throw invalid(path, `${at}.history names ${JSON.stringify(h)}, which is not in versions`);
    }
    if (new Set(pkg.history).size !== pkg.history.length) throw invalid(path, `${at}.history repeats a version`);
    for (const [version, rec] of Object.entries(pkg.versions)) {
      const vat = `${at}.versions[${JSON.stringify(version)}]`;
      if (!NAME_PATTERN.test(version) || RESERVED_VERSION.test(version)) throw invalid(path, `${vat}: not a valid version`);
      if (!isObject(rec)) throw invalid(path, `${vat} is not an object`);
      if (rec.version !== version) throw invalid(path, `${vat}.version is not ${JSON.stringify(version)}`);
      for (const key of ['digest', 'reference', 'family', 'installedAt'] as const) {
        if (typeof rec[key] !== 'string') throw invalid(path, `${vat}.${key} is not a string`);
      }
      for (const key of ['root', 'platform', 'command', 'executable'] as const) {
        if (rec[key] !== undefined && typeof rec[key] !== 'string') throw invalid(path, `${vat}.${key} is not a string`);
      }
      if (!isStringArray(rec.deps)) throw invalid(path, `${vat}.deps is not an array of strings`);
      if (rec.classes !== undefined && !isStringArray(rec.classes)) throw invalid(path, `${vat}.classes is not an array of strings`);
      if (rec.args !== undefined && !isStringArray(rec.args)) throw invalid(path, `${vat}.args is not an array of strings`);
      if (rec.env !== undefined && !(isObject(rec.env) && Object.values(rec.env).every((v) => typeof v === 'string'))) {
        throw invalid(path, `${vat}.env is not an object of strings`);
      }
      for (const key of ['signed', 'found'] as const) {
        if (rec[key] !== undefined && typeof rec[key] !== 'boolean') throw invalid(path, `${vat}.${key} is not a boolean`);
      }
    }
    if (pkg.history.length !== Object.keys(pkg.versions).length) throw invalid(path, `${at}.history does not list every version`);
  }
  return doc as unknown as InstallState;
}
