import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, realpath, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, posix, sep } from 'node:path';
import { LadingError } from '../errors.js';
import type { ProgressEvent } from '../content/interfaces.js';
import { fsyncDir, writeFileAtomic } from '../content/atomic.js';
import type { Platform } from '../oci/descriptor.js';
import { formatPlatform } from '../oci/platform.js';
import { BUNDLE_FAMILY, resolveBundle, type Opener, type PlanNode } from '../artifact/bundle.js';
import type { Families } from '../artifact/family.js';
import { pullTyped } from '../artifact/typed.js';
import { resolveArtifact, type ResolvedArtifact } from './install.js';
import { InstallRoot } from './store.js';

/** Written inside every directory materialize lays out: how a later run knows the directory is its own. */
export const MATERIALIZED_MARKER = '.lading-materialized.json';
/** A marker is a few hundred bytes; anything much bigger is not one. */
const MAX_MARKER_BYTES = 64 * 1024;
/** Top-level names under the root that belong to lading itself and can never be a mount path. */
const RESERVED_TOP = new Set(['.lading', '.staging']);

export interface MaterializeOptions {
  /** The directory mount paths are laid out under: `/srv/site` becomes `<root>/srv/site`. */
  root: string;
  families: Families;
  /** The variant taken from an index; the host's platform by default. */
  platform?: Platform;
  variant?: Record<string, string>;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  onEvent?: (event: { type: string; [key: string]: unknown }) => void;
}

export interface MaterializedComponent {
  /** The reference as written (by the caller for the root, in the bundle spec for a component). */
  reference: string;
  family: string;
  /** The mount path, absolute (`/srv/site`). */
  mountPath: string;
  /** The manifest laid out (the variant's, for an index). */
  digest: string;
  /** Where it lies on disk: `<root>/<mountPath>`. */
  path: string;
  readOnly: boolean;
  /** False when that digest was already laid out there. */
  changed: boolean;
}

/** What the marker file holds. */
interface Marker {
  digest: string;
  root?: string;
  reference: string;
  family: string;
  mountPath: string;
  platform?: string;
  materializedAt: string;
}

interface Item {
  node: PlanNode;
  resolved: ResolvedArtifact;
  family: string;
  mountPath: string;
  readOnly: boolean;
  dest: string;
  action: 'new' | 'replace' | 'same';
}

/**
 * Checks a mount path: absolute, normalized (no `.`/`..` segments, no doubled or trailing `/`), not `/`
 * itself, no NUL or backslash, and not one of the names lading keeps under the root. E_UNSAFE_PATH otherwise.
 */
export function checkMountPath(path: string, what: string): string {
  const bad = (why: string): never => {
    throw new LadingError('E_UNSAFE_PATH', `${what}: mount path ${JSON.stringify(path)} ${why}`, {
      hint: 'a mount path is an absolute, normalized path such as /srv/site, with no ".." segments',
      details: { mountPath: path },
    });
  };
  if (typeof path !== 'string' || !path.startsWith('/')) bad('is not absolute');
  if (path.includes('\0') || path.includes('\\')) bad('holds a NUL or backslash');
  if (path.split('/').some((s) => s === '..' || s === '.')) bad('has "." or ".." segments');
  if (posix.normalize(path) !== path || (path.length > 1 && path.endsWith('/'))) bad('is not normalized');
  if (path === '/') bad('is the root itself');
  if (RESERVED_TOP.has(path.split('/')[1]!)) bad('lies in a directory lading keeps for itself');
  return path;
}

/**
 * Lays out a mountable artifact (a fileset, config, or any family with a mount path), or every mountable
 * component of a bundle, under `o.root` at its mount path. Everything is resolved and checked (paths,
 * what is already there) before anything is downloaded, and everything is downloaded (beside its mount path) before
 * the first directory is swapped in. A path laid out by an earlier run (it holds the marker) is replaced
 * when the digest differs and left alone when it is the same; anything else there is E_INSTALL_CONFLICT.
 */
export async function materializeArtifact(opener: Opener, reference: string, o: MaterializeOptions): Promise<MaterializedComponent[]> {
  const plan = await resolveBundle(opener, reference, o.families, o.signal ? { signal: o.signal } : {});
  // Not openInstallRoot: a materialize root gets only .lading/ (its lock), no pkgs/ or bin/.
  const store = new InstallRoot(o.root);
  return store.withLock(() => materialize(store, opener, plan, o), o.signal);
}

