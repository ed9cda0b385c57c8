import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fixture } from '../../test/support/fixtures.js';
import { isLadingError } from '../errors.js';
import { defaultTrustedRoot, loadTrustedRoot, parseTrustedRoot } from './trusted-root.js';

describe('loadTrustedRoot', () => {
  it('loads the shipped public-good root once', async () => {
    const a = await loadTrustedRoot();
    assert.equal(a, await loadTrustedRoot());
    assert.equal(a, defaultTrustedRoot());
    assert.match(a.source, /public-good/);
  });

  it('loads a root file by path', async () => {
    const path = fixture('sigstore', 'cosign-trusted_root_pgi.json');
    assert.equal((await loadTrustedRoot(path)).source, path);
  });

  it('refuses missing, non-JSON and wrongly shaped files', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-root-'));
    const write = (name: string, text: string): string => {
      writeFileSync(join(dir, name), text);
      return join(dir, name);
    };
    const good = JSON.parse(readFileSync(fixture('sigstore', 'cosign-trusted_root_pgi.json'), 'utf8'));
    const cases = [
      join(dir, 'absent.json'),
      write('text.json', 'not json'),
      write('array.json', '[]'),
      write('media.json', JSON.stringify({ ...good, mediaType: 'application/json' })),
      write('empty.json', JSON.stringify({ mediaType: good.mediaType })),
      write('tlogs.json', JSON.stringify({ ...good, tlogs: {} })),
    ];
    for (const path of cases) {
      await assert.rejects(loadTrustedRoot(path), (e) => isLadingError(e, 'E_TRUSTED_ROOT_INVALID'), path);
    }
  });

  it('refuses a directory, a device and an oversized file without reading them whole', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lading-root-'));
    const big = join(dir, 'big.json');
    writeFileSync(big, '');
    truncateSync(big, 4 * 1024 * 1024 + 1);
    const cases: [string, RegExp][] = [
      [dir, /not a regular file/],
      [big, /larger than/],
    ];
    if (process.platform !== 'win32') cases.push(['/dev/zero', /not a regular file/]);
    for (const [path, why] of cases) {
      await assert.rejects(loadTrustedRoot(path), (e) => isLadingError(e, 'E_TRUSTED_ROOT_INVALID') && why.test(e.message), path);
    }
  });

  it('refuses a root whose key cannot be read', () => {
    const good = JSON.parse(readFileSync(fixture('sigstore', 'cosign-trusted_root_pgi.json'), 'utf8'));
    good.tlogs[0].publicKey.rawBytes = 'AAAA';
    assert.throws(() => parseTrustedRoot(JSON.stringify(good), 'r.json'), (e) => isLadingError(e, 'E_TRUSTED_ROOT_INVALID'));
  });
});
