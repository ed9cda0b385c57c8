import { test, describe, beforeEach, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir, homedir } from 'node:os';
import { delimiter, join } from 'node:path';
import { isLadingError } from '../../errors.js';
import {
  CredentialStore,
  DOCKER_HUB_SERVER,
  defaultConfigPath,
  serverAddressFor,
  staticCredentials,
} from './credentials.js';

const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');

let dir: string;
let savedEnv: NodeJS.ProcessEnv;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lading-creds-'));
  savedEnv = { ...process.env };
  delete process.env.LADING_REGISTRY_CONFIG;
  process.env.DOCKER_CONFIG = join(dir, 'docker');
});

afterEach(async () => {
  process.env = savedEnv;
  await rm(dir, { recursive: true, force: true });
});

async function writeConfig(config: unknown): Promise<string> {
  const path = join(dir, 'docker', 'config.json');
  await mkdir(join(dir, 'docker'), { recursive: true });
  await writeFile(path, JSON.stringify(config));
  return path;
}

async function readConfig(): Promise<Record<string, any>> {
  return JSON.parse(await readFile(join(dir, 'docker', 'config.json'), 'utf8'));
}

describe('config location', () => {
  test('LADING_REGISTRY_CONFIG, then DOCKER_CONFIG, then ~/.docker', () => {
    assert.equal(defaultConfigPath({ LADING_REGISTRY_CONFIG: '/x/c.json', DOCKER_CONFIG: '/d' }), '/x/c.json');
    assert.equal(defaultConfigPath({ DOCKER_CONFIG: '/d' }), join('/d', 'config.json'));
    assert.equal(defaultConfigPath({}), join(homedir(), '.docker', 'config.json'));
  });

  test('the store uses DOCKER_CONFIG, or an explicit path', async () => {
    assert.equal(new CredentialStore().path, join(dir, 'docker', 'config.json'));
    const other = join(dir, 'elsewhere.json');
    await writeFile(other, JSON.stringify({ auths: { 'r.example': { auth: b64('u:p') } } }));
    const store = new CredentialStore({ configPath: other });
    assert.deepEqual(await store.get('r.example'), { username: 'u', password: 'p' });
    process.env.LADING_REGISTRY_CONFIG = other;
    assert.equal(new CredentialStore().path, other);
  });
});

describe('reading auths', () => {
  test('base64 auth, with a colon inside the password', async () => {
    await writeConfig({ auths: { 'r.example': { auth: b64('alice:pa:ss') } } });
    assert.deepEqual(await new CredentialStore().get('r.example'), { username: 'alice', password: 'pa:ss' });
  });

  test('username/password fields, identitytoken and registrytoken', async () => {
    await writeConfig({
      auths: {
        'a.example': { username: 'bob', password: 'pw' },
        'b.example': { auth: b64('bob:'), identitytoken: 'refresh-me' },
        'c.example': { registrytoken: 'direct' },
        'd.example': {},
      },
    });
    const store = new CredentialStore();
    assert.deepEqual(await store.get('a.example'), { username: 'bob', password: 'pw' });
    assert.deepEqual(await store.get('b.example'), { username: 'bob', password: '', identityToken: 'refresh-me' });
    assert.deepEqual(await store.get('c.example'), { registryToken: 'direct' });
    assert.equal(await store.get('d.example'), undefined);
    assert.equal(await store.get('nowhere.example'), undefined);
  });

  test('no config file means no credentials', async () => {
    assert.equal(await new CredentialStore().get('r.example'), undefined);
  });

  test('Docker Hub aliases all use the index.docker.io key', async () => {
    await writeConfig({ auths: { [DOCKER_HUB_SERVER]: { auth: b64('hub:pw') } } });
    const store = new CredentialStore();
    for (const name of ['docker.io', 'index.docker.io', 'registry-1.docker.io', 'DOCKER.IO']) {
      assert.deepEqual(await store.get(name), { username: 'hub', password: 'pw' }, name);
    }
    assert.equal(serverAddressFor('registry-1.docker.io'), DOCKER_HUB_SERVER);
  });

  test('keys with scheme and path match the bare host; the exact key wins', async () => {
    await writeConfig({
      auths: {
        'https://legacy.example/v1/': { auth: b64('old:1') },
        'http://plain.example:5000': { auth: b64('plain:2') },
        'https://both.example': { auth: b64('prefixed:3') },
        'both.example': { auth: b64('exact:4') },
      },
    });
    const store = new CredentialStore();
    assert.deepEqual(await store.get('legacy.example'), { username: 'old', password: '1' });
    assert.deepEqual(await store.get('plain.example:5000'), { username: 'plain', password: '2' });
    assert.deepEqual(await store.get('both.example'), { username: 'exact', password: '4' });
    assert.equal(await store.get('plain.example'), undefined);
  });

  test('a malformed config or entry is E_CREDENTIALS without quoting the file', async () => {
    await writeConfig({});
    await writeFile(join(dir, 'docker', 'config.json'), '{"auths": {"r": {"auth": "c2VjcmV0LXZhbHVl" oops');
    await assert.rejects(new CredentialStore().get('r'), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_CREDENTIALS'));
      assert.ok(!JSON.stringify(err.toJSON()).includes('c2VjcmV0'));
      assert.equal(err.cause, undefined);
      return true;
    });
    await writeConfig({ auths: { r: { auth: b64('no-colon-secret') } } });
    await assert.rejects(new CredentialStore().get('r'), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_CREDENTIALS'));
      assert.ok(!JSON.stringify(err.toJSON()).includes('no-colon-secret'));
      return true;
    });
  });
});

