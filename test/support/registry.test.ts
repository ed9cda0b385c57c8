import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { requirePeer } from './peers.js';
import { startDockerRegistry } from './registry.js';

test('startDockerRegistry serves /v2/ on a loopback port and stop() removes it', async (t) => {
  if (!requirePeer(t, 'docker-registry')) return;
  const reg = await startDockerRegistry();
  t.after(() => reg.stop());
  assert.match(reg.host, /^127\.0\.0\.1:\d+$/);
  assert.equal(reg.url, `http://${reg.host}`);
  const res = await fetch(`${reg.url}/v2/`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  await reg.stop();
  assert.equal(existsSync(reg.root), false);
  await assert.rejects(fetch(`${reg.url}/v2/`));
});

test('two registries run side by side on different ports', async (t) => {
  if (!requirePeer(t, 'docker-registry')) return;
  const [a, b] = await Promise.all([startDockerRegistry(), startDockerRegistry()]);
  t.after(() => Promise.all([a.stop(), b.stop()]).then(() => undefined));
  assert.notEqual(a.host, b.host);
  assert.equal((await fetch(`${a.url}/v2/`)).status, 200);
  assert.equal((await fetch(`${b.url}/v2/`)).status, 200);
});

test('with htpasswd the registry wants basic auth', async (t) => {
  if (!requirePeer(t, 'docker-registry') || !requirePeer(t, 'htpasswd')) return;
  const user = 'tester';
  const password = 'secret-pass';
  const reg = await startDockerRegistry({ htpasswd: { user, password } });
  t.after(() => reg.stop());
  const anonymous = await fetch(`${reg.url}/v2/`);
  assert.equal(anonymous.status, 401);
  assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Basic /i);
  const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
  assert.equal((await fetch(`${reg.url}/v2/`, { headers: basic(user, password) })).status, 200);
  assert.equal((await fetch(`${reg.url}/v2/`, { headers: basic(user, 'wrong') })).status, 401);
});
