import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { killAllChildren, spawnTs } from '../../test/support/child-process.js';
import { lading } from '../../test/support/cli.js';
import { contentTypeFor, createInstalledHandler, matchesNoneMatch, startInstalledServer } from './serve-installed.js';

const SECRET = 'TOP-SECRET-0f9e8d7c';

interface Fixture {
  tmp: string;
  root: string;
  files: Map<string, Buffer>;
}

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes pkgs/<name>/<version>/<files> and its .files index by hand, as an install would leave them. */
async function addVersion(root: string, name: string, version: string, files: Record<string, Buffer>, extraIndex: Record<string, { digest: string; size: number }> = {}): Promise<void> {
  const dir = join(root, 'pkgs', name, version);
  const index: Record<string, { digest: string; size: number }> = {};
  for (const [rel, data] of Object.entries(files)) {
    await mkdir(dirname(join(dir, rel)), { recursive: true });
    await writeFile(join(dir, rel), data);
    index[rel] = { digest: `sha256:${sha(data)}`, size: data.length };
  }
  await mkdir(join(root, 'pkgs', name, '.files'), { recursive: true });
  await writeFile(join(root, 'pkgs', name, '.files', `${version}.json`), JSON.stringify({ files: { ...index, ...extraIndex }, note: SECRET }));
}

async function makeFixture(): Promise<Fixture> {
  const tmp = await realpath(await mkdtemp(join(tmpdir(), 'lading-serve-installed-')));
  const root = join(tmp, 'root');
  const secret = Buffer.from(`${SECRET}\n`);
  // The victim beside the root, and everything in the root that is not package content.
  await writeFile(join(tmp, 'secret.txt'), secret);
  await mkdir(join(root, '.lading'), { recursive: true });
  await writeFile(join(root, '.lading', 'state.json'), JSON.stringify({ version: 1, packages: {}, note: SECRET }));
  await mkdir(join(root, '.staging', 'abc123'), { recursive: true });
  await writeFile(join(root, '.staging', 'abc123', 'index.html'), secret);
  await mkdir(join(root, 'bin'), { recursive: true });
  await writeFile(join(root, 'bin', 'tool'), secret);

  const files = new Map<string, Buffer>([
    ['index.html', Buffer.from('<!doctype html><title>hi</title>\n')],
    ['app.js', Buffer.from('console.log("hi");\n')],
    ['mod.mjs', Buffer.from('export {};\n')],
    ['style.css', Buffer.from('body{}\n')],
    ['data.json', Buffer.from('{"a":1}\n')],
    ['README.md', Buffer.from('# hi\n')],
    ['img/logo.png', randomBytes(300)],
    ['img/pic.JPG', randomBytes(10)],
    ['font.woff2', randomBytes(10)],
    ['icon.svg', Buffer.from('<svg/>')],
    ['lib.wasm', randomBytes(16)],
    ['sub/dir/deep.txt', Buffer.from('deep\n')],
    ['empty.txt', Buffer.alloc(0)],
    ['blob.bin', randomBytes(5 * 1024 * 1024 + 17)],
    ['noext', Buffer.from('x')],
    ['with space.txt', Buffer.from('spaced\n')],
    ['%2e%2e', Buffer.from('literally named\n')],
  ]);
  await addVersion(root, 'web', '1.0.0', Object.fromEntries(files), {
    // Listed in the index but leading outside the version directory: never served.
    'escape.txt': { digest: `sha256:${sha(secret)}`, size: secret.length },
    'outdir/secret.txt': { digest: `sha256:${sha(secret)}`, size: secret.length },
    'abs.txt': { digest: `sha256:${sha(secret)}`, size: secret.length },
    // Listed with a size that is not the file's.
    'tampered.txt': { digest: `sha256:${'0'.repeat(64)}`, size: 999 },
  });
  const v1 = join(root, 'pkgs', 'web', '1.0.0');
  await symlink('../../../../secret.txt', join(v1, 'escape.txt'));
  await symlink(tmp, join(v1, 'outdir'));
  await symlink(join(tmp, 'secret.txt'), join(v1, 'abs.txt'));
  await writeFile(join(v1, 'tampered.txt'), 'short');
  // On disk, not in the index: not served.
  await writeFile(join(v1, 'not-indexed.txt'), 'unlisted');
  await symlink('1.0.0', join(root, 'pkgs', 'web', 'current'));
  // A version "directory" that is a link out of the root, with an index that lists the victim.
  await symlink(tmp, join(root, 'pkgs', 'web', 'evil'));
  await writeFile(join(root, 'pkgs', 'web', '.files', 'evil.json'), JSON.stringify({ files: { 'secret.txt': { digest: `sha256:${sha(secret)}`, size: secret.length } } }));
  // A package literally named `bin`, so that /bin/... is proven to come from pkgs/bin only.
  await addVersion(root, 'bin', '1', { 'tool.txt': Buffer.from('from pkgs\n') });
  return { tmp, root, files };
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  raw: string;
}

