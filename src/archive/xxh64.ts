/**
 * XXH64 (https://github.com/Cyan4973/xxHash/blob/dev/doc/xxhash_spec.md), streaming, for zstd's frame
 * content checksum (the low 32 bits of XXH64 with seed 0 over the frame's decompressed bytes); node:crypto
 * has no xxHash. The 64-bit lanes are kept as pairs of unsigned 32-bit numbers (BigInt would be far too
 * slow for every byte of a layer), and the helpers return through two module variables to allocate nothing.
 */

// The five primes, as [high, low] halves.
const P1H = 0x9e3779b1, P1L = 0x85ebca87;
const P2H = 0xc2b2ae3d, P2L = 0x27d4eb4f;
const P3H = 0x165667b1, P3L = 0x9e3779f9;
const P4H = 0x85ebca77, P4L = 0xc2b2ae63;
const P5H = 0x27d4eb2f, P5L = 0x165667c5;

/** The result of the last helper: high and low 32 bits. */
let RH = 0;
let RL = 0;

/** (ah:al) × (bh:bl) mod 2^64. */
function mul(ah: number, al: number, bh: number, bl: number): void {
  const a0 = al & 0xffff, a1 = al >>> 16;
  const b0 = bl & 0xffff, b1 = bl >>> 16;
  const p00 = a0 * b0;
  const mid = a1 * b0 + a0 * b1 + (p00 >>> 16); // < 2^34: exact in a double
  const carry = a1 * b1 + Math.floor(mid / 65536); // the high 32 bits of al × bl (plus up to 2^32)
  RL = Math.imul(al, bl) >>> 0;
  RH = (carry + Math.imul(ah, bl) + Math.imul(al, bh)) >>> 0;
}

/** (ah:al) + (bh:bl) mod 2^64. */
function add(ah: number, al: number, bh: number, bl: number): void {
  const lo = al + bl;
  RL = lo >>> 0;
  RH = (ah + bh + (lo > 0xffffffff ? 1 : 0)) >>> 0;
}

/** (h:l) rotated left by r, 0 < r < 32. */
function rotl(h: number, l: number, r: number): void {
  RH = ((h << r) | (l >>> (32 - r))) >>> 0;
  RL = ((l << r) | (h >>> (32 - r))) >>> 0;
}

/** XXH64's round: rotl(acc + input × P2, 31) × P1. */
function round(ah: number, al: number, ih: number, il: number): void {
  mul(ih, il, P2H, P2L);
  add(ah, al, RH, RL);
  rotl(RH, RL, 31);
  mul(RH, RL, P1H, P1L);
}

function u32(d: Uint8Array, o: number): number {
  return (d[o]! | (d[o + 1]! << 8) | (d[o + 2]! << 16) | (d[o + 3]! << 24)) >>> 0;
}

const P1_0 = P1L & 0xffff, P1_1 = P1L >>> 16;
const P2_0 = P2L & 0xffff, P2_1 = P2L >>> 16;

/**
 * Consumes the 32-byte stripes of d[o, end) into the accumulators `v` (round inlined: this loop is the hot
 * path); returns where it stopped.
 */
function stripes(v: Uint32Array, d: Uint8Array, o: number, end: number): number {
  for (; o + 32 <= end; o += 32) {
    for (let j = 0; j < 8; j += 2) {
      const q = o + j * 4;
      const il = d[q]! | (d[q + 1]! << 8) | (d[q + 2]! << 16) | (d[q + 3]! << 24);
      const ih = d[q + 4]! | (d[q + 5]! << 8) | (d[q + 6]! << 16) | (d[q + 7]! << 24);
      // t = input × P2
      let a0 = il & 0xffff;
      let a1 = il >>> 16;
      let p00 = a0 * P2_0;
      let mid = a1 * P2_0 + a0 * P2_1 + (p00 >>> 16);
      const tl = Math.imul(il, P2L) >>> 0;
      const th = (a1 * P2_1 + ((mid / 65536) | 0) + Math.imul(ih, P2L) + Math.imul(il, P2H)) >>> 0;
      // acc += t
      const sl = v[j + 1]! + tl;
      const ah = (v[j]! + th + (sl > 0xffffffff ? 1 : 0)) >>> 0;
      const al = sl >>> 0;
      // rotl(acc, 31)
      const rh = ((ah << 31) | (al >>> 1)) >>> 0;
      const rl = ((al << 31) | (ah >>> 1)) >>> 0;
      // acc × P1 (the typed array keeps the low 32 bits of each half)
      a0 = rl & 0xffff;
      a1 = rl >>> 16;
      p00 = a0 * P1_0;
      mid = a1 * P1_0 + a0 * P1_1 + (p00 >>> 16);
      v[j + 1] = Math.imul(rl, P1L);
      v[j] = a1 * P1_1 + ((mid / 65536) | 0) + Math.imul(rh, P1L) + Math.imul(rl, P1H);
    }
  }
  return o;
}

