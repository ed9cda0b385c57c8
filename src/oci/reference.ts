import { LadingError } from '../errors.js';
import { isDigest, parseDigest } from './digest.js';

/**
 * References as the distribution/reference grammar defines them:
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] path-component ( "/" path-component )*
 *   domain     := host [ ":" port ]      host: DNS labels joined by "." or a bracketed IPv6 address
 *
 * plus the Docker Hub normalization every container tool applies (`ubuntu` → `docker.io/library/ubuntu`).
 */

export const DEFAULT_REGISTRY = 'docker.io';
export const DEFAULT_TAG = 'latest';
/** Docker Hub serves its API from a different host than the name users write. */
const DOCKER_HUB_API_HOST = 'registry-1.docker.io';
const LEGACY_DEFAULT_REGISTRY = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
/** The registry rule is on the path; the domain does not count. */
export const NAME_TOTAL_LENGTH_MAX = 255;
/** Far above anything legal; bounds the regular-expression work done on hostile input. */
const MAX_REFERENCE_LENGTH = 4096;

const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|-+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_NAME_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_NAME = `${DOMAIN_NAME_COMPONENT}(?:\\.${DOMAIN_NAME_COMPONENT})*`;
// Deliberately loose, as upstream: zones ("%eth0") and embedded IPv4 are refused, the rest is left to the resolver.
const IPV6_ADDRESS = '\\[[a-fA-F0-9:]+\\]';
const DOMAIN = `(?:${DOMAIN_NAME}|${IPV6_ADDRESS})(?::[0-9]+)?`;
const REMOTE_NAME = `${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const NAME = `(?:${DOMAIN}/)?${REMOTE_NAME}`;
const TAG = '[\\w][\\w.-]{0,127}';
// The reference grammar's own digest shape; the algorithm-specific rules are parseDigest's job.
const DIGEST = '[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}';
const IDENTIFIER = '[a-f0-9]{64}';

/** A registry host with optional port. */
export const DOMAIN_RE = new RegExp(`^${DOMAIN}$`);
/** A full repository name; captures [1] domain (may be undefined) and [2] path. */
export const NAME_RE = new RegExp(`^(?:(${DOMAIN})/)?(${REMOTE_NAME})$`);
/** A whole reference; captures [1] name, [2] tag, [3] digest (undefined when absent). */
export const REFERENCE_RE = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@(${DIGEST}))?$`);
/** A bare 64-hex image ID, which normalized parsing refuses as a name because it is ambiguous. */
export const IDENTIFIER_RE = new RegExp(`^${IDENTIFIER}$`);
const TAG_RE = new RegExp(`^${TAG}$`);
const DIGEST_SHAPE_RE = new RegExp(`^${DIGEST}$`);
const PATH_COMPONENT_RE = new RegExp(`^${PATH_COMPONENT}$`);
const REMOTE_NAME_RE = new RegExp(`^${REMOTE_NAME}$`);

export interface Reference {
  /** The registry host[:port]; empty only when parsed without normalization and no domain was written. */
  registry: string;
  repository: string;
  tag?: string;
  digest?: string;
}

/** Why a reference was refused; `details.reason` in the thrown error. */
export type ReferenceFault = 'empty' | 'format' | 'uppercase' | 'too-long' | 'identifier' | 'digest';
/** Which part of a reference is malformed; `details.part` for `format` faults. */
export type ReferencePart = 'registry' | 'repository' | 'tag' | 'digest' | 'reference';

const GRAMMAR_HINT =
  'a reference looks like registry.example.com:5000/team/app:1.0 or …/app@sha256:<64 hex digits>; ' +
  'repository paths are lower-case';

function refusal(
  input: string,
  reason: ReferenceFault,
  why: string,
  extra: { hint?: string; part?: ReferencePart; cause?: unknown; digestFault?: unknown } = {},
): LadingError {
  const shown = input.length > 300 ? `${input.slice(0, 300)}…` : input;
  const details: Record<string, unknown> = { reason };
  if (extra.part) details.part = extra.part;
  if (extra.digestFault !== undefined) details.digestFault = extra.digestFault;
  return new LadingError('E_REFERENCE_INVALID', `invalid reference "${shown}": ${why}`, {
    hint: extra.hint ?? GRAMMAR_HINT,
    details,
    ...(extra.cause === undefined ? {} : { cause: extra.cause }),
  });
}

