/**
 * The `rel="next"` target of an RFC 8288 Link header, resolved against `base`; registries page tags,
 * catalogs and referrers this way. Only same-origin links are followed, so a registry cannot steer
 * lading (and its credentials) to another host.
 */
export function nextLink(value: string | string[] | undefined, base: string): string | undefined {
  const headers = Array.isArray(value) ? value : value ? [value] : [];
  for (const h of headers) {
    for (const part of splitLinks(h)) {
      const m = /^\s*<([^>]*)>\s*(.*)$/.exec(part);
      if (!m) continue;
      const params = m[2] ?? '';
      if (!/(^|;)\s*rel\s*=\s*"?([^";]*\s)?next(\s[^";]*)?"?\s*(;|$)/i.test(params)) continue;
      const target = new URL(m[1] ?? '', base);
      if (target.origin !== new URL(base).origin) return undefined;
      return `${target.pathname}${target.search}`;
    }
  }
  return undefined;
}

/** Splits on commas outside angle brackets and quotes. */
function splitLinks(header: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let quoted = false;
  let start = 0;
  for (let i = 0; i < header.length; i++) {
    const c = header[i];
    if (c === '"') quoted = !quoted;
    else if (!quoted && c === '<') depth++;
    else if (!quoted && c === '>') depth = Math.max(0, depth - 1);
    else if (!quoted && depth === 0 && c === ',') {
      out.push(header.slice(start, i));
      start = i + 1;
    }
  }
  out.push(header.slice(start));
  return out;
}
