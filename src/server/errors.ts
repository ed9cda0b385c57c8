import type { ServerResponse } from 'node:http';

/**
 * The error codes of the distribution spec (a 4XX body may carry no other), with the status each is
 * answered with by default; INTERNAL is for 5XX only.
 */
export const OciErrorStatus = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 415,
  TOOMANYREQUESTS: 429,
  INTERNAL: 500,
} as const;

export type OciErrorCode = keyof typeof OciErrorStatus;

/** A refusal the server answers with an OCI error body. */
export class OciError extends Error {
  readonly code: OciErrorCode;
  readonly status: number;
  readonly detail: unknown;
  readonly headers: Record<string, string>;

  constructor(code: OciErrorCode, message: string, opts: { detail?: unknown; status?: number; headers?: Record<string, string> } = {}) {
    super(message);
    this.name = 'OciError';
    this.code = code;
    this.status = opts.status ?? OciErrorStatus[code];
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
  }
}

/** Writes `{"errors":[{code,message,detail}]}`; HEAD requests get the status and no body. */
export function sendOciError(res: ServerResponse, err: OciError, head = false): void {
  const body = Buffer.from(JSON.stringify({ errors: [{ code: err.code, message: err.message, ...(err.detail === undefined ? {} : { detail: err.detail }) }] }));
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(err.status, { 'content-type': 'application/json', 'content-length': String(body.length), ...err.headers });
  res.end(head ? undefined : body);
}
