import { Readable } from 'node:stream';
import { LadingError } from '../errors.js';
import type { Descriptor } from '../oci/descriptor.js';

/** Network failures after which a download picks up where it stopped. */
export const RESUMABLE_CODES = new Set([
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_RES_CONTENT_LENGTH_MISMATCH',
  'UND_ERR_CLOSED',
  'ECONNREFUSED',
]);

export function errorCode(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } };
  return e?.code && !String(e.code).startsWith('E_') ? e.code : e?.cause?.code;
}

/** Opens the blob at byte `pos`: the response body, and how many leading bytes of it to drop. */
export type OpenAt = (pos: number) => Promise<{ body: Readable; skip: number }>;

/**
 * The bytes of a blob from `offset`, reconnecting with a Range request when the connection drops or
 * ends short. Response bodies are piped straight through — no per-chunk promises — so a verifying
 * consumer costs little more than the hash. Verification is the consumer's.
 */
export class ResumingDownload extends Readable {
  private body: Readable | undefined;
  private opening = false;
  private pos: number;
  private skip = 0;
  private resumes = 0;

  constructor(
    private readonly open: OpenAt,
    private readonly desc: Descriptor,
    offset: number,
    private readonly maxResumes: number,
    private readonly signal?: AbortSignal,
  ) {
    super({ highWaterMark: 1 << 20 });
    this.pos = offset;
  }

  override _read(): void {
    if (this.body) this.body.resume();
    else if (!this.opening) void this.connect();
  }

  private async connect(): Promise<void> {
    this.opening = true;
    try {
      const { body, skip } = await this.open(this.pos);
      if (this.destroyed) {
        body.destroy();
        return;
      }
      this.skip = skip;
      this.body = body;
      body.on('data', (chunk: Buffer) => this.onData(chunk));
      body.once('end', () => this.onEnd());
      body.once('error', (err: Error) => this.onError(err));
    } catch (err) {
      this.destroy(err as Error);
    } finally {
      this.opening = false;
    }
  }

  private onData(chunk: Buffer): void {
    let buf = chunk;
    if (this.skip > 0) {
      // The registry ignored Range: drop what is already held.
      const drop = Math.min(this.skip, buf.length);
      this.skip -= drop;
      buf = buf.subarray(drop);
      if (buf.length === 0) return;
    }
    this.pos += buf.length;
    const more = this.push(buf);
    if (this.pos > this.desc.size) {
      // Past the descriptor's size: stop reading; the verifier reports the overrun.
      this.detach(true);
      this.push(null);
    } else if (!more) {
      this.body?.pause();
    }
  }

  private onEnd(): void {
    this.detach(false);
    if (this.pos >= this.desc.size || this.resumes >= this.maxResumes) {
      this.push(null);
      return;
    }
    this.resumes++;
    void this.connect();
  }

  private onError(err: Error): void {
    this.detach(true);
    if (this.signal?.aborted) {
      this.destroy(new LadingError('E_ABORTED', 'the operation was cancelled', { cause: err }));
      return;
    }
    const code = errorCode(err);
    if (!code || !RESUMABLE_CODES.has(code) || this.resumes >= this.maxResumes || this.pos >= this.desc.size) {
      this.destroy(
        new LadingError('E_NETWORK', `download of ${this.desc.digest} failed after ${this.pos} of ${this.desc.size} bytes: ${err.message}`, {
          cause: err,
          details: { digest: this.desc.digest, received: this.pos, ...(code ? { cause: code } : {}) },
        }),
      );
      return;
    }
    this.resumes++;
    void this.connect();
  }

  private detach(destroy: boolean): void {
    const body = this.body;
    this.body = undefined;
    if (!body) return;
    body.removeAllListeners('data');
    body.removeAllListeners('end');
    body.removeAllListeners('error');
    body.on('error', () => undefined);
    if (destroy) body.destroy();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.detach(true);
    callback(err);
  }
}
