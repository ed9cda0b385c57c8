import { readFileSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { TrustedRoot } from '@sigstore/protobuf-specs';
import { toTrustMaterial, type TrustMaterial } from '@sigstore/verify';
import { LadingError } from '../errors.js';
import type { TrustedRootMaterial } from './types.js';

/** Resolved from this module so that it works both from src/trust (tsx) and dist/trust (built). */
const PUBLIC_GOOD_ROOT = new URL('../../assets/trusted-root.public-good.json', import.meta.url);
/** The public-good root is ~10 KiB; the cap bounds what a hostile file can make us parse. */
const MAX_TRUSTED_ROOT_BYTES = 4 * 1024 * 1024;
const MEDIA_TYPE_PREFIX = 'application/vnd.dev.sigstore.trustedroot';

let publicGood: TrustedRootMaterial | undefined;

function invalid(source: string, why: string, cause?: unknown): LadingError {
  return new LadingError('E_TRUSTED_ROOT_INVALID', `${source}: not a usable sigstore trusted root: ${why}`, {
    hint: 'a trusted root is the trusted_root.json that sigstore clients use (mediaType application/vnd.dev.sigstore.trustedroot+json)',
    ...(cause === undefined ? {} : { cause }),
  });
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Parses trusted-root JSON text; exported for callers that already hold the bytes. */
export function parseTrustedRoot(text: string, source: string): TrustedRootMaterial {
  if (Buffer.byteLength(text) > MAX_TRUSTED_ROOT_BYTES) throw invalid(source, `larger than ${MAX_TRUSTED_ROOT_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw invalid(source, 'it is not JSON');
  }
  if (!isRecord(doc)) throw invalid(source, 'it is not a JSON object');
  if (typeof doc.mediaType !== 'string' || !doc.mediaType.startsWith(MEDIA_TYPE_PREFIX)) {
    throw invalid(source, `mediaType is ${JSON.stringify(doc.mediaType)}`);
  }
  for (const field of ['tlogs', 'certificateAuthorities', 'ctlogs', 'timestampAuthorities']) {
    if (doc[field] !== undefined && !Array.isArray(doc[field])) throw invalid(source, `${field} is not a list`);
  }
  const count = (f: string): number => (Array.isArray(doc[f]) ? (doc[f] as unknown[]).length : 0);
  if (count('tlogs') + count('certificateAuthorities') + count('timestampAuthorities') === 0) {
    throw invalid(source, 'it names no certificate authority, transparency log or timestamp authority');
  }
  let material: TrustMaterial;
  try {
    // Converting now surfaces bad keys and certificates here rather than in the middle of a verification.
    material = toTrustMaterial(TrustedRoot.fromJSON(doc));
  } catch (err) {
    throw invalid(source, (err as Error).message, err);
  }
  return { source, material };
}

/** The public-good root shipped with lading, read once. Synchronous because verification is. */
export function defaultTrustedRoot(): TrustedRootMaterial {
  if (!publicGood) {
    const path = fileURLToPath(PUBLIC_GOOD_ROOT);
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new LadingError('E_TRUSTED_ROOT_INVALID', `the shipped public-good trusted root is missing (${path})`, { cause: err });
    }
    publicGood = parseTrustedRoot(text, 'public-good (shipped)');
  }
  return publicGood;
}

export async function loadTrustedRoot(path?: string): Promise<TrustedRootMaterial> {
  if (path === undefined) return defaultTrustedRoot();
  const unreadable = (err: unknown): LadingError =>
    new LadingError('E_TRUSTED_ROOT_INVALID', `cannot read the trusted root ${path}: ${(err as Error).message}`, { cause: err });
  // Stat the path before opening it: opening a FIFO would block, and a device is never a trusted root.
  try {
    if (!(await stat(path)).isFile()) throw invalid(path, 'it is not a regular file');
  } catch (err) {
    throw err instanceof LadingError ? err : unreadable(err);
  }
  let handle;
  try {
    handle = await open(path, 'r');
  } catch (err) {
    throw unreadable(err);
  }
  let text: string;
  try {
    // Checked again on the opened file (it may have been swapped since), before reading: a device such as
    // /dev/zero or a huge file is never read whole.
    let st;
    try {
      st = await handle.stat();
    } catch (err) {
      throw unreadable(err);
    }
    if (!st.isFile()) throw invalid(path, 'it is not a regular file');
    if (st.size > MAX_TRUSTED_ROOT_BYTES) throw invalid(path, `larger than ${MAX_TRUSTED_ROOT_BYTES} bytes`);
    // Read at most one byte past the cap, in case the file grew after the stat.
    const buf = Buffer.alloc(Math.min(st.size, MAX_TRUSTED_ROOT_BYTES) + 1);
    let n = 0;
    try {
      while (n < buf.length) {
        const { bytesRead } = await handle.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
    } catch (err) {
      throw unreadable(err);
    }
    if (n > MAX_TRUSTED_ROOT_BYTES) throw invalid(path, `larger than ${MAX_TRUSTED_ROOT_BYTES} bytes`);
    text = buf.subarray(0, n).toString('utf8');
  } finally {
    await handle.close().catch(() => undefined);
  }
  return parseTrustedRoot(text, path);
}

/** @internal the library form, for verify-bundle.ts */
export function trustMaterialOf(root: TrustedRootMaterial): TrustMaterial {
  return root.material as TrustMaterial;
}
