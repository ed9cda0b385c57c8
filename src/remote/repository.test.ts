import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Repository } from './repository.js';
import { Transport } from './transport.js';

/** A registry that answers tag listings from a script of pages keyed by the query it is sent. */
async function tagServer(pages: Record<string, { tags: string[]; next?: string }>): Promise<{ server: Server; host: string; queries: string[] }> {
  const queries: string[] = [];
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname !== '/v2/r/tags/list') {
      res.writeHead(404).end();
      return;
    }
    queries.push(url.search);
    const page = pages[url.search] ?? pages['*'];
    if (!page) {
      res.writeHead(404).end();
      return;
    }
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    if (page.next) headers.link = `<${page.next}>; rel="next"`;
    res.writeHead(200, headers).end(JSON.stringify({ name: 'r', tags: page.tags }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, host: `127.0.0.1:${(server.address() as AddressInfo).port}`, queries };
}

async function list(repo: Repository, opts: { last?: string; pageSize?: number } = {}): Promise<string[]> {
  const out: string[] = [];
  for await (const t of repo.tags(opts)) out.push(t);
  return out;
}

test('paged tag listings keep the registry order and list each tag once', async (t) => {
  const s = await tagServer({
    '?n=2': { tags: ['a', 'B'], next: '/v2/r/tags/list?n=2&last=B' },
    '?n=2&last=B': { tags: ['B', 'c', 'D'], next: '/v2/r/tags/list?n=2&last=D' },
    '?n=2&last=D': { tags: ['e'] },
  });
  t.after(() => s.server.close());
  const repo = new Repository(`${s.host}/r`, { transport: new Transport() });
  assert.deepEqual(await list(repo, { pageSize: 2 }), ['a', 'B', 'c', 'D', 'e']);
  assert.deepEqual(s.queries, ['?n=2', '?n=2&last=B', '?n=2&last=D']);
});

test('a registry that answers everything in one unsorted page is sorted, and `last` applied here', async (t) => {
  const s = await tagServer({ '*': { tags: ['v2', 'latest', 'v1', 'v10'] } });
  t.after(() => s.server.close());
  const repo = new Repository(`${s.host}/r`, { transport: new Transport() });
  assert.deepEqual(await list(repo), ['latest', 'v1', 'v10', 'v2']);
  assert.deepEqual(await list(repo, { last: 'v1', pageSize: 2 }), ['v10', 'v2']);
});
