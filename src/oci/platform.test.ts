import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLadingError } from '../errors.js';
import type { Platform } from './descriptor.js';
import { formatPlatform, hostPlatform, normalizePlatform, parsePlatform, platformEquals } from './platform.js';

test('parsePlatform normalizes aliases', () => {
  const cases: Array<[string, Platform]> = [
    ['linux/amd64', { os: 'linux', architecture: 'amd64' }],
    ['linux/x86_64', { os: 'linux', architecture: 'amd64' }],
    ['Linux/AMD64', { os: 'linux', architecture: 'amd64' }],
    ['linux/amd64/v1', { os: 'linux', architecture: 'amd64' }],
    ['linux/amd64/v3', { os: 'linux', architecture: 'amd64', variant: 'v3' }],
    ['linux/arm64', { os: 'linux', architecture: 'arm64' }],
    ['linux/arm64/v8', { os: 'linux', architecture: 'arm64' }],
    ['linux/aarch64', { os: 'linux', architecture: 'arm64' }],
    ['linux/arm64/v9', { os: 'linux', architecture: 'arm64', variant: 'v9' }],
    ['linux/armhf', { os: 'linux', architecture: 'arm', variant: 'v7' }],
    ['linux/armel', { os: 'linux', architecture: 'arm', variant: 'v6' }],
    ['linux/arm', { os: 'linux', architecture: 'arm', variant: 'v7' }],
    ['linux/arm/6', { os: 'linux', architecture: 'arm', variant: 'v6' }],
    ['linux/arm/v5', { os: 'linux', architecture: 'arm', variant: 'v5' }],
    ['linux/i386', { os: 'linux', architecture: '386' }],
    ['linux/riscv64', { os: 'linux', architecture: 'riscv64' }],
    ['macos/arm64', { os: 'darwin', architecture: 'arm64' }],
    ['windows/amd64:10.0.17763', { os: 'windows', architecture: 'amd64', 'os.version': '10.0.17763' }],
    [' linux/ppc64le ', { os: 'linux', architecture: 'ppc64le' }],
  ];
  for (const [input, want] of cases) assert.deepEqual(parsePlatform(input), want, input);
});

test('parsePlatform refuses malformed input with E_USAGE', () => {
  for (const input of ['', 'linux', 'linux/', '/amd64', 'linux/amd64/v8/x', 'linux amd64', 'linux/amd64:', 'linux/amd64:10 0', 'linux//v7']) {
    assert.throws(
      () => parsePlatform(input),
      (e: unknown) => isLadingError(e, 'E_USAGE') && e.message.includes(JSON.stringify(input)) && !!e.hint,
      JSON.stringify(input),
    );
  }
});

test('native is the host platform', () => {
  assert.deepEqual(parsePlatform('native'), hostPlatform());
});

test('hostPlatform uses GOOS/GOARCH names', () => {
  const host = hostPlatform();
  const goos: Record<string, string> = { win32: 'windows', linux: 'linux', darwin: 'darwin' };
  const goarch: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386' };
  if (goos[process.platform]) assert.equal(host.os, goos[process.platform]);
  if (goarch[process.arch]) assert.equal(host.architecture, goarch[process.arch]);
  assert.deepEqual(normalizePlatform(host), host);
  assert.deepEqual(parsePlatform(formatPlatform(host)), host);
});

test('formatPlatform round-trips', () => {
  for (const s of ['linux/amd64', 'linux/arm/v7', 'linux/arm64/v9', 'windows/amd64:10.0.20348.1']) {
    assert.equal(formatPlatform(parsePlatform(s)), s);
  }
});

test('platformEquals is exact after normalization', () => {
  const eq = (a: string, b: string) => platformEquals(parsePlatform(a), parsePlatform(b));
  assert.equal(eq('linux/arm64', 'linux/aarch64'), true);
  assert.equal(platformEquals({ os: 'linux', architecture: 'arm64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }), true);
  assert.equal(platformEquals({ os: 'linux', architecture: 'arm' }, { os: 'linux', architecture: 'arm', variant: 'v7' }), true);
  assert.equal(eq('linux/amd64', 'linux/arm64'), false);
  assert.equal(eq('linux/amd64', 'windows/amd64'), false);
  assert.equal(eq('linux/arm/v6', 'linux/arm/v7'), false);
  assert.equal(eq('linux/amd64/v3', 'linux/amd64'), false);
  // os.version matters only when the wanted platform names one.
  assert.equal(eq('windows/amd64', 'windows/amd64:10.0.17763'), true);
  assert.equal(eq('windows/amd64:10.0.17763', 'windows/amd64:10.0.17763'), true);
  assert.equal(eq('windows/amd64:10.0.17763', 'windows/amd64:10.0.20348'), false);
  assert.equal(eq('windows/amd64:10.0.17763', 'windows/amd64'), false);
});
