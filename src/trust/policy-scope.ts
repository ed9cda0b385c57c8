import { realpathSync } from 'node:fs';
import { basename, dirname, resolve, sep } from 'node:path';
import { LadingError } from '../errors.js';
import { DOMAIN_RE, parseReference } from '../oci/reference.js';

/**
 * Trust-policy scopes: which repositories a policy covers. A scope is the global `*`, a registry repository
 * `host[:port]/path` (Docker Hub normalized as references are), or an OCI layout `oci-layout:<dir>`. Within a
 * segment `*` matches any characters but "/"; a whole segment `**` matches one or more segments.
 *
 * Docker Hub has several spellings (`nginx`, `docker.io/library/nginx`, `INDEX.DOCKER.IO/library/nginx`,
 * `registry-1.docker.io/library/nginx`, `DOCKER.IO/nginx`); scopes and the repositories matched against them are
 * both brought to one form (`docker.io/library/nginx`) so every spelling selects the same policy.
 *
 * Matching is linear in the pattern times the name (no regular expressions): a scope is a policy author's input
 * and the name may come from anyone, so neither may be able to make selection slow.
 */

export const GLOBAL_SCOPE = '*';
export const LAYOUT_SCOPE_PREFIX = 'oci-layout:';

export interface CompiledScope {
  /** The scope as written. */
  written: string;
  /** Normalized: registry lower-cased, Docker Hub expanded, layout directory absolute. */
  normalized: string;
  kind: 'global' | 'registry' | 'layout';
  glob: boolean;
  /** Characters that are not wildcards; a longer literal part is a more specific glob. */
  literal: number;
  /** A registry scope whose host has a wildcard in it (`*.example.com/app`); a skip policy may not use one. */
  hostGlob: boolean;
  /** `normalized` split at "/", for matching. */
  segments: string[];
}

/** Docker Hub's other host names; they serve the same repositories as `docker.io`. */
const HUB_HOST = 'docker.io';
const HUB_ALIASES: ReadonlySet<string> = new Set(['index.docker.io', 'registry-1.docker.io']);
const OFFICIAL_PREFIX = 'library/';

/**
 * One spelling for a registry repository: host lower-cased, Docker Hub's aliases folded into docker.io, and a
 * one-segment Hub path put under library/. `parseReference` does part of this (only for the lower-case
 * `index.docker.io`), so the rest is done here rather than there, where other callers rely on its behaviour.
 */
function canonicalRegistryRepository(registry: string, repository: string, oneSegmentIsOfficial: boolean): string {
  let host = registry.toLowerCase();
  if (HUB_ALIASES.has(host)) host = HUB_HOST;
  let path = repository;
  if (host === HUB_HOST && oneSegmentIsOfficial && !path.includes('/')) path = OFFICIAL_PREFIX + path;
  return `${host}/${path}`;
}

// Lower-case alphanumerics survive every part of the reference grammar, so a glob can be validated by parsing
// a stand-in. The tokens are long and odd so that no real name is mistaken for one.
const STAR_TOKEN = 'zq0ladingstar0qz';
const GLOBSTAR_TOKEN = 'zq0ladingglobstar0qz';

function invalid(where: string, scope: string, why: string, hint?: string): LadingError {
  return new LadingError('E_POLICY_INVALID', `${where}: scope "${scope}" ${why}`, {
    hint:
      hint ??
      'a scope is "*", a repository such as registry.example.com:5000/team/app (with "*" inside a segment or "**" as a whole segment), or oci-layout:<dir>',
    details: { where, scope },
  });
}

/** Checks the wildcard grammar of one "/"-separated segment; `host` segments may not hold `**`. */
function checkSegment(segment: string, host: boolean): string | undefined {
  if (segment === '**') return host ? '"**" cannot stand for a registry host' : undefined;
  if (segment.includes('**')) return `segment "${segment}" uses "**" inside a segment; "**" must be a whole segment`;
  return undefined;
}

function compiled(written: string, normalized: string, kind: CompiledScope['kind'], hostGlob = false): CompiledScope {
  const glob = normalized.includes('*');
  return {
    written,
    normalized,
    kind,
    glob,
    literal: normalized.replace(/\*/g, '').length,
    hostGlob,
    segments: normalized.split('/'),
  };
}

/**
 * The real path of `abs`, with symlinks resolved in the longest part of it that exists: a layout reached
 * through a symlink selects the same policy as its real directory, and so does one not created yet (a push
 * target) under a symlinked parent. Falls back to `abs` when the disk cannot say (permissions, loops).
 */
