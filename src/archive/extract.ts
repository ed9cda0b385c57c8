/**
 * Safe extraction of tar, tar+gzip and tar+zstd streams (`extract`), over lading's own streaming tar
 * reader (tar-reader.ts). The reference for "safe" is Python's PEP 706 `data` filter, and stricter:
 *
 * - Names: absolute paths, `..` segments, backslashes and drive letters are refused, as are names longer
 *   than maxPathLength bytes or deeper than maxDepth levels (checked before the name is even split).
 * - Links: every path is resolved component by component through a tree of what this extraction has
 *   made (and of what it found already in the destination, by lstat/readlink), following symbolic links
 *   as the kernel would. A symbolic link is created only when its target, resolved that way, stays in
 *   the destination; a path through a missing directory may not climb back with `..`; links and
 *   directories are never replaced, so what a link resolves to cannot change after it is checked.
 *   Every file operation then uses the resolved path, whose directories are all real directories: the
 *   kernel never follows a link on our behalf, and files are opened O_CREAT|O_EXCL|O_NOFOLLOW.
 * - Hard links only to regular files this extraction wrote.
 * - No device nodes or FIFOs; sparse entries are refused (their declared size is never allocated).
 * - Modes: files keep at most 0755 (no setuid/setgid/sticky, no group/other write), lose every execute
 *   bit when the owner has none, and are always owner-readable and -writable; directories are 0755.
 *   Owners and times are not restored.
 * - Bounds: entries, total bytes, path length and depth, header size (pax, GNU long names, sparse maps),
 *   compression ratio, zstd window and block size, bytes after the end marker (zeros only), the memory of
 *   the tree of what was made (maxIndexBytes: it holds one name per node, never a full path), and the
 *   work of resolving links (each link's resolution to a directory is remembered, and the components
 *   read from link targets are bounded per archive).
 * - Malformed input is an error (E_ARCHIVE_INVALID), never a partial success. A refused entry is an
 *   error (E_UNSAFE_PATH) unless `skipRefused`, which skips it and lists it in `result.refused`.
 *
 * On any failure the destination may hold part of the archive: the caller deletes it (lading extracts
 * into a staging directory it owns and removes on failure). Nothing is ever written outside it.
 * Files are not fsynced unless `fsync: true`: the install layer fsyncs what it commits.
 */
import { resolve as resolvePath } from 'node:path';
import type { Readable } from 'node:stream';
import { mkdir, stat } from 'node:fs/promises';
import { LadingError, isLadingError } from '../errors.js';
import { CompressionError, tarStream, type Compression } from './decompress.js';
import { Limiter, close, fsyncDirectory, fsyncFd, link, lstat, mkdirOne, openNew, readlink, symlink, unlink, writeAll } from './fs-ops.js';
import { checkEntryPath, printable, underPrefix } from './paths.js';
import { TarFormatError, TarReader, type EntryType, type TarHeader, type TarEvent } from './tar-reader.js';

export type { Compression } from './decompress.js';
export type { EntryType } from './tar-reader.js';

