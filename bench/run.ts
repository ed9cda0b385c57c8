/**
 * `npm run bench`: pushes and pulls one large single-layer artifact against a local docker-registry with
 * lading (the real CLI, as a child process), skopeo and curl, and prints the wall time and peak RSS of
 * each, with ratios and a PASS/FAIL line per target. Results also go to bench/results/latest.json.
 *
 * Environment:
 *   LADING_BENCH_SIZE_MB   artifact size in MiB (default 1024)
 *   LADING_BENCH_SMALL_MB  second, smaller size run with lading and curl to show that RSS is flat
 *                          (default 256; 0 turns it off)
 *   LADING_BENCH_RUNS      repetitions of every measurement; the median wall time is reported (default 3)
 *   LADING_BENCH_CLI       how lading is run: auto (default: dist/ when built and newer than every file in
 *                          src/, else a throw-away tsc build under bench/, else tsx), dist, build, tsx
 *
 * Method:
 * - Every measured operation is one child process, or a few run one after another (curl's POST, PUT and
 *   manifest PUT); wall time is taken around them with a monotonic clock.
 * - Peak RSS comes from GNU time (`/usr/bin/time -f %M`), which reports ru_maxrss from wait4(): the kernel's
 *   exact high-water mark of the resident set, for the process and every descendant it waited for (the
 *   largest single process, not a sum). The same wrapper is used for all three tools.
 * - Each (tool, size, run) gets a fresh, empty registry, so every push really uploads every byte (no
 *   skip-existing, no cross-repository mount from skopeo's blob-info cache) and every pull downloads from a
 *   registry that has just written the blob. Registry start-up and `sync` before each step are not timed.
 * - The source file is in the page cache for every tool (it has just been written and hashed).
 * - Each pull is checked byte for byte against the source with `cmp`.
 * - curl is the floor, but it neither hashes on push (the digest is computed before timing) nor verifies on
 *   pull; "openssl + curl" (hash, then upload) and "curl | tee | openssl" (hash while writing) are the
 *   like-for-like rows for a client that verifies, as lading does.
 * The process exits non-zero only when the benchmark itself cannot run; missed targets are reported.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { linkSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

import { performance } from 'node:perf_hooks';
import { startDockerRegistry, type DockerRegistry } from '../test/support/registry.js';
import { which } from '../test/support/peers.js';
import { measure, stopMeasured, TIME_BIN, type Measured } from './measure.js';
import { HASH_ARGS, MiB, REPO_ROOT, cleanupOnExit, compiledCli, intEnv, makeFile, mb, median, sha256Hex, syncDisks } from './common.js';

const RESULTS = join(REPO_ROOT, 'bench', 'results', 'latest.json');
const EMPTY_CONFIG = '{}';
const EMPTY_CONFIG_DIGEST = 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a';
const ARTIFACT_TYPE = 'application/vnd.unknown.artifact.v1';
const MANIFEST_TYPE = 'application/vnd.oci.image.manifest.v1+json';

// ------------------------------------------------------------------ configuration


const SIZE_MB = intEnv('LADING_BENCH_SIZE_MB', 1024, 1, 64 * 1024);
const SMALL_MB = intEnv('LADING_BENCH_SMALL_MB', 256, 0, 64 * 1024);
const RUNS = intEnv('LADING_BENCH_RUNS', 3, 1, 50);
const CLI_MODE = process.env.LADING_BENCH_CLI ?? 'auto';
if (!['auto', 'dist', 'build', 'tsx'].includes(CLI_MODE)) throw new Error(`LADING_BENCH_CLI must be auto, dist, build or tsx, not "${CLI_MODE}"`);

// ------------------------------------------------------------------ child processes

/** Sums the wall time and keeps the largest peak RSS of steps run one after another. */
function combine(parts: Measured[]): Measured {
  return {
    wallS: parts.reduce((s, p) => s + p.wallS, 0),
    rssKiB: Math.max(...parts.map((p) => p.rssKiB)),
    stdout: parts.map((p) => p.stdout).join(''),
    stderr: parts.map((p) => p.stderr).join(''),
  };
}


