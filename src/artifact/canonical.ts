import { LadingError } from '../errors.js';

/**
 * JSON Canonicalization Scheme (RFC 8785). Envelopes are stored in this form so that the same envelope
 * always has the same bytes, hence the same digest, whichever tool or key order produced it.
 *
 * ECMAScript's own serialization is what JCS specifies for numbers (shortest round-trip form, `-0` as `0`)
 * and for strings (escape `"`, `\` and controls, `\u00xx` in lower-case hex, everything else literal), so
 * JSON.stringify is used for those leaves; the structure, key order and refusals are done here.
 */

/** Nesting beyond this is refused rather than risking the stack; no legitimate document comes near it. */
const MAX_DEPTH = 1000;

function refuse(path: string, why: string): LadingError {
  return new LadingError('E_JSON_INVALID', `cannot canonicalize ${path === '' ? 'the value' : path}: ${why}`, {
    hint: 'only null, booleans, finite numbers, strings, arrays and plain objects have a canonical JSON form',
    details: { path },
  });
}

function childPath(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? (parent === '' ? key : `${parent}.${key}`) : `${parent}[${JSON.stringify(key)}]`;
}

/** I-JSON (which JCS requires) forbids lone surrogates: they have no UTF-8 encoding. */
function checkWellFormed(s: string, path: string): void {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = s.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      throw refuse(path, `string has a lone surrogate at index ${i}`);
    }
    if (c >= 0xdc00 && c <= 0xdfff) throw refuse(path, `string has a lone surrogate at index ${i}`);
  }
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function serialize(value: unknown, path: string, depth: number, open: Set<object>, out: string[]): void {
  switch (typeof value) {
    case 'boolean':
      out.push(value ? 'true' : 'false');
      return;
    case 'number':
      if (!Number.isFinite(value)) throw refuse(path, `${value} is not a finite number`);
      out.push(JSON.stringify(value));
      return;
    case 'string':
      checkWellFormed(value, path);
      out.push(JSON.stringify(value));
      return;
    case 'undefined':
      throw refuse(path, 'undefined is not JSON');
    case 'object':
      break;
    default:
      throw refuse(path, `a ${typeof value} is not JSON`);
  }
  if (value === null) {
    out.push('null');
    return;
  }
  if (depth >= MAX_DEPTH) throw refuse(path, `nested more than ${MAX_DEPTH} levels deep`);
  if (open.has(value)) throw refuse(path, 'the value refers to itself (a cycle)');
  open.add(value);
  if (Array.isArray(value)) {
    out.push('[');
    for (let i = 0; i < value.length; i++) {
      if (i > 0) out.push(',');
      serialize(value[i], childPath(path, i), depth + 1, open, out);
    }
    out.push(']');
  } else {
    if (!isPlainObject(value)) {
      const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
      throw refuse(path, `a ${name} is not a plain object`);
    }
    // Default sort compares UTF-16 code units, which is exactly the order RFC 8785 §3.2.3 asks for.
    const keys = Object.keys(value).sort();
    out.push('{');
    keys.forEach((key, i) => {
      const p = childPath(path, key);
      checkWellFormed(key, p);
      if (i > 0) out.push(',');
      out.push(JSON.stringify(key), ':');
      serialize((value as Record<string, unknown>)[key], p, depth + 1, open, out);
    });
    out.push('}');
  }
  open.delete(value);
}

/** The RFC 8785 canonical JSON text of a value; E_JSON_INVALID (naming the path) for anything not JSON. */
export function canonicalJson(value: unknown): string {
  const out: string[] = [];
  serialize(value, '', 0, new Set(), out);
  return out.join('');
}

/** The canonical form as UTF-8 bytes: what gets hashed and stored. */
export function canonicalJsonBytes(value: unknown): Buffer {
  return Buffer.from(canonicalJson(value), 'utf8');
}