async function materialize(store: InstallRoot, opener: Opener, plan: PlanNode, o: MaterializeOptions): Promise<MaterializedComponent[]> {
  const emit = (e: { type: string; [key: string]: unknown }): void => o.onEvent?.(e);
  const leaves: PlanNode[] = [];
  // Bundles (nested ones too) stand for their components; every other node is laid out itself.
  const collect = (n: PlanNode): void => {
    if (n.family === BUNDLE_FAMILY) for (const c of n.components ?? []) collect(c);
    else leaves.push(n);
  };
  collect(plan);
  const isBundle = plan.family === BUNDLE_FAMILY;

  // 1. Resolve every leaf to the manifest that would be laid out, and its mount path.
  const items: Item[] = [];
  for (const node of leaves) {
    const { target, reference } = await opener.open(node.pinned);
    const resolved = await resolveArtifact(target, reference, {
      families: o.families,
      expectDigest: node.digest,
      display: node.ref,
      ...(o.platform ? { platform: o.platform } : {}),
      ...(o.variant ? { variant: o.variant } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
    });
    const mount = node.mount ?? resolved.envelope?.mount;
    const family = resolved.family?.name ?? node.family ?? 'untyped';
    if (!mount) {
      if (!isBundle) {
        throw new LadingError('E_USAGE', `${node.ref} is a ${family} artifact without a mount path, so there is nothing to materialize`, {
          hint: family === 'cli' || family === 'pack' ? `install it with: lading install ${node.ref}` : 'materialize filesets, configs and bundles (or give the artifact a mount path)',
          details: { reference: node.ref, family },
        });
      }
      emit({ type: 'skipped', reference: node.ref, family, reason: 'no mount path' });
      continue;
    }
    const mountPath = checkMountPath(mount.path, node.ref);
    items.push({ node, resolved, family, mountPath, readOnly: mount.readOnly, dest: join(store.root, ...mountPath.slice(1).split('/')), action: 'new' });
  }
  if (items.length === 0) {
    throw new LadingError('E_USAGE', `${plan.ref} has no component with a mount path, so there is nothing to materialize`, {
      hint: 'give the components a mount path in the bundle spec (mount.path)',
      details: { reference: plan.ref },
    });
  }
  const sorted = [...items].sort((a, b) => (a.mountPath < b.mountPath ? -1 : a.mountPath > b.mountPath ? 1 : 0));
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1]!, sorted[i]!];
    if (b.mountPath === a.mountPath || b.mountPath.startsWith(`${a.mountPath}/`)) {
      throw new LadingError('E_CONFIG_INVALID', `${b.node.ref} would be mounted at ${b.mountPath}, ${b.mountPath === a.mountPath ? 'where' : 'inside where'} ${a.node.ref} is mounted (${a.mountPath})`, {
        hint: 'give each component a mount path of its own, none inside another',
        details: { mountPaths: [a.mountPath, b.mountPath] },
      });
    }
  }

  // 2. What is there now: nothing, an earlier materialize (same digest or not), or something else. What a
  //    run that crashed mid-swap left beside a destination is repaired first.
  for (const item of items) {
    await refuseLinkedParents(store.root, item.dest, item.mountPath);
    await repairSwap(item.dest, emit);
    item.action = await existingAction(item);
  }

  // 3. Download everything that changes, each beside its destination (same directory, so the swap is a
  //    rename within one filesystem), under a name a later run recognises as a leftover.
  const staged: Array<{ item: Item; staging: string; laid: string }> = [];
  const results: MaterializedComponent[] = [];
  try {
    for (const item of items) {
      if (item.action === 'same') continue;
      await refuseLinkedParents(store.root, item.dest, item.mountPath);
      await mkdir(dirname(item.dest), { recursive: true });
      const staging = siblingPath(item.dest, 'new');
      staged.push({ item, staging, laid: staging });
      const { target } = await opener.open(item.node.pinned);
      const r = item.resolved;
      await pullTyped(target, r.root.digest, staging, {
        families: o.families,
        ...(r.platform ? { platform: r.platform, variant: r.variant ?? {} } : {}),
        expectDigest: r.root.digest,
        expectManifest: r.manifest.digest,
        display: item.node.ref,
        ...(o.signal ? { signal: o.signal } : {}),
        ...(o.onProgress ? { onProgress: o.onProgress } : {}),
      });
      const laid = await laidDir(staging, item);
      const marker: Marker = {
        digest: r.manifest.digest,
        ...(r.root.digest !== r.manifest.digest ? { root: r.root.digest } : {}),
        reference: item.node.ref,
        family: item.family,
        mountPath: item.mountPath,
        ...(r.platform ? { platform: formatPlatform(r.platform) } : {}),
        materializedAt: new Date().toISOString(),
      };
      await writeFileAtomic(join(laid, MATERIALIZED_MARKER), `${JSON.stringify(marker, null, 2)}\n`);
      staged[staged.length - 1]!.laid = laid;
      emit({ type: 'downloaded', reference: item.node.ref, digest: r.manifest.digest, mountPath: item.mountPath });
    }

    // 4. Swap each into place: the old one (ours) is renamed aside, the new one in, then the old one removed.
    //    A crash between the two renames leaves the old one aside, where the next run puts it back.
    for (const { item, laid } of staged) {
      o.signal?.throwIfAborted();
      await refuseLinkedParents(store.root, item.dest, item.mountPath);
      const now = await existingAction(item);
      if (now === 'same') continue;
      const parent = dirname(item.dest);
      let old: string | undefined;
      if (now === 'replace') {
        old = siblingPath(item.dest, 'old');
        await rename(item.dest, old);
      }
      try {
        await rename(laid, item.dest);
      } catch (err) {
        if (old !== undefined) await rename(old, item.dest).catch(() => undefined);
        throw err;
      }
      await fsyncDir(parent);
      if (old !== undefined) await rm(old, { recursive: true, force: true }).catch(() => undefined);
      emit({ type: 'materialized', reference: item.node.ref, digest: item.resolved.manifest.digest, mountPath: item.mountPath, replaced: now === 'replace' });
    }
  } finally {
    for (const { staging } of staged) await rm(staging, { recursive: true, force: true }).catch(() => undefined);
  }
  for (const item of items) {
    if (item.action === 'same') emit({ type: 'noop', reference: item.node.ref, digest: item.resolved.manifest.digest, mountPath: item.mountPath });
    results.push({
      reference: item.node.ref,
      family: item.family,
      mountPath: item.mountPath,
      digest: item.resolved.manifest.digest,
      path: item.dest,
      readOnly: item.readOnly,
      changed: item.action !== 'same',
    });
  }
  return results;
}

