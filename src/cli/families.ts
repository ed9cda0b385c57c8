import { resolve } from 'node:path';
import type { Command } from 'commander';
import { Families, describeFamily, readFamilyFile, type Family } from '../artifact/family.js';
import { emit } from './output.js';
import { loadFamilies, withFamilies, type FamilyOptions } from './typed-options.js';

interface FamiliesOptions extends FamilyOptions {
  json?: boolean;
}

function summary(f: Family): Record<string, unknown> {
  return { ...describeFamily(f), ...(f.source ? { source: f.source } : {}) };
}

function table(families: Family[]): string[] {
  const rows = families.map((f) => [
    f.name,
    f.artifactType,
    f.mount.mountable ? (f.mount.defaultPath ?? 'yes') : '-',
    f.pathSegments.map((s) => `…/${s}/…`).join(' ') || '-',
    f.builtin ? 'built-in' : (f.source ?? ''),
  ]);
  const head = ['NAME', 'ARTIFACT TYPE', 'MOUNT', 'INFERRED FROM', 'SOURCE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '));
}

export function register(program: Command): void {
  const families = program.command('families').description('list the artifact families lading knows, show or validate one');

  withFamilies(families.command('list', { isDefault: true }).description('list the built-in and user families').option('--json', 'print as JSON')).action(
    async (opts: FamiliesOptions) => {
      const all = (await loadFamilies(opts)).list();
      emit(opts.json, { families: all.map(summary) }, () => table(all));
    },
  );

  withFamilies(
    families.command('show').description('show a family and its spec schema').argument('<name>', 'family name').option('--json', 'print as JSON'),
  ).action(async (name: string, opts: FamiliesOptions) => {
    const f = (await loadFamilies(opts)).get(name);
    emit(opts.json, { ...summary(f), schema: f.schema }, () => [...table([f]), '', 'Schema of spec:', JSON.stringify(f.schema, null, 2)]);
  });

  withFamilies(
    families
      .command('validate')
      .description('check a family file (YAML or JSON), alone and beside the built-ins and the families given')
      .argument('<file>', 'the family file')
      .option('--json', 'print as JSON'),
  ).action(async (file: string, opts: FamiliesOptions) => {
    const f = await readFamilyFile(file);
    // A family that is fine alone may still clash with a built-in or with a family already in use.
    const others = (await loadFamilies(opts)).list().filter((x) => !x.builtin && resolve(x.source ?? '') !== resolve(file));
    Families.from([...others, f]);
    emit(opts.json, { valid: true, family: summary(f) }, () => `${file}: family "${f.name}" is valid (${f.artifactType})`);
  });
}
