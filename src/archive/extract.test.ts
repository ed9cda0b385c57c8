/**
 * `extract` against archives built here to say what no honest archiver writes: link chains out of the
 * destination, links planted in it beforehand, hard links out, devices, setuid bits, bombs, too many or
 * too deep entries, duplicates. Each runs beside a victim file that must stay byte-identical, with
 * nothing created outside the destination.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { createHash, randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { isLadingError } from '../errors.js';
import { digestOf } from '../oci/digest.js';
import { ustar, type TarEntry } from '../../test/support/tar.js';
import { extract, extractTar, type ExtractOptions, type ExtractResult } from './extract.js';
import { ZstdFrameScanner } from './decompress.js';
import { packDirectory } from './pack.js';
import { xxh64 } from './xxh64.js';

const VICTIM = Buffer.from('victim: must stay exactly like this\n');

const entry = (name: string, opts: Omit<TarEntry, 'name'> = {}): TarEntry => ({ name, ...opts });
const file = (name: string, body: string | Buffer = '', mode?: number): TarEntry => ({ name, body, ...(mode === undefined ? {} : { mode }) });
const dir = (name: string, mode = 0o755): TarEntry => ({ name, type: '5', mode });
const sym = (name: string, link: string): TarEntry => ({ name, type: '2', link });
const hard = (name: string, link: string): TarEntry => ({ name, type: '1', link });

/** A pax extended header carrying `records` for the entry after it (names longer than ustar's 100 bytes). */
function pax(records: Record<string, string>): TarEntry {
  let body = '';
  for (const [k, v] of Object.entries(records)) {
    const rest = ` ${k}=${v}\n`;
    let n = Buffer.byteLength(rest) + 1;
    while (String(n).length + Buffer.byteLength(rest) !== n) n = String(n).length + Buffer.byteLength(rest);
    body += `${n}${rest}`;
  }
  return { name: 'PaxHeader', type: 'x', body };
}
const tar = (...entries: TarEntry[]): Buffer => ustar(entries);
const src = (b: Buffer): Readable => Readable.from([b]);

interface Arena {
  base: string;
  dest: string;
  check(extra?: string[]): Promise<void>;
  done(): Promise<void>;
}

/** A destination beside a victim file; `check` asserts the victim and the destination's parent are untouched. */
async function arena(): Promise<Arena> {
  const base = await mkdtemp(join(tmpdir(), 'lading-extract-'));
  await writeFile(join(base, 'victim.txt'), VICTIM);
  const dest = join(base, 'dest');
  await mkdir(dest);
  return {
    base,
    dest,
    async check(extra: string[] = []) {
      assert.deepEqual(await readFile(join(base, 'victim.txt')), VICTIM, 'the victim beside the destination changed');
      assert.deepEqual((await readdir(base)).sort(), ['dest', 'victim.txt', ...extra].sort(), 'something was created beside the destination');
    },
    done: () => rm(base, { recursive: true, force: true }),
  };
}

/** Extracts `archive` into a fresh arena, checks the victim, and hands the result (or error) to `inspect`. */
async function run(
  archive: Buffer | (() => Readable),
  options: ExtractOptions,
  inspect: (r: ExtractResult | undefined, err: unknown, a: Arena) => Promise<void> | void,
  prepare?: (a: Arena) => Promise<void>,
): Promise<void> {
  const a = await arena();
  try {
    await prepare?.(a);
    let r: ExtractResult | undefined;
    let err: unknown;
    try {
      r = await extract(Buffer.isBuffer(archive) ? src(archive) : archive(), a.dest, options);
    } catch (e) {
      err = e;
    }
    await inspect(r, err, a);
    await a.check();
  } finally {
    await a.done();
  }
}

function code(err: unknown, expected: string): void {
  assert.ok(isLadingError(err, expected as never), `expected ${expected}, got ${err instanceof Error ? `${(err as { code?: string }).code}: ${err.message}` : String(err)}`);
}

/** Strict: fails with `expected`; skipRefused: the refusals match `reasons` and `after` holds. */
async function refusedBoth(
  archive: Buffer,
  reasons: RegExp[],
  after?: (a: Arena, r: ExtractResult) => Promise<void>,
  prepare?: (a: Arena) => Promise<void>,
  options: ExtractOptions = {},
): Promise<void> {
  await run(archive, options, (_r, err) => code(err, 'E_UNSAFE_PATH'), prepare);
  await run(
    archive,
    { ...options, skipRefused: true },
    async (r, err, a) => {
      assert.equal(err, undefined, String(err));
      assert.deepEqual(
        r!.refused.map((x) => x.reason),
        r!.refused.map((x, i) => (reasons[i]?.test(x.reason) ? x.reason : `(expected ${reasons[i]})`)),
      );
      assert.equal(r!.refused.length, reasons.length, JSON.stringify(r!.refused));
      await after?.(a, r!);
    },
    prepare,
  );
}

