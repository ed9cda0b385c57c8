import { endianness } from 'node:os';
import { LadingError } from '../errors.js';
import type { Platform } from './descriptor.js';

/**
 * Platforms in the GOOS/GOARCH vocabulary of the image-spec, written `os/arch[/variant][:os.version]`.
 * Spellings that name the same machine (x86_64, aarch64, armhf, …) are folded into one form so that
 * comparisons are exact without being pedantic about aliases.
 */

const COMPONENT_RE = /^[a-z0-9_-]+$/;
const OS_VERSION_RE = /^[A-Za-z0-9._-]+$/;

const OS_ALIASES: Record<string, string> = { macos: 'darwin' };

function usage(input: string, why: string): LadingError {
  return new LadingError('E_USAGE', `invalid platform "${input}": ${why}`, {
    hint: 'write os/architecture[/variant][:os.version], e.g. linux/amd64, linux/arm64/v8, linux/arm/v7, windows/amd64:10.0.17763, or "native"',
    details: { platform: input },
  });
}

/** Architecture and variant in canonical form: the default variant of an architecture is left out. */
function normalizeArch(architecture: string, variant: string | undefined): { architecture: string; variant?: string } {
  const arch = architecture.toLowerCase();
  // Some tools write an empty variant; it means none.
  const v = variant ? variant.toLowerCase() : undefined;
  switch (arch) {
    case 'x86_64':
    case 'x86-64':
    case 'amd64':
      return v === undefined || v === 'v1' ? { architecture: 'amd64' } : { architecture: 'amd64', variant: v };
    case 'i386':
    case 'i686':
    case 'x86':
      return { architecture: '386' };
    case 'aarch64':
    case 'arm64':
      // v8 is the only variant every arm64 machine runs, so it is the default and never written.
      return v === undefined || v === 'v8' || v === '8' ? { architecture: 'arm64' } : { architecture: 'arm64', variant: v };
    case 'armhf':
      return { architecture: 'arm', variant: 'v7' };
    case 'armel':
      return { architecture: 'arm', variant: 'v6' };
    case 'arm':
      // Unlike arm64, 32-bit arm has no universal baseline; v7 is what an unqualified "arm" means in practice.
      if (v === undefined || v === '' || v === '7') return { architecture: 'arm', variant: 'v7' };
      return { architecture: 'arm', variant: /^[0-9]+$/.test(v) ? `v${v}` : v };
    default:
      return v === undefined || v === '' ? { architecture: arch } : { architecture: arch, variant: v };
  }
}

/** A copy of the platform in canonical form (os and architecture aliases folded, default variants dropped). */
export function normalizePlatform(p: Platform): Platform {
  const os = p.os.toLowerCase();
  const out: Platform = { os: OS_ALIASES[os] ?? os, ...normalizeArch(p.architecture, p.variant) };
  if (p['os.version'] !== undefined && p['os.version'] !== '') out['os.version'] = p['os.version'];
  if (p['os.features'] !== undefined) out['os.features'] = [...p['os.features']];
  if (p.features !== undefined) out.features = [...p.features];
  return out;
}

/** Parses `os/arch[/variant][:os.version]` or `native`; throws E_USAGE on anything else. */
export function parsePlatform(s: string): Platform {
  if (typeof s !== 'string') throw usage(String(s), 'a platform must be a string');
  const input = s.trim();
  if (input.toLowerCase() === 'native') return hostPlatform();
  let spec = input;
  let osVersion: string | undefined;
  const colon = input.indexOf(':');
  if (colon >= 0) {
    spec = input.slice(0, colon);
    osVersion = input.slice(colon + 1);
    if (!OS_VERSION_RE.test(osVersion)) throw usage(s, `os.version "${osVersion}" is not a version such as 10.0.17763`);
  }
  const parts = spec.toLowerCase().split('/');
  if (parts.length < 2 || parts.length > 3) {
    throw usage(s, parts.length < 2 ? 'both the os and the architecture are needed' : 'too many "/"-separated parts');
  }
  const names = ['os', 'architecture', 'variant'];
  parts.forEach((part, i) => {
    if (!COMPONENT_RE.test(part)) throw usage(s, `${names[i]} "${part}" is ${part === '' ? 'empty' : 'not a valid name'}`);
  });
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2] !== undefined) p.variant = parts[2];
  if (osVersion !== undefined) p['os.version'] = osVersion;
  return normalizePlatform(p);
}

export function formatPlatform(p: Platform): string {
  let s = `${p.os}/${p.architecture}`;
  if (p.variant) s += `/${p.variant}`;
  if (p['os.version']) s += `:${p['os.version']}`;
  return s;
}

const NODE_TO_GOOS: Record<string, string> = {
  win32: 'windows',
  darwin: 'darwin',
  linux: 'linux',
  freebsd: 'freebsd',
  openbsd: 'openbsd',
  netbsd: 'netbsd',
  sunos: 'solaris',
  aix: 'aix',
  android: 'android',
};

const NODE_TO_GOARCH: Record<string, string> = {
  x64: 'amd64',
  ia32: '386',
  arm: 'arm',
  arm64: 'arm64',
  s390x: 's390x',
  riscv64: 'riscv64',
  loong64: 'loong64',
  mips: 'mips',
  mipsel: 'mipsle',
  ppc: 'ppc',
};

/** The platform this process runs on, in image-spec names. */
export function hostPlatform(): Platform {
  const os = NODE_TO_GOOS[process.platform] ?? process.platform;
  let architecture = NODE_TO_GOARCH[process.arch] ?? process.arch;
  if (process.arch === 'ppc64') architecture = endianness() === 'LE' ? 'ppc64le' : 'ppc64';
  let variant: string | undefined;
  if (architecture === 'arm') {
    // Node records the ARM level it was built for; it is the best available answer without reading /proc.
    const level = (process.config.variables as unknown as Record<string, unknown>).arm_version;
    if (level !== undefined && String(level) !== '') variant = String(level);
  }
  const p: Platform = { os, architecture };
  if (variant !== undefined) p.variant = variant;
  return normalizePlatform(p);
}

/**
 * Whether `have` is exactly the platform `want` asks for, after normalization. `os.version` counts only
 * when `want` sets one; feature lists are not compared.
 */
export function platformEquals(want: Platform, have: Platform): boolean {
  const a = normalizePlatform(want);
  const b = normalizePlatform(have);
  if (a.os !== b.os || a.architecture !== b.architecture || a.variant !== b.variant) return false;
  return a['os.version'] === undefined || a['os.version'] === b['os.version'];
}
