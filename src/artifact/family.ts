import { constants } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { delimiter, join, resolve } from 'node:path';
import { LadingError, toLadingError } from '../errors.js';
import { normalizeMediaType } from '../oci/mediatype.js';
import { API_VERSION, BUILTIN_FAMILIES, FAMILY_NAME_PATTERN } from './builtin-families.js';
import { parseStructuredText } from './envelope.js';
import { compileSchema, finishIssues, formatPath, validateAgainst } from './schema.js';
import type { LocatedIssue } from './schema.js';

export { API_VERSION };

/** A kind of typed artifact. */
export interface Family {
  name: string;
  description: string;
  artifactType: string;
  configMediaType: string;
  /** JSON Schema 2020-12 for the envelope's `spec`. */
  schema: Record<string, unknown>;
  /** Whether the artifact may be mounted, and where when the envelope names no path (`{name}` = metadata.name). */
  mount: { mountable: boolean; defaultPath?: string };
  /** Repository path segments that infer this family (`…/tools/…` → cli). */
  pathSegments: string[];
  /** `platform`: one variant per platform is expected (cli); `none`: a single manifest. */
  variants: 'platform' | 'none';
  builtin: boolean;
  /** The file it was read from, for user families. */
  source?: string;
}

/** One schema violation at an envelope path such as `spec.install[2].order`. */
export interface SchemaIssue {
  path: string;
  message: string;
}

/** Family files are small; anything near this is not one. */
const MAX_FAMILY_FILE_BYTES = 1024 * 1024;
const FAMILY_FILE_RE = /\.(ya?ml|json)$/;
/** A repository path component, as the distribution grammar has it. */
const PATH_COMPONENT_PATTERN = '^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$';

/** The outer shape of a family file. Closed everywhere: an unknown field is a typo until proven otherwise. */
const FAMILY_DOCUMENT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: API_VERSION },
    kind: { const: 'Family' },
    metadata: {
      type: 'object',
      additionalProperties: false,
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: FAMILY_NAME_PATTERN },
        description: { type: 'string', maxLength: 4096 },
      },
    },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['artifactType', 'configMediaType', 'schema'],
      properties: {
        artifactType: { type: 'string', format: 'media-type' },
        configMediaType: { type: 'string', format: 'media-type' },
        mount: {
          type: 'object',
          additionalProperties: false,
          required: ['mountable'],
          properties: {
            mountable: { type: 'boolean' },
            defaultPath: { type: 'string', format: 'absolute-path' },
          },
        },
        infer: {
          type: 'object',
          additionalProperties: false,
          required: ['pathSegments'],
          properties: {
            pathSegments: { type: 'array', uniqueItems: true, items: { type: 'string', pattern: PATH_COMPONENT_PATTERN } },
          },
        },
        variants: { enum: ['platform', 'none'] },
        schema: { type: 'object' },
      },
    },
  },
} as const;

