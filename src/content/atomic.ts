import { randomBytes } from 'node:crypto';
import { open, rename, rm, mkdir, type FileHandle } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/** A temporary name beside `path`, so that the final rename stays on one filesystem. */
export function tempPathFor(path: string): string {
  return join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
}

async function fsyncPath(path: string, flags = 'r'): Promise<void> {
  const fh = await open(path, flags);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Makes a completed rename durable. Some filesystems refuse fsync on directories; that is not fatal. */
export async function fsyncDir(dir: string): Promise<void> {
  try {
    await fsyncPath(dir);
  } catch {
    /* best effort */
  }
}

/**
 * Streams `body` to a temp file beside `path`, fsyncs it and renames it into place. If the stream fails
 * (for example a verifying stream that found a mismatch), the temp file is removed and `path` is untouched.
 */
export async function writeStreamAtomic(
  path: string,
  body: Readable,
  opts: { mode?: number; signal?: AbortSignal; beforeRename?: () => Promise<void> } = {},
): Promise<void> {
  // A body that fails before the pipeline is attached (a small one that is verified at once) keeps its
  // error for the pipeline instead of crashing the process as an unhandled 'error' event.
  body.on('error', () => undefined);
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  try {
    // The temp file exists before any byte flows, so a failure can always remove it. The stream owns the
    // handle: it fsyncs (flush) and closes it when it finishes, and closes it when it fails.
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    await pipeline(body, writebackEvery(fh, WRITEBACK_BYTES), fh.createWriteStream({ highWaterMark: 1 << 20, flush: true }), {
      signal: opts.signal,
    });
    await opts.beforeRename?.();
    await rename(tmp, path);
  } catch (err) {
    body.destroy();
    // The failure that matters is the stream's (a digest mismatch, say), not a cleanup that also failed.
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
  await fsyncDir(dirname(path));
}

const WRITEBACK_BYTES = 64 * 1024 * 1024;

/**
 * Passes bytes through, starting a background fdatasync of the file every `every` bytes (never two at
 * once): the disk writes while the network still delivers, and the closing fsync has little left to do.
 */
function writebackEvery(fh: FileHandle, every: number): Transform {
  let sinceSync = 0;
  let syncing = false;
  return new Transform({
    highWaterMark: 1 << 20,
    transform(chunk: Buffer, _enc, done) {
      sinceSync += chunk.length;
      if (sinceSync >= every && !syncing) {
        sinceSync = 0;
        syncing = true;
        fh.datasync().then(
          () => (syncing = false),
          () => (syncing = false),
        );
      }
      done(null, chunk);
    },
  });
}

export async function writeFileAtomic(
  path: string,
  data: string | Uint8Array,
  opts: { mode?: number } = {},
): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, 'wx', opts.mode ?? 0o644);
    try {
      await fh.writeFile(data);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await fsyncDir(dirname(path));
}