export interface ExtractOptions {
  /** How the source is compressed; 'auto' (the default) reads the magic bytes. */
  compression?: 'auto' | Compression;
  /** Older spelling: true is compression 'gzip', false is 'none'. */
  gzip?: boolean;
  /** Only entries at or under this relative path are allowed (how ORAS lays out a directory layer). */
  requirePrefix?: string;
  /** Skip refused entries (listed in `result.refused`) instead of failing with E_UNSAFE_PATH on the first. */
  skipRefused?: boolean;
  /** Most entries (of any type, refused ones included). Default 1,000,000. */
  maxEntries?: number;
  /** Most bytes of entry bodies in total. Default 64 GiB. */
  maxBytes?: number;
  /** Longest entry name or link target, in bytes. Default 4096. */
  maxPathLength?: number;
  /** Most components in an entry name. Default 256. */
  maxDepth?: number;
  /** Largest pax header / GNU long name (and their sum before one entry). Default 1 MiB. */
  maxHeaderSize?: number;
  /** Decompressed bytes per compressed byte beyond which the archive is treated as a bomb. Default 1000. */
  maxRatio?: number;
  /** Largest zstd window a frame may declare. Default 128 MiB (zstd's own default limit). */
  maxZstdWindow?: number;
  /**
   * Memory for the tree of what the extraction made and found (an estimate: name and link-target bytes
   * plus a fixed cost per node). Default 256 MiB.
   */
  maxIndexBytes?: number;
  /**
   * Path components read from symbolic-link targets while resolving names, over the whole archive (links
   * resolved to a directory are remembered and not re-read). Default 64 × maxEntries.
   */
  maxLinkSteps?: number;
  /**
   * Accept a tar stream that ends at a header boundary without its end-of-archive marker (as Go's reader
   * does). Default false: such a stream is read as an archive truncated there (E_ARCHIVE_INVALID).
   */
  allowMissingEndMarker?: boolean;
  /** File writes in flight at once. Default 32. */
  concurrency?: number;
  /** fsync every file and directory written before returning. Default false. */
  fsync?: boolean;
  signal?: AbortSignal;
  /** Called with the uncompressed tar bytes, for callers that check a digest of them. */
  onTarBytes?: (chunk: Buffer) => void;
}

export interface RefusedEntry {
  /** The entry's name as the archive gives it (control characters replaced, length bounded). */
  path: string;
  type: EntryType;
  reason: string;
}

export interface ExtractResult {
  /** Entries read (refused ones included; pax and GNU metadata headers not counted). */
  entries: number;
  files: number;
  directories: number;
  symlinks: number;
  hardlinks: number;
  /** Bytes of regular files written. */
  bytes: number;
  compression: Compression;
  refused: RefusedEntry[];
}

const DEFAULTS = {
  maxEntries: 1_000_000,
  maxBytes: 64 * 1024 ** 3,
  maxPathLength: 4096,
  maxDepth: 256,
  maxHeaderSize: 1024 * 1024,
  maxRatio: 1000,
  maxZstdWindow: 128 * 1024 * 1024,
  maxIndexBytes: 256 * 1024 * 1024,
  concurrency: 32,
};
/** The estimated cost of one node of the tree (object, map entry), beyond its name; and of a directory's map. */
const NODE_BYTES = 160;
const DIR_BYTES = 96;
/** Links followed while resolving one path (Linux's own limit is 40). */
const MAX_HOPS = 40;
/** Files up to this size are buffered and written in the background; larger ones are streamed. */
const SMALL_FILE = 256 * 1024;
const MAX_META_HEADERS = 64;
const MAX_TRAILING = 16 * 1024 * 1024;
const DIR_MODE = 0o755;

/**
 * Extracts a tar, tar+gzip or tar+zstd stream into `destDir` (created when missing). See the module
 * comment for what is refused and bounded. On failure the destination is left for the caller to delete.
 */
export async function extract(source: Readable | AsyncIterable<Uint8Array>, destDir: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  return new Extraction(destDir, options).run(source);
}

/** The name lading's pull uses: `extract` with the same options and results. */
export function extractTar(source: Readable, dest: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  return extract(source, dest, options);
}

/**
 * One name in the tree of what is in the destination: what the extraction made, and what it found there
 * (by lstat). A node holds its own name and its parent, never a full path, so the tree's memory grows with
 * the names in the archive, not with their depth (1M entries under a link to a 4 KB-deep directory).
 */
