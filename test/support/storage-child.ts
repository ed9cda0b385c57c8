/**
 * A child process for the storage tests: pushes concurrently beside the test process, or stops at a chosen
 * point of a write and announces it on stdout so the test can SIGKILL it there.
 *
 *   push <root> <tag-prefix> <count>       push blobs (shared and own) and manifests, tag them, print "done"
 *   stall <root> <op> <repo>               create an upload, append half a blob, then close it (or push a
 *                                          manifest) through a driver that stops at <op>; prints
 *                                          "id <session>" then "mid <op>"
 *   loop <root> <repo>                     push manifests and re-point one tag forever; prints "looping"
 */
import { Readable } from 'node:stream';
import { FsDriver } from '../../src/server/storage/fs-driver.js';
import { RegistryStore } from '../../src/server/storage/store.js';
import { fixtureBlob, fixtureManifest } from './storage-fixtures.js';
import type { StorageDriver } from '../../src/server/storage/driver.js';

const [mode, root, a, b] = process.argv.slice(2);

function hang(): Promise<never> {
  // A timer keeps the process alive while it waits to be killed; the test always kills it.
  setInterval(() => undefined, 1 << 30);
  return new Promise<never>(() => undefined);
}

function stallingDriver(inner: FsDriver, op: string): StorageDriver {
  const matches = (name: string, key: string): boolean => {
    if (op === 'publish' && name === 'publish') return true;
    if (op === 'layer-link' && name === 'writeBytes' && key.includes('/_layers/')) return true;
    if (op === 'manifest-link' && name === 'writeBytes' && key.includes('/_manifests/revisions/')) return true;
    if (op === 'tag' && name === 'writeBytes' && key.includes('/_manifests/tags/')) return true;
    return false;
  };
  return new Proxy(inner, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver) as unknown;
      if (typeof value !== 'function') return value;
      return async (...args: unknown[]) => {
        const key = String(prop === 'publish' ? args[1] : args[0]);
        if (matches(String(prop), key)) {
          process.stdout.write(`mid ${op}\n`);
          return hang();
        }
        return (value as (...x: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

async function main(): Promise<void> {
  if (mode === 'push') {
    const store = new RegistryStore(new FsDriver(root!));
    const count = Number(b);
    await Promise.all(
      Array.from({ length: count }, async (_, i) => {
        const shared = fixtureBlob(`shared-${i}`, 64 * 1024 + i);
        const own = fixtureBlob(`${a}-${i}`, 4096 + i);
        for (const blob of [shared, own]) {
          const up = await store.createUpload('conc/repo');
          await store.appendUpload('conc/repo', up.id, Readable.from([blob.bytes.subarray(0, 1000)]), { offset: 0 });
          await store.completeUpload('conc/repo', up.id, blob.digest, { body: Readable.from([blob.bytes.subarray(1000)]) });
        }
        const m = fixtureManifest([shared, own]);
        await store.putManifest('conc/repo', m.bytes, m.mediaType, { tag: 'shared' });
        await store.putManifest('conc/repo', m.bytes, m.mediaType, { tag: `${a}-${i}` });
      }),
    );
    process.stdout.write('done\n');
    return;
  }
  if (mode === 'stall') {
    const op = a!;
    const repo = b!;
    const fs = new FsDriver(root!);
    const store = new RegistryStore(stallingDriver(fs, op));
    const blob = fixtureBlob('stall', 3 * 1024 * 1024);
    if (op === 'manifest-link' || op === 'tag') {
      const plain = new RegistryStore(fs);
      const up = await plain.createUpload(repo);
      await plain.completeUpload(repo, up.id, blob.digest, { body: Readable.from([blob.bytes]) });
      const m = fixtureManifest([blob], fixtureBlob('subject', 10).digest);
      process.stdout.write(`id ${m.digest}\n`);
      await store.putManifest(repo, m.bytes, m.mediaType, { tag: 'v1' });
      return;
    }
    const up = await store.createUpload(repo);
    const half = blob.bytes.length >> 1;
    await store.appendUpload(repo, up.id, Readable.from([blob.bytes.subarray(0, half)]), { offset: 0 });
    process.stdout.write(`id ${up.id}\n`);
    if (op === 'body') {
      // The closing PUT's body delivers part of the rest, then the client goes silent.
      const body = new Readable({ read() {} });
      body.push(blob.bytes.subarray(half, half + 100_000));
      const done = store.completeUpload(repo, up.id, blob.digest, { body });
      setImmediate(() => process.stdout.write('mid body\n'));
      await done;
      return;
    }
    await store.completeUpload(repo, up.id, blob.digest, { body: Readable.from([blob.bytes.subarray(half)]) });
    return;
  }
  if (mode === 'loop') {
    const repo = a!;
    const store = new RegistryStore(new FsDriver(root!));
    const blobs = [fixtureBlob('loop-0', 200_000), fixtureBlob('loop-1', 300_000)];
    for (const blob of blobs) {
      const up = await store.createUpload(repo);
      await store.completeUpload(repo, up.id, blob.digest, { body: Readable.from([blob.bytes]) });
    }
    // Bounded only by the kill that the test sends once "looping" is read.
    for (let i = 0; ; i++) {
      const m = fixtureManifest([blobs[i % 2]!], undefined, `${i}`);
      await store.putManifest(repo, m.bytes, m.mediaType, { tag: 'latest' });
      const blob = fixtureBlob(`loop-blob-${i}`, 500_000);
      const up = await store.createUpload(repo);
      await store.completeUpload(repo, up.id, blob.digest, { body: Readable.from([blob.bytes]) });
      if (i === 0) process.stdout.write('looping\n');
    }
  }
  throw new Error(`unknown mode ${mode}`);
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
