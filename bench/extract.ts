/**
 * `npm run bench` (extraction part): lading's `extract` against GNU `tar -xzf` on a 20,000-file tar.gz.
 * Prints a table with the ratio and a PASS/FAIL line for the target (within 2x of GNU tar); results go to
 * bench/results/extract.json.
 *
 * Input: 20,000 small files (deterministic content, 10 bytes to ~4 KiB) across 200 directories, packed by
 * GNU tar (`tar -czf`, the way most tarballs are made). When zstd is installed, the same tar as tar.zst is
 * measured too (lading through fzstd, pure JS, against `tar --zstd -xf`): informational, no target.
 *
 * Method:
 * - lading's `extract` runs in this process (the library call, as the installer makes it; no process
 *   start-up), GNU tar as a child process (its start-up is a few ms). Both write into fresh directories
 *   on the same file system (LADING_BENCH_EXTRACT_DIR, default the OS temp dir).
 * - `sync` (untimed) before every timed extraction, so that one side's dirty pages are not written back
 *   on the other's clock; the order alternates from run to run; outputs are kept until the end (deleting
 *   20,000 files sets off writeback and discards that would land in the next measurement).
 * - The first run of each side is compared with `diff -r`: both must make the same tree.
 * - lading's peak RSS during each extraction: VmHWM of this process from /proc/self/status, reset
 *   (clear_refs=5) right before it.
 * - Neither side fsyncs (GNU tar does not; lading's `fsync` option is off by default, the install layer
 *   fsyncs what it commits).
 *
 * Environment:
 *   LADING_BENCH_RUNS             repetitions; medians are reported (default 5)
 *   LADING_BENCH_EXTRACT_FILES    number of files (default 20000)
 *   LADING_BENCH_EXTRACT_DIR      where the work directory is made (default the OS temp dir)
 * The process exits non-zero only when the benchmark itself cannot run; a missed target is reported.
 */
