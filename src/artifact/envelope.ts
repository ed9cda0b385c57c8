import { readFile, stat } from 'node:fs/promises';
import { LineCounter, isAlias, isCollection, parseDocument, visit } from 'yaml';
import type { ErrorCode } from '../errors.js';
import { LadingError } from '../errors.js';
import { API_VERSION, ARTIFACT_NAME_PATTERN, BUILTIN_SPEC_CHECKS } from './builtin-families.js';
import { canonicalJsonBytes } from './canonical.js';
import type { Family, SchemaIssue } from './family.js';
import { MAX_ISSUES, appendIssues, compactIssues, finishIssues, validateAgainst } from './schema.js';
import type { LocatedIssue, PathSegment } from './schema.js';

export interface EnvelopeMetadata {
  name: string;
  version?: string;
  description?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export interface Envelope {
  apiVersion: 'lading.dev/v1';
  kind: string;
  metadata: EnvelopeMetadata;
  /** Present when given, or when the family has a default path; `readOnly` is true unless the envelope says false. */
  mount?: { path: string; readOnly: boolean };
  spec: Record<string, unknown>;
}

/** The OCI manifest limit; a config blob is content the registry serves beside it and no bigger need be trusted. */
export const MAX_ENVELOPE_BYTES = 4 * 1024 * 1024;
/** Far deeper than any real spec, shallow enough that validating cannot exhaust the stack. */
const MAX_DEPTH = 64;
/** Aliases allow a tiny document to expand enormously (the "billion laughs"); real envelopes need few. */
const MAX_ALIAS_COUNT = 32;
const NAME_RE = new RegExp(ARTIFACT_NAME_PATTERN);
const ENVELOPE_KEYS = new Set(['apiVersion', 'kind', 'metadata', 'mount', 'spec']);
const METADATA_KEYS = new Set(['name', 'version', 'description', 'labels', 'annotations']);
const MOUNT_KEYS = new Set(['path', 'readOnly']);

function parseError(code: ErrorCode, source: string, where: string, message: string, cause?: unknown): LadingError {
  return new LadingError(code, `${where}: ${message}`, {
    hint: 'write the document as YAML or JSON (one document, unique keys, no custom tags)',
    details: { source },
    ...(cause === undefined ? {} : { cause }),
  });
}

/**
 * YAML or JSON text as a plain value. JSON is tried first (it is the stored form and the faster parser);
 * YAML is parsed as 1.2 core schema with unique keys, no custom tags, no merge keys and few aliases. A
 * syntax error is `code` with the message `source:line:col: what`.
 */
export function parseStructuredText(text: string, source: string, code: ErrorCode = 'E_CONFIG_INVALID'): unknown {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  if (body.trim() === '') throw parseError(code, source, source, 'the document is empty');
  let json: { value: unknown } | undefined;
  try {
    json = { value: JSON.parse(body) };
  } catch {
    // not JSON; YAML is a superset, so its error (with a position) is the one worth reporting
  }
  if (json) {
    // JSON.parse keeps the last of two equal keys without a word; YAML (below) refuses them, and so does this.
    const dup = duplicateJsonKey(body);
    if (dup) throw parseError(code, source, `${source}:${linePos(body, dup.offset)}`, `duplicate key ${JSON.stringify(dup.key)}`);
    return json.value;
  }
  try {
    return parseYaml(body, source, code);
  } catch (err) {
    // The YAML parser recurses; a document nested thousands deep exhausts the stack before any check sees it.
    if (err instanceof RangeError) throw parseError(code, source, source, 'the document is nested too deeply', err);
    throw err;
  }
}

/** `line:col` (both from 1) of an offset in a text, as YAML's errors give them. */
function linePos(text: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i >= 0 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return `${line}:${offset - lineStart + 1}`;
}

/**
 * The first key that appears twice in one object of a text JSON.parse accepted, and the offset of its second
 * appearance; undefined when there is none. One pass, no recursion.
 */
export function duplicateJsonKey(text: string): { key: string; offset: number } | undefined {
  // One entry per open container: the keys seen so far in an object, null for an array.
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      const start = i;
      let escaped = false;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) {
          escaped = true;
          i++;
        } else if (d === 0x22) break;
      }
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        const raw = text.slice(start, i + 1);
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        if (keys.has(key)) return { key, offset: start };
        keys.add(key);
      }
      expectKey = false;
    } else if (c === 0x7b) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b) {
      stack.push(null);
      expectKey = false;
    } else if (c === 0x7d || c === 0x5d) {
      stack.pop();
      expectKey = false;
    } else if (c === 0x2c) {
      expectKey = stack.length > 0 && stack[stack.length - 1] !== null;
    }
  }
  return undefined;
}

