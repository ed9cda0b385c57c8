/** Checks on entry names, before anything about them touches the file system. */

export interface PathLimits {
  maxPathLength: number;
  maxDepth: number;
  requirePrefix?: string | undefined;
}

/** Longest name of one path component on common file systems (ext4, xfs, btrfs, tmpfs, apfs). */
export const MAX_COMPONENT_BYTES = 255;

export type CheckedPath = { parts: string[] } | { refused: string };

/**
 * The components of an entry name relative to the destination, or why it is refused. Lengths and depth
 * are checked first and in constant time, so a name 222,371 directories deep is refused before it is
 * split, let alone before any directory is made.
 */
export function checkEntryPath(name: string, limits: PathLimits): CheckedPath {
  if (name.length > limits.maxPathLength || Buffer.byteLength(name) > limits.maxPathLength) {
    return { refused: `name longer than ${limits.maxPathLength} bytes` };
  }
  if (name.startsWith('/')) return { refused: 'absolute path' };
  if (name.includes('\\')) return { refused: 'backslash in the name (a Windows path separator)' };
  if (/^[A-Za-z]:/.test(name)) return { refused: 'Windows drive-letter path' };
  if (name.includes('\0')) return { refused: 'NUL byte in the name' };
  const parts: string[] = [];
  let start = 0;
  for (let i = 0; i <= name.length; i++) {
    if (i < name.length && name.charCodeAt(i) !== 0x2f) continue;
    const part = name.slice(start, i);
    start = i + 1;
    if (part === '' || part === '.') continue;
    if (part === '..') return { refused: 'a ".." segment' };
    if (part.length > MAX_COMPONENT_BYTES / 3 && Buffer.byteLength(part) > MAX_COMPONENT_BYTES) {
      return { refused: `a path component longer than ${MAX_COMPONENT_BYTES} bytes` };
    }
    parts.push(part);
    if (parts.length > limits.maxDepth) return { refused: `deeper than ${limits.maxDepth} levels` };
  }
  if (limits.requirePrefix) {
    const prefix = limits.requirePrefix.split('/').filter((p) => p !== '' && p !== '.');
    if (!underPrefix(parts, prefix)) return { refused: `outside the directory "${limits.requirePrefix}"` };
  }
  return { parts };
}

/** Within `prefix` (components), when one is required. */
export function underPrefix(parts: readonly string[], prefix: readonly string[] | undefined): boolean {
  if (!prefix || prefix.length === 0) return true;
  if (parts.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (parts[i] !== prefix[i]) return false;
  return true;
}

/** A name safe to print in a message or report: control characters replaced, length bounded. */
export function printable(s: string, max = 300): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.slice(0, max + 1).replace(/[\u0000-\u001f\u007f]/g, '?');
  return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
