/**
 * The bytes of a tar stream out of its (possibly compressed) source: compression detected from the magic
 * bytes (or named), gzip through node:zlib, zstd through fzstd (Node 20's zlib has none), every source
 * byte read to the end (a verifying source reports a bad digest only there), and bounds on what a
 * small input may expand to: a ratio of output to input, and for zstd the window a frame may ask for
 * (fzstd would allocate whatever a frame header declares).
 */
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';

export type Compression = 'none' | 'gzip' | 'zstd';

/** A problem with the compressed layer (unsupported format, bomb, corrupt stream). */
export class CompressionError extends Error {
  override name = 'CompressionError';
}

export interface DecompressLimits {
  /** Output bytes per input byte beyond which (after the first MiB) the stream is a bomb. */
  maxRatio: number;
  /** Largest zstd window (bytes of history the decoder must hold) a frame may declare. */
  maxZstdWindow: number;
}

const MAGIC_BYTES = 6;

/** What the first bytes of a stream are; a name for formats we recognize but do not read. */
export function sniff(head: Uint8Array): Compression | { unsupported: string } {
  const b = (i: number) => head[i] ?? -1;
  if (b(0) === 0x1f && b(1) === 0x8b) return 'gzip';
  if (b(0) === 0x28 && b(1) === 0xb5 && b(2) === 0x2f && b(3) === 0xfd) return 'zstd';
  // A zstd stream may open with a skippable frame (0x184D2A50..5F).
  if ((b(0) & 0xf0) === 0x50 && b(1) === 0x2a && b(2) === 0x4d && b(3) === 0x18) return 'zstd';
  if (b(0) === 0x1f && b(1) === 0x9d) return { unsupported: 'compress (.Z)' };
  if (b(0) === 0x1f && b(1) === 0xa0) return { unsupported: 'LZH (.Z)' };
  if (b(0) === 0x42 && b(1) === 0x5a && b(2) === 0x68) return { unsupported: 'bzip2' };
  if (b(0) === 0xfd && b(1) === 0x37 && b(2) === 0x7a && b(3) === 0x58 && b(4) === 0x5a && b(5) === 0x00) return { unsupported: 'xz' };
  if (b(0) === 0x04 && b(1) === 0x22 && b(2) === 0x4d && b(3) === 0x18) return { unsupported: 'lz4' };
  if (b(0) === 0x4c && b(1) === 0x5a && b(2) === 0x49 && b(3) === 0x50) return { unsupported: 'lzip' };
  if (b(0) === 0x50 && b(1) === 0x4b && (b(2) === 0x03 || b(2) === 0x05) && (b(3) === 0x04 || b(3) === 0x06)) return { unsupported: 'zip' };
  if (b(0) === 0x37 && b(1) === 0x7a && b(2) === 0xbc && b(3) === 0xaf) return { unsupported: '7z' };
  return 'none';
}

function asBuffer(chunk: unknown): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk);
  throw new TypeError('archive source must yield bytes');
}

/**
 * Reads the first bytes of `source` to find its compression (unless `forced`), and returns the tar bytes.
 * Input counting for the ratio bound covers every byte read from the source.
 */
export async function tarStream(
  source: AsyncIterable<unknown>,
  forced: Compression | undefined,
  limits: DecompressLimits,
): Promise<{ compression: Compression; chunks: AsyncGenerator<Buffer> }> {
  const it = source[Symbol.asyncIterator]();
  const head: Buffer[] = [];
  let headLength = 0;
  let done = false;
  if (forced === undefined) {
    while (headLength < MAGIC_BYTES) {
      const n = await it.next();
      if (n.done) {
        done = true;
        break;
      }
      const b = asBuffer(n.value);
      head.push(b);
      headLength += b.length;
    }
  }
  const counter = { in: 0 };
  async function* raw(): AsyncGenerator<Buffer> {
    try {
      for (const b of head) {
        counter.in += b.length;
        yield b;
      }
      if (done) return;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        const b = asBuffer(n.value);
        counter.in += b.length;
        yield b;
      }
    } finally {
      // Stopped early (a failure downstream): let the source release what it holds.
      if (!done) await it.return?.();
    }
  }
  let compression: Compression;
  if (forced !== undefined) compression = forced;
  else {
    const kind = sniff(head.length === 1 ? head[0]! : Buffer.concat(head));
    if (typeof kind !== 'string') {
      const what = kind.unsupported === 'zip' || kind.unsupported === '7z' ? 'archive format' : 'compression';
      throw new CompressionError(`unsupported ${what}: ${kind.unsupported} (lading reads tar, tar+gzip and tar+zstd)`);
    }
    compression = kind;
  }
  if (compression === 'none') return { compression, chunks: raw() };
  const inner = compression === 'gzip' ? gunzip(raw()) : unzstd(raw(), limits.maxZstdWindow);
  return { compression, chunks: ratioBound(inner, counter, limits.maxRatio) };
}