function realLayoutPath(abs: string): string {
  const rest: string[] = [];
  let at = abs;
  for (;;) {
    try {
      const real = realpathSync(at);
      return rest.length === 0 ? real : resolve(real, ...rest.reverse());
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'ENOTDIR') return abs;
      const parent = dirname(at);
      if (parent === at) return abs;
      rest.push(basename(at));
      at = parent;
    }
  }
}

/**
 * A directory as a layout repository string: absolute, symlinks resolved as far as the path exists,
 * "/"-separated, no trailing separator.
 *
 * Layout scopes are globs like registry ones: a `*` in an `oci-layout:` scope is a wildcard, never a literal
 * character, so a directory whose name holds `*` cannot be named exactly by a scope (a glob over it can).
 * Its path here, used for matching, is taken literally.
 */
export function layoutRepository(dir: string, baseDir: string = process.cwd()): string {
  let abs = realLayoutPath(resolve(baseDir, dir));
  if (sep === '\\') abs = abs.replace(/\\/g, '/');
  return LAYOUT_SCOPE_PREFIX + abs;
}

function compileLayoutScope(written: string, where: string, baseDir: string): CompiledScope {
  const dir = written.slice(LAYOUT_SCOPE_PREFIX.length);
  if (dir === '') throw invalid(where, written, 'names no directory');
  // Relative directories are read against the policy file's directory, like key paths, so a policy checked
  // in beside its layouts means the same wherever it is run from.
  const normalized = layoutRepository(dir, baseDir);
  const segments = normalized.slice(LAYOUT_SCOPE_PREFIX.length).split('/');
  for (const segment of segments) {
    const fault = checkSegment(segment, false);
    if (fault) throw invalid(where, written, fault);
  }
  return compiled(written, normalized, 'layout');
}

function compileRegistryScope(written: string, where: string): CompiledScope {
  if (written === '**') throw invalid(where, written, 'is not a scope; write "*" for a policy that covers every repository');
  const segments = written.split('/');
  for (let i = 0; i < segments.length; i++) {
    const fault = checkSegment(segments[i]!, i === 0 && segments.length > 1);
    if (fault) throw invalid(where, written, fault);
  }
  if (segments.length === 1 && DOMAIN_RE.test(written) && /[.:]/.test(written)) {
    throw invalid(where, written, 'names a registry, not a repository', `to cover every repository of ${written}, write ${written}/**`);
  }
  if (/[:@]/.test(segments.slice(1).join('/')) || (segments.length === 1 && /[:@]/.test(written))) {
    throw invalid(where, written, 'has a tag or digest; a scope names repositories, not versions');
  }
  const first = segments[0]!;
  if (segments.length > 1 && first.includes('*') && /^[*.:]+$/.test(first) && /[.:]/.test(first)) {
    // `*.*/**` or `*:*/app` reads as "any registry": the global scope in disguise, which would escape the rules
    // that apply to "*" (it may not skip, and only one policy may have it).
    throw invalid(
      where,
      written,
      `has a registry host "${first}" made only of wildcards`,
      'write "*" for a policy over every repository, or name the registry (a host glob needs a literal part, as in *.example.com/**)',
    );
  }
  if (segments.length > 1 && first.includes('*')) {
    // Docker reads a first component without "." or ":" as a Hub namespace; with a wildcard in it the reader
    // cannot tell whether a registry or a namespace was meant, so the scope must say.
    const standIn = first.replace(/\*/g, STAR_TOKEN);
    if (!/[.:]/.test(standIn) || !DOMAIN_RE.test(standIn)) {
      throw invalid(
        where,
        written,
        'starts with a wildcard that could be a registry or a Docker Hub namespace',
        'write the registry explicitly, e.g. docker.io/*/app for Docker Hub or *.example.com/app for hosts',
      );
    }
  }
  const standIn = segments
    .map((s) => (s === '**' ? GLOBSTAR_TOKEN : s.replace(/\*/g, STAR_TOKEN)))
    .join('/');
  let registry: string;
  let repository: string;
  let hostGlob = false;
  try {
    const ref = parseReference(standIn);
    if (ref.tag !== undefined || ref.digest !== undefined) {
      throw invalid(where, written, 'has a tag or digest; a scope names repositories, not versions');
    }
    registry = ref.registry;
    // Hub's `library/` prefix is for one-segment names; "**" stands for any number of them, so it is not one.
    repository = ref.repository === `library/${GLOBSTAR_TOKEN}` && segments[segments.length - 1] === '**' && !written.includes('library/') ? GLOBSTAR_TOKEN : ref.repository;
    hostGlob = segments.length > 1 && first.includes('*');
  } catch (err) {
    if (err instanceof LadingError && err.code === 'E_POLICY_INVALID') throw err;
    const why = err instanceof Error ? err.message.replace(/^invalid reference "[^"]*": /, '') : String(err);
    throw invalid(where, written, `is not a repository: ${why.split(STAR_TOKEN).join('*').split(GLOBSTAR_TOKEN).join('**')}`);
  }
  // A lone "**" under Docker Hub stands for any number of segments, so it does not get library/.
  const canonical = canonicalRegistryRepository(registry, repository, repository !== GLOBSTAR_TOKEN);
  const normalized = canonical.split(GLOBSTAR_TOKEN).join('**').split(STAR_TOKEN).join('*');
  return compiled(written, normalized, 'registry', hostGlob);
}

