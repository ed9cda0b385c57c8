import { readFile, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { LadingError, isLadingError } from '../errors.js';
import { parseStructuredText } from '../artifact/envelope.js';
import { checkIdentityMatcher } from './identity.js';
import { loadPublicKey } from './keys.js';
import { evaluatePolicy, type EvaluateOptions, type PolicyDecision, type PolicyEntry, type PolicyLevel, type PolicySubject, type SignatureRequirement } from './policy-evaluate.js';
import { GLOBAL_SCOPE, compileScope, normalizeRepository, scopeMatches, type CompiledScope } from './policy-scope.js';
import { loadTrustedRoot } from './trusted-root.js';
import type { IdentityMatcher, SignatureCheck, TrustedKey, TrustedRootMaterial } from './types.js';

export { decisionError, describeSigner, evaluatePolicy, formatDecision } from './policy-evaluate.js';
export type { EvaluateOptions, PolicyDecision, PolicyEntry, PolicyLevel, PolicySubject, SignatureRequirement } from './policy-evaluate.js';
export { LAYOUT_SCOPE_PREFIX, layoutRepository, normalizeRepository } from './policy-scope.js';

/**
 * Trust policies, modelled on notation's trustpolicy: each policy names the repositories it covers (scopes),
 * how strictly it applies (level), and whom it trusts (keys, keyless identities, a trusted root).
 */

export const POLICY_VERSION = '1';
/** Far above any real policy; bounds what a mistaken path (a log, an image) costs to read. */
export const MAX_POLICY_BYTES = 1024 * 1024;
/** A PEM public key is well under 4 KiB; anything larger is not one. */
const MAX_KEY_FILE_BYTES = 64 * 1024;

export interface TrustPolicy {
  /** The file (or other origin) the policy was read from; for messages. */
  source: string;
  policies: PolicyEntry[];
}

const TOP_FIELDS = ['version', 'policies'] as const;
const POLICY_FIELDS = ['name', 'scopes', 'level', 'signatures', 'keys', 'identities', 'trustedRoot'] as const;
const INLINE_KEY_FIELDS = ['pem'] as const;
const IDENTITY_FIELDS = ['issuer', 'issuerPattern', 'subject', 'subjectPattern'] as const;
const LEVELS: readonly PolicyLevel[] = ['enforce', 'audit', 'skip'];
const REQUIREMENTS: readonly SignatureRequirement[] = ['required', 'optional'];

const GRAMMAR_HINT =
  'a policy file is {version: "1", policies: [{name, scopes, level, signatures?, keys?, identities?, trustedRoot?}]}';

/** Compiled scopes of parsed entries; entries built by hand are compiled when first selected against. */
const compiledScopes = new WeakMap<PolicyEntry, CompiledScope[]>();

class PolicyReader {
  constructor(
    readonly source: string,
    readonly baseDir: string,
  ) {}

  fail(where: string, message: string, hint: string = GRAMMAR_HINT, extra: Record<string, unknown> = {}): LadingError {
    return new LadingError('E_POLICY_INVALID', `trust policy ${this.source}: ${where ? `${where}: ` : ''}${message}`, {
      hint,
      details: { source: this.source, ...(where ? { where } : {}), ...extra },
    });
  }

  /** Refuses unknown fields: a misspelt `levle` silently ignored would leave a policy weaker than written. */
  record(value: unknown, where: string, known: readonly string[]): Record<string, unknown> {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw this.fail(where, `must be a mapping, not ${describe(value)}`);
    }
    const obj = value as Record<string, unknown>;
    for (const key of Object.keys(obj)) {
      if (!known.includes(key)) {
        const path = where ? `${where}.${key}` : key;
        throw this.fail(path, `unknown field "${key}"`, `known fields here: ${known.join(', ')}`, { field: key });
      }
    }
    return obj;
  }

  string(value: unknown, where: string): string {
    if (typeof value !== 'string' || value === '') throw this.fail(where, `must be a non-empty string, not ${describe(value)}`);
    return value;
  }

  list(value: unknown, where: string): unknown[] {
    if (!Array.isArray(value)) throw this.fail(where, `must be a list, not ${describe(value)}`);
    return value;
  }

  oneOf<T extends string>(value: unknown, where: string, allowed: readonly T[]): T {
    if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
      throw this.fail(where, `must be one of ${allowed.join(', ')}, not ${describe(value)}`);
    }
    return value as T;
  }

  /** Names the policy file in an error whose message already starts with `where`. */
  prefixed(err: unknown, where: string): LadingError {
    if (!isLadingError(err)) return this.fail(where, err instanceof Error ? err.message : String(err));
    return new LadingError(err.code, `trust policy ${this.source}: ${err.message}`, {
      ...(err.hint ? { hint: err.hint } : {}),
      details: { ...(err.details ?? {}), source: this.source, where },
    });
  }

  /** Keeps the code of an error from a loader, adding where in the policy the failing thing was named. */
  located(err: unknown, where: string): LadingError {
    if (!isLadingError(err)) return this.fail(where, err instanceof Error ? err.message : String(err));
    return new LadingError(err.code, `trust policy ${this.source}: ${where}: ${err.message}`, {
      ...(err.hint ? { hint: err.hint } : {}),
      details: { ...(err.details ?? {}), source: this.source, where },
      cause: err,
    });
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}…` : value);
  return String(value);
}

type KeySpec = { where: string } & ({ path: string } | { pem: string });

interface EntryDraft {
  where: string;
  entry: Omit<PolicyEntry, 'anchors'>;
  scopes: CompiledScope[];
  keys: KeySpec[];
  identities: IdentityMatcher[];
  trustedRoot?: { where: string; path: string };
}

function readEntry(r: PolicyReader, raw: unknown, where: string): EntryDraft {
  const obj = r.record(raw, where, POLICY_FIELDS);
  const name = r.string(obj.name, `${where}.name`);
  if (obj.scopes === undefined) throw r.fail(`${where}.scopes`, 'is required');
  const scopeList = r.list(obj.scopes, `${where}.scopes`);
  if (scopeList.length === 0) throw r.fail(`${where}.scopes`, 'must name at least one scope');
  const scopes = scopeList.map((s, i) => {
    const at = `${where}.scopes[${i}]`;
    const written = r.string(s, at);
    try {
      return compileScope(written, at, r.baseDir);
    } catch (err) {
      throw r.prefixed(err, at);
    }
  });
  if (scopes.length > 1 && scopes.some((s) => s.kind === 'global')) {
    throw r.fail(`${where}.scopes`, '"*" must be the only scope of its policy', 'put the repositories with their own rules in a separate policy');
  }
  if (obj.level === undefined) throw r.fail(`${where}.level`, `is required (${LEVELS.join(', ')})`);
  const level = r.oneOf(obj.level, `${where}.level`, LEVELS);
  const signatures = obj.signatures === undefined ? 'required' : r.oneOf(obj.signatures, `${where}.signatures`, REQUIREMENTS);

  const keys: KeySpec[] = [];
  if (obj.keys !== undefined) {
    r.list(obj.keys, `${where}.keys`).forEach((k, i) => {
      const at = `${where}.keys[${i}]`;
      if (typeof k === 'string') {
        keys.push({ where: at, path: r.string(k, at) });
      } else {
        const inline = r.record(k, at, INLINE_KEY_FIELDS);
        keys.push({ where: at, pem: r.string(inline.pem, `${at}.pem`) });
      }
    });
  }
  const identities: IdentityMatcher[] = [];
  if (obj.identities !== undefined) {
    r.list(obj.identities, `${where}.identities`).forEach((m, i) => {
      const at = `${where}.identities[${i}]`;
      const fields = r.record(m, at, IDENTITY_FIELDS);
      const matcher: IdentityMatcher = {};
      for (const f of IDENTITY_FIELDS) {
        if (fields[f] !== undefined) matcher[f] = r.string(fields[f], `${at}.${f}`);
      }
      try {
        checkIdentityMatcher(matcher, at);
      } catch (err) {
        throw r.prefixed(err, at);
      }
      identities.push(matcher);
    });
  }
  const trustedRoot = obj.trustedRoot === undefined ? undefined : { where: `${where}.trustedRoot`, path: r.string(obj.trustedRoot, `${where}.trustedRoot`) };

  if (level === 'skip') {
    if (scopes.some((s) => s.kind === 'global')) {
      throw r.fail(`${where}.level`, 'a policy with scope "*" cannot skip verification', 'skip only named repositories; "*" should enforce or audit');
    }
    // A host glob (`*.io/**`, `*.example.com/**`) reaches registries nobody listed; skipping must name its hosts.
    const hostGlob = scopes.findIndex((s) => s.hostGlob);
    if (hostGlob >= 0) {
      throw r.fail(
        `${where}.scopes[${hostGlob}]`,
        `a skip policy cannot use scope "${scopes[hostGlob]!.written}", whose registry host has a wildcard`,
        'name each registry host that skips verification literally, e.g. registry.example.com/dev/**',
      );
    }
    const extra = (['keys', 'identities', 'trustedRoot', 'signatures'] as const).find((f) => obj[f] !== undefined);
    // A skip policy verifies nothing; trust anchors on it suggest the author meant another level.
    if (extra) throw r.fail(`${where}.${extra}`, 'has no meaning on a policy with level skip', 'remove it, or choose level enforce or audit');
  } else if (keys.length === 0 && identities.length === 0) {
    throw r.fail(where, `a ${level} policy needs at least one key or identity to trust`, 'add keys (public key files) or identities (issuer + subject)');
  }
  const draft: EntryDraft = { where, entry: { name, scopes: scopes.map((s) => s.written), level, signatures }, scopes, keys, identities };
  if (trustedRoot) draft.trustedRoot = trustedRoot;
  return draft;
}

function checkAcrossEntries(r: PolicyReader, drafts: EntryDraft[]): void {
  const names = new Map<string, string>();
  const scopes = new Map<string, string>();
  let globalAt: string | undefined;
  for (const d of drafts) {
    const prev = names.get(d.entry.name);
    if (prev !== undefined) throw r.fail(`${d.where}.name`, `duplicate policy name "${d.entry.name}" (also ${prev})`, 'give every policy its own name');
    names.set(d.entry.name, d.where);
    d.scopes.forEach((s, i) => {
      const at = `${d.where}.scopes[${i}]`;
      if (s.kind === 'global') {
        if (globalAt !== undefined) throw r.fail(at, `a second "*" policy (the first is ${globalAt})`, 'at most one policy may have scope "*"');
        globalAt = at;
      }
      const seen = scopes.get(s.normalized);
      if (seen !== undefined) {
        throw r.fail(at, `scope "${s.written}" is already covered by ${seen} (both are ${s.normalized})`, 'each scope may appear in only one policy, once');
      }
      scopes.set(s.normalized, at);
    });
  }
}

async function readKeyFile(r: PolicyReader, spec: { where: string; path: string }): Promise<{ pem: Buffer; source: string }> {
  const path = resolve(r.baseDir, spec.path);
  try {
    const st = await stat(path);
    if (!st.isFile()) throw r.fail(spec.where, `key "${spec.path}" is not a file`, 'name a PEM public key file, relative to the policy file');
    if (st.size > MAX_KEY_FILE_BYTES) throw new LadingError('E_KEY_INVALID', `key file "${path}" is ${st.size} bytes, too large for a public key`);
    return { pem: await readFile(path), source: path };
  } catch (err) {
    if (isLadingError(err)) throw err.code === 'E_POLICY_INVALID' ? err : r.located(err, spec.where);
    const code = (err as NodeJS.ErrnoException).code;
    throw r.fail(spec.where, `cannot read key file "${path}"${code ? ` (${code})` : ''}`, 'key paths are relative to the policy file’s directory', { path });
  }
}

async function loadAnchors(r: PolicyReader, d: EntryDraft, roots: Map<string, Promise<TrustedRootMaterial>>): Promise<PolicyEntry> {
  const keys: TrustedKey[] = [];
  for (const spec of d.keys) {
    let key: TrustedKey;
    if ('path' in spec) {
      const file = await readKeyFile(r, spec);
      try {
        key = loadPublicKey(file.pem, file.source);
      } catch (err) {
        throw r.located(err, spec.where);
      }
    } else {
      try {
        key = loadPublicKey(spec.pem, 'inline');
      } catch (err) {
        throw r.located(err, spec.where);
      }
    }
    // The same key named twice (a path and its inline copy) is one anchor; reports stay unrepeated.
    if (!keys.some((k) => k.id === key.id)) keys.push(key);
  }
  const entry: PolicyEntry = { ...d.entry, anchors: { keys, identities: d.identities } };
  if (d.trustedRoot) {
    const path = resolve(r.baseDir, d.trustedRoot.path);
    let pending = roots.get(path);
    if (!pending) {
      pending = loadTrustedRoot(path);
      roots.set(path, pending);
    }
    try {
      entry.anchors.trustedRoot = await pending;
    } catch (err) {
      throw r.located(err, d.trustedRoot.where);
    }
  }
  compiledScopes.set(entry, d.scopes);
  return entry;
}

/**
 * Parses a policy document (YAML or JSON) and loads the keys and trusted roots it names, paths being relative
 * to `baseDir`. Every fault is E_POLICY_INVALID naming its path in the document (`policies[0].levle`), except
 * a key that is not a key (E_KEY_INVALID) and a trusted root that is not one (the loader's code).
 */