export class Xxh64 {
  /** The four accumulators, each as high and low halves. */
  private readonly v = new Uint32Array(8);
  private readonly seedH: number;
  private readonly seedL: number;
  private readonly mem = new Uint8Array(32);
  private memLen = 0;
  private total = 0;

  constructor(seed: bigint = 0n) {
    const s = BigInt.asUintN(64, seed);
    this.seedH = Number(s >> 32n);
    this.seedL = Number(s & 0xffffffffn);
    add(this.seedH, this.seedL, P1H, P1L);
    add(RH, RL, P2H, P2L);
    const v = this.v;
    v[0] = RH; v[1] = RL;
    add(this.seedH, this.seedL, P2H, P2L);
    v[2] = RH; v[3] = RL;
    v[4] = this.seedH; v[5] = this.seedL;
    // seed - P1 = seed + (2^64 - P1), which is (~P1H : 2^32 - P1L) as P1's low half is not zero.
    add(this.seedH, this.seedL, ~P1H >>> 0, -P1L >>> 0);
    v[6] = RH; v[7] = RL;
  }

  update(data: Uint8Array): this {
    let p = 0;
    const n = data.length;
    this.total += n;
    if (this.memLen + n < 32) {
      this.mem.set(data, this.memLen);
      this.memLen += n;
      return this;
    }
    if (this.memLen > 0) {
      const take = 32 - this.memLen;
      this.mem.set(data.subarray(0, take), this.memLen);
      stripes(this.v, this.mem, 0, 32);
      p = take;
      this.memLen = 0;
    }
    p = stripes(this.v, data, p, n);
    if (p < n) {
      this.mem.set(data.subarray(p), 0);
      this.memLen = n - p;
    }
    return this;
  }

  /** The 64-bit digest as [high, low] unsigned 32-bit halves (the state is left as it was). */
  digestParts(): [number, number] {
    let hh: number, hl: number;
    const v = this.v;
    if (this.total >= 32) {
      rotl(v[0]!, v[1]!, 1);
      let ah = RH, al = RL;
      rotl(v[2]!, v[3]!, 7);
      add(ah, al, RH, RL); ah = RH; al = RL;
      rotl(v[4]!, v[5]!, 12);
      add(ah, al, RH, RL); ah = RH; al = RL;
      rotl(v[6]!, v[7]!, 18);
      add(ah, al, RH, RL); hh = RH; hl = RL;
      for (let j = 0; j < 8; j += 2) {
        round(0, 0, v[j]!, v[j + 1]!);
        hh = (hh ^ RH) >>> 0; hl = (hl ^ RL) >>> 0;
        mul(hh, hl, P1H, P1L);
        add(RH, RL, P4H, P4L); hh = RH; hl = RL;
      }
    } else {
      add(this.seedH, this.seedL, P5H, P5L);
      hh = RH; hl = RL;
    }
    add(hh, hl, Math.floor(this.total / 0x100000000) >>> 0, this.total >>> 0);
    hh = RH; hl = RL;
    const m = this.mem;
    const end = this.memLen;
    let p = 0;
    for (; p + 8 <= end; p += 8) {
      round(0, 0, u32(m, p + 4), u32(m, p));
      hh = (hh ^ RH) >>> 0; hl = (hl ^ RL) >>> 0;
      rotl(hh, hl, 27);
      mul(RH, RL, P1H, P1L);
      add(RH, RL, P4H, P4L); hh = RH; hl = RL;
    }
    if (p + 4 <= end) {
      mul(0, u32(m, p), P1H, P1L);
      hh = (hh ^ RH) >>> 0; hl = (hl ^ RL) >>> 0;
      rotl(hh, hl, 23);
      mul(RH, RL, P2H, P2L);
      add(RH, RL, P3H, P3L); hh = RH; hl = RL;
      p += 4;
    }
    for (; p < end; p++) {
      mul(0, m[p]!, P5H, P5L);
      hh = (hh ^ RH) >>> 0; hl = (hl ^ RL) >>> 0;
      rotl(hh, hl, 11);
      mul(RH, RL, P1H, P1L); hh = RH; hl = RL;
    }
    // Avalanche.
    hl = (hl ^ (hh >>> 1)) >>> 0; // h ^= h >> 33
    mul(hh, hl, P2H, P2L); hh = RH; hl = RL;
    hl = (hl ^ ((hl >>> 29) | (hh << 3))) >>> 0; // h ^= h >> 29
    hh = (hh ^ (hh >>> 29)) >>> 0;
    mul(hh, hl, P3H, P3L); hh = RH; hl = RL;
    hl = (hl ^ hh) >>> 0; // h ^= h >> 32
    return [hh, hl];
  }

  digest(): bigint {
    const [h, l] = this.digestParts();
    return (BigInt(h) << 32n) | BigInt(l);
  }
}

/** XXH64 of `data` with `seed`. */
export function xxh64(data: Uint8Array, seed: bigint = 0n): bigint {
  return new Xxh64(seed).update(data).digest();
}
