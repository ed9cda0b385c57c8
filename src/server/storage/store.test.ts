import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile, utimes, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { isLadingError } from '../../errors.js';
import { MediaType } from '../../oci/mediatype.js';
import { FsDriver } from './fs-driver.js';
import { RegistryStore, storageReason } from './store.js';
import { fixtureBlob, fixtureManifest, type FixtureBlob } from '../../../test/support/storage-fixtures.js';

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function fresh(opts: ConstructorParameters<typeof RegistryStore>[1] = {}): Promise<{ root: string; store: RegistryStore }> {
  const root = await mkdtemp(join(tmpdir(), 'lading-store-'));
  roots.push(root);
  return { root, store: new RegistryStore(new FsDriver(root), opts) };
}

async function text(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function push(store: RegistryStore, repo: string, blob: FixtureBlob): Promise<void> {
  const up = await store.createUpload(repo);
  await store.completeUpload(repo, up.id, blob.digest, { body: Readable.from([blob.bytes]) });
}

function reason(r: string) {
  return (err: unknown) => {
    assert.equal(storageReason(err), r, String(err));
    return true;
  };
}

/** Every file under `dir`, relative. */
async function files(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out.push(join(e.parentPath ?? (e as unknown as { path: string }).path, e.name).slice(dir.length + 1));
  }
  return out.sort();
}

