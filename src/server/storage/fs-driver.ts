import { createReadStream } from 'node:fs';
import { copyFile, link, lstat, mkdir, open, readdir, rename, rm, rmdir, stat, truncate, utimes, type FileHandle } from 'node:fs/promises';
import { dirname, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { fsyncDir, tempPathFor, writeFileAtomic, writeStreamAtomic } from '../../content/atomic.js';
import { LadingError } from '../../errors.js';
import type { ByteRange, DirEntry, PositionalReader, StatResult, StorageDriver } from './driver.js';

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function unsafe(path: string, why: string): LadingError {
  const shown = path.length > 200 ? `${path.slice(0, 200)}…` : path;
  return new LadingError('E_UNSAFE_PATH', `storage path ${JSON.stringify(shown)} ${why}`, {
    hint: 'storage keys are relative paths of plain components; this one would escape the storage root',
    details: { reason: 'path-unsafe' },
  });
}

/** A driver over one directory. Every key is checked component by component before it touches the disk. */
export class FsDriver implements StorageDriver {
  readonly root: string;

  constructor(root: string) {
    this.root = resolve(root);
  }

  /** The absolute path of a key; refuses absolute keys, `.`/`..`, empty components, NUL and backslashes. */
  resolvePath(key: string): string {
    if (typeof key !== 'string' || key === '') throw unsafe(String(key), 'is empty');
    if (key.includes('\0') || key.includes('\\')) throw unsafe(key, 'contains NUL or a backslash');
    if (key.startsWith('/')) throw unsafe(key, 'is absolute');
    for (const part of key.split('/')) {
      if (part === '' || part === '.' || part === '..') throw unsafe(key, 'has an empty, "." or ".." component');
    }
    const full = resolve(this.root, key);
    if (!full.startsWith(this.root + sep)) throw unsafe(key, 'resolves outside the root');
    return full;
  }

  async stat(key: string): Promise<StatResult | undefined> {
    try {
      const s = await stat(this.resolvePath(key));
      return { size: s.size, mtimeMs: s.mtimeMs, isDirectory: s.isDirectory() };
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return undefined;
      throw err;
    }
  }

  /** Opening first turns a missing file into E_NOT_FOUND here rather than a late 'error' event. */
  private async openForRead(key: string): Promise<FileHandle> {
    try {
      return await open(this.resolvePath(key), 'r');
    } catch (err) {
      if (code(err) === 'ENOENT') throw new LadingError('E_NOT_FOUND', `${key} does not exist`, { details: { reason: 'not-found' } });
      throw err;
    }
  }

  async positionalReader(key: string): Promise<PositionalReader> {
    const handle = await this.openForRead(key);
    const { size } = await handle.stat();
    return {
      size,
      read: async (buffer, position) => (await handle.read(buffer, 0, buffer.length, position)).bytesRead,
      close: () => handle.close(),
    };
  }

  async reader(key: string, range?: ByteRange): Promise<Readable> {
    const fh = await this.openForRead(key);
    return createReadStream('', {
      fd: fh,
      highWaterMark: 1 << 20,
      ...(range ? { start: range.start, end: range.end } : {}),
    });
  }

  async readBytes(key: string, max: number): Promise<Buffer | undefined> {
    let fh;
    try {
      fh = await open(this.resolvePath(key), 'r');
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return undefined;
      throw err;
    }
    try {
      const { size } = await fh.stat();
      if (size > max) {
        throw new LadingError('E_SIZE_MISMATCH', `${key} is ${size} bytes, over the ${max}-byte limit for reading it whole`, {
          details: { reason: 'too-large', size, limit: max },
        });
      }
      return await fh.readFile();
    } finally {
      await fh.close();
    }
  }

  async writeBytes(key: string, data: Uint8Array | string): Promise<void> {
    const path = this.resolvePath(key);
    await retryVanishedDir(() => writeFileAtomic(path, data));
  }

  async writeStream(key: string, body: Readable): Promise<void> {
    await writeStreamAtomic(this.resolvePath(key), body);
  }

  async createExclusive(key: string, data: Uint8Array | string): Promise<boolean> {
    const path = this.resolvePath(key);
    await mkdir(dirname(path), { recursive: true });
    // Written in full to a temp name and hard-linked, so the name never exists with partial content.
    const tmp = tempPathFor(path);
    try {
      const fh = await open(tmp, 'wx');
      try {
        await fh.writeFile(data);
        await fh.sync();
      } finally {
        await fh.close();
      }
      return await this.linkNoReplace(tmp, path);
    } finally {
      await rm(tmp, { force: true });
    }
  }

  async publish(fromKey: string, toKey: string): Promise<boolean> {
    return this.linkNoReplace(this.resolvePath(fromKey), this.resolvePath(toKey));
  }

  /** link(2) is atomic and refuses to replace: the first of many concurrent writers wins, the rest see EEXIST. */
  private async linkNoReplace(from: string, to: string): Promise<boolean> {
    try {
      await retryVanishedDir(async () => {
        await mkdir(dirname(to), { recursive: true });
        await link(from, to);
      }, from);
    } catch (err) {
      if (code(err) === 'EEXIST') return false;
      if (code(err) !== 'EPERM' && code(err) !== 'ENOTSUP' && code(err) !== 'EOPNOTSUPP') throw err;
      // Filesystems without hard links: a full copy under a temp name, then rename. Two writers may both
      // rename, but both hold the same verified bytes, so replacing one with the other is harmless.
      if (await exists(to)) return false;
      const tmp = tempPathFor(to);
      try {
        await copyFile(from, tmp);
        const fh = await open(tmp, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, to);
      } finally {
        await rm(tmp, { force: true });
      }
    }
    await fsyncDir(dirname(to));
    return true;
  }

  async rename(fromKey: string, toKey: string): Promise<void> {
    const to = this.resolvePath(toKey);
    await mkdir(dirname(to), { recursive: true });
    await rename(this.resolvePath(fromKey), to);
    await fsyncDir(dirname(to));
  }

  async append(key: string, body: Readable): Promise<number> {
    body.on('error', () => undefined);
    const path = this.resolvePath(key);
    await mkdir(dirname(path), { recursive: true });
    const fh = await open(path, 'a');
    const ws = fh.createWriteStream({ highWaterMark: 1 << 20, flush: true });
    try {
      await pipeline(body, ws);
    } catch (err) {
      body.destroy();
      throw err;
    }
    return ws.bytesWritten;
  }

  async truncate(key: string, size: number): Promise<void> {
    await truncate(this.resolvePath(key), size);
  }

  async sync(key: string): Promise<void> {
    const fh = await open(this.resolvePath(key), 'r+');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async list(key: string): Promise<DirEntry[]> {
    try {
      const entries = await readdir(this.resolvePath(key), { withFileTypes: true });
      return entries.map((e) => ({ name: e.name, isDirectory: e.isDirectory() }));
    } catch (err) {
      if (code(err) === 'ENOENT' || code(err) === 'ENOTDIR') return [];
      throw err;
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.resolvePath(key), { force: true });
  }

  async deleteTree(key: string): Promise<void> {
    await rm(this.resolvePath(key), { force: true, recursive: true });
  }

  async pruneEmpty(key: string, stopKey: string): Promise<void> {
    const stop = this.resolvePath(stopKey);
    let dir = this.resolvePath(key);
    // Bounded by the depth of the key: each step moves one level up towards the stop directory.
    while (dir.startsWith(stop + sep)) {
      try {
        await rmdir(dir);
      } catch (err) {
        if (code(err) === 'ENOENT') {
          dir = dirname(dir);
          continue;
        }
        return; // ENOTEMPTY (or anything else): someone still uses this directory.
      }
      dir = dirname(dir);
    }
  }

  async touch(key: string): Promise<void> {
    const now = new Date();
    try {
      await utimes(this.resolvePath(key), now, now);
    } catch (err) {
      if (code(err) !== 'ENOENT') throw err;
    }
  }
}

/**
 * A directory made for a write can be pruned by a concurrent delete (pruneEmpty) before the write lands in
 * it; making it again and retrying a few times settles that race. `source` must exist for a retry to help.
 */
async function retryVanishedDir<T>(fn: () => Promise<T>, source?: string): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (code(err) !== 'ENOENT' || attempt >= 4 || (source !== undefined && !(await exists(source)))) throw err;
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}

