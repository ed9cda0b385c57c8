import { spawn } from 'node:child_process';
import { chmod, lstat, readdir, readFile, readlink, realpath } from 'node:fs/promises';
import { dirname, join, relative, resolve, sep, isAbsolute } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { LadingError } from '../errors.js';
import type { ProgressEvent, Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import type { Descriptor, Platform } from '../oci/descriptor.js';
import { parseManifest } from '../oci/manifest.js';
import { formatPlatform, hostPlatform } from '../oci/platform.js';
import type { Envelope } from '../artifact/envelope.js';
import type { Families, Family } from '../artifact/family.js';
import { pullTyped, readTyped } from '../artifact/typed.js';
import { checkVariantExtra, formatVariant, selectVariant } from '../artifact/variants.js';
import { fileIndex } from './file-index.js';
import { currentVersion, familyCompatible, readState, type InstalledVersion, type InstallState } from './state.js';
import { openInstallRoot, type InstallRoot } from './store.js';
import { checkPack, findClassConflicts, type InstalledClasses } from './pack.js';
import { installSteps, type InstallStep } from './plan.js';

/** A package name or version as it appears on disk (pkgs/<name>/<version>). */
export const INSTALL_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$/;
export const DEFAULT_STEP_TIMEOUT_MS = 10 * 60 * 1000;
/** How much of a step's output (stdout and stderr together) is kept for the error: the last 1 MiB. */
export const STEP_OUTPUT_LIMIT = 1024 * 1024;
/** How much of that tail the error message itself carries. */
const MESSAGE_TAIL = 2000;

/**
 * What an install reports as it goes, as plain objects: the store's events ('committed', 'switched',
 * 'exposed', with the store's payloads) and the installer's own —
 *   resolved    { reference, digest, root, family, name, version, platform? }   before anything is downloaded
 *   noop        { name, version, digest }                                      that digest is current already
 *   staged      { name, version, digest, path }                                 the staging directory was made
 *   downloaded  { name, version, digest, files, bytes }
 *   steps-run   { name, version, steps }                                        install steps, in the order run
 */
export interface InstallEvent {
  type: string;
  [key: string]: unknown;
}

export interface InstallOptions {
  /** The install root: pkgs/, bin/, .lading/, .staging/ live under it. */
  root: string;
  families: Families;
  /** The variant of an index to install; the host's platform when absent. Ignored for a single manifest. */
  platform?: Platform;
  /** Extra variant keys (`substrate=firecracker`), with the platform. */
  variant?: Record<string, string>;
  /** How messages and the state name the artifact; `reference` by default. */
  display?: string;
  /** The digest the reference must resolve to (a lockfile's pin, a verified digest); E_LOCK_MISMATCH otherwise. */
  expectDigest?: string;
  /** The manifest the variant selection must land on (a lockfile's pin for a platform). */
  expectManifest?: string;
  /** Run the artifact's install steps (needs `signed` too). */
  allowScripts?: boolean;
  /** The caller verified a trusted signature over this artifact. Library users set it only when they did. */
  signed?: boolean;
  /** The host SDK version, for packs. */
  sdkVersion?: string;
  /** Classes the host provides itself, for packs. */
  hostClasses?: string[];
  /** Per install step; 10 minutes by default. */
  stepTimeoutMs?: number;
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
  onEvent?: (event: InstallEvent) => void;
}

export interface InstallResult {
  name: string;
  version: string;
  family: string;
  /** The manifest installed (the variant's, for an index). */
  digest: string;
  /** The index digest, when a variant of an index was installed. */
  root?: string;
  platform?: string;
  /** False when that exact digest was already the current version: nothing changed. */
  changed: boolean;
  /** The version that was current before, when there was one and it differs. */
  previous?: string;
  /** The command exposed under <root>/bin, for a cli. */
  command?: string;
  /** pkgs/<name>/<version>, absolute. */
  path: string;
}

/** What a reference resolves to before anything is downloaded: the manifest to install and its envelope. */
export interface ResolvedArtifact {
  /** What the reference resolved to: the index for a variant, else the manifest. */
  root: Descriptor;
  /** The manifest to pull: the chosen variant, or the root itself. */
  manifest: Descriptor;
  /** Set when the root is an index. */
  platform?: Platform;
  variant?: Record<string, string>;
  family?: Family;
  envelope?: Envelope;
}

export interface ResolveArtifactOptions {
  families: Families;
  platform?: Platform;
  variant?: Record<string, string>;
  expectDigest?: string;
  expectManifest?: string;
  display?: string;
  signal?: AbortSignal;
}

/**
 * Resolves a reference to the one manifest that would be installed, reading only the index, the
 * manifest and its envelope: for an index, the variant of the given platform (the host's by default) and
 * keys, selected exactly as pullTyped selects. Pins are checked here (E_LOCK_MISMATCH).
 */
export async function resolveArtifact(target: Target, reference: string, o: ResolveArtifactOptions): Promise<ResolvedArtifact> {
  const what = o.display ?? reference;
  const extra = checkVariantExtra(o.variant ?? {});
  const root = await target.resolve(reference);
  if (o.expectDigest !== undefined && root.digest !== o.expectDigest) {
    throw new LadingError('E_LOCK_MISMATCH', `${what} resolves to ${root.digest}, not ${o.expectDigest} as expected`, {
      hint: 'the reference moved since it was locked or verified: lock or verify it again, or install the expected digest',
      details: { reference: what, expected: o.expectDigest, actual: root.digest },
    });
  }
  const parsed = parseManifest(await fetchBytes(target, root, undefined, o.signal), root.mediaType);
  if (parsed.kind === 'manifest') {
    if (o.expectManifest !== undefined && root.digest !== o.expectManifest) {
      throw new LadingError('E_LOCK_MISMATCH', `${what} is ${root.digest}, not ${o.expectManifest} as locked`, {
        details: { reference: what, expected: o.expectManifest, actual: root.digest },
      });
    }
    const typed = await readTyped(target, root, o.families, o.signal);
    return { root, manifest: root, ...typed };
  }
  const platform = o.platform ?? hostPlatform();
  const chosen = selectVariant(parsed.manifest.manifests, { platform, extra }, what);
  if (o.expectManifest !== undefined && chosen.digest !== o.expectManifest) {
    throw new LadingError('E_LOCK_MISMATCH', `${what} for ${formatVariant({ platform, extra })} selects ${chosen.digest}, not ${o.expectManifest} as locked`, {
      hint: 'install the platform and variant that were locked, or lock again to accept the change',
      details: { reference: what, expected: o.expectManifest, actual: chosen.digest },
    });
  }
  const inner = parseManifest(await fetchBytes(target, chosen, undefined, o.signal), chosen.mediaType);
  if (inner.kind !== 'manifest') {
    throw new LadingError('E_UNSUPPORTED', `the variant ${formatVariant({ platform, extra })} of ${what} is itself an index`, {
      hint: `install it by digest: ${chosen.digest}`,
    });
  }
  const typed = await readTyped(target, chosen, o.families, o.signal);
  return { root, manifest: chosen, platform, variant: extra, ...typed };
}

/** `<version>` of an envelope: metadata.version, else `sha256-<first 12 hex>` of the manifest digest. */
export function versionFor(envelope: Envelope, manifestDigest: string): string {
  const [algorithm, hex = ''] = manifestDigest.split(':');
  const v = envelope.metadata.version ?? `${algorithm}-${hex.slice(0, 12)}`;
  if (v.toLowerCase() === 'current') {
    throw new LadingError('E_CONFIG_INVALID', `metadata.version: "${v}" cannot name an installed version: pkgs/<name>/current is the pointer to the current one`, {
      hint: 'publish the artifact with another version',
      details: { path: 'metadata.version', version: v },
    });
  }
  if (!INSTALL_NAME_RE.test(v)) {
    throw new LadingError('E_CONFIG_INVALID', `metadata.version: "${v}" cannot name an installed version`, {
      hint: 'use a version of letters, digits and ".", "_", "+", "-" (at most 128, starting with a letter or digit)',
      details: { path: 'metadata.version', version: v },
    });
  }
  return v;
}

function nameFor(envelope: Envelope): string {
  const name = envelope.metadata.name;
  if (!INSTALL_NAME_RE.test(name)) {
    throw new LadingError('E_CONFIG_INVALID', `metadata.name: "${name}" cannot name an installed package`, { details: { path: 'metadata.name', name } });
  }
  return name;
}

/** The events the store itself emits, forwarded to onEvent as `{ type, ...payload }` ('staged' and 'noop' are the installer's). */
const STORE_EVENTS = ['committed', 'switched', 'exposed', 'rolled-back', 'uninstalled'] as const;

/**
 * Installs a cli or pack artifact into `o.root`: resolves it (the host's variant of an index), refuses
 * what cannot be installed before downloading anything, pulls it into a staging directory (every digest
 * verified; the pull is pinned to what was resolved), places the executable or checks the pack, runs the
 * install steps when allowed, commits the version beside the others and switches `current` to it.
 * Reinstalling the digest that is current changes nothing. All of it happens under the root's install lock.
 */
export async function installArtifact(target: Target, reference: string, o: InstallOptions): Promise<InstallResult> {
  const store = await openInstallRoot(o.root);
  const emit = (e: InstallEvent): void => {
    o.onEvent?.(e);
  };
  const forwarders = STORE_EVENTS.map((type) => {
    const fn = (payload: unknown): void => emit({ type, ...(typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {}) });
    store.events.on(type, fn);
    return [type, fn] as const;
  });
  try {
    return await store.withLock(() => install(store, target, reference, o, emit), o.signal);
  } finally {
    for (const [type, fn] of forwarders) store.events.off(type, fn);
  }
}

async function install(store: InstallRoot, target: Target, reference: string, o: InstallOptions, emit: (e: InstallEvent) => void): Promise<InstallResult> {
  const what = o.display ?? reference;
  const resolved = await resolveArtifact(target, reference, {
    families: o.families,
    ...(o.platform ? { platform: o.platform } : {}),
    ...(o.variant ? { variant: o.variant } : {}),
    ...(o.expectDigest !== undefined ? { expectDigest: o.expectDigest } : {}),
    ...(o.expectManifest !== undefined ? { expectManifest: o.expectManifest } : {}),
    display: what,
    ...(o.signal ? { signal: o.signal } : {}),
  });
  const { family, envelope } = resolved;
  if (!family || !envelope) {
    throw new LadingError('E_USAGE', `${what} is not a typed artifact (its config is no known family's envelope), so it cannot be installed`, {
      hint: 'install cli and pack artifacts; pull other artifacts with lading pull',
      details: { reference: what, digest: resolved.manifest.digest },
    });
  }
  if (family.name !== 'cli' && family.name !== 'pack') {
    throw new LadingError('E_USAGE', `${what} is a ${family.name} artifact; lading install installs cli and pack artifacts`, {
      hint: family.mount.mountable || family.name === 'bundle' ? `lay it out with: lading materialize ${what} --root DIR` : 'pull it with lading pull',
      details: { reference: what, family: family.name },
    });
  }
  const name = nameFor(envelope);
  const digest = resolved.manifest.digest;
  const version = versionFor(envelope, digest);
  const platform = resolved.platform ? formatPlatform(resolved.platform) : undefined;
  const rootDigest = resolved.root.digest !== digest ? resolved.root.digest : undefined;
  emit({ type: 'resolved', reference: what, digest, root: resolved.root.digest, family: family.name, name, version, ...(platform ? { platform } : {}) });

  const path = join(store.root, 'pkgs', name, version);
  const state = await readState(store.root);
  const pkg = state.packages[name];
  // A package whose envelope could not be read back (family 'unknown') takes a version of any family.
  if (pkg && !familyCompatible(pkg.family, family.name)) {
    throw new LadingError('E_INSTALL_CONFLICT', `${name} is installed as a ${pkg.family}, and ${what} is a ${family.name}`, {
      hint: `uninstall ${name} first (lading uninstall ${name})`,
      details: { name, installed: pkg.family, family: family.name },
    });
  }
  // A version reconcile found on disk without a record has no digest: the commit compares its files instead.
  const recorded = pkg?.versions[version];
  const existing = recorded && !recorded.found ? recorded : undefined;
  if (existing && existing.digest !== digest) {
    throw new LadingError('E_INSTALL_CONFLICT', `${name} ${version} is installed from ${existing.digest}; ${what} is ${digest}`, {
      hint: `uninstall that version first, or publish the change as a new version`,
      details: { name, version, installed: existing.digest, digest },
    });
  }
  const current = await currentVersion(store.root, name);
  const previous = current !== undefined && current !== version ? current : undefined;
  const base = { name, version, family: family.name, digest, ...(rootDigest ? { root: rootDigest } : {}), ...(platform ? { platform } : {}), path };

  const spec = envelope.spec;
  const isCli = family.name === 'cli';
  if (existing && current === version) {
    // That exact digest is current already: nothing to download, nothing to check again. The command is
    // exposed again from the version's record, so bin/ matches it even after a crash or an older lading.
    if (isCli) await store.exposeFor(name, version);
    emit({ type: 'noop', name, version, digest });
    return { ...base, changed: false, ...(isCli ? { command: existing.command ?? commandOf(spec) } : {}) };
  }

  // Everything decidable from the envelope is refused here, before a byte of content moves.
  let classes: string[] | undefined;
  let steps: InstallStep[] = [];
  let command: string | undefined;
  let executable: string | undefined;
  if (family.name === 'pack') {
    // Also when only switching back to an installed version: the classes must still be free.
    classes = checkPack(spec, { name, sdkVersion: o.sdkVersion, hostClasses: o.hostClasses, installed: otherPacks(state, name, await currentsOf(store, state)) });
  } else {
    executable = String(spec.executable);
    command = commandOf(spec);
    if (!existing) {
      steps = installSteps(spec);
      if (steps.length > 0) checkScriptsAllowed(what, steps, o);
    }
  }

  // A command of another package (or not made by lading) is refused now, not after the commit.
  if (command) await checkCommandFree(store, name, command);

  if (existing) {
    // That exact digest is installed already, just not current: switch to it, nothing to download.
    await store.switchCurrent(name, version);
    if (isCli) await store.exposeFor(name, version);
    return { ...base, changed: true, ...(previous ? { previous } : {}), ...(command ? { command } : {}) };
  }

  const staging = await store.newStaging();
  emit({ type: 'staged', name, version, digest, path: staging });
  try {
    const pulled = await pullTyped(target, resolved.root.digest, staging, {
      families: o.families,
      ...(resolved.platform ? { platform: resolved.platform, variant: resolved.variant ?? {} } : {}),
      // What was checked above is exactly what is pulled.
      expectDigest: resolved.root.digest,
      expectManifest: digest,
      display: what,
      ...(o.signal ? { signal: o.signal } : {}),
      ...(o.onProgress ? { onProgress: o.onProgress } : {}),
    });
    emit({
      type: 'downloaded',
      name,
      version,
      digest,
      files: pulled.files.length,
      bytes: pulled.files.reduce((n, f) => n + f.descriptor.size, 0),
    });

    if (executable) {
      await placeExecutable(staging, executable, what);
      if (steps.length > 0) {
        for (const step of steps) {
          o.signal?.throwIfAborted();
          await runStep(step, { cwd: staging, installDir: path, timeoutMs: o.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS, what, ...(o.signal ? { signal: o.signal } : {}) });
        }
        emit({ type: 'steps-run', name, version, steps: steps.map((s) => s.name) });
        // Steps may have undone what extraction guaranteed: modes are stripped again, and links out of the
        // content and special files are refused.
        await sanitizeContent(staging, path, what);
        // A step may have replaced the executable; it must still be a regular file of the content.
        await placeExecutable(staging, executable, what);
      }
    }

    const files = await fileIndex(staging, { fsync: true });
    const record: InstalledVersion = {
      version,
      digest,
      ...(rootDigest ? { root: rootDigest } : {}),
      reference: what,
      family: family.name,
      ...(platform ? { platform } : {}),
      installedAt: new Date().toISOString(),
      ...(command ? { command } : {}),
      ...(executable ? { executable } : {}),
      ...commandOptions(spec),
      deps: family.name === 'cli' && Array.isArray(spec.deps) ? (spec.deps as string[]).filter((d) => typeof d === 'string') : [],
      ...(classes ? { classes } : {}),
      ...(o.signed ? { signed: true } : {}),
    };
    // 'exists': another process committed this very version meanwhile; ours is dropped, theirs is used.
    await store.commitVersion({ stagingDir: staging, name, version, record, files });
  } finally {
    // Gone after a commit (renamed into pkgs/); after a failure, removed with whatever it held.
    await store.removeStaging(staging);
  }
  await store.switchCurrent(name, version);
  if (isCli) await store.exposeFor(name, version);
  return { ...base, changed: true, ...(previous ? { previous } : {}), ...(command ? { command } : {}) };
}

export interface RollbackOptions {
  /** Classes the host provides itself: a pack rolled back to a version providing one of them is refused. */
  hostClasses?: string[];
  signal?: AbortSignal;
  onEvent?: (event: InstallEvent) => void;
}

/**
 * Moves `name`'s current version back to the one installed before it (the store's rollback), under the
 * install lock. For a pack, the classes of that version are checked first against the host's and the other
 * installed packs' current versions (E_PACK_CONFLICT), as an install of it would be; for a cli, its
 * command is exposed again as that version records it.
 */
export async function rollbackPackage(root: string, name: string, o: RollbackOptions = {}): Promise<{ from: string; to: string }> {
  const store = await openInstallRoot(root);
  const forwarders = STORE_EVENTS.map((type) => {
    const fn = (payload: unknown): void => o.onEvent?.({ type, ...(typeof payload === 'object' && payload !== null ? (payload as Record<string, unknown>) : {}) });
    store.events.on(type, fn);
    return [type, fn] as const;
  });
  try {
    return await store.withLock(async () => {
      const state = await readState(store.root);
      const pkg = state.packages[name];
      const from = await currentVersion(store.root, name);
      if (pkg && from !== undefined && pkg.family === 'pack') {
        // The version the store's rollback lands on: the one before `from` in the history still on disk.
        let to: string | undefined;
        for (let i = pkg.history.indexOf(from) - 1; i >= 0 && to === undefined; i--) {
          const v = pkg.history[i]!;
          if (await isDirectory(join(store.root, 'pkgs', name, v))) to = v;
        }
        const classes = to === undefined ? undefined : pkg.versions[to]?.classes;
        if (classes && classes.length > 0) {
          const conflicts = findClassConflicts(classes, { name, hostClasses: o.hostClasses ?? [], installed: otherPacks(state, name, await currentsOf(store, state)) });
          if (conflicts.length > 0) {
            const list = conflicts.map((c) => `${c.class} (${c.providedBy})`).join(', ');
            throw new LadingError('E_PACK_CONFLICT', `rolling ${name} back to ${to} would provide classes that are already provided: ${list}`, {
              hint: 'uninstall the pack that provides them first, or install the version you want instead',
              details: { name, from, to, conflicts },
            });
          }
        }
      }
      const r = await store.rollback(name);
      // bin/ as that version records it (its command, args and env; none for a pack).
      await store.exposeFor(name, r.to);
      return r;
    }, o.signal);
  } finally {
    for (const [type, fn] of forwarders) store.events.off(type, fn);
  }
}

async function isDirectory(path: string): Promise<boolean> {
  const info = await lstat(path).catch(() => undefined);
  return info !== undefined && info.isDirectory() && !info.isSymbolicLink();
}

function checkScriptsAllowed(what: string, steps: InstallStep[], o: InstallOptions): void {
  const names = steps.map((s) => s.name);
  if (!o.allowScripts) {
    throw new LadingError('E_SCRIPTS_NOT_ALLOWED', `${what} has install steps (${names.join(', ')}), and running them was not allowed`, {
      hint: 'read the steps with lading inspect, then install with --allow-scripts (which also needs a trusted signature)',
      details: { steps: steps.map((s) => ({ name: s.name, run: s.run })) },
    });
  }
  if (!o.signed) {
    throw new LadingError('E_SCRIPTS_NOT_ALLOWED', `${what} has install steps (${names.join(', ')}), which run only for an artifact with a trusted signature`, {
      hint: 'install with --verify (or under a --policy that requires signatures) so that the signature is checked first',
      details: { steps: steps.map((s) => ({ name: s.name, run: s.run })) },
    });
  }
}

/** The current version of every installed package, read from the `current` links. */
async function currentsOf(store: InstallRoot, state: InstallState): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of Object.keys(state.packages)) {
    const v = await currentVersion(store.root, name);
    if (v !== undefined) out.set(name, v);
  }
  return out;
}

