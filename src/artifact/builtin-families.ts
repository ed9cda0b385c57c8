import type { Family } from './family.js';
import type { LocatedIssue, PathSegment } from './schema.js';
import { formatPath } from './schema.js';

/**
 * The seven families every lading knows. Their spec schemas are closed (`additionalProperties: false`) so
 * that a misspelt field is an error at push time rather than a silently ignored setting at install time.
 */

/** The apiVersion of envelopes and family files. */
export const API_VERSION = 'lading.dev/v1';

const DRAFT = 'https://json-schema.org/draft/2020-12/schema';

/** metadata.name of an envelope; also how one artifact names another (cli deps). */
export const ARTIFACT_NAME_PATTERN = '^[a-z0-9]([a-z0-9._-]{0,126}[a-z0-9])?$';
/** A family name, and the name of a bundle component. */
export const FAMILY_NAME_PATTERN = '^[a-z][a-z0-9-]{0,62}$';
const COMMAND_NAME_PATTERN = '^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$';
const ENV_NAME_PATTERN = '^[A-Za-z_][A-Za-z0-9_]*$';
const STEP_NAME_PATTERN = '^[a-z0-9][a-z0-9._-]{0,62}$';
/** A dotted JavaScript identifier path such as `Acme.Tools.Formatter`. */
const CLASS_NAME_PATTERN = '^[A-Za-z_$][A-Za-z0-9_$]*(\\.[A-Za-z_$][A-Za-z0-9_$]*)*$';

function mediaTypes(name: string): { artifactType: string; configMediaType: string } {
  return { artifactType: `application/vnd.lading.${name}.v1`, configMediaType: `application/vnd.lading.${name}.config.v1+json` };
}

const file: Family = {
  name: 'file',
  description: 'Any files, pushed as they are; the family used when no other applies.',
  ...mediaTypes('file'),
  schema: {
    $schema: DRAFT,
    title: 'file spec',
    type: 'object',
    additionalProperties: false,
    properties: {
      description: { type: 'string', maxLength: 4096, description: 'What the files are, for people browsing the registry.' },
      mediaTypes: {
        type: 'array',
        uniqueItems: true,
        items: { type: 'string', format: 'media-type' },
        description: 'Media types of the files, when they are of known kinds.',
      },
    },
  },
  mount: { mountable: false },
  // Never inferred: a plain push to any path stays the ORAS-style artifact that other tools expect.
  pathSegments: [],
  variants: 'none',
  builtin: true,
};

const cli: Family = {
  name: 'cli',
  description: 'A command-line tool: an executable inside the content, built once per platform.',
  ...mediaTypes('cli'),
  schema: {
    $schema: DRAFT,
    title: 'cli spec',
    type: 'object',
    additionalProperties: false,
    required: ['executable'],
    properties: {
      executable: {
        type: 'string',
        format: 'relative-path',
        description: 'Path of the executable inside the content, e.g. bin/jq.',
      },
      name: {
        type: 'string',
        pattern: COMMAND_NAME_PATTERN,
        description: "The command it is invoked as; the executable's file name when absent.",
      },
      args: { type: 'array', items: { type: 'string' }, description: "Arguments always passed before the user's." },
      env: {
        type: 'object',
        propertyNames: { pattern: ENV_NAME_PATTERN },
        additionalProperties: { type: 'string' },
        description: 'Environment variables set when the command runs.',
      },
      deps: {
        type: 'array',
        uniqueItems: true,
        items: { type: 'string', pattern: ARTIFACT_NAME_PATTERN },
        description: 'Names of other cli artifacts this one runs.',
      },
      install: {
        type: 'array',
        items: { $ref: '#/$defs/installStep' },
        description: 'Commands run once after extraction, lowest order first.',
      },
    },
    $defs: {
      installStep: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'order', 'run'],
        properties: {
          name: { type: 'string', pattern: STEP_NAME_PATTERN, description: 'Unique name of the step.' },
          order: { type: 'integer', minimum: 0, description: 'Steps run in ascending order.' },
          run: {
            type: 'array',
            minItems: 1,
            items: { type: 'string', minLength: 1 },
            description: 'The argv to execute; no shell is involved.',
          },
          deps: {
            type: 'array',
            uniqueItems: true,
            items: { type: 'string', minLength: 1 },
            description: 'What must be in place before the step runs.',
          },
        },
      },
    },
  },
  mount: { mountable: false },
  pathSegments: ['tools', 'cli'],
  variants: 'platform',
  builtin: true,
};

const pack: Family = {
  name: 'pack',
  description: 'A plugin pack: a module a host loads, declaring the SDK it was built against and the classes it provides.',
  ...mediaTypes('pack'),
  schema: {
    $schema: DRAFT,
    title: 'pack spec',
    type: 'object',
    additionalProperties: false,
    required: ['entry', 'protocolVersion', 'sdk', 'classes'],
    properties: {
      entry: { type: 'string', format: 'relative-path', description: 'The module the host loads, e.g. dist/index.js.' },
      protocolVersion: { type: 'integer', minimum: 1, description: 'Version of the host–plugin protocol it speaks.' },
      sdk: { type: 'string', format: 'semver-range', description: 'SDK versions it works with, as a semver range.' },
      classes: {
        type: 'array',
        minItems: 1,
        uniqueItems: true,
        items: { type: 'string', pattern: CLASS_NAME_PATTERN },
        description: 'Classes the pack provides, as dotted identifiers.',
      },
    },
  },
  mount: { mountable: false },
  pathSegments: ['packs', 'plugins'],
  variants: 'none',
  builtin: true,
};