export async function parsePolicy(text: string, o: { source: string; baseDir: string }): Promise<TrustPolicy> {
  const r = new PolicyReader(o.source, resolve(o.baseDir));
  if (Buffer.byteLength(text, 'utf8') > MAX_POLICY_BYTES) throw r.fail('', `is larger than ${MAX_POLICY_BYTES} bytes`);
  const doc = r.record(parseStructuredText(text, o.source, 'E_POLICY_INVALID'), '', TOP_FIELDS);
  if (doc.version === undefined) throw r.fail('version', `is required; write version: "${POLICY_VERSION}"`);
  // YAML reads an unquoted 1 as a number; it is the same version, so both spellings are accepted.
  if (doc.version !== POLICY_VERSION && doc.version !== Number(POLICY_VERSION)) {
    throw r.fail('version', `unsupported version ${describe(doc.version)}; this lading reads version "${POLICY_VERSION}"`);
  }
  if (doc.policies === undefined) throw r.fail('policies', 'is required');
  const list = r.list(doc.policies, 'policies');
  if (list.length === 0) throw r.fail('policies', 'must hold at least one policy');
  // Every structural fault is found before any file is read, so the report does not depend on the disk.
  const drafts = list.map((raw, i) => readEntry(r, raw, `policies[${i}]`));
  checkAcrossEntries(r, drafts);
  const roots = new Map<string, Promise<TrustedRootMaterial>>();
  const policies: PolicyEntry[] = [];
  for (const d of drafts) policies.push(await loadAnchors(r, d, roots));
  return { source: o.source, policies };
}

