import { resolve, sep } from 'node:path';
import { LadingError } from '../errors.js';
import { DOMAIN_RE, parseReference } from '../oci/reference.js';

/**
 * Trust-policy scopes: which repositories a policy covers. A scope is the global `*`, a registry repository
 * `host[:port]/path` (Docker Hub normalized as references are), or an OCI layout `oci-layout:<dir>`. Within a
 * segment `*` matches any characters but "/"; a whole segment `**` matches one or more segments.
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
  regex: RegExp;
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

function toRegexSource(normalized: string): string {
  return normalized
    .split('/')
    .map((segment) => {
      if (segment === '**') return '[^/]+(?:/[^/]+)*';
      return segment
        .split('*')
        .map((part) => part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
        .join('[^/]*');
    })
    .join('/');
}

function compiled(written: string, normalized: string, kind: CompiledScope['kind']): CompiledScope {
  const glob = normalized.includes('*');
  return {
    written,
    normalized,
    kind,
    glob,
    literal: normalized.replace(/\*/g, '').length,
    regex: new RegExp(`^${toRegexSource(normalized)}$`),
  };
}

/** A directory as a layout repository string: absolute, "/"-separated, no trailing separator. */
export function layoutRepository(dir: string, baseDir: string = process.cwd()): string {
  let abs = resolve(baseDir, dir);
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
  try {
    const ref = parseReference(standIn);
    if (ref.tag !== undefined || ref.digest !== undefined) {
      throw invalid(where, written, 'has a tag or digest; a scope names repositories, not versions');
    }
    registry = ref.registry;
    // Hub's `library/` prefix is for one-segment names; "**" stands for any number of them, so it is not one.
    repository = ref.repository === `library/${GLOBSTAR_TOKEN}` && segments[segments.length - 1] === '**' && !written.includes('library/') ? GLOBSTAR_TOKEN : ref.repository;
  } catch (err) {
    if (err instanceof LadingError && err.code === 'E_POLICY_INVALID') throw err;
    const why = err instanceof Error ? err.message.replace(/^invalid reference "[^"]*": /, '') : String(err);
    throw invalid(where, written, `is not a repository: ${why.split(STAR_TOKEN).join('*').split(GLOBSTAR_TOKEN).join('**')}`);
  }
  const normalized = `${registry.toLowerCase()}/${repository}`.split(GLOBSTAR_TOKEN).join('**').split(STAR_TOKEN).join('*');
  return compiled(written, normalized, 'registry');
}

/** Validates and normalizes a scope; E_POLICY_INVALID naming `where` when it breaks the grammar. */
export function compileScope(written: string, where: string, baseDir: string): CompiledScope {
  if (written === GLOBAL_SCOPE) return { written, normalized: GLOBAL_SCOPE, kind: 'global', glob: true, literal: 0, regex: /^/ };
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
  return `${ref.registry.toLowerCase()}/${ref.repository}`;
}

export function scopeMatches(scope: CompiledScope, normalizedRepository: string): boolean {
  if (scope.kind === 'global') return true;
  // A registry glob must never reach a layout directory (or the reverse), whatever its first segment says.
  const isLayout = normalizedRepository.startsWith(LAYOUT_SCOPE_PREFIX);
  if ((scope.kind === 'layout') !== isLayout) return false;
  if (!scope.glob) return scope.normalized === normalizedRepository;
  return scope.regex.test(normalizedRepository);
}

