/**
 * `npm run bench` (install part, LADING_BENCH_ONLY=install): `lading install` of a cli artifact that carries
 * one large file, against `lading serve` on this machine, with skopeo copying the same artifact in the same
 * run as the peer and `lading pull` for context. Prints wall time and peak RSS per tool with ratios to
 * skopeo, and a PASS/MISS line for the issue's target: "installing a 500 MiB artifact with peak RSS under
 * 150 MB". Results also go to bench/results/install.json.
 *
 * Environment:
 *   LADING_BENCH_INSTALL_MIB  size of the large file in the artifact, in MiB (default 500)
 *   LADING_BENCH_RUNS         repetitions of every measurement (default 3)
 *   LADING_BENCH_CLI          how lading is run: auto (default: dist/ when built and newer than every file in
 *                             src/, else a throw-away tsc build under bench/), dist, build
 *   CI=true                   skopeo is required (a missing peer fails the run instead of skipping its row)
 *
 * Method:
 * - One `lading serve` (the compiled CLI, 127.0.0.1, a port the OS picks, a temp root) serves every tool in
 *   every run; it is stopped by its PID at the end.
 * - The artifact is pushed once, untimed, as a cli for the host platform (an index with one variant):
 *   bin/ (a directory layer holding a #!/bin/sh tool) and big.bin (a file layer of the configured size).
 * - Timed, each under GNU time (`/usr/bin/time -f %M`: ru_maxrss from wait4(), the largest resident set of
 *   the process or any descendant it waited for):
 *     lading install <ref> --root <fresh root> --lockfile <tmp> --json
 *     skopeo copy --all --preserve-digests --src-tls-verify=false docker://<ref> dir:<fresh dir>
 *     lading pull <ref> --platform native -o <fresh dir> --json
 *   Wall time is taken around the child with a monotonic clock, and includes Node's or Go's start-up.
 * - The order of the tools rotates from run to run; `sync` runs (untimed) before each timed step so that
 *   one tool's dirty pages are not written back on another's clock. Every destination is new and is
 *   removed after it has been checked.
 * - Checked after each step, untimed: the installed <root>/bin/tool runs, the installed big.bin hashes
 *   (openssl) to the source's sha256 and the lockfile pins the pushed index; skopeo's copy holds the
 *   big.bin blob with the source's hash; the pulled big.bin hashes to it too.
 * - Reported: the median wall time and the largest peak RSS over the runs (the target is judged on the
 *   largest).
 * The process exits non-zero only when the benchmark itself cannot run; a missed target is reported.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';

import { which } from '../test/support/peers.js';
import { measure, stopMeasured, OUTPUT_KEEP, TIME_BIN, type Measured } from './measure.js';
import { MiB, REPO_ROOT, cleanupOnExit, compiledCli, intEnv, makeFile, mb, median, sha256Hex, syncDisks } from './common.js';

const RESULTS = join(REPO_ROOT, 'bench', 'results', 'install.json');
/** A bound on any one child process; a hung tool is a failure of the benchmark, not a slow result. */
const CHILD_TIMEOUT_MS = 5 * 60_000;
/** A bound on how long `lading serve` may take to say where it listens. */
const STARTUP_MS = 20_000;
const TARGET_MB = 150;
const REPO = 'bench/tool';
const TAG = '1.0.0';
const BIG = 'big.bin';

const SIZE_MIB = intEnv('LADING_BENCH_INSTALL_MIB', 500, 1, 64 * 1024);
const RUNS = intEnv('LADING_BENCH_RUNS', 3, 1, 50);
const CLI_MODE = process.env.LADING_BENCH_CLI ?? 'auto';
if (!['auto', 'dist', 'build'].includes(CLI_MODE)) throw new Error(`LADING_BENCH_CLI must be auto, dist or build for the install benchmark, not "${CLI_MODE}"`);

// ------------------------------------------------------------------ child processes

