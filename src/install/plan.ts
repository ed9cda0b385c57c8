import { LadingError } from '../errors.js';

/** One install step of a cli spec (`spec.install[]`), as the family schema shapes it. */
export interface InstallStep {
  name: string;
  order: number;
  /** The argv to execute; no shell is involved. */
  run: string[];
  /** Names of other steps that must have run first. */
  deps?: string[];
}

function compare(a: InstallStep, b: InstallStep): number {
  if (a.order !== b.order) return a.order - b.order;
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The steps in the order they run: every step after the steps it depends on (`deps`), and among the
 * steps free to run, the lowest `order` first, then by name. Deterministic whatever order the spec lists
 * them in. A dependency on a step that does not exist, or a name used twice, is E_CONFIG_INVALID; steps
 * that depend on each other in a cycle are E_STEP_CYCLE naming the cycle (`a → b → a`: a needs b, b needs a).
 */
export function orderSteps(steps: readonly InstallStep[]): InstallStep[] {
  const byName = new Map<string, InstallStep>();
  for (const [i, s] of steps.entries()) {
    if (byName.has(s.name)) {
      throw new LadingError('E_CONFIG_INVALID', `spec.install[${i}].name: the step name "${s.name}" is used twice`, {
        hint: 'give every install step a name of its own',
        details: { path: `spec.install[${i}].name`, step: s.name },
      });
    }
    byName.set(s.name, s);
  }
  // dependents: step name → names of the steps waiting for it; waiting: step name → deps not yet run.
  const dependents = new Map<string, string[]>();
  const waiting = new Map<string, number>();
  for (const [i, s] of steps.entries()) {
    const deps = [...new Set(s.deps ?? [])];
    for (const [j, d] of deps.entries()) {
      if (!byName.has(d)) {
        throw new LadingError('E_CONFIG_INVALID', `spec.install[${i}].deps[${j}]: the step "${s.name}" depends on "${d}", which is no install step`, {
          hint: `name one of the steps: ${[...byName.keys()].sort().join(', ')}`,
          details: { path: `spec.install[${i}].deps[${j}]`, step: s.name, dep: d, steps: [...byName.keys()].sort() },
        });
      }
      const list = dependents.get(d) ?? [];
      list.push(s.name);
      dependents.set(d, list);
    }
    waiting.set(s.name, deps.length);
  }

  const ready = steps.filter((s) => waiting.get(s.name) === 0);
  const out: InstallStep[] = [];
  // Steps are few (a spec is at most 4 MiB); sorting the ready set at each pick keeps this simple.
  while (ready.length > 0) {
    ready.sort(compare);
    const next = ready.shift()!;
    out.push(next);
    for (const name of dependents.get(next.name) ?? []) {
      const left = waiting.get(name)! - 1;
      waiting.set(name, left);
      if (left === 0) ready.push(byName.get(name)!);
    }
  }
  if (out.length === steps.length) return out;

  // Every step left waits for at least one other step left: following the smallest such dep from the
  // smallest step left must come back to a step already on the walk, within as many hops as steps left.
  const left = steps.filter((s) => waiting.get(s.name)! > 0).sort(compare);
  const leftNames = new Set(left.map((s) => s.name));
  const walk: string[] = [];
  const at = new Map<string, number>();
  let cur = left[0]!;
  for (let hops = 0; hops <= left.length && !at.has(cur.name); hops++) {
    at.set(cur.name, walk.length);
    walk.push(cur.name);
    const deps = [...new Set(cur.deps ?? [])].filter((d) => leftNames.has(d)).map((d) => byName.get(d)!).sort(compare);
    cur = deps[0]!;
  }
  const cycle = [...walk.slice(at.get(cur.name) ?? 0), cur.name];
  throw new LadingError('E_STEP_CYCLE', `install steps depend on each other in a cycle: ${cycle.join(' → ')}`, {
    hint: 'each step must run after the ones named in its deps; remove one of the deps in the cycle',
    details: { cycle, blocked: left.map((s) => s.name) },
  });
}

/**
 * The install steps of a cli envelope's spec (`spec.install`), checked for shape (the family schema
 * has already done so for pulled envelopes) and ordered by orderSteps. No steps → [].
 */
export function installSteps(spec: Record<string, unknown>): InstallStep[] {
  const raw = spec.install;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    throw new LadingError('E_CONFIG_INVALID', 'spec.install: must be an array of steps', { details: { path: 'spec.install' } });
  }
  const steps = raw.map((s: unknown, i): InstallStep => {
    const o = (typeof s === 'object' && s !== null ? s : {}) as Record<string, unknown>;
    const bad = (field: string, why: string): never => {
      throw new LadingError('E_CONFIG_INVALID', `spec.install[${i}].${field}: ${why}`, { details: { path: `spec.install[${i}].${field}` } });
    };
    if (typeof o.name !== 'string' || o.name === '') bad('name', 'must be a non-empty string');
    if (typeof o.order !== 'number' || !Number.isInteger(o.order) || o.order < 0) bad('order', 'must be an integer of 0 or more');
    if (!Array.isArray(o.run) || o.run.length === 0 || !o.run.every((a) => typeof a === 'string' && a !== '')) {
      bad('run', 'must be a non-empty argv of non-empty strings');
    }
    if (o.deps !== undefined && (!Array.isArray(o.deps) || !o.deps.every((d) => typeof d === 'string'))) bad('deps', 'must be an array of step names');
    const step: InstallStep = { name: o.name as string, order: o.order as number, run: [...(o.run as string[])] };
    if (o.deps !== undefined) step.deps = [...(o.deps as string[])];
    return step;
  });
  return orderSteps(steps);
}
