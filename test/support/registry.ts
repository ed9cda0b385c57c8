import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { packageOf, which } from './peers.js';

export interface DockerRegistry {
  /** `http://127.0.0.1:<port>` */
  url: string;
  /** `127.0.0.1:<port>`, as references and skopeo want it. */
  host: string;
  /** The temp directory holding the config, the htpasswd file and the storage (under `data/`). */
  root: string;
  stop(): Promise<void>;
}

export interface StartOptions {
  htpasswd?: { user: string; password: string };
}

const STARTUP_MS = 10_000;
const POLL_MS = 50;
const STDERR_KEEP = 64 * 1024;

/**
 * Runs CNCF distribution (`docker-registry`) on loopback for one test. It listens on port 0, so the
 * kernel picks a free port with no window for another process to take it; the real port is read from
 * the "listening on" line the registry logs.
 */
export async function startDockerRegistry(opts: StartOptions = {}): Promise<DockerRegistry> {
  const bin = which('docker-registry');
  if (!bin) throw new Error(`docker-registry is not on PATH (apt-get install -y ${packageOf('docker-registry')})`);
  const root = await mkdtemp(join(tmpdir(), 'lading-registry-'));
  try {
    const config: Record<string, unknown> = {
      version: '0.1',
      // "info" is needed for the line that names the port; access logs are only noise here.
      log: { level: 'info', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: join(root, 'data') },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http: { addr: '127.0.0.1:0', secret: randomBytes(16).toString('hex') },
    };
    if (opts.htpasswd) {
      const path = join(root, 'htpasswd');
      await writeFile(path, htpasswdLine(opts.htpasswd.user, opts.htpasswd.password), { mode: 0o600 });
      config.auth = { htpasswd: { realm: 'lading-test', path } };
    }
    const configPath = join(root, 'config.yml');
    // JSON is valid YAML, and it quotes paths correctly whatever they contain.
    await writeFile(configPath, JSON.stringify(config, null, 2));
    return await launch(bin, configPath, root, opts.htpasswd !== undefined);
  } catch (err) {
    await rm(root, { recursive: true, force: true });
    throw err;
  }
}

function htpasswdLine(user: string, password: string): string {
  if (!which('htpasswd')) throw new Error(`htpasswd is not on PATH (apt-get install -y ${packageOf('htpasswd')})`);
  // The password goes through stdin so that it never shows in a process listing.
  return execFileSync('htpasswd', ['-niB', user], { input: password, encoding: 'utf8' });
}

async function launch(bin: string, configPath: string, root: string, auth: boolean): Promise<DockerRegistry> {
  const child = spawn(bin, ['serve', configPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const keep = (chunk: Buffer): void => {
    log = (log + chunk.toString('utf8')).slice(-STDERR_KEEP);
  };
  // Both pipes are drained for the registry's whole life: a full pipe would block its logging.
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);

  // A test that forgets stop(), or fails before reaching it, must not leave a registry behind.
  const onExit = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    rmSync(root, { recursive: true, force: true });
  };
  process.on('exit', onExit);
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stderr as unknown as { unref?: () => void }).unref?.();

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    process.off('exit', onExit);
    await terminate(child);
    await rm(root, { recursive: true, force: true });
  };

  try {
    const port = await portFromLog(child, () => log);
    const host = `127.0.0.1:${port}`;
    const url = `http://${host}`;
    await waitReady(child, url, auth, () => log);
    return { url, host, root, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

function failure(what: string, log: string): Error {
  return new Error(`docker-registry ${what}; its log:\n${log.trim() || '(empty)'}`);
}

async function portFromLog(child: ChildProcess, log: () => string): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    const check = (): void => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(log());
      if (m) {
        cleanup();
        resolve(Number(m[1]));
      }
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(failure(`exited during startup (code ${code}, signal ${signal})`, log()));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(failure(`could not be started: ${err.message}`, log()));
    };
    // This timer is a bound on startup, not a synchronisation point.
    const timer = setTimeout(() => {
      cleanup();
      reject(failure(`did not log a listening address within ${STARTUP_MS} ms`, log()));
    }, STARTUP_MS);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout!.off('data', check);
      child.stderr!.off('data', check);
      child.off('exit', onExit);
      child.off('error', onError);
    };
    child.stdout!.on('data', check);
    child.stderr!.on('data', check);
    child.once('exit', onExit);
    child.once('error', onError);
    check();
  });
}

/** Polls `GET /v2/` until it answers as a ready registry does: 200, or 401 when auth is on. */
async function waitReady(child: ChildProcess, url: string, auth: boolean, log: () => string): Promise<void> {
  const deadline = Date.now() + STARTUP_MS;
  const maxAttempts = Math.ceil(STARTUP_MS / POLL_MS);
  let last = '';
  for (let attempt = 0; attempt < maxAttempts && Date.now() < deadline; attempt++) {
    if (child.exitCode !== null || child.signalCode !== null) throw failure('exited during startup', log());
    try {
      const res = await fetch(`${url}/v2/`, { signal: AbortSignal.timeout(1_000) });
      await res.body?.cancel();
      if (res.status === (auth ? 401 : 200)) return;
      last = `GET /v2/ answered ${res.status}`;
    } catch (err) {
      last = `GET /v2/ failed: ${(err as Error).message}`;
    }
    await delay(POLL_MS);
  }
  throw failure(`was not ready within ${STARTUP_MS} ms (${last})`, log());
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}
