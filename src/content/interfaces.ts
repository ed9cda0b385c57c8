import type { Readable } from 'node:stream';
import type { Descriptor } from '../oci/descriptor.js';

export interface FetchOptions {
  signal?: AbortSignal;
  /**
   * Start at this byte. With an offset the stream carries only the tail, which the store cannot
   * verify on its own: the caller, who holds the head, hashes both.
   */
  offset?: number;
}

/**
 * Reads content by descriptor. Without an offset the returned stream is verified: it fails with
 * E_DIGEST_MISMATCH or E_SIZE_MISMATCH instead of ending when the bytes do not match `desc`.
 */
export interface Fetcher {
  fetch(desc: Descriptor, opts?: FetchOptions): Promise<Readable>;
}

export interface PushOptions {
  signal?: AbortSignal;
  /** Progress of the bytes consumed from `body`. */
  onProgress?: (bytes: number) => void;
}

/** Stores content; verifies digest and size while consuming `body` and never keeps unverified bytes. */
export interface Pusher {
  push(desc: Descriptor, body: Readable, opts?: PushOptions): Promise<void>;
}

export interface Storage extends Fetcher, Pusher {
  exists(desc: Descriptor): Promise<boolean>;
}

/** Something content graphs are copied from and to: a remote repository, an OCI layout, memory. */
export interface Target extends Storage {
  /** A tag or digest (or, for remote targets, a full reference of the same repository) to its descriptor. */
  resolve(reference: string): Promise<Descriptor>;
  /** Points `reference` (a tag) at the manifest `desc`, which must already be stored. */
  tag(desc: Descriptor, reference: string): Promise<void>;
}

export interface ReferrerLister {
  /** Manifests whose `subject` is `subject`, optionally only those of one artifactType. */
  referrers(subject: Descriptor, artifactType?: string): AsyncIterable<Descriptor>;
}

export interface TagLister {
  /** Tags in lexical order, starting after `last` when given. */
  tags(opts?: { last?: string; pageSize?: number; signal?: AbortSignal }): AsyncIterable<string>;
}

export interface Deleter {
  delete(desc: Descriptor): Promise<void>;
}

/** A blob that a target can take from another repository of the same registry without the bytes. */
export interface Mounter {
  /** Returns true when mounted; false when the registry wants an upload instead. */
  mount(desc: Descriptor, fromRepository: string): Promise<boolean>;
  /** The registry host and repository, so that copies know when a mount is possible. */
  readonly registry: string;
  readonly repository: string;
}

export interface ProgressEvent {
  desc: Descriptor;
  bytes: number;
  total: number;
  /** What happened to this descriptor: still moving, copied, skipped because present, or mounted. */
  state: 'transfer' | 'done' | 'exists' | 'mounted';
}

export function isReferrerLister(t: unknown): t is ReferrerLister {
  return typeof (t as ReferrerLister)?.referrers === 'function';
}

export function isTagLister(t: unknown): t is TagLister {
  return typeof (t as TagLister)?.tags === 'function';
}

export function isMounter(t: unknown): t is Mounter {
  return typeof (t as Mounter)?.mount === 'function';
}

/** A store that lists manifests it holds without a tag (an OCI layout's index.json). */
export interface Indexer {
  index(desc: Descriptor): Promise<void>;
}

export function isIndexer(t: unknown): t is Indexer {
  return typeof (t as Indexer)?.index === 'function';
}

export function isDeleter(t: unknown): t is Deleter {
  return typeof (t as Deleter)?.delete === 'function';
}