describe('writing auths', () => {
  test('creates the config (dir 0700, file 0600) and reads back', { skip: process.platform === 'win32' }, async () => {
    const store = new CredentialStore();
    await store.store('r.example', { username: 'u', password: 'p@ss' });
    const st = await stat(store.path);
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal((await stat(join(dir, 'docker'))).mode & 0o777, 0o700);
    assert.deepEqual(await readConfig(), { auths: { 'r.example': { auth: b64('u:p@ss') } } });
    assert.deepEqual(await store.get('r.example'), { username: 'u', password: 'p@ss' });
  });

  test('store keeps every other field and replaces stale tokens of that entry', async () => {
    await writeConfig({
      auths: {
        'other.example': { auth: b64('x:y') },
        'r.example': { auth: b64('old:old'), identitytoken: 'stale', email: 'me@example.com' },
      },
      psFormat: 'table {{.ID}}',
      proxies: { default: { httpProxy: 'http://proxy:3128' } },
      currentContext: 'desktop',
    });
    await chmod(join(dir, 'docker', 'config.json'), 0o644);
    const store = new CredentialStore();
    await store.store('r.example', { username: 'new', password: 'new-pw' });
    const cfg = await readConfig();
    assert.deepEqual(cfg, {
      auths: {
        'other.example': { auth: b64('x:y') },
        'r.example': { auth: b64('new:new-pw'), email: 'me@example.com' },
      },
      psFormat: 'table {{.ID}}',
      proxies: { default: { httpProxy: 'http://proxy:3128' } },
      currentContext: 'desktop',
    });
    assert.equal((await stat(store.path)).mode & 0o777, 0o600);
  });

  test('Docker Hub is stored under https://index.docker.io/v1/', async () => {
    await new CredentialStore().store('docker.io', { username: 'hub', password: 'pw' });
    assert.deepEqual(Object.keys((await readConfig()).auths), [DOCKER_HUB_SERVER]);
  });

  test('a symlinked config.json is written through', async () => {
    const real = join(dir, 'real-config.json');
    await writeFile(real, JSON.stringify({ keep: true }));
    await mkdir(join(dir, 'docker'), { recursive: true });
    await symlink(real, join(dir, 'docker', 'config.json'));
    await new CredentialStore().store('r.example', { username: 'u', password: 'p' });
    const cfg = JSON.parse(await readFile(real, 'utf8'));
    assert.equal(cfg.keep, true);
    assert.deepEqual(cfg.auths['r.example'], { auth: b64('u:p') });
  });

  test('erase removes every key naming the host and reports whether there was a login', async () => {
    await writeConfig({
      auths: {
        'https://r.example/v1/': { auth: b64('a:b') },
        'r.example': { auth: b64('c:d') },
        'keep.example': { auth: b64('e:f') },
      },
      other: 1,
    });
    const store = new CredentialStore();
    assert.equal(await store.erase('r.example'), true);
    assert.deepEqual(await readConfig(), { auths: { 'keep.example': { auth: b64('e:f') } }, other: 1 });
    assert.equal(await store.get('r.example'), undefined);
    assert.equal(await store.erase('r.example'), false);
  });

  test('erase without a config file does not create one', async () => {
    const store = new CredentialStore();
    assert.equal(await store.erase('r.example'), false);
    await assert.rejects(stat(store.path), { code: 'ENOENT' });
  });

  test('concurrent stores all survive', async () => {
    await writeConfig({ keep: 'me' });
    const hosts = Array.from({ length: 12 }, (_, i) => `r${i}.example`);
    // Separate instances, as separate `lading login` runs would be.
    await Promise.all(hosts.map((h) => new CredentialStore().store(h, { username: h, password: `pw-${h}` })));
    const cfg = await readConfig();
    assert.equal(cfg.keep, 'me');
    assert.deepEqual(Object.keys(cfg.auths).sort(), [...hosts].sort());
    for (const h of hosts) assert.deepEqual(await new CredentialStore().get(h), { username: h, password: `pw-${h}` });
    await assert.rejects(stat(`${join(dir, 'docker', 'config.json')}.lock`), { code: 'ENOENT' });
  });

  test('a stale lock left by a crashed writer is taken over', async () => {
    const path = await writeConfig({});
    await writeFile(`${path}.lock`, '99999');
    const old = new Date(Date.now() - 120_000);
    const { utimes } = await import('node:fs/promises');
    await utimes(`${path}.lock`, old, old);
    await new CredentialStore().store('r.example', { username: 'u', password: 'p' });
    assert.ok((await readConfig()).auths['r.example']);
  });
});

