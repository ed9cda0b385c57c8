import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { fixture } from '../../test/support/fixtures.js';
import { isLadingError } from '../errors.js';
import { inTotoStatement, pae, parseStatement } from './dsse.js';
import { IN_TOTO_STATEMENT_V1 } from './types.js';

describe('pae', () => {
  it('encodes the DSSE specification example', () => {
    const out = pae('http://example.com/HelloWorld', Buffer.from('hello world'));
    assert.equal(out.toString('utf8'), 'DSSEv1 29 http://example.com/HelloWorld 11 hello world');
  });

  it('counts bytes, not characters', () => {
    assert.equal(pae('t', Buffer.from('é')).toString('utf8'), 'DSSEv1 1 t 2 é');
  });
});

describe('inTotoStatement / parseStatement', () => {
  it('round-trips a v1 statement', () => {
    const bytes = inTotoStatement({
      subjects: [{ name: 'repo', digest: { sha256: 'ab'.repeat(32) } }],
      predicateType: 'https://example.com/p',
      predicate: { a: 1 },
    });
    const s = parseStatement(bytes);
    assert.equal(s.type, IN_TOTO_STATEMENT_V1);
    assert.deepEqual(s.subjects, [{ name: 'repo', digest: { sha256: 'ab'.repeat(32) } }]);
    assert.equal(s.predicateType, 'https://example.com/p');
    assert.deepEqual(s.predicate, { a: 1 });
  });

  it('reads the v0.1 statement sigstore-js signs', () => {
    const s = parseStatement(readFileSync(fixture('sigstore', 'sigstore-js-bundles', 'statement.json')));
    assert.equal(s.type, 'https://in-toto.io/Statement/v0.1');
    assert.equal(s.subjects[0]!.name, 'pkg:npm/sigstore@1.0.0');
    assert.match(s.subjects[0]!.digest.sha512!, /^7bea9f6e/);
  });

  const bad: [string, unknown][] = [
    ['not JSON', '{'],
    ['an array', []],
    ['an unknown _type', { _type: 'https://in-toto.io/Statement/v2', subject: [{ digest: { sha256: 'a' } }], predicateType: 'p' }],
    ['no subject', { _type: IN_TOTO_STATEMENT_V1, subject: [], predicateType: 'p' }],
    ['a subject without digest', { _type: IN_TOTO_STATEMENT_V1, subject: [{ name: 'x', digest: {} }], predicateType: 'p' }],
    ['a non-string digest', { _type: IN_TOTO_STATEMENT_V1, subject: [{ name: 'x', digest: { sha256: 1 } }], predicateType: 'p' }],
    ['no predicateType', { _type: IN_TOTO_STATEMENT_V1, subject: [{ name: 'x', digest: { sha256: 'a' } }] }],
  ];
  for (const [what, doc] of bad) {
    it(`refuses ${what}`, () => {
      const bytes = Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc));
      assert.throws(() => parseStatement(bytes), (e) => isLadingError(e, 'E_BUNDLE_INVALID'));
    });
  }
});
