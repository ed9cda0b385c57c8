import { Ajv2020 } from 'ajv/dist/2020.js';
import type { ErrorObject, ValidateFunction } from 'ajv/dist/2020.js';
import formatsModule from 'ajv-formats';
import semver from 'semver';
import { LadingError } from '../errors.js';
import { isDigest } from '../oci/digest.js';
import { isValidMediaType } from '../oci/mediatype.js';
import { parseReference } from '../oci/reference.js';
import type { SchemaIssue } from './family.js';

/**
 * JSON Schema 2020-12 for family `spec`s: compiling (strict, once per schema object) and turning ajv's
 * errors into issues at envelope paths (`spec.install[2].order: must be integer`) that a person can act on.
 */

export type PathSegment = string | number;

/** An issue before its path is rendered: segments sort numerically where the path string would not. */
export interface LocatedIssue {
  segments: PathSegment[];
  message: string;
}

const IDENTIFIER_RE = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const MAX_PATH_LENGTH = 4096;

/** `['spec', 'install', 2, 'order']` → `spec.install[2].order`; odd keys are quoted: `labels["a.b"]`. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else if (IDENTIFIER_RE.test(s)) out += out === '' ? s : `.${s}`;
    else out += `[${JSON.stringify(s)}]`;
  }
  return out;
}

function compareSegments(a: readonly PathSegment[], b: readonly PathSegment[]): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i]!;
    const y = b[i]!;
    if (x === y) continue;
    if (typeof x === 'number' && typeof y === 'number') return x - y;
    if (typeof x === 'number') return -1;
    if (typeof y === 'number') return 1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** Rendered, deduplicated and in a stable order: by path (array indices numerically), then message. */
