import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { isLadingError } from '../errors.js';
import { checkEnvelope, envelopeIssues } from './envelope.js';
import { API_VERSION, Families, familyDirsFromEnv, familyFromDocument, readFamilyFile } from './family.js';
import type { Family } from './family.js';
import { compileSchema } from './schema.js';

const BUILTIN_NAMES = ['file', 'cli', 'pack', 'fileset', 'config', 'model', 'bundle'];

function widgetDocument(overrides: { metadata?: object; spec?: object; schema?: unknown } = {}): Record<string, unknown> {
  return {
    apiVersion: API_VERSION,
    kind: 'Family',
    metadata: { name: 'widget', description: 'Acme widgets', ...overrides.metadata },
    spec: {
      artifactType: 'application/vnd.acme.widget.v1',
      configMediaType: 'application/vnd.acme.widget.config.v1+json',
      mount: { mountable: true, defaultPath: '/opt/widgets/{name}' },
      infer: { pathSegments: ['widgets'] },
      variants: 'platform',
      schema: overrides.schema ?? {
        type: 'object',
        additionalProperties: false,
        required: ['size'],
        properties: {
          size: { type: 'integer', minimum: 1, description: 'How big' },
          colour: { enum: ['red', 'blue'] },
          released: { type: 'string', format: 'semver' },
        },
      },
      ...overrides.spec,
    },
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'lading-families-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function familyInvalid(check: (e: Error & { details?: Record<string, unknown> }) => void): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(isLadingError(e, 'E_FAMILY_INVALID'), `expected E_FAMILY_INVALID, got ${String(e)}`);
    check(e);
    return true;
  };
}

test('the built-ins: names, media types by the contract, schemas that compile', () => {
  const families = Families.builtin();
  assert.deepEqual(families.list().map((f) => f.name), BUILTIN_NAMES);
  for (const f of families.list()) {
    assert.equal(f.builtin, true);
    assert.equal(f.artifactType, `application/vnd.lading.${f.name}.v1`);
    assert.equal(f.configMediaType, `application/vnd.lading.${f.name}.config.v1+json`);
    assert.equal(families.byArtifactType(f.artifactType), f);
    assert.equal(families.byConfigMediaType(f.configMediaType), f);
    assert.equal(families.find(f.name), f);
    assert.ok(compileSchema(f.schema, { source: `builtin:${f.name}`, path: ['spec', 'schema'] }));
    assert.equal(f.schema.additionalProperties, false, `${f.name} spec is closed`);
    assert.ok(Object.isFrozen(f.schema));
  }
  assert.equal(families.get('cli').variants, 'platform');
  assert.equal(families.get('cli').mount.mountable, false);
  assert.deepEqual(families.get('fileset').mount, { mountable: true, defaultPath: '/srv/{name}' });
  assert.deepEqual(families.get('config').mount, { mountable: true, defaultPath: '/etc/{name}' });
  assert.equal(families.get('bundle').mount.mountable, true);
  assert.equal(Families.builtin(), families);
  assert.equal(families.byArtifactType('application/vnd.oci.image.config.v1+json'), undefined);
});

test('get of an unknown family lists the known ones', () => {
  assert.throws(
    () => Families.builtin().get('widget'),
    (e: unknown) => isLadingError(e, 'E_FAMILY_UNKNOWN') && /"widget"/.test(e.message) && (e.details?.known as string[]).join() === BUILTIN_NAMES.join(),
  );
});

test('infer: a family segment before the last one; the one nearest the end wins', () => {
  const families = Families.builtin();
  const cases: Array<[string, string | undefined]> = [
    ['acme/tools/jq', 'cli'],
    ['acme/cli/jq', 'cli'],
    ['acme/plugins/tools/jq', 'cli'],
    ['acme/tools/plugins/formatter', 'pack'],
    ['acme/packs/fmt', 'pack'],
    ['acme/filesets/docs', 'fileset'],
    ['acme/configs/nginx', 'config'],
    ['acme/models/llama', 'model'],
    ['acme/bundles/devtools', 'bundle'],
    // The default family is chosen, never inferred: plain pushes stay plain.
    ['acme/files/notes', undefined],
    ['acme/tools', undefined],
    ['acme/jq', undefined],
    ['jq', undefined],
    ['acme/toolsx/jq', undefined],
  ];
  for (const [repository, expected] of cases) assert.equal(families.infer(repository)?.name, expected, repository);
});