function parseYaml(body: string, source: string, code: ErrorCode): unknown {
  const lineCounter = new LineCounter();
  const doc = parseDocument(body, {
    lineCounter,
    version: '1.2',
    schema: 'core',
    customTags: [],
    merge: false,
    uniqueKeys: true,
    strict: true,
    prettyErrors: false,
  });
  const at = (offset: number | undefined): string => {
    if (offset === undefined) return source;
    const { line, col } = lineCounter.linePos(offset);
    return `${source}:${line}:${col}`;
  };
  // Warnings too: an unresolved tag would otherwise quietly become a string.
  const fault = doc.errors[0] ?? doc.warnings[0];
  if (fault) {
    // The parser catches its own stack overflow on runaway nesting and reports it as a syntax error.
    const what = /Maximum call stack size exceeded/.test(fault.message) ? 'the document is nested too deeply' : fault.message.split('\n')[0]!;
    throw parseError(code, source, at(fault.pos[0]), what, fault);
  }
  let badKey: { offset: number | undefined } | undefined;
  visit(doc, {
    Pair(_, pair) {
      if (isCollection(pair.key) || isAlias(pair.key)) {
        badKey = { offset: (pair.key as { range?: [number, number, number] }).range?.[0] };
        return visit.BREAK;
      }
      return undefined;
    },
  });
  if (badKey) throw parseError(code, source, at(badKey.offset), 'a mapping key must be a plain scalar, not a collection or alias');
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    throw parseError(code, source, source, (err as Error).message, err);
  }
}

/** Parses YAML or JSON text into a plain value; E_CONFIG_INVALID (with line/column) on a syntax error. */
export function parseEnvelopeText(text: string, source: string): unknown {
  if (Buffer.byteLength(text, 'utf8') > MAX_ENVELOPE_BYTES) throw tooLarge(source);
  return parseStructuredText(text, source, 'E_CONFIG_INVALID');
}

function tooLarge(source: string): LadingError {
  return new LadingError('E_CONFIG_INVALID', `${source}: an envelope may be at most 4 MiB`, {
    hint: 'keep large data in the artifact’s files; the envelope only describes them',
    details: { source, reason: 'too-large' },
  });
}

function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch (err) {
    throw new LadingError('E_CONFIG_INVALID', `${source}: not valid UTF-8`, { details: { source, reason: 'encoding' }, cause: err });
  }
}

export async function readEnvelopeFile(path: string): Promise<unknown> {
  let bytes: Buffer;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new LadingError('E_IO', `envelope "${path}" is not a file`, { details: { source: path } });
    if (st.size > MAX_ENVELOPE_BYTES) throw tooLarge(path);
    bytes = await readFile(path);
  } catch (err) {
    if (err instanceof LadingError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new LadingError('E_IO', code === 'ENOENT' ? `envelope file "${path}" does not exist` : `cannot read envelope "${path}": ${(err as Error).message}`, {
      details: { source: path },
      cause: err,
    });
  }
  if (bytes.length > MAX_ENVELOPE_BYTES) throw tooLarge(path);
  return parseStructuredText(decodeUtf8(bytes, path), path, 'E_CONFIG_INVALID');
}

