import { LadingError } from '../errors.js';
import { readCapped } from './body.js';
import { nextLink } from './link.js';
import { Repository, type RepositoryOptions } from './repository.js';
import { Transport } from './transport.js';

const MAX_PAGES = 10_000;

/** A registry host: the entry point for its repositories, its catalog and checking credentials. */
export class Registry {
  readonly host: string;
  readonly transport: Transport;
  private readonly repoOptions: RepositoryOptions;

  constructor(host: string, opts: RepositoryOptions = {}) {
    this.host = host;
    this.transport = opts.transport ?? new Transport();
    this.repoOptions = { ...opts, transport: this.transport };
  }

  repository(name: string): Repository {
    return new Repository({ registry: this.host, repository: name }, this.repoOptions);
  }

  /**
   * GET /v2/: proves the registry speaks the API and, when credentials are configured, that they are
   * accepted. Fails with E_UNAUTHORIZED when they are not.
   */
  async ping(signal?: AbortSignal): Promise<void> {
    const res = await this.transport.expect({ registry: this.host, method: 'GET', path: '/v2/', scopes: [], signal }, [200]);
    await res.body.dump();
  }

  async *catalog(opts: { pageSize?: number; signal?: AbortSignal } = {}): AsyncGenerator<string> {
    let path: string | undefined = `/v2/_catalog${opts.pageSize ? `?n=${opts.pageSize}` : ''}`;
    for (let page = 0; path && page < MAX_PAGES; page++) {
      const res = await this.transport.expect(
        { registry: this.host, method: 'GET', path, scopes: ['registry:catalog:*'], signal: opts.signal },
        [200],
      );
      const bytes = await readCapped(res.body, 16 * 1024 * 1024, 'catalog');
      let doc: { repositories?: unknown };
      try {
        doc = JSON.parse(bytes.toString('utf8')) as { repositories?: unknown };
      } catch (err) {
        throw new LadingError('E_PROTOCOL', 'registry sent a catalog that is not JSON', { cause: err });
      }
      for (const r of Array.isArray(doc.repositories) ? doc.repositories : []) if (typeof r === 'string') yield r;
      path = nextLink(res.headers.link, this.transport.baseUrl(this.host));
    }
  }
}
