import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { isLadingError } from '../errors.js';
import { canonicalJson } from './canonical.js';
import {
  MAX_ENVELOPE_BYTES,
  checkEnvelope,
  decodeEnvelope,
  encodeEnvelope,
  envelopeIssues,
  parseEnvelopeText,
  readEnvelopeFile,
} from './envelope.js';
import { Families } from './family.js';
import { INVALID_ENVELOPES, VALID_ENVELOPES } from './invalid-envelopes.js';

const families = Families.builtin();

function configError(fn: () => unknown, check: (e: Error & { details?: Record<string, unknown>; hint?: string }) => void): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(isLadingError(e, 'E_CONFIG_INVALID'), `expected E_CONFIG_INVALID, got ${String(e)}`);
    check(e);
    return true;
  });
}

test('every built-in family has a valid example that checks, encodes canonically and decodes back', async (t) => {
  assert.deepEqual(Object.keys(VALID_ENVELOPES).sort(), families.list().map((f) => f.name).sort());
  for (const [name, envelope] of Object.entries(VALID_ENVELOPES)) {
    await t.test(name, () => {
      const family = families.get(name);
      assert.deepEqual(envelopeIssues(envelope, family), []);
      const checked = checkEnvelope(envelope, family);
      assert.equal(checked.kind, name);
      assert.deepEqual(checked.spec, envelope.spec);
      assert.deepEqual(checked.metadata, envelope.metadata);
      const bytes = encodeEnvelope(checked);
      assert.equal(bytes.toString('utf8'), canonicalJson(checked));
      assert.deepEqual(decodeEnvelope(bytes, family), checked);
      // The same envelope written as YAML reads back to the same value.
      assert.deepEqual(parseEnvelopeText(toYaml(envelope), `${name}.yaml`), envelope);
      // The result is a copy: changing it leaves the input alone.
      (checked.spec as Record<string, unknown>).poisoned = true;
      assert.equal((envelope.spec as Record<string, unknown>).poisoned, undefined);
    });
  }
});

test('the invalid-envelope table is broad: 24+ distinct cases over every family', () => {
  assert.ok(INVALID_ENVELOPES.length >= 24, `only ${INVALID_ENVELOPES.length} cases`);
  assert.equal(new Set(INVALID_ENVELOPES.map((c) => c.name)).size, INVALID_ENVELOPES.length);
  assert.equal(new Set(INVALID_ENVELOPES.map((c) => canonicalJson([c.family, c.envelope]))).size, INVALID_ENVELOPES.length);
  for (const f of families.list()) assert.ok(INVALID_ENVELOPES.some((c) => c.family === f.name), `no case for ${f.name}`);
});

test('each invalid envelope reports its exact first issue', async (t) => {
  for (const c of INVALID_ENVELOPES) {
    await t.test(c.name, () => {
      const family = families.get(c.family);
      const issues = envelopeIssues(c.envelope, family);
      assert.ok(issues.length > 0, 'no issues');
      assert.deepEqual(issues[0], { path: c.path, message: c.message });
      configError(
        () => checkEnvelope(c.envelope, family, { source: 'envelope.yaml' }),
        (e) => {
          const lead = `envelope.yaml: ${c.path === '' ? '' : `${c.path}: `}${c.message}`;
          assert.ok(e.message.startsWith(lead), `${e.message} does not start with ${lead}`);
          assert.deepEqual(e.details?.issues, issues);
          assert.equal(e.details?.family, c.family);
        },
      );
    });
  }
});

test('a fully valid envelope with one fault reports exactly that fault', () => {
  // Guards the table: each case is meant to break one thing, so extra issues would mean a case is muddled.
  for (const c of INVALID_ENVELOPES) {
    const issues = envelopeIssues(c.envelope, families.get(c.family));
    assert.equal(issues.length, 1, `${c.name}: ${JSON.stringify(issues)}`);
  }
});