// ---- checking ------------------------------------------------------------------------------------------

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** What JSON cannot carry (YAML's .inf, values built in code), and nesting too deep to walk safely. */
/** Adds an issue, keeping the list bounded (the first issues, in finishIssues' order, and a count of the rest). */
function add(out: LocatedIssue[], issue: LocatedIssue): void {
  out.push(issue);
  if (out.length > 8 * MAX_ISSUES) compactIssues(out);
}

function jsonValueIssues(value: unknown, at: PathSegment[], depth: number, out: LocatedIssue[]): void {
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) add(out, { segments: at, message: 'must be a finite number' });
    return;
  }
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return;
  if (typeof value !== 'object') {
    add(out, { segments: at, message: `must be a JSON value, not ${typeof value}` });
    return;
  }
  if (depth >= MAX_DEPTH) {
    add(out, { segments: at, message: `must not be nested more than ${MAX_DEPTH} levels deep` });
    return;
  }
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (i in value) jsonValueIssues(value[i], [...at, i], depth + 1, out);
  } else if (isPlainObject(value)) {
    // An undefined property is an absent one, as JSON.stringify has it; only arrays cannot skip a slot.
    for (const [k, v] of Object.entries(value)) if (v !== undefined) jsonValueIssues(v, [...at, k], depth + 1, out);
  } else {
    add(out, { segments: at, message: 'must be a JSON value' });
  }
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

function checkString(v: unknown, at: PathSegment[], out: LocatedIssue[], max: number): v is string {
  if (typeof v !== 'string') {
    out.push({ segments: at, message: 'must be string' });
    return false;
  }
  if (v === '') out.push({ segments: at, message: 'must not be empty' });
  else if (v.length > max) out.push({ segments: at, message: `must be at most ${max} characters long` });
  return true;
}

function unknownKeys(obj: Record<string, unknown>, allowed: Set<string>, at: PathSegment[], out: LocatedIssue[]): void {
  for (const [k, v] of Object.entries(obj)) if (v !== undefined && !allowed.has(k)) add(out, { segments: [...at, k], message: 'is not allowed' });
}

function checkStringMap(v: unknown, at: PathSegment[], out: LocatedIssue[]): void {
  if (!isPlainObject(v)) {
    out.push({ segments: at, message: 'must be object' });
    return;
  }
  for (const [k, value] of Object.entries(v)) {
    if (value === undefined) continue;
    if (k === '') add(out, { segments: [...at, k], message: 'name must not be empty' });
    if (typeof value !== 'string') add(out, { segments: [...at, k], message: 'must be string' });
  }
}

function mountPathIssue(path: string): string | undefined {
  if (path.length > 4096) return 'must be at most 4096 characters long';
  if (!path.startsWith('/')) return 'must be an absolute path';
  const segments = path.slice(1).split('/');
  if (segments.includes('..')) return 'must not contain ".." segments';
  if (path.includes('\u0000') || path.includes('\\')) return 'must not contain NUL or backslash characters';
  if (path === '/') return 'must not be the root directory';
  if (segments.some((s) => s === '' || s === '.')) return 'must be a normalized path (no "//", "." segments or trailing "/")';
  return undefined;
}

function checkMetadata(v: unknown, out: LocatedIssue[]): void {
  const at = ['metadata'];
  if (v === undefined) {
    out.push({ segments: at, message: 'is required' });
    return;
  }
  if (!isPlainObject(v)) {
    out.push({ segments: at, message: 'must be object' });
    return;
  }
  unknownKeys(v, METADATA_KEYS, at, out);
  if (v.name === undefined) out.push({ segments: [...at, 'name'], message: 'is required' });
  else if (typeof v.name !== 'string') out.push({ segments: [...at, 'name'], message: 'must be string' });
  else if (!NAME_RE.test(v.name)) out.push({ segments: [...at, 'name'], message: `must match pattern "${ARTIFACT_NAME_PATTERN}"` });
  if (v.version !== undefined) checkString(v.version, [...at, 'version'], out, 128);
  if (v.description !== undefined && typeof v.description !== 'string') out.push({ segments: [...at, 'description'], message: 'must be string' });
  else if (typeof v.description === 'string' && v.description.length > 4096) {
    out.push({ segments: [...at, 'description'], message: 'must be at most 4096 characters long' });
  }
  if (v.labels !== undefined) checkStringMap(v.labels, [...at, 'labels'], out);
  if (v.annotations !== undefined) checkStringMap(v.annotations, [...at, 'annotations'], out);
}

