/**
 * `npm run bench` (third part): signature verification of one artifact carrying 1, 10 and 100 signatures,
 * against `lading serve` (in this process, referrers API) and docker-registry (its own process, no
 * referrers API: signatures are found through the referrers tag schema). Prints a table of wall time,
 * HTTP requests and bytes received per (N, scenario, registry), and the time per checked signature.
 *
 * Scenarios, for each N:
 *   (a) verify       the default: stop at the first signature that verifies. Exactly one signature is made
 *                    with the trusted key and its referrer names that key (an unauthenticated annotation that
 *                    only orders the work), so it is tried first and is the only bundle downloaded;
 *   (b) verify --all every signature is checked (N-1 of them by keys the policy does not list).
 * The bench throws unless (a) downloads exactly 1 bundle and (b) exactly N, each equal to the number of
 * signatures the decision reports as checked: a verifier never downloads more signatures than it checks.
 *
 * Environment:
 *   LADING_BENCH_RUNS   timed verifications per (N, scenario, registry); medians are reported (default 5)
 *   CI=true             docker-registry is required (a missing peer fails the run instead of being skipped)
 *
 * Method:
 * - Each registry sits behind a counting reverse proxy (node:http on 127.0.0.1, a port the OS picks) that
 *   forwards every request unchanged (method, path, headers) and tallies requests and response body bytes.
 *   The verifier's Repository is pointed at the proxy's host; nothing else talks to the proxy.
 * - Artifacts and signatures are pushed straight to each registry (not through the proxy, not timed), one
 *   repository per N. The trusted signature is pushed last, so that finding it first is the verifier's doing.
 * - Every timed verification gets a fresh undici Agent, Transport and Repository: no connection, no
 *   "registry has no referrers API" memo and no content carries over from one run to the next. The clock
 *   runs around verifyUnderPolicy() alone (a `lading verify <ref>:<tag>` adds one HEAD to resolve the tag).
 * - The order of the two registries alternates from run to run; one untimed pass warms up the JIT first.
 * - lading serve runs in this process, so its work shares the event loop with the verifier and the proxy;
 *   docker-registry gets a process (and, on 2 CPUs, a core) of its own. The ratio reads with that in mind.
 * - cosign is not measured: there is no cosign binary on these machines (no Go toolchain, no Debian
 *   package). The peer comparison is registry against registry with the same client (lading's verifier).
 * The process exits non-zero when the benchmark cannot run or an assertion about downloads fails.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { createServer, request as httpRequest, Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { Readable } from 'node:stream';
import { Agent } from 'undici';

import { fetchBytes } from '../src/content/read.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { buildImageManifest } from '../src/oci/manifest.js';
import { digestOf } from '../src/oci/digest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';
import { Repository } from '../src/remote/repository.js';
import { Transport } from '../src/remote/transport.js';
import { startRegistry } from '../src/server/serve.js';
import { signManifest } from '../src/trust/attach.js';
import { adHocPolicy, verifyUnderPolicy } from '../src/trust/enforce.js';
import type { PolicyDecision } from '../src/trust/policy.js';
import { loadPublicKey } from '../src/trust/keys.js';
import { BUNDLE_MEDIA_TYPE } from '../src/trust/types.js';
import type { TrustedKey } from '../src/trust/types.js';
import { startDockerRegistry } from '../test/support/registry.js';
import { which } from '../test/support/peers.js';
import { cleanupOnExit, intEnv, median } from './common.js';

const RUNS = intEnv('LADING_BENCH_RUNS', 5, 1, 50);
const COUNTS = [1, 10, 100] as const;
const SCENARIOS = ['verify', 'verify --all'] as const;
type Scenario = (typeof SCENARIOS)[number];
type RegistryName = 'lading serve' | 'docker-registry';
const ARTIFACT_TYPE = 'application/vnd.unknown.artifact.v1';
/** A bound on one verification; a hung request is a failure of the benchmark, not a slow result. */
const VERIFY_TIMEOUT_MS = 120_000;

// ------------------------------------------------------------------ the counting proxy

interface Tally {
  requests: number;
  /** Response body bytes forwarded to the client (headers not included). */
  bytes: number;
  /** `METHOD /path` of every request, in order. */
  lines: string[];
}

interface CountingProxy {
  /** `127.0.0.1:<port>` */
  host: string;
  /** Starts a new tally and returns the one that was running. */
  take(): Tally;
  close(): Promise<void>;
}

const emptyTally = (): Tally => ({ requests: 0, bytes: 0, lines: [] });

/**
 * A reverse proxy in front of `upstreamHost` (plain http on loopback). Paths are forwarded as they are;
 * the Host header stays the proxy's, so a registry that builds absolute URLs from it (docker-registry's
 * upload Locations) points back at the proxy; an absolute Location naming the upstream is rewritten too.
 */
