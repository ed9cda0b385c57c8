import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { isLadingError } from '../errors.js';
import { digestOf } from '../oci/digest.js';
import { fixture } from '../../test/support/fixtures.js';
import { ustar, type TarEntry } from '../../test/support/tar.js';
import { extractTar } from './extract.js';
import { packDirectory } from './pack.js';


/** One entry, as the tests below write them: `entry(name, {type, link, body, mode})`. */
const entry = (name: string, opts: Omit<TarEntry, 'name'> = {}): TarEntry => ({ name, ...opts });
const archive = (...entries: TarEntry[]) => ustar(entries);

/** A destination inside a parent that also holds a victim file the archive must not touch. */
async function arena(): Promise<{ dest: string; victim: string; done: () => Promise<void> }> {
  const base = await mkdtemp(join(tmpdir(), 'lading-extract-'));
  const victim = join(base, 'victim.txt');
  await writeFile(victim, 'original');
  const dest = join(base, 'dest');
  await mkdir(dest);
  return { dest, victim, done: () => rm(base, { recursive: true, force: true }) };
}

async function refused(source: Readable, code: string): Promise<void> {
  const a = await arena();
  try {
    await assert.rejects(extractTar(source, a.dest), (err: unknown) => isLadingError(err, code as never));
    assert.equal(await readFile(a.victim, 'utf8'), 'original');
    assert.deepEqual(await readdir(join(a.dest, '..')).then((l) => l.sort()), ['dest', 'victim.txt']);
  } finally {
    await a.done();
  }
}

test('extracts files, directories and inner links; strips setuid and group/other write', async () => {
  const a = await arena();
  try {
    const result = await extractTar(
      Readable.from([archive(entry('d/', { type: '5', mode: 0o777 }), entry('d/f.txt', { body: 'hi', mode: 0o4777 }), entry('d/l', { type: '2', link: 'f.txt' }), entry('d/h', { type: '1', link: 'd/f.txt' }))]),
      a.dest,
    );
    assert.equal(result.entries, 4);
    assert.equal(await readFile(join(a.dest, 'd', 'l'), 'utf8'), 'hi');
    assert.equal(await readFile(join(a.dest, 'd', 'h'), 'utf8'), 'hi');
    assert.equal((await lstat(join(a.dest, 'd', 'f.txt'))).mode & 0o7777, 0o755);
  } finally {
    await a.done();
  }
});

test('refuses ".." escapes, absolute paths, links out and writes through links', async () => {
  await refused(Readable.from([archive(entry('../victim.txt', { body: 'pwned' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('/tmp/x', { body: 'pwned' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('l', { type: '2', link: '../victim.txt' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('l', { type: '2', link: '..' }), entry('l/victim.txt', { body: 'pwned' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('ok', { type: '2', link: 'sub' }), entry('ok/x', { body: 'through a link' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('h', { type: '1', link: '../victim.txt' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('fifo', { type: '6' }))]), 'E_UNSAFE_PATH');
  await refused(Readable.from([archive(entry('dev', { type: '3' }))]), 'E_UNSAFE_PATH');
});

test('hostile fixtures: zip-slip, leading slash and a 222,371-deep path are refused, the victim untouched', async () => {
  for (const f of ['snyk-zip-slip/zip-slip.tar', 'snyk-zip-slip/zip-slip-win.tar', 'libarchive/test_leading_slash.tar', 'node-tar/excessively-deep.tar']) {
    await refused(createReadStream(fixture('archives', f)), 'E_UNSAFE_PATH');
  }
  // With skipRefused the good entry of zip-slip still lands, and the refusal is reported.
  const a = await arena();
  try {
    const r = await extractTar(createReadStream(fixture('archives', 'snyk-zip-slip', 'zip-slip.tar')), a.dest, { skipRefused: true });
    assert.deepEqual(await readdir(a.dest), ['good.txt']);
    assert.equal(r.refused.length, 1);
    assert.equal(await readFile(a.victim, 'utf8'), 'original');
  } finally {
    await a.done();
  }
});

test('malformed headers fail cleanly with E_ARCHIVE_INVALID', async () => {
  for (const f of ['go-archive-tar/neg-size.tar', 'go-archive-tar/issue10968.tar', 'go-archive-tar/issue11169.tar', 'go-archive-tar/issue12435.tar', 'libarchive/test_read_format_tar_V_negative_size.tar', 'libarchive/test_read_format_tar_empty_filename.tar']) {
    await refused(createReadStream(fixture('archives', f)), 'E_ARCHIVE_INVALID');
  }
});

test('a gzip bomb is stopped by the ratio bound', async () => {
  const bomb = gzipSync(archive(entry('zeros', { body: '\0'.repeat(8 * 1024 * 1024) })));
  await refused(Readable.from([bomb]), 'E_ARCHIVE_INVALID');
});

test('a directory packed by packDirectory extracts to the same tree, and onTarBytes sees the tar', async () => {
  const a = await arena();
  try {
    const src = join(a.dest, '..', 'src');
    await mkdir(join(src, 'inner'), { recursive: true });
    await writeFile(join(src, 'inner', 'a.txt'), 'a');
    const packed = join(a.dest, '..', 'p.tgz');
    const p = await packDirectory(src, packed, 'top/name');
    const tar: Buffer[] = [];
    await extractTar(createReadStream(packed), a.dest, { requirePrefix: 'top/name', onTarBytes: (c) => tar.push(Buffer.from(c)) });
    assert.equal(digestOf(Buffer.concat(tar)), p.tarDigest);
    assert.equal(await readFile(join(a.dest, 'top', 'name', 'inner', 'a.txt'), 'utf8'), 'a');
    // The same archive is refused when it must live under another prefix.
    const b = await arena();
    try {
      await assert.rejects(extractTar(createReadStream(packed), b.dest, { requirePrefix: 'other' }), (e: unknown) => isLadingError(e, 'E_UNSAFE_PATH'));
    } finally {
      await b.done();
    }
  } finally {
    await a.done();
  }
});