export function finishIssues(issues: readonly LocatedIssue[]): SchemaIssue[] {
  const sorted = [...issues].sort(
    (a, b) => compareSegments(a.segments, b.segments) || (a.message < b.message ? -1 : a.message > b.message ? 1 : 0),
  );
  const out: SchemaIssue[] = [];
  const seen = new Set<string>();
  for (const issue of sorted) {
    const path = formatPath(issue.segments);
    const key = `${path}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ path, message: issue.message });
  }
  return out;
}

// ---- paths inside content ----------------------------------------------------------------------------

function segmentsAreClean(segments: string[]): boolean {
  return segments.every((s) => s !== '' && s !== '.' && s !== '..');
}

function pathIsPlain(s: string): boolean {
  // Backslashes are legal in POSIX names but become separators on Windows, so they are refused outright.
  return s.length > 0 && s.length <= MAX_PATH_LENGTH && !s.includes('\u0000') && !s.includes('\\');
}

/** `bin/jq`: relative, POSIX separators, no empty, `.` or `..` segment, so it cannot leave its root. */
export function isRelativePosixPath(s: unknown): boolean {
  return typeof s === 'string' && pathIsPlain(s) && !s.startsWith('/') && segmentsAreClean(s.split('/'));
}

/** `/srv/app`: absolute, normalized (no `//`, `.`, `..` or trailing `/`), and not `/` itself. */
export function isAbsolutePosixPath(s: unknown): boolean {
  return typeof s === 'string' && pathIsPlain(s) && s.startsWith('/') && s.length > 1 && segmentsAreClean(s.slice(1).split('/'));
}

// ---- formats -------------------------------------------------------------------------------------------

function accepts(fn: (s: string) => unknown): (s: string) => boolean {
  return (s) => {
    try {
      fn(s);
      return true;
    } catch {
      return false;
    }
  };
}

/** The formats lading adds to JSON Schema, with what their failures say; user family schemas may use them too. */
const CUSTOM_FORMATS: Record<string, { validate: (s: string) => boolean; message: string }> = {
  'semver-range': {
    validate: (s) => s.trim() !== '' && semver.validRange(s) !== null,
    message: 'must be a semver range such as ^1.2.0 or >=2 <3',
  },
  semver: { validate: (s) => semver.valid(s) !== null, message: 'must be a semantic version such as 1.2.3' },
  'oci-reference': {
    validate: accepts((s) => parseReference(s)),
    message: 'must be an OCI reference such as registry.example.com/team/app:1.0',
  },
  'oci-digest': { validate: (s) => isDigest(s), message: 'must be a digest such as sha256:<64 lower-case hex digits>' },
  'media-type': { validate: isValidMediaType, message: 'must be a media type such as application/vnd.example.v1+json' },
  'relative-path': {
    validate: isRelativePosixPath,
    message: 'must be a relative path inside the content (no leading "/", no "." or ".." segments)',
  },
  'absolute-path': {
    validate: isAbsolutePosixPath,
    message: 'must be an absolute path such as /srv/app (no "." or ".." segments, not "/")',
  },
};

/** The messages of the custom formats, by name; for checks written by hand that should read the same. */
export function formatMessage(format: string): string {
  return CUSTOM_FORMATS[format]?.message ?? `must match format "${format}"`;
}

const addFormats = (formatsModule as unknown as { default: (ajv: Ajv2020) => Ajv2020 }).default;

/**
 * Strict about keywords and formats, since a misspelt keyword would otherwise silently accept everything;
 * lenient about type annotations and tuples, which are style, not safety. One instance is shared because
 * compiling the meta-schema costs far more than compiling a family's schema; see compileSchema for how
 * families are kept apart in it.
 */
function newAjv(): Ajv2020 {
  const ajv = new Ajv2020({
    allErrors: true,
    strictSchema: true,
    strictNumbers: true,
    strictTypes: false,
    strictTuples: false,
    strictRequired: false,
    allowUnionTypes: true,
    validateFormats: true,
    logger: false,
  });
  addFormats(ajv);
  for (const [name, f] of Object.entries(CUSTOM_FORMATS)) ajv.addFormat(name, { type: 'string', validate: f.validate });
  return ajv;
}

// ---- compiling -----------------------------------------------------------------------------------------

/** Where a schema came from, for E_FAMILY_INVALID: the family file (or `builtin:cli`) and the schema's path in it. */
export interface SchemaOrigin {
  source: string;
  family?: string;
  path: PathSegment[];
}

const DRAFT_2020_12 = 'https://json-schema.org/draft/2020-12/schema';
const compiled = new WeakMap<object, ValidateFunction>();
let shared: Ajv2020 | undefined;

function familyInvalid(origin: SchemaOrigin, segments: PathSegment[], message: string, cause?: unknown): LadingError {
  const path = formatPath(segments);
  return new LadingError('E_FAMILY_INVALID', `${origin.source}: ${path === '' ? '' : `${path}: `}${message}`, {
    hint: 'a family schema must be valid JSON Schema 2020-12, using only standard keywords and known formats',
    details: { source: origin.source, ...(origin.family ? { family: origin.family } : {}), path },
    ...(cause === undefined ? {} : { cause }),
  });
}

function unescapePointerToken(t: string): string {
  return t.replace(/~1/g, '/').replace(/~0/g, '~');
}

function pointerTokens(pointer: string): string[] {
  if (pointer === '' || pointer === '#') return [];
  const body = pointer.startsWith('#') ? pointer.slice(1) : pointer;
  return body
    .split('/')
    .slice(1)
    .map((t) => {
      let s = t;
      try {
        if (pointer.startsWith('#')) s = decodeURIComponent(t);
      } catch {
        // not percent-encoded after all
      }
      return unescapePointerToken(s);
    });
}

/** JSON Pointer tokens as path segments, using the data to tell array indices from object keys named "2". */
function pointerToSegments(pointer: string, data: unknown): PathSegment[] {
  const out: PathSegment[] = [];
  let node: unknown = data;
  for (const token of pointerTokens(pointer)) {
    if (Array.isArray(node) && /^(0|[1-9][0-9]*)$/.test(token)) {
      out.push(Number(token));
      node = node[Number(token)];
    } else {
      out.push(token);
      node = node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[token] : undefined;
    }
  }
  return out;
}

const SCHEMA_MAP_KEYWORDS = new Set(['properties', 'patternProperties', '$defs', 'definitions', 'dependentSchemas']);
const SCHEMA_LIST_KEYWORDS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
const SCHEMA_KEYWORDS = new Set([
  'items',
  'additionalItems',
  'additionalProperties',
  'unevaluatedItems',
  'unevaluatedProperties',
  'not',
  'if',
  'then',
  'else',
  'contains',
  'propertyNames',
  'contentSchema',
]);

/** The first subschema (depth first, in key order) for which `match` holds; ajv's strict errors name no path. */
function findInSchema(schema: unknown, match: (node: Record<string, unknown>) => boolean, at: PathSegment[] = []): PathSegment[] | undefined {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return undefined;
  const node = schema as Record<string, unknown>;
  if (match(node)) return at;
  for (const [key, value] of Object.entries(node)) {
    if (SCHEMA_MAP_KEYWORDS.has(key) && value !== null && typeof value === 'object') {
      for (const [name, sub] of Object.entries(value as Record<string, unknown>)) {
        const found = findInSchema(sub, match, [...at, key, name]);
        if (found) return found;
      }
    } else if (SCHEMA_LIST_KEYWORDS.has(key) && Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const found = findInSchema(value[i], match, [...at, key, i]);
        if (found) return found;
      }
    } else if (SCHEMA_KEYWORDS.has(key)) {
      const found = findInSchema(value, match, [...at, key]);
      if (found) return found;
    }
  }
  return undefined;
}

/** Where in the schema a compile error points and what it says, when ajv's message lets us tell. */
function explainCompileError(schema: object, message: string): { at: PathSegment[]; message: string } {
  const keyword = /^strict mode: unknown keyword: "(.*)"$/.exec(message)?.[1];
  if (keyword !== undefined) {
    const at = findInSchema(schema, (n) => Object.hasOwn(n, keyword)) ?? [];
    return { at: [...at, keyword], message: 'is not a JSON Schema 2020-12 keyword' };
  }
  const format = /^unknown format "(.*)" ignored in schema at path "([^"]*)"$/.exec(message);
  if (format) {
    return { at: [...pointerToSegments(format[2]!, schema), 'format'], message: `unknown format "${format[1]}"` };
  }
  const ref = /^can't resolve reference (.*) from id /.exec(message)?.[1];
  if (ref !== undefined) {
    const at = findInSchema(schema, (n) => n.$ref === ref || n.$dynamicRef === ref) ?? [];
    return { at: [...at, '$ref'], message: `cannot resolve reference "${ref}" (only references inside the schema work)` };
  }
  if (message.startsWith('Invalid regular expression')) {
    const bad = (p: unknown): boolean => typeof p === 'string' && !compilesAsUnicodeRegExp(p);
    const at = findInSchema(schema, (n) => bad(n.pattern));
    if (at) return { at: [...at, 'pattern'], message: `is not a valid regular expression: ${message}` };
    const inMap = findInSchema(schema, (n) => Object.keys((n.patternProperties as object | undefined) ?? {}).some(bad));
    if (inMap) return { at: [...inMap, 'patternProperties'], message: `has a key that is not a valid regular expression: ${message}` };
  }
  return { at: [], message };
}