/** Reads and parses a policy file; its keys and roots are found relative to its directory. */
export async function loadPolicy(path: string): Promise<TrustPolicy> {
  let text: string;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new LadingError('E_IO', `trust policy "${path}" is not a file`, { details: { source: path } });
    if (st.size > MAX_POLICY_BYTES) {
      throw new LadingError('E_POLICY_INVALID', `trust policy ${path}: is larger than ${MAX_POLICY_BYTES} bytes`, { details: { source: path } });
    }
    const bytes = await readFile(path);
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    if (isLadingError(err)) throw err;
    if (err instanceof TypeError) {
      throw new LadingError('E_POLICY_INVALID', `trust policy ${path}: not valid UTF-8`, { details: { source: path }, cause: err });
    }
    const code = (err as NodeJS.ErrnoException).code;
    throw new LadingError('E_IO', `cannot read trust policy "${path}"${code ? ` (${code})` : ''}`, {
      hint: code === 'ENOENT' ? 'check the --policy path' : undefined,
      details: { source: path },
      cause: err,
    });
  }
  return parsePolicy(text, { source: path, baseDir: dirname(resolve(path)) });
}

function scopesOf(entry: PolicyEntry, index: number): CompiledScope[] {
  let scopes = compiledScopes.get(entry);
  if (!scopes) {
    scopes = entry.scopes.map((s, i) => compileScope(s, `policies[${index}].scopes[${i}]`, process.cwd()));
    compiledScopes.set(entry, scopes);
  }
  return scopes;
}

