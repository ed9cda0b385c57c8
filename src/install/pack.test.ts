import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLadingError } from '../errors.js';
import { checkPack, findClassConflicts } from './pack.js';

const spec = { entry: 'dist/index.js', protocolVersion: 1, sdk: '^2.1.0', classes: ['Acme.Fmt', 'Acme.Lint'] };

test('compatible SDK: the classes are returned', () => {
  assert.deepEqual(checkPack(spec, { name: 'acme', sdkVersion: '2.4.1' }), ['Acme.Fmt', 'Acme.Lint']);
  // Prereleases count.
  assert.deepEqual(checkPack({ ...spec, sdk: '>=2.0.0' }, { name: 'acme', sdkVersion: '3.0.0-rc.1' }), ['Acme.Fmt', 'Acme.Lint']);
});

test('SDK outside the range → E_PACK_INCOMPATIBLE; missing or malformed → E_USAGE', () => {
  assert.throws(() => checkPack(spec, { name: 'acme', sdkVersion: '3.0.0' }), (err: unknown) => isLadingError(err, 'E_PACK_INCOMPATIBLE') && /\^2\.1\.0/.test(err.message));
  assert.throws(() => checkPack(spec, { name: 'acme', sdkVersion: '2.0.9' }), (err: unknown) => isLadingError(err, 'E_PACK_INCOMPATIBLE'));
  assert.throws(() => checkPack(spec, { name: 'acme' }), (err: unknown) => isLadingError(err, 'E_USAGE') && /--sdk-version/.test(err.hint ?? ''));
  assert.throws(() => checkPack(spec, { name: 'acme', sdkVersion: 'two' }), (err: unknown) => isLadingError(err, 'E_USAGE'));
});

test('class collisions with the host and other packs → E_PACK_CONFLICT listing them', () => {
  assert.throws(
    () => checkPack(spec, { name: 'acme', sdkVersion: '2.2.0', hostClasses: ['Acme.Lint'], installed: [{ name: 'other', version: '1.0.0', classes: ['Acme.Fmt', 'X'] }] }),
    (err: unknown) =>
      isLadingError(err, 'E_PACK_CONFLICT') &&
      /Acme\.Fmt \(other@1\.0\.0\)/.test(err.message) &&
      /Acme\.Lint \(host\)/.test(err.message),
  );
  // The pack's own installed versions are no conflict (an upgrade keeps its classes).
  assert.deepEqual(findClassConflicts(['Acme.Fmt'], { name: 'acme', installed: [{ name: 'acme', version: '0.9.0', classes: ['Acme.Fmt'] }] }), []);
});