async function* ratioBound(inner: AsyncGenerator<Buffer>, counter: { in: number }, maxRatio: number): AsyncGenerator<Buffer> {
  let out = 0;
  for await (const chunk of inner) {
    out += chunk.length;
    if (out > 1024 * 1024 && out > counter.in * maxRatio) {
      throw new CompressionError(`archive decompresses to more than ${maxRatio}× its compressed size; refusing a compression bomb`);
    }
    yield chunk;
  }
}

async function* gunzip(input: AsyncGenerator<Buffer>): AsyncGenerator<Buffer> {
  const z = createGunzip({ chunkSize: 64 * 1024 });
  let failed: Error | undefined;
  // pipeline carries a source error into the gunzip (and so into the loop below) and destroys the
  // source when the loop stops early.
  pipeline(input, z, (err) => {
    if (err) failed = err;
  });
  try {
    for await (const chunk of z) yield chunk as Buffer;
  } catch (err) {
    throw wrapZlib(failed ?? err);
  }
  if (failed) throw wrapZlib(failed);
}

function wrapZlib(err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code === 'string' && e.code.startsWith('Z_')) return new CompressionError(`gzip stream is corrupt: ${e.message}`);
  return e instanceof Error ? e : new Error(String(e));
}

async function* unzstd(input: AsyncGenerator<Buffer>, maxWindow: number): AsyncGenerator<Buffer> {
  const frames = new ZstdFrameScanner(maxWindow);
  let out: Buffer[] = [];
  const d = new Decompress((data) => {
    if (data.length) out.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  // At most this much input per push: one push may expand up to ~128 KiB per input byte of RLE blocks,
  // and the output of a push is held until the push returns.
  const SLICE = 8 * 1024;
  const push = (chunk: Buffer, final: boolean): void => {
    try {
      d.push(chunk, final);
    } catch (err) {
      throw new CompressionError(`zstd stream is corrupt: ${(err as Error).message}`);
    }
  };
  for await (const chunk of input) {
    for (let off = 0; off < chunk.length; off += SLICE) {
      const piece = chunk.subarray(off, Math.min(chunk.length, off + SLICE));
      frames.scan(piece);
      push(piece, false);
      if (out.length) {
        const ready = out;
        out = [];
        yield* ready;
      }
    }
  }
  frames.finish();
  push(new Uint8Array(0) as Buffer, true);
  yield* out;
}

/**
 * Walks zstd frame and block headers (without decoding) to refuse a frame whose window is over the bound
 * before fzstd allocates it, and to know whether the stream ended at a frame boundary.
 */
export class ZstdFrameScanner {
  private state: 'magic' | 'fhd' | 'frame-header' | 'block-header' | 'skip' = 'magic';
  private need = 4;
  private buf = Buffer.alloc(18);
  private fill = 0;
  private skip = 0;
  private afterSkip: 'block-header' | 'magic' = 'magic';
  private checksum = false;
  private lastBlock = false;
  private frames = 0;

  constructor(private readonly maxWindow: number) {}

  scan(chunk: Uint8Array): void {
    let off = 0;
    while (off < chunk.length) {
      if (this.state === 'skip') {
        const take = Math.min(this.skip, chunk.length - off);
        off += take;
        this.skip -= take;
        if (this.skip === 0) this.afterSkipDone();
        continue;
      }
      const take = Math.min(this.need - this.fill, chunk.length - off);
      this.buf.set(chunk.subarray(off, off + take), this.fill);
      this.fill += take;
      off += take;
      if (this.fill < this.need) return;
      this.fill = 0;
      this.step();
    }
  }

  finish(): void {
    if (this.state !== 'magic' || this.fill !== 0) throw new CompressionError('zstd stream is truncated');
    if (this.frames === 0) throw new CompressionError('zstd stream has no frame');
  }

  private afterSkipDone(): void {
    if (this.afterSkip === 'block-header') {
      if (this.lastBlock) {
        this.lastBlock = false;
        if (this.checksum) this.startSkip(4, 'magic');
        else {
          this.state = 'magic';
          this.need = 4;
        }
      } else {
        this.state = 'block-header';
        this.need = 3;
      }
    } else {
      this.state = 'magic';
      this.need = 4;
    }
  }

  private startSkip(n: number, then: 'block-header' | 'magic'): void {
    this.afterSkip = then;
    if (n === 0) return this.afterSkipDone();
    this.state = 'skip';
    this.skip = n;
  }

  private step(): void {
    const b = this.buf;
    switch (this.state) {
      case 'magic': {
        const magic = b.readUInt32LE(0);
        if (magic === 0xfd2fb528) {
          this.state = 'fhd';
          this.need = 1;
          return;
        }
        if (magic >>> 4 === 0x184d2a5) {
          // Skippable frame: 4-byte size, then that much.
          this.state = 'frame-header';
          this.need = 4;
          this.skippable = true;
          return;
        }
        throw new CompressionError('not a zstd frame');
      }
      case 'fhd': {
        const fhd = b[0]!;
        if (fhd & 0x08) throw new CompressionError('zstd frame header has the reserved bit set');
        const single = (fhd >> 5) & 1;
        const dictBytes = [0, 1, 2, 4][fhd & 3]!;
        const fcsFlag = fhd >> 6;
        const fcsBytes = fcsFlag === 0 ? single : 1 << fcsFlag;
        this.fhd = fhd;
        this.checksum = ((fhd >> 2) & 1) === 1;
        this.state = 'frame-header';
        this.skippable = false;
        this.need = (single ? 0 : 1) + dictBytes + fcsBytes;
        if (this.need === 0) this.frameHeader();
        return;
      }
      case 'frame-header':
        if (this.skippable) {
          this.frames++;
          return this.startSkip(b.readUInt32LE(0), 'magic');
        }
        return this.frameHeader();
      case 'block-header': {
        const h = b[0]! | (b[1]! << 8) | (b[2]! << 16);
        this.lastBlock = (h & 1) === 1;
        const type = (h >> 1) & 3;
        const size = h >>> 3;
        if (type === 3) throw new CompressionError('zstd block of the reserved type');
        return this.startSkip(type === 1 ? 1 : size, 'block-header');
      }
    }
  }

  private skippable = false;
  private fhd = 0;

  private frameHeader(): void {
    const fhd = this.fhd;
    const single = (fhd >> 5) & 1;
    const dictBytes = [0, 1, 2, 4][fhd & 3]!;
    const fcsFlag = fhd >> 6;
    const fcsBytes = fcsFlag === 0 ? single : 1 << fcsFlag;
    let window: number;
    if (single) {
      const at = dictBytes;
      let fcs = 0;
      for (let i = fcsBytes - 1; i >= 0; i--) fcs = fcs * 256 + this.buf[at + i]!;
      if (fcsFlag === 1) fcs += 256;
      window = fcs;
    } else {
      const wd = this.buf[0]!;
      const base = 2 ** (10 + (wd >> 3));
      window = base + (base / 8) * (wd & 7);
    }
    if (window > this.maxWindow) {
      throw new CompressionError(`zstd frame needs a ${window}-byte window, over the ${this.maxWindow}-byte bound`);
    }
    this.frames++;
    this.state = 'block-header';
    this.need = 3;
  }
}