function sameFile(a: string, b: string): void {
  const r = spawnSync('cmp', ['-s', a, b], { timeout: 120_000 });
  if (r.status !== 0) throw new Error(`${b} differs from ${a} (cmp exited ${r.status})`);
}



// ------------------------------------------------------------------ inputs


interface Input {
  sizeMiB: number;
  path: string;
  name: string;
  hex: string;
  digest: string;
  size: number;
  manifest: Buffer;
  manifestDigest: string;
  /** An OCI layout holding the artifact, as skopeo's push source. */
  layout: string;
}

function prepareInput(work: string, sizeMiB: number): Input {
  const name = `blob-${sizeMiB}.bin`;
  const path = join(work, name);
  makeFile(path, sizeMiB);
  const hex = sha256Hex(path);
  const digest = `sha256:${hex}`;
  const size = sizeMiB * MiB;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MANIFEST_TYPE,
      artifactType: ARTIFACT_TYPE,
      config: { mediaType: 'application/vnd.oci.empty.v1+json', digest: EMPTY_CONFIG_DIGEST, size: 2, data: 'e30=' },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest, size, annotations: { 'org.opencontainers.image.title': name } }],
    }),
  );
  const manifestDigest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
  // The layout is written by hand (a hard link to the source as the layer blob) so that skopeo's source
  // does not depend on lading's own code.
  const layout = join(work, `layout-${sizeMiB}`);
  const blobs = join(layout, 'blobs', 'sha256');
  mkdirSync(blobs, { recursive: true });
  linkSync(path, join(blobs, hex));
  writeFileSync(join(blobs, EMPTY_CONFIG_DIGEST.slice(7)), EMPTY_CONFIG);
  writeFileSync(join(blobs, manifestDigest.slice(7)), manifest);
  writeFileSync(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  writeFileSync(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [{ mediaType: MANIFEST_TYPE, digest: manifestDigest, size: manifest.length, artifactType: ARTIFACT_TYPE, annotations: { 'org.opencontainers.image.ref.name': 'v1' } }],
    }),
  );
  return { sizeMiB, path, name, hex, digest, size, manifest, manifestDigest, layout };
}

// ------------------------------------------------------------------ lading CLI

interface LadingCli {
  cmd: string;
  prefix: string[];
  mode: string;
}


function chooseCli(buildDir: string): LadingCli {
  const tsx: LadingCli = { cmd: process.execPath, prefix: ['--import', 'tsx', join(REPO_ROOT, 'src', 'cli', 'main.ts')], mode: 'tsx (node --import tsx src/cli/main.ts)' };
  if (CLI_MODE === 'tsx') return tsx;
  const compiled = compiledCli(buildDir, CLI_MODE);
  if (compiled) return { cmd: process.execPath, prefix: [compiled.main], mode: compiled.mode };
  if (CLI_MODE === 'build') throw new Error('LADING_BENCH_CLI=build but tsc emitted no cli/main.js');
  return tsx;
}

// ------------------------------------------------------------------ the three tools

type Op = 'push' | 'pull';
type Tool = 'curl' | 'openssl + curl' | 'curl | tee | openssl' | 'lading' | 'skopeo';

interface Ctx {
  scratch: string;
  cli: LadingCli;
  env: NodeJS.ProcessEnv;
}

