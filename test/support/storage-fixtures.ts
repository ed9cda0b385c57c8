import { createHash } from 'node:crypto';
import { MediaType } from '../../src/oci/mediatype.js';

export interface FixtureBlob {
  bytes: Buffer;
  digest: string;
  size: number;
}

/** Deterministic pseudo-random bytes, so that two processes produce the same "shared" blobs. */
export function fixtureBlob(seed: string, size: number, algorithm: 'sha256' | 'sha512' = 'sha256'): FixtureBlob {
  const bytes = Buffer.alloc(size);
  let x = createHash('sha256').update(seed).digest().readUInt32LE(0) | 1;
  for (let i = 0; i + 4 <= size; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    bytes.writeInt32LE(x | 0, i);
  }
  for (let i = size - (size % 4); i < size; i++) bytes[i] = i & 0xff;
  return { bytes, digest: `${algorithm}:${createHash(algorithm).update(bytes).digest('hex')}`, size };
}

/** An OCI artifact manifest over `blobs` (the first is the config), optionally a referrer of `subject`. */
export function fixtureManifest(
  blobs: FixtureBlob[],
  subject?: string,
  note?: string,
): { bytes: Buffer; digest: string; mediaType: string } {
  const [config, ...layers] = blobs;
  const manifest: Record<string, unknown> = {
    schemaVersion: 2,
    mediaType: MediaType.ImageManifest,
    artifactType: 'application/vnd.lading.test',
    config: { mediaType: 'application/vnd.lading.test.config+json', digest: config!.digest, size: config!.size },
    layers: layers.map((l) => ({ mediaType: 'application/octet-stream', digest: l.digest, size: l.size })),
  };
  if (subject) manifest.subject = { mediaType: MediaType.ImageManifest, digest: subject, size: 10 };
  if (note) manifest.annotations = { note };
  const bytes = Buffer.from(JSON.stringify(manifest));
  return { bytes, digest: `sha256:${createHash('sha256').update(bytes).digest('hex')}`, mediaType: MediaType.ImageManifest };
}