/**
 * Finds the first part of a reference that breaks the grammar, so that the error can name it; only called
 * once the whole-reference expression has already refused the input.
 */
function diagnose(input: string, s: string): LadingError {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s)) {
    return refusal(input, 'format', 'a reference has no URL scheme', {
      part: 'registry',
      hint: 'write registry/repository[:tag], e.g. ghcr.io/org/app:1.0, without "https://"',
    });
  }
  let namePart = s;
  const at = s.indexOf('@');
  if (at >= 0) {
    namePart = s.slice(0, at);
    const digest = s.slice(at + 1);
    if (!DIGEST_SHAPE_RE.test(digest)) {
      return refusal(input, 'format', `digest "${digest}" is not of the form algorithm:hex (at least 32 hex digits)`, {
        part: 'digest',
      });
    }
  }
  const lastSlash = namePart.lastIndexOf('/');
  if (namePart.startsWith('[') && lastSlash < 0) {
    return refusal(input, 'format', `registry host "${namePart}" needs a repository path after it`, {
      part: 'repository',
      hint: 'an IPv6 registry is written with its path, e.g. [::1]:5000/team/app',
    });
  }
  let name = namePart;
  const lastColon = namePart.lastIndexOf(':');
  if (lastColon > lastSlash) {
    const tag = namePart.slice(lastColon + 1);
    name = namePart.slice(0, lastColon);
    if (!TAG_RE.test(tag)) {
      return refusal(
        input,
        'format',
        tag === ''
          ? 'the tag after ":" is empty'
          : `tag "${tag}" is invalid: a tag is 1-128 of [A-Za-z0-9_.-] and does not start with "." or "-"`,
        { part: 'tag' },
      );
    }
  }
  if (name === '') {
    return refusal(input, 'format', 'the repository name is missing', { part: 'repository' });
  }
  const components = name.split('/');
  let first = 0;
  if (components.length > 1) {
    const host = components[0]!;
    if (DOMAIN_RE.test(host)) {
      first = 1;
    } else if (/[.:[\]%]/.test(host) || !PATH_COMPONENT_RE.test(host)) {
      return refusal(
        input,
        'format',
        `registry host "${host}" is invalid: it must be DNS labels joined by "." or a bracketed IPv6 address, with an optional numeric port`,
        { part: 'registry' },
      );
    }
  }
  for (const component of components.slice(first)) {
    if (component === '') {
      return refusal(input, 'format', `repository "${name}" has an empty path component (a doubled or trailing "/")`, {
        part: 'repository',
      });
    }
    if (!PATH_COMPONENT_RE.test(component)) {
      return refusal(
        input,
        'format',
        `repository path component "${component}" is invalid: use lower-case letters and digits, ` +
          'separated by single ".", "_", "__" or runs of "-"',
        { part: 'repository' },
      );
    }
  }
  return refusal(input, 'format', 'it does not follow the reference grammar', { part: 'reference' });
}

/**
 * The grammar alone (upstream's `Parse`): no default registry, no `library/` prefix. `written` is what the
 * user typed, which error diagnosis looks at so that it never blames a part normalization added.
 */
