import { createHash, type Hash } from 'node:crypto';
import { LadingError } from '../errors.js';

/**
 * Digests as the image-spec and go-digest define them: `algorithm ":" encoded`, where the algorithm is
 * lower-case components joined by `+._-` and the encoded part is `[a-zA-Z0-9=_-]+`. Known algorithms
 * constrain the encoded part further (lower-case hex of a fixed length).
 */
const DIGEST_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const LOWER_HEX_RE = /^[a-f0-9]+$/;

/** Hex length of each algorithm whose encoding we know; only the first three can be computed here. */
const KNOWN_HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128, blake3: 64 };
const HASHABLE = new Set(['sha256', 'sha384', 'sha512']);

export type DigestAlgorithm = 'sha256' | 'sha384' | 'sha512';
export type DigestFault = 'format' | 'length' | 'unsupported';

export interface ParsedDigest {
  algorithm: string;
  encoded: string;
}

function invalid(input: string, fault: DigestFault, why: string): LadingError {
  const shown = input.length > 200 ? `${input.slice(0, 200)}…` : input;
  return new LadingError('E_DIGEST_INVALID', `invalid digest "${shown}": ${why}`, {
    hint: 'a digest looks like sha256:<64 lower-case hex digits> or sha512:<128 lower-case hex digits>',
    details: { fault },
  });
}

/** Parses and validates a digest string; throws E_DIGEST_INVALID with `details.fault`. */
export function parseDigest(input: string): ParsedDigest {
  if (typeof input !== 'string' || !DIGEST_RE.test(input)) {
    throw invalid(String(input), 'format', 'not of the form algorithm:encoded');
  }
  const colon = input.indexOf(':');
  const algorithm = input.slice(0, colon);
  const encoded = input.slice(colon + 1);
  const length = KNOWN_HEX_LENGTH[algorithm];
  if (length === undefined) throw invalid(input, 'unsupported', `unsupported algorithm "${algorithm}"`);
  if (encoded.length !== length) {
    throw invalid(input, 'length', `${algorithm} needs ${length} hex digits, got ${encoded.length}`);
  }
  if (!LOWER_HEX_RE.test(encoded)) throw invalid(input, 'format', 'the encoded part must be lower-case hex');
  return { algorithm, encoded };
}

export function isDigest(input: unknown): input is string {
  if (typeof input !== 'string') return false;
  try {
    parseDigest(input);
    return true;
  } catch {
    return false;
  }
}

/** The algorithm of a digest that lading can compute; throws when it cannot verify such content. */
export function hashableAlgorithm(digest: string): DigestAlgorithm {
  const { algorithm } = parseDigest(digest);
  if (!HASHABLE.has(algorithm)) {
    throw invalid(digest, 'unsupported', `lading cannot compute ${algorithm} digests to verify content`);
  }
  return algorithm as DigestAlgorithm;
}

/** An incremental hasher producing a digest string. */
export class Digester {
  readonly algorithm: DigestAlgorithm;
  private readonly hash: Hash;

  constructor(algorithm: DigestAlgorithm = 'sha256') {
    this.algorithm = algorithm;
    this.hash = createHash(algorithm);
  }

  update(chunk: Uint8Array | string): this {
    this.hash.update(chunk);
    return this;
  }

  /** The digest of everything seen so far; the hasher stays usable. */
  digest(): string {
    return `${this.algorithm}:${this.hash.copy().digest('hex')}`;
  }
}

export function digestOf(data: Uint8Array | string, algorithm: DigestAlgorithm = 'sha256'): string {
  return new Digester(algorithm).update(data).digest();
}

/**
 * `sha256:abc` → `sha256-abc`: the referrers tag schema of distribution-spec 1.1. The schema is defined for
 * any well-formed digest, including algorithms lading cannot verify, so only the form is checked here.
 */
export function referrersTag(digest: string): string {
  if (typeof digest !== 'string' || !DIGEST_RE.test(digest)) {
    throw invalid(String(digest), 'format', 'not of the form algorithm:encoded');
  }
  const colon = digest.indexOf(':');
  const algorithm = digest.slice(0, colon);
  const encoded = digest.slice(colon + 1);
  return `${algorithm.slice(0, 32)}-${encoded.slice(0, 64)}`.replace(/[^a-zA-Z0-9_.-]/g, '-');
}
