import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/**
 * The shared fixtures (../shared/fixtures beside the repository, as CI lays it out), or LADING_FIXTURES.
 * They are public material from other projects and stay outside the repository.
 */
export function fixturesDir(): string {
  const candidates = [process.env.LADING_FIXTURES, join(repoRoot, '..', 'shared', 'fixtures'), '/work/shared/fixtures'];
  for (const c of candidates) if (c && existsSync(join(c, 'README.md'))) return c;
  throw new Error(`shared fixtures not found (looked in ${candidates.filter(Boolean).join(', ')}); set LADING_FIXTURES`);
}

export function fixture(...parts: string[]): string {
  return join(fixturesDir(), ...parts);
}
