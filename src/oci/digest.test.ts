import { fixturesDir } from '../../test/support/fixtures.js';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isLadingError } from '../errors.js';
import { Digester, digestOf, hashableAlgorithm, isDigest, parseDigest, referrersTag } from './digest.js';

const FIXTURES = fixturesDir();
const readFixture = (name: string): any => JSON.parse(readFileSync(join(FIXTURES, 'reference', name), 'utf8'));

const FAULT_OF_GO_ERROR: Record<string, string> = {
  ErrDigestInvalidFormat: 'format',
  ErrDigestInvalidLength: 'length',
  ErrDigestUnsupported: 'unsupported',
};

// The vectors register sha384 and blake3 alongside go-digest's defaults; lading knows exactly those
// encodings too, so every case applies unchanged.
const goDigest = readFixture('go-digest-ParseDigest-vectors.json');
test('go-digest ParseDigest vectors', async (t) => {
  assert.ok(goDigest.cases.length > 10);
  for (const c of goDigest.cases as Array<{ input: string; algorithm?: string; encoded?: string; err?: string }>) {
    await t.test(JSON.stringify(c.input), () => {
      if (c.err) {
        const fault = FAULT_OF_GO_ERROR[c.err];
        assert.ok(fault, `unmapped go error ${c.err}`);
        assert.throws(
          () => parseDigest(c.input),
          (e: unknown) => isLadingError(e, 'E_DIGEST_INVALID') && e.details?.fault === fault,
        );
        assert.equal(isDigest(c.input), false);
      } else {
        assert.deepEqual(parseDigest(c.input), { algorithm: c.algorithm, encoded: c.encoded });
        assert.equal(isDigest(c.input), true);
      }
    });
  }
});

const schemes = readFixture('tag-schemes.json');
test('distribution-spec referrers tag schema', async (t) => {
  const cases = schemes.oci_referrers_tag_schema.cases as Array<{ digest: string; tag: string }>;
  assert.ok(cases.length >= 3);
  for (const c of cases) {
    await t.test(c.digest.slice(0, 40), () => {
      assert.equal(referrersTag(c.digest), c.tag);
    });
  }
  assert.throws(() => referrersTag('not a digest'), (e: unknown) => isLadingError(e, 'E_DIGEST_INVALID'));
});

test('the empty descriptor digest is the sha256 of {}', () => {
  const empty = schemes.oci_empty_descriptor;
  const bytes = Buffer.from(empty.data, 'base64');
  assert.equal(bytes.length, empty.size);
  assert.equal(digestOf(bytes), empty.digest);
});

test('Digester hashes incrementally and stays usable', () => {
  const d = new Digester('sha512');
  d.update('hello ');
  const partial = d.digest();
  d.update(Buffer.from('world'));
  assert.equal(partial, digestOf('hello ', 'sha512'));
  assert.equal(d.digest(), digestOf('hello world', 'sha512'));
  assert.match(d.digest(), /^sha512:[0-9a-f]{128}$/);
});

test('hashableAlgorithm refuses algorithms lading cannot compute', () => {
  assert.equal(hashableAlgorithm(digestOf('x', 'sha384')), 'sha384');
  const blake3 = `blake3:${'a'.repeat(64)}`;
  assert.throws(
    () => hashableAlgorithm(blake3),
    (e: unknown) => isLadingError(e, 'E_DIGEST_INVALID') && e.details?.fault === 'unsupported',
  );
});
