/**
 * A streaming reader of tar headers (v7, ustar, pax and GNU), written for extraction of untrusted input:
 * it never buffers an entry's body (bodies pass through as slices of the input), bounds every header it
 * has to hold in memory, and treats anything it cannot read exactly as malformed rather than guessing.
 *
 * Its rules follow Go's archive/tar reader (which the go-archive-tar fixtures test): checksums must
 * match, numeric fields must parse (octal, or base-256 for large values), a pax record must be
 * `"<len> <key>=<value>\n"` with the length exact, NUL is refused in pax paths, link paths, user and
 * group names and in any pax key, and the last of several consecutive pax headers wins.
 *
 * It is stricter than Go's reader about where an archive ends, because malformed input must be an error,
 * never a partial success: the archive must end with its end-of-archive marker (two zero blocks, or one,
 * which some writers emit), anything after the marker must be zeros (record padding), and a pax or GNU
 * long-name header must have an entry after it. A stream that simply stops at a header boundary (which Go
 * accepts) is an archive truncated there, unless `allowMissingEndMarker` says to read it as Go does.
 */
import { isUtf8 } from 'node:buffer';

export const BLOCK = 512;

/** The input is not a well-formed tar archive (or exceeds a bound on its headers). */
export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

export type EntryType = 'file' | 'hardlink' | 'symlink' | 'directory' | 'char-device' | 'block-device' | 'fifo' | 'sparse' | 'other';

export interface TarHeader {
  /** The entry's name as the archive gives it (long names and pax paths applied), not yet checked. */
  path: string;
  linkpath: string;
  type: EntryType;
  /** The raw type flag ('0', '5', 'S', …), for reports. */
  typeflag: string;
  /** Bytes of body that follow the header (0 for header-only types such as links and directories). */
  size: number;
  mode: number;
  /** False when the name (or the link path) is not valid UTF-8 (it was decoded with replacement characters). */
  nameUtf8: boolean;
  linkUtf8: boolean;
}

export type TarEvent = { kind: 'entry'; header: TarHeader } | { kind: 'data'; chunk: Buffer } | { kind: 'end-entry' };

export interface TarLimits {
  /** Largest pax extended header, GNU long name/link or GNU sparse map, in bytes; also their sum per entry. */
  maxHeaderSize: number;
  /** Most consecutive metadata headers (pax, global pax, GNU long name/link) before one entry. */
  maxMetaHeaders: number;
  /** Most bytes accepted after the end-of-archive marker (record padding: they must be zeros). */
  maxTrailing: number;
  /**
   * Accept a stream that ends at a header boundary without the end-of-archive marker (as Go's reader does);
   * a pax or GNU long-name header left without its entry at that point is then ignored, as Go ignores it.
   * Off by default: such a stream is indistinguishable from an archive truncated at a block boundary.
   */
  allowMissingEndMarker?: boolean;
}

/** Types whose body is never read, whatever their size field says (as Go's reader does). */
const HEADER_ONLY = new Set(['1', '2', '3', '4', '5', '6']);

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'char-device',
  '4': 'block-device',
  '5': 'directory',
  '6': 'fifo',
  D: 'directory', // GNU dumpdir: a directory whose body lists its contents (skipped)
  S: 'sparse',
};

type State = 'header' | 'meta' | 'sparse-ext' | 'body' | 'pad' | 'end';

export class TarReader {
  private state: State = 'header';
  private readonly block = Buffer.alloc(BLOCK);
  private blockFill = 0;
  /** Bytes left in the current body, metadata body, or padding. */
  private remaining = 0;
  private padAfter = 0;
  private meta: { type: string; buf: Buffer; fill: number } | undefined;
  private pax: Map<string, string> | undefined;
  private longName: string | undefined;
  private longLink: string | undefined;
  /** The pax path / linkpath that apply to the next entry were not valid UTF-8. */
  private paxNotUtf8: string[] = [];
  private longNameUtf8 = true;
  private longLinkUtf8 = true;
  private metaHeaders = 0;
  private metaBytes = 0;
  private pending: TarHeader | undefined;
  private zeroBlocks = 0;
  private trailing = 0;
  /** A pax ('x') or GNU long name/link ('L', 'K') header read, and the entry it applies to not yet. */
  private pendingMeta: string | undefined;

  constructor(private readonly limits: TarLimits) {}

