import { lstat, mkdir, mkdtemp, rename, rm, rmdir } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { LadingError } from '../errors.js';
import type { ProgressEvent, Target } from '../content/interfaces.js';
import { fetchBytes } from '../content/read.js';
import { writeStreamAtomic, fsyncDir } from '../content/atomic.js';
import { VerifyingStream } from '../content/verify.js';
import { extractTar } from '../archive/extract.js';
import type { Descriptor } from '../oci/descriptor.js';
import { Digester, hashableAlgorithm, isDigest } from '../oci/digest.js';
import { parseManifest } from '../oci/manifest.js';
import type { ImageManifest } from '../oci/manifest-types.js';
import { formatPlatform } from '../oci/platform.js';
import { Annotation } from '../oci/mediatype.js';
import { Limiter } from '../graph/limiter.js';
import { titleFor } from './files.js';

export interface PullFilesOptions {
  concurrency?: number;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
  /**
   * Names the caller writes into the output directory itself: a layer titled so, or inside one, is
   * refused before any byte is fetched.
   */
  reservedTitles?: string[];
}

export interface PulledFile {
  title: string;
  path: string;
  descriptor: Descriptor;
  kind: 'file' | 'directory';
}

export interface PullFilesResult {
  descriptor: Descriptor;
  files: PulledFile[];
  /** Layers without a title, which have no name to be written under. */
  skipped: Descriptor[];
}

/**
 * Writes the titled layers of the artifact at `reference` into `outDir`: files by title, directory layers
 * unpacked. Every title is checked before any byte is fetched; each file appears whole or not at all.
 */
export async function pullFiles(target: Target, reference: string, outDir: string, opts: PullFilesOptions = {}): Promise<PullFilesResult> {
  const root = await target.resolve(reference);
  return pullResolved(target, root, outDir, { ...opts, name: reference });
}

export interface PullResolvedOptions extends PullFilesOptions {
  /** How the artifact is named in messages; its digest by default. */
  name?: string;
  /** The manifest `root` names, when the caller has read it already. */
  manifest?: ImageManifest;
}

/** pullFiles of a manifest already resolved: a digest from a lockfile, or one variant of an index. */
export async function pullResolved(target: Target, root: Descriptor, outDir: string, opts: PullResolvedOptions = {}): Promise<PullFilesResult> {
  let manifest = opts.manifest;
  if (!manifest) {
    const parsed = parseManifest(await fetchBytes(target, root, undefined, opts.signal), root.mediaType);
    if (parsed.kind === 'index') {
      const platforms = parsed.manifest.manifests.map((m) => (m.platform ? formatPlatform(m.platform) : m.digest));
      throw new LadingError('E_UNSUPPORTED', `${opts.name ?? root.digest} is an index of ${parsed.manifest.manifests.length} manifests`, {
        hint: `pull one of them by digest: ${platforms.join(', ')}`,
        details: { manifests: parsed.manifest.manifests },
      });
    }
    manifest = parsed.manifest;
  }
  const out = resolve(outDir);
  const plan: Array<{ title: string; desc: Descriptor; dest: string; unpack: boolean }> = [];
  const skipped: Descriptor[] = [];
  const seen = new Set<string>();
  const reserved = opts.reservedTitles ?? [];
  for (const layer of manifest.layers) {
    const raw = layer.annotations?.[Annotation.Title];
    if (raw === undefined) {
      skipped.push(layer);
      continue;
    }
    const title = titleFor(raw);
    if (seen.has(title)) throw new LadingError('E_MANIFEST_INVALID', `two layers are titled "${title}"`);
    const clash = reserved.find((r) => title === r || title.startsWith(`${r}/`));
    if (clash !== undefined) {
      throw new LadingError('E_UNSAFE_PATH', `layer title "${title}" would overwrite ${clash}, which lading writes itself`, {
        hint: `the artifact was pushed with a file named ${clash}; rename it and push again`,
        details: { title, reserved: clash },
      });
    }
    seen.add(title);
    const dest = join(out, title);
    if (dest !== out && !dest.startsWith(out + sep)) {
      throw new LadingError('E_UNSAFE_PATH', `layer title "${raw}" leaves ${out}`);
    }
    plan.push({ title, desc: layer, dest, unpack: layer.annotations?.[Annotation.OrasUnpack] === 'true' });
  }
  // A title inside another (`d` and `d/x`) would let one layer write through what another layer made.
  const titles = [...seen].sort();
  for (let i = 1; i < titles.length; i++) {
    if (titles[i]!.startsWith(`${titles[i - 1]}/`)) {
      throw new LadingError('E_UNSAFE_PATH', `layer title "${titles[i]}" lies inside layer "${titles[i - 1]}"`, {
        hint: 'each layer must be written to a path of its own',
      });
    }
  }
  await mkdir(out, { recursive: true });
  for (const p of plan) await refuseLinkedParents(out, p.dest);

  const limiter = new Limiter(Math.max(1, opts.concurrency ?? 4));
  const controller = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, controller.signal]) : controller.signal;
  const madeDirs: string[] = [];
  const started = plan.map((p) =>
    limiter.run(async (): Promise<PulledFile> => {
      try {
        signal.throwIfAborted();
        const made = await mkdir(dirname(p.dest), { recursive: true });
        if (made) madeDirs.push(...dirsBetween(made, dirname(p.dest)));
        const body = await target.fetch(p.desc, { signal });
        if (body instanceof VerifyingStream && opts.onProgress) {
          const report = opts.onProgress;
          body.onProgress = (bytes) => report({ desc: p.desc, bytes, total: p.desc.size, state: 'transfer' });
        }
        if (p.unpack) {
          await unpackDirectory(body, p.title, p.dest, out, p.desc);
        } else {
          await writeStreamAtomic(p.dest, body, { signal, beforeRename: () => refuseLinkedParents(out, p.dest) });
        }
        opts.onProgress?.({ desc: p.desc, bytes: p.desc.size, total: p.desc.size, state: 'done' });
        return { title: p.title, path: p.dest, descriptor: p.desc, kind: p.unpack ? 'directory' : 'file' };
      } catch (err) {
        // Before this slot goes to the next layer: nothing more starts once one layer has failed.
        controller.abort(err);
        throw err;
      }
    }),
  );
  try {
    return { descriptor: root, files: await Promise.all(started), skipped };
  } catch (err) {
    // No layer may still be writing once the caller hears of the failure; directories made for
    // layers that never arrived go too.
    await Promise.allSettled(started);
    for (const dir of madeDirs.sort().reverse()) await rmdir(dir).catch(() => undefined);
    throw err;
  }
}

