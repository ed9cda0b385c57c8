/**
 * The few file operations extraction needs, as promises over node:fs callbacks (lighter than
 * fs/promises' FileHandle when tens of thousands of small files are written), plus a bound on how many
 * run at once.
 */
import * as fs from 'node:fs';

const C = fs.constants;
/** Create a new file only: never replace anything, never follow a link at the last component. */
export const CREATE_FLAGS = C.O_WRONLY | C.O_CREAT | C.O_EXCL | (C.O_NOFOLLOW ?? 0);

export function openNew(path: string, mode: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, CREATE_FLAGS, mode, (err, fd) => (err ? reject(err) : resolve(fd))));
}

export function close(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fsync(fd, (err) => (err ? reject(err) : resolve())));
}

function writeOnce(fd: number, buf: Buffer): Promise<number> {
  return new Promise((resolve, reject) => fs.write(fd, buf, 0, buf.length, null, (err, n) => (err ? reject(err) : resolve(n))));
}

function writevOnce(fd: number, bufs: Buffer[]): Promise<number> {
  return new Promise((resolve, reject) => fs.writev(fd, bufs, (err, n) => (err ? reject(err) : resolve(n))));
}

/** Writes every byte of `bufs`, in order, at the file's current offset. */
export async function writeAll(fd: number, bufs: Buffer[]): Promise<void> {
  let pending = bufs.filter((b) => b.length > 0);
  while (pending.length > 0) {
    let n = pending.length === 1 ? await writeOnce(fd, pending[0]!) : await writevOnce(fd, pending.slice(0, 1024));
    // A short write (a full disk, a signal) continues where it stopped.
    let i = 0;
    while (i < pending.length && n >= pending[i]!.length) n -= pending[i++]!.length;
    pending = pending.slice(i);
    if (n > 0) pending[0] = pending[0]!.subarray(n);
  }
}

export function mkdirOne(path: string, mode: number): Promise<void> {
  return new Promise((resolve, reject) => fs.mkdir(path, { mode }, (err) => (err ? reject(err) : resolve())));
}

export function symlink(target: string, path: string): Promise<void> {
  return new Promise((resolve, reject) => fs.symlink(target, path, (err) => (err ? reject(err) : resolve())));
}

export function link(existing: string, path: string): Promise<void> {
  return new Promise((resolve, reject) => fs.link(existing, path, (err) => (err ? reject(err) : resolve())));
}

export function unlink(path: string): Promise<void> {
  return new Promise((resolve, reject) => fs.unlink(path, (err) => (err ? reject(err) : resolve())));
}

export function lstat(path: string): Promise<fs.Stats | undefined> {
  return new Promise((resolve, reject) =>
    fs.lstat(path, (err, st) => (err ? (err.code === 'ENOENT' ? resolve(undefined) : reject(err)) : resolve(st))),
  );
}

export function readlink(path: string): Promise<string> {
  return new Promise((resolve, reject) => fs.readlink(path, (err, s) => (err ? reject(err) : resolve(s))));
}

/** fsync of a directory (its entries), where the platform allows opening one. */
export async function fsyncDirectory(path: string): Promise<void> {
  const fd = await new Promise<number>((resolve, reject) => fs.open(path, C.O_RDONLY | (C.O_DIRECTORY ?? 0), (err, fd) => (err ? reject(err) : resolve(fd))));
  try {
    await fsyncFd(fd);
  } finally {
    await close(fd);
  }
}

/** At most `max` holders at once; `acquire` waits for a slot, `release` hands it to the next waiter. */
export class Limiter {
  private active = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly max: number) {}

  acquire(): Promise<void> | undefined {
    if (this.active < this.max) {
      this.active++;
      return undefined;
    }
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.active--;
  }
}
