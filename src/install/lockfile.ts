import { readFile } from 'node:fs/promises';
import { LadingError, toLadingError } from '../errors.js';
import { writeFileAtomic } from '../content/atomic.js';
import { acquireFileLock } from '../content/lock.js';
import { parseDigest } from '../oci/digest.js';
import { formatPlatform, parsePlatform } from '../oci/platform.js';
import { DEFAULT_TAG, formatReference, parseTargetReference } from '../oci/reference.js';
import { isValidMediaType } from '../oci/mediatype.js';
import { pinnedRef, type PlanNode, type PlanVariant } from '../artifact/bundle.js';
import { checkVariantExtra, selectVariant, variantAnnotations, type VariantSelector } from '../artifact/variants.js';
import type { Descriptor } from '../oci/descriptor.js';

/**
 * `lading.lock`: what each reference resolved to when it was locked. Every artifact of a bundle has an
 * entry of its own, so that a frozen pull or install of any locked reference — the bundle or one of its
 * components — can be checked against it without the network telling us what "should" be there.
 */

export const LOCKFILE_NAME = 'lading.lock';
export const LOCKFILE_VERSION = 1;
/** Far above any real lockfile; bounds what a damaged or hostile file makes us parse. */
const MAX_LOCKFILE_BYTES = 16 * 1024 * 1024;

export interface LockEntry {
  digest: string;
  mediaType: string;
  size: number;
  family?: string;
  /** For an index locked for one platform: the platform of the variant selected (`linux/amd64`) … */
  platform?: string;
  /** … its extra variant keys … */
  variant?: Record<string, string>;
  /** … and the digest of the variant's manifest that this selected. */
  manifest?: string;
  /** Keys of the bundle's components, in spec order; each has an entry of its own. */
  components?: string[];
}

export interface Lockfile {
  lockfileVersion: 1;
  /** Keyed by the reference in its full form (see lockKey). */
  artifacts: Record<string, LockEntry>;
}

export function emptyLockfile(): Lockfile {
  return { lockfileVersion: LOCKFILE_VERSION, artifacts: {} };
}

/**
 * The full form of a reference, which keys the lockfile: registry and `library/` made explicit, `latest`
 * written when neither tag nor digest is (`ubuntu` → `docker.io/library/ubuntu:latest`), and for layouts
 * `layout:<dir>:<tag>` or `layout:<dir>@<digest>` with the directory as written.
 */
export function lockKey(ref: string): string {
  const t = parseTargetReference(ref);
  if (t.kind === 'layout') {
    const tag = t.tag ?? (t.digest === undefined ? DEFAULT_TAG : undefined);
    return `layout:${t.dir}${tag === undefined ? '' : `:${tag}`}${t.digest === undefined ? '' : `@${t.digest}`}`;
  }
  const r = t.ref;
  return formatReference(r.tag === undefined && r.digest === undefined ? { ...r, tag: DEFAULT_TAG } : r);
}

/**
 * The key of a plan node: its reference, with the digest added when the digest was fixed by what was
 * written (a component's `digest`) rather than by resolving a tag now — `x:1` pinned by a bundle and `x:1`
 * locked by tag may rightly be two different digests.
 */
export function lockKeyOf(node: PlanNode): string {
  const key = lockKey(node.ref);
  if (node.pinnedBy === 'tag' || digestOf(key) !== undefined) return key;
  return `${key}@${node.digest}`;
}

function digestOf(ref: string): string | undefined {
  const t = parseTargetReference(ref);
  return t.kind === 'layout' ? t.digest : t.ref.digest;
}

// ---- reading and validation -------------------------------------------------------------------------

const TOP_FIELDS = ['lockfileVersion', 'artifacts'];
const ENTRY_FIELDS = ['digest', 'mediaType', 'size', 'family', 'platform', 'variant', 'manifest', 'components'];