function otherPacks(state: InstallState, self: string, currents: Map<string, string>): InstalledClasses[] {
  const out: InstalledClasses[] = [];
  for (const [name, pkg] of Object.entries(state.packages)) {
    if (name === self) continue;
    const v = currents.get(name);
    const rec = v === undefined ? undefined : pkg.versions[v];
    if (rec?.classes && rec.classes.length > 0) out.push({ name, version: v!, classes: rec.classes });
  }
  return out;
}

/** The command a cli spec exposes: spec.name, else the executable's file name. */
function commandOf(spec: Record<string, unknown>): string {
  return typeof spec.name === 'string' ? spec.name : String(spec.executable).split('/').pop()!;
}

/** A cli spec's args and env, as the version's record keeps them (for exposing the command again). */
function commandOptions(spec: Record<string, unknown>): { args?: string[]; env?: Record<string, string> } {
  // The family schema makes these strings; the store checks them again when it writes the wrapper.
  const args = Array.isArray(spec.args) && spec.args.length > 0 ? [...(spec.args as string[])] : undefined;
  const env =
    spec.env !== null && typeof spec.env === 'object' && !Array.isArray(spec.env) && Object.keys(spec.env).length > 0
      ? { ...(spec.env as Record<string, string>) }
      : undefined;
  return { ...(args ? { args } : {}), ...(env ? { env } : {}) };
}

