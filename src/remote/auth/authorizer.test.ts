import { test, describe, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { isLadingError, LadingError } from '../../errors.js';
import { Authorizer, unauthorizedError } from './authorizer.js';
import { staticCredentials } from './credentials.js';
import { undiciHttpDo } from './http.js';
import type { Credential, HttpDo, HttpRequest } from './types.js';

const PASSWORD = 'correct-horse-battery';
const REFRESH = 'refresh-secret-123';
const WRONG = 'wrong-password-456';

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  authorization: string | undefined;
  userAgent: string | undefined;
  contentType: string | undefined;
  form: URLSearchParams | undefined;
}

let server: Server;
let base: string;
let seen: Seen[] = [];
let counter = 0;
/** What the token server puts in its answers; tests adjust it. */
let tokenExtras: Record<string, unknown> = {};

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}

function handle(req: IncomingMessage, res: ServerResponse, body: string): void {
  const url = new URL(req.url ?? '/', 'http://x');
  const s: Seen = {
    method: req.method ?? '',
    path: url.pathname,
    query: url.searchParams,
    authorization: req.headers.authorization,
    userAgent: req.headers['user-agent'],
    contentType: req.headers['content-type'],
    form: req.method === 'POST' ? new URLSearchParams(body) : undefined,
  };
  seen.push(s);
  const expectBasic = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
  switch (url.pathname) {
    case '/token': {
      if (req.method === 'POST') {
        const form = s.form!;
        if (form.get('grant_type') === 'refresh_token' && form.get('refresh_token') === REFRESH) {
          return send(res, 200, { access_token: `oauth-${++counter}`, expires_in: 300, ...tokenExtras });
        }
        // Echoes the rejected secret, as a careless server might.
        return send(res, 400, { error: 'invalid_grant', error_description: `bad refresh token ${form.get('refresh_token')}` });
      }
      if (s.authorization === expectBasic) return send(res, 200, { token: `tok-${++counter}`, ...tokenExtras });
      if (s.authorization) {
        const pw = Buffer.from(s.authorization.slice(6), 'base64').toString().split(':')[1];
        return send(res, 401, { errors: [{ code: 'UNAUTHORIZED', message: `incorrect password ${pw}` }] });
      }
      return send(res, 401, { details: 'incorrect username or password' });
    }
    case '/anon':
      if (s.authorization) return send(res, 400, { details: 'did not expect credentials' });
      return send(res, 200, { token: `anon-${++counter}`, ...tokenExtras });
    case '/status/403':
      return send(res, 403, { errors: [{ code: 'DENIED', message: 'no access' }] });
    case '/status/500':
      return send(res, 500, 'internal error');
    case '/html':
      return send(res, 200, '<html>not json</html>');
    case '/badtoken':
      return send(res, 200, { token: 'abc\r\nx-injected: 1' });
    case '/notoken':
      return send(res, 200, { expires_in: 60 });
    case '/big':
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(Buffer.alloc(2 * 1024 * 1024, 0x20));
      return;
    default:
      return send(res, 404, {});
  }
}

before(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => handle(req, res, Buffer.concat(chunks).toString()));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
});

beforeEach(() => {
  seen = [];
  tokenExtras = {};
});

const REG = 'registry.test:5000';
const challenge = (path: string, scope?: string): string =>
  `Bearer realm="${base}${path}",service="registry.test"${scope ? `,scope="${scope}"` : ''}`;

function makeAuthorizer(cred: Credential | undefined, extra: { now?: () => number; http?: HttpDo } = {}): Authorizer {
  return new Authorizer({
    credentials: staticCredentials(cred ? { [REG]: cred } : {}),
    http: extra.http ?? undiciHttpDo(),
    userAgent: 'lading-test/1',
    ...(extra.now ? { now: extra.now } : {}),
  });
}

function assertNoSecret(err: unknown, secrets = [PASSWORD, REFRESH, WRONG]): void {
  assert.ok(err instanceof LadingError);
  const texts = [err.message, err.hint ?? '', JSON.stringify(err.toJSON()), JSON.stringify(err.details ?? {}), String(err.stack)];
  for (const s of secrets) {
    for (const t of texts) assert.ok(!t.includes(s), `secret leaked into: ${t}`);
    const b64 = Buffer.from(`alice:${s}`).toString('base64');
    for (const t of texts) assert.ok(!t.includes(b64), `encoded secret leaked into: ${t}`);
  }
}