/** The directory that is laid out: the content, or for a fileset with `spec.root`, that directory of it. */
async function laidDir(content: string, item: Item): Promise<string> {
  const sub = item.family === 'fileset' ? item.resolved.envelope?.spec.root : undefined;
  if (typeof sub !== 'string' || sub === '' || sub === '.') return content;
  const dir = join(content, ...sub.split('/'));
  const info = await lstat(dir).catch(() => undefined);
  if (!info || info.isSymbolicLink() || !info.isDirectory()) {
    throw new LadingError('E_CONFIG_INVALID', `spec.root: ${item.node.ref} has no directory ${sub}`, {
      hint: 'spec.root names a directory of the fileset\'s content',
      details: { path: 'spec.root', root: sub },
    });
  }
  const real = await realpath(dir);
  const realContent = await realpath(content);
  if (!real.startsWith(realContent + sep)) {
    throw new LadingError('E_UNSAFE_PATH', `spec.root: ${sub} of ${item.node.ref} leads out of the content`, { details: { root: sub } });
  }
  return dir;
}

/** What to do at `item.dest`: lay it out, replace an earlier layout, or nothing (same digest there). */
async function existingAction(item: Item): Promise<Item['action']> {
  const info = await lstat(item.dest).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!info) return 'new';
  const conflict = (why: string): never => {
    throw new LadingError('E_INSTALL_CONFLICT', `${item.mountPath} ${why}; materializing ${item.node.ref} would replace it`, {
      hint: `move ${item.dest} away, or mount the artifact elsewhere`,
      details: { mountPath: item.mountPath, path: item.dest },
    });
  };
  if (info.isSymbolicLink() || !info.isDirectory()) return conflict('exists and is not a directory lading laid out');
  const marker = await readMarker(join(item.dest, MATERIALIZED_MARKER));
  if (!marker) return conflict('exists and was not laid out by lading materialize');
  return marker.digest === item.resolved.manifest.digest ? 'same' : 'replace';
}

