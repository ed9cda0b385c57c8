import semver from 'semver';
import { LadingError } from '../errors.js';

/** Classes another installed pack provides, from the installed state (its current version). */
export interface InstalledClasses {
  name: string;
  version: string;
  classes: string[];
}

export interface PackCheckOptions {
  /** The pack's metadata.name; its own other versions never conflict with it. */
  name: string;
  /** The host SDK version (`--sdk-version`). */
  sdkVersion?: string;
  /** Classes the host provides itself. */
  hostClasses?: readonly string[];
  /** Classes of the other installed packs' current versions. */
  installed?: readonly InstalledClasses[];
}

export interface PackConflict {
  class: string;
  /** `host`, or the installed pack `name@version` that provides it. */
  providedBy: string;
}

/** The pack spec's classes (the schema guarantees a non-empty list of strings). */
export function packClasses(spec: Record<string, unknown>): string[] {
  const classes = spec.classes;
  if (!Array.isArray(classes) || !classes.every((c) => typeof c === 'string')) {
    throw new LadingError('E_CONFIG_INVALID', 'spec.classes: must be an array of class names', { details: { path: 'spec.classes' } });
  }
  return [...classes];
}

/**
 * Refuses a pack the host cannot load: E_USAGE without a host SDK version, E_PACK_INCOMPATIBLE when
 * the version is outside the pack's `spec.sdk` range (prereleases included), E_PACK_CONFLICT when any of
 * its classes is one the host or another installed pack already provides. Returns the pack's classes.
 */
export function checkPack(spec: Record<string, unknown>, o: PackCheckOptions): string[] {
  const range = spec.sdk;
  if (typeof range !== 'string' || semver.validRange(range) === null) {
    throw new LadingError('E_CONFIG_INVALID', `spec.sdk: "${String(range)}" is not a semver range`, { details: { path: 'spec.sdk', sdk: range } });
  }
  if (o.sdkVersion === undefined || o.sdkVersion === '') {
    throw new LadingError('E_USAGE', `installing the pack ${o.name} needs the host SDK version`, {
      hint: `pass --sdk-version X.Y.Z (the pack works with SDK ${range})`,
      details: { name: o.name, sdk: range },
    });
  }
  const version = semver.valid(o.sdkVersion);
  if (version === null) {
    throw new LadingError('E_USAGE', `invalid SDK version "${o.sdkVersion}": not a semver version`, {
      hint: 'pass --sdk-version as a full version such as 2.4.1',
      details: { sdkVersion: o.sdkVersion },
    });
  }
  if (!semver.satisfies(version, range, { includePrerelease: true })) {
    throw new LadingError('E_PACK_INCOMPATIBLE', `the pack ${o.name} needs SDK ${range}; the host SDK is ${version}`, {
      hint: 'install a version of the pack built for this SDK, or upgrade the host',
      details: { name: o.name, sdk: range, sdkVersion: version },
    });
  }
  const classes = packClasses(spec);
  const conflicts = findClassConflicts(classes, o);
  if (conflicts.length > 0) {
    const list = conflicts.map((c) => `${c.class} (${c.providedBy})`).join(', ');
    throw new LadingError('E_PACK_CONFLICT', `the pack ${o.name} provides classes that are already provided: ${list}`, {
      hint: 'uninstall the pack that provides them, or install a pack whose classes do not collide',
      details: { name: o.name, conflicts },
    });
  }
  return classes;
}

/** Each class of `classes` that the host or another pack (not `o.name` itself) already provides. */
export function findClassConflicts(classes: readonly string[], o: Pick<PackCheckOptions, 'name' | 'hostClasses' | 'installed'>): PackConflict[] {
  const provided = new Map<string, string>();
  for (const c of o.hostClasses ?? []) provided.set(c, 'host');
  for (const p of o.installed ?? []) {
    if (p.name === o.name) continue;
    for (const c of p.classes) if (!provided.has(c)) provided.set(c, `${p.name}@${p.version}`);
  }
  const out: PackConflict[] = [];
  for (const c of [...new Set(classes)].sort()) {
    const by = provided.get(c);
    if (by !== undefined) out.push({ class: c, providedBy: by });
  }
  return out;
}
