/**
 * `npm run bench` (second part): `lading serve` against docker-registry on the same machine, in the same
 * run. Prints a table with ratios and a PASS/FAIL line per target; results go to bench/results/serve.json.
 *
 * Measured, against each server in turn:
 *   (a) 1 GiB blob PUT with curl: POST to open a session, then one monolithic `PUT -T file ?digest=`
 *       (the digest is precomputed) — wall time of both curl processes;
 *   (b) 1 GiB blob GET with curl, wall time: once into /dev/null, which times the server alone (the target
 *       is judged on it), and once into a file, which adds the client's disk writes — the same work for
 *       both servers, but dirty-page writeback makes it swing by seconds on a shared machine;
 *   (c) small-manifest GET throughput with wrk at fixed concurrency — requests per second;
 *   (d) the server's peak RSS while it receives and while it serves the 1 GiB blob: VmHWM of the server
 *       process from /proc/<pid>/status, reset to the current RSS (`echo 5 > /proc/<pid>/clear_refs`)
 *       right before each operation and read right after it, set against VmRSS at rest before it.
 *
 * Environment:
 *   LADING_BENCH_SERVE_SIZE_MB   blob size in MiB (default 1024)
 *   LADING_BENCH_RUNS            repetitions of every timed operation; medians are reported (default 3)
 *   LADING_BENCH_SERVE_SECONDS   duration of one wrk run (default 10)
 *   LADING_BENCH_SERVE_CONNS     wrk connections (default 32)
 *   LADING_BENCH_SERVE_LOG       lading's --log-level (default info, as `lading serve` runs by default;
 *                                its logs go to a file)
 *   LADING_BENCH_SERVE_PROF      1: run the lading server with --cpu-prof; the profile's path is printed
 *   LADING_BENCH_CLI             how lading is run: auto (default: dist/ when built and newer than every
 *                                file in src/, else a throw-away tsc build under bench/), dist, build
 *
 * Method:
 * - Both servers run as their own processes (lading as the built CLI, `lading serve`), on 127.0.0.1 with
 *   a port the OS picks, with storage under one temp directory, and stay up for the whole run.
 * - Every PUT goes to a fresh repository, so every byte is uploaded and hashed again by the server.
 * - `sync` runs (untimed) before every timed operation so that one server's dirty pages are not written
 *   back on the other's clock; the order of the two servers alternates from run to run.
 * - The first GET of each server is checked byte for byte with `cmp`; the others by size.
 * - wrk runs with one thread (the machine is small; the load generator competes with the server for CPU
 *   either way, equally for both), after a 2 s warm-up, and a run with any non-2xx answer or socket error
 *   is a failure of the benchmark, not a result.
 * The process exits non-zero only when the benchmark itself cannot run; missed targets are reported.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import { startDockerRegistry, type DockerRegistry } from '../test/support/registry.js';
import { which } from '../test/support/peers.js';
import { MiB, REPO_ROOT, cleanupOnExit, compiledCli, intEnv, makeFile, mb, median, sha256Hex, syncDisks } from './common.js';

const RESULTS = join(REPO_ROOT, 'bench', 'results', 'serve.json');
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';
const OUTPUT_KEEP = 64 * 1024;
/** A bound on any one child process; a hung tool is a crash of the benchmark, not a slow result. */
const CHILD_TIMEOUT_MS = 5 * 60_000;
const STARTUP_MS = 20_000;
/** "Flat": the server's peak RSS while moving the blob exceeds its RSS at rest by less than this. */
const FLAT_LIMIT_MB = 32;

const SIZE_MB = intEnv('LADING_BENCH_SERVE_SIZE_MB', 1024, 1, 64 * 1024);
const RUNS = intEnv('LADING_BENCH_RUNS', 3, 1, 50);
const WRK_SECONDS = intEnv('LADING_BENCH_SERVE_SECONDS', 10, 1, 600);
const WRK_CONNS = intEnv('LADING_BENCH_SERVE_CONNS', 32, 1, 10_000);
const LOG_LEVEL = process.env.LADING_BENCH_SERVE_LOG || 'info';
const PROFILE = process.env.LADING_BENCH_SERVE_PROF === '1';
const CLI_MODE = process.env.LADING_BENCH_CLI ?? 'auto';
if (!['auto', 'dist', 'build'].includes(CLI_MODE)) throw new Error(`LADING_BENCH_CLI must be auto, dist or build for the server benchmark, not "${CLI_MODE}"`);

