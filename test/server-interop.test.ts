/**
 * skopeo moves content into `lading serve` and back out byte for byte: the server speaks the protocol a
 * third-party client expects, not just lading's own.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OciLayout } from '../src/content/layout.js';
import { fetchBytes } from '../src/content/read.js';
import { manifestChildren, parseManifest } from '../src/oci/manifest.js';
import { Repository } from '../src/remote/repository.js';
import { startRegistry, type RunningRegistry } from '../src/server/serve.js';
import { lading } from './support/cli.js';
import { requirePeer } from './support/peers.js';
import { runTool } from './support/tool.js';



let reg: RunningRegistry | undefined;
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-server-interop-'));
});
after(async () => {
  await reg?.close();
  await rm(work, { recursive: true, force: true });
});

async function ready(t: TestContext): Promise<boolean> {
  if (!requirePeer(t, 'skopeo')) return false;
  reg ??= await startRegistry({ root: join(work, 'data') });
  return true;
}

async function graphDigests(target: OciLayout | Repository, tag: string): Promise<string[]> {
  const root = await target.resolve(tag);
  const parsed = parseManifest(await fetchBytes(target, root), root.mediaType);
  return [root.digest, ...manifestChildren(parsed).map((d) => d.digest)];
}

test('skopeo copies an OCI layout into lading serve and back with identical digests', async (t) => {
  if (!(await ready(t))) return;
  const src = join(work, 'src');
  await mkdir(join(src, 'tree'), { recursive: true });
  await writeFile(join(src, 'big.bin'), randomBytes(3 * 1024 * 1024 + 7));
  await writeFile(join(src, 'tree', 'a.txt'), 'a');
  const layoutDir = join(work, 'layout-in');
  const made = await lading(['push', `layout:${layoutDir}:v1`, 'big.bin', 'tree', '--json'], { cwd: src });
  assert.equal(made.code, 0, made.stderr);
  const original = await graphDigests(await OciLayout.open(layoutDir), 'v1');

  await runTool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layoutDir}:v1`, `docker://${reg!.host}/interop/app:v1`]);
  assert.deepEqual(await graphDigests(new Repository(`${reg!.host}/interop/app`), 'v1'), original);

  const outDir = join(work, 'layout-out');
  await runTool('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg!.host}/interop/app:v1`, `oci:${outDir}:v1`]);
  assert.deepEqual(await graphDigests(await OciLayout.open(outDir), 'v1'), original);

  // A second push finds every blob present (HEAD) and changes nothing.
  await runTool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${outDir}:v1`, `docker://${reg!.host}/interop/app:v2`]);
  assert.equal((await new Repository(`${reg!.host}/interop/app`).resolve('v2')).digest, original[0]);
  const raw = await runTool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg!.host}/interop/app:v2`]);
  assert.equal(JSON.parse(raw).layers.length, 2);
});
