/**
 * The bytes of a tar stream out of its (possibly compressed) source: compression detected from the magic
 * bytes (or named), gzip through node:zlib, zstd through fzstd (Node 20's zlib has none), every source
 * byte read to the end (a verifying source reports a bad digest only there), and bounds on what a
 * small input may expand to: a ratio of output to input, and for zstd the window a frame may ask for
 * (fzstd would allocate whatever a frame header declares).
 *
 * fzstd trusts its input more than a decoder of hostile input may, so a scanner (ZstdFrameScanner) walks
 * the frame and block headers ahead of it: blocks larger than zstd's block maximum are refused (fzstd
 * would expand a 4-byte RLE block to 2 MiB), input is handed to fzstd in pieces whose possible output is
 * bounded (everything one push produces is held until it returns), the ratio bound is checked as each
 * block comes out, and each frame's content checksum (XXH64), which fzstd skips, is verified.
 */
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { Decompress } from 'fzstd';
import { Xxh64 } from './xxh64.js';

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
  if (compression === 'zstd') return { compression, chunks: unzstd(raw(), limits) };
  return { compression, chunks: ratioBound(gunzip(raw()), counter, limits.maxRatio) };
}

/** Output allowed before the ratio bound applies. */
const RATIO_GRACE = 1024 * 1024;

function bomb(maxRatio: number): CompressionError {
  return new CompressionError(`archive decompresses to more than ${maxRatio}× its compressed size; refusing a compression bomb`);
}

