/**
 * What lading pushes, skopeo moves byte for byte; what skopeo writes, lading reads.
 */
import { after, before, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { OciLayout } from '../src/content/layout.js';
import { fetchBytes } from '../src/content/read.js';
import { parseManifest, manifestChildren } from '../src/oci/manifest.js';
import { Repository } from '../src/remote/repository.js';
import { lading } from './support/cli.js';
import { requirePeer } from './support/peers.js';
import { runTool } from './support/tool.js';
import { startDockerRegistry, type DockerRegistry } from './support/registry.js';



let reg: DockerRegistry | undefined;
let work: string;
before(async () => {
  work = await mkdtemp(join(tmpdir(), 'lading-skopeo-'));
});
after(async () => {
  await reg?.stop();
  await rm(work, { recursive: true, force: true });
});

async function ready(t: TestContext): Promise<boolean> {
  if (!requirePeer(t, 'docker-registry') || !requirePeer(t, 'skopeo')) return false;
  reg ??= await startDockerRegistry();
  return true;
}

/** Every digest in the graph under a tag, read through lading. */
async function graphDigests(target: OciLayout | Repository, tag: string): Promise<string[]> {
  const root = await target.resolve(tag);
  const parsed = parseManifest(await fetchBytes(target, root), root.mediaType);
  return [root.digest, ...manifestChildren(parsed).map((d) => d.digest)];
}

test('skopeo copies a lading-pushed artifact to a layout and back without changing a digest', async (t) => {
  if (!(await ready(t))) return;
  const src = join(work, 'src');
  await mkdir(join(src, 'dir'), { recursive: true });
  await writeFile(join(src, 'payload.bin'), randomBytes(500_000));
  await writeFile(join(src, 'dir', 'x.txt'), 'x');
  const pushed = await lading(['push', `${reg!.host}/interop/art:v1`, 'payload.bin', 'dir', '--artifact-type', 'application/vnd.example.thing', '--json'], { cwd: src });
  assert.equal(pushed.code, 0, pushed.stderr);
  const original = await graphDigests(new Repository(`${reg!.host}/interop/art`), 'v1');

  const layoutDir = join(work, 'skopeo-layout');
  await runTool('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg!.host}/interop/art:v1`, `oci:${layoutDir}:v1`]);
  assert.deepEqual(await graphDigests(await OciLayout.open(layoutDir), 'v1'), original);

  await runTool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layoutDir}:v1`, `docker://${reg!.host}/interop/back:v1`]);
  assert.deepEqual(await graphDigests(new Repository(`${reg!.host}/interop/back`), 'v1'), original);

  const raw = await runTool('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${reg!.host}/interop/back:v1`]);
  assert.equal(JSON.parse(raw).artifactType, 'application/vnd.example.thing');

  // lading pulls from the layout skopeo wrote, as it would from a registry.
  const out = join(work, 'from-skopeo');
  const pulled = await lading(['pull', `layout:${layoutDir}:v1`, '-o', out, '--json']);
  assert.equal(pulled.code, 0, pulled.stderr);
  assert.deepEqual((await readdir(out)).sort(), ['dir', 'payload.bin']);
  assert.ok((await readFile(join(out, 'payload.bin'))).equals(await readFile(join(src, 'payload.bin'))));
  assert.equal(await readFile(join(out, 'dir', 'x.txt'), 'utf8'), 'x');
});

test('a layout lading writes is read by skopeo, which pushes it unchanged', async (t) => {
  if (!(await ready(t))) return;
  const src = join(work, 'src2');
  await mkdir(src, { recursive: true });
  await writeFile(join(src, 'a.txt'), 'from a lading layout');
  const layoutDir = join(work, 'lading-layout');
  const pushed = await lading(['push', `layout:${layoutDir}:v1`, 'a.txt', '--json'], { cwd: src });
  assert.equal(pushed.code, 0, pushed.stderr);
  const raw = await runTool('skopeo', ['inspect', '--raw', `oci:${layoutDir}:v1`]);
  assert.equal(JSON.parse(raw).layers[0].annotations['org.opencontainers.image.title'], 'a.txt');
  await runTool('skopeo', ['copy', '--dest-tls-verify=false', `oci:${layoutDir}:v1`, `docker://${reg!.host}/interop/from-layout:v1`]);
  assert.deepEqual(
    await graphDigests(new Repository(`${reg!.host}/interop/from-layout`), 'v1'),
    await graphDigests(await OciLayout.open(layoutDir), 'v1'),
  );
});

test('skopeo copies a typed artifact (file family, and a multi-platform cli index) into a layout with unchanged digests', async (t) => {
  if (!(await ready(t))) return;
  const src = join(work, 'typed');
  await mkdir(join(src, 'bin'), { recursive: true });
  await writeFile(join(src, 'notes.md'), '# release 1.4\n');
  await writeFile(join(src, 'bin', 'tool'), '#!/bin/sh\necho tool\n', { mode: 0o755 });
  await writeFile(join(src, 'notes.yaml'), 'apiVersion: lading.dev/v1\nkind: file\nmetadata:\n  name: notes\n  version: "1.4"\nspec:\n  mediaTypes: [text/markdown]\n');
  await writeFile(join(src, 'tool.yaml'), 'apiVersion: lading.dev/v1\nkind: cli\nmetadata:\n  name: tool\nspec:\n  executable: bin/tool\n');
  const file = await lading(['push', `${reg!.host}/interop/typed-file:v1`, 'notes.md', '--config', 'notes.yaml', '--json'], { cwd: src });
  assert.equal(file.code, 0, file.stderr);
  assert.equal(file.json.family, 'file');
  for (const args of [['--platform', 'linux/amd64'], ['--platform', 'linux/arm64'], ['--platform', 'linux/amd64', '--variant', 'substrate=firecracker']]) {
    await writeFile(join(src, 'bin', 'tool'), `#!/bin/sh\necho ${args.join(' ')}\n`, { mode: 0o755 });
    const cli = await lading(['push', `${reg!.host}/interop/tools/tool:v1`, 'bin', '--config', 'tool.yaml', ...args, '--json'], { cwd: src });
    assert.equal(cli.code, 0, cli.stderr);
  }

  for (const [repo, all] of [['interop/typed-file', false], ['interop/tools/tool', true]] as const) {
    const layoutDir = join(work, `typed-layout-${repo.replaceAll('/', '-')}`);
    const original = await graphDigests(new Repository(`${reg!.host}/${repo}`), 'v1');
    // --preserve-digests: skopeo fails rather than re-encode anything it cannot keep byte for byte.
    await runTool('skopeo', ['copy', ...(all ? ['--all'] : []), '--preserve-digests', '--src-tls-verify=false', `docker://${reg!.host}/${repo}:v1`, `oci:${layoutDir}:v1`]);
    const layout = await OciLayout.open(layoutDir);
    assert.deepEqual(await graphDigests(layout, 'v1'), original, repo);
    // What skopeo wrote is still a typed artifact to lading: the envelope comes back out of the layout.
    const out = join(work, `typed-out-${repo.replaceAll('/', '-')}`);
    const pulled = await lading(['pull', `layout:${layoutDir}:v1`, '-o', out, ...(all ? ['--platform', 'linux/arm64'] : []), '--json']);
    assert.equal(pulled.code, 0, pulled.stderr);
    const envelope = JSON.parse(await readFile(join(out, 'lading.envelope.json'), 'utf8'));
    assert.equal(envelope.kind, all ? 'cli' : 'file');
  }
});