/** `from` and every directory below it on the way to `to` (mkdir -p made them all). */
function dirsBetween(from: string, to: string): string[] {
  const out: string[] = [];
  for (let d = to; d.length >= from.length; d = dirname(d)) {
    out.push(d);
    if (d === from) break;
  }
  return out;
}

/** An existing link on the way to a destination could carry the write outside `out`. */
async function refuseLinkedParents(out: string, dest: string): Promise<void> {
  let dir = dirname(dest);
  while (dir.length > out.length) {
    const info = await lstat(dir).catch(() => undefined);
    if (info?.isSymbolicLink()) {
      throw new LadingError('E_UNSAFE_PATH', `${dir} is a symbolic link; pulling through it could write outside ${out}`, {
        hint: 'remove the link or pull into another directory',
      });
    }
    dir = dirname(dir);
  }
}

/**
 * Extracts a directory layer into a fresh directory beside the destination and renames it into place
 * only once the layer's digest (and ORAS's digest of the tar inside) have checked out.
 */
async function unpackDirectory(body: Readable, title: string, dest: string, out: string, desc: Descriptor): Promise<void> {
  await mkdir(dirname(dest), { recursive: true });
  const staging = await mkdtemp(join(out, '.lading-unpack-'));
  try {
    const tarDigest = desc.annotations?.[Annotation.OrasDigest];
    const hasher = tarDigest && isDigest(tarDigest) ? new Digester(hashableAlgorithm(tarDigest)) : undefined;
    await extractTar(body, staging, { requirePrefix: title, onTarBytes: hasher ? (c) => hasher.update(c) : undefined });
    if (hasher && hasher.digest() !== tarDigest) {
      throw new LadingError('E_DIGEST_MISMATCH', `the tar inside ${desc.digest} hashes to ${hasher.digest()}, not ${tarDigest}`, {
        details: { expected: tarDigest, actual: hasher.digest() },
      });
    }
    const unpacked = join(staging, title);
    await lstat(unpacked).catch(() => mkdir(unpacked, { recursive: true }));
    await refuseLinkedParents(out, dest);
    // Replace an earlier pull of the same directory: move it aside, move the new one in, drop the old;
    // if the new one cannot move in, the old one goes back.
    const aside = `${staging}.old`;
    const had = await lstat(dest).then(() => true, () => false);
    if (had) await rename(dest, aside);
    try {
      await rename(unpacked, dest);
    } catch (err) {
      if (had) await rename(aside, dest);
      throw err;
    }
    await fsyncDir(dirname(dest));
    if (had) await rm(aside, { recursive: true, force: true });
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
}
