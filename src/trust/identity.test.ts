import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLadingError } from '../errors.js';
import { checkIdentityMatcher, matchIdentity } from './identity.js';
import type { IdentityMatcher } from './types.js';

const GH = 'https://token.actions.githubusercontent.com';

describe('checkIdentityMatcher', () => {
  it('accepts one of each', () => {
    checkIdentityMatcher({ subject: 'a@b.c', issuer: GH }, 'x');
    checkIdentityMatcher({ subjectPattern: 'https://github\\.com/org/.*', issuerPattern: 'https://.*' }, 'x');
  });

  const bad: [string, IdentityMatcher][] = [
    ['no subject', { issuer: GH }],
    ['no issuer', { subject: 'a' }],
    ['subject and subjectPattern', { subject: 'a', subjectPattern: 'a', issuer: GH }],
    ['issuer and issuerPattern', { subject: 'a', issuer: GH, issuerPattern: '.*' }],
    ['an empty subject', { subject: '', issuer: GH }],
    ['a pattern that does not compile', { subjectPattern: '(', issuer: GH }],
  ];
  for (const [what, m] of bad) {
    it(`refuses ${what}`, () => {
      assert.throws(
        () => checkIdentityMatcher(m, 'policies[0].identities[0]'),
        (e) => isLadingError(e, 'E_POLICY_INVALID') && e.message.startsWith('policies[0].identities[0]'),
      );
    });
  }
});

describe('matchIdentity', () => {
  const wf = 'https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main';

  it('matches exact strings only', () => {
    assert.equal(matchIdentity({ subject: wf, issuer: GH }, { subject: wf, issuer: GH }), true);
    assert.equal(matchIdentity({ subject: wf, issuer: GH }, { subject: wf.toUpperCase(), issuer: GH }), false);
    assert.equal(matchIdentity({ subject: wf, issuer: `${GH}/` }, { subject: wf, issuer: GH }), false);
  });

  it('anchors patterns at both ends', () => {
    const m = { subjectPattern: 'https://github\\.com/org/repo/.*', issuer: GH };
    assert.equal(matchIdentity({ subject: wf, issuer: GH }, m), true);
    assert.equal(matchIdentity({ subject: wf.replace('org/repo', 'org/repo-evil'), issuer: GH }, m), false);
    assert.equal(matchIdentity({ subject: `https://evil.example/?${wf}`, issuer: GH }, m), false);
  });

  it('does not let an alternation escape the anchors', () => {
    const m = { subjectPattern: 'a@b\\.c|x', issuer: GH };
    assert.equal(matchIdentity({ subject: 'a@b.c', issuer: GH }, m), true);
    assert.equal(matchIdentity({ subject: 'a@b.c.evil', issuer: GH }, m), false);
    assert.equal(matchIdentity({ subject: 'evil-x', issuer: GH }, m), false);
  });

  it('never matches a matcher that says nothing about a field', () => {
    assert.equal(matchIdentity({ subject: 'a', issuer: GH }, { issuer: GH }), false);
  });
});
