/**
 * Token scopes of the distribution token spec: `<type>:<name>:<action>[,<action>...]`, for example
 * `repository:library/ubuntu:pull,push` or `registry:catalog:*`. Scopes are kept in a canonical form
 * (actions de-duplicated and sorted, one entry per resource) so that equal requests share a cache key.
 */

export interface ParsedScope {
  /** `repository`, `registry`, or a typed form such as `repository(plugin)`. */
  type: string;
  name: string;
  actions: string[];
}

/**
 * Splits on the first and the last colon: the type never contains one, and the actions never do, while a
 * resource name might (scopes from some registries carry a host:port).
 */
export function parseScope(scope: string): ParsedScope | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last === first || last === scope.length - 1) return undefined;
  const type = scope.slice(0, first);
  const name = scope.slice(first + 1, last);
  if (name === '') return undefined;
  const actions = scope
    .slice(last + 1)
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  if (actions.length === 0) return undefined;
  return { type, name, actions };
}

function canonicalActions(actions: Iterable<string>): string[] {
  const set = new Set(actions);
  // `*` already grants everything; listing other actions beside it only splits cache keys.
  if (set.has('*')) return ['*'];
  return [...set].sort();
}

export function formatScope(s: ParsedScope): string {
  return `${s.type}:${s.name}:${canonicalActions(s.actions).join(',')}`;
}

/** `repository:<name>:<actions>` with the actions de-duplicated and sorted. */
export function scopeFor(repository: string, actions: string | string[]): string {
  return formatScope({ type: 'repository', name: repository, actions: Array.isArray(actions) ? actions : [actions] });
}

/** The scope for listing a registry's catalog. */
export const CATALOG_SCOPE = 'registry:catalog:*';

/**
 * Unions any number of scopes (or lists of them) into canonical form: one entry per resource with the
 * actions merged, sorted by resource. Strings that are not scopes are kept verbatim (de-duplicated),
 * since a registry may define its own and dropping them would lose access.
 */
export function mergeScopes(...scopes: Array<string | readonly string[] | undefined>): string[] {
  const byResource = new Map<string, { type: string; name: string; actions: Set<string> }>();
  const opaque = new Set<string>();
  for (const item of scopes) {
    if (item === undefined) continue;
    for (const raw of typeof item === 'string' ? [item] : item) {
      for (const scope of raw.split(/\s+/)) {
        if (scope === '') continue;
        const parsed = parseScope(scope);
        if (!parsed) {
          opaque.add(scope);
          continue;
        }
        const key = `${parsed.type}:${parsed.name}`;
        let entry = byResource.get(key);
        if (!entry) {
          entry = { type: parsed.type, name: parsed.name, actions: new Set() };
          byResource.set(key, entry);
        }
        for (const a of parsed.actions) entry.actions.add(a);
      }
    }
  }
  const out = [...byResource.values()].map((e) => formatScope({ type: e.type, name: e.name, actions: [...e.actions] }));
  out.push(...opaque);
  return [...new Set(out)].sort();
}

/** Whether a token granted `granted` may be used for a request that needs `wanted`. */
export function covers(granted: readonly string[], wanted: readonly string[]): boolean {
  const have = new Map<string, Set<string>>();
  const opaque = new Set<string>();
  for (const s of mergeScopes(granted)) {
    const p = parseScope(s);
    if (p) have.set(`${p.type}:${p.name}`, new Set(p.actions));
    else opaque.add(s);
  }
  for (const s of mergeScopes(wanted)) {
    const p = parseScope(s);
    if (!p) {
      if (!opaque.has(s)) return false;
      continue;
    }
    const actions = have.get(`${p.type}:${p.name}`);
    if (!actions) return false;
    if (actions.has('*')) continue;
    for (const a of p.actions) if (!actions.has(a)) return false;
  }
  return true;
}