describe('blobs and uploads', () => {
  it('round-trips a chunked upload and serves ranges', async () => {
    const { store } = await fresh();
    const blob = fixtureBlob('a', 100_000);
    const up = await store.createUpload('lib/app');
    assert.equal((await store.uploadStatus('lib/app', up.id)).size, 0);
    let s = await store.appendUpload('lib/app', up.id, Readable.from([blob.bytes.subarray(0, 40_000)]), { offset: 0, length: 40_000 });
    assert.equal(s.size, 40_000);
    s = await store.appendUpload('lib/app', up.id, Readable.from([blob.bytes.subarray(40_000, 70_000)]), { offset: 40_000 });
    assert.equal(s.size, 70_000);
    const done = await store.completeUpload('lib/app', up.id, blob.digest, { body: Readable.from([blob.bytes.subarray(70_000)]) });
    assert.deepEqual(done, { digest: blob.digest, size: blob.size });
    assert.deepEqual(await store.statBlob('lib/app', blob.digest), { digest: blob.digest, size: blob.size });
    const read = await store.readBlob('lib/app', blob.digest);
    assert.ok(read);
    assert.ok((await text(read.stream)).equals(blob.bytes));
    const part = await store.readBlob('lib/app', blob.digest, { start: 10, end: 19 });
    assert.ok((await text(part!.stream)).equals(blob.bytes.subarray(10, 20)));
    await assert.rejects(store.readBlob('lib/app', blob.digest, { start: 5, end: blob.size }), reason('range-invalid'));
    await assert.rejects(store.uploadStatus('lib/app', up.id), reason('upload-unknown'));
  });

  it('stores an empty blob', async () => {
    const { store } = await fresh();
    const empty = fixtureBlob('e', 0);
    const up = await store.createUpload('x');
    await store.completeUpload('x', up.id, empty.digest);
    assert.deepEqual(await store.statBlob('x', empty.digest), { digest: empty.digest, size: 0 });
  });

  it('refuses a chunk at the wrong offset and keeps the session as it was', async () => {
    const { store } = await fresh();
    const blob = fixtureBlob('b', 5000);
    const up = await store.createUpload('r');
    await store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(0, 1000)]), { offset: 0 });
    await assert.rejects(store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(2000)]), { offset: 2000 }), (err) => {
      assert.equal(storageReason(err), 'offset-mismatch');
      assert.equal((err as { details: { expected: number } }).details.expected, 1000);
      return true;
    });
    await assert.rejects(store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(0, 10)]), { offset: 0 }), reason('offset-mismatch'));
    // A chunk shorter than announced is cut back out.
    await assert.rejects(store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(1000, 1500)]), { offset: 1000, length: 900 }), reason('size-mismatch'));
    assert.equal((await store.uploadStatus('r', up.id)).size, 1000);
    await store.completeUpload('r', up.id, blob.digest, { body: Readable.from([blob.bytes.subarray(1000)]) });
    assert.ok(await store.statBlob('r', blob.digest));
  });

  it('refuses a wrong digest with nothing stored, and the session can still finish', async () => {
    const { root, store } = await fresh();
    const blob = fixtureBlob('c', 3000);
    const other = fixtureBlob('d', 3000);
    const up = await store.createUpload('r');
    await store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(0, 1000)]), { offset: 0 });
    await assert.rejects(store.completeUpload('r', up.id, other.digest, { body: Readable.from([blob.bytes.subarray(1000)]) }), reason('digest-mismatch'));
    assert.equal(await store.statBlob('r', other.digest), undefined);
    assert.equal(await store.statBlob('r', blob.digest), undefined);
    assert.deepEqual((await files(root)).filter((f) => f.startsWith('blobs/') || f.startsWith('repositories/')), []);
    assert.equal((await store.uploadStatus('r', up.id)).size, 1000);
    await store.completeUpload('r', up.id, blob.digest, { body: Readable.from([blob.bytes.subarray(1000)]) });
    assert.ok(await store.statBlob('r', blob.digest));
  });

  it('verifies sha512 digests, in one pass and after a restart', async () => {
    const { root, store } = await fresh();
    const blob = fixtureBlob('s512', 70_000, 'sha512');
    await push(store, 'r', blob);
    assert.deepEqual(await store.statBlob('r', blob.digest), { digest: blob.digest, size: blob.size });
    assert.match(await readdir(join(root, 'blobs')).then((x) => x.join()), /sha512/);
    // Chunked, then closed by a second store on the same root: no running hash there, the file is re-hashed.
    const blob2 = fixtureBlob('s512b', 90_000, 'sha512');
    const up = await store.createUpload('r');
    await store.appendUpload('r', up.id, Readable.from([blob2.bytes.subarray(0, 50_000)]), { offset: 0 });
    const restarted = new RegistryStore(new FsDriver(root));
    await restarted.appendUpload('r', up.id, Readable.from([blob2.bytes.subarray(50_000)]), { offset: 50_000 });
    await assert.rejects(restarted.completeUpload('r', up.id, fixtureBlob('x', 1, 'sha512').digest), reason('digest-mismatch'));
    await restarted.completeUpload('r', up.id, blob2.digest);
    assert.ok(await store.statBlob('r', blob2.digest));
    await assert.rejects(store.completeUpload('r', (await store.createUpload('r')).id, 'md5:abcd'), (err) => isLadingError(err, 'E_DIGEST_INVALID'));
  });

  it('bounds uploads by maxUploadBytes', async () => {
    const { store } = await fresh({ maxUploadBytes: 10_000 });
    const blob = fixtureBlob('big', 12_000);
    const up = await store.createUpload('r');
    await store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(0, 6000)]), { offset: 0 });
    await assert.rejects(store.appendUpload('r', up.id, Readable.from([blob.bytes.subarray(6000)]), { offset: 6000 }), reason('too-large'));
    await assert.rejects(store.appendUpload('r', up.id, Readable.from([]), { offset: 6000, length: 6000 }), reason('too-large'));
    assert.equal((await store.uploadStatus('r', up.id)).size, 6000);
  });

  it('keeps repositories apart until a blob is mounted', async () => {
    const { store } = await fresh();
    const blob = fixtureBlob('iso', 1234);
    await push(store, 'team/a', blob);
    assert.equal(await store.statBlob('team/b', blob.digest), undefined);
    assert.equal(await store.readBlob('team/b', blob.digest), undefined);
    assert.equal(await store.mountBlob('team/c', blob.digest, 'team/b'), undefined);
    assert.equal(await store.statBlob('team/c', blob.digest), undefined);
    assert.deepEqual(await store.mountBlob('team/b', blob.digest, 'team/a'), { digest: blob.digest, size: blob.size });
    assert.ok(await store.statBlob('team/b', blob.digest));
    assert.equal(await store.deleteBlob('team/a', blob.digest), true);
    assert.equal(await store.statBlob('team/a', blob.digest), undefined);
    assert.ok(await store.statBlob('team/b', blob.digest));
    assert.equal(await store.deleteBlob('team/a', blob.digest), false);
    // Upload sessions belong to their repository too.
    const up = await store.createUpload('team/a');
    await assert.rejects(store.uploadStatus('team/b', up.id), reason('upload-unknown'));
    await store.cancelUpload('team/a', up.id);
    await assert.rejects(store.uploadStatus('team/a', up.id), reason('upload-unknown'));
  });

  it('refuses path tricks in names, ids, tags and digests', async () => {
    const { root, store } = await fresh();
    const blob = fixtureBlob('p', 10);
    for (const name of ['../x', 'a/../../b', '/etc', 'a//b', 'A', 'a/_layers', '.', 'a\\b', 'a\0', 'x'.repeat(256), '']) {
      await assert.rejects(store.createUpload(name), reason('name-invalid'), name);
      await assert.rejects(store.statBlob(name, blob.digest), reason('name-invalid'), name);
      await assert.rejects(store.tags(name), reason('name-invalid'), name);
    }
    for (const id of ['../../etc', '..', 'a/b', '', 'x'.repeat(32) + '/..', '.'.repeat(32), 'A'.repeat(31) + '/']) {
      await assert.rejects(store.uploadStatus('r', id), reason('upload-unknown'), id);
      await assert.rejects(store.appendUpload('r', id, Readable.from([]), { offset: 0 }), reason('upload-unknown'), id);
      await assert.rejects(store.completeUpload('r', id, blob.digest), reason('upload-unknown'), id);
    }
    for (const digest of ['sha256:../../x', 'sha256:' + 'A'.repeat(64), '../sha256', 'sha256/..', 'sha256:' + 'a'.repeat(63)]) {
      await assert.rejects(store.statBlob('r', digest), (err) => isLadingError(err, 'E_DIGEST_INVALID'), digest);
      // Without a colon a reference is a tag, and these are not valid tags either.
      await assert.rejects(store.getManifest('r', digest), (err) => isLadingError(err, digest.includes(':') ? 'E_DIGEST_INVALID' : 'E_REFERENCE_INVALID'), digest);
    }
    for (const tag of ['..', '.hidden', '-x', 'a/b', 'x'.repeat(129), 'ü']) {
      await assert.rejects(store.getManifest('r', tag), reason('tag-invalid'), tag);
      await assert.rejects(store.deleteTag('r', tag), reason('tag-invalid'), tag);
    }
    const driver = new FsDriver(root);
    for (const key of ['../x', '/abs', 'a/../../x', 'a//b', './a', 'a\\..\\b', '']) {
      await assert.rejects(driver.stat(key), (err) => isLadingError(err, 'E_UNSAFE_PATH'), key);
      await assert.rejects(driver.writeBytes(key, 'x'), (err) => isLadingError(err, 'E_UNSAFE_PATH'), key);
    }
    assert.deepEqual(await files(root), []);
  });
});

