import { request, type Dispatcher } from 'undici';
import { LadingError } from '../../errors.js';
import type { HttpDo } from './types.js';

/** Token and auth responses are small JSON documents; anything larger is a misbehaving server. */
export const MAX_AUTH_RESPONSE_BYTES = 1 << 20;
const AUTH_TIMEOUT_MS = 30_000;

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return '(invalid URL)';
  }
}

/**
 * The default HttpDo over undici. It does not follow redirects: a token service that redirects would
 * otherwise carry the Authorization header to wherever it points.
 */
export function undiciHttpDo(dispatcher?: Dispatcher): HttpDo {
  return async (req, signal) => {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(req.url, {
        method: req.method,
        headers: req.headers,
        ...(req.body === undefined ? {} : { body: req.body }),
        ...(dispatcher ? { dispatcher } : {}),
        ...(signal ? { signal } : {}),
        // A stalled token service must not hold a login or a pull for undici's five-minute defaults.
        headersTimeout: AUTH_TIMEOUT_MS,
        bodyTimeout: AUTH_TIMEOUT_MS,
      });
    } catch (err) {
      if (signal?.aborted) throw new LadingError('E_ABORTED', 'the operation was cancelled', { cause: err });
      throw new LadingError('E_NETWORK', `could not reach ${originOf(req.url)}`, {
        cause: err,
        details: { origin: originOf(req.url) },
      });
    }
    const chunks: Buffer[] = [];
    let total = 0;
    try {
      for await (const chunk of res.body) {
        const buf = chunk as Buffer;
        total += buf.length;
        if (total > MAX_AUTH_RESPONSE_BYTES) {
          res.body.destroy();
          throw new LadingError(
            'E_PROTOCOL',
            `${originOf(req.url)} sent a response larger than ${MAX_AUTH_RESPONSE_BYTES} bytes to an authentication request`,
            { details: { origin: originOf(req.url), status: res.statusCode } },
          );
        }
        chunks.push(buf);
      }
    } catch (err) {
      if (err instanceof LadingError) throw err;
      if (signal?.aborted) throw new LadingError('E_ABORTED', 'the operation was cancelled', { cause: err });
      throw new LadingError('E_NETWORK', `the connection to ${originOf(req.url)} failed while reading a response`, {
        cause: err,
        details: { origin: originOf(req.url) },
      });
    }
    return {
      status: res.statusCode,
      headers: res.headers as Record<string, string | string[] | undefined>,
      body: Buffer.concat(chunks).toString('utf8'),
    };
  };
}