const fileset: Family = {
  name: 'fileset',
  description: 'A directory tree meant to be mounted read-only where a service expects it.',
  ...mediaTypes('fileset'),
  schema: {
    $schema: DRAFT,
    title: 'fileset spec',
    type: 'object',
    additionalProperties: false,
    properties: {
      root: { type: 'string', format: 'relative-path', description: 'The directory inside the content that is mounted.' },
      include: {
        type: 'array',
        uniqueItems: true,
        items: { type: 'string', minLength: 1 },
        description: 'Glob patterns of the files that belong to the set.',
      },
    },
  },
  mount: { mountable: true, defaultPath: '/srv/{name}' },
  pathSegments: ['filesets'],
  variants: 'none',
  builtin: true,
};

const config: Family = {
  name: 'config',
  description: 'A configuration file for a program, in a declared format.',
  ...mediaTypes('config'),
  schema: {
    $schema: DRAFT,
    title: 'config spec',
    type: 'object',
    additionalProperties: false,
    required: ['format'],
    properties: {
      format: { enum: ['json', 'yaml', 'toml', 'ini', 'env', 'text'], description: 'The syntax of the file.' },
      target: { type: 'string', format: 'absolute-path', description: 'Where the program reads it, e.g. /etc/app/app.yaml.' },
      schemaRef: { type: 'string', minLength: 1, description: 'A URL or reference of a schema the file conforms to.' },
    },
  },
  mount: { mountable: true, defaultPath: '/etc/{name}' },
  pathSegments: ['configs'],
  variants: 'none',
  builtin: true,
};

const model: Family = {
  name: 'model',
  description: 'A machine-learning model: its weights, and how to address it at its provider.',
  ...mediaTypes('model'),
  schema: {
    $schema: DRAFT,
    title: 'model spec',
    type: 'object',
    additionalProperties: false,
    required: ['provider', 'model'],
    properties: {
      provider: { type: 'string', minLength: 1, description: 'Who serves or produced it, e.g. ollama or huggingface.' },
      model: { type: 'string', minLength: 1, description: "The model's name at its provider." },
      parameters: {
        type: 'object',
        additionalProperties: { type: ['number', 'string', 'boolean', 'array', 'object'] },
        description: 'Default inference parameters (temperature, top_p, …).',
      },
      contextWindow: { type: 'integer', minimum: 1, description: 'Context length in tokens.' },
    },
  },
  mount: { mountable: true, defaultPath: '/models/{name}' },
  pathSegments: ['models'],
  variants: 'none',
  builtin: true,
};

const bundle: Family = {
  name: 'bundle',
  description: 'A set of other artifacts, pinned by reference and digest, each optionally mounted.',
  ...mediaTypes('bundle'),
  schema: {
    $schema: DRAFT,
    title: 'bundle spec',
    type: 'object',
    additionalProperties: false,
    required: ['components'],
    properties: {
      components: {
        type: 'array',
        minItems: 1,
        items: { $ref: '#/$defs/component' },
        description: 'The artifacts the bundle is made of.',
      },
    },
    $defs: {
      component: {
        type: 'object',
        additionalProperties: false,
        required: ['ref'],
        properties: {
          name: { type: 'string', pattern: FAMILY_NAME_PATTERN, description: 'Unique name of the component in the bundle.' },
          ref: { type: 'string', format: 'oci-reference', description: 'Where the component lives, e.g. ghcr.io/acme/tools/jq:1.7.' },
          digest: { type: 'string', format: 'oci-digest', description: 'The manifest digest the component is pinned to.' },
          mount: {
            type: 'object',
            additionalProperties: false,
            required: ['path'],
            properties: {
              path: { type: 'string', format: 'absolute-path', description: 'Where the component is mounted.' },
              readOnly: { type: 'boolean', description: 'Mounted read-only; true when absent.' },
            },
          },
        },
      },
    },
  },
  mount: { mountable: true },
  pathSegments: ['bundles'],
  variants: 'none',
  builtin: true,
};

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const v of Object.values(value as object)) deepFreeze(v);
  }
  return value;
}

/** In their listing order: the default first. Frozen: their schemas are shared by every Families. */
export const BUILTIN_FAMILIES: readonly Family[] = deepFreeze([file, cli, pack, fileset, config, model, bundle]);

/** Duplicate values of `key` among the objects of a list, each reported at the later occurrence. */
function duplicates(list: unknown, listPath: PathSegment[], key: string | string[]): LocatedIssue[] {
  if (!Array.isArray(list)) return [];
  const keyPath = Array.isArray(key) ? key : [key];
  const first = new Map<string, number>();
  const out: LocatedIssue[] = [];
  list.forEach((item, i) => {
    let v: unknown = item;
    for (const k of keyPath) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[k] : undefined;
    if (typeof v !== 'string') return;
    const earlier = first.get(v);
    if (earlier === undefined) first.set(v, i);
    else out.push({ segments: [...listPath, i, ...keyPath], message: `duplicates ${formatPath([...listPath, earlier, ...keyPath])}` });
  });
  return out;
}

/** What JSON Schema cannot say about a built-in's spec (uniqueness by a field), run after the schema passes. */
export const BUILTIN_SPEC_CHECKS: Readonly<Record<string, (spec: Record<string, unknown>) => LocatedIssue[]>> = {
  cli: (spec) => duplicates(spec.install, ['spec', 'install'], 'name'),
  bundle: (spec) => [
    ...duplicates(spec.components, ['spec', 'components'], 'name'),
    ...duplicates(spec.components, ['spec', 'components'], ['mount', 'path']),
  ],
};
