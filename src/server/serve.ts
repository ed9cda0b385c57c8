import { createServer, type Server } from 'node:http';
import type { Socket } from 'node:net';
import { resolve } from 'node:path';
import { pino, type Logger, type LoggerOptions } from 'pino';
import { Families } from '../artifact/family.js';
import { LadingError } from '../errors.js';
import { createRegistryHandler } from './app.js';
import { HtpasswdAuthenticator, type Authenticator } from './auth.js';
import { loadTokenAuthConfig, TokenAuthenticator, type TokenAuthConfig } from './token-auth.js';
import { FsDriver } from './storage/fs-driver.js';
import { RegistryStore } from './storage/store.js';

export interface StartRegistryOptions {
  /** Storage root (created when missing). */
  root: string;
  /** Interface to listen on (default 127.0.0.1: open registries stay on loopback unless asked). */
  host?: string;
  /** 0 (the default) lets the OS pick a free port. */
  port?: number;
  /** An `htpasswd -B` file: when given, every endpoint but /healthz needs basic auth. */
  htpasswd?: string;
  /**
   * Token auth: the path of a YAML/JSON auth config, or the config itself. The server then answers
   * `/token` and wants bearer tokens from it everywhere but /healthz. Wins over `htpasswd`.
   */
  authConfig?: string | TokenAuthConfig;
  /** An authenticator of its own; wins over `authConfig` and `htpasswd`. */
  auth?: Authenticator;
  /** pino options, a pino logger, or false for no logs (the default). */
  logger?: false | LoggerOptions | Logger;
  /** How long close() lets in-flight requests run before cutting them off (default 10 s). */
  closeGraceMs?: number;
  /**
   * The artifact families the server is the schema authority for (default: the built-ins); load user
   * families with `Families.load(dirs)`.
   */
  families?: Families;
}

export interface RunningRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, as references want it. */
  host: string;
  root: string;
  close(): Promise<void>;
}

export async function startRegistry(opts: StartRegistryOptions): Promise<RunningRegistry> {
  const root = resolve(opts.root);
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new LadingError('E_USAGE', `port ${port} is not 0-65535`);
  const logger = makeLogger(opts.logger);
  const auth = opts.auth ?? (await configuredAuth(opts, logger));
  const store = new RegistryStore(new FsDriver(root));
  const families = opts.families ?? Families.builtin();
  const handler = createRegistryHandler(store, { ...(auth ? { auth } : {}), ...(logger ? { logger } : {}), families });

  let closing = false;
  const server = createServer(
    {
      // Blob uploads of many GiB take longer than Node's default 5-minute request timeout; idle sockets are
      // bounded by the inactivity timeout below instead.
      requestTimeout: 0,
      headersTimeout: 60_000,
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      // Once closing, every answer ends its connection so that close() is not held up by keep-alive.
      if (closing) res.setHeader('connection', 'close');
      res.on('finish', () => {
        if (closing) setImmediate(() => server.closeIdleConnections());
      });
      handler(req, res);
    },
  );
  server.setTimeout(120_000, (socket: Socket) => socket.destroy());
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Socket) => {
    // Malformed HTTP gets a plain 400, as node would send, and the connection ends; nothing is thrown.
    if (socket.writable && err.code !== 'ECONNRESET') socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
    else socket.destroy();
  });

  await listen(server, host, port);
  const address = server.address();
  if (address === null || typeof address === 'string') throw new LadingError('E_IO', 'the server has no TCP address');
  const hostPort = `${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
  const userFamilies = families.list().filter((f) => !f.builtin).map((f) => f.name);
  logger?.info({ url: `http://${hostPort}`, root, auth: authKind(auth), families: families.list().length, userFamilies }, 'registry listening');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= new Promise<void>((done) => {
      closing = true;
      const grace = setTimeout(() => server.closeAllConnections(), opts.closeGraceMs ?? 10_000);
      grace.unref();
      server.close(() => {
        clearTimeout(grace);
        logger?.info('registry closed');
        done();
      });
      server.closeIdleConnections();
    });
    return closed;
  };
  return { url: `http://${hostPort}`, host: hostPort, root, close };
}

async function configuredAuth(opts: StartRegistryOptions, logger: Logger | undefined): Promise<Authenticator | undefined> {
  if (opts.authConfig !== undefined) {
    const config = typeof opts.authConfig === 'string' ? await loadTokenAuthConfig(opts.authConfig) : opts.authConfig;
    return new TokenAuthenticator(config, logger ? { logger } : {});
  }
  return opts.htpasswd ? HtpasswdAuthenticator.load(opts.htpasswd) : undefined;
}

function authKind(auth: Authenticator | undefined): string {
  if (!auth) return 'none';
  if (auth instanceof TokenAuthenticator) return 'token';
  if (auth instanceof HtpasswdAuthenticator) return 'basic';
  return 'custom';
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((done, fail) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      fail(new LadingError('E_IO', `cannot listen on ${host}:${port}: ${err.message}`, {
        hint: err.code === 'EADDRINUSE' ? 'another process uses that port; pick another with --addr' : undefined,
        cause: err,
      }));
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      done();
    });
  });
}

function makeLogger(opt: StartRegistryOptions['logger']): Logger | undefined {
  if (opt === undefined || opt === false) return undefined;
  if (typeof (opt as Logger).info === 'function' && typeof (opt as Logger).child === 'function') return opt as Logger;
  return pino({
    // Credentials travel in headers, which are never logged; this guards anything that is added later.
    redact: ['req.headers.authorization', 'headers.authorization'],
    ...(opt as LoggerOptions),
  });
}