async function* ratioBound(inner: AsyncGenerator<Buffer>, counter: { in: number }, maxRatio: number): AsyncGenerator<Buffer> {
  let out = 0;
  for await (const chunk of inner) {
    out += chunk.length;
    if (out > RATIO_GRACE && out > counter.in * maxRatio) throw bomb(maxRatio);
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

/** Most output one push to fzstd may produce (held in memory until the push returns), plus one block. */
const PUSH_OUTPUT = 2 * 1024 * 1024;

async function* unzstd(input: AsyncGenerator<Buffer>, limits: DecompressLimits): AsyncGenerator<Buffer> {
  const { maxRatio } = limits;
  const frames = new ZstdFrameScanner(limits.maxZstdWindow);
  let out: Buffer[] = [];
  let pushedIn = 0;
  let produced = 0;
  const d = new Decompress((data, final) => {
    if (final) return; // fzstd's empty end-of-stream call
    // Checked per block (at most 128 KiB), not per push: a push may decode thousands of blocks.
    produced += data.length;
    if (produced > RATIO_GRACE && produced > pushedIn * maxRatio) throw bomb(maxRatio);
    frames.output(data);
    if (data.length) out.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  });
  const push = (chunk: Uint8Array, final: boolean): void => {
    pushedIn += chunk.length;
    try {
      d.push(chunk, final);
    } catch (err) {
      if (err instanceof CompressionError) throw err;
      throw new CompressionError(`zstd stream is corrupt: ${(err as Error).message}`);
    }
  };
  for await (const chunk of input) {
    let off = 0;
    while (off < chunk.length) {
      // The scanner reads ahead of fzstd and stops where the blocks it has seen could produce PUSH_OUTPUT.
      const end = frames.scan(chunk, off, PUSH_OUTPUT);
      push(chunk.subarray(off, end), false);
      off = end;
      if (out.length) {
        const ready = out;
        out = [];
        yield* ready;
      }
    }
  }
  frames.finish();
  push(new Uint8Array(0), true);
  frames.finishOutput();
  yield* out;
}

/** A frame (not a skippable one) as the scanner has read it and fzstd has decoded it so far. */
interface Frame {
  checksum: Xxh64 | undefined;
  /** Blocks the scanner has read the headers of, and whether the last of them was the frame's last. */
  blocks: number;
  ended: boolean;
  /** Blocks fzstd has decoded. */
  decoded: number;
  /** The low 32 bits of XXH64 of the decoded frame, once decoded; the checksum stored in the frame, once read. */
  digest?: number;
  stored?: number;
}

/**
 * Walks zstd frame and block headers (without decoding) ahead of fzstd: refuses a frame whose window is
 * over the bound before fzstd allocates it, and a block over zstd's block maximum; knows whether the
 * stream ended at a frame boundary; bounds what each push to fzstd may produce; and checks each frame's
 * content checksum against what fzstd decoded (`output`).
 */
export class ZstdFrameScanner {
  private state: 'magic' | 'fhd' | 'frame-header' | 'block-header' | 'skip' | 'checksum' = 'magic';
  private need = 4;
  private buf = Buffer.alloc(18);
  private fill = 0;
  private skip = 0;
  private afterSkip: 'block-header' | 'magic' = 'magic';
  private checksum = false;
  private lastBlock = false;
  private frames = 0;
  /** Largest block of the current frame: min(window, 128 KiB). */
  private blockMax = 0;
  /** Output the blocks read in this scan may produce. */
  private budget = 0;
  /** Frames read and not yet fully decoded and checked, oldest first. */
  private readonly open: Frame[] = [];
  private current: Frame | undefined;

  constructor(private readonly maxWindow: number) {}

  /**
   * Reads chunk[from…]; returns where it stopped: the end of the chunk, or earlier, just after a block
   * header, once the blocks read could produce `maxOutput` bytes (the caller hands fzstd that much, then
   * scans on).
   */
  scan(chunk: Uint8Array, from = 0, maxOutput = Infinity): number {
    let off = from;
    this.budget = maxOutput;
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
      if (this.fill < this.need) return off;
      this.fill = 0;
      this.step();
      if (this.budget <= 0) return off;
    }
    return off;
  }

  finish(): void {
    if (this.state !== 'magic' || this.fill !== 0) throw new CompressionError('zstd stream is truncated');
    if (this.frames === 0) throw new CompressionError('zstd stream has no frame');
  }

  /** A block fzstd decoded (fzstd reports each block, in order, after the scanner has read its header). */
  output(data: Uint8Array): void {
    const f = this.open[0];
    if (!f || f.decoded >= f.blocks) throw new CompressionError('zstd decoder and frame scanner disagree');
    f.decoded++;
    f.checksum?.update(data);
    if (f.ended && f.decoded === f.blocks) {
      this.open.shift();
      if (f.checksum) {
        f.digest = f.checksum.digestParts()[1];
        f.checksum = undefined;
        this.settle(f);
      }
    }
  }

  /** Every frame read was decoded (and its checksum, if it has one, checked). */
  finishOutput(): void {
    if (this.open.length > 0) throw new CompressionError('zstd stream is truncated');
  }

  private settle(f: Frame): void {
    if (f.digest === undefined || f.stored === undefined) return;
    if (f.digest !== f.stored) {
      throw new CompressionError(
        `zstd frame checksum does not match its content (stored ${f.stored.toString(16).padStart(8, '0')}, computed ${f.digest.toString(16).padStart(8, '0')})`,
      );
    }
  }

  private afterSkipDone(): void {
    if (this.afterSkip === 'block-header') {
      if (this.lastBlock) {
        this.lastBlock = false;
        if (this.checksum) {
          this.state = 'checksum';
          this.need = 4;
        } else {
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
        // Block_Size (the regenerated size of an RLE block, the stored size of the others) is at most
        // Block_Maximum_Size; fzstd does not check, and would expand a 4-byte RLE block to 2 MiB.
        if (size > this.blockMax) throw new CompressionError(`zstd block of ${size} bytes, over the block maximum of ${this.blockMax} bytes`);
        // What the block may produce: its size for raw and RLE blocks, at most the block maximum otherwise.
        this.budget -= type === 2 ? this.blockMax : size;
        const f = this.current!;
        f.blocks++;
        if (this.lastBlock) f.ended = true;
        return this.startSkip(type === 1 ? 1 : size, 'block-header');
      }
      case 'checksum': {
        const f = this.current!;
        f.stored = b.readUInt32LE(0);
        this.settle(f);
        this.state = 'magic';
        this.need = 4;
        return;
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
    this.blockMax = Math.min(window, 128 * 1024);
    this.current = { checksum: this.checksum ? new Xxh64() : undefined, blocks: 0, ended: false, decoded: 0 };
    this.open.push(this.current);
    this.frames++;
    this.state = 'block-header';
    this.need = 3;
  }
}