async function curlPush(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string): Promise<Measured> {
  const parts: Measured[] = [];
  const upload = async (file: string | undefined, bytes: string | undefined, digest: string): Promise<void> => {
    const post = await measure('curl', ['-sS', '--fail-with-body', '-X', 'POST', '-D', '-', '-o', '/dev/null', `${reg.url}/v2/${repo}/blobs/uploads/`], { scratch: ctx.scratch });
    parts.push(post);
    const m = /^location:\s*(\S+)/im.exec(post.stdout);
    if (!m) throw new Error(`registry opened an upload without a Location header:\n${post.stdout}`);
    const loc = new URL(m[1]!, reg.url);
    loc.searchParams.set('digest', digest);
    // -T streams the file (--data-binary @file would read all of it into memory first); an empty Expect
    // header stops curl from waiting for "100 Continue" before sending.
    const body = file !== undefined ? ['-T', file] : ['--data-binary', bytes!];
    parts.push(
      await measure('curl', ['-sS', '--fail-with-body', '-o', '/dev/null', '-X', 'PUT', '-H', 'Content-Type: application/octet-stream', '-H', 'Expect:', ...body, loc.toString()], { scratch: ctx.scratch }),
    );
  };
  await upload(input.path, undefined, input.digest);
  await upload(undefined, EMPTY_CONFIG, EMPTY_CONFIG_DIGEST);
  const manifestFile = join(ctx.scratch, 'manifest.json');
  writeFileSync(manifestFile, input.manifest);
  parts.push(
    await measure('curl', ['-sS', '--fail-with-body', '-o', '/dev/null', '-X', 'PUT', '-H', `Content-Type: ${MANIFEST_TYPE}`, '--data-binary', `@${manifestFile}`, `${reg.url}/v2/${repo}/manifests/v1`], { scratch: ctx.scratch }),
  );
  return combine(parts);
}

async function curlPull(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string, out: string): Promise<Measured> {
  const manifest = await measure('curl', ['-sS', '--fail-with-body', '-H', `Accept: ${MANIFEST_TYPE}`, `${reg.url}/v2/${repo}/manifests/v1`], { scratch: ctx.scratch });
  if (!manifest.stdout.includes(input.digest)) throw new Error(`the manifest curl fetched does not name ${input.digest}`);
  const file = join(out, input.name);
  const blob = await measure('curl', ['-sS', '--fail-with-body', '-o', file, `${reg.url}/v2/${repo}/blobs/${input.digest}`], { scratch: ctx.scratch });
  sameFile(input.path, file);
  return combine([manifest, blob]);
}

/** A verifying pull from standard tools: the blob goes to the file and through sha256 at once. */
async function curlPullVerified(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string, out: string): Promise<Measured> {
  const manifest = await measure('curl', ['-sS', '--fail-with-body', '-H', `Accept: ${MANIFEST_TYPE}`, `${reg.url}/v2/${repo}/manifests/v1`], { scratch: ctx.scratch });
  const file = join(out, input.name);
  const script = 'set -euo pipefail; curl -sS --fail "$1" | tee "$2" | openssl dgst -sha256 -r';
  const blob = await measure('bash', ['-c', script, 'bash', `${reg.url}/v2/${repo}/blobs/${input.digest}`, file], { scratch: ctx.scratch });
  if (!blob.stdout.startsWith(input.hex)) throw new Error(`curl | openssl hashed the blob to ${blob.stdout.trim()}, not ${input.hex}`);
  sameFile(input.path, file);
  return combine([manifest, blob]);
}

async function ladingPush(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string): Promise<Measured> {
  return measure(ctx.cli.cmd, [...ctx.cli.prefix, 'push', `${reg.host}/${repo}:v1`, input.name], { cwd: dirname(input.path), env: ctx.env, scratch: ctx.scratch });
}

async function ladingPull(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string, out: string): Promise<Measured> {
  const m = await measure(ctx.cli.cmd, [...ctx.cli.prefix, 'pull', `${reg.host}/${repo}:v1`, '-o', out], { env: ctx.env, scratch: ctx.scratch });
  sameFile(input.path, join(out, input.name));
  return m;
}

async function skopeoPush(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string): Promise<Measured> {
  return measure('skopeo', ['copy', '--quiet', '--dest-tls-verify=false', `oci:${input.layout}:v1`, `docker://${reg.host}/${repo}:v1`], { scratch: ctx.scratch });
}

async function skopeoPull(ctx: Ctx, reg: DockerRegistry, input: Input, repo: string, out: string): Promise<Measured> {
  const layout = join(out, 'layout');
  const m = await measure('skopeo', ['copy', '--quiet', '--src-tls-verify=false', `docker://${reg.host}/${repo}:v1`, `oci:${layout}:v1`], { scratch: ctx.scratch });
  sameFile(input.path, join(layout, 'blobs', 'sha256', input.hex));
  return m;
}

// ------------------------------------------------------------------ orchestration

