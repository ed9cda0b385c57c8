import { createServer, request, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A reverse proxy on 127.0.0.1 in front of a registry that, for one blob, sends only the first `bytes` of
 * the body and then holds the connection open: the client is caught mid-download, at a moment the test
 * knows (`stalled`), so that it can be killed exactly there.
 */
export class StallProxy {
  private server!: Server;
  private readonly sockets = new Set<Socket>();
  host = '';
  private stall: { digest: string; bytes: number; reached: () => void } | undefined;

  constructor(private readonly upstream: string) {}

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      const up = request(`http://${this.upstream}${req.url}`, { method: req.method, headers: { ...req.headers, host: this.upstream } }, (ur) => {
        const headers = { ...ur.headers };
        if (typeof headers.location === 'string') headers.location = headers.location.replace(this.upstream, this.host);
        res.writeHead(ur.statusCode ?? 502, headers);
        const stall = this.stall;
        if (!stall || req.method !== 'GET' || !req.url?.includes(`/blobs/${stall.digest}`)) {
          ur.pipe(res);
          return;
        }
        let sent = 0;
        ur.on('data', (chunk: Buffer) => {
          if (sent >= stall.bytes) return;
          const part = chunk.subarray(0, stall.bytes - sent);
          sent += part.length;
          res.write(part);
          if (sent >= stall.bytes) {
            ur.pause();
            stall.reached();
          }
        });
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    });
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.host = `127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  /** The next GET of `digest` stops after `bytes`; resolves once it has. */
  stallBlob(digest: string, bytes: number): Promise<void> {
    return new Promise((reached) => {
      this.stall = { digest, bytes, reached };
    });
  }

  clear(): void {
    this.stall = undefined;
    for (const s of this.sockets) s.destroy();
  }

  async stop(): Promise<void> {
    this.clear();
    await new Promise<void>((r) => this.server.close(() => r()));
  }
}