test('several faults: sorted by path with numeric indices, the message counts the rest, the hint lists them', () => {
  const cli = families.get('cli');
  const envelope = structuredClone(VALID_ENVELOPES.cli!) as any;
  envelope.spec.install = Array.from({ length: 12 }, (_, i) => ({ name: `s${i}`, order: i, run: ['x'] }));
  envelope.spec.install[10].order = 'x';
  envelope.spec.install[2].order = 'y';
  envelope.spec.zzz = true;
  envelope.metadata.name = 'Bad';
  const issues = envelopeIssues(envelope, cli);
  assert.deepEqual(
    issues.map((i) => i.path),
    ['metadata.name', 'spec.install[2].order', 'spec.install[10].order', 'spec.zzz'],
  );
  configError(
    () => checkEnvelope(envelope, cli),
    (e) => {
      assert.match(e.message, /^metadata\.name: must match pattern ".*" \(and 3 more\)$/);
      assert.match(e.hint ?? '', /spec\.install\[2\]\.order: must be integer; spec\.install\[10\]\.order: must be integer; spec\.zzz: is not allowed/);
    },
  );
  // Key order of the input does not change the order of the issues.
  const reordered = Object.fromEntries(Object.entries(envelope).reverse());
  assert.deepEqual(envelopeIssues(reordered, cli), issues);
});

test('mounts: family default with {name}, readOnly defaults to true, explicit values kept', () => {
  const fileset = families.get('fileset');
  const base = structuredClone(VALID_ENVELOPES.fileset!) as any;
  delete base.mount;
  assert.deepEqual(checkEnvelope(base, fileset).mount, { path: '/srv/docs-site', readOnly: true });
  assert.deepEqual(checkEnvelope({ ...base, mount: { readOnly: false } }, fileset).mount, { path: '/srv/docs-site', readOnly: false });
  assert.deepEqual(checkEnvelope({ ...base, mount: { path: '/var/www' } }, fileset).mount, { path: '/var/www', readOnly: true });
  const config = structuredClone(VALID_ENVELOPES.config!) as any;
  assert.deepEqual(checkEnvelope(config, families.get('config')).mount, { path: '/etc/nginx-main', readOnly: true });
  // No default path: no mount unless the envelope names one.
  assert.equal(checkEnvelope(VALID_ENVELOPES.bundle, families.get('bundle')).mount, undefined);
  assert.equal(checkEnvelope(VALID_ENVELOPES.cli, families.get('cli')).mount, undefined);
  for (const bad of ['/', '/srv//www', '/srv/./www', '/srv/www/']) {
    assert.equal(envelopeIssues({ ...base, mount: { path: bad } }, fileset)[0]?.path, 'mount.path', bad);
  }
});

test('an absent spec is an empty one; unknown fields and types of the envelope itself are refused', () => {
  const file = families.get('file');
  const bare = { apiVersion: 'lading.dev/v1', kind: 'file', metadata: { name: 'notes' } };
  assert.deepEqual(checkEnvelope(bare, file).spec, {});
  // Built in code, an undefined property is an absent one and never reaches the stored form.
  assert.deepEqual(envelopeIssues({ ...bare, kind: undefined }, file), [{ path: 'kind', message: 'is required' }]);
  const loose = checkEnvelope({ ...bare, mount: undefined, metadata: { name: 'notes', version: undefined }, spec: { description: undefined } }, file);
  assert.equal(encodeEnvelope(loose).toString(), '{"apiVersion":"lading.dev/v1","kind":"file","metadata":{"name":"notes"},"spec":{}}');
  assert.deepEqual(envelopeIssues({ ...bare, spec: { mediaTypes: [undefined] } }, file), [
    { path: 'spec.mediaTypes[0]', message: 'must be a JSON value, not undefined' },
  ]);
  assert.deepEqual(envelopeIssues({ kind: 'cli' }, families.get('cli')).map((i) => i.path), ['apiVersion', 'metadata', 'spec.executable']);
  assert.deepEqual(envelopeIssues('just text', file), [
    { path: '', message: 'must be an envelope object {apiVersion, kind, metadata, spec}, not string' },
  ]);
  assert.deepEqual(envelopeIssues({ ...bare, metadata: { name: 'n', labels: { '': 'x' } } }, file), [
    { path: 'metadata.labels[""]', message: 'name must not be empty' },
  ]);
});

