/**
 * A fake install for the store tests, run in-process or by install-child.ts: it stages a payload of
 * `files` data files plus an executable sh script `bin/tool`, and goes through the store exactly as an
 * installer does (withLock → newStaging → fileIndex → commitVersion → switchCurrent (which exposes) → exposeCommand),
 * calling `phase` at each step so that a test can stop it there.
 */
import { createHash } from 'node:crypto';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileIndex } from '../../src/install/file-index.js';
import { openInstallRoot, type InstallRootOptions } from '../../src/install/store.js';

export interface FakeInstallOptions {
  name: string;
  version: string;
  /** Number of data files besides bin/tool. */
  files?: number;
  deps?: string[];
  command?: string;
  /** Recorded (and passed to exposeCommand): bin/<command> becomes a wrapper. */
  args?: string[];
  env?: Record<string, string>;
  /** Extra content, so that the same version can be given another digest. */
  salt?: string;
  phase?: (p: string) => void | Promise<void>;
}

/** The sh script the payload exposes: prints the package, the version and its arguments. */
export function toolScript(name: string, version: string): string {
  return `#!/bin/sh\necho "tool ${name} ${version} $*"\n`;
}

export async function fakeInstall(root: string, o: FakeInstallOptions): Promise<{ result: 'committed' | 'exists'; previous?: string }> {
  const phase = async (p: string): Promise<void> => {
    await o.phase?.(p);
  };
  const opts: InstallRootOptions = { checkpoint: (point) => phase(`cp:${point}`) };
  const r = await openInstallRoot(root, opts);
  await phase('opened');
  const out = await r.withLock(async () => {
    await phase('locked');
    const staging = await r.newStaging();
    const content = join(staging, 'content');
    await mkdir(join(content, 'data'), { recursive: true });
    await mkdir(join(content, 'bin'));
    const n = o.files ?? 20;
    for (let i = 0; i < n; i++) {
      await writeFile(join(content, 'data', `file-${i}.txt`), `${o.name} ${o.version} ${i} ${o.salt ?? ''}\n`.repeat(64));
      if (i === Math.floor(n / 2)) await phase('half-staged');
    }
    await writeFile(join(content, 'bin', 'tool'), toolScript(o.name, o.version));
    await chmod(join(content, 'bin', 'tool'), 0o755);
    const command = o.command ?? 'tool';
    const wrap = { ...(o.args ? { args: o.args } : {}), ...(o.env ? { env: o.env } : {}) };
    // As pullTyped writes it: reconcile reads it back for a version found on disk without a record.
    await writeFile(
      join(content, 'lading.envelope.json'),
      JSON.stringify({
        apiVersion: 'lading.dev/v1',
        kind: 'cli',
        metadata: { name: o.name, version: o.version },
        spec: { executable: 'bin/tool', name: command, deps: o.deps ?? [], ...wrap },
      }),
    );
    await phase('staged');
    const files = await fileIndex(content);
    const digest = `sha256:${createHash('sha256').update(JSON.stringify(files)).digest('hex')}`;
    const result = await r.commitVersion({
      stagingDir: content,
      name: o.name,
      version: o.version,
      files,
      record: {
        version: o.version,
        digest,
        reference: `example.test/${o.name}:${o.version}`,
        family: 'cli',
        installedAt: new Date().toISOString(),
        command,
        executable: 'bin/tool',
        ...wrap,
        deps: o.deps ?? [],
      },
    });
    await r.removeStaging(staging);
    await phase('committed');
    const previous = await r.switchCurrent(o.name, o.version);
    await phase('switched');
    // switchCurrent exposed the recorded command already; this finds it exactly right and writes nothing.
    await r.exposeCommand(o.name, command, 'bin/tool', wrap);
    await phase('exposed');
    return { result, ...(previous === undefined ? {} : { previous }) };
  });
  await phase('done');
  return out;
}