/** An untimed helper command (the push, the checks); throws on a non-zero exit or a timeout. */
function runChecked(cmd: string, args: string[], opts: { env: NodeJS.ProcessEnv; cwd?: string }): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, env: opts.env, encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 16 * MiB });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} ${r.signal ? `was stopped by ${r.signal}` : `exited with ${r.status}`}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r.stdout;
}

// ------------------------------------------------------------------ the server

interface Server {
  host: string;
  pid: number;
  /** SIGTERM by PID, SIGKILL after a bound; resolves once it has exited. */
  stop(): Promise<void>;
  /** The same, synchronously and at once (SIGKILL), for exit hooks. */
  kill(): void;
}

async function startServer(cli: string, root: string, logFile: string, env: NodeJS.ProcessEnv): Promise<Server> {
  const logFd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [cli, 'serve', '--addr', '127.0.0.1:0', '--root', root, '--log-level', 'warn', '--json'], {
    stdio: ['ignore', 'pipe', logFd],
    env,
    cwd: root,
  });
  closeSync(logFd);
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const alive = (): boolean => child.exitCode === null && child.signalCode === null;
  const kill = (): void => {
    if (alive() && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  };
  const stop = async (): Promise<void> => {
    if (!alive() || child.pid === undefined) return;
    process.kill(child.pid, 'SIGTERM');
    // A bound on the graceful close, not a synchronisation point: the 'exit' event is.
    const timer = setTimeout(kill, 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    // --json prints one JSON document ({url, host, root}, possibly over several lines) once it listens.
    const host = await new Promise<string>((resolve, reject) => {
      let out = '';
      const timer = setTimeout(() => done(new Error(`lading serve did not say where it listens within ${STARTUP_MS} ms`)), STARTUP_MS);
      const onData = (c: Buffer): void => {
        out = (out + c.toString('utf8')).slice(-OUTPUT_KEEP);
        const doc = out.slice(Math.max(0, out.indexOf('{'))).trim();
        if (!doc.endsWith('}')) return;
        try {
          done(undefined, (JSON.parse(doc) as { host: string }).host);
        } catch {
          /* not complete yet */
        }
      };
      const onExit = (code: number | null): void => done(new Error(`lading serve exited during start-up (code ${code}); log:\n${readFileSync(logFile, 'utf8').slice(-4000)}`));
      const done = (err: Error | undefined, value?: string): void => {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        child.off('exit', onExit);
        if (err) reject(err);
        else resolve(value!);
      };
      child.stdout!.on('data', onData);
      child.once('exit', onExit);
    });
    // Keep reading stdout so that the pipe never fills.
    child.stdout!.resume();
    const res = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(5_000) });
    await res.body?.cancel();
    if (res.status !== 200) throw new Error(`lading serve answered GET /v2/ with ${res.status}`);
    return { host, pid: child.pid!, stop, kill };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ------------------------------------------------------------------ the artifact

interface Source {
  dir: string;
  bigPath: string;
  hex: string;
  /** The index digest the push reported (what install resolves the tag to and locks). */
  indexDigest: string;
}

function prepareAndPush(work: string, cli: string, host: string, env: NodeJS.ProcessEnv): Source {
  const dir = join(work, 'source');
  mkdirSync(join(dir, 'bin'), { recursive: true });
  const tool = join(dir, 'bin', 'tool');
  writeFileSync(tool, '#!/bin/sh\necho "tool-ok $*"\n');
  chmodSync(tool, 0o755);
  const bigPath = join(dir, BIG);
  makeFile(bigPath, SIZE_MIB);
  const hex = sha256Hex(bigPath);
  writeFileSync(
    join(dir, 'envelope.json'),
    JSON.stringify({ apiVersion: 'lading.dev/v1', kind: 'cli', metadata: { name: 'tool', version: TAG }, spec: { executable: 'bin/tool' } }),
  );
  const out = runChecked(process.execPath, [cli, 'push', `${host}/${REPO}:${TAG}`, 'bin', BIG, '--config', 'envelope.json', '--platform', 'native', '--json'], { env, cwd: dir });
  const pushed = JSON.parse(out) as { index?: { digest: string }; layers: Array<{ digest: string; size: number; annotations?: Record<string, string> }> };
  if (!pushed.index) throw new Error(`push --platform native did not make an index:\n${out}`);
  const big = pushed.layers.find((l) => l.annotations?.['org.opencontainers.image.title'] === BIG);
  // A file layer is the file's bytes as they are, so skopeo's copy can be checked by the source's hash.
  if (!big || big.digest !== `sha256:${hex}` || big.size !== SIZE_MIB * MiB) throw new Error(`the pushed ${BIG} layer is not the file itself:\n${out}`);
  return { dir, bigPath, hex, indexDigest: pushed.index.digest };
}

// ------------------------------------------------------------------ the tools

type Tool = 'lading install' | 'skopeo copy' | 'lading pull';

interface Ctx {
  cli: string;
  host: string;
  env: NodeJS.ProcessEnv;
  scratch: string;
  src: Source;
}

const ref = (ctx: Ctx): string => `${ctx.host}/${REPO}:${TAG}`;

function checkHash(path: string, want: string, what: string): void {
  if (!existsSync(path)) throw new Error(`${what}: ${path} is missing`);
  const got = sha256Hex(path);
  if (got !== want) throw new Error(`${what}: ${path} hashes to ${got}, not ${want}`);
}

async function ladingInstall(ctx: Ctx, dest: string): Promise<Measured> {
  const root = join(dest, 'root');
  const lockfile = join(dest, 'lading.lock');
  const m = await measure(process.execPath, [ctx.cli, 'install', ref(ctx), '--root', root, '--lockfile', lockfile, '--json'], { env: ctx.env, scratch: ctx.scratch, timeoutMs: CHILD_TIMEOUT_MS });
  const result = JSON.parse(m.stdout) as { path: string; changed: boolean; command?: string; root?: string };
  if (!result.changed || result.command !== 'tool' || result.root !== ctx.src.indexDigest) throw new Error(`lading install reported something else than a fresh install of the pushed index:\n${m.stdout}`);
  const ran = runChecked(join(root, 'bin', 'tool'), ['bench-check'], { env: ctx.env }).trim();
  if (ran !== 'tool-ok bench-check') throw new Error(`the installed ${join(root, 'bin', 'tool')} printed ${JSON.stringify(ran)}`);
  checkHash(join(result.path, BIG), ctx.src.hex, 'lading install');
  if (!readFileSync(lockfile, 'utf8').includes(ctx.src.indexDigest)) throw new Error(`${lockfile} does not pin ${ctx.src.indexDigest}`);
  return m;
}

async function skopeoCopy(ctx: Ctx, dest: string): Promise<Measured> {
  const out = join(dest, 'dir');
  const m = await measure('skopeo', ['copy', '--quiet', '--all', '--preserve-digests', '--src-tls-verify=false', `docker://${ref(ctx)}`, `dir:${out}`], { env: ctx.env, scratch: ctx.scratch, timeoutMs: CHILD_TIMEOUT_MS });
  checkHash(join(out, ctx.src.hex), ctx.src.hex, 'skopeo copy');
  return m;
}

async function ladingPull(ctx: Ctx, dest: string): Promise<Measured> {
  const out = join(dest, 'out');
  const m = await measure(process.execPath, [ctx.cli, 'pull', ref(ctx), '--platform', 'native', '-o', out, '--json'], { env: ctx.env, scratch: ctx.scratch, timeoutMs: CHILD_TIMEOUT_MS });
  if (!(statSync(join(out, 'bin', 'tool')).mode & 0o100)) throw new Error('lading pull: bin/tool is not executable');
  checkHash(join(out, BIG), ctx.src.hex, 'lading pull');
  return m;
}

const TOOLS: Record<Tool, (ctx: Ctx, dest: string) => Promise<Measured>> = {
  'lading install': ladingInstall,
  'skopeo copy': skopeoCopy,
  'lading pull': ladingPull,
};

// ------------------------------------------------------------------ report

interface Row {
  tool: Tool;
  runs: Array<{ wallS: number; rssKiB: number }>;
  note: string;
}

function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

const NOTES: Record<Tool, string> = {
  'lading install': 'fetch + verify + stage + fsync + commit + bin/ link, lockfile',
  'skopeo copy': 'blobs into dir:, digests checked, no unpacking',
  'lading pull': 'context: fetch + verify + write files, no install',
};

async function main(): Promise<void> {
  for (const bin of ['openssl', 'sync']) {
    if (!which(bin)) throw new Error(`${bin} is not on PATH`);
  }
  if (!which(TIME_BIN)) throw new Error(`${TIME_BIN} (GNU time) is missing: apt-get install -y time`);
  const haveSkopeo = which('skopeo') !== undefined;
  if (!haveSkopeo && process.env.CI === 'true') throw new Error('skopeo is not on PATH, and CI=true requires it (apt-get install -y skopeo; see /work/shared/PEERS.md)');

  const work = spawnSync('mktemp', ['-d', join(tmpdir(), 'lading-bench-install-XXXXXX')], { encoding: 'utf8' }).stdout.trim();
  if (!work) throw new Error('mktemp failed');
  const scratch = join(work, 'scratch');
  mkdirSync(scratch);
  const buildDir = join(REPO_ROOT, 'bench', `.build-install-${process.pid}`);
  let server: Server | undefined;
  const cleanup = (): void => {
    stopMeasured();
    server?.kill();
    rmSync(work, { recursive: true, force: true });
    rmSync(buildDir, { recursive: true, force: true });
  };
  cleanupOnExit(cleanup);

  const started = performance.now();
  const compiled = compiledCli(buildDir, CLI_MODE);
  if (!compiled) throw new Error('tsc emitted no cli/main.js for the benchmark');
  // No credentials file, no install root or families from the user's environment: only what is passed counts.
  const env: NodeJS.ProcessEnv = { ...process.env, LADING_REGISTRY_CONFIG: join(work, 'no-docker-config.json') };
  delete env.LADING_ROOT;
  delete env.LADING_FAMILIES;
  console.log(`lading install bench: cli artifact with a ${SIZE_MIB} MiB file, ${RUNS} run(s) each, ${cpus().length} CPUs, node ${process.version}`);
  console.log(`lading: ${compiled.mode}`);
  if (!haveSkopeo) console.log('skopeo is not on PATH (apt-get install -y skopeo): its row and the ratios are skipped.');

  try {
    const regRoot = join(work, 'registry');
    mkdirSync(regRoot);
    server = await startServer(compiled.main, regRoot, join(work, 'serve.log'), env);
    console.log(`lading serve on ${server.host} (pid ${server.pid})`);
    const src = prepareAndPush(work, compiled.main, server.host, env);
    console.log(`pushed ${server.host}/${REPO}:${TAG} (index ${src.indexDigest.slice(0, 19)}…) in ${((performance.now() - started) / 1000).toFixed(1)} s since start`);
    const ctx: Ctx = { cli: compiled.main, host: server.host, env, scratch, src };

    const tools: Tool[] = haveSkopeo ? ['lading install', 'skopeo copy', 'lading pull'] : ['lading install', 'lading pull'];
    const rows = new Map<Tool, Row>(tools.map((t) => [t, { tool: t, runs: [], note: NOTES[t] }]));
    // A floor for the RSS figures: what the compiled CLI takes to start and print its version.
    const floor = await measure(process.execPath, [ctx.cli, '--version'], { env, scratch, timeoutMs: CHILD_TIMEOUT_MS });

    for (let run = 1; run <= RUNS; run++) {
      // The order rotates so that drift on a shared machine (and a warm or cold page cache) spreads over every tool.
      const order = tools.map((_, i) => tools[(i + run - 1) % tools.length]!);
      const cells: string[] = [];
      for (const tool of order) {
        const dest = join(work, 'dest', `${tool.replace(/\s+/g, '-')}-${run}`);
        mkdirSync(dest, { recursive: true });
        try {
          syncDisks();
          const m = await TOOLS[tool](ctx, dest);
          rows.get(tool)!.runs.push({ wallS: m.wallS, rssKiB: m.rssKiB });
          cells.push(`${tool} ${m.wallS.toFixed(2)} s ${mb(m.rssKiB).toFixed(0)} MB`);
        } finally {
          rmSync(dest, { recursive: true, force: true });
        }
      }
      console.log(`  run ${run}: ${cells.join(', ')}`);
    }

    const summary = [...rows.values()].map((r) => ({ ...r, wallS: median(r.runs.map((x) => x.wallS)), peakMB: mb(Math.max(...r.runs.map((x) => x.rssKiB))) }));
    const skopeo = summary.find((r) => r.tool === 'skopeo copy');
    const ratio = (a: number, b: number | undefined): string => (b === undefined ? 'skipped' : `${(a / b).toFixed(2)}x`);
    const body = summary.map((r) => [
      r.tool,
      r.wallS.toFixed(2),
      r.runs.map((x) => x.wallS.toFixed(2)).join(' '),
      r.peakMB.toFixed(1),
      ratio(r.wallS, skopeo?.wallS),
      ratio(r.peakMB, skopeo?.peakMB),
      r.note,
    ]);
    body.push(['lading --version', floor.wallS.toFixed(2), '', mb(floor.rssKiB).toFixed(1), '', '', 'start-up floor of the compiled CLI']);
    console.log('');
    console.log(table(['tool', 'wall s (median)', 'runs (s)', 'peak RSS MB', 'wall vs skopeo', 'RSS vs skopeo', 'note'], body));
    console.log('');
    console.log(`${SIZE_MIB} MiB file + bin/tool in one cli artifact (index, one variant) from lading serve on loopback.`);
    console.log('peak RSS: GNU time ru_maxrss, max over runs, MB = 10^6 bytes; wall: median of runs, process start-up included.');
    const install = summary.find((r) => r.tool === 'lading install')!;
    const pass = install.peakMB < TARGET_MB;
    console.log('');
    console.log(`${pass ? 'PASS' : 'MISS'}  lading install peak RSS < ${TARGET_MB} MB: ${install.peakMB.toFixed(1)} MB at ${SIZE_MIB} MiB (runs: ${install.runs.map((x) => mb(x.rssKiB).toFixed(1)).join(', ')} MB)`);
    const totalS = (performance.now() - started) / 1000;
    console.log(`\nbenchmark took ${totalS.toFixed(0)} s`);

    mkdirSync(dirname(RESULTS), { recursive: true });
    writeFileSync(
      RESULTS,
      `${JSON.stringify(
        {
          date: new Date().toISOString(),
          machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
          config: { sizeMiB: SIZE_MIB, runs: RUNS, ladingCli: compiled.mode, skopeo: haveSkopeo },
          method: 'wall: monotonic clock around the child process, median of runs; peak RSS: /usr/bin/time %M (ru_maxrss), max of runs; one lading serve on loopback for all tools; fresh destinations each run',
          rows: summary.map((r) => ({ tool: r.tool, runs: r.runs, medianWallS: Number(r.wallS.toFixed(3)), peakRssMB: Number(r.peakMB.toFixed(1)), note: r.note })),
          startupFloorRssMB: Number(mb(floor.rssKiB).toFixed(1)),
          target: { name: `lading install peak RSS < ${TARGET_MB} MB`, pass, peakRssMB: Number(install.peakMB.toFixed(1)) },
          totalSeconds: Number(totalS.toFixed(1)),
        },
        null,
        2,
      )}\n`,
    );
    console.log(`results written to ${RESULTS}`);
  } finally {
    await server?.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