interface Row {
  op: Op;
  sizeMiB: number;
  tool: Tool;
  runs: Array<{ wallS: number; rssKiB: number }>;
  medianWallS: number;
  peakRssMB: number;
  vsCurl?: number;
  vsSkopeo?: number;
  note?: string;
}

const rows = new Map<string, Row>();

function record(op: Op, sizeMiB: number, tool: Tool, m: { wallS: number; rssKiB: number }, note?: string): void {
  const key = `${op}|${sizeMiB}|${tool}`;
  let row = rows.get(key);
  if (!row) {
    row = { op, sizeMiB, tool, runs: [], medianWallS: NaN, peakRssMB: NaN, ...(note ? { note } : {}) };
    rows.set(key, row);
  }
  row.runs.push({ wallS: m.wallS, rssKiB: m.rssKiB });
}



/** One tool, one size, one run: fresh registry, timed push, timed pull, checked output. */
async function round(ctx: Ctx, work: string, input: Input, tool: 'curl' | 'lading' | 'skopeo', run: number): Promise<void> {
  const reg = await startDockerRegistry();
  const out = join(work, `out-${tool}-${input.sizeMiB}-${run}`);
  mkdirSync(out);
  try {
    const repo = `bench/${tool}`;
    syncDisks();
    if (tool === 'curl') {
      // The hash is timed on its own so that "openssl + curl" can be set against lading, which hashes too.
      const hash = await measure('openssl', [...HASH_ARGS, input.path], { scratch: ctx.scratch });
      if (!hash.stdout.startsWith(input.hex)) throw new Error('openssl disagrees with itself');
      const push = await curlPush(ctx, reg, input, repo);
      record('push', input.sizeMiB, 'curl', push, 'digest precomputed, hashing not timed');
      record('push', input.sizeMiB, 'openssl + curl', combine([hash, push]), 'openssl dgst, then curl: like-for-like');
    } else if (tool === 'lading') {
      record('push', input.sizeMiB, 'lading', await ladingPush(ctx, reg, input, repo), 'hashes the file, then uploads');
    } else {
      record('push', input.sizeMiB, 'skopeo', await skopeoPush(ctx, reg, input, repo));
    }
    syncDisks();
    if (tool === 'curl') {
      record('pull', input.sizeMiB, 'curl', await curlPull(ctx, reg, input, repo, out), 'no verification, no fsync');
      rmSync(join(out, input.name), { force: true });
      syncDisks();
      record('pull', input.sizeMiB, 'curl | tee | openssl', await curlPullVerified(ctx, reg, input, repo, out), 'hashes while writing, no fsync');
    }
    else if (tool === 'lading') record('pull', input.sizeMiB, 'lading', await ladingPull(ctx, reg, input, repo, out), 'verifies digest, fsyncs');
    else record('pull', input.sizeMiB, 'skopeo', await skopeoPull(ctx, reg, input, repo, out));
  } finally {
    rmSync(out, { recursive: true, force: true });
    await reg.stop();
  }
}

function finish(): Row[] {
  const all = [...rows.values()];
  for (const r of all) {
    r.medianWallS = median(r.runs.map((x) => x.wallS));
    r.peakRssMB = mb(Math.max(...r.runs.map((x) => x.rssKiB)));
  }
  for (const r of all) {
    const curl = rows.get(`${r.op}|${r.sizeMiB}|curl`);
    const skopeo = rows.get(`${r.op}|${r.sizeMiB}|skopeo`);
    if (curl) r.vsCurl = r.medianWallS / curl.medianWallS;
    if (skopeo) r.vsSkopeo = r.medianWallS / skopeo.medianWallS;
  }
  const order: Tool[] = ['curl', 'openssl + curl', 'curl | tee | openssl', 'lading', 'skopeo'];
  return all.sort((a, b) => b.sizeMiB - a.sizeMiB || a.op.localeCompare(b.op) || order.indexOf(a.tool) - order.indexOf(b.tool));
}

interface Target {
  name: string;
  pass: boolean;
  detail: string;
}