/**
 * bin/<command> must be free or this package's own: a link into pkgs/<name>/current/, or a wrapper the
 * store wrote for it. (exposeCommand checks the same again under the lock; this only refuses early.)
 */
async function checkCommandFree(store: InstallRoot, name: string, command: string): Promise<void> {
  const path = join(store.root, 'bin', command);
  const info = await lstat(path).catch(() => undefined);
  if (!info) return;
  let ours = false;
  if (info.isSymbolicLink()) {
    ours = (await readlink(path)).startsWith(`../pkgs/${name}/current/`);
  } else if (info.isFile() && info.size < 1 << 20) {
    const head = (await readFile(path, 'utf8')).split('\n', 2)[1] ?? '';
    ours = head.startsWith('# lading-wrapper ') && (head.includes(`package=${name} `) || head.endsWith(`package=${name}`));
  }
  if (!ours) {
    throw new LadingError('E_INSTALL_CONFLICT', `${path} exists and is not ${name}'s command`, {
      hint: 'uninstall the package that provides that command, or remove the file if lading did not make it',
      details: { name, command, path },
    });
  }
}

/**
 * The executable must be a regular file inside the content (not a link, not reached through a link that
 * leads out); it is made executable: 0755.
 */
async function placeExecutable(contentDir: string, executable: string, what: string): Promise<void> {
  const path = resolve(contentDir, executable);
  const inside = relative(contentDir, path);
  if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) {
    throw new LadingError('E_UNSAFE_PATH', `spec.executable "${executable}" of ${what} is not inside the content`, { details: { executable } });
  }
  let info;
  try {
    info = await lstat(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') {
      throw new LadingError('E_CONFIG_INVALID', `spec.executable: ${what} has no file ${executable}`, {
        hint: 'the executable must be one of the artifact\'s files (or inside one of its directories)',
        details: { path: 'spec.executable', executable },
      });
    }
    throw err;
  }
  if (info.isSymbolicLink()) {
    throw new LadingError('E_UNSAFE_PATH', `spec.executable: ${executable} of ${what} is a symbolic link, not the executable itself`, {
      hint: 'publish the executable as a regular file',
      details: { executable },
    });
  }
  if (!info.isFile()) {
    throw new LadingError('E_CONFIG_INVALID', `spec.executable: ${executable} of ${what} is not a regular file`, { details: { path: 'spec.executable', executable } });
  }
  // A directory link on the way (made by a directory layer) must not lead out of the content.
  const real = await realpath(path);
  const realRoot = await realpath(contentDir);
  if (!real.startsWith(realRoot + sep)) {
    throw new LadingError('E_UNSAFE_PATH', `spec.executable: ${executable} of ${what} leads out of the content through a link`, { details: { executable } });
  }
  await chmod(path, 0o755);
}

