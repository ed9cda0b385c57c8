import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { toLadingError } from '../errors.js';

export interface FileIndexEntry {
  /** `sha256:<hex>` of the file's bytes. */
  digest: string;
  size: number;
}

/** What `pkgs/<name>/.files/<version>.json` holds: every regular file of a version, by POSIX relative path. */
export interface FileIndex {
  files: Record<string, FileIndexEntry>;
}

export interface FileIndexOptions {
  /** Also fsync every file while reading it, so that the content is durable before the commit rename. */
  fsync?: boolean;
}

/** How many files are hashed at once. */
const PARALLEL = 8;
const CHUNK = 1 << 20;

/**
 * Walks `dir` without following symlinks (a symlink, a device or a FIFO is not listed and not entered) and
 * hashes each regular file, streaming it through one fixed buffer per worker. Keys are sorted, so two walks
 * of the same tree give the same JSON.
 */
export async function fileIndex(dir: string, opts: FileIndexOptions = {}): Promise<FileIndex> {
  const paths: string[] = [];
  const stack: string[] = [''];
  try {
    while (stack.length > 0) {
      const rel = stack.pop()!;
      const entries = await readdir(rel === '' ? dir : join(dir, rel), { withFileTypes: true });
      for (const e of entries) {
        const childRel = rel === '' ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory()) stack.push(childRel);
        else if (e.isFile()) paths.push(childRel);
      }
    }
  } catch (err) {
    throw toLadingError(err);
  }
  paths.sort();
  const results = new Map<string, FileIndexEntry>();
  let next = 0;
  const worker = async (): Promise<void> => {
    const buf = Buffer.allocUnsafe(CHUNK);
    while (next < paths.length) {
      const rel = paths[next++]!;
      results.set(rel, await hashFile(join(dir, rel), buf, opts.fsync === true));
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, paths.length) }, worker));
  const files: Record<string, FileIndexEntry> = {};
  for (const p of paths) files[p] = results.get(p)!;
  return { files };
}

async function hashFile(path: string, buf: Buffer, fsync: boolean): Promise<FileIndexEntry> {
  let fh;
  try {
    // O_NOFOLLOW: the walk saw a regular file; if it was swapped for a link since, fail instead of following it.
    fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
    const st = await fh.stat();
    if (!st.isFile()) throw Object.assign(new Error(`${path} is no longer a regular file`), { code: 'EINVAL' });
    const hash = createHash('sha256');
    let size = 0;
    for (let i = 0; i < Number.MAX_SAFE_INTEGER; i++) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      hash.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
    if (fsync) await fh.sync();
    return { digest: `sha256:${hash.digest('hex')}`, size };
  } catch (err) {
    throw toLadingError(err);
  } finally {
    await fh?.close();
  }
}

/** True when two indexes list the same files with the same digests and sizes. */
export function sameFileIndex(a: FileIndex, b: FileIndex): boolean {
  const ka = Object.keys(a.files);
  const kb = Object.keys(b.files);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    const x = a.files[k];
    const y = b.files[k];
    if (!x || !y || x.digest !== y.digest || x.size !== y.size) return false;
  }
  return true;
}