interface Node {
  kind: 'dir' | 'file' | 'symlink' | 'other';
  /** Made by this extraction (so a directory's children are all in the tree), or found in the destination. */
  ours: boolean;
  name: string;
  /** The directory it is in (undefined for the destination itself). */
  parent: Node | undefined;
  /** A directory's children, as far as known. */
  children?: Map<string, Node>;
  target?: string;
  /**
   * A symbolic link's resolution when it leads to an existing directory, and the links followed to get
   * there. Directories and links are never replaced, so it stays right for the whole extraction.
   */
  resolved?: Node;
  resolvedHops?: number;
  /** The last file operation on this path; later operations on it or under it wait for it. */
  done?: Promise<void> | undefined;
}

class Refusal {
  constructor(readonly reason: string) {}
}

/** Where a path leads: an existing node, or the deepest existing directory and the names missing below it. */
interface Walk {
  node: Node;
  missing: string[];
  /** Symbolic links followed. */
  hops: number;
}

interface Sink {
  data(chunk: Buffer): Promise<void> | void;
  end(): Promise<void> | void;
}

class Extraction {
  private readonly dest: string;
  private readonly opts: typeof DEFAULTS & ExtractOptions;
  private readonly prefix: string[] | undefined;
  private readonly root: Node = { kind: 'dir', ours: false, name: '', parent: undefined, children: new Map() };
  private readonly tasks = new Set<Promise<void>>();
  private readonly limiter: Limiter;
  private readonly openFds = new Set<number>();
  private readonly madeDirs: Node[] = [];
  /** Estimated bytes held by the tree, and link-target components read so far. */
  private indexBytes = 0;
  private linkSteps = 0;
  private readonly maxLinkSteps: number;
  private failure: unknown;
  private sink: Sink | undefined;
  private declared = 0;
  private readonly result: ExtractResult = { entries: 0, files: 0, directories: 0, symlinks: 0, hardlinks: 0, bytes: 0, compression: 'none', refused: [] };

  constructor(destDir: string, options: ExtractOptions) {
    this.dest = resolvePath(destDir);
    const defined = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as ExtractOptions;
    this.opts = { ...DEFAULTS, ...defined };
    this.prefix = options.requirePrefix ? options.requirePrefix.split('/').filter((p) => p !== '' && p !== '.') : undefined;
    this.limiter = new Limiter(Math.max(1, this.opts.concurrency));
    this.maxLinkSteps = this.opts.maxLinkSteps ?? 64 * Math.max(this.opts.maxEntries, 1024);
  }

  async run(source: Readable | AsyncIterable<Uint8Array>): Promise<ExtractResult> {
    const { signal, onTarBytes } = this.opts;
    try {
      signal?.throwIfAborted();
      await this.init();
      const forced = this.opts.gzip === true ? 'gzip' : this.opts.gzip === false ? 'none' : this.opts.compression === 'auto' ? undefined : this.opts.compression;
      const { compression, chunks } = await tarStream(source, forced, this.opts);
      this.result.compression = compression;
      const reader = new TarReader({
        maxHeaderSize: this.opts.maxHeaderSize,
        maxMetaHeaders: MAX_META_HEADERS,
        maxTrailing: MAX_TRAILING,
        allowMissingEndMarker: this.opts.allowMissingEndMarker === true,
      });
      for await (const chunk of chunks) {
        signal?.throwIfAborted();
        onTarBytes?.(chunk);
        for (const ev of reader.push(chunk)) {
          const p = this.handle(ev);
          if (p) await p;
          if (this.failure) throw this.failure;
        }
      }
      reader.finish();
      while (this.tasks.size > 0 && !this.failure) await Promise.all([...this.tasks]);
      if (this.failure) throw this.failure;
      if (this.opts.fsync) {
        for (const d of this.madeDirs.reverse()) await fsyncDirectory(this.abs(d));
        await fsyncDirectory(this.dest);
      }
      return this.result;
    } catch (err) {
      this.failure ??= err;
      // Nothing may still be writing when the caller goes to delete the destination.
      while (this.tasks.size > 0) await Promise.allSettled([...this.tasks]);
      for (const fd of this.openFds) await close(fd).catch(() => undefined);
      throw toLadingError(this.failure, this.dest);
    } finally {
      if (typeof (source as Readable).destroy === 'function') (source as Readable).destroy();
    }
  }