  /** Feeds bytes of the tar stream; yields what they complete. The slices yielded point into `chunk`. */
  *push(chunk: Buffer): Generator<TarEvent> {
    let off = 0;
    const n = chunk.length;
    while (off < n) {
      switch (this.state) {
        case 'end': {
          this.trailing += n - off;
          if (this.trailing > this.limits.maxTrailing) throw new TarFormatError(`more than ${this.limits.maxTrailing} bytes after the end of the archive`);
          for (let i = off; i < n; i++) {
            if (chunk[i] !== 0) throw new TarFormatError('data after the end-of-archive marker (only zero padding may follow it)');
          }
          return;
        }
        case 'body': {
          const take = Math.min(this.remaining, n - off);
          yield { kind: 'data', chunk: chunk.subarray(off, off + take) };
          off += take;
          this.remaining -= take;
          if (this.remaining === 0) {
            yield { kind: 'end-entry' };
            this.afterBody();
          }
          break;
        }
        case 'pad': {
          const take = Math.min(this.remaining, n - off);
          off += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = 'header';
          break;
        }
        case 'meta': {
          const m = this.meta!;
          const take = Math.min(m.buf.length - m.fill, n - off);
          chunk.copy(m.buf, m.fill, off, off + take);
          m.fill += take;
          off += take;
          if (m.fill === m.buf.length) {
            this.meta = undefined;
            this.applyMeta(m.type, m.buf);
            this.remaining = this.padAfter;
            this.state = this.remaining ? 'pad' : 'header';
          }
          break;
        }
        case 'header':
        case 'sparse-ext': {
          let block: Buffer;
          if (this.blockFill === 0 && n - off >= BLOCK) {
            block = chunk.subarray(off, off + BLOCK);
            off += BLOCK;
          } else {
            const take = Math.min(BLOCK - this.blockFill, n - off);
            chunk.copy(this.block, this.blockFill, off, off + take);
            this.blockFill += take;
            off += take;
            if (this.blockFill < BLOCK) return;
            this.blockFill = 0;
            block = this.block;
          }
          if (this.state === 'sparse-ext') {
            this.metaBytes += BLOCK;
            if (this.metaBytes > this.limits.maxHeaderSize) throw new TarFormatError(`GNU sparse map larger than ${this.limits.maxHeaderSize} bytes`);
            if (block[504] === 0) yield* this.startBody();
          } else {
            yield* this.header(block);
          }
          break;
        }
      }
    }
  }

  /** The input has ended: throws unless it ended where an archive may end. */
  finish(): void {
    if (this.state === 'end') return;
    if (this.state === 'header' && this.blockFill === 0) {
      if (this.zeroBlocks === 1) return; // one zero block: an end marker some writers emit
      if (this.limits.allowMissingEndMarker) return; // at a header boundary, as Go's reader accepts
      if (this.pendingMeta !== undefined) throw new TarFormatError(`archive ends after ${describeMeta(this.pendingMeta)} with no entry for it`);
      throw new TarFormatError('archive ends without its end-of-archive marker (truncated at a block boundary)');
    }
    throw new TarFormatError(this.state === 'header' ? 'archive ends inside a header' : 'archive ends inside an entry (truncated)');
  }

  private afterBody(): void {
    this.pending = undefined;
    this.remaining = this.padAfter;
    this.state = this.remaining ? 'pad' : 'header';
  }

  private *startBody(): Generator<TarEvent> {
    const h = this.pending!;
    this.padAfter = padding(h.size);
    yield { kind: 'entry', header: h };
    if (h.size === 0) {
      yield { kind: 'end-entry' };
      this.afterBody();
    } else {
      this.remaining = h.size;
      this.state = 'body';
    }
  }

