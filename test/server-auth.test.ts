import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import bcrypt from 'bcryptjs';
import { pino } from 'pino';
import { isLadingError } from '../src/errors.js';
import { buildImageManifest } from '../src/oci/manifest.js';
import { digestOf } from '../src/oci/digest.js';
import { EmptyJSON, MediaType } from '../src/oci/mediatype.js';
import type { Descriptor } from '../src/oci/descriptor.js';
import { Authorizer } from '../src/remote/auth/authorizer.js';
import { staticCredentials } from '../src/remote/auth/credentials.js';
import { undiciHttpDo } from '../src/remote/auth/http.js';
import { Registry } from '../src/remote/registry.js';
import { Repository } from '../src/remote/repository.js';
import { Transport } from '../src/remote/transport.js';
import { startRegistry, type RunningRegistry } from '../src/server/serve.js';
import { parseTokenAuthConfig, TokenAuthenticator } from '../src/server/token-auth.js';
import { lading } from './support/cli.js';
import { startServeChild } from './support/child-process.js';

const ALICE = { user: 'alice', password: `alice-${randomBytes(8).toString('hex')}` };
const BOB = { user: 'bob', password: `bob-${randomBytes(8).toString('hex')}` };

async function expectCode(p: Promise<unknown>, code: string, re?: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isLadingError(err), `expected a LadingError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (re) assert.match(err.message, re);
    return true;
  });
}

function client(host: string, who?: { user: string; password: string }): Transport {
  const authorizer = new Authorizer({
    credentials: staticCredentials(who ? { [host]: { username: who.user, password: who.password } } : {}),
    http: undiciHttpDo(),
  });
  return new Transport({ authorizer, retry: { baseDelayMs: 5, maxDelayMs: 50 } });
}

async function pushImage(repo: Repository, payload: string, tag: string): Promise<{ manifest: Descriptor; layer: Descriptor }> {
  const data = Buffer.from(payload);
  const layer: Descriptor = { mediaType: MediaType.OctetStream, digest: digestOf(data), size: data.length };
  await repo.push(layer, Readable.from([data]));
  const config: Descriptor = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };
  await repo.push(config, Readable.from([Buffer.from('{}')]));
  const built = buildImageManifest({ config, artifactType: 'application/vnd.example.test', layers: [layer] });
  await repo.push(built.descriptor, Readable.from([built.bytes]));
  await repo.tag(built.descriptor, tag);
  return { manifest: built.descriptor, layer };
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** A response body as JSON, typed loosely for assertions. */
async function json(res: Response): Promise<any> {
  return res.json();
}

function basic(who: { user: string; password: string }): string {
  return `Basic ${Buffer.from(`${who.user}:${who.password}`).toString('base64')}`;
}

describe('token auth (lading serve with an auth config)', () => {
  let dir: string;
  let reg: RunningRegistry;
  let clock = Date.now();
  const logLines: string[] = [];
  const tokensSeen: string[] = [];
  const hashes: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-auth-'));
    const logger = pino(
      { level: 'debug' },
      new Writable({
        write(chunk: Buffer, _enc, done) {
          logLines.push(chunk.toString('utf8'));
          done();
        },
      }),
    );
    const users: Record<string, string> = {};
    for (const u of [ALICE, BOB]) {
      users[u.user] = bcrypt.hashSync(u.password, 4);
      hashes.push(users[u.user]!);
    }
    const config = await parseTokenAuthConfig({
      service: 'lading-test',
      issuer: 'lading-test-issuer',
      users,
      rules: [
        { repository: ['team/*', 'public/*', 'alice/*'], users: ['alice'], actions: ['pull', 'push', 'delete'] },
        { repository: 'team/*', users: ['bob'], actions: ['pull'] },
        { repository: 'bob/*', users: ['bob'], actions: ['*'] },
        { repository: 'public/*', anonymous: true, actions: ['pull'] },
      ],
      catalog: { users: ['alice'] },
    });
    const auth = new TokenAuthenticator(config, { now: () => clock, logger });
    reg = await startRegistry({ root: join(dir, 'data'), auth, logger });
  });
  after(async () => {
    await reg?.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function token(who: { user: string; password: string } | undefined, ...scopes: string[]): Promise<{ status: number; body: any }> {
    const url = new URL(`${reg.url}/token`);
    url.searchParams.set('service', 'lading-test');
    for (const s of scopes) url.searchParams.append('scope', s);
    const res = await fetch(url, { headers: who ? { authorization: basic(who) } : {} });
    const body = await json(res);
    if (typeof body.token === 'string') tokensSeen.push(body.token);
    return { status: res.status, body };
  }
  const claimsOf = (t: string): any => JSON.parse(Buffer.from(t.split('.')[1]!, 'base64url').toString('utf8'));
  const get = (path: string, bearer?: string): Promise<Response> => fetch(`${reg.url}${path}`, { headers: bearer ? { authorization: `Bearer ${bearer}` } : {} });

  test('/v2/ and every repository endpoint challenge with Bearer realm/service/scope; /healthz stays open', async () => {
    assert.equal((await get('/healthz')).status, 200);
    const base = await get('/v2/');
    assert.equal(base.status, 401);
    assert.equal(base.headers.get('www-authenticate'), `Bearer realm="${reg.url}/token",service="lading-test"`);
    assert.equal(base.headers.get('docker-distribution-api-version'), 'registry/2.0');
    const tags = await get('/v2/team/app/tags/list');
    assert.equal(tags.status, 401);
    assert.equal(tags.headers.get('www-authenticate'), `Bearer realm="${reg.url}/token",service="lading-test",scope="repository:team/app:pull"`);
    assert.equal((await json(tags)).errors[0].code, 'UNAUTHORIZED');
    const cat = await get('/v2/_catalog');
    assert.match(cat.headers.get('www-authenticate') ?? '', /scope="registry:catalog:\*"/);
    // Basic credentials sent straight to the registry are no token.
    const viaBasic = await fetch(`${reg.url}/v2/`, { headers: { authorization: basic(ALICE) } });
    assert.equal(viaBasic.status, 401);
  });

  test('the token endpoint grants the intersection of what is asked and what the rules give', async () => {
    const a = await token(ALICE, 'repository:team/app:pull,push', 'repository:elsewhere:pull', 'registry:catalog:*');
    assert.equal(a.status, 200);
    assert.equal(a.body.token, a.body.access_token);
    assert.equal(a.body.expires_in, 300);
    assert.ok(Math.abs(Date.parse(a.body.issued_at) - clock) < 2000);
    const ca = claimsOf(a.body.token);
    assert.equal(ca.sub, 'alice');
    assert.equal(ca.aud, 'lading-test');
    assert.equal(ca.iss, 'lading-test-issuer');
    assert.equal(ca.exp - ca.iat, 300);
    assert.deepEqual(ca.access, [
      { type: 'repository', name: 'team/app', actions: ['pull', 'push'] },
      { type: 'registry', name: 'catalog', actions: ['*'] },
    ]);
    const b = await token(BOB, 'repository:team/app:pull,push,delete', 'registry:catalog:*');
    assert.equal(b.status, 200, 'fewer rights than asked is no error');
    assert.deepEqual(claimsOf(b.body.token).access, [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    const anon = await token(undefined, 'repository:public/x:pull,push', 'repository:team/app:pull');
    assert.equal(anon.status, 200);
    assert.equal(claimsOf(anon.body.token).sub, '');
    assert.deepEqual(claimsOf(anon.body.token).access, [{ type: 'repository', name: 'public/x', actions: ['pull'] }]);
    const other = await fetch(`${reg.url}/token?service=someone-else&scope=repository:team/app:pull`);
    assert.equal(other.status, 400);
  });

  test('a wrong password gets 401 from the token endpoint (GET and the OAuth2 password grant)', async () => {
    const wrong = await token({ user: 'alice', password: 'not-it' }, 'repository:team/app:pull');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.errors[0].code, 'UNAUTHORIZED');
    const unknown = await token({ user: 'mallory', password: 'x' }, 'repository:team/app:pull');
    assert.equal(unknown.status, 401);
    const form = (password: string) => new URLSearchParams({ grant_type: 'password', username: 'alice', password, service: 'lading-test', scope: 'repository:team/app:pull', client_id: 'test' });
    const bad = await fetch(`${reg.url}/token`, { method: 'POST', body: form('nope') });
    assert.equal(bad.status, 401);
    assert.equal((await json(bad)).error, 'invalid_grant');
    const good = await fetch(`${reg.url}/token`, { method: 'POST', body: form(ALICE.password) });
    assert.equal(good.status, 200);
    const body = await json(good);
    tokensSeen.push(body.access_token);
    assert.deepEqual(claimsOf(body.access_token).access, [{ type: 'repository', name: 'team/app', actions: ['pull'] }]);
    const refresh = await fetch(`${reg.url}/token`, { method: 'POST', body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'x' }) });
    assert.equal(refresh.status, 400);
  });

  test('the real client logs in and pushes and pulls through the bearer flow; catalog for whom it is granted', async () => {
    const transport = client(reg.host, ALICE);
    const repo = new Repository(`${reg.host}/team/app`, { transport });
    const { manifest, layer } = await pushImage(repo, 'team payload', 'v1');
    assert.deepEqual((await repo.resolve('v1')).digest, manifest.digest);
    assert.equal(await readAll(await repo.fetch(layer)), 'team payload');
    await new Registry(reg.host, { transport }).ping();
    const names: string[] = [];
    for await (const n of new Registry(reg.host, { transport }).catalog()) names.push(n);
    assert.deepEqual(names, ['team/app']);
    const bobCatalog = async () => {
      for await (const _ of new Registry(reg.host, { transport: client(reg.host, BOB) }).catalog()) void _;
    };
    await expectCode(bobCatalog(), 'E_DENIED');
  });

  test('anonymous pull where configured; anonymous push and private pull are refused', async () => {
    await pushImage(new Repository(`${reg.host}/public/tool`, { transport: client(reg.host, ALICE) }), 'public payload', 'latest');
    const anon = client(reg.host);
    const pub = new Repository(`${reg.host}/public/tool`, { transport: anon });
    const desc = await pub.resolve('latest');
    assert.match(desc.digest, /^sha256:/);
    await expectCode(pushImage(pub, 'anonymous payload', 'evil'), 'E_UNAUTHORIZED');
    await expectCode(new Repository(`${reg.host}/team/app`, { transport: anon }).resolve('v1'), 'E_UNAUTHORIZED');
  });

  test('a pull-only user reads team/* but pushing there is denied (E_DENIED); bob can push to bob/*', async () => {
    const transport = client(reg.host, BOB);
    const repo = new Repository(`${reg.host}/team/app`, { transport });
    await repo.resolve('v1');
    await expectCode(pushImage(repo, 'bob payload', 'bob'), 'E_DENIED', /bob may not/);
    await expectCode(repo.delete(await repo.resolve('v1')), 'E_DENIED');
    await pushImage(new Repository(`${reg.host}/bob/own`, { transport }), 'own payload', 'v1');
  });

  test('a mount from a repository the user may not read falls back to an upload', async () => {
    const secret = Buffer.from(`alice secret ${randomBytes(4).toString('hex')}`);
    const desc: Descriptor = { mediaType: MediaType.OctetStream, digest: digestOf(secret), size: secret.length };
    await new Repository(`${reg.host}/alice/private`, { transport: client(reg.host, ALICE) }).push(desc, Readable.from([secret]));
    const bobRepo = new Repository(`${reg.host}/bob/own`, { transport: client(reg.host, BOB) });
    assert.equal(await bobRepo.mount(desc, 'alice/private'), false, 'not mounted');
    assert.equal(await bobRepo.exists(desc), false, 'and not readable through bob/own');
  });

  test('a token for one repository does not open another', async () => {
    const t = (await token(ALICE, 'repository:team/app:pull')).body.token as string;
    assert.equal((await get('/v2/team/app/tags/list', t)).status, 200);
    const other = await get('/v2/team/other/tags/list', t);
    assert.equal(other.status, 401, 'alice may read team/other, so a fresh token would help: challenged again');
    assert.match(other.headers.get('www-authenticate') ?? '', /error="insufficient_scope"/);
    assert.match(other.headers.get('www-authenticate') ?? '', /scope="repository:team\/other:pull"/);
    const push = await fetch(`${reg.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${t}` } });
    assert.equal(push.status, 401, 'a pull token does not push');
    const bobs = (await token(BOB, 'repository:team/app:pull')).body.token as string;
    const denied = await fetch(`${reg.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${bobs}` } });
    assert.equal(denied.status, 403, 'bob will never be granted push there: denied, not challenged');
    assert.equal((await json(denied)).errors[0].code, 'DENIED');
  });

  test('an expired token is refused, and the client recovers by fetching a fresh one', async () => {
    const transport = client(reg.host, ALICE);
    const repo = new Repository(`${reg.host}/team/app`, { transport });
    await repo.resolve('v1');
    const t = (await token(ALICE, 'repository:team/app:pull')).body.token as string;
    clock += 301_000;
    try {
      const res = await get('/v2/team/app/tags/list', t);
      assert.equal(res.status, 401);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
      assert.match((await json(res)).errors[0].message, /expired/);
      // The client's cached token died with the clock move: one 401, a new token, and on.
      await repo.resolve('v1');
    } finally {
      clock -= 301_000;
    }
  });

  test('tampered tokens are refused: widened claims, alg none, a key of another server', async () => {
    const t = (await token(BOB, 'repository:team/app:pull')).body.token as string;
    const [h, p, s] = t.split('.') as [string, string, string];
    const claims = claimsOf(t);
    const widened = Buffer.from(JSON.stringify({ ...claims, access: [{ type: 'repository', name: 'team/app', actions: ['pull', 'push'] }] })).toString('base64url');
    const none = Buffer.from(JSON.stringify({ typ: 'JWT', alg: 'none' })).toString('base64url');
    const otherServer = new TokenAuthenticator(await parseTokenAuthConfig({ service: 'lading-test', issuer: 'lading-test-issuer', users: {}, rules: [{ repository: '*', anonymous: true, actions: ['*'] }] }));
    const forged = await (async () => {
      const other = await startRegistry({ root: join(dir, 'other'), auth: otherServer });
      try {
        const res = await fetch(`${other.url}/token?service=lading-test&scope=repository:team/app:pull,push`);
        return (await json(res)).token as string;
      } finally {
        await other.close();
      }
    })();
    tokensSeen.push(forged);
    for (const bad of [`${h}.${widened}.${s}`, `${none}.${widened}.`, `${none}.${p}.${s}`, forged, `${t}x`, 'garbage']) {
      const res = await fetch(`${reg.url}/v2/team/app/blobs/uploads/`, { method: 'POST', headers: { authorization: `Bearer ${bad}` } });
      assert.equal(res.status, 401, bad);
      assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    }
  });

  test('no password, hash, Authorization header or token appears in any log line', () => {
    const log = logLines.join('');
    assert.ok(logLines.length > 10, 'requests and token issues were logged');
    assert.match(log, /token issued/);
    for (const secret of [ALICE.password, BOB.password, ...hashes, ...tokensSeen]) {
      assert.ok(!log.includes(secret), 'a secret reached the log');
    }
    assert.ok(!/Basic [A-Za-z0-9+/=]{8,}|Bearer [A-Za-z0-9_-]{20,}/.test(log));
  });
});

describe('lading serve --auth-config with the CLI', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'lading-auth-cli-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('login, push, pull through the token flow; wrong password refused; the server log holds no secret', async () => {
    await writeFile(join(dir, 'users.htpasswd'), `${ALICE.user}:${bcrypt.hashSync(ALICE.password, 4).replace(/^\$2b\$/, '$2y$')}\n`, { mode: 0o600 });
    await writeFile(
      join(dir, 'auth.yaml'),
      ['service: lading-cli', 'htpasswd: users.htpasswd', 'tokenLifetime: 120', 'rules:', '  - repository: "apps/*"', '    users: [alice]', '    actions: [pull, push]', ''].join('\n'),
    );
    const info = await startServeChild(join(dir, 'data'), ['--auth-config', join(dir, 'auth.yaml'), '--log-level', 'debug']);
    try {
      const challenge = await fetch(`${info.url}/v2/`);
      assert.equal(challenge.headers.get('www-authenticate'), `Bearer realm="${info.url}/token",service="lading-cli"`);

      const env = { DOCKER_CONFIG: join(dir, 'docker') };
      const wrong = await lading(['login', info.host, '-u', ALICE.user, '--password-stdin', '--json'], { env, input: 'wrong-password\n' });
      assert.equal(wrong.code, 1);
      assert.equal(wrong.json.error.code, 'E_UNAUTHORIZED');
      const ok = await lading(['login', info.host, '-u', ALICE.user, '--password-stdin'], { env, input: `${ALICE.password}\n` });
      assert.equal(ok.code, 0, ok.stderr);

      const src = join(dir, 'src');
      await mkdir(src);
      await writeFile(join(src, 'hello.txt'), 'hello through tokens\n');
      const pushed = await lading(['push', `${info.host}/apps/hello:v1`, 'hello.txt', '--json'], { cwd: src, env });
      assert.equal(pushed.code, 0, pushed.stderr);
      const pulled = await lading(['pull', `${info.host}/apps/hello:v1`, '-o', join(dir, 'out'), '--json'], { env });
      assert.equal(pulled.code, 0, pulled.stderr);
      assert.equal(await readFile(join(dir, 'out', 'hello.txt'), 'utf8'), 'hello through tokens\n');
      const elsewhere = await lading(['push', `${info.host}/other/hello:v1`, 'hello.txt', '--json'], { cwd: src, env });
      assert.equal(elsewhere.code, 1);
      assert.equal(elsewhere.json.error.code, 'E_DENIED');
      for (const r of [wrong, ok, pushed, pulled, elsewhere]) assert.ok(!r.stdout.includes(ALICE.password) && !r.stderr.includes(ALICE.password));
    } finally {
      info.proc.kill('SIGTERM');
      assert.equal((await info.exited).code, 0, info.stderr());
    }
    const stderr = info.stderr();
    assert.match(stderr, /"auth":"token"/);
    assert.match(stderr, /token issued/);
    assert.ok(!stderr.includes(ALICE.password) && !stderr.includes('wrong-password'));
    assert.ok(!/eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}/.test(stderr), 'no token in the server log');
  });
});