async function startCountingProxy(upstreamHost: string): Promise<CountingProxy> {
  const colon = upstreamHost.lastIndexOf(':');
  const upHostname = upstreamHost.slice(0, colon);
  const upPort = Number(upstreamHost.slice(colon + 1));
  const upstreamOrigin = `http://${upstreamHost}`;
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 16 });
  let tally = emptyTally();
  let proxyOrigin = '';

  const server = createServer((req, res) => {
    const t = tally;
    t.requests++;
    t.lines.push(`${req.method} ${req.url}`);
    const upstream = httpRequest({ host: upHostname, port: upPort, method: req.method, path: req.url, headers: req.headers, agent }, (ures) => {
      const headers: IncomingHttpHeaders = { ...ures.headers };
      if (typeof headers.location === 'string' && headers.location.startsWith(upstreamOrigin)) {
        headers.location = proxyOrigin + headers.location.slice(upstreamOrigin.length);
      }
      res.writeHead(ures.statusCode ?? 502, headers);
      ures.on('data', (c: Buffer) => {
        t.bytes += c.length;
      });
      ures.pipe(res);
    });
    upstream.on('error', (err) => {
      if (!res.headersSent) {
        res.writeHead(502, { 'content-type': 'text/plain' });
        res.end(`proxy: ${err.message}`);
      } else {
        res.destroy(err);
      }
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
  const host = `127.0.0.1:${address.port}`;
  proxyOrigin = `http://${host}`;
  return {
    host,
    take: () => {
      const t = tally;
      tally = emptyTally();
      return t;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
        agent.destroy();
      }),
  };
}

// ------------------------------------------------------------------ registries under test

interface Target {
  name: RegistryName;
  /** Where the registry itself answers (setup goes here). */
  host: string;
  proxy: CountingProxy;
  stop(): Promise<void>;
}

interface Signed {
  n: number;
  repository: string;
  subject: Descriptor;
  /** Digests of the bundle layers of this artifact's signature referrers. */
  bundleDigests: Set<string>;
}

interface Measured {
  ms: number[];
  requests: number[];
  bytes: number[];
  bundles: number[];
  checked: number[];
}

const setupRepository = (host: string, name: string): Repository => new Repository(`${host}/${name}`);

/** Pushes a one-layer artifact (1 KiB of random bytes, empty config) tagged v1; returns its descriptor. */
async function pushArtifact(repo: Repository): Promise<Descriptor> {
  const layerBytes = randomBytes(1024);
  const layer: Descriptor = {
    mediaType: MediaType.ImageLayer,
    digest: digestOf(layerBytes),
    size: layerBytes.length,
    annotations: { 'org.opencontainers.image.title': 'payload.bin' },
  };
  await repo.push({ mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size }, Readable.from([Buffer.from('{}')]));
  await repo.push(layer, Readable.from([layerBytes]));
  const built = buildImageManifest({
    config: { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size },
    layers: [layer],
    artifactType: ARTIFACT_TYPE,
  });
  await repo.pushManifest(built.descriptor, built.bytes, 'v1');
  return built.descriptor;
}

/** Pushes an artifact with `n` signatures: n-1 by `others`, then the trusted one last. */
async function prepare(target: Target, n: number, trusted: KeyObject, others: KeyObject[]): Promise<Signed> {
  const repository = `bench/verify-n${n}`;
  const repo = setupRepository(target.host, repository);
  const subject = await pushArtifact(repo);
  const signers = [...others.slice(0, n - 1), trusted];
  const bundleDigests = new Set<string>();
  for (const key of signers) {
    const { referrer } = await signManifest(repo, subject, { key });
    const manifest = JSON.parse((await fetchBytes(repo, referrer)).toString('utf8')) as { layers: Descriptor[] };
    const bundles = manifest.layers.filter((l) => l.mediaType === BUNDLE_MEDIA_TYPE);
    if (bundles.length !== 1) throw new Error(`${target.name}: referrer ${referrer.digest} has ${bundles.length} bundle layers`);
    bundleDigests.add(bundles[0]!.digest);
  }
  if (bundleDigests.size !== n) throw new Error(`${target.name}: ${n} signatures gave ${bundleDigests.size} distinct bundles`);
  return { n, repository, subject, bundleDigests };
}

/** One timed verification through the proxy, with a client that has nothing cached. */
async function verifyOnce(target: Target, signed: Signed, scenario: Scenario, trustedKey: TrustedKey): Promise<{ ms: number; tally: Tally; checked: number; bundles: number }> {
  const dispatcher = new Agent({ connections: 16, keepAliveTimeout: 10_000, headersTimeout: 60_000, bodyTimeout: 60_000 });
  const repo = new Repository(`${target.proxy.host}/${signed.repository}`, { transport: new Transport({ dispatcher }) });
  const policy = adHocPolicy({ keys: [trustedKey], identities: [] });
  const all = scenario === 'verify --all';
  target.proxy.take();
  let ms: number;
  let decision: PolicyDecision;
  try {
    const t0 = performance.now();
    decision = await verifyUnderPolicy(repo, signed.subject, repo.toString(), policy, { all, signal: AbortSignal.timeout(VERIFY_TIMEOUT_MS) });
    ms = performance.now() - t0;
  } finally {
    await dispatcher.close();
  }
  const tally = target.proxy.take();
  const where = `${target.name}, N=${signed.n}, ${scenario}`;
  if (!decision.allowed) throw new Error(`${where}: verification refused: ${decision.message}`);

  // Bundles downloaded: GETs of blobs whose digest is one of this artifact's bundle layers (known from
  // setup). The verifier fetches the subject and the referrer manifests through /manifests/, never a blob
  // of the artifact itself, so every blob GET must be a bundle; anything else is a bench failure too.
  let bundles = 0;
  for (const line of tally.lines) {
    const m = /^GET \/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/.exec(line);
    if (!m) continue;
    if (!signed.bundleDigests.has(m[1]!)) throw new Error(`${where}: the verifier downloaded a blob that is not a signature bundle: ${line}`);
    bundles++;
  }
  const checked = decision.checks.length;
  const expected = all ? signed.n : 1;
  if (bundles !== expected || checked !== expected) {
    throw new Error(`${where}: expected ${expected} bundle(s) downloaded and checked, got ${bundles} downloaded and ${checked} checked\n${tally.lines.join('\n')}`);
  }
  if (!all && !decision.checks[0]!.ok) throw new Error(`${where}: the first signature checked was not the trusted one`);
  if (decision.checks.filter((c) => c.ok).length !== 1) throw new Error(`${where}: expected exactly one signature to verify`);
  return { ms, tally, checked, bundles };
}

// ------------------------------------------------------------------ report

function table(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)].join('\n');
}

