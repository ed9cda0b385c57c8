import { accessSync, constants, statSync } from 'node:fs';
import { delimiter, isAbsolute, join } from 'node:path';
import type { TestContext } from 'node:test';

/** The Debian package that provides each peer tool, so that a skip or failure says how to get it. */
const PACKAGE_OF: Record<string, string> = {
  'docker-registry': 'docker-registry',
  skopeo: 'skopeo',
  umoci: 'umoci',
  podman: 'podman',
  htpasswd: 'apache2-utils',
};

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The full path of `bin` as the shell would find it on PATH, or undefined. */
export function which(bin: string): string | undefined {
  if (bin.includes('/')) return isExecutableFile(bin) ? bin : undefined;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir || !isAbsolute(dir)) continue;
    const candidate = join(dir, bin);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

export function packageOf(bin: string): string {
  return PACKAGE_OF[bin] ?? bin;
}

/**
 * True when `bin` is installed. Otherwise the test is skipped locally, but fails on CI: there a missing
 * peer means the environment is wrong, and a silent skip would hide interop regressions.
 */
export function requirePeer(t: TestContext, bin: string): boolean {
  if (which(bin) !== undefined) return true;
  const fix = `apt-get install -y ${packageOf(bin)}`;
  if (process.env.CI === 'true') {
    throw new Error(`peer tool "${bin}" is not on PATH; CI must provide it (${fix})`);
  }
  t.skip(`${bin} not installed: run ${fix} to include this test`);
  return false;
}