/**
 * The policy that governs a repository (`registry/path`, a reference whose tag or digest is ignored, or
 * `oci-layout:<dir>`): an exact scope, else the matching glob with the most literal characters, else "*".
 * Two policies' globs equally specific → E_POLICY_INVALID; nothing matches → E_POLICY_NO_MATCH.
 */
export function selectPolicy(policy: TrustPolicy, repository: string): PolicyEntry {
  const target = normalizeRepository(repository);
  let exact: { entry: PolicyEntry; scope: CompiledScope } | undefined;
  let best: { entry: PolicyEntry; scope: CompiledScope }[] = [];
  let global: PolicyEntry | undefined;
  policy.policies.forEach((entry, i) => {
    for (const scope of scopesOf(entry, i)) {
      if (!scopeMatches(scope, target)) continue;
      if (scope.kind === 'global') {
        global ??= entry;
      } else if (!scope.glob) {
        exact ??= { entry, scope };
      } else if (best.length === 0 || scope.literal > best[0]!.scope.literal) {
        best = [{ entry, scope }];
      } else if (scope.literal === best[0]!.scope.literal && !best.some((b) => b.entry === entry)) {
        best.push({ entry, scope });
      }
    }
  });
  if (exact) return exact.entry;
  if (best.length > 1) {
    const which = best.map((b) => `"${b.scope.written}" (policy ${b.entry.name})`).join(' and ');
    throw new LadingError('E_POLICY_INVALID', `trust policy ${policy.source}: ${target} is matched equally by ${which}; the choice is ambiguous`, {
      hint: `add an exact scope ${target} to one policy, or make one glob more specific`,
      details: { source: policy.source, repository: target, policies: best.map((b) => b.entry.name) },
    });
  }
  if (best.length === 1) return best[0]!.entry;
  if (global) return global;
  throw new LadingError('E_POLICY_NO_MATCH', `trust policy ${policy.source}: no policy covers ${target}`, {
    hint: `add a policy whose scopes include ${target} (or a glob over it), or a policy with scope "${GLOBAL_SCOPE}"`,
    details: { source: policy.source, repository: target },
  });
}

/** Selects the policy for a subject and applies it to the checks made. */
export function decide(policy: TrustPolicy, checks: SignatureCheck[], subject: PolicySubject, options: EvaluateOptions = {}): PolicyDecision {
  return evaluatePolicy(selectPolicy(policy, subject.repository), checks, subject, options);
}
