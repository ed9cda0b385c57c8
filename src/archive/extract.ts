import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { link, mkdir, symlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { Parser, type ReadEntry } from 'tar';
import { LadingError } from '../errors.js';

export interface ExtractOptions {
  /** Bytes of the source are gzip (auto-detected from the magic bytes when left out). */
  gzip?: boolean;
  /** Only entries at or under this relative path are allowed (how ORAS lays out a directory layer). */
  requirePrefix?: string;
  /** Keep going past refused entries (reported in the result) instead of failing on the first. */
  skipRefused?: boolean;
  maxEntries?: number;
  maxBytes?: number;
  maxPathLength?: number;
  maxDepth?: number;
  /** Decompressed bytes per compressed byte beyond which the archive is treated as a bomb. */
  maxRatio?: number;
  /** Called with the uncompressed tar bytes, for callers that check a digest of them. */
  onTarBytes?: (chunk: Buffer) => void;
}

export interface ExtractResult {
  entries: number;
  bytes: number;
  refused: Array<{ path: string; reason: string }>;
}

const DEFAULTS = { maxEntries: 1_000_000, maxBytes: 64 * 1024 ** 3, maxPathLength: 4096, maxDepth: 256, maxRatio: 1000 };

/**
 * Extracts a tar (or tar+gzip) stream into `dest`, which must be a new, empty directory that lading
 * owns: nothing is written outside it, no link leads out of it, nothing is written through a link,
 * no device or FIFO is made, and modes lose setuid/setgid/sticky and group/other write.
 */
export async function extractTar(source: Readable, dest: string, options: ExtractOptions = {}): Promise<ExtractResult> {
  const opts = { ...DEFAULTS, ...options };
  const result: ExtractResult = { entries: 0, bytes: 0, refused: [] };
  const links = new Set<string>();
  const files = new Map<string, Promise<void>>();
  const pending = new Set<Promise<void>>();
  const open = new Set<NodeJS.WritableStream & { destroy(err?: Error): void }>();
  let failure: unknown;
  let failed!: () => void;
  const failedSignal = new Promise<void>((resolve) => (failed = resolve));

  const fail = (err: unknown) => {
    failure ??= err;
    failed();
  };
  const refuse = (path: string, reason: string): void => {
    result.refused.push({ path, reason });
    if (!opts.skipRefused) {
      fail(new LadingError('E_UNSAFE_PATH', `archive entry "${printable(path)}" refused: ${reason}`, {
        hint: 'the archive tries to write outside its destination or to create something unsafe; nothing was kept',
        details: { path: printable(path), reason },
      }));
    }
  };
  const track = (p: Promise<void>) => {
    pending.add(p);
    p.catch(fail).finally(() => pending.delete(p));
  };

  const parser = new Parser({
    strict: true,
    maxMetaEntrySize: 1024 * 1024,
    onReadEntry: (entry: ReadEntry) => {
      if (failure) return entry.resume();
      result.entries++;
      if (result.entries > opts.maxEntries) {
        fail(new LadingError('E_ARCHIVE_INVALID', `archive has more than ${opts.maxEntries} entries`));
        return entry.resume();
      }
      const rel = safeRelative(entry.path, opts, refuse);
      if (rel === undefined) return entry.resume();
      if (ancestorIsLink(rel, links)) {
        refuse(entry.path, 'it would be written through a symbolic link');
        return entry.resume();
      }
      const target = join(dest, rel);
      switch (entry.type) {
        case 'Directory':
          track(mkdir(target, { recursive: true, mode: dirMode(entry.mode) }).then(() => undefined));
          return entry.resume();
        case 'File':
        case 'OldFile':
        case 'ContiguousFile': {
          result.bytes += entry.size;
          if (result.bytes > opts.maxBytes) {
            fail(new LadingError('E_ARCHIVE_INVALID', `archive expands to more than ${opts.maxBytes} bytes`));
            return entry.resume();
          }
          const write = (async () => {
            await mkdir(join(target, '..'), { recursive: true });
            // 'wx': never replace or follow anything already at the path.
            const out = createWriteStream(target, { flags: 'wx', mode: fileMode(entry.mode) });
            open.add(out);
            entry.pipe(out);
            try {
              await finished(out);
            } finally {
              open.delete(out);
            }
          })();
          files.set(rel, write);
          track(write);
          return;
        }
        case 'SymbolicLink': {
          const to = entry.linkpath ?? '';
          // A link must stay inside the part of the tree this archive owns (its prefix, when it has one).
          if (!to || posix.isAbsolute(to) || to.includes('\0') || escapes(posix.join(posix.dirname(rel), to), opts.requirePrefix)) {
            refuse(entry.path, `symbolic link to "${printable(to)}" leads outside the destination`);
            return entry.resume();
          }
          links.add(rel);
          track((async () => {
            await mkdir(join(target, '..'), { recursive: true });
            await symlink(to, target);
          })());
          return entry.resume();
        }
        case 'Link': {
          const to = safeRelative(entry.linkpath ?? '', opts, () => undefined);
          const written = to === undefined ? undefined : files.get(to);
          if (to === undefined || !written || ancestorIsLink(to, links)) {
            refuse(entry.path, `hard link to "${printable(entry.linkpath ?? '')}" is not a file extracted before it`);
            return entry.resume();
          }
          track((async () => {
            await written;
            await mkdir(join(target, '..'), { recursive: true });
            await link(join(dest, to), target);
          })());
          return entry.resume();
        }
        default:
          refuse(entry.path, `entries of type ${entry.type} are not extracted`);
          return entry.resume();
      }
    },
  });
  const malformed = (message: string, cause?: unknown) =>
    new LadingError('E_ARCHIVE_INVALID', `malformed archive: ${message}`, { cause, hint: 'the archive is damaged or hostile; nothing was kept' });
  parser.on('warn', (code: string, message: string | Error) => fail(malformed(`${String(message instanceof Error ? message.message : message)} (${code})`)));
  // The parser ends (or fails) once it has consumed everything written to it.
  const ended = new Promise<void>((resolve) => {
    parser.on('end', resolve);
    parser.on('close', resolve);
    parser.on('error', (err: Error) => {
      fail(malformed(err.message, err));
      resolve();
    });
  });

  try {
    const input = await maybeGunzip(source, options.gzip, opts.maxRatio, fail);
    for await (const chunk of input) {
      if (failure) break;
      opts.onTarBytes?.(chunk as Buffer);
      // A failed write leaves the parser waiting for a consumer forever; the failure ends the wait.
      let more: boolean;
      try {
        more = parser.write(chunk as Buffer);
      } catch (err) {
        fail(malformed((err as Error).message, err));
        break;
      }
      if (!more) await Promise.race([once(parser, 'drain'), ended, failedSignal]);
    }
    if (!failure) {
      parser.end();
      await Promise.race([ended, failedSignal]);
    }
    // After a failure the parser stops feeding entries: close what is still open so every write settles.
    while (pending.size > 0) {
      if (failure) for (const out of open) out.destroy(new Error('extraction aborted'));
      await (failure ? Promise.allSettled([...pending]) : Promise.race([Promise.allSettled([...pending]), failedSignal]));
    }
  } catch (err) {
    fail(err);
  } finally {
    source.destroy();
  }
  if (failure) throw failure instanceof LadingError ? failure : new LadingError('E_IO', `extraction failed: ${(failure as Error).message}`, { cause: failure });
  return result;
}

async function maybeGunzip(source: Readable, gzip: boolean | undefined, maxRatio: number, fail: (e: unknown) => void): Promise<AsyncIterable<unknown>> {
  if (gzip === false) return source;
  if (gzip === undefined) {
    // Peek at the magic bytes without losing them.
    const iterator = source[Symbol.asyncIterator]();
    const first = await iterator.next();
    const head = first.done ? Buffer.alloc(0) : (first.value as Buffer);
    const rest = async function* () {
      if (head.length) yield head;
      for (;;) {
        const n = await iterator.next();
        if (n.done) return;
        yield n.value as Buffer;
      }
    };
    if (!(head[0] === 0x1f && head[1] === 0x8b)) return rest();
    return gunzipBounded(rest(), maxRatio, fail);
  }
  return gunzipBounded(source, maxRatio, fail);
}

async function* gunzipBounded(input: AsyncIterable<unknown>, maxRatio: number, fail: (e: unknown) => void): AsyncGenerator<Buffer> {
  const gunzip = createGunzip();
  let inBytes = 0;
  let outBytes = 0;
  let feedError: unknown;
  // The source is read to its very end: a verifying source reports a bad digest only there.
  const feed = (async () => {
    for await (const chunk of input) {
      inBytes += (chunk as Buffer).length;
      // 'close' too: a gunzip destroyed by a consumer that stopped early never drains.
      if (!gunzip.write(chunk as Buffer)) await Promise.race([once(gunzip, 'drain'), once(gunzip, 'close')]);
      if (gunzip.destroyed) return;
    }
    gunzip.end();
  })().catch((err) => {
    feedError = err;
    gunzip.destroy(err as Error);
  });
  let complete = false;
  try {
    for await (const chunk of gunzip) {
      outBytes += (chunk as Buffer).length;
      if (outBytes > 1024 * 1024 && outBytes > inBytes * maxRatio) {
        fail(new LadingError('E_ARCHIVE_INVALID', `archive decompresses more than ${maxRatio}× its size; refusing a compression bomb`));
        return;
      }
      yield chunk as Buffer;
    }
    complete = true;
  } finally {
    if (!complete) gunzip.destroy();
    await feed;
  }
  if (feedError) throw feedError;
}

function safeRelative(path: string, opts: typeof DEFAULTS & ExtractOptions, refuse: (p: string, r: string) => void): string | undefined {
  if (!path || path.includes('\0')) return void refuse(path, 'empty name or NUL byte in the name');
  if (path.length > opts.maxPathLength) return void refuse(path.slice(0, 200), `name longer than ${opts.maxPathLength} bytes`);
  if (posix.isAbsolute(path) || /^[A-Za-z]:/.test(path) || path.includes('\\')) {
    return void refuse(path, 'absolute path or Windows path');
  }
  const parts = path.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length > opts.maxDepth) return void refuse(path.slice(0, 200), `deeper than ${opts.maxDepth} levels`);
  if (parts.includes('..')) return void refuse(path, 'a ".." segment');
  if (parts.length === 0) return void refuse(path, 'names the destination itself');
  if (opts.requirePrefix) {
    const prefix = opts.requirePrefix.split('/').filter(Boolean);
    if (prefix.some((p, i) => parts[i] !== p)) return void refuse(path, `outside the directory "${opts.requirePrefix}"`);
  }
  return parts.join('/');
}

function escapes(target: string, within?: string): boolean {
  const n = posix.normalize(target);
  if (n === '..' || n.startsWith('../') || posix.isAbsolute(n)) return true;
  if (!within) return false;
  const root = posix.normalize(within).replace(/\/+$/, '');
  return n !== root && !n.startsWith(`${root}/`);
}

function ancestorIsLink(rel: string, links: Set<string>): boolean {
  if (links.size === 0) return false;
  const parts = rel.split('/');
  for (let i = 1; i <= parts.length; i++) if (links.has(parts.slice(0, i).join('/'))) return true;
  return false;
}

function fileMode(mode: number | undefined): number {
  return (mode ?? 0o644) & 0o755;
}

function dirMode(mode: number | undefined): number {
  return ((mode ?? 0o755) & 0o755) | 0o700;
}

function printable(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f]/g, '?').slice(0, 300);
}
