/**
 * `npm run bench`: the client benchmark (bench/run.ts), the server benchmark (bench/serve.ts), then the
 * verification benchmark (bench/verify.ts), each as its own process so that none shares another's event
 * loop, heap or exit hooks.
 *
 * LADING_BENCH_ONLY=client|serve|verify|install|extract runs one of them. The exit code is non-zero when any benchmark could
 * not run; missed targets are reported by the benchmarks themselves and do not fail the run.
 */
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const parts = [
  { name: 'client', file: 'run.ts' },
  { name: 'serve', file: 'serve.ts' },
  { name: 'verify', file: 'verify.ts' },
  { name: 'install', file: 'install.ts' },
  { name: 'extract', file: 'extract.ts' },
] as const;
const only = process.env.LADING_BENCH_ONLY;
if (only !== undefined && only !== '' && !parts.some((p) => p.name === only)) {
  throw new Error(`LADING_BENCH_ONLY must be one of ${parts.map((p) => p.name).join(', ')}, not "${only}"`);
}

let failed = 0;
for (const part of parts) {
  if (only && part.name !== only) continue;
  console.log(`\n===== bench/${part.file} =====`);
  // A bound on each part: a hung benchmark is a failure, not a wait without end.
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(here, part.file)], { stdio: 'inherit', timeout: 60 * 60_000, killSignal: 'SIGINT' });
  if (r.status !== 0) {
    failed++;
    console.error(`bench/${part.file} ${r.signal ? `was stopped by ${r.signal}` : `exited with ${r.status}`}`);
  }
}
process.exitCode = failed ? 1 : 0;
