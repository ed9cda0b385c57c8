import { spawn } from 'node:child_process';
import { LadingError } from '../../errors.js';

/**
 * Runs Docker credential helpers (`docker-credential-<name> get|store|erase`), the protocol of
 * docker/docker-credential-helpers: the request on stdin, the answer on stdout, a non-zero exit on failure.
 * Helper output is never put into errors: on failure it may well echo what it was given.
 */

export type HelperAction = 'get' | 'store' | 'erase';

export const DEFAULT_HELPER_TIMEOUT_MS = 30_000;
const MAX_HELPER_OUTPUT = 1 << 20;

export interface HelperOutput {
  exitCode: number;
  stdout: string;
  /** stdout and stderr together, only for recognising "credentials not found"; never shown. */
  combined: string;
}

/** Helper names come from config.json; anything path-like would run a program outside PATH. */
export function isValidHelperName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name);
}

export function helperProgram(name: string): string {
  return `docker-credential-${name}`;
}

export function runHelper(
  name: string,
  action: HelperAction,
  input: string,
  opts: { timeoutMs?: number; registry: string },
): Promise<HelperOutput> {
  const program = helperProgram(name);
  const details = { helper: program, action, registry: opts.registry };
  if (!isValidHelperName(name)) {
    return Promise.reject(
      new LadingError('E_CREDENTIALS', `the credential helper name "${name}" in the Docker config is not valid`, {
        hint: 'credsStore and credHelpers name a docker-credential-<name> program on PATH, without any path',
        details,
      }),
    );
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_HELPER_TIMEOUT_MS;
  return new Promise<HelperOutput>((resolve, reject) => {
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(program, [action], { stdio: ['pipe', 'pipe', 'pipe'], windowsHide: true });
    } catch (err) {
      reject(
        new LadingError('E_CREDENTIALS', `could not start the credential helper ${program}`, {
          details: { ...details, errno: (err as NodeJS.ErrnoException).code },
        }),
      );
      return;
    }
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle(() =>
        reject(
          new LadingError('E_CREDENTIALS', `the credential helper ${program} did not answer within ${timeoutMs} ms`, {
            hint: `check that ${program} works on its own (it may be waiting for a keychain unlock or a GUI prompt)`,
            details,
          }),
        ),
      );
    }, timeoutMs);

    const out: Buffer[] = [];
    const all: Buffer[] = [];
    let size = 0;
    const collect = (into: Buffer[][]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_HELPER_OUTPUT) {
        child.kill('SIGKILL');
        settle(() =>
          reject(new LadingError('E_CREDENTIALS', `the credential helper ${program} wrote too much output`, { details })),
        );
        return;
      }
      for (const list of into) list.push(chunk);
    };
    child.stdout!.on('data', collect([out, all]));
    child.stderr!.on('data', collect([all]));
    // A helper that exits without reading stdin makes the write fail with EPIPE; its exit code tells the story.
    child.stdin!.on('error', () => {});

    child.on('error', (err: NodeJS.ErrnoException) => {
      const missing = err.code === 'ENOENT';
      settle(() =>
        reject(
          new LadingError(
            'E_CREDENTIALS',
            missing
              ? `the credential helper ${program} was not found on PATH`
              : `could not run the credential helper ${program}`,
            {
              hint: missing
                ? `install ${program}, or remove it from credsStore/credHelpers in the Docker config`
                : `check that ${program} is an executable program`,
              details: { ...details, errno: err.code },
            },
          ),
        ),
      );
    });
    child.on('close', (code, signal) => {
      settle(() =>
        resolve({
          exitCode: code ?? (signal ? 128 : 1),
          stdout: Buffer.concat(out).toString('utf8'),
          combined: Buffer.concat(all).toString('utf8'),
        }),
      );
    });
    child.stdin!.end(input);
  });
}

/** The helpers' own "not found" answer (docker-credential-helpers prints "credentials not found in native keychain"). */
export function isNotFoundOutput(output: string): boolean {
  return /credentials not found/i.test(output);
}

export function helperFailed(name: string, action: HelperAction, registry: string, exitCode: number): LadingError {
  const program = helperProgram(name);
  const verb = action === 'get' ? 'read' : action === 'store' ? 'store' : 'erase';
  return new LadingError(
    'E_CREDENTIALS',
    `the credential helper ${program} could not ${verb} the credentials for ${registry} (exit code ${exitCode})`,
    {
      hint: `run \`${program} list\` to check that the helper works; its own output is not shown because it may contain secrets`,
      details: { helper: program, action, registry, exitCode },
    },
  );
}