  private *header(block: Buffer): Generator<TarEvent> {
    if (isZero(block)) {
      if (this.pendingMeta !== undefined) throw new TarFormatError(`${describeMeta(this.pendingMeta)} is followed by the end of the archive, not by an entry`);
      this.zeroBlocks++;
      if (this.zeroBlocks === 2) this.state = 'end';
      return;
    }
    if (this.zeroBlocks) throw new TarFormatError('a lone zero block followed by a header');
    verifyChecksum(block);
    const magic = block.toString('latin1', 257, 265);
    const gnu = magic === 'ustar  \0';
    const ustar = !gnu && magic.startsWith('ustar\0');
    const typeflag = String.fromCharCode(block[156]!);
    const size = numeric(block, 124, 12, 'size');
    if (size < 0) throw new TarFormatError('negative entry size');
    // Parsed for validity only: a header whose numbers do not parse is not one to trust.
    const mode = numeric(block, 100, 8, 'mode');
    numeric(block, 108, 8, 'uid');
    numeric(block, 116, 8, 'gid');
    numeric(block, 136, 12, 'mtime');

    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (++this.metaHeaders > this.limits.maxMetaHeaders) throw new TarFormatError(`more than ${this.limits.maxMetaHeaders} metadata headers in a row`);
      if (size > this.limits.maxHeaderSize - this.metaBytes) {
        throw new TarFormatError(`${typeflag === 'x' || typeflag === 'g' ? 'pax' : 'GNU long name'} header of ${size} bytes exceeds the ${this.limits.maxHeaderSize}-byte bound`);
      }
      this.metaBytes += size;
      this.padAfter = padding(size);
      if (size === 0) {
        this.applyMeta(typeflag, Buffer.alloc(0));
        return;
      }
      this.meta = { type: typeflag, buf: Buffer.allocUnsafe(size), fill: 0 };
      this.state = 'meta';
      return;
    }

    let nameBytes = cstring(block, 0, 100);
    if (ustar) {
      const prefix = cstring(block, 345, 155);
      if (prefix.length) nameBytes = Buffer.concat([prefix, Buffer.from('/'), nameBytes]);
    }
    const linkBytes = cstring(block, 157, 100);
    let nameUtf8 = isUtf8(nameBytes);
    let linkUtf8 = isUtf8(linkBytes);
    let path = nameBytes.toString('utf8');
    let linkpath = linkBytes.toString('utf8');
    let bodySize = size;
    let sparse = false;
    const pax = this.pax;
    if (pax) {
      const p = pax.get('path');
      if (p) [path, nameUtf8] = [p, !this.paxNotUtf8.includes('path')];
      const l = pax.get('linkpath');
      if (l) [linkpath, linkUtf8] = [l, !this.paxNotUtf8.includes('linkpath')];
      const s = pax.get('size');
      if (s !== undefined && s !== '') bodySize = Number(s);
      for (const k of pax.keys()) if (k.startsWith('GNU.sparse.')) sparse = true;
    }
    if (this.longName !== undefined) [path, nameUtf8] = [this.longName, this.longNameUtf8];
    if (this.longLink !== undefined) [linkpath, linkUtf8] = [this.longLink, this.longLinkUtf8];
    this.paxNotUtf8 = [];
    this.pax = undefined;
    this.pendingMeta = undefined;
    this.longName = undefined;
    this.longLink = undefined;
    this.metaHeaders = 0;
    this.metaBytes = 0;

    let type: EntryType = TYPES[typeflag] ?? 'other';
    // v7 archives mark directories with a trailing slash on an untyped entry.
    if (typeflag === '\0' && path.endsWith('/')) type = 'directory';
    if (sparse) type = 'sparse';
    if (HEADER_ONLY.has(typeflag)) bodySize = 0;
    this.pending = { path, linkpath, type, typeflag, size: bodySize, mode: mode & 0o7777, nameUtf8, linkUtf8 };
    if (typeflag === 'S' && gnu && block[482] !== 0) {
      // Old GNU sparse: extension blocks with more of the map follow the header.
      this.state = 'sparse-ext';
      return;
    }
    yield* this.startBody();
  }

  private applyMeta(type: string, buf: Buffer): void {
    if (type !== 'g') this.pendingMeta = type;
    switch (type) {
      case 'x': {
        // The last of several pax headers before an entry is the one that applies (as GNU, BSD and Go do).
        this.paxNotUtf8 = [];
        this.pax = parsePax(buf, this.paxNotUtf8);
        return;
      }
      case 'g':
        parsePax(buf); // validated, not applied: global defaults are not needed to extract safely
        return;
      case 'L':
      case 'K': {
        const bytes = cstring(buf, 0, buf.length);
        if (type === 'L') [this.longName, this.longNameUtf8] = [bytes.toString('utf8'), isUtf8(bytes)];
        else [this.longLink, this.longLinkUtf8] = [bytes.toString('utf8'), isUtf8(bytes)];
        return;
      }
    }
  }
}

function describeMeta(type: string): string {
  return type === 'x' ? 'a pax header' : type === 'L' ? 'a GNU long-name header' : 'a GNU long-link header';
}

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