interface StepRun {
  cwd: string;
  installDir: string;
  timeoutMs: number;
  what: string;
  signal?: AbortSignal;
}

/** Keeps the last `limit` bytes written to it. */
class Tail {
  private chunks: Buffer[] = [];
  private size = 0;
  constructor(private readonly limit: number) {}
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0]!.length >= this.limit) this.size -= this.chunks.shift()!.length;
  }
  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - this.limit)).toString('utf8');
  }
}

/**
 * Runs one step: its argv executed directly (no shell) in the staging content directory, with a minimal
 * environment, for at most `timeoutMs`. Anything but exit status 0 is E_INSTALL_STEP_FAILED carrying the
 * status and the tail of the output.
 */
async function runStep(step: InstallStep, r: StepRun): Promise<void> {
  const [file, ...args] = step.run as [string, ...string[]];
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? r.cwd,
    LADING_INSTALL_DIR: r.installDir,
    LADING_STAGING_DIR: r.cwd,
  };
  const tail = new Tail(STEP_OUTPUT_LIMIT);
  // Its own process group, so that a timeout or cancel also stops what the step started (sh -c "make" → make),
  // and so that what it started in the background is stopped when it ends.
  const child = spawn(file, args, { cwd: r.cwd, env, stdio: ['ignore', 'pipe', 'pipe'], shell: false, detached: true });
  const outcome = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: Error; timedOut: boolean; aborted: boolean }>((done) => {
    let settled = false;
    let timedOut = false;
    let aborted = false;
    const kill = (): void => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      try {
        if (child.pid !== undefined) process.kill(-child.pid, 'SIGKILL');
        else child.kill('SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, r.timeoutMs);
    const onAbort = (): void => {
      aborted = true;
      kill();
    };
    r.signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout!.on('data', (c: Buffer) => tail.push(c));
    child.stderr!.on('data', (c: Buffer) => tail.push(c));
    const finish = (code: number | null, signal: NodeJS.Signals | null, error?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      r.signal?.removeEventListener('abort', onAbort);
      // A grandchild holding the pipes open must not keep the install waiting.
      child.stdout!.destroy();
      child.stderr!.destroy();
      done({ code, signal, timedOut, aborted, ...(error ? { error } : {}) });
    };
    child.on('error', (err) => finish(null, null, err));
    // 'close' once the pipes are drained; but a grandchild holding them open must not keep the install
    // waiting, so 'exit' finishes anyway a moment later.
    child.on('close', (code, signal) => finish(code, signal));
    child.on('exit', (code, signal) => {
      // The step is over: whatever it left running in its group goes with it (it could otherwise go on
      // changing the content after the commit), which also closes the pipes those processes held.
      if (child.pid !== undefined) signalGroup(child.pid, 'SIGKILL');
      const grace = setTimeout(() => finish(code, signal), 1000);
      grace.unref();
    });
  });
  // Not a moment before every process of the group is gone does anything look at the content.
  if (child.pid !== undefined) await stopGroup(child.pid, step, r.what);
  if (outcome.aborted) throw new LadingError('E_ABORTED', 'the install was cancelled while a step ran', { details: { step: step.name } });
  if (outcome.code === 0 && !outcome.error && !outcome.timedOut) return;
  const output = tail.text();
  const why = outcome.error
    ? `could not start: ${outcome.error.message}`
    : outcome.timedOut
      ? `did not finish within ${Math.round(r.timeoutMs / 1000)} s and was killed`
      : outcome.signal
        ? `was killed by ${outcome.signal}`
        : `exited with status ${outcome.code}`;
  const shown = output.length > MESSAGE_TAIL ? `…${output.slice(-MESSAGE_TAIL)}` : output;
  throw new LadingError('E_INSTALL_STEP_FAILED', `install step "${step.name}" of ${r.what} ${why}${shown.trim() ? `; output:\n${shown.trimEnd()}` : ''}`, {
    hint: 'nothing was installed; the previous version (if any) is still current',
    details: {
      step: step.name,
      run: step.run,
      ...(outcome.code !== null ? { exitCode: outcome.code } : {}),
      ...(outcome.signal ? { signal: outcome.signal } : {}),
      timedOut: outcome.timedOut,
      output,
    },
  });
}

/** Sends `signal` to every process of the group `pgid`; false when there is none left. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal);
    return true;
  } catch (err) {
    // EPERM: a member we may not signal (it changed its user): it is there all the same.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether any process of the group is still running. A member killed but not yet reaped (a zombie, whose
 * parent — often init, which in a container may never reap — has not collected it) can no longer do
 * anything, so on Linux, where /proc tells, zombies do not count.
 */
async function groupRunning(pgid: number): Promise<boolean> {
  if (!signalGroup(pgid, 0)) return false;
  if (process.platform !== 'linux') return true;
  let entries: string[];
  try {
    entries = await readdir('/proc');
  } catch {
    return true;
  }
  for (const entry of entries) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    // pid (comm) state ppid pgrp ...: comm may hold anything, so the fields are read after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X') return true;
  }
  return false;
}