const isLink = async (p: string) => (await lstat(p).catch(() => undefined))?.isSymbolicLink() ?? false;
const exists = async (p: string) => (await lstat(p).catch(() => undefined)) !== undefined;

// ---------------------------------------------------------------------- happy paths

test('extracts files, directories and links inside the destination', async () => {
  await run(
    tar(dir('d/', 0o777), file('d/f.txt', 'hi'), sym('d/l', 'f.txt'), hard('d/h', 'd/f.txt'), sym('d/up', '../d'), file('top', 'x')),
    {},
    async (r, err, a) => {
      assert.equal(err, undefined);
      assert.deepEqual({ ...r!, refused: r!.refused.length }, { entries: 6, files: 2, directories: 1, symlinks: 2, hardlinks: 1, bytes: 3, compression: 'none', refused: 0 });
      assert.equal(await readFile(join(a.dest, 'd', 'l'), 'utf8'), 'hi');
      assert.equal(await readFile(join(a.dest, 'd', 'h'), 'utf8'), 'hi');
      assert.equal((await lstat(join(a.dest, 'd', 'h'))).ino, (await lstat(join(a.dest, 'd', 'f.txt'))).ino);
      assert.equal(await readlink(join(a.dest, 'd', 'up')), '../d');
      assert.equal((await lstat(join(a.dest, 'd'))).mode & 0o7777 & ~0o022, 0o755);
    },
  );
});

test('modes: no setuid/setgid/sticky, no group/other write, owner always reads and writes', async () => {
  const cases: Array<[number, number]> = [
    [0o4755, 0o755],
    [0o2777, 0o755],
    [0o1666, 0o644],
    [0o6711, 0o711],
    [0o000, 0o600],
    [0o070, 0o640], // no owner execute: every execute bit goes
    [0o444, 0o644],
  ];
  await run(
    tar(...cases.map(([m], i) => file(`f${i}`, 'x', m)), dir('sticky/', 0o1777), dir('closed/', 0o000), file('closed/inside', 'ok')),
    {},
    async (_r, err, a) => {
      assert.equal(err, undefined);
      for (const [i, [, want]] of cases.entries()) {
        assert.equal((await lstat(join(a.dest, `f${i}`))).mode & 0o7777, want & ~process.umask(), `mode of f${i}`);
      }
      assert.equal((await lstat(join(a.dest, 'sticky'))).mode & 0o7777, 0o755 & ~process.umask());
      assert.equal(await readFile(join(a.dest, 'closed', 'inside'), 'utf8'), 'ok');
    },
  );
});

test('a directory packed by packDirectory extracts to the same tree, and onTarBytes sees the tar', async () => {
  const a = await arena();
  try {
    const from = join(a.base, 'src');
    await mkdir(join(from, 'inner'), { recursive: true });
    await writeFile(join(from, 'inner', 'a.txt'), 'a');
    await symlink('inner/a.txt', join(from, 'link'));
    const packed = join(a.base, 'p.tgz');
    const p = await packDirectory(from, packed, 'top/name');
    const tarBytes: Buffer[] = [];
    const r = await extractTar(createReadStream(packed), a.dest, { requirePrefix: 'top/name', onTarBytes: (c) => tarBytes.push(Buffer.from(c)) });
    assert.equal(r.compression, 'gzip');
    assert.equal(digestOf(Buffer.concat(tarBytes)), p.tarDigest);
    assert.equal(await readFile(join(a.dest, 'top', 'name', 'inner', 'a.txt'), 'utf8'), 'a');
    assert.equal(await readFile(join(a.dest, 'top', 'name', 'link'), 'utf8'), 'a');
    const b = await arena();
    try {
      await assert.rejects(extractTar(createReadStream(packed), b.dest, { requirePrefix: 'other' }), (e: unknown) => isLadingError(e, 'E_UNSAFE_PATH'));
    } finally {
      await b.done();
    }
    await a.check(['src', 'p.tgz']);
  } finally {
    await a.done();
  }
});

test('requirePrefix: links may not lead out of the prefix either', async () => {
  await refusedBoth(
    tar(dir('p/'), sym('p/l', '../other'), file('p/f', 'ok')),
    [/leads outside "p"/],
    async (a) => assert.equal(await readFile(join(a.dest, 'p', 'f'), 'utf8'), 'ok'),
    undefined,
    { requirePrefix: 'p' },
  );
  await run(tar(sym('p/l', '..'), file('p/l/x', 'x')), { requirePrefix: 'p', skipRefused: true }, async (r) => {
    assert.equal(r!.refused.length, 1);
    assert.match(r!.refused[0]!.reason, /leads outside "p"/);
  });
});

test('a destination that does not exist yet is created', async () => {
  const a = await arena();
  try {
    const dest = join(a.dest, 'new', 'deeper');
    const r = await extract(src(tar(file('f', 'x'))), dest);
    assert.equal(r.files, 1);
    assert.equal(await readFile(join(dest, 'f'), 'utf8'), 'x');
    await a.check();
  } finally {
    await a.done();
  }
});