describe('bearer tokens', () => {
  test('nothing is known before the first challenge', async () => {
    assert.equal(await makeAuthorizer({ username: 'alice', password: PASSWORD }).authorization(REG, ['repository:a:pull']), undefined);
    assert.equal(seen.length, 0);
  });

  test('basic credentials go to the realm; challenge and requested scopes are merged', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    const header = await auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), ['repository:a:push']);
    assert.equal(header, 'Bearer tok-1');
    assert.equal(seen.length, 1);
    const [req] = seen;
    assert.equal(req?.method, 'GET');
    assert.equal(req?.query.get('service'), 'registry.test');
    assert.deepEqual(req?.query.getAll('scope'), ['repository:a:pull,push']);
    assert.equal(req?.authorization, `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`);
    assert.equal(req?.userAgent, 'lading-test/1');
  });

  test('several scopes are sent as several scope parameters', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    await auth.onChallenge(REG, challenge('/token', 'repository:b:pull repository:a:pull'), ['repository:b:push']);
    assert.deepEqual(seen[0]?.query.getAll('scope'), ['repository:a:pull', 'repository:b:pull,push']);
  });

  test('a cached token is reused for covered scopes and a new one fetched otherwise', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    assert.equal(await auth.onChallenge(REG, challenge('/token', 'repository:a:pull,push'), []), `Bearer tok-${counter}`);
    const first = `Bearer tok-${counter}`;
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), first);
    assert.equal(await auth.authorization(REG, ['repository:a:push', 'repository:a:pull']), first);
    assert.equal(seen.length, 1, 'no new token request while the cached one covers the scopes');
    const second = await auth.authorization(REG, ['repository:b:pull']);
    assert.equal(second, `Bearer tok-${counter}`);
    assert.notEqual(second, first);
    assert.equal(seen.length, 2);
    assert.deepEqual(seen[1]?.query.getAll('scope'), ['repository:b:pull']);
    // Both stay cached.
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), first);
    assert.equal(await auth.authorization(REG, ['repository:b:pull']), second);
    assert.equal(seen.length, 2);
  });

  test('tokens expire a little before expires_in, defaulting to 60 s', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD }, { now: () => now });
    const first = await auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), []);
    now += 53_000;
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), first);
    assert.equal(seen.length, 1);
    now += 2_000; // 55 s: inside the safety margin of a 60 s token
    const second = await auth.authorization(REG, ['repository:a:pull']);
    assert.notEqual(second, first);
    assert.equal(seen.length, 2);

    tokenExtras = { expires_in: 3600 };
    const third = await auth.onChallenge(REG, challenge('/token', 'repository:c:pull'), []);
    now += 3_000_000;
    assert.equal(await auth.authorization(REG, ['repository:c:pull']), third);
    now += 600_000;
    assert.notEqual(await auth.authorization(REG, ['repository:c:pull']), third);
  });

  test('issued_at in the past shortens the life of a token', async () => {
    let now = Date.parse('2030-01-01T00:00:00Z');
    tokenExtras = { expires_in: 300, issued_at: new Date(now - 250_000).toISOString() };
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD }, { now: () => now });
    const first = await auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), []);
    now += 10_000;
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), first);
    now += 30_000; // 290 s after issue: past the margin
    assert.notEqual(await auth.authorization(REG, ['repository:a:pull']), first);
  });

  test('anonymous bearer sends no Authorization header', async () => {
    const auth = makeAuthorizer(undefined);
    const header = await auth.onChallenge(REG, challenge('/anon', 'repository:library/ubuntu:pull'), []);
    assert.match(header, /^Bearer anon-\d+$/);
    assert.equal(seen[0]?.authorization, undefined);
  });

  test('anonymous access refused: E_UNAUTHORIZED naming the registry and `lading login`', async () => {
    const auth = makeAuthorizer(undefined);
    await assert.rejects(auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), []), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_UNAUTHORIZED'));
      assert.match(err.message, /registry\.test:5000 requires authentication/);
      assert.match(err.hint ?? '', /lading login registry\.test:5000/);
      return true;
    });
  });

  test('wrong password: E_UNAUTHORIZED with no secret anywhere, even when the server echoes it', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: WRONG });
    await assert.rejects(auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), []), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_UNAUTHORIZED'));
      assert.match(err.message, /refused the saved credentials/);
      assert.match(err.hint ?? '', /lading login registry\.test:5000/);
      assertNoSecret(err);
      return true;
    });
  });

  test('identity token: refresh_token grant by POST', async () => {
    const auth = makeAuthorizer({ username: 'alice', identityToken: REFRESH });
    const header = await auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), ['repository:b:push']);
    assert.match(header, /^Bearer oauth-\d+$/);
    const [req] = seen;
    assert.equal(req?.method, 'POST');
    assert.equal(req?.contentType, 'application/x-www-form-urlencoded');
    assert.equal(req?.authorization, undefined);
    assert.equal(req?.form?.get('grant_type'), 'refresh_token');
    assert.equal(req?.form?.get('refresh_token'), REFRESH);
    assert.equal(req?.form?.get('service'), 'registry.test');
    assert.equal(req?.form?.get('scope'), 'repository:a:pull repository:b:push');
    assert.equal(req?.form?.get('client_id'), 'lading');
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), header);
    assert.equal(seen.length, 1);
  });

  test('a refused identity token is E_UNAUTHORIZED without the token', async () => {
    const auth = makeAuthorizer({ identityToken: 'refresh-secret-bad-999' });
    await assert.rejects(auth.onChallenge(REG, challenge('/token'), []), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_UNAUTHORIZED'));
      assertNoSecret(err, ['refresh-secret-bad-999']);
      return true;
    });
  });

  test('a registry token is sent as it is, with no token request', async () => {
    const auth = makeAuthorizer({ registryToken: 'direct-token' });
    assert.equal(await auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), []), 'Bearer direct-token');
    assert.equal(await auth.authorization(REG, ['repository:z:push']), 'Bearer direct-token');
    assert.equal(seen.length, 0);
  });

  test('concurrent challenges for the same scopes share one token request', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    const headers = await Promise.all(
      Array.from({ length: 6 }, () => auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), [])),
    );
    assert.equal(new Set(headers).size, 1);
    assert.equal(seen.length, 1);
  });

  test('a challenge after a token was cached fetches a fresh one', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    const first = await auth.onChallenge(REG, challenge('/token', 'repository:a:pull'), []);
    const second = await auth.onChallenge(
      REG,
      `${challenge('/token', 'repository:a:pull')},error="insufficient_scope"`,
      [],
    );
    assert.notEqual(second, first);
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), second);
  });

  test('token service errors map to codes', async () => {
    const cases: Array<[string, string]> = [
      ['/status/403', 'E_DENIED'],
      ['/status/500', 'E_REGISTRY'],
      ['/html', 'E_PROTOCOL'],
      ['/notoken', 'E_PROTOCOL'],
      ['/badtoken', 'E_PROTOCOL'],
      ['/big', 'E_PROTOCOL'],
    ];
    for (const [path, code] of cases) {
      const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
      await assert.rejects(auth.onChallenge(REG, challenge(path), []), (err: unknown) => {
        assert.ok(isLadingError(err), path);
        assert.equal(err.code, code, path);
        if (path === '/big') assert.match(err.message, /larger than 1048576 bytes/);
        assertNoSecret(err);
        return true;
      });
    }
  });

  test('an unreachable token service is E_NETWORK', async () => {
    const dead = createServer();
    await new Promise<void>((resolve) => dead.listen(0, '127.0.0.1', resolve));
    const port = (dead.address() as AddressInfo).port;
    await new Promise<void>((resolve) => dead.close(() => resolve()));
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    await assert.rejects(
      auth.onChallenge(REG, `Bearer realm="http://127.0.0.1:${port}/token"`, []),
      (err: unknown) => {
        assert.ok(isLadingError(err, 'E_NETWORK'));
        assertNoSecret(err);
        return true;
      },
    );
  });
});

