/**
 * WWW-Authenticate parsing (RFC 7235 §4.1). One header may carry several challenges, and commas separate
 * both challenges and the parameters inside one, so the parser decides by looking ahead: a token followed
 * by `=` continues the current challenge, any other token starts a new one.
 */

export interface Challenge {
  /** Lower-cased: schemes are case-insensitive. */
  scheme: 'basic' | 'bearer' | (string & {});
  /** Parameter names lower-cased, values unquoted and unescaped. */
  params: Record<string, string>;
  /** Set when the challenge carries a token68 instead of parameters (`Negotiate abc==`). */
  token68?: string;
}

const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

class Cursor {
  pos = 0;
  constructor(readonly s: string) {}
  get done(): boolean {
    return this.pos >= this.s.length;
  }
  peek(): string {
    return this.s[this.pos] ?? '';
  }
  skipWhitespace(): void {
    while (this.peek() === ' ' || this.peek() === '\t') this.pos++;
  }
  skipWhitespaceAndCommas(): void {
    while (this.peek() === ' ' || this.peek() === '\t' || this.peek() === ',') this.pos++;
  }
  readWhile(re: RegExp): string {
    const start = this.pos;
    while (!this.done && re.test(this.peek())) this.pos++;
    return this.s.slice(start, this.pos);
  }
  skipPastComma(): void {
    while (!this.done && this.peek() !== ',') this.pos++;
  }
}

function readQuoted(c: Cursor): string {
  c.pos++; // opening quote
  let out = '';
  while (!c.done) {
    const ch = c.peek();
    if (ch === '\\' && c.pos + 1 < c.s.length) {
      out += c.s[c.pos + 1];
      c.pos += 2;
    } else if (ch === '"') {
      c.pos++;
      return out;
    } else {
      out += ch;
      c.pos++;
    }
  }
  // An unterminated string is taken to the end: being strict here would only turn a usable realm into
  // an authentication failure.
  return out;
}

/** Reads `token68` when that is what follows the scheme; leaves the cursor alone otherwise. */
function tryToken68(c: Cursor): string | undefined {
  const start = c.pos;
  const body = c.readWhile(TOKEN68_CHAR);
  if (body === '') {
    c.pos = start;
    return undefined;
  }
  const padding = c.readWhile(/=/);
  c.skipWhitespace();
  if (c.done || c.peek() === ',') return body + padding;
  c.pos = start;
  return undefined;
}

function parseOne(header: string, out: Challenge[]): void {
  const c = new Cursor(header);
  let current: { scheme: string; params: Map<string, string>; token68?: string } | undefined;
  const finish = (): void => {
    if (!current) return;
    const ch: Challenge = { scheme: current.scheme, params: Object.fromEntries(current.params) };
    if (current.token68 !== undefined) ch.token68 = current.token68;
    out.push(ch);
  };

  for (;;) {
    c.skipWhitespaceAndCommas();
    if (c.done) break;
    const name = c.readWhile(TCHAR);
    if (name === '') {
      c.skipPastComma();
      continue;
    }
    c.skipWhitespace();
    if (current && c.peek() === '=' && current.token68 === undefined) {
      c.pos++;
      c.skipWhitespace();
      let value: string;
      if (c.peek() === '"') value = readQuoted(c);
      else value = c.readWhile(/[^,\s]/); // lenient: unquoted realms often hold `:` and `/`
      const key = name.toLowerCase();
      if (!current.params.has(key)) current.params.set(key, value);
      continue;
    }
    if (c.peek() === '=') {
      // A parameter with no challenge to belong to.
      c.skipPastComma();
      continue;
    }
    finish();
    current = { scheme: name.toLowerCase(), params: new Map() };
    const t68 = tryToken68(c);
    if (t68 !== undefined) current.token68 = t68;
  }
  finish();
}

/** Parses one or several WWW-Authenticate header values into their challenges, in order. */
export function parseChallenges(header: string | string[] | undefined): Challenge[] {
  const out: Challenge[] = [];
  if (header === undefined) return out;
  for (const h of Array.isArray(header) ? header : [header]) parseOne(h, out);
  return out;
}
