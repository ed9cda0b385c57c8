import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { startRegistry } from '../src/server/serve.js';
import { clientSuite } from './client-suite.js';
import { startServeChild } from './support/child-process.js';

clientSuite({
  name: 'lading serve',
  available: () => true,
  start: async (opts) => {
    const root = await mkdtemp(join(tmpdir(), 'lading-serve-'));
    let htpasswd: string | undefined;
    if (opts?.htpasswd) {
      htpasswd = join(root, 'htpasswd');
      // `htpasswd -B` writes $2y$; bcryptjs writes $2b$ — the same algorithm, so the file looks like the real thing.
      const hash = bcrypt.hashSync(opts.htpasswd.password, 5).replace(/^\$2b\$/, '$2y$');
      await writeFile(htpasswd, `${opts.htpasswd.user}:${hash}\n`, { mode: 0o600 });
    }
    const reg = await startRegistry({ root: join(root, 'data'), htpasswd });
    return {
      host: reg.host,
      stop: async () => {
        await reg.close();
        await rm(root, { recursive: true, force: true });
      },
    };
  },
  referrersApi: true,
});

test('lading serve prints where it listens, serves, and exits 0 on SIGTERM', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-serve-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const info = await startServeChild(join(dir, 'data'), ['--log-level', 'info']);
  assert.match(info.host, /^127\.0\.0\.1:\d+$/);
  const res = await fetch(`${info.url}/v2/`);
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), {});
  info.proc.kill('SIGTERM');
  assert.equal((await info.exited).code, 0, info.stderr());
  // Logs are JSON lines on stderr, the request among them.
  assert.match(info.stderr(), /"url":"\/v2\/"/);
});
