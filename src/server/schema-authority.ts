import type { Readable } from 'node:stream';
import { envelopeIssues } from '../artifact/envelope.js';
import { describeFamily, lookupFamily, type Families, type Family, type SchemaIssue } from '../artifact/family.js';
import type { ParsedManifest } from '../oci/manifest-types.js';
import { OciError } from './errors.js';

/**
 * A family config is an envelope, metadata plus a spec: 4 MiB (the manifest limit) is far beyond any real
 * one, and it is the most a manifest PUT ever holds in memory for it.
 */
export const MAX_FAMILY_CONFIG_BYTES = 4 * 1024 * 1024;
/** An error body lists at most this many issues: enough to fix a config, bounded for a hostile one. */
const MAX_ISSUES_SHOWN = 100;

/** What the authority needs of a family set (a `Families`). */
export type FamilySet = Pick<Families, 'list' | 'byArtifactType' | 'byConfigMediaType'>;

/** Where config blobs are read from: the registry store's readBlob. */
export interface ConfigBlobs {
  readBlob(repo: string, digest: string): Promise<{ size: number; stream: Readable } | undefined>;
}

/**
 * The server as the schema authority for typed artifacts: a manifest whose config is a family's envelope
 * is stored only when the envelope satisfies that family. Anything else passes untouched and unread, so
 * plain images and foreign artifacts cost no more than a map lookup.
 */
export class SchemaAuthority {
  private typesBody?: Buffer;

  constructor(readonly families: FamilySet) {}

  /**
   * The family whose envelope `parsed` carries as its config, or undefined when its config is no family's
   * and its artifactType names none (then nothing is read). Media types are compared normalized (case and
   * parameters ignored), so a config type written differently cannot slip past the check. Refuses:
   *  - a config media type that means a family's config type but is not written exactly as it (readers
   *    that compare exactly and readers that normalize would disagree on whether it is typed);
   *  - an artifactType that names a family over a config that is not that family's envelope (an empty
   *    config included): a lading artifactType must carry its envelope;
   *  - an artifactType that names another family than the config does.
   */
  familyOf(parsed: ParsedManifest): Family | undefined {
    // An index names its entries by digest, and each entry was checked when it was pushed (a manifest
    // PUT cannot name content the repository lacks): an index whose artifactType names a family needs
    // no read of its own.
    if (parsed.kind !== 'manifest') return undefined;
    // Docker schema 2 manifests are checked too: a family config is refused under any manifest media
    // type, else changing the manifest's media type would slip an invalid envelope past the check.
    const { config, artifactType } = parsed.manifest;
    const family = lookupFamily(this.families, 'configMediaType', config.mediaType);
    if (family && config.mediaType !== family.configMediaType) {
      const message = `must be written exactly "${family.configMediaType}", the config media type of family ${family.name} (no other case, no parameters)`;
      throw new OciError('MANIFEST_INVALID', `config.mediaType "${config.mediaType}" ${message}`, {
        detail: { family: family.name, issues: [{ path: 'config.mediaType', message }] },
      });
    }
    const claimed = artifactType !== undefined ? lookupFamily(this.families, 'artifactType', artifactType) : undefined;
    if (claimed && !family) {
      const message =
        `names family ${claimed.name}, whose artifacts carry a ${claimed.name} envelope as their config ` +
        `(mediaType ${claimed.configMediaType}), but the config is ${config.mediaType}`;
      throw new OciError('MANIFEST_INVALID', `artifactType ${artifactType} ${message}`, {
        detail: { artifactTypeFamily: claimed.name, issues: [{ path: 'artifactType', message }] },
      });
    }
    if (!family) return undefined;
    if (claimed && claimed.name !== family.name) {
      const message = `names family ${claimed.name} but the config (${config.mediaType}) is family ${family.name}'s`;
      throw new OciError('MANIFEST_INVALID', `artifactType ${artifactType} ${message}`, {
        detail: { family: family.name, artifactTypeFamily: claimed.name, issues: [{ path: 'artifactType', message }] },
      });
    }
    return family;
  }