test('values JSON cannot hold, and runaway nesting, are refused before the schema runs', () => {
  const model = families.get('model');
  const fromYaml = parseEnvelopeText(toYaml(VALID_ENVELOPES.model).replace('temperature: 0.7', 'temperature: .inf'), 'm.yaml');
  assert.deepEqual(envelopeIssues(fromYaml, model), [{ path: 'spec.parameters.temperature', message: 'must be a finite number' }]);
  let deep: unknown = 1;
  for (let i = 0; i < 200; i++) deep = [deep];
  const nested = structuredClone(VALID_ENVELOPES.model) as any;
  nested.spec.parameters.deep = deep;
  const issues = envelopeIssues(nested, model);
  assert.equal(issues.length, 1);
  assert.match(issues[0]!.message, /must not be nested more than 64 levels deep/);
  assert.ok(issues[0]!.path.startsWith('spec.parameters.deep[0]'));
});

test('YAML syntax errors name source, line and column', () => {
  const text = 'apiVersion: lading.dev/v1\nkind: cli\nmetadata:\n  name: jq\n  labels: [a, b\nspec: {}\n';
  configError(
    () => parseEnvelopeText(text, 'jq.yaml'),
    (e) => {
      assert.match(e.message, /^jq\.yaml:6:1: /);
      assert.equal(e.details?.source, 'jq.yaml');
    },
  );
  configError(
    () => parseEnvelopeText('kind: cli\nmetadata: {}\nkind: pack\n', 'dup.yaml'),
    (e) => assert.equal(e.message, 'dup.yaml:3:1: Map keys must be unique'),
  );
});

test('YAML that is not plain data is refused: custom tags, collection keys, several documents, alias bombs', () => {
  configError(() => parseEnvelopeText('spec: !!js/function "function () {}"\n', 'a.yaml'), (e) => assert.match(e.message, /^a\.yaml:1:7: Unresolved tag/));
  configError(() => parseEnvelopeText('spec: !custom x\n', 'b.yaml'), (e) => assert.match(e.message, /^b\.yaml:1:7: /));
  configError(() => parseEnvelopeText('? [a, b]\n: 1\n', 'c.yaml'), (e) => assert.match(e.message, /^c\.yaml:1:3: a mapping key must be a plain scalar/));
  configError(() => parseEnvelopeText('a: 1\n---\nb: 2\n', 'd.yaml'), (e) => assert.match(e.message, /^d\.yaml:2:1: /));
  const bomb = ['a: &a [x, x, x, x, x, x, x, x, x]'];
  for (let i = 1; i < 10; i++) bomb.push(`${String.fromCharCode(97 + i)}: &${String.fromCharCode(97 + i)} [${Array(9).fill(`*${String.fromCharCode(96 + i)}`).join(', ')}]`);
  configError(() => parseEnvelopeText(`${bomb.join('\n')}\n`, 'e.yaml'), (e) => assert.match(e.message, /^e\.yaml: .*alias/i));
  configError(() => parseEnvelopeText('  \n', 'f.yaml'), (e) => assert.equal(e.message, 'f.yaml: the document is empty'));
});

test('JSON text is read as JSON (a leading BOM allowed); YAML 1.2 keeps yes/no as strings', () => {
  assert.deepEqual(parseEnvelopeText('\ufeff{"a":[1,2.5,"x"]}', 'x.json'), { a: [1, 2.5, 'x'] });
  assert.deepEqual(parseEnvelopeText('a: yes\nb: 0x10\nc: "1.0"\n', 'x.yaml'), { a: 'yes', b: 16, c: '1.0' });
});

