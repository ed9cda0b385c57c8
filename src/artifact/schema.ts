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

/**
 * An issue before its path is rendered: segments sort numerically where the path string would not. An issue
 * with `omitted` is no issue but a note that so many more (-1: an unknown number) were found and left out.
 */
export interface LocatedIssue {
  segments: PathSegment[];
  message: string;
  omitted?: number;
}

/** The most issues a list holds; past it, the last one says how many more there were. */
export const MAX_ISSUES = 100;

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

function compareIssues(a: LocatedIssue, b: LocatedIssue): number {
  return compareSegments(a.segments, b.segments) || (a.message < b.message ? -1 : a.message > b.message ? 1 : 0);
}

/** How many issues a note of `omitted` issues stands for (-1: unknown), summed. */
function sumOmitted(total: number, n: number): number {
  return total < 0 || n < 0 ? -1 : total + n;
}

/**
 * Keeps the first MAX_ISSUES issues (in finishIssues' order) of a list that may grow without bound, plus a
 * note of how many were dropped, so that gathering stays bounded while the first issue stays exact. Call it
 * whenever a list may have grown past a few times MAX_ISSUES; it changes the list in place.
 */
export function compactIssues(issues: LocatedIssue[]): void {
  if (issues.length <= 4 * MAX_ISSUES) return;
  const { kept, omitted } = boundIssues(issues);
  issues.length = 0;
  for (const issue of kept) issues.push(issue);
  if (omitted !== 0) issues.push({ segments: [], message: '', omitted });
}

