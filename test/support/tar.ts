/** One entry of a hand-written archive; `type` is the ustar type flag ('0' file, '2' symlink, '5' dir…). */
export interface TarEntry {
  name: string;
  type?: string;
  link?: string;
  body?: string | Buffer;
  mode?: number;
  mtime?: number;
}

/**
 * A ustar archive built byte by byte, so that tests can say things no honest archiver writes (links out
 * of the tree, device nodes) as well as make small real image layers.
 */
export function ustar(entries: TarEntry[]): Buffer {
  const blocks: Buffer[] = [];
  const octal = (n: number, length: number): string => `${n.toString(8).padStart(length - 1, '0')}\0`;
  for (const e of entries) {
    const body = Buffer.isBuffer(e.body) ? e.body : Buffer.from(e.body ?? '');
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100);
    h.write(octal(e.mode ?? 0o644, 8), 100);
    h.write(octal(0, 8), 108);
    h.write(octal(0, 8), 116);
    h.write(octal(body.length, 12), 124);
    h.write(octal(e.mtime ?? 0, 12), 136);
    h.write('        ', 148);
    h.write(e.type ?? '0', 156);
    h.write(e.link ?? '', 157, 100);
    h.write('ustar\0', 257);
    h.write('00', 263);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

/** Regular files only: enough for a real image layer. */
export function tarOf(files: Record<string, string>): Buffer {
  return ustar(Object.entries(files).map(([name, body]) => ({ name, body, mtime: 1_700_000_000 })));
}
