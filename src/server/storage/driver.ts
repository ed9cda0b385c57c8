import type { Readable } from 'node:stream';

/**
 * The few primitives the registry store needs from a backend. Paths are relative, `/`-separated keys
 * built by the store only; a driver refuses anything that could leave its root (E_UNSAFE_PATH). The
 * filesystem driver is the only one today, but nothing here assumes POSIX beyond what an object store with
 * conditional writes can also offer, except `append`/`truncate`, which upload sessions use and a future
 * object-store driver would provide through multipart parts.
 */
export interface StatResult {
  size: number;
  mtimeMs: number;
  isDirectory: boolean;
}

export interface DirEntry {
  name: string;
  isDirectory: boolean;
}

export interface ByteRange {
  /** First byte, inclusive. */
  start: number;
  /** Last byte, inclusive. */
  end: number;
}

/** Reads at chosen positions through one open handle: the caller owns (and reuses) the buffers. */
export interface PositionalReader {
  readonly size: number;
  /** Fills `buffer` from `position`; resolves with the bytes read, 0 at the end. */
  read(buffer: Buffer, position: number): Promise<number>;
  close(): Promise<void>;
}

export interface StorageDriver {
  /** Undefined when nothing exists at `path`. */
  stat(path: string): Promise<StatResult | undefined>;
  /** A stream of the file, or of `range` of it; E_NOT_FOUND when absent. */
  reader(path: string, range?: ByteRange): Promise<Readable>;
  /**
   * Positional reads, where the backend has them (a file system does): large reads into reused buffers
   * cost a fraction of a stream's fresh buffer per chunk. E_NOT_FOUND when absent.
   */
  positionalReader?(path: string): Promise<PositionalReader>;
  /** The whole file, or undefined when absent; E_SIZE_MISMATCH when it is larger than `max`. */
  readBytes(path: string, max: number): Promise<Buffer | undefined>;
  /** Temp file beside `path`, fsync, rename: readers see the old content or the new, never a mix. */
  writeBytes(path: string, data: Uint8Array | string): Promise<void>;
  /** As writeBytes, streaming; when `body` fails nothing changes at `path`. */
  writeStream(path: string, body: Readable): Promise<void>;
  /** Creates `path` with `data` only if it does not exist yet (durably); false when it already did. */
  createExclusive(path: string, data: Uint8Array | string): Promise<boolean>;
  /**
   * Makes `to` hold the bytes of `from` unless `to` already exists; `from` stays where it is. Returns false
   * when `to` existed. The caller has verified and made `from` durable before asking.
   */
  publish(from: string, to: string): Promise<boolean>;
  /** Moves `from` to `to`, replacing it. */
  rename(from: string, to: string): Promise<void>;
  /** Appends `body` to `path` (created when missing), fsyncs, and resolves with the bytes appended. */
  append(path: string, body: Readable): Promise<number>;
  /** Cuts `path` back to `size` bytes. */
  truncate(path: string, size: number): Promise<void>;
  /** Forces a file's bytes to stable storage. */
  sync(path: string): Promise<void>;
  /** Entries of a directory; empty when it does not exist. */
  list(dir: string): Promise<DirEntry[]>;
  /** Removes a file; no error when it is already gone. */
  delete(path: string): Promise<void>;
  /** Removes a directory tree; no error when it is already gone. */
  deleteTree(path: string): Promise<void>;
  /** Removes `dir` and then each parent up to (not including) `stop`, while they are empty. */
  pruneEmpty(dir: string, stop: string): Promise<void>;
  /** Sets a file's modification time to now (a sign of recent use that gc honours). */
  touch(path: string): Promise<void>;
}