/** Sends a request line exactly as given (no client normalisation) and reads the answer until the server closes. */
function rawRequest(port: number, method: string, target: string, extraHeaders = ''): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const sock = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer to ${method} ${target}`));
    }, 10_000);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.on('close', () => {
      clearTimeout(timer);
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      const head = all.subarray(0, end < 0 ? all.length : end).toString('latin1');
      const [statusLine, ...lines] = head.split('\r\n');
      const headers: Record<string, string> = {};
      for (const l of lines) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1] ?? 0), headers, body: end < 0 ? Buffer.alloc(0) : all.subarray(end + 4), raw: all.toString('latin1') });
    });
    sock.write(Buffer.from(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${extraHeaders}\r\n`, 'latin1'));
  });
}

describe('createInstalledHandler', () => {
  let fx: Fixture;
  let server: Server;
  let base: string;
  let port: number;

  before(async () => {
    fx = await makeFixture();
    server = createServer(createInstalledHandler(fx.root));
    port = await listen(server);
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await rm(fx.tmp, { recursive: true, force: true });
  });

  it('serves every indexed file with its exact bytes, length, type, ETag and immutable caching', async () => {
    for (const [rel, data] of fx.files) {
      const res = await fetch(`${base}/web/1.0.0/${rel.split('/').map(encodeURIComponent).join('/')}`);
      assert.equal(res.status, 200, rel);
      const body = Buffer.from(await res.arrayBuffer());
      assert.ok(body.equals(data), `${rel}: bytes differ`);
      assert.equal(res.headers.get('content-length'), String(data.length), rel);
      assert.equal(res.headers.get('etag'), `"${sha(data)}"`, rel);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable', rel);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff', rel);
      assert.equal(res.headers.get('content-type'), contentTypeFor(rel.slice(rel.lastIndexOf('/') + 1)), rel);
    }
  });

  it('names the right Content-Type, with charset on text types', async () => {
    const want: Record<string, string> = {
      'index.html': 'text/html; charset=utf-8',
      'app.js': 'text/javascript; charset=utf-8',
      'mod.mjs': 'text/javascript; charset=utf-8',
      'style.css': 'text/css; charset=utf-8',
      'data.json': 'application/json; charset=utf-8',
      'README.md': 'text/markdown; charset=utf-8',
      'sub/dir/deep.txt': 'text/plain; charset=utf-8',
      'icon.svg': 'image/svg+xml; charset=utf-8',
      'img/logo.png': 'image/png',
      'img/pic.JPG': 'image/jpeg',
      'font.woff2': 'font/woff2',
      'lib.wasm': 'application/wasm',
      'blob.bin': 'application/octet-stream',
      noext: 'application/octet-stream',
    };
    for (const [rel, type] of Object.entries(want)) {
      const res = await fetch(`${base}/web/1.0.0/${rel}`, { method: 'HEAD' });
      assert.equal(res.headers.get('content-type'), type, rel);
    }
    assert.equal(contentTypeFor('a.tar'), 'application/x-tar');
    assert.equal(contentTypeFor('a.tar.gz'), 'application/gzip');
    assert.equal(contentTypeFor('x.pdf'), 'application/pdf');
    assert.equal(contentTypeFor('x.xml'), 'application/xml; charset=utf-8');
    assert.equal(contentTypeFor('.hidden'), 'application/octet-stream');
  });

  it('answers HEAD with the headers only', async () => {
    const data = fx.files.get('blob.bin')!;
    const r = await rawRequest(port, 'HEAD', '/web/1.0.0/blob.bin');
    assert.equal(r.status, 200);
    assert.equal(r.headers['content-length'], String(data.length));
    assert.equal(r.headers['etag'], `"${sha(data)}"`);
    assert.equal(r.headers['cache-control'], 'public, max-age=31536000, immutable');
    assert.equal(r.body.length, 0);
  });

  it('answers 304 without a body when If-None-Match matches (exact, in a list, weak, *)', async () => {
    const data = fx.files.get('app.js')!;
    const etag = `"${sha(data)}"`;
    for (const inm of [etag, `"nope", ${etag}`, `W/${etag}`, '*', `W/"x",W/${etag}`]) {
      for (const method of ['GET', 'HEAD']) {
        const r = await rawRequest(port, method, '/web/1.0.0/app.js', `If-None-Match: ${inm}\r\n`);
        assert.equal(r.status, 304, `${method} ${inm}`);
        assert.equal(r.headers['etag'], etag);
        assert.equal(r.headers['cache-control'], 'public, max-age=31536000, immutable');
        assert.equal(r.body.length, 0);
      }
    }
    const miss = await fetch(`${base}/web/1.0.0/app.js`, { headers: { 'if-none-match': '"other", W/"another"' } });
    assert.equal(miss.status, 200);
    assert.ok(Buffer.from(await miss.arrayBuffer()).equals(data));
    // `*` matches only something that exists.
    assert.equal((await fetch(`${base}/web/1.0.0/nope.js`, { headers: { 'if-none-match': '*' } })).status, 404);
    assert.equal(matchesNoneMatch(undefined, etag), false);
    assert.equal(matchesNoneMatch(`"${'a'.repeat(64)}"`, etag), false);
  });

  it('refuses other methods with 405 and Allow: GET, HEAD', async () => {
    for (const method of ['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS']) {
      const res = await fetch(`${base}/web/1.0.0/index.html`, { method, ...(method === 'POST' || method === 'PUT' ? { body: 'x' } : {}) });
      assert.equal(res.status, 405, method);
      assert.equal(res.headers.get('allow'), 'GET, HEAD');
      await res.arrayBuffer();
    }
    const star = await rawRequest(port, 'OPTIONS', '*');
    assert.equal(star.status, 405);
  });

  it('answers 404 for unknown names, versions and paths, directories, `current`, .files and unindexed content', async () => {
    const missing = [
      '/',
      '/web',
      '/web/',
      '/web/1.0.0',
      '/web/1.0.0/',
      '/web/1.0.0/img',
      '/web/1.0.0/img/',
      '/web/1.0.0/sub/dir',
      '/nope/1.0.0/index.html',
      '/web/9.9.9/index.html',
      '/web/current/index.html',
      '/web/.files/1.0.0.json',
      '/web/1.0.0/not-indexed.txt',
      '/web/1.0.0/nope.txt',
      '/-web/1.0.0/index.html',
      '/web/-1/index.html',
      `/${'a'.repeat(129)}/1.0.0/index.html`,
      '/.lading/state.json',
      '/.staging/abc123/index.html',
      '/bin/tool',
      '/bin/1/tool',
      '/web/1.0.0/index.html/',
      '/web/1.0.0/index.html/x',
    ];
    for (const path of missing) {
      const r = await rawRequest(port, 'GET', path);
      assert.equal(r.status, 404, path);
      assert.ok(!r.raw.includes(fx.tmp), `${path}: leaks a path`);
    }
    // pkgs/bin is a package like any other; the root's bin/ is not.
    const fromPkgs = await fetch(`${base}/bin/1/tool.txt`);
    assert.equal(fromPkgs.status, 200);
    assert.equal(await fromPkgs.text(), 'from pkgs\n');
    // The query string is not part of the path.
    assert.equal((await fetch(`${base}/web/1.0.0/app.js?v=2`)).status, 200);
  });

  it('decodes percent-escapes exactly once', async () => {
    assert.equal(await (await fetch(`${base}/web/1.0.0/with%20space.txt`)).text(), 'spaced\n');
    // A file literally named `%2e%2e` is reached by escaping its percent signs once.
    const r = await rawRequest(port, 'GET', '/web/1.0.0/%252e%252e');
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), 'literally named\n');
    assert.equal((await rawRequest(port, 'GET', '/web/1%2e0.0/app.js')).status, 200);
    assert.equal((await rawRequest(port, 'GET', '/web/1.0.0/sub%2fdir/deep.txt')).status, 404);
  });

  it('answers 414 for request targets over 8 KiB', async () => {
    const res = await fetch(`${base}/web/1.0.0/${'a'.repeat(9000)}`);
    assert.equal(res.status, 414);
    await res.arrayBuffer();
  });

  it('does not serve a file whose size differs from its index, and says nothing of paths', async () => {
    const r = await rawRequest(port, 'GET', '/web/1.0.0/tampered.txt');
    assert.equal(r.status, 500);
    assert.ok(!r.raw.includes(fx.tmp));
    assert.ok(!r.raw.includes('short'));
  });

  it('never reads anything outside the version directory (~35 raw traversal attempts)', async () => {
    const abs = join(fx.tmp, 'secret.txt');
    const attempts = [
      '/../secret.txt',
      '/../../secret.txt',
      '/web/../../secret.txt',
      '/web/1.0.0/../../../../secret.txt',
      '/web/1.0.0/./../../../../secret.txt',
      '/web/1.0.0/%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt',
      '/web/1.0.0/%2E%2E/%2E%2E/%2E%2E/%2E%2E/secret.txt',
      '/web/1.0.0/..%2f..%2f..%2f..%2fsecret.txt',
      '/web/1.0.0/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt',
      '/web/1.0.0/%252e%252e/%252e%252e/%252e%252e/%252e%252e/secret.txt',
      '/web/1.0.0/%252e%252e%252f%252e%252e%252f%252e%252e%252fsecret.txt',
      '/web/1.0.0/..\\..\\..\\..\\secret.txt',
      '/web/1.0.0/..%5c..%5c..%5c..%5csecret.txt',
      '/web/1.0.0/%2e%2e%5c%2e%2e%5c%2e%2e%5c%2e%2e%5csecret.txt',
      '/web/1.0.0/escape.txt',
      '/web/1.0.0/abs.txt',
      '/web/1.0.0/outdir/secret.txt',
      '/web/evil/secret.txt',
      '/web/1.0.0/index.html%00/../../../../secret.txt',
      '/web/1.0.0/%00',
      '/web/1.0.0/secret.txt%00.html',
      `/${abs}`,
      `/web/1.0.0/${abs}`,
      `/web/1.0.0/${encodeURIComponent(abs)}`,
      `/web/1.0.0/%2f${abs.slice(1).split('/').join('%2f')}`,
      'http://127.0.0.1/../secret.txt',
      `http://127.0.0.1/web/1.0.0/../../../../secret.txt`,
      `http://127.0.0.1${abs}`,
      `file://${abs}`,
      '/web/1.0.0/....//....//....//secret.txt',
      '/web/1.0.0/..;/..;/..;/..;/secret.txt',
      '/web/1.0.0/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt',
      '/web/1.0.0/%uff0e%uff0e/%uff0e%uff0e/secret.txt',
      '/web/1.0.0/%e0%80%ae%e0%80%ae/secret.txt',
      '/web/.files/evil.json',
      '/web/1.0.0/../.files/1.0.0.json',
      '/web/1.0.0/%2e%2e/.files/1.0.0.json',
      '/.lading/state.json',
      '/%2elading/state.json',
      '/web/1.0.0/../../../.lading/state.json',
      '/.staging/abc123/index.html',
      '/web/1.0.0/../../../.staging/abc123/index.html',
      '/web/1.0.0/../../../bin/tool',
      '/bin/../bin/tool',
    ];
    assert.ok(attempts.length >= 30);
    for (const target of attempts) {
      for (const method of ['GET', 'HEAD']) {
        const r = await rawRequest(port, method, target);
        assert.ok(r.status === 400 || r.status === 404, `${method} ${target}: status ${r.status}`);
        assert.ok(!r.raw.includes(SECRET), `${method} ${target}: the secret was read`);
        assert.ok(!r.raw.includes(fx.tmp), `${method} ${target}: a path leaked`);
      }
    }
  });
});

