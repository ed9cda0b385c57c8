import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { constants } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { LadingError, isLadingError, toLadingError } from '../errors.js';
import { fsyncDir, tempPathFor, writeFileAtomic } from '../content/atomic.js';
import { acquireFileLock } from '../content/lock.js';
import { fileIndex, sameFileIndex, type FileIndex } from './file-index.js';
import {
  checkName,
  checkVersion,
  currentVersion,
  familyCompatible,
  readState,
  updateState,
  STATE_DIR,
  UNKNOWN_FAMILY,
  type InstalledVersion,
  type InstallState,
} from './state.js';

/**
 * An install root and the operations that change it. Everything becomes visible by one rename:
 *
 *   .staging/<pid>-<hex>/        work in progress of the lock's holder; garbage once the lock changes hands
 *   pkgs/<name>/<version>/       a committed version (renamed in whole from .staging, mode 0755 & ~umask)
 *   pkgs/<name>/.files/<v>.json  its file index, written before the version directory's rename
 *   pkgs/<name>/current          symlink → "<version>", replaced by symlink-to-temp + rename (the commit point)
 *   bin/<command>                symlink → "../pkgs/<name>/current/<exe>", or a 0755 sh wrapper; temp + rename
 *   .lading/state.json           what is installed (see state.ts); .lading/install.lock serialises changes
 *
 * Every changing operation runs under install.lock; the lock is re-entrant within one async context while
 * its holder is inside `withLock`, so an installer can hold it for a whole install and call these operations
 * inside. Every creator of a staging entry holds the lock, so the next holder removes whatever it finds there.
 *
 * A SIGKILL at any point leaves `current` on the old or the new version, never missing or dangling; what
 * the dead process left (its staging, a version directory renamed but not recorded, temp links, orphan file
 * indexes, bin/ entries not matching the current versions) is repaired by the next holder of the lock
 * (`reconcile`, run by openInstallRoot and at the start of every withLock).
 */

export type InstallEventName = 'staged' | 'committed' | 'switched' | 'exposed' | 'rolled-back' | 'uninstalled' | 'noop';

/** Payloads of the events the store itself emits (always plain objects). 'staged' and 'noop' are the installer's. */
export interface CommittedEvent { name: string; version: string; digest: string; path: string }
export interface SwitchedEvent { name: string; from?: string; to: string }
export interface ExposedEvent { name: string; command: string; path: string; wrapper: boolean }
export interface RolledBackEvent { name: string; from: string; to: string }
export interface UninstalledEvent { name: string; versions: string[]; commands: string[]; forced: boolean; dependents: string[] }

export interface ReconcileReport {
  /** Names of .staging entries removed. */
  staging: string[];
  /** `name@version` of version directories removed (on disk, not in state, not current). */
  removed: string[];
  /** `name@version` of version directories recorded as found (not in state, but current). */
  found: string[];
  /** `name@version` dropped from the state because their directory is gone. */
  dropped: string[];
  /** bin/ entries removed: of packages without a current version, or not the current version's command. */
  unexposed: string[];
  /** Packages whose current version's command could not be exposed (a conflict, a missing executable). */
  unexposable: string[];
}

export interface ListedPackage {
  name: string;
  family: string;
  current?: string;
  /** In install order. */
  versions: InstalledVersion[];
}

export interface InstallRootOptions {
  /**
   * Called (and awaited) at fixed points inside the operations, for tests that stop a process at an exact
   * moment: 'commit:indexed', 'commit:renamed', 'commit:recorded', 'switch:linked', 'switch:renamed',
   * 'expose:linked', 'expose:renamed', 'uninstall:unexposed', 'uninstall:moved'.
   */
  checkpoint?: (point: string) => void | Promise<void>;
  /**
   * Whether reconcile also checks pkgs/ and bin/ against the state (true for openInstallRoot). A root made
   * with the constructor alone (a materialize root, whose mount paths may be anything, pkgs/ included) only
   * gets its .staging cleaned.
   */
  packages?: boolean;
}

/**
 * How long withLock waits for install.lock. A lock whose holder died is broken at once, and one whose holder
 * is a live process on this host is never broken by age (it may be paused, or just slow), so this is how long
 * an install may wait behind another one still running: bounded, but longer than any install takes.
 */
export const INSTALL_LOCK_WAIT_MS = 24 * 60 * 60_000;
/**
 * install.lock staleness: a live holder on this host keeps it however long it runs or is stopped; a holder
 * on another host (a shared filesystem), whose pid cannot be checked, refreshes it every few minutes and
 * loses it when it has not for this long. One naming this very process that it does not hold was left by
 * an earlier process with the same pid, and is broken.
 */
const INSTALL_LOCK_STALE = { staleMs: 10 * 60_000, liveStaleMs: Number.POSITIVE_INFINITY, breakOwnPidLocks: true } as const;
/** withLock waits in slices of this long, so that an abort is noticed. */
const LOCK_SLICE_MS = 1_000;
const WRAPPER_MARK = '# lading-wrapper package=';
const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** As pullTyped writes it (src/artifact/typed.ts ENVELOPE_FILE), bounded as envelope.ts bounds envelopes. */
const ENVELOPE_FILE = 'lading.envelope.json';
const MAX_ENVELOPE_BYTES = 4 * 1024 * 1024;

/** One holding of an install root's lock. Inactive once withLock returned, whatever was scheduled inside. */
interface Hold {
  active: boolean;
  /** Names of the .staging entries made while holding it (reconcile leaves those). */
  created: Set<string>;
}

