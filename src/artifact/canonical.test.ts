import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isLadingError } from '../errors.js';
import { canonicalJson, canonicalJsonBytes } from './canonical.js';

function fromBits(hex: string): number {
  const view = new DataView(new ArrayBuffer(8));
  view.setBigUint64(0, BigInt(`0x${hex}`));
  return view.getFloat64(0);
}

// RFC 8785 Appendix B: IEEE 754 bit patterns and their required serialization.
const NUMBER_VECTORS: Array<[string, string]> = [
  ['0000000000000000', '0'],
  ['8000000000000000', '0'],
  ['0000000000000001', '5e-324'],
  ['8000000000000001', '-5e-324'],
  ['7fefffffffffffff', '1.7976931348623157e+308'],
  ['ffefffffffffffff', '-1.7976931348623157e+308'],
  ['4340000000000000', '9007199254740992'],
  ['c340000000000000', '-9007199254740992'],
  ['4430000000000000', '295147905179352830000'],
  ['44b52d02c7e14af5', '9.999999999999997e+22'],
  ['44b52d02c7e14af6', '1e+23'],
  ['44b52d02c7e14af7', '1.0000000000000001e+23'],
  ['444b1ae4d6e2ef4e', '999999999999999700000'],
  ['444b1ae4d6e2ef4f', '999999999999999900000'],
  ['444b1ae4d6e2ef50', '1e+21'],
  ['3eb0c6f7a0b5ed8c', '9.999999999999997e-7'],
  ['3eb0c6f7a0b5ed8d', '0.000001'],
  ['41b3de4355555553', '333333333.3333332'],
  ['41b3de4355555554', '333333333.33333325'],
  ['41b3de4355555555', '333333333.3333333'],
  ['41b3de4355555556', '333333333.3333334'],
  ['41b3de4355555557', '333333333.33333343'],
  ['becbf647612f3696', '-0.0000033333333333333333'],
  ['43143ff3c1cb0959', '1424953923781206.2'],
];

test('RFC 8785 Appendix B number serialization', () => {
  for (const [bits, expected] of NUMBER_VECTORS) {
    assert.equal(canonicalJson(fromBits(bits)), expected, bits);
    assert.equal(canonicalJson([fromBits(bits)]), `[${expected}]`, bits);
  }
});

test('non-finite numbers are refused (RFC 8785 Appendix B NaN and Infinity rows)', () => {
  for (const bits of ['7fffffffffffffff', '7ff0000000000000', 'fff0000000000000']) {
    assert.throws(() => canonicalJson({ x: fromBits(bits) }), (e: unknown) => isLadingError(e, 'E_JSON_INVALID') && e.details?.path === 'x');
  }
});

test('RFC 8785 §3.2.2 example: literals, numbers and string escapes', () => {
  const input = JSON.parse(
    '{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],' +
      ' "string": "\\u20ac$\\u000F\\u000aA\'\\u0042\\u0022\\u005c\\\\\\"\\/",' +
      ' "literals": [null, true, false]}',
  );
  assert.equal(
    canonicalJson(input),
    '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}',
  );
});

test('RFC 8785 §3.2.3 example: keys sorted by UTF-16 code units', () => {
  const input = {
    '\u20ac': 'Euro Sign',
    '\r': 'Carriage Return',
    '\ufb33': 'Hebrew Letter Dalet With Dagesh',
    '1': 'One',
    '\ud83d\ude00': 'Emoji: Grinning Face',
    '\u0080': 'Control',
    '\u00f6': 'Latin Small Letter O With Diaeresis',
  };
  assert.equal(
    canonicalJson(input),
    '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis",' +
      '"\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
  );
  // UTF-16 order puts the surrogate pair (U+1F600) before U+FB33, although its code point is greater.
  assert.ok(canonicalJson(input).indexOf('Emoji') < canonicalJson(input).indexOf('Hebrew'));
});

test('nesting, whitespace and key order of the input do not matter; bytes are UTF-8', () => {
  const a = { b: [1, { z: 1, a: [true, null] }], a: 'é' };
  const b = JSON.parse('{ "a" : "é", "b" : [ 1 , { "a" : [ true , null ] , "z" : 1 } ] }');
  assert.equal(canonicalJson(a), '{"a":"é","b":[1,{"a":[true,null],"z":1}]}');
  assert.equal(canonicalJson(b), canonicalJson(a));
  assert.deepEqual([...canonicalJsonBytes({ a: 'é' })], [...Buffer.from('{"a":"\u00e9"}', 'utf8')]);
  assert.equal(canonicalJson(Object.assign(Object.create(null), { k: 1 })), '{"k":1}');
  assert.equal(canonicalJson(-0), '0');
  assert.equal(canonicalJson(1e21), '1e+21');
  assert.equal(canonicalJson('\u2028\u007f'), '"\u2028\u007f"');
});

test('what is not JSON is refused with its path', () => {
  const refused = (value: unknown, path: string, why: RegExp): void => {
    assert.throws(
      () => canonicalJson(value),
      (e: unknown) => isLadingError(e, 'E_JSON_INVALID') && e.details?.path === path && why.test(e.message),
    );
  };
  refused({ a: undefined }, 'a', /undefined/);
  refused([1, undefined], '[1]', /undefined/);
  refused({ f: () => 1 }, 'f', /function/);
  refused({ n: 10n }, 'n', /bigint/);
  refused({ d: new Date(0) }, 'd', /Date is not a plain object/);
  refused({ m: new Map() }, 'm', /Map/);
  refused({ 'a.b': { s: Symbol('x') } }, '["a.b"].s', /symbol/);
  refused({ s: 'x\ud800y' }, 's', /lone surrogate/);
  refused({ ['\udc00']: 1 }, '["\\udc00"]', /lone surrogate/);
  const cycle: Record<string, unknown> = { a: [] };
  (cycle.a as unknown[]).push(cycle);
  refused(cycle, 'a[0]', /cycle/);
  // Sharing without a cycle is fine.
  const shared = { x: 1 };
  assert.equal(canonicalJson({ a: shared, b: [shared] }), '{"a":{"x":1},"b":[{"x":1}]}');
  let deep: unknown = 0;
  for (let i = 0; i < 2000; i++) deep = [deep];
  assert.throws(() => canonicalJson(deep), (e: unknown) => isLadingError(e, 'E_JSON_INVALID') && /nested/.test((e as Error).message));
});
