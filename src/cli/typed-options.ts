import type { Command } from 'commander';
import { Families, familyDirsFromEnv } from '../artifact/family.js';
import { parseVariantArgs, type VariantSelector } from '../artifact/variants.js';
import { parsePlatform } from '../oci/platform.js';
import { LadingError } from '../errors.js';
import { collect } from './common.js';

/** Options of the verbs that understand typed artifacts. */
export interface FamilyOptions {
  families: string[];
}

export interface VariantOptions {
  platform?: string;
  variant: string[];
}

export function withFamilies(cmd: Command): Command {
  return cmd.option('--families <dir>', 'also read family definitions from this directory (repeatable; LADING_FAMILIES too)', collect, []);
}

export function withVariant(cmd: Command): Command {
  return cmd
    .option('--platform <os/arch[/variant]>', 'the variant for this platform ("native" is this host)')
    .option('--variant <key=value>', 'an extra variant dimension, e.g. substrate=firecracker (repeatable)', collect, []);
}

/** Built-ins, then the directories named on the command line, then those in LADING_FAMILIES. */
export async function loadFamilies(opts: FamilyOptions): Promise<Families> {
  return Families.load([...opts.families, ...familyDirsFromEnv()]);
}

/** The variant the user asked for, or undefined when neither --platform nor --variant was given. */
export function variantSelector(opts: VariantOptions): VariantSelector | undefined {
  if (opts.platform === undefined) {
    if (opts.variant.length > 0) {
      throw new LadingError('E_USAGE', '--variant needs --platform', { hint: 'name the platform too, e.g. --platform linux/amd64 --variant substrate=firecracker' });
    }
    return undefined;
  }
  return { platform: parsePlatform(opts.platform), extra: parseVariantArgs(opts.variant) };
}
