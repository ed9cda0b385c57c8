import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CATALOG_SCOPE, covers, mergeScopes, parseScope, scopeFor } from './scope.js';

test('scopeFor sorts and de-duplicates actions', () => {
  assert.equal(scopeFor('library/ubuntu', 'pull'), 'repository:library/ubuntu:pull');
  assert.equal(scopeFor('a/b', ['push', 'pull', 'push']), 'repository:a/b:pull,push');
  assert.equal(scopeFor('a', ['pull', '*']), 'repository:a:*');
});

test('parseScope splits on the first and last colon', () => {
  assert.deepEqual(parseScope('repository:a/b:pull,push'), { type: 'repository', name: 'a/b', actions: ['pull', 'push'] });
  assert.deepEqual(parseScope(CATALOG_SCOPE), { type: 'registry', name: 'catalog', actions: ['*'] });
  assert.deepEqual(parseScope('repository(plugin):host:5000/x:pull'), {
    type: 'repository(plugin)',
    name: 'host:5000/x',
    actions: ['pull'],
  });
  assert.equal(parseScope('nonsense'), undefined);
  assert.equal(parseScope('repository:a:'), undefined);
  assert.equal(parseScope(':a:pull'), undefined);
});

test('mergeScopes unions actions per resource and sorts', () => {
  assert.deepEqual(
    mergeScopes('repository:b:pull', ['repository:a:push', 'repository:b:push'], 'repository:a:pull', undefined),
    ['repository:a:pull,push', 'repository:b:pull,push'],
  );
  assert.deepEqual(mergeScopes('repository:a:pull repository:c:delete', 'registry:catalog:*'), [
    'registry:catalog:*',
    'repository:a:pull',
    'repository:c:delete',
  ]);
  assert.deepEqual(mergeScopes('repository:a:pull', 'repository:a:*'), ['repository:a:*']);
  assert.deepEqual(mergeScopes('opaque', 'opaque', ''), ['opaque']);
  assert.deepEqual(mergeScopes(), []);
});

test('covers', () => {
  assert.ok(covers(['repository:a:pull,push'], ['repository:a:pull']));
  assert.ok(covers(['repository:a:pull', 'repository:b:pull'], ['repository:b:pull']));
  assert.ok(covers(['repository:a:*'], ['repository:a:delete,pull']));
  assert.ok(covers(['repository:a:pull'], []));
  assert.ok(!covers(['repository:a:pull'], ['repository:a:push']));
  assert.ok(!covers(['repository:a:pull'], ['repository:b:pull']));
  assert.ok(!covers([], ['repository:a:pull']));
  assert.ok(covers(['registry:catalog:*'], [CATALOG_SCOPE]));
  assert.ok(covers(['custom-scope'], ['custom-scope']));
  assert.ok(!covers(['repository:a:pull'], ['custom-scope']));
});
