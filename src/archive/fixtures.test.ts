/**
 * Every archive in ../shared/fixtures/archives, handled as the fixtures README says: valid controls
 * extract with the expected contents (and the same tree GNU tar makes of them), hostile ones are refused
 * or fail cleanly with E_ARCHIVE_INVALID. Each runs in a fresh destination beside a victim file, which
 * must be byte-identical afterwards, with nothing created outside the destination (nor at the /tmp and
 * /foo paths the archives aim at).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { isLadingError } from '../errors.js';
import { fixture } from '../../test/support/fixtures.js';
import { extract, type ExtractOptions, type ExtractResult } from './extract.js';

const VICTIM = Buffer.from('victim: must stay exactly like this\n');
/** Paths outside any destination that the hostile archives aim at. */
const AIMED_AT = ['/tmp/evil.txt', '/tmp/Temp/evil.txt', '/foo/file', '/foo/hardlink'];

interface Arena {
  base: string;
  dest: string;
  /** Asserts the victim is untouched and nothing exists outside the destination that was not there before. */
  check(): Promise<void>;
  done(): Promise<void>;
}

async function arena(): Promise<Arena> {
  const base = await mkdtemp(join(tmpdir(), 'lading-fixture-'));
  await writeFile(join(base, 'victim.txt'), VICTIM);
  const dest = join(base, 'dest');
  await mkdir(dest);
  const aimedBefore = AIMED_AT.map((p) => (existsSync(p) ? readFileSync(p) : undefined));
  return {
    base,
    dest,
    async check() {
      assert.deepEqual(await readFile(join(base, 'victim.txt')), VICTIM, 'the victim beside the destination changed');
      assert.deepEqual((await readdir(base)).sort(), ['dest', 'victim.txt'], 'something was created beside the destination');
      AIMED_AT.forEach((p, i) => assert.deepEqual(existsSync(p) ? readFileSync(p) : undefined, aimedBefore[i], `${p} was touched`));
    },
    done: () => rm(base, { recursive: true, force: true }),
  };
}

/** Every path under `dir` with its kind: "f <size> <sha-ish content>", "d", "l -> target". */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d)) {
      const p = join(d, name);
      const st = await lstat(p);
      const rel = relative(dir, p);
      if (st.isDirectory()) {
        out[rel] = 'd';
        await walk(p);
      } else if (st.isSymbolicLink()) out[rel] = `l -> ${await readlink(p)}`;
      else if (st.isFile()) out[rel] = `f ${(await readFile(p)).toString('base64')}`;
      else out[rel] = 'other';
    }
  };
  await walk(dir);
  return out;
}

type Source = () => Readable;
const file = (...parts: string[]): Source => () => createReadStream(fixture('archives', ...parts));
/** A fixture compressed with a format lading does not read, decompressed by the system's own tool. */
const via = (tool: string, ...parts: string[]): Source => () => {
  const r = spawnSync(tool, ['-dc', fixture('archives', ...parts)], { maxBuffer: 64 * 1024 * 1024, timeout: 60_000 });
  if (r.status !== 0) throw new Error(`${tool} -dc failed: ${r.stderr}`);
  return Readable.from([r.stdout]);
};

interface Case {
  name: string;
  source: Source;
  /** 'ok': extracts (also without skipRefused) with `expect` as its tree; 'refused': E_UNSAFE_PATH, and with skipRefused the listed reasons; 'invalid': E_ARCHIVE_INVALID either way. */
  outcome: 'ok' | 'refused' | 'invalid';
  expect?: (dest: string, r: ExtractResult) => Promise<void>;
  refusedReasons?: RegExp[];
  message?: RegExp;
  /** Compare the result with GNU tar's extraction of the same bytes. */
  gnu?: boolean;
  /**
   * Options the outcome needs. Without them the archive must fail with E_ARCHIVE_INVALID and a message
   * matching `strictMessage`: the only such option is allowMissingEndMarker, for archives that stop at a
   * header boundary without the end-of-archive marker (lading's default reads that as truncation).
   */
  needs?: ExtractOptions;
  strictMessage?: RegExp;
}