function targets(): Target[] {
  const get = (op: Op, size: number, tool: Tool): Row | undefined => rows.get(`${op}|${size}|${tool}`);
  const out: Target[] = [];
  const lPull = get('pull', SIZE_MB, 'lading')!;
  const lPush = get('push', SIZE_MB, 'lading')!;
  const cPull = get('pull', SIZE_MB, 'curl')!;
  const cPush = get('push', SIZE_MB, 'curl')!;
  const hcPush = get('push', SIZE_MB, 'openssl + curl')!;
  const vPull = get('pull', SIZE_MB, 'curl | tee | openssl')!;
  const sPull = get('pull', SIZE_MB, 'skopeo')!;
  const x = (n: number): string => `${n.toFixed(2)}x`;
  out.push({
    name: 'pull within 1.3x curl',
    pass: lPull.medianWallS <= 1.3 * cPull.medianWallS,
    detail: `${lPull.medianWallS.toFixed(2)} s vs ${cPull.medianWallS.toFixed(2)} s = ${x(lPull.medianWallS / cPull.medianWallS)} (vs curl | tee | openssl ${vPull.medianWallS.toFixed(2)} s: ${x(lPull.medianWallS / vPull.medianWallS)})`,
  });
  out.push({ name: 'pull faster than skopeo', pass: lPull.medianWallS < sPull.medianWallS, detail: `${lPull.medianWallS.toFixed(2)} s vs ${sPull.medianWallS.toFixed(2)} s = ${x(lPull.medianWallS / sPull.medianWallS)}` });
  out.push({
    name: 'push within 1.3x curl',
    pass: lPush.medianWallS <= 1.3 * cPush.medianWallS,
    detail: `${lPush.medianWallS.toFixed(2)} s vs ${cPush.medianWallS.toFixed(2)} s = ${x(lPush.medianWallS / cPush.medianWallS)} (vs openssl + curl ${hcPush.medianWallS.toFixed(2)} s: ${x(lPush.medianWallS / hcPush.medianWallS)})`,
  });
  for (const op of ['push', 'pull'] as const) {
    const sizes = [SIZE_MB, ...(SMALL_MB > 0 && SMALL_MB !== SIZE_MB ? [SMALL_MB] : [])];
    const peaks = sizes.map((s) => get(op, s, 'lading')!.peakRssMB);
    out.push({ name: `${op} peak RSS under 150 MB`, pass: peaks.every((p) => p < 150), detail: sizes.map((s, i) => `${s} MiB: ${peaks[i]!.toFixed(1)} MB`).join(', ') });
    if (sizes.length > 1) {
      // Flat means: four times the data costs less than 16 MB more at the peak (measurement noise is a few MB).
      const growth = peaks[0]! - peaks[1]!;
      out.push({ name: `${op} peak RSS flat with size`, pass: growth < 16, detail: `${SIZE_MB} MiB minus ${SMALL_MB} MiB = ${growth >= 0 ? '+' : ''}${growth.toFixed(1)} MB (limit +16 MB)` });
    }
  }
  return out;
}