test('a user family loads from a directory, infers, and checks envelopes', async () => {
  await withDir(async (dir) => {
    await writeFile(join(dir, 'widget.yaml'), toYaml(widgetDocument()));
    await writeFile(join(dir, 'README.md'), '# not a family');
    await writeFile(join(dir, '.hidden.yaml'), 'not: [valid');
    await mkdir(join(dir, 'sub.yaml'));
    const families = await Families.load([dir]);
    assert.deepEqual(families.list().map((f) => f.name), [...BUILTIN_NAMES, 'widget']);
    const widget = families.get('widget');
    assert.equal(widget.builtin, false);
    assert.equal(widget.source, join(dir, 'widget.yaml'));
    assert.equal(widget.description, 'Acme widgets');
    assert.equal(widget.variants, 'platform');
    assert.equal(families.infer('acme/widgets/sprocket'), widget);
    assert.equal(families.byArtifactType('application/vnd.acme.widget.v1'), widget);
    const envelope = { apiVersion: API_VERSION, kind: 'widget', metadata: { name: 'sprocket' }, spec: { size: 3, released: '1.2.3' } };
    assert.deepEqual(checkEnvelope(envelope, widget).mount, { path: '/opt/widgets/sprocket', readOnly: true });
    assert.deepEqual(envelopeIssues({ ...envelope, spec: { size: 0, colour: 'green', released: '1.2' } }, widget), [
      { path: 'spec.colour', message: 'must be one of "red", "blue"' },
      { path: 'spec.released', message: 'must be a semantic version such as 1.2.3' },
      { path: 'spec.size', message: 'must be >= 1' },
    ]);
    // The built-ins are untouched by loading.
    assert.equal(Families.builtin().find('widget'), undefined);
  });
});

test('family files load in sorted order across directories; the same directory twice counts once', async () => {
  await withDir(async (dir) => {
    const a = join(dir, 'a');
    const b = join(dir, 'b');
    await mkdir(a);
    await mkdir(b);
    const doc = (name: string, segment: string): string =>
      JSON.stringify(
        widgetDocument({
          metadata: { name },
          spec: {
            artifactType: `application/vnd.acme.${name}.v1`,
            configMediaType: `application/vnd.acme.${name}.config.v1+json`,
            infer: { pathSegments: [segment] },
          },
        }),
      );
    await writeFile(join(a, 'z.json'), doc('zeta', 'zetas'));
    await writeFile(join(a, 'm.yml'), doc('mu', 'mus'));
    await writeFile(join(b, 'a.json'), doc('alpha', 'alphas'));
    const families = await Families.load([a, b, `${a}/`]);
    assert.deepEqual(families.list().slice(BUILTIN_NAMES.length).map((f) => f.name), ['mu', 'zeta', 'alpha']);
  });
});

test('LADING_FAMILIES is a path list', () => {
  assert.deepEqual(familyDirsFromEnv({ LADING_FAMILIES: '/a:/b::/c' }), ['/a', '/b', '/c']);
  assert.deepEqual(familyDirsFromEnv({}), []);
});

test('a missing family directory is E_IO naming it', async () => {
  await assert.rejects(Families.load(['/nonexistent/lading-families']), (e: unknown) => isLadingError(e, 'E_IO') && /does not exist/.test((e as Error).message) && e.details?.dir === '/nonexistent/lading-families');
});

test('unknown fields in a family file are refused with their path', async () => {
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ ...widgetDocument(), status: {} }, 'status', 'is not allowed'],
    [widgetDocument({ metadata: { owner: 'me' } }), 'metadata.owner', 'is not allowed'],
    [widgetDocument({ spec: { bogus: 1 } }), 'spec.bogus', 'is not allowed'],
    [widgetDocument({ spec: { mount: { mountable: true, path: '/x' } } }), 'spec.mount.path', 'is not allowed'],
    [widgetDocument({ spec: { infer: { pathSegments: ['widgets'], depth: 1 } } }), 'spec.infer.depth', 'is not allowed'],
  ];
  await withDir(async (dir) => {
    for (const [doc, path, message] of cases) {
      const file = join(dir, 'widget.yaml');
      await writeFile(file, toYaml(doc));
      await assert.rejects(
        readFamilyFile(file),
        familyInvalid((e) => {
          assert.equal(e.message, `${file}: ${path}: ${message}`);
          assert.equal(e.details?.path, path);
          assert.equal(e.details?.source, file);
        }),
      );
    }
  });
});