test('decodeEnvelope takes JSON only, within 4 MiB, valid UTF-8', () => {
  const file = families.get('file');
  const good = encodeEnvelope(checkEnvelope(VALID_ENVELOPES.file, file));
  assert.equal(decodeEnvelope(good, file).metadata.name, 'release-notes');
  configError(
    () => decodeEnvelope(Buffer.from(toYaml(VALID_ENVELOPES.file)), file, { source: 'blob' }),
    (e) => assert.match(e.message, /^blob: not valid JSON/),
  );
  configError(() => decodeEnvelope(Buffer.from([0x7b, 0xff, 0x7d]), file), (e) => assert.match(e.message, /not valid UTF-8/));
  const huge = Buffer.alloc(MAX_ENVELOPE_BYTES + 1, 0x20);
  configError(() => decodeEnvelope(huge, file), (e) => assert.equal(e.details?.reason, 'too-large'));
  // A config of another family is refused by kind.
  configError(
    () => decodeEnvelope(encodeEnvelope(checkEnvelope(VALID_ENVELOPES.cli, families.get('cli'))), file, { source: 'sha256:abc' }),
    (e) => assert.match(e.message, /^sha256:abc: kind: must be "file"/),
  );
});

test('encodeEnvelope is canonical whatever the key order, and refuses undefined', () => {
  const a = checkEnvelope(VALID_ENVELOPES.pack, families.get('pack'));
  const reverse = (v: unknown): unknown =>
    Array.isArray(v) ? v.map(reverse) : v !== null && typeof v === 'object' ? Object.fromEntries(Object.entries(v).reverse().map(([k, x]) => [k, reverse(x)])) : v;
  const b = reverse(a) as typeof a;
  assert.notEqual(Object.keys(b)[0], Object.keys(a)[0]);
  assert.deepEqual(encodeEnvelope(b), encodeEnvelope(a));
  assert.ok(encodeEnvelope(a).toString().startsWith('{"apiVersion":"lading.dev/v1","kind":"pack","metadata":{'));
  assert.throws(
    () => encodeEnvelope({ ...a, mount: undefined }),
    (e: unknown) => isLadingError(e, 'E_JSON_INVALID') && /mount/.test((e as Error).message),
  );
});