describe('manifests, tags and referrers', () => {
  it('round-trips manifests by tag and digest, lists tags and repositories', async () => {
    const { store } = await fresh();
    const config = fixtureBlob('cfg', 50);
    const layer = fixtureBlob('layer', 5000);
    await push(store, 'lib/app', config);
    await push(store, 'lib/app', layer);
    const m = fixtureManifest([config, layer]);
    const put = await store.putManifest('lib/app', m.bytes, m.mediaType, { tag: 'v1' });
    assert.deepEqual(put, { digest: m.digest, size: m.bytes.length, mediaType: MediaType.ImageManifest });
    await store.putManifest('lib/app', m.bytes, m.mediaType, { tag: 'latest', digest: m.digest });
    for (const ref of ['v1', 'latest', m.digest]) {
      const got = await store.getManifest('lib/app', ref);
      assert.ok(got, ref);
      assert.ok(got.bytes.equals(m.bytes));
      assert.equal(got.digest, m.digest);
      assert.equal(got.mediaType, MediaType.ImageManifest);
    }
    assert.equal(await store.getManifest('lib/app', 'v2'), undefined);
    assert.equal(await store.getManifest('lib/other', m.digest), undefined);
    assert.deepEqual(await store.tags('lib/app'), ['latest', 'v1']);
    await push(store, 'lib', config);
    assert.deepEqual(await store.repositories(), ['lib', 'lib/app']);
    assert.equal(await store.hasRepository('lib/app'), true);
    assert.equal(await store.hasRepository('nope'), false);

    // An index naming the manifest.
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.ImageIndex, manifests: [{ mediaType: m.mediaType, digest: m.digest, size: m.bytes.length }] }));
    await store.putManifest('lib/app', index, MediaType.ImageIndex, { tag: 'multi' });
    assert.equal((await store.getManifest('lib/app', 'multi'))?.mediaType, MediaType.ImageIndex);

    assert.equal(await store.deleteTag('lib/app', 'latest'), true);
    assert.equal(await store.deleteTag('lib/app', 'latest'), false);
    assert.deepEqual(await store.tags('lib/app'), ['multi', 'v1']);
    assert.equal(await store.deleteManifest('lib/app', m.digest), true);
    assert.equal(await store.getManifest('lib/app', m.digest), undefined);
    assert.deepEqual(await store.tags('lib/app'), ['multi']);
    assert.equal(await store.deleteManifest('lib/app', m.digest), false);
  });

  it('refuses manifests naming unknown content, a wrong digest or bad JSON', async () => {
    const { store } = await fresh();
    const config = fixtureBlob('cfg2', 50);
    const layer = fixtureBlob('layer2', 500);
    await push(store, 'a', config);
    await push(store, 'b', layer);
    const m = fixtureManifest([config, layer]);
    await assert.rejects(store.putManifest('a', m.bytes, m.mediaType, { tag: 'x' }), (err) => {
      assert.equal(storageReason(err), 'manifest-blob-unknown');
      assert.deepEqual((err as { details: { missing: string[] } }).details.missing, [layer.digest]);
      return true;
    });
    assert.equal(await store.getManifest('a', m.digest), undefined);
    assert.deepEqual(await store.tags('a'), []);
    await store.putManifest('a', m.bytes, m.mediaType, { allowMissing: true });
    await assert.rejects(store.putManifest('a', m.bytes, m.mediaType, { digest: layer.digest }), reason('digest-mismatch'));
    await assert.rejects(store.putManifest('a', Buffer.from('{nope'), m.mediaType), (err) => isLadingError(err, 'E_JSON_INVALID'));
    await assert.rejects(store.putManifest('a', m.bytes, 'text/plain'), (err) => isLadingError(err, 'E_MEDIA_TYPE_UNSUPPORTED'));
    await assert.rejects(store.putManifest('a', m.bytes, m.mediaType, { tag: '..' }), reason('tag-invalid'));
  });

  it('records referrers pushed before their subject exists', async () => {
    const { store } = await fresh();
    const config = fixtureBlob('sigcfg', 20);
    await push(store, 'r', config);
    const subjectContent = fixtureBlob('subj-cfg', 30);
    await push(store, 'r', subjectContent);
    const subject = fixtureManifest([subjectContent]);
    const sig = fixtureManifest([config], subject.digest, 'sig');
    const put = await store.putManifest('r', sig.bytes, sig.mediaType);
    assert.equal(put.subject, subject.digest);
    const refs = await store.referrers('r', subject.digest);
    assert.deepEqual(refs, [
      { mediaType: MediaType.ImageManifest, digest: sig.digest, size: sig.bytes.length, artifactType: 'application/vnd.lading.test', annotations: { note: 'sig' } },
    ]);
    assert.deepEqual(await store.referrers('r', subject.digest, { artifactType: 'application/other' }), []);
    assert.deepEqual(await store.referrers('other', subject.digest), []);
    await store.putManifest('r', subject.bytes, subject.mediaType, { tag: 'v1' });
    assert.equal((await store.referrers('r', subject.digest)).length, 1);
    await store.deleteManifest('r', sig.digest);
    assert.deepEqual(await store.referrers('r', subject.digest), []);
    assert.equal((await store.fsck()).clean, true);
  });
});