// ------------------------------------------------------------------ child processes

interface Ran {
  wallS: number;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** Runs one command to completion; resolves with its wall time, rejects on a non-zero exit or a timeout. */
async function run(cmd: string, args: string[]): Promise<Ran> {
  const t0 = performance.now();
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (c: Buffer) => (stdout = (stdout + c.toString('utf8')).slice(-OUTPUT_KEEP)));
  child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString('utf8')).slice(-OUTPUT_KEEP)));
  const timer = setTimeout(() => child.kill('SIGKILL'), CHILD_TIMEOUT_MS);
  const code = await new Promise<number | null>((res, rej) => {
    child.once('error', rej);
    child.once('close', (c) => res(c));
  }).finally(() => {
    clearTimeout(timer);
    children.delete(child);
  });
  const wallS = (performance.now() - t0) / 1000;
  if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${code}\n--- stdout\n${stdout}\n--- stderr\n${stderr}`);
  return { wallS, stdout, stderr };
}

// ------------------------------------------------------------------ /proc

function procStatus(pid: number): { rssKiB: number; hwmKiB: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(text);
    if (!m) throw new Error(`/proc/${pid}/status has no ${name}`);
    return Number(m[1]);
  };
  return { rssKiB: field('VmRSS'), hwmKiB: field('VmHWM') };
}

/** Sets the process's VmHWM back to its current RSS (Linux 4.0+), so the next reading is this operation's peak. */
function resetPeak(pid: number): void {
  writeFileSync(`/proc/${pid}/clear_refs`, '5');
}

/** The docker-registry process serving `configPath` (the helper does not hand out its pid). */
function pidOfCommand(needle: string): number {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const cmdline = readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (cmdline.includes(needle) && cmdline.some((a) => a.endsWith('docker-registry'))) found.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  if (found.length !== 1) throw new Error(`expected one docker-registry process serving ${needle}, found ${found.length}`);
  return found[0]!;
}

// ------------------------------------------------------------------ the servers

interface Server {
  name: 'docker-registry' | 'lading';
  url: string;
  pid: number;
  stop(): Promise<void>;
}

/** dist/ when it is built and newer than every source file, else a throw-away tsc build. */
function chooseCli(buildDir: string): { main: string; mode: string } {
  const compiled = compiledCli(buildDir, CLI_MODE);
  if (!compiled) throw new Error('tsc emitted no cli/main.js for the benchmark');
  return compiled;
}

async function startDocker(): Promise<Server> {
  const reg: DockerRegistry = await startDockerRegistry();
  const pid = pidOfCommand(join(reg.root, 'config.yml'));
  return { name: 'docker-registry', url: reg.url, pid, stop: () => reg.stop() };
}

async function startLading(main: string, root: string, logFile: string, profDir: string): Promise<Server> {
  const logFd = openSync(logFile, 'a');
  const args = [
    ...(PROFILE ? ['--cpu-prof', '--cpu-prof-dir', profDir] : []),
    main,
    'serve',
    '--addr',
    '127.0.0.1:0',
    '--root',
    root,
    '--log-level',
    LOG_LEVEL,
    '--json',
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', logFd], cwd: root });
  closeSync(logFd);
  children.add(child);
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out = (out + c.toString('utf8')).slice(-OUTPUT_KEEP)));
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) {
      // SIGTERM: a graceful close, which also lets --cpu-prof write its profile.
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    children.delete(child);
  };
  try {
    const deadline = Date.now() + STARTUP_MS;
    let url: string | undefined;
    for (let i = 0; i < STARTUP_MS / 50 && Date.now() < deadline && url === undefined; i++) {
      if (child.exitCode !== null) throw new Error(`lading serve exited during startup (code ${child.exitCode}); log in ${logFile}:\n${readFileSync(logFile, 'utf8').slice(-4000)}`);
      // --json prints one JSON document (possibly over several lines) once the server listens.
      const doc = out.slice(Math.max(0, out.indexOf('{'))).trim();
      try {
        if (doc.endsWith('}')) url = (JSON.parse(doc) as { url: string }).url;
      } catch {
        /* not complete yet */
      }
      if (url === undefined) await delay(50);
    }
    if (url === undefined) throw new Error(`lading serve did not print where it listens within ${STARTUP_MS} ms`);
    const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(5_000) });
    await res.body?.cancel();
    if (res.status !== 200) throw new Error(`lading serve answered GET /v2/ with ${res.status}`);
    return { name: 'lading', url, pid: child.pid!, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

// ------------------------------------------------------------------ operations

interface Input {
  path: string;
  digest: string;
  size: number;
}

async function curlPut(server: Server, input: Input, repo: string): Promise<number> {
  const post = await run('curl', ['-sS', '--fail-with-body', '-X', 'POST', '-D', '-', '-o', '/dev/null', `${server.url}/v2/${repo}/blobs/uploads/`]);
  const m = /^location:\s*(\S+)/im.exec(post.stdout);
  if (!m) throw new Error(`${server.name} opened an upload without a Location header:\n${post.stdout}`);
  const loc = new URL(m[1]!, server.url);
  loc.searchParams.set('digest', input.digest);
  // -T streams the file; an empty Expect header stops curl from waiting for "100 Continue".
  const put = await run('curl', ['-sS', '--fail-with-body', '-o', '/dev/null', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:', '-T', input.path, loc.toString()]);
  return post.wallS + put.wallS;
}

async function curlGet(server: Server, input: Input, repo: string, out: string, check: boolean): Promise<number> {
  const r = await run('curl', ['-sS', '--fail-with-body', '-o', out, '-w', '%{size_download}', `${server.url}/v2/${repo}/blobs/${input.digest}`]);
  if (Number(r.stdout.trim()) !== input.size) throw new Error(`${server.name} sent ${r.stdout.trim()} bytes, not ${input.size}`);
  if (check) {
    const c = spawnSync('cmp', ['-s', input.path, out], { timeout: 120_000 });
    if (c.status !== 0) throw new Error(`the blob ${server.name} served differs from the source`);
  }
  // Only a file of the benchmark's own is removed; /dev/null is a device every process needs.
  if (out !== '/dev/null') rmSync(out, { force: true });
  return r.wallS;
}

/** Pushes a small image (config, one small layer, manifest) with plain HTTP; returns the manifest's size. */
async function pushSmallManifest(server: Server, repo: string): Promise<number> {
  const putBlob = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
    const open = await fetch(`${server.url}/v2/${repo}/blobs/uploads/`, { method: 'POST' });
    await open.body?.cancel();
    const loc = new URL(open.headers.get('location')!, server.url);
    loc.searchParams.set('digest', digest);
    const put = await fetch(loc, { method: 'PUT', body: bytes, headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`${server.name} refused a blob: ${put.status} ${await put.text()}`);
    return { digest, size: bytes.length };
  };
  const config = await putBlob(Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] } })));
  const layer = await putBlob(randomBytes(1024));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer, annotations: { 'org.opencontainers.image.title': 'small.bin' } }],
    }),
  );
  const put = await fetch(`${server.url}/v2/${repo}/manifests/v1`, { method: 'PUT', body: manifest, headers: { 'content-type': MANIFEST_TYPE } });
  if (put.status !== 201) throw new Error(`${server.name} refused the manifest: ${put.status} ${await put.text()}`);
  const get = await fetch(`${server.url}/v2/${repo}/manifests/v1`, { headers: { accept: MANIFEST_TYPE } });
  const got = Buffer.from(await get.arrayBuffer());
  if (get.status !== 200 || !got.equals(manifest)) throw new Error(`${server.name} does not serve the manifest back (${get.status})`);
  return manifest.length;
}

async function wrk(server: Server, repo: string, seconds: number): Promise<number> {
  const url = `${server.url}/v2/${repo}/manifests/v1`;
  const r = await run('wrk', ['-t1', `-c${WRK_CONNS}`, `-d${seconds}s`, '--timeout', '5s', '-H', `Accept: ${MANIFEST_TYPE}`, url]);
  if (/Non-2xx or 3xx responses|Socket errors/.test(r.stdout)) throw new Error(`wrk saw failed requests against ${server.name}:\n${r.stdout}`);
  const m = /Requests\/sec:\s+([\d.]+)/.exec(r.stdout);
  if (!m) throw new Error(`wrk printed no Requests/sec:\n${r.stdout}`);
  return Number(m[1]);
}

// ------------------------------------------------------------------ report

interface ServerResult {
  putS: number[];
  getS: number[];
  getNullS: number[];
  manifestRps: number[];
  /** Per run: RSS at rest before the operation and the peak during it, KiB. */
  putRss: Array<{ restKiB: number; peakKiB: number }>;
  getRss: Array<{ restKiB: number; peakKiB: number }>;
}

const growthMB = (xs: Array<{ restKiB: number; peakKiB: number }>): number => Math.max(...xs.map((x) => mb(x.peakKiB - x.restKiB)));
const peakMB = (xs: Array<{ restKiB: number; peakKiB: number }>): number => Math.max(...xs.map((x) => mb(x.peakKiB)));

function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  for (const bin of ['docker-registry', 'curl', 'wrk', 'openssl', 'cmp', 'sync']) {
    if (!which(bin)) throw new Error(`${bin} is not on PATH (apt-get install -y ${bin === 'wrk' ? 'wrk' : bin}; see /work/shared/PEERS.md)`);
  }
  if (!existsSync('/proc/self/clear_refs')) throw new Error('/proc/<pid>/clear_refs is needed to measure peak RSS per operation (Linux)');

  const work = spawnSync('mktemp', ['-d', join(tmpdir(), 'lading-bench-serve-XXXXXX')], { encoding: 'utf8' }).stdout.trim();
  if (!work) throw new Error('mktemp failed');
  const buildDir = join(REPO_ROOT, 'bench', `.build-serve-${process.pid}`);
  const servers: Server[] = [];
  const cleanup = (): void => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(work, { recursive: true, force: true });
    rmSync(buildDir, { recursive: true, force: true });
  };
  cleanupOnExit(cleanup);

  const started = performance.now();
  const loadBefore = loadavg();
  const cli = chooseCli(buildDir);
  console.log(`lading serve bench: ${SIZE_MB} MiB blob, ${RUNS} run(s) each, wrk ${WRK_CONNS} connections x ${WRK_SECONDS} s, ${cpus().length} CPUs, node ${process.version}`);
  console.log(`lading: ${cli.mode}, --log-level ${LOG_LEVEL}${PROFILE ? ', --cpu-prof' : ''}`);

  const path = join(work, 'blob.bin');
  makeFile(path, SIZE_MB);
  const input: Input = { path, digest: `sha256:${sha256Hex(path)}`, size: SIZE_MB * MiB };
  const ladingRoot = join(work, 'lading-data');
  mkdirSync(ladingRoot);
  const profDir = join(REPO_ROOT, 'bench', 'results', 'profiles');
  if (PROFILE) mkdirSync(profDir, { recursive: true });

  let results: Record<Server['name'], ServerResult>;
  try {
    servers.push(await startDocker());
    servers.push(await startLading(cli.main, ladingRoot, join(work, 'lading.log'), profDir));
    for (const s of servers) console.log(`  ${s.name.padEnd(15)} ${s.url} pid ${s.pid}`);
    console.log(`input ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${input.digest.slice(0, 19)}…`);

    results = {
      'docker-registry': { putS: [], getS: [], getNullS: [], manifestRps: [], putRss: [], getRss: [] },
      lading: { putS: [], getS: [], getNullS: [], manifestRps: [], putRss: [], getRss: [] },
    };
    const out = join(work, 'out.bin');
    for (let r = 1; r <= RUNS; r++) {
      // The order alternates run by run so that drift on a shared machine falls on both servers.
      const order = r % 2 === 1 ? servers : [...servers].reverse();
      for (const s of order) {
        const res = results[s.name];
        const repo = `bench/blob-${r}`;
        syncDisks();
        const restPut = procStatus(s.pid).rssKiB;
        resetPeak(s.pid);
        const putS = await curlPut(s, input, repo);
        const peakPut = procStatus(s.pid).hwmKiB;
        syncDisks();
        const restGet = procStatus(s.pid).rssKiB;
        resetPeak(s.pid);
        const getS = await curlGet(s, input, repo, out, r === 1);
        const peakGet = procStatus(s.pid).hwmKiB;
        syncDisks();
        const getNullS = await curlGet(s, input, repo, '/dev/null', false);
        res.getNullS.push(getNullS);
        res.putS.push(putS);
        res.getS.push(getS);
        res.putRss.push({ restKiB: restPut, peakKiB: peakPut });
        res.getRss.push({ restKiB: restGet, peakKiB: peakGet });
        console.log(
          `  run ${r} ${s.name.padEnd(15)} PUT ${putS.toFixed(2)} s (RSS ${mb(restPut).toFixed(0)} -> peak ${mb(peakPut).toFixed(0)} MB), ` +
            `GET ${getS.toFixed(2)} s (RSS ${mb(restGet).toFixed(0)} -> peak ${mb(peakGet).toFixed(0)} MB), GET to /dev/null ${getNullS.toFixed(2)} s`,
        );
      }
    }
    for (const s of servers) {
      const size = await pushSmallManifest(s, 'bench/small');
      await wrk(s, 'bench/small', 2); // warm-up: connections, caches, JIT
      if (s === servers[0]) console.log(`  manifest: ${size} bytes`);
    }
    for (let r = 1; r <= RUNS; r++) {
      const order = r % 2 === 1 ? servers : [...servers].reverse();
      for (const s of order) {
        const rps = await wrk(s, 'bench/small', WRK_SECONDS);
        results[s.name].manifestRps.push(rps);
        console.log(`  run ${r} ${s.name.padEnd(15)} manifest GET ${rps.toFixed(0)} req/s`);
      }
    }
  } finally {
    for (const s of servers) await s.stop();
  }

  const d = results['docker-registry'];
  const l = results.lading;
  const rows = [
    { what: `blob PUT ${SIZE_MB} MiB (curl)`, unit: 's', d: median(d.putS), l: median(l.putS), runs: [d.putS, l.putS], lowerBetter: true },
    { what: `blob GET ${SIZE_MB} MiB (curl > /dev/null)`, unit: 's', d: median(d.getNullS), l: median(l.getNullS), runs: [d.getNullS, l.getNullS], lowerBetter: true },
    { what: `blob GET ${SIZE_MB} MiB (curl > file)`, unit: 's', d: median(d.getS), l: median(l.getS), runs: [d.getS, l.getS], lowerBetter: true },
    { what: `manifest GET, ${WRK_CONNS} conns (wrk)`, unit: 'req/s', d: median(d.manifestRps), l: median(l.manifestRps), runs: [d.manifestRps, l.manifestRps], lowerBetter: false },
  ];
  const fmt = (v: number, unit: string): string => (unit === 's' ? v.toFixed(2) : v.toFixed(0));
  const body = rows.map((row) => [
    row.what,
    row.unit,
    fmt(row.d, row.unit),
    fmt(row.l, row.unit),
    `${(row.l / row.d).toFixed(2)}x`,
    row.runs[0]!.map((v) => fmt(v, row.unit)).join(' '),
    row.runs[1]!.map((v) => fmt(v, row.unit)).join(' '),
  ]);
  for (const [label, key] of [['PUT', 'putRss'], ['GET', 'getRss']] as const) {
    body.push([
      `server peak RSS during ${label} (growth over rest)`,
      'MB',
      `${peakMB(d[key]).toFixed(1)} (+${growthMB(d[key]).toFixed(1)})`,
      `${peakMB(l[key]).toFixed(1)} (+${growthMB(l[key]).toFixed(1)})`,
      `${(peakMB(l[key]) / peakMB(d[key])).toFixed(2)}x`,
      d[key].map((x) => mb(x.peakKiB).toFixed(0)).join(' '),
      l[key].map((x) => mb(x.peakKiB).toFixed(0)).join(' '),
    ]);
  }
  const checks = [
    {
      name: 'blob GET no slower than docker-registry (into /dev/null: the server alone)',
      pass: rows[1]!.l <= rows[1]!.d,
      detail: `${rows[1]!.l.toFixed(2)} s vs ${rows[1]!.d.toFixed(2)} s = ${(rows[1]!.l / rows[1]!.d).toFixed(2)}x; into a file ${rows[2]!.l.toFixed(2)} s vs ${rows[2]!.d.toFixed(2)} s = ${(rows[2]!.l / rows[2]!.d).toFixed(2)}x`,
    },
    { name: 'blob PUT no slower than docker-registry', pass: rows[0]!.l <= rows[0]!.d, detail: `${rows[0]!.l.toFixed(2)} s vs ${rows[0]!.d.toFixed(2)} s = ${(rows[0]!.l / rows[0]!.d).toFixed(2)}x` },
    { name: "manifest GET at least docker-registry's req/s", pass: rows[3]!.l >= rows[3]!.d, detail: `${rows[3]!.l.toFixed(0)} vs ${rows[3]!.d.toFixed(0)} req/s = ${(rows[3]!.l / rows[3]!.d).toFixed(2)}x` },
    {
      name: `server RSS flat while serving a ${SIZE_MB} MiB blob`,
      pass: growthMB(l.getRss) < FLAT_LIMIT_MB,
      detail: `peak ${peakMB(l.getRss).toFixed(1)} MB, +${growthMB(l.getRss).toFixed(1)} MB over rest (limit +${FLAT_LIMIT_MB} MB); while receiving it: +${growthMB(l.putRss).toFixed(1)} MB; docker-registry +${growthMB(d.getRss).toFixed(1)} / +${growthMB(d.putRss).toFixed(1)} MB`,
    },
  ];

  console.log('');
  console.log(table(['measurement', 'unit', 'docker-registry', 'lading', 'lading/docker', 'docker-registry runs', 'lading runs'], body));
  console.log('');
  console.log('wall: median of runs (PUT = curl POST + curl PUT -T, digest precomputed; GET > file adds the');
  console.log("client's disk writes); RSS: /proc VmHWM of the server process, reset before each operation, max");
  console.log('over runs, MB = 10^6 bytes.');
  console.log('');
  for (const c of checks) console.log(`${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  const totalS = (performance.now() - started) / 1000;
  const loadAfter = loadavg();
  const load = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  console.log(`\nserver benchmark took ${totalS.toFixed(0)} s; load average ${load(loadBefore)} before, ${load(loadAfter)} after on ${cpus().length} CPUs`);
  if (loadAfter[0]! > cpus().length) console.log('the machine was busy with other work: blob timings are noisy, compare the fastest runs too');
  if (PROFILE) console.log(`CPU profile(s) of the lading server in ${profDir}`);

  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(
    RESULTS,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version, loadavgBefore: loadBefore, loadavgAfter: loadAfter },
        commit: spawnSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout?.trim() || undefined,
        config: { sizeMiB: SIZE_MB, runs: RUNS, wrkSeconds: WRK_SECONDS, wrkConnections: WRK_CONNS, ladingLogLevel: LOG_LEVEL, ladingCli: cli.mode },
        method:
          'both servers as separate processes on 127.0.0.1; wall: monotonic clock around curl, median of runs; manifest GET: wrk -t1, median req/s; RSS: /proc/<pid>/status VmHWM after clear_refs=5 before each operation',
        results: {
          'docker-registry': d,
          lading: l,
        },
        summary: rows.map((r) => ({ measurement: r.what, unit: r.unit, dockerRegistry: r.d, lading: r.l, ratio: r.l / r.d })),
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
