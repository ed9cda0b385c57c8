import { test } from 'node:test';
import assert from 'node:assert/strict';
import { matchRoute } from './routes.js';

test('paths map to endpoints, with slashes kept in repository names', () => {
  assert.deepEqual(matchRoute('/v2/'), { kind: 'base' });
  assert.deepEqual(matchRoute('/v2'), { kind: 'base' });
  assert.deepEqual(matchRoute('/v2/_catalog'), { kind: 'catalog' });
  assert.deepEqual(matchRoute('/v2/a/b/c/tags/list'), { kind: 'tags', name: 'a/b/c' });
  assert.deepEqual(matchRoute('/v2/a/b/manifests/v1'), { kind: 'manifest', name: 'a/b', reference: 'v1' });
  assert.deepEqual(matchRoute('/v2/a/blobs/uploads/'), { kind: 'uploads', name: 'a' });
  assert.deepEqual(matchRoute('/v2/a/blobs/uploads'), { kind: 'uploads', name: 'a' });
  assert.deepEqual(matchRoute('/v2/a/blobs/uploads/abc-123'), { kind: 'upload', name: 'a', id: 'abc-123' });
  assert.deepEqual(matchRoute('/v2/a/blobs/sha256:00'), { kind: 'blob', name: 'a', digest: 'sha256:00' });
  assert.deepEqual(matchRoute('/v2/x/referrers/sha256:00'), { kind: 'referrers', name: 'x', digest: 'sha256:00' });
  // A repository may itself be called "blobs" or "manifests".
  assert.deepEqual(matchRoute('/v2/blobs/manifests/latest'), { kind: 'manifest', name: 'blobs', reference: 'latest' });
});

test('paths that name nothing, or smuggle separators, match no route', () => {
  assert.equal(matchRoute('/'), undefined);
  assert.equal(matchRoute('/v2/a'), undefined);
  assert.equal(matchRoute('/v2/a/manifests/'), undefined);
  assert.equal(matchRoute('/v2/a%2Fb/manifests/v1'), undefined);
  assert.equal(matchRoute('/v2/a/manifests/v1%00'), undefined);
  assert.equal(matchRoute('/v2/a/manifests/%E0%A4%A'), undefined);
});
