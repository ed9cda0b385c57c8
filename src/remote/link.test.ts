import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextLink } from './link.js';

const base = 'http://127.0.0.1:5000';

test('finds rel=next among several links and resolves it against the registry', () => {
  assert.equal(nextLink('</v2/_catalog?last=b&n=2>; rel="next"', base), '/v2/_catalog?last=b&n=2');
  assert.equal(nextLink('<http://127.0.0.1:5000/v2/a/tags/list?n=1&last=x>; rel=next', base), '/v2/a/tags/list?n=1&last=x');
  assert.equal(nextLink('</p?a=1,2>; rel="prev", </n?a=3>; rel="next"', base), '/n?a=3');
  assert.equal(nextLink(['</p>; rel="prev"', '</n>; rel="next"'], base), '/n');
});

test('ignores links that are not next and links to other hosts', () => {
  assert.equal(nextLink(undefined, base), undefined);
  assert.equal(nextLink('</p>; rel="prev"', base), undefined);
  assert.equal(nextLink('</p>; rel="nextish"', base), undefined);
  assert.equal(nextLink('<https://evil.example/v2/_catalog>; rel="next"', base), undefined);
});