test('tar+gzip and tar+zstd are detected by their magic bytes, or named', async (t) => {
  const body = tar(dir('d/'), file('d/a.txt', 'alpha'), file('d/big', randomBytes(700 * 1024)));
  const gz = gzipSync(body);
  await run(gz, {}, async (r, err, a) => {
    assert.equal(err, undefined);
    assert.equal(r!.compression, 'gzip');
    assert.equal(await readFile(join(a.dest, 'd', 'a.txt'), 'utf8'), 'alpha');
  });
  await run(gz, { compression: 'gzip' }, (r) => assert.equal(r?.compression, 'gzip'));
  await run(gz, { compression: 'none' }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(body, { compression: 'gzip' }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  const zstd = spawnSync('zstd', ['-q', '-c', '-19'], { input: body });
  if (zstd.status !== 0 || zstd.error) return t.skip('no zstd command here');
  await run(zstd.stdout, {}, async (r, err, a) => {
    assert.equal(err, undefined, String(err));
    assert.equal(r!.compression, 'zstd');
    assert.equal(await readFile(join(a.dest, 'd', 'a.txt'), 'utf8'), 'alpha');
    assert.deepEqual(await readFile(join(a.dest, 'd', 'big')), body.subarray(2048, 2048 + 700 * 1024));
  });
  // Several frames, as a parallel compressor writes them, and a zstd stream cut short.
  const twoFrames = Buffer.concat([spawnSync('zstd', ['-q', '-c'], { input: body.subarray(0, 4096) }).stdout, spawnSync('zstd', ['-q', '-c'], { input: body.subarray(4096) }).stdout]);
  await run(twoFrames, {}, async (r, err) => assert.equal(r?.files, 2, String(err)));
  await run(zstd.stdout.subarray(0, zstd.stdout.length - 100), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
});

test('every chunking of the input gives the same result (one byte at a time, odd sizes)', async () => {
  const archive = gzipSync(tar(pax({ path: `long/${'n'.repeat(150)}` }), file('ignored-name', 'long body'), dir('d/'), file('d/f', 'x'.repeat(3000)), sym('d/l', 'f')));
  for (const size of [1, 7, 511, 513, 4096]) {
    const pieces: Buffer[] = [];
    for (let i = 0; i < archive.length; i += size) pieces.push(archive.subarray(i, i + size));
    await run(() => Readable.from(pieces), {}, async (r, err, a) => {
      assert.equal(err, undefined, String(err));
      assert.equal(r!.files, 2);
      assert.equal(await readFile(join(a.dest, 'long', 'n'.repeat(150)), 'utf8'), 'long body');
      assert.equal(await readFile(join(a.dest, 'd', 'l'), 'utf8'), 'x'.repeat(3000));
    });
  }
});

test('many files written concurrently all land with their own contents', async () => {
  const entries: TarEntry[] = [];
  for (let d = 0; d < 20; d++) {
    entries.push(dir(`d${d}/`));
    for (let f = 0; f < 100; f++) entries.push(file(`d${d}/f${f}`, `${d}/${f}\n`.repeat(f)));
  }
  entries.push(file('large', randomBytes(3 * 1024 * 1024)));
  const archive = tar(...entries);
  await run(archive, { concurrency: 8 }, async (r, err, a) => {
    assert.equal(err, undefined);
    assert.equal(r!.files, 2001);
    for (let d = 0; d < 20; d += 7) for (let f = 0; f < 100; f += 13) assert.equal(await readFile(join(a.dest, `d${d}`, `f${f}`), 'utf8'), `${d}/${f}\n`.repeat(f));
    const large = entries[entries.length - 1]!.body as Buffer;
    assert.equal(createHash('sha256').update(await readFile(join(a.dest, 'large'))).digest('hex'), createHash('sha256').update(large).digest('hex'));
  });
});

// ---------------------------------------------------------------------- names

test('refuses ".." escapes, absolute paths and Windows paths', async () => {
  await refusedBoth(tar(file('../victim.txt', 'pwned'), file('ok', 'ok')), [/"\.\." segment/], async (a) => assert.deepEqual(await readdir(a.dest), ['ok']));
  await refusedBoth(tar(file('a/../../victim.txt', 'pwned')), [/"\.\." segment/]);
  await refusedBoth(tar(file('/tmp/lading-absolute-evil.txt', 'pwned')), [/absolute path/], async () => assert.equal(await exists('/tmp/lading-absolute-evil.txt'), false));
  await refusedBoth(tar(file('..\\victim.txt', 'pwned'), file('C:/x', 'pwned')), [/backslash/, /drive-letter/]);
});

test('refuses names too long, too deep or with an oversized component, before making any directory', async () => {
  const deep = Array(300).fill('a').join('/');
  const long = `${'b/'.repeat(2100)}f`;
  await refusedBoth(tar(pax({ path: deep }), file('x', 'deep'), pax({ path: long }), file('y', 'long'), file(`${'c'.repeat(90)}/${'d'.repeat(5)}`, 'ok'), pax({ path: 'e'.repeat(256) }), file('z', 'wide')), [
    /deeper than 256 levels/,
    /longer than 4096 bytes/,
    /component longer than 255 bytes/,
  ], async (a) => assert.deepEqual(await readdir(a.dest), ['c'.repeat(90)]));
  await run(tar(file('a/b/c/d', 'x')), { maxDepth: 3, skipRefused: true }, async (r, _e, a) => {
    assert.match(r!.refused[0]!.reason, /deeper than 3/);
    assert.deepEqual(await readdir(a.dest), []);
  });
  await run(tar(file('abcdef', 'x')), { maxPathLength: 5 }, (_r, err) => code(err, 'E_UNSAFE_PATH'));
});

test('names that are not UTF-8 are refused', async () => {
  const h = tar(file('placeholder', 'x'));
  Buffer.from([0x66, 0xff, 0xfe]).copy(h, 0);
  h.fill(0, 3, 11);
  let sum = 0;
  h.fill(0x20, 148, 156);
  for (let i = 0; i < 512; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  await refusedBoth(h, [/not valid UTF-8/]);
});

// ---------------------------------------------------------------------- symbolic links

test('refuses symbolic links that lead out, directly or through a chain of links', async () => {
  await refusedBoth(tar(sym('l', '../victim.txt')), [/leads outside the destination/]);
  await refusedBoth(tar(sym('l', '/etc/passwd')), [/absolute path/]);
  await refusedBoth(tar(sym('l', '..')), [/leads outside/]);
  await refusedBoth(tar(dir('a/'), sym('a/l', '../../x')), [/leads outside/]);
  // The chain from the issue: a/b/l1 -> ../../ (the destination itself, fine), then l2 -> a/b/l1/.. (its parent).
  await refusedBoth(tar(dir('a/b/'), sym('a/b/l1', '../../'), sym('l2', 'a/b/l1/..'), file('l2/victim.txt', 'pwned')), [/leads outside/], async (a) => {
    assert.equal(await readlink(join(a.dest, 'a', 'b', 'l1')), '../../');
    // l2 was refused, so l2/victim.txt is an ordinary path inside the destination.
    assert.ok((await lstat(join(a.dest, 'l2'))).isDirectory());
  });
  // The same two links the other way round: l2 first (l1 missing: ".." out of a missing directory is refused).
  await refusedBoth(tar(dir('a/b/'), sym('l2', 'a/b/l1/..'), sym('a/b/l1', '../../')), [/does not exist/]);
  // A chain of links, each harmless alone.
  await refusedBoth(tar(dir('x/y/'), sym('x/y/up', '..'), sym('x/up2', 'y/up/..'), sym('esc', 'x/up2/..')), [/leads outside/]);
  // Loops end.
  await refusedBoth(tar(sym('a', 'b'), sym('b', 'a'), file('a/x', 'x')), [/too many levels/]);
});

test('never writes through a symbolic link that leads out; writes through one that stays inside land at its target', async () => {
  await refusedBoth(tar(sym('l', '..'), file('l/victim.txt', 'pwned')), [/leads outside/], async (a) => {
    // `l` was refused, so `l/victim.txt` is an ordinary path inside: a directory `l` holding a file.
    assert.equal(await readFile(join(a.dest, 'l', 'victim.txt'), 'utf8'), 'pwned');
  });
  await run(tar(dir('sub/'), sym('in', 'sub'), file('in/x', 'through'), dir('in/d/'), sym('in/d/l', '../x'), hard('in/h', 'in/x')), {}, async (r, err, a) => {
    assert.equal(err, undefined, String(err));
    assert.equal(r!.refused.length, 0);
    assert.ok(await isLink(join(a.dest, 'in')));
    assert.equal(await readFile(join(a.dest, 'sub', 'x'), 'utf8'), 'through');
    assert.ok((await lstat(join(a.dest, 'sub', 'd'))).isDirectory());
    assert.equal(await readFile(join(a.dest, 'sub', 'd', 'l'), 'utf8'), 'through');
    assert.equal((await lstat(join(a.dest, 'sub', 'h'))).ino, (await lstat(join(a.dest, 'sub', 'x'))).ino);
  });
  // A directory entry over a link to a directory keeps the link; over a dangling link it is refused.
  await run(tar(dir('sub/'), sym('l', 'sub'), dir('l/'), sym('dangling', 'nowhere'), dir('dangling/')), { skipRefused: true }, async (r, _e, a) => {
    assert.deepEqual(r!.refused.map((x) => x.path), ['dangling/']);
    assert.ok(await isLink(join(a.dest, 'l')));
  });
  // Through a file: not a directory.
  await refusedBoth(tar(file('f', 'x'), file('f/g', 'y')), [/not a directory/]);
});

test('links already in the destination are resolved too: never followed out, never written through', async () => {
  const plant = async (a: Arena) => {
    await symlink(a.base, join(a.dest, 'abs-out')); // absolute, leading to the victim's directory
    await symlink('..', join(a.dest, 'rel-out'));
    await mkdir(join(a.dest, 'sub'));
    await symlink('sub', join(a.dest, 'in'));
    await symlink('../victim.txt', join(a.dest, 'file-out'));
    await writeFile(join(a.dest, 'existing'), 'mine');
  };
  await refusedBoth(tar(file('abs-out/victim.txt', 'pwned')), [/absolute path/], undefined, plant);
  await refusedBoth(tar(file('rel-out/victim.txt', 'pwned')), [/leads outside/], undefined, plant);
  await refusedBoth(tar(file('rel-out/new.txt', 'pwned')), [/leads outside/], undefined, plant);
  await refusedBoth(tar(sym('x', 'rel-out/victim.txt')), [/leads outside/], undefined, plant);
  await refusedBoth(tar(file('file-out', 'pwned')), [/already in the destination/], undefined, plant);
  await refusedBoth(tar(file('existing', 'pwned')), [/already in the destination/], async (a) => assert.equal(await readFile(join(a.dest, 'existing'), 'utf8'), 'mine'), plant);
  await refusedBoth(tar(hard('h', 'existing')), [/not a regular file extracted before it/], undefined, plant);
  await run(tar(file('in/x', 'inside'), file('sub/y', 'y')), {}, async (r, err, a) => {
    assert.equal(err, undefined, String(err));
    assert.equal(await readFile(join(a.dest, 'sub', 'x'), 'utf8'), 'inside');
    assert.equal(await readFile(join(a.dest, 'sub', 'y'), 'utf8'), 'y');
  }, plant);
});

// ---------------------------------------------------------------------- hard links

test('hard links only to regular files extracted earlier, inside the destination', async () => {
  await refusedBoth(tar(hard('h', '../victim.txt')), [/"\.\." segment/]);
  await refusedBoth(tar(hard('h', '/etc/passwd')), [/absolute path/]);
  await refusedBoth(tar(hard('h', 'later'), file('later', 'x')), [/not a regular file extracted before it/]);
  await refusedBoth(tar(file('f', 'x'), sym('l', 'f'), hard('h', 'l')), [/not a regular file/]);
  await refusedBoth(tar(dir('d/'), hard('h', 'd')), [/not a regular file/]);
  await refusedBoth(tar(file('f', 'x'), hard('f', 'f')), [/hard link to itself/]);
  // Through a link that leads out (refused already when it was made, so the path is simply missing).
  await refusedBoth(tar(sym('up', '..'), hard('h', 'up/victim.txt')), [/leads outside/, /not a regular file/]);
});

test('a later entry of the same name replaces a file, never writing through a link', async () => {
  // file, then a hard link to it, then a file of the hard link's name: the first file keeps its content.
  await run(tar(file('f', 'one'), hard('h', 'f'), file('h', 'two'), file('f', 'three')), {}, async (_r, err, a) => {
    assert.equal(err, undefined, String(err));
    assert.equal(await readFile(join(a.dest, 'h'), 'utf8'), 'two');
    assert.equal(await readFile(join(a.dest, 'f'), 'utf8'), 'three');
  });
  // A symbolic link, then a file of its name: refused (a write through it would change the target).
  await refusedBoth(tar(file('f', 'orig'), sym('l', 'f'), file('l', 'pwned')), [/replace a symbolic link/], async (a) => {
    assert.equal(await readFile(join(a.dest, 'f'), 'utf8'), 'orig');
    assert.ok(await isLink(join(a.dest, 'l')));
  });
  await refusedBoth(tar(sym('l', 'x'), sym('l', 'y')), [/replace a symbolic link/]);
  // A directory, then a file of its name (and the other way round).
  await refusedBoth(tar(dir('d/'), file('d/keep', 'k'), file('d', 'pwned')), [/replace a directory/], async (a) => {
    assert.equal(await readFile(join(a.dest, 'd', 'keep'), 'utf8'), 'k');
  });
  await refusedBoth(tar(file('f', 'x'), dir('f/')), [/replace a file with a directory/]);
  // A file replaced by a link of its name is fine (the file was ours).
  await run(tar(file('t', 'target'), file('f', 'x'), sym('f', 't')), {}, async (_r, err, a) => {
    assert.equal(err, undefined, String(err));
    assert.equal(await readlink(join(a.dest, 'f')), 't');
  });
});

// ---------------------------------------------------------------------- special files

test('creates no device nodes or FIFOs, and refuses sparse and unknown entries', async () => {
  await refusedBoth(tar(entry('fifo', { type: '6' }), entry('chr', { type: '3' }), entry('blk', { type: '4' }), entry('odd', { type: 'Z', body: 'data' }), file('ok', 'ok')), [
    /FIFOs/,
    /device nodes/,
    /device nodes/,
    /type "Z"/,
  ], async (a) => assert.deepEqual(await readdir(a.dest), ['ok']));
  await refusedBoth(tar(pax({ 'GNU.sparse.major': '1', 'GNU.sparse.minor': '0', 'GNU.sparse.realsize': String(2 ** 50) }), file('sparse', 'x'.repeat(600))), [/sparse/], async (a) => {
    assert.deepEqual(await readdir(a.dest), []);
  });
});

// ---------------------------------------------------------------------- bounds and malformed input

test('bounds: entries, total bytes, header size', async () => {
  const eleven = tar(...Array.from({ length: 11 }, (_, i) => file(`f${i}`, 'x')));
  await run(eleven, { maxEntries: 10 }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(eleven, { maxEntries: 11 }, (r) => assert.equal(r?.files, 11));
  await run(tar(file('a', 'x'.repeat(600)), file('b', 'x'.repeat(600))), { maxBytes: 1000 }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(tar(pax({ comment: 'c'.repeat(2 * 1024 * 1024) }), file('a', 'x')), {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /pax header of \d+ bytes exceeds/);
  });
  await run(tar(pax({ comment: 'c'.repeat(2000) }), file('a', 'x')), { maxHeaderSize: 1000 }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(tar(...Array.from({ length: 70 }, () => pax({ comment: 'c' })), file('a', 'x')), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
});

test('compression bombs: gzip and zstd stopped by the ratio bound, zstd windows bounded', async (t) => {
  const zeros = tar(file('zeros', Buffer.alloc(64 * 1024 * 1024)));
  await run(gzipSync(zeros, { level: 9 }), {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /compression bomb/);
  });
  // A 2 KiB block repeated: deflate compresses it about 80:1.
  const text = tar(file('text', randomBytes(1024).toString('hex').repeat(1500)));
  await run(gzipSync(text), { maxRatio: 50 }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(gzipSync(text), {}, (r, err) => assert.equal(r?.files, 1, String(err)));
  // A frame that asks for a 1 GiB window is refused before the decoder allocates it.
  const frame = Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0x00, (30 - 10) << 3, 0x01, 0x00, 0x00]);
  await run(frame, {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /window/);
  });
  const zstd = spawnSync('zstd', ['-q', '-c', '-19'], { input: zeros, maxBuffer: 1 << 30 });
  if (zstd.status !== 0 || zstd.error) return t.skip('no zstd command here');
  assert.ok(zstd.stdout.length * 1000 < zeros.length, 'the zstd bomb compresses better than 1000:1');
  await run(zstd.stdout, {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /compression bomb/);
  });
  await run(spawnSync('zstd', ['-q', '-c'], { input: text }).stdout, { maxZstdWindow: 1024 }, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /window/);
  });
});

test('malformed and truncated input is an error, never a partial success', async () => {
  const good = tar(file('a', 'x'.repeat(2000)), file('b', 'y'));
  await run(good.subarray(0, 1000), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID')); // inside a body
  await run(good.subarray(0, 300), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID')); // inside a header
  await run(gzipSync(good).subarray(0, 40), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(Buffer.from('this is not a tar archive at all, just some text'.repeat(20)), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  const corrupt = Buffer.from(good);
  corrupt[10] = 0x41; // the checksum no longer matches
  await run(corrupt, {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  const badOctal = tar(file('a', 'x'));
  badOctal.write('9', 124);
  await run(badOctal, {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  // A zero block followed by another header, and too much data after the end.
  await run(Buffer.concat([good.subarray(0, 3072 - 1024), Buffer.alloc(512), good.subarray(0, 512)]), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(Buffer.concat([good, Buffer.alloc(17 * 1024 * 1024)]), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  // Malformed pax records: no newline, a length that does not fit, NUL in a path.
  for (const body of ['20 path=abc\0', '99 path=abc\n', '14 path=a\0bc\n', '9 size=x\n']) {
    await run(tar({ name: 'PaxHeader', type: 'x', body }, file('a', 'x')), { skipRefused: true }, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  }
  // An archive of only the end marker is an empty archive; empty input has no end marker (truncated).
  await run(Buffer.alloc(1024), {}, (r, err) => assert.equal(r?.entries, 0, String(err)));
  await run(Buffer.alloc(0), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
  await run(Buffer.alloc(0), { allowMissingEndMarker: true }, (r, err) => assert.equal(r?.entries, 0, String(err)));
});

test('errors from the source and cancellation end the extraction', async () => {
  const failing = async function* () {
    yield tar(file('a', 'x')).subarray(0, 1024);
    throw new Error('the registry hung up');
  };
  await run(() => Readable.from(failing()), {}, (_r, err) => {
    code(err, 'E_IO');
    assert.match((err as Error).message, /hung up/);
  });
  const controller = new AbortController();
  controller.abort();
  await run(tar(file('a', 'x')), { signal: controller.signal }, (_r, err) => code(err, 'E_ABORTED'));
});

test('a 222,371-level name is refused quickly and makes no directory', async () => {
  const name = 'a/'.repeat(222_371) + 'f';
  const t0 = Date.now();
  await refusedBoth(tar(pax({ path: name }), file('x', 'deep')), [/longer than 4096 bytes/], async (a) => assert.deepEqual(await readdir(a.dest), []));
  assert.ok(Date.now() - t0 < 5000);
});

// ---------------------------------------------------------------------- review findings (regressions)

test('the tree of what was made holds names, not paths, and its memory is bounded (maxIndexBytes)', async () => {
  // A directory 12 levels of 250-byte names deep, a link to it, and 2,000 files through the link: with
  // one full path per file that is ~6 MB of keys; as a tree it is one short name per file.
  const deep = Array.from({ length: 12 }, (_, i) => String.fromCharCode(97 + i).repeat(250)).join('/');
  const files = Array.from({ length: 2000 }, (_, i) => file(`s/f${i}`));
  const archive = tar(pax({ path: `${deep}/` }), dir('x'), pax({ linkpath: deep }), sym('s', 'x'), ...files);
  await run(archive, { maxIndexBytes: 500_000 }, async (r, err, a) => {
    assert.equal(r?.files, 2000, String(err));
    assert.equal((await readdir(join(a.dest, ...deep.split('/')))).length, 2000);
  });
  await run(archive, { maxIndexBytes: 100_000 }, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /tree of names needs more than 100000 bytes/);
  });
});

test('symbolic links: a resolution to a directory is remembered, and link-target work is bounded (maxLinkSteps)', async () => {
  // Targets of ~4,000 bytes ("d/../d/../…"), each about 1,600 components.
  const long = (tail: string): string => {
    let t = '';
    while (t.length + 5 + tail.length <= 4000) t += 'd/../';
    return t + tail;
  };
  const chain: TarEntry[] = [dir('d'), pax({ linkpath: long('d') }), sym('l0', 'x')];
  for (let k = 1; k <= 5; k++) chain.push(pax({ linkpath: long(`l${k - 1}`) }), sym(`l${k}`, 'x'));
  // 500 files through a chain of six such links: ~9,600 steps once, then none (without the cache, 4.8M).
  const through = tar(...chain, ...Array.from({ length: 500 }, (_, i) => file(`l5/f${i}`, 'x')));
  await run(through, { maxLinkSteps: 20_000 }, async (r, err, a) => {
    assert.equal(r?.files, 500, String(err));
    assert.equal((await readdir(join(a.dest, 'd'))).length, 500);
  });
  // A link to a file is not remembered (a file may be replaced): every link through it costs its target again.
  const toFile = tar(dir('d'), file('d/f', 'x'), pax({ linkpath: long('d/f') }), sym('lf', 'x'), ...Array.from({ length: 100 }, (_, i) => sym(`s${i}`, 'lf')));
  await run(toFile, {}, (r, err) => assert.equal(r?.symlinks, 101, String(err)));
  await run(toFile, { maxLinkSteps: 20_000 }, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /symbolic links takes more than 20000 steps/);
  });
});

test('the archive must end with its end-of-archive marker, and only zeros may follow it', async () => {
  const good = tar(file('a', 'x'.repeat(600)), file('b', 'y')); // 512 + 1024 + 512 + 512, then 1024 zeros
  for (const cut of [1536, 2560]) {
    await run(good.subarray(0, cut), {}, (_r, err) => {
      code(err, 'E_ARCHIVE_INVALID');
      assert.match((err as Error).message, /without its end-of-archive marker/);
    });
    await run(good.subarray(0, cut), { allowMissingEndMarker: true }, (r, err) => assert.equal(r?.files, cut === 1536 ? 1 : 2, String(err)));
  }
  await run(good.subarray(0, 3072), {}, (r, err) => assert.equal(r?.files, 2, String(err))); // one zero block
  // A pax or GNU long-name header with no entry after it: at the end of the stream, or before the marker.
  const lonePax = tar(pax({ path: 'zzz' }));
  const longName: TarEntry = { name: '././@LongLink', type: 'L', body: 'a-long-name\0' };
  for (const meta of [lonePax, tar(longName)]) {
    await run(meta.subarray(0, meta.length - 1024), {}, (_r, err) => {
      code(err, 'E_ARCHIVE_INVALID');
      assert.match((err as Error).message, /with no entry for it/);
    });
    await run(meta, { allowMissingEndMarker: true }, (_r, err) => {
      code(err, 'E_ARCHIVE_INVALID');
      assert.match((err as Error).message, /followed by the end of the archive, not by an entry/);
    });
  }
  // Go's reading: a stream that stops after a lone pax header is an empty archive.
  await run(lonePax.subarray(0, lonePax.length - 1024), { allowMissingEndMarker: true }, (r, err) => assert.equal(r?.entries, 0, String(err)));
  // After the marker: zero padding (a 10 KiB record) is fine, anything else is not, nor a second archive.
  await run(Buffer.concat([good, Buffer.alloc(10240 - good.length)]), {}, (r, err) => assert.equal(r?.files, 2, String(err)));
  await run(Buffer.concat([good, Buffer.alloc(100), Buffer.from('garbage')]), {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /data after the end-of-archive marker/);
  });
  await run(Buffer.concat([good, tar(file('c', 'z'))]), {}, (_r, err) => code(err, 'E_ARCHIVE_INVALID'));
});

/** A zstd frame (8 MiB window, or 2^(10+exp)) of raw ('raw') and RLE ('rle') blocks, with an optional content checksum. */
function zstdFrame(blocks: Array<{ rle?: number; raw?: Buffer; size?: number }>, opts: { checksum?: number; windowExp?: number } = {}): Buffer {
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd, opts.checksum === undefined ? 0x00 : 0x04, (opts.windowExp ?? 13) << 3])];
  blocks.forEach((b, i) => {
    const last = i === blocks.length - 1 ? 1 : 0;
    const size = b.raw ? b.raw.length : b.size!;
    const h = last | ((b.raw ? 0 : 1) << 1) | (size << 3);
    parts.push(Buffer.from([h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff]), b.raw ?? Buffer.from([b.rle!]));
  });
  if (opts.checksum !== undefined) {
    const c = Buffer.alloc(4);
    c.writeUInt32LE(opts.checksum);
    parts.push(c);
  }
  return Buffer.concat(parts);
}

test('zstd: blocks over the block maximum are refused, and a bomb of RLE blocks stops at the ratio bound', async () => {
  // fzstd would expand this 4-byte RLE block to 2 MiB.
  await run(zstdFrame([{ rle: 0, size: (1 << 21) - 1 }, { rle: 0, size: 1024 }]), {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /zstd block of 2097151 bytes, over the block maximum of 131072 bytes/);
  });
  // The maximum is min(window, 128 KiB).
  await run(zstdFrame([{ rle: 0, size: 2048 }], { windowExp: 0 }), {}, (_r, err) => assert.match(String(err), /over the block maximum of 1024 bytes/));
  await run(zstdFrame([{ rle: 0, size: 1024 }], { windowExp: 0 }), {}, (r, err) => assert.equal(r?.entries, 0, String(err)));
  // 4,000 RLE blocks of 128 KiB (16 KB in, 500 MiB out): stopped just past the first MiB, as each block comes out.
  const t0 = Date.now();
  await run(zstdFrame(Array.from({ length: 4000 }, () => ({ rle: 0, size: 128 * 1024 }))), {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /compression bomb/);
  });
  assert.ok(Date.now() - t0 < 2000);
  // The scanner hands the decoder no more input than could produce the bound it is given (plus a block).
  const scanner = new ZstdFrameScanner(1 << 27);
  const frame = zstdFrame(Array.from({ length: 100 }, () => ({ rle: 0, size: 128 * 1024 })));
  // It stops just after the header of the 8th 128 KiB block (1 MiB), then goes on from there.
  assert.equal(scanner.scan(frame, 0, 1024 * 1024), 6 + 7 * 4 + 3);
  assert.equal(scanner.scan(frame, 37, 1024 * 1024), 37 + 1 + 7 * 4 + 3);
});

test('zstd content checksums are verified', async (t) => {
  const empty = Buffer.alloc(1024); // an empty tar archive
  const sum = Number(xxh64(empty) & 0xffffffffn);
  await run(zstdFrame([{ raw: empty }], { checksum: sum }), {}, (r, err) => assert.equal(r?.entries, 0, String(err)));
  await run(zstdFrame([{ raw: empty }], { checksum: (sum ^ 1) >>> 0 }), {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /zstd frame checksum does not match/);
  });
  const body = tar(file('a', randomBytes(300_000)), file('b', 'y'));
  const z = spawnSync('zstd', ['-q', '-c', '--check'], { input: body });
  if (z.status !== 0 || z.error) return t.skip('no zstd command here');
  await run(z.stdout, {}, (r, err) => assert.equal(r?.files, 2, String(err)));
  const bad = Buffer.from(z.stdout);
  bad[bad.length - 1] ^= 0xff; // the stored checksum
  await run(bad, {}, (_r, err) => {
    code(err, 'E_ARCHIVE_INVALID');
    assert.match((err as Error).message, /checksum/);
  });
  // Two frames, the first one's checksum wrong: caught before the second is read.
  const first = Buffer.from(spawnSync('zstd', ['-q', '-c', '--check'], { input: body.subarray(0, 4096) }).stdout);
  first[first.length - 2] ^= 0x01;
  const second = spawnSync('zstd', ['-q', '-c', '--check'], { input: body.subarray(4096) }).stdout;
  await run(Buffer.concat([first, second]), {}, (_r, err) => assert.match(String(err), /checksum does not match/));
});
