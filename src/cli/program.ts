import { Command, CommanderError } from 'commander';
import { LadingError } from '../errors.js';
import { VERSION, cliSignal } from './context.js';
import { reportError } from './output.js';
type Register = (program: Command) => void;

/** Each verb's module, loaded only when needed: a run pays in memory and start-up only for its own verb. */
const MODULES = {
  push: () => import('./push.js'),
  pull: () => import('./pull.js'),
  copy: () => import('./copy.js'),
  tag: () => import('./tag.js'),
  inspect: () => import('./inspect.js'),
  ls: () => import('./ls.js'),
  resolve: () => import('./resolve.js'),
  families: () => import('./families.js'),
  key: () => import('./key.js'),
  sign: () => import('./sign.js'),
  verify: () => import('./verify.js'),
  install: () => import('./install.js'),
  login: () => import('./login.js'),
  serve: () => import('./serve.js'),
  maintenance: () => import('./maintenance.js'),
} satisfies Record<string, () => Promise<{ register: Register }>>;

type ModuleName = keyof typeof MODULES;

/** Verbs (and aliases) to the module that registers them. */
const VERBS: Record<string, ModuleName> = {
  push: 'push',
  pull: 'pull',
  copy: 'copy',
  cp: 'copy',
  tag: 'tag',
  inspect: 'inspect',
  ls: 'ls',
  resolve: 'resolve',
  lock: 'resolve',
  families: 'families',
  key: 'key',
  sign: 'sign',
  attest: 'sign',
  verify: 'verify',
  'verify-attestation': 'verify',
  'verify-blob': 'verify',
  discover: 'verify',
  install: 'install',
  list: 'install',
  uninstall: 'install',
  rollback: 'install',
  materialize: 'install',
  login: 'login',
  logout: 'login',
  serve: 'serve',
  gc: 'maintenance',
  fsck: 'maintenance',
};

/**
 * The program with every verb, or, given the command line, with only the verb it names (its help and
 * errors are the same either way); an unknown verb, or none, loads them all so that help lists them.
 */
export async function buildProgram(argv: readonly string[] = []): Promise<Command> {
  const program = new Command('lading')
    .description('typed artifacts over OCI registries: publish, sign, verify and install them safely')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError(false);
  const named = argv[0] !== undefined && Object.hasOwn(VERBS, argv[0]) ? VERBS[argv[0]] : undefined;
  const wanted = named ? [named] : (Object.keys(MODULES) as ModuleName[]);
  for (const name of wanted) (await MODULES[name]()).register(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

export async function run(argv: string[]): Promise<number> {
  const program = await buildProgram(argv);
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      // commander has printed its own message already; --json callers also get it structured.
      if (json) reportError(new LadingError('E_USAGE', err.message.replace(/^error: /, '')), true);
      return 2;
    }
    // However deep the cancellation surfaced, an interrupted run reports the interruption.
    return reportError(cliSignal.aborted ? cliSignal.reason : err, json);
  }
}
