import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const exec = promisify(execFile);

/** Runs a peer tool (skopeo, umoci, podman…) with a bound on time; its stderr is in the error when it fails. */
export async function runTool(bin: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await exec(bin, args, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 16 << 20, encoding: 'utf8' });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${bin} ${args.join(' ')} failed: ${e.stderr || e.message}`);
  }
}