function parseStrict(input: string, s: string, written: string = s): Reference {
  if (s === '') throw refusal(input, 'empty', 'the reference is empty', { hint: 'name a repository, e.g. ghcr.io/org/app:1.0' });
  if (s.length > MAX_REFERENCE_LENGTH) {
    throw refusal(input, 'too-long', `it is ${s.length} characters long`);
  }
  const m = REFERENCE_RE.exec(s);
  if (!m) {
    if (REFERENCE_RE.test(s.toLowerCase())) {
      throw refusal(input, 'uppercase', 'the repository name must be lower-case', {
        hint: 'only registry hosts and tags may contain upper-case letters',
      });
    }
    throw diagnose(input, written);
  }
  const name = m[1]!;
  const tag = m[2];
  const digest = m[3];
  const nm = NAME_RE.exec(name)!;
  const registry = nm[1] ?? '';
  const repository = nm[2]!;
  if (repository.length > NAME_TOTAL_LENGTH_MAX) {
    throw refusal(
      input,
      'too-long',
      `repository path is ${repository.length} characters, more than ${NAME_TOTAL_LENGTH_MAX}`,
      { hint: `shorten the repository path to at most ${NAME_TOTAL_LENGTH_MAX} characters` },
    );
  }
  if (digest !== undefined) {
    try {
      parseDigest(digest);
    } catch (err) {
      const fault = err instanceof LadingError ? err.details?.fault : undefined;
      throw refusal(input, 'digest', `digest part: ${err instanceof Error ? err.message : String(err)}`, {
        part: 'digest',
        digestFault: fault,
        cause: err,
        hint: 'a digest looks like sha256:<64 lower-case hex digits>',
      });
    }
  }
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/**
 * Splits off the registry the way Docker does: the first component is a registry only if it looks like a
 * host (has "." or ":"), is `localhost`, or has upper case (which Docker Hub namespaces never have).
 */
function splitDockerDomain(s: string): [string, string] {
  const slash = s.indexOf('/');
  if (slash < 0) return [DEFAULT_REGISTRY, OFFICIAL_REPO_PREFIX + s];
  const maybe = s.slice(0, slash);
  let domain: string;
  let rest: string;
  if (maybe === 'localhost' || /[.:]/.test(maybe) || maybe.toLowerCase() !== maybe) {
    domain = maybe === LEGACY_DEFAULT_REGISTRY ? DEFAULT_REGISTRY : maybe;
    rest = s.slice(slash + 1);
  } else {
    domain = DEFAULT_REGISTRY;
    rest = s;
  }
  if (domain === DEFAULT_REGISTRY && !rest.includes('/')) rest = OFFICIAL_REPO_PREFIX + rest;
  return [domain, rest];
}

/**
 * Parses `registry/repository[:tag][@digest]`. With normalization (the default) a missing registry means
 * Docker Hub, `index.docker.io` is folded into `docker.io`, and Hub's one-component names get `library/`.
 * Throws E_REFERENCE_INVALID naming the faulty part, with `details.reason` (and `details.part`).
 */
export function parseReference(input: string, opts: { normalize?: boolean } = {}): Reference {
  if (typeof input !== 'string') throw refusal(String(input), 'format', 'a reference must be a string');
  if (opts.normalize === false) return parseStrict(input, input);
  if (input === '') return parseStrict(input, input);
  if (IDENTIFIER_RE.test(input)) {
    throw refusal(input, 'identifier', 'a 64-character hex string is ambiguous with an image ID and cannot be a repository name', {
      hint: 'to pin content, write repository@sha256:<hex>',
    });
  }
  if (input.startsWith('[') && !input.includes('/')) {
    throw refusal(input, 'format', `registry host "${input.split('@')[0]}" needs a repository path after it`, {
      part: 'repository',
      hint: 'an IPv6 registry is written with its path, e.g. [::1]:5000/team/app',
    });
  }
  const [domain, rest] = splitDockerDomain(input);
  const colon = rest.indexOf(':');
  const path = colon < 0 ? rest : rest.slice(0, colon);
  if (path.toLowerCase() !== path) {
    throw refusal(input, 'uppercase', `repository path "${path}" must be lower-case`, {
      hint: 'only registry hosts and tags may contain upper-case letters',
    });
  }
  return parseStrict(input, `${domain}/${rest}`, input);
}

/** A reference that is either named, or only a digest (a bare 64-hex ID is read as a sha256 digest). */
export type AnyReference = { kind: 'named'; ref: Reference } | { kind: 'digest'; digest: string };

/** Accepts what `docker inspect` accepts: a digest or image ID alone, else a normalized reference. */
export function parseAnyReference(input: string): AnyReference {
  if (IDENTIFIER_RE.test(input)) return { kind: 'digest', digest: `sha256:${input}` };
  if (isDigest(input)) return { kind: 'digest', digest: input };
  return { kind: 'named', ref: parseReference(input) };
}

/** A normalized reference ready to resolve: `latest` when nothing is pinned, and only the digest when both are. */
export function parseDockerRef(input: string): Reference {
  const ref = parseReference(input);
  if (ref.digest !== undefined) return { registry: ref.registry, repository: ref.repository, digest: ref.digest };
  return withDefaultTag(ref);
}

/** The same reference, tagged `latest` if it has neither tag nor digest. */
export function withDefaultTag(ref: Reference): Reference {
  if (ref.tag !== undefined || ref.digest !== undefined) return ref;
  return { ...ref, tag: DEFAULT_TAG };
}

function nameOf(ref: Reference): string {
  return ref.registry ? `${ref.registry}/${ref.repository}` : ref.repository;
}

function suffixOf(ref: Reference): string {
  return `${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

export function formatReference(ref: Reference): string {
  return nameOf(ref) + suffixOf(ref);
}

/** The short form people type: `docker.io/library/x:1` → `x:1`, `docker.io/org/x` → `org/x`. */
export function familiarString(ref: Reference): string {
  if (ref.registry !== DEFAULT_REGISTRY) return formatReference(ref);
  let path = ref.repository;
  // Hub's official images live one level under library/; deeper paths are kept whole so they stay unambiguous.
  if (path.startsWith(OFFICIAL_REPO_PREFIX) && !path.slice(OFFICIAL_REPO_PREFIX.length).includes('/')) {
    path = path.slice(OFFICIAL_REPO_PREFIX.length);
  }
  return path + suffixOf(ref);
}

/** The host to send API requests to for a registry name. */
export function apiHost(registry: string): string {
  return registry === DEFAULT_REGISTRY || registry === LEGACY_DEFAULT_REGISTRY ? DOCKER_HUB_API_HOST : registry;
}

export function isValidTag(tag: string): boolean {
  return typeof tag === 'string' && TAG_RE.test(tag);
}

/** A repository path (no registry): lower-case components, at most 255 characters in all. */
export function isValidRepository(name: string): boolean {
  return typeof name === 'string' && name.length <= NAME_TOTAL_LENGTH_MAX && REMOTE_NAME_RE.test(name);
}

/**
 * The `<reference>` of `/v2/<name>/manifests/<reference>`: the digest when pinned (it is immutable, the tag
 * is not), else the tag. A reference with neither is refused rather than guessed; see withDefaultTag.
 */
export function referenceString(ref: Reference): string {
  if (ref.digest !== undefined) return ref.digest;
  if (ref.tag !== undefined) return ref.tag;
  throw new LadingError('E_REFERENCE_INVALID', `reference "${formatReference(ref)}" names neither a tag nor a digest`, {
    hint: `add ":${DEFAULT_TAG}" or "@sha256:<hex>" to say which manifest is meant`,
    details: { reason: 'format', part: 'tag' },
  });
}

export type TargetReference =
  | { kind: 'remote'; ref: Reference }
  | { kind: 'layout'; dir: string; tag?: string; digest?: string };

const LAYOUT_PREFIX = 'layout:';
/** Anything that claims to be a digest (algorithm ":" encoded), valid or not. */
const DIGEST_LIKE_RE = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[^/\\]*$/i;

/**
 * `layout:<dir>[:tag][@digest]` addresses an OCI image layout on disk; anything else is a remote reference.
 * Directories may themselves contain ":" and "@", so a suffix is split off only when it is what it claims:
 * after the last "@" a digest, after the last ":" a valid tag with no "/".
 */
export function parseTargetReference(input: string): TargetReference {
  if (!input.startsWith(LAYOUT_PREFIX)) return { kind: 'remote', ref: parseReference(input) };
  let rest = input.slice(LAYOUT_PREFIX.length);
  let digest: string | undefined;
  let tag: string | undefined;
  const at = rest.lastIndexOf('@');
  if (at >= 0 && DIGEST_LIKE_RE.test(rest.slice(at + 1))) {
    const candidate = rest.slice(at + 1);
    try {
      parseDigest(candidate);
    } catch (err) {
      throw new LadingError('E_REFERENCE_INVALID', `invalid layout reference "${input}": ${(err as Error).message}`, {
        hint: 'write layout:<dir>@sha256:<64 lower-case hex digits>',
        details: { reason: 'digest', part: 'digest', digestFault: err instanceof LadingError ? err.details?.fault : undefined },
        cause: err,
      });
    }
    digest = candidate;
    rest = rest.slice(0, at);
  }
  const colon = rest.lastIndexOf(':');
  if (colon >= 0) {
    const candidate = rest.slice(colon + 1);
    if (!candidate.includes('/') && TAG_RE.test(candidate)) {
      tag = candidate;
      rest = rest.slice(0, colon);
    }
  }
  if (rest === '') {
    throw new LadingError('E_REFERENCE_INVALID', `invalid layout reference "${input}": the directory is missing`, {
      hint: 'write layout:<dir>[:tag|@digest], e.g. layout:./out:1.0',
      details: { reason: 'format', part: 'repository' },
    });
  }
  const target: TargetReference = { kind: 'layout', dir: rest };
  if (tag !== undefined) target.tag = tag;
  if (digest !== undefined) target.digest = digest;
  return target;
}