function isZero(block: Buffer): boolean {
  if (block[0] !== 0 || block[148] !== 0) return false;
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** Bytes up to the first NUL (or the whole field). */
function cstring(buf: Buffer, start: number, length: number): Buffer {
  const field = buf.subarray(start, start + length);
  const nul = field.indexOf(0);
  return nul < 0 ? field : field.subarray(0, nul);
}

function verifyChecksum(block: Buffer): void {
  const stored = numeric(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  if (stored !== unsigned && stored !== signed) throw new TarFormatError('header checksum does not match (not a tar archive, or a damaged one)');
}

/**
 * A numeric header field: octal text (leading and trailing spaces and NULs allowed), or GNU base-256
 * when the first byte has its high bit set (0xff… for negative numbers).
 */
function numeric(block: Buffer, start: number, length: number, what: string): number {
  const first = block[start]!;
  if (first & 0x80) {
    const inv = first & 0x40 ? 0xff : 0;
    let x = 0n;
    for (let i = 0; i < length; i++) {
      let c = block[start + i]! ^ inv;
      if (i === 0) c &= 0x7f;
      if (x >> 56n > 0n) throw new TarFormatError(`${what} field overflows`);
      x = (x << 8n) | BigInt(c);
    }
    if (x > BigInt(Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`${what} field is too large`);
    return inv ? -Number(x) - 1 : Number(x);
  }
  let s = start;
  let e = start + length;
  while (s < e && (block[s] === 0x20 || block[s] === 0)) s++;
  while (e > s && (block[e - 1] === 0x20 || block[e - 1] === 0)) e--;
  let x = 0;
  for (let i = s; i < e; i++) {
    const c = block[i]!;
    if (c === 0) break; // a C string ends at its NUL
    if (c < 0x30 || c > 0x37) throw new TarFormatError(`${what} field is not an octal number`);
    x = x * 8 + (c - 0x30);
  }
  if (x > Number.MAX_SAFE_INTEGER) throw new TarFormatError(`${what} field is too large`);
  return x;
}

const PAX_STRING_KEYS = new Set(['path', 'linkpath', 'uname', 'gname']);
const UNSIGNED = /^[0-9]{1,16}$/;
const SIGNED = /^[-+]?[0-9]{1,19}$/;
const TIME = /^[-+]?[0-9]{1,19}(\.[0-9]*)?$/;

/** Parses (and validates) pax extended header records. */
export function parsePax(buf: Buffer, notUtf8?: string[]): Map<string, string> {
  const out = new Map<string, string>();
  let pos = 0;
  while (pos < buf.length) {
    const sp = buf.indexOf(0x20, pos);
    if (sp < 0 || sp === pos || sp - pos > 20) throw new TarFormatError('malformed pax record (no length)');
    let len = 0;
    for (let i = pos; i < sp; i++) {
      const c = buf[i]!;
      if (c < 0x30 || c > 0x39) throw new TarFormatError('malformed pax record length');
      len = len * 10 + (c - 0x30);
    }
    if (len < 5 || len > buf.length - pos || sp + 1 >= pos + len) throw new TarFormatError('pax record length does not fit the header');
    if (buf[pos + len - 1] !== 0x0a) throw new TarFormatError('pax record does not end with a newline');
    const rec = buf.subarray(sp + 1, pos + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new TarFormatError('pax record without a key');
    const keyBytes = rec.subarray(0, eq);
    if (keyBytes.includes(0)) throw new TarFormatError('NUL in a pax key');
    const valueBytes = rec.subarray(eq + 1);
    const key = keyBytes.toString('utf8');
    if (PAX_STRING_KEYS.has(key) && valueBytes.includes(0)) throw new TarFormatError(`NUL in the pax ${key}`);
    if (notUtf8 && PAX_STRING_KEYS.has(key) && !isUtf8(valueBytes)) notUtf8.push(key);
    const value = valueBytes.toString('utf8');
    if (value !== '') {
      if (key === 'size' && (!UNSIGNED.test(value) || Number(value) > Number.MAX_SAFE_INTEGER)) throw new TarFormatError(`invalid pax size "${value.slice(0, 40)}"`);
      if ((key === 'uid' || key === 'gid') && !SIGNED.test(value)) throw new TarFormatError(`invalid pax ${key} "${value.slice(0, 40)}"`);
      if ((key === 'mtime' || key === 'atime' || key === 'ctime') && !TIME.test(value)) throw new TarFormatError(`invalid pax ${key} "${value.slice(0, 40)}"`);
    }
    out.set(key, value);
    pos += len;
  }
  return out;
}