/** Sorted and deduplicated, at most MAX_ISSUES kept; the rest, and earlier notes, counted as omitted. */
function boundIssues(issues: readonly LocatedIssue[]): { kept: LocatedIssue[]; omitted: number } {
  let omitted = 0;
  const real: LocatedIssue[] = [];
  for (const issue of issues) {
    if (issue.omitted !== undefined) omitted = sumOmitted(omitted, issue.omitted);
    else real.push(issue);
  }
  real.sort(compareIssues);
  const kept: LocatedIssue[] = [];
  const seen = new Set<string>();
  for (const issue of real) {
    const key = `${formatPath(issue.segments)}\u0000${issue.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    if (kept.length >= MAX_ISSUES) omitted = sumOmitted(omitted, 1);
    else kept.push(issue);
  }
  return { kept, omitted };
}

/** Appends `more` to `out` with a loop (spreading a huge list overflows the stack), keeping `out` bounded. */
export function appendIssues(out: LocatedIssue[], more: readonly LocatedIssue[]): void {
  for (const issue of more) {
    out.push(issue);
    if (out.length > 8 * MAX_ISSUES) compactIssues(out);
  }
}

/**
 * Rendered, deduplicated and in a stable order: by path (array indices numerically), then message. At most
 * MAX_ISSUES: past that the last issue (path "") says how many more there were.
 */
export function finishIssues(issues: readonly LocatedIssue[]): SchemaIssue[] {
  const bounded = boundIssues(issues);
  let omitted = bounded.omitted;
  const out: SchemaIssue[] = bounded.kept.map((issue) => ({ path: formatPath(issue.segments), message: issue.message }));
  if (omitted === 0) return out;
  // The note takes the last place, so the list stays within MAX_ISSUES.
  if (out.length >= MAX_ISSUES) {
    out.length = MAX_ISSUES - 1;
    omitted = sumOmitted(omitted, 1);
  }
  out.push({
    path: '',
    message: omitted < 0 ? 'and more issues, not listed (checking stopped early)' : `and ${omitted} more ${omitted === 1 ? 'issue' : 'issues'}, not listed`,
  });
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

// ---- patterns that could backtrack exponentially -------------------------------------------------------

/**
 * ajv runs `pattern` on the backtracking RegExp engine, so `^([a-z0-9]+\.?)+$` against 30 characters and a
 * `!` takes seconds. Like safe-regex, a repeated group may not contain another repeat (star height 2) — unless
 * every repetition is plainly delimited: it starts with a non-optional head, ends with a non-optional rest,
 * and the rest cannot contain a character that starts a repetition (`(\.[a-z]+)*`, `(-+[a-z0-9]+)*`), so
 * there is one way only to split the input into repetitions. A repeated alternation whose branches can start
 * with the same character (`(a|aa)*`) is refused too. This is conservative: anything it cannot analyse is refused.
 */

type CharSet = 'any' | ReadonlyArray<readonly [number, number]>;

interface Info {
  nullable: boolean;
  chars: CharSet;
  first: CharSet;
  repeats: boolean;
}

const NOTHING: CharSet = [];
const DIGITS: CharSet = [[0x30, 0x39]];
const WORD: CharSet = [[0x30, 0x39], [0x41, 0x5a], [0x5f, 0x5f], [0x61, 0x7a]];
const SPACE: CharSet = [
  [0x09, 0x0d], [0x20, 0x20], [0xa0, 0xa0], [0x1680, 0x1680], [0x2000, 0x200a], [0x2028, 0x2029],
  [0x202f, 0x202f], [0x205f, 0x205f], [0x3000, 0x3000], [0xfeff, 0xfeff],
];

function union(a: CharSet, b: CharSet): CharSet {
  if (a === 'any' || b === 'any') return 'any';
  return a.length === 0 ? b : b.length === 0 ? a : [...a, ...b];
}

function intersects(a: CharSet, b: CharSet): boolean {
  if ((a !== 'any' && a.length === 0) || (b !== 'any' && b.length === 0)) return false;
  if (a === 'any' || b === 'any') return true;
  return a.some(([lo, hi]) => b.some(([l, h]) => lo <= h && l <= hi));
}

/** Every character not in `set`; what is not known exactly (`any`) stays `any`, the safe side here. */
function complement(set: CharSet): CharSet {
  if (set === 'any') return 'any';
  const sorted = [...set].sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= 0x10ffff) out.push([next, 0x10ffff]);
  return out;
}

function single(c: number): CharSet {
  return [[c, c]];
}

const ZERO_WIDTH: Info = { nullable: true, chars: NOTHING, first: NOTHING, repeats: false };

class PatternRisk extends Error {}

class RegexScanner {
  i = 0;
  constructor(readonly s: string) {}

  fail(why: string): never {
    throw new PatternRisk(why);
  }

  /** One alternation; returns the infos of its branches, each a list of its terms. */
  alternation(): Info[][] {
    const branches: Info[][] = [this.sequence()];
    while (this.s[this.i] === '|') {
      this.i++;
      branches.push(this.sequence());
    }
    return branches;
  }

  sequence(): Info[] {
    const terms: Info[] = [];
    while (this.i < this.s.length && this.s[this.i] !== '|' && this.s[this.i] !== ')') terms.push(this.term());
    return terms;
  }

  term(): Info {
    const atom = this.atom();
    const q = this.quantifier();
    if (!q) return atom.info;
    if (q.max > 1 && atom.branches) checkRepeatedGroup(atom.branches);
    return { nullable: atom.info.nullable || q.min === 0, chars: atom.info.chars, first: atom.info.first, repeats: atom.info.repeats || q.max > 1 };
  }

  quantifier(): { min: number; max: number } | undefined {
    const c = this.s[this.i];
    let q: { min: number; max: number } | undefined;
    if (c === '*') q = { min: 0, max: Infinity };
    else if (c === '+') q = { min: 1, max: Infinity };
    else if (c === '?') q = { min: 0, max: 1 };
    else if (c === '{') {
      const m = /^\{(\d+)(,(\d*))?\}/.exec(this.s.slice(this.i));
      if (!m) this.fail('has a "{" that is not a quantifier');
      this.i += m[0].length - 1;
      const min = Number(m[1]);
      q = { min, max: m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3]) };
    }
    if (!q) return undefined;
    this.i++;
    if (this.s[this.i] === '?') this.i++;
    return q;
  }

  atom(): { info: Info; branches?: Info[][] } {
    const s = this.s;
    const c = s[this.i]!;
    if (c === '(') {
      this.i++;
      let lookaround = false;
      if (s.startsWith('?:', this.i)) this.i += 2;
      else if (s.startsWith('?=', this.i) || s.startsWith('?!', this.i)) {
        this.i += 2;
        lookaround = true;
      } else if (s.startsWith('?<=', this.i) || s.startsWith('?<!', this.i)) {
        this.i += 3;
        lookaround = true;
      } else if (s.startsWith('?<', this.i)) {
        const end = s.indexOf('>', this.i);
        if (end < 0) this.fail('has an unterminated group name');
        this.i = end + 1;
      } else if (s[this.i] === '?') this.fail('has a group modifier that cannot be analysed');
      const branches = this.alternation();
      if (s[this.i] !== ')') this.fail('has an unbalanced "("');
      this.i++;
      const info = combineBranches(branches);
      if (lookaround) return { info: { ...ZERO_WIDTH, repeats: info.repeats } };
      return { info, branches };
    }
    if (c === '[') return { info: charsInfo(this.charClass()) };
    if (c === '.') {
      this.i++;
      return { info: charsInfo('any') };
    }
    if (c === '^' || c === '$') {
      this.i++;
      return { info: ZERO_WIDTH };
    }
    if (c === '\\') return { info: this.escapeOutside() };
    if (c === ')' || c === '*' || c === '+' || c === '?' || c === '{') this.fail(`has a stray "${c}"`);
    const cp = s.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return { info: charsInfo(single(cp)) };
  }

  escapeOutside(): Info {
    const s = this.s;
    const e = s[this.i + 1];
    if (e === undefined) this.fail('ends in "\\"');
    if (e === 'b' || e === 'B') {
      this.i += 2;
      return ZERO_WIDTH;
    }
    if (/[1-9]/.test(e) || e === 'k') {
      // A backreference repeats whatever its group matched.
      this.i += 2;
      if (e === 'k') {
        const end = s.indexOf('>', this.i);
        this.i = end < 0 ? s.length : end + 1;
      } else while (/[0-9]/.test(s[this.i] ?? '')) this.i++;
      return { nullable: true, chars: 'any', first: 'any', repeats: false };
    }
    return charsInfo(this.escape(false));
  }

  /** An escape (at `\`) as the characters it matches; `\b` is a backspace inside a class. */
  escape(inClass: boolean): CharSet {
    const s = this.s;
    const e = s[this.i + 1]!;
    this.i += 2;
    switch (e) {
      case 'd':
        return DIGITS;
      case 'w':
        return WORD;
      case 's':
        return SPACE;
      case 'D':
        return complement(DIGITS);
      case 'W':
        return complement(WORD);
      case 'S':
        return complement(SPACE);
      case 'p':
      case 'P': {
        const end = s.indexOf('}', this.i);
        this.i = end < 0 ? s.length : end + 1;
        return 'any';
      }
      case 'n':
        return single(0x0a);
      case 'r':
        return single(0x0d);
      case 't':
        return single(0x09);
      case 'f':
        return single(0x0c);
      case 'v':
        return single(0x0b);
      case '0':
        return single(0);
      case 'b':
        if (inClass) return single(0x08);
        return this.fail('has a misplaced "\\b"');
      case 'c': {
        const letter = s.charCodeAt(this.i);
        this.i++;
        return single(letter % 32);
      }
      case 'x': {
        const hex = s.slice(this.i, this.i + 2);
        this.i += 2;
        return single(parseInt(hex, 16));
      }
      case 'u': {
        if (s[this.i] === '{') {
          const end = s.indexOf('}', this.i);
          const cp = parseInt(s.slice(this.i + 1, end), 16);
          this.i = end + 1;
          return single(cp);
        }
        const cp = parseInt(s.slice(this.i, this.i + 4), 16);
        this.i += 4;
        return single(cp);
      }
      default:
        return single(e.codePointAt(0)!);
    }
  }

  charClass(): CharSet {
    const s = this.s;
    this.i++;
    const negated = s[this.i] === '^';
    if (negated) this.i++;
    let set: CharSet = NOTHING;
    while (this.i < s.length && s[this.i] !== ']') {
      const lo = this.classAtom();
      if (s[this.i] === '-' && s[this.i + 1] !== ']' && this.i + 1 < s.length) {
        this.i++;
        const hi = this.classAtom();
        if (lo !== 'any' && hi !== 'any' && lo.length === 1 && hi.length === 1) set = union(set, [[lo[0]![0], hi[0]![1]]]);
        else set = 'any';
      } else set = union(set, lo);
    }
    if (s[this.i] !== ']') this.fail('has an unterminated "["');
    this.i++;
    return negated ? complement(set) : set;
  }

  classAtom(): CharSet {
    if (this.s[this.i] === '\\') return this.escape(true);
    const cp = this.s.codePointAt(this.i)!;
    this.i += cp > 0xffff ? 2 : 1;
    return single(cp);
  }
}

function charsInfo(chars: CharSet): Info {
  return { nullable: false, chars, first: chars, repeats: false };
}

function sequenceInfo(terms: readonly Info[]): Info {
  let nullable = true;
  let chars: CharSet = NOTHING;
  let first: CharSet = NOTHING;
  let repeats = false;
  for (const t of terms) {
    if (nullable) first = union(first, t.first);
    nullable &&= t.nullable;
    chars = union(chars, t.chars);
    repeats ||= t.repeats;
  }
  return { nullable, chars, first, repeats };
}

function combineBranches(branches: readonly Info[][]): Info {
  const infos = branches.map(sequenceInfo);
  return {
    nullable: infos.some((b) => b.nullable),
    chars: infos.reduce<CharSet>((acc, b) => union(acc, b.chars), NOTHING),
    first: infos.reduce<CharSet>((acc, b) => union(acc, b.first), NOTHING),
    repeats: infos.some((b) => b.repeats),
  };
}

function checkRepeatedGroup(branches: readonly Info[][]): void {
  const infos = branches.map(sequenceInfo);
  for (let a = 0; a < infos.length; a++) {
    for (let b = 0; b < a; b++) {
      if (intersects(infos[a]!.first, infos[b]!.first)) {
        throw new PatternRisk('the branches of a repeated group can start with the same character');
      }
    }
  }
  const starts = combineBranches(branches).first;
  for (const terms of branches) {
    if (!sequenceInfo(terms).repeats) continue;
    const head = terms[0];
    const rest = sequenceInfo(terms.slice(1));
    if (!head || head.nullable || rest.nullable || intersects(rest.chars, starts)) {
      throw new PatternRisk('a repeated group contains another repeat, and nothing marks where one repetition ends and the next begins');
    }
  }
}

/**
 * Why matching a JSON Schema `pattern` (a `u`-flag RegExp source) could take exponential time, or undefined
 * when it cannot; see above for the rule.
 */
export function patternRisk(source: string): string | undefined {
  const scanner = new RegexScanner(source);
  try {
    scanner.alternation();
    if (scanner.i < source.length) scanner.fail(`has an unbalanced ")"`);
    return undefined;
  } catch (err) {
    if (err instanceof PatternRisk) return err.message;
    return 'cannot be analysed for exponential backtracking';
  }
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

function familyInvalid(origin: SchemaOrigin, segments: PathSegment[], message: string, cause?: unknown, hint?: string): LadingError {
  const path = formatPath(segments);
  return new LadingError('E_FAMILY_INVALID', `${origin.source}: ${path === '' ? '' : `${path}: `}${message}`, {
    hint: hint ?? 'a family schema must be valid JSON Schema 2020-12, using only standard keywords and known formats',
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

const PATTERN_HINT =
  'a repeated group may contain another repeat only when each repetition starts with a character the rest of it cannot contain: ' +
  'write ^[a-z0-9]+(\\.[a-z0-9]+)*$ rather than ^([a-z0-9]+\\.?)+$';

function restoreRecord<T>(current: Record<string, T>, saved: Record<string, T>): void {
  for (const key of Object.keys(current)) {
    if (!Object.hasOwn(saved, key)) delete current[key];
    else if (current[key] !== saved[key]) current[key] = saved[key]!;
  }
  for (const key of Object.keys(saved)) if (!Object.hasOwn(current, key)) current[key] = saved[key]!;
}

/** Calls `visit` on every subschema (in schema positions only, not in enum/const/default values). */
function eachSubschema(schema: unknown, visit: (node: Record<string, unknown>, at: PathSegment[]) => void, at: PathSegment[] = []): void {
  if (schema === null || typeof schema !== 'object' || Array.isArray(schema)) return;
  const node = schema as Record<string, unknown>;
  visit(node, at);
  for (const [key, value] of Object.entries(node)) {
    if (SCHEMA_MAP_KEYWORDS.has(key) && value !== null && typeof value === 'object') {
      for (const [name, sub] of Object.entries(value as Record<string, unknown>)) eachSubschema(sub, visit, [...at, key, name]);
    } else if (SCHEMA_LIST_KEYWORDS.has(key) && Array.isArray(value)) {
      value.forEach((sub, i) => eachSubschema(sub, visit, [...at, key, i]));
    } else if (SCHEMA_KEYWORDS.has(key)) {
      eachSubschema(value, visit, [...at, key]);
    }
  }
}

/** Every regular expression in a schema: `pattern`s and `patternProperties` keys, with where they are. */
function schemaPatterns(schema: unknown): { at: PathSegment[]; pattern: string }[] {
  const out: { at: PathSegment[]; pattern: string }[] = [];
  eachSubschema(schema, (node, at) => {
    if (typeof node.pattern === 'string') out.push({ at: [...at, 'pattern'], pattern: node.pattern });
    const props = node.patternProperties;
    if (props !== null && typeof props === 'object' && !Array.isArray(props)) {
      for (const key of Object.keys(props)) out.push({ at: [...at, 'patternProperties', key], pattern: key });
    }
  });
  return out;
}

/** ajv's normalized form of an $id: resolved against the enclosing one, without an empty fragment. */
function normalizeId(id: string, base: string | undefined): string {
  let resolved = id;
  try {
    resolved = new URL(id, base).href;
  } catch {
    // not a URL (or relative with no base): ajv keeps it as written
  }
  return resolved.replace(/#\/?$/, '');
}

/** The $ids a schema declares (normalized as ajv registers them), with where they are. */
function schemaIds(schema: unknown): { at: PathSegment[]; id: string }[] {
  const out: { at: PathSegment[]; id: string }[] = [];
  const bases = new Map<string, string | undefined>();
  eachSubschema(schema, (node, at) => {
    let base: string | undefined;
    for (let n = at.length - 1; n >= 0 && base === undefined; n--) base = bases.get(JSON.stringify(at.slice(0, n)));
    if (typeof node.$id === 'string' && node.$id !== '') {
      const id = normalizeId(node.$id, base);
      bases.set(JSON.stringify(at), id);
      if (!id.startsWith('#') && id !== '') out.push({ at, id });
    }
  });
  return out;
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
  for (const { at, pattern } of schemaPatterns(schema)) {
    if (!compilesAsUnicodeRegExp(pattern)) continue; // ajv says what is wrong with it
    const risk = patternRisk(pattern);
    if (risk !== undefined) {
      throw familyInvalid(origin, [...origin.path, ...at], `${JSON.stringify(pattern)} could take exponential time to match: ${risk}`, undefined, PATTERN_HINT);
    }
  }
  for (const { at, id } of schemaIds(schema)) {
    if (Object.hasOwn(ajv.schemas, id) || Object.hasOwn(ajv.refs, id)) {
      throw familyInvalid(
        origin,
        [...origin.path, ...at, '$id'],
        `"${id}" is the $id of a schema lading itself uses (such as the JSON Schema meta-schema)`,
        undefined,
        'give the schema an $id of its own (a URL under a domain you control), or leave $id out',
      );
    }
  }
  // Compiling registers the schema's $ids in the shared instance; everything it added or replaced is undone
  // afterwards, so that only what this call added is removed and the meta-schemas stay as they were.
  const savedSchemas = { ...ajv.schemas };
  const savedRefs = { ...ajv.refs };
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
    restoreRecord(ajv.schemas, savedSchemas);
    restoreRecord(ajv.refs, savedRefs);
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

function branchCount(e: ErrorObject, errors: ErrorObject[], candidates: readonly number[], k: number, root: unknown): number {
  const list = nodeAtPointer(root, e.schemaPath);
  if (Array.isArray(list)) return list.length;
  let n = 0;
  const prefix = `${e.schemaPath}/`;
  for (const j of candidates) {
    if (j >= k) break;
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
 * The indices of the errors at or under each instance path, in order: an error at `/a/b` is listed under
 * ``, `/a` and `/a/b`. Only paths that an anyOf/oneOf/if error sits at are indexed, so the work is the
 * number of errors times their depth.
 */
function errorsUnder(errors: ErrorObject[]): Map<string, number[]> {
  const index = new Map<string, number[]>();
  for (const e of errors) {
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if') index.set(e.instancePath, []);
  }
  if (index.size === 0) return index;
  errors.forEach((e, j) => {
    const p = e.instancePath;
    index.get(p)?.push(j);
    for (let at = p.lastIndexOf('/'); at >= 0; at = p.lastIndexOf('/', at - 1)) {
      index.get(p.slice(0, at))?.push(j);
      if (at === 0) break;
    }
  });
  return index;
}

/**
 * Drops what ajv reports for every branch of a failed anyOf/oneOf when one branch is plainly the one meant
 * (the value has its type), keeping that branch's specific errors; when no branch has the value's type the
 * branches' type errors become one `must be A or B`. Returns the errors kept and messages to substitute.
 * Each anyOf/oneOf/if looks only at the errors at or under its own instance path, found through an index.
 */
function prune(errors: ErrorObject[], root: unknown): { kept: ErrorObject[]; messages: Map<ErrorObject, string> } {
  const removed = new Set<number>();
  const messages = new Map<ErrorObject, string>();
  const under = errorsUnder(errors);
  for (let k = errors.length - 1; k >= 0; k--) {
    const e = errors[k]!;
    if (removed.has(k)) continue;
    const near = under.get(e.instancePath) ?? [];
    if (e.keyword === 'if') {
      const parent = e.schemaPath.replace(/\/if$/, '');
      const specific = near.some((j) => {
        const o = errors[j]!;
        return j !== k && !removed.has(j) && (o.schemaPath.startsWith(`${parent}/then`) || o.schemaPath.startsWith(`${parent}/else`));
      });
      if (specific) removed.add(k);
      continue;
    }
    if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf') continue;
    if (Array.isArray((e.params as { passingSchemas?: unknown }).passingSchemas)) continue;
    const n = branchCount(e, errors, near, k, root);
    const prefixes = Array.from({ length: n }, (_, i) => branchPrefixes(e, i, root));
    const branches: number[][] = Array.from({ length: n }, () => []);
    const unattributed: number[] = [];
    const parent = e.schemaPath.replace(/\/(anyOf|oneOf)$/, '');
    for (const j of near) {
      if (j >= k) break;
      if (removed.has(j)) continue;
      const o = errors[j]!;
      let owner = -1;
      for (let i = 0; i < n && owner < 0; i++) {
        if (prefixes[i]!.some((p) => underPointer(o.schemaPath, p))) owner = i;
      }
      if (owner >= 0) branches[owner]!.push(j);
      else if (!underPointer(o.schemaPath, parent)) unattributed.push(j);
    }
    // A branch reached through a $ref we could not resolve (e.g. in a meta-schema) reports under another path.
    const silent = branches.map((b, i) => (b.length === 0 ? i : -1)).filter((i) => i >= 0);
    if (silent.length === 1 && unattributed.length > 0) for (const j of unattributed) branches[silent[0]!]!.push(j);
    if (branches.every((b) => b.length === 0)) continue;
    const wrongType = (b: number[]): boolean =>
      b.some((j) => errors[j]!.keyword === 'type' && errors[j]!.instancePath === e.instancePath);
    const candidates = branches.map((b, i) => ({ b, i })).filter(({ b }) => b.length > 0 && !wrongType(b));
    const all: number[] = [];
    for (const b of branches) for (const j of b) all.push(j);
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
    const depth = (b: number[]): number => b.reduce((max, j) => Math.max(max, instanceDepth(errors[j]!)), 0);
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

/** A string equal for two JSON values exactly when ajv's uniqueItems deems them equal (key order aside). */
function itemKey(v: unknown): string {
  if (v === null || typeof v !== 'object') return typeof v === 'string' ? JSON.stringify(v) : `${typeof v}:${String(v)}`;
  if (Array.isArray(v)) return `[${v.map(itemKey).join(',')}]`;
  const keys = Object.keys(v).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${itemKey((v as Record<string, unknown>)[k])}`).join(',')}}`;
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
      // ajv names the last duplicate pair it meets; the first one is what a reader looks for. One pass with
      // a map of each item's canonical key finds it in linear time.
      const list = valueAt(data, at);
      if (Array.isArray(list)) {
        const firstIndex = new Map<string, number>();
        for (let i = 0; i < list.length; i++) {
          const key = itemKey(list[i]);
          const j = firstIndex.get(key);
          if (j !== undefined) return { segments: [...at, i], message: `duplicates ${formatPath([...base, ...at, j])}` };
          firstIndex.set(key, i);
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

/** ajv's errors past this many are not looked at (pruning and describing them would cost time for nothing). */
const MAX_ERRORS = 1000;

/**
 * The first MAX_ERRORS errors, less a trailing anyOf/oneOf/if block whose own error was cut off (its
 * branches' errors would read as noise). ajv's order is deterministic, so the result is too.
 */
function capErrors(errors: ErrorObject[]): ErrorObject[] {
  if (errors.length <= MAX_ERRORS) return errors;
  const kept = errors.slice(0, MAX_ERRORS);
  // ajv reports a composite keyword's error right after the errors of its branches.
  for (let k = MAX_ERRORS; k < Math.min(errors.length, MAX_ERRORS + 200); k++) {
    const e = errors[k]!;
    if (e.keyword !== 'anyOf' && e.keyword !== 'oneOf' && e.keyword !== 'if') continue;
    let cut = kept.length;
    while (cut > 0 && underPointer(kept[cut - 1]!.instancePath, e.instancePath)) cut--;
    if (cut > 0) kept.length = cut;
  }
  return kept;
}

/**
 * ajv's errors for `data` as issues with paths under `base`. Never empty when there were errors: if pruning
 * branch noise would leave nothing, the unpruned errors are reported instead. Past MAX_ERRORS errors, the
 * rest are dropped and a note ({omitted: -1}) says so; finishIssues turns it into the last issue.
 */
export function ajvIssues(errors: ErrorObject[], data: unknown, base: PathSegment[], root?: unknown): LocatedIssue[] {
  if (errors.length === 0) return [];
  const capped = capErrors(errors);
  const { kept, messages } = prune(capped, root);
  const chosen = kept.length > 0 ? kept : capped;
  const issues: LocatedIssue[] = chosen.map((e) => {
    const d = describe(e, data, messages.get(e), base);
    return { segments: [...base, ...d.segments], message: d.message };
  });
  if (issues.length === 0) issues.push({ segments: [...base], message: 'is invalid' });
  if (capped.length < errors.length) issues.push({ segments: [...base], message: '', omitted: -1 });
  return issues;
}