/** An archive that stops at a header boundary, without its end-of-archive marker. */
const NO_END_MARKER: Pick<Case, 'needs' | 'strictMessage'> = { needs: { allowMissingEndMarker: true }, strictMessage: /without its end-of-archive marker|with no entry for it/ };

const gnuTar = spawnSync('tar', ['--version'], { encoding: 'utf8' }).stdout?.includes('GNU tar') ? 'tar' : undefined;

const content = async (dest: string, rel: string) => readFile(join(dest, rel), 'utf8');

const cases: Case[] = [
  // ---- snyk/zip-slip-vulnerability: good.txt plus a ../ (or ..\) escape aiming at /tmp/evil.txt
  {
    name: 'snyk-zip-slip/zip-slip.tar',
    source: file('snyk-zip-slip', 'zip-slip.tar'),
    outcome: 'refused',
    refusedReasons: [/"\.\." segment/],
    expect: async (dest) => assert.deepEqual(Object.keys(await tree(dest)), ['good.txt']),
  },
  {
    name: 'snyk-zip-slip/zip-slip-win.tar',
    source: file('snyk-zip-slip', 'zip-slip-win.tar'),
    outcome: 'refused',
    refusedReasons: [/backslash/],
    expect: async (dest) => assert.deepEqual(Object.keys(await tree(dest)), ['good.txt']),
  },
  { name: 'snyk-zip-slip/zip-slip.zip', source: file('snyk-zip-slip', 'zip-slip.zip'), outcome: 'invalid', message: /unsupported archive format: zip/ },
  { name: 'snyk-zip-slip/zip-slip-win.zip', source: file('snyk-zip-slip', 'zip-slip-win.zip'), outcome: 'invalid', message: /unsupported archive format: zip/ },

  // ---- Go's archive/tar testdata: valid controls
  {
    name: 'go-archive-tar/gnu.tar',
    source: file('go-archive-tar', 'gnu.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest) => {
      assert.equal(await content(dest, 'small.txt'), 'Kilts');
      assert.equal(await content(dest, 'small2.txt'), 'Google.com\n');
    },
  },
  {
    name: 'go-archive-tar/hardlink.tar',
    source: file('go-archive-tar', 'hardlink.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest, r) => {
      assert.equal(r.hardlinks, 1);
      assert.equal(await content(dest, 'hard.txt'), await content(dest, 'file.txt'));
      assert.equal((await lstat(join(dest, 'hard.txt'))).ino, (await lstat(join(dest, 'file.txt'))).ino);
    },
  },
  {
    name: 'go-archive-tar/pax.tar',
    source: file('go-archive-tar', 'pax.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest) => {
      const long = Array.from({ length: 100 }, (_, i) => i + 1).join('');
      assert.equal(await content(dest, `a/${long}`), 'shaner\n');
      assert.equal(await readlink(join(dest, 'a', 'b')), long);
    },
  },
  {
    name: 'go-archive-tar/trailing-slash.tar',
    source: file('go-archive-tar', 'trailing-slash.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest) => assert.ok((await lstat(join(dest, ...Array(30).fill('123456789')))).isDirectory()),
  },
  {
    // A valid control by the README ("the rest … are valid controls"), but it is a lone pax header with no
    // entry and no end marker: Go reads it as an empty archive; lading only with allowMissingEndMarker.
    name: 'go-archive-tar/pax-path-hdr.tar (a pax header and no entry: empty, with allowMissingEndMarker)',
    source: file('go-archive-tar', 'pax-path-hdr.tar'),
    outcome: 'ok',
    ...NO_END_MARKER,
    expect: async (dest, r) => {
      assert.equal(r.entries, 0);
      assert.deepEqual(await readdir(dest), []);
    },
  },
  {
    // Valid controls by the README, written without the end-of-archive marker.
    name: 'go-archive-tar/pax-multi-hdrs.tar (the last pax header applies; no end marker)',
    source: file('go-archive-tar', 'pax-multi-hdrs.tar'),
    outcome: 'ok',
    ...NO_END_MARKER,
    gnu: true,
    expect: async (dest) => assert.equal(await readlink(join(dest, 'bar')), 'PAX4/PAX4/long-linkpath-name'),
  },
  {
    name: 'go-archive-tar/gnu-multi-hdrs.tar (the last long name and long link apply; no end marker)',
    source: file('go-archive-tar', 'gnu-multi-hdrs.tar'),
    outcome: 'ok',
    ...NO_END_MARKER,
    gnu: true,
    expect: async (dest) => assert.equal(await readlink(join(dest, 'GNU2', 'GNU2', 'long-path-name')), 'GNU4/GNU4/long-linkpath-name'),
  },
  {
    name: 'go-archive-tar/gnu-long-nul.tar (a long name ends at its NUL)',
    source: file('go-archive-tar', 'gnu-long-nul.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest) => assert.deepEqual(await tree(dest), { '0123456789': 'f ' }),
  },
  {
    name: 'go-archive-tar/invalid-go17.tar (base-256 uid)',
    source: file('go-archive-tar', 'invalid-go17.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest) => assert.deepEqual(await tree(dest), { foo: 'f ' }),
  },
  {
    name: 'go-archive-tar/ustar-file-devs.tar (device numbers on a regular file)',
    source: file('go-archive-tar', 'ustar-file-devs.tar'),
    outcome: 'ok',
    gnu: true,
    expect: async (dest) => assert.deepEqual(await tree(dest), { file: 'f ' }),
  },
  // ---- Go: huge sparse files (refused; the declared size is never allocated)
  {
    name: 'go-archive-tar/gnu-sparse-big.tar',
    source: file('go-archive-tar', 'gnu-sparse-big.tar'),
    outcome: 'refused',
    refusedReasons: [/sparse/],
    expect: async (dest) => assert.deepEqual(await readdir(dest), []),
  },
  {
    name: 'go-archive-tar/pax-sparse-big.tar',
    source: file('go-archive-tar', 'pax-sparse-big.tar'),
    outcome: 'refused',
    refusedReasons: [/sparse/],
    expect: async (dest) => assert.deepEqual(await readdir(dest), []),
  },
  // ---- Go: malformed headers fail cleanly
  { name: 'go-archive-tar/pax-bad-hdr-file.tar', source: file('go-archive-tar', 'pax-bad-hdr-file.tar'), outcome: 'invalid', message: /pax record/ },
  { name: 'go-archive-tar/pax-bad-mtime-file.tar', source: file('go-archive-tar', 'pax-bad-mtime-file.tar'), outcome: 'invalid', message: /pax mtime/ },
  { name: 'go-archive-tar/pax-nul-xattrs.tar', source: file('go-archive-tar', 'pax-nul-xattrs.tar'), outcome: 'invalid', message: /NUL in a pax key/ },
  { name: 'go-archive-tar/pax-nul-path.tar', source: file('go-archive-tar', 'pax-nul-path.tar'), outcome: 'invalid', message: /NUL in the pax path/ },
  { name: 'go-archive-tar/neg-size.tar', source: file('go-archive-tar', 'neg-size.tar'), outcome: 'invalid' },
  { name: 'go-archive-tar/issue10968.tar', source: file('go-archive-tar', 'issue10968.tar'), outcome: 'invalid' },
  { name: 'go-archive-tar/issue11169.tar', source: file('go-archive-tar', 'issue11169.tar'), outcome: 'invalid' },
  { name: 'go-archive-tar/issue12435.tar', source: file('go-archive-tar', 'issue12435.tar'), outcome: 'invalid' },
  {
    name: 'go-archive-tar/pax-bad-hdr-large.tar.bz2 (bzip2 is not read)',
    source: file('go-archive-tar', 'pax-bad-hdr-large.tar.bz2'),
    outcome: 'invalid',
    message: /unsupported compression: bzip2/,
  },
  {
    name: 'go-archive-tar/pax-bad-hdr-large.tar.bz2, decompressed by bzip2 (a 1 MiB+ pax header)',
    source: via('bzip2', 'go-archive-tar', 'pax-bad-hdr-large.tar.bz2'),
    outcome: 'invalid',
    message: /pax header of \d+ bytes exceeds/,
  },

  // ---- libarchive
  {
    name: 'libarchive/test_leading_slash.tar (absolute names and hard-link targets)',
    source: file('libarchive', 'test_leading_slash.tar'),
    outcome: 'refused',
    refusedReasons: [/absolute path/, /absolute path/],
    expect: async (dest) => assert.deepEqual(await readdir(dest), []),
  },
  {
    // Not a valid control in the README, and it has no end marker: malformed by default. With the option
    // (read as Go and GNU tar read it) its point, a hard link with a non-zero size, is still checked.
    name: 'libarchive/test_compat_tar_hardlink_1.tar (a hard link with a non-zero size; no end marker)',
    source: file('libarchive', 'test_compat_tar_hardlink_1.tar'),
    outcome: 'ok',
    ...NO_END_MARKER,
    gnu: true,
    expect: async (dest) => {
      const a = join(dest, 'xmcd-3.3.2', 'docs_d', 'READMf');
      const b = join(dest, 'xmcd-3.3.2', 'README');
      assert.equal((await readFile(a)).length, 321);
      assert.equal((await lstat(a)).ino, (await lstat(b)).ino);
      assert.equal((await lstat(a)).mode & 0o700, 0o600, 'a 0444 file is made owner-writable');
    },
  },
  { name: 'libarchive/test_read_format_tar_V_negative_size.tar', source: file('libarchive', 'test_read_format_tar_V_negative_size.tar'), outcome: 'invalid' },
  {
    name: 'libarchive/test_read_format_tar_invalid_pax_size.tar',
    source: file('libarchive', 'test_read_format_tar_invalid_pax_size.tar'),
    outcome: 'invalid',
    message: /invalid pax size/,
  },
  {
    name: 'libarchive/test_read_format_tar_pax_g_large.tar (a 4 GB global pax header)',
    source: file('libarchive', 'test_read_format_tar_pax_g_large.tar'),
    outcome: 'invalid',
    message: /pax header of 4294967296 bytes exceeds/,
  },
  {
    name: 'libarchive/test_read_format_tar_pax_large_attr.tar.Z (compress is not read)',
    source: file('libarchive', 'test_read_format_tar_pax_large_attr.tar.Z'),
    outcome: 'invalid',
    message: /unsupported compression: compress/,
  },
  {
    name: 'libarchive/test_read_format_tar_pax_large_attr.tar.Z, decompressed by gzip (an 8 MB pax attribute)',
    source: via('gzip', 'libarchive', 'test_read_format_tar_pax_large_attr.tar.Z'),
    outcome: 'invalid',
    message: /pax header of 8000000 bytes exceeds/,
  },
  {
    // Its size field is "\0\0\0\0\0\0\0" + "0016\0": GNU tar reads a field that starts with NUL as empty
    // (0), Go's reader (which lading follows) skips the leading NULs (14). Either way the body is zeros.
    name: 'libarchive/test_read_format_tar_timestamp_overflow.tar',
    source: file('libarchive', 'test_read_format_tar_timestamp_overflow.tar'),
    outcome: 'ok',
    expect: async (dest) => {
      assert.deepEqual(await readFile(join(dest, 'tmp', 'f.txt')), Buffer.alloc(14));
      assert.equal((await lstat(join(dest, 'tmp', 'f.txt'))).mode & 0o777 & ~0o022, 0o644, 'mode 064 becomes owner-readable and -writable');
    },
  },
  {
    name: 'libarchive/test_read_format_tar_empty_filename.tar',
    source: file('libarchive', 'test_read_format_tar_empty_filename.tar'),
    outcome: 'invalid',
    message: /empty name/,
  },
  {
    name: 'libarchive/test_read_format_tar_acl_oob_read.tar (malformed ACL attributes, then a damaged header)',
    source: file('libarchive', 'test_read_format_tar_acl_oob_read.tar'),
    outcome: 'invalid',
  },
  {
    name: 'libarchive/test_read_format_gtar_sparse_length.tar.Z (compress is not read)',
    source: file('libarchive', 'test_read_format_gtar_sparse_length.tar.Z'),
    outcome: 'invalid',
    message: /unsupported compression: compress/,
  },
  {
    name: 'libarchive/test_read_format_gtar_sparse_length.tar.Z, decompressed by gzip (a bad sparse map)',
    source: via('gzip', 'libarchive', 'test_read_format_gtar_sparse_length.tar.Z'),
    outcome: 'refused',
    refusedReasons: [/sparse/],
    expect: async (dest) => assert.deepEqual(await tree(dest), { dir2: 'd' }),
  },

  // ---- node-tar: CVE-2024-28863, one entry 222,371 directories deep
  {
    name: 'node-tar/excessively-deep.tar',
    source: file('node-tar', 'excessively-deep.tar'),
    outcome: 'refused',
    refusedReasons: [/longer than 4096 bytes/],
    expect: async (dest) => assert.deepEqual(await readdir(dest), []),
  },
];

test('every fixture archive has a case', async () => {
  const covered = new Set(cases.map((c) => c.name.split(' ')[0]!.replace(/,$/, '')));
  const root = fixture('archives');
  for (const dir of await readdir(root)) {
    for (const f of await readdir(join(root, dir))) assert.ok(covered.has(`${dir}/${f}`), `no test case for ${dir}/${f}`);
  }
});

for (const c of cases) {
  test(`fixture ${c.name}`, { timeout: 60_000 }, async () => {
    if (c.needs) {
      // Without the options it needs, the archive is malformed.
      const plain = await arena();
      try {
        for (const skipRefused of [false, true]) {
          await assert.rejects(extract(c.source(), plain.dest, { skipRefused }), (err: unknown) => {
            assert.ok(isLadingError(err, 'E_ARCHIVE_INVALID'), `expected E_ARCHIVE_INVALID, got ${String(err)}`);
            if (c.strictMessage) assert.match((err as Error).message, c.strictMessage);
            return true;
          });
        }
        await plain.check();
      } finally {
        await plain.done();
      }
    }
    const opts: ExtractOptions = c.needs ?? {};
    // Strict (the default): refusals fail the extraction.
    const strict = await arena();
    try {
      const started = Date.now();
      const run = extract(c.source(), strict.dest, opts);
      if (c.outcome === 'ok') {
        const r = await run;
        assert.deepEqual(r.refused, []);
        await c.expect?.(strict.dest, r);
        if (c.gnu && gnuTar) {
          const g = await arena();
          try {
            const input = await streamToBuffer(c.source());
            const gr = spawnSync(gnuTar, ['-xf', '-', '-C', g.dest, '--no-same-owner', '--no-same-permissions'], { input, timeout: 60_000 });
            assert.equal(gr.status, 0, `GNU tar failed: ${gr.stderr}`);
            assert.deepEqual(await tree(strict.dest), await tree(g.dest), 'lading and GNU tar extract different trees');
          } finally {
            await g.done();
          }
        }
      } else {
        const code = c.outcome === 'refused' ? 'E_UNSAFE_PATH' : 'E_ARCHIVE_INVALID';
        await assert.rejects(run, (err: unknown) => {
          assert.ok(isLadingError(err, code), `expected ${code}, got ${String(err)}`);
          if (c.message) assert.match((err as Error).message, c.message);
          return true;
        });
      }
      assert.ok(Date.now() - started < 10_000, 'took more than 10 s');
      await strict.check();
    } finally {
      await strict.done();
    }

    // skipRefused: refused entries are listed and skipped; malformed input still fails.
    const lenient = await arena();
    try {
      const run = extract(c.source(), lenient.dest, { ...opts, skipRefused: true });
      if (c.outcome === 'invalid') {
        await assert.rejects(run, (err: unknown) => isLadingError(err, 'E_ARCHIVE_INVALID'));
      } else {
        const r = await run;
        assert.equal(r.refused.length, c.refusedReasons?.length ?? 0, JSON.stringify(r.refused));
        c.refusedReasons?.forEach((re, i) => assert.match(r.refused[i]!.reason, re));
        await c.expect?.(lenient.dest, r);
      }
      await lenient.check();
    } finally {
      await lenient.done();
    }
  });
}

async function streamToBuffer(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}
