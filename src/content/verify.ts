import { Transform, type TransformCallback, type Readable } from 'node:stream';
import { LadingError } from '../errors.js';
import { Digester, hashableAlgorithm } from '../oci/digest.js';
import type { Descriptor } from '../oci/descriptor.js';

const verifiedFor = new WeakMap<Readable, string>();

/**
 * Passes bytes through while hashing and counting them. It fails as soon as more bytes arrive than
 * `desc.size` allows, and at the end when the size or digest differ: a consumer that only acts on a clean
 * end (rename into place, write a manifest) never acts on bad bytes.
 */
export class VerifyingStream extends Transform {
  readonly expected: Descriptor;
  /** Called with the running byte count as bytes pass; set by whoever draws progress. */
  onProgress: ((bytes: number) => void) | undefined;
  private readonly digester: Digester;
  private seen = 0;

  /** `head`: bytes already held by the caller (resuming at an offset), hashed before the stream's own. */
  constructor(desc: Descriptor, opts: { head?: Digester; headBytes?: number } = {}) {
    // Room for a few large chunks on each side, so that producer, hash and consumer overlap.
    super({ highWaterMark: 1 << 20 });
    this.expected = desc;
    this.digester = opts.head ?? new Digester(hashableAlgorithm(desc.digest));
    this.seen = opts.headBytes ?? 0;
    verifiedFor.set(this, `${desc.digest}/${desc.size}`);
  }

  get bytes(): number {
    return this.seen;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.expected.size) {
      done(sizeMismatch(this.expected, this.seen, true));
      return;
    }
    this.digester.update(chunk);
    this.onProgress?.(this.seen);
    done(null, chunk);
  }

  override _flush(done: TransformCallback): void {
    if (this.seen !== this.expected.size) {
      done(sizeMismatch(this.expected, this.seen, false));
      return;
    }
    const actual = this.digester.digest();
    if (actual !== this.expected.digest) {
      done(
        new LadingError('E_DIGEST_MISMATCH', `content of ${this.expected.digest} hashes to ${actual}`, {
          hint: 'the source served bytes other than the ones its descriptor names; nothing was kept',
          details: { expected: this.expected.digest, actual },
        }),
      );
      return;
    }
    done();
  }
}

function sizeMismatch(desc: Descriptor, seen: number, overrun: boolean): LadingError {
  const what = overrun ? `more than ${desc.size} bytes` : `${seen} of ${desc.size} bytes`;
  return new LadingError('E_SIZE_MISMATCH', `content of ${desc.digest}: got ${what}`, {
    hint: 'the source served content of another size than its descriptor says; nothing was kept',
    details: { digest: desc.digest, expected: desc.size, ...(overrun ? {} : { actual: seen }) },
  });
}

/** Wraps `body` in a verifying stream unless it already is one for this very descriptor. */
export function verified(body: Readable, desc: Descriptor): Readable {
  if (verifiedFor.get(body) === `${desc.digest}/${desc.size}`) return body;
  const v = new VerifyingStream(desc);
  body.on('error', (err) => v.destroy(err));
  // pipe() leaves the source open when the destination fails; let go of its file or socket too.
  v.on('close', () => {
    if (!body.readableEnded) body.destroy();
  });
  return body.pipe(v);
}

/** True when `body` verifies `desc` itself, so a store need not hash the same bytes a second time. */
export function isVerifiedFor(body: Readable, desc: Descriptor): boolean {
  return verifiedFor.get(body) === `${desc.digest}/${desc.size}`;
}