describe('concurrency in one process', () => {
  it('16 concurrent pushes of the same and different blobs and one tag', async () => {
    const { root, store } = await fresh();
    const shared = fixtureBlob('shared', 256 * 1024);
    const manifests: string[] = [];
    await Promise.all(
      Array.from({ length: 16 }, async (_, i) => {
        const own = fixtureBlob(`own-${i}`, 10_000 + i);
        const up = await store.createUpload('c');
        // Chunked, so that sessions interleave on the event loop.
        await store.appendUpload('c', up.id, Readable.from([shared.bytes.subarray(0, 100_000)]), { offset: 0 });
        await store.completeUpload('c', up.id, shared.digest, { body: Readable.from([shared.bytes.subarray(100_000)]) });
        await push(store, 'c', own);
        const m = fixtureManifest([own, shared]);
        manifests.push(m.digest);
        await store.putManifest('c', m.bytes, m.mediaType, { tag: 'same' });
        await store.putManifest('c', m.bytes, m.mediaType, { tag: `t${i}` });
      }),
    );
    const fsck = await store.fsck();
    assert.deepEqual(fsck.problems, []);
    assert.equal(fsck.blobs, 16 + 1 + 16);
    const tagged = await store.getManifest('c', 'same');
    assert.ok(tagged && manifests.includes(tagged.digest));
    assert.equal((await store.tags('c')).length, 17);
    assert.deepEqual((await files(root)).filter((f) => f.includes('.tmp') || f.startsWith('_uploads')), []);
  });
});