/** The median, with the range when the runs did not all agree (request counts should not vary). */
function countCell(xs: number[]): string {
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  return lo === hi ? String(lo) : `${median(xs)} (${lo}-${hi})`;
}

const kb = (bytes: number): string => (bytes / 1000).toFixed(1);

async function main(): Promise<void> {
  const started = performance.now();
  const loadBefore = loadavg();
  const dockerBin = which('docker-registry');
  if (!dockerBin && process.env.CI === 'true') {
    throw new Error('docker-registry is not on PATH, and CI=true requires it (apt-get install -y docker-registry; see /work/shared/PEERS.md)');
  }

  const work = mkdtempSync(join(tmpdir(), 'lading-bench-verify-'));
  cleanupOnExit(() => rmSync(work, { recursive: true, force: true }));
  const targets: Target[] = [];

  console.log(`verify bench: N = ${COUNTS.join(', ')} signatures, ${RUNS} run(s) each, ${cpus().length} CPUs, node ${process.version}`);
  console.log('cosign is not measured: there is no cosign binary on this machine (no Go toolchain, no package);');
  console.log('the peer comparison is registry vs registry with the same client (lading\'s verifier).');
  if (!dockerBin) console.log('docker-registry is not on PATH (apt-get install -y docker-registry): its columns are skipped.');

  const results = new Map<string, Measured>();
  const key = (t: RegistryName, n: number, s: Scenario): string => `${t}|${n}|${s}`;
  try {
    const lading = await startRegistry({ root: join(work, 'lading-data') });
    const ladingProxy = await startCountingProxy(lading.host);
    targets.push({ name: 'lading serve', host: lading.host, proxy: ladingProxy, stop: async () => (await ladingProxy.close(), await lading.close()) });
    if (dockerBin) {
      const docker = await startDockerRegistry();
      const dockerProxy = await startCountingProxy(docker.host);
      targets.push({ name: 'docker-registry', host: docker.host, proxy: dockerProxy, stop: async () => (await dockerProxy.close(), await docker.stop()) });
    }
    for (const t of targets) console.log(`  ${t.name.padEnd(15)} http://${t.host} behind proxy http://${t.proxy.host}`);

    // Keys: one trusted, and enough others for the largest N; the others are shared between artifacts.
    const ec = (): KeyObject => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const trusted = ec();
    const trustedKey = loadPublicKey(createPublicKey(trusted).export({ type: 'spki', format: 'pem' }).toString(), 'bench trusted key');
    const others = Array.from({ length: Math.max(...COUNTS) - 1 }, ec);

    const signed = new Map<RegistryName, Signed[]>();
    const setupT0 = performance.now();
    for (const t of targets) {
      const list: Signed[] = [];
      for (const n of COUNTS) list.push(await prepare(t, n, trusted, others));
      signed.set(t.name, list);
    }
    console.log(`setup (push ${COUNTS.length} artifacts and ${COUNTS.reduce((a, b) => a + b, 0)} signatures per registry) took ${((performance.now() - setupT0) / 1000).toFixed(1)} s`);

    // Warm-up, untimed: the JIT, the sigstore libraries' first use, the servers' caches.
    for (const t of targets) for (const s of signed.get(t.name)!) for (const sc of SCENARIOS) await verifyOnce(t, s, sc, trustedKey);

    for (let r = 1; r <= RUNS; r++) {
      const order = r % 2 === 1 ? targets : [...targets].reverse();
      for (const t of order) {
        for (const s of signed.get(t.name)!) {
          for (const sc of SCENARIOS) {
            const m = await verifyOnce(t, s, sc, trustedKey);
            const k = key(t.name, s.n, sc);
            const acc = results.get(k) ?? { ms: [], requests: [], bytes: [], bundles: [], checked: [] };
            acc.ms.push(m.ms);
            acc.requests.push(m.tally.requests);
            acc.bytes.push(m.tally.bytes);
            acc.bundles.push(m.bundles);
            acc.checked.push(m.checked);
            results.set(k, acc);
          }
        }
      }
    }
  } finally {
    for (const t of targets) await t.stop();
  }

  const cell = (t: RegistryName, n: number, sc: Scenario): Measured | undefined => results.get(key(t, n, sc));
  const body: string[][] = [];
  for (const n of COUNTS) {
    for (const sc of SCENARIOS) {
      const l = cell('lading serve', n, sc)!;
      const d = cell('docker-registry', n, sc);
      body.push([
        String(n),
        sc,
        countCell(l.checked),
        countCell(l.bundles),
        median(l.ms).toFixed(1),
        countCell(l.requests),
        kb(median(l.bytes)),
        d ? median(d.ms).toFixed(1) : 'skipped',
        d ? countCell(d.requests) : '-',
        d ? kb(median(d.bytes)) : '-',
        d ? `${(median(d.ms) / median(l.ms)).toFixed(2)}x` : '-',
      ]);
    }
  }
  console.log('');
  console.log(
    table(
      ['N', 'scenario', 'checked', 'bundles', 'lading serve ms', 'requests', 'KB recv', 'docker-registry ms', 'requests', 'KB recv', 'docker/lading'],
      body,
    ),
  );

  const perSig: string[][] = [];
  for (const n of COUNTS) {
    for (const sc of SCENARIOS) {
      const checked = sc === 'verify --all' ? n : 1;
      const row = [String(n), sc, String(checked)];
      for (const t of ['lading serve', 'docker-registry'] as const) {
        const m = cell(t, n, sc);
        row.push(m ? (median(m.ms) / checked).toFixed(2) : 'skipped');
      }
      perSig.push(row);
    }
  }
  console.log('');
  console.log(table(['N', 'scenario', 'checked', 'lading serve ms/signature', 'docker-registry ms/signature'], perSig));
  const lo = COUNTS[0];
  const hi = COUNTS[COUNTS.length - 1]!;
  const marginal = (t: RegistryName): string => {
    const a = cell(t, lo, 'verify --all');
    const b = cell(t, hi, 'verify --all');
    return a && b ? `${((median(b.ms) - median(a.ms)) / (hi - lo)).toFixed(2)} ms` : 'skipped';
  };
  console.log(`marginal cost of one more checked signature (--all, N=${lo} -> N=${hi}): lading serve ${marginal('lading serve')}, docker-registry ${marginal('docker-registry')}`);

  console.log('');
  console.log('ms: median wall time of verifyUnderPolicy() over the runs, fresh client each run; requests and KB');
  console.log('(response bodies, 1 KB = 1000 bytes) as counted by the proxy; bundles: GETs of signature bundle blobs.');
  console.log('docker-registry has no referrers API: each verification also asks for it (404) and reads the');
  console.log('referrers tag-schema index. lading serve runs in this process (shared event loop with the client).');
  console.log('PASS  bundles downloaded == signatures checked: 1 for verify, N for verify --all, on every run');
  const load = (x: number[]): string => x.map((v) => v.toFixed(2)).join(' ');
  console.log(`\nverify benchmark took ${((performance.now() - started) / 1000).toFixed(0)} s; load average ${load(loadBefore)} before, ${load(loadavg())} after on ${cpus().length} CPUs`);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? (err.stack ?? err.message) : err);
  process.exitCode = 1;
});
