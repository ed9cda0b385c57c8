import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { collect } from './common.js';
import { cliSignal } from './context.js';
import { emit } from './output.js';

interface ServeOptions {
  addr: string;
  root: string;
  htpasswd?: string;
  authConfig?: string;
  families: string[];
  json?: boolean;
  logLevel: string;
  installed?: string;
}

/** `HOST:PORT`, `[v6]:PORT` or `:PORT` (loopback). */
export function parseAddr(addr: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new LadingError('E_USAGE', `--addr ${JSON.stringify(addr)} is not HOST:PORT`, { hint: 'for example 127.0.0.1:5000, or 0.0.0.0:5000 to listen on every interface' });
  return { host: m[1] ?? (m[2] || '127.0.0.1'), port };
}

export function register(program: Command): void {
  program
    .command('serve')
    .description('run an OCI registry (distribution-spec 1.1) on this machine')
    .option('--addr <host:port>', 'where to listen', '127.0.0.1:5000')
    .option('--root <dir>', 'where content is stored', './lading-data')
    .option('--htpasswd <file>', 'require basic auth with the bcrypt users of this htpasswd -B file')
    .option('--auth-config <file>', 'token auth: users, per-repository rules and token settings from this YAML or JSON file')
    .option('--families <dir>', 'also be the schema authority for the families defined in this directory (repeatable; LADING_FAMILIES too)', collect, [])
    .option('--log-level <level>', 'pino log level (logs go to stderr as JSON lines)', 'info')
    .option('--installed <root>', 'instead of a registry, serve the content installed under this install root at /<name>/<version>/<path>')
    .option('--json', 'print where the registry listens as JSON')
    .action(async (opts: ServeOptions, command: Command) => {
      const { host, port } = parseAddr(opts.addr);
      if (opts.installed !== undefined) return serveInstalled(opts, command, host, port);
      if (opts.htpasswd && opts.authConfig) {
        throw new LadingError('E_USAGE', '--htpasswd and --auth-config cannot be used together', { hint: 'name the htpasswd file in the auth config instead (htpasswd: FILE)' });
      }
      // Loaded here: every other verb starts without the server and its logger.
      const [{ startRegistry }, { pino }, { Families, familyDirsFromEnv }] = await Promise.all([
        import('../server/serve.js'),
        import('pino'),
        import('../artifact/family.js'),
      ]);
      if (!pino.levels.values[opts.logLevel] && opts.logLevel !== 'silent') throw new LadingError('E_USAGE', `unknown --log-level ${opts.logLevel}`);
      // A family file that does not load stops the server here, before it listens: serving with a family
      // silently missing would store that family's artifacts unchecked.
      const families = await Families.load([...opts.families, ...familyDirsFromEnv()]);
      // stdout carries the result (the URL); logs go to stderr so that --json output stays parseable.
      const logger = pino({ level: opts.logLevel }, pino.destination({ fd: 2, sync: true }));
      const reg = await startRegistry({ root: opts.root, host, port, ...(opts.htpasswd ? { htpasswd: opts.htpasswd } : {}), ...(opts.authConfig ? { authConfig: opts.authConfig } : {}), logger, families });
      emit(opts.json, { url: reg.url, host: reg.host, root: reg.root }, () => `Listening on ${reg.url} (data in ${reg.root})`);
      // main.ts turns SIGINT/SIGTERM into this signal; a second signal exits at once.
      await new Promise<void>((done) => {
        if (cliSignal.aborted) done();
        else cliSignal.addEventListener('abort', () => done(), { once: true });
      });
      logger.info('shutting down');
      await reg.close();
      logger.flush();
    });
}


/** `lading serve --installed ROOT`: the installed-content handler on --addr, logged and stopped like the registry. */
async function serveInstalled(opts: ServeOptions, command: Command, host: string, port: number): Promise<void> {
  const registryOnly = [
    ['htpasswd', '--htpasswd'],
    ['authConfig', '--auth-config'],
    ['root', '--root'],
  ].filter(([key]) => command.getOptionValueSource(key!) === 'cli').map(([, flag]) => flag);
  if (opts.families.length > 0) registryOnly.push('--families');
  if (registryOnly.length > 0) {
    throw new LadingError('E_USAGE', `${registryOnly.join(', ')} cannot be used with --installed`, {
      hint: 'installed content is served read-only and without auth; those options are for the registry',
    });
  }
  const [{ startInstalledServer }, { pino }] = await Promise.all([import('../install/serve-installed.js'), import('pino')]);
  if (!pino.levels.values[opts.logLevel] && opts.logLevel !== 'silent') throw new LadingError('E_USAGE', `unknown --log-level ${opts.logLevel}`);
  const logger = pino({ level: opts.logLevel }, pino.destination({ fd: 2, sync: true }));
  const srv = await startInstalledServer({ root: opts.installed!, host, port, logger });
  emit(opts.json, { url: srv.url, host: srv.host, root: srv.root }, () => `Serving installed content of ${srv.root} on ${srv.url}`);
  await new Promise<void>((done) => {
    if (cliSignal.aborted) done();
    else cliSignal.addEventListener('abort', () => done(), { once: true });
  });
  logger.info('shutting down');
  await srv.close();
  logger.flush();
}