function compilesAsUnicodeRegExp(p: string): boolean {
  try {
    new RegExp(p, 'u');
    return true;
  } catch {
    return false;
  }
}

/**
 * The validator for a schema, compiled once per schema object. A schema that is not valid 2020-12, uses an
 * unknown keyword or format, or refers to something it does not contain is E_FAMILY_INVALID, naming the
 * source and the path inside it.
 */
export function compileSchema(schema: unknown, origin: SchemaOrigin): ValidateFunction {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) {
    throw familyInvalid(origin, origin.path, 'must be a JSON Schema object');
  }
  const cached = compiled.get(schema);
  if (cached) return cached;
  const declared = (schema as Record<string, unknown>).$schema;
  if (declared !== undefined && declared !== DRAFT_2020_12 && declared !== `${DRAFT_2020_12}#`) {
    throw familyInvalid(origin, [...origin.path, '$schema'], `must be "${DRAFT_2020_12}" (or absent)`);
  }
  shared ??= newAjv();
  const ajv = shared;
  let valid: boolean;
  try {
    valid = ajv.validateSchema(schema) as boolean;
  } catch (cause) {
    throw familyInvalid(origin, origin.path, cause instanceof Error ? cause.message : String(cause), cause);
  }
  if (!valid) {
    const issues = finishIssues(ajvIssues(ajv.errors ?? [], schema, origin.path));
    const first = issues[0] ?? { path: formatPath(origin.path), message: 'is not a valid JSON Schema 2020-12' };
    const err = familyInvalid(origin, [], `${first.path}: ${first.message}`);
    err.details!.path = first.path;
    err.details!.issues = issues;
    throw err;
  }
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(schema);
  } catch (cause) {
    const explained = explainCompileError(schema, cause instanceof Error ? cause.message : String(cause));
    throw familyInvalid(origin, [...origin.path, ...explained.at], explained.message, cause);
  } finally {
    // The validator keeps working; unregistering the schema means two families may use the same $id, and
    // one family can never $ref another's schema (it would resolve or not depending on load order).
    ajv.removeSchema(schema);
  }
  compiled.set(schema, validate);
  return validate;
}

