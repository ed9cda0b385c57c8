import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isLadingError } from '../errors.js';
import { checkIdentityMatcher, MAX_MATCHED_LENGTH, matchIdentity } from './identity.js';
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
    ['a pattern that closes the anchoring group (a)|(b)', { subjectPattern: 'a)|(b', issuer: GH }],
    ['a pattern that closes the anchoring group (.*)|(?:.*)', { subjectPattern: '.*)|(?:.*', issuer: GH }],
    ['an escaping pattern after a real prefix', { subjectPattern: 'https://github\\.com/acme/.*)|(?:.*', issuer: GH }],
    ['an escaping issuer pattern', { subject: 'a', issuerPattern: 'x)|(?:.*' }],
    ['a pattern with exponential backtracking', { subjectPattern: 'https://github\\.com/(acme|[a-z-]+)*/repo', issuer: GH }],
    ['a nested quantifier', { subjectPattern: '(a+)+b', issuer: GH }],
    ['a pattern that is too long', { subjectPattern: 'a'.repeat(1025), issuer: GH }],
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

describe('checkIdentityMatcher on patterns', () => {
  it('accepts ordinary patterns', () => {
    checkIdentityMatcher({ subjectPattern: 'https://github\\.com/acme/[^/]+/\\.github/workflows/release\\.yml@refs/tags/v.*', issuer: GH }, 'x');
    checkIdentityMatcher({ subjectPattern: '[a-z]+@redhat\\.com', issuerPattern: 'https://(accounts\\.google\\.com|github\\.com/login/oauth)' }, 'x');
  });

  it('says why a risky pattern is refused', () => {
    assert.throws(
      () => checkIdentityMatcher({ subjectPattern: 'https://github\\.com/(acme|[a-z-]+)*/repo', issuer: GH }, 'here'),
      (e) => isLadingError(e, 'E_POLICY_INVALID') && /exponential/.test(e.message) && /same character/.test(e.message),
    );
  });
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

  it('refuses, rather than runs, a pattern that escapes the anchors', () => {
    for (const subjectPattern of ['a)|(b', '.*)|(?:.*', 'https://github\\.com/acme/.*)|(?:.*']) {
      assert.throws(
        () => matchIdentity({ subject: 'https://evil.example/x', issuer: GH }, { subjectPattern, issuer: GH }),
        (e) => isLadingError(e, 'E_POLICY_INVALID'),
        subjectPattern,
      );
    }
  });

  it('refuses, rather than runs, a pattern with exponential backtracking', () => {
    const m = { subjectPattern: 'https://github\\.com/(acme|[a-z-]+)*/repo', issuer: GH };
    assert.throws(() => matchIdentity({ subject: `https://github.com/${'a'.repeat(64)}!`, issuer: GH }, m), (e) => isLadingError(e, 'E_POLICY_INVALID'));
  });

  it('does not let flags be injected', () => {
    // There is no syntax for flags inside a pattern: these are literal text (or not a pattern at all).
    const m = { subjectPattern: '/a@b\\.c/i', issuer: GH };
    assert.equal(matchIdentity({ subject: 'A@B.C', issuer: GH }, m), false);
    assert.equal(matchIdentity({ subject: 'a@b.c', issuer: GH }, m), false);
    assert.equal(matchIdentity({ subject: '/a@b.c/i', issuer: GH }, m), true);
    let inline = false;
    try {
      inline = matchIdentity({ subject: 'A@B.C', issuer: GH }, { subjectPattern: '(?i)a@b\\.c', issuer: GH });
    } catch (e) {
      assert.ok(isLadingError(e, 'E_POLICY_INVALID'));
    }
    assert.equal(inline, false);
    // A multiline flag would let ^ and $ match at a newline; without it a second line is not accepted.
    const ml = { subjectPattern: 'a@b\\.c', issuer: GH };
    assert.equal(matchIdentity({ subject: 'a@b.c\nevil', issuer: GH }, ml), false);
    assert.equal(matchIdentity({ subject: 'evil\na@b.c', issuer: GH }, ml), false);
  });

  it('does not match a value longer than the cap', () => {
    const m = { subjectPattern: 'https://github\\.com/acme/.*', issuer: GH };
    const long = `https://github.com/acme/${'a'.repeat(MAX_MATCHED_LENGTH)}`;
    assert.equal(matchIdentity({ subject: long, issuer: GH }, m), false);
    assert.equal(matchIdentity({ subject: long.slice(0, MAX_MATCHED_LENGTH), issuer: GH }, m), true);
  });

  it('matches ordinary patterns', () => {
    const m = { subjectPattern: 'https://github\\.com/acme/[^/]+/\\.github/workflows/release\\.yml@refs/tags/v.*', issuer: GH };
    assert.equal(matchIdentity({ subject: 'https://github.com/acme/tool/.github/workflows/release.yml@refs/tags/v1.2.3', issuer: GH }, m), true);
    assert.equal(matchIdentity({ subject: 'https://github.com/acme/tool/x/.github/workflows/release.yml@refs/tags/v1', issuer: GH }, m), false);
    const rh = { subjectPattern: '[a-z]+@redhat\\.com', issuer: GH };
    assert.equal(matchIdentity({ subject: 'jdoe@redhat.com', issuer: GH }, rh), true);
    assert.equal(matchIdentity({ subject: 'jdoe@redhat.com.evil', issuer: GH }, rh), false);
  });

  it('never matches a matcher that says nothing about a field', () => {
    assert.equal(matchIdentity({ subject: 'a', issuer: GH }, { issuer: GH }), false);
  });
});
