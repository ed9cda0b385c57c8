import { createReadStream } from 'node:fs';
import { mkdtemp, open, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, posix, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { LadingError } from '../errors.js';
import type { FetchOptions, ProgressEvent, Storage, Target } from '../content/interfaces.js';
import { packDirectory } from '../archive/pack.js';
import type { Descriptor } from '../oci/descriptor.js';
import { Digester, digestOf } from '../oci/digest.js';
import { buildImageManifest } from '../oci/manifest.js';
import { Annotation, EmptyJSON, MediaType, isValidMediaType } from '../oci/mediatype.js';
import { copyGraph } from '../graph/copy.js';

/** What ORAS sets when an artifact has no config and the user names no type. */
export const DEFAULT_ARTIFACT_TYPE = 'application/vnd.unknown.artifact.v1';
const READ_SIZE = 1024 * 1024;

export interface FileInput {
  path: string;
  mediaType?: string;
}

/** A config blob held in memory, such as a typed artifact's envelope. */
export interface ConfigBytes {
  mediaType: string;
  bytes: Uint8Array;
}

export interface PushFilesOptions {
  /** Where relative input paths start; titles stay relative to it. Defaults to the process's cwd. */
  cwd?: string;
  artifactType?: string;
  /** A config file, or config bytes; the empty config when absent. */
  config?: FileInput | ConfigBytes;
  /** Manifest annotations. */
  annotations?: Record<string, string>;
  /** Annotations per layer title. */
  layerAnnotations?: Record<string, Record<string, string>>;
  concurrency?: number;
  onProgress?: (event: ProgressEvent) => void;
  signal?: AbortSignal;
}

export interface PushFilesResult {
  descriptor: Descriptor;
  manifest: Buffer;
  layers: Descriptor[];
}

/**
 * The digest and size of a file. One buffer is reused for every read: a stream would allocate a fresh
 * one per block, and a large file would leave a gigabyte of garbage behind it.
 */
export async function digestFile(path: string, signal?: AbortSignal): Promise<{ digest: string; size: number }> {
  const d = new Digester('sha256');
  const buf = Buffer.allocUnsafe(READ_SIZE);
  const fh = await open(path, 'r');
  let size = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (bytesRead === 0) break;
      d.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { digest: d.digest(), size };
}

/**
 * A layer's title: the path as the user gave it, in POSIX form. It is where pull writes the content, so
 * nothing that could climb out of the pull directory is accepted.
 */
export function titleFor(path: string): string {
  const t = posix.normalize(path.replaceAll('\\', '/')).replace(/\/+$/, '');
  if (!t || t === '.' || posix.isAbsolute(t) || t === '..' || t.startsWith('../') || t.includes('\0')) {
    throw new LadingError('E_UNSAFE_PATH', `"${path}" cannot be a layer title: it is absolute or leaves the working directory`, {
      hint: 'run push from the directory that holds the files and name them by relative paths',
    });
  }
  return t;
}

/** Local content for one push: files by path and small documents in memory, read-only. */
class PushSource implements Storage {
  private readonly entries = new Map<string, { path?: string; bytes?: Buffer }>();

  addFile(digest: string, path: string): void {
    this.entries.set(digest, { path });
  }

  addBytes(digest: string, bytes: Buffer): void {
    this.entries.set(digest, { bytes });
  }

  async fetch(desc: Descriptor, opts: FetchOptions = {}): Promise<Readable> {
    const e = this.entries.get(desc.digest);
    if (!e) throw new LadingError('E_NOT_FOUND', `${desc.digest} is not part of this push`);
    // The bytes were hashed a moment ago; every Pusher verifies what it stores, so they are not hashed twice here.
    if (e.bytes) return Readable.from([e.bytes.subarray(opts.offset ?? 0)]);
    return createReadStream(e.path as string, { highWaterMark: READ_SIZE, start: opts.offset ?? 0, signal: opts.signal });
  }

  async exists(desc: Descriptor): Promise<boolean> {
    return this.entries.has(desc.digest);
  }

  async push(): Promise<void> {
    throw new LadingError('E_UNSUPPORTED', 'a push source is read-only');
  }
}

/**
 * Checks what a push would read — titles, media types, that every path is a file or directory — without
 * touching any target, so that bad input is refused before anything is created.
 */
export async function checkInputs(inputs: FileInput[], opts: Pick<PushFilesOptions, 'cwd' | 'config' | 'artifactType'> = {}): Promise<void> {
  if (inputs.length === 0 && !opts.config) {
    throw new LadingError('E_USAGE', 'nothing to push', { hint: 'name at least one file or directory' });
  }
  const configFile = opts.config && !isConfigBytes(opts.config) ? opts.config : undefined;
  if (opts.config && isConfigBytes(opts.config) && !isValidMediaType(opts.config.mediaType)) {
    throw new LadingError('E_USAGE', `invalid config media type "${opts.config.mediaType}"`);
  }
  const titles = new Set<string>();
  for (const input of [...inputs, ...(configFile ? [configFile] : [])]) {
    if (input !== configFile) {
      const title = titleFor(input.path);
      if (titles.has(title)) throw new LadingError('E_USAGE', `"${title}" is named twice`);
      titles.add(title);
    }
    if (input.mediaType !== undefined && !isValidMediaType(input.mediaType)) {
      throw new LadingError('E_USAGE', `invalid media type "${input.mediaType}" for ${input.path}`);
    }
    const info = await stat(resolve(opts.cwd ?? '.', input.path)).catch((err: NodeJS.ErrnoException) => {
      throw new LadingError('E_IO', `cannot read ${input.path}: ${err.code ?? err.message}`, { cause: err });
    });
    if (!info.isFile() && !(info.isDirectory() && input !== configFile)) {
      throw new LadingError('E_USAGE', `${input.path} is neither a file nor a directory`);
    }
  }
  if (opts.artifactType !== undefined && !isValidMediaType(opts.artifactType)) {
    throw new LadingError('E_USAGE', `invalid artifact type "${opts.artifactType}"`);
  }
}

function isConfigBytes(config: FileInput | ConfigBytes): config is ConfigBytes {
  return (config as ConfigBytes).bytes !== undefined;
}

/**
 * Pushes files and directories as one artifact, ORAS-style: each file a layer titled by its path, each
 * directory one deterministic tar+gzip layer marked for unpacking. Tags the result as `tag` when given.
 */
export async function pushFiles(target: Target, tag: string | undefined, inputs: FileInput[], opts: PushFilesOptions = {}): Promise<PushFilesResult> {
  await checkInputs(inputs, opts);
  const source = new PushSource();
  const work = await mkdtemp(join(tmpdir(), 'lading-push-'));
  try {
    const layers: Descriptor[] = [];
    for (const input of inputs) {
      const title = titleFor(input.path);
      const path = resolve(opts.cwd ?? '.', input.path);
      const info = await stat(path);
      const annotations: Record<string, string> = { [Annotation.Title]: title, ...opts.layerAnnotations?.[title] };
      if (info.isDirectory()) {
        const packed = join(work, `${layers.length}.tar.gz`);
        const p = await packDirectory(path, packed, title);
        annotations[Annotation.OrasDigest] = p.tarDigest;
        annotations[Annotation.OrasUnpack] = 'true';
        source.addFile(p.digest, packed);
        layers.push({ mediaType: input.mediaType ?? MediaType.ImageLayerGzip, digest: p.digest, size: p.size, annotations });
      } else {
        const { digest, size } = await digestFile(path, opts.signal);
        source.addFile(digest, path);
        layers.push({ mediaType: input.mediaType ?? MediaType.ImageLayer, digest, size, annotations });
      }
    }

    let config: Descriptor;
    if (opts.config && isConfigBytes(opts.config)) {
      const bytes = Buffer.from(opts.config.bytes);
      const digest = digestOf(bytes);
      source.addBytes(digest, bytes);
      config = { mediaType: opts.config.mediaType, digest, size: bytes.length };
    } else if (opts.config) {
      const configPath = resolve(opts.cwd ?? '.', opts.config.path);
      const { digest, size } = await digestFile(configPath, opts.signal);
      source.addFile(digest, configPath);
      config = { mediaType: opts.config.mediaType ?? MediaType.ImageConfig, digest, size };
    } else {
      source.addBytes(EmptyJSON.digest, Buffer.from('{}'));
      config = { mediaType: EmptyJSON.mediaType, digest: EmptyJSON.digest, size: EmptyJSON.size };
    }
    // The image-spec wants an artifactType whenever the config is the empty descriptor.
    const artifactType = opts.artifactType ?? (opts.config ? undefined : DEFAULT_ARTIFACT_TYPE);
    const built = buildImageManifest({ config, layers, artifactType, annotations: opts.annotations });
    source.addBytes(built.descriptor.digest, built.bytes);
    await copyGraph(source, target, built.descriptor, { concurrency: opts.concurrency, onProgress: opts.onProgress, signal: opts.signal });
    if (tag) await target.tag(built.descriptor, tag);
    return { descriptor: built.descriptor, manifest: built.bytes, layers };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
