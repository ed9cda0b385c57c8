import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLadingError } from '../errors.js';
import { installSteps, orderSteps, type InstallStep } from './plan.js';

const s = (name: string, order: number, deps?: string[]): InstallStep => ({ name, order, run: ['true'], ...(deps ? { deps } : {}) });
const names = (steps: InstallStep[]) => steps.map((x) => x.name);

test('no deps: ascending order, ties by name, whatever the listing order', () => {
  assert.deepEqual(names(orderSteps([s('c', 2), s('b', 1), s('a', 2), s('z', 0)])), ['z', 'b', 'a', 'c']);
  assert.deepEqual(orderSteps([]), []);
});

test('deps come first even against order', () => {
  // "late" has the lowest order but needs "setup"; "other" is free and runs by order.
  const out = orderSteps([s('late', 0, ['setup']), s('setup', 5), s('other', 3)]);
  assert.deepEqual(names(out), ['other', 'setup', 'late']);
});

test('diamond: each step after all of its deps', () => {
  const out = names(orderSteps([s('d', 0, ['b', 'c']), s('b', 2, ['a']), s('c', 1, ['a']), s('a', 9)]));
  assert.deepEqual(out, ['a', 'c', 'b', 'd']);
});

test('cycle → E_STEP_CYCLE naming the cycle', () => {
  assert.throws(
    () => orderSteps([s('a', 0, ['b']), s('b', 1, ['a']), s('free', 0)]),
    (err: unknown) => isLadingError(err, 'E_STEP_CYCLE') && /a → b → a/.test(err.message) && (err.details?.cycle as string[]).join() === 'a,b,a',
  );
  // A longer cycle reached from a step outside it: only the cycle is named.
  assert.throws(
    () => orderSteps([s('x', 0, ['p']), s('p', 1, ['q']), s('q', 2, ['r']), s('r', 3, ['p'])]),
    (err: unknown) => isLadingError(err, 'E_STEP_CYCLE') && (err.details?.cycle as string[]).join(' → ') === 'p → q → r → p',
  );
  assert.throws(() => orderSteps([s('self', 0, ['self'])]), (err: unknown) => isLadingError(err, 'E_STEP_CYCLE') && /self → self/.test(err.message));
});

test('unknown dep and duplicate names → E_CONFIG_INVALID', () => {
  assert.throws(() => orderSteps([s('a', 0, ['ghost'])]), (err: unknown) => isLadingError(err, 'E_CONFIG_INVALID') && /ghost/.test(err.message));
  assert.throws(() => orderSteps([s('a', 0), s('a', 1)]), (err: unknown) => isLadingError(err, 'E_CONFIG_INVALID'));
});

test('installSteps reads and orders spec.install', () => {
  assert.deepEqual(installSteps({ executable: 'x' }), []);
  const out = installSteps({ install: [{ name: 'two', order: 2, run: ['b'] }, { name: 'one', order: 1, run: ['a', '--x'] }] });
  assert.deepEqual(out, [{ name: 'one', order: 1, run: ['a', '--x'] }, { name: 'two', order: 2, run: ['b'] }]);
  assert.throws(() => installSteps({ install: [{ name: 'x', order: 1, run: [] }] }), (err: unknown) => isLadingError(err, 'E_CONFIG_INVALID'));
  assert.throws(() => installSteps({ install: 'nope' }), (err: unknown) => isLadingError(err, 'E_CONFIG_INVALID'));
});