import { spawnSync } from 'node:child_process';
import { createReadStream, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { extract, type Compression } from '../src/archive/extract.js';
import { REPO_ROOT, cleanupOnExit, intEnv, mb, median, syncDisks } from './common.js';

const RESULTS = join(REPO_ROOT, 'bench', 'results', 'extract.json');
const RUNS = intEnv('LADING_BENCH_RUNS', 5, 1, 50);
const FILES = intEnv('LADING_BENCH_EXTRACT_FILES', 20_000, 100, 1_000_000);
const DIRS = 200;
const BASE = process.env.LADING_BENCH_EXTRACT_DIR || tmpdir();
const TARGET = 2;

function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

function sh(cmd: string, args: string[], input?: Buffer): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 10 * 60_000, maxBuffer: 64 * 1024 * 1024, input });
  if (r.error) throw r.error;
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}: ${r.stderr}`);
  return r.stdout;
}

function has(cmd: string): boolean {
  const r = spawnSync(cmd, ['--version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

/** Deterministic content: file i of directory d, between 10 bytes and ~4 KiB. */
function makeTree(root: string): number {
  let bytes = 0;
  const perDir = Math.ceil(FILES / DIRS);
  let made = 0;
  for (let d = 0; d < DIRS && made < FILES; d++) {
    const dir = join(root, `dir-${String(d).padStart(3, '0')}`);
    mkdirSync(dir, { recursive: true });
    for (let f = 0; f < perDir && made < FILES; f++, made++) {
      const line = `directory ${d} file ${f}: the quick brown fox jumps over the lazy dog\n`;
      const size = 10 + ((d * 7919 + f * 104729) % 4096);
      const body = line.repeat(Math.ceil(size / line.length)).slice(0, size);
      writeFileSync(join(dir, `file-${String(f).padStart(4, '0')}.txt`), body);
      bytes += size;
    }
  }
  return bytes;
}

function resetPeak(): boolean {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
    return true;
  } catch {
    return false;
  }
}

function statusKiB(field: string): number | undefined {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}
const peakKiB = () => statusKiB('VmHWM');
const rssKiB = () => statusKiB('VmRSS');

interface Side {
  wallS: number[];
  peakKiB: number[];
}

async function main(): Promise<void> {
  if (!has('tar') || !sh('tar', ['--version']).includes('GNU tar')) throw new Error('GNU tar is needed as the reference (apt-get install -y tar)');
  const zstd = has('zstd');
  const started = performance.now();
  const loadBefore = loadavg();
  const work = sh('mktemp', ['-d', join(BASE, 'lading-bench-extract-XXXXXX')]).trim();
  cleanupOnExit(() => rmSync(work, { recursive: true, force: true }));
  const fsType = spawnSync('stat', ['-f', '-c', '%T', work], { encoding: 'utf8' }).stdout.trim();

  console.log(`making ${FILES} files in ${DIRS} directories under ${work} (${fsType})`);
  const srcDir = join(work, 'src');
  const contentBytes = makeTree(srcDir);
  const tgz = join(work, 'tree.tar.gz');
  sh('tar', ['-czf', tgz, '-C', srcDir, '.']);
  const formats: Array<{ name: string; file: string; compression: Compression; gnuArgs: string[] }> = [{ name: 'tar.gz', file: tgz, compression: 'gzip', gnuArgs: ['-xzf'] }];
  if (zstd) {
    const tzst = join(work, 'tree.tar.zst');
    sh('tar', ['--zstd', '-cf', tzst, '-C', srcDir, '.']);
    formats.push({ name: 'tar.zst', file: tzst, compression: 'zstd', gnuArgs: ['--zstd', '-xf'] });
  }
  // The source tree stays until the end: deleting 20,000 files sets off writeback and discards that
  // would land in the first measurements.
  const sizes = Object.fromEntries(formats.map((f) => [f.name, Number(sh('stat', ['-c', '%s', f.file]).trim())]));
  console.log(`archives: ${formats.map((f) => `${f.name} ${(sizes[f.name]! / 1e6).toFixed(2)} MB`).join(', ')}; content ${(contentBytes / 1e6).toFixed(1)} MB; ${RUNS} runs each`);

  const results: Record<string, { gnu: Side; lading: Side }> = {};
  const canPeak = resetPeak();
  const restKiB: number[] = [];
  let n = 0;
  for (const fmt of formats) {
    const res = { gnu: { wallS: [], peakKiB: [] } as Side, lading: { wallS: [], peakKiB: [] } as Side };
    results[fmt.name] = res;
    // One untimed warm-up of each side (page cache, JIT), then the timed runs.
    for (const who of ['lading', 'gnu'] as const) {
      const out = join(work, `warmup-${who}-${fmt.name}`);
      mkdirSync(out);
      if (who === 'gnu') sh('tar', [...fmt.gnuArgs, fmt.file, '-C', out]);
      else await extract(createReadStream(fmt.file), out, { compression: fmt.compression });
    }
    for (let r = 0; r < RUNS; r++) {
      const order = r % 2 === 0 ? (['lading', 'gnu'] as const) : (['gnu', 'lading'] as const);
      const outs: Record<string, string> = {};
      for (const who of order) {
        const out = join(work, `${who}-${fmt.name}-${n++}`);
        outs[who] = out;
        if (who === 'gnu') mkdirSync(out);
        syncDisks();
        if (who === 'gnu') {
          const t0 = performance.now();
          sh('tar', [...fmt.gnuArgs, fmt.file, '-C', out]);
          res.gnu.wallS.push((performance.now() - t0) / 1000);
        } else {
          if (canPeak) resetPeak();
          restKiB.push(rssKiB() ?? 0);
          const t0 = performance.now();
          const result = await extract(createReadStream(fmt.file), out, { compression: fmt.compression });
          res.lading.wallS.push((performance.now() - t0) / 1000);
          const peak = peakKiB();
          if (peak !== undefined) res.lading.peakKiB.push(peak);
          if (result.files !== FILES || result.refused.length) throw new Error(`lading extracted ${result.files} files (${result.refused.length} refused), expected ${FILES}`);
        }
        console.log(`  ${fmt.name} run ${r + 1} ${who.padEnd(6)} ${(who === 'gnu' ? res.gnu.wallS : res.lading.wallS).at(-1)!.toFixed(3)} s`);
      }
      if (r === 0) {
        // Same tree from both: names, types, contents.
        sh('diff', ['-r', '--no-dereference', outs.lading!, outs.gnu!]);
      }
    }
  }

  const rows = formats.map((f) => {
    const { gnu, lading } = results[f.name]!;
    const g = median(gnu.wallS);
    const l = median(lading.wallS);
    return { f, g, l, ratio: l / g, gnu, lading };
  });
  const fmt3 = (xs: number[]) => xs.map((x) => x.toFixed(3)).join(' ');
  console.log('');
  console.log(
    table(
      ['extract 20,000 files'.replace('20,000', FILES.toLocaleString('en')), 'GNU tar (s)', 'lading (s)', 'lading/GNU', 'lading peak RSS, MB (+ over rest)', 'GNU runs', 'lading runs'],
      rows.map((r) => [
        `${r.f.name} (${(sizes[r.f.name]! / 1e6).toFixed(2)} MB)`,
        r.g.toFixed(3),
        r.l.toFixed(3),
        `${r.ratio.toFixed(2)}x`,
        r.lading.peakKiB.length ? `${mb(Math.max(...r.lading.peakKiB)).toFixed(0)} (+${mb(Math.max(...r.lading.peakKiB) - Math.min(...restKiB)).toFixed(0)})` : 'n/a',
        fmt3(r.gnu.wallS),
        fmt3(r.lading.wallS),
      ]),
    ),
  );
  console.log('');
  console.log(`wall: median of ${RUNS} runs after one untimed warm-up each, sync before each, order alternating; ${fsType} under ${BASE};`);
  console.log('lading in-process (no start-up), GNU tar as a process; RSS: VmHWM of this process (node + tsx + the');
  console.log(`benchmark itself, ${mb(Math.min(...restKiB)).toFixed(0)} MB at rest), reset before each extraction; MB = 10^6 bytes.`);
  const gz = rows[0]!;
  const checks = [{ name: `tar.gz extraction within ${TARGET}x of GNU tar -xzf`, pass: gz.ratio <= TARGET, detail: `${gz.l.toFixed(3)} s vs ${gz.g.toFixed(3)} s = ${gz.ratio.toFixed(2)}x` }];
  for (const c of checks) console.log(`${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  const totalS = (performance.now() - started) / 1000;
  const loadAfter = loadavg();
  console.log(`\nextraction benchmark took ${totalS.toFixed(0)} s; load average ${loadBefore.map((x) => x.toFixed(2)).join(' ')} before, ${loadAfter.map((x) => x.toFixed(2)).join(' ')} after on ${cpus().length} CPUs`);
  if (loadAfter[0]! > cpus().length) console.log('the machine was busy with other work: timings are noisy');

  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(
    RESULTS,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, loadavgBefore: loadBefore, loadavgAfter: loadAfter, fileSystem: fsType },
        config: { files: FILES, directories: DIRS, contentBytes, archiveBytes: sizes, runs: RUNS },
        method: 'lading extract() in-process vs GNU tar child process; fresh output directories; sync before each timed run; alternating order; median wall time',
        results,
        summary: rows.map((r) => ({ format: r.f.name, gnuS: r.g, ladingS: r.l, ratio: r.ratio })),
        targets: checks,
        totalSeconds: Number(totalS.toFixed(1)),
      },
      null,
      2,
    )}\n`,
  );
  console.log(`results written to ${RESULTS}`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