test('malformed family fields are refused with their path', () => {
  const cases: Array<[Record<string, unknown>, string, string]> = [
    [{ ...widgetDocument(), apiVersion: 'v1' }, 'apiVersion', 'must be "lading.dev/v1"'],
    [{ ...widgetDocument(), kind: 'Widget' }, 'kind', 'must be "Family"'],
    [widgetDocument({ metadata: { name: 'Widget' } }), 'metadata.name', 'must match pattern "^[a-z][a-z0-9-]{0,62}$"'],
    [widgetDocument({ spec: { artifactType: 'widget' } }), 'spec.artifactType', 'must be a media type such as application/vnd.example.v1+json'],
    [widgetDocument({ spec: { configMediaType: 'application/vnd.acme.widget.config.v1' } }), 'spec.configMediaType', 'must be a JSON media type (ending in +json)'],
    [widgetDocument({ spec: { mount: { mountable: true, defaultPath: '/opt/../etc' } } }), 'spec.mount.defaultPath', 'must be an absolute path such as /srv/app (no "." or ".." segments, not "/")'],
    [widgetDocument({ spec: { mount: { mountable: false, defaultPath: '/opt' } } }), 'spec.mount.defaultPath', 'is not allowed when mountable is false'],
    [widgetDocument({ spec: { infer: { pathSegments: ['Widgets'] } } }), 'spec.infer.pathSegments[0]', 'must match pattern "^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$"'],
    [widgetDocument({ spec: { variants: 'arch' } }), 'spec.variants', 'must be one of "platform", "none"'],
    [widgetDocument({ schema: 'object' }), 'spec.schema', 'must be object'],
  ];
  for (const [doc, path, message] of cases) {
    assert.throws(
      () => familyFromDocument(doc, 'widget.yaml'),
      familyInvalid((e) => assert.equal(e.message, `widget.yaml: ${path}: ${message}`)),
      path,
    );
  }
});