/** Issues of `value` against a schema (compiled on first use), with paths under `base`. */
export function validateAgainst(schema: unknown, value: unknown, base: PathSegment[], origin: SchemaOrigin): LocatedIssue[] {
  const validate = compileSchema(schema, origin);
  if (validate(value)) return [];
  return ajvIssues(validate.errors ?? [], value, base, schema);
}

// ---- ajv errors → issues -------------------------------------------------------------------------------

function underPointer(pointer: string, parent: string): boolean {
  return pointer === parent || pointer.startsWith(`${parent}/`);
}

function nodeAtPointer(root: unknown, pointer: string): unknown {
  if (!pointer.startsWith('#/') && pointer !== '#') return undefined;
  let node = root;
  for (const token of pointerTokens(pointer)) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string, unknown>)[token];
  }
  return node;
}

/** Schema paths under which errors of branch `i` of an anyOf/oneOf appear (its own, and a local `$ref`'s). */
function branchPrefixes(e: ErrorObject, i: number, root: unknown): string[] {
  const prefixes = [`${e.schemaPath}/${i}`];
  const branch = nodeAtPointer(root, `${e.schemaPath}/${i}`);
  if (branch !== null && typeof branch === 'object') {
    const ref = (branch as Record<string, unknown>).$ref;
    if (typeof ref === 'string' && ref.startsWith('#')) prefixes.push(ref === '#' ? '#' : ref);
  }
  return prefixes;
}

function branchCount(e: ErrorObject, errors: ErrorObject[], k: number, root: unknown): number {
  const list = nodeAtPointer(root, e.schemaPath);
  if (Array.isArray(list)) return list.length;
  let n = 0;
  const prefix = `${e.schemaPath}/`;
  for (let j = 0; j < k; j++) {
    const rest = errors[j]!.schemaPath.startsWith(prefix) ? errors[j]!.schemaPath.slice(prefix.length) : '';
    const index = /^(\d+)(\/|$)/.exec(rest);
    if (index) n = Math.max(n, Number(index[1]) + 1);
  }
  return n;
}

function instanceDepth(e: ErrorObject): number {
  return e.instancePath === '' ? 0 : e.instancePath.split('/').length - 1;
}

/**
 * Drops what ajv reports for every branch of a failed anyOf/oneOf when one branch is plainly the one meant
 * (the value has its type), keeping that branch's specific errors; when no branch has the value's type the
 * branches' type errors become one `must be A or B`. Returns the errors kept and messages to substitute.
 */
