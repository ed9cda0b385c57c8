import { LadingError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';
import { MAX_MANIFEST_BYTES } from '../oci/manifest-types.js';
import type { Fetcher } from './interfaces.js';

/** Fetches a small piece of content (a manifest, a config) whole, verified, refusing anything over `max`. */
export async function fetchBytes(source: Fetcher, desc: Descriptor, max = MAX_MANIFEST_BYTES, signal?: AbortSignal): Promise<Buffer> {
  if (desc.size > max) {
    throw new LadingError(max === MAX_MANIFEST_BYTES ? 'E_MANIFEST_TOO_LARGE' : 'E_SIZE_MISMATCH', `${desc.digest} is ${desc.size} bytes, over the ${max}-byte limit for reading it whole`);
  }
  const body = await source.fetch(desc, { signal });
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks, size);
}
