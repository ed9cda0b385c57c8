import type { Readable } from 'node:stream';
import { LadingError } from '../errors.js';
import { MAX_MANIFEST_BYTES } from '../oci/manifest-types.js';

/**
 * Reads a small document (a manifest, a tags page, an index) whole, refusing anything over `max` bytes
 * before it is read further: a hostile registry must not be able to make lading hold a large body.
 */
export async function readCapped(body: AsyncIterable<unknown> & Partial<Readable>, max = MAX_MANIFEST_BYTES, what = 'document'): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    size += buf.length;
    if (size > max) {
      body.destroy?.();
      throw new LadingError(
        what === 'manifest' ? 'E_MANIFEST_TOO_LARGE' : 'E_PROTOCOL',
        `${what} is larger than ${max} bytes`,
        { hint: what === 'manifest' ? 'manifests are limited to 4 MiB by the distribution spec' : undefined },
      );
    }
    chunks.push(buf);
  }
  return Buffer.concat(chunks, size);
}

/** Splits a stream into buffers of exactly `size` bytes (the last may be shorter), holding one at a time. */
export async function* fixedChunks(body: AsyncIterable<unknown>, size: number): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let held = 0;
  for await (const chunk of body) {
    let buf = chunk as Buffer;
    while (buf.length > 0) {
      const take = Math.min(size - held, buf.length);
      parts.push(buf.subarray(0, take));
      held += take;
      buf = buf.subarray(take);
      if (held === size) {
        yield Buffer.concat(parts, held);
        parts = [];
        held = 0;
      }
    }
  }
  if (held > 0) yield Buffer.concat(parts, held);
}