function prune(errors: ErrorObject[], root: unknown): { kept: ErrorObject[]; messages: Map<ErrorObject, string> } {
  const removed = new Set<number>();
  const messages = new Map<ErrorObject, string>();
  for (let k = errors.length - 1; k >= 0; k--) {
    const e = errors[k]!;
    if (removed.has(k)) continue;
    if (e.keyword === 'if') {
      const parent = e.schemaPath.replace(/\/if$/, '');
      const specific = errors.some(
        (o, j) => j !== k && !removed.has(j) && (o.schemaPath.startsWith(`${parent}/then`) || o.schemaPath.startsWith(`${parent}/else`)),
      );
      if (specific) removed.add(k);
      continue;
    }
    if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf') continue;
    if (Array.isArray((e.params as { passingSchemas?: unknown }).passingSchemas)) continue;
    const n = branchCount(e, errors, k, root);
    const branches: number[][] = Array.from({ length: n }, () => []);
    const unattributed: number[] = [];
    const parent = e.schemaPath.replace(/\/(anyOf|oneOf)$/, '');
    for (let j = 0; j < k; j++) {
      if (removed.has(j)) continue;
      const o = errors[j]!;
      if (!underPointer(o.instancePath, e.instancePath)) continue;
      let owner = -1;
      for (let i = 0; i < n && owner < 0; i++) {
        if (branchPrefixes(e, i, root).some((p) => underPointer(o.schemaPath, p))) owner = i;
      }
      if (owner >= 0) branches[owner]!.push(j);
      else if (!underPointer(o.schemaPath, parent)) unattributed.push(j);
    }
    // A branch reached through a $ref we could not resolve (e.g. in a meta-schema) reports under another path.
    const silent = branches.map((b, i) => (b.length === 0 ? i : -1)).filter((i) => i >= 0);
    if (silent.length === 1 && unattributed.length > 0) branches[silent[0]!]!.push(...unattributed);
    if (branches.every((b) => b.length === 0)) continue;
    const wrongType = (b: number[]): boolean =>
      b.some((j) => errors[j]!.keyword === 'type' && errors[j]!.instancePath === e.instancePath);
    const candidates = branches.map((b, i) => ({ b, i })).filter(({ b }) => b.length > 0 && !wrongType(b));
    const all = branches.flat();
    if (candidates.length === 0) {
      const types: string[] = [];
      for (const j of all) {
        const o = errors[j]!;
        if (o.keyword !== 'type' || o.instancePath !== e.instancePath) continue;
        for (const t of String((o.params as { type: unknown }).type).split(',')) if (!types.includes(t)) types.push(t);
      }
      for (const j of all) removed.add(j);
      if (types.length > 0) messages.set(e, `must be ${joinOr(types)}`);
      continue;
    }
    const depth = (b: number[]): number => Math.max(...b.map((j) => instanceDepth(errors[j]!)));
    candidates.sort((x, y) => depth(y.b) - depth(x.b) || x.b.length - y.b.length || x.i - y.i);
    const best = new Set(candidates[0]!.b);
    for (const j of all) if (!best.has(j)) removed.add(j);
    removed.add(k);
  }
  // A bad property name is reported twice: once as what is wrong with it, once as "property name must be valid".
  const namedInner = new Set<string>();
  errors.forEach((e, j) => {
    const name = (e as { propertyName?: string }).propertyName;
    if (!removed.has(j) && name !== undefined && e.keyword !== 'propertyNames') namedInner.add(`${e.instancePath}\u0000${name}`);
  });
  const kept = errors.filter((e, j) => {
    if (removed.has(j)) return false;
    if (e.keyword === 'propertyNames') {
      const name = String((e.params as { propertyName?: unknown }).propertyName);
      return !namedInner.has(`${e.instancePath}\u0000${name}`);
    }
    return true;
  });
  return { kept, messages };
}