/** Validates and normalizes a scope; E_POLICY_INVALID naming `where` when it breaks the grammar. */
export function compileScope(written: string, where: string, baseDir: string): CompiledScope {
  if (written === GLOBAL_SCOPE) return { written, normalized: GLOBAL_SCOPE, kind: 'global', glob: true, literal: 0, hostGlob: true, segments: [] };
  if (written.trim() !== written || written === '') throw invalid(where, written, 'is empty or has surrounding spaces');
  if (written.startsWith(LAYOUT_SCOPE_PREFIX)) return compileLayoutScope(written, where, baseDir);
  return compileRegistryScope(written, where);
}

/**
 * The form scopes are matched against: `registry/path` with the registry lower-cased and Docker Hub
 * normalized, or `oci-layout:<absolute dir>`. A tag or digest on a reference is dropped, since policies
 * cover repositories. E_REFERENCE_INVALID when it is not a repository.
 */
export function normalizeRepository(repository: string): string {
  if (repository.startsWith(LAYOUT_SCOPE_PREFIX)) {
    const dir = repository.slice(LAYOUT_SCOPE_PREFIX.length);
    if (dir === '') {
      throw new LadingError('E_REFERENCE_INVALID', `invalid layout repository "${repository}": the directory is missing`, {
        hint: 'write oci-layout:<dir>',
      });
    }
    return layoutRepository(dir);
  }
  const ref = parseReference(repository);
  return canonicalRegistryRepository(ref.registry, ref.repository, true);
}

/**
 * Whether one segment matches a pattern whose `*` stands for any run of characters (none included). The
 * classic greedy algorithm: on a mismatch only the last `*` seen is widened by one, so the work is at most
 * pattern × text, however many stars there are.
 */
export function segmentMatches(pattern: string, text: string): boolean {
  let p = 0;
  let t = 0;
  let star = -1;
  let mark = 0;
  while (t < text.length) {
    if (p < pattern.length && pattern[p] !== '*' && pattern[p] === text[t]) {
      p++;
      t++;
    } else if (p < pattern.length && pattern[p] === '*') {
      star = p++;
      mark = t;
    } else if (star >= 0) {
      p = star + 1;
      t = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.length && pattern[p] === '*') p++;
  return p === pattern.length;
}

/**
 * Whether "/"-separated segments match pattern segments, where a `**` pattern segment stands for one or more
 * non-empty segments. Dynamic programming over (pattern, text) positions: each pair is decided once.
 */
export function segmentsMatch(pattern: readonly string[], text: readonly string[]): boolean {
  const P = pattern.length;
  const T = text.length;
  // next[j]: does pattern[i + 1 ..] match text[j ..]; row i is built from row i + 1.
  let next: boolean[] = new Array<boolean>(T + 1).fill(false);
  next[T] = true;
  for (let i = P - 1; i >= 0; i--) {
    const cur: boolean[] = new Array<boolean>(T + 1).fill(false);
    const seg = pattern[i]!;
    for (let j = T - 1; j >= 0; j--) {
      if (seg === '**') {
        // Take text[j] into the "**", then either stop here or take more.
        cur[j] = text[j] !== '' && (next[j + 1]! || cur[j + 1]!);
      } else {
        cur[j] = next[j + 1]! && (seg.includes('*') ? segmentMatches(seg, text[j]!) : seg === text[j]);
      }
    }
    next = cur;
  }
  return next[0]!;
}

export function scopeMatches(scope: CompiledScope, normalizedRepository: string): boolean {
  if (scope.kind === 'global') return true;
  // A registry glob must never reach a layout directory (or the reverse), whatever its first segment says.
  const isLayout = normalizedRepository.startsWith(LAYOUT_SCOPE_PREFIX);
  if ((scope.kind === 'layout') !== isLayout) return false;
  if (!scope.glob) return scope.normalized === normalizedRepository;
  return segmentsMatch(scope.segments, normalizedRepository.split('/'));
}