  private async init(): Promise<void> {
    try {
      await mkdir(this.dest, { mode: DIR_MODE });
      this.root.ours = true; // new and empty: nothing in it that this extraction does not know of
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        await mkdir(this.dest, { recursive: true, mode: DIR_MODE });
        this.root.ours = true;
      } else if (code === 'EEXIST') {
        if (!(await stat(this.dest)).isDirectory()) throw new LadingError('E_IO', `${this.dest} exists and is not a directory`);
      } else throw err;
    }
  }

  private handle(ev: TarEvent): Promise<void> | void {
    switch (ev.kind) {
      case 'entry':
        this.sink = undefined;
        return this.begin(ev.header);
      case 'data':
        return this.sink?.data(ev.chunk);
      case 'end-entry': {
        const sink = this.sink;
        this.sink = undefined;
        return sink?.end();
      }
    }
  }

  // ------------------------------------------------------------------ entries

  private begin(h: TarHeader): Promise<void> | void {
    if (++this.result.entries > this.opts.maxEntries) throw archiveInvalid(`the archive has more than ${this.opts.maxEntries} entries`);
    this.declared += h.size;
    if (this.declared > this.opts.maxBytes) throw archiveInvalid(`the archive holds more than ${this.opts.maxBytes} bytes`);
    if (h.path === '') throw archiveInvalid('an entry has an empty name');
    if (!h.nameUtf8) return this.refuse(h, 'the name is not valid UTF-8');
    const checked = checkEntryPath(h.path, this.opts);
    if ('refused' in checked) return this.refuse(h, checked.refused);
    const parts = checked.parts;
    if (parts.length === 0) {
      if (h.type === 'directory') return; // "./": the destination itself
      return this.refuse(h, 'the name is the destination itself');
    }
    switch (h.type) {
      case 'directory':
        return this.directory(h, parts);
      case 'file':
        return this.file(h, parts);
      case 'symlink':
        return this.symbolicLink(h, parts);
      case 'hardlink':
        return this.hardLink(h, parts);
      case 'char-device':
      case 'block-device':
        return this.refuse(h, 'device nodes are not created');
      case 'fifo':
        return this.refuse(h, 'FIFOs are not created');
      case 'sparse':
        return this.refuse(h, 'sparse files are not extracted');
      default:
        return this.refuse(h, `entries of type "${printable(h.typeflag)}" are not extracted`);
    }
  }

  private refuse(h: TarHeader, reason: string): void {
    const entry: RefusedEntry = { path: printable(h.path), type: h.type, reason };
    this.result.refused.push(entry);
    if (!this.opts.skipRefused) {
      throw new LadingError('E_UNSAFE_PATH', `archive entry "${entry.path}" refused: ${reason}`, {
        hint: 'the archive tries to write outside its destination or to create something unsafe',
        details: { ...entry },
      });
    }
  }

  private async directory(h: TarHeader, parts: string[]): Promise<void> {
    const parent = await this.parentDir(parts);
    if (parent instanceof Refusal) return this.refuse(h, parent.reason);
    const name = parts[parts.length - 1]!;
    if (!this.inPrefix(parent, name)) return this.refuse(h, `it would be written outside "${this.opts.requirePrefix}" through a link`);
    const existing = await this.lookup(parent, name);
    if (!existing) {
      this.makeDirs(parent, [name]);
      return;
    }
    if (existing.kind === 'dir') return;
    if (existing.kind === 'symlink') {
      // A directory entry over a link to a directory keeps the link (the directory is already there).
      const w = await this.walk(parent, [name], true);
      if (!(w instanceof Refusal) && w.missing.length === 0 && w.node.kind === 'dir') return;
      return this.refuse(h, 'it would replace a symbolic link with a directory');
    }
    return this.refuse(h, existing.ours ? 'it would replace a file with a directory' : 'something other than a directory is already in the destination at this path');
  }

  private async file(h: TarHeader, parts: string[]): Promise<void> {
    const place = await this.placeFor(h, parts);
    if (!place) return;
    const { parent, name, prev } = place;
    const node = this.addNode(parent, name, { kind: 'file', ours: true, name, parent }, prev);
    this.result.files++;
    this.result.bytes += h.size;
    const mode = fileMode(h.mode);
    const path = this.abs(node);
    const waits = [parent.done, prev?.done];
    const replace = prev !== undefined;
    if (h.size <= SMALL_FILE) {
      const chunks: Buffer[] = [];
      this.sink = {
        data: (chunk) => void chunks.push(chunk),
        end: async () => {
          const slot = this.limiter.acquire();
          if (slot) await slot;
          node.done = this.track(
            this.writeFile(path, mode, waits, replace, chunks).finally(() => this.limiter.release()),
          );
        },
      };
      return;
    }
    // A large file is streamed: opened now, written as its body arrives (each write awaited), closed at its end.
    for (const w of waits) if (w) await w;
    if (replace) await unlink(path);
    const fd = await openNew(path, mode);
    this.openFds.add(fd);
    this.sink = {
      data: (chunk) => writeAll(fd, [chunk]),
      end: async () => {
        if (this.opts.fsync) await fsyncFd(fd);
        this.openFds.delete(fd);
        await close(fd);
      },
    };
  }

  private async writeFile(path: string, mode: number, waits: Array<Promise<void> | undefined>, replace: boolean, chunks: Buffer[]): Promise<void> {
    for (const w of waits) if (w) await w;
    if (replace) await unlink(path);
    const fd = await openNew(path, mode);
    try {
      await writeAll(fd, chunks);
      if (this.opts.fsync) await fsyncFd(fd);
    } finally {
      await close(fd);
    }
  }

  private async symbolicLink(h: TarHeader, parts: string[]): Promise<void> {
    const target = h.linkpath;
    if (!h.linkUtf8) return this.refuse(h, 'the link target is not valid UTF-8');
    if (target === '') return this.refuse(h, 'symbolic link with an empty target');
    if (Buffer.byteLength(target) > this.opts.maxPathLength) return this.refuse(h, `link target longer than ${this.opts.maxPathLength} bytes`);
    if (target.startsWith('/')) return this.refuse(h, `symbolic link to an absolute path "${printable(target)}"`);
    const parent = await this.parentDir(parts);
    if (parent instanceof Refusal) return this.refuse(h, parent.reason);
    // Where the link leads, judged now, through every link made so far and any found in the destination.
    const w = await this.walk(parent, splitTarget(target), true);
    if (w instanceof Refusal) return this.refuse(h, `symbolic link to "${printable(target)}" ${w.reason}`);
    if (this.prefix && !underPrefix([...components(w.node), ...w.missing], this.prefix)) {
      return this.refuse(h, `symbolic link to "${printable(target)}" leads outside "${this.opts.requirePrefix}"`);
    }
    const place = await this.placeFor(h, parts, parent);
    if (!place) return;
    const { name, prev } = place;
    const node = this.addNode(parent, name, { kind: 'symlink', ours: true, name, parent, target }, prev);
    this.result.symlinks++;
    const path = this.abs(node);
    node.done = this.track(
      (async () => {
        if (parent.done) await parent.done;
        if (prev) {
          if (prev.done) await prev.done;
          await unlink(path);
        }
        await symlink(target, path);
      })(),
    );
  }

  private async hardLink(h: TarHeader, parts: string[]): Promise<void> {
    const to = h.linkpath;
    if (!h.linkUtf8) return this.refuse(h, 'the link target is not valid UTF-8');
    const checked = checkEntryPath(to, this.opts);
    if ('refused' in checked || checked.parts.length === 0) {
      return this.refuse(h, `hard link to "${printable(to)}": ${'refused' in checked ? checked.refused : 'the destination itself'}`);
    }
    const notEarlier = `hard link to "${printable(to)}" is not a regular file extracted before it`;
    const tParent = await this.walk(this.root, checked.parts.slice(0, -1), true);
    if (tParent instanceof Refusal) return this.refuse(h, `hard link to "${printable(to)}": ${tParent.reason}`);
    if (tParent.missing.length > 0 || tParent.node.kind !== 'dir') return this.refuse(h, notEarlier);
    const target = tParent.node.children!.get(checked.parts[checked.parts.length - 1]!);
    if (!target || !target.ours || target.kind !== 'file') return this.refuse(h, notEarlier);
    const place = await this.placeFor(h, parts);
    if (!place) return;
    const { parent, name, prev } = place;
    if (prev === target) return this.refuse(h, 'hard link to itself');
    const targetPath = this.abs(target);
    const node = this.addNode(parent, name, { kind: 'file', ours: true, name, parent }, prev);
    this.result.hardlinks++;
    const path = this.abs(node);
    const targetDone = target.done;
    const task = this.track(
      (async () => {
        if (parent.done) await parent.done;
        if (targetDone) await targetDone;
        if (prev) {
          if (prev.done) await prev.done;
          await unlink(path);
        }
        await link(targetPath, path);
      })(),
    );
    node.done = task;
    // A later entry replacing the target must wait until the link is made.
    target.done = task;
  }

  /**
   * Where a file, symbolic link or hard link entry goes: its (resolved, created) directory and the node
   * it replaces, if any. Only a regular file this extraction wrote may be replaced (a second entry of
   * the same name); never a directory, a link, or anything that was in the destination before.
   */
  private async placeFor(h: TarHeader, parts: string[], knownParent?: Node): Promise<{ parent: Node; name: string; prev: Node | undefined } | undefined> {
    const parent = knownParent ?? (await this.parentDir(parts));
    if (parent instanceof Refusal) return void this.refuse(h, parent.reason);
    const name = parts[parts.length - 1]!;
    if (!this.inPrefix(parent, name)) return void this.refuse(h, `it would be written outside "${this.opts.requirePrefix}" through a link`);
    const existing = await this.lookup(parent, name);
    if (existing) {
      if (!existing.ours) return void this.refuse(h, 'something is already in the destination at this path (not replaced)');
      if (existing.kind === 'dir') return void this.refuse(h, 'it would replace a directory');
      if (existing.kind !== 'file') return void this.refuse(h, 'it would replace a symbolic link made by an earlier entry of the same name');
    }
    return { parent, name, prev: existing };
  }

  // ------------------------------------------------------------------ the tree

  /** The resolved directory an entry goes in (made when missing), or why it cannot be. */
  private async parentDir(parts: string[]): Promise<Node | Refusal> {
    if (parts.length === 1) return this.root;
    // Fast path: directories already in the tree under exactly these names (no link on the way).
    let node: Node | undefined = this.root;
    for (let i = 0; i < parts.length - 1 && node; i++) {
      const child: Node | undefined = node.children!.get(parts[i]!);
      node = child?.kind === 'dir' ? child : undefined;
    }
    if (node) return node;
    const w = await this.walk(this.root, parts.slice(0, -1), true);
    if (w instanceof Refusal) return w;
    if (w.missing.length === 0) {
      if (w.node.kind !== 'dir') return new Refusal('a component of its path is not a directory');
      return w.node;
    }
    return this.makeDirs(w.node, w.missing);
  }

  private makeDirs(parentNode: Node, names: string[]): Node {
    let parent = parentNode;
    for (const name of names) {
      const node = this.addNode(parent, name, { kind: 'dir', ours: true, name, parent, children: new Map() });
      const path = this.abs(node);
      const after = parent.done;
      node.done = this.track(
        (async () => {
          if (after) await after;
          await mkdirOne(path, DIR_MODE);
        })(),
      );
      const done = node.done;
      done.then(
        () => {
          if (node.done === done) node.done = undefined;
        },
        () => undefined,
      );
      this.result.directories++;
      if (this.opts.fsync) this.madeDirs.push(node);
      parent = node;
    }
    return parent;
  }

  /** Puts `node` in the tree as `parent`'s child `name` (replacing `prev`), within the memory bound. */
  private addNode(parent: Node, name: string, node: Node, prev?: Node): Node {
    this.indexBytes += nodeBytes(node) - (prev ? nodeBytes(prev) : 0);
    if (this.indexBytes > this.opts.maxIndexBytes) {
      throw archiveInvalid(`the archive's tree of names needs more than ${this.opts.maxIndexBytes} bytes of memory to extract safely`);
    }
    parent.children!.set(name, node);
    return node;
  }

  /** The child `name` of the directory `parent`, asking the file system when the directory was not ours. */
  private async lookup(parent: Node, name: string): Promise<Node | undefined> {
    const known = parent.children!.get(name);
    if (known || parent.ours) return known;
    return this.probe(parent, name);
  }

  /** What is already in the destination at `parent`/`name` (never followed: lstat, readlink). */
  private async probe(parent: Node, name: string): Promise<Node | undefined> {
    const path = this.abs(parent, name);
    const st = await lstat(path);
    if (!st) return undefined;
    // Another lookup of the same name may have finished while this one waited.
    const known = parent.children!.get(name);
    if (known) return known;
    let node: Node;
    if (st.isDirectory()) node = { kind: 'dir', ours: false, name, parent, children: new Map() };
    else if (st.isSymbolicLink()) node = { kind: 'symlink', ours: false, name, parent, target: await readlink(path) };
    else if (st.isFile()) node = { kind: 'file', ours: false, name, parent };
    else node = { kind: 'other', ours: false, name, parent };
    return parent.children!.get(name) ?? this.addNode(parent, name, node);
  }

  /**
   * Resolves `comps` from the directory `start` as the kernel would, following symbolic links in the tree
   * (at most `maxHops` of them; the last component only when `followLast`). Refused when it leaves the
   * destination, meets an absolute link, or climbs with ".." out of a directory that does not exist yet.
   * A link is resolved by resolving its target from its directory; a resolution that ends at an existing
   * directory is remembered on the link, and the components of targets read are counted against
   * maxLinkSteps, so chains of long links cannot make every entry cost thousands of steps.
   */
  private async walk(start: Node, comps: readonly string[], followLast: boolean, maxHops = MAX_HOPS): Promise<Walk | Refusal> {
    let node = start;
    let hops = 0;
    const n = comps.length;
    for (let i = 0; i < n; i++) {
      const c = comps[i]!;
      if (c === '..') {
        if (!node.parent) return new Refusal('leads outside the destination');
        node = node.parent;
        continue;
      }
      const child = node.children!.get(c) ?? (node.ours ? undefined : await this.probe(node, c));
      const last = i === n - 1;
      if (!child) return missingBelow(node, comps.slice(i), hops);
      if (child.kind === 'symlink' && (followLast || !last)) {
        let to: Walk;
        if (child.resolved) {
          to = { node: child.resolved, missing: [], hops: child.resolvedHops! };
          if (hops + 1 + to.hops > maxHops) return new Refusal('goes through too many levels of symbolic links');
        } else {
          if (hops + 1 > maxHops) return new Refusal('goes through too many levels of symbolic links');
          const t = child.target!;
          if (t.startsWith('/')) return new Refusal(`goes through a symbolic link to the absolute path "${printable(t)}"`);
          const next = splitTarget(t);
          this.linkSteps += next.length + 1;
          if (this.linkSteps > this.maxLinkSteps) {
            throw archiveInvalid(`resolving the archive's symbolic links takes more than ${this.maxLinkSteps} steps`);
          }
          // The link's target is relative to its directory, which is `node`.
          const r = await this.walk(node, next, true, maxHops - hops - 1);
          if (r instanceof Refusal) return r;
          to = r;
          if (r.missing.length === 0 && r.node.kind === 'dir') {
            child.resolved = r.node;
            child.resolvedHops = r.hops;
          }
        }
        hops += 1 + to.hops;
        if (to.missing.length > 0) return missingBelow(to.node, [...to.missing, ...comps.slice(i + 1)], hops);
        if (!last && to.node.kind !== 'dir') return new Refusal('goes through something that is not a directory');
        node = to.node;
        continue;
      }
      if (!last && child.kind !== 'dir') return new Refusal('goes through something that is not a directory');
      node = child;
    }
    return { node, missing: [], hops };
  }

  /** The resolved place (`name` in `parent`) is inside the required prefix (names are checked before; this catches links). */
  private inPrefix(parent: Node, name: string): boolean {
    return !this.prefix || underPrefix([...components(parent), name], this.prefix);
  }

  /** The absolute path of `node` (and of its child `name`). */
  private abs(node: Node, name?: string): string {
    const parts = components(node);
    if (name !== undefined) parts.push(name);
    return parts.length === 0 ? this.dest : `${this.dest}/${parts.join('/')}`;
  }

  private track(p: Promise<void>): Promise<void> {
    this.tasks.add(p);
    p.then(
      () => this.tasks.delete(p),
      (err) => {
        this.tasks.delete(p);
        this.failure ??= err;
      },
    );
    return p;
  }
}