test('a family schema that is not valid, strict JSON Schema 2020-12 is refused at its path', () => {
  const cases: Array<[unknown, string, RegExp]> = [
    [{ type: 'object', properties: { a: { type: 'strin' } } }, 'spec.schema.properties.a.type', /must be one of "array", "boolean"/],
    [{ type: 'object', properties: { a: { type: 'string', maxLenght: 3 } } }, 'spec.schema.properties.a.maxLenght', /is not a JSON Schema 2020-12 keyword/],
    [{ type: 'object', properties: { a: { type: 'string', format: 'colour' } } }, 'spec.schema.properties.a.format', /unknown format "colour"/],
    [{ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }, 'spec.schema.properties.a.$ref', /cannot resolve reference/],
    [{ type: 'object', properties: { a: { $ref: 'https://schemas.example.com/a.json' } } }, 'spec.schema.properties.a.$ref', /cannot resolve reference/],
    [{ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object' }, 'spec.schema.$schema', /2020-12/],
    [{ type: 'object', properties: { a: { type: 'string', pattern: '([a-z]' } } }, 'spec.schema.properties.a.pattern', /not a valid regular expression/],
    [{ type: 'object', required: 'size' }, 'spec.schema.required', /must be array/],
    [{ type: 'object', allOf: [{ minProperties: -1 }] }, 'spec.schema.allOf[0].minProperties', /must be >= 0/],
  ];
  for (const [schema, path, message] of cases) {
    assert.throws(
      () => familyFromDocument(widgetDocument({ schema }), 'widget.yaml'),
      familyInvalid((e) => {
        assert.equal(e.details?.path, path);
        assert.ok(e.message.startsWith(`widget.yaml: ${path}: `), e.message);
        assert.match(e.message, message);
      }),
      path,
    );
  }
});

test('a user family may not reuse what a built-in or another file has claimed, and both are named', async () => {
  await withDir(async (dir) => {
    const clash = async (file: string, doc: Record<string, unknown>, field: string, other: RegExp): Promise<void> => {
      await writeFile(join(dir, file), toYaml(doc));
      await assert.rejects(
        Families.load([dir]),
        familyInvalid((e) => {
          assert.ok(e.message.startsWith(join(dir, file)), e.message);
          assert.match(e.message, other);
          assert.equal(e.details?.field, field);
        }),
      );
      await rm(join(dir, file));
    };
    await clash('a.yaml', widgetDocument({ metadata: { name: 'cli' } }), 'name', /name "cli" of built-in family "cli"/);
    await clash('a.yaml', widgetDocument({ spec: { artifactType: 'application/vnd.lading.cli.v1' } }), 'artifactType', /built-in family "cli"/);
    await clash('a.yaml', widgetDocument({ spec: { configMediaType: 'application/vnd.lading.pack.config.v1+json' } }), 'configMediaType', /built-in family "pack"/);
    await clash('a.yaml', widgetDocument({ spec: { infer: { pathSegments: ['tools'] } } }), 'path segment', /path segment "tools" of built-in family "cli"/);
    await writeFile(join(dir, 'a.yaml'), toYaml(widgetDocument()));
    const second = widgetDocument({ metadata: { name: 'gadget' }, spec: { configMediaType: 'application/vnd.acme.gadget.config.v1+json', infer: { pathSegments: ['gadgets'] } } });
    await clash('b.yaml', second, 'artifactType', new RegExp(`family "widget" \\(${join(dir, 'a.yaml').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\)`));
  });
});

test('a family file with a YAML syntax error names its line', async () => {
  await withDir(async (dir) => {
    const file = join(dir, 'broken.yaml');
    await writeFile(file, 'apiVersion: lading.dev/v1\nkind: Family\nmetadata:\n  name: x\nspec: {schema: {}, schema: {}}\n');
    await assert.rejects(readFamilyFile(file), familyInvalid((e) => assert.match(e.message, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:5:\\d+: `))));
  });
});

test('issues of a user schema with anyOf/oneOf point into the branch that was meant', () => {
  const family: Family = familyFromDocument(
    widgetDocument({
      schema: {
        type: 'object',
        additionalProperties: false,
        properties: {
          source: {
            oneOf: [
              { type: 'string', minLength: 3 },
              { $ref: '#/$defs/git' },
            ],
          },
          count: { anyOf: [{ type: 'integer' }, { type: 'string', pattern: '^[0-9]+$' }] },
          flag: { anyOf: [{ type: 'integer' }, { type: 'boolean' }] },
          when: { type: 'object', if: { properties: { kind: { const: 'git' } } }, then: { required: ['repo'] } },
          env: { type: 'object', propertyNames: { pattern: '^[A-Z_]+$' } },
          tags: { type: 'array', uniqueItems: true },
        },
        $defs: {
          git: { type: 'object', additionalProperties: false, required: ['repo'], properties: { repo: { type: 'string' }, rev: { type: 'string' } } },
        },
      },
    }),
    'widget.yaml',
  );
  const issues = (spec: unknown) => envelopeIssues({ apiVersion: API_VERSION, kind: 'widget', metadata: { name: 'w' }, spec }, family);
  assert.deepEqual(issues({ source: 'ab' }), [{ path: 'spec.source', message: 'must be at least 3 characters long' }]);
  assert.deepEqual(issues({ source: { repo: 5 } }), [{ path: 'spec.source.repo', message: 'must be string' }]);
  assert.deepEqual(issues({ source: { rev: 'main', extra: 1 } }), [
    { path: 'spec.source.extra', message: 'is not allowed' },
    { path: 'spec.source.repo', message: 'is required' },
  ]);
  assert.deepEqual(issues({ source: 42 }), [{ path: 'spec.source', message: 'must be string or object' }]);
  assert.deepEqual(issues({ count: 'ten' }), [{ path: 'spec.count', message: 'must match pattern "^[0-9]+$"' }]);
  assert.deepEqual(issues({ flag: 'yes' }), [{ path: 'spec.flag', message: 'must be integer or boolean' }]);
  assert.deepEqual(issues({ when: { kind: 'git' } }), [{ path: 'spec.when.repo', message: 'is required' }]);
  assert.deepEqual(issues({ env: { path: '/bin' } }), [{ path: 'spec.env.path', message: 'name must match pattern "^[A-Z_]+$"' }]);
  assert.deepEqual(issues({ tags: [{ a: 1, b: 2 }, 'x', { b: 2, a: 1 }, 'x'] }), [{ path: 'spec.tags[2]', message: 'duplicates spec.tags[0]' }]);
  assert.deepEqual(issues({ 'odd key': 1 }), [{ path: 'spec["odd key"]', message: 'is not allowed' }]);
  for (const spec of [{ source: 'ab' }, { source: 42 }, { flag: [] }, { count: null }]) assert.ok(issues(spec).length > 0);
});

test('families are compiled apart: the same $id twice is fine, and one cannot $ref another', () => {
  const first = familyFromDocument(widgetDocument({ schema: { $id: 'https://schemas.acme.example/widget', type: 'object', properties: { a: { type: 'string' } } } }), 'a.yaml');
  const second = familyFromDocument(
    widgetDocument({ schema: { $id: 'https://schemas.acme.example/widget', type: 'object', properties: { a: { type: 'integer' } } } }),
    'b.yaml',
  );
  const env = (family: Family, a: unknown) => envelopeIssues({ apiVersion: API_VERSION, kind: 'widget', metadata: { name: 'w' }, spec: { a } }, family);
  assert.deepEqual(env(first, 'x'), []);
  assert.deepEqual(env(second, 'x'), [{ path: 'spec.a', message: 'must be integer' }]);
  assert.throws(
    () => familyFromDocument(widgetDocument({ schema: { $ref: 'https://schemas.acme.example/widget' } }), 'c.yaml'),
    familyInvalid((e) => assert.equal(e.details?.path, 'spec.schema.$ref')),
  );
});

// ---- review regressions: DoS in issue pruning, the shared ajv, ReDoS, runaway files -------------------------

test('8,000 items failing an anyOf report a bounded list: the first exact, the last saying more were found', () => {
  const family = familyFromDocument(
    widgetDocument({ schema: { type: 'object', properties: { xs: { type: 'array', items: { anyOf: [{ type: 'integer' }, { type: 'string' }] } } } } }),
    'widget.yaml',
  );
  const issues = envelopeIssues({ apiVersion: API_VERSION, kind: 'widget', metadata: { name: 'w' }, spec: { xs: Array(8000).fill(true) } }, family);
  assert.ok(issues.length <= 100, `${issues.length} issues`);
  assert.deepEqual(issues.slice(0, 2), [
    { path: 'spec.xs[0]', message: 'must be integer or string' },
    { path: 'spec.xs[1]', message: 'must be integer or string' },
  ]);
  // No branch noise from an anyOf cut off at the bound.
  assert.ok(issues.slice(0, -1).every((i) => i.message === 'must be integer or string'), JSON.stringify(issues));
  assert.match(issues.at(-1)!.message, /^and more issues/);
});

test('a family schema may not take an $id lading uses, and trying leaves later compiles working', () => {
  for (const $id of ['https://json-schema.org/draft/2020-12/schema', 'https://json-schema.org/draft/2020-12/schema#', 'https://json-schema.org/draft/2020-12/meta/core']) {
    assert.throws(
      () => familyFromDocument(widgetDocument({ schema: { $id, type: 'object' } }), 'meta.yaml'),
      familyInvalid((e) => {
        assert.match(e.message, /^meta\.yaml: spec\.schema\.\$id: ".*" is the \$id of a schema lading itself uses/);
        assert.equal(e.details?.family, 'widget');
      }),
    );
  }
  // Nested, too.
  assert.throws(
    () =>
      familyFromDocument(
        widgetDocument({ schema: { $id: 'https://acme.example/w', type: 'object', $defs: { m: { $id: 'https://json-schema.org/draft/2020-12/schema' } } } }),
        'nested.yaml',
      ),
    familyInvalid((e) => assert.equal(e.details?.path, 'spec.schema.$defs.m.$id')),
  );
  const later = familyFromDocument(widgetDocument({ schema: { type: 'object', properties: { a: { type: 'string', minLength: 2 } } } }), 'later.yaml');
  assert.deepEqual(envelopeIssues({ apiVersion: API_VERSION, kind: 'widget', metadata: { name: 'w' }, spec: { a: 'x' } }, later), [
    { path: 'spec.a', message: 'must be at least 2 characters long' },
  ]);
  assert.throws(() => compileSchema({ type: 'nope' }, { source: 'x', path: [] }), familyInvalid(() => {}));
  // Nested $ids that compile are forgotten again, so a second family may declare them too.
  for (const source of ['n1.yaml', 'n2.yaml']) {
    familyFromDocument(widgetDocument({ schema: { type: 'object', $defs: { d: { $id: 'https://acme.example/inner', type: 'string' } } } }), source);
  }
});

test('patterns that could backtrack exponentially are refused at load; delimited repetition is fine', () => {
  const refused = ['^([a-z0-9]+\\.?)+$', '(a+)+', '(a*)*', '^(\\w+\\s?)*$', '(a|a)*', '(a|aa)+', '^(([a-z])+.)+[A-Z]([a-z])+$', '(?:x*y*)+', '((ab)*)+'];
  for (const pattern of refused) {
    assert.throws(
      () => familyFromDocument(widgetDocument({ schema: { type: 'object', properties: { host: { type: 'string', pattern } } } }), 'redos.yaml'),
      familyInvalid((e) => {
        assert.equal(e.details?.path, 'spec.schema.properties.host.pattern', pattern);
        assert.match(e.message, /could take exponential time to match/);
        assert.match((e as { hint?: string }).hint ?? '', /repeated group/);
      }),
      pattern,
    );
  }
  assert.throws(
    () => familyFromDocument(widgetDocument({ schema: { type: 'object', patternProperties: { '^(x+x+)+y$': {} } } }), 'redos.yaml'),
    familyInvalid((e) => assert.equal(e.details?.path, 'spec.schema.patternProperties["^(x+x+)+y$"]')),
  );
  assert.throws(
    () => familyFromDocument(widgetDocument({ schema: { type: 'object', propertyNames: { pattern: '^(a|ab)*$' } } }), 'redos.yaml'),
    familyInvalid((e) => assert.equal(e.details?.path, 'spec.schema.propertyNames.pattern')),
  );
  const accepted = [
    '^[a-z0-9]+(\\.[a-z0-9]+)*$',
    '^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$',
    '^[A-Za-z_$][A-Za-z0-9_$]*(\\.[A-Za-z_$][A-Za-z0-9_$]*)*$',
    '^([a-z]+-)*[a-z]+$',
    '^\\d+(\\.\\d+){0,2}$',
    '^(foo|bar)*$',
    '^[a-z]([a-z0-9._-]{0,126}[a-z0-9])?$',
    '^(?<major>\\d+)\\.(?<minor>\\d+)$',
    '^\\p{L}+$',
    '^[^/]+(/[^/]+)*$',
  ];
  for (const pattern of accepted) {
    familyFromDocument(widgetDocument({ schema: { type: 'object', properties: { host: { type: 'string', pattern } } } }), 'ok.yaml');
  }
  // The built-ins pass the same check (they are compiled through it).
  for (const f of Families.builtin().list()) compileSchema(f.schema, { source: `builtin:${f.name}`, path: [] });
});

test('a family file nested too deeply is refused naming the file, before copying or freezing it', async () => {
  let deep: Record<string, unknown> = { type: 'string' };
  for (let i = 0; i < 20_000; i++) deep = { type: 'object', properties: { a: deep } };
  assert.throws(
    () => familyFromDocument(widgetDocument({ schema: deep }), 'deep.json'),
    familyInvalid((e) => {
      assert.match(e.message, /^deep\.json: spec\.schema\.properties\.a\.properties\.a.*: is nested more than 128 levels deep$/);
      assert.equal(e.details?.source, 'deep.json');
    }),
  );
  await withDir(async (dir) => {
    const path = join(dir, 'deep.json');
    const n = 5000;
    const text = JSON.stringify(widgetDocument({ schema: 'DEEP' })).replace(
      '"DEEP"',
      `${'{"type":"object","properties":{"a":'.repeat(n)}{"type":"string"}${'}}'.repeat(n)}`,
    );
    await writeFile(path, text);
    await assert.rejects(readFamilyFile(path), familyInvalid((e) => assert.equal(e.details?.source, path)));
  });
});

test('a family file that is not a regular file, or is over 1 MiB, is refused before it is read', async () => {
  await withDir(async (dir) => {
    const big = join(dir, 'big.yaml');
    await writeFile(big, `# ${'x'.repeat(1024 * 1024)}\n`);
    await assert.rejects(
      readFamilyFile(big),
      familyInvalid((e) => {
        assert.match(e.message, /at most 1 MiB/);
        assert.match((e as { hint?: string }).hint ?? '', /regular YAML or JSON file/);
      }),
    );
    await assert.rejects(readFamilyFile(dir), familyInvalid((e) => assert.match(e.message, /not a regular file$/)));
    if (process.platform !== 'win32') {
      const { execFileSync } = await import('node:child_process');
      const fifo = join(dir, 'fifo.yaml');
      execFileSync('mkfifo', [fifo]);
      // Nobody writes to it: reading would hang, so it must be refused without opening it for reading.
      await assert.rejects(readFamilyFile(fifo), familyInvalid((e) => assert.match(e.message, /fifo\.yaml: not a regular file$/)));
    }
  });
});