async function readMarker(path: string): Promise<Marker | undefined> {
  const info = await lstat(path).catch(() => undefined);
  if (!info || !info.isFile() || info.size > MAX_MARKER_BYTES) return undefined;
  try {
    const doc = JSON.parse(await readFile(path, 'utf8')) as unknown;
    if (typeof doc === 'object' && doc !== null && typeof (doc as Marker).digest === 'string') return doc as Marker;
  } catch {
    // not a marker
  }
  return undefined;
}

/** No directory between the root and the destination may be a link (it could lead anywhere) or a file. */
async function refuseLinkedParents(root: string, dest: string, mountPath: string): Promise<void> {
  const segments = mountPath.slice(1).split('/').slice(0, -1);
  let dir = root;
  for (const s of segments) {
    dir = join(dir, s);
    const info = await lstat(dir).catch(() => undefined);
    if (!info) return;
    if (info.isSymbolicLink()) {
      throw new LadingError('E_UNSAFE_PATH', `${dir} is a symbolic link; laying ${mountPath} out through it could write outside ${root}`, {
        hint: 'remove the link, or materialize into another root',
        details: { mountPath, link: dir, dest },
      });
    }
    if (!info.isDirectory()) {
      throw new LadingError('E_INSTALL_CONFLICT', `${dir} is a file, where ${mountPath} needs a directory`, { details: { mountPath, path: dir } });
    }
  }
}

/** `<parent>/.<base>.lading-<kind>-<id>`: where a new copy is staged, or an old one is put aside, beside `dest`. */
function siblingPath(dest: string, kind: 'new' | 'old'): string {
  return join(dirname(dest), `.${basename(dest)}.lading-${kind}-${randomBytes(8).toString('hex')}`);
}

/** The names siblingPath gives for `dest`, with their kind. */
function siblingKind(dest: string, entry: string): 'new' | 'old' | undefined {
  const prefix = `.${basename(dest)}.lading-`;
  if (!entry.startsWith(prefix)) return undefined;
  const m = /^(new|old)-[0-9a-f]{16}$/.exec(entry.slice(prefix.length));
  return m ? (m[1] as 'new' | 'old') : undefined;
}

/**
 * Repairs what a run that stopped mid-way left beside `dest`: a copy being downloaded (`.lading-new-*`) is
 * removed; an old copy put aside (`.lading-old-*`, holding our marker) is put back when `dest` is missing
 * (the crash came between the two renames), and removed when `dest` is there (it came after them).
 */
async function repairSwap(dest: string, emit: (e: { type: string; [key: string]: unknown }) => void): Promise<void> {
  const parent = dirname(dest);
  const entries = await readdir(parent).catch(() => [] as string[]);
  const olds: string[] = [];
  for (const entry of entries.sort()) {
    const kind = siblingKind(dest, entry);
    if (kind === 'new') await rm(join(parent, entry), { recursive: true, force: true });
    else if (kind === 'old') {
      const info = await lstat(join(parent, entry)).catch(() => undefined);
      if (info?.isDirectory() && !info.isSymbolicLink() && (await readMarker(join(parent, entry, MATERIALIZED_MARKER)))) olds.push(entry);
    }
  }
  if (olds.length === 0) return;
  let restored: string | undefined;
  if (!(await lstat(dest).catch(() => undefined))) {
    // Only one swap runs at a time (under the lock), so there is one; should there be more, the newest wins.
    let newest: { entry: string; mtime: number } | undefined;
    for (const entry of olds) {
      const mtime = (await lstat(join(parent, entry))).mtimeMs;
      if (!newest || mtime > newest.mtime) newest = { entry, mtime };
    }
    restored = newest!.entry;
    await rename(join(parent, restored), dest);
    await fsyncDir(parent);
    emit({ type: 'repaired', path: dest, restored: true });
  }
  for (const entry of olds) if (entry !== restored) await rm(join(parent, entry), { recursive: true, force: true });
}