function checkMount(v: unknown, family: Family, out: LocatedIssue[]): void {
  if (v === undefined) return;
  const at = ['mount'];
  if (!family.mount.mountable) {
    out.push({ segments: at, message: `is not allowed for family ${family.name}` });
    return;
  }
  if (!isPlainObject(v)) {
    out.push({ segments: at, message: 'must be object' });
    return;
  }
  unknownKeys(v, MOUNT_KEYS, at, out);
  if (v.path === undefined) {
    if (family.mount.defaultPath === undefined) out.push({ segments: [...at, 'path'], message: 'is required' });
  } else if (typeof v.path !== 'string') {
    out.push({ segments: [...at, 'path'], message: 'must be string' });
  } else {
    const why = mountPathIssue(v.path);
    if (why) out.push({ segments: [...at, 'path'], message: why });
  }
  if (v.readOnly !== undefined && typeof v.readOnly !== 'boolean') out.push({ segments: [...at, 'readOnly'], message: 'must be boolean' });
}

function familySchemaOrigin(family: Family): { source: string; family: string; path: PathSegment[] } {
  return { source: family.source ?? `builtin:${family.name}`, family: family.name, path: ['spec', 'schema'] };
}

/** Every violation of the envelope shape and of the family's spec schema, in a stable order. */
export function envelopeIssues(value: unknown, family: Family): SchemaIssue[] {
  const out: LocatedIssue[] = [];
  jsonValueIssues(value, [], 0, out);
  if (out.length > 0) return finishIssues(out);
  if (!isPlainObject(value)) {
    return [{ path: '', message: `must be an envelope object {apiVersion, kind, metadata, spec}, not ${typeName(value)}` }];
  }
  unknownKeys(value, ENVELOPE_KEYS, [], out);
  if (value.apiVersion === undefined) out.push({ segments: ['apiVersion'], message: 'is required' });
  else if (value.apiVersion !== API_VERSION) out.push({ segments: ['apiVersion'], message: `must be ${JSON.stringify(API_VERSION)}` });
  if (value.kind === undefined) out.push({ segments: ['kind'], message: 'is required' });
  else if (value.kind !== family.name) out.push({ segments: ['kind'], message: `must be ${JSON.stringify(family.name)}` });
  checkMetadata(value.metadata, out);
  checkMount(value.mount, family, out);
  // An absent spec is an empty one: families whose spec has no required field need not write `spec: {}`.
  const spec = value.spec === undefined ? {} : jsonCopy(value.spec);
  if (!isPlainObject(spec)) {
    out.push({ segments: ['spec'], message: 'must be object' });
  } else {
    const specIssues = validateAgainst(family.schema, spec, ['spec'], familySchemaOrigin(family));
    appendIssues(out, specIssues);
    const extra = family.builtin ? BUILTIN_SPEC_CHECKS[family.name] : undefined;
    if (specIssues.length === 0 && extra) appendIssues(out, extra(spec));
  }
  compactIssues(out);
  return finishIssues(out);
}

function summarize(issues: SchemaIssue[]): string {
  return issues.map((i) => (i.path ? `${i.path}: ${i.message}` : i.message)).join('; ');
}

/** A JSON-only copy (the value has been checked to be JSON), dropping undefined properties. */
function jsonCopy<T>(v: T): T {
  return JSON.parse(JSON.stringify(v)) as T;
}