function invalid(source: string, path: string, why: string): LadingError {
  return new LadingError('E_LOCK_INVALID', `${source}: ${path}: ${why}`, {
    hint: `fix or delete ${source} and run lading lock <ref> to write it again`,
    details: { path, file: source },
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function keyPath(key: string): string {
  return `artifacts[${JSON.stringify(key)}]`;
}

function refuseUnknown(o: Record<string, unknown>, known: string[], source: string, path: string): void {
  for (const k of Object.keys(o)) {
    if (!known.includes(k)) throw invalid(source, path === '' ? k : `${path}.${k}`, 'unknown field');
  }
}

function digestField(v: unknown, source: string, path: string): string {
  if (typeof v !== 'string') throw invalid(source, path, 'must be a digest string');
  try {
    parseDigest(v);
  } catch (err) {
    throw invalid(source, path, (err as Error).message);
  }
  return v;
}

function checkEntry(v: unknown, source: string, path: string): LockEntry {
  if (!isObject(v)) throw invalid(source, path, 'must be an object');
  refuseUnknown(v, ENTRY_FIELDS, source, path);
  const entry: LockEntry = {
    digest: digestField(v.digest, source, `${path}.digest`),
    mediaType: '',
    size: 0,
  };
  if (typeof v.mediaType !== 'string' || !isValidMediaType(v.mediaType)) throw invalid(source, `${path}.mediaType`, 'must be a media type');
  entry.mediaType = v.mediaType;
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) throw invalid(source, `${path}.size`, 'must be a non-negative integer');
  entry.size = v.size;
  if (v.family !== undefined) {
    if (typeof v.family !== 'string' || v.family === '') throw invalid(source, `${path}.family`, 'must be a family name');
    entry.family = v.family;
  }
  if (v.platform !== undefined) {
    if (typeof v.platform !== 'string') throw invalid(source, `${path}.platform`, 'must be a platform string such as linux/amd64');
    let canonical: string;
    try {
      canonical = formatPlatform(parsePlatform(v.platform));
    } catch (err) {
      throw invalid(source, `${path}.platform`, (err as Error).message);
    }
    if (canonical !== v.platform || v.platform.toLowerCase() === 'native') {
      throw invalid(source, `${path}.platform`, `must be written in canonical form ("${canonical}")`);
    }
    entry.platform = v.platform;
  }
  if (v.variant !== undefined) {
    if (!isObject(v.variant)) throw invalid(source, `${path}.variant`, 'must be an object of strings');
    for (const [k, val] of Object.entries(v.variant)) {
      if (typeof val !== 'string') throw invalid(source, `${path}.variant.${k}`, 'must be a string');
    }
    try {
      entry.variant = checkVariantExtra(v.variant as Record<string, string>);
    } catch (err) {
      throw invalid(source, `${path}.variant`, (err as Error).message);
    }
  }
  if (v.manifest !== undefined) entry.manifest = digestField(v.manifest, source, `${path}.manifest`);
  if ((entry.variant !== undefined || entry.manifest !== undefined) && entry.platform === undefined) {
    throw invalid(source, path, 'variant and manifest are recorded only with a platform');
  }
  if (v.components !== undefined) {
    if (!Array.isArray(v.components)) throw invalid(source, `${path}.components`, 'must be an array of references');
    entry.components = v.components.map((c, i) => {
      if (typeof c !== 'string') throw invalid(source, `${path}.components[${i}]`, 'must be a reference string');
      return c;
    });
  }
  return entry;
}

/** Parses and strictly checks lockfile text; E_LOCK_INVALID naming the path of the first fault. */
export function parseLockfile(text: string, source = LOCKFILE_NAME): Lockfile {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LadingError('E_LOCK_INVALID', `${source} is not valid JSON: ${(err as Error).message}`, {
      hint: `fix or delete ${source} and run lading lock <ref> to write it again`,
      details: { file: source },
    });
  }
  if (!isObject(value)) throw invalid(source, '(top level)', 'must be a JSON object');
  refuseUnknown(value, TOP_FIELDS, source, '');
  if (value.lockfileVersion !== LOCKFILE_VERSION) {
    throw invalid(source, 'lockfileVersion', `must be ${LOCKFILE_VERSION}, got ${JSON.stringify(value.lockfileVersion)}`);
  }
  if (!isObject(value.artifacts)) throw invalid(source, 'artifacts', 'must be an object keyed by reference');
  const lock = emptyLockfile();
  for (const [key, raw] of Object.entries(value.artifacts)) {
    const path = keyPath(key);
    let canonical: string;
    try {
      canonical = lockKey(key);
    } catch (err) {
      throw invalid(source, path, (err as Error).message);
    }
    if (canonical !== key) throw invalid(source, path, `the reference must be written in full ("${canonical}")`);
    lock.artifacts[key] = checkEntry(raw, source, path);
  }
  for (const [key, entry] of Object.entries(lock.artifacts)) {
    entry.components?.forEach((c, i) => {
      if (lock.artifacts[c] === undefined) throw invalid(source, `${keyPath(key)}.components[${i}]`, `"${c}" has no entry of its own`);
    });
  }
  return lock;
}

/** The lockfile, or undefined when there is none. */
export async function readLockfile(path: string): Promise<Lockfile | undefined> {
  let text: string;
  try {
    const bytes = await readFile(path);
    if (bytes.length > MAX_LOCKFILE_BYTES) {
      throw new LadingError('E_LOCK_INVALID', `${path} is ${bytes.length} bytes, over the ${MAX_LOCKFILE_BYTES}-byte limit for a lockfile`, {
        details: { file: path, size: bytes.length },
      });
    }
    text = bytes.toString('utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw toLadingError(err);
  }
  return parseLockfile(text, path);
}

/** The lockfile, or E_NOT_FOUND when there is none (a frozen operation has nothing to check against). */
export async function requireLockfile(path: string, ref?: string): Promise<Lockfile> {
  const lock = await readLockfile(path);
  if (lock) return lock;
  throw new LadingError('E_NOT_FOUND', `there is no lockfile at ${path}`, {
    hint: `run lading lock ${ref ?? '<ref>'} to write one`,
    details: { file: path },
  });
}

// ---- writing -----------------------------------------------------------------------------------------

function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The field order is the format's, map keys are sorted: the same lock always gives the same bytes. */
function orderedEntry(e: LockEntry): Record<string, unknown> {
  const out: Record<string, unknown> = { digest: e.digest, mediaType: e.mediaType, size: e.size };
  if (e.family !== undefined) out.family = e.family;
  if (e.platform !== undefined) out.platform = e.platform;
  if (e.variant !== undefined) out.variant = Object.fromEntries(Object.entries(e.variant).sort(([a], [b]) => byCodeUnit(a, b)));
  if (e.manifest !== undefined) out.manifest = e.manifest;
  if (e.components !== undefined) out.components = [...e.components];
  return out;
}

export function encodeLockfile(lock: Lockfile): string {
  const artifacts = Object.fromEntries(
    Object.keys(lock.artifacts)
      .sort(byCodeUnit)
      .map((k) => [k, orderedEntry(lock.artifacts[k]!)]),
  );
  return `${JSON.stringify({ lockfileVersion: LOCKFILE_VERSION, artifacts }, null, 2)}\n`;
}

function lockOptions(path: string) {
  return { what: path, timeoutMs: 60_000 };
}

/** Replaces the lockfile as a whole: checked, then written atomically under the lockfile's lock. */
export async function writeLockfile(path: string, lock: Lockfile): Promise<void> {
  const text = encodeLockfile(lock);
  parseLockfile(text, path);
  const release = await acquireFileLock(`${path}.lock`, lockOptions(path));
  try {
    await writeFileAtomic(path, text);
  } finally {
    await release();
  }
}

/**
 * Reads the lockfile, merges `entries` into it and writes it back, all under the lockfile's lock: two
 * `lading lock` runs at once both land, neither undoing the other. Returns the lock as written.
 */
export async function updateLockfile(path: string, entries: Record<string, LockEntry>): Promise<Lockfile> {
  const release = await acquireFileLock(`${path}.lock`, lockOptions(path));
  try {
    const merged = mergeLock((await readLockfile(path)) ?? emptyLockfile(), entries);
    const text = encodeLockfile(merged);
    parseLockfile(text, path);
    await writeFileAtomic(path, text);
    return merged;
  } finally {
    await release();
  }
}

/**
 * The lock with `entries` put in place of whatever those references held; every other entry stays, even
 * components a re-locked bundle no longer names, since another bundle or the user may have locked them.
 */
export function mergeLock(lock: Lockfile, entries: Record<string, LockEntry>): Lockfile {
  const artifacts: Record<string, LockEntry> = { ...lock.artifacts };
  for (const [ref, entry] of Object.entries(entries)) artifacts[lockKey(ref)] = entry;
  return { lockfileVersion: LOCKFILE_VERSION, artifacts };
}

// ---- from a plan -------------------------------------------------------------------------------------

export interface LockPlatformOptions {
  /** A platform string (`linux/amd64`, `native`); every index node records the variant it selects. */
  platform?: string;
  /** Extra variant keys, matched exactly. */
  variant?: Record<string, string>;
}

/**
 * One entry per artifact of the plan, keyed by lockKeyOf. With a platform, every index node records the
 * variant that platform selects (by the same rule as pull); an index without one is E_VARIANT_NOT_FOUND,
 * since a frozen install for that platform could not succeed.
 */
export function lockEntriesFromPlan(plan: PlanNode, opts: LockPlatformOptions = {}): Record<string, LockEntry> {
  const want: VariantSelector | undefined =
    opts.platform === undefined ? undefined : { platform: parsePlatform(opts.platform), extra: checkVariantExtra(opts.variant ?? {}) };
  const out: Record<string, LockEntry> = {};
  const visit = (node: PlanNode): string => {
    const key = lockKeyOf(node);
    const entry: LockEntry = { digest: node.digest, mediaType: node.mediaType, size: node.size };
    if (node.family !== undefined) entry.family = node.family;
    if (want !== undefined && node.variants) {
      const chosen = selectPlanVariant(node, want);
      // What was selected, not what was asked: `windows/amd64` may have picked one os.version.
      entry.platform = chosen.platform;
      if (Object.keys(chosen.extra).length > 0) entry.variant = { ...chosen.extra };
      entry.manifest = chosen.digest;
    }
    const before = out[key];
    // The resolver answers each tag once, so this only trips on a plan assembled by hand.
    if (before !== undefined && before.digest !== entry.digest) {
      throw new LadingError('E_LOCK_INVALID', `${key} appears in the plan as both ${before.digest} and ${entry.digest}`, {
        details: { reference: key, digests: [before.digest, entry.digest] },
      });
    }
    // Placed before its components, so that the entries come in resolution order.
    out[key] = entry;
    if (node.components) entry.components = node.components.map(visit);
    return key;
  };
  visit(plan);
  return out;
}

/** selectVariant over the plan's record of the index, so that lock and pull choose by one rule. */
function selectPlanVariant(node: PlanNode, want: VariantSelector): PlanVariant {
  const variants = node.variants!.filter((v) => v.platform !== '');
  const entries: Descriptor[] = variants.map((v) => ({
    mediaType: node.mediaType,
    digest: v.digest,
    size: 0,
    platform: parsePlatform(v.platform),
    annotations: variantAnnotations(v.extra),
  }));
  const chosen = selectVariant(entries, want, node.ref);
  return variants[entries.indexOf(chosen)]!;
}

// ---- frozen checks -----------------------------------------------------------------------------------

/**
 * Refuses drift: `ref` must be in the lock and resolve to the locked digest (and, where both are known,
 * select the locked variant manifest). Returns the entry.
 */
export function checkFrozen(lock: Lockfile, ref: string, resolved: { digest: string; manifest?: string }): LockEntry {
  const key = lockKey(ref);
  const entry = lock.artifacts[key];
  if (!entry) {
    throw new LadingError('E_LOCK_MISMATCH', `${key} is not in the lockfile`, {
      hint: `run lading lock ${ref} to lock it, or drop --frozen`,
      details: { reference: key, locked: null, current: resolved.digest },
    });
  }
  const pinnedHint = `run lading lock ${ref} to accept the change, or pull by the locked digest (${pinnedRef(key, entry.digest)})`;
  if (entry.digest !== resolved.digest) {
    throw new LadingError('E_LOCK_MISMATCH', `${key} is locked to ${entry.digest} but now resolves to ${resolved.digest}`, {
      hint: pinnedHint,
      details: { reference: key, locked: entry.digest, current: resolved.digest },
    });
  }
  if (entry.manifest !== undefined && resolved.manifest !== undefined && entry.manifest !== resolved.manifest) {
    throw new LadingError(
      'E_LOCK_MISMATCH',
      `${key} for ${entry.platform ?? 'the locked platform'} is locked to manifest ${entry.manifest} but now selects ${resolved.manifest}`,
      {
        hint: `pull with --platform ${entry.platform ?? '<platform>'} as locked, or run lading lock ${ref} to accept the change`,
        details: { reference: key, locked: entry.manifest, current: resolved.manifest, platform: entry.platform },
      },
    );
  }
  return entry;
}

/** Every node of a freshly resolved plan against the lock: what `--frozen` means for a bundle. */
export function checkFrozenPlan(lock: Lockfile, plan: PlanNode): void {
  const visit = (node: PlanNode): void => {
    checkFrozen(lock, lockKeyOf(node), { digest: node.digest });
    node.components?.forEach(visit);
  };
  visit(plan);
}