test('readEnvelopeFile reads YAML and JSON files and explains missing ones', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'lading-envelope-'));
  try {
    await writeFile(join(dir, 'jq.yaml'), toYaml(VALID_ENVELOPES.cli));
    await writeFile(join(dir, 'jq.json'), JSON.stringify(VALID_ENVELOPES.cli));
    assert.deepEqual(await readEnvelopeFile(join(dir, 'jq.yaml')), VALID_ENVELOPES.cli);
    assert.deepEqual(await readEnvelopeFile(join(dir, 'jq.json')), VALID_ENVELOPES.cli);
    await assert.rejects(readEnvelopeFile(join(dir, 'nope.yaml')), (e: unknown) => isLadingError(e, 'E_IO') && /does not exist/.test((e as Error).message));
    await writeFile(join(dir, 'bad.yaml'), 'metadata:\n  name: [\n');
    await assert.rejects(readEnvelopeFile(join(dir, 'bad.yaml')), (e: unknown) => isLadingError(e, 'E_CONFIG_INVALID') && (e as Error).message.startsWith(`${join(dir, 'bad.yaml')}:`));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

// ---- review regressions: unbounded issue lists, duplicate JSON keys ----------------------------------------

test('a 200k-item array with duplicates is refused with the first duplicate named and a bounded issue list', () => {
  const include = Array.from({ length: 200_000 }, (_, i) => `dir${i % 100_000}/**`);
  const envelope = { ...VALID_ENVELOPES.fileset, spec: { root: 'public', include } };
  const issues = envelopeIssues(envelope, families.get('fileset'));
  assert.deepEqual(issues, [{ path: 'spec.include[100000]', message: 'duplicates spec.include[0]' }]);
  // The same through the stored form, as a server receives it.
  configError(
    () => parseEnvelopeText(JSON.stringify(envelope), 'fileset.json') && checkEnvelope(envelope, families.get('fileset')),
    (e) => assert.ok(e.message.startsWith('spec.include[100000]: duplicates spec.include[0]'), e.message),
  );
});

test('300k wrong items are reported as at most 100 issues: the first exact, the last saying more were found', () => {
  const envelope = { ...VALID_ENVELOPES.cli, spec: { ...(VALID_ENVELOPES.cli!.spec as object), args: Array(300_000).fill(1) } };
  const family = families.get('cli');
  const issues = envelopeIssues(envelope, family);
  assert.ok(issues.length <= 100, `${issues.length} issues`);
  assert.deepEqual(issues[0], { path: 'spec.args[0]', message: 'must be string' });
  assert.deepEqual(issues[1], { path: 'spec.args[1]', message: 'must be string' });
  assert.equal(issues.at(-1)!.path, '');
  assert.match(issues.at(-1)!.message, /^and more issues/);
  configError(
    () => checkEnvelope(envelope, family, { source: 'cli.yaml' }),
    (e) => {
      assert.ok(e.message.startsWith('cli.yaml: spec.args[0]: must be string (and '), e.message);
      assert.deepEqual(e.details?.issues, issues);
    },
  );
});

test('many faults outside the spec are bounded too, and the smallest path still comes first', () => {
  const labels: Record<string, unknown> = {};
  for (let i = 150_000; i > 0; i--) labels[`k${String(i).padStart(6, '0')}`] = i;
  const envelope = { ...VALID_ENVELOPES.config, metadata: { name: 'x', labels } };
  const issues = envelopeIssues(envelope, families.get('config'));
  assert.equal(issues.length, 100);
  assert.deepEqual(issues[0], { path: 'metadata.labels.k000001', message: 'must be string' });
  assert.deepEqual(issues.at(-1), { path: '', message: 'and 149901 more issues, not listed' });
});

test('duplicate keys in JSON are refused with line and column, as in YAML', () => {
  const text = '{\n  "apiVersion": "lading.dev/v1",\n  "metadata": {"name": "a", "name": "b"}\n}';
  configError(
    () => parseEnvelopeText(text, 'env.json'),
    (e) => {
      assert.equal(e.message, 'env.json:3:29: duplicate key "name"');
      assert.equal(e.details?.source, 'env.json');
    },
  );
  // Escapes are decoded before comparing; the same key in different objects, or as a value, is fine.
  configError(() => parseEnvelopeText('{"a": 1, "\\u0061": 2}', 'e.json'), (e) => assert.equal(e.message, 'e.json:1:10: duplicate key "a"'));
  assert.deepEqual(parseEnvelopeText('[{"a": "a"}, {"a": ["a", "a"], "b": {"a": 1}}]', 'ok.json'), [{ a: 'a' }, { a: ['a', 'a'], b: { a: 1 } }]);
  assert.deepEqual(parseEnvelopeText('{"a\\"": 1, "a": {"\\\\": 2}}', 'ok.json'), { 'a"': 1, a: { '\\': 2 } });
  // YAML says the same in its words.
  configError(() => parseEnvelopeText('a: 1\na: 2\n', 'env.yaml'), (e) => assert.match(e.message, /^env\.yaml:2:1: /));
});

test('a stored config blob with a duplicate key is refused', () => {
  const family = families.get('fileset');
  const good = encodeEnvelope(checkEnvelope(VALID_ENVELOPES.fileset, family)).toString('utf8');
  const bad = good.replace('"kind":"fileset"', '"kind":"fileset","kind":"fileset"');
  assert.notEqual(bad, good);
  configError(
    () => decodeEnvelope(Buffer.from(bad), family, { source: 'config blob' }),
    (e) => {
      assert.match(e.message, /^config blob:1:\d+: not valid JSON: duplicate key "kind"$/);
      assert.equal(e.details?.reason, 'json');
    },
  );
});

test('a YAML document nested too deeply for the parser is E_CONFIG_INVALID, not a stack overflow', () => {
  const depth = 200_000;
  configError(
    () => parseEnvelopeText(`${'['.repeat(depth)}${']'.repeat(depth)}x`, 'deep.yaml'),
    (e) => assert.match(e.message, /^deep\.yaml(:\d+:\d+)?: the document is nested too deeply$/),
  );
});