export interface CheckOptions {
  /** Where the value came from (a file name, `config blob sha256:…`), to lead the error message. */
  source?: string;
}

/**
 * The value as a valid envelope of `family`, or E_CONFIG_INVALID whose message leads with the first issue
 * (`spec.install[2].order: must be integer`) and whose details.issues lists them all. The result is a fresh
 * copy holding only known fields; a mountable family's default mount is filled in (`{name}` replaced),
 * and a mount's readOnly defaults to true.
 */
export function checkEnvelope(value: unknown, family: Family, opts: CheckOptions = {}): Envelope {
  const issues = envelopeIssues(value, family);
  if (issues.length > 0) {
    const [first, ...rest] = issues as [SchemaIssue, ...SchemaIssue[]];
    const lead = opts.source ? `${opts.source}: ` : '';
    const more = rest.length > 0 ? ` (and ${rest.length} more)` : '';
    const shown = rest.slice(0, 5);
    const hint =
      rest.length > 0
        ? `also: ${summarize(shown)}${rest.length > shown.length ? `; … ${rest.length - shown.length} more` : ''}`
        : `the ${family.name} family's spec schema is listed by "lading families"`;
    throw new LadingError('E_CONFIG_INVALID', `${lead}${first.path ? `${first.path}: ` : ''}${first.message}${more}`, {
      hint,
      details: { family: family.name, ...(opts.source ? { source: opts.source } : {}), issues },
    });
  }
  const v = value as Record<string, unknown>;
  const m = v.metadata as Record<string, unknown>;
  const metadata: EnvelopeMetadata = { name: m.name as string };
  if (m.version !== undefined) metadata.version = m.version as string;
  if (m.description !== undefined) metadata.description = m.description as string;
  if (m.labels !== undefined) metadata.labels = jsonCopy(m.labels as Record<string, string>);
  if (m.annotations !== undefined) metadata.annotations = jsonCopy(m.annotations as Record<string, string>);
  const envelope: Envelope = { apiVersion: API_VERSION, kind: family.name, metadata, spec: jsonCopy((v.spec ?? {}) as Record<string, unknown>) };
  const givenMount = v.mount as { path?: string; readOnly?: boolean } | undefined;
  const defaultPath = family.mount.defaultPath?.replaceAll('{name}', metadata.name);
  if (family.mount.mountable && (givenMount !== undefined || defaultPath !== undefined)) {
    envelope.mount = { path: givenMount?.path ?? defaultPath!, readOnly: givenMount?.readOnly ?? true };
  }
  return envelope;
}

/** The stored form: canonical JSON (RFC 8785). */
export function encodeEnvelope(envelope: Envelope): Buffer {
  return canonicalJsonBytes(envelope);
}

/**
 * Parses a stored config blob (JSON only: YAML is an authoring convenience, never the stored form) and checks
 * it against the family. Blobs over 4 MiB are refused before parsing.
 */
export function decodeEnvelope(bytes: Uint8Array, family: Family, opts: CheckOptions = {}): Envelope {
  const source = opts.source ?? `${family.name} config`;
  if (bytes.length > MAX_ENVELOPE_BYTES) throw tooLarge(source);
  const text = decodeUtf8(bytes, source);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LadingError('E_CONFIG_INVALID', `${source}: not valid JSON: ${(err as Error).message}`, {
      hint: `a ${family.configMediaType} blob is the envelope as JSON`,
      details: { source, reason: 'json' },
      cause: err,
    });
  }
  const dup = duplicateJsonKey(text);
  if (dup) {
    throw new LadingError('E_CONFIG_INVALID', `${source}:${linePos(text, dup.offset)}: not valid JSON: duplicate key ${JSON.stringify(dup.key)}`, {
      hint: `a ${family.configMediaType} blob is the envelope as JSON, each key once per object`,
      details: { source, reason: 'json' },
    });
  }
  return checkEnvelope(value, family, { source });
}