function joinOr(items: string[]): string {
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

function plural(n: number, word: string, words = `${word}s`): string {
  return `${n} ${n === 1 ? word : words}`;
}

function isJsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    return a.length === bb.length && a.every((x, i) => isJsonEqual(x, bb[i]));
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return (
    ka.length === kb.length &&
    ka.every((k) => Object.hasOwn(b as object, k) && isJsonEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}

function valueAt(data: unknown, segments: readonly PathSegment[]): unknown {
  let node = data;
  for (const s of segments) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[s];
  }
  return node;
}

/** One ajv error as an issue: where it is (relative to the validated value) and what it says. */
function describe(e: ErrorObject, data: unknown, override: string | undefined, base: PathSegment[]): LocatedIssue {
  const at = pointerToSegments(e.instancePath, data);
  const p = e.params as Record<string, unknown>;
  const propertyName = (e as { propertyName?: string }).propertyName;
  if (propertyName !== undefined && e.keyword !== 'propertyNames') {
    return { segments: [...at, propertyName], message: `name ${describe({ ...e, propertyName: undefined } as ErrorObject, data, override, base).message}` };
  }
  if (override !== undefined) return { segments: at, message: override };
  switch (e.keyword) {
    case 'required':
      return { segments: [...at, String(p.missingProperty)], message: 'is required' };
    case 'dependentRequired':
      return { segments: [...at, String(p.missingProperty)], message: `is required when ${String(p.property)} is present` };
    case 'additionalProperties':
      return { segments: [...at, String(p.additionalProperty)], message: 'is not allowed' };
    case 'unevaluatedProperties':
      return { segments: [...at, String(p.unevaluatedProperty)], message: 'is not allowed' };
    case 'propertyNames':
      return { segments: [...at, String(p.propertyName)], message: 'is not an allowed property name' };
    case 'false schema':
      return { segments: at, message: 'is not allowed' };
    case 'type':
      return { segments: at, message: `must be ${joinOr(String(p.type).split(','))}` };
    case 'enum':
      return { segments: at, message: `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}` };
    case 'const':
      return { segments: at, message: `must be ${JSON.stringify(p.allowedValue)}` };
    case 'pattern':
      return { segments: at, message: `must match pattern "${String(p.pattern)}"` };
    case 'format':
      return { segments: at, message: formatMessage(String(p.format)) };
    case 'minimum':
    case 'maximum':
    case 'exclusiveMinimum':
    case 'exclusiveMaximum':
      return { segments: at, message: `must be ${String(p.comparison)} ${String(p.limit)}` };
    case 'multipleOf':
      return { segments: at, message: `must be a multiple of ${String(p.multipleOf)}` };
    case 'minLength':
      return { segments: at, message: p.limit === 1 ? 'must not be empty' : `must be at least ${plural(Number(p.limit), 'character')} long` };
    case 'maxLength':
      return { segments: at, message: `must be at most ${plural(Number(p.limit), 'character')} long` };
    case 'minItems':
      return { segments: at, message: `must have at least ${plural(Number(p.limit), 'item')}` };
    case 'maxItems':
    case 'items':
    case 'additionalItems':
      return { segments: at, message: `must have at most ${plural(Number(p.limit), 'item')}` };
    case 'unevaluatedItems':
      return { segments: at, message: `must have at most ${plural(Number(p.len), 'item')}` };
    case 'minProperties':
      return { segments: at, message: `must have at least ${plural(Number(p.limit), 'property', 'properties')}` };
    case 'maxProperties':
      return { segments: at, message: `must have at most ${plural(Number(p.limit), 'property', 'properties')}` };
    case 'uniqueItems': {
      // ajv names the last duplicate pair it meets; the first one is what a reader looks for.
      const list = valueAt(data, at);
      if (Array.isArray(list)) {
        for (let i = 1; i < list.length; i++) {
          for (let j = 0; j < i; j++) {
            if (isJsonEqual(list[i], list[j])) return { segments: [...at, i], message: `duplicates ${formatPath([...base, ...at, j])}` };
          }
        }
      }
      return { segments: [...at, Number(p.i)], message: `duplicates item ${String(p.j)}` };
    }
    case 'contains':
      return {
        segments: at,
        message: `must contain at least ${plural(Number(p.minContains ?? 1), 'matching item')}`,
      };
    case 'maxContains':
      return { segments: at, message: `must contain at most ${plural(Number(p.limit), 'matching item')}` };
    case 'not':
      return { segments: at, message: 'must not match the excluded shape' };
    case 'anyOf':
      return { segments: at, message: 'must match one of the allowed shapes' };
    case 'oneOf':
      return Array.isArray(p.passingSchemas)
        ? { segments: at, message: `must match exactly one of the allowed shapes, but matches ${p.passingSchemas.length}` }
        : { segments: at, message: 'must match one of the allowed shapes' };
    case 'if':
      return { segments: at, message: `must match the "${String(p.failingKeyword)}" schema` };
    default:
      return { segments: at, message: e.message ?? `fails "${e.keyword}"` };
  }
}

/**
 * ajv's errors for `data` as issues with paths under `base`. Never empty when there were errors: if pruning
 * branch noise would leave nothing, the unpruned errors are reported instead.
 */
export function ajvIssues(errors: ErrorObject[], data: unknown, base: PathSegment[], root?: unknown): LocatedIssue[] {
  if (errors.length === 0) return [];
  const { kept, messages } = prune(errors, root);
  const chosen = kept.length > 0 ? kept : errors;
  const issues = chosen.map((e) => {
    const d = describe(e, data, messages.get(e), base);
    return { segments: [...base, ...d.segments], message: d.message };
  });
  return issues.length > 0 ? issues : [{ segments: [...base], message: 'is invalid' }];
}
