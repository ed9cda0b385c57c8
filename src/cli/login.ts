import type { Command } from 'commander';
import { LadingError } from '../errors.js';
import { Authorizer } from '../remote/auth/authorizer.js';
import { staticCredentials } from '../remote/auth/credentials.js';
import { undiciHttpDo } from '../remote/auth/http.js';
import { Registry } from '../remote/registry.js';
import { Transport, isLoopbackHost } from '../remote/transport.js';
import { credentialStore, VERSION, type GlobalOptions } from './context.js';
import { emit } from './output.js';
import { withCommon } from './common.js';

interface LoginOptions extends GlobalOptions {
  username?: string;
  passwordStdin?: boolean;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of process.stdin) {
    size += (chunk as Buffer).length;
    if (size > 64 * 1024) throw new LadingError('E_USAGE', 'the password on standard input is longer than 64 KiB');
    chunks.push(chunk as Buffer);
  }
  // One trailing newline is what `echo` adds, not part of the password.
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

export function register(program: Command): void {
  withCommon(
    program
      .command('login')
      .description('check credentials against a registry and store them in the Docker config')
      .argument('<registry>', 'registry host, e.g. ghcr.io or 127.0.0.1:5000')
      .requiredOption('-u, --username <name>', 'user name')
      .option('--password-stdin', 'read the password from standard input (the only way to give one)'),
  ).action(async (registry: string, opts: LoginOptions) => {
    if (!opts.passwordStdin) {
      throw new LadingError('E_USAGE', 'the password is read from standard input only', {
        hint: `printf '%s' "$PASSWORD" | lading login ${registry} -u ${opts.username} --password-stdin`,
      });
    }
    if (process.stdin.isTTY) throw new LadingError('E_USAGE', '--password-stdin needs the password piped in, not typed at a terminal');
    const password = await readStdin();
    if (!password) throw new LadingError('E_USAGE', 'the password on standard input is empty');
    const username = opts.username as string;
    const credentials = staticCredentials({ [registry]: { username, password } });
    const authorizer = new Authorizer({
      credentials,
      http: undiciHttpDo(),
      userAgent: `lading/${VERSION}`,
      allowInsecureRealm: (_r, realm) => isLoopbackHost(realm.host) || opts.plainHttp === true,
    });
    const transport = new Transport({ authorizer, plainHttp: opts.plainHttp ?? false, userAgent: `lading/${VERSION}` });
    await new Registry(registry, { transport }).ping();
    const store = credentialStore(opts);
    await store.store(registry, { username, password });
    emit(opts.json, { registry, username, stored: store.path }, () => `Login Succeeded (${registry})`);
  });

  withCommon(
    program
      .command('logout')
      .description('remove the stored credentials of a registry')
      .argument('<registry>', 'registry host'),
  ).action(async (registry: string, opts: GlobalOptions) => {
    const removed = await credentialStore(opts).erase(registry);
    emit(opts.json, { registry, removed }, () => (removed ? `Removed login credentials for ${registry}` : `Not logged in to ${registry}`));
  });
}