/** The holds of install roots in the current async context (re-entrancy while the hold is active). */
const held = new AsyncLocalStorage<ReadonlyMap<string, Hold>>();

/**
 * What `lading list` shows, read without changing anything (no directory made, no lock, no reconcile), so
 * that it works on a root the user can only read: every package in the state, sorted by name, with the
 * version its `current` link points at and its versions in install order.
 */
export async function listInstalled(root: string): Promise<ListedPackage[]> {
  const abs = resolve(root);
  const state = await readState(abs);
  const out: ListedPackage[] = [];
  for (const name of Object.keys(state.packages).sort()) {
    const pkg = state.packages[name]!;
    const current = await currentVersion(abs, name);
    out.push({
      name,
      family: pkg.family,
      ...(current === undefined ? {} : { current }),
      versions: pkg.history.map((v) => pkg.versions[v]!),
    });
  }
  return out;
}

/** Creates the root's directories, reconciles it when no other process holds its lock, and returns it. */
export async function openInstallRoot(root: string, opts: InstallRootOptions = {}): Promise<InstallRoot> {
  const r = new InstallRoot(root, { ...opts, packages: opts.packages ?? true });
  try {
    for (const d of [STATE_DIR, '.staging', 'pkgs', 'bin']) await mkdir(join(r.root, d), { recursive: true });
  } catch (err) {
    throw toLadingError(err);
  }
  await r.tryReconcile();
  return r;
}

export class InstallRoot {
  readonly root: string;
  readonly events = new EventEmitter();
  readonly #opts: InstallRootOptions;

  constructor(root: string, opts: InstallRootOptions = {}) {
    this.root = resolve(root);
    this.#opts = opts;
  }

  get stagingRoot(): string {
    return join(this.root, '.staging');
  }

  /** `<root>/pkgs/<name>/<version>` (where a committed version lives). */
  versionPath(name: string, version: string): string {
    return join(this.root, 'pkgs', checkName(name, 'name'), checkVersion(version));
  }

  /** Whether the current async context holds this root's install.lock (inside an active withLock). */
  get locked(): boolean {
    return this.#hold() !== undefined;
  }

