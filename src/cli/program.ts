import { Command, CommanderError } from 'commander';
import { LadingError } from '../errors.js';
import { VERSION, cliSignal } from './context.js';
import { reportError } from './output.js';
import { register as copy } from './copy.js';
import { register as inspect } from './inspect.js';
import { register as login } from './login.js';
import { register as ls } from './ls.js';
import { register as pull } from './pull.js';
import { register as push } from './push.js';
import { register as serve } from './serve.js';
import { register as maintenance } from './maintenance.js';
import { register as tag } from './tag.js';
import { register as families } from './families.js';
import { register as resolve } from './resolve.js';
import { register as key } from './key.js';
import { register as sign } from './sign.js';
import { register as verify } from './verify.js';
import { register as install } from './install.js';

export function buildProgram(): Command {
  const program = new Command('lading')
    .description('typed artifacts over OCI registries: publish, sign, verify and install them safely')
    .version(VERSION)
    .exitOverride()
    .showHelpAfterError(false);
  for (const register of [push, pull, copy, tag, inspect, ls, resolve, families, key, sign, verify, install, login, serve, maintenance]) register(program);
  for (const cmd of program.commands) cmd.exitOverride();
  return program;
}

export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
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