describe('gc', () => {
  it('sweeps what nothing references, keeps the rest, and a dry run changes nothing', async () => {
    let clock = Date.now();
    const { root, store } = await fresh({ now: () => clock, uploadTtlMs: 1000 });
    const config = fixtureBlob('gc-cfg', 40);
    const layer = fixtureBlob('gc-layer', 4000);
    const orphan = fixtureBlob('gc-orphan', 3000);
    const dropped = fixtureBlob('gc-dropped', 100);
    for (const b of [config, layer, orphan, dropped]) await push(store, 'g', b);
    const m = fixtureManifest([config, layer]);
    await store.putManifest('g', m.bytes, m.mediaType, { tag: 'keep' });
    const gone = fixtureManifest([dropped]);
    await store.putManifest('g', gone.bytes, gone.mediaType);
    await store.deleteManifest('g', gone.digest);
    const stale = await store.createUpload('g');
    await store.appendUpload('g', stale.id, Readable.from([Buffer.from('abc')]), { offset: 0 });
    // Age everything past the grace period and the upload TTL.
    clock += 10_000;
    const past = new Date(Date.now() - 7200_000);
    for (const f of await files(root)) await utimes(join(root, f), past, past);

    const before = await files(root);
    const dry = await store.gc({ dryRun: true, graceMs: 5000 });
    assert.deepEqual(dry.removedBlobs.sort(), [dropped.digest, gone.digest, orphan.digest].sort());
    assert.deepEqual(dry.removedUploads, [stale.id]);
    assert.deepEqual(await files(root), before);

    const real = await store.gc({ graceMs: 5000 });
    assert.deepEqual(real.removedBlobs.sort(), dry.removedBlobs.sort());
    assert.equal(real.restoredBlobs.length, 0);
    assert.equal(await store.statBlob('g', orphan.digest), undefined);
    assert.ok(await store.statBlob('g', layer.digest));
    assert.ok(await store.getManifest('g', 'keep'));
    await assert.rejects(store.uploadStatus('g', stale.id), reason('upload-unknown'));
    const fsck = await store.fsck();
    assert.deepEqual(fsck.problems, []);
    assert.equal(fsck.blobs, 3);
    assert.deepEqual((await files(root)).filter((f) => f.startsWith('_trash') || f === '_gc.lock'), []);
  });

  it('keeps blobs of a push in flight (young links) and refuses a second gc', async () => {
    const { root, store } = await fresh();
    const blob = fixtureBlob('young', 500);
    await push(store, 'y', blob);
    const report = await store.gc();
    assert.deepEqual(report.removedBlobs, []);
    assert.ok(await store.statBlob('y', blob.digest));
    await writeFile(join(root, '_gc.lock'), JSON.stringify({ pid: process.ppid, startedAt: 0 }));
    await assert.rejects(store.gc(), reason('gc-running'));
    // A lock left by a dead process is taken over.
    await writeFile(join(root, '_gc.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, startedAt: 0 }));
    await store.gc();
  });

  it('running beside pushes, with no grace at all, never leaves a manifest or link dangling', async () => {
    const { store } = await fresh();
    const kept: string[] = [];
    for (let round = 0; round < 8; round++) {
      const work = Array.from({ length: 4 }, async (_, i) => {
        const config = fixtureBlob(`race-cfg-${i}`, 100);
        const layer = fixtureBlob(`race-layer-${round}-${i}`, 20_000);
        await push(store, 'race', config);
        await push(store, 'race', layer);
        const m = fixtureManifest([config, layer]);
        try {
          await store.putManifest('race', m.bytes, m.mediaType, { tag: `r${round}-${i}` });
          kept.push(m.digest);
        } catch (err) {
          // gc may take an unreferenced blob before the manifest names it: the push is refused, not broken.
          assert.equal(storageReason(err), 'manifest-blob-unknown');
        }
      });
      await Promise.all([...work, store.gc({ graceMs: 0 }).catch((err) => assert.equal(storageReason(err), 'gc-running'))]);
    }
    await store.gc({ graceMs: 0 });
    assert.deepEqual((await store.fsck()).problems, []);
    for (const d of kept) assert.ok(await store.getManifest('race', d));
  });

  it('puts back blobs a crashed gc left aside', async () => {
    const { root, store } = await fresh();
    const blob = fixtureBlob('trash', 700);
    await push(store, 't', blob);
    const hex = blob.digest.slice(7);
    await mkdir(join(root, `_trash/sha256-${hex}-abcdef`), { recursive: true });
    await rm(join(root, `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`));
    await writeFile(join(root, `_trash/sha256-${hex}-abcdef/data`), blob.bytes);
    assert.equal((await store.fsck()).clean, false);
    const report = await store.gc();
    assert.deepEqual(report.restoredBlobs, [blob.digest]);
    assert.deepEqual((await store.fsck()).problems, []);
  });
});

describe('fsck', () => {
  it('finds corrupt blobs, dangling links and tags', async () => {
    const { root, store } = await fresh();
    const blob = fixtureBlob('f', 900);
    await push(store, 'f', blob);
    const m = fixtureManifest([blob]);
    await store.putManifest('f', m.bytes, m.mediaType, { tag: 'v' });
    assert.deepEqual((await store.fsck()).problems, []);
    const hex = blob.digest.slice(7);
    await writeFile(join(root, `blobs/sha256/${hex.slice(0, 2)}/${hex}/data`), 'tampered');
    await writeFile(join(root, 'repositories/f/_manifests/tags/v/current/link'), 'sha256:' + 'b'.repeat(64));
    const kinds = (await store.fsck()).problems.map((p) => p.kind).sort();
    assert.deepEqual(kinds, ['blob-corrupt', 'tag-dangling']);
  });
});
