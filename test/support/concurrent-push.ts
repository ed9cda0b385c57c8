/**
 * One "client" of the concurrency test: its own Repository over its own connection pool, pushing a blob
 * shared by every client (the same bytes), a blob of its own, a manifest naming both, and tagging that
 * manifest with a tag shared by all clients of its repository and a tag of its own. Used in-process and
 * by concurrent-push-child.ts in other OS processes.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { Agent } from 'undici';
import type { Descriptor } from '../../src/oci/descriptor.js';
import { buildImageManifest } from '../../src/oci/manifest.js';
import { Repository } from '../../src/remote/repository.js';
import { Transport } from '../../src/remote/transport.js';
import { fixtureBlob, type FixtureBlob } from './storage-fixtures.js';

export const CLIENTS = 16;
export const SHARED_TAG = 'shared';
export const CONFIG_TYPE = 'application/vnd.lading.test.conc.config';
export const ARTIFACT_TYPE = 'application/vnd.lading.test.conc';
/** Small thresholds so that the chunked clients really send several PATCHes. */
export const CHUNKED = { chunkThreshold: 16 * 1024, chunkSize: 40 * 1024 };

/** The blob every client pushes (five 40 KiB chunks and a tail for the chunked ones). */
export function sharedBlob(): FixtureBlob {
  return fixtureBlob('conc-shared', 5 * 40 * 1024 + 777);
}

export function ownBlob(i: number): FixtureBlob {
  return fixtureBlob(`conc-own-${i}`, 96 * 1024 + 517 * i);
}

/** Three of every four clients push to one repository, the fourth to another: the shared blob spans both. */
export function repositoryOf(i: number): string {
  return i % 4 === 3 ? 'conc/other' : 'conc/app';
}

export function ownTag(i: number): string {
  return `client-${i}`;
}

/** Even clients upload in chunks, odd ones in one PUT. */
export function isChunked(i: number): boolean {
  return i % 2 === 0;
}

export function manifestOf(i: number): { bytes: Buffer; descriptor: Descriptor } {
  const own = ownBlob(i);
  const shared = sharedBlob();
  const { bytes, descriptor } = buildImageManifest({
    config: { mediaType: CONFIG_TYPE, digest: own.digest, size: own.size },
    layers: [{ mediaType: 'application/octet-stream', digest: shared.digest, size: shared.size }],
    artifactType: ARTIFACT_TYPE,
    annotations: { 'org.example.client': String(i) },
  });
  return { bytes, descriptor };
}

export interface ClientResult {
  client: number;
  repository: string;
  tag: string;
  manifest: string;
  own: string;
  shared: string;
}

export function sha256(bytes: Uint8Array): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
}

/** Runs client `i` against the registry at `host` (`127.0.0.1:<port>`). */
export async function runClient(host: string, i: number): Promise<ClientResult> {
  const dispatcher = new Agent({ connections: 4 });
  try {
    const repo = new Repository(`${host}/${repositoryOf(i)}`, {
      transport: new Transport({ dispatcher }),
      ...(isChunked(i) ? CHUNKED : {}),
    });
    const shared = sharedBlob();
    const own = ownBlob(i);
    // Both blobs at once: the shared one races every other client's, the own one races nothing.
    await Promise.all(
      [shared, own].map((b) => repo.push({ mediaType: 'application/octet-stream', digest: b.digest, size: b.size }, Readable.from([b.bytes]))),
    );
    const { bytes, descriptor } = manifestOf(i);
    // Half the clients move the shared tag first, half their own tag first.
    const tags = i % 4 < 2 ? [SHARED_TAG, ownTag(i)] : [ownTag(i), SHARED_TAG];
    for (const tag of tags) await repo.pushManifest(descriptor, bytes, tag);
    return { client: i, repository: repositoryOf(i), tag: ownTag(i), manifest: descriptor.digest, own: own.digest, shared: shared.digest };
  } finally {
    await dispatcher.close();
  }
}