  /**
   * Refuses (MANIFEST_INVALID, the first issue in the message and every issue in the detail) a manifest
   * whose family config does not satisfy its family. Runs after the store has checked that the manifest
   * names only content of `repo`, before anything is stored.
   */
  async check(blobs: ConfigBlobs, repo: string, parsed: ParsedManifest): Promise<void> {
    const family = this.familyOf(parsed);
    if (!family || parsed.kind !== 'manifest') return;
    const desc = parsed.manifest.config;
    if (desc.size > MAX_FAMILY_CONFIG_BYTES) throw configTooLarge(family, desc.size);
    const blob = await blobs.readBlob(repo, desc.digest);
    if (!blob) {
      throw new OciError('MANIFEST_BLOB_UNKNOWN', `the config ${desc.digest} is not in ${repo}`, { detail: { missing: [desc.digest] } });
    }
    if (blob.size !== desc.size) {
      blob.stream.destroy();
      throw new OciError('MANIFEST_INVALID', `config.size is ${desc.size} but the config blob ${desc.digest} is ${blob.size} bytes`, {
        detail: { family: family.name, issues: [{ path: 'config.size', message: `must be ${blob.size}, the size of the blob` }] },
      });
    }
    const bytes = await readBounded(blob.stream, blob.size);
    const issues = configIssues(bytes, family);
    if (issues.length === 0) return;
    const first = issues[0]!;
    throw new OciError('MANIFEST_INVALID', `config does not satisfy family ${family.name}: ${first.path ? `${first.path}: ` : ''}${first.message}`, {
      detail: {
        family: family.name,
        issues: issues.slice(0, MAX_ISSUES_SHOWN).map((i) => ({ path: i.path, message: i.message })),
        ...(issues.length > MAX_ISSUES_SHOWN ? { more: issues.length - MAX_ISSUES_SHOWN } : {}),
      },
    });
  }

  /** `GET /ext/v1/types`: every family, sorted by name, with its spec schema; built once (the set is fixed). */
  types(): Buffer {
    this.typesBody ??= Buffer.from(JSON.stringify({ families: typesListing(this.families) }));
    return this.typesBody;
  }
}

/**
 * The families as clients see them. A user family's `source` is left out: it is a path on the server's
 * machine, of no use to a client.
 */
export function typesListing(families: FamilySet): Record<string, unknown>[] {
  return [...families.list()]
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((f) => describeFamily(f, { schema: true }));
}


/** The stored form of an envelope is JSON (canonical when lading wrote it, any JSON from other tools). */
export function configIssues(bytes: Uint8Array, family: Family): SchemaIssue[] {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch (err) {
    const why = err instanceof SyntaxError ? err.message : 'it is not UTF-8';
    return [{ path: '', message: `is not JSON: ${why}` }];
  }
  return envelopeIssues(value, family);
}

/** The `size` bytes of a blob; a stream that yields more is cut off rather than buffered. */
function readBounded(stream: Readable, size: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const buf = Buffer.allocUnsafe(size);
    let at = 0;
    stream.on('data', (c: Buffer) => {
      if (at + c.length > size) {
        stream.destroy();
        reject(new OciError('INTERNAL', 'a stored blob is longer than its recorded size', { status: 500 }));
        return;
      }
      c.copy(buf, at);
      at += c.length;
    });
    stream.on('error', reject);
    stream.on('end', () => {
      if (at === size) resolve(buf);
      else reject(new OciError('INTERNAL', `a stored blob ended at byte ${at} of ${size}`, { status: 500 }));
    });
  });
}

function configTooLarge(family: Family, size: number): OciError {
  return new OciError('MANIFEST_INVALID', `the config of family ${family.name} is ${size} bytes, over the ${MAX_FAMILY_CONFIG_BYTES}-byte limit of a family config`, {
    detail: { family: family.name, limit: MAX_FAMILY_CONFIG_BYTES, issues: [{ path: 'config.size', message: `must be at most ${MAX_FAMILY_CONFIG_BYTES}` }] },
  });
}