  /**
   * Runs `fn` holding `.lading/install.lock`, after reconciling the root. Waits as long as the holder lives
   * (up to INSTALL_LOCK_WAIT_MS; a lock whose holder died is broken at once); `signal` ends the wait with
   * E_ABORTED. Re-entrant: inside `fn` (until it returns), this and the other operations do not lock again.
   */
  async withLock<T>(fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#hold()) return fn();
    const release = await this.#acquire(signal);
    return this.#holding(release, async (hold) => {
      await this.#reconcileLocked(hold, true);
      return fn();
    });
  }

  /** Removes what crashed operations left behind (see ReconcileReport); waits for the lock. */
  async reconcile(signal?: AbortSignal): Promise<ReconcileReport> {
    const hold = this.#hold();
    if (hold) return this.#reconcileLocked(hold, false);
    const release = await this.#acquire(signal);
    return this.#holding(release, (h) => this.#reconcileLocked(h, true));
  }

  /** Reconciles when the lock is free (or held by a dead process); returns undefined when a live process holds it. */
  async tryReconcile(): Promise<ReconcileReport | undefined> {
    const hold = this.#hold();
    if (hold) return this.#reconcileLocked(hold, false);
    let release: () => Promise<void>;
    try {
      release = await acquireFileLock(this.#lockPath(), { timeoutMs: 0, ...INSTALL_LOCK_STALE, what: `install root ${this.root}` });
    } catch (err) {
      if (isLockTimeout(err)) return undefined;
      throw err;
    }
    return this.#holding(release, (h) => this.#reconcileLocked(h, true));
  }

  /**
   * A new, empty `<root>/.staging/<pid>-<hex>` (mode 0700). Only inside withLock (else E_USAGE): the next
   * holder of the lock removes every staging entry it did not make itself.
   */
  async newStaging(): Promise<string> {
    const hold = this.#hold();
    if (!hold) {
      throw new LadingError('E_USAGE', `staging in ${this.root} needs its install lock`, {
        hint: 'call newStaging inside InstallRoot.withLock, and finish with the staging directory before it returns',
      });
    }
    const id = `${process.pid}-${randomBytes(8).toString('hex')}`;
    const path = join(this.stagingRoot, id);
    try {
      await mkdir(this.stagingRoot, { recursive: true });
      hold.created.add(id);
      await mkdir(path, { mode: 0o700 });
    } catch (err) {
      hold.created.delete(id);
      throw toLadingError(err);
    }
    return path;
  }

  /** Removes a staging entry (or anything inside .staging); refuses paths outside it. */
  async removeStaging(path: string): Promise<void> {
    const abs = this.#insideStaging(path);
    await rm(abs, { recursive: true, force: true }).catch(() => undefined);
    const rel = relative(this.stagingRoot, abs);
    if (!rel.includes('/')) this.#hold()?.created.delete(rel);
  }

  /**
   * Makes `stagingDir` the version `<name>/<version>`: writes `.files/<version>.json`, renames the directory
   * into `pkgs/<name>/<version>` in one step, fsyncs, and records the version (last in history).
   *
   * When that version is already there: the same digest (or, for a version found on disk without a digest,
   * the same files) → 'exists', the staging directory is removed and the version moves to the end of the
   * history; anything else → E_INSTALL_CONFLICT.
   */
  async commitVersion(o: {
    stagingDir: string;
    name: string;
    version: string;
    record: InstalledVersion;
    files: FileIndex;
  }): Promise<'committed' | 'exists'> {
    const { name, version, record, files } = o;
    checkName(name, 'name');
    checkVersion(version);
    if (record.version !== version) {
      throw new LadingError('E_USAGE', `the record is for version ${record.version}, not ${version}`);
    }
    const staging = this.#insideStaging(o.stagingDir);
    return this.withLock(async () => {
      const pkgDir = join(this.root, 'pkgs', name);
      const dest = join(pkgDir, version);
      const state = await readState(this.root);
      const pkg = state.packages[name];
      if (pkg && !familyCompatible(pkg.family, record.family)) {
        throw new LadingError('E_INSTALL_CONFLICT', `${name} is installed as a ${pkg.family}, not a ${record.family}`, {
          hint: `uninstall ${name} first, or publish under another name`,
          details: { name, installed: pkg.family, incoming: record.family },
        });
      }
      if (await exists(dest)) return this.#existing(staging, dest, o, state);
      try {
        // Each directory made on the way is made durable in its parent before anything relies on it.
        if ((await mkdir(pkgDir, { recursive: true })) !== undefined) await fsyncDir(join(this.root, 'pkgs'));
        if ((await mkdir(join(pkgDir, '.files'), { recursive: true })) !== undefined) await fsyncDir(pkgDir);
        await writeFileAtomic(join(pkgDir, '.files', `${version}.json`), `${JSON.stringify(files)}\n`);
        // Staging is private (0700); a committed version is readable like any installed program.
        await chmod(staging, 0o755 & ~process.umask());
      } catch (err) {
        throw toLadingError(err);
      }
      await this.#checkpoint('commit:indexed');
      try {
        await rename(staging, dest);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if ((code === 'ENOTEMPTY' || code === 'EEXIST') && (await exists(dest))) {
          return this.#existing(staging, dest, o, await readState(this.root));
        }
        throw toLadingError(err);
      }
      this.#forgetStaging(staging);
      await fsyncDir(pkgDir);
      await fsyncDir(dirname(staging));
      await this.#checkpoint('commit:renamed');
      await updateState(this.root, (s) => {
        addVersion(s, name, record);
      });
      await this.#checkpoint('commit:recorded');
      this.events.emit('committed', { name, version, digest: record.digest, path: dest } satisfies CommittedEvent);
      return 'committed';
    });
  }

  async #existing(
    staging: string,
    dest: string,
    o: { name: string; version: string; record: InstalledVersion; files: FileIndex },
    state: InstallState,
  ): Promise<'exists'> {
    const { name, version, record } = o;
    const have = state.packages[name]?.versions[version];
    const st = await lstat(dest);
    let same: boolean;
    if (!st.isDirectory()) same = false;
    else if (have && !have.found) same = have.digest === record.digest;
    else same = sameFileIndex(await fileIndex(dest), o.files);
    if (!same) {
      throw new LadingError(
        'E_INSTALL_CONFLICT',
        `${name}@${version} is already installed${have?.digest ? ` with digest ${have.digest}` : ''}, and ${record.digest} differs`,
        {
          hint: 'uninstall that version first, or publish the new content under a new version',
          details: { name, version, installed: have?.digest ?? null, incoming: record.digest },
        },
      );
    }
    await this.removeStaging(staging);
    await updateState(this.root, (s) => {
      const cur = s.packages[name]?.versions[version];
      // A version found on disk gets the real record; a recorded one keeps its own (first install time).
      addVersion(s, name, cur && !cur.found ? cur : record);
    });
    if (!have || have.found) {
      await writeFileAtomic(join(this.root, 'pkgs', name, '.files', `${version}.json`), `${JSON.stringify(o.files)}\n`);
    }
    return 'exists';
  }

  /**
   * Points `pkgs/<name>/current` at `version` (symlink to a temp name, then rename), then makes bin/ that
   * version's (exposeFor; also when it was current already, which repairs bin/). Returns the previous version.
   */
  async switchCurrent(name: string, version: string): Promise<string | undefined> {
    checkName(name, 'name');
    checkVersion(version);
    return this.withLock(async () => {
      const pkgDir = join(this.root, 'pkgs', name);
      const st = await lstat(join(pkgDir, version)).catch(() => undefined);
      if (!st?.isDirectory()) {
        throw new LadingError('E_INSTALL_NOT_FOUND', `${name}@${version} is not installed`, { details: { name, version } });
      }
      const from = await currentVersion(this.root, name);
      if (from === version) {
        await this.#exposeCurrent(name, version);
        return from;
      }
      const tmp = join(pkgDir, `.current.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
      try {
        await symlink(version, tmp);
        await this.#checkpoint('switch:linked');
        await rename(tmp, join(pkgDir, 'current'));
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => undefined);
        if (isLadingError(err)) throw err;
        throw new LadingError('E_INSTALL_CONFLICT', `could not switch ${name} to ${version}: ${(err as Error).message}`, {
          hint: `${join(pkgDir, 'current')} should be a symlink made by lading`,
          cause: err,
        });
      }
      await fsyncDir(pkgDir);
      await this.#checkpoint('switch:renamed');
      this.events.emit('switched', { name, ...(from === undefined ? {} : { from }), to: version } satisfies SwitchedEvent);
      await this.#exposeCurrent(name, version);
      return from;
    });
  }

  /**
   * Makes bin/ what `version` (the current version of `name`) records: its command (rewritten unless its
   * link target or wrapper bytes are already exactly right) — a relative symlink through `current`, or a
   * 0755 sh wrapper when the record has args or env — and none of the package's other bin entries (a
   * command an earlier version had, say). A version with no command (a pack) leaves the package no bin
   * entry; a version found on disk whose command is unknown leaves bin/ as it is. E_USAGE when `version`
   * is not current; E_INSTALL_CONFLICT when bin/<command> is another package's or not lading's.
   */
  async exposeFor(name: string, version: string): Promise<void> {
    checkName(name, 'name');
    checkVersion(version);
    await this.withLock(async () => {
      const cur = await currentVersion(this.root, name);
      if (cur !== version) {
        throw new LadingError('E_USAGE', `${name}@${version} is not the current version${cur === undefined ? '' : ` (${cur} is)`}`, {
          hint: 'switch to it first (switchCurrent exposes it as well)',
          details: { name, version, current: cur ?? null },
        });
      }
      await this.#exposeCurrent(name, version);
    });
  }

  /**
   * Exposes `pkgs/<name>/current/<executable>` as `bin/<command>`: a relative symlink, or, when args or env
   * are given, a 0755 POSIX sh wrapper that exports the env and execs the executable (by its absolute path)
   * with the args before the caller's. Replaces a bin entry of the same package unless it is exactly that
   * already (same link target, or same wrapper bytes and mode: then nothing is written and no event sent);
   * refuses (E_INSTALL_CONFLICT) one of another package or one lading did not make.
   *
   * bin/ follows the records: switchCurrent exposes what the new current version records (exposeFor), and
   * every new holder of the lock makes bin/ match the current versions' records again. So a command made
   * here that its current version's record does not name (or with other args/env) lasts only until then;
   * installers record command, executable, args and env, and need not call this after switchCurrent.
   */
  async exposeCommand(
    name: string,
    command: string,
    executable: string,
    o: { args?: string[]; env?: Record<string, string> } = {},
  ): Promise<void> {
    await this.withLock(async () => {
      await this.#writeCommand(name, command, executable, o, { quiet: false });
    });
  }

  /** bin/<command> for `executable` of `name`'s current version; false when it was exactly that already. */
  async #writeCommand(
    name: string,
    command: string,
    executable: string,
    o: { args?: string[]; env?: Record<string, string> },
    mode: { quiet: boolean },
  ): Promise<boolean> {
    checkName(name, 'name');
    checkName(command, 'command');
    checkRelative(executable);
    const args = o.args ?? [];
    const env = Object.entries(o.env ?? {});
    for (const a of args) {
      if (typeof a !== 'string' || a.includes('\0')) throw new LadingError('E_CONFIG_INVALID', `argument ${JSON.stringify(a)} of ${command} is not a string without NUL`);
    }
    for (const [k, v] of env) {
      if (!ENV_KEY.test(k)) throw new LadingError('E_CONFIG_INVALID', `environment name ${JSON.stringify(k)} of ${command} is not valid`);
      if (typeof v !== 'string' || v.includes('\0')) throw new LadingError('E_CONFIG_INVALID', `environment value of ${k} for ${command} is not a string without NUL`);
    }
    const target = `../pkgs/${name}/current/${executable}`;
    const exe = join(this.root, 'pkgs', name, 'current', ...executable.split('/'));
    const st = await stat(exe).catch(() => undefined);
    if (!st?.isFile()) {
      throw new LadingError('E_INSTALL_NOT_FOUND', `the current version of ${name} has no executable ${executable}`, {
        details: { name, executable },
      });
    }
    const binDir = join(this.root, 'bin');
    const binPath = join(binDir, command);
    await mkdir(binDir, { recursive: true });
    const owner = await binOwner(binPath);
    if (owner.kind === 'foreign' || (owner.kind === 'package' && owner.name !== name)) {
      throw new LadingError(
        'E_INSTALL_CONFLICT',
        owner.kind === 'package'
          ? `bin/${command} belongs to package ${owner.name}`
          : `bin/${command} exists and was not made by lading`,
        {
          hint: owner.kind === 'package' ? `uninstall ${owner.name} first` : `move ${binPath} out of the way`,
          details: { command, path: binPath, owner: owner.kind === 'package' ? owner.name : null },
        },
      );
    }
    const wrapper = args.length > 0 || env.length > 0;
    const script = wrapper ? wrapperScript(name, command, join(this.root, 'pkgs', name, 'current', executable), args, env) : undefined;
    if (owner.kind === 'package' && (await binContentIs(binPath, script === undefined ? { link: target } : { script }))) return false;
    const tmp = tempPathFor(binPath);
    try {
      if (script === undefined) await symlink(target, tmp);
      else await writeExecutable(tmp, script);
      if (!mode.quiet) await this.#checkpoint('expose:linked');
      await rename(tmp, binPath);
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => undefined);
      throw toLadingError(err);
    }
    await fsyncDir(binDir);
    if (!mode.quiet) {
      await this.#checkpoint('expose:renamed');
      this.events.emit('exposed', { name, command, path: binPath, wrapper } satisfies ExposedEvent);
    }
    return true;
  }

  /** exposeFor's work, under the lock: `version` is current. */
  async #exposeCurrent(
    name: string,
    version: string,
    o: { quiet?: boolean; owned?: string[]; removed?: string[]; record?: InstalledVersion } = {},
  ): Promise<void> {
    const rec = o.record ?? (await readState(this.root)).packages[name]?.versions[version];
    if (!rec) {
      throw new LadingError('E_INSTALL_NOT_FOUND', `${name}@${version} is not recorded as installed`, { details: { name, version } });
    }
    // Found on disk without a readable envelope: which command it has is unknown, so bin/ stays as it is.
    if (rec.found && rec.command === undefined) return;
    const command = rec.command !== undefined && rec.executable !== undefined ? rec.command : undefined;
    const binDir = join(this.root, 'bin');
    const owned = o.owned ?? (await binEntriesOf(binDir, name));
    const stale = owned.filter((e) => e !== command);
    for (const entry of stale) {
      await unlink(join(binDir, entry)).catch(() => undefined);
      o.removed?.push(entry);
    }
    if (stale.length > 0) await fsyncDir(binDir);
    if (command !== undefined) {
      await this.#writeCommand(
        name,
        command,
        rec.executable!,
        { ...(rec.args ? { args: rec.args } : {}), ...(rec.env ? { env: rec.env } : {}) },
        { quiet: o.quiet === true },
      );
    }
  }

  /**
   * Moves `current` to the version installed just before it (the one before it in the history that is
   * still on disk). Records nothing: the history stays as it is, so a second rollback goes one further
   * back (it does not alternate), and E_INSTALL_NOT_FOUND once there is no earlier version.
   */
  async rollback(name: string): Promise<{ from: string; to: string }> {
    checkName(name, 'name');
    return this.withLock(async () => {
      const pkg = (await readState(this.root)).packages[name];
      if (!pkg) throw notInstalled(name);
      const from = await currentVersion(this.root, name);
      if (from === undefined) {
        throw new LadingError('E_INSTALL_NOT_FOUND', `${name} has no current version to roll back from`, { details: { name } });
      }
      let to: string | undefined;
      for (let i = pkg.history.indexOf(from) - 1; i >= 0; i--) {
        const v = pkg.history[i]!;
        if (await isDir(join(this.root, 'pkgs', name, v))) {
          to = v;
          break;
        }
      }
      if (to === undefined) {
        throw new LadingError('E_INSTALL_NOT_FOUND', `no version of ${name} was installed before ${from}`, {
          hint: 'install the version you want instead',
          details: { name, current: from, history: pkg.history },
        });
      }
      await this.switchCurrent(name, to);
      this.events.emit('rolled-back', { name, from, to } satisfies RolledBackEvent);
      return { from, to };
    });
  }

  /**
   * Removes a package: its bin entries, then its whole directory (renamed into .staging in one step, then
   * deleted), then its state entry. Refused with E_INSTALL_DEPENDED_ON while another package's current
   * version lists it in its deps, unless `force`.
   */
  async uninstall(name: string, o: { force?: boolean } = {}): Promise<void> {
    checkName(name, 'name');
    await this.withLock(async () => {
      const state = await readState(this.root);
      const pkg = state.packages[name];
      const pkgDir = join(this.root, 'pkgs', name);
      const onDisk = await isDir(pkgDir);
      if (!pkg && !onDisk) throw notInstalled(name);
      const dependents: string[] = [];
      for (const [other, p] of Object.entries(state.packages)) {
        if (other === name) continue;
        const cur = await currentVersion(this.root, other);
        if (cur !== undefined && p.versions[cur]?.deps.includes(name)) dependents.push(other);
      }
      dependents.sort();
      if (dependents.length > 0 && !o.force) {
        throw new LadingError('E_INSTALL_DEPENDED_ON', `${name} is needed by ${dependents.join(', ')}`, {
          hint: `uninstall ${dependents.join(', ')} first, or pass --force`,
          details: { name, dependents },
        });
      }
      const binDir = join(this.root, 'bin');
      const commands: string[] = [];
      for (const entry of await readdir(binDir).catch(() => [] as string[])) {
        const owner = await binOwner(join(binDir, entry));
        if (owner.kind === 'package' && owner.name === name) {
          await unlink(join(binDir, entry)).catch(() => undefined);
          commands.push(entry);
        }
      }
      await fsyncDir(binDir);
      await this.#checkpoint('uninstall:unexposed');
      let trash: string | undefined;
      if (onDisk) {
        trash = this.#trashPath();
        try {
          await rename(pkgDir, trash);
        } catch (err) {
          throw toLadingError(err);
        }
        await fsyncDir(join(this.root, 'pkgs'));
        await this.#checkpoint('uninstall:moved');
      }
      await updateState(this.root, (s) => {
        delete s.packages[name];
      });
      if (trash) await this.removeStaging(trash);
      this.events.emit('uninstalled', {
        name,
        versions: pkg?.history ?? [],
        commands: commands.sort(),
        forced: dependents.length > 0,
        dependents,
      } satisfies UninstalledEvent);
    });
  }

  /** Every package in the state, sorted by name, with its current version and its versions in install order. */
  async list(): Promise<ListedPackage[]> {
    return listInstalled(this.root);
  }

  // ---- internals --------------------------------------------------------------------------------------

  #lockPath(): string {
    return join(this.root, STATE_DIR, 'install.lock');
  }

  async #acquire(signal?: AbortSignal): Promise<() => Promise<void>> {
    await mkdir(join(this.root, STATE_DIR), { recursive: true }).catch((err) => {
      throw toLadingError(err);
    });
    const deadline = Date.now() + INSTALL_LOCK_WAIT_MS;
    const slices = Math.ceil(INSTALL_LOCK_WAIT_MS / LOCK_SLICE_MS) + 1;
    let last: unknown;
    for (let i = 0; i < slices; i++) {
      if (signal?.aborted) throw new LadingError('E_ABORTED', 'the operation was cancelled', { cause: signal.reason });
      try {
        return await acquireFileLock(this.#lockPath(), {
          timeoutMs: Math.max(0, Math.min(LOCK_SLICE_MS, deadline - Date.now())),
          ...INSTALL_LOCK_STALE,
          what: `install root ${this.root}`,
        });
      } catch (err) {
        if (!isLockTimeout(err)) throw err;
        last = err;
        if (Date.now() >= deadline) break;
      }
    }
    throw last;
  }

  #hold(): Hold | undefined {
    const hold = held.getStore()?.get(this.root);
    return hold?.active ? hold : undefined;
  }

  /** Runs `fn` with a new active hold in its async context; the hold ends (inactive) and the lock is released after. */
  async #holding<T>(release: () => Promise<void>, fn: (hold: Hold) => Promise<T>): Promise<T> {
    const hold: Hold = { active: true, created: new Set() };
    try {
      return await held.run(new Map([...(held.getStore() ?? []), [this.root, hold]]), () => fn(hold));
    } finally {
      hold.active = false;
      await release();
    }
  }

  /** A fresh name in .staging for something to delete (it counts as made by this hold). */
  #trashPath(): string {
    const id = `${process.pid}-${randomBytes(8).toString('hex')}`;
    this.#hold()?.created.add(id);
    return join(this.stagingRoot, id);
  }

  #forgetStaging(path: string): void {
    const rel = relative(this.stagingRoot, path);
    if (rel !== '' && !rel.includes('/') && !rel.startsWith('..')) this.#hold()?.created.delete(rel);
  }

  async #checkpoint(point: string): Promise<void> {
    await this.#opts.checkpoint?.(point);
  }

  #insideStaging(path: string): string {
    const abs = resolve(path);
    const rel = relative(this.stagingRoot, abs);
    if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) {
      throw new LadingError('E_USAGE', `${path} is not inside ${this.stagingRoot}`, {
        hint: 'stage work in a directory from InstallRoot.newStaging()',
      });
    }
    return abs;
  }

  /**
   * Under the lock (`hold`). `fresh`: the lock was just taken, so nothing in the root is anyone's work in
   * progress — every staging entry and temp file is garbage, whatever pid its name carries (a pid can be
   * reused). Otherwise (an explicit reconcile inside a hold) what this hold made, and temps named with
   * this process's pid, are left.
   */
  async #reconcileLocked(hold: Hold, fresh: boolean): Promise<ReconcileReport> {
    const report: ReconcileReport = { staging: [], removed: [], found: [], dropped: [], unexposed: [], unexposable: [] };
    const garbageTemp = (entry: string): boolean => entry.startsWith('.') && entry.endsWith('.tmp') && (fresh || tempPid(entry) !== process.pid);
    // 1. Staging: every creator holds the lock, so what this hold did not make is left by an earlier holder.
    for (const entry of await readdir(this.stagingRoot).catch(() => [] as string[])) {
      if (hold.created.has(entry)) continue;
      await rm(join(this.stagingRoot, entry), { recursive: true, force: true }).catch(() => undefined);
      report.staging.push(entry);
    }
    if (this.#opts.packages !== true) return report;
    // 2. Temp files of the state store's writer (all of them hold install.lock).
    const stateDir = join(this.root, STATE_DIR);
    for (const entry of await readdir(stateDir).catch(() => [] as string[])) {
      if (garbageTemp(entry)) await rm(join(stateDir, entry), { force: true }).catch(() => undefined);
    }
    // 3. Version directories against the state.
    const state = await readState(this.root);
    const pkgsDir = join(this.root, 'pkgs');
    const found: Array<[string, InstalledVersion]> = [];
    const dropped: Array<[string, string]> = [];
    const packagesOnDisk = new Set<string>();
    for (const name of await readdir(pkgsDir).catch(() => [] as string[])) {
      const pkgDir = join(pkgsDir, name);
      if (!isName(name) || !(await isDir(pkgDir))) continue;
      packagesOnDisk.add(name);
      const cur = await currentVersion(this.root, name);
      const recorded = state.packages[name]?.versions ?? {};
      const present = new Set<string>();
      for (const entry of await readdir(pkgDir)) {
        const path = join(pkgDir, entry);
        if (entry === 'current' || entry === '.files') continue;
        if (entry.startsWith('.current.') && entry.endsWith('.tmp')) {
          if (garbageTemp(entry)) await rm(path, { force: true }).catch(() => undefined);
          continue;
        }
        if (!isVersion(entry) || !(await isDir(path))) continue;
        if (Object.hasOwn(recorded, entry)) {
          present.add(entry);
        } else if (cur === entry) {
          present.add(entry);
          const known = await fromEnvelope(path, name);
          const rec: InstalledVersion = {
            version: entry,
            digest: '',
            reference: '',
            installedAt: new Date().toISOString(),
            deps: [],
            ...known,
            family: known.family ?? state.packages[name]?.family ?? UNKNOWN_FAMILY,
            found: true,
          };
          found.push([name, rec]);
          report.found.push(`${name}@${entry}`);
        } else {
          const trash = this.#trashPath();
          await rename(path, trash).then(
            () => rm(trash, { recursive: true, force: true }),
            () => rm(path, { recursive: true, force: true }),
          );
          this.#forgetStaging(trash);
          await rm(join(pkgDir, '.files', `${entry}.json`), { force: true });
          report.removed.push(`${name}@${entry}`);
        }
      }
      // File indexes of versions that are not there (a commit killed before its rename), and temps.
      const filesDir = join(pkgDir, '.files');
      for (const entry of await readdir(filesDir).catch(() => [] as string[])) {
        const orphan = entry.endsWith('.json') && !entry.startsWith('.') && !present.has(entry.slice(0, -'.json'.length));
        if (orphan || garbageTemp(entry)) await rm(join(filesDir, entry), { force: true }).catch(() => undefined);
      }
      for (const v of Object.keys(recorded)) {
        if (!present.has(v)) {
          dropped.push([name, v]);
          report.dropped.push(`${name}@${v}`);
        }
      }
      if (present.size === 0 && cur === undefined) {
        await rm(pkgDir, { recursive: true, force: true }).catch(() => undefined);
        await fsyncDir(pkgsDir);
      }
    }
    for (const [name, pkg] of Object.entries(state.packages)) {
      if (packagesOnDisk.has(name)) continue;
      for (const v of pkg.history) {
        dropped.push([name, v]);
        report.dropped.push(`${name}@${v}`);
      }
    }
    let now = state;
    if (found.length > 0 || dropped.length > 0) {
      now = await updateState(this.root, (s) => {
        for (const [name, v] of dropped) {
          const p = s.packages[name];
          if (!p) continue;
          delete p.versions[v];
          p.history = p.history.filter((h) => h !== v);
          if (p.history.length === 0) delete s.packages[name];
        }
        for (const [name, rec] of found) addVersion(s, name, rec, { atStart: true });
      });
    }
    // 4. bin/ from the current versions: a kill between a switch and its expose, or during an uninstall,
    //    leaves bin/ behind `current`; here it catches up.
    const binDir = join(this.root, 'bin');
    const owned = new Map<string, string[]>();
    for (const entry of await readdir(binDir).catch(() => [] as string[])) {
      if (entry.startsWith('.') && entry.endsWith('.tmp')) {
        if (garbageTemp(entry)) await rm(join(binDir, entry), { force: true }).catch(() => undefined);
        continue;
      }
      const owner = await binOwner(join(binDir, entry)).catch(() => ({ kind: 'foreign' }) as const);
      if (owner.kind === 'package') owned.set(owner.name, [...(owned.get(owner.name) ?? []), entry]);
    }
    const currents = new Map<string, string>();
    for (const name of Object.keys(now.packages)) {
      const cur = await currentVersion(this.root, name).catch(() => undefined);
      if (cur !== undefined && now.packages[name]!.versions[cur]) currents.set(name, cur);
    }
    let unlinked = false;
    for (const [name, entries] of owned) {
      if (currents.has(name)) continue;
      // No such package, or no recorded current version: its links dangle, or would run what lading does not know.
      for (const entry of entries) {
        await unlink(join(binDir, entry)).catch(() => undefined);
        report.unexposed.push(entry);
        unlinked = true;
      }
    }
    if (unlinked) await fsyncDir(binDir);
    for (const [name, cur] of currents) {
      try {
        const record = now.packages[name]!.versions[cur]!;
        await this.#exposeCurrent(name, cur, { quiet: true, owned: owned.get(name) ?? [], removed: report.unexposed, record });
      } catch {
        report.unexposable.push(name);
      }
    }
    report.unexposed.sort();
    return report;
  }
}

// ---- helpers ------------------------------------------------------------------------------------------

/** The bin/ entries (names) that belong to package `name`. */
async function binEntriesOf(binDir: string, name: string): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(binDir).catch(() => [] as string[])) {
    if (entry.startsWith('.') && entry.endsWith('.tmp')) continue;
    const owner = await binOwner(join(binDir, entry)).catch(() => ({ kind: 'foreign' }) as const);
    if (owner.kind === 'package' && owner.name === name) out.push(entry);
  }
  return out;
}

/** Whether bin entry `path` is exactly that symlink, or that 0755 wrapper script (byte for byte). */
async function binContentIs(path: string, want: { link: string } | { script: string }): Promise<boolean> {
  const st = await lstat(path).catch(() => undefined);
  if (!st) return false;
  if ('link' in want) return st.isSymbolicLink() && (await readlink(path).catch(() => undefined)) === want.link;
  if (!st.isFile() || (st.mode & 0o7777) !== 0o755 || st.size !== Buffer.byteLength(want.script)) return false;
  return (await readFile(path, 'utf8').catch(() => undefined)) === want.script;
}

/**
 * What a version directory's lading.envelope.json says about it (for a version found on disk without a
 * record): its family (kind) and, for a cli, its command, executable, args, env and deps; for a pack its
 * classes. Nothing when the file is missing, too big, not JSON, or names another package.
 */
async function fromEnvelope(dir: string, name: string): Promise<Partial<InstalledVersion>> {
  let doc: unknown;
  try {
    const fh = await open(join(dir, ENVELOPE_FILE), constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > MAX_ENVELOPE_BYTES) return {};
      doc = JSON.parse(await fh.readFile('utf8'));
    } finally {
      await fh.close();
    }
  } catch {
    return {};
  }
  if (!isRecord(doc) || typeof doc.kind !== 'string' || !isName(doc.kind)) return {};
  if (isRecord(doc.metadata) && doc.metadata.name !== undefined && doc.metadata.name !== name) return {};
  const out: Partial<InstalledVersion> = { family: doc.kind };
  const spec = isRecord(doc.spec) ? doc.spec : {};
  if (doc.kind === 'cli') {
    const exe = spec.executable;
    let exeOk = false;
    try {
      checkRelative(exe);
      exeOk = true;
    } catch {
      /* no command then */
    }
    if (exeOk) {
      const command = typeof spec.name === 'string' ? spec.name : (exe as string).split('/').pop()!;
      if (isName(command)) {
        out.command = command;
        out.executable = exe as string;
        if (Array.isArray(spec.args) && spec.args.every((a) => typeof a === 'string' && !a.includes('\0'))) out.args = [...(spec.args as string[])];
        if (isRecord(spec.env) && Object.entries(spec.env).every(([k, v]) => ENV_KEY.test(k) && typeof v === 'string' && !v.includes('\0'))) {
          out.env = { ...(spec.env as Record<string, string>) };
        }
      }
    }
    if (Array.isArray(spec.deps)) out.deps = spec.deps.filter((d): d is string => typeof d === 'string');
  } else if (doc.kind === 'pack' && Array.isArray(spec.classes) && spec.classes.every((c) => typeof c === 'string')) {
    out.classes = [...(spec.classes as string[])];
  }
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function addVersion(s: InstallState, name: string, record: InstalledVersion, o: { atStart?: boolean } = {}): void {
  let pkg = s.packages[name];
  if (!pkg) {
    pkg = { name, family: record.family, versions: {}, history: [] };
    s.packages[name] = pkg;
  } else if (pkg.family === 'unknown' && record.family !== 'unknown') {
    pkg.family = record.family;
  }
  pkg.versions[record.version] = record;
  const rest = pkg.history.filter((v) => v !== record.version);
  pkg.history = o.atStart ? [record.version, ...rest] : [...rest, record.version];
}

function notInstalled(name: string): LadingError {
  return new LadingError('E_INSTALL_NOT_FOUND', `${name} is not installed`, {
    hint: 'lading list shows what is installed',
    details: { name },
  });
}

function isName(s: string): boolean {
  try {
    checkName(s, 'name');
    return true;
  } catch {
    return false;
  }
}

function isVersion(s: string): boolean {
  try {
    checkVersion(s);
    return true;
  } catch {
    return false;
  }
}

/** An executable path relative to a version directory: POSIX, no empty, `.` or `..` segment, no NUL. */
function checkRelative(p: unknown): void {
  if (
    typeof p !== 'string' ||
    p === '' ||
    p.startsWith('/') ||
    p.includes('\\') ||
    p.includes('\0') ||
    p.split('/').some((s) => s === '' || s === '.' || s === '..')
  ) {
    throw new LadingError('E_UNSAFE_PATH', `executable ${JSON.stringify(p)} is not a plain relative path inside the package`, {
      details: { executable: p },
    });
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw toLadingError(err);
  }
}

async function isDir(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => undefined);
  return st?.isDirectory() === true;
}

type BinOwner = { kind: 'none' } | { kind: 'package'; name: string } | { kind: 'foreign' };

/** Who made a bin entry: nobody (absent), a package (our symlink or wrapper), or someone else. */
async function binOwner(path: string): Promise<BinOwner> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw toLadingError(err);
  });
  if (!st) return { kind: 'none' };
  if (st.isSymbolicLink()) {
    const m = /^\.\.\/pkgs\/([^/]+)\/current\//.exec(await readlink(path));
    return m && isName(m[1]!) ? { kind: 'package', name: m[1]! } : { kind: 'foreign' };
  }
  if (st.isFile() && st.size < 1 << 20) {
    const head = (await readFile(path, 'utf8')).split('\n', 3);
    const mark = head[1];
    if (head[0] === '#!/bin/sh' && mark?.startsWith(WRAPPER_MARK)) {
      const name = mark.slice(WRAPPER_MARK.length).split(' ')[0]!;
      if (isName(name)) return { kind: 'package', name };
    }
  }
  return { kind: 'foreign' };
}

/** Single-quotes a string for POSIX sh: every `'` becomes `'\''`. */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function wrapperScript(name: string, command: string, exe: string, args: string[], env: Array<[string, string]>): string {
  const lines = ['#!/bin/sh', `${WRAPPER_MARK}${name} command=${command}`];
  for (const [k, v] of env) lines.push(`${k}=${shQuote(v)}`, `export ${k}`);
  lines.push(`exec ${[exe, ...args].map(shQuote).join(' ')} "$@"`);
  return `${lines.join('\n')}\n`;
}

async function writeExecutable(path: string, content: string): Promise<void> {
  const fh = await open(path, 'wx', 0o755);
  try {
    await fh.writeFile(content);
    await fh.sync();
  } finally {
    await fh.close();
  }
  await chmod(path, 0o755);
}

function tempPid(name: string): number | undefined {
  // tempPathFor: `.<base>.<pid>.<hex>.tmp`; switchCurrent: `.current.<pid>.<hex>.tmp`
  const m = /\.(\d+)\.[0-9a-f]+\.tmp$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function isLockTimeout(err: unknown): boolean {
  return isLadingError(err, 'E_IO') && typeof err.details?.lock === 'string';
}