describe('startInstalledServer', () => {
  it('refuses a root that is not a directory', async () => {
    await assert.rejects(startInstalledServer({ root: join(tmpdir(), 'lading-no-such-root-9f8e7d') }), (err: Error & { code?: string }) => err.code === 'E_USAGE');
  });

  it('serves, then closes gracefully', async () => {
    const fx = await makeFixture();
    try {
      const srv = await startInstalledServer({ root: fx.root });
      assert.match(srv.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${srv.url}/web/1.0.0/index.html`);
      assert.equal(await res.text(), fx.files.get('index.html')!.toString());
      await srv.close();
      await assert.rejects(fetch(`${srv.url}/web/1.0.0/index.html`));
    } finally {
      await rm(fx.tmp, { recursive: true, force: true });
    }
  });
});

describe('lading serve --installed', () => {
  after(() => killAllChildren());

  it('serves an install root on --addr, logs requests as JSON lines and exits 0 on SIGTERM', async () => {
    const fx = await makeFixture();
    try {
      const child = spawnTs('', ['serve', '--addr', '127.0.0.1:0', '--installed', fx.root, '--json', '--log-level', 'info'], { cli: true });
      const line = await child.line('  "url": ', 20_000);
      const url = (JSON.parse(`{${line.trim().replace(/,$/, '')}}`) as { url: string }).url;
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
      const res = await fetch(`${url}/web/1.0.0/data.json`);
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('cache-control'), 'public, max-age=31536000, immutable');
      assert.equal(await res.text(), fx.files.get('data.json')!.toString());
      assert.equal((await fetch(`${url}/v2/`)).status, 404);
      process.kill(child.pid, 'SIGTERM');
      const exit = await child.exited;
      assert.deepEqual(exit, { code: 0, signal: null }, child.stderr());
      const logs = child.stderr().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg?: string; url?: string; status?: number });
      assert.ok(logs.some((l) => l.msg === 'request' && l.url === '/web/1.0.0/data.json' && l.status === 200), child.stderr());
    } finally {
      await rm(fx.tmp, { recursive: true, force: true });
    }
  });

  it('refuses registry-only options with --installed', async () => {
    const r = await lading(['serve', '--addr', '127.0.0.1:0', '--installed', tmpdir(), '--htpasswd', '/nonexistent']);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--htpasswd cannot be used with --installed/);
  });

  it('refuses an install root that does not exist', async () => {
    const r = await lading(['serve', '--addr', '127.0.0.1:0', '--installed', join(tmpdir(), 'lading-no-such-root-9f8e7d')]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /not a directory/);
  });
});