/** How long the processes of a finished step get to disappear once killed. */
const GROUP_STOP_MS = 10_000;

/**
 * Kills every process left in the step's group and waits (polling with a bounded backoff) until none runs.
 * One that cannot be stopped in time fails the install: the content could still change under it.
 */
async function stopGroup(pgid: number, step: InstallStep, what: string): Promise<void> {
  if (!signalGroup(pgid, 'SIGKILL')) return;
  const deadline = Date.now() + GROUP_STOP_MS;
  for (let wait = 2; ; wait = Math.min(wait * 2, 100)) {
    if (!(await groupRunning(pgid))) return;
    if (Date.now() >= deadline) break;
    signalGroup(pgid, 'SIGKILL');
    await delay(wait);
  }
  throw new LadingError('E_INSTALL_STEP_FAILED', `processes started by install step "${step.name}" of ${what} could not be stopped`, {
    hint: 'nothing was installed; the previous version (if any) is still current',
    details: { step: step.name, run: step.run, processGroup: pgid },
  });
}

const SPECIAL_BITS = 0o7000;
const GROUP_OTHER_WRITE = 0o022;

/**
 * After install steps ran: walks the content without following links and takes away from every file and
 * directory the setuid, setgid and sticky bits and group/other write; refuses (E_UNSAFE_PATH) a link whose
 * target leads out of the content and any device, FIFO or socket. A link may point at the version's final
 * directory (LADING_INSTALL_DIR) by its absolute path: it is judged as if it pointed into the content.
 */