function table(all: Row[]): string {
  const head = ['operation', 'tool', 'wall s (median)', 'runs (s)', 'peak RSS MB', 'vs curl', 'vs skopeo', 'note'];
  const body = all.map((r) => [
    `${r.op} ${r.sizeMiB} MiB`,
    r.tool,
    r.medianWallS.toFixed(2),
    r.runs.map((x) => x.wallS.toFixed(2)).join(' '),
    r.peakRssMB.toFixed(1),
    r.vsCurl !== undefined ? `${r.vsCurl.toFixed(2)}x` : '',
    r.vsSkopeo !== undefined ? `${r.vsSkopeo.toFixed(2)}x` : '',
    r.note ?? '',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  for (const bin of ['docker-registry', 'skopeo', 'curl', 'openssl', 'tee', 'bash', 'cmp', 'sync']) {
    if (!which(bin)) throw new Error(`${bin} is not on PATH (see /work/shared/PEERS.md)`);
  }
  if (!which(TIME_BIN)) throw new Error(`${TIME_BIN} (GNU time) is missing: apt-get install -y time`);

  const work = spawnSync('mktemp', ['-d', join(tmpdir(), 'lading-bench-XXXXXX')], { encoding: 'utf8' }).stdout.trim();
  if (!work) throw new Error('mktemp failed');
  const scratch = join(work, 'scratch');
  mkdirSync(scratch);
  const buildDir = join(REPO_ROOT, 'bench', `.build-${process.pid}`);
  const cleanup = (): void => {
    stopMeasured();
    rmSync(work, { recursive: true, force: true });
    rmSync(buildDir, { recursive: true, force: true });
  };
  // startDockerRegistry's own exit hook stops any registry still running.
  cleanupOnExit(cleanup);

  const started = performance.now();
  const cli = chooseCli(buildDir);
  const ctx: Ctx = {
    scratch,
    cli,
    // No credentials file: the registry is anonymous, and the user's own config must not change results.
    env: { ...process.env, LADING_REGISTRY_CONFIG: join(work, 'no-docker-config.json') },
  };
  console.log(`lading bench: ${SIZE_MB} MiB${SMALL_MB && SMALL_MB !== SIZE_MB ? ` (+${SMALL_MB} MiB for lading and curl)` : ''}, ${RUNS} run(s) each, ${cpus().length} CPUs, node ${process.version}`);
  console.log(`lading CLI: ${cli.mode}`);
  const inputs = [prepareInput(work, SIZE_MB)];
  if (SMALL_MB > 0 && SMALL_MB !== SIZE_MB) inputs.push(prepareInput(work, SMALL_MB));
  console.log(`inputs ready in ${((performance.now() - started) / 1000).toFixed(1)} s: ${inputs.map((i) => `${i.name} ${i.digest.slice(0, 19)}…`).join(', ')}`);

  for (let run = 1; run <= RUNS; run++) {
    // Tools are interleaved run by run so that drift on a shared machine spreads over all of them.
    for (const input of inputs) {
      const tools = input.sizeMiB === SIZE_MB ? (['curl', 'lading', 'skopeo'] as const) : (['curl', 'lading'] as const);
      for (const tool of tools) {
        await round(ctx, work, input, tool, run);
        const push = rows.get(`push|${input.sizeMiB}|${tool}`)!.runs.at(-1)!;
        const pull = rows.get(`pull|${input.sizeMiB}|${tool}`)!.runs.at(-1)!;
        console.log(`  run ${run} ${String(input.sizeMiB).padStart(5)} MiB ${tool.padEnd(6)} push ${push.wallS.toFixed(2)} s ${mb(push.rssKiB).toFixed(0)} MB, pull ${pull.wallS.toFixed(2)} s ${mb(pull.rssKiB).toFixed(0)} MB`);
      }
    }
  }

  const all = finish();
  const checks = targets();
  console.log('');
  console.log(table(all));
  console.log('');
  console.log(`curl's push excludes hashing (digest precomputed) and its pull verifies nothing; lading hashes both ways,`);
  console.log(`so "openssl + curl" (push) and "curl | tee | openssl" (pull) are the like-for-like rows. Only lading fsyncs.`);
  console.log('peak RSS: GNU time ru_maxrss, max over runs, MB = 10^6 bytes; wall: median of runs.');
  console.log('');
  for (const c of checks) console.log(`${c.pass ? 'PASS' : 'FAIL'}  ${c.name}: ${c.detail}`);
  const totalS = (performance.now() - started) / 1000;
  console.log(`\nbenchmark took ${totalS.toFixed(0)} s`);

  mkdirSync(dirname(RESULTS), { recursive: true });
  writeFileSync(
    RESULTS,
    `${JSON.stringify(
      {
        date: new Date().toISOString(),
        machine: { cpus: cpus().length, cpuModel: cpus()[0]?.model, node: process.version },
        commit: spawnSync('git', ['rev-parse', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).stdout?.trim() || undefined,
        config: { sizeMiB: SIZE_MB, smallMiB: SMALL_MB, runs: RUNS, ladingCli: cli.mode },
        method: 'wall: monotonic clock around the child processes, median of runs; peak RSS: /usr/bin/time %M (ru_maxrss), max of runs; fresh docker-registry per tool and run',
        rows: all.map((r) => ({ ...r, peakRssMB: Number(r.peakRssMB.toFixed(1)) })),
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