/** The names from the destination down to `node`. */
function components(node: Node): string[] {
  const out: string[] = [];
  for (let n: Node | undefined = node; n && n.parent; n = n.parent) out.push(n.name);
  return out.reverse();
}

function nodeBytes(node: Node): number {
  return NODE_BYTES + node.name.length + (node.target?.length ?? 0) + (node.children ? DIR_BYTES : 0);
}

/** A walk that stops at `node`, an existing directory, with `missing` below it (never climbing with ".."). */
function missingBelow(node: Node, missing: string[], hops: number): Walk | Refusal {
  if (missing.includes('..')) return new Refusal('climbs with ".." out of a directory that does not exist');
  return { node, missing, hops };
}

function splitTarget(target: string): string[] {
  return target.split('/').filter((c) => c !== '' && c !== '.');
}

/** PEP 706's data filter: at most 0755, no execute bits unless the owner's, always owner read/write. */
function fileMode(mode: number): number {
  let m = mode & 0o755;
  if (!(m & 0o100)) m &= ~0o111;
  return m | 0o600;
}

function archiveInvalid(message: string, cause?: unknown): LadingError {
  return new LadingError('E_ARCHIVE_INVALID', `malformed archive: ${message}`, {
    cause,
    hint: 'the archive is damaged, hostile or over a safety bound; whatever was extracted is incomplete',
  });
}

function toLadingError(err: unknown, dest: string): LadingError {
  if (isLadingError(err)) return err;
  if (err instanceof TarFormatError) return archiveInvalid(err.message, err);
  if (err instanceof CompressionError) {
    return new LadingError('E_ARCHIVE_INVALID', `archive refused: ${err.message}`, { cause: err, hint: 'lading extracts tar, tar+gzip and tar+zstd within its safety bounds' });
  }
  const e = err as NodeJS.ErrnoException;
  if (e?.name === 'AbortError') return new LadingError('E_ABORTED', 'extraction was cancelled', { cause: err });
  if (e?.code === 'ENAMETOOLONG') return new LadingError('E_ARCHIVE_INVALID', `an entry's path is too long for the file system under ${dest}`, { cause: err });
  return new LadingError('E_IO', `extraction into ${dest} failed: ${e?.message ?? String(err)}`, { cause: err, details: e?.code ? { code: e.code } : undefined });
}
