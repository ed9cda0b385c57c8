import { createWriteStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { basename, join, posix } from 'node:path';
import { LadingError } from '../errors.js';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip, constants as zlib } from 'node:zlib';
import { create as tarCreate } from 'tar';
import { Digester } from '../oci/digest.js';

/** Fixed for every entry so that the same tree always packs to the same bytes. */
const EPOCH = new Date(0);

export interface PackedDirectory {
  /** sha256 and size of the gzip stream written to `path`. */
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar, which ORAS records as `io.deis.oras.content.digest`. */
  tarDigest: string;
}

/** Every path under `root`, directories before their contents, in byte order: independent of readdir order. */
async function sortedEntries(root: string): Promise<string[]> {
  const out: string[] = ['.'];
  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(root, rel))).sort((a, b) => (Buffer.from(a) < Buffer.from(b) ? -1 : a === b ? 0 : 1));
    for (const name of names) {
      const childRel = rel ? `${rel}/${name}` : name;
      out.push(childRel);
      const info = await lstat(join(root, childRel));
      if (info.isDirectory()) await walk(childRel);
      else if (info.isSymbolicLink()) {
        // Pull refuses links that leave the directory (as ORAS does); refuse them here, before pushing.
        const to = await readlink(join(root, childRel));
        const resolved = posix.normalize(posix.join(posix.dirname(childRel), to));
        if (posix.isAbsolute(to) || resolved === '..' || resolved.startsWith('../')) {
          throw new LadingError('E_UNSAFE_PATH', `${join(root, childRel)} links to "${to}", outside the directory being pushed`, {
            hint: 'replace the link with the file, or make it point inside the directory',
          });
        }
      }
    }
  };
  await walk('');
  return out;
}

/**
 * Packs directory `dir` as a deterministic tar+gzip at `dest`: entries sorted and prefixed with
 * `prefix`, the layer's title (as ORAS does, so its users unpack it to a directory of that name),
 * mtimes fixed, no owner ids or names, symlinks kept as links.
 */
export async function packDirectory(dir: string, dest: string, prefix = basename(dir)): Promise<PackedDirectory> {
  const entries = await sortedEntries(dir);
  const tarDigest = new Digester('sha256');
  const gzDigest = new Digester('sha256');
  let size = 0;
  const tapTar = new Transform({
    transform(chunk: Buffer, _e, cb) {
      tarDigest.update(chunk);
      cb(null, chunk);
    },
  });
  const tapGz = new Transform({
    transform(chunk: Buffer, _e, cb) {
      gzDigest.update(chunk);
      size += chunk.length;
      cb(null, chunk);
    },
  });
  const pack = tarCreate({ cwd: dir, prefix, portable: true, mtime: EPOCH, noDirRecurse: true, follow: false }, entries);
  await pipeline(pack, tapTar, createGzip({ level: zlib.Z_DEFAULT_COMPRESSION }), tapGz, createWriteStream(dest, { highWaterMark: 1 << 20 }));
  return { digest: gzDigest.digest(), size, tarDigest: tarDigest.digest() };
}
