// Child process for the install crash and concurrency tests.
//   install-child.ts install <root> <name> <version> <files> [<command>]   a fake install (install-fake.ts)
//   install-child.ts uninstall <root> <name>
//   install-child.ts rollback <root> <name>
// Prints "phase <p>" at each step. When the env var INSTALL_PAUSE_AT names a phase, prints "paused <p>" there
// and waits for a line on stdin before going on (the parent usually SIGKILLs it instead). Ends with
// "result <...>" and exit 0, or "error <code> <message>" and exit 1.
import { createInterface } from 'node:readline';
import { openInstallRoot } from '../../src/install/store.js';
import { fakeInstall } from './install-fake.js';

const pauseAt = process.env.INSTALL_PAUSE_AT;
const lines = createInterface({ input: process.stdin });
const waiting: Array<() => void> = [];
lines.on('line', () => waiting.shift()?.());

async function phase(p: string): Promise<void> {
  process.stdout.write(`phase ${p}\n`);
  if (p === pauseAt) {
    const resume = new Promise<void>((r) => waiting.push(r));
    process.stdout.write(`paused ${p}\n`);
    await resume;
  }
}

const [op, root, name, version, files, command] = process.argv.slice(2) as [string, string, string, string?, string?, string?];
try {
  if (op === 'install') {
    const out = await fakeInstall(root, { name, version: version!, files: Number(files ?? '20'), ...(command ? { command } : {}), phase });
    process.stdout.write(`result ${out.result}\n`);
  } else {
    const r = await openInstallRoot(root, { checkpoint: (point) => phase(`cp:${point}`) });
    if (op === 'uninstall') {
      await r.uninstall(name, { force: true });
      process.stdout.write('result uninstalled\n');
    } else if (op === 'rollback') {
      const { from, to } = await r.rollback(name);
      process.stdout.write(`result ${from} ${to}\n`);
    } else {
      throw new Error(`unknown op ${op}`);
    }
  }
  lines.close();
  process.exit(0);
} catch (err) {
  const e = err as { code?: string; message?: string };
  process.stdout.write(`error ${e.code ?? 'UNKNOWN'} ${e.message ?? String(err)}\n`);
  lines.close();
  process.exit(1);
}