describe('challenges', () => {
  test('Basic: the header is built from the credentials and remembered', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    const expected = `Basic ${Buffer.from(`alice:${PASSWORD}`).toString('base64')}`;
    assert.equal(await auth.onChallenge(REG, 'Basic realm="Registry"', []), expected);
    assert.equal(await auth.authorization(REG, ['repository:a:pull']), expected);
    assert.equal(seen.length, 0);
  });

  test('Basic without credentials is E_UNAUTHORIZED', async () => {
    await assert.rejects(makeAuthorizer(undefined).onChallenge(REG, 'Basic realm="r"', []), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_UNAUTHORIZED'));
      assert.match(err.hint ?? '', /lading login registry\.test:5000/);
      return true;
    });
  });

  test('Bearer is preferred when several schemes are offered', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    const header = await auth.onChallenge(REG, ['Basic realm="r"', challenge('/token', 'repository:a:pull')], []);
    assert.match(header, /^Bearer tok-/);
  });

  test('a 401 without a challenge, or with a realm that is not a URL, is E_PROTOCOL', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    await assert.rejects(auth.onChallenge(REG, [], []), (e: unknown) => isLadingError(e, 'E_PROTOCOL'));
    await assert.rejects(auth.onChallenge(REG, 'Bearer realm="/relative"', []), (e: unknown) => isLadingError(e, 'E_PROTOCOL'));
    await assert.rejects(auth.onChallenge(REG, 'Bearer service="x"', []), (e: unknown) => isLadingError(e, 'E_PROTOCOL'));
  });

  test('an unsupported scheme is E_UNAUTHORIZED naming it', async () => {
    await assert.rejects(makeAuthorizer(undefined).onChallenge(REG, 'Negotiate abc==', []), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_UNAUTHORIZED'));
      assert.match(err.message, /negotiate/);
      return true;
    });
  });

  test('credentials are not sent to a plain-http realm off loopback unless allowed', async () => {
    const calls: HttpRequest[] = [];
    const fake: HttpDo = async (req) => {
      calls.push(req);
      return { status: 200, headers: {}, body: JSON.stringify({ token: 'fake' }) };
    };
    const remote = 'Bearer realm="http://auth.example/token",service="s"';
    await assert.rejects(
      makeAuthorizer({ username: 'alice', password: PASSWORD }, { http: fake }).onChallenge(REG, remote, []),
      (err: unknown) => {
        assert.ok(isLadingError(err, 'E_UNAUTHORIZED'));
        assertNoSecret(err);
        return true;
      },
    );
    assert.equal(calls.length, 0);
    // Anonymous requests carry nothing worth protecting.
    assert.equal(await makeAuthorizer(undefined, { http: fake }).onChallenge(REG, remote, []), 'Bearer fake');
    const allowed = new Authorizer({
      credentials: staticCredentials({ [REG]: { username: 'alice', password: PASSWORD } }),
      http: fake,
      allowInsecureRealm: (registry) => registry === REG,
    });
    assert.equal(await allowed.onChallenge(REG, remote, []), 'Bearer fake');
    assert.equal(calls.length, 2);
  });

  test('a failing credential provider is E_CREDENTIALS without its message', async () => {
    const auth = new Authorizer({
      credentials: async () => {
        throw new Error(`keyring said ${PASSWORD}`);
      },
      http: undiciHttpDo(),
    });
    await assert.rejects(auth.onChallenge(REG, challenge('/token'), []), (err: unknown) => {
      assert.ok(isLadingError(err, 'E_CREDENTIALS'));
      assertNoSecret(err);
      return true;
    });
  });

  test('forget drops what was learnt', async () => {
    const auth = makeAuthorizer({ username: 'alice', password: PASSWORD });
    await auth.onChallenge(REG, 'Basic realm="r"', []);
    auth.forget(REG);
    assert.equal(await auth.authorization(REG, []), undefined);
  });

  test('unauthorizedError for the transport', () => {
    const err = unauthorizedError('r.example', { credentialsSent: true });
    assert.equal(err.code, 'E_UNAUTHORIZED');
    assert.match(err.message, /r\.example refused the saved credentials/);
    assert.match(err.hint ?? '', /lading login r\.example/);
  });
});

test('an abort signal stops the caller waiting, not the shared fetch', async () => {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let calls = 0;
  const slow: HttpDo = async () => {
    calls++;
    await gate;
    return { status: 200, headers: {}, body: JSON.stringify({ token: 'slow' }) };
  };
  const auth = makeAuthorizer(undefined, { http: slow });
  const ac = new AbortController();
  const aborted = auth.onChallenge(REG, challenge('/anon'), [], ac.signal);
  const other = auth.onChallenge(REG, challenge('/anon'), []);
  ac.abort();
  await assert.rejects(aborted, (e: unknown) => isLadingError(e, 'E_ABORTED'));
  release();
  assert.equal(await other, 'Bearer slow');
  assert.equal(calls, 1);
});