function familyInvalid(source: string, issues: LocatedIssue[]): LadingError {
  const all = finishIssues(issues);
  const first = all[0]!;
  const more = all.length > 1 ? ` (and ${all.length - 1} more)` : '';
  return new LadingError('E_FAMILY_INVALID', `${source}: ${first.path ? `${first.path}: ` : ''}${first.message}${more}`, {
    hint: `a family file is {apiVersion: ${API_VERSION}, kind: Family, metadata: {name}, spec: {artifactType, configMediaType, schema, mount?, infer?, variants?}}`,
    details: { source, path: first.path, issues: all },
  });
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/** Far deeper than any real family file; shallow enough that copying, freezing and compiling cannot exhaust the stack. */
const MAX_FAMILY_DEPTH = 128;

/** The path of the first value nested deeper than `limit`, found without recursion; undefined if there is none. */
function tooDeep(value: unknown, limit: number): (string | number)[] | undefined {
  interface Frame {
    v: unknown;
    depth: number;
    key: string | number | undefined;
    parent: Frame | undefined;
  }
  const stack: Frame[] = [{ v: value, depth: 0, key: undefined, parent: undefined }];
  while (stack.length > 0) {
    const frame = stack.pop()!;
    const { v, depth } = frame;
    if (v === null || typeof v !== 'object') continue;
    if (depth >= limit) {
      const path: (string | number)[] = [];
      for (let f: Frame | undefined = frame; f?.key !== undefined; f = f.parent) path.unshift(f.key);
      return path;
    }
    if (Array.isArray(v)) for (let i = v.length - 1; i >= 0; i--) stack.push({ v: v[i], depth: depth + 1, key: i, parent: frame });
    else for (const [k, x] of Object.entries(v)) stack.push({ v: x, depth: depth + 1, key: k, parent: frame });
  }
  return undefined;
}

/**
 * A family from an already parsed family document; E_FAMILY_INVALID naming `source` and the path of the
 * fault, including faults inside its spec schema. The result is frozen, its schema compiled.
 */
export function familyFromDocument(value: unknown, source: string): Family {
  const deep = tooDeep(value, MAX_FAMILY_DEPTH);
  if (deep) {
    const path = formatPath(deep);
    throw new LadingError('E_FAMILY_INVALID', `${source}: ${path}: is nested more than ${MAX_FAMILY_DEPTH} levels deep`, {
      hint: 'a family file this deep is not a real schema; share repeated parts through $defs and $ref',
      details: { source, path },
    });
  }
  const issues = validateAgainst(FAMILY_DOCUMENT_SCHEMA, value, [], { source: 'lading family document schema', path: [] });
  if (issues.length > 0) throw familyInvalid(source, issues);
  const doc = value as {
    metadata: { name: string; description?: string };
    spec: {
      artifactType: string;
      configMediaType: string;
      mount?: { mountable: boolean; defaultPath?: string };
      infer?: { pathSegments: string[] };
      variants?: 'platform' | 'none';
      schema: Record<string, unknown>;
    };
  };
  const { spec } = doc;
  if (spec.mount && !spec.mount.mountable && spec.mount.defaultPath !== undefined) {
    throw familyInvalid(source, [{ segments: ['spec', 'mount', 'defaultPath'], message: 'is not allowed when mountable is false' }]);
  }
  // The envelope is stored as JSON, so its media type must say so.
  if (!/(^application\/json$|\+json$)/.test(spec.configMediaType.split(';')[0]!.trim())) {
    throw familyInvalid(source, [{ segments: ['spec', 'configMediaType'], message: 'must be a JSON media type (ending in +json)' }]);
  }
  if (spec.artifactType === spec.configMediaType) {
    throw familyInvalid(source, [{ segments: ['spec', 'configMediaType'], message: 'must differ from artifactType' }]);
  }
  const family: Family = {
    name: doc.metadata.name,
    description: doc.metadata.description ?? '',
    artifactType: spec.artifactType,
    configMediaType: spec.configMediaType,
    schema: structuredClone(spec.schema),
    mount: spec.mount?.mountable
      ? { mountable: true, ...(spec.mount.defaultPath !== undefined ? { defaultPath: spec.mount.defaultPath } : {}) }
      : { mountable: false },
    pathSegments: [...(spec.infer?.pathSegments ?? [])],
    variants: spec.variants ?? 'none',
    builtin: false,
    source,
  };
  deepFreeze(family);
  compileSchema(family.schema, { source, family: family.name, path: ['spec', 'schema'] });
  return family;
}

function sourceOf(f: Family): string {
  return f.builtin ? `built-in family "${f.name}"` : `family "${f.name}" (${f.source ?? 'unknown source'})`;
}

/** The set of known families: the built-ins plus any read from directories. */
export class Families {
  readonly #all: readonly Family[];
  readonly #byName = new Map<string, Family>();
  readonly #byArtifactType = new Map<string, Family>();
  readonly #byConfigMediaType = new Map<string, Family>();
  readonly #bySegment = new Map<string, Family>();

  private constructor(families: readonly Family[]) {
    this.#all = families;
    for (const f of families) {
      this.#claim(this.#byName, f.name, f, 'name');
      this.#claim(this.#byArtifactType, f.artifactType, f, 'artifactType');
      this.#claim(this.#byConfigMediaType, f.configMediaType, f, 'configMediaType');
      for (const s of f.pathSegments) this.#claim(this.#bySegment, s, f, 'path segment');
    }
  }

  #claim(index: Map<string, Family>, key: string, f: Family, what: string): void {
    const holder = index.get(key);
    if (holder && holder !== f) {
      throw new LadingError(
        'E_FAMILY_INVALID',
        `${f.source ?? `built-in family "${f.name}"`}: family "${f.name}" reuses the ${what} "${key}" of ${sourceOf(holder)}`,
        {
          hint: 'every family needs its own name, artifactType, configMediaType and path segments; rename one of them',
          details: { source: f.source, family: f.name, field: what, value: key, conflictsWith: holder.source ?? `builtin:${holder.name}` },
        },
      );
    }
    index.set(key, f);
  }

  static #builtin: Families | undefined;

  static builtin(): Families {
    Families.#builtin ??= new Families(BUILTIN_FAMILIES);
    return Families.#builtin;
  }

  /** The built-ins plus the given families, refusing any that reuses a name, media type or path segment. */
  static from(families: readonly Family[]): Families {
    return families.length === 0 ? Families.builtin() : new Families([...BUILTIN_FAMILIES, ...families]);
  }

  /**
   * Built-ins plus every *.yaml|*.yml|*.json family file in each dir (sorted by name, not recursive, dot
   * files skipped); a user family may not reuse a name, artifactType, configMediaType or path segment.
   */
  static async load(dirs: string[] = []): Promise<Families> {
    const families: Family[] = [];
    const seen = new Set<string>();
    for (const dir of dirs) {
      const abs = resolve(dir);
      if (seen.has(abs)) continue;
      seen.add(abs);
      let names: string[];
      try {
        names = await readdir(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new LadingError(
          'E_IO',
          code === 'ENOENT'
            ? `family directory "${dir}" does not exist`
            : code === 'ENOTDIR'
              ? `family directory "${dir}" is not a directory`
              : `cannot read family directory "${dir}": ${(err as Error).message}`,
          { hint: 'pass an existing directory of family files with --families DIR or LADING_FAMILIES', details: { dir }, cause: err },
        );
      }
      for (const name of names.filter((n) => FAMILY_FILE_RE.test(n) && !n.startsWith('.')).sort()) {
        const path = join(dir, name);
        const st = await stat(path).catch(() => undefined);
        if (!st?.isFile()) continue;
        families.push(await readFamilyFile(path));
      }
    }
    return Families.from(families);
  }

  list(): Family[] {
    return [...this.#all];
  }

  find(name: string): Family | undefined {
    return this.#byName.get(name);
  }

  /** Throws E_FAMILY_UNKNOWN listing the known names. */
  get(name: string): Family {
    const f = this.#byName.get(name);
    if (f) return f;
    const known = this.#all.map((x) => x.name);
    throw new LadingError('E_FAMILY_UNKNOWN', `unknown family "${name}"`, {
      hint: `known families: ${known.join(', ')}; more can be defined in a directory given with --families DIR or LADING_FAMILIES`,
      details: { name, known },
    });
  }

  byArtifactType(artifactType: string): Family | undefined {
    return this.#byArtifactType.get(artifactType);
  }

  byConfigMediaType(mediaType: string): Family | undefined {
    return this.#byConfigMediaType.get(mediaType);
  }

  /**
   * The family whose path segment appears among the repository's segments (not the last one, which names
   * the artifact itself), if any; with several, the segment nearest the end wins (`plugins/tools/x` → cli).
   */
  infer(repository: string): Family | undefined {
    const segments = repository.split('/').slice(0, -1);
    for (let i = segments.length - 1; i >= 0; i--) {
      const f = this.#bySegment.get(segments[i]!);
      if (f) return f;
    }
    return undefined;
  }
}

function notAFamilyFile(path: string, why: string, details: Record<string, unknown> = {}): LadingError {
  return new LadingError('E_FAMILY_INVALID', `${path}: ${why}`, {
    hint: 'a family file is a regular YAML or JSON file of at most 1 MiB',
    details: { source: path, ...details },
  });
}

/**
 * Reads and checks one family file (YAML or JSON); E_FAMILY_INVALID with the path of the fault. Anything but
 * a regular file of at most 1 MiB is refused before reading: a FIFO or device would block or never end.
 */
export async function readFamilyFile(path: string): Promise<Family> {
  let text: string;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw notAFamilyFile(path, 'not a regular file');
    if (st.size > MAX_FAMILY_FILE_BYTES) throw notAFamilyFile(path, `a family file may be at most 1 MiB, this one is ${st.size} bytes`, { size: st.size });
    // Non-blocking, so that a file swapped for a FIFO since the stat cannot hang the open; checked again on the handle.
    const handle = await open(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
    try {
      const again = await handle.stat();
      if (!again.isFile()) throw notAFamilyFile(path, 'not a regular file');
      const buf = Buffer.alloc(MAX_FAMILY_FILE_BYTES + 1);
      let length = 0;
      while (length < buf.length) {
        const { bytesRead } = await handle.read(buf, length, buf.length - length, null);
        if (bytesRead === 0) break;
        length += bytesRead;
      }
      if (length > MAX_FAMILY_FILE_BYTES) throw notAFamilyFile(path, 'a family file may be at most 1 MiB', { size: length });
      text = buf.subarray(0, length).toString('utf8');
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof LadingError) throw err;
    const e = toLadingError(err, 'E_IO');
    throw new LadingError('E_IO', `cannot read family file "${path}": ${e.message}`, { details: { source: path }, cause: err });
  }
  return familyFromDocument(parseStructuredText(text, path, 'E_FAMILY_INVALID'), path);
}

/** Directories named by LADING_FAMILIES (path-list separated, like PATH). */
export function familyDirsFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  return (env.LADING_FAMILIES ?? '').split(delimiter).filter(Boolean);
}

/** A family as a client is shown it: everything but where a user family was read from, schema optional. */
export function describeFamily(f: Family, opts: { schema?: boolean } = {}): Record<string, unknown> {
  return {
    name: f.name,
    description: f.description,
    artifactType: f.artifactType,
    configMediaType: f.configMediaType,
    mount: f.mount,
    pathSegments: f.pathSegments,
    variants: f.variants,
    builtin: f.builtin,
    ...(opts.schema ? { schema: f.schema } : {}),
  };
}

/**
 * The family whose `key` is `mediaType`: written exactly, else equal once both are normalized (case and
 * parameters ignored). An exact match wins, so two user families that differ only in a parameter stay apart.
 */
export function lookupFamily(
  families: Pick<Families, 'list' | 'byArtifactType' | 'byConfigMediaType'>,
  key: 'artifactType' | 'configMediaType',
  mediaType: string,
): Family | undefined {
  const exact = key === 'artifactType' ? families.byArtifactType(mediaType) : families.byConfigMediaType(mediaType);
  if (exact) return exact;
  const wanted = normalizeMediaType(mediaType);
  for (const f of families.list()) if (normalizeMediaType(f[key]) === wanted) return f;
  return undefined;
}
