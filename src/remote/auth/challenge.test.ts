import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseChallenges } from './challenge.js';

test('Docker Hub bearer challenge', () => {
  const h = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/ubuntu:pull"';
  assert.deepEqual(parseChallenges(h), [
    {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/ubuntu:pull' },
    },
  ]);
});

test('several scopes separated by spaces and commas inside a quoted value', () => {
  const h =
    'Bearer realm="https://r.example/token", service="r.example", scope="repository:a/b:pull,push repository:c:pull", error="insufficient_scope"';
  const [c] = parseChallenges(h);
  assert.equal(c?.scheme, 'bearer');
  assert.equal(c?.params.scope, 'repository:a/b:pull,push repository:c:pull');
  assert.equal(c?.params.error, 'insufficient_scope');
  assert.equal(c?.params.service, 'r.example');
});

test('Basic with a realm, scheme case-insensitive, parameter names lower-cased', () => {
  assert.deepEqual(parseChallenges('BASIC Realm="x"'), [{ scheme: 'basic', params: { realm: 'x' } }]);
  assert.deepEqual(parseChallenges('bAsIc realm="Registry Realm"'), [{ scheme: 'basic', params: { realm: 'Registry Realm' } }]);
});

test('several challenges in one header', () => {
  const h = 'Basic realm="basic, realm", Bearer realm="https://t.example/token",service="svc", Negotiate';
  assert.deepEqual(parseChallenges(h), [
    { scheme: 'basic', params: { realm: 'basic, realm' } },
    { scheme: 'bearer', params: { realm: 'https://t.example/token', service: 'svc' } },
    { scheme: 'negotiate', params: {} },
  ]);
});

test('several header values', () => {
  const got = parseChallenges(['Basic realm="a"', 'Bearer realm="https://b/token"']);
  assert.deepEqual(
    got.map((c) => [c.scheme, c.params.realm]),
    [
      ['basic', 'a'],
      ['bearer', 'https://b/token'],
    ],
  );
});

test('escaped quotes and backslashes inside quoted strings', () => {
  const [c] = parseChallenges('Bearer realm="say \\"hi\\", ok",service="a\\\\b"');
  assert.equal(c?.params.realm, 'say "hi", ok');
  assert.equal(c?.params.service, 'a\\b');
});

test('unquoted token values, whitespace around "=", and empty challenges', () => {
  const [c] = parseChallenges('Bearer realm = https://t.example/token , service=svc,scope=repository:x:pull');
  assert.deepEqual(c?.params, { realm: 'https://t.example/token', service: 'svc', scope: 'repository:x:pull' });
  assert.deepEqual(parseChallenges('Bearer'), [{ scheme: 'bearer', params: {} }]);
  assert.deepEqual(parseChallenges(''), []);
  assert.deepEqual(parseChallenges(undefined), []);
});

test('token68 challenges are told apart from auth-params', () => {
  assert.deepEqual(parseChallenges('Negotiate YIIabc+/==, Basic realm="r"'), [
    { scheme: 'negotiate', params: {}, token68: 'YIIabc+/==' },
    { scheme: 'basic', params: { realm: 'r' } },
  ]);
});

test('junk is skipped without losing the challenges around it', () => {
  const got = parseChallenges('=oops, Bearer realm="https://t/token", "stray", service="s"');
  assert.equal(got[0]?.scheme, 'bearer');
  assert.equal(got[0]?.params.realm, 'https://t/token');
  assert.equal(got[0]?.params.service, 's');
});

test('first occurrence of a repeated parameter wins and __proto__ is an ordinary key', () => {
  const [c] = parseChallenges('Bearer realm="a", realm="b", __proto__="x"');
  assert.equal(c?.params.realm, 'a');
  assert.equal(Object.getPrototypeOf(c?.params), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(c?.params, '__proto__')?.value, 'x');
});

test('an unterminated quoted string runs to the end', () => {
  const [c] = parseChallenges('Bearer realm="https://t/token');
  assert.equal(c?.params.realm, 'https://t/token');
});