async function sanitizeContent(contentDir: string, installDir: string, what: string): Promise<void> {
  const realRoot = await realpath(contentDir);
  const inside = (p: string): boolean => p === realRoot || p.startsWith(realRoot + sep);
  const refuse = (rel: string, why: string, extra: Record<string, unknown> = {}): never => {
    throw new LadingError('E_UNSAFE_PATH', `after the install steps of ${what}, ${rel} ${why}`, {
      hint: 'install steps must leave only regular files, directories and links that stay inside the content',
      details: { path: rel, ...extra },
    });
  };
  const stack: string[] = [contentDir];
  while (stack.length > 0) {
    const dir = stack.pop()!;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const rel = relative(contentDir, full).split(sep).join('/');
      const info = await lstat(full);
      if (info.isSymbolicLink()) {
        const target = await readlink(full);
        // Judged on the real directory the link lies in, then lexically: a link made to dangle now could
        // lead out later, so the target itself must land inside whether or not it exists.
        const fromDir = await realpath(dir);
        const mapped = isAbsolute(target) && (target === installDir || target.startsWith(installDir + sep)) ? join(realRoot, relative(installDir, target)) : target;
        const lexical = resolve(fromDir, mapped);
        let real: string | undefined;
        try {
          real = await realpath(resolve(dirname(full), mapped));
        } catch {
          real = undefined;
        }
        if (!inside(lexical) || (real !== undefined && !inside(real))) refuse(rel, `is a symbolic link leading out of the content (to ${target})`, { target });
        continue;
      }
      if (info.isDirectory()) {
        // Kept readable and searchable by its owner, so that it can be indexed and removed.
        const mode = (info.mode & 0o7777 & ~(SPECIAL_BITS | GROUP_OTHER_WRITE)) | 0o700;
        if (mode !== (info.mode & 0o7777)) await chmod(full, mode);
        stack.push(full);
        continue;
      }
      if (!info.isFile()) refuse(rel, 'is a device, FIFO or socket, which an installed version may not hold');
      const mode = info.mode & 0o7777 & ~(SPECIAL_BITS | GROUP_OTHER_WRITE);
      if (mode !== (info.mode & 0o7777)) await chmod(full, mode);
    }
  }
}