// The helper scripts rely on a shebang and the executable bit.
describe('credential helpers', { skip: process.platform === 'win32' }, () => {
  const HELPER = `#!/usr/bin/env node
const fs = require('fs');
const db = process.env.LADINGTEST_HELPER_DB;
const action = process.argv[2];
let input = '';
process.stdin.on('data', (d) => (input += d));
process.stdin.on('end', () => {
  const store = fs.existsSync(db) ? JSON.parse(fs.readFileSync(db, 'utf8')) : {};
  const save = () => fs.writeFileSync(db, JSON.stringify(store));
  if (action === 'get') {
    const server = input.trim();
    fs.appendFileSync(db + '.log', 'get ' + server + '\\n');
    if (server === 'fail.example') { process.stdout.write('boom: leaked-secret-xyz'); process.stderr.write('leaked-secret-xyz'); process.exit(3); }
    if (server === 'garbage.example') { process.stdout.write('{"Secret": "garbage-secret'); process.exit(0); }
    const e = store[server];
    if (!e) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
    process.stdout.write(JSON.stringify({ ServerURL: server, Username: e.Username, Secret: e.Secret }));
  } else if (action === 'store') {
    const req = JSON.parse(input);
    fs.appendFileSync(db + '.log', 'store ' + req.ServerURL + '\\n');
    if (req.ServerURL === 'fail.example') { process.stdout.write('cannot store ' + req.Secret); process.exit(4); }
    store[req.ServerURL] = { Username: req.Username, Secret: req.Secret };
    save();
  } else if (action === 'erase') {
    const server = input.trim();
    fs.appendFileSync(db + '.log', 'erase ' + server + '\\n');
    if (!store[server]) { process.stdout.write('credentials not found in native keychain\\n'); process.exit(1); }
    delete store[server];
    save();
  } else {
    process.exit(2);
  }
});
`;
  const SLOW = `#!/usr/bin/env node
setInterval(() => {}, 1000);
`;

  let db: string;
  beforeEach(async () => {
    const bin = join(dir, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'docker-credential-ladingtest'), HELPER, { mode: 0o755 });
    await writeFile(join(bin, 'docker-credential-ladingslow'), SLOW, { mode: 0o755 });
    process.env.PATH = `${bin}${delimiter}${process.env.PATH ?? ''}`;
    db = join(dir, 'helper-db.json');
    process.env.LADINGTEST_HELPER_DB = db;
  });

  const helperDb = async (): Promise<Record<string, { Username: string; Secret: string }>> =>
    JSON.parse(await readFile(db, 'utf8'));
  const helperLog = async (): Promise<string[]> =>
    (await readFile(`${db}.log`, 'utf8')).trim().split('\n');

  test('credsStore: store, get, erase go through the helper; config keeps only an empty entry', async () => {
    await writeConfig({ credsStore: 'ladingtest', auths: { 'r.example': { auth: b64('plain:text') } }, x: 1 });
    const store = new CredentialStore();
    await store.store('r.example', { username: 'u', password: 'helper-pw' });
    assert.deepEqual(await helperDb(), { 'r.example': { Username: 'u', Secret: 'helper-pw' } });
    const cfg = await readConfig();
    assert.deepEqual(cfg, { credsStore: 'ladingtest', auths: { 'r.example': {} }, x: 1 });
    assert.ok(!JSON.stringify(cfg).includes('helper-pw'));

    assert.deepEqual(await store.get('r.example'), { username: 'u', password: 'helper-pw' });
    assert.equal(await store.get('unknown.example'), undefined);

    assert.equal(await store.erase('r.example'), true);
    assert.deepEqual(await helperDb(), {});
    assert.deepEqual(await readConfig(), { credsStore: 'ladingtest', auths: {}, x: 1 });
    assert.equal(await store.erase('r.example'), false);
    assert.deepEqual(await helperLog(), [
      'store r.example',
      'get r.example',
      'get unknown.example',
      'erase r.example',
      'erase r.example',
    ]);
  });

  test('credHelpers for the host win over credsStore and over auths', async () => {
    await writeFile(db, JSON.stringify({ [DOCKER_HUB_SERVER]: { Username: '<token>', Secret: 'identity-tok' } }));
    await writeConfig({
      credsStore: 'does-not-exist',
      credHelpers: { [DOCKER_HUB_SERVER]: 'ladingtest', 'r.example': 'ladingtest' },
      auths: { 'r.example': { auth: b64('ignored:ignored') } },
    });
    const store = new CredentialStore();
    // Username "<token>" marks the secret as an identity token.
    assert.deepEqual(await store.get('registry-1.docker.io'), { identityToken: 'identity-tok' });
    assert.equal(await store.get('r.example'), undefined);
    assert.deepEqual(await helperLog(), [`get ${DOCKER_HUB_SERVER}`, 'get r.example']);
    // Hosts without a credHelpers entry fall to credsStore.
    await assert.rejects(store.get('other.example'), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_CREDENTIALS'));
      assert.match(err.message, /docker-credential-does-not-exist was not found on PATH/);
      return true;
    });
  });

  test('credHelpers keys match with scheme and path stripped', async () => {
    await writeFile(db, JSON.stringify({ 'r.example:5000': { Username: 'u', Secret: 's' } }));
    await writeConfig({ credHelpers: { 'https://r.example:5000/v2/': 'ladingtest' } });
    assert.deepEqual(await new CredentialStore().get('r.example:5000'), { username: 'u', password: 's' });
  });

  test('helper failures report the exit code, never the helper output', async () => {
    await writeConfig({ credsStore: 'ladingtest' });
    const store = new CredentialStore();
    for (const op of [
      () => store.get('fail.example'),
      () => store.store('fail.example', { username: 'u', password: 'leaked-secret-xyz' }),
      () => store.get('garbage.example'),
    ]) {
      await assert.rejects(op(), (err: unknown) => {
        assert.ok(isLadingError(err, 'E_CREDENTIALS'));
        const text = `${err.message} ${err.hint ?? ''} ${JSON.stringify(err.toJSON())} ${String(err.cause ?? '')}`;
        assert.ok(!text.includes('leaked-secret-xyz'), text);
        assert.ok(!text.includes('garbage-secret'), text);
        return true;
      });
    }
    await assert.rejects(store.get('fail.example'), /exit code 3/);
  });

  test('a helper that hangs is killed after the timeout', async () => {
    await writeConfig({ credsStore: 'ladingslow' });
    await assert.rejects(new CredentialStore({ helperTimeoutMs: 300 }).get('r.example'), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_CREDENTIALS'));
      assert.match(err.message, /did not answer within 300 ms/);
      return true;
    });
  });

  test('helper names that look like paths are refused', async () => {
    await writeConfig({ credsStore: '../../bin/sh' });
    await assert.rejects(new CredentialStore().get('r.example'), (err: unknown) => isLadingError(err, 'E_CREDENTIALS'));
  });
});

test('staticCredentials matches hosts the way the config does', async () => {
  const provider = staticCredentials({
    'docker.io': { username: 'hub', password: 'pw' },
    'https://r.example:5000/': { registryToken: 't' },
  });
  assert.deepEqual(await provider('registry-1.docker.io'), { username: 'hub', password: 'pw' });
  assert.deepEqual(await provider('R.example:5000'), { registryToken: 't' });
  assert.equal(await provider('r.example'), undefined);
});
