import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { LadingError, type ErrorCode } from '../errors.js';

/** One entry of an OCI error body: `{"errors":[{"code","message","detail"}]}`. */
export interface RegistryErrorEntry {
  code: string;
  message?: string;
  detail?: unknown;
}

const MAX_ERROR_BODY = 64 * 1024;

/** Reads at most 64 KiB of an error response; a registry's error page must not cost memory. */
export async function readErrorBody(body: Dispatcher.ResponseData['body']): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buf = chunk as Buffer;
    if (size < MAX_ERROR_BODY) chunks.push(buf.subarray(0, MAX_ERROR_BODY - size));
    size += buf.length;
  }
  return Buffer.concat(chunks).toString('utf8');
}

export function parseErrorEntries(text: string | undefined): RegistryErrorEntry[] {
  if (!text) return [];
  try {
    const parsed = JSON.parse(text) as { errors?: unknown };
    if (!Array.isArray(parsed?.errors)) return [];
    return parsed.errors
      .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null && typeof e.code === 'string')
      .map((e) => ({ code: e.code as string, message: typeof e.message === 'string' ? e.message : undefined, detail: e.detail }));
  } catch {
    return [];
  }
}

const NOT_FOUND_CODES = new Set(['BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'NAME_UNKNOWN', 'BLOB_UPLOAD_UNKNOWN']);

function codeFor(status: number, entries: RegistryErrorEntry[]): ErrorCode {
  const codes = entries.map((e) => e.code);
  if (status === 401 || codes.includes('UNAUTHORIZED')) return 'E_UNAUTHORIZED';
  if (status === 403 || codes.includes('DENIED')) return 'E_DENIED';
  if (status === 404 || codes.some((c) => NOT_FOUND_CODES.has(c))) return 'E_NOT_FOUND';
  if (status === 429 || codes.includes('TOOMANYREQUESTS')) return 'E_TOO_MANY_REQUESTS';
  if (codes.includes('DIGEST_INVALID')) return 'E_DIGEST_MISMATCH';
  if (codes.includes('SIZE_INVALID')) return 'E_SIZE_MISMATCH';
  if (codes.includes('MANIFEST_INVALID') || codes.includes('MANIFEST_BLOB_UNKNOWN')) return 'E_MANIFEST_INVALID';
  if (codes.includes('UNSUPPORTED')) return 'E_UNSUPPORTED';
  return 'E_REGISTRY';
}

function hintFor(code: ErrorCode, registry: string | undefined): string | undefined {
  switch (code) {
    case 'E_UNAUTHORIZED':
      return `log in first: lading login ${registry ?? '<registry>'}`;
    case 'E_DENIED':
      return 'the credentials in use are not allowed this action on this repository';
    case 'E_NOT_FOUND':
      return 'check the repository name, tag or digest';
    case 'E_TOO_MANY_REQUESTS':
      return 'the registry is rate-limiting; wait and try again, or log in for a higher limit';
    default:
      return undefined;
  }
}

/** Turns an error response into a LadingError that names the request and the registry's own codes. */
export async function registryError(
  status: number,
  body: string | undefined,
  method: string,
  path: string,
  headers?: IncomingHttpHeaders,
  registry?: string,
): Promise<LadingError> {
  const entries = parseErrorEntries(body);
  const code = codeFor(status, entries);
  const said = entries.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join('; ');
  const plain = !said && body && !body.trimStart().startsWith('<') ? body.trim().slice(0, 200) : '';
  const message = `${method} ${path}: registry answered ${status}${said ? ` (${said})` : plain ? ` (${plain})` : ''}`;
  const retryAfter = headers?.['retry-after'];
  return new LadingError(code, message, {
    hint: hintFor(code, registry),
    details: {
      status,
      ...(entries.length ? { errors: entries } : {}),
      ...(retryAfter ? { retryAfter } : {}),
    },
  });
}
